/* json.c: Lua values to JSON text, the `json` library, and jansson values to Lua (json.h).
 * The encoder is hand-written because it is on the hot path of every file sink; the decoder
 * is json_decode.c. */
#include "formats/json.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/format.h"

#define MAX_DEPTH 64
#define MAX_SORTED_KEYS 256
#define DECODER_META "runnel.json.decoder"

static const char json_null_key = 'n';  /* address used as the registry key of json.null */

struct rank_cache;
static int encode_value(lua_State *L, int idx, int order_idx, struct rank_cache *cache, struct buf *out, int depth,
                        struct rn_err *err);

void json_push_null(lua_State *L) { lua_pushlightuserdata(L, (void *)&json_null_key); }

void json_put_number(lua_State *L, int idx, struct buf *out)
{
    if (lua_isinteger(L, idx)) json_put_integer(out, (int64_t)lua_tointeger(L, idx));
    else json_put_real(out, (double)lua_tonumber(L, idx));
}

/* A sequence is a table whose keys are exactly 1..n with n >= 1. */
static int is_sequence(lua_State *L, int idx, lua_Integer *n_out)
{
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    if (n == 0) return 0;
    lua_Integer count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1)) { lua_pop(L, 1); return 0; }
        count++;
    }
    *n_out = n;
    return count == n;
}

struct key_entry {
    const char *name;
    size_t len;
    lua_Integer rank;
    int value;           /* stack index of the value */
    int cached;          /* the rank cache held it at `slot` (a later key may take the slot) */
    size_t slot;
};

static int key_compare(const void *a, const void *b)
{
    const struct key_entry *x = a, *y = b;
    if (x->rank != y->rank) return x->rank < y->rank ? -1 : 1;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->name, y->name, n);
    if (c) return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

/* Ranks of field names by the address of their interned Lua string: short strings are
 * interned, so one name has one address while it lives. A direct-mapped cache in front of the
 * order table; an entry is checked against the name's bytes, so a reused address is harmless.
 * It also keeps the name encoded as a JSON key, ready to copy. One cache per order table (so
 * per job), a userdata kept in the table's metatable: found in a few steps on every encode,
 * and gone with the table. */
#define RANK_CACHE 256
#define CACHED_NAME 28
struct rank_cache {
    struct {
        const char *ptr;
        size_t len;
        char name[CACHED_NAME];
        lua_Integer rank;
        char encoded[CACHED_NAME * 6 + 3];
        size_t encoded_len;
    } entry[RANK_CACHE];
};

/* The cache of the order table at order_idx, made on first use. */
static struct rank_cache *rank_cache_of(lua_State *L, int order_idx)
{
    if (lua_getmetatable(L, order_idx)) {
        lua_rawgeti(L, -1, 1);
        struct rank_cache *cache = lua_touserdata(L, -1);
        lua_pop(L, 2);
        if (cache) return cache;
    }
    lua_createtable(L, 1, 0);
    struct rank_cache *cache = lua_newuserdatauv(L, sizeof *cache, 0);
    memset(cache, 0, sizeof *cache);
    lua_rawseti(L, -2, 1);
    lua_setmetatable(L, order_idx);
    return cache;
}

void json_forget_field_order(lua_State *L, int order_ref)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, order_ref);
    if (lua_getmetatable(L, -1)) {
        lua_rawgeti(L, -1, 1);
        struct rank_cache *cache = lua_touserdata(L, -1);
        if (cache) memset(cache, 0, sizeof *cache);
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
}

/* The key's rank (and its place in the rank cache, when there is one). */
static void key_rank(lua_State *L, int order_idx, struct rank_cache *cache, int key_idx, struct key_entry *k)
{
    size_t slot = k->slot = ((uintptr_t)k->name >> 4) % RANK_CACHE;
    if (cache && cache->entry[slot].ptr == k->name && cache->entry[slot].len == k->len &&
        memcmp(cache->entry[slot].name, k->name, k->len) == 0) {
        k->rank = cache->entry[slot].rank;
        k->cached = 1;
        return;
    }
    lua_Integer rank = LUA_MAXINTEGER;
    lua_pushvalue(L, key_idx);
    if (lua_rawget(L, order_idx) == LUA_TNUMBER) rank = lua_tointeger(L, -1);
    lua_pop(L, 1);
    k->rank = rank;
    /* short (interned) strings have stable addresses */
    if (cache && k->len <= CACHED_NAME && rn_utf8_valid(k->name, k->len, NULL)) {
        struct buf b;
        buf_init(&b);
        buf_put_json_string(&b, k->name, k->len);
        buf_putc(&b, ':');
        cache->entry[slot].ptr = k->name;
        cache->entry[slot].len = k->len;
        memcpy(cache->entry[slot].name, k->name, k->len);
        cache->entry[slot].rank = rank;
        memcpy(cache->entry[slot].encoded, b.data, b.len);
        cache->entry[slot].encoded_len = b.len;
        buf_free(&b);
        k->cached = 1;
    }
}

static int encode_object(lua_State *L, int idx, int order_idx, struct rank_cache *cache, struct buf *out, int depth,
                         struct rn_err *err)
{
    struct key_entry stack_keys[32];
    struct key_entry *keys = stack_keys;
    size_t count = 0, cap = 32;
    int rc = 0;
    int base = lua_gettop(L);
    /* One walk: each key and value stays on the stack (a copy of the key drives lua_next), so
     * key i's value is at base + 2i + 2. Stack room is made 16 keys at a time. */
    if (!lua_checkstack(L, 2 * 16 + 4)) return rn_fail(err, "table too large to encode");
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING) {
            rc = rn_fail(err, lua_type(L, -2) == LUA_TNUMBER
                                  ? "cannot encode a table that mixes list items and named fields as JSON"
                                  : "cannot encode a table key of this type as JSON");
            goto done;
        }
        if (count == cap) {
            if (cap >= MAX_SORTED_KEYS * 64) { rc = rn_fail(err, "table too large to encode"); goto done; }
            cap *= 2;
            if (keys == stack_keys) {
                keys = rn_malloc(cap * sizeof *keys);
                memcpy(keys, stack_keys, sizeof stack_keys);
            } else {
                keys = rn_realloc(keys, cap * sizeof *keys);
            }
        }
        if (count % 16 == 15 && !lua_checkstack(L, 2 * 16 + 4)) { rc = rn_fail(err, "table too large to encode"); goto done; }
        struct key_entry *k = &keys[count];
        k->value = base + 2 * (int)count + 2;
        count++;
        k->name = lua_tolstring(L, -2, &k->len);
        k->cached = 0;
        if (order_idx) key_rank(L, order_idx, cache, -2, k);
        else k->rank = LUA_MAXINTEGER;
        if (!k->cached && !rn_utf8_valid(k->name, k->len, NULL)) { /* cached names were checked */
            rc = rn_fail(err, "a field name is not valid UTF-8, which JSON cannot hold");
            goto done;
        }
        lua_pushvalue(L, -2);
    }
    if (count > 16) {
        qsort(keys, count, sizeof *keys, key_compare);
    } else {
        for (size_t i = 1; i < count; i++) { /* records are small: insertion sort */
            struct key_entry k = keys[i];
            size_t j = i;
            while (j > 0 && key_compare(&keys[j - 1], &k) > 0) { keys[j] = keys[j - 1]; j--; }
            keys[j] = k;
        }
    }
    buf_putc(out, '{');
    for (size_t i = 0; i < count; i++) {
        if (i) buf_putc(out, ',');
        const struct key_entry *k = &keys[i];
        if (k->cached && cache->entry[k->slot].ptr == k->name && cache->entry[k->slot].len == k->len) {
            buf_put(out, cache->entry[k->slot].encoded, cache->entry[k->slot].encoded_len);
        } else {
            buf_put_json_string(out, keys[i].name, keys[i].len);
            buf_putc(out, ':');
        }
        rc = encode_value(L, keys[i].value, 0, NULL, out, depth + 1, err);
        if (rc) {
            rn_wrap(err, "field '%s'", keys[i].name);
            goto done;
        }
    }
    buf_putc(out, '}');
done:
    lua_settop(L, base);
    if (keys != stack_keys) free(keys);
    return rc;
}

static int encode_value(lua_State *L, int idx, int order_idx, struct rank_cache *cache, struct buf *out, int depth,
                        struct rn_err *err)
{
    if (depth > MAX_DEPTH) return rn_fail(err, "value nested deeper than %d levels", MAX_DEPTH);
    switch (lua_type(L, idx)) {
    case LUA_TNIL: buf_put(out, "null", 4); return 0;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx)) buf_put(out, "true", 4);
        else buf_put(out, "false", 5);
        return 0;
    case LUA_TNUMBER: json_put_number(L, idx, out); return 0;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        if (json_put_string(out, s, n, NULL)) return rn_fail(err, "a string is not valid UTF-8, which JSON cannot hold");
        return 0;
    }
    case LUA_TTABLE: {
        /* each level keeps one value on the stack and its keys need up to three more */
        if (!lua_checkstack(L, 4)) return rn_fail(err, "value too deeply nested: out of Lua stack space");
        lua_Integer n;
        if (is_sequence(L, idx, &n)) {
            buf_putc(out, '[');
            for (lua_Integer i = 1; i <= n; i++) {
                if (i > 1) buf_putc(out, ',');
                lua_rawgeti(L, idx, i);
                int rc = encode_value(L, lua_gettop(L), 0, NULL, out, depth + 1, err);
                lua_pop(L, 1);
                if (rc) return rc;
            }
            buf_putc(out, ']');
            return 0;
        }
        return encode_object(L, idx, order_idx, cache, out, depth, err);
    }
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == (void *)&json_null_key) { buf_put(out, "null", 4); return 0; }
        /* fall through */
    default: return rn_fail(err, "cannot encode a %s as JSON", luaL_typename(L, idx));
    }
}

int json_encode(lua_State *L, int idx, int order_ref, struct buf *out, struct rn_err *err)
{
    idx = lua_absindex(L, idx);
    int top = lua_gettop(L);
    int order_idx = 0;
    struct rank_cache *cache = NULL;
    if (!lua_checkstack(L, 4)) return rn_fail(err, "out of Lua stack space");
    if (order_ref != LUA_NOREF && order_ref != LUA_REFNIL) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, order_ref);
        order_idx = lua_gettop(L);
        cache = rank_cache_of(L, order_idx);
    }
    size_t mark = out->len;
    int rc = encode_value(L, idx, order_idx, cache, out, 0, err);
    lua_settop(L, top);
    if (rc) buf_truncate(out, mark);
    return rc;
}

void json_push(lua_State *L, json_t *v)
{
    /* one slot per nesting level (jansson stops at 2048 levels): grow the stack as we go */
    luaL_checkstack(L, 2, "JSON value nested too deeply");
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        lua_createtable(L, 0, (int)json_object_size(v));
        const char *key;
        json_t *item;
        json_object_foreach(v, key, item) {
            if (json_is_null(item)) continue; /* Lua tables cannot hold nil */
            json_push(L, item);
            lua_setfield(L, -2, key);
        }
        break;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        lua_createtable(L, (int)n, 0);
        for (size_t i = 0; i < n; i++) {
            json_t *item = json_array_get(v, i);
            if (json_is_null(item)) json_push_null(L);
            else json_push(L, item);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    }
    case JSON_STRING: lua_pushlstring(L, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER: lua_pushinteger(L, (lua_Integer)json_integer_value(v)); break;
    case JSON_REAL: lua_pushnumber(L, json_real_value(v)); break;
    case JSON_TRUE: lua_pushboolean(L, 1); break;
    case JSON_FALSE: lua_pushboolean(L, 0); break;
    case JSON_NULL: lua_pushnil(L); break;
    }
}

static int decoder_gc(lua_State *L)
{
    json_decoder_free(luaL_checkudata(L, 1, DECODER_META));
    return 0;
}

int json_decode_push(lua_State *L, const char *text, size_t len, struct rn_err *err)
{
    /* the decoder is a userdata so that its buffers are freed even when Lua raises an error
     * (out of memory) half way; it leaves the stack before the value is returned */
    if (!lua_checkstack(L, 3)) return rn_fail(err, "invalid JSON: out of Lua stack space");
    struct json_decoder *d = lua_newuserdatauv(L, sizeof *d, 0);
    json_decoder_init(d);
    luaL_setmetatable(L, DECODER_META);
    struct json_syntax_error e;
    int kind = json_decode(d, L, text, len, 0, &e);
    if (kind < 0) {
        lua_pop(L, 1);
        return rn_fail(err, "invalid JSON at line %d column %d: %s", e.line, e.column, e.text);
    }
    lua_remove(L, -2);
    return 0;
}

static int l_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    struct buf b;
    buf_init(&b);
    struct rn_err err;
    if (json_encode(L, 1, LUA_NOREF, &b, &err)) {
        buf_free(&b);
        return luaL_error(L, "json.encode: %s", err.msg);
    }
    lua_pushlstring(L, b.data, b.len);
    buf_free(&b);
    return 1;
}

static int l_decode(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    struct rn_err err;
    if (json_decode_push(L, s, n, &err)) {
        lua_pushnil(L);
        lua_pushstring(L, err.msg);
        return 2;
    }
    return 1;
}

void json_open_lib(lua_State *L)
{
    json_push_null(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &json_null_key);
    luaL_newmetatable(L, DECODER_META);
    lua_pushcfunction(L, decoder_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    lua_createtable(L, 0, 3);
    lua_pushcfunction(L, l_encode);
    lua_setfield(L, -2, "encode");
    lua_pushcfunction(L, l_decode);
    lua_setfield(L, -2, "decode");
    json_push_null(L);
    lua_setfield(L, -2, "null");
    lua_setglobal(L, "json");
}

/* ---- the "json" record format: a value is one JSON object, its members the fields ---- */

struct json_codec {
    struct job_env *env;
    struct json_decoder decoder;
    int extra_fields;
};

static void *json_codec_open(const struct format_args *args, enum format_use use, struct rn_err *err)
{
    if (use == FORMAT_DECODE && format_order_columns(args, err)) return NULL;
    if (use == FORMAT_ENCODE && opt_push(args->env->L, args->opts, "columns")) {
        lua_pop(args->env->L, 1);
        rn_fail(err, "%s: %s: columns applies to format = \"csv\" (use map to choose the fields of JSON)", args->where,
                args->plugin);
        return NULL;
    }
    struct json_codec *c = rn_calloc(1, sizeof *c);
    c->env = args->env;
    c->extra_fields = args->extra_fields;
    json_decoder_init(&c->decoder);
    if (use == FORMAT_DECODE) json_decoder_keep_keys(&c->decoder, args->env->L);
    return c;
}

static const char *const kind_label[] = {
    [JSON_KIND_OBJECT] = "an object", [JSON_KIND_ARRAY] = "an array",     [JSON_KIND_STRING] = "a string",
    [JSON_KIND_NUMBER] = "a number",  [JSON_KIND_BOOLEAN] = "a boolean", [JSON_KIND_NULL] = "null",
};

static int json_codec_decode(void *self, lua_State *L, const char *data, size_t len, struct rn_err *err)
{
    struct json_codec *c = self;
    struct json_syntax_error e;
    int kind = json_decode(&c->decoder, L, data, len, c->extra_fields, &e);
    if (kind < 0) {
        if (format_check_utf8(data, len, err)) return -1; /* the clearer reason, wherever the bad byte is */
        return rn_fail(err, "the value is not JSON: %s (line %d, column %d)", e.text, e.line, e.column);
    }
    if (kind != JSON_KIND_OBJECT) {
        lua_pop(L, 1);
        return rn_fail(err, "the value is %s, not a JSON object", kind_label[kind]);
    }
    return 0;
}

static int json_codec_encode(void *self, lua_State *L, int rec, struct buf *out, struct rn_err *err)
{
    struct json_codec *c = self;
    return json_encode(L, rec, c->env->fieldorder_ref, out, err);
}

static void json_codec_close(void *self)
{
    struct json_codec *c = self;
    if (!c) return;
    json_decoder_free(&c->decoder);
    free(c);
}

const struct format_ops json_format = {
    .name = "json",
    .open = json_codec_open,
    .decode = json_codec_decode,
    .encode = json_codec_encode,
    .close = json_codec_close,
};
