/* sigv4.c: AWS Signature Version 4 (see sigv4.h). */
#include "core/sigv4.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "core/sha256.h"

static int unreserved(unsigned char c) { return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~'; }

static void put_encoded(struct buf *b, const char *s, size_t n, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (unreserved(c) || (keep_slash && c == '/')) {
            buf_putc(b, (char)c);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            buf_put(b, e, 3);
        }
    }
}

static int hex_value(char c) { return isdigit((unsigned char)c) ? c - '0' : isxdigit((unsigned char)c) ? (tolower((unsigned char)c) - 'a' + 10) : -1; }

/* Percent-decode s[0..n) into out (cleared first). */
static void put_decoded(struct buf *out, const char *s, size_t n)
{
    buf_clear(out);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
            buf_putc(out, (char)(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2])));
            i += 2;
        } else {
            buf_putc(out, s[i]);
        }
    }
}

/* The path with dot segments removed and repeated slashes collapsed (RFC 3986 5.2.4); it
 * ends with a slash when its last segment is empty, "." or "..". */
static void normalize_path(const char *path, struct buf *out)
{
    const char *segs[256];
    size_t lens[256], n = 0;
    for (const char *p = path; *p;) {
        while (*p == '/') p++;
        const char *start = p;
        while (*p && *p != '/') p++;
        size_t len = (size_t)(p - start);
        if (len == 0 || (len == 1 && start[0] == '.')) continue;
        if (len == 2 && start[0] == '.' && start[1] == '.') {
            if (n) n--;
            continue;
        }
        if (n < 256) {
            segs[n] = start;
            lens[n] = len;
            n++;
        }
    }
    const char *last = strrchr(path, '/');
    last = last ? last + 1 : path;
    int trailing = !*last || !strcmp(last, ".") || !strcmp(last, "..");
    buf_clear(out);
    for (size_t i = 0; i < n; i++) {
        buf_putc(out, '/');
        buf_put(out, segs[i], lens[i]);
    }
    if (n == 0 || trailing) buf_putc(out, '/');
}

struct param {
    struct buf name, value; /* encoded */
};

static int param_compare(const void *a, const void *b)
{
    const struct param *x = a, *y = b;
    int c = strcmp(x->name.data, y->name.data);
    return c ? c : strcmp(x->value.data, y->value.data);
}

static void put_query(struct buf *out, const char *query)
{
    if (!query || !*query) return;
    size_t count = 1;
    for (const char *p = query; *p; p++) count += *p == '&';
    struct param *params = rn_calloc(count, sizeof *params);
    struct buf raw;
    buf_init(&raw);
    size_t n = 0;
    for (const char *p = query; *p;) {
        const char *end = strchr(p, '&');
        if (!end) end = p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(end - p));
        const char *name_end = eq ? eq : end;
        if (end > p) {
            buf_init(&params[n].name);
            buf_init(&params[n].value);
            put_decoded(&raw, p, (size_t)(name_end - p));
            put_encoded(&params[n].name, raw.data ? raw.data : "", raw.len, 0);
            buf_put(&params[n].name, "", 0); /* allocated and terminated even when empty */
            if (eq) {
                put_decoded(&raw, eq + 1, (size_t)(end - eq - 1));
                put_encoded(&params[n].value, raw.data ? raw.data : "", raw.len, 0);
            }
            buf_put(&params[n].value, "", 0);
            n++;
        }
        p = *end ? end + 1 : end;
    }
    qsort(params, n, sizeof *params, param_compare);
    for (size_t i = 0; i < n; i++) {
        if (i) buf_putc(out, '&');
        buf_put(out, params[i].name.data, params[i].name.len);
        buf_putc(out, '=');
        buf_put(out, params[i].value.data, params[i].value.len);
        buf_free(&params[i].name);
        buf_free(&params[i].value);
    }
    buf_free(&raw);
    free(params);
}

struct canon_header {
    char name[128];
    size_t order;
    const char *value;
};

static int header_compare(const void *a, const void *b)
{
    const struct canon_header *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->order > y->order) - (x->order < y->order);
}

/* The value trimmed, every run of white space one space. */
static void put_trimmed(struct buf *out, const char *v)
{
    while (isspace((unsigned char)*v)) v++;
    int space = 0;
    for (; *v; v++) {
        if (isspace((unsigned char)*v)) { space = 1; continue; }
        if (space) buf_putc(out, ' ');
        space = 0;
        buf_putc(out, *v);
    }
}

static void hex_sha256(const void *data, size_t n, char hex[2 * SHA256_SIZE + 1])
{
    struct sha256 h;
    uint8_t digest[SHA256_SIZE];
    sha256_init(&h);
    sha256_update(&h, data, n);
    sha256_final(&h, digest);
    sha256_hex(digest, hex);
}

void sigv4_amz_date(time_t t, char out[17])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

int sigv4_sign(const struct sigv4_request *req, const struct sigv4_credentials *cred, const char *amz_date,
               struct buf *authorization, struct buf *canonical, struct buf *string_to_sign, struct rn_err *err)
{
    if (strlen(amz_date) != 16 || amz_date[8] != 'T' || amz_date[15] != 'Z')
        return rn_fail(err, "sigv4: date '%s' is not YYYYMMDDTHHMMSSZ", amz_date);
    if (req->nheaders > SIGV4_MAX_HEADERS) return rn_fail(err, "sigv4: more than %d headers to sign", SIGV4_MAX_HEADERS);
    struct canon_header headers[SIGV4_MAX_HEADERS];
    for (size_t i = 0; i < req->nheaders; i++) {
        size_t len = strlen(req->headers[i].name);
        if (len >= sizeof headers[i].name) return rn_fail(err, "sigv4: header name '%.40s...' too long", req->headers[i].name);
        for (size_t k = 0; k <= len; k++) headers[i].name[k] = (char)tolower((unsigned char)req->headers[i].name[k]);
        headers[i].order = i;
        headers[i].value = req->headers[i].value;
    }
    qsort(headers, req->nheaders, sizeof headers[0], header_compare);

    struct buf creq, signed_names, scratch;
    buf_init(&creq);
    buf_init(&signed_names);
    buf_init(&scratch);
    buf_puts(&creq, req->method);
    buf_putc(&creq, '\n');
    normalize_path(req->path && *req->path ? req->path : "/", &scratch);
    put_encoded(&creq, scratch.data, scratch.len, 1);
    buf_putc(&creq, '\n');
    put_query(&creq, req->query);
    buf_putc(&creq, '\n');
    for (size_t i = 0; i < req->nheaders; i++) {
        int same = i && !strcmp(headers[i].name, headers[i - 1].name);
        if (same) {
            buf_putc(&creq, ',');
        } else {
            if (i) buf_putc(&creq, '\n');
            buf_puts(&creq, headers[i].name);
            buf_putc(&creq, ':');
            if (signed_names.len) buf_putc(&signed_names, ';');
            buf_puts(&signed_names, headers[i].name);
        }
        put_trimmed(&creq, headers[i].value);
    }
    buf_puts(&creq, "\n\n");
    buf_put(&creq, signed_names.data ? signed_names.data : "", signed_names.len);
    buf_putc(&creq, '\n');
    char payload_hash[2 * SHA256_SIZE + 1], creq_hash[2 * SHA256_SIZE + 1];
    hex_sha256(req->payload ? req->payload : "", req->payload_len, payload_hash);
    buf_puts(&creq, payload_hash);
    hex_sha256(creq.data, creq.len, creq_hash);

    char date[9];
    memcpy(date, amz_date, 8);
    date[8] = '\0';
    buf_clear(&scratch);
    buf_printf(&scratch, "AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n%s", amz_date, date, cred->region, cred->service,
               creq_hash);

    /* the signing key: HMAC chain over the date, region, service and "aws4_request" */
    uint8_t key[SHA256_SIZE];
    size_t secret_len = strlen(cred->secret_key);
    char *first = rn_malloc(secret_len + 5);
    memcpy(first, "AWS4", 4);
    memcpy(first + 4, cred->secret_key, secret_len + 1);
    uint8_t step[SHA256_SIZE];
    hmac_sha256(first, secret_len + 4, date, 8, key);
    memset(first, 0, secret_len + 4);
    free(first);
    hmac_sha256(key, sizeof key, cred->region, strlen(cred->region), step);
    hmac_sha256(step, sizeof step, cred->service, strlen(cred->service), key);
    hmac_sha256(key, sizeof key, "aws4_request", 12, step);
    memcpy(key, step, sizeof key);
    memset(step, 0, sizeof step);
    uint8_t signature[SHA256_SIZE];
    char signature_hex[2 * SHA256_SIZE + 1];
    hmac_sha256(key, sizeof key, scratch.data, scratch.len, signature);
    memset(key, 0, sizeof key);
    sha256_hex(signature, signature_hex);

    buf_printf(authorization, "AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request, SignedHeaders=%s, Signature=%s",
               cred->access_key, date, cred->region, cred->service, signed_names.data ? signed_names.data : "",
               signature_hex);
    if (canonical) buf_put(canonical, creq.data, creq.len);
    if (string_to_sign) buf_put(string_to_sign, scratch.data, scratch.len);
    buf_free(&creq);
    buf_free(&signed_names);
    buf_free(&scratch);
    return 0;
}
