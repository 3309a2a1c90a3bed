/* batch.c: the provider's batch API for bounded jobs (`batch = true`): records are answered by
 * batches at the batch price instead of one live request each. The provider's hooks build the
 * requests and read the answers (provider.h, provider_batch_ops); this file does the rest.
 *
 * A record's call is built as for a live request, then written as one line to the spool of the
 * open chunk (STATE_DIR/batch/JOB/N.spool.jsonl). The chunk is sealed when it is full
 * (max_requests, max_bytes) or has not grown for BATCH_LINGER_MS (the source ended, or the
 * pipeline's window is full), and submitted; the batch is then polled every `poll` until it
 * ends, its results are downloaded to N.results-P.jsonl and read a slice at a time, and each
 * line goes to its record by custom_id, through classify, parse and the answer checks like a
 * live answer. A line that failed, expired or did not validate gets its retry or correction
 * round live (slots of engine.c), or is dead-lettered when retry_live is false.
 *
 * The one thing to know: a line's custom_id is where its record came from plus a hash of its
 * request ("f0-123456-9f2c1a4b5c6d"), and the checkpoint keeps each batch with the ranges of
 * source positions it holds. A resumed job reads its records again; one whose position lies in
 * a batch's range joins that batch instead of a new one, so nothing is paid twice, and a record
 * whose request changed since (the prompt was edited) finds no line with its id and goes live. */
#include "models/model_int.h"
#include "core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BATCH_LINGER_MS 200                /* a chunk that stopped growing this long is sealed */
#define BATCH_LINES_PER_TICK 2000          /* result lines read per model_poll, so the loop stays live */
#define BATCH_TRANSFER_TIMEOUT_MS 600000   /* an upload or download of up to max_bytes */
#define BATCH_ANSWER_MAX (16u << 20)       /* the largest answer to a submit or a poll */
#define BATCH_RESULTS_MAX ((size_t)4 << 30)
#define BATCH_ATTEMPTS 10                  /* a submit or fetch failing this often fails its batch */
#define EXCERPT_MAX 300

enum stage {
    STAGE_SPOOLING,   /* the open chunk: lines are added */
    STAGE_SUBMITTING, /* submit's requests */
    STAGE_RUNNING,    /* polled until it ends */
    STAGE_FETCHING,   /* its results downloaded, part after part */
    STAGE_READING,    /* its results read, a slice per tick */
    STAGE_SETTLED,    /* every line was read; records that join later look theirs up */
    STAGE_FAILED,     /* no answers (refused, or could not be made or fetched): its records go on without */
};

static const char *const stage_words[] = {"spooling", "submitting", "running", "fetching results",
                                          "reading results", "settled", "failed"};

enum built { BUILT_NONE, BUILT_SUBMIT, BUILT_POLL, BUILT_FETCH };

/* One record a batch holds. */
struct entry {
    uint64_t tag;
    int record_ref;
    int done;
    uint8_t key[CACHE_KEY_SIZE];
    char custom_id[48];
};

/* Positions of one file or partition whose records a batch holds, first..last. */
struct range {
    int32_t partition, file;
    int64_t first, last;
};

/* A result line no record held when it was read (a resumed job reads them again later). */
struct unmatched {
    char *custom_id;
    int part;
    int64_t offset;
    size_t len;
};

/* Strings by name, for custom_ids: open addressing over item indexes (+1, 0 is empty). */
struct index {
    uint32_t *slots;
    size_t cap, used;
};

struct batch {
    int number;
    int restored;              /* from the checkpoint: its records join it as they are read again */
    enum stage stage;
    struct provider_batch pb;
    struct http_request req;
    enum built built;          /* what req holds */
    size_t built_headers;      /* its header lines before authorize's */
    int attempts;              /* of the request in req */
    int64_t due_ms;            /* when to send req; INT64_MAX: nothing to send (a restored batch before its records) */
    char *spool_path;
    FILE *spool;
    size_t lines;
    int64_t bytes, grew_ms;
    struct range *ranges;
    size_t range_count;
    struct entry *entries;
    size_t entry_count, entry_cap, waiting, resolved; /* entries below resolved were looked at after settling */
    struct index by_id;
    int part;                  /* fetching: the part asked for; reading: the part being read */
    char *results[2];          /* the downloaded parts */
    FILE *reader;
    char *line;
    size_t line_cap;
    struct unmatched *unmatched;
    size_t unmatched_count, unmatched_cap;
    struct index by_unmatched;
    struct buf why;            /* failed: why, for its records' reasons */
};

struct batch_retry {
    uint64_t tag;
    int record_ref;
    char *answer, *why;        /* the correction round: the rejected answer and why; NULL: a fresh call */
    struct batch_retry *next;
};

/* ---- the custom_id index ---- */

static uint64_t hash_text(const char *s, size_t n)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

typedef const char *(*key_of_fn)(const struct batch *b, uint32_t item);
static const char *entry_key(const struct batch *b, uint32_t i) { return b->entries[i].custom_id; }
static const char *unmatched_key(const struct batch *b, uint32_t i) { return b->unmatched[i].custom_id; }

/* The item whose key is name, or -1. */
static long index_find(const struct batch *b, const struct index *x, key_of_fn key_of, const char *name, size_t len)
{
    if (!x->cap) return -1;
    for (size_t i = hash_text(name, len) & (x->cap - 1);; i = (i + 1) & (x->cap - 1)) {
        uint32_t item = x->slots[i];
        if (!item) return -1;
        const char *key = key_of(b, item - 1);
        if (strlen(key) == len && memcmp(key, name, len) == 0) return (long)(item - 1);
    }
}

static void index_put(struct batch *b, struct index *x, key_of_fn key_of, uint32_t item)
{
    if ((x->used + 1) * 2 > x->cap) { /* grow, and put every item back */
        struct index old = *x;
        x->cap = old.cap ? old.cap * 2 : 64;
        x->slots = rn_calloc(x->cap, sizeof *x->slots);
        x->used = 0;
        for (size_t i = 0; i < old.cap; i++)
            if (old.slots[i]) index_put(b, x, key_of, old.slots[i] - 1);
        free(old.slots);
    }
    const char *key = key_of(b, item);
    size_t i = hash_text(key, strlen(key)) & (x->cap - 1);
    while (x->slots[i]) i = (i + 1) & (x->cap - 1);
    x->slots[i] = item + 1;
    x->used++;
}

/* ---- batches ---- */

static struct batch *batch_new(struct model *m, int number)
{
    struct batch_exec *x = &m->batch;
    struct batch *b = rn_calloc(1, sizeof *b);
    b->number = number;
    b->due_ms = INT64_MAX;
    b->pb.total = b->pb.completed = b->pb.failed = -1;
    buf_init(&b->pb.why);
    buf_init(&b->why);
    http_request_init(&b->req);
    if (x->count == x->cap) {
        x->cap = x->cap ? x->cap * 2 : 8;
        x->batches = rn_realloc(x->batches, x->cap * sizeof *x->batches);
    }
    x->batches[x->count++] = b;
    return b;
}

static void batch_free(struct model *m, struct batch *b)
{
    if (m->http) http_cancel(m->http, &b->req);
    http_request_free(&b->req);
    if (b->spool) fclose(b->spool);
    if (b->spool_path) unlink(b->spool_path);
    free(b->spool_path);
    if (b->reader) fclose(b->reader);
    for (int i = 0; i < 2; i++) {
        if (b->results[i]) unlink(b->results[i]);
        free(b->results[i]);
    }
    free(b->pb.id);
    free(b->pb.input);
    free(b->pb.results[0]);
    free(b->pb.results[1]);
    buf_free(&b->pb.why);
    buf_free(&b->why);
    free(b->ranges);
    free(b->entries);
    free(b->by_id.slots);
    for (size_t i = 0; i < b->unmatched_count; i++) free(b->unmatched[i].custom_id);
    free(b->unmatched);
    free(b->by_unmatched.slots);
    free(b->line);
    free(b);
}

static int next_number(const struct batch_exec *x)
{
    int n = 0;
    for (size_t i = 0; i < x->count; i++)
        if (x->batches[i]->number > n) n = x->batches[i]->number;
    return n + 1;
}

static int in_range(const struct batch *b, const struct source_pos *pos)
{
    for (size_t i = 0; i < b->range_count; i++) {
        const struct range *r = &b->ranges[i];
        if (r->partition == pos->partition && (pos->partition >= 0 || r->file == pos->file) &&
            pos->offset >= r->first && pos->offset <= r->last)
            return 1;
    }
    return 0;
}

static void extend_range(struct batch *b, const struct source_pos *pos)
{
    for (size_t i = 0; i < b->range_count; i++) {
        struct range *r = &b->ranges[i];
        if (r->partition == pos->partition && (pos->partition >= 0 || r->file == pos->file)) {
            if (pos->offset < r->first) r->first = pos->offset;
            if (pos->offset > r->last) r->last = pos->offset;
            return;
        }
    }
    b->ranges = rn_realloc(b->ranges, (b->range_count + 1) * sizeof *b->ranges);
    b->ranges[b->range_count++] = (struct range){pos->partition, pos->partition >= 0 ? 0 : pos->file, pos->offset,
                                                 pos->offset};
}

/* The job must stop: why, redacted (the first reason is kept). */
__attribute__((format(printf, 2, 3))) static void stop(struct model *m, const char *fmt, ...)
{
    if (m->fatal.len) return;
    char why[1024];
    va_list args;
    va_start(args, fmt);
    vsnprintf(why, sizeof why, fmt, args);
    va_end(args);
    buf_printf(&m->fatal, "model.%s: %s", m->provider_name, why);
    secret_redact_buf(&m->secrets, &m->fatal, &m->redact_scratch);
}

/* ---- how records leave ---- */

static void take(struct model *m, struct batch *b, struct entry *e)
{
    e->done = 1;
    b->waiting--;
    m->batch.waiting--;
}

/* Dead-letter the record of e with reason (and the model's text, when there was one). */
static void dead_letter(struct model *m, struct entry *e, struct buf *reason, const char *model_text)
{
    metric_inc(m->stats.batch_failed);
    engine_report(m, e->tag, e->record_ref, 0, reason, model_text);
}

/* Queue a live call for e's record: fresh (answer NULL) or the correction round. */
static void queue_live(struct model *m, struct entry *e, const char *answer, const char *why)
{
    struct batch_retry *r = rn_calloc(1, sizeof *r);
    r->tag = e->tag;
    r->record_ref = e->record_ref;
    if (answer) {
        r->answer = rn_strdup(answer);
        r->why = rn_strdup(why);
    }
    if (m->batch.retry_tail) m->batch.retry_tail->next = r;
    else m->batch.retry_head = r;
    m->batch.retry_tail = r;
    m->batch.retrying++;
    metric_inc(m->stats.batch_live);
}

/* A batch did not answer e's record (reason says why, and how): live, or a dead letter. */
static void unanswered(struct model *m, struct entry *e, struct buf *reason)
{
    if (m->batch.retry_live) {
        queue_live(m, e, NULL, NULL);
        return;
    }
    buf_puts(reason, " (batch.retry_live is false: not retried live)");
    dead_letter(m, e, reason, NULL);
}

/* The answer of one result line for e's record: exactly what a live answer goes through. */
static void answered(struct model *m, struct batch *b, struct entry *e, struct provider_batch_result *r)
{
    struct buf *why = &m->batch.text;
    buf_clear(why);
    take(m, b, e);
    if (r->status == 0) {
        buf_printf(why, "batch %s: %s", b->pb.id, r->why ? r->why : "no answer");
        unanswered(m, e, why);
        return;
    }
    secret_redact_buf(&m->secrets, &r->body, &m->redact_scratch);
    struct http_response answer = {.status = r->status, .body = r->body.data ? r->body.data : "", .body_len = r->body.len};
    struct provider_verdict v;
    provider_classify(m->provider, m->provider_self, &answer, &v);
    if (v.outcome == PROVIDER_FAIL_JOB) {
        buf_printf(why, "batch %s", b->pb.id);
        engine_fatal_answer(m, "a line of", why->data, &answer, v.why);
        return;
    }
    if (v.outcome != PROVIDER_OK) {
        buf_printf(why, "batch %s: HTTP %ld: ", b->pb.id, r->status);
        check_put_excerpt(why, answer.body, answer.body_len, EXCERPT_MAX);
        if (v.outcome == PROVIDER_RETRY) unanswered(m, e, why);
        else dead_letter(m, e, why, NULL);
        return;
    }
    struct model_reply *reply = &m->reply;
    struct rn_err perr;
    buf_clear(&reply->text);
    reply->vector = NULL;
    reply->tokens_in = reply->tokens_out = 0;
    if (m->provider->parse(m->provider_self, &answer, reply, &perr)) {
        json_decref(reply->vector);
        reply->vector = NULL;
        buf_printf(why, "batch %s: bad response: ", b->pb.id);
        check_put_excerpt(why, perr.msg, strlen(perr.msg), sizeof perr.msg);
        unanswered(m, e, why);
        return;
    }
    secret_redact_buf(&m->secrets, &reply->text, &m->redact_scratch);
    metric_add(m->stats.tokens_in, (double)reply->tokens_in);
    metric_add(m->stats.tokens_out, (double)reply->tokens_out);
    metric_add(m->stats.batch_tokens_in, (double)reply->tokens_in);
    metric_add(m->stats.batch_tokens_out, (double)reply->tokens_out);
    if (reply->tokens_in == 0 && reply->tokens_out == 0) metric_inc(m->stats.answers_without_usage);
    if (m->stats.has_price) metric_set(m->stats.cost_usd, stats_cost_usd(&m->stats));
    buf_puts(why, "invalid answer: ");
    size_t prefix = why->len;
    int ok = model_check_reply(m, reply, e->record_ref, why) == 0;
    if (ok && m->cache.log) answer_cache_store_key(m, e->key);
    json_decref(reply->vector);
    reply->vector = NULL;
    if (ok) {
        metric_inc(m->stats.batch_answered);
        engine_report(m, e->tag, e->record_ref, 1, why, NULL);
        return;
    }
    metric_inc(m->stats.invalid_answers);
    if (m->batch.retry_live) {
        queue_live(m, e, reply->text.data ? reply->text.data : "", why->data + prefix);
        return;
    }
    buf_printf(why, " (batch %s; batch.retry_live is false: no correction round)", b->pb.id);
    dead_letter(m, e, why, reply->text.data ? reply->text.data : "");
}

/* One result line: to its record, or kept for a record that has not joined yet. */
static void read_line(struct model *m, struct batch *b, const char *line, size_t len, int64_t offset)
{
    struct provider_batch_result *r = &m->batch.result;
    buf_clear(&r->custom_id);
    buf_clear(&r->body);
    r->status = 0;
    r->why = NULL;
    struct rn_err err;
    if (m->provider->batch->result(m->provider_self, line, len, r, &err)) return; /* its record finds no line: it goes live */
    const char *id = r->custom_id.data ? r->custom_id.data : "";
    long i = index_find(b, &b->by_id, entry_key, id, r->custom_id.len);
    if (i >= 0 && !b->entries[i].done) {
        answered(m, b, &b->entries[i], r);
        return;
    }
    if (i >= 0 || index_find(b, &b->by_unmatched, unmatched_key, id, r->custom_id.len) >= 0) return;
    if (b->unmatched_count == b->unmatched_cap) {
        b->unmatched_cap = b->unmatched_cap ? b->unmatched_cap * 2 : 64;
        b->unmatched = rn_realloc(b->unmatched, b->unmatched_cap * sizeof *b->unmatched);
    }
    b->unmatched[b->unmatched_count] = (struct unmatched){rn_strdup(id), b->part, offset, len};
    index_put(b, &b->by_unmatched, unmatched_key, (uint32_t)b->unmatched_count++);
}

/* A record that joined after its batch's lines were read: its line, or none. */
static void resolve(struct model *m, struct batch *b, struct entry *e)
{
    struct buf *why = &m->batch.text;
    if (b->stage == STAGE_FAILED) {
        take(m, b, e);
        buf_clear(why);
        buf_put(why, b->why.data, b->why.len);
        unanswered(m, e, why);
        return;
    }
    long i = index_find(b, &b->by_unmatched, unmatched_key, e->custom_id, strlen(e->custom_id));
    if (i >= 0) {
        const struct unmatched *u = &b->unmatched[i];
        FILE *f = fopen(b->results[u->part], "rb");
        char *line = rn_malloc(u->len + 1);
        int read = f && fseeko(f, u->offset, SEEK_SET) == 0 && fread(line, 1, u->len, f) == u->len;
        if (f) fclose(f);
        if (read) read_line(m, b, line, u->len, u->offset);
        free(line);
        if (e->done) return;
    }
    take(m, b, e);
    buf_clear(why);
    buf_printf(why, "batch %s has no answer for custom_id %s", b->pb.id, e->custom_id);
    unanswered(m, e, why);
}

/* ---- the batch's requests ---- */

static void fail_batch(struct model *m, struct batch *b, const char *why)
{
    b->stage = STAGE_FAILED;
    b->resolved = 0;
    b->due_ms = INT64_MAX;
    buf_clear(&b->why);
    buf_printf(&b->why, "batch %s: %s", b->pb.id ? b->pb.id : "(not made)", why);
    secret_redact_buf(&m->secrets, &b->why, &m->redact_scratch);
    if (b->spool_path) {
        unlink(b->spool_path);
        free(b->spool_path);
        b->spool_path = NULL;
    }
    m->batch.dirty = 1;
}

static void start(struct model *m, struct batch *b, int64_t now)
{
    const struct provider_batch_ops *ops = m->provider->batch;
    struct http_request *r = &b->req;
    struct rn_err err;
    int rc = 1;
    if (b->stage == STAGE_SUBMITTING && b->built != BUILT_SUBMIT) {
        http_request_clear(r);
        struct provider_spool spool = {b->spool_path, b->lines, b->bytes, m->env->job_name, b->number, m->batch.window};
        rc = ops->submit(m->provider_self, &b->pb, &spool, NULL, r, &err);
        b->built = BUILT_SUBMIT;
        b->built_headers = http_request_header_mark(r);
    } else if (b->stage == STAGE_RUNNING && b->built != BUILT_POLL) {
        http_request_clear(r);
        rc = ops->poll(m->provider_self, &b->pb, NULL, r, &err) == 0 ? 1 : -1;
        b->built = BUILT_POLL;
        b->built_headers = http_request_header_mark(r);
    } else if (b->stage == STAGE_FETCHING && b->built != BUILT_FETCH) {
        for (; b->part < 2; b->part++) {
            http_request_clear(r);
            if (ops->fetch(m->provider_self, &b->pb, b->part, r)) break;
        }
        if (b->part == 2) { /* every part is on disk */
            b->stage = STAGE_READING;
            b->part = 0;
            b->due_ms = now;
            return;
        }
        b->built = BUILT_FETCH;
        b->built_headers = http_request_header_mark(r);
    }
    if (rc < 0) {
        fail_batch(m, b, err.msg);
        return;
    }
    r->user = &m->batch;
    r->timeout_ms = b->stage == STAGE_RUNNING ? m->limits.timeout_ms : BATCH_TRANSFER_TIMEOUT_MS;
    r->connect_timeout_ms = m->limits.connect_timeout_ms;
    r->max_response = b->stage == STAGE_FETCHING ? BATCH_RESULTS_MAX : BATCH_ANSWER_MAX;
    if (m->provider->authorize) {
        http_request_truncate_headers(r, b->built_headers); /* the last attempt's */
        int rc = m->provider->authorize(m->provider_self, r, &err);
        if (rc == 1) { /* no credentials yet: refresh is fetching them */
            b->due_ms = now + 100;
            return;
        }
        if (rc) {
            stop(m, "authorize: %s", err.msg);
            return;
        }
    }
    if (http_start(m->http, r, now, &err)) {
        fail_batch(m, b, err.msg);
        return;
    }
    b->attempts++;
    b->due_ms = INT64_MAX;
}

/* Write a downloaded part to disk (the results are read from there, a slice at a time). */
static int keep_part(struct model *m, struct batch *b, struct rn_err *err)
{
    struct buf path;
    buf_init(&path);
    buf_printf(&path, "%s/%d.results-%d.jsonl", m->batch.dir, b->number, b->part);
    free(b->results[b->part]);
    b->results[b->part] = path.data;
    const struct buf *body = &b->req.response;
    int rc = rn_write_file_atomic(path.data, body->data ? body->data : "", body->len, err);
    buf_free(&b->req.response); /* up to max_bytes and more: not kept in memory */
    return rc;
}

static void retry_later(struct model *m, struct batch *b, int64_t hint_ms, int64_t now, const char *why)
{
    int limited = b->stage != STAGE_RUNNING; /* polls go on as long as the batch may run */
    int most = m->limits.retries > BATCH_ATTEMPTS ? m->limits.retries : BATCH_ATTEMPTS;
    if (limited && b->attempts >= most) {
        struct buf text;
        buf_init(&text);
        buf_printf(&text, "%s (%d attempts)", why, b->attempts);
        fail_batch(m, b, text.data);
        buf_free(&text);
        return;
    }
    int64_t delay = retry_delay_ms(b->attempts, retry_cap_hint(hint_ms), &m->rng);
    if (!limited && delay > m->batch.poll_ms) delay = m->batch.poll_ms;
    b->due_ms = now + delay;
}

void batch_answer(struct model *m, struct http_request *r)
{
    struct batch *b = (struct batch *)((char *)r - offsetof(struct batch, req));
    const struct provider_batch_ops *ops = m->provider->batch;
    int64_t now = m->now_ms;
    struct rn_err err;
    struct buf *why = &m->batch.text;
    buf_clear(why);
    /* whatever this answer changes (the batch's next step, a stage to settle), the next tick
     * looks at it: without this the loop slept until something else woke it (the checkpoint
     * timer, 5 s later at each upload, create, poll and download) */
    m->batch.due_ms = now;
    if (r->result != CURLE_OK && r->no_descriptor) { /* it never reached the provider: try again soon, uncounted */
        b->attempts--;
        b->due_ms = now + 200;
        return;
    }
    if (r->result != CURLE_OK) {
        buf_printf(why, "%s %s: %s", r->method, r->url.data, r->error[0] ? r->error : curl_easy_strerror(r->result));
        if (retry_transport(r->result)) retry_later(m, b, 0, now, why->data);
        else fail_batch(m, b, why->data);
        return;
    }
    if (b->stage != STAGE_FETCHING) secret_redact_buf(&m->secrets, &r->response, &m->redact_scratch);
    struct http_response answer = http_response_of(r);
    struct provider_verdict v;
    provider_classify(m->provider, m->provider_self, &answer, &v);
    if (v.outcome == PROVIDER_FAIL_JOB) {
        engine_fatal_answer(m, r->method, r->url.data, &answer, v.why);
        return;
    }
    if (v.outcome != PROVIDER_OK) {
        buf_printf(why, "%s %s: HTTP %ld: ", r->method, r->url.data, r->status);
        buf_clear(&m->scratch);
        provider_error_message(&answer, &m->scratch);
        check_put_excerpt(why, m->scratch.data ? m->scratch.data : "", m->scratch.len, EXCERPT_MAX);
        if (v.outcome == PROVIDER_RETRY) retry_later(m, b, v.retry_after_ms, now, why->data);
        else fail_batch(m, b, why->data);
        return;
    }
    b->attempts = 0;
    int rc;
    switch (b->stage) {
    case STAGE_SUBMITTING:
        http_request_clear(r); /* the next step's request; the answer stays readable */
        buf_free(&r->body);    /* an upload of up to max_bytes: not kept */
        rc = ops->submit(m->provider_self, &b->pb,
                         &(struct provider_spool){b->spool_path, b->lines, b->bytes, m->env->job_name, b->number,
                                                  m->batch.window},
                         &answer, r, &err);
        if (rc < 0) { fail_batch(m, b, err.msg); return; }
        b->due_ms = now;
        b->built_headers = http_request_header_mark(r);
        if (rc == 1) return; /* its next step is built */
        b->stage = STAGE_RUNNING;
        b->built = BUILT_NONE;
        b->due_ms = now + m->batch.poll_ms;
        unlink(b->spool_path); /* the provider has it */
        free(b->spool_path);
        b->spool_path = NULL;
        m->batch.dirty = 1; /* into the checkpoint at once: a killed job must find it */
        return;
    case STAGE_RUNNING:
        if (ops->poll(m->provider_self, &b->pb, &answer, r, &err)) {
            retry_later(m, b, 0, now, err.msg);
            return;
        }
        if (b->pb.phase == PROVIDER_BATCH_RUNNING) {
            b->due_ms = now + m->batch.poll_ms;
        } else if (b->pb.phase == PROVIDER_BATCH_ENDED) {
            b->stage = STAGE_FETCHING;
            b->built = BUILT_NONE;
            b->part = 0;
            b->due_ms = now;
            m->batch.dirty = 1;
        } else {
            fail_batch(m, b, b->pb.why.len ? b->pb.why.data : b->pb.status);
        }
        return;
    case STAGE_FETCHING:
        if (keep_part(m, b, &err)) { /* the disk: every batch would fail the same way */
            stop(m, "batch %s: %s", b->pb.id, err.msg);
            return;
        }
        b->part++;
        b->built = BUILT_NONE;
        b->due_ms = now;
        return;
    default:
        return;
    }
}

/* Read up to *budget lines of b's results; at the end, settle it. */
static void read_results(struct model *m, struct batch *b, int *budget)
{
    while (*budget > 0) {
        if (!b->reader) {
            while (b->part < 2 && !b->results[b->part]) b->part++;
            if (b->part == 2) break;
            b->reader = fopen(b->results[b->part], "rb");
            if (!b->reader) {
                char text[600];
                snprintf(text, sizeof text, "%s: cannot open: %s", b->results[b->part], strerror(errno));
                fail_batch(m, b, text);
                return;
            }
        }
        int64_t offset = ftello(b->reader);
        ssize_t n = getline(&b->line, &b->line_cap, b->reader);
        if (n < 0) {
            fclose(b->reader);
            b->reader = NULL;
            b->part++;
            continue;
        }
        (*budget)--;
        while (n > 0 && (b->line[n - 1] == '\n' || b->line[n - 1] == '\r')) n--;
        if (n > 0) read_line(m, b, b->line, (size_t)n, offset);
        if (m->fatal.len) return;
    }
    if (b->part < 2 || b->reader) return;
    b->stage = STAGE_SETTLED;
    b->resolved = 0;
    if (!b->restored) { /* every record it holds was there while it was read: the files are done */
        for (int i = 0; i < 2; i++) {
            if (b->results[i]) unlink(b->results[i]);
            free(b->results[i]);
            b->results[i] = NULL;
        }
    }
}

/* ---- opening and submitting ---- */

int batch_open(struct model *m, int opts, struct rn_err *err)
{
    struct batch_exec *x = &m->batch;
    x->due_ms = INT64_MAX;
    const struct provider_batch_ops *ops = m->provider->batch;
    if (!(m->provider->capabilities & PROVIDER_BATCH) || !ops) return 0;
    lua_State *L = m->L;
    if (!opt_push(L, opts, "batch")) return 0;
    int t = lua_gettop(L), rc = 0;
    if (!opt_boolean(L, t, "enabled", 1)) goto done;
    if (m->env->streaming) {
        rc = rn_fail(err, "batch: the batch API is for bounded jobs; in stream mode every record is answered as it "
                          "comes (run without --mode stream, or set batch = false)");
        goto done;
    }
    if (!m->env->state_dir || !*m->env->state_dir) {
        rc = rn_fail(err, "batch: needs a state directory for its spools and results (--state-dir)");
        goto done;
    }
    x->max_requests = opt_integer(L, t, "max_requests", 50000);
    x->max_bytes = opt_size(L, t, "max_bytes", 200 << 20);
    if (x->max_requests > ops->max_requests) {
        rc = rn_fail(err, "batch.max_requests: model.%s takes at most %lld requests a batch", m->provider_name,
                     (long long)ops->max_requests);
        goto done;
    }
    if (x->max_bytes > ops->max_bytes) {
        char most[32];
        opt_format_size(most, sizeof most, ops->max_bytes);
        rc = rn_fail(err, "batch.max_bytes: model.%s takes at most %s a batch", m->provider_name, most);
        goto done;
    }
    x->poll_ms = opt_duration_ms(L, t, "poll", 30000);
    x->window = rn_strdup(opt_string(L, t, "window", "24h"));
    x->retry_live = opt_boolean(L, t, "retry_live", 1);
    m->stats.batch_price = ops->price;
    struct buf dir;
    buf_init(&dir);
    buf_printf(&dir, "%s/batch/", m->env->state_dir);
    for (const char *c = m->env->job_name ? m->env->job_name : "job"; *c; c++) /* one safe path component */
        buf_putc(&dir, (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '-' ||
                               *c == '_' ? *c : '_');
    x->dir = dir.data;
    if (rn_mkdir_p(x->dir, err)) {
        rc = rn_wrap(err, "batch");
        goto done;
    }
    struct slot *s = &x->scratch;
    s->record_ref = LUA_NOREF;
    http_request_init(&s->req);
    buf_init(&x->line);
    buf_init(&x->text);
    buf_init(&x->result.custom_id);
    buf_init(&x->result.body);
    x->on = 1;
done:
    lua_pop(L, 1);
    return rc;
}

/* The key of the call in s (as the answer cache makes it, or like it when the cache is off). */
static void call_key(struct model *m, struct slot *s, uint8_t key[CACHE_KEY_SIZE])
{
    if (m->cache.log) { /* answer_cache_lookup made it */
        memcpy(key, s->key, CACHE_KEY_SIZE);
        return;
    }
    struct cache_hash h;
    cache_hash_init(&h);
    cache_hash_field(&h, m->provider_name, strlen(m->provider_name));
    cache_hash_field(&h, s->req.url.data ? s->req.url.data : "", s->req.url.len);
    cache_hash_field(&h, s->req.body.data ? s->req.body.data : "", s->req.body.len);
    cache_hash_final(&h, key);
}

static struct entry *add_entry(struct batch *b, uint64_t tag, int record_ref, const uint8_t key[CACHE_KEY_SIZE],
                               const char *custom_id)
{
    if (b->entry_count == b->entry_cap) {
        b->entry_cap = b->entry_cap ? b->entry_cap * 2 : 256;
        b->entries = rn_realloc(b->entries, b->entry_cap * sizeof *b->entries);
    }
    struct entry *e = &b->entries[b->entry_count];
    *e = (struct entry){.tag = tag, .record_ref = record_ref};
    memcpy(e->key, key, CACHE_KEY_SIZE);
    snprintf(e->custom_id, sizeof e->custom_id, "%s", custom_id);
    index_put(b, &b->by_id, entry_key, (uint32_t)b->entry_count++);
    b->waiting++;
    return e;
}

static void seal(struct model *m, struct batch *b, int64_t now)
{
    struct batch_exec *x = &m->batch;
    if (x->open == b) x->open = NULL;
    int bad = fflush(b->spool) != 0 || ferror(b->spool);
    if (fclose(b->spool) != 0) bad = 1;
    b->spool = NULL;
    if (bad) stop(m, "batch: %s: cannot write: %s", b->spool_path, strerror(errno));
    b->stage = STAGE_SUBMITTING;
    b->due_ms = now;
}

static struct batch *open_chunk(struct model *m, int64_t now)
{
    struct batch_exec *x = &m->batch;
    struct batch *b = batch_new(m, next_number(x));
    struct buf path;
    buf_init(&path);
    buf_printf(&path, "%s/%d.spool.jsonl", x->dir, b->number);
    b->spool_path = path.data;
    b->spool = fopen(b->spool_path, "wb");
    if (!b->spool) stop(m, "batch: %s: cannot create: %s", b->spool_path, strerror(errno));
    b->grew_ms = now;
    x->open = b;
    return b;
}

int batch_submit(struct model *m, int record_ref, uint64_t tag, const struct source_pos *pos, struct rn_err *err)
{
    struct batch_exec *x = &m->batch;
    if (!pos) return rn_fail(err, "model: with batch on, records are submitted with their positions (model_submit_at)");
    if (m->fatal.len) return rn_fail(err, "%s", m->fatal.data);
    struct slot *s = &x->scratch;
    s->tag = tag;
    if (engine_build(m, s, record_ref, err)) return -1;
    if (answer_cache_lookup(m, s)) return 0; /* answered from the cache: reported by the next poll */
    uint8_t key[CACHE_KEY_SIZE];
    call_key(m, s, key);
    char custom_id[48];
    snprintf(custom_id, sizeof custom_id, "%c%d-%lld-%02x%02x%02x%02x%02x%02x", pos->partition >= 0 ? 'p' : 'f',
             pos->partition >= 0 ? (int)pos->partition : (int)pos->file, (long long)pos->offset, key[0], key[1],
             key[2], key[3], key[4], key[5]);
    int64_t now = rn_now_ms();
    for (size_t i = 0; i < x->count; i++) { /* a batch of the run this one resumes */
        struct batch *b = x->batches[i];
        if (!b->restored || !in_range(b, pos)) continue;
        add_entry(b, tag, record_ref, key, custom_id);
        x->waiting++;
        metric_inc(m->stats.batch_records);
        if (b->due_ms == INT64_MAX && (b->stage == STAGE_RUNNING || b->stage == STAGE_FETCHING)) b->due_ms = now;
        if (b->stage >= STAGE_SETTLED && now < x->due_ms) x->due_ms = now; /* looked up by the next tick */
        return 0;
    }
    buf_clear(&x->line);
    struct rn_err lerr;
    struct batch *b = x->open;
    int64_t len = 0;
    int live = m->provider->batch->line(m->provider_self, custom_id, &s->req, &x->line, &lerr) != 0;
    if (!live) {
        len = (int64_t)x->line.len;
        live = len > x->max_bytes; /* too big for any batch */
    }
    if (!live) {
        if (b && (b->lines + 1 > (size_t)x->max_requests || b->bytes + len > x->max_bytes)) seal(m, b, now);
        b = x->open ? x->open : open_chunk(m, now);
        if (b->spool && fwrite(x->line.data, 1, x->line.len, b->spool) != x->line.len)
            stop(m, "batch: %s: cannot write: %s", b->spool_path, strerror(errno));
        b->lines++;
        b->bytes += len;
        b->grew_ms = now;
        extend_range(b, pos);
        add_entry(b, tag, record_ref, key, custom_id);
        x->waiting++;
        metric_inc(m->stats.batch_records);
        return 0;
    }
    /* no line for it: it goes live (counted as such) */
    struct entry e = {.tag = tag, .record_ref = record_ref};
    queue_live(m, &e, NULL, NULL);
    if (now < x->due_ms) x->due_ms = now;
    return 0;
}

/* ---- the tick ---- */

void batch_tick(struct model *m, int64_t now)
{
    struct batch_exec *x = &m->batch;
    if (x->open && now - x->open->grew_ms >= BATCH_LINGER_MS) seal(m, x->open, now);
    int budget = BATCH_LINES_PER_TICK;
    int64_t due = INT64_MAX;
    for (size_t i = 0; i < x->count && !m->fatal.len; i++) {
        struct batch *b = x->batches[i];
        switch (b->stage) {
        case STAGE_SPOOLING:
            if (b->grew_ms + BATCH_LINGER_MS < due) due = b->grew_ms + BATCH_LINGER_MS;
            break;
        case STAGE_SUBMITTING:
        case STAGE_RUNNING:
        case STAGE_FETCHING:
            if (!b->req.running && b->due_ms <= now) start(m, b, now);
            if (b->stage >= STAGE_READING) i--; /* its parts are all there, or it failed: go on with it now */
            else if (!b->req.running && b->due_ms < due) due = b->due_ms;
            break;
        case STAGE_READING:
            read_results(m, b, &budget);
            if (b->stage == STAGE_READING) due = now; /* more lines */
            else if (b->stage >= STAGE_SETTLED) i--; /* look its late records up now */
            break;
        case STAGE_SETTLED:
        case STAGE_FAILED:
            for (; b->resolved < b->entry_count && !m->fatal.len; b->resolved++)
                if (!b->entries[b->resolved].done) resolve(m, b, &b->entries[b->resolved]);
            break;
        }
    }
    while (x->retry_head && !m->fatal.len) {
        struct batch_retry *r = x->retry_head;
        struct rn_err err;
        int rc = engine_call(m, r->record_ref, r->tag, r->answer, r->why, &err);
        if (rc == 0) break; /* no free slot: an answer makes one */
        x->retry_head = r->next;
        if (!x->retry_head) x->retry_tail = NULL;
        x->retrying--;
        if (rc < 0) {
            buf_clear(&x->text);
            buf_puts(&x->text, err.msg);
            engine_report(m, r->tag, r->record_ref, 0, &x->text, NULL);
        }
        free(r->answer);
        free(r->why);
        free(r);
    }
    x->due_ms = due;
}

/* ---- the checkpoint ---- */

static const char *phase_word(const struct batch *b)
{
    if (b->stage == STAGE_FAILED) return "failed";
    return b->stage >= STAGE_FETCHING ? "ended" : "running";
}

int batch_save(struct model *m, json_t *state)
{
    struct batch_exec *x = &m->batch;
    x->dirty = 0;
    json_t *list = json_array();
    for (size_t i = 0; i < x->count; i++) {
        const struct batch *b = x->batches[i];
        if (!b->pb.id) continue; /* not made: its records are read and spooled again */
        json_t *o = json_object(), *ranges = json_array(), *results = json_array();
        json_object_set_new(o, "number", json_integer(b->number));
        json_object_set_new(o, "id", json_string(b->pb.id));
        json_object_set_new(o, "phase", json_string(phase_word(b)));
        json_object_set_new(o, "status", json_string(b->pb.status));
        json_object_set_new(o, "input", b->pb.input ? json_string(b->pb.input) : json_null());
        for (int k = 0; k < 2; k++)
            json_array_append_new(results, b->pb.results[k] ? json_string(b->pb.results[k]) : json_null());
        json_object_set_new(o, "results", results);
        json_object_set_new(o, "requests", json_integer((json_int_t)(b->lines ? b->lines : (size_t)b->pb.total)));
        if (b->stage == STAGE_FAILED) json_object_set_new(o, "why", json_string(b->why.data ? b->why.data : ""));
        for (size_t k = 0; k < b->range_count; k++) {
            const struct range *r = &b->ranges[k];
            json_t *range = json_object();
            if (r->partition >= 0) json_object_set_new(range, "partition", json_integer(r->partition));
            else json_object_set_new(range, "file", json_integer(r->file));
            json_object_set_new(range, "first", json_integer(r->first));
            json_object_set_new(range, "last", json_integer(r->last));
            json_array_append_new(ranges, range);
        }
        json_object_set_new(o, "ranges", ranges);
        json_array_append_new(list, o);
    }
    if (!json_array_size(list)) {
        json_decref(list);
        return 0;
    }
    json_t *o = json_object();
    json_object_set_new(o, "batches", list);
    json_object_set_new(state, "model", o);
    return 0;
}

static const char *text_of(json_t *o, const char *name)
{
    const char *s = json_string_value(json_object_get(o, name));
    return s && *s ? s : NULL;
}

int batch_restore(struct model *m, json_t *state, struct rn_err *err)
{
    struct batch_exec *x = &m->batch;
    json_t *list = json_object_get(json_object_get(state, "model"), "batches");
    if (!list) return 0;
    if (!x->on) {
        if (json_array_size(list))
            log_warning("--resume: the checkpoint holds %zu batches, but batch is off for this model: its "
                            "records are called live", json_array_size(list));
        return 0;
    }
    size_t i;
    json_t *o;
    json_array_foreach(list, i, o) {
        const char *id = text_of(o, "id"), *phase = text_of(o, "phase");
        json_t *ranges = json_object_get(o, "ranges"), *number = json_object_get(o, "number");
        if (!id || !phase || !json_is_array(ranges) || !json_is_integer(number))
            return rn_fail(err, "--resume: the checkpoint's batch %zu is not readable (no id, phase, number or ranges)",
                           i + 1);
        struct batch *b = batch_new(m, (int)json_integer_value(number));
        b->restored = 1;
        provider_batch_set(&b->pb.id, id, strlen(id));
        const char *input = text_of(o, "input");
        if (input) provider_batch_set(&b->pb.input, input, strlen(input));
        for (int k = 0; k < 2; k++) {
            const char *where = json_string_value(json_array_get(json_object_get(o, "results"), (size_t)k));
            if (where && *where) provider_batch_set(&b->pb.results[k], where, strlen(where));
        }
        snprintf(b->pb.status, sizeof b->pb.status, "%s", text_of(o, "status") ? text_of(o, "status") : phase);
        json_t *requests = json_object_get(o, "requests");
        b->pb.total = json_is_integer(requests) ? json_integer_value(requests) : -1;
        b->pb.phase = strcmp(phase, "ended") == 0 ? PROVIDER_BATCH_ENDED : PROVIDER_BATCH_RUNNING;
        if (strcmp(phase, "failed") == 0) {
            b->stage = STAGE_FAILED;
            buf_puts(&b->why, text_of(o, "why") ? text_of(o, "why") : "failed");
        } else {
            b->stage = strcmp(phase, "ended") == 0 ? STAGE_FETCHING : STAGE_RUNNING;
        }
        size_t k;
        json_t *r;
        json_array_foreach(ranges, k, r) {
            json_t *partition = json_object_get(r, "partition");
            b->ranges = rn_realloc(b->ranges, (b->range_count + 1) * sizeof *b->ranges);
            b->ranges[b->range_count++] = (struct range){
                partition ? (int32_t)json_integer_value(partition) : -1,
                (int32_t)json_integer_value(json_object_get(r, "file")),
                json_integer_value(json_object_get(r, "first")), json_integer_value(json_object_get(r, "last"))};
        }
    }
    if (json_array_size(list))
        log_info("resuming %zu batch%s submitted before: their records join them, nothing is sent twice",
                json_array_size(list), json_array_size(list) == 1 ? "" : "es");
    return 0;
}

/* ---- what people see ---- */

void batch_progress(struct model *m, struct buf *out)
{
    struct batch_exec *x = &m->batch;
    if (!x->on || !x->count) return;
    for (size_t i = 0; i < x->count; i++) {
        const struct batch *b = x->batches[i];
        if (b->stage >= STAGE_SETTLED || (b->restored && !b->waiting)) continue;
        buf_printf(out, "batch %zu/%zu ", i + 1, x->count);
        if (b->stage == STAGE_RUNNING && b->pb.status[0]) buf_puts(out, b->pb.status);
        else buf_puts(out, stage_words[b->stage]);
        if (b->stage == STAGE_SPOOLING) buf_printf(out, " %zu", b->lines);
        else if (b->stage == STAGE_RUNNING && b->pb.total > 0)
            buf_printf(out, " %.0f%%", 100.0 * (double)((b->pb.completed > 0 ? b->pb.completed : 0) +
                                                       (b->pb.failed > 0 ? b->pb.failed : 0)) / (double)b->pb.total);
        return;
    }
}

void batch_print(struct model *m, FILE *out)
{
    struct batch_exec *x = &m->batch;
    if (!x->on) return;
    struct buf states;
    buf_init(&states);
    const char *seen[8] = {0};
    int counts[8] = {0}, kinds = 0, made = 0;
    for (size_t i = 0; i < x->count; i++) {
        const struct batch *b = x->batches[i];
        if (!b->pb.id) continue;
        made++;
        const char *word = b->stage == STAGE_FAILED ? "failed" : b->pb.status[0] ? b->pb.status : stage_words[b->stage];
        int k = 0;
        while (k < kinds && strcmp(seen[k], word) != 0) k++;
        if (k == kinds && kinds < 8) seen[kinds++] = word;
        if (k < 8) counts[k]++;
    }
    for (int k = 0; k < kinds; k++) buf_printf(&states, "%s%d %s", k ? ", " : "", counts[k], seen[k]);
    const struct stats *st = &m->stats;
    fprintf(out, "  batch: %d batch%s%s%s%s; %llu records through them: %llu answered, %llu went live, %llu dead-lettered\n",
            made, made == 1 ? "" : "es", kinds ? " (" : "", kinds ? states.data : "", kinds ? ")" : "",
            (unsigned long long)metric_u64(st->batch_records), (unsigned long long)metric_u64(st->batch_answered),
            (unsigned long long)metric_u64(st->batch_live), (unsigned long long)metric_u64(st->batch_failed));
    buf_free(&states);
}

void batch_json(struct model *m, json_t *model)
{
    struct batch_exec *x = &m->batch;
    if (!x->on) {
        json_object_set_new(model, "batch", json_null());
        return;
    }
    const struct stats *st = &m->stats;
    json_t *o = json_object(), *list = json_array();
    for (size_t i = 0; i < x->count; i++) {
        const struct batch *b = x->batches[i];
        if (!b->pb.id) continue;
        json_t *one = json_object();
        json_object_set_new(one, "id", json_string(b->pb.id));
        json_object_set_new(one, "status", json_string(b->stage == STAGE_FAILED ? "failed" : b->pb.status));
        json_object_set_new(one, "requests", json_integer((json_int_t)(b->lines ? b->lines : (size_t)(b->pb.total > 0 ? b->pb.total : 0))));
        json_object_set_new(one, "records", json_integer((json_int_t)b->entry_count));
        json_object_set_new(one, "completed", json_integer(b->pb.completed));
        json_object_set_new(one, "failed", json_integer(b->pb.failed));
        json_object_set_new(one, "resumed", json_boolean(b->restored));
        if (b->stage == STAGE_FAILED) json_object_set_new(one, "why", json_string(b->why.data ? b->why.data : ""));
        json_array_append_new(list, one);
    }
    json_object_set_new(o, "batches", list);
    json_object_set_new(o, "records", json_integer((json_int_t)metric_u64(st->batch_records)));
    json_object_set_new(o, "answered", json_integer((json_int_t)metric_u64(st->batch_answered)));
    json_object_set_new(o, "live", json_integer((json_int_t)metric_u64(st->batch_live)));
    json_object_set_new(o, "dead_lettered", json_integer((json_int_t)metric_u64(st->batch_failed)));
    json_object_set_new(o, "tokens_in", json_integer((json_int_t)metric_u64(st->batch_tokens_in)));
    json_object_set_new(o, "tokens_out", json_integer((json_int_t)metric_u64(st->batch_tokens_out)));
    json_object_set_new(o, "price_share", json_real(st->batch_price));
    json_object_set_new(model, "batch", o);
}

void batch_close(struct model *m)
{
    struct batch_exec *x = &m->batch;
    for (size_t i = 0; i < x->count; i++) batch_free(m, x->batches[i]);
    free(x->batches);
    while (x->retry_head) {
        struct batch_retry *r = x->retry_head;
        x->retry_head = r->next;
        free(r->answer);
        free(r->why);
        free(r);
    }
    if (x->on) {
        http_request_free(&x->scratch.req);
        buf_free(&x->scratch.prompt);
        buf_free(&x->scratch.answer);
        buf_free(&x->scratch.correction);
        buf_free(&x->scratch.reason);
        if (x->dir) rmdir(x->dir); /* when nothing is left in it */
    }
    free(x->dir);
    free(x->window);
    buf_free(&x->line);
    buf_free(&x->text);
    buf_free(&x->result.custom_id);
    buf_free(&x->result.body);
    memset(x, 0, sizeof *x);
}

/* ---- model.h ---- */

int64_t model_batch_window(struct model *m) { return m->batch.on ? m->batch.max_requests : 0; }
size_t model_batch_waiting(struct model *m) { return m->batch.waiting; }
void model_progress(struct model *m, struct buf *out)
{
    batch_progress(m, out);
    if (m->breaker.opened && out->len) buf_puts(out, "  ");
    breaker_describe(&m->breaker, rn_now_ms(), out);
}
int model_save(struct model *m, json_t *state, struct rn_err *err)
{
    (void)err;
    return m->batch.on ? batch_save(m, state) : 0;
}
int model_restore(struct model *m, json_t *state, struct rn_err *err) { return state ? batch_restore(m, state, err) : 0; }
int model_save_due(struct model *m) { return m->batch.dirty; }
