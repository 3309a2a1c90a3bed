#!/usr/bin/env bash
# Embeddings with batch_inputs end to end, over real HTTP against bin/model-server, for every
# provider that sends several records' inputs in one request (OpenAI, Azure OpenAI, Gemini's
# batchEmbedContents, Vertex's :predict, Ollama's /api/embed): N records take ceil(N/batch)
# requests and get the vectors one request per record gives; an answer that leaves an input out
# (--embed-short) or gives it a vector of another length (--embed-odd) sends only that record
# again alone; a request refused as a whole for rate (429) is retried as a whole; one refused for
# what it holds (413: one input too large) splits, and only the record at fault is
# dead-lettered, with the server's status; the answer cache works per record; tokens are counted.
. "$(dirname "$0")/../lib.sh"

KEY=k-embed-inputs-4242
bin/gen-reviews --rows 300 --seed 23 > "$T/in.csv" 2>/dev/null
N=$(python3 -c 'import csv, sys; print(sum(1 for _ in csv.DictReader(open(sys.argv[1]))))' "$T/in.csv")
cat > "$T/job.lua" <<'LUA'
local reviews = source.csv { path = param("input"), select = { review_id = "Id", summary = "Summary" },
                             types = { review_id = "integer" } }
local provider, endpoint = param("provider"), param("endpoint")
local options = {
  openai = { endpoint = endpoint .. "/v1", api_key = secret("KEY"), model = "text-embedding-3-small" },
  azure_openai = { endpoint = endpoint, api_key = secret("KEY"), deployment = "embed", api_version = "v1" },
  gemini = { endpoint = endpoint .. "/v1beta", api_key = secret("KEY"), model = "text-embedding-004" },
  vertex = { endpoint = endpoint .. "/v1", token = secret("KEY"), project = "p1", model = "text-embedding-005" },
  ollama = { endpoint = endpoint, api_key = secret("KEY"), model = "nomic-embed-text" },
}
local o = options[provider]
o.task, o.prompt, o.batch_inputs = "embedding", "{{summary}}", tonumber(param("batch", "32"))
o.limits = { concurrency = tonumber(param("concurrency", "4")), retries = 8 }
o.price = { input = 0.02 }
return job {
  name = "embed_inputs_" .. provider, source = reviews,
  predict = model[provider](o),
  map = function(r) return { review_id = r.review_id, embedding = r.embedding } end,
  sinks = { sink.jsonl { path = param("output") } }, errors = sink.jsonl { path = param("errors") },
}
LUA
# run NAME PROVIDER URL [--set ...]: the job, no answer cache unless asked; the server's counts in NAME.stats
run() {
  local name="$1" provider="$2" url="$3"; shift 3
  curl -s -X POST "$url/stats/reset" >/dev/null
  KEY=$KEY $RUNNEL run "$T/job.lua" --set provider="$provider" --set endpoint="$url" --set input="${INPUT:-$T/in.csv}" \
    --set output="$T/$name.jsonl" --set errors="$T/$name.err.jsonl" --summary-json "$T/$name.json" "$@" >"$T/$name.log" 2>&1
  echo $? > "$T/$name.rc"
  curl -s "$url/stats" > "$T/$name.stats"
}
vectors() { jq -c '[.review_id, .embedding]' "$1" | sort; }
# same_vectors A B: both outputs hold records, each with the same vector in both
same_vectors() { [ -s "$1" ] && [ -s "$2" ] && cmp -s <(vectors "$1") <(vectors "$2"); }
ceil() { echo $(( ($1 + $2 - 1) / $2 )); }

start_model_server --api-key "$KEY"
URL=$MODEL_URL

# 1. each provider: one request per record, then batch_inputs; same vectors, ceil(N/batch) requests
for p in openai azure_openai gemini vertex ollama; do
  B=32; [ $p = vertex ] && B=8  # Vertex's default is 1 (gemini-embedding-001 takes one input); text-embedding-005 takes more
  run "$p.1" $p "$URL" --no-cache --set batch=1
  run "$p" $p "$URL" --no-cache --set batch=$B
  expect_eq "$p, batch_inputs 1: the job succeeds" 0 "$(cat "$T/$p.1.rc")"
  expect_eq "$p, batch_inputs 1: a request per record" "$N $N" "$(jq -r '"\(.embedding_requests) \(.embedding_inputs)"' "$T/$p.1.stats")"
  expect_eq "$p, batch_inputs $B: the job succeeds" 0 "$(cat "$T/$p.rc")"
  expect_eq "$p, batch_inputs $B: $N records in ceil($N/$B) requests" "$(ceil $N $B) $N" \
    "$(jq -r '"\(.embedding_requests) \(.embedding_inputs)"' "$T/$p.stats")"
  expect_eq "$p, batch_inputs $B: the summary counts them" "$(ceil $N $B) $(ceil $N $B) $N 0" \
    "$(jq -r '.model | "\(.requests) \(.inputs.requests) \(.inputs.records) \(.inputs.alone)"' "$T/$p.json")"
  check "$p, batch_inputs $B: every record has the vector a request of its own gets" \
    same_vectors "$T/$p.1.jsonl" "$T/$p.jsonl"
  expect_eq "$p, batch_inputs $B: $N records written" "$N" "$(wc -l < "$T/$p.jsonl")"
  check "$p: invariant" invariant_holds "$T/$p.json"
done
for p in openai azure_openai vertex ollama; do  # Gemini's embeddings report no tokens
  check "$p, batch_inputs: the answers' tokens are the records' (as many as one request per record)" \
    jq -e --slurpfile one "$T/$p.1.json" '.model.tokens_in > 0 and .model.tokens_in == $one[0].model.tokens_in' "$T/$p.json"
  check "$p, batch_inputs: cost from those tokens" \
    jq -e --slurpfile one "$T/$p.1.json" '.model.cost_usd > 0 and (.model.cost_usd - $one[0].model.cost_usd | fabs) < 1e-12' "$T/$p.json"
done

# 2. the answer cache, per record: a second run answers every record from it, no request
run cache1 openai "$URL" --set batch=32
run cache2 openai "$URL" --set batch=32
check "cache: the first run stores the records' vectors (one per distinct summary)" \
  jq -e '.model.cache.stored > 0 and .model.cache.stored == .model.cache.entries' "$T/cache1.json"
expect_eq "cache: the second run answers every record from it and sends nothing" "0 $N" \
  "$(jq -r '.embedding_requests' "$T/cache2.stats") $(jq -r '.model.cache_hits' "$T/cache2.json")"
check "cache: the cached vectors are the live ones" same_vectors "$T/openai.1.jsonl" "$T/cache2.jsonl"

# 3. a short answer and one of another length: only the records at fault go again, alone
start_model_server --api-key "$KEY" --embed-short
SHORT=$MODEL_URL
start_model_server --api-key "$KEY" --embed-odd
ODD=$MODEL_URL
for p in openai gemini ollama; do
  run "$p.short" $p "$SHORT" --no-cache --set batch=32 --set concurrency=1
  G=$(jq -r '.model.inputs.requests' "$T/$p.short.json")
  expect_eq "$p, short answers: the job succeeds, nothing dead-lettered" "0 0" \
    "$(cat "$T/$p.short.rc") $(jq -r '.dead_lettered' "$T/$p.short.json")"
  # (a group of one, when one record alone was ready, is a plain request: neither G nor alone)
  expect_eq "$p, short answers: the one input each left out went again alone" "$G" \
    "$(jq -r '.model.inputs.alone' "$T/$p.short.json")"
  expect_eq "$p, short answers: the server saw each request the job counted, once" \
    "$(jq -r '.model.requests' "$T/$p.short.json")" "$(jq -r '.embedding_requests' "$T/$p.short.stats")"
  check "$p, short answers: several requests of several inputs" test "$G" -ge 2
  check "$p, short answers: every record has its own vector" same_vectors "$T/$p.1.jsonl" "$T/$p.short.jsonl"
  run "$p.odd" $p "$ODD" --no-cache --set batch=32 --set concurrency=1
  G=$(jq -r '.model.inputs.requests' "$T/$p.odd.json")
  expect_eq "$p, a vector of another length: the record went again alone" "0 $G" \
    "$(cat "$T/$p.odd.rc") $(jq -r '.model.inputs.alone' "$T/$p.odd.json")"
  check "$p, a vector of another length: every record has its own vector" same_vectors "$T/$p.1.jsonl" "$T/$p.odd.jsonl"
done

# 4. 429s refuse whole requests: each is retried as a whole, nothing is lost or sent alone
start_model_server --api-key "$KEY" --rate-429 0.3 --retry-after 0 --seed 5
LIMITED=$MODEL_URL
run limited openai "$LIMITED" --no-cache --set batch=16
expect_eq "429s: the job succeeds, every record written" "0 $N" "$(cat "$T/limited.rc") $(wc -l < "$T/limited.jsonl")"
check "429s: some requests were refused and retried" jq -e '.model.retries > 0' "$T/limited.json"
expect_eq "429s: retried whole: no record went alone" 0 "$(jq -r '.model.inputs.alone' "$T/limited.json")"
expect_eq "429s: the server answered ceil(N/16) requests of inputs" "$(ceil $N 16)" "$(jq -r '.ok' "$T/limited.stats")"
check "429s: the vectors are the records' own" same_vectors "$T/openai.1.jsonl" "$T/limited.jsonl"

# 5. one input too large for the server (413 over 1 MiB): its request splits, and only that
# record is dead-lettered, with the status
python3 - "$T/in.csv" > "$T/big.csv" <<'PY'
import csv, sys
csv.field_size_limit(1 << 24)
rows = list(csv.reader(open(sys.argv[1])))
w = csv.writer(sys.stdout, lineterminator='\n')
for i, row in enumerate(rows):
    if i == 5: row[rows[0].index('Summary')] = 'x' * (1100 * 1024)
    w.writerow(row)
PY
BIG_ID=$(python3 -c "import csv,sys; csv.field_size_limit(1 << 24); r=list(csv.DictReader(open(sys.argv[1]))); print(r[4]['Id'])" "$T/big.csv")
INPUT="$T/big.csv" run big openai "$URL" --no-cache --set batch=32 --set concurrency=1
expect_eq "413: the job goes on: one record dead-lettered, the rest written" "0 1 $((N - 1))" \
  "$(cat "$T/big.rc") $(jq -r '.dead_lettered' "$T/big.json") $(wc -l < "$T/big.jsonl")"
expect_eq "413: the dead letter is the record at fault" "$BIG_ID" "$(jq -r '.record.review_id' "$T/big.err.jsonl")"
check "413: its reason names the status" jq -e '.reason | test("HTTP 413")' "$T/big.err.jsonl"
check "413: its request's other records went alone and got their vectors" \
  jq -e '.model.inputs.alone >= 2 and .model.inputs.alone <= 32' "$T/big.json"
finish
