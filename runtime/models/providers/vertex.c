/* vertex.c: the Vertex AI provider, model.vertex{}: Gemini models' generateContent (and
 * :predict for embeddings) at {location}-aiplatform.googleapis.com, in Google's wire format
 * (google_wire.c), with an OAuth bearer token.
 *
 * The token is given (token = secret(...)) or made from a service-account key file
 * (credentials = "key.json", or $GOOGLE_APPLICATION_CREDENTIALS): a JWT signed RS256
 * (core/jwt) is exchanged at the key's token_uri (grant_type jwt-bearer). The exchange never
 * blocks the job: refresh hands the engine the request, which it sends on the job's own HTTP
 * client beside the calls, and refreshed keeps the token. The first calls wait for the first
 * token; later ones never do, because a new token is fetched when a quarter of the old one's
 * lifetime (at most 5 minutes) is left. A failing token endpoint is asked again with backoff;
 * after 5 failures in a row, or when it refuses the key, the job stops. */
#include "models/providers/google_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/http.h"
#include "core/jwt.h"
#include "core/secret.h"
#include "models/providers/common.h"

#define SCOPE "https://www.googleapis.com/auth/cloud-platform"
#define TOKEN_URI "https://oauth2.googleapis.com/token"
#define ASSERTION_SECONDS 3600      /* the JWT's lifetime, Google's maximum */
#define REFRESH_AHEAD_MAX_MS 300000 /* refresh at most this long before the token expires */
#define REFRESH_FAILURES_MAX 5
#define FRESH_TOKEN_MS 60000        /* a token refused this soon after it came will not heal */

static const struct option_spec vertex_options[] = {
    {"project", OPT_STRING, 1, NULL, .help = "the Google Cloud project id", .check = common_check_path_name},
    {"location", OPT_STRING, 0, "us-central1", .help = "the region (or \"global\")", .check = common_check_path_name},
    {"endpoint", OPT_STRING, 0, NULL, .help = "base URL", .default_note = "https://LOCATION-aiplatform.googleapis.com/v1",
     .check = common_check_url},
    {"model", OPT_STRING, 1, NULL, .help = "a publisher model, e.g. \"gemini-2.0-flash\" or \"text-embedding-005\"",
     .check = common_check_path_name},
    {"token", OPT_STRING, 0, NULL, .help = "an OAuth access token (gcloud auth print-access-token), sent as a bearer",
     .secret = 1},
    {"credentials", OPT_STRING, 0, NULL, .help = "a service-account key file (JSON): tokens are made from it and refreshed",
     .default_note = "$GOOGLE_APPLICATION_CREDENTIALS"},
    {"scope", OPT_STRING, 0, SCOPE, .help = "the OAuth scope asked for with credentials"},
    GOOGLE_GENERATION_OPTIONS,
    {"headers", OPT_MAP, 0, NULL, .help = "extra HTTP headers: { [\"X-Name\"] = \"value\" or secret(...) }",
     .value = OPT_VALUE(OPT_STRING, .secret = 1)},
    MODEL_BATCH_INPUTS_OPTION("1", VERTEX_MAX_INPUTS), /* gemini-embedding-001 takes one instance a request */
    MODEL_COMMON_OPTIONS,
    {NULL},
};

/* The service-account flow's state; unused with a given token. */
struct account {
    char *email, *token_uri, *scope;
    char *private_key;           /* PEM; wiped at close, never in a message */
    char *token;                 /* the access token, or NULL */
    int64_t expires_ms;          /* on the engine's clock */
    int64_t refresh_ms;          /* when to fetch the next one */
    int64_t fetched_ms;
    int64_t retry_ms;            /* after a failed exchange: not before */
    int failures;                /* failed exchanges in a row */
};

struct vertex {
    char *url_generate, *url_embed;
    struct google_wire wire;
    struct header_list headers;  /* holds a given token */
    int flow;                    /* tokens come from a service-account key */
    struct account account;
    const struct provider_setup *setup; /* the clock, the engine's secrets (lent until close) */
    struct buf line;
};

static void vertex_close(void *self)
{
    struct vertex *p = self;
    if (!p) return;
    free(p->url_generate);
    free(p->url_embed);
    google_wire_free(&p->wire);
    header_list_free(&p->headers);
    free(p->account.email);
    free(p->account.token_uri);
    free(p->account.scope);
    secret_free(p->account.private_key);
    secret_free(p->account.token);
    if (p->line.data) explicit_bzero(p->line.data, p->line.cap);
    buf_free(&p->line);
    free(p);
}

/* Read the service-account key file: client_email, private_key, token_uri. Its contents never
 * reach a message (a JSON error names the line and column only). */
static int read_key_file(struct account *a, const char *path, struct rn_err *err)
{
    size_t len;
    char *text = rn_read_file(path, &len, err);
    if (!text) return rn_wrap(err, "credentials");
    json_error_t jerr;
    json_t *root = json_loadb(text, len, 0, &jerr);
    explicit_bzero(text, len);
    free(text);
    if (!root) return rn_fail(err, "credentials: %s: not JSON (line %d, column %d)", path, jerr.line, jerr.column);
    const char *type = json_string_value(json_object_get(root, "type"));
    const char *email = json_string_value(json_object_get(root, "client_email"));
    json_t *key = json_object_get(root, "private_key");
    const char *uri = json_string_value(json_object_get(root, "token_uri"));
    int rc = 0;
    if (type && strcmp(type, "service_account") != 0)
        rc = rn_fail(err, "credentials: %s: type \"%.40s\": give a service account key (type service_account)", path, type);
    else if (!email || !json_is_string(key))
        rc = rn_fail(err, "credentials: %s: no client_email or private_key: give a service account key file", path);
    else if (uri && strncmp(uri, "https://", 8) != 0 && strncmp(uri, "http://", 7) != 0)
        rc = rn_fail(err, "credentials: %s: token_uri \"%.100s\" is not an http(s) URL", path, uri);
    if (!rc) {
        a->email = rn_strdup(email);
        a->private_key = rn_strndup(json_string_value(key), json_string_length(key));
        a->token_uri = rn_strdup(uri ? uri : TOKEN_URI);
    }
    if (json_is_string(key)) explicit_bzero((char *)json_string_value(key), json_string_length(key));
    json_decref(root);
    return rc;
}

/* The signed JWT assertion for the token exchange, at the wall clock now, appended to out. */
static int put_assertion(const struct account *a, time_t now, struct buf *out, struct rn_err *err)
{
    struct buf claims;
    buf_init(&claims);
    buf_puts(&claims, "{\"iss\":");
    buf_put_json_string(&claims, a->email, strlen(a->email));
    buf_puts(&claims, ",\"scope\":");
    buf_put_json_string(&claims, a->scope, strlen(a->scope));
    buf_puts(&claims, ",\"aud\":");
    buf_put_json_string(&claims, a->token_uri, strlen(a->token_uri));
    buf_printf(&claims, ",\"iat\":%lld,\"exp\":%lld}", (long long)now, (long long)now + ASSERTION_SECONDS);
    int rc = jwt_sign_rs256(a->private_key, claims.data, out, err);
    buf_free(&claims);
    return rc;
}

static void *vertex_open(struct job_env *env, int opts, const struct provider_setup *setup, struct rn_err *err)
{
    lua_State *L = env->L;
    opts = lua_absindex(L, opts);
    struct vertex *p = rn_calloc(1, sizeof *p);
    p->setup = setup;
    buf_init(&p->line);
    const char *project = opt_string(L, opts, "project", NULL), *location = opt_string(L, opts, "location", "us-central1");
    const char *endpoint = opt_string(L, opts, "endpoint", NULL), *model = opt_string(L, opts, "model", NULL);
    const char *token, *credentials = opt_string(L, opts, "credentials", NULL);
    struct buf base, url;
    buf_init(&base);
    if (endpoint) buf_printf(&base, "%.*s", (int)common_url_len(endpoint), endpoint);
    else if (strcmp(location, "global") == 0) buf_puts(&base, "https://aiplatform.googleapis.com/v1");
    else buf_printf(&base, "https://%s-aiplatform.googleapis.com/v1", location);
    buf_init(&url);
    buf_printf(&url, "%s/projects/%s/locations/%s/publishers/google/models/%s:generateContent", base.data, project,
               location, model);
    p->url_generate = url.data;
    buf_init(&url);
    buf_printf(&url, "%s/projects/%s/locations/%s/publishers/google/models/%s:predict", base.data, project, location, model);
    p->url_embed = url.data;
    buf_free(&base);
    if (google_wire_open(&p->wire, L, opts, setup, GOOGLE_PREDICT, err)) goto fail;
    header_list_add(&p->headers, "Content-Type", "application/json");
    header_list_add_line(&p->headers, "Expect:");
    if (common_read_key(L, opts, "token", &token, err)) goto fail;
    if (token && credentials) {
        rn_fail(err, "credentials: give a token or a service-account key file, not both");
        goto fail;
    }
    if (!token && !credentials) credentials = getenv("GOOGLE_APPLICATION_CREDENTIALS");
    if (token) {
        header_list_add_secret(&p->headers, "Authorization", "Bearer ", token);
    } else if (credentials && *credentials) {
        const char *scope = opt_string(L, opts, "scope", SCOPE);
        if (common_has_control(scope)) {
            rn_fail(err, "scope: holds a control character");
            goto fail;
        }
        p->account.scope = rn_strdup(scope);
        if (read_key_file(&p->account, credentials, err)) goto fail;
        struct buf check; /* the key signs: found now, not at the first call */
        buf_init(&check);
        int rc = put_assertion(&p->account, provider_time(setup), &check, err);
        buf_free(&check);
        if (rc) {
            rn_wrap(err, "credentials: %s", credentials);
            goto fail;
        }
        p->flow = 1;
    } else {
        rn_fail(err, "token: give token = secret(\"VERTEX_TOKEN\") or credentials = \"key.json\" (a service account "
                     "key), or set GOOGLE_APPLICATION_CREDENTIALS");
        goto fail;
    }
    static const char *const reserved[] = {"authorization", NULL};
    if (common_read_headers(&p->headers, L, opts, reserved, token ? "token" : "credentials", err) ||
        header_list_check(&p->headers, err))
        goto fail;
    return p;
fail:
    vertex_close(p);
    return NULL;
}

static int vertex_build(void *self, const struct model_call *call, struct http_request *req, struct rn_err *err)
{
    (void)err;
    struct vertex *p = self;
    req->method = "POST";
    req->headers = p->headers.lines;
    buf_puts(&req->url, call->task == MODEL_TASK_EMBEDDING ? p->url_embed : p->url_generate);
    google_wire_body(&p->wire, call, &req->body);
    return 0;
}

/* Several records' inputs as the instances of one :predict. */
static int vertex_build_inputs(void *self, const struct model_call *const *calls, size_t n, struct http_request *req,
                               struct rn_err *err)
{
    (void)err;
    struct vertex *p = self;
    req->method = "POST";
    req->headers = p->headers.lines;
    buf_puts(&req->url, p->url_embed);
    google_wire_inputs_body(&p->wire, NULL, calls, n, &req->body);
    return 0;
}

static int vertex_parse_inputs(void *self, const struct http_response *answer, size_t n, json_t **vectors,
                               int64_t *tokens_in, struct rn_err *err)
{
    (void)self;
    return google_wire_parse_inputs(answer, n, vectors, tokens_in, err);
}

/* The token, while it has not expired; 1 (wait for refresh) otherwise. */
static int vertex_authorize(void *self, struct http_request *req, struct rn_err *err)
{
    (void)err;
    struct vertex *p = self;
    if (!p->flow) return 0; /* the given token is in the shared headers */
    struct account *a = &p->account;
    if (!a->token || rn_now_ms() >= a->expires_ms) return 1;
    buf_clear(&p->line);
    buf_printf(&p->line, "Bearer %s", a->token);
    http_request_add_header(req, "Authorization", p->line.data);
    explicit_bzero(p->line.data, p->line.len);
    return 0;
}

static int vertex_refresh(void *self, int64_t now_ms, struct http_request *req, struct rn_err *err)
{
    struct vertex *p = self;
    struct account *a = &p->account;
    if (!p->flow || (a->token && now_ms < a->refresh_ms) || now_ms < a->retry_ms) return 0;
    req->method = "POST";
    buf_puts(&req->url, a->token_uri);
    http_request_add_header(req, "Content-Type", "application/x-www-form-urlencoded");
    http_request_add_header(req, "Expect", "");
    buf_puts(&req->body, "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=");
    if (put_assertion(a, provider_time(p->setup), &req->body, err)) return -1; /* base64url and dots: no encoding */
    return 1;
}

/* error and error_description of an OAuth error body, for a message: "invalid_grant: ...". */
static void put_oauth_error(struct buf *b, const struct http_response *answer)
{
    json_t *root = json_loadb(answer->body, answer->body_len, 0, NULL);
    const char *error = json_string_value(json_object_get(root, "error"));
    const char *description = json_string_value(json_object_get(root, "error_description"));
    if (error) buf_printf(b, ": %.80s", error);
    if (description) buf_printf(b, ": %.200s", description);
    json_decref(root);
}

static int vertex_refreshed(void *self, const struct http_response *answer, const char *failure, int64_t now_ms,
                            struct rn_err *err)
{
    struct vertex *p = self;
    struct account *a = &p->account;
    long status = failure ? 0 : answer->status;
    if (status == 200) {
        json_t *root = json_loadb(answer->body, answer->body_len, 0, NULL);
        json_t *token = json_object_get(root, "access_token"), *expires = json_object_get(root, "expires_in");
        int rc = 0;
        if (!json_is_string(token) || !json_string_length(token) || !json_is_integer(expires) || json_integer_value(expires) <= 0 ||
            common_has_control(json_string_value(token))) {
            rc = rn_fail(err, "%s: HTTP 200 without an access_token and expires_in", a->token_uri);
        } else {
            secret_free(a->token);
            a->token = rn_strdup(json_string_value(token));
            if (p->setup->secrets) secret_set_add(p->setup->secrets, a->token);
            int64_t lifetime_ms = (int64_t)json_integer_value(expires) * 1000;
            int64_t ahead = lifetime_ms / 4 < REFRESH_AHEAD_MAX_MS ? lifetime_ms / 4 : REFRESH_AHEAD_MAX_MS;
            a->fetched_ms = now_ms;
            a->expires_ms = now_ms + lifetime_ms;
            a->refresh_ms = a->expires_ms - ahead;
            a->failures = 0;
            a->retry_ms = 0;
        }
        if (json_is_string(token)) explicit_bzero((char *)json_string_value(token), json_string_length(token));
        json_decref(root);
        return rc;
    }
    if (status == 0 || status == 408 || status == 429 || status >= 500) { /* may heal: ask again, later */
        if (++a->failures >= REFRESH_FAILURES_MAX) {
            if (status) return rn_fail(err, "%s: HTTP %ld %d times in a row", a->token_uri, status, a->failures);
            return rn_fail(err, "%s: %s (%d times in a row)", a->token_uri, failure, a->failures);
        }
        a->retry_ms = now_ms + (1000LL << (a->failures - 1));
        return 0;
    }
    struct buf why;
    buf_init(&why);
    put_oauth_error(&why, answer);
    rn_fail(err, "%s refused the service account key of %s (HTTP %ld%s)", a->token_uri, a->email, status,
            why.data ? why.data : "");
    buf_free(&why);
    return -1;
}

static void vertex_classify(void *self, const struct http_response *answer, struct provider_verdict *v)
{
    struct vertex *p = self;
    google_wire_classify(&p->wire, answer, v);
    struct account *a = &p->account;
    if (p->flow && answer->status == 401 && a->token) {
        if (rn_now_ms() - a->fetched_ms < FRESH_TOKEN_MS) {
            v->why = "Google refused a token just made from the service account key: no record can succeed";
            return;
        }
        /* an older token revoked or expired early: fetch another and try again */
        a->expires_ms = a->refresh_ms = 0;
        v->outcome = PROVIDER_RETRY;
        v->why = NULL;
        v->retry_after_ms = -1;
    } else if (!p->flow && answer->status == 401) {
        v->why = "Google refused the token (expired or revoked: tokens from gcloud last an hour; use credentials = "
                 "\"key.json\" for a long job): no record can succeed";
    }
}

static int vertex_parse(void *self, const struct http_response *answer, struct model_reply *reply, struct rn_err *err)
{
    (void)self;
    return google_wire_parse(answer, reply, err);
}

static const char *const vertex_secrets[] = {"token", "headers", NULL};

const struct provider_ops vertex_provider = {
    .version = PROVIDER_INTERFACE_VERSION,
    .name = "vertex",
    .summary = "Google Vertex AI: Gemini's generateContent and embeddings with an OAuth token (given, or from a service account)",
    .options = vertex_options,
    .capabilities = PROVIDER_CHAT | PROVIDER_EMBEDDINGS | PROVIDER_STRUCTURED,
    .model_option = "model",
    .secret_options = vertex_secrets,
    .open = vertex_open,
    .build = vertex_build,
    .authorize = vertex_authorize,
    .refresh = vertex_refresh,
    .refreshed = vertex_refreshed,
    .classify = vertex_classify,
    .parse = vertex_parse,
    .close = vertex_close,
    .max_inputs = VERTEX_MAX_INPUTS,
    .build_inputs = vertex_build_inputs,
    .parse_inputs = vertex_parse_inputs,
};
