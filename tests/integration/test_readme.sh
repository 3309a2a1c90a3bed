#!/usr/bin/env bash
# The README's option reference is generated from the plugins' own declarations: it must
# match what this build declares, and the README must name every example job that exists.
. "$(dirname "$0")/../lib.sh"
check "README option reference matches runnel help --markdown" bash tools/update-readme.sh --check
for job in jobs/*.lua; do
  case "$job" in *_test.lua) continue ;; esac  # a job's test file (test_job_tests.sh runs them)
  expect_contains "README mentions $job" README.md "$job"
done
for job in jobs/*.lua; do
  case "$job" in *_test.lua) continue ;; esac
  $RUNNEL check "$job" >/dev/null 2>"$T/check.err"
  check "$job passes runnel check" test $? -eq 0
done
finish
