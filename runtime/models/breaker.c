/* breaker.c: the circuit breaker of a model endpoint (breaker.h). */
#include "models/breaker.h"

#include <stdio.h>
#include <string.h>

#include "models/model_int.h"

#define PROBE_BASE_MS 250           /* the first probe after it opens waits 125..250 ms */
#define PROBE_CAP_MS 2000           /* and none waits longer than this without a Retry-After: an
                                     * endpoint that is back is used again within 2 s */

int breaker_open(struct breaker *b, struct metrics *registry, const struct metric_label *label, int64_t outage_ms,
                 struct rn_err *err)
{
    memset(b, 0, sizeof *b);
    b->since_ms = -1;
    b->outage_ms = outage_ms;
    b->state = metrics_gauge(registry, "runnel_model_breaker_open",
                             "1 while the model endpoint's circuit breaker is open (nothing new is sent), else 0.",
                             label, 1, err);
    b->outage_seconds = metrics_gauge(registry, "runnel_model_outage_seconds",
                                      "Seconds the model endpoint has been unhealthy in the current outage (0: healthy).",
                                      label, 1, err);
    return b->state && b->outage_seconds ? 0 : -1;
}

void breaker_endpoint(struct breaker *b, const char *url)
{
    if (b->endpoint[0] || !url) return;
    const char *host = strstr(url, "://");
    size_t len = strlen(url);
    if (host) {
        const char *slash = strchr(host + 3, '/');
        if (slash) len = (size_t)(slash - url);
    }
    snprintf(b->endpoint, sizeof b->endpoint, "%.*s", (int)(len < sizeof b->endpoint ? len : sizeof b->endpoint - 1), url);
}

/* Backoff with "equal jitter": half the ceiling plus a random part of the other half, so a
 * probe neither hammers the endpoint nor waits the whole ceiling; never sooner than the hint. */
static int64_t probe_delay_ms(int failed, int64_t hint_ms, uint64_t *rng)
{
    int shift = failed < 16 ? failed : 16;
    int64_t ceiling = (int64_t)PROBE_BASE_MS << shift;
    if (ceiling > PROBE_CAP_MS) ceiling = PROBE_CAP_MS;
    int64_t delay = ceiling / 2 + (int64_t)(retry_random(rng) % (uint64_t)(ceiling / 2 + 1));
    return hint_ms > delay ? hint_ms : delay;
}

void breaker_failure(struct breaker *b, int64_t now, const char *reason, int64_t hint_ms, int probe, uint64_t *rng)
{
    snprintf(b->reason, sizeof b->reason, "%s", reason && reason[0] ? reason : "no answer");
    if (b->since_ms < 0) b->since_ms = now;
    b->failures++;
    if (probe) b->probe_out = 0;
    if (!b->open && b->failures >= BREAKER_THRESHOLD) {
        b->open = 1;
        b->opened++;
        b->opened_ms = b->since_ms; /* the pause began with the first failure: nothing got through since */
        b->probes_failed = 0;
        b->next_probe_ms = now + probe_delay_ms(0, hint_ms, rng);
    } else if (b->open && probe) {
        b->probes_failed++;
        b->next_probe_ms = now + probe_delay_ms(b->probes_failed, hint_ms, rng);
    } else if (b->open && hint_ms > 0 && now + hint_ms > b->next_probe_ms) {
        b->next_probe_ms = now + hint_ms; /* a late answer's Retry-After holds the next probe back too */
    }
}

void breaker_success(struct breaker *b, int64_t now)
{
    if (b->open) b->paused_ms += now - b->opened_ms;
    b->open = 0;
    b->probe_out = 0;
    b->failures = 0;
    b->since_ms = -1;
}

int breaker_may_send(const struct breaker *b, int64_t now)
{
    if (!b->open) return 1;
    return !b->probe_out && now >= b->next_probe_ms ? 2 : 0;
}

void breaker_probe_sent(struct breaker *b) { b->probe_out = 1; }

int64_t breaker_due_ms(const struct breaker *b, int64_t now)
{
    (void)now;
    int64_t due = INT64_MAX;
    if (b->open && !b->probe_out) due = b->next_probe_ms;
    if (b->since_ms >= 0 && b->since_ms + b->outage_ms < due) due = b->since_ms + b->outage_ms;
    return due;
}

int breaker_expired(const struct breaker *b, int64_t now)
{
    return b->open && b->since_ms >= 0 && now - b->since_ms >= b->outage_ms;
}

int64_t breaker_paused_ms(const struct breaker *b, int64_t now)
{
    return b->paused_ms + (b->open ? now - b->opened_ms : 0);
}

void breaker_describe(const struct breaker *b, int64_t now, struct buf *out)
{
    int64_t paused = breaker_paused_ms(b, now);
    if (!b->opened) return;
    char d[32];
    rn_format_duration_ms(d, sizeof d, paused);
    buf_printf(out, "paused %s: %s%s", d, b->reason, b->open ? "" : " (resumed)");
}

void breaker_metrics(struct breaker *b, int64_t now)
{
    metric_set(b->state, b->open ? 1 : 0);
    metric_set(b->outage_seconds, b->since_ms >= 0 ? (double)(now - b->since_ms) / 1000.0 : 0);
}
