#!/usr/bin/env bash
# SIGKILL a batch job at several points, resume it with --resume each time, and check that
# the file sinks end up with every input record exactly once (none lost, none twice), also
# with a model in the loop and with dead letters.
. "$(dirname "$0")/../lib.sh"

bin/gen-reviews --rows 300000 --seed 11 --broken-every 2000 > "$T/in.csv" 2>/dev/null
cat > "$T/job.lua" <<'LUA'
return job {
  name = param("name"),
  checkpoint_interval = "100ms",
  source = source.csv { path = param("input"), select = { id = "Id", summary = "Summary" },
                        types = { id = "integer" } },
  filter = function(r) return r.id % 10 ~= 0 end,
  map = function(r) return { id = r.id, words = #r.summary } end,
  sinks = { sink.jsonl { path = param("output") }, sink.csv { path = param("output") .. ".csv" } },
  errors = sink.jsonl { path = param("errors") },
}
LUA

# run_killed NAME ARGS...: start the job, SIGKILL it after a short while, resume until it finishes
run_killed() {
  local name="$1"; shift
  local kills=0
  local resume=""
  for attempt in 1 2 3 4 5 6 7 8; do
    "$@" $resume --no-progress --summary-json "$T/$name.json" >/dev/null 2>>"$T/$name.log" &
    local pid=$!
    sleep "0.$((3 + attempt))"
    if kill -KILL "$pid" 2>/dev/null; then kills=$((kills + 1)); fi
    wait "$pid" 2>/dev/null
    resume="--resume"
    if [ -f "$T/$name.json" ] && jq -e '.status == "finished"' "$T/$name.json" >/dev/null 2>&1; then break; fi
  done
  # finish for sure
  if ! jq -e '.status == "finished"' "$T/$name.json" >/dev/null 2>&1; then
    "$@" --resume --no-progress --summary-json "$T/$name.json" >/dev/null 2>>"$T/$name.log"
  fi
  echo "$name: killed $kills time(s)"
  [ "$kills" -ge 1 ]
}

# the reference: one uninterrupted run
$RUNNEL run "$T/job.lua" --set name=ref --set input="$T/in.csv" --set output="$T/ref.jsonl" \
  --set errors="$T/ref.err" --no-progress --summary-json "$T/ref.json" 2>/dev/null
check "reference run: invariant" invariant_holds "$T/ref.json"

check "no-model job was killed at least once" run_killed plain $RUNNEL run "$T/job.lua" --set name=plain \
  --set input="$T/in.csv" --set output="$T/plain.jsonl" --set errors="$T/plain.err"
check "killed and resumed: JSONL identical to an uninterrupted run" cmp -s "$T/ref.jsonl" "$T/plain.jsonl"
check "killed and resumed: CSV identical to an uninterrupted run" cmp -s "$T/ref.jsonl.csv" "$T/plain.jsonl.csv"
check "killed and resumed: dead letters once each" \
  bash -c "test -s '$T/ref.err' && diff <(jq -r .line '$T/ref.err') <(jq -r .line '$T/plain.err')"
expect_eq "no duplicate ids" "" "$(jq -r .id "$T/plain.jsonl" | sort | uniq -d | head -3)"
check "checkpoint removed after the finished run" test ! -e "$RUNNEL_STATE_DIR/plain.checkpoint.json"

# line numbers stay right after resuming past a record that spans several lines
printf 'Id,Summary\n1,"three\nline\nsummary"\n2,ok\n3,too,wide\n' > "$T/ml.csv"
$RUNNEL run "$T/job.lua" --set name=ml --set input="$T/ml.csv" --set output="$T/ml.jsonl" --set errors="$T/ml.err" \
  --limit 1 --no-progress 2>/dev/null
$RUNNEL run "$T/job.lua" --set name=ml --set input="$T/ml.csv" --set output="$T/ml.jsonl" --set errors="$T/ml.err" \
  --resume --no-progress 2>/dev/null
expect_eq "after resuming past a multi-line record, a bad row still has its own line" 6 "$(jq -r .line "$T/ml.err")"
expect_eq "after resuming past a multi-line record: ids 1 and 2 written once" "1 2" "$(jq -r .id "$T/ml.jsonl" | tr '\n' ' ' | sed 's/ $//')"

# with a model in the loop: calls in flight at the kill must not be lost or written twice
start_model_server --latency-ms 2
cat > "$T/model.lua" <<'LUA'
return job {
  name = "rated", checkpoint_interval = "100ms",
  source = source.csv { path = param("input"), select = { id = "Id", summary = "Summary" },
                        types = { id = "integer" } },
  filter = function(r) return r.summary ~= "" end,
  predict = model.openai { endpoint = env("OPENAI_BASE_URL"), model = "m", prompt = "{{summary}}",
                           output = { rating = { type = "integer", min = 1, max = 5 } },
                           limits = { concurrency = 32 } },
  map = function(r) return { id = r.id, rating = r.rating } end,
  sinks = sink.jsonl { path = param("output") },
  errors = sink.jsonl { path = param("errors") },
}
LUA
head -c 2000000 "$T/in.csv" | awk 'BEGIN{RS="\n"} {print}' > "$T/part.csv"
$RUNNEL run "$T/model.lua" --set input="$T/part.csv" --set output="$T/mref.jsonl" --set errors="$T/mref.err" \
  --no-progress --summary-json "$T/mref.json" --state-dir "$T/mref-state" 2>/dev/null
check "model reference run: invariant" invariant_holds "$T/mref.json"
check "model job was killed at least once" run_killed rated $RUNNEL run "$T/model.lua" \
  --set input="$T/part.csv" --set output="$T/m.jsonl" --set errors="$T/m.err"
check "model job killed and resumed: output identical to an uninterrupted run" cmp -s "$T/mref.jsonl" "$T/m.jsonl"

# SIGINT: a batch job stops gracefully (in-flight calls finished, sinks flushed, exit 130),
# and --resume completes it with the same output as an uninterrupted run. A server with 20 ms
# latency makes the job take several seconds, so the signal lands mid-run.
start_model_server --latency-ms 20
$RUNNEL run "$T/model.lua" --set input="$T/part.csv" --set output="$T/i.jsonl" --set errors="$T/i.err" \
  --no-progress --summary-json "$T/i.json" --state-dir "$T/int-state" 2>"$T/i.log" &
pid=$!
sleep 1
kill -INT $pid; wait $pid
expect_eq "SIGINT: a batch run exits 130" 130 $?
expect_eq "SIGINT: the summary says stopped" stopped "$(jq -r .status "$T/i.json")"
check "SIGINT: invariant over what was read" invariant_holds "$T/i.json"
expect_contains "SIGINT: it says how to continue" "$T/i.log" "run again with --resume"
$RUNNEL run "$T/model.lua" --set input="$T/part.csv" --set output="$T/i.jsonl" --set errors="$T/i.err" \
  --no-progress --summary-json "$T/i2.json" --state-dir "$T/int-state" --resume 2>/dev/null
expect_eq "SIGINT then --resume: finished" finished "$(jq -r .status "$T/i2.json")"
check "SIGINT then --resume: output identical to an uninterrupted run" cmp -s "$T/mref.jsonl" "$T/i.jsonl"
finish
