/* tz.c: TZif zones and POSIX TZ rules (see tz.h; the file format is RFC 8536). */
#include "core/tz.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TZIF_MAX_BYTES (1 << 20)
#define TZ_NAME_MAX 128

/* A date of a POSIX rule: Jn (1..365, no Feb 29), n (0..365) or Mm.w.d. */
struct rule_date {
    char kind;      /* 'J', 'N' or 'M' */
    int a, b, c;    /* n; or month, week (5 = last), weekday (0 = Sunday) */
    int32_t time;   /* seconds after local midnight, default 02:00 */
};

struct posix_rule {
    int32_t std_east, dst_east;
    int has_dst;
    struct rule_date start, end;
};

struct tz {
    char name[TZ_NAME_MAX];
    int64_t *times;     /* transition instants, ascending */
    uint8_t *type_of;   /* the type in force from each transition */
    int32_t *east;      /* seconds east of UTC, per type */
    size_t ntimes, ntypes;
    struct posix_rule rule;
    int has_rule;       /* the footer's rule holds after the last transition */
};

/* ---- civil dates ---- */

int64_t tz_days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void tz_civil_from_days(int64_t z, int64_t *year, int *month, int *day)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *day = (int)(doy - (153 * mp + 2) / 5 + 1);
    *month = (int)(mp < 10 ? mp + 3 : mp - 9);
    *year = yoe + era * 400 + (*month <= 2);
}

static int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }
static int is_leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

/* ---- POSIX TZ rules ("CET-1CEST,M3.5.0,M10.5.0/3") ---- */

static int parse_zone_name(const char **s)
{
    const char *p = *s;
    if (*p == '<') {
        const char *end = strchr(p, '>');
        if (!end || end - p < 4) return -1;
        *s = end + 1;
        return 0;
    }
    while (isalpha((unsigned char)*p)) p++;
    if (p - *s < 3) return -1;
    *s = p;
    return 0;
}

/* [+-]hh[:mm[:ss]] to seconds; hours up to 167 (RFC 8536 extends POSIX's 24). */
static int parse_hms(const char **s, int32_t *out)
{
    const char *p = *s;
    int sign = 1;
    if (*p == '+' || *p == '-') sign = *p++ == '-' ? -1 : 1;
    if (!isdigit((unsigned char)*p)) return -1;
    long h = strtol(p, (char **)&p, 10), m = 0, sec = 0;
    if (*p == ':') {
        m = strtol(p + 1, (char **)&p, 10);
        if (*p == ':') sec = strtol(p + 1, (char **)&p, 10);
    }
    if (h > 167 || m > 59 || sec > 59) return -1;
    *out = (int32_t)(sign * (h * 3600 + m * 60 + sec));
    *s = p;
    return 0;
}

static int parse_rule_date(const char **s, struct rule_date *d)
{
    const char *p = *s;
    d->time = 7200;
    if (*p == 'M') {
        d->kind = 'M';
        char *end;
        d->a = (int)strtol(p + 1, &end, 10);
        if (*end != '.') return -1;
        d->b = (int)strtol(end + 1, &end, 10);
        if (*end != '.') return -1;
        d->c = (int)strtol(end + 1, &end, 10);
        if (d->a < 1 || d->a > 12 || d->b < 1 || d->b > 5 || d->c < 0 || d->c > 6) return -1;
        p = end;
    } else {
        d->kind = *p == 'J' ? 'J' : 'N';
        if (*p == 'J') p++;
        if (!isdigit((unsigned char)*p)) return -1;
        char *end;
        d->a = (int)strtol(p, &end, 10);
        if (d->kind == 'J' ? d->a < 1 || d->a > 365 : d->a > 365) return -1;
        p = end;
    }
    if (*p == '/') {
        p++;
        if (parse_hms(&p, &d->time)) return -1;
    }
    *s = p;
    return 0;
}

static int parse_posix_rule(const char *s, struct posix_rule *r)
{
    memset(r, 0, sizeof *r);
    int32_t west;
    if (parse_zone_name(&s) || parse_hms(&s, &west)) return -1;
    r->std_east = -west;
    if (!*s) return 0;
    if (parse_zone_name(&s)) return -1;
    r->has_dst = 1;
    r->dst_east = r->std_east + 3600;
    if (*s && *s != ',') {
        if (parse_hms(&s, &west)) return -1;
        r->dst_east = -west;
    }
    if (*s != ',') { /* no rule: POSIX leaves it to the implementation; use the US rule as glibc does */
        r->start = (struct rule_date){'M', 3, 2, 0, 7200};
        r->end = (struct rule_date){'M', 11, 1, 0, 7200};
        return *s ? -1 : 0;
    }
    s++;
    if (parse_rule_date(&s, &r->start) || *s++ != ',' || parse_rule_date(&s, &r->end) || *s) return -1;
    return 0;
}

/* Days since the epoch of a rule's date in year y. */
static int64_t rule_day(const struct rule_date *d, int64_t y)
{
    int64_t jan1 = tz_days_from_civil(y, 1, 1);
    if (d->kind == 'J') return jan1 + d->a - 1 + (is_leap(y) && d->a >= 60);
    if (d->kind == 'N') return jan1 + d->a;
    int64_t first = tz_days_from_civil(y, d->a, 1);
    int weekday = (int)(((first + 4) % 7 + 7) % 7); /* 1970-01-01 was a Thursday */
    int64_t day = first + (d->c - weekday + 7) % 7 + 7 * (d->b - 1);
    int days_in_month = d->a == 12 ? 31 : (int)(tz_days_from_civil(y, d->a + 1, 1) - first);
    while (day >= first + days_in_month) day -= 7; /* week 5: the last such weekday */
    return day;
}

static int32_t rule_offset_at(const struct posix_rule *r, int64_t utc)
{
    if (!r->has_dst) return r->std_east;
    int64_t year;
    int month, day;
    tz_civil_from_days(floor_div(utc + r->std_east, 86400), &year, &month, &day);
    /* start is given in standard time, end in daylight time */
    int64_t start = rule_day(&r->start, year) * 86400 + r->start.time - r->std_east;
    int64_t end = rule_day(&r->end, year) * 86400 + r->end.time - r->dst_east;
    int dst = start < end ? utc >= start && utc < end : !(utc >= end && utc < start);
    return dst ? r->dst_east : r->std_east;
}

/* ---- TZif ---- */

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static int64_t be64(const uint8_t *p) { return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4)); }

struct tzif_counts {
    uint32_t isut, isstd, leap, time, type, chars;
};

static int read_counts(const uint8_t *p, size_t left, struct tzif_counts *c)
{
    if (left < 44 || memcmp(p, "TZif", 4) != 0) return -1;
    c->isut = be32(p + 20);
    c->isstd = be32(p + 24);
    c->leap = be32(p + 28);
    c->time = be32(p + 32);
    c->type = be32(p + 36);
    c->chars = be32(p + 40);
    if (c->type == 0 || c->type > 256 || c->time > 100000 || c->leap > 10000 || c->chars > 100000) return -1;
    return 0;
}

static size_t block_size(const struct tzif_counts *c, size_t time_size)
{
    return (size_t)c->time * time_size + c->time + (size_t)c->type * 6 + c->chars + (size_t)c->leap * (time_size + 4) +
           c->isstd + c->isut;
}

static int parse_tzif(struct tz *tz, const uint8_t *data, size_t len)
{
    struct tzif_counts c;
    if (read_counts(data, len, &c)) return -1;
    size_t time_size = 4;
    const uint8_t *p = data + 44;
    size_t left = len - 44;
    if (data[4] >= '2') { /* skip the 32-bit block: the 64-bit one follows with its own header */
        size_t skip = block_size(&c, 4);
        if (skip > left) return -1;
        p += skip;
        left -= skip;
        if (read_counts(p, left, &c)) return -1;
        p += 44;
        left -= 44;
        time_size = 8;
    }
    if (block_size(&c, time_size) > left) return -1;
    tz->ntimes = c.time;
    tz->ntypes = c.type;
    tz->times = rn_calloc(c.time ? c.time : 1, sizeof *tz->times);
    tz->type_of = rn_calloc(c.time ? c.time : 1, 1);
    tz->east = rn_calloc(c.type, sizeof *tz->east);
    for (size_t i = 0; i < c.time; i++)
        tz->times[i] = time_size == 8 ? be64(p + i * 8) : (int32_t)be32(p + i * 4);
    p += (size_t)c.time * time_size;
    for (size_t i = 0; i < c.time; i++) {
        if (p[i] >= c.type) return -1;
        tz->type_of[i] = p[i];
        if (i && tz->times[i] <= tz->times[i - 1]) return -1;
    }
    p += c.time;
    for (size_t i = 0; i < c.type; i++) {
        int32_t east = (int32_t)be32(p + i * 6);
        if (east < -89999 || east > 93599) return -1; /* RFC 8536: -25 h < offset < 26 h */
        tz->east[i] = east;
    }
    p += (size_t)c.type * 6 + c.chars + (size_t)c.leap * (time_size + 4) + c.isstd + c.isut;
    left = len - (size_t)(p - data);
    if (time_size == 8 && left >= 2 && p[0] == '\n') { /* the footer: "\n" POSIX-TZ "\n" */
        const uint8_t *nl = memchr(p + 1, '\n', left - 1);
        if (nl && nl > p + 1 && (size_t)(nl - p) < 256) {
            char rule[256];
            memcpy(rule, p + 1, (size_t)(nl - p - 1));
            rule[nl - p - 1] = '\0';
            if (parse_posix_rule(rule, &tz->rule) == 0) tz->has_rule = 1;
        }
    }
    return 0;
}

static int name_is_safe(const char *name)
{
    if (!*name || *name == '/' || strlen(name) >= TZ_NAME_MAX) return 0;
    for (const char *p = name; *p; p++)
        if (!(isalnum((unsigned char)*p) || strchr("/_-+", *p))) return 0;
    return strstr(name, "..") == NULL;
}

struct tz *tz_load(const char *name, struct rn_err *err)
{
    struct tz *tz = rn_calloc(1, sizeof *tz);
    if (!strcmp(name, "UTC") || !strcmp(name, "Etc/UTC")) {
        snprintf(tz->name, sizeof tz->name, "%s", name);
        tz->ntypes = 1;
        tz->east = rn_calloc(1, sizeof *tz->east);
        return tz;
    }
    if (!name_is_safe(name)) {
        free(tz);
        rn_fail(err, "timezone '%s': not a zone name like Europe/Paris", name);
        return NULL;
    }
    snprintf(tz->name, sizeof tz->name, "%s", name);
    const char *dir = getenv("TZDIR") ? getenv("TZDIR") : "/usr/share/zoneinfo";
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    size_t len;
    struct rn_err read_err;
    char *data = rn_read_file(path, &len, &read_err);
    if (!data) {
        free(tz);
        rn_fail(err, "timezone '%s': unknown zone (%s)", name, read_err.msg);
        return NULL;
    }
    int rc = len > TZIF_MAX_BYTES ? -1 : parse_tzif(tz, (const uint8_t *)data, len);
    free(data);
    if (rc) {
        tz_free(tz);
        rn_fail(err, "timezone '%s': %s is not a valid TZif file", name, path);
        return NULL;
    }
    return tz;
}

void tz_free(struct tz *tz)
{
    if (!tz) return;
    free(tz->times);
    free(tz->type_of);
    free(tz->east);
    free(tz);
}

const char *tz_name(const struct tz *tz) { return tz->name; }

int32_t tz_offset_at(const struct tz *tz, int64_t utc)
{
    if (tz->ntimes == 0) return tz->has_rule ? rule_offset_at(&tz->rule, utc) : tz->east[0];
    if (utc < tz->times[0]) return tz->east[0];
    if (utc >= tz->times[tz->ntimes - 1] && tz->has_rule) return rule_offset_at(&tz->rule, utc);
    size_t lo = 0, hi = tz->ntimes; /* the last transition at or before utc */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (tz->times[mid] <= utc) lo = mid;
        else hi = mid;
    }
    return tz->east[tz->type_of[lo]];
}

int64_t tz_local_to_utc(const struct tz *tz, int64_t local)
{
    /* Zones change offset at most a few times a year, so the offsets a day before and a day
     * after are the only candidates. */
    int32_t before = tz_offset_at(tz, local - 86400), after = tz_offset_at(tz, local + 86400);
    int64_t first = local - (before > after ? before : after), second = local - (before > after ? after : before);
    int first_ok = tz_offset_at(tz, first) == (int32_t)(local - first);
    int second_ok = tz_offset_at(tz, second) == (int32_t)(local - second);
    if (first_ok) return first;
    if (second_ok) return second;
    /* a gap: the clocks jumped over `local`; find the instant of the jump */
    int64_t lo = first < second ? first : second, hi = first < second ? second : first;
    int32_t at_lo = tz_offset_at(tz, lo);
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (tz_offset_at(tz, mid) == at_lo) lo = mid;
        else hi = mid;
    }
    return hi;
}

void tz_format_iso8601(const struct tz *tz, int64_t unix_ms, int with_ms, char out[TZ_ISO_MAX])
{
    int64_t secs = floor_div(unix_ms, 1000);
    int ms = (int)(unix_ms - secs * 1000);
    int32_t east = tz ? tz_offset_at(tz, secs) : 0;
    int64_t local = secs + east, days = floor_div(local, 86400), in_day = local - days * 86400, year;
    int month, day;
    tz_civil_from_days(days, &year, &month, &day);
    char frac[8] = "", zone[8] = "Z";
    if (with_ms) snprintf(frac, sizeof frac, ".%03d", ms);
    if (tz) {
        int32_t a = east < 0 ? -east : east;
        snprintf(zone, sizeof zone, "%c%02d:%02d", east < 0 ? '-' : '+', (int)(a / 3600) % 100, (int)(a % 3600 / 60));
    }
    snprintf(out, TZ_ISO_MAX, "%04lld-%02d-%02dT%02d:%02d:%02d%s%s", (long long)year, month, day, (int)(in_day / 3600),
             (int)(in_day % 3600 / 60), (int)(in_day % 60), frac, zone);
}
