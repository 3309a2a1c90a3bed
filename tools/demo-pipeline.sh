#!/usr/bin/env bash
# tools/demo-pipeline.sh (make demo-pipeline): the seed pipeline (Confluent's Flink AI example)
# end to end, every step a runnel job, every system a local server on a free port:
#
#   data/reviews_sample.csv
#     -> jobs/reviews_to_kafka_avro.lua       topic product_review, Avro (jobs/review.avsc) through
#                                             the Schema Registry, key product_id as a string
#     -> jobs/review_rating_kafka_avro.lua    each review rated 1..5 by the model (OpenAI API)
#                                             -> topic product_ratings, Avro through the registry
#     -> jobs/ratings_to_elasticsearch.lua    the topic -> Elasticsearch, monthly indices
#        jobs/ratings_kafka_to_postgres.lua   the topic -> PostgreSQL, table product_ratings
#     -> runnel report                        the table -> one HTML page (donut, word cloud, heat map)
#
# Why connectors, not sinks on the rating job: in the seed (and in any Flink or Kafka Connect
# shop) the rating job writes one topic, and each store is fed from that topic by a connector
# with its own consumer group. The topic is the contract: a store that is down or slow holds back
# only its own connector (not the model calls, which cost money), a store can be added or
# reloaded later by replaying the topic (the connectors upsert on review_id, so a replay
# overwrites), and the counts below can be checked hop by hop. The two connectors run at once,
# as two Connect tasks would. The rating job's own sinks stay for a pipeline without Kafka.
#
# Servers (all on 127.0.0.1, free ports, stopped on exit): bin/kafka-dev (librdkafka's mock
# cluster: the Kafka protocol), bin/schema-registry-dev, bin/es-dev, a real PostgreSQL 15
# (tools/pg.sh: initdb in a temporary directory, as nobody when run as root), bin/model-server
# (OpenAI-compatible). Every job runs in batch mode, so the command ends. What landed is then
# counted by clients of their own: kcat (each topic), curl (Elasticsearch's _count and a terms
# aggregation), psql (the table).
#
# Real systems: the jobs find everything in the environment (jobs/lib/systems.lua), so the commands
# this prints at the end run unchanged against real clusters once these are set:
#   KAFKA_BROKERS, KAFKA_PROPERTIES ("security.protocol=SASL_SSL;sasl.mechanisms=PLAIN;
#   sasl.username=KEY", any librdkafka property), KAFKA_SASL_PASSWORD; SCHEMA_REGISTRY_URL,
#   SCHEMA_REGISTRY_USER, SCHEMA_REGISTRY_PASSWORD; ES_URL, ES_API_KEY (or ES_USER, ES_PASSWORD);
#   PG_URL (a libpq conninfo or URI); OPENAI_BASE_URL, OPENAI_API_KEY.
# This script itself always starts its own servers: it sets those variables to them for its jobs
# (and clears the credentials), whatever the environment holds.
#
# Environment:
#   PIPELINE_ROWS        reviews to send (default: all 20,000 of the sample)
#   PIPELINE_OUT         where the report, the ratings as JSON Lines and each job's log, summary and
#                        dead letters go (default out/pipeline)
#   PIPELINE_LATENCY_MS  the model server's latency per call (default 0)
#   PIPELINE_TIMEOUT     seconds a server may take to start and a job to run (default 600)
#   RUNNEL               the runner (default bin/runnel)
#   PIPELINE_AFTER       a command for bash to run once the report is written, with the servers
#                        still up and KAFKA_BROKERS, SCHEMA_REGISTRY_URL, ES_URL, PG_URL and psql's
#                        PGHOST/PGPORT/PGUSER/PGDATABASE in its environment (the demo fails if it
#                        does): tests/integration/test_demo_pipeline.sh looks at each system so
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS="${PIPELINE_ROWS:-20000}"
OUT="${PIPELINE_OUT:-out/pipeline}"
LIMIT_S="${PIPELINE_TIMEOUT:-600}"
RUNNER="${RUNNEL:-bin/runnel}"
LATENCY_MS="${PIPELINE_LATENCY_MS:-0}"
INPUT=data/reviews_sample.csv
[[ "$ROWS" =~ ^[1-9][0-9]*$ ]] || { echo "demo-pipeline: PIPELINE_ROWS='$ROWS' is not a positive number" >&2; exit 2; }
for tool in kcat curl jq psql; do
  command -v "$tool" >/dev/null || { echo "demo-pipeline: $tool is not installed (make deps)" >&2; exit 1; }
done
unset KAFKA_PROPERTIES KAFKA_SASL_PASSWORD KAFKA_SASL_PASSWORD_FILE SCHEMA_REGISTRY_USER \
      SCHEMA_REGISTRY_PASSWORD SCHEMA_REGISTRY_PASSWORD_FILE SCHEMA_REGISTRY_CA_FILE \
      ES_API_KEY ES_API_KEY_FILE ES_USER ES_PASSWORD ES_PASSWORD_FILE ES_CA_FILE PG_URL_FILE
export RUNNEL_LIB="$PWD/scripts"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
SHOWN="${OUT#"$PWD"/}"                       # $OUT as it is printed: relative inside the checkout
W="$(mktemp -d /tmp/runnel-pipeline.XXXXXX)"
export RUNNEL_STATE_DIR="$W/state"          # the jobs' checkpoints: fresh each run, like the servers

# ---- servers, and their stop on exit ---------------------------------------------------------
# The jobs run in the background and the script waits for them (the wait builtin returns at a
# signal; a foreground child would hold an interrupt back until it ended), so Ctrl-C or a TERM
# stops the running jobs first (SIGTERM: they finish what is in flight and commit; KILL after
# 30 s), then the servers. The servers and the jobs run in process groups of their own (setsid;
# timeout), so a Ctrl-C reaches the script only and the servers outlive the jobs they serve.
job_pids=()
pids=()
_cleanups=()                                 # tools/pg.sh appends the PostgreSQL stop here
# stop PID SECONDS: SIGTERM to PID, then SIGKILL to its process group (the job under timeout
# too) if it still runs after SECONDS
stop() {
  kill -TERM "$1" 2>/dev/null || return 0
  local deadline=$((SECONDS + $2))
  while kill -0 "$1" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.05; done
  if kill -0 "$1" 2>/dev/null; then
    echo "demo-pipeline: process $1 did not stop within $2 s of SIGTERM; killing its group" >&2
    kill -KILL -- "-$1" 2>/dev/null || kill -KILL "$1" 2>/dev/null || true
  fi
  wait "$1" 2>/dev/null || true
}
stop_all() {
  local c p
  for p in "${job_pids[@]}"; do stop "$p" 30; done
  for c in "${_cleanups[@]}"; do "$c"; done
  for p in "${pids[@]}"; do stop "$p" 10; done
  rm -rf "$W"
}
trap stop_all EXIT
# (A second signal while they stop is ignored: it would cut the stop short and leave servers behind.)
trap 'trap "" INT TERM; echo "demo-pipeline: interrupted; stopping the jobs and the servers" >&2; exit 130' INT TERM
say() { printf 'demo-pipeline: %s\n' "$*"; }

# start NAME PATTERN COMMAND...: COMMAND in the background, its output in $W/NAME.out; waits
# until a line of it matches PATTERN (or the process ends, or LIMIT_S passes) and sets ADDRESS
# to the line's first http://... URL or, failing that, the line.
start() {
  local name="$1" pattern="$2"; shift 2
  setsid "$@" >"$W/$name.out" 2>"$W/$name.err" &
  local pid=$! deadline=$((SECONDS + LIMIT_S)) line=""
  pids+=("$pid")
  while :; do
    line="$(grep -m1 -E "$pattern" "$W/$name.out" 2>/dev/null || true)"
    [ -n "$line" ] && break
    if ! kill -0 "$pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
      echo "demo-pipeline: $name ($*) did not start:" >&2; cat "$W/$name.out" "$W/$name.err" >&2; exit 1
    fi
    sleep 0.05
  done
  ADDRESS="$(grep -oE 'https?://[^ ]+' <<<"$line" | head -1 || true)"
  [ -n "$ADDRESS" ] || ADDRESS="$line"
}

start kafka '^[0-9.]+:[0-9]+' bin/kafka-dev --topic product_review:4 --topic product_ratings:4
export KAFKA_BROKERS="$ADDRESS"
start registry '^listening on ' bin/schema-registry-dev --port 0
export SCHEMA_REGISTRY_URL="$ADDRESS"
start es '^listening on ' bin/es-dev --port 0
export ES_URL="$ADDRESS"
start model '^listening on ' bin/model-server --port 0 --latency-ms "$LATENCY_MS"
export OPENAI_BASE_URL="$ADDRESS/v1" OPENAI_API_KEY=demo-key-not-secret
PG_ROOT="$W"
# shellcheck source=tools/pg.sh
. tools/pg.sh
start_postgres
export PG_URL="$PG_TCP_CONNINFO"
server() { printf 'demo-pipeline: %-42s %s\n' "$1" "$2"; }
server "Kafka (bin/kafka-dev)" "KAFKA_BROKERS=$KAFKA_BROKERS"
server "Schema Registry (bin/schema-registry-dev)" "SCHEMA_REGISTRY_URL=$SCHEMA_REGISTRY_URL"
server "Elasticsearch (bin/es-dev)" "ES_URL=$ES_URL"
server "PostgreSQL $(psql -XAtc 'show server_version' | cut -d' ' -f1) (tools/pg.sh)" "PG_URL=\"$PG_URL\""
server "model (bin/model-server)" "OPENAI_BASE_URL=$OPENAI_BASE_URL"
echo

# ---- the jobs --------------------------------------------------------------------------------
# job_start NAME SCRIPT ARGS...: starts a job in batch mode (its log, summary and dead letters in
# $OUT), in the background; JOB_PID is its process. job_wait NAME SCRIPT PID: waits for it; a job
# that fails (or runs past PIPELINE_TIMEOUT) stops the demo with the end of its log.
job_start() {
  local name="$1" script="$2"; shift 2
  rm -f "$OUT/$name.errors.jsonl" "$OUT/$name.summary.json"
  timeout "$LIMIT_S" "$RUNNER" run "$script" --no-progress --summary-json "$OUT/$name.summary.json" \
    --set errors="$OUT/$name.errors.jsonl" "$@" >"$OUT/$name.log" 2>&1 &
  JOB_PID=$!
  job_pids+=("$JOB_PID")
}
job_wait() {
  local rc=0
  wait "$3" || rc=$?
  if [ "$rc" != 0 ]; then
    echo "demo-pipeline: $2 failed (exit $rc$([ "$rc" = 124 ] && echo ": over PIPELINE_TIMEOUT=${LIMIT_S}s")); the end of its log, $OUT/$1.log:" >&2
    tail -30 "$OUT/$1.log" >&2; exit 1
  fi
}
# job NAME SCRIPT ARGS...: runs a job to its end
job() { job_start "$@"; job_wait "$1" "$2" "$JOB_PID"; }
# figures NAME: one line of a job's summary
figures() {
  jq -r --arg n "$1" '"  \($n): read \(.read), written \(.written), filtered \(.filtered), dead-lettered \(.dead_lettered), \(.elapsed_s | . * 100 | round / 100) s"' \
    "$OUT/$1.summary.json"
}
started=$SECONDS

say "1. $INPUT (first $ROWS reviews) -> topic product_review (Avro, key product_id)"
job reviews_to_kafka_avro jobs/reviews_to_kafka_avro.lua --limit "$ROWS" --set input="$INPUT"
figures reviews_to_kafka_avro
say "2. product_review -> model -> topic product_ratings (Avro)"
job review_rating_kafka_avro jobs/review_rating_kafka_avro.lua
figures review_rating_kafka_avro
jq -r '.evaluation // empty | "  evaluation against the review score: accuracy \(.accuracy | . * 1000 | round / 1000), mean absolute error \(.mae | . * 1000 | round / 1000) over \(.compared) ratings"' \
  "$OUT/review_rating_kafka_avro.summary.json"
say "3. product_ratings -> Elasticsearch and -> PostgreSQL (two connectors at once)"
job_start ratings_to_elasticsearch jobs/ratings_to_elasticsearch.lua --set format=avro; es_job=$JOB_PID
job_start ratings_kafka_to_postgres jobs/ratings_kafka_to_postgres.lua --set format=avro; pg_job=$JOB_PID
job_wait ratings_to_elasticsearch jobs/ratings_to_elasticsearch.lua "$es_job"
job_wait ratings_kafka_to_postgres jobs/ratings_kafka_to_postgres.lua "$pg_job"
figures ratings_to_elasticsearch
figures ratings_kafka_to_postgres
say "4. the table -> the report"
psql -XAt -v ON_ERROR_STOP=1 -c "select row_to_json(r) from (select review_id, product_id, rating, score, summary,
  reviewed_at from product_ratings order by review_id) r" >"$OUT/product_ratings.jsonl"
"$RUNNER" report "$OUT/product_ratings.jsonl" --html "$OUT/product_ratings.html" \
  --title "Product ratings (make demo-pipeline)" | sed "s|^$OUT/|  $SHOWN/|"
say "the jobs took $((SECONDS - started)) s"
echo

# ---- what landed, counted by clients of their own ---------------------------------------------
# topic_count TOPIC: messages in it, consumed from the beginning by kcat
topic_count() { timeout 60 kcat -C -b "$KAFKA_BROKERS" -t "$1" -o beginning -e -q -f 'x\n' | wc -l; }
topic_keys() { timeout 60 kcat -C -b "$KAFKA_BROKERS" -t "$1" -o beginning -e -q -f '%k\n' | sort -u | wc -l; }
es_count="$(curl -sf "$ES_URL/product_ratings-*/_count" | jq -r .count)"
es_indices="$(curl -sf "$ES_URL/product_ratings-*" | jq -r 'keys | length')"
es_ratings="$(curl -sf "$ES_URL/product_ratings-*/_search" -H 'Content-Type: application/json' \
  -d '{"size":0,"aggs":{"r":{"terms":{"field":"rating","size":10}}}}' |
  jq -r '.aggregations.r.buckets | sort_by(.key) | map("\(.key): \(.doc_count)") | join(", ")')"
say "what landed, counted by independent clients:"
printf '  %-48s %6s   %s\n' "topic product_review (kcat)" "$(topic_count product_review)" "messages, $(topic_keys product_review) distinct keys (product ids)"
printf '  %-48s %6s   %s\n' "topic product_ratings (kcat)" "$(topic_count product_ratings)" "messages"
printf '  %-48s %6s   %s\n' "Elasticsearch product_ratings-* (curl _count)" "$es_count" "documents in $es_indices monthly indices"
printf '  %-48s %6s   %s\n' "PostgreSQL product_ratings (psql count(*))" "$(psql -XAtc 'select count(*) from product_ratings')" "rows"
echo "  ratings in Elasticsearch (terms aggregation): $es_ratings"
echo "  ratings in PostgreSQL (psql):"
psql -XAt -F ' ' -c 'select rating, count(*) from product_ratings group by rating order by rating' |
  awk '{ total += $2; n[NR] = $2; r[NR] = $1 } END { for (i = 1; i <= NR; i++) {
           printf "    %s stars: %6d  ", r[i], n[i]; for (j = 0; j < 50 * n[i] / total; j++) printf "#"; printf "\n" } }'
echo "  dead letters: $(cat "$OUT"/*.errors.jsonl 2>/dev/null | wc -l) (in $SHOWN/*.errors.jsonl)"
echo
say "the report (open it in a browser; it needs no network): $SHOWN/product_ratings.html"
if [ -n "${PIPELINE_AFTER:-}" ]; then
  bash -c "$PIPELINE_AFTER" || { echo "demo-pipeline: PIPELINE_AFTER failed (exit $?): $PIPELINE_AFTER" >&2; exit 1; }
fi
echo
cat <<EOF
demo-pipeline: the same jobs against real systems: set these, then run the commands below
  KAFKA_BROKERS=broker1:9092,broker2:9092            bootstrap servers
  KAFKA_PROPERTIES="security.protocol=SASL_SSL;sasl.mechanisms=PLAIN;sasl.username=KEY"
                                                     any librdkafka properties, name=value;...
  KAFKA_SASL_PASSWORD=...                            sasl.password (a secret; or KAFKA_SASL_PASSWORD_FILE)
  SCHEMA_REGISTRY_URL=https://psrc-xxxx.confluent.cloud  SCHEMA_REGISTRY_USER=KEY  SCHEMA_REGISTRY_PASSWORD=...
  ES_URL=https://es.example:9200                     and ES_API_KEY=... (or ES_USER=... ES_PASSWORD=...)
  PG_URL="host=db port=5432 dbname=reviews user=runnel password=..."   (or postgresql://...; a secret: or PG_URL_FILE)
  OPENAI_BASE_URL=https://api.openai.com/v1  OPENAI_API_KEY=...  (--set model=gpt-4o for the seed's model)
  bin/runnel run jobs/reviews_to_kafka_avro.lua --set input=$INPUT
  bin/runnel run jobs/review_rating_kafka_avro.lua
  bin/runnel run jobs/ratings_to_elasticsearch.lua --set format=avro
  bin/runnel run jobs/ratings_kafka_to_postgres.lua --set format=avro
EOF
