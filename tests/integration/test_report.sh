#!/usr/bin/env bash
# runnel report: the page of a real rating job's output, opened in headless Chromium (each
# chart drew: the donut's arcs, one per label; the word cloud's words; the heat map's cells;
# nothing fetched from a network), its figures against the job's own evaluation, hostile input
# (lines that are not JSON, missing fields, </script> and quotes in text, non-ASCII, invalid
# UTF-8, an over-long line, an empty file), CSV input, usage errors, and a table that must drop
# keys to stay bounded.
. "$(dirname "$0")/../lib.sh"

command -v chromium >/dev/null || { fail "chromium is not installed (make test installs TEST_PACKAGES)"; finish; }

# browser FILE.html MODE OUT: headless Chromium with a profile of its own, no background traffic.
# MODE dom: the DOM after the scripts ran, to OUT; shot: a 1200x1600 screenshot, to OUT.
browser() {
  local page="$1" mode="$2" out="$3"
  local flags=(--headless --no-sandbox --disable-gpu --user-data-dir="$T/chromium" --no-first-run
               --disable-background-networking --disable-component-update --disable-sync
               --disable-default-apps --disable-extensions --virtual-time-budget=15000
               --log-net-log="$out.netlog.json")
  if [ "$mode" = dom ]; then
    timeout 120 chromium "${flags[@]}" --dump-dom "file://$page" >"$out" 2>"$out.err"
  else
    timeout 120 chromium "${flags[@]}" --window-size=1200,1600 --screenshot="$out" "file://$page" >/dev/null 2>"$out.err"
  fi
}
# requests_by_page NETLOG: the URLs the page itself asked for (the browser's own traffic, such
# as update checks, has another network isolation key than the page's file://).
requests_by_page() {
  jq -r '.constants.logEventTypes.URL_REQUEST_START_JOB as $start | .events[]
         | select(.type == $start and ((.params.network_isolation_key // "") | startswith("file://")))
         | .params.url' "$1"
}
# marks DOM NAME: the number of SVG elements Vega drew for the mark named NAME.
marks() {
  perl -0ne 'if (/class="mark-\w+ role-mark \Q'"$2"'\E"[^>]*>(.*?)<\/g>/s) { my $n = () = $1 =~ /<(path|text)\b/g; print $n; exit }
             END { print "" }' "$1"
}
# commas N: 1234567 -> 1,234,567, as the page writes counts
commas() { echo "$1" | sed ':a; s/\B[0-9]\{3\}\>/,&/; ta'; }
# page_data PAGE: the charts' data inlined in the page, as JSON.
page_data() { sed -n 's/.*<script type="application\/json" id="report-data">\(.*\)<\/script>.*/\1/p' "$1"; }

# ---- the check of "no request" must see one: a page with an external image and script ----
printf '<html><body><img src="http://example.invalid/x.png"><script src="https://cdn.example.invalid/v.js"></script></body></html>' >"$T/external.html"
browser "$T/external.html" dom "$T/external.dom"
expect_eq "the request check sees a page's external requests" 2 "$(requests_by_page "$T/external.dom.netlog.json" | sort -u | wc -l)"

# ---- a real job's output --------------------------------------------------------------
bin/gen-reviews --rows 3000 --seed 11 >"$T/reviews.csv"
start_model_server
export OPENAI_API_KEY=test-key
$RUNNEL run jobs/review_rating.lua --set input="$T/reviews.csv" --set output="$T/ratings.jsonl" \
  --set errors="$T/errors.jsonl" --summary-json "$T/summary.json" --quiet >"$T/run.out" 2>&1
check "the rating job ran" test $? -eq 0 -a -s "$T/ratings.jsonl"
$RUNNEL report "$T/ratings.jsonl" --html "$T/page/report.html" --title 'Ratings <of> "reviews"' >"$T/report.out" 2>"$T/report.err"
check "report exits 0" test $? -eq 0
records=$(wc -l <"$T/ratings.jsonl")
expect_eq "report says what it wrote" "$T/page/report.html: $records records ($records with a label), 0 lines that are not records" "$(cat "$T/report.out")"
expect_eq "no warnings on a clean output" "" "$(cat "$T/report.err")"
page="$T/page/report.html"
check "the page is one file, under 1 MB" test "$(stat -c %s "$page")" -lt 1000000
expect_eq "no external URL in the page (but SVG's XML namespace names)" "" \
  "$(grep -oE 'https?://[^"'"'"' )<>]+' "$page" | grep -vE '^http://www\.w3\.org/(2000/svg|1999/xlink|2000/xmlns/?)$' | sort -u)"
expect_eq "no src= or <link>: nothing to load" "0" "$(grep -ciE '<link|<script[^>]* src=|<img' "$page")"
expect_contains "the title is escaped" "$page" '<h1>Ratings &lt;of&gt; &quot;reviews&quot;</h1>'
expect_eq "three script elements: data, Vega, the page's" "3" "$(grep -o '</script>' "$page" | wc -l)"
# the same figures as the job's own evaluation
expect_contains "accuracy as the job computed it" "$page" "accuracy <b>$(printf '%.4f' "$(sj "$T/summary.json" .evaluation.accuracy)")"
expect_contains "MAE as the job computed it" "$page" "mean absolute error <b>$(printf '%.4f' "$(sj "$T/summary.json" .evaluation.mae)")"
expect_contains "records compared" "$page" "$(commas "$(sj "$T/summary.json" .evaluation.compared)") records compared"
for r in 1 2 3 4 5; do
  n=$(jq -r "select(.rating == $r)" "$T/ratings.jsonl" | grep -c '^{')
  expect_contains "rating $r counted ($n)" "$page" "<code>rating</code> = $r</th><td class=\"num\">$(commas "$n")</td>"
done
data="$T/data.json"
page_data "$page" >"$data"
check "the inlined data is JSON" jq -e .labels "$data"
labels=$(jq -r '.rating' "$T/ratings.jsonl" | sort -u | wc -l)
groups=$(jq -r '.product_id' "$T/ratings.jsonl" | sort -u | wc -l); [ "$groups" -gt 20 ] && groups=20
phrases=$(jq '.phrases | length' "$data")
expect_eq "the cloud has the 100 most frequent phrases" 100 "$phrases"
expect_eq "phrases are lowercase, without punctuation or stop words" "" \
  "$(jq -r '.phrases[].text' "$data" | grep -E '[A-Z.,!?;:]|^(the|this|and|a|is|it) | (the|this|and|a|is|it)$|^(the|this|and|a|is|it)$')"
expect_eq "the heat map has the top groups" "$groups" "$(jq '.groups | length' "$data")"
browser "$page" dom "$T/report.dom"
expect_contains "every chart drew" "$T/report.dom" 'data-charts="donut cloud heatmap"'
expect_eq "donut: one arc per label" "$labels" "$(marks "$T/report.dom" slices)"
expect_eq "word cloud: one word per phrase" "$phrases" "$(marks "$T/report.dom" phrases)"
# (a word the cloud could not fit is drawn at size 0)
expect_eq "word cloud: every word placed" "$phrases" \
  "$(perl -0ne 'if (/role-mark phrases"[^>]*>(.*?)<\/g>/s) { my $n = () = $1 =~ /<text[^>]*font-size="[1-9]/g; print $n }' "$T/report.dom")"
expect_eq "heat map: one cell per group and label" "$((groups * labels))" "$(marks "$T/report.dom" cells)"
expect_eq "the page asked no network for anything" "" "$(requests_by_page "$T/report.dom.netlog.json")"
browser "$page" shot "$T/report.png"
check "a screenshot of the page" test "$(stat -c %s "$T/report.png" 2>/dev/null || echo 0)" -gt 20000

# ---- hostile input ----------------------------------------------------------------------
h="$T/hostile.jsonl"
{
  echo '{"review_id":1,"product_id":"p1","summary":"Great coffee, great taste","rating":5,"score":5}'
  echo 'this line is not JSON'
  echo '{"review_id":3,"product_id":"</script><script>document.title=\"pwned\"</script>","summary":"</script><!-- tasty","rating":4,"score":5}'
  echo '{"review_id":4,"product_id":"q\"uote'"'"'s","summary":"he said \"great\" & '"'"'fine'"'"'","rating":4,"score":4}'
  echo '{"review_id":5,"product_id":"ü","summary":"Café crème — très bon 😍 日本茶","rating":3,"score":3}'
  echo '{"review_id":6,"product_id":"p1","summary":"no rating here","score":2}'
  echo '{"review_id":7,"product_id":"p1","rating":2,"score":2}'
  echo '[1,2,3]'
  echo '{"review_id":9,"product_id":"p1","summary":"truncated'
  printf '{"review_id":10,"product_id":"p1","summary":"bad \xff byte","rating":1}\n'
  echo '{"review_id":11,"product_id":"p2","summary":"null label","rating":null,"score":1}'
  echo '{"review_id":12,"product_id":"p2","summary":"object label","rating":{"v":1},"score":1}'
  echo '{"review_id":13,"product_id":"p2","summ\u0061ry":"escaped key read by jansson","r\u0061ting":2,"score":2}'
  echo ''
  printf '{"review_id":15,"product_id":"p2","summary":"crlf line","rating":1,"score":1}\r\n'
  printf '{"review_id":16,"summary":"'; head -c $((17 * 1024 * 1024)) /dev/zero | tr '\0' 'a'; echo '","rating":5}'
  echo '{"review_id":17,"product_id":"<b>bold</b>","summary":"float label","rating":4.0,"score":4}'
  printf '{"review_id":18,"product_id":"p3","summary":"no newline at the end","rating":5,"score":4}'
} >"$h"
$RUNNEL report "$h" --html "$T/hostile.html" --title '<script>document.title="pwned"</script>' >"$T/hostile.out" 2>"$T/hostile.err"
check "hostile input: report exits 0" test $? -eq 0
expect_eq "hostile input: counted" "$T/hostile.html: 12 records (9 with a label), 5 lines that are not records" "$(cat "$T/hostile.out")"
expect_contains "a line that is not JSON is named" "$T/hostile.err" "hostile.jsonl:2: not JSON: "
expect_contains "a JSON array is named" "$T/hostile.err" "hostile.jsonl:8: a JSON array, not an object"
expect_contains "a truncated line is named" "$T/hostile.err" "hostile.jsonl:9: not JSON: "
expect_contains "invalid UTF-8 is named" "$T/hostile.err" "hostile.jsonl:10: not JSON: "
expect_contains "an over-long line is named" "$T/hostile.err" "hostile.jsonl:16: longer than 16 MiB, skipped"
expect_contains "a missing label is named, with its first line" "$T/hostile.err" "1 record has no field 'rating' (the label; first: line 6)"
expect_contains "unusable labels are named" "$T/hostile.err" "2 records have 'rating' null or otherwise unusable (the label; first: line 11)"
expect_contains "a missing text is named" "$T/hostile.err" "1 record has no field 'summary' (the text; first: line 7)"
expect_eq "</script> in the data does not end a script" "3" "$(grep -o '</script>' "$T/hostile.html" | wc -l)"
expect_eq "no markup from the data" "0" "$(grep -c '<b>bold</b>' "$T/hostile.html")"
expect_contains "a group name is escaped in the page's data" "$T/hostile.html" '\u003cb\u003ebold\u003c/b\u003e'
expect_contains "non-ASCII reaches the cloud" "$T/hostile.html" '"text":"café crème"'
expect_contains "4.0 and 4 are one label" "$T/hostile.html" '<code>rating</code> = 4</th><td class="num">3</td>'
page_data "$T/hostile.html" >"$T/hostile.data.json"
expect_eq "quotes survive as data" 'q"uote'"'"'s' "$(jq -r '.groups[].group' "$T/hostile.data.json" | grep uote)"
browser "$T/hostile.html" dom "$T/hostile.dom"
expect_contains "hostile input: every chart drew" "$T/hostile.dom" 'data-charts="donut cloud heatmap"'
expect_eq "hostile input: no script from the data ran" "0" "$(grep -c '<title>pwned</title>' "$T/hostile.dom")"
expect_eq "hostile input: no element from the data" "0" "$(grep -c '<b>bold</b>' "$T/hostile.dom")"
expect_contains "hostile input: a group name shown as text" "$T/hostile.dom" '&lt;b&gt;bold&lt;/b&gt;'
expect_contains "hostile input: a title shown as text" "$T/hostile.dom" '<h1>&lt;script&gt;document.title="pwned"&lt;/script&gt;</h1>'
expect_eq "hostile input: one arc per label" "$(jq -r '.labels | length' "$T/hostile.data.json")" "$(marks "$T/hostile.dom" slices)"

# more distinct labels than are kept: the rest counted as "other labels", still drawn
$RUNNEL report "$T/ratings.jsonl" --html "$T/ids.html" --label review_id >"$T/ids.out" 2>"$T/ids.err"
check "many labels: exit 0" test $? -eq 0
page_data "$T/ids.html" >"$T/ids.data.json"
expect_eq "many labels: 32 kept, the rest as other labels" "33 $((records - 32))" \
  "$(jq -r '"\(.labels | length) \(.labels[] | select(.other) | .count)"' "$T/ids.data.json")"
browser "$T/ids.html" dom "$T/ids.dom"
expect_contains "many labels: every chart drew" "$T/ids.dom" 'data-charts="donut cloud heatmap"'
expect_eq "many labels: one arc per label and one for the others" 33 "$(marks "$T/ids.dom" slices)"

# an empty file: a page that says so
: >"$T/empty.jsonl"
$RUNNEL report "$T/empty.jsonl" --html "$T/empty.html" >"$T/empty.out" 2>"$T/empty.err"
check "an empty file: exit 0" test $? -eq 0
expect_contains "an empty file: said" "$T/empty.err" "empty.jsonl: no records"
expect_contains "an empty file: the page says so" "$T/empty.html" "No record has a label."
browser "$T/empty.html" dom "$T/empty.dom"
expect_contains "an empty file: the page's script ran, with nothing to draw" "$T/empty.dom" 'data-charts="none"'

# nothing to report on: errors that name the file, field and fields there are
printf 'not json\n{broken\n' >"$T/junk.jsonl"
$RUNNEL report "$T/junk.jsonl" --html "$T/junk.html" >/dev/null 2>"$T/junk.err"
check "no line is a record: exit 1" test $? -eq 1
expect_contains "no line is a record: said" "$T/junk.err" "junk.jsonl: no line is a record (2 lines"
check "no line is a record: no page" test ! -e "$T/junk.html"
$RUNNEL report "$T/ratings.jsonl" --html "$T/x.html" --label ratin 2>"$T/label.err"
check "a label no record has: exit 1" test $? -eq 1
expect_contains "a label no record has: named, with the fields there are" "$T/label.err" \
  "no record has the field 'ratin' (--label FIELD names the label; line 1 has: review_id, product_id, score, summary, rating)"
$RUNNEL report "$T/ratings.jsonl" --html "$T/x.html" --truth stars 2>"$T/truth.err"
check "a named truth no record has: exit 1" test $? -eq 1
expect_contains "a named truth no record has: named" "$T/truth.err" "no record has the field 'stars' (--truth FIELD"
jq -c 'del(.score)' "$T/ratings.jsonl" >"$T/noscore.jsonl"
$RUNNEL report "$T/noscore.jsonl" --html "$T/noscore.html" >/dev/null 2>"$T/noscore.err"
check "without the default truth: exit 0" test $? -eq 0
expect_eq "without the default truth: no evaluation, no warning" "0:" "$(grep -c 'id="evaluation"' "$T/noscore.html"):$(cat "$T/noscore.err")"
$RUNNEL report "$T/missing.jsonl" --html "$T/x.html" 2>"$T/missing.err"
check "a missing input: exit 1" test $? -eq 1
expect_contains "a missing input: named" "$T/missing.err" "missing.jsonl: No such file or directory"
for args in "--html" "$T/ratings.jsonl" "$T/ratings.jsonl --html $T/x.html --top 0" "$T/ratings.jsonl --html $T/x.html --bogus" \
            "$T/ratings.jsonl --html $T/x.html --format xml" "$T/ratings.jsonl --html $T/x.html --label"; do
  $RUNNEL report $args >/dev/null 2>"$T/usage.err"
  check "usage error exits 2: report $args" test $? -eq 2
done
$RUNNEL report --help >"$T/help.out"
expect_contains "report --help lists the options" "$T/help.out" "--truth FIELD"

# ---- CSV input: the review file itself, with broken rows named by line ----------------
bin/gen-reviews --rows 2000 --seed 5 --broken-every 500 >"$T/broken.csv" 2>"$T/gen.err"
# "gen-reviews: rows=2000 broken=4 (width=2 utf8=1 type=1)": rows of the wrong width are not
# records; the others are (the report shows invalid UTF-8 as \xNN and counts any label)
rows=$(sed -n 's/.*rows=\([0-9]*\) broken=\([0-9]*\) (width=\([0-9]*\).*/\1 \2 \3/p' "$T/gen.err")
read -r good broken width <<<"$rows"
$RUNNEL report "$T/broken.csv" --html "$T/csv.html" --label Score --text Summary --group ProductId >"$T/csv.out" 2>"$T/csv.err"
check "CSV: exit 0" test $? -eq 0
csv_records=$((good + broken - width))
expect_eq "CSV: records counted" "$T/csv.html: $csv_records records ($csv_records with a label), $width lines that are not records" "$(cat "$T/csv.out")"
expect_eq "CSV: rows of the wrong width named by line" "$width" "$(grep -cE "broken.csv:[0-9]+: expected 10 fields \(as the header\), got [0-9]+" "$T/csv.err")"
first_bad=$(grep -oE "broken.csv:[0-9]+: expected" "$T/csv.err" | head -1 | grep -oE '[0-9]+')
check "CSV: the line named holds the broken row" test "$(sed -n "${first_bad}p" "$T/broken.csv" | awk -F, '{print NF}')" -ne 10
browser "$T/csv.html" dom "$T/csv.dom"
expect_contains "CSV: every chart drew" "$T/csv.dom" 'data-charts="donut cloud heatmap"'
expect_eq "CSV: the evaluation is there only with a truth" "0" "$(grep -c 'id="evaluation"' "$T/csv.html")"

# ---- bounded memory: more groups than are kept -----------------------------------------
awk 'BEGIN { for (i = 1; i <= 120000; i++) printf "{\"product_id\":\"p%d\",\"summary\":\"word%d other%d\",\"rating\":%d}\n", (i % 3 == 0 ? 1 : i), i, i % 7, i % 5 + 1 }' >"$T/many.jsonl"
$RUNNEL report "$T/many.jsonl" --html "$T/many.html" >"$T/many.out" 2>"$T/many.err"
check "many keys: exit 0" test $? -eq 0
expect_contains "many keys: the page says keys were dropped" "$T/many.html" "the least seen phrases and groups were dropped"
page_data "$T/many.html" >"$T/many.data.json"
expect_eq "many keys: the one frequent group kept, exactly counted" "p1 40001" "$(jq -r '.groups[0] | "\(.group) \(.count)"' "$T/many.data.json")"
finish
