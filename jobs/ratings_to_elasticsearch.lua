-- jobs/ratings_to_elasticsearch.lua: land the ratings of jobs/review_rating_kafka.lua (the topic
-- product_ratings) in Elasticsearch, one index per month of the review's date (UTC), one
-- document per review: _id is review_id, so a replay overwrites instead of duplicating.
--   KAFKA_BROKERS=127.0.0.1:9092 ES_URL=http://127.0.0.1:9200 runnel run jobs/ratings_to_elasticsearch.lua
-- (bin/es-dev --port 9200 stands in for Elasticsearch; for a cluster with security on add
--  auth = { user = "elastic", password = secret("ES_PASSWORD") } or auth = { api_key = secret("ES_API_KEY") })
return job {
  name   = "ratings_to_elasticsearch",
  source = source.kafka { brokers = env("KAFKA_BROKERS", "127.0.0.1:9092"), topic = param("topic", "product_ratings"),
                          group = "ratings-to-elasticsearch", format = "json" },
  sinks  = { sink.elasticsearch { url = env("ES_URL", "http://127.0.0.1:9200"), index = "product_ratings-%Y.%m",
                                  date_field = "timestamp", id = "review_id" } },
  errors = sink.jsonl { path = param("errors", "out/ratings_to_elasticsearch.errors.jsonl") },
}
