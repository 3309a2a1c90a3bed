-- jobs/review_rating_batch.lua: the review rating of jobs/review_rating.lua through OpenAI's batch
-- API, at half the price: for a bounded history job that can wait for its answers (within 24 h).
--   bin/model-server --port 8089 --batch-speed 1000 &   (its batches finish in seconds)
--   runnel run jobs/review_rating_batch.lua
--   OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=sk-... runnel run jobs/review_rating_batch.lua
-- A killed run continues with --resume: it polls the batches it made instead of paying again.
local reviews = source.csv {
  path   = param("input", "data/reviews_sample.csv"),
  select = { review_id = "Id", product_id = "ProductId", summary = "Summary", score = "Score" },
  types  = { review_id = "integer", score = "integer" },
}

local rater = model.openai {
  endpoint = env("OPENAI_BASE_URL", "http://127.0.0.1:8089/v1"),
  api_key  = secret("OPENAI_API_KEY"),
  model    = param("model", "gpt-4o-mini"),
  system   = "Rate the product review from 1 (very negative) to 5 (very positive). Answer with the number only.",
  prompt   = "Review title: {{summary}}",
  output   = { rating = { type = "integer", min = 1, max = 5 } },
  price    = { input = 0.15, output = 0.60 },  -- the live price; batch answers cost half of it
  batch    = { max_requests = tonumber(param("max_requests", "50000")), poll = param("poll", "30s") },
}

return job {
  name     = "product_ratings_batch",
  source   = reviews,
  filter   = function(r) return r.summary ~= "" end,
  predict  = rater,
  evaluate = { truth = "score", predicted = "rating" },
  map      = function(r) return { review_id = r.review_id, product_id = r.product_id, rating = r.rating } end,
  sinks    = { sink.jsonl { path = param("output", "out/product_ratings_batch.jsonl") } },
  errors   = sink.jsonl { path = param("errors", "out/product_ratings_batch.errors.jsonl") },
}
