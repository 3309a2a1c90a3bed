-- jobs/review_rating_anthropic.lua: rate reviews with Claude through the Messages API.
-- The rating comes back through a forced tool whose input schema is `output`; the system
-- prompt is cached (prompt_cache), so later calls read it at the cache price.
--   ANTHROPIC_API_KEY=sk-ant-... runnel run jobs/review_rating_anthropic.lua \
--     --set endpoint=https://api.anthropic.com
local reviews = source.csv {
  path   = param("input", "data/reviews_sample.csv"),
  select = { review_id = "Id", product_id = "ProductId", summary = "Summary", score = "Score" },
  types  = { review_id = "integer", score = "integer" },
}

local rater = model.anthropic {
  endpoint     = param("endpoint", env("ANTHROPIC_BASE_URL", "http://127.0.0.1:8089")),
  api_key      = secret("ANTHROPIC_API_KEY"),
  model        = param("model", "claude-3-5-haiku-20241022"),
  max_tokens   = 64,
  prompt_cache = true,
  system       = "You rate product reviews from 1 (very negative) to 5 (very positive).",
  prompt       = "Review title: {{summary}}",
  output       = { rating = { type = "integer", min = 1, max = 5, description = "the review's sentiment" } },
  limits       = { concurrency = 16, timeout = "60s", retries = 5 },
  price        = { input = 0.80, output = 4.00, cache_read = 0.08, cache_write = 1.00 },
}

return job {
  name     = "product_ratings_anthropic",
  source   = reviews,
  filter   = function(r) return r.summary ~= "" end,
  predict  = rater,
  evaluate = { truth = "score", predicted = "rating" },
  map      = function(r) return { review_id = r.review_id, product_id = r.product_id, rating = r.rating, score = r.score } end,
  sinks    = { sink.jsonl { path = param("output", "out/product_ratings_anthropic.jsonl") } },
  errors   = sink.jsonl { path = param("errors", "out/product_ratings_anthropic.errors.jsonl") },
}
