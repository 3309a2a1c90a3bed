#!/usr/bin/env bash
# Stream mode over files: a CSV file is followed (tail -f) and a directory of arriving files is
# watched; a stopped or killed streaming job restarts from its checkpoint, and the file sinks
# end with every row exactly once. Batch mode over a directory reads every file in name order.
. "$(dirname "$0")/../lib.sh"
cat > "$T/job.lua" <<'LUA'
return job {
  name = param("name"), checkpoint_interval = "100ms",
  source = source.csv { path = param("input"), types = { id = "integer" } },
  map = function(r) return { id = r.id, word = r.word } end,
  sinks = sink.jsonl { path = param("output") },
  errors = sink.jsonl { path = param("output") .. ".err" },
}
LUA
# wait_lines FILE N: until FILE has N lines (10 s at most)
wait_lines() { for _ in $(seq 200); do [ "$(wc -l 2>/dev/null < "$1" || echo 0)" -ge "$2" ] && return 0; sleep 0.05; done; return 1; }
ids() { jq -r .id "$1" | tr '\n' ' ' | sed 's/ $//'; }

# 1. follow one file across a graceful stop and a restart
printf 'id,word\n1,one\n2,two\n' > "$T/f.csv"
$RUNNEL run "$T/job.lua" --mode stream --set name=follow --set input="$T/f.csv" --set output="$T/f.jsonl" \
  --no-progress --summary-json "$T/f1.json" 2>"$T/f1.log" &
pid=$!
check "follow: the first rows arrive" wait_lines "$T/f.jsonl" 2
printf '3,three\n4,fo' >> "$T/f.csv"           # a half-written line must wait for its end
check "follow: appended rows arrive" wait_lines "$T/f.jsonl" 3
sleep 0.3
expect_eq "follow: a half line is not read" "1 2 3" "$(ids "$T/f.jsonl")"
printf 'ur\n' >> "$T/f.csv"
check "follow: the completed line arrives" wait_lines "$T/f.jsonl" 4
kill -TERM $pid; wait $pid
expect_eq "follow: SIGTERM stops with exit 0" 0 $?
expect_eq "follow: the summary says stopped" stopped "$(jq -r .status "$T/f1.json")"
printf '5,five\n' >> "$T/f.csv"
$RUNNEL run "$T/job.lua" --mode stream --set name=follow --set input="$T/f.csv" --set output="$T/f.jsonl" \
  --no-progress 2>"$T/f2.log" &
pid=$!
check "follow: after a restart, only the new row is added" wait_lines "$T/f.jsonl" 5
sleep 0.3
kill -TERM $pid; wait $pid
expect_eq "follow: every row exactly once across the restart" "1 2 3 4 5" "$(ids "$T/f.jsonl")"

# 2. a directory of arriving files, with a SIGKILL in the middle
mkdir -p "$T/in"
printf 'id,word\n1,a\n2,b\n' > "$T/in/001.csv"
$RUNNEL run "$T/job.lua" --mode stream --set name=dir --set input="$T/in" --set output="$T/d.jsonl" \
  --no-progress 2>"$T/d1.log" &
pid=$!
check "directory: the first file is read" wait_lines "$T/d.jsonl" 2
printf 'id,word\n3,c\n4,d\n' > "$T/tmp.csv"; mv "$T/tmp.csv" "$T/in/002.csv"
printf 'ignored\n' > "$T/in/notes.txt"
check "directory: an arriving file is read" wait_lines "$T/d.jsonl" 4
sleep 0.4   # let a checkpoint pass
kill -KILL $pid; wait $pid 2>/dev/null
printf 'id,word\n5,e\n' > "$T/tmp.csv"; mv "$T/tmp.csv" "$T/in/003.csv"
$RUNNEL run "$T/job.lua" --mode stream --set name=dir --set input="$T/in" --set output="$T/d.jsonl" \
  --no-progress 2>"$T/d2.log" &
pid=$!
check "directory: after SIGKILL and restart the new file is read" wait_lines "$T/d.jsonl" 5
sleep 0.3
kill -TERM $pid; wait $pid
expect_eq "directory: every row exactly once, in name order" "1 2 3 4 5" "$(ids "$T/d.jsonl")"

# 3. batch mode over a directory: every file in name order, then stop
printf 'id,word\n6,f\nx,bad\n' > "$T/in/004.csv"
$RUNNEL run "$T/job.lua" --set name=batchdir --set input="$T/in" --set output="$T/b.jsonl" \
  --no-progress --summary-json "$T/b.json" 2>/dev/null
expect_eq "batch directory: all files in order" "1 2 3 4 5 6" "$(ids "$T/b.jsonl")"
check "batch directory: invariant" invariant_holds "$T/b.json"
expect_eq "batch directory: the bad row names its file" "$T/in/004.csv:3" "$(jq -r '"\(.file):\(.line)"' "$T/b.jsonl.err")"
# a job that selects columns checks every later file's header by all its names
cat > "$T/select.lua" <<'LUA'
return job {
  name = "select", source = source.csv { path = param("input"), select = { n = "id" }, types = { n = "integer" } },
  sinks = sink.jsonl { path = param("output") }, errors = sink.jsonl { path = param("output") .. ".err" },
}
LUA
$RUNNEL run "$T/select.lua" --set input="$T/in" --set output="$T/sel.jsonl" --no-progress --summary-json "$T/sel.json" 2>"$T/sel.log"
expect_eq "batch directory with select: every file read" "1 2 3 4 5 6" "$(jq -r .n "$T/sel.jsonl" | tr '\n' ' ' | sed 's/ $//')"
check "batch directory with select: invariant" invariant_holds "$T/sel.json"
printf 'id,other\n7,g\n' > "$T/in/005.csv"
$RUNNEL run "$T/job.lua" --set name=batchdir2 --set input="$T/in" --set output="$T/b2.jsonl" --no-progress >"$T/b2.log" 2>&1
expect_eq "batch directory: a file with other columns stops the job" 1 $?
expect_contains "batch directory: and says which" "$T/b2.log" "005.csv: header column 2 is 'other', expected 'word'"
# 4. the reader thread (batch mode) and reading in the job's thread (a followed file) give the
#    same records and the same dead letters, lines included, over rows that span lines, bad
#    rows of every kind, a broken quote, and more rows than one batch of the reader holds
"$(dirname "$0")/../../bin/gen-reviews" --rows 3000 --seed 9 --broken-every 97 > "$T/same.csv" 2>/dev/null
printf '9001,P,U,N,0,0,5,1,"broken "quote,x\n9002,P,U,N,0,0,5,1,"two\nlines",ok\n' >> "$T/same.csv"
cat > "$T/same.lua" <<'LUA'
return job {
  name = param("name"), checkpoint_interval = "100ms",
  source = source.csv { path = param("input"), select = { id = "Id", score = "Score", summary = "Summary", text = "Text" },
                        types = { id = "integer", score = "integer" } },
  sinks = sink.jsonl { path = param("output") }, errors = sink.jsonl { path = param("output") .. ".err" },
}
LUA
$RUNNEL run "$T/same.lua" --set name=sameb --set input="$T/same.csv" --set output="$T/sb.jsonl" --no-progress \
  --summary-json "$T/sb.json" 2>/dev/null
check "threaded read: invariant" invariant_holds "$T/sb.json"
$RUNNEL run "$T/same.lua" --mode stream --set name=sames --set input="$T/same.csv" --set output="$T/ss.jsonl" \
  --no-progress 2>/dev/null &
pid=$!
wait_lines "$T/ss.jsonl" "$(jq .written "$T/sb.json")"
wait_lines "$T/ss.jsonl.err" "$(jq .dead_lettered "$T/sb.json")"
sleep 0.3
kill -TERM $pid; wait $pid
check "threaded and unthreaded reads write the same records" cmp -s "$T/sb.jsonl" "$T/ss.jsonl"
expect_eq "and the same dead letters (line, reason, raw)" \
  "$(jq -c '[.line, .reason, .raw]' "$T/sb.jsonl.err" | md5sum)" "$(jq -c '[.line, .reason, .raw]' "$T/ss.jsonl.err" | md5sum)"
check "there were bad rows of several kinds" test "$(jq -r .reason "$T/sb.jsonl.err" | sed 's/line [0-9]*//' | cut -c1-20 | sort -u | wc -l)" -ge 4
# 5. a CSV sink cut back to nothing by a resume starts with its header again: the first run
#    commits an empty file; the second writes rows (past the 1 MB write buffer) and is killed
#    before it commits; the third resumes from the empty file
cat > "$T/hdr.lua" <<'LUA'
return job { name = "hdr", checkpoint_interval = "1h", source = source.csv { path = param("input") },
  sinks = sink.csv { path = param("output") } }
LUA
printf 'id,word\n' > "$T/hdr.csv"
$RUNNEL run "$T/hdr.lua" --mode stream --set input="$T/hdr.csv" --set output="$T/hdr.out" --no-progress 2>/dev/null &
pid=$!; sleep 0.5; kill -TERM $pid; wait $pid
seq 1 40000 | sed 's/$/,a-word-long-enough-to-fill-the-write-buffer-soon/' >> "$T/hdr.csv"
$RUNNEL run "$T/hdr.lua" --mode stream --set input="$T/hdr.csv" --set output="$T/hdr.out" --no-progress 2>/dev/null &
pid=$!
check "header after resume: the killed run wrote rows past its checkpoint" wait_lines "$T/hdr.out" 1000
kill -KILL $pid; wait $pid 2>/dev/null
$RUNNEL run "$T/hdr.lua" --resume --set input="$T/hdr.csv" --set output="$T/hdr.out" --no-progress 2>/dev/null
expect_eq "header after resume: the file starts with it, once, then every row" "id,word 1 40001" \
  "$(head -1 "$T/hdr.out") $(grep -c '^id,word$' "$T/hdr.out") $(wc -l < "$T/hdr.out")"
finish
