-- jobs/reviews_clean.lua: clean the review CSV into JSON Lines, no model involved.
-- Drops reviews without a summary, decodes HTML in the text, adds a helpfulness ratio.
--   runnel run jobs/reviews_clean.lua --set input=data/reviews_sample.csv --set output=out/reviews_clean.jsonl
local text = require("runnel.text")

local reviews = source.csv {
  path   = param("input", "data/reviews_sample.csv"),
  header = true,
  select = { review_id = "Id", product_id = "ProductId", user_id = "UserId", score = "Score",
             helpful = "HelpfulnessNumerator", votes = "HelpfulnessDenominator",
             timestamp = "Time", summary = "Summary", text = "Text" },
  types  = { review_id = "integer", score = "integer", helpful = "integer", votes = "integer",
             timestamp = "integer" },
}

return job {
  name   = "reviews_clean",
  source = reviews,
  filter = function(r) return r.summary ~= "" end,
  map    = function(r)
    return {
      review_id   = r.review_id,
      product_id  = r.product_id,
      user_id     = r.user_id,
      score       = r.score,
      helpfulness = r.votes > 0 and r.helpful / r.votes or nil,
      timestamp   = r.timestamp,
      summary     = text.squish(text.strip_html(r.summary)),
      text        = text.truncate(text.squish(text.strip_html(r.text)), 280),
      words       = text.word_count(r.text),
    }
  end,
  sinks  = { sink.jsonl { path = param("output", "out/reviews_clean.jsonl") } },
  errors = sink.jsonl { path = param("errors", "out/reviews_clean.errors.jsonl") },
}
