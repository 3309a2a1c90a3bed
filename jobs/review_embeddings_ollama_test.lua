-- jobs/review_embeddings_ollama_test.lua: the cases `runnel test jobs/review_embeddings_ollama.lua` runs (README: Testing a job).
return {
  cases = {
    {
      name    = "the embedding is kept with the review",
      records = { { review_id = 1, summary = "Great tea" } },
      answer  = { 0.25, -0.5, 1 },
      prompts = { "Great tea" },
      written = { { review_id = 1, embedding = { 0.25, -0.5, 1 } } },
    },
    {
      name     = "an empty summary is filtered",
      records  = { { review_id = 2, summary = "" } },
      filtered = 1,
    },
  },
}
