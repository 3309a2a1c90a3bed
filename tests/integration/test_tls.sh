#!/usr/bin/env bash
# TLS and proxies (issue 17), over real TLS on loopback: nghttpx (Debian nghttp2-proxy, a real
# TLS and HTTP/2 front) in front of bin/model-server, with certificates from a test CA made here
# with openssl, and tools/connect-proxy.py as the proxy.
#   ca        refused without tls.ca_file (unknown CA), accepted with it
#   name      the certificate is for model.internal: refused at 127.0.0.1, accepted with
#             tls.server_name = "model.internal"
#   mtls      a front that requires a client certificate: refused without one, accepted with
#             tls.cert_file + key_file (a path, and the PEM text from a secret)
#   h2        HTTP/2 negotiated by ALPN, 600 calls multiplexed on few connections (counted in
#             the front's access log by client port)
#   proxy     through a CONNECT proxy with credentials (a secret), refused with wrong ones (407),
#             credentials inline in the URL (a wrong inline password, and one in a URL curl
#             cannot parse, never shown), HTTPS_PROXY from the environment, no_proxy bypassing it
#   verify    tls.verify = false goes through and warns once
#   check     runnel check refuses a misspelt tls option and a TLS version it does not know
. "$(dirname "$0")/../lib.sh"
command -v nghttpx >/dev/null || { fail "nghttpx (nghttp2-proxy) is missing: make deps installs it"; finish; }
command -v openssl >/dev/null || { fail "openssl is missing: make deps installs it"; finish; }

# ---- a test CA, a server certificate for model.internal and localhost, a client certificate
C="$T/pki"; mkdir -p "$C"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$C/ca.key" -out "$C/ca.crt" -days 2 -subj "/CN=runnel test CA" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$C/srv.key" -out "$C/srv.csr" -subj "/CN=model.internal" 2>/dev/null
printf 'subjectAltName=DNS:model.internal,DNS:localhost\n' >"$C/srv.ext"
openssl x509 -req -in "$C/srv.csr" -CA "$C/ca.crt" -CAkey "$C/ca.key" -CAcreateserial -out "$C/srv.crt" -days 2 -extfile "$C/srv.ext" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$C/cli.key" -out "$C/cli.csr" -subj "/CN=runnel client" 2>/dev/null
openssl x509 -req -in "$C/cli.csr" -CA "$C/ca.crt" -CAkey "$C/ca.key" -CAcreateserial -out "$C/cli.crt" -days 2 2>/dev/null
[ -s "$C/cli.crt" ] && [ -s "$C/srv.crt" ] || { fail "openssl made no certificates"; finish; }

start_model_server
backend_port="${MODEL_URL##*:}"
# start_front NAME [nghttpx options...]: a TLS front on a free port; sets FRONT_PORT
start_front() {
  local name="$1"; shift
  FRONT_PORT="$(free_port)"
  nghttpx --conf=/dev/null --frontend="127.0.0.1,$FRONT_PORT" --backend="127.0.0.1,$backend_port;;proto=http/1.1" \
    --workers=1 --no-ocsp --accesslog-file="$T/$name.access" --accesslog-format='$remote_port $alpn $status' \
    --errorlog-file="$T/$name.errlog" "$@" "$C/srv.key" "$C/srv.crt" >"$T/$name.out" 2>&1 &
  _pids+=("$!")
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$FRONT_PORT") 2>/dev/null && return 0; sleep 0.05; done
  echo "nghttpx did not start:"; cat "$T/$name.errlog" "$T/$name.out"; exit 1
}
start_front plain
TLS_PORT="$FRONT_PORT"
start_front mtls --verify-client --verify-client-cacert="$C/ca.crt"
MTLS_PORT="$FRONT_PORT"

bin/gen-reviews --rows 600 --seed 17 >"$T/in.csv" 2>/dev/null
bin/gen-reviews --rows 20 --seed 18 >"$T/small.csv" 2>/dev/null

# run NAME ENDPOINT INPUT 'EXTRA LUA OPTIONS' [runnel options...]: the rating job with EXTRA in
# model.openai; output, errors, summary and stderr under $T/NAME.*; its exit code in $T/NAME.rc.
run() {
  local name="$1" endpoint="$2" input="$3" extra="$4"; shift 4
  cat >"$T/$name.lua" <<LUA
return job {
  name = "$name",
  source = source.csv { path = "$input", select = { id = "Id", summary = "Summary" }, types = { id = "integer" } },
  predict = model.openai {
    endpoint = "$endpoint", model = "gpt-4o-mini", cache = false, api_key = "sk-test",
    prompt = "Review title: {{summary}}",
    output = { rating = { type = "integer", min = 1, max = 5 } },
    limits = { concurrency = ${CONCURRENCY:-64}, retries = 0, outage = "2s" },
    $extra
  },
  map = function(r) return { id = r.id, rating = r.rating } end,
  sinks = sink.jsonl { path = "$T/$name.jsonl" },
  errors = sink.jsonl { path = "$T/$name.errors.jsonl" },
}
LUA
  "$RUNNEL" run "$T/$name.lua" --quiet --summary-json "$T/$name.json" "$@" >"$T/$name.out" 2>"$T/$name.err"
  echo $? >"$T/$name.rc"
}
written() { sj "$T/$1.json" .written; }
# why NAME: what the runner said and what the dead letters say, in one file
why() { cat "$T/$1.err" "$T/$1.errors.jsonl" 2>/dev/null >"$T/$1.why"; echo "$T/$1.why"; }
ca="tls = { ca_file = \"$C/ca.crt\" },"

# ---- ca
run noca "https://localhost:$TLS_PORT/v1" "$T/small.csv" ""
expect_eq "ca: nothing written without the CA" 0 "$(written noca)"
expect_contains "ca: the cause is named" "$(why noca)" "TLS with localhost:$TLS_PORT: its certificate is signed by an unknown CA (give the CA as tls.ca_file"
run withca "https://localhost:$TLS_PORT/v1" "$T/in.csv" "$ca"
expect_eq "ca: every record written with tls.ca_file" 600 "$(written withca)"
expect_eq "ca: no dead letters" 0 "$(sj "$T/withca.json" .dead_lettered)"

# ---- name
run wrongname "https://127.0.0.1:$TLS_PORT/v1" "$T/small.csv" "$ca"
expect_eq "name: nothing written when the certificate is for another name" 0 "$(written wrongname)"
expect_contains "name: the mismatch is named" "$(why wrongname)" "its certificate is for another name"
run servername "https://127.0.0.1:$TLS_PORT/v1" "$T/small.csv" "tls = { ca_file = \"$C/ca.crt\", server_name = \"model.internal\" },"
expect_eq "name: accepted with tls.server_name" 20 "$(written servername)"
run othername "https://127.0.0.1:$TLS_PORT/v1" "$T/small.csv" "tls = { ca_file = \"$C/ca.crt\", server_name = \"other.internal\" },"
expect_eq "name: a wrong tls.server_name is refused" 0 "$(written othername)"
expect_contains "name: ... and named" "$(why othername)" "its certificate is for another name"

# ---- mtls
# one call at a time: each makes its own connection and sees the server's refusal (calls that
# wait to share a connection that fails see only its end)
CONCURRENCY=1 run nocert "https://localhost:$MTLS_PORT/v1" "$T/small.csv" "$ca"
expect_eq "mtls: nothing written without a client certificate" 0 "$(written nocert)"
# TLS 1.3 asks for the certificate after the handshake: a call sees the server's alert, or its
# first write finds the connection closed; both are told as the certificate's
expect_contains "mtls: the refusal is named" "$(why nocert)" "TLS with localhost:$MTLS_PORT: it"
# an endpoint that refuses every call is an outage (issue 15): the job stops after
# limits.outage, and what it says names the cause
check "mtls: ... as the client certificate's" grep -q "client certificate" "$T/nocert.why"
run cert "https://localhost:$MTLS_PORT/v1" "$T/small.csv" \
  "tls = { ca_file = \"$C/ca.crt\", cert_file = \"$C/cli.crt\", key_file = \"$C/cli.key\" },"
expect_eq "mtls: accepted with the client certificate" 20 "$(written cert)"
export CLIENT_KEY_PEM="$(cat "$C/cli.key")"
run certsecret "https://localhost:$MTLS_PORT/v1" "$T/small.csv" \
  "tls = { ca_file = \"$C/ca.crt\", cert_file = \"$C/cli.crt\", key_file = secret(\"CLIENT_KEY_PEM\") },"
expect_eq "mtls: accepted with the key's PEM text from a secret" 20 "$(written certsecret)"
run badkey "https://localhost:$MTLS_PORT/v1" "$T/small.csv" \
  "tls = { ca_file = \"$C/ca.crt\", cert_file = \"$C/cli.crt\", key_file = \"$T/none.key\" },"
expect_eq "mtls: a missing key file stops the job before it starts" 1 "$(cat "$T/badkey.rc")"
expect_contains "mtls: ... naming the option and the file" "$T/badkey.err" "tls.key_file: file: No such file or directory"

# ---- h2: 600 calls of the ca run above, multiplexed
conns="$(awk '$2 == "h2" {print $1}' "$T/plain.access" | sort -u | wc -l)"
calls="$(awk '$2 == "h2" && $3 == 200' "$T/plain.access" | wc -l)"
check "h2: every call of the ca run went over HTTP/2 ($calls calls)" test "$calls" -ge 600
check "h2: ... on few connections ($conns)" test "$conns" -le 4

# ---- proxy
PROXY_OUT="$T/proxy.out"
python3 tools/connect-proxy.py --auth "runnel:s3cret" >"$PROXY_OUT" 2>"$T/proxy.err" &
_pids+=("$!")
for _ in $(seq 100); do grep -q '^listening on ' "$PROXY_OUT" 2>/dev/null && break; sleep 0.05; done
PROXY_URL="$(sed -n 's/^listening on //p' "$PROXY_OUT")"
[ -n "$PROXY_URL" ] || { fail "connect-proxy did not start"; cat "$T/proxy.err"; finish; }
export PROXY_PASSWORD=s3cret
tunnels() { grep -c "^tunnel 127.0.0.1:$TLS_PORT\|^tunnel localhost:$TLS_PORT" "$PROXY_OUT"; }
run proxied "https://localhost:$TLS_PORT/v1" "$T/small.csv" \
  "$ca proxy = { url = \"$PROXY_URL\", user = \"runnel\", password = secret(\"PROXY_PASSWORD\") },"
expect_eq "proxy: every record through the proxy" 20 "$(written proxied)"
check "proxy: the proxy carried the traffic ($(tunnels) tunnels)" test "$(tunnels)" -ge 1
PROXY_PASSWORD=wrong run badproxy "https://localhost:$TLS_PORT/v1" "$T/small.csv" \
  "$ca proxy = { url = \"$PROXY_URL\", user = \"runnel\", password = secret(\"PROXY_PASSWORD\") },"
expect_eq "proxy: nothing written with wrong credentials" 0 "$(written badproxy)"
expect_contains "proxy: the 407 is named" "$(why badproxy)" "proxy for localhost:$TLS_PORT: the proxy wants credentials, or refused them"
if grep -q "wrong" "$T/badproxy.why"; then fail "proxy: the password shows in the messages"; else pass "proxy: the password never shows"; fi
# credentials inline in the URL, a plain string: they work, and the password is a secret
# (redacted from stderr, the summary JSON and the dead letters) as proxy.password is
# shows NAME TEXT...: is any TEXT in what run NAME left behind?
shows() { local n="$1"; shift; for x in "$@"; do grep -qF -- "$x" "$T/$n.err" "$T/$n.out" "$T/$n.json" "$T/$n.errors.jsonl" 2>/dev/null && return 0; done; return 1; }
run inlineproxy "https://localhost:$TLS_PORT/v1" "$T/small.csv" "$ca proxy = \"http://runnel:s3cret@${PROXY_URL#http://}\","
expect_eq "proxy: credentials inline in its URL" 20 "$(written inlineproxy)"
run inlinewrong "https://localhost:$TLS_PORT/v1" "$T/small.csv" "$ca proxy = \"http://runnel:Wr0ng%21Inl1ne@${PROXY_URL#http://}\","
expect_eq "proxy: nothing written with wrong inline credentials" 0 "$(written inlinewrong)"
expect_contains "proxy: ... the 407 is named" "$(why inlinewrong)" "the proxy wants credentials, or refused them"
if shows inlinewrong "Wr0ng%21Inl1ne" "Wr0ng!Inl1ne"; then fail "proxy: the inline password shows"; else pass "proxy: the inline password never shows, as written or decoded"; fi
run inlinebad "https://localhost:$TLS_PORT/v1" "$T/small.csv" "$ca proxy = \"http://runnel:Inl1ne%40Pa55@127.0.0.1:99999\","
expect_eq "proxy: a URL curl cannot use stops the job before it starts" 1 "$(cat "$T/inlinebad.rc")"
expect_contains "proxy: ... naming the option and the fault" "$(why inlinebad)" "proxy.url: not a URL curl can use (Port number was not a decimal number between 0 and 65535)"
if shows inlinebad "Inl1ne%40Pa55" "Inl1ne@Pa55"; then fail "proxy: the inline password of a bad URL shows"; else pass "proxy: the inline password of a bad URL never shows"; fi
before="$(tunnels)"
HTTPS_PROXY="http://runnel:s3cret@${PROXY_URL#http://}" run envproxy "https://localhost:$TLS_PORT/v1" "$T/small.csv" "$ca"
expect_eq "proxy: HTTPS_PROXY from the environment" 20 "$(written envproxy)"
check "proxy: ... through the proxy" test "$(tunnels)" -gt "$before"
HTTPS_PROXY="http://runnel:Env%40Pa55@127.0.0.1:99999" run envbad "https://localhost:$TLS_PORT/v1" "$T/small.csv" "$ca"
# (curl reads the variable at each call: a proxy it cannot use is an endpoint that does not
# answer, so the job stops after limits.outage with nothing dead-lettered)
expect_contains "proxy: an HTTPS_PROXY curl cannot parse is named as such" "$(why envbad)" "Unsupported proxy syntax in 'http://runnel:[redacted]@127.0.0.1:99999'"
expect_eq "proxy: ... the job stops (limits.outage)" 1 "$(cat "$T/envbad.rc")"
expect_eq "proxy: ... with no record dead-lettered" 0 "$(sj "$T/envbad.json" .dead_lettered)"
if shows envbad "Env%40Pa55" "Env@Pa55"; then fail "proxy: HTTPS_PROXY's inline password shows"; else pass "proxy: HTTPS_PROXY's inline password never shows"; fi
before="$(tunnels)"
run noproxy "https://localhost:$TLS_PORT/v1" "$T/small.csv" \
  "$ca proxy = { url = \"$PROXY_URL\", no_proxy = \"localhost\" },"
expect_eq "proxy: no_proxy reaches the host directly" 20 "$(written noproxy)"
expect_eq "proxy: ... with no tunnel" "$before" "$(tunnels)"

# ---- verify = false
run noverify "https://localhost:$TLS_PORT/v1" "$T/small.csv" "tls = { verify = false },"
expect_eq "verify: verify = false goes through" 20 "$(written noverify)"
expect_eq "verify: ... and warns once" 1 "$(grep -c 'tls.verify = false' "$T/noverify.err")"

# ---- check
cat >"$T/typo.lua" <<'LUA'
return job { name = "typo", source = source.csv { path = "x.csv" },
  predict = model.openai { model = "m", prompt = "x", tls = { ca_fiel = "ca.pem" } }, sinks = sink.stdout {} }
LUA
"$RUNNEL" check "$T/typo.lua" >"$T/typo.out" 2>&1
expect_contains "check: a misspelt tls option, with did-you-mean" "$T/typo.out" "ca_file"
cat >"$T/tls11.lua" <<'LUA'
return job { name = "tls11", source = source.csv { path = "x.csv" },
  predict = model.openai { model = "m", prompt = "x", tls = { min_version = "1.1" } }, sinks = sink.stdout {} }
LUA
if "$RUNNEL" check "$T/tls11.lua" >"$T/tls11.out" 2>&1; then fail "check: TLS 1.1 accepted"; else pass "check: TLS 1.1 refused"; fi
expect_contains "check: ... naming the choices" "$T/tls11.out" "min_version"
finish
