/* err.h: the error value every fallible function fills, and allocation that cannot fail.
 *
 * A function that can fail returns -1 (or NULL) and fills a struct rn_err with a message that
 * names the file, line, record or option at fault; main() decides what to print. */
#ifndef RUNNEL_ERR_H
#define RUNNEL_ERR_H

#include <stddef.h>

struct rn_err {
    char msg[1024];
};

/* Fill err with a printf-style message; always returns -1 so callers can `return rn_fail(...)`. */
int rn_fail(struct rn_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefix the existing message with more context: "context: old message". Returns -1. */
int rn_wrap(struct rn_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Print "out of memory allocating N bytes" and abort: runnel treats OOM as fatal, as Redis does. */
void rn_out_of_memory(size_t n) __attribute__((noreturn));
/* Allocation that aborts the process on out-of-memory. */
void *rn_malloc(size_t n);
void *rn_calloc(size_t count, size_t n);
/* Zeroed, for a struct with _Alignas members (align: a power of two); free() it. */
void *rn_aligned_calloc(size_t align, size_t n);
void *rn_realloc(void *p, size_t n);
char *rn_strdup(const char *s);
char *rn_strndup(const char *s, size_t n);

#endif
