-- jobs/reviews_to_kafka_avro.lua: jobs/reviews_to_kafka.lua in Avro: each review as one message
-- in Confluent's wire format, its schema (jobs/review.avsc) registered in the Schema Registry
-- under product_review-value; the key is the product id as text. The first step of the seed
-- pipeline (make demo-pipeline); Kafka and the registry are found as jobs/lib/systems.lua says.
--   KAFKA_BROKERS=127.0.0.1:9092 SCHEMA_REGISTRY_URL=http://127.0.0.1:8081 \
--     runnel run jobs/reviews_to_kafka_avro.lua --set input=data/reviews_sample.csv
local systems = require("lib.systems")
local reviews = source.csv {
  path   = param("input", "data/reviews_sample.csv"),
  header = true,                               -- Amazon Fine Food Reviews layout
  select = { review_id = "Id", product_id = "ProductId", user_id = "UserId", score = "Score",
             timestamp = "Time", summary = "Summary" },
  types  = { review_id = "integer", score = "integer", timestamp = "integer" },
}

return job {
  name   = "reviews_to_kafka_avro",
  source = reviews,
  sinks  = { sink.kafka { brokers = systems.brokers, properties = systems.kafka_properties,
                          topic = param("topic", "product_review"),
                          key = "product_id", format = "avro", schema = "review.avsc",  -- beside this file
                          registry = systems.registry } },
  errors = sink.jsonl { path = param("errors", "out/reviews_to_kafka_avro.errors.jsonl") },
}
