-- jobs/review_rating_gemini.lua: rate reviews with Gemini (the Gemini API, an API key),
-- structured output through responseSchema.
--   GEMINI_API_KEY=... runnel run jobs/review_rating_gemini.lua \
--     --set endpoint=https://generativelanguage.googleapis.com/v1beta
local reviews = source.csv {
  path   = param("input", "data/reviews_sample.csv"),
  select = { review_id = "Id", product_id = "ProductId", summary = "Summary", score = "Score" },
  types  = { review_id = "integer", score = "integer" },
}

local rater = model.gemini {
  endpoint    = param("endpoint", env("GEMINI_BASE_URL", "http://127.0.0.1:8089/v1beta")),
  api_key     = secret("GEMINI_API_KEY"),
  model       = param("model", "gemini-2.0-flash"),
  temperature = 0,
  system      = "Rate the product review from 1 (very negative) to 5 (very positive).",
  prompt      = "Review title: {{summary}}",
  output      = { rating = { type = "integer", min = 1, max = 5 } },
  limits      = { concurrency = 16, timeout = "30s", retries = 5 },
  price       = { input = 0.10, output = 0.40 },
}

return job {
  name     = "product_ratings_gemini",
  source   = reviews,
  filter   = function(r) return r.summary ~= "" end,
  predict  = rater,
  evaluate = { truth = "score", predicted = "rating" },
  map      = function(r) return { review_id = r.review_id, product_id = r.product_id, rating = r.rating, score = r.score } end,
  sinks    = { sink.jsonl { path = param("output", "out/product_ratings_gemini.jsonl") } },
  errors   = sink.jsonl { path = param("errors", "out/product_ratings_gemini.errors.jsonl") },
}
