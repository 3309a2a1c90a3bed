/* registry.c: the Schema Registry client (see registry.h). One private HTTP client and one
 * reusable request; a call runs the client's loop until its request is done. */
#include <jansson.h>
#include <lauxlib.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/http.h"
#include "core/http_tls.h"
#include "formats/avro/registry.h"
#include "lua/job.h"
#include "lua/options.h"

#define CONTENT_TYPE "application/vnd.schemaregistry.v1+json"
#define MAX_ANSWER_BYTES (16u * 1024 * 1024)
#define FIRST_BACKOFF_MS 250

struct avro_registry {
    char *url;                /* without a trailing slash */
    struct http *http;
    struct http_request request;
    int64_t timeout_ms;
    int retries;
    char *authorization;      /* "Basic ..." or NULL (owned, wiped) */
};

const char *avro_registry_url(const struct avro_registry *r) { return r->url; }

struct avro_registry *avro_registry_open(lua_State *L, int tbl, struct secret_set *secrets, struct rn_err *err)
{
    const char *url = opt_string(L, tbl, "url", "");
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
        rn_fail(err, "registry.url: '%s' is not an http:// or https:// URL", url);
        return NULL;
    }
    struct avro_registry *r = rn_calloc(1, sizeof *r);
    r->url = rn_strdup(url);
    size_t n = strlen(r->url);
    while (n > 0 && r->url[n - 1] == '/') r->url[--n] = '\0';
    r->timeout_ms = opt_duration_ms(L, tbl, "timeout", 10000);
    r->retries = (int)opt_integer(L, tbl, "retries", 2);
    r->http = http_new(2, err);
    if (!r->http) {
        rn_wrap(err, "registry");
        avro_registry_close(r);
        return NULL;
    }
    const char *ca_file = opt_string(L, tbl, "ca_file", NULL);
    if (ca_file) {
        if (access(ca_file, R_OK) != 0) {
            rn_fail(err, "registry.ca_file: cannot read %s", ca_file);
            avro_registry_close(r);
            return NULL;
        }
        struct http_transport transport;
        http_transport_init(&transport);
        transport.ca_file = rn_strdup(ca_file);
        http_set_transport(r->http, &transport);
        http_transport_free(&transport);
    }
    http_request_init(&r->request);
    const char *user = opt_string(L, tbl, "user", NULL);
    const char *password = NULL;
    if (opt_push(L, tbl, "password")) {
        password = luajob_secret_value(L, -1);
        lua_pop(L, 1); /* the value lives in the checked table */
    }
    if (password && !user) {
        rn_fail(err, "registry.password: given without registry.user");
        avro_registry_close(r);
        return NULL;
    }
    if (user) {
        if (strchr(user, ':')) {
            rn_fail(err, "registry.user: a user name cannot hold ':' (basic auth)");
            avro_registry_close(r);
            return NULL;
        }
        struct buf pair;
        buf_init(&pair);
        buf_printf(&pair, "%s:%s", user, password ? password : "");
        size_t cap = 4 * ((pair.len + 2) / 3) + 1;
        unsigned char *b64 = rn_malloc(cap);
        EVP_EncodeBlock(b64, (const unsigned char *)pair.data, (int)pair.len);
        size_t hn = strlen((char *)b64) + 7;
        r->authorization = rn_malloc(hn);
        snprintf(r->authorization, hn, "Basic %s", (char *)b64);
        if (password) secret_set_add(secrets, password);
        secret_set_add(secrets, (char *)b64);
        memset(pair.data, 0, pair.len);
        memset(b64, 0, cap);
        free(b64);
        buf_free(&pair);
    }
    return r;
}

void avro_registry_close(struct avro_registry *r)
{
    if (!r) return;
    if (r->http) {
        http_cancel(r->http, &r->request);
        http_request_free(&r->request);
        http_free(r->http);
    }
    if (r->authorization) {
        memset(r->authorization, 0, strlen(r->authorization));
        free(r->authorization);
    }
    free(r->url);
    free(r);
}

/* Run one request to its end: 0 with an answer (any status), -1 and err when none came. */
static int run_once(struct avro_registry *r, struct rn_err *err)
{
    int64_t now = rn_now_ms();
    if (http_start(r->http, &r->request, now, err)) return -1;
    for (;;) {
        int64_t due = http_due_ms(r->http);
        int wait = due < 0 ? 100 : due <= now ? 0 : (int)(due - now > 100 ? 100 : due - now);
        if (http_wait(r->http, wait, &now, err)) return -1;
        now = rn_now_ms();
        if (http_run_timer(r->http, now, err) < 0) return -1;
        struct http_request *done = http_next_done(r->http);
        if (done) break;
    }
    if (r->request.result != CURLE_OK)
        return rn_fail(err, "%s", r->request.error[0] ? r->request.error : curl_easy_strerror(r->request.result));
    return 0;
}

/* "error 40403: Schema 7 not found" from the registry's {error_code, message}, or the body. */
static void describe_answer(const struct http_request *q, struct buf *out)
{
    json_t *body = json_loadb(q->response.data ? q->response.data : "", q->response.len, 0, NULL);
    json_t *code = json_object_get(body, "error_code");
    const char *message = json_string_value(json_object_get(body, "message"));
    if (json_is_integer(code)) buf_printf(out, ", error %lld", (long long)json_integer_value(code));
    if (message) buf_printf(out, ": %s", message);
    else if (q->response.len) {
        buf_puts(out, ": ");
        buf_put_visible(out, q->response.data, q->response.len, 300);
    }
    json_decref(body);
}

/* Send method path [body] with the retries; on REGISTRY_OK *answer is the parsed body (the
 * caller decrefs). */
static enum registry_result call(struct avro_registry *r, const char *method, const char *path, const char *body,
                                 json_t **answer, struct rn_err *err)
{
    struct http_request *q = &r->request;
    int64_t backoff = FIRST_BACKOFF_MS;
    enum registry_result result = REGISTRY_UNAVAILABLE;
    for (int attempt = 0;; attempt++) {
        http_request_clear(q);
        q->method = method;
        buf_printf(&q->url, "%s%s", r->url, path);
        if (body) buf_puts(&q->body, body);
        http_request_add_header(q, "Accept", CONTENT_TYPE);
        http_request_add_header(q, "Content-Type", CONTENT_TYPE);
        if (r->authorization) http_request_add_header(q, "Authorization", r->authorization);
        q->timeout_ms = r->timeout_ms;
        q->max_response = MAX_ANSWER_BYTES;
        struct rn_err why;
        int sent = run_once(r, &why) == 0;
        long status = sent ? q->status : 0;
        if (sent && status >= 200 && status < 300) {
            json_error_t jerr;
            *answer = json_loadb(q->response.data ? q->response.data : "", q->response.len, 0, &jerr);
            if (*answer) return REGISTRY_OK;
            rn_fail(err, "schema registry %s: %s %s: HTTP %ld, but the answer is not JSON: %s", r->url, method, path,
                    status, jerr.text);
            return REGISTRY_UNAVAILABLE;
        }
        struct buf d;
        buf_init(&d);
        if (sent) {
            buf_printf(&d, "HTTP %ld", status);
            describe_answer(q, &d);
        } else {
            buf_printf(&d, "no answer: %s", why.msg);
        }
        int retry = !sent || status >= 500 || status == 429;
        if (!retry || attempt >= r->retries) {
            if (retry && attempt > 0) buf_printf(&d, " (after %d attempts)", attempt + 1);
            rn_fail(err, "schema registry %s: %s %s: %s", r->url, method, path, d.data);
            buf_free(&d);
            result = !retry && status == 404 ? REGISTRY_NOT_FOUND : retry ? REGISTRY_UNAVAILABLE : REGISTRY_REFUSED;
            return result;
        }
        buf_free(&d);
        usleep((useconds_t)backoff * 1000);
        backoff *= 2;
    }
}

enum registry_result avro_registry_schema(struct avro_registry *r, uint32_t id, struct buf *out, struct rn_err *err)
{
    char path[64];
    snprintf(path, sizeof path, "/schemas/ids/%u", (unsigned)id);
    json_t *answer = NULL;
    enum registry_result rc = call(r, "GET", path, NULL, &answer, err);
    if (rc != REGISTRY_OK) return rc;
    const char *type = json_string_value(json_object_get(answer, "schemaType"));
    const char *schema = json_string_value(json_object_get(answer, "schema"));
    if (type && strcmp(type, "AVRO") != 0) {
        rn_fail(err, "schema registry %s: schema %u is %s, not Avro", r->url, (unsigned)id, type);
        rc = REGISTRY_REFUSED;
    } else if (!schema) {
        rn_fail(err, "schema registry %s: GET %s: the answer has no \"schema\" string", r->url, path);
        rc = REGISTRY_UNAVAILABLE;
    } else {
        buf_clear(out);
        buf_puts(out, schema);
    }
    json_decref(answer);
    return rc;
}

/* A subject as a path segment: bytes other than letters, digits and -._~ percent-encoded. */
static void put_segment(struct buf *out, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("-._~", *p))
            buf_putc(out, (char)*p);
        else
            buf_printf(out, "%%%02X", *p);
    }
}

enum registry_result avro_registry_register(struct avro_registry *r, const char *subject, const char *schema,
                                            int lookup_only, uint32_t *id, struct rn_err *err)
{
    struct buf path;
    buf_init(&path);
    buf_puts(&path, "/subjects/");
    put_segment(&path, subject);
    if (!lookup_only) buf_puts(&path, "/versions");
    json_t *request = json_pack("{s:s}", "schema", schema);
    char *body = json_dumps(request, JSON_COMPACT);
    json_decref(request);
    json_t *answer = NULL;
    enum registry_result rc = call(r, "POST", path.data, body, &answer, err);
    free(body);
    if (rc == REGISTRY_OK) {
        json_t *value = json_object_get(answer, "id");
        if (!json_is_integer(value) || json_integer_value(value) < 0 || json_integer_value(value) > UINT32_MAX) {
            rn_fail(err, "schema registry %s: POST %s: the answer has no schema id", r->url, path.data);
            rc = REGISTRY_UNAVAILABLE;
        } else {
            *id = (uint32_t)json_integer_value(value);
        }
        json_decref(answer);
    }
    buf_free(&path);
    return rc;
}
