#!/usr/bin/env bash
# test_postgres.sh: the PostgreSQL harness of tools/pg.sh, checked with psql: a server in
# $T on a free port (as an unprivileged user when run as root), a table written and read over
# the socket and over TCP, a restart that cuts an open session and keeps the data, a stop.
. "$(dirname "$0")/../lib.sh"
. tools/pg.sh
command -v psql >/dev/null || { echo "FAIL psql is not installed (apt-get install postgresql-client-15)"; exit 1; }

start_postgres
check "PGPORT is a port number ($PGPORT)" bash -c '[[ $1 =~ ^[0-9]+$ ]]' _ "$PGPORT"
check "the unix socket is inside the test's directory" test -S "$PG_SOCKET_DIR/.s.PGSQL.$PGPORT"
version=$(psql -XAtc 'show server_version' 2>&1)
check "psql reaches PostgreSQL 15 ($version)" bash -c '[[ $1 == 15.* ]]' _ "$version"
owner=$(ps -o user= -p "$PG_PID" | tr -d ' ')
if [ "$(id -u)" = 0 ]; then
  check "the server runs as $PG_OS_USER, not root (it runs as '$owner')" test "$owner" = "$PG_OS_USER"
else
  expect_eq "the server runs as the test's user" "$(id -un)" "$owner"
fi
check "it listens on 127.0.0.1 only" bash -c '[ "$(psql -XAtc "show listen_addresses")" = 127.0.0.1 ]'

psql -Xq -v ON_ERROR_STOP=1 >"$T/create.out" 2>&1 <<'SQL'
create table ratings (review_id bigint primary key, product_id text not null, rating int check (rating between 1 and 5));
insert into ratings select i, 'B' || (i % 7), 1 + i % 5 from generate_series(1, 1000) i;
SQL
check "a table is created and filled" test $? = 0
expect_eq "1000 rows over the socket" "1000" "$(psql -XAtc 'select count(*) from ratings')"
expect_eq "1000 rows over TCP with PG_TCP_CONNINFO" "1000" "$(psql -XAt "$PG_TCP_CONNINFO" -c 'select count(*) from ratings')"
psql -XAtc "insert into ratings values (1, 'X', 9)" >"$T/bad.out" 2>&1
expect_contains "a constraint violation is the server's error" "$T/bad.out" 'violates check constraint "ratings_rating_check"'
psql -XAtc "insert into ratings values (1, 'B1', 4) on conflict (review_id) do update set rating = excluded.rating" >/dev/null
expect_eq "an upsert overwrites" "4" "$(psql -XAtc 'select rating from ratings where review_id = 1')"

# A session open across a restart: its next statement fails, the data stays, a new session works.
mkfifo "$T/session.in"
psql -XAt <"$T/session.in" >"$T/session.out" 2>&1 &
session=$!
exec 7>"$T/session.in"
echo "select 'before', count(*) from ratings;" >&7
for _ in $(seq 50); do grep -q '^before|1000' "$T/session.out" && break; sleep 0.1; done
expect_contains "the session answers before the restart" "$T/session.out" "before|1000"
old_pid=$PG_PID
check "restart_postgres" restart_postgres
check "the postmaster is a new process ($old_pid -> $PG_PID)" test "$PG_PID" != "$old_pid"
echo "select 'after', count(*) from ratings;" >&7
exec 7>&-
session_rc=0
wait "$session" || session_rc=$?
check "the old session is cut (psql exit $session_rc)" test "$session_rc" != 0
expect_contains "psql says the server closed the connection" "$T/session.out" "server closed the connection"
expect_eq "a new session sees the 1000 rows after the restart" "1000" "$(psql -XAtc 'select count(*) from ratings')"

check "stop_postgres" stop_postgres
# gone, or a zombie that its (not our) parent has not reaped yet
check "the postmaster is gone" bash -c '! ps -o stat= -p "$1" | grep -qv Z' _ "$PG_PID"
check "postmaster.pid is removed" test ! -e "$PGDATA_DIR/postmaster.pid"
check "psql fails once it is stopped" bash -c '! psql -XAtc "select 1" >/dev/null 2>&1'
start_postgres
expect_eq "started again on the same data" "1000" "$(psql -XAtc 'select count(*) from ratings')"
finish
