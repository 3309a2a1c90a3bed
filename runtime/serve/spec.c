/* spec.c: a job's serve and schedule declarations (see spec.h). */
#include "serve/spec.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/tz.h"

static const char *const known_keys =
    "serve.mode, serve.restart.on, serve.restart.backoff, serve.restart.budget, "
    "schedule.cron, schedule.timezone, schedule.overlap, schedule.starting_deadline";

void serve_spec_init(struct serve_spec *s)
{
    memset(s, 0, sizeof *s);
    s->mode = SERVE_STREAM;
    restart_policy_default(&s->restart);
    s->overlap = OVERLAP_FORBID;
}

const char *serve_mode_name(enum serve_mode mode) { return mode == SERVE_BATCH ? "batch" : "stream"; }

const char *serve_overlap_name(enum serve_overlap overlap)
{
    return overlap == OVERLAP_REPLACE ? "replace" : overlap == OVERLAP_ALLOW ? "allow" : "forbid";
}

int serve_spec_set(struct serve_spec *s, const char *key, const char *value, struct rn_err *err)
{
    if (!strcmp(key, "serve.mode")) {
        if (!strcmp(value, "stream")) s->mode = SERVE_STREAM;
        else if (!strcmp(value, "batch")) s->mode = SERVE_BATCH;
        else return rn_fail(err, "serve.mode: '%s' is not \"stream\" or \"batch\"", value);
        s->mode_declared = 1;
        return 0;
    }
    if (!strcmp(key, "serve.restart.on")) return restart_parse_on(value, &s->restart.on, err);
    if (!strcmp(key, "serve.restart.backoff"))
        return restart_parse_backoff(value, &s->restart.backoff_min_ms, &s->restart.backoff_max_ms, err);
    if (!strcmp(key, "serve.restart.budget"))
        return restart_parse_budget(value, &s->restart.budget, &s->restart.budget_window_ms, err);
    if (!strcmp(key, "schedule.cron")) {
        if (strlen(value) >= sizeof s->cron_text) return rn_fail(err, "schedule.cron: '%.40s...' is too long", value);
        if (cron_parse(value, &s->cron, err)) return rn_wrap(err, "schedule.cron");
        snprintf(s->cron_text, sizeof s->cron_text, "%s", value);
        s->scheduled = 1;
        return 0;
    }
    if (!strcmp(key, "schedule.timezone")) {
        if (!*value || strlen(value) >= sizeof s->timezone)
            return rn_fail(err, "schedule.timezone: '%s' is not a zone name such as \"Europe/Paris\"", value);
        snprintf(s->timezone, sizeof s->timezone, "%s", value);
        return 0;
    }
    if (!strcmp(key, "schedule.overlap")) {
        if (!strcmp(value, "forbid")) s->overlap = OVERLAP_FORBID;
        else if (!strcmp(value, "replace")) s->overlap = OVERLAP_REPLACE;
        else if (!strcmp(value, "allow")) s->overlap = OVERLAP_ALLOW;
        else return rn_fail(err, "schedule.overlap: '%s' is not one of \"forbid\", \"replace\", \"allow\"", value);
        return 0;
    }
    if (!strcmp(key, "schedule.starting_deadline")) {
        if (rn_parse_duration_ms(value, &s->starting_deadline_ms) || s->starting_deadline_ms <= 0)
            return rn_fail(err, "schedule.starting_deadline: '%s' is not a duration above 0 such as \"10m\"", value);
        return 0;
    }
    return rn_fail(err, "unknown option '%s' (known: %s)", key, known_keys);
}

int serve_spec_finish(struct serve_spec *s, struct rn_err *err)
{
    int schedule_options = s->timezone[0] || s->overlap != OVERLAP_FORBID || s->starting_deadline_ms;
    if (!s->scheduled && schedule_options)
        return rn_fail(err, "schedule: timezone, overlap and starting_deadline need schedule.cron");
    if (s->scheduled && s->mode_declared && s->mode == SERVE_STREAM)
        return rn_fail(err, "schedule: a scheduled job runs in batch mode, but serve.mode is \"stream\"");
    if (s->scheduled) s->mode = SERVE_BATCH;
    if (!s->scheduled) return 0;
    int declared = s->timezone[0] != '\0';
    if (!declared) serve_local_zone(s->timezone, sizeof s->timezone);
    struct tz *tz = tz_load(s->timezone, err);
    if (!tz && !declared) { /* a local zone that is a POSIX rule, not a name: UTC, as cron would not guess */
        snprintf(s->timezone, sizeof s->timezone, "UTC");
        tz = tz_load(s->timezone, err);
    }
    if (!tz) return rn_wrap(err, "schedule.timezone");
    tz_free(tz);
    return 0;
}

/* The string values of one declared table (at most two levels: serve.restart.on). */
static int from_object(struct serve_spec *s, const char *prefix, json_t *obj, int depth, struct rn_err *err)
{
    if (!obj || json_is_null(obj)) return 0;
    if (!json_is_object(obj) || depth > 2) return rn_fail(err, "%s: expected an object", prefix);
    const char *key;
    json_t *value;
    json_object_foreach(obj, key, value) {
        char full[128];
        if ((size_t)snprintf(full, sizeof full, "%s.%s", prefix, key) >= sizeof full)
            return rn_fail(err, "%s: the option name '%.40s' is too long", prefix, key);
        if (json_is_object(value)) {
            if (from_object(s, full, value, depth + 1, err)) return -1;
        } else if (json_is_string(value)) {
            if (serve_spec_set(s, full, json_string_value(value), err)) return -1;
        } else {
            return rn_fail(err, "%s: expected a string", full);
        }
    }
    return 0;
}

int serve_spec_from_json(struct serve_spec *s, json_t *serve, json_t *schedule, struct rn_err *err)
{
    serve_spec_init(s);
    if (from_object(s, "serve", serve, 1, err) || from_object(s, "schedule", schedule, 1, err)) return -1;
    return serve_spec_finish(s, err);
}

void serve_local_zone(char *out, size_t n)
{
    const char *tz = getenv("TZ");
    if (tz && *tz == ':') tz++;
    if (tz && *tz && *tz != '/' && !strchr(tz, ',')) {
        snprintf(out, n, "%s", tz);
        return;
    }
    char link[PATH_MAX];
    ssize_t len = readlink("/etc/localtime", link, sizeof link - 1);
    if (len > 0) {
        link[len] = '\0';
        const char *zone = strstr(link, "zoneinfo/");
        if (zone && zone[9]) {
            snprintf(out, n, "%s", zone + 9);
            return;
        }
    }
    snprintf(out, n, "UTC");
}
