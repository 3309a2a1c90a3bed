#!/usr/bin/env bash
# Every provider end to end (and model.openai's Responses API): each example job in jobs/ runs (the ASan runner) against
# bin/model-server, which speaks that provider's dialect over real HTTP and checks its
# credentials (Azure's api-key, Anthropic's x-api-key and anthropic-version, Bedrock's SigV4
# signature, Gemini's key, Vertex's OAuth tokens from a service-account JWT exchange). Checked:
# the ratings are OpenAI's on the same input (the server rates with one lexicon), tokens are
# counted, refusals and content filters dead-letter their record with the provider's reason,
# each provider's 429 and overload are retried, a wrong key stops the job with a clear message
# and never shows the key, the server refuses a bad SigV4 signature (signed here by a separate
# Python signer), and Vertex refreshes its token before it expires.
. "$(dirname "$0")/../lib.sh"

AWS_KEY_ID=AKIDEXAMPLE
AWS_SECRET=wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY
KEY=k-model-server-e2e-31337
bin/gen-reviews --rows 300 --seed 11 > "$T/in.csv" 2>/dev/null
start_model_server --api-key "$KEY" --aws-access-key-id "$AWS_KEY_ID" --aws-secret-access-key "$AWS_SECRET" \
  --google-key tests/data/vertex/service_account.json
URL=$MODEL_URL
jq --arg uri "$URL/token" '.token_uri = $uri' tests/data/vertex/service_account.json > "$T/key.json"

# run NAME JOB [--set ...]: the job on $T/in.csv, no answer cache (every record over HTTP)
run() {
  local name="$1" job="$2"; shift 2
  $RUNNEL run "$job" --no-cache --set input="${INPUT:-$T/in.csv}" --set output="$T/$name.jsonl" \
    --set errors="$T/$name.err.jsonl" --summary-json "$T/$name.json" "$@" >"$T/$name.log" 2>&1
  echo $? > "$T/$name.rc"
}
ratings() { jq -c '[.review_id, .rating]' "$1" | sort; }

OPENAI_API_KEY=$KEY run openai jobs/review_rating.lua
expect_eq "reference: OpenAI rates every review" 299 "$(wc -l < "$T/openai.jsonl")"

# 1. each provider's job, its ratings against OpenAI's, its tokens
OPENAI_API_KEY=$KEY run openai_responses jobs/review_rating.lua --set api=responses
AZURE_OPENAI_ENDPOINT=$URL AZURE_OPENAI_API_KEY=$KEY run azure jobs/review_rating_azure.lua
AZURE_OPENAI_ENDPOINT=$URL AZURE_OPENAI_API_KEY=$KEY run azure_v1 jobs/review_rating_azure.lua --set api_version=v1
ANTHROPIC_API_KEY=$KEY run anthropic jobs/review_rating_anthropic.lua --set endpoint="$URL"
AWS_REGION=eu-west-1 AWS_ACCESS_KEY_ID=$AWS_KEY_ID AWS_SECRET_ACCESS_KEY=$AWS_SECRET \
  run bedrock jobs/review_rating_bedrock.lua --set endpoint="$URL"
AWS_REGION=eu-west-1 AWS_ACCESS_KEY_ID=$AWS_KEY_ID AWS_SECRET_ACCESS_KEY=$AWS_SECRET \
  AWS_SESSION_TOKEN=session-token-e2e-0042 run bedrock_session jobs/review_rating_bedrock.lua --set endpoint="$URL"
AWS_REGION=us-east-1 AWS_BEARER_TOKEN_BEDROCK=$KEY run bedrock_key jobs/review_rating_bedrock.lua --set endpoint="$URL"
GEMINI_API_KEY=$KEY run gemini jobs/review_rating_gemini.lua --set endpoint="$URL/v1beta"
run vertex jobs/review_rating_vertex.lua --set endpoint="$URL/v1" --set credentials="$T/key.json"
for p in openai_responses azure azure_v1 anthropic bedrock bedrock_session bedrock_key gemini vertex; do
  expect_eq "$p: the job succeeds" 0 "$(cat "$T/$p.rc")"
  check "$p: ratings are OpenAI's" cmp -s <(ratings "$T/openai.jsonl") <(ratings "$T/$p.jsonl")
  check "$p: invariant" invariant_holds "$T/$p.json"
  check "$p: tokens in and out counted" jq -e '.model.tokens_in > 0 and .model.tokens_out > 0' "$T/$p.json"
done
check "anthropic: the cached system prompt is read from the prompt cache" \
  jq -e '.model.tokens_cache_read > 0 and .model.tokens_cache_write > 0 and .model.tokens_cache_read > .model.tokens_cache_write' "$T/anthropic.json"
check "anthropic: cached tokens priced at the cache price (cost below the uncached)" \
  jq -e '.model.cost_usd < (.model.tokens_in * 0.80 + .model.tokens_out * 4.00) / 1e6' "$T/anthropic.json"
expect_eq "vertex: one token exchange for a short job" 1 "$(curl -s "$URL/token/stats" | jq .exchanges)"

# 2. the other tasks: text generation, embeddings, clustering over centroids, classification
# and regression through model.http
run summary jobs/review_summary_ollama.lua --set endpoint="$URL"
check "ollama text_generation: a summary per review" jq -e -s 'length == 300 and all(.[]; (.summary | length) > 0)' "$T/summary.jsonl"
run embeddings jobs/review_embeddings_ollama.lua --set endpoint="$URL"
check "ollama embedding: 8 numbers per review" jq -e -s 'length == 299 and all(.[]; (.embedding | length) == 8)' "$T/embeddings.jsonl"
check "ollama: tokens counted" jq -e '.model.tokens_in > 0' "$T/embeddings.json"
run clusters jobs/review_clusters.lua --set endpoint="$URL"
# the nearest centroid of each embedding, computed here independently of runnel
python3 - "$T/embeddings.jsonl" jobs/review_clusters.lua > "$T/clusters.expected" <<'PY'
import json, math, re, sys
centroids = {}
for line in open(sys.argv[2]):  # the lines "name = { x1, x2, ... }," of the job's centroids
    m = re.match(r'\s*(\w+)\s*=\s*\{([-0-9., ]+)\},?\s*$', line)
    if m: centroids[m.group(1)] = [float(x) for x in m.group(2).split(',')]
def cos(a, b): return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a)) / math.sqrt(sum(y * y for y in b))
for line in open(sys.argv[1]):
    r = json.loads(line)
    best = max(sorted(centroids), key=lambda name: cos(r['embedding'], centroids[name]))
    print(json.dumps([r['review_id'], best], separators=(',', ':')))
PY
check "clustering: the reviews fall in more than one of the job's centroids" test "$(jq -r '.[1]' "$T/clusters.expected" | sort -u | wc -l)" -ge 2
check "clustering: each review in the centroid nearest its embedding" \
  cmp -s <(sort "$T/clusters.expected") <(jq -c '[.review_id, .topic]' "$T/clusters.jsonl" | sort)
MODEL_URL=$URL/endpoints/sentiment/invocations MODEL_API_KEY=$KEY run sentiment jobs/review_sentiment_http.lua
check "http classification: the labels follow OpenAI's ratings" \
  cmp -s <(jq -r '"\(.review_id) \(if .rating >= 4 then "positive" elif .rating == 3 then "neutral" else "negative" end)"' "$T/openai.jsonl" | sort) \
         <(jq -r '"\(.review_id) \(.sentiment)"' "$T/sentiment.jsonl" | sort)
AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=$AWS_KEY_ID AWS_SECRET_ACCESS_KEY=$AWS_SECRET \
  MODEL_URL=$URL/endpoints/sentiment/invocations run sagemaker jobs/review_sentiment_sagemaker.lua
check "http sigv4 (sagemaker): every request signed and checked, the labels those of the key's job" \
  cmp -s <(jq -r '"\(.review_id) \(.sentiment)"' "$T/sentiment.jsonl" | sort) <(jq -r '"\(.review_id) \(.sentiment)"' "$T/sagemaker.jsonl" | sort)
MODEL_URL=$URL/endpoints/stars/invocations MODEL_API_KEY=$KEY run stars jobs/review_stars_http.lua
check "http regression: a number within 1..5 per review, not all whole" \
  jq -e -s 'length == 299 and all(.[]; (.stars | type) == "number" and .stars >= 1 and .stars <= 5) and any(.[]; .stars != (.stars | floor))' "$T/stars.jsonl"

# 3. refusals and content filters: the record is dead-lettered with the provider's reason
cat > "$T/marked.csv" <<'CSV'
Id,ProductId,UserId,ProfileName,HelpfulnessNumerator,HelpfulnessDenominator,Score,Time,Summary,Text
1,P1,U1,A,0,0,5,1300000000,Delicious and fresh,ok
2,P2,U2,B,0,0,1,1300000000,[[filter-answer]] awful,ok
3,P3,U3,C,0,0,1,1300000000,[[filter-prompt]] awful,ok
4,P4,U4,D,0,0,1,1300000000,[[refuse]] awful,ok
5,P5,U5,E,0,0,1,1300000000,[[safety]] awful,ok
6,P6,U6,F,0,0,1,1300000000,[[guardrail]] awful,ok
7,P7,U7,G,0,0,1,1300000000,[[incomplete]] awful,ok
CSV
export INPUT=$T/marked.csv
AZURE_OPENAI_ENDPOINT=$URL AZURE_OPENAI_API_KEY=$KEY run azure_filter jobs/review_rating_azure.lua
expect_eq "azure: two records dead-lettered by the content filter" 2 "$(wc -l < "$T/azure_filter.err.jsonl")"
expect_contains "azure: the withheld answer's reason names the filter" "$T/azure_filter.err.jsonl" "Azure's content filter withheld the answer"
expect_contains "azure: the refused prompt's reason names the category" "$T/azure_filter.err.jsonl" "refused the prompt (jailbreak (detected))"
ANTHROPIC_API_KEY=$KEY run anthropic_refusal jobs/review_rating_anthropic.lua --set endpoint="$URL"
expect_contains "anthropic: a refusal is dead-lettered as one" "$T/anthropic_refusal.err.jsonl" "Claude declined to answer (stop_reason refusal)"
GEMINI_API_KEY=$KEY run gemini_safety jobs/review_rating_gemini.lua --set endpoint="$URL/v1beta"
expect_contains "gemini: SAFETY is dead-lettered as such" "$T/gemini_safety.err.jsonl" "Gemini withheld the answer (finishReason SAFETY)"
AWS_REGION=us-east-1 AWS_BEARER_TOKEN_BEDROCK=$KEY run bedrock_guardrail jobs/review_rating_bedrock.lua --set endpoint="$URL"
expect_contains "bedrock: a guardrail is dead-lettered as such" "$T/bedrock_guardrail.err.jsonl" "a guardrail intervened"
OPENAI_API_KEY=$KEY run responses_marked jobs/review_rating.lua --set api=responses
expect_contains "openai responses: a refusal is dead-lettered with its text" "$T/responses_marked.err.jsonl" \
  "the model refused: I'm sorry, I can't help with that."
expect_contains "openai responses: an incomplete answer is dead-lettered as such" "$T/responses_marked.err.jsonl" \
  "the answer is incomplete (max_output_tokens)"
expect_eq "openai responses: those two dead-lettered, once each" 2 "$(wc -l < "$T/responses_marked.err.jsonl")"
for p in azure_filter anthropic_refusal gemini_safety bedrock_guardrail responses_marked; do
  check "$p: the others are rated" jq -e -s 'any(.[]; .review_id == 1 and .rating == 5)' "$T/$p.jsonl"
done
unset INPUT

# 4. each provider's own 429 and overload, retried: every rating that comes is OpenAI's, and a
# record dead-lettered (its retries used up: rare, as faults are drawn per request) says so
start_model_server --api-key "$KEY" --rate-429 0.1 --rate-500 0.05 --retry-after 0 --seed 7
FAULTY=$MODEL_URL
AZURE_OPENAI_ENDPOINT=$FAULTY AZURE_OPENAI_API_KEY=$KEY run azure_faults jobs/review_rating_azure.lua
ANTHROPIC_API_KEY=$KEY run anthropic_faults jobs/review_rating_anthropic.lua --set endpoint="$FAULTY"
AWS_REGION=us-east-1 AWS_BEARER_TOKEN_BEDROCK=$KEY run bedrock_faults jobs/review_rating_bedrock.lua --set endpoint="$FAULTY"
GEMINI_API_KEY=$KEY run gemini_faults jobs/review_rating_gemini.lua --set endpoint="$FAULTY/v1beta"
run ollama_faults jobs/review_summary_ollama.lua --set endpoint="$FAULTY"
OPENAI_BASE_URL=$FAULTY/v1 OPENAI_API_KEY=$KEY run openai_responses_faults jobs/review_rating.lua --set api=responses
MODEL_URL=$FAULTY/endpoints/x/invocations MODEL_API_KEY=$KEY run http_faults jobs/review_sentiment_http.lua
for p in openai_responses azure anthropic bedrock gemini; do
  check "$p under 429s and 5xx: every rating is OpenAI's" \
    test -z "$(comm -13 <(ratings "$T/openai.jsonl") <(ratings "$T/${p}_faults.jsonl"))"
done
for p in openai_responses azure anthropic bedrock gemini ollama http; do
  check "$p under 429s and 5xx: retried, nearly every record answered" \
    jq -e '.model.retries > 15 and .written >= 285 and .written + .dead_lettered + .filtered == .read' "$T/${p}_faults.json"
  check "$p under 429s and 5xx: a dead letter only after its retries" \
    jq -e -s 'all(.[]; .reason | test("after 6 attempts"))' "$T/${p}_faults.err.jsonl"
done

# 5. a wrong key stops the job, names the provider and the status, and is never printed
WRONG=wrong-key-e2e-5f1c9a7d
fails_clearly() { # NAME TEXT...: exit 1, the texts in the log, the wrong key nowhere
  local name="$1"; shift
  expect_eq "$name: the job fails (exit 1)" 1 "$(cat "$T/$name.rc")"
  for text in "$@"; do expect_contains "$name: says why" "$T/$name.log" "$text"; done
  check "$name: the key is not printed" bash -c "! grep -rq -- '$WRONG' '$T/$name.log' '$T/$name.err.jsonl' '$T/$name.json' 2>/dev/null"
}
OPENAI_API_KEY=$WRONG run openai_responses_wrong jobs/review_rating.lua --set api=responses
fails_clearly openai_responses_wrong "model.openai" "refused the credentials" "HTTP 401"
AZURE_OPENAI_ENDPOINT=$URL AZURE_OPENAI_API_KEY=$WRONG run azure_wrong jobs/review_rating_azure.lua
fails_clearly azure_wrong "model.azure_openai" "Azure refused the credentials" "HTTP 401"
ANTHROPIC_API_KEY=$WRONG run anthropic_wrong jobs/review_rating_anthropic.lua --set endpoint="$URL"
fails_clearly anthropic_wrong "model.anthropic" "authentication_error" "HTTP 401"
GEMINI_API_KEY=$WRONG run gemini_wrong jobs/review_rating_gemini.lua --set endpoint="$URL/v1beta"
fails_clearly gemini_wrong "model.gemini" "API_KEY_INVALID" "HTTP 400"
MODEL_URL=$URL/endpoints/x/invocations MODEL_API_KEY=$WRONG run http_wrong jobs/review_sentiment_http.lua
fails_clearly http_wrong "model.http" "refused the credentials" "HTTP 403"
AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=$AWS_KEY_ID AWS_SECRET_ACCESS_KEY=$WRONG \
  MODEL_URL=$URL/endpoints/x/invocations run sagemaker_wrong jobs/review_sentiment_sagemaker.lua
fails_clearly sagemaker_wrong "model.http" "signature we calculated does not match" "HTTP 403"
AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=$AWS_KEY_ID AWS_SECRET_ACCESS_KEY=$WRONG AWS_SESSION_TOKEN=$WRONG-session \
  run bedrock_wrong jobs/review_rating_bedrock.lua --set endpoint="$URL"
fails_clearly bedrock_wrong "model.bedrock" "InvalidSignatureException" "HTTP 403"
AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=AKIDUNKNOWN AWS_SECRET_ACCESS_KEY=$AWS_SECRET \
  run bedrock_unknown jobs/review_rating_bedrock.lua --set endpoint="$URL"
expect_contains "bedrock: an unknown key id is refused as such" "$T/bedrock_unknown.log" "UnrecognizedClientException"
check "bedrock: the secret key is not printed" bash -c "! grep -q -- '$AWS_SECRET' '$T/bedrock_unknown.log' '$T/bedrock.log'"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/other.pem" 2>/dev/null
jq --arg uri "$URL/token" --rawfile pem "$T/other.pem" '.token_uri = $uri | .private_key = $pem' \
  tests/data/vertex/service_account.json > "$T/wrong_key.json"
run vertex_wrong jobs/review_rating_vertex.lua --set endpoint="$URL/v1" --set credentials="$T/wrong_key.json"
expect_contains "vertex: a JWT the token endpoint refuses stops the job" "$T/vertex_wrong.log" \
  "refused the service account key of runnel-ratings@runnel-test.iam.gserviceaccount.com (HTTP 400: invalid_grant: Invalid JWT Signature.)"
check "vertex: no record was sent without a token" jq -e '.model.requests == 0' "$T/vertex_wrong.json"
check "vertex: the private key is not printed" bash -c "! grep -q 'PRIVATE KEY' '$T/vertex_wrong.log'"

# 6. SigV4 checked by the server, against a signer written here (Python, from AWS's documented
# algorithm): a good signature passes, a changed one, a changed body or an old date do not
python3 - "$URL" "$AWS_KEY_ID" "$AWS_SECRET" > "$T/sigv4.txt" <<'PY'
import datetime, hashlib, hmac, json, sys, urllib.parse, urllib.request, urllib.error
url, key_id, secret = sys.argv[1:4]
host = urllib.parse.urlparse(url).netloc
path = '/model/' + urllib.parse.quote('anthropic.claude-3-haiku-20240307-v1:0', safe='') + '/converse'
body = json.dumps({"messages": [{"role": "user", "content": [{"text": "Delicious, the best"}]}]})
def sign(body, date, secret):
    canon_uri = '/'.join(urllib.parse.quote(s, safe='-_.~') for s in path.split('/'))
    headers = {'content-type': 'application/json', 'host': host, 'x-amz-date': date}
    names = sorted(headers)
    creq = '\n'.join(['POST', canon_uri, '', ''.join(f'{n}:{headers[n]}\n' for n in names), ';'.join(names),
                      hashlib.sha256(body.encode()).hexdigest()])
    scope = f'{date[:8]}/us-east-1/bedrock/aws4_request'
    sts = '\n'.join(['AWS4-HMAC-SHA256', date, scope, hashlib.sha256(creq.encode()).hexdigest()])
    k = hmac.new(('AWS4' + secret).encode(), date[:8].encode(), hashlib.sha256).digest()
    for part in ('us-east-1', 'bedrock', 'aws4_request'):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    return f'AWS4-HMAC-SHA256 Credential={key_id}/{scope}, SignedHeaders={";".join(names)}, Signature={sig}'
def send(name, auth, date, sent_body):
    req = urllib.request.Request(url + path, data=sent_body.encode(), method='POST',
                                 headers={'Content-Type': 'application/json', 'X-Amz-Date': date, 'Authorization': auth})
    try:
        with urllib.request.urlopen(req) as r: print(name, r.status, json.load(r)['output']['message']['content'][0]['text'])
    except urllib.error.HTTPError as e:
        print(name, e.code, e.headers.get('x-amzn-ErrorType', '').split(':')[0])
now = datetime.datetime.now(datetime.timezone.utc)
date = now.strftime('%Y%m%dT%H%M%SZ')
good = sign(body, date, secret)
send('good', good, date, body)
send('tampered', good[:-1] + ('0' if good[-1] != '0' else '1'), date, body)
send('body_changed', good, date, body.replace('best', 'worst'))
send('wrong_secret', sign(body, date, secret + 'x'), date, body)
old = (now - datetime.timedelta(minutes=20)).strftime('%Y%m%dT%H%M%SZ')
send('old_date', sign(body, old, secret), old, body)
PY
expect_eq "sigv4: an independently signed request is answered" "good 200 5" "$(grep '^good' "$T/sigv4.txt")"
expect_eq "sigv4: a changed signature is refused" "tampered 403 InvalidSignatureException" "$(grep '^tampered' "$T/sigv4.txt")"
expect_eq "sigv4: a body changed after signing is refused" "body_changed 403 InvalidSignatureException" "$(grep '^body_changed' "$T/sigv4.txt")"
expect_eq "sigv4: a wrong secret is refused" "wrong_secret 403 InvalidSignatureException" "$(grep '^wrong_secret' "$T/sigv4.txt")"
expect_eq "sigv4: a signature 20 minutes old is refused" "old_date 403 InvalidSignatureException" "$(grep '^old_date' "$T/sigv4.txt")"

# 7. Vertex: tokens that last 2 s on a job of several seconds are refreshed before they expire
start_model_server --google-key tests/data/vertex/service_account.json --token-lifetime 2 --latency-ms 250
SLOW=$MODEL_URL
jq --arg uri "$SLOW/token" '.token_uri = $uri' tests/data/vertex/service_account.json > "$T/slow_key.json"
run vertex_refresh jobs/review_rating_vertex.lua --set endpoint="$SLOW/v1" --set credentials="$T/slow_key.json"
check "vertex refresh: ratings are OpenAI's" cmp -s <(ratings "$T/openai.jsonl") <(ratings "$T/vertex_refresh.jsonl")
curl -s "$SLOW/token/stats" > "$T/token_stats.json"
check "vertex refresh: several token exchanges" jq -e '.exchanges >= 2' "$T/token_stats.json"
check "vertex refresh: no call came with an expired token" jq -e '.expired_calls == 0 and .refused == 0' "$T/token_stats.json"
check "vertex refresh: no retry was needed" jq -e '.model.retries == 0 and .model.failed == 0' "$T/vertex_refresh.json"
finish
