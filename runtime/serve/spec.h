/* spec.h: how a job asks to be served, as its script declares it:
 *   serve    = { mode = "stream"|"batch", restart = { on = "failure", backoff = "1s..5m", budget = "5/10m" } }
 *   schedule = { cron = "0 3 * * *", timezone = "Europe/Paris", overlap = "forbid", starting_deadline = "10m" }
 * with systemd's (Restart=) and Kubernetes CronJob's (concurrencyPolicy, startingDeadlineSeconds,
 * timeZone) meanings. The one parser for both readers: `runnel check` (lua/job.c, at the job's
 * line) and the supervisor (the JSON `runnel check --describe` prints), so they cannot disagree. */
#ifndef RUNNEL_SERVE_SPEC_H
#define RUNNEL_SERVE_SPEC_H

#include <jansson.h>
#include <stdint.h>
#include "core/util.h"
#include "serve/cron.h"
#include "serve/restart.h"

enum serve_mode { SERVE_STREAM, SERVE_BATCH };
enum serve_overlap { OVERLAP_FORBID, OVERLAP_REPLACE, OVERLAP_ALLOW };

struct serve_spec {
    enum serve_mode mode;         /* default: batch with a schedule, else stream */
    int mode_declared;
    struct restart_policy restart; /* default: restart_policy_default */
    int scheduled;                /* schedule.cron was declared */
    struct cron cron;
    char cron_text[128];
    char timezone[64];            /* the declared zone; after serve_spec_finish, the local one when none */
    enum serve_overlap overlap;   /* default: forbid (see the README: a job's lock admits one run) */
    int64_t starting_deadline_ms; /* 0: a late firing is never too late */
};

void serve_spec_init(struct serve_spec *s);

/* Set one declared value. key: "serve.mode", "serve.restart.on", "serve.restart.backoff",
 * "serve.restart.budget", "schedule.cron", "schedule.timezone", "schedule.overlap",
 * "schedule.starting_deadline". -1 and err "KEY: what is wrong" (an unknown key lists the known). */
int serve_spec_set(struct serve_spec *s, const char *key, const char *value, struct rn_err *err);

/* After every value: the defaults that depend on others and the checks across values (a
 * schedule needs batch mode; the zone must load; a schedule's options need its cron). */
int serve_spec_finish(struct serve_spec *s, struct rn_err *err);

/* Fill and finish s from the "serve" and "schedule" objects of a describe (NULL or null when
 * the script declares none): nested objects of strings, as the script wrote them. */
int serve_spec_from_json(struct serve_spec *s, json_t *serve, json_t *schedule, struct rn_err *err);

const char *serve_mode_name(enum serve_mode mode);
const char *serve_overlap_name(enum serve_overlap overlap);

/* The name of the local time zone: $TZ, else what /etc/localtime links to, else "UTC". */
void serve_local_zone(char *out, size_t n);

#endif
