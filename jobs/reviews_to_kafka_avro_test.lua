-- jobs/reviews_to_kafka_avro_test.lua: the cases `runnel test jobs/reviews_to_kafka_avro.lua` runs (README: Testing a job).
-- The Avro bytes need a Schema Registry, which runnel test does not run: tests/kafka/test_avro.sh checks them.
return {
  cases = {
    {
      name    = "every review goes to the topic with the schema's fields",
      records = { { review_id = 1, product_id = "B1", user_id = "U1", timestamp = 1329868800, score = 5, summary = "Yum" } },
      written = { { review_id = 1, product_id = "B1", user_id = "U1", timestamp = 1329868800, score = 5, summary = "Yum" } },
    },
    {
      name    = "the sample file, as the job reads it",
      fixture = "../data/reviews_sample.csv",
      written = function(records) return #records > 0, "nothing written" end,
    },
  },
}
