/* jobs.h: the supervisor's job table: one entry per *.lua file of the jobs directory, with what
 * its describe said (name, serve/schedule spec, dead-letter file), its state, its runs and its
 * timers. The table owns every job; a job owns its runs and children.
 *
 * States, as Flink and Kafka Connect name them: CREATED (its file is being read by `runnel
 * check --describe`), SCHEDULED (a batch job waiting for its next firing), RUNNING, FINISHED,
 * FAILED, RESTARTING (waiting out a backoff), STOPPED (by the API, or at shutdown). The state
 * machine itself is the supervisor's (supervisor.c); this file keeps the data and the files. */
#ifndef RUNNEL_SERVE_JOBS_H
#define RUNNEL_SERVE_JOBS_H

#include <jansson.h>
#include <limits.h>
#include <stdint.h>
#include "core/tz.h"
#include "serve/child.h"
#include "serve/labels.h"
#include "serve/restart.h"
#include "serve/spec.h"

enum job_state { JOB_CREATED, JOB_SCHEDULED, JOB_RUNNING, JOB_FINISHED, JOB_FAILED, JOB_RESTARTING, JOB_STOPPED };

/* What to do once every run of a job has stopped. */
enum job_then { THEN_NOTHING, THEN_RUN, THEN_STOP };

#define JOB_NAME_MAX 128
#define JOB_MAX_RUNS 4      /* overlap = "allow" may start more than one */
#define JOB_FILE_MAX (16 << 20)

struct job_run {
    struct child child;
    char job[JOB_NAME_MAX];  /* the job's name when it started (a reload may rename the job) */
    int64_t id;              /* its history row; -1 when it could not be recorded */
    const char *trigger;     /* a constant: "start", "schedule", "restart", "retry", "api", "reload" */
    int64_t scheduled_ms;    /* the firing it runs for; 0 if none */
    int stop_requested;      /* the supervisor asked it to stop: a clean end is STOPPED */
    int log_fd;              /* STATE/serve/JOB.log, where its stderr goes; owned */
    int metrics_fd;          /* the socket its metrics come on (serve/exporter.h); owned; -1: none */
    char summary_path[PATH_MAX + 256];
};

struct file_identity {
    int64_t mtime_ns, size;
    unsigned char sha256[32];
};

struct serve_job {
    char *file;                      /* DIR/NAME.lua */
    char name[JOB_NAME_MAX];         /* declared; the file's stem until described */
    struct file_identity identity;
    int described;                   /* spec, dead_letters and tz hold the last good describe */
    int duplicate;                   /* another file declares the same name: not addressable */
    struct serve_spec spec;
    char *dead_letters;              /* the JSONL errors sink's path, or NULL */
    struct tz *tz;                   /* the schedule's zone, when scheduled */
    enum job_state state;
    struct job_run *runs[JOB_MAX_RUNS]; /* runs[0] is the job's main run */
    int nruns;
    struct child describe;           /* pid 0: no describe running */
    int describe_again;              /* the file changed while a describe ran */
    int ready;                       /* the last describe succeeded: the job can run */
    int reload;                      /* activate again once the runs and the describe are done */
    int removed;                     /* the file is gone: freed once its runs have stopped */
    int suspended;                   /* stopped by the API: no restarts, no firings */
    enum job_then then;              /* once the runs have stopped */
    const char *then_trigger;
    int64_t then_scheduled_ms;
    struct restart_state restarts;
    int restarts_total;              /* policy restarts since the job was loaded or started */
    int locked_retries;              /* starts refused by the lock in a row */
    int64_t restart_at_ms;           /* monotonic; 0: no restart pending */
    const char *restart_trigger;     /* "restart" (the policy) or "retry" (the lock was taken) */
    int64_t next_fire_ms;            /* Unix ms of the next firing; 0: none */
    int64_t pending_fire_ms;         /* overlap = forbid: a firing waiting for the run to end */
    char last_error[CHILD_LINE_MAX];
    char *last_summary;              /* the last run's --summary-json text */
    int64_t last_exit_code;          /* -1: none yet */
    struct buf metrics;              /* the main run's last metrics text (kept after it ends) */
    struct label_watch *labels;      /* GET /jobs/NAME/labels: its output read so far; NULL until asked */
    char *output;                    /* its first JSONL sink's path, or NULL */
    char *label_field;               /* its model's first output field, or NULL */
};

struct job_table {
    struct serve_job **jobs;  /* sorted by file */
    size_t count, cap;
};

const char *job_state_name(enum job_state state);

/* A new job for file (copied), in state CREATED, named by the file's stem. Owned by the table. */
struct serve_job *jobs_add(struct job_table *t, const char *file);
/* Remove and free job (its runs and children must be finished). */
void jobs_remove(struct job_table *t, struct serve_job *job);
void jobs_free(struct job_table *t);
struct serve_job *jobs_by_file(struct job_table *t, const char *file);
/* The addressable job of that name (not a duplicate, not removed), or NULL. */
struct serve_job *jobs_by_name(struct job_table *t, const char *name);

/* The *.lua files of dir (not hidden), sorted, as "dir/name.lua". NULL and err when dir
 * cannot be read. Caller frees each and the array. */
char **jobs_scan_dir(const char *dir, size_t *count, struct rn_err *err);

/* The file's identity now: mtime and size from stat, and its SHA-256 when those differ from
 * *known (else *known's). -1 and err when the file cannot be read. */
int jobs_identity(const char *file, const struct file_identity *known, struct file_identity *out, struct rn_err *err);

/* Apply a describe's JSON (`runnel check --describe`): name, spec, dead letters, zone. On error
 * the job keeps what it had and err says what is wrong. */
int jobs_apply_describe(struct serve_job *job, const char *json_text, struct rn_err *err);

/* The job as the API shows it. detail: everything (GET /jobs/NAME), else the list's columns. */
json_t *jobs_json(const struct serve_job *job, int detail);

void jobs_run_free(struct job_run *run);

#endif
