/* ollama.c: the Ollama provider, model.ollama{}: the native API of a local (or remote) Ollama
 * server: POST /api/chat with stream false, the output schema as `format` for structured
 * output, the sampling options in `options`; POST /api/embed for embeddings. No key by default
 * (api_key, for a proxy or a hosted Ollama, is sent as a bearer). Errors come as
 * {"error": "text"}: a model that is not pulled stops the job, a busy server is retried. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/http.h"
#include "models/providers/common.h"
#include "models/providers/openai_int.h"

#define OLLAMA_MAX_INPUTS 2048 /* Ollama sets none; a bound on one request's size */

static const struct option_spec ollama_options[] = {
    {"endpoint", OPT_STRING, 0, "http://127.0.0.1:11434", .help = "the server's URL; /api/chat or /api/embed is added",
     .check = common_check_url},
    {"model", OPT_STRING, 1, NULL, .help = "a pulled model, e.g. \"llama3.2\" or \"nomic-embed-text\""},
    {"api_key", OPT_STRING, 0, NULL, .help = "sent as Authorization: Bearer (a proxy, a hosted Ollama); none by default",
     .secret = 1},
    {"temperature", OPT_NUMBER, 0, NULL, .help = "sampling temperature (options.temperature)", OPT_AT_LEAST(0)},
    {"max_tokens", OPT_INTEGER, 0, NULL, .help = "longest answer in tokens (options.num_predict)", OPT_AT_LEAST(1)},
    {"top_p", OPT_NUMBER, 0, NULL, .help = "nucleus sampling (options.top_p)", OPT_RANGE(0, 1)},
    {"top_k", OPT_INTEGER, 0, NULL, .help = "sample from the k likeliest tokens (options.top_k)", OPT_AT_LEAST(1)},
    {"seed", OPT_INTEGER, 0, NULL, .help = "seed for repeatable answers (options.seed)"},
    {"num_ctx", OPT_INTEGER, 0, NULL, .help = "the context window in tokens (options.num_ctx)", OPT_AT_LEAST(1)},
    {"keep_alive", OPT_STRING, 0, NULL, .help = "how long the server keeps the model loaded after a call, e.g. \"10m\""},
    {"structured", OPT_BOOLEAN, 0, NULL, .help = "ask for JSON that follows the output schema (format)",
     .default_note = "with output"},
    {"parameters", OPT_TABLE, 0, NULL, .help = "more request fields (think, ...), sent as JSON as they are"},
    {"headers", OPT_MAP, 0, NULL, .help = "extra HTTP headers: { [\"X-Name\"] = \"value\" or secret(...) }",
     .value = OPT_VALUE(OPT_STRING, .secret = 1)},
    MODEL_BATCH_INPUTS_OPTION("32", OLLAMA_MAX_INPUTS),
    MODEL_COMMON_OPTIONS,
    {NULL},
};

struct ollama {
    char *url_chat, *url_embed;
    struct buf head;             /* {"model":"...", */
    struct buf tail;             /* ,"options":{...},"keep_alive":... and the parameters */
    struct buf embed_tail;       /* ,"keep_alive":... and the parameters */
    struct openai_messages messages; /* /api/chat takes OpenAI's messages */
    struct header_list headers;
};

static void ollama_close(void *self)
{
    struct ollama *p = self;
    if (!p) return;
    free(p->url_chat);
    free(p->url_embed);
    buf_free(&p->head);
    buf_free(&p->tail);
    buf_free(&p->embed_tail);
    buf_free(&p->messages.system_json);
    header_list_free(&p->headers);
    free(p);
}

static const struct reserved_field own_fields[] = {
    {"model", "runnel writes it"}, {"messages", "runnel writes it"}, {"input", "runnel writes it"},
    {"stream", "runnel reads whole answers (stream false)"},
    {"options", "use temperature, max_tokens, top_p, top_k, seed and num_ctx"}, {"keep_alive", "use the option of that name"},
    {"format", "structured output writes it (set structured = false to send your own)"},
};

static void *ollama_open(struct job_env *env, int opts, const struct provider_setup *setup, struct rn_err *err)
{
    lua_State *L = env->L;
    opts = lua_absindex(L, opts);
    struct ollama *p = rn_calloc(1, sizeof *p);
    buf_init(&p->head);
    buf_init(&p->tail);
    buf_init(&p->embed_tail);
    buf_init(&p->messages.system_json);
    const char *endpoint = opt_string(L, opts, "endpoint", "http://127.0.0.1:11434");
    const char *model = opt_string(L, opts, "model", NULL), *keep_alive = opt_string(L, opts, "keep_alive", NULL), *key;
    int n = (int)common_url_len(endpoint);
    struct buf url;
    buf_init(&url);
    buf_printf(&url, "%.*s/api/chat", n, endpoint);
    p->url_chat = url.data;
    buf_init(&url);
    buf_printf(&url, "%.*s/api/embed", n, endpoint);
    p->url_embed = url.data;
    if (!model || !*model) {
        rn_fail(err, "model: give the model name, e.g. model = \"llama3.2\"");
        goto fail;
    }
    buf_puts(&p->head, "{\"model\":");
    buf_put_json_string(&p->head, model, strlen(model));
    buf_putc(&p->head, ',');
    static const char *const numbers[] = {"temperature", "top_p"};
    static const char *const integers[][2] = {{"max_tokens", "num_predict"}, {"top_k", "top_k"}, {"seed", "seed"},
                                              {"num_ctx", "num_ctx"}};
    struct buf options;
    buf_init(&options);
    for (size_t i = 0; i < 2; i++) {
        if (!opt_push(L, opts, numbers[i])) continue;
        buf_printf(&options, "%s\"%s\":", options.len ? "," : "", numbers[i]);
        common_put_number(&options, lua_tonumber(L, -1));
        lua_pop(L, 1);
    }
    for (size_t i = 0; i < 4; i++) {
        if (!opt_push(L, opts, integers[i][0])) continue;
        buf_printf(&options, "%s\"%s\":%lld", options.len ? "," : "", integers[i][1], (long long)lua_tointeger(L, -1));
        lua_pop(L, 1);
    }
    if (options.len) buf_printf(&p->tail, ",\"options\":{%s}", options.data);
    buf_free(&options);
    if (keep_alive) {
        buf_puts(&p->tail, ",\"keep_alive\":");
        buf_put_json_string(&p->tail, keep_alive, strlen(keep_alive));
        buf_puts(&p->embed_tail, ",\"keep_alive\":");
        buf_put_json_string(&p->embed_tail, keep_alive, strlen(keep_alive));
    }
    struct buf parameters;
    buf_init(&parameters);
    size_t reserved = sizeof own_fields / sizeof own_fields[0] - (setup->structured ? 0 : 1);
    int rc = common_read_parameters(L, opts, own_fields, reserved, &parameters, err);
    buf_put(&p->tail, parameters.data ? parameters.data : "", parameters.len);
    buf_put(&p->embed_tail, parameters.data ? parameters.data : "", parameters.len);
    buf_free(&parameters);
    if (rc) goto fail;
    header_list_add(&p->headers, "Content-Type", "application/json");
    header_list_add_line(&p->headers, "Expect:");
    if (common_read_key(L, opts, "api_key", &key, err)) goto fail;
    if (key) header_list_add_secret(&p->headers, "Authorization", "Bearer ", key);
    static const char *const reserved_headers[] = {"authorization", NULL};
    if (common_read_headers(&p->headers, L, opts, key ? reserved_headers : NULL, "api_key", err) ||
        header_list_check(&p->headers, err))
        goto fail;
    return p;
fail:
    ollama_close(p);
    return NULL;
}

static int ollama_build(void *self, const struct model_call *call, struct http_request *req, struct rn_err *err)
{
    (void)err;
    struct ollama *p = self;
    req->method = "POST";
    req->headers = p->headers.lines;
    struct buf *b = &req->body;
    buf_put(b, p->head.data, p->head.len);
    if (call->task == MODEL_TASK_EMBEDDING) {
        buf_puts(&req->url, p->url_embed);
        buf_puts(b, "\"input\":");
        buf_put_json_string(b, call->prompt, call->prompt_len);
        buf_put(b, p->embed_tail.data, p->embed_tail.len);
        buf_putc(b, '}');
        return 0;
    }
    buf_puts(&req->url, p->url_chat);
    openai_put_messages(&p->messages, call, b);
    buf_puts(b, ",\"stream\":false");
    if (call->schema_json) {
        buf_puts(b, ",\"format\":");
        buf_puts(b, call->schema_json);
    }
    buf_put(b, p->tail.data, p->tail.len);
    buf_putc(b, '}');
    return 0;
}

static void ollama_classify(void *self, const struct http_response *a, struct provider_verdict *v)
{
    (void)self;
    provider_classify_default(a, v); /* 429 and 5xx (503: the queue is full) retried, other 4xx fail the record */
    if (a->status == 404 && memmem(a->body, a->body_len, "not found", 9)) {
        v->outcome = PROVIDER_FAIL_JOB;
        v->why = "the Ollama server does not have the model (ollama pull it first): no record can succeed";
    } else if (a->status == 401 || a->status == 403) {
        v->outcome = PROVIDER_FAIL_JOB;
        v->why = "the server refused the credentials (api_key): no record can succeed";
    }
}

static int ollama_parse(void *self, const struct http_response *answer, struct model_reply *reply, struct rn_err *err)
{
    (void)self;
    json_error_t jerr;
    json_t *root = json_loadb(answer->body, answer->body_len, 0, &jerr);
    if (!root) return rn_fail(err, "the answer is not JSON (%s at line %d, column %d)", jerr.text, jerr.line, jerr.column);
    reply->tokens_in = common_usage(root, "prompt_eval_count");
    reply->tokens_out = common_usage(root, "eval_count");
    int rc = 0;
    json_t *embeddings = json_object_get(root, "embeddings"), *vector = json_array_get(embeddings, 0);
    json_t *content = json_object_get(json_object_get(root, "message"), "content");
    if (json_is_array(vector)) {
        reply->vector = json_incref(vector);
    } else if (json_is_string(content)) {
        buf_put(&reply->text, json_string_value(content), json_string_length(content));
    } else {
        const char *message = common_error_message(root);
        rc = message ? rn_fail(err, "the answer is an error: %.200s", message)
                     : rn_fail(err, "the answer has no message.content (nor embeddings)");
    }
    json_decref(root);
    return rc;
}

/* Several records' inputs in one POST /api/embed, "input" an array. */
static int ollama_build_inputs(void *self, const struct model_call *const *calls, size_t n, struct http_request *req,
                               struct rn_err *err)
{
    (void)err;
    struct ollama *p = self;
    req->method = "POST";
    req->headers = p->headers.lines;
    buf_puts(&req->url, p->url_embed);
    struct buf *b = &req->body;
    buf_put(b, p->head.data, p->head.len);
    buf_puts(b, "\"input\":[");
    for (size_t i = 0; i < n; i++) {
        if (i) buf_putc(b, ',');
        buf_put_json_string(b, calls[i]->prompt, calls[i]->prompt_len);
    }
    buf_putc(b, ']');
    buf_put(b, p->embed_tail.data, p->embed_tail.len);
    buf_putc(b, '}');
    return 0;
}

/* Its answer: "embeddings" in the order of the inputs, prompt_eval_count for all of them. */
static int ollama_parse_inputs(void *self, const struct http_response *answer, size_t n, json_t **vectors,
                               int64_t *tokens_in, struct rn_err *err)
{
    (void)self;
    json_error_t jerr;
    json_t *root = json_loadb(answer->body, answer->body_len, 0, &jerr);
    if (!root) return rn_fail(err, "the answer is not JSON (%s at line %d, column %d)", jerr.text, jerr.line, jerr.column);
    *tokens_in = common_usage(root, "prompt_eval_count");
    json_t *embeddings = json_object_get(root, "embeddings"), *vector;
    int rc = 0;
    if (!json_is_array(embeddings)) {
        const char *message = common_error_message(root);
        rc = message ? rn_fail(err, "the answer is an error: %.200s", message) : rn_fail(err, "the answer has no embeddings");
    } else if (json_array_size(embeddings) > n) {
        rc = rn_fail(err, "the answer has %zu embeddings, and the request had %zu inputs", json_array_size(embeddings), n);
    }
    size_t i;
    json_array_foreach(rc ? NULL : embeddings, i, vector)
        if (json_is_array(vector)) vectors[i] = json_incref(vector);
    json_decref(root);
    return rc;
}

static const char *const ollama_secrets[] = {"api_key", "headers", NULL};

const struct provider_ops ollama_provider = {
    .version = PROVIDER_INTERFACE_VERSION,
    .name = "ollama",
    .summary = "Ollama's native API: /api/chat with a JSON-schema format, /api/embed",
    .options = ollama_options,
    .capabilities = PROVIDER_CHAT | PROVIDER_EMBEDDINGS | PROVIDER_STRUCTURED,
    .model_option = "model",
    .secret_options = ollama_secrets,
    .open = ollama_open,
    .build = ollama_build,
    .classify = ollama_classify,
    .parse = ollama_parse,
    .close = ollama_close,
    .max_inputs = OLLAMA_MAX_INPUTS,
    .build_inputs = ollama_build_inputs,
    .parse_inputs = ollama_parse_inputs,
};
