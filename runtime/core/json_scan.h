/* json_scan.h: a forward-only JSON reader that allocates nothing.
 *
 * A hot path that needs two or three values out of a small document (a model's answer, once
 * per record) reads them in place and steps over the rest, checking what it steps over, so a
 * document it accepts is valid JSON. Anything it does not handle (keys with escapes, \u0000,
 * nesting deeper than JSCAN_MAX_DEPTH, numbers too large for jansson or near it) reads as an
 * error: callers then fall back to jansson,
 * which either accepts the document or says exactly what is wrong with it. */
#ifndef RUNNEL_JSON_SCAN_H
#define RUNNEL_JSON_SCAN_H

#include <stddef.h>
#include <stdint.h>
#include "core/util.h"

#define JSCAN_MAX_DEPTH 64

struct jscan {
    const char *p, *end;
};

void jscan_init(struct jscan *s, const char *text, size_t len);

/* Consume `c` ('{', '[') after whitespace: 1 when it was there, 0 (nothing consumed) if not. */
int jscan_open(struct jscan *s, char c);

/* The next member of an object opened with jscan_open(s, '{'). *count starts at 0. Returns
 * 1 with the key (raw bytes, never escaped) and the scanner at its value, 0 after the closing
 * brace, -1 on a syntax error or a key with escapes. */
int jscan_member(struct jscan *s, int *count, const char **key, size_t *key_len);

/* The next element of an array opened with jscan_open(s, '['). *count starts at 0. Returns 1
 * with the scanner at the element, 0 after the closing bracket, -1 on a syntax error. */
int jscan_element(struct jscan *s, int *count);

/* The next value's first byte ('{', '[', '"', 't', 'f', 'n', '-' or a digit), or -1 at the end. */
int jscan_peek(struct jscan *s);

/* Step over one value, checking it. 0, or -1 on a syntax error. */
int jscan_skip(struct jscan *s);

/* A string value, unescaped and appended to out. 0, or -1 (not a string, bad escape, invalid
 * UTF-8, a control character or \u0000). */
int jscan_string(struct jscan *s, struct buf *out);

/* An integer value (no fraction or exponent, at most 18 digits). 0, or -1. */
int jscan_integer(struct jscan *s, int64_t *value);

/* 1 when only whitespace is left. */
int jscan_at_end(struct jscan *s);

#endif
