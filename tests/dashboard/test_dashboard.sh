#!/usr/bin/env bash
# runnel serve's dashboard in headless Chromium (Debian's), driven over the DevTools protocol
# by puppeteer-core (npm, the version pinned in package-lock.json, installed here with npm ci):
# the jobs table shows a stream job RUNNING with its numbers, its donut and word cloud are drawn
# and grow while it runs, and clicking stop and start changes its state (read back from the API).
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../serve/serve_lib.sh"
command -v chromium >/dev/null || { fail "chromium is not installed (make test installs TEST_PACKAGES)"; finish; }
command -v npm >/dev/null || { fail "npm is not installed (make test installs TEST_PACKAGES)"; finish; }
DIR=tests/dashboard
check "npm ci installs puppeteer-core as package-lock.json pins it" sh -c "cd $DIR && npm ci --no-audit --no-fund --loglevel=error"
expect_eq "the pinned version" "21.11.0" "$(jq -r .version "$DIR/node_modules/puppeteer-core/package.json")"

start_model_server --latency-ms 30
bin/gen-reviews --rows 3000 --seed 5 > "$T/reviews.csv" 2>/dev/null
cat > "$JOBS/ratings.lua" <<LUA
return job {
  name = "ratings", checkpoint_interval = "200ms",
  serve = { mode = "stream" },
  source = source.csv { path = "$T/reviews.csv", select = { id = "Id", summary = "Summary" } },
  predict = model.openai { endpoint = env("OPENAI_BASE_URL"), model = "m", prompt = "{{summary}}", cache = false,
                           output = { rating = { type = "integer", min = 1, max = 5 } }, limits = { concurrency = 2 } },
  map = function(r) return { id = r.id, summary = r.summary, rating = r.rating } end,
  sinks = sink.jsonl { path = "$T/ratings.jsonl" },
}
LUA
start_serve
check "the job runs" wait_for 30 state_is ratings RUNNING
timeout 240 node "$DIR/drive.js" "$SERVE_URL/" ratings ${SCREENSHOT:+"$SCREENSHOT"} > "$T/drive.out" 2>&1
DRIVE=$?
sed 's/^/   /' "$T/drive.out"
expect_eq "the browser session passed every step" 0 "$DRIVE"
for s in "the donut of its labels is drawn" "the word cloud is drawn" "clicking stop stops it" "clicking start starts it again"; do
  expect_contains "$s" "$T/drive.out" "ok $s"
done
check "serve ran the clicks: a run stopped by the API, then a new one" \
  test "$(db "SELECT count(*) FROM runs WHERE job = 'ratings' AND state = 'STOPPED'")" -ge 1
check "and the job is RUNNING again" wait_for 20 state_is ratings RUNNING
expect_eq "the page and its files need no token, carry no job data" "200 200 200" \
  "$(for p in / /assets/dashboard.js /assets/vega.js; do curl -s -o /dev/null -w '%{http_code} ' "$SERVE_URL$p"; done | sed 's/ $//')"
expect_eq "the report's files are not served" 404 "$(http_status GET /assets/report.js)"
stop_serve
expect_eq "serve exits 0 on SIGTERM" 0 "$SERVE_RC"
finish
