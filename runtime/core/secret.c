/* secret.c: secret values and their redaction (see secret.h). */
#include "core/secret.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void secret_set_init(struct secret_set *s)
{
    s->values = NULL;
    s->count = 0;
}

void secret_set_free(struct secret_set *s)
{
    for (size_t i = 0; i < s->count; i++) secret_free(s->values[i]);
    free(s->values);
    secret_set_init(s);
}

void secret_free(char *value)
{
    if (!value) return;
    explicit_bzero(value, strlen(value));
    free(value);
}

void secret_set_add(struct secret_set *s, const char *value)
{
    if (!value || !*value) return;
    for (size_t i = 0; i < s->count; i++)
        if (!strcmp(s->values[i], value)) return;
    s->values = rn_realloc(s->values, (s->count + 1) * sizeof *s->values);
    size_t at = s->count++, len = strlen(value);
    while (at > 0 && strlen(s->values[at - 1]) < len) { /* keep the longest first */
        s->values[at] = s->values[at - 1];
        at--;
    }
    s->values[at] = rn_strdup(value);
}

void secret_redact_buf(const struct secret_set *s, struct buf *b, struct buf *scratch)
{
    for (size_t k = 0; k < s->count; k++) {
        const char *secret = s->values[k];
        size_t n = strlen(secret);
        if (!b->len || !memmem(b->data, b->len, secret, n)) continue;
        buf_clear(scratch);
        size_t i = 0;
        for (char *hit; (hit = memmem(b->data + i, b->len - i, secret, n)); i = (size_t)(hit - b->data) + n) {
            buf_put(scratch, b->data + i, (size_t)(hit - (b->data + i)));
            buf_puts(scratch, SECRET_MARK);
        }
        buf_put(scratch, b->data + i, b->len - i);
        struct buf t = *b;
        *b = *scratch;
        *scratch = t;
    }
}

void secret_redact_text(const struct secret_set *s, const char *text, char *out, size_t n)
{
    struct buf b, scratch;
    buf_init(&b);
    buf_init(&scratch);
    buf_puts(&b, text);
    secret_redact_buf(s, &b, &scratch);
    snprintf(out, n, "%s", b.data ? b.data : "");
    buf_free(&b);
    buf_free(&scratch);
}

int secret_vfail(const struct secret_set *s, struct rn_err *err, const char *fmt, va_list ap)
{
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    char *full = rn_malloc(n > 0 ? (size_t)n + 1 : 1);
    full[0] = '\0';
    if (n > 0) vsnprintf(full, (size_t)n + 1, fmt, again);
    va_end(again);
    secret_redact_text(s, full, err->msg, sizeof err->msg);
    free(full);
    return -1;
}

int secret_fail(const struct secret_set *s, struct rn_err *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    secret_vfail(s, err, fmt, ap);
    va_end(ap);
    return -1;
}
