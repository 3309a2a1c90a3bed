#!/usr/bin/env bash
# The brokers of a Kafka sink go down for longer than limits.outage (issue 15): the job holds
# the source back, then stops with exit 1 and one line naming the sink, the cause and what was
# committed; the source's committed offsets cover only what the sink delivered, so a rerun once
# the brokers are back delivers the rest (kcat counts: every input key in the output topic).
# The line names every partition of the 12 read past what was committed, each with the offset of
# its last committed message, the first 8 of them and then "and N more partitions".
# tests/faults/test_kafka_outage.sh covers a short outage (held back, then on).
. "$(dirname "$0")/../lib.sh"
. tests/kafka/kafka_lib.sh
start_kafka --topic out:3                     # the sink's cluster
OUT_BROKERS=$KAFKA_BROKERS; SINK_PID=$KAFKA_PID
start_kafka --topic in:12                     # the source's: it stays up
export OUT_BROKERS
produce_json in a 1 100
run() { start_runner "$T/$1.log" --set group=sinkdown --set output="$T/$1.jsonl" --set errors="$T/$1.errors.jsonl" \
          --set out=out --set checkpoint=300ms --set outage=3s; }
delivered() { topic_keys out "$OUT_BROKERS" | sort -u | wc -l | tr -d ' '; }
delivered_at_least() { [ "$(delivered)" -ge "$1" ]; }

run first
check "before the outage: the first 100 are delivered" wait_until 40 delivered_at_least 100
sleep 1                                       # a checkpoint commits them
kill -USR1 "$SINK_PID"                        # the sink's brokers down
produce_json in b 1 100
wait_exit "$RUNNER_PID" 60; rc=$?
expect_eq "the job stops with exit 1 after limits.outage" 1 "$rc"
check "one line names the sink, the time and the cause" \
  grep -qE "^runnel: sink\.kafka \([^)]*copy\.lua:[0-9]+\): unreachable for [0-9.]+s \(all brokers down\)" "$T/first.log"
# what it may say, from kcat: how many b's the job read before the sink's outage held it back
# depends on when each partition's b's were fetched, so the line is checked against the topic:
# each partition it names got b's and is named at the offset of its last a (delivered and
# committed before the outage), none twice, the first 8 and then "and N more partitions"
timeout 30 kcat -C -b "$KAFKA_BROKERS" -t in -o beginning -e -q -f '%p %o %k\n' > "$T/in.txt"
sed -n 's/.*unreachable for [^)]*); \(nothing after .* was committed\)$/\1/p' "$T/first.log" | tail -1 > "$T/line.txt"
check "... and names the partitions read past what was committed, each at its last committed offset, 8 at most" \
  python3 - "$T/in.txt" "$T/line.txt" <<'PY'
import re, sys
last_a, has_b = {}, set()
for line in open(sys.argv[1]):
    p, o, k = line.split()
    if k.startswith("a"): last_a[int(p)] = max(last_a.get(int(p), -1), int(o))
    else: has_b.add(int(p))
text = open(sys.argv[2]).read().strip()
m = re.fullmatch(r"nothing after (.*?)(?: and (\d+) more partitions?)? was committed", text)
if not m: sys.exit("not the stop line: %r" % text)
named = [re.fullmatch(r"partition (\d+) offset (\d+)", x) for x in m.group(1).split(", ")]
if not all(named): sys.exit("a part is not 'partition P offset O': %r" % text)
pairs = [(int(x.group(1)), int(x.group(2))) for x in named]
more = int(m.group(2) or 0)
ok = (len(pairs) <= 8 and (more == 0 or len(pairs) == 8) and len({p for p, _ in pairs}) == len(pairs)
      and all(p in has_b and last_a.get(p) == o for p, o in pairs) and len(pairs) + more <= len(has_b))
sys.exit(0 if ok else "wrong: %r (last a per partition %r, partitions with b's %r)" % (text, last_a, sorted(has_b)))
PY
expect_eq "nothing dead-lettered" 0 "$(lines "$T/first.errors.jsonl")"
kill -USR2 "$SINK_PID"                        # back up
expect_eq "while it was down nothing more was delivered" 100 "$(delivered)"

run second
check "a rerun once the brokers are back delivers the rest" wait_until 60 delivered_at_least 200
sleep 1
stop_runner "$RUNNER_PID"
expect_eq "the rerun stops cleanly" 0 "$STOP_STATUS"
expect_eq "every input key is in the output topic, nothing lost" \
  "$( (seq 1 100 | sed 's/^/a/'; seq 1 100 | sed 's/^/b/') | sort)" "$(topic_keys out "$OUT_BROKERS" | sort -u)"
expect_eq "the rerun read the 100 b's" 100 "$(grep -o '"_key":"b[0-9]*"' "$T/second.jsonl" | sort -u | wc -l | tr -d ' ')"
check "the rerun read none of what the first run committed (the a's)" bash -c "! grep -q '\"_key\":\"a' '$T/second.jsonl'"
expect_eq "nothing dead-lettered in the rerun" 0 "$(lines "$T/second.errors.jsonl")"
finish
