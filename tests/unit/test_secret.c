/* test_secret.c: the one redactor: every occurrence, a secret inside another, the cut of a
 * fixed-size message, repeats and empty values. */
#include <string.h>

#include "core/secret.h"
#include "check.h"

int main(void)
{
    struct secret_set s;
    secret_set_init(&s);
    secret_set_add(&s, "abc");
    secret_set_add(&s, "");
    secret_set_add(&s, NULL);
    secret_set_add(&s, "abcdef123");
    secret_set_add(&s, "abc");
    CHECK(s.count == 2, "repeats and empty values are not kept: %zu", s.count);
    CHECK(!strcmp(s.values[0], "abcdef123"), "the longest first");

    struct buf b, scratch;
    buf_init(&b);
    buf_init(&scratch);
    buf_puts(&b, "key=abcdef123 and abc, abcabc");
    secret_redact_buf(&s, &b, &scratch);
    CHECK(!strcmp(b.data, "key=[redacted] and [redacted], [redacted][redacted]"), "every occurrence: %s", b.data);
    buf_clear(&b);
    buf_puts(&b, "nothing to hide");
    secret_redact_buf(&s, &b, &scratch);
    CHECK(!strcmp(b.data, "nothing to hide"), "untouched: %s", b.data);

    char out[16];
    secret_redact_text(&s, "0123456abcdef123", out, sizeof out);
    CHECK(!strcmp(out, "0123456[redacte"), "redacted before the cut, so no part leaks: %s", out);

    struct rn_err err;
    CHECK(secret_fail(&s, &err, "HTTP 401: bad key %s", "abcdef123") == -1, "secret_fail returns -1");
    CHECK(!strcmp(err.msg, "HTTP 401: bad key [redacted]"), "secret_fail redacts: %s", err.msg);

    buf_free(&b);
    buf_free(&scratch);
    secret_set_free(&s);
    CHECK(s.count == 0 && s.values == NULL, "freed");
    return check_report("test_secret");
}
