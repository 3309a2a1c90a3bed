# tests/lib.sh: helpers for script tests. Source it: . tests/lib.sh
# Each check prints PASS/FAIL; the test exits non-zero at the end if any check failed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUNNEL="${RUNNEL:-$PWD/build/asan/runnel}"
export RUNNEL_LIB="${RUNNEL_LIB:-$PWD/scripts}"
T="$(mktemp -d /tmp/runnel-test.XXXXXX)"
# Sanitizer reports go to files that finish() turns into failures, so a leak or UB report fails
# the test even where a runner's exit code is not looked at (many runs expect a failure anyway).
mkdir -p "$T/san"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:exitcode=99}:log_path=$T/san/asan"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:exitcode=98}:log_path=$T/san/ubsan"
export RUNNEL_STATE_DIR="$T/state"
_failures=0
_pids=()
_cleanups=()   # functions run first on exit (tools/pg.sh stops its server with one)
cleanup() {
  for c in "${_cleanups[@]}"; do "$c"; done
  for p in "${_pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${_pids[@]}"; do wait "$p" 2>/dev/null; done
  [ "${KEEP_TMP:-0}" = 1 ] || rm -rf "$T"
}
trap cleanup EXIT

pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; _failures=$((_failures + 1)); }
# check NAME COMMAND...: passes when the command succeeds
check() { local name="$1"; shift; if "$@" >"$T/check.out"; then pass "$name"; else fail "$name"; cat "$T/check.out" | head -20; fi; }
# expect_eq NAME EXPECTED ACTUAL
expect_eq() { if [ "$2" == "$3" ]; then pass "$1"; else fail "$1: expected '$2', got '$3'"; fi; }
# expect_contains NAME FILE TEXT
expect_contains() { if grep -qF -- "$3" "$2"; then pass "$1"; else fail "$1: '$3' not in $2:"; sed 's/^/   | /' "$2" | head -20; fi; }
finish() {
  for f in "$T"/san/*; do
    [ -e "$f" ] || continue
    fail "sanitizer report $f"; head -40 "$f"
  done
  if [ "$_failures" -gt 0 ]; then echo "$_failures check(s) failed"; exit 1; fi; echo "all checks passed"; exit 0; }

# summary field: jq over a --summary-json file
sj() { jq -r "$2" "$1" 2>/dev/null || echo "<no $2 in $1>"; }
# the invariant every batch run keeps
invariant_holds() { jq -e '(.read | type) == "number" and .read == .written + .filtered + .dead_lettered' "$1" >/dev/null; }

# free_port: a TCP port on 127.0.0.1 that nothing listens on now
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_model_server [--port PORT] [ARGS...]: starts bin/model-server on a free port, or on PORT
# (a server restarted where a killed one listened: tried again while the old port is not free
# yet); sets MODEL_URL and MODEL_PID, exports OPENAI_BASE_URL
start_model_server() {
  local port=0 tries=1
  if [ "${1:-}" = --port ]; then port="$2" tries=100; shift 2; fi
  local out pid
  for _ in $(seq "$tries"); do
    out="$T/model-server.$RANDOM.out"
    bin/model-server --port "$port" "$@" >"$out" 2>&1 &
    pid=$!
    _pids+=("$pid")
    for _ in $(seq 100); do
      grep -q '^listening on ' "$out" 2>/dev/null && break 2
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    sleep 0.1
  done
  MODEL_URL="$(sed -n 's/^listening on \(http[^ ]*\).*/\1/p' "$out" | head -1)"
  MODEL_PID=$pid
  [ -n "$MODEL_URL" ] || { echo "model server did not start on port $port:"; cat "$out"; exit 1; }
  export OPENAI_BASE_URL="$MODEL_URL/v1"
}
# stop_model_server PID [SIGNAL]: kills a server start_model_server started and waits for it
stop_model_server() { { kill "-${2:-TERM}" "$1"; wait "$1"; } 2>/dev/null; }

# start_kafka [ARGS...]: starts bin/kafka-dev, sets KAFKA_BROKERS
start_kafka() {
  local out="$T/kafka-dev.$RANDOM.out"
  bin/kafka-dev "$@" >"$out" 2>"$out.err" &
  local pid=$!
  _pids+=("$pid")
  for _ in $(seq 200); do
    if [ -s "$out" ]; then break; fi
    sleep 0.05
  done
  KAFKA_BROKERS="$(head -1 "$out")"
  KAFKA_PID=$pid
  [ -n "$KAFKA_BROKERS" ] || { echo "kafka-dev did not start:"; cat "$out.err"; exit 1; }
  export KAFKA_BROKERS
}

# start_standin NAME [ARGS...]: starts bin/NAME --port 0 ARGS, a stand-in that prints
# "listening on http://127.0.0.1:PORT" first (schema-registry-dev, es-dev); sets STANDIN_URL and
# STANDIN_PID. Its stderr is in $T/NAME.N.out.err.
start_standin() {
  local name="$1"; shift
  local out="$T/$name.$RANDOM.out"
  "bin/$name" --port 0 "$@" >"$out" 2>"$out.err" &
  local pid=$!
  _pids+=("$pid")
  for _ in $(seq 100); do
    if grep -q '^listening on ' "$out" 2>/dev/null; then break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  STANDIN_URL="$(sed -n 's/^listening on \(http[^ ]*\).*/\1/p' "$out" | head -1)"
  STANDIN_PID=$pid
  [ -n "$STANDIN_URL" ] || { echo "$name did not start:"; cat "$out.err"; exit 1; }
}
