-- jobs/ratings_to_elasticsearch_test.lua: the cases `runnel test jobs/ratings_to_elasticsearch.lua` runs
-- (README: Testing a job). Index names, ids and what the cluster refuses are met only in a run.
return {
  cases = {
    {
      name    = "each rating goes to the index as its JSON document",
      records = { { review_id = 1, product_id = "B1", rating = 4, timestamp = 1329868800 } },
      written = { { review_id = 1, product_id = "B1", rating = 4, timestamp = 1329868800 } },
      lines   = { [1] = { '{"product_id":"B1","rating":4,"review_id":1,"timestamp":1329868800}' } },
    },
    {
      name    = "JSON lines from the topic, decoded by the source's format",
      fixture = "../tests/data/ratings_to_elasticsearch.jsonl",
      written = { { review_id = 2, product_id = "B2", rating = 5, timestamp = 1 },
                  { review_id = 3, product_id = "B3", rating = 1, timestamp = 2 } },
    },
  },
}
