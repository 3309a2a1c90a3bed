-- jobs/review_rating.lua: rate product reviews 1..5 with an LLM (the seed use case).
-- Runs against any OpenAI-compatible endpoint: OPENAI_BASE_URL and OPENAI_API_KEY.
--   make demo                       (starts tools/model-server and runs this job)
--   OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=sk-... runnel run jobs/review_rating.lua
local reviews = source.csv {
  path   = param("input", "data/reviews_sample.csv"),
  header = true,                               -- Amazon Fine Food Reviews layout
  select = { review_id = "Id", product_id = "ProductId", user_id = "UserId",
             timestamp = "Time", summary = "Summary", score = "Score" },
  types  = { review_id = "integer", timestamp = "integer", score = "integer" },
}

local rater = model.openai {
  endpoint = env("OPENAI_BASE_URL", "http://127.0.0.1:8089/v1"),
  api_key  = secret("OPENAI_API_KEY"),         -- never printed, never logged
  model    = param("model", "gpt-4o-mini"),
  api      = param("api", "chat"),             -- or "responses": OpenAI's Responses API, same ratings
  task     = "classification",
  system   = "Rate the product review from 1 (very negative) to 5 (very positive). Answer with the number only.",
  prompt   = "Review title: {{summary}}",
  output   = { rating = { type = "integer", min = 1, max = 5 } },
  limits   = { concurrency = 64, timeout = "30s", retries = 5 },  -- add rpm/tpm for a real account
  price    = { input = 0.15, output = 0.60 },  -- USD per million tokens, for the cost estimate
}

return job {
  name     = "product_ratings",
  source   = reviews,
  filter   = function(r) return r.summary ~= "" end,
  predict  = rater,                             -- adds r.rating
  evaluate = { truth = "score", predicted = "rating" },
  map      = function(r)
    return { review_id = r.review_id, product_id = r.product_id, summary = r.summary,
             rating = r.rating, score = r.score }
  end,
  sinks    = { sink.jsonl { path = param("output", "out/product_ratings.jsonl") } },
  errors   = sink.jsonl { path = param("errors", "out/product_ratings.errors.jsonl") },
}
