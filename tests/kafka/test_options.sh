#!/usr/bin/env bash
# source.kafka / sink.kafka options: errors name the option at fault; secrets (properties whose
# name says password/secret/token/key, and every secret() value) never appear in any output.
. "$(dirname "$0")/../lib.sh"
. tests/kafka/kafka_lib.sh
start_kafka --topic in:1
produce_json in k 1 5

# run_job NAME LUA-SOURCE-DECLARATION [RUN ARGS...]: runs a one-source job, output in $T/NAME.*
run_job() {
  local name="$1" decl="$2"; shift 2
  cat > "$T/$name.lua" <<LUA
return job { name = "$name", source = $decl,
             sinks = { sink.jsonl { path = "$T/$name.jsonl" } }, errors = sink.jsonl { path = "$T/$name.dead.jsonl" } }
LUA
  timeout 60 $RUNNEL run "$T/$name.lua" "$@" >"$T/$name.out" 2>"$T/$name.err"
}

(unset KAFKA_BROKERS; run_job nobrokers 'source.kafka { topic = "in" }')
expect_contains "no brokers anywhere: says how to set them" "$T/nobrokers.err" "no brokers: set the option brokers"
run_job badformat 'source.kafka { topic = "in", format = "xml" }'
expect_contains "bad format: names the option and the script line" "$T/badformat.err" 'badformat.lua:1: source.kafka: format: unknown value "xml" (one of json, csv, text, avro)'
run_job nogroup 'source.kafka { topic = "in" }' --mode stream
expect_contains "stream mode without a group: names group" "$T/nogroup.err" "stream mode needs a consumer group: group ="
run_job csvcols 'source.kafka { topic = "in", format = "csv" }'
expect_contains "csv without columns" "$T/csvcols.err" 'format = "csv" needs columns'
run_job autocommit 'source.kafka { topic = "in", properties = { ["enable.auto.commit"] = "true" } }'
expect_contains "a property runnel manages is refused by name" "$T/autocommit.err" 'properties["enable.auto.commit"]: runnel sets this property itself'
run_job badprop 'source.kafka { topic = "in", properties = { ["no.such.property"] = "1" } }'
expect_contains "an unknown librdkafka property is named" "$T/badprop.err" 'properties["no.such.property"]: No such configuration property'
run_job badstart 'source.kafka { topic = "in", start = "yesterday" }'
expect_contains "bad start" "$T/badstart.err" 'source.kafka: start: unknown value "yesterday" (one of committed, earliest, latest)'
run_job typo 'source.kafka { topic = "in", gruop = "x" }'
expect_contains "an unknown option gets a did-you-mean" "$T/typo.err" "source.kafka: gruop: unknown option; did you mean group?"

# secrets: a secret() value rejected by librdkafka is masked in the error ...
export BAD_TIMEOUT="not-a-number-s3cr3t"
run_job secret1 'source.kafka { topic = "in", properties = { ["socket.timeout.ms"] = secret("BAD_TIMEOUT") } }'
expect_contains "a rejected secret() value is named by property" "$T/secret1.err" 'properties["socket.timeout.ms"]'
check "... and masked" bash -c "! grep -q s3cr3t '$T/secret1.err'"
# ... and with librdkafka's configuration debug log on, passwords never reach stderr
export KAFKA_PASSWORD="pa55-s3cr3t"
run_job secret2 'source.kafka { topic = "in", properties = { ["sasl.password"] = secret("KAFKA_PASSWORD"),
  ["ssl.key.password"] = "k3y-s3cr3t", debug = "conf" } }'
expect_eq "a job with secrets in properties runs" 5 "$(lines "$T/secret2.jsonl")"
check "librdkafka's debug log was printed" grep -q "librdkafka CONF" "$T/secret2.err"
check "no secret in stdout or stderr" bash -c "! grep -q s3cr3t '$T/secret2.err' '$T/secret2.out'"
export EMPTY_SECRET=""
run_job secret3 'source.kafka { topic = "in", properties = { ["sasl.password"] = secret("EMPTY_SECRET") } }'
expect_contains "an empty secret() is refused by name" "$T/secret3.err" '<secret EMPTY_SECRET> is empty'

# sink options
cat > "$T/sinkcsv.lua" <<'LUA'
return job { name = "sinkcsv", source = source.kafka { topic = "in", metadata = false },
  sinks = { sink.kafka { topic = "csv_out", format = "csv", columns = { "key", "id" }, key = "key",
                         headers = { origin = "runnel-test" } } } }
LUA
timeout 60 $RUNNEL run "$T/sinkcsv.lua" 2>"$T/sinkcsv.err"
expect_eq "sink csv format, key and static headers" "k1 k1,1 origin=runnel-test" \
  "$(timeout 30 kcat -C -b "$KAFKA_BROKERS" -t csv_out -o beginning -e -q -f '%k %s %h\n' | sort | head -1)"
cat > "$T/sinkbad.lua" <<'LUA'
return job { name = "sinkbad", source = source.kafka { topic = "in" },
  sinks = { sink.kafka { topic = "x", format = "csv" } } }
LUA
timeout 60 $RUNNEL run "$T/sinkbad.lua" 2>"$T/sinkbad.err"
expect_contains "sink csv without columns" "$T/sinkbad.err" 'sinkbad.lua:2: sink.kafka: format = "csv" needs columns'
# metadata: key, headers; columns orders the fields of JSON values
printf 'hk|{"a":1,"z":2}\n' | timeout 30 kcat -P -b "$KAFKA_BROKERS" -t hdr -K'|' -H trace=abc -H src=t1
run_job meta 'source.kafka { topic = "hdr" }'
expect_eq "metadata fields, with _key and _headers" '{"_topic":"hdr","_partition":0,"_offset":0,"_key":"hk","_headers":{"src":"t1","trace":"abc"},"a":1,"z":2}' \
  "$(jq -c 'del(._timestamp)' "$T/meta.jsonl")"
check "_timestamp is a time in ms" jq -e '._timestamp > 1500000000000' "$T/meta.jsonl" >/dev/null
run_job ordered 'source.kafka { topic = "hdr", columns = { "z", "a" }, metadata = false }'
expect_eq "metadata = false; columns order the JSON fields" '{"z":2,"a":1}' "$(cat "$T/ordered.jsonl")"
check "runnel help source.kafka lists the options" bash -c "$RUNNEL help source.kafka | grep -q properties"
check "runnel help sink.kafka documents the producer defaults" bash -c "$RUNNEL help sink.kafka | grep -q linger.ms=5"
finish
