/* test_sandbox.c: the job's Lua sandbox (runtime/lua/job.c) as C sees it: two job states in
 * one process keep their own instruction and memory limits (nothing process-wide), a call
 * that passes the memory limit fails with the limit as its reason and leaves the state usable,
 * a state that keeps the memory is told to stop, and the allocator's count is Lua's own. */
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "lua/alloc.h"
#include "lua/job.h"

#include "check.h"

static lua_State *new_state(struct job_env *env, const char *script)
{
    struct rn_err err;
    env->script = script;
    env->job_name = "t";
    lua_State *L = luajob_new(env, NULL, 0, &err);
    CHECK(L != NULL, "luajob_new: %s", err.msg);
    return L;
}

/* Run code (a chunk returning nothing) through luajob_call; 0 or -1 with err. */
static int run(lua_State *L, const char *code, struct rn_err *err)
{
    if (luaL_loadstring(L, code) != LUA_OK) {
        rn_fail(err, "load: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    return luajob_call(L, 0, 0, err);
}

static void test_two_states(void)
{
    struct job_env env_a = {0}, env_b = {0};
    lua_State *a = new_state(&env_a, "a.lua"), *b = new_state(&env_b, "b.lua");
    if (!a || !b) return;
    luajob_set_instruction_limit(a, 200000);
    luajob_set_instruction_limit(b, 3000000);
    struct rn_err err;
    CHECK(run(a, "while true do end", &err) == -1 && strstr(err.msg, "instruction limit of 200000 exceeded"),
          "state a keeps its own instruction limit: %s", err.msg);
    CHECK(run(b, "while true do end", &err) == -1 && strstr(err.msg, "instruction limit of 3000000 exceeded"),
          "state b keeps its own instruction limit: %s", err.msg);
    CHECK(run(b, "for i = 1, 1000000 do end", &err) == 0, "b may run 1,000,000 loop steps: %s", err.msg);
    CHECK(run(a, "for i = 1, 1000000 do end", &err) == -1, "a may not");
    /* a coroutine counts against the call that resumes it, in its own state */
    CHECK(run(a, "coroutine.wrap(function() while true do end end)()", &err) == -1 &&
          strstr(err.msg, "instruction limit of 200000"), "a coroutine is limited too: %s", err.msg);

    luajob_set_memory_limit(a, 8 << 20);
    luajob_set_memory_limit(b, 64 << 20);
    const char *grow = "local t = {} for i = 1, 2e6 do t[i] = i end"; /* about 32 MB */
    luajob_set_instruction_limit(a, 0);
    luajob_set_instruction_limit(b, 0);
    CHECK(run(a, grow, &err) == -1 && strcmp(err.msg, "Lua memory limit of 8 MB reached") == 0,
          "state a keeps its own memory limit: %s", err.msg);
    CHECK(luajob_fatal(a) == NULL, "garbage of the failed call is collected: the job goes on");
    CHECK(run(b, grow, &err) == 0, "state b keeps its own (larger) memory limit: %s", err.msg);
    CHECK(run(a, "local s = string.rep('x', 1000) .. 'y'", &err) == 0, "a works after its failed call: %s", err.msg);

    /* memory the script keeps: the job must stop */
    CHECK(run(a, "kept = {} for i = 1, 1e7 do kept[i] = i end", &err) == -1 && strstr(err.msg, "memory limit of 8 MB"),
          "a global that grows past the limit: %s", err.msg);
    const char *fatal = luajob_fatal(a);
    CHECK(fatal && strstr(fatal, "a.lua: job: memory_limit: the Lua heap still holds") && strstr(fatal, "of 8 MB"),
          "the kept memory stops the job: %s", fatal ? fatal : "(goes on)");
    CHECK(luajob_fatal(b) == NULL, "b is not told to stop");

    /* outside luajob_call the limit does not hold: C code building records never meets a refusal */
    lua_createtable(a, 1 << 20, 0);
    lua_pop(a, 1);
    CHECK(1, "an allocation past the limit outside a call does not panic");
    luajob_close(a);
    luajob_close(b);
}

static void test_accounting(void)
{
    struct job_env env = {0};
    lua_State *L = new_state(&env, "c.lua");
    if (!L) return;
    struct lua_heap *heap = lua_alloc_heap(L);
    CHECK(heap != NULL, "the job state uses the runtime's allocator");
    if (!heap) { luajob_close(L); return; }
    struct rn_err err;
    CHECK(run(L, "big = {} for i = 1, 1e5 do big[i] = 'v' .. i end", &err) == 0, "fill: %s", err.msg);
    lua_gc(L, LUA_GCCOLLECT);
    size_t lua_count = (size_t)lua_gc(L, LUA_GCCOUNT) * 1024 + (size_t)lua_gc(L, LUA_GCCOUNTB);
    CHECK(heap->used == lua_count, "the allocator counts what Lua counts: %zu, Lua %zu", heap->used, lua_count);
    CHECK(heap->ceiling == SIZE_MAX, "no ceiling outside a call");
    size_t before = heap->used;
    CHECK(run(L, "big = nil", &err) == 0, "free: %s", err.msg);
    lua_gc(L, LUA_GCCOLLECT);
    CHECK(heap->used + 100000 * 16 < before, "freed blocks are counted out: %zu then %zu", before, heap->used);
    luajob_close(L);
}

int main(void)
{
    test_two_states();
    test_accounting();
    return check_report("test_sandbox");
}
