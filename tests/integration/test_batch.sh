#!/usr/bin/env bash
# Batch API jobs (model.openai{ batch = ... }) end to end against bin/model-server's /v1/files
# and /v1/batches on a fast clock (--batch-speed): the answers are the live endpoint's, in
# source order, at half the price; a kill -9 while polling resumes the same batch (the server
# counts the batches made: never a second one); failed lines are retried live or dead-lettered;
# an expired batch keeps what it answered; a batch that fails validation goes live; stream mode
# is refused; a wrong key stops the job at the upload; SIGINT does not wait for a batch;
# model.anthropic through Message Batches.
. "$(dirname "$0")/../lib.sh"

cat > "$T/job.lua" <<'LUA'
local batch = param("batch", "on")
return job {
  name = param("name"),
  window = tonumber(param("window", "0")) > 0 and tonumber(param("window")) or nil,
  checkpoint_interval = param("checkpoint_interval", "5s"),
  source = source.csv { path = param("input"), select = { id = "Id", summary = "Summary" },
                        types = { id = "integer" } },
  predict = model.openai {
    endpoint = env("OPENAI_BASE_URL"), api_key = secret("OPENAI_API_KEY"), model = "gpt-4o-mini",
    prompt = "Review title: {{summary}}",
    output = { rating = { type = "integer", min = 1, max = 5 } },
    price = { input = 0.15, output = 0.60 },
    batch = batch == "on" and { max_requests = tonumber(param("max_requests", "50000")), poll = param("poll", "100ms"),
                                retry_live = param("retry_live", "true") == "true" } or false,
    limits = { concurrency = 8 },
  },
  map = function(r) return { id = r.id, rating = r.rating } end,
  sinks = sink.jsonl { path = param("output") },
  errors = sink.jsonl { path = param("errors") },
}
LUA
export OPENAI_API_KEY=sk-batch-test-KEY-5a4b3c2d1e
for rows in 300 1000; do
  bin/gen-reviews --rows "$rows" --seed 11 > "$T/in-$rows.csv" 2>/dev/null
  seq 1 "$rows" > "$T/ids-$rows.txt"
done
stats() { curl -sS "$MODEL_URL/stats"; }
# run NAME ROWS [--set k=v ...]: the job over in-ROWS.csv, its own state dir; sets RC
run() {
  local name="$1" rows="$2"; shift 2
  $RUNNEL run "$T/job.lua" --set name="$name" --set input="$T/in-$rows.csv" --set output="$T/$name.jsonl" \
    --set errors="$T/$name.err" --state-dir "$T/state-$name" --no-cache --no-progress \
    --summary-json "$T/$name.json" "$@" >"$T/$name.log" 2>&1
  RC=$?
}
exactly_once() { # NAME ROWS: every input id in the sink or the dead letters once; the sink in source order
  { jq -r .id "$T/$1.jsonl"; [ -s "$T/$1.err" ] && jq -r .record.id "$T/$1.err"; } | sort -n > "$T/$1.ids"
  check "$1: every record in the sink or the dead letters, exactly once" cmp "$T/ids-$2.txt" "$T/$1.ids"
  check "$1: the sink is in source order" bash -c "jq -r .id '$T/$1.jsonl' | sort -n -c"
  check "$1: read = written + filtered + dead_lettered" invariant_holds "$T/$1.json"
}

# ---- the live answers, to compare with -------------------------------------------------------
start_model_server
run live 1000 --set batch=off
expect_eq "live: exits 0" 0 "$RC"
live_requests=$(stats | jq .requests)

# ---- 1. three batches of at most 400, answered as live, at half the price -----------------------
start_model_server --batch-speed 200
run three 1000 --set max_requests=400
expect_eq "three: exits 0" 0 "$RC"
check "three: the same answers as live calls, in the same order" cmp "$T/live.jsonl" "$T/three.jsonl"
expect_eq "three: the server made 3 batches from 3 uploads" "3 3" "$(stats | jq -r '"\(.batch.batches_created) \(.batch.files_uploaded)"')"
expect_eq "three: no live call" "0 0" "$(stats | jq .requests) $(sj "$T/three.json" .model.requests)"
expect_eq "three: batches of 400, 400 and 200, all completed" "400 completed,400 completed,200 completed" \
  "$(sj "$T/three.json" '[.model.batch.batches[] | "\(.requests) \(.status)"] | join(",")')"
expect_eq "three: 1000 answered through batches" "1000 0 0" \
  "$(sj "$T/three.json" '"\(.model.batch.answered) \(.model.batch.live) \(.model.batch.dead_lettered)"')"
check "three: the cost is half the live price's" \
  jq -e '.model.cost_usd > 0 and ((.model.cost_usd * 2 - .model.cost_live_usd) | fabs) < 1e-9' "$T/three.json"
check "three: the live run cost what this one would live" \
  jq -e --slurpfile l "$T/live.json" '((.model.cost_live_usd - $l[0].model.cost_usd) | fabs) < 1e-9' "$T/three.json"
expect_contains "three: the summary shows the batches" "$T/three.log" "batch: 3 batches (3 completed); 1000 records through them: 1000 answered, 0 went live, 0 dead-lettered"
expect_contains "three: the summary shows what the batch price saved" "$T/three.log" "at the live price, saved \$"
check "three: the finished job left no checkpoint, spool or results" \
  bash -c "[ ! -e '$T/state-three/three.checkpoint.json' ] && [ -z \"\$(ls -A '$T/state-three/batch' 2>/dev/null)\" ]"
check "three: the key is in no output, log or summary" bash -c "! grep -rl 'sk-batch-test-KEY' '$T'/three.* '$T/state-three'"
exactly_once three 1000

# ---- 2. the pipeline's window bounds a batch: window 150 makes batches of 150 -----------------
run window 300 --set window=150
expect_eq "window: exits 0" 0 "$RC"
expect_eq "window: two batches of 150" "150,150" "$(sj "$T/window.json" '[.model.batch.batches[].requests] | map(tostring) | join(",")')"
exactly_once window 300

# ---- 2b. each answer of the batch API wakes the job: with no checkpoint timer to wake it (1h),
# the job still ends (it used to sleep until the next wake-up at every upload, create, poll and
# download, so here for an hour: the timeout stops it)
RUNNEL="timeout 120 $RUNNEL" run wake 300 --set window=150 --set checkpoint_interval=1h
expect_eq "wake: a job with no timer to wake it ends (exit 0, not the timeout's 124)" 0 "$RC"
exactly_once wake 300

# ---- 3. kill -9 while polling, then --resume: the same batch, never a second one -----------------
start_model_server --batch-speed 6    # 300 lines: validating 1.7 s, 60 answered a second, finalizing 1.7 s
( exec $RUNNEL run "$T/job.lua" --set name=killed --set input="$T/in-300.csv" --set output="$T/killed.jsonl" \
    --set errors="$T/killed.err" --set poll=200ms --state-dir "$T/state-killed" --no-cache --no-progress \
    >"$T/killed-1.log" 2>&1 ) &
killed_pid=$!
cp="$T/state-killed/killed.checkpoint.json"
for _ in $(seq 200); do # until the batch is in the checkpoint and the server is working on it
  grep -q '"id":"batch_' "$cp" 2>/dev/null &&
    [ "$(curl -sS "$MODEL_URL/v1/batches" | jq -r '.data[0].status')" = in_progress ] && break
  sleep 0.05
done
check "killed: the checkpoint names the batch and its range before the kill" \
  jq -e '.model.batches[0] | (.id | startswith("batch_")) and .phase == "running" and .requests == 300 and (.ranges | length) == 1' "$cp"
kill -KILL "$killed_pid"; wait "$killed_pid" 2>/dev/null
polls_before=$(stats | jq .batch.requests)
expect_eq "killed: killed while the batch was in progress" in_progress "$(curl -sS "$MODEL_URL/v1/batches" | jq -r '.data[0].status')"
run killed 300 --resume --set poll=200ms
expect_eq "killed: --resume exits 0" 0 "$RC"
expect_contains "killed: it says it resumes the batch" "$T/killed.log" "resuming 1 batch submitted before"
expect_eq "killed: still one batch made and one file uploaded" "1 1" "$(stats | jq -r '"\(.batch.batches_created) \(.batch.files_uploaded)"')"
check "killed: the resumed run polled the batch ($polls_before requests before, $(stats | jq .batch.requests) after)" \
  test "$(stats | jq .batch.requests)" -gt "$polls_before"
expect_eq "killed: no live call" 0 "$(stats | jq .requests)"
expect_eq "killed: the summary marks the batch resumed, all answered" "true 300" \
  "$(sj "$T/killed.json" '"\(.model.batch.batches[0].resumed) \(.model.batch.answered)"')"
head -300 "$T/live.jsonl" > "$T/live-300.jsonl"
check "killed: the answers are the live ones, in order" cmp "$T/live-300.jsonl" "$T/killed.jsonl"
exactly_once killed 300

# ---- 3b. SIGINT does not wait for the batch: the job stops at once, --resume finishes it -------
( exec $RUNNEL run "$T/job.lua" --set name=interrupted --set input="$T/in-300.csv" --set output="$T/interrupted.jsonl" \
    --set errors="$T/interrupted.err" --set poll=200ms --state-dir "$T/state-interrupted" --no-cache --no-progress \
    >"$T/interrupted-1.log" 2>&1 ) &
int_pid=$!
cp="$T/state-interrupted/interrupted.checkpoint.json"
for _ in $(seq 200); do grep -q '"id":"batch_' "$cp" 2>/dev/null && break; sleep 0.05; done
kill -INT "$int_pid"
for _ in $(seq 100); do kill -0 "$int_pid" 2>/dev/null || break; sleep 0.05; done
check "interrupted: SIGINT stopped the job within 5 s, the batch still running" bash -c "! kill -0 $int_pid 2>/dev/null"
wait "$int_pid"
expect_eq "interrupted: exit 130, as an interrupted batch job" 130 "$?"
expect_contains "interrupted: it says how to continue" "$T/interrupted-1.log" "interrupted; run again with --resume to continue"
made=$(stats | jq .batch.batches_created)
run interrupted 300 --resume --set poll=200ms
expect_eq "interrupted: --resume exits 0" 0 "$RC"
expect_eq "interrupted: no second batch" "$made" "$(stats | jq .batch.batches_created)"
exactly_once interrupted 300

# ---- 4. failed lines: a 500 is retried live, a 400 dead-lettered, garbage corrected live -------
start_model_server --batch-speed 200 --batch-line-500 0.05 --batch-line-400 0.03 --batch-line-malformed 0.05
run lines 1000
expect_eq "lines: exits 0" 0 "$RC"
failed_lines=$(stats | jq .batch.lines_failed)
dead=$(sj "$T/lines.json" .dead_lettered)
check "lines: some lines failed ($failed_lines), some of them 400s ($dead)" test "$failed_lines" -gt 40 -a "$dead" -gt 10
check "lines: each 400 is a dead letter naming the batch and the status" \
  jq -e -s 'length > 0 and all(.reason | test("^batch batch_[0-9]+: HTTP 400: .*Invalid request"))' "$T/lines.err"
live_calls=$(stats | jq .requests)
expect_eq "lines: every other failed line and every garbage answer went live" "$live_calls" "$(sj "$T/lines.json" .model.batch.live)"
expect_eq "lines: the live calls answered them" "$((failed_lines - dead))" \
  "$(sj "$T/lines.json" '.model.batch.live - .model.corrections')"
check "lines: garbage answers got their correction round live ($(sj "$T/lines.json" .model.corrections))" \
  test "$(sj "$T/lines.json" .model.corrections)" -gt 20
expect_eq "lines: every correction validated" "$(sj "$T/lines.json" .model.corrections)" "$(sj "$T/lines.json" .model.corrected)"
exactly_once lines 1000
# the same server seed with retry_live = false: nothing goes live, the failures are dead letters
start_model_server --batch-speed 200 --batch-line-500 0.05 --batch-line-400 0.03 --batch-line-malformed 0.05
run nolive 1000 --set retry_live=false
expect_eq "nolive: exits 0" 0 "$RC"
expect_eq "nolive: no live call" 0 "$(stats | jq .requests)"
expect_eq "nolive: every failed line and garbage answer is a dead letter" \
  "$(( $(sj "$T/lines.json" .model.batch.live) + dead ))" "$(sj "$T/nolive.json" .dead_lettered)"
check "nolive: their reasons say they were not retried live" \
  bash -c "jq -e -s 'all(.reason | test(\"HTTP 400|retry_live is false\"))' '$T/nolive.err' >/dev/null && grep -q 'not retried live' '$T/nolive.err'"
exactly_once nolive 1000

# ---- 5. an expired batch keeps what it answered; the rest goes live ----------------------------
start_model_server --batch-speed 200 --batch-expire-every 1
run expired 300
expect_eq "expired: exits 0" 0 "$RC"
expect_eq "expired: the batch expired" expired "$(sj "$T/expired.json" '.model.batch.batches[0].status')"
expect_eq "expired: half answered by the batch, half live" "150 150 150" \
  "$(sj "$T/expired.json" '"\(.model.batch.answered) \(.model.batch.live)"') $(stats | jq .requests)"
check "expired: the same answers as live calls" cmp "$T/live-300.jsonl" "$T/expired.jsonl"
exactly_once expired 300

# ---- 6. a batch that fails validation: every record goes live ---------------------------------
start_model_server --batch-speed 200 --batch-fail-every 1
run refused 300
expect_eq "refused: exits 0" 0 "$RC"
check "refused: the batch failed, with the server's reason" \
  jq -e '.model.batch.batches[0] | .status == "failed" and (.why | test("token_limit_exceeded"))' "$T/refused.json"
expect_eq "refused: all 300 went live" "300 300" "$(sj "$T/refused.json" .model.batch.live) $(stats | jq .requests)"
exactly_once refused 300

# ---- 7. stream mode is refused; a wrong key stops the job at the upload ---------------------------
run stream 300 --mode stream
expect_eq "stream: refused with exit 1" 1 "$RC"
expect_contains "stream: the reason" "$T/stream.log" "batch: the batch API is for bounded jobs"
start_model_server --batch-speed 200 --api-key sk-the-right-one-9999
run wrongkey 300
expect_eq "wrongkey: exits 1" 1 "$RC"
check "wrongkey: the line names the upload, the status and the message" \
  grep -q "^runnel: model.openai: POST http://127.0.0.1:[0-9]*/v1/files: HTTP 401: Incorrect API key provided. (the endpoint refused the credentials" "$T/wrongkey.log"
expect_eq "wrongkey: nothing written or dead-lettered, no batch made" "0 0 0" \
  "$(sj "$T/wrongkey.json" .written) $(sj "$T/wrongkey.json" .dead_lettered) $(stats | jq .batch.batches_created)"

# ---- 7b. model.anthropic through Message Batches: the same answers, one batch, no live call --
cat > "$T/claude.lua" <<'LUA'
return job {
  name = param("name"),
  source = source.csv { path = param("input"), select = { id = "Id", summary = "Summary" }, types = { id = "integer" } },
  predict = model.anthropic {
    endpoint = env("ANTHROPIC_BASE_URL"), api_key = secret("ANTHROPIC_API_KEY"), model = "claude-3-5-haiku-20241022",
    prompt = "Review title: {{summary}}", output = { rating = { type = "integer", min = 1, max = 5 } },
    price = { input = 0.80, output = 4.00 },
    batch = { max_requests = tonumber(param("max_requests", "100000")), poll = "100ms" },
  },
  map = function(r) return { id = r.id, rating = r.rating } end,
  sinks = sink.jsonl { path = param("output") },
  errors = sink.jsonl { path = param("errors") },
}
LUA
start_model_server --batch-speed 200 --api-key sk-ant-batch-test-77 --batch-line-500 0.05 --batch-line-400 0.03
ANTHROPIC_BASE_URL="$MODEL_URL" ANTHROPIC_API_KEY=sk-ant-batch-test-77 $RUNNEL run "$T/claude.lua" --set name=claude \
  --set input="$T/in-1000.csv" --set output="$T/claude.jsonl" --set errors="$T/claude.err" --set max_requests=400 \
  --state-dir "$T/state-claude" --no-cache --no-progress --summary-json "$T/claude.json" >"$T/claude.log" 2>&1
expect_eq "claude: exits 0" 0 "$?"
expect_eq "claude: three Message Batches made" 3 "$(stats | jq .batch.batches_created)"
check "claude: each answered, or a dead letter for its 400 (errored invalid_request_error)" \
  bash -c "[ -s '$T/claude.err' ] && jq -e -s 'all(.reason | test(\"^batch msgbatch_[0-9]+: HTTP 400: .*Invalid request\"))' '$T/claude.err' >/dev/null"
expect_eq "claude: the errored api_error lines went live, and only they" "$(sj "$T/claude.json" .model.batch.live)" \
  "$(stats | jq .requests)"
check "claude: every rating is the one OpenAI's live calls gave" \
  bash -c "join <(jq -r '\"\\(.id) \\(.rating)\"' '$T/live.jsonl' | sort) <(jq -r '\"\\(.id) \\(.rating)\"' '$T/claude.jsonl' | sort) | awk '\$2 != \$3 { bad = 1 } END { exit bad }'"
check "claude: batch answers cost half the live price, the live calls all of it" \
  jq -e '.model | ((.batch.tokens_in * 0.80 + .batch.tokens_out * 4.00) / 1e6 / 2) as $saved
         | $saved > 0 and ((.cost_live_usd - .cost_usd - $saved) | fabs) < 1e-9' "$T/claude.json"
check "claude: the key is in no output, log or summary" bash -c "! grep -rl 'sk-ant-batch-test' '$T'/claude.* '$T/state-claude'"
exactly_once claude 1000
start_model_server --batch-speed 200 --api-key sk-ant-batch-test-77 --batch-expire-every 1
ANTHROPIC_BASE_URL="$MODEL_URL" ANTHROPIC_API_KEY=sk-ant-batch-test-77 $RUNNEL run "$T/claude.lua" --set name=claude_expired \
  --set input="$T/in-300.csv" --set output="$T/claude_expired.jsonl" --set errors="$T/claude_expired.err" \
  --state-dir "$T/state-claude_expired" --no-cache --no-progress --summary-json "$T/claude_expired.json" \
  >"$T/claude_expired.log" 2>&1
expect_eq "claude_expired: exits 0" 0 "$?"
expect_eq "claude_expired: the batch ended with half its requests expired; they went live" "150 150 150" \
  "$(sj "$T/claude_expired.json" '"\(.model.batch.answered) \(.model.batch.live)"') $(stats | jq .requests)"
exactly_once claude_expired 300

# ---- 8. the progress line shows the batch's state ----------------------------------------------
start_model_server --batch-speed 20
$RUNNEL run "$T/job.lua" --set name=progress --set input="$T/in-300.csv" --set output="$T/progress.jsonl" \
  --set errors="$T/progress.err" --state-dir "$T/state-progress" --no-cache --progress 2>"$T/progress.log"
tr '\r' '\n' < "$T/progress.log" > "$T/progress.lines"
check "progress: the line shows the batch in progress with its share done" grep -Eq "batch 1/1 in_progress [0-9]+%" "$T/progress.lines"
check "progress: and while it validates" grep -q "batch 1/1 validating" "$T/progress.lines"
finish
