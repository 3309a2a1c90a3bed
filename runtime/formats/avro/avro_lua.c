/* avro_lua.c: Avro values (libavro's avro_value_t) to Lua values and back, by the mapping the
 * README's Avro section documents: null is nil (an absent field; json.null inside arrays),
 * records and maps are tables, arrays sequences, enums their symbol, bytes and fixed strings,
 * unions the branch's value; date is "YYYY-MM-DD", decimal a string of its digits ("-12.50"),
 * timestamps and times integers in their unit, uuid a string.
 *
 * Values of the writer's own schema are read straight from the binary (after bounds.c's walk)
 * and written straight to it; libavro's values are only used to resolve a writer's value to a
 * reader schema.
 *
 * Encoding picks a union's branch by the Lua value: the first branch that can hold it. A field
 * the record lacks takes the schema's default, else null when the type allows it, else the
 * record is refused naming the field. */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tz.h"
#include "formats/avro/avro_int.h"
#include "formats/json.h"

#define DECIMAL_MAX_BYTES 64

/* ---- decoding ---- */

static void push_date(lua_State *L, int64_t days)
{
    int64_t year;
    int month, day;
    tz_civil_from_days(days, &year, &month, &day);
    char text[32];
    int n = snprintf(text, sizeof text, "%04lld-%02d-%02d", (long long)year, month, day);
    lua_pushlstring(L, text, (size_t)n);
}

/* Push the decimal whose unscaled value is the two's-complement big-endian bytes, with scale
 * digits after the point. */
static void push_decimal(lua_State *L, const unsigned char *bytes, size_t size, int scale)
{
    unsigned char mag[DECIMAL_MAX_BYTES];
    int negative = size > 0 && (bytes[0] & 0x80);
    memcpy(mag, bytes, size);
    if (negative) { /* two's complement: invert and add one */
        int carry = 1;
        for (size_t i = size; i-- > 0;) {
            int b = (unsigned char)~mag[i] + carry;
            mag[i] = (unsigned char)b;
            carry = b >> 8;
        }
    }
    char digits[DECIMAL_MAX_BYTES * 3 + 4];
    size_t nd = 0;
    size_t first = 0;
    while (first < size) { /* divide by ten until zero, digits come out last first */
        unsigned rem = 0;
        for (size_t i = first; i < size; i++) {
            unsigned cur = rem << 8 | mag[i];
            mag[i] = (unsigned char)(cur / 10);
            rem = cur % 10;
        }
        digits[nd++] = (char)('0' + rem);
        while (first < size && mag[first] == 0) first++;
    }
    while (nd <= (size_t)scale) digits[nd++] = '0';
    char text[sizeof digits + 3];
    size_t t = 0;
    if (negative) text[t++] = '-';
    for (size_t i = nd; i-- > 0;) {
        text[t++] = digits[i];
        if (i == (size_t)scale && scale > 0) text[t++] = '.';
    }
    lua_pushlstring(L, text, t);
}

static int push_bytes_like(lua_State *L, const struct avro_node *n, const void *data, size_t size, struct rn_err *err)
{
    if (n->logical != AVRO_LOGICAL_DECIMAL) {
        lua_pushlstring(L, data, size);
        return 0;
    }
    if (size > DECIMAL_MAX_BYTES) return rn_fail(err, "a decimal of %zu bytes (at most %d)", size, DECIMAL_MAX_BYTES);
    push_decimal(L, data, size, n->scale);
    return 0;
}

/* A field's default: as JSON reads it, but a date's days as a date. */
static void push_default(lua_State *L, const struct avro_node *n, json_t *value)
{
    if (n->kind == AVRO_KIND_UNION && n->branch_count > 0) n = n->branches[0];
    if (n->logical == AVRO_LOGICAL_DATE && json_is_integer(value)) push_date(L, json_integer_value(value));
    else json_push(L, value);
}

/* key, value on the stack: into the table below them; a nil value is no field. */
static void set_field(lua_State *L)
{
    if (lua_isnil(L, -1)) lua_pop(L, 2);
    else lua_rawset(L, -3);
}

static int push_value(lua_State *L, const struct avro_node *n, avro_value_t *v, int keys,
                      const struct avro_tree *writer, int extra, int depth, struct rn_err *err)
{
    if (depth > AVRO_MAX_DEPTH) return rn_fail(err, "values nested deeper than %d", AVRO_MAX_DEPTH);
    int rc = 0;
    switch (n->kind) {
    case AVRO_KIND_NULL: lua_pushnil(L); break;
    case AVRO_KIND_BOOLEAN: {
        int b = 0;
        rc = avro_value_get_boolean(v, &b);
        lua_pushboolean(L, b);
        break;
    }
    case AVRO_KIND_INT: {
        int32_t i = 0;
        rc = avro_value_get_int(v, &i);
        if (n->logical == AVRO_LOGICAL_DATE) push_date(L, i);
        else lua_pushinteger(L, i);
        break;
    }
    case AVRO_KIND_LONG: {
        int64_t l = 0;
        rc = avro_value_get_long(v, &l);
        lua_pushinteger(L, (lua_Integer)l);
        break;
    }
    case AVRO_KIND_FLOAT: {
        float f = 0;
        rc = avro_value_get_float(v, &f);
        lua_pushnumber(L, f);
        break;
    }
    case AVRO_KIND_DOUBLE: {
        double d = 0;
        rc = avro_value_get_double(v, &d);
        lua_pushnumber(L, d);
        break;
    }
    case AVRO_KIND_STRING: {
        const char *s = NULL;
        size_t size = 0;
        rc = avro_value_get_string(v, &s, &size); /* size counts the NUL */
        lua_pushlstring(L, s ? s : "", size ? size - 1 : 0);
        break;
    }
    case AVRO_KIND_BYTES:
    case AVRO_KIND_FIXED: {
        const void *data = NULL;
        size_t size = 0;
        rc = n->kind == AVRO_KIND_BYTES ? avro_value_get_bytes(v, &data, &size) : avro_value_get_fixed(v, &data, &size);
        if (!rc && push_bytes_like(L, n, data, size, err)) return -1;
        break;
    }
    case AVRO_KIND_ENUM: { /* libavro resolves an enum by copying the writer's index: by name here */
        int symbol = 0;
        const struct avro_node *w = avro_tree_named(writer, AVRO_KIND_ENUM, n->name);
        if (avro_value_get_enum(v, &symbol) || !w || symbol < 0 || (size_t)symbol >= w->symbol_count)
            return rn_fail(err, "enum %s: the writer's symbol %d is not in its schema", n->name, symbol);
        const char *name = w->symbols[symbol];
        int found = n->default_symbol;
        for (size_t i = 0; i < n->symbol_count; i++)
            if (strcmp(n->symbols[i], name) == 0) found = (int)i;
        if (found < 0)
            return rn_fail(err, "enum %s: the writer's symbol '%s' is not in the reader's schema, which has no default",
                           n->name, name);
        lua_pushstring(L, n->symbols[found]);
        break;
    }
    case AVRO_KIND_UNION: {
        int branch = 0;
        avro_value_t b;
        if (avro_value_get_discriminant(v, &branch) || branch < 0 || (size_t)branch >= n->branch_count ||
            avro_value_get_current_branch(v, &b))
            return rn_fail(err, "a union without a branch: %s", avro_strerror());
        return push_value(L, n->branches[branch], &b, keys, writer, extra, depth + 1, err);
    }
    case AVRO_KIND_ARRAY:
    case AVRO_KIND_MAP: {
        size_t size = 0;
        avro_value_get_size(v, &size);
        int is_array = n->kind == AVRO_KIND_ARRAY;
        luaL_checkstack(L, 4, "avro");
        lua_createtable(L, is_array ? (int)size : 0, is_array ? 0 : (int)size);
        for (size_t i = 0; i < size; i++) {
            avro_value_t item;
            const char *key = NULL;
            if (avro_value_get_by_index(v, i, &item, &key)) return rn_fail(err, "item %zu: %s", i, avro_strerror());
            if (push_value(L, n->items, &item, keys, writer, 0, depth + 1, err)) {
                lua_pop(L, 1);
                return is_array ? rn_wrap(err, "item %zu", i) : rn_wrap(err, "key '%s'", key ? key : "");
            }
            if (is_array) {
                if (lua_isnil(L, -1)) {
                    lua_pop(L, 1);
                    json_push_null(L);
                }
                lua_rawseti(L, -2, (lua_Integer)i + 1);
            } else {
                lua_setfield(L, -2, key ? key : "");
            }
        }
        return 0;
    }
    case AVRO_KIND_RECORD: {
        size_t size = 0;
        avro_value_get_size(v, &size);
        luaL_checkstack(L, 4, "avro");
        lua_createtable(L, 0, (int)n->field_count + extra);
        /* a record read through a projection lacks the fields the writer lacked: by name */
        int by_index = size == n->field_count;
        for (size_t i = 0; i < n->field_count; i++) {
            const struct avro_field *f = &n->fields[i];
            avro_value_t field;
            int found = by_index ? avro_value_get_by_index(v, i, &field, NULL) == 0
                                 : avro_value_get_by_name(v, f->name, &field, NULL) == 0;
            if (!found) {
                if (!f->default_value) {
                    lua_pop(L, 1);
                    return rn_fail(err, "field '%s': not in the value and without a default", f->name);
                }
                lua_rawgeti(L, keys, f->key);
                push_default(L, f->type, f->default_value);
            } else {
                lua_rawgeti(L, keys, f->key);
                if (push_value(L, f->type, &field, keys, writer, 0, depth + 1, err)) {
                    lua_pop(L, 2);
                    return rn_wrap(err, "field '%s'", f->name);
                }
            }
            set_field(L);
        }
        return 0;
    }
    }
    if (rc) {
        lua_pop(L, 1);
        return rn_fail(err, "%s", avro_strerror());
    }
    return 0;
}

void avro_tree_keys(lua_State *L, struct avro_tree *t)
{
    if (t->keys_L) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, t->keys_ref);
        return;
    }
    lua_createtable(L, t->key_count, 0);
    for (size_t i = 0; i < t->node_count; i++) {
        const struct avro_node *n = t->nodes[i];
        for (size_t f = 0; n->kind == AVRO_KIND_RECORD && f < n->field_count; f++) {
            lua_pushstring(L, n->fields[f].name);
            lua_rawseti(L, -2, n->fields[f].key);
        }
    }
    lua_pushvalue(L, -1);
    t->keys_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    t->keys_L = L;
}

int avro_push_value(lua_State *L, struct avro_tree *t, const struct avro_tree *writer, avro_value_t *v,
                    int extra_fields, struct rn_err *err)
{
    int top = lua_gettop(L);
    luaL_checkstack(L, 8, "avro");
    avro_tree_keys(L, t);
    int rc = push_value(L, t->root, v, top + 1, writer, extra_fields, 0, err);
    if (rc) lua_settop(L, top);
    else lua_remove(L, top + 1);
    return rc;
}

/* ---- decoding straight from the binary ---- */

/* A value avro_bounds_check accepted: every read below fits, so a failure here is ours. */
struct bin {
    const unsigned char *start, *p, *end;
    size_t base;
    int keys; /* stack index of the tree's keys */
};

static int bin_corrupt(const struct bin *b, struct rn_err *err)
{
    return rn_fail(err, "the value does not read at byte %zu as the bounds check read it (internal error)",
                   b->base + (size_t)(b->p - b->start));
}

static int bin_long(struct bin *b, int64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 70 && b->p < b->end; shift += 7) {
        unsigned char c = *b->p++;
        v |= (uint64_t)(c & 0x7f) << (shift < 64 ? shift : 63);
        if (!(c & 0x80)) {
            *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
            return 0;
        }
    }
    return -1;
}

/* A length, and that many bytes left. */
static int bin_length(struct bin *b, int64_t *len)
{
    return bin_long(b, len) || *len < 0 || *len > b->end - b->p ? -1 : 0;
}

static int push_bin(lua_State *L, const struct avro_node *n, struct bin *b, int extra, struct rn_err *err)
{
    int64_t v;
    switch (n->kind) {
    case AVRO_KIND_NULL: lua_pushnil(L); return 0;
    case AVRO_KIND_BOOLEAN:
        if (b->p >= b->end) return bin_corrupt(b, err);
        lua_pushboolean(L, *b->p++);
        return 0;
    case AVRO_KIND_INT:
        if (bin_long(b, &v)) return bin_corrupt(b, err);
        if (n->logical == AVRO_LOGICAL_DATE) push_date(L, (int32_t)v);
        else lua_pushinteger(L, (int32_t)v);
        return 0;
    case AVRO_KIND_LONG:
        if (bin_long(b, &v)) return bin_corrupt(b, err);
        lua_pushinteger(L, (lua_Integer)v);
        return 0;
    case AVRO_KIND_FLOAT: {
        if (b->end - b->p < 4) return bin_corrupt(b, err);
        uint32_t u = (uint32_t)b->p[0] | (uint32_t)b->p[1] << 8 | (uint32_t)b->p[2] << 16 | (uint32_t)b->p[3] << 24;
        float f;
        memcpy(&f, &u, sizeof f);
        b->p += 4;
        lua_pushnumber(L, f);
        return 0;
    }
    case AVRO_KIND_DOUBLE: {
        if (b->end - b->p < 8) return bin_corrupt(b, err);
        uint64_t u = 0;
        for (int i = 7; i >= 0; i--) u = u << 8 | b->p[i];
        double d;
        memcpy(&d, &u, sizeof d);
        b->p += 8;
        lua_pushnumber(L, d);
        return 0;
    }
    case AVRO_KIND_STRING:
        if (bin_length(b, &v)) return bin_corrupt(b, err);
        lua_pushlstring(L, (const char *)b->p, (size_t)v);
        b->p += v;
        return 0;
    case AVRO_KIND_BYTES:
    case AVRO_KIND_FIXED: {
        if (n->kind == AVRO_KIND_BYTES) {
            if (bin_length(b, &v)) return bin_corrupt(b, err);
        } else {
            v = (int64_t)n->size;
            if (v > b->end - b->p) return bin_corrupt(b, err);
        }
        const unsigned char *data = b->p;
        b->p += v;
        return push_bytes_like(L, n, data, (size_t)v, err);
    }
    case AVRO_KIND_ENUM:
        if (bin_long(b, &v) || v < 0 || (uint64_t)v >= n->symbol_count) return bin_corrupt(b, err);
        lua_pushstring(L, n->symbols[v]);
        return 0;
    case AVRO_KIND_UNION:
        if (bin_long(b, &v) || v < 0 || (uint64_t)v >= n->branch_count) return bin_corrupt(b, err);
        return push_bin(L, n->branches[v], b, extra, err);
    case AVRO_KIND_ARRAY:
    case AVRO_KIND_MAP: {
        int is_array = n->kind == AVRO_KIND_ARRAY;
        luaL_checkstack(L, 4, "avro");
        int table = 0;
        int64_t index = 0;
        for (;;) {
            int64_t count, size;
            if (bin_long(b, &count)) return bin_corrupt(b, err);
            if (count < 0 && (count == INT64_MIN || bin_long(b, &size))) return bin_corrupt(b, err);
            if (count < 0) count = -count;
            if (!table) { /* presized by the first block, as libavro's size was the whole count */
                int hint = count < INT32_MAX ? (int)count : INT32_MAX;
                lua_createtable(L, is_array ? hint : 0, is_array ? 0 : hint);
                table = 1;
            }
            if (count == 0) return 0;
            for (int64_t i = 0; i < count; i++, index++) {
                const char *key = NULL;
                if (!is_array) { /* the key as libavro keeps it: a C string */
                    int64_t len;
                    if (bin_length(b, &len)) return bin_corrupt(b, err);
                    key = lua_pushlstring(L, (const char *)b->p, strnlen((const char *)b->p, (size_t)len));
                    b->p += len;
                }
                if (push_bin(L, n->items, b, 0, err)) { /* the key stays on the stack till the caller's settop */
                    if (is_array) return rn_wrap(err, "item %lld", (long long)index);
                    return rn_wrap(err, "key '%s'", key);
                }
                if (is_array) {
                    if (lua_isnil(L, -1)) {
                        lua_pop(L, 1);
                        json_push_null(L);
                    }
                    lua_rawseti(L, -2, index + 1);
                } else {
                    set_field(L);
                }
            }
        }
    }
    case AVRO_KIND_RECORD:
        luaL_checkstack(L, 4, "avro");
        lua_createtable(L, 0, (int)n->field_count + extra);
        for (size_t i = 0; i < n->field_count; i++) {
            const struct avro_field *f = &n->fields[i];
            lua_rawgeti(L, b->keys, f->key);
            if (push_bin(L, f->type, b, 0, err)) return rn_wrap(err, "field '%s'", f->name);
            set_field(L);
        }
        return 0;
    }
    return bin_corrupt(b, err);
}

int avro_push_binary(lua_State *L, struct avro_tree *t, const unsigned char *data, size_t len, size_t base,
                     int extra_fields, struct rn_err *err)
{
    int top = lua_gettop(L);
    luaL_checkstack(L, 8, "avro");
    avro_tree_keys(L, t);
    struct bin b = {data, data, data + len, base, top + 1};
    if (push_bin(L, t->root, &b, extra_fields, err) || (b.p != b.end && bin_corrupt(&b, err))) {
        lua_settop(L, top); /* what a failure left: the keys, tables, a key */
        return -1;
    }
    lua_remove(L, top + 1);
    return 0;
}

/* ---- encoding ---- */

static const char *lua_kind(lua_State *L, int idx)
{
    if (lua_isinteger(L, idx)) return "an integer";
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
    case LUA_TLIGHTUSERDATA: return "nil";
    case LUA_TNUMBER: return "a number";
    case LUA_TBOOLEAN: return "a boolean";
    case LUA_TSTRING: return "a string";
    case LUA_TTABLE: return "a table";
    default: return luaL_typename(L, idx);
    }
}

static int is_nil(lua_State *L, int idx)
{
    int t = lua_type(L, idx);
    return t == LUA_TNIL || t == LUA_TLIGHTUSERDATA; /* json.null */
}

/* "YYYY-MM-DD" as days since 1970-01-01; -1 when it is not such a date. */
static int parse_date(const char *s, size_t len, int64_t *days)
{
    int year, month, day, used = 0;
    if (len != 10 || sscanf(s, "%4d-%2d-%2d%n", &year, &month, &day, &used) != 3 || used != 10) return -1;
    if (month < 1 || month > 12 || day < 1 || day > 31) return -1;
    *days = tz_days_from_civil(year, month, day);
    int64_t y;
    int m, d;
    tz_civil_from_days(*days, &y, &m, &d);
    return m == month && d == day ? 0 : -1; /* refuses 2026-02-30 */
}

static int is_uuid(const char *s, size_t len)
{
    if (len != 36) return 0;
    for (size_t i = 0; i < len; i++) {
        int dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !strchr("0123456789abcdefABCDEF", s[i]) || !s[i]) return 0;
    }
    return 1;
}

/* The decimal text ("-12.5", or a Lua number's text) as the unscaled two's-complement bytes of
 * `size` bytes (0: as few as hold it) into out. -1 and err when it is not a number, has more
 * fraction digits than scale or does not fit. */
static int decimal_bytes(const char *text, int scale, int precision, size_t size, unsigned char *out, size_t *out_len,
                         struct rn_err *err)
{
    const char *p = text;
    int negative = *p == '-';
    if (*p == '-' || *p == '+') p++;
    unsigned char mag[DECIMAL_MAX_BYTES] = {0};
    int digits = 0, fraction = -1;
    for (; *p; p++) {
        if (*p == '.' && fraction < 0) {
            fraction = 0;
            continue;
        }
        if (*p < '0' || *p > '9') return rn_fail(err, "'%s' is not a decimal number", text);
        if (fraction >= 0 && ++fraction > scale) {
            if (*p != '0') return rn_fail(err, "'%s' has more than %d digits after the point", text, scale);
            continue;
        }
        if (digits || *p != '0') digits++;
        unsigned carry = (unsigned)(*p - '0'); /* mag = mag * 10 + digit */
        for (int i = DECIMAL_MAX_BYTES; i-- > 0;) {
            unsigned cur = mag[i] * 10u + carry;
            mag[i] = (unsigned char)cur;
            carry = cur >> 8;
        }
    }
    if (fraction < 0) fraction = 0;
    for (; fraction < scale; fraction++, digits += digits > 0) { /* scale it up */
        unsigned carry = 0;
        for (int i = DECIMAL_MAX_BYTES; i-- > 0;) {
            unsigned cur = mag[i] * 10u + carry;
            mag[i] = (unsigned char)cur;
            carry = cur >> 8;
        }
    }
    if (p == text || (p == text + 1 && (negative || text[0] == '+')))
        return rn_fail(err, "'%s' is not a decimal number", text);
    if (digits > precision) return rn_fail(err, "'%s' has more than the %d digits of its precision", text, precision);
    if (negative) {
        int carry = 1;
        for (int i = DECIMAL_MAX_BYTES; i-- > 0;) {
            int b = (unsigned char)~mag[i] + carry;
            mag[i] = (unsigned char)b;
            carry = b >> 8;
        }
    }
    unsigned char fill = negative ? 0xff : 0x00;
    size_t skip = 0; /* drop leading bytes that only repeat the sign */
    while (skip + 1 < DECIMAL_MAX_BYTES && mag[skip] == fill && ((mag[skip + 1] & 0x80) == (fill & 0x80))) skip++;
    size_t need = DECIMAL_MAX_BYTES - skip;
    if (size == 0) size = need;
    if (need > size) return rn_fail(err, "'%s' does not fit %zu bytes", text, size);
    memcpy(out, mag + DECIMAL_MAX_BYTES - size, size);
    *out_len = size;
    return 0;
}

/* 1 when the Lua value at idx can be a value of n (shallow: how a union picks its branch). */
static int accepts(lua_State *L, int idx, const struct avro_node *n)
{
    int t = lua_type(L, idx);
    if (is_nil(L, idx)) return n->kind == AVRO_KIND_NULL;
    switch (n->kind) {
    case AVRO_KIND_NULL: return 0;
    case AVRO_KIND_BOOLEAN: return t == LUA_TBOOLEAN;
    case AVRO_KIND_INT:
        if (n->logical == AVRO_LOGICAL_DATE && t == LUA_TSTRING) return 1;
        return lua_isinteger(L, idx) && lua_tointeger(L, idx) >= INT32_MIN && lua_tointeger(L, idx) <= INT32_MAX;
    case AVRO_KIND_LONG: return lua_isinteger(L, idx);
    case AVRO_KIND_FLOAT:
    case AVRO_KIND_DOUBLE: return t == LUA_TNUMBER;
    case AVRO_KIND_STRING: return t == LUA_TSTRING;
    case AVRO_KIND_BYTES: return t == LUA_TSTRING || (n->logical == AVRO_LOGICAL_DECIMAL && t == LUA_TNUMBER);
    case AVRO_KIND_FIXED:
        return (t == LUA_TSTRING && (n->logical == AVRO_LOGICAL_DECIMAL || lua_rawlen(L, idx) == n->size)) ||
               (n->logical == AVRO_LOGICAL_DECIMAL && t == LUA_TNUMBER);
    case AVRO_KIND_ENUM:
        if (t != LUA_TSTRING) return 0;
        for (size_t i = 0; i < n->symbol_count; i++)
            if (strcmp(n->symbols[i], lua_tostring(L, idx)) == 0) return 1;
        return 0;
    case AVRO_KIND_ARRAY: return t == LUA_TTABLE;
    case AVRO_KIND_MAP:
    case AVRO_KIND_RECORD: return t == LUA_TTABLE && lua_rawlen(L, idx) == 0;
    case AVRO_KIND_UNION: return 0;
    }
    return 0;
}

static int accepts_null(const struct avro_node *n)
{
    if (n->kind == AVRO_KIND_NULL) return 1;
    for (size_t i = 0; n->kind == AVRO_KIND_UNION && i < n->branch_count; i++)
        if (n->branches[i]->kind == AVRO_KIND_NULL) return 1;
    return 0;
}

static int wrong_type(lua_State *L, int idx, const struct avro_node *n, struct rn_err *err)
{
    struct buf d;
    buf_init(&d);
    avro_node_describe(n, &d);
    rn_fail(err, "%s does not fit %s", lua_kind(L, idx), d.data);
    buf_free(&d);
    return -1;
}

/* Avro's binary: zig-zag variable-length integers, little-endian floats, lengths before bytes. */
static void put_long(struct buf *out, int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    buf_reserve(out, 10);
    unsigned char *p = (unsigned char *)out->data + out->len;
    size_t n = 0;
    while (z > 0x7f) {
        p[n++] = (unsigned char)(z | 0x80);
        z >>= 7;
    }
    p[n++] = (unsigned char)z;
    out->len += n;
    out->data[out->len] = '\0';
}

static void put_bytes(struct buf *out, const void *data, size_t len)
{
    put_long(out, (int64_t)len);
    buf_put(out, data, len);
}

static void put_le(struct buf *out, uint64_t u, int bytes)
{
    buf_reserve(out, 8);
    for (int i = 0; i < bytes; i++) out->data[out->len++] = (char)(u >> (8 * i));
    out->data[out->len] = '\0';
}

struct wr {
    struct buf *out;
    int keys; /* stack index of the tree's keys */
};

static int write_value(lua_State *L, int idx, const struct avro_node *n, struct wr *w, int depth, struct rn_err *err);

static int write_record(lua_State *L, int idx, const struct avro_node *n, struct wr *w, int depth, struct rn_err *err)
{
    for (size_t i = 0; i < n->field_count; i++) {
        const struct avro_field *f = &n->fields[i];
        lua_rawgeti(L, w->keys, f->key);
        lua_gettable(L, idx); /* lua_getfield without hashing the name again */
        if (is_nil(L, -1) && f->default_value) {
            lua_pop(L, 1);
            push_default(L, f->type, f->default_value);
        } else if (is_nil(L, -1) && !accepts_null(f->type)) {
            struct buf d;
            buf_init(&d);
            avro_node_describe(f->type, &d);
            rn_fail(err, "field '%s' is missing (%s, no default)", f->name, d.data);
            buf_free(&d);
            lua_pop(L, 1);
            return -1;
        }
        int rc = write_value(L, lua_gettop(L), f->type, w, depth + 1, err);
        lua_pop(L, 1);
        if (rc) return rn_wrap(err, "field '%s'", f->name);
    }
    return 0;
}

static int write_value(lua_State *L, int idx, const struct avro_node *n, struct wr *w, int depth, struct rn_err *err)
{
    if (depth > AVRO_MAX_DEPTH) return rn_fail(err, "values nested deeper than %d", AVRO_MAX_DEPTH);
    struct buf *out = w->out;
    if (n->kind == AVRO_KIND_UNION) {
        for (size_t i = 0; i < n->branch_count; i++) {
            if (!accepts(L, idx, n->branches[i])) continue;
            put_long(out, (int64_t)i);
            return write_value(L, idx, n->branches[i], w, depth + 1, err);
        }
        return wrong_type(L, idx, n, err);
    }
    if (n->kind != AVRO_KIND_NULL && is_nil(L, idx)) return wrong_type(L, idx, n, err);
    int t = lua_type(L, idx);
    switch (n->kind) {
    case AVRO_KIND_NULL:
        if (!is_nil(L, idx)) return wrong_type(L, idx, n, err);
        return 0;
    case AVRO_KIND_BOOLEAN:
        if (t != LUA_TBOOLEAN) return wrong_type(L, idx, n, err);
        buf_putc(out, (char)(lua_toboolean(L, idx) ? 1 : 0));
        return 0;
    case AVRO_KIND_INT: {
        if (n->logical == AVRO_LOGICAL_DATE && t == LUA_TSTRING) {
            size_t len;
            const char *s = lua_tolstring(L, idx, &len);
            int64_t days;
            if (parse_date(s, len, &days) || days < INT32_MIN || days > INT32_MAX)
                return rn_fail(err, "'%s' is not a date (YYYY-MM-DD)", s);
            put_long(out, days);
            return 0;
        }
        lua_Integer i = 0;
        if (lua_isinteger(L, idx)) i = lua_tointeger(L, idx);
        else if (!(t == LUA_TNUMBER && lua_numbertointeger(lua_tonumber(L, idx), &i))) return wrong_type(L, idx, n, err);
        if (i < INT32_MIN || i > INT32_MAX) return rn_fail(err, "%lld does not fit int (32 bits)", (long long)i);
        put_long(out, (int64_t)i);
        return 0;
    }
    case AVRO_KIND_LONG: {
        lua_Integer i = 0;
        if (lua_isinteger(L, idx)) i = lua_tointeger(L, idx);
        else if (!(t == LUA_TNUMBER && lua_numbertointeger(lua_tonumber(L, idx), &i))) return wrong_type(L, idx, n, err);
        put_long(out, (int64_t)i);
        return 0;
    }
    case AVRO_KIND_FLOAT: {
        if (t != LUA_TNUMBER) return wrong_type(L, idx, n, err);
        float f = (float)lua_tonumber(L, idx);
        uint32_t u;
        memcpy(&u, &f, sizeof u);
        put_le(out, u, 4);
        return 0;
    }
    case AVRO_KIND_DOUBLE: {
        if (t != LUA_TNUMBER) return wrong_type(L, idx, n, err);
        double d = lua_tonumber(L, idx);
        uint64_t u;
        memcpy(&u, &d, sizeof u);
        put_le(out, u, 8);
        return 0;
    }
    case AVRO_KIND_STRING: {
        if (t != LUA_TSTRING) return wrong_type(L, idx, n, err);
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        if (n->logical == AVRO_LOGICAL_UUID && !is_uuid(s, len)) return rn_fail(err, "'%.60s' is not a UUID", s);
        if (!rn_utf8_valid(s, len, NULL)) return rn_fail(err, "the string is not valid UTF-8");
        put_bytes(out, s, len);
        return 0;
    }
    case AVRO_KIND_BYTES:
    case AVRO_KIND_FIXED: {
        size_t len;
        const char *s;
        unsigned char dec[DECIMAL_MAX_BYTES];
        if (n->logical == AVRO_LOGICAL_DECIMAL && (t == LUA_TSTRING || t == LUA_TNUMBER)) {
            const char *text = lua_tostring(L, idx); /* a number becomes its text here; idx is ours */
            if (decimal_bytes(text, n->scale, n->precision, n->kind == AVRO_KIND_FIXED ? n->size : 0, dec, &len, err))
                return -1;
            s = (const char *)dec;
        } else {
            if (t != LUA_TSTRING) return wrong_type(L, idx, n, err);
            s = lua_tolstring(L, idx, &len);
        }
        if (n->kind == AVRO_KIND_FIXED) {
            if (len != n->size) return rn_fail(err, "%zu bytes do not fit fixed %s of %zu bytes", len, n->name, n->size);
            buf_put(out, s, len);
        } else {
            put_bytes(out, s, len);
        }
        return 0;
    }
    case AVRO_KIND_ENUM: {
        if (t != LUA_TSTRING) return wrong_type(L, idx, n, err);
        const char *s = lua_tostring(L, idx);
        for (size_t i = 0; i < n->symbol_count; i++)
            if (strcmp(n->symbols[i], s) == 0) {
                put_long(out, (int64_t)i);
                return 0;
            }
        return rn_fail(err, "'%.60s' is not a symbol of enum %s", s, n->name);
    }
    case AVRO_KIND_ARRAY: { /* one block of every item (as libavro writes it), then count 0 */
        if (t != LUA_TTABLE) return wrong_type(L, idx, n, err);
        luaL_checkstack(L, 4, "avro");
        lua_Integer count = (lua_Integer)lua_rawlen(L, idx);
        if (count > 0) put_long(out, (int64_t)count);
        for (lua_Integer i = 1; i <= count; i++) {
            lua_rawgeti(L, idx, i);
            int rc = write_value(L, lua_gettop(L), n->items, w, depth + 1, err);
            lua_pop(L, 1);
            if (rc) return rn_wrap(err, "item %lld", (long long)i);
        }
        put_long(out, 0);
        return 0;
    }
    case AVRO_KIND_MAP: {
        if (t != LUA_TTABLE) return wrong_type(L, idx, n, err);
        luaL_checkstack(L, 4, "avro");
        int64_t count = 0; /* the block's count goes first */
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            lua_pop(L, 1);
            count++;
        }
        if (count > 0) put_long(out, count);
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            if (lua_type(L, -2) != LUA_TSTRING) {
                rn_fail(err, "a map's keys must be strings, not %s", lua_kind(L, -2));
                lua_pop(L, 2);
                return -1;
            }
            const char *key = lua_tostring(L, -2);
            put_bytes(out, key, strlen(key)); /* a C string, as libavro wrote it */
            if (write_value(L, lua_gettop(L), n->items, w, depth + 1, err)) {
                rn_wrap(err, "key '%.60s'", key);
                lua_pop(L, 2);
                return -1;
            }
            lua_pop(L, 1);
        }
        put_long(out, 0);
        return 0;
    }
    case AVRO_KIND_RECORD:
        if (t != LUA_TTABLE) return wrong_type(L, idx, n, err);
        luaL_checkstack(L, 4, "avro");
        return write_record(L, idx, n, w, depth, err);
    case AVRO_KIND_UNION: break; /* above */
    }
    return 0;
}

int avro_write_value(lua_State *L, int idx, struct avro_tree *t, struct buf *out, struct rn_err *err)
{
    idx = lua_absindex(L, idx);
    int top = lua_gettop(L);
    size_t len = out->len;
    luaL_checkstack(L, 8, "avro");
    avro_tree_keys(L, t);
    struct wr w = {out, top + 1};
    int rc = write_value(L, idx, t->root, &w, 0, err);
    lua_settop(L, top);
    if (rc) {
        out->len = len;
        if (out->data) out->data[len] = '\0';
    }
    return rc;
}
