/* http.c: any model behind HTTP, model.http{}: a SageMaker-style endpoint, a PyTorch or
 * scikit-learn service, a Hugging Face inference server. The request body is a template
 * ({{field}} from the record, {{prompt}} the rendered prompt; JSON-encoded into a JSON body)
 * or a Lua function(record, prompt) returning a string or a table (sent as JSON); the answer is
 * the value a JSON pointer (RFC 6901) picks from the response: a label (classification,
 * clustering), a number (regression), a text, a vector (embedding), or an object of several
 * output fields. Headers, keys among them, come from the options.
 *
 * The template is parsed once at open; a body is one pass over its segments. Errors follow
 * the default (OpenAI's) HTTP rules, but a refused credential stops the job. With
 * auth = { sigv4 = { region, service } } every attempt is signed with AWS Signature Version 4
 * (core/sigv4) at the time of that attempt, with the credentials of the standard AWS
 * environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN): a SageMaker
 * endpoint, POST /endpoints/{name}/invocations with service "sagemaker". */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/http.h"
#include "core/secret.h"
#include "core/sigv4.h"
#include "formats/json.h"
#include "lua/job.h"
#include "models/providers/common.h"

static int check_pointer(lua_State *L, int idx, struct rn_err *err)
{
    const char *s = lua_tostring(L, idx);
    if (*s && *s != '/') return rn_fail(err, "\"%.100s\" is not a JSON pointer: \"\" or \"/a/0/b\"", s);
    return 0;
}

static const struct option_spec http_options[] = {
    {"url", OPT_STRING, 1, NULL, .help = "the model's URL, e.g. https://HOST/endpoints/NAME/invocations",
     .check = common_check_url},
    {"method", OPT_ENUM, 0, "POST", .help = "the HTTP method", .choices = OPT_CHOICES("POST", "PUT")},
    {"body", OPT_STRING_OR_FUNCTION, 0, NULL,
     .help = "a template with {{field}} and {{prompt}} (JSON-encoded in a JSON body), or function(record, prompt) -> "
             "string or table (sent as JSON)",
     .default_note = "{\"inputs\": {{prompt}}}"},
    {"content_type", OPT_STRING, 0, "application/json", .help = "the request's Content-Type"},
    {"answer", OPT_STRING, 0, "", .help = "JSON pointer to the answer in the response, e.g. \"/predictions/0/label\"; "
                                          "\"\": the whole body", .check = check_pointer},
    {"headers", OPT_MAP, 0, NULL, .help = "HTTP headers, keys too: { [\"X-Api-Key\"] = secret(\"MODEL_KEY\") }",
     .value = OPT_VALUE(OPT_STRING, .secret = 1)},
    {"auth", OPT_NESTED, 0, NULL, .help = "how requests are signed",
     .fields = OPT_FIELDS({"sigv4", OPT_NESTED, 0, NULL,
                           .help = "AWS Signature Version 4 of every attempt, with the credentials of $AWS_ACCESS_KEY_ID, "
                                   "$AWS_SECRET_ACCESS_KEY and $AWS_SESSION_TOKEN",
                           .fields = OPT_FIELDS({"region", OPT_STRING, 0, NULL, .help = "AWS region, e.g. \"us-east-1\"",
                                                 .default_note = "$AWS_REGION, $AWS_DEFAULT_REGION",
                                                 .check = common_check_path_name},
                                                {"service", OPT_STRING, 1, NULL,
                                                 .help = "the service signed for, e.g. \"sagemaker\"",
                                                 .check = common_check_path_name},
                                                {"access_key_id", OPT_STRING, 0, NULL, .help = "AWS access key id",
                                                 .default_note = "$AWS_ACCESS_KEY_ID", .secret = 1},
                                                {"secret_access_key", OPT_STRING, 0, NULL,
                                                 .help = "AWS secret access key; never printed or logged",
                                                 .default_note = "$AWS_SECRET_ACCESS_KEY", .secret = 1},
                                                {"session_token", OPT_STRING, 0, NULL,
                                                 .help = "AWS session token (temporary credentials)",
                                                 .default_note = "$AWS_SESSION_TOKEN", .secret = 1})})},
    MODEL_TASK_OPTIONS,
    {"prompt", OPT_STRING_OR_FUNCTION, 0, "", .help = "template with {{field}} placeholders, or function(record) -> "
                                                      "string: {{prompt}} in body"},
    MODEL_ANSWER_OPTIONS,
    HTTP_TRANSPORT_OPTIONS,
    {NULL},
};

/* One piece of the body template: literal text, or a placeholder (a field path, or the prompt). */
struct segment {
    const char *text;            /* into the template (held by the options table) */
    size_t len;
    int placeholder;
    int prompt;                  /* {{prompt}} */
    char **path;                 /* the field's names, a.b.c */
    size_t depth;
};

struct http_model {
    lua_State *L;
    char *url;
    const char *method;
    struct segment *segments;
    size_t segment_count;
    int body_ref;                /* body = function: its registry ref; LUA_NOREF otherwise */
    int json_body;
    int embedding;
    char *pointer;               /* the answer's JSON pointer; "" for the whole body */
    struct header_list headers;
    struct sigv4_signer *signer; /* auth.sigv4, or NULL */
};

/* auth.sigv4: what every attempt is signed with. The keys are owned copies, wiped at close. */
struct sigv4_signer {
    char *host;                  /* as curl sends it in Host */
    char *path, *query;          /* of the URL, as sent (query NULL when none) */
    char *content_type;
    char *region, *service;
    char *access_key, *secret_key, *session_token;
    time_t fixed_time;
    struct buf authorization;    /* made per attempt */
};

static void signer_free(struct sigv4_signer *g)
{
    if (!g) return;
    free(g->host);
    free(g->path);
    free(g->query);
    free(g->content_type);
    free(g->region);
    free(g->service);
    secret_free(g->access_key);
    secret_free(g->secret_key);
    secret_free(g->session_token);
    if (g->authorization.data) explicit_bzero(g->authorization.data, g->authorization.cap);
    buf_free(&g->authorization);
    free(g);
}

/* Read auth.sigv4 (of the options table at opts) into p->signer, for p->url: 0 (p->signer NULL
 * when there is none), or -1 and err naming the option or variable at fault. */
static int signer_open(struct http_model *p, lua_State *L, int opts, const char *content_type,
                       const struct provider_setup *setup, struct rn_err *err)
{
    if (!opt_push(L, opts, "auth")) return 0;
    if (!opt_push(L, -1, "sigv4")) {
        lua_pop(L, 1);
        return 0;
    }
    int sigv4 = lua_gettop(L);
    const char *region = opt_string(L, sigv4, "region", NULL), *service = opt_string(L, sigv4, "service", NULL);
    struct sigv4_signer *g = rn_calloc(1, sizeof *g);
    buf_init(&g->authorization);
    p->signer = g;
    g->fixed_time = setup->fixed_time;
    if (!region || !*region) region = getenv("AWS_REGION");
    if (!region || !*region) region = getenv("AWS_DEFAULT_REGION");
    g->region = region && *region ? rn_strdup(region) : NULL;
    g->service = service ? rn_strdup(service) : NULL;
    int failed = 0;
    const char *key_id = common_credential(L, sigv4, "access_key_id", "AWS_ACCESS_KEY_ID", "auth.sigv4.", setup->secrets, &failed, err);
    const char *secret = failed ? NULL : common_credential(L, sigv4, "secret_access_key", "AWS_SECRET_ACCESS_KEY", "auth.sigv4.", setup->secrets, &failed,
                                                          err);
    const char *token = failed ? NULL : common_credential(L, sigv4, "session_token", "AWS_SESSION_TOKEN", "auth.sigv4.", setup->secrets, &failed, err);
    if (!failed && key_id && secret) {
        g->access_key = rn_strdup(key_id);
        g->secret_key = rn_strdup(secret);
        if (token) g->session_token = rn_strdup(token);
    }
    lua_pop(L, 2);
    if (failed) return -1;
    if (!g->region) return rn_fail(err, "auth.sigv4.region: give the AWS region (region = \"us-east-1\", or set AWS_REGION)");
    if (common_has_control(g->region) || strchr(g->region, '/'))
        return rn_fail(err, "auth.sigv4.region: \"%.40s\" is not a region name", g->region);
    if (!g->service) return rn_fail(err, "auth.sigv4.service: give the service, e.g. service = \"sagemaker\"");
    if (!g->secret_key)
        return rn_fail(err, "auth.sigv4: no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or give "
                            "access_key_id and secret_access_key)");
    g->content_type = rn_strdup(content_type);
    /* host[:port] as curl sends it (no default port), the path and the query */
    const char *authority = strstr(p->url, "://") + 3;
    size_t host_len = strcspn(authority, "/?#");
    const char *default_port = strncmp(p->url, "https", 5) == 0 ? ":443" : ":80";
    size_t port_len = strlen(default_port);
    if (host_len > port_len && strncmp(authority + host_len - port_len, default_port, port_len) == 0) host_len -= port_len;
    g->host = rn_strndup(authority, host_len);
    const char *rest = authority + strcspn(authority, "/?#");
    size_t path_len = strcspn(rest, "?#");
    g->path = path_len ? rn_strndup(rest, path_len) : rn_strdup("/");
    if (rest[path_len] == '?') g->query = rn_strndup(rest + path_len + 1, strcspn(rest + path_len + 1, "#"));
    return 0;
}

static void http_close(void *self)
{
    struct http_model *p = self;
    if (!p) return;
    for (size_t i = 0; i < p->segment_count; i++) {
        for (size_t k = 0; k < p->segments[i].depth; k++) free(p->segments[i].path[k]);
        free(p->segments[i].path);
    }
    free(p->segments);
    if (p->body_ref != LUA_NOREF) luaL_unref(p->L, LUA_REGISTRYINDEX, p->body_ref);
    free(p->url);
    free(p->pointer);
    header_list_free(&p->headers);
    signer_free(p->signer);
    free(p);
}

static struct segment *add_segment(struct http_model *p)
{
    p->segments = rn_realloc(p->segments, (p->segment_count + 1) * sizeof *p->segments);
    struct segment *s = &p->segments[p->segment_count++];
    memset(s, 0, sizeof *s);
    return s;
}

/* The template's grammar is prompt.h's: {{name}} (spaces ignored, dots walk tables) and {{{{
 * for a literal "{{". */
static int parse_template(struct http_model *p, const char *t, struct rn_err *err)
{
    const char *text = t;
    for (const char *c = t; *c;) {
        if (c[0] != '{' || c[1] != '{') { c++; continue; }
        if (c > text) *add_segment(p) = (struct segment){.text = text, .len = (size_t)(c - text)};
        if (c[2] == '{' && c[3] == '{') { /* {{{{ is a literal {{ */
            *add_segment(p) = (struct segment){.text = c, .len = 2};
            text = c = c + 4;
            continue;
        }
        const char *close = strstr(c + 2, "}}");
        if (!close) return rn_fail(err, "body: unclosed {{ at byte %zu", (size_t)(c - t));
        const char *a = c + 2, *b = close;
        while (a < b && *a == ' ') a++;
        while (b > a && b[-1] == ' ') b--;
        if (a == b || memchr(a, '{', (size_t)(b - a)) || memchr(a, '\n', (size_t)(b - a)))
            return rn_fail(err, "body: bad placeholder at byte %zu: {{name}}, the name without braces or line breaks",
                           (size_t)(c - t));
        struct segment *s = add_segment(p);
        s->placeholder = 1;
        s->prompt = b - a == 6 && memcmp(a, "prompt", 6) == 0;
        for (const char *name = a; !s->prompt && name < b;) {
            const char *dot = memchr(name, '.', (size_t)(b - name));
            const char *end = dot ? dot : b;
            if (end == name) return rn_fail(err, "body: an empty name in the placeholder at byte %zu", (size_t)(c - t));
            s->path = rn_realloc(s->path, (s->depth + 1) * sizeof *s->path);
            s->path[s->depth++] = rn_strndup(name, (size_t)(end - name));
            name = dot ? dot + 1 : b;
        }
        text = c = close + 2;
    }
    if (*text) *add_segment(p) = (struct segment){.text = text, .len = strlen(text)};
    return 0;
}

static void *http_open(struct job_env *env, int opts, const struct provider_setup *setup, struct rn_err *err)
{
    lua_State *L = env->L;
    opts = lua_absindex(L, opts);
    struct http_model *p = rn_calloc(1, sizeof *p);
    p->L = L;
    p->body_ref = LUA_NOREF;
    p->url = rn_strdup(opt_string(L, opts, "url", ""));
    p->method = strcmp(opt_string(L, opts, "method", "POST"), "PUT") == 0 ? "PUT" : "POST";
    p->pointer = rn_strdup(opt_string(L, opts, "answer", ""));
    p->embedding = setup->task == MODEL_TASK_EMBEDDING;
    const char *content_type = opt_string(L, opts, "content_type", "application/json");
    p->json_body = strcasestr(content_type, "json") != NULL;
    if (common_has_control(content_type)) {
        rn_fail(err, "content_type: holds a control character");
        goto fail;
    }
    lua_getfield(L, opts, "body");
    if (lua_type(L, -1) == LUA_TFUNCTION) {
        p->body_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    } else {
        const char *body = lua_tostring(L, -1);
        lua_pop(L, 1);
        if (body && parse_template(p, body, err)) goto fail;
        if (!body && !p->json_body) {
            rn_fail(err, "body: give the body (a template or a function) for content_type %s", content_type);
            goto fail;
        }
    }
    header_list_add(&p->headers, "Content-Type", content_type);
    header_list_add_line(&p->headers, "Expect:");
    if (signer_open(p, L, opts, content_type, setup, err)) goto fail;
    static const char *const signed_headers[] = {"authorization", "x-amz-date", "x-amz-security-token", "host", NULL};
    if (common_read_headers(&p->headers, L, opts, p->signer ? signed_headers : NULL, "auth.sigv4", err) ||
        header_list_check(&p->headers, err))
        goto fail;
    return p;
fail:
    http_close(p);
    return NULL;
}

/* The value of a placeholder's field on the record at the top of the stack, pushed; -1 and err
 * when a name on the way is missing. */
static int push_field(lua_State *L, const struct segment *s, struct rn_err *err)
{
    lua_pushvalue(L, -1);
    for (size_t k = 0; k < s->depth; k++) {
        if (lua_type(L, -1) != LUA_TTABLE) {
            lua_pop(L, 1);
            return rn_fail(err, "body: field '%s' is not a table", s->path[k - 1]);
        }
        lua_getfield(L, -1, s->path[k]);
        lua_remove(L, -2);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            return rn_fail(err, "body: field '%s' is missing", s->path[k]);
        }
    }
    return 0;
}

static int render_template(struct http_model *p, const struct model_call *call, struct buf *b, struct rn_err *err)
{
    lua_State *L = p->L;
    int top = lua_gettop(L);
    if (call->record_ref != LUA_NOREF) lua_rawgeti(L, LUA_REGISTRYINDEX, call->record_ref);
    else lua_newtable(L);
    int rc = 0;
    for (size_t i = 0; i < p->segment_count && !rc; i++) {
        const struct segment *s = &p->segments[i];
        if (!s->placeholder) {
            buf_put(b, s->text, s->len);
        } else if (s->prompt) {
            if (p->json_body) buf_put_json_string(b, call->prompt, call->prompt_len);
            else buf_put(b, call->prompt, call->prompt_len);
        } else if ((rc = push_field(L, s, err)) == 0) {
            if (p->json_body) {
                rc = json_encode(L, -1, LUA_NOREF, b, err);
            } else if (lua_type(L, -1) == LUA_TBOOLEAN) {
                buf_puts(b, lua_toboolean(L, -1) ? "true" : "false");
            } else if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER) {
                size_t n;
                const char *v = luaL_tolstring(L, -1, &n);
                buf_put(b, v, n);
                lua_pop(L, 1);
            } else {
                rc = rn_fail(err, "body: field '%s' is a %s: a string, number or boolean goes into a text body",
                             s->path[s->depth - 1], luaL_typename(L, -1));
            }
            lua_pop(L, 1);
        }
    }
    lua_settop(L, top);
    return rc;
}

static int render_function(struct http_model *p, const struct model_call *call, struct buf *b, struct rn_err *err)
{
    lua_State *L = p->L;
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->body_ref);
    if (call->record_ref != LUA_NOREF) lua_rawgeti(L, LUA_REGISTRYINDEX, call->record_ref);
    else lua_newtable(L);
    lua_pushlstring(L, call->prompt, call->prompt_len);
    if (luajob_call(L, 2, 1, err)) {
        lua_settop(L, top);
        return rn_wrap(err, "body");
    }
    int rc = 0, type = lua_type(L, -1);
    if (type == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, -1, &n);
        buf_put(b, s, n);
    } else if (type == LUA_TTABLE) {
        rc = json_encode(L, -1, LUA_NOREF, b, err);
        if (rc) rn_wrap(err, "body");
    } else {
        rc = rn_fail(err, "body: the function returned a %s, not a string or a table", luaL_typename(L, -1));
    }
    lua_settop(L, top);
    return rc;
}

static int http_build(void *self, const struct model_call *call, struct http_request *req, struct rn_err *err)
{
    struct http_model *p = self;
    req->method = p->method;
    req->headers = p->headers.lines;
    buf_puts(&req->url, p->url);
    if (p->body_ref != LUA_NOREF) return render_function(p, call, &req->body, err);
    if (p->segment_count) return render_template(p, call, &req->body, err);
    buf_puts(&req->body, "{\"inputs\":"); /* Hugging Face's and SageMaker's containers take this */
    buf_put_json_string(&req->body, call->prompt, call->prompt_len);
    buf_putc(&req->body, '}');
    return 0;
}

static void http_classify(void *self, const struct http_response *a, struct provider_verdict *v)
{
    (void)self;
    provider_classify_default(a, v);
    if (a->status == 401 || a->status == 403) {
        v->outcome = PROVIDER_FAIL_JOB;
        v->why = "the model's endpoint refused the credentials (headers): no record can succeed";
    }
}

/* RFC 6901: the value at pointer in root, or NULL. */
static json_t *resolve(json_t *root, const char *pointer, struct buf *scratch)
{
    json_t *at = root;
    const char *p = pointer;
    while (at && *p == '/') {
        p++;
        buf_clear(scratch);
        for (; *p && *p != '/'; p++) {
            if (*p == '~' && p[1] == '0') { buf_putc(scratch, '~'); p++; }
            else if (*p == '~' && p[1] == '1') { buf_putc(scratch, '/'); p++; }
            else buf_putc(scratch, *p);
        }
        const char *token = scratch->data ? scratch->data : "";
        if (json_is_object(at)) {
            at = json_object_get(at, token);
        } else if (json_is_array(at)) {
            char *end;
            unsigned long long index = strtoull(token, &end, 10);
            at = *token && *end == '\0' && (token[0] != '0' || !token[1]) ? json_array_get(at, (size_t)index) : NULL;
        } else {
            at = NULL;
        }
    }
    return at;
}

static int http_parse(void *self, const struct http_response *answer, struct model_reply *reply, struct rn_err *err)
{
    struct http_model *p = self;
    json_error_t jerr;
    json_t *root = json_loadb(answer->body, answer->body_len, JSON_DECODE_ANY, &jerr);
    if (!root) {
        if (!*p->pointer && !p->embedding) { /* a text answer: the whole body */
            buf_put(&reply->text, answer->body, answer->body_len);
            return 0;
        }
        return rn_fail(err, "the answer is not JSON (%s at line %d, column %d)", jerr.text, jerr.line, jerr.column);
    }
    struct buf scratch;
    buf_init(&scratch);
    json_t *value = resolve(root, p->pointer, &scratch);
    buf_free(&scratch);
    int rc = 0;
    if (!value || json_is_null(value)) {
        rc = rn_fail(err, "the answer has nothing at %s (the answer option's JSON pointer)", *p->pointer ? p->pointer : "\"\"");
    } else if (p->embedding) {
        if (json_is_array(value)) reply->vector = json_incref(value);
        else rc = rn_fail(err, "the answer at %s is not a vector of numbers", *p->pointer ? p->pointer : "\"\"");
    } else if (json_is_string(value)) {
        buf_put(&reply->text, json_string_value(value), json_string_length(value));
    } else if (json_is_integer(value)) {
        buf_printf(&reply->text, "%lld", (long long)json_integer_value(value));
    } else if (json_is_real(value)) {
        char number[RN_DOUBLE_MAX];
        buf_put(&reply->text, number, (size_t)rn_format_double(number, json_real_value(value)));
    } else if (json_is_boolean(value)) {
        buf_puts(&reply->text, json_is_true(value) ? "true" : "false");
    } else { /* an object (several output fields) or a list: its JSON, checked against output */
        char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
        if (text) buf_puts(&reply->text, text);
        free(text);
    }
    json_decref(root);
    return rc;
}

static const char *const http_secrets[] = {"headers", NULL};

/* auth.sigv4: sign this attempt at the current time; nothing without it. */
static int http_authorize(void *self, struct http_request *req, struct rn_err *err)
{
    struct http_model *p = self;
    struct sigv4_signer *g = p->signer;
    if (!g) return 0;
    struct common_sigv4 a = {g->content_type, g->host, g->path, g->query, g->session_token,
                             {g->access_key, g->secret_key, g->region, g->service}, g->fixed_time};
    return common_sigv4_authorize(req, &a, &g->authorization, err);
}

const struct provider_ops http_provider = {
    .version = PROVIDER_INTERFACE_VERSION,
    .name = "http",
    .summary = "any model behind HTTP: the body a template or Lua function, the answer picked by a JSON pointer",
    .options = http_options,
    .capabilities = PROVIDER_CHAT | PROVIDER_EMBEDDINGS | PROVIDER_PREDICT,
    .model_option = "url",
    .secret_options = http_secrets,
    .open = http_open,
    .build = http_build,
    .authorize = http_authorize,
    .classify = http_classify,
    .parse = http_parse,
    .close = http_close,
};
