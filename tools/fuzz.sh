#!/usr/bin/env bash
# tools/fuzz.sh: build the libFuzzer targets in tests/fuzz/ with clang (ASan+UBSan) against the
# runtime (every runtime/**/*.c but main.c) and run each for FUZZ_SECONDS (default 30) seconds.
#   FUZZ_SECONDS=N     seconds per target          FUZZ_TARGETS="csv json"  only these targets
#   FUZZ_JOBS=N        compile jobs (default: nproc)
# Seeds are tests/fuzz/corpus/NAME (read only); what the fuzzer learns goes to
# build/fuzz/corpus/NAME, crashes to build/fuzz/crashes/. Prints one line per target (runs,
# coverage, crash or not) and exits non-zero when any target crashed or did not build.
set -euo pipefail
cd "$(dirname "$0")/.."

CC=${FUZZ_CC:-clang}
seconds=${FUZZ_SECONDS:-30}
targets=${FUZZ_TARGETS:-csv answer prompt json providers}
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 4)}
out=build/fuzz

# max_len per target: a CSV file, an HTTP answer body, a prompt template, a JSON text
declare -A max_len=([csv]=4096 [answer]=4096 [prompt]=1024 [json]=4096 [providers]=4096)

if ! command -v "$CC" >/dev/null; then
  echo "fuzz: $CC not found; as root: apt-get install -y clang libclang-rt-14-dev" >&2
  exit 1
fi
# libFuzzer's runtime comes with libclang-rt-NN-dev; check that it links before building all
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }' >"$probe/p.c"
if ! "$CC" -fsanitize=fuzzer,address,undefined -o "$probe/p" "$probe/p.c" 2>"$probe/err"; then
  cat "$probe/err" >&2
  echo "fuzz: $CC cannot link libFuzzer; as root: apt-get install -y libclang-rt-14-dev" >&2
  exit 1
fi

pkgs="lua5.4 libcurl rdkafka jansson libcrypto sqlite3 libmicrohttpd"
cflags="-std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer -Iruntime $(pkg-config --cflags $pkgs)"
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
libs="$(pkg-config --libs $pkgs) -lcsv -lm"

# ---- build: the runtime once (instrumented for coverage), then one binary per target ----
mkdir -p "$out/obj" "$out/crashes"
objs=()
stale=()
for src in $(find runtime -name '*.c' | sort); do
  [ "$src" = runtime/main.c ] && continue
  obj="$out/obj/$(echo "${src#runtime/}" | tr / _ | sed 's/\.c$/.o/')"
  objs+=("$obj")
  if [ ! -e "$obj" ] || [ "$src" -nt "$obj" ] || [ -n "$(find runtime -name '*.h' -newer "$obj" -print -quit)" ]; then
    stale+=("$src")
  fi
done
if [ ${#stale[@]} -gt 0 ]; then
  echo "fuzz: compiling ${#stale[@]} runtime files"
  printf '%s\n' "${stale[@]}" | xargs -P "$jobs" -I{} sh -c \
    "$CC $cflags $san -fsanitize=fuzzer-no-link -c -o $out/obj/\$(echo {} | sed 's|^runtime/||; s|/|_|g; s|\\.c\$|.o|') {}"
fi
for t in $targets; do
  echo "fuzz: linking $out/fuzz_$t"
  "$CC" $cflags $san -fsanitize=fuzzer -o "$out/fuzz_$t" "tests/fuzz/fuzz_$t.c" "${objs[@]}" $libs
done

# ---- run ----
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
status=0
summary=()
for t in $targets; do
  corpus="$out/corpus/$t"
  mkdir -p "$corpus"
  log="$out/fuzz_$t.log"
  echo "fuzz: running fuzz_$t for ${seconds}s (log: $log)"
  rc=0
  "$out/fuzz_$t" "$corpus" "tests/fuzz/corpus/$t" -max_total_time="$seconds" -max_len="${max_len[$t]}" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$out/crashes/$t-" \
    >"$log" 2>&1 || rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1 || true)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2 || true)
  if [ "$rc" -eq 0 ]; then
    result="no crash"
  else
    status=1
    artifact=$(grep -o "Test unit written to [^ ]*" "$log" | tail -n 1 | cut -d' ' -f5 || true)
    result="CRASH (exit $rc) ${artifact:-see the log}"
    grep -m 3 -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error)' "$log" | sed 's/^/    | /' || true
  fi
  summary+=("$(printf 'fuzz_%-7s %10s runs  cov %6s  %s' "$t" "${runs:-?}" "${cov:-?}" "$result")")
done
printf '%s\n' "${summary[@]}"
exit "$status"
