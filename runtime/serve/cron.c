/* cron.c: cron schedules and their next firing (see cron.h). */
#include "serve/cron.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct field_def {
    const char *name;
    int min, max;
    const char *const *names; /* names for min.. in order, or NULL */
};

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const weekday_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};
static const struct field_def fields[5] = {
    {"minute", 0, 59, NULL},
    {"hour", 0, 23, NULL},
    {"day of month", 1, 31, NULL},
    {"month", 1, 12, month_names},
    {"day of week", 0, 7, weekday_names},
};

static int parse_value(const char **s, const struct field_def *f, int *out)
{
    const char *p = *s;
    if (isdigit((unsigned char)*p)) {
        char *end;
        long v = strtol(p, &end, 10);
        if (v > 1000) v = 1000;
        *out = (int)v;
        *s = end;
        return 0;
    }
    if (f->names && isalpha((unsigned char)p[0]) && isalpha((unsigned char)p[1]) && isalpha((unsigned char)p[2])) {
        for (int i = 0; f->names[i]; i++)
            if (!strncasecmp(p, f->names[i], 3)) {
                *out = f->min + i;
                *s = p + 3;
                return 0;
            }
    }
    return -1;
}

/* One field into a bit set; *star when it begins with '*'. */
static int parse_field(const char *text, const char *field_text, const struct field_def *f, uint64_t *bits, int *star,
                       struct rn_err *err)
{
    *bits = 0;
    *star = field_text[0] == '*';
    const char *p = field_text;
    for (;;) {
        int lo, hi, step = 1;
        if (*p == '*') {
            lo = f->min;
            hi = f->max == 7 ? 6 : f->max;
            p++;
        } else {
            if (parse_value(&p, f, &lo))
                return rn_fail(err, "schedule '%s': %s field '%s': expected a number%s", text, f->name, field_text,
                               f->names ? " or a name" : "");
            hi = lo;
            if (*p == '-') {
                p++;
                if (parse_value(&p, f, &hi))
                    return rn_fail(err, "schedule '%s': %s field '%s': a range needs an end", text, f->name, field_text);
            }
        }
        if (*p == '/') {
            p++;
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p || v < 1 || v > f->max)
                return rn_fail(err, "schedule '%s': %s field '%s': the step must be 1..%d", text, f->name, field_text,
                               f->max);
            step = (int)v;
            p = end;
            if (lo == hi && field_text[0] != '*') hi = f->max == 7 ? 6 : f->max; /* "5/15": from 5 on */
        }
        if (lo < f->min || hi > f->max || lo > hi)
            return rn_fail(err, "schedule '%s': %s field '%s': %d..%d is outside %d..%d", text, f->name, field_text, lo,
                           hi, f->min, f->max);
        for (int v = lo; v <= hi; v += step) *bits |= 1ull << (f->max == 7 && v == 7 ? 0 : v);
        if (*p == ',') { p++; continue; }
        if (*p) return rn_fail(err, "schedule '%s': %s field '%s': unexpected '%c'", text, f->name, field_text, *p);
        return 0;
    }
}

int cron_parse(const char *text, struct cron *out, struct rn_err *err)
{
    static const struct { const char *name, *fields; } macros[] = {
        {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"}, {"@weekly", "0 0 * * 0"},
        {"@daily", "0 0 * * *"},  {"@midnight", "0 0 * * *"}, {"@hourly", "0 * * * *"},
    };
    memset(out, 0, sizeof *out);
    const char *spec = text;
    if (!strncmp(text, "@every", 6) && (text[6] == ' ' || text[6] == '\t')) {
        const char *d = text + 6;
        while (*d == ' ' || *d == '\t') d++;
        int64_t ms;
        if (rn_parse_duration_ms(d, &ms) || ms < 1000)
            return rn_fail(err, "schedule '%s': @every needs a duration of at least 1s, such as \"15m\"", text);
        out->every_s = ms / 1000;
        return 0;
    }
    if (text[0] == '@') {
        spec = NULL;
        for (size_t i = 0; i < sizeof macros / sizeof macros[0]; i++)
            if (!strcmp(text, macros[i].name)) spec = macros[i].fields;
        if (!spec)
            return rn_fail(err, "schedule '%s': unknown macro; use @yearly, @monthly, @weekly, @daily, @hourly or "
                                "\"@every 15m\"", text);
    }
    char copy[256];
    if (strlen(spec) >= sizeof copy) return rn_fail(err, "schedule '%.60s...': too long", text);
    snprintf(copy, sizeof copy, "%s", spec);
    char *parts[6], *save = NULL;
    int n = 0;
    for (char *tok = strtok_r(copy, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
        if (n == 5) return rn_fail(err, "schedule '%s': expected 5 fields (minute hour day month weekday), got more", text);
        parts[n++] = tok;
    }
    if (n != 5)
        return rn_fail(err, "schedule '%s': expected 5 fields (minute hour day month weekday), got %d", text, n);
    uint64_t bits[5];
    int stars[5];
    for (int i = 0; i < 5; i++)
        if (parse_field(text, parts[i], &fields[i], &bits[i], &stars[i], err)) return -1;
    out->minutes = bits[0];
    out->hours = (uint32_t)bits[1];
    out->days = (uint32_t)bits[2];
    out->months = (uint16_t)bits[3];
    out->weekdays = (uint8_t)bits[4];
    out->days_star = stars[2];
    out->weekdays_star = stars[4];
    return 0;
}

static int day_matches(const struct cron *c, int day, int weekday)
{
    int by_day = (c->days >> day) & 1, by_weekday = (c->weekdays >> weekday) & 1;
    if (c->days_star && c->weekdays_star) return 1;
    if (c->days_star) return by_weekday;
    if (c->weekdays_star) return by_day;
    return by_day || by_weekday;
}

int64_t cron_next(const struct cron *c, const struct tz *tz, int64_t after)
{
    if (c->every_s) return after + c->every_s;
    int64_t local = after + tz_offset_at(tz, after);
    local = (local - (local % 60 + 60) % 60) + 60; /* the next whole minute */
    int64_t limit = local + 5 * 366 * 86400LL;
    while (local < limit) {
        int64_t days = local >= 0 ? local / 86400 : -((-local + 86399) / 86400);
        int64_t secs = local - days * 86400, year;
        int month, day;
        tz_civil_from_days(days, &year, &month, &day);
        int hour = (int)(secs / 3600), minute = (int)(secs % 3600 / 60);
        if (!((c->months >> month) & 1)) {
            local = tz_days_from_civil(month == 12 ? year + 1 : year, month == 12 ? 1 : month + 1, 1) * 86400;
            continue;
        }
        if (!day_matches(c, day, (int)(((days + 4) % 7 + 7) % 7))) {
            local = (days + 1) * 86400;
            continue;
        }
        if (!((c->hours >> hour) & 1)) {
            local = days * 86400 + (hour + 1) * 3600LL;
            continue;
        }
        if (!((c->minutes >> minute) & 1)) {
            local += 60;
            continue;
        }
        int64_t utc = tz_local_to_utc(tz, local);
        if (utc > after) return utc;
        local += 60; /* a repeated or skipped wall-clock time that already fired */
    }
    return -1;
}
