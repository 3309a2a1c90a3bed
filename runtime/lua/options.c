/* options.c: checking job-script options against their declarations, and printing them
 * (see options.h). A check walks the spec and the script's table together and builds the
 * checked copy as it goes; the first value at fault ends it, named by its path. */
#include "lua/options.h"

#include <lauxlib.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lua/job.h"

const char *opt_type_name(enum opt_type type)
{
    switch (type) {
    case OPT_STRING: return "string";
    case OPT_INTEGER: return "integer";
    case OPT_NUMBER: return "number";
    case OPT_BOOLEAN: return "boolean";
    case OPT_DURATION: return "duration";
    case OPT_SIZE: return "size";
    case OPT_BYTE: return "byte";
    case OPT_ENUM: return "enum";
    case OPT_SCALAR: return "string|number|boolean";
    case OPT_TABLE: return "table";
    case OPT_NESTED: return "table";
    case OPT_MAP: return "map";
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

/* ---- sizes ---- */

int opt_parse_size(const char *text, int64_t *bytes)
{
    char *end;
    double v = strtod(text, &end);
    if (end == text || !(v >= 0) || !isfinite(v)) return -1;
    while (*end == ' ') end++;
    static const struct { const char *unit; double scale; } units[] = {
        {"", 1}, {"b", 1}, {"kb", 1024.0}, {"kib", 1024.0}, {"mb", 1048576.0}, {"mib", 1048576.0},
        {"gb", 1073741824.0}, {"gib", 1073741824.0}, {"tb", 1099511627776.0}, {"tib", 1099511627776.0},
    };
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcasecmp(end, units[i].unit) != 0) continue;
        double b = v * units[i].scale;
        if (b >= 9.2e18) return -1;
        *bytes = (int64_t)(b + 0.5);
        return 0;
    }
    return -1;
}

void opt_format_size(char *out, size_t n, int64_t bytes)
{
    static const struct { int64_t scale; const char *unit; } units[] = {
        {1LL << 40, "TB"}, {1LL << 30, "GB"}, {1LL << 20, "MB"}, {1LL << 10, "KB"},
    };
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (bytes >= units[i].scale && bytes % units[i].scale == 0) {
            snprintf(out, n, "%lld %s", (long long)(bytes / units[i].scale), units[i].unit);
            return;
        }
    if (bytes >= 10 << 20) snprintf(out, n, "%.1f MB", (double)bytes / (1 << 20));
    else snprintf(out, n, "%lld bytes", (long long)bytes);
}

/* ---- checking ---- */

/* Edit distance counting a swap of two neighbours as one edit ("mni" is one from "min"),
 * small strings only (option names and choices). */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return 99;
    unsigned char d[64][64];
    for (size_t i = 0; i <= la; i++) d[i][0] = (unsigned char)i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = (unsigned char)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            unsigned best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1u < best) best = d[i - 1][j] + 1u;
            if (d[i][j - 1] + 1u < best) best = d[i][j - 1] + 1u;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1u < best)
                best = d[i - 2][j - 2] + 1u;
            d[i][j] = (unsigned char)best;
        }
    return d[la][lb];
}

/* The one of names[0..count) closest to key, or NULL when none is close enough to suggest:
 * a few edits away, or key is (nearly) the start of it ("int" for integer, "classify"). */
static const char *closest(const char *key, const char *const *names, size_t count)
{
    const char *best = NULL;
    size_t len = strlen(key), best_d = len < 4 ? 2 : 3;
    for (size_t i = 0; i < count; i++) {
        size_t d = edit_distance(key, names[i]);
        if (d < best_d) { best_d = d; best = names[i]; }
    }
    if (best || len < 3) return best;
    for (size_t i = 0; i < count; i++) {
        size_t common = 0;
        while (key[common] && key[common] == names[i][common]) common++;
        if (common + 1 >= len) return names[i];
    }
    return NULL;
}

const char *options_closest(const char *key, const char *const *names, size_t count)
{
    return closest(key, names, count);
}

struct check {
    lua_State *L;
    const char *what;     /* "source.csv" */
    const char *where;    /* "jobs/x.lua:12" */
    struct rn_err *err;
};

static int fail(struct check *c, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct check *c, const char *path, const char *fmt, ...)
{
    char reason[sizeof c->err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    if (*path) rn_fail(c->err, "%s: %s: %s: %s", c->where, c->what, path, reason);
    else rn_fail(c->err, "%s: %s: %s", c->where, c->what, reason);
    return -1;
}

/* path + ".key", or path + "[\"key\"]" when key is not a plain name. */
static void join_path(char *out, size_t n, const char *path, const char *key)
{
    int plain = *key && !(*key >= '0' && *key <= '9');
    for (const char *k = key; *k; k++)
        if (!((*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') || (*k >= '0' && *k <= '9') || *k == '_')) plain = 0;
    if (plain) snprintf(out, n, "%s%s%s", path, *path ? "." : "", key);
    else snprintf(out, n, "%s[\"%.100s\"]", path, key);
}

static int is_secret(lua_State *L, int idx)
{
    return lua_type(L, idx) == LUA_TUSERDATA && luajob_secret_value(L, idx) != NULL;
}

static int is_decl(lua_State *L, int idx, const char *kind)
{
    const char *k = luajob_decl_kind(L, idx);
    return k && strcmp(k, kind) == 0;
}

/* What the script gave, for "expected X, got Y". */
static const char *describe(lua_State *L, int idx, char *out, size_t n)
{
    if (luajob_decl_kind(L, idx)) {
        snprintf(out, n, "%s.%s", luajob_decl_kind(L, idx), luajob_decl_type(L, idx));
        if (strcmp(luajob_decl_kind(L, idx), "job") == 0) snprintf(out, n, "a job");
    } else if (is_secret(L, idx)) {
        snprintf(out, n, "a secret");
    } else if (lua_type(L, idx) == LUA_TNUMBER) {
        char num[RN_DOUBLE_MAX];
        if (lua_isinteger(L, idx)) snprintf(num, sizeof num, "%lld", (long long)lua_tointeger(L, idx));
        else rn_format_double(num, lua_tonumber(L, idx));
        snprintf(out, n, "%s", num);
    } else if (lua_type(L, idx) == LUA_TSTRING) {
        snprintf(out, n, "\"%.60s\"", lua_tostring(L, idx));
    } else {
        snprintf(out, n, "%s", luaL_typename(L, idx));
    }
    return out;
}

/* The value a spec expects, for "expected X". */
/* A nested option's short form takes a string, or true/false when the field it names is a
 * boolean (batch = true stands for { enabled = true }). */
static int short_form_boolean(const struct option_spec *o)
{
    for (const struct option_spec *f = o->fields; f && f->name; f++)
        if (strcmp(f->name, o->short_form) == 0) return f->type == OPT_BOOLEAN;
    return 0;
}

static const char *expected(const struct option_spec *o, char *out, size_t n)
{
    const char *s = "?";
    switch (o->type) {
    case OPT_STRING: s = o->secret ? "a string or secret(\"NAME\")" : "a string"; break;
    case OPT_INTEGER: s = "an integer"; break;
    case OPT_NUMBER: s = "a number"; break;
    case OPT_BOOLEAN: s = "true or false"; break;
    case OPT_DURATION: s = "a duration like \"30s\", \"250ms\" or a number of seconds"; break;
    case OPT_SIZE: s = "a size like \"256MB\", \"1GB\" or a number of bytes"; break;
    case OPT_BYTE: s = "a string of one byte"; break;
    case OPT_ENUM: s = "a string"; break;
    case OPT_SCALAR: s = o->secret ? "a string, number, boolean or secret(\"NAME\")" : "a string, number or boolean"; break;
    case OPT_TABLE: s = "a table"; break;
    case OPT_NESTED:
        s = !o->short_form ? "a table of options" : short_form_boolean(o) ? "true, false or a table" : "a table or a string";
        break;
    case OPT_MAP: s = "a table { name = value, ... }"; break;
    case OPT_FUNCTION: s = "a function"; break;
    case OPT_STRING_OR_FUNCTION: s = "a string or a function"; break;
    case OPT_STRING_OR_LIST: s = "a string or a list of strings"; break;
    case OPT_INTEGER_OR_STRING: s = "an integer or a string"; break;
    case OPT_SINK: s = "a sink (sink.jsonl{...}, ...)"; break;
    case OPT_SINK_LIST: s = "a sink or a list of sinks (sink.jsonl{...}, ...)"; break;
    case OPT_SOURCE: s = "a source (source.csv{...}, source.kafka{...})"; break;
    case OPT_MODEL: s = "a model (model.openai{...})"; break;
    case OPT_ANY: s = "any value"; break;
    }
    snprintf(out, n, "%s", s);
    return out;
}

static int fail_type(struct check *c, const struct option_spec *o, int idx, const char *path)
{
    char want[128], got[96];
    return fail(c, path, "expected %s, got %s", expected(o, want, sizeof want), describe(c->L, idx, got, sizeof got));
}

/* A bound as the script would write it. */
static void format_bound(const struct option_spec *o, double v, char *out, size_t n)
{
    char num[RN_DOUBLE_MAX];
    if (o->type == OPT_DURATION) {
        rn_format_double(num, v / 1000);
        snprintf(out, n, "%ss", num);
    } else if (o->type == OPT_SIZE) {
        opt_format_size(out, n, (int64_t)v);
    } else {
        rn_format_double(num, v);
        snprintf(out, n, "%s", num);
    }
}

/* v (in the spec's unit) within o's bounds; shown is the value as the script gave it. */
static int check_bounds(struct check *c, const struct option_spec *o, double v, const char *shown, const char *path)
{
    char lo[64], hi[64];
    format_bound(o, o->min, lo, sizeof lo);
    format_bound(o, o->max, hi, sizeof hi);
    int below = (o->bounds & OPT_MIN) && ((o->bounds & OPT_MIN_EXCLUSIVE) ? !(v > o->min) : !(v >= o->min));
    int above = (o->bounds & OPT_MAX) && !(v <= o->max);
    if (!below && !above && !isnan(v)) return 0;
    int both = (o->bounds & OPT_MIN) && (o->bounds & OPT_MAX);
    if (both && (o->bounds & OPT_MIN_EXCLUSIVE))
        return fail(c, path, "must be greater than %s and at most %s, got %s", lo, hi, shown);
    if (both) return fail(c, path, "must be from %s to %s, got %s", lo, hi, shown);
    if (o->bounds & OPT_MIN_EXCLUSIVE) return fail(c, path, "must be greater than %s, got %s", lo, shown);
    if (o->bounds & OPT_MIN) return fail(c, path, "must be at least %s, got %s", lo, shown);
    if (o->bounds & OPT_MAX) return fail(c, path, "must be at most %s, got %s", hi, shown);
    return fail(c, path, "must be a number, got %s", shown);
}

static size_t count_choices(const char *const *choices)
{
    size_t n = 0;
    while (choices && choices[n]) n++;
    return n;
}

static int check_choice(struct check *c, const struct option_spec *o, const char *s, const char *path)
{
    size_t n = count_choices(o->choices);
    for (size_t i = 0; i < n; i++)
        if (strcmp(o->choices[i], s) == 0) return 0;
    char list[256] = "";
    size_t used = 0;
    for (size_t i = 0; i < n && used < sizeof list - 1; i++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", o->choices[i]);
    const char *near = closest(s, o->choices, n);
    if (near) return fail(c, path, "unknown value \"%.60s\"; did you mean %s? (one of %s)", s, near, list);
    return fail(c, path, "unknown value \"%.60s\" (one of %s)", s, list);
}

static int check_table(struct check *c, const struct option_spec *spec, int tbl, const char *path);

/* A number that is an integer, or a string of digits (a --set param), as an integer. */
static int integer_value(lua_State *L, int idx, lua_Integer *out)
{
    if (lua_isinteger(L, idx)) { *out = lua_tointeger(L, idx); return 1; }
    if (lua_type(L, idx) == LUA_TNUMBER) {
        lua_Number v = lua_tonumber(L, idx);
        if (v >= -9.2e18 && v <= 9.2e18 && v == floor(v)) { *out = (lua_Integer)v; return 1; }
        return 0;
    }
    if (lua_type(L, idx) == LUA_TSTRING) {
        const char *s = lua_tostring(L, idx);
        size_t n = strlen(s);
        if (n == 0 || n > 18 || strspn(s, "0123456789") != n) return 0;
        *out = (lua_Integer)strtoll(s, NULL, 10);
        return 1;
    }
    return 0;
}

/* A list of declarations of kind `kind`, copied. */
static int check_decl_list(struct check *c, const struct option_spec *o, int idx, const char *kind, const char *path)
{
    lua_State *L = c->L;
    if (is_decl(L, idx, kind)) {
        lua_createtable(L, 1, 0);
        lua_pushvalue(L, idx);
        lua_rawseti(L, -2, 1);
        return 0;
    }
    if (lua_type(L, idx) != LUA_TTABLE) return fail_type(c, o, idx, path);
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    if (n == 0) return fail(c, path, "expected at least one %s, got an empty list", kind);
    lua_createtable(L, (int)n, 0);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i);
        if (!is_decl(L, -1, kind)) {
            char item[200], got[96];
            snprintf(item, sizeof item, "%s[%lld]", path, (long long)i);
            describe(L, -1, got, sizeof got);
            lua_pop(L, 2);
            return fail(c, item, "expected a %s (%s.X{...}), got %s", kind, kind, got);
        }
        lua_rawseti(L, -2, i);
    }
    return 0;
}

/* Check the value at idx against o and push its checked form. -1, nothing pushed, on failure. */
static int check_value(struct check *c, const struct option_spec *o, int idx, const char *path)
{
    lua_State *L = c->L;
    idx = lua_absindex(L, idx);
    if (!lua_checkstack(L, 8)) return fail(c, path, "too deeply nested");
    int t = lua_type(L, idx);
    char shown[96];
    switch (o->type) {
    case OPT_STRING:
        if (t != LUA_TSTRING && !(o->secret && is_secret(L, idx))) return fail_type(c, o, idx, path);
        lua_pushvalue(L, idx);
        break;
    case OPT_INTEGER: {
        lua_Integer v;
        if (t != LUA_TNUMBER || !integer_value(L, idx, &v)) return fail_type(c, o, idx, path);
        if (o->bounds && check_bounds(c, o, (double)v, describe(L, idx, shown, sizeof shown), path)) return -1;
        lua_pushinteger(L, v);
        break;
    }
    case OPT_NUMBER:
        if (t != LUA_TNUMBER) return fail_type(c, o, idx, path);
        if (o->bounds && check_bounds(c, o, lua_tonumber(L, idx), describe(L, idx, shown, sizeof shown), path)) return -1;
        lua_pushvalue(L, idx);
        break;
    case OPT_BOOLEAN:
        if (t != LUA_TBOOLEAN) return fail_type(c, o, idx, path);
        lua_pushvalue(L, idx);
        break;
    case OPT_DURATION: {
        int64_t ms = 0;
        if (t == LUA_TNUMBER && lua_tonumber(L, idx) >= 0 && lua_tonumber(L, idx) < 9e15) {
            ms = (int64_t)(lua_tonumber(L, idx) * 1000 + 0.5);
        } else if (t == LUA_TSTRING) {
            if (rn_parse_duration_ms(lua_tostring(L, idx), &ms))
                return fail(c, path, "bad duration \"%.60s\" (e.g. \"30s\", \"250ms\", \"2m\")", lua_tostring(L, idx));
        } else {
            return fail_type(c, o, idx, path);
        }
        if (o->bounds && check_bounds(c, o, (double)ms, describe(L, idx, shown, sizeof shown), path)) return -1;
        lua_pushvalue(L, idx);
        break;
    }
    case OPT_SIZE: {
        int64_t bytes = 0;
        lua_Integer v;
        if (t == LUA_TNUMBER && integer_value(L, idx, &v) && v >= 0) {
            bytes = v;
        } else if (t == LUA_TSTRING) {
            if (opt_parse_size(lua_tostring(L, idx), &bytes))
                return fail(c, path, "bad size \"%.60s\" (e.g. \"256MB\", \"1GB\", \"64KB\" or bytes)", lua_tostring(L, idx));
        } else {
            return fail_type(c, o, idx, path);
        }
        if (o->bounds && check_bounds(c, o, (double)bytes, describe(L, idx, shown, sizeof shown), path)) return -1;
        lua_pushinteger(L, (lua_Integer)bytes);
        break;
    }
    case OPT_BYTE: {
        if (t != LUA_TSTRING) return fail_type(c, o, idx, path);
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        if (n == 2 && s[0] == '\\' && s[1] == 't') { s = "\t"; n = 1; }
        if (n != 1) return fail(c, path, "must be one byte, got \"%.60s\" (%zu bytes)", s, n);
        lua_pushlstring(L, s, 1);
        break;
    }
    case OPT_ENUM:
        if (t != LUA_TSTRING) return fail_type(c, o, idx, path);
        if (check_choice(c, o, lua_tostring(L, idx), path)) return -1;
        lua_pushvalue(L, idx);
        break;
    case OPT_SCALAR:
        if (t != LUA_TSTRING && t != LUA_TNUMBER && t != LUA_TBOOLEAN && !(o->secret && is_secret(L, idx)))
            return fail_type(c, o, idx, path);
        lua_pushvalue(L, idx);
        break;
    case OPT_TABLE: /* a copy of the top level, so what was checked is what open() reads */
        if (t != LUA_TTABLE) return fail_type(c, o, idx, path);
        lua_newtable(L);
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, -4);
        }
        break;
    case OPT_NESTED:
        if (o->short_form && (short_form_boolean(o) ? t == LUA_TBOOLEAN : t == LUA_TSTRING)) {
            lua_createtable(L, 0, 1);
            lua_pushvalue(L, idx);
            lua_setfield(L, -2, o->short_form);
            int rc = check_table(c, o->fields, lua_gettop(L), path);
            lua_remove(L, rc ? -1 : -2);
            if (rc) return -1;
            break;
        }
        if (t != LUA_TTABLE) return fail_type(c, o, idx, path);
        if (check_table(c, o->fields, idx, path)) return -1;
        break;
    case OPT_MAP: {
        if (t != LUA_TTABLE) return fail_type(c, o, idx, path);
        lua_newtable(L);
        int out = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            if (lua_type(L, -2) != LUA_TSTRING) {
                lua_pop(L, 3);
                return fail(c, path, "keys must be names (name = value); found a positional value");
            }
            char child[256];
            join_path(child, sizeof child, path, lua_tostring(L, -2));
            if (check_value(c, o->value, -1, child)) {
                lua_pop(L, 3);
                return -1;
            }
            lua_pushvalue(L, -3); /* key */
            lua_insert(L, -2);
            lua_rawset(L, out);
            lua_pop(L, 1);
        }
        break;
    }
    case OPT_FUNCTION:
        if (t != LUA_TFUNCTION) return fail_type(c, o, idx, path);
        lua_pushvalue(L, idx);
        break;
    case OPT_STRING_OR_FUNCTION:
        if (t != LUA_TSTRING && t != LUA_TFUNCTION) return fail_type(c, o, idx, path);
        lua_pushvalue(L, idx);
        break;
    case OPT_STRING_OR_LIST: {
        if (t == LUA_TSTRING) {
            lua_createtable(L, 1, 0);
            lua_pushvalue(L, idx);
            lua_rawseti(L, -2, 1);
            break;
        }
        if (t != LUA_TTABLE) return fail_type(c, o, idx, path);
        lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
        if (n == 0) return fail(c, path, "expected a string or a non-empty list of strings, got an empty table");
        lua_createtable(L, (int)n, 0);
        for (lua_Integer i = 1; i <= n; i++) {
            if (lua_rawgeti(L, idx, i) != LUA_TSTRING) {
                char item[200];
                snprintf(item, sizeof item, "%s[%lld]", path, (long long)i);
                describe(L, -1, shown, sizeof shown);
                lua_pop(L, 2);
                return fail(c, item, "expected a string, got %s", shown);
            }
            lua_rawseti(L, -2, i);
        }
        break;
    }
    case OPT_INTEGER_OR_STRING: {
        lua_Integer v;
        if (integer_value(L, idx, &v)) {
            if (o->bounds && check_bounds(c, o, (double)v, describe(L, idx, shown, sizeof shown), path)) return -1;
            lua_pushinteger(L, v);
        } else if (t == LUA_TSTRING) {
            if (o->choices && check_choice(c, o, lua_tostring(L, idx), path)) return -1;
            lua_pushvalue(L, idx);
        } else {
            return fail_type(c, o, idx, path);
        }
        break;
    }
    case OPT_SINK:
    case OPT_SOURCE:
    case OPT_MODEL: {
        const char *kind = o->type == OPT_SINK ? "sink" : o->type == OPT_SOURCE ? "source" : "model";
        if (!is_decl(L, idx, kind)) return fail_type(c, o, idx, path);
        lua_pushvalue(L, idx);
        break;
    }
    case OPT_SINK_LIST:
        if (check_decl_list(c, o, idx, "sink", path)) return -1;
        break;
    case OPT_ANY:
        lua_pushvalue(L, idx);
        break;
    }
    if (o->check) {
        struct rn_err why;
        if (o->check(L, lua_gettop(L), &why)) {
            lua_pop(L, 1);
            return fail(c, path, "%s", why.msg);
        }
    }
    return 0;
}

/* The default of o as a value (before its check). */
static void push_default(lua_State *L, const struct option_spec *o)
{
    switch (o->type) {
    case OPT_BOOLEAN: lua_pushboolean(L, strcmp(o->default_text, "true") == 0); break;
    case OPT_INTEGER:
    case OPT_NUMBER:
    case OPT_SIZE:
    case OPT_INTEGER_OR_STRING:
        if (lua_stringtonumber(L, o->default_text) == 0) lua_pushstring(L, o->default_text);
        break;
    default: lua_pushstring(L, o->default_text);
    }
}

static int unknown_option(struct check *c, const struct option_spec *spec, const char *key, const char *path)
{
    const char *names[128];
    size_t n = 0;
    for (const struct option_spec *o = spec; o->name && n < 128; o++) names[n++] = o->name;
    const char *near = closest(key, names, n);
    if (near) return fail(c, path, "unknown option; did you mean %s?", near);
    char known[512] = "";
    size_t used = 0;
    for (size_t i = 0; i < n && used < sizeof known - 1; i++)
        used += (size_t)snprintf(known + used, sizeof known - used, "%s%s", i ? ", " : "", names[i]);
    return fail(c, path, "unknown option (known: %s)", known);
}

/* Check the table at tbl against spec; push the checked copy. */
static int check_table(struct check *c, const struct option_spec *spec, int tbl, const char *path)
{
    lua_State *L = c->L;
    tbl = lua_absindex(L, tbl);
    if (!lua_checkstack(L, 8)) return fail(c, path, "too deeply nested");
    size_t count = 0;
    while (spec[count].name) count++;
    lua_createtable(L, 0, (int)count);
    int out = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, tbl)) {
        if (lua_type(L, -2) != LUA_TSTRING) {
            lua_pop(L, 3);
            return fail(c, path, "options must be named (name = value); found a positional value");
        }
        const char *key = lua_tostring(L, -2);
        char child[256];
        join_path(child, sizeof child, path, key);
        const struct option_spec *found = NULL;
        for (const struct option_spec *o = spec; o->name; o++)
            if (strcmp(o->name, key) == 0) { found = o; break; }
        int rc = found ? check_value(c, found, -1, child) : unknown_option(c, spec, key, child);
        if (rc) {
            lua_pop(L, 3);
            return -1;
        }
        lua_setfield(L, out, found->name);
        lua_pop(L, 1);
    }
    for (const struct option_spec *o = spec; o->name; o++) {
        if (lua_getfield(L, out, o->name) != LUA_TNIL) { lua_pop(L, 1); continue; }
        lua_pop(L, 1);
        char child[256];
        join_path(child, sizeof child, path, o->name);
        if (o->required) {
            lua_pop(L, 1);
            return fail(c, child, "required option is missing (%s)", o->help);
        }
        if (!o->default_text) continue;
        push_default(L, o);
        int rc = check_value(c, o, -1, child);
        lua_remove(L, rc ? -1 : -2);
        if (rc) { /* a default that fails its own spec: tests/unit/test_options.c checks every plugin's */
            lua_pop(L, 1);
            return -1;
        }
        lua_setfield(L, out, o->name);
    }
    return 0;
}

static const char where_key = 'w'; /* registry: weak-keyed table, checked options table -> place */

int options_check(lua_State *L, int tbl, const struct option_spec *spec, const char *what,
                  const char *where, struct rn_err *err)
{
    struct check c = {L, what, where, err};
    tbl = lua_absindex(L, tbl);
    if (lua_type(L, tbl) != LUA_TTABLE) {
        char got[96];
        return fail(&c, "", "expects a table of options, got %s", describe(L, tbl, got, sizeof got));
    }
    if (check_table(&c, spec, tbl, "")) return -1;
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &where_key) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushliteral(L, "k");
        lua_setfield(L, -2, "__mode");
        lua_pushvalue(L, -1);
        lua_setmetatable(L, -2);
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &where_key);
    }
    lua_pushvalue(L, -2);
    lua_pushstring(L, where);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    return 0;
}

const char *options_where(lua_State *L, int opts)
{
    opts = lua_absindex(L, opts);
    const char *where = "?";
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &where_key) == LUA_TTABLE) {
        lua_pushvalue(L, opts);
        if (lua_rawget(L, -2) == LUA_TSTRING) where = lua_tostring(L, -1); /* the weak table keeps it while opts lives */
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return where;
}

/* ---- accessors ---- */

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
    char **list = rn_calloc(n ? n : 1, sizeof *list);
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

int64_t opt_size(lua_State *L, int tbl, const char *name, int64_t def)
{
    lua_getfield(L, tbl, name);
    int64_t v = def;
    if (lua_isinteger(L, -1)) v = lua_tointeger(L, -1);
    else if (lua_type(L, -1) == LUA_TSTRING) opt_parse_size(lua_tostring(L, -1), &v);
    lua_pop(L, 1);
    return v;
}

/* ---- printing ---- */

/* The type column: "integer (1..10000)", "json|csv|text", "string|secret", "map of string". */
static void type_text(const struct option_spec *o, char *out, size_t n)
{
    size_t used = 0;
#define PUT(...) (used += (size_t)snprintf(out + used, used < n ? n - used : 0, __VA_ARGS__))
    switch (o->type) {
    case OPT_ENUM:
        for (size_t i = 0; o->choices && o->choices[i]; i++) PUT("%s%s", i ? "|" : "", o->choices[i]);
        break;
    case OPT_INTEGER_OR_STRING:
        PUT("integer");
        if (!o->choices) PUT("|string");
        for (size_t i = 0; o->choices && o->choices[i]; i++) PUT("|%s", o->choices[i]);
        break;
    case OPT_MAP: {
        char value[96];
        type_text(o->value, value, sizeof value);
        PUT("map of %s", o->value->type == OPT_NESTED ? "tables" : value);
        break;
    }
    case OPT_NESTED:
        if (o->short_form && short_form_boolean(o)) PUT("boolean|");
        PUT("table");
        if (o->short_form && !short_form_boolean(o)) PUT("|string");
        break;
    default:
        PUT("%s", opt_type_name(o->type));
        if (o->secret) PUT("|secret");
    }
    if (o->bounds) {
        char lo[64], hi[64];
        format_bound(o, o->min, lo, sizeof lo);
        format_bound(o, o->max, hi, sizeof hi);
        if ((o->bounds & OPT_MIN) && (o->bounds & OPT_MAX) && (o->bounds & OPT_MIN_EXCLUSIVE)) PUT(" > %s, <= %s", lo, hi);
        else if ((o->bounds & OPT_MIN) && (o->bounds & OPT_MAX)) PUT(" %s..%s", lo, hi);
        else if (o->bounds & OPT_MIN_EXCLUSIVE) PUT(" > %s", lo);
        else if (o->bounds & OPT_MIN) PUT(" >= %s", lo);
        else PUT(" <= %s", hi);
    }
#undef PUT
}

typedef void (*row_fn)(void *ctx, const char *name, const struct option_spec *o);

/* Every option of spec and, below a nested one, its options as "parent.child" (a map of
 * tables as "parent.NAME.child"). */
static void each_row(const struct option_spec *spec, const char *prefix, row_fn fn, void *ctx)
{
    for (const struct option_spec *o = spec; o->name; o++) {
        char name[160];
        snprintf(name, sizeof name, "%s%s", prefix, o->name);
        fn(ctx, name, o);
        char below[170];
        if (o->type == OPT_NESTED && o->fields) {
            snprintf(below, sizeof below, "%s.", name);
            each_row(o->fields, below, fn, ctx);
        } else if (o->type == OPT_MAP && o->value && o->value->type == OPT_NESTED && o->value->fields) {
            snprintf(below, sizeof below, "%s.NAME.", name);
            each_row(o->value->fields, below, fn, ctx);
        }
    }
}

static const char *default_shown(const struct option_spec *o)
{
    return o->default_text ? o->default_text : o->default_note ? o->default_note : NULL;
}

struct widths { int name, type, def; };

static void measure(void *ctx, const char *name, const struct option_spec *o)
{
    struct widths *w = ctx;
    char type[160];
    type_text(o, type, sizeof type);
    const char *def = default_shown(o);
    if ((int)strlen(name) > w->name) w->name = (int)strlen(name);
    if ((int)strlen(type) > w->type) w->type = (int)strlen(type);
    if (def && (int)strlen(def) > w->def) w->def = (int)strlen(def);
}

static void print_row(void *ctx, const char *name, const struct option_spec *o)
{
    const struct widths *w = ctx;
    char type[160];
    type_text(o, type, sizeof type);
    const char *def = default_shown(o);
    printf("  %-*s %-*s %-*s %s%s\n", w->name, name, w->type, type, w->def, def ? def : "-",
           o->required ? "(required) " : "", o->help);
}

void options_print(const struct option_spec *spec, const char *what, const char *summary)
{
    struct widths w = {6, 4, 7};
    each_row(spec, "", measure, &w);
    if (w.type > 28) w.type = 28;
    if (w.def > 16) w.def = 16;
    printf("%s: %s\n\n", what, summary);
    printf("  %-*s %-*s %-*s %s\n", w.name, "option", w.type, "type", w.def, "default", "description");
    each_row(spec, "", print_row, &w);
}

static void put_cell(const char *s)
{
    for (; *s; s++) {
        if (*s == '|') fputs("\\|", stdout);
        else putchar(*s);
    }
}

static void markdown_row(void *ctx, const char *name, const struct option_spec *o)
{
    (void)ctx;
    char type[160];
    type_text(o, type, sizeof type);
    const char *def = default_shown(o);
    printf("| `%s` | ", name);
    put_cell(type);
    fputs(" | ", stdout);
    put_cell(def ? def : "");
    fputs(" | ", stdout);
    if (o->required) fputs("**required.** ", stdout);
    put_cell(o->help);
    fputs(" |\n", stdout);
}

void options_print_markdown(const struct option_spec *spec, const char *what, const char *summary)
{
    printf("#### `%s{...}`\n\n%s\n\n| option | type | default | description |\n|---|---|---|---|\n", what, summary);
    each_row(spec, "", markdown_row, NULL);
    printf("\n");
}
