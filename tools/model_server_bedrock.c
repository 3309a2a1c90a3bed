/* model_server_bedrock.c: Amazon Bedrock's dialect of tools/model-server: POST
 * /model/{modelId}/converse (Converse: messages, system, inferenceConfig, toolConfig with a
 * forced tool) and /model/{modelId}/invoke (Titan embeddings, {"inputText"}).
 *
 * With --aws-access-key-id and --aws-secret-access-key every request must carry a SigV4
 * signature made with them: the server recomputes it from the request as it came (the path as
 * sent, so a model id's %3A is signed as %253A; the headers SignedHeaders names; the body) with
 * runtime/core/sigv4.c, which AWS's test suite checks, and refuses a mismatch with 403
 * InvalidSignatureException, an unknown key id with UnrecognizedClientException, a date more
 * than 5 minutes off with "Signature expired". A bearer equal to --api-key (a Bedrock API key)
 * is taken instead. Errors carry x-amzn-ErrorType; a rate fault is ThrottlingException, an
 * overload ServiceUnavailableException. The model "no-such-model" is invalid (400
 * ValidationException); "[[guardrail]]" in the text makes a guardrail intervene. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/sigv4.h"
#include "model_server_dialect.h"

#define SKEW_SECONDS 300

static bool bedrock_match(const char *method, const char *url)
{
    (void)method;
    return strncmp(url, "/model/", 7) == 0;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static bool bedrock_model_call(const char *method, const char *url)
{
    return strcmp(method, "POST") == 0 && (ends_with(url, "/converse") || ends_with(url, "/invoke"));
}

static void aws_error(struct dialect_answer *a, unsigned status, const char *type, const char *message)
{
    dialect_header(a, "x-amzn-ErrorType", "%s:http://internal.amazon.com/coral/com.amazon.bedrock/", type);
    dialect_header(a, "x-amzn-RequestId", "model-server");
    dialect_json(a, status, json_pack("{s:s}", "message", message));
}

/* "Credential=AKID/20240501/us-east-1/bedrock/aws4_request, SignedHeaders=a;b, Signature=hex":
 * the value after name= up to the next ", " or the end, into out. */
static bool auth_field(const char *auth, const char *name, char *out, size_t n)
{
    const char *at = strstr(auth, name);
    if (!at) return false;
    at += strlen(name);
    size_t len = strcspn(at, ", ");
    if (len >= n) return false;
    memcpy(out, at, len);
    out[len] = '\0';
    return true;
}

bool dialect_sigv4_holds(const struct dialect_request *r, const char *auth, const char *service, struct dialect_answer *a)
{
    char credential[256], signed_names[512], signature[80];
    if (!auth_field(auth, "Credential=", credential, sizeof credential) ||
        !auth_field(auth, "SignedHeaders=", signed_names, sizeof signed_names) ||
        !auth_field(auth, "Signature=", signature, sizeof signature)) {
        aws_error(a, 403, "IncompleteSignatureException", "Authorization header requires 'Credential', 'SignedHeaders' "
                                                         "and 'Signature' parameters.");
        return false;
    }
    /* AKID/DATE/REGION/SERVICE/aws4_request */
    char *parts[5] = {0}, *save = NULL;
    int count = 0;
    for (char *p = strtok_r(credential, "/", &save); p && count < 5; p = strtok_r(NULL, "/", &save)) parts[count++] = p;
    if (count != 5 || strcmp(parts[4], "aws4_request") != 0) {
        aws_error(a, 403, "IncompleteSignatureException", "Credential should be scoped to a valid region.");
        return false;
    }
    if (strcmp(parts[0], r->config->aws_access_key_id) != 0) {
        aws_error(a, 403, "UnrecognizedClientException", "The security token included in the request is invalid.");
        return false;
    }
    if (strcmp(parts[3], service) != 0) {
        char message[128];
        snprintf(message, sizeof message, "Credential should be scoped to correct service: '%s'.", service);
        aws_error(a, 403, "InvalidSignatureException", message);
        return false;
    }
    const char *date = dialect_request_header(r, "x-amz-date");
    struct tm tm = {0};
    char *end = date ? strptime(date, "%Y%m%dT%H%M%SZ", &tm) : NULL;
    if (!end || *end || strncmp(date, parts[1], 8) != 0) {
        aws_error(a, 403, "IncompleteSignatureException", "The request must carry an X-Amz-Date of the credential's day.");
        return false;
    }
    double skew = difftime(time(NULL), timegm(&tm));
    if (skew > SKEW_SECONDS || skew < -SKEW_SECONDS) {
        aws_error(a, 403, "InvalidSignatureException", "Signature expired: the request's date is more than 5 minutes "
                                                      "from the server's.");
        return false;
    }
    struct sigv4_header headers[SIGV4_MAX_HEADERS];
    size_t n = 0;
    save = NULL;
    for (char *name = strtok_r(signed_names, ";", &save); name; name = strtok_r(NULL, ";", &save)) {
        const char *value = dialect_request_header(r, name);
        if (n == SIGV4_MAX_HEADERS || !value) {
            aws_error(a, 403, "InvalidSignatureException", "A header SignedHeaders names is missing.");
            return false;
        }
        headers[n++] = (struct sigv4_header){name, value};
    }
    struct sigv4_request request = {r->method, r->url, NULL, headers, n, r->body ? r->body : "", r->body_len};
    struct sigv4_credentials cred = {parts[0], r->config->aws_secret_access_key, parts[2], service};
    struct buf expected, canonical;
    buf_init(&expected);
    buf_init(&canonical);
    struct rn_err err;
    bool same = sigv4_sign(&request, &cred, date, &expected, &canonical, NULL, &err) == 0;
    const char *mark = same ? strstr(expected.data, "Signature=") : NULL;
    same = mark && strcmp(mark + 10, signature) == 0;
    if (!same) {
        char message[1024];
        snprintf(message, sizeof message, "The request signature we calculated does not match the signature you "
                                          "provided. Check your AWS Secret Access Key and signing method. The Canonical "
                                          "String for this request should have been '%.600s'",
                 canonical.data ? canonical.data : "");
        aws_error(a, 403, "InvalidSignatureException", message);
    }
    buf_free(&expected);
    buf_free(&canonical);
    return same;
}

static bool authorized(const struct dialect_request *r, struct dialect_answer *a)
{
    const char *auth = dialect_request_header(r, "Authorization");
    const struct dialect_config *c = r->config;
    if (auth && strncmp(auth, "Bearer ", 7) == 0) {
        if (c->api_key && strcmp(auth + 7, c->api_key) == 0) return true;
        if (!c->api_key && !c->aws_access_key_id) return true;
        aws_error(a, 403, "UnrecognizedClientException", "The security token included in the request is invalid.");
        return false;
    }
    if (auth && strncmp(auth, "AWS4-HMAC-SHA256 ", 17) == 0) {
        if (!c->aws_access_key_id || !c->aws_secret_access_key) return true; /* no key to check against */
        return dialect_sigv4_holds(r, auth, "bedrock", a);
    }
    if (!c->api_key && !c->aws_access_key_id) return true;
    aws_error(a, 403, "MissingAuthenticationTokenException", "Missing Authentication Token");
    return false;
}

static void bedrock_answer(const struct dialect_request *r, struct dialect_answer *a)
{
    if (!authorized(r, a)) return;
    const char *id_start = r->url + 7, *id_end = strrchr(r->url, '/');
    char *model = dialect_decode(id_start, (size_t)(id_end - id_start), false);
    if (!model || !bedrock_model_call(r->method, r->url)) {
        free(model);
        aws_error(a, 404, "UnknownOperationException", "Unknown operation");
        return;
    }
    bool invalid = strcmp(model, "no-such-model") == 0;
    free(model);
    if (invalid) {
        aws_error(a, 400, "ValidationException", "The provided model identifier is invalid.");
        return;
    }
    json_t *body = dialect_body_json(r);
    if (!body) {
        aws_error(a, 400, "ValidationException", "Malformed input request, please reformat your input and try again.");
        return;
    }
    if (r->fault == DIALECT_RATE_LIMIT) {
        json_decref(body);
        aws_error(a, 429, "ThrottlingException", "Too many requests, please wait before trying again.");
        return;
    }
    if (r->fault == DIALECT_OVERLOAD) {
        json_decref(body);
        aws_error(a, 503, "ServiceUnavailableException", "Bedrock is unable to process your request.");
        return;
    }
    if (ends_with(r->url, "/invoke")) { /* Titan embeddings */
        json_t *text = json_object_get(body, "inputText"), *dimensions = json_object_get(body, "dimensions");
        if (!json_is_string(text)) {
            json_decref(body);
            aws_error(a, 400, "ValidationException", "Malformed input request: required key [inputText] not found");
            return;
        }
        json_t *vector = dialect_embedding(json_string_value(text), json_string_length(text),
                                           json_is_integer(dimensions) ? (long)json_integer_value(dimensions) : 8);
        dialect_json(a, 200, json_pack("{s:o,s:i}", "embedding", vector, "inputTextTokenCount",
                                       dialect_tokens(json_string_length(text))));
        json_decref(body);
        return;
    }
    json_t *messages = json_object_get(body, "messages");
    if (!json_is_array(messages) || !json_array_size(messages)) {
        json_decref(body);
        aws_error(a, 400, "ValidationException", "A conversation must start with a user message.");
        return;
    }
    /* the user turns' text, and the system's */
    char user[8192] = "", system[4096] = "";
    size_t i, k;
    json_t *m, *block;
    json_array_foreach(messages, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!role || strcmp(role, "user") != 0) continue;
        json_array_foreach(json_object_get(m, "content"), k, block) {
            const char *text = json_string_value(json_object_get(block, "text"));
            if (text) snprintf(user + strlen(user), sizeof user - strlen(user), "%s%s", *user ? " " : "", text);
        }
    }
    json_array_foreach(json_object_get(body, "system"), k, block) {
        const char *text = json_string_value(json_object_get(block, "text"));
        if (text) snprintf(system + strlen(system), sizeof system - strlen(system), "%s", text);
    }
    json_t *tool = json_object_get(json_array_get(json_object_get(json_object_get(body, "toolConfig"), "tools"), 0), "toolSpec");
    json_t *schema = json_object_get(json_object_get(tool, "inputSchema"), "json");
    const char *stop = "end_turn";
    json_t *content = json_array();
    long output = 0;
    if (dialect_marked(user, "[[guardrail]]")) {
        stop = "guardrail_intervened";
        json_array_append_new(content, json_pack("{s:s}", "text", "Sorry, the model cannot answer this question."));
    } else {
        char *answer = dialect_content(user, strlen(user), *system ? system : NULL, schema, r->fault, r->serial);
        output = dialect_tokens(answer ? strlen(answer) : 0);
        json_t *input = schema && answer ? json_loads(answer, 0, NULL) : NULL;
        if (input) {
            stop = "tool_use";
            json_array_append_new(content, json_pack("{s:{s:s,s:O,s:o}}", "toolUse", "toolUseId", "tooluse_model_server",
                                                     "name", json_object_get(tool, "name"), "input", input));
        } else {
            json_array_append_new(content, json_pack("{s:s}", "text", answer ? answer : ""));
        }
        free(answer);
    }
    long input_tokens = dialect_tokens(strlen(user) + strlen(system));
    dialect_header(a, "x-amzn-RequestId", "model-server-%llu", (unsigned long long)r->serial);
    dialect_json(a, 200, json_pack("{s:{s:{s:s,s:o}},s:s,s:{s:i,s:i,s:i},s:{s:i}}", "output", "message", "role", "assistant",
                                   "content", content, "stopReason", stop, "usage", "inputTokens", input_tokens,
                                   "outputTokens", output, "totalTokens", input_tokens + output, "metrics", "latencyMs", 1));
    json_decref(body);
}

const struct dialect dialect_bedrock = {"bedrock", bedrock_match, bedrock_model_call, bedrock_answer};
