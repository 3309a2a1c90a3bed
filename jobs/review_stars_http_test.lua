-- jobs/review_stars_http_test.lua: the cases `runnel test jobs/review_stars_http.lua` runs (README: Testing a job).
return {
  cases = {
    {
      name    = "the estimate becomes stars",
      records = { { review_id = 1, summary = "Pretty good", score = 4 } },
      answer  = 4.5,
      written = { { review_id = 1, stars = 4.5, score = 4 } },
    },
    {
      name    = "an estimate above 5 is dead-lettered",
      records = { { review_id = 2, summary = "Wow", score = 5 } },
      answer  = 6.5,
      dead    = { { stage = "model", reason = "invalid answer" } },
    },
  },
}
