/* openai.c: the OpenAI provider, model.openai{}: chat completions (or, with api = "responses",
 * the Responses API) and embeddings over the OpenAI HTTP API or any server that speaks it
 * (provider interface v2, models/provider.h). It
 * builds one request and parses one answer in the OpenAI wire format (openai_wire.c, shared
 * with model.azure_openai); its answers are classified by the default rules (provider.c),
 * which are OpenAI's; a Responses answer that is incomplete or a refusal fails its record.
 * Retries, limits, prompts and answer checks are the engine's.
 *
 * Everything that is the same for every request (URL, headers, the fixed JSON around the
 * messages) is made once at open; a request body is a few appends. The api key goes into the
 * Authorization header and nowhere else; the engine redacts it (a secret option) from every
 * reason. */
#include "models/providers/openai_int.h"

#include <stdlib.h>
#include <string.h>

#include "core/http.h"
#include "models/providers/common.h"

static const struct option_spec openai_options[] = {
    {"endpoint", OPT_STRING, 0, "https://api.openai.com/v1",
     .help = "base URL; /chat/completions (or /responses) or /embeddings is added", .check = common_check_url},
    {"api", OPT_ENUM, 0, "chat", .help = "\"chat\": chat completions; \"responses\": the Responses API (POST /responses)",
     .choices = OPT_CHOICES("chat", "responses")},
    {"api_key", OPT_STRING, 0, NULL, .help = "secret(\"OPENAI_API_KEY\") or a string; never printed or logged", .secret = 1},
    {"model", OPT_STRING, 1, NULL, .help = "model name, e.g. \"gpt-4o-mini\" or \"text-embedding-3-small\""},
    OPENAI_SAMPLING_OPTIONS,
    {"structured", OPT_BOOLEAN, 0, NULL, .help = "ask for JSON that follows the output schema (response_format)",
     .default_note = "with output"},
    {"headers", OPT_MAP, 0, NULL, .help = "extra HTTP headers: { [\"X-Name\"] = \"value\" or secret(...) }",
     .value = OPT_VALUE(OPT_STRING, .secret = 1)},
    {"organization", OPT_STRING, 0, NULL, .help = "sent as OpenAI-Organization"},
    MODEL_BATCH_OPTION,
    MODEL_BATCH_INPUTS_OPTION("32", OPENAI_MAX_INPUTS),
    MODEL_COMMON_OPTIONS,
    {NULL},
};

struct openai {
    char *url_chat, *url_embeddings;  /* url_chat is .../responses with api = "responses" */
    struct openai_wire wire;
    struct header_list headers;  /* the same for every request, lent to each call; holds the key */
    struct header_list control;  /* the same without Content-Type, for the batch API's uploads and GETs */
    char *base;                  /* the endpoint without a trailing slash */
    int64_t max_tokens;          /* 0 when not set */
    int embeddings;              /* the task is embedding */
    char why[300];               /* the last classify's reason for failing a record */
};

static void openai_close(void *self)
{
    struct openai *p = self;
    if (!p) return;
    free(p->url_chat);
    free(p->url_embeddings);
    openai_wire_free(&p->wire);
    header_list_free(&p->headers);
    header_list_free(&p->control);
    free(p->base);
    free(p);
}

static void *openai_open(struct job_env *env, int opts, const struct provider_setup *setup, struct rn_err *err)
{
    lua_State *L = env->L;
    opts = lua_absindex(L, opts);
    struct openai *p = rn_calloc(1, sizeof *p);
    const char *endpoint = opt_string(L, opts, "endpoint", "https://api.openai.com/v1"); /* an http(s) URL: checked */
    int n = (int)common_url_len(endpoint);
    struct buf url;
    buf_init(&url);
    buf_put(&url, endpoint, (size_t)n);
    p->base = url.data;
    p->embeddings = setup->task == MODEL_TASK_EMBEDDING;
    enum openai_api api = strcmp(opt_string(L, opts, "api", "chat"), "responses") == 0 ? OPENAI_RESPONSES : OPENAI_CHAT;
    buf_init(&url);
    buf_printf(&url, "%.*s/%s", n, endpoint, api == OPENAI_RESPONSES ? "responses" : "chat/completions");
    p->url_chat = url.data;
    buf_init(&url);
    buf_printf(&url, "%.*s/embeddings", n, endpoint);
    p->url_embeddings = url.data;

    const char *model = opt_string(L, opts, "model", NULL);
    const char *key, *organization = opt_string(L, opts, "organization", NULL);
    if (!model || !*model) {
        rn_fail(err, "model: give the model name, e.g. model = \"gpt-4o-mini\"");
        goto fail;
    }
    if (api == OPENAI_RESPONSES && opt_push(L, opts, "batch")) {
        int on = opt_boolean(L, lua_gettop(L), "enabled", 1);
        lua_pop(L, 1);
        if (on) {
            rn_fail(err, "api: \"responses\" does not go through the batch API in runnel (its batches send "
                         "/chat/completions): use api = \"chat\" with batch, or set batch = false");
            goto fail;
        }
    }
    if (openai_wire_open(&p->wire, L, opts, model, setup->structured, api, err)) goto fail;
    if (opt_push(L, opts, "max_tokens")) { /* OpenAI counts it against the token limit (openai_charge) */
        p->max_tokens = (int64_t)lua_tointeger(L, -1);
        lua_pop(L, 1);
    }
    header_list_add(&p->headers, "Content-Type", "application/json");
    if (common_read_key(L, opts, "api_key", &key, err)) goto fail;
    if (organization && common_has_control(organization)) {
        rn_fail(err, "organization: holds a control character");
        goto fail;
    }
    static const char *const reserved[] = {"authorization", NULL};
    for (struct header_list *h = &p->headers; h; h = h == &p->headers ? &p->control : NULL) { /* both lists */
        header_list_add_line(h, "Expect:"); /* no value: curl sends no Expect and never waits for 100-continue */
        if (key) header_list_add_secret(h, "Authorization", "Bearer ", key);
        if (organization) header_list_add(h, "OpenAI-Organization", organization);
        if (common_read_headers(h, L, opts, key ? reserved : NULL, "api_key", err) || header_list_check(h, err))
            goto fail;
    }
    return p;
fail:
    openai_close(p);
    return NULL;
}

static int openai_build(void *self, const struct model_call *call, struct http_request *req, struct rn_err *err)
{
    (void)err; /* nothing here can fail */
    struct openai *p = self;
    req->method = "POST";
    req->headers = p->headers.lines;
    buf_puts(&req->url, call->task == MODEL_TASK_EMBEDDING ? p->url_embeddings : p->url_chat);
    openai_wire_body(&p->wire, call, &req->body);
    return 0;
}

/* OpenAI's rules; a Responses answer that is incomplete or a refusal fails its record with why. */
static void openai_classify(void *self, const struct http_response *answer, struct provider_verdict *verdict)
{
    struct openai *p = self;
    provider_classify_default(answer, verdict);
    if (p->wire.api != OPENAI_RESPONSES || verdict->outcome != PROVIDER_OK) return;
    if (openai_responses_failure(answer->body, answer->body_len, p->why, sizeof p->why)) {
        verdict->outcome = PROVIDER_FAIL_RECORD;
        verdict->why = p->why;
    }
}

static int openai_parse(void *self, const struct http_response *answer, struct model_reply *reply, struct rn_err *err)
{
    struct openai *p = self;
    if (p->wire.api == OPENAI_RESPONSES) return openai_responses_parse(answer->body, answer->body_len, reply, err);
    return openai_wire_parse(answer->body, answer->body_len, reply, err);
}

/* Several records' inputs in one POST /embeddings. */
static int openai_build_inputs(void *self, const struct model_call *const *calls, size_t n, struct http_request *req,
                               struct rn_err *err)
{
    (void)err;
    struct openai *p = self;
    req->method = "POST";
    req->headers = p->headers.lines;
    buf_puts(&req->url, p->url_embeddings);
    openai_wire_inputs_body(&p->wire, calls, n, &req->body);
    return 0;
}

static int openai_parse_inputs(void *self, const struct http_response *answer, size_t n, json_t **vectors,
                               int64_t *tokens_in, struct rn_err *err)
{
    (void)self;
    return openai_wire_parse_inputs(answer->body, answer->body_len, n, vectors, tokens_in, err);
}

/* OpenAI counts a request against its token limit before it runs as the characters of its
 * messages / 4 plus max_tokens. */
static int64_t openai_charge(void *self, const struct model_call *call)
{
    struct openai *p = self;
    size_t chars = call->prompt_len;
    if (call->task != MODEL_TASK_EMBEDDING) {
        if (call->system) chars += strlen(call->system);
        if (call->previous_answer) chars += strlen(call->previous_answer);
        if (call->correction) chars += strlen(call->correction);
    }
    int64_t tokens = (int64_t)(chars / 4) + (call->task == MODEL_TASK_EMBEDDING ? 0 : p->max_tokens);
    return tokens > 0 ? tokens : 1;
}

void openai_endpoint_of(void *self, struct openai_endpoint *out)
{
    struct openai *p = self;
    const char *scheme = strstr(p->base, "://");
    const char *path = scheme ? strchr(scheme + 3, '/') : NULL;
    *out = (struct openai_endpoint){p->base, path ? path : "", p->headers.lines, p->control.lines, p->embeddings};
}

static const char *const openai_secrets[] = {"api_key", "headers", NULL};

const struct provider_ops openai_provider = {
    .version = PROVIDER_INTERFACE_VERSION,
    .name = "openai",
    .summary = "OpenAI chat completions or the Responses API, and embeddings (or any compatible server)",
    .options = openai_options,
    .capabilities = PROVIDER_CHAT | PROVIDER_EMBEDDINGS | PROVIDER_STRUCTURED | PROVIDER_BATCH,
    .model_option = "model",
    .secret_options = openai_secrets,
    .open = openai_open,
    .build = openai_build,
    .classify = openai_classify, /* OpenAI's rules, the default, and the Responses API's failures */
    .parse = openai_parse,
    .close = openai_close,
    .charge = openai_charge,
    .batch = &openai_batch_ops,
    .max_inputs = OPENAI_MAX_INPUTS,
    .max_input_tokens = OPENAI_MAX_INPUT_TOKENS,
    .build_inputs = openai_build_inputs,
    .parse_inputs = openai_parse_inputs,
};
