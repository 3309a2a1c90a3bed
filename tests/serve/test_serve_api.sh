#!/usr/bin/env bash
# runnel serve's edges: a listen address beyond loopback without a token is refused; with a
# token every request needs it (401 otherwise); a job whose lock another runnel holds is
# reported as such and taken over when that run ends; two files declaring one name; the
# describe a supervisor reads. Then one serve holding 30 jobs (the release build): its RSS and
# its CPU while idle, measured from /proc.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/serve_lib.sh"
RELEASE="${RUNNEL_RELEASE:-$PWD/bin/runnel}"

# ---- beyond loopback: a token or nothing ----
$RUNNEL serve --jobs "$JOBS" --state "$STATE" --listen 0.0.0.0:0 2>"$T/open.err"
expect_eq "--listen 0.0.0.0 without --token-file: exit 2" 2 $?
expect_contains "and says why" "$T/open.err" "--listen 0.0.0.0:0 is not a loopback address: give --token-file FILE"
$RUNNEL serve --jobs "$T/nowhere" --state "$STATE" --listen 127.0.0.1:0 2>"$T/nodir.err"
expect_eq "a missing jobs directory: exit 2" 2 $?
expect_contains "naming it" "$T/nodir.err" "serve: --jobs $T/nowhere: No such file or directory"

printf 's3cret-token\n' > "$T/token"
start_serve --token-file "$T/token"
expect_eq "with a token file, a request without it: 401" 401 "$(http_status GET /health)"
expect_contains "with an error body" "$T/http.body" '"error":"GET /health: needs the header Authorization: Bearer TOKEN'
expect_eq "a wrong token: 401" 401 "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer s3cret-tokeX' "$SERVE_URL/jobs")"
expect_eq "a longer one: 401" 401 "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer s3cret-token2' "$SERVE_URL/jobs")"
expect_eq "the token: 200" 200 "$(curl -s -o "$T/ok.body" -w '%{http_code}' -H 'Authorization: Bearer s3cret-token' "$SERVE_URL/health")"
expect_eq "and the answer" ok "$(jq -r .status "$T/ok.body")"
stop_serve
expect_eq "serve exits 0" 0 "$SERVE_RC"

# ---- the lock: another runnel runs the job; serve takes over when it ends ----
printf 'id\n1\n2\n' > "$T/in.csv"
cat > "$JOBS/held.lua" <<LUA
return job {
  name = "held", checkpoint_interval = "100ms", serve = { restart = { backoff = "300ms..1s" } },
  source = source.csv { path = "$T/in.csv" }, sinks = sink.jsonl { path = "$T/held.jsonl" },
}
LUA
$RUNNEL run "$JOBS/held.lua" --mode stream --no-progress 2>"$T/manual.err" &
MANUAL=$!
_pids+=("$MANUAL")
check "a manual stream run holds the job's lock" wait_for 20 grep -qs "^$MANUAL " "$STATE/held.lock"
cp "$JOBS/held.lua" "$JOBS/twin.lua"   # the same name from another file
start_serve
locked() { field held .last_error | grep -q "^another runnel runs it: job held is already running (pid $MANUAL, since "; }
check "serve reports the job as run by another runnel" wait_for 20 locked
check "and waits to take over: RESTARTING, not FAILED" wait_for 10 state_is held RESTARTING
expect_eq "history: LOCKED with exit code 2, not FAILED" "LOCKED 2" \
  "$(db "SELECT state, exit_code FROM runs WHERE job = 'held' AND state != 'RUNNING' ORDER BY id DESC LIMIT 1" | tr '|' ' ')"
expect_eq "its restart count is untouched (not a crash)" 0 "$(field held .restarts)"
twin_failed() { api /jobs | jq -e '.jobs[] | select(.file | endswith("twin.lua")) | .state == "FAILED"' >/dev/null; }
check "a second file declaring the same name is FAILED" wait_for 20 twin_failed
expect_eq "and says which file has it" "$JOBS/twin.lua declares job held, which $JOBS/held.lua declares already" \
  "$(api /jobs | jq -r '.jobs[] | select(.file | endswith("twin.lua")) | .last_error')"
kill -TERM "$MANUAL"
wait "$MANUAL"
expect_eq "the manual run stops cleanly" 0 $?
taken() { state_is held RUNNING && [ "$(field held .pid)" != "$MANUAL" ]; }
check "serve takes the job over once the lock is free" wait_for 20 taken
stop_serve
expect_eq "serve exits 0" 0 "$SERVE_RC"
rm "$JOBS/twin.lua" "$JOBS/held.lua"

# ---- what the supervisor reads of a job: runnel check --describe ----
cat > "$T/described.lua" <<LUA
return job {
  name = "described", schedule = { cron = "0 3 * * *", timezone = "Europe/Paris", starting_deadline = 600 },
  serve = { restart = { on = "always" } },
  source = source.csv { path = "in.csv" }, sinks = sink.stdout {}, errors = sink.jsonl { path = "out/dead.jsonl" },
}
LUA
expect_eq "check --describe prints the declarations as JSON" \
  '{"dead_letters":"out/dead.jsonl","job":"described","schedule":{"cron":"0 3 * * *","starting_deadline":"600","timezone":"Europe/Paris"},"serve":{"restart":{"on":"always"}}}' \
  "$($RUNNEL check "$T/described.lua" --describe | jq -cS '{job, schedule, serve, dead_letters}')"
sed -i 's/on = "always"/on = "sometimes"/' "$T/described.lua"
$RUNNEL check "$T/described.lua" >"$T/bad.out" 2>&1
expect_eq "a bad restart policy fails runnel check" 1 $?
expect_contains "at the job's line" "$T/bad.out" "$T/described.lua:1: job: restart.on: 'sometimes' is not one of"
$RUNNEL help job >"$T/help.out"
expect_contains "runnel help job lists schedule" "$T/help.out" "schedule"

# ---- one serve, 30 jobs (the release build): RSS and idle CPU ----
for i in $(seq -w 1 10); do
  printf 'id\n%s\n' "$i" > "$T/s$i.csv"
  cat > "$JOBS/stream$i.lua" <<LUA
return job { name = "stream$i", source = source.csv { path = "$T/s$i.csv" }, sinks = sink.jsonl { path = "$T/s$i.jsonl" } }
LUA
done
for i in $(seq -w 1 20); do
  cat > "$JOBS/hourly$i.lua" <<LUA
return job { name = "hourly$i", schedule = { cron = "$i * * * *" },
  source = source.csv { path = "$T/s01.csv" }, sinks = sink.jsonl { path = "$T/h$i.jsonl" } }
LUA
done
RUNNEL="$RELEASE" start_serve
settled() {
  [ "$(api /jobs | jq '[.jobs[] | select(.state == "RUNNING" or .state == "SCHEDULED")] | length')" = 30 ] &&
  [ "$(cat "$T"/s*.jsonl 2>/dev/null | wc -l)" = 10 ]
}
check "30 jobs held: 10 streams RUNNING, 20 SCHEDULED" wait_for 60 settled
ticks() { awk '{ print $14 + $15 }' "/proc/$SERVE_PID/stat"; }
before=$(ticks); t0=$(date +%s%N)
sleep 3   # the measurement window itself: nothing to poll for
after=$(ticks); t1=$(date +%s%N)
hz=$(getconf CLK_TCK)
cpu_pct=$(awk -v d=$((after - before)) -v hz="$hz" -v ns=$((t1 - t0)) 'BEGIN { printf "%.2f", 100 * d / hz / (ns / 1e9) }')
rss_kb=$(awk '/^VmRSS/ { print $2 }' "/proc/$SERVE_PID/status")
CHILDREN="$(pgrep -P "$SERVE_PID" | paste -sd ' ')"
children_kb=$(for p in $CHILDREN; do awk '/^VmRSS/ { print $2 }' "/proc/$p/status"; done | awk '{ s += $1 } END { print s }')
echo "serve with 30 jobs: idle CPU ${cpu_pct}% over 3 s, RSS ${rss_kb} kB (its 10 children: ${children_kb} kB in all)"
check "idle: serve's CPU below 1% (${cpu_pct}%)" awk -v c="$cpu_pct" 'BEGIN { exit !(c < 1.0) }'
check "serve's RSS below 32 MB (${rss_kb} kB)" test "$rss_kb" -lt 32768
expect_eq "GET /jobs answers for 30" 30 "$(api /jobs | jq '.jobs | length')"
# the same with a dashboard open: /jobs, /metrics and /health once a second for 3 s
api /metrics > "$T/metrics30.txt"
expect_eq "GET /metrics has the state of all 30" 30 "$(grep -cE '^runnel_job_state\{.*state="(RUNNING|SCHEDULED)"\} 1$' "$T/metrics30.txt")"
check "and every stream's records (published by its run)" test "$(grep -c '^runnel_records_read_total{job="stream' "$T/metrics30.txt")" = 10
before=$(ticks); t0=$(date +%s%N)
for _ in 1 2 3; do api /jobs >/dev/null; api /metrics >/dev/null; api /health >/dev/null; sleep 1; done
after=$(ticks); t1=$(date +%s%N)
busy_pct=$(awk -v d=$((after - before)) -v hz="$hz" -v ns=$((t1 - t0)) 'BEGIN { printf "%.2f", 100 * d / hz / (ns / 1e9) }')
echo "serve with 30 jobs and a dashboard polling: CPU ${busy_pct}%, RSS $(awk '/^VmRSS/ { print $2 }' "/proc/$SERVE_PID/status") kB, /metrics $(wc -c < "$T/metrics30.txt") bytes"
stop_serve
alive=0; for p in $CHILDREN; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
expect_eq "serve exits 0, its 10 children ended" "0 10 0" "$SERVE_RC $(echo $CHILDREN | wc -w) $alive"
finish
