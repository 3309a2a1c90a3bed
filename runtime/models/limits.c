/* limits.c: how fast a model may be called: the `limits` declaration (concurrency, rpm, tpm,
 * timeouts, retries), token buckets for rpm and tpm, and the window of concurrency = "auto".
 *
 * Adaptive concurrency is AIMD on the window of requests on the wire, in the manner of
 * Vector's adaptive request concurrency. Time runs in intervals of about one baseline RTT. The
 * window grows by one per interval whose answers came back within RTT_TOLERANCE of the baseline
 * while the window was full (in slow start, until the first cut: by one per answer, doubling
 * per RTT). It is cut, at most once per RTT, on a 429, a 5xx or a timeout, and on an interval
 * whose mean RTT rose past the tolerance: halved in slow start, times AUTO_DECREASE after. The
 * baseline is an EWMA of the interval RTTs measured at a window of at most AUTO_START, pulled
 * down by any faster interval; it never follows the RTT up at a high window, where a rise is
 * our own doing. */
#include "models/model_int.h"

#include <lauxlib.h>
#include <math.h>
#include <string.h>

#define AUTO_MAX 256                /* concurrency = "auto": the window grows up to this */
#define AUTO_START LIMITS_AUTO_START /* ... starts here, and RTTs measured at or below it are the baseline */
#define AUTO_MIN 1
#define AUTO_DECREASE 0.9           /* the window after a congestion signal, past slow start */
#define RTT_TOLERANCE 0.3           /* an RTT this much above the baseline (plus RTT_SLACK_US) is congestion */
#define RTT_SLACK_US 2000
#define RTT_BASELINE_WEIGHT 0.25    /* EWMA weight of a new interval in the RTT baseline */
#define SHARE_429_WEIGHT (1.0 / 16) /* EWMA weight of one answer in the share of 429s */
#define SHARE_429_PAUSE 0.75        /* auto: a 429 pauses all sends only when most answers are 429s */

/* ---- rpm and tpm ---- */

static void bucket_init(struct bucket *b, double per_minute, int64_t now)
{
    b->on = 1;
    b->per_ms = per_minute / 60000.0;
    b->capacity = per_minute / 60.0; /* a second's worth of burst */
    if (b->capacity < 1) b->capacity = 1;
    b->level = b->capacity;
    b->last_ms = now;
}

static void bucket_refill(struct bucket *b, int64_t now)
{
    if (now > b->last_ms) {
        b->level += (double)(now - b->last_ms) * b->per_ms;
        if (b->level > b->capacity) b->level = b->capacity;
        b->last_ms = now;
    }
}

/* A request bigger than the whole bucket waits for a full bucket, then runs it into debt. */
static double bucket_need(const struct bucket *b, double amount)
{
    return amount < b->capacity ? amount : b->capacity;
}

static int64_t bucket_wait_ms(struct bucket *b, int64_t now, double amount)
{
    if (!b->on) return 0;
    bucket_refill(b, now);
    double missing = bucket_need(b, amount) - b->level;
    if (missing <= 0) return 0;
    return (int64_t)ceil(missing / b->per_ms);
}

int64_t limits_wait_ms(struct limits *l, int64_t now, int64_t tokens)
{
    if (!l->rpm.on && !l->tpm.on) return 0; /* the usual case: no rate limits declared */
    int64_t r = bucket_wait_ms(&l->rpm, now, 1), t = bucket_wait_ms(&l->tpm, now, (double)tokens);
    return r > t ? r : t;
}

void limits_bucket_pace(struct bucket *b, double per_ms, int64_t now)
{
    if (!b->on) {
        b->on = 1;
        b->last_ms = now;
        b->level = per_ms * 1000;
    } else {
        bucket_refill(b, now);
    }
    b->per_ms = per_ms;
    b->capacity = per_ms * 1000; /* a second's worth of burst, as for a declared limit */
    if (b->capacity < 1) b->capacity = 1;
    if (b->level > b->capacity) b->level = b->capacity;
}

void limits_bucket_cap(struct bucket *b, double most, int64_t now)
{
    if (!b->on) return;
    bucket_refill(b, now);
    if (b->level > most) b->level = most;
}

void limits_spend(struct limits *l, int64_t tokens)
{
    if (l->rpm.on) l->rpm.level -= 1;
    if (l->tpm.on) l->tpm.level -= (double)tokens;
}

void limits_usage(struct limits *l, int64_t used, int64_t estimate)
{
    if (l->tpm.on && used > 0) l->tpm.level -= (double)(used - estimate);
}

/* ---- the declaration ---- */

/* The `limits` table as the declaration checked it (MODEL_LIMITS_OPTIONS in models/model.h:
 * concurrency an integer in range or "auto", rpm and tpm above 0, durations, retries 0..100). */
int limits_read(struct limits *l, lua_State *L, int opts, struct rn_err *err)
{
    (void)err;
    l->concurrency = 64;
    l->retries = 5;
    l->outage_ms = MODEL_OUTAGE_DEFAULT_MS;
    l->timeout_ms = 30000;
    l->connect_timeout_ms = -1;
    if (opt_push(L, opts, "limits")) {
        int t = lua_gettop(L);
        lua_getfield(L, t, "concurrency");
        if (lua_type(L, -1) == LUA_TSTRING) l->adaptive = 1; /* the only string the spec lets through: "auto" */
        else if (lua_isinteger(L, -1)) l->concurrency = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
        double rpm = opt_number(L, t, "rpm", 0), tpm = opt_number(L, t, "tpm", 0);
        if (rpm > 0) bucket_init(&l->rpm, rpm, rn_now_ms());
        if (tpm > 0) bucket_init(&l->tpm, tpm, rn_now_ms());
        l->timeout_ms = opt_duration_ms(L, t, "timeout", 30000);
        l->connect_timeout_ms = opt_duration_ms(L, t, "connect_timeout", -1);
        l->retries = (int)opt_integer(L, t, "retries", 5);
        l->outage_ms = opt_duration_ms(L, t, "outage", MODEL_OUTAGE_DEFAULT_MS);
        lua_pop(L, 1);
    }
    if (l->timeout_ms < 1) l->timeout_ms = 1;
    if (l->connect_timeout_ms < 0) l->connect_timeout_ms = l->timeout_ms < 10000 ? l->timeout_ms : 10000;
    if (l->connect_timeout_ms < 1) l->connect_timeout_ms = 1;
    if (l->adaptive) {
        l->concurrency = AUTO_MAX;
        l->window = l->window_min = l->window_max = AUTO_START;
        l->threshold = AUTO_MAX;
    }
    return 0;
}

/* ---- the "auto" window ---- */

static void window_set(struct limits *l, double window)
{
    if (window < AUTO_MIN) window = AUTO_MIN;
    if (window > l->concurrency) window = l->concurrency;
    l->window = window;
    if (window < l->window_min) l->window_min = window;
    if (window > l->window_max) l->window_max = window;
}

void limits_cap(struct limits *l, int calls)
{
    if (calls < AUTO_MIN) calls = AUTO_MIN;
    l->concurrency = calls;
    if (!l->adaptive) return;
    if (l->threshold > calls) l->threshold = calls;
    if (l->window > calls) window_set(l, calls);
}

static void window_cut(struct limits *l, int64_t now)
{
    window_set(l, l->window < l->threshold ? l->window / 2 : l->window * AUTO_DECREASE);
    l->threshold = l->window;
    l->last_cut_ms = now;
    l->interval_cut = 1;
}

/* A congestion signal (429, 5xx, timeout) from an attempt sent at sent_ms: only a request sent
 * since the last cut may cut again, so the window shrinks at most once per RTT. */
void limits_congestion(struct limits *l, int64_t sent_ms, int64_t now)
{
    if (!l->adaptive || sent_ms < l->last_cut_ms) return;
    window_cut(l, now);
}

/* Close the measuring interval once it lasted a baseline RTT, and grow or cut the window. */
static void window_interval(struct limits *l, int64_t now, int on_wire)
{
    int64_t length = (int64_t)(l->rtt_baseline_us / 1000);
    if (length < 1) length = 1;
    if (now - l->interval_start_ms < length) return;
    if (l->interval_answers) {
        double mean = l->interval_rtt_us / (double)l->interval_answers;
        if (l->rtt_baseline_us <= 0) l->rtt_baseline_us = mean;
        int rose = mean > l->rtt_baseline_us * (1 + RTT_TOLERANCE) + RTT_SLACK_US;
        if (l->window <= AUTO_START || mean < l->rtt_baseline_us)
            l->rtt_baseline_us += RTT_BASELINE_WEIGHT * (mean - l->rtt_baseline_us);
        if (l->interval_cut) {
            /* this RTT's cut is made */
        } else if (rose) {
            /* the answers of the first interval after a cut were mostly sent before it */
            if (l->window > AUTO_START && now - l->last_cut_ms >= 2 * length) window_cut(l, now);
        } else if (l->window >= l->threshold && l->window_full) {
            window_set(l, l->window + 1);
        }
    }
    l->interval_start_ms = now;
    l->interval_rtt_us = 0;
    l->interval_answers = 0;
    l->interval_cut = 0;
    l->window_full = on_wire >= (int)l->window;
}

/* A 2xx answer whose request the server held for rtt_us. */
static void window_answer(struct limits *l, int64_t rtt_us, int64_t now, int on_wire)
{
    l->interval_rtt_us += (double)rtt_us;
    l->interval_answers++;
    if (l->window < l->threshold && l->window_full) window_set(l, l->window + 1);
    window_interval(l, now, on_wire);
}

void limits_answer(struct limits *l, int rate_limited, int ok, int64_t rtt_us, int64_t now, int on_wire)
{
    if (!l->adaptive) return;
    l->share_429 += SHARE_429_WEIGHT * ((rate_limited ? 1 : 0) - l->share_429);
    if (ok) window_answer(l, rtt_us, now, on_wire);
}

void limits_sent(struct limits *l, int64_t now)
{
    if (!l->adaptive) return;
    l->window_sum += l->window;
    l->window_samples++;
    if (!l->interval_start_ms) l->interval_start_ms = now; /* the first interval starts with the first send */
}

int limits_pause_all(const struct limits *l)
{
    return !l->adaptive || l->share_429 >= SHARE_429_PAUSE || l->window <= AUTO_MIN;
}

/* The mean window the requests were sent under. */
double limits_window_mean(const struct limits *l)
{
    return l->window_samples ? l->window_sum / (double)l->window_samples : l->window;
}
