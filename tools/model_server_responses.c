/* model_server_responses.c: OpenAI's Responses API in tools/model-server: POST /v1/responses
 * with `input` (a string or the conversation's messages), `instructions` (the system prompt)
 * and `text.format` a json_schema, answered with an `output` message of output_text and the
 * usage as input_tokens / output_tokens. The key is a bearer token as for /v1/chat/completions;
 * errors are OpenAI's {"error":{...}}. A rate fault is a 429 rate_limit_exceeded, an overload a
 * 503. A user text marked [[refuse]] is refused (a content item of type refusal); one marked
 * [[incomplete]] ends at max_output_tokens (status incomplete). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_server_dialect.h"

static bool responses_match(const char *method, const char *url)
{
    (void)method;
    return strcmp(url, "/v1/responses") == 0;
}

static bool responses_model_call(const char *method, const char *url)
{
    (void)url;
    return strcmp(method, "POST") == 0;
}

static void responses_error(struct dialect_answer *a, unsigned status, const char *type, const char *code,
                            const char *message)
{
    dialect_json(a, status, json_pack("{s:{s:s,s:s,s:n,s:s?}}", "error", "message", message, "type", type, "param",
                                      "code", code));
}

/* The user turns' text, joined by spaces, into out. A turn's content is a string or a list of
 * input_text parts. */
static void user_text(json_t *input, char *out, size_t size)
{
    size_t i, j;
    json_t *m, *part;
    if (json_is_string(input)) {
        snprintf(out, size, "%s", json_string_value(input));
        return;
    }
    json_array_foreach(input, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!role || strcmp(role, "user") != 0) continue;
        json_t *content = json_object_get(m, "content");
        if (json_is_string(content)) {
            snprintf(out + strlen(out), size - strlen(out), "%s%s", *out ? " " : "", json_string_value(content));
            continue;
        }
        json_array_foreach(content, j, part) {
            const char *text = json_string_value(json_object_get(part, "text"));
            if (text) snprintf(out + strlen(out), size - strlen(out), "%s%s", *out ? " " : "", text);
        }
    }
}

static void responses_answer(const struct dialect_request *r, struct dialect_answer *a)
{
    if (strcmp(r->method, "POST") != 0) {
        responses_error(a, 405, "invalid_request_error", NULL, "Use POST for /v1/responses.");
        return;
    }
    const char *auth = dialect_request_header(r, "Authorization");
    if (r->config->api_key && (!auth || strncmp(auth, "Bearer ", 7) != 0 || strcmp(auth + 7, r->config->api_key) != 0)) {
        responses_error(a, 401, "invalid_request_error", "invalid_api_key", "Incorrect API key provided.");
        return;
    }
    json_t *body = dialect_body_json(r);
    const char *model = json_string_value(json_object_get(body, "model"));
    json_t *input = json_object_get(body, "input");
    if (!body || !model || !(json_is_string(input) || json_is_array(input))) {
        json_decref(body);
        responses_error(a, 400, "invalid_request_error", NULL, "model and input are required.");
        return;
    }
    if (json_object_get(body, "messages") || json_object_get(body, "response_format")) {
        json_decref(body);
        responses_error(a, 400, "invalid_request_error", NULL,
                        "Unsupported parameter: the Responses API takes input and text.format.");
        return;
    }
    if (r->fault == DIALECT_RATE_LIMIT) {
        json_decref(body);
        dialect_header(a, "retry-after", "%ld", r->config->retry_after_s);
        responses_error(a, 429, "requests", "rate_limit_exceeded", "Rate limit reached for requests.");
        return;
    }
    if (r->fault == DIALECT_OVERLOAD) {
        json_decref(body);
        responses_error(a, 503, "server_error", NULL, "The server is overloaded. Please retry your request.");
        return;
    }
    char user[8192] = "";
    user_text(input, user, sizeof user);
    const char *system = json_string_value(json_object_get(body, "instructions"));
    json_t *format = json_object_get(json_object_get(body, "text"), "format");
    const char *format_type = json_string_value(json_object_get(format, "type"));
    json_t *schema = format_type && strcmp(format_type, "json_schema") == 0 ? json_object_get(format, "schema") : NULL;
    json_t *content = json_array();
    const char *status = "completed";
    long output = 0;
    if (dialect_marked(user, "[[refuse]]")) {
        static const char refusal[] = "I'm sorry, I can't help with that.";
        json_array_append_new(content, json_pack("{s:s,s:s}", "type", "refusal", "refusal", refusal));
        output = dialect_tokens(strlen(refusal));
    } else {
        char *answer = dialect_content(user, strlen(user), system, schema, r->fault, r->serial);
        size_t len = answer ? strlen(answer) : 0;
        if (dialect_marked(user, "[[incomplete]]")) {
            status = "incomplete";
            len /= 2;
        }
        json_array_append_new(content, json_pack("{s:s,s:s%,s:[]}", "type", "output_text", "text", answer ? answer : "",
                                                 len, "annotations"));
        output = dialect_tokens(len);
        free(answer);
    }
    long in = dialect_tokens(strlen(user) + (system ? strlen(system) : 0));
    json_t *reply = json_pack("{s:s,s:s,s:i,s:s,s:s,s:[{s:s,s:s,s:s,s:s,s:o}],s:{s:i,s:{s:i},s:i,s:i}}", "id",
                              "resp_model_server", "object", "response", "created_at", 1714564800, "status", status,
                              "model", model, "output", "type", "message", "id", "msg_model_server", "status", status,
                              "role", "assistant", "content", content, "usage", "input_tokens", in,
                              "input_tokens_details", "cached_tokens", 0, "output_tokens", output, "total_tokens",
                              in + output);
    if (strcmp(status, "incomplete") == 0)
        json_object_set_new(reply, "incomplete_details", json_pack("{s:s}", "reason", "max_output_tokens"));
    else
        json_object_set_new(reply, "incomplete_details", json_null());
    dialect_json(a, 200, reply);
    json_decref(body);
}

const struct dialect dialect_responses = {"responses", responses_match, responses_model_call, responses_answer};
