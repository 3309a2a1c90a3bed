-- bench case embed: CSV -> model.openai embeddings -> JSONL, batch_inputs from the command line
-- (1: a request per record; 32: up to 32 records' inputs in one request)
return job {
  name = "bench_embed",
  source = source.csv { path = param("input"), select = { id = "Id", summary = "Summary" },
                        types = { id = "integer" } },
  filter = function(r) return r.summary ~= "" end,
  predict = model.openai {
    endpoint = env("OPENAI_BASE_URL"), model = "text-embedding-3-small", cache = false,
    task = "embedding", prompt = "{{summary}}", batch_inputs = tonumber(param("batch", "32")),
    limits = { concurrency = tonumber(param("concurrency", "64")), retries = 10 },
  },
  map = function(r) return { id = r.id, embedding = r.embedding } end,
  sinks = sink.jsonl { path = param("output") },
  errors = sink.jsonl { path = param("output") .. ".errors" },
}
