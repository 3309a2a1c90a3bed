/* gemini.c: the Gemini API provider, model.gemini{}: generateContent and embedContent (and
 * batchEmbedContents for several records' inputs, batch_inputs) at generativelanguage.googleapis.com with an API key in x-goog-api-key. The wire format and
 * Google's error rules are google_wire.c's, shared with model.vertex. */
#include "models/providers/google_int.h"

#include <stdlib.h>
#include <string.h>

#include "core/http.h"
#include "models/providers/common.h"

static const struct option_spec gemini_options[] = {
    {"endpoint", OPT_STRING, 0, "https://generativelanguage.googleapis.com/v1beta",
     .help = "base URL; /models/MODEL:generateContent is added", .check = common_check_url},
    {"api_key", OPT_STRING, 0, NULL, .help = "secret(\"GEMINI_API_KEY\"): sent as x-goog-api-key", .secret = 1},
    {"model", OPT_STRING, 1, NULL, .help = "model name, e.g. \"gemini-2.0-flash\" or \"text-embedding-004\"",
     .check = common_check_path_name},
    GOOGLE_GENERATION_OPTIONS,
    {"headers", OPT_MAP, 0, NULL, .help = "extra HTTP headers: { [\"X-Name\"] = \"value\" or secret(...) }",
     .value = OPT_VALUE(OPT_STRING, .secret = 1)},
    MODEL_BATCH_INPUTS_OPTION("32", GOOGLE_MAX_INPUTS),
    MODEL_COMMON_OPTIONS,
    {NULL},
};

struct gemini {
    char *url_generate, *url_embed, *url_batch; /* url_batch: :batchEmbedContents */
    char *model_path;            /* "models/NAME", as each request of a batch names it */
    struct google_wire wire;
    struct header_list headers;  /* holds the key */
};

static void gemini_close(void *self)
{
    struct gemini *p = self;
    if (!p) return;
    free(p->url_generate);
    free(p->url_embed);
    free(p->url_batch);
    free(p->model_path);
    google_wire_free(&p->wire);
    header_list_free(&p->headers);
    free(p);
}

static void *gemini_open(struct job_env *env, int opts, const struct provider_setup *setup, struct rn_err *err)
{
    lua_State *L = env->L;
    opts = lua_absindex(L, opts);
    struct gemini *p = rn_calloc(1, sizeof *p);
    const char *endpoint = opt_string(L, opts, "endpoint", "https://generativelanguage.googleapis.com/v1beta");
    const char *model = opt_string(L, opts, "model", NULL), *key; /* required, URL-safe: checked */
    int n = (int)common_url_len(endpoint);
    struct buf url;
    buf_init(&url);
    buf_printf(&url, "%.*s/models/%s:generateContent", n, endpoint, model);
    p->url_generate = url.data;
    buf_init(&url);
    buf_printf(&url, "%.*s/models/%s:embedContent", n, endpoint, model);
    p->url_embed = url.data;
    buf_init(&url);
    buf_printf(&url, "%.*s/models/%s:batchEmbedContents", n, endpoint, model);
    p->url_batch = url.data;
    buf_init(&url);
    buf_printf(&url, "models/%s", model);
    p->model_path = url.data;
    if (google_wire_open(&p->wire, L, opts, setup, GOOGLE_EMBED_CONTENT, err)) goto fail;
    header_list_add(&p->headers, "Content-Type", "application/json");
    header_list_add_line(&p->headers, "Expect:");
    if (common_read_key(L, opts, "api_key", &key, err)) goto fail;
    if (key) header_list_add_secret(&p->headers, "x-goog-api-key", "", key);
    static const char *const reserved[] = {"x-goog-api-key", NULL};
    if (common_read_headers(&p->headers, L, opts, key ? reserved : NULL, "api_key", err) ||
        header_list_check(&p->headers, err))
        goto fail;
    return p;
fail:
    gemini_close(p);
    return NULL;
}

static int gemini_build(void *self, const struct model_call *call, struct http_request *req, struct rn_err *err)
{
    (void)err;
    struct gemini *p = self;
    req->method = "POST";
    req->headers = p->headers.lines;
    buf_puts(&req->url, call->task == MODEL_TASK_EMBEDDING ? p->url_embed : p->url_generate);
    google_wire_body(&p->wire, call, &req->body);
    return 0;
}

static void gemini_classify(void *self, const struct http_response *answer, struct provider_verdict *verdict)
{
    struct gemini *p = self;
    google_wire_classify(&p->wire, answer, verdict);
}

static int gemini_parse(void *self, const struct http_response *answer, struct model_reply *reply, struct rn_err *err)
{
    (void)self;
    return google_wire_parse(answer, reply, err);
}

/* Several records' inputs in one batchEmbedContents. */
static int gemini_build_inputs(void *self, const struct model_call *const *calls, size_t n, struct http_request *req,
                               struct rn_err *err)
{
    (void)err;
    struct gemini *p = self;
    req->method = "POST";
    req->headers = p->headers.lines;
    buf_puts(&req->url, p->url_batch);
    google_wire_inputs_body(&p->wire, p->model_path, calls, n, &req->body);
    return 0;
}

static int gemini_parse_inputs(void *self, const struct http_response *answer, size_t n, json_t **vectors,
                               int64_t *tokens_in, struct rn_err *err)
{
    (void)self;
    return google_wire_parse_inputs(answer, n, vectors, tokens_in, err);
}

static const char *const gemini_secrets[] = {"api_key", "headers", NULL};

const struct provider_ops gemini_provider = {
    .version = PROVIDER_INTERFACE_VERSION,
    .name = "gemini",
    .summary = "Google Gemini API: generateContent with responseSchema, embedContent (API key)",
    .options = gemini_options,
    .capabilities = PROVIDER_CHAT | PROVIDER_EMBEDDINGS | PROVIDER_STRUCTURED,
    .model_option = "model",
    .secret_options = gemini_secrets,
    .open = gemini_open,
    .build = gemini_build,
    .classify = gemini_classify,
    .parse = gemini_parse,
    .close = gemini_close,
    .max_inputs = GOOGLE_MAX_INPUTS,
    .build_inputs = gemini_build_inputs,
    .parse_inputs = gemini_parse_inputs,
};
