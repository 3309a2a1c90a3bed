#!/usr/bin/env bash
# Sink faults: a sink file on a full disk or on a read-only disk. The job must stop with exit 1
# and one error naming the file and the cause, must not commit past what the sinks hold (the
# checkpoint never claims bytes or records that were not written), and after the disk is fixed
# `--resume` must finish the job with the output complete and every record exactly once.
# The disks are small tmpfs mounts (the tests run as root); where mounting is not allowed the
# full disk falls back to /dev/full and the read-only disk to a path under /sys.
. "$(dirname "$0")/../lib.sh"

mounts=()
unmount_all() { for m in "${mounts[@]}"; do umount "$m" 2>/dev/null; done; mounts=(); }
trap 'unmount_all; cleanup' EXIT
# small_disk DIR OPTIONS: mount a tmpfs at DIR; fails when mounting is not allowed here
small_disk() {
  mkdir -p "$1"
  mount -t tmpfs -o "$2" tmpfs "$1" 2>/dev/null || return 1
  mounts+=("$1")
}

bin/gen-reviews --rows 2000 --seed 8 > "$T/in.csv" 2>/dev/null
cat > "$T/job.lua" <<'LUA'
return job {
  name = param("name"),
  checkpoint_interval = "100ms",
  source = source.csv { path = param("input"), select = { id = "Id", summary = "Summary", text = "Text" },
                        types = { id = "integer" } },
  predict = model.openai { endpoint = env("OPENAI_BASE_URL"), model = "m", prompt = "{{summary}}",
                           output = { rating = { type = "integer", min = 1, max = 5 } },
                           limits = { concurrency = 8 } },
  map = function(r) return { id = r.id, rating = r.rating, text = r.text } end,
  sinks = sink.jsonl { path = param("output") },
  errors = sink.jsonl { path = param("errors") },
}
LUA
# the model paces the job (about 800 records/s, 300 KB/s of output), so checkpoints are
# taken while the disk fills up
start_model_server --latency-ms 10
good_url="$OPENAI_BASE_URL"
# job NAME OUTPUT ERRORS [ARGS...]: run the job; its exit code in $T/NAME.rc, stderr in $T/NAME.log
job() {
  local name="$1" output="$2" errors="$3"; shift 3
  $RUNNEL run "$T/job.lua" --set name="$name" --set input="$T/in.csv" --set output="$output" \
    --set errors="$errors" --no-cache --no-progress --summary-json "$T/$name.json" "$@" 2>"$T/$name.log"
  echo $? > "$T/$name.rc"
}
job ref "$T/ref.jsonl" "$T/ref.err"
expect_eq "reference run exits 0" 0 "$(cat "$T/ref.rc")"
expect_eq "reference run writes every record" 2000 "$(wc -l < "$T/ref.jsonl")"
ckpt="$RUNNEL_STATE_DIR"

# whole_lines FILE: every byte of FILE belongs to a whole JSON line (no torn record at the end)
whole_lines() { [ ! -s "$1" ] || { [ "$(tail -c 1 "$1" | od -An -c | tr -d ' ')" = '\n' ] && jq -e . "$1" >/dev/null; }; }
# claims_held NAME FILE: the checkpoint left by the failed run claims no more than FILE holds,
# and what it claims is whole records 1..K in order, matching the source position it saves
claims_held() {
  local cp="$ckpt/$1.checkpoint.json" file="$2"
  [ -f "$cp" ] || { echo "no checkpoint (nothing committed): nothing claimed"; return 0; }
  local length line size
  length=$(jq '.sinks[0].length' "$cp"); line=$(jq '.source.line' "$cp"); size=$(stat -c %s "$file")
  echo "checkpoint claims $length bytes up to source line $line; the file holds $size bytes"
  [ "$length" -le "$size" ] || return 1
  head -c "$length" "$file" > "$T/claimed"
  whole_lines "$T/claimed" || return 1
  local k; k=$(wc -l < "$T/claimed")
  [ "$(jq -r .id "$T/claimed" | tr '\n' ' ')" = "$(seq -s ' ' 1 "$k") " ] || [ "$k" = 0 ] || return 1
  # the source position saved with it is exactly after record k: the records before that
  # offset in the input are k
  local offset; offset=$(jq '.source.offset' "$cp")
  head -c "$offset" "$T/in.csv" > "$T/claimed.csv"
  $RUNNEL run "$T/ids.lua" --set input="$T/claimed.csv" --set output="$T/claimed.ids" --no-progress --quiet \
    --state-dir "$T/ids-state"
  [ "$(wc -l < "$T/claimed.ids")" = "$k" ]
}
cat > "$T/ids.lua" <<'LUA'
return job { name = "ids", source = source.csv { path = param("input"), select = { id = "Id" },
             types = { id = "integer" } }, sinks = sink.jsonl { path = param("output") } }
LUA

# ---- full disk -----------------------------------------------------------------------------------
if small_disk "$T/full" size=256k; then
  job full "$T/full/out.jsonl" "$T/full.err"
  expect_eq "full disk: the job exits 1" 1 "$(cat "$T/full.rc")"
  expect_contains "full disk: the error names the file and the cause" "$T/full.log" \
    "$T/full/out.jsonl: write failed: No space left on device"
  check "full disk: the sink holds whole records only" whole_lines "$T/full/out.jsonl"
  check "full disk: the checkpoint was written before the disk filled" test -f "$ckpt/full.checkpoint.json"
  check "full disk: the checkpoint claims only what the sink holds" claims_held full "$T/full/out.jsonl"
  expect_eq "full disk: the summary says failed" failed "$(sj "$T/full.json" .status)"
  mount -o remount,size=16m "$T/full"
  job full "$T/full/out.jsonl" "$T/full.err" --resume
  expect_eq "full disk, space freed: --resume exits 0" 0 "$(cat "$T/full.rc")"
  expect_contains "full disk: --resume continued from the checkpoint" "$T/full.log" "resuming full after line"
  check "full disk: resumed output identical to an uninterrupted run (every record exactly once)" \
    cmp "$T/ref.jsonl" "$T/full/out.jsonl"
  check "full disk: no dead letters" test ! -s "$T/full.err"
  check "full disk: checkpoint removed after the finished run" test ! -e "$ckpt/full.checkpoint.json"

  # the dead-letter sink on a full disk stops the job the same way
  small_disk "$T/full2" size=8k
  start_model_server --out-of-range-rate 1
  job dlq "$T/dlq.jsonl" "$T/full2/errors.jsonl"
  export OPENAI_BASE_URL="$good_url"
  expect_eq "full disk under the dead letters: the job exits 1" 1 "$(cat "$T/dlq.rc")"
  expect_contains "full disk under the dead letters: the error names the file" "$T/dlq.log" \
    "$T/full2/errors.jsonl: write failed: No space left on device"
  check "full disk under the dead letters: the checkpoint claims only what it holds" \
    bash -c "[ ! -f '$ckpt/dlq.checkpoint.json' ] || [ \$(jq .errors.length '$ckpt/dlq.checkpoint.json') -le \$(stat -c %s '$T/full2/errors.jsonl') ]"
else
  echo "note: mount -t tmpfs is not allowed here; full disk checked with /dev/full only"
  ln -s /dev/full "$T/devfull.jsonl"
  job devfull "$T/devfull.jsonl" "$T/devfull.err"
  expect_eq "/dev/full: the job exits 1" 1 "$(cat "$T/devfull.rc")"
  expect_contains "/dev/full: the error names the file and the cause" "$T/devfull.log" \
    "$T/devfull.jsonl: write failed: No space left on device"
fi

# ---- read-only disk --------------------------------------------------------------------------------
if small_disk "$T/ro" size=16m && mount -o remount,ro "$T/ro"; then
  job ro "$T/ro/out.jsonl" "$T/ro.err"
  expect_eq "read-only disk: the job exits 1" 1 "$(cat "$T/ro.rc")"
  expect_contains "read-only disk: the error names the file and the cause" "$T/ro.log" \
    "$T/ro/out.jsonl: cannot open for writing: Read-only file system"
  check "read-only disk: nothing committed" test ! -e "$ckpt/ro.checkpoint.json"
  mount -o remount,rw "$T/ro"
  job ro "$T/ro/out.jsonl" "$T/ro.err" --resume
  expect_eq "read-only disk made writable: --resume exits 0" 0 "$(cat "$T/ro.rc")"
  check "read-only disk: output complete, every record exactly once" cmp "$T/ref.jsonl" "$T/ro/out.jsonl"
else
  echo "note: no read-only tmpfs here; read-only checked with a path under /sys"
  job sys /sys/runnel-test/out.jsonl "$T/sys.err"
  expect_eq "unwritable path: the job exits 1" 1 "$(cat "$T/sys.rc")"
  expect_contains "unwritable path: the error names the file" "$T/sys.log" "/sys/runnel-test"
fi
finish
