/* util.c: errors, buffers, allocation, time, UTF-8 and file helpers (see util.h). */
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int rn_fail(struct rn_err *err, const char *fmt, ...)
{
    if (!err) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

int rn_wrap(struct rn_err *err, const char *fmt, ...)
{
    if (!err) return -1;
    char prefix[512], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t used = strlen(prefix);
    if (used > sizeof err->msg - 3) used = sizeof err->msg - 3;
    memcpy(err->msg, prefix, used);
    memcpy(err->msg + used, ": ", 2);
    size_t rest = sizeof err->msg - used - 3;
    size_t old_len = strnlen(old, sizeof old);
    if (old_len > rest) old_len = rest;
    memcpy(err->msg + used + 2, old, old_len);
    err->msg[used + 2 + old_len] = '\0';
    return -1;
}

static void out_of_memory(size_t n)
{
    fprintf(stderr, "runnel: out of memory allocating %zu bytes\n", n);
    abort();
}

void *rn_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) out_of_memory(n);
    return p;
}

void *rn_aligned_calloc(size_t align, size_t n)
{
    size_t rounded = (n + align - 1) / align * align;
    void *p = aligned_alloc(align, rounded);
    if (!p) out_of_memory(rounded);
    memset(p, 0, rounded);
    return p;
}

void *rn_calloc(size_t count, size_t n)
{
    void *p = calloc(count ? count : 1, n ? n : 1);
    if (!p) out_of_memory(count * n);
    return p;
}

void *rn_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) out_of_memory(n);
    return q;
}

char *rn_strdup(const char *s) { return rn_strndup(s, strlen(s)); }

char *rn_strndup(const char *s, size_t n)
{
    char *p = rn_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void buf_init(struct buf *b) { b->data = NULL; b->len = 0; b->cap = 0; }

void buf_free(struct buf *b)
{
    free(b->data);
    buf_init(b);
}

void buf_grow(struct buf *b, size_t extra)
{
    if (extra > SIZE_MAX / 2 - b->len) out_of_memory(extra);
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap *= 2;
    b->data = rn_realloc(b->data, cap);
    b->cap = cap;
}

void buf_puts(struct buf *b, const char *s) { buf_put(b, s, strlen(s)); }

void buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

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

int rn_write_all(int fd, const void *data, size_t n)
{
    const char *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int rn_write_file_atomic(const char *path, const void *data, size_t n, struct rn_err *err)
{
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
        return rn_fail(err, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return rn_fail(err, "%s: cannot create: %s", tmp, strerror(errno));
    if (rn_write_all(fd, data, n) < 0 || fsync(fd) < 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return rn_fail(err, "%s: cannot write: %s", tmp, strerror(e));
    }
    if (close(fd) < 0) return rn_fail(err, "%s: cannot close: %s", tmp, strerror(errno));
    if (rename(tmp, path) < 0) return rn_fail(err, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
    return 0;
}

char *rn_read_file(const char *path, size_t *len_out, struct rn_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) { rn_fail(err, "%s: cannot open: %s", path, strerror(errno)); return NULL; }
    struct buf b;
    buf_init(&b);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) buf_put(&b, chunk, n);
    if (ferror(f)) {
        rn_fail(err, "%s: cannot read: %s", path, strerror(errno));
        fclose(f);
        buf_free(&b);
        return NULL;
    }
    fclose(f);
    buf_reserve(&b, 0);
    if (len_out) *len_out = b.len;
    return b.data;
}

int rn_mkdir_p(const char *path, struct rn_err *err)
{
    char tmp[4096];
    size_t n = strlen(path);
    if (n == 0) return 0;
    if (n >= sizeof tmp) return rn_fail(err, "%s: path too long", path);
    memcpy(tmp, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0') continue;
        char saved = tmp[i];
        tmp[i] = '\0';
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
            return rn_fail(err, "%s: cannot create directory: %s", tmp, strerror(errno));
        tmp[i] = saved;
    }
    return 0;
}

int rn_mkdir_parent(const char *file_path, struct rn_err *err)
{
    const char *slash = strrchr(file_path, '/');
    if (!slash || slash == file_path) return 0;
    char dir[4096];
    size_t n = (size_t)(slash - file_path);
    if (n >= sizeof dir) return rn_fail(err, "%s: path too long", file_path);
    memcpy(dir, file_path, n);
    dir[n] = '\0';
    return rn_mkdir_p(dir, err);
}
