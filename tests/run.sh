#!/usr/bin/env bash
# tests/run.sh: runs every test of runnel and ends with one line "N passed, N failed".
#   unit tests:   build/unit/test_*        (C programs built with ASan+UBSan)
#   script tests: tests/*/test_*.sh        (run real jobs and tools over real sockets)
# Script tests get RUNNEL (the runner under test: the ASan+UBSan build) and RUNNEL_RELEASE.
# TESTS=pattern runs only the tests whose path contains the pattern.
set -u
cd "$(dirname "$0")/.."
export RUNNEL="${RUNNEL:-$PWD/build/asan/runnel}"
export RUNNEL_RELEASE="$PWD/bin/runnel"
export RUNNEL_LIB="$PWD/scripts"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:exitcode=99}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:exitcode=98}"
export PATH="$PWD/bin:$PATH"
pattern="${TESTS:-}"
passed=0; failed=0; failed_names=()
logdir="build/test-logs"; mkdir -p "$logdir"

run_one() {
  local name="$1"; shift
  local log="$logdir/$(echo "$name" | tr '/' '_').log"
  local start=$SECONDS
  if timeout 300 "$@" >"$log" 2>&1; then
    passed=$((passed + 1)); printf 'PASS %-45s %3ds\n' "$name" $((SECONDS - start))
  else
    failed=$((failed + 1)); failed_names+=("$name")
    printf 'FAIL %-45s %3ds (log: %s)\n' "$name" $((SECONDS - start)) "$log"
    tail -n 25 "$log" | sed 's/^/    | /'
  fi
}

for src in tests/unit/test_*.c; do
  u="build/unit/$(basename "$src" .c)"
  [[ -z "$pattern" || "$u" == *"$pattern"* ]] || continue
  [ -x "$u" ] || { failed=$((failed + 1)); failed_names+=("$u (not built)"); echo "FAIL $u: not built"; }
done
for t in build/unit/test_*; do
  [ -x "$t" ] || continue
  [[ -z "$pattern" || "$t" == *"$pattern"* ]] || continue
  run_one "unit/$(basename "$t")" "$t"
done
for t in tests/*/test_*.sh; do
  [[ -z "$pattern" || "$t" == *"$pattern"* ]] || continue
  run_one "${t#tests/}" bash "$t"
done
if [ "$failed" -gt 0 ]; then printf 'failed: %s\n' "${failed_names[*]}"; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ $((passed + failed)) -gt 0 ]
