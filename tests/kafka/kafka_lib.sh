# tests/kafka/kafka_lib.sh: helpers for the Kafka tests; source it after tests/lib.sh.
# The tests run tests/kafka/copy.lua against bin/kafka-dev and check the topics with kcat,
# an independent client.
KAFKA_JOB=tests/kafka/copy.lua
command -v kcat >/dev/null || { echo "kcat is not installed"; exit 1; }

# produce_json TOPIC PREFIX FROM TO [BROKERS]: messages with key PREFIX<i> and value {"id":i,"key":"PREFIX<i>"}
produce_json() {
  seq "$3" "$4" | awk -v p="$2" '{ printf "%s%d|{\"id\":%d,\"key\":\"%s%d\"}\n", p, $1, $1, p, $1 }' |
    timeout 30 kcat -P -b "${5:-$KAFKA_BROKERS}" -t "$1" -K'|'
}
# topic_keys TOPIC [BROKERS]: the key of every message in the topic, one per line
topic_keys() { timeout 30 kcat -C -b "${2:-$KAFKA_BROKERS}" -t "$1" -o beginning -e -q -f '%k\n'; }
# lines FILE: its line count, 0 when it does not exist
lines() { if [ -f "$1" ]; then wc -l < "$1" | tr -d ' '; else echo 0; fi; }
# wait_until SECONDS COMMAND...: run COMMAND every 0.2 s until it succeeds; fails after SECONDS
wait_until() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    [ "$SECONDS" -ge "$deadline" ] && return 1
    sleep 0.2
  done
}
at_least() { [ "$(lines "$1")" -ge "$2" ]; }
# start_runner LOG ARGS...: the copy job in stream mode in the background; sets RUNNER_PID
start_runner() {
  local log="$1"; shift
  $RUNNEL run "$KAFKA_JOB" --mode stream "$@" 2>"$log" &
  RUNNER_PID=$!
  _pids+=("$RUNNER_PID")
}
# stop_runner PID: SIGTERM, then wait; sets STOP_STATUS (124 when it did not stop within 30 s)
stop_runner() {
  kill -TERM "$1" 2>/dev/null
  wait_exit "$1" 30
  STOP_STATUS=$?
}
# wait_exit PID SECONDS: its exit status, or 124 (after kill -9) when it runs longer
wait_exit() {
  local i
  for i in $(seq $(($2 * 5))); do kill -0 "$1" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$1" 2>/dev/null; then kill -9 "$1"; wait "$1" 2>/dev/null; return 124; fi
  wait "$1"
}
