/* history.h: the supervisor's record of every run, in SQLite at STATE/serve.db (WAL, so the
 * sqlite3 shell or another reader can look while serve writes; the schema version is the
 * database's user_version).
 *
 * One table, `runs`: one row per run started (RUNNING until it ends: FINISHED, FAILED, STOPPED
 * or LOCKED, with its exit code or signal, its last error and its --summary-json) and one per
 * scheduled firing that did not run (SKIPPED, with the reason). Times are Unix milliseconds.
 * A write that fails is reported to the caller and changes nothing in the supervisor's state. */
#ifndef RUNNEL_SERVE_HISTORY_H
#define RUNNEL_SERVE_HISTORY_H

#include <jansson.h>
#include <stdint.h>
#include "core/tz.h"
#include "core/util.h"

#define HISTORY_SCHEMA_VERSION 1

struct history;

/* Open (and create or check the schema of) STATE/serve.db. Runs left RUNNING by a supervisor
 * that died are closed as FAILED. NULL and err naming the file. Caller frees with history_close. */
struct history *history_open(const char *state_dir, struct rn_err *err);
void history_close(struct history *h);

/* A run started: its row id, or -1 and err. scheduled_ms: the firing it runs for, 0 if none. */
int64_t history_started(struct history *h, const char *job, const char *file, const char *trigger, int64_t scheduled_ms,
                        int64_t started_ms, long pid, struct rn_err *err);
/* Run `id` ended. exit_code -1 when it was killed by `signal`; error and summary may be NULL. */
int history_ended(struct history *h, int64_t id, int64_t ended_ms, int exit_code, int signal, const char *state,
                  const char *error, const char *summary, struct rn_err *err);
/* A firing that did not run, and why. */
int history_skipped(struct history *h, const char *job, const char *file, int64_t scheduled_ms, int64_t at_ms,
                    const char *reason, struct rn_err *err);

/* The latest firing recorded for job (run or skipped), Unix ms; 0 when none. */
int64_t history_last_firing(struct history *h, const char *job);
/* The summary of job's latest run that has one, or NULL. Caller frees. */
char *history_last_summary(struct history *h, const char *job);

/* job's latest `limit` rows, newest first, as a JSON array; times in ISO 8601 in zone tz (NULL:
 * UTC). NULL and err when the query fails. Caller owns the array. */
json_t *history_runs(struct history *h, const char *job, int limit, const struct tz *tz, struct rn_err *err);

#endif
