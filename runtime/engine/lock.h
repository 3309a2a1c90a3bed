/* lock.h: one run of a job at a time, per state directory.
 *
 * The lock is flock(2) on STATE_DIR/JOB.lock, so the kernel releases it when the process
 * dies however it dies: a killed run never blocks the next one. The file holds the holder's
 * pid and start time, for the message the next run prints. `runnel run` and `runnel serve`
 * take the same lock, so a manual run and a scheduled one never overlap. */
#ifndef RUNNEL_LOCK_H
#define RUNNEL_LOCK_H

#include "core/util.h"

struct job_lock {
    int fd;   /* -1 when not held */
};

/* Take the lock of job `job` in state_dir (created when missing). 0 when taken. -1 and err
 * otherwise; *busy is 1 when another process holds it (err: "job NAME is already running
 * (pid N, since HH:MM:SS); state in DIR/"), 0 for any other failure (err names the file). */
int job_lock_take(struct job_lock *lock, const char *state_dir, const char *job, int *busy, struct rn_err *err);
void job_lock_release(struct job_lock *lock);

#endif
