-- bench cases 2, 3, 5 and adaptive concurrency: CSV -> model -> JSONL
local concurrency = param("concurrency", "64")
return job {
  name = "bench_model",
  window = 8192,
  source = source.csv { path = param("input"), select = { id = "Id", summary = "Summary" },
                        types = { id = "integer" } },
  filter = function(r) return r.summary ~= "" end,
  predict = model.openai {
    endpoint = env("OPENAI_BASE_URL"), model = "gpt-4o-mini", cache = false,
    system = "Rate the product review from 1 (very negative) to 5 (very positive). Answer with the number only.",
    prompt = "Review title: {{summary}}",
    output = { rating = { type = "integer", min = 1, max = 5 } },
    limits = { concurrency = tonumber(concurrency) or concurrency, retries = 10 },
  },
  map = function(r) return { id = r.id, rating = r.rating } end,
  sinks = sink.jsonl { path = param("output") },
  errors = sink.jsonl { path = param("output") .. ".errors" },
}
