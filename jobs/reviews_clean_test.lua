-- jobs/reviews_clean_test.lua: the cases `runnel test jobs/reviews_clean.lua` runs (README: Testing a job).
return {
  cases = {
    {
      name    = "HTML stripped, spaces squished, helpfulness and words counted",
      records = { { review_id = 1, product_id = "B1", user_id = "U1", score = 5, helpful = 1, votes = 4,
                    timestamp = 1329868800, summary = "  Great <b>tea</b> ", text = "Very  good<br />tea" } },
      written = { { review_id = 1, product_id = "B1", user_id = "U1", score = 5, helpfulness = 0.25,
                    timestamp = 1329868800, summary = "Great tea", text = "Very good tea", words = 3 } },
    },
    {
      name    = "no votes: no helpfulness",
      records = { { review_id = 2, product_id = "B2", user_id = "U2", score = 3, helpful = 0, votes = 0,
                    timestamp = 1, summary = "Ok", text = "ok" } },
      written = { function(r) return r.helpfulness == nil, "helpfulness is set" end },
    },
    {
      name     = "an empty summary is filtered",
      records  = { { review_id = 3, summary = "", text = "x", votes = 0, helpful = 0 } },
      filtered = 1,
    },
    {
      name    = "the sample file, as the job reads it",
      fixture = "../data/reviews_sample.csv",
      written = function(records) return #records > 0, "nothing written" end,
    },
  },
}
