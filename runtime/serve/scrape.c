/* scrape.c: the runs' metrics received, and the supervisor's GET /metrics (see scrape.h). */
#include "serve/scrape.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/metrics.h"
#include "serve/exposition.h"
#include "serve/supervisor_int.h"

void scrape_receive(struct serve_job *job, int index)
{
    struct job_run *run = job->runs[index];
    if (run->metrics_fd < 0) return;
    for (int i = 0; i < 64; i++) { /* a run sends one a second: more means we were busy */
        ssize_t len = recv(run->metrics_fd, NULL, 0, MSG_PEEK | MSG_TRUNC);
        if (len < 0 && errno == EINTR) continue;
        if (len < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (len <= 0) { /* the run closed it (or it broke): nothing more comes */
            if (len < 0) sup_note(job, "metrics socket: %s", strerror(errno));
            close(run->metrics_fd);
            run->metrics_fd = -1;
            return;
        }
        if (len > SCRAPE_MESSAGE_MAX) {
            char skip;
            if (recv(run->metrics_fd, &skip, 1, 0) < 0) return;
            sup_note(job, "a metrics text of %zd bytes is over %d: left out", len, SCRAPE_MESSAGE_MAX);
            continue;
        }
        struct buf text;
        buf_init(&text);
        buf_reserve(&text, (size_t)len + 1);
        ssize_t n = recv(run->metrics_fd, text.data, (size_t)len, 0);
        if (n != len || index != 0) { /* only the main run's: overlapping runs share the job's label */
            buf_free(&text);
            continue;
        }
        text.len = (size_t)n;
        text.data[n] = '\0';
        buf_free(&job->metrics);
        job->metrics = text;
    }
}

/* The supervisor's own families, for jobs (one registry made per scrape, freed after). */
static void write_own(const struct job_table *jobs, struct buf *out)
{
    struct rn_err err;
    struct metrics *m = metrics_new(NULL, 0, &err);
    if (!m) return;
    struct metric *total = metrics_gauge(m, "runnel_serve_jobs", "Jobs (files) in the jobs directory.", NULL, 0, &err);
    if (total) metric_set(total, (double)jobs->count);
    for (size_t i = 0; i < jobs->count; i++) {
        const struct serve_job *job = jobs->jobs[i];
        if (job->removed || job->duplicate) continue;
        struct metric_label labels[2] = {{"job", job->name}, {"state", NULL}};
        for (int st = JOB_CREATED; st <= JOB_STOPPED; st++) {
            labels[1].value = job_state_name((enum job_state)st);
            struct metric *g = metrics_gauge(m, "runnel_job_state", "1 for the state the job is in (CREATED, SCHEDULED, "
                                             "RUNNING, FINISHED, FAILED, RESTARTING, STOPPED), 0 for the others.",
                                             labels, 2, &err);
            if (g) metric_set(g, job->state == (enum job_state)st);
        }
        struct metric *c = metrics_counter(m, "runnel_job_restarts_total",
                                           "Restarts by the job's restart policy since it was loaded or started.", labels, 1, &err);
        if (c) metric_add(c, job->restarts_total);
        struct metric *g = metrics_gauge(m, "runnel_job_runs_in_progress", "Runs of the job now.", labels, 1, &err);
        if (g) metric_set(g, job->nruns);
    }
    metrics_write_prometheus(m, out);
    metrics_free(m);
}

void scrape_write(const struct job_table *jobs, struct buf *out)
{
    struct buf own;
    buf_init(&own);
    write_own(jobs, &own);
    struct exposition_text *texts = rn_calloc(jobs->count + 1, sizeof *texts);
    size_t n = 0;
    texts[n++] = (struct exposition_text){own.data ? own.data : "", own.len};
    for (size_t i = 0; i < jobs->count; i++) {
        const struct serve_job *job = jobs->jobs[i];
        if (!job->removed && !job->duplicate && job->metrics.len)
            texts[n++] = (struct exposition_text){job->metrics.data, job->metrics.len};
    }
    size_t clashes = exposition_merge(texts, n, out);
    if (clashes) sup_note(NULL, "GET /metrics: %zu metric families of the jobs were left out: their type differs between "
                                "jobs (runs of older and newer runners?)", clashes);
    free(texts);
    buf_free(&own);
}
