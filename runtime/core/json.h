/* json.h: the Lua-free pieces of runnel's JSON: numbers written as runnel writes them, and
 * where a byte offset of a JSON text is, counted as jansson counts it (line from 1, column in
 * characters). The Lua <-> JSON codec that uses them is formats/json.h. */
#ifndef RUNNEL_CORE_JSON_H
#define RUNNEL_CORE_JSON_H

#include <stddef.h>
#include <stdint.h>
#include "core/util.h"

/* Append an integer in decimal (by hand, inline: snprintf was a visible share of the
 * per-record cost). */
static inline void json_put_integer(struct buf *out, int64_t value)
{
    char tmp[24];
    char *end = tmp + sizeof tmp, *p = end;
    uint64_t u = value < 0 ? 0 - (uint64_t)value : (uint64_t)value;
    do { *--p = (char)('0' + u % 10); u /= 10; } while (u);
    if (value < 0) *--p = '-';
    buf_put(out, p, (size_t)(end - p));
}

/* Append a float with the fewest digits that read back the same, kept recognisable as a float
 * (3.0 stays 3.0, not 3); NaN and infinities become null, which is all JSON can hold. */
void json_put_real(struct buf *out, double value);

/* Append text as a JSON string literal (quotes included), escaped as buf_put_json_string
 * escapes it, checking in the same pass that it is UTF-8. 0, or -1 with out as it was and
 * *bad_at (when not NULL) the offset of the first byte that is not. */
int json_put_string(struct buf *out, const char *text, size_t n, size_t *bad_at);

/* The length of the UTF-8 sequence that starts s[0..n) (n >= 1), or 0 when there is none:
 * no overlong forms, no surrogates, nothing past U+10FFFF (rn_utf8_valid's and jansson's rules). */
size_t json_utf8_length(const unsigned char *s, size_t n);

/* Append code point cp (at most U+10FFFF, not a surrogate) as UTF-8. */
void json_put_utf8(struct buf *out, uint32_t cp);

/* The line (from 1) and column of byte offset `at` of text[0..len): lines end at '\n'; the
 * column counts the characters (UTF-8 lead bytes) before `at` on its line, so it is 0 at the
 * start of a line. These are the numbers jansson puts in its errors. */
void json_text_position(const char *text, size_t len, size_t at, int *line, int *column);

#endif
