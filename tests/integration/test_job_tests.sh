#!/usr/bin/env bash
# `runnel test`: every job in jobs/ has a test file and passes it; and runnel test itself
# reports a job that does the wrong thing (a wrong map, a wrong filter, a prompt that renders
# wrong, a dead letter that does not come) as a failing case, with its diff, exit 1.
. "$(dirname "$0")/../lib.sh"

for job in jobs/*.lua; do
  case "$job" in *_test.lua) continue ;; esac
  t="${job%.lua}_test.lua"
  check "$job has a test file ($t)" test -f "$t"
  [ -f "$t" ] || continue
  $RUNNEL test "$job" >"$T/job.out" 2>&1
  rc=$?
  if [ $rc -eq 0 ] && grep -q ", 0 failed$" "$T/job.out"; then pass "runnel test $job"
  else fail "runnel test $job (exit $rc):"; sed 's/^/   | /' "$T/job.out" | head -30; fi
done

# expect_failure NAME JOB FAILED EXPECTED_LINE...: runnel test JOB (against
# jobs/review_rating_test.lua) exits 1, FAILED of its 4 cases fail, and it prints each EXPECTED_LINE
expect_failure() {
  local name="$1" job="$2" failed="$3"; shift 3
  $RUNNEL test "$job" jobs/review_rating_test.lua >"$T/$name.out" 2>&1
  local rc=$?
  expect_eq "$name: exit 1" 1 $rc
  for line in "$@"; do expect_contains "$name: says '$line'" "$T/$name.out" "$line"; done
  expect_contains "$name: the summary counts it" "$T/$name.out" "jobs/review_rating_test.lua: $((4 - failed)) passed, $failed failed"
}

# wrong map: the rating comes out one too high
sed 's/rating = r.rating,/rating = r.rating + 1,/' jobs/review_rating.lua > "$T/wrong_map.lua"
check "the wrong map differs from the job" bash -c "! cmp -s jobs/review_rating.lua $T/wrong_map.lua"
expect_failure wrong_map "$T/wrong_map.lua" 2 \
  'FAIL jobs/review_rating_test.lua: rates a review and keeps its fields' \
  'record 1 written (input 1: {"product_id":"B001","review_id":1,"score":5,"summary":"Great coffee","timestamp":1329868800,"user_id":"U1"}) differs:' \
  '- rating = 5' '+ rating = 6' 'written: the check returned false: review 1 rated 6'

# wrong filter: an empty summary gets through
sed 's/return r.summary ~= "" end/return true end/' jobs/review_rating.lua > "$T/wrong_filter.lua"
check "the wrong filter differs from the job" bash -c "! cmp -s jobs/review_rating.lua $T/wrong_filter.lua"
expect_failure wrong_filter "$T/wrong_filter.lua" 1 \
  'FAIL jobs/review_rating_test.lua: an empty summary is filtered' \
  'expected 1 records filtered, got 0' \
  'dead-lettered, not expected: stage "model": runnel test: answer: the case gives no answer (answer = ...) and the job asked the model (record {"product_id":"B002","review_id":2,"score":1,"summary":""})'

# a prompt that renders wrong
sed 's/"Review title: {{summary}}"/"Title: {{summary}}"/' jobs/review_rating.lua > "$T/wrong_prompt.lua"
check "the wrong prompt differs from the job" bash -c "! cmp -s jobs/review_rating.lua $T/wrong_prompt.lua"
expect_failure wrong_prompt "$T/wrong_prompt.lua" 1 \
  'FAIL jobs/review_rating_test.lua: rates a review and keeps its fields' \
  'prompt 1 (input 1:' '- Review title: Great coffee' '+ Title: Great coffee'

# an expected dead letter that does not come: the range check is gone, 7 is accepted
sed 's/min = 1, max = 5/min = 1, max = 10/' jobs/review_rating.lua > "$T/no_dead.lua"
check "the wider range differs from the job" bash -c "! cmp -s jobs/review_rating.lua $T/no_dead.lua"
expect_failure no_dead "$T/no_dead.lua" 1 \
  'FAIL jobs/review_rating_test.lua: an answer out of range is dead-lettered after the correction round' \
  'expected 1 dead letters, got 0' \
  'dead letter 1: expected stage "model", reason matching "invalid answer"; none came'

# a dead letter nobody expected fails the case, and says why it came
cat > "$T/unexpected_test.lua" <<'LUA'
return { cases = { { name = "rated", records = { { review_id = 1, product_id = "B", summary = "x", score = 1 } },
                     answer = "nine", written = {} } } }
LUA
$RUNNEL test jobs/review_rating.lua "$T/unexpected_test.lua" >"$T/unexpected.out" 2>&1
expect_eq "an unexpected dead letter: exit 1" 1 $?
expect_contains "it names the stage and reason" "$T/unexpected.out" 'dead-lettered, not expected: stage "model": invalid answer'

# the sink's encoding: a record JSON cannot hold is dead-lettered at map, as in a real run
cat > "$T/enc.lua" <<'LUA'
return job { name = "enc", source = source.csv { path = "x.csv" },
             map = function(r) return { f = print } end, sinks = { sink.jsonl { path = "never.jsonl" } } }
LUA
cat > "$T/enc_test.lua" <<'LUA'
return { cases = { { name = "nan", records = { { a = "1" } }, dead = { { stage = "map", reason = "function" } } },
                   { name = "lines", records = { { a = "1" } }, lines = { [1] = { "{}" } } } } }
LUA
(cd "$T" && $RUNNEL test enc.lua) >"$T/enc.out" 2>&1
expect_eq "encoding: exit 1 (the second case fails)" 1 $?
expect_contains "a value JSON cannot hold is dead-lettered at map" "$T/enc.out" "ok   enc_test.lua: nan"
expect_contains "the lines differ" "$T/enc.out" "FAIL enc_test.lua: lines"
check "no sink was written" test ! -e "$T/never.jsonl"

# sink.csv's row, by the sink's own CSV encoding
cat > "$T/csv.lua" <<'LUA'
return job { name = "csv", source = source.csv { path = "x.csv" }, sinks = { sink.csv { path = "never.csv", delimiter = ";" } } }
LUA
cat > "$T/csv_test.lua" <<'LUA'
return { cases = { { name = "quoted", records = { { a = 'say "hi"; ok', b = 2 } }, lines = { [1] = { '"say ""hi""; ok";2' } } },
                   { name = "wrong", records = { { a = "x", b = 2 } }, lines = { [1] = { "x;3" } } } } }
LUA
(cd "$T" && $RUNNEL test csv.lua) >"$T/csv.out" 2>&1
expect_eq "csv: exit 1 (the second case fails)" 1 $?
expect_contains "the row is the sink's" "$T/csv.out" "ok   csv_test.lua: quoted"
expect_contains "a wrong row is shown" "$T/csv.out" "+ x;2"
check "no csv was written" test ! -e "$T/never.csv"

# mistakes in a test file are named
cat > "$T/typo_test.lua" <<'LUA'
return { cases = { { name = "t", records = {}, writen = {} } } }
LUA
$RUNNEL test jobs/review_rating.lua "$T/typo_test.lua" >"$T/typo.out" 2>&1
expect_eq "a misspelt key: exit 2" 2 $?
expect_contains "it names the key" "$T/typo.out" 'case "t": unknown key "writen"'
cat > "$T/params_test.lua" <<'LUA'
return { params = { input = {} }, cases = { { name = "t", records = {}, written = {} } } }
LUA
$RUNNEL test jobs/review_rating.lua "$T/params_test.lua" >"$T/params.out" 2>&1
expect_eq "params that are no strings: exit 2" 2 $?
expect_contains "it says what params holds" "$T/params.out" 'params_test.lua: params holds name = "value" pairs'
cat > "$T/misspelt_test.lua" <<'LUA'
return { params = { inptu = "x.csv" }, cases = { { name = "t", records = {}, written = {} } } }
LUA
$RUNNEL test jobs/review_rating.lua "$T/misspelt_test.lua" >"$T/misspelt.out" 2>&1
expect_eq "a param the job never reads: exit 2" 2 $?
expect_contains "it has a did-you-mean" "$T/misspelt.out" "did you mean input?"
$RUNNEL test jobs/review_rating.lua "$T/none_test.lua" >"$T/none.out" 2>&1
expect_eq "no test file: exit 2" 2 $?
expect_contains "it says so" "$T/none.out" "cannot read the test file"
finish
