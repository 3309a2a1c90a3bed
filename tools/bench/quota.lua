-- bench case quota: CSV -> model at the provider's quota -> JSONL. With --set rpm=N --set tpm=N
-- the limits are declared; without, runnel learns them from the answers' x-ratelimit-* headers.
local rpm, tpm = tonumber(param("rpm", "0")), tonumber(param("tpm", "0"))
return job {
  name = "bench_quota",
  source = source.csv { path = param("input"), select = { id = "Id", summary = "Summary" },
                        types = { id = "integer" } },
  filter = function(r) return r.summary ~= "" end,
  predict = model.openai {
    endpoint = env("OPENAI_BASE_URL"), model = "gpt-4o-mini", cache = false, max_tokens = 16,
    system = "Rate the product review from 1 (very negative) to 5 (very positive). Answer with the number only.",
    prompt = "Review title: {{summary}}",
    output = { rating = { type = "integer", min = 1, max = 5 } },
    limits = { concurrency = 64, retries = 10, rpm = rpm > 0 and rpm or nil, tpm = tpm > 0 and tpm or nil },
  },
  map = function(r) return { id = r.id, rating = r.rating } end,
  sinks = sink.jsonl { path = param("output") },
  errors = sink.jsonl { path = param("output") .. ".errors" },
}
