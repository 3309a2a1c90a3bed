/* test_formats.c: the record formats behind source.kafka and sink.kafka (formats/format.h):
 * the table (which format decodes, which encodes), each format's options and its messages,
 * the records decoded (fields, types, presizing needs none), the values encoded, the field
 * order each adds, and one codec reused over many values. Exits non-zero on a failure. */
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "formats/format.h"
#include "formats/json.h"
#include "lua/job.h"

#include "check.h"

static struct job_env env;
static lua_State *L;

/* Run `chunk` (which returns an options table) and open `name` for `use` with it. */
static void *open_with(const char *name, enum format_use use, const char *chunk, struct rn_err *err)
{
    const struct format_ops *f = format_find(name, use);
    if (!f) {
        rn_fail(err, "no format %s", name);
        return NULL;
    }
    if (luaL_dostring(L, chunk) != LUA_OK) {
        rn_fail(err, "chunk: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return NULL;
    }
    struct format_args args = {&env, lua_gettop(L), use == FORMAT_DECODE ? "source.kafka" : "sink.kafka", "job.lua:3", 6};
    void *self = f->open(&args, use, err);
    lua_pop(L, 1);
    return self;
}

/* Push the table that chunk returns. */
static void push(const char *chunk)
{
    if (luaL_dostring(L, chunk) != LUA_OK) {
        CHECK(0, "%s: %s", chunk, lua_tostring(L, -1));
        lua_pop(L, 1);
        lua_newtable(L);
    }
}

static void test_table(void)
{
    CHECK(format_find("json", FORMAT_DECODE) && format_find("json", FORMAT_ENCODE), "json decodes and encodes");
    CHECK(format_find("csv", FORMAT_DECODE) && format_find("csv", FORMAT_ENCODE), "csv decodes and encodes");
    CHECK(format_find("text", FORMAT_DECODE) && !format_find("text", FORMAT_ENCODE), "text only decodes");
    CHECK(!format_find("xml", FORMAT_DECODE), "no xml");
    struct buf b;
    buf_init(&b);
    format_names(&b, FORMAT_DECODE);
    CHECK(strcmp(b.data, "\"json\", \"csv\", \"text\" or \"avro\"") == 0, "decoding names: %s", b.data);
    buf_clear(&b);
    format_names(&b, FORMAT_ENCODE);
    CHECK(strcmp(b.data, "\"json\", \"csv\" or \"avro\"") == 0, "encoding names: %s", b.data);
    buf_free(&b);
    struct rn_err err;
    CHECK(!format_lookup("text", FORMAT_ENCODE, "job.lua:9", "sink.kafka", &err) &&
              strcmp(err.msg, "job.lua:9: sink.kafka: format must be \"json\", \"csv\" or \"avro\", not 'text'") == 0,
          "an unknown format is named with the ones there are: %s", err.msg);
    CHECK(format_lookup("csv", FORMAT_DECODE, "job.lua:9", "source.kafka", &err) == format_find("csv", FORMAT_DECODE),
          "format_lookup finds what format_find finds");
}

static void expect_open_error(const char *name, enum format_use use, const char *chunk, const char *want)
{
    struct rn_err err = {""};
    void *self = open_with(name, use, chunk, &err);
    CHECK(!self && strcmp(err.msg, want) == 0, "%s %s: got '%s', want '%s'", name, chunk, self ? "(opened)" : err.msg, want);
    if (self) format_find(name, use)->close(self);
}

static void test_options(void)
{
    expect_open_error("csv", FORMAT_DECODE, "return {}",
                      "job.lua:3: source.kafka: format = \"csv\" needs columns = { \"name\", ... }");
    expect_open_error("csv", FORMAT_ENCODE, "return {}",
                      "job.lua:3: sink.kafka: format = \"csv\" needs columns = { \"field\", ... }");
    expect_open_error("csv", FORMAT_DECODE, "return { columns = {'a'}, types = { b = 'integer' } }",
                      "job.lua:3: source.kafka: types.b: not one of the columns");
    expect_open_error("json", FORMAT_DECODE, "return { types = { a = 'integer' } }",
                      "job.lua:3: source.kafka: types applies to format = \"csv\" only (JSON values carry their types)");
    expect_open_error("text", FORMAT_DECODE, "return { types = { a = 'integer' } }",
                      "job.lua:3: source.kafka: types applies to format = \"csv\" only (JSON values carry their types)");
    expect_open_error("json", FORMAT_ENCODE, "return { columns = {'a'} }",
                      "job.lua:3: sink.kafka: columns applies to format = \"csv\" (use map to choose the fields of JSON)");
}

/* Decode data with the open codec; returns the pushed record's index or 0 with err. */
static int decode(const char *name, void *self, const char *data, size_t len, struct rn_err *err)
{
    int top = lua_gettop(L);
    if (format_find(name, FORMAT_DECODE)->decode(self, L, data, len, err)) {
        CHECK(lua_gettop(L) == top, "%s: nothing is pushed on an error", name);
        return 0;
    }
    CHECK(lua_gettop(L) == top + 1 && lua_type(L, -1) == LUA_TTABLE, "%s: one record is pushed", name);
    return lua_gettop(L);
}

static void expect_decode_error(const char *name, void *self, const char *data, size_t len, const char *want)
{
    struct rn_err err = {""};
    int rec = decode(name, self, data, len, &err);
    CHECK(!rec && strcmp(err.msg, want) == 0, "%s '%.30s': got '%s', want '%s'", name, data, rec ? "(decoded)" : err.msg,
          want);
    if (rec) lua_pop(L, 1);
}

/* The record at the top as its JSON line, popped. */
static const char *line_of(struct buf *b)
{
    struct rn_err err;
    buf_clear(b);
    if (json_encode(L, -1, env.fieldorder_ref, b, &err)) buf_puts(b, err.msg);
    lua_pop(L, 1);
    return b->data;
}

static void test_json(void)
{
    struct rn_err err;
    struct buf b;
    buf_init(&b);
    void *self = open_with("json", FORMAT_DECODE, "return { columns = { 'zeta', 'alpha' } }", &err);
    CHECK(self != NULL, "json opens: %s", err.msg);
    if (!self) return;
    const char *v = "{\"alpha\":1,\"zeta\":\"z\",\"mid\":[1.5,null,{\"x\":true}],\"gone\":null}";
    for (int i = 0; i < 3; i++) { /* the same codec over and over: the same record */
        CHECK(decode("json", self, v, strlen(v), &err), "decodes: %s", err.msg);
        CHECK(strcmp(line_of(&b), "{\"zeta\":\"z\",\"alpha\":1,\"mid\":[1.5,null,{\"x\":true}]}") == 0,
              "columns give the output order: %s", b.data);
    }
    /* the codec keeps the last record's keys: other keys, other orders, escaped keys */
    static const char *const shapes[][2] = {
        {"{\"k1\":1,\"k2\":2}", "{\"k1\":1,\"k2\":2}"},
        {"{\"k2\":3,\"k1\":4}", "{\"k1\":4,\"k2\":3}"},
        {"{\"k\\u0031\":5,\"k22\":6,\"k3\":{\"k1\":7}}", "{\"k1\":5,\"k22\":6,\"k3\":{\"k1\":7}}"},
        {"{\"k1\":8}", "{\"k1\":8}"},
        {"{\"k1\":9,\"k1\":10,\"k2\":null}", "{\"k1\":10}"},
    };
    for (int round = 0; round < 2; round++)
        for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
            CHECK(decode("json", self, shapes[i][0], strlen(shapes[i][0]), &err), "decodes %s: %s", shapes[i][0], err.msg);
            CHECK(strcmp(line_of(&b), shapes[i][1]) == 0, "%s is %s, not %s", shapes[i][0], shapes[i][1], b.data);
        }
    expect_decode_error("json", self, "[1,2]", 5, "the value is an array, not a JSON object");
    expect_decode_error("json", self, "\"x\"", 3, "the value is a string, not a JSON object");
    expect_decode_error("json", self, "null", 4, "the value is null, not a JSON object");
    expect_decode_error("json", self, "12", 2, "the value is a number, not a JSON object");
    expect_decode_error("json", self, "{\"a\":\n  tru}", 12, "the value is not JSON: invalid token near 'tru' (line 2, column 5)");
    expect_decode_error("json", self, "{\"a\":\"\xff\"}", 9, "the value is not valid UTF-8 (byte 7)");
    expect_decode_error("json", self, "{}}\xff", 4, "the value is not valid UTF-8 (byte 4)");
    expect_decode_error("json", self, "", 0, "the value is not JSON: unexpected token near end of file (line 1, column 0)");
    format_find("json", FORMAT_DECODE)->close(self);

    self = open_with("json", FORMAT_ENCODE, "return {}", &err);
    CHECK(self != NULL, "json opens for encoding: %s", err.msg);
    if (!self) return;
    push("return { alpha = 2, zeta = 'last', b = false }");
    buf_clear(&b);
    CHECK(format_find("json", FORMAT_ENCODE)->encode(self, L, -1, &b, &err) == 0 &&
              strcmp(b.data, "{\"zeta\":\"last\",\"alpha\":2,\"b\":false}") == 0,
          "json encodes in the job's field order: %s", b.data);
    lua_pop(L, 1);
    format_find("json", FORMAT_ENCODE)->close(self);
    buf_free(&b);
}

static void test_csv(void)
{
    struct rn_err err;
    struct buf b;
    buf_init(&b);
    void *self = open_with("csv", FORMAT_DECODE,
                           "return { columns = { 'id', 'fruit', 'price', 'ripe' }, "
                           "types = { id = 'integer', price = 'number', ripe = 'boolean' } }",
                           &err);
    CHECK(self != NULL, "csv opens: %s", err.msg);
    if (!self) return;
    const char *row = "7,\"apple, red\",1.25,yes";
    CHECK(decode("csv", self, row, strlen(row), &err), "decodes: %s", err.msg);
    lua_getfield(L, -1, "id");
    lua_getfield(L, -2, "price");
    lua_getfield(L, -3, "ripe");
    lua_getfield(L, -4, "fruit");
    CHECK(lua_isinteger(L, -4) && lua_tointeger(L, -4) == 7 && lua_tonumber(L, -3) == 1.25 && lua_toboolean(L, -2) &&
              strcmp(lua_tostring(L, -1), "apple, red") == 0,
          "typed fields");
    lua_pop(L, 5);
    CHECK(decode("csv", self, "8,,,", 4, &err), "empty fields decode: %s", err.msg);
    lua_getfield(L, -1, "price");
    lua_getfield(L, -2, "fruit");
    CHECK(lua_isnil(L, -2) && strcmp(lua_tostring(L, -1), "") == 0, "an empty number is nil, an empty string ''");
    lua_pop(L, 3);
    expect_decode_error("csv", self, "1,a,cheap,yes", 13, "column 'price': 'cheap' is not a valid number");
    expect_decode_error("csv", self, "1,a", 3, "expected 4 CSV fields, got 2");
    expect_decode_error("csv", self, "1,a,2,no\n3,b,4,no", 17, "the value holds 2 CSV rows, expected one");
    expect_decode_error("csv", self, "1,\"a,2,no", 9,
                        "the value is not valid CSV (a quote inside an unquoted field, or unbalanced quotes)");
    expect_decode_error("csv", self, "1,\xc3,2,no", 8, "the value is not valid UTF-8 (byte 3)");
    CHECK(decode("csv", self, row, strlen(row), &err), "decodes again after errors: %s", err.msg);
    lua_pop(L, 1);
    format_find("csv", FORMAT_DECODE)->close(self);

    self = open_with("csv", FORMAT_ENCODE, "return { columns = { 'id', 'text', 'tags', 'n' } }", &err);
    CHECK(self != NULL, "csv opens for encoding: %s", err.msg);
    if (!self) return;
    push("return { id = 1, text = 'say \"hi\", then go', tags = { 'a', 'b' }, n = 0.5, other = 1 }");
    buf_clear(&b);
    CHECK(format_find("csv", FORMAT_ENCODE)->encode(self, L, -1, &b, &err) == 0 &&
              strcmp(b.data, "1,\"say \"\"hi\"\", then go\",\"[\"\"a\"\",\"\"b\"\"]\",0.5") == 0,
          "csv encodes the columns: %s", b.data);
    lua_pop(L, 1);
    push("return { id = 2, tags = { f = print } }");
    buf_clear(&b);
    CHECK(format_find("csv", FORMAT_ENCODE)->encode(self, L, -1, &b, &err) == -1 &&
              strcmp(err.msg, "column tags: field 'f': cannot encode a function as JSON") == 0,
          "a column that cannot be encoded is named: %s", err.msg);
    lua_pop(L, 1);
    format_find("csv", FORMAT_ENCODE)->close(self);
    buf_free(&b);
}

static void test_text(void)
{
    struct rn_err err;
    void *self = open_with("text", FORMAT_DECODE, "return {}", &err);
    CHECK(self != NULL, "text opens: %s", err.msg);
    if (!self) return;
    CHECK(decode("text", self, "any \"thing\"", 11, &err), "decodes: %s", err.msg);
    lua_getfield(L, -1, "value");
    CHECK(strcmp(lua_tostring(L, -1), "any \"thing\"") == 0, "the value is the field `value`");
    lua_pop(L, 2);
    CHECK(format_find("text", FORMAT_DECODE)->decodes_no_value && decode("text", self, NULL, 0, &err),
          "a message without a value decodes");
    lua_getfield(L, -1, "value");
    CHECK(lua_isnil(L, -1), "... to a record without `value`");
    lua_pop(L, 2);
    expect_decode_error("text", self, "ab\xff", 3, "the value is not valid UTF-8 (byte 3)");
    format_find("text", FORMAT_DECODE)->close(self);
}

int main(void)
{
    struct rn_err err;
    env.script = "job.lua";
    env.job_name = "test";
    L = env.L = luajob_new(&env, NULL, 0, &err);
    if (!L) {
        printf("luajob_new: %s\n", err.msg);
        return 1;
    }
    int top = lua_gettop(L);
    test_table();
    test_options();
    test_json();
    test_csv();
    test_text();
    CHECK(lua_gettop(L) == top, "the stack is left as it was (%d, not %d)", lua_gettop(L), top);
    luajob_close(L);
    return check_report("test_formats");
}
