#!/usr/bin/env bash
# `runnel stubs`: the lua-language-server annotations parse as Lua, and name every option the
# plugins declare, nested ones too: the list runnel help --markdown (the README's reference)
# prints, compared name by name, so a new option cannot be missing from the stubs.
. "$(dirname "$0")/../lib.sh"

$RUNNEL stubs > "$T/runnel.d.lua"
expect_eq "runnel stubs exits 0" 0 $?
check "runnel.d.lua parses (luac5.4 -p)" luac5.4 -p "$T/runnel.d.lua"

# the stubs' options as "CLASS FIELD" lines: runnel.model.openai.limits concurrency
awk '/^---@class /{cls=$2} /^---@field /{f=$2; sub(/\?$/, "", f); print cls, f}' "$T/runnel.d.lua" | sort -u > "$T/stubs.txt"
# help's, the same way: #### `model.openai{...}` then | `limits.concurrency` | ...
$RUNNEL help --markdown | awk '
  /^#### `/ { name=$2; gsub(/`|\{\.\.\.\}/, "", name); base = name == "job" ? "runnel.job.options" : "runnel." name }
  /^\| `/   { opt=$2; gsub(/`/, "", opt); n=split(opt, part, "."); cls=base
              for (i = 1; i < n; i++) cls = cls "." part[i]
              print cls, part[n] }' | sort -u > "$T/help.txt"
check "help lists options (the comparison has something to compare)" test "$(wc -l < "$T/help.txt")" -gt 300
comm -23 "$T/help.txt" "$T/stubs.txt" > "$T/missing.txt"
if [ -s "$T/missing.txt" ]; then fail "options the stubs do not name:"; sed 's/^/   | /' "$T/missing.txt" | head -20
else pass "the stubs name every option runnel help lists ($(wc -l < "$T/help.txt"))"; fi

# types, defaults and descriptions, from the declarations
expect_contains "a nested class" "$T/runnel.d.lua" "---@class runnel.model.openai.limits"
expect_contains "an enum as literal types, its default and help" "$T/runnel.d.lua" \
  '---@field task? "classification"|"text_generation"|"embedding"|"regression"|"clustering" what the model does for each record (default: classification)'
expect_contains "a required option" "$T/runnel.d.lua" '---@field path string'
expect_contains "a secret" "$T/runnel.d.lua" '---@field api_key? string|runnel.secret'
expect_contains "a declaration function" "$T/runnel.d.lua" "---@param options runnel.source.csv"
for helper in "function param(name, default)" "function env(name, default)" "function secret(name)" \
              "function json.encode(value)" "function json.decode(text)" "function job(options)"; do
  expect_contains "the helper $helper" "$T/runnel.d.lua" "$helper end"
done
# every function of runnel.text, as scripts/runnel/text.lua defines it
for f in $(sed -n 's/^function text\.\([a-z_]*\)(.*/\1/p' scripts/runnel/text.lua); do
  expect_contains "runnel.text's $f" "$T/runnel.d.lua" "function text.$f("
done
finish
