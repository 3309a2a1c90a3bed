#!/usr/bin/env bash
# `runnel new`: every combination of source, model and sink it offers writes a job and a test
# file that pass `runnel check` and `runnel test` as written; it replaces no file, and says
# which choices there are.
. "$(dirname "$0")/../lib.sh"

cd "$T" || exit 1
n=0
for source in csv kafka; do
  for model in none openai anthropic azure_openai gemini bedrock ollama http; do
    for sink in jsonl csv stdout kafka; do
      name="jobs/j_${source}_${model}_${sink}"
      args=(--source "$source" --sink "$sink")
      [ "$model" = none ] || args+=(--model "$model")
      if ! $RUNNEL new "$name" "${args[@]}" >new.out 2>&1; then fail "runnel new $name ${args[*]}:"; sed 's/^/   | /' new.out; continue; fi
      if ! $RUNNEL check "$name.lua" >check.out 2>&1; then fail "runnel check $name.lua:"; sed 's/^/   | /' check.out; continue; fi
      if ! $RUNNEL test "$name.lua" >test.out 2>&1 || ! grep -q " 0 failed$" test.out; then
        fail "runnel test $name.lua:"; sed 's/^/   | /' test.out; continue
      fi
      n=$((n + 1))
    done
  done
done
expect_eq "all 64 skeletons check and pass their tests" 64 "$n"

$RUNNEL new jobs/j_csv_none_jsonl >again.out 2>&1
expect_eq "a second new of the same name: exit 2" 2 $?
expect_contains "it replaces nothing" again.out "jobs/j_csv_none_jsonl.lua: exists already; runnel new replaces nothing"
$RUNNEL new jobs/x --model openia >bad.out 2>&1
expect_eq "an unknown model: exit 2" 2 $?
expect_contains "it lists the models" bad.out "--model openia: runnel new knows openai, anthropic, azure_openai, gemini, bedrock, ollama, http"
check "nothing was written for it" test ! -e jobs/x.lua
finish
