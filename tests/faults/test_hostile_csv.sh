#!/usr/bin/env bash
# Hostile CSV input: every bad row is dead-lettered with its line and a reason, the runner
# never crashes (the sanitizers watch), and read = written + filtered + dead-lettered.
. "$(dirname "$0")/../lib.sh"
cat > "$T/job.lua" <<'LUA'
return job {
  name = "hostile",
  source = source.csv { path = param("input"), types = { n = "integer" },
                        max_record_bytes = tonumber(param("max", "67108864")) },
  sinks = sink.jsonl { path = param("output") },
  errors = sink.jsonl { path = param("errors") },
}
LUA
# run NAME FILE [ARGS]: run the job on FILE; sets RC
run() {
  local name="$1" file="$2"; shift 2
  $RUNNEL run "$T/job.lua" --set input="$file" --set output="$T/$name.out" --set errors="$T/$name.err" \
    --no-progress --summary-json "$T/$name.json" "$@" >"$T/$name.log" 2>&1
  RC=$?
}
dead() { jq -r .dead_lettered "$T/$1.json"; }

printf 'id,n,text\n1,1,ok\n2,2,"unbalanced\n3,3,never closed\n' > "$T/unbalanced.csv"
run unbalanced "$T/unbalanced.csv"
expect_eq "unbalanced quote: job succeeds" 0 "$RC"
check "unbalanced quote: invariant" invariant_holds "$T/unbalanced.json"
expect_contains "unbalanced quote: reason names the line" "$T/unbalanced.err" "line 3: unterminated quoted field"

printf 'id,n,text\n1,1,ok\n2,2,bad"quote\n3,3,fine\n4,4,"closed"trailing\n5,5,end\n' > "$T/quotes.csv"
run quotes "$T/quotes.csv"
expect_eq "stray quotes: job succeeds" 0 "$RC"
expect_eq "stray quotes: two dead letters" 2 "$(dead quotes)"
expect_eq "stray quotes: the good rows written" "1 3 5" "$(jq -r .id "$T/quotes.out" | tr '\n' ' ' | sed 's/ $//')"
expect_contains "stray quotes: reason" "$T/quotes.err" "malformed quoting"

printf 'id,n,text\n1,1,a\0b\n2,2,ok\n' > "$T/nul.csv"
run nul "$T/nul.csv"
expect_eq "NUL byte: job succeeds" 0 "$RC"
check "NUL byte: invariant" invariant_holds "$T/nul.json"
expect_eq "NUL byte: both rows written, as JSON" 2 "$(jq -s length "$T/nul.out")"

printf 'id,n,text\n1,1,\xc3\x28bad\n2,2,caf\xc3\xa9\n3,3,\xed\xa0\x80surrogate\n' > "$T/utf8.csv"
run utf8 "$T/utf8.csv"
expect_eq "invalid UTF-8: job succeeds" 0 "$RC"
expect_eq "invalid UTF-8 and surrogates dead-lettered" 2 "$(dead utf8)"
expect_eq "valid UTF-8 kept" "café" "$(jq -r .text "$T/utf8.out")"
expect_eq "dead letters are valid JSON, both" 2 "$(jq -s length "$T/utf8.err")"

printf 'id,n,text\n1,x1,a\n2,99999999999999999999,b\n3,,empty\n4,-7,neg\n' > "$T/types.csv"
run types "$T/types.csv"
expect_eq "bad integers: job succeeds" 0 "$RC"
expect_eq "bad integers dead-lettered (not-a-number and overflow)" 2 "$(dead types)"
expect_eq "empty integer is absent, negative kept" '{"id":"3","text":"empty"} {"id":"4","n":-7,"text":"neg"}' \
  "$(tr '\n' ' ' < "$T/types.out" | sed 's/ $//')"

: > "$T/empty.csv"
run empty "$T/empty.csv"
expect_eq "empty file: exit 1" 1 "$RC"
expect_contains "empty file: says so" "$T/empty.log" "the file is empty: expected a header row"

printf 'id,n,text\n' > "$T/header-only.csv"
run header_only "$T/header-only.csv"
expect_eq "header only: zero records, success" "0 0" "$RC $(jq -r .read "$T/header_only.json")"

printf '1,1,a\n2,2,b\n' > "$T/noheader.csv"
run noheader "$T/noheader.csv"
expect_eq "no header: the first row is taken as the header, types option names a missing field" 1 "$RC"
expect_contains "no header: clear message" "$T/noheader.log" "types.n: no such field"

# a 100 MB field: over max_record_bytes it is dead-lettered, and the rows after it still flow
{ printf 'id,n,text\n1,1,small\n2,2,"'; head -c 104857600 /dev/zero | tr '\0' 'x'; printf '"\n3,3,after\n'; } > "$T/huge.csv"
run huge "$T/huge.csv" --set max=8388608
expect_eq "100 MB field: job succeeds" 0 "$RC"
expect_eq "100 MB field: dead-lettered, others written" "1 2" "$(dead huge) $(jq -r .written "$T/huge.json")"
expect_contains "100 MB field: reason" "$T/huge.err" "larger than max_record_bytes"
run huge_ok "$T/huge.csv" --set max=209715200
expect_eq "100 MB field under the limit is written" 3 "$(jq -r .written "$T/huge_ok.json")"

# a record over the limit on one line (it ends inside one read) is dead-lettered by itself: the
# rows after it are all read, once, in order; a big field under the limit earlier does not make a
# later, smaller record spanning lines count as too large
{ printf 'id,n,text\n1,1,"'; head -c 3000 /dev/zero | tr '\0' 'z'; printf '"\n'
  printf '2,2,"'; head -c 1500 /dev/zero | tr '\0' 'y'; printf '"\n3,3,"two\nlines"\n4,4,x\n5,5,y\n'; } > "$T/oneline.csv"
run oneline "$T/oneline.csv" --set max=2000
check "one-line record over the limit: invariant" invariant_holds "$T/oneline.json"
expect_eq "one-line record over the limit: only it is dead-lettered" "1 2 3 4 5" \
  "$(dead oneline) $(jq -r .n "$T/oneline.out" | tr '\n' ' ' | sed 's/ $//')"
expect_contains "one-line record over the limit: reason and line" "$T/oneline.err" "line 2: record of 3005 bytes is larger"

# long lines, many columns, CR-only line ends
awk 'BEGIN { printf "id,n,text"; for (i = 0; i < 500; i++) printf ",c%d", i; print "";
             for (r = 1; r <= 50; r++) { printf "%d,%d,t", r, r; for (i = 0; i < 500; i++) printf ",%d", i; print "" } }' > "$T/wide.csv"
run wide "$T/wide.csv"
expect_eq "500 columns" 50 "$(jq -r .written "$T/wide.json")"
printf 'id,n,text\r1,1,a\r2,2,b\r' > "$T/cr.csv"
run cr "$T/cr.csv"
expect_eq "CR-only line ends" 2 "$(jq -r .written "$T/cr.json")"
finish
