-- bench case 1: CSV -> filter/map -> JSONL, no model
return job {
  name = "bench_csv",
  source = source.csv { path = param("input"),
                        select = { id = "Id", product_id = "ProductId", score = "Score", summary = "Summary" },
                        types = { id = "integer", score = "integer" } },
  filter = function(r) return r.score ~= nil end,
  map = function(r) return { id = r.id, product_id = r.product_id, score = r.score, summary = r.summary } end,
  sinks = sink.jsonl { path = param("output") },
  errors = sink.jsonl { path = param("output") .. ".errors" },
}
