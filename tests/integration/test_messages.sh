#!/usr/bin/env bash
# What a new user reads when something is wrong: every message of `runnel run`, `check` and `help`
# for a wrong script, option, --set, file, environment variable, endpoint or key is one line
# that names the file and line, option, or URL at fault and what to do; no Lua traceback (except
# for filter/map errors, where it helps), no "(null)", one prefix. Each case checks the exact line.
. "$(dirname "$0")/../lib.sh"

W="$T/w"   # the jobs run from here, so their names in messages are short
mkdir -p "$W"
write() { cat > "$W/$1"; }
OUT="$T/out"; ERR="$T/err"

# run_in_w COMMAND...: run it in $W with stdout to $OUT and stderr to $ERR; sets RC
run_in_w() { (cd "$W" && "$@") >"$OUT" 2>"$ERR"; RC=$?; }
# clean NAME: no traceback and no (null) in what the last command printed
clean() {
  if grep -q 'stack traceback\|(null)\|\[C\]: in' "$OUT" "$ERR"; then fail "$1: a traceback or (null):"; sed 's/^/   | /' "$ERR" | head -20
  else pass "$1: no traceback, no (null)"; fi
}
# expect_line NAME EXIT LINE COMMAND...: stderr is exactly LINE, the exit code EXIT
expect_line() {
  local name="$1" want_rc="$2" want="$3"; shift 3
  run_in_w "$@"
  if [ "$RC" = "$want_rc" ] && [ "$(cat "$ERR")" == "$want" ]; then pass "$name"
  else fail "$name (exit $RC, want $want_rc): want the one line"; echo "   want: $want"; sed 's/^/   got:  /' "$ERR" | head -20; fi
  clean "$name"
}
# expect_summary_line NAME LINE: the last command's stderr has LINE as one of its lines
expect_summary_line() {
  if grep -qxF -- "$2" "$ERR"; then pass "$1"
  else fail "$1: no line"; echo "   want: $2"; sed 's/^/   got:  /' "$ERR" | head -20; fi
}

printf 'Id,Summary\n1,good\n2,bad\n' > "$W/in.csv"

# ---- the script itself ----
write syntax.lua <<'LUA'
return job { name = "s" source = 1 }
LUA
expect_line "a syntax error" 1 "runnel: syntax.lua:1: '}' expected near 'source'" $RUNNEL check syntax.lua

write nilcall.lua <<'LUA'
local x
x()
LUA
expect_line "a runtime error at the top level: the line, no traceback" 1 \
  "runnel: nilcall.lua:2: attempt to call a nil value (local 'x')" $RUNNEL check nilcall.lua

write errtbl.lua <<'LUA'
local t = {}
error(t)
LUA
expect_line "error() with a table: the line and what it was, no address" 1 \
  "runnel: errtbl.lua:2: error() raised a table value, not a message" $RUNNEL check errtbl.lua

write err0.lua <<'LUA'
local x = 1
error("no position given", 0)
LUA
expect_line "error(msg, 0): the line is added" 1 "runnel: err0.lua:2: no position given" $RUNNEL run err0.lua

write badopt.lua <<'LUA'
local m = model.openai { model = "m", prompt = "x", limits = { concurency = 3 } }
return job { name = "b", source = source.csv { path = "in.csv" }, predict = m, sinks = sink.stdout {} }
LUA
expect_line "a bad option: its line, the option and a did-you-mean" 1 \
  "runnel: badopt.lua:1: model.openai: limits.concurency: unknown option; did you mean concurrency?" $RUNNEL run badopt.lua

write missopt.lua <<'LUA'
local m = model.openai { prompt = "x" }
LUA
expect_line "a missing required option" 1 \
  'runnel: missopt.lua:1: model.openai: model: required option is missing (model name, e.g. "gpt-4o-mini" or "text-embedding-3-small")' \
  $RUNNEL check missopt.lua

write rethrow.lua <<'LUA'
local ok, e = pcall(sink.jsonl, { pth = "x" })
error(e, 0)
LUA
expect_line "a declaration called through pcall names the script line, not just the file" 1 \
  "runnel: rethrow.lua:1: sink.jsonl: pth: unknown option; did you mean path?" $RUNNEL check rethrow.lua

write plugin.lua <<'LUA'
local out = sink.jsnl { path = "x.jsonl" }
LUA
expect_line "a misspelt plugin: did you mean, not 'attempt to call a nil value'" 1 \
  "runnel: plugin.lua:1: sink.jsnl: no such sink; did you mean sink.jsonl?" $RUNNEL check plugin.lua
write plugin2.lua <<'LUA'
local s = source.parquet { path = "x" }
LUA
expect_line "a plugin that does not exist: the ones that do" 1 \
  "runnel: plugin2.lua:1: source.parquet: no such source (there are source.csv, source.kafka; runnel help lists them)" \
  $RUNNEL check plugin2.lua

write global.lua <<'LUA'
return jbo { name = "g" }
LUA
expect_line "a misspelt runnel global: did you mean" 1 \
  "runnel: global.lua:1: attempt to call a nil value (global 'jbo'); did you mean job?" $RUNNEL check global.lua

write req.lua <<'LUA'
local text = require("runnel.textt")
LUA
expect_line "require of a missing module: where it was looked for" 1 \
  "runnel: req.lua:1: require(\"runnel.textt\"): no runnel/textt.lua beside the job (in .) nor in runnel's scripts ($RUNNEL_LIB)" \
  $RUNNEL check req.lua

write env.lua <<'LUA'
local brokers = env("RUNNEL_TEST_UNSET_VAR")
LUA
expect_line "env() of an unset variable: once, with what to do" 1 \
  'runnel: env.lua:1: environment variable RUNNEL_TEST_UNSET_VAR is not set: set it, or give env() a default: env("RUNNEL_TEST_UNSET_VAR", "...")' \
  env -u RUNNEL_TEST_UNSET_VAR $RUNNEL check env.lua

write secret.lua <<'LUA'
local m = model.openai { model = "m", prompt = "{{Summary}}", output = { r = "integer" }, api_key = secret("RUNNEL_TEST_KEY") }
return job { name = "sec", source = source.csv { path = "in.csv" }, predict = m, sinks = sink.stdout {} }
LUA
expect_line "an unset secret: the variable to set" 1 \
  'runnel: secret.lua:1: model.openai: api_key: secret("RUNNEL_TEST_KEY") is empty: set the environment variable RUNNEL_TEST_KEY, or RUNNEL_TEST_KEY_FILE to a file that holds the key' \
  env -u RUNNEL_TEST_KEY -u RUNNEL_TEST_KEY_FILE $RUNNEL run secret.lua
expect_line "a secret file that is not there: the variable that names it" 1 \
  "runnel: secret.lua:1: secret(\"RUNNEL_TEST_KEY\"): RUNNEL_TEST_KEY_FILE names a file that cannot be read: $T/no-key: cannot open: No such file or directory" \
  env -u RUNNEL_TEST_KEY RUNNEL_TEST_KEY_FILE="$T/no-key" $RUNNEL run secret.lua

write nothing.lua <<'LUA'
local s = sink.stdout {}
LUA
expect_line "a script that returns nothing" 1 \
  'runnel: nothing.lua: the script returns nothing; it must end with `return job { ... }`' $RUNNEL check nothing.lua
write table.lua <<'LUA'
return { name = "t" }
LUA
expect_line "a script that returns a table" 1 \
  'runnel: table.lua: the script returns a table, not a job; it must end with `return job { ... }`' $RUNNEL check table.lua
write decl.lua <<'LUA'
return sink.stdout {}
LUA
expect_line "a script that returns another declaration" 1 \
  'runnel: decl.lua: the script returns sink.stdout (decl.lua:1), not a job; it must end with `return job { ... }`' \
  $RUNNEL check decl.lua

expect_line "a job script that is not there" 1 \
  "runnel: nope.lua: cannot open the job script: No such file or directory" $RUNNEL run nope.lua
mkdir -p "$W/adir"
expect_line "a directory given as the job script" 1 \
  "runnel: adir: is a directory, not a job script (runnel run JOB.lua)" $RUNNEL check adir

# filter/map errors keep their traceback: there it shows the way through the script
write maperr.lua <<'LUA'
return job { name = "maperr", source = source.csv { path = "in.csv" },
  map = function(r) local t = nil; return t.x end, sinks = sink.stdout {}, errors = sink.jsonl { path = "maperr.err" } }
LUA
run_in_w $RUNNEL run maperr.lua --quiet
check "a map error still dead-letters with its traceback" jq -e -s \
  'length == 2 and all(.reason | startswith("maperr.lua:2: attempt to index a nil value") and contains("stack traceback"))' \
  "$W/maperr.err"

# ---- --set ----
write params.lua <<'LUA'
local n = param("n", 10)
local input = param("input", "in.csv")
local flag = param("flag", false)
local ratio = param("ratio", 0.5)
assert(math.type(n) == "integer", "n is a " .. tostring(math.type(n)))
assert(math.type(ratio) == "float", "ratio is a " .. tostring(math.type(ratio)))
assert(type(flag) == "boolean", "flag is a " .. type(flag))
assert(n == tonumber(param("want_n", "10")) and tostring(flag) == param("want_flag", "false"),
  "n = " .. n .. ", flag = " .. tostring(flag))
return job { name = "params", source = source.csv { path = input }, sinks = sink.jsonl { path = "params.jsonl" } }
LUA
expect_line "a misspelt --set is refused by run (exit 2), with its params and a did-you-mean" 2 \
  'runnel: --set inptu=big.csv: params.lua has no param "inptu"; did you mean input? (its params: n, input, flag, ratio, want_n, want_flag)' \
  $RUNNEL run params.lua --set inptu=big.csv
check "... and nothing ran" test ! -e "$W/params.jsonl"
expect_line "... by check" 2 \
  'runnel: --set inptu=big.csv: params.lua has no param "inptu"; did you mean input? (its params: n, input, flag, ratio, want_n, want_flag)' \
  $RUNNEL check params.lua --set inptu=big.csv
expect_line "... by check --describe (what serve runs), which prints no JSON" 2 \
  'runnel: --set zzz=1: params.lua has no param "zzz" (its params: n, input, flag, ratio, want_n, want_flag)' \
  $RUNNEL check --describe params.lua --set zzz=1
expect_eq "... stdout stays empty" "" "$(cat "$OUT")"
write noparams.lua <<'LUA'
return job { name = "np", source = source.csv { path = "in.csv" }, sinks = sink.stdout {} }
LUA
expect_line "a --set for a script that reads no param" 2 \
  "runnel: --set input=x.csv: noparams.lua reads no param(), so it takes no --set" $RUNNEL check noparams.lua --set input=x.csv

write late.lua <<'LUA'
return job { name = "late", source = source.csv { path = "in.csv" },
  sinks = sink.lua { write = function(r) if param("slow", "0") == "1" then end end } }
LUA
expect_line "a --set read only inside a function: read it at the top" 2 \
  'runnel: --set slow=1: late.lua reads param "slow" only inside a function, which runs after the --set are checked: read it at the top of the script, outside any function' \
  $RUNNEL check late.lua --set slow=1

expect_line "--set n=abc for param(\"n\", 10): one line, the value kept" 2 \
  "runnel: params.lua:1: --set n=abc: expected a number (the default is 10)" $RUNNEL check params.lua --set n=abc
expect_line "--set n=1.5 when the default is an integer" 2 \
  "runnel: params.lua:1: --set n=1.5: expected an integer (the default is 10)" $RUNNEL check params.lua --set n=1.5
expect_line "--set flag=maybe for a boolean" 2 \
  "runnel: params.lua:3: --set flag=maybe: expected true or false, yes or no, 1 or 0 (the default is false)" \
  $RUNNEL check params.lua --set flag=maybe
expect_line "--set ratio=abc for a float" 2 \
  "runnel: params.lua:4: --set ratio=abc: expected a number (the default is 0.5)" $RUNNEL check params.lua --set ratio=abc
run_in_w $RUNNEL check params.lua --set n=16 --set want_n=16 --set flag=yes --set want_flag=true --set ratio=3
expect_eq "an integer, yes and a whole float are taken, as an integer, true and a float" 0 "$RC"
for v in true 1 YES; do
  run_in_w $RUNNEL check params.lua --set flag=$v --set want_flag=true
  expect_eq "--set flag=$v is true" 0 "$RC"
done
for v in false 0 no; do
  run_in_w $RUNNEL check params.lua --set flag=$v --set want_flag=false
  expect_eq "--set flag=$v is false" 0 "$RC"
done
run_in_w $RUNNEL check params.lua --set n=10.0
expect_eq "--set n=10.0 is the integer 10" 0 "$RC"

# ---- the command line ----
expect_line "an unknown command gets a did-you-mean" 2 "runnel: unknown command 'rnu'; did you mean run? (runnel --help)" $RUNNEL rnu
expect_line "an unknown option gets a did-you-mean" 2 \
  "runnel: run: unknown option '--sett'; did you mean --set? (runnel --help)" $RUNNEL run params.lua --sett n=1
expect_line "an unknown option far from any" 2 \
  "runnel: check: unknown option '--xyzzy' (runnel --help lists them)" $RUNNEL check params.lua --xyzzy
expect_line "run without a script: one line, not the whole usage" 2 \
  "runnel: run needs a job script: runnel run JOB.lua (runnel --help)" $RUNNEL run
expect_line "--limit that is no number says what it got" 2 \
  "runnel: --limit needs a positive whole number of records, got 'ten'" $RUNNEL run params.lua --limit ten
expect_line "help for a misspelt plugin" 2 \
  "runnel: help: no plugin named 'sink.jsnl'; did you mean sink.jsonl? (runnel help lists them)" $RUNNEL help sink.jsnl
expect_line "help for a plugin name without its kind" 2 \
  "runnel: help: no plugin named 'csv'; did you mean source.csv or sink.csv? (runnel help lists them)" $RUNNEL help csv

# ---- files ----
write input.lua <<'LUA'
return job { name = "input", source = source.csv { path = param("input", "in.csv") }, sinks = sink.jsonl { path = "input.jsonl" } }
LUA
expect_line "an input CSV that is not there" 1 \
  "runnel: input.lua:1: source.csv: nope.csv: cannot open: No such file or directory" $RUNNEL run input.lua --set input=nope.csv
write select.lua <<'LUA'
return job { name = "sel", source = source.csv { path = "in.csv", select = { summary = "Sumary" } }, sinks = sink.stdout {} }
LUA
expect_line "a column the CSV does not have: did you mean" 1 \
  "runnel: select.lua:1: source.csv: select: column 'Sumary' is not in in.csv; did you mean Summary?" $RUNNEL run select.lua
write types.lua <<'LUA'
return job { name = "ty", source = source.csv { path = "in.csv", types = { Identifier = "integer" } }, sinks = sink.stdout {} }
LUA
expect_line "types for a field not selected: the fields" 1 \
  "runnel: types.lua:1: source.csv: types.Identifier: no such field among the selected ones (they are Id, Summary)" \
  $RUNNEL run types.lua
: > "$W/afile"
expect_line "a state directory that cannot be made" 1 \
  "runnel: afile/state: cannot create directory: Not a directory (the state directory; --state-dir DIR or RUNNEL_STATE_DIR picks another)" \
  $RUNNEL run input.lua --state-dir afile/state

# ---- the model: endpoint, key, cache, usage ----
write model.lua <<'LUA'
local rater = model.openai {
  endpoint = env("OPENAI_BASE_URL", "http://127.0.0.1:8089/v1"),
  api_key  = secret("OPENAI_API_KEY"),
  model    = "gpt-4o-mini",
  prompt   = "Review title: {{Summary}}",
  output   = { rating = { type = "integer", min = 1, max = 5 } },
  price    = { input = 0.15, output = 0.6 },
  limits   = { retries = 0, timeout = "5s" },
}
return job { name = "m", source = source.csv { path = "in.csv" }, predict = rater,
  sinks = sink.jsonl { path = "m.jsonl" }, errors = sink.jsonl { path = "m.err.jsonl" } }
LUA
mkdir -p "$W/st" && : > "$W/st/cache"
expect_line "a cache directory that cannot be made: what to do" 1 \
  "runnel: model.lua:1: model.openai: cache: st/cache/m: cannot create directory: Not a directory (answers are cached in the state directory st: choose another with --state-dir, or run with --no-cache)" \
  env OPENAI_API_KEY=sk-test OPENAI_BASE_URL=http://127.0.0.1:1/v1 $RUNNEL run model.lua --state-dir st

sed 's/timeout = "5s"/timeout = "5s", outage = "1s"/' "$W/model.lua" > "$W/model-down.lua"
run_in_w env OPENAI_API_KEY=sk-test OPENAI_BASE_URL=http://127.0.0.1:1/v1 $RUNNEL run model-down.lua --no-cache --no-progress
expect_eq "an unreachable endpoint is an outage, not bad records: it stops after limits.outage, exit 1" 1 "$RC"
expect_eq "... its last line names the endpoint, how long, why, and what was committed" \
  "runnel: model endpoint http://127.0.0.1:1: unreachable for 1s (connection refused); nothing of source.csv (model-down.lua:10) was committed" \
  "$(tail -1 "$ERR")"
check "... nothing dead-lettered" test ! -s "$W/m.err.jsonl"
expect_summary_line "... the summary shows the pause" "  paused 1s: connection refused; the endpoint's breaker opened 1 time"
clean "an unreachable endpoint"

start_model_server --api-key sk-right
run_in_w env OPENAI_API_KEY=sk-wrong $RUNNEL run model.lua --no-cache --no-progress --summary-json wrong.json
expect_eq "a wrong key stops the job (no record can succeed)" 1 "$RC"
wrong_key="model.openai: POST $MODEL_URL/v1/chat/completions: HTTP 401: Incorrect API key provided. (the endpoint refused the credentials (HTTP 401): no record can succeed; check api_key)"
expect_eq "... its last line names the URL, the answer and the option to check" "runnel: $wrong_key" "$(tail -1 "$ERR")"
check "... so does --summary-json" jq -e --arg e "$wrong_key" '.error == $e and .dead_lettered == 0' "$W/wrong.json"
clean "a wrong key"
run_in_w env OPENAI_API_KEY=sk-right $RUNNEL run model.lua --no-cache --no-progress --summary-json right.json
expect_summary_line "a server that reports usage: the cost estimate" "  cost \$0.0000 (estimate)"
check "... answers_without_usage is 0 and the cost a number" \
  jq -e '.model.answers_without_usage == 0 and (.model.cost_usd | type) == "number" and .model.first_failure == null' "$W/right.json"

stop_model_server "$MODEL_PID"
start_model_server --no-usage
curl -s "$MODEL_URL/v1/chat/completions" -d '{"model":"m","messages":[{"role":"user","content":"good"}]}' >"$T/answer.json"
check "model-server --no-usage answers without usage (checked with curl and jq)" \
  jq -e '(has("usage") | not) and (.choices[0].message.content | length) > 0' "$T/answer.json"
run_in_w env OPENAI_API_KEY=sk-test $RUNNEL run model.lua --no-cache --no-progress --summary-json nousage.json
expect_eq "a server without usage: the job runs" 0 "$RC"
expect_summary_line "... the cost is unknown, not \$0.0000" "  cost unknown: the server reported no token usage"
check "... the tokens line counts the answers without usage" grep -q "^  tokens in 0, out 0 (2 answers without usage);" "$ERR"
check "... and --summary-json: model.answers_without_usage, cost_usd null" \
  jq -e '.model.answers_without_usage == 2 and .model.cost_usd == null and .model.ok == 2' "$W/nousage.json"
check "no \$0.0000 anywhere" bash -c "! grep -q '0\.0000' '$ERR'"
clean "a server without usage"

finish
