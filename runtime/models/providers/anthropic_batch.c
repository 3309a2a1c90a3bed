/* anthropic_batch.c: model.anthropic's batch API (provider.h, provider_batch_ops): Message
 * Batches. A spool line is {"custom_id","params": the Messages body build made}; submitting
 * posts the lines as {"requests":[...]} to /v1/messages/batches; polling reads
 * GET /v1/messages/batches/{id} (processing_status in_progress, canceling, ended); the results
 * are one JSONL file at results_url, a line {"custom_id","result":{"type":"succeeded",
 * "message"}} per request, or "errored" with the error Anthropic would have answered, or
 * "canceled", "expired".
 *
 * It only builds requests and reads answers; the engine (models/batch.c) sends them, and reads
 * each result's message through anthropic.c's classify and parse like a live answer. */
#include "models/providers/anthropic_int.h"

#include <stdlib.h>
#include <string.h>

#include "core/http.h"

static int anthropic_batch_line(void *self, const char *custom_id, const struct http_request *call, struct buf *out,
                                struct rn_err *err)
{
    (void)self;
    if (!call->body.len || call->body.data[0] != '{') return rn_fail(err, "batch: the request body is not a JSON object");
    buf_puts(out, "{\"custom_id\":");
    buf_put_json_string(out, custom_id, strlen(custom_id));
    buf_puts(out, ",\"params\":");
    buf_put(out, call->body.data, call->body.len);
    buf_puts(out, "}\n");
    return 0;
}

static int read_json(const struct http_response *answer, json_t **root, struct rn_err *err)
{
    json_error_t jerr;
    *root = json_loadb(answer->body, answer->body_len, 0, &jerr);
    if (json_is_object(*root)) return 0;
    json_decref(*root);
    *root = NULL;
    return rn_fail(err, "the answer is not a JSON object (%s)", jerr.text);
}

static int64_t count_of(json_t *counts, const char *name)
{
    json_t *v = json_object_get(counts, name);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

/* A message batch object into b: its state, counts and results_url. */
static int read_batch(struct provider_batch *b, json_t *root, const char *base, struct rn_err *err)
{
    const char *status = json_string_value(json_object_get(root, "processing_status"));
    if (!status) return rn_fail(err, "the message batch has no processing_status");
    snprintf(b->status, sizeof b->status, "%s", status);
    json_t *counts = json_object_get(root, "request_counts");
    int64_t succeeded = count_of(counts, "succeeded"), processing = count_of(counts, "processing");
    int64_t failed = count_of(counts, "errored") + count_of(counts, "canceled") + count_of(counts, "expired");
    b->total = processing + succeeded + failed;
    b->completed = succeeded;
    b->failed = failed;
    if (strcmp(status, "ended") != 0) {
        b->phase = PROVIDER_BATCH_RUNNING; /* in_progress, canceling */
        return 0;
    }
    b->phase = PROVIDER_BATCH_ENDED;
    const char *url = json_string_value(json_object_get(root, "results_url"));
    if (url && *url) {
        provider_batch_set(&b->results[0], url, strlen(url));
    } else { /* the results' own path, when the batch object names none */
        struct buf path;
        buf_init(&path);
        buf_printf(&path, "%s/v1/messages/batches/%s/results", base, b->id);
        provider_batch_set(&b->results[0], path.data, path.len);
        buf_free(&path);
    }
    return 0;
}

static int anthropic_batch_submit(void *self, struct provider_batch *b, const struct provider_spool *spool,
                                  const struct http_response *answer, struct http_request *req, struct rn_err *err)
{
    struct anthropic_endpoint e;
    anthropic_endpoint_of(self, &e);
    if (!answer) { /* {"requests":[the lines, comma-joined]} */
        size_t len;
        char *data = rn_read_file(spool->path, &len, err);
        if (!data) return -1;
        b->step = 0;
        b->phase = PROVIDER_BATCH_SUBMITTING;
        req->method = "POST";
        buf_printf(&req->url, "%s/v1/messages/batches", e.base);
        req->headers = e.headers;
        buf_puts(&req->body, "{\"requests\":[");
        int first = 1;
        for (size_t at = 0; at < len;) {
            char *nl = memchr(data + at, '\n', len - at);
            size_t n = nl ? (size_t)(nl - (data + at)) : len - at;
            if (n) {
                if (!first) buf_putc(&req->body, ',');
                buf_put(&req->body, data + at, n);
                first = 0;
            }
            at += n + 1;
        }
        buf_puts(&req->body, "]}");
        free(data);
        return 1;
    }
    json_t *root;
    if (read_json(answer, &root, err)) return -1;
    json_t *id = json_object_get(root, "id");
    int rc = 0;
    if (!json_is_string(id) || !json_string_length(id)) {
        rc = rn_fail(err, "POST %s/v1/messages/batches: the answer has no batch id", e.base);
    } else {
        provider_batch_set(&b->id, json_string_value(id), json_string_length(id));
        b->step = 1;
        if (read_batch(b, root, e.base, err)) rc = -1;
        else b->phase = PROVIDER_BATCH_RUNNING; /* it is polled before its results are read */
    }
    json_decref(root);
    return rc;
}

static int anthropic_batch_poll(void *self, struct provider_batch *b, const struct http_response *answer,
                                struct http_request *req, struct rn_err *err)
{
    struct anthropic_endpoint e;
    anthropic_endpoint_of(self, &e);
    if (!answer) {
        req->method = "GET";
        buf_printf(&req->url, "%s/v1/messages/batches/%s", e.base, b->id);
        req->headers = e.headers;
        return 0;
    }
    json_t *root;
    if (read_json(answer, &root, err)) return -1;
    int rc = read_batch(b, root, e.base, err);
    json_decref(root);
    return rc;
}

static int anthropic_batch_fetch(void *self, const struct provider_batch *b, int part, struct http_request *req)
{
    if (part != 0 || !b->results[0]) return 0;
    struct anthropic_endpoint e;
    anthropic_endpoint_of(self, &e);
    req->method = "GET";
    buf_puts(&req->url, b->results[0]);
    req->headers = e.headers;
    return 1;
}

/* The HTTP status Anthropic answers each error type with, for classify. */
static long status_of(const char *type)
{
    static const struct { const char *type; long status; } statuses[] = {
        {"invalid_request_error", 400}, {"authentication_error", 401}, {"billing_error", 402},
        {"permission_error", 403}, {"not_found_error", 404}, {"request_too_large", 413},
        {"rate_limit_error", 429}, {"api_error", 500}, {"timeout_error", 504}, {"overloaded_error", 529},
    };
    for (size_t i = 0; type && i < sizeof statuses / sizeof statuses[0]; i++)
        if (strcmp(type, statuses[i].type) == 0) return statuses[i].status;
    return 500;
}

static int anthropic_batch_result(void *self, const char *line, size_t len, struct provider_batch_result *r,
                                  struct rn_err *err)
{
    (void)self;
    json_error_t jerr;
    json_t *root = json_loadb(line, len, 0, &jerr);
    json_t *id = json_object_get(root, "custom_id"), *result = json_object_get(root, "result");
    const char *type = json_string_value(json_object_get(result, "type"));
    if (!json_is_string(id) || !type) {
        json_decref(root);
        return rn_fail(err, "a result line without custom_id or result.type (%s)", root ? "not a result" : jerr.text);
    }
    buf_put(&r->custom_id, json_string_value(id), json_string_length(id));
    json_t *body = NULL;
    if (strcmp(type, "succeeded") == 0) {
        r->status = 200;
        body = json_object_get(result, "message");
    } else if (strcmp(type, "errored") == 0) {
        /* the error Anthropic would have answered: {"type":"error","error":{"type","message"}} */
        body = json_object_get(result, "error");
        json_t *inner = json_object_get(body, "error");
        const char *error_type = json_string_value(json_object_get(inner ? inner : body, "type"));
        r->status = status_of(error_type);
    } else {
        r->status = 0;
        r->why = strcmp(type, "expired") == 0    ? "expired before it ran"
                 : strcmp(type, "canceled") == 0 ? "cancelled before it ran"
                                                 : "the batch gave it no answer";
    }
    if (body) {
        char *text = json_dumps(body, JSON_COMPACT);
        if (text) buf_puts(&r->body, text);
        free(text);
    }
    json_decref(root);
    return 0;
}

const struct provider_batch_ops anthropic_batch_ops = {
    .price = 0.5,
    .max_requests = 100000,
    .max_bytes = 256 << 20,
    .line = anthropic_batch_line,
    .submit = anthropic_batch_submit,
    .poll = anthropic_batch_poll,
    .fetch = anthropic_batch_fetch,
    .result = anthropic_batch_result,
};
