/* common.h: what the provider files share (runtime/models/providers/ only): the header list a
 * provider keeps for every request (its lines may hold a key: wiped when freed), the `headers`
 * and key options, URL options, request fields from `parameters`, numbers in JSON. Nothing here
 * knows a provider's wire format. */
#ifndef RUNNEL_PROVIDERS_COMMON_H
#define RUNNEL_PROVIDERS_COMMON_H

#include <curl/curl.h>
#include <jansson.h>
#include <lua.h>

#include "core/sigv4.h"
#include "models/model.h"

/* Header lines sent with every request of a provider (lent to each call as req->headers). */
struct header_list {
    struct curl_slist *lines;
    int failed;                /* curl could not copy one (out of memory) */
};

/* Add "name: value" (copied by curl; the temporary line is wiped). */
void header_list_add(struct header_list *h, const char *name, const char *value);
/* Add a line as it is ("Expect:" with no value: curl then sends no Expect header). */
void header_list_add_line(struct header_list *h, const char *line);
/* Add "Name: PREFIXvalue" for a credential ("Bearer ", ""), wiping every copy made on the way. */
void header_list_add_secret(struct header_list *h, const char *name, const char *prefix, const char *value);
/* 0, or -1 and err when a line could not be added. */
int header_list_check(const struct header_list *h, struct rn_err *err);
/* Wipe and free every line. */
void header_list_free(struct header_list *h);

int common_has_control(const char *s);

/* The `headers` option (a map of names to strings or secrets) added to h. Refused: invalid
 * names, values with control characters, Content-Type (runnel sets it) and the names in
 * reserved (NULL-terminated, any case), which `owner` sets ("api_key sets it already"). */
int common_read_headers(struct header_list *h, lua_State *L, int opts, const char *const *reserved, const char *owner,
                        struct rn_err *err);

/* The key option `name` (a string or secret()): *value points into the Lua state, NULL when
 * the option is absent or an empty string. An empty secret (its variable unset) or a value with
 * a control character fails, naming the option. */
int common_read_key(lua_State *L, int opts, const char *name, const char **value, struct rn_err *err);

/* An AWS credential: the key option `option` of the table at tbl (a string or secret()), else
 * the environment variable; added to secrets (when not NULL) so no message shows it. NULL when
 * neither is set; *failed set and err (the option named after prefix: "", "auth.sigv4.") when
 * it cannot be read. The string lives in the Lua state or the environment. */
struct secret_set;
const char *common_credential(lua_State *L, int tbl, const char *option, const char *variable, const char *prefix,
                              struct secret_set *secrets, int *failed, struct rn_err *err);

/* The option check of an http(s) URL without spaces or control characters. */
int common_check_url(lua_State *L, int idx, struct rn_err *err);
/* The option check of a name that goes into a URL path as it is (a deployment, a region, a
 * project): letters, digits, '-', '_', '.', and ':' when allow_colon. */
int common_check_path_name(lua_State *L, int idx, struct rn_err *err);
/* A URL's length without its trailing slashes (never into "https://"). */
size_t common_url_len(const char *url);

/* Fields of `parameters = {...}` a provider refuses, with why ("runnel writes it"). */
struct reserved_field {
    const char *name, *why;
};
/* `parameters` appended to out as ,"k":v,... (nothing when absent). -1 and err naming the
 * field when one is reserved or the table is not an object of named fields. */
int common_read_parameters(lua_State *L, int opts, const struct reserved_field *reserved, size_t reserved_count,
                           struct buf *out, struct rn_err *err);

/* One message of a conversation in a provider's shape ({"role":..,"content":..} and the like),
 * appended to b. */
typedef void common_put_message_fn(struct buf *b, const char *role, const char *text, size_t len);
/* The turns of a call, comma-separated, each written by put: the prompt (role "user"); on the
 * retry after an invalid answer, then the previous answer (assistant_role; no_answer stands for
 * a missing or empty one) and the correction ("user"). */
void common_put_turns(struct buf *b, const struct model_call *call, common_put_message_fn *put,
                      const char *assistant_role, const char *no_answer);

void common_put_number(struct buf *b, double v);
/* usage[name] when it is a positive integer, else 0. */
int64_t common_usage(json_t *usage, const char *name);
/* The text of {"error": {"message": ...}} or {"message": ...} in a JSON body, or NULL (the
 * string lives as long as root). */
const char *common_error_message(json_t *root);

/* An AWS SigV4 signature for this attempt of req (model.bedrock, model.http's auth.sigv4): the
 * signed headers content-type, host, x-amz-date and, with a session token, x-amz-security-token;
 * X-Amz-Date, X-Amz-Security-Token and Authorization added to req. scratch holds the signature. */
struct common_sigv4 {
    const char *content_type, *host, *path, *query, *session_token;
    struct sigv4_credentials cred;
    time_t fixed_time; /* a test's clock; 0: now */
};
int common_sigv4_authorize(struct http_request *req, const struct common_sigv4 *a, struct buf *scratch, struct rn_err *err);

#endif
