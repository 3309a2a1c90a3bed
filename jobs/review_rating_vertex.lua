-- jobs/review_rating_vertex.lua: rate reviews with Gemini on Vertex AI, with tokens made from
-- a service-account key file and refreshed before they expire (GOOGLE_APPLICATION_CREDENTIALS
-- or --set credentials=key.json), or a given token (token = secret("VERTEX_TOKEN")).
--   GOOGLE_APPLICATION_CREDENTIALS=key.json runnel run jobs/review_rating_vertex.lua \
--     --set project=my-project --set endpoint=https://us-central1-aiplatform.googleapis.com/v1
local reviews = source.csv {
  path   = param("input", "data/reviews_sample.csv"),
  select = { review_id = "Id", product_id = "ProductId", summary = "Summary", score = "Score" },
  types  = { review_id = "integer", score = "integer" },
}

local rater = model.vertex {
  project     = param("project", env("GOOGLE_CLOUD_PROJECT", "runnel-demo")),
  location    = param("location", "us-central1"),
  endpoint    = param("endpoint", env("VERTEX_ENDPOINT", "http://127.0.0.1:8089/v1")),
  credentials = param("credentials", env("GOOGLE_APPLICATION_CREDENTIALS", "key.json")),
  model       = param("model", "gemini-2.0-flash"),
  system      = "Rate the product review from 1 (very negative) to 5 (very positive).",
  prompt      = "Review title: {{summary}}",
  output      = { rating = { type = "integer", min = 1, max = 5 } },
  limits      = { concurrency = 16, timeout = "30s", retries = 5 },
  price       = { input = 0.15, output = 0.60 },
}

return job {
  name     = "product_ratings_vertex",
  source   = reviews,
  filter   = function(r) return r.summary ~= "" end,
  predict  = rater,
  evaluate = { truth = "score", predicted = "rating" },
  map      = function(r) return { review_id = r.review_id, product_id = r.product_id, rating = r.rating, score = r.score } end,
  sinks    = { sink.jsonl { path = param("output", "out/product_ratings_vertex.jsonl") } },
  errors   = sink.jsonl { path = param("errors", "out/product_ratings_vertex.errors.jsonl") },
}
