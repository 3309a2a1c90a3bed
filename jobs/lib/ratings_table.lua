-- jobs/lib/ratings_table.lua: the PostgreSQL table of the ratings, one row per review, shared by
-- jobs/ratings_to_postgres.lua (a CSV rated straight into it) and jobs/ratings_kafka_to_postgres.lua
-- (the product_ratings topic's sink connector), so both land the same rows in the same table.
-- Upserts on review_id: a replay overwrites instead of adding rows twice.
local ratings_table = {}

-- The row of a rated review; timestamp is the review's time in seconds (nil: no reviewed_at).
function ratings_table.row(r)
  return { review_id = r.review_id, product_id = r.product_id, summary = r.summary, rating = r.rating,
           score = r.score,
           reviewed_at = r.timestamp and os.date("!%Y-%m-%dT%H:%M:%SZ", r.timestamp) or nil }
end

-- The sink: PG_URL is a libpq conninfo or URI, a secret (messages name host:port/database).
function ratings_table.sink()
  return sink.postgres {
    conninfo  = secret("PG_URL"),
    table     = param("table", "product_ratings"),
    key       = "review_id",
    create    = true,
    columns   = { review_id = "bigint", product_id = "text", summary = "text", rating = "integer",
                  score = "integer", reviewed_at = "timestamptz" },
    batch     = { rows = 500, time = "1s" },
    retry_for = "2m",
  }
end

return ratings_table
