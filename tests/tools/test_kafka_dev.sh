#!/usr/bin/env bash
# test_kafka_dev.sh: starts bin/kafka-dev (built beforehand), produces and consumes 100 keyed
# messages with kcat over real Kafka protocol, flips the brokers down and up, stops it.
# Usage: tests/tools/test_kafka_dev.sh   (from the repository root; needs kcat)
set -euo pipefail
export LC_ALL=C

KAFKA_DEV=${KAFKA_DEV:-bin/kafka-dev}
WORK=$(mktemp -d)
broker_pid=""
cleanup() {
    if [ -n "$broker_pid" ] && kill -0 "$broker_pid" 2>/dev/null; then
        kill -KILL "$broker_pid" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

passed=0
failed=0
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
check() { # check DESCRIPTION COMMAND...
    local what=$1; shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}
finish() { echo "$passed passed, $failed failed"; [ "$failed" = 0 ]; exit $?; }

for need in "$KAFKA_DEV" kcat; do
    if ! command -v "$need" >/dev/null 2>&1; then fail "$need is not available"; finish; fi
done

"$KAFKA_DEV" --topic t1:3 --port-file "$WORK/port" > "$WORK/stdout" 2> "$WORK/stderr" &
broker_pid=$!

# The bootstrap line is the first line on stdout, written as soon as the brokers listen.
boot=""
for _ in $(seq 1 50); do
    boot=$(head -n 1 "$WORK/stdout" 2>/dev/null || true)
    [ -n "$boot" ] && break
    kill -0 "$broker_pid" 2>/dev/null || break
    sleep 0.1
done
if ! [[ "$boot" =~ ^127\.0\.0\.1:[0-9]+$ ]]; then
    fail "bootstrap line on stdout (got '$boot')"; cat "$WORK/stderr"; finish
fi
pass "bootstrap line on stdout: $boot"
check "--port-file holds the same bootstrap" [ "$(cat "$WORK/port" 2>/dev/null)" = "$boot" ]

partitions=$(timeout 10 kcat -L -b "$boot" -t t1 | grep -c '^ *partition ' || true)
check "topic t1 has 3 partitions ($partitions)" [ "$partitions" = 3 ]

seq 1 100 | awk '{ print "key" $1 ":value " $1 }' > "$WORK/sent"
if timeout 10 kcat -P -b "$boot" -t t1 -K: < "$WORK/sent"; then
    pass "kcat produced 100 keyed messages"
else
    fail "kcat produce"
fi

timeout 10 kcat -C -b "$boot" -t t1 -o beginning -e -q -f '%p %k:%s\n' > "$WORK/received" || true
check "consumed 100 messages back ($(wc -l < "$WORK/received"))" [ "$(wc -l < "$WORK/received")" = 100 ]
check "same keys and values as sent" \
    cmp -s <(sort "$WORK/sent") <(cut -d' ' -f2- "$WORK/received" | sort)
check "keys spread over all 3 partitions" [ "$(cut -d' ' -f1 "$WORK/received" | sort -u | wc -l)" = 3 ]

# Fault switch: SIGUSR1 sets every broker down, SIGUSR2 up again; both are logged.
kill -USR1 "$broker_pid"
sleep 0.3
kill -USR2 "$broker_pid"
sleep 0.3
check "SIGUSR1/SIGUSR2 logged as down then up" \
    bash -c "grep -q 'brokers\\? down' '$WORK/stderr' && grep -q 'brokers\\? up' '$WORK/stderr'"
count=$(timeout 10 kcat -C -b "$boot" -t t1 -o beginning -e -q | wc -l)
check "messages still there after down/up ($count)" [ "$count" = 100 ]

# SIGTERM stops it cleanly with exit 0 and removes the port file.
kill -TERM "$broker_pid"
for _ in $(seq 1 50); do kill -0 "$broker_pid" 2>/dev/null || break; sleep 0.1; done
status=0
if kill -0 "$broker_pid" 2>/dev/null; then
    fail "kafka-dev still running 5 s after SIGTERM"
else
    wait "$broker_pid" || status=$?
    broker_pid=""
    check "exit status 0 after SIGTERM (got $status)" [ "$status" = 0 ]
    check "port file removed on exit" [ ! -e "$WORK/port" ]
fi

finish
