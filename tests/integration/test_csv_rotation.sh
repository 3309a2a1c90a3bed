#!/usr/bin/env bash
# Following a CSV file by its name, as tail -F does (issue 18): a file rotated by mv and
# recreated (with inotify and by polling), truncated in place (copytruncate), rotated twice
# while the job is busy, a restart between a rotation and the end of the old file, and a
# directory whose files are rotated. Each checks that every row comes out exactly once, in
# order, and that the notes on stderr say what happened.
. "$(dirname "$0")/../lib.sh"
cat > "$T/job.lua" <<'LUA'
return job {
  name = param("name"), checkpoint_interval = "100ms",
  source = source.csv { path = param("input"), types = { id = "integer" }, inotify = param("inotify", true),
                        pattern = param("pattern", "*.csv") },
  map = function(r) return { id = r.id, word = r.word } end,
  sinks = sink.jsonl { path = param("output") },
  errors = sink.jsonl { path = param("output") .. ".err" },
}
LUA
# wait_for SECONDS COMMAND...: poll until the command succeeds
wait_for() { local n=$(( $1 * 20 )); shift; for _ in $(seq "$n"); do "$@" && return 0; sleep 0.05; done; return 1; }
lines() { if [ -e "$1" ]; then wc -l < "$1" | tr -d " "; else echo 0; fi; }
at_least() { [ "$(lines "$1")" -ge "$2" ]; }
# rows FROM TO: CSV rows "id,word"
rows() { seq "$1" "$2" | sed 's/$/,w/'; }
# holds PID FILE: the process has FILE (its inode now) open
holds() { local ino; ino=$(stat -c %i "$2" 2>/dev/null) || return 1
  for fd in /proc/"$1"/fd/*; do [ "$(stat -L -c %i "$fd" 2>/dev/null)" = "$ino" ] && return 0; done; return 1; }
# run_stream NAME INPUT OUTPUT [--set k=v]...: a stream job in the background, its pid in $pid
run_stream() { local name=$1 input=$2 output=$3; shift 3
  $RUNNEL run "${JOB:-$T/job.lua}" --mode stream --set name="$name" --set input="$input" --set output="$output" \
    "$@" --no-progress 2>>"$T/$name.log" &
  pid=$!; _pids+=("$pid"); }
stop() { kill -TERM "$1"; wait "$1"; }

# 1. mv and recreate, with inotify and by polling: the old file is read to its end (rows the
#    writer still appends to it included), a path that is gone is waited for, the new file is
#    read from its start
for watch in true false; do
  d="$T/mv-$watch"; mkdir -p "$d"
  { echo id,word; rows 1 150; } > "$d/live.csv"
  run_stream "mv_$watch" "$d/live.csv" "$d/out.jsonl" --set inotify=$watch
  check "mv ($watch): the first file is read" wait_for 20 at_least "$d/out.jsonl" 150
  mv "$d/live.csv" "$d/live.csv.1"
  rows 151 160 >> "$d/live.csv.1"                 # the writer has not reopened yet
  check "mv ($watch): rows written to the renamed file arrive" wait_for 20 at_least "$d/out.jsonl" 160
  check "mv ($watch): and the path is said to be gone" wait_for 20 grep -q "$d/live.csv: the file is gone" "$T/mv_$watch.log"
  { echo id,word; rows 161 200; } > "$d/live.csv"
  check "mv ($watch): the new file is read" wait_for 20 at_least "$d/out.jsonl" 200
  stop "$pid"
  expect_eq "mv ($watch): every row once, in order" "$(seq 1 200 | tr '\n' ' ')" "$(jq -r .id "$d/out.jsonl" | tr '\n' ' ')"
  expect_contains "mv ($watch): the switch is noted" "$T/mv_$watch.log" \
    "$d/live.csv: a new file at the path (inode $(stat -c %i "$d/live.csv")): the previous one (inode $(stat -c %i "$d/live.csv.1")) was read to its end (161 lines); reading the new one from its start"
  expect_eq "mv ($watch): no dead letters (the new header is not a row)" 0 "$(lines "$d/out.jsonl.err")"
done
expect_eq "inotify = false says nothing about inotify" 0 "$(grep -c inotify "$T/mv_false.log")"

# 2. copytruncate: the file is copied, cut to nothing and written again from the top
d="$T/trunc"; mkdir -p "$d"
{ echo id,word; rows 1 100; } > "$d/live.csv"
run_stream trunc "$d/live.csv" "$d/out.jsonl"
check "copytruncate: the first rows are read" wait_for 20 at_least "$d/out.jsonl" 100
cp "$d/live.csv" "$d/live.csv.1"; : > "$d/live.csv"; { echo id,word; rows 101 150; } >> "$d/live.csv"
check "copytruncate: the rows written after the truncation are read" wait_for 20 at_least "$d/out.jsonl" 150
rows 151 160 >> "$d/live.csv"
check "copytruncate: and rows appended after them" wait_for 20 at_least "$d/out.jsonl" 160
stop "$pid"
expect_eq "copytruncate: every row once, in order" "$(seq 1 160 | tr '\n' ' ')" "$(jq -r .id "$d/out.jsonl" | tr '\n' ' ')"
expect_eq "copytruncate: said once" 1 "$(grep -c "$d/live.csv: truncated in place (now [0-9]* bytes, 500 had been read): reading it again from its start" "$T/trunc.log")"
expect_eq "copytruncate: no dead letters" 0 "$(lines "$d/out.jsonl.err")"

# 3. two rotations in quick succession while the job is busy with the first file (a model
#    with latency holds it back): each new file is opened as soon as it is at the path, so the
#    second one is read although it was renamed away before the job got to it
start_model_server --latency-ms 20
cat > "$T/slow.lua" <<'LUA'
return job {
  name = param("name"), checkpoint_interval = "100ms",
  source = source.csv { path = param("input"), types = { id = "integer" } },
  predict = model.openai { endpoint = env("OPENAI_BASE_URL"), model = "m", prompt = "{{word}}",
                           output = { rating = { type = "integer", min = 1, max = 5 } },
                           limits = { concurrency = 4 }, cache = false },
  map = function(r) return { id = r.id, rating = r.rating } end,
  sinks = sink.jsonl { path = param("output") },
  errors = sink.jsonl { path = param("output") .. ".err" },
}
LUA
d="$T/busy"; mkdir -p "$d"
{ echo id,word; rows 1 300; } > "$d/live.csv"
JOB="$T/slow.lua" run_stream busy "$d/live.csv" "$d/out.jsonl"
check "busy: the job is under way" wait_for 30 at_least "$d/out.jsonl" 10
mv "$d/live.csv" "$d/live.csv.1"; { echo id,word; rows 301 400; } > "$d/live.csv"
check "busy: the second file is held open as soon as it is at the path" wait_for 10 holds "$pid" "$d/live.csv"
mv "$d/live.csv.1" "$d/live.csv.2"; mv "$d/live.csv" "$d/live.csv.1"; { echo id,word; rows 401 500; } > "$d/live.csv"
check "busy: both rotations happened before the first file was done" test "$(lines "$d/out.jsonl")" -lt 300
check "busy: the third file is read" wait_for 60 at_least "$d/out.jsonl" 500
stop "$pid"
expect_eq "busy: every row of the three files once, in order" "$(seq 1 500 | tr '\n' ' ')" "$(jq -r .id "$d/out.jsonl" | tr '\n' ' ')"
expect_eq "busy: two switches noted" 2 "$(grep -c 'a new file at the path' "$T/busy.log")"

# 4. a restart between a rotation and the end of the old file: killed (-9) while still in the
#    rotated file, the restarted job finds it by its inode, finishes it, then reads the new one
d="$T/restart"; mkdir -p "$d"
{ echo id,word; rows 1 300; } > "$d/live.csv"
old_inode=$(stat -c %i "$d/live.csv")
JOB="$T/slow.lua" run_stream restart "$d/live.csv" "$d/out.jsonl"
check "restart: the job is under way" wait_for 30 at_least "$d/out.jsonl" 10
mv "$d/live.csv" "$d/live.csv.1"; { echo id,word; rows 301 350; } > "$d/live.csv"
in_old_file() { [ "$(jq -r .source.inode "$RUNNEL_STATE_DIR/restart.checkpoint.json" 2>/dev/null)" = "$old_inode" ] &&
                [ "$(lines "$d/out.jsonl")" -ge 60 ]; }
check "restart: a checkpoint in the rotated file, after the rotation" wait_for 30 in_old_file
kill -KILL "$pid"; wait "$pid" 2>/dev/null
check "restart: killed before the rotated file was done" test "$(lines "$d/out.jsonl")" -lt 300
JOB="$T/slow.lua" run_stream restart "$d/live.csv" "$d/out.jsonl"
check "restart: the rest of the rotated file and the new file are read" wait_for 60 at_least "$d/out.jsonl" 350
stop "$pid"
expect_eq "restart: every row once, in order" "$(seq 1 350 | tr '\n' ' ')" "$(jq -r .id "$d/out.jsonl" | tr '\n' ' ')"
expect_contains "restart: the restart says where it goes on" "$T/restart.log" \
  "$d/live.csv: the checkpoint is in $d/live.csv.1 (inode $old_inode), rotated since: finishing it after line "
expect_contains "restart: then the file at the path" "$T/restart.log" "a new file at the path (inode $(stat -c %i "$d/live.csv"))"

# 5. a directory whose files are rotated (the pattern matches the rotated names): a renamed
#    file is not read again, a new file under a name read before is read, across a restart
d="$T/dir"; mkdir -p "$d/in"
{ echo id,word; rows 1 50; } > "$d/in/app.csv"
run_stream dir "$d/in" "$d/out.jsonl" --set pattern='app.csv*'
check "directory: the first file is read" wait_for 20 at_least "$d/out.jsonl" 50
mv "$d/in/app.csv" "$d/in/app.csv.1"; { echo id,word; rows 51 100; } > "$d/tmp"; mv "$d/tmp" "$d/in/app.csv"
check "directory: the new file under the same name is read" wait_for 20 at_least "$d/out.jsonl" 100
mv "$d/in/app.csv.1" "$d/in/app.csv.2"; mv "$d/in/app.csv" "$d/in/app.csv.1"
{ echo id,word; rows 101 150; } > "$d/tmp"; mv "$d/tmp" "$d/in/app.csv"
check "directory: and after a second rotation" wait_for 20 at_least "$d/out.jsonl" 150
stop "$pid"
# restarted, app.csv.1 and app.csv.2 (read as app.csv) still come after app.csv by name, and
# before app.csv.3, the file that arrives now: read again, they would be out before it is
run_stream dir "$d/in" "$d/out.jsonl" --set pattern='app.csv*'
{ echo id,word; rows 151 160; } > "$d/tmp"; mv "$d/tmp" "$d/in/app.csv.3"
check "directory: after a restart, a file arriving is read" wait_for 20 at_least "$d/out.jsonl" 160
stop "$pid"
expect_eq "directory: every row once, in order (the rotated names not read again)" \
  "$(seq 1 160 | tr '\n' ' ')" "$(jq -r .id "$d/out.jsonl" | tr '\n' ' ')"
expect_contains "directory: the new file is noted" "$T/dir.log" "$d/in/app.csv is a new file (inode "
expect_contains "directory: and the renamed one" "$T/dir.log" "$d/in/app.csv.1 is $d/in/app.csv renamed (inode "

# 5b. a rotated file edited before the checkpoint's offset is not taken for the checkpoint's
#     file: the restart refuses, naming the file and why
d="$T/edited"; mkdir -p "$d"
{ echo id,word; rows 1 20; } > "$d/live.csv"
run_stream edited "$d/live.csv" "$d/out.jsonl"
check "edited: the first file is read" wait_for 20 at_least "$d/out.jsonl" 20
stop "$pid"
mv "$d/live.csv" "$d/live.csv.1"; { echo id,word; rows 21 60; } > "$d/live.csv"
printf 'X' | dd of="$d/live.csv.1" bs=1 seek=12 conv=notrunc status=none   # row 2 changed in place
$RUNNEL run "$T/job.lua" --mode stream --set name=edited --set input="$d/live.csv" --set output="$d/out.jsonl" \
  --no-progress 2>"$d/refused.log"
expect_eq "edited: the restart is refused with exit 1" 1 $?
expect_contains "edited: naming the file and why" "$d/refused.log" \
  "$d/live.csv: the file was replaced since the checkpoint (its first and last bytes before offset"
expect_contains "edited: and that the rotated one is not it" "$d/refused.log" \
  "no file in $d is the one the checkpoint was taken on (inode $(stat -c %i "$d/live.csv.1")), so it is not a rotation"

# 6. a new file at the path with other columns stops the job, naming it
d="$T/cols"; mkdir -p "$d"
{ echo id,word; rows 1 10; } > "$d/live.csv"
run_stream cols "$d/live.csv" "$d/out.jsonl"
check "columns: the first file is read" wait_for 20 at_least "$d/out.jsonl" 10
mv "$d/live.csv" "$d/live.csv.1"; { echo id,other; rows 11 20; } > "$d/live.csv"
running() { kill -0 "$1" 2>/dev/null; }
check "columns: the job stops" wait_for 20 eval '! running $pid'
wait "$pid"
expect_eq "columns: with exit 1" 1 $?
expect_contains "columns: and says which file and column" "$T/cols.log" "$d/live.csv: header column 2 is 'other', expected 'word' as in the first file"
finish
