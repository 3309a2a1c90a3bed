/* test_serve_spec.c: a job's serve/schedule declarations (defaults, each value's errors, the
 * checks across values, the describe's JSON) and times in ISO 8601 with a zone's offset (the
 * expected strings from GNU date, an independent reader of the same zone files). */
#include <string.h>

#include "core/tz.h"
#include "serve/spec.h"
#include "check.h"

static int set_all(struct serve_spec *s, const char *const *kv, struct rn_err *err)
{
    serve_spec_init(s);
    for (; kv[0]; kv += 2)
        if (serve_spec_set(s, kv[0], kv[1], err)) return -1;
    return serve_spec_finish(s, err);
}

int main(void)
{
    struct serve_spec s;
    struct rn_err err;

    /* defaults: a stream job, restarted on failure 1s..5m, 5 within 10 minutes */
    const char *none[] = {NULL};
    CHECK(set_all(&s, none, &err) == 0, "%s", err.msg);
    CHECK(s.mode == SERVE_STREAM && !s.scheduled && s.restart.on == RESTART_ON_FAILURE && s.restart.budget == 5 &&
              s.restart.backoff_max_ms == 300000,
          "defaults");

    /* a schedule makes a batch job; its zone and options */
    const char *sched[] = {"schedule.cron", "0 3 * * *", "schedule.timezone", "Europe/Paris", "schedule.overlap", "replace",
                           "schedule.starting_deadline", "10m", NULL};
    CHECK(set_all(&s, sched, &err) == 0, "%s", err.msg);
    CHECK(s.mode == SERVE_BATCH && s.scheduled && s.overlap == OVERLAP_REPLACE && s.starting_deadline_ms == 600000 &&
              !strcmp(s.timezone, "Europe/Paris") && !strcmp(s.cron_text, "0 3 * * *"),
          "schedule");
    const char *no_zone[] = {"schedule.cron", "@every 15m", NULL};
    CHECK(set_all(&s, no_zone, &err) == 0 && s.timezone[0] && s.cron.every_s == 900 && s.overlap == OVERLAP_FORBID,
          "a schedule without a zone takes the local one (%s)", s.timezone);

    /* errors name the option and the value */
    const char *stream_sched[] = {"serve.mode", "stream", "schedule.cron", "@daily", NULL};
    CHECK(set_all(&s, stream_sched, &err) == -1 && strstr(err.msg, "a scheduled job runs in batch mode"), "%s", err.msg);
    const char *bad_cron[] = {"schedule.cron", "61 * * * *", NULL};
    CHECK(set_all(&s, bad_cron, &err) == -1 && strstr(err.msg, "schedule.cron: schedule '61 * * * *': minute field"), "%s",
          err.msg);
    const char *bad_zone[] = {"schedule.cron", "@daily", "schedule.timezone", "Europe/Atlantis", NULL};
    CHECK(set_all(&s, bad_zone, &err) == -1 && strstr(err.msg, "schedule.timezone: ") && strstr(err.msg, "Europe/Atlantis"),
          "%s", err.msg);
    const char *lone_overlap[] = {"schedule.overlap", "allow", NULL};
    CHECK(set_all(&s, lone_overlap, &err) == -1 && strstr(err.msg, "need schedule.cron"), "%s", err.msg);
    const char *bad_overlap[] = {"schedule.cron", "@daily", "schedule.overlap", "sometimes", NULL};
    CHECK(set_all(&s, bad_overlap, &err) == -1 && strstr(err.msg, "schedule.overlap: 'sometimes'"), "%s", err.msg);
    const char *bad_deadline[] = {"schedule.cron", "@daily", "schedule.starting_deadline", "soon", NULL};
    CHECK(set_all(&s, bad_deadline, &err) == -1 && strstr(err.msg, "schedule.starting_deadline: 'soon'"), "%s", err.msg);
    const char *bad_mode[] = {"serve.mode", "daemon", NULL};
    CHECK(set_all(&s, bad_mode, &err) == -1 && strstr(err.msg, "serve.mode: 'daemon'"), "%s", err.msg);
    const char *bad_budget[] = {"serve.restart.budget", "five", NULL};
    CHECK(set_all(&s, bad_budget, &err) == -1 && strstr(err.msg, "restart.budget: 'five'"), "%s", err.msg);
    const char *typo[] = {"serve.restrat.on", "no", NULL};
    CHECK(set_all(&s, typo, &err) == -1 && strstr(err.msg, "unknown option 'serve.restrat.on'") &&
              strstr(err.msg, "serve.restart.on"),
          "%s", err.msg);

    /* the describe's JSON, as `runnel check --describe` prints it */
    json_t *serve = json_loads("{\"restart\": {\"on\": \"always\", \"backoff\": \"2s..1m\", \"budget\": \"3/5m\"}}", 0, NULL);
    json_t *schedule = json_loads("{\"cron\": \"*/5 * * * *\", \"timezone\": \"UTC\"}", 0, NULL);
    CHECK(serve_spec_from_json(&s, serve, schedule, &err) == 0, "%s", err.msg);
    CHECK(s.restart.on == RESTART_ALWAYS && s.restart.backoff_min_ms == 2000 && s.restart.budget == 3 &&
              s.restart.budget_window_ms == 300000 && s.mode == SERVE_BATCH,
          "from JSON");
    CHECK(serve_spec_from_json(&s, NULL, NULL, &err) == 0 && s.mode == SERVE_STREAM, "no declarations");
    json_t *nested = json_loads("{\"restart\": {\"on\": 5}}", 0, NULL);
    CHECK(serve_spec_from_json(&s, nested, NULL, &err) == -1 && strstr(err.msg, "serve.restart.on: expected a string"), "%s",
          err.msg);
    json_decref(serve);
    json_decref(schedule);
    json_decref(nested);

    /* ISO 8601 with the zone's offset */
    static const struct { const char *zone; long long ms; int with_ms; const char *want; } iso[] = {
        {"Europe/Paris", 1774745999000LL, 0, "2026-03-29T01:59:59+01:00"},
        {"Europe/Paris", 1774746000000LL, 0, "2026-03-29T03:00:00+02:00"},
        {"America/New_York", 1774746000000LL, 0, "2026-03-28T21:00:00-04:00"},
        {"Asia/Kolkata", 1774746000000LL, 0, "2026-03-29T06:30:00+05:30"},
        {"America/St_Johns", 1774746000000LL, 0, "2026-03-28T22:30:00-02:30"},
        {"UTC", 1774746000123LL, 1, "2026-03-29T01:00:00.123+00:00"},
        {NULL, 1774746000123LL, 1, "2026-03-29T01:00:00.123Z"},
        {NULL, -1LL, 1, "1969-12-31T23:59:59.999Z"},
    };
    for (size_t i = 0; i < sizeof iso / sizeof iso[0]; i++) {
        struct tz *tz = iso[i].zone ? tz_load(iso[i].zone, &err) : NULL;
        CHECK(!iso[i].zone || tz, "tz_load(%s): %s", iso[i].zone, err.msg);
        char out[TZ_ISO_MAX];
        tz_format_iso8601(tz, iso[i].ms, iso[i].with_ms, out);
        CHECK(!strcmp(out, iso[i].want), "%s %lld: got %s, want %s", iso[i].zone ? iso[i].zone : "(UTC)", iso[i].ms, out,
              iso[i].want);
        tz_free(tz);
    }
    return check_report("test_serve_spec");
}
