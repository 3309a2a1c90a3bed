-- jobs/review_stars_http.lua: regression through model.http: a model that estimates a
-- review's star rating as a number, the body made by a Lua function from the record.
--   MODEL_URL=https://HOST/endpoints/stars/invocations MODEL_API_KEY=... runnel run jobs/review_stars_http.lua
local reviews = source.csv {
  path   = param("input", "data/reviews_sample.csv"),
  select = { review_id = "Id", summary = "Summary", score = "Score" },
  types  = { review_id = "integer", score = "integer" },
}

local estimator = model.http {
  url     = env("MODEL_URL", "http://127.0.0.1:8089/endpoints/stars/invocations"),
  headers = { ["X-Api-Key"] = secret("MODEL_API_KEY") },
  task    = "regression",
  body    = function(r) return { instances = { { text = r.summary } } } end,
  answer  = "/predictions/0/stars",
  output  = { stars = { type = "number", min = 1, max = 5 } },
  limits  = { concurrency = 16, timeout = "10s" },
}

return job {
  name     = "review_stars_http",
  source   = reviews,
  filter   = function(r) return r.summary ~= "" end,
  predict  = estimator,                              -- adds r.stars
  evaluate = { truth = "score", predicted = "stars" },
  map      = function(r) return { review_id = r.review_id, stars = r.stars, score = r.score } end,
  sinks    = { sink.jsonl { path = param("output", "out/review_stars_http.jsonl") } },
  errors   = sink.jsonl { path = param("errors", "out/review_stars_http.errors.jsonl") },
}
