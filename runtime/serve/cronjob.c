/* cronjob.c: a scheduled job's firings (see cronjob.h). */
#include "serve/cronjob.h"

#include <stdarg.h>
#include <stdio.h>

#include "serve/history.h"
#include "serve/supervisor_int.h"

#define MISSED_MAX 100000 /* firings counted after a long absence */

static void skip_firing(struct supervisor *s, struct serve_job *job, int64_t fire_ms, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void skip_firing(struct supervisor *s, struct serve_job *job, int64_t fire_ms, const char *fmt, ...)
{
    char reason[512], iso[TZ_ISO_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    tz_format_iso8601(job->tz, fire_ms, 0, iso);
    sup_note(job, "run of %s SKIPPED: %s", iso, reason);
    struct rn_err err;
    if (history_skipped(s->history, job->name, job->file, fire_ms, sup_wall_ms(), reason, &err)) sup_note(job, "history: %s", err.msg);
}

int64_t cronjob_next(const struct serve_job *job, int64_t at_ms)
{
    int64_t next = cron_next(&job->spec.cron, job->tz, at_ms / 1000);
    return next < 0 ? 0 : next * 1000;
}

/* The schedule fires for fire_ms, now or late: Kubernetes CronJob's concurrencyPolicy and
 * startingDeadlineSeconds decide whether it runs. */
static void fire(struct supervisor *s, struct serve_job *job, int64_t fire_ms)
{
    char deadline[32];
    int64_t late_ms = sup_wall_ms() - fire_ms;
    if (job->spec.starting_deadline_ms && late_ms > job->spec.starting_deadline_ms) {
        snprintf(deadline, sizeof deadline, "%.1f", (double)job->spec.starting_deadline_ms / 1000.0);
        skip_firing(s, job, fire_ms, "it could start only %.1f s after its time, later than starting_deadline (%s s)",
                    (double)late_ms / 1000.0, deadline);
        return;
    }
    if (job->nruns == 0) {
        sup_start_run(s, job, "schedule", fire_ms);
        return;
    }
    char iso[TZ_ISO_MAX];
    switch (job->spec.overlap) {
    case OVERLAP_FORBID:
        if (job->pending_fire_ms) {
            tz_format_iso8601(job->tz, fire_ms, 0, iso);
            skip_firing(s, job, job->pending_fire_ms,
                        "the previous run was still running when the next firing (%s) came (overlap = forbid)", iso);
        }
        job->pending_fire_ms = fire_ms; /* runs when the current run ends, if still in time */
        break;
    case OVERLAP_REPLACE:
        if (job->then == THEN_RUN && job->then_scheduled_ms)
            skip_firing(s, job, job->then_scheduled_ms, "replaced by a later firing before it could start (overlap = replace)");
        job->then = THEN_RUN;
        job->then_trigger = "schedule";
        job->then_scheduled_ms = fire_ms;
        sup_note(job, "replacing the running run (overlap = replace)");
        sup_stop_runs(s, job);
        break;
    case OVERLAP_ALLOW:
        /* Started even though the job's lock will refuse it while the other run holds it. */
        if (job->nruns < JOB_MAX_RUNS) sup_start_run(s, job, "schedule", fire_ms);
        else skip_firing(s, job, fire_ms, "%d runs are running already (overlap = allow)", JOB_MAX_RUNS);
        break;
    }
}

/* A scheduled job becomes active: firings missed since the last one recorded (the supervisor
 * was not running, or the job was stopped) are counted; the latest of them may still run. */
void cronjob_activate(struct supervisor *s, struct serve_job *job)
{
    int64_t now = sup_wall_ms(), last = history_last_firing(s->history, job->name);
    job->next_fire_ms = cronjob_next(job, now);
    job->pending_fire_ms = 0;
    if (last <= 0 || last >= now) return;
    int64_t first = cronjob_next(job, last), latest = first, count = 0;
    for (int64_t n = first; n && n <= now && count < MISSED_MAX; n = cronjob_next(job, n)) {
        latest = n;
        count++;
    }
    if (!count || job->suspended) return;
    if (count > 1) {
        char iso[TZ_ISO_MAX];
        tz_format_iso8601(job->tz, latest, 0, iso);
        skip_firing(s, job, first, "%lld%s firings up to %s were missed while the job was not served; only the latest may run",
                    (long long)(count - 1), count == MISSED_MAX ? " or more" : "", iso);
    }
    fire(s, job, latest);
}

void cronjob_pending(struct supervisor *s, struct serve_job *job)
{
    int64_t t = job->pending_fire_ms;
    job->pending_fire_ms = 0;
    if (t && !job->suspended) fire(s, job, t);
}

void cronjob_due(struct supervisor *s, struct serve_job *job, int64_t wall)
{
    if (!job->next_fire_ms || wall < job->next_fire_ms) return;
    int64_t t = job->next_fire_ms, next = cronjob_next(job, t), missed = 0;
    for (; next && next <= wall && missed < MISSED_MAX; next = cronjob_next(job, next)) {
        t = next; /* a late wake-up (a suspended machine) fires the latest only */
        missed++;
    }
    if (missed)
        skip_firing(s, job, job->next_fire_ms, "%lld later firing(s) passed before the supervisor could fire it", (long long)missed);
    job->next_fire_ms = next;
    fire(s, job, t);
}
