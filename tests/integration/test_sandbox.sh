#!/usr/bin/env bash
# The sandbox: text chunks only (no string.dump, no binary load), the per-call instruction
# limit, and the job's memory_limit: a filter/map call that needs more dead-letters its record,
# a script that keeps more than half of it stops the job with exit 1.
. "$(dirname "$0")/../lib.sh"

bin/gen-reviews --rows 2000 --seed 3 > "$T/in.csv" 2>/dev/null

# run_job NAME JOB-OPTIONS...: a job over $T/in.csv with the given extra job{} fields
run_job() {
  local name="$1" extra="$2"
  cat > "$T/$name.lua" <<LUA
${3:-}
return job { name = "$name", source = source.csv { path = "$T/in.csv" }, $extra,
  sinks = sink.jsonl { path = "$T/$name.jsonl" }, errors = sink.jsonl { path = "$T/$name.dead.jsonl" } }
LUA
  timeout 120 $RUNNEL run "$T/$name.lua" --summary-json "$T/$name.json" >"$T/$name.out" 2>&1
}

# ---- binary chunks ----
cat > "$T/dump.lua" <<'LUA'
assert(string.dump == nil, "string.dump is available")
assert(("x").dump == nil, "string.dump is reachable through the string metatable")
local ok, f = pcall(load, "return 1 + 1")
assert(ok and f and f() == 2, "load of a text chunk fails")
local f2 = load("return ...", "=chunk", "t", {})
assert(f2 and f2(5) == 5, "load with a name, a mode and an env fails")
-- a binary chunk, as string.dump would have made it (the signature "\27Lua" starts it)
local chunk, err = load("\27LuaT\0\25\147\r\n\26\n\4\8\8xV\0\0\0\0\0\0\0\0\0\0\0(w@\1", "=bin", "b")
assert(chunk == nil and err:find("attempt to load a binary chunk"), "a binary chunk was loaded: " .. tostring(err))
local chunk2, err2 = load("\27Lua whatever")
assert(chunk2 == nil and err2:find("binary chunk"), "a binary chunk with the default mode was loaded")
return job { name = "dump", source = source.csv { path = "x.csv" }, sinks = sink.stdout {} }
LUA
$RUNNEL check "$T/dump.lua" >"$T/dump.out" 2>&1
expect_eq "no string.dump; load takes text chunks only, whatever mode is asked" 0 $?
sed 's/^/   | /' "$T/dump.out" | grep -v ': ok (job' || true

# ---- the instruction limit still ends an endless loop, one record at a time ----
run_job loop 'instruction_limit = 200000, map = function(r) if r.Id == "5" then while true do end end return r end'
expect_eq "an endless loop costs its record only" "1999 1" "$(sj "$T/loop.json" .written) $(sj "$T/loop.json" .dead_lettered)"
check "... with the limit as its reason" grep -q "instruction limit of 200000 exceeded" "$T/loop.dead.jsonl"

# ---- memory_limit ----
run_job bigmap 'memory_limit = "32MB",
  map = function(r) if r.Id == "7" or r.Id == "1500" then local t = {} for i = 1, 1e8 do t[i] = i end end return r end'
expect_eq "a map that grows a table past the limit: the job goes on (exit 0)" 0 $?
check "bigmap: invariant" invariant_holds "$T/bigmap.json"
expect_eq "... its records are dead-lettered, the others written" "1998 2" "$(sj "$T/bigmap.json" .written) $(sj "$T/bigmap.json" .dead_lettered)"
expect_eq "... with the limit as the reason, at stage map" '"map" "Lua memory limit of 32 MB reached"' \
  "$(jq -r '"\"" + .stage + "\" \"" + .reason + "\""' "$T/bigmap.dead.jsonl" | sort -u)"

run_job bigfilter 'memory_limit = "16MB",
  filter = function(r) if r.Id == "9" then local s = string.rep("x", 64 * 1024 * 1024) end return true end'
expect_eq "a filter that makes one huge string: its record is dead-lettered" "1999 1" \
  "$(sj "$T/bigfilter.json" .written) $(sj "$T/bigfilter.json" .dead_lettered)"
check "... at stage filter" jq -e 'select(.stage == "filter" and .reason == "Lua memory limit of 16 MB reached")' "$T/bigfilter.dead.jsonl"

run_job keep 'memory_limit = "16MB", map = function(r) kept[#kept + 1] = string.rep(r.Id, 4000) return r end' 'kept = {}'
rc=$?
expect_eq "a map that keeps memory in a global stops the job with exit 1" 1 "$rc"
expect_contains "... saying why, with the script line and the option" "$T/keep.out" \
  "runnel: $T/keep.lua:2: job: memory_limit: the Lua heap still holds"
expect_contains "... and the limit" "$T/keep.out" "of 16 MB after a full collection"
check "... having read fewer records than the file has" jq -e '.read < 2000' "$T/keep.json"

cat > "$T/heavy.lua" <<LUA
big = string.rep("y", 24 * 1024 * 1024)
return job { name = "heavy", memory_limit = "16MB", source = source.csv { path = "$T/in.csv" }, sinks = sink.stdout {} }
LUA
$RUNNEL check "$T/heavy.lua" >"$T/heavy.out" 2>&1
expect_eq "a script that holds more than its memory_limit once it has run fails check" 1 $?
expect_contains "... naming the job's line and the option" "$T/heavy.out" "heavy.lua:2: job: memory_limit: the script holds 24"

cat > "$T/huge.lua" <<'LUA'
local t = {}
for i = 1, 1e9 do t[i] = string.rep("z", 1000) .. i end
return job { name = "huge", source = source.csv { path = "x.csv" }, sinks = sink.stdout {} }
LUA
timeout 120 $RUNNEL check "$T/huge.lua" >"$T/huge.out" 2>&1
expect_eq "the script itself runs under the default limit (512 MB): exit 1, not all the machine's memory" 1 $?
expect_contains "... saying so" "$T/huge.out" "Lua memory limit of 512 MB reached"

run_job sizes 'memory_limit = 64 * 1024 * 1024, map = function(r) return r end'
expect_eq "memory_limit takes a number of bytes" 2000 "$(sj "$T/sizes.json" .written)"
finish
