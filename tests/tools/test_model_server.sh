#!/usr/bin/env bash
# test_model_server.sh: black-box checks of bin/model-server over real HTTP with curl and jq.
#
# Run from the repo root after bin/model-server is built. Every fault configuration gets its own
# server on a free port (--port 0, port read from the first stdout line); all of them are killed
# on exit. Prints one PASS/FAIL line per check and exits non-zero if any check failed.
set -euo pipefail

SERVER=${MODEL_SERVER:-bin/model-server}
if [[ ! -x $SERVER ]]; then
    echo "FAIL setup: $SERVER not found or not executable; build it first (see tools/model-server.c)"
    exit 1
fi
for tool in curl jq; do
    command -v "$tool" >/dev/null || { echo "FAIL setup: '$tool' is required"; exit 1; }
done

WORK=$(mktemp -d)
SERVER_PIDS=()
cleanup() {
    for pid in "${SERVER_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${SERVER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

FAILURES=0
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1${2:+: $2}"; FAILURES=$((FAILURES + 1)); }
# check NAME COMMAND...: PASS if COMMAND succeeds.
check() {
    local name=$1
    shift
    if "$@" >/dev/null; then pass "$name"; else fail "$name"; fi
}

# start_server ARGS...: start a server with ARGS; sets URL and PID.
start_server() {
    local out="$WORK/server${#SERVER_PIDS[@]}"
    "$SERVER" --port 0 "$@" >"$out.out" 2>"$out.err" &
    PID=$!
    SERVER_PIDS+=("$PID")
    local line=""
    for _ in $(seq 50); do
        line=$(head -n 1 "$out.out" 2>/dev/null || true)
        [[ $line == listening* ]] && break
        sleep 0.1
    done
    if [[ ! $line =~ ^listening\ on\ (http://127\.0\.0\.1:[0-9]+)$ ]]; then
        echo "FAIL setup: server '$*' did not print 'listening on http://127.0.0.1:PORT' (got '$line')"
        cat "$out.err"
        exit 1
    fi
    URL=${BASH_REMATCH[1]}
}

# post URL PATH BODY [curl args...]: body to $WORK/body, headers to $WORK/headers, prints the status.
post() {
    local url=$1 path=$2 body=$3
    shift 3
    curl -sS --max-time 5 -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}' \
        -H 'Content-Type: application/json' --data-binary "$body" "$@" "$url$path"
}

# chat_body USER_TEXT [EXTRA_JSON_FIELDS]: a chat completion request with one system message.
chat_body() {
    local extra=${2:-'{}'}
    jq -cn --arg text "$1" --argjson extra "$extra" \
        '{model: "test-model", messages: [{role: "system", content: "Rate the review 1 to 5."},
                                          {role: "user", content: $text}]} + $extra'
}

content() { jq -r '.choices[0].message.content' "$WORK/body"; }

POSITIVE="Amazing food, delicious and perfect. The best meal, I love it!"
NEGATIVE="Awful, rancid and disgusting. The worst food, a waste of money."
SCHEMA='{"response_format":{"type":"json_schema","json_schema":{"name":"review","schema":{
  "type":"object","properties":{"rating":{"type":"integer","minimum":1,"maximum":5},
  "sentiment":{"type":"string","enum":["negative","neutral","positive"]},"reason":{"type":"string"}},
  "required":["rating","sentiment","reason"]}}}}'

# --- help and the default server ------------------------------------------------------------
help=$("$SERVER" --help)
check "help lists every option" bash -c 'for o in --port --latency-ms --latency-jitter-ms --fail-rate \
    --rate-429 --rate-500 --hang-rate --close-rate --malformed-rate --out-of-range-rate \
    --degrade-above --api-key --max-requests --seed --retry-after --verbose --threads; do
    grep -q -- "$o" <<<"$1" || exit 1; done' _ "$help"

start_server
DEFAULT_PID=$PID

status=$(post "$URL" /v1/chat/completions "$(chat_body "$POSITIVE")")
check "positive review rates 5" test "$status:$(content)" = "200:5"
status=$(post "$URL" /v1/chat/completions "$(chat_body "$NEGATIVE")")
check "negative review rates 1 or 2" bash -c '[[ $1 == 200:1 || $1 == 200:2 ]]' _ "$status:$(content)"
check "response has the chat.completion shape" jq -e '
    (.id | startswith("chatcmpl-")) and .object == "chat.completion" and (.created | type) == "number"
    and .model == "test-model" and .choices[0].index == 0 and .choices[0].message.role == "assistant"
    and .choices[0].finish_reason == "stop"' "$WORK/body"
check "usage is present and adds up" jq -e '.usage.prompt_tokens > 0 and .usage.completion_tokens >= 1
    and .usage.total_tokens == .usage.prompt_tokens + .usage.completion_tokens' "$WORK/body"

body=$(jq -cn '{model: "m", messages: [{role: "system", content: "excellent amazing superb best"},
                                       {role: "user", content: "It was okay."}]}')
post "$URL" /v1/chat/completions "$body" >/dev/null
check "system messages are not rated" test "$(content)" = "3"

status=$(post "$URL" /v1/chat/completions "$(chat_body "$POSITIVE" "$SCHEMA")")
check "json_schema answer is valid JSON with the schema's keys" bash -c '
    jq -r ".choices[0].message.content" "$1" | jq -e "(keys == [\"rating\",\"reason\",\"sentiment\"])
        and .rating == 5 and .sentiment == \"positive\" and (.reason | type) == \"string\"" >/dev/null' \
    _ "$WORK/body"

post "$URL" /v1/chat/completions "$(chat_body "$NEGATIVE" '{"response_format":{"type":"json_object"}}')" >/dev/null
check "json_object answer is {\"rating\":N}" bash -c '[[ $1 == "{\"rating\":1}" || $1 == "{\"rating\":2}" ]]' _ "$(content)"

post "$URL" /v1/chat/completions "$(chat_body "Summarize: one two three four five six seven eight nine ten")" >/dev/null
check "Summarize: answers text from the input" test "$(content)" = "one two three four five six seven eight"

status=$(post "$URL" /v1/embeddings '{"model":"e","input":["first text","second text"],"dimensions":16}')
check "embeddings have the OpenAI list shape" jq -e '.object == "list" and (.data | length) == 2
    and .data[1].index == 1 and .data[0].object == "embedding" and (.data[0].embedding | length) == 16
    and .usage.prompt_tokens > 0 and .model == "e"' "$WORK/body"
first=$(jq -c '.data[0].embedding' "$WORK/body")
post "$URL" /v1/embeddings '{"model":"e","input":"first text"}' >/dev/null
check "embeddings are normalized, 8 dims by default" jq -e '(.data[0].embedding | length) == 8
    and ((.data[0].embedding | map(. * .) | add) - 1 | fabs) < 0.001' "$WORK/body"
post "$URL" /v1/embeddings '{"model":"e","input":["first text","second text"],"dimensions":16}' >/dev/null
check "embeddings are deterministic" test "$(jq -c '.data[0].embedding' "$WORK/body")" = "$first"

status=$(post "$URL" /v1/chat/completions '{"model": "m", "messages": [')
check "400 on a body that is not JSON" bash -c '[[ $1 == 400 ]] && jq -e ".error.message and .error.type" "$2" >/dev/null' _ "$status" "$WORK/body"
status=$(post "$URL" /v1/chat/completions '{"model":"m"}')
check "400 on a body without messages" test "$status" = 400
status=$(curl -sS -o "$WORK/body" -w '%{http_code}' "$URL/v1/nothing-here")
check "404 with a JSON error on unknown paths" bash -c '[[ $1 == 404 ]] && jq -e .error.message "$2" >/dev/null' _ "$status" "$WORK/body"
big="$WORK/big.json"
head -c 1100000 /dev/zero | tr '\0' 'a' >"$big"
status=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 --data-binary "@$big" "$URL/v1/chat/completions")
check "413 on a body over 1 MiB" test "$status" = 413
check "GET /v1/models lists models" bash -c 'curl -sS "$1/v1/models" | jq -e ".object == \"list\" and (.data | length) > 0" >/dev/null' _ "$URL"

curl -sS -X POST "$URL/stats/reset" >/dev/null
for _ in 1 2 3; do post "$URL" /v1/chat/completions "$(chat_body good)" >/dev/null; done
check "/stats counts model requests" bash -c 'curl -sS "$1/stats" | jq -e ".requests == 3 and .ok == 3 and .in_flight == 0" >/dev/null' _ "$URL"

# --- --api-key ------------------------------------------------------------------------------
start_server --api-key sk-test
status=$(post "$URL" /v1/chat/completions "$(chat_body good)" -H 'Authorization: Bearer sk-wrong')
check "401 with a wrong API key" bash -c '[[ $1 == 401 ]] && jq -e ".error.code == \"invalid_api_key\"" "$2" >/dev/null' _ "$status" "$WORK/body"
status=$(post "$URL" /v1/chat/completions "$(chat_body good)")
check "401 without an API key" test "$status" = 401
status=$(post "$URL" /v1/chat/completions "$(chat_body good)" -H 'Authorization: Bearer sk-test')
check "200 with the right API key" test "$status" = 200

# --- --fail-rate 1 --------------------------------------------------------------------------
start_server --fail-rate 1 --retry-after 3
codes="" retry_ok=true
for _ in $(seq 20); do
    status=$(post "$URL" /v1/chat/completions "$(chat_body good)")
    codes+="$status "
    if [[ $status == 429 ]] && ! grep -qi '^retry-after: 3' "$WORK/headers"; then retry_ok=false; fi
    jq -e '.error.message and .error.type' "$WORK/body" >/dev/null || retry_ok=false
done
only_errors() {
    for code in $1; do [[ $code == 429 || $code == 500 ]] || return 1; done
    [[ $1 == *429* && $1 == *500* ]]
}
check "--fail-rate 1 answers only 429 and 500, both seen" only_errors "$codes"
check "429 carries Retry-After and every error an OpenAI error body" $retry_ok

# --- --malformed-rate 1 and --out-of-range-rate 1 ----------------------------------------------
start_server --malformed-rate 1
post "$URL" /v1/chat/completions "$(chat_body "$POSITIVE")" >/dev/null
check "--malformed-rate 1 gives non-number content" bash -c '! [[ $1 =~ ^[[:space:]]*[0-9]+[[:space:]]*$ ]]' _ "$(content)"
post "$URL" /v1/chat/completions "$(chat_body "$POSITIVE" "$SCHEMA")" >/dev/null
check "--malformed-rate 1 gives invalid JSON for structured output" bash -c '! jq -e . >/dev/null 2>&1 <<<"$1"' _ "$(content)"

start_server --out-of-range-rate 1
post "$URL" /v1/chat/completions "$(chat_body "$POSITIVE")" >/dev/null
check "--out-of-range-rate 1 gives a rating outside 1..5" bash -c '[[ $1 == 7 || $1 == 0 ]]' _ "$(content)"

# --- --hang-rate 1 and --close-rate 1 -----------------------------------------------------------
start_server --hang-rate 1
hang_rc=0
curl -sS -o /dev/null --max-time 1 -d "$(chat_body good)" "$URL/v1/chat/completions" 2>/dev/null &
hang_curl=$!
sleep 0.3
check "a hung request does not block others" bash -c 'curl -sS --max-time 1 "$1/stats" | jq -e ".hung == 1 and .in_flight == 1" >/dev/null' _ "$URL"
wait "$hang_curl" || hang_rc=$?
check "--hang-rate 1 makes curl --max-time 1 time out" test "$hang_rc" = 28
released=false
for _ in $(seq 20); do
    if curl -sS "$URL/stats" | jq -e '.in_flight == 0' >/dev/null; then released=true; break; fi
    sleep 0.1
done
check "a hung request is released when the client gives up" $released
# Regression: a released hang once left the suspended count up, so shutdown waited 5 s.
curl -sS -o /dev/null --max-time 3 -d "$(chat_body good)" "$URL/v1/chat/completions" 2>/dev/null &
hang_curl=$!
sleep 0.2
started=$(date +%s%N)
kill -TERM "$PID"
term_rc=0
wait "$PID" || term_rc=$?
stop_ms=$((($(date +%s%N) - started) / 1000000))
wait "$hang_curl" || true
check "SIGTERM with a request hanging exits 0 within 1 s (took ${stop_ms} ms)" \
    bash -c '[[ $1 == 0 && $2 -lt 1000 ]]' _ "$term_rc" "$stop_ms"

start_server --close-rate 1
close_rc=0
curl -sS -o /dev/null --max-time 2 -d "$(chat_body good)" "$URL/v1/chat/completions" 2>/dev/null || close_rc=$?
check "--close-rate 1 closes without an answer" test "$close_rc" = 52

# --- --latency-ms and --max-requests --------------------------------------------------------------
start_server --latency-ms 300
elapsed=$(curl -sS -o /dev/null -w '%{time_total}' -d "$(chat_body good)" "$URL/v1/chat/completions")
check "--latency-ms 300 delays the answer" bash -c 'awk -v t="$1" "BEGIN { exit !(t >= 0.3 && t < 2) }"' _ "$elapsed"

start_server --max-requests 2
codes=""
for _ in 1 2 3; do codes+="$(post "$URL" /v1/chat/completions "$(chat_body good)") "; done
check "--max-requests 2 answers 503 afterwards" test "$codes" = "200 200 503 "

# --- shutdown ---------------------------------------------------------------------------------
kill -TERM "$DEFAULT_PID"
term_rc=0
wait "$DEFAULT_PID" || term_rc=$?
check "SIGTERM exits 0" test "$term_rc" = 0

if ((FAILURES > 0)); then
    echo "$FAILURES check(s) failed"
    exit 1
fi
echo "all checks passed"
