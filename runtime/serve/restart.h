/* restart.h: when the supervisor restarts a job that stopped, and how soon, as systemd's
 * Restart=, RestartSec= and StartLimitBurst= within StartLimitIntervalSec= mean it.
 *
 * `restart = { on = "failure", backoff = "1s..5m", budget = "5/10m" }`: after a failed run,
 * wait 1 s, then 2 s, 4 s ... up to 5 min between consecutive failures (a run that lasted
 * longer than the maximum backoff resets the doubling); at most 5 restarts within any 10
 * minutes, after which the job stays FAILED. */
#ifndef RUNNEL_RESTART_H
#define RUNNEL_RESTART_H

#include <stdint.h>
#include "core/util.h"

#define RESTART_BUDGET_MAX 1000

enum restart_on { RESTART_NO, RESTART_ON_FAILURE, RESTART_ALWAYS };

struct restart_policy {
    enum restart_on on;
    int64_t backoff_min_ms, backoff_max_ms;
    int budget;               /* restarts allowed within budget_window_ms */
    int64_t budget_window_ms;
};

/* Defaults: on failure, 1s..5m, 5 within 10 minutes. */
void restart_policy_default(struct restart_policy *p);

/* "no", "failure" (or "on-failure"), "always". */
int restart_parse_on(const char *text, enum restart_on *out, struct rn_err *err);
/* "1s..5m", or one duration for a fixed delay. */
int restart_parse_backoff(const char *text, int64_t *min_ms, int64_t *max_ms, struct rn_err *err);
/* "5/10m": at most 5 restarts within 10 minutes. */
int restart_parse_budget(const char *text, int *count, int64_t *window_ms, struct rn_err *err);

/* The restarts of one job so far. Zero it to start. */
struct restart_state {
    int64_t at_ms[RESTART_BUDGET_MAX]; /* ring of the latest restart times */
    int count;                          /* entries in the ring */
    int next;                           /* where the next one goes */
    int consecutive;                    /* failures since the last long run */
};

/* A run ended after running_ms with `failed`. Returns the delay before the restart (>= 0), or
 * -1 when the policy does not restart it, or -2 when the budget is spent (the job stays
 * FAILED). Records the restart when it returns a delay. */
int64_t restart_decide(struct restart_state *s, const struct restart_policy *p, int failed, int64_t running_ms,
                       int64_t now_ms);

#endif
