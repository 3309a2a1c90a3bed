/* test_json_decode.c: the direct JSON decoder (formats/json_decode.c) on the boundaries:
 * numbers (64-bit limits, -0, overflow and underflow, correct rounding), escapes (surrogate
 * pairs and broken ones), nesting at and past jansson's limit, invalid UTF-8, NUL bytes,
 * duplicate keys, nulls, trailing garbage, and error lines and columns. Every text is also
 * decoded by jansson (json_loadb + json_push, how runnel decoded before): the two must give
 * the same value or the same error text, line and column. Also json_put_string (core/json.c),
 * the encoder's escape-and-check pass, against buf_put_json_string and rn_utf8_valid. Exits
 * non-zero on a failure. */
#include <jansson.h>
#include <lauxlib.h>
#include <lualib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/json.h"

#include "check.h"

static lua_State *L;
static struct json_decoder decoder;

static int same_value(int a, int b)
{
    a = lua_absindex(L, a);
    b = lua_absindex(L, b);
    if (lua_type(L, a) != lua_type(L, b)) return 0;
    switch (lua_type(L, a)) {
    case LUA_TNUMBER: {
        if (lua_isinteger(L, a) != lua_isinteger(L, b)) return 0;
        if (lua_isinteger(L, a)) return lua_tointeger(L, a) == lua_tointeger(L, b);
        lua_Number x = lua_tonumber(L, a), y = lua_tonumber(L, b);
        return memcmp(&x, &y, sizeof x) == 0;
    }
    case LUA_TTABLE: {
        luaL_checkstack(L, 4, "compare");
        int count = 0, other = 0;
        lua_pushnil(L);
        while (lua_next(L, a)) {
            count++;
            lua_pushvalue(L, -2);
            lua_rawget(L, b);
            int same = same_value(-2, -1);
            lua_pop(L, 2);
            if (!same) {
                lua_pop(L, 1);
                return 0;
            }
        }
        lua_pushnil(L);
        while (lua_next(L, b)) {
            other++;
            lua_pop(L, 1);
        }
        return count == other;
    }
    default: return lua_rawequal(L, a, b);
    }
}

/* Decode text[0..len) both ways and check they agree. Leaves the direct decoder's value on
 * the stack and returns its kind, or returns -1 (nothing pushed) with its error in *e. */
static int decode(const char *text, size_t len, struct json_syntax_error *e)
{
    int top = lua_gettop(L);
    int kind = json_decode(&decoder, L, text, len, 0, e);
    json_error_t jerr;
    json_t *v = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    CHECK((kind >= 0) == (v != NULL), "%.40s: json_decode %s, jansson %s (%s)", text, kind >= 0 ? "accepts" : "refuses",
          v ? "accepts" : "refuses", v ? e->text : jerr.text);
    if (kind < 0) {
        CHECK(lua_gettop(L) == top, "%.40s: nothing is pushed on an error", text);
        if (!v)
            CHECK(strcmp(e->text, jerr.text) == 0 && e->line == jerr.line && e->column == jerr.column,
                  "%.40s: '%s' (line %d column %d), jansson '%s' (line %d column %d)", text, e->text, e->line,
                  e->column, jerr.text, jerr.line, jerr.column);
    } else if (v) {
        json_push(L, v);
        CHECK(same_value(-2, -1), "%.40s: the value differs from jansson's", text);
        lua_pop(L, 1);
    }
    json_decref(v);
    return kind;
}

static void expect_error(const char *text, size_t len, const char *want, int line, int column)
{
    struct json_syntax_error e;
    if (decode(text, len, &e) >= 0) {
        lua_pop(L, 1);
        CHECK(0, "%.40s: decodes, want '%s'", text, want);
        return;
    }
    CHECK(strcmp(e.text, want) == 0 && e.line == line && e.column == column,
          "%.40s: '%s' (line %d column %d), want '%s' (line %d column %d)", text, e.text, e.line, e.column, want, line,
          column);
}

#define ERROR(text, want, line, column) expect_error(text, sizeof text - 1, want, line, column)

/* Decode a text that must decode; leaves the value on the stack. */
static int value_of(const char *text, size_t len)
{
    struct json_syntax_error e;
    int kind = decode(text, len, &e);
    CHECK(kind >= 0, "%.40s: %s", text, e.text);
    if (kind < 0) lua_pushnil(L);
    return kind;
}

static void expect_integer(const char *text, lua_Integer want)
{
    value_of(text, strlen(text));
    CHECK(lua_isinteger(L, -1) && lua_tointeger(L, -1) == want, "%s: want the integer %lld", text, (long long)want);
    lua_pop(L, 1);
}

static void expect_real(const char *text, double want)
{
    value_of(text, strlen(text));
    lua_Number got = lua_tonumber(L, -1);
    CHECK(lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1) && memcmp(&got, &want, sizeof got) == 0,
          "%s: got %.17g, want the float %.17g", text, got, want);
    lua_pop(L, 1);
}

static void test_numbers(void)
{
    expect_integer("0", 0);
    expect_integer("-0", 0); /* an integer, as strtoll reads it */
    expect_integer("123456789012345678", 123456789012345678LL);
    expect_integer("9223372036854775807", INT64_MAX);
    expect_integer("-9223372036854775808", INT64_MIN);
    ERROR("9223372036854775808", "too big integer near '9223372036854775808'", 1, 19);
    ERROR("-9223372036854775809", "too big negative integer near '-9223372036854775809'", 1, 20);
    ERROR("123456789012345678901", "too big integer", 1, 21); /* over 20 characters: no context */
    ERROR("[1, 99999999999999999999]", "too big integer near '99999999999999999999'", 1, 24);
    expect_real("-0.0", -0.0);
    expect_real("-0e5", -0.0);
    expect_real("0.1", 0.1);
    expect_real("1.5", 1.5);
    expect_real("-2.5e-3", -2.5e-3);
    expect_real("1E2", 100.0);
    expect_real("1e22", 1e22);
    expect_real("1e23", 1e23); /* past the exact powers of ten: strtod */
    expect_real("0.30000000000000004", 0.30000000000000004);
    expect_real("123456789012345678901234567890.5", 123456789012345678901234567890.5);
    expect_real("1.7976931348623157e308", 1.7976931348623157e308);
    expect_real("4.9e-324", 4.9e-324);
    expect_real("1e-400", 0.0); /* underflow is zero, as jansson has it */
    expect_real("0e400", 0.0);
    expect_real("2.2250738585072011e-308", 2.2250738585072011e-308);
    ERROR("1e400", "real number overflow near '1e400'", 1, 5);
    ERROR("-1e400", "real number overflow near '-1e400'", 1, 6);
    ERROR("01", "invalid token near '0'", 1, 1);
    ERROR("-01", "invalid token near '-0'", 1, 2);
    ERROR("-", "invalid token near '-'", 1, 1);
    ERROR("-a", "invalid token near '-'", 1, 1);
    ERROR("1.", "invalid token near '1.'", 1, 2);
    ERROR("1.e5", "invalid token near '1.'", 1, 2);
    ERROR("1e", "invalid token near '1e'", 1, 2);
    ERROR("1e+", "invalid token near '1e+'", 1, 3);
    ERROR(".5", "invalid token near '.'", 1, 1);
    ERROR("+1", "invalid token near '+'", 1, 1);
    /* every float of a long list reads back as strtod reads it */
    char text[64];
    int bad = 0;
    for (int i = 0; i < 20000; i++) {
        double want = (double)(i * 7919 % 100003) / (double)(1 + i % 977) * pow(10.0, (i % 61) - 30);
        snprintf(text, sizeof text, "%.*g", 1 + i % 17, want);
        if (!strpbrk(text, ".e")) strcat(text, ".0");
        struct json_syntax_error e;
        if (json_decode(&decoder, L, text, strlen(text), 0, &e) < 0) { bad++; continue; }
        double got = lua_tonumber(L, -1), exact = strtod(text, NULL);
        if (lua_isinteger(L, -1) || memcmp(&got, &exact, sizeof got) != 0) bad++;
        lua_pop(L, 1);
    }
    CHECK(bad == 0, "%d of 20000 floats read differently from strtod", bad);
}

static void expect_string(const char *text, size_t len, const char *want, size_t want_len)
{
    value_of(text, len);
    size_t n = 0;
    const char *got = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
    CHECK(got && n == want_len && memcmp(got, want, n) == 0, "%.40s: got '%s'", text, got ? got : "(not a string)");
    lua_pop(L, 1);
}

#define STRING(text, want) expect_string(text, sizeof text - 1, want, sizeof want - 1)

static void test_strings(void)
{
    STRING("\"plain\"", "plain");
    STRING("\"\"", "");
    STRING("\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"", "a\"b\\c/d\b\f\n\r\t");
    STRING("\"\\u00e9\\u20AC\"", "\xc3\xa9\xe2\x82\xac");
    STRING("\"\\ud83d\\ude00 \\uD83D\\uDE00\"", "\xf0\x9f\x98\x80 \xf0\x9f\x98\x80");
    STRING("\"caf\xc3\xa9 \xf0\x9f\x98\x80\"", "caf\xc3\xa9 \xf0\x9f\x98\x80");
    STRING("\"a\\u0000b\"", "a\0b"); /* NULs are kept in values */
    STRING("\"0123456789abcdefghijklmnop\\n0123456789abcdefghijklmnop\"",
           "0123456789abcdefghijklmnop\n0123456789abcdefghijklmnop");
    ERROR("\"\\ud800\"", "invalid Unicode '\\uD800' near '\"\\ud800\"'", 1, 8);
    ERROR("\"\\udc00\"", "invalid Unicode '\\uDC00' near '\"\\udc00\"'", 1, 8);
    ERROR("\"\\ud800\\u0041\"", "invalid Unicode '\\uD800\\u0041' near '\"\\ud800\\u0041\"'", 1, 14);
    ERROR("\"\\ud800\\n\"", "invalid Unicode '\\uD800' near '\"\\ud800\\n\"'", 1, 10);
    ERROR("\"\\ud800x and then a long string\"", "invalid Unicode '\\uD800'", 1, 32);
    /* the characters are checked before the escapes, as jansson does */
    ERROR("\"\\ud800\x01\"", "control character 0x1 near '\"\\ud800'", 1, 7);
    ERROR("\"\\u12G4\"", "invalid escape near '\"\\u12G'", 1, 6);
    ERROR("\"\\u12", "invalid escape near '\"\\u12'", 1, 5);
    ERROR("\"\\q\"", "invalid escape near '\"\\q'", 1, 3);
    ERROR("\"\\", "invalid escape near '\"\\'", 1, 2);
    ERROR("\"open", "premature end of input near '\"open'", 1, 5);
    ERROR("\"a\nb\"", "unexpected newline near '\"a'", 1, 2);
    ERROR("\"a\tb\"", "control character 0x9 near '\"a'", 1, 2);
}

static void test_utf8_and_nul(void)
{
    ERROR("\"\xff\"", "unable to decode byte 0xff near '\"'", 1, 1);
    ERROR("\"caf\xc3\"", "unable to decode byte 0xc3 near '\"caf'", 1, 4);
    ERROR("\"\xc0\xaf\"", "unable to decode byte 0xc0 near '\"'", 1, 1);          /* overlong */
    ERROR("\"\xed\xa0\x80\"", "unable to decode byte 0xed near '\"'", 1, 1);      /* a surrogate */
    ERROR("\"\xf4\x90\x80\x80\"", "unable to decode byte 0xf4 near '\"'", 1, 1);  /* past U+10FFFF */
    ERROR("\xef\xbb\xbf{}", "invalid token near '\xef\xbb\xbf'", 1, 1);           /* a byte order mark */
    ERROR("[1, \xff]", "unable to decode byte 0xff", 1, 4);
    ERROR("12\xff", "unable to decode byte 0xff near '12'", 1, 2);
    ERROR("true\x80", "unable to decode byte 0x80 near 'true'", 1, 4);
    ERROR("\"a\0b\"", "control character 0x0 near '\"a'", 1, 2);
    ERROR("\0", "invalid token near end of file", 1, 1);
    ERROR("[\0]", "invalid token near end of file", 1, 2);
    ERROR("{\"a\\u0000\":1}", "NUL byte in object key not supported near '\"a\\u0000\"'", 1, 10);
    ERROR("{\"a\\u0000bcdefghijklmnop\":1}", "NUL byte in object key not supported", 1, 25);
    /* jansson loses a NUL it reads past a number or true/false/null (its put-back buffer takes
     * NUL for empty): such a NUL is skipped and counts in no column */
    static const char nuls[] = "[1\0,2.5\0,true\0]";
    value_of(nuls, sizeof nuls - 1);
    CHECK(lua_type(L, -1) == LUA_TTABLE && lua_rawlen(L, -1) == 3, "[1\\0,2.5\\0,true\\0] is [1,2.5,true]");
    lua_pop(L, 1);
    value_of("null\0", 5);
    lua_pop(L, 1);
    ERROR("9\0null\0\0", "end of file expected near 'null'", 1, 5);
    ERROR("1\0\0", "end of file expected near end of file", 1, 2);
    ERROR("[tru\0]", "invalid token near 'tru'", 1, 4);
    ERROR("[1\0 x]", "']' expected near 'x'", 1, 4);
}

/* depth levels of `open`, then `inner`, then the closers */
static void nest(struct buf *b, int depth, char open, const char *inner)
{
    buf_clear(b);
    for (int i = 0; i < depth; i++) buf_puts(b, open == '[' ? "[" : "{\"k\":");
    buf_puts(b, inner);
    for (int i = 0; i < depth; i++) buf_putc(b, open == '[' ? ']' : '}');
}

static void test_nesting(void)
{
    struct buf b;
    buf_init(&b);
    struct json_syntax_error e;
    nest(&b, JSON_MAX_DEPTH, '[', "");
    CHECK(decode(b.data, b.len, &e) == JSON_KIND_ARRAY, "%d empty arrays: %s", JSON_MAX_DEPTH, e.text);
    lua_pop(L, 1);
    nest(&b, JSON_MAX_DEPTH - 1, '[', "1");
    CHECK(decode(b.data, b.len, &e) == JSON_KIND_ARRAY, "%d arrays around a number: %s", JSON_MAX_DEPTH - 1, e.text);
    lua_Integer depth = 0;
    for (int i = 0; i < JSON_MAX_DEPTH - 1 && lua_type(L, -1) == LUA_TTABLE; i++) {
        lua_rawgeti(L, -1, 1);
        lua_remove(L, -2);
        depth++;
    }
    CHECK(depth == JSON_MAX_DEPTH - 1 && lua_tointeger(L, -1) == 1, "the number is at the bottom (%lld levels)",
          (long long)depth);
    lua_pop(L, 1);
    nest(&b, JSON_MAX_DEPTH + 1, '[', "");
    CHECK(decode(b.data, b.len, &e) < 0 && strcmp(e.text, "maximum parsing depth reached near '['") == 0 &&
              e.column == JSON_MAX_DEPTH + 1,
          "%d arrays: '%s' column %d", JSON_MAX_DEPTH + 1, e.text, e.column);
    nest(&b, JSON_MAX_DEPTH, '[', "1");
    CHECK(decode(b.data, b.len, &e) < 0 && strcmp(e.text, "maximum parsing depth reached near '1'") == 0,
          "a number inside %d arrays: '%s'", JSON_MAX_DEPTH, e.text);
    nest(&b, JSON_MAX_DEPTH, '{', "{}");
    CHECK(decode(b.data, b.len, &e) < 0 && strcmp(e.text, "maximum parsing depth reached near '{'") == 0,
          "%d objects: '%s'", JSON_MAX_DEPTH + 1, e.text);
    nest(&b, JSON_MAX_DEPTH - 1, '{', "{}");
    CHECK(decode(b.data, b.len, &e) == JSON_KIND_OBJECT, "%d objects: %s", JSON_MAX_DEPTH, e.text);
    lua_pop(L, 1);
    buf_free(&b);
}

static void test_structure(void)
{
    /* duplicate keys: the last wins, a null one removes the member (jansson keeps null, and
     * json_push leaves null members out) */
    value_of("{\"a\":1,\"a\":2}", 13);
    lua_getfield(L, -1, "a");
    CHECK(lua_tointeger(L, -1) == 2, "the last of two keys wins");
    lua_pop(L, 2);
    value_of("{\"a\":1,\"a\":null}", 16);
    lua_getfield(L, -1, "a");
    CHECK(lua_isnil(L, -1), "a null duplicate removes the member");
    lua_pop(L, 2);
    value_of("{\"a\":null,\"b\":[null,2],\"c\":{}}", 30);
    lua_getfield(L, -1, "b");
    lua_rawgeti(L, -1, 1);
    json_push_null(L);
    CHECK(lua_rawequal(L, -1, -2) && luaL_len(L, -3) == 2, "null in an array is json.null");
    lua_pop(L, 3);
    lua_getfield(L, -1, "a");
    CHECK(lua_isnil(L, -1), "null in an object is no member");
    lua_pop(L, 2);
    struct json_syntax_error e;
    CHECK(decode("null", 4, &e) == JSON_KIND_NULL && lua_isnil(L, -1), "a top-level null is nil");
    lua_pop(L, 1);
    CHECK(decode(" [1,\"x\",true,false] ", 20, &e) == JSON_KIND_ARRAY, "an array");
    lua_pop(L, 1);
    CHECK(decode("\"s\"", 3, &e) == JSON_KIND_STRING && decode("1", 1, &e) == JSON_KIND_NUMBER &&
              decode("true", 4, &e) == JSON_KIND_BOOLEAN,
          "the kinds of scalars");
    lua_pop(L, 3);

    ERROR("", "unexpected token near end of file", 1, 0);
    ERROR("  \n ", "unexpected token near end of file", 2, 1);
    ERROR("{}x", "end of file expected near 'x'", 1, 3);
    ERROR("{} {}", "end of file expected near '{'", 1, 4);
    ERROR("[1]]", "end of file expected near ']'", 1, 4);
    ERROR("[1 2]", "']' expected near '2'", 1, 4);
    ERROR("[1,]", "unexpected token near ']'", 1, 4);
    ERROR("[1,", "']' expected near end of file", 1, 3);
    ERROR("[", "']' expected near end of file", 1, 1);
    ERROR("{", "string or '}' expected near end of file", 1, 1);
    ERROR("{\"a\":1,}", "string or '}' expected near '}'", 1, 8);
    ERROR("{\"a\" 1}", "':' expected near '1'", 1, 6);
    ERROR("{\"a\":1 \"b\":2}", "'}' expected near '\"b\"'", 1, 10);
    ERROR("{1:2}", "string or '}' expected near '1'", 1, 2);
    ERROR("{\"a\":}", "unexpected token near '}'", 1, 6);
    ERROR("nul", "invalid token near 'nul'", 1, 3);
    ERROR("truex", "invalid token near 'truex'", 1, 5);
    ERROR("[abcdefghijklmnopqrstuvwxyz]", "invalid token", 1, 27);
    ERROR("{\n  \"id\": 1,\n  \"name\": tru\n}", "invalid token near 'tru'", 3, 13);
    ERROR("[\"caf\xc3\xa9\", x]", "invalid token near 'x'", 1, 10); /* columns count characters */
}

/* The decoder is reused, as a source reuses its own: escapes and errors leave nothing behind. */
static void test_reuse(void)
{
    struct json_syntax_error e;
    int ok = 1;
    for (int i = 0; i < 100; i++) {
        const char *good = "{\"a\\n\":\"x\\u00e9\",\"b\":[1,2.5,{\"c\":\"\\\"\"}]}";
        if (json_decode(&decoder, L, good, strlen(good), 6, &e) != JSON_KIND_OBJECT) ok = 0;
        lua_getfield(L, -1, "a\n");
        if (strcmp(lua_tostring(L, -1) ? lua_tostring(L, -1) : "", "x\xc3\xa9") != 0) ok = 0;
        lua_pop(L, 2);
        if (json_decode(&decoder, L, "{\"a\":\"\\x\"}", 10, 0, &e) != -1) ok = 0;
    }
    CHECK(ok && lua_gettop(L) == 0, "100 decodes with one decoder");
}

/* json.decode in Lua reads the same, and says where a text is wrong. */
static void test_lua_decode(void)
{
    const char *script =
        "local v = json.decode('{\"a\":[1,null,\"x\"],\"b\":-0.0,\"c\":9007199254740993}')\n"
        "assert(v.a[2] == json.null and v.a[3] == 'x' and math.type(v.c) == 'integer' and v.c == 9007199254740993)\n"
        "assert(1 / v.b < 0)\n"
        "local none, why = json.decode('{\"a\":\\n tru}')\n"
        "assert(none == nil and why == \"invalid JSON at line 2 column 4: invalid token near 'tru'\", why)\n"
        "assert(json.decode('null') == nil and select('#', json.decode('null')) == 1)\n"
        "return json.encode(json.decode('{\"k\":[true,{\"z\":1.5}]}'))";
    int rc = luaL_dostring(L, script);
    CHECK(rc == LUA_OK && strcmp(lua_tostring(L, -1), "{\"k\":[true,{\"z\":1.5}]}") == 0, "json.decode: %s",
          lua_tostring(L, -1));
    lua_settop(L, 0);
}

/* json_put_string writes what buf_put_json_string writes and refuses what rn_utf8_valid
 * refuses, at every position of strings of every length up to 40 (it steps 8 bytes at a time). */
static void test_put_string(void)
{
    static const char *const specials[] = {"\"", "\\", "\n", "\r", "\t", "\x01", "\x1f", "\x7f", "\xc3\xa9",
                                           "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xff", "\xc3", "\xed\xa0\x80",
                                           "\xc0\xaf", "\xf4\x90\x80\x80", "\x80"};
    char text[48];
    struct buf got, want;
    buf_init(&got);
    buf_init(&want);
    int bad = 0;
    for (size_t len = 1; len <= 40; len++)
        for (size_t at = 0; at < len; at++)
            for (size_t k = 0; k < sizeof specials / sizeof *specials; k++) {
                size_t n = strlen(specials[k]);
                if (at + n > len) continue;
                memset(text, 'a', len);
                memcpy(text + at, specials[k], n);
                size_t want_bad = 0, got_bad = 0;
                int valid = rn_utf8_valid(text, len, &want_bad);
                buf_clear(&want);
                buf_clear(&got);
                buf_puts(&got, "x"); /* what was there stays */
                buf_puts(&want, "x");
                if (valid) buf_put_json_string(&want, text, len);
                int rc = json_put_string(&got, text, len, &got_bad);
                if (rc != (valid ? 0 : -1) || got.len != want.len || memcmp(got.data, want.data, got.len) != 0 ||
                    (!valid && got_bad != want_bad))
                    bad++;
            }
    CHECK(bad == 0, "json_put_string differs from buf_put_json_string + rn_utf8_valid %d times", bad);
    buf_free(&got);
    buf_free(&want);
}

int main(void)
{
    L = luaL_newstate();
    luaL_openlibs(L);
    json_open_lib(L);
    json_decoder_init(&decoder);
    test_numbers();
    test_strings();
    test_utf8_and_nul();
    test_nesting();
    test_structure();
    test_reuse();
    test_lua_decode();
    test_put_string();
    json_decoder_free(&decoder);
    lua_close(L);
    return check_report("test_json_decode");
}
