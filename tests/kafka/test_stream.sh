#!/usr/bin/env bash
# Stream mode: a job started before the messages picks them up as they are produced; SIGTERM
# stops it with status 0 and a summary, committing what it wrote, so the next run in the same
# group reads only the newer messages.
. "$(dirname "$0")/../lib.sh"
. tests/kafka/kafka_lib.sh
start_kafka --topic in:3
produce_json in old 1 20          # before the start: a new group begins at the earliest offset
# session_timeout: the mock cluster makes a group that was up wait (session timeout - 1 s) for
# departed members before it rebalances, even after a clean LeaveGroup

start_runner "$T/s1.log" --set group=s --set session_timeout=6000 --set output="$T/s1.jsonl" --set errors="$T/e1.jsonl" --set checkpoint=500ms
s1=$RUNNER_PID
check "the runner joins the group and gets partitions" wait_until 30 grep -q "group s: assigned" "$T/s1.log"
produce_json in new 1 50
check "the 50 messages produced after the start are written" wait_until 30 at_least "$T/s1.jsonl" 70
stop_runner "$s1"
expect_eq "SIGTERM: exit status 0" 0 "$STOP_STATUS"
expect_contains "SIGTERM: summary printed" "$T/s1.log" "stopped in"
expect_contains "SIGTERM: the summary counts 70" "$T/s1.log" "read 70  written 70"
expect_eq "every key once: old1..20 and new1..50" \
  "$( (seq 1 20 | sed 's/^/old/'; seq 1 50 | sed 's/^/new/') | sort)" "$(jq -r ._key "$T/s1.jsonl" | sort)"

# a second run in the group continues after what the first one committed
produce_json in late 1 10
start_runner "$T/s2.log" --set group=s --set session_timeout=6000 --set output="$T/s2.jsonl" --set errors="$T/e2.jsonl" --set checkpoint=500ms
s2=$RUNNER_PID
check "second run reads the 10 new messages" wait_until 30 at_least "$T/s2.jsonl" 10
sleep 1   # anything older would show up now
stop_runner "$s2"
expect_eq "second run: exit 0 on SIGTERM" 0 "$STOP_STATUS"
expect_eq "second run read only late1..10" "$(seq 1 10 | sed 's/^/late/' | sort)" "$(jq -r ._key "$T/s2.jsonl" | sort)"
finish
