/* fuzz_answer.c: libFuzzer target for a model's answer: the OpenAI response body parser
 * (openai_provider.parse) and the answer checks against the job's `output` declaration
 * (models/check.c, through model_check_reply in models/model_int.h).
 *
 * Input: byte 0 picks one of eight models (low 3 bits) and how the rest is read (bit 3): as an
 * HTTP answer body for openai_provider.parse, or directly as the answer text (an embedding
 * model then reads it as the JSON vector). With bit 4 set the rest is a whole answer instead
 * ("STATUS\n", header lines, an empty line, the body) for the default classification
 * (provider_classify_default, which reads Retry-After, rate-limit headers and error bodies):
 * its verdict must agree with the status. The body parser's fast path must read every body
 * exactly as jansson alone does (openai_parse_tree). When an answer validates, the fields set
 * on the record must have the declared types, ranges and enum spellings; when it does not, the
 * reason must be non-empty, and UTF-8 when the answer text is (the reason goes into dead
 * letters and the correction request). Built and run by tools/fuzz.sh. */
#include <curl/curl.h>
#include <lauxlib.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "models/model_int.h"
#include "models/providers/openai_int.h"

#define COMMON "endpoint = 'http://127.0.0.1:9/v1', api_key = 'sk-fuzz-SECRET-0123', model = 'm', prompt = 'x', "
static const char *const declarations[8] = {
    "model.openai { " COMMON "output = { rating = { type = 'integer', min = 1, max = 5 } }, structured = false }",
    "model.openai { " COMMON "output = { rating = { type = 'integer', min = 1, max = 5 } } }",
    "model.openai { " COMMON "output = { label = { type = 'string', enum = { 'positive', 'negative', 'neutral' } },"
    "  score = { type = 'number', min = 0, max = 1 }, ok = 'boolean', n = 'integer', note = 'string' } }",
    "model.openai { " COMMON "task = 'text_generation' }",
    "model.openai { " COMMON "task = 'embedding' }",
    "model.openai { " COMMON "output = { sentiment = { type = 'string', enum = { 'pos', 'neg', 'n/a' } } },"
    "  structured = false }",
    "model.openai { " COMMON "output = { flag = 'boolean' }, structured = false }",
    "model.openai { " COMMON "output = { x = { type = 'number', max = 10 } }, structured = false }",
};

static struct job_env env;
static lua_State *L;      /* a thread of the job state: its stack has a canary */
static struct model *models[8];
static struct model_reply reply;

static void init(void)
{
    struct rn_err err;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    lua_State *main_state = fuzz_new_state(&env, "fuzz_answer");
    L = lua_newthread(main_state);
    luaL_ref(main_state, LUA_REGISTRYINDEX); /* keeps the thread */
    env.L = L;
    for (int i = 0; i < 8; i++) {
        char code[1024];
        snprintf(code, sizeof code, "return %s", declarations[i]);
        if (luaL_dostring(L, code) != LUA_OK) { fprintf(stderr, "fuzz_answer: %s\n", lua_tostring(L, -1)); abort(); }
        models[i] = model_open(&env, -1, &err);
        if (!models[i]) { fprintf(stderr, "fuzz_answer: model %d: %s\n", i, err.msg); abort(); }
        lua_pop(L, 1);
    }
    buf_init(&reply.text);
}

static int is_integer_in(lua_State *L, int idx, lua_Integer lo, lua_Integer hi)
{
    return lua_isinteger(L, idx) && lua_tointeger(L, idx) >= lo && lua_tointeger(L, idx) <= hi;
}

static int is_one_of(lua_State *L, int idx, const char *const *values)
{
    if (lua_type(L, idx) != LUA_TSTRING) return 0;
    for (; *values; values++)
        if (strcmp(lua_tostring(L, idx), *values) == 0) return 1;
    return 0;
}

/* The record at the top of the stack holds what model `which` declares. */
static const char *check_record(int which)
{
    static const char *const labels[] = {"positive", "negative", "neutral", NULL};
    static const char *const sentiments[] = {"pos", "neg", "n/a", NULL};
    const char *bad = NULL;
    switch (which) {
    case 0:
    case 1:
        lua_getfield(L, -1, "rating");
        if (!is_integer_in(L, -1, 1, 5)) bad = "rating";
        lua_pop(L, 1);
        break;
    case 2:
        lua_getfield(L, -1, "label");
        if (!is_one_of(L, -1, labels)) bad = "label";
        lua_getfield(L, -2, "score");
        if (lua_type(L, -1) != LUA_TNUMBER || !(lua_tonumber(L, -1) >= 0 && lua_tonumber(L, -1) <= 1)) bad = "score";
        lua_getfield(L, -3, "ok");
        if (lua_type(L, -1) != LUA_TBOOLEAN) bad = "ok";
        lua_getfield(L, -4, "n");
        if (!lua_isinteger(L, -1)) bad = "n";
        lua_getfield(L, -5, "note");
        if (lua_type(L, -1) != LUA_TSTRING) bad = "note";
        lua_pop(L, 5);
        break;
    case 3:
        lua_getfield(L, -1, "text");
        if (lua_type(L, -1) != LUA_TSTRING) bad = "text";
        lua_pop(L, 1);
        break;
    case 4:
        lua_getfield(L, -1, "embedding");
        if (lua_type(L, -1) != LUA_TTABLE || lua_rawlen(L, -1) == 0) bad = "embedding";
        for (lua_Integer i = 1; !bad && i <= (lua_Integer)lua_rawlen(L, -1); i++) {
            if (lua_rawgeti(L, -1, i) != LUA_TNUMBER) bad = "embedding item";
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        break;
    case 5:
        lua_getfield(L, -1, "sentiment");
        if (!is_one_of(L, -1, sentiments)) bad = "sentiment";
        lua_pop(L, 1);
        break;
    case 6:
        lua_getfield(L, -1, "flag");
        if (lua_type(L, -1) != LUA_TBOOLEAN) bad = "flag";
        lua_pop(L, 1);
        break;
    case 7:
        lua_getfield(L, -1, "x");
        if (lua_type(L, -1) != LUA_TNUMBER || !(lua_tonumber(L, -1) <= 10)) bad = "x";
        lua_pop(L, 1);
        break;
    }
    return bad;
}

/* The verdict on a whole answer must fit its status (provider.h). */
static void classify_answer(const char *text, size_t len)
{
    static char copy[8192];
    struct http_header headers[64];
    size_t n = 0;
    if (len >= sizeof copy) return;
    memcpy(copy, text, len);
    copy[len] = '\0';
    char *p = copy, *nl = memchr(p, '\n', len);
    long status = strtol(p, NULL, 10);
    if (status < 100 || status > 999) return;
    p = nl ? nl + 1 : copy + len;
    while ((nl = strchr(p, '\n')) && nl != p && n < 64) {
        *nl = '\0';
        char *colon = strchr(p, ':');
        if (colon) {
            *colon = '\0';
            char *value = colon + 1;
            while (*value == ' ') value++;
            headers[n++] = (struct http_header){p, value, strlen(p), strlen(value)};
        }
        p = nl + 1;
    }
    if (nl == p) p++;
    size_t body_len = len - (size_t)(p - copy) <= len ? len - (size_t)(p - copy) : 0;
    struct http_response answer = {status, headers, n, p, body_len};
    struct provider_verdict v;
    provider_classify_default(&answer, &v);
    int good = status >= 200 && status < 300;
    int retryable = status == 408 || status == 409 || status == 429 || status >= 500;
    const char *bad = NULL;
    if ((v.outcome == PROVIDER_OK) != good) bad = "ok is for 2xx only";
    else if (v.outcome == PROVIDER_RETRY && !retryable) bad = "retried a status that is not";
    else if (v.outcome == PROVIDER_FAIL_JOB && (status != 429 || !v.why)) bad = "fail job without a 429 or a reason";
    else if (v.outcome == PROVIDER_FAIL_RECORD && retryable && status != 429) bad = "failed a retryable status";
    else if (v.retry_after_ms < -1 || (v.outcome != PROVIDER_RETRY && v.retry_after_ms != -1)) bad = "retry_after_ms";
    else if (v.rate_limited && (status != 429 || v.outcome != PROVIDER_RETRY)) bad = "rate_limited";
    else if (v.congestion && (v.outcome != PROVIDER_RETRY || (status != 429 && status < 500))) bad = "congestion";
    else if (v.reset_requests_ms < -1 || v.reset_tokens_ms < -1) bad = "a reset below -1";
    if (bad) {
        fprintf(stderr, "fuzz_answer: HTTP %ld classified %d: %s\n", status, (int)v.outcome, bad);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (!L) init();
    if (size < 1) return 0;
    if (data[0] & 16) {
        classify_answer((const char *)data + 1, size - 1);
        return 0;
    }
    int which = data[0] & 7, raw = data[0] & 8;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    struct rn_err err;
    struct buf why;
    buf_init(&why);
    buf_clear(&reply.text);
    reply.vector = NULL;
    reply.tokens_in = reply.tokens_out = 0;
    int top = lua_gettop(L);

    if (raw) {
        buf_put(&reply.text, body, len);
        if (which == 4) reply.vector = json_loadb(body, len, JSON_DECODE_ANY, NULL);
    } else {
        /* the parser's fast path and jansson alone must read the body the same way */
        static struct model_reply tree;
        struct rn_err tree_err;
        if (!tree.text.data) buf_init(&tree.text);
        buf_clear(&tree.text);
        tree.vector = NULL;
        tree.tokens_in = tree.tokens_out = 0;
        struct http_response answer = {.status = 200, .body = body, .body_len = len};
        int fast_rc = openai_provider.parse(NULL, &answer, &reply, &err);
        int tree_rc = openai_parse_tree(body, len, &tree, &tree_err);
        json_decref(tree.vector);
        if (fast_rc != tree_rc) {
            fprintf(stderr, "fuzz_answer: parse rc %d, jansson alone %d (%s)\n", fast_rc, tree_rc,
                    tree_rc ? tree_err.msg : err.msg);
            abort();
        } else if (fast_rc == 0 && (reply.text.len != tree.text.len || reply.tokens_in != tree.tokens_in ||
                                    reply.tokens_out != tree.tokens_out ||
                                    memcmp(reply.text.data ? reply.text.data : "", tree.text.data ? tree.text.data : "",
                                           reply.text.len) != 0)) {
            fprintf(stderr, "fuzz_answer: the fast path read a different answer than jansson\n");
            abort();
        }
        if (fast_rc) {
            if (!err.msg[0]) abort();
            json_decref(reply.vector);
            return 0;
        }
    }
    if (reply.tokens_in < 0 || reply.tokens_out < 0) abort();

    lua_newtable(L);
    int record_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    int rc = model_check_reply(models[which], &reply, record_ref, &why);
    if (rc == 0) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, record_ref);
        const char *bad = check_record(which);
        if (bad) {
            fprintf(stderr, "fuzz_answer: model %d accepted the answer but set a bad %s\n", which, bad);
            abort();
        }
        lua_pop(L, 1);
    } else if (why.len == 0 ||
               (rn_utf8_valid(reply.text.data, reply.text.len, NULL) && !rn_utf8_valid(why.data, why.len, NULL))) {
        fprintf(stderr, "fuzz_answer: model %d: the reason is empty or not UTF-8: %s\n", which, why.data);
        abort();
    }
    luaL_unref(L, LUA_REGISTRYINDEX, record_ref);
    if (lua_gettop(L) != top) abort();
    json_decref(reply.vector);
    buf_free(&why);
    lua_resetthread(L); /* shrinks the stack: the allocator checks its canary */
    return 0;
}
