/* model_server_ollama.c: Ollama's dialect of tools/model-server: POST /api/chat (stream false
 * only: the stand-in does not stream; format a JSON schema or "json") and POST /api/embed
 * ("input" a string or an array of strings).
 * No key, as a local Ollama (--api-key does not apply). Errors are {"error": "text"}: a model named
 * "no-such-model" is not pulled (404); a rate fault is the 503 of a full queue, an overload a
 * 500 from a crashed runner. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_server_dialect.h"

static bool ollama_match(const char *method, const char *url)
{
    (void)method;
    return strcmp(url, "/api/chat") == 0 || strcmp(url, "/api/embed") == 0;
}

static bool ollama_model_call(const char *method, const char *url)
{
    (void)url;
    return strcmp(method, "POST") == 0;
}

static void ollama_error(struct dialect_answer *a, unsigned status, const char *message)
{
    dialect_json(a, status, json_pack("{s:s}", "error", message));
}

static void ollama_answer(const struct dialect_request *r, struct dialect_answer *a)
{
    if (strcmp(r->method, "POST") != 0) {
        ollama_error(a, 405, "method not allowed");
        return;
    }
    json_t *body = dialect_body_json(r);
    const char *model = json_string_value(json_object_get(body, "model"));
    if (!body || !model) {
        json_decref(body);
        ollama_error(a, 400, "model is required");
        return;
    }
    if (strcmp(model, "no-such-model") == 0) {
        char message[300];
        snprintf(message, sizeof message, "model \"%s\" not found, try pulling it first", model);
        json_decref(body);
        ollama_error(a, 404, message);
        return;
    }
    if (r->fault == DIALECT_RATE_LIMIT) {
        json_decref(body);
        ollama_error(a, 503, "server busy, please try again.  maximum pending requests exceeded");
        return;
    }
    if (r->fault == DIALECT_OVERLOAD) {
        json_decref(body);
        ollama_error(a, 500, "llama runner process has terminated: signal: killed");
        return;
    }
    if (strcmp(r->url, "/api/embed") == 0) { /* "input" a string, or an array of strings */
        json_t *input = json_object_get(body, "input"), *item;
        size_t count = json_is_string(input) ? 1 : json_is_array(input) ? json_array_size(input) : 0, i;
        bool strings = count > 0;
        json_array_foreach(input, i, item) strings = strings && json_is_string(item);
        if (!strings) {
            json_decref(body);
            ollama_error(a, 400, "input is required (a string or an array of strings)");
            return;
        }
        size_t items = dialect_embedding_items(count);
        long tokens = 0;
        json_t *embeddings = json_array();
        for (i = 0; i < count; i++) {
            json_t *text = json_is_string(input) ? input : json_array_get(input, i);
            tokens += dialect_tokens(json_string_length(text));
            if (i < items)
                json_array_append_new(embeddings, dialect_embedding(json_string_value(text), json_string_length(text),
                                                                    dialect_embedding_length(i, count, 8)));
        }
        dialect_json(a, 200, json_pack("{s:s,s:o,s:i}", "model", model, "embeddings", embeddings, "prompt_eval_count", tokens));
        json_decref(body);
        return;
    }
    if (!json_is_false(json_object_get(body, "stream"))) {
        json_decref(body);
        ollama_error(a, 400, "this stand-in answers \"stream\": false only");
        return;
    }
    char user[8192] = "", system[4096] = "";
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(body, "messages"), i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        const char *content = json_string_value(json_object_get(m, "content"));
        if (!role || !content) continue;
        if (strcmp(role, "user") == 0) snprintf(user + strlen(user), sizeof user - strlen(user), "%s%s", *user ? " " : "", content);
        else if (strcmp(role, "system") == 0) snprintf(system, sizeof system, "%s", content);
    }
    json_t *format = json_object_get(body, "format");
    json_t *schema = json_is_object(format) ? format : NULL, *object = NULL;
    if (json_is_string(format) && strcmp(json_string_value(format), "json") == 0) schema = object = json_object();
    char *answer = dialect_content(user, strlen(user), *system ? system : NULL, schema, r->fault, r->serial);
    json_decref(object);
    dialect_json(a, 200, json_pack("{s:s,s:s,s:{s:s,s:s},s:s,s:b,s:i,s:i,s:i}", "model", model, "created_at",
                                   "2024-05-01T12:00:00.000000Z", "message", "role", "assistant", "content",
                                   answer ? answer : "", "done_reason", "stop", "done", 1, "total_duration", 1000000,
                                   "prompt_eval_count", dialect_tokens(strlen(user) + strlen(system)), "eval_count",
                                   dialect_tokens(answer ? strlen(answer) : 0)));
    free(answer);
    json_decref(body);
}

const struct dialect dialect_ollama = {"ollama", ollama_match, ollama_model_call, ollama_answer};
