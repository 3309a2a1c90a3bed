-- jobs/review_clusters.lua: put each review in the nearest of three clusters (task clustering
-- over the job's centroids): the title's embedding from Ollama, then the centroid nearest to
-- it by cosine similarity. Centroids come from wherever the job's author made them (k-means
-- over jobs/review_embeddings_ollama.lua's output, say); these are 8-dimensional, like the
-- model server's embeddings.
--   runnel run jobs/review_clusters.lua --set endpoint=http://127.0.0.1:11434 --set model=nomic-embed-text
local reviews = source.csv {
  path   = param("input", "data/reviews_sample.csv"),
  select = { review_id = "Id", summary = "Summary" },
  types  = { review_id = "integer" },
}

local clusters = model.ollama {
  endpoint  = param("endpoint", env("OLLAMA_HOST", "http://127.0.0.1:8089")),
  model     = param("model", "nomic-embed-text"),
  task      = "clustering",
  prompt    = "{{summary}}",
  centroids = {
    praise    = { 0.5, 0.5, 0.5, 0.5, 0, 0, 0, 0 },
    complaint = { -0.5, -0.5, 0, 0, 0.5, 0.5, 0, 0 },
    other     = { 0, 0, -0.5, 0.5, 0, 0, 0.5, -0.5 },
  },
  output    = { topic = "string" },
  limits    = { concurrency = 8, timeout = "60s" },
}

return job {
  name    = "review_clusters",
  source  = reviews,
  filter  = function(r) return r.summary ~= "" end,
  predict = clusters,                               -- adds r.topic: praise, complaint or other
  map     = function(r) return { review_id = r.review_id, topic = r.topic } end,
  sinks   = { sink.jsonl { path = param("output", "out/review_clusters.jsonl") } },
  errors  = sink.jsonl { path = param("errors", "out/review_clusters.errors.jsonl") },
}
