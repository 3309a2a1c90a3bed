/* sink.c: sink.elasticsearch, every record as one document through Elasticsearch's _bulk API.
 *
 * write() appends the action line and the record's JSON line (as the pipeline encoded it) to
 * the batch being filled; a batch is sent when it holds batch.count documents or batch.bytes,
 * or batch.time after its first document, with up to in_flight bulk requests at once on the
 * sink's own core/http client. poll() acknowledges through the oldest document not yet
 * answered. Per item: 2xx is written; 409 on create is written already (a replay); 429 and 5xx
 * are sent again with backoff; 401/403 stop the job; any other status (400: mapping, parse)
 * rejects the record to the dead letters with the item's error. A whole request answered 429
 * or 5xx, or a connection error, is an outage, not a bad record (plugin.h): the documents are
 * kept and sent again with backoff (at most OUTAGE_BACKOFF_MS apart, so the job resumes soon
 * after the cluster does), poll() says sink_down with the URL and the cause, and the pipeline
 * holds the source back until a bulk is answered (sink_up) or limits.outage stops the job. Any
 * other status stops the job; the source commits nothing past an unanswered document, but for
 * 413 (the bulk over the cluster's http.max_content_length): the bulk is split in halves and
 * sent again, and a document that alone is too large is rejected with its size. */
#include <errno.h>
#include <lauxlib.h>
#include <stdarg.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/http.h"
#include "core/loop.h"
#include "core/secret.h"
#include "core/tz.h"
#include "engine/plugin.h"
#include "lua/job.h"
#include "lua/transport.h"
#include "sinks/ack_ring.h"
#include "sinks/elasticsearch/bulk.h"

#define DEFAULT_COUNT 1000
#define DEFAULT_BYTES (5 * 1024 * 1024)
#define DEFAULT_TIME_MS 1000
#define OUTAGE_BACKOFF_MS 2000 /* the longest wait between sends while the cluster is down */

struct doc { /* a document in a batch: its ticket and its two lines in the body */
    uint64_t ticket;
    size_t offset, length;
};

enum { BATCH_IDLE, BATCH_FILLING, BATCH_READY, BATCH_RUNNING };

struct batch {
    struct http_request request; /* its body is the NDJSON */
    struct doc *docs;
    size_t count, cap;
    int state, attempts;
    int64_t opened_ms, due_ms;
    uint64_t serial; /* the order batches were closed in: sent oldest first */
};

struct es_sink {
    struct job_env *env;
    char *pattern, *date_field, *id_field;
    struct http_transport transport; /* tls and proxy */
    int dated, millis, create;
    const char *action;
    struct tz *tz;
    int64_t max_count, max_bytes, max_time_ms, backoff_ms, max_backoff_ms, timeout_ms;
    int in_flight, retries, running;
    struct buf url, name, id, scratch;
    struct curl_slist *headers;
    struct secret_set secrets;
    struct http *http;
    struct loop *loop;         /* the job's loop: wakes the pipeline for answers and due batches */
    struct loop_timer wake;
    struct batch **batches;
    size_t nbatches;
    struct batch *filling;
    uint64_t serial, random;
    struct ack_ring acks;      /* documents between write() and the pipeline learning their fate */
    int failed;
    struct rn_err fail;
    int64_t down_since_ms;  /* a whole request failed (429, 5xx, no answer) since; 0: up */
    char down_reason[300];  /* the last such failure: "http://host:9200: HTTP 503: ..." */
};

static int check_url(lua_State *L, int idx, struct rn_err *err)
{
    const char *url = lua_tostring(L, idx);
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
        return rn_fail(err, "\"%.200s\" must start with http:// or https://", url);
    for (const char *p = url; *p; p++)
        if ((unsigned char)*p <= ' ' || strchr("?#", *p)) return rn_fail(err, "holds a space, control character, ? or #");
    return 0;
}

static int check_index(lua_State *L, int idx, struct rn_err *err) { return es_index_pattern_check(lua_tostring(L, idx), err); }

static const struct option_spec es_sink_options[] = {
    {"url", OPT_STRING, 1, NULL, .help = "the cluster: http(s)://host:port, with a path prefix if a proxy needs one", .check = check_url},
    {"index", OPT_STRING, 1, NULL,
     .help = "the index; may take the date of date_field: \"product_ratings-%Y.%m.%d\" (%Y %m %d %H %j, in time_zone)",
     .check = check_index},
    {"date_field", OPT_STRING, 0, NULL,
     .help = "the field whose date names a dated index: a number (see date_unit) or an ISO 8601 string"},
    {"date_unit", OPT_ENUM, 0, "s", .help = "a numeric date_field counts seconds or milliseconds since 1970",
     .choices = OPT_CHOICES("s", "ms")},
    {"time_zone", OPT_STRING, 0, "UTC", .help = "the zone whose calendar dates a dated index (a tz database name)"},
    {"id", OPT_STRING, 0, NULL,
     .help = "the field whose value is the document _id, so replays overwrite instead of duplicating (none: "
             "Elasticsearch makes ids)"},
    {"action", OPT_ENUM, 0, "index",
     .help = "index (create or replace) or create (new documents only: an existing _id, 409, counts as written)",
     .choices = OPT_CHOICES("index", "create")},
    {"auth", OPT_NESTED, 0, NULL, .help = "credentials: { user, password } (Basic) or { api_key } (ApiKey)",
     .fields = OPT_FIELDS({"user", OPT_STRING, 0, NULL, .help = "Basic auth user"},
                          {"password", OPT_STRING, 0, NULL, .help = "Basic auth password", .secret = 1},
                          {"api_key", OPT_STRING, 0, NULL, .help = "the encoded API key (base64 of id:key)", .secret = 1})},
    HTTP_TRANSPORT_OPTIONS,
    {"batch", OPT_NESTED, 0, NULL, .help = "when a bulk request is sent: whichever limit comes first",
     .fields = OPT_FIELDS({"count", OPT_INTEGER, 0, "1000", .help = "documents", OPT_RANGE(1, 100000)},
                          {"bytes", OPT_SIZE, 0, "5MB", .help = "body size", OPT_RANGE(1024, 1024.0 * 1024 * 1024)},
                          {"time", OPT_DURATION, 0, "1s", .help = "after the first document", OPT_RANGE(1, 3600000)})},
    {"in_flight", OPT_INTEGER, 0, "4", .help = "bulk requests in flight at once", OPT_RANGE(1, 64)},
    {"retries", OPT_INTEGER, 0, "8",
     .help = "sends again of a document answered 429 or 5xx (a whole request answered 429, 5xx or not at all is an "
             "outage: it is sent again until limits.outage)",
     OPT_RANGE(0, 100)},
    {"backoff", OPT_DURATION, 0, "200ms", .help = "the first wait before a send again; doubles each time", OPT_RANGE(1, 600000)},
    {"max_backoff", OPT_DURATION, 0, "30s", .help = "the longest wait before a send again", OPT_RANGE(1, 3600000)},
    {"timeout", OPT_DURATION, 0, "60s", .help = "one bulk request, answer included", OPT_RANGE(1, 3600000)},
    {NULL},
};

static int sink_failed(struct es_sink *s, struct rn_err *err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int sink_failed(struct es_sink *s, struct rn_err *err, const char *fmt, ...)
{
    if (!s->failed) {
        va_list ap;
        va_start(ap, fmt);
        secret_vfail(&s->secrets, &s->fail, fmt, ap);
        va_end(ap);
        s->failed = 1;
    }
    if (err) *err = s->fail;
    return -1;
}

/* ---- batches ---- */

static struct batch *batch_get(struct es_sink *s)
{
    for (size_t i = 0; i < s->nbatches; i++)
        if (s->batches[i]->state == BATCH_IDLE) return s->batches[i];
    struct batch *b = rn_calloc(1, sizeof *b);
    http_request_init(&b->request);
    b->request.user = b;
    s->batches = rn_realloc(s->batches, (s->nbatches + 1) * sizeof *s->batches);
    s->batches[s->nbatches++] = b;
    return b;
}

static void batch_close(struct es_sink *s, int64_t now)
{
    struct batch *b = s->filling;
    if (!b) return;
    s->filling = NULL;
    b->state = BATCH_READY;
    b->due_ms = now;
    b->serial = s->serial++;
}

static int64_t backoff(struct es_sink *s, int attempts)
{
    int64_t most = s->max_backoff_ms;
    if (s->down_since_ms && most > OUTAGE_BACKOFF_MS) most = OUTAGE_BACKOFF_MS;
    int64_t wait = s->backoff_ms;
    for (int i = 1; i < attempts && wait < most; i++) wait *= 2;
    if (wait > most) wait = most;
    s->random ^= s->random << 13, s->random ^= s->random >> 7, s->random ^= s->random << 17;
    return wait / 2 + (int64_t)(s->random % (uint64_t)(wait / 2 + 1)); /* jitter: a half to the whole */
}

/* Keep only the documents with keep[i] in b, to be sent again after a backoff. */
static void batch_retry(struct es_sink *s, struct batch *b, const unsigned char *keep, int64_t now)
{
    buf_clear(&s->scratch);
    size_t kept = 0;
    for (size_t i = 0; i < b->count; i++) {
        if (keep && !keep[i]) continue;
        struct doc d = b->docs[i];
        buf_put(&s->scratch, b->request.body.data + d.offset, d.length);
        d.offset = s->scratch.len - d.length;
        b->docs[kept++] = d;
    }
    struct buf swap = b->request.body;
    b->request.body = s->scratch;
    s->scratch = swap;
    b->count = kept;
    b->state = BATCH_READY;
    b->due_ms = now + backoff(s, b->attempts);
}

/* A bulk answered 413 (over the cluster's http.max_content_length): its second half becomes a
 * batch of its own, and both go again at once, oldest first (the halves keep b's serial). */
static void batch_split(struct es_sink *s, struct batch *b, int64_t now)
{
    size_t half = b->count / 2;
    struct batch *c = batch_get(s); /* b stays valid: batches are allocated one by one */
    size_t from = b->docs[half].offset, end = b->request.body.len;
    if (c->cap < b->count - half) {
        c->cap = b->count - half;
        c->docs = rn_realloc(c->docs, c->cap * sizeof *c->docs);
    }
    buf_clear(&c->request.body);
    buf_put(&c->request.body, b->request.body.data + from, end - from);
    for (size_t i = half; i < b->count; i++) {
        c->docs[i - half] = b->docs[i];
        c->docs[i - half].offset -= from;
    }
    c->count = b->count - half;
    b->count = half;
    b->request.body.len = from;
    b->request.body.data[from] = '\0';
    for (struct batch *x = b; x; x = x == b ? c : NULL) {
        x->state = BATCH_READY;
        x->due_ms = now;
        x->attempts = 0;
        x->serial = b->serial;
    }
}

static void batch_done(struct batch *b)
{
    b->state = BATCH_IDLE;
    b->count = 0;
    b->attempts = 0;
    buf_clear(&b->request.body);
}

/* A whole request failed in a way that says nothing of its documents (429, 5xx, no answer):
 * the cluster is down until a request is answered; the batch goes again, for as long as the
 * pipeline's limits.outage allows. */
static void request_retry(struct es_sink *s, struct batch *b, const char *why, int64_t now)
{
    if (!s->down_since_ms) s->down_since_ms = now;
    secret_redact_text(&s->secrets, why, s->down_reason, sizeof s->down_reason);
    batch_retry(s, b, NULL, now);
}

static void answer_items(struct es_sink *s, struct batch *b, int64_t now)
{
    size_t count = b->count; /* b changes below: a retry keeps only some documents */
    struct es_item *items = rn_calloc(count, sizeof *items);
    unsigned char *keep = rn_calloc(b->count, 1);
    struct rn_err e;
    size_t again = 0;
    int again_status = 0;
    char *again_error = NULL;
    if (es_bulk_answer(b->request.response.data, b->request.response.len, b->count, items, &e)) {
        sink_failed(s, NULL, "POST %s: HTTP 200 but %s", s->url.data, e.msg);
        goto done;
    }
    for (size_t i = 0; i < b->count; i++) {
        int st = items[i].status;
        const char *error = items[i].error ? items[i].error : "(no error given)";
        if ((st >= 200 && st < 300) || (st == 409 && s->create)) {
            ack_ring_settle(&s->acks, b->docs[i].ticket, ACK_DONE, NULL);
        } else if (st == 429 || st >= 500) {
            keep[i] = 1;
            if (!again++) {
                again_status = st;
                again_error = rn_strdup(error);
            }
        } else if (st == 401 || st == 403) {
            sink_failed(s, NULL, "POST %s: a document was refused with HTTP %d: %s", s->url.data, st, error);
            goto done;
        } else {
            struct buf why;
            buf_init(&why);
            buf_printf(&why, "Elasticsearch refused the document: HTTP %d: %s", st, error);
            ack_ring_settle(&s->acks, b->docs[i].ticket, ACK_REJECTED, rn_strdup(why.data));
            buf_free(&why);
        }
    }
    if (!again) {
        batch_done(b);
    } else if (b->attempts > s->retries) {
        sink_failed(s, NULL, "POST %s: %zu documents still answered HTTP %d (%s) after %d attempts; stopping without "
                    "committing past them", s->url.data, again, again_status, again_error, b->attempts);
    } else {
        batch_retry(s, b, keep, now);
    }
done:
    for (size_t i = 0; i < count; i++) free(items[i].error);
    free(items);
    free(keep);
    free(again_error);
}

static void answered(struct es_sink *s, struct batch *b, int64_t now)
{
    struct http_request *r = &b->request;
    s->running--;
    if (r->no_descriptor) { /* it never reached the server: go again, uncounted */
        b->attempts--;
        b->state = BATCH_READY;
        b->due_ms = now + 50;
        return;
    }
    struct buf why;
    buf_init(&why);
    if (r->result != CURLE_OK && !r->too_large) {
        buf_printf(&why, "%s: %s (%s)", s->url.data, http_result_cause(r->result),
                   r->error[0] ? r->error : curl_easy_strerror(r->result));
        request_retry(s, b, why.data, now);
    } else if (r->status == 429 || r->status >= 500) {
        buf_printf(&why, "%s: HTTP %ld: ", s->url.data, r->status);
        es_request_error(r->response.data, r->response.len, &why);
        request_retry(s, b, why.data, now);
    } else if (r->status == 200) {
        s->down_since_ms = 0; /* the cluster answers: up */
        answer_items(s, b, now);
    } else {
        s->down_since_ms = 0;
        buf_printf(&why, "HTTP %ld: ", r->status);
        es_request_error(r->response.data, r->response.len, &why);
        if (r->status == 413 && b->count > 1) {
            batch_split(s, b, now); /* too large for the cluster: halves, until each fits or is one document */
        } else if (r->status == 413) {
            buf_clear(&why);
            buf_printf(&why, "Elasticsearch refused the document: HTTP 413: the document alone, a bulk request of %zu "
                       "bytes with its action line, is over the cluster's http.max_content_length (100mb unless the "
                       "cluster sets it)", b->docs[0].length);
            ack_ring_settle(&s->acks, b->docs[0].ticket, ACK_REJECTED, rn_strdup(why.data));
            batch_done(b);
        } else {
            sink_failed(s, NULL, "POST %s: %s", s->url.data, why.data);
        }
    }
    buf_free(&why);
}

/* The loop's wake-ups: the client's sockets (watched) and the nearest of curl's timer, the
 * filling batch's time limit and a batch's retry. The pipeline polls every sink when it wakes,
 * so the callbacks need do nothing; without them acknowledgements would wait for another
 * wake-up (the checkpoint timer). */
static void on_wake_fd(void *user, int fd, unsigned events)
{
    (void)user;
    (void)fd;
    (void)events;
}

static void on_wake_timer(void *user) { (void)user; }

static void arm_wake(struct es_sink *s, int64_t now)
{
    if (!s->loop) return;
    int64_t due = s->running > 0 ? http_due_ms(s->http) : -1;
    if (s->filling) {
        int64_t close_at = s->filling->opened_ms + s->max_time_ms;
        if (due < 0 || close_at < due) due = close_at;
    }
    for (size_t i = 0; i < s->nbatches; i++) {
        struct batch *b = s->batches[i];
        if (b->state == BATCH_READY && s->running < s->in_flight && (due < 0 || b->due_ms < due)) due = b->due_ms;
    }
    if (due < 0) loop_timer_cancel(s->loop, &s->wake);
    else loop_timer_at(s->loop, &s->wake, due > now ? due : now);
}

/* Serve the client: answers in, due batches out (oldest first, up to in_flight). */
static int pump(struct es_sink *s, int wait_ms, struct rn_err *err)
{
    int64_t now = rn_now_ms();
    if (http_wait(s->http, wait_ms, &now, err) < 0 || http_run_timer(s->http, now, err) < 0)
        return sink_failed(s, err, "%s", err->msg);
    struct http_request *r;
    while ((r = http_next_done(s->http))) answered(s, r->user, now);
    if (s->failed) return sink_failed(s, err, "%s", s->fail.msg);
    if (s->filling && now - s->filling->opened_ms >= s->max_time_ms) batch_close(s, now);
    while (s->running < s->in_flight) {
        struct batch *next = NULL;
        for (size_t i = 0; i < s->nbatches; i++) {
            struct batch *b = s->batches[i];
            if (b->state == BATCH_READY && b->due_ms <= now && (!next || b->serial < next->serial)) next = b;
        }
        if (!next) break;
        next->request.method = "POST";
        buf_clear(&next->request.url);
        buf_printf(&next->request.url, "%s/_bulk", s->url.data);
        next->request.headers = s->headers;
        next->request.timeout_ms = s->timeout_ms;
        if (http_start(s->http, &next->request, now, err)) return sink_failed(s, err, "POST %s: %s", s->url.data, err->msg);
        next->state = BATCH_RUNNING;
        next->attempts++;
        s->running++;
    }
    arm_wake(s, now);
    return 0;
}

/* ---- the plugin ---- */

/* The record's _id into s->id; a reason in err when it has none to give. */
static int record_id(struct es_sink *s, lua_State *L, int rec, struct rn_err *err)
{
    buf_clear(&s->id);
    lua_getfield(L, rec, s->id_field);
    int t = lua_type(L, -1), rc = 0;
    if (t == LUA_TNUMBER && lua_isinteger(L, -1)) {
        buf_printf(&s->id, "%lld", (long long)lua_tointeger(L, -1));
    } else if (t == LUA_TSTRING || t == LUA_TNUMBER) {
        size_t n;
        const char *v = lua_tolstring(L, -1, &n);
        buf_put(&s->id, v, n);
        if (n == 0) rc = rn_fail(err, "id field '%s' is empty", s->id_field);
        else if (n > 512) rc = rn_fail(err, "id field '%s' is %zu bytes; Elasticsearch's _id takes 512 at most", s->id_field, n);
    } else {
        rc = rn_fail(err, "id field '%s' is %s: it must be a string or a number", s->id_field,
                     t == LUA_TNIL ? "missing" : lua_typename(L, t));
    }
    lua_pop(L, 1);
    return rc;
}

static int es_write(void *self, uint64_t seq, struct sink_record *record, struct rn_err *err)
{
    struct es_sink *s = self;
    lua_State *L = s->env->L;
    if (s->failed) return sink_failed(s, err, "%s", s->fail.msg);
    ack_ring_given(&s->acks, seq);
    size_t len;
    const char *json = sink_record_json(record, &len, err);
    if (!json) return SINK_REJECTED;
    int rec = sink_record_table(record);
    if (s->id_field && record_id(s, L, rec, err)) return SINK_REJECTED;
    const char *index = s->pattern;
    size_t index_len = strlen(s->pattern);
    if (s->dated) {
        int64_t when;
        lua_getfield(L, rec, s->date_field);
        int rc = es_date_value(L, -1, s->millis, &when, err);
        lua_pop(L, 1);
        if (rc) return rn_wrap(err, "date field '%s' of index %s", s->date_field, s->pattern), SINK_REJECTED;
        buf_clear(&s->name);
        es_index_format(s->pattern, when, tz_offset_at(s->tz, when), &s->name);
        index = s->name.data;
        index_len = s->name.len;
    }
    int64_t now = rn_now_ms();
    size_t adding = len + index_len + s->id.len + 64;
    if (s->filling && s->filling->request.body.len + adding > (size_t)s->max_bytes) batch_close(s, now);
    if (!s->filling) {
        s->filling = batch_get(s);
        s->filling->state = BATCH_FILLING;
        s->filling->opened_ms = now;
    }
    struct batch *b = s->filling;
    if (b->count == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 256;
        b->docs = rn_realloc(b->docs, b->cap * sizeof *b->docs);
    }
    struct buf *body = &b->request.body;
    size_t start = body->len;
    es_action_line(body, s->action, index, index_len, s->id_field ? s->id.data : NULL, s->id.len);
    buf_put(body, json, len);
    buf_putc(body, '\n');
    b->docs[b->count++] = (struct doc){ack_ring_push(&s->acks, seq), start, body->len - start};
    if ((int64_t)b->count >= s->max_count || (int64_t)body->len >= s->max_bytes) batch_close(s, now);
    if (pump(s, 0, err)) return SINK_FAILED;
    return SINK_ACCEPTED;
}

static int es_poll(void *self, struct sink_report *report, struct rn_err *err)
{
    struct es_sink *s = self;
    if (pump(s, 0, err)) return -1;
    ack_ring_report(&s->acks, report);
    if (s->down_since_ms) sink_down(report, s->down_reason); /* the pipeline holds the source back */
    else sink_up(report);
    return 0;
}

static int es_flush(void *self, struct rn_err *err)
{
    struct es_sink *s = self;
    batch_close(s, rn_now_ms());
    for (;;) {
        if (pump(s, 0, err)) return -1;
        int64_t now = rn_now_ms(), due = -1;
        for (size_t i = 0; i < s->nbatches; i++) {
            struct batch *b = s->batches[i];
            if (b->state == BATCH_READY && (due < 0 || b->due_ms < due)) due = b->due_ms;
        }
        if (s->running == 0 && due < 0) return 0;
        /* the cluster is down: give up at once, not s->failed, so poll() says sink_down and the
         * pipeline waits the outage out in its loop (limits.outage), then flushes again */
        if (s->down_since_ms) return rn_fail(err, "cannot flush while the cluster is down (%s)", s->down_reason);
        int64_t wait = 100;
        if (due >= 0 && due - now < wait) wait = due > now ? due - now : 0;
        if (s->running > 0 && http_due_ms(s->http) >= 0 && http_due_ms(s->http) - now < wait)
            wait = http_due_ms(s->http) > now ? http_due_ms(s->http) - now : 0;
        if (pump(s, (int)wait, err)) return -1;
    }
}

static void es_close(void *self)
{
    struct es_sink *s = self;
    if (!s) return;
    for (size_t i = 0; i < s->nbatches; i++) {
        struct batch *b = s->batches[i];
        if (s->http) http_cancel(s->http, &b->request);
        http_request_free(&b->request);
        free(b->docs);
        free(b);
    }
    free(s->batches);
    if (s->loop) {
        loop_timer_cancel(s->loop, &s->wake);
        loop_unwatch(s->loop, http_fd(s->http));
    }
    http_free(s->http);
    ack_ring_free(&s->acks);
    for (struct curl_slist *l = s->headers; l; l = l->next) memset(l->data, 0, strlen(l->data)); /* may hold a key */
    curl_slist_free_all(s->headers);
    secret_set_free(&s->secrets);
    if (s->tz) tz_free(s->tz);
    free(s->pattern);
    free(s->date_field);
    free(s->id_field);
    http_transport_free(&s->transport);
    buf_free(&s->url);
    buf_free(&s->name);
    buf_free(&s->id);
    buf_free(&s->scratch);
    free(s);
}

/* auth: the Authorization header line, into s->headers; its values join the secrets. */
static int open_auth(struct es_sink *s, lua_State *L, int opts, struct rn_err *err)
{
    if (!opt_push(L, opts, "auth")) return 0;
    int t = lua_gettop(L), rc = 0;
    const char *user = opt_string(L, t, "user", NULL), *password = NULL, *key = NULL;
    if (opt_push(L, t, "password")) password = luajob_secret_value(L, -1), lua_pop(L, 1);
    if (opt_push(L, t, "api_key")) key = luajob_secret_value(L, -1), lua_pop(L, 1);
    struct buf line, plain;
    buf_init(&line);
    buf_init(&plain);
    if (key && (user || password)) {
        rc = rn_fail(err, "auth: give user and password, or api_key, not both");
    } else if (key) {
        if (!*key) rc = rn_fail(err, "auth.api_key is empty");
        secret_set_add(&s->secrets, key);
        buf_printf(&line, "Authorization: ApiKey %s", key);
    } else if (user && password) {
        if (strchr(user, ':')) rc = rn_fail(err, "auth.user must not hold ':' (Basic auth separates user and password with it)");
        buf_printf(&plain, "%s:%s", user, password);
        buf_reserve(&line, 32 + 4 * (plain.len / 3 + 1));
        buf_puts(&line, "Authorization: Basic ");
        line.len += (size_t)EVP_EncodeBlock((unsigned char *)line.data + line.len, (const unsigned char *)plain.data, (int)plain.len);
        line.data[line.len] = '\0';
        secret_set_add(&s->secrets, password);
        secret_set_add(&s->secrets, line.data + strlen("Authorization: Basic "));
    } else {
        rc = rn_fail(err, "auth: give user and password, or api_key");
    }
    for (const char *p = line.data; rc == 0 && p && *p; p++)
        if ((unsigned char)*p < ' ') rc = rn_fail(err, "auth: holds a line break or control character");
    if (rc == 0) s->headers = curl_slist_append(s->headers, line.data);
    if (line.data) memset(line.data, 0, line.len);
    if (plain.data) memset(plain.data, 0, plain.len);
    buf_free(&line);
    buf_free(&plain);
    lua_pop(L, 1);
    return rc;
}

static void *es_open(struct job_env *env, int opts, struct rn_err *err)
{
    lua_State *L = env->L;
    struct es_sink *s = rn_calloc(1, sizeof *s);
    s->env = env;
    buf_init(&s->url);
    buf_init(&s->name);
    buf_init(&s->id);
    buf_init(&s->scratch);
    secret_set_init(&s->secrets);
    http_transport_init(&s->transport);
    s->random = (uint64_t)rn_now_ms() | 1;
    const char *url = opt_string(L, opts, "url", "");
    size_t n = strlen(url);
    while (n > 8 && url[n - 1] == '/') n--;
    buf_put(&s->url, url, n);
    s->pattern = rn_strdup(opt_string(L, opts, "index", ""));
    s->dated = es_index_pattern_dated(s->pattern);
    const char *date_field = opt_string(L, opts, "date_field", NULL);
    if (s->dated && !date_field) {
        rn_fail(err, "index: \"%s\" takes a date: name the field that holds it with date_field", s->pattern);
        goto fail;
    }
    if (date_field && !s->dated) {
        rn_fail(err, "date_field: index \"%s\" takes no date (%%Y %%m %%d %%H %%j)", s->pattern);
        goto fail;
    }
    if (date_field) s->date_field = rn_strdup(date_field);
    s->millis = strcmp(opt_string(L, opts, "date_unit", "s"), "ms") == 0;
    if (!(s->tz = tz_load(opt_string(L, opts, "time_zone", "UTC"), err))) {
        rn_wrap(err, "time_zone");
        goto fail;
    }
    const char *id = opt_string(L, opts, "id", NULL);
    if (id) s->id_field = rn_strdup(id);
    s->action = opt_string(L, opts, "action", "index");
    s->create = strcmp(s->action, "create") == 0;
    s->action = s->create ? "create" : "index"; /* static: the table's string may not outlive open */
    if (transport_read(L, opts, "sink.elasticsearch", &s->transport, &s->secrets, err)) goto fail;
    s->max_count = DEFAULT_COUNT;
    s->max_bytes = DEFAULT_BYTES;
    s->max_time_ms = DEFAULT_TIME_MS;
    if (opt_push(L, opts, "batch")) {
        int t = lua_gettop(L);
        s->max_count = opt_integer(L, t, "count", DEFAULT_COUNT);
        s->max_bytes = opt_size(L, t, "bytes", DEFAULT_BYTES);
        s->max_time_ms = opt_duration_ms(L, t, "time", DEFAULT_TIME_MS);
        lua_pop(L, 1);
    }
    s->in_flight = (int)opt_integer(L, opts, "in_flight", 4);
    s->retries = (int)opt_integer(L, opts, "retries", 8);
    s->backoff_ms = opt_duration_ms(L, opts, "backoff", 200);
    s->max_backoff_ms = opt_duration_ms(L, opts, "max_backoff", 30000);
    s->timeout_ms = opt_duration_ms(L, opts, "timeout", 60000);
    s->headers = curl_slist_append(NULL, "Content-Type: application/x-ndjson");
    s->headers = curl_slist_append(s->headers, "Expect:"); /* no 100-continue round trip per request */
    if (open_auth(s, L, opts, err)) goto fail;
    if (!(s->http = http_new(s->in_flight, err))) goto fail;
    http_set_transport(s->http, &s->transport);
    if (env->loop) {
        loop_timer_init(&s->wake, on_wake_timer, s);
        if (loop_watch(env->loop, http_fd(s->http), LOOP_READ, on_wake_fd, s, err)) goto fail;
        s->loop = env->loop;
    }
    return s;
fail:
    es_close(s);
    return NULL;
}

const struct sink_ops elasticsearch_sink = {
    .version = SINK_INTERFACE_VERSION,
    .name = "elasticsearch",
    .summary = "documents into an Elasticsearch index through _bulk (acknowledged by the bulk answer)",
    .options = es_sink_options,
    .capabilities = SINK_WANTS_JSON | SINK_ASYNC_ACKS,
    .open = es_open,
    .write = es_write,
    .poll = es_poll,
    .flush = es_flush,
    .close = es_close,
};
