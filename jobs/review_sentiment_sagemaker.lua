-- jobs/review_sentiment_sagemaker.lua: a sentiment classifier on an Amazon SageMaker endpoint,
-- POST /endpoints/{name}/invocations, every attempt signed with AWS SigV4 (service sagemaker)
-- with the credentials of the standard AWS environment.
--   AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... \
--   MODEL_URL=https://runtime.sagemaker.us-east-1.amazonaws.com/endpoints/sentiment/invocations \
--     runnel run jobs/review_sentiment_sagemaker.lua
local reviews = source.csv {
  path   = param("input", "data/reviews_sample.csv"),
  select = { review_id = "Id", summary = "Summary", score = "Score" },
  types  = { review_id = "integer", score = "integer" },
}

local classifier = model.http {
  url    = env("MODEL_URL", "http://127.0.0.1:8089/endpoints/sentiment/invocations"),
  auth   = { sigv4 = { service = "sagemaker" } },       -- region from AWS_REGION
  body   = '{"instances": [{"text": {{summary}}}]}',
  answer = "/predictions/0/label",
  output = { sentiment = { type = "string", enum = { "negative", "neutral", "positive" } } },
  limits = { concurrency = 16, timeout = "10s" },
}

return job {
  name    = "review_sentiment_sagemaker",
  source  = reviews,
  filter  = function(r) return r.summary ~= "" end,
  predict = classifier,                              -- adds r.sentiment
  map     = function(r) return { review_id = r.review_id, sentiment = r.sentiment, score = r.score } end,
  sinks   = { sink.jsonl { path = param("output", "out/review_sentiment_sagemaker.jsonl") } },
  errors  = sink.jsonl { path = param("errors", "out/review_sentiment_sagemaker.errors.jsonl") },
}
