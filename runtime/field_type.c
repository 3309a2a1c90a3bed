/* field_type.c: converting text fields to their declared types (see field_type.h). */
#include "field_type.h"

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

int field_type_push(lua_State *L, enum field_type type, const char *s, size_t n)
{
    char *end;
    if (type == FT_STRING) {
        lua_pushlstring(L, s, n);
        return 0;
    }
    if (n == 0) {
        lua_pushnil(L);
        return 0;
    }
    errno = 0;
    if (type == FT_INTEGER) {
        long long v = strtoll(s, &end, 10);
        if (errno || end != s + n) return -1;
        lua_pushinteger(L, v);
        return 0;
    }
    if (type == FT_NUMBER) {
        double v = strtod(s, &end);
        if (errno == ERANGE || end != s + n || !isfinite(v)) return -1;
        lua_pushnumber(L, v);
        return 0;
    }
    if (!strcasecmp(s, "true") || !strcmp(s, "1") || !strcasecmp(s, "yes") || !strcasecmp(s, "t")) lua_pushboolean(L, 1);
    else if (!strcasecmp(s, "false") || !strcmp(s, "0") || !strcasecmp(s, "no") || !strcasecmp(s, "f")) lua_pushboolean(L, 0);
    else return -1;
    return 0;
}

int field_type_no_space(unsigned char c)
{
    (void)c;
    return 0;
}
