/* test_report.c: the building blocks of `runnel report`: words and phrases (serve/phrases.c),
 * the bounded counting table (serve/tally.c) and HTML escaping (serve/html.c).
 * Prints one line per failure and "N passed, N failed"; exits non-zero on failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/html.h"
#include "serve/phrases.h"
#include "serve/tally.h"

#include "check.h"

static void collect(void *ctx, const char *phrase, size_t len, int words)
{
    struct buf *out = ctx;
    if (strlen(phrase) != len) { buf_puts(out, "<length mismatch>"); return; }
    if (out->len) buf_putc(out, '|');
    buf_printf(out, "%d:%s", words, phrase);
}

/* The phrases of text, as "1:word|2:two words|..." in the order they are reported. */
static void expect_phrases(const char *text, const char *want)
{
    struct buf out;
    buf_init(&out);
    phrases_each(text, strlen(text), collect, &out);
    const char *got = out.data ? out.data : "";
    CHECK(strcmp(got, want) == 0, "phrases of '%s':\n   want %s\n   got  %s", text, want, got);
    buf_free(&out);
}

static void test_phrases(void)
{
    expect_phrases("", "");
    expect_phrases("Great taste", "1:great|1:taste|2:great taste");
    expect_phrases("Best dog food ever", "1:best|1:dog|2:best dog|1:food|2:dog food|3:best dog food|1:ever|2:food ever|3:dog food ever");
    /* stop words are left out and end the phrase; negations stay */
    expect_phrases("This is NOT good", "1:not|1:good|2:not good");
    expect_phrases("Don't buy it", "1:dont|1:buy|2:dont buy");
    expect_phrases("I can’t stop eating these", "1:cant|1:stop|2:cant stop|1:eating|2:stop eating|3:cant stop eating");
    /* clause marks end a phrase; spaces, hyphens and slashes do not */
    expect_phrases("Great taste. Love it!", "1:great|1:taste|2:great taste|1:love");
    expect_phrases("k-cups/pods", "1:k|1:cups|2:k cups|1:pods|2:cups pods|3:k cups pods");
    expect_phrases("tasty (cheap) snack", "1:tasty|1:cheap|1:snack");
    expect_phrases("yum \xE2\x80\x94 yum \xE2\x80\xA6 yum", "1:yum|1:yum|1:yum"); /* em dash, ellipsis */
    expect_phrases("\xE2\x80\x9CWow\xE2\x80\x9D cookies", "1:wow|1:cookies");            /* curly quotes */
    expect_phrases("dogs' food", "1:dogs|1:food|2:dogs food");
    /* lowercasing beyond ASCII; other scripts as they are */
    expect_phrases("CAF\xC3\x89 CR\xC3\x88ME br\xC3\xbbl\xC3\xA9\x65", "1:caf\xC3\xA9|1:cr\xC3\xA8me|2:caf\xC3\xA9 cr\xC3\xA8me|1:br\xC3\xbbl\xC3\xA9\x65|2:cr\xC3\xA8me br\xC3\xbbl\xC3\xA9\x65|3:caf\xC3\xA9 cr\xC3\xA8me br\xC3\xbbl\xC3\xA9\x65");
    expect_phrases("\xD0\x9C\xD0\x95\xD0\x94 \xCE\x9C\xCE\x95\xCE\x9B\xCE\x99", "1:\xD0\xBC\xD0\xB5\xD0\xB4|1:\xCE\xBC\xCE\xB5\xCE\xBB\xCE\xB9|2:\xD0\xBC\xD0\xB5\xD0\xB4 \xCE\xBC\xCE\xB5\xCE\xBB\xCE\xB9");
    expect_phrases("\xE6\x8A\xB9\xE8\x8C\xB6\xE3\x80\x82good", "1:\xE6\x8A\xB9\xE8\x8C\xB6|1:good");    /* CJK full stop */
    /* emoji and symbols separate words without ending the phrase */
    expect_phrases("love\xF0\x9F\x98\x8Dit\xC2\xA9 cookies", "1:love|1:cookies");
    /* HTML character references */
    expect_phrases("Mac &amp; cheese", "1:mac|1:cheese|2:mac cheese");
    expect_phrases("&quot;fresh&quot; bread", "1:fresh|1:bread");
    expect_phrases("don&#39;t caf&#233; &#x41;", "1:dont|1:caf\xC3\xA9|2:dont caf\xC3\xA9"); /* "a": a stop word */
    expect_phrases("AT&T rocks", "1:rocks");                 /* "at" and "t" are stop words */
    expect_phrases("&bogus; &#0; &#xD800; fine", "1:fine");
    /* invalid UTF-8 separates words; output stays valid UTF-8 */
    expect_phrases("bad\xFFword \xC3 x\xE2\x82", "1:bad|1:word|2:bad word|1:x|2:word x|3:bad word x");
    /* a word longer than PHRASE_WORD_MAX is left out and ends the phrase */
    expect_phrases("nice aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa tea", "1:nice|1:tea");
    expect_phrases("x\ny", "1:x|1:y");
    expect_phrases("3 stars", "1:3|1:stars|2:3 stars");
}

static void test_stop_words(void)
{
    size_t n = 0;
    for (; phrases_stop_words[n]; n++) {
        if (n) CHECK(strcmp(phrases_stop_words[n - 1], phrases_stop_words[n]) < 0, "stop words not sorted at '%s'", phrases_stop_words[n]);
        CHECK(phrases_stop_word(phrases_stop_words[n], strlen(phrases_stop_words[n])), "'%s' not found", phrases_stop_words[n]);
    }
    CHECK(n > 100, "only %zu stop words", n);
    const char *content[] = {"not", "no", "never", "dont", "good", "best", "ever", "tea", "aa", "zzz", "yours2", ""};
    for (size_t i = 0; i < sizeof content / sizeof content[0]; i++)
        CHECK(!phrases_stop_word(content[i], strlen(content[i])), "'%s' taken for a stop word", content[i]);
    CHECK(phrases_stop_word("there's", 5), "a prefix of the text is the word");
}

static void test_tally(void)
{
    struct tally *t = tally_new(8);
    struct tally_entry *e = tally_get(t, "tea", 3);
    CHECK(e->count == 0 && strcmp(e->key, "tea") == 0 && e->len == 3, "a new entry starts at zero");
    e->count = 5;
    CHECK(tally_get(t, "tea", 3)->count == 5, "the same key finds the same entry");
    CHECK(tally_get(t, "te", 2)->count == 0, "a prefix is another key");
    CHECK(tally_size(t) == 2, "two keys, got %zu", tally_size(t));
    /* keys with NUL bytes and equal hashes by length are distinct */
    tally_get(t, "a\0b", 3)->count = 1;
    CHECK(tally_get(t, "a\0c", 3)->count == 0, "keys compare by all their bytes");
    tally_free(t);

    /* a full table drops the least counted half first; the most counted stay exact */
    t = tally_new(100);
    for (int i = 0; i < 100; i++) {
        char key[16];
        int n = snprintf(key, sizeof key, "k%d", i);
        tally_get(t, key, (size_t)n)->count = (uint64_t)i + 1; /* k0 = 1 ... k99 = 100 */
    }
    CHECK(tally_dropped(t) == 0 && tally_shortfall(t) == 0, "nothing dropped while there is room");
    tally_get(t, "new", 3)->count = 1;
    CHECK(tally_dropped(t) >= 50, "a full table drops at least half, dropped %llu", (unsigned long long)tally_dropped(t));
    CHECK(tally_size(t) <= 51, "then holds at most half plus the new key, holds %zu", tally_size(t));
    CHECK(tally_shortfall(t) >= 50 && tally_shortfall(t) <= 51, "shortfall is the median dropped, got %llu",
          (unsigned long long)tally_shortfall(t));
    const struct tally_entry *top[5];
    size_t n = tally_top(t, 5, top);
    CHECK(n == 5 && strcmp(top[0]->key, "k99") == 0 && top[0]->count == 100 && strcmp(top[4]->key, "k95") == 0,
          "the most counted stay, in order: %s %s", n ? top[0]->key : "-", n > 4 ? top[4]->key : "-");
    tally_free(t);

    /* every key counted once: each prune empties the table, memory stays bounded */
    t = tally_new(1000);
    for (int i = 0; i < 100000; i++) {
        char key[16];
        int k = snprintf(key, sizeof key, "%d", i);
        tally_get(t, key, (size_t)k)->count++;
        if (tally_size(t) > 1000) { CHECK(0, "the table grew past its bound: %zu", tally_size(t)); break; }
    }
    CHECK(tally_dropped(t) > 90000, "dropped %llu", (unsigned long long)tally_dropped(t));
    tally_free(t);

    /* a frequent key among many rare ones survives every prune with its exact count */
    t = tally_new(64);
    for (int i = 0; i < 10000; i++) {
        tally_get(t, "frequent", 8)->count++;
        char key[16];
        int k = snprintf(key, sizeof key, "rare%d", i);
        tally_get(t, key, (size_t)k)->count++;
    }
    n = tally_top(t, 1, top);
    CHECK(n == 1 && strcmp(top[0]->key, "frequent") == 0 && top[0]->count == 10000, "frequent kept exact: %llu",
          n ? (unsigned long long)top[0]->count : 0ULL);
    tally_free(t);

    /* per-label counts grow on demand */
    t = tally_new(4);
    e = tally_get(t, "p", 1);
    tally_count_label(e, 0);
    tally_count_label(e, 20);
    tally_count_label(e, 20);
    CHECK(e->by_label_len >= 21 && e->by_label[0] == 1 && e->by_label[20] == 2 && e->by_label[5] == 0, "per-label counts");
    tally_free(t);

    /* ties in tally_top go by key */
    t = tally_new(8);
    tally_get(t, "b", 1)->count = 2;
    tally_get(t, "a", 1)->count = 2;
    tally_get(t, "c", 1)->count = 3;
    n = tally_top(t, 8, top);
    CHECK(n == 3 && !strcmp(top[0]->key, "c") && !strcmp(top[1]->key, "a") && !strcmp(top[2]->key, "b"), "ties by key");
    tally_free(t);
}

static void expect_html(const char *in, size_t n, const char *want)
{
    struct buf b;
    buf_init(&b);
    html_put_text(&b, in, n);
    CHECK(b.data && strcmp(b.data, want) == 0, "html of '%s': want '%s', got '%s'", in, want, b.data ? b.data : "");
    buf_free(&b);
}

static void test_html(void)
{
    expect_html("plain caf\xC3\xA9", 11, "plain caf\xC3\xA9");
    expect_html("</script><b a=\"x\" b='y'>&amp;", 29, "&lt;/script&gt;&lt;b a=&quot;x&quot; b=&#39;y&#39;&gt;&amp;amp;");
    expect_html("bad\xFF\xC3", 5, "bad\\xFF\\xC3");
    expect_html("a\0b", 3, "a");  /* NUL is kept as a byte; the C string ends there */

    struct buf b;
    buf_init(&b);
    const char *json = "{\"t\":\"</script><!-- & >\",\"n\":1}";
    html_put_json_data(&b, json, strlen(json));
    CHECK(!strstr(b.data, "<") && !strstr(b.data, ">") && !strstr(b.data, "&"), "no markup left: %s", b.data);
    CHECK(strcmp(b.data, "{\"t\":\"\\u003c/script\\u003e\\u003c!-- \\u0026 \\u003e\",\"n\":1}") == 0, "json data: %s", b.data);
    buf_clear(&b);

    struct rn_err err = {{0}};
    CHECK(html_put_script(&b, "var a = 1 < 2;", 14, &err) == 0 && strcmp(b.data, "<script>var a = 1 < 2;</script>\n") == 0,
          "a script: %s", b.data);
    CHECK(html_put_script(&b, "x = '</SCRIPT>'", 15, &err) == -1 && strstr(err.msg, "</script"), "a script that ends itself: %s", err.msg);
    CHECK(html_put_script(&b, "x = '<!--'", 10, &err) == -1, "a script with <!--");
    CHECK(html_put_style(&b, "a{}</style>", 11, &err) == -1, "a style that ends itself");
    buf_clear(&b);
    html_put_count(&b, 0);
    buf_putc(&b, ' ');
    html_put_count(&b, 999);
    buf_putc(&b, ' ');
    html_put_count(&b, 1000);
    buf_putc(&b, ' ');
    html_put_count(&b, 1234567);
    CHECK(strcmp(b.data, "0 999 1,000 1,234,567") == 0, "counts: %s", b.data);
    buf_free(&b);
}

int main(void)
{
    test_phrases();
    test_stop_words();
    test_tally();
    test_html();
    return check_report("test_report");
}
