/* openai_wire.c: the OpenAI chat completions and embeddings wire format (openai_int.h), shared
 * by model.openai and model.azure_openai: the body of a call, made of parts fixed at open and
 * the messages, and the answer, read by a scanner for the usual chat completion and by jansson
 * for everything else (content parts, refusals, embeddings, errors). model.openai's
 * api = "responses" speaks the Responses API with the same parts: the conversation as `input`,
 * the system prompt as `instructions`, max_output_tokens, and structured output as text.format. */
#include "models/providers/openai_int.h"

#include <stdlib.h>
#include <string.h>

#include "core/json_scan.h"
#include "models/providers/common.h"

/* Fields of `parameters` that runnel writes or that have an option of their own. */
static const struct reserved_field own_fields[] = {
    {"model", "runnel writes it"}, {"messages", "runnel writes it"}, {"input", "runnel writes it"},
    {"temperature", "use the option of that name"}, {"max_tokens", "use the option of that name"},
    {"top_p", "use the option of that name"}, {"seed", "use the option of that name"},
    {"stream", "streamed answers are not supported"},
    {"response_format", "structured output writes it (set structured = false to send your own)"},
};

/* The same for the Responses API, whose body has other names. */
static const struct reserved_field responses_fields[] = {
    {"model", "runnel writes it"}, {"input", "runnel writes it"}, {"instructions", "use the job's system prompt"},
    {"messages", "the Responses API takes input, which runnel writes"},
    {"temperature", "use the option of that name"}, {"max_output_tokens", "use the option max_tokens"},
    {"top_p", "use the option of that name"}, {"stream", "streamed answers are not supported"},
    {"text", "structured output writes it (set structured = false to send your own)"},
};

int openai_wire_open(struct openai_wire *w, lua_State *L, int opts, const char *model, int structured,
                     enum openai_api api, struct rn_err *err)
{
    w->api = api;
    buf_init(&w->head);
    buf_init(&w->chat_tail);
    buf_init(&w->embedding_tail);
    buf_init(&w->messages.system_json);
    w->messages.system_source = NULL;
    buf_putc(&w->head, '{');
    if (model) {
        buf_puts(&w->head, "\"model\":");
        buf_put_json_string(&w->head, model, strlen(model));
        buf_putc(&w->head, ',');
    }
    /* temperature, top_p and max_tokens are within their ranges: checked */
    if (opt_push(L, opts, "temperature")) {
        buf_puts(&w->chat_tail, ",\"temperature\":");
        common_put_number(&w->chat_tail, lua_tonumber(L, -1));
        lua_pop(L, 1);
    }
    if (opt_push(L, opts, "top_p")) {
        buf_puts(&w->chat_tail, ",\"top_p\":");
        common_put_number(&w->chat_tail, lua_tonumber(L, -1));
        lua_pop(L, 1);
    }
    if (opt_push(L, opts, "max_tokens")) {
        buf_printf(&w->chat_tail, api == OPENAI_RESPONSES ? ",\"max_output_tokens\":%lld" : ",\"max_tokens\":%lld",
                   (long long)lua_tointeger(L, -1));
        lua_pop(L, 1);
    }
    if (api == OPENAI_RESPONSES && opt_push(L, opts, "seed")) {
        lua_pop(L, 1);
        return rn_fail(err, "seed: the Responses API takes no seed (leave it out, or use api = \"chat\")");
    }
    if (opt_push(L, opts, "seed")) {
        buf_printf(&w->chat_tail, ",\"seed\":%lld", (long long)lua_tonumber(L, -1));
        lua_pop(L, 1);
    }
    const struct reserved_field *fields = api == OPENAI_RESPONSES ? responses_fields : own_fields;
    size_t reserved = (api == OPENAI_RESPONSES ? sizeof responses_fields / sizeof responses_fields[0]
                                               : sizeof own_fields / sizeof own_fields[0]) - (structured ? 0 : 1);
    struct buf parameters;
    buf_init(&parameters);
    int rc = common_read_parameters(L, opts, fields, reserved, &parameters, err);
    buf_put(&w->chat_tail, parameters.data ? parameters.data : "", parameters.len);
    buf_put(&w->embedding_tail, parameters.data ? parameters.data : "", parameters.len);
    buf_free(&parameters);
    return rc;
}

void openai_wire_free(struct openai_wire *w)
{
    buf_free(&w->head);
    buf_free(&w->chat_tail);
    buf_free(&w->embedding_tail);
    buf_free(&w->messages.system_json);
}

static void put_message(struct buf *b, const char *role, const char *text, size_t len)
{
    buf_printf(b, "{\"role\":\"%s\",\"content\":", role);
    buf_put_json_string(b, text, len);
    buf_putc(b, '}');
}

void openai_put_messages(struct openai_messages *m, const struct model_call *call, struct buf *b)
{
    buf_puts(b, "\"messages\":[");
    if (call->system) {
        if (call->system != m->system_source) {
            buf_clear(&m->system_json);
            put_message(&m->system_json, "system", call->system, strlen(call->system));
            buf_putc(&m->system_json, ',');
            m->system_source = call->system;
        }
        buf_put(b, m->system_json.data, m->system_json.len);
    }
    common_put_turns(b, call, put_message, "assistant", "");
    buf_putc(b, ']');
}

/* A Responses API body: "input" is the conversation as chat messages (the Responses API takes
 * them as they are), the system prompt goes into "instructions". */
static void responses_body(struct openai_wire *w, const struct model_call *call, struct buf *b)
{
    buf_puts(b, "\"input\":[");
    common_put_turns(b, call, put_message, "assistant", "");
    buf_putc(b, ']');
    if (call->system) {
        buf_puts(b, ",\"instructions\":");
        buf_put_json_string(b, call->system, strlen(call->system));
    }
    buf_put(b, w->chat_tail.data, w->chat_tail.len);
    if (call->schema_json) {
        buf_puts(b, ",\"text\":{\"format\":{\"type\":\"json_schema\",\"name\":\"output\",\"strict\":true,\"schema\":");
        buf_puts(b, call->schema_json);
        buf_puts(b, "}}");
    }
    buf_putc(b, '}');
}

void openai_wire_body(struct openai_wire *w, const struct model_call *call, struct buf *b)
{
    buf_put(b, w->head.data, w->head.len);
    if (call->task == MODEL_TASK_EMBEDDING) {
        buf_puts(b, "\"input\":");
        buf_put_json_string(b, call->prompt, call->prompt_len);
        buf_put(b, w->embedding_tail.data, w->embedding_tail.len);
        buf_putc(b, '}');
        return;
    }
    if (w->api == OPENAI_RESPONSES) {
        responses_body(w, call, b);
        return;
    }
    openai_put_messages(&w->messages, call, b);
    buf_put(b, w->chat_tail.data, w->chat_tail.len);
    if (call->schema_json) {
        buf_puts(b, ",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":"
                    "{\"name\":\"output\",\"strict\":true,\"schema\":");
        buf_puts(b, call->schema_json);
        buf_puts(b, "}}");
    }
    buf_putc(b, '}');
}

/* An error object inside a 2xx answer, or why the shape is wrong. */
static int shape_error(json_t *root, const char *what, struct rn_err *err)
{
    json_t *message = json_object_get(json_object_get(root, "error"), "message");
    if (json_is_string(message)) return rn_fail(err, "the answer is an error: %.200s", json_string_value(message));
    return rn_fail(err, "%s", what);
}

static int key_is(const char *key, size_t len, const char *name)
{
    return strlen(name) == len && memcmp(key, name, len) == 0;
}

/* usage: { "prompt_tokens": N, "completion_tokens": N, ... } */
static int scan_usage(struct jscan *s, struct model_reply *reply)
{
    const char *key;
    size_t key_len;
    int count = 0, more, seen_in = 0, seen_out = 0;
    if (!jscan_open(s, '{')) return jscan_skip(s); /* null or odd: counted as zero, like jansson's path */
    while ((more = jscan_member(s, &count, &key, &key_len)) > 0) {
        int64_t *to = NULL;
        if (key_is(key, key_len, "prompt_tokens")) { to = &reply->tokens_in; seen_in++; }
        else if (key_is(key, key_len, "completion_tokens")) { to = &reply->tokens_out; seen_out++; }
        if (seen_in > 1 || seen_out > 1) return -1; /* a repeated key: jansson keeps the last */
        int64_t v;
        int c = jscan_peek(s);
        if (to && (c == '-' || (c >= '0' && c <= '9'))) {
            if (jscan_integer(s, &v)) return -1;
            *to = v > 0 ? v : 0;
        } else if (jscan_skip(s)) {
            return -1;
        }
    }
    return more;
}

/* choices: [ { "message": { "content": "..." }, ... }, ... ]: the first choice's text. 1 when
 * it was a plain string, 0 for anything else (content parts, a refusal, no message). */
static int scan_choices(struct jscan *s, struct model_reply *reply)
{
    const char *key;
    size_t key_len;
    int elements = 0, more, found = 0;
    if (!jscan_open(s, '[')) return 0;
    while ((more = jscan_element(s, &elements)) > 0) {
        int members = 0;
        if (elements > 1 || !jscan_open(s, '{')) { if (jscan_skip(s)) return -1; continue; }
        while ((more = jscan_member(s, &members, &key, &key_len)) > 0) {
            if (!key_is(key, key_len, "message")) { if (jscan_skip(s)) return -1; continue; }
            if (found || !jscan_open(s, '{')) return 0;
            int fields = 0;
            while ((more = jscan_member(s, &fields, &key, &key_len)) > 0) {
                if (key_is(key, key_len, "content")) {
                    if (found || jscan_string(s, &reply->text)) return 0;
                    found = 1;
                } else if (jscan_skip(s)) {
                    return -1;
                }
            }
            if (more < 0) return -1;
        }
        if (more < 0) return -1;
    }
    return more < 0 ? -1 : found;
}

/* The usual answer, a chat completion whose first message is a string, read without building a
 * tree. 1 when it was that; 0 for any other document (the reply is then left empty). */
static int parse_plain_completion(const char *body, size_t len, struct model_reply *reply)
{
    struct jscan s;
    const char *key;
    size_t key_len;
    int count = 0, more, seen_choices = 0, seen_usage = 0, ok = 0;
    jscan_init(&s, body, len);
    if (!jscan_open(&s, '{')) return 0;
    while ((more = jscan_member(&s, &count, &key, &key_len)) > 0) {
        if (key_is(key, key_len, "choices")) {
            if (seen_choices++ || (ok = scan_choices(&s, reply)) != 1) goto other;
        } else if (key_is(key, key_len, "usage")) {
            if (seen_usage++ || scan_usage(&s, reply)) goto other;
        } else if (key_is(key, key_len, "data") || key_is(key, key_len, "error")) {
            goto other;
        } else if (jscan_skip(&s)) {
            goto other;
        }
    }
    if (more == 0 && ok && jscan_at_end(&s)) return 1;
other:
    buf_clear(&reply->text);
    reply->tokens_in = reply->tokens_out = 0;
    return 0;
}

int openai_parse_tree(const char *body, size_t len, struct model_reply *reply, struct rn_err *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr);
    if (!root) return rn_fail(err, "the answer is not JSON (%s at line %d, column %d)", jerr.text, jerr.line, jerr.column);
    int rc = 0;
    json_t *usage = json_object_get(root, "usage");
    reply->tokens_in = common_usage(usage, "prompt_tokens");
    reply->tokens_out = common_usage(usage, "completion_tokens");
    json_t *data = json_object_get(root, "data");
    if (json_is_array(data)) { /* embeddings */
        json_t *vector = json_object_get(json_array_get(data, 0), "embedding");
        if (json_is_array(vector)) reply->vector = json_incref(vector);
        else if (json_is_string(vector)) rc = rn_fail(err, "the embedding is base64: leave encoding_format unset");
        else rc = shape_error(root, "the answer has no data[0].embedding array", err);
        json_decref(root);
        return rc;
    }
    json_t *choices = json_object_get(root, "choices");
    json_t *message = json_object_get(json_array_get(choices, 0), "message");
    if (!json_is_object(message)) {
        rc = shape_error(root, "the answer has no choices[0].message", err);
        json_decref(root);
        return rc;
    }
    json_t *content = json_object_get(message, "content");
    json_t *refusal = json_object_get(message, "refusal");
    if (json_is_string(content)) {
        buf_put(&reply->text, json_string_value(content), json_string_length(content));
    } else if (json_is_array(content)) { /* content parts: join their text */
        size_t i;
        json_t *part;
        json_array_foreach(content, i, part) {
            json_t *text = json_object_get(part, "text");
            if (json_is_string(text)) buf_put(&reply->text, json_string_value(text), json_string_length(text));
        }
    } else if (json_is_string(refusal)) { /* checked like any answer, so it fails with the refusal as text */
        buf_put(&reply->text, json_string_value(refusal), json_string_length(refusal));
    }
    json_decref(root);
    return 0;
}

int openai_wire_parse(const char *body, size_t len, struct model_reply *reply, struct rn_err *err)
{
    if (parse_plain_completion(body, len, reply)) return 0;
    return openai_parse_tree(body, len, reply, err);
}

/* A Responses API answer: the output_text of its output messages, joined, or the refusal when
 * the model gave one instead; the usage as input_tokens and output_tokens. */
static int parse_response(json_t *root, struct model_reply *reply, struct rn_err *err)
{
    json_t *output = json_object_get(root, "output");
    if (!json_is_array(output)) return shape_error(root, "the answer has no output array", err);
    json_t *usage = json_object_get(root, "usage");
    reply->tokens_in = common_usage(usage, "input_tokens");
    reply->tokens_out = common_usage(usage, "output_tokens");
    int messages = 0;
    const char *refusal = NULL;
    size_t i, j;
    json_t *item, *part;
    json_array_foreach(output, i, item) {
        const char *type = json_string_value(json_object_get(item, "type"));
        if (!type || strcmp(type, "message") != 0) continue; /* reasoning, tool calls: not the answer */
        messages++;
        json_array_foreach(json_object_get(item, "content"), j, part) {
            const char *kind = json_string_value(json_object_get(part, "type"));
            json_t *text = json_object_get(part, "text");
            if (kind && strcmp(kind, "output_text") == 0 && json_is_string(text))
                buf_put(&reply->text, json_string_value(text), json_string_length(text));
            else if (kind && strcmp(kind, "refusal") == 0 && !refusal)
                refusal = json_string_value(json_object_get(part, "refusal"));
        }
    }
    if (!messages) return shape_error(root, "the answer's output holds no message", err);
    if (!reply->text.len && refusal) buf_puts(&reply->text, refusal); /* classify dead-letters it first */
    return 0;
}

int openai_responses_parse(const char *body, size_t len, struct model_reply *reply, struct rn_err *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr);
    if (!root) return rn_fail(err, "the answer is not JSON (%s at line %d, column %d)", jerr.text, jerr.line, jerr.column);
    json_t *data = json_object_get(root, "data");
    int rc = json_is_array(data) ? -2 : parse_response(root, reply, err); /* embeddings answer as for chat */
    json_decref(root);
    return rc == -2 ? openai_parse_tree(body, len, reply, err) : rc;
}

int openai_responses_failure(const char *body, size_t len, char *why, size_t size)
{
    if (!memmem(body, len, "\"refusal\"", 9) && !memmem(body, len, "\"incomplete\"", 12)) return 0;
    json_t *root = json_loadb(body, len, 0, NULL);
    const char *status = json_string_value(json_object_get(root, "status"));
    int failed = 0;
    if (status && strcmp(status, "incomplete") == 0) {
        const char *reason = json_string_value(json_object_get(json_object_get(root, "incomplete_details"), "reason"));
        snprintf(why, size, "the answer is incomplete (%s)", reason ? reason : "no reason given");
        failed = 1;
    }
    size_t i, j;
    json_t *item, *part;
    json_array_foreach(json_object_get(root, "output"), i, item) {
        json_array_foreach(json_object_get(item, "content"), j, part) {
            const char *kind = json_string_value(json_object_get(part, "type"));
            const char *refusal = json_string_value(json_object_get(part, "refusal"));
            if (failed || !kind || strcmp(kind, "refusal") != 0) continue;
            snprintf(why, size, "the model refused: %s", refusal ? refusal : "(no text)");
            failed = 1;
        }
    }
    json_decref(root);
    return failed;
}

void openai_wire_inputs_body(struct openai_wire *w, const struct model_call *const *calls, size_t n, struct buf *b)
{
    buf_put(b, w->head.data, w->head.len);
    buf_puts(b, "\"input\":[");
    for (size_t i = 0; i < n; i++) {
        if (i) buf_putc(b, ',');
        buf_put_json_string(b, calls[i]->prompt, calls[i]->prompt_len);
    }
    buf_putc(b, ']');
    buf_put(b, w->embedding_tail.data, w->embedding_tail.len);
    buf_putc(b, '}');
}

int openai_wire_parse_inputs(const char *body, size_t len, size_t n, json_t **vectors, int64_t *tokens_in,
                             struct rn_err *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr);
    if (!root) return rn_fail(err, "the answer is not JSON (%s at line %d, column %d)", jerr.text, jerr.line, jerr.column);
    *tokens_in = common_usage(json_object_get(root, "usage"), "prompt_tokens");
    json_t *data = json_object_get(root, "data"), *item;
    int rc = json_is_array(data) ? 0 : shape_error(root, "the answer has no data array", err);
    size_t i;
    json_array_foreach(data, i, item) {
        if (rc) break;
        json_t *index = json_object_get(item, "index"), *vector = json_object_get(item, "embedding");
        json_int_t at = json_is_integer(index) ? json_integer_value(index) : (json_int_t)i; /* no index: its place */
        if (at < 0 || (size_t)at >= n)
            rc = rn_fail(err, "data[%zu].index is %lld, and the request had %zu inputs", i, (long long)at, n);
        else if (vectors[at])
            rc = rn_fail(err, "data[%zu].index %lld repeats an earlier item's", i, (long long)at);
        else if (json_is_string(vector))
            rc = rn_fail(err, "the embedding is base64: leave encoding_format unset");
        else if (json_is_array(vector))
            vectors[at] = json_incref(vector);
    }
    if (rc)
        for (i = 0; i < n; i++) {
            json_decref(vectors[i]);
            vectors[i] = NULL;
        }
    json_decref(root);
    return rc;
}
