/* supervisor.c: the loop and the job state machine of `runnel serve` (see supervisor.h).
 *
 * A job's life: CREATED while `runnel check --describe` reads its file; then a stream job (or
 * a batch job without a schedule) starts at once, a scheduled job waits SCHEDULED. A run that
 * ends goes by its restart policy (RESTARTING, then a new run) until the budget is spent
 * (FAILED); a scheduled job returns to SCHEDULED. What the API asks for, a reload or a shutdown
 * first stops the runs (SIGTERM: they drain and commit), then happens (job->then). */
#include "serve/supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "serve/api.h"
#include "serve/cronjob.h"
#include "serve/scrape.h"
#include "serve/supervisor_int.h"

#define DESCRIBE_TIMEOUT_MS 30000
#define RESCAN_DEBOUNCE_MS 200   /* an editor writes a file in several steps */
#define RESCAN_POLL_MS 2000      /* without inotify */
#define MAX_WAIT_MS 60000        /* a wall-clock change is noticed within a minute */

int64_t sup_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sup_note(const struct serve_job *job, const char *fmt, ...)
{
    char iso[TZ_ISO_MAX], msg[1536];
    tz_format_iso8601(NULL, sup_wall_ms(), 1, iso);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (job) fprintf(stderr, "runnel serve: %s job %s: %s\n", iso, job->name, msg);
    else fprintf(stderr, "runnel serve: %s %s\n", iso, msg);
}

static void watch_fd(struct supervisor *s, int fd)
{
    if (fd < 0) return;
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev)) sup_note(NULL, "cannot watch descriptor %d: %s", fd, strerror(errno));
}

static void set_error(struct serve_job *job, const char *msg) { snprintf(job->last_error, sizeof job->last_error, "%s", msg); }

/* ---- runs ---- */

void sup_start_run(struct supervisor *s, struct serve_job *job, const char *trigger, int64_t scheduled_ms)
{
    struct rn_err err;
    if (job->nruns == JOB_MAX_RUNS) return;
    struct job_run *run = rn_calloc(1, sizeof *run);
    run->child.err_fd = run->child.out_fd = run->metrics_fd = -1;
    snprintf(run->job, sizeof run->job, "%s", job->name);
    run->trigger = trigger;
    run->scheduled_ms = scheduled_ms;
    snprintf(run->summary_path, sizeof run->summary_path, "%s/%s.%lld.summary.json", s->serve_dir, job->name,
             (long long)++s->run_seq);
    unlink(run->summary_path);
    char log[sizeof s->serve_dir + JOB_NAME_MAX + 8];
    snprintf(log, sizeof log, "%s/%s.log", s->serve_dir, job->name);
    run->log_fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (run->log_fd < 0) sup_note(job, "%s: cannot open the job's log: %s", log, strerror(errno));
    const char *mode = job->spec.mode == SERVE_BATCH ? "batch" : "stream";
    char *argv[] = {"runnel", "run", job->file, "--mode", (char *)mode, "--state-dir", s->state_dir,
                    "--summary-json", run->summary_path, "--no-progress", "--metrics-fd", "3", NULL};
    int pair[2] = {-1, -1}; /* the run's metrics: one message per text (serve/exporter.h) */
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair)) {
        sup_note(job, "cannot make the metrics socket: %s; the run's metrics are not shown", strerror(errno));
        argv[10] = NULL;
    } else {
        fcntl(pair[0], F_SETFL, O_NONBLOCK);
    }
    run->metrics_fd = pair[0];
    int spawned = child_spawn(&run->child, s->exe, argv, 0, run->log_fd, pair[1], &err);
    if (pair[1] >= 0) close(pair[1]);
    if (spawned) {
        set_error(job, err.msg);
        sup_note(job, "FAILED: %s", err.msg);
        jobs_run_free(run);
        if (job->nruns == 0) job->state = JOB_FAILED;
        return;
    }
    watch_fd(s, run->child.err_fd);
    watch_fd(s, run->metrics_fd);
    run->id = history_started(s->history, job->name, job->file, trigger, scheduled_ms, run->child.started_wall_ms,
                              (long)run->child.pid, &err);
    if (run->id < 0) sup_note(job, "history: %s", err.msg);
    job->runs[job->nruns++] = run;
    job->state = JOB_RUNNING;
    job->restart_at_ms = 0;
    sup_note(job, "RUNNING (pid %ld, %s, %s)", (long)run->child.pid, mode, trigger);
}

void sup_stop_runs(struct supervisor *s, struct serve_job *job)
{
    for (int i = 0; i < job->nruns; i++) {
        job->runs[i]->stop_requested = 1;
        child_terminate(&job->runs[i]->child, s->opts.stop_timeout_ms);
    }
}

/* The job is described and has no run: start it as its declarations say. */
static void activate(struct supervisor *s, struct serve_job *job, const char *trigger)
{
    job->reload = 0;
    if (job->suspended) {
        job->state = JOB_STOPPED;
        return;
    }
    if (job->spec.scheduled) {
        job->state = JOB_SCHEDULED;
        cronjob_activate(s, job);
        if (job->nruns) job->state = JOB_RUNNING;
        return;
    }
    sup_start_run(s, job, trigger, 0);
}

static void start_describe(struct supervisor *s, struct serve_job *job);

/* Every run of job has ended; the last one ended as `outcome`. May free job. */
static void after_runs(struct supervisor *s, struct serve_job *job, const char *outcome, const char *error,
                       int64_t running_ms)
{
    int failed = !strcmp(outcome, "FAILED"), locked = !strcmp(outcome, "LOCKED");
    if (failed && !(job->reload && !job->ready)) set_error(job, error); /* a file that does not check says so */
    if (s->stopping) {
        job->state = JOB_STOPPED;
        return;
    }
    if (job->removed) {
        if (!job->describe.pid) {
            sup_note(job, "removed (its file is gone)");
            jobs_remove(&s->jobs, job);
        }
        return;
    }
    if (job->reload) {
        if (job->describe.pid) job->state = JOB_CREATED;
        else if (!job->ready) job->state = JOB_FAILED;
        else activate(s, job, "reload");
        return;
    }
    enum job_then then = job->then;
    job->then = THEN_NOTHING;
    if (then == THEN_RUN) {
        sup_start_run(s, job, job->then_trigger, job->then_scheduled_ms);
        return;
    }
    if (then == THEN_STOP || job->suspended) {
        job->state = JOB_STOPPED;
        sup_note(job, "STOPPED");
        return;
    }
    if (locked) {
        snprintf(job->last_error, sizeof job->last_error, "another runnel runs it: %.990s", error);
        if (job->spec.scheduled) {
            job->state = JOB_SCHEDULED;
            cronjob_pending(s, job);
            return;
        }
        int64_t delay = job->spec.restart.backoff_min_ms;
        for (int i = 0; i < job->locked_retries && delay < job->spec.restart.backoff_max_ms; i++) delay *= 2;
        if (delay > job->spec.restart.backoff_max_ms) delay = job->spec.restart.backoff_max_ms;
        job->locked_retries++;
        job->state = JOB_RESTARTING;
        job->restart_at_ms = rn_now_ms() + delay;
        job->restart_trigger = "retry";
        sup_note(job, "RESTARTING in %.1f s: %s", (double)delay / 1000.0, job->last_error);
        return;
    }
    job->locked_retries = 0;
    int64_t delay = restart_decide(&job->restarts, &job->spec.restart, failed, running_ms, rn_now_ms());
    if (delay >= 0) {
        job->state = JOB_RESTARTING;
        job->restart_at_ms = rn_now_ms() + delay;
        job->restart_trigger = "restart";
        sup_note(job, "RESTARTING in %.1f s (%s)", (double)delay / 1000.0, outcome);
        return;
    }
    if (delay == -2)
        sup_note(job, "restart budget spent (%d within %.0f s)", job->spec.restart.budget,
                 (double)job->spec.restart.budget_window_ms / 1000.0);
    if (job->spec.scheduled) {
        job->state = JOB_SCHEDULED;
        cronjob_pending(s, job);
        return;
    }
    job->state = failed ? JOB_FAILED : JOB_FINISHED;
    sup_note(job, "%s%s%s", job_state_name(job->state), failed ? ": " : "", failed ? job->last_error : "");
}

/* The summary file a run wrote, or NULL. Caller frees. */
static char *take_summary(const char *path)
{
    struct rn_err err;
    size_t len;
    char *text = rn_read_file(path, &len, &err);
    unlink(path);
    return text;
}

/* Run `index` of job was reaped with wait status `status`. May free job. */
static void on_run_exit(struct supervisor *s, struct serve_job *job, int index, int status)
{
    struct job_run *run = job->runs[index];
    long pid = (long)run->child.pid;
    child_finish(&run->child);
    scrape_receive(job, index); /* its last text: the run's final figures */
    int64_t now = sup_wall_ms(), running_ms = now - run->child.started_wall_ms;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1, sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    char error[CHILD_LINE_MAX] = "";
    const char *outcome;
    if (code == 2 && strstr(run->child.last_message, "is already running")) outcome = "LOCKED";
    else if (code == 0) outcome = run->stop_requested ? "STOPPED" : "FINISHED";
    else if (code == 130 && run->stop_requested) outcome = "STOPPED"; /* a batch run's checkpoint lets it --resume */
    else if (sig == SIGTERM && run->stop_requested && !run->child.killed) outcome = "STOPPED"; /* before its handler */
    else outcome = "FAILED";
    if (strcmp(outcome, "FINISHED") && strcmp(outcome, "STOPPED")) child_error(&run->child, status, error, sizeof error);
    if (run->child.killed) {
        char how[64];
        child_describe_status(status, how, sizeof how);
        snprintf(error, sizeof error, "did not stop within %.1f s of SIGTERM: %s", (double)s->opts.stop_timeout_ms / 1000.0, how);
    }
    char *summary = take_summary(run->summary_path);
    struct rn_err err;
    if (run->id >= 0 &&
        history_ended(s->history, run->id, now, code, sig, outcome, error[0] ? error : NULL, summary, &err))
        sup_note(job, "history: %s", err.msg);
    if (summary) {
        free(job->last_summary);
        job->last_summary = summary;
    }
    job->last_exit_code = code;
    char how[64];
    child_describe_status(status, how, sizeof how);
    sup_note(job, "run (pid %ld) ended %s, %s%s%s", pid, outcome, how,
         error[0] ? ": " : "", error);
    memmove(job->runs + index, job->runs + index + 1, (size_t)(job->nruns - index - 1) * sizeof *job->runs);
    job->nruns--;
    jobs_run_free(run);
    if (job->nruns > 0) return; /* overlap = allow: another run goes on */
    after_runs(s, job, outcome, error, running_ms);
}

/* ---- describes ---- */

static void start_describe(struct supervisor *s, struct serve_job *job)
{
    if (job->describe.pid) { /* it read an older version of the file */
        job->describe_again = 1;
        child_kill(&job->describe);
        return;
    }
    child_free(&job->describe);
    char *argv[] = {"runnel", "check", job->file, "--describe", NULL};
    struct rn_err err;
    if (child_spawn(&job->describe, s->exe, argv, 1, -1, -1, &err)) {
        set_error(job, err.msg);
        job->ready = 0;
        if (!job->nruns) job->state = JOB_FAILED;
        return;
    }
    job->describe.kill_at_ms = rn_now_ms() + DESCRIBE_TIMEOUT_MS;
    watch_fd(s, job->describe.err_fd);
    watch_fd(s, job->describe.out_fd);
    if (!job->nruns) job->state = JOB_CREATED;
}

static void name_taken(struct serve_job *loser, const struct serve_job *owner)
{
    loser->duplicate = 1;
    loser->ready = 0;
    snprintf(loser->last_error, sizeof loser->last_error, "%s declares job %s, which %s declares already", loser->file,
             loser->name, owner->file);
}

/* Two files declaring one name would share its lock and history: the name belongs to the
 * first file in name order, whatever order their describes end in; the other is FAILED. */
static void claim_name(struct supervisor *s, struct serve_job *job)
{
    job->duplicate = 0;
    for (size_t i = 0; i < s->jobs.count; i++) {
        struct serve_job *other = s->jobs.jobs[i];
        if (other == job || other->removed || !other->described || other->duplicate || strcmp(other->name, job->name))
            continue;
        if (strcmp(other->file, job->file) < 0) {
            name_taken(job, other);
            return;
        }
        name_taken(other, job);
        sup_note(other, "FAILED: %s", other->last_error);
        if (other->nruns) {
            other->reload = 1; /* FAILED once its runs have stopped */
            sup_stop_runs(s, other);
        } else {
            other->state = JOB_FAILED;
            other->restart_at_ms = other->next_fire_ms = other->pending_fire_ms = 0;
        }
    }
}

/* The describe of job ended. May free job. */
static void on_describe_exit(struct supervisor *s, struct serve_job *job, int status)
{
    int killed = job->describe.killed;
    child_finish(&job->describe);
    if (s->stopping) return;
    if (job->removed) {
        if (!job->nruns) jobs_remove(&s->jobs, job);
        return;
    }
    if (job->describe_again) {
        job->describe_again = 0;
        start_describe(s, job);
        return;
    }
    struct rn_err err;
    int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (ok && jobs_apply_describe(job, job->describe.out.data, &err) == 0) {
        claim_name(s, job);
        job->ready = !job->duplicate;
        if (!job->last_summary) job->last_summary = history_last_summary(s->history, job->name);
    } else {
        job->ready = 0;
        if (ok) snprintf(job->last_error, sizeof job->last_error, "%s", err.msg);
        else if (killed) snprintf(job->last_error, sizeof job->last_error, "%s: runnel check took longer than %d s",
                                  job->file, DESCRIBE_TIMEOUT_MS / 1000);
        else child_error(&job->describe, status, job->last_error, sizeof job->last_error);
    }
    buf_clear(&job->describe.out);
    if (job->nruns) return; /* the old run drains first; after_runs activates */
    if (!job->ready) {
        job->state = JOB_FAILED;
        sup_note(job, "FAILED: %s", job->last_error);
        return;
    }
    activate(s, job, job->reload ? "reload" : "start");
}

/* ---- the jobs directory ---- */

static void reload_job(struct supervisor *s, struct serve_job *job)
{
    sup_note(job, "%s changed: reloading%s", job->file, job->nruns ? " (the running run drains first)" : "");
    memset(&job->restarts, 0, sizeof job->restarts);
    job->reload = 1;
    job->then = THEN_NOTHING;
    job->restart_at_ms = job->pending_fire_ms = job->next_fire_ms = 0;
    sup_stop_runs(s, job);
    start_describe(s, job);
}

static void remove_job(struct supervisor *s, struct serve_job *job)
{
    job->removed = 1;
    job->restart_at_ms = job->next_fire_ms = job->pending_fire_ms = 0;
    sup_stop_runs(s, job);
    if (job->describe.pid) child_kill(&job->describe);
    /* a file that declared the same name may take it now */
    for (size_t i = 0; i < s->jobs.count; i++) {
        struct serve_job *other = s->jobs.jobs[i];
        if (other != job && other->duplicate && !strcmp(other->name, job->name)) {
            other->duplicate = 0;
            other->reload = 1;
            start_describe(s, other);
        }
    }
    if (!job->nruns && !job->describe.pid) {
        sup_note(job, "removed (its file is gone)");
        jobs_remove(&s->jobs, job);
    }
}

static void rescan(struct supervisor *s)
{
    struct rn_err err;
    size_t n;
    char **files = jobs_scan_dir(s->jobs_dir, &n, &err);
    if (!files) {
        sup_note(NULL, "%s", err.msg);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        struct serve_job *job = jobs_by_file(&s->jobs, files[i]);
        struct file_identity id;
        if (jobs_identity(files[i], job ? &job->identity : NULL, &id, &err)) {
            sup_note(NULL, "%s", err.msg);
            continue;
        }
        if (!job) {
            job = jobs_add(&s->jobs, files[i]);
            job->identity = id;
            start_describe(s, job);
            continue;
        }
        int changed = memcmp(id.sha256, job->identity.sha256, sizeof id.sha256) != 0;
        job->identity = id;
        if (job->removed) { /* back before its runs ended */
            job->removed = 0;
            reload_job(s, job);
        } else if (changed) {
            reload_job(s, job);
        }
    }
    for (size_t i = s->jobs.count; i-- > 0;) {
        struct serve_job *job = s->jobs.jobs[i];
        int present = 0;
        for (size_t k = 0; k < n && !present; k++) present = !strcmp(files[k], job->file);
        if (!present && !job->removed) remove_job(s, job);
    }
    for (size_t i = 0; i < n; i++) free(files[i]);
    free(files);
}

/* ---- signals, children, timers ---- */

static void begin_shutdown(struct supervisor *s)
{
    s->stopping = 1;
    int runs = 0;
    for (size_t i = 0; i < s->jobs.count; i++) {
        struct serve_job *job = s->jobs.jobs[i];
        job->restart_at_ms = job->next_fire_ms = job->pending_fire_ms = 0;
        job->then = THEN_NOTHING;
        runs += job->nruns;
        sup_stop_runs(s, job);
        if (job->describe.pid) child_kill(&job->describe);
        if (!job->nruns) job->state = JOB_STOPPED;
    }
    sup_note(NULL, "stopping: %d run(s) get SIGTERM, SIGKILL after %.1f s", runs, (double)s->opts.stop_timeout_ms / 1000.0);
}

static void reap(struct supervisor *s)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        int found = 0;
        for (size_t i = 0; i < s->jobs.count && !found; i++) {
            struct serve_job *job = s->jobs.jobs[i];
            for (int r = 0; !found && r < job->nruns; r++)
                if (job->runs[r]->child.pid == pid) {
                    found = 1;
                    on_run_exit(s, job, r, status); /* may free job: the loops end here */
                }
            if (!found && job->describe.pid == pid) {
                found = 1;
                on_describe_exit(s, job, status);
            }
        }
    }
}

static void on_signals(struct supervisor *s)
{
    struct signalfd_siginfo si;
    int children = 0;
    while (read(s->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGCHLD) {
            children = 1;
        } else if (si.ssi_signo == SIGHUP) {
            s->rescan_at_ms = rn_now_ms();
        } else if (!s->stopping) {
            sup_note(NULL, "%s received", strsignal((int)si.ssi_signo));
            begin_shutdown(s);
        } else {
            sup_note(NULL, "%s received again: killing every run now", strsignal((int)si.ssi_signo));
            for (size_t i = 0; i < s->jobs.count; i++)
                for (int r = 0; r < s->jobs.jobs[i]->nruns; r++) child_kill(&s->jobs.jobs[i]->runs[r]->child);
        }
    }
    if (children) reap(s);
}

static void on_child_fd(struct supervisor *s, int fd)
{
    for (size_t i = 0; i < s->jobs.count; i++) {
        struct serve_job *job = s->jobs.jobs[i];
        if (fd == job->describe.err_fd || fd == job->describe.out_fd) {
            child_read(&job->describe, fd);
            return;
        }
        for (int r = 0; r < job->nruns; r++) {
            if (fd == job->runs[r]->child.err_fd) {
                child_read(&job->runs[r]->child, fd);
                return;
            }
            if (fd == job->runs[r]->metrics_fd) {
                scrape_receive(job, r);
                return;
            }
        }
    }
}

static int64_t min_deadline(int64_t a, int64_t b) { return b && (!a || b < a) ? b : a; }

/* Act on every timer that is due; return the time to wait for the next one (ms). */
static int64_t run_timers(struct supervisor *s)
{
    int64_t now = rn_now_ms(), wall = sup_wall_ms();
    if (s->stopping) s->rescan_at_ms = 0;
    if (s->rescan_at_ms && now >= s->rescan_at_ms) {
        s->rescan_at_ms = s->inofd < 0 ? now + RESCAN_POLL_MS : 0;
        rescan(s);
    }
    int64_t due = s->rescan_at_ms; /* monotonic */
    int64_t wall_due = 0;
    for (size_t i = 0; i < s->jobs.count; i++) {
        struct serve_job *job = s->jobs.jobs[i];
        for (int r = 0; r < job->nruns; r++) {
            struct child *c = &job->runs[r]->child;
            if (c->kill_at_ms && now >= c->kill_at_ms) {
                sup_note(job, "pid %ld did not stop within %.1f s: SIGKILL", (long)c->pid, (double)s->opts.stop_timeout_ms / 1000.0);
                child_kill(c);
            }
            due = min_deadline(due, c->kill_at_ms);
        }
        if (job->describe.kill_at_ms && now >= job->describe.kill_at_ms) child_kill(&job->describe);
        due = min_deadline(due, job->describe.kill_at_ms);
        if (job->restart_at_ms && now >= job->restart_at_ms && !s->stopping) {
            const char *trigger = job->restart_trigger ? job->restart_trigger : "restart";
            job->restart_at_ms = 0;
            if (!strcmp(trigger, "restart")) job->restarts_total++;
            sup_start_run(s, job, trigger, 0);
        }
        due = min_deadline(due, job->restart_at_ms);
        if (job->ready && !job->suspended && !s->stopping) cronjob_due(s, job, wall);
        if (job->next_fire_ms && job->ready && !job->suspended) wall_due = min_deadline(wall_due, job->next_fire_ms);
    }
    int64_t wait = MAX_WAIT_MS;
    if (due) wait = due - now < wait ? due - now : wait;
    if (wall_due) wait = wall_due - wall < wait ? wall_due - wall : wait;
    int64_t api = api_timeout_ms(s->api);
    if (api >= 0 && api < wait) wait = api;
    return wait < 0 ? 0 : wait;
}

static int all_stopped(const struct supervisor *s)
{
    for (size_t i = 0; i < s->jobs.count; i++)
        if (s->jobs.jobs[i]->nruns || s->jobs.jobs[i]->describe.pid) return 0;
    return 1;
}

/* ---- the API's verbs ---- */

struct job_table *supervisor_jobs(struct supervisor *s) { return &s->jobs; }
struct history *supervisor_history(struct supervisor *s) { return s->history; }

int supervisor_verb(struct supervisor *s, struct serve_job *job, const char *verb, struct rn_err *err)
{
    const char *state = job_state_name(job->state);
    if (s->stopping) return rn_fail(err, "serve is shutting down"), 503;
    if (job->state == JOB_CREATED || !job->ready)
        return rn_fail(err, "job %s %s", job->name, job->ready ? "is being loaded (runnel check --describe)"
                                                            : "cannot run until its file is fixed"), 409;
    if (!strcmp(verb, "start")) {
        if (job->state != JOB_STOPPED && job->state != JOB_FAILED && job->state != JOB_FINISHED)
            return rn_fail(err, "job %s is %s; start fits a STOPPED, FAILED or FINISHED job", job->name, state), 409;
        job->suspended = 0;
        memset(&job->restarts, 0, sizeof job->restarts);
        job->restarts_total = job->locked_retries = 0;
        sup_note(job, "start (API)");
        activate(s, job, "api");
        return 0;
    }
    if (!strcmp(verb, "stop")) {
        if (job->state != JOB_RUNNING && job->state != JOB_RESTARTING && job->state != JOB_SCHEDULED)
            return rn_fail(err, "job %s is %s; stop fits a RUNNING, RESTARTING or SCHEDULED job", job->name, state), 409;
        job->suspended = 1;
        job->restart_at_ms = job->pending_fire_ms = job->next_fire_ms = 0;
        sup_note(job, "stop (API)");
        if (job->nruns) {
            job->then = THEN_STOP;
            sup_stop_runs(s, job);
        } else {
            job->state = JOB_STOPPED;
        }
        return 0;
    }
    if (!strcmp(verb, "restart")) {
        memset(&job->restarts, 0, sizeof job->restarts);
        job->restarts_total = job->locked_retries = 0;
        job->suspended = 0;
        job->restart_at_ms = 0;
        if (job->spec.scheduled && !job->next_fire_ms) job->next_fire_ms = cronjob_next(job, sup_wall_ms());
        sup_note(job, "restart (API)");
        if (job->nruns) {
            job->then = THEN_RUN;
            job->then_trigger = "api";
            job->then_scheduled_ms = 0;
            sup_stop_runs(s, job);
        } else {
            sup_start_run(s, job, "api", 0);
        }
        return 0;
    }
    if (!strcmp(verb, "run")) {
        if (job->spec.mode != SERVE_BATCH)
            return rn_fail(err, "job %s runs in stream mode; run starts a batch run (use start or restart)", job->name), 409;
        if (job->nruns)
            return rn_fail(err, "job %s is running already (pid %ld)", job->name, (long)job->runs[0]->child.pid), 409;
        sup_note(job, "run (API)");
        job->restart_at_ms = 0;
        sup_start_run(s, job, "api", 0);
        return 0;
    }
    return rn_fail(err, "unknown verb '%s' (start, stop, restart, run)", verb), 404;
}

json_t *supervisor_health(struct supervisor *s)
{
    json_t *o = json_object();
    int running = 0;
    for (size_t i = 0; i < s->jobs.count; i++) running += s->jobs.jobs[i]->nruns > 0;
    json_object_set_new(o, "status", json_string(s->stopping ? "stopping" : "ok"));
    json_object_set_new(o, "pid", json_integer(getpid()));
    json_object_set_new(o, "uptime_s", json_real((double)(rn_now_ms() - s->started_ms) / 1000.0));
    json_object_set_new(o, "jobs", json_integer((json_int_t)s->jobs.count));
    json_object_set_new(o, "running", json_integer(running));
    json_object_set_new(o, "version", json_string(RN_VERSION));
    return o;
}

/* ---- setup and the loop ---- */

static int setup(struct supervisor *s, const struct serve_options *opts, struct rn_err *err)
{
    s->opts = *opts;
    s->epfd = s->sigfd = s->inofd = -1;
    s->started_ms = rn_now_ms();
    ssize_t n = readlink("/proc/self/exe", s->exe, sizeof s->exe - 1);
    if (n <= 0) return rn_fail(err, "serve: cannot find its own executable (/proc/self/exe): %s", strerror(errno));
    s->exe[n] = '\0';
    if (!realpath(opts->jobs_dir, s->jobs_dir)) return rn_fail(err, "serve: --jobs %s: %s", opts->jobs_dir, strerror(errno));
    if (rn_mkdir_p(opts->state_dir, err)) return rn_wrap(err, "serve: --state");
    if (!realpath(opts->state_dir, s->state_dir)) return rn_fail(err, "serve: --state %s: %s", opts->state_dir, strerror(errno));
    snprintf(s->serve_dir, sizeof s->serve_dir, "%s/serve", s->state_dir);
    if (rn_mkdir_p(s->serve_dir, err)) return -1;
    if (!(s->history = history_open(s->state_dir, err))) return -1;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    s->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (s->epfd < 0 || s->sigfd < 0) return rn_fail(err, "serve: epoll/signalfd: %s", strerror(errno));
    watch_fd(s, s->sigfd);
    s->inofd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (s->inofd >= 0 && inotify_add_watch(s->inofd, s->jobs_dir, IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE |
                                                                     IN_CREATE | IN_ATTRIB | IN_MODIFY) < 0) {
        close(s->inofd);
        s->inofd = -1;
    }
    if (s->inofd >= 0) watch_fd(s, s->inofd);
    else sup_note(NULL, "%s: no inotify; looking for changes every %d s", s->jobs_dir, RESCAN_POLL_MS / 1000);
    if (!(s->api = api_start(s, opts->listen, opts->token_file, err))) return -1;
    watch_fd(s, api_fd(s->api));
    s->rescan_at_ms = rn_now_ms();
    return 0;
}

static void teardown(struct supervisor *s)
{
    api_stop(s->api);
    jobs_free(&s->jobs);
    history_close(s->history);
    if (s->inofd >= 0) close(s->inofd);
    if (s->sigfd >= 0) close(s->sigfd);
    if (s->epfd >= 0) close(s->epfd);
}

int supervisor_run(const struct serve_options *opts, struct rn_err *err)
{
    struct supervisor *s = rn_calloc(1, sizeof *s);
    int rc = setup(s, opts, err);
    if (rc == 0) {
        sup_note(NULL, "serving %s on %s (state in %s, pid %ld)", s->jobs_dir, api_url(s->api), s->state_dir, (long)getpid());
        for (;;) {
            int64_t wait = run_timers(s);
            if (s->stopping && all_stopped(s)) break;
            struct epoll_event evs[32];
            int n = epoll_wait(s->epfd, evs, 32, (int)(wait + (wait > 0)));
            if (n < 0 && errno != EINTR) {
                rc = rn_fail(err, "serve: epoll_wait: %s", strerror(errno));
                break;
            }
            int http = 0;
            for (int i = 0; i < n; i++) {
                int fd = evs[i].data.fd;
                if (fd == s->sigfd) on_signals(s);
                else if (fd == api_fd(s->api)) http = 1;
                else if (fd == s->inofd) {
                    char events[4096];
                    while (read(s->inofd, events, sizeof events) > 0) continue;
                    s->rescan_at_ms = rn_now_ms() + RESCAN_DEBOUNCE_MS;
                } else on_child_fd(s, fd);
            }
            if (http || api_timeout_ms(s->api) == 0) api_run(s->api);
        }
        if (rc == 0) sup_note(NULL, "every run has stopped; bye");
    }
    teardown(s);
    free(s);
    return rc;
}
