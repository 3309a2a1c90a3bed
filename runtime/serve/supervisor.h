/* supervisor.h: `runnel serve`: every *.lua file of a directory is a job, each run a child
 * `runnel run` process; one event loop (epoll over a signalfd, an inotify watch of the jobs
 * directory, the children's stderr pipes and the HTTP server; timers for schedules, backoffs
 * and stop deadlines) restarts failed jobs by their policy, fires schedules with Kubernetes
 * CronJob semantics, reloads changed files and stops everything gracefully on SIGTERM/SIGINT.
 *
 * The supervisor never runs job Lua itself: it reads a job's name and declarations from a child
 * `runnel check JOB.lua --describe`. Everything runs on the loop's one thread, so the API's
 * handlers (api.c) call the functions below directly. */
#ifndef RUNNEL_SERVE_SUPERVISOR_H
#define RUNNEL_SERVE_SUPERVISOR_H

#include <jansson.h>
#include <stdint.h>
#include "core/util.h"
#include "serve/history.h"
#include "serve/jobs.h"

struct serve_options {
    const char *jobs_dir;
    const char *state_dir;   /* the runs' --state-dir (their locks and checkpoints) and serve.db */
    const char *listen;      /* HOST:PORT of the HTTP API */
    const char *token_file;  /* NULL: no bearer token (loopback only) */
    int64_t stop_timeout_ms; /* SIGTERM, then SIGKILL after this */
};

struct supervisor;

/* Run until SIGTERM or SIGINT has stopped every child (a second signal kills them at once).
 * 0 then; -1 and err when it cannot start (the directory, the database, the listen address). */
int supervisor_run(const struct serve_options *opts, struct rn_err *err);

/* For api.c, on the loop's thread. */
struct job_table *supervisor_jobs(struct supervisor *s);
struct history *supervisor_history(struct supervisor *s);
/* Apply "start", "stop", "restart" or "run" to job. 0 when done (the change may still be under
 * way: a stop drains first), else the HTTP status that fits (409, 503) with err saying why. */
int supervisor_verb(struct supervisor *s, struct serve_job *job, const char *verb, struct rn_err *err);
/* GET /health: {"status": "ok"|"stopping", "pid", "uptime_s", "jobs", "running"}. Caller owns. */
json_t *supervisor_health(struct supervisor *s);

#endif
