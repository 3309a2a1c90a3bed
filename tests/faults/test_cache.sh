#!/usr/bin/env bash
# The model answer cache: a batch job run twice over the same input with the same --state-dir
# calls the model only the first time and writes byte-identical output; --no-cache calls it
# again; a changed system prompt misses; only valid answers are stored; a cache file with a
# torn tail still opens and works; a second runner on the same cache is refused.
. "$(dirname "$0")/../lib.sh"

bin/gen-reviews --rows 2000 --seed 3 > "$T/in.csv" 2>/dev/null
export OPENAI_API_KEY="sk-cache-test-SECRET-5d41402abc"
cat > "$T/job.lua" <<'LUA'
return job {
  name = "cached_ratings",
  source = source.csv { path = param("input"), select = { id = "Id", summary = "Summary", score = "Score" },
                        types = { id = "integer", score = "integer" } },
  filter = function(r) return r.summary ~= "" end,
  predict = model.openai {
    endpoint = env("OPENAI_BASE_URL"), api_key = secret("OPENAI_API_KEY"), model = "gpt-4o-mini",
    system = param("system", "Rate the review from 1 (very negative) to 5 (very positive). Answer with the number only."),
    prompt = "Review title: {{summary}}",
    output = { rating = { type = "integer", min = 1, max = 5 } },
    limits = { concurrency = 32, retries = 3, timeout = "10s" },
  },
  map = function(r) return { id = r.id, rating = r.rating } end,
  sinks = sink.jsonl { path = param("output") },
  errors = sink.jsonl { path = param("errors") },
}
LUA

start_model_server --latency-ms 20
requests() { curl -sS "$MODEL_URL/stats" | jq .requests; }
# run NAME [ARGS...]: one batch run into $T/NAME.*; prints how many requests reached the server
run() {
  local name="$1"; shift
  local before; before=$(requests)
  local start; start=$(date +%s.%N)
  $RUNNEL run "$T/job.lua" --set input="$T/in.csv" --set output="$T/$name.jsonl" --set errors="$T/$name.err" \
    --no-progress --summary-json "$T/$name.json" "$@" 2>"$T/$name.log"
  echo "$?" > "$T/$name.rc"
  echo "$name: $(echo "$(date +%s.%N) - $start" | bc) s" >> "$T/times"
  echo $(( $(requests) - before ))
}

# --- cold, then warm ---------------------------------------------------------------------------
cold=$(run cold --state-dir "$T/st")
expect_eq "cold run exits 0" 0 "$(cat "$T/cold.rc")"
check "cold run: invariant" invariant_holds "$T/cold.json"
written=$(sj "$T/cold.json" .written)
check "cold run: rated records ($written written)" test "$written" -gt 1900
check "cold run: the server saw every request the runner counted" \
  test "$cold" -eq "$(sj "$T/cold.json" .model.requests)"
check "cold run: requests + cache hits = written" \
  test $(( $(sj "$T/cold.json" .model.requests) + $(sj "$T/cold.json" .model.cache_hits) )) -eq "$written"
cache_file=$(sj "$T/cold.json" .model.cache.path)
check "cache file is under the state dir, one file for the job's model" \
  test "$cache_file" = "$T/st/cache/cached_ratings/openai.gpt-4o-mini.cache"
check "cache stores one entry per distinct prompt, not one file each" \
  test "$(find "$T/st/cache" -type f | wc -l)" -eq 1
check "the api key is not in the cache file" bash -c "! grep -qa 'sk-cache-test-SECRET' '$cache_file'"
expect_contains "summary prints the cache hits" "$T/cold.log" "cache hits"

warm=$(run warm --state-dir "$T/st")
expect_eq "warm run exits 0" 0 "$(cat "$T/warm.rc")"
expect_eq "warm run: 0 requests reach the model server" 0 "$warm"
expect_eq "warm run: summary counts 0 requests" 0 "$(sj "$T/warm.json" .model.requests)"
expect_eq "warm run: every record is a cache hit" "$written" "$(sj "$T/warm.json" .model.cache_hits)"
expect_eq "warm run: no tokens counted for cache hits" 0 "$(sj "$T/warm.json" .model.tokens_in)"
check "warm run: output byte-identical to the cold run" cmp "$T/cold.jsonl" "$T/warm.jsonl"
check "warm run: invariant" invariant_holds "$T/warm.json"
expect_contains "warm summary line: cache hits N" "$T/warm.log" "cache hits $written,"

# --- --no-cache: neither read nor written ----------------------------------------------------------
size_before=$(stat -c %s "$cache_file")
nocache=$(run nocache --state-dir "$T/st" --no-cache)
expect_eq "--no-cache: every record is a request again" "$written" "$nocache"
expect_eq "--no-cache: no cache hits" 0 "$(sj "$T/nocache.json" .model.cache_hits)"
check "--no-cache: output identical" cmp "$T/cold.jsonl" "$T/nocache.jsonl"
expect_eq "--no-cache: the cache file is not written" "$size_before" "$(stat -c %s "$cache_file")"

# --- a changed system prompt misses ------------------------------------------------------------------
other_system="Rate this review 1-5. Reply with the digit."
other=$(run other --state-dir "$T/st" --set system="$other_system")
check "changed system prompt: the cache misses ($other requests)" test "$other" -ge "$(sj "$T/cold.json" .model.requests)"
expect_eq "changed system prompt: written" "$written" "$(sj "$T/other.json" .written)"

# --- a torn tail: cut a few bytes off the last record (stored by the run just above) -----------------
truncate -s -5 "$cache_file"
torn=$(run torn --state-dir "$T/st" --set system="$other_system")
expect_eq "torn tail: the job runs" 0 "$(cat "$T/torn.rc")"
check "torn tail: the torn bytes were cut at open" test "$(sj "$T/torn.json" .model.cache.torn_bytes_cut)" -gt 0
check "torn tail: only the lost entry is asked again ($torn requests)" test "$torn" -ge 1 -a "$torn" -le 32
check "torn tail: output identical" cmp "$T/other.jsonl" "$T/torn.jsonl"
again=$(run again --state-dir "$T/st" --set system="$other_system")
expect_eq "after the torn run: the cache is whole again (0 requests)" 0 "$again"

# --- only valid answers are stored -------------------------------------------------------------------
stop_model_server "$MODEL_PID"
start_model_server --out-of-range-rate 1
bad=$(run bad --state-dir "$T/st-bad" --limit 200)
expect_eq "every answer out of range: 200 read, all not filtered dead-lettered" "200 true" \
  "$(sj "$T/bad.json" '"\(.read) \(.dead_lettered > 0 and .read - .filtered == .dead_lettered)"')"
expect_eq "invalid answers are not stored" 0 "$(sj "$T/bad.json" .model.cache.entries)"
stop_model_server "$MODEL_PID"
start_model_server --latency-ms 200
good=$(run good --state-dir "$T/st-bad" --limit 200)
check "after invalid answers, the records are asked again ($good requests)" test "$good" -gt 150

# --- two runners on one cache: the job's lock refuses the second before it opens the cache ------
# (the cache's own lock, tested in tests/unit/test_cache.c, stays as a second guard)
$RUNNEL run "$T/job.lua" --set input="$T/in.csv" --set output="$T/first.jsonl" --set errors="$T/first.err" \
  --state-dir "$T/st-two" --no-progress 2>/dev/null &
first=$!
sleep 1
$RUNNEL run "$T/job.lua" --set input="$T/in.csv" --set output="$T/second.jsonl" --set errors="$T/second.err" \
  --state-dir "$T/st-two" --no-progress 2>"$T/second.log"
expect_eq "a second runner on the same cache exits 2" 2 "$?"
expect_contains "... saying the job is already running" "$T/second.log" "is already running (pid $first, since "
kill "$first" 2>/dev/null; wait "$first" 2>/dev/null

sed 's/^/  /' "$T/times"
finish
