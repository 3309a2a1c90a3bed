#!/usr/bin/env bash
# test_gen_reviews.sh: checks bin/gen-reviews (built beforehand) with a CSV-aware awk parser,
# so it needs nothing beyond a bare Debian: bash, mawk or gawk, cmp, grep, iconv.
# Usage: tests/tools/test_gen_reviews.sh   (from the repository root)
set -euo pipefail
export LC_ALL=C

GEN=${GEN:-bin/gen-reviews}
LEXICON=${LEXICON:-tools/lexicon.h}
SAMPLE=${SAMPLE:-data/reviews_sample.csv}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

passed=0
failed=0
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
check() { # check DESCRIPTION COMMAND...
    local what=$1; shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}

if [ ! -x "$GEN" ]; then
    echo "FAIL: $GEN not built (cc ... tools/gen-reviews.c -o $GEN -lm)"
    echo "0 passed, 1 failed"
    exit 1
fi

# csv_stats FILE: parses RFC 4180 records (quoted commas, "" and newlines) and prints
# key=value facts about them; the lexicon weights come from tools/lexicon.h.
csv_stats() {
    awk -v lexicon="$LEXICON" '
    function parse(rec,    i, j, n, len, c, field, rest, q) {
        n = 0; i = 1; len = length(rec); quoted_any = 0
        while (1) {
            field = ""
            if (substr(rec, i, 1) == "\"") {
                quoted_any = 1; i++
                while (1) {
                    rest = substr(rec, i); q = index(rest, "\"")
                    if (q == 0) { field = field rest; i = len + 1; break }
                    field = field substr(rest, 1, q - 1); i += q
                    if (substr(rec, i, 1) == "\"") { field = field "\""; i++ } else break
                }
            } else {
                rest = substr(rec, i); c = index(rest, ",")
                if (c == 0) { field = rest; i = len + 1 } else { field = substr(rest, 1, c - 1); i += c - 1 }
            }
            f[++n] = field
            if (i > len) break
            i++ # the comma
            if (i > len) { f[++n] = ""; break }
        }
        return n
    }
    function rating(sum) { return sum >= 3 ? 5 : sum >= 1 ? 4 : sum == 0 ? 3 : sum >= -2 ? 2 : 1 }
    BEGIN {
        while ((getline line < lexicon) > 0)
            while (match(line, /\{"[a-z]+", *-?[0-9]+\}/)) {
                entry = substr(line, RSTART + 2, RLENGTH - 3); line = substr(line, RSTART + RLENGTH)
                split(entry, kv, "\""); w = kv[2]; sub(/^, */, "", w)
                weight[kv[1]] = w + 0; lexicon_size++
            }
    }
    {
        rec = open ? pending "\n" $0 : $0
        quotes = gsub(/"/, "\"", $0); open = (open + quotes) % 2
        if (open) { pending = rec; next }
        pending = ""
        if (multiline_check(rec)) multiline++
        n = parse(rec); records++
        if (records == 1) { header = rec; next }
        if (quoted_any) quoted++
        width[n]++
        if (n != 10) next
        if (f[1] != records - 1) bad_id++
        if (f[7] !~ /^[0-9]+$/) { not_integer++; next }
        score[f[7]]++; rows++
        if (f[2] !~ /^B00[0-9A-Z][0-9A-Z][0-9A-Z][0-9A-Z][0-9A-Z][0-9A-Z][0-9A-Z]$/) bad_product++
        if (length(f[3]) != 14 || f[3] !~ /^A[0-9A-Z]+$/) bad_user++
        if (f[5] + 0 > f[6] + 0) bad_helpful++
        if (f[8] < 1009843200 || f[8] >= 1357027200) bad_time++
        if (f[4] == "") empty_profile++
        if (index(f[4], ",") || index(f[4], "\"")) odd_profile++
        if (f[9] == "") empty_summary++
        if (index(f[10], "\"")) doubled_quotes++
        if (index(f[10], "&quot;") || index(f[10], "&amp;")) entities++
        if (index(f[10], "<br /><br />")) html_breaks++
        if (f[10] ~ /[\200-\377]/) non_ascii++
        products[f[2]] = 1
        s = tolower(f[9]); gsub(/[^a-z]+/, " ", s); k = split(s, words, " "); sum = 0
        for (j = 1; j <= k; j++) if (words[j] in weight) sum += weight[words[j]]
        if (rating(sum) == f[7]) agree++
    }
    function multiline_check(r) { return index(r, "\n") > 0 }
    END {
        print "lexicon=" lexicon_size
        print "records=" records - 1 " rows=" rows " unterminated=" open
        print "width7=" width[7] + 0 " width10=" width[10] + 0 " width11=" width[11] + 0 " not_integer=" not_integer + 0
        print "bad_id=" bad_id + 0 " bad_product=" bad_product + 0 " bad_user=" bad_user + 0 " bad_helpful=" bad_helpful + 0 " bad_time=" bad_time + 0
        print "quoted=" quoted + 0 " multiline=" multiline + 0 " doubled_quotes=" doubled_quotes + 0 " entities=" entities + 0 " html_breaks=" html_breaks + 0 " non_ascii=" non_ascii + 0
        print "empty_profile=" empty_profile + 0 " odd_profile=" odd_profile + 0 " empty_summary=" empty_summary + 0
        n = 0; for (p in products) n++; print "products=" n
        for (i = 1; i <= 5; i++) printf "score%d_pct=%d\n", i, rows ? int(100 * score[i] / rows + 0.5) : 0
        printf "agree_pct=%d\n", rows ? int(100 * agree / rows + 0.5) : 0
    }' "$1"
}
# stat NAME FILE: one value from a csv_stats output file.
stat() { tr ' ' '\n' < "$2" | sed -n "s/^$1=//p"; }
between() { [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }

# Determinism.
"$GEN" --rows 3000 --seed 7 > "$WORK/a.csv" 2>/dev/null
"$GEN" --rows 3000 --seed 7 > "$WORK/b.csv" 2>/dev/null
"$GEN" --rows 3000 --seed 8 > "$WORK/c.csv" 2>/dev/null
check "same seed gives the same bytes" cmp -s "$WORK/a.csv" "$WORK/b.csv"
check "another seed gives other bytes" bash -c "! cmp -s '$WORK/a.csv' '$WORK/c.csv'"

# A clean file of 5000 rows.
"$GEN" --rows 5000 --seed 42 > "$WORK/good.csv" 2> "$WORK/good.err"
csv_stats "$WORK/good.csv" > "$WORK/good.stats"
check "header" [ "$(head -n 1 "$WORK/good.csv")" = \
    "Id,ProductId,UserId,ProfileName,HelpfulnessNumerator,HelpfulnessDenominator,Score,Time,Summary,Text" ]
check "stderr summary line" grep -qx 'gen-reviews: rows=5000 broken=0 (width=0 utf8=0 type=0)' "$WORK/good.err"
check "lexicon parsed from $LEXICON" [ "$(stat lexicon "$WORK/good.stats")" -gt 20 ]
check "5000 CSV records, all with 10 fields" \
    [ "$(stat records "$WORK/good.stats")" = 5000 -a "$(stat width10 "$WORK/good.stats")" = 5000 \
      -a "$(stat unterminated "$WORK/good.stats")" = 0 ]
check "Ids 1..N, ProductId/UserId shapes, helpfulness, time range" \
    [ "$(stat bad_id "$WORK/good.stats")$(stat bad_product "$WORK/good.stats")$(stat bad_user "$WORK/good.stats")$(stat bad_helpful "$WORK/good.stats")$(stat bad_time "$WORK/good.stats")" = 00000 ]
for feature in quoted multiline doubled_quotes entities html_breaks non_ascii odd_profile empty_profile; do
    check "some rows have $feature ($(stat $feature "$WORK/good.stats"))" [ "$(stat $feature "$WORK/good.stats")" -gt 0 ]
done
check "product pool about N/20 ($(stat products "$WORK/good.stats"))" between "$(stat products "$WORK/good.stats")" 100 250
check "Score skew: 5 is ~64% ($(stat score5_pct "$WORK/good.stats"))" between "$(stat score5_pct "$WORK/good.stats")" 58 70
check "Score skew: 1 is ~9% ($(stat score1_pct "$WORK/good.stats"))" between "$(stat score1_pct "$WORK/good.stats")" 6 12
check "summary lexicon rating agrees with Score for 75-85% ($(stat agree_pct "$WORK/good.stats")%)" \
    between "$(stat agree_pct "$WORK/good.stats")" 75 85
check "clean file is valid UTF-8" iconv -f UTF-8 -t UTF-8 -o /dev/null "$WORK/good.csv"
check "lines end with LF only" bash -c "! grep -q \$'\r' '$WORK/good.csv'"

# Broken rows: 1000 good rows, one broken after every 10, four kinds in turn.
"$GEN" --rows 1000 --seed 5 --broken-every 10 > "$WORK/broken.csv" 2> "$WORK/broken.err"
csv_stats "$WORK/broken.csv" > "$WORK/broken.stats"
check "broken stderr line" grep -qx 'gen-reviews: rows=1000 broken=100 (width=50 utf8=25 type=25)' "$WORK/broken.err"
check "1100 records in all" [ "$(stat records "$WORK/broken.stats")" = 1100 ]
check "25 rows with too few fields" [ "$(stat width7 "$WORK/broken.stats")" = 25 ]
check "25 rows with too many fields" [ "$(stat width11 "$WORK/broken.stats")" = 25 ]
check "25 rows whose Score is not an integer" [ "$(stat not_integer "$WORK/broken.stats")" = 25 ]
check "25 rows with invalid UTF-8" [ "$(grep -c $'\xff\xfe' "$WORK/broken.csv")" = 25 ]
check "broken file is rejected as UTF-8" bash -c "! iconv -f UTF-8 -t UTF-8 -o /dev/null '$WORK/broken.csv' 2>/dev/null"

# Edges and errors.
check "--rows 0 writes only the header" [ "$("$GEN" --rows 0 2>/dev/null | wc -l)" = 1 ]
check "missing --rows is an error (exit 2)" bash -c "'$GEN' >/dev/null 2>&1; [ \$? = 2 ]"
check "bad number is an error (exit 2)" bash -c "'$GEN' --rows ten >/dev/null 2>&1; [ \$? = 2 ]"

# The shipped sample is exactly what the generator makes, so it can be regenerated.
if [ -f "$SAMPLE" ]; then
    "$GEN" --rows 20000 --seed 42 > "$WORK/sample.csv" 2>/dev/null
    check "$SAMPLE equals 'gen-reviews --rows 20000 --seed 42' (regenerate it if the generator changed)" \
        cmp -s "$WORK/sample.csv" "$SAMPLE"
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
