/* job.c: the job's sandboxed Lua state and its declaration functions (see job.h).
 *
 * source.X{...}, sink.X{...}, model.X{...} and job{...} check their options against the
 * plugin's option table at the line that calls them and return a declaration: a userdata
 * (metatable DECL_META) whose user value is the checked options table. The sandbox's own
 * state (limits, counters) hangs off the lua_State's extra space, so threads share it and
 * nothing of it is process-wide. */
#include "lua/job.h"
#include "lua/alloc.h"

#include <lauxlib.h>
#include <lualib.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/json.h"
#include "serve/spec.h"
#include "core/log.h"

#define SECRET_META "runnel.secret"
#define DECL_META "runnel.declaration"
#define MEMORY_LIMIT_DEFAULT "512MB" /* also the limit while the script itself runs */

/* What one job state knows about itself, reached from every thread through the extra space
 * (lua_newthread copies the main thread's). Owned by the state: freed by luajob_close. */
struct sandbox {
    struct job_env *env;
    struct lua_heap *heap;      /* NULL when the allocator is not lua/alloc.c's (fuzz targets) */
    int64_t instruction_limit;  /* per call; 0: none */
    int64_t instructions_left;
    char job_where[256];        /* where job{...} was declared, for fatal */
    const struct param *params; /* the --set pairs (borrowed from luajob_new's caller) */
    size_t nparams;
    int loading;                /* the script itself runs (luajob_load): errors get no traceback */
    char usage_error[sizeof ((struct rn_err *)0)->msg]; /* the last error param() raised for a --set */
    char fatal[sizeof ((struct rn_err *)0)->msg]; /* why the job must stop; "" while it may go on */
};

_Static_assert(LUA_EXTRASPACE >= sizeof(struct sandbox *), "the sandbox pointer fits the extra space");

static struct sandbox *sandbox_of(lua_State *L) { return *(struct sandbox **)lua_getextraspace(L); }

static const char params_key = 'p';     /* registry: table of --set params */
static const char params_read_key = 'r'; /* registry: name -> order, of every name param() read */

static struct job_env *get_env(lua_State *L) { return sandbox_of(L)->env; }

/* "script:line" of the Lua code that called the current C function (through pcall or another
 * C function: the nearest Lua caller). */
static void caller_where(lua_State *L, char *out, size_t n)
{
    lua_Debug ar;
    for (int level = 1; lua_getstack(L, level, &ar); level++)
        if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
            snprintf(out, n, "%s:%d", ar.short_src, ar.currentline);
            return;
        }
    snprintf(out, n, "%s", get_env(L)->script);
}

/* ---- declarations ---- */

/* A plugin as the declaration function source.X/sink.X/model.X knows it (its upvalue). */
struct plugin_kind {
    const char *kind;     /* "source", "sink", "model" */
    const void *ops;      /* the plugin's ops struct */
    const char *name;
    const struct option_spec *options;
};

/* A declaration's userdata; user value 1 is its checked options table. */
struct declaration {
    const char *kind;     /* static strings: "source", "sink", "model", "job" */
    const char *type;     /* the plugin's name, "job" for job{} */
    const void *ops;
    char where[];         /* "jobs/x.lua:12" */
};

static const struct declaration *decl_at(lua_State *L, int idx) { return luaL_testudata(L, idx, DECL_META); }

/* Replace the checked options table at the top of the stack by a declaration holding it. */
static void push_declaration(lua_State *L, const char *kind, const char *type, const void *ops, const char *where)
{
    size_t n = strlen(where) + 1;
    struct declaration *d = lua_newuserdatauv(L, sizeof *d + n, 1);
    d->kind = kind;
    d->type = type;
    d->ops = ops;
    memcpy(d->where, where, n);
    luaL_setmetatable(L, DECL_META);
    lua_insert(L, -2);
    lua_setiuservalue(L, -2, 1);
}

/* Errors of the declaration functions name their line already: no traceback (see
 * traceback_handler). */
static int declaration_error(lua_State *L, const struct rn_err *err)
{
    lua_pushstring(L, err->msg);
    return lua_error(L);
}

static int l_declare(lua_State *L)
{
    const struct plugin_kind *pk = lua_touserdata(L, lua_upvalueindex(1));
    char where[512], what[128];
    caller_where(L, where, sizeof where);
    snprintf(what, sizeof what, "%s.%s", pk->kind, pk->name);
    if (lua_gettop(L) == 0) lua_newtable(L);
    lua_settop(L, 1);
    struct rn_err err;
    if (options_check(L, 1, pk->options, what, where, &err)) return declaration_error(L, &err);
    push_declaration(L, pk->kind, pk->name, pk->ops, where);
    return 1;
}

/* tostring(decl): "sink.jsonl (jobs/x.lua:20)", "job (jobs/x.lua:30)". */
static int l_decl_tostring(lua_State *L)
{
    const struct declaration *d = luaL_checkudata(L, 1, DECL_META);
    if (strcmp(d->kind, "job") == 0) lua_pushfstring(L, "job (%s)", d->where);
    else lua_pushfstring(L, "%s.%s (%s)", d->kind, d->type, d->where);
    return 1;
}

const char *luajob_decl_kind(lua_State *L, int idx)
{
    const struct declaration *d = decl_at(L, idx);
    return d ? d->kind : NULL;
}

const char *luajob_decl_type(lua_State *L, int idx)
{
    const struct declaration *d = decl_at(L, idx);
    return d ? d->type : NULL;
}

const void *luajob_decl_ops(lua_State *L, int idx)
{
    const struct declaration *d = decl_at(L, idx);
    return d ? d->ops : NULL;
}

const char *luajob_decl_where(lua_State *L, int idx)
{
    const struct declaration *d = decl_at(L, idx);
    return d ? d->where : "?";
}

int luajob_decl_options(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    if (decl_at(L, idx)) lua_getiuservalue(L, idx, 1);
    else lua_pushnil(L);
    return lua_gettop(L);
}

/* ---- job{...} ---- */

/* A job's name makes file names (STATE_DIR/NAME.checkpoint.json, the cache directory): it
 * must be one safe path component. */
static int check_job_name(lua_State *L, int idx, struct rn_err *err)
{
    size_t n;
    const char *name = lua_tolstring(L, idx, &n);
    static const char allowed[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";
    if (n >= 1 && n <= 128 && name[0] != '.' && strspn(name, allowed) == n) return 0;
    struct buf shown;
    buf_init(&shown);
    buf_put_visible(&shown, name, n, 60);
    rn_fail(err, "\"%s\" cannot be a job name: it names the job's state files, so use 1 to 128 letters, digits, "
                 "'_', '-' and '.', not starting with '.'", shown.data ? shown.data : "");
    buf_free(&shown);
    return -1;
}

static const struct option_spec job_options[] = {
    {"name", OPT_STRING, 1, NULL, .help = "the job's name: letters, digits, '_', '-' and '.' (it names the state files)",
     .check = check_job_name},
    {"source", OPT_SOURCE, 1, NULL, .help = "where records come from: source.csv{}, source.kafka{}"},
    {"filter", OPT_FUNCTION, 0, NULL, .help = "function(record) -> true to keep the record"},
    {"predict", OPT_MODEL, 0, NULL, .help = "a model that adds its output fields to each record"},
    {"map", OPT_FUNCTION, 0, NULL, .help = "function(record) -> record to write, or nil to drop it"},
    {"sinks", OPT_SINK_LIST, 1, NULL, .help = "one sink or a list of sinks that receive every record"},
    {"errors", OPT_SINK, 0, NULL, .help = "dead-letter sink: bad records with the reason", .default_note = "stderr"},
    {"evaluate", OPT_NESTED, 0, NULL, .help = "compare a model output with an input field: accuracy, MAE, confusion matrix",
     .fields = OPT_FIELDS({"truth", OPT_STRING, 1, NULL, .help = "the input field that holds the right answer"},
                          {"predicted", OPT_STRING, 1, NULL, .help = "the model output to compare with it"})},
    {"max_errors", OPT_INTEGER, 0, "100", .help = "stop after this many script errors in filter/map (0: never)",
     OPT_AT_LEAST(0)},
    {"instruction_limit", OPT_INTEGER, 0, "100000000", .help = "Lua instructions one filter/map call may run (0: no limit)",
     OPT_AT_LEAST(0)},
    {"memory_limit", OPT_SIZE, 0, MEMORY_LIMIT_DEFAULT,
     .help = "the Lua heap at most: a filter/map call that needs more dead-letters its record; a script that keeps "
             "more than half of it stops the job", OPT_AT_LEAST(1 << 20)},
    {"window", OPT_INTEGER, 0, NULL, .help = "records in flight at most (bounds memory and replays)",
     .default_note = "4096, or a batch model's batch.max_requests when larger",
     OPT_RANGE(1, 1 << 24)},
    {"limits", OPT_NESTED, 0, NULL, .help = "the job's own limits, apart from the model's",
     .fields = OPT_FIELDS({"outage", OPT_DURATION, 0, NULL,
                           .help = "a sink's service (Elasticsearch, Kafka brokers, PostgreSQL) down this long stops the job",
                           .default_note = "the model's limits.outage, else 10m", OPT_ABOVE(0)})},
    {"checkpoint_interval", OPT_DURATION, 0, "5s", .help = "how often sinks are flushed and progress committed",
     OPT_AT_LEAST(0)},
    {"serve", OPT_TABLE, 0, NULL, .help = "how runnel serve runs the job: { mode = \"stream\"|\"batch\", "
     "restart = { on = \"failure\", backoff = \"1s..5m\", budget = \"5/10m\" } }"},
    {"schedule", OPT_TABLE, 0, NULL, .help = "batch runs by runnel serve: { cron = \"0 3 * * *\"|\"@every 15m\", "
     "timezone =, overlap = \"forbid\"|\"replace\"|\"allow\", starting_deadline = }"},
    {NULL},
};

const struct option_spec *luajob_job_options(void) { return job_options; }

/* The string (or number) values of a serve/schedule table, two levels deep, into spec. */
static int serving_table(lua_State *L, int tbl, const char *prefix, int depth, struct serve_spec *spec,
                         struct rn_err *err)
{
    lua_pushnil(L);
    while (lua_next(L, tbl)) {
        char key[128];
        if (lua_type(L, -2) != LUA_TSTRING) { lua_pop(L, 2); return rn_fail(err, "%s: options must be named", prefix); }
        snprintf(key, sizeof key, "%s.%s", prefix, lua_tostring(L, -2));
        int t = lua_type(L, -1), rc;
        if (t == LUA_TTABLE && depth < 2) rc = serving_table(L, lua_gettop(L), key, depth + 1, spec, err);
        else if (t == LUA_TSTRING || t == LUA_TNUMBER) rc = serve_spec_set(spec, key, lua_tostring(L, -1), err);
        else rc = rn_fail(err, "%s: expected a string, got %s", key, luaL_typename(L, -1));
        lua_pop(L, 1);
        if (rc) { lua_pop(L, 1); return -1; }
    }
    return 0;
}

/* serve = {...} and schedule = {...}, checked by serve/spec.h as the supervisor reads them, so
 * `runnel check` reports a bad cron line or restart budget at the job's line. */
static int check_serving(lua_State *L, int opts, struct rn_err *err)
{
    struct serve_spec spec;
    serve_spec_init(&spec);
    static const char *const tables[] = {"serve", "schedule"};
    for (int i = 0; i < 2; i++) {
        lua_getfield(L, opts, tables[i]);
        int rc = lua_istable(L, -1) ? serving_table(L, lua_gettop(L), tables[i], 1, &spec, err) : 0;
        lua_pop(L, 1);
        if (rc) return -1;
    }
    return serve_spec_finish(&spec, err);
}

static int l_job(lua_State *L)
{
    char where[512];
    caller_where(L, where, sizeof where);
    if (lua_gettop(L) == 0) lua_newtable(L);
    lua_settop(L, 1);
    struct rn_err err;
    if (options_check(L, 1, job_options, "job", where, &err)) return declaration_error(L, &err);
    if (check_serving(L, lua_gettop(L), &err)) {
        lua_pop(L, 1);
        rn_wrap(&err, "%s: job", where);
        return declaration_error(L, &err);
    }
    push_declaration(L, "job", "job", NULL, where);
    return 1;
}

/* Raise message as the error of a --set the command line got wrong; luajob_load tells it from
 * the script's own errors by its text (a script may catch it with pcall and fail otherwise). */
static int usage_error(lua_State *L, const char *message)
{
    struct sandbox *sb = sandbox_of(L);
    snprintf(sb->usage_error, sizeof sb->usage_error, "%s", message);
    lua_pushstring(L, message);
    return lua_error(L);
}

/* param(name [, default]) that failed: "job.lua:3: --set n=abc: expected a number (the
 * default is 10)". The message names the script line already: no position is added. */
static int param_error(lua_State *L, const char *name, const char *value, const char *expected)
{
    char where[512], message[1024];
    caller_where(L, where, sizeof where);
    const char *shown = luaL_tolstring(L, 2, NULL);
    snprintf(message, sizeof message, "%s: --set %.100s=%.200s: expected %s (the default is %.100s)", where, name, value,
             expected, shown);
    return usage_error(L, message);
}

/* param(name [, default]): a --set value, converted to the default's type (an integer default
 * takes integers, a float default any number, a boolean true/false/yes/no/1/0); a string
 * without a default or with a string one. Every name read is remembered, in order, for
 * luajob_check_params. */
static int l_param(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    int has_default = lua_gettop(L) >= 2 && !lua_isnil(L, 2);
    lua_settop(L, 2);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &params_read_key);
    if (lua_getfield(L, -1, name) == LUA_TNIL) {
        lua_Integer order = 0;
        lua_pushnil(L);
        while (lua_next(L, -3)) { order++; lua_pop(L, 1); }
        lua_pushinteger(L, order + 1);
        lua_setfield(L, -3, name);
    }
    lua_pop(L, 2);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &params_key);
    if (lua_getfield(L, -1, name) == LUA_TNIL) {
        if (has_default) { lua_pushvalue(L, 2); return 1; }
        char where[512], message[1024];
        caller_where(L, where, sizeof where);
        snprintf(message, sizeof message, "%s: param \"%.100s\" has no default: run with --set %.100s=VALUE", where,
                 name, name);
        return usage_error(L, message);
    }
    const char *value = lua_tostring(L, -1);
    if (lua_type(L, 2) == LUA_TNUMBER) {
        if (!lua_stringtonumber(L, value)) return param_error(L, name, value, "a number");
        if (lua_isinteger(L, 2)) {
            int exact;
            lua_Integer i = lua_tointegerx(L, -1, &exact); /* 10.0 is 10; 1.5 is no integer */
            if (!exact) return param_error(L, name, value, "an integer");
            lua_pushinteger(L, i);
        } else {
            lua_pushnumber(L, lua_tonumber(L, -1)); /* "3" for a default of 0.5 is 3.0 */
        }
    } else if (lua_type(L, 2) == LUA_TBOOLEAN) {
        static const char *const truths[] = {"true", "yes", "1"}, *const lies[] = {"false", "no", "0"};
        int found = -1;
        for (int i = 0; i < 3 && found < 0; i++) {
            if (strcasecmp(value, truths[i]) == 0) found = 1;
            else if (strcasecmp(value, lies[i]) == 0) found = 0;
        }
        if (found < 0) return param_error(L, name, value, "true or false, yes or no, 1 or 0");
        lua_pushboolean(L, found);
    }
    return 1;
}

/* Whether the script's text calls param("key") (or 'key'): it does, yet the name was not read
 * while the script ran, so the call is inside a function that runs later, per record. */
static int script_mentions_param(const char *script, const char *key)
{
    struct rn_err ignored;
    size_t len;
    char *text = rn_read_file(script, &len, &ignored);
    if (!text) return 0;
    int found = 0;
    char call[256];
    for (const char *const *form = (const char *const[]){"param(\"%s\"", "param('%s'", "param \"%s\"", NULL}; *form && !found;
         form++) {
        snprintf(call, sizeof call, *form, key);
        found = strstr(text, call) != NULL;
    }
    free(text);
    return found;
}

int luajob_check_params(lua_State *L, struct rn_err *err)
{
    struct sandbox *sb = sandbox_of(L);
    int rc = 0;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &params_read_key);
    int read = lua_gettop(L);
    for (size_t i = 0; i < sb->nparams && rc == 0; i++) {
        const char *key = sb->params[i].key;
        if (lua_getfield(L, read, key) != LUA_TNIL) { lua_pop(L, 1); continue; }
        lua_pop(L, 1);
        if (strlen(key) < 200 && script_mentions_param(sb->env->script, key)) {
            rc = rn_fail(err, "--set %.100s=%.200s: %s reads param \"%.100s\" only inside a function, which runs after "
                              "the --set are checked: read it at the top of the script, outside any function", key,
                         sb->params[i].value, sb->env->script, key);
            break;
        }
        /* the names the script reads, in the order it first read them */
        size_t count = 0;
        lua_pushnil(L);
        while (lua_next(L, read)) { count++; lua_pop(L, 1); }
        if (count == 0) {
            rc = rn_fail(err, "--set %.100s=%.200s: %s reads no param(), so it takes no --set", key,
                         sb->params[i].value, sb->env->script);
            break;
        }
        const char **names = rn_calloc(count, sizeof *names);
        lua_pushnil(L);
        while (lua_next(L, read)) {
            lua_Integer order = lua_tointeger(L, -1);
            if (order >= 1 && (size_t)order <= count) names[order - 1] = lua_tostring(L, -2); /* kept by the table */
            lua_pop(L, 1);
        }
        struct buf known;
        buf_init(&known);
        for (size_t k = 0; k < count; k++) buf_printf(&known, "%s%s", k ? ", " : "", names[k] ? names[k] : "?");
        const char *near = options_closest(key, names, count);
        if (near)
            rc = rn_fail(err, "--set %.100s=%.200s: %s has no param \"%.100s\"; did you mean %s? (its params: %.400s)", key,
                         sb->params[i].value, sb->env->script, key, near, known.data);
        else
            rc = rn_fail(err, "--set %.100s=%.200s: %s has no param \"%.100s\" (its params: %.400s)", key,
                         sb->params[i].value, sb->env->script, key, known.data);
        buf_free(&known);
        free(names);
    }
    lua_pop(L, 1);
    return rc;
}

/* env(name [, default]): an environment variable. */
static int l_env(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const char *v = getenv(name);
    if (v && *v) lua_pushstring(L, v);
    else if (lua_gettop(L) >= 2 && !lua_isnil(L, 2)) lua_pushvalue(L, 2);
    else
        return luaL_error(L, "environment variable %s is not set: set it, or give env() a default: env(\"%s\", \"...\")",
                          name, name);
    return 1;
}

/* secret(name): the value of environment variable NAME, or of the file named by NAME_FILE
 * (under runnel test, "runnel-test-NAME"). Returns an opaque value that prints as <secret NAME>; only C code can read it. */
static int l_secret(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const char *v = getenv(name);
    char *from_file = NULL;
    char stand_in[300];
    if (sandbox_of(L)->env->answer) { /* runnel test: no real secret is read, none is needed */
        snprintf(stand_in, sizeof stand_in, "runnel-test-%s", name);
        v = stand_in;
    } else if (!v || !*v) {
        char file_var[256];
        snprintf(file_var, sizeof file_var, "%s_FILE", name);
        const char *path = getenv(file_var);
        if (path && *path) {
            struct rn_err err;
            size_t len;
            from_file = rn_read_file(path, &len, &err);
            if (!from_file) return luaL_error(L, "secret(\"%s\"): %s names a file that cannot be read: %s", name, file_var, err.msg);
            while (len && (from_file[len - 1] == '\n' || from_file[len - 1] == '\r')) from_file[--len] = '\0';
            v = from_file;
        }
    }
    size_t len = v ? strlen(v) : 0;
    size_t name_len = strlen(name);
    char *ud = lua_newuserdatauv(L, name_len + len + 2, 0);
    memcpy(ud, name, name_len + 1);
    memcpy(ud + name_len + 1, v ? v : "", len + 1);
    free(from_file);
    luaL_setmetatable(L, SECRET_META);
    return 1;
}

static int l_secret_tostring(lua_State *L)
{
    const char *ud = luaL_checkudata(L, 1, SECRET_META);
    lua_pushfstring(L, "<secret %s>", ud);
    return 1;
}

const char *luajob_secret_name(lua_State *L, int idx)
{
    return luaL_testudata(L, idx, SECRET_META);
}

const char *luajob_secret_value(lua_State *L, int idx)
{
    if (lua_type(L, idx) == LUA_TSTRING) return lua_tostring(L, idx);
    const char *ud = luaL_testudata(L, idx, SECRET_META);
    if (!ud) return NULL;
    return ud + strlen(ud) + 1;
}

/* print(...) goes to stderr so stdout stays free for sink.stdout. */
static int l_print(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1) luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_addchar(&b, '\n');
    luaL_pushresult(&b);
    size_t len;
    const char *line = lua_tolstring(L, -1, &len);
    log_print(line, len);
    return 0;
}

/* load(chunk [, chunkname [, mode [, env]]]) with mode "t" whatever the script asks: a binary
 * chunk (string.dump's) can break the VM's invariants, so only text is loaded. */
static int l_load(lua_State *L)
{
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1)); /* the base library's load */
    lua_pushvalue(L, 1);
    if (n >= 2) lua_pushvalue(L, 2);
    else lua_pushnil(L);
    lua_pushliteral(L, "t");
    if (n >= 4) lua_pushvalue(L, 4); /* an absent env and a nil one differ to load */
    lua_call(L, n >= 4 ? 4 : 3, LUA_MULTRET);
    return lua_gettop(L) - n;
}

/* require(name): Lua modules from the runtime's scripts/ directory or the job's own
 * directory; never C modules. */
static int l_require(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, name);
    if (!lua_isnil(L, -1)) return 1;
    lua_pop(L, 1);
    for (const char *p = name; *p; p++)
        if (!(*p == '.' || *p == '_' || *p == '-' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9')))
            return luaL_error(L, "require '%s': module names may hold letters, digits, '_', '-' and '.' only", name);
    char rel[512];
    snprintf(rel, sizeof rel, "%s", name);
    for (char *p = rel; *p; p++) if (*p == '.') *p = '/';
    lua_getfield(L, LUA_REGISTRYINDEX, "runnel.path");
    const char *dirs = lua_tostring(L, -1);
    lua_pop(L, 1);
    char path[4096];
    const char *d = dirs;
    while (d && *d) {
        const char *end = strchr(d, ';');
        size_t dn = end ? (size_t)(end - d) : strlen(d);
        snprintf(path, sizeof path, "%.*s/%s.lua", (int)dn, d, rel);
        if (access(path, R_OK) == 0) {
            if (luaL_loadfilex(L, path, "t") != LUA_OK) return lua_error(L);
            lua_pushstring(L, name);
            lua_call(L, 1, 1);
            if (lua_isnil(L, -1)) { lua_pop(L, 1); lua_pushboolean(L, 1); }
            lua_pushvalue(L, -1);
            lua_setfield(L, -3, name);
            return 1;
        }
        d = end ? end + 1 : NULL;
    }
    /* dirs is "SCRIPTS;JOBDIR": name both, as a reader would look for the file */
    const char *semi = dirs ? strchr(dirs, ';') : NULL;
    if (!semi) return luaL_error(L, "require(\"%s\"): no %s.lua in %s", name, rel, dirs ? dirs : "(no path)");
    lua_pushlstring(L, dirs, (size_t)(semi - dirs));
    return luaL_error(L, "require(\"%s\"): no %s.lua beside the job (in %s) nor in runnel's scripts (%s)", name, rel,
                      semi + 1, lua_tostring(L, -1));
}

static void count_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    struct sandbox *sb = sandbox_of(L);
    sb->instructions_left -= 10000;
    if (sb->instruction_limit > 0 && sb->instructions_left <= 0)
        luaL_error(L, "instruction limit of %I exceeded (an endless loop?)", (lua_Integer)sb->instruction_limit);
}

void luajob_set_instruction_limit(lua_State *L, int64_t limit)
{
    struct sandbox *sb = sandbox_of(L);
    sb->instruction_limit = limit;
    sb->instructions_left = limit;
    if (limit > 0) lua_sethook(L, count_hook, LUA_MASKCOUNT, 10000);
    else lua_sethook(L, NULL, 0, 0);
}

void luajob_set_memory_limit(lua_State *L, int64_t bytes)
{
    struct sandbox *sb = sandbox_of(L);
    if (sb->heap) sb->heap->limit = bytes > 0 ? (size_t)bytes : SIZE_MAX;
}

const char *luajob_fatal(lua_State *L)
{
    struct sandbox *sb = sandbox_of(L);
    return sb->fatal[0] ? sb->fatal : NULL;
}

static int l_param(lua_State *L);
static int l_env(lua_State *L);
static int l_secret(lua_State *L);
static int l_no_plugin(lua_State *L);

/* Whether msg starts as Lua's positioned errors do, "chunk:LINE: ..." (within its first
 * 512 bytes: a chunk name may hold ':' itself). */
static int has_position(const char *msg)
{
    for (const char *p = strchr(msg, ':'); p && p - msg < 512; p = strchr(p + 1, ':')) {
        const char *d = p + 1;
        while (*d >= '0' && *d <= '9') d++;
        if (d > p + 1 && *d == ':') return 1;
    }
    return 0;
}

/* The error object at 1 as text (pushed): a string, a value with __tostring, or what it was. */
static const char *error_text(lua_State *L)
{
    if (lua_type(L, 1) == LUA_TSTRING) return lua_tostring(L, 1);
    if (luaL_getmetafield(L, 1, "__tostring") != LUA_TNIL) {
        lua_pop(L, 1);
        return luaL_tolstring(L, 1, NULL);
    }
    return lua_pushfstring(L, "error() raised a %s value, not a message", luaL_typename(L, 1));
}

/* "attempt to call a nil value (global 'jbo')" gets "; did you mean job?" when the name is
 * near one of the names runnel gives a script (pushed when it does). */
static const char *suggest_global(lua_State *L, const char *msg)
{
    static const char *const globals[] = {"job", "param", "env", "secret", "source", "sink", "model", "require", "json"};
    const char *at = strstr(msg, "(global '");
    if (!at) return msg;
    char name[64];
    size_t n = strcspn(at + 9, "'");
    if (n == 0 || n >= sizeof name || strcmp(at + 9 + n, "')") != 0) return msg;
    memcpy(name, at + 9, n);
    name[n] = '\0';
    const char *near = options_closest(name, globals, sizeof globals / sizeof globals[0]);
    return near && strcmp(near, name) != 0 ? lua_pushfstring(L, "%s; did you mean %s?", msg, near) : msg;
}

/* The message handler of luajob_call. While the script itself runs (luajob_load) an error is
 * the user's line, not a crash: one line, "script:line: message", the place added when the
 * message has none. In filter/map and the other per-record functions it gets the traceback,
 * except for the errors of the declaration functions, which name the line and option already. */
static int traceback_handler(lua_State *L)
{
    const char *msg = error_text(L);
    lua_Debug ar;
    if (sandbox_of(L)->loading) {
        msg = suggest_global(L, msg);
        if (has_position(msg)) { lua_pushstring(L, msg); return 1; }
        for (int level = 1; lua_getstack(L, level, &ar); level++)
            if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
                lua_pushfstring(L, "%s:%d: %s", ar.short_src, ar.currentline, msg);
                return 1;
            }
        lua_pushstring(L, msg);
        return 1;
    }
    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "f", &ar)) {
        lua_CFunction f = lua_tocfunction(L, -1);
        lua_pop(L, 1);
        if (f == l_declare || f == l_job || f == l_param || f == l_env || f == l_secret || f == l_no_plugin) {
            lua_pushstring(L, msg);
            return 1;
        }
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* A call failed on the memory limit: say so, collect, and stop the job when the script keeps
 * more than half of the limit (what it holds between calls leaves too little for the calls). */
static int memory_failure(lua_State *L, struct sandbox *sb, struct rn_err *err)
{
    char limit[32], used[32];
    opt_format_size(limit, sizeof limit, (int64_t)sb->heap->limit);
    rn_fail(err, "Lua memory limit of %s reached", limit);
    sb->heap->limit_hit = 0;
    lua_gc(L, LUA_GCCOLLECT);
    if (sb->heap->used > sb->heap->limit / 2) {
        opt_format_size(used, sizeof used, (int64_t)sb->heap->used);
        snprintf(sb->fatal, sizeof sb->fatal,
                 "%s: job: memory_limit: the Lua heap still holds %s of %s after a full collection: the script "
                 "keeps more than half of it (in globals or upvalues?); keep less, or raise memory_limit",
                 sb->job_where[0] ? sb->job_where : sb->env->script, used, limit);
    }
    return -1;
}

int luajob_call(lua_State *L, int nargs, int nresults, struct rn_err *err)
{
    struct sandbox *sb = sandbox_of(L);
    int base = lua_gettop(L) - nargs;
    /* The job state keeps the handler at the bottom of its stack (see luajob_new): per-record
     * calls then need not push it and take it out again. */
    int shared = lua_tocfunction(L, 1) == traceback_handler;
    if (!shared) {
        lua_pushcfunction(L, traceback_handler);
        lua_insert(L, base);
    }
    sb->instructions_left = sb->instruction_limit;
    struct lua_heap *heap = sb->heap;
    size_t ceiling = 0;
    if (heap) { /* the limit holds inside the protected call only: outside, a refusal would panic */
        ceiling = heap->ceiling;
        heap->ceiling = heap->limit;
        heap->limit_hit = 0;
    }
    int rc = lua_pcall(L, nargs, nresults, shared ? 1 : base);
    if (heap) heap->ceiling = ceiling;
    if (!shared) lua_remove(L, base);
    if (rc != LUA_OK) {
        /* the limit may also strike in the message handler (LUA_ERRERR) */
        if ((rc == LUA_ERRMEM || rc == LUA_ERRERR) && heap && heap->limit_hit) {
            lua_pop(L, 1);
            return memory_failure(L, sb, err);
        }
        rn_fail(err, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "error object is not a string");
        lua_pop(L, 1);
        return -1;
    }
    return 0;
}

/* The directory holding scripts/: $RUNNEL_LIB, else <binary>/../scripts (the source tree), else
 * <binary>/../share/runnel/scripts (where `make install` puts them). */
static void scripts_dir(char *out, size_t n)
{
    const char *lib = getenv("RUNNEL_LIB");
    if (lib && *lib) { snprintf(out, n, "%s", lib); return; }
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) { snprintf(out, n, "scripts"); return; }
    exe[len] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    if ((size_t)snprintf(out, n, "%.*s/../scripts", (int)(n > 12 ? n - 12 : 0), exe) >= n) snprintf(out, n, "scripts");
    struct stat st;
    if (stat(out, &st) == 0 && S_ISDIR(st.st_mode)) return;
    if ((size_t)snprintf(out, n, "%.*s/../share/runnel/scripts", (int)(n > 26 ? n - 26 : 0), exe) >= n)
        snprintf(out, n, "scripts");
}

/* Add kind.name{...} (e.g. source.csv) to the table at the top of the stack. */
static void add_declaration(lua_State *L, const char *kind, const void *ops, const char *name,
                            const struct option_spec *options)
{
    struct plugin_kind *pk = lua_newuserdatauv(L, sizeof *pk, 0);
    pk->kind = kind;
    pk->ops = ops;
    pk->name = name;
    pk->options = options;
    lua_pushcclosure(L, l_declare, 1); /* the userdata lives as the closure's upvalue */
    lua_setfield(L, -2, name);
}

/* A metatable for C values handed to scripts: printable, and locked (getmetatable gives `what`). */
static void new_metatable(lua_State *L, const char *name, lua_CFunction tostring, const char *what)
{
    luaL_newmetatable(L, name);
    lua_pushcfunction(L, tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushstring(L, what);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
}

/* __index of the source, sink and model tables (upvalue 1: the kind): a name that is no
 * plugin is a mistake at that line ("sink.jsnl: no such sink; did you mean sink.jsonl?"), not
 * a nil for the script to call. */
static int l_no_plugin(lua_State *L)
{
    const char *kind = lua_tostring(L, lua_upvalueindex(1));
    const char *key = luaL_tolstring(L, 2, NULL);
    const char *names[64];
    size_t n = 0;
    if (strcmp(kind, "source") == 0)
        for (const struct source_ops *const *p = source_plugins; *p && n < 64; p++) names[n++] = (*p)->name;
    else if (strcmp(kind, "sink") == 0)
        for (const struct sink_ops *const *p = sink_plugins; *p && n < 64; p++) names[n++] = (*p)->name;
    else
        for (const struct provider_ops *const *p = provider_plugins; *p && n < 64; p++) names[n++] = (*p)->name;
    char where[512], known[512] = "";
    caller_where(L, where, sizeof where);
    size_t used = 0;
    for (size_t i = 0; i < n && used < sizeof known; i++)
        used += (size_t)snprintf(known + used, sizeof known - used, "%s%s.%s", i ? ", " : "", kind, names[i]);
    const char *near = options_closest(key, names, n);
    if (near) lua_pushfstring(L, "%s: %s.%s: no such %s; did you mean %s.%s?", where, kind, key, kind, kind, near);
    else lua_pushfstring(L, "%s: %s.%s: no such %s (there are %s; runnel help lists them)", where, kind, key, kind, known);
    return lua_error(L);
}

/* Set the table at the top of the stack (the source, sink or model table) to refuse names
 * that are no plugin. */
static void refuse_unknown_plugins(lua_State *L, const char *kind)
{
    lua_createtable(L, 0, 1);
    lua_pushstring(L, kind);
    lua_pushcclosure(L, l_no_plugin, 1);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
}

lua_State *luajob_new(struct job_env *env, const struct param *params, size_t nparams, struct rn_err *err)
{
    lua_State *L = lua_alloc_newstate();
    if (!L) { rn_fail(err, "cannot create a Lua state (out of memory)"); return NULL; }
    struct sandbox *sb = rn_calloc(1, sizeof *sb);
    sb->env = env;
    sb->heap = lua_alloc_heap(L);
    sb->params = params;
    sb->nparams = nparams;
    *(struct sandbox **)lua_getextraspace(L) = sb; /* before any thread exists: they copy it */
    env->L = L;
    lua_pushcfunction(L, traceback_handler); /* stays at index 1 for luajob_call */
    /* Records are short-lived tables: the generational collector leaves survivors alone
     * between major collections (3-4% faster than incremental on case 1 of make bench). */
    lua_gc(L, LUA_GCGEN, 0, 0);
    /* Only the libraries a job needs; no io, no package (no C modules), a trimmed os. */
    static const luaL_Reg libs[] = {
        {LUA_GNAME, luaopen_base},     {LUA_TABLIBNAME, luaopen_table}, {LUA_STRLIBNAME, luaopen_string},
        {LUA_MATHLIBNAME, luaopen_math}, {LUA_UTF8LIBNAME, luaopen_utf8}, {LUA_COLIBNAME, luaopen_coroutine},
        {LUA_OSLIBNAME, luaopen_os},   {NULL, NULL},
    };
    for (const luaL_Reg *lib = libs; lib->func; lib++) {
        luaL_requiref(L, lib->name, lib->func, 1);
        lua_pop(L, 1);
    }
    static const char *const removed_base[] = {"dofile", "loadfile", NULL};
    for (const char *const *f = removed_base; *f; f++) { lua_pushnil(L); lua_setglobal(L, *f); }
    lua_getglobal(L, "load");
    lua_pushcclosure(L, l_load, 1);
    lua_setglobal(L, "load");
    lua_getglobal(L, "string");
    lua_pushnil(L);
    lua_setfield(L, -2, "dump"); /* binary chunks are never loaded; nor made */
    lua_pop(L, 1);
    lua_getglobal(L, "os");
    static const char *const removed_os[] = {"execute", "exit", "remove", "rename", "tmpname", "getenv", "setlocale", NULL};
    for (const char *const *f = removed_os; *f; f++) { lua_pushnil(L); lua_setfield(L, -2, *f); }
    lua_pop(L, 1);

    lua_createtable(L, 0, (int)nparams);
    for (size_t i = 0; i < nparams; i++) {
        lua_pushstring(L, params[i].value);
        lua_setfield(L, -2, params[i].key);
    }
    lua_rawsetp(L, LUA_REGISTRYINDEX, &params_key);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &params_read_key);

    new_metatable(L, SECRET_META, l_secret_tostring, "secret");
    new_metatable(L, DECL_META, l_decl_tostring, "declaration");

    lua_newtable(L);
    for (const struct source_ops *const *p = source_plugins; *p; p++)
        add_declaration(L, "source", *p, (*p)->name, (*p)->options);
    refuse_unknown_plugins(L, "source");
    lua_setglobal(L, "source");
    lua_newtable(L);
    for (const struct sink_ops *const *p = sink_plugins; *p; p++)
        add_declaration(L, "sink", *p, (*p)->name, (*p)->options);
    refuse_unknown_plugins(L, "sink");
    lua_setglobal(L, "sink");
    lua_newtable(L);
    for (const struct provider_ops *const *p = provider_plugins; *p; p++)
        add_declaration(L, "model", *p, (*p)->name, (*p)->options);
    refuse_unknown_plugins(L, "model");
    lua_setglobal(L, "model");
    static const luaL_Reg globals[] = {
        {"job", l_job}, {"param", l_param}, {"env", l_env}, {"secret", l_secret},
        {"print", l_print}, {"require", l_require}, {NULL, NULL},
    };
    for (const luaL_Reg *g = globals; g->func; g++) {
        lua_pushcfunction(L, g->func);
        lua_setglobal(L, g->name);
    }
    json_open_lib(L);

    /* require() path: scripts/ of the runtime, then the job script's directory */
    char dir[PATH_MAX], path[2 * PATH_MAX + 2];
    scripts_dir(dir, sizeof dir);
    const char *slash = strrchr(env->script, '/');
    if (slash) snprintf(path, sizeof path, "%s;%.*s", dir, (int)(slash - env->script), env->script);
    else snprintf(path, sizeof path, "%s;.", dir);
    lua_pushstring(L, path);
    lua_setfield(L, LUA_REGISTRYINDEX, "runnel.path");

    lua_newtable(L);
    env->fieldorder_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return L;
}

void luajob_close(lua_State *L)
{
    if (!L) return;
    struct sandbox *sb = sandbox_of(L);
    lua_alloc_close(L);
    free(sb);
}

void fieldorder_add(struct job_env *env, const char *name)
{
    lua_State *L = env->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, env->fieldorder_ref);
    lua_getfield(L, -1, name);
    if (lua_isnil(L, -1)) {
        lua_Integer n = 0;
        lua_pushnil(L);
        while (lua_next(L, -3)) { n++; lua_pop(L, 1); }
        lua_pushinteger(L, n + 1);
        lua_setfield(L, -3, name);
        json_forget_field_order(L, env->fieldorder_ref);
    }
    lua_pop(L, 2);
}

/* The limits job{...} sets for its own sandbox. */
static int apply_job_limits(lua_State *L, int job, struct rn_err *err)
{
    struct sandbox *sb = sandbox_of(L);
    snprintf(sb->job_where, sizeof sb->job_where, "%s", luajob_decl_where(L, job));
    int opts = luajob_decl_options(L, job);
    luajob_set_instruction_limit(L, opt_integer(L, opts, "instruction_limit", 100000000));
    int64_t limit = opt_size(L, opts, "memory_limit", 512 << 20);
    lua_pop(L, 1);
    luajob_set_memory_limit(L, limit);
    if (!sb->heap) return 0;
    lua_gc(L, LUA_GCCOLLECT);
    if (sb->heap->used > sb->heap->limit / 2) {
        char used[32], shown[32];
        opt_format_size(used, sizeof used, (int64_t)sb->heap->used);
        opt_format_size(shown, sizeof shown, limit);
        return rn_fail(err, "%s: job: memory_limit: the script holds %s once it has run, more than half of its "
                            "limit of %s (raise memory_limit)", luajob_decl_where(L, job), used, shown);
    }
    return 0;
}

int luajob_load(struct job_env *env, const char *path, struct rn_err *err)
{
    lua_State *L = env->L;
    int rc = luaL_loadfilex(L, path, "t");
    if (rc == LUA_ERRFILE) { /* Lua's "cannot open x.lua": say which file it was meant to be */
        struct stat st;
        if (stat(path, &st) != 0) rn_fail(err, "%s: cannot open the job script: %s", path, strerror(errno));
        else if (S_ISDIR(st.st_mode)) rn_fail(err, "%s: is a directory, not a job script (runnel run JOB.lua)", path);
        else rn_fail(err, "%s: cannot read the job script: %s", path, lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    if (rc != LUA_OK) {
        rn_fail(err, "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    /* The script's own run: a generous fixed instruction limit, and the default memory limit
     * (its memory_limit is known once job{...} has run). */
    int64_t default_limit = 0;
    opt_parse_size(MEMORY_LIMIT_DEFAULT, &default_limit);
    luajob_set_instruction_limit(L, 1000000000);
    luajob_set_memory_limit(L, default_limit);
    struct sandbox *sb = sandbox_of(L);
    sb->loading = 1;
    sb->usage_error[0] = '\0';
    rc = luajob_call(L, 0, 1, err);
    sb->loading = 0;
    if (rc) return sb->usage_error[0] && strcmp(err->msg, sb->usage_error) == 0 ? -2 : -1;
    const char *kind = luajob_decl_kind(L, -1);
    if (!kind || strcmp(kind, "job") != 0) {
        int top = lua_gettop(L);
        if (lua_isnil(L, -1)) rn_fail(err, "%s: the script returns nothing; it must end with `return job { ... }`", path);
        else if (kind) rn_fail(err, "%s: the script returns %s, not a job; it must end with `return job { ... }`", path,
                               luaL_tolstring(L, -1, NULL));
        else rn_fail(err, "%s: the script returns a %s, not a job; it must end with `return job { ... }`", path,
                     luaL_typename(L, -1));
        lua_settop(L, top - 1);
        return -1;
    }
    if (apply_job_limits(L, lua_gettop(L), err)) {
        lua_pop(L, 1);
        return -1;
    }
    return 0;
}
