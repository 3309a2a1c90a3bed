-- jobs/review_sentiment_sagemaker_test.lua: the cases `runnel test jobs/review_sentiment_sagemaker.lua` runs
-- (README: Testing a job).
return {
  -- SigV4 signs with keys and a region; these are no account's (a test sends nothing)
  env   = { AWS_ACCESS_KEY_ID = "AKIDEXAMPLE", AWS_SECRET_ACCESS_KEY = "EXAMPLEKEY", AWS_REGION = "us-east-1" },
  cases = {
    {
      name    = "the endpoint's label becomes the sentiment",
      records = { { review_id = 1, summary = "Stale and bitter", score = 1 } },
      answer  = "negative",
      written = { { review_id = 1, sentiment = "negative", score = 1 } },
    },
    {
      name     = "an empty summary is filtered",
      records  = { { review_id = 2, summary = "", score = 3 } },
      filtered = 1,
    },
    {
      name    = "a label outside the enum is dead-lettered",
      records = { { review_id = 3, summary = "Hmm", score = 3 } },
      answer  = "sarcastic",
      dead    = { { stage = "model", reason = "invalid answer" } },
    },
  },
}
