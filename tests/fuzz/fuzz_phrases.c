/* fuzz_phrases.c: libFuzzer target for the report's text and escaping (runtime/serve/
 * phrases.c, html.c): review text from anywhere, split into words and phrases, and data
 * written into a page.
 *
 * Every phrase must be valid UTF-8, of one to three words joined by single spaces, at most
 * PHRASE_MAX bytes, without ASCII capitals, control characters or clause marks, and never a
 * lone stop word; html_put_text must leave no markup character and valid UTF-8;
 * html_put_json_data must leave no < > &. Built and run by tools/fuzz.sh. */
#include <stdlib.h>
#include <string.h>

#include "serve/html.h"
#include "serve/phrases.h"

static void check_phrase(void *ctx, const char *phrase, size_t len, int words)
{
    (void)ctx;
    size_t bad;
    if (len == 0 || len > PHRASE_MAX || strlen(phrase) != len || !rn_utf8_valid(phrase, len, &bad)) abort();
    if (phrase[0] == ' ' || phrase[len - 1] == ' ') abort();
    int spaces = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)phrase[i];
        if (c < 0x20 || (c >= 'A' && c <= 'Z') || strchr(".,;:!?()[]{}\"<>'&", c)) abort();
        if (c == ' ') {
            if (phrase[i + 1] == ' ') abort();
            spaces++;
        }
    }
    if (spaces + 1 != words || words < 1 || words > 3) abort();
    if (words == 1 && phrases_stop_word(phrase, len)) abort();
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    const char *text = (const char *)data;
    phrases_each(text, size, check_phrase, NULL);

    struct buf b;
    buf_init(&b);
    html_put_text(&b, text, size);
    size_t bad;
    for (size_t i = 0; i < b.len; i++)
        if (strchr("<>\"'", b.data[i]) && b.data[i]) abort();
    if (b.len && !rn_utf8_valid(b.data, b.len, &bad)) abort();
    buf_clear(&b);
    html_put_json_data(&b, text, size);
    for (size_t i = 0; i < b.len; i++)
        if (b.data[i] == '<' || b.data[i] == '>' || b.data[i] == '&') abort();
    buf_free(&b);
    return 0;
}
