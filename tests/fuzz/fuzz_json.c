/* fuzz_json.c: libFuzzer target for formats/json: the direct decoder against jansson, and
 * JSON text -> Lua value -> JSON text.
 *
 * 1. Every input is decoded twice: by json_decode (straight to Lua, as json.decode and
 *    source.kafka do) and by jansson's json_loadb(JSON_DECODE_ANY | JSON_ALLOW_NUL) plus
 *    json_push (how runnel decoded before). Both must accept or both refuse; when both refuse,
 *    with the same error text, line and column; when both accept, with the same value: the
 *    same types (integer or float), the same bits of every float, the same strings and keys.
 * 2. When it decodes, the value is encoded with json_encode, decoded again and encoded again:
 *    the two encodings must be equal (the first round trip normalises: nulls in objects vanish,
 *    [] and {} become {}).
 * Each step runs on a fresh Lua thread whose stack comes from a canary allocator, so pushing
 * past the Lua stack without lua_checkstack (which ASan cannot see: liblua is not
 * instrumented) aborts when the thread is reset. Built and run by tools/fuzz.sh. */
#include <lauxlib.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/json.h"
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
static struct json_decoder decoder; /* reused (and keeping keys), as a source uses its own */

static void init(void)
{
    fuzz_new_state(&env, "fuzz_json");
    json_decoder_init(&decoder);
    json_decoder_keep_keys(&decoder, env.L); /* as source.kafka's decoder does */
    /* a field order as a job has one: these keys come first at the top level */
    fieldorder_add(&env, "id");
    fieldorder_add(&env, "b");
}

/* 1 when the values at a (in A) and b (in B) are the same Lua value, deeply. */
static int same_value(lua_State *A, int a, lua_State *B, int b)
{
    a = lua_absindex(A, a);
    b = lua_absindex(B, b);
    if (lua_type(A, a) != lua_type(B, b)) return 0;
    switch (lua_type(A, a)) {
    case LUA_TNIL: return 1;
    case LUA_TBOOLEAN: return lua_toboolean(A, a) == lua_toboolean(B, b);
    case LUA_TLIGHTUSERDATA: return lua_touserdata(A, a) == lua_touserdata(B, b);
    case LUA_TNUMBER: {
        if (lua_isinteger(A, a) != lua_isinteger(B, b)) return 0;
        if (lua_isinteger(A, a)) return lua_tointeger(A, a) == lua_tointeger(B, b);
        lua_Number x = lua_tonumber(A, a), y = lua_tonumber(B, b);
        return memcmp(&x, &y, sizeof x) == 0; /* -0.0 is not 0.0 */
    }
    case LUA_TSTRING: {
        size_t n, m;
        const char *x = lua_tolstring(A, a, &n), *y = lua_tolstring(B, b, &m);
        return n == m && memcmp(x, y, n) == 0;
    }
    case LUA_TTABLE: {
        if (!lua_checkstack(A, 4) || !lua_checkstack(B, 4)) abort();
        size_t count = 0;
        lua_pushnil(A);
        while (lua_next(A, a)) {
            count++;
            /* the key into B: keys are strings or integers */
            if (lua_type(A, -2) == LUA_TSTRING) {
                size_t n;
                const char *k = lua_tolstring(A, -2, &n);
                lua_pushlstring(B, k, n);
            } else if (lua_isinteger(A, -2)) {
                lua_pushinteger(B, lua_tointeger(A, -2));
            } else {
                lua_pop(A, 2);
                return 0;
            }
            lua_rawget(B, b);
            int same = same_value(A, -1, B, -1);
            lua_pop(B, 1);
            lua_pop(A, 1);
            if (!same) {
                lua_pop(A, 1);
                return 0;
            }
        }
        size_t other = 0;
        lua_pushnil(B);
        while (lua_next(B, b)) {
            other++;
            lua_pop(B, 1);
        }
        return count == other;
    }
    default: return 0;
    }
}

static void show(const char *what, const unsigned char *data, size_t size)
{
    fprintf(stderr, "fuzz_json: %s for the input (%zu bytes): ", what, size);
    for (size_t i = 0; i < size && i < 200; i++)
        fprintf(stderr, data[i] >= 0x20 && data[i] < 0x7F ? "%c" : "\\x%02x", data[i]);
    fputc('\n', stderr);
}

/* Step 1: json_decode and jansson agree on data; leaves the decoded value on `direct` when
 * it decodes. Returns 1 when it decodes. */
static int agree_with_jansson(lua_State *direct, lua_State *tree, const unsigned char *data, size_t size)
{
    struct json_syntax_error e;
    int kind = json_decode(&decoder, direct, (const char *)data, size, 0, &e);
    json_error_t jerr;
    json_t *v = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if ((kind >= 0) != (v != NULL)) {
        show(kind >= 0 ? "json_decode accepts what jansson refuses" : "json_decode refuses what jansson accepts", data, size);
        fprintf(stderr, "  json_decode: %s (line %d column %d)\n  jansson: %s (line %d column %d)\n",
                kind >= 0 ? "ok" : e.text, e.line, e.column, v ? "ok" : jerr.text, jerr.line, jerr.column);
        abort();
    }
    if (!v) {
        if (lua_gettop(direct) != 0) abort();
        if (strcmp(e.text, jerr.text) != 0 || e.line != jerr.line || e.column != jerr.column) {
            show("the errors differ", data, size);
            fprintf(stderr, "  json_decode: %s (line %d column %d)\n  jansson:     %s (line %d column %d)\n", e.text,
                    e.line, e.column, jerr.text, jerr.line, jerr.column);
            abort();
        }
        return 0;
    }
    if (lua_gettop(direct) != 1) abort();
    static const int kinds[] = {[JSON_OBJECT] = JSON_KIND_OBJECT, [JSON_ARRAY] = JSON_KIND_ARRAY,
                                [JSON_STRING] = JSON_KIND_STRING, [JSON_INTEGER] = JSON_KIND_NUMBER,
                                [JSON_REAL] = JSON_KIND_NUMBER,   [JSON_TRUE] = JSON_KIND_BOOLEAN,
                                [JSON_FALSE] = JSON_KIND_BOOLEAN, [JSON_NULL] = JSON_KIND_NULL};
    if (kind != kinds[json_typeof(v)]) {
        show("the kinds differ", data, size);
        abort();
    }
    json_push(tree, v);
    json_decref(v);
    if (!same_value(direct, -1, tree, -1)) {
        show("the values differ", data, size);
        abort();
    }
    lua_settop(tree, 0);
    return 1;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (!env.L) init();
    lua_State *L = env.L;
    int top = lua_gettop(L);
    lua_State *decoder_thread = lua_newthread(L);
    lua_State *tree = lua_newthread(L);
    lua_State *encoder = lua_newthread(L);
    struct rn_err err;
    struct buf first, second;
    buf_init(&first);
    buf_init(&second);
    if (!agree_with_jansson(decoder_thread, tree, data, size)) goto done;
    depth_ladder(data, size);
    lua_xmove(decoder_thread, encoder, 1);
    if (json_encode(encoder, -1, env.fieldorder_ref, &first, &err) == 0) {
        lua_settop(encoder, 0);
        if (json_decode_push(decoder_thread, first.data, first.len, &err)) {
            fprintf(stderr, "fuzz_json: own output does not decode: %s\n%s\n", err.msg, first.data);
            abort();
        }
        lua_xmove(decoder_thread, encoder, 1);
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
    lua_resetthread(decoder_thread); /* shrinks the stacks: the allocator checks their canaries */
    lua_resetthread(tree);
    lua_resetthread(encoder);
    lua_settop(L, top);
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
