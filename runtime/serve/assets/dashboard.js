/* dashboard.js: runnel serve's dashboard. Every second it reads GET /jobs and GET /metrics
 * (the Prometheus text: records, lag) and redraws the table; the buttons POST the API's verbs.
 * For the selected job with a label field (the first such job until a row is clicked), it
 * reads GET /jobs/NAME/labels every two seconds and draws a donut of the labels and a word
 * cloud of the phrases with Vega (compiled into the runner, like this file).
 *
 * With serve --token-file, open the page as /#token=TOKEN: the token is sent as a bearer
 * token on every request and kept in this tab's sessionStorage, never in the address bar.
 * Tests and tools read: tr[data-job][data-state], button[data-verb], #donut[data-records],
 * #cloud[data-phrases], body[data-ready="yes"] once the first poll succeeded. */
(function () {
  "use strict";
  var token = sessionStorage.getItem("runnel-token") || "";
  var hash = /^#token=(.+)$/.exec(location.hash);
  if (hash) {
    token = decodeURIComponent(hash[1]);
    sessionStorage.setItem("runnel-token", token);
    history.replaceState(null, "", location.pathname);
  }
  var previous = {};     /* job -> {read, at}: the last poll's count, for records/s */
  var selected = null;   /* the job whose labels are drawn */
  var chosen = false;    /* a row was clicked: keep that job */
  var drawn = { donut: "", cloud: "" };

  function request(method, path) {
    var headers = token ? { Authorization: "Bearer " + token } : {};
    return fetch(path, { method: method, headers: headers, cache: "no-store" }).then(function (r) {
      var type = r.headers.get("Content-Type") || "";
      var body = type.indexOf("json") >= 0 ? r.json() : r.text();
      return body.then(function (b) {
        if (!r.ok) throw new Error(method + " " + path + ": " + r.status + " " + (b && b.error ? b.error : b));
        return b;
      });
    });
  }

  /* The text exposition as {job: {family: [{labels, value}]}}; samples without a job are left out. */
  function parseMetrics(text) {
    var byJob = {};
    text.split("\n").forEach(function (line) {
      if (!line || line[0] === "#") return;
      var m = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
      if (!m) return;
      var labels = {}, re = /([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g, l;
      while ((l = re.exec(m[2] || ""))) labels[l[1]] = l[2].replace(/\\n/g, "\n").replace(/\\(.)/g, "$1");
      if (!labels.job) return;
      var job = byJob[labels.job] || (byJob[labels.job] = {});
      (job[m[1]] || (job[m[1]] = [])).push({ labels: labels, value: parseFloat(m[3]) });
    });
    return byJob;
  }

  function sum(samples, where) {
    var total = 0, any = false;
    (samples || []).forEach(function (s) {
      for (var k in where) if (s.labels[k] !== where[k]) return;
      if (!isNaN(s.value)) { total += s.value; any = true; }
    });
    return any ? total : null;
  }

  function number(v) { return v === null || v === undefined ? "–" : Math.round(v).toLocaleString("en-US"); }

  function verb(job, name) {
    request("POST", "/jobs/" + encodeURIComponent(job) + "/" + name)
      .then(function () { problem(""); poll(); })
      .catch(function (e) { problem(e.message); });
  }

  function problem(text) {
    var p = document.getElementById("problem");
    p.textContent = text;
    p.hidden = !text;
  }

  var COLUMNS = ["name", "state", "mode", "rate", "read", "written", "dead", "lag", "restarts", "error", "actions"];

  /* A job's row, made once and kept (its cells and buttons are updated in place, so a click
   * never lands on a node the last poll replaced). */
  function row(body, name) {
    var tr = body.querySelector('tr[data-job="' + CSS.escape(name) + '"]');
    if (tr) return tr;
    tr = document.createElement("tr");
    tr.setAttribute("data-job", name);
    COLUMNS.forEach(function (c) {
      var td = document.createElement("td");
      td.setAttribute("data-column", c);
      if (["rate", "read", "written", "dead", "lag", "restarts"].indexOf(c) >= 0) td.className = "num";
      if (c === "error") td.className = "error-text";
      tr.appendChild(td);
    });
    var badge = document.createElement("span");
    tr.querySelector('[data-column="state"]').appendChild(badge);
    ["start", "stop", "run"].forEach(function (v) {
      var b = document.createElement("button");
      b.textContent = v;
      b.setAttribute("data-verb", v);
      b.addEventListener("click", function (e) { e.stopPropagation(); verb(name, v); });
      tr.querySelector('[data-column="actions"]').appendChild(b);
    });
    tr.querySelector('[data-column="name"]').textContent = name;
    tr.addEventListener("click", function () { selected = name; chosen = true; drawn = { donut: "", cloud: "" }; labels(); poll(); });
    body.appendChild(tr);
    return tr;
  }

  function set(tr, column, text) {
    var td = tr.querySelector('[data-column="' + column + '"]');
    if (td.textContent !== text) td.textContent = text;
    return td;
  }

  function table(jobs, metrics, now) {
    var body = document.querySelector("#jobs tbody");
    var names = {};
    jobs.forEach(function (j) {
      names[j.name] = true;
      var m = metrics[j.name] || {};
      var read = sum(m.runnel_records_read_total, {});
      var prev = previous[j.name], rate = null;
      if (read !== null && prev && prev.read !== null && now > prev.at) rate = Math.max(0, (read - prev.read) * 1000 / (now - prev.at));
      if (read !== null && (!prev || prev.read !== read || now - prev.at > 5000)) previous[j.name] = { read: read, at: now };
      else if (prev && prev.read === read) rate = j.state === "RUNNING" ? 0 : null;
      var tr = row(body, j.name);
      tr.setAttribute("data-state", j.state);
      tr.className = j.name === selected ? "selected" : "";
      var badge = tr.querySelector('[data-column="state"] span');
      badge.className = "state " + j.state;
      badge.textContent = j.state;
      set(tr, "mode", j.mode || "–");
      set(tr, "rate", rate === null ? "–" : rate.toFixed(rate < 10 ? 1 : 0));
      set(tr, "read", number(read));
      set(tr, "written", number(sum(m.runnel_records_total, { outcome: "written" })));
      set(tr, "dead", number(sum(m.runnel_records_total, { outcome: "dead_lettered" })));
      set(tr, "lag", number(sum(m.runnel_kafka_consumer_lag, {})));
      set(tr, "restarts", String(j.restarts));
      set(tr, "error", j.last_error || "").title = j.last_error || "";
      var active = j.state === "RUNNING" || j.state === "RESTARTING" || j.state === "SCHEDULED";
      tr.querySelector('button[data-verb="start"]').disabled = active || j.state === "CREATED";
      tr.querySelector('button[data-verb="stop"]').disabled = !active;
      var run = tr.querySelector('button[data-verb="run"]');
      run.hidden = j.mode !== "batch";
      run.disabled = j.state === "RUNNING" || j.state === "CREATED";
    });
    Array.prototype.slice.call(body.querySelectorAll("tr")).forEach(function (tr) {
      if (!names[tr.getAttribute("data-job")]) body.removeChild(tr);
    });
  }

  function poll() {
    return Promise.all([request("GET", "/jobs"), request("GET", "/metrics"), request("GET", "/health")])
      .then(function (r) {
        var jobs = r[0].jobs, health = r[2];
        if (!chosen) {
          var first = jobs.filter(function (j) { return j.label && j.output; })[0];
          selected = first ? first.name : null;
        }
        table(jobs, parseMetrics(r[1]), Date.now());
        document.getElementById("health").textContent = "runnel " + health.version + " · pid " + health.pid + " · " +
          health.jobs + " jobs, " + health.running + " running · " + health.status;
        document.body.setAttribute("data-ready", "yes");
      })
      .catch(function (e) { problem(e.message); });
  }

  /* ---- the selected job's labels ---- */

  function donutSpec(data) {
    var rows = data.labels.map(function (d, i) { return { index: i, label: d.label, count: d.count }; });
    var total = data.labelled;
    /* numeric labels (ratings): red for the lowest, green for the highest */
    var numeric = rows.length > 1 && rows.every(function (d) { return d.label !== "" && !isNaN(+d.label); });
    var domain = rows.map(function (d) { return d.label; });
    if (numeric) domain.sort(function (a, b) { return +a - +b; });
    return {
      width: 420, height: 260, padding: 4, autosize: "none",
      data: [{ name: "labels", values: rows, transform: [{ type: "pie", field: "count", sort: false }] }],
      scales: [{ name: "colour", type: "ordinal", domain: domain,
                 range: { scheme: numeric ? "redyellowgreen" : "tableau10", count: Math.max(rows.length, 3) } }],
      marks: [
        { type: "arc", from: { data: "labels" }, encode: { enter: {
            x: { value: 130 }, y: { value: 130 }, innerRadius: { value: 66 }, outerRadius: { value: 122 },
            startAngle: { field: "startAngle" }, endAngle: { field: "endAngle" }, padAngle: { value: 0.01 },
            fill: { scale: "colour", field: "label" }, stroke: { value: "#fff" },
            tooltip: { signal: "datum.label + ': ' + format(datum.count, ',')" } } } },
        { type: "text", encode: { enter: { x: { value: 130 }, y: { value: 128 }, text: { value: total.toLocaleString("en-US") },
            align: { value: "center" }, fontSize: { value: 22 }, fontWeight: { value: "bold" }, fill: { value: "#222" } } } },
        { type: "text", encode: { enter: { x: { value: 130 }, y: { value: 146 }, text: { value: "with a " + data.label },
            align: { value: "center" }, fontSize: { value: 12 }, fill: { value: "#666" } } } },
        { type: "symbol", from: { data: "labels" }, encode: { enter: {
            x: { value: 280 }, y: { signal: "40 + 22 * datum.index" }, shape: { value: "square" }, size: { value: 140 },
            fill: { scale: "colour", field: "label" } } } },
        { type: "text", from: { data: "labels" }, encode: { enter: {
            x: { value: 292 }, y: { signal: "40 + 22 * datum.index" }, baseline: { value: "middle" }, fontSize: { value: 13 },
            text: { signal: "datum.label + '  ' + format(datum.count, ',') + '  (' + format(100 * datum.count / " + Math.max(total, 1) + ", '.1f') + '%)'" },
            limit: { value: 126 }, fill: { value: "#222" } } } },
      ],
    };
  }

  function cloudSpec(data) {
    var top = Math.max.apply(null, data.phrases.map(function (d) { return d.count; }).concat([1]));
    return {
      width: 560, height: 300, padding: 4, autosize: "none",
      data: [{ name: "phrases", values: data.phrases, transform: [
        { type: "formula", as: "size", expr: "max(10, 38 * sqrt(datum.count / " + top + "))" },
        { type: "wordcloud", size: [560, 300], text: { field: "text" }, rotate: 0, padding: 2,
          font: "DejaVu Sans, Liberation Sans, Arial, sans-serif", fontSize: { field: "size" } }] }],
      marks: [{ type: "text", from: { data: "phrases" }, encode: {
        enter: { text: { field: "text" }, align: { value: "center" }, baseline: { value: "alphabetic" },
                 font: { value: "DejaVu Sans, Liberation Sans, Arial, sans-serif" }, fill: { value: "#2f5d8a" },
                 tooltip: { signal: "datum.text + ': ' + format(datum.count, ',') + ' records'" } },
        update: { x: { field: "x" }, y: { field: "y" }, fontSize: { field: "fontSize" } } } }],
    };
  }

  var views = {};

  function draw(id, spec, key, count, attr) {
    var figure = document.getElementById(id), element = figure.querySelector(".chart");
    if (drawn[id] === key) return Promise.resolve();
    drawn[id] = key;
    if (views[id]) views[id].finalize();
    while (element.firstChild) element.removeChild(element.firstChild);
    vega.setRandom(vega.randomLCG(7)); /* the same layout for the same phrases */
    try {
      var view = views[id] = new vega.View(vega.parse(spec), { renderer: "svg", container: element, hover: true });
      return view.runAsync().then(function () { figure.setAttribute(attr, String(count)); }).catch(function (e) { failed(element, e); });
    } catch (e) {
      failed(element, e);
      return Promise.resolve();
    }
  }

  function failed(element, e) {
    var p = document.createElement("p");
    p.className = "error";
    p.textContent = "This chart could not be drawn: " + (e && e.message ? e.message : e);
    element.appendChild(p);
  }

  function labels() {
    var detail = document.getElementById("detail");
    if (!selected) { detail.hidden = true; return Promise.resolve(); }
    var name = selected;
    return request("GET", "/jobs/" + encodeURIComponent(name) + "/labels").then(function (data) {
      if (name !== selected) return;
      detail.hidden = false;
      document.getElementById("detail-title").textContent = name + ": " + data.label + " in " + data.path;
      document.getElementById("detail-note").textContent = data.records.toLocaleString("en-US") + " records read, " +
        data.labelled.toLocaleString("en-US") + " with a " + data.label +
        (data.bad_lines ? ", " + data.bad_lines + " lines that are not JSON objects" : "");
      var charts = [];
      if (data.labels.length) charts.push(draw("donut", donutSpec(data), JSON.stringify(data.labels), data.labelled, "data-records"));
      if (data.phrases.length) charts.push(draw("cloud", cloudSpec(data), JSON.stringify(data.phrases), data.phrases.length, "data-phrases"));
      return Promise.all(charts);
    }).catch(function (e) {
      if (name !== selected) return;
      detail.hidden = false;
      document.getElementById("detail-title").textContent = name;
      document.getElementById("detail-note").textContent = e.message;
    });
  }

  function loop(fn, ms) { fn().then(function () { setTimeout(function () { loop(fn, ms); }, ms); }); }
  loop(poll, 1000);
  loop(labels, 2000);
})();
