#!/usr/bin/env bash
# sink.postgres against a real PostgreSQL 15 (tools/pg.sh), checked with psql: upserts, a
# replay that overwrites (nothing twice), create, refused rows (a check constraint, a NOT NULL
# column, a value the column type cannot hold) dead-lettered with their SQLSTATE while the rest
# of their batch lands, a server restart mid-job (nothing lost, nothing twice), a server gone for
# good (the job stops naming the server, the password never shown; a resume completes the table),
# and read = written + dead-lettered + filtered.
. "$(dirname "$0")/../lib.sh"
. tools/pg.sh
start_postgres
q() { psql -XAtc "$1" 2>&1; }

bin/gen-reviews --rows 3000 --seed 5 > "$T/in.csv" 2>/dev/null
cat > "$T/job.lua" <<'LUA'
local bump, slow = tonumber(param("bump", "0")), param("slow", "0") == "1"
return job {
  name = param("name"),
  checkpoint_interval = "1s",
  source = source.csv { path = param("input"), select = { review_id = "Id", product_id = "ProductId", score = "Score" },
                        types = { review_id = "integer", score = "integer" } },
  map = function(r)
    if slow then local t = os.clock() while os.clock() - t < 0.002 do end end
    if r.review_id % 83 == 0 then return nil end                -- filtered
    local rating = (r.score + bump - 1) % 5 + 1
    local product = r.product_id
    if r.review_id % 97 == 0 then rating = 9 end                 -- the check constraint refuses it
    if r.review_id % 101 == 0 then rating = "many" end           -- not an integer
    if r.review_id % 89 == 0 then product = nil end             -- product_id is NOT NULL
    return { review_id = r.review_id, product_id = product, rating = rating }
  end,
  sinks = { sink.postgres { conninfo = param("conninfo"), table = param("table", "product ratings"),
                            key = "review_id", create = param("create", "false") == "true",
                            columns = { review_id = "bigint", product_id = "text", rating = "integer" },
                            batch = { rows = 200, time = "200ms" }, retry_for = param("retry_for", "60s") } },
  errors = sink.jsonl { path = param("errors") },
}
LUA
run() {
  local name="$1"; shift
  $RUNNEL run "$T/job.lua" --set name="$name" --set input="$T/in.csv" --set conninfo="$PG_TCP_CONNINFO" \
    --set errors="$T/$name.err" --no-progress --summary-json "$T/$name.json" "$@" 2>"$T/$name.log"
  echo $? > "$T/$name.rc"
}
# counts BUMP: rows, filtered, refused by the check, by the type, by NOT NULL, sum of the ratings that land
counts() { python3 - "$T/in.csv" "$1" <<'PY'
import csv, sys
bump = int(sys.argv[2])
ids = [(int(r["Id"]), int(r["Score"])) for r in csv.DictReader(open(sys.argv[1], newline=""))]
kept = [(i, s) for i, s in ids if i % 83]
many = [i for i, _ in kept if i % 101 == 0]
nine = [i for i, _ in kept if i % 97 == 0 and i % 101]
null = [i for i, _ in kept if i % 89 == 0 and i % 101 and i % 97]
bad = set(many) | set(nine) | set(null)
total = sum((s + bump - 1) % 5 + 1 for i, s in kept if i not in bad)
print(len(ids), len(ids) - len(kept), len(nine), len(many), len(null), total)
PY
}
read -r rows filtered nine many null sum0 <<<"$(counts 0)"
read -r _ _ _ _ _ sum1 <<<"$(counts 1)"
refused=$((nine + many + null))
good=$((rows - filtered - refused))
[ "$nine" -gt 0 ] && [ "$many" -gt 0 ] && [ "$null" -gt 0 ] || fail "the input has rows of every refused kind ($nine $many $null)"

psql -Xq -v ON_ERROR_STOP=1 -c 'create table "product ratings" (review_id bigint primary key, product_id text not null,
  rating int check (rating between 1 and 5))' || fail "create the table"
run first
expect_eq "the job succeeds" 0 "$(cat "$T/first.rc")"
check "invariant: read = written + filtered + dead-lettered" invariant_holds "$T/first.json"
expect_eq "read, filtered, dead-lettered" "$rows $filtered $refused" "$(jq -r '"\(.read) \(.filtered) \(.dead_lettered)"' "$T/first.json")"
expect_eq "every row the server takes is in the table (psql)" "$good" "$(q 'select count(*) from "product ratings"')"
expect_eq "refused rows are dead letters" "$refused" "$(wc -l < "$T/first.err")"
check "a check violation: SQLSTATE 23514 and the server's message" \
  jq -e -s '[.[] | select(.record.rating == 9)] | length > 0 and all(.stage == "sink.postgres" and (.reason | test("SQLSTATE 23514.*check constraint")))' "$T/first.err"
check "a value the column type cannot hold: SQLSTATE 22P02" \
  jq -e -s '[.[] | select(.record.rating == "many")] | length > 0 and all(.reason | test("SQLSTATE 22P02.*invalid input syntax for type integer"))' "$T/first.err"
check "a NOT NULL violation: SQLSTATE 23502" \
  jq -e -s '[.[] | select(.record.product_id == null)] | length > 0 and all(.reason | test("SQLSTATE 23502.*product_id"))' "$T/first.err"
expect_eq "the ratings landed as sent (sum)" "$sum0" "$(q 'select sum(rating) from "product ratings"')"

run replay --set bump=1
expect_eq "a replay succeeds" 0 "$(cat "$T/replay.rc")"
expect_eq "a replay keeps one row per key (nothing twice)" "$good" "$(q 'select count(*) from "product ratings"')"
expect_eq "... and overwrites the ratings" "$sum1" "$(q 'select sum(rating) from "product ratings"')"

run created --set table=created --set create=true
expect_eq "create = true: the job succeeds" 0 "$(cat "$T/created.rc")"
expect_eq "the table is made with the declared types" "review_id|bigint|NO product_id|text|YES rating|integer|YES" \
  "$(q "select column_name, data_type, is_nullable from information_schema.columns where table_name = 'created' order by ordinal_position" | tr '\n' ' ' | sed 's/ $//')"
expect_eq "the key is the primary key" "review_id" "$(q "select a.attname from pg_index i join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey) where i.indrelid = 'created'::regclass and i.indisprimary")"
expect_eq "rows that fit land (no constraints here: the 9s and the nulls too)" "$((rows - filtered - many))" "$(q 'select count(*) from created')"

# ---- a restart mid-job: the sink reconnects and resends; nothing lost, nothing twice ----------
q 'truncate "product ratings"' >/dev/null
run restart --set slow=1 &
for _ in $(seq 300); do [ "$(q 'select count(*) from "product ratings"')" -gt 400 ] 2>/dev/null && break; sleep 0.1; done
before=$(q 'select count(*) from "product ratings"')
check "restart_postgres while the job writes ($before rows in)" restart_postgres
wait
expect_eq "the job goes on after the restart" 0 "$(cat "$T/restart.rc")"
expect_contains "it says it reconnects" "$T/restart.log" "reconnecting"
expect_eq "every row is there once" "$good|$good" "$(q 'select count(*), count(distinct review_id) from "product ratings"')"
expect_eq "the ratings are right (sum)" "$sum0" "$(q 'select sum(rating) from "product ratings"')"
expect_eq "dead letters once each" "$refused $refused" "$(jq -s 'map(.record.review_id) | "\(length) \(unique | length)"' -r "$T/restart.err")"
check "invariant after the restart" invariant_holds "$T/restart.json"

# ---- the server gone for good: the job stops naming the server, the password stays secret ------
q 'truncate "product ratings"' >/dev/null
psql -Xqc "alter user $PGUSER password 'hunter2-secret'" >/dev/null
pw_conninfo="$PG_TCP_CONNINFO password=hunter2-secret"
run gone --set slow=1 --set retry_for=2s --set conninfo="$pw_conninfo" &
for _ in $(seq 300); do [ "$(q 'select count(*) from "product ratings"')" -gt 400 ] 2>/dev/null && break; sleep 0.1; done
check "stop_postgres mid-job" stop_postgres
wait
check "the job fails when the server stays away (exit $(cat "$T/gone.rc"))" test "$(cat "$T/gone.rc")" != 0
expect_contains "it names the server" "$T/gone.log" "the server 127.0.0.1:$PGPORT/postgres is unreachable"
check "the password is never printed" bash -c '! grep -q hunter2 "$1"' _ "$T/gone.log"
start_postgres
pw_conninfo="$PG_TCP_CONNINFO password=hunter2-secret"
run gone --set conninfo="$pw_conninfo" --resume
expect_eq "the resumed job succeeds" 0 "$(cat "$T/gone.rc")"
expect_eq "after the resume every row is there once" "$good|$good" "$(q 'select count(*), count(distinct review_id) from "product ratings"')"
finish
