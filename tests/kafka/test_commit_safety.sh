#!/usr/bin/env bash
# Offsets are never committed past a record that is not acknowledged by every sink.
#  a) a sink.lua that fails at record K = 1500 of a slowed batch run (checkpoints every 100 ms;
#     the pipeline checks for one every 512 records, so some commits happen first): the job stops with the error; a rerun in the group starts at an
#     offset > 0 (earlier commits held) and <= K's offset (nothing after K was committed).
#  b) a sink.kafka whose brokers are down: deliveries time out, the job stops naming the topic,
#     partition and librdkafka error; nothing of that run is committed, so once the brokers are
#     back a rerun reads exactly those records again and the sink topic gets every key.
. "$(dirname "$0")/../lib.sh"
. tests/kafka/kafka_lib.sh
start_kafka --topic one:1 --topic two:2
IN_BROKERS=$KAFKA_BROKERS

# a) one partition, 2000 messages, the 1500th record (offset 1499) fails in sink.lua
produce_json one k 1 2000
timeout 60 $RUNNEL run "$KAFKA_JOB" --set in=one --set group=ga --set checkpoint=100ms --set delay_ms=1 \
  --set fail_at=1500 --set output="$T/a1.jsonl" --set errors="$T/ea1.jsonl" --summary-json "$T/a1.json" 2>"$T/a1.log"
status=$?
check "a: the job fails (status $status)" [ "$status" = 1 ]
expect_contains "a: the error names the sink failure" "$T/a1.log" "sink failure injected at record 1500 (offset 1499)"
timeout 60 $RUNNEL run "$KAFKA_JOB" --set in=one --set group=ga --set output="$T/a2.jsonl" --set errors="$T/ea2.jsonl" \
  --summary-json "$T/a2.json" 2>"$T/a2.log"
expect_eq "a: the rerun exits 0" 0 $?
first=$(jq -s 'map(._offset) | min' "$T/a2.jsonl")
echo "   the rerun starts at offset $first (the failed record is offset 1499)"
check "a: earlier checkpoints were committed (rerun starts after 0)" [ "$first" -gt 0 ]
check "a: nothing after the failed record was committed (rerun starts at <= 1499)" [ "$first" -le 1499 ]
expect_eq "a: the rerun reads on to the end (offset 1999)" 1999 "$(jq -s 'map(._offset) | max' "$T/a2.jsonl")"
expect_eq "a: the rerun reads every offset from there once" "$((2000 - first))" "$(lines "$T/a2.jsonl")"

# b) the sink's brokers: a second cluster
start_kafka --topic sunk:2
export OUT_BROKERS=$KAFKA_BROKERS SINK_PID=$KAFKA_PID
export KAFKA_BROKERS=$IN_BROKERS
produce_json two first 1 50
timeout 60 $RUNNEL run "$KAFKA_JOB" --set in=two --set group=gb --set out=sunk --set message_timeout=1500 \
  --set output="$T/b1.jsonl" --set errors="$T/eb1.jsonl" --summary-json "$T/b1.json" 2>"$T/b1.log"
expect_eq "b: first run with the sink cluster up exits 0" 0 $?
expect_eq "b: first run read 50" 50 "$(sj "$T/b1.json" .read)"
kill -USR1 "$SINK_PID"   # the sink's brokers go down
sleep 0.3
produce_json two second 1 30
start=$SECONDS
timeout 60 $RUNNEL run "$KAFKA_JOB" --set in=two --set group=gb --set out=sunk --set message_timeout=1500 \
  --set output="$T/b2.jsonl" --set errors="$T/eb2.jsonl" --summary-json "$T/b2.json" 2>"$T/b2.log"
status=$?
check "b: with the sink's brokers down the job fails (status $status, after $((SECONDS - start)) s)" [ "$status" = 1 ]
expect_contains "b: the error names the topic and the delivery failure" "$T/b2.log" "topic sunk"
expect_contains "b: ... and librdkafka's reason" "$T/b2.log" "delivery failed"
expect_contains "b: ... Message timed out" "$T/b2.log" "Message timed out"
kill -USR2 "$SINK_PID"   # back up
sleep 0.3
timeout 60 $RUNNEL run "$KAFKA_JOB" --set in=two --set group=gb --set out=sunk --set message_timeout=10000 \
  --set output="$T/b3.jsonl" --set errors="$T/eb3.jsonl" --summary-json "$T/b3.json" 2>"$T/b3.log"
expect_eq "b: rerun with the brokers back exits 0" 0 $?
expect_eq "b: the rerun reads exactly the 30 records of the failed run (none were committed)" \
  "$(seq 1 30 | sed 's/^/second/' | sort)" "$(jq -r ._key "$T/b3.jsonl" | sort)"
expect_eq "b: the sink topic has every key" "$( (seq 1 50 | sed 's/^/first/'; seq 1 30 | sed 's/^/second/') | sort)" \
  "$(topic_keys sunk "$OUT_BROKERS" | sort -u)"
finish
