/* text.h: text as runnel writes and checks it: JSON string escapes, bytes shown as visible
 * UTF-8, UTF-8 validity, numbers that read back exactly, durations, and the monotonic clock. */
#ifndef RUNNEL_TEXT_H
#define RUNNEL_TEXT_H

#include <stddef.h>
#include <stdint.h>
#include "core/buf.h"

/* Append s as a JSON string literal (with quotes), escaping as RFC 8259 requires. */
void buf_put_json_string(struct buf *b, const char *s, size_t n);
/* Append the escape of one byte a JSON string must escape (a control character, '"', '\\'). */
void buf_put_json_escape(struct buf *b, unsigned char c);
/* Append bytes as valid UTF-8 text: invalid bytes become \xNN; at most max bytes of input
 * (then "..."). For raw input shown in dead letters and messages. */
void buf_put_visible(struct buf *b, const void *data, size_t n, size_t max);

/* The shortest of %.15g, %.16g and %.17g that reads back as v (finite v). Returns its length. */
#define RN_DOUBLE_MAX 40
int rn_format_double(char out[RN_DOUBLE_MAX], double v);

/* Monotonic time in seconds and milliseconds. */
double rn_now(void);
int64_t rn_now_ms(void);

/* Parse a duration like "30s", "250ms", "2m", "1.5" (seconds). Returns -1 on a bad value. */
int rn_parse_duration_ms(const char *text, int64_t *ms_out);
/* A duration for people: "2m13s", "10m", "1h5m0s", "850ms". */
void rn_format_duration_ms(char *out, size_t size, int64_t ms);

/* Return 1 if s[0..n) is valid UTF-8, else 0 and *bad_at = byte offset of the first bad byte. */
int rn_utf8_valid(const char *s, size_t n, size_t *bad_at);

#endif
