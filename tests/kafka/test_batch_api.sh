#!/usr/bin/env bash
# A bounded Kafka job through the model's batch API: its batches are named by partition and
# offset, and the checkpoint file keeps them though the Kafka source keeps no checkpoint of its
# own (its offsets are committed in the group). Killed while polling, the job resumes from the
# committed offsets into the same batch: the server made one, every message is written once.
. "$(dirname "$0")/../lib.sh"
. tests/kafka/kafka_lib.sh
start_kafka --topic reviews:3
start_model_server --batch-speed 6
export OPENAI_API_KEY=sk-kafka-batch-0123
seq 1 300 | awk '{ printf "k%d|{\"id\":%d,\"summary\":\"%s\"}\n", $1, $1, ($1 % 3 ? "excellent delicious" : "awful terrible") }' |
  timeout 30 kcat -P -b "$KAFKA_BROKERS" -t reviews -K'|'
cat > "$T/job.lua" <<'LUA'
return job {
  name = "kafka_batch",
  source = source.kafka { brokers = env("KAFKA_BROKERS"), topic = "reviews", group = "kafka-batch", format = "json" },
  predict = model.openai {
    endpoint = env("OPENAI_BASE_URL"), api_key = secret("OPENAI_API_KEY"), model = "gpt-4o-mini",
    prompt = "Review title: {{summary}}", output = { rating = { type = "integer", min = 1, max = 5 } },
    batch = { poll = "200ms" },
  },
  map = function(r) return { id = r.id, rating = r.rating } end,
  sinks = sink.jsonl { path = param("output") },
}
LUA
( exec $RUNNEL run "$T/job.lua" --set output="$T/out.jsonl" --no-cache --no-progress >"$T/run1.log" 2>&1 ) &
pid=$!
cp="$RUNNEL_STATE_DIR/kafka_batch.checkpoint.json"
for _ in $(seq 200); do
  grep -q '"id":"batch_' "$cp" 2>/dev/null &&
    [ "$(curl -sS "$MODEL_URL/v1/batches" | jq -r '.data[0].status')" = in_progress ] && break
  sleep 0.05
done
check "the checkpoint holds the batch, with a range per partition" \
  jq -e '.model.batches[0] | (.id | startswith("batch_")) and .requests == 300 and ([.ranges[].partition] | sort) == [0, 1, 2]' "$cp"
kill -KILL "$pid"; wait "$pid" 2>/dev/null
$RUNNEL run "$T/job.lua" --set output="$T/out.jsonl" --no-cache --no-progress --resume --summary-json "$T/s.json" >"$T/run2.log" 2>&1
expect_eq "--resume exits 0" 0 "$?"
expect_contains "it resumes the batch" "$T/run2.log" "resuming 1 batch submitted before"
expect_eq "one batch made, one file uploaded, no live call" "1 1 0" \
  "$(curl -sS "$MODEL_URL/stats" | jq -r '"\(.batch.batches_created) \(.batch.files_uploaded) \(.requests)"')"
expect_eq "every message written once" "$(seq 1 300)" "$(jq -r .id "$T/out.jsonl" | sort -n)"
check "the ratings are the model's: 'awful terrible' is 1, 'excellent delicious' 5" \
  jq -e -s 'all(if .id % 3 == 0 then .rating == 1 else .rating == 5 end)' "$T/out.jsonl"
check "the finished job left no checkpoint" test ! -e "$cp"
finish
