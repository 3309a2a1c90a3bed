#!/usr/bin/env bash
# Running at the provider's quota: bin/model-server with --rpm/--tpm answers with OpenAI's
# x-ratelimit-* headers and 429s from an empty bucket. A job that declares no rpm/tpm learns the
# limits from the answers and holds itself just under them (at most 1% of requests answered
# 429), from Anthropic's anthropic-ratelimit-* headers as well; one that declares a smaller rpm
# goes at that; one that starts on a quota another client
# has nearly spent waits for it instead of running into 429s. (The 95%-of-the-quota figure is
# the bench's: tools/bench.sh, case quota.)
. "$(dirname "$0")/../lib.sh"

bin/gen-reviews --rows 220 --seed 21 > "$T/in.csv" 2>/dev/null
head -41 "$T/in.csv" > "$T/in40.csv"
head -13 "$T/in.csv" > "$T/in12.csv"
declare -A url
# start NAME INPUT [--set ...]: the job in the background against the server started last
start() {
  local name="$1" input="$2"; shift 2
  url[$name]=$MODEL_URL
  ( exec $RUNNEL run tools/bench/quota.lua --set input="$input" --set output="$T/$name.jsonl" --state-dir "$T/state-$name" \
      --no-progress --summary-json "$T/$name.json" "$@" >"$T/$name.log" 2>&1 ) &
  pid[$name]=$!
}
declare -A pid
stats() { curl -sS "${url[$1]}/stats"; }
finished() { wait "${pid[$1]}"; expect_eq "$1: exits 0" 0 "$?"; }

# the three cases run side by side, each with its server: they wait on the quota, not the CPU
start_model_server --rpm 600 --tpm 30000 --latency-ms 20
start learned "$T/in.csv"
start_model_server --rpm 600 --latency-ms 20
start declared "$T/in40.csv" --set rpm=240
start_model_server --rpm 60 --latency-ms 20
for _ in $(seq 100); do # another client spends the quota first: until the bucket is empty
  curl -sS -o /dev/null -D "$T/drain.h" "$MODEL_URL/v1/chat/completions" -d '{"model":"m","messages":[{"role":"user","content":"hi"}]}'
  grep -qi '^x-ratelimit-remaining-requests: 0' "$T/drain.h" && break
done
curl -sS -X POST "$MODEL_URL/stats/reset" >/dev/null
start spent "$T/in12.csv"
start_model_server --rpm 600 --tpm 100000 --latency-ms 20
url[anthropic]=$MODEL_URL
curl -sS -o /dev/null -D "$T/anthropic.h" "$MODEL_URL/v1/messages" -H 'anthropic-version: 2023-06-01' \
  -d '{"model":"m","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}'
expect_contains "anthropic dialect: the request limit" "$T/anthropic.h" "anthropic-ratelimit-requests-limit: 600"
expect_contains "anthropic dialect: the token limit" "$T/anthropic.h" "anthropic-ratelimit-tokens-limit: 100000"
check "anthropic dialect: resets as RFC 3339 times" \
  grep -Eqi '^anthropic-ratelimit-requests-reset: [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\.[0-9]{3}Z' "$T/anthropic.h"
curl -sS -X POST "$MODEL_URL/stats/reset" >/dev/null
( ANTHROPIC_API_KEY=sk-ant-quota exec $RUNNEL run jobs/review_rating_anthropic.lua --set input="$T/in.csv" \
    --set endpoint="$MODEL_URL" --set output="$T/anthropic.jsonl" --set errors="$T/anthropic.errors.jsonl" \
    --state-dir "$T/state-anthropic" --no-progress --summary-json "$T/anthropic.json" >"$T/anthropic.log" 2>&1 ) &
pid[anthropic]=$!

# 1. nothing declared: the limits are learned, ~210 requests at 600 a minute with no storm of 429s
finished learned
check "learned: every record written" jq -e '.written == .read - .filtered and .dead_lettered == 0' "$T/learned.json"
expect_eq "learned: the limits the server announced" "600 30000" \
  "$(sj "$T/learned.json" '"\(.model.quota.announced.requests) \(.model.quota.announced.tokens)"')"
check "learned: their refill, a minute's worth (within 3%)" \
  jq -e '.model.quota.refill_per_min | (.requests - 600 | fabs) < 18 and (.tokens - 30000 | fabs) < 900' "$T/learned.json"
check "learned: paced just under 600 requests a minute ($(sj "$T/learned.json" .model.quota.paced_per_min.requests))" \
  jq -e '.model.quota.paced_per_min.requests | . >= 570 and . < 600' "$T/learned.json"
share=$(stats learned | jq -r '.status_429 / .requests')
check "learned: at most 1% of requests answered 429 (share $share)" awk -v s="$share" 'BEGIN { exit !(s <= 0.01) }'
span=$(stats learned | jq .quota.span_ms); admitted=$(stats learned | jq .quota.admitted)
check "learned: $admitted requests in $span ms: no faster than 600 a minute after the first second's 10" \
  awk -v n="$admitted" -v ms="$span" 'BEGIN { exit !((n - 11) / (ms / 60000) <= 600 * 1.02) }'
expect_contains "learned: the summary shows the quota" "$T/learned.log" "quota: the provider allows 600 requests"

# 2. a declared rpm under the announced one is the pace
finished declared
expect_eq "declared: paced at the declared 240 a minute, under the announced 600" "240 600" \
  "$(sj "$T/declared.json" '"\(.model.quota.paced_per_min.requests) \(.model.quota.announced.requests)"')"
check "declared: 40 requests took about 40 / 4 s^-1 (less the first second's burst)" \
  jq -e '.elapsed_s > 7.5 and .elapsed_s < 12' "$T/declared.json"
expect_contains "declared: the summary says so" "$T/declared.log" "240 requests/min (declared)"

# 3. another client spent the quota just before: the job learns it from its first answer (the
# one request that may meet an empty bucket) and waits for the refill
finished spent
check "spent: every record written" jq -e '.written == .read - .filtered' "$T/spent.json"
check "spent: its count held the pace back ($(sj "$T/spent.json" .model.quota.held_back) times)" \
  jq -e '.model.quota.held_back > 0' "$T/spent.json"
check "spent: at most its first request answered 429 ($(stats spent | jq .status_429))" test "$(stats spent | jq .status_429)" -le 1
check "spent: it went at the refill, a request a second ($(sj "$T/spent.json" .elapsed_s) s)" \
  jq -e '.elapsed_s >= (.written - 3) * 0.9' "$T/spent.json"

# 4. model.anthropic, nothing declared: the limits are learned from anthropic-ratelimit-*
finished anthropic
check "anthropic: every record written" jq -e '.written == .read - .filtered and .dead_lettered == 0' "$T/anthropic.json"
expect_eq "anthropic: the limits the server announced" "600 100000" \
  "$(sj "$T/anthropic.json" '"\(.model.quota.announced.requests) \(.model.quota.announced.tokens)"')"
# the pace follows the refill learned from the resets, which are times the job's clock reads
# against its send times: within 2% of the announced rate (the 429 share below is what matters)
check "anthropic: paced at the 600 requests a minute announced, within 2% ($(sj "$T/anthropic.json" .model.quota.paced_per_min.requests))" \
  jq -e '.model.quota.paced_per_min.requests | . >= 570 and . <= 612' "$T/anthropic.json"
share=$(stats anthropic | jq -r '.status_429 / .requests')
check "anthropic: at most 1% of requests answered 429 (share $share)" awk -v s="$share" 'BEGIN { exit !(s <= 0.01) }'
finish
