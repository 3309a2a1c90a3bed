/* model_server_dialect.c: the helpers the dialects of tools/model-server share
 * (model_server_dialect.h): answers and their headers, request headers and bodies. */
#include "model_server_dialect.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void dialect_header(struct dialect_answer *a, const char *name, const char *format, ...)
{
    if (a->header_count == DIALECT_HEADERS_MAX) return;
    a->headers[a->header_count].name = name;
    va_list args;
    va_start(args, format);
    vsnprintf(a->headers[a->header_count].value, sizeof a->headers[0].value, format, args);
    va_end(args);
    a->header_count++;
}

void dialect_json(struct dialect_answer *a, unsigned status, json_t *body)
{
    free(a->body);
    a->status = status;
    a->body = body ? json_dumps(body, JSON_COMPACT) : NULL;
    a->body_len = a->body ? strlen(a->body) : 0;
    json_decref(body);
}

const char *dialect_request_header(const struct dialect_request *r, const char *name)
{
    return MHD_lookup_connection_value(r->connection, MHD_HEADER_KIND, name);
}

json_t *dialect_body_json(const struct dialect_request *r)
{
    json_t *root = json_loadb(r->body ? r->body : "", r->body_len, 0, NULL);
    if (json_is_object(root)) return root;
    json_decref(root);
    return NULL;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if ((c | 32) >= 'a' && (c | 32) <= 'f') return (c | 32) - 'a' + 10;
    return -1;
}

char *dialect_decode(const char *s, size_t n, bool form)
{
    char *out = malloc(n + 1);
    if (!out) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
            out[k++] = (char)(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
            i += 2;
        } else if (form && s[i] == '+') {
            out[k++] = ' ';
        } else {
            out[k++] = s[i];
        }
    }
    out[k] = '\0';
    return out;
}

bool dialect_marked(const char *text, const char *marker) { return text && strstr(text, marker) != NULL; }

void dialect_rfc3339(char out[32], long seconds_from_now)
{
    time_t t = time(NULL) + seconds_from_now;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
