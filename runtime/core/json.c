/* json.c: JSON numbers out, and positions in JSON text (see json.h). */
#include "core/json.h"

#include <math.h>
#include <string.h>

void json_put_integer(struct buf *out, int64_t value)
{
    /* by hand: snprintf was a visible share of the per-record cost */
    char tmp[24];
    char *end = tmp + sizeof tmp, *p = end;
    uint64_t u = value < 0 ? 0 - (uint64_t)value : (uint64_t)value;
    do { *--p = (char)('0' + u % 10); u /= 10; } while (u);
    if (value < 0) *--p = '-';
    buf_put(out, p, (size_t)(end - p));
}

void json_put_real(struct buf *out, double value)
{
    if (!isfinite(value)) { buf_put(out, "null", 4); return; }
    char tmp[RN_DOUBLE_MAX + 2];
    int n = rn_format_double(tmp, value);
    if (!strpbrk(tmp, ".eEn")) { tmp[n++] = '.'; tmp[n++] = '0'; tmp[n] = '\0'; }
    buf_put(out, tmp, (size_t)n);
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
