#!/usr/bin/env bash
# An idle job sleeps: a streaming job with nothing to read, and one whose only record waits on a
# slow model call, wake their main thread only for their timers (the checkpoint, a look at the
# file every 2 s), not on a clock of their own. Counted from /proc (the main thread's voluntary
# context switches, each one a sleep that ended) over a few seconds, with a generous bound: the
# runner that polled its source every 100 ms and its model every 20 ms woke 30 and 150 times in
# 3 s; the one that sleeps in its event loop wakes a few times.
. "$(dirname "$0")/../lib.sh"
start_model_server --latency-ms 60000
export OPENAI_API_KEY=sk-test
cat > "$T/job.lua" <<'LUA'
local with_model = param("model", "no") == "yes"
return job {
  name = param("name"), checkpoint_interval = "10s",
  source = source.csv { path = param("input") },
  predict = with_model and model.openai {
    endpoint = env("OPENAI_BASE_URL"), api_key = secret("OPENAI_API_KEY"), model = "gpt-4o-mini",
    prompt = "Review title: {{summary}}", output = { rating = { type = "integer", min = 1, max = 5 } },
    limits = { concurrency = 4, timeout = "300s" },
  } or nil,
  sinks = sink.jsonl { path = param("output") },
}
LUA
# wakes PID: the main thread's voluntary context switches so far
wakes() { awk '/^voluntary_ctxt_switches/ {print $2}' "/proc/$1/task/$1/status"; }
# cpu_ms PID: user + system CPU time of the whole process so far, in ms
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{print int(($14 + $15) * 1000 / hz)}' "/proc/$1/stat"; }
wait_lines() { for _ in $(seq 400); do [ "$(wc -l 2>/dev/null < "$1" || echo 0)" -ge "$2" ] && return 0; sleep 0.05; done; return 1; }
requests_seen() {
  for _ in $(seq 400); do
    [ "$(curl -s "$MODEL_URL/stats" | jq -r '.requests // 0')" -ge 1 ] && return 0; sleep 0.05
  done
  return 1
}
# measure NAME PID: the wake-ups and CPU of PID over 3 s
measure() {
  sleep 1  # past the start: connections made, the first checkpoint timer armed
  local w0 c0 w1 c1
  w0=$(wakes "$2"); c0=$(cpu_ms "$2")
  sleep 3
  w1=$(wakes "$2"); c1=$(cpu_ms "$2")
  echo "$1: $((w1 - w0)) wake-ups of the main thread, $((c1 - c0)) ms of CPU in 3 s"
  check "$1: the main thread slept through 3 s idle ($((w1 - w0)) wake-ups, at most 15)" test $((w1 - w0)) -le 15
  check "$1: CPU stayed near zero ($((c1 - c0)) ms in 3 s, at most 300 even with sanitizers)" test $((c1 - c0)) -le 300
}

# 1. a followed file with nothing new
printf 'id,summary\n1,great\n' > "$T/a.csv"
$RUNNEL run "$T/job.lua" --mode stream --set name=idle --set input="$T/a.csv" --set output="$T/a.jsonl" \
  --no-progress 2>"$T/a.log" &
pid=$!
check "idle: the row is written" wait_lines "$T/a.jsonl" 1
measure "idle" $pid
printf '2,good\n' >> "$T/a.csv"
check "idle: a row appended after the sleep is read at once (its file's inotify wakes the loop)" wait_lines "$T/a.jsonl" 2
kill -TERM $pid; wait $pid
expect_eq "idle: SIGTERM stops it with exit 0" 0 $?

# 2. the one record waits on a model call that takes a minute
printf 'id,summary\n1,great\n' > "$T/b.csv"
$RUNNEL run "$T/job.lua" --mode stream --set name=slow --set model=yes --set input="$T/b.csv" \
  --set output="$T/b.jsonl" --no-progress 2>"$T/b.log" &
pid=$!
check "slow model: the call is in flight" requests_seen
measure "slow model" $pid
kill -KILL $pid; wait $pid 2>/dev/null
finish
