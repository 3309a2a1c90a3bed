# tools/pg.sh: a real PostgreSQL 15 (Debian's) in a directory of its own, for the tests
# (after tests/lib.sh), the bench and make demo-pipeline (tools/demo-pipeline.sh); source it.
# The server lives in PG_ROOT (default: the test's $T); nothing outside it is touched. Its stop
# is appended to the caller's _cleanups array, which the caller runs on exit (tests/lib.sh does).
#   start_postgres     initdb into $PG_ROOT/pg (the first time), start on a free port on 127.0.0.1
#                      with its unix socket in $PG_ROOT/pgsock; exports PGHOST, PGPORT, PGUSER,
#                      PGDATABASE (so psql needs no arguments), PG_CONNINFO (the socket) and
#                      PG_TCP_CONNINFO (127.0.0.1); PG_PID is the postmaster
#   restart_postgres   pg_ctl restart -m fast: same port, same data; sessions are cut
#   stop_postgres      pg_ctl stop -m fast
# PostgreSQL refuses to run as root, so as root the server runs as PG_OS_USER (default nobody),
# which then owns $PG_ROOT/pg and $PG_ROOT/pgsock; $PG_ROOT is opened for traversal (711) for it.
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
PG_OS_USER="${PG_OS_USER:-nobody}"
PG_ROOT="${PG_ROOT:-$T}"
PGDATA_DIR="$PG_ROOT/pg"
PG_SOCKET_DIR="$PG_ROOT/pgsock"
PG_LOG="$PG_SOCKET_DIR/server.log"

# _pg_run COMMAND...: as PG_OS_USER when we are root, else as ourselves
_pg_run() {
  if [ "$(id -u)" = 0 ]; then runuser -u "$PG_OS_USER" -- "$@"; else "$@"; fi
}

_pg_cleanup() {
  if [ -f "$PGDATA_DIR/postmaster.pid" ]; then
    _pg_run "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" stop -m immediate -w -t 10 >/dev/null 2>&1
  fi
}

_pg_options() {
  echo "-c port=$PGPORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$PG_SOCKET_DIR" \
       "-c fsync=off -c shared_buffers=16MB -c max_connections=40 -c log_min_messages=warning"
}

start_postgres() {
  [ -x "$PG_BIN/initdb" ] || { echo "PostgreSQL 15 is not installed: no $PG_BIN/initdb (apt-get install postgresql-15)"; exit 1; }
  if [ ! -d "$PGDATA_DIR" ]; then
    mkdir -p "$PGDATA_DIR" "$PG_SOCKET_DIR"
    if [ "$(id -u)" = 0 ]; then
      id "$PG_OS_USER" >/dev/null 2>&1 || { echo "start_postgres: no user '$PG_OS_USER' to run PostgreSQL as"; exit 1; }
      chmod 711 "$PG_ROOT"
      chown "$PG_OS_USER" "$PGDATA_DIR" "$PG_SOCKET_DIR"
    fi
    if ! _pg_run "$PG_BIN/initdb" -D "$PGDATA_DIR" -U runnel -A trust -E UTF8 --locale=C >"$PG_ROOT/pg-initdb.log" 2>&1; then
      echo "start_postgres: initdb into $PGDATA_DIR failed:"; cat "$PG_ROOT/pg-initdb.log"; exit 1
    fi
    [ "${_pg_cleanup_added:-0}" = 1 ] || { _cleanups+=(_pg_cleanup); _pg_cleanup_added=1; }
  fi
  # A random free port: the server itself tells whether it was free (it fails to bind otherwise).
  local attempt
  for attempt in 1 2 3 4 5 6 7 8; do
    PGPORT=$((20000 + RANDOM % 40000))
    if _pg_run "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$PG_LOG" -w -t 30 -o "$(_pg_options)" start >/dev/null 2>&1; then
      break
    fi
    PGPORT=""
  done
  [ -n "$PGPORT" ] || { echo "start_postgres: the server did not start:"; tail -20 "$PG_LOG"; exit 1; }
  export PGHOST="$PG_SOCKET_DIR" PGPORT PGUSER=runnel PGDATABASE=postgres
  export PG_CONNINFO="host=$PG_SOCKET_DIR port=$PGPORT user=runnel dbname=postgres"
  export PG_TCP_CONNINFO="host=127.0.0.1 port=$PGPORT user=runnel dbname=postgres"
  PG_PID="$(head -1 "$PGDATA_DIR/postmaster.pid")"
}

restart_postgres() {
  if ! _pg_run "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$PG_LOG" -w -t 30 -m fast -o "$(_pg_options)" restart >/dev/null 2>&1; then
    echo "restart_postgres: the server did not come back:"; tail -20 "$PG_LOG"; return 1
  fi
  PG_PID="$(head -1 "$PGDATA_DIR/postmaster.pid")"
}

stop_postgres() {
  _pg_run "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -w -t 30 -m fast stop >/dev/null 2>&1 ||
    { echo "stop_postgres: pg_ctl stop failed:"; tail -20 "$PG_LOG"; return 1; }
}
