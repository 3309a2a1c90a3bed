#!/usr/bin/env bash
# sink.elasticsearch against bin/es-dev over real HTTP: documents land (counted with _count),
# dated index names (UTC), replays with id are idempotent, create counts 409 as written,
# mapping errors go to the dead letters with the item's error, per-item 429 and whole-request
# 503 are sent again, Basic auth (and a wrong password stops the job without showing it), an
# endpoint that is down stops the job after limits.outage with a clear error; read =
# written + dead-lettered + filtered every time.
. "$(dirname "$0")/../lib.sh"

bin/gen-reviews --rows 2000 --seed 5 > "$T/in.csv" 2>/dev/null
cat > "$T/job.lua" <<'LUA'
local auth, index, bad = nil, param("index", "ratings-%Y.%m"), param("bad", "0") == "1"
local pad, big = tonumber(param("pad", "0")), tonumber(param("big", "0")) -- bytes added to every / every 400th document
if param("user", "") ~= "" then auth = { user = param("user"), password = secret("ES_TEST_PASSWORD") } end
return job {
  name = param("name", "es"),
  source = source.csv { path = param("input"), select = { review_id = "Id", product_id = "ProductId",
                        score = "Score", timestamp = "Time", summary = "Summary" },
                        types = { review_id = "integer", score = "integer", timestamp = "integer" } },
  map = function(r)
    local rating = r.score
    if bad and r.review_id % 100 == 0 then rating = "five" end
    local doc = { review_id = r.review_id, product_id = r.product_id, rating = rating, timestamp = r.timestamp }
    if pad > 0 then doc.pad = string.rep("x", pad) end
    if big > 0 and r.review_id % 400 == 0 then doc.pad = string.rep("y", big) end
    return doc
  end,
  sinks = { sink.elasticsearch { url = param("url"), index = index, date_field = index:find("%%") and "timestamp" or nil,
                                 id = "review_id", action = param("action", "index"), auth = auth,
                                 batch = { count = 150, time = "200ms", bytes = param("batch_bytes", "5MB") }, retries = tonumber(param("retries", "8")),
                                 backoff = "20ms", max_backoff = "200ms", timeout = "10s" } },
  errors = sink.jsonl { path = param("errors") },
  limits = { outage = param("outage", "10m") },
}
LUA
run() { $RUNNEL run "$T/job.lua" --no-progress --quiet --state-dir "$T/state" --set input="$T/in.csv" \
          --set errors="$T/errors.jsonl" --summary-json "$T/s.json" "$@" >"$T/run.out" 2>"$T/run.err"; }
count() { curl -sS "$URL/$1/_count" | jq -r .count; }

start_standin es-dev
URL=$STANDIN_URL

run --set url="$URL"
check "a run finishes" test -s "$T/s.json"
check "read = written + dead-lettered + filtered" invariant_holds "$T/s.json"
expect_eq "every record written" 2000 "$(sj "$T/s.json" .written)"
expect_eq "every document landed (_count over ratings-*)" 2000 "$(count 'ratings-*')"
read -r month want < <(python3 -c '
import csv, sys, time, collections
rows = list(csv.DictReader(open(sys.argv[1], newline="")))
months = collections.Counter(time.strftime("%Y.%m", time.gmtime(int(r["Time"]))) for r in rows)
m = time.strftime("%Y.%m", time.gmtime(int(rows[0]["Time"])))
print(m, months[m])' "$T/in.csv")
expect_eq "the index of a month holds that month's reviews (UTC)" "$want" "$(count "ratings-$month")"
doc=$(curl -sS "$URL/ratings-$month/_search" -H 'Content-Type: application/json' -d '{"size":1}' | jq -c '.hits.hits[0]')
check "a document is the record, _id its review_id" jq -e '._id == (._source.review_id | tostring) and (._source | keys) == ["product_id","rating","review_id","timestamp"]' <<<"$doc"

run --set url="$URL"
expect_eq "a replay with id overwrites: still 2000 documents" 2000 "$(count 'ratings-*')"
run --set url="$URL" --set action=create
expect_eq "create on a replay: every 409 counts as written" 2000 "$(sj "$T/s.json" .written)"
expect_eq "... and no dead letters" 0 "$(sj "$T/s.json" .dead_lettered)"

# mapping errors: the index maps rating as an integer
curl -sS -X PUT "$URL/typed" -H 'Content-Type: application/json' -d '{"mappings":{"properties":{"rating":{"type":"integer"}}}}' >/dev/null
rm -f "$T/errors.jsonl"
run --set url="$URL" --set index=typed --set bad=1 || true
check "bad documents: the job finishes" test -s "$T/s.json"
check "bad documents: read = written + dead-lettered + filtered" invariant_holds "$T/s.json"
expect_eq "the 20 bad documents are dead-lettered" 20 "$(sj "$T/s.json" .dead_lettered)"
expect_eq "the rest landed" 1980 "$(count typed)"
check "a dead letter names the stage and Elasticsearch's error type and reason" \
  jq -se 'length == 20 and all(.[]; .stage == "sink.elasticsearch" and (.reason | test("HTTP 400: mapper_parsing_exception: .*rating")))' "$T/errors.jsonl"

# per-item 429 and whole-request 503, sent again
curl -sS -X POST "$URL/_fault" -H 'Content-Type: application/json' -d '{"item_status":429,"item_every":7,"request_status":503,"request_next":3}' >/dev/null
run --set url="$URL" --set index=faulty
expect_eq "per-item 429s and whole-request 503s: every record written" 2000 "$(sj "$T/s.json" .written)"
expect_eq "... and every document landed" 2000 "$(count faulty)"
check "... the stand-in did fail items and requests" bash -c "curl -sS '$URL/_fault' | jq -e '.counters.items_faulted > 0 and .counters.requests_rejected == 3'"
curl -sS -X DELETE "$URL/_fault" >/dev/null

# an endpoint always answering 503 is an outage: the job waits, then stops after limits.outage
# (tests/faults/test_es_outage.sh kills and restarts the cluster)
curl -sS -X POST "$URL/_fault" -H 'Content-Type: application/json' -d '{"request_status":503,"request_every":1}' >/dev/null
check "a cluster that answers 503 to everyone stops the job after limits.outage" bash -c "! $RUNNEL run '$T/job.lua' --no-progress --quiet --state-dir '$T/state' --set input='$T/in.csv' --set errors='$T/errors.jsonl' --set url='$URL' --set index=down --set outage=1s 2>'$T/down.err'"
expect_contains "... with the status" "$T/down.err" "HTTP 503"
expect_contains "... saying what it committed" "$T/down.err" "nothing of source.csv"
curl -sS -X DELETE "$URL/_fault" >/dev/null

# nothing listening: connection errors, then the job stops
port=$(free_port)
check "no server: the job stops" bash -c "! $RUNNEL run '$T/job.lua' --no-progress --quiet --state-dir '$T/state2' --set input='$T/in.csv' --set errors='$T/errors.jsonl' --set url=http://127.0.0.1:$port --set outage=1s 2>'$T/refused.err'"
expect_contains "... naming the connection error" "$T/refused.err" "connection refused"

# 413: a bulk over the cluster's http.max_content_length (64kb here) is split in halves until it
# fits; a document that alone is over it is dead-lettered with its size. 150 documents of 1 KB
# make bulks of 150 KB: none lands unless the sink splits.
start_standin es-dev --max-content-length 64kb
SURL=$STANDIN_URL
rm -f "$T/errors.jsonl"
run --set url="$SURL" --set index=small --set pad=1000 --set big=100000 --set batch_bytes=1MB
cp "$T/errors.jsonl" "$T/413.jsonl"
expect_eq "413: every document but the 5 of 100 KB written" 1995 "$(sj "$T/s.json" .written)"
expect_eq "... the 5 dead-lettered" 5 "$(sj "$T/s.json" .dead_lettered)"
expect_eq "... and 1995 landed" 1995 "$(curl -sS "$SURL/small/_count" | jq -r .count)"
check "... each dead letter says HTTP 413, the document alone, its size and the cluster's limit" \
  jq -se 'length == 5 and all(.[]; .stage == "sink.elasticsearch" and (.reason | test("HTTP 413: the document alone, a bulk request of 1001[0-9]{2} bytes with its action line, is over the cluster.s http.max_content_length")))' "$T/413.jsonl"
check "... the right ones (review_id 400, 800, ... 2000)" jq -se '[.[].record.review_id] | sort == [400, 800, 1200, 1600, 2000]' "$T/413.jsonl"

# Basic auth
start_standin es-dev --basic "elastic:s3cr3t-pw"
AURL=$STANDIN_URL
ES_TEST_PASSWORD=s3cr3t-pw run --set url="$AURL" --set user=elastic
expect_eq "Basic auth: every record written" 2000 "$(sj "$T/s.json" .written)"
expect_eq "... and landed" 2000 "$(curl -sS -u elastic:s3cr3t-pw "$AURL/ratings-*/_count" | jq -r .count)"
check "a wrong password stops the job" bash -c "! ES_TEST_PASSWORD=wrong-pw-123 $RUNNEL run '$T/job.lua' --no-progress --quiet --state-dir '$T/state3' --set input='$T/in.csv' --set errors='$T/errors.jsonl' --set url='$AURL' --set user=elastic 2>'$T/auth.err'"
expect_contains "... with HTTP 401" "$T/auth.err" "HTTP 401"
check "... and the password is not shown" bash -c "! grep -q wrong-pw-123 '$T/auth.err'"

finish
