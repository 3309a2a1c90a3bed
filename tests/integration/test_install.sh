#!/usr/bin/env bash
# make install into a DESTDIR: the installed runner runs a job that requires a Lua helper
# (found under PREFIX/share/runnel/scripts, with no RUNNEL_LIB), serves its dashboard with
# nothing else installed, `man -l` renders the manual page (which names every command), and
# the example systemd unit has what serve needs.
. "$(dirname "$0")/../lib.sh"
DEST="$T/dest"
check "make install DESTDIR=... PREFIX=/opt/runnel" make --no-print-directory install DESTDIR="$DEST" PREFIX=/opt/runnel
BIN="$DEST/opt/runnel/bin/runnel"
for f in bin/runnel share/runnel/scripts/runnel/text.lua share/man/man1/runnel.1 share/doc/runnel/examples/runnel-serve.service; do
  check "installed: $f" test -f "$DEST/opt/runnel/$f"
done
check "the installed runner is executable" test -x "$BIN"
printf 'id,text\n1,  Hello   World \n' > "$T/in.csv"
cat > "$T/job.lua" <<LUA
local text = require("runnel.text")
return job {
  name = "installed",
  source = source.csv { path = "$T/in.csv" },
  map = function(r) return { id = r.id, text = text.squish(r.text) } end,
  sinks = sink.jsonl { path = "$T/out.jsonl" },
}
LUA
check "it runs a job that requires runnel.text, without RUNNEL_LIB" env -u RUNNEL_LIB "$BIN" run "$T/job.lua" --quiet --no-progress --state-dir "$T/state"
expect_eq "and writes its record, squished by the helper" "Hello World" "$(jq -r .text "$T/out.jsonl")"
env -u RUNNEL_LIB "$BIN" --version > "$T/version.txt" 2>&1
expect_contains "--version" "$T/version.txt" "runnel"

mkdir -p "$T/jobs"
env -u RUNNEL_LIB "$BIN" serve --jobs "$T/jobs" --state "$T/serve-state" --listen 127.0.0.1:0 2>"$T/serve.log" &
SERVE=$!
_pids+=("$SERVE")
up() { grep -q ' on http://' "$T/serve.log"; }
for _ in $(seq 200); do up && break; sleep 0.05; done
URL="$(sed -n 's/.* on \(http:[^ ]*\) .*/\1/p' "$T/serve.log" | head -1)"
expect_eq "the installed serve's dashboard is in the binary" 200 "$(curl -s -o "$T/page.html" -w '%{http_code}' "$URL/")"
expect_contains "the page" "$T/page.html" "<title>runnel serve</title>"
expect_eq "GET /metrics" 200 "$(curl -s -o /dev/null -w '%{http_code}' "$URL/metrics")"
kill -TERM "$SERVE"; wait "$SERVE"
expect_eq "serve exits 0 on SIGTERM" 0 $?

MAN="$DEST/opt/runnel/share/man/man1/runnel.1"
check "man -l renders the page" sh -c "MANWIDTH=100 man -l '$MAN' > '$T/man.txt' 2>'$T/man.err'"
check "without warnings from groff" sh -c "MANWIDTH=100 man --warnings -l '$MAN' 2>&1 >/dev/null | grep -v '^$' | (! grep .)"
for c in "runnel run" "runnel check" "runnel serve" "runnel help" "runnel report" "runnel --version"; do
  expect_contains "the page covers $c" "$T/man.txt" "$c"
done
for o in --mode --set --limit --summary-json --metrics-file --metrics-listen --metrics-fd --state-dir --resume --no-cache \
         --progress --quiet --describe --jobs --state --listen --token-file --stop-timeout; do
  expect_contains "and the option $o" "$T/man.txt" -- "$o"
done
UNIT="$DEST/opt/runnel/share/doc/runnel/examples/runnel-serve.service"
for l in "ExecStart=/usr/local/bin/runnel serve" "Restart=on-failure" "LimitNOFILE=" "KillSignal=SIGTERM" "TimeoutStopSec=40s" \
         "--stop-timeout 30s"; do
  expect_contains "the unit has $l" "$UNIT" "$l"
done
if command -v systemd-analyze >/dev/null; then
  check "systemd-analyze verify accepts the unit" sh -c "systemd-analyze verify '$UNIT' 2>&1 | grep -v 'runnel serve\|/usr/local/bin/runnel\|User=\|runnel' | (! grep -i 'error')"
fi
finish
