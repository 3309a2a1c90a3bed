-- jobs/review_rating_kafka_avro.lua: jobs/review_rating_kafka.lua in Avro: reviews from the topic
-- product_review in Confluent's wire format (written by jobs/reviews_to_kafka_avro.lua or any
-- Confluent producer; writer schemas fetched from the registry by id and read as
-- jobs/review.avsc), ratings to product_ratings in Avro, their schema (below) registered under
-- product_ratings-value. Kafka and the registry as jobs/lib/systems.lua says (KAFKA_BROKERS,
-- KAFKA_PROPERTIES, SCHEMA_REGISTRY_URL ...), the model from OPENAI_BASE_URL/OPENAI_API_KEY.
-- The second step of the seed pipeline (make demo-pipeline).
local systems = require("lib.systems")
local registry = systems.registry

local reviews = source.kafka {
  brokers  = systems.brokers,
  properties = systems.kafka_properties,
  topic    = param("input_topic", "product_review"),
  group    = param("group", "review-rating-avro"),
  format   = "avro",
  schema   = "review.avsc",                    -- the reader schema, beside this file
  registry = registry,
  metadata = false,
}

local rater = model.openai {
  endpoint = env("OPENAI_BASE_URL", "http://127.0.0.1:8089/v1"),
  api_key  = secret("OPENAI_API_KEY"),         -- never printed, never logged
  model    = param("model", "gpt-4o-mini"),
  task     = "classification",
  system   = "Rate the product review from 1 (very negative) to 5 (very positive). Answer with the number only.",
  prompt   = "Review title: {{summary}}",
  output   = { rating = { type = "integer", min = 1, max = 5 } },
  limits   = { concurrency = 64, timeout = "30s", retries = 5 },
  price    = { input = 0.15, output = 0.60 },  -- USD per million tokens, for the cost estimate
}

local rating_schema = {
  type = "record", name = "ProductRating", namespace = "runnel.demo",
  fields = {
    { name = "review_id", type = "long" },
    { name = "product_id", type = "string" },
    { name = "rating", type = "int" },
    { name = "score", type = { "null", "int" }, default = json.null },
    { name = "summary", type = "string" },
    { name = "timestamp", type = { "null", "long" }, default = json.null,
      doc = "the review's time, seconds since 1970 UTC (the connectors date the ratings by it)" },
  },
}

return job {
  name     = "product_ratings_kafka_avro",
  source   = reviews,
  filter   = function(r) return r.summary ~= "" end,
  predict  = rater,                             -- adds r.rating
  evaluate = { truth = "score", predicted = "rating" },
  map      = function(r)
    return { review_id = r.review_id, product_id = r.product_id, rating = r.rating, score = r.score,
             summary = r.summary, timestamp = r.timestamp }
  end,
  sinks    = { sink.kafka { brokers = systems.brokers, properties = systems.kafka_properties,
                            topic = param("output_topic", "product_ratings"), key = "product_id",
                            format = "avro", schema = rating_schema, registry = registry } },
  errors   = sink.jsonl { path = param("errors", "out/product_ratings_avro.errors.jsonl") },
}
