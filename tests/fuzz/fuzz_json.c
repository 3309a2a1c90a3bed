/* fuzz_json.c: libFuzzer target for runtime/json.c: JSON text -> Lua value -> JSON text.
 *
 * The input is decoded with json_decode_push (as json.decode and the Kafka source do); when
 * it decodes, the value is encoded with json_encode, decoded again and encoded again: the two
 * encodings must be equal (the first round trip normalises: nulls in objects vanish, [] and {}
 * become {}). Each step runs on a fresh Lua thread whose stack comes from a canary allocator,
 * so pushing past the Lua stack without lua_checkstack (which ASan cannot see: liblua is not
 * instrumented) aborts when the thread is reset. Built and run by tools/fuzz.sh. */
#include <lauxlib.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "fuzz_common.h"

/* Nesting depth is invisible to coverage; a ladder of branches makes each deeper band new
 * coverage, so the fuzzer keeps valid inputs that nest deeper (up to 128 levels). */
static volatile int depth_band;
#define BAND(n) if (max > 4 * (n)) depth_band = (n)
static void depth_ladder(const unsigned char *data, size_t size)
{
    int depth = 0, max = 0, in_string = 0;
    for (size_t i = 0; i < size; i++) {
        if (in_string) {
            if (data[i] == '\\') i++;
            else if (data[i] == '"') in_string = 0;
        } else if (data[i] == '"') {
            in_string = 1;
        } else if (data[i] == '[' || data[i] == '{') {
            if (++depth > max) max = depth;
        } else if (data[i] == ']' || data[i] == '}') {
            depth--;
        }
    }
    BAND(1); BAND(2); BAND(3); BAND(4); BAND(5); BAND(6); BAND(7); BAND(8);
    BAND(9); BAND(10); BAND(11); BAND(12); BAND(13); BAND(14); BAND(15); BAND(16);
    BAND(17); BAND(18); BAND(19); BAND(20); BAND(21); BAND(22); BAND(23); BAND(24);
    BAND(25); BAND(26); BAND(27); BAND(28); BAND(29); BAND(30); BAND(31); BAND(32);
}

static struct job_env env;

static void init(void)
{
    fuzz_new_state(&env, "fuzz_json");
    /* a field order as a job has one: these keys come first at the top level */
    fieldorder_add(&env, "id");
    fieldorder_add(&env, "b");
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (!env.L) init();
    lua_State *L = env.L;
    int top = lua_gettop(L);
    lua_State *decoder = lua_newthread(L);
    lua_State *encoder = lua_newthread(L);
    struct rn_err err;
    struct buf first, second;
    buf_init(&first);
    buf_init(&second);
    if (json_decode_push(decoder, (const char *)data, size, &err)) {
        if (lua_gettop(decoder) != 0) abort();
        goto done;
    }
    if (lua_gettop(decoder) != 1) abort();
    depth_ladder(data, size);
    lua_xmove(decoder, encoder, 1);
    if (json_encode(encoder, -1, env.fieldorder_ref, &first, &err) == 0) {
        lua_settop(encoder, 0);
        if (json_decode_push(decoder, first.data, first.len, &err)) {
            fprintf(stderr, "fuzz_json: own output does not decode: %s\n%s\n", err.msg, first.data);
            abort();
        }
        lua_xmove(decoder, encoder, 1);
        if (json_encode(encoder, -1, env.fieldorder_ref, &second, &err)) {
            fprintf(stderr, "fuzz_json: the decoded output does not encode: %s\n", err.msg);
            abort();
        }
        if (first.len != second.len || memcmp(first.data, second.data, first.len) != 0) {
            fprintf(stderr, "fuzz_json: round trip differs:\n%s\n%s\n", first.data, second.data);
            abort();
        }
    }
    if (lua_gettop(encoder) != 1) abort();
done:
    buf_free(&first);
    buf_free(&second);
    lua_resetthread(decoder); /* shrinks the stacks: the allocator checks their canaries */
    lua_resetthread(encoder);
    lua_settop(L, top);
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
