/* jobtest.c: `runnel test` (jobtest.h): each case of a test file is one real pipeline_run of
 * the job in a fresh job state, with the source, the model's calls and the sinks replaced by
 * the stand-ins below (struct job_env's test hooks); engine/jobtest.lua, compiled in, feeds
 * the case in and judges what came out. */
#define _XOPEN_SOURCE 700
#include "engine/jobtest.h"

#include <errno.h>
#include <ftw.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/pipeline.h"
#include "formats/format.h"
#include "formats/json.h"
#include "models/provider.h"
#include "serve/assets.h"
#include "sinks/csv.h"

#define MAX_STANDINS 17 /* the job's sinks and its errors sink */

struct jobtest;

/* The stand-in of one declared sink (index 1..), or of the errors sink (index 0). */
struct standin {
    struct jobtest *t;
    int index;
    const struct sink_ops *declared;     /* NULL for an errors sink that was not declared */
    const struct format_ops *format;     /* sink.kafka with a format other than json: its encoder */
    void *codec;
    int csv;                              /* sink.csv: its row, by sinks/csv.h as the sink writes it */
    struct csv_row row;
    struct buf value;
};

struct jobtest {
    lua_State *L;
    int harness;                          /* registry ref of jobtest.lua's table */
    const char *fixture;                  /* the case's fixture file, or NULL */
    const char *source_type;              /* the job's declared source */
    size_t nsinks, opened;                /* declared sinks; stand-ins opened so far */
    const struct sink_ops *pending;       /* the declared sink whose stand-in opens next */
    struct sink_ops ops[MAX_STANDINS];    /* one per stand-in: the declared name and capabilities */
    size_t nops;
    int64_t read;
};

/* Call H[name] with the nargs values on the stack, leaving nresults. -1 and err (the message
 * without its traceback) when it fails. */
static int harness_call(struct jobtest *t, const char *name, int nargs, int nresults, struct rn_err *err)
{
    lua_State *L = t->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->harness);
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
    lua_insert(L, -nargs - 1);
    if (luajob_call(L, nargs, nresults, err) == 0) return 0;
    char *tb = strstr(err->msg, "\nstack traceback");
    if (tb) *tb = '\0';
    return -1;
}

/* ---- the source: the case's records, or its fixture read by the job's own source ---- */

struct fixture {
    struct jobtest *t;
    const struct source_ops *inner;       /* source.csv over the fixture file */
    void *inner_self;
    const struct format_ops *format;      /* source.kafka: each line of the file is a message value */
    void *codec;
    char *data;
    size_t len, at;
    int64_t line;
};

static void *fixture_open(struct job_env *env, int opts, struct rn_err *err)
{
    struct jobtest *t = env->answer_ctx;
    lua_State *L = env->L;
    struct fixture *f = rn_calloc(1, sizeof *f);
    f->t = t;
    if (!t->fixture) return f;
    const char *where = options_where(L, opts);
    if (strcmp(t->source_type, "csv") == 0) {
        lua_newtable(L); /* the declared options, path excepted */
        int copy = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, opts)) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, copy);
        }
        if (lua_getmetatable(L, opts)) lua_setmetatable(L, copy);
        lua_pushstring(L, t->fixture);
        lua_setfield(L, copy, "path");
        f->inner = plugin_source("csv");
        f->inner_self = f->inner->open(env, copy, err);
        lua_pop(L, 1);
        if (!f->inner_self) goto fail;
        return f;
    }
    if (strcmp(t->source_type, "kafka") == 0) {
        f->format = format_lookup(opt_string(L, opts, "format", "json"), FORMAT_DECODE, where, "source.kafka", err);
        struct format_args args = {env, opts, "source.kafka", where, 0};
        if (!f->format || !(f->codec = f->format->open(&args, FORMAT_DECODE, err))) goto fail;
        if (!(f->data = rn_read_file(t->fixture, &f->len, err))) goto fail;
        return f;
    }
    rn_fail(err, "fixture %s: source.%s cannot read a fixture file; give the case records = { ... }", t->fixture,
            t->source_type);
fail:
    if (f->codec) f->format->close(f->codec);
    free(f);
    return NULL;
}

static enum source_status fixture_next(void *self, struct source_pos *pos, struct rn_err *err)
{
    struct fixture *f = self;
    struct jobtest *t = f->t;
    lua_State *L = t->L;
    enum source_status st;
    if (f->inner) {
        st = f->inner->next(f->inner_self, pos, err);
    } else if (f->format) {
        while (f->at < f->len && (f->data[f->at] == '\n' || f->data[f->at] == '\r')) { /* blank lines are no messages */
            if (f->data[f->at] == '\n') f->line++;
            f->at++;
        }
        if (f->at >= f->len) return SRC_END;
        const char *start = f->data + f->at, *nl = memchr(start, '\n', f->len - f->at);
        size_t n = nl ? (size_t)(nl - start) : f->len - f->at;
        f->at += n;
        *pos = (struct source_pos){0, ++f->line, f->line + 1, 0};
        if (f->format->decode(f->codec, L, start, n, err) == 0) {
            st = SRC_RECORD;
        } else {
            rn_wrap(err, "%s:%lld", t->fixture, (long long)f->line + 1);
            lua_newtable(L);
            lua_pushlstring(L, start, n);
            lua_setfield(L, -2, "value");
            st = SRC_BAD;
        }
    } else {
        lua_pushinteger(L, t->read + 1);
        if (harness_call(t, "record", 1, 1, err)) return SRC_ERROR;
        if (lua_isnil(L, -1)) { lua_pop(L, 1); return SRC_END; }
        *pos = (struct source_pos){-1, t->read + 1, t->read + 1, 0};
        st = SRC_RECORD;
    }
    if (st == SRC_RECORD) {
        lua_pushvalue(L, -1);
        lua_pushinteger(L, t->read);
        if (harness_call(t, "read", 2, 0, err)) { lua_pop(L, 1); return SRC_ERROR; }
    }
    if (st == SRC_RECORD || st == SRC_BAD) t->read++;
    return st;
}

static void fixture_advance(void *self, const struct source_pos *pos)
{
    struct fixture *f = self;
    if (f->inner && f->inner->advance) f->inner->advance(f->inner_self, pos);
}

static int fixture_commit(void *self, struct rn_err *err)
{
    (void)self, (void)err; /* nothing is kept: a test never resumes */
    return 0;
}

static void fixture_close(void *self)
{
    struct fixture *f = self;
    if (f->inner) f->inner->close(f->inner_self);
    if (f->codec) f->format->close(f->codec);
    free(f->data);
    free(f);
}

static const struct source_ops fixture_source = {
    .version = SOURCE_INTERFACE_VERSION, .name = "test", .summary = "runnel test's records",
    .open = fixture_open, .next = fixture_next, .advance = fixture_advance, .commit = fixture_commit,
    .close = fixture_close,
};

/* ---- the model: the case's answer to each call ---- */

static int test_answer(void *ctx, const struct model_call *call, struct model_reply *reply, struct rn_err *err)
{
    struct jobtest *t = ctx;
    lua_State *L = t->L;
    lua_createtable(L, 0, 5);
    lua_pushlstring(L, call->prompt ? call->prompt : "", call->prompt_len);
    lua_setfield(L, -2, "prompt");
    if (call->system) { lua_pushstring(L, call->system); lua_setfield(L, -2, "system"); }
    if (call->correction) { lua_pushstring(L, call->correction); lua_setfield(L, -2, "correction"); }
    if (call->previous_answer) { lua_pushstring(L, call->previous_answer); lua_setfield(L, -2, "previous_answer"); }
    lua_rawgeti(L, LUA_REGISTRYINDEX, call->record_ref);
    lua_setfield(L, -2, "record");
    if (harness_call(t, "answer", 1, 1, err)) return rn_wrap(err, "runnel test: answer");
    int rc = 0;
    if (lua_istable(L, -1)) { /* an embedding */
        struct buf text;
        buf_init(&text);
        if (json_encode(L, -1, LUA_NOREF, &text, err) == 0) reply->vector = json_loadb(text.data, text.len, 0, NULL);
        else rc = rn_wrap(err, "runnel test: answer");
        buf_free(&text);
    } else if (lua_isboolean(L, -1)) {
        buf_puts(&reply->text, lua_toboolean(L, -1) ? "true" : "false");
    } else {
        size_t n;
        const char *s = lua_tolstring(L, -1, &n);
        buf_put(&reply->text, s, n);
    }
    lua_pop(L, 1);
    return rc;
}

/* ---- the sinks: what each would be given, after its encoding ---- */

static void *standin_open(struct job_env *env, int opts, struct rn_err *err)
{
    struct jobtest *t = env->answer_ctx;
    lua_State *L = env->L;
    struct standin *s = rn_calloc(1, sizeof *s);
    s->t = t;
    s->declared = t->pending;
    s->index = t->opened < t->nsinks && s->declared ? (int)t->opened + 1 : 0;
    t->opened++;
    t->pending = NULL;
    buf_init(&s->value);
    if (s->index && strcmp(s->declared->name, "csv") == 0) {
        s->csv = 1;
        csv_row_open(&s->row, L, opts);
    }
    if (s->index && strcmp(s->declared->name, "kafka") == 0) { /* sink.kafka's value: its format */
        const char *name = opt_string(L, opts, "format", "json");
        const struct format_ops *remote = format_find(name, FORMAT_ENCODE);
        if (strcmp(name, "json") != 0 && !(remote && remote->opens_remote)) { /* avro: no registry here */
            const char *where = options_where(L, opts);
            struct format_args args = {env, opts, "sink.kafka", where, 0};
            s->format = format_lookup(name, FORMAT_ENCODE, where, "sink.kafka", err);
            if (!s->format || !(s->codec = s->format->open(&args, FORMAT_ENCODE, err))) {
                free(s);
                return NULL;
            }
        }
    }
    return s;
}

static int standin_write(void *self, uint64_t seq, struct sink_record *record, struct rn_err *err)
{
    struct standin *s = self;
    struct jobtest *t = s->t;
    lua_State *L = t->L;
    int rec = sink_record_table(record);
    if (!s->index) {
        lua_pushvalue(L, rec);
        return harness_call(t, "dead", 1, 0, err) ? SINK_FAILED : SINK_ACCEPTED;
    }
    size_t len = 0;
    struct rn_err jerr;
    const char *line = sink_record_json(record, &len, &jerr);
    int wants_json = (s->declared->capabilities & (SINK_WANTS_JSON | SINK_ASYNC_ACKS)) != 0;
    if (!line && wants_json) { *err = jerr; return SINK_REJECTED; }
    if (s->codec) {
        buf_clear(&s->value);
        if (s->format->encode(s->codec, L, rec, &s->value, err)) return SINK_REJECTED;
    } else if (s->csv) { /* the header row is not shown */
        buf_clear(&s->value);
        if (csv_row_put(&s->row, L, record, 0, &s->value, err)) {
            rn_wrap(err, "sink.csv");
            return SINK_REJECTED;
        }
    }
    lua_pushinteger(L, s->index);
    lua_pushinteger(L, (lua_Integer)seq);
    lua_pushvalue(L, rec);
    if (line) lua_pushlstring(L, line, len);
    else lua_pushnil(L);
    if (s->codec || s->csv) lua_pushlstring(L, s->value.data ? s->value.data : "", s->value.len);
    else lua_pushnil(L);
    return harness_call(t, "write", 5, 0, err) ? SINK_FAILED : SINK_ACCEPTED;
}

static int standin_flush(void *self, struct rn_err *err)
{
    (void)self, (void)err;
    return 0;
}

static void standin_close(void *self)
{
    struct standin *s = self;
    if (s->codec) s->format->close(s->codec);
    if (s->csv) csv_row_close(&s->row);
    buf_free(&s->value);
    free(s);
}

/* env->test_sink: the stand-in of a sink of plugin `declared` (NULL: the errors sink nobody
 * declared), named and capable as the declared one but never acknowledging late. */
static const struct sink_ops *standin_for(void *ctx, const struct sink_ops *declared)
{
    struct jobtest *t = ctx;
    t->pending = declared;
    if (t->nops == MAX_STANDINS) return NULL;
    struct sink_ops *o = &t->ops[t->nops++];
    *o = (struct sink_ops){.version = SINK_INTERFACE_VERSION, .name = declared ? declared->name : "errors",
                           .summary = "runnel test's stand-in", .options = declared ? declared->options : NULL,
                           .capabilities = declared ? declared->capabilities & SINK_WANTS_JSON : 0,
                           .open = standin_open, .write = standin_write, .flush = standin_flush,
                           .close = standin_close};
    return o;
}

/* ---- the cases ---- */

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

/* Load the job and the test file into a fresh state for case `index` (0: just count them).
 * Leaves the job declaration on top. Returns the number of cases, or -1 with err. */
static int load_case(struct jobtest *t, struct job_env *env, const char *job_path, const char *test_path,
                     const struct param *params, size_t nparams, struct rn_err *err)
{
    lua_State *L = luajob_new(env, params, nparams, err);
    if (!L) return -1;
    t->L = L;
    if (luajob_load(env, job_path, err) || luajob_check_params(L, err)) return -1;
    int job = lua_gettop(L);
    int opts = luajob_decl_options(L, job);
    env->job_name = opt_string(L, opts, "name", "job");
    lua_getfield(L, opts, "source");
    t->source_type = luajob_decl_type(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, opts, "sinks");
    t->nsinks = lua_istable(L, -1) ? (size_t)lua_rawlen(L, -1) : 0;
    lua_pop(L, 2);
    const struct serve_asset *a = serve_asset("jobtest.lua");
    if (!a) return rn_fail(err, "runnel test: this build has no jobtest.lua");
    if (luaL_loadbufferx(L, (const char *)a->data, a->len, "=jobtest.lua", "t") || luajob_call(L, 0, 1, err)) {
        if (lua_isstring(L, -1)) rn_fail(err, "jobtest.lua: %s", lua_tostring(L, -1));
        return -1;
    }
    t->harness = luaL_ref(L, LUA_REGISTRYINDEX);
    if (luaL_loadfilex(L, test_path, "t")) return rn_fail(err, "%s", lua_tostring(L, -1)); /* read once already */
    if (luajob_call(L, 0, 1, err)) return -1;
    lua_pushstring(L, test_path);
    if (harness_call(t, "load", 2, 1, err)) return -1;
    int count = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    return count;
}

/* The test file's `params` (the job's param() values, before the command line's --set) and
 * `env` (variables set for the run: stand-in credentials a provider reads from the
 * environment), read in a state of their own before the job loads. Returns the number of
 * params in *out (strings owned by *store, freed by the caller), or -1 and err. */
static int read_setup(const char *test_path, struct param **out, char ***store, size_t *nstore, struct rn_err *err)
{
    struct job_env env = {0};
    struct jobtest t = {0};
    env.answer = test_answer; /* secret() reads nothing here either */
    env.script = test_path;
    env.answer_ctx = &t;
    lua_State *L = luajob_new(&env, NULL, 0, err);
    if (!L) return -1;
    int rc = luaL_loadfilex(L, test_path, "t"), count = 0;
    if (rc) {
        if (rc == LUA_ERRFILE) rn_fail(err, "%s: cannot read the test file (runnel new writes one beside a job)", test_path);
        else rn_fail(err, "%s", lua_tostring(L, -1));
        luajob_close(L);
        return -1;
    }
    if (luajob_call(L, 0, 1, err)) { luajob_close(L); return -1; }
    *out = NULL;
    if (lua_istable(L, -1)) {
        static const char *const keys[] = {"params", "env"};
        for (int k = 0; k < 2; k++) {
            lua_getfield(L, -1, keys[k]);
            if (lua_istable(L, -1)) {
                lua_pushnil(L);
                while (lua_next(L, -2)) {
                    if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1)) {
                        rn_fail(err, "%s: %s holds name = \"value\" pairs", test_path, keys[k]);
                        luajob_close(L);
                        return -1;
                    }
                    char *name = rn_strdup(lua_tostring(L, -2)), *value = rn_strdup(lua_tostring(L, -1));
                    *store = rn_realloc(*store, (*nstore + 2) * sizeof **store);
                    (*store)[(*nstore)++] = name;
                    (*store)[(*nstore)++] = value;
                    if (k == 0) {
                        *out = rn_realloc(*out, ((size_t)count + 1) * sizeof **out);
                        (*out)[count++] = (struct param){name, value};
                    } else {
                        setenv(name, value, 1);
                    }
                    lua_pop(L, 1);
                }
            }
            lua_pop(L, 1);
        }
    }
    luajob_close(L);
    return count;
}

int jobtest_run(const char *job_path, const char *test_path, const struct param *cli_params, size_t ncli, FILE *out,
                struct rn_err *err)
{
    char derived[4096];
    if (!test_path) {
        size_t n = strlen(job_path);
        if (n > 4 && strcmp(job_path + n - 4, ".lua") == 0) n -= 4;
        snprintf(derived, sizeof derived, "%.*s_test.lua", (int)n, job_path);
        test_path = derived;
    }
    struct param *file_params = NULL;
    char **store = NULL;
    size_t nstore = 0;
    int nfile = read_setup(test_path, &file_params, &store, &nstore, err);
    if (nfile < 0) {
        for (size_t i = 0; i < nstore; i++) free(store[i]);
        free(store);
        free(file_params);
        return 2;
    }
    size_t nparams = (size_t)nfile + ncli; /* the command line's last: param() takes the last one given */
    struct param *params = rn_calloc(nparams + 1, sizeof *params);
    for (int i = 0; i < nfile; i++) params[i] = file_params[i];
    for (size_t i = 0; i < ncli; i++) params[(size_t)nfile + i] = cli_params[i];
    free(file_params);
    const char *tmp = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char state_dir[4096];
    snprintf(state_dir, sizeof state_dir, "%s/runnel-test-XXXXXX", tmp);
    int status = 0, passed = 0, failed = 0, cases = 1;
    if (!mkdtemp(state_dir)) {
        rn_fail(err, "runnel test: cannot make a state directory in %s: %s", tmp, strerror(errno));
        cases = 0;
        status = 2;
    }
    volatile sig_atomic_t never = 0;
    for (int i = 1; i <= cases; i++) {
        struct jobtest t = {0};
        struct job_env env = {0};
        env.script = job_path;
        env.state_dir = state_dir;
        env.no_cache = 1;
        env.stop_requested = &never;
        env.answer = test_answer;
        env.answer_ctx = &t;
        env.test_source = &fixture_source;
        env.test_sink = standin_for;
        int count = load_case(&t, &env, job_path, test_path, params, nparams, err);
        if (count < 0) { status = 2; luajob_close(t.L); break; }
        cases = count;
        if (count == 0) {
            luajob_close(t.L);
            rn_fail(err, "%s: no cases", test_path);
            status = 2;
            break;
        }
        lua_State *L = t.L;
        int job = lua_gettop(L);
        lua_pushinteger(L, i);
        if (harness_call(&t, "begin", 1, 2, err)) { status = 2; luajob_close(L); break; }
        char name[256];
        snprintf(name, sizeof name, "%s", lua_tostring(L, -2));
        char fixture[4096];
        if (lua_isstring(L, -1)) { /* relative to the test file's folder */
            const char *f = lua_tostring(L, -1), *slash = strrchr(test_path, '/');
            if (f[0] == '/' || !slash) snprintf(fixture, sizeof fixture, "%s", f);
            else snprintf(fixture, sizeof fixture, "%.*s/%s", (int)(slash - test_path), test_path, f);
            t.fixture = fixture;
        }
        lua_settop(L, job);
        struct run_options ro = {0};
        ro.quiet = 1;
        struct rn_err jerr;
        int rc = pipeline_run(&env, &ro, &jerr);
        lua_settop(L, job);
        if (rc) lua_pushstring(L, jerr.msg);
        else lua_pushnil(L);
        lua_pushinteger(L, t.read); /* jobtest.lua: filtered = read - written - dead-lettered */
        if (harness_call(&t, "finish", 2, 2, err)) { status = 2; luajob_close(L); break; }
        if (lua_toboolean(L, -2)) {
            passed++;
            fprintf(out, "ok   %s: %s\n", test_path, name);
        } else {
            failed++;
            fprintf(out, "FAIL %s: %s\n%s\n", test_path, name, lua_tostring(L, -1));
        }
        luajob_close(L);
    }
    if (cases) nftw(state_dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(params);
    for (size_t i = 0; i < nstore; i++) free(store[i]);
    free(store);
    if (status) return status;
    fprintf(out, "%s: %d passed, %d failed\n", test_path, passed, failed);
    return failed ? 1 : 0;
}
