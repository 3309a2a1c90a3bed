/* openai.c: the OpenAI provider, model.openai{}: chat completions and embeddings over the
 * OpenAI HTTP API or any server that speaks it (provider interface v2, models/provider.h). It
 * builds one request and parses one answer; its answers are classified by the default rules
 * (provider.c), which are OpenAI's. Retries, limits, prompts and answer checks are the
 * engine's.
 *
 * Everything that is the same for every request (URL, headers, the fixed JSON around the
 * messages) is made once at open; a request body is a few appends. The api key goes into the
 * Authorization header and nowhere else; the engine redacts it (a secret option) from every
 * reason. */
#include "models/providers/openai_int.h"

#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/http.h"
#include "formats/json.h"
#include "core/json_scan.h"
#include "lua/job.h"

static int has_control(const char *s);

/* endpoint: an http(s) URL without spaces. */
static int check_endpoint(lua_State *L, int idx, struct rn_err *err)
{
    const char *endpoint = lua_tostring(L, idx);
    if (strncmp(endpoint, "http://", 7) != 0 && strncmp(endpoint, "https://", 8) != 0)
        return rn_fail(err, "\"%.200s\" must start with http:// or https://", endpoint);
    if (has_control(endpoint) || strchr(endpoint, ' ')) return rn_fail(err, "holds spaces or control characters");
    return 0;
}

static const struct option_spec openai_options[] = {
    {"endpoint", OPT_STRING, 0, "https://api.openai.com/v1", .help = "base URL; /chat/completions or /embeddings is added",
     .check = check_endpoint},
    {"api_key", OPT_STRING, 0, NULL, .help = "secret(\"OPENAI_API_KEY\") or a string; never printed or logged", .secret = 1},
    {"model", OPT_STRING, 1, NULL, .help = "model name, e.g. \"gpt-4o-mini\" or \"text-embedding-3-small\""},
    {"temperature", OPT_NUMBER, 0, NULL, .help = "sampling temperature", OPT_RANGE(0, 2)},
    {"max_tokens", OPT_INTEGER, 0, NULL, .help = "longest answer in tokens", OPT_AT_LEAST(1)},
    {"top_p", OPT_NUMBER, 0, NULL, .help = "nucleus sampling", .bounds = OPT_MIN | OPT_MIN_EXCLUSIVE | OPT_MAX, .min = 0,
     .max = 1},
    {"seed", OPT_INTEGER, 0, NULL, .help = "seed for more repeatable answers"},
    {"parameters", OPT_TABLE, 0, NULL, .help = "more request fields, sent as JSON as they are"},
    {"structured", OPT_BOOLEAN, 0, NULL, .help = "ask for JSON that follows the output schema (response_format)",
     .default_note = "with output"},
    {"headers", OPT_MAP, 0, NULL, .help = "extra HTTP headers: { [\"X-Name\"] = \"value\" or secret(...) }",
     .value = OPT_VALUE(OPT_STRING, .secret = 1)},
    {"organization", OPT_STRING, 0, NULL, .help = "sent as OpenAI-Organization"},
    MODEL_COMMON_OPTIONS,
    {NULL},
};

struct openai {
    char *url_chat, *url_embeddings;
    struct buf head;             /* {"model":"..." */
    struct buf chat_tail;        /* ,"temperature":... and the parameters, for chat bodies */
    struct buf embedding_tail;   /* the parameters, for embedding bodies */
    struct curl_slist *headers;  /* the same for every request, lent to each call; holds the key */
    int headers_failed;          /* curl could not copy one (out of memory) */
    const char *system_source;   /* the system prompt system_json encodes (the engine's pointer) */
    struct buf system_json;
};

static void openai_close(void *self)
{
    struct openai *p = self;
    if (!p) return;
    free(p->url_chat);
    free(p->url_embeddings);
    buf_free(&p->head);
    buf_free(&p->chat_tail);
    buf_free(&p->embedding_tail);
    for (struct curl_slist *h = p->headers; h; h = h->next) /* one holds the api key */
        explicit_bzero(h->data, strlen(h->data));
    curl_slist_free_all(p->headers);
    buf_free(&p->system_json);
    free(p);
}

/* Add a header line (curl copies it; the caller's copy is wiped and freed). */
static void add_line(struct openai *p, char *line)
{
    struct curl_slist *next = curl_slist_append(p->headers, line);
    if (next) p->headers = next;
    else p->headers_failed = 1;
    explicit_bzero(line, strlen(line));
    free(line);
}

static void add_header(struct openai *p, const char *name, const char *value)
{
    struct buf line;
    buf_init(&line);
    buf_printf(&line, "%s: %s", name, value);
    add_line(p, line.data);
}

static int has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) return 1;
    return 0;
}

static int valid_header_name(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++)
        if (!(((*s | 32) >= 'a' && (*s | 32) <= 'z') || (*s >= '0' && *s <= '9') || strchr("!#$%&'*+-.^_`|~", *s)))
            return 0;
    return 1;
}

static void put_number(struct buf *b, double v)
{
    char tmp[RN_DOUBLE_MAX];
    buf_put(b, tmp, (size_t)rn_format_double(tmp, v));
}

static int read_headers(struct openai *p, lua_State *L, int opts, int have_key, struct rn_err *err)
{
    if (!opt_push(L, opts, "headers")) return 0;
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        const char *name = lua_tostring(L, -2); /* names to strings or secrets: checked */
        const char *value = luajob_secret_value(L, -1);
        int rc = 0;
        if (!valid_header_name(name)) rc = rn_fail(err, "headers: '%s' is not a valid header name", name);
        else if (has_control(value)) rc = rn_fail(err, "headers.%s: the value holds a line break or control character", name);
        else if (strcasecmp(name, "content-type") == 0) rc = rn_fail(err, "headers.%s: set by runnel (application/json)", name);
        else if (have_key && strcasecmp(name, "authorization") == 0)
            rc = rn_fail(err, "headers.%s: api_key sets it already; give one of the two", name);
        else add_header(p, name, value);
        lua_pop(L, 1);
        if (rc) { lua_pop(L, 2); return -1; }
    }
    lua_pop(L, 1);
    return 0;
}

/* parameters = { ... } becomes ,"k":v,... appended to every body. Keys that runnel writes
 * itself cannot be overridden, so a body never has a key twice. */
static int read_parameters(struct openai *p, lua_State *L, int opts, int structured, struct rn_err *err)
{
    if (!opt_push(L, opts, "parameters")) return 0;
    int tbl = lua_gettop(L);
    static const char *const own[] = {"model", "messages", "input", "temperature", "max_tokens", "top_p", "seed"};
    lua_pushnil(L);
    while (lua_next(L, tbl)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) {
            lua_pop(L, 2);
            return rn_fail(err, "parameters: name each field: parameters = { frequency_penalty = 0.5 }");
        }
        const char *key = lua_tostring(L, -1);
        const char *why = NULL;
        for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
            if (strcmp(key, own[i]) == 0) why = i < 3 ? "runnel writes it" : "use the option of that name";
        if (strcmp(key, "stream") == 0) why = "streamed answers are not supported";
        if (structured && strcmp(key, "response_format") == 0)
            why = "structured output writes it (set structured = false to send your own)";
        if (why) {
            rn_fail(err, "parameters.%s: %s", key, why);
            lua_pop(L, 2);
            return -1;
        }
    }
    struct buf json;
    buf_init(&json);
    int rc = json_encode(L, tbl, LUA_NOREF, &json, err);
    lua_pop(L, 1);
    if (rc) {
        buf_free(&json);
        return rn_wrap(err, "parameters");
    }
    if (json.len > 2 && json.data[0] == '{') {
        buf_putc(&p->chat_tail, ',');
        buf_put(&p->chat_tail, json.data + 1, json.len - 2);
        buf_putc(&p->embedding_tail, ',');
        buf_put(&p->embedding_tail, json.data + 1, json.len - 2);
    }
    buf_free(&json);
    return 0;
}

static void *openai_open(struct job_env *env, int opts, const struct provider_setup *setup, struct rn_err *err)
{
    lua_State *L = env->L;
    opts = lua_absindex(L, opts);
    struct openai *p = rn_calloc(1, sizeof *p);
    buf_init(&p->head);
    buf_init(&p->chat_tail);
    buf_init(&p->embedding_tail);
    buf_init(&p->system_json);

    const char *endpoint = opt_string(L, opts, "endpoint", "https://api.openai.com/v1"); /* an http(s) URL: checked */
    size_t n = strlen(endpoint);
    while (n > 8 && endpoint[n - 1] == '/') n--;
    struct buf url;
    buf_init(&url);
    buf_printf(&url, "%.*s/chat/completions", (int)n, endpoint);
    p->url_chat = url.data;
    buf_init(&url);
    buf_printf(&url, "%.*s/embeddings", (int)n, endpoint);
    p->url_embeddings = url.data;

    const char *model = opt_string(L, opts, "model", NULL);
    if (!model || !*model) {
        rn_fail(err, "model: give the model name, e.g. model = \"gpt-4o-mini\"");
        goto fail;
    }
    buf_puts(&p->head, "{\"model\":");
    buf_put_json_string(&p->head, model, strlen(model));

    /* temperature, top_p and max_tokens are within their ranges: checked */
    double v;
    if (opt_push(L, opts, "temperature")) {
        v = lua_tonumber(L, -1);
        lua_pop(L, 1);
        buf_puts(&p->chat_tail, ",\"temperature\":");
        put_number(&p->chat_tail, v);
    }
    if (opt_push(L, opts, "top_p")) {
        v = lua_tonumber(L, -1);
        lua_pop(L, 1);
        buf_puts(&p->chat_tail, ",\"top_p\":");
        put_number(&p->chat_tail, v);
    }
    if (opt_push(L, opts, "max_tokens")) {
        buf_printf(&p->chat_tail, ",\"max_tokens\":%lld", (long long)lua_tointeger(L, -1));
        lua_pop(L, 1);
    }
    if (opt_push(L, opts, "seed")) {
        buf_printf(&p->chat_tail, ",\"seed\":%lld", (long long)lua_tonumber(L, -1));
        lua_pop(L, 1);
    }

    if (read_parameters(p, L, opts, setup->structured, err)) goto fail;

    add_header(p, "Content-Type", "application/json");
    add_line(p, rn_strdup("Expect:")); /* no value: curl sends no Expect and never waits for 100-continue */
    int have_key = 0;
    if (opt_push(L, opts, "api_key")) {
        const char *key = luajob_secret_value(L, -1); /* a string or a secret: checked */
        int is_secret = lua_type(L, -1) == LUA_TUSERDATA;
        if (has_control(key)) {
            rn_fail(err, "api_key: holds a line break or control character");
            key = NULL;
        } else if (is_secret && !*key) {
            const char *name = luajob_secret_name(L, -1);
            rn_fail(err, "api_key: secret(\"%s\") is empty: set the environment variable %s, or %s_FILE to a file "
                         "that holds the key", name, name, name);
            key = NULL;
        } else if (*key) {
            struct buf value;
            buf_init(&value);
            buf_printf(&value, "Bearer %s", key);
            add_header(p, "Authorization", value.data);
            explicit_bzero(value.data, value.len);
            buf_free(&value);
            have_key = 1;
        }
        lua_pop(L, 1);
        if (!key) goto fail;
    }
    const char *organization = opt_string(L, opts, "organization", NULL);
    if (organization) {
        if (has_control(organization)) { rn_fail(err, "organization: holds a control character"); goto fail; }
        add_header(p, "OpenAI-Organization", organization);
    }
    if (read_headers(p, L, opts, have_key, err)) goto fail;
    if (p->headers_failed) {
        rn_fail(err, "out of memory for request headers");
        goto fail;
    }
    return p;
fail:
    openai_close(p);
    return NULL;
}

static void put_message(struct buf *b, const char *role, const char *text, size_t len)
{
    buf_printf(b, "{\"role\":\"%s\",\"content\":", role);
    buf_put_json_string(b, text, len);
    buf_putc(b, '}');
}

static int openai_build(void *self, const struct model_call *call, struct http_request *req, struct rn_err *err)
{
    (void)err; /* nothing here can fail */
    struct openai *p = self;
    req->method = "POST";
    req->headers = p->headers;
    struct buf *b = &req->body;
    buf_put(b, p->head.data, p->head.len);
    if (call->task == MODEL_TASK_EMBEDDING) {
        buf_puts(&req->url, p->url_embeddings);
        buf_puts(b, ",\"input\":");
        buf_put_json_string(b, call->prompt, call->prompt_len);
        buf_put(b, p->embedding_tail.data, p->embedding_tail.len);
        buf_putc(b, '}');
        return 0;
    }
    buf_puts(&req->url, p->url_chat);
    buf_puts(b, ",\"messages\":[");
    if (call->system) {
        if (call->system != p->system_source) {
            buf_clear(&p->system_json);
            put_message(&p->system_json, "system", call->system, strlen(call->system));
            buf_putc(&p->system_json, ',');
            p->system_source = call->system;
        }
        buf_put(b, p->system_json.data, p->system_json.len);
    }
    put_message(b, "user", call->prompt, call->prompt_len);
    if (call->correction) {
        buf_putc(b, ',');
        const char *previous = call->previous_answer ? call->previous_answer : "";
        put_message(b, "assistant", previous, strlen(previous));
        buf_putc(b, ',');
        put_message(b, "user", call->correction, strlen(call->correction));
    }
    buf_putc(b, ']');
    buf_put(b, p->chat_tail.data, p->chat_tail.len);
    if (call->schema_json) {
        buf_puts(b, ",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":"
                    "{\"name\":\"output\",\"strict\":true,\"schema\":");
        buf_puts(b, call->schema_json);
        buf_puts(b, "}}");
    }
    buf_putc(b, '}');
    return 0;
}

static int64_t usage_count(json_t *usage, const char *name)
{
    json_t *v = json_object_get(usage, name);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (int64_t)json_integer_value(v) : 0;
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
    reply->tokens_in = usage_count(usage, "prompt_tokens");
    reply->tokens_out = usage_count(usage, "completion_tokens");
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

static int openai_parse(void *self, const struct http_response *answer, struct model_reply *reply, struct rn_err *err)
{
    (void)self;
    if (parse_plain_completion(answer->body, answer->body_len, reply)) return 0;
    return openai_parse_tree(answer->body, answer->body_len, reply, err);
}

static const char *const openai_secrets[] = {"api_key", "headers", NULL};

const struct provider_ops openai_provider = {
    .version = PROVIDER_INTERFACE_VERSION,
    .name = "openai",
    .summary = "OpenAI chat completions and embeddings (or any compatible server)",
    .options = openai_options,
    .capabilities = PROVIDER_CHAT | PROVIDER_EMBEDDINGS | PROVIDER_STRUCTURED,
    .model_option = "model",
    .secret_options = openai_secrets,
    .open = openai_open,
    .build = openai_build,
    .classify = NULL, /* OpenAI's rules are the default */
    .parse = openai_parse,
    .close = openai_close,
};
