-- bench case avro: the input topics. CSV reviews -> one Kafka topic, in format = param("format")
-- ("avro": jobs/review.avsc through the registry, as jobs/reviews_to_kafka_avro.lua writes them;
-- "json": the same fields, in the schema's order). The same CSV gives both topics the same records.
local fmt = param("format")
return job {
  name = "bench_avro_load_" .. fmt,
  source = source.csv { path = param("input"), header = true,
                        select = { review_id = "Id", product_id = "ProductId", user_id = "UserId", score = "Score",
                                   timestamp = "Time", summary = "Summary" },
                        types = { review_id = "integer", score = "integer", timestamp = "integer" } },
  sinks = sink.kafka { brokers = env("KAFKA_BROKERS"), topic = param("topic"), key = "product_id", format = fmt,
                       schema = fmt == "avro" and "jobs/review.avsc" or nil,
                       registry = fmt == "avro" and { url = env("SCHEMA_REGISTRY_URL") } or nil },
  errors = sink.jsonl { path = param("errors") },
}
