/* html.c: escaping for HTML pages (see html.h). */
#include "serve/html.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

void html_put_text(struct buf *b, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t bad;
        size_t run = i;
        while (i < n && s[i] != '&' && s[i] != '<' && s[i] != '>' && s[i] != '"' && s[i] != '\'') i++;
        /* the run has no markup characters; keep it valid UTF-8 */
        while (run < i) {
            if (rn_utf8_valid(s + run, i - run, &bad)) { buf_put(b, s + run, i - run); break; }
            buf_put(b, s + run, bad);
            buf_printf(b, "\\x%02X", (unsigned char)s[run + bad]);
            run += bad + 1;
        }
        if (i == n) break;
        switch (s[i++]) {
        case '&': buf_puts(b, "&amp;"); break;
        case '<': buf_puts(b, "&lt;"); break;
        case '>': buf_puts(b, "&gt;"); break;
        case '"': buf_puts(b, "&quot;"); break;
        default: buf_puts(b, "&#39;"); break;
        }
    }
}

void html_put_json_data(struct buf *b, const char *json, size_t n)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        const char *esc;
        switch (json[i]) {
        case '<': esc = "\\u003c"; break;
        case '>': esc = "\\u003e"; break;
        case '&': esc = "\\u0026"; break;
        default: continue;
        }
        buf_put(b, json + run, i - run);
        buf_put(b, esc, 6);
        run = i + 1;
    }
    buf_put(b, json + run, n - run);
}

/* 1 when text[0..n) holds needle, ignoring ASCII case. */
static int contains_nocase(const char *text, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (text[i] == '<' && strncasecmp(text + i, needle, k) == 0) return 1;
    return 0;
}

static int put_element(struct buf *b, const char *tag, const char *text, size_t n, struct rn_err *err)
{
    char end[16];
    snprintf(end, sizeof end, "</%s", tag);
    if (contains_nocase(text, n, end) || contains_nocase(text, n, "<!--"))
        return rn_fail(err, "an inlined <%s> holds \"%s\" or \"<!--\", which would end it early", tag, end);
    buf_printf(b, "<%s>", tag);
    buf_put(b, text, n);
    buf_printf(b, "</%s>\n", tag);
    return 0;
}

int html_put_script(struct buf *b, const char *text, size_t n, struct rn_err *err)
{
    return put_element(b, "script", text, n, err);
}

int html_put_style(struct buf *b, const char *text, size_t n, struct rn_err *err)
{
    return put_element(b, "style", text, n, err);
}

void html_put_count(struct buf *b, unsigned long long n)
{
    char digits[32];
    int len = snprintf(digits, sizeof digits, "%llu", n);
    for (int i = 0; i < len; i++) {
        if (i > 0 && (len - i) % 3 == 0) buf_putc(b, ',');
        buf_putc(b, digits[i]);
    }
}
