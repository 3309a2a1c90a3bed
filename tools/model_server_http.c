/* model_server_http.c: a model behind plain HTTP, for model.http: POST
 * /endpoints/{name}/invocations (SageMaker's path) with {"instances": [{"text": ...}, ...]} or
 * {"inputs": "..."} answers {"predictions": [{"label", "rating", "stars", "cluster"}, ...]} per
 * text, from the same lexicon as every dialect: label positive/neutral/negative (rating 4-5, 3,
 * 1-2), rating 1..5, stars a number (3 + 0.75 x the text's weight, within 1..5: a regression),
 * cluster praise/mixed/complaint (weight above, at, below zero). --api-key is wanted in
 * X-Api-Key; a request signed with SigV4 (as SageMaker's runtime wants) instead is checked
 * against --aws-access-key-id and --aws-secret-access-key for the service sagemaker. A rate fault is a 429 with Retry-After, an
 * overload a 503. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_server_dialect.h"

static bool http_match(const char *method, const char *url)
{
    (void)method;
    return strncmp(url, "/endpoints/", 11) == 0;
}

static bool http_model_call(const char *method, const char *url)
{
    size_t n = strlen(url);
    return strcmp(method, "POST") == 0 && n > 12 && strcmp(url + n - 12, "/invocations") == 0;
}

static json_t *prediction(const char *text)
{
    int weight = dialect_weight(text, strlen(text)), rating = dialect_rating(text, strlen(text));
    double stars = 3 + 0.75 * weight;
    if (stars < 1) stars = 1;
    if (stars > 5) stars = 5;
    return json_pack("{s:s,s:i,s:f,s:s}", "label", rating >= 4 ? "positive" : rating == 3 ? "neutral" : "negative",
                     "rating", rating, "stars", stars, "cluster", weight > 0 ? "praise" : weight < 0 ? "complaint" : "mixed");
}

static void http_answer(const struct dialect_request *r, struct dialect_answer *a)
{
    const char *want = r->config->api_key, *key = dialect_request_header(r, "X-Api-Key");
    const char *auth = dialect_request_header(r, "Authorization");
    bool aws = r->config->aws_access_key_id && r->config->aws_secret_access_key;
    if (aws && auth && strncmp(auth, "AWS4-HMAC-SHA256 ", 17) == 0) { /* signed: the signature must hold */
        if (!dialect_sigv4_holds(r, auth, "sagemaker", a)) return;
    } else if (want ? !key || strcmp(key, want) != 0 : aws) {
        dialect_header(a, "x-amzn-ErrorType", "MissingAuthenticationTokenException");
        dialect_json(a, 403, json_pack("{s:s}", "message", "Missing Authentication Token"));
        return;
    }
    if (!http_model_call(r->method, r->url)) {
        dialect_json(a, 404, json_pack("{s:s}", "message", "POST /endpoints/NAME/invocations"));
        return;
    }
    if (r->fault == DIALECT_RATE_LIMIT) {
        dialect_header(a, "Retry-After", "%ld", r->config->retry_after_s);
        dialect_json(a, 429, json_pack("{s:s}", "message", "Too many requests"));
        return;
    }
    if (r->fault == DIALECT_OVERLOAD) {
        dialect_json(a, 503, json_pack("{s:s}", "message", "The model is overloaded"));
        return;
    }
    json_t *body = dialect_body_json(r), *predictions = json_array();
    json_t *instances = json_object_get(body, "instances"), *inputs = json_object_get(body, "inputs");
    size_t i;
    json_t *instance;
    json_array_foreach(instances, i, instance) {
        const char *text = json_string_value(json_object_get(instance, "text"));
        if (text) json_array_append_new(predictions, prediction(text));
    }
    if (json_is_string(inputs)) json_array_append_new(predictions, prediction(json_string_value(inputs)));
    if (!json_array_size(predictions)) {
        json_decref(predictions);
        json_decref(body);
        dialect_json(a, 400, json_pack("{s:s}", "message", "give {\"instances\": [{\"text\": ...}]} or {\"inputs\": \"...\"}"));
        return;
    }
    if (r->fault == DIALECT_MALFORMED) json_object_del(json_array_get(predictions, 0), "label");
    dialect_json(a, 200, json_pack("{s:o}", "predictions", predictions));
    json_decref(body);
}

const struct dialect dialect_http = {"http", http_match, http_model_call, http_answer};
