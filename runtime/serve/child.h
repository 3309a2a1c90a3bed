/* child.h: one child process of the supervisor (`runnel run JOB.lua ...` or `runnel check JOB.lua
 * --describe`), started from /proc/self/exe so a crash touches no other job.
 *
 * The child runs in its own process group (a terminal's Ctrl-C reaches only the supervisor,
 * which then stops each child once, gracefully) and gets SIGTERM when the supervisor dies
 * (PR_SET_PDEATHSIG), so a killed supervisor leaves no run holding a job's lock. Its stderr
 * (and for a describe, its stdout) is a non-blocking pipe the supervisor's loop reads with
 * child_read; stderr lines go on to a log file, and the last message is kept as its error. */
#ifndef RUNNEL_SERVE_CHILD_H
#define RUNNEL_SERVE_CHILD_H

#include <stdint.h>
#include <sys/types.h>
#include "core/util.h"

#define CHILD_LINE_MAX 1024
#define CHILD_STDOUT_MAX (1 << 20)

struct child {
    pid_t pid;                  /* 0: not running (never started, or reaped) */
    int err_fd;                 /* read end of its stderr; -1 when closed */
    int out_fd;                 /* read end of its stdout when captured; -1 otherwise */
    int log_fd;                 /* its stderr lines are appended here; -1: nowhere. Not owned */
    struct buf out;             /* captured stdout (at most CHILD_STDOUT_MAX bytes) */
    char partial[CHILD_LINE_MAX]; /* a stderr line not yet ended */
    size_t partial_len;
    char last_line[CHILD_LINE_MAX];    /* the last non-empty stderr line */
    char last_message[CHILD_LINE_MAX]; /* the last "runnel: ..." line, without the prefix */
    int64_t started_ms;         /* monotonic */
    int64_t started_wall_ms;    /* Unix ms */
    int64_t kill_at_ms;         /* monotonic: SIGKILL then, when stopping; 0 otherwise */
    int killed;                 /* it got SIGKILL from child_kill */
};

/* Start exe with argv (argv[0] shown in ps; NULL-terminated) with stdin from /dev/null, stderr on
 * a pipe, stdout on a pipe when capture_stdout, else the supervisor's. pass_fd (-1: none) is
 * the child's descriptor 3 (the metrics socket); the caller still owns and closes it. c must be
 * zeroed or finished. -1 and err naming argv[1..2] on failure. */
int child_spawn(struct child *c, const char *exe, char *const argv[], int capture_stdout, int log_fd, int pass_fd,
                struct rn_err *err);

/* Read what fd (c->err_fd or c->out_fd) holds now, at most 64 KiB. At end of file the pipe is
 * closed and set to -1. Returns 1 when fd was closed, 0 when it is empty for now, 2 when it
 * may hold more (call again: a chatty child cannot starve the loop). */
int child_read(struct child *c, int fd);

/* SIGTERM now, SIGKILL (to its process group) once timeout_ms have passed: the caller calls
 * child_kill when rn_now_ms() reaches c->kill_at_ms. */
void child_terminate(struct child *c, int64_t timeout_ms);
void child_kill(struct child *c);

/* The process was reaped: read what its pipes still hold, close them. */
void child_finish(struct child *c);
/* Free what child_spawn allocated (the captured stdout); the child must be finished. */
void child_free(struct child *c);

/* The message a failure should show: the last "runnel: " line, else the last line, else how it
 * ended ("exit code 3", "killed by signal 9 (Killed)"). */
void child_error(const struct child *c, int status, char *out, size_t n);
/* "exit code N" or "killed by signal N (NAME)". */
void child_describe_status(int status, char *out, size_t n);

#endif
