/* quota.c: running just under the quota the provider announces. Every answer may carry the
 * provider's count (OpenAI: x-ratelimit-limit-*, -remaining-*, -reset-* for requests and tokens;
 * Anthropic: anthropic-ratelimit-*-limit, -remaining, -reset, resets as times; read by classify
 * into the verdict). From them this learns each limit and how fast its window
 * refills, and paces the engine's rpm/tpm buckets (limits.c) at QUOTA_SHARE of that refill, or
 * at the job's declared rpm/tpm when smaller.
 *
 * Until the first attempt ends only one request is out, so a quota another client has nearly
 * spent is known before a whole window of requests hits it.
 *
 * The one thing to know: the provider's count is the truth, not ours. After each answer the
 * buckets may hold no more than what the provider said was left, refilled since, less what was
 * sent after that request and a reserve; so a token estimate that differs from the provider's,
 * or another client sharing the key, slows the job instead of running the count to zero. */
#include "models/model_int.h"

#include <string.h>

#define QUOTA_SHARE 0.98            /* pace at this share of the refill the provider announces */
#define QUOTA_RESERVE 0.01          /* ... and keep this share of the limit in its count */
#define QUOTA_DECAY 0.95            /* weight of the past in the refill samples */
#define QUOTA_WINDOW_MS 60000.0     /* a limit is per minute until the resets say how fast it refills */
#define QUOTA_SAMPLE_MS 50          /* a refill sample: a reset at least this long ... */
#define QUOTA_SAMPLE_UNITS 10       /* ... and at least this many units missing */

void quota_init(struct quota *q, const struct limits *l)
{
    memset(q, 0, sizeof *q);
    q->requests.declared_per_ms = l->rpm.on ? l->rpm.per_ms : 0;
    q->tokens.declared_per_ms = l->tpm.on ? l->tpm.per_ms : 0;
}

void quota_sent(struct quota *q, struct slot *s)
{
    q->requests.sent += 1;
    q->tokens.sent += (double)slot_send_tokens(s);
    s->quota_requests = q->requests.sent;
    s->quota_tokens = q->tokens.sent;
}

/* The pace of a dimension: its learned refill times QUOTA_SHARE, or the declared rate. */
static double pace_of(const struct quota_dimension *d)
{
    double pace = d->refill_per_ms * QUOTA_SHARE;
    if (d->declared_per_ms > 0 && d->declared_per_ms < pace) pace = d->declared_per_ms;
    return pace;
}

/* One dimension of one answer: the provider announced limit and had `remaining` left when it
 * counted the request (whose own cost and cumulative mark are given), full again in reset_ms. */
static void observe(struct quota_dimension *d, struct bucket *b, int64_t limit, int64_t remaining, int64_t reset_ms,
                    double cost, double mark, int64_t sent_ms, int64_t now)
{
    if (limit > 0) d->limit = limit;
    if (d->limit <= 0 || remaining < 0) return;
    double left = (double)(remaining < d->limit ? remaining : d->limit);
    double deficit = (double)d->limit - left;
    /* refill = what is missing / how long until it is back; a small deficit is mostly the
     * rounding of the headers (remaining in whole units, resets in whole ms), so it is no sample */
    if (reset_ms >= QUOTA_SAMPLE_MS && deficit >= QUOTA_SAMPLE_UNITS && deficit >= (double)d->limit * QUOTA_RESERVE) {
        d->deficit_sum = d->deficit_sum * QUOTA_DECAY + deficit - 0.5; /* remaining is rounded down: half a unit, on average */
        d->reset_sum = d->reset_sum * QUOTA_DECAY + (double)reset_ms;
    }
    d->refill_per_ms = d->reset_sum > 0 ? d->deficit_sum / d->reset_sum : (double)d->limit / QUOTA_WINDOW_MS;
    limits_bucket_pace(b, pace_of(d), now);
    /* what the provider has left now: what it said, refilled since, less what went out after */
    double elapsed = (double)(now > sent_ms ? now - sent_ms : 0);
    double now_left = left + d->refill_per_ms * elapsed;
    if (now_left > (double)d->limit) now_left = (double)d->limit;
    now_left -= d->sent - mark;
    double reserve = (double)d->limit * QUOTA_RESERVE;
    if (reserve < 2 * cost) reserve = 2 * cost;
    if (now_left - reserve < b->level) {
        limits_bucket_cap(b, now_left - reserve, now);
        d->held++;
    }
}

/* A reset as the time from when the provider counted the request, which is about when it was
 * sent: a reset given as a time and measured on arrival is short by the answer's latency, and
 * a refill learned from it too fast by as much. */
static int64_t reset_from_send(const struct provider_verdict *v, int64_t reset_ms, int64_t sent_ms, int64_t now)
{
    if (!v->resets_are_times || reset_ms < 0 || now <= sent_ms) return reset_ms;
    return reset_ms + (now - sent_ms);
}

void quota_observe(struct quota *q, struct limits *l, const struct slot *s, const struct provider_verdict *v, int64_t now)
{
    if (v->limit_requests <= 0 && v->limit_tokens <= 0 && !q->requests.limit && !q->tokens.limit) return; /* none said */
    observe(&q->requests, &l->rpm, v->limit_requests, v->remaining_requests,
            reset_from_send(v, v->reset_requests_ms, s->sent_ms, now), 1, s->quota_requests, s->sent_ms, now);
    observe(&q->tokens, &l->tpm, v->limit_tokens, v->remaining_tokens, reset_from_send(v, v->reset_tokens_ms, s->sent_ms, now),
            (double)slot_send_tokens(s), s->quota_tokens, s->sent_ms, now);
}

int quota_counts_tokens(const struct quota *q) { return q->tokens.limit > 0; }

void quota_completed(struct quota *q) { q->completions++; }

int quota_hold(const struct quota *q)
{
    return !q->completions && q->requests.sent >= 1 && q->requests.declared_per_ms <= 0 && q->tokens.declared_per_ms <= 0;
}

static void put_count(struct buf *b, double v)
{
    char digits[32];
    snprintf(digits, sizeof digits, "%.0f", v);
    size_t n = strlen(digits);
    for (size_t i = 0; i < n; i++) { /* 29400 -> 29,400 */
        if (i && (n - i) % 3 == 0 && digits[i - 1] != '-') buf_putc(b, ',');
        buf_putc(b, digits[i]);
    }
}

void quota_print(const struct quota *q, const struct limits *l, FILE *out)
{
    if (!q->requests.limit && !q->tokens.limit) return;
    const struct quota_dimension *dims[2] = {&q->requests, &q->tokens};
    const char *units[2] = {"requests", "tokens"};
    const struct bucket *buckets[2] = {&l->rpm, &l->tpm};
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "  quota: the provider allows");
    for (int i = 0, first = 1; i < 2; i++) {
        if (!dims[i]->limit) continue;
        buf_puts(&b, first ? " " : " and ");
        put_count(&b, (double)dims[i]->limit);
        buf_printf(&b, " %s (refilled at ", units[i]);
        put_count(&b, dims[i]->refill_per_ms * 60000);
        buf_puts(&b, "/min)");
        first = 0;
    }
    buf_puts(&b, "; paced at");
    for (int i = 0, first = 1; i < 2; i++) {
        if (!dims[i]->limit || !buckets[i]->on) continue;
        buf_puts(&b, first ? " " : " and ");
        put_count(&b, buckets[i]->per_ms * 60000);
        buf_printf(&b, " %s/min", units[i]);
        if (dims[i]->declared_per_ms > 0 && dims[i]->declared_per_ms <= pace_of(dims[i]) * 1.000001) buf_puts(&b, " (declared)");
        first = 0;
    }
    buf_printf(&b, "; its count held the pace back %llu times\n", (unsigned long long)(q->requests.held + q->tokens.held));
    fputs(b.data, out);
    buf_free(&b);
}

static json_t *per_min(double per_ms) { return per_ms > 0 ? json_integer((json_int_t)(per_ms * 60000 + 0.5)) : json_null(); }

void quota_json(const struct quota *q, const struct limits *l, json_t *model)
{
    if (!q->requests.limit && !q->tokens.limit) {
        json_object_set_new(model, "quota", json_null());
        return;
    }
    json_t *o = json_object();
    json_t *announced = json_object(), *refill = json_object(), *paced = json_object(), *declared = json_object();
    json_object_set_new(announced, "requests", q->requests.limit ? json_integer(q->requests.limit) : json_null());
    json_object_set_new(announced, "tokens", q->tokens.limit ? json_integer(q->tokens.limit) : json_null());
    json_object_set_new(refill, "requests", per_min(q->requests.refill_per_ms));
    json_object_set_new(refill, "tokens", per_min(q->tokens.refill_per_ms));
    json_object_set_new(paced, "requests", per_min(l->rpm.on ? l->rpm.per_ms : 0));
    json_object_set_new(paced, "tokens", per_min(l->tpm.on ? l->tpm.per_ms : 0));
    json_object_set_new(declared, "requests", per_min(q->requests.declared_per_ms));
    json_object_set_new(declared, "tokens", per_min(q->tokens.declared_per_ms));
    json_object_set_new(o, "announced", announced);
    json_object_set_new(o, "refill_per_min", refill);
    json_object_set_new(o, "paced_per_min", paced);
    json_object_set_new(o, "declared_per_min", declared);
    json_object_set_new(o, "held_back", json_integer((json_int_t)(q->requests.held + q->tokens.held)));
    json_object_set_new(model, "quota", o);
}
