/* fdplan.c: the descriptors a job will still open (see fdplan.h). */
#include "engine/fdplan.h"

#include <stdlib.h>
#include <string.h>

#include "lua/job.h"
#include "lua/options.h"

/* host:port[,host:port...]: how many. */
static long count_brokers(const char *list)
{
    if (!list || !*list) return 1;
    long n = 1;
    for (const char *c = list; *c; c++) n += *c == ',';
    return n;
}

/* A Kafka client's bootstrap list: the brokers option, properties["bootstrap.servers"], or
 * $KAFKA_BROKERS, as sources/kafka/client.c reads them. */
static long kafka_brokers(lua_State *L, int opts)
{
    const char *list = opt_string(L, opts, "brokers", NULL);
    long n = 0;
    if (!list && opt_push(L, opts, "properties")) {
        lua_getfield(L, -1, "bootstrap.servers");
        if (lua_type(L, -1) == LUA_TSTRING) n = count_brokers(lua_tostring(L, -1));
        lua_pop(L, 2);
    }
    return n ? n : count_brokers(list ? list : getenv("KAFKA_BROKERS"));
}

/* What the declaration at idx (a source or sink) will open later. */
static long plan_decl(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    const char *kind = luajob_decl_kind(L, idx), *type = luajob_decl_type(L, idx);
    if (!kind || !type) return 0;
    if (strcmp(type, "csv") == 0 && strcmp(kind, "source") == 0) return 1; /* the next file */
    if (strcmp(type, "kafka") != 0) return 0;
    int opts = luajob_decl_options(L, idx);
    long n = FDPLAN_PER_CLIENT + FDPLAN_PER_BROKER * kafka_brokers(L, opts);
    lua_pop(L, 1);
    return n;
}

long fdplan_job(lua_State *L, int job)
{
    int top = lua_gettop(L);
    int opts = luajob_decl_options(L, job);
    long n = 0;
    lua_getfield(L, opts, "source");
    if (!lua_isnil(L, -1)) n += plan_decl(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, opts, "sinks");
    if (lua_type(L, -1) == LUA_TTABLE) {
        lua_Integer count = (lua_Integer)lua_rawlen(L, -1);
        for (lua_Integer i = 1; i <= count; i++) {
            lua_rawgeti(L, -1, i);
            n += plan_decl(L, -1);
            lua_pop(L, 1);
        }
    } else if (!lua_isnil(L, -1)) {
        n += plan_decl(L, -1);
    }
    lua_pop(L, 1);
    lua_getfield(L, opts, "errors");
    if (!lua_isnil(L, -1)) n += plan_decl(L, -1);
    lua_settop(L, top);
    return n;
}
