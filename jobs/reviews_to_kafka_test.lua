-- jobs/reviews_to_kafka_test.lua: the cases `runnel test jobs/reviews_to_kafka.lua` runs (README: Testing a job).
return {
  cases = {
    {
      name    = "every review goes to the topic as JSON",
      records = { { review_id = 1, product_id = "B1", score = 5, summary = "Yum" } },
      written = { { review_id = 1, product_id = "B1", score = 5, summary = "Yum" } },
      lines   = { [1] = { '{"product_id":"B1","review_id":1,"score":5,"summary":"Yum"}' } },
    },
    {
      name    = "the sample file, as the job reads it",
      fixture = "../data/reviews_sample.csv",
      written = function(records) return #records > 0, "nothing written" end,
    },
  },
}
