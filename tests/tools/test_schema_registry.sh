#!/usr/bin/env bash
# test_schema_registry.sh: bin/schema-registry-dev over real HTTP: every endpoint and error code
# with curl and jq, the compatibility levels, ids shared by equal schemas, faults, auth, --data;
# and an independent client (tests/tools/avro_wire.py on Debian's python3-avro) that fetches
# schemas by id, writes and reads the Confluent wire format and resolves schemas the Avro way,
# so the stand-in's compatibility verdicts are checked against another Avro implementation.
. "$(dirname "$0")/../lib.sh"
PYTHON=${PYTHON:-/usr/bin/python3}
WIRE=tests/tools/avro_wire.py
"$PYTHON" -c 'import avro.io' 2>/dev/null || { echo "FAIL python3-avro is not installed for $PYTHON"; exit 1; }

CT='Content-Type: application/vnd.schemaregistry.v1+json'
AUTH=()
# sr METHOD PATH [BODY]: the answer's body goes to $T/body, its headers to $T/headers; prints the status
sr() {
  local method=$1 path=$2 body=${3:-}
  curl -sS --max-time 10 -o "$T/body" -D "$T/headers" -w '%{http_code}' -X "$method" -H "$CT" \
    ${body:+--data-binary "$body"} "${AUTH[@]}" "$URL$path"
}
schema_body() { jq -cn --arg s "$1" '{schema: $s}'; }
# reg SUBJECT SCHEMA: registers; prints the status
reg() { sr POST "/subjects/$1/versions" "$(schema_body "$2")"; }
# answer STATUS FILTER: the last answer had STATUS and its body passes the jq FILTER
# (jq options such as --arg may come before the filter)
answer() { local want=$1; shift; [ "$status" = "$want" ] && jq -e "$@" "$T/body" >/dev/null; }

help=$(bin/schema-registry-dev --help)
check "--help lists every option" bash -c 'for o in --port --data --compatibility --basic --fail-every --fail-next \
    --fail-status --latency-ms --close-next --threads --verbose; do grep -q -- "$o" <<<"$1" || exit 1; done' _ "$help"
bin/schema-registry-dev --port 0 --compatibility SIDEWAYS 2>"$T/bad-level.err"
check "a bad --compatibility is refused with exit 2" test $? = 2
expect_contains "and the message names it" "$T/bad-level.err" "'SIDEWAYS'"

start_standin schema-registry-dev --data "$T/registry.json"
URL=$STANDIN_URL
REGISTRY_PID=$STANDIN_PID

V1='{"type":"record","name":"Review","namespace":"runnel.demo","fields":[{"name":"review_id","type":"long"},{"name":"summary","type":"string"}]}'
V1_OTHER_SPELLING='{ "fields": [ {"type": "long", "name": "review_id"}, {"name": "summary", "type": {"type": "string"}} ],
                     "name": "runnel.demo.Review", "type": "record" }'
V2='{"type":"record","name":"Review","namespace":"runnel.demo","fields":[{"name":"review_id","type":"long"},{"name":"summary","type":"string"},{"name":"score","type":["null","int"],"default":null}]}'
V3='{"type":"record","name":"Review","namespace":"runnel.demo","fields":[{"name":"review_id","type":"long"},{"name":"summary","type":"string"},{"name":"score","type":["null","int"],"default":null},{"name":"user_id","type":"string"}]}'

# --- registering, ids, versions -----------------------------------------------------------------
status=$(reg product_review-value "$V1")
check "POST /subjects/S/versions registers: {\"id\": 1}" answer 200 '. == {"id": 1}'
check "the answer's content type is the registry's" grep -qi '^content-type: application/vnd.schemaregistry.v1+json' "$T/headers"
status=$(reg product_review-value "$V1")
check "the same schema again: the same id, no new version" answer 200 '.id == 1'
status=$(reg product_review-value "$V1_OTHER_SPELLING")
check "the same schema spelled otherwise (spacing, key order, full name, {type: string}): id 1" answer 200 '.id == 1'
status=$(reg product_review-key '"string"')
check "a primitive schema gets the next id" answer 200 '.id == 2'
status=$(reg copy-value "$V1")
check "the same schema under another subject: the same global id" answer 200 '.id == 1'
status=$(curl -sS -o "$T/body" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary "$(schema_body "$V2")" "$URL/subjects/product_review-value/versions")
check "application/json is accepted too; a compatible new version gets id 3" answer 200 '.id == 3'
status=$(curl -sS -o "$T/body" -w '%{http_code}' -H 'Content-Type: text/plain' --data-binary "$(schema_body "$V2")" "$URL/subjects/product_review-value/versions")
check "another content type is 415" answer 415 '.error_code == 415'

status=$(sr GET /schemas/ids/1)
check "GET /schemas/ids/1 gives the schema text" answer 200 --arg v "$(jq -c . <<<"$V1")" '(.schema | fromjson) == ($v | fromjson)'
status=$(sr GET /schemas/ids/1/subjects)
check "GET /schemas/ids/1/subjects lists both subjects" answer 200 '. == ["copy-value", "product_review-value"]'
status=$(sr GET /schemas/ids/3/versions)
check "GET /schemas/ids/3/versions" answer 200 '. == [{"subject": "product_review-value", "version": 2}]'
status=$(sr GET /schemas/types)
check "GET /schemas/types" answer 200 '. == ["AVRO"]'
status=$(sr GET /subjects)
check "GET /subjects, sorted" answer 200 '. == ["copy-value", "product_review-key", "product_review-value"]'
status=$(sr GET /subjects/product_review-value/versions)
check "GET /subjects/S/versions" answer 200 '. == [1, 2]'
status=$(sr GET /subjects/product_review-value/versions/latest)
check "GET /subjects/S/versions/latest is {subject, version, id, schema}" answer 200 \
  '.subject == "product_review-value" and .version == 2 and .id == 3 and (.schema | fromjson | .fields | length) == 3'
status=$(sr GET /subjects/product_review-value/versions/1)
check "GET /subjects/S/versions/1" answer 200 '.version == 1 and .id == 1'
status=$(sr GET /subjects/product_review-value/versions/-1)
check "version -1 is the latest" answer 200 '.version == 2'
status=$(sr GET /subjects/product_review-value/versions/1/schema)
check "GET /subjects/S/versions/1/schema is the bare schema" answer 200 '.name == "Review" and .namespace == "runnel.demo"'
status=$(sr POST /subjects/product_review-value "$(schema_body "$V1_OTHER_SPELLING")")
check "POST /subjects/S looks a schema up: its version and id" answer 200 '.subject == "product_review-value" and .version == 1 and .id == 1'
status=$(sr GET /)
check "GET / answers {}" answer 200 '. == {}'

# --- errors, exactly as the registry gives them --------------------------------------------------
status=$(sr GET /subjects/nope/versions)
check "40401 for an unknown subject" answer 404 '. == {"error_code": 40401, "message": "Subject '"'nope'"' not found."}'
status=$(sr GET /subjects/product_review-value/versions/9)
check "40402 for an unknown version" answer 404 '. == {"error_code": 40402, "message": "Version 9 not found."}'
status=$(sr GET /schemas/ids/99)
check "40403 for an unknown schema id" answer 404 '. == {"error_code": 40403, "message": "Schema 99 not found"}'
status=$(sr POST /subjects/product_review-value "$(schema_body '"int"')")
check "40403 when a looked-up schema is not in the subject" answer 404 '.error_code == 40403'
status=$(sr POST /subjects/nope "$(schema_body "$V1")")
check "40401 when looking up in an unknown subject" answer 404 '.error_code == 40401'
status=$(reg bad '{"type":"record","name":"R","fields":[{"name":"a","type":"strin"}]}')
check "42201 for an unknown type, naming the field's path" answer 422 \
  '.error_code == 42201 and (.message | test("/fields/0/type: unknown type .strin."))'
status=$(reg bad '{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"a","type":"int"}]}')
check "42201 for a duplicate field" answer 422 '.error_code == 42201 and (.message | test("two fields named .a."))'
status=$(reg bad '{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":"x"}]}')
check "42201 for a default that is not of the field's type" answer 422 '.error_code == 42201 and (.message | test("default"))'
status=$(reg bad '{"type":"enum","name":"E","symbols":["A","A"]}')
check "42201 for a repeated enum symbol" answer 422 '.error_code == 42201'
status=$(reg bad '["int","int"]')
check "42201 for a union with a type twice" answer 422 '.error_code == 42201'
status=$(reg bad '{"type":"record","name":"1R","fields":[]}')
check "42201 for an invalid name" answer 422 '.error_code == 42201'
status=$(reg bad '{"type": "record", "name": ')
check "42201 for a schema that is not JSON" answer 422 '.error_code == 42201 and (.message | test("not JSON"))'
status=$(sr POST /subjects/bad/versions '{"schema": "\"int\"", "schemaType": "PROTOBUF"}')
check "42201 for a schema type other than AVRO" answer 422 '.error_code == 42201'
status=$(sr GET /subjects/product_review-value/versions/abc)
check "42202 for an invalid version" answer 422 '.error_code == 42202'
status=$(sr PUT /config '{"compatibility": "SIDEWAYS"}')
check "42203 for an invalid compatibility level" answer 422 '.error_code == 42203'
status=$(sr POST /subjects/x/versions '{"schema": ')
check "400 for a body that is not JSON" answer 400 '.error_code == 400'
status=$(sr GET /subjects)
check "a subject whose registration failed does not exist" answer 200 'index("bad") == null'

# --- compatibility ---------------------------------------------------------------------------------
status=$(reg product_review-value "$V3")
check "BACKWARD: a new field without a default is refused with 409" answer 409 \
  '.error_code == 409 and (.message | test("^Schema being registered is incompatible with an earlier schema for subject \"product_review-value\""))'
expect_contains "the 409 names the field and the rule" "$T/body" "READER_FIELD_MISSING_DEFAULT_VALUE"
status=$(sr GET /subjects/product_review-value/versions)
check "and adds no version" answer 200 '. == [1, 2]'
status=$(sr POST /compatibility/subjects/product_review-value/versions/latest "$(schema_body "$V3")")
check "POST /compatibility/.../latest: false" answer 200 '. == {"is_compatible": false}'
status=$(sr POST "/compatibility/subjects/product_review-value/versions/latest?verbose=true" "$(schema_body "$V3")")
check "with verbose=true the messages come too" answer 200 '.is_compatible == false and (.messages[0] | test("user_id"))'
status=$(sr POST /compatibility/subjects/product_review-value/versions/1 "$(schema_body "$V2")")
check "POST /compatibility/.../versions/1: true for V2 against V1" answer 200 '. == {"is_compatible": true}'
status=$(sr POST /compatibility/subjects/fresh/versions/latest "$(schema_body "$V3")")
check "against a subject with no versions everything is compatible" answer 200 '.is_compatible == true'

status=$(sr GET /config)
check "GET /config: BACKWARD by default" answer 200 '. == {"compatibilityLevel": "BACKWARD"}'
status=$(sr GET /config/product_review-value)
check "40408 for a subject without its own level" answer 404 '.error_code == 40408'
status=$(sr GET "/config/product_review-value?defaultToGlobal=true")
check "defaultToGlobal=true gives the global level" answer 200 '.compatibilityLevel == "BACKWARD"'
status=$(sr PUT /config/product_review-value '{"compatibility": "forward"}')
check "PUT /config/S sets FORWARD (case does not matter)" answer 200 '. == {"compatibility": "FORWARD"}'
status=$(sr GET /config/product_review-value)
check "GET /config/S shows it" answer 200 '. == {"compatibilityLevel": "FORWARD"}'
status=$(reg product_review-value "$V3")
check "FORWARD: the field without a default is fine (old readers ignore it)" answer 200 '.id == 4'
V4='{"type":"record","name":"Review","namespace":"runnel.demo","fields":[{"name":"review_id","type":"long"},{"name":"score","type":["null","int"],"default":null},{"name":"user_id","type":"string"}]}'
status=$(reg product_review-value "$V4")
check "FORWARD: removing a field that old readers need (no default) is refused" answer 409 '.error_code == 409'
sr PUT /config/product_review-value '{"compatibility": "NONE"}' >/dev/null
status=$(reg product_review-value "$V4")
check "NONE: anything goes" answer 200 '.id == 5'
status=$(sr DELETE /config/product_review-value)
check "DELETE /config/S returns the level it had" answer 200 '.compatibilityLevel == "NONE"'

# promotions, FULL and the transitive levels in subjects of their own
INT='{"type":"record","name":"P","fields":[{"name":"n","type":"int"}]}'
LONG='{"type":"record","name":"P","fields":[{"name":"n","type":"long"}]}'
DOUBLE='{"type":"record","name":"P","fields":[{"name":"n","type":"double"}]}'
STRING='{"type":"record","name":"P","fields":[{"name":"n","type":"string"}]}'
reg promo "$INT" >/dev/null
status=$(reg promo "$LONG")
check "BACKWARD: int -> long is a promotion" answer 200 '.id > 0'
status=$(reg promo "$DOUBLE")
check "BACKWARD: long -> double is a promotion" answer 200 '.id > 0'
status=$(reg promo "$INT")
check "an earlier version registered again answers its id (no check, no new version)" answer 200 '.id > 0'
status=$(reg promo '{"type":"record","name":"P","fields":[{"name":"n","type":"int","doc":"narrower"}]}')
check "BACKWARD: double -> int is refused" answer 409 '.message | test("TYPE_MISMATCH")'
status=$(reg promo "$STRING")
check "BACKWARD: double -> string is refused" answer 409 '.error_code == 409'
sr PUT /config/bytes '{"compatibility": "FULL"}' >/dev/null
reg bytes '{"type":"record","name":"B","fields":[{"name":"b","type":"bytes"}]}' >/dev/null
status=$(reg bytes '{"type":"record","name":"B","fields":[{"name":"b","type":"string"}]}')
check "FULL: bytes <-> string both ways" answer 200 '.id > 0'
status=$(reg bytes '{"type":"record","name":"B","fields":[{"name":"b","type":"string"},{"name":"c","type":"int","default":0}]}')
check "FULL: a new field with a default" answer 200 '.id > 0'
status=$(reg bytes '{"type":"record","name":"B","fields":[{"name":"b","type":"string"},{"name":"c","type":"int","default":0},{"name":"d","type":"int"}]}')
check "FULL: a new field without a default is refused" answer 409 '.error_code == 409'
status=$(reg bytes '{"type":"record","name":"Renamed","fields":[{"name":"b","type":"string"},{"name":"c","type":"int","default":0}]}')
check "a renamed record is refused (NAME_MISMATCH)" answer 409 '.message | test("NAME_MISMATCH")'
T1='{"type":"record","name":"T","fields":[{"name":"a","type":"int"}]}'
T2='{"type":"record","name":"T","fields":[{"name":"a","type":"int"},{"name":"b","type":"string","default":"x"}]}'
T3='{"type":"record","name":"T","fields":[{"name":"a","type":"int"},{"name":"b","type":"string"}]}'
for level in BACKWARD BACKWARD_TRANSITIVE; do
  sr PUT /config/trans-$level "{\"compatibility\": \"$level\"}" >/dev/null
  reg trans-$level "$T1" >/dev/null
  reg trans-$level "$T2" >/dev/null
  status=$(reg trans-$level "$T3")
  if [ $level = BACKWARD ]; then
    check "BACKWARD checks the latest version only: T3 can read T2" answer 200 '.id > 0'
  else
    check "BACKWARD_TRANSITIVE checks them all: T3 cannot read T1" answer 409 '.error_code == 409'
  fi
done
ENUM1='{"type":"enum","name":"Mood","symbols":["GOOD","BAD"]}'
ENUM2='{"type":"enum","name":"Mood","symbols":["GOOD","BAD","MEH"]}'
sr PUT /config/mood '{"compatibility": "FORWARD"}' >/dev/null
reg mood "$ENUM1" >/dev/null
status=$(reg mood "$ENUM2")
check "FORWARD: a new enum symbol the old reader lacks is refused" answer 409 '.message | test("MISSING_ENUM_SYMBOLS")'

# --- the independent client: Debian's python3-avro --------------------------------------------------
out=$("$PYTHON" $WIRE roundtrip "$URL" 1 '{"review_id": 42, "summary": "Great taste"}' 2>&1)
hex=$(head -1 <<<"$out")
check "python3-avro encodes with schema 1: magic 0, id 00000001 big-endian ($hex)" bash -c '[[ $1 == 0000000001* ]]' _ "$hex"
check "and the Avro body is 42 (zig-zag 54) then the string ('Great taste', length 22)" bash -c '[[ $1 == 0000000001541647726561742074617374* ]]' _ "$hex"
expect_eq "python3-avro decodes it back" '{"review_id": 42, "summary": "Great taste"}' "$(sed -n 2p <<<"$out")"
out=$("$PYTHON" $WIRE resolve "$URL" 1 3 '{"review_id": 7, "summary": "ok"}' 2>&1)
expect_eq "V1 data read with V2 (BACKWARD-compatible): the default fills score" '{"review_id": 7, "score": null, "summary": "ok"}' "$out"
out=$("$PYTHON" $WIRE resolve "$URL" 1 4 '{"review_id": 7, "summary": "ok"}' 2>&1)
rc=$?
check "V1 data cannot be read with V3, which the registry refused under BACKWARD (python says: $out)" \
  bash -c '[ "$1" = 3 ] && [[ $2 == unresolvable* ]]' _ "$rc" "$out"
out=$("$PYTHON" $WIRE resolve "$URL" 4 3 '{"review_id": 1, "summary": "s", "score": 3, "user_id": "u"}' 2>&1)
expect_eq "V3 data read with V2 (what FORWARD promised)" '{"review_id": 1, "score": 3, "summary": "s"}' "$out"
for id in $(seq 1 50); do
  [ "$(sr GET "/schemas/ids/$id")" = 200 ] || break
  jq -r .schema "$T/body" >"$T/schema.$id.avsc"
done
check "python3-avro parses the registry's text of every schema" "$PYTHON" -c '
import sys, avro.schema
for path in sys.argv[1:]:
    avro.schema.parse(open(path).read())' "$T"/schema.*.avsc
printf '%s' '{"type":"record","name":"FromPython","fields":[{"name":"x","type":"int"}]}' >"$T/from_python.avsc"
check "python registers a schema through urllib" bash -c '"$1" "$2" register "$3" from-python "$4" | grep -qx "[0-9]*"' _ "$PYTHON" $WIRE "$URL" "$T/from_python.avsc"

# --- deleting ---------------------------------------------------------------------------------------
status=$(sr DELETE /subjects/copy-value)
check "DELETE /subjects/S (soft) lists the versions deleted" answer 200 '. == [1]'
status=$(sr GET /subjects)
check "a soft-deleted subject is not listed" answer 200 'index("copy-value") == null'
status=$(sr GET "/subjects?deleted=true")
check "but is with deleted=true" answer 200 'index("copy-value") != null'
status=$(sr GET /schemas/ids/1)
check "its schema id still resolves" answer 200 '.schema'
status=$(sr DELETE /subjects/copy-value)
check "40404 for deleting a soft-deleted subject again" answer 404 '.error_code == 40404'
status=$(reg copy-value "$V1")
check "registering after a soft delete: the same id" answer 200 '.id == 1'
status=$(sr GET /subjects/copy-value/versions)
check "as a new version (versions keep counting)" answer 200 '. == [2]'
status=$(sr DELETE "/subjects/copy-value?permanent=true")
check "40405 for a permanent delete before a soft one" answer 404 '.error_code == 40405'
sr DELETE /subjects/copy-value >/dev/null
status=$(sr DELETE "/subjects/copy-value?permanent=true")
check "a permanent delete after a soft one" answer 200 '. == [1, 2]'
status=$(sr GET "/subjects?deleted=true")
check "then it is gone for good" answer 200 'index("copy-value") == null'
status=$(sr DELETE /subjects/promo/versions/latest)
check "DELETE /subjects/S/versions/latest" answer 200 '. == 3'
status=$(sr GET /subjects/promo/versions)
check "leaves the others" answer 200 '. == [1, 2]'
status=$(sr DELETE /subjects/nope)
check "40401 for deleting an unknown subject" answer 404 '.error_code == 40401'

# --- faults -----------------------------------------------------------------------------------------
status=$(sr POST /_fault '{"status": 500, "count": 2}')
check "POST /_fault sets faults" answer 200 '.status == 500 and .count == 2 and .error_code == 50001'
codes=""
for _ in 1 2 3; do codes+="$(sr GET /subjects) "; done
expect_eq "the next two requests fail, then they work" "500 500 200 " "$codes"
sr GET /subjects >/dev/null
sr POST /_fault '{"status": 500, "count": 1}' >/dev/null
sr GET /subjects >/dev/null
check "a 500 is {\"error_code\": 50001, ...}" jq -e '.error_code == 50001 and (.message | test("backend"))' "$T/body"
sr POST /_fault '{"every": 3}' >/dev/null
codes=""
for _ in 1 2 3 4 5 6; do codes+="$(sr GET /subjects) "; done
check "every: 3 fails one request in three ($codes)" bash -c '[ "$(grep -o 500 <<<"$1" | wc -l)" = 2 ]' _ "$codes"
sr DELETE /_fault >/dev/null
sr POST /_fault '{"latency_ms": 300}' >/dev/null
elapsed=$(curl -sS -o /dev/null -w '%{time_total}' "$URL/subjects")
check "latency_ms: 300 delays the answer ($elapsed s)" awk -v t="$elapsed" 'BEGIN { exit !(t >= 0.25 && t < 10) }'
sr POST /_fault '{"latency_ms": 0, "close": 1}' >/dev/null
close_rc=0
curl -sS -o /dev/null --max-time 5 "$URL/subjects" 2>/dev/null || close_rc=$?
check "close: 1 drops the connection without an answer (curl exit $close_rc)" test "$close_rc" = 52
status=$(sr GET /_fault)
check "GET /_fault counts what it injected" answer 200 '.faults_injected == 5 and .closes_injected == 1 and .close == 0'
status=$(sr POST /_fault '{"bogus": 1}')
check "an unknown fault member is refused, by name" answer 400 '.message | test("bogus")'

# --- persistence: --data ------------------------------------------------------------------------------
kill -TERM "$REGISTRY_PID"
term_rc=0
wait "$REGISTRY_PID" || term_rc=$?
check "SIGTERM stops it with exit 0" test "$term_rc" = 0
check "--data wrote the registry as JSON" jq -e '(.schemas | length) >= 8 and (.subjects | length) >= 5' "$T/registry.json"
start_standin schema-registry-dev --data "$T/registry.json"
URL=$STANDIN_URL
status=$(sr GET /subjects/product_review-value/versions/latest)
check "after a restart on the same --data the versions and ids are there" answer 200 '.version == 4 and .id == 5'
status=$(reg product_review-value "$V1")
check "and a known schema keeps its id" answer 200 '.id == 1'
count_before=$(jq '.schemas | length' "$T/registry.json")
status=$(reg another '{"type":"fixed","name":"F","size":16}')
check "a new schema gets the next id" answer 200 --argjson n "$count_before" '.id == $n + 1'

# --- basic auth -----------------------------------------------------------------------------------------
start_standin schema-registry-dev --basic 'runnel:s3cret' --fail-next 0
URL=$STANDIN_URL
status=$(sr GET /subjects)
check "--basic: 401 without credentials" answer 401 '. == {"error_code": 401, "message": "Unauthorized"}'
check "with a WWW-Authenticate header" grep -qi '^www-authenticate: Basic' "$T/headers"
AUTH=(-u runnel:wrong)
status=$(sr GET /subjects)
check "401 with a wrong password" test "$status" = 401
AUTH=(-u runnel:s3cret)
status=$(sr GET /subjects)
check "200 with the right ones" answer 200 '. == []'
printf '%s' '"long"' >"$T/long.avsc"
check "the python client authenticates too" bash -c '"$1" "$2" --user runnel:s3cret register "$3" k "$4" | grep -qx 1' _ "$PYTHON" $WIRE "$URL" "$T/long.avsc"
AUTH=()

# --- flags for faults ---------------------------------------------------------------------------------
start_standin schema-registry-dev --fail-every 2 --fail-status 503
URL=$STANDIN_URL
codes=""
for _ in 1 2 3 4; do codes+="$(sr GET /subjects) "; done
expect_eq "--fail-every 2 --fail-status 503" "200 503 200 503 " "$codes"
finish
