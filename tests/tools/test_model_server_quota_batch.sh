#!/usr/bin/env bash
# bin/model-server's quotas (--rpm, --tpm) and batch API (/v1/files, /v1/batches), checked over
# HTTP with curl and jq, as OpenAI documents them: the rate-limit headers on every answer, a 429
# with Retry-After from an empty bucket, the token estimate (characters / 4 + max_tokens); a
# batch's life on the --batch-speed clock, its output and error files, validation failures,
# expiry, cancellation, and the errors for what does not exist.
. "$(dirname "$0")/../lib.sh"

chat() { # CONTENT [MAX_TOKENS]
  if [ -n "${2:-}" ]; then jq -nc --arg c "$1" --argjson m "$2" '{model:"m", messages:[{role:"user", content:$c}], max_tokens:$m}'
  else jq -nc --arg c "$1" '{model:"m", messages:[{role:"user", content:$c}]}'; fi
}
header() { grep -i "^$2:" "$1" | head -1 | cut -d' ' -f2- | tr -d '\r'; }

# ---- quotas -----------------------------------------------------------------------------------
start_model_server --rpm 3 --tpm 100
curl -sS -D "$T/h1" -o "$T/b1" "$MODEL_URL/v1/chat/completions" -d "$(chat "$(printf 'x%.0s' $(seq 40))" 20)"
expect_eq "quota: the limits are announced" "3 100" "$(header "$T/h1" x-ratelimit-limit-requests) $(header "$T/h1" x-ratelimit-limit-tokens)"
expect_eq "quota: one request and 40/4 + 20 = 30 tokens counted" "2 70" \
  "$(header "$T/h1" x-ratelimit-remaining-requests) $(header "$T/h1" x-ratelimit-remaining-tokens)"
check "quota: resets are durations like 20s and 17.9s (a minute's refill of what was taken)" \
  bash -c "[[ '$(header "$T/h1" x-ratelimit-reset-requests)' =~ ^(19\.[0-9]+|20)s$ && '$(header "$T/h1" x-ratelimit-reset-tokens)' =~ ^1[78](\.[0-9]+)?s$ ]]"
curl -sS -D "$T/h2" -o /dev/null "$MODEL_URL/v1/chat/completions" -d "$(chat "$(printf 'y%.0s' $(seq 200))")"
expect_eq "quota: 200/4 = 50 tokens more" 20 "$(header "$T/h2" x-ratelimit-remaining-tokens)"
code=$(curl -sS -D "$T/h3" -o "$T/b3" -w '%{http_code}' "$MODEL_URL/v1/chat/completions" -d "$(chat "$(printf 'z%.0s' $(seq 200))")")
expect_eq "quota: a request the token bucket cannot hold gets 429" 429 "$code"
check "quota: with Retry-After in whole seconds" bash -c "[[ '$(header "$T/h3" retry-after)' =~ ^[0-9]+$ ]]"
check "quota: and OpenAI's error" jq -e '.error.type == "tokens" and .error.code == "rate_limit_exceeded" and (.error.message | test("tokens per min \\(TPM\\): Limit 100"))' "$T/b3"
code=$(curl -sS -D "$T/h4" -o "$T/b4" -w '%{http_code}' "$MODEL_URL/v1/chat/completions" -d "$(chat ok)")
expect_eq "quota: a small one still fits" 200 "$code"
code=$(curl -sS -o "$T/b5" -w '%{http_code}' "$MODEL_URL/v1/chat/completions" -d "$(chat ok)")
expect_eq "quota: the fourth request in a minute of rpm 3 gets 429" 429 "$code"
check "quota: on requests" jq -e '.error.type == "requests"' "$T/b5"
expect_eq "quota: /stats counts what was taken and refused" "3 2 1 1" \
  "$(curl -sS "$MODEL_URL/stats" | jq -r '.quota | "\(.admitted) \(.tokens > 80 | if . then 2 else 0 end) \(.refused_tokens) \(.refused_requests)"')"

# ---- the batch API ------------------------------------------------------------------------------
start_model_server --batch-speed 100
line() { jq -nc --arg id "$1" --arg u "${3:-/v1/chat/completions}" --arg c "$2" '{custom_id:$id, method:"POST", url:$u, body:{model:"m", messages:[{role:"user", content:$c}]}}'; }
{ line a1 "awful terrible"; line a2 "excellent delicious"; line a3 "okay"; } > "$T/in.jsonl"
curl -sS "$MODEL_URL/v1/files" -F purpose=batch -F "file=@$T/in.jsonl" > "$T/file.json"
check "batch: an upload is a file object" jq -e '.object == "file" and .purpose == "batch" and .filename == "in.jsonl" and (.id | startswith("file-"))' "$T/file.json"
file_id=$(jq -r .id "$T/file.json")
check "batch: its content reads back" bash -c "cmp -s '$T/in.jsonl' <(curl -sS '$MODEL_URL/v1/files/$file_id/content')"
code=$(curl -sS -o "$T/bad.json" -w '%{http_code}' "$MODEL_URL/v1/files" -F purpose=fine-tune -F "file=@$T/in.jsonl")
expect_eq "batch: another purpose is refused" 400 "$code"
create() { curl -sS "$MODEL_URL/v1/batches" -d "$(jq -nc --arg f "$1" --arg w "${2:-24h}" '{input_file_id:$f, endpoint:"/v1/chat/completions", completion_window:$w, metadata:{job:"t"}}')"; }
create "$file_id" > "$T/b.json"
check "batch: created validating" jq -e '.object == "batch" and .status == "validating" and .input_file_id != null and .metadata.job == "t" and .output_file_id == null' "$T/b.json"
batch_id=$(jq -r .id "$T/b.json")
code=$(curl -sS -o /dev/null -w '%{http_code}' "$MODEL_URL/v1/batches" -d "$(jq -nc '{input_file_id:"file-nope", endpoint:"/v1/chat/completions", completion_window:"24h"}')")
expect_eq "batch: an unknown input file is 404" 404 "$code"
create "$file_id" 1h > "$T/window.json"
check "batch: a window other than 24h is refused" jq -e '.error.message | test("completion_window")' "$T/window.json"
for _ in $(seq 100); do
  status=$(curl -sS "$MODEL_URL/v1/batches/$batch_id" | tee "$T/b.json" | jq -r .status)
  [ "$status" = completed ] && break
  sleep 0.05
done
expect_eq "batch: it completes on the fast clock" completed "$status"
check "batch: with its counts and an output file, no error file" \
  jq -e '.request_counts == {total: 3, completed: 3, failed: 0} and (.output_file_id | startswith("file-")) and .error_file_id == null' "$T/b.json"
curl -sS "$MODEL_URL/v1/files/$(jq -r .output_file_id "$T/b.json")/content" > "$T/out.jsonl"
check "batch: one output line per request, by custom_id, with the live answer" \
  jq -e -s 'length == 3 and (map(.custom_id) | sort) == ["a1", "a2", "a3"] and all(.response.status_code == 200 and .error == null)
            and (map(select(.custom_id == "a1"))[0].response.body.choices[0].message.content == "1")
            and (map(select(.custom_id == "a2"))[0].response.body.choices[0].message.content == "5")' "$T/out.jsonl"
check "batch: the list shows it" bash -c "curl -sS '$MODEL_URL/v1/batches' | jq -e '.object == \"list\" and .data[0].id == \"$batch_id\"' >/dev/null"
code=$(curl -sS -o /dev/null -w '%{http_code}' "$MODEL_URL/v1/batches/batch_nope")
expect_eq "batch: an unknown batch is 404" 404 "$code"

# validation: a duplicate custom_id, a wrong url, a line that is not JSON
{ line d1 x; line d1 y; line d2 z /v1/embeddings; echo 'not json'; } > "$T/bad.jsonl"
bad_file=$(curl -sS "$MODEL_URL/v1/files" -F purpose=batch -F "file=@$T/bad.jsonl" | jq -r .id)
bad_batch=$(create "$bad_file" | jq -r .id)
for _ in $(seq 100); do
  status=$(curl -sS "$MODEL_URL/v1/batches/$bad_batch" | tee "$T/bad-b.json" | jq -r .status)
  [ "$status" = failed ] && break
  sleep 0.05
done
check "batch: an input with bad lines fails validation, each error with its line" \
  jq -e '.status == "failed" and ([.errors.data[] | "\(.code) \(.line)"] == ["duplicate_custom_id 2", "mismatched_endpoint 3", "invalid_json_line 4"])' "$T/bad-b.json"

# per-line faults, expiry, cancel
start_model_server --batch-speed 100 --batch-line-500 0.5 --batch-expire-every 2
for i in $(seq 1 20); do line "r$i" "good $i"; done > "$T/twenty.jsonl"
f=$(curl -sS "$MODEL_URL/v1/files" -F purpose=batch -F "file=@$T/twenty.jsonl" | jq -r .id)
first=$(create "$f" | jq -r .id); second=$(create "$f" | jq -r .id)
for _ in $(seq 100); do
  s1=$(curl -sS "$MODEL_URL/v1/batches/$first" | tee "$T/first.json" | jq -r .status)
  s2=$(curl -sS "$MODEL_URL/v1/batches/$second" | tee "$T/second.json" | jq -r .status)
  [ "$s1" = completed ] && [ "$s2" = expired ] && break
  sleep 0.05
done
expect_eq "faults: the first completes, every second batch expires" "completed expired" "$s1 $s2"
curl -sS "$MODEL_URL/v1/files/$(jq -r .error_file_id "$T/first.json")/content" > "$T/errors.jsonl"
check "faults: failed lines are in the error file with their status and error body" \
  jq -e -s 'length > 3 and all(.response.status_code == 500 and .response.body.error.type == "server_error")' "$T/errors.jsonl"
expect_eq "faults: the output and error files hold every line once" 20 \
  "$(( $(jq -r .request_counts.completed "$T/first.json") + $(wc -l < "$T/errors.jsonl") ))"
curl -sS "$MODEL_URL/v1/files/$(jq -r .error_file_id "$T/second.json")/content" > "$T/expired.jsonl"
check "faults: the expired batch's unrun half is batch_expired with no response" \
  jq -e -s 'map(select(.error.code == "batch_expired")) | length == 10 and all(.response == null)' "$T/expired.jsonl"
third=$(create "$f" | jq -r .id)
curl -sS -X POST "$MODEL_URL/v1/batches/$third/cancel" > "$T/cancel.json"
check "cancel: the batch is cancelled at once, nothing answered (it was validating)" \
  jq -e '.status == "cancelled" and .output_file_id == null and .request_counts.failed == 20' "$T/cancel.json"
expect_eq "stats: files uploaded and batches made are counted" "1 3" \
  "$(curl -sS "$MODEL_URL/stats" | jq -r '"\(.batch.files_uploaded) \(.batch.batches_created)"')"

# the api key guards the batch API too
start_model_server --api-key sk-right-key-1234 --batch-speed 100
code=$(curl -sS -o "$T/401.json" -w '%{http_code}' "$MODEL_URL/v1/files" -F purpose=batch -F "file=@$T/in.jsonl")
expect_eq "auth: an upload without the key is 401" 401 "$code"
code=$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer sk-right-key-1234" "$MODEL_URL/v1/files" -F purpose=batch -F "file=@$T/in.jsonl")
expect_eq "auth: with it, 200" 200 "$code"
finish
