/* restart.c: restart policies (see restart.h). */
#include "serve/restart.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void restart_policy_default(struct restart_policy *p)
{
    p->on = RESTART_ON_FAILURE;
    p->backoff_min_ms = 1000;
    p->backoff_max_ms = 5 * 60 * 1000;
    p->budget = 5;
    p->budget_window_ms = 10 * 60 * 1000;
}

int restart_parse_on(const char *text, enum restart_on *out, struct rn_err *err)
{
    if (!strcmp(text, "no")) *out = RESTART_NO;
    else if (!strcmp(text, "failure") || !strcmp(text, "on-failure")) *out = RESTART_ON_FAILURE;
    else if (!strcmp(text, "always")) *out = RESTART_ALWAYS;
    else return rn_fail(err, "restart.on: '%s' is not one of \"no\", \"failure\", \"always\"", text);
    return 0;
}

int restart_parse_backoff(const char *text, int64_t *min_ms, int64_t *max_ms, struct rn_err *err)
{
    const char *dots = strstr(text, "..");
    char first[64];
    size_t n = dots ? (size_t)(dots - text) : strlen(text);
    if (n >= sizeof first) return rn_fail(err, "restart.backoff: '%s' is too long", text);
    memcpy(first, text, n);
    first[n] = '\0';
    if (rn_parse_duration_ms(first, min_ms) || (dots && rn_parse_duration_ms(dots + 2, max_ms)))
        return rn_fail(err, "restart.backoff: '%s' is not a duration or MIN..MAX such as \"1s..5m\"", text);
    if (!dots) *max_ms = *min_ms;
    if (*min_ms <= 0 || *max_ms < *min_ms)
        return rn_fail(err, "restart.backoff: '%s': the minimum must be above 0 and at most the maximum", text);
    return 0;
}

int restart_parse_budget(const char *text, int *count, int64_t *window_ms, struct rn_err *err)
{
    char *end;
    long c = strtol(text, &end, 10);
    if (end == text || *end != '/' || rn_parse_duration_ms(end + 1, window_ms) || *window_ms <= 0)
        return rn_fail(err, "restart.budget: '%s' is not COUNT/DURATION such as \"5/10m\"", text);
    if (c < 0 || c > RESTART_BUDGET_MAX)
        return rn_fail(err, "restart.budget: '%s': the count must be 0..%d", text, RESTART_BUDGET_MAX);
    *count = (int)c;
    return 0;
}

int64_t restart_decide(struct restart_state *s, const struct restart_policy *p, int failed, int64_t running_ms,
                       int64_t now_ms)
{
    if (p->on == RESTART_NO || (p->on == RESTART_ON_FAILURE && !failed)) return -1;
    if (running_ms > p->backoff_max_ms || !failed) s->consecutive = 0;
    int recent = 0;
    for (int i = 0; i < s->count; i++)
        if (now_ms - s->at_ms[i] < p->budget_window_ms) recent++;
    if (recent >= p->budget) return -2;
    int64_t delay = p->backoff_min_ms;
    for (int i = 0; i < s->consecutive && delay < p->backoff_max_ms; i++) delay *= 2;
    if (delay > p->backoff_max_ms) delay = p->backoff_max_ms;
    if (failed) s->consecutive++;
    s->at_ms[s->next] = now_ms + delay;
    s->next = (s->next + 1) % RESTART_BUDGET_MAX;
    if (s->count < RESTART_BUDGET_MAX) s->count++;
    return delay;
}
