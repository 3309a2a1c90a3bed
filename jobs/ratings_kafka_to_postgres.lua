-- jobs/ratings_kafka_to_postgres.lua: land the ratings of the topic product_ratings in a
-- PostgreSQL table, one row per review (upserts on review_id, so a replay overwrites instead of
-- adding rows twice). A sink connector, as jobs/ratings_to_elasticsearch.lua is for
-- Elasticsearch: the topic as it is, JSON or, with --set format=avro, Confluent's Avro through
-- the registry (make demo-pipeline runs it so). The table is that of jobs/ratings_to_postgres.lua
-- (which rates a CSV straight into it), made when it is missing.
--   KAFKA_BROKERS=127.0.0.1:9092 PG_URL="host=/var/run/postgresql dbname=reviews" \
--     runnel run jobs/ratings_kafka_to_postgres.lua --set format=avro
-- Kafka and the registry as jobs/lib/systems.lua says; PG_URL is a libpq conninfo or URI, a secret.
local systems = require("lib.systems")

local ratings_table = require("lib.ratings_table")

return job {
  name   = "ratings_kafka_to_postgres",
  source = systems.ratings_source("ratings-to-postgres"),
  map    = ratings_table.row,
  sinks  = { ratings_table.sink() },
  errors = sink.jsonl { path = param("errors", "out/ratings_kafka_to_postgres.errors.jsonl") },
}
