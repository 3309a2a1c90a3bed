#!/usr/bin/env bash
# Batch reads of a 3-partition topic stop at the end offsets the topic had when the job
# started, even while more is produced; a rerun with the same group reads only what came
# after (committed offsets honoured); without a group nothing is committed.
. "$(dirname "$0")/../lib.sh"
. tests/kafka/kafka_lib.sh
start_kafka --topic in:3 --topic out:3
produce_json in k 1 300

# 1. 300 messages; while the job runs (slowed to ~3 s), 100 more arrive: it must stop at 300
$RUNNEL run "$KAFKA_JOB" --set group=g1 --set output="$T/run1.jsonl" --set errors="$T/err1.jsonl" \
  --set out=out --set delay_ms=10 --summary-json "$T/run1.json" 2>"$T/run1.log" &
run1=$!
_pids+=("$run1")
sleep 0.7   # the job has read the end offsets (at open) and is working through the 300
produce_json in k 301 400
check "the 100 more were produced while the job was running" kill -0 "$run1"
wait_exit "$run1" 60
expect_eq "batch run ends by itself with status 0" 0 $?
expect_eq "read the 300 messages there were at the start" 300 "$(sj "$T/run1.json" .read)"
expect_eq "wrote 300 lines" 300 "$(lines "$T/run1.jsonl")"
expect_eq "keys k1..k300, each once" "$(seq 1 300 | sed 's/^/k/' | sort)" "$(jq -r ._key "$T/run1.jsonl" | sort)"
check "invariant read = written + filtered + dead_lettered" invariant_holds "$T/run1.json"
expect_eq "all 3 partitions read" 3 "$(jq -r ._partition "$T/run1.jsonl" | sort -u | wc -l | tr -d ' ')"
check "per partition, offsets 0,1,2,... in order" \
  jq -s -e 'group_by(._partition) | all(.[]; [.[]._offset] == [range(0; length)])' "$T/run1.jsonl" >/dev/null
expect_eq "the sink topic holds the 300 keys (read back with kcat)" 300 "$(topic_keys out | sort -u | wc -l | tr -d ' ')"

# 2. the same group again: only the 100 produced after the first run's start
timeout 60 $RUNNEL run "$KAFKA_JOB" --set group=g1 --set output="$T/run2.jsonl" --set errors="$T/err2.jsonl" \
  --summary-json "$T/run2.json" 2>"$T/run2.log"
expect_eq "second run exits 0" 0 $?
expect_eq "second run reads only the 100 new messages" "$(seq 301 400 | sed 's/^/k/' | sort)" \
  "$(jq -r ._key "$T/run2.jsonl" | sort)"

# 3. and again: nothing left, the job ends at once
timeout 60 $RUNNEL run "$KAFKA_JOB" --set group=g1 --set output="$T/run3.jsonl" --set errors="$T/err3.jsonl" \
  --summary-json "$T/run3.json" 2>"$T/run3.log"
expect_eq "third run exits 0" 0 $?
expect_eq "third run reads nothing" 0 "$(sj "$T/run3.json" .read)"

# 4. no group: start = earliest reads everything, twice (nothing committed); latest reads nothing
for i in 1 2; do
  timeout 60 $RUNNEL run "$KAFKA_JOB" --set start=earliest --set output="$T/nogroup$i.jsonl" \
    --set errors="$T/errn.jsonl" --summary-json "$T/nogroup$i.json" 2>"$T/nogroup$i.log"
  expect_eq "no group, earliest, run $i: reads all 400" 400 "$(sj "$T/nogroup$i.json" .read)"
done
timeout 60 $RUNNEL run "$KAFKA_JOB" --set start=latest --set output="$T/latest.jsonl" --set errors="$T/errl.jsonl" \
  --summary-json "$T/latest.json" 2>"$T/latest.log"
expect_eq "start = latest in batch mode reads nothing" 0 "$(sj "$T/latest.json" .read)"

# 5. an empty topic finishes at once
timeout 30 $RUNNEL run "$KAFKA_JOB" --set in=empty --set group=g1 --set output="$T/empty.jsonl" \
  --set errors="$T/erre.jsonl" --summary-json "$T/empty.json" 2>"$T/empty.log"
expect_eq "empty topic: exits 0" 0 $?
expect_eq "empty topic: reads nothing" 0 "$(sj "$T/empty.json" .read)"
finish
