-- jobs/review_rating_batch_test.lua: the cases `runnel test jobs/review_rating_batch.lua` runs (README: Testing a job).
return {
  cases = {
    {
      name    = "rates a review",
      records = { { review_id = 7, product_id = "B007", summary = "Tasty and fresh", score = 4 } },
      answer  = "4",
      prompts = { "Review title: Tasty and fresh" },
      written = { { review_id = 7, product_id = "B007", rating = 4 } },
    },
    {
      name     = "an empty summary is filtered before the model",
      records  = { { review_id = 8, product_id = "B008", summary = "", score = 2 } },
      filtered = 1,
      prompts  = {},
    },
    {
      name    = "an answer that stays out of range is dead-lettered",
      records = { { review_id = 9, product_id = "B009", summary = "Odd", score = 3 } },
      answer  = "9",
      dead    = { { stage = "model", reason = "invalid answer" } },
    },
  },
}
