/* report.js: draws the charts of a `runnel report` page (runtime/serve/report.c) with Vega.
 * The data is the JSON in <script id="report-data">; every chart uses the SVG renderer. When
 * all are drawn, the body's data-charts attribute names them ("donut cloud heatmap") (tools and tests wait
 * for it); a chart that fails shows its error in its place and is left out of that list. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var numeric = data.numeric;
  var labelNames = data.labels.map(function (d) { return d.label; });
  var values = data.labels.filter(function (d) { return !d.other; }).map(function (d) { return +d.label; });
  var lo = Math.min.apply(null, values), hi = Math.max.apply(null, values);
  if (!(hi > lo)) { lo -= 1; hi += 1; }
  /* dark enough to read as text on white: red (low) .. amber .. green (high) */
  var toneDomain = [lo, (lo + hi) / 2, hi], toneRange = ["#c62828", "#b07800", "#2e7d32"];

  /* The same random numbers every time, so the word cloud is laid out the same. */
  vega.setRandom(vega.randomLCG(7));

  function labelColour() {
    if (numeric && labelNames.length > 1)
      return { name: "colour", type: "ordinal", domain: labelNames,
               range: { scheme: "redyellowgreen", count: labelNames.length } };
    return { name: "colour", type: "ordinal", domain: labelNames, range: { scheme: "tableau10" } };
  }

  function donut() {
    var total = data.labels.reduce(function (s, d) { return s + d.count; }, 0);
    var rows = data.labels.map(function (d, i) {
      return { index: i, label: d.label, count: d.count, percent: d.percent,
               legend: d.label + ":  " + d.count.toLocaleString("en-US") + "  (" + d.percent.toFixed(1) + "%)" };
    });
    return {
      width: 430, height: 280, padding: 4, autosize: "none",
      data: [{ name: "label-data", values: rows, transform: [{ type: "pie", field: "count", sort: false }] }],
      scales: [labelColour()],
      marks: [
        { type: "arc", name: "slices", from: { data: "label-data" },
          encode: { enter: {
            x: { value: 140 }, y: { value: 140 }, innerRadius: { value: 72 }, outerRadius: { value: 132 },
            startAngle: { field: "startAngle" }, endAngle: { field: "endAngle" }, padAngle: { value: 0.01 },
            fill: { scale: "colour", field: "label" }, stroke: { value: "#fff" },
            tooltip: { signal: "datum.legend" } } } },
        { type: "text", name: "percents", from: { data: "label-data" },
          encode: { enter: {
            x: { value: 140 }, y: { value: 140 }, radius: { value: 103 },
            theta: { signal: "(datum.startAngle + datum.endAngle) / 2" },
            text: { signal: "datum.percent >= 4 ? format(datum.percent, '.0f') + '%' : ''" },
            align: { value: "center" }, baseline: { value: "middle" }, fontSize: { value: 12 },
            fontWeight: { value: "bold" }, fill: { value: "#222" } } } },
        { type: "text", encode: { enter: {
            x: { value: 140 }, y: { value: 137 }, text: { value: total.toLocaleString("en-US") },
            align: { value: "center" }, fontSize: { value: 24 }, fontWeight: { value: "bold" }, fill: { value: "#222" } } } },
        { type: "text", encode: { enter: {
            x: { value: 140 }, y: { value: 156 }, text: { value: "with a " + data.label },
            align: { value: "center" }, fontSize: { value: 12 }, fill: { value: "#666" } } } },
        { type: "symbol", name: "swatches", from: { data: "label-data" },
          encode: { enter: {
            x: { value: 290 }, y: { signal: "60 + 24 * datum.index" }, shape: { value: "square" }, size: { value: 150 },
            fill: { scale: "colour", field: "label" } } } },
        { type: "text", name: "legend", from: { data: "label-data" },
          encode: { enter: {
            x: { value: 302 }, y: { signal: "60 + 24 * datum.index" }, text: { field: "legend" }, limit: { value: 128 },
            baseline: { value: "middle" }, fontSize: { value: 13 }, fill: { value: "#222" } } } },
      ],
    };
  }

  /* The word cloud with its font sizes scaled by `scale` (1: up to 42 px). */
  function cloud(scale) {
    var counts = data.phrases.map(function (d) { return d.count; });
    var top = Math.max.apply(null, counts);
    var fill = numeric ? { scale: "tone", field: "mean" } : { value: "#2f5d8a" };
    return {
      width: 610, height: 360, padding: 4, autosize: "none",
      data: [{ name: "phrase-data", values: data.phrases, transform: [
        { type: "formula", as: "weight", expr: "datum.count / " + top },
        /* area by count: the size grows with the square root of the count, from zero */
        { type: "formula", as: "size", expr: "max(" + 9 * Math.min(1, scale + 0.2) + ", " + 42 * scale + " * sqrt(datum.weight))" },
        { type: "wordcloud", size: [610, 360], text: { field: "text" }, rotate: 0, padding: 2,
          font: "DejaVu Sans, Liberation Sans, Arial, sans-serif", fontSize: { field: "size" }, fontWeight: { expr: "datum.weight > 0.5 ? 'bold' : 'normal'" } }] }],
      scales: [{ name: "tone", type: "linear", domain: toneDomain, range: toneRange, clamp: true }],
      marks: [{ type: "text", name: "phrases", from: { data: "phrase-data" },
        encode: { enter: {
          text: { field: "text" }, align: { value: "center" }, baseline: { value: "alphabetic" },
          font: { value: "DejaVu Sans, Liberation Sans, Arial, sans-serif" }, fill: fill,
          tooltip: { signal: "datum.text + ': ' + format(datum.count, ',') + ' records' + " +
                             "(isValid(datum.mean) ? ', mean " + data.label + " ' + format(datum.mean, '.2f') : '')" } },
          update: { x: { field: "x" }, y: { field: "y" }, angle: { field: "angle" },
                    fontSize: { field: "fontSize" }, fontWeight: { field: "fontWeight" } } } }],
    };
  }

  function heatmap() {
    var cells = [], names = [];
    data.groups.forEach(function (g) {
      names.push(g.group);
      g.cells.forEach(function (c) { cells.push({ group: g.group, label: c.label, count: c.count }); });
    });
    var max = Math.max.apply(null, cells.map(function (c) { return c.count; }).concat([1]));
    var totals = data.groups.map(function (g) {
      return { group: g.group, text: g.count.toLocaleString("en-US") +
               (g.mean !== undefined ? "  ·  mean " + g.mean.toFixed(2) : "") };
    });
    var columns = data.labels.filter(function (d) { return !d.other; }).length;
    var width = Math.min(620, Math.max(240, 100 * columns));
    return {
      width: width, height: 22 * names.length, padding: { left: 8, right: 150, top: 8, bottom: 8 },
      autosize: { type: "pad" },
      data: [{ name: "cell-data", values: cells }, { name: "total-data", values: totals }],
      scales: [
        { name: "x", type: "band", range: "width", padding: 0.04,
          domain: data.labels.filter(function (d) { return !d.other; }).map(function (d) { return d.label; }) },
        { name: "y", type: "band", domain: names, range: "height", padding: 0.08 },
        { name: "shade", type: "linear", domain: [0, max], range: { scheme: "blues" }, zero: true },
      ],
      axes: [
        { orient: "top", scale: "x", title: data.label, domain: false, ticks: false, labelFontSize: 12 },
        { orient: "left", scale: "y", title: data.group, domain: false, ticks: false, labelLimit: 180,
          labelFontSize: 11, labelFont: "DejaVu Sans Mono, monospace" },
      ],
      marks: [
        { type: "rect", name: "cells", from: { data: "cell-data" },
          encode: { enter: {
            x: { scale: "x", field: "label" }, width: { scale: "x", band: 1 },
            y: { scale: "y", field: "group" }, height: { scale: "y", band: 1 },
            fill: { signal: "datum.count ? scale('shade', datum.count) : '#f4f4f4'" },
            tooltip: { signal: "datum.group + ', " + data.label + " ' + datum.label + ': ' + format(datum.count, ',')" } } } },
        { type: "text", name: "cell-counts", from: { data: "cell-data" },
          encode: { enter: {
            x: { scale: "x", field: "label", band: 0.5 }, y: { scale: "y", field: "group", band: 0.5 },
            text: { signal: "datum.count ? format(datum.count, ',') : ''" }, align: { value: "center" },
            baseline: { value: "middle" }, fontSize: { value: 11 },
            fill: { signal: "datum.count > " + max * 0.55 + " ? '#fff' : '#222'" } } } },
        { type: "text", name: "group-totals", from: { data: "total-data" },
          encode: { enter: {
            x: { signal: "width + 10" }, y: { scale: "y", field: "group", band: 0.5 }, text: { field: "text" },
            baseline: { value: "middle" }, fontSize: { value: 11 }, fill: { value: "#555" } } } },
      ],
    };
  }

  /* Draw spec(attempt) into the chart `id`; while fits(view) is false, try again (up to 6
   * times) with the next attempt. Resolves to the chart's name, or null when it failed. */
  function draw(id, spec, fits) {
    var element = document.querySelector("#" + id + " .chart");
    function attempt(n) {
      while (element.firstChild) element.removeChild(element.firstChild);
      var view = new vega.View(vega.parse(spec(n)), { renderer: "svg", container: element, hover: true });
      return view.runAsync().then(function () {
        if (fits && n < 6 && !fits(view)) { view.finalize(); return attempt(n + 1); }
        return id.replace("chart-", "");
      });
    }
    try {
      return attempt(0).catch(function (e) { return failed(element, e); });
    } catch (e) {
      return Promise.resolve(failed(element, e));
    }
  }

  /* The cloud leaves out words it cannot fit (drawn at size 0): then smaller sizes are tried. */
  function everyWordPlaced(view) {
    return view.data("phrase-data").every(function (d) { return d.fontSize > 0; });
  }

  function failed(element, e) {
    var p = document.createElement("p");
    p.className = "error";
    p.textContent = "This chart could not be drawn: " + (e && e.message ? e.message : e);
    element.appendChild(p);
    return null;
  }

  var charts = [];
  if (data.labels.length) charts.push(draw("chart-donut", donut));
  if (data.phrases.length)
    charts.push(draw("chart-cloud", function (n) { return cloud(Math.pow(0.85, n)); }, everyWordPlaced));
  if (data.groups.length && labelNames.length) charts.push(draw("chart-heatmap", heatmap));
  Promise.all(charts).then(function (drawn) {
    document.body.setAttribute("data-charts", drawn.filter(Boolean).join(" ") || "none");
  });
})();
