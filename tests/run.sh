#!/usr/bin/env bash
# tests/run.sh: runs every test of runnel and ends with one line "N passed, N failed".
#   unit tests:   build/unit/test_*        (C programs built with ASan+UBSan)
#   script tests: tests/*/test_*.sh        (run real jobs and tools over real sockets; JOBS at once)
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
# Script tests run in JOBS lanes at once (default: the number of cores). Each test has its own
# temporary directory and asks the kernel for its ports (port 0), so lanes cannot meet; JOBS=1
# runs them one after another. A test's result line prints when it ends.
jobs_max="${JOBS:-$(nproc 2>/dev/null || echo 2)}"
resdir="$(mktemp -d /tmp/runnel-run.XXXXXX)"
trap 'rm -rf "$resdir"' EXIT

# run_one NAME COMMAND...: runs one test to its log; writes its result line to $resdir.
run_one() {
  local name="$1"; shift
  local key; key="$(echo "$name" | tr '/' '_')"
  local log="$logdir/$key.log"
  local start=$SECONDS
  if timeout 300 "$@" >"$log" 2>&1; then
    printf 'PASS %-45s %3ds\n' "$name" $((SECONDS - start)) >"$resdir/$key.pass"
  else
    { printf 'FAIL %-45s %3ds (log: %s)\n' "$name" $((SECONDS - start)) "$log"
      tail -n 25 "$log" | sed 's/^/    | /'; } >"$resdir/$key.fail"
  fi
}
# report KEY: prints a finished test's result and counts it.
report() {
  local f
  for f in "$resdir/$1".pass "$resdir/$1".fail; do
    [ -e "$f" ] || continue
    cat "$f"
    if [[ "$f" == *.pass ]]; then passed=$((passed + 1)); else failed=$((failed + 1)); failed_names+=("$(head -1 "$f" | awk '{print $2}')"); fi
    rm -f "$f"
  done
}
# report_done: prints every result that has come in since the last call.
report_done() {
  local f
  for f in "$resdir"/*.pass "$resdir"/*.fail; do
    [ -e "$f" ] || continue
    f="${f##*/}"; report "${f%.*}"
  done
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
  report_done
done
for t in tests/*/test_*.sh; do
  [[ -z "$pattern" || "$t" == *"$pattern"* ]] || continue
  while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n; report_done; done
  run_one "${t#tests/}" bash "$t" &
done
wait
report_done
if [ "$failed" -gt 0 ]; then printf 'failed: %s\n' "${failed_names[*]}"; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ $((passed + failed)) -gt 0 ]
