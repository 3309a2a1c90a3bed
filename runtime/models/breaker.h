/* breaker.h: a circuit breaker for one model endpoint, apart from record failures.
 *
 * An endpoint that does not answer (connection refused or reset, DNS, TLS, a timeout) or answers
 * 5xx, 429 or 529 says nothing about the record sent: such a failure is the endpoint's. After
 * BREAKER_THRESHOLD of them in a row the breaker opens: the engine sends nothing new (model_room
 * is 0, so the pipeline reads nothing more), the records it holds keep their place and spend no
 * retry budget, and one probe at a time goes out, after exponential backoff with full jitter and
 * never sooner than the server's Retry-After. The first success closes it. When the endpoint has
 * been unhealthy for limits.outage (from its first failure of the run), the job must stop. */
#ifndef RUNNEL_BREAKER_H
#define RUNNEL_BREAKER_H

#include <stdint.h>

#include "core/metrics.h"
#include "core/util.h"

#define BREAKER_THRESHOLD 3          /* endpoint failures in a row that open it */

struct breaker {
    int open;
    int failures;              /* endpoint failures since the last success */
    int probes_failed;         /* since it opened: the backoff's exponent */
    int probe_out;             /* a probe is on the wire */
    int64_t since_ms;          /* the first failure of the run (unhealthy since); -1: healthy */
    int64_t opened_ms;         /* open: when its pause began (the first failure of the run) */
    int64_t next_probe_ms;     /* open: when the next probe may go */
    int64_t outage_ms;         /* limits.outage: unhealthy this long stops the job */
    int64_t paused_ms;         /* time spent open in spells that ended */
    int opened;                /* times it opened */
    char endpoint[256];        /* scheme://host:port of the first request, for people */
    char reason[160];          /* the last endpoint failure, short ("connection refused") */
    struct metric *state, *outage_seconds;
};

/* Register the breaker's series (label: the model) in registry. -1 and err. */
int breaker_open(struct breaker *b, struct metrics *registry, const struct metric_label *label, int64_t outage_ms,
                 struct rn_err *err);
/* Note the endpoint of a request's URL (once). */
void breaker_endpoint(struct breaker *b, const char *url);
/* An endpoint failure at now (reason: what failed; hint_ms: the server's Retry-After, -1 none).
 * probe: the attempt was the breaker's probe. */
void breaker_failure(struct breaker *b, int64_t now, const char *reason, int64_t hint_ms, int probe, uint64_t *rng);
/* An answer came (any answer that is not an endpoint failure): it closes the breaker. */
void breaker_success(struct breaker *b, int64_t now);
/* Whether a request may go now: closed, or open with a probe due and none out. 2: it goes as
 * the probe (breaker_probe_sent marks it). */
int breaker_may_send(const struct breaker *b, int64_t now);
void breaker_probe_sent(struct breaker *b);
/* When the breaker next has something to do (a probe falls due, the outage runs out);
 * INT64_MAX: nothing. */
int64_t breaker_due_ms(const struct breaker *b, int64_t now);
/* The endpoint has been unhealthy for limits.outage: the job must stop. */
int breaker_expired(const struct breaker *b, int64_t now);
/* Time spent paused (open), the current spell included. */
int64_t breaker_paused_ms(const struct breaker *b, int64_t now);
/* "paused 2m13s: connection refused" into out, when it has paused at all; nothing otherwise. */
void breaker_describe(const struct breaker *b, int64_t now, struct buf *out);
/* Update the gauges (state, outage seconds) at now. */
void breaker_metrics(struct breaker *b, int64_t now);

#endif
