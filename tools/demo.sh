#!/usr/bin/env bash
# tools/demo.sh (make demo): start the local model server on a free port, rate the 20,000
# sample reviews with jobs/review_rating.lua in batch mode, show the summary, the evaluation
# and a few results, write the HTML report out/product_ratings.html, and stop the server.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUNNEL_LIB="$PWD/scripts"
log="$(mktemp /tmp/runnel-demo.XXXXXX)"
bin/model-server --port 0 --latency-ms "${DEMO_LATENCY_MS:-0}" >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 100); do grep -q '^listening on ' "$log" && break; sleep 0.05; done
url="$(sed -n 's/^listening on \(http[^ ]*\).*/\1/p' "$log")"
[ -n "$url" ] || { echo "demo: the model server did not start:"; cat "$log"; exit 1; }
echo "demo: model server at $url (tools/model-server, OpenAI-compatible)"
export OPENAI_BASE_URL="$url/v1"
export OPENAI_API_KEY="${OPENAI_API_KEY:-demo-key-not-secret}"
echo "demo: bin/runnel run jobs/review_rating.lua"
echo
bin/runnel run jobs/review_rating.lua --summary-json out/product_ratings.summary.json
echo
echo "demo: first ratings in out/product_ratings.jsonl:"
head -n 5 out/product_ratings.jsonl
echo
echo "demo: rating distribution:"
jq -r '.rating' out/product_ratings.jsonl | sort | uniq -c | awk '{ printf "  %s stars: %6d  ", $2, $1; for (i = 0; i < $1 / 250; i++) printf "#"; printf "\n" }'
echo
echo "demo: bin/runnel report out/product_ratings.jsonl --html out/product_ratings.html"
bin/runnel report out/product_ratings.jsonl --html out/product_ratings.html --title "Product ratings (make demo)" >/dev/null
echo "demo: the report (open it in a browser; it needs no network): $PWD/out/product_ratings.html"
