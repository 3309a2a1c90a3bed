#!/usr/bin/env bash
# `runnel check` and the CLI: mistakes in job scripts are reported with the script line and
# the option at fault, without running anything; the sandbox holds.
. "$(dirname "$0")/../lib.sh"

write() { cat > "$T/$1"; }
# expect_check NAME SCRIPT EXPECTED_TEXT: check fails (exit 1) and says EXPECTED_TEXT
expect_check() {
  local out="$T/check.out"
  $RUNNEL check "$T/$2" >"$out" 2>&1
  local rc=$?
  if [ $rc -eq 1 ] && grep -qF -- "$3" "$out"; then pass "$1"; else fail "$1 (exit $rc):"; sed 's/^/   | /' "$out"; fi
}

cat > "$T/ok.lua" <<LUA
return job { name = "ok", source = source.csv { path = "x.csv" }, sinks = sink.jsonl { path = "$T/ok-out.jsonl" } }
LUA
$RUNNEL check "$T/ok.lua" >"$T/ok.out" 2>&1
expect_eq "a good script checks ok" 0 $?
expect_contains "check says ok" "$T/ok.out" "ok (job ok)"
check "check runs nothing (the sink file is not created)" test ! -e "$T/ok-out.jsonl"

write typo.lua <<'LUA'
return job {
  name = "typo",
  source = source.csv { path = "x.csv", delimeter = ";" },
  sinks = sink.stdout {},
}
LUA
expect_check "unknown option names line, option and suggestion" typo.lua \
  "typo.lua:3: source.csv: unknown option 'delimeter' (did you mean 'delimiter'?)"

write type.lua <<'LUA'
return job { name = "t", source = source.csv { path = "x.csv", header = "yes" }, sinks = sink.stdout {} }
LUA
expect_check "wrong type is named" type.lua "type.lua:1: source.csv: option 'header' must be a boolean, got string"

write missing.lua <<'LUA'
return job { name = "m", source = source.csv { header = true }, sinks = sink.stdout {} }
LUA
expect_check "missing required option" missing.lua "missing.lua:1: source.csv: missing required option 'path'"

write nosink.lua <<'LUA'
return job { name = "m", source = source.csv { path = "x" } }
LUA
expect_check "job without sinks" nosink.lua "job: missing required option 'sinks'"

write badsink.lua <<'LUA'
return job { name = "m", source = source.csv { path = "x" }, sinks = { "out.jsonl" } }
LUA
expect_check "sinks must be sink declarations" badsink.lua "option 'sinks' must be a sink|list"

write syntax.lua <<'LUA'
return job { name = "s" source = 1 }
LUA
expect_check "syntax error names the line" syntax.lua "syntax.lua:1:"

write noreturn.lua <<'LUA'
local x = source.csv { path = "x" }
LUA
expect_check "script must return a job" noreturn.lua "must end with \`return job { ... }\`"

write param.lua <<'LUA'
return job { name = "p", source = source.csv { path = param("input") }, sinks = sink.stdout {} }
LUA
expect_check "param without default needs --set" param.lua "param 'input' has no default: run with --set input=VALUE"
$RUNNEL check "$T/param.lua" --set input=a.csv >/dev/null 2>&1
expect_eq "--set fills param" 0 $?

write sandbox.lua <<'LUA'
assert(io == nil, "io is available")
assert(os.execute == nil and os.exit == nil and os.remove == nil, "os is not trimmed")
assert(package == nil and dofile == nil and loadfile == nil, "loaders are available")
assert(not pcall(require, "socket.core"), "require found a C module")
assert(tostring(secret("RUNNEL_TEST_SECRET")) == "<secret RUNNEL_TEST_SECRET>", "secret prints its value")
return job { name = "sb", source = source.csv { path = "x" }, sinks = sink.stdout {} }
LUA
RUNNEL_TEST_SECRET=hunter2 $RUNNEL check "$T/sandbox.lua" >"$T/sb.out" 2>&1
expect_eq "sandbox: no io, os.execute, package, C modules; secrets do not print" 0 $?
check "sandbox: secret value never printed" bash -c "! grep -q hunter2 '$T/sb.out'"

$RUNNEL run "$T/ok.lua" --mode sideways >"$T/cli.out" 2>&1
expect_eq "bad --mode is a usage error (exit 2)" 2 $?
$RUNNEL --version | grep -q '^runnel [0-9]'
expect_eq "--version" 0 $?
$RUNNEL help source.csv | grep -q "delimiter"
expect_eq "help source.csv lists options" 0 $?
$RUNNEL run "$T/ok.lua" >"$T/noinput.out" 2>&1
expect_eq "missing input file fails with exit 1" 1 $?
expect_contains "missing input file is named" "$T/noinput.out" "x.csv: cannot open: No such file or directory"
finish
