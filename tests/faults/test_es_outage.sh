#!/usr/bin/env bash
# Elasticsearch down is an outage, not a bad record (issue 15): bin/es-dev (its documents kept in
# a --data journal, as a real cluster keeps them on disk) is killed mid-job.
# 1. down 4 s, then restarted on the same port: the job waits (source held back), resumes, and
#    every record lands once, 0 dead letters; the summary shows the pause.
# 2. down longer than the job's limits.outage (a job with no model): exit 1 with the one line
#    naming the URL and the cause and what was committed; the checkpoint covers only documents
#    that landed; a --resume once es-dev is back writes the rest: _count equals the input.
# 3. whole-request 503s alone (the cluster up but refusing everyone) are an outage too.
. "$(dirname "$0")/../lib.sh"

ROWS=3000
bin/gen-reviews --rows $ROWS --seed 7 > "$T/in.csv" 2>/dev/null
cat > "$T/job.lua" <<'LUA'
return job {
  name = param("index"),
  source = source.csv { path = param("input"), select = { review_id = "Id", score = "Score" },
                        types = { review_id = "integer", score = "integer" } },
  sinks = { sink.elasticsearch { url = param("url"), index = param("index"), id = "review_id",
                                 batch = { count = 50, time = "100ms" }, in_flight = 1,
                                 backoff = "20ms", max_backoff = "200ms", timeout = "5s" } },
  errors = sink.jsonl { path = param("errors") },
  limits = { outage = param("outage") },
  checkpoint_interval = "200ms",
  window = 100, -- a checkpoint flushes what is in flight: keep it short, as a stream job's is
}
LUA
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
es_start() {   # es-dev on $PORT, keeping its documents in $T/es.data across restarts
  bin/es-dev --port "$PORT" --data "$T/es.data" --latency-ms "${1:-60}" >"$T/es.out" 2>>"$T/es.err" &
  ES_PID=$!
  _pids+=("$ES_PID")
  for _ in $(seq 100); do curl -fsS "$URL/" >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "es-dev did not start:"; cat "$T/es.err"; exit 1
}
es_kill() { kill -9 "$ES_PID"; wait "$ES_PID" 2>/dev/null; }
lines() { if [ -f "$1" ]; then wc -l < "$1"; else echo 0; fi; }
count() { curl -fsS "$URL/$1/_count" -H 'Content-Type: application/json' ${2:+-d "$2"} | jq -r .count; }
wait_count() { for _ in $(seq 300); do [ "$(count "$1" 2>/dev/null || echo 0)" -ge "$2" ] && return 0; sleep 0.05; done; return 1; }
run_bg() { # index outage state-dir [--resume]; its files are $T/INDEX.*, or $T/INDEX.resume.* with --resume
  local f="$T/$1${4:+.resume}"
  $RUNNEL run "$T/job.lua" --no-progress --state-dir "$T/$3" --set input="$T/in.csv" --set url="$URL" \
    --set index="$1" --set outage="$2" --set errors="$T/$1.errors.jsonl" --summary-json "$f.s.json" "${@:4}" >"$f.out" 2>"$f.err" &
  RUN_PID=$!
}

# 1. a short outage
es_start
run_bg short 30s st1
check "short: documents land before the kill" wait_count short 300
es_kill
sleep 1
check "short: the job waits while the cluster is down" kill -0 "$RUN_PID"
sleep 3
es_start
wait "$RUN_PID"; rc=$?
expect_eq "short: the job finishes once the cluster is back" 0 "$rc"
expect_eq "short: every record written" $ROWS "$(sj "$T/short.s.json" .written)"
expect_eq "short: 0 dead letters" 0 "$(sj "$T/short.s.json" .dead_lettered)"
expect_eq "short: every record landed once (_count)" $ROWS "$(count short)"
expect_contains "short: the summary shows the pause and its cause" "$T/short.err" "connection refused"
expect_contains "short: ... and that it resumed" "$T/short.err" "(resumed)"

# 2. down for longer than limits.outage; the job has no model: the job's own limits.outage
run_bg long 2s st2
check "long: documents land before the kill" wait_count long 300
es_kill
start=$(date +%s)
wait "$RUN_PID"; rc=$?
took=$(( $(date +%s) - start ))
expect_eq "long: the job stops with exit 1" 1 "$rc"
check "long: ... after limits.outage (2s), not the 10m default (took ${took}s)" test "$took" -le 12
check "long: one line names the sink, the time, the URL and the cause" \
  grep -qE "^runnel: sink\.elasticsearch \([^)]*job\.lua:5\): unreachable for [0-9.]+s \($URL: connection refused" "$T/long.err"
check "long: ... and what was committed" grep -qE "nothing after line [0-9]+ of source\.csv \([^)]*job\.lua:3\) was committed" "$T/long.err"
expect_eq "long: nothing dead-lettered" 0 "$(lines "$T/long.errors.jsonl")"
line=$(grep -oE 'nothing after line [0-9]+' "$T/long.err" | grep -oE '[0-9]+$')
saved=$(jq -r .source.line "$T/st2/long.checkpoint.json" 2>/dev/null)
cp "$T/st2/long.checkpoint.json" "$T/long.checkpoint.json"
expect_eq "long: the checkpoint is at the line the message names" "$line" "$saved"
# the records that end at or before that line (summaries hold line breaks: count CSV records)
committed=$(python3 -c '
import csv, sys
r = csv.reader(open(sys.argv[1], newline="")); next(r)
n = 0
for row in r:
    if r.line_num > int(sys.argv[2]): break
    n += 1
print(n)' "$T/in.csv" "${line:-0}")
check "long: some records were committed ($committed), not all" test "$committed" -gt 0 -a "$committed" -lt $ROWS
es_start 0
expect_eq "long: every committed record is in the index (review_id <= $committed)" "$committed" \
  "$(count long "{\"query\":{\"range\":{\"review_id\":{\"lte\":$committed}}}}")"
run_bg long 2s st2 --resume
wait "$RUN_PID"; rc=$?
expect_eq "long: --resume once the cluster is back finishes" 0 "$rc"
expect_eq "long: ... and the index holds the whole input, nothing lost" $ROWS "$(count long)"
expect_eq "long: ... 0 dead letters" 0 "$(lines "$T/long.errors.jsonl")"

# 3. the cluster up but answering 503 to every bulk: an outage too, the reason says HTTP 503
curl -sS -X POST "$URL/_fault" -H 'Content-Type: application/json' -d '{"request_status":503,"request_every":1}' >/dev/null
run_bg refused 1s st3
wait "$RUN_PID"; rc=$?
expect_eq "503: the job stops with exit 1" 1 "$rc"
check "503: the line names the URL and HTTP 503" grep -qE "unreachable for [0-9.]+s \($URL: HTTP 503" "$T/refused.err"
expect_eq "503: nothing dead-lettered" 0 "$(lines "$T/refused.errors.jsonl")"
curl -sS -X DELETE "$URL/_fault" >/dev/null
finish
