#!/usr/bin/env bash
# A job's state is its own (issue 16): one run of a job at a time (a flock the kernel drops when
# the process dies), and --resume only on the input it started and the outputs it wrote: a
# source file changed before the checkpoint's offset, or an output changed or shortened, is
# refused with a message naming the file; an input that only grew resumes.
. "$(dirname "$0")/../lib.sh"

bin/gen-reviews --rows 10000 --seed 16 > "$T/in.csv" 2>/dev/null
cat > "$T/job.lua" <<'LUA'
return job {
  name = param("name", "state_job"),
  checkpoint_interval = "100ms",
  source = source.csv { path = param("input"), select = { id = "Id", summary = "Summary" },
                        types = { id = "integer" } },
  map = function(r) return { id = r.id, words = #r.summary } end,
  sinks = sink.jsonl { path = param("output") },
}
LUA
lines() { wc -l < "$1" | tr -d ' '; }
# wait_for SECONDS COMMAND...: poll until the command succeeds
wait_for() { local n=$(( $1 * 20 )); shift; for _ in $(seq "$n"); do "$@" && return 0; sleep 0.05; done; return 1; }

# ---- one run at a time ----
cp "$T/in.csv" "$T/live.csv"
$RUNNEL run "$T/job.lua" --mode stream --set input="$T/live.csv" --set output="$T/live.jsonl" \
  --no-progress 2>"$T/stream.err" &
STREAM=$!; _pids+=("$STREAM")
check "the stream job holds its lock" wait_for 30 grep -q "^$STREAM " "$RUNNEL_STATE_DIR/state_job.lock"
check "the stream job writes" wait_for 30 test -s "$T/live.jsonl"
$RUNNEL run "$T/job.lua" --set input="$T/in.csv" --set output="$T/second.jsonl" --no-progress 2>"$T/second.err"
expect_eq "a second run of the same job exits 2" 2 $?
expect_contains "and says which process runs it" "$T/second.err" "job state_job is already running (pid $STREAM, since "
expect_contains "and where its state is" "$T/second.err" "; state in $RUNNEL_STATE_DIR/"
check "the second run wrote nothing" test ! -e "$T/second.jsonl"
$RUNNEL run "$T/job.lua" --set name=other_job --set input="$T/in.csv" --set output="$T/other.jsonl" --no-progress 2>/dev/null
expect_eq "another job in the same state directory runs" 0 $?
kill -KILL "$STREAM"; wait "$STREAM" 2>/dev/null
$RUNNEL run "$T/job.lua" --set input="$T/in.csv" --set output="$T/after.jsonl" --no-progress 2>"$T/after.err"
expect_eq "after a kill -9 the lock does not block the next run" 0 $?
expect_eq "and that run wrote every row" 10000 "$(lines "$T/after.jsonl")"

# ---- a changed input: killed mid-run by a condition, a row inserted at the top, --resume refused ----
start_model_server --latency-ms 20
cat > "$T/slow.lua" <<'LUA'
return job {
  name = "slow_job", checkpoint_interval = "100ms",
  source = source.csv { path = param("input"), select = { id = "Id", summary = "Summary" },
                        types = { id = "integer" } },
  predict = model.openai { endpoint = env("OPENAI_BASE_URL"), model = "m", prompt = "{{summary}}",
                           output = { rating = { type = "integer", min = 1, max = 5 } },
                           limits = { concurrency = 4 }, cache = false },
  map = function(r) return { id = r.id, rating = r.rating } end,
  sinks = sink.jsonl { path = param("output") },
}
LUA
cp "$T/in.csv" "$T/edit.csv"
$RUNNEL run "$T/slow.lua" --set input="$T/edit.csv" --set output="$T/edit.jsonl" --no-progress 2>/dev/null &
SLOW=$!; _pids+=("$SLOW")
enough() { test -s "$RUNNEL_STATE_DIR/slow_job.checkpoint.json" && [ "$(lines "$T/edit.jsonl")" -ge 300 ]; }
check "the slow job wrote 300 lines and a checkpoint" wait_for 60 enough
kill -KILL "$SLOW"; wait "$SLOW" 2>/dev/null
cp "$T/edit.jsonl" "$T/edit.before"
sed -i '2i 0,B000000000,U0,Someone,0,0,5,1000000000,Inserted near the top,An inserted row' "$T/edit.csv"
$RUNNEL run "$T/slow.lua" --set input="$T/edit.csv" --set output="$T/edit.jsonl" --resume --no-progress 2>"$T/edit.err"
expect_eq "--resume on an input changed before the offset exits 1" 1 $?
expect_contains "and names the file and what changed (sed -i writes a new file)" "$T/edit.err" "$T/edit.csv: the file was replaced since the checkpoint (its first and last bytes before offset"
expect_contains "and says how to start over" "$T/edit.err" "to start from the beginning, run without --resume"
check "the output was not touched" cmp -s "$T/edit.before" "$T/edit.jsonl"
$RUNNEL run "$T/slow.lua" --set input="$T/edit.csv" --set output="$T/edit.jsonl" --limit 50 --no-progress 2>/dev/null
expect_eq "without --resume the job starts over" 50 "$(lines "$T/edit.jsonl")"

# ---- an input that only grew resumes; every row once ----
head -n 5001 "$T/in.csv" > "$T/grow.csv"
$RUNNEL run "$T/job.lua" --set name=grow --set input="$T/grow.csv" --set output="$T/grow.jsonl" --limit 3000 --no-progress 2>/dev/null
expect_eq "the first part: 3000 rows" 3000 "$(lines "$T/grow.jsonl")"
tail -n +5002 "$T/in.csv" >> "$T/grow.csv"
$RUNNEL run "$T/job.lua" --set name=grow --set input="$T/grow.csv" --set output="$T/grow.jsonl" --resume --no-progress 2>"$T/grow.err"
expect_eq "--resume on an input that only grew exits 0" 0 $?
expect_eq "every row of the grown input written" 10000 "$(lines "$T/grow.jsonl")"
expect_eq "none twice" "" "$(jq -r .id "$T/grow.jsonl" | sort | uniq -d | head -3)"

# ---- a changed or shortened output is refused ----
$RUNNEL run "$T/job.lua" --set name=outc --set input="$T/in.csv" --set output="$T/outc.jsonl" --limit 3000 --no-progress 2>/dev/null
printf 'X' | dd of="$T/outc.jsonl" bs=1 seek=$(( $(stat -c %s "$T/outc.jsonl") - 20 )) conv=notrunc status=none # in place
$RUNNEL run "$T/job.lua" --set name=outc --set input="$T/in.csv" --set output="$T/outc.jsonl" --resume --no-progress 2>"$T/outc.err"
expect_eq "--resume onto an output changed before its checkpointed length exits 1" 1 $?
expect_contains "and names the output and what changed" "$T/outc.err" "$T/outc.jsonl: the file was changed since the checkpoint (its last bytes"
$RUNNEL run "$T/job.lua" --set name=outs --set input="$T/in.csv" --set output="$T/outs.jsonl" --limit 3000 --no-progress 2>/dev/null
truncate -s -100 "$T/outs.jsonl"
$RUNNEL run "$T/job.lua" --set name=outs --set input="$T/in.csv" --set output="$T/outs.jsonl" --resume --no-progress 2>"$T/outs.err"
expect_eq "--resume onto a shortened output exits 1" 1 $?
expect_contains "and says it is shorter" "$T/outs.err" "$T/outs.jsonl: the file is shorter"
finish
