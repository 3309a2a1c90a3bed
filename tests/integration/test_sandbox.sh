#!/usr/bin/env bash
# The sandbox: text chunks only (no string.dump, no binary load).
. "$(dirname "$0")/../lib.sh"

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

finish
