-- jobs/review_rating_bedrock.lua: rate reviews on Amazon Bedrock (the Converse API), every
-- request signed with SigV4 from the standard AWS environment (AWS_ACCESS_KEY_ID,
-- AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION), or with a Bedrock API key
-- (AWS_BEARER_TOKEN_BEDROCK).
--   AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... \
--     runnel run jobs/review_rating_bedrock.lua --set endpoint=https://bedrock-runtime.us-east-1.amazonaws.com
local reviews = source.csv {
  path   = param("input", "data/reviews_sample.csv"),
  select = { review_id = "Id", product_id = "ProductId", summary = "Summary", score = "Score" },
  types  = { review_id = "integer", score = "integer" },
}

local rater = model.bedrock {
  region     = env("AWS_REGION", "us-east-1"),
  endpoint   = param("endpoint", env("BEDROCK_ENDPOINT", "http://127.0.0.1:8089")),
  model      = param("model", "anthropic.claude-3-haiku-20240307-v1:0"),
  max_tokens = 64,
  system     = "Rate the product review from 1 (very negative) to 5 (very positive).",
  prompt     = "Review title: {{summary}}",
  output     = { rating = { type = "integer", min = 1, max = 5 } },   -- through toolConfig
  limits     = { concurrency = 16, timeout = "60s", retries = 5 },
  price      = { input = 0.25, output = 1.25 },
}

return job {
  name     = "product_ratings_bedrock",
  source   = reviews,
  filter   = function(r) return r.summary ~= "" end,
  predict  = rater,
  evaluate = { truth = "score", predicted = "rating" },
  map      = function(r) return { review_id = r.review_id, product_id = r.product_id, rating = r.rating, score = r.score } end,
  sinks    = { sink.jsonl { path = param("output", "out/product_ratings_bedrock.jsonl") } },
  errors   = sink.jsonl { path = param("errors", "out/product_ratings_bedrock.errors.jsonl") },
}
