/* fuzz_providers.c: libFuzzer target for every provider's reading of an answer: classify (status,
 * headers, the error bodies and rate-limit headers each provider reads: RFC 3339 resets,
 * RetryInfo delays, x-amzn-ErrorType) and parse (content blocks, tool use, candidates, Converse
 * output, JSON pointers), parse_inputs (an answer to several embedding inputs: data[].index,
 * embeddings, predictions), and Vertex's reading of a token endpoint's answer (refreshed).
 *
 * Input: byte 0 picks the status (from a list of the ones providers tell apart); the first line
 * after it is the value of every header a provider reads (Retry-After, anthropic-ratelimit-*,
 * x-amzn-ErrorType, ...); the rest is the body. Every provider, opened for chat with a schema and
 * (where it can) for embeddings, classifies it, and parses it when the verdict is ok. Checked:
 * the verdict is a known outcome with a why only on a failure, a parse either fills the reply
 * or fails with a message (parse_inputs: arrays or NULLs, every one released on a failure), and nothing reads out of bounds or leaks (ASan). Built and run by
 * tools/fuzz.sh. */
#include <curl/curl.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/http.h"
#include "core/secret.h"
#include "fuzz_common.h"
#include "models/model.h"

#define SCHEMA "{\"type\":\"object\",\"properties\":{\"rating\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":5}},\"required\":[\"rating\"],\"additionalProperties\":false}"

static const struct {
    const char *name, *options;
    int embeddings;
} providers[] = {
    {"openai", "model = 'm'", 1},
    {"azure_openai", "resource = 'r', deployment = 'd', api_key = 'k-fuzz'", 1},
    {"anthropic", "model = 'm', api_key = 'k-fuzz'", 0},
    {"bedrock", "region = 'us-east-1', model = 'm:0', api_key = 'k-fuzz'", 1},
    {"gemini", "model = 'm', api_key = 'k-fuzz'", 1},
    {"vertex", "project = 'p', model = 'm', token = 't-fuzz'", 1},
    {"vertex", "project = 'p', model = 'm', credentials = 'tests/data/vertex/service_account.json'", 0},
    {"ollama", "model = 'm'", 1},
    {"http", "url = 'http://127.0.0.1:9/', answer = '/predictions/0'", 1},
    {"http", "url = 'http://127.0.0.1:9/'", 0},
};
#define PROVIDERS (sizeof providers / sizeof providers[0])

struct opened {
    const struct provider_ops *ops;
    void *self;
    struct provider_setup setup;
};

static struct job_env env;
static lua_State *L;
static struct secret_set secrets;
static struct opened opened[2 * PROVIDERS];
static size_t opened_count;

static void open_one(size_t i, enum model_task task)
{
    char code[1024];
    snprintf(code, sizeof code, "return model.%s { %s, prompt = 'x', task = '%s' }", providers[i].name,
             providers[i].options, task == MODEL_TASK_EMBEDDING ? "embedding" : "classification");
    if (luaL_dostring(L, code) != LUA_OK) {
        fprintf(stderr, "fuzz_providers: %s\n", lua_tostring(L, -1));
        abort();
    }
    struct opened *o = &opened[opened_count];
    o->ops = plugin_provider(providers[i].name);
    o->setup = (struct provider_setup){task, task != MODEL_TASK_EMBEDDING, task != MODEL_TASK_EMBEDDING ? SCHEMA : NULL,
                                       1714564800, &secrets};
    struct rn_err err;
    o->self = o->ops->open(&env, luajob_decl_options(L, -1), &o->setup, &err);
    if (!o->self) {
        fprintf(stderr, "fuzz_providers: model.%s: %s\n", providers[i].name, err.msg);
        abort();
    }
    lua_settop(L, 0);
    opened_count++;
}

static void init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    lua_State *main_state = fuzz_new_state(&env, "fuzz_providers");
    L = lua_newthread(main_state);
    luaL_ref(main_state, LUA_REGISTRYINDEX);
    env.L = L;
    secret_set_init(&secrets);
    for (size_t i = 0; i < PROVIDERS; i++) {
        open_one(i, MODEL_TASK_CLASSIFICATION);
        if (providers[i].embeddings) open_one(i, MODEL_TASK_EMBEDDING);
    }
}

static const long statuses[] = {200, 200, 200, 200, 201, 400, 401, 403, 404, 408, 409, 413, 424, 429, 429, 500, 503, 529};
static const char *const header_names[] = {
    "Retry-After", "retry-after-ms", "x-ratelimit-remaining-requests", "x-ratelimit-reset-tokens",
    "anthropic-ratelimit-requests-remaining", "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-output-tokens-remaining", "anthropic-ratelimit-tokens-reset", "x-amzn-ErrorType",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!L) init();
    if (size < 1) return 0;
    long status = statuses[data[0] % (sizeof statuses / sizeof statuses[0])];
    const char *rest = (const char *)data + 1;
    size_t left = size - 1;
    const char *nl = memchr(rest, '\n', left);
    size_t value_len = nl ? (size_t)(nl - rest) : 0;
    char *value = strndup(rest, value_len); /* a NUL inside cuts it, as a header line would */
    size_t body_len = nl ? left - value_len - 1 : left;
    char *body = malloc(body_len + 1); /* NULs and all, as a body comes */
    memcpy(body, nl ? nl + 1 : rest, body_len);
    body[body_len] = '\0';
    struct http_header headers[sizeof header_names / sizeof header_names[0]];
    size_t header_count = nl ? sizeof header_names / sizeof header_names[0] : 0;
    for (size_t i = 0; i < header_count; i++)
        headers[i] = (struct http_header){header_names[i], value, strlen(header_names[i]), strlen(value)};
    struct http_response answer = {status, headers, header_count, body, body_len};
    struct model_reply reply = {.vector = NULL};
    buf_init(&reply.text);
    for (size_t i = 0; i < opened_count; i++) {
        struct opened *o = &opened[i];
        struct provider_verdict v;
        provider_classify(o->ops, o->self, &answer, &v);
        if (v.outcome > PROVIDER_FAIL_JOB) abort();
        if (v.why && (v.outcome == PROVIDER_OK || v.outcome == PROVIDER_RETRY)) abort(); /* a why explains a failure */
        if (v.outcome == PROVIDER_OK) {
            struct rn_err err;
            buf_clear(&reply.text);
            reply.vector = NULL;
            err.msg[0] = '\0';
            if (o->ops->parse(o->self, &answer, &reply, &err) && !err.msg[0]) abort(); /* a failure says why */
            if (reply.tokens_in < 0 || reply.tokens_out < 0) abort();
            json_decref(reply.vector);
            if (o->ops->parse_inputs && o->setup.task == MODEL_TASK_EMBEDDING) { /* as if it answered 3 inputs */
                json_t *vectors[3] = {NULL, NULL, NULL};
                int64_t tokens = 0;
                err.msg[0] = '\0';
                int rc = o->ops->parse_inputs(o->self, &answer, 3, vectors, &tokens, &err);
                if (rc && !err.msg[0]) abort();
                if (tokens < 0) abort();
                for (int k = 0; k < 3; k++) {
                    if ((rc && vectors[k]) || (vectors[k] && !json_is_array(vectors[k]))) abort();
                    json_decref(vectors[k]);
                }
            }
        }
        if (o->ops->refreshed) { /* a token endpoint's answer, to a provider that fetches one */
            struct rn_err err;
            o->ops->refreshed(o->self, &answer, NULL, 0, &err);
        }
    }
    buf_free(&reply.text);
    free(value);
    free(body);
    return 0;
}
