#!/usr/bin/env bash
# The Kafka example jobs end to end with bin/model-server: jobs/reviews_to_kafka.lua loads a
# review CSV into product_review; jobs/review_rating_kafka.lua (batch) rates every review and
# writes product_ratings keyed by product id: every review with a summary has a rating 1..5.
# Then the same job in stream mode rates reviews produced after it started.
. "$(dirname "$0")/../lib.sh"
. tests/kafka/kafka_lib.sh
start_model_server
start_kafka --topic product_review:3 --topic product_ratings:3
export OPENAI_API_KEY=test-key

bin/gen-reviews --rows 500 --seed 7 > "$T/reviews.csv" 2>/dev/null
timeout 60 $RUNNEL run jobs/reviews_to_kafka.lua --set input="$T/reviews.csv" --set errors="$T/load.err.jsonl" \
  --summary-json "$T/load.json" 2>"$T/load.log"
expect_eq "reviews_to_kafka exits 0" 0 $?
expect_eq "reviews_to_kafka wrote 500" 500 "$(sj "$T/load.json" .written)"
timeout 30 kcat -C -b "$KAFKA_BROKERS" -t product_review -o beginning -e -q -f '%k\t%s\n' > "$T/reviews.tsv"
expect_eq "product_review holds 500 messages" 500 "$(lines "$T/reviews.tsv")"
check "each review is keyed by its product id" \
  bash -c "awk -F'\t' '{print \$2}' '$T/reviews.tsv' | jq -r .product_id | paste -d' ' <(cut -f1 '$T/reviews.tsv') - | awk '\$1 != \$2 {bad=1} END {exit bad}'"

timeout 60 $RUNNEL run jobs/review_rating_kafka.lua --set errors="$T/rate.err.jsonl" --summary-json "$T/rate.json" \
  2>"$T/rate.log"
expect_eq "review_rating_kafka (batch) exits 0" 0 $?
check "invariant" invariant_holds "$T/rate.json"
expect_eq "nothing dead-lettered" 0 "$(sj "$T/rate.json" .dead_lettered)"
timeout 30 kcat -C -b "$KAFKA_BROKERS" -t product_ratings -o beginning -e -q -f '%k\t%s\n' > "$T/ratings.tsv"
expect_eq "one rating per review written" "$(sj "$T/rate.json" .written)" "$(lines "$T/ratings.tsv")"
expect_eq "every review with a summary has a rating" \
  "$(cut -f2- "$T/reviews.tsv" | jq -r 'select(.summary != "") | .review_id' | sort -n)" \
  "$(cut -f2- "$T/ratings.tsv" | jq -r .review_id | sort -n)"
check "every rating is an integer 1..5" \
  bash -c "cut -f2- '$T/ratings.tsv' | jq -e -s 'all(.[]; .rating == (.rating|floor) and .rating >= 1 and .rating <= 5)' >/dev/null"
check "ratings are keyed by product id" \
  bash -c "cut -f2- '$T/ratings.tsv' | jq -r .product_id | paste -d' ' <(cut -f1 '$T/ratings.tsv') - | awk '\$1 != \$2 {bad=1} END {exit bad}'"

# stream mode: reviews produced after the start are rated
$RUNNEL run jobs/review_rating_kafka.lua --mode stream --set errors="$T/stream.err.jsonl" \
  --set group=review-rating-stream --set output_topic=stream_ratings 2>"$T/stream.log" &
job=$!
_pids+=("$job")
seq 1 20 | awk '{ printf "P%d|{\"review_id\":%d,\"product_id\":\"P%d\",\"summary\":\"great tasty coffee\",\"score\":5}\n", $1, 100000 + $1, $1 }' |
  timeout 30 kcat -P -b "$KAFKA_BROKERS" -t product_review -K'|'
new_ratings() { [ "$(timeout 30 kcat -C -b "$KAFKA_BROKERS" -t stream_ratings -o beginning -e -q | jq -r 'select(.review_id > 100000) | .review_id' | sort -u | wc -l)" -ge 20 ]; }
check "stream mode: the 20 new reviews are rated" wait_until 40 new_ratings
stop_runner "$job"
expect_eq "stream mode: exit 0 on SIGTERM" 0 "$STOP_STATUS"
expect_contains "stream mode: summary" "$T/stream.log" "stopped in"
finish
