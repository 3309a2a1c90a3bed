#!/usr/bin/env bash
# kill -9 of a stream runner while messages keep arriving, then a restart in the same group:
# nothing is lost. Every key produced is in the output topic (read back with kcat);
# duplicates are allowed (at-least-once: what was written after the last commit is replayed).
. "$(dirname "$0")/../lib.sh"
. tests/kafka/kafka_lib.sh
start_kafka --topic in:3 --topic out:3

common=(--set group=crash --set session_timeout=6000 --set checkpoint=500ms --set out=out)
start_runner "$T/a.log" "${common[@]}" --set output="$T/a.jsonl" --set errors="$T/ea.jsonl"
a=$RUNNER_PID
check "runner a gets the partitions" wait_until 30 grep -q "group crash: assigned" "$T/a.log"

# 2000 messages in 20 bursts over ~4 s, in the background
( for burst in $(seq 0 19); do produce_json in k $((burst * 100 + 1)) $((burst * 100 + 100)); sleep 0.2; done ) &
producer=$!
_pids+=("$producer")
out_count() { [ "$(topic_keys out | wc -l)" -ge "$1" ]; }
check "runner a is writing" wait_until 30 out_count 300
kill -9 "$a"
wait "$a" 2>/dev/null
check "the producer was still running at the kill (mid-stream)" kill -0 "$producer"
echo "   killed runner a after $(topic_keys out | wc -l | tr -d ' ') messages in the output topic"

start_runner "$T/b.log" "${common[@]}" --set output="$T/b.jsonl" --set errors="$T/eb.jsonl"
b=$RUNNER_PID
wait "$producer"
all_out() { [ "$(topic_keys out | sort -u | wc -l)" -ge 2000 ]; }
check "after the restart every key reaches the output topic" wait_until 50 all_out
stop_runner "$b"
expect_eq "the restarted runner exits 0 on SIGTERM" 0 "$STOP_STATUS"
topic_keys out | sort > "$T/out.keys"
expect_eq "no key lost: output keys = input keys" "$(seq 1 2000 | sed 's/^/k/' | sort)" "$(sort -u "$T/out.keys")"
echo "   output messages: $(wc -l < "$T/out.keys"), duplicates (replayed after the kill): $(uniq -d "$T/out.keys" | wc -l)"
finish
