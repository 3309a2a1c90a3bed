/* secret.h: the secret values a plugin holds (API keys, passwords, tokens) and the one
 * redactor that keeps them out of every message, log line, dead letter and summary.
 *
 * A set is filled while a plugin opens and only read afterwards, so librdkafka's threads may
 * redact with it too. Every occurrence of a secret becomes "[redacted]"; a secret that holds
 * another is replaced first, so no part of it survives. */
#ifndef RUNNEL_SECRET_H
#define RUNNEL_SECRET_H

#include <stdarg.h>
#include <stddef.h>
#include "core/util.h"

#define SECRET_MARK "[redacted]"

struct secret_set {
    char **values;   /* owned copies, longest first */
    size_t count;
};

void secret_set_init(struct secret_set *s);
/* Wipe and free every value. */
void secret_set_free(struct secret_set *s);
/* Remember value (copied); empty values and repeats are ignored. */
void secret_set_add(struct secret_set *s, const char *value);

/* Wipe a copy of a secret and free it (NULL: nothing). */
void secret_free(char *value);

/* Replace every secret in b, in place; scratch is the caller's reusable buffer. */
void secret_redact_buf(const struct secret_set *s, struct buf *b, struct buf *scratch);
/* text with every secret replaced, into out (n bytes, always NUL-terminated). The whole text
 * is redacted before it is cut to n, so a secret across the cut cannot leak in part. */
void secret_redact_text(const struct secret_set *s, const char *text, char *out, size_t n);
/* rn_fail, then redact err->msg the same way. Returns -1. */
int secret_fail(const struct secret_set *s, struct rn_err *err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int secret_vfail(const struct secret_set *s, struct rn_err *err, const char *fmt, va_list ap);

#endif
