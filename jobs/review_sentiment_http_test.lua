-- jobs/review_sentiment_http_test.lua: the cases `runnel test jobs/review_sentiment_http.lua` runs (README: Testing a job).
return {
  cases = {
    {
      name    = "the endpoint's label becomes the sentiment",
      records = { { review_id = 1, summary = "Awful", score = 1 }, { review_id = 2, summary = "Superb", score = 5 } },
      answer  = { by = "review_id", answers = { [1] = "negative", [2] = "positive" } },
      written = { { review_id = 1, sentiment = "negative", score = 1 }, { review_id = 2, sentiment = "positive", score = 5 } },
    },
    {
      name    = "a label outside the enum is dead-lettered",
      records = { { review_id = 3, summary = "Hmm", score = 3 } },
      answer  = "mixed",
      dead    = { { stage = "model", reason = "invalid answer" } },
    },
  },
}
