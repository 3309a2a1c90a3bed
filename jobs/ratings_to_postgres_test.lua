-- jobs/ratings_to_postgres_test.lua: the cases `runnel test jobs/ratings_to_postgres.lua` runs (README: Testing a job).
return {
  env   = { PG_URL = "host=127.0.0.1 dbname=reviews", OPENAI_API_KEY = "sk-test" },
  cases = {
    {
      name    = "a rated review becomes one row, its time as a timestamp",
      records = { { review_id = 7, product_id = "B007", summary = "Tasty and fresh", score = 4, timestamp = 1329868800 } },
      answer  = "4",
      prompts = { "Review title: Tasty and fresh" },
      written = { { review_id = 7, product_id = "B007", summary = "Tasty and fresh", rating = 4, score = 4,
                    reviewed_at = "2012-02-22T00:00:00Z" } },
    },
    {
      name     = "an empty summary is filtered before the model",
      records  = { { review_id = 8, product_id = "B008", summary = "", score = 2, timestamp = 1 } },
      filtered = 1,
      prompts  = {},
    },
    {
      name    = "an answer out of range is dead-lettered, not written",
      records = { { review_id = 9, product_id = "B009", summary = "Odd", score = 3, timestamp = 1 } },
      answer  = "11",
      dead    = { { stage = "model" } },
    },
  },
}
