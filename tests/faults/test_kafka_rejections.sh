#!/usr/bin/env bash
# sink.kafka on the sink interface v2: a record the broker refuses, or one larger than the
# producer's message.max.bytes, is rejected: dead-lettered (stage sink.kafka, librdkafka's
# reason) while the job goes on, and its offset is committed like any other. An outage (the
# sink's brokers down past message.timeout.ms) is not a rejection: the job stops, nothing is
# dead-lettered, nothing is committed past it.
# Two development clusters: the input topic on one; the output topic on another whose first
# two Produce requests are refused with MESSAGE_TOO_LARGE (kafka-dev --produce-errors).
. "$(dirname "$0")/../lib.sh"
. tests/kafka/kafka_lib.sh
start_kafka --topic in:2
IN_BROKERS=$KAFKA_BROKERS
start_kafka --topic out:2 --produce-errors 10:2
OUT_BROKERS=$KAFKA_BROKERS SINK_PID=$KAFKA_PID
export KAFKA_BROKERS=$IN_BROKERS OUT_BROKERS

produce_json in k 1 600
cat > "$T/job.lua" <<'LUA'
return job {
  name = "rejections",
  source = source.kafka { brokers = env("KAFKA_BROKERS"), topic = "in", group = "g", metadata = true },
  map = function(r)
    if r.id % 50 == 0 then r.pad = string.rep("x", 5000) end -- over message.max.bytes below
    return r
  end,
  sinks = { sink.kafka { brokers = env("OUT_BROKERS"), topic = "out", key = "key",
                         properties = { ["message.max.bytes"] = "4000",
                                        ["message.timeout.ms"] = param("message_timeout", "30000") } },
            sink.jsonl { path = param("output") } },
  errors = sink.jsonl { path = param("errors") },
}
LUA
# run NAME ARGS...: exit code in $T/NAME.rc, stderr in $T/NAME.log, summary in $T/NAME.json
run() {
  local name="$1"; shift
  timeout 120 $RUNNEL run "$T/job.lua" --set output="$T/$name.jsonl" --set errors="$T/$name.err" --no-progress \
    --summary-json "$T/$name.json" "$@" 2>"$T/$name.log"
  echo $? > "$T/$name.rc"
}

run a
expect_eq "rejections do not stop the job" 0 "$(cat "$T/a.rc")"
check "invariant: read = written + filtered + dead-lettered" invariant_holds "$T/a.json"
expect_eq "read every message" 600 "$(sj "$T/a.json" .read)"
expect_eq "the JSONL sink holds all 600" 600 "$(lines "$T/a.jsonl")"
dead=$(sj "$T/a.json" .dead_lettered)
echo "   written $(sj "$T/a.json" .written), dead-lettered $dead"
check "the broker refused some batches: their records are dead-lettered" [ "$dead" -gt 12 ]
expect_eq "one dead letter per rejected record" "$dead" "$(lines "$T/a.err")"
expect_eq "sink.kafka's own count says the same" "$dead" "$(sj "$T/a.json" '.sinks[0].rejected')"
check "each dead letter: stage sink.kafka, the sink, the record, its partition and offset" \
  jq -e -s 'all(.[]; .stage == "sink.kafka" and (.sink | startswith("sink.kafka (")) and (.record.key | type) == "string"
                 and (.partition | type) == "number" and (.offset | type) == "number")' "$T/a.err"
check "too large for message.max.bytes: rejected at write, with the size" \
  jq -e -s '[.[] | select(.record.id % 50 == 0)] | length == 12 and
            all(.[]; .reason | test("^topic out: a message of [0-9]+ bytes: Broker: Message size too large$"))' "$T/a.err"
check "refused by the broker: rejected by the delivery report, with the partition and key" \
  jq -e -s '[.[] | select(.record.id % 50 != 0)] | length > 0 and
            all(.[]; .reason | test("^topic out \\[[01]\\] \\(key k[0-9]+\\): the broker refused the message of [0-9]+ bytes: Broker: Message size too large$"))' "$T/a.err"
topic_keys out "$OUT_BROKERS" | sort > "$T/out.keys"
jq -r .record.key "$T/a.err" | sort > "$T/dead.keys"
expect_eq "delivered + dead-lettered = every key" "$(seq 1 600 | sed 's/^/k/' | sort)" "$(sort "$T/out.keys" "$T/dead.keys")"
expect_eq "no key both delivered and dead-lettered" "" "$(comm -12 "$T/out.keys" "$T/dead.keys" | head -3)"
expect_eq "delivered = the written count" "$(sj "$T/a.json" .written)" "$(wc -l < "$T/out.keys")"

run b
expect_eq "a rerun in the group: everything was committed, rejected records too" "0 0" \
  "$(cat "$T/b.rc") $(sj "$T/b.json" .read)"

# ---- an outage is not a bad record ----------------------------------------------------------
kill -USR1 "$SINK_PID"   # the sink's brokers go down
sleep 0.3
produce_json in late 1 40
run c --set message_timeout=1500
expect_eq "sink brokers down: the job stops" 1 "$(cat "$T/c.rc")"
expect_contains "the error names the topic and the delivery failure" "$T/c.log" "delivery failed: Local: Message timed out"
expect_eq "an outage dead-letters nothing" 0 "$(lines "$T/c.err")"
kill -USR2 "$SINK_PID"
sleep 0.3
run d
expect_eq "brokers back: the rerun exits 0" 0 "$(cat "$T/d.rc")"
expect_eq "the rerun reads exactly the 40 records of the failed run (none were committed)" \
  "$(seq 1 40 | sed 's/^/late/' | sort)" "$(jq -r .key "$T/d.jsonl" | sort)"
expect_eq "... and delivers them" "$(seq 1 40 | sed 's/^/late/' | sort)" \
  "$(topic_keys out "$OUT_BROKERS" | grep '^late' | sort -u)"
expect_eq "... with no dead letters" 0 "$(lines "$T/d.err")"

# ---- the dead letters themselves to Kafka: the errors sink acknowledges asynchronously too ----
cat > "$T/dlq.lua" <<'LUA'
return job {
  name = "dlq",
  source = source.kafka { brokers = env("KAFKA_BROKERS"), topic = "in", group = "dlq" },
  sinks = { sink.jsonl { path = param("output") },
            sink.lua { write = function(r) if r.id % 3 == 0 then return false, "a multiple of 3" end end } },
  errors = sink.kafka { brokers = env("OUT_BROKERS"), topic = "dead", key = "job" },
}
LUA
timeout 120 $RUNNEL run "$T/dlq.lua" --set output="$T/e.jsonl" --no-progress --summary-json "$T/e.json" 2>"$T/e.log"
expect_eq "errors = sink.kafka: the job finishes" 0 $?
check "errors = sink.kafka: invariant" invariant_holds "$T/e.json"
expect_eq "errors = sink.kafka: every multiple of 3 dead-lettered" \
  "$( (seq 1 600 | sed 's/^/k/'; seq 1 40 | sed 's/^/late/') | awk '{ n = $0; sub(/^[a-z]+/, "", n) } n % 3 == 0' | sort)" \
  "$(timeout 30 kcat -C -b "$OUT_BROKERS" -t dead -o beginning -e -q -f '%s\n' | jq -r '.record.key' | sort)"
expect_eq "errors = sink.kafka: the dead letters say why" "a multiple of 3" \
  "$(timeout 30 kcat -C -b "$OUT_BROKERS" -t dead -o beginning -e -q -f '%s\n' | jq -r .reason | sort -u)"
finish
