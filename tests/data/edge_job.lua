-- edge cases of source.csv: BOM, CRLF, quoted commas, doubled quotes, newlines in fields,
-- empty values, spaces kept
return job {
  name   = "edge",
  source = source.csv { path = param("input"), types = { Id = "integer", Score = "integer" } },
  sinks  = { sink.jsonl { path = param("output") } },
}
