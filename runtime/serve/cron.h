/* cron.h: job schedules: the five cron fields, the @daily-style macros and "@every 15m", and
 * the next time a schedule fires in a time zone (core/tz.h).
 *
 * Fields: minute hour day-of-month month day-of-week, each `*`, N, N-M, a list of those with
 * commas, and `/step`; months and weekdays also by name (jan, mon); weekday 7 is Sunday. As in
 * Vixie cron, when both day fields are restricted a day matches either one. Around daylight
 * saving changes: a wall-clock time the clocks skip fires once at the change, one they repeat
 * fires once, the first time. */
#ifndef RUNNEL_CRON_H
#define RUNNEL_CRON_H

#include <stdint.h>
#include "core/tz.h"
#include "core/util.h"

struct cron {
    uint64_t minutes;      /* bit m: minute m (0..59) */
    uint32_t hours;        /* bit h (0..23) */
    uint32_t days;         /* bit d (1..31) */
    uint16_t months;       /* bit m (1..12) */
    uint8_t weekdays;      /* bit w (0..6, Sunday 0) */
    int days_star, weekdays_star; /* the field began with '*' */
    int64_t every_s;       /* "@every D": fire every D seconds; then the fields are unused */
};

/* Parse a schedule. -1 and err naming the schedule, the field and the value at fault. */
int cron_parse(const char *text, struct cron *out, struct rn_err *err);

/* The first firing strictly after `after` (Unix seconds) in zone tz; -1 when there is none
 * within five years (e.g. "0 0 30 2 *"). For "@every D": after + D. */
int64_t cron_next(const struct cron *c, const struct tz *tz, int64_t after);

#endif
