/* model_server_google.c: Google's dialects of tools/model-server: the Gemini API
 * (/v1beta/models/{model}:generateContent and :embedContent, the key in x-goog-api-key or
 * ?key=, checked against --api-key), Vertex AI
 * (/v1/projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent and :predict,
 * a bearer token), and an OAuth token endpoint for Vertex's service-account flow.
 *
 * POST /token takes grant_type jwt-bearer and an assertion: a JWT whose RS256 signature is
 * checked with libcrypto against the public half of --google-key (a service-account key file),
 * whose iss must be the key's client_email, aud this endpoint's URL, scope cloud-platform, and
 * iat..exp at most an hour around now. It answers a token that lasts --token-lifetime seconds;
 * Vertex takes those tokens until they expire (or --api-key as a given token). GET
 * /token/stats counts exchanges, refused assertions and calls refused for their token. A rate
 * fault is 429 RESOURCE_EXHAUSTED with a RetryInfo, an overload 503 UNAVAILABLE; "[[safety]]"
 * in the text gets finishReason SAFETY. */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "model_server_dialect.h"

#define TOKENS_MAX 256

/* Tokens issued, and the counts of GET /token/stats; shared by the serving threads. */
static struct {
    pthread_mutex_t lock;
    struct { char value[96]; double expires; } tokens[TOKENS_MAX]; /* wall clock, in seconds */
    size_t count, next;
    unsigned long exchanges, refused, expired_calls;
    EVP_PKEY *key;             /* --google-key's, loaded at the first exchange */
    char email[256];
} google = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* The wall clock in seconds, to the microsecond: a token of 2 s lasts 2 s, not 1 to 2. */
static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static bool starts(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

static bool ends(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static bool google_match(const char *method, const char *url)
{
    (void)method;
    return starts(url, "/v1beta/models/") || starts(url, "/v1/projects/") || strcmp(url, "/token") == 0 ||
           strcmp(url, "/token/stats") == 0;
}

static bool google_model_call(const char *method, const char *url)
{
    return strcmp(method, "POST") == 0 && (ends(url, ":generateContent") || ends(url, ":embedContent") ||
                                           ends(url, ":batchEmbedContents") || ends(url, ":predict"));
}

static void google_error(struct dialect_answer *a, unsigned status, const char *state, const char *message)
{
    dialect_json(a, status, json_pack("{s:{s:i,s:s,s:s}}", "error", "code", (int)status, "message", message, "status", state));
}

/* ---- the token endpoint ---- */

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

/* base64url (no padding) of s[0..n) into out (at least n bytes); -1 when it is not. */
static long b64url_decode(const char *s, size_t n, unsigned char *out)
{
    long k = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value(s[i]);
        if (v < 0) return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[k++] = (unsigned char)(acc >> bits);
        }
    }
    return k;
}

/* Load --google-key's client_email and key, once. Called with the lock held. */
static bool load_key(const char *path)
{
    if (google.key) return true;
    json_t *root = path ? json_load_file(path, 0, NULL) : NULL;
    const char *pem = json_string_value(json_object_get(root, "private_key"));
    const char *email = json_string_value(json_object_get(root, "client_email"));
    BIO *bio = pem ? BIO_new_mem_buf(pem, -1) : NULL;
    google.key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (email) snprintf(google.email, sizeof google.email, "%s", email);
    json_decref(root);
    return google.key != NULL;
}

/* Why the assertion is not good, or NULL when it is. */
static const char *check_assertion(const char *jwt, const char *audience, const char *key_path)
{
    const char *dot1 = strchr(jwt, '.'), *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    if (!dot2) return "Invalid JWT: not three parts.";
    size_t n = strlen(jwt);
    unsigned char *header = malloc(n), *claims_text = malloc(n + 1), *signature = malloc(n);
    const char *why = NULL;
    long header_len = b64url_decode(jwt, (size_t)(dot1 - jwt), header);
    long claims_len = b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), claims_text);
    long signature_len = b64url_decode(dot2 + 1, strlen(dot2 + 1), signature);
    json_t *head = header_len > 0 ? json_loadb((const char *)header, (size_t)header_len, 0, NULL) : NULL;
    json_t *claims = claims_len > 0 ? json_loadb((const char *)claims_text, (size_t)claims_len, 0, NULL) : NULL;
    const char *alg = json_string_value(json_object_get(head, "alg"));
    if (!head || !claims || signature_len <= 0) why = "Invalid JWT: not base64url JSON.";
    else if (!alg || strcmp(alg, "RS256") != 0) why = "Invalid JWT: alg must be RS256.";
    pthread_mutex_lock(&google.lock);
    if (!why && !load_key(key_path)) why = "The server has no service account key (--google-key).";
    if (!why) {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        int ok = ctx && EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, google.key) == 1 &&
                 EVP_DigestVerify(ctx, signature, (size_t)signature_len, (const unsigned char *)jwt, (size_t)(dot2 - jwt)) == 1;
        EVP_MD_CTX_free(ctx);
        if (!ok) why = "Invalid JWT Signature.";
    }
    if (!why) {
        const char *iss = json_string_value(json_object_get(claims, "iss"));
        const char *aud = json_string_value(json_object_get(claims, "aud"));
        const char *scope = json_string_value(json_object_get(claims, "scope"));
        json_int_t iat = json_integer_value(json_object_get(claims, "iat"));
        json_int_t exp = json_integer_value(json_object_get(claims, "exp"));
        time_t now = time(NULL);
        if (!iss || strcmp(iss, google.email) != 0) why = "Invalid JWT: iss is not the service account.";
        else if (!aud || strcmp(aud, audience) != 0) why = "Invalid JWT: aud is not this token endpoint.";
        else if (!scope || !strstr(scope, "https://www.googleapis.com/auth/cloud-platform")) why = "Invalid scope.";
        else if (iat > now + 60 || exp <= now || exp - iat > 3600) why = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.";
    }
    pthread_mutex_unlock(&google.lock);
    json_decref(head);
    json_decref(claims);
    free(header);
    free(claims_text);
    free(signature);
    return why;
}

/* The value of form field name in body, malloc'd and decoded; NULL when absent. */
static char *form_field(const char *body, size_t len, const char *name)
{
    size_t k = strlen(name);
    for (const char *p = body; p && p < body + len;) {
        const char *end = memchr(p, '&', (size_t)(body + len - p));
        if (!end) end = body + len;
        if ((size_t)(end - p) > k && strncmp(p, name, k) == 0 && p[k] == '=') return dialect_decode(p + k + 1, (size_t)(end - p - k - 1), true);
        p = end + 1;
    }
    return NULL;
}

static void token_answer(const struct dialect_request *r, struct dialect_answer *a)
{
    if (strcmp(r->url, "/token/stats") == 0) {
        pthread_mutex_lock(&google.lock);
        dialect_json(a, 200, json_pack("{s:i,s:i,s:i}", "exchanges", (json_int_t)google.exchanges, "refused",
                                       (json_int_t)google.refused, "expired_calls", (json_int_t)google.expired_calls));
        pthread_mutex_unlock(&google.lock);
        return;
    }
    char *grant = form_field(r->body ? r->body : "", r->body_len, "grant_type");
    char *assertion = form_field(r->body ? r->body : "", r->body_len, "assertion");
    const char *host = dialect_request_header(r, "Host");
    char audience[300];
    snprintf(audience, sizeof audience, "http://%s/token", host ? host : "");
    const char *why = NULL;
    if (strcmp(r->method, "POST") != 0) why = "POST the grant.";
    else if (!grant || strcmp(grant, "urn:ietf:params:oauth:grant-type:jwt-bearer") != 0) why = "Invalid grant_type.";
    else if (!assertion) why = "Missing assertion.";
    else why = check_assertion(assertion, audience, r->config->google_key);
    free(grant);
    free(assertion);
    if (why) {
        pthread_mutex_lock(&google.lock);
        google.refused++;
        pthread_mutex_unlock(&google.lock);
        dialect_json(a, 400, json_pack("{s:s,s:s}", "error", "invalid_grant", "error_description", why));
        return;
    }
    char token[96];
    unsigned long long noise = (unsigned long long)r->serial * 0x9E3779B97F4A7C15ull ^ (unsigned long long)time(NULL);
    snprintf(token, sizeof token, "ya29.model-server.%llu.%016llx", (unsigned long long)r->serial, noise);
    pthread_mutex_lock(&google.lock);
    size_t slot = google.next++ % TOKENS_MAX;
    snprintf(google.tokens[slot].value, sizeof google.tokens[slot].value, "%s", token);
    google.tokens[slot].expires = now_s() + (double)r->config->token_lifetime_s;
    if (google.count < TOKENS_MAX) google.count++;
    google.exchanges++;
    pthread_mutex_unlock(&google.lock);
    dialect_json(a, 200, json_pack("{s:s,s:i,s:s}", "access_token", token, "expires_in", (json_int_t)r->config->token_lifetime_s,
                                   "token_type", "Bearer"));
}

/* 1: a token this endpoint issued, not expired; 0: expired; -1: not one of ours. */
static int token_state(const char *token)
{
    int state = -1;
    double now = now_s();
    pthread_mutex_lock(&google.lock);
    for (size_t i = 0; i < google.count; i++)
        if (strcmp(google.tokens[i].value, token) == 0) state = google.tokens[i].expires > now ? 1 : 0;
    if (state != 1) google.expired_calls++;
    pthread_mutex_unlock(&google.lock);
    return state;
}

/* ---- generateContent, embedContent, batchEmbedContents, predict ---- */

static void parts_text(json_t *parts, char *out, size_t n);

/* embedContent {"content":{"parts"}}, batchEmbedContents {"requests":[{"model","content"}]}
 * (each request's model must be the URL's, "models/NAME") or Vertex's predict
 * {"instances":[{"content"}, ...]}. */
static void embed(const struct dialect_request *r, json_t *body, struct dialect_answer *a)
{
    char text[8192] = "";
    if (ends(r->url, ":embedContent")) {
        json_t *dimensions = json_object_get(body, "outputDimensionality");
        parts_text(json_object_get(json_object_get(body, "content"), "parts"), text, sizeof text);
        dialect_embedding_items(1);
        json_t *vector = dialect_embedding(text, strlen(text), json_is_integer(dimensions) ? (long)json_integer_value(dimensions) : 8);
        dialect_json(a, 200, json_pack("{s:{s:o}}", "embedding", "values", vector));
        return;
    }
    bool predict = ends(r->url, ":predict");
    json_t *list = json_object_get(body, predict ? "instances" : "requests"), *item;
    size_t count = json_array_size(list), i;
    if (!count) {
        google_error(a, 400, "INVALID_ARGUMENT", predict ? "instances: at least one is required" : "requests: at least one is required");
        return;
    }
    if (!predict) { /* models/NAME:batchEmbedContents: each request names the same model */
        const char *at = strstr(r->url, "/models/"), *colon = strrchr(r->url, ':');
        char want[256];
        snprintf(want, sizeof want, "models/%.*s", at && colon > at ? (int)(colon - at - 8) : 0, at ? at + 8 : "");
        json_array_foreach(list, i, item) {
            const char *model = json_string_value(json_object_get(item, "model"));
            if (model && strcmp(model, want) == 0) continue;
            char message[400];
            snprintf(message, sizeof message, "requests[%zu].model: \"%s\" is not the model of the URL, %s", i,
                     model ? model : "(none)", want);
            google_error(a, 400, "INVALID_ARGUMENT", message);
            return;
        }
    }
    size_t items = dialect_embedding_items(count);
    json_t *vectors = json_array();
    for (i = 0; i < items; i++) {
        item = json_array_get(list, i);
        json_t *dimensions;
        text[0] = 0;
        if (predict) {
            json_t *content = json_object_get(item, "content");
            if (json_is_string(content)) snprintf(text, sizeof text, "%s", json_string_value(content));
            dimensions = json_object_get(json_object_get(body, "parameters"), "outputDimensionality");
        } else {
            parts_text(json_object_get(json_object_get(item, "content"), "parts"), text, sizeof text);
            dimensions = json_object_get(item, "outputDimensionality");
        }
        long length = dialect_embedding_length(i, count, json_is_integer(dimensions) ? (long)json_integer_value(dimensions) : 8);
        json_t *vector = dialect_embedding(text, strlen(text), length);
        if (predict)
            json_array_append_new(vectors, json_pack("{s:{s:o,s:{s:b,s:i}}}", "embeddings", "values", vector, "statistics",
                                                     "truncated", 0, "token_count", dialect_tokens(strlen(text))));
        else
            json_array_append_new(vectors, json_pack("{s:o}", "values", vector));
    }
    dialect_json(a, 200, json_pack("{s:o}", predict ? "predictions" : "embeddings", vectors));
}

static bool authorized(const struct dialect_request *r, bool vertex, struct dialect_answer *a)
{
    const char *want = r->config->api_key;
    if (!vertex) {
        const char *key = dialect_request_header(r, "x-goog-api-key");
        if (!key) key = MHD_lookup_connection_value(r->connection, MHD_GET_ARGUMENT_KIND, "key");
        if (!want || (key && strcmp(key, want) == 0)) return true;
        dialect_json(a, 400, json_pack("{s:{s:i,s:s,s:s,s:[{s:s,s:s,s:s}]}}", "error", "code", 400, "message",
                                       "API key not valid. Please pass a valid API key.", "status", "INVALID_ARGUMENT",
                                       "details", "@type", "type.googleapis.com/google.rpc.ErrorInfo", "reason",
                                       "API_KEY_INVALID", "domain", "googleapis.com"));
        return false;
    }
    const char *auth = dialect_request_header(r, "Authorization");
    const char *token = auth && starts(auth, "Bearer ") ? auth + 7 : NULL;
    if (!want && !r->config->google_key) return true;
    if (token && ((want && strcmp(token, want) == 0) || token_state(token) == 1)) return true;
    google_error(a, 401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access "
                                            "token, login cookie or other valid authentication credential.");
    return false;
}

/* A copy of a responseSchema with its type names in lower case (as JSON Schema writes them). */
static json_t *lower_types(json_t *schema, int depth)
{
    if (!json_is_object(schema) || depth > 16) return json_incref(schema);
    json_t *copy = json_deep_copy(schema);
    const char *type = json_string_value(json_object_get(copy, "type"));
    if (type) {
        char lower[32];
        snprintf(lower, sizeof lower, "%s", type);
        for (char *c = lower; *c; c++) *c = (char)tolower((unsigned char)*c);
        json_object_set_new(copy, "type", json_string(lower));
    }
    const char *key;
    json_t *property;
    json_t *properties = json_object_get(copy, "properties");
    json_object_foreach(properties, key, property) json_object_set_new(properties, key, lower_types(property, depth + 1));
    return copy;
}

static void parts_text(json_t *parts, char *out, size_t n)
{
    size_t i;
    json_t *part;
    json_array_foreach(parts, i, part) {
        const char *text = json_string_value(json_object_get(part, "text"));
        if (text) snprintf(out + strlen(out), n - strlen(out), "%s%s", *out ? " " : "", text);
    }
}

static void generate(const struct dialect_request *r, json_t *body, struct dialect_answer *a)
{
    char user[8192] = "", system[4096] = "";
    size_t i;
    json_t *content;
    json_array_foreach(json_object_get(body, "contents"), i, content) {
        const char *role = json_string_value(json_object_get(content, "role"));
        if (!role || strcmp(role, "user") == 0) parts_text(json_object_get(content, "parts"), user, sizeof user);
    }
    parts_text(json_object_get(json_object_get(body, "systemInstruction"), "parts"), system, sizeof system);
    if (!*user) {
        google_error(a, 400, "INVALID_ARGUMENT", "* GenerateContentRequest.contents: contents is not specified");
        return;
    }
    long prompt = dialect_tokens(strlen(user) + strlen(system));
    if (dialect_marked(user, "[[safety]]")) {
        dialect_json(a, 200, json_pack("{s:[{s:s,s:i,s:[{s:s,s:s,s:b}]}],s:{s:i,s:i}}", "candidates", "finishReason",
                                       "SAFETY", "index", 0, "safetyRatings", "category", "HARM_CATEGORY_HARASSMENT",
                                       "probability", "HIGH", "blocked", 1, "usageMetadata", "promptTokenCount", prompt,
                                       "totalTokenCount", prompt));
        return;
    }
    json_t *config = json_object_get(body, "generationConfig");
    json_t *schema = json_object_get(config, "responseSchema");
    const char *mime = json_string_value(json_object_get(config, "responseMimeType"));
    json_t *lowered = schema ? lower_types(schema, 0) : (mime && strcmp(mime, "application/json") == 0 ? json_object() : NULL);
    char *answer = dialect_content(user, strlen(user), *system ? system : NULL, lowered, r->fault, r->serial);
    json_decref(lowered);
    long out = dialect_tokens(answer ? strlen(answer) : 0);
    dialect_json(a, 200, json_pack("{s:[{s:{s:s,s:[{s:s}]},s:s,s:i}],s:{s:i,s:i,s:i},s:s}", "candidates", "content",
                                   "role", "model", "parts", "text", answer ? answer : "", "finishReason", "STOP", "index",
                                   0, "usageMetadata", "promptTokenCount", prompt, "candidatesTokenCount", out,
                                   "totalTokenCount", prompt + out, "modelVersion", "model-server"));
    free(answer);
}

static void google_answer(const struct dialect_request *r, struct dialect_answer *a)
{
    if (starts(r->url, "/token")) {
        token_answer(r, a);
        return;
    }
    bool vertex = starts(r->url, "/v1/projects/");
    if (!google_model_call(r->method, r->url) || (vertex && !strstr(r->url, "/publishers/google/models/"))) {
        google_error(a, 404, "NOT_FOUND", "The requested URL was not found on this server.");
        return;
    }
    if (!authorized(r, vertex, a)) return;
    json_t *body = dialect_body_json(r);
    if (!body) {
        google_error(a, 400, "INVALID_ARGUMENT", "Invalid JSON payload received.");
        return;
    }
    if (r->fault == DIALECT_RATE_LIMIT) {
        char delay[32];
        snprintf(delay, sizeof delay, "%lds", r->config->retry_after_s);
        dialect_json(a, 429, json_pack("{s:{s:i,s:s,s:s,s:[{s:s,s:s}]}}", "error", "code", 429, "message",
                                       "Resource has been exhausted (e.g. check quota).", "status", "RESOURCE_EXHAUSTED",
                                       "details", "@type", "type.googleapis.com/google.rpc.RetryInfo", "retryDelay", delay));
    } else if (r->fault == DIALECT_OVERLOAD) {
        google_error(a, 503, "UNAVAILABLE", "The model is overloaded. Please try again later.");
    } else if (ends(r->url, ":generateContent")) {
        generate(r, body, a);
    } else {
        embed(r, body, a);
    }
    json_decref(body);
}

const struct dialect dialect_google = {"google", google_match, google_model_call, google_answer};
