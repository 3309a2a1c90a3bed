# tests/serve/serve_lib.sh: helpers for the `runnel serve` tests. Source after tests/lib.sh.
STATE="$T/state"            # lib.sh's RUNNEL_STATE_DIR: a manual `runnel run` shares serve's locks
JOBS="$T/jobs"
mkdir -p "$JOBS"

# wait_for SECONDS COMMAND...: poll until the command succeeds
wait_for() { local n=$(( $1 * 20 )); shift; for _ in $(seq "$n"); do "$@" && return 0; sleep 0.05; done; return 1; }

# start_serve [ARGS...]: runnel serve over $JOBS on a free loopback port; sets SERVE_PID, SERVE_URL, SERVE_LOG
start_serve() {
  SERVE_LOG="$T/serve.$RANDOM.log"
  $RUNNEL serve --jobs "$JOBS" --state "$STATE" --listen 127.0.0.1:0 "$@" 2>"$SERVE_LOG" &
  SERVE_PID=$!
  _pids+=("$SERVE_PID")
  wait_for 20 grep -q ' on http://' "$SERVE_LOG" || { echo "serve did not start:"; cat "$SERVE_LOG"; exit 1; }
  SERVE_URL="$(sed -n 's/.* on \(http:[^ ]*\) .*/\1/p' "$SERVE_LOG" | head -1)"
}
# stop_serve: SIGTERM, then wait; sets SERVE_RC
stop_serve() { kill -TERM "$SERVE_PID"; wait "$SERVE_PID"; SERVE_RC=$?; }

api() { curl -s "$SERVE_URL$1"; }                      # GET PATH: the JSON answer
post() { curl -s -X POST "$SERVE_URL$1"; }             # POST PATH
http_status() { curl -s -o "$T/http.body" -w '%{http_code}' -X "$1" "$SERVE_URL$2"; }  # METHOD PATH: the status
field() { api "/jobs/$1" | jq -r "$2"; }               # JOB JQ
state_is() { [ "$(field "$1" .state)" = "$2" ]; }      # JOB STATE
db() { sqlite3 "$STATE/serve.db" "$1"; }               # the history, read by SQLite's own shell
lines() { if [ -e "$1" ]; then wc -l < "$1" | tr -d ' '; else echo 0; fi; }
lines_at_least() { [ "$(lines "$1")" -ge "$2" ]; }
