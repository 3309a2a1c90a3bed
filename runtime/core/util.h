/* util.h: the small things every module uses: an error value that carries a message,
 * a growable byte buffer, and checked allocation.
 *
 * Errors: a function that can fail returns -1 (or NULL) and fills a struct rn_err with a
 * message that names the file, line, record or option at fault; main() decides what to print. */
#ifndef RUNNEL_UTIL_H
#define RUNNEL_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>

#define RN_VERSION "0.1.0"

struct rn_err {
    char msg[1024];
};

/* Fill err with a printf-style message; always returns -1 so callers can `return rn_fail(...)`. */
int rn_fail(struct rn_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefix the existing message with more context: "context: old message". Returns -1. */
int rn_wrap(struct rn_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Allocation that aborts the process on out-of-memory: runnel treats OOM as fatal, as Redis does. */
void *rn_malloc(size_t n);
void *rn_calloc(size_t count, size_t n);
/* Zeroed, for a struct with _Alignas members (align: a power of two); free() it. */
void *rn_aligned_calloc(size_t align, size_t n);
void *rn_realloc(void *p, size_t n);
char *rn_strdup(const char *s);
char *rn_strndup(const char *s, size_t n);

/* A growable byte buffer. The owner calls buf_free; data is always NUL-terminated. */
struct buf {
    char *data;
    size_t len;
    size_t cap;
};
void buf_init(struct buf *b);
void buf_free(struct buf *b);
void buf_grow(struct buf *b, size_t extra);
/* The hot paths are inline: one compare when there is room. */
static inline void buf_reserve(struct buf *b, size_t extra)
{
    if (b->cap - b->len <= extra) buf_grow(b, extra);
}
static inline void buf_put(struct buf *b, const void *data, size_t n)
{
    buf_reserve(b, n);
    if (n) __builtin_memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
}
static inline void buf_putc(struct buf *b, char c)
{
    buf_reserve(b, 1);
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
}
void buf_puts(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void buf_clear(struct buf *b) { b->len = 0; if (b->data) b->data[0] = '\0'; }

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

/* Return 1 if s[0..n) is valid UTF-8, else 0 and *bad_at = byte offset of the first bad byte. */
int rn_utf8_valid(const char *s, size_t n, size_t *bad_at);

/* Write all of data to fd; returns -1 with errno set on failure. */
int rn_write_all(int fd, const void *data, size_t n);

/* Write data to path atomically: write path.tmp, fsync, rename. Returns -1 and fills err. */
int rn_write_file_atomic(const char *path, const void *data, size_t n, struct rn_err *err);

/* Read a whole file; caller frees. Returns NULL and fills err. */
char *rn_read_file(const char *path, size_t *len_out, struct rn_err *err);

/* Create a directory and its parents (like mkdir -p). Returns -1 and fills err. */
int rn_mkdir_p(const char *path, struct rn_err *err);
/* Create the parent directory of a file path. */
int rn_mkdir_parent(const char *file_path, struct rn_err *err);

#endif
