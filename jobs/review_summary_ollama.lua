-- jobs/review_summary_ollama.lua: summarize review texts with a local model on Ollama
-- (task text_generation; the native /api/chat, no key).
--   ollama pull llama3.2 && runnel run jobs/review_summary_ollama.lua --set endpoint=http://127.0.0.1:11434
local reviews = source.csv {
  path   = param("input", "data/reviews_sample.csv"),
  select = { review_id = "Id", text = "Text" },
  types  = { review_id = "integer" },
}

local summarizer = model.ollama {
  endpoint    = param("endpoint", env("OLLAMA_HOST", "http://127.0.0.1:8089")),
  model       = param("model", "llama3.2"),
  task        = "text_generation",
  system      = "Summarize the review in at most eight words.",
  prompt      = "{{text}}",
  temperature = 0,
  max_tokens  = 32,
  keep_alive  = "10m",
  limits      = { concurrency = 4, timeout = "120s", retries = 5 },
}

return job {
  name    = "review_summaries_ollama",
  source  = reviews,
  filter  = function(r) return r.text ~= "" end,
  predict = summarizer,                           -- adds r.text (the summary) over the input text
  map     = function(r) return { review_id = r.review_id, summary = r.text } end,
  sinks   = { sink.jsonl { path = param("output", "out/review_summaries_ollama.jsonl") } },
  errors  = sink.jsonl { path = param("errors", "out/review_summaries_ollama.errors.jsonl") },
}
