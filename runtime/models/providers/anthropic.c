/* anthropic.c: the Anthropic provider, model.anthropic{}: the Messages API (POST /v1/messages,
 * x-api-key, anthropic-version). The system prompt is a top-level field, max_tokens is
 * required (a default is given), the answer is a list of content blocks.
 *
 * Structured output is a forced tool: the output schema is the input schema of one tool,
 * tool_choice names it, and the answer is that tool_use block's input. Prompt caching
 * (prompt_cache = true) marks the system prompt with cache_control; the usage's cache reads
 * and writes are counted apart (and priced by price.cache_read/cache_write). Rate limits come
 * as anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{remaining,reset} with
 * RFC 3339 resets; 429 rate_limit_error and 529 overloaded_error are retried, a refused key,
 * a missing model or a used-up credit balance stops the job. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/http.h"
#include "models/providers/anthropic_int.h"
#include "models/providers/common.h"

#define ANTHROPIC_VERSION "2023-06-01"
#define TOOL_NAME "output"

static const struct option_spec anthropic_options[] = {
    {"endpoint", OPT_STRING, 0, "https://api.anthropic.com", .help = "base URL; /v1/messages is added",
     .check = common_check_url},
    {"api_key", OPT_STRING, 0, NULL, .help = "secret(\"ANTHROPIC_API_KEY\"): sent as x-api-key", .secret = 1},
    {"model", OPT_STRING, 1, NULL, .help = "model name, e.g. \"claude-3-5-haiku-20241022\""},
    {"max_tokens", OPT_INTEGER, 0, "1024", .help = "longest answer in tokens (the API requires it)", OPT_AT_LEAST(1)},
    {"temperature", OPT_NUMBER, 0, NULL, .help = "sampling temperature", OPT_RANGE(0, 1)},
    {"top_p", OPT_NUMBER, 0, NULL, .help = "nucleus sampling", .bounds = OPT_MIN | OPT_MIN_EXCLUSIVE | OPT_MAX,
     .min = 0, .max = 1},
    {"top_k", OPT_INTEGER, 0, NULL, .help = "sample from the k likeliest tokens only", OPT_AT_LEAST(1)},
    {"version", OPT_STRING, 0, ANTHROPIC_VERSION, .help = "sent as anthropic-version"},
    {"beta", OPT_STRING_OR_LIST, 0, NULL, .help = "beta features, sent as anthropic-beta"},
    {"prompt_cache", OPT_BOOLEAN, 0, "false",
     .help = "cache the system prompt (cache_control ephemeral): later calls read it at the cache price"},
    {"structured", OPT_BOOLEAN, 0, NULL, .help = "answer through a tool whose input schema is the output schema",
     .default_note = "with output"},
    {"parameters", OPT_TABLE, 0, NULL, .help = "more request fields, sent as JSON as they are"},
    {"headers", OPT_MAP, 0, NULL, .help = "extra HTTP headers: { [\"X-Name\"] = \"value\" or secret(...) }",
     .value = OPT_VALUE(OPT_STRING, .secret = 1)},
    MODEL_BATCH_OPTION,
    MODEL_COMMON_OPTIONS,
    {NULL},
};

struct anthropic {
    char *url;
    char *base;                  /* the endpoint without a trailing slash (Message Batches) */
    struct buf head;             /* {"model":"...","max_tokens":N, */
    struct buf tail;             /* ,"temperature":... and the parameters */
    int prompt_cache;
    const char *system_source;   /* the system prompt system_json encodes (the engine's pointer) */
    struct buf system_json;      /* "system":...,  */
    struct header_list headers;  /* holds the key */
    time_t fixed_time;
};

static void anthropic_close(void *self)
{
    struct anthropic *p = self;
    if (!p) return;
    free(p->url);
    free(p->base);
    buf_free(&p->head);
    buf_free(&p->tail);
    buf_free(&p->system_json);
    header_list_free(&p->headers);
    free(p);
}

static const struct reserved_field own_fields[] = {
    {"model", "runnel writes it"}, {"messages", "runnel writes it"}, {"system", "use the system option"},
    {"max_tokens", "use the option of that name"}, {"temperature", "use the option of that name"},
    {"top_p", "use the option of that name"}, {"top_k", "use the option of that name"},
    {"stream", "streamed answers are not supported"},
    {"tools", "structured output writes it (set structured = false to send your own)"},
    {"tool_choice", "structured output writes it (set structured = false to send your own)"},
};

static void *anthropic_open(struct job_env *env, int opts, const struct provider_setup *setup, struct rn_err *err)
{
    lua_State *L = env->L;
    opts = lua_absindex(L, opts);
    struct anthropic *p = rn_calloc(1, sizeof *p);
    buf_init(&p->head);
    buf_init(&p->tail);
    buf_init(&p->system_json);
    p->fixed_time = setup->fixed_time;
    const char *endpoint = opt_string(L, opts, "endpoint", "https://api.anthropic.com");
    struct buf url;
    buf_init(&url);
    buf_printf(&url, "%.*s/v1/messages", (int)common_url_len(endpoint), endpoint);
    p->url = url.data;
    buf_init(&url);
    buf_put(&url, endpoint, common_url_len(endpoint));
    p->base = url.data;
    const char *model = opt_string(L, opts, "model", NULL), *version = opt_string(L, opts, "version", ANTHROPIC_VERSION);
    const char *key;
    if (!model || !*model) {
        rn_fail(err, "model: give the model name, e.g. model = \"claude-3-5-haiku-20241022\"");
        goto fail;
    }
    buf_puts(&p->head, "{\"model\":");
    buf_put_json_string(&p->head, model, strlen(model));
    buf_printf(&p->head, ",\"max_tokens\":%lld,", (long long)opt_integer(L, opts, "max_tokens", 1024));
    if (opt_push(L, opts, "temperature")) {
        buf_puts(&p->tail, ",\"temperature\":");
        common_put_number(&p->tail, lua_tonumber(L, -1));
        lua_pop(L, 1);
    }
    if (opt_push(L, opts, "top_p")) {
        buf_puts(&p->tail, ",\"top_p\":");
        common_put_number(&p->tail, lua_tonumber(L, -1));
        lua_pop(L, 1);
    }
    if (opt_push(L, opts, "top_k")) {
        buf_printf(&p->tail, ",\"top_k\":%lld", (long long)lua_tointeger(L, -1));
        lua_pop(L, 1);
    }
    size_t reserved = sizeof own_fields / sizeof own_fields[0] - (setup->structured ? 0 : 2);
    if (common_read_parameters(L, opts, own_fields, reserved, &p->tail, err)) goto fail;
    p->prompt_cache = opt_boolean(L, opts, "prompt_cache", 0);

    if (common_has_control(version)) {
        rn_fail(err, "version: holds a control character");
        goto fail;
    }
    header_list_add(&p->headers, "Content-Type", "application/json");
    header_list_add_line(&p->headers, "Expect:");
    header_list_add(&p->headers, "anthropic-version", version);
    size_t betas = 0;
    char **beta = opt_string_list(L, opts, "beta", &betas);
    if (betas) {
        struct buf line;
        buf_init(&line);
        for (size_t i = 0; i < betas; i++) buf_printf(&line, "%s%s", i ? "," : "", beta[i]);
        for (size_t i = 0; i < betas; i++) free(beta[i]);
        free(beta);
        int bad = common_has_control(line.data);
        if (!bad) header_list_add(&p->headers, "anthropic-beta", line.data);
        buf_free(&line);
        if (bad) {
            rn_fail(err, "beta: holds a control character");
            goto fail;
        }
    }
    if (common_read_key(L, opts, "api_key", &key, err)) goto fail;
    if (key) header_list_add_secret(&p->headers, "x-api-key", "", key);
    static const char *const reserved_headers[] = {"x-api-key", "anthropic-version", "anthropic-beta", NULL};
    if (common_read_headers(&p->headers, L, opts, reserved_headers, "an option (api_key, version, beta)", err) ||
        header_list_check(&p->headers, err))
        goto fail;
    return p;
fail:
    anthropic_close(p);
    return NULL;
}

static void put_message(struct buf *b, const char *role, const char *text, size_t len)
{
    buf_printf(b, "{\"role\":\"%s\",\"content\":", role);
    buf_put_json_string(b, text, len);
    buf_putc(b, '}');
}

static int anthropic_build(void *self, const struct model_call *call, struct http_request *req, struct rn_err *err)
{
    (void)err;
    struct anthropic *p = self;
    req->method = "POST";
    req->headers = p->headers.lines;
    buf_puts(&req->url, p->url);
    struct buf *b = &req->body;
    buf_put(b, p->head.data, p->head.len);
    if (call->system) {
        if (call->system != p->system_source) {
            buf_clear(&p->system_json);
            buf_puts(&p->system_json, "\"system\":");
            if (p->prompt_cache) buf_puts(&p->system_json, "[{\"type\":\"text\",\"text\":");
            buf_put_json_string(&p->system_json, call->system, strlen(call->system));
            if (p->prompt_cache) buf_puts(&p->system_json, ",\"cache_control\":{\"type\":\"ephemeral\"}}]");
            buf_putc(&p->system_json, ',');
            p->system_source = call->system;
        }
        buf_put(b, p->system_json.data, p->system_json.len);
    }
    buf_puts(b, "\"messages\":[");
    common_put_turns(b, call, put_message, "assistant", "(no answer)"); /* the API refuses an empty text */
    buf_putc(b, ']');
    buf_put(b, p->tail.data, p->tail.len);
    if (call->schema_json) {
        buf_puts(b, ",\"tools\":[{\"name\":\"" TOOL_NAME "\",\"description\":\"Record the answer.\",\"input_schema\":");
        buf_puts(b, call->schema_json);
        buf_puts(b, "}],\"tool_choice\":{\"type\":\"tool\",\"name\":\"" TOOL_NAME "\"}");
    }
    buf_putc(b, '}');
    return 0;
}

/* The rate-limit state of one answer from anthropic-ratelimit-*: the request limit, and of the
 * three token limits (tokens, input-tokens, output-tokens) the one with the fewest left, with
 * its limit, so models/quota.c learns the quota as it does from OpenAI's x-ratelimit-*. Resets
 * are RFC 3339 times, measured from the wall clock to the millisecond. */
static void read_limits(const struct anthropic *p, const struct http_response *a, struct provider_verdict *v)
{
    static const char prefix[] = "anthropic-ratelimit-";
    static const char *const token_limits[] = {"tokens-", "input-tokens-", "output-tokens-"};
    int64_t remaining[3] = {-1, -1, -1}, reset[3] = {-1, -1, -1}, limit[3] = {-1, -1, -1};
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    time_t now = p->fixed_time ? p->fixed_time : wall.tv_sec;
    int64_t into_second_ms = p->fixed_time ? 0 : wall.tv_nsec / 1000000; /* the parse counts from a whole second */
    for (size_t i = 0; i < a->header_count; i++) {
        const struct http_header *h = &a->headers[i];
        if (h->name_len <= sizeof prefix - 1 || strncasecmp(h->name, prefix, sizeof prefix - 1) != 0) continue;
        const char *rest = h->name + sizeof prefix - 1;
        int64_t *remaining_to = NULL, *reset_to = NULL, *limit_to = NULL;
        if (strncasecmp(rest, "requests-", 9) == 0) {
            remaining_to = &v->remaining_requests;
            reset_to = &v->reset_requests_ms;
            limit_to = &v->limit_requests;
            rest += 9;
        } else {
            for (int k = 0; k < 3; k++) {
                size_t n = strlen(token_limits[k]);
                if (strncasecmp(rest, token_limits[k], n) == 0) {
                    remaining_to = &remaining[k];
                    reset_to = &reset[k];
                    limit_to = &limit[k];
                    rest += n;
                    break;
                }
            }
        }
        if (!remaining_to) continue;
        if (strcasecmp(rest, "remaining") == 0 && h->value_len) {
            *remaining_to = strtoll(h->value, NULL, 10);
        } else if (strcasecmp(rest, "limit") == 0 && h->value_len) {
            int64_t n = strtoll(h->value, NULL, 10);
            *limit_to = n > 0 ? n : -1;
        } else if (strcasecmp(rest, "reset") == 0) {
            int64_t ms = provider_parse_rfc3339_ms(h->value, h->value_len, now);
            *reset_to = ms > into_second_ms ? ms - into_second_ms : ms < 0 ? -1 : 0;
            v->resets_are_times = 1;
        }
    }
    for (int k = 0; k < 3; k++) {
        if (remaining[k] < 0) continue;
        if (v->remaining_tokens < 0 || remaining[k] < v->remaining_tokens) {
            v->remaining_tokens = remaining[k];
            v->reset_tokens_ms = reset[k];
            v->limit_tokens = limit[k];
        }
    }
}

/* error.type and error.message of an error body, when there is one. */
static json_t *error_of(const struct http_response *a, const char **type, const char **message)
{
    json_t *root = json_loadb(a->body, a->body_len, 0, NULL);
    json_t *error = json_object_get(root, "error");
    *type = json_string_value(json_object_get(error, "type"));
    *message = json_string_value(json_object_get(error, "message"));
    if (!*type) *type = "";
    if (!*message) *message = "";
    return root;
}

static void anthropic_classify(void *self, const struct http_response *a, struct provider_verdict *v)
{
    struct anthropic *p = self;
    provider_classify_default(a, v); /* Retry-After; 429, 5xx (529 overloaded) retried; other 4xx fail the record */
    read_limits(p, a, v);
    long status = a->status;
    if (status >= 200 && status < 300) {
        if (memmem(a->body, a->body_len, "\"refusal\"", 9)) { /* stop_reason refusal: the model declined */
            json_t *root = json_loadb(a->body, a->body_len, 0, NULL);
            const char *stop = json_string_value(json_object_get(root, "stop_reason"));
            if (stop && strcmp(stop, "refusal") == 0) {
                v->outcome = PROVIDER_FAIL_RECORD;
                v->why = "Claude declined to answer (stop_reason refusal)";
            }
            json_decref(root);
        }
        return;
    }
    if (status == 429) { /* wait for the limit that ran out, when Retry-After does not say */
        if (v->remaining_requests == 0 && v->reset_requests_ms > v->retry_after_ms) v->retry_after_ms = v->reset_requests_ms;
        if (v->remaining_tokens == 0 && v->reset_tokens_ms > v->retry_after_ms) v->retry_after_ms = v->reset_tokens_ms;
        return;
    }
    if (status == 401 || status == 403) {
        v->outcome = PROVIDER_FAIL_JOB;
        v->why = status == 401 ? "Anthropic refused the api key (authentication_error): no record can succeed"
                               : "the api key may not use this model or endpoint (permission_error): no record can succeed";
        return;
    }
    if (status == 400 || status == 404) {
        const char *type, *message;
        json_t *root = error_of(a, &type, &message);
        if (status == 404 && strcmp(type, "not_found_error") == 0) {
            v->outcome = PROVIDER_FAIL_JOB;
            v->why = "Anthropic does not know the model or path (not_found_error): no record can succeed";
        } else if (status == 400 && (strcasestr(message, "credit balance") || strcasestr(message, "usage limits"))) {
            v->outcome = PROVIDER_FAIL_JOB;
            v->why = "the account's credit balance or spend limit is used up: no record can succeed";
        }
        json_decref(root);
    }
}

static int anthropic_parse(void *self, const struct http_response *answer, struct model_reply *reply, struct rn_err *err)
{
    (void)self;
    json_error_t jerr;
    json_t *root = json_loadb(answer->body, answer->body_len, 0, &jerr);
    if (!root) return rn_fail(err, "the answer is not JSON (%s at line %d, column %d)", jerr.text, jerr.line, jerr.column);
    json_t *usage = json_object_get(root, "usage");
    reply->tokens_cache_read = common_usage(usage, "cache_read_input_tokens");
    reply->tokens_cache_write = common_usage(usage, "cache_creation_input_tokens");
    reply->tokens_in = common_usage(usage, "input_tokens") + reply->tokens_cache_read + reply->tokens_cache_write;
    reply->tokens_out = common_usage(usage, "output_tokens");
    json_t *content = json_object_get(root, "content");
    int rc = 0, tool = 0;
    if (!json_is_array(content)) {
        const char *message = common_error_message(root);
        rc = message ? rn_fail(err, "the answer is an error: %.200s", message) : rn_fail(err, "the answer has no content blocks");
        json_decref(root);
        return rc;
    }
    size_t i;
    json_t *block;
    json_array_foreach(content, i, block) { /* the forced tool's input, else the text blocks joined */
        const char *type = json_string_value(json_object_get(block, "type"));
        if (!type) continue;
        if (strcmp(type, "tool_use") == 0 && !tool) {
            const char *name = json_string_value(json_object_get(block, "name"));
            json_t *input = json_object_get(block, "input");
            if (!name || strcmp(name, TOOL_NAME) != 0 || !input) continue;
            char *text = json_dumps(input, JSON_COMPACT | JSON_ENCODE_ANY);
            if (!text) continue;
            buf_clear(&reply->text);
            buf_puts(&reply->text, text);
            free(text);
            tool = 1;
        } else if (strcmp(type, "text") == 0 && !tool) {
            json_t *text = json_object_get(block, "text");
            if (json_is_string(text)) buf_put(&reply->text, json_string_value(text), json_string_length(text));
        }
    }
    json_decref(root);
    return 0;
}

void anthropic_endpoint_of(void *self, struct anthropic_endpoint *out)
{
    struct anthropic *p = self;
    *out = (struct anthropic_endpoint){p->base, p->headers.lines};
}

static const char *const anthropic_secrets[] = {"api_key", "headers", NULL};

const struct provider_ops anthropic_provider = {
    .version = PROVIDER_INTERFACE_VERSION,
    .name = "anthropic",
    .summary = "Anthropic Messages API (Claude): structured output through a forced tool, prompt caching",
    .options = anthropic_options,
    .capabilities = PROVIDER_CHAT | PROVIDER_STRUCTURED | PROVIDER_BATCH,
    .model_option = "model",
    .secret_options = anthropic_secrets,
    .open = anthropic_open,
    .build = anthropic_build,
    .classify = anthropic_classify,
    .parse = anthropic_parse,
    .close = anthropic_close,
    .batch = &anthropic_batch_ops,
};
