/* json.c: JSON numbers out, and positions in JSON text (see json.h). */
#include "core/json.h"

#include <math.h>
#include <string.h>

void json_put_real(struct buf *out, double value)
{
    if (!isfinite(value)) { buf_put(out, "null", 4); return; }
    char tmp[RN_DOUBLE_MAX + 2];
    int n = rn_format_double(tmp, value);
    if (!strpbrk(tmp, ".eEn")) { tmp[n++] = '.'; tmp[n++] = '0'; tmp[n] = '\0'; }
    buf_put(out, tmp, (size_t)n);
}

/* The bytes of v that need a look (a control byte, '"', '\\', one >= 0x80) as their high
 * bits; the lowest one set is exact (the tests' false positives only sit above a true one). */
static inline uint64_t special8(uint64_t v)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    uint64_t quote = v ^ (ones * '"'), backslash = v ^ (ones * '\\');
    return (((v - ones * 0x20) & ~v) | ((quote - ones) & ~quote) | ((backslash - ones) & ~backslash) | v) & highs;
}

size_t json_utf8_length(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
    else return 0;
    if (n < len) return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[k] & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return len;
}

int json_put_string(struct buf *out, const char *text, size_t n, size_t *bad_at)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t mark = out->len;
    buf_reserve(out, n + 2);
    out->data[out->len++] = '"';
    size_t i = 0, run = 0; /* run: the first byte not yet copied; none from there to i needs escaping */
    for (;;) {
        while (n - i >= 8) {
            uint64_t v;
            memcpy(&v, s + i, 8);
            uint64_t special = special8(v);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            if (special) {
                i += (size_t)(__builtin_ctzll(special) >> 3);
                break;
            }
#else
            if (special) break;
#endif
            i += 8;
        }
        while (i < n && s[i] >= 0x20 && s[i] < 0x80 && s[i] != '"' && s[i] != '\\') i++;
        if (i == n) break;
        unsigned char c = s[i];
        if (c >= 0x80) {
            size_t len = json_utf8_length(s + i, n - i);
            if (!len) {
                if (bad_at) *bad_at = i;
                out->len = mark;
                out->data[mark] = '\0';
                return -1;
            }
            i += len;
            continue;
        }
        buf_put(out, s + run, i - run);
        run = ++i;
        buf_put_json_escape(out, c);
    }
    buf_put(out, s + run, n - run);
    buf_putc(out, '"');
    return 0;
}

void json_put_utf8(struct buf *out, uint32_t cp)
{
    char b[4];
    size_t n;
    if (cp < 0x80) { b[0] = (char)cp; n = 1; }
    else if (cp < 0x800) { b[0] = (char)(0xC0 | cp >> 6); b[1] = (char)(0x80 | (cp & 0x3F)); n = 2; }
    else if (cp < 0x10000) {
        b[0] = (char)(0xE0 | cp >> 12); b[1] = (char)(0x80 | (cp >> 6 & 0x3F)); b[2] = (char)(0x80 | (cp & 0x3F)); n = 3;
    } else {
        b[0] = (char)(0xF0 | cp >> 18); b[1] = (char)(0x80 | (cp >> 12 & 0x3F));
        b[2] = (char)(0x80 | (cp >> 6 & 0x3F)); b[3] = (char)(0x80 | (cp & 0x3F)); n = 4;
    }
    buf_put(out, b, n);
}

void json_text_position(const char *text, size_t len, size_t at, int *line, int *column)
{
    if (at > len) at = len;
    int l = 1, c = 0;
    for (size_t i = 0; i < at; i++) {
        unsigned char b = (unsigned char)text[i];
        if (b == '\n') { l++; c = 0; }
        else if (b < 0x80 || (b >= 0xC2 && b <= 0xF4)) c++; /* a character starts here */
    }
    *line = l;
    *column = c;
}
