-- jobs/reviews_to_kafka.lua: load the review CSV into a Kafka topic, one JSON message per
-- review keyed by product id (the producer step in front of jobs/review_rating_kafka.lua).
--   KAFKA_BROKERS=127.0.0.1:9092 runnel run jobs/reviews_to_kafka.lua --set input=data/reviews_sample.csv
local reviews = source.csv {
  path   = param("input", "data/reviews_sample.csv"),
  header = true,                               -- Amazon Fine Food Reviews layout
  select = { review_id = "Id", product_id = "ProductId", user_id = "UserId", profile_name = "ProfileName",
             helpful = "HelpfulnessNumerator", votes = "HelpfulnessDenominator", score = "Score",
             timestamp = "Time", summary = "Summary", text = "Text" },
  types  = { review_id = "integer", helpful = "integer", votes = "integer", score = "integer",
             timestamp = "integer" },
}

return job {
  name   = "reviews_to_kafka",
  source = reviews,
  sinks  = { sink.kafka { brokers = env("KAFKA_BROKERS", "127.0.0.1:9092"), topic = param("topic", "product_review"),
                          key = "product_id" } },
  errors = sink.jsonl { path = param("errors", "out/reviews_to_kafka.errors.jsonl") },
}
