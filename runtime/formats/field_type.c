/* field_type.c: converting text fields to their declared types (see field_type.h). */
#include "formats/field_type.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int field_type_parse(const char *name, enum field_type *type)
{
    if (strcmp(name, "string") == 0) *type = FT_STRING;
    else if (strcmp(name, "integer") == 0) *type = FT_INTEGER;
    else if (strcmp(name, "number") == 0) *type = FT_NUMBER;
    else if (strcmp(name, "boolean") == 0) *type = FT_BOOLEAN;
    else return -1;
    return 0;
}

const char *field_type_name(enum field_type type)
{
    static const char *const names[] = {"string", "integer", "number", "boolean"};
    return names[type];
}

int field_type_convert(enum field_type type, const char *s, size_t n, struct field_value *out)
{
    char *end;
    if (type == FT_STRING) {
        out->kind = FV_STRING;
        return 0;
    }
    if (n == 0) {
        out->kind = FV_NIL;
        return 0;
    }
    if (type == FT_INTEGER && n <= 18) { /* the common case by hand: strtoll was a visible cost */
        const char *p = s, *stop = s + n;
        int negative = *p == '-';
        if (*p == '-' || *p == '+') p++;
        if (p < stop) {
            long long v = 0;
            while (p < stop && *p >= '0' && *p <= '9') v = v * 10 + (*p++ - '0');
            if (p == stop) {
                out->kind = FV_INTEGER;
                out->as.integer = negative ? -v : v;
                return 0;
            }
        }
    }
    errno = 0;
    if (type == FT_INTEGER) {
        long long v = strtoll(s, &end, 10);
        if (errno || end != s + n) return -1;
        out->kind = FV_INTEGER;
        out->as.integer = v;
        return 0;
    }
    if (type == FT_NUMBER) {
        double v = strtod(s, &end);
        if (errno == ERANGE || end != s + n || !isfinite(v)) return -1;
        out->kind = FV_NUMBER;
        out->as.number = v;
        return 0;
    }
    out->kind = FV_BOOLEAN;
    if (!strcasecmp(s, "true") || !strcmp(s, "1") || !strcasecmp(s, "yes") || !strcasecmp(s, "t")) out->as.boolean = 1;
    else if (!strcasecmp(s, "false") || !strcmp(s, "0") || !strcasecmp(s, "no") || !strcasecmp(s, "f")) out->as.boolean = 0;
    else return -1;
    return 0;
}

int field_type_push(lua_State *L, enum field_type type, const char *s, size_t n)
{
    struct field_value v;
    if (field_type_convert(type, s, n, &v)) return -1;
    switch (v.kind) {
    case FV_NIL: lua_pushnil(L); break;
    case FV_STRING: lua_pushlstring(L, s, n); break;
    case FV_INTEGER: lua_pushinteger(L, v.as.integer); break;
    case FV_NUMBER: lua_pushnumber(L, v.as.number); break;
    case FV_BOOLEAN: lua_pushboolean(L, v.as.boolean); break;
    }
    return 0;
}

int field_type_no_space(unsigned char c)
{
    (void)c;
    return 0;
}
