/* jobs.c: the supervisor's job table and job files (see jobs.h). */
#include "serve/jobs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/sha256.h"

const char *job_state_name(enum job_state state)
{
    static const char *const names[] = {"CREATED", "SCHEDULED", "RUNNING", "FINISHED", "FAILED", "RESTARTING", "STOPPED"};
    return (unsigned)state < sizeof names / sizeof names[0] ? names[state] : "?";
}

struct serve_job *jobs_add(struct job_table *t, const char *file)
{
    struct serve_job *job = rn_calloc(1, sizeof *job);
    job->file = rn_strdup(file);
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    size_t stem = strlen(base) > 4 ? strlen(base) - 4 : strlen(base); /* without ".lua" */
    snprintf(job->name, sizeof job->name, "%.*s", (int)(stem < JOB_NAME_MAX ? stem : JOB_NAME_MAX - 1), base);
    job->state = JOB_CREATED;
    job->describe.err_fd = job->describe.out_fd = -1;
    job->last_exit_code = -1;
    serve_spec_init(&job->spec);
    if (t->count == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        t->jobs = rn_realloc(t->jobs, t->cap * sizeof *t->jobs);
    }
    size_t at = t->count;
    while (at > 0 && strcmp(t->jobs[at - 1]->file, file) > 0) at--;
    memmove(t->jobs + at + 1, t->jobs + at, (t->count - at) * sizeof *t->jobs);
    t->jobs[at] = job;
    t->count++;
    return job;
}

void jobs_run_free(struct job_run *run)
{
    if (!run) return;
    child_free(&run->child);
    if (run->log_fd >= 0) close(run->log_fd);
    if (run->metrics_fd >= 0) close(run->metrics_fd);
    free(run);
}

static void job_free(struct serve_job *job)
{
    for (int i = 0; i < job->nruns; i++) jobs_run_free(job->runs[i]);
    child_free(&job->describe);
    tz_free(job->tz);
    free(job->dead_letters);
    free(job->last_summary);
    buf_free(&job->metrics);
    labels_free(job->labels);
    free(job->output);
    free(job->label_field);
    free(job->file);
    free(job);
}

void jobs_remove(struct job_table *t, struct serve_job *job)
{
    for (size_t i = 0; i < t->count; i++)
        if (t->jobs[i] == job) {
            memmove(t->jobs + i, t->jobs + i + 1, (t->count - i - 1) * sizeof *t->jobs);
            t->count--;
            break;
        }
    job_free(job);
}

void jobs_free(struct job_table *t)
{
    for (size_t i = 0; i < t->count; i++) job_free(t->jobs[i]);
    free(t->jobs);
    memset(t, 0, sizeof *t);
}

struct serve_job *jobs_by_file(struct job_table *t, const char *file)
{
    for (size_t i = 0; i < t->count; i++)
        if (!strcmp(t->jobs[i]->file, file)) return t->jobs[i];
    return NULL;
}

struct serve_job *jobs_by_name(struct job_table *t, const char *name)
{
    for (size_t i = 0; i < t->count; i++)
        if (!t->jobs[i]->duplicate && !t->jobs[i]->removed && !strcmp(t->jobs[i]->name, name)) return t->jobs[i];
    return NULL;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

char **jobs_scan_dir(const char *dir, size_t *count, struct rn_err *err)
{
    *count = 0;
    DIR *d = opendir(dir);
    if (!d) {
        rn_fail(err, "%s: cannot read the jobs directory: %s", dir, strerror(errno));
        return NULL;
    }
    size_t cap = 16, n = 0;
    char **files = rn_malloc(cap * sizeof *files);
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || len <= 4 || strcmp(e->d_name + len - 4, ".lua")) continue;
        char path[4096];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= sizeof path) continue;
        struct stat st;
        if (stat(path, &st) || !S_ISREG(st.st_mode)) continue;
        if (n == cap) files = rn_realloc(files, (cap *= 2) * sizeof *files);
        files[n++] = rn_strdup(path);
    }
    closedir(d);
    qsort(files, n, sizeof *files, by_name);
    *count = n;
    return files;
}

int jobs_identity(const char *file, const struct file_identity *known, struct file_identity *out, struct rn_err *err)
{
    struct stat st;
    if (stat(file, &st)) return rn_fail(err, "%s: %s", file, strerror(errno));
    struct file_identity now = {0};
    now.mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    now.size = (int64_t)st.st_size;
    if (known && known->mtime_ns == now.mtime_ns && known->size == now.size) {
        *out = *known;
        return 0;
    }
    if (now.size > JOB_FILE_MAX) return rn_fail(err, "%s: a job file of %lld bytes is too large", file, (long long)now.size);
    size_t len;
    char *text = rn_read_file(file, &len, err);
    if (!text) return -1;
    struct sha256 h;
    sha256_init(&h);
    sha256_update(&h, text, len);
    sha256_final(&h, now.sha256);
    free(text);
    *out = now;
    return 0;
}

int jobs_apply_describe(struct serve_job *job, const char *json_text, struct rn_err *err)
{
    json_error_t jerr;
    json_t *o = json_loads(json_text, 0, &jerr);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        return rn_fail(err, "%s: runnel check --describe printed no JSON object (%s)", job->file, jerr.text);
    }
    const char *name = json_string_value(json_object_get(o, "job"));
    struct serve_spec spec;
    int rc = -1;
    struct tz *tz = NULL;
    if (!name || !*name || strlen(name) >= JOB_NAME_MAX) {
        rn_fail(err, "%s: the describe has no usable job name", job->file);
    } else if (serve_spec_from_json(&spec, json_object_get(o, "serve"), json_object_get(o, "schedule"), err)) {
        rn_wrap(err, "%s", job->file);
    } else if (spec.scheduled && !(tz = tz_load(spec.timezone, err))) {
        rn_wrap(err, "%s", job->file);
    } else {
        snprintf(job->name, sizeof job->name, "%s", name);
        job->spec = spec;
        tz_free(job->tz);
        job->tz = tz;
        free(job->dead_letters);
        const char *dead = json_string_value(json_object_get(o, "dead_letters"));
        job->dead_letters = dead ? rn_strdup(dead) : NULL;
        const char *output = json_string_value(json_object_get(o, "output"));
        const char *label = json_string_value(json_object_get(o, "label"));
        if (!job->output || !output || strcmp(job->output, output)) { /* another file: read it from its start */
            labels_free(job->labels);
            job->labels = NULL;
        }
        free(job->output);
        job->output = output ? rn_strdup(output) : NULL;
        free(job->label_field);
        job->label_field = label ? rn_strdup(label) : NULL;
        job->described = 1;
        rc = 0;
    }
    json_decref(o);
    return rc;
}

/* "5m", "1s", "250ms": a duration as a script would write it. */
static void duration_text(int64_t ms, char *out, size_t n)
{
    if (ms && ms % 3600000 == 0) snprintf(out, n, "%lldh", (long long)(ms / 3600000));
    else if (ms && ms % 60000 == 0) snprintf(out, n, "%lldm", (long long)(ms / 60000));
    else if (ms % 1000 == 0) snprintf(out, n, "%llds", (long long)(ms / 1000));
    else snprintf(out, n, "%lldms", (long long)ms);
}

static json_t *time_json(const struct serve_job *job, int64_t unix_ms, int with_ms)
{
    if (!unix_ms) return json_null();
    char iso[TZ_ISO_MAX];
    tz_format_iso8601(job->tz, unix_ms, with_ms, iso);
    return json_string(iso);
}

static json_t *string_or_null(const char *s) { return s && *s ? json_string(s) : json_null(); }

json_t *jobs_json(const struct serve_job *job, int detail)
{
    json_t *o = json_object();
    const struct job_run *run = job->nruns ? job->runs[job->nruns - 1] : NULL;
    json_object_set_new(o, "name", json_string(job->name));
    json_object_set_new(o, "file", json_string(job->file));
    json_object_set_new(o, "state", json_string(job_state_name(job->state)));
    json_object_set_new(o, "mode", job->described ? json_string(serve_mode_name(job->spec.mode)) : json_null());
    json_object_set_new(o, "pid", run && run->child.pid ? json_integer(run->child.pid) : json_null());
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    json_object_set_new(o, "uptime_s", run ? json_real((double)(now_ms - run->child.started_wall_ms) / 1000.0) : json_null());
    json_object_set_new(o, "restarts", json_integer(job->restarts_total));
    json_object_set_new(o, "last_error", string_or_null(job->last_error));
    json_object_set_new(o, "output", string_or_null(job->output));
    json_object_set_new(o, "label", string_or_null(job->label_field));
    int scheduled = job->described && job->spec.scheduled;
    json_object_set_new(o, "next_run", scheduled && !job->suspended ? time_json(job, job->next_fire_ms, 0) : json_null());
    if (!detail) return o;
    json_object_set_new(o, "started_at", run ? time_json(job, run->child.started_wall_ms, 1) : json_null());
    json_object_set_new(o, "runs_in_progress", json_integer(job->nruns));
    json_object_set_new(o, "stopping", json_boolean(run && run->stop_requested));
    json_object_set_new(o, "last_exit_code", job->last_exit_code >= 0 ? json_integer(job->last_exit_code) : json_null());
    json_t *summary = job->last_summary ? json_loads(job->last_summary, 0, NULL) : NULL;
    json_object_set_new(o, "last_summary", summary ? summary : json_null());
    json_object_set_new(o, "dead_letters", string_or_null(job->dead_letters));
    if (job->described) {
        const struct restart_policy *p = &job->spec.restart;
        char lo[32], hi[32], window[32], text[80];
        duration_text(p->backoff_min_ms, lo, sizeof lo);
        duration_text(p->backoff_max_ms, hi, sizeof hi);
        duration_text(p->budget_window_ms, window, sizeof window);
        json_t *r = json_object();
        json_object_set_new(r, "on", json_string(p->on == RESTART_NO ? "no" : p->on == RESTART_ALWAYS ? "always" : "failure"));
        snprintf(text, sizeof text, "%s..%s", lo, hi);
        json_object_set_new(r, "backoff", json_string(text));
        snprintf(text, sizeof text, "%d/%s", p->budget, window);
        json_object_set_new(r, "budget", json_string(text));
        json_object_set_new(o, "restart", r);
    } else {
        json_object_set_new(o, "restart", json_null());
    }
    if (scheduled) {
        json_t *s = json_object();
        json_object_set_new(s, "cron", json_string(job->spec.cron_text));
        json_object_set_new(s, "timezone", json_string(job->spec.timezone));
        json_object_set_new(s, "overlap", json_string(serve_overlap_name(job->spec.overlap)));
        char text[32];
        duration_text(job->spec.starting_deadline_ms, text, sizeof text);
        json_object_set_new(s, "starting_deadline", job->spec.starting_deadline_ms ? json_string(text) : json_null());
        json_object_set_new(s, "suspended", json_boolean(job->suspended));
        json_object_set_new(o, "schedule", s);
    } else {
        json_object_set_new(o, "schedule", json_null());
    }
    return o;
}
