-- jobs/review_clusters_test.lua: the cases `runnel test jobs/review_clusters.lua` runs (README: Testing a job).
return {
  cases = {
    {
      name    = "each review goes to the nearest centroid",
      records = { { review_id = 1, summary = "Love it" }, { review_id = 2, summary = "Broken on arrival" } },
      answer  = { by = "summary", answers = { ["Love it"]           = { 0.5, 0.5, 0.5, 0.5, 0, 0, 0, 0 },
                                              ["Broken on arrival"] = { -0.4, -0.6, 0, 0, 0.5, 0.4, 0, 0 } } },
      prompts = { "Love it", "Broken on arrival" },
      written = { { review_id = 1, topic = "praise" }, { review_id = 2, topic = "complaint" } },
    },
    {
      name    = "an embedding of the wrong length is dead-lettered",
      records = { { review_id = 3, summary = "Fine" } },
      answer  = { 1, 0 },
      dead    = { { stage = "model" } },
    },
    {
      name     = "an empty summary is filtered",
      records  = { { review_id = 4, summary = "" } },
      filtered = 1,
    },
  },
}
