/* test_quota.c: models/quota.c, the pacing at the quota a provider announces, fed verdicts as
 * classify makes them from OpenAI's x-ratelimit-* headers, without a network. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "models/model_int.h"

static struct provider_verdict verdict(int64_t limit_r, int64_t left_r, int64_t reset_r, int64_t limit_t,
                                       int64_t left_t, int64_t reset_t)
{
    struct provider_verdict v;
    provider_verdict_init(&v);
    v.limit_requests = limit_r;
    v.remaining_requests = left_r;
    v.reset_requests_ms = reset_r;
    v.limit_tokens = limit_t;
    v.remaining_tokens = left_t;
    v.reset_tokens_ms = reset_t;
    return v;
}

static int near(double a, double b, double share) { return fabs(a - b) <= fabs(b) * share; }

/* Send one request of `tokens` at now through q and l, as the engine does. */
static void send_one(struct quota *q, struct limits *l, struct slot *s, int64_t tokens, int64_t now)
{
    s->tokens_estimate = tokens;
    s->sent_ms = now;
    quota_sent(q, s);
    limits_spend(l, tokens);
}

int main(void)
{
    struct limits l;
    struct quota q;
    struct slot s;
    memset(&s, 0, sizeof s);

    /* nothing announced: no pacing, and no hold once the first attempt ended */
    memset(&l, 0, sizeof l);
    quota_init(&q, &l);
    CHECK(!quota_hold(&q), "nothing sent: no hold");
    send_one(&q, &l, &s, 10, 1000);
    CHECK(quota_hold(&q), "one request out, none back: the rest wait for it");
    quota_completed(&q);
    struct provider_verdict none = verdict(-1, -1, -1, -1, -1, -1);
    quota_observe(&q, &l, &s, &none, 1020);
    CHECK(!quota_hold(&q) && !l.rpm.on && !l.tpm.on && !quota_counts_tokens(&q),
          "an answer without headers: no hold, no buckets (rpm %d, tpm %d)", l.rpm.on, l.tpm.on);

    /* the limits announced, the windows full: paced at 98% of a minute's refill */
    memset(&l, 0, sizeof l);
    quota_init(&q, &l);
    send_one(&q, &l, &s, 50, 1000);
    quota_completed(&q);
    struct provider_verdict full = verdict(12000, 11999, 5, 600000, 599950, 5);
    quota_observe(&q, &l, &s, &full, 1020);
    CHECK(l.rpm.on && near(l.rpm.per_ms * 60000, 0.98 * 12000, 1e-9), "requests paced at %.1f/min", l.rpm.per_ms * 60000);
    CHECK(l.tpm.on && near(l.tpm.per_ms * 60000, 0.98 * 600000, 1e-9), "tokens paced at %.1f/min", l.tpm.per_ms * 60000);
    CHECK(near(l.rpm.capacity, 0.98 * 200, 1e-9), "a second's worth of burst: %.1f", l.rpm.capacity);
    CHECK(quota_counts_tokens(&q), "the provider counts tokens");
    CHECK(q.requests.held == 0 && q.tokens.held == 0, "a full window holds nothing back");

    /* the refill is learned from what is missing and when it is back: 3,000 missing, full in
     * 60 s is 3,000 a minute (a limit that refills in an hour would show 50 a minute) */
    struct provider_verdict slow = verdict(12000, 9000, 60000, 600000, 599950, 5);
    send_one(&q, &l, &s, 50, 2000);
    quota_observe(&q, &l, &s, &slow, 2020);
    CHECK(near(q.requests.refill_per_ms * 60000, 3000, 0.01), "refill learned: %.1f/min", q.requests.refill_per_ms * 60000);
    CHECK(near(l.rpm.per_ms * 60000, 0.98 * 3000, 0.01), "and paced at 98%% of it: %.1f/min", l.rpm.per_ms * 60000);
    /* rounding is no sample: 1 request missing, full in 5 ms, is not 12,000 a minute's proof */
    double refill = q.requests.refill_per_ms;
    struct provider_verdict tiny = verdict(12000, 11999, 3, 600000, 599950, 5);
    quota_observe(&q, &l, &s, &tiny, 2030);
    CHECK(q.requests.refill_per_ms == refill, "a deficit of 1 taught nothing: %.6f vs %.6f", q.requests.refill_per_ms, refill);

    /* nearly spent by someone else: the bucket holds no more than what is left, less what went
     * out since and a reserve; it is a debt the refill pays back */
    memset(&l, 0, sizeof l);
    quota_init(&q, &l);
    struct slot first;
    memset(&first, 0, sizeof first);
    send_one(&q, &l, &first, 40, 5000);
    for (int i = 0; i < 5; i++) send_one(&q, &l, &s, 40, 5001); /* five more out before the first answer */
    quota_completed(&q);
    struct provider_verdict spent = verdict(600, 8, 59000, 30000, 29000, 100);
    quota_observe(&q, &l, &first, &spent, 5010);
    /* left: 8 + 10 ms of refill (0.1) - 5 sent after it - reserve max(6, 2) = -2.9 */
    CHECK(l.rpm.level < 0 && near(l.rpm.level, 8 + 0.1 - 5 - 6, 0.05), "requests capped at %.2f", l.rpm.level);
    CHECK(q.requests.held == 1, "held back once");
    CHECK(limits_wait_ms(&l, 5010, 40) > 0, "the next request waits for the refill");

    /* declared limits below the announced ones pace the job; above, the announced ones do */
    memset(&l, 0, sizeof l);
    l.rpm.on = 1;
    l.rpm.per_ms = 300 / 60000.0;
    l.rpm.capacity = 5;
    l.tpm.on = 1;
    l.tpm.per_ms = 1e9 / 60000.0;
    l.tpm.capacity = 1e9 / 60;
    quota_init(&q, &l);
    CHECK(!quota_hold(&q), "declared limits: no hold");
    send_one(&q, &l, &s, 20, 9000);
    CHECK(!quota_hold(&q), "declared limits: the first request does not hold the rest");
    quota_completed(&q);
    struct provider_verdict announced = verdict(600, 599, 100, 30000, 29980, 40);
    quota_observe(&q, &l, &s, &announced, 9020);
    CHECK(near(l.rpm.per_ms * 60000, 300, 1e-9), "the declared rpm 300 paces: %.1f", l.rpm.per_ms * 60000);
    CHECK(near(l.tpm.per_ms * 60000, 0.98 * 30000, 1e-9), "the announced tpm paces: %.1f", l.tpm.per_ms * 60000);

    /* a 429 that says none are left: the bucket goes into debt until the reset */
    memset(&l, 0, sizeof l);
    quota_init(&q, &l);
    send_one(&q, &l, &s, 10, 100);
    quota_completed(&q);
    struct provider_verdict refused = verdict(600, 0, 60000, -1, -1, -1);
    quota_observe(&q, &l, &s, &refused, 120);
    CHECK(limits_wait_ms(&l, 120, 10) >= 600, "after a 429 with nothing left, the next send waits %lld ms",
          (long long)limits_wait_ms(&l, 120, 10));
    return check_report("test_quota");
}
