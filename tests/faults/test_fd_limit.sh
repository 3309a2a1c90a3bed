#!/usr/bin/env bash
# The file descriptor limit (issue 19): calls in flight need connections, connections need
# descriptors. Three cases, each a real job against a real server:
#   lowered   concurrency 1000 under `ulimit -n 256`: lowered at open to what fits, one line says
#             so (asked, limit, used, how to raise it); every record written, no retry, no wait.
#   shortage  concurrency "auto" while the limit is cut (prlimit) to a few above what the runner
#             holds: the window's next connections find no descriptor; they wait and go again
#             without counting as attempts (the server sees one request per record), the job
#             ends well, checkpoints every 300 ms go on through the shortage.
#   http2     a TLS server speaking HTTP/2 (nghttpd, static answers) with concurrency 1000 under
#             `ulimit -n 128`: lowered for HTTP/1.1 first, then 1000 calls share a few connections.
. "$(dirname "$0")/../lib.sh"

cat > "$T/job.lua" <<'LUA'
local concurrency = param("concurrency", "1000")
return job {
  name = param("name"),
  checkpoint_interval = "300ms",
  source = source.csv { path = param("input"), select = { id = "Id", summary = "Summary" }, types = { id = "integer" } },
  predict = model.openai {
    endpoint = env("OPENAI_BASE_URL"), model = "gpt-4o-mini", cache = false,
    prompt = "Review title: {{summary}}",
    output = { rating = { type = "integer", min = 1, max = 5 } },
    limits = { concurrency = tonumber(concurrency) or concurrency, retries = 3 },
  },
  map = function(r) return { id = r.id, rating = r.rating } end,
  sinks = sink.jsonl { path = param("output") },
  errors = sink.jsonl { path = param("errors") },
}
LUA
bin/gen-reviews --rows 2000 --seed 19 > "$T/in.csv" 2>/dev/null

# run NAME ARGS...: the job (the ASan runner) with its own files; its exit code in $T/NAME.rc.
# start NAME ARGS...: the same in the background, the runner's pid in $job (for prlimit).
job_cmd() {
  local name="$1"; shift
  cmd=("$RUNNEL" run "$T/job.lua" --set name="$name" --set input="$T/in.csv" --set output="$T/$name.jsonl"
       --set errors="$T/$name.err" --state-dir "$T/state-$name" --no-progress --summary-json "$T/$name.json" "$@")
}
run() { job_cmd "$@"; "${cmd[@]}" >"$T/$1.log" 2>&1; echo $? > "$T/$1.rc"; }
start() { job_cmd "$@"; "${cmd[@]}" >"$T/$1.log" 2>&1 & job=$!; }

# all_there NAME [ROWS]: exit 0, every record (of the first ROWS, 2000) written once, no dead
# letter, read = written + filtered + dead_lettered
all_there() {
  local rows="${2:-2000}"
  expect_eq "$1: the job exits 0" 0 "$(cat "$T/$1.rc")"
  [ "$(cat "$T/$1.rc")" = 0 ] || tail -5 "$T/$1.log"
  expect_eq "$1: every record written" "$rows" "$(sj "$T/$1.json" .written)"
  expect_eq "$1: no dead letter" 0 "$(sj "$T/$1.json" .dead_lettered)"
  check "$1: each id once in the sink" bash -c "jq -r .id '$T/$1.jsonl' | sort -n | cmp -s - <(seq 1 $rows)"
  check "$1: read = written + filtered + dead_lettered" invariant_holds "$T/$1.json"
}

# ---- lowered: 1000 calls asked, 256 descriptors ------------------------------------------------
start_model_server --latency-ms 200
lowered_url=$MODEL_URL
(ulimit -n 256; run lowered)
all_there lowered
line=$(grep -F 'limits.concurrency = 1000 lowered to' "$T/lowered.log")
echo "the line: $line"
check "lowered: one line says it was lowered" test "$(grep -c 'lowered to' "$T/lowered.log")" = 1
fit=$(sj "$T/lowered.json" .model.concurrency.limit)
check "lowered: to what fits under 256 ($fit)" test "$fit" -gt 100 -a "$fit" -lt 256
check "lowered: the line gives the asked, the limit, the use and the remedy" bash -c \
  "grep -q 'lowered to $fit calls in flight' <<<\"\$0\" && grep -q 'open files limit is 256' <<<\"\$0\" &&
   grep -Eq 'job needs [0-9]+ for other things' <<<\"\$0\" && grep -q 'LimitNOFILE=' <<<\"\$0\" &&
   grep -q 'ulimit -Hn' <<<\"\$0\"" "$line"
check "lowered: never more calls in flight than fit ($(sj "$T/lowered.json" .model.in_flight_max))" \
  test "$(sj "$T/lowered.json" .model.in_flight_max)" -le "$fit"
check "lowered: nor connections ($(sj "$T/lowered.json" .model.connections_max))" \
  test "$(sj "$T/lowered.json" .model.connections_max)" -le "$fit"
expect_eq "lowered: no retry" 0 "$(sj "$T/lowered.json" .model.retries)"
expect_eq "lowered: no call waited for a descriptor" 0 "$(sj "$T/lowered.json" .model.descriptors.waits)"
expect_eq "lowered: the server saw one request per record" 2000 "$(curl -sS "$lowered_url/stats" | jq .requests)"
expect_eq "lowered: the summary JSON says so" "true 256 1000" \
  "$(sj "$T/lowered.json" '"\(.model.descriptors.lowered) \(.model.descriptors.limit) \(.model.concurrency.asked)"')"
expect_contains "lowered: the summary line shows calls over connections" "$T/lowered.log" \
  "calls in flight max $(sj "$T/lowered.json" .model.in_flight_max) over"

# ---- shortage: the limit cut under a growing "auto" window -----------------------------------
start_model_server --latency-ms 200
short_url=$MODEL_URL
start shortage --set concurrency=auto --limit 1000  # 1,000 records: after the cut they go ~25 at a time
for _ in $(seq 200); do  # until the "auto" window has grown to 24 calls in flight
  [ "$(curl -sS "$short_url/stats" | jq .in_flight)" -ge 24 ] && break
  kill -0 "$job" 2>/dev/null || break
  sleep 0.05
done
open=$(ls "/proc/$job/fd" | wc -l)
check "shortage: the job is under way ($open descriptors open)" test "$open" -gt 24
prlimit --pid "$job" --nofile=$((open + 4)):$((open + 4))
echo "cut the limit of pid $job to $((open + 4))"
wait "$job"
echo $? > "$T/shortage.rc"
all_there shortage 1000
expect_contains "shortage: one note says the process ran out of descriptors" "$T/shortage.log" \
  "the process ran out of file descriptors"
check "shortage: calls waited for a descriptor ($(sj "$T/shortage.json" .model.descriptors.waits))" \
  test "$(sj "$T/shortage.json" .model.descriptors.waits)" -gt 0
expect_eq "shortage: waiting is not an attempt: no retry" 0 "$(sj "$T/shortage.json" .model.retries)"
expect_eq "shortage: the runner's requests are the records and the waits" \
  "$(sj "$T/shortage.json" '1000 + .model.descriptors.waits')" "$(sj "$T/shortage.json" .model.requests)"
expect_eq "shortage: the server saw one request per record" 1000 "$(curl -sS "$short_url/stats" | jq .requests)"
check "shortage: the auto window's ceiling came down" test "$(sj "$T/shortage.json" .model.concurrency.ceiling)" -lt 256
check "shortage: no checkpoint failed" bash -c "! grep -q 'cannot create' '$T/shortage.log'"

# ---- http2: calls share connections ----------------------------------------------------------
if command -v nghttpd >/dev/null && command -v openssl >/dev/null; then
  mkdir -p "$T/h2/v1/chat"
  printf '%s' '{"id":"c","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"{\"rating\":4}"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}' \
    > "$T/h2/v1/chat/completions"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/h2.key" -out "$T/h2.crt" -days 1 -subj /CN=127.0.0.1 \
    -addext "subjectAltName=IP:127.0.0.1" 2>/dev/null
  port=$(free_port)
  nghttpd --address=127.0.0.1 -d "$T/h2" "$port" "$T/h2.key" "$T/h2.crt" >"$T/nghttpd.log" 2>&1 &
  _pids+=($!)
  for _ in $(seq 100); do
    curl -sS --cacert "$T/h2.crt" -o /dev/null "https://127.0.0.1:$port/v1/chat/completions" 2>/dev/null && break
    sleep 0.05
  done
  (ulimit -n 128; export OPENAI_BASE_URL="https://127.0.0.1:$port/v1" SSL_CERT_FILE="$T/h2.crt"; run http2)
  all_there http2
  expect_eq "http2: the answers came over HTTP/2" "2" "$(sj "$T/http2.json" .model.http_version)"
  expect_contains "http2: first lowered for HTTP/1.1" "$T/http2.log" "limits.concurrency = 1000 lowered to"
  expect_contains "http2: then lifted" "$T/http2.log" "so calls share connections: 1000 calls in flight"
  check "http2: more calls in flight ($(sj "$T/http2.json" .model.in_flight_max)) than 128 descriptors hold" \
    test "$(sj "$T/http2.json" .model.in_flight_max)" -gt 128
  check "http2: over a few connections ($(sj "$T/http2.json" .model.connections_max))" \
    test "$(sj "$T/http2.json" .model.connections_max)" -le 11
  expect_eq "http2: no retry" 0 "$(sj "$T/http2.json" .model.retries)"
else
  fail "http2: nghttpd (nghttp2-server) or openssl is missing: make deps installs them"
fi
finish
