/* options.c: checking job-script options against their declarations (see options.h). */
#include "lua/options.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

const char *opt_type_name(enum opt_type type)
{
    switch (type) {
    case OPT_STRING: return "string";
    case OPT_INTEGER: return "integer";
    case OPT_NUMBER: return "number";
    case OPT_BOOLEAN: return "boolean";
    case OPT_DURATION: return "duration";
    case OPT_TABLE: return "table";
    case OPT_FUNCTION: return "function";
    case OPT_STRING_OR_FUNCTION: return "string|function";
    case OPT_STRING_OR_LIST: return "string|list";
    case OPT_INTEGER_OR_STRING: return "integer|string";
    case OPT_SINK: return "sink";
    case OPT_SINK_LIST: return "sink|list";
    case OPT_SOURCE: return "source";
    case OPT_MODEL: return "model";
    case OPT_ANY: return "any";
    }
    return "?";
}

/* Levenshtein distance, small strings only (option names). */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return 99;
    size_t row[64];
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = diag + cost;
            if (row[j] + 1 < best) best = row[j] + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* The kind tag ("sink", "source", "model") of a declaration value, or NULL. */
static const char *decl_kind(lua_State *L, int idx)
{
    if (lua_type(L, idx) != LUA_TTABLE) return NULL;
    lua_getfield(L, idx, "__kind");
    const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    lua_pop(L, 1);
    return k; /* interned constant strings stay alive via the table */
}

static int is_kind(lua_State *L, int idx, const char *kind)
{
    const char *k = decl_kind(L, idx);
    return k && strcmp(k, kind) == 0;
}

static int type_ok(lua_State *L, int idx, enum opt_type type)
{
    int t = lua_type(L, idx);
    switch (type) {
    case OPT_STRING: return t == LUA_TSTRING;
    case OPT_INTEGER: return lua_isinteger(L, idx) ||
                             (t == LUA_TNUMBER && lua_tonumber(L, idx) == (lua_Number)(int64_t)lua_tonumber(L, idx));
    case OPT_NUMBER: return t == LUA_TNUMBER;
    case OPT_BOOLEAN: return t == LUA_TBOOLEAN;
    case OPT_DURATION: {
        if (t == LUA_TNUMBER) return lua_tonumber(L, idx) >= 0;
        int64_t ms;
        return t == LUA_TSTRING && rn_parse_duration_ms(lua_tostring(L, idx), &ms) == 0;
    }
    case OPT_TABLE: return t == LUA_TTABLE && !decl_kind(L, idx);
    case OPT_FUNCTION: return t == LUA_TFUNCTION;
    case OPT_STRING_OR_FUNCTION: return t == LUA_TSTRING || t == LUA_TFUNCTION;
    case OPT_STRING_OR_LIST: {
        if (t == LUA_TSTRING) return 1;
        if (t != LUA_TTABLE) return 0;
        lua_Integer n = luaL_len(L, idx);
        if (n == 0) return 0;
        for (lua_Integer i = 1; i <= n; i++) {
            int it = lua_geti(L, idx, i);
            lua_pop(L, 1);
            if (it != LUA_TSTRING) return 0;
        }
        return 1;
    }
    case OPT_INTEGER_OR_STRING: return t == LUA_TSTRING || lua_isinteger(L, idx);
    case OPT_SINK: return is_kind(L, idx, "sink");
    case OPT_SINK_LIST: {
        if (is_kind(L, idx, "sink")) return 1;
        if (t != LUA_TTABLE || decl_kind(L, idx)) return 0;
        lua_Integer n = luaL_len(L, idx);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_geti(L, idx, i);
            int ok = is_kind(L, -1, "sink");
            lua_pop(L, 1);
            if (!ok) return 0;
        }
        return 1;
    }
    case OPT_SOURCE: return is_kind(L, idx, "source");
    case OPT_MODEL: return is_kind(L, idx, "model");
    case OPT_ANY: return 1;
    }
    return 0;
}

static const char *describe(lua_State *L, int idx)
{
    const char *k = decl_kind(L, idx);
    if (k) return k;
    return luaL_typename(L, idx);
}

int options_check(lua_State *L, int tbl, const struct option_spec *spec, const char *what,
                  const char *where, struct rn_err *err)
{
    tbl = lua_absindex(L, tbl);
    if (lua_type(L, tbl) != LUA_TTABLE)
        return rn_fail(err, "%s: %s expects a table of options, got %s", where, what, luaL_typename(L, tbl));
    /* Unknown keys first: a typo is the most likely mistake. */
    lua_pushnil(L);
    while (lua_next(L, tbl)) {
        if (lua_type(L, -2) != LUA_TSTRING) {
            lua_pop(L, 2);
            return rn_fail(err, "%s: %s: options must be named (name = value); found a positional value", where, what);
        }
        const char *key = lua_tostring(L, -2);
        const struct option_spec *found = NULL;
        for (const struct option_spec *o = spec; o->name; o++)
            if (strcmp(o->name, key) == 0) { found = o; break; }
        if (!found) {
            const char *best = NULL;
            size_t best_d = 3;
            for (const struct option_spec *o = spec; o->name; o++) {
                size_t d = edit_distance(key, o->name);
                if (d < best_d) { best_d = d; best = o->name; }
            }
            char known[512] = "";
            size_t used = 0;
            for (const struct option_spec *o = spec; o->name && used < sizeof known - 40; o++)
                used += (size_t)snprintf(known + used, sizeof known - used, "%s%s", used ? ", " : "", o->name);
            rn_fail(err, "%s: %s: unknown option '%s'%s%s%s (known: %s)", where, what, key,
                    best ? " (did you mean '" : "", best ? best : "", best ? "'?)" : "", known);
            lua_pop(L, 2);
            return -1;
        }
        if (!type_ok(L, -1, found->type)) {
            rn_fail(err, "%s: %s: option '%s' must be a %s, got %s", where, what, key,
                    opt_type_name(found->type), describe(L, -1));
            lua_pop(L, 2);
            return -1;
        }
        lua_pop(L, 1);
    }
    for (const struct option_spec *o = spec; o->name; o++) {
        if (!o->required) continue;
        lua_getfield(L, tbl, o->name);
        int missing = lua_isnil(L, -1);
        lua_pop(L, 1);
        if (missing) return rn_fail(err, "%s: %s: missing required option '%s' (%s)", where, what, o->name, o->help);
    }
    return 0;
}

void options_print(const struct option_spec *spec, const char *what, const char *summary)
{
    printf("%s: %s\n\n", what, summary);
    printf("  %-16s %-16s %-10s %s\n", "option", "type", "default", "description");
    for (const struct option_spec *o = spec; o->name; o++)
        printf("  %-16s %-16s %-10s %s%s\n", o->name, opt_type_name(o->type),
               o->default_text ? o->default_text : "-", o->required ? "(required) " : "", o->help);
}

int opt_push(lua_State *L, int tbl, const char *name)
{
    lua_getfield(L, tbl, name);
    if (lua_isnil(L, -1)) { lua_pop(L, 1); return 0; }
    return 1;
}

char **opt_string_list(lua_State *L, int tbl, const char *name, size_t *count)
{
    *count = 0;
    if (!opt_push(L, tbl, name)) return NULL;
    size_t n = lua_type(L, -1) == LUA_TSTRING ? 1 : (size_t)luaL_len(L, -1);
    char **list = rn_calloc(n, sizeof *list);
    for (size_t i = 0; i < n; i++) {
        if (lua_type(L, -1) == LUA_TSTRING) lua_pushvalue(L, -1);
        else lua_geti(L, -1, (lua_Integer)i + 1);
        list[i] = rn_strdup(lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    *count = n;
    return list;
}

const char *opt_string(lua_State *L, int tbl, const char *name, const char *def)
{
    lua_getfield(L, tbl, name);
    const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : def;
    lua_pop(L, 1); /* the string stays alive: the options table still references it */
    return s;
}

int64_t opt_integer(lua_State *L, int tbl, const char *name, int64_t def)
{
    lua_getfield(L, tbl, name);
    int64_t v = lua_type(L, -1) == LUA_TNUMBER ? (int64_t)lua_tonumber(L, -1) : def;
    if (lua_isinteger(L, -1)) v = lua_tointeger(L, -1);
    lua_pop(L, 1);
    return v;
}

double opt_number(lua_State *L, int tbl, const char *name, double def)
{
    lua_getfield(L, tbl, name);
    double v = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : def;
    lua_pop(L, 1);
    return v;
}

int opt_boolean(lua_State *L, int tbl, const char *name, int def)
{
    lua_getfield(L, tbl, name);
    int v = lua_type(L, -1) == LUA_TBOOLEAN ? lua_toboolean(L, -1) : def;
    lua_pop(L, 1);
    return v;
}

int64_t opt_duration_ms(lua_State *L, int tbl, const char *name, int64_t def)
{
    lua_getfield(L, tbl, name);
    int64_t v = def;
    if (lua_type(L, -1) == LUA_TNUMBER) v = (int64_t)(lua_tonumber(L, -1) * 1000 + 0.5);
    else if (lua_type(L, -1) == LUA_TSTRING) rn_parse_duration_ms(lua_tostring(L, -1), &v);
    lua_pop(L, 1);
    return v;
}

static void put_cell(const char *s)
{
    for (; *s; s++) {
        if (*s == '|') fputs("\\|", stdout);
        else putchar(*s);
    }
}

void options_print_markdown(const struct option_spec *spec, const char *what, const char *summary)
{
    printf("#### `%s{...}`\n\n%s\n\n| option | type | default | description |\n|---|---|---|---|\n", what, summary);
    for (const struct option_spec *o = spec; o->name; o++) {
        printf("| `%s` | ", o->name);
        put_cell(opt_type_name(o->type));
        fputs(" | ", stdout);
        put_cell(o->default_text ? o->default_text : "");
        fputs(" | ", stdout);
        if (o->required) fputs("**required.** ", stdout);
        put_cell(o->help);
        fputs(" |\n", stdout);
    }
    printf("\n");
}
