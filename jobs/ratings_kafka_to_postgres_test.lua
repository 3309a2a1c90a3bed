-- jobs/ratings_kafka_to_postgres_test.lua: the cases `runnel test jobs/ratings_kafka_to_postgres.lua`
-- runs (README: Testing a job). What the server takes or refuses is met only in a run
-- (tests/integration/test_demo_pipeline.sh).
return {
  cases = {
    {
      name    = "a rating becomes a row, its time an ISO 8601 timestamp in UTC",
      records = { { review_id = 1, product_id = "B1", rating = 4, score = 5, summary = "Good", timestamp = 1329868800 } },
      written = { { review_id = 1, product_id = "B1", rating = 4, score = 5, summary = "Good",
                    reviewed_at = "2012-02-22T00:00:00Z" } },
    },
    {
      name    = "JSON lines from the topic, decoded by the source's format; no time, no reviewed_at",
      fixture = "../tests/data/ratings_to_elasticsearch.jsonl",
      written = { { review_id = 2, product_id = "B2", rating = 5, reviewed_at = "1970-01-01T00:00:01Z" },
                  { review_id = 3, product_id = "B3", rating = 1, reviewed_at = "1970-01-01T00:00:02Z" } },
    },
  },
}
