#!/usr/bin/env bash
# runnel serve and the jobs directory: a changed job file reloads (the old run drains and
# commits, the new one goes on from the checkpoint), a touched but unchanged one does not, a new
# file starts a job, a removed one stops it, a broken one is FAILED with runnel check's message.
# Then SIGTERM with three jobs running drains each (exit codes 0, outputs complete up to their
# checkpoints) and serve exits 0 within its stop timeout; started again, the jobs go on where
# they stopped, and a firing missed while serve was down is skipped by its starting deadline.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/serve_lib.sh"
start_model_server --latency-ms 300

# follow_job NAME VERSION: a stream job over $T/NAME.csv writing $T/NAME.jsonl
follow_job() {
  cat > "$T/$1.lua.tmp" <<LUA
return job {
  name = "$1", checkpoint_interval = "100ms",
  source = source.csv { path = "$T/$1.csv", types = { id = "integer" } },
  map = function(r) return { id = r.id, v = $2 } end,
  sinks = sink.jsonl { path = "$T/$1.jsonl" },
}
LUA
  mv "$T/$1.lua.tmp" "$JOBS/$1.lua"
}
ids() { jq -r .id "$1" | tr '\n' ' ' | sed 's/ $//'; }
last_row() { db "SELECT $2 FROM runs WHERE job = '$1' ORDER BY id DESC LIMIT 1" | tr '|' ' '; }
listed() { api /jobs | jq -e --arg n "$1" 'any(.jobs[]; .name == $n)' >/dev/null; }
printf 'id\n1\n2\n' > "$T/follow.csv"
follow_job follow 1
start_serve --stop-timeout 20s
check "follow runs" wait_for 20 lines_at_least "$T/follow.jsonl" 2
PID1="$(field follow .pid)"

# ---- touched, not changed: no reload (the later new file proves the rescan happened) ----
touch "$JOBS/follow.lua"
printf 'id\n7\n' > "$T/once.csv"
cat > "$JOBS/once.lua" <<LUA
return job { name = "once", serve = { mode = "batch" }, source = source.csv { path = "$T/once.csv" }, sinks = sink.jsonl { path = "$T/once.jsonl" } }
LUA
check "a new file is a new job" wait_for 20 listed once
check "a batch job without a schedule runs once: FINISHED" wait_for 20 state_is once FINISHED
expect_eq "its output" 7 "$(ids "$T/once.jsonl")"
expect_eq "a touched but unchanged file does not reload" "$PID1 1" "$(field follow .pid) $(db "SELECT count(*) FROM runs WHERE job = 'follow'")"

# ---- changed: the old run drains, the new one continues from the checkpoint ----
follow_job follow 2
reloaded() { [ "$(last_row follow "trigger || ' ' || state")" = "reload RUNNING" ]; }
check "a changed file reloads the job" wait_for 20 reloaded
expect_eq "the old run was stopped and exited 0" "STOPPED 0" \
  "$(db "SELECT state, exit_code FROM runs WHERE job = 'follow' AND trigger = 'start'" | tr '|' ' ')"
printf '3\n4\n' >> "$T/follow.csv"
check "the new version writes the appended rows" wait_for 20 lines_at_least "$T/follow.jsonl" 4
expect_eq "every row once, the new ones by the new version" "1:1 2:1 3:2 4:2" \
  "$(jq -r '"\(.id):\(.v)"' "$T/follow.jsonl" | tr '\n' ' ' | sed 's/ $//')"

# ---- a broken file: FAILED with check's message; fixed, it runs ----
cat > "$JOBS/broken.lua" <<LUA
return job {
  name = "broken", schedule = { cron = "0 25 * * *" },
  source = source.csv { path = "$T/once.csv" }, sinks = sink.jsonl { path = "$T/broken.jsonl" },
}
LUA
check "a broken job file is listed" wait_for 20 listed broken
check "as FAILED" wait_for 20 state_is broken FAILED
expect_eq "with runnel check's message, naming the script line and the field" \
  "$JOBS/broken.lua:1: job: schedule.cron: schedule '0 25 * * *': hour field '25': 25..25 is outside 0..23" \
  "$(field broken .last_error)"
expect_eq "start on it: 409" 409 "$(http_status POST /jobs/broken/start)"
sed -i 's/0 25 \* \* \*/@every 1h/' "$JOBS/broken.lua"
check "fixed, it is SCHEDULED" wait_for 20 state_is broken SCHEDULED

# ---- removed: the job stops and leaves the table ----
rm "$JOBS/once.lua" "$JOBS/broken.lua"
gone() { [ "$(http_status GET /jobs/once)" = 404 ] && [ "$(http_status GET /jobs/broken)" = 404 ]; }
check "removed files: their jobs are gone" wait_for 20 gone
expect_eq "one job left" follow "$(api /jobs | jq -r '[.jobs[].name] | join(" ")')"

# ---- three jobs running, then SIGTERM ----
seq 1 60 | sed '1i id' > "$T/slow.csv"
cat > "$JOBS/slow.lua" <<LUA
return job {
  name = "slow", checkpoint_interval = "100ms",
  source = source.csv { path = "$T/slow.csv" },
  predict = model.openai { endpoint = env("OPENAI_BASE_URL"), model = "m", prompt = "{{id}}", cache = false,
                           output = { rating = { type = "integer", min = 1, max = 5 } }, limits = { concurrency = 2 } },
  map = function(r) return { id = r.id, rating = r.rating } end,
  sinks = sink.jsonl { path = "$T/slow.jsonl" },
}
LUA
printf 'id\n1\n' > "$T/third.csv"
follow_job third 1
cat > "$JOBS/tick.lua" <<LUA
return job {
  name = "tick", schedule = { cron = "@every 4s", starting_deadline = "1s" },
  source = source.csv { path = "$T/once.csv" }, sinks = sink.jsonl { path = "$T/tick.jsonl", append = true },
}
LUA
three_running() { state_is slow RUNNING && state_is third RUNNING && state_is follow RUNNING; }
check "three jobs running" wait_for 20 three_running
check "the slow job is part way" wait_for 20 lines_at_least "$T/slow.jsonl" 4
ticked() { [ "$(db "SELECT count(*) FROM runs WHERE job = 'tick' AND state = 'FINISHED'")" -ge 1 ]; }
check "the scheduled job ran" wait_for 20 ticked
start=$(date +%s%N)
stop_serve
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
expect_eq "serve exits 0 on SIGTERM" 0 "$SERVE_RC"
check "within its stop timeout (20 s): ${elapsed_ms} ms" test "$elapsed_ms" -lt 20000
expect_eq "each of the three runs drained and exited 0" "follow STOPPED 0|slow STOPPED 0|third STOPPED 0" \
  "$(db "SELECT job || ' ' || state || ' ' || exit_code FROM runs WHERE job IN ('follow', 'slow', 'third')
         AND id IN (SELECT max(id) FROM runs GROUP BY job) ORDER BY job" | paste -sd '|')"
for j in follow slow third; do
  expect_eq "$j: its output ends exactly at its checkpoint" "$(stat -c %s "$T/$j.jsonl")" \
    "$(jq '.sinks[0].length' "$STATE/$j.checkpoint.json")"
done
check "the slow job stopped before its end" test "$(lines "$T/slow.jsonl")" -lt 60
expect_eq "no run is left RUNNING" 0 "$(db "SELECT count(*) FROM runs WHERE state = 'RUNNING'")"

# ---- started again: the jobs go on; the firing missed while serve was down is skipped ----
last_tick=$(db "SELECT max(scheduled_at_ms) FROM runs WHERE job = 'tick'")
# wait until the latest firing passed 1.5..2.2 s ago: late beyond the deadline, far from the next one
missed_by_deadline() {
  local since=$(( $(date +%s%N) / 1000000 - last_tick ))
  [ "$since" -gt 4000 ] && [ $(( since % 4000 )) -ge 1500 ] && [ $(( since % 4000 )) -le 2200 ]
}
check "a firing of tick is now more than its 1 s deadline late" wait_for 10 missed_by_deadline
start_serve
check "the slow job finishes every row once across the stop" wait_for 30 lines_at_least "$T/slow.jsonl" 60
expect_eq "the rows: 1..60 once each" "$(seq 1 60 | paste -sd ' ')" "$(jq -r .id "$T/slow.jsonl" | sort -n | paste -sd ' ')"
deadline_skip() { db "SELECT error FROM runs WHERE job = 'tick' AND state = 'SKIPPED'" | grep -q 'later than starting_deadline'; }
check "tick: the missed firing is SKIPPED, too late for its starting deadline" wait_for 10 deadline_skip
stop_serve
expect_eq "serve exits 0 again" 0 "$SERVE_RC"
finish
