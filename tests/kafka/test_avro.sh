#!/usr/bin/env bash
# test_avro.sh: format = "avro" over real Kafka (bin/kafka-dev) and the Schema Registry stand-in,
# the bytes checked by an independent decoder (python3-avro, tests/tools/avro_wire.py): the
# review jobs' round trip, schema resolution with defaults and enums by name, every type both
# ways, every bad message to the dead letters with its reason (the items cap too), a record
# that does not fit rejected naming the field, a registry refusal (409) that stops the job,
# registry errors with their codes.
. "$(dirname "$0")/../lib.sh"
. tests/kafka/kafka_lib.sh
PYTHON=${PYTHON:-/usr/bin/python3}
WIRE=tests/tools/avro_wire.py
"$PYTHON" -c 'import avro.io' 2>/dev/null || { echo "FAIL python3-avro is not installed for $PYTHON"; exit 1; }
start_kafka --topic product_review:1 --topic every:1 --topic bad:1 --topic resolve:1 --topic out:1 --topic enums:1
start_standin schema-registry-dev
export SCHEMA_REGISTRY_URL=$STANDIN_URL
URL=$STANDIN_URL
# message TOPIC OFFSET FILE: one message's value, as it is
message() { timeout 30 kcat -C -b "$KAFKA_BROKERS" -t "$1" -p 0 -o "$2" -c 1 -e -q -f '%s' >"$3"; }

# --- the review jobs: CSV -> Avro topic -> records ---------------------------------------------
head -51 data/reviews_sample.csv >"$T/reviews.csv"
timeout 60 $RUNNEL run jobs/reviews_to_kafka_avro.lua --set input="$T/reviews.csv" --set errors="$T/p.dead.jsonl" \
  --summary-json "$T/p.sum.json" 2>"$T/p.log"
expect_eq "reviews_to_kafka_avro.lua exits 0" 0 $?
check "it wrote every review (written = read > 40)" jq -e '.written == .read and .read > 40' "$T/p.sum.json"
check "jobs/review.avsc is registered under product_review-value" bash -c \
  "curl -sf $URL/subjects/product_review-value/versions/latest | jq -e '.id == 1 and (.schema | fromjson | .name) == \"ProductReview\"'"
message product_review 0 "$T/m0"
check "the first message is magic 0 then schema id 1 (big-endian)" bash -c "head -c 5 '$T/m0' | xxd -p | grep -qx 0000000001"
expect_eq "python3-avro reads it as the CSV's first review" \
  '{"product_id": "B00CHPC7GJ", "review_id": 1, "score": 5, "summary": "This fantastic k-cups, best ever!", "timestamp": 1329868800, "user_id": "A1SMSNFDCSSNUY"}' \
  "$("$PYTHON" $WIRE decode "$URL" "$T/m0" 2>&1)"
expect_eq "its key is the product id as text" "B00CHPC7GJ" "$(timeout 30 kcat -C -b "$KAFKA_BROKERS" -t product_review -o 0 -c 1 -e -q -f '%k')"
cat >"$T/read.lua" <<'LUA'
return job { name = "avro_read",
  source = source.kafka { topic = param("topic"), format = "avro", schema = param("schema", "") ~= "" and param("schema", "") or nil, metadata = false,
                          registry = { url = env("SCHEMA_REGISTRY_URL") } },
  sinks = { sink.jsonl { path = param("output") } }, errors = sink.jsonl { path = param("errors") } }
LUA
timeout 60 $RUNNEL run "$T/read.lua" --set topic=product_review --set output="$T/r.jsonl" --set errors="$T/r.dead.jsonl" \
  --summary-json "$T/r.sum.json" 2>"$T/r.log"
expect_eq "source.kafka with format = avro reads them all" "$(sj "$T/p.sum.json" .written)" "$(sj "$T/r.sum.json" .written)"
expect_eq "the records are the CSV's, in the schema's field order" \
  '{"review_id":1,"product_id":"B00CHPC7GJ","user_id":"A1SMSNFDCSSNUY","timestamp":1329868800,"summary":"This fantastic k-cups, best ever!","score":5}' \
  "$(head -1 "$T/r.jsonl")"

# --- schema resolution --------------------------------------------------------------------------
V1='{"type":"record","name":"R","namespace":"t","fields":[{"name":"id","type":"int"},{"name":"name","type":"string"}]}'
printf '%s' "$V1" >"$T/v1.avsc"
id1=$("$PYTHON" $WIRE register "$URL" resolve-value "$T/v1.avsc")
"$PYTHON" $WIRE encode "$URL" "$id1" '{"id": 7, "name": "seven"}' "$T/in.bin"
timeout 30 kcat -P -b "$KAFKA_BROKERS" -t resolve -p 0 "$T/in.bin"
printf '%s' '{"type":"record","name":"R","namespace":"t","fields":[{"name":"id","type":"long"},{"name":"name","type":"string"},{"name":"lang","type":"string","default":"en"},{"name":"n","type":["null","int"],"default":null}]}' >"$T/reader.avsc"
timeout 60 $RUNNEL run "$T/read.lua" --set topic=resolve --set schema="$T/reader.avsc" --set output="$T/res.jsonl" \
  --set errors="$T/res.dead.jsonl" 2>"$T/res.log"
expect_eq "a reader schema: int promoted to long, a missing field takes its default" '{"id":7,"name":"seven","lang":"en"}' "$(cat "$T/res.jsonl")"
expect_eq "python3-avro resolves it the same way" '{"id": 7, "lang": "en", "n": null, "name": "seven"}' \
  "$("$PYTHON" $WIRE decode "$URL" "$T/in.bin" "$T/reader.avsc")"
printf '%s' '{"type":"record","name":"R","namespace":"t","fields":[{"name":"id","type":"long"},{"name":"city","type":"string"}]}' >"$T/noread.avsc"
timeout 60 $RUNNEL run "$T/read.lua" --set topic=resolve --set schema="$T/noread.avsc" --set output="$T/nr.jsonl" \
  --set errors="$T/nr.dead.jsonl" 2>"$T/nr.log"
expect_contains "a reader field without a default the writer lacks: dead letter naming it" "$T/nr.dead.jsonl" \
  "the reader's field 'city' of record t.R has no default"
# enums resolve by symbol name, not by the writer's index (libavro copies the index)
printf '%s' '{"type":"record","name":"E","namespace":"t","fields":[{"name":"id","type":"int"},{"name":"mood","type":{"type":"enum","name":"Mood","symbols":["GOOD","BAD","MEH"]}}]}' >"$T/ew.avsc"
eid=$("$PYTHON" $WIRE register "$URL" enums-value "$T/ew.avsc")
"$PYTHON" $WIRE encode "$URL" "$eid" '{"id": 1, "mood": "MEH"}' "$T/en1.bin"
"$PYTHON" $WIRE encode "$URL" "$eid" '{"id": 2, "mood": "GOOD"}' "$T/en2.bin"
timeout 30 kcat -P -b "$KAFKA_BROKERS" -t enums -p 0 "$T/en1.bin"
timeout 30 kcat -P -b "$KAFKA_BROKERS" -t enums -p 0 "$T/en2.bin"
enum_reader() { # FILE SYMBOLS [DEFAULT]
  printf '{"type":"record","name":"E","namespace":"t","fields":[{"name":"id","type":"int"},{"name":"mood","type":{"type":"enum","name":"Mood","symbols":%s%s}}]}' \
    "$2" "${3:+,\"default\":\"$3\"}" >"$1"
}
enum_reader "$T/er1.avsc" '["MEH","BAD","GOOD"]'
timeout 60 $RUNNEL run "$T/read.lua" --set topic=enums --set schema="$T/er1.avsc" --set output="$T/en.jsonl" \
  --set errors="$T/en.dead.jsonl" 2>"$T/en.log"
expect_eq "a reader enum in another order: each symbol read by its name" '{"id":1,"mood":"MEH"} {"id":2,"mood":"GOOD"}' \
  "$(paste -sd' ' "$T/en.jsonl")"
expect_eq "python3-avro reads it the same way" '{"id": 1, "mood": "MEH"}' "$("$PYTHON" $WIRE decode "$URL" "$T/en1.bin" "$T/er1.avsc")"
enum_reader "$T/er2.avsc" '["GOOD","BAD"]'
timeout 60 $RUNNEL run "$T/read.lua" --set topic=enums --set schema="$T/er2.avsc" --set output="$T/en2.jsonl" \
  --set errors="$T/en2.dead.jsonl" 2>"$T/en2.log"
expect_eq "a writer symbol the reader lacks: the others are read" '{"id":2,"mood":"GOOD"}' "$(cat "$T/en2.jsonl")"
expect_eq "and it is dead-lettered naming the topic, offset, field and symbol" \
  "topic enums [0] offset 0: schema $eid: field 'mood': enum t.Mood: the writer's symbol 'MEH' is not in the reader's schema, which has no default" \
  "$(jq -r .reason "$T/en2.dead.jsonl")"
enum_reader "$T/er3.avsc" '["GOOD","BAD"]' BAD
timeout 60 $RUNNEL run "$T/read.lua" --set topic=enums --set schema="$T/er3.avsc" --set output="$T/en3.jsonl" \
  --set errors="$T/en3.dead.jsonl" 2>"$T/en3.log"
expect_eq "with the reader enum's default, the symbol it lacks reads as the default" '{"id":1,"mood":"BAD"} {"id":2,"mood":"GOOD"}' \
  "$(paste -sd' ' "$T/en3.jsonl")"

# --- every type, both ways -----------------------------------------------------------------------
cat >"$T/every.avsc" <<'AVSC'
{"type":"record","name":"Every","namespace":"runnel.test","fields":[
 {"name":"id","type":"long"}, {"name":"flag","type":"boolean"}, {"name":"small","type":"int"},
 {"name":"ratio","type":"float"}, {"name":"weight","type":"double"}, {"name":"name","type":"string"},
 {"name":"blob","type":"bytes"}, {"name":"tag","type":{"type":"fixed","name":"Tag","size":4}},
 {"name":"mood","type":{"type":"enum","name":"Mood","symbols":["GOOD","BAD","MEH"]}},
 {"name":"tags","type":{"type":"array","items":"string"}}, {"name":"counts","type":{"type":"map","values":"long"}},
 {"name":"maybe","type":["null","string"]}, {"name":"either","type":["null","long","string"]},
 {"name":"inner","type":{"type":"record","name":"Inner","fields":[{"name":"x","type":"int"},{"name":"moods","type":{"type":"array","items":"Mood"}}]}},
 {"name":"day","type":{"type":"int","logicalType":"date"}},
 {"name":"at_ms","type":{"type":"long","logicalType":"timestamp-millis"}},
 {"name":"at_us","type":{"type":"long","logicalType":"timestamp-micros"}},
 {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}},
 {"name":"fprice","type":{"type":"fixed","name":"Money","size":8,"logicalType":"decimal","precision":12,"scale":3}},
 {"name":"uid","type":{"type":"string","logicalType":"uuid"}}]}
AVSC
printf 'id\n1\n2\n3\n' >"$T/ids.csv"
cat >"$T/every.lua" <<'LUA'
return job { name = "avro_every",
  source = source.csv { path = param("input"), header = true, types = { id = "integer" } },
  map = function(r)
    local id = r.id
    if id == 3 then return { id = 3, flag = true } end   -- does not fit: rejected by the sink
    return { id = id, flag = id % 2 == 0, small = -1000 * id, ratio = 0.5, weight = id / 4, name = "név " .. id,
             blob = "\0\1\127", tag = string.format("ab%02d", id), mood = ({ "GOOD", "BAD", "MEH" })[id + 1],
             tags = { "a", "b" }, counts = { x = id }, maybe = id % 2 == 0 and "yes" or nil,
             either = id % 2 == 0 and id or ("s" .. id), inner = { x = id, moods = { "BAD", "GOOD" } },
             day = "2026-12-02", at_ms = 1764633600123, at_us = 1764633600123456, price = "-12.50",
             fprice = "1234.5", uid = "12345678-1234-1234-1234-123456789abc" }
  end,
  sinks = { sink.kafka { topic = "every", format = "avro", schema = param("schema"), key = "id", key_schema = '"long"',
                         registry = { url = env("SCHEMA_REGISTRY_URL"), subject_strategy = "record" } } },
  errors = sink.jsonl { path = param("errors") } }
LUA
timeout 60 $RUNNEL run "$T/every.lua" --set input="$T/ids.csv" --set schema="$T/every.avsc" --set errors="$T/e.dead.jsonl" \
  --summary-json "$T/e.sum.json" 2>"$T/e.log"
expect_eq "every type: 2 written" 2 "$(sj "$T/e.sum.json" .written)"
expect_eq "and the record that does not fit is dead-lettered" 1 "$(sj "$T/e.sum.json" .dead_lettered)"
expect_contains "its reason names the field" "$T/e.dead.jsonl" "field 'small' is missing (int, no default)"
check "subject_strategy = record registers under the record's full name; the key under every-key" bash -c \
  "curl -sf $URL/subjects | jq -e 'index(\"runnel.test.Every\") != null and index(\"every-key\") != null'"
message every 0 "$T/e0"
expect_eq "python3-avro reads every type as written" \
  '{"at_ms": 1764633600123000, "at_us": 1764633600123456, "blob": "\u0000\u0001\u007f", "counts": {"x": 1}, "day": "2026-12-02", "either": "s1", "flag": false, "fprice": "1234.500", "id": 1, "inner": {"moods": ["BAD", "GOOD"], "x": 1}, "maybe": null, "mood": "BAD", "name": "n\u00e9v 1", "price": "-12.50", "ratio": 0.5, "small": -1000, "tag": "ab01", "tags": ["a", "b"], "uid": "12345678-1234-1234-1234-123456789abc", "weight": 0.25}' \
  "$("$PYTHON" $WIRE decode "$URL" "$T/e0" 2>&1)"
timeout 30 kcat -C -b "$KAFKA_BROKERS" -t every -p 0 -o 1 -c 1 -e -q -f '%k' >"$T/k1"
check "the key is in the wire format too (long 2: zig-zag 04)" bash -c "xxd -p '$T/k1' | grep -qE '^00000000[0-9a-f]{2}04$'"
eid=$(curl -sf "$URL/subjects/runnel.test.Every/versions/latest" | jq .id)
"$PYTHON" $WIRE encode "$URL" "$eid" '{"id": 9, "flag": true, "small": -5, "ratio": 1.5, "weight": 2.25, "name": "py", "blob": "\u00ff", "tag": "wxyz", "mood": "MEH", "tags": [], "counts": {}, "maybe": "m", "either": 42, "inner": {"x": 1, "moods": []}, "day": "1969-12-31", "at_ms": -1, "at_us": 5, "price": "0.05", "fprice": "-0.001", "uid": "00000000-0000-0000-0000-000000000000"}' "$T/py.bin"
timeout 30 kcat -P -b "$KAFKA_BROKERS" -t every -p 0 "$T/py.bin"
cat >"$T/every_read.lua" <<'LUA'
return job { name = "avro_every_read",
  source = source.kafka { topic = "every", format = "avro", metadata = false, registry = { url = env("SCHEMA_REGISTRY_URL") } },
  map = function(r) r.blob = r.blob:gsub(".", function(c) return string.format("%02x", c:byte()) end) return r end,
  sinks = { sink.jsonl { path = param("output") } }, errors = sink.jsonl { path = param("errors") } }
LUA
timeout 60 $RUNNEL run "$T/every_read.lua" --set output="$T/ev.jsonl" --set errors="$T/ev.dead.jsonl" 2>"$T/ev.log"
expect_eq "runnel reads its own messages back" \
  '{"id":2,"flag":true,"small":-2000,"ratio":0.5,"weight":0.5,"name":"név 2","blob":"00017f","tag":"ab02","mood":"MEH","tags":["a","b"],"counts":{"x":2},"maybe":"yes","either":2,"inner":{"moods":["BAD","GOOD"],"x":2},"day":"2026-12-02","at_ms":1764633600123,"at_us":1764633600123456,"price":"-12.50","fprice":"1234.500","uid":"12345678-1234-1234-1234-123456789abc"}' \
  "$(sed -n 2p "$T/ev.jsonl")"
# an empty array is an empty Lua table, which JSON writes as {}
expect_eq "and python3-avro's: every type by the README's mapping" \
  '{"id":9,"flag":true,"small":-5,"ratio":1.5,"weight":2.25,"name":"py","blob":"ff","tag":"wxyz","mood":"MEH","tags":{},"counts":{},"maybe":"m","either":42,"inner":{"moods":{},"x":1},"day":"1969-12-31","at_ms":-1,"at_us":5,"price":"0.05","fprice":"-0.001","uid":"00000000-0000-0000-0000-000000000000"}' \
  "$(sed -n 3p "$T/ev.jsonl")"

# --- bad messages: each dead-lettered with its reason ----------------------------------------------
hdr() { printf '\x00\x00\x00\x00\x01'; }   # schema 1: jobs/review.avsc
good=$(tail -c +6 "$T/m0" | xxd -p | tr -d '\n')
bad() { timeout 30 kcat -P -b "$KAFKA_BROKERS" -t bad -p 0 "$1"; }
printf '\x01\x00\x00\x00\x01abc' >"$T/b1"; bad "$T/b1"                                  # wrong magic byte
printf '\x00\x00\x01' >"$T/b2"; bad "$T/b2"                                              # shorter than the header
{ printf '\x00\x00\x00\x03\xe7'; tail -c +6 "$T/m0"; } >"$T/b3"; bad "$T/b3"             # unknown id 999
head -c 20 "$T/m0" >"$T/b4"; bad "$T/b4"                                                 # truncated
{ hdr; printf '\x02\xfe\xff\xff\xff\xff\x3f'; } >"$T/b5"; bad "$T/b5"                   # a string claiming 2^45 bytes
{ cat "$T/m0"; printf 'xx'; } >"$T/b6"; bad "$T/b6"                                      # bytes after the value
{ head -c -2 "$T/m0"; printf '\x08'; } >"$T/b7"; bad "$T/b7"                           # union index 4 of 2
cp "$T/m0" "$T/b8"; bad "$T/b8"                                                          # a good one last
printf '%s' '{"type":"record","name":"Many","fields":[{"name":"nothing","type":{"type":"array","items":"null"}}]}' >"$T/many.avsc"
mid=$("$PYTHON" $WIRE register "$URL" many-value "$T/many.avsc")
{ printf '\x00\x00\x00\x00'"\\x$(printf %02x "$mid")"; printf '\x80\x92\xf4\x01\x00'; } >"$T/b9"; bad "$T/b9"  # 2,000,000 nulls in 4 bytes
timeout 60 $RUNNEL run "$T/read.lua" --set topic=bad --set output="$T/bad.jsonl" --set errors="$T/bad.dead.jsonl" \
  --summary-json "$T/bad.sum.json" 2>"$T/bad.log"
expect_eq "bad messages: the job goes on (exit 0)" 0 $?
check "read = written + dead-lettered (9 = 1 + 8)" jq -e '.read == 9 and .written == 1 and .dead_lettered == 8' "$T/bad.sum.json"
reason() { jq -r --argjson o "$1" 'select(.offset == $o) | .reason' "$T/bad.dead.jsonl"; }
has() { if [[ "$(reason "$2")" == *"$3"* ]]; then pass "$1"; else fail "$1: '$3' not in '$(reason "$2")'"; fi; }
has "wrong magic byte" 0 "topic bad [0] offset 0: magic byte 0x01, not 0"
has "shorter than the header" 1 "the value is 3 bytes, shorter than the wire format's header"
has "unknown schema id, with the registry's code" 2 "error 40403: Schema 999 not found"
has "truncated" 3 "(truncated"
has "a length past the message, before libavro allocates it" 4 "claims 1099511627775 bytes but only 0 are left"
has "bytes after the value" 5 "2 bytes are left after the value's end"
has "a union branch that does not exist" 6 "field 'score': the union at byte"
has "more items than one message may hold, naming the field and the cap" 8 \
  "topic bad [0] offset 8: schema $mid: field 'nothing': an array block at byte 5 claims 2000000 items, more than the 1000000 left of the 1000000 allowed in one message"

# --- registry refusals and errors ------------------------------------------------------------------
printf '%s' '{"type":"record","name":"ProductReview","namespace":"runnel.demo","fields":[{"name":"review_id","type":"long"},{"name":"extra","type":"string"}]}' >"$T/incompatible.avsc"
cat >"$T/write.lua" <<'LUA'
return job { name = "avro_write",
  source = source.csv { path = param("input"), header = true, types = { id = "integer" } },
  map = function(r) return { review_id = r.id, extra = "x" } end,
  sinks = { sink.kafka { topic = param("topic"), format = "avro", schema = param("schema"),
                         registry = { url = param("url", env("SCHEMA_REGISTRY_URL")), retries = 0, timeout = "2s",
                                      user = param("user", "") ~= "" and param("user", "") or nil,
                                      password = param("password", "") ~= "" and param("password", "") or nil } } },
  errors = sink.jsonl { path = param("errors") } }
LUA
timeout 60 $RUNNEL run "$T/write.lua" --set input="$T/ids.csv" --set topic=product_review --set schema="$T/incompatible.avsc" \
  --set errors="$T/w.dead.jsonl" 2>"$T/w409.log"
rc=$?
check "an incompatible schema (409) stops the job (exit $rc)" test "$rc" -ne 0
expect_contains "with the registry's code and message" "$T/w409.log" "HTTP 409, error 409: Schema being registered is incompatible"
expect_contains "naming the subject" "$T/w409.log" "subject product_review-value (the registry refused the schema)"
printf '%s' '{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":"x"}]}' >"$T/invalid.avsc"
timeout 60 $RUNNEL run "$T/write.lua" --set input="$T/ids.csv" --set topic=out --set schema="$T/invalid.avsc" \
  --set errors="$T/w.dead.jsonl" 2>"$T/w422.log"
check "a schema the registry finds invalid stops the job" test $? -ne 0
expect_contains "with 42201" "$T/w422.log" "error 42201"
timeout 60 $RUNNEL run "$T/write.lua" --set input="$T/ids.csv" --set topic=out --set schema="$T/incompatible.avsc" \
  --set url=http://127.0.0.1:1 --set errors="$T/w.dead.jsonl" 2>"$T/wdown.log"
check "a registry that does not answer stops the job" test $? -ne 0
expect_contains "saying so" "$T/wdown.log" "schema registry http://127.0.0.1:1: POST /subjects/out-value/versions: no answer"
start_standin schema-registry-dev --fail-next 1 --fail-status 503
AUTH_URL=$STANDIN_URL
timeout 60 $RUNNEL run "$T/write.lua" --set input="$T/ids.csv" --set topic=out --set schema="$T/incompatible.avsc" \
  --set url="$AUTH_URL" --set errors="$T/w.dead.jsonl" 2>"$T/w503.log"
check "a 5xx with retries = 0 stops the job" test $? -ne 0
expect_contains "with its status" "$T/w503.log" "HTTP 503"
start_standin schema-registry-dev --basic 'runnel:s3cret'
AUTH_URL=$STANDIN_URL
timeout 60 $RUNNEL run "$T/write.lua" --set input="$T/ids.csv" --set topic=out --set schema="$T/incompatible.avsc" \
  --set url="$AUTH_URL" --set user=runnel --set password=wrong --set errors="$T/w.dead.jsonl" 2>"$T/w401.log"
check "a wrong password stops the job" test $? -ne 0
expect_contains "with 401" "$T/w401.log" "HTTP 401"
timeout 60 $RUNNEL run "$T/write.lua" --set input="$T/ids.csv" --set topic=out --set schema="$T/incompatible.avsc" \
  --set url="$AUTH_URL" --set user=runnel --set password=s3cret --set errors="$T/w.dead.jsonl" \
  --summary-json "$T/wa.sum.json" 2>"$T/wauth.log"
expect_eq "basic auth: the right password registers and writes" 3 "$(sj "$T/wa.sum.json" .written)"
finish
