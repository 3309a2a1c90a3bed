/* model_server_anthropic.c: Anthropic's dialect of tools/model-server: POST /v1/messages with
 * its headers checked (x-api-key against --api-key, anthropic-version 2023-06-01), max_tokens
 * required, the system prompt at the top level (a string or text blocks), content blocks in
 * the answer: a tool_use block whose input follows the forced tool's schema when tool_choice
 * names one. Every answer carries anthropic-ratelimit-* headers with RFC 3339 resets (fixed ones,
 * or with --rpm/--tpm the buckets' own from model_server_quota.c); a rate
 * fault is a 429 rate_limit_error with retry-after, an overload a 529 overloaded_error. A system
 * prompt marked cache_control is written to the prompt cache at its first call and read from it
 * after (cache_creation/cache_read_input_tokens). "[[refuse]]" in the text: stop_reason refusal. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_server.h"
#include "model_server_dialect.h"

#define CACHE_SLOTS 64

/* The system prompts written to the prompt cache (FNV-1a hashes), shared by the serving threads. */
static struct {
    pthread_mutex_t lock;
    uint64_t hashes[CACHE_SLOTS];
    size_t count;
} prompt_cache = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* Whether text was cached already; caches it when not. */
static bool cache_seen(const char *text)
{
    uint64_t hash = 14695981039346656037ull;
    for (const char *c = text; *c; c++) hash = (hash ^ (unsigned char)*c) * 1099511628211ull;
    pthread_mutex_lock(&prompt_cache.lock);
    bool seen = false;
    for (size_t i = 0; i < prompt_cache.count && !seen; i++) seen = prompt_cache.hashes[i] == hash;
    if (!seen) prompt_cache.hashes[prompt_cache.count++ % CACHE_SLOTS] = hash;
    if (prompt_cache.count > CACHE_SLOTS) prompt_cache.count = CACHE_SLOTS;
    pthread_mutex_unlock(&prompt_cache.lock);
    return seen;
}

static bool anthropic_match(const char *method, const char *url)
{
    (void)method;
    return strcmp(url, "/v1/messages") == 0;
}

static bool anthropic_model_call(const char *method, const char *url)
{
    (void)url;
    return strcmp(method, "POST") == 0;
}

static void anthropic_error(struct dialect_answer *a, unsigned status, const char *type, const char *message)
{
    dialect_json(a, status, json_pack("{s:s,s:{s:s,s:s}}", "type", "error", "error", "type", type, "message", message));
}

/* The limits' state: requests_left of them, full again reset_s seconds from now. Nothing when
 * --rpm/--tpm are on: the quota's buckets speak then. */
static void limit_headers(struct dialect_answer *a, long requests_left, long reset_s)
{
    if (ms_quota_config.rpm > 0 || ms_quota_config.tpm > 0) return;
    char reset[32];
    dialect_rfc3339(reset, reset_s);
    dialect_header(a, "anthropic-ratelimit-requests-limit", "4000");
    dialect_header(a, "anthropic-ratelimit-requests-remaining", "%ld", requests_left);
    dialect_header(a, "anthropic-ratelimit-requests-reset", "%s", reset);
    dialect_header(a, "anthropic-ratelimit-tokens-limit", "400000");
    dialect_header(a, "anthropic-ratelimit-tokens-remaining", "%ld", requests_left ? 399000L : 0L);
    dialect_header(a, "anthropic-ratelimit-tokens-reset", "%s", reset);
    dialect_header(a, "anthropic-ratelimit-input-tokens-remaining", "%ld", requests_left ? 199000L : 0L);
    dialect_header(a, "anthropic-ratelimit-input-tokens-reset", "%s", reset);
    dialect_header(a, "anthropic-ratelimit-output-tokens-remaining", "%ld", requests_left ? 79000L : 0L);
    dialect_header(a, "anthropic-ratelimit-output-tokens-reset", "%s", reset);
}

/* A message's content: a string, or text blocks joined. Appended to into (malloc'd, grown). */
static void append_text(char **into, json_t *content)
{
    const char *parts[64];
    size_t count = 0;
    if (json_is_string(content)) {
        parts[count++] = json_string_value(content);
    } else {
        size_t i;
        json_t *block;
        json_array_foreach(content, i, block) {
            const char *text = json_string_value(json_object_get(block, "text"));
            if (text && count < 64) parts[count++] = text;
        }
    }
    for (size_t i = 0; i < count; i++) {
        size_t had = *into ? strlen(*into) : 0, n = had + strlen(parts[i]) + 2;
        char *grown = realloc(*into, n);
        if (!grown) return;
        snprintf(grown + had, n - had, "%s%s", had ? " " : "", parts[i]);
        *into = grown;
    }
}

/* The forced tool's input schema, when tool_choice names a tool that is in tools. */
static json_t *forced_tool(json_t *body, const char **name)
{
    json_t *choice = json_object_get(body, "tool_choice");
    const char *type = json_string_value(json_object_get(choice, "type"));
    *name = json_string_value(json_object_get(choice, "name"));
    if (!type || strcmp(type, "tool") != 0 || !*name) return NULL;
    size_t i;
    json_t *tool;
    json_array_foreach(json_object_get(body, "tools"), i, tool) {
        const char *tool_name = json_string_value(json_object_get(tool, "name"));
        if (tool_name && strcmp(tool_name, *name) == 0) return json_object_get(tool, "input_schema");
    }
    return NULL;
}

static void anthropic_answer(const struct dialect_request *r, struct dialect_answer *a)
{
    const char *key = dialect_request_header(r, "x-api-key"), *version = dialect_request_header(r, "anthropic-version");
    if (r->config->api_key && (!key || strcmp(key, r->config->api_key) != 0)) {
        anthropic_error(a, 401, "authentication_error", "invalid x-api-key");
        return;
    }
    if (!version) {
        anthropic_error(a, 400, "invalid_request_error", "anthropic-version: header is required");
        return;
    }
    if (strcmp(version, "2023-06-01") != 0) {
        anthropic_error(a, 400, "invalid_request_error", "anthropic-version: this server speaks 2023-06-01");
        return;
    }
    json_t *body = dialect_body_json(r);
    if (!body) {
        anthropic_error(a, 400, "invalid_request_error", "The request body is not valid JSON.");
        return;
    }
    json_t *messages = json_object_get(body, "messages");
    if (!json_is_integer(json_object_get(body, "max_tokens"))) {
        json_decref(body);
        anthropic_error(a, 400, "invalid_request_error", "max_tokens: Field required");
        return;
    }
    if (!json_is_array(messages) || !json_array_size(messages) || !json_is_string(json_object_get(body, "model"))) {
        json_decref(body);
        anthropic_error(a, 400, "invalid_request_error", "messages: Field required");
        return;
    }
    if (r->fault == DIALECT_RATE_LIMIT) {
        json_decref(body);
        dialect_header(a, "retry-after", "%ld", r->config->retry_after_s);
        limit_headers(a, 0, r->config->retry_after_s);
        anthropic_error(a, 429, "rate_limit_error", "Number of requests has exceeded your per-minute rate limit");
        return;
    }
    if (r->fault == DIALECT_OVERLOAD) {
        json_decref(body);
        anthropic_error(a, 529, "overloaded_error", "Overloaded");
        return;
    }
    char *user = NULL, *system = NULL;
    size_t i;
    json_t *m;
    json_array_foreach(messages, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        if (role && strcmp(role, "user") == 0) append_text(&user, json_object_get(m, "content"));
    }
    json_t *system_value = json_object_get(body, "system");
    append_text(&system, system_value);
    bool cached_system = false;
    json_array_foreach(system_value, i, m) cached_system = cached_system || json_object_get(m, "cache_control");
    const char *tool_name;
    json_t *schema = forced_tool(body, &tool_name);
    const char *text = user ? user : "";
    long input = dialect_tokens(strlen(text)), system_tokens = system ? dialect_tokens(strlen(system)) : 0;
    long cache_read = 0, cache_write = 0;
    if (cached_system && system) {
        if (cache_seen(system)) cache_read = system_tokens;
        else cache_write = system_tokens;
    } else {
        input += system_tokens;
    }
    json_t *content = json_array();
    const char *stop = "end_turn";
    long output = 0;
    if (dialect_marked(text, "[[refuse]]")) {
        stop = "refusal";
    } else {
        char *answer = dialect_content(text, strlen(text), system, schema, r->fault, r->serial);
        output = dialect_tokens(answer ? strlen(answer) : 0);
        json_t *input_value = schema && answer ? json_loads(answer, 0, NULL) : NULL;
        if (input_value) {
            json_array_append_new(content, json_pack("{s:s,s:s,s:s,s:o}", "type", "tool_use", "id", "toolu_model_server",
                                                     "name", tool_name, "input", input_value));
            stop = "tool_use";
        } else {
            json_array_append_new(content, json_pack("{s:s,s:s}", "type", "text", "text", answer ? answer : ""));
        }
        free(answer);
    }
    limit_headers(a, 3999, 60);
    dialect_header(a, "request-id", "req_model_server_%llu", (unsigned long long)r->serial);
    dialect_json(a, 200, json_pack("{s:s,s:s,s:s,s:O,s:o,s:s,s:n,s:{s:i,s:i,s:i,s:i}}", "id", "msg_model_server", "type",
                                   "message", "role", "assistant", "model", json_object_get(body, "model"), "content",
                                   content, "stop_reason", stop, "stop_sequence", "usage", "input_tokens", input,
                                   "output_tokens", output, "cache_creation_input_tokens", cache_write,
                                   "cache_read_input_tokens", cache_read));
    free(user);
    free(system);
    json_decref(body);
}

const struct dialect dialect_anthropic = {"anthropic", anthropic_match, anthropic_model_call, anthropic_answer};
