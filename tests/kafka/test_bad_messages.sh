#!/usr/bin/env bash
# Messages that do not decode (not JSON, a JSON array or string, invalid UTF-8, a tombstone;
# for CSV a wrong width or a value of the wrong type) are dead-lettered with topic, partition,
# offset, key, a raw excerpt and the reason; the job goes on; in batch mode
# read = written + filtered + dead_lettered.
. "$(dirname "$0")/../lib.sh"
. tests/kafka/kafka_lib.sh
start_kafka --topic in:2 --topic rows:1

# 10 good, then 4 bad, then 10 good, all to partition 0 (-p 0) so the order is known
{
  seq 1 10 | awk '{ printf "good%d|{\"id\":%d}\n", $1, $1 }'
  printf 'bad-text|this is not json\n'
  printf 'bad-array|[1,2,3]\n'
  printf 'bad-utf8|{"id":"\xff\xfe"}\n'
  printf 'bad-string|"just a string"\n'
  seq 11 20 | awk '{ printf "good%d|{\"id\":%d}\n", $1, $1 }'
} | timeout 30 kcat -P -b "$KAFKA_BROKERS" -t in -p 0 -K'|'
printf 'bad-tombstone|\n' | timeout 30 kcat -P -b "$KAFKA_BROKERS" -t in -p 1 -K'|' -Z   # -Z: empty = null value

timeout 60 $RUNNEL run "$KAFKA_JOB" --set output="$T/out.jsonl" --set errors="$T/dead.jsonl" \
  --summary-json "$T/sum.json" 2>"$T/run.log"
expect_eq "the job goes on past bad messages and exits 0" 0 $?
expect_eq "read 25" 25 "$(sj "$T/sum.json" .read)"
expect_eq "written 20" 20 "$(sj "$T/sum.json" .written)"
expect_eq "dead-lettered 5" 5 "$(sj "$T/sum.json" .dead_lettered)"
check "invariant read = written + filtered + dead_lettered" invariant_holds "$T/sum.json"
expect_eq "the good ones after the bad ones are written too" "$(seq 1 20 | sed 's/^/good/' | sort)" \
  "$(jq -r ._key "$T/out.jsonl" | sort)"
check "the dead-letter file is valid JSON" jq -e . "$T/dead.jsonl" >/dev/null
check "each dead letter has topic, partition, offset, key, reason, stage" jq -e -s 'length == 5 and
  all(.[]; .topic == "in" and (.partition|type) == "number" and (.offset|type) == "number"
           and (.key|startswith("bad-")) and (.reason|type) == "string" and .stage == "source")' "$T/dead.jsonl"
check "offsets of the bad ones on partition 0 are 10..13" \
  jq -e -s '[.[] | select(.partition == 0) | .offset] == [10, 11, 12, 13]' "$T/dead.jsonl"
reason() { jq -r --arg k "$1" 'select(.key == $k) | .reason' "$T/dead.jsonl"; }
expect_contains_text() { if [[ "$2" == *"$3"* ]]; then pass "$1"; else fail "$1: '$3' not in '$2'"; fi; }
expect_contains_text "not JSON: reason names topic/partition/offset" "$(reason bad-text)" "topic in [0] offset 10: the value is not JSON"
expect_contains_text "a JSON array is refused" "$(reason bad-array)" "is an array, not a JSON object"
expect_contains_text "a JSON string is refused" "$(reason bad-string)" "is a string, not a JSON object"
expect_contains_text "invalid UTF-8 is named" "$(reason bad-utf8)" "not valid UTF-8"
expect_contains_text "a tombstone is named" "$(reason bad-tombstone)" "no value (a tombstone)"
expect_eq "the raw excerpt of invalid UTF-8 is readable text" '{"id":"\xFF\xFE"}' \
  "$(jq -r 'select(.key == "bad-utf8") | .raw' "$T/dead.jsonl")"
expect_eq "the raw excerpt of bad JSON" "this is not json" "$(jq -r 'select(.key == "bad-text") | .raw' "$T/dead.jsonl")"

# CSV messages: wrong width and wrong type are dead-lettered by name
# (an unbalanced quote must not spill into the next message)
printf '1,apple,0.5\n2,pear\n3,plum,cheap\n4,"fig, dried",2\n5,kiwi,1,extra\n6,"lime,1\n7,lemon,3\n' |
  timeout 30 kcat -P -b "$KAFKA_BROKERS" -t rows
cat > "$T/csv.lua" <<'LUA'
return job {
  name = "kafka_csv",
  source = source.kafka { topic = "rows", format = "csv", columns = { "id", "fruit", "price" },
                          types = { id = "integer", price = "number" }, metadata = false },
  sinks = { sink.jsonl { path = param("output") } },
  errors = sink.jsonl { path = param("errors") },
}
LUA
timeout 60 $RUNNEL run "$T/csv.lua" --set output="$T/csv.jsonl" --set errors="$T/csv.dead.jsonl" \
  --summary-json "$T/csv.json" 2>"$T/csv.log"
expect_eq "csv: exits 0" 0 $?
check "csv: invariant" invariant_holds "$T/csv.json"
expect_eq "csv: the good rows, typed" '{"id":1,"fruit":"apple","price":0.5}
{"id":4,"fruit":"fig, dried","price":2.0}
{"id":7,"fruit":"lemon","price":3.0}' "$(cat "$T/csv.jsonl")"
expect_eq "csv: the bad rows' reasons" "topic rows [0] offset 1: expected 3 CSV fields, got 2
topic rows [0] offset 2: column 'price': 'cheap' is not a valid number
topic rows [0] offset 4: expected 3 CSV fields, got 4
topic rows [0] offset 5: the value is not valid CSV (a quote inside an unquoted field, or unbalanced quotes)" \
  "$(jq -r .reason "$T/csv.dead.jsonl")"
finish
