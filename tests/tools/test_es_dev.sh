#!/usr/bin/env bash
# test_es_dev.sh: bin/es-dev over real HTTP with curl and jq: indices and mappings, _bulk with
# created/updated/409/400/404/429 items in request order, the missing final newline,
# filter_path, _count, _search with term queries and terms aggregations, _doc, auth, faults from
# flags and from /_fault, the body limit; an independent urllib client (tests/tools/es_client.py)
# posts a batch and checks what landed; and the throughput of one large bulk request.
. "$(dirname "$0")/../lib.sh"
PYTHON=${PYTHON:-/usr/bin/python3}

AUTH=()
# es METHOD PATH [BODY [CONTENT_TYPE]]: body to $T/body, headers to $T/headers; prints the status
es() {
  local method=$1 path=$2 body=${3:-} type=${4:-application/json}
  curl -sS --max-time 30 -o "$T/body" -D "$T/headers" -w '%{http_code}' -X "$method" -H "Content-Type: $type" \
    ${body:+--data-binary "$body"} "${AUTH[@]}" "$URL$path"
}
# bulk PATH FILE: posts an NDJSON file; prints the status
bulk() { curl -sS --max-time 60 -o "$T/body" -w '%{http_code}' -H 'Content-Type: application/x-ndjson' --data-binary "@$2" "${AUTH[@]}" "$URL$1"; }
# answer STATUS [jq options] FILTER: the last answer had STATUS and its body passes the filter
answer() { local want=$1; shift; [ "$status" = "$want" ] && jq -e "$@" "$T/body" >/dev/null; }
ndjson() { printf '%s\n' "$@" >"$T/bulk.ndjson"; }

help=$(bin/es-dev --help)
check "--help lists every option" bash -c 'for o in --port --basic --api-key --item-fault-status --item-fault-every \
    --item-fault-next --reject-status --reject-every --reject-next --latency-ms --close-every --close-next \
    --max-content-length --data --threads; do grep -q -- "$o" <<<"$1" || exit 1; done' _ "$help"

start_standin es-dev
URL=$STANDIN_URL
ES_PID=$STANDIN_PID

status=$(es GET /)
check "GET / is the cluster info of an 8.x" answer 200 '(.version.number | startswith("8.")) and .tagline == "You Know, for Search"'
check "answers carry X-elastic-product: Elasticsearch" grep -qi '^x-elastic-product: Elasticsearch' "$T/headers"

# --- indices ------------------------------------------------------------------------------------------
status=$(es PUT /ratings '{"mappings":{"properties":{"rating":{"type":"integer"},"product_id":{"type":"keyword"},"time":{"type":"date"}}}}')
check "PUT /INDEX with mappings" answer 200 '. == {"acknowledged": true, "shards_acknowledged": true, "index": "ratings"}'
status=$(es PUT /ratings)
check "PUT again: 400 resource_already_exists_exception" answer 400 '.error.type == "resource_already_exists_exception" and .status == 400 and .error.root_cause[0].type == "resource_already_exists_exception"'
status=$(es PUT /Ratings)
check "an upper-case name: 400 invalid_index_name_exception" answer 400 '.error.type == "invalid_index_name_exception" and (.error.reason | test("lowercase"))'
status=$(es PUT /bad '{"mappings":{"properties":{"x":{"type":"integr"}}}}')
check "an unknown field type: 400 mapper_parsing_exception naming it" answer 400 '.error.type == "mapper_parsing_exception" and (.error.reason | test("integr"))'
status=$(curl -sS -o /dev/null -w '%{http_code}' -I "$URL/ratings")
expect_eq "HEAD /INDEX: 200 when it exists" 200 "$status"
status=$(curl -sS -o /dev/null -w '%{http_code}' -I "$URL/nothing")
expect_eq "HEAD /INDEX: 404 when it does not" 404 "$status"
status=$(es GET /ratings/_mapping)
check "GET /INDEX/_mapping" answer 200 '.ratings.mappings.properties.rating.type == "integer"'

# --- _bulk ----------------------------------------------------------------------------------------------
ndjson '{"index":{"_index":"ratings","_id":"1"}}' '{"review_id":1,"product_id":"B001","rating":5,"summary":"Great taste"}' \
       '{"create":{"_index":"ratings","_id":"2"}}' '{"review_id":2,"product_id":"B001","rating":2,"summary":"Not good"}' \
       '{"create":{"_index":"ratings","_id":"1"}}' '{"review_id":1,"product_id":"B001","rating":5}' \
       '{"index":{"_index":"ratings","_id":"3"}}' '{"review_id":3,"product_id":"B002","rating":"five"}' \
       '{"index":{"_index":"ratings","_id":"4"}}' '{"review_id":4,"product_id":"B002","rating":4,"summary":"Fine"}' \
       '{"update":{"_index":"ratings","_id":"4"}}' '{"doc":{"rating":3}}' \
       '{"update":{"_index":"ratings","_id":"404"}}' '{"doc":{"rating":3}}' \
       '{"delete":{"_index":"ratings","_id":"2"}}' \
       '{"delete":{"_index":"ratings","_id":"2"}}' \
       '{"index":{"_index":"ratings","_id":"5"}}' '{"review_id":5,"product_id":"B003","rating":1,"time":"2024-03-01T10:00:00Z"}' \
       '{"index":{"_index":"ratings","_id":"6"}}' '{"review_id":6,"product_id":"B003","time":"yesterday"}' \
       '{"index":{"_index":"ratings","_id":"7"}}' '{not json'
status=$(bulk /_bulk "$T/bulk.ndjson")
check "a bulk with failing items is HTTP 200 with errors: true" answer 200 '.errors == true and (.took | type) == "number"'
check "items come back in request order with their actions and ids" answer 200 \
  '[.items[] | to_entries[0] | [.key, .value._id]] == [["index","1"],["create","2"],["create","1"],["index","3"],["index","4"],["update","4"],["update","404"],["delete","2"],["delete","2"],["index","5"],["index","6"],["index","7"]]'
check "index of a new document: 201 created, _version 1, _shards, _seq_no" answer 200 \
  '.items[0].index | .status == 201 and .result == "created" and ._version == 1 and ._shards.total == 2 and ._primary_term == 1 and (._seq_no | type) == "number"'
check "create of an existing _id: 409 version_conflict_engine_exception" answer 200 \
  '.items[2].create | .status == 409 and .error.type == "version_conflict_engine_exception" and (.error.reason | test("document already exists"))'
check "a string for an integer field: 400 mapper_parsing_exception naming the field and the value" answer 200 \
  '.items[3].index | .status == 400 and .error.type == "mapper_parsing_exception" and (.error.reason | test("\\[rating\\] of type \\[integer\\]")) and (.error.reason | test("five")) and .error.caused_by.type == "number_format_exception"'
check "update of an existing document: 200 updated, _version 2" answer 200 '.items[5].update | .status == 200 and .result == "updated" and ._version == 2'
check "update of a missing document: 404 document_missing_exception" answer 200 '.items[6].update | .status == 404 and .error.type == "document_missing_exception"'
check "delete: 200 deleted, then 404 not_found without an error" answer 200 \
  '(.items[7].delete | .status == 200 and .result == "deleted") and (.items[8].delete | .status == 404 and .result == "not_found" and (has("error") | not))'
check "a date field takes an ISO date, refuses 'yesterday'" answer 200 '.items[9].index.status == 201 and .items[10].index.status == 400'
check "a source that is not JSON: 400 mapper_parsing_exception" answer 200 '.items[11].index | .status == 400 and .error.type == "mapper_parsing_exception"'

status=$(bulk "/_bulk?filter_path=items.*.error" "$T/bulk.ndjson")
check "filter_path=items.*.error leaves only the failed items' errors" answer 200 \
  '(.items | length) >= 5 and all(.items[]; (to_entries[0].value | keys) == ["error"]) and (has("took") | not)'
status=$(bulk "/_bulk?filter_path=errors" "$T/bulk.ndjson")
check "filter_path=errors" answer 200 '. == {"errors": true}'
printf '%s\n%s' '{"index":{"_index":"ratings","_id":"9"}}' '{"rating":1}' >"$T/no-newline.ndjson"
status=$(bulk /_bulk "$T/no-newline.ndjson")
check "a body without the final newline: 400 illegal_argument_exception" answer 400 \
  '.error.type == "illegal_argument_exception" and .error.reason == "The bulk request must be terminated by a newline [\\n]"'
ndjson '{"index":{"_id":"x"}}' '{"a":1}'
status=$(bulk /_bulk "$T/bulk.ndjson")
check "no _index and none in the path: 400 action_request_validation_exception" answer 400 \
  '.error.type == "action_request_validation_exception" and (.error.reason | test("index is missing"))'
ndjson '{"upsert":{"_index":"x"}}' '{"a":1}'
status=$(bulk /_bulk "$T/bulk.ndjson")
check "an unknown action: 400 naming it" answer 400 '.error.reason | test("but found \\[upsert\\]")'
ndjson '{"index":{"_index":"x","colour":"red"}}' '{"a":1}'
status=$(bulk /_bulk "$T/bulk.ndjson")
check "an unknown metadata parameter: 400 naming it" answer 400 '.error.reason | test("unknown parameter \\[colour\\]")'
status=$(curl -sS -o "$T/body" -w '%{http_code}' --data-binary "@$T/no-newline.ndjson" "$URL/_bulk")
check "a form content type (curl -d without -H) is 406" answer 406 '.error | test("Content-Type header \\[application/x-www-form-urlencoded\\] is not supported")'

# dynamic mapping: the first value of a field fixes its type
ndjson '{"index":{"_id":"a"}}' '{"rating":4,"product_id":"B9","when":"2024-01-02","nested":{"n":1}}' \
       '{"index":{"_id":"b"}}' '{"rating":"4"}' \
       '{"index":{"_id":"c"}}' '{"rating":"four"}' \
       '{"index":{"_id":"d"}}' '{"nested":"flat"}'
status=$(bulk /dynamic/_bulk "$T/bulk.ndjson")
check "POST /INDEX/_bulk creates the index and maps the first document" answer 200 \
  '[.items[].index.status] == [201, 201, 400, 400]'
check "\"4\" is coerced into a long field, \"four\" is not" answer 200 '.items[2].index.error.reason | test("\\[rating\\] of type \\[long\\]")'
check "a concrete value for an object field is refused" answer 200 '.items[3].index.error.reason | test("object mapping for \\[nested\\]")'
status=$(es GET /dynamic/_mapping)
check "dynamic types: long, text + keyword, date, object" answer 200 \
  '.dynamic.mappings.properties | .rating.type == "long" and .product_id.type == "text" and .product_id.fields.keyword.type == "keyword" and .when.type == "date" and .nested.properties.n.type == "long"'
status=$(es PUT /strict '{"mappings":{"dynamic":"strict","properties":{"a":{"type":"keyword"}}}}')
ndjson '{"index":{"_id":"1"}}' '{"a":"x","b":1}'
status=$(bulk /strict/_bulk "$T/bulk.ndjson")
check "dynamic: strict refuses a new field" answer 200 '.items[0].index.error.type == "strict_dynamic_mapping_exception"'

# --- _count, _search, _doc ----------------------------------------------------------------------------
status=$(es GET /ratings/_count)
check "_count: the 3 documents that landed in ratings (1, 4 and 5)" answer 200 '.count == 3'
status=$(es POST /ratings/_count '{"query":{"term":{"product_id":"B003"}}}')
check "_count with a term query on a keyword" answer 200 '.count == 1'
status=$(es POST /ratings/_count '{"query":{"match_all":{}}}')
check "_count with match_all" answer 200 '.count == 3'
status=$(es POST /ratings/_count '{"query":{"term":{"summary":"Great"}}}')
check "a term query on a text field does not match upper case (the text is analyzed, the term is not)" answer 200 '.count == 0'
status=$(es POST /ratings/_count '{"query":{"match":{"summary":"GREAT"}}}')
check "a match query analyzes the query too" answer 200 '.count == 1'
status=$(es POST /ratings/_count '{"query":{"range":{"rating":{"gte":3}}}}')
check "a range query" answer 200 '.count == 2'
status=$(es POST /rat*,dynamic/_count '{}')
check "_count over a wildcard and a list" answer 200 '.count == 5'
status=$(es POST /nothing/_count '{}')
check "_count of a missing index: 404 index_not_found_exception" answer 404 '.error.type == "index_not_found_exception" and .error.index == "nothing"'
status=$(es POST /ratings/_search '{"size":2,"query":{"match_all":{}},"aggs":{"by_rating":{"terms":{"field":"rating"}},"by_product":{"terms":{"field":"product_id","size":1}}}}')
check "_search: total, size hits with _source" answer 200 '.hits.total == {"value": 3, "relation": "eq"} and (.hits.hits | length) == 2 and .hits.hits[0]._source.review_id == 1'
check "a terms aggregation on an integer field: buckets by count, then key" answer 200 \
  '.aggregations.by_rating.buckets == [{"key": 1, "doc_count": 1}, {"key": 3, "doc_count": 1}, {"key": 5, "doc_count": 1}]'
check "size 1 on a keyword: one bucket and sum_other_doc_count" answer 200 \
  '.aggregations.by_product | .buckets == [{"key": "B001", "doc_count": 1}] and .sum_other_doc_count == 2'
status=$(es POST /ratings/_search '{"size":0,"aggs":{"s":{"terms":{"field":"summary"}}}}')
check "a terms aggregation on a text field: 400, as Elasticsearch refuses it" answer 400 '.error.reason | test("Text fields are not optimised")'
status=$(es POST /dynamic/_search '{"size":0,"aggs":{"p":{"terms":{"field":"product_id.keyword"}},"avg":{"avg":{"field":"rating"}}}}')
check "field.keyword of a dynamic string, and an avg" answer 200 '.aggregations.p.buckets == [{"key": "B9", "doc_count": 1}] and .aggregations.avg.value == 4'
status=$(es POST /ratings/_search '{"from":9990,"size":20}')
check "from + size over 10000: 400" answer 400 '.error.reason | test("Result window is too large")'
status=$(es GET /ratings/_doc/1)
check "GET /INDEX/_doc/ID (indexed by three bulk requests: _version 3)" answer 200 '.found == true and ._version == 3 and ._source.summary == "Great taste"'
status=$(es GET /ratings/_doc/2)
check "GET of a deleted document: 404 found false" answer 404 '.found == false'
status=$(es POST /ratings/_refresh)
check "_refresh" answer 200 '._shards.failed == 0'
status=$(es PUT /ratings/_doc/10 '{"rating":2}')
check "PUT /INDEX/_doc/ID" answer 201 '.result == "created"'
status=$(es PUT /ratings/_create/10 '{"rating":2}')
check "PUT /INDEX/_create/ID of an existing one: 409" answer 409 '.error.type == "version_conflict_engine_exception"'
status=$(es GET "/ratings/_search?filter_path=hits.hits._id&size=1")
check "filter_path on _search" answer 200 '. == {"hits": {"hits": [{"_id": "1"}]}}'
status=$(es DELETE /dynamic)
check "DELETE /INDEX" answer 200 '.acknowledged == true'
status=$(es DELETE '/rat*')
check "DELETE with a wildcard is refused" answer 400 '.error.reason | test("Wildcard")'
status=$(es DELETE /dynamic)
check "DELETE of a missing index: 404" answer 404 '.error.type == "index_not_found_exception"'

# --- faults through /_fault -----------------------------------------------------------------------------
status=$(es POST /_fault '{"item_next": 2}')
check "POST /_fault item_next" answer 200 '.item_next == 2'
: >"$T/bulk.ndjson"
for i in 1 2 3 4; do printf '{"index":{"_index":"faults","_id":"%s"}}\n{"n":%s}\n' "$i" "$i" >>"$T/bulk.ndjson"; done
status=$(bulk /_bulk "$T/bulk.ndjson")
check "item_next 2: the next two items are 429 es_rejected_execution_exception, the rest land" answer 200 \
  '.errors and [.items[].index.status] == [429, 429, 201, 201] and .items[0].index.error.type == "es_rejected_execution_exception"'
es POST /_fault '{"item_every": 2, "item_status": 503}' >/dev/null
status=$(bulk /_bulk "$T/bulk.ndjson")
check "item_every 2 with status 503: every second item is unavailable_shards_exception (1 lands now, 3 again)" answer 200 \
  '[.items[].index.status] == [201, 503, 200, 503] and .items[1].index.error.type == "unavailable_shards_exception"'
es DELETE /_fault >/dev/null
es POST /_fault '{"request_next": 2, "request_status": 503}' >/dev/null
codes=""
for _ in 1 2 3; do codes+="$(bulk /_bulk "$T/bulk.ndjson") "; done
expect_eq "request_next 2 (503): two whole requests refused, then one lands" "503 503 200 " "$codes"
es POST /_fault '{"request_next": 1, "request_status": 429}' >/dev/null
status=$(bulk /_bulk "$T/bulk.ndjson")
check "a whole-request 429 has the Elasticsearch error shape" answer 429 '.status == 429 and .error.type == "es_rejected_execution_exception"'
es POST /_fault '{"latency_ms": 300}' >/dev/null
elapsed=$(curl -sS -o /dev/null -w '%{time_total}' -H 'Content-Type: application/x-ndjson' --data-binary "@$T/bulk.ndjson" "$URL/_bulk")
check "latency_ms 300 delays _bulk ($elapsed s)" awk -v t="$elapsed" 'BEGIN { exit !(t >= 0.25 && t < 10) }'
elapsed=$(curl -sS -o /dev/null -w '%{time_total}' "$URL/faults/_count")
check "but not _count ($elapsed s)" awk -v t="$elapsed" 'BEGIN { exit !(t < 0.25) }'
es POST /_fault '{"latency_ms": 0, "close_next": 1}' >/dev/null
close_rc=0
curl -sS -o /dev/null --max-time 5 -H 'Content-Type: application/x-ndjson' --data-binary "@$T/bulk.ndjson" "$URL/_bulk" 2>/dev/null || close_rc=$?
check "close_next 1 drops the connection without an answer (curl exit $close_rc)" test "$close_rc" = 52
status=$(es GET /_fault)
check "GET /_fault counts what was injected" answer 200 \
  '.counters | .items_faulted == 4 and .requests_rejected == 3 and .connections_closed == 1'
status=$(es POST /_fault '{"item_status": 404}')
check "a status es-dev does not inject is refused" answer 400 '.error.reason | test("item_status")'
status=$(es POST /faults/_count '{}')
check "faulted items did not land, the others did" answer 200 '.count == 4'

# --- the independent client (urllib) ---------------------------------------------------------------------
es DELETE /_fault >/dev/null
out=$("$PYTHON" tests/tools/es_client.py bulk "$URL" python 1000 2>&1)
check "python: 1000 creates, all 201, in request order" jq -e '.errors == false and .statuses == {"201": 1000} and .in_order and .versions == {"1": 1000}' <<<"$out"
out=$("$PYTHON" tests/tools/es_client.py bulk "$URL" python 1000 --create 2>&1)
check "python: the same 1000 created again: all 409" jq -e '.errors == true and .statuses == {"409": 1000} and .in_order' <<<"$out"
out=$("$PYTHON" tests/tools/es_client.py bulk "$URL" python 1000 2>&1)
check "python: indexed again: all 200 at _version 2 (idempotent replays)" jq -e '.statuses == {"200": 1000} and .versions == {"2": 1000}' <<<"$out"
out=$("$PYTHON" tests/tools/es_client.py check "$URL" python 1000 2>&1)
check "python: _count is 1000 and the rating buckets match what was sent" jq -e '.count == 1000 and .buckets_match and .total.value == 1000' <<<"$out"

# --- auth --------------------------------------------------------------------------------------------------
start_standin es-dev --basic elastic:changeme --api-key c2VjcmV0
URL=$STANDIN_URL
status=$(es GET /)
check "401 without credentials, with the security_exception shape" answer 401 \
  '.status == 401 and .error.type == "security_exception" and (.error.reason | test("missing authentication credentials"))'
check "and WWW-Authenticate headers" grep -qi '^www-authenticate: ApiKey' "$T/headers"
AUTH=(-u elastic:wrong)
status=$(es GET /)
check "401 with a wrong password" answer 401 '.error.reason | test("unable to authenticate")'
AUTH=(-u elastic:changeme)
status=$(es GET /)
check "200 with basic credentials" answer 200 '.version.number'
AUTH=(-H 'Authorization: ApiKey c2VjcmV0')
status=$(es GET /)
check "200 with the API key" answer 200 '.version.number'
AUTH=(-H 'Authorization: ApiKey d3Jvbmc=')
status=$(es GET /)
check "401 with another API key" test "$status" = 401
AUTH=()
status=$(es GET /_fault)
check "/_fault needs no credentials" test "$status" = 200

# --- flags, the body limit, and throughput ----------------------------------------------------------------
start_standin es-dev --item-fault-every 3 --reject-next 1 --reject-status 502 --max-content-length 1mb
URL=$STANDIN_URL
status=$(bulk /_bulk "$T/bulk.ndjson")
check "--reject-next 1 --reject-status 502: what a proxy answers" test "$status" = 502
status=$(bulk /_bulk "$T/bulk.ndjson")
check "--item-fault-every 3: the third item is 429" answer 200 '[.items[].index.status] == [201, 201, 429, 201]'
head -c 1200000 /dev/zero | tr '\0' 'a' | sed 's/^/{"index":{}}\n{"a":"/; s/$/"}/' >"$T/big.ndjson"
status=$(bulk /x/_bulk "$T/big.ndjson")
check "a body over --max-content-length: 413" test "$status" = 413
check "... with an empty body, as Elasticsearch answers it" test ! -s "$T/body"

start_standin es-dev
URL=$STANDIN_URL
docs=100000
awk -v n=$docs 'BEGIN { for (i = 1; i <= n; i++) printf "{\"index\":{\"_index\":\"bench\",\"_id\":\"%d\"}}\n{\"review_id\":%d,\"product_id\":\"B%05d\",\"rating\":%d,\"summary\":\"a short review summary number %d\"}\n", i, i, i % 5000, 1 + i % 5, i }' >"$T/bench.ndjson"
timing=$(curl -sS -o "$T/body" -w '%{http_code} %{time_total}' -H 'Content-Type: application/x-ndjson' --data-binary "@$T/bench.ndjson" "$URL/_bulk")
seconds=${timing#* }
rate=$(awk -v n=$docs -v t="$seconds" 'BEGIN { printf "%d", n / t }')
echo "es-dev: $docs documents ($(du -h "$T/bench.ndjson" | cut -f1)) in one _bulk request: ${seconds} s, $rate docs/s"
check "one bulk of $docs documents lands whole ($rate docs/s)" bash -c '[ "${1%% *}" = 200 ] && jq -e ".errors == false and (.items | length) == $2" "$3" >/dev/null' _ "$timing" $docs "$T/body"
status=$(es GET /bench/_count)
check "_count after it: $docs" answer 200 ".count == $docs"

kill -TERM "$ES_PID"
term_rc=0
wait "$ES_PID" || term_rc=$?
check "SIGTERM stops it with exit 0" test "$term_rc" = 0
finish
