#!/usr/bin/env bash
# Model faults: each case runs a real batch job (the ASan runner) over a generated CSV against
# bin/model-server with one fault switched on, and ends with the same check: every input
# record is in the sink or in the dead-letter sink with a reason, exactly once (input ids =
# output ids + dead-letter ids, no duplicates), and read = written + filtered + dead_lettered.
# Cases: latency spikes, a 429 storm, 5xx, hung requests, closed connections, malformed and
# out-of-range answers, the server killed and restarted mid-job, and --fail-rate 0.1. Two cases
# end differently, because their errors do not heal: a wrong api key (401) and a key revoked
# mid-job stop the job at once (exit 1, one line naming the endpoint, the status and the
# server's message; a wrong key after one request), committing exactly what was written, and the revoked one then resumes
# against a good server to exactly once. The cases run side by side (each has its own server) to keep the suite short:
# they mostly wait on backoffs and latency, not on the CPU.
. "$(dirname "$0")/../lib.sh"

cat > "$T/job.lua" <<'LUA'
return job {
  name = param("name"),
  source = source.csv { path = param("input"), select = { id = "Id", summary = "Summary" },
                        types = { id = "integer" } },
  predict = model.openai {
    endpoint = env("OPENAI_BASE_URL"), api_key = secret("OPENAI_API_KEY"), model = "gpt-4o-mini",
    prompt = "Review title: {{summary}}",
    output = { rating = { type = "integer", min = 1, max = 5 } },
    limits = { concurrency = param("concurrency", 64), retries = param("retries", 5),
               timeout = param("timeout", "30s") },
  },
  map = function(r) return { id = r.id, rating = r.rating } end,
  sinks = sink.jsonl { path = param("output") },
  errors = sink.jsonl { path = param("errors") },
}
LUA
# the ids of the input, read by runnel itself (no model)
for rows in 300 600 1000 2000; do
  bin/gen-reviews --rows "$rows" --seed 5 > "$T/in-$rows.csv" 2>/dev/null
  seq 1 "$rows" > "$T/ids-$rows.txt"   # gen-reviews numbers its rows 1..N
done

# start_case NAME ROWS "SERVER ARGS" [--set k=v ...]: a model server of its own, then the job in
# the background (no cache: every record must go over HTTP)
declare -A case_rows case_url case_pid
start_case() {
  local name="$1" rows="$2" server_args="$3"; shift 3
  # shellcheck disable=SC2086
  start_model_server $server_args
  case_rows[$name]=$rows
  case_url[$name]=$MODEL_URL
  (
    export OPENAI_BASE_URL="$MODEL_URL/v1" OPENAI_API_KEY="${CASE_KEY:-sk-fault-test-KEY-0123456789}"
    exec $RUNNEL run "$T/job.lua" --set name="$name" --set input="$T/in-$rows.csv" \
      --set output="$T/$name.jsonl" --set errors="$T/$name.err" "$@" \
      --no-cache --state-dir "$T/state-$name" --no-progress --summary-json "$T/$name.json" >"$T/$name.log" 2>&1
  ) &
  case_pid[$name]=$!
}
stats() { curl -sS "${case_url[$1]}/stats"; }

# exactly_once NAME: the check every case ends with
exactly_once() {
  local name="$1" rows="${case_rows[$1]}"
  { jq -r .id "$T/$name.jsonl"; jq -r .record.id "$T/$name.err" 2>/dev/null; } | sort -n > "$T/$name.ids"
  check "$name: every input record in the sink or the dead letters, exactly once" cmp "$T/ids-$rows.txt" "$T/$name.ids"
  expect_eq "$name: no id twice" "" "$(sort -n "$T/$name.ids" | uniq -d | head -3 | tr '\n' ' ')"
  check "$name: every dead letter has a reason" \
    bash -c "[ ! -s '$T/$name.err' ] || jq -e -s 'all(.reason | type == \"string\" and length > 0)' '$T/$name.err' >/dev/null"
  check "$name: read = written + filtered + dead_lettered" invariant_holds "$T/$name.json"
  expect_eq "$name: read every row" "$rows" "$(sj "$T/$name.json" .read)"
}
# finished NAME: wait for the job; it must exit 0
finished() {
  wait "${case_pid[$1]}"
  local rc=$?
  expect_eq "$1: the job exits 0" 0 "$rc"
  [ "$rc" = 0 ] || sed 's/^/   | /' "$T/$1.log" | tail -5
}
all_written() { expect_eq "$1: every record written" "${case_rows[$1]}" "$(sj "$T/$1.json" .written)"; }

# ---- start every case -------------------------------------------------------------------------
start_case latency 600 "--latency-ms 5 --latency-jitter-ms 400"
start_case storm429 300 "--rate-429 0.5 --retry-after 0" --set retries=30
start_case http500 1000 "--rate-500 0.2" --set retries=12
start_case hang 600 "--hang-rate 0.05 --timeout 5" --set timeout=500ms --set retries=10
start_case close 1000 "--close-rate 0.1" --set retries=12
start_case malformed 1000 "--malformed-rate 0.2"
start_case range 1000 "--out-of-range-rate 0.2"
CASE_KEY="sk-WRONG-key-4f3e2d1c0b9a" start_case unauthorized 300 "--api-key sk-the-right-key-1234"
start_case revoked 2000 "--revoke-after 500 --latency-ms 2" --set concurrency=16
start_case fail10 2000 "--fail-rate 0.1 --retry-after 0" --set retries=12
start_case killed 2000 "--latency-ms 10" --set concurrency=32 --set retries=15
# the model server of "killed": SIGKILL it once the job is under way, restart it on the same
# port a second later
killed_port="${case_url[killed]##*:}"
killed_pid=$MODEL_PID
for _ in $(seq 100); do
  n=$(stats killed | jq .requests 2>/dev/null || echo 0)
  [ "${n:-0}" -ge 300 ] && break
  sleep 0.02
done
before_kill=$(stats killed | jq .requests)
stop_model_server "$killed_pid" KILL
sleep 1
start_model_server --port "$killed_port" --latency-ms 10
restarted_pid=$MODEL_PID

# ---- check every case --------------------------------------------------------------------------
finished latency
all_written latency
exactly_once latency

finished storm429
all_written storm429
s429=$(stats storm429 | jq .status_429)
check "storm429: the server answered 429 often ($s429 times)" test "$s429" -gt 150
expect_eq "storm429: the summary counts one retry per 429" "$s429" "$(sj "$T/storm429.json" .model.retries)"
expect_eq "storm429: requests = records + retries" "$(stats storm429 | jq .requests)" "$(sj "$T/storm429.json" .model.requests)"
exactly_once storm429

finished http500
all_written http500
s500=$(stats http500 | jq .status_500)
check "http500: the server answered 500 ($s500 times)" test "$s500" -gt 100
expect_eq "http500: the summary counts one retry per 500" "$s500" "$(sj "$T/http500.json" .model.retries)"
exactly_once http500

finished hang
all_written hang
hung=$(stats hang | jq .hung)
check "hang: requests hung ($hung) and each was retried after the 500ms timeout" \
  test "$hung" -gt 0 -a "$(sj "$T/hang.json" .model.retries)" -ge "$hung"
exactly_once hang

finished close
all_written close
closed=$(stats close | jq .closed)
check "close: connections were closed on it ($closed) and it retried" \
  test "$closed" -gt 50 -a "$(sj "$T/close.json" .model.retries)" -gt 0
exactly_once close

finished malformed
malformed=$(stats malformed | jq .malformed)
check "malformed: garbage answers ($malformed) were seen as invalid answers" \
  test "$malformed" -gt 100 -a "$(sj "$T/malformed.json" .model.invalid_answers)" -eq "$malformed"
check "malformed: most were corrected by the one retry" \
  test "$(sj "$T/malformed.json" .written)" -ge 900 -a "$(sj "$T/malformed.json" .model.corrected)" -gt 100
expect_eq "malformed: every correction call either corrected the record or dead-lettered it" \
  "$(sj "$T/malformed.json" .model.corrections)" "$(sj "$T/malformed.json" '.model.corrected + .dead_lettered')"
check "malformed: the rest are dead letters with the model's text and an 'invalid answer' reason" \
  bash -c "test -s '$T/malformed.err' && jq -e -s 'all(.stage == \"model\" and (.reason | startswith(\"invalid answer\")) and (.model_text | type == \"string\"))' '$T/malformed.err' >/dev/null"
exactly_once malformed

finished range
check "range: answers out of range were dead-lettered only after a second bad answer" \
  test "$(sj "$T/range.json" .written)" -ge 900 -a "$(sj "$T/range.json" .model.corrected)" -gt 100
expect_eq "range: every correction call either corrected the record or dead-lettered it" \
  "$(sj "$T/range.json" .model.corrections)" "$(sj "$T/range.json" '.model.corrected + .dead_lettered')"
check "range: dead letters say out of range, with the model's text" \
  bash -c "test -s '$T/range.err' && jq -e -s 'all((.reason | test(\"out of range 1..5\")) and (.model_text | type == \"string\"))' '$T/range.err' >/dev/null"
exactly_once range

# stopped NAME: the job must exit 1 with one line saying why; prints nothing else on success
stopped() {
  wait "${case_pid[$1]}"
  expect_eq "$1: the job stops with exit 1" 1 "$?"
}
# committed NAME: the checkpoint holds exactly what was written: the sink's length is the
# file's (and the source's position is the last written record's: the resumed "revoked" run
# reads exactly the rest)
committed() {
  local name="$1" cp="$T/state-$1/$1.checkpoint.json"
  check "$name: a checkpoint was written at the stop" test -s "$cp"
  expect_eq "$name: the checkpoint's sink length is what was written" "$(stat -c %s "$T/$name.jsonl")" \
    "$(jq '.sinks[0].length' "$cp" 2>/dev/null)"
  expect_eq "$name: the summary says all written records are committed" "$(sj "$T/$name.json" .written)" \
    "$(sj "$T/$name.json" .committed)"
}

stopped unauthorized
expect_eq "unauthorized: nothing written" 0 "$(sj "$T/unauthorized.json" .written)"
expect_eq "unauthorized: no record dead-lettered" 0 "$(sj "$T/unauthorized.json" .dead_lettered)"
expect_eq "unauthorized: it stopped at the first answer (the first request goes out alone)" 1 "$(stats unauthorized | jq .status_4xx)"
expect_eq "unauthorized: a 401 is not retried" 0 "$(sj "$T/unauthorized.json" .model.retries)"
port="${case_url[unauthorized]##*:}"
check "unauthorized: one line names the endpoint, the status and the server's message" \
  grep -qx "runnel: model.openai: POST http://127.0.0.1:$port/v1/chat/completions: HTTP 401: Incorrect API key provided. (the endpoint refused the credentials (HTTP 401): no record can succeed; check api_key)" "$T/unauthorized.log"
expect_eq "unauthorized: the summary's error is that line" \
  "model.openai: POST http://127.0.0.1:$port/v1/chat/completions: HTTP 401: Incorrect API key provided. (the endpoint refused the credentials (HTTP 401): no record can succeed; check api_key)" \
  "$(sj "$T/unauthorized.json" .error)"
committed unauthorized
check "unauthorized: the key is in no output, dead letter, summary, log or checkpoint" \
  bash -c "! grep -rl 'sk-WRONG-key' '$T'/unauthorized.* '$T/state-unauthorized'"

stopped revoked
written=$(sj "$T/revoked.json" .written)
check "revoked: the records answered before the key went were written ($written)" test "$written" -gt 0 -a "$written" -le 500
expect_eq "revoked: no record dead-lettered" 0 "$(sj "$T/revoked.json" .dead_lettered)"
check "revoked: it stopped at once ($(stats revoked | jq .status_4xx) answers 401)" test "$(stats revoked | jq .status_4xx)" -le 16
check "revoked: the stop names the status and the message" grep -q "HTTP 401: Incorrect API key provided" "$T/revoked.log"
committed revoked
# the key works again: --resume finishes the job, every record exactly once
start_model_server
OPENAI_BASE_URL="$MODEL_URL/v1" OPENAI_API_KEY=sk-fault-test-KEY-0123456789 $RUNNEL run "$T/job.lua" --set name=revoked \
  --set input="$T/in-2000.csv" --set output="$T/revoked.jsonl" --set errors="$T/revoked.err" --set concurrency=16 \
  --no-cache --state-dir "$T/state-revoked" --no-progress --resume --summary-json "$T/revoked.json" >"$T/revoked.log" 2>&1
expect_eq "revoked: --resume with a good key exits 0" 0 "$?"
expect_eq "revoked: the resumed run read only the rest" "$((2000 - written))" "$(sj "$T/revoked.json" .read)"
check "revoked: the resumed run made no request for what was committed" test "$(curl -sS "$MODEL_URL/stats" | jq .requests)" -eq "$((2000 - written))"
jq -r .id "$T/revoked.jsonl" > "$T/revoked.ids"
check "revoked: the sink holds every record exactly once, in order" cmp "$T/ids-2000.txt" "$T/revoked.ids"

finished fail10
all_written fail10
expect_eq "fail10: no dead letters" 0 "$(sj "$T/fail10.json" .dead_lettered)"
failures=$(stats fail10 | jq '.status_429 + .status_500')
check "fail10: the server failed ~10% of requests ($failures)" test "$failures" -gt 100
expect_eq "fail10: the summary counts every retry" "$failures" "$(sj "$T/fail10.json" .model.retries)"
check "fail10: sink holds each id once" bash -c "jq -r .id '$T/fail10.jsonl' | sort -n | cmp -s - '$T/ids-2000.txt'"
exactly_once fail10

finished killed
check "killed: the first server was killed mid-job (it had $before_kill of 2000 requests)" \
  test "$before_kill" -gt 0 -a "$before_kill" -lt 2000
check "killed: the restarted server on port $killed_port answered the rest" \
  test "$(curl -sS "http://127.0.0.1:$killed_port/stats" | jq .ok)" -gt 0
all_written killed
check "killed: the outage cost retries ($(sj "$T/killed.json" .model.retries))" test "$(sj "$T/killed.json" .model.retries)" -gt 0
exactly_once killed
stop_model_server "$restarted_pid"
finish
