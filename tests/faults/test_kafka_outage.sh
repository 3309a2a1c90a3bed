#!/usr/bin/env bash
# The Kafka broker goes down mid-stream and comes back: a streaming job that reads from and
# writes to Kafka rides over the outage (librdkafka reconnects and retries), and every message
# produced before, during and after the outage ends in the output topic (at least once).
. "$(dirname "$0")/../lib.sh"
. tests/kafka/kafka_lib.sh
start_kafka --topic in:3 --topic out:3
produce_json in a 1 100
start_runner "$T/r.log" --set group=outage --set session_timeout=6000 --set output="$T/o.jsonl" \
  --set errors="$T/e.jsonl" --set out=out --set checkpoint=300ms --set message_timeout=120000
runner=$RUNNER_PID
check "before the outage: the first 100 are copied" wait_until 40 at_least "$T/o.jsonl" 100
kill -USR1 "$KAFKA_PID"                       # every broker down
sleep 3
check "the runner is still running during the outage" kill -0 "$runner"
kill -USR2 "$KAFKA_PID"                       # back up
produce_json in b 1 100
check "after the outage: the next 100 are copied" wait_until 60 at_least "$T/o.jsonl" 200
sleep 1
stop_runner "$runner"
expect_eq "the runner stops cleanly after the outage" 0 "$STOP_STATUS"
expect_eq "every input key is in the output topic" \
  "$( (seq 1 100 | sed 's/^/a/'; seq 1 100 | sed 's/^/b/') | sort)" "$(topic_keys out | sort -u)"
expect_eq "nothing dead-lettered" 0 "$(lines "$T/e.jsonl")"
finish
