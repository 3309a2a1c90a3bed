/* engine.c: the model engine (model.h): the slots that hold the records in flight, submit,
 * poll, and what happens to each finished attempt. The other concerns are their own files:
 * open.c (options, secrets, slots, close), output.c (the declaration), check.c (answer
 * checks), limits.c (rpm, tpm, the "auto" window),
 * retry.c (backoff), stats.c (the summary), answer_cache.c (the cache in front), and the
 * provider (provider.h) for the request, the verdict on an answer and its parsing; HTTP is
 * core/http.c's, redaction core/secret.c's.
 *
 * Every record in flight holds one slot. Slots are made at open, each with its request and
 * buffers, and reused for the whole run, so the per-record path allocates nothing once warm.
 * A slot is FREE, READY (waiting for a send permit: a rate limit, a 429 pause or room in the
 * "auto" window), WAITING (a retry's backoff, in a min-heap by due time), RUNNING (its request
 * is in the HTTP client) or STOPPED (its answer stopped the job). */
#include "models/model_int.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lua/job.h"
#include "lua/transport.h"
#include "models/prompt.h"

#define EXCERPT_MAX 300             /* bytes of an error body quoted in a reason */
#define DESCRIPTOR_WAIT_MS 200      /* a call that found no file descriptor tries again after this */

/* ---- the ready queue and the retry heap ---- */

static void ready_push_tail(struct model *m, struct slot *s)
{
    s->state = SLOT_READY;
    s->next = NULL;
    if (m->ready_tail) m->ready_tail->next = s;
    else m->ready_head = s;
    m->ready_tail = s;
}

static void ready_push_head(struct model *m, struct slot *s)
{
    s->state = SLOT_READY;
    s->next = m->ready_head;
    m->ready_head = s;
    if (!m->ready_tail) m->ready_tail = s;
}

static struct slot *ready_pop(struct model *m)
{
    struct slot *s = m->ready_head;
    m->ready_head = s->next;
    if (!m->ready_head) m->ready_tail = NULL;
    s->next = NULL;
    return s;
}

static void heap_push(struct model *m, struct slot *s)
{
    s->state = SLOT_WAITING;
    m->heap_records += s->group_len ? s->group_len : 1;
    size_t i = m->heap_len++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (m->heap[parent]->due_ms <= s->due_ms) break;
        m->heap[i] = m->heap[parent];
        i = parent;
    }
    m->heap[i] = s;
}

static struct slot *heap_pop(struct model *m)
{
    struct slot *top = m->heap[0], *last = m->heap[--m->heap_len];
    size_t i = 0, n = m->heap_len;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && m->heap[child + 1]->due_ms < m->heap[child]->due_ms) child++;
        if (last->due_ms <= m->heap[child]->due_ms) break;
        m->heap[i] = m->heap[child];
        i = child;
    }
    if (n) m->heap[i] = last;
    m->heap_records -= top->group_len ? top->group_len : 1;
    return top;
}

/* ---- the hot path ---- */

/* Slots on the wire or about to be: READY and RUNNING (a retry waiting out its backoff is not). */
static int on_wire(const struct model *m) { return (int)(m->occupied - m->heap_records); }

/* The records the window allows on the wire: a request carries up to batch_inputs of them. */
static int window_records(const struct model *m) { return (int)m->limits.window * m->batch_inputs; }

int model_room(struct model *m)
{
    if (m->fatal.len || m->breaker.open) return 0; /* open: the source is held back */
    if (m->batch.on) return 1 << 20; /* records wait in batches; the pipeline's window bounds them */
    int room = m->limits.concurrency * m->batch_inputs - (int)m->occupied;
    if (m->limits.adaptive) {
        int window_room = window_records(m) - on_wire(m);
        if (window_room < room) room = window_room;
    }
    return room > 0 ? room : 0;
}

size_t model_in_flight(struct model *m)
{
    return m->occupied + (m->cache.hits_len - m->cache.hits_next) + m->batch.waiting + m->batch.retrying;
}

static void release(struct model *m, struct slot *s)
{
    s->state = SLOT_FREE;
    s->record_ref = LUA_NOREF;
    s->next = m->free_list;
    m->free_list = s;
    m->occupied--;
}

/* (Re)build the request of a slot from its prompt and, after an invalid answer, the correction. */
static int build_call(struct model *m, struct slot *s, struct rn_err *err)
{
    struct model_call *c = &s->call;
    c->task = m->call_task;
    c->system = m->system;
    c->prompt = s->prompt.data ? s->prompt.data : "";
    c->prompt_len = s->prompt.len;
    c->schema_json = m->output.schema_json;
    c->previous_answer = s->corrected ? s->answer.data : NULL;
    c->correction = s->corrected ? s->correction.data : NULL;
    c->record_ref = s->record_ref;
    http_request_clear(&s->req);
    if (m->provider->build(m->provider_self, c, &s->req, err)) return -1;
    s->built_headers = http_request_header_mark(&s->req);
    if (m->provider->charge) {
        s->tokens_estimate = m->provider->charge(m->provider_self, c);
    } else {
        size_t bytes = m->system_len + s->prompt.len + (s->corrected ? s->answer.len + s->correction.len : 0);
        s->tokens_estimate = (int64_t)(bytes / 4) + 1;
    }
    return 0;
}

int engine_build(struct model *m, struct slot *s, int record_ref, struct rn_err *err)
{
    s->record_ref = record_ref;
    s->attempts = 0;
    s->corrected = 0;
    s->resent = 0;
    s->wire = &s->req;
    s->grouped = NULL;
    s->group_len = 0;
    s->alone = 0;
    s->last_status = 0;
    buf_clear(&s->prompt);
    lua_rawgeti(m->L, LUA_REGISTRYINDEX, record_ref);
    int rc = prompt_render(m->prompt, -1, &s->prompt, err);
    lua_pop(m->L, 1);
    if (rc == 0) rc = build_call(m, s, err);
    if (rc) secret_redact_text(&m->secrets, err->msg, err->msg, sizeof err->msg); /* a prompt function's error can quote a header */
    return rc;
}

/* The correction round's call for slot s: the model sees its answer and why it was rejected. */
static void set_correction(struct model *m, struct slot *s, const char *why, size_t why_len)
{
    buf_clear(&s->correction);
    buf_puts(&s->correction, "Your previous answer was rejected: ");
    buf_put(&s->correction, why, why_len);
    buf_puts(&s->correction, ". ");
    buf_puts(&s->correction, m->output.expected);
    s->corrected = 1;
    s->attempts = 0;
    metric_inc(m->stats.corrections);
}

/* A free slot for the record at record_ref, its request built (engine_build); NULL and err (the
 * slot back on the free list) when the request cannot be built. The caller made sure one is free. */
static struct slot *take_slot(struct model *m, int record_ref, uint64_t tag, struct rn_err *err)
{
    struct slot *s = m->free_list;
    m->free_list = s->next;
    s->next = NULL;
    m->occupied++;
    s->tag = tag;
    if (engine_build(m, s, record_ref, err)) {
        release(m, s);
        return NULL;
    }
    return s;
}

int model_submit(struct model *m, int record_ref, uint64_t tag, struct rn_err *err)
{
    return model_submit_at(m, record_ref, tag, NULL, err);
}

int model_submit_at(struct model *m, int record_ref, uint64_t tag, const struct source_pos *pos, struct rn_err *err)
{
    if (m->batch.on) return batch_submit(m, record_ref, tag, pos, err);
    if (model_room(m) <= 0 || !m->free_list)
        return rn_fail(err, "model: submitted with no room (model_room is 0)");
    struct slot *s = take_slot(m, record_ref, tag, err);
    if (!s) return -1;
    if (answer_cache_lookup(m, s)) {
        release(m, s);
        return 0;
    }
    ready_push_tail(m, s);
    if (m->limits.adaptive && on_wire(m) >= window_records(m)) m->limits.window_full = 1;
    return 0;
}

/* The first record that failed, for the summary: its request, its reason (redacted already) and,
 * where the cause is plain, what to check: the key (401, 403), the endpoint (404, nothing
 * listening, no such host). */
static void note_first_failure(struct model *m, const struct slot *s)
{
    char hint[192] = "";
    CURLcode rc = s->wire->result;
    const char *const *keys = m->provider->secret_options;
    if (s->last_status == 401 || s->last_status == 403)
        snprintf(hint, sizeof hint, " (the server refused the credentials: check %s)", keys && keys[0] ? keys[0] : "the key");
    else if (s->last_status == 404)
        snprintf(hint, sizeof hint, " (the server has no such path or model: check the model's endpoint and model)");
    else if (!s->last_status && (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST))
        snprintf(hint, sizeof hint, " (nothing answers there: is the server running, and the model's endpoint right?)");
    struct buf line;
    buf_init(&line);
    buf_printf(&line, "%s %.300s: ", s->wire->method, s->wire->url.data ? s->wire->url.data : "?");
    size_t cut = m->done_reason.len < 360 ? m->done_reason.len : 360;
    while (cut > 0 && cut < m->done_reason.len && (m->done_reason.data[cut] & 0xC0) == 0x80) cut--; /* whole characters */
    buf_put(&line, m->done_reason.data, cut);
    buf_puts(&line, cut < m->done_reason.len ? "..." : "");
    redact(m, &line); /* the URL may hold a key */
    buf_puts(&line, hint);
    snprintf(m->stats.first_failure, sizeof m->stats.first_failure, "%s", line.data);
    buf_free(&line);
}

int engine_call(struct model *m, int record_ref, uint64_t tag, const char *answer, const char *why, struct rn_err *err)
{
    if (!m->free_list || m->fatal.len) return 0;
    if (m->limits.adaptive && on_wire(m) >= window_records(m)) return 0;
    struct slot *s = take_slot(m, record_ref, tag, err);
    if (!s) return -1;
    if (answer) {
        buf_clear(&s->answer);
        buf_puts(&s->answer, answer);
        set_correction(m, s, why, strlen(why));
        if (build_call(m, s, err)) {
            release(m, s);
            return -1;
        }
    }
    ready_push_tail(m, s);
    return 1;
}

void engine_report(struct model *m, uint64_t tag, int record_ref, int ok, struct buf *reason, const char *model_text)
{
    if (!ok) redact(m, reason);
    if (ok) metric_inc(m->stats.ok);
    else metric_inc(m->stats.failed);
    if (!ok && !m->stats.first_failure[0]) { /* a batch's reason names the batch: no request to show */
        snprintf(m->stats.first_failure, sizeof m->stats.first_failure, "%.700s", reason->data);
    }
    if (m->done) m->done(m->done_ctx, tag, record_ref, ok, ok ? NULL : reason->data, model_text);
}

static void finish_one(struct model *m, struct slot *s, int ok, const char *model_text)
{
    if (!ok) redact(m, &m->done_reason);
    if (!ok && !m->stats.first_failure[0]) note_first_failure(m, s);
    uint64_t tag = s->tag;
    int ref = s->record_ref;
    if (ok) metric_inc(m->stats.ok);
    else metric_inc(m->stats.failed);
    release(m, s);
    if (m->done) m->done(m->done_ctx, tag, ref, ok, ok ? NULL : m->done_reason.data, model_text);
}

/* The one way a record leaves the engine: the slot's record and, for a request of several
 * inputs that failed as a whole, every record it carried, with the same reason. A failure's
 * reason is redacted here, whatever path built it, so no secret reaches a dead letter. */
static void finish(struct model *m, struct slot *s, int ok, const char *model_text)
{
    struct slot *member = s->grouped;
    s->grouped = NULL;
    s->group_len = 0;
    finish_one(m, s, ok, model_text); /* its failure notes the request that failed (wire) */
    s->wire = &s->req;
    while (member) {
        struct slot *next = member->grouped;
        member->grouped = NULL;
        finish_one(m, member, ok, model_text);
        member = next;
    }
}

/* A request of several inputs was refused as a whole for what it holds (a 4xx: one input too
 * long, the request too large) or cannot be sent again: each record goes again in a request of
 * its own, so only the record at fault is dead-lettered, with its own answer. */
static void split_group(struct model *m, struct slot *s)
{
    struct slot *member = s;
    s->group_len = 0;
    s->wire = &s->req;
    while (member) {
        struct slot *next = member->grouped;
        member->grouped = NULL;
        member->alone = 1;
        member->attempts = 0;
        member->resent = 1; /* a send again */
        metric_inc(m->stats.inputs_alone);
        ready_push_head(m, member);
        member = next;
    }
}

/* Fail the record now: "HTTP 400: body" or the transport error. A request of several inputs
 * splits instead. */
static void fail_now(struct model *m, struct slot *s)
{
    if (s->group_len > 1) {
        split_group(m, s);
        return;
    }
    buf_clear(&m->done_reason);
    if (s->last_status) buf_printf(&m->done_reason, "HTTP %ld: ", s->last_status);
    buf_put(&m->done_reason, s->reason.data, s->reason.len);
    finish(m, s, 0, NULL);
}

static void fail_exhausted(struct model *m, struct slot *s)
{
    buf_clear(&m->done_reason);
    const char *plural = s->attempts == 1 ? "" : "s";
    if (s->last_status) {
        buf_printf(&m->done_reason, "HTTP %ld after %d attempt%s: ", s->last_status, s->attempts, plural);
        buf_put(&m->done_reason, s->reason.data, s->reason.len);
    } else {
        buf_put(&m->done_reason, s->reason.data, s->reason.len);
        buf_printf(&m->done_reason, " (%d attempt%s)", s->attempts, plural);
    }
    finish(m, s, 0, NULL);
}

/* The job must stop (message says why, and is redacted here): the slot's record is neither
 * done nor failed (it is read again when the job reruns), nothing more is sent, and model_poll
 * reports it. The first reason is kept. */
static void set_fatal(struct model *m, const char *message)
{
    if (m->fatal.len) return;
    buf_printf(&m->fatal, "model.%s: %s", m->provider_name, message);
    redact(m, &m->fatal);
}

static void stop_job(struct model *m, struct slot *s, const char *message)
{
    for (struct slot *member = s; member; member = member->grouped) member->state = SLOT_STOPPED;
    set_fatal(m, message);
}

void engine_fatal_answer(struct model *m, const char *method, const char *url, const struct http_response *answer,
                         const char *why)
{
    if (m->fatal.len) return;
    buf_clear(&m->scratch);
    provider_error_message(answer, &m->scratch); /* the body was redacted */
    buf_clear(&m->done_reason);
    buf_printf(&m->done_reason, "%s %s: HTTP %ld: ", method, url ? url : "?", answer->status);
    check_put_excerpt(&m->done_reason, m->scratch.data ? m->scratch.data : "", m->scratch.len, EXCERPT_MAX);
    const char *const *keys = m->provider->secret_options; /* the credentials to check, by their option */
    int refused = answer->status == 401 || answer->status == 403;
    if (why) buf_printf(&m->done_reason, " (%s", why);
    if (why && refused && keys && keys[0]) buf_printf(&m->done_reason, "; check %s", keys[0]);
    if (why) buf_putc(&m->done_reason, ')');
    buf_printf(&m->fatal, "model.%s: %s", m->provider_name, m->done_reason.data);
    redact(m, &m->fatal);
}

/* Schedule another attempt after backoff with full jitter, but no sooner than hint_ms; or fail
 * when the retries are used up. */
static void retry_or_fail(struct model *m, struct slot *s, int64_t hint_ms, int64_t now)
{
    if (s->attempts > m->limits.retries) { fail_exhausted(m, s); return; }
    s->due_ms = now + retry_delay_ms(s->attempts, hint_ms, &m->rng);
    heap_push(m, s);
}

/* Pause new sends until a rate-limit window resets when the server says none is left. */
static void pause_until(struct model *m, int64_t until)
{
    if (until > m->paused_until_ms) m->paused_until_ms = until;
}

static void take_reply(struct model *m, struct slot *s, const struct provider_verdict *v, int64_t now);
static void handle_inputs_answer(struct model *m, struct slot *s, const struct http_response *answer,
                                 const struct provider_verdict *v, int64_t now);

/* An ok answer that does not parse: the call (a request of several inputs: all of it) is
 * retried, or fails when its retries are spent. */
static void bad_response(struct model *m, struct slot *s, const struct rn_err *perr, int64_t now)
{
    s->last_status = 0;
    /* the body was redacted, but the parse error may quote it unescaped: again, before a cut */
    buf_clear(&m->done_reason);
    buf_puts(&m->done_reason, perr->msg);
    redact(m, &m->done_reason);
    buf_clear(&s->reason);
    buf_puts(&s->reason, "bad response: ");
    check_put_excerpt(&s->reason, m->done_reason.data, m->done_reason.len, sizeof perr->msg);
    retry_or_fail(m, s, 0, now);
}

/* The length of the n vectors (those that are arrays) when they agree, else the length more than
 * half of them have; 0 when none is an array or no length has such a majority. */
static size_t common_length(json_t *const *vectors, size_t n)
{
    size_t first = 0, i;
    for (i = 0; i < n && !json_is_array(vectors[i]); i++) {
    }
    if (i == n) return 0;
    first = json_array_size(vectors[i]);
    int same = 1;
    for (; i < n && same; i++) same = !json_is_array(vectors[i]) || json_array_size(vectors[i]) == first;
    if (same) return first;
    size_t best = 0, best_count = 0, arrays = 0; /* they differ: the length most have (n is at most batch_inputs) */
    for (i = 0; i < n; i++) {
        if (!json_is_array(vectors[i])) continue;
        arrays++;
        size_t length = json_array_size(vectors[i]), count = 0;
        for (size_t j = 0; j < n; j++) count += json_is_array(vectors[j]) && json_array_size(vectors[j]) == length;
        if (count > best_count) best = length, best_count = count;
    }
    return 2 * best_count > arrays ? best : 0; /* no length most have: none is trusted, all go alone */
}

/* The ok answer to a request of several inputs (leader s and its group): each record takes its
 * own vector as a single answer would be taken (checked, cached, counted), with its share of
 * the answer's input tokens by its estimate; a record the answer has no vector for, or one of
 * another length than the others', goes again in a request of its own. */
static void handle_inputs_answer(struct model *m, struct slot *s, const struct http_response *answer,
                                 const struct provider_verdict *v, int64_t now)
{
    size_t n = s->group_len;
    json_t **vectors = m->group_vectors;
    memset(vectors, 0, n * sizeof *vectors);
    int64_t tokens = 0;
    struct rn_err perr;
    if (m->provider->parse_inputs(m->provider_self, answer, n, vectors, &tokens, &perr)) {
        for (size_t i = 0; i < n; i++) json_decref(vectors[i]);
        bad_response(m, s, &perr, now);
        return;
    }
    size_t length = common_length(vectors, n);
    int64_t estimate = s->group_tokens > 0 ? s->group_tokens : 1, given = 0;
    struct slot *member = s;
    s->group_len = 0;
    s->wire = &s->req;
    for (size_t i = 0; member; i++) {
        struct slot *next = member->grouped;
        member->grouped = NULL;
        member->state = SLOT_RUNNING;
        int64_t share = next ? tokens * member->tokens_estimate / estimate : tokens - given; /* the last takes the rest */
        given += share;
        json_t *vector = vectors[i];
        if (json_is_array(vector) && json_array_size(vector) == length) {
            struct model_reply *r = &m->reply;
            buf_clear(&r->text);
            r->vector = vector; /* take_reply decrefs it */
            r->tokens_in = share;
            r->tokens_out = r->tokens_cache_read = r->tokens_cache_write = 0;
            take_reply(m, member, member == s ? v : NULL, now);
        } else {
            buf_clear(&member->reason);
            if (vector) buf_printf(&member->reason, "the answer to a request of %zu inputs gave input %zu a vector of %zu numbers, "
                                   "the others %zu", n, i, json_array_size(vector), length);
            else buf_printf(&member->reason, "the answer to a request of %zu inputs has no embedding for input %zu", n, i);
            json_decref(vector);
            metric_add(m->stats.tokens_in, (double)share);
            metric_inc(m->stats.inputs_alone);
            member->alone = 1;
            member->attempts = 0;
            member->resent = 1;
            ready_push_head(m, member);
        }
        member = next;
    }
}

/* An answer classified ok: parse it, check it, and finish the record, or send the one
 * correction call, or retry when it does not parse. */
static void handle_answer(struct model *m, struct slot *s, const struct http_response *answer,
                          const struct provider_verdict *v, int64_t now)
{
    struct model_reply *r = &m->reply;
    struct rn_err perr;
    if (s->group_len) {
        handle_inputs_answer(m, s, answer, v, now);
        return;
    }
    buf_clear(&r->text);
    r->vector = NULL;
    r->tokens_in = r->tokens_out = r->tokens_cache_read = r->tokens_cache_write = 0;
    if (m->provider->parse(m->provider_self, answer, r, &perr)) {
        json_decref(r->vector);
        r->vector = NULL;
        bad_response(m, s, &perr, now);
        return;
    }
    redact(m, &r->text); /* before any excerpt of it is taken: a cut could split a secret */
    take_reply(m, s, v, now);
}

/* The reply in m->reply, parsed: count it, check it against `output`, and finish the record, or
 * send the one correction call. v is the verdict's rate-limit state (NULL: none, a test answer). */
static void take_reply(struct model *m, struct slot *s, const struct provider_verdict *v, int64_t now)
{
    struct model_reply *r = &m->reply;
    metric_add(m->stats.tokens_in, (double)r->tokens_in);
    metric_add(m->stats.tokens_out, (double)r->tokens_out);
    if (r->tokens_in == 0 && r->tokens_out == 0) metric_inc(m->stats.answers_without_usage);
    metric_add(m->stats.tokens_cache_read, (double)r->tokens_cache_read);
    metric_add(m->stats.tokens_cache_write, (double)r->tokens_cache_write);
    if (m->stats.has_price) metric_set(m->stats.cost_usd, stats_cost_usd(&m->stats));
    if (!quota_counts_tokens(&m->quota)) /* the real usage, unless the provider's own count paces */
        limits_usage(&m->limits, r->tokens_in + r->tokens_out, s->tokens_estimate);
    /* none left: wait for the reset, unless the quota knows the limit, whose bucket then waits
     * for just the refill one request needs (a reset is the time until the window is full) */
    if (v && v->remaining_requests == 0 && v->reset_requests_ms > 0 && !m->quota.requests.limit)
        pause_until(m, now + retry_cap_hint(v->reset_requests_ms));
    if (v && v->remaining_tokens == 0 && v->reset_tokens_ms > 0 && !m->quota.tokens.limit)
        pause_until(m, now + retry_cap_hint(v->reset_tokens_ms));

    buf_clear(&m->done_reason);
    buf_puts(&m->done_reason, "invalid answer: ");
    size_t prefix = m->done_reason.len;
    int ok = model_check_reply(m, r, s->record_ref, &m->done_reason) == 0;
    if (ok && m->cache.log) answer_cache_store(m, s); /* its key was made at submit; it reads r->vector */
    json_decref(r->vector);
    r->vector = NULL;
    if (ok) {
        if (s->corrected) metric_inc(m->stats.corrected);
        finish(m, s, 1, NULL);
        return;
    }
    metric_inc(m->stats.invalid_answers);
    if (!s->corrected && m->call_task != MODEL_TASK_EMBEDDING) { /* an embedding call is not corrected by words */
        /* one more try, showing the model its answer and what was wrong with it */
        struct buf t = s->answer;
        s->answer = r->text;
        r->text = t;
        set_correction(m, s, m->done_reason.data + prefix, m->done_reason.len - prefix);
        struct rn_err berr;
        if (build_call(m, s, &berr)) {
            buf_clear(&m->done_reason);
            buf_puts(&m->done_reason, berr.msg);
            finish(m, s, 0, NULL);
            return;
        }
        ready_push_head(m, s);
        return;
    }
    finish(m, s, 0, r->text.data ? r->text.data : "");
}

/* The transfer found no file descriptor for a socket: it never reached the server, so it was
 * no attempt (its next one is not a retry; the request it was counted as stays counted, and
 * descriptor_waits says how many such there were). It waits in the retry heap while
 * descriptors.c lowers the calls in flight. */
static void wait_for_descriptor(struct model *m, struct slot *s, int64_t now)
{
    s->attempts--;
    m->stats.descriptor_waits++;
    descriptors_short(m);
    s->due_ms = now + retry_delay_ms(1, DESCRIPTOR_WAIT_MS, &m->rng);
    heap_push(m, s);
}

/* Whether the failed attempt of s cannot have been about its record: the request never reached
 * a server (no connection, no such host or proxy, no TLS), or the server refused everyone for rate
 * (429) or overload (529). Such an attempt never spends the record's retry budget. */
static int blameless(const struct slot *s)
{
    if (!s->last_status) {
        CURLcode rc = s->wire->result;
        return rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_COULDNT_RESOLVE_PROXY ||
               rc == CURLE_SSL_CONNECT_ERROR;
    }
    return s->last_status == 429 || s->last_status == 529;
}

/* The attempt failed for the endpoint's sake (breaker.h): the breaker counts it. While the
 * breaker is open, or when the failure cannot have been the record's, the attempt is given
 * back; the record keeps its place and waits for the breaker (open) or its backoff. */
static void endpoint_failed(struct model *m, struct slot *s, int probe, int64_t hint_ms, int64_t now)
{
    char what[160];
    if (s->last_status) {
        snprintf(what, sizeof what, "HTTP %ld", s->last_status);
    } else if (s->wire->described) { /* a TLS or proxy failure told by its cause; may quote a URL */
        struct buf told;
        buf_init(&told);
        buf_puts(&told, s->wire->error);
        redact(m, &told);
        snprintf(what, sizeof what, "%s", told.data);
        buf_free(&told);
    } else {
        snprintf(what, sizeof what, "%s", http_result_cause(s->wire->result));
    }
    breaker_failure(&m->breaker, now, what, hint_ms, probe, &m->rng);
    if (!m->breaker.open && !blameless(s)) {
        retry_or_fail(m, s, hint_ms, now);
        return;
    }
    s->attempts--;
    s->resent = 1; /* the next send is a retry all the same, only a free one */
    if (m->breaker.open) {
        ready_push_head(m, s);
        return;
    }
    s->due_ms = now + retry_delay_ms(s->attempts + 2, hint_ms, &m->rng);
    heap_push(m, s);
}

/* A finished attempt: a transport failure (retried or not by retry.c's rules) or an answer,
 * which the provider's verdict sends on: to parse, to a retry, to a dead letter, or to stop. */
static void handle_done(struct model *m, struct slot *s)
{
    struct http_request *r = s->wire;
    int64_t now = m->now_ms;
    int probe = s->probe;
    s->probe = 0;
    if (probe) m->breaker.probe_out = 0;
    quota_completed(&m->quota);
    if (r->timings.connects > 0) metric_add(m->stats.connections, (double)r->timings.connects);
    buf_clear(&s->reason);
    if (r->no_descriptor) {
        wait_for_descriptor(m, s, now);
        return;
    }
    if (r->result != CURLE_OK) {
        s->last_status = 0;
        if (r->result == CURLE_OPERATION_TIMEDOUT) {
            buf_printf(&s->reason, "timeout after %lld ms", (long long)m->limits.timeout_ms);
            limits_congestion(&m->limits, s->sent_ms, now);
        } else if (r->too_large) {
            buf_printf(&s->reason, "response larger than %u bytes", RESPONSE_MAX);
        } else {
            buf_puts(&s->reason, r->error[0] ? r->error : curl_easy_strerror(r->result));
        }
        if (retry_transport(r->result)) endpoint_failed(m, s, probe, 0, now);
        else fail_now(m, s);
        return;
    }
    stats_latency_add(&m->stats, r->timings.total_us);
    if (r->timings.http_version >= 20) m->stats.answers_http2++; /* not metrics: summary figures only */
    else m->stats.answers_http1++;
    if (!m->fds.version_known) descriptors_version(m, r->timings.http_version);
    /* before any code reads or cuts the body: an excerpt or a parse error could split a secret */
    redact(m, &r->response);
    struct http_response answer = http_response_of(r);
    struct provider_verdict v;
    provider_classify(m->provider, m->provider_self, &answer, &v);
    quota_observe(&m->quota, &m->limits, s, &v, now);
    /* the server's part of the time: from the request on the wire to the first byte back, so
     * connecting and our own queueing do not count */
    int64_t rtt_us = r->timings.starttransfer_us - r->timings.pretransfer_us;
    int requests_on_wire = (on_wire(m) + m->batch_inputs - 1) / m->batch_inputs;
    limits_answer(&m->limits, v.rate_limited, v.outcome == PROVIDER_OK, rtt_us > 0 ? rtt_us : 0, now, requests_on_wire);
    if (v.rate_limited) metric_inc(m->stats.rate_limited);
    int endpoint = v.outcome == PROVIDER_RETRY && (v.rate_limited || v.congestion || r->status >= 500);
    if (!endpoint) breaker_success(&m->breaker, now); /* it answered, for this record */
    if (v.outcome == PROVIDER_OK) {
        handle_answer(m, s, &answer, &v, now);
        return;
    }
    s->last_status = r->status;
    check_put_excerpt(&s->reason, answer.body, answer.body_len, EXCERPT_MAX);
    if (v.outcome == PROVIDER_RETRY) {
        int64_t hint = retry_cap_hint(v.retry_after_ms);
        if (v.congestion) limits_congestion(&m->limits, s->sent_ms, now);
        if (endpoint) endpoint_failed(m, s, probe, hint, now);
        else retry_or_fail(m, s, hint, now);
        /* no stampede: when the server says how long to wait, nothing new goes out before then.
         * With concurrency "auto" a 429 that is one answer among mostly good ones says the
         * window was too big, and the cut above is the answer; the pause is for a server
         * that refuses most requests, or a window that cannot shrink further. */
        if (v.rate_limited && hint > 0 && limits_pause_all(&m->limits)) pause_until(m, now + hint);
    } else if (v.outcome == PROVIDER_FAIL_JOB) {
        engine_fatal_answer(m, r->method, r->url.data, &answer, v.why);
        for (struct slot *member = s; member; member = member->grouped) member->state = SLOT_STOPPED;
    } else if (s->group_len > 1) {
        split_group(m, s); /* the record at fault fails alone */
    } else {
        if (v.why) { /* the provider's reading first, as for the job: "WHY: HTTP 400: body" */
            buf_clear(&m->done_reason);
            buf_printf(&m->done_reason, "%s: HTTP %ld: ", v.why, r->status);
            buf_put(&m->done_reason, s->reason.data, s->reason.len);
            finish(m, s, 0, NULL);
        } else {
            fail_now(m, s);
        }
    }
}

/* ---- credentials the provider fetches over HTTP (refresh, refreshed) ---- */

#define CREDENTIALS_POLL_MS 100     /* how often a provider without credentials is asked again */
#define CREDENTIALS_RESPONSE_MAX (1u << 20)

/* Send the provider's credentials request when it wants one and none is in flight. */
static void credentials_tick(struct model *m, int64_t now)
{
    if (!m->provider->refresh || m->credentials_running || m->fatal.len || m->env->answer) return;
    struct rn_err err;
    struct http_request *r = &m->credentials;
    http_request_clear(r);
    int rc = m->provider->refresh(m->provider_self, now, r, &err);
    if (rc == 0) return;
    if (rc > 0) {
        r->timeout_ms = m->limits.timeout_ms;
        r->connect_timeout_ms = m->limits.connect_timeout_ms;
        r->max_response = CREDENTIALS_RESPONSE_MAX;
        r->user = NULL;
        rc = http_start(m->http, r, now, &err) ? -1 : 0;
        if (rc == 0) m->credentials_running = 1;
    }
    if (rc < 0) {
        buf_clear(&m->done_reason);
        buf_printf(&m->done_reason, "credentials: %s", err.msg);
        set_fatal(m, m->done_reason.data);
    }
}

/* The credentials request finished: the provider reads its answer (not redacted first: it
 * holds the new token, which the provider adds to the secrets). */
static void credentials_done(struct model *m)
{
    struct http_request *r = &m->credentials;
    m->credentials_running = 0;
    struct http_response answer = http_response_of(r);
    const char *failure = NULL;
    if (r->result != CURLE_OK) failure = r->too_large ? "the answer is too large" : r->error[0] ? r->error : curl_easy_strerror(r->result);
    struct rn_err err;
    if (m->provider->refreshed(m->provider_self, &answer, failure, m->now_ms, &err)) {
        buf_clear(&m->done_reason);
        buf_printf(&m->done_reason, "credentials: %s", err.msg);
        set_fatal(m, m->done_reason.data);
    }
    m->credentials_wait = 0; /* sends ask authorize again */
    if (r->response.data) explicit_bzero(r->response.data, r->response.len); /* it held a token */
    buf_clear(&r->response);
}

/* 1: sent; 0: it never went out (its record finished or the job stops); -1: authorize has no
 * credentials yet, the slot is back at the head of the queue and sends wait for them. */
static int start_transfer(struct model *m, struct slot *s, int64_t now)
{
    struct rn_err err;
    if (m->env->answer) { /* runnel test: the test's answer stands in for the provider's */
        struct model_reply *r = &m->reply;
        buf_clear(&r->text);
        r->vector = NULL;
        r->tokens_in = r->tokens_out = r->tokens_cache_read = r->tokens_cache_write = 0;
        if (m->env->answer(m->env->answer_ctx, &s->call, r, &err)) {
            json_decref(r->vector);
            r->vector = NULL;
            buf_clear(&m->done_reason);
            buf_puts(&m->done_reason, err.msg);
            finish(m, s, 0, NULL);
            return 0;
        }
        metric_inc(m->stats.requests);
        take_reply(m, s, NULL, now);
        return 0;
    }
    if (m->provider->authorize) {
        http_request_truncate_headers(s->wire, s->wire == &s->req ? s->built_headers : s->inputs_headers); /* the last attempt's */
        int rc = m->provider->authorize(m->provider_self, s->wire, &err);
        if (rc > 0) {
            m->credentials_wait = 1;
            ready_push_head(m, s);
            return -1;
        }
        if (rc) {
            buf_clear(&m->done_reason);
            buf_printf(&m->done_reason, "authorize: %s", err.msg);
            stop_job(m, s, m->done_reason.data);
            return 0;
        }
    }
    if (!m->fds.sent) descriptors_first_send(m, s->wire);
    breaker_endpoint(&m->breaker, s->wire->url.data);
    if (http_start(m->http, s->wire, now, &err)) {
        buf_clear(&m->done_reason);
        buf_puts(&m->done_reason, err.msg);
        finish(m, s, 0, NULL);
        return 0;
    }
    /* counted once it is really on its way */
    s->attempts++;
    s->sent_ms = now;
    quota_sent(&m->quota, s);
    metric_inc(m->stats.requests);
    if (s->group_len) {
        metric_inc(m->stats.inputs_requests);
        metric_add(m->stats.inputs_records, (double)s->group_len);
    }
    if (s->attempts > 1 || s->resent) metric_inc(m->stats.retried); /* a send again, budget spent or not */
    s->resent = 0;
    s->state = SLOT_RUNNING;
    if (http_running(m->http) > m->stats.in_flight_max) m->stats.in_flight_max = http_running(m->http);
    limits_sent(&m->limits, now);
    return 1;
}

/* The calls in flight are at the limit (lowered by descriptors.c, or the "auto" window): the
 * rest waits for answers to make room. */
static int window_closed(const struct model *m)
{
    int running = http_running(m->http);
    return running >= m->limits.concurrency || (m->limits.adaptive && running >= (int)m->limits.window);
}

/* Whether the record of s may ride in a request of several inputs: embeddings with batch_inputs,
 * a first attempt, not sent alone on purpose. */
static int groupable(const struct model *m, const struct slot *s)
{
    return m->batch_inputs > 1 && !s->group_len && !s->alone && !s->attempts && !s->resent && !s->corrected;
}

/* Make s the leader of a request of several inputs: the records behind it in the ready queue
 * that may ride with it (groupable), in queue order, up to batch_inputs, the provider's token
 * cap and what the token bucket allows now; none waits for more to come. With one record, or
 * when build_inputs fails, s goes alone as it is. */
static void gather(struct model *m, struct slot *s, int64_t now)
{
    int64_t tokens = s->tokens_estimate, cap = m->provider->max_input_tokens;
    size_t n = 1;
    struct slot **tail = &s->grouped, *prev = NULL, *c = m->ready_head;
    m->group_calls[0] = &s->call;
    while (c && n < (size_t)m->batch_inputs) {
        struct slot *next = c->next;
        if (!groupable(m, c)) {
            prev = c;
            c = next;
            continue;
        }
        int64_t more = tokens + c->tokens_estimate;
        if ((cap > 0 && more > cap) || limits_wait_ms(&m->limits, now, more) > 0) break;
        if (prev) prev->next = next; /* out of the ready queue */
        else m->ready_head = next;
        if (m->ready_tail == c) m->ready_tail = prev;
        c->next = NULL;
        c->state = SLOT_GROUPED;
        *tail = c;
        tail = &c->grouped;
        m->group_calls[n++] = &c->call;
        tokens = more;
        c = next;
    }
    if (n == 1) return;
    if (!s->inputs_req) {
        s->inputs_req = rn_calloc(1, sizeof *s->inputs_req);
        http_request_init(s->inputs_req);
        s->inputs_req->user = s;
        s->inputs_req->timeout_ms = m->limits.timeout_ms;
        s->inputs_req->connect_timeout_ms = m->limits.connect_timeout_ms;
        s->inputs_req->max_response = RESPONSE_MAX;
    }
    http_request_clear(s->inputs_req);
    struct rn_err err;
    if (m->provider->build_inputs(m->provider_self, m->group_calls, n, s->inputs_req, &err)) {
        struct slot *reversed = NULL; /* back to the head of the queue, in their order */
        for (struct slot *f = s->grouped, *after; f; f = after) {
            after = f->grouped;
            f->grouped = reversed;
            reversed = f;
        }
        for (struct slot *f = reversed, *after; f; f = after) {
            after = f->grouped;
            f->grouped = NULL;
            ready_push_head(m, f);
        }
        s->grouped = NULL;
        return;
    }
    s->inputs_headers = http_request_header_mark(s->inputs_req);
    s->wire = s->inputs_req;
    s->group_len = n;
    s->group_tokens = tokens;
}

/* Move due retries to the ready queue and send what the limits allow. Returns how many were
 * started. */
static int start_ready(struct model *m, int64_t now)
{
    while (m->heap_len && m->heap[0]->due_ms <= now) ready_push_head(m, heap_pop(m));
    int started = 0;
    while (m->ready_head && now >= m->paused_until_ms && !m->fatal.len && !m->credentials_wait) {
        if (window_closed(m)) {
            m->limits.window_full = 1; /* after a cut */
            break;
        }
        struct slot *s = m->ready_head;
        int may = breaker_may_send(&m->breaker, now);
        if (!may) break;    /* open: one probe at a time, when due */
        if (quota_hold(&m->quota)) break; /* the first answer says what the quota is */
        if (limits_wait_ms(&m->limits, now, slot_send_tokens(s)) > 0) break;
        ready_pop(m);
        if (may == 1 && groupable(m, s)) gather(m, s, now);
        int rc = start_transfer(m, s, now);
        if (rc < 0) break;  /* no credentials yet */
        if (!rc) continue;  /* it never went out: it takes no budget */
        if (may == 2) {
            s->probe = 1;
            breaker_probe_sent(&m->breaker);
        }
        limits_spend(&m->limits, slot_send_tokens(s));
        started++;
    }
    return started;
}

/* When something not driven by a socket can happen: a retry falls due, a pause ends, a bucket
 * refills, curl's timer fires. INT64_MAX when nothing waits. */
static int64_t next_due_ms(struct model *m, int64_t now)
{
    int64_t due = INT64_MAX;
    if (m->heap_len) due = m->heap[0]->due_ms;
    int64_t curl_due = http_due_ms(m->http);
    if (curl_due >= 0 && curl_due < due) due = curl_due;
    if (m->batch.on && m->batch.due_ms < due) due = m->batch.due_ms;
    if (m->occupied) {
        int64_t b = breaker_due_ms(&m->breaker, now); /* a probe, or the outage's end */
        if (b < due) due = b;
    }
    if (m->ready_head && m->breaker.open) {
        /* the breaker's probe time is in due already; an answer or the probe's wakes it */
    } else if (m->ready_head && m->credentials_wait) { /* the credentials answer wakes the loop */
        if (!m->credentials_running && now + CREDENTIALS_POLL_MS < due) due = now + CREDENTIALS_POLL_MS;
    } else if (m->ready_head && !window_closed(m) && !quota_hold(&m->quota)) { /* else an answer makes room */
        int64_t w = m->paused_until_ms - now;
        int64_t l = limits_wait_ms(&m->limits, now, slot_send_tokens(m->ready_head));
        if (l > w) w = l;
        if (w < 1) w = 1;
        if (now + w < due) due = now + w;
    }
    return due;
}

static void drain_completions(struct model *m)
{
    struct http_request *r;
    while ((r = http_next_done(m->http))) {
        if (r == &m->credentials) credentials_done(m);
        else if (r->user == &m->batch) batch_answer(m, r);
        else handle_done(m, r->user);
    }
}

/* Do what is due at m->now_ms: report finished transfers, send what the limits allow, and run
 * curl's timer, which is how the transfers just added start (libcurl asks for a timeout of 0
 * when a handle is added). Bounded: a retry started here that fails at once waits for the
 * next call. */
static int advance(struct model *m, struct rn_err *err)
{
    drain_completions(m);
    credentials_tick(m, m->now_ms);
    for (int round = 0;; round++) {
        start_ready(m, m->now_ms);
        if (round == 4) return 0;
        int ran = http_run_timer(m->http, m->now_ms, err);
        if (ran < 0) return rn_wrap(err, "model.%s", m->provider_name);
        if (!ran) return 0;
        drain_completions(m);
    }
}

/* The endpoint has been unhealthy for limits.outage: the job stops, committing what was
 * written (the pipeline's part). */
static void outage_check(struct model *m)
{
    breaker_metrics(&m->breaker, m->now_ms);
    if (m->fatal.len || !breaker_expired(&m->breaker, m->now_ms)) return;
    char d[32];
    rn_format_duration_ms(d, sizeof d, m->now_ms - m->breaker.since_ms);
    buf_printf(&m->fatal, "model endpoint %s: unreachable for %s (%s)",
               m->breaker.endpoint[0] ? m->breaker.endpoint : m->provider_name, d, m->breaker.reason);
    redact(m, &m->fatal);
    m->outage = 1;
}

int model_outage(const struct model *m) { return m->outage; }
int64_t model_outage_ms(const struct model *m) { return m->limits.outage_ms; }

int model_wants_poll(struct model *m) { return m->woken || model_in_flight(m) > 0; }

int model_poll(struct model *m, int timeout_ms, model_done_fn done, void *ctx, struct rn_err *err)
{
    m->done = done;
    m->done_ctx = ctx;
    if (m->fatal.len) return rn_fail(err, "%s", m->fatal.data);
    int woken = m->woken;
    m->woken = 0;
    size_t hits = answer_cache_report(m);
    m->now_ms = rn_now_ms();
    answer_cache_tick(m, m->now_ms);
    if (m->batch.on) batch_tick(m, m->now_ms);
    if (m->fatal.len) return rn_fail(err, "%s", m->fatal.data);
    if (m->occupied == 0 && !m->batch.on && !woken) return 0; /* woken: an idle connection's socket to hand curl */
    uint64_t finished = metric_u64(m->stats.ok) + metric_u64(m->stats.failed);
    if (advance(m, err)) return -1;
    if (m->batch.on) batch_tick(m, m->now_ms);
    int wait = 0;
    if (timeout_ms > 0 && !hits && metric_u64(m->stats.ok) + metric_u64(m->stats.failed) == finished && !m->fatal.len) {
        int64_t left = next_due_ms(m, m->now_ms) - m->now_ms;
        wait = left < timeout_ms ? (left > 0 ? (int)left : 0) : timeout_ms;
    }
    if (http_wait(m->http, wait, &m->now_ms, err)) return rn_wrap(err, "model.%s", m->provider_name);
    if (advance(m, err)) return -1;
    outage_check(m);
    if (m->loop) loop_timer_at(m->loop, &m->wake, next_due_ms(m, m->now_ms));
    metric_set(m->stats.in_flight, (double)model_in_flight(m));
    metric_set(m->stats.window, m->limits.adaptive ? m->limits.window : (double)m->limits.concurrency);
    if (m->fatal.len) return rn_fail(err, "%s", m->fatal.data);
    return 0;
}
