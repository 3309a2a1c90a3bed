/* test_tz_cron.c: time zones read from TZif files (offsets checked against Python's zoneinfo,
 * an independent reader of the same files), local times around daylight saving changes, and
 * cron schedules: parsing, errors, and the next firing in a zone. */
#include <stdlib.h>
#include <string.h>

#include "core/tz.h"
#include "serve/cron.h"
#include "check.h"

/* {zone, unix time, offset east in seconds} from Python 3's zoneinfo */
static const struct { const char *zone; long long utc; int east; } offsets[] = {
    {"Europe/Paris", 3476829624LL, 3600},
    {"Europe/Paris", -1561096521LL, 3600},
    {"Europe/Paris", 586753488LL, 7200},
    {"Europe/Paris", 2397089971LL, 3600},
    {"Europe/Paris", 1774745999LL, 3600},
    {"Europe/Paris", 1774746000LL, 7200},
    {"Europe/Paris", 1792890000LL, 3600},
    {"Europe/Paris", 3802550400LL, 7200},
    {"Europe/Paris", 3786912000LL, 3600},
    {"America/New_York", 92606891LL, -18000},
    {"America/New_York", 3656600440LL, -18000},
    {"America/New_York", 2335081973LL, -18000},
    {"America/New_York", -29568907LL, -18000},
    {"America/New_York", 1774745999LL, -14400},
    {"America/New_York", 1774746000LL, -14400},
    {"America/New_York", 1792890000LL, -14400},
    {"America/New_York", 3802550400LL, -14400},
    {"America/New_York", 3786912000LL, -18000},
    {"Australia/Sydney", -2047946152LL, 36000},
    {"Australia/Sydney", -346494758LL, 36000},
    {"Australia/Sydney", -1908962033LL, 36000},
    {"Australia/Sydney", 2475587929LL, 36000},
    {"Australia/Sydney", 1774745999LL, 39600},
    {"Australia/Sydney", 1774746000LL, 39600},
    {"Australia/Sydney", 1792890000LL, 39600},
    {"Australia/Sydney", 3802550400LL, 36000},
    {"Australia/Sydney", 3786912000LL, 39600},
    {"Asia/Kolkata", -385692762LL, 19800},
    {"Asia/Kolkata", 2617703843LL, 19800},
    {"Asia/Kolkata", 3044782553LL, 19800},
    {"Asia/Kolkata", 1861390121LL, 19800},
    {"Asia/Kolkata", 1774745999LL, 19800},
    {"Asia/Kolkata", 1774746000LL, 19800},
    {"Asia/Kolkata", 1792890000LL, 19800},
    {"Asia/Kolkata", 3802550400LL, 19800},
    {"Asia/Kolkata", 3786912000LL, 19800},
    {"America/Sao_Paulo", -505259116LL, -10800},
    {"America/Sao_Paulo", 1983994956LL, -10800},
    {"America/Sao_Paulo", 2286049584LL, -10800},
    {"America/Sao_Paulo", 1478105163LL, -7200},
    {"America/Sao_Paulo", 1774745999LL, -10800},
    {"America/Sao_Paulo", 1774746000LL, -10800},
    {"America/Sao_Paulo", 1792890000LL, -10800},
    {"America/Sao_Paulo", 3802550400LL, -10800},
    {"America/Sao_Paulo", 3786912000LL, -10800},
    {"Pacific/Chatham", -965126378LL, 44100},
    {"Pacific/Chatham", 2705549348LL, 49500},
    {"Pacific/Chatham", 2591892288LL, 49500},
    {"Pacific/Chatham", 3410897848LL, 49500},
    {"Pacific/Chatham", 1774745999LL, 49500},
    {"Pacific/Chatham", 1774746000LL, 49500},
    {"Pacific/Chatham", 1792890000LL, 49500},
    {"Pacific/Chatham", 3802550400LL, 45900},
    {"Pacific/Chatham", 3786912000LL, 49500},
    {"Europe/London", -1432774901LL, 3600},
    {"Europe/London", 535123655LL, 0},
    {"Europe/London", -609553533LL, 3600},
    {"Europe/London", 2355655095LL, 3600},
    {"Europe/London", 1774745999LL, 0},
    {"Europe/London", 1774746000LL, 3600},
    {"Europe/London", 1792890000LL, 0},
    {"Europe/London", 3802550400LL, 3600},
    {"Europe/London", 3786912000LL, 0},
    {"America/Santiago", 2341963572LL, -10800},
    {"America/Santiago", -1324402849LL, -14400},
    {"America/Santiago", 3922473470LL, -14400},
    {"America/Santiago", -859736977LL, -14400},
    {"America/Santiago", 1774745999LL, -10800},
    {"America/Santiago", 1774746000LL, -10800},
    {"America/Santiago", 1792890000LL, -10800},
    {"America/Santiago", 3802550400LL, -14400},
    {"America/Santiago", 3786912000LL, -10800},
    {"Asia/Tokyo", -262576720LL, 32400},
    {"Asia/Tokyo", -921499347LL, 32400},
    {"Asia/Tokyo", 1202845095LL, 32400},
    {"Asia/Tokyo", -1160602245LL, 32400},
    {"Asia/Tokyo", 1774745999LL, 32400},
    {"Asia/Tokyo", 1774746000LL, 32400},
    {"Asia/Tokyo", 1792890000LL, 32400},
    {"Asia/Tokyo", 3802550400LL, 32400},
    {"Asia/Tokyo", 3786912000LL, 32400},
    {"Africa/Casablanca", 258142255LL, 0},
    {"Africa/Casablanca", 46712993LL, 0},
    {"Africa/Casablanca", 1549698119LL, 3600},
    {"Africa/Casablanca", 923954848LL, 0},
    {"Africa/Casablanca", 1774745999LL, 3600},
    {"Africa/Casablanca", 1774746000LL, 3600},
    {"Africa/Casablanca", 1792890000LL, 3600},
    {"Africa/Casablanca", 3802550400LL, 3600},
    {"Africa/Casablanca", 3786912000LL, 3600},

};

static struct tz *zone(const char *name)
{
    struct rn_err err;
    struct tz *tz = tz_load(name, &err);
    CHECK(tz != NULL, "tz_load(%s): %s", name, tz ? "" : err.msg);
    return tz;
}

static void test_offsets(void)
{
    for (size_t i = 0; i < sizeof offsets / sizeof offsets[0]; i++) {
        struct tz *tz = zone(offsets[i].zone);
        if (!tz) continue;
        int got = tz_offset_at(tz, offsets[i].utc);
        CHECK(got == offsets[i].east, "%s at %lld: offset %d, zoneinfo says %d", offsets[i].zone, offsets[i].utc, got,
              offsets[i].east);
        tz_free(tz);
    }
    struct rn_err err;
    CHECK(tz_load("Mars/Olympus_Mons", &err) == NULL && strstr(err.msg, "timezone 'Mars/Olympus_Mons': unknown zone"),
          "an unknown zone is refused: %s", err.msg);
    CHECK(tz_load("../../etc/passwd", &err) == NULL && strstr(err.msg, "not a zone name"), "a path is refused: %s", err.msg);
    struct tz *utc = zone("UTC");
    CHECK(utc && tz_offset_at(utc, 1700000000) == 0, "UTC is 0");
    tz_free(utc);
}

static void test_local_to_utc(void)
{
    struct tz *paris = zone("Europe/Paris"), *ny = zone("America/New_York");
    if (!paris || !ny) return;
    CHECK(tz_local_to_utc(paris, 1782874800) == 1782867600, "Paris 2026-07-01 03:00 is 01:00 UTC");
    CHECK(tz_local_to_utc(paris, 1774751400) == 1774746000, "Paris 2026-03-29 02:30 (skipped) is the change, 01:00 UTC");
    CHECK(tz_local_to_utc(paris, 1792895400) == 1792888200, "Paris 2026-10-25 02:30 (twice) is its first time, 00:30 UTC");
    CHECK(tz_local_to_utc(ny, 1772937000) == 1772953200, "New York 2026-03-08 02:30 (skipped) is 07:00 UTC");
    tz_free(paris);
    tz_free(ny);
    int64_t y;
    int m, d;
    tz_civil_from_days(tz_days_from_civil(2024, 2, 29), &y, &m, &d);
    CHECK(y == 2024 && m == 2 && d == 29, "civil round trip 2024-02-29: %lld-%d-%d", (long long)y, m, d);
    CHECK(tz_days_from_civil(1969, 12, 31) == -1, "1969-12-31 is day -1");
}

static int64_t next_of(const char *spec, const char *zone_name, int64_t after)
{
    struct cron c;
    struct rn_err err;
    if (cron_parse(spec, &c, &err)) {
        CHECK(0, "cron_parse(%s): %s", spec, err.msg);
        return -2;
    }
    struct tz *tz = zone(zone_name);
    int64_t next = tz ? cron_next(&c, tz, after) : -2;
    tz_free(tz);
    return next;
}

static void test_cron(void)
{
    const int64_t t0 = 1764547200; /* 2025-12-01 00:00:00 UTC, a Monday */
    CHECK(next_of("0 3 * * *", "UTC", t0) == t0 + 3 * 3600, "03:00 daily");
    CHECK(next_of("0 3 * * *", "UTC", t0 + 3 * 3600) == t0 + 27 * 3600, "strictly after: the next day");
    CHECK(next_of("*/15 * * * *", "UTC", t0 + 1) == t0 + 900, "every 15 minutes");
    CHECK(next_of("5/15 * * * *", "UTC", t0) == t0 + 300, "5/15 starts at 5");
    CHECK(next_of("0 0 * * 5", "UTC", t0) == t0 + 4 * 86400, "Friday 2025-12-05");
    CHECK(next_of("0 0 * * fri", "UTC", t0) == t0 + 4 * 86400, "fri by name");
    CHECK(next_of("0 0 * * 7", "UTC", t0) == t0 + 6 * 86400, "weekday 7 is Sunday");
    CHECK(next_of("0 0 3 * 5", "UTC", t0) == t0 + 2 * 86400, "day 3 or a Friday: the 3rd comes first");
    CHECK(next_of("0 0 1 jan *", "UTC", t0) == 1767225600, "@yearly-style: 2026-01-01");
    CHECK(next_of("@monthly", "UTC", t0) == 1767225600, "@monthly after Dec 1 is Jan 1");
    CHECK(next_of("@hourly", "UTC", t0 + 10) == t0 + 3600, "@hourly");
    CHECK(next_of("@every 15m", "UTC", t0) == t0 + 900, "@every 15m");
    CHECK(next_of("0 0 30 2 *", "UTC", t0) == -1, "Feb 30 never comes");
    CHECK(next_of("0 3 * * *", "Europe/Paris", t0) == t0 + 2 * 3600, "03:00 in Paris (winter) is 02:00 UTC");
    CHECK(next_of("0 3 * * *", "Europe/Paris", 1782864000) == 1782867600, "03:00 in Paris (summer) is 01:00 UTC");
    /* 2026-03-29: the clocks skip 02:00-03:00; a 02:30 job fires once, at the change */
    CHECK(next_of("30 2 * * *", "Europe/Paris", 1774735200) == 1774746000, "skipped 02:30 fires at the change");
    CHECK(next_of("30 2 * * *", "Europe/Paris", 1774746000) == 1774830600, "and not again until 02:30 the next day");
    /* 2026-10-25: 02:00-03:00 happens twice; a 02:30 job fires once */
    CHECK(next_of("30 2 * * *", "Europe/Paris", 1792885000) == 1792888200, "repeated 02:30 fires the first time");
    CHECK(next_of("30 2 * * *", "Europe/Paris", 1792888200) == 1792978200, "and not the second time");
    CHECK(next_of("0 9 * * mon-fri", "America/New_York", t0) == t0 + 14 * 3600, "09:00 weekdays in New York is 14:00 UTC");

    static const struct { const char *spec, *message; } bad[] = {
        {"0 3 * *", "expected 5 fields (minute hour day month weekday), got 4"},
        {"0 3 * * * *", "got more"},
        {"60 * * * *", "minute field '60': 60..60 is outside 0..59"},
        {"0 24 * * *", "hour field '24'"},
        {"0 0 0 * *", "day of month field '0'"},
        {"0 0 * 13 *", "month field '13'"},
        {"0 0 * * 8", "day of week field '8'"},
        {"x * * * *", "minute field 'x': expected a number"},
        {"0 0 * foo *", "month field 'foo': expected a number or a name"},
        {"*/0 * * * *", "the step must be 1..59"},
        {"5-1 * * * *", "5..1 is outside"},
        {"0 0 * * 1,", "expected a number"},
        {"@sometimes", "unknown macro"},
        {"@every 0s", "@every needs a duration of at least 1s"},
        {"@every soon", "@every needs a duration"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct cron c;
        struct rn_err err = {{0}};
        int rc = cron_parse(bad[i].spec, &c, &err);
        CHECK(rc == -1 && strstr(err.msg, bad[i].message), "cron_parse(%s): want '%s', got '%s'", bad[i].spec,
              bad[i].message, rc ? err.msg : "ok");
    }
}

int main(void)
{
    test_offsets();
    test_local_to_utc();
    test_cron();
    return check_report("test_tz_cron");
}
