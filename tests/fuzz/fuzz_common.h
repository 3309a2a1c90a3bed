/* fuzz_common.h: what every fuzz target shares: the job's Lua state, made by luajob_new, with
 * an allocator that puts a canary after every block. liblua is not built with ASan, so a push
 * past the Lua stack without lua_checkstack would go unseen; the canary makes it abort. */
#ifndef RUNNEL_FUZZ_COMMON_H
#define RUNNEL_FUZZ_COMMON_H

#include <lauxlib.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/job.h"

/* ---- a Lua allocator that puts a canary after every block it makes ---- */
#define CANARY 64
static void *canary_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    /* under ASan malloc_usable_size is the requested size: blocks made before this allocator
     * was installed have exactly osize and no canary */
    if (ptr && malloc_usable_size(ptr) == osize + CANARY)
        for (size_t i = 0; i < CANARY; i++)
            if (((unsigned char *)ptr)[osize + i] != 0xA5) {
                fprintf(stderr, "fuzz: write past the end of a %zu-byte Lua block (a Lua stack overflow: "
                                "pushes without lua_checkstack?)\n", osize);
                abort();
            }
    if (nsize == 0) { free(ptr); return NULL; }
    unsigned char *block = realloc(ptr, nsize + CANARY);
    if (block) memset(block + nsize, 0xA5, CANARY);
    return block;
}

/* The job's Lua state for fuzz target `name` (its script name is name.lua), with the canary
 * allocator from now on. Aborts when it cannot be made. */
static lua_State *fuzz_new_state(struct job_env *env, const char *name)
{
    static char script[64];
    snprintf(script, sizeof script, "%s.lua", name);
    struct rn_err err;
    env->script = script;
    env->job_name = "fuzz";
    lua_State *L = luajob_new(env, NULL, 0, &err);
    if (!L) {
        fprintf(stderr, "%s: %s\n", name, err.msg);
        abort();
    }
    lua_setallocf(L, canary_alloc, NULL);
    return L;
}

#endif
