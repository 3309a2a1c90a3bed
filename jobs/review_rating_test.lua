-- jobs/review_rating_test.lua: the cases `runnel test jobs/review_rating.lua` runs (README: Testing a job).
return {
  cases = {
    {
      name    = "rates a review and keeps its fields",
      records = { { review_id = 1, product_id = "B001", user_id = "U1", timestamp = 1329868800,
                    summary = "Great coffee", score = 5 } },
      answer  = "5",
      prompts = { "Review title: Great coffee" },
      written = { { review_id = 1, product_id = "B001", summary = "Great coffee", rating = 5, score = 5 } },
    },
    {
      name     = "an empty summary is filtered",
      records  = { { review_id = 2, product_id = "B002", summary = "", score = 1 } },
      filtered = 1,
      written  = {},
    },
    {
      name    = "an answer out of range is dead-lettered after the correction round",
      records = { { review_id = 3, product_id = "B003", summary = "Meh", score = 3 } },
      answer  = function(prompt, call) return call.correction and "seven" or "7" end,
      dead    = { { stage = "model", reason = "invalid answer" } },
    },
    {
      name    = "answers keyed by review_id, over the sample file",
      fixture = "../data/reviews_sample.csv",
      answer  = function(prompt, call) return tostring(call.record.score) end,
      written = function(records)
        for _, r in ipairs(records) do
          if r.rating ~= r.score then return false, "review " .. r.review_id .. " rated " .. r.rating end
        end
        return #records > 0, "no records"
      end,
    },
  },
}
