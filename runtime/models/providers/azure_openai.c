/* azure_openai.c: the Azure OpenAI provider, model.azure_openai{}: a deployment's chat
 * completions and embeddings, in OpenAI's wire format (openai_wire.c) at Azure's URLs:
 * {endpoint}/openai/deployments/{deployment}/chat/completions?api-version=V, or with
 * api_version = "v1" the newer {endpoint}/openai/v1/chat/completions with the deployment as the
 * model. The key goes in an `api-key` header, or an Entra ID token as a bearer.
 *
 * What differs from OpenAI is in classify: Azure's content filter withholds an answer
 * (finish_reason content_filter) or refuses a prompt (HTTP 400, code content_filter), and no
 * retry changes that: the record fails with the categories that were filtered. A refused key
 * or a deployment that does not exist stops the job. */
#include "models/providers/openai_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/http.h"
#include "models/providers/common.h"

#define AZURE_API_VERSION "2024-10-21"

static const struct option_spec azure_options[] = {
    {"endpoint", OPT_STRING, 0, NULL, .help = "the resource's URL, https://NAME.openai.azure.com (or give resource)",
     .check = common_check_url},
    {"resource", OPT_STRING, 0, NULL, .help = "the resource name: endpoint is https://NAME.openai.azure.com",
     .check = common_check_path_name},
    {"deployment", OPT_STRING, 1, NULL, .help = "the deployment to call (the model name in the v1 API)",
     .check = common_check_path_name},
    {"api_version", OPT_STRING, 0, AZURE_API_VERSION,
     .help = "the api-version query parameter; \"v1\" uses the /openai/v1/ API instead", .check = common_check_path_name},
    {"api_key", OPT_STRING, 0, NULL, .help = "secret(\"AZURE_OPENAI_API_KEY\"): sent as the api-key header", .secret = 1},
    {"token", OPT_STRING, 0, NULL, .help = "an Entra ID access token, sent as Authorization: Bearer (instead of api_key)",
     .secret = 1},
    OPENAI_SAMPLING_OPTIONS,
    {"structured", OPT_BOOLEAN, 0, NULL, .help = "ask for JSON that follows the output schema (response_format)",
     .default_note = "with output"},
    {"headers", OPT_MAP, 0, NULL, .help = "extra HTTP headers: { [\"X-Name\"] = \"value\" or secret(...) }",
     .value = OPT_VALUE(OPT_STRING, .secret = 1)},
    MODEL_BATCH_INPUTS_OPTION("16", OPENAI_MAX_INPUTS), /* older deployments take 16 inputs a request */
    MODEL_COMMON_OPTIONS,
    {NULL},
};

struct azure {
    char *url_chat, *url_embeddings;
    struct openai_wire wire;
    struct header_list headers;  /* holds the key */
    char why[256];               /* a verdict's explanation, until the next classify */
};

static void azure_close(void *self)
{
    struct azure *p = self;
    if (!p) return;
    free(p->url_chat);
    free(p->url_embeddings);
    openai_wire_free(&p->wire);
    header_list_free(&p->headers);
    free(p);
}

static void *azure_open(struct job_env *env, int opts, const struct provider_setup *setup, struct rn_err *err)
{
    lua_State *L = env->L;
    opts = lua_absindex(L, opts);
    struct azure *p = rn_calloc(1, sizeof *p);
    const char *endpoint = opt_string(L, opts, "endpoint", NULL), *resource = opt_string(L, opts, "resource", NULL);
    const char *deployment = opt_string(L, opts, "deployment", NULL); /* required, URL-safe: checked */
    const char *version = opt_string(L, opts, "api_version", AZURE_API_VERSION);
    const char *key, *token;
    int v1 = strcmp(version, "v1") == 0;
    struct buf base;
    buf_init(&base);
    if (!endpoint == !resource) {
        rn_fail(err, endpoint ? "endpoint: give endpoint or resource, not both"
                              : "endpoint: give the resource's URL (endpoint = \"https://NAME.openai.azure.com\") or its name (resource = \"NAME\")");
        goto fail;
    }
    if (endpoint) buf_printf(&base, "%.*s", (int)common_url_len(endpoint), endpoint);
    else buf_printf(&base, "https://%s.openai.azure.com", resource);
    struct buf url;
    const char *kinds[2] = {"chat/completions", "embeddings"};
    char **urls[2] = {&p->url_chat, &p->url_embeddings};
    for (int k = 0; k < 2; k++) {
        buf_init(&url);
        if (v1) buf_printf(&url, "%s/openai/v1/%s", base.data, kinds[k]);
        else buf_printf(&url, "%s/openai/deployments/%s/%s?api-version=%s", base.data, deployment, kinds[k], version);
        *urls[k] = url.data;
    }
    if (openai_wire_open(&p->wire, L, opts, v1 ? deployment : NULL, setup->structured, OPENAI_CHAT, err)) goto fail;
    if (common_read_key(L, opts, "api_key", &key, err) || common_read_key(L, opts, "token", &token, err)) goto fail;
    if (key && token) {
        rn_fail(err, "token: give api_key or an Entra ID token, not both");
        goto fail;
    }
    header_list_add(&p->headers, "Content-Type", "application/json");
    header_list_add_line(&p->headers, "Expect:");
    if (key) header_list_add_secret(&p->headers, "api-key", "", key);
    if (token) header_list_add_secret(&p->headers, "Authorization", "Bearer ", token);
    static const char *const key_header[] = {"api-key", NULL}, *const token_header[] = {"authorization", NULL};
    if (common_read_headers(&p->headers, L, opts, key ? key_header : token ? token_header : NULL,
                            key ? "api_key" : "token", err) ||
        header_list_check(&p->headers, err))
        goto fail;
    buf_free(&base);
    return p;
fail:
    buf_free(&base);
    azure_close(p);
    return NULL;
}

static int azure_build(void *self, const struct model_call *call, struct http_request *req, struct rn_err *err)
{
    (void)err;
    struct azure *p = self;
    req->method = "POST";
    req->headers = p->headers.lines;
    buf_puts(&req->url, call->task == MODEL_TASK_EMBEDDING ? p->url_embeddings : p->url_chat);
    openai_wire_body(&p->wire, call, &req->body);
    return 0;
}

/* "hate (high), jailbreak (detected)": the categories a content filter result marks filtered. */
static void put_filtered(char *out, size_t n, size_t *used, json_t *results)
{
    const char *category;
    json_t *result;
    size_t named = 0;
    json_object_foreach(results, category, result) {
        if (!json_is_true(json_object_get(result, "filtered"))) continue;
        const char *severity = json_string_value(json_object_get(result, "severity"));
        int w = snprintf(out + *used, n - *used, "%s%s (%s)", named++ ? ", " : "", category,
                         severity ? severity : json_is_true(json_object_get(result, "detected")) ? "detected" : "filtered");
        if (w < 0 || (size_t)w >= n - *used) { *used = n - 1; return; }
        *used += (size_t)w;
    }
}

/* Why the content filter failed the record, into p->why; NULL when the answer is no filtering. */
static const char *content_filtered(struct azure *p, const struct http_response *a)
{
    if (!memmem(a->body, a->body_len, "\"content_filter\"", 16)) return NULL; /* most answers: no parse */
    json_t *root = json_loadb(a->body, a->body_len, 0, NULL);
    json_t *results = NULL;
    const char *what = NULL;
    if (a->status >= 200 && a->status < 300) {
        json_t *choice = json_array_get(json_object_get(root, "choices"), 0);
        const char *finish = json_string_value(json_object_get(choice, "finish_reason"));
        if (finish && strcmp(finish, "content_filter") == 0) {
            what = "Azure's content filter withheld the answer";
            results = json_object_get(choice, "content_filter_results");
        }
    } else {
        json_t *error = json_object_get(root, "error");
        const char *code = json_string_value(json_object_get(error, "code"));
        if (code && strcmp(code, "content_filter") == 0) {
            what = "Azure's content filter refused the prompt";
            results = json_object_get(json_object_get(error, "innererror"), "content_filter_result");
        }
    }
    if (what) {
        size_t used = (size_t)snprintf(p->why, sizeof p->why, "%s (", what), start = used;
        put_filtered(p->why, sizeof p->why - 1, &used, results);
        if (used == start) used += (size_t)snprintf(p->why + used, sizeof p->why - used, "no category named");
        snprintf(p->why + used, sizeof p->why - used, ")");
    }
    json_decref(root);
    return what ? p->why : NULL;
}

static int error_code_is(const struct http_response *a, const char *code)
{
    if (!memmem(a->body, a->body_len, code, strlen(code))) return 0;
    json_t *root = json_loadb(a->body, a->body_len, 0, NULL);
    const char *got = json_string_value(json_object_get(json_object_get(root, "error"), "code"));
    int is = got && strcmp(got, code) == 0;
    json_decref(root);
    return is;
}

static void azure_classify(void *self, const struct http_response *a, struct provider_verdict *v)
{
    struct azure *p = self;
    provider_classify_default(a, v); /* Azure's 429s and 5xx are OpenAI's: retry-after(-ms), x-ratelimit-* */
    if (a->status == 200 || a->status == 400) {
        const char *why = content_filtered(p, a);
        if (why) {
            v->outcome = PROVIDER_FAIL_RECORD;
            v->why = why;
        }
    } else if (a->status == 401 || a->status == 403) {
        v->outcome = PROVIDER_FAIL_JOB;
        v->why = "Azure refused the credentials (api_key or token): no record can succeed";
    } else if (a->status == 404 && error_code_is(a, "DeploymentNotFound")) {
        v->outcome = PROVIDER_FAIL_JOB;
        v->why = "the deployment does not exist in this resource: no record can succeed";
    }
    if (v->outcome != PROVIDER_RETRY) v->retry_after_ms = -1;
}

static int azure_parse(void *self, const struct http_response *answer, struct model_reply *reply, struct rn_err *err)
{
    (void)self;
    return openai_wire_parse(answer->body, answer->body_len, reply, err);
}

/* Several records' inputs in one POST .../embeddings, in OpenAI's format. */
static int azure_build_inputs(void *self, const struct model_call *const *calls, size_t n, struct http_request *req,
                              struct rn_err *err)
{
    (void)err;
    struct azure *p = self;
    req->method = "POST";
    req->headers = p->headers.lines;
    buf_puts(&req->url, p->url_embeddings);
    openai_wire_inputs_body(&p->wire, calls, n, &req->body);
    return 0;
}

static int azure_parse_inputs(void *self, const struct http_response *answer, size_t n, json_t **vectors,
                              int64_t *tokens_in, struct rn_err *err)
{
    (void)self;
    return openai_wire_parse_inputs(answer->body, answer->body_len, n, vectors, tokens_in, err);
}

static const char *const azure_secrets[] = {"api_key", "token", "headers", NULL};

const struct provider_ops azure_openai_provider = {
    .version = PROVIDER_INTERFACE_VERSION,
    .name = "azure_openai",
    .summary = "Azure OpenAI: a deployment's chat completions and embeddings (api-key or Entra ID token)",
    .options = azure_options,
    .capabilities = PROVIDER_CHAT | PROVIDER_EMBEDDINGS | PROVIDER_STRUCTURED,
    .model_option = "deployment",
    .secret_options = azure_secrets,
    .open = azure_open,
    .build = azure_build,
    .classify = azure_classify,
    .parse = azure_parse,
    .close = azure_close,
    .max_inputs = OPENAI_MAX_INPUTS,
    .max_input_tokens = OPENAI_MAX_INPUT_TOKENS,
    .build_inputs = azure_build_inputs,
    .parse_inputs = azure_parse_inputs,
};
