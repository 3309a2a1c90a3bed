/* json_scan.c: a forward-only JSON reader that allocates nothing (see json_scan.h).
 *
 * The grammar is RFC 8259's. Strings are checked for control characters, escapes and UTF-8 as
 * they are crossed; numbers for their shape, and for a size jansson accepts. */
#include "core/json_scan.h"

#include "core/json.h"

#include <string.h>

void jscan_init(struct jscan *s, const char *text, size_t len)
{
    s->p = text;
    s->end = text + len;
}

static void skip_space(struct jscan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t')) s->p++;
}

int jscan_peek(struct jscan *s)
{
    skip_space(s);
    return s->p < s->end ? (unsigned char)*s->p : -1;
}

int jscan_at_end(struct jscan *s)
{
    skip_space(s);
    return s->p == s->end;
}

int jscan_open(struct jscan *s, char c)
{
    if (jscan_peek(s) != (unsigned char)c) return 0;
    s->p++;
    return 1;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

/* The string at s->p (its opening quote). Appends the unescaped text to out when out is set.
 * *escaped tells whether the raw text held a backslash. */
static int scan_string(struct jscan *s, struct buf *out, int *escaped)
{
    if (s->p == s->end || *s->p != '"') return -1;
    const char *p = s->p + 1, *end = s->end;
    *escaped = 0;
    for (;;) {
        const char *run = p;
        while (p < end) {
            unsigned char c = (unsigned char)*p;
            if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80) break;
            p++;
        }
        if (out && p > run) buf_put(out, run, (size_t)(p - run));
        if (p == end) return -1;
        unsigned char c = (unsigned char)*p;
        if (c == '"') break;
        if (c < 0x20) return -1;
        if (c >= 0x80) {
            size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
            if ((size_t)(end - p) < n || !rn_utf8_valid(p, n, NULL)) return -1;
            if (out) buf_put(out, p, n);
            p += n;
            continue;
        }
        /* an escape */
        *escaped = 1;
        if (end - p < 2) return -1;
        char e = p[1], plain;
        p += 2;
        switch (e) {
        case '"': plain = '"'; break;
        case '\\': plain = '\\'; break;
        case '/': plain = '/'; break;
        case 'b': plain = '\b'; break;
        case 'f': plain = '\f'; break;
        case 'n': plain = '\n'; break;
        case 'r': plain = '\r'; break;
        case 't': plain = '\t'; break;
        case 'u': {
            unsigned cp, low;
            if (end - p < 4 || hex4(p, &cp)) return -1;
            p += 4;
            if (cp == 0) return -1; /* jansson refuses NUL by default: let it say so */
            if (cp >= 0xDC00 && cp <= 0xDFFF) return -1;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &low) || low < 0xDC00 || low > 0xDFFF)
                    return -1;
                p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            }
            if (out) json_put_utf8(out, cp);
            continue;
        }
        default: return -1;
        }
        if (out) buf_putc(out, plain);
    }
    s->p = p + 1;
    return 0;
}

static int digits(struct jscan *s)
{
    const char *start = s->p;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9') s->p++;
    return s->p > start ? 0 : -1;
}

/* A number's shape; *integral is 1 when it has no fraction or exponent. A number jansson
 * might refuse for its size (an integer of more than 18 digits, a real that could overflow a
 * double) reads as an error too, so jansson decides. */
static int scan_number(struct jscan *s, int *integral)
{
    if (s->p < s->end && *s->p == '-') s->p++;
    if (s->p == s->end) return -1;
    const char *int_start = s->p;
    if (*s->p == '0') s->p++;
    else if (digits(s)) return -1;
    size_t int_digits = (size_t)(s->p - int_start);
    *integral = 1;
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (digits(s)) return -1;
        *integral = 0;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-')) s->p++;
        const char *exp_start = s->p;
        if (digits(s)) return -1;
        if (s->p - exp_start > 2) return -1; /* up to e99: with the limit below, below 1e300 */
        *integral = 0;
    }
    if ((*integral && int_digits > 18) || int_digits > 200) return -1;
    return 0;
}

static int literal(struct jscan *s, const char *word, size_t n)
{
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0) return -1;
    s->p += n;
    return 0;
}

static int skip_value(struct jscan *s, int depth);

/* After the separator that precedes the next item: 1 for an item, 0 at `close` (consumed). */
static int next_item(struct jscan *s, int *count, char close)
{
    int c = jscan_peek(s);
    if (c == close) { s->p++; return 0; }
    if ((*count)++ > 0) {
        if (c != ',') return -1;
        s->p++;
        if (jscan_peek(s) < 0) return -1;
    }
    return 1;
}

int jscan_element(struct jscan *s, int *count)
{
    return next_item(s, count, ']');
}

int jscan_member(struct jscan *s, int *count, const char **key, size_t *key_len)
{
    int more = next_item(s, count, '}');
    if (more <= 0) return more;
    const char *start = s->p + 1;
    int escaped;
    if (scan_string(s, NULL, &escaped) || escaped) return -1;
    *key = start;
    *key_len = (size_t)(s->p - 1 - start);
    if (jscan_peek(s) != ':') return -1;
    s->p++;
    return jscan_peek(s) < 0 ? -1 : 1;
}

static int skip_value(struct jscan *s, int depth)
{
    int c = jscan_peek(s), integral, escaped, more, count = 0;
    switch (c) {
    case '{': {
        if (depth >= JSCAN_MAX_DEPTH) return -1;
        s->p++;
        const char *key;
        size_t key_len;
        while ((more = jscan_member(s, &count, &key, &key_len)) > 0)
            if (skip_value(s, depth + 1)) return -1;
        return more;
    }
    case '[':
        if (depth >= JSCAN_MAX_DEPTH) return -1;
        s->p++;
        while ((more = jscan_element(s, &count)) > 0)
            if (skip_value(s, depth + 1)) return -1;
        return more;
    case '"': return scan_string(s, NULL, &escaped);
    case 't': return literal(s, "true", 4);
    case 'f': return literal(s, "false", 5);
    case 'n': return literal(s, "null", 4);
    default: return scan_number(s, &integral);
    }
}

int jscan_skip(struct jscan *s)
{
    return skip_value(s, 0);
}

int jscan_string(struct jscan *s, struct buf *out)
{
    int escaped;
    if (jscan_peek(s) != '"') return -1;
    return scan_string(s, out, &escaped);
}

int jscan_integer(struct jscan *s, int64_t *value)
{
    int c = jscan_peek(s), integral;
    if (c != '-' && (c < '0' || c > '9')) return -1;
    const char *start = s->p;
    if (scan_number(s, &integral) || !integral) return -1;
    const char *p = start;
    int negative = *p == '-';
    if (negative) p++;
    if (s->p - p > 18) return -1;
    int64_t v = 0;
    for (; p < s->p; p++) v = v * 10 + (*p - '0');
    *value = negative ? -v : v;
    return 0;
}
