/* bedrock.c: the Amazon Bedrock provider, model.bedrock{}: the Converse API (POST
 * /model/{modelId}/converse on bedrock-runtime.{region}.amazonaws.com) for chat, and Titan-style
 * InvokeModel (/model/{modelId}/invoke, {"inputText"}) for embeddings. Structured output is a
 * forced tool (toolConfig), the answer its toolUse input.
 *
 * Every attempt is signed with AWS Signature Version 4 (core/sigv4) in authorize, at the time of
 * that attempt: the model id's ':' travels percent-encoded in the path, and sigv4 encodes the
 * path once more, as every AWS service but S3 wants. Credentials come from the options or the
 * standard environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
 * AWS_REGION / AWS_DEFAULT_REGION); a Bedrock API key (api_key, or AWS_BEARER_TOKEN_BEDROCK)
 * is sent as a bearer token instead. Errors are read from x-amzn-ErrorType: throttling and
 * unavailability are retried, a refused credential or an unknown model stops the job. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/http.h"
#include "core/secret.h"
#include "core/sigv4.h"
#include "models/providers/common.h"

static const struct option_spec bedrock_options[] = {
    {"region", OPT_STRING, 0, NULL, .help = "AWS region, e.g. \"us-east-1\"", .default_note = "$AWS_REGION, $AWS_DEFAULT_REGION",
     .check = common_check_path_name},
    {"endpoint", OPT_STRING, 0, NULL, .help = "base URL (a VPC endpoint, a proxy)",
     .default_note = "https://bedrock-runtime.REGION.amazonaws.com", .check = common_check_url},
    {"model", OPT_STRING, 1, NULL, .help = "model id or inference profile, e.g. \"anthropic.claude-3-haiku-20240307-v1:0\""},
    {"access_key_id", OPT_STRING, 0, NULL, .help = "AWS access key id", .default_note = "$AWS_ACCESS_KEY_ID", .secret = 1},
    {"secret_access_key", OPT_STRING, 0, NULL, .help = "AWS secret access key; never printed or logged",
     .default_note = "$AWS_SECRET_ACCESS_KEY", .secret = 1},
    {"session_token", OPT_STRING, 0, NULL, .help = "AWS session token (temporary credentials)",
     .default_note = "$AWS_SESSION_TOKEN", .secret = 1},
    {"api_key", OPT_STRING, 0, NULL, .help = "a Bedrock API key, sent as a bearer token instead of signing",
     .default_note = "$AWS_BEARER_TOKEN_BEDROCK", .secret = 1},
    {"max_tokens", OPT_INTEGER, 0, NULL, .help = "longest answer in tokens (inferenceConfig.maxTokens)", OPT_AT_LEAST(1)},
    {"temperature", OPT_NUMBER, 0, NULL, .help = "sampling temperature (inferenceConfig)", OPT_RANGE(0, 1)},
    {"top_p", OPT_NUMBER, 0, NULL, .help = "nucleus sampling (inferenceConfig.topP)", OPT_RANGE(0, 1)},
    {"dimensions", OPT_INTEGER, 0, NULL, .help = "task embedding: the vector's length (Titan v2: 256, 512, 1024)",
     OPT_AT_LEAST(1)},
    {"structured", OPT_BOOLEAN, 0, NULL, .help = "answer through a tool whose input schema is the output schema",
     .default_note = "with output"},
    {"parameters", OPT_TABLE, 0, NULL, .help = "more request fields (additionalModelRequestFields, guardrailConfig, ...)"},
    {"headers", OPT_MAP, 0, NULL, .help = "extra HTTP headers: { [\"X-Name\"] = \"value\" or secret(...) }",
     .value = OPT_VALUE(OPT_STRING, .secret = 1)},
    MODEL_COMMON_OPTIONS,
    {NULL},
};

struct bedrock {
    char *url_converse, *url_invoke;
    char *host;                  /* as curl sends it in Host, for the signature */
    char *path_converse, *path_invoke; /* the URL paths, percent-encoded once */
    char *region;
    char *access_key, *secret_key, *session_token; /* owned copies, wiped at close; NULL with api_key */
    struct buf tail;             /* ,"inferenceConfig":{...} and the parameters */
    long dimensions;
    const char *system_source;
    struct buf system_json;
    struct header_list headers;  /* Content-Type, Expect, the bearer key or none, the extra headers */
    time_t fixed_time;
    struct buf scratch;          /* the signature, made per attempt */
    char why[200];               /* a verdict's explanation, until the next classify */
};

static void bedrock_close(void *self)
{
    struct bedrock *p = self;
    if (!p) return;
    free(p->url_converse);
    free(p->url_invoke);
    free(p->host);
    free(p->path_converse);
    free(p->path_invoke);
    free(p->region);
    secret_free(p->access_key);
    secret_free(p->secret_key);
    secret_free(p->session_token);
    buf_free(&p->tail);
    buf_free(&p->system_json);
    header_list_free(&p->headers);
    if (p->scratch.data) explicit_bzero(p->scratch.data, p->scratch.cap);
    buf_free(&p->scratch);
    free(p);
}

/* A path segment as it travels: everything but RFC 3986's unreserved characters encoded
 * (':' and '/' of model ids and ARNs included). */
static void put_segment(struct buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (((c | 32) >= 'a' && (c | 32) <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~') {
            buf_putc(b, (char)c);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            buf_put(b, e, 3);
        }
    }
}

/* An AWS credential from the option, else the environment variable (common_credential). */
static const char *credential(lua_State *L, int opts, const char *option, const char *variable,
                              const struct provider_setup *setup, struct rn_err *err, int *failed)
{
    return common_credential(L, opts, option, variable, "", setup->secrets, failed, err);
}

static const struct reserved_field own_fields[] = {
    {"messages", "runnel writes it"}, {"system", "use the system option"},
    {"inferenceConfig", "use max_tokens, temperature and top_p"}, {"modelId", "use the model option"},
    {"toolConfig", "structured output writes it (set structured = false to send your own)"},
};

static int read_credentials(struct bedrock *p, lua_State *L, int opts, const struct provider_setup *setup,
                            struct rn_err *err)
{
    int failed = 0;
    const char *key_id, *secret, *token = NULL, *api_key;
    if (common_read_key(L, opts, "api_key", &api_key, err) || common_read_key(L, opts, "access_key_id", &key_id, err))
        return -1;
    if (api_key && key_id) return rn_fail(err, "api_key: give a Bedrock API key or access_key_id, not both");
    if (!api_key && !key_id) { /* the environment, as the AWS tools read it */
        api_key = credential(L, opts, "api_key", "AWS_BEARER_TOKEN_BEDROCK", setup, err, &failed);
        if (!api_key && !failed) key_id = credential(L, opts, "access_key_id", "AWS_ACCESS_KEY_ID", setup, err, &failed);
    }
    if (failed) return -1;
    if (api_key) {
        header_list_add_secret(&p->headers, "Authorization", "Bearer ", api_key);
        return 0;
    }
    if (!key_id)
        return rn_fail(err, "access_key_id: no AWS credentials: give access_key_id and secret_access_key (or set "
                            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or a Bedrock API key (api_key)");
    secret = credential(L, opts, "secret_access_key", "AWS_SECRET_ACCESS_KEY", setup, err, &failed);
    if (!failed) token = credential(L, opts, "session_token", "AWS_SESSION_TOKEN", setup, err, &failed);
    if (failed) return -1;
    if (!secret) return rn_fail(err, "secret_access_key: give it with access_key_id (or set AWS_SECRET_ACCESS_KEY)");
    p->access_key = rn_strdup(key_id);
    p->secret_key = rn_strdup(secret);
    if (token) p->session_token = rn_strdup(token);
    return 0;
}

static void *bedrock_open(struct job_env *env, int opts, const struct provider_setup *setup, struct rn_err *err)
{
    lua_State *L = env->L;
    opts = lua_absindex(L, opts);
    struct bedrock *p = rn_calloc(1, sizeof *p);
    buf_init(&p->tail);
    buf_init(&p->system_json);
    buf_init(&p->scratch);
    p->fixed_time = setup->fixed_time;
    struct buf url;
    const char *region = opt_string(L, opts, "region", NULL), *endpoint = opt_string(L, opts, "endpoint", NULL);
    const char *model = opt_string(L, opts, "model", NULL);
    if (!region) region = getenv("AWS_REGION");
    if (!region || !*region) region = getenv("AWS_DEFAULT_REGION");
    if (!region || !*region) {
        rn_fail(err, "region: give the AWS region (region = \"us-east-1\", or set AWS_REGION)");
        goto fail;
    }
    for (const char *c = region; *c; c++)
        if (!(((*c | 32) >= 'a' && (*c | 32) <= 'z') || (*c >= '0' && *c <= '9') || *c == '-')) {
            rn_fail(err, "region: \"%.40s\" is not a region name", region);
            goto fail;
        }
    if (!model || !*model) {
        rn_fail(err, "model: give the model id, e.g. model = \"anthropic.claude-3-haiku-20240307-v1:0\"");
        goto fail;
    }
    p->region = rn_strdup(region);
    buf_init(&url);
    if (endpoint) buf_printf(&url, "%.*s", (int)common_url_len(endpoint), endpoint);
    else buf_printf(&url, "https://bedrock-runtime.%s.amazonaws.com", region);
    /* host[:port] as curl sends it (no default port), and the base path before /model */
    const char *authority = strstr(url.data, "://") + 3, *slash = strchr(authority, '/');
    size_t host_len = slash ? (size_t)(slash - authority) : strlen(authority);
    int https = strncmp(url.data, "https", 5) == 0;
    const char *default_port = https ? ":443" : ":80";
    if (host_len > strlen(default_port) && strncmp(authority + host_len - strlen(default_port), default_port, strlen(default_port)) == 0)
        host_len -= strlen(default_port);
    p->host = rn_strndup(authority, host_len);
    struct buf path;
    const char *kinds[2] = {"converse", "invoke"};
    char **paths[2] = {&p->path_converse, &p->path_invoke}, **urls[2] = {&p->url_converse, &p->url_invoke};
    for (int k = 0; k < 2; k++) {
        buf_init(&path);
        if (slash) buf_puts(&path, slash);
        buf_puts(&path, "/model/");
        put_segment(&path, model);
        buf_printf(&path, "/%s", kinds[k]);
        *paths[k] = path.data;
        struct buf u;
        buf_init(&u);
        buf_printf(&u, "%.*s%s", (int)(authority - url.data) + (int)(slash ? (size_t)(slash - authority) : strlen(authority)),
                   url.data, path.data);
        *urls[k] = u.data;
    }
    buf_free(&url);

    buf_puts(&p->tail, ",\"inferenceConfig\":{");
    size_t config_start = p->tail.len;
    if (opt_push(L, opts, "max_tokens")) {
        buf_printf(&p->tail, "\"maxTokens\":%lld", (long long)lua_tointeger(L, -1));
        lua_pop(L, 1);
    }
    if (opt_push(L, opts, "temperature")) {
        buf_puts(&p->tail, p->tail.len > config_start ? ",\"temperature\":" : "\"temperature\":");
        common_put_number(&p->tail, lua_tonumber(L, -1));
        lua_pop(L, 1);
    }
    if (opt_push(L, opts, "top_p")) {
        buf_puts(&p->tail, p->tail.len > config_start ? ",\"topP\":" : "\"topP\":");
        common_put_number(&p->tail, lua_tonumber(L, -1));
        lua_pop(L, 1);
    }
    if (p->tail.len == config_start) buf_clear(&p->tail); /* none given: no inferenceConfig */
    else buf_putc(&p->tail, '}');
    p->dimensions = (long)opt_integer(L, opts, "dimensions", 0);
    size_t reserved = sizeof own_fields / sizeof own_fields[0] - (setup->structured ? 0 : 1);
    if (common_read_parameters(L, opts, own_fields, reserved, &p->tail, err)) goto fail;

    header_list_add(&p->headers, "Content-Type", "application/json");
    header_list_add_line(&p->headers, "Expect:");
    if (read_credentials(p, L, opts, setup, err)) goto fail;
    static const char *const reserved_headers[] = {"authorization", "x-amz-date", "x-amz-security-token", "host", NULL};
    if (common_read_headers(&p->headers, L, opts, reserved_headers, "the signature (or api_key)", err) ||
        header_list_check(&p->headers, err))
        goto fail;
    return p;
fail:
    bedrock_close(p);
    return NULL;
}

static void put_text_message(struct buf *b, const char *role, const char *text, size_t len)
{
    buf_printf(b, "{\"role\":\"%s\",\"content\":[{\"text\":", role);
    buf_put_json_string(b, text, len);
    buf_puts(b, "}]}");
}

static int bedrock_build(void *self, const struct model_call *call, struct http_request *req, struct rn_err *err)
{
    (void)err;
    struct bedrock *p = self;
    req->method = "POST";
    req->headers = p->headers.lines;
    struct buf *b = &req->body;
    if (call->task == MODEL_TASK_EMBEDDING) {
        buf_puts(&req->url, p->url_invoke);
        buf_puts(b, "{\"inputText\":");
        buf_put_json_string(b, call->prompt, call->prompt_len);
        if (p->dimensions) buf_printf(b, ",\"dimensions\":%ld", p->dimensions);
        buf_putc(b, '}');
        return 0;
    }
    buf_puts(&req->url, p->url_converse);
    buf_putc(b, '{');
    if (call->system) {
        if (call->system != p->system_source) {
            buf_clear(&p->system_json);
            buf_puts(&p->system_json, "\"system\":[{\"text\":");
            buf_put_json_string(&p->system_json, call->system, strlen(call->system));
            buf_puts(&p->system_json, "}],");
            p->system_source = call->system;
        }
        buf_put(b, p->system_json.data, p->system_json.len);
    }
    buf_puts(b, "\"messages\":[");
    common_put_turns(b, call, put_text_message, "assistant", "(no answer)");
    buf_putc(b, ']');
    buf_put(b, p->tail.data, p->tail.len);
    if (call->schema_json) {
        buf_puts(b, ",\"toolConfig\":{\"tools\":[{\"toolSpec\":{\"name\":\"output\",\"description\":\"Record the answer.\","
                    "\"inputSchema\":{\"json\":");
        buf_puts(b, call->schema_json);
        buf_puts(b, "}}}],\"toolChoice\":{\"tool\":{\"name\":\"output\"}}}");
    }
    buf_putc(b, '}');
    return 0;
}

/* Sign this attempt (SigV4, service bedrock) at the current time; nothing with a bearer key. */
static int bedrock_authorize(void *self, struct http_request *req, struct rn_err *err)
{
    struct bedrock *p = self;
    if (!p->secret_key) return 0;
    const char *path = strcmp(req->url.data, p->url_invoke) == 0 ? p->path_invoke : p->path_converse;
    struct common_sigv4 a = {"application/json", p->host, path, NULL, p->session_token,
                             {p->access_key, p->secret_key, p->region, "bedrock"}, p->fixed_time};
    return common_sigv4_authorize(req, &a, &p->scratch, err);
}

/* x-amzn-ErrorType's name, without the ":http://internal..." AWS may add; "" when absent. */
static void error_type(const struct http_response *a, char *out, size_t n)
{
    const struct http_header *h = http_response_header(a, "x-amzn-ErrorType");
    size_t len = 0;
    if (h) {
        while (len < h->value_len && h->value[len] != ':') len++;
        if (len >= n) len = n - 1;
        memcpy(out, h->value, len);
    }
    out[len] = '\0';
}

static int is(const char *type, const char *name) { return strcmp(type, name) == 0; }

static void bedrock_classify(void *self, const struct http_response *a, struct provider_verdict *v)
{
    struct bedrock *p = self;
    provider_classify_default(a, v); /* Retry-After, 408, 429 and 5xx retried */
    long status = a->status;
    if (status >= 200 && status < 300) {
        if (memmem(a->body, a->body_len, "guardrail_intervened", 20) || memmem(a->body, a->body_len, "content_filtered", 16)) {
            json_t *root = json_loadb(a->body, a->body_len, 0, NULL);
            const char *stop = json_string_value(json_object_get(root, "stopReason"));
            if (stop && (is(stop, "guardrail_intervened") || is(stop, "content_filtered"))) {
                v->outcome = PROVIDER_FAIL_RECORD;
                v->why = is(stop, "content_filtered") ? "Bedrock's content filter withheld the answer (stopReason content_filtered)"
                                                       : "a guardrail intervened (stopReason guardrail_intervened)";
            }
            json_decref(root);
        }
        return;
    }
    char type[64];
    error_type(a, type, sizeof type);
    if (is(type, "ThrottlingException") || is(type, "ModelNotReadyException") || is(type, "ServiceUnavailableException") ||
        is(type, "InternalServerException") || is(type, "ModelTimeoutException")) {
        v->outcome = PROVIDER_RETRY;
        v->why = NULL; /* the default rules' reading of the status (a 401's) explains no retry */
        v->rate_limited = is(type, "ThrottlingException");
        v->congestion = !is(type, "ModelNotReadyException");
        return;
    }
    v->retry_after_ms = -1;
    if (is(type, "UnrecognizedClientException") || is(type, "InvalidSignatureException") ||
        is(type, "ExpiredTokenException") || is(type, "IncompleteSignatureException") || is(type, "MissingAuthenticationTokenException")) {
        v->outcome = PROVIDER_FAIL_JOB;
        snprintf(p->why, sizeof p->why, "AWS refused the credentials or their signature (%s): no record can succeed", type);
        v->why = p->why;
    } else if (is(type, "AccessDeniedException")) {
        v->outcome = PROVIDER_FAIL_JOB;
        v->why = "the credentials may not invoke this model (AccessDeniedException): no record can succeed";
    } else if (is(type, "ResourceNotFoundException") ||
               (is(type, "ValidationException") && memmem(a->body, a->body_len, "model identifier is invalid", 27))) {
        v->outcome = PROVIDER_FAIL_JOB;
        v->why = "Bedrock does not know the model in this region: no record can succeed";
    } else if (status == 401 || status == 403) {
        v->outcome = PROVIDER_FAIL_JOB;
        v->why = "AWS refused the request's credentials: no record can succeed";
    }
}

static int bedrock_parse(void *self, const struct http_response *answer, struct model_reply *reply, struct rn_err *err)
{
    (void)self;
    json_error_t jerr;
    json_t *root = json_loadb(answer->body, answer->body_len, 0, &jerr);
    if (!root) return rn_fail(err, "the answer is not JSON (%s at line %d, column %d)", jerr.text, jerr.line, jerr.column);
    int rc = 0;
    json_t *embedding = json_object_get(root, "embedding");
    if (json_is_array(embedding)) { /* InvokeModel, Titan embeddings */
        reply->vector = json_incref(embedding);
        reply->tokens_in = common_usage(root, "inputTextTokenCount");
        json_decref(root);
        return 0;
    }
    json_t *usage = json_object_get(root, "usage");
    reply->tokens_in = common_usage(usage, "inputTokens");
    reply->tokens_out = common_usage(usage, "outputTokens");
    reply->tokens_cache_read = common_usage(usage, "cacheReadInputTokens");
    reply->tokens_cache_write = common_usage(usage, "cacheWriteInputTokens");
    reply->tokens_in += reply->tokens_cache_read + reply->tokens_cache_write;
    json_t *content = json_object_get(json_object_get(json_object_get(root, "output"), "message"), "content");
    if (!json_is_array(content)) {
        const char *message = common_error_message(root);
        rc = message ? rn_fail(err, "the answer is an error: %.200s", message)
                     : rn_fail(err, "the answer has no output.message.content");
        json_decref(root);
        return rc;
    }
    size_t i;
    json_t *block;
    int tool = 0;
    json_array_foreach(content, i, block) {
        json_t *use = json_object_get(block, "toolUse"), *text = json_object_get(block, "text");
        if (use && !tool) {
            const char *name = json_string_value(json_object_get(use, "name"));
            json_t *input = json_object_get(use, "input");
            char *json = name && strcmp(name, "output") == 0 && input ? json_dumps(input, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
            if (!json) continue;
            buf_clear(&reply->text);
            buf_puts(&reply->text, json);
            free(json);
            tool = 1;
        } else if (json_is_string(text) && !tool) {
            buf_put(&reply->text, json_string_value(text), json_string_length(text));
        }
    }
    json_decref(root);
    return 0;
}

static const char *const bedrock_secrets[] = {"access_key_id", "secret_access_key", "session_token", "api_key", "headers", NULL};

const struct provider_ops bedrock_provider = {
    .version = PROVIDER_INTERFACE_VERSION,
    .name = "bedrock",
    .summary = "Amazon Bedrock: the Converse API signed with SigV4 (or a Bedrock API key); Titan embeddings",
    .options = bedrock_options,
    .capabilities = PROVIDER_CHAT | PROVIDER_EMBEDDINGS | PROVIDER_STRUCTURED,
    .model_option = "model",
    .secret_options = bedrock_secrets,
    .open = bedrock_open,
    .build = bedrock_build,
    .authorize = bedrock_authorize,
    .classify = bedrock_classify,
    .parse = bedrock_parse,
    .close = bedrock_close,
};
