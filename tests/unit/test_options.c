/* test_options.c: options declared as data (runtime/lua/options.c): every type's checks and
 * messages, nesting and did-you-mean at every depth, defaults, the checked copy, and every
 * plugin's own option table (each default passes its own checks). */
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "lua/job.h"
#include "lua/options.h"

#include "check.h"

static lua_State *L;

static int positive_even(lua_State *L, int idx, struct rn_err *err)
{
    if (lua_tointeger(L, idx) % 2) return rn_fail(err, "must be even");
    return 0;
}

static const struct option_spec spec[] = {
    {"name", OPT_STRING, 1, NULL, .help = "a name"},
    {"count", OPT_INTEGER, 0, "3", .help = "a count", OPT_RANGE(1, 10)},
    {"even", OPT_INTEGER, 0, NULL, .help = "an even number", .check = positive_even},
    {"ratio", OPT_NUMBER, 0, NULL, .help = "a ratio", .bounds = OPT_MIN | OPT_MIN_EXCLUSIVE | OPT_MAX, .min = 0, .max = 1},
    {"on", OPT_BOOLEAN, 0, "true", .help = "a switch"},
    {"every", OPT_DURATION, 0, "5s", .help = "a period", OPT_ABOVE(0)},
    {"heap", OPT_SIZE, 0, "1MB", .help = "a size", OPT_AT_LEAST(1024)},
    {"sep", OPT_BYTE, 0, ",", .help = "a separator"},
    {"format", OPT_ENUM, 0, "json", .help = "a format", .choices = OPT_CHOICES("json", "csv", "text")},
    {"key", OPT_STRING, 0, NULL, .help = "a key", .secret = 1},
    {"columns", OPT_STRING_OR_LIST, 0, NULL, .help = "columns"},
    {"width", OPT_INTEGER_OR_STRING, 0, "8", .help = "a width", .choices = OPT_CHOICES("auto"), OPT_RANGE(1, 100)},
    {"props", OPT_MAP, 0, NULL, .help = "properties", .value = OPT_VALUE(OPT_SCALAR, .secret = 1)},
    {"free", OPT_TABLE, 0, NULL, .help = "anything"},
    {"limits", OPT_NESTED, 0, NULL, .help = "limits",
     .fields = OPT_FIELDS({"rate", OPT_NUMBER, 0, NULL, .help = "a rate", OPT_ABOVE(0)},
                          {"retries", OPT_INTEGER, 0, "5", .help = "retries", OPT_RANGE(0, 100)},
                          {"deep", OPT_NESTED, 0, NULL, .help = "deeper",
                           .fields = OPT_FIELDS({"level", OPT_INTEGER, 1, NULL, .help = "a level"})})},
    {"fields", OPT_MAP, 0, NULL, .help = "fields",
     .value = OPT_VALUE(OPT_NESTED, .short_form = "type",
                        .fields = OPT_FIELDS({"type", OPT_ENUM, 1, NULL, .help = "a type",
                                              .choices = OPT_CHOICES("integer", "string")},
                                             {"min", OPT_NUMBER, 0, NULL, .help = "a minimum"}))},
    {"out", OPT_SINK_LIST, 0, NULL, .help = "sinks"},
    {"src", OPT_SOURCE, 0, NULL, .help = "a source"},
    {NULL},
};

/* Check the options written in Lua (a table constructor) against spec; on success the checked
 * copy is left on the stack and 0 returned, else err holds the message. */
static int check(const char *options, struct rn_err *err)
{
    char code[2048];
    snprintf(code, sizeof code, "return %s", options);
    if (luaL_dostring(L, code) != LUA_OK) {
        rn_fail(err, "lua: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    int rc = options_check(L, -1, spec, "test.x", "t.lua:3", err);
    lua_remove(L, rc ? -1 : -2);
    return rc;
}

static void expect_error(const char *options, const char *want)
{
    struct rn_err err = {{0}};
    int top = lua_gettop(L);
    int rc = check(options, &err);
    if (rc == 0) lua_pop(L, 1);
    CHECK(rc == -1 && strcmp(err.msg, want) == 0, "%s\n  want: %s\n  got:  %s", options, want, rc ? err.msg : "(ok)");
    CHECK(lua_gettop(L) == top, "%s: the stack moved by %d", options, lua_gettop(L) - top);
}

/* The checked value of the Lua expression `path` (e.g. "c.limits.retries") as text. */
static const char *checked_value(const char *options, const char *path)
{
    static char out[1200];
    struct rn_err err;
    if (check(options, &err)) {
        snprintf(out, sizeof out, "error: %s", err.msg);
        return out;
    }
    lua_setglobal(L, "c");
    char code[512];
    snprintf(code, sizeof code, "local v = %s; if type(v) == 'table' then local t = {} for i, x in ipairs(v) do "
                                "t[i] = tostring(x) end return math.type(v[1]) and 'list' or '{' .. table.concat(t, ',') .. '}' end "
                                "return (math.type(v) or type(v)) .. ' ' .. tostring(v)", path);
    if (luaL_dostring(L, code) != LUA_OK) snprintf(out, sizeof out, "lua: %s", lua_tostring(L, -1));
    else snprintf(out, sizeof out, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return out;
}

static void expect_value(const char *options, const char *path, const char *want)
{
    const char *got = checked_value(options, path);
    CHECK(strcmp(got, want) == 0, "%s: %s\n  want: %s\n  got:  %s", options, path, want, got);
}

static void test_messages(void)
{
    expect_error("{ name = 'a', cuont = 2 }", "t.lua:3: test.x: cuont: unknown option; did you mean count?");
    expect_error("{ name = 'a', zzz = 2 }",
                 "t.lua:3: test.x: zzz: unknown option (known: name, count, even, ratio, on, every, heap, sep, format, "
                 "key, columns, width, props, free, limits, fields, out, src)");
    expect_error("{ count = 2 }", "t.lua:3: test.x: name: required option is missing (a name)");
    expect_error("{ name = 1 }", "t.lua:3: test.x: name: expected a string, got 1");
    expect_error("{ name = 'a', 'positional' }",
                 "t.lua:3: test.x: options must be named (name = value); found a positional value");
    expect_error("{ name = 'a', count = 11 }", "t.lua:3: test.x: count: must be from 1 to 10, got 11");
    expect_error("{ name = 'a', count = 2.5 }", "t.lua:3: test.x: count: expected an integer, got 2.5");
    expect_error("{ name = 'a', even = 3 }", "t.lua:3: test.x: even: must be even");
    expect_error("{ name = 'a', ratio = 0 }", "t.lua:3: test.x: ratio: must be greater than 0 and at most 1, got 0");
    expect_error("{ name = 'a', on = 'yes' }", "t.lua:3: test.x: on: expected true or false, got \"yes\"");
    expect_error("{ name = 'a', every = '5 sec' }",
                 "t.lua:3: test.x: every: bad duration \"5 sec\" (e.g. \"30s\", \"250ms\", \"2m\")");
    expect_error("{ name = 'a', every = 0 }", "t.lua:3: test.x: every: must be greater than 0s, got 0");
    expect_error("{ name = 'a', heap = '1XB' }",
                 "t.lua:3: test.x: heap: bad size \"1XB\" (e.g. \"256MB\", \"1GB\", \"64KB\" or bytes)");
    expect_error("{ name = 'a', heap = 10 }", "t.lua:3: test.x: heap: must be at least 1 KB, got 10");
    expect_error("{ name = 'a', sep = ';;' }", "t.lua:3: test.x: sep: must be one byte, got \";;\" (2 bytes)");
    expect_error("{ name = 'a', format = 'jsno' }",
                 "t.lua:3: test.x: format: unknown value \"jsno\"; did you mean json? (one of json, csv, text)");
    expect_error("{ name = 'a', format = 'xml' }", "t.lua:3: test.x: format: unknown value \"xml\" (one of json, csv, text)");
    expect_error("{ name = 'a', key = {} }", "t.lua:3: test.x: key: expected a string or secret(\"NAME\"), got table");
    expect_error("{ name = 'a', columns = {} }",
                 "t.lua:3: test.x: columns: expected a string or a non-empty list of strings, got an empty table");
    expect_error("{ name = 'a', columns = { 'a', 2 } }", "t.lua:3: test.x: columns[2]: expected a string, got 2");
    expect_error("{ name = 'a', width = 'wide' }", "t.lua:3: test.x: width: unknown value \"wide\" (one of auto)");
    expect_error("{ name = 'a', width = 0 }", "t.lua:3: test.x: width: must be from 1 to 100, got 0");
    expect_error("{ name = 'a', props = { ['a.b'] = {} } }",
                 "t.lua:3: test.x: props[\"a.b\"]: expected a string, number, boolean or secret(\"NAME\"), got table");
    expect_error("{ name = 'a', props = { 1 } }", "t.lua:3: test.x: props: keys must be names (name = value); found a positional value");
    expect_error("{ name = 'a', limits = 3 }", "t.lua:3: test.x: limits: expected a table of options, got 3");
    expect_error("{ name = 'a', limits = { rtae = 1 } }", "t.lua:3: test.x: limits.rtae: unknown option; did you mean rate?");
    expect_error("{ name = 'a', limits = { retries = -1 } }", "t.lua:3: test.x: limits.retries: must be from 0 to 100, got -1");
    expect_error("{ name = 'a', limits = { deep = {} } }", "t.lua:3: test.x: limits.deep.level: required option is missing (a level)");
    expect_error("{ name = 'a', limits = { deep = { levle = 1 } } }",
                 "t.lua:3: test.x: limits.deep.levle: unknown option; did you mean level?");
    expect_error("{ name = 'a', fields = { x = 'int' } }",
                 "t.lua:3: test.x: fields.x.type: unknown value \"int\"; did you mean integer? (one of integer, string)");
    expect_error("{ name = 'a', fields = { x = { type = 'string', mni = 1 } } }",
                 "t.lua:3: test.x: fields.x.mni: unknown option; did you mean min?");
    expect_error("{ name = 'a', fields = { x = 3 } }", "t.lua:3: test.x: fields.x: expected a table or a string, got 3");
    expect_error("{ name = 'a', out = { 'x' } }", "t.lua:3: test.x: out[1]: expected a sink (sink.X{...}), got \"x\"");
    expect_error("{ name = 'a', out = {} }", "t.lua:3: test.x: out: expected at least one sink, got an empty list");
    expect_error("{ name = 'a', src = { __kind = 'source', __type = 'csv', options = {} } }",
                 "t.lua:3: test.x: src: expected a source (source.csv{...}, source.kafka{...}), got table");
    expect_error("{ name = 'a', src = sink.stdout {} }",
                 "t.lua:3: test.x: src: expected a source (source.csv{...}, source.kafka{...}), got sink.stdout");
    struct rn_err err;
    static const char nan_prefix[] = "t.lua:3: test.x: ratio: must be greater than 0 and at most 1, got ";
    CHECK(check("{ name = 'a', ratio = 0/0 }", &err) == -1 && strncmp(err.msg, nan_prefix, strlen(nan_prefix)) == 0,
          "NaN is out of every range: %s", err.msg);
    lua_pushinteger(L, 1);
    CHECK(options_check(L, -1, spec, "test.x", "t.lua:3", &err) == -1 &&
          strcmp(err.msg, "t.lua:3: test.x: expects a table of options, got 1") == 0, "not a table: %s", err.msg);
    lua_pop(L, 1);
}

static void test_values(void)
{
    const char *ok = "{ name = 'a' }";
    expect_value(ok, "c.count", "integer 3");
    expect_value(ok, "c.on", "boolean true");
    expect_value(ok, "c.every", "string 5s");
    expect_value(ok, "c.heap", "integer 1048576");
    expect_value(ok, "c.format", "string json");
    expect_value(ok, "c.width", "integer 8");
    expect_value(ok, "c.limits", "nil nil");       /* absent nested tables stay absent */
    expect_value(ok, "c.even", "nil nil");
    expect_value("{ name = 'a', limits = {} }", "c.limits.retries", "integer 5"); /* defaults at every depth */
    expect_value("{ name = 'a', count = 4.0 }", "c.count", "integer 4");
    expect_value("{ name = 'a', heap = '2 GB' }", "c.heap", "integer 2147483648");
    expect_value("{ name = 'a', heap = '64kib' }", "c.heap", "integer 65536");
    expect_value("{ name = 'a', sep = '\\\\t' }", "c.sep:byte()", "integer 9");
    expect_value("{ name = 'a', columns = 'x' }", "c.columns", "{x}");
    expect_value("{ name = 'a', width = '12' }", "c.width", "integer 12");
    expect_value("{ name = 'a', width = 'auto' }", "c.width", "string auto");
    expect_value("{ name = 'a', fields = { x = 'integer' } }", "c.fields.x.type", "string integer");
    expect_value("{ name = 'a', key = secret('NO_SUCH_VARIABLE_X') }", "c.key", "userdata <secret NO_SUCH_VARIABLE_X>");
    expect_value("{ name = 'a', props = { ['a.b'] = 1, c = true } }", "c.props['a.b']", "integer 1");
    expect_value("{ name = 'a', out = sink.stdout {} }", "#c.out", "integer 1");
    expect_value("{ name = 'a', out = { sink.stdout {}, sink.stdout {} } }", "#c.out", "integer 2");

    /* the checked table is a copy: what was checked is what open() reads */
    CHECK(luaL_dostring(L, "orig = { name = 'a', columns = { 'x' }, free = { k = 1 }, limits = { rate = 2 } }; return orig") ==
          LUA_OK, "orig");
    struct rn_err err;
    CHECK(options_check(L, -1, spec, "test.x", "t.lua:9", &err) == 0, "copy: %s", err.msg);
    lua_setglobal(L, "c");
    lua_pop(L, 1);
    CHECK(luaL_dostring(L, "orig.columns[1] = 7; orig.free.k = 2; orig.limits.rate = -1; orig.name = 3 "
                           "return c.name == 'a' and c.columns[1] == 'x' and c.free.k == 1 and c.limits.rate == 2 "
                           "and c.columns ~= orig.columns and c.free ~= orig.free") == LUA_OK, "compare");
    CHECK(lua_toboolean(L, -1), "the checked copy shares tables with the script's");
    lua_pop(L, 1);
    lua_getglobal(L, "c");
    CHECK(strcmp(options_where(L, -1), "t.lua:9") == 0, "options_where: %s", options_where(L, -1));
    lua_getglobal(L, "orig");
    CHECK(strcmp(options_where(L, -1), "?") == 0, "options_where of an unchecked table: %s", options_where(L, -1));
    lua_pop(L, 2);
}

static void test_sizes(void)
{
    int64_t b;
    CHECK(opt_parse_size("256MB", &b) == 0 && b == 256LL << 20, "256MB: %lld", (long long)b);
    CHECK(opt_parse_size("1GB", &b) == 0 && b == 1LL << 30, "1GB");
    CHECK(opt_parse_size("1.5 kb", &b) == 0 && b == 1536, "1.5 kb");
    CHECK(opt_parse_size("4096", &b) == 0 && b == 4096, "4096");
    CHECK(opt_parse_size("12B", &b) == 0 && b == 12, "12B");
    CHECK(opt_parse_size("-1MB", &b) == -1 && opt_parse_size("MB", &b) == -1 && opt_parse_size("1 MBs", &b) == -1 &&
          opt_parse_size("1e30GB", &b) == -1, "bad sizes refused");
    char out[32];
    opt_format_size(out, sizeof out, 64LL << 20);
    CHECK(strcmp(out, "64 MB") == 0, "64 MB: %s", out);
    opt_format_size(out, sizeof out, 1LL << 30);
    CHECK(strcmp(out, "1 GB") == 0, "1 GB: %s", out);
    opt_format_size(out, sizeof out, 1000);
    CHECK(strcmp(out, "1000 bytes") == 0, "1000 bytes: %s", out);
}

/* Every option of a plugin's table: a known type with what it needs, and a default that
 * passes its own checks (options_check fills it in as a value). */
static void check_table_spec(const struct option_spec *options, const char *what)
{
    for (const struct option_spec *o = options; o->name; o++) {
        for (const struct option_spec *p = options; p < o; p++)
            CHECK(strcmp(p->name, o->name) != 0, "%s: option %s twice", what, o->name);
        CHECK(o->help && *o->help, "%s.%s: no help", what, o->name);
        CHECK(!(o->default_text && o->default_note), "%s.%s: a default and a note", what, o->name);
        CHECK(!(o->required && (o->default_text || o->default_note)), "%s.%s: required with a default", what, o->name);
        if (o->type == OPT_ENUM) CHECK(o->choices && o->choices[0], "%s.%s: an enum without choices", what, o->name);
        if (o->type == OPT_NESTED) CHECK(o->fields != NULL, "%s.%s: nested without fields", what, o->name);
        if (o->type == OPT_MAP) CHECK(o->value != NULL, "%s.%s: a map without a value spec", what, o->name);
        if (o->bounds)
            CHECK(o->type == OPT_INTEGER || o->type == OPT_NUMBER || o->type == OPT_DURATION || o->type == OPT_SIZE ||
                  o->type == OPT_INTEGER_OR_STRING, "%s.%s: bounds on a type without numbers", what, o->name);
        char name[128];
        snprintf(name, sizeof name, "%s.%s", what, o->name);
        if (o->type == OPT_NESTED && o->fields) check_table_spec(o->fields, name);
        if (o->type == OPT_MAP && o->value && o->value->type == OPT_NESTED) check_table_spec(o->value->fields, name);
        if (!o->default_text) continue;
        struct option_spec alone[2] = {*o, {NULL}};
        lua_newtable(L);
        struct rn_err err;
        int rc = options_check(L, -1, alone, what, "spec", &err);
        CHECK(rc == 0, "%s: the default does not pass its own checks: %s", name, err.msg);
        if (rc) { lua_pop(L, 1); continue; }
        lua_getfield(L, -1, o->name);
        CHECK(!lua_isnil(L, -1), "%s: the default is not filled in", name);
        lua_pop(L, 3);
    }
}

static void test_plugin_specs(void)
{
    check_table_spec(luajob_job_options(), "job");
    for (const struct source_ops *const *p = source_plugins; *p; p++) check_table_spec((*p)->options, (*p)->name);
    for (const struct sink_ops *const *p = sink_plugins; *p; p++) check_table_spec((*p)->options, (*p)->name);
    for (const struct provider_ops *const *p = provider_plugins; *p; p++) check_table_spec((*p)->options, (*p)->name);
}

int main(void)
{
    struct job_env env = {.script = "t.lua", .job_name = "t"};
    struct rn_err err;
    L = luajob_new(&env, NULL, 0, &err);
    if (!L) {
        printf("FAIL %s\n", err.msg);
        return 1;
    }
    test_messages();
    test_values();
    test_sizes();
    test_plugin_specs();
    luajob_close(L);
    return check_report("test_options");
}
