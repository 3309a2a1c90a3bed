/* html.h: writing HTML pages into a struct buf without letting data become markup.
 *
 * Everything that comes from data goes through html_put_text (element text and attribute
 * values) or, as JSON inside a <script type="application/json">, through html_put_json_data;
 * scripts and styles compiled into the runner go through html_put_script / html_put_style,
 * which refuse text that would end the element early. */
#ifndef RUNNEL_SERVE_HTML_H
#define RUNNEL_SERVE_HTML_H

#include <stddef.h>
#include <string.h>
#include "core/util.h"

/* Append s[0..n) escaped for element text and quoted attribute values (& < > " '). Bytes that
 * are not valid UTF-8 are shown as \xNN, so the page stays valid UTF-8. */
void html_put_text(struct buf *b, const char *s, size_t n);
static inline void html_puts(struct buf *b, const char *s) { html_put_text(b, s, strlen(s)); }

/* Append JSON text (already valid JSON) for the inside of a <script type="application/json">:
 * < > & become \u003c \u003e \u0026, which JSON reads back as the same characters; in valid
 * JSON they occur only inside strings, so nothing else changes and no "</script>" or "<!--"
 * can appear. */
void html_put_json_data(struct buf *b, const char *json, size_t n);

/* Append <script>text</script> (or <style>), for code compiled into the runner. -1 and err
 * when the text holds "</script" ("</style") or "<!--", which would end or confuse the
 * element. */
int html_put_script(struct buf *b, const char *text, size_t n, struct rn_err *err);
int html_put_style(struct buf *b, const char *text, size_t n, struct rn_err *err);

/* Append a count with thousands separators: 1234567 -> "1,234,567". */
void html_put_count(struct buf *b, unsigned long long n);

#endif
