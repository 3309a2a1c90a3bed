/* common.c: the helpers the provider files share (see common.h). */
#include "models/providers/common.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/http.h"
#include "core/secret.h"
#include "formats/json.h"
#include "lua/job.h"

void header_list_add_line(struct header_list *h, const char *line)
{
    struct curl_slist *next = curl_slist_append(h->lines, line);
    if (next) h->lines = next;
    else h->failed = 1;
}

void header_list_add(struct header_list *h, const char *name, const char *value)
{
    struct buf line;
    buf_init(&line);
    buf_printf(&line, "%s: %s", name, value);
    header_list_add_line(h, line.data);
    explicit_bzero(line.data, line.len);
    buf_free(&line);
}

void header_list_add_secret(struct header_list *h, const char *name, const char *prefix, const char *value)
{
    struct buf v;
    buf_init(&v);
    buf_printf(&v, "%s%s", prefix, value);
    header_list_add(h, name, v.data);
    explicit_bzero(v.data, v.len);
    buf_free(&v);
}

int header_list_check(const struct header_list *h, struct rn_err *err)
{
    return h->failed ? rn_fail(err, "out of memory for request headers") : 0;
}

void header_list_free(struct header_list *h)
{
    for (struct curl_slist *l = h->lines; l; l = l->next) explicit_bzero(l->data, strlen(l->data));
    curl_slist_free_all(h->lines);
    h->lines = NULL;
}

int common_has_control(const char *s)
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

int common_read_headers(struct header_list *h, lua_State *L, int opts, const char *const *reserved, const char *owner,
                        struct rn_err *err)
{
    if (!opt_push(L, opts, "headers")) return 0;
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        const char *name = lua_tostring(L, -2); /* names to strings or secrets: checked */
        const char *value = luajob_secret_value(L, -1);
        int rc = 0;
        if (!valid_header_name(name)) rc = rn_fail(err, "headers: '%s' is not a valid header name", name);
        else if (common_has_control(value)) rc = rn_fail(err, "headers.%s: the value holds a line break or control character", name);
        else if (strcasecmp(name, "content-type") == 0) rc = rn_fail(err, "headers.%s: set by runnel (application/json)", name);
        for (const char *const *r = reserved; !rc && r && *r; r++)
            if (strcasecmp(name, *r) == 0) rc = rn_fail(err, "headers.%s: %s sets it already; give one of the two", name, owner);
        if (!rc) header_list_add(h, name, value);
        lua_pop(L, 1);
        if (rc) {
            lua_pop(L, 2);
            return -1;
        }
    }
    lua_pop(L, 1);
    return 0;
}

int common_read_key(lua_State *L, int opts, const char *name, const char **value, struct rn_err *err)
{
    *value = NULL;
    if (!opt_push(L, opts, name)) return 0;
    const char *key = luajob_secret_value(L, -1); /* a string or a secret: checked; the table holds it */
    int is_secret = lua_type(L, -1) == LUA_TUSERDATA;
    if (!key || common_has_control(key)) {
        lua_pop(L, 1);
        return rn_fail(err, key ? "%s: holds a line break or control character" : "%s: give a string or secret(\"NAME\")", name);
    }
    if (is_secret && !*key) {
        const char *variable = luajob_secret_name(L, -1);
        lua_pop(L, 1);
        return rn_fail(err, "%s: secret(\"%s\") is empty: set the environment variable %s, or %s_FILE to a file "
                            "that holds the key", name, variable, variable, variable);
    }
    lua_pop(L, 1);
    if (*key) *value = key;
    return 0;
}

const char *common_credential(lua_State *L, int tbl, const char *option, const char *variable, const char *prefix,
                              struct secret_set *secrets, int *failed, struct rn_err *err)
{
    const char *value;
    if (common_read_key(L, tbl, option, &value, err)) {
        *failed = 1;
        return NULL;
    }
    if (!value) value = getenv(variable);
    if (!value || !*value) return NULL;
    if (common_has_control(value)) {
        rn_fail(err, "%s%s: $%s holds a control character", prefix, option, variable);
        *failed = 1;
        return NULL;
    }
    if (secrets) secret_set_add(secrets, value);
    return value;
}

int common_check_url(lua_State *L, int idx, struct rn_err *err)
{
    const char *url = lua_tostring(L, idx);
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
        return rn_fail(err, "\"%.200s\" must start with http:// or https://", url);
    if (common_has_control(url) || strchr(url, ' ')) return rn_fail(err, "holds spaces or control characters");
    return 0;
}

int common_check_path_name(lua_State *L, int idx, struct rn_err *err)
{
    const char *s = lua_tostring(L, idx);
    if (!*s) return rn_fail(err, "is empty");
    for (const char *p = s; *p; p++)
        if (!(((*p | 32) >= 'a' && (*p | 32) <= 'z') || (*p >= '0' && *p <= '9') || strchr("-_.:", *p)))
            return rn_fail(err, "\"%.100s\": letters, digits, '-', '_', '.' and ':' only", s);
    return 0;
}

size_t common_url_len(const char *url)
{
    size_t n = strlen(url);
    while (n > 8 && url[n - 1] == '/') n--;
    return n;
}

int common_read_parameters(lua_State *L, int opts, const struct reserved_field *reserved, size_t reserved_count,
                           struct buf *out, struct rn_err *err)
{
    if (!opt_push(L, opts, "parameters")) return 0;
    int tbl = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, tbl)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) {
            lua_pop(L, 2);
            return rn_fail(err, "parameters: name each field: parameters = { name = value }");
        }
        const char *key = lua_tostring(L, -1);
        for (size_t i = 0; i < reserved_count; i++) {
            if (strcmp(key, reserved[i].name) != 0) continue;
            rn_fail(err, "parameters.%s: %s", key, reserved[i].why);
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
        buf_putc(out, ',');
        buf_put(out, json.data + 1, json.len - 2);
    }
    buf_free(&json);
    return 0;
}

void common_put_turns(struct buf *b, const struct model_call *call, common_put_message_fn *put,
                      const char *assistant_role, const char *no_answer)
{
    put(b, "user", call->prompt, call->prompt_len);
    if (!call->correction) return;
    const char *previous = call->previous_answer && *call->previous_answer ? call->previous_answer : no_answer;
    buf_putc(b, ',');
    put(b, assistant_role, previous, strlen(previous));
    buf_putc(b, ',');
    put(b, "user", call->correction, strlen(call->correction));
}

void common_put_number(struct buf *b, double v)
{
    char tmp[RN_DOUBLE_MAX];
    buf_put(b, tmp, (size_t)rn_format_double(tmp, v));
}

int64_t common_usage(json_t *usage, const char *name)
{
    json_t *v = json_object_get(usage, name);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (int64_t)json_integer_value(v) : 0;
}

const char *common_error_message(json_t *root)
{
    json_t *error = json_object_get(root, "error");
    const char *message = json_string_value(json_object_get(error, "message"));
    if (!message) message = json_string_value(error); /* Ollama: {"error": "text"} */
    if (!message) message = json_string_value(json_object_get(root, "message")); /* AWS */
    if (!message) message = json_string_value(json_object_get(root, "Message"));
    return message;
}

int common_sigv4_authorize(struct http_request *req, const struct common_sigv4 *a, struct buf *scratch, struct rn_err *err)
{
    char date[17];
    sigv4_amz_date(a->fixed_time ? a->fixed_time : time(NULL), date);
    struct sigv4_header signed_headers[4] = {
        {"content-type", a->content_type}, {"host", a->host}, {"x-amz-date", date}, {"x-amz-security-token", a->session_token},
    };
    struct sigv4_request r = {req->method, a->path, a->query, signed_headers, a->session_token ? 4 : 3,
                              req->body.data ? req->body.data : "", req->body.len};
    buf_clear(scratch);
    if (sigv4_sign(&r, &a->cred, date, scratch, NULL, NULL, err)) return -1;
    http_request_add_header(req, "X-Amz-Date", date);
    if (a->session_token) http_request_add_header(req, "X-Amz-Security-Token", a->session_token);
    http_request_add_header(req, "Authorization", scratch->data);
    return 0;
}
