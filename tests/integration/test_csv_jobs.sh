#!/usr/bin/env bash
# Batch jobs over CSV files: golden output, dead letters, types, sinks, --limit, the
# read = written + filtered + dead-lettered invariant.
. "$(dirname "$0")/../lib.sh"

# 1. edge cases of the CSV format against a golden file
$RUNNEL run tests/data/edge_job.lua --set input=tests/data/edge.csv --set output="$T/edge.jsonl" \
  --summary-json "$T/edge.json" 2>"$T/edge.err"
check "edge.csv matches golden output" cmp -s tests/golden/edge.jsonl "$T/edge.jsonl"
expect_eq "edge.csv read 5" 5 "$(sj "$T/edge.json" .read)"

# 2. the example job on the shipped sample
$RUNNEL run jobs/reviews_clean.lua --set output="$T/clean.jsonl" --set errors="$T/clean.err.jsonl" \
  --summary-json "$T/clean.json" 2>"$T/clean.log"
check "reviews_clean: invariant" invariant_holds "$T/clean.json"
expect_eq "reviews_clean: read every sample row" 20000 "$(sj "$T/clean.json" .read)"
expect_eq "reviews_clean: 19,909 written (91 empty summaries filtered)" "19909 19909" "$(sj "$T/clean.json" .written) $(wc -l < "$T/clean.jsonl")"
check "reviews_clean: every line is JSON with review_id and no HTML" \
  jq -e -s 'length > 0 and all(.[]; .review_id != null and ((.text // "") | test("<br") | not))' "$T/clean.jsonl"
expect_contains "summary printed" "$T/clean.log" "read 20,000"

# 3. broken rows go to the dead-letter sink with line and reason; the job goes on
bin/gen-reviews --rows 3000 --seed 5 --broken-every 250 > "$T/broken.csv" 2>"$T/gen.err"
broken=12   # 3,000 rows, a broken one after every 250
$RUNNEL run jobs/reviews_clean.lua --set input="$T/broken.csv" --set output="$T/b.jsonl" \
  --set errors="$T/b.err.jsonl" --summary-json "$T/b.json" 2>/dev/null
check "broken rows: invariant" invariant_holds "$T/b.json"
expect_eq "broken rows: all dead-lettered" "$broken" "$(sj "$T/b.json" .dead_lettered)"
expect_eq "broken rows: dead letters written" "$broken" "$(wc -l < "$T/b.err.jsonl")"
check "dead letters carry line, reason, stage, raw" \
  jq -e -s 'all(.[]; (.line|type) == "number" and (.reason|type) == "string" and .stage == "source" and (.raw|type) == "string")' "$T/b.err.jsonl"
check "a type error names the column" grep -q "column 'Score'" "$T/b.err.jsonl"
check "a width error says expected 10 fields" grep -q "expected 10 fields" "$T/b.err.jsonl"
check "invalid UTF-8 is named" grep -q "not valid UTF-8" "$T/b.err.jsonl"
check "dead-letter file is valid UTF-8 JSON" jq -e . "$T/b.err.jsonl" >/dev/null

# 4. --limit, csv sink, stdout sink, lua sink, header = false with columns, TSV
cat > "$T/sinks.lua" <<'LUA'
local seen = 0
return job {
  name = "sinks",
  source = source.csv { path = param("input"), header = false, delimiter = "\t",
                        columns = { "id", "word", "n" }, types = { id = "integer", n = "number" } },
  map = function(r) r.double = r.n * 2; return r end,
  sinks = { sink.csv { path = param("out_csv"), columns = { "id", "word", "double" } },
            sink.stdout { format = "text" },
            sink.lua { write = function(r) seen = seen + 1 end,
                       close = function() print("lua sink saw " .. seen) end } },
}
LUA
printf '1\talpha\t1.5\n2\t"be, ta"\t2\n3\tgamma\t-1\n4\tdelta\t7\n' > "$T/in.tsv"
$RUNNEL run "$T/sinks.lua" --set input="$T/in.tsv" --set out_csv="$T/out.csv" --limit 3 >"$T/stdout.txt" 2>"$T/sinks.log"
expect_eq "csv sink with --limit 3" "$(printf 'id,word,double\n1,alpha,3.0\n2,"be, ta",4.0\n3,gamma,-2.0\n')" "$(cat "$T/out.csv")"
expect_eq "stdout text sink" "id=1 word=alpha n=1.5 double=3.0" "$(head -1 "$T/stdout.txt")"
expect_contains "lua sink called for each record" "$T/sinks.log" "lua sink saw 3"

# 5. map/filter errors are dead-lettered with a traceback; max_errors stops the job
cat > "$T/errs.lua" <<'LUA'
return job {
  name = "errs",
  source = source.csv { path = param("input"), types = { Id = "integer" } },
  map = function(r)
    if r.Id % 3 == 0 then error("no multiples of three: " .. r.Id) end
    return { id = r.Id }
  end,
  sinks = sink.jsonl { path = param("output") },
  errors = sink.jsonl { path = param("errors") },
  max_errors = tonumber(param("max_errors", "0")),
}
LUA
bin/gen-reviews --rows 30 --seed 1 > "$T/30.csv" 2>/dev/null
$RUNNEL run "$T/errs.lua" --set input="$T/30.csv" --set output="$T/e.jsonl" --set errors="$T/e.err" \
  --summary-json "$T/e.json" 2>/dev/null
expect_eq "map errors dead-lettered" 10 "$(sj "$T/e.json" .dead_lettered)"
check "map error has script line and traceback" grep -q 'errs.lua:5: no multiples of three: 3.*stack traceback' "$T/e.err"
check "map errors: invariant" invariant_holds "$T/e.json"
$RUNNEL run "$T/errs.lua" --set input="$T/30.csv" --set output="$T/e2.jsonl" --set errors="$T/e2.err" \
  --set max_errors=4 2>"$T/e2.log"
expect_eq "error budget stops the job with exit 1" 1 $?
expect_contains "error budget is explained" "$T/e2.log" "stopping after 4 script errors"

# 6. an endless loop in map hits the instruction limit and is dead-lettered
cat > "$T/loop.lua" <<'LUA'
return job {
  name = "loop", instruction_limit = 1000000,
  source = source.csv { path = param("input") },
  map = function(r) if r.Id == "2" then while true do end end return r end,
  sinks = sink.jsonl { path = param("output") }, errors = sink.jsonl { path = param("errors") },
}
LUA
$RUNNEL run "$T/loop.lua" --set input="$T/30.csv" --set output="$T/l.jsonl" --set errors="$T/l.err" \
  --summary-json "$T/l.json" 2>/dev/null
expect_eq "endless loop: one record dead-lettered" 1 "$(sj "$T/l.json" .dead_lettered)"
check "endless loop: reason names the limit" grep -q "instruction limit" "$T/l.err"
expect_eq "endless loop: others written" 29 "$(sj "$T/l.json" .written)"
# a map that cuts a character in two: JSON cannot hold the string, so the record is a dead
# letter with the reason, and every line written (JSON and CSV) stays valid
cat > "$T/utf8.lua" <<'LUA'
return job {
  name = "utf8", source = source.csv { path = param("input"), types = { Id = "integer" } },
  map = function(r) if r.Id % 5 == 0 then return { id = r.Id, cut = ("é"):sub(1, 1) } end return { id = r.Id } end,
  sinks = { sink.jsonl { path = param("output") }, sink.csv { path = param("output") .. ".csv" } },
  errors = sink.jsonl { path = param("output") .. ".err" },
}
LUA
check "invalid UTF-8 from map: the job finishes" $RUNNEL run "$T/utf8.lua" --set input="$T/30.csv" \
  --set output="$T/u.jsonl" --summary-json "$T/u.json" --no-progress
expect_eq "invalid UTF-8 from map: written and dead-lettered" "24 6" "$(sj "$T/u.json" .written) $(sj "$T/u.json" .dead_lettered)"
expect_eq "invalid UTF-8 from map: every line is JSON" 24 "$(jq -s length "$T/u.jsonl")"
expect_contains "invalid UTF-8 from map: reason" "$T/u.jsonl.err" "field 'cut': a string is not valid UTF-8"
expect_eq "invalid UTF-8 from map: the CSV has a header and 24 rows" 25 "$(wc -l < "$T/u.jsonl.csv")"
# numbers in CSV are written as in the JSON line: all their digits
cat > "$T/num.lua" <<'LUA'
return job { name = "num", source = source.csv { path = param("input"), types = { Id = "integer" } },
  map = function(r) return { id = r.Id, x = 1234567.123456789, y = 3.0 } end,
  sinks = { sink.jsonl { path = param("output") }, sink.csv { path = param("output") .. ".csv" } } }
LUA
check "numbers: the job finishes" $RUNNEL run "$T/num.lua" --set input="$T/30.csv" --set output="$T/num.jsonl" --limit 1 --no-progress
expect_eq "numbers: CSV keeps every digit, as JSON does" '1,1234567.123456789,3.0 1234567.123456789' \
  "$(sed -n 2p "$T/num.jsonl.csv") $(jq -r .x "$T/num.jsonl")"
finish
