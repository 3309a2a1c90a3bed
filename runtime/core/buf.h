/* buf.h: a growable byte buffer, NUL-terminated, owned by whoever calls buf_init. */
#ifndef RUNNEL_BUF_H
#define RUNNEL_BUF_H

#include <stddef.h>

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
/* Cut back to the first len bytes (len <= b->len): what a failed append leaves behind. */
static inline void buf_truncate(struct buf *b, size_t len) { b->len = len; if (b->data) b->data[len] = '\0'; }

#endif
