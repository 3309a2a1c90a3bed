/* avro_lua.c: Avro values (libavro's avro_value_t) to Lua values and back, by the mapping the
 * README's Avro section documents: null is nil (an absent field; json.null inside arrays),
 * records and maps are tables, arrays sequences, enums their symbol, bytes and fixed strings,
 * unions the branch's value; date is "YYYY-MM-DD", decimal a string of its digits ("-12.50"),
 * timestamps and times integers in their unit, uuid a string.
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

static int push_value(lua_State *L, const struct avro_node *n, avro_value_t *v, int depth, struct rn_err *err)
{
    if (depth > AVRO_MAX_DEPTH) return rn_fail(err, "values nested deeper than %d", AVRO_MAX_DEPTH);
    luaL_checkstack(L, 4, "avro");
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
    case AVRO_KIND_ENUM: {
        int symbol = 0;
        rc = avro_value_get_enum(v, &symbol);
        if (rc || symbol < 0 || (size_t)symbol >= n->symbol_count)
            return rn_fail(err, "enum %s: symbol %d is not in the reader's schema", n->name, symbol);
        lua_pushstring(L, n->symbols[symbol]);
        break;
    }
    case AVRO_KIND_UNION: {
        int branch = 0;
        avro_value_t b;
        if (avro_value_get_discriminant(v, &branch) || branch < 0 || (size_t)branch >= n->branch_count ||
            avro_value_get_current_branch(v, &b))
            return rn_fail(err, "a union without a branch: %s", avro_strerror());
        return push_value(L, n->branches[branch], &b, depth + 1, err);
    }
    case AVRO_KIND_ARRAY:
    case AVRO_KIND_MAP: {
        size_t size = 0;
        avro_value_get_size(v, &size);
        int is_array = n->kind == AVRO_KIND_ARRAY;
        lua_createtable(L, is_array ? (int)size : 0, is_array ? 0 : (int)size);
        for (size_t i = 0; i < size; i++) {
            avro_value_t item;
            const char *key = NULL;
            if (avro_value_get_by_index(v, i, &item, &key)) return rn_fail(err, "item %zu: %s", i, avro_strerror());
            if (push_value(L, n->items, &item, depth + 1, err)) {
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
        lua_createtable(L, 0, (int)n->field_count);
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
                push_default(L, f->type, f->default_value);
            } else if (push_value(L, f->type, &field, depth + 1, err)) {
                lua_pop(L, 1);
                return rn_wrap(err, "field '%s'", f->name);
            }
            lua_setfield(L, -2, f->name);
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

int avro_push_value(lua_State *L, const struct avro_node *n, avro_value_t *v, struct rn_err *err)
{
    return push_value(L, n, v, 0, err);
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

static int library_failed(struct rn_err *err) { return rn_fail(err, "libavro: %s", avro_strerror()); }

static int fill(lua_State *L, int idx, const struct avro_node *n, avro_value_t *v, int depth, struct rn_err *err);

static int fill_record(lua_State *L, int idx, const struct avro_node *n, avro_value_t *v, int depth, struct rn_err *err)
{
    for (size_t i = 0; i < n->field_count; i++) {
        const struct avro_field *f = &n->fields[i];
        avro_value_t field;
        if (avro_value_get_by_index(v, i, &field, NULL)) return library_failed(err);
        lua_getfield(L, idx, f->name);
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
        int rc = fill(L, lua_gettop(L), f->type, &field, depth + 1, err);
        lua_pop(L, 1);
        if (rc) return rn_wrap(err, "field '%s'", f->name);
    }
    return 0;
}

static int fill(lua_State *L, int idx, const struct avro_node *n, avro_value_t *v, int depth, struct rn_err *err)
{
    if (depth > AVRO_MAX_DEPTH) return rn_fail(err, "values nested deeper than %d", AVRO_MAX_DEPTH);
    luaL_checkstack(L, 4, "avro");
    if (n->kind == AVRO_KIND_UNION) {
        for (size_t i = 0; i < n->branch_count; i++) {
            if (!accepts(L, idx, n->branches[i])) continue;
            avro_value_t branch;
            if (avro_value_set_branch(v, (int)i, &branch)) return library_failed(err);
            return fill(L, idx, n->branches[i], &branch, depth + 1, err);
        }
        return wrong_type(L, idx, n, err);
    }
    if (n->kind != AVRO_KIND_NULL && is_nil(L, idx)) return wrong_type(L, idx, n, err);
    int t = lua_type(L, idx);
    int rc = 0;
    switch (n->kind) {
    case AVRO_KIND_NULL:
        if (!is_nil(L, idx)) return wrong_type(L, idx, n, err);
        rc = avro_value_set_null(v);
        break;
    case AVRO_KIND_BOOLEAN:
        if (t != LUA_TBOOLEAN) return wrong_type(L, idx, n, err);
        rc = avro_value_set_boolean(v, lua_toboolean(L, idx));
        break;
    case AVRO_KIND_INT: {
        if (n->logical == AVRO_LOGICAL_DATE && t == LUA_TSTRING) {
            size_t len;
            const char *s = lua_tolstring(L, idx, &len);
            int64_t days;
            if (parse_date(s, len, &days) || days < INT32_MIN || days > INT32_MAX)
                return rn_fail(err, "'%s' is not a date (YYYY-MM-DD)", s);
            rc = avro_value_set_int(v, (int32_t)days);
            break;
        }
        lua_Integer i = 0;
        if (lua_isinteger(L, idx)) i = lua_tointeger(L, idx);
        else if (!(t == LUA_TNUMBER && lua_numbertointeger(lua_tonumber(L, idx), &i))) return wrong_type(L, idx, n, err);
        if (i < INT32_MIN || i > INT32_MAX) return rn_fail(err, "%lld does not fit int (32 bits)", (long long)i);
        rc = avro_value_set_int(v, (int32_t)i);
        break;
    }
    case AVRO_KIND_LONG: {
        lua_Integer i = 0;
        if (lua_isinteger(L, idx)) i = lua_tointeger(L, idx);
        else if (!(t == LUA_TNUMBER && lua_numbertointeger(lua_tonumber(L, idx), &i))) return wrong_type(L, idx, n, err);
        rc = avro_value_set_long(v, (int64_t)i);
        break;
    }
    case AVRO_KIND_FLOAT:
    case AVRO_KIND_DOUBLE:
        if (t != LUA_TNUMBER) return wrong_type(L, idx, n, err);
        rc = n->kind == AVRO_KIND_FLOAT ? avro_value_set_float(v, (float)lua_tonumber(L, idx))
                                        : avro_value_set_double(v, lua_tonumber(L, idx));
        break;
    case AVRO_KIND_STRING: {
        if (t != LUA_TSTRING) return wrong_type(L, idx, n, err);
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        if (n->logical == AVRO_LOGICAL_UUID && !is_uuid(s, len)) return rn_fail(err, "'%.60s' is not a UUID", s);
        if (!rn_utf8_valid(s, len, NULL)) return rn_fail(err, "the string is not valid UTF-8");
        rc = avro_value_set_string_len(v, s, len + 1);
        break;
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
            rc = avro_value_set_fixed(v, (void *)s, len);
        } else {
            rc = avro_value_set_bytes(v, (void *)s, len);
        }
        break;
    }
    case AVRO_KIND_ENUM: {
        if (t != LUA_TSTRING) return wrong_type(L, idx, n, err);
        const char *s = lua_tostring(L, idx);
        for (size_t i = 0; i < n->symbol_count; i++)
            if (strcmp(n->symbols[i], s) == 0) return avro_value_set_enum(v, (int)i) ? library_failed(err) : 0;
        return rn_fail(err, "'%.60s' is not a symbol of enum %s", s, n->name);
    }
    case AVRO_KIND_ARRAY: {
        if (t != LUA_TTABLE) return wrong_type(L, idx, n, err);
        lua_Integer count = (lua_Integer)lua_rawlen(L, idx);
        for (lua_Integer i = 1; i <= count; i++) {
            avro_value_t item;
            if (avro_value_append(v, &item, NULL)) return library_failed(err);
            lua_rawgeti(L, idx, i);
            int frc = fill(L, lua_gettop(L), n->items, &item, depth + 1, err);
            lua_pop(L, 1);
            if (frc) return rn_wrap(err, "item %lld", (long long)i);
        }
        break;
    }
    case AVRO_KIND_MAP: {
        if (t != LUA_TTABLE) return wrong_type(L, idx, n, err);
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            if (lua_type(L, -2) != LUA_TSTRING) {
                rn_fail(err, "a map's keys must be strings, not %s", lua_kind(L, -2));
                lua_pop(L, 2);
                return -1;
            }
            const char *key = lua_tostring(L, -2);
            avro_value_t item;
            if (avro_value_add(v, key, &item, NULL, NULL)) {
                lua_pop(L, 2);
                return library_failed(err);
            }
            if (fill(L, lua_gettop(L), n->items, &item, depth + 1, err)) {
                rn_wrap(err, "key '%.60s'", key);
                lua_pop(L, 2);
                return -1;
            }
            lua_pop(L, 1);
        }
        break;
    }
    case AVRO_KIND_RECORD:
        if (t != LUA_TTABLE) return wrong_type(L, idx, n, err);
        return fill_record(L, idx, n, v, depth, err);
    case AVRO_KIND_UNION: break; /* above */
    }
    return rc ? library_failed(err) : 0;
}

int avro_fill_value(lua_State *L, int idx, const struct avro_node *n, avro_value_t *v, struct rn_err *err)
{
    return fill(L, lua_absindex(L, idx), n, v, 0, err);
}
