-- jobs/ratings_to_elasticsearch.lua: land the ratings of the topic product_ratings in
-- Elasticsearch, one index per month of the review's date (UTC), one document per review: _id is
-- review_id, so a replay overwrites instead of duplicating. A sink connector: the topic as it is,
-- JSON (jobs/review_rating_kafka.lua) or, with --set format=avro, Confluent's Avro through the
-- registry (jobs/review_rating_kafka_avro.lua; make demo-pipeline runs it so).
--   KAFKA_BROKERS=127.0.0.1:9092 ES_URL=http://127.0.0.1:9200 runnel run jobs/ratings_to_elasticsearch.lua
-- Kafka, the registry and Elasticsearch (ES_URL, ES_API_KEY or ES_USER/ES_PASSWORD, ES_CA_FILE)
-- as jobs/lib/systems.lua says; bin/es-dev --port 9200 stands in for Elasticsearch.
local systems = require("lib.systems")

return job {
  name   = "ratings_to_elasticsearch",
  source = systems.ratings_source("ratings-to-elasticsearch"),
  sinks  = { sink.elasticsearch { url = systems.es_url, auth = systems.es_auth, tls = systems.es_tls,
                                  index = param("index", "product_ratings-%Y.%m"),
                                  date_field = "timestamp", id = "review_id" } },
  errors = sink.jsonl { path = param("errors", "out/ratings_to_elasticsearch.errors.jsonl") },
}
