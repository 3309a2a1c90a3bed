/* model_server_azure.c: Azure OpenAI's dialect of tools/model-server: chat completions and
 * embeddings at /openai/deployments/{deployment}/...?api-version=V and /openai/v1/... (the
 * deployment in "model"), the key in api-key (or an Entra token as a bearer: --api-key again),
 * answers with content_filter_results. Asked by markers: "[[filter-answer]]" in the user text
 * withholds the answer (finish_reason content_filter), "[[filter-prompt]]" refuses the prompt
 * (400 content_filter); the deployment "no-such-deployment" does not exist (404). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_server_dialect.h"

static bool has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static bool azure_match(const char *method, const char *url)
{
    (void)method;
    return strncmp(url, "/openai/", 8) == 0;
}

static bool azure_model_call(const char *method, const char *url)
{
    return strcmp(method, "POST") == 0 && (has_suffix(url, "/chat/completions") || has_suffix(url, "/embeddings"));
}

static void azure_error(struct dialect_answer *a, unsigned status, const char *code, const char *message)
{
    dialect_json(a, status, json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message));
}

static json_t *filter_results(bool violence)
{
    return json_pack("{s:{s:b,s:s},s:{s:b,s:s},s:{s:b,s:s},s:{s:b,s:s}}", "hate", "filtered", 0, "severity", "safe",
                     "self_harm", "filtered", 0, "severity", "safe", "sexual", "filtered", 0, "severity", "safe",
                     "violence", "filtered", violence, "severity", violence ? "high" : "safe");
}

/* The messages' text: the user turns joined, and the system prompt. */
static void read_messages(json_t *messages, json_t **user, const char **system)
{
    size_t i;
    json_t *m;
    *user = json_string("");
    json_array_foreach(messages, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        const char *content = json_string_value(json_object_get(m, "content"));
        if (!role || !content) continue;
        if (strcmp(role, "system") == 0) {
            *system = content;
        } else if (strcmp(role, "user") == 0) {
            const char *before = json_string_value(*user);
            size_t n = strlen(before) + strlen(content) + 2;
            char *joined = malloc(n);
            if (!joined) continue;
            snprintf(joined, n, "%s%s%s", before, *before ? " " : "", content);
            json_decref(*user);
            *user = json_string(joined);
            free(joined);
        }
    }
}

static void azure_answer(const struct dialect_request *r, struct dialect_answer *a)
{
    const char *key = dialect_request_header(r, "api-key"), *bearer = dialect_request_header(r, "Authorization");
    const char *want = r->config->api_key;
    bool v1 = strncmp(r->url, "/openai/v1/", 11) == 0;
    if (want && !(key && strcmp(key, want) == 0) && !(bearer && strncmp(bearer, "Bearer ", 7) == 0 && strcmp(bearer + 7, want) == 0)) {
        azure_error(a, 401, "401", "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
                                   "provide a valid key for an active subscription and use a correct regional API "
                                   "endpoint for your resource.");
        return;
    }
    if (!v1) {
        if (strncmp(r->url, "/openai/deployments/", 20) != 0 || !azure_model_call(r->method, r->url)) {
            azure_error(a, 404, "404", "Resource not found");
            return;
        }
        const char *deployment = r->url + 20;
        size_t deployment_len = strcspn(deployment, "/");
        if (!MHD_lookup_connection_value(r->connection, MHD_GET_ARGUMENT_KIND, "api-version")) {
            azure_error(a, 404, "404", "Resource not found");
            return;
        }
        if (deployment_len == 18 && strncmp(deployment, "no-such-deployment", 18) == 0) {
            azure_error(a, 404, "DeploymentNotFound", "The API deployment for this resource does not exist. If you "
                                                      "created the deployment within the last 5 minutes, please wait a "
                                                      "moment and try again.");
            return;
        }
    } else if (!azure_model_call(r->method, r->url)) {
        azure_error(a, 404, "404", "Resource not found");
        return;
    }
    json_t *body = dialect_body_json(r);
    if (!body) {
        azure_error(a, 400, "BadRequest", "We could not parse the JSON body of your request.");
        return;
    }
    if (v1 && !json_is_string(json_object_get(body, "model"))) {
        json_decref(body);
        azure_error(a, 400, "BadRequest", "model is required: the deployment name");
        return;
    }
    if (r->fault == DIALECT_RATE_LIMIT) {
        json_decref(body);
        dialect_header(a, "retry-after", "%ld", r->config->retry_after_s);
        dialect_header(a, "retry-after-ms", "%ld", r->config->retry_after_s * 1000);
        dialect_header(a, "x-ratelimit-remaining-requests", "0");
        azure_error(a, 429, "429", "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version "
                                   "2024-10-21 have exceeded call rate limit of your current OpenAI S0 pricing tier. "
                                   "Please retry after 1 second.");
        return;
    }
    if (r->fault == DIALECT_OVERLOAD) {
        json_decref(body);
        azure_error(a, 500, "InternalServerError", "The server had an error while processing your request.");
        return;
    }
    if (has_suffix(r->url, "/embeddings")) { /* "input" a string, or an array of strings */
        json_t *input = json_object_get(body, "input"), *dimensions = json_object_get(body, "dimensions"), *item;
        size_t count = json_is_string(input) ? 1 : json_is_array(input) ? json_array_size(input) : 0, i;
        bool strings = count > 0;
        json_array_foreach(input, i, item) strings = strings && json_is_string(item);
        if (!strings) {
            json_decref(body);
            azure_error(a, 400, "BadRequest", "'input' must be a string or a non-empty array of strings");
            return;
        }
        size_t items = dialect_embedding_items(count);
        long tokens = 0, length = json_is_integer(dimensions) ? (long)json_integer_value(dimensions) : 8;
        json_t *data = json_array();
        for (i = 0; i < count; i++) {
            json_t *text = json_is_string(input) ? input : json_array_get(input, i);
            tokens += dialect_tokens(json_string_length(text));
            if (i >= items) continue;
            json_t *vector = dialect_embedding(json_string_value(text), json_string_length(text),
                                               dialect_embedding_length(i, count, length));
            json_array_append_new(data, json_pack("{s:s,s:i,s:o}", "object", "embedding", "index", (int)i, "embedding", vector));
        }
        dialect_json(a, 200, json_pack("{s:s,s:o,s:{s:i,s:i}}", "object", "list", "data", data, "usage", "prompt_tokens",
                                       tokens, "total_tokens", tokens));
        json_decref(body);
        return;
    }
    json_t *user;
    const char *system = NULL;
    read_messages(json_object_get(body, "messages"), &user, &system);
    const char *text = json_string_value(user);
    if (dialect_marked(text, "[[filter-prompt]]")) {
        json_decref(user);
        json_decref(body);
        dialect_json(a, 400, json_pack("{s:{s:s,s:n,s:s,s:s,s:i,s:{s:s,s:{s:{s:b,s:s},s:{s:b,s:b}}}}}", "error", "message",
                                       "The response was filtered due to the prompt triggering Azure OpenAI's content "
                                       "management policy.", "type", "param", "prompt", "code", "content_filter",
                                       "status", 400, "innererror", "code", "ResponsibleAIPolicyViolation",
                                       "content_filter_result", "hate", "filtered", 0, "severity", "safe", "jailbreak",
                                       "filtered", 1, "detected", 1));
        return;
    }
    json_t *format = json_object_get(body, "response_format");
    json_t *schema = json_object_get(json_object_get(format, "json_schema"), "schema");
    bool filtered = dialect_marked(text, "[[filter-answer]]");
    char *content = filtered ? NULL : dialect_content(text, strlen(text), system, schema, r->fault, r->serial);
    json_t *message = json_pack("{s:s}", "role", "assistant");
    if (content) json_object_set_new(message, "content", json_string(content));
    long prompt_tokens = dialect_tokens(strlen(text) + (system ? strlen(system) : 0));
    long completion_tokens = content ? dialect_tokens(strlen(content)) : 0;
    json_t *answer = json_pack("{s:[{s:o,s:s,s:i,s:o}],s:i,s:s,s:s,s:s,s:[{s:i,s:o}],s:{s:i,s:i,s:i}}", "choices",
                               "content_filter_results", filter_results(filtered), "finish_reason",
                               filtered ? "content_filter" : "stop", "index", 0, "message", message, "created", 1717000000,
                               "id", "chatcmpl-azure", "model", "gpt-4o-mini-2024-07-18", "object", "chat.completion",
                               "prompt_filter_results", "prompt_index", 0, "content_filter_results", filter_results(false),
                               "usage", "completion_tokens", completion_tokens, "prompt_tokens", prompt_tokens,
                               "total_tokens", prompt_tokens + completion_tokens);
    dialect_header(a, "x-ratelimit-remaining-requests", "%d", 119);
    dialect_header(a, "x-ratelimit-remaining-tokens", "%d", 119000);
    dialect_header(a, "apim-request-id", "model-server-%llu", (unsigned long long)r->serial);
    dialect_json(a, 200, answer);
    free(content);
    json_decref(user);
    json_decref(body);
}

const struct dialect dialect_azure = {"azure", azure_match, azure_model_call, azure_answer};
