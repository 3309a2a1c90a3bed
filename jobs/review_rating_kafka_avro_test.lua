-- jobs/review_rating_kafka_avro_test.lua: the cases `runnel test jobs/review_rating_kafka_avro.lua` runs (README: Testing a job).
-- Records stand for the decoded Avro messages; tests/kafka/test_avro.sh runs the wire format against a registry.
return {
  cases = {
    {
      name    = "rates a review",
      records = { { review_id = 7, product_id = "B007", summary = "Tasty and fresh", score = 4, timestamp = 1329868800 } },
      answer  = "4",
      prompts = { "Review title: Tasty and fresh" },
      written = { { review_id = 7, product_id = "B007", rating = 4, score = 4, summary = "Tasty and fresh",
                    timestamp = 1329868800 } },
    },
    {
      name     = "an empty summary is filtered before the model",
      records  = { { review_id = 8, product_id = "B008", summary = "", score = 2 } },
      filtered = 1,
      prompts  = {},
    },
  },
}
