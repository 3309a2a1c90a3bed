-- jobs/review_rating_azure.lua: jobs/review_rating.lua on an Azure OpenAI deployment.
-- The resource's URL from AZURE_OPENAI_ENDPOINT, its key from AZURE_OPENAI_API_KEY (or an
-- Entra ID token: token = secret("AZURE_OPENAI_TOKEN") instead of api_key).
--   AZURE_OPENAI_ENDPOINT=https://NAME.openai.azure.com AZURE_OPENAI_API_KEY=... \
--     runnel run jobs/review_rating_azure.lua --set deployment=gpt-4o-mini
local reviews = source.csv {
  path   = param("input", "data/reviews_sample.csv"),
  select = { review_id = "Id", product_id = "ProductId", summary = "Summary", score = "Score" },
  types  = { review_id = "integer", score = "integer" },
}

local rater = model.azure_openai {
  endpoint    = env("AZURE_OPENAI_ENDPOINT", "http://127.0.0.1:8089"),
  api_key     = secret("AZURE_OPENAI_API_KEY"),
  deployment  = param("deployment", "gpt-4o-mini"),
  api_version = param("api_version", "2024-10-21"),   -- "v1": the /openai/v1/ API
  system      = "Rate the product review from 1 (very negative) to 5 (very positive). Answer with the number only.",
  prompt      = "Review title: {{summary}}",
  output      = { rating = { type = "integer", min = 1, max = 5 } },
  structured  = false,
  limits      = { concurrency = 32, timeout = "30s", retries = 5 },
  price       = { input = 0.15, output = 0.60 },
}

return job {
  name     = "product_ratings_azure",
  source   = reviews,
  filter   = function(r) return r.summary ~= "" end,
  predict  = rater,
  evaluate = { truth = "score", predicted = "rating" },
  map      = function(r) return { review_id = r.review_id, product_id = r.product_id, rating = r.rating, score = r.score } end,
  sinks    = { sink.jsonl { path = param("output", "out/product_ratings_azure.jsonl") } },
  errors   = sink.jsonl { path = param("errors", "out/product_ratings_azure.errors.jsonl") },
}
