-- jobs/review_embeddings_ollama.lua: an embedding per review title (task embedding, Ollama's
-- /api/embed), for a vector index or for jobs/review_clusters.lua's centroids. batch_inputs sends
-- up to 32 reviews' inputs in one request (as many as are ready); 1 sends one request per review.
--   ollama pull nomic-embed-text && runnel run jobs/review_embeddings_ollama.lua --set endpoint=http://127.0.0.1:11434
local reviews = source.csv {
  path   = param("input", "data/reviews_sample.csv"),
  select = { review_id = "Id", summary = "Summary" },
  types  = { review_id = "integer" },
}

local embedder = model.ollama {
  endpoint = param("endpoint", env("OLLAMA_HOST", "http://127.0.0.1:8089")),
  model    = param("model", "nomic-embed-text"),
  task     = "embedding",
  prompt   = "{{summary}}",
  batch_inputs = tonumber(param("batch_inputs", "32")),
  limits   = { concurrency = 8, timeout = "60s" },
}

return job {
  name    = "review_embeddings_ollama",
  source  = reviews,
  filter  = function(r) return r.summary ~= "" end,
  predict = embedder,                               -- adds r.embedding
  map     = function(r) return { review_id = r.review_id, embedding = r.embedding } end,
  sinks   = { sink.jsonl { path = param("output", "out/review_embeddings_ollama.jsonl") } },
  errors  = sink.jsonl { path = param("errors", "out/review_embeddings_ollama.errors.jsonl") },
}
