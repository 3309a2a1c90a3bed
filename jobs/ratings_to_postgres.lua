-- jobs/ratings_to_postgres.lua: rate product reviews 1..5 with an LLM into a PostgreSQL table,
-- one row per review (a rerun overwrites its rows: upserts on review_id).
--   PG_URL="host=/var/run/postgresql dbname=reviews" runnel run jobs/ratings_to_postgres.lua
--   (OPENAI_BASE_URL and OPENAI_API_KEY as for jobs/review_rating.lua; `make demo` starts a stand-in)
local reviews = source.csv {
  path   = param("input", "data/reviews_sample.csv"),
  header = true,
  select = { review_id = "Id", product_id = "ProductId", timestamp = "Time", summary = "Summary", score = "Score" },
  types  = { review_id = "integer", timestamp = "integer", score = "integer" },
}

local rater = model.openai {
  endpoint = env("OPENAI_BASE_URL", "http://127.0.0.1:8089/v1"),
  api_key  = secret("OPENAI_API_KEY"),
  model    = param("model", "gpt-4o-mini"),
  task     = "classification",
  system   = "Rate the product review from 1 (very negative) to 5 (very positive). Answer with the number only.",
  prompt   = "Review title: {{summary}}",
  output   = { rating = { type = "integer", min = 1, max = 5 } },
  limits   = { concurrency = 64, timeout = "30s", retries = 5 },
}

local ratings_table = require("lib.ratings_table")

return job {
  name    = "ratings_to_postgres",
  source  = reviews,
  filter  = function(r) return r.summary ~= "" end,
  predict = rater,
  map     = ratings_table.row,
  sinks   = { ratings_table.sink() },
  errors  = sink.jsonl { path = param("errors", "out/ratings_to_postgres.errors.jsonl") },
}
