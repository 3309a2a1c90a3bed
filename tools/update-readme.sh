#!/usr/bin/env bash
# tools/update-readme.sh: regenerate the option reference in README.md from the plugins'
# own option declarations (bin/runnel help --markdown). With --check, only report drift.
set -euo pipefail
cd "$(dirname "$0")/.."
generated="$(mktemp)"; trap 'rm -f "$generated" "$generated.readme"' EXIT
bin/runnel help --markdown > "$generated"
awk -v gen="$generated" '
  /<!-- options:begin -->/ { print; while ((getline line < gen) > 0) print line; skip = 1; next }
  /<!-- options:end -->/ { skip = 0 }
  !skip { print }' README.md > "$generated.readme"
if [ "${1:-}" = "--check" ]; then
  if cmp -s README.md "$generated.readme"; then exit 0; fi
  echo "README.md option reference is out of date: run tools/update-readme.sh"; diff README.md "$generated.readme" | head -20
  exit 1
fi
cp "$generated.readme" README.md
