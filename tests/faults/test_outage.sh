#!/usr/bin/env bash
# An outage is not a bad record (issue 15): the real bin/model-server is killed and restarted on
# its port while a batch job (the ASan runner) runs; the endpoint's circuit breaker holds the
# records back instead of spending their retries, and limits.outage stops the job, committing
# only what was written. Cases (side by side, each with its own port, so the suite waits the
# longest one, not their sum):
#   down20  the endpoint down from the start for 20 s, retries = 2: 0 dead letters, all written once
#   stop    the endpoint killed mid-job for longer than limits.outage (2s): exit 1 with the line,
#           the checkpoint holds what was written; --resume with the endpoint back writes the rest
#   storm   every answer 429 with Retry-After 1 for 60 s (STORM_S; twenty times the whole retry budget of
#           retries = 2), then a healthy server: 0 dead letters
#   flap    the server up 1 s, down 1 s for the whole run (half the connections refused): all written
#   refuse  one record answered 400 (content filter), amid a 4 s outage: only it dead-lettered
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
    limits = { concurrency = param("concurrency", 8), retries = param("retries", 2),
               outage = param("outage", "10m") },
  },
  map = function(r) return { id = r.id, rating = r.rating } end,
  sinks = sink.jsonl { path = param("output") },
  errors = sink.jsonl { path = param("errors") },
}
LUA
export OPENAI_API_KEY=sk-outage-test-0123456789
rows=300
STORM_S="${STORM_S:-60}"   # the issue's 60 s of 429s; shorter when run by hand
{ echo "Id,Summary"; for i in $(seq 1 $rows); do
    if [ "$i" = 150 ]; then echo "$i,REFUSE-THIS please"; else echo "$i,Great honey number $i"; fi
  done; } > "$T/in.csv"
seq 1 $rows > "$T/ids.txt"

# serve NAME PORT [ARGS...]: bin/model-server on PORT (restarted on the same port after a kill);
# sets pid[NAME]
declare -A port pid job
serve() { local name="$1" p="$2"; shift 2; start_model_server --port "$p" "$@"; pid[$name]=$MODEL_PID; }
down() { stop_model_server "${pid[$1]}"; }
# run NAME [--set k=v ...]: the job in the background, against port[NAME]
run() {
  local name="$1"; shift
  ( export OPENAI_BASE_URL="http://127.0.0.1:${port[$name]}/v1"
    exec $RUNNEL run "$T/job.lua" --set name="$name" --set input="$T/in.csv" --set output="$T/$name.jsonl" \
      --set errors="$T/$name.err" "$@" --no-cache --state-dir "$T/state-$name" --no-progress \
      --summary-json "$T/$name.json" >"$T/$name.log" 2>&1 ) &
  job[$name]=$!
}
alive() { kill -0 "${job[$1]}" 2>/dev/null; }
lines() { [ -f "$1" ] && wc -l < "$1" || echo 0; }
ended() { wait "${job[$1]}"; RC=$?; }   # sets RC
# exactly_once NAME: every input id in the sink or the dead letters, once
exactly_once() {
  { jq -r .id "$T/$1.jsonl"; jq -r .record.id "$T/$1.err" 2>/dev/null; } | sort -n > "$T/$1.ids"
  check "$1: every record in the sink or the dead letters, exactly once" cmp "$T/ids.txt" "$T/$1.ids"
  check "$1: read = written + filtered + dead_lettered" invariant_holds "$T/$1.json"
}
for c in down20 stop storm flap refuse; do port[$c]=$(free_port); done

# ---- start every case -------------------------------------------------------------------------
run down20                                                  # nothing listens yet
serve stop "${port[stop]}" --latency-ms 40
run stop --set outage=2s --set concurrency=2
serve storm "${port[storm]}" --rate-429 1 --retry-after 1
run storm
serve refuse "${port[refuse]}" --latency-ms 50 --refuse REFUSE-THIS
run refuse --set concurrency=2
serve flap "${port[flap]}" --latency-ms 5
run flap --set concurrency=4
started=$SECONDS

# stop: killed once something is written; it stays down (longer than limits.outage: 2s)
for _ in $(seq 600); do [ "$(lines "$T/stop.jsonl")" -ge 30 ] && break; sleep 0.05; done
down stop
# refuse: down for 4 s once something is written (the refused record, 150, waits the outage out
# with the others and is answered 400 after it)
for _ in $(seq 600); do [ "$(lines "$T/refuse.jsonl")" -ge 10 ] && break; sleep 0.05; done
down refuse; sleep 4; serve refuse "${port[refuse]}" --latency-ms 50 --refuse REFUSE-THIS
# flap: up 1 s, down 1 s until the job ends
( while kill -0 "${job[flap]}" 2>/dev/null; do
    sleep 1; down flap
    sleep 1; kill -0 "${job[flap]}" 2>/dev/null || break; serve flap "${port[flap]}" --latency-ms 5
  done ) &
flapper=$!
# down20: the endpoint comes up 20 s after the job started
while [ $((SECONDS - started)) -lt 20 ]; do sleep 0.2; done
check "down20: the job waited for the endpoint (still running after 20 s)" alive down20
serve down20 "${port[down20]}"
# storm: STORM_S (60) s of 429s, then a healthy server on the same port
while [ $((SECONDS - started)) -lt "$STORM_S" ]; do sleep 0.2; done
check "storm: the job waited out ${STORM_S} s of 429s (still running)" alive storm
down storm; serve storm "${port[storm]}"

# ---- check every case -------------------------------------------------------------------------
ended down20; expect_eq "down20: exits 0" 0 "$RC"
expect_eq "down20: no dead letters" 0 "$(sj "$T/down20.json" .dead_lettered)"
expect_eq "down20: every record written" $rows "$(sj "$T/down20.json" .written)"
exactly_once down20
check "down20: the summary says how long it paused and why" grep -qE '^  paused [0-9]+s: .*(refused|connect)' "$T/down20.log"
check "down20: the summary json has the pause (>= 15 s)" test "$(sj "$T/down20.json" .model.paused_ms)" -ge 15000

ended stop; expect_eq "stop: exits 1" 1 "$RC"
written=$(sj "$T/stop.json" .written)
check "stop: records before the outage were written ($written)" test "$written" -ge 30 -a "$written" -lt $rows
expect_eq "stop: no dead letters" 0 "$(sj "$T/stop.json" .dead_lettered)"
check "stop: one line says the endpoint, how long, why and what was committed" \
  grep -qE "^runnel: model endpoint http://127.0.0.1:${port[stop]}: unreachable for [0-9]+s \((.*refused.*|.*connect.*)\); nothing after line $((written + 1)) of source.csv \(.*job.lua:3\) was committed$" "$T/stop.log"
cp="$T/state-stop/stop.checkpoint.json"
expect_eq "stop: the checkpoint's sink length is what was written" "$(stat -c %s "$T/stop.jsonl")" "$(jq '.sinks[0].length' "$cp" 2>/dev/null)"
expect_eq "stop: every written record is committed" "$written" "$(sj "$T/stop.json" .committed)"
mv "$T/stop.log" "$T/stop-1.log"
serve stop "${port[stop]}"
run stop --resume
ended stop; expect_eq "stop: --resume with the endpoint back exits 0" 0 "$RC"
expect_eq "stop: the rerun read only the rest" $((rows - written)) "$(sj "$T/stop.json" .read)"
jq -r .id "$T/stop.jsonl" > "$T/stop.ids"
check "stop: the sink holds every record exactly once, in order" cmp "$T/ids.txt" "$T/stop.ids"

ended storm; expect_eq "storm: exits 0" 0 "$RC"
expect_eq "storm: no dead letters" 0 "$(sj "$T/storm.json" .dead_lettered)"
exactly_once storm

ended flap; expect_eq "flap: exits 0" 0 "$RC"
wait "$flapper" 2>/dev/null   # it stops its server within 2 s of the job's end (a kill could leave one running)
expect_eq "flap: every record written" $rows "$(sj "$T/flap.json" .written)"
exactly_once flap

ended refuse; expect_eq "refuse: exits 0" 0 "$RC"
expect_eq "refuse: only the refused record dead-lettered" 150 "$(jq -r .record.id "$T/refuse.err" 2>/dev/null | tr '\n' ' ' | xargs)"
check "refuse: its reason is the 400" grep -q '400' "$T/refuse.err"
check "refuse: the job paused for the outage" grep -qE '^  paused ' "$T/refuse.log"
exactly_once refuse
finish
