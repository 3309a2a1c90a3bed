/* fuzz_prompt.c: libFuzzer target for prompt templates (runtime/prompt.c): prompt_parse and
 * prompt_render on a fixed record whose values the input picks.
 *
 * Input: byte 0 picks the types of three fields, byte 1 is the length n of a value string,
 * the next n bytes are that value, the rest is the template. A template without placeholders
 * must render as itself with each "{{{{" made "{{"; rendering twice must append the same text
 * twice; the Lua stack must be left as it was (on a thread whose stack has a canary, so pushes
 * past it without lua_checkstack abort). Built and run by tools/fuzz.sh. */
#include <lauxlib.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "models/prompt.h"

static struct job_env env;
static lua_State *main_state;

static void init(void)
{
    main_state = fuzz_new_state(&env, "fuzz_prompt");
    /* the fixed part of the record, as a job's source and filter would make it */
    if (luaL_dostring(main_state,
                      "RECORD = { ratio = 0.25, whole = 4.0, ok = true, list = { 1, 2 }, ['Product Id'] = 'B01',"
                      " ['a.b'] = 'dotted key', [' '] = 'space', nested = { deep = { x = 1 } } }") != LUA_OK) {
        fprintf(stderr, "fuzz_prompt: %s\n", lua_tostring(main_state, -1));
        abort();
    }
}

/* Push a value of the kind k (0..7) made from the bytes s[0..n). */
static void push_value(lua_State *L, int k, const char *s, size_t n)
{
    lua_Integer integer = 0;
    memcpy(&integer, s, n < sizeof integer ? n : sizeof integer);
    switch (k) {
    case 0: lua_pushlstring(L, s, n); break;
    case 1: lua_pushinteger(L, integer); break;
    case 2: { double d; memcpy(&d, &integer, sizeof d); lua_pushnumber(L, d); break; } /* NaN, inf, -0.0 ... */
    case 3: lua_pushboolean(L, n & 1); break;
    case 4: lua_createtable(L, 0, 0); break;
    case 5: lua_pushnil(L); break;
    case 6: lua_pushlightuserdata(L, (void *)s); break;
    default: lua_pushnumber(L, (double)integer / 8); break;
    }
}

/* The template with each "{{{{" (scanned left to right) made "{{": a placeholder-free render. */
static void unescape(const char *t, size_t n, struct buf *out)
{
    size_t i = 0;
    while (i < n) {
        if (i + 3 < n && memcmp(t + i, "{{{{", 4) == 0) { buf_put(out, "{{", 2); i += 4; }
        else buf_putc(out, t[i++]);
    }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (!main_state) init();
    if (size < 2) return 0;
    int kinds = data[0];
    size_t vlen = data[1];
    if (vlen > size - 2) vlen = size - 2;
    const char *value = (const char *)data + 2;
    const char *template = value + vlen;
    size_t tlen = size - 2 - vlen;

    lua_State *L = lua_newthread(main_state);
    lua_getglobal(L, "RECORD");
    int rec = lua_gettop(L);
    push_value(L, kinds & 7, value, vlen);
    lua_setfield(L, rec, "summary");
    push_value(L, (kinds >> 3) & 7, value, vlen);
    lua_setfield(L, rec, "score");
    lua_getfield(L, rec, "nested");
    push_value(L, kinds >> 6, value, vlen);
    lua_setfield(L, -2, "name");
    lua_pop(L, 1);
    int top = lua_gettop(L);

    struct rn_err err;
    err.msg[0] = '\0';
    struct prompt *p = prompt_parse(L, template, tlen, &err);
    if (!p) {
        if (!err.msg[0]) abort();
    } else {
        struct buf once, twice, expected;
        buf_init(&once);
        buf_init(&twice);
        buf_init(&expected);
        int rc = prompt_render(p, rec, &once, &err);
        if (lua_gettop(L) != top) abort();
        if (rc == 0) {
            if (once.data == NULL || once.data[once.len] != '\0') abort();
            if (prompt_render(p, rec, &twice, &err) || prompt_render(p, rec, &twice, &err)) abort();
            if (twice.len != 2 * once.len || memcmp(twice.data, once.data, once.len) != 0 ||
                memcmp(twice.data + once.len, once.data, once.len) != 0) {
                fprintf(stderr, "fuzz_prompt: rendering into a used buffer differs\n");
                abort();
            }
            if (prompt_field_count(p) == 0) {
                unescape(template, tlen, &expected);
                if (expected.len != once.len || (once.len && memcmp(expected.data, once.data, once.len) != 0)) {
                    fprintf(stderr, "fuzz_prompt: a template without placeholders rendered as something else\n");
                    abort();
                }
            }
        } else if (!err.msg[0]) {
            abort();
        }
        if (lua_gettop(L) != top) abort();
        buf_free(&once);
        buf_free(&twice);
        buf_free(&expected);
        prompt_free(p);
    }
    lua_resetthread(L); /* shrinks the stack: the allocator checks its canary */
    lua_pop(main_state, 1);
    lua_gc(main_state, LUA_GCSTEP, 0);
    return 0;
}
