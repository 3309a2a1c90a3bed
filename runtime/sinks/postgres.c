/* postgres.c: sink.postgres, rows upserted into a PostgreSQL table over libpq.
 *
 * Records queue up as rows (every value as text, NULL for a missing field) and leave in
 * batches of batch.rows, or sooner when the oldest waited batch.time: one multi-row
 * INSERT ... VALUES (...),(...) ON CONFLICT (key) DO UPDATE SET ... per batch, values as
 * parameters, identifiers quoted by PQescapeIdentifier. The statement is its own transaction
 * (autocommit): when its result arrives it is committed, and the batch is acknowledged.
 * Statements go out with libpq's non-blocking calls; the socket is watched in the job's loop,
 * so the model keeps working while a batch commits. One batch is in the air at a time.
 *
 * A batch the server refuses for its data is sent again row by row, each row its own
 * statement: a row refused then is rejected (dead letters) with the server's SQLSTATE and
 * message, and the others land. A lost connection (or SQLSTATE class 08, 57P, 53) is retried
 * with backoff, resending the statement that was in the air (an upsert lands once however often
 * it is sent); after retry_for without success the sink fails, naming the server (the conninfo
 * itself is redacted), and nothing past the last acknowledged row is committed. */
#include <lauxlib.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/secret.h"
#include "formats/json.h"
#include "lua/job.h"
#include "engine/plugin.h"

struct pg_row {
    uint64_t seq;
    char **values; /* one per column, NULL for SQL NULL; owned */
    char *key;     /* the key columns' values, length-prefixed and joined: one row per key a statement */
};

struct pg_column {
    char *name, *quoted, *type; /* type: NULL until known (columns taken from the record) */
    int is_key;
};

struct pg_sink {
    struct job_env *env;
    struct secret_set secrets;
    char *conninfo, *label, *server;
    PGconn *conn;
    int fd;                    /* the watched socket, -1 when none */
    char *table, *table_q;
    struct pg_column *cols;
    size_t ncols;
    char **keys;
    size_t nkeys;
    int columns_ready;         /* 0 while the columns wait for the first record */
    int create;
    size_t batch_rows;
    int64_t batch_ms, retry_for_ms, backoff_ms;

    struct pg_row *queue;      /* rows waiting, oldest first: [head, count) */
    size_t head, count, cap;
    int64_t oldest_at;         /* when the oldest waiting row arrived */
    struct loop_timer batch_timer;

    size_t flight;             /* rows [head, head + flight) are the batch in the air */
    int single;                /* 0: one statement for the batch; 1: row by row, next row `next` */
    size_t next;
    int sending;               /* a statement was sent and its result is awaited */
    int64_t down_since;        /* first failure of the current outage, 0: none */
    int64_t reconnect_at;      /* 0: not waiting to reconnect */
    int attempt;
    struct loop_timer retry_timer;
    char down_reason[256];     /* why, while down_since is set: poll() says sink_down with it */
    int reported_down;

    uint64_t acked_through;
    int have_ack;
    struct pg_reject { uint64_t seq; char *reason; } *rejects;
    size_t nrejects, cap_rejects;
    struct buf sql;
};

static const struct option_spec pg_options[] = {
    {"conninfo", OPT_STRING, 1, NULL, .secret = 1,
     .help = "libpq connection string or URI (\"host=... dbname=...\", \"postgresql://...\"); may be secret(\"NAME\"). "
             "Never printed: messages name the server as host:port/database"},
    {"table", OPT_STRING, 1, NULL, .help = "the table (one identifier, quoted as given)"},
    {"key", OPT_STRING_OR_LIST, 1, NULL,
     .help = "the conflict key column(s), a primary key or unique index: a replayed key overwrites its row"},
    {"columns", OPT_MAP, 0, NULL,
     .default_note = "the first record's fields",
     .help = "{ name = \"type\", ... }: the columns written, each from the record field of that name (missing: NULL); "
             "types are used by create",
     .value = OPT_VALUE(OPT_ENUM, .choices = OPT_CHOICES("text", "integer", "bigint", "double precision", "boolean",
                                                          "jsonb", "timestamptz"))},
    {"create", OPT_BOOLEAN, 0, "false",
     .help = "CREATE TABLE IF NOT EXISTS from columns with PRIMARY KEY (key) (types of columns taken from the first "
             "record follow its values)"},
    {"batch", OPT_NESTED, 0, NULL, .help = "when a batch is sent",
     .fields = OPT_FIELDS({"rows", OPT_INTEGER, 0, "500", .help = "rows per INSERT statement", OPT_RANGE(1, 10000)},
                          {"time", OPT_DURATION, 0, "1s", .help = "longest a row waits for its batch to fill",
                           OPT_RANGE(1, 3600000)})},
    {"retry_for", OPT_DURATION, 0, "2m",
     .help = "how long a server that went away is retried (backoff from 100ms, doubling to 5s) before the job stops",
     OPT_RANGE(0, 86400000)},
    {NULL},
};

/* ---- helpers ---- */

static void row_free(struct pg_sink *s, struct pg_row *r)
{
    for (size_t i = 0; i < s->ncols; i++) free(r->values[i]);
    free(r->values);
    free(r->key);
}

static char *first_line(const char *text, char *out, size_t n)
{
    snprintf(out, n, "%s", text && *text ? text : "(no message)");
    out[strcspn(out, "\n")] = 0;
    return out;
}

static void on_socket(void *user, int fd, unsigned events)
{
    struct pg_sink *s = user;
    (void)fd;
    (void)events;
    if (!s->conn) return;
    if (!PQconsumeInput(s->conn) || PQflush(s->conn) < 0) { /* gone: pump() sees the status */
        loop_unwatch(s->env->loop, s->fd);
        s->fd = -1;
    }
}

static void watch(struct pg_sink *s, unsigned events)
{
    if (s->env->loop && s->fd >= 0) loop_watch(s->env->loop, s->fd, events, on_socket, s, NULL);
}

static void disconnect(struct pg_sink *s)
{
    if (s->env->loop && s->fd >= 0) loop_unwatch(s->env->loop, s->fd);
    s->fd = -1;
    if (s->conn) PQfinish(s->conn);
    s->conn = NULL;
}

/* Connect (blocking, at most connect_timeout: 10s unless the conninfo says otherwise) and go
 * non-blocking with the socket watched. 0, or -1 with err (the server named, never the conninfo). */
static int pg_connect(struct pg_sink *s, struct rn_err *err)
{
    disconnect(s);
    const char *const keys[] = {"connect_timeout", "dbname", NULL};
    const char *const values[] = {"10", s->conninfo, NULL};
    s->conn = PQconnectdbParams(keys, values, 1);
    if (!s->conn) return rn_fail(err, "%s: cannot connect: out of memory", s->label);
    if (PQstatus(s->conn) != CONNECTION_OK) {
        char msg[512];
        return secret_fail(&s->secrets, err, "%s: cannot connect to %s: %s", s->label, s->server,
                           first_line(PQerrorMessage(s->conn), msg, sizeof msg));
    }
    if (PQsetnonblocking(s->conn, 1))
        return rn_fail(err, "%s: %s: cannot go non-blocking", s->label, s->server);
    s->fd = PQsocket(s->conn);
    if (s->env->loop && loop_watch(s->env->loop, s->fd, LOOP_READ, on_socket, s, err)) return -1;
    return 0;
}

/* One statement, waited for (open and the first record's CREATE only). */
static int exec_blocking(struct pg_sink *s, const char *sql, struct rn_err *err)
{
    PQsetnonblocking(s->conn, 0);
    PGresult *r = PQexec(s->conn, sql);
    PQsetnonblocking(s->conn, 1);
    int rc = 0;
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        char msg[512];
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        rc = secret_fail(&s->secrets, err, "%s: %s: %s (SQLSTATE %s)", s->label, s->server,
                         first_line(PQresultErrorMessage(r), msg, sizeof msg), state ? state : "none");
    }
    PQclear(r);
    return rc;
}

static int create_table(struct pg_sink *s, struct rn_err *err)
{
    struct buf b = {0};
    buf_printf(&b, "CREATE TABLE IF NOT EXISTS %s (", s->table_q);
    for (size_t c = 0; c < s->ncols; c++) /* a type is one of the choices options.h allowed */
        buf_printf(&b, "%s %s, ", s->cols[c].quoted, s->cols[c].type ? s->cols[c].type : "text");
    buf_puts(&b, "PRIMARY KEY (");
    for (size_t k = 0; k < s->nkeys; k++) {
        for (size_t c = 0; c < s->ncols; c++)
            if (!strcmp(s->cols[c].name, s->keys[k])) buf_printf(&b, "%s%s", k ? ", " : "", s->cols[c].quoted);
    }
    buf_puts(&b, "))");
    int rc = exec_blocking(s, b.data, err);
    buf_free(&b);
    return rc;
}

static int add_column(struct pg_sink *s, const char *name, const char *type, struct rn_err *err)
{
    char *q = s->conn ? PQescapeIdentifier(s->conn, name, strlen(name)) : NULL;
    if (!q && !s->conn) return rn_fail(err, "%s: column '%s': not connected to %s", s->label, name, s->server);
    if (!q) return rn_fail(err, "%s: column '%s': %s", s->label, name, PQerrorMessage(s->conn));
    s->cols = rn_realloc(s->cols, (s->ncols + 1) * sizeof *s->cols);
    struct pg_column *c = &s->cols[s->ncols++];
    c->name = rn_strdup(name);
    c->quoted = rn_strdup(q);
    PQfreemem(q);
    c->type = type ? rn_strdup(type) : NULL;
    c->is_key = 0;
    for (size_t k = 0; k < s->nkeys; k++) c->is_key |= !strcmp(s->keys[k], name);
    return 0;
}

static int by_name(const void *a, const void *b)
{
    const struct pg_column *x = a, *y = b;
    if (x->is_key != y->is_key) return y->is_key - x->is_key; /* keys first */
    return strcmp(x->name, y->name);
}

/* The columns are known (declared, or the first record's): check the key, create the table. */
static int columns_done(struct pg_sink *s, struct rn_err *err)
{
    qsort(s->cols, s->ncols, sizeof *s->cols, by_name);
    for (size_t k = 0; k < s->nkeys; k++) {
        size_t c = 0;
        while (c < s->ncols && strcmp(s->cols[c].name, s->keys[k])) c++;
        if (c == s->ncols) return rn_fail(err, "%s: key '%s' is not one of the columns", s->label, s->keys[k]);
    }
    s->columns_ready = 1;
    return s->create ? create_table(s, err) : 0;
}

/* The SQL type a value suggests, for a column taken from the first record. */
static const char *type_of(lua_State *L, int idx)
{
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN: return "boolean";
    case LUA_TNUMBER: return lua_isinteger(L, idx) ? "bigint" : "double precision";
    case LUA_TSTRING: return "text";
    default: return "jsonb";
    }
}

/* A field's value as a parameter's text: NULL for json.null, numbers exactly, tables as JSON
 * (for jsonb). -1 with err for a string with a NUL byte or a value JSON cannot hold. */
static int value_text(struct pg_sink *s, int idx, const char *name, char **out, struct rn_err *err)
{
    lua_State *L = s->env->L;
    struct buf b = {0};
    *out = NULL;
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN: *out = rn_strdup(lua_toboolean(L, idx) ? "true" : "false"); return 0;
    case LUA_TNUMBER: json_put_number(L, idx, &b); break;
    case LUA_TSTRING: {
        size_t n;
        const char *t = lua_tolstring(L, idx, &n);
        if (memchr(t, 0, n)) return rn_fail(err, "%s: field '%s' holds a NUL byte, which PostgreSQL text cannot", s->label, name);
        *out = rn_strdup(t);
        return 0;
    }
    default:
        if (json_encode(L, idx, s->env->fieldorder_ref, &b, err)) {
            char why[sizeof err->msg];
            snprintf(why, sizeof why, "%s", err->msg);
            buf_free(&b);
            return rn_fail(err, "%s: field '%s': %s", s->label, name, why);
        }
    }
    if (b.len == 4 && !memcmp(b.data, "null", 4)) { buf_free(&b); return 0; } /* json.null, NaN */
    *out = b.data;
    return 0;
}

/* ---- sending ---- */

static void add_reject(struct pg_sink *s, uint64_t seq, const char *state, const char *message)
{
    if (s->nrejects == s->cap_rejects) {
        s->cap_rejects = s->cap_rejects ? s->cap_rejects * 2 : 8;
        s->rejects = rn_realloc(s->rejects, s->cap_rejects * sizeof *s->rejects);
    }
    char text[1024], red[1024], msg[800];
    snprintf(text, sizeof text, "%s: PostgreSQL refused the row (SQLSTATE %s): %s", s->label, state,
             first_line(message, msg, sizeof msg));
    secret_redact_text(&s->secrets, text, red, sizeof red);
    s->rejects[s->nrejects].seq = seq;
    s->rejects[s->nrejects++].reason = rn_strdup(red);
}

/* Send rows [lo, hi) of the queue as one upsert. 0, or -1 when libpq could not queue it. */
static int send_rows(struct pg_sink *s, size_t lo, size_t hi)
{
    size_t nparams = (hi - lo) * s->ncols, p = 0;
    buf_clear(&s->sql);
    buf_printf(&s->sql, "INSERT INTO %s (", s->table_q);
    for (size_t c = 0; c < s->ncols; c++) buf_printf(&s->sql, "%s%s", c ? ", " : "", s->cols[c].quoted);
    buf_puts(&s->sql, ") VALUES ");
    const char **values = rn_calloc(nparams ? nparams : 1, sizeof *values);
    for (size_t i = lo; i < hi; i++) {
        buf_puts(&s->sql, i > lo ? ", (" : "(");
        for (size_t c = 0; c < s->ncols; c++) {
            buf_printf(&s->sql, "%s$%zu", c ? ", " : "", p + 1);
            values[p++] = s->queue[i].values[c];
        }
        buf_putc(&s->sql, ')');
    }
    buf_puts(&s->sql, " ON CONFLICT (");
    size_t k = 0, updated = 0;
    for (size_t c = 0; c < s->ncols; c++)
        if (s->cols[c].is_key) buf_printf(&s->sql, "%s%s", k++ ? ", " : "", s->cols[c].quoted);
    buf_puts(&s->sql, ") DO ");
    for (size_t c = 0; c < s->ncols; c++)
        if (!s->cols[c].is_key)
            buf_printf(&s->sql, "%s%s = EXCLUDED.%s", updated++ ? ", " : "UPDATE SET ", s->cols[c].quoted,
                       s->cols[c].quoted);
    if (!updated) buf_puts(&s->sql, "NOTHING");
    int ok = PQsendQueryParams(s->conn, s->sql.data, (int)nparams, NULL, values, NULL, NULL, 0);
    free(values);
    if (!ok) return -1;
    s->sending = 1;
    watch(s, PQflush(s->conn) == 1 ? LOOP_READ | LOOP_WRITE : LOOP_READ);
    return 0;
}

/* The statement in the air again (after a reconnection), or the next one of the batch. */
static int send_current(struct pg_sink *s)
{
    if (s->single) return send_rows(s, s->head + s->next, s->head + s->next + 1);
    return send_rows(s, s->head, s->head + s->flight);
}

/* Take the next batch from the queue: up to batch.rows rows, ending before a repeated key
 * (ON CONFLICT cannot touch one row twice in a statement). */
static void take_batch(struct pg_sink *s)
{
    size_t n = 0;
    while (n < s->batch_rows && s->head + n < s->count) {
        int repeated = 0;
        for (size_t i = s->head; i < s->head + n && !repeated; i++)
            repeated = !strcmp(s->queue[i].key, s->queue[s->head + n].key);
        if (repeated) break;
        n++;
    }
    s->flight = n;
    s->single = 0;
    s->next = 0;
}

/* The batch in the air is done: acknowledge it and drop its rows. */
static void batch_done(struct pg_sink *s)
{
    s->acked_through = s->queue[s->head + s->flight - 1].seq;
    s->have_ack = 1;
    for (size_t i = s->head; i < s->head + s->flight; i++) row_free(s, &s->queue[i]);
    s->head += s->flight;
    s->flight = 0;
    if (s->head == s->count) s->head = s->count = 0;
    else if (s->head > s->cap / 2) { /* slide the rest down */
        memmove(s->queue, s->queue + s->head, (s->count - s->head) * sizeof *s->queue);
        s->count -= s->head;
        s->head = 0;
    }
}

/* An outage: wait, then reconnect; the statement in the air is sent again. -1 with err once
 * retry_for has passed. */
static int went_away(struct pg_sink *s, const char *why, struct rn_err *err)
{
    int64_t now = rn_now_ms();
    char msg[512];
    first_line(why, msg, sizeof msg);
    s->sending = 0;
    if (!s->down_since) s->down_since = now;
    if (now - s->down_since >= s->retry_for_ms)
        return secret_fail(&s->secrets, err,
                           "%s: the server %s is unreachable (retried for %llds): %s; nothing past the last "
                           "acknowledged row is committed",
                           s->label, s->server, (long long)((now - s->down_since) / 1000), msg);
    int64_t wait = 100LL << (s->attempt < 6 ? s->attempt : 6);
    if (wait > 5000) wait = 5000;
    s->attempt++;
    char red[600];
    secret_redact_text(&s->secrets, msg, red, sizeof red);
    snprintf(s->down_reason, sizeof s->down_reason, "%.80s went away: %.160s", s->server, red);
    log_write(LOG_WARNING, &s->secrets, "%s: the server %s went away (%s); reconnecting in %lldms", s->label, s->server,
              red, (long long)wait);
    disconnect(s);
    s->reconnect_at = now + wait;
    if (s->env->loop) loop_timer_at(s->env->loop, &s->retry_timer, s->reconnect_at);
    return 0;
}

/* A connection-level failure: class 08 (connection exception), 57P (shutdown, crash), 53
 * (insufficient resources), or the connection itself is gone. */
static int is_outage(PGconn *conn, const char *state)
{
    if (PQstatus(conn) != CONNECTION_OK || !state) return 1;
    return !strncmp(state, "08", 2) || !strncmp(state, "57P", 3) || !strncmp(state, "53", 2);
}

/* Move the work on without blocking. 0, or -1 with err when the sink cannot go on. */
static int pump(struct pg_sink *s, int flushing, struct rn_err *err)
{
    for (;;) {
        if (s->reconnect_at) {
            if (rn_now_ms() < s->reconnect_at) return 0;
            s->reconnect_at = 0;
            struct rn_err cerr = {0};
            if (pg_connect(s, &cerr)) {
                if (went_away(s, cerr.msg, err)) return -1;
                continue;
            }
            log_write(LOG_INFO, &s->secrets, "%s: reconnected to %s", s->label, s->server);
            if (s->flight && send_current(s) && went_away(s, PQerrorMessage(s->conn), err)) return -1;
            continue;
        }
        if (s->sending) {
            if (PQstatus(s->conn) != CONNECTION_OK || !PQconsumeInput(s->conn)) {
                if (went_away(s, PQerrorMessage(s->conn), err)) return -1;
                continue;
            }
            int f = PQflush(s->conn);
            if (f < 0) {
                if (went_away(s, PQerrorMessage(s->conn), err)) return -1;
                continue;
            }
            watch(s, f == 1 ? LOOP_READ | LOOP_WRITE : LOOP_READ);
            if (PQisBusy(s->conn)) return 0;
            PGresult *r;
            int ok = 1, outage = 0;
            char state[8] = "", message[800] = "";
            while ((r = PQgetResult(s->conn))) {
                if (PQresultStatus(r) != PGRES_COMMAND_OK) {
                    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
                    const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
                    ok = 0;
                    outage = is_outage(s->conn, st);
                    snprintf(state, sizeof state, "%s", st ? st : "none");
                    snprintf(message, sizeof message, "%s", primary ? primary : PQresultErrorMessage(r));
                }
                PQclear(r);
            }
            s->sending = 0;
            if (!ok && outage) {
                if (went_away(s, message, err)) return -1;
                continue;
            }
            s->down_since = 0;
            s->attempt = 0;
            if (!s->single && !ok && s->flight > 1) {
                s->single = 1; /* find the culprits: row by row */
                s->next = 0;
            } else if (s->single || !ok) {
                if (!ok) add_reject(s, s->queue[s->head + s->next].seq, state, message);
                s->single = 1;
                s->next++;
            } else {
                s->next = s->flight;
            }
            if (s->next >= s->flight) batch_done(s);
            else if (send_current(s) && went_away(s, PQerrorMessage(s->conn), err)) return -1;
            continue;
        }
        /* nothing in the air: send the next batch when it is full, old enough, or flushed */
        size_t waiting = s->count - s->head;
        if (!waiting) return 0;
        int64_t now = rn_now_ms();
        if (!flushing && waiting < s->batch_rows && now < s->oldest_at + s->batch_ms) {
            if (s->env->loop && !loop_timer_armed(&s->batch_timer))
                loop_timer_at(s->env->loop, &s->batch_timer, s->oldest_at + s->batch_ms);
            return 0;
        }
        take_batch(s);
        s->oldest_at = now; /* the rows left behind wait at most another batch.time */
        if (send_current(s) && went_away(s, PQerrorMessage(s->conn), err)) return -1;
    }
}

/* ---- the sink ---- */

static void pg_close(void *self);

static void *pg_open(struct job_env *env, int opts, struct rn_err *err)
{
    lua_State *L = env->L;
    struct pg_sink *s = rn_calloc(1, sizeof *s);
    s->env = env;
    s->fd = -1;
    secret_set_init(&s->secrets);
    loop_timer_init(&s->batch_timer, NULL, NULL);
    loop_timer_init(&s->retry_timer, NULL, NULL);
    lua_getfield(L, opts, "conninfo");
    const char *conninfo = luajob_secret_value(L, -1);
    s->conninfo = rn_strdup(conninfo ? conninfo : "");
    lua_pop(L, 1);
    const char *table = opt_string(L, opts, "table", NULL);
    s->table = rn_strdup(table);
    char lbl[400];
    snprintf(lbl, sizeof lbl, "%s: sink.postgres (table %s)", options_where(L, opts), table);
    s->label = rn_strdup(lbl);

    /* The conninfo is secret however it was given (it may hold a password); messages name the
     * server by host, port and database instead. */
    if (*s->conninfo) secret_set_add(&s->secrets, s->conninfo);
    char *perr = NULL;
    PQconninfoOption *info = PQconninfoParse(s->conninfo, &perr);
    if (!info) {
        secret_fail(&s->secrets, err, "%s: conninfo does not parse: %s", s->label, perr ? perr : "out of memory");
        PQfreemem(perr);
        goto fail;
    }
    const char *host = NULL, *port = NULL, *db = NULL;
    for (PQconninfoOption *o = info; o->keyword; o++) {
        if (!o->val) continue;
        if (!strcmp(o->keyword, "password") && *o->val) secret_set_add(&s->secrets, o->val);
        else if (!strcmp(o->keyword, "host") || (!host && !strcmp(o->keyword, "hostaddr"))) host = o->val;
        else if (!strcmp(o->keyword, "port")) port = o->val;
        else if (!strcmp(o->keyword, "dbname")) db = o->val;
    }
    struct buf server = {0};
    buf_printf(&server, "%s:%s/%s", host ? host : "localhost", port ? port : "5432", db ? db : "(default database)");
    s->server = server.data;
    PQconninfoFree(info);

    s->keys = opt_string_list(L, opts, "key", &s->nkeys);
    s->create = opt_boolean(L, opts, "create", 0);
    s->batch_rows = 500;
    s->batch_ms = 1000;
    if (opt_push(L, opts, "batch")) {
        s->batch_rows = (size_t)opt_integer(L, lua_gettop(L), "rows", 500);
        s->batch_ms = opt_duration_ms(L, lua_gettop(L), "time", 1000);
        lua_pop(L, 1);
    }
    s->retry_for_ms = opt_duration_ms(L, opts, "retry_for", 120000);
    if (pg_connect(s, err)) goto fail;
    char *q = PQescapeIdentifier(s->conn, table, strlen(table));
    if (!q) { rn_fail(err, "%s: table: %s", s->label, PQerrorMessage(s->conn)); goto fail; }
    s->table_q = rn_strdup(q);
    PQfreemem(q);
    if (opt_push(L, opts, "columns")) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            int rc = add_column(s, lua_tostring(L, -2), lua_tostring(L, -1), err);
            lua_pop(L, 1);
            if (rc) { lua_pop(L, 2); goto fail; }
        }
        lua_pop(L, 1);
        for (size_t c = 0; c < s->ncols; c++) fieldorder_add(env, s->cols[c].name);
        if (columns_done(s, err)) goto fail;
    }
    return s;
fail:
    pg_close(s);
    return NULL;
}

static int pg_write(void *self, uint64_t seq, struct sink_record *record, struct rn_err *err)
{
    struct pg_sink *s = self;
    lua_State *L = s->env->L;
    size_t nfields;
    const struct sink_field *fields = sink_record_fields(record, &nfields, err);
    if (!fields) return SINK_REJECTED;
    if (!s->columns_ready) { /* the first record names the columns */
        for (size_t f = 0; f < nfields; f++)
            if (add_column(s, fields[f].name, type_of(L, fields[f].value), err)) return SINK_FAILED;
        if (columns_done(s, err)) return SINK_FAILED;
    }
    struct pg_row row = {seq, rn_calloc(s->ncols, sizeof(char *)), NULL};
    for (size_t f = 0; f < nfields; f++) {
        size_t c = 0;
        while (c < s->ncols && strcmp(fields[f].name, s->cols[c].name)) c++;
        if (c == s->ncols) { /* never dropped silently */
            rn_fail(err, "%s: field '%s' is not one of the columns", s->label, fields[f].name);
            row_free(s, &row);
            return SINK_REJECTED;
        }
        if (value_text(s, fields[f].value, fields[f].name, &row.values[c], err)) {
            row_free(s, &row);
            return SINK_REJECTED;
        }
    }
    struct buf key = {0};
    for (size_t c = 0; c < s->ncols; c++) {
        if (!s->cols[c].is_key) continue;
        const char *v = row.values[c];
        if (!v) {
            rn_fail(err, "%s: the key field '%s' is missing or null", s->label, s->cols[c].name);
            buf_free(&key);
            row_free(s, &row);
            return SINK_REJECTED;
        }
        buf_printf(&key, "%zu:%s", strlen(v), v);
    }
    row.key = key.data;
    if (s->count == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 256;
        s->queue = rn_realloc(s->queue, s->cap * sizeof *s->queue);
    }
    if (s->head == s->count) s->oldest_at = rn_now_ms();
    s->queue[s->count++] = row;
    return pump(s, 0, err) ? SINK_FAILED : SINK_ACCEPTED;
}

static int pg_poll(void *self, struct sink_report *report, struct rn_err *err)
{
    struct pg_sink *s = self;
    int rc = pump(s, 0, err);
    for (size_t i = 0; i < s->nrejects; i++) {
        sink_reject(report, s->rejects[i].seq, s->rejects[i].reason);
        free(s->rejects[i].reason);
    }
    s->nrejects = 0;
    if (s->down_since) { /* an outage, not a bad record (plugin.h): the pipeline pauses */
        sink_down(report, s->down_reason);
        s->reported_down = 1;
    } else if (s->reported_down) {
        sink_up(report);
        s->reported_down = 0;
    }
    if (s->have_ack) {
        sink_acknowledge(report, s->acked_through);
        s->have_ack = 0;
    }
    return rc;
}

/* Send every queued row and wait (blocking: the pipeline's flush waits) until all are answered. */
static int pg_flush(void *self, struct rn_err *err)
{
    struct pg_sink *s = self;
    for (;;) {
        if (pump(s, 1, err)) return -1;
        if (s->head == s->count && !s->sending && !s->reconnect_at) return 0;
        int ms = 100;
        if (s->reconnect_at) {
            int64_t left = s->reconnect_at - rn_now_ms();
            struct timespec ts = {left > 0 ? left / 1000 : 0, left > 0 ? (left % 1000) * 1000000L : 0};
            nanosleep(&ts, NULL);
            continue;
        }
        struct pollfd pfd = {s->fd, POLLIN | (PQflush(s->conn) == 1 ? POLLOUT : 0), 0};
        if (pfd.fd >= 0) poll(&pfd, 1, ms);
    }
}

static void pg_close(void *self)
{
    struct pg_sink *s = self;
    if (!s) return;
    if (s->env->loop) {
        loop_timer_cancel(s->env->loop, &s->batch_timer);
        loop_timer_cancel(s->env->loop, &s->retry_timer);
    }
    disconnect(s);
    for (size_t i = s->head; i < s->count; i++) row_free(s, &s->queue[i]);
    free(s->queue);
    for (size_t i = 0; i < s->nrejects; i++) free(s->rejects[i].reason);
    free(s->rejects);
    for (size_t c = 0; c < s->ncols; c++) {
        free(s->cols[c].name);
        free(s->cols[c].quoted);
        free(s->cols[c].type);
    }
    free(s->cols);
    for (size_t k = 0; k < s->nkeys; k++) free(s->keys[k]);
    free(s->keys);
    free(s->table);
    free(s->table_q);
    free(s->label);
    free(s->server);
    free(s->conninfo);
    buf_free(&s->sql);
    secret_set_free(&s->secrets);
    free(s);
}

const struct sink_ops postgres_sink = {
    .version = SINK_INTERFACE_VERSION,
    .name = "postgres",
    .summary = "PostgreSQL table: batched multi-row upserts (INSERT ... ON CONFLICT (key) DO UPDATE), acknowledged "
               "once committed",
    .options = pg_options,
    .capabilities = SINK_ASYNC_ACKS,
    .open = pg_open,
    .write = pg_write,
    .poll = pg_poll,
    .flush = pg_flush,
    .close = pg_close,
};
