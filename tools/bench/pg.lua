-- tools/bench/pg.lua: the bench's PostgreSQL case (tools/bench.sh, case pg): every column of the
-- generated CSV upserted into one table, batches of 500 rows.
param("output", "") -- run_job passes every case an output file; this case writes none
return job {
  name   = "bench_pg",
  source = source.csv { path = param("input"),
                        types = { Id = "integer", HelpfulnessNumerator = "integer", HelpfulnessDenominator = "integer",
                                  Score = "integer", Time = "integer" } },
  sinks  = { sink.postgres { conninfo = param("conninfo"), table = param("table"), key = "Id",
                             columns = { Id = "bigint", ProductId = "text", UserId = "text", ProfileName = "text",
                                         HelpfulnessNumerator = "integer", HelpfulnessDenominator = "integer",
                                         Score = "integer", Time = "bigint", Summary = "text", Text = "text" },
                             batch = { rows = 500 } } },
}
