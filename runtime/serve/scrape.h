/* scrape.h: `runnel serve`'s GET /metrics. Each run publishes its registry's text on a socket
 * (serve/exporter.h); the supervisor keeps its job's last text (after the run ends too: a
 * batch run's final figures stay until the next run) and, at a scrape, merges them with its
 * own families into one exposition (serve/exposition.h):
 *   runnel_serve_jobs                      jobs in the directory
 *   runnel_job_state{job,state}            1 for the job's state, 0 for the others
 *   runnel_job_restarts_total{job}         restarts by the job's policy since it was loaded or started
 *   runnel_job_runs_in_progress{job}       its runs now
 * Every family a job's registry holds comes through as it is, labelled with the job. */
#ifndef RUNNEL_SERVE_SCRAPE_H
#define RUNNEL_SERVE_SCRAPE_H

#include "core/util.h"
#include "serve/jobs.h"

#define SCRAPE_MESSAGE_MAX (4 << 20) /* a longer text is refused, with a note */

/* Read what run `index` of job sent on its metrics socket (the last text wins; the main run's
 * becomes job->metrics). Closes the socket at its end. */
void scrape_receive(struct serve_job *job, int index);

/* The whole exposition of the job table into out. */
void scrape_write(const struct job_table *jobs, struct buf *out);

#endif
