#!/usr/bin/env bash
# runnel serve holding three jobs at once: a stream over a followed CSV, a batch job scheduled
# "@every 2s" whose runs outlast the interval (overlap = forbid), and a job whose map fails at
# once (max_errors = 1). The failing one restarts with a doubling backoff and gives up after its
# budget (FAILED, with its last error) while the others keep running; a manual run of a served
# job meets the job's lock; API calls change states. The history is read back with sqlite3.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/serve_lib.sh"
start_model_server --latency-ms 600

printf 'id,word\n1,one\n2,two\nx,bad\n3,three\n' > "$T/live.csv"
printf 'word\na\nb\nc\nd\ne\n' > "$T/five.csv"
printf 'id\n1\n' > "$T/one.csv"
cat > "$JOBS/follow.lua" <<LUA
return job {
  name = "follow", checkpoint_interval = "100ms",
  source = source.csv { path = "$T/live.csv", types = { id = "integer" } },
  map = function(r) return { id = r.id, word = r.word } end,
  sinks = sink.jsonl { path = "$T/follow.jsonl" },
  errors = sink.jsonl { path = "$T/follow.errors.jsonl" },
}
LUA
# five model calls of 600 ms, one at a time: a run lasts about 3 s, longer than its interval
cat > "$JOBS/every.lua" <<LUA
return job {
  name = "every",
  schedule = { cron = "@every 2s", overlap = "forbid", timezone = "Europe/Paris" },
  source = source.csv { path = "$T/five.csv" },
  predict = model.openai { endpoint = env("OPENAI_BASE_URL"), model = "m", prompt = "{{word}}", cache = false,
                           output = { rating = { type = "integer", min = 1, max = 5 } }, limits = { concurrency = 1 } },
  sinks = sink.jsonl { path = "$T/every.jsonl" },
}
LUA
cat > "$JOBS/crash.lua" <<LUA
return job {
  name = "crash", max_errors = 1,
  serve = { mode = "stream", restart = { on = "failure", backoff = "1s..4s", budget = "3/1m" } },
  source = source.csv { path = "$T/one.csv" },
  map = function(r) error("no map for row " .. r.id) end,
  sinks = sink.jsonl { path = "$T/crash.jsonl" },
}
LUA

start_serve
listed() { [ "$(api /jobs | jq '.jobs | length')" = "$1" ]; }
check "three jobs are listed" wait_for 10 listed 3
check "the stream job runs" wait_for 20 state_is follow RUNNING
check "and writes the file's rows" wait_for 20 lines_at_least "$T/follow.jsonl" 3
FOLLOW_PID="$(field follow .pid)"
expect_eq "GET /jobs/follow: mode" stream "$(field follow .mode)"

# ---- the job's lock: a manual run of a served job refuses ----
$RUNNEL run "$JOBS/follow.lua" --mode stream --no-progress 2>"$T/manual.err"
expect_eq "a manual runnel run of a served job exits 2" 2 $?
expect_contains "and names serve's child as the holder" "$T/manual.err" "job follow is already running (pid $FOLLOW_PID, since "

# ---- the failing job: restarts 1 s, 2 s, 4 s apart, then FAILED ----
check "the failing job gives up: FAILED" wait_for 40 state_is crash FAILED
expect_eq "after 3 restarts (its budget)" 3 "$(field crash .restarts)"
expect_eq "with its last error (the runner's last message, not its traceback)" \
  "stopping after 1 script errors (job max_errors = 1); the last: $JOBS/crash.lua:5: no map for row 1" "$(field crash .last_error)"
expect_eq "history: 4 runs, each FAILED with exit code 1" "4 FAILED 1" \
  "$(db "SELECT count(*), min(state), max(exit_code) FROM runs WHERE job = 'crash'" | tr '|' ' ')"
expect_eq "history: the first by start, then by restart" "start restart restart restart" \
  "$(db "SELECT trigger FROM runs WHERE job = 'crash' ORDER BY id" | tr '\n' ' ' | sed 's/ $//')"
# the delay before each restart: from the end of one run to the start of the next
gaps="$(db "SELECT b.started_at_ms - a.ended_at_ms FROM runs a JOIN runs b ON b.id = (SELECT min(id) FROM runs
            WHERE job = 'crash' AND id > a.id) WHERE a.job = 'crash' ORDER BY a.id" | tr '\n' ' ')"
echo "restart delays (ms): $gaps"
read -r g1 g2 g3 <<<"$gaps"
check "the delays double: 1 s, 2 s, 4 s" test "$g1" -ge 990 -a "$g1" -lt 1900 -a "$g2" -ge 1990 -a "$g2" -lt 2900 \
  -a "$g3" -ge 3990 -a "$g3" -lt 4900
expect_eq "the API shows the same runs" "FAILED FAILED FAILED FAILED" \
  "$(api /jobs/crash/runs | jq -r '[.runs[].state] | join(" ")')"
expect_eq "GET /jobs/crash/runs?limit=2: two rows" 2 "$(api '/jobs/crash/runs?limit=2' | jq '.runs | length')"

# ---- the other jobs kept running ----
expect_eq "the stream job was never restarted (same pid)" "$FOLLOW_PID" "$(field follow .pid)"
printf '4,four\n5,five\n' >> "$T/live.csv"
check "and follows its file: appended rows arrive" wait_for 20 lines_at_least "$T/follow.jsonl" 5
expect_eq "GET /jobs/follow/dead-letters: the bad row, with its line" "4" \
  "$(api '/jobs/follow/dead-letters?limit=5' | jq -r '.dead_letters | map(.line) | join(" ")')"
check "GET /jobs/follow: uptime and no error" test "$(field follow '(.uptime_s > 0) and (.last_error == null)')" = true

# ---- the schedule: runs never overlap; firings that came during a run are recorded ----
finished() { [ "$(db "SELECT count(*) FROM runs WHERE job = 'every' AND state = 'FINISHED'")" -ge "$1" ]; }
check "the scheduled job ran twice" wait_for 40 finished 2
skipped() { [ "$(db "SELECT count(*) FROM runs WHERE job = 'every' AND state = 'SKIPPED'")" -ge 1 ]; }
check "and skipped a firing that came while it ran" wait_for 30 skipped
expect_contains "the skip says why" <(db "SELECT error FROM runs WHERE job = 'every' AND state = 'SKIPPED'") \
  "the previous run was still running when the next firing"
expect_eq "no run started before the previous one ended" 0 \
  "$(db "SELECT count(*) FROM runs a JOIN runs b ON a.job = 'every' AND b.job = 'every' AND b.id > a.id
         WHERE a.started_at_ms IS NOT NULL AND b.started_at_ms IS NOT NULL
           AND b.started_at_ms < coalesce(a.ended_at_ms, 9e15)")"
expect_eq "each run read its five rows" "5" \
  "$(db "SELECT DISTINCT json_extract(summary, '$.read') FROM runs WHERE job = 'every' AND state = 'FINISHED'")"
check "next_run is ISO 8601 with the zone's offset" \
  grep -Eq '^20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\+0[12]:00$' <(field every .next_run)
check "GET /jobs/every: the schedule as declared" \
  test "$(field every '.schedule | "\(.cron) \(.overlap) \(.timezone)"')" = "@every 2s forbid Europe/Paris"

# ---- API verbs change states ----
expect_eq "POST /jobs/follow/stop: 202" 202 "$(http_status POST /jobs/follow/stop)"
check "follow: STOPPED" wait_for 20 state_is follow STOPPED
expect_eq "the stopped run drained and exited 0" "STOPPED 0" \
  "$(db "SELECT state, exit_code FROM runs WHERE job = 'follow' ORDER BY id DESC LIMIT 1" | tr '|' ' ')"
expect_eq "stop again: 409" 409 "$(http_status POST /jobs/follow/stop)"
expect_contains "with what is wrong" "$T/http.body" '"error":"POST /jobs/follow/stop: job follow is STOPPED'
expect_eq "POST /jobs/follow/start: 202" 202 "$(http_status POST /jobs/follow/start)"
check "follow: RUNNING again" wait_for 20 state_is follow RUNNING
check "in a new process" test "$(field follow .pid)" != "$FOLLOW_PID"
expect_eq "run on a stream job: 409" 409 "$(http_status POST /jobs/follow/run)"
expect_eq "POST /jobs/every/stop: 202" 202 "$(http_status POST /jobs/every/stop)"
check "every: STOPPED (its run, if any, drained)" wait_for 20 state_is every STOPPED
expect_eq "a stopped schedule has no next run" null "$(field every .next_run)"
rows="$(db "SELECT count(*) FROM runs WHERE job = 'every'")"
expect_eq "POST /jobs/every/run: 202" 202 "$(http_status POST /jobs/every/run)"
api_run_done() {
  [ "$(db "SELECT count(*) || ' ' || max(state) FROM runs WHERE job = 'every' AND id > (SELECT max(id) FROM runs
          WHERE job = 'every' AND trigger != 'api')")" = "1 FINISHED" ]
}
check "run: a new history row, FINISHED" wait_for 30 api_run_done
expect_eq "one row more" "$((rows + 1))" "$(db "SELECT count(*) FROM runs WHERE job = 'every'")"
check "and the suspended schedule stays STOPPED" wait_for 10 state_is every STOPPED
expect_eq "POST /jobs/every/start: 202" 202 "$(http_status POST /jobs/every/start)"
# as a CronJob whose suspend is lifted: a firing missed while stopped runs at once (no starting_deadline)
check "every: scheduled again, a missed firing running" \
  grep -Eq '^(SCHEDULED|RUNNING) 20' <(field every '"\(.state) \(.next_run)"')
expect_eq "POST /jobs/crash/start restarts a FAILED job" 202 "$(http_status POST /jobs/crash/start)"
restarted_again() { [ "$(field crash .restarts)" -ge 1 ]; }
check "its restart count starts over (the budget too)" wait_for 20 restarted_again
expect_eq "unknown job: 404" 404 "$(http_status GET /jobs/nope)"
expect_eq "bad limit: 400" 400 "$(http_status GET '/jobs/every/runs?limit=0')"
expect_eq "GET on a verb: 405" 405 "$(http_status GET /jobs/every/start)"
expect_eq "dead letters of a job without a JSONL errors sink: 404" 404 "$(http_status GET /jobs/crash/dead-letters)"
expect_eq "GET /health" "ok 3" "$(api /health | jq -r '"\(.status) \(.jobs)"')"

stop_serve
expect_eq "serve exits 0 on SIGTERM" 0 "$SERVE_RC"
expect_eq "no run is left RUNNING in the history" 0 "$(db "SELECT count(*) FROM runs WHERE state = 'RUNNING'")"
expect_eq "the schema has its version" 1 "$(db "PRAGMA user_version")"
expect_eq "the database is in WAL mode" wal "$(db "PRAGMA journal_mode")"
finish
