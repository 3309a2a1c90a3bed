#!/usr/bin/env bash
# make demo-pipeline (tools/demo-pipeline.sh) on 500 reviews with the ASan runner, every hop
# checked by a client of its own while the servers are still up (PIPELINE_AFTER): the topic
# product_review decoded by python3-avro (each review once, the key its product id as text), the
# rating job's figures, the topic product_ratings decoded the same way, Elasticsearch (_count,
# the ids by _search), PostgreSQL (psql), the same review ids everywhere, the same ratings in
# the topic, the index and the table; the report's donut and word cloud data; what the demo
# printed; every server stopped and the temporary directory gone when it ends, and when a TERM
# comes while the model rates; under 60 s.
. "$(dirname "$0")/../lib.sh"
PYTHON=${PYTHON:-/usr/bin/python3}
for tool in kcat curl jq psql; do command -v "$tool" >/dev/null || { echo "FAIL $tool is not installed (make deps)"; exit 1; }; done
"$PYTHON" -c 'import avro.io' 2>/dev/null || { echo "FAIL python3-avro is not installed for $PYTHON"; exit 1; }
ROWS=500
L="$T/landed"; mkdir -p "$L"

# What should land, from the CSV itself: the first ROWS reviews; those with a summary are rated.
"$PYTHON" - data/reviews_sample.csv "$ROWS" "$T" <<'PY'
import csv, itertools, json, sys
rows = list(itertools.islice(csv.DictReader(open(sys.argv[1], newline="")), int(sys.argv[2])))
with open(sys.argv[3] + "/sent.jsonl", "w") as out:
    for r in rows:
        out.write(json.dumps({"review_id": int(r["Id"]), "product_id": r["ProductId"], "timestamp": int(r["Time"]),
                              "summary": r["Summary"]}) + "\n")
PY
jq -r .review_id "$T/sent.jsonl" | sort -n >"$T/sent.ids"
jq -r 'select(.summary != "") | .review_id' "$T/sent.jsonl" | sort -n >"$T/rated.ids"
rated=$(wc -l <"$T/rated.ids")
empty=$((ROWS - rated))
expect_eq "the CSV's first $ROWS reviews are distinct ones" "$ROWS" "$(sort -u "$T/sent.ids" | wc -l)"
check "some have no summary, so the filter is met ($empty)" test "$empty" -gt 0

# Looked at while the servers are up, by kcat + python3-avro, curl and psql.
cat >"$T/after.sh" <<'SH'
set -euo pipefail
L="$1"; PYTHON="$2"
env | grep -E '^(KAFKA_BROKERS|SCHEMA_REGISTRY_URL|ES_URL|OPENAI_BASE_URL|PGHOST|PGPORT)=' >"$L/env"
for topic in product_review product_ratings; do
  timeout 60 kcat -C -b "$KAFKA_BROKERS" -t "$topic" -o beginning -e -q -f '%K %S\n%k%s' >"$L/$topic.raw"
  "$PYTHON" tests/tools/avro_wire.py topic "$SCHEMA_REGISTRY_URL" <"$L/$topic.raw" >"$L/$topic.jsonl"
done
curl -sf "$SCHEMA_REGISTRY_URL/subjects" >"$L/subjects.json"
curl -sf "$ES_URL/product_ratings-*/_count" >"$L/es_count.json"
curl -sf "$ES_URL/product_ratings-*/_search?size=10000" -H 'Content-Type: application/json' \
  -d '{"query":{"match_all":{}}}' | jq -c '.hits.hits[] | {_id, _index, _source}' >"$L/es_docs.jsonl"
curl -sf "$ES_URL/product_ratings-*/_search" -H 'Content-Type: application/json' \
  -d '{"size":0,"aggs":{"r":{"terms":{"field":"rating","size":10}}}}' |
  jq -r '.aggregations.r.buckets[] | "\(.key) \(.doc_count)"' | sort >"$L/es_ratings"
psql -XAt -F ' ' -v ON_ERROR_STOP=1 -c 'select count(*), count(distinct review_id) from product_ratings' >"$L/pg_count"
psql -XAt -v ON_ERROR_STOP=1 -c 'select review_id from product_ratings order by 1' >"$L/pg.ids"
psql -XAt -F ' ' -v ON_ERROR_STOP=1 -c 'select rating, count(*) from product_ratings group by 1 order by 1' >"$L/pg_ratings"
psql -XAt -F ' ' -v ON_ERROR_STOP=1 -c "select review_id, extract(epoch from reviewed_at)::bigint from product_ratings order by 1" >"$L/pg_times"
SH

start=$SECONDS
PIPELINE_ROWS=$ROWS PIPELINE_OUT="$T/out" PIPELINE_TIMEOUT=50 PIPELINE_AFTER="bash '$T/after.sh' '$L' '$PYTHON'" \
  timeout 60 bash tools/demo-pipeline.sh >"$T/demo.out" 2>&1
rc=$?
took=$((SECONDS - start))
expect_eq "make demo-pipeline's script exits 0" 0 "$rc"
[ "$rc" = 0 ] || sed 's/^/   | /' "$T/demo.out" | tail -40
check "it took under 60 s (${took} s, load: $(cut -d' ' -f1-3 /proc/loadavg))" test "$took" -lt 60
O="$T/out"

# ---- hop 1: CSV -> product_review ---------------------------------------------------------
expect_eq "the producer read and wrote $ROWS reviews" "$ROWS $ROWS 0" "$(sj "$O/reviews_to_kafka_avro.summary.json" '"\(.read) \(.written) \(.dead_lettered)"')"
expect_eq "product_review holds $ROWS messages (kcat)" "$ROWS" "$(wc -l <"$L/product_review.jsonl")"
expect_eq "... each review once (python3-avro decodes them all)" "$(cat "$T/sent.ids")" "$(jq -r .value.review_id "$L/product_review.jsonl" | sort -n)"
expect_eq "... each keyed by its product id, as text" "0" "$(jq -r 'select(.key != .value.product_id)' "$L/product_review.jsonl" | wc -l)"
expect_eq "... with the CSV's fields" "" "$(jq -c '.value | {review_id, product_id, timestamp, summary}' "$L/product_review.jsonl" |
  sort | diff - <(jq -c '{review_id, product_id, timestamp, summary}' "$T/sent.jsonl" | sort) | head -5)"
check "the schemas are in the registry (product_review-value, product_ratings-value)" \
  jq -e 'index("product_review-value") != null and index("product_ratings-value") != null' "$L/subjects.json"

# ---- hop 2: product_review -> the model -> product_ratings ---------------------------------
S="$O/review_rating_kafka_avro.summary.json"
expect_eq "the rating job read every review, filtered the empty ones, wrote the rest" \
  "$ROWS $empty $rated 0" "$(sj "$S" '"\(.read) \(.filtered) \(.written) \(.dead_lettered)"')"
check "invariant: read = written + filtered + dead-lettered" invariant_holds "$S"
check "it was evaluated against the score ($(sj "$S" .evaluation.accuracy))" jq -e ".evaluation.compared == $rated" "$S"
R="$L/product_ratings.jsonl"
expect_eq "product_ratings holds $rated messages (kcat)" "$rated" "$(wc -l <"$R")"
expect_eq "... the rated reviews, each once" "$(cat "$T/rated.ids")" "$(jq -r .value.review_id "$R" | sort -n)"
expect_eq "... each a rating 1..5, keyed by its product id" "0" "$(jq -r 'select(.key != .value.product_id or .value.rating < 1 or .value.rating > 5)' "$R" | wc -l)"
expect_eq "... with its review's time" "" "$(jq -c '.value | {review_id, timestamp}' "$R" | sort |
  diff - <(jq -c 'select(.summary != "") | {review_id, timestamp}' "$T/sent.jsonl" | sort) | head -5)"
jq -r '.value.rating' "$R" | sort | uniq -c | awk '{ print $2, $1 }' >"$T/topic_ratings"

# ---- hop 3: product_ratings -> Elasticsearch, -> PostgreSQL ---------------------------------
for c in ratings_to_elasticsearch ratings_kafka_to_postgres; do
  expect_eq "$c read and wrote every rating" "$rated $rated 0" "$(sj "$O/$c.summary.json" '"\(.read) \(.written) \(.dead_lettered)"')"
done
expect_eq "Elasticsearch _count: every rating" "$rated" "$(jq -r .count "$L/es_count.json")"
expect_eq "... the documents' _id are the rated reviews" "$(cat "$T/rated.ids")" "$(jq -r ._id "$L/es_docs.jsonl" | sort -n)"
expect_eq "... in the month's index of each review" "0" "$(jq -r 'select(._index != ("product_ratings-" + (._source.timestamp | strftime("%Y.%m"))))' "$L/es_docs.jsonl" | wc -l)"
expect_eq "PostgreSQL: every rating, one row each (psql)" "$rated $rated" "$(cat "$L/pg_count")"
expect_eq "... the rated reviews" "$(cat "$T/rated.ids")" "$(cat "$L/pg.ids")"
expect_eq "the same review ids in Elasticsearch and PostgreSQL" "$(jq -r ._id "$L/es_docs.jsonl" | sort -n)" "$(cat "$L/pg.ids")"
expect_eq "... with the same times (reviewed_at)" "" "$(jq -r '"\(._id) \(._source.timestamp)"' "$L/es_docs.jsonl" | sort -n | diff - "$L/pg_times" | head -5)"
expect_eq "the same ratings in the topic and in Elasticsearch (terms aggregation)" "$(cat "$T/topic_ratings")" "$(cat "$L/es_ratings")"
expect_eq "the same ratings in the topic and in PostgreSQL" "$(cat "$T/topic_ratings")" "$(cat "$L/pg_ratings")"
expect_eq "no dead letters anywhere" "0" "$(cat "$O"/*.errors.jsonl 2>/dev/null | wc -l)"

# ---- the report -------------------------------------------------------------------------
page="$O/product_ratings.html"
check "the report is written ($page)" test -s "$page"
sed -n 's/.*<script type="application\/json" id="report-data">\(.*\)<\/script>.*/\1/p' "$page" >"$T/data.json"
expect_eq "its donut counts the table's ratings" "$(cat "$L/pg_ratings")" "$(jq -r '.labels[] | "\(.label) \(.count)"' "$T/data.json")"
check "its word cloud has phrases ($(jq '.phrases | length' "$T/data.json"))" jq -e '(.phrases | length) >= 20 and all(.phrases[]; .count > 0)' "$T/data.json"
check "its heat map has the top products" jq -e '(.groups | length) > 0' "$T/data.json"
expect_eq "its JSON Lines are the table's rows" "$rated" "$(wc -l <"$O/product_ratings.jsonl")"

# ---- what the demo printed --------------------------------------------------------------
grep -E '^  (topic|Elasticsearch|PostgreSQL) ' "$T/demo.out" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+$/) { print $i; break } }' >"$T/printed"
expect_eq "it printed each place's count: $ROWS, then $rated three times" "$ROWS $rated $rated $rated" "$(paste -sd' ' "$T/printed")"
expect_contains "it printed the report's path" "$T/demo.out" "the report (open it in a browser; it needs no network): $page"
for v in KAFKA_BROKERS KAFKA_PROPERTIES SCHEMA_REGISTRY_URL ES_URL PG_URL OPENAI_BASE_URL; do
  expect_contains "it says how to point it at real systems: $v" "$T/demo.out" "  $v="
done

# ---- everything stopped -----------------------------------------------------------------
. "$L/env"
for url in "$SCHEMA_REGISTRY_URL" "$ES_URL" "${OPENAI_BASE_URL%/v1}"; do
  check "$url is closed after the demo" bash -c "! curl -s -m 5 -o /dev/null '$url/'"
done
check "Kafka ($KAFKA_BROKERS) is closed" bash -c "! timeout 10 kcat -L -b '$KAFKA_BROKERS' -m 3 >/dev/null 2>&1"
check "PostgreSQL (port $PGPORT) is closed" bash -c "! psql -h 127.0.0.1 -p '$PGPORT' -U runnel -d postgres -XAtc 'select 1' >/dev/null 2>&1"
check "the demo's temporary directory is gone ($PGHOST)" test ! -e "$(dirname "$PGHOST")"

# ---- a TERM while the model rates: the job and every server stop ----------------------------
PIPELINE_ROWS=2000 PIPELINE_LATENCY_MS=200 PIPELINE_OUT="$T/int" PIPELINE_TIMEOUT=50 \
  timeout 60 bash tools/demo-pipeline.sh >"$T/int.out" 2>&1 &
demo=$!
url() { sed -n "s/.*$1=\"\{0,1\}\([^\" ]*\).*/\1/p" "$T/int.out" | head -1; }
# the model's calls (bin/model-server's /stats)
calls() { local m; m="$(url OPENAI_BASE_URL)"; [ -n "$m" ] && curl -sf -m 5 "${m%/v1}/stats" | jq -r .requests; }
deadline=$((SECONDS + 50))
until [ "$(calls)" -gt 0 ] 2>/dev/null || [ "$SECONDS" -ge "$deadline" ] || ! kill -0 "$demo" 2>/dev/null; do sleep 0.05; done
check "the rating job calls the model ($(calls) calls), then the TERM" test "$(calls)" -gt 0 2>/dev/null
kill -TERM "$demo"
wait "$demo"
expect_eq "a TERM stops the demo with exit 130" 130 "$?"
expect_contains "it says so" "$T/int.out" "interrupted; stopping the jobs and the servers"
expect_contains "the rating job was stopped, not left running" "$T/int/review_rating_kafka_avro.log" "interrupted"
if pgrep -f -- "--summary-json $T/int/" >/dev/null; then fail "a job of it still runs: $(pgrep -af -- "--summary-json $T/int/")"; else pass "no job of it runs any more"; fi
for url in "$(url SCHEMA_REGISTRY_URL)" "$(url ES_URL)" "$(url OPENAI_BASE_URL)"; do
  check "$url is closed after the TERM" bash -c "[ -n '$url' ] && ! curl -s -m 5 -o /dev/null '$url/'"
done
brokers=$(url KAFKA_BROKERS)
check "Kafka ($brokers) is closed after the TERM" bash -c "[ -n '$brokers' ] && ! timeout 10 kcat -L -b '$brokers' -m 3 >/dev/null 2>&1"
pgport=$(sed -n 's/.*PG_URL="host=127.0.0.1 port=\([0-9]*\).*/\1/p' "$T/int.out" | head -1)
check "PostgreSQL (port $pgport) is closed after the TERM" bash -c "[ -n '$pgport' ] && ! psql -h 127.0.0.1 -p '$pgport' -U runnel -d postgres -XAtc 'select 1' >/dev/null 2>&1"
finish
