#!/usr/bin/env bash
# Sink rejections (sink interface v2): a sink that refuses a record does not stop the job; the
# record is dead-lettered with stage sink.NAME and the sink's reason, and counts as
# dead-lettered, not written, although the other sinks hold it. Nothing is lost, the summary
# counts add up, and a run stopped mid-way then resumed ends with the same outputs and the
# same dead letters, each once.
. "$(dirname "$0")/../lib.sh"

bin/gen-reviews --rows 3000 --seed 21 > "$T/in.csv" 2>/dev/null
cat > "$T/job.lua" <<'LUA'
-- sink.lua rejects every id divisible by `every`, and raises an error at record `fail_at`
local every, fail_at = tonumber(param("every", "7")), tonumber(param("fail_at", "0"))
local slow, bare = param("slow", "0") == "1", param("bare", "0") == "1" -- at the top: --set is checked against what ran
local seen = 0
return job {
  name = param("name"),
  checkpoint_interval = param("checkpoint", "5s"),
  source = source.csv { path = param("input"), select = { id = "Id", summary = "Summary" },
                        types = { id = "integer" } },
  filter = function(r) return r.id % 10 ~= 3 end,
  sinks = {
    sink.jsonl { path = param("output") },
    sink.lua { write = function(r)
      seen = seen + 1
      if seen == fail_at then error("lua sink broke at record " .. r.id) end
      if slow then local t = os.clock() while os.clock() - t < 0.0005 do end end
      if r.id % every == 0 then return false, "id " .. r.id .. " is a multiple of " .. every end
      if bare and r.id == 2 then return false end
    end },
  },
  errors = sink.jsonl { path = param("errors") },
}
LUA
# run NAME ARGS...: the job; exit code in $T/NAME.rc, stderr in $T/NAME.log, summary in $T/NAME.json
run() {
  local name="$1"; shift
  $RUNNEL run "$T/job.lua" --set name="$name" --set input="$T/in.csv" --set output="$T/$name.jsonl" \
    --set errors="$T/$name.err" --no-progress --summary-json "$T/$name.json" "$@" 2>"$T/$name.log"
  echo $? > "$T/$name.rc"
}

# ---- one sink rejects some records, the JSONL sink takes all --------------------------------
run ref
expect_eq "rejections do not stop the job" 0 "$(cat "$T/ref.rc")"
kept=$(awk -F, 'NR > 1 && $1 ~ /^[0-9]+$/ && $1 % 10 != 3' "$T/in.csv" | wc -l)
rejected=$(awk -F, 'NR > 1 && $1 ~ /^[0-9]+$/ && $1 % 10 != 3 && $1 % 7 == 0' "$T/in.csv" | wc -l)
echo "   $kept records pass the filter, $rejected of them are multiples of 7"
check "invariant: read = written + filtered + dead-lettered" invariant_holds "$T/ref.json"
expect_eq "a rejected record counts as dead-lettered" "$rejected" "$(sj "$T/ref.json" .dead_lettered)"
expect_eq "... and not as written" "$((kept - rejected))" "$(sj "$T/ref.json" .written)"
expect_eq "the JSONL sink holds every record, rejected ones too" "$kept" "$(wc -l < "$T/ref.jsonl")"
expect_eq "per-sink counts: jsonl wrote all, rejected none" "$kept 0" \
  "$(sj "$T/ref.json" '.sinks[0] | "\(.written) \(.rejected)"')"
expect_eq "per-sink counts: lua wrote the rest, rejected the multiples of 7" "$((kept - rejected)) $rejected" \
  "$(sj "$T/ref.json" '.sinks[1] | "\(.written) \(.rejected)"')"
expect_eq "one dead letter per rejected record" "$rejected" "$(wc -l < "$T/ref.err")"
check "each dead letter: stage sink.lua, the sink's reason, the sink, the record and its line" \
  jq -e -s 'all(.[]; .stage == "sink.lua" and (.reason | test("^id [0-9]+ is a multiple of 7$"))
                 and (.sink | test("^sink.lua \\(.*job.lua:[0-9]+\\)$")) and .record.id % 7 == 0
                 and (.line | type) == "number" and .reason == "id \(.record.id) is a multiple of 7")' "$T/ref.err"
expect_eq "the dead letters are exactly the multiples of 7, in order" \
  "$(jq -r 'select(.id % 7 == 0) | .id' "$T/ref.jsonl" | tr '\n' ' ')" "$(jq -r .record.id "$T/ref.err" | tr '\n' ' ')"
expect_contains "the summary names the sink that rejected" "$T/ref.log" "rejected $rejected"
run bare --set bare=1
check "write returning false without a reason: rejected with a default reason" \
  jq -e -s 'map(select(.record.id == 2)) | length == 1 and .[0].reason == "write returned false"' "$T/bare.err"

# ---- a sink that raises an error stops the job, unlike a rejection ---------------------------
run broken --set fail_at=100
expect_eq "an error in sink.lua write stops the job" 1 "$(cat "$T/broken.rc")"
expect_contains "the error names the sink and the script line" "$T/broken.log" "sink.lua write"
expect_contains "... and the message" "$T/broken.log" "lua sink broke at record"

# ---- stopped mid-way and resumed: same outputs, each dead letter once ------------------------
run cut --set fail_at=1500 --set checkpoint=20ms --set slow=1
expect_eq "the interrupted run fails" 1 "$(cat "$T/cut.rc")"
check "it had taken checkpoints before failing" test -f "$RUNNEL_STATE_DIR/cut.checkpoint.json"
broke_at=$(sed -n 's/.*lua sink broke at record \([0-9]*\).*/\1/p' "$T/cut.log" | head -1)
length=$(jq '.sinks[0].length' "$RUNNEL_STATE_DIR/cut.checkpoint.json")
head -c "$length" "$T/cut.jsonl" > "$T/cut.committed"
echo "   sink.lua broke at id $broke_at; the checkpoint holds $(wc -l < "$T/cut.committed") records"
check "the checkpoint commits some records" [ -s "$T/cut.committed" ]
check "the checkpoint commits only records before the one the sink failed on" \
  jq -e -s --argjson b "${broke_at:-0}" 'map(.id) | max < $b' "$T/cut.committed"
check "what it commits is a prefix of the output" cmp -s "$T/cut.committed" <(head -c "$length" "$T/ref.jsonl")
run cut --resume
expect_eq "--resume finishes" 0 "$(cat "$T/cut.rc")"
expect_contains "--resume went on from the checkpoint" "$T/cut.log" "resuming cut after line"
check "resumed JSONL identical to the uninterrupted run" cmp "$T/ref.jsonl" "$T/cut.jsonl"
check "resumed dead letters: the same records, each once" \
  diff <(jq -c '[.record, .reason, .line]' "$T/ref.err") <(jq -c '[.record, .reason, .line]' "$T/cut.err")

# ---- records two sinks reject: one dead letter with both reasons -----------------------------
cat > "$T/two.lua" <<'LUA'
return job {
  name = "two",
  source = source.csv { path = param("input"), select = { id = "Id" }, types = { id = "integer" } },
  sinks = { sink.lua { write = function(r) if r.id % 2 == 0 then return false, "even" end end },
            sink.jsonl { path = param("output") },
            sink.lua { write = function(r) if r.id % 3 == 0 then return false, "three" end end } },
  errors = sink.jsonl { path = param("errors") },
}
LUA
$RUNNEL run "$T/two.lua" --set input="$T/in.csv" --set output="$T/two.jsonl" --set errors="$T/two.err" \
  --no-progress --summary-json "$T/two.json" 2>/dev/null
check "two rejecting sinks: invariant" invariant_holds "$T/two.json"
expect_eq "two rejecting sinks: rejected by either is dead-lettered once" \
  "$(seq 1 3000 | awk '$1 % 2 == 0 || $1 % 3 == 0' | wc -l)" "$(sj "$T/two.json" .dead_lettered)"
expect_eq "... and there is one letter for each" "$(sj "$T/two.json" .dead_lettered)" "$(wc -l < "$T/two.err")"
check "a record both rejected: stage of the first sink, both reasons" \
  jq -e -s 'map(select(.record.id == 6)) | length == 1 and .[0].stage == "sink.lua" and
            (.[0].reason | test("^even; also rejected by sink.lua \\(.*two.lua:[0-9]+\\): three$"))' "$T/two.err"
check "a record only the second rejected: its reason alone" \
  jq -e -s 'map(select(.record.id == 9)) | length == 1 and .[0].reason == "three"' "$T/two.err"

# ---- values a sink cannot write -------------------------------------------------------------
cat > "$T/fn.lua" <<'LUA'
local sinks = { sink.csv { path = param("output") .. ".csv", columns = { "id", "f" } } }
if param("jsonl", "0") == "1" then sinks[2] = sink.jsonl { path = param("output") } end
return job {
  name = "fn",
  source = source.csv { path = param("input"), select = { id = "Id" }, types = { id = "integer" } },
  map = function(r) if r.id == 5 then r.f = print end return r end,
  sinks = sinks,
  errors = sink.jsonl { path = param("errors") },
}
LUA
$RUNNEL run "$T/fn.lua" --set input="$T/in.csv" --set output="$T/fn" --set errors="$T/fn.err" --limit 10 \
  --no-progress --summary-json "$T/fn.json" 2>/dev/null
expect_eq "csv only: the record with a function is rejected by sink.csv" "sink.csv 1" \
  "$(jq -r .stage "$T/fn.err") $(sj "$T/fn.json" .dead_lettered)"
expect_contains "csv only: the reason names the file and the column" "$T/fn.err" "fn.csv: column f: cannot encode a function"
expect_eq "csv only: the other rows are written" 10 "$(wc -l < "$T/fn.csv")"
$RUNNEL run "$T/fn.lua" --set input="$T/in.csv" --set output="$T/fnj" --set errors="$T/fnj.err" --set jsonl=1 --limit 10 \
  --no-progress --summary-json "$T/fnj.json" 2>/dev/null
expect_eq "with a JSON sink: the record is dead at the map, before any sink takes it" "map 1 9" \
  "$(jq -r .stage "$T/fnj.err") $(sj "$T/fnj.json" .dead_lettered) $(wc -l < "$T/fnj")"
expect_eq "with a JSON sink: no sink holds it (CSV: header and 9 rows)" 10 "$(wc -l < "$T/fnj.csv")"
finish
