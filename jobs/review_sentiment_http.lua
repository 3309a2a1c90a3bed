-- jobs/review_sentiment_http.lua: a sentiment classifier behind plain HTTP (a SageMaker-style
-- endpoint, a PyTorch or scikit-learn service): the body from the record, the label picked
-- from the answer by a JSON pointer; the key in a header.
--   MODEL_URL=https://HOST/endpoints/sentiment/invocations MODEL_API_KEY=... runnel run jobs/review_sentiment_http.lua
local reviews = source.csv {
  path   = param("input", "data/reviews_sample.csv"),
  select = { review_id = "Id", summary = "Summary", score = "Score" },
  types  = { review_id = "integer", score = "integer" },
}

local classifier = model.http {
  url     = env("MODEL_URL", "http://127.0.0.1:8089/endpoints/sentiment/invocations"),
  headers = { ["X-Api-Key"] = secret("MODEL_API_KEY") },
  body    = '{"instances": [{"text": {{summary}}}]}',
  answer  = "/predictions/0/label",
  output  = { sentiment = { type = "string", enum = { "negative", "neutral", "positive" } } },
  limits  = { concurrency = 16, timeout = "10s" },
}

return job {
  name    = "review_sentiment_http",
  source  = reviews,
  filter  = function(r) return r.summary ~= "" end,
  predict = classifier,                              -- adds r.sentiment
  map     = function(r) return { review_id = r.review_id, sentiment = r.sentiment, score = r.score } end,
  sinks   = { sink.jsonl { path = param("output", "out/review_sentiment_http.jsonl") } },
  errors  = sink.jsonl { path = param("errors", "out/review_sentiment_http.errors.jsonl") },
}
