/* cronjob.h: a scheduled job's firings with Kubernetes CronJob's semantics: concurrencyPolicy
 * (overlap = forbid: a firing during a run waits for it, and is skipped if a later one comes
 * first; replace: the run is stopped and the new one starts; allow: it starts anyway, and the
 * job's lock refuses it while the other run holds it), startingDeadlineSeconds (a firing that
 * cannot start within the deadline is skipped) and missed firings (counted after an absence;
 * only the latest may still run). Every skip is a SKIPPED row of the history, with the reason. */
#ifndef RUNNEL_SERVE_CRONJOB_H
#define RUNNEL_SERVE_CRONJOB_H

#include <stdint.h>
#include "serve/jobs.h"

struct supervisor;

/* The first firing after at_ms (Unix ms), or 0 when the schedule has none. */
int64_t cronjob_next(const struct serve_job *job, int64_t at_ms);
/* The job becomes active (loaded, reloaded, started by the API): its next firing, and the
 * latest firing missed since the last one recorded, which may run now. */
void cronjob_activate(struct supervisor *s, struct serve_job *job);
/* The timer: when job->next_fire_ms has come, fire (the latest, if several have passed). */
void cronjob_due(struct supervisor *s, struct serve_job *job, int64_t wall_ms);
/* The job's runs have ended: a firing that waited for them (overlap = forbid) goes now. */
void cronjob_pending(struct supervisor *s, struct serve_job *job);

#endif
