#!/usr/bin/env bash
# `runnel check` and the CLI: mistakes in job scripts are reported with the script line and
# the option at fault, once, without running anything; declarations are what the declaration
# functions made, nothing that looks like one.
. "$(dirname "$0")/../lib.sh"

write() { cat > "$T/$1"; }
# expect_check NAME SCRIPT EXPECTED_TEXT: check fails (exit 1) and says EXPECTED_TEXT, as the
# first line of its output (the message, without a traceback after it)
expect_check() {
  local out="$T/check.out"
  $RUNNEL check "$T/$2" >"$out" 2>&1
  local rc=$?
  if [ $rc -eq 1 ] && grep -qF -- "$3" "$out" && [ "$(wc -l < "$out")" -eq 1 ]; then pass "$1"
  else fail "$1 (exit $rc):"; sed 's/^/   | /' "$out"; fi
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
  "typo.lua:3: source.csv: delimeter: unknown option; did you mean delimiter?"

write type.lua <<'LUA'
return job { name = "t", source = source.csv { path = "x.csv", header = "yes" }, sinks = sink.stdout {} }
LUA
expect_check "wrong type is named" type.lua 'type.lua:1: source.csv: header: expected true or false, got "yes"'

write missing.lua <<'LUA'
return job { name = "m", source = source.csv { header = true }, sinks = sink.stdout {} }
LUA
expect_check "missing required option" missing.lua "missing.lua:1: source.csv: path: required option is missing"

write nosink.lua <<'LUA'
return job { name = "m", source = source.csv { path = "x" } }
LUA
expect_check "job without sinks" nosink.lua "nosink.lua:1: job: sinks: required option is missing"

write badsink.lua <<'LUA'
return job { name = "m", source = source.csv { path = "x" }, sinks = { "out.jsonl" } }
LUA
expect_check "sinks must be sink declarations" badsink.lua 'badsink.lua:1: job: sinks[1]: expected a sink (sink.X{...}), got "out.jsonl"'

write syntax.lua <<'LUA'
return job { name = "s" source = 1 }
LUA
expect_check "syntax error names the line" syntax.lua "syntax.lua:1:"

# option values are checked at the declaration line, at every depth
write delim.lua <<'LUA'
return job { name = "d", source = source.csv { path = "x.csv" },
             sinks = sink.csv { path = "x.csv", delimiter = ";;" } }
LUA
expect_check "sink.csv: a delimiter of two bytes is refused by check" delim.lua \
  'delim.lua:2: sink.csv: delimiter: must be one byte, got ";;" (2 bytes)'
write quote.lua <<'LUA'
return job { name = "q", source = source.csv { path = "x.csv", quote = "" }, sinks = sink.stdout {} }
LUA
expect_check "source.csv: an empty quote is refused by check" quote.lua 'quote.lua:1: source.csv: quote: must be one byte, got "" (0 bytes)'
write nested.lua <<'LUA'
local rater = model.openai {
  model = "m", prompt = "{{summary}}", output = { rating = "integer" },
  limits = { concurency = 3 },
}
return job { name = "n", source = source.csv { path = "x.csv" }, predict = rater, sinks = sink.stdout {} }
LUA
expect_check "a typo inside a nested table: did-you-mean at its depth" nested.lua \
  "nested.lua:1: model.openai: limits.concurency: unknown option; did you mean concurrency?"
write output.lua <<'LUA'
return job { name = "r", source = source.csv { path = "x.csv" }, sinks = sink.stdout {},
  predict = model.openai { model = "m", prompt = "x", output = { r = { type = "integer", minn = 1 } } } }
LUA
expect_check "a field of a map of tables is checked too" output.lua \
  "output.lua:2: model.openai: output.r.minn: unknown option; did you mean min?"
write range.lua <<'LUA'
return job { name = "r", source = source.csv { path = "x.csv" }, sinks = sink.stdout {},
  predict = model.openai { model = "m", prompt = "x", output = { r = "integer" }, limits = { retries = 500 } } }
LUA
expect_check "a number out of its range" range.lua "range.lua:2: model.openai: limits.retries: must be from 0 to 100, got 500"
write enum.lua <<'LUA'
return job { name = "e", source = source.csv { path = "x.csv" }, sinks = sink.stdout { format = "jsn" } }
LUA
expect_check "a value not among the choices gets a did-you-mean" enum.lua \
  'enum.lua:1: sink.stdout: format: unknown value "jsn"; did you mean json? (one of json, text)'
write map.lua <<'LUA'
return job { name = "m", source = source.csv { path = "x.csv", types = { score = "int" } }, sinks = sink.stdout {} }
LUA
expect_check "the values of a map are checked" map.lua 'map.lua:1: source.csv: types.score: unknown value "int"; did you mean integer?'
write size.lua <<'LUA'
return job { name = "s", source = source.csv { path = "x.csv", max_record_bytes = "lots" }, sinks = sink.stdout {} }
LUA
expect_check "a size that does not parse" size.lua 'size.lua:1: source.csv: max_record_bytes: bad size "lots"'

# errors carry their prefix once: the line, the declaration, the option, the reason
write once.lua <<'LUA'
return job { name = "o", source = source.csv { path = "x.csv" }, sinks = sink.csv { path = "y.csv", delimiter = ";;" } }
LUA
$RUNNEL run "$T/once.lua" >"$T/once.out" 2>&1
expect_eq "run refuses the delimiter too (exit 1)" 1 $?
expect_eq "the message says sink.csv once" 1 "$(grep -o 'sink\.csv:' "$T/once.out" | wc -l)"
expect_contains "... after the script line" "$T/once.out" "runnel: $T/once.lua:1: sink.csv: delimiter: must be one byte"

# declarations are userdata made by the declaration functions; a table that looks like one is not
write fake.lua <<'LUA'
return job { name = "fake", source = { __kind = "source", __type = "bogus", options = {} }, sinks = sink.stdout {} }
LUA
expect_check "a plain table posing as a source is refused by check" fake.lua \
  "fake.lua:1: job: source: expected a source (source.csv{...}, source.kafka{...}), got table"
$RUNNEL run "$T/fake.lua" >"$T/fake.out" 2>&1
expect_eq "... and by run, with exit 1 (it crashed with SIGSEGV)" 1 $?
write fakejob.lua <<'LUA'
return { __kind = "job", __type = "job", options = { name = "x" } }
LUA
expect_check "a plain table posing as the job is refused" fakejob.lua "must end with \`return job { ... }\`"
write tostr.lua <<'LUA'
local out = sink.jsonl { path = "x.jsonl" }
assert(tostring(out) == "sink.jsonl (" .. arg0 .. ":1)", "tostring gives " .. tostring(out))
assert(type(out) == "userdata", "a declaration is a " .. type(out))
assert(not pcall(function() return out.path end), "a declaration's insides can be read")
assert(getmetatable(out) == "declaration", "the metatable is reachable")
local j = job { name = "t", source = source.csv { path = "x.csv" }, sinks = out }
assert(tostring(j):match("^job %(.*tostr.lua:6%)$"), "tostring(job) gives " .. tostring(j))
return j
LUA
sed -i "s|arg0|\"$T/tostr.lua\"|" "$T/tostr.lua"
$RUNNEL check "$T/tostr.lua" >"$T/tostr.out" 2>&1
expect_eq "tostring(declaration) names the plugin and the line; the userdata is closed" 0 $?
write later.lua <<'LUA'
local o = { path = "x.csv", delimiter = ";" }
local s = sink.csv(o)
o.delimiter = ";;"    -- after the check: the declaration keeps the checked copy
return job { name = "later", source = source.csv { path = "x.csv" }, sinks = s }
LUA
$RUNNEL check "$T/later.lua" >"$T/later.out" 2>&1
expect_eq "changing an options table after its declaration changes nothing" 0 $?

# job names are path components: nothing outside the state directory
for bad in "../escaped" "a/b" ".hidden" ""; do
  printf 'return job { name = "%s", source = source.csv { path = "x.csv" }, sinks = sink.stdout {} }\n' "$bad" > "$T/name.lua"
  expect_check "job name '$bad' is refused with the allowed characters" name.lua \
    "name.lua:1: job: name: \"$bad\" cannot be a job name: it names the job's state files, so use 1 to 128 letters, digits, '_', '-' and '.', not starting with '.'"
done
mkdir -p "$T/jobs"
printf 'id\n1\n' > "$T/jobs/in.csv"
cat > "$T/jobs/escape.lua" <<LUA
return job { name = "../escaped", source = source.csv { path = "$T/jobs/in.csv" }, sinks = sink.jsonl { path = "$T/jobs/out.jsonl" } }
LUA
timeout 20 $RUNNEL run "$T/jobs/escape.lua" --mode stream --state-dir "$T/jobs/state/inner" >"$T/escape.out" 2>&1 &
pid=$!; sleep 2; kill -TERM $pid 2>/dev/null; wait $pid
check "no checkpoint is written outside the state directory" test -z "$(find "$T/jobs" -name '*.checkpoint.json' -not -path "$T/jobs/state/inner/*")"
expect_contains "... because the name is refused" "$T/escape.out" "cannot be a job name"

write noreturn.lua <<'LUA'
local x = source.csv { path = "x" }
LUA
expect_check "script must return a job" noreturn.lua "must end with \`return job { ... }\`"

write param.lua <<'LUA'
return job { name = "p", source = source.csv { path = param("input") }, sinks = sink.stdout {} }
LUA
$RUNNEL check "$T/param.lua" >"$T/param.out" 2>&1
expect_eq "param without default needs --set: a usage error (exit 2)" 2 $?
expect_eq "... in one line naming the line and the --set to give" \
  "runnel: $T/param.lua:1: param \"input\" has no default: run with --set input=VALUE" "$(cat "$T/param.out")"
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
$RUNNEL help model.openai >"$T/help.out"
check "help shows nested options as rows of their own" grep -Eq '^  limits\.concurrency +integer\|auto 1\.\.10000 +64 ' "$T/help.out"
check "help shows the fields of a map of tables" grep -Eq '^  output\.NAME\.type ' "$T/help.out"
$RUNNEL help --markdown >"$T/help.md"
check "the markdown reference has nested rows" grep -qF '| `price.input` | number >= 0 |' "$T/help.md"
$RUNNEL run "$T/ok.lua" >"$T/noinput.out" 2>&1
expect_eq "missing input file fails with exit 1" 1 $?
expect_contains "missing input file is named" "$T/noinput.out" "x.csv: cannot open: No such file or directory"
finish
