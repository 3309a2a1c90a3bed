-- jobs/review_rating_kafka.lua: jobs/review_rating.lua fed from Kafka: reviews from the topic
-- product_review (written by jobs/reviews_to_kafka.lua), ratings to the topic product_ratings
-- keyed by product id. Brokers from KAFKA_BROKERS; the model from OPENAI_BASE_URL/OPENAI_API_KEY.
--   runnel run jobs/review_rating_kafka.lua                  (batch: what is in the topic now)
--   runnel run jobs/review_rating_kafka.lua --mode stream    (follow it; start more runners with
--                                                             the same group to share the work)
local reviews = source.kafka {
  brokers = env("KAFKA_BROKERS", "127.0.0.1:9092"),
  topic   = param("input_topic", "product_review"),
  group   = param("group", "review-rating"),
  format  = "json",
}

local rater = model.openai {
  endpoint = env("OPENAI_BASE_URL", "http://127.0.0.1:8089/v1"),
  api_key  = secret("OPENAI_API_KEY"),         -- never printed, never logged
  model    = param("model", "gpt-4o-mini"),
  task     = "classification",
  system   = "Rate the product review from 1 (very negative) to 5 (very positive). Answer with the number only.",
  prompt   = "Review title: {{summary}}",
  output   = { rating = { type = "integer", min = 1, max = 5 } },
  limits   = { concurrency = 64, timeout = "30s", retries = 5 },  -- add rpm/tpm for a real account
  price    = { input = 0.15, output = 0.60 },  -- USD per million tokens, for the cost estimate
}

return job {
  name     = "product_ratings_kafka",
  source   = reviews,
  filter   = function(r) return r.summary ~= "" end,
  predict  = rater,                             -- adds r.rating
  evaluate = { truth = "score", predicted = "rating" },
  map      = function(r)
    return { review_id = r.review_id, product_id = r.product_id, rating = r.rating, score = r.score }
  end,
  sinks    = { sink.kafka { brokers = env("KAFKA_BROKERS", "127.0.0.1:9092"), topic = param("output_topic", "product_ratings"),
                            key = "product_id" } },
  errors   = sink.jsonl { path = param("errors", "out/product_ratings.errors.jsonl") },
}
