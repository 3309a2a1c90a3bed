/* err.c: error values and checked allocation (see err.h). */
#include "core/err.h"
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void rn_out_of_memory(size_t n)
{
    log_error("out of memory allocating %zu bytes", n);
    abort();
}

void *rn_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) rn_out_of_memory(n);
    return p;
}

void *rn_aligned_calloc(size_t align, size_t n)
{
    size_t rounded = (n + align - 1) / align * align;
    void *p = aligned_alloc(align, rounded);
    if (!p) rn_out_of_memory(rounded);
    memset(p, 0, rounded);
    return p;
}

void *rn_calloc(size_t count, size_t n)
{
    void *p = calloc(count ? count : 1, n ? n : 1);
    if (!p) rn_out_of_memory(count * n);
    return p;
}

void *rn_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) rn_out_of_memory(n);
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
