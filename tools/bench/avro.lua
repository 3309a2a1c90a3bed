-- bench case avro: one job for both directions and both formats, so Avro and JSON differ only in
-- the format. Kafka topic param("in") in param("in_format") -> map -> either param("out") in
-- param("out_format") (encode), or, without out, sink.lua doing nothing (decode: what is left is
-- the source, its format and the map), or JSONL at param("output") when jsonl = "1" (the check
-- that both topics decode to the same records). Batch mode, no group: every run reads the whole topic.
local in_fmt, out_fmt, out = param("in_format"), param("out_format", "json"), param("out", "")
local registry = { url = env("SCHEMA_REGISTRY_URL") }
local sinks
if out ~= "" then
  sinks = sink.kafka { brokers = env("KAFKA_BROKERS"), topic = out, key = "product_id", format = out_fmt,
                       schema = out_fmt == "avro" and "jobs/review.avsc" or nil,
                       registry = out_fmt == "avro" and registry or nil }
elseif param("jsonl", "") == "1" then
  sinks = sink.jsonl { path = param("output"), fsync = false }
else
  sinks = sink.lua { write = function() end }
end
return job {
  name = "bench_avro",
  source = source.kafka { brokers = env("KAFKA_BROKERS"), topic = param("in"), format = in_fmt, metadata = false,
                          registry = in_fmt == "avro" and registry or nil,
                          columns = in_fmt == "json" and { "review_id", "product_id", "user_id", "timestamp", "summary",
                                                           "score" } or nil },
  map = function(r) return r end,
  sinks = sinks,
  errors = sink.jsonl { path = param("output") .. ".errors" },
}
