/* supervisor_int.h: the supervisor's insides, shared by supervisor.c, cronjob.c and scrape.c only. */
#ifndef RUNNEL_SERVE_SUPERVISOR_INT_H
#define RUNNEL_SERVE_SUPERVISOR_INT_H

#include <limits.h>
#include "serve/supervisor.h"

struct api;

struct supervisor {
    struct serve_options opts;
    char exe[PATH_MAX];
    char jobs_dir[PATH_MAX];
    char state_dir[PATH_MAX];
    char serve_dir[PATH_MAX + 8];  /* STATE/serve: run summaries and job logs */
    int epfd, sigfd, inofd;
    struct job_table jobs;
    struct history *history;
    struct api *api;
    int stopping;                  /* SIGTERM/SIGINT: every run is being stopped */
    int64_t rescan_at_ms;          /* monotonic; 0: none due */
    int64_t started_ms;
    int64_t run_seq;               /* numbers the runs' summary files */
};

int64_t sup_wall_ms(void);
/* A line on serve's stderr about job (NULL: serve itself). */
void sup_note(const struct serve_job *job, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Start a run of job (state RUNNING); on failure the job's last error says why. */
void sup_start_run(struct supervisor *s, struct serve_job *job, const char *trigger, int64_t scheduled_ms);
/* SIGTERM every run of job (SIGKILL after the stop timeout); job->then says what follows. */
void sup_stop_runs(struct supervisor *s, struct serve_job *job);

#endif
