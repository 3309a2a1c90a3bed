/* text.c: text as runnel writes and checks it: JSON string escapes, visible bytes, UTF-8,
 * numbers, durations, the clock (see text.h). */
#include "core/text.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Whether any of the 8 bytes in v is a control character, '"' or '\\' (exact: the classic
 * "has a byte less than n" and "has a zero byte" tests). */
static inline int any_escape8(uint64_t v)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    uint64_t quote = v ^ (ones * '"'), backslash = v ^ (ones * '\\');
    return ((((v - ones * 0x20) & ~v) | ((quote - ones) & ~quote) | ((backslash - ones) & ~backslash)) & highs) != 0;
}

/* Bytes JSON strings must escape: control characters, '"' and '\\'. */
static const unsigned char escaped_byte[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    ['"'] = 1, ['\\'] = 1,
};

void buf_put_json_escape(struct buf *b, unsigned char c)
{
    static const char hex[] = "0123456789abcdef";
    switch (c) {
    case '"': buf_put(b, "\\\"", 2); break;
    case '\\': buf_put(b, "\\\\", 2); break;
    case '\n': buf_put(b, "\\n", 2); break;
    case '\r': buf_put(b, "\\r", 2); break;
    case '\t': buf_put(b, "\\t", 2); break;
    default: {
        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        buf_put(b, esc, 6);
    }
    }
}

void buf_put_json_string(struct buf *b, const char *s, size_t n)
{
    buf_reserve(b, n + 2);
    b->data[b->len++] = '"';
    size_t i = 0, run = 0; /* run: start of the bytes not yet copied, none of which need escaping */
    for (;;) {
        /* most text needs no escaping: step over it 8 bytes at a time, then byte by byte */
        while (n - i >= 8) {
            uint64_t v;
            memcpy(&v, s + i, 8);
            if (any_escape8(v)) break;
            i += 8;
        }
        while (i < n && !escaped_byte[(unsigned char)s[i]]) i++;
        if (i == n) break;
        unsigned char c = (unsigned char)s[i];
        buf_put(b, s + run, i - run);
        run = ++i;
        buf_put_json_escape(b, c);
    }
    buf_put(b, s + run, n - run);
    buf_putc(b, '"');
}

int rn_format_double(char out[RN_DOUBLE_MAX], double v)
{
    int n = snprintf(out, RN_DOUBLE_MAX, "%.15g", v);
    if (strtod(out, NULL) != v) n = snprintf(out, RN_DOUBLE_MAX, "%.16g", v);
    if (strtod(out, NULL) != v) n = snprintf(out, RN_DOUBLE_MAX, "%.17g", v);
    return n;
}

double rn_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int64_t rn_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int rn_parse_duration_ms(const char *text, int64_t *ms_out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || errno || v < 0) return -1;
    double scale;
    if (*end == '\0' || strcmp(end, "s") == 0) scale = 1000;
    else if (strcmp(end, "ms") == 0) scale = 1;
    else if (strcmp(end, "m") == 0) scale = 60000;
    else if (strcmp(end, "h") == 0) scale = 3600000;
    else return -1;
    *ms_out = (int64_t)(v * scale + 0.5);
    return 0;
}

void buf_put_visible(struct buf *b, const void *data, size_t n, size_t max)
{
    const unsigned char *s = data;
    int cut = n > max;
    if (cut) {
        n = max;
        while (n > 0 && (s[n] & 0xC0) == 0x80) n--; /* do not split a character */
    }
    size_t pos = 0;
    while (pos < n) {
        size_t bad;
        if (rn_utf8_valid((const char *)s + pos, n - pos, &bad)) {
            buf_put(b, s + pos, n - pos);
            break;
        }
        buf_put(b, s + pos, bad);
        buf_printf(b, "\\x%02X", s[pos + bad]);
        pos += bad + 1;
    }
    if (cut) buf_puts(b, "...");
}

int rn_utf8_valid(const char *str, size_t n, size_t *bad_at)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        while (n - i >= 8) { /* ASCII runs 8 bytes at a time */
            uint64_t v;
            memcpy(&v, s + i, 8);
            if (v & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i == n) break;
        unsigned char c = s[i];
        if (c < 0x80) { i++; continue; }
        size_t len;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
        else goto bad;
        if (i + len > n) goto bad;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) goto bad;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
            goto bad;
        i += len;
        continue;
    bad:
        if (bad_at) *bad_at = i;
        return 0;
    }
    return 1;
}

void rn_format_duration_ms(char *out, size_t size, int64_t ms)
{
    if (ms < 1000) {
        snprintf(out, size, "%lldms", (long long)ms);
        return;
    }
    long long s = (long long)(ms / 1000), h = s / 3600, m = s % 3600 / 60;
    s %= 60;
    if (h) snprintf(out, size, m || s ? "%lldh%lldm%llds" : "%lldh", h, m, s);
    else if (m) snprintf(out, size, s ? "%lldm%llds" : "%lldm", m, s);
    else snprintf(out, size, "%llds", s);
}
