/* model_server_batch.c: the batch APIs on the model server. OpenAI's: POST /v1/files
 * (multipart, purpose=batch), GET /v1/files/ID and /v1/files/ID/content, POST /v1/batches, GET
 * /v1/batches[/ID], POST /v1/batches/ID/cancel. Anthropic's Message Batches: POST
 * /v1/messages/batches {requests:[{custom_id, params}]}, GET /v1/messages/batches[/ID], GET
 * /v1/messages/batches/ID/results (JSONL of {custom_id, result:{type, message|error}}), POST
 * /v1/messages/batches/ID/cancel; their lines are answered by the Anthropic dialect, with the
 * headers of the request that finds the batch ended. Files live in memory.
 *
 * The one thing to know: a batch has no thread of its own. Its state is a function of the time
 * since it was created on the --batch-speed clock (validating 10 s, then 10 lines a second,
 * then finalizing 10 s, all over the speed), worked out when someone asks; its lines are
 * validated when validating ends and answered (by the live endpoints' code, ms_model_answer)
 * when it ends, completed, expired or cancelled, under the one lock. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "model_server.h"
#include "model_server_dialect.h"

struct ms_batch_config ms_batch_config = {.speed = 1, .max_file_mb = 256};

#define BATCH_MAX_LINES 50000
#define PHASE_NS 10000000000ull       /* validating and finalizing: 10 s at speed 1 */
#define LINES_PER_S 10.0              /* lines answered a second at speed 1 */

enum status { VALIDATING, IN_PROGRESS, FINALIZING, COMPLETED, FAILED, EXPIRED, CANCELLING, CANCELLED };
static const char *const status_words[] = {"validating", "in_progress", "finalizing", "completed",
                                           "failed", "expired", "cancelling", "cancelled"};

struct stored_file {
    char id[40];
    char *data;
    size_t length;
    char *filename;
    char purpose[32];
    long long created_at;
};

struct batch {
    char id[40];
    char input_file_id[40], output_file_id[40], error_file_id[40];
    char endpoint[64], window[16];
    char *metadata;              /* JSON text, or NULL */
    long long created_at;        /* Unix seconds */
    uint64_t created_ns;
    unsigned long number;        /* 1, 2, ... in creation order (faults and line serials) */
    bool anthropic;              /* a Message Batch: lines {custom_id, params}, one results file */
    size_t unrun;                /* anthropic: lines that never ran (expired, canceled) */
    char results_url[256];       /* anthropic: where the results are, once ended */
    enum status status;
    bool validated, expires, fails;
    uint64_t cancel_ns;          /* when cancel was asked; 0: never */
    json_t *lines;               /* the validated input lines */
    size_t total, completed, failed;
    char *errors;                /* a failed batch's {"object":"list","data":[...]} */
};

static struct {
    pthread_mutex_t lock;
    struct stored_file *files;
    size_t file_count, file_cap;
    struct batch *batches;
    size_t batch_count, batch_cap;
    unsigned long next_file, next_batch;
    unsigned long long requests, files_uploaded, batches_created, lines_answered, lines_failed;
} store = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* ---- files ---- */

static struct stored_file *file_find(const char *id)
{
    for (size_t i = 0; i < store.file_count; i++)
        if (strcmp(store.files[i].id, id) == 0) return &store.files[i];
    return NULL;
}

/* Keep data (taken) as a new file; returns it. */
static struct stored_file *file_add(char *data, size_t length, const char *filename, const char *purpose)
{
    if (store.file_count == store.file_cap) {
        store.file_cap = store.file_cap ? store.file_cap * 2 : 16;
        store.files = realloc(store.files, store.file_cap * sizeof *store.files);
        if (!store.files) abort(); /* a test tool: out of memory ends it */
    }
    struct stored_file *f = &store.files[store.file_count++];
    memset(f, 0, sizeof *f);
    snprintf(f->id, sizeof f->id, "file-%06lu", ++store.next_file);
    f->data = data;
    f->length = length;
    f->filename = strdup(filename ? filename : "file.jsonl");
    snprintf(f->purpose, sizeof f->purpose, "%s", purpose);
    f->created_at = (long long)time(NULL);
    return f;
}

static char *file_json(const struct stored_file *f)
{
    json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:s, s:s, s:s}", "id", f->id, "object", "file", "bytes",
                          (json_int_t)f->length, "created_at", (json_int_t)f->created_at, "filename", f->filename,
                          "purpose", f->purpose, "status", "processed");
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

/* ---- batches ---- */

static struct batch *batch_find(const char *id)
{
    for (size_t i = 0; i < store.batch_count; i++)
        if (strcmp(store.batches[i].id, id) == 0) return &store.batches[i];
    return NULL;
}

/* Validate the input file's lines into b->lines, or fail b with the errors. */
static void validate(struct batch *b)
{
    b->validated = true;
    struct stored_file *f = file_find(b->input_file_id);
    json_t *errors = json_array(), *seen = json_object();
    b->lines = json_array();
    const char *data = f ? f->data : "", *end = data + (f ? f->length : 0);
    long number = 0;
    for (const char *line = data; line < end;) {
        const char *next = memchr(line, '\n', (size_t)(end - line));
        size_t length = next ? (size_t)(next - line) : (size_t)(end - line);
        number++;
        const char *code = NULL, *message = NULL;
        json_t *o = length ? json_loadb(line, length, 0, NULL) : NULL;
        const char *custom_id = json_string_value(json_object_get(o, "custom_id"));
        const char *method = json_string_value(json_object_get(o, "method"));
        const char *url = json_string_value(json_object_get(o, "url"));
        if (!length) {
            code = "empty_line", message = "This line is empty.";
        } else if (!json_is_object(o)) {
            code = "invalid_json_line", message = "This line is not parseable as valid JSON.";
        } else if (!custom_id || !*custom_id) {
            code = "missing_required_parameter", message = "custom_id is required.";
        } else if (json_object_get(seen, custom_id)) {
            code = "duplicate_custom_id", message = "The custom_id for this request is a duplicate of another request.";
        } else if (!method || strcmp(method, "POST") != 0) {
            code = "invalid_method", message = "The method must be POST.";
        } else if (!url || strcmp(url, b->endpoint) != 0) {
            code = "mismatched_endpoint", message = "The url of this request does not match the batch's endpoint.";
        } else if (!json_is_object(json_object_get(o, "body"))) {
            code = "missing_required_parameter", message = "body must be an object.";
        }
        if (code) {
            json_array_append_new(errors, json_pack("{s:s, s:s, s:n, s:I}", "code", code, "message", message, "param",
                                                    "line", (json_int_t)number));
            json_decref(o);
        } else {
            json_object_set_new(seen, custom_id, json_true());
            json_array_append_new(b->lines, o);
        }
        line += length + 1;
    }
    if (number > BATCH_MAX_LINES)
        json_array_append_new(errors, json_pack("{s:s, s:s, s:n, s:n}", "code", "too_many_requests", "message",
                                                "A batch may hold at most 50,000 requests.", "param", "line"));
    if (!f)
        json_array_append_new(errors, json_pack("{s:s, s:s, s:n, s:n}", "code", "file_not_found", "message",
                                                "The input file is gone.", "param", "line"));
    if (b->fails)
        json_array_append_new(errors, json_pack("{s:s, s:s, s:n, s:n}", "code", "token_limit_exceeded", "message",
                                                "Enqueued token limit reached (--batch-fail-every).", "param", "line"));
    b->total = json_array_size(b->lines) + json_array_size(errors);
    if (json_array_size(errors)) {
        b->status = FAILED;
        json_t *list = json_pack("{s:s, s:o}", "object", "list", "data", errors);
        b->errors = json_dumps(list, JSON_COMPACT);
        json_decref(list);
    } else {
        json_decref(errors);
        b->total = json_array_size(b->lines);
    }
    json_decref(seen);
}

/* Answer lines [0, answered) into an output and an error file; the rest, if any, expired or
 * cancelled before they ran. */
/* One Message Batch line answered by the Anthropic dialect, as {"type":"succeeded","message"} or
 * {"type":"errored","error":...}; connection: the request whose headers it is answered with. */
static json_t *anthropic_result(struct batch *b, json_t *line, size_t i, struct MHD_Connection *connection, bool *ok)
{
    uint64_t state = ms_seed() ^ (b->number * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)i * 0xD1B54A32D192ED03ull);
    double draw = ms_random_fraction(&state);
    const struct ms_batch_config *c = &ms_batch_config;
    *ok = false;
    if (draw < c->line_500)
        return json_pack("{s:s,s:{s:s,s:{s:s,s:s}}}", "type", "errored", "error", "type", "error", "error", "type",
                         "api_error", "message", "Internal server error (--batch-line-500)");
    if (draw < c->line_500 + c->line_400)
        return json_pack("{s:s,s:{s:s,s:{s:s,s:s}}}", "type", "errored", "error", "type", "error", "error", "type",
                         "invalid_request_error", "message", "Invalid request (--batch-line-400)");
    char *params = json_dumps(json_object_get(line, "params"), JSON_COMPACT);
    struct dialect_request request = {connection, "POST", "/v1/messages", params ? params : "{}", params ? strlen(params) : 2,
                                      draw < c->line_500 + c->line_400 + c->line_malformed ? DIALECT_MALFORMED : DIALECT_OK,
                                      (uint64_t)b->number << 32 | (uint64_t)(i + 1), ms_dialect_config()};
    struct dialect_answer answer = {0};
    dialect_anthropic.answer(&request, &answer);
    free(params);
    json_t *body = answer.body ? json_loadb(answer.body, answer.body_len, 0, NULL) : NULL;
    free(answer.body);
    if (answer.status == 200 && body) {
        *ok = true;
        return json_pack("{s:s,s:o}", "type", "succeeded", "message", body);
    }
    return json_pack("{s:s,s:o}", "type", "errored", "error", body ? body : json_object());
}

/* The results of an ended Message Batch: lines [0, answered) answered, the rest type unrun. */
static void finish_anthropic(struct batch *b, size_t answered, const char *unrun, struct MHD_Connection *connection)
{
    char *text = NULL;
    size_t length = 0;
    FILE *out = open_memstream(&text, &length);
    size_t count = json_array_size(b->lines);
    for (size_t i = 0; i < count; i++) {
        json_t *line = json_array_get(b->lines, i);
        bool ok = false;
        json_t *result = i < answered ? anthropic_result(b, line, i, connection, &ok) : json_pack("{s:s}", "type", unrun);
        json_t *o = json_pack("{s:O,s:o}", "custom_id", json_object_get(line, "custom_id"), "result", result);
        char *one = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        if (one) fprintf(out, "%s\n", one);
        free(one);
        if (ok) b->completed++;
        else b->failed++;
        if (i >= answered) b->unrun++;
        if (i < answered) {
            if (ok) store.lines_answered++;
            else store.lines_failed++;
        }
    }
    fclose(out);
    struct stored_file *f = file_add(text, length, "results.jsonl", "batch_output");
    snprintf(b->output_file_id, sizeof b->output_file_id, "%s", f->id);
    const char *host = connection ? MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "Host") : NULL;
    snprintf(b->results_url, sizeof b->results_url, "http://%.100s/v1/messages/batches/%s/results",
             host ? host : "127.0.0.1", b->id);
}

static void finish(struct batch *b, size_t answered, const char *unrun_code, const char *unrun_message,
                   struct MHD_Connection *connection)
{
    if (b->anthropic) {
        finish_anthropic(b, answered, unrun_code && !strcmp(unrun_code, "batch_expired") ? "expired" : "canceled", connection);
        return;
    }
    char *output = NULL, *errors = NULL;
    size_t output_length = 0, errors_length = 0;
    FILE *out = open_memstream(&output, &output_length), *err = open_memstream(&errors, &errors_length);
    bool embeddings = strcmp(b->endpoint, "/v1/embeddings") == 0;
    size_t count = json_array_size(b->lines);
    for (size_t i = 0; i < count; i++) {
        json_t *line = json_array_get(b->lines, i);
        const char *custom_id = json_string_value(json_object_get(line, "custom_id"));
        char id[64];
        snprintf(id, sizeof id, "batch_req_%lu_%zu", b->number, i + 1);
        json_t *result;
        bool ok = false;
        if (i >= answered) {
            result = json_pack("{s:s, s:s, s:n, s:{s:s, s:s}}", "id", id, "custom_id", custom_id, "response", "error",
                               "code", unrun_code, "message", unrun_message);
        } else {
            uint64_t state = ms_seed() ^ (b->number * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)i * 0xD1B54A32D192ED03ull);
            double draw = ms_random_fraction(&state);
            unsigned status = 200;
            json_t *body;
            const struct ms_batch_config *c = &ms_batch_config;
            if (draw < c->line_500) {
                status = 500;
                char *text = ms_error_json("The server had an error while processing your request.", "server_error",
                                           "internal_error");
                body = json_loads(text ? text : "{}", 0, NULL);
                free(text);
            } else if (draw < c->line_500 + c->line_400) {
                status = 400;
                char *text = ms_error_json("Invalid request (--batch-line-400).", "invalid_request_error", NULL);
                body = json_loads(text ? text : "{}", 0, NULL);
                free(text);
            } else {
                int fault = draw < c->line_500 + c->line_400 + c->line_malformed ? MS_FAULT_MALFORMED : MS_FAULT_NONE;
                char *request = json_dumps(json_object_get(line, "body"), JSON_COMPACT);
                size_t length = 0;
                char *text = ms_model_answer(request ? request : "{}", request ? strlen(request) : 2, embeddings,
                                             (uint64_t)b->number << 32 | (uint64_t)(i + 1), fault, &status, &length);
                body = text ? json_loadb(text, length, 0, NULL) : NULL;
                free(text);
                free(request);
            }
            char request_id[64];
            snprintf(request_id, sizeof request_id, "req_%lu_%zu", b->number, i + 1);
            result = json_pack("{s:s, s:s, s:{s:i, s:s, s:o*}, s:n}", "id", id, "custom_id", custom_id, "response",
                               "status_code", (int)status, "request_id", request_id, "body", body, "error");
            ok = status == 200;
        }
        char *text = json_dumps(result, JSON_COMPACT);
        json_decref(result);
        if (text) fprintf(ok ? out : err, "%s\n", text);
        free(text);
        if (ok) b->completed++;
        else b->failed++;
        if (i < answered) {
            if (ok) store.lines_answered++;
            else store.lines_failed++;
        }
    }
    fclose(out);
    fclose(err);
    if (output_length) snprintf(b->output_file_id, sizeof b->output_file_id, "%s", file_add(output, output_length, "output.jsonl", "batch_output")->id);
    else free(output);
    if (errors_length) snprintf(b->error_file_id, sizeof b->error_file_id, "%s", file_add(errors, errors_length, "errors.jsonl", "batch_output")->id);
    else free(errors);
}

static double speed(void) { return (double)(ms_batch_config.speed > 0 ? ms_batch_config.speed : 1); }

/* Bring b's status up to now. */
static void advance(struct batch *b, uint64_t now, struct MHD_Connection *connection)
{
    if (b->status == COMPLETED || b->status == FAILED || b->status == EXPIRED || b->status == CANCELLED) return;
    double phase_ns = (double)PHASE_NS / speed(), line_ns = 1e9 / (LINES_PER_S * speed());
    uint64_t until = b->cancel_ns && b->cancel_ns < now ? b->cancel_ns : now; /* a cancelled batch stops there */
    double t = (double)(until - b->created_ns);
    if (t < phase_ns && !b->cancel_ns) {
        b->status = VALIDATING;
        return;
    }
    if (!b->validated) {
        validate(b);
        if (b->status == FAILED) return;
    }
    double run_ns = (double)b->total * line_ns;
    size_t done = t < phase_ns ? 0 : (size_t)((t - phase_ns) / line_ns);
    if (done > b->total) done = b->total;
    if (b->cancel_ns) {
        b->status = CANCELLED;
        finish(b, done, "batch_cancelled", "This request was cancelled before it ran.", connection);
        return;
    }
    if (b->expires && done >= b->total / 2) {
        b->status = EXPIRED;
        finish(b, b->total / 2, "batch_expired", "This request could not be executed before the completion window expired.",
               connection);
        return;
    }
    if (t < phase_ns + run_ns) {
        b->status = IN_PROGRESS;
        b->completed = done;
        return;
    }
    if (t < 2 * phase_ns + run_ns) {
        b->status = FINALIZING;
        b->completed = b->total;
        return;
    }
    b->status = COMPLETED;
    b->completed = 0;
    finish(b, b->total, NULL, NULL, connection);
}

static json_t *id_or_null(const char *id) { return *id ? json_string(id) : json_null(); }

static char *batch_json(const struct batch *b)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(b->id));
    json_object_set_new(o, "object", json_string("batch"));
    json_object_set_new(o, "endpoint", json_string(b->endpoint));
    json_object_set_new(o, "errors", b->errors ? json_loads(b->errors, 0, NULL) : json_null());
    json_object_set_new(o, "input_file_id", json_string(b->input_file_id));
    json_object_set_new(o, "completion_window", json_string(b->window));
    json_object_set_new(o, "status", json_string(status_words[b->status]));
    json_object_set_new(o, "output_file_id", id_or_null(b->output_file_id));
    json_object_set_new(o, "error_file_id", id_or_null(b->error_file_id));
    json_object_set_new(o, "created_at", json_integer(b->created_at));
    json_object_set_new(o, "expires_at", json_integer(b->created_at + 86400));
    json_object_set_new(o, "request_counts", json_pack("{s:I, s:I, s:I}", "total", (json_int_t)b->total, "completed",
                                                       (json_int_t)b->completed, "failed", (json_int_t)b->failed));
    json_object_set_new(o, "metadata", b->metadata ? json_loads(b->metadata, 0, NULL) : json_null());
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

/* ---- requests ---- */

enum route { FILES, FILE_ONE, FILE_CONTENT, BATCHES, BATCH_ONE, BATCH_CANCEL, MB_BATCHES, MB_ONE, MB_RESULTS, MB_CANCEL,
             WRONG_METHOD };

struct batch_request {
    enum route route;
    char id[64];
    char *body;                  /* JSON bodies */
    size_t length, capacity;
    struct MHD_PostProcessor *post;
    char purpose[32];
    char *file, *filename;       /* the upload */
    size_t file_length, file_capacity;
    bool too_large, bad_form, is_post;
};

static bool grow_append(char **data, size_t *length, size_t *capacity, const char *more, size_t n, size_t limit)
{
    if (*length + n > limit) return false;
    if (*length + n + 1 > *capacity) {
        size_t c = *capacity ? *capacity : 4096;
        while (c < *length + n + 1) c *= 2;
        char *d = realloc(*data, c);
        if (!d) return false;
        *data = d;
        *capacity = c;
    }
    memcpy(*data + *length, more, n);
    *length += n;
    (*data)[*length] = '\0';
    return true;
}

/* /v1/files..., /v1/batches...: the route, and the id in it. */
static int parse_route(const char *method, const char *url, enum route *route, char *id, size_t id_size)
{
    bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
    const char *rest;
    if (strcmp(url, "/v1/files") == 0) { *route = post ? FILES : WRONG_METHOD; return 1; }
    if (strcmp(url, "/v1/batches") == 0) { *route = post || get ? BATCHES : WRONG_METHOD; return 1; }
    if (strcmp(url, "/v1/messages/batches") == 0) { *route = post || get ? MB_BATCHES : WRONG_METHOD; return 1; }
    if (strncmp(url, "/v1/messages/batches/", 21) == 0) {
        rest = url + 21;
        const char *slash = strchr(rest, '/');
        size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
        if (!n || n >= id_size) return 0;
        memcpy(id, rest, n);
        id[n] = '\0';
        if (!slash) *route = get ? MB_ONE : WRONG_METHOD;
        else if (strcmp(slash, "/results") == 0) *route = get ? MB_RESULTS : WRONG_METHOD;
        else if (strcmp(slash, "/cancel") == 0) *route = post ? MB_CANCEL : WRONG_METHOD;
        else return 0;
        return 1;
    }
    if (strncmp(url, "/v1/files/", 10) == 0) rest = url + 10;
    else if (strncmp(url, "/v1/batches/", 12) == 0) rest = url + 12;
    else return 0;
    bool files = url[4] == 'f';
    const char *slash = strchr(rest, '/');
    size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
    if (!n || n >= id_size) return 0;
    memcpy(id, rest, n);
    id[n] = '\0';
    if (!slash) *route = get ? (files ? FILE_ONE : BATCH_ONE) : WRONG_METHOD;
    else if (files && strcmp(slash, "/content") == 0) *route = get ? FILE_CONTENT : WRONG_METHOD;
    else if (!files && strcmp(slash, "/cancel") == 0) *route = post ? BATCH_CANCEL : WRONG_METHOD;
    else return 0;
    return 1;
}

bool ms_batch_route(const char *method, const char *url)
{
    enum route route;
    char id[64];
    return parse_route(method, url, &route, id, sizeof id);
}

static enum MHD_Result reply(struct MHD_Connection *connection, unsigned status, char *body, const char *type)
{
    if (!body) return MHD_NO;
    struct MHD_Response *response = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!response) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, type ? type : "application/json");
    enum MHD_Result result = MHD_queue_response(connection, status, response);
    MHD_destroy_response(response);
    return result;
}

static enum MHD_Result reply_json(struct MHD_Connection *connection, unsigned status, char *body)
{
    return reply(connection, status, body, NULL);
}

static enum MHD_Result reply_error(struct MHD_Connection *connection, unsigned status, const char *message,
                                   const char *type, const char *code)
{
    return reply(connection, status, ms_error_json(message, type, code), NULL);
}

static enum MHD_Result on_form_field(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                                     const char *content_type, const char *transfer_encoding, const char *data,
                                     uint64_t off, size_t size)
{
    (void)kind, (void)content_type, (void)transfer_encoding, (void)off;
    struct batch_request *r = cls;
    if (strcmp(key, "purpose") == 0) {
        size_t have = strlen(r->purpose);
        if (have + size < sizeof r->purpose) {
            memcpy(r->purpose + have, data, size);
            r->purpose[have + size] = '\0';
        }
    } else if (strcmp(key, "file") == 0) {
        if (filename && !r->filename) r->filename = strdup(filename);
        size_t limit = (size_t)ms_batch_config.max_file_mb << 20;
        if (!grow_append(&r->file, &r->file_length, &r->file_capacity, data, size, limit)) r->too_large = true;
    }
    return MHD_YES;
}

static enum MHD_Result upload(struct MHD_Connection *connection, struct batch_request *r)
{
    if (r->bad_form) return reply_error(connection, 400, "Expected a multipart/form-data body with purpose and file.",
                                        "invalid_request_error", NULL);
    if (r->too_large) return reply_error(connection, 413, "The file exceeds --max-file-mb.", "invalid_request_error", "file_too_large");
    if (strcmp(r->purpose, "batch") != 0)
        return reply_error(connection, 400, "Invalid purpose: this server takes purpose=batch.", "invalid_request_error", NULL);
    if (!r->file_length) return reply_error(connection, 400, "The file is empty.", "invalid_request_error", NULL);
    pthread_mutex_lock(&store.lock);
    struct stored_file *f = file_add(r->file, r->file_length, r->filename, "batch");
    r->file = NULL;
    store.files_uploaded++;
    char *text = file_json(f);
    pthread_mutex_unlock(&store.lock);
    return reply(connection, 200, text, NULL);
}

static enum MHD_Result create(struct MHD_Connection *connection, struct batch_request *r)
{
    json_t *root = json_loadb(r->body ? r->body : "", r->length, 0, NULL);
    const char *input = json_string_value(json_object_get(root, "input_file_id"));
    const char *endpoint = json_string_value(json_object_get(root, "endpoint"));
    const char *window = json_string_value(json_object_get(root, "completion_window"));
    json_t *metadata = json_object_get(root, "metadata");
    enum MHD_Result result;
    pthread_mutex_lock(&store.lock);
    struct stored_file *f = input ? file_find(input) : NULL;
    if (!json_is_object(root) || !input) {
        result = reply_error(connection, 400, "input_file_id is required.", "invalid_request_error", NULL);
    } else if (!f || strcmp(f->purpose, "batch") != 0) {
        char message[128];
        snprintf(message, sizeof message, "No such File object: %.60s", input);
        result = reply_error(connection, 404, message, "invalid_request_error", NULL);
    } else if (!endpoint || (strcmp(endpoint, "/v1/chat/completions") != 0 && strcmp(endpoint, "/v1/embeddings") != 0)) {
        result = reply_error(connection, 400, "Invalid endpoint: /v1/chat/completions or /v1/embeddings.",
                             "invalid_request_error", NULL);
    } else if (!window || strcmp(window, "24h") != 0) {
        result = reply_error(connection, 400, "Invalid completion_window: only 24h is supported.", "invalid_request_error", NULL);
    } else {
        if (store.batch_count == store.batch_cap) {
            store.batch_cap = store.batch_cap ? store.batch_cap * 2 : 16;
            store.batches = realloc(store.batches, store.batch_cap * sizeof *store.batches);
            if (!store.batches) abort();
        }
        struct batch *b = &store.batches[store.batch_count++];
        memset(b, 0, sizeof *b);
        b->number = ++store.next_batch;
        snprintf(b->id, sizeof b->id, "batch_%06lu", b->number);
        snprintf(b->input_file_id, sizeof b->input_file_id, "%s", input);
        snprintf(b->endpoint, sizeof b->endpoint, "%s", endpoint);
        snprintf(b->window, sizeof b->window, "%s", window);
        b->metadata = json_is_object(metadata) ? json_dumps(metadata, JSON_COMPACT) : NULL;
        b->created_at = (long long)time(NULL);
        b->created_ns = ms_clock_ns();
        b->expires = ms_batch_config.expire_every > 0 && b->number % (unsigned long)ms_batch_config.expire_every == 0;
        b->fails = ms_batch_config.fail_every > 0 && b->number % (unsigned long)ms_batch_config.fail_every == 0;
        store.batches_created++;
        result = reply(connection, 200, batch_json(b), NULL);
    }
    pthread_mutex_unlock(&store.lock);
    json_decref(root);
    return result;
}

/* ---- Anthropic's Message Batches ---- */

static void anthropic_error(struct MHD_Connection *connection, unsigned status, const char *type, const char *message,
                            enum MHD_Result *result)
{
    json_t *o = json_pack("{s:s,s:{s:s,s:s}}", "type", "error", "error", "type", type, "message", message);
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    *result = reply_json(connection, status, text);
}

static char *message_batch_json(const struct batch *b)
{
    bool ended = b->status == COMPLETED || b->status == EXPIRED || b->status == CANCELLED;
    size_t processing = ended ? 0 : b->total;
    size_t expired = b->status == EXPIRED ? b->unrun : 0, canceled = b->status == CANCELLED ? b->unrun : 0;
    char created[32], expires[32];
    dialect_rfc3339(created, (long)(b->created_at - (long long)time(NULL)));
    dialect_rfc3339(expires, (long)(b->created_at + 86400 - (long long)time(NULL)));
    json_t *o = json_pack("{s:s,s:s,s:s,s:{s:I,s:I,s:I,s:I,s:I},s:s,s:s}", "id", b->id, "type", "message_batch",
                          "processing_status", ended ? "ended" : b->cancel_ns ? "canceling" : "in_progress",
                          "request_counts", "processing", (json_int_t)processing, "succeeded",
                          (json_int_t)(ended ? b->completed : 0), "errored",
                          (json_int_t)(ended ? b->failed - expired - canceled : 0), "canceled", (json_int_t)canceled,
                          "expired", (json_int_t)expired, "created_at", created, "expires_at", expires);
    json_object_set_new(o, "ended_at", json_null());
    json_object_set_new(o, "cancel_initiated_at", json_null());
    json_object_set_new(o, "archived_at", json_null());
    json_object_set_new(o, "results_url", ended ? json_string(b->results_url) : json_null());
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

static bool valid_custom_id(const char *id)
{
    size_t n = strlen(id);
    if (n < 1 || n > 64) return false;
    for (const char *c = id; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '-' || *c == '_'))
            return false;
    return true;
}

/* POST /v1/messages/batches: validated at once, as Anthropic does. */
static enum MHD_Result create_message_batch(struct MHD_Connection *connection, const char *body, size_t length)
{
    enum MHD_Result result;
    json_t *root = json_loadb(body ? body : "", length, 0, NULL);
    json_t *requests = json_object_get(root, "requests");
    const char *why = NULL;
    json_t *seen = json_object();
    char message[200];
    if (!json_is_array(requests) || !json_array_size(requests)) why = "requests: Field required";
    else if (json_array_size(requests) > 100000) why = "requests: at most 100,000 requests";
    size_t i;
    json_t *r;
    json_array_foreach(requests, i, r) {
        if (why) break;
        const char *id = json_string_value(json_object_get(r, "custom_id"));
        json_t *params = json_object_get(r, "params");
        if (!id || !valid_custom_id(id)) {
            snprintf(message, sizeof message, "requests.%zu.custom_id: must match ^[a-zA-Z0-9_-]{1,64}$", i);
            why = message;
        } else if (json_object_get(seen, id)) {
            snprintf(message, sizeof message, "requests.%zu.custom_id: duplicate custom_id %.64s", i, id);
            why = message;
        } else if (!json_is_object(params) || !json_is_integer(json_object_get(params, "max_tokens")) ||
                   !json_is_array(json_object_get(params, "messages"))) {
            snprintf(message, sizeof message, "requests.%zu.params: model, max_tokens and messages are required", i);
            why = message;
        } else {
            json_object_set_new(seen, id, json_true());
        }
    }
    json_decref(seen);
    if (why) {
        json_decref(root);
        anthropic_error(connection, 400, "invalid_request_error", why, &result);
        return result;
    }
    pthread_mutex_lock(&store.lock);
    if (store.batch_count == store.batch_cap) {
        store.batch_cap = store.batch_cap ? store.batch_cap * 2 : 16;
        store.batches = realloc(store.batches, store.batch_cap * sizeof *store.batches);
        if (!store.batches) abort();
    }
    struct batch *b = &store.batches[store.batch_count++];
    memset(b, 0, sizeof *b);
    b->number = ++store.next_batch;
    b->anthropic = true;
    snprintf(b->id, sizeof b->id, "msgbatch_%06lu", b->number);
    snprintf(b->endpoint, sizeof b->endpoint, "/v1/messages");
    b->created_at = (long long)time(NULL);
    b->created_ns = ms_clock_ns();
    b->validated = true;
    b->lines = json_incref(requests);
    b->total = json_array_size(requests);
    b->expires = ms_batch_config.expire_every > 0 && b->number % (unsigned long)ms_batch_config.expire_every == 0;
    store.batches_created++;
    result = reply_json(connection, 200, message_batch_json(b));
    pthread_mutex_unlock(&store.lock);
    json_decref(root);
    return result;
}

static enum MHD_Result message_batches(struct MHD_Connection *connection, const struct batch_request *r)
{
    enum MHD_Result result;
    if (r->route == MB_BATCHES && r->is_post) return create_message_batch(connection, r->body, r->length);
    pthread_mutex_lock(&store.lock);
    uint64_t now = ms_clock_ns();
    if (r->route == MB_BATCHES) { /* the list, newest first */
        char *list = NULL;
        size_t length = 0;
        FILE *out = open_memstream(&list, &length);
        fputs("{\"data\":[", out);
        bool first = true;
        for (size_t i = store.batch_count; i-- > 0;) {
            if (!store.batches[i].anthropic) continue;
            advance(&store.batches[i], now, connection);
            char *one = message_batch_json(&store.batches[i]);
            fprintf(out, "%s%s", first ? "" : ",", one ? one : "null");
            first = false;
            free(one);
        }
        fputs("],\"has_more\":false}", out);
        fclose(out);
        pthread_mutex_unlock(&store.lock);
        return reply_json(connection, 200, list);
    }
    struct batch *b = batch_find(r->id);
    if (!b || !b->anthropic) {
        pthread_mutex_unlock(&store.lock);
        char message[160];
        snprintf(message, sizeof message, "No batch found with id '%.60s'.", r->id);
        anthropic_error(connection, 404, "not_found_error", message, &result);
        return result;
    }
    if (r->route == MB_CANCEL && !b->cancel_ns) b->cancel_ns = now;
    advance(b, now, connection);
    char *text = NULL;
    if (r->route == MB_RESULTS) {
        struct stored_file *f = b->output_file_id[0] ? file_find(b->output_file_id) : NULL;
        if (f) {
            text = malloc(f->length + 1);
            if (text) {
                memcpy(text, f->data, f->length);
                text[f->length] = '\0';
            }
        }
        pthread_mutex_unlock(&store.lock);
        if (!f) {
            anthropic_error(connection, 404, "not_found_error", "The batch has not ended: no results yet.", &result);
            return result;
        }
        return reply(connection, 200, text, "application/x-jsonl");
    }
    text = message_batch_json(b);
    pthread_mutex_unlock(&store.lock);
    return reply_json(connection, 200, text);
}

static enum MHD_Result answer(struct MHD_Connection *connection, struct batch_request *r)
{
    char message[160];
    switch (r->route) {
    case FILES:
        return upload(connection, r);
    case BATCHES: {
        if (r->is_post) return create(connection, r);
        /* GET /v1/batches: the list, newest first */
        pthread_mutex_lock(&store.lock);
        uint64_t now = ms_clock_ns();
        char *list = NULL;
        size_t length = 0;
        FILE *out = open_memstream(&list, &length);
        fputs("{\"object\":\"list\",\"data\":[", out);
        bool first = true;
        for (size_t i = store.batch_count; i-- > 0;) {
            if (store.batches[i].anthropic) continue;
            advance(&store.batches[i], now, connection);
            char *one = batch_json(&store.batches[i]);
            fprintf(out, "%s%s", first ? "" : ",", one ? one : "null");
            first = false;
            free(one);
        }
        fputs("],\"has_more\":false}", out);
        fclose(out);
        pthread_mutex_unlock(&store.lock);
        return reply(connection, 200, list, NULL);
    }
    case FILE_ONE:
    case FILE_CONTENT: {
        pthread_mutex_lock(&store.lock);
        struct stored_file *f = file_find(r->id);
        char *body = NULL;
        if (f && r->route == FILE_ONE) {
            body = file_json(f);
        } else if (f) {
            body = malloc(f->length + 1);
            if (body) {
                memcpy(body, f->data, f->length);
                body[f->length] = '\0';
            }
        }
        pthread_mutex_unlock(&store.lock);
        if (!f) {
            snprintf(message, sizeof message, "No such File object: %.60s", r->id);
            return reply_error(connection, 404, message, "invalid_request_error", NULL);
        }
        return reply(connection, 200, body, r->route == FILE_CONTENT ? "application/octet-stream" : NULL);
    }
    case BATCH_ONE:
    case BATCH_CANCEL: {
        pthread_mutex_lock(&store.lock);
        struct batch *b = batch_find(r->id);
        if (b && b->anthropic) b = NULL;
        char *body = NULL;
        if (b) {
            uint64_t now = ms_clock_ns();
            if (r->route == BATCH_CANCEL && !b->cancel_ns) b->cancel_ns = now;
            advance(b, now, connection);
            if (r->route == BATCH_CANCEL && b->status != CANCELLED && b->status < COMPLETED) b->status = CANCELLING;
            body = batch_json(b);
        }
        pthread_mutex_unlock(&store.lock);
        if (!b) {
            snprintf(message, sizeof message, "No batch found with id '%.60s'.", r->id);
            return reply_error(connection, 404, message, "invalid_request_error", NULL);
        }
        return reply(connection, 200, body, NULL);
    }
    case MB_BATCHES:
    case MB_ONE:
    case MB_RESULTS:
    case MB_CANCEL:
        return message_batches(connection, r);
    case WRONG_METHOD:
        break;
    }
    return reply_error(connection, 405, "Method not allowed for this path.", "invalid_request_error", "method_not_allowed");
}

enum MHD_Result ms_batch_handle(struct MHD_Connection *connection, const char *url, const char *method,
                                const char *upload_data, size_t *upload_data_size, void **state, bool authorized)
{
    struct batch_request *r = *state;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        *state = r;
        parse_route(method, url, &r->route, r->id, sizeof r->id);
        r->is_post = strcmp(method, "POST") == 0;
        if (r->route == FILES) {
            r->post = MHD_create_post_processor(connection, 65536, on_form_field, r);
            if (!r->post) r->bad_form = true;
        }
    }
    if (*upload_data_size > 0) {
        if (r->post) {
            if (MHD_post_process(r->post, upload_data, *upload_data_size) != MHD_YES) r->bad_form = true;
        } else if (!r->bad_form && !grow_append(&r->body, &r->length, &r->capacity, upload_data, *upload_data_size,
                                                r->route == MB_BATCHES ? (size_t)ms_batch_config.max_file_mb << 20 : 1 << 20)) {
            r->too_large = true;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    pthread_mutex_lock(&store.lock);
    store.requests++;
    pthread_mutex_unlock(&store.lock);
    if (!authorized)
        return reply_error(connection, 401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key");
    return answer(connection, r);
}

void ms_batch_done(void *state)
{
    struct batch_request *r = state;
    if (!r) return;
    if (r->post) MHD_destroy_post_processor(r->post);
    free(r->body);
    free(r->file);
    free(r->filename);
    free(r);
}

char *ms_batch_stats(void)
{
    pthread_mutex_lock(&store.lock);
    char *text = NULL;
    int n = asprintf(&text,
                     "{\"requests\":%llu,\"files_uploaded\":%llu,\"batches_created\":%llu,\"lines_answered\":%llu,"
                     "\"lines_failed\":%llu}",
                     store.requests, store.files_uploaded, store.batches_created, store.lines_answered,
                     store.lines_failed);
    pthread_mutex_unlock(&store.lock);
    return n < 0 ? NULL : text;
}

void ms_batch_reset(void)
{
    pthread_mutex_lock(&store.lock);
    store.requests = store.files_uploaded = store.batches_created = store.lines_answered = store.lines_failed = 0;
    pthread_mutex_unlock(&store.lock);
}

void ms_batch_cleanup(void)
{
    pthread_mutex_lock(&store.lock);
    for (size_t i = 0; i < store.file_count; i++) {
        free(store.files[i].data);
        free(store.files[i].filename);
    }
    for (size_t i = 0; i < store.batch_count; i++) {
        free(store.batches[i].metadata);
        free(store.batches[i].errors);
        json_decref(store.batches[i].lines);
    }
    free(store.files);
    free(store.batches);
    store.files = NULL;
    store.batches = NULL;
    store.file_count = store.batch_count = 0;
    pthread_mutex_unlock(&store.lock);
}
