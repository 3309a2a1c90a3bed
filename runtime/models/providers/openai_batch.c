/* openai_batch.c: model.openai's batch API (provider.h, provider_batch_ops): the Files and
 * Batches APIs. A spool line is {"custom_id","method":"POST","url","body"}; submitting uploads
 * the spool (POST /files, multipart, purpose=batch) and creates the batch (POST /batches);
 * polling reads GET /batches/{id}; the results are the output file and the error file
 * (GET /files/{id}/content), whose lines carry each call's status_code and body.
 *
 * It only builds requests and reads answers; the engine (models/batch.c) sends them, retries
 * them and keeps the batches in the checkpoint. */
#include "models/providers/openai_int.h"

#include <stdlib.h>
#include <string.h>

#include "core/http.h"

/* The path of a request URL ("http://h:1/v1/chat/completions" -> "/v1/chat/completions"). */
static const char *url_path(const char *url)
{
    const char *scheme = strstr(url, "://");
    const char *path = scheme ? strchr(scheme + 3, '/') : NULL;
    return path ? path : "/";
}

static int openai_batch_line(void *self, const char *custom_id, const struct http_request *call, struct buf *out,
                             struct rn_err *err)
{
    (void)self;
    if (!call->body.len || call->body.data[0] != '{') return rn_fail(err, "batch: the request body is not a JSON object");
    buf_puts(out, "{\"custom_id\":");
    buf_put_json_string(out, custom_id, strlen(custom_id));
    buf_puts(out, ",\"method\":\"POST\",\"url\":");
    const char *path = url_path(call->url.data ? call->url.data : "");
    buf_put_json_string(out, path, strlen(path));
    buf_puts(out, ",\"body\":");
    buf_put(out, call->body.data, call->body.len);
    buf_puts(out, "}\n");
    return 0;
}

static int is_json(const struct http_response *answer, json_t **root, struct rn_err *err)
{
    json_error_t jerr;
    *root = json_loadb(answer->body, answer->body_len, 0, &jerr);
    if (json_is_object(*root)) return 0;
    json_decref(*root);
    *root = NULL;
    return rn_fail(err, "the answer is not a JSON object (%s)", jerr.text);
}

/* A string member's value as a fresh field of b. */
static int take_string(json_t *o, const char *name, char **field)
{
    json_t *v = json_object_get(o, name);
    if (!json_is_string(v) || !json_string_length(v)) {
        provider_batch_set(field, NULL, 0);
        return -1;
    }
    provider_batch_set(field, json_string_value(v), json_string_length(v));
    return 0;
}

/* The upload: multipart/form-data with purpose=batch and the spool as the file. The boundary
 * is made from a hash of the spool and checked not to occur in it. */
static int build_upload(const struct openai_endpoint *e, const struct provider_spool *spool, struct http_request *req,
                        struct rn_err *err)
{
    size_t len;
    char *data = rn_read_file(spool->path, &len, err);
    if (!data) return -1;
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < len; i += 1 + len / 4096) h = (h ^ (unsigned char)data[i]) * 1099511628211ull;
    char boundary[64];
    for (;;) {
        snprintf(boundary, sizeof boundary, "runnel-batch-%016llx", (unsigned long long)h);
        if (!memmem(data, len, boundary, strlen(boundary))) break;
        h = h * 6364136223846793005ull + 1442695040888963407ull;
    }
    req->method = "POST";
    buf_printf(&req->url, "%s/files", e->base);
    req->headers = e->control_headers;
    char type[128];
    snprintf(type, sizeof type, "multipart/form-data; boundary=%s", boundary);
    http_request_add_header(req, "Content-Type", type);
    struct buf *b = &req->body;
    buf_printf(b, "--%s\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n", boundary);
    buf_printf(b, "--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"runnel-%s-%d.jsonl\"\r\n"
                  "Content-Type: application/jsonl\r\n\r\n", boundary, spool->job ? spool->job : "job", spool->number);
    buf_put(b, data, len);
    buf_printf(b, "\r\n--%s--\r\n", boundary);
    free(data);
    return 0;
}

static int openai_batch_submit(void *self, struct provider_batch *b, const struct provider_spool *spool,
                               const struct http_response *answer, struct http_request *req, struct rn_err *err)
{
    struct openai_endpoint e;
    openai_endpoint_of(self, &e);
    if (!answer) {
        b->step = 0;
        b->phase = PROVIDER_BATCH_SUBMITTING;
        return build_upload(&e, spool, req, err) ? -1 : 1;
    }
    json_t *root;
    if (is_json(answer, &root, err)) return -1;
    int rc = 1;
    if (b->step == 0) { /* the file: {"id":"file-...","object":"file",...} */
        if (take_string(root, "id", &b->input)) {
            rc = rn_fail(err, "POST %s/files: the answer has no file id", e.base);
        } else {
            b->step = 1;
            req->method = "POST";
            buf_printf(&req->url, "%s/batches", e.base);
            req->headers = e.json_headers;
            buf_puts(&req->body, "{\"input_file_id\":");
            buf_put_json_string(&req->body, b->input, strlen(b->input));
            char endpoint[512];
            snprintf(endpoint, sizeof endpoint, "%s/%s", e.path, e.embeddings ? "embeddings" : "chat/completions");
            buf_puts(&req->body, ",\"endpoint\":");
            buf_put_json_string(&req->body, endpoint, strlen(endpoint));
            buf_puts(&req->body, ",\"completion_window\":");
            const char *window = spool->window ? spool->window : "24h";
            buf_put_json_string(&req->body, window, strlen(window));
            buf_puts(&req->body, ",\"metadata\":{\"runnel_job\":");
            const char *job = spool->job ? spool->job : "job";
            buf_put_json_string(&req->body, job, strlen(job));
            buf_printf(&req->body, ",\"runnel_batch\":\"%d\"}}", spool->number);
        }
    } else { /* the batch: {"id":"batch_...","status":"validating",...} */
        if (take_string(root, "id", &b->id)) {
            rc = rn_fail(err, "POST %s/batches: the answer has no batch id", e.base);
        } else {
            const char *status = json_string_value(json_object_get(root, "status"));
            snprintf(b->status, sizeof b->status, "%s", status ? status : "validating");
            b->phase = PROVIDER_BATCH_RUNNING;
            b->step = 2;
            rc = 0;
        }
    }
    json_decref(root);
    return rc;
}

static int64_t count_of(json_t *counts, const char *name)
{
    json_t *v = json_object_get(counts, name);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
}

/* errors: {"data":[{"code","message","line"}, ...]}: the first, and how many more. */
static void read_errors(json_t *root, struct buf *why)
{
    json_t *data = json_object_get(json_object_get(root, "errors"), "data");
    json_t *first = json_array_get(data, 0);
    const char *code = json_string_value(json_object_get(first, "code"));
    const char *message = json_string_value(json_object_get(first, "message"));
    json_t *line = json_object_get(first, "line");
    buf_clear(why);
    buf_puts(why, message ? message : "the batch failed");
    if (code) buf_printf(why, " (%s", code);
    if (code && json_is_integer(line)) buf_printf(why, ", line %lld", (long long)json_integer_value(line));
    if (code) buf_putc(why, ')');
    if (json_array_size(data) > 1) buf_printf(why, "; %zu errors in all", json_array_size(data));
}

static int openai_batch_poll(void *self, struct provider_batch *b, const struct http_response *answer,
                             struct http_request *req, struct rn_err *err)
{
    struct openai_endpoint e;
    openai_endpoint_of(self, &e);
    if (!answer) {
        req->method = "GET";
        buf_printf(&req->url, "%s/batches/%s", e.base, b->id);
        req->headers = e.control_headers;
        return 0;
    }
    json_t *root;
    if (is_json(answer, &root, err)) return -1;
    const char *status = json_string_value(json_object_get(root, "status"));
    if (!status) {
        json_decref(root);
        return rn_fail(err, "GET %s/batches/%s: the answer has no status", e.base, b->id);
    }
    snprintf(b->status, sizeof b->status, "%s", status);
    json_t *counts = json_object_get(root, "request_counts");
    b->total = count_of(counts, "total");
    b->completed = count_of(counts, "completed");
    b->failed = count_of(counts, "failed");
    take_string(root, "output_file_id", &b->results[0]);
    take_string(root, "error_file_id", &b->results[1]);
    if (!strcmp(status, "completed") || !strcmp(status, "expired") || !strcmp(status, "cancelled")) {
        b->phase = PROVIDER_BATCH_ENDED; /* expired and cancelled batches keep what they answered */
    } else if (!strcmp(status, "failed")) {
        b->phase = PROVIDER_BATCH_FAILED;
        read_errors(root, &b->why);
    } else {
        b->phase = PROVIDER_BATCH_RUNNING; /* validating, in_progress, finalizing, cancelling */
    }
    json_decref(root);
    return 0;
}

static int openai_batch_fetch(void *self, const struct provider_batch *b, int part, struct http_request *req)
{
    if (part < 0 || part > 1 || !b->results[part]) return 0;
    struct openai_endpoint e;
    openai_endpoint_of(self, &e);
    req->method = "GET";
    buf_printf(&req->url, "%s/files/%s/content", e.base, b->results[part]);
    req->headers = e.control_headers;
    return 1;
}

/* {"id","custom_id","response":{"status_code","request_id","body"},"error":null}, or for a call
 * that never ran "response":null,"error":{"code":"batch_expired","message"}. */
static int openai_batch_result(void *self, const char *line, size_t len, struct provider_batch_result *r,
                               struct rn_err *err)
{
    (void)self;
    json_error_t jerr;
    json_t *root = json_loadb(line, len, 0, &jerr);
    json_t *id = json_object_get(root, "custom_id");
    if (!json_is_string(id)) {
        json_decref(root);
        return rn_fail(err, "a result line without custom_id (%s)", root ? "no custom_id" : jerr.text);
    }
    buf_put(&r->custom_id, json_string_value(id), json_string_length(id));
    json_t *response = json_object_get(root, "response");
    json_t *status = json_object_get(response, "status_code");
    if (json_is_integer(status) && json_integer_value(status) > 0) {
        r->status = (long)json_integer_value(status);
        char *body = json_dumps(json_object_get(response, "body"), JSON_COMPACT | JSON_ENCODE_ANY);
        if (body) buf_puts(&r->body, body);
        free(body);
    } else {
        const char *code = json_string_value(json_object_get(json_object_get(root, "error"), "code"));
        r->status = 0;
        r->why = code && !strcmp(code, "batch_expired") ? "expired before it ran (batch_expired)"
                 : code && !strcmp(code, "batch_cancelled") ? "cancelled before it ran (batch_cancelled)"
                                                           : "the batch gave it no answer";
    }
    json_decref(root);
    return 0;
}

const struct provider_batch_ops openai_batch_ops = {
    .price = 0.5,
    .max_requests = 50000,
    .max_bytes = 200 << 20,
    .line = openai_batch_line,
    .submit = openai_batch_submit,
    .poll = openai_batch_poll,
    .fetch = openai_batch_fetch,
    .result = openai_batch_result,
};
