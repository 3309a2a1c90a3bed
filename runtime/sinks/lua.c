/* lua_sink.c: sink.lua, a job-script function called with every record (for custom output
 * or aggregation in Lua).
 *
 * write(record) accepts the record unless it returns false: `return false, "reason"` rejects
 * it, and the pipeline dead-letters it (stage sink.lua, that reason) and goes on. An error
 * raised in write, flush or close stops the job: a sink that fails must not be committed
 * past. */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>

#include "lua/job.h"
#include "engine/plugin.h"
#include "core/log.h"

struct lua_sink {
    struct job_env *env;
    int write_ref, flush_ref, close_ref;
};

static const struct option_spec lua_sink_options[] = {
    {"write", OPT_FUNCTION, 1, NULL, .help = "function(record) called for every record"},
    {"flush", OPT_FUNCTION, 0, NULL, .help = "function() called at every checkpoint and at the end"},
    {"close", OPT_FUNCTION, 0, NULL, .help = "function() called once when the job ends"},
    {NULL},
};

static int ref_option(lua_State *L, int opts, const char *name)
{
    if (!opt_push(L, opts, name)) return LUA_NOREF;
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

static void *lua_sink_open(struct job_env *env, int opts, struct rn_err *err)
{
    (void)err;
    struct lua_sink *s = rn_calloc(1, sizeof *s);
    s->env = env;
    s->write_ref = ref_option(env->L, opts, "write");
    s->flush_ref = ref_option(env->L, opts, "flush");
    s->close_ref = ref_option(env->L, opts, "close");
    return s;
}

static int call_ref(lua_State *L, int ref, int arg, const char *what, struct rn_err *err)
{
    if (ref == LUA_NOREF) return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    int nargs = 0;
    if (arg) { lua_pushvalue(L, arg); nargs = 1; }
    if (luajob_call(L, nargs, 0, err)) return rn_wrap(err, "sink.lua %s", what);
    return 0;
}

static int lua_sink_write(void *self, uint64_t seq, struct sink_record *record, struct rn_err *err)
{
    struct lua_sink *s = self;
    lua_State *L = s->env->L;
    (void)seq;
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->write_ref);
    lua_pushvalue(L, sink_record_table(record));
    if (luajob_call(L, 1, 2, err)) return rn_wrap(err, "sink.lua write");
    int rejected = lua_type(L, top + 1) == LUA_TBOOLEAN && !lua_toboolean(L, top + 1);
    if (rejected) {
        const char *reason = lua_isstring(L, top + 2) ? lua_tostring(L, top + 2) : NULL;
        rn_fail(err, "%s", reason ? reason : "write returned false");
    }
    lua_settop(L, top);
    return rejected ? SINK_REJECTED : SINK_ACCEPTED;
}

static int lua_sink_flush(void *self, struct rn_err *err)
{
    struct lua_sink *s = self;
    return call_ref(s->env->L, s->flush_ref, 0, "flush", err);
}

static void lua_sink_close(void *self)
{
    struct lua_sink *s = self;
    struct rn_err err;
    if (call_ref(s->env->L, s->close_ref, 0, "close", &err)) log_error("%s", err.msg);
    luaL_unref(s->env->L, LUA_REGISTRYINDEX, s->write_ref);
    luaL_unref(s->env->L, LUA_REGISTRYINDEX, s->flush_ref);
    luaL_unref(s->env->L, LUA_REGISTRYINDEX, s->close_ref);
    free(s);
}

const struct sink_ops lua_sink = {
    .version = SINK_INTERFACE_VERSION,
    .name = "lua",
    .summary = "a Lua function called with every record",
    .options = lua_sink_options,
    .capabilities = 0, /* the record's table; acknowledged when write returns */
    .open = lua_sink_open,
    .write = lua_sink_write,
    .flush = lua_sink_flush,
    .close = lua_sink_close,
};
