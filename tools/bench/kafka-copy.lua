-- bench case 6: Kafka topic -> map -> Kafka topic, no model (batch: the topic as it is at start).
-- The messages go out as they came in: the same keys, the same JSON (columns keep the input's
-- field order), so the kcat pipe it is measured against copies the same bytes.
return job {
  name = "bench_kafka_copy",
  source = source.kafka { brokers = env("KAFKA_BROKERS"), topic = param("in"), group = param("group"),
                          format = "json", metadata = false,
                          columns = { "review_id", "product_id", "user_id", "profile_name", "helpful", "votes",
                                      "score", "timestamp", "summary", "text" } },
  map = function(r) return r end,
  sinks = sink.kafka { brokers = env("KAFKA_BROKERS"), topic = param("out"), key = "product_id" },
}
