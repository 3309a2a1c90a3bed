/* google_wire.c: Google's generateContent wire format (google_int.h), shared by model.gemini and
 * model.vertex. The output schema is rewritten once at open for responseSchema (an OpenAPI
 * subset: upper-case type names, no additionalProperties); a body is then a few appends. */
#include "models/providers/google_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/http.h"
#include "models/providers/common.h"

/* The output schema as responseSchema takes it: types in upper case, enums with their format,
 * no additionalProperties (which it refuses). */
static void rewrite_schema(json_t *schema, int depth)
{
    if (!json_is_object(schema) || depth > 16) return;
    json_object_del(schema, "additionalProperties");
    json_t *type = json_object_get(schema, "type");
    if (json_is_string(type)) {
        char upper[32];
        snprintf(upper, sizeof upper, "%s", json_string_value(type));
        for (char *c = upper; *c; c++) *c = (char)toupper((unsigned char)*c);
        json_object_set_new(schema, "type", json_string(upper));
        if (strcmp(upper, "STRING") == 0 && json_object_get(schema, "enum")) json_object_set_new(schema, "format", json_string("enum"));
    }
    const char *key;
    json_t *property;
    json_object_foreach(json_object_get(schema, "properties"), key, property) rewrite_schema(property, depth + 1);
    rewrite_schema(json_object_get(schema, "items"), depth + 1);
}

static const struct reserved_field own_fields[] = {
    {"contents", "runnel writes it"}, {"systemInstruction", "use the system option"},
    {"generationConfig", "use temperature, max_tokens, top_p and top_k"}, {"content", "runnel writes it"},
    {"instances", "runnel writes it"},
};

int google_wire_open(struct google_wire *w, lua_State *L, int opts, const struct provider_setup *setup,
                     enum google_embedding embedding, struct rn_err *err)
{
    memset(w, 0, sizeof *w);
    w->embedding = embedding;
    buf_init(&w->config);
    buf_init(&w->parameters);
    buf_init(&w->system_json);
    static const char *const numbers[][2] = {{"temperature", "temperature"}, {"top_p", "topP"}};
    for (int i = 0; i < 2; i++) {
        if (!opt_push(L, opts, numbers[i][0])) continue;
        buf_printf(&w->config, "%s\"%s\":", w->config.len ? "," : "", numbers[i][1]);
        common_put_number(&w->config, lua_tonumber(L, -1));
        lua_pop(L, 1);
    }
    static const char *const integers[][2] = {{"max_tokens", "maxOutputTokens"}, {"top_k", "topK"}};
    for (int i = 0; i < 2; i++) {
        if (!opt_push(L, opts, integers[i][0])) continue;
        buf_printf(&w->config, "%s\"%s\":%lld", w->config.len ? "," : "", integers[i][1], (long long)lua_tointeger(L, -1));
        lua_pop(L, 1);
    }
    w->dimensions = (long)opt_integer(L, opts, "dimensions", 0);
    if (setup->schema_json) {
        json_t *schema = json_loads(setup->schema_json, 0, NULL);
        if (!schema) return rn_fail(err, "output: the schema is not JSON");
        rewrite_schema(schema, 0);
        w->schema = json_dumps(schema, JSON_COMPACT);
        json_decref(schema);
    }
    return common_read_parameters(L, opts, own_fields, sizeof own_fields / sizeof own_fields[0], &w->parameters, err);
}

void google_wire_free(struct google_wire *w)
{
    buf_free(&w->config);
    buf_free(&w->parameters);
    buf_free(&w->system_json);
    free(w->schema);
}

static void put_content(struct buf *b, const char *role, const char *text, size_t len)
{
    buf_printf(b, "{\"role\":\"%s\",\"parts\":[{\"text\":", role);
    buf_put_json_string(b, text, len);
    buf_puts(b, "}]}");
}

void google_wire_body(struct google_wire *w, const struct model_call *call, struct buf *b)
{
    if (call->task == MODEL_TASK_EMBEDDING) {
        if (w->embedding == GOOGLE_EMBED_CONTENT) {
            buf_puts(b, "{\"content\":{\"parts\":[{\"text\":");
            buf_put_json_string(b, call->prompt, call->prompt_len);
            buf_puts(b, "}]}");
            if (w->dimensions) buf_printf(b, ",\"outputDimensionality\":%ld", w->dimensions);
        } else {
            buf_puts(b, "{\"instances\":[{\"content\":");
            buf_put_json_string(b, call->prompt, call->prompt_len);
            buf_puts(b, "}]");
            if (w->dimensions) buf_printf(b, ",\"parameters\":{\"outputDimensionality\":%ld}", w->dimensions);
        }
        buf_put(b, w->parameters.data, w->parameters.len);
        buf_putc(b, '}');
        return;
    }
    buf_putc(b, '{');
    if (call->system) {
        if (call->system != w->system_source) {
            buf_clear(&w->system_json);
            buf_puts(&w->system_json, "\"systemInstruction\":{\"parts\":[{\"text\":");
            buf_put_json_string(&w->system_json, call->system, strlen(call->system));
            buf_puts(&w->system_json, "}]},");
            w->system_source = call->system;
        }
        buf_put(b, w->system_json.data, w->system_json.len);
    }
    buf_puts(b, "\"contents\":[");
    common_put_turns(b, call, put_content, "model", "(no answer)");
    buf_putc(b, ']');
    int structured = call->schema_json && w->schema;
    if (w->config.len || structured) {
        buf_puts(b, ",\"generationConfig\":{");
        buf_put(b, w->config.data, w->config.len);
        if (structured) {
            buf_puts(b, w->config.len ? ",\"responseMimeType\":\"application/json\",\"responseSchema\":"
                                      : "\"responseMimeType\":\"application/json\",\"responseSchema\":");
            buf_puts(b, w->schema);
        }
        buf_putc(b, '}');
    }
    buf_put(b, w->parameters.data, w->parameters.len);
    buf_putc(b, '}');
}

/* finishReason values that mean the answer was withheld: no retry changes them. */
static int withheld(const char *reason)
{
    static const char *const names[] = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII",
                                        "IMAGE_SAFETY", "LANGUAGE"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(reason, names[i]) == 0) return 1;
    return 0;
}

/* The error's detail of @type ...google.rpc.NAME, or NULL. */
static json_t *detail(json_t *error, const char *name)
{
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(error, "details"), i, d) {
        const char *type = json_string_value(json_object_get(d, "@type"));
        const char *dot = type ? strrchr(type, '.') : NULL;
        if (dot && strcmp(dot + 1, name) == 0) return d;
    }
    return NULL;
}

void google_wire_classify(struct google_wire *w, const struct http_response *a, struct provider_verdict *v)
{
    provider_classify_default(a, v); /* Retry-After; 429 and 5xx (UNAVAILABLE, INTERNAL) retried */
    long status = a->status;
    if (status >= 200 && status < 300) {
        /* most answers end with STOP: look closer only when another reason or a block is named */
        if (!memmem(a->body, a->body_len, "blockReason", 11) && !memmem(a->body, a->body_len, "finishReason", 12)) return;
        json_t *root = json_loadb(a->body, a->body_len, 0, NULL);
        const char *block = json_string_value(json_object_get(json_object_get(root, "promptFeedback"), "blockReason"));
        json_t *candidate = json_array_get(json_object_get(root, "candidates"), 0);
        const char *finish = json_string_value(json_object_get(candidate, "finishReason"));
        if (block) {
            snprintf(w->why, sizeof w->why, "Gemini blocked the prompt (promptFeedback.blockReason %.40s)", block);
            v->outcome = PROVIDER_FAIL_RECORD;
            v->why = w->why;
        } else if (finish && withheld(finish)) {
            snprintf(w->why, sizeof w->why, "Gemini withheld the answer (finishReason %.40s)", finish);
            v->outcome = PROVIDER_FAIL_RECORD;
            v->why = w->why;
        }
        json_decref(root);
        return;
    }
    json_t *root = json_loadb(a->body, a->body_len, 0, NULL);
    json_t *error = json_object_get(root, "error");
    const char *state = json_string_value(json_object_get(error, "status"));
    const char *message = json_string_value(json_object_get(error, "message"));
    if (!state) state = "";
    if (!message) message = "";
    if (status == 429) { /* RESOURCE_EXHAUSTED: the RetryInfo says when, when Retry-After does not */
        const char *delay = json_string_value(json_object_get(detail(error, "RetryInfo"), "retryDelay"));
        int64_t ms = delay ? provider_parse_duration(delay, strlen(delay)) : -1;
        if (ms > v->retry_after_ms) v->retry_after_ms = ms;
    } else if (status == 401 || strcmp(state, "UNAUTHENTICATED") == 0) {
        v->outcome = PROVIDER_FAIL_JOB;
        v->why = "Google refused the credentials (UNAUTHENTICATED): no record can succeed";
    } else if (status == 403 || strcmp(state, "PERMISSION_DENIED") == 0) {
        v->outcome = PROVIDER_FAIL_JOB;
        v->why = "the credentials may not use this model or project (PERMISSION_DENIED): no record can succeed";
    } else if (status == 400) {
        const char *reason = json_string_value(json_object_get(detail(error, "ErrorInfo"), "reason"));
        if ((reason && strcmp(reason, "API_KEY_INVALID") == 0) || strstr(message, "API key not valid")) {
            v->outcome = PROVIDER_FAIL_JOB;
            v->why = "Google refused the api key (API_KEY_INVALID): no record can succeed";
        } else if (strcmp(state, "FAILED_PRECONDITION") == 0) {
            v->outcome = PROVIDER_FAIL_JOB;
            v->why = "the project cannot use the API (FAILED_PRECONDITION: billing or location): no record can succeed";
        }
    } else if (status == 404) {
        v->outcome = PROVIDER_FAIL_JOB;
        v->why = "Google does not know the model (NOT_FOUND): no record can succeed";
    }
    json_decref(root);
}

int google_wire_parse(const struct http_response *answer, struct model_reply *reply, struct rn_err *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(answer->body, answer->body_len, 0, &jerr);
    if (!root) return rn_fail(err, "the answer is not JSON (%s at line %d, column %d)", jerr.text, jerr.line, jerr.column);
    int rc = 0;
    json_t *values = json_object_get(json_object_get(root, "embedding"), "values"); /* embedContent */
    json_t *prediction = json_array_get(json_object_get(root, "predictions"), 0);   /* Vertex :predict */
    if (!values && prediction) {
        json_t *embeddings = json_object_get(prediction, "embeddings");
        values = json_object_get(embeddings, "values");
        reply->tokens_in = common_usage(json_object_get(embeddings, "statistics"), "token_count");
    }
    if (json_is_array(values)) {
        reply->vector = json_incref(values);
        json_decref(root);
        return 0;
    }
    json_t *usage = json_object_get(root, "usageMetadata");
    reply->tokens_in = common_usage(usage, "promptTokenCount");
    reply->tokens_out = common_usage(usage, "candidatesTokenCount") + common_usage(usage, "thoughtsTokenCount");
    reply->tokens_cache_read = common_usage(usage, "cachedContentTokenCount");
    json_t *parts = json_object_get(json_object_get(json_array_get(json_object_get(root, "candidates"), 0), "content"), "parts");
    if (!json_is_array(parts)) {
        const char *message = common_error_message(root);
        rc = message ? rn_fail(err, "the answer is an error: %.200s", message)
                     : rn_fail(err, "the answer has no candidates[0].content.parts");
        json_decref(root);
        return rc;
    }
    size_t i;
    json_t *part;
    json_array_foreach(parts, i, part) { /* the text parts joined; a thinking model's thoughts left out */
        json_t *text = json_object_get(part, "text");
        if (json_is_string(text) && !json_is_true(json_object_get(part, "thought")))
            buf_put(&reply->text, json_string_value(text), json_string_length(text));
    }
    json_decref(root);
    return 0;
}

void google_wire_inputs_body(struct google_wire *w, const char *model, const struct model_call *const *calls, size_t n,
                             struct buf *b)
{
    if (w->embedding == GOOGLE_EMBED_CONTENT) {
        buf_puts(b, "{\"requests\":[");
        for (size_t i = 0; i < n; i++) {
            buf_puts(b, i ? ",{\"model\":" : "{\"model\":");
            buf_put_json_string(b, model, strlen(model));
            buf_puts(b, ",\"content\":{\"parts\":[{\"text\":");
            buf_put_json_string(b, calls[i]->prompt, calls[i]->prompt_len);
            buf_puts(b, "}]}");
            if (w->dimensions) buf_printf(b, ",\"outputDimensionality\":%ld", w->dimensions);
            buf_put(b, w->parameters.data, w->parameters.len); /* a request's fields (taskType, ...) */
            buf_putc(b, '}');
        }
        buf_puts(b, "]}");
        return;
    }
    buf_puts(b, "{\"instances\":[");
    for (size_t i = 0; i < n; i++) {
        buf_puts(b, i ? ",{\"content\":" : "{\"content\":");
        buf_put_json_string(b, calls[i]->prompt, calls[i]->prompt_len);
        buf_putc(b, '}');
    }
    buf_putc(b, ']');
    if (w->dimensions) buf_printf(b, ",\"parameters\":{\"outputDimensionality\":%ld}", w->dimensions);
    buf_put(b, w->parameters.data, w->parameters.len);
    buf_putc(b, '}');
}

int google_wire_parse_inputs(const struct http_response *answer, size_t n, json_t **vectors, int64_t *tokens_in,
                             struct rn_err *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(answer->body, answer->body_len, 0, &jerr);
    if (!root) return rn_fail(err, "the answer is not JSON (%s at line %d, column %d)", jerr.text, jerr.line, jerr.column);
    json_t *embeddings = json_object_get(root, "embeddings");    /* batchEmbedContents */
    json_t *predictions = json_object_get(root, "predictions");  /* Vertex :predict */
    json_t *items = json_is_array(embeddings) ? embeddings : predictions;
    int rc = 0;
    if (!json_is_array(items)) {
        const char *message = common_error_message(root);
        rc = message ? rn_fail(err, "the answer is an error: %.200s", message)
                     : rn_fail(err, "the answer has no embeddings (nor predictions) array");
    } else if (json_array_size(items) > n) {
        rc = rn_fail(err, "the answer has %zu embeddings, and the request had %zu inputs", json_array_size(items), n);
    }
    size_t i;
    json_t *item;
    *tokens_in = 0;
    json_array_foreach(rc ? NULL : items, i, item) { /* in the order of the inputs: Google gives no index */
        json_t *values = json_object_get(item, "values");
        if (items == predictions) {
            json_t *e = json_object_get(item, "embeddings");
            values = json_object_get(e, "values");
            *tokens_in += common_usage(json_object_get(e, "statistics"), "token_count");
        }
        if (json_is_array(values)) vectors[i] = json_incref(values);
    }
    json_decref(root);
    return rc;
}
