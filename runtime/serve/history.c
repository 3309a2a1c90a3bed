/* history.c: runs in SQLite (see history.h). */
#include "serve/history.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char schema[] =
    "CREATE TABLE runs ("
    "  id INTEGER PRIMARY KEY,"
    "  job TEXT NOT NULL,"
    "  file TEXT NOT NULL,"
    "  trigger TEXT NOT NULL,"          /* start, schedule, restart, retry, api, reload */
    "  scheduled_at_ms INTEGER,"        /* the firing it ran for (or skipped), NULL if none */
    "  started_at_ms INTEGER,"          /* NULL when skipped */
    "  ended_at_ms INTEGER,"
    "  pid INTEGER,"
    "  exit_code INTEGER,"              /* NULL while running, when killed by a signal, or skipped */
    "  signal INTEGER,"
    "  state TEXT NOT NULL,"            /* RUNNING, FINISHED, FAILED, STOPPED, LOCKED, SKIPPED */
    "  error TEXT,"                     /* the run's last error, or why it was skipped */
    "  summary TEXT"                    /* the run's --summary-json */
    ");"
    "CREATE INDEX runs_by_job ON runs(job, id);";

enum { ST_START, ST_END, ST_SKIP, ST_LAST_FIRING, ST_LAST_SUMMARY, ST_RUNS, ST_COUNT };
static const char *const statements[ST_COUNT] = {
    "INSERT INTO runs(job, file, trigger, scheduled_at_ms, started_at_ms, pid, state) VALUES (?,?,?,?,?,?,'RUNNING')",
    "UPDATE runs SET ended_at_ms = ?, exit_code = ?, signal = ?, state = ?, error = ?, summary = ? WHERE id = ?",
    "INSERT INTO runs(job, file, trigger, scheduled_at_ms, ended_at_ms, state, error) VALUES (?,?,'schedule',?,?,'SKIPPED',?)",
    "SELECT max(scheduled_at_ms) FROM runs WHERE job = ?",
    "SELECT summary FROM runs WHERE job = ? AND summary IS NOT NULL ORDER BY id DESC LIMIT 1",
    "SELECT id, trigger, state, scheduled_at_ms, started_at_ms, ended_at_ms, pid, exit_code, signal, error, summary "
    "FROM runs WHERE job = ? ORDER BY id DESC LIMIT ?",
};

struct history {
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    char path[4096];
};

static int db_fail(struct history *h, struct rn_err *err, const char *what)
{
    return rn_fail(err, "%s: %s: %s", h->path, what, sqlite3_errmsg(h->db));
}

static int exec_sql(struct history *h, const char *sql, struct rn_err *err)
{
    char *msg = NULL;
    if (sqlite3_exec(h->db, sql, NULL, NULL, &msg) == SQLITE_OK) return 0;
    rn_fail(err, "%s: %s", h->path, msg ? msg : sqlite3_errmsg(h->db));
    sqlite3_free(msg);
    return -1;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Create the schema, or check that the file's is the one this runnel knows. */
static int migrate(struct history *h, struct rn_err *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(h->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK) return db_fail(h, err, "schema");
    int version = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    sqlite3_finalize(st);
    if (version == HISTORY_SCHEMA_VERSION) return 0;
    if (version != 0)
        return rn_fail(err, "%s: schema version %d, but this runnel knows version %d", h->path, version,
                       HISTORY_SCHEMA_VERSION);
    char sql[sizeof schema + 64];
    snprintf(sql, sizeof sql, "BEGIN; %s PRAGMA user_version = %d; COMMIT;", schema, HISTORY_SCHEMA_VERSION);
    return exec_sql(h, sql, err);
}

struct history *history_open(const char *state_dir, struct rn_err *err)
{
    if (rn_mkdir_p(state_dir, err)) return NULL;
    struct history *h = rn_calloc(1, sizeof *h);
    if ((size_t)snprintf(h->path, sizeof h->path, "%s/serve.db", state_dir) >= sizeof h->path) {
        rn_fail(err, "state directory path too long: %s", state_dir);
        free(h);
        return NULL;
    }
    if (sqlite3_open_v2(h->path, &h->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        db_fail(h, err, "cannot open");
        history_close(h);
        return NULL;
    }
    sqlite3_busy_timeout(h->db, 5000);
    if (exec_sql(h, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;", err) || migrate(h, err)) goto fail;
    for (int i = 0; i < ST_COUNT; i++)
        if (sqlite3_prepare_v3(h->db, statements[i], -1, SQLITE_PREPARE_PERSISTENT, &h->st[i], NULL) != SQLITE_OK) {
            db_fail(h, err, "cannot prepare a statement");
            goto fail;
        }
    char sql[256];
    snprintf(sql, sizeof sql,
             "UPDATE runs SET state = 'FAILED', ended_at_ms = %lld, "
             "error = 'the supervisor ended while this run was in progress' WHERE state = 'RUNNING'",
             (long long)wall_ms());
    if (exec_sql(h, sql, err)) goto fail;
    return h;
fail:
    history_close(h);
    return NULL;
}

void history_close(struct history *h)
{
    if (!h) return;
    for (int i = 0; i < ST_COUNT; i++) sqlite3_finalize(h->st[i]);
    sqlite3_close(h->db);
    free(h);
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s) sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
    else sqlite3_bind_null(st, i);
}

/* value, or NULL when it is not present (a time of 0, no exit code, no signal). */
static void bind_integer_or_null(sqlite3_stmt *st, int i, int present, int64_t value)
{
    if (present) sqlite3_bind_int64(st, i, value);
    else sqlite3_bind_null(st, i);
}

/* Ready a statement for its next use. */
static void rewind_statement(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* Step a write statement once and reset it. */
static int step_done(struct history *h, sqlite3_stmt *st, struct rn_err *err, const char *what)
{
    int rc = sqlite3_step(st);
    int ok = rc == SQLITE_DONE;
    if (!ok) db_fail(h, err, what);
    rewind_statement(st);
    return ok ? 0 : -1;
}

int64_t history_started(struct history *h, const char *job, const char *file, const char *trigger, int64_t scheduled_ms,
                        int64_t started_ms, long pid, struct rn_err *err)
{
    sqlite3_stmt *st = h->st[ST_START];
    bind_text(st, 1, job);
    bind_text(st, 2, file);
    bind_text(st, 3, trigger);
    bind_integer_or_null(st, 4, scheduled_ms != 0, scheduled_ms);
    sqlite3_bind_int64(st, 5, started_ms);
    sqlite3_bind_int64(st, 6, pid);
    if (step_done(h, st, err, "cannot record a run")) return -1;
    return sqlite3_last_insert_rowid(h->db);
}

int history_ended(struct history *h, int64_t id, int64_t ended_ms, int exit_code, int signal, const char *state,
                  const char *error, const char *summary, struct rn_err *err)
{
    sqlite3_stmt *st = h->st[ST_END];
    sqlite3_bind_int64(st, 1, ended_ms);
    bind_integer_or_null(st, 2, exit_code >= 0, exit_code);
    bind_integer_or_null(st, 3, signal != 0, signal);
    bind_text(st, 4, state);
    bind_text(st, 5, error);
    bind_text(st, 6, summary);
    sqlite3_bind_int64(st, 7, id);
    return step_done(h, st, err, "cannot record the end of a run");
}

int history_skipped(struct history *h, const char *job, const char *file, int64_t scheduled_ms, int64_t at_ms,
                    const char *reason, struct rn_err *err)
{
    sqlite3_stmt *st = h->st[ST_SKIP];
    bind_text(st, 1, job);
    bind_text(st, 2, file);
    sqlite3_bind_int64(st, 3, scheduled_ms);
    sqlite3_bind_int64(st, 4, at_ms);
    bind_text(st, 5, reason);
    return step_done(h, st, err, "cannot record a skipped run");
}

int64_t history_last_firing(struct history *h, const char *job)
{
    sqlite3_stmt *st = h->st[ST_LAST_FIRING];
    bind_text(st, 1, job);
    int64_t ms = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    rewind_statement(st);
    return ms;
}

char *history_last_summary(struct history *h, const char *job)
{
    sqlite3_stmt *st = h->st[ST_LAST_SUMMARY];
    bind_text(st, 1, job);
    char *text = NULL;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        text = rn_strdup((const char *)sqlite3_column_text(st, 0));
    rewind_statement(st);
    return text;
}

static json_t *time_or_null(sqlite3_stmt *st, int col, const struct tz *tz)
{
    if (sqlite3_column_type(st, col) == SQLITE_NULL) return json_null();
    char iso[TZ_ISO_MAX];
    tz_format_iso8601(tz, sqlite3_column_int64(st, col), 1, iso);
    return json_string(iso);
}

static json_t *int_or_null(sqlite3_stmt *st, int col)
{
    return sqlite3_column_type(st, col) == SQLITE_NULL ? json_null() : json_integer(sqlite3_column_int64(st, col));
}

json_t *history_runs(struct history *h, const char *job, int limit, const struct tz *tz, struct rn_err *err)
{
    sqlite3_stmt *st = h->st[ST_RUNS];
    bind_text(st, 1, job);
    sqlite3_bind_int(st, 2, limit);
    json_t *runs = json_array();
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        json_t *r = json_object();
        json_object_set_new(r, "id", json_integer(sqlite3_column_int64(st, 0)));
        json_object_set_new(r, "trigger", json_string((const char *)sqlite3_column_text(st, 1)));
        json_object_set_new(r, "state", json_string((const char *)sqlite3_column_text(st, 2)));
        json_object_set_new(r, "scheduled_for", time_or_null(st, 3, tz));
        json_object_set_new(r, "start", time_or_null(st, 4, tz));
        json_object_set_new(r, "end", time_or_null(st, 5, tz));
        int timed = sqlite3_column_type(st, 4) != SQLITE_NULL && sqlite3_column_type(st, 5) != SQLITE_NULL;
        json_object_set_new(r, "duration_s", timed ? json_real((double)(sqlite3_column_int64(st, 5) -
                                                                        sqlite3_column_int64(st, 4)) / 1000.0)
                                                   : json_null());
        json_object_set_new(r, "pid", int_or_null(st, 6));
        json_object_set_new(r, "exit_code", int_or_null(st, 7));
        json_object_set_new(r, "signal", int_or_null(st, 8));
        const char *error = (const char *)sqlite3_column_text(st, 9);
        json_object_set_new(r, "error", error ? json_string(error) : json_null());
        const char *summary = (const char *)sqlite3_column_text(st, 10);
        json_t *parsed = summary ? json_loads(summary, 0, NULL) : NULL;
        json_object_set_new(r, "summary", parsed ? parsed : json_null());
        json_array_append_new(runs, r);
    }
    if (rc != SQLITE_DONE) {
        db_fail(h, err, "cannot read the runs");
        json_decref(runs);
        runs = NULL;
    }
    rewind_statement(st);
    return runs;
}
