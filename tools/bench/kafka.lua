-- bench case 4: Kafka topic -> model -> Kafka topic (batch: the topic as it is at start)
return job {
  name = "bench_kafka",
  window = 8192,
  source = source.kafka { brokers = env("KAFKA_BROKERS"), topic = param("in"), format = "json", metadata = false },
  filter = function(r) return r.summary ~= "" end,
  predict = model.openai {
    endpoint = env("OPENAI_BASE_URL"), model = "gpt-4o-mini", cache = false,
    system = "Rate the product review from 1 (very negative) to 5 (very positive). Answer with the number only.",
    prompt = "Review title: {{summary}}",
    output = { rating = { type = "integer", min = 1, max = 5 } },
    limits = { concurrency = 64, retries = 10 },
  },
  map = function(r) return { review_id = r.review_id, product_id = r.product_id, rating = r.rating } end,
  sinks = sink.kafka { brokers = env("KAFKA_BROKERS"), topic = param("out"), key = "product_id" },
  errors = sink.jsonl { path = param("output") .. ".errors" },
}
