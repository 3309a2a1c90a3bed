/* test_restart.c: restart policies: parsing, the doubling backoff and its reset, the budget. */
#include <string.h>

#include "serve/restart.h"
#include "check.h"

int main(void)
{
    struct restart_policy p;
    restart_policy_default(&p);
    struct rn_err err;
    int64_t lo, hi;
    CHECK(restart_parse_backoff("1s..5m", &lo, &hi, &err) == 0 && lo == 1000 && hi == 300000, "1s..5m");
    CHECK(restart_parse_backoff("250ms", &lo, &hi, &err) == 0 && lo == 250 && hi == 250, "a fixed delay");
    CHECK(restart_parse_backoff("5m..1s", &lo, &hi, &err) == -1 && strstr(err.msg, "at most the maximum"), "%s", err.msg);
    CHECK(restart_parse_backoff("soon..later", &lo, &hi, &err) == -1 && strstr(err.msg, "restart.backoff: 'soon..later'"),
          "%s", err.msg);
    int count;
    int64_t window;
    CHECK(restart_parse_budget("5/10m", &count, &window, &err) == 0 && count == 5 && window == 600000, "5/10m");
    CHECK(restart_parse_budget("5", &count, &window, &err) == -1 && strstr(err.msg, "COUNT/DURATION"), "%s", err.msg);
    enum restart_on on;
    CHECK(restart_parse_on("sometimes", &on, &err) == -1 && strstr(err.msg, "\"no\", \"failure\", \"always\""), "%s",
          err.msg);

    /* failures in a row: 1, 2, 4, 8, 16 s; then the budget of 5 in 10 minutes is spent */
    struct restart_state s;
    memset(&s, 0, sizeof s);
    int64_t now = 1000000, want[] = {1000, 2000, 4000, 8000, 16000};
    for (int i = 0; i < 5; i++) {
        int64_t d = restart_decide(&s, &p, 1, 100, now);
        CHECK(d == want[i], "restart %d after %lld ms, want %lld", i + 1, (long long)d, (long long)want[i]);
        now += d + 100;
    }
    CHECK(restart_decide(&s, &p, 1, 100, now) == -2, "the sixth failure within 10 minutes spends the budget");
    CHECK(restart_decide(&s, &p, 1, 100, now + 11 * 60 * 1000) == 32000, "after the window the budget is back");
    /* a run longer than the largest backoff resets the doubling */
    CHECK(restart_decide(&s, &p, 1, 10 * 60 * 1000, now + 30 * 60 * 1000) == 1000, "a long run resets the backoff");
    /* policies */
    CHECK(restart_decide(&s, &p, 0, 100, now + 40 * 60 * 1000) == -1, "on failure: a clean exit is not restarted");
    p.on = RESTART_ALWAYS;
    CHECK(restart_decide(&s, &p, 0, 100, now + 50 * 60 * 1000) == 1000, "always: a clean exit is restarted");
    p.on = RESTART_NO;
    CHECK(restart_decide(&s, &p, 1, 100, now + 60 * 60 * 1000) == -1, "no: never");
    p.on = RESTART_ON_FAILURE;
    p.backoff_max_ms = 3000;
    memset(&s, 0, sizeof s);
    p.budget = 100;
    int64_t d = 0;
    for (int i = 0; i < 10; i++) d = restart_decide(&s, &p, 1, 10, now + i);
    CHECK(d == 3000, "the delay stops at the maximum: %lld", (long long)d);
    return check_report("test_restart");
}
