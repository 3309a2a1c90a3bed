/* main.c: the runnel command line: run, check, test, new, stubs, serve, help, report. The only place that prints errors
 * and chooses exit codes (0 ok, 1 the job failed, 2 usage or the job is
 * already running, 130 interrupted). */
#include <curl/curl.h>
#include <jansson.h>
#include <lauxlib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fdlimit.h"
#include "lua/job.h"
#include "engine/jobtest.h"
#include "engine/lock.h"
#include "lua/skeleton.h"
#include "lua/stubs.h"
#include "engine/pipeline.h"
#include "serve/report.h"
#include "serve/supervisor.h"
#include "core/log.h"
#include <sys/eventfd.h>

/* The process-wide variables, on purpose: a signal handler can reach nothing else. The handler
 * also writes to stop_fd (an eventfd the job's loop watches: env->stop_fd), so a sleeping job
 * sees the stop at once; it is open until the process ends. */
static volatile sig_atomic_t stop_requested = 0;
static int stop_fd = -1;

static void on_signal(int sig)
{
    if (stop_requested) { /* a second signal: stop now */
        signal(sig, SIG_DFL);
        raise(sig);
    }
    stop_requested = 1;
    uint64_t one = 1;
    if (stop_fd >= 0 && write(stop_fd, &one, sizeof one) < 0) {} /* async-signal-safe */
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: runnel run JOB.lua [options]     run a job\n"
            "       runnel check JOB.lua [--set k=v] [--describe]\n"
            "                                         check a job script without running it;\n"
            "                                         --describe prints what runnel serve reads as JSON\n"
            "       runnel serve --jobs DIR [--state DIR] [--listen HOST:PORT] [--token-file F]\n"
            "                    [--stop-timeout D]   supervise every DIR/*.lua (see README: Supervising jobs)\n"
            "       runnel test JOB.lua [TEST.lua] [--set k=v]\n"
            "                                         run the cases of JOB_test.lua through the job's\n"
            "                                         stages, no network, no sink written (README: Testing a job)\n"
            "       runnel new NAME [--source csv|kafka] [--model PROVIDER] [--sink jsonl|csv|stdout|kafka]\n"
            "                                         write NAME.lua and NAME_test.lua, a job skeleton and its cases\n"
            "       runnel stubs > runnel.d.lua       annotations for lua-language-server (README: Editor set-up)\n"
            "       runnel help [NAME]                list plugins, or the options of one\n"
            "                                         (source.csv, sink.jsonl, model.openai, job)\n"
            "       runnel report FILE --html OUT.html\n"
            "                                         an HTML page of a job's output (JSONL, CSV):\n"
            "                                         charts, counts, evaluation (report --help)\n"
            "       runnel --version\n"
            "\n"
            "run options:\n"
            "  --mode batch|stream    batch: stop at the end of the input (default);\n"
            "                         stream: follow the input until stopped (SIGINT/SIGTERM)\n"
            "  --set KEY=VALUE        fill param(\"KEY\") in the script (repeatable)\n"
            "  --limit N              read at most N records\n"
            "  --summary-json PATH    also write the run summary as JSON\n"
            "  --metrics-file PATH    write the job's metrics (Prometheus text) at every checkpoint\n"
            "  --metrics-listen HOST:PORT  serve them live on GET http://HOST:PORT/metrics\n"
            "  --state-dir DIR        checkpoints and caches (default .runnel)\n"
            "  --resume               continue a killed or stopped batch job from its checkpoint\n"
            "  --no-cache             do not use the model response cache\n"
            "  --progress / --no-progress   force the progress line on or off\n"
            "                         (default: on when stderr is a terminal)\n"
            "  --quiet                no summary, no informational notes (errors and warnings stay)\n");
}

static void list_plugins(void)
{
    printf("sources:\n");
    for (const struct source_ops *const *p = source_plugins; *p; p++) printf("  source.%-10s %s\n", (*p)->name, (*p)->summary);
    printf("sinks:\n");
    for (const struct sink_ops *const *p = sink_plugins; *p; p++) printf("  sink.%-12s %s\n", (*p)->name, (*p)->summary);
    printf("models:\n");
    for (const struct provider_ops *const *p = provider_plugins; *p; p++) printf("  model.%-11s %s\n", (*p)->name, (*p)->summary);
    printf("\nrunnel help NAME shows the options of one, e.g. runnel help source.csv; runnel help job.\n");
}

static void print_markdown(void)
{
    options_print_markdown(luajob_job_options(), "job", "The job declaration a script returns.");
    for (const struct source_ops *const *p = source_plugins; *p; p++) {
        char name[64];
        snprintf(name, sizeof name, "source.%s", (*p)->name);
        options_print_markdown((*p)->options, name, (*p)->summary);
    }
    for (const struct sink_ops *const *p = sink_plugins; *p; p++) {
        char name[64];
        snprintf(name, sizeof name, "sink.%s", (*p)->name);
        options_print_markdown((*p)->options, name, (*p)->summary);
    }
    for (const struct provider_ops *const *p = provider_plugins; *p; p++) {
        char name[64];
        snprintf(name, sizeof name, "model.%s", (*p)->name);
        options_print_markdown((*p)->options, name, (*p)->summary);
    }
}

/* For `runnel help NAME` when NAME is no plugin: "; did you mean X?" over the names help knows
 * ("sink.jsnl": sink.jsonl) or over the plugin names alone ("csv": source.csv or sink.csv);
 * "" when nothing is close. */
static void help_suggestion(const char *name, char *out, size_t n)
{
    char full[128][64];
    const char *names[128], *types[128];
    size_t count = 0;
    snprintf(full[count], sizeof full[count], "job");
    types[count++] = "job";
    for (const struct source_ops *const *p = source_plugins; *p && count < 128; p++, count++)
        snprintf(full[count], sizeof full[count], "source.%s", types[count] = (*p)->name);
    for (const struct sink_ops *const *p = sink_plugins; *p && count < 128; p++, count++)
        snprintf(full[count], sizeof full[count], "sink.%s", types[count] = (*p)->name);
    for (const struct provider_ops *const *p = provider_plugins; *p && count < 128; p++, count++)
        snprintf(full[count], sizeof full[count], "model.%s", types[count] = (*p)->name);
    for (size_t i = 0; i < count; i++) names[i] = full[i];
    out[0] = '\0';
    const char *near = options_closest(name, names, count);
    if (near) { snprintf(out, n, "; did you mean %s?", near); return; }
    const char *dot = strrchr(name, '.');
    const char *type = options_closest(dot ? dot + 1 : name, types, count);
    if (!type) return;
    size_t used = (size_t)snprintf(out, n, "; did you mean ");
    int shown = 0;
    for (size_t i = 0; i < count && used < n; i++)
        if (strcmp(types[i], type) == 0) used += (size_t)snprintf(out + used, n - used, "%s%s", shown++ ? " or " : "", names[i]);
    if (used < n) snprintf(out + used, n - used, "?");
}

static int cmd_help(const char *name)
{
    if (!name) { list_plugins(); return 0; }
    if (strcmp(name, "--markdown") == 0) { print_markdown(); return 0; }
    if (strcmp(name, "job") == 0) {
        options_print(luajob_job_options(), "job", "the job declaration a script returns: return job { ... }");
        return 0;
    }
    const char *dot = strchr(name, '.');
    if (dot) {
        const char *type = dot + 1;
        if (strncmp(name, "source.", 7) == 0 && plugin_source(type)) {
            options_print(plugin_source(type)->options, name, plugin_source(type)->summary);
            return 0;
        }
        if (strncmp(name, "sink.", 5) == 0 && plugin_sink(type)) {
            options_print(plugin_sink(type)->options, name, plugin_sink(type)->summary);
            return 0;
        }
        if (strncmp(name, "model.", 6) == 0 && plugin_provider(type)) {
            options_print(plugin_provider(type)->options, name, plugin_provider(type)->summary);
            return 0;
        }
    }
    char suggestion[512];
    help_suggestion(name, suggestion, sizeof suggestion);
    log_error("help: no plugin named '%s'%s (runnel help lists them)", name, suggestion);
    return 2;
}

static int cmd_report(int argc, char **argv)
{
    struct report_options o;
    struct report_result res;
    struct rn_err err;
    int rc = report_parse_args(argc, argv, &o, &err);
    if (rc) {
        if (rc > 0) fputs(report_usage, stdout);
        else log_error("report: %s", err.msg);
        return rc > 0 ? 0 : 2;
    }
    if (report_run(&o, stderr, &res, &err)) { log_error("report: %s", err.msg); return 1; }
    printf("%s: %llu records (%llu with a label), %llu lines that are not records\n", o.html,
           (unsigned long long)res.records, (unsigned long long)res.labelled, (unsigned long long)res.bad_lines);
    return 0;
}

/* The job name from the declaration at the top of the stack (points into the Lua state). */
static const char *job_name(lua_State *L)
{
    int opts = luajob_decl_options(L, -1);
    const char *name = opt_string(L, opts, "name", "job");
    lua_pop(L, 1);
    return name;
}

/* A serve/schedule table of the declaration as JSON strings, two levels deep (NULL if absent). */
static json_t *describe_table(lua_State *L, int tbl, int depth)
{
    if (!lua_istable(L, tbl)) return NULL;
    json_t *o = json_object();
    lua_pushnil(L);
    while (lua_next(L, tbl)) {
        if (lua_istable(L, -1) && depth < 2) json_object_set_new(o, lua_tostring(L, -2), describe_table(L, lua_gettop(L), depth + 1));
        else json_object_set_new(o, lua_tostring(L, -2), json_string(lua_tostring(L, -1)));
        lua_pop(L, 1);
    }
    return o;
}

/* The path of the first sink.jsonl of the job's sinks (options at opts), or NULL. */
static json_t *describe_output(lua_State *L, int opts)
{
    json_t *path = json_null();
    lua_getfield(L, opts, "sinks");
    int sinks = lua_gettop(L);
    for (lua_Integer i = 1; lua_istable(L, sinks) && i <= (lua_Integer)luaL_len(L, sinks) && json_is_null(path); i++) {
        lua_geti(L, sinks, i);
        const char *type = luajob_decl_type(L, -1);
        if (type && !strcmp(type, "jsonl")) {
            const char *p = opt_string(L, luajob_decl_options(L, -1), "path", NULL);
            if (p) path = json_string(p);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return path;
}

/* The field the dashboard counts: the model's output field when it declares one, else the
 * first (by name) integer or string field among several. NULL when there is no model. */
static json_t *describe_label(lua_State *L, int opts)
{
    json_t *label = json_null();
    if (!opt_push(L, opts, "predict")) return label;
    int declared = opt_push(L, luajob_decl_options(L, -1), "output");
    if (declared && lua_istable(L, -1)) {
        int tbl = lua_gettop(L);
        const char *best = NULL;
        lua_pushnil(L);
        while (lua_next(L, tbl)) { /* the key at -2, the field's declaration at -1 */
            const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
            if (lua_istable(L, -1)) lua_getfield(L, -1, "type");
            else lua_pushvalue(L, -1);
            const char *type = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
            if (name && (!type || !strcmp(type, "integer") || !strcmp(type, "string")) && (!best || strcmp(name, best) < 0))
                best = name; /* a key of the table: alive while it is */
            lua_pop(L, 2);
        }
        if (best) label = json_string(best);
    }
    lua_pop(L, declared ? 3 : 2); /* output, the model's options, the model */
    return label;
}

/* `runnel check JOB.lua --describe`: what the supervisor needs, without running job code in its
 * own process: {"job", "file", "serve", "schedule", "dead_letters" (a JSONL errors sink's path),
 * "output" (the first JSONL sink's path), "label" (the field the dashboard counts)}. The values
 * were checked when job{} ran. */
static void describe_job(lua_State *L, const char *script, const char *name)
{
    int opts = luajob_decl_options(L, -1);
    json_t *o = json_object();
    json_object_set_new(o, "job", json_string(name));
    json_object_set_new(o, "file", json_string(script));
    static const char *const tables[] = {"serve", "schedule"};
    for (int i = 0; i < 2; i++) {
        lua_getfield(L, opts, tables[i]);
        json_t *t = describe_table(L, lua_gettop(L), 1);
        json_object_set_new(o, tables[i], t ? t : json_null());
        lua_pop(L, 1);
    }
    json_t *dead = json_null();
    if (opt_push(L, opts, "errors")) {
        const char *type = luajob_decl_type(L, -1);
        if (type && strcmp(type, "jsonl") == 0) {
            int sink_opts = luajob_decl_options(L, -1);
            const char *path = opt_string(L, sink_opts, "path", NULL);
            if (path) dead = json_string(path);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    json_object_set_new(o, "dead_letters", dead);
    json_object_set_new(o, "output", describe_output(L, opts));
    json_object_set_new(o, "label", describe_label(L, opts));
    lua_pop(L, 1);
    char *text = json_dumps(o, JSON_COMPACT);
    printf("%s\n", text);
    free(text);
    json_decref(o);
}

/* runnel new NAME [--source S] [--model P] [--sink K]: lua/skeleton.h. */
static int cmd_new(int argc, char **argv)
{
    const char *name = NULL, *source = "csv", *model = NULL, *sink = "jsonl";
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "--source") || !strcmp(a, "--model") || !strcmp(a, "--sink")) && i + 1 < argc) {
            const char **to = !strcmp(a, "--source") ? &source : !strcmp(a, "--model") ? &model : &sink;
            *to = argv[++i];
        } else if (a[0] == '-' || name) {
            log_error("new: unexpected '%s' (runnel new NAME [--source csv|kafka] [--model PROVIDER] "
                      "[--sink jsonl|csv|stdout|kafka])", a);
            return 2;
        } else {
            name = a;
        }
    }
    if (!name) { log_error("new needs a NAME: runnel new jobs/my_job"); return 2; }
    struct buf made;
    buf_init(&made);
    struct rn_err err;
    int rc = luaskeleton_write(name, source, model, sink, &made, &err);
    if (rc) log_error("new: %s", err.msg);
    else fputs(made.data, stdout);
    buf_free(&made);
    return rc ? 2 : 0;
}

/* runnel test JOB.lua [TEST.lua] [--set k=v]: engine/jobtest.h. */
static int cmd_test(int argc, char **argv)
{
    const char *job = NULL, *test = NULL;
    struct param *params = rn_calloc((size_t)argc, sizeof *params);
    size_t nparams = 0;
    for (int i = 2; i < argc; i++) {
        char *eq;
        if (!strcmp(argv[i], "--set") && i + 1 < argc && (eq = strchr(argv[i + 1], '=')) && eq != argv[i + 1]) {
            *eq = '\0';
            params[nparams++] = (struct param){argv[i + 1], eq + 1};
            i++;
        } else if (argv[i][0] == '-' || (job && test)) {
            log_error("test: unexpected '%s' (runnel test JOB.lua [TEST.lua] [--set KEY=VALUE])", argv[i]);
            free(params);
            return 2;
        } else if (!job) {
            job = argv[i];
        } else {
            test = argv[i];
        }
    }
    if (!job) {
        log_error("test needs a job script: runnel test JOB.lua [TEST.lua]");
        free(params);
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct rn_err err;
    int rc = jobtest_run(job, test, params, nparams, stdout, &err);
    if (rc == 2) log_error("test: %s", err.msg);
    curl_global_cleanup();
    free(params);
    return rc;
}

/* runnel serve: the options, then the supervisor (serve/supervisor.h). */
static int cmd_serve(int argc, char **argv)
{
    struct serve_options so = {0};
    so.state_dir = getenv("RUNNEL_STATE_DIR") ? getenv("RUNNEL_STATE_DIR") : ".runnel";
    so.listen = "127.0.0.1:8080";
    so.stop_timeout_ms = 30000;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--jobs") || !strcmp(a, "--state") || !strcmp(a, "--listen") || !strcmp(a, "--token-file") ||
            !strcmp(a, "--stop-timeout")) {
            if (!next) { log_error("serve: %s needs a value", a); return 2; }
            i++;
            if (!strcmp(a, "--jobs")) so.jobs_dir = next;
            else if (!strcmp(a, "--state")) so.state_dir = next;
            else if (!strcmp(a, "--listen")) so.listen = next;
            else if (!strcmp(a, "--token-file")) so.token_file = next;
            else if (rn_parse_duration_ms(next, &so.stop_timeout_ms) || so.stop_timeout_ms <= 0) {
                log_error("serve: --stop-timeout needs a duration such as 30s, not '%s'", next);
                return 2;
            }
        } else {
            log_error("serve: unknown option '%s' (runnel --help)", a);
            return 2;
        }
    }
    if (!so.jobs_dir) { log_error("serve: --jobs DIR is required"); return 2; }
    struct rn_err err;
    if (supervisor_run(&so, &err)) {
        log_error("%s", err.msg);
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) { usage(stderr); return 2; }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) { usage(stdout); return 0; }
    if (!strcmp(cmd, "--version")) { printf("runnel %s\n", RN_VERSION); return 0; }
    if (!strcmp(cmd, "help")) return cmd_help(argc > 2 ? argv[2] : NULL);
    if (!strcmp(cmd, "serve")) return cmd_serve(argc, argv);
    if (!strcmp(cmd, "report")) return cmd_report(argc - 2, argv + 2);
    if (!strcmp(cmd, "test")) return cmd_test(argc, argv);
    if (!strcmp(cmd, "new")) return cmd_new(argc, argv);
    if (!strcmp(cmd, "stubs")) { luastubs_write(stdout); return fflush(stdout) ? 1 : 0; }
    if (strcmp(cmd, "run") != 0 && strcmp(cmd, "check") != 0) {
        static const char *const commands[] = {"run", "check", "serve", "help", "report", "test", "stubs", "new"};
        const char *near = options_closest(cmd, commands, 8);
        if (near) log_error("unknown command '%s'; did you mean %s? (runnel --help)", cmd, near);
        else log_error("unknown command '%s' (run, check, test, new, stubs, serve, help, report; runnel --help)", cmd);
        return 2;
    }
    int checking = strcmp(cmd, "check") == 0, describing = 0;
    const char *script = NULL, *mode = "batch";
    struct run_options ro = {0};
    ro.progress = isatty(STDERR_FILENO);
    struct job_env env = {0};
    env.state_dir = getenv("RUNNEL_STATE_DIR") ? getenv("RUNNEL_STATE_DIR") : ".runnel";
    env.stop_requested = &stop_requested;
    struct param *params = rn_calloc((size_t)argc, sizeof *params);
    size_t nparams = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VALUE() do { if (!next) { log_error("%s needs a value", a); free(params); return 2; } i++; } while (0)
        if (!strcmp(a, "--mode")) {
            NEED_VALUE();
            mode = next;
            if (strcmp(mode, "batch") && strcmp(mode, "stream")) {
                log_error("--mode must be batch or stream, not '%s'", mode);
                free(params);
                return 2;
            }
        } else if (!strcmp(a, "--set")) {
            NEED_VALUE();
            char *eq = strchr(next, '=');
            if (!eq || eq == next) {
                log_error("--set needs KEY=VALUE, got '%s'", next);
                free(params);
                return 2;
            }
            *eq = '\0';
            params[nparams].key = next;
            params[nparams].value = eq + 1;
            nparams++;
        } else if (!strcmp(a, "--limit")) {
            NEED_VALUE();
            char *end;
            ro.limit = strtoll(next, &end, 10);
            if (*end || end == next || ro.limit <= 0) {
                log_error("--limit needs a positive whole number of records, got '%s'", next);
                free(params);
                return 2;
            }
        } else if (!strcmp(a, "--summary-json")) {
            NEED_VALUE();
            ro.summary_json = next;
        } else if (!strcmp(a, "--metrics-file")) {
            NEED_VALUE();
            ro.metrics_file = next;
        } else if (!strcmp(a, "--metrics-listen")) {
            NEED_VALUE();
            ro.metrics_listen = next;
        } else if (!strcmp(a, "--metrics-fd")) {
            NEED_VALUE();
            char *end;
            long fd = strtol(next, &end, 10);
            struct stat st;
            if (*end || end == next || fd < 3 || fd > INT32_MAX || fstat((int)fd, &st) || !S_ISSOCK(st.st_mode)) {
                fprintf(stderr, "runnel: --metrics-fd needs the number of an open socket (3 or more), got '%s' "
                                "(runnel serve passes it)\n", next);
                free(params);
                return 2;
            }
            ro.metrics_fd = (int)fd;
        } else if (!strcmp(a, "--state-dir")) {
            NEED_VALUE();
            env.state_dir = next;
        } else if (!strcmp(a, "--resume")) {
            env.resume = 1;
        } else if (!strcmp(a, "--no-cache")) {
            env.no_cache = 1;
        } else if (!strcmp(a, "--progress")) {
            ro.progress = 1;
        } else if (!strcmp(a, "--no-progress")) {
            ro.progress = 0;
        } else if (!strcmp(a, "--quiet")) {
            ro.quiet = 1;
        } else if (checking && !strcmp(a, "--describe")) {
            describing = 1;
        } else if (a[0] == '-') {
            /* the options parsed above, --describe (check's only) last */
            static const char *const options[] = {"--mode", "--set", "--limit", "--summary-json", "--metrics-file",
                                                  "--metrics-listen", "--metrics-fd", "--state-dir", "--resume", "--no-cache", "--progress", "--no-progress",
                                                  "--quiet", "--describe"};
            size_t count = sizeof options / sizeof options[0];
            const char *near = options_closest(a, options, checking ? count : count - 1);
            if (near) log_error("%s: unknown option '%s'; did you mean %s? (runnel --help)", cmd, a, near);
            else log_error("%s: unknown option '%s' (runnel --help lists them)", cmd, a);
            free(params);
            return 2;
        } else if (!script) {
            script = a;
        } else {
            log_error("one job script at a time ('%s' and '%s')", script, a);
            free(params);
            return 2;
        }
    }
    if (!script) {
        log_error("%s needs a job script: runnel %s JOB.lua (runnel --help)", cmd, cmd);
        free(params);
        return 2;
    }
    log_configure(ro.quiet, ro.progress && !checking);
    env.script = script;
    env.streaming = strcmp(mode, "stream") == 0;
    if (!env.resume && getenv("RUNNEL_RESUME")) env.resume = 1;

    /* calls in flight need descriptors: take what the hard limit allows (a model that still does
     * not fit is lowered to what does, with one line: models/descriptors.c) */
    if (!checking) fdlimit_raise(NULL, NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct rn_err err;
    int status = 0;
    struct job_lock lock = {-1};
    lua_State *L = luajob_new(&env, params, nparams, &err);
    int loaded = L ? luajob_load(&env, script, &err) : -1;
    if (loaded) {
        log_error("%s", err.msg);
        status = loaded == -2 ? 2 : 1;
        goto done;
    }
    if (luajob_check_params(L, &err)) { /* a misspelt --set: the job would run on a default */
        log_error("%s", err.msg);
        status = 2;
        goto done;
    }
    env.job_name = job_name(L);
    if (describing) {
        describe_job(L, script, env.job_name);
        goto done;
    }
    if (checking) {
        printf("%s: ok (job %s)\n", script, env.job_name);
        goto done;
    }
    int busy;
    if (job_lock_take(&lock, env.state_dir, env.job_name, &busy, &err)) {
        if (busy) log_error("%s", err.msg);
        else log_error("%s (the state directory; --state-dir DIR or RUNNEL_STATE_DIR picks another)", err.msg);
        status = busy ? 2 : 1;
        goto done;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    env.stop_fd = stop_fd;
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    int rc = pipeline_run(&env, &ro, &err);
    if (rc == -2) {
        log_error("%s", err.msg);
        status = 130;
    } else if (rc) {
        log_error("%s", err.msg);
        status = 1;
    }
done:
    job_lock_release(&lock);
    luajob_close(L);
    curl_global_cleanup();
    free(params);
    return status;
}
