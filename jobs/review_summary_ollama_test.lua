-- jobs/review_summary_ollama_test.lua: the cases `runnel test jobs/review_summary_ollama.lua` runs (README: Testing a job).
return {
  cases = {
    {
      name    = "the summary replaces the text",
      records = { { review_id = 1, text = "I bought this for my dog and he loves it, will buy again." } },
      answer  = "Dog loves it; will buy again.",
      prompts = { "I bought this for my dog and he loves it, will buy again." },
      written = { { review_id = 1, summary = "Dog loves it; will buy again." } },
    },
    {
      name     = "an empty text is filtered",
      records  = { { review_id = 2, text = "" } },
      filtered = 1,
    },
  },
}
