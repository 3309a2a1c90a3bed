#!/usr/bin/env bash
# GET /metrics of runnel serve, read by Prometheus' own parser (Debian python3-prometheus-client):
# each run publishes its registry over the socket serve gives it, serve merges them with its own
# families (state, restarts) into one exposition with HELP and TYPE once per family. While a
# stream job runs, its counters move; a Kafka job shows its lag per partition; model figures
# (requests, retries, 429s, tokens, latency histogram, calls in flight, the window) are there.
# `runnel run --metrics-listen` serves the same for a job run by hand. GET /jobs/NAME/labels
# counts the labels and phrases of a job's output as it grows.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/serve_lib.sh"
PY=/usr/bin/python3
check "python3-prometheus-client is installed (make deps)" $PY -c "import prometheus_client"
start_model_server --latency-ms 40 --rate-429 0.1
start_kafka --topic reviews:2

# the parser's view: "name labels value" per sample, labels sorted
cat > "$T/read.py" <<'PY'
import json, sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        print(f"{family.type} {s.name} {json.dumps(s.labels, sort_keys=True)} {s.value!r}")
PY
scrape() { curl -sf "$SERVE_URL/metrics" > "$T/metrics.txt" && $PY "$T/read.py" < "$T/metrics.txt" > "$T/parsed.txt"; }
# value NAME LABELS-JSON: the sample's value as the parser read it ("" when absent)
value() { grep -F "$1 $2 " "$T/parsed.txt" | head -1 | awk '{print $NF}'; }

bin/gen-reviews --rows 400 --seed 3 > "$T/reviews.csv" 2>/dev/null
cp "$T/reviews.csv" "$T/live.csv"
cat > "$JOBS/rate.lua" <<LUA
return job {
  name = "rate", checkpoint_interval = "200ms",
  source = source.csv { path = "$T/live.csv", select = { id = "Id", summary = "Summary" } },
  predict = model.openai { endpoint = env("OPENAI_BASE_URL"), model = "m", prompt = "{{summary}}", cache = false,
                           output = { rating = { type = "integer", min = 1, max = 5 } },
                           limits = { concurrency = 2, retries = 8 } },
  map = function(r) return { id = r.id, summary = r.summary, rating = r.rating } end,
  sinks = sink.jsonl { path = "$T/rate.jsonl" },
}
LUA
cat > "$JOBS/topic.lua" <<LUA
return job {
  name = "topic", checkpoint_interval = "200ms",
  source = source.kafka { brokers = env("KAFKA_BROKERS"), topic = "reviews", group = "metrics-test", format = "json" },
  predict = model.openai { endpoint = env("OPENAI_BASE_URL"), model = "m", prompt = "{{summary}}", cache = false,
                           output = { rating = { type = "integer", min = 1, max = 5 } },
                           limits = { concurrency = 1, retries = 8 } },
  sinks = sink.jsonl { path = "$T/topic.jsonl" },
}
LUA
cat > "$JOBS/crash.lua" <<LUA
return job {
  name = "crash", max_errors = 1,
  serve = { mode = "stream", restart = { on = "failure", backoff = "200ms..400ms", budget = "2/1m" } },
  source = source.csv { path = "$T/reviews.csv" },
  map = function(r) error("no map") end,
  sinks = sink.jsonl { path = "$T/crash.jsonl" },
}
LUA

start_serve
check "the jobs run" wait_for 30 sh -c "[ \"\$(curl -s $SERVE_URL/jobs/rate | jq -r .state)\" = RUNNING ] && [ \"\$(curl -s $SERVE_URL/jobs/topic | jq -r .state)\" = RUNNING ]"
has_read() { scrape && [ -n "$(value runnel_records_read_total '{"job": "rate"}')" ]; }
check "GET /metrics shows the stream job's counters" wait_for 30 has_read
check "the exposition parses with prometheus_client" sh -c "$PY '$T/read.py' < '$T/metrics.txt' >/dev/null"
first=$(value runnel_records_read_total '{"job": "rate"}')
moved() { scrape && awk -v a="$first" -v b="$(value runnel_records_read_total '{"job": "rate"}')" 'BEGIN { exit !(b > a) }'; }
check "while the job runs its records read go up (from $first)" wait_for 30 moved
written_moved() { scrape && awk -v b="$(value runnel_records_total '{"job": "rate", "outcome": "written"}')" 'BEGIN { exit !(b > 0) }'; }
check "and its records written (runnel_records_total{outcome=\"written\"})" wait_for 30 written_moved
expect_eq "serve's own family: the job's state" 1.0 "$(value runnel_job_state '{"job": "rate", "state": "RUNNING"}')"
expect_eq "with 0 for the states it is not in" 0.0 "$(value runnel_job_state '{"job": "rate", "state": "FAILED"}')"
for f in runnel_records_total runnel_records_read_total runnel_model_requests_total runnel_model_latency_seconds runnel_job_state; do
  expect_eq "HELP and TYPE once for $f" "1 1" "$(grep -c "^# HELP $f " "$T/metrics.txt") $(grep -c "^# TYPE $f " "$T/metrics.txt")"
done
for f in runnel_model_requests_total runnel_model_retries_total runnel_model_rate_limited_total runnel_model_tokens_in_total \
         runnel_model_tokens_out_total runnel_model_cost_usd runnel_model_calls_in_flight runnel_model_concurrency_window \
         runnel_model_latency_seconds_bucket runnel_model_latency_seconds_count runnel_records_total; do
  expect_contains "model and record families of the job: $f" "$T/parsed.txt" " $f {\"job\": \"rate\""
done
expect_eq "the window is the declared concurrency" 2.0 "$(value runnel_model_concurrency_window '{"job": "rate", "model": "openai.m"}')"
rate_limited() { scrape && awk -v b="$(value runnel_model_rate_limited_total '{"job": "rate", "model": "openai.m"}')" 'BEGIN { exit !(b > 0) }'; }
check "429s are counted (the model server refuses 10%)" wait_for 30 rate_limited
crash_failed() { scrape && [ "$(value runnel_job_state '{"job": "crash", "state": "FAILED"}')" = 1.0 ]; }
check "the crashing job: FAILED" wait_for 30 crash_failed
expect_eq "after its 2 restarts" 2.0 "$(value runnel_job_restarts_total '{"job": "crash"}')"

# ---- Kafka: the lag of each partition ----
# keyed by id, so both partitions get messages (kcat's default partitioner hashes the key)
$PY -c "import csv,json; [print(r['Id'] + '|' + json.dumps({'id': r['Id'], 'summary': r['Summary']})) for r in csv.DictReader(open('$T/reviews.csv'))]" |
  head -150 | kcat -P -K '|' -b "$KAFKA_BROKERS" -t reviews 2>/dev/null
lagging() { scrape && grep -F 'runnel_kafka_consumer_lag {"job": "topic", "partition": "' "$T/parsed.txt" | awk '{ if ($NF + 0 > 0) found = 1 } END { exit !found }'; }
check "while the Kafka job is behind, its lag shows per partition" wait_for 60 lagging
grep -F 'runnel_kafka_consumer_lag {"job": "topic"' "$T/parsed.txt" | sed 's/^/   /'
caught_up() { scrape && [ "$(grep -cF 'runnel_kafka_consumer_lag {"job": "topic", "partition": "' "$T/parsed.txt")" = 2 ] &&
              grep -F 'runnel_kafka_consumer_lag {"job": "topic"' "$T/parsed.txt" | awk '{ if ($NF != "0.0") bad = 1 } END { exit bad }'; }
check "once it caught up, both partitions' lag is 0" wait_for 90 caught_up

# ---- the labels the dashboard draws ----
label_count() { curl -sf "$SERVE_URL/jobs/rate/labels" > "$T/labels.json"; }
check "GET /jobs/rate/labels" label_count
expect_eq "counts the model's output field" rating "$(jq -r .label "$T/labels.json")"
lines_now=$(jq -r .records "$T/labels.json")
check "a record count ($lines_now) no bigger than the file's lines" test "$lines_now" -le "$(lines "$T/rate.jsonl")"
expect_eq "the labels' counts add up to the records with a rating" "$(jq '.labelled' "$T/labels.json")" "$(jq '[.labels[].count] | add' "$T/labels.json")"
check "and the phrases of its summaries" test "$(jq '.phrases | length' "$T/labels.json")" -gt 5
expect_eq "a job without a JSONL sink has none: 404" 404 "$(http_status GET /jobs/nope/labels)"

# ---- a job run by hand: --metrics-listen ----
cat > "$T/hand.lua" <<LUA
return job {
  name = "hand",
  source = source.csv { path = "$T/reviews.csv", select = { id = "Id", summary = "Summary" } },
  predict = model.openai { endpoint = env("OPENAI_BASE_URL"), model = "m", prompt = "{{summary}}", cache = false,
                           output = { rating = { type = "integer", min = 1, max = 5 } }, limits = { concurrency = 1, retries = 8 } },
  sinks = sink.jsonl { path = "$T/hand.jsonl" },
}
LUA
$RUNNEL run "$T/hand.lua" --no-progress --state-dir "$T/hand-state" --metrics-listen 127.0.0.1:0 2>"$T/hand.err" &
HAND=$!
_pids+=("$HAND")
check "runnel run --metrics-listen says where" wait_for 20 grep -q 'metrics on http://' "$T/hand.err"
HAND_URL="$(sed -n 's/.*metrics on \(http[^ ]*\).*/\1/p' "$T/hand.err" | head -1)"
hand_read() { curl -sf "$HAND_URL" | $PY "$T/read.py" > "$T/hand.txt" && grep -F 'runnel_records_read_total {"job": "hand"}' "$T/hand.txt" | awk '{print $NF}'; }
h1=$(wait_for 10 hand_read >/dev/null; hand_read)
check "its /metrics parses and counts records ($h1)" test -n "$h1"
hand_moved() { awk -v a="$h1" -v b="$(hand_read)" 'BEGIN { exit !(b > a) }'; }
check "and the count moves while it runs" wait_for 30 hand_moved
expect_eq "another path: 404" 404 "$(curl -s -o /dev/null -w '%{http_code}' "${HAND_URL%/metrics}/other")"
kill -INT "$HAND"; wait "$HAND"
$RUNNEL run "$T/hand.lua" --metrics-listen nowhere 2>"$T/bad.err"
expect_eq "a bad --metrics-listen: exit 1" 1 $?
expect_contains "naming the option" "$T/bad.err" "--metrics-listen nowhere: expected HOST:PORT"
$RUNNEL run "$T/hand.lua" --metrics-fd 1 2>"$T/bad.err"
expect_eq "--metrics-fd that is not a socket: exit 2" 2 $?

stop_serve
expect_eq "serve exits 0 on SIGTERM" 0 "$SERVE_RC"
finish
