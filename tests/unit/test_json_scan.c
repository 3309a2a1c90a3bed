/* test_json_scan.c: the allocation-free JSON reader (runtime/json_scan.c), checked against
 * jansson: every document either both accept or both refuse, except the documented cases
 * where the scanner defers to jansson (escaped keys, \u0000, deep nesting).
 * Prints one line per failure and "N passed, N failed"; exits non-zero on failure. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "core/json_scan.h"

#include "check.h"

static int scan_accepts(const char *text, size_t len)
{
    struct jscan s;
    jscan_init(&s, text, len);
    return jscan_skip(&s) == 0 && jscan_at_end(&s);
}

static int jansson_accepts(const char *text, size_t len)
{
    json_t *v = json_loadb(text, len, JSON_DECODE_ANY, NULL);
    json_decref(v);
    return v != NULL;
}

/* Both readers agree on the document, and it is `want` (1 valid, 0 not). */
static void agree(const char *text, int want)
{
    size_t len = strlen(text);
    int scan = scan_accepts(text, len), tree = jansson_accepts(text, len);
    CHECK(scan == want, "scanner %s '%s'", scan ? "accepts" : "refuses", text);
    CHECK(tree == want, "jansson %s '%s' (the test's expectation is wrong)", tree ? "accepts" : "refuses", text);
}

static void test_grammar(void)
{
    static const char *const valid[] = {
        "{}", "[]", " [ ] ", "0", "-0", "12", "-1.5e+3", "2E-2", "1.25", "true", "false", "null", "\"\"",
        "{\"a\":[1,2,{\"b\":null}],\"c\":true,\"d\":-0.5e+3}", "[[[]],{}]", "\"caf\xc3\xa9 \xf0\x9f\x98\x80\"",
        "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\"", "{\"k\" : \"v\" , \"l\" :[ 1 , 2 ] }",
        "\n\t\r {\"x\":1}\n",
    };
    static const char *const invalid[] = {
        "", " ", "{", "}", "[", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "[1,]", "[,1]", "{,}", "01", "-", "1.", "1e",
        ".5", "+1", "tru", "nul", "True", "[1 2]", "{\"a\":1 \"b\":2}", "{a:1}", "'x'", "\"\x01\"", "\"\\q\"",
        "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"\\u12G4\"", "\"\xc3\"", "\"\xc0\xaf\"",
        "\"\xed\xa0\x80\"", "\"\xf5\x80\x80\x80\"", "\"open", "[1]x", "{}{}", "\xef\xbb\xbf{}",
    };
    for (size_t i = 0; i < sizeof valid / sizeof *valid; i++) agree(valid[i], 1);
    for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++) agree(invalid[i], 0);
}

/* Where the scanner refuses valid JSON on purpose, so callers use jansson. */
static void test_deferred(void)
{
    struct jscan s;
    const char *key;
    size_t key_len;
    int count = 0;
    const char *escaped_key = "{\"cont\\u0065nt\":1}";
    jscan_init(&s, escaped_key, strlen(escaped_key));
    CHECK(jscan_open(&s, '{') && jscan_member(&s, &count, &key, &key_len) == -1, "an escaped key is refused");
    CHECK(!scan_accepts("\"a\\u0000b\"", 10), "\\u0000 is refused (jansson refuses it too)");

    char deep[2 * JSCAN_MAX_DEPTH + 3];
    for (int depth = JSCAN_MAX_DEPTH; depth <= JSCAN_MAX_DEPTH + 1; depth++) {
        memset(deep, '[', (size_t)depth);
        memset(deep + depth, ']', (size_t)depth);
        deep[2 * depth] = '\0';
        CHECK(scan_accepts(deep, (size_t)(2 * depth)) == (depth <= JSCAN_MAX_DEPTH), "nesting %d", depth);
    }
    /* numbers jansson might refuse for their size go to jansson */
    CHECK(!scan_accepts("1e999", 5) && !scan_accepts("1e100", 5) && !scan_accepts("1234567890123456789", 19),
          "a number near or past jansson's range is left to jansson");
    const char *inside = "[1e99, -1.5E-12, 123456789012345678, 0.0000001]";
    CHECK(scan_accepts(inside, strlen(inside)), "numbers well inside the range are read");
    char big[260];
    memset(big, '9', 250);
    memcpy(big + 250, ".5", 3);
    CHECK(!scan_accepts(big, strlen(big)), "a real with 250 integer digits is left to jansson");
}

static void expect_string(const char *json, const char *want)
{
    struct jscan s;
    struct buf out;
    buf_init(&out);
    jscan_init(&s, json, strlen(json));
    int rc = jscan_string(&s, &out);
    if (!want) {
        CHECK(rc == -1, "string %s: want an error, got '%s'", json, out.data ? out.data : "");
    } else {
        json_t *tree = json_loads(json, JSON_DECODE_ANY, NULL);
        const char *got = out.data ? out.data : "";
        CHECK(rc == 0 && out.len == strlen(want) && memcmp(got, want, out.len) == 0, "string %s: got rc %d '%s'",
              json, rc, out.data ? out.data : "");
        CHECK(tree && json_string_length(tree) == out.len && memcmp(json_string_value(tree), got, out.len) == 0,
              "string %s: jansson reads it differently", json);
        json_decref(tree);
    }
    buf_free(&out);
}

static void test_strings(void)
{
    expect_string("\"plain\"", "plain");
    expect_string("\"\"", "");
    expect_string("\"a\\\"b\\\\c\\/d\\n\\t\"", "a\"b\\c/d\n\t");
    expect_string("\"\\u00e9\\u20ac\\ud83d\\ude00\"", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    expect_string("\"\\u0041\\u007f\\u0080\\u07ff\\u0800\\uffff\"", "A\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf");
    expect_string("\"caf\xc3\xa9\"", "caf\xc3\xa9");
    expect_string("\"{\\\"rating\\\":3}\"", "{\"rating\":3}");
    expect_string("12", NULL);
    expect_string("\"\\u0000\"", NULL);
    expect_string("\"a\nb\"", NULL);
}

static void expect_integer(const char *json, int ok, int64_t want)
{
    struct jscan s;
    int64_t v = 0;
    jscan_init(&s, json, strlen(json));
    int rc = jscan_integer(&s, &v);
    CHECK(ok ? rc == 0 && v == want : rc == -1, "integer %s: rc %d value %lld", json, rc, (long long)v);
}

static void test_integers(void)
{
    expect_integer("0", 1, 0);
    expect_integer(" 42", 1, 42);
    expect_integer("-7", 1, -7);
    expect_integer("123456789012345678", 1, 123456789012345678LL);
    expect_integer("1234567890123456789", 0, 0);
    expect_integer("1.0", 0, 0);
    expect_integer("1e2", 0, 0);
    expect_integer("\"1\"", 0, 0);
    expect_integer("-", 0, 0);
}

/* Walking a chat completion the way openai.c does. */
static void test_walk(void)
{
    const char *doc = "{\"id\":\"x\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"hi\"}},7],"
                      "\"usage\":{\"prompt_tokens\":10}}";
    struct jscan s;
    const char *key;
    size_t key_len;
    int members = 0, more, keys = 0, elements = 0, arrays = 0;
    jscan_init(&s, doc, strlen(doc));
    CHECK(jscan_open(&s, '{'), "opens the object");
    while ((more = jscan_member(&s, &members, &key, &key_len)) > 0) {
        keys++;
        if (key_len == 7 && memcmp(key, "choices", 7) == 0) {
            CHECK(jscan_peek(&s) == '[' && jscan_open(&s, '['), "choices is an array");
            while (jscan_element(&s, &elements) > 0) {
                arrays++;
                CHECK(jscan_skip(&s) == 0, "element %d skips", elements);
            }
        } else {
            CHECK(jscan_skip(&s) == 0, "member %.*s skips", (int)key_len, key);
        }
    }
    CHECK(more == 0 && keys == 3 && arrays == 2 && jscan_at_end(&s), "walk: more %d keys %d elements %d", more, keys,
          arrays);
    CHECK(jscan_peek(&s) == -1, "nothing after the end");
}

/* buf_put_json_string (util.c) steps over plain text 8 bytes at a time: every byte that needs
 * escaping, at every position of strings of every length up to 40, must still be escaped, and
 * the scanner must read the original back. */
static void test_escape_roundtrip(void)
{
    static const char specials[] = {'"', '\\', '\n', '\r', '\t', 0x01, 0x1f, 0x7f, (char)0xc3};
    char text[41];
    struct buf json, back;
    buf_init(&json);
    buf_init(&back);
    int bad = 0;
    for (size_t len = 1; len <= 40; len++) {
        for (size_t at = 0; at < len; at++) {
            for (size_t k = 0; k < sizeof specials; k++) {
                memset(text, 'a', len);
                text[at] = specials[k];
                if (specials[k] == (char)0xc3) { /* a two-byte character needs room */
                    if (at + 1 >= len) continue;
                    text[at + 1] = (char)0xa9;
                }
                buf_clear(&json);
                buf_clear(&back);
                buf_put_json_string(&json, text, len);
                struct jscan s;
                jscan_init(&s, json.data, json.len);
                if (jscan_string(&s, &back) || !jscan_at_end(&s) || back.len != len || memcmp(back.data, text, len) != 0 ||
                    (specials[k] != (char)0xc3 && specials[k] != 0x7f && !memchr(json.data, '\\', json.len)))
                    bad++;
            }
        }
    }
    CHECK(bad == 0, "%d strings did not survive escaping and reading back", bad);
    buf_free(&json);
    buf_free(&back);
}

int main(void)
{
    test_grammar();
    test_deferred();
    test_strings();
    test_integers();
    test_walk();
    test_escape_roundtrip();
    return check_report("test_json_scan");
}
