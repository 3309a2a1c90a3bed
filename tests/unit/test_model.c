/* test_model.c: the model engine (runtime/models/) and the OpenAI provider (models/providers/openai.c)
 * against the real bin/model-server, plus a tiny in-test server that echoes the api key back.
 * Run from the repository root. Prints failures and "N passed, N failed"; exits non-zero on
 * failure. */
#include <arpa/inet.h>
#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/http.h"
#include "lua/job.h"
#include "models/model.h"
#include "models/model_int.h"
#include "models/providers/openai_int.h"

#include "check.h"
#include "scripted_server.h"

#define API_KEY "sk-test-SECRET-9f8e7d6c5b4a"

/* ---- servers ---- */

/* Start bin/model-server --port 0 with extra space-separated args; read the port it prints. */
static int server_start(struct server *s, const char *args)
{
    char copy[512], *argv[32];
    int argc = 0;
    snprintf(copy, sizeof copy, "%s", args);
    argv[argc++] = "bin/model-server";
    argv[argc++] = "--port";
    argv[argc++] = "0";
    for (char *t = strtok(copy, " "); t && argc < 31; t = strtok(NULL, " ")) argv[argc++] = t;
    argv[argc] = NULL;
    int fds[2];
    if (pipe(fds)) return -1;
    s->pid = fork();
    if (s->pid < 0) return -1;
    if (s->pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    char line[256];
    size_t n = 0;
    struct pollfd pfd = {fds[0], POLLIN, 0};
    while (n < sizeof line - 1 && poll(&pfd, 1, 5000) == 1) {
        if (read(fds[0], line + n, 1) != 1) break;
        if (line[n++] == '\n') break;
    }
    line[n] = '\0';
    close(fds[0]);
    if (sscanf(line, "listening on http://127.0.0.1:%d", &s->port) != 1) {
        printf("FAIL: bin/model-server did not start (%s); run from the repo root after make\n", line);
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        return -1;
    }
    return 0;
}

static void server_stop(struct server *s)
{
    kill(s->pid, SIGTERM);
    waitpid(s->pid, NULL, 0);
}

static size_t collect(char *data, size_t size, size_t count, void *user)
{
    buf_put(user, data, size * count);
    return size * count;
}

/* A counter from GET /stats. */
static long long server_stat(struct server *s, const char *name)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/stats", s->port);
    struct buf body;
    buf_init(&body);
    CURL *e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &body);
    long long v = -1;
    if (curl_easy_perform(e) == CURLE_OK) {
        json_t *root = json_loadb(body.data, body.len, 0, NULL);
        v = json_integer_value(json_object_get(root, name));
        json_decref(root);
    }
    curl_easy_cleanup(e);
    buf_free(&body);
    return v;
}

#define CHAT_ANSWER "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"%s\"}}]," \
                    "\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}"

/* It puts the Authorization header it got into its answer: a 400 error body, or, when the
 * request mentions ANSWER, a 200 chat answer whose content holds it. It stands for a server
 * that echoes the api key. */
static void echo_rule(const char *req, int *status, char *head, size_t head_size, char *body, size_t body_size)
{
    (void)head;
    (void)head_size;
    char auth[256] = "", content[300];
    const char *a = strcasestr(req, "\nauthorization: ");
    if (a) sscanf(a + 16, "%255[^\r\n]", auth);
    *status = strstr(req, "ANSWER") ? 200 : 400;
    snprintf(content, sizeof content, "key %s", auth);
    if (*status == 200) snprintf(body, body_size, CHAT_ANSWER, content);
    else snprintf(body, body_size, "{\"error\":{\"message\":\"Incorrect API key provided: %s\"}}", auth);
}

static int echo_start(struct server *s) { return scripted_start(s, echo_rule); }

/* ---- the job side ---- */

static lua_State *L;
static struct job_env env;

struct result {
    int done, ok;
    char reason[1100];
    char text[300];
};

struct run {
    struct result *results;
    size_t done;
};

static void on_done(void *ctx, uint64_t tag, int record_ref, int ok, const char *reason, const char *model_text)
{
    (void)record_ref;
    struct run *run = ctx;
    struct result *r = &run->results[tag];
    if (r->done) { CHECK(0, "record %llu completed twice", (unsigned long long)tag); return; }
    r->done = 1;
    r->ok = ok;
    snprintf(r->reason, sizeof r->reason, "%s", reason ? reason : "");
    snprintf(r->text, sizeof r->text, "%s", model_text ? model_text : "");
    if (!ok) CHECK(reason && *reason, "record %llu failed without a reason", (unsigned long long)tag);
    run->done++;
}

/* Open a model from a Lua options table constructor, declared with model.openai on line 7
 * of test.lua as a script would, with the provider given (NULL: the one declared); NULL and
 * err on failure (the declaration's or the open's). */
static struct model *open_model_with(const char *options, const struct provider_ops *provider, struct rn_err *err)
{
    struct buf code;
    buf_init(&code);
    buf_printf(&code, "\n\n\n\n\n\nreturn model.openai %s", options);
    struct model *m = NULL;
    if (luaL_loadbuffer(L, code.data, code.len, "@test.lua") != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
        rn_fail(err, "%s", lua_tostring(L, -1));
    } else {
        int top = lua_gettop(L);
        m = provider ? model_open_provider(&env, -1, provider, err) : model_open(&env, -1, err);
        CHECK(lua_gettop(L) == top, "model_open moved the stack");
    }
    lua_pop(L, 1);
    buf_free(&code);
    return m;
}

static struct model *open_model(const char *options, struct rn_err *err) { return open_model_with(options, NULL, err); }

/* model.openai on the model server at port's /v1, model 'test', with the rest of the options
 * table's fields; checks that it opened (NULL when it did not). */
static struct model *open_test_model(int port, const char *fields)
{
    char options[512];
    snprintf(options, sizeof options, "{ endpoint = 'http://127.0.0.1:%d/v1', model = 'test', %s }", port, fields);
    struct rn_err err;
    struct model *m = open_model(options, &err);
    CHECK(m, "open: %s", err.msg);
    return m;
}

static const char *const texts[] = {"awful terrible", "bad", "okay", "good", "excellent delicious"};
static const int ratings[] = {1, 2, 3, 4, 5};

/* Feed n records ({summary = texts[i % 5], i = i}, or summary = big when given) through m,
 * polling until all are done or timeout_ms passes. refs[i] keeps each record for checks. */
static void drive_until(struct model *m, size_t n, struct result *results, int *refs, const char *big, int timeout_ms,
                        int must_finish)
{
    struct run run = {results, 0};
    memset(results, 0, n * sizeof *results);
    size_t next = 0;
    int64_t deadline = rn_now_ms() + timeout_ms;
    struct rn_err err;
    while (run.done < n && rn_now_ms() < deadline) {
        while (next < n && model_room(m) > 0) {
            lua_createtable(L, 0, 2);
            if (big) lua_pushstring(L, big);
            else lua_pushstring(L, texts[next % 5]);
            lua_setfield(L, -2, "summary");
            lua_pushinteger(L, (lua_Integer)next);
            lua_setfield(L, -2, "i");
            refs[next] = luaL_ref(L, LUA_REGISTRYINDEX);
            if (model_submit(m, refs[next], next, &err)) {
                results[next].done = 1;
                snprintf(results[next].reason, sizeof results[next].reason, "submit: %s", err.msg);
                run.done++;
            }
            next++;
        }
        if (model_poll(m, 20, on_done, &run, &err)) {
            CHECK(0, "model_poll: %s", err.msg);
            break;
        }
    }
    if (!must_finish) return;
    CHECK(run.done == n, "%zu of %zu records done in %d ms", run.done, n, timeout_ms);
    CHECK(model_in_flight(m) == 0, "in flight after all done: %zu", model_in_flight(m));
}

/* Feed n records through m while its endpoint is down or refusing everyone: none may finish,
 * and model_poll must stop the job (limits.outage) within timeout_ms. 0 and the stop's
 * message in err; -1 when a record finished or nothing stopped it. */
static int drive_outage(struct model *m, size_t n, struct result *results, int *refs, int timeout_ms, struct rn_err *err)
{
    struct run run = {results, 0};
    memset(results, 0, n * sizeof *results);
    size_t next = 0;
    int64_t deadline = rn_now_ms() + timeout_ms;
    int stopped = 0;
    while (!stopped && run.done == 0 && rn_now_ms() < deadline) {
        while (next < n && model_room(m) > 0) {
            lua_createtable(L, 0, 1);
            lua_pushstring(L, texts[next % 5]);
            lua_setfield(L, -2, "summary");
            refs[next] = luaL_ref(L, LUA_REGISTRYINDEX);
            if (model_submit(m, refs[next], next, err)) break;
            next++;
        }
        stopped = model_poll(m, 20, on_done, &run, err) != 0;
    }
    CHECK(next == n, "outage: %zu of %zu records submitted", next, n);
    CHECK(run.done == 0, "outage: %zu records finished (the first: %s)", run.done, results[0].reason);
    CHECK(stopped, "outage: the job did not stop in %d ms", timeout_ms);
    return stopped && run.done == 0 ? 0 : -1;
}

static void drive(struct model *m, size_t n, struct result *results, int *refs, const char *big, int timeout_ms)
{
    drive_until(m, n, results, refs, big, timeout_ms, 1);
}

static lua_Integer record_integer(int ref, const char *field)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    lua_getfield(L, -1, field);
    lua_Integer v = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : -999;
    lua_pop(L, 2);
    return v;
}

static void unref_all(int *refs, size_t n)
{
    for (size_t i = 0; i < n; i++) luaL_unref(L, LUA_REGISTRYINDEX, refs[i]);
}

static json_t *summary_of(struct model *m)
{
    json_t *s = json_object();
    model_summary_json(m, s);
    json_t *model = json_incref(json_object_get(s, "model"));
    json_decref(s);
    return model;
}

static long long figure(struct model *m, const char *name)
{
    json_t *s = summary_of(m);
    long long v = json_integer_value(json_object_get(s, name));
    json_decref(s);
    return v;
}

#define N_MAX 20000
static struct result results[N_MAX];
static int refs[N_MAX];

/* Submit n records ({summary = texts[i]}) to m and poll until the model fails (the job stops) or
 * 5 s pass; run counts what was reported. Returns model_poll's last result (-1 with err). */
static int submit_until_stopped(struct model *m, int n, struct run *run, struct rn_err *err)
{
    memset(run->results, 0, (size_t)n * sizeof run->results[0]);
    for (int i = 0; i < n; i++) {
        lua_createtable(L, 0, 1);
        lua_pushstring(L, texts[i % 5]);
        lua_setfield(L, -2, "summary");
        refs[i] = luaL_ref(L, LUA_REGISTRYINDEX);
        CHECK(model_submit(m, refs[i], (uint64_t)i, err) == 0, "submit: %s", err->msg);
    }
    int rc = 0;
    int64_t deadline = rn_now_ms() + 5000;
    while (rc == 0 && rn_now_ms() < deadline) rc = model_poll(m, 20, on_done, run, err);
    return rc;
}

/* ---- tests ---- */

static void test_ratings(struct server *srv)
{
    const char *variants[] = {"", "structured = false,"};
    for (int v = 0; v < 2; v++) {
        char options[1024];
        snprintf(options, sizeof options,
                 "{ endpoint = 'http://127.0.0.1:%d/v1', model = 'test', %s prompt = 'Review: {{summary}}',"
                 "  output = { rating = { type = 'integer', min = 1, max = 5 } }, price = { input = 2.5, output = 10 } }",
                 srv->port, variants[v]);
        struct rn_err err;
        struct model *m = open_model(options, &err);
        CHECK(m, "open: %s", err.msg);
        if (!m) continue;
        size_t n = 500;
        drive(m, n, results, refs, NULL, 8000);
        size_t right = 0;
        for (size_t i = 0; i < n; i++)
            if (results[i].ok && record_integer(refs[i], "rating") == ratings[i % 5]) right++;
        CHECK(right == n, "%s: %zu of %zu ratings right (first reason: %s)", v ? "text" : "structured", right, n,
              results[0].reason);
        json_t *s = summary_of(m);
        CHECK(json_integer_value(json_object_get(s, "ok")) == (json_int_t)n, "summary ok");
        CHECK(json_integer_value(json_object_get(s, "requests")) == (json_int_t)n, "one request per record");
        CHECK(json_integer_value(json_object_get(s, "tokens_in")) > 0, "tokens_in counted");
        CHECK(json_real_value(json_object_get(s, "cost_usd")) > 0, "cost estimated");
        double p50 = json_real_value(json_object_get(json_object_get(s, "latency_ms"), "p50"));
        double p99 = json_real_value(json_object_get(json_object_get(s, "latency_ms"), "p99"));
        CHECK(p50 > 0 && p99 >= p50, "latency p50 %.3f p99 %.3f", p50, p99);
        json_t *c = json_object_get(s, "concurrency");
        CHECK(json_is_string(json_object_get(c, "mode")) && strcmp(json_string_value(json_object_get(c, "mode")), "fixed") == 0 &&
                  json_integer_value(json_object_get(c, "limit")) == 64, "fixed concurrency in the summary");
        json_decref(s);
        char *text = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&text, &len);
        model_print_summary(m, out);
        fclose(out);
        CHECK(strstr(text, "500 ok") && strstr(text, "cost $") && strstr(text, "(estimate)") &&
                  strstr(text, "p95"), "summary text: %s", text);
        free(text);
        unref_all(refs, n);
        model_close(m);
    }
}

static void test_enum_and_multi(struct server *srv)
{
    char options[1024];
    snprintf(options, sizeof options,
             "{ endpoint = 'http://127.0.0.1:%d/v1', model = 'test', prompt = '{{summary}}',"
             "  output = { label = { type = 'string', enum = { 'negative', 'neutral', 'positive' } },"
             "             liked = { type = 'boolean' }, score = { type = 'number', min = 0, max = 10 } } }",
             srv->port);
    struct rn_err err;
    struct model *m = open_model(options, &err);
    CHECK(m, "open: %s", err.msg);
    if (!m) return;
    drive(m, 10, results, refs, NULL, 5000);
    lua_rawgeti(L, LUA_REGISTRYINDEX, refs[4]); /* "excellent delicious": 5 */
    lua_getfield(L, -1, "label");
    lua_getfield(L, -2, "liked");
    lua_getfield(L, -3, "score");
    CHECK(results[4].ok && lua_tostring(L, -3) && strcmp(lua_tostring(L, -3), "positive") == 0 &&
              lua_toboolean(L, -2) && lua_tonumber(L, -1) == 5,
          "enum/boolean/number fields: %s %d %g (%s)", lua_tostring(L, -3), lua_toboolean(L, -2),
          lua_tonumber(L, -1), results[4].reason);
    lua_pop(L, 4);
    unref_all(refs, 10);
    model_close(m);
}

/* The answer cache: a second run over the same records makes no request, hits are reported
 * by model_poll (not by submit), and anything that changes the request misses. */
static void test_cache(struct server *srv)
{
    char dir[] = "/tmp/runnel-test-model-cache.XXXXXX";
    if (!mkdtemp(dir)) { CHECK(0, "mkdtemp: %s", strerror(errno)); return; }
    env.state_dir = dir;
    char options[1024];
    const char *base = "{ endpoint = 'http://127.0.0.1:%d/v1', model = 'test/model', prompt = 'Review: {{summary}}', %s"
                       "  output = { rating = { type = 'integer', min = 1, max = 5 } } }";
    struct rn_err err;
    size_t n = 500;

    /* cold: 5 distinct prompts, so later records hit what earlier ones stored */
    snprintf(options, sizeof options, base, srv->port, "");
    struct model *m = open_model(options, &err);
    CHECK(m, "open: %s", err.msg);
    if (!m) goto done;
    drive(m, n, results, refs, NULL, 8000);
    size_t right = 0;
    for (size_t i = 0; i < n; i++)
        if (results[i].ok && record_integer(refs[i], "rating") == ratings[i % 5]) right++;
    CHECK(right == n, "cold: %zu of %zu ratings right", right, n);
    json_t *s = summary_of(m);
    long long requests = json_integer_value(json_object_get(s, "requests"));
    long long hits = json_integer_value(json_object_get(s, "cache_hits"));
    json_t *c = json_object_get(s, "cache");
    CHECK(requests + hits == (long long)n && hits > 0 && json_integer_value(json_object_get(c, "entries")) == 5,
          "cold: %lld requests + %lld hits, %lld entries", requests, hits,
          (long long)json_integer_value(json_object_get(c, "entries")));
    CHECK(json_integer_value(json_object_get(s, "ok")) == (json_int_t)n, "cold: hits count as ok");
    const char *path = json_string_value(json_object_get(c, "path"));
    char want[512];
    snprintf(want, sizeof want, "%s/cache/test/openai.test_model.cache", dir);
    CHECK(path && strcmp(path, want) == 0, "cache path %s, want %s", path ? path : "(none)", want);
    json_decref(s);
    unref_all(refs, n);
    model_close(m);

    /* warm: a hit is reported by the next model_poll, which does not wait */
    m = open_model(options, &err);
    CHECK(m, "reopen: %s", err.msg);
    if (!m) goto done;
    struct run run = {results, 0};
    memset(results, 0, sizeof results[0]);
    lua_createtable(L, 0, 1);
    lua_pushstring(L, texts[4]);
    lua_setfield(L, -2, "summary");
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    CHECK(model_submit(m, ref, 0, &err) == 0, "submit: %s", err.msg);
    CHECK(!results[0].done && model_in_flight(m) == 1, "a hit is not reported by submit (in flight %zu)",
          model_in_flight(m));
    int64_t started = rn_now_ms();
    CHECK(model_poll(m, 3000, on_done, &run, &err) == 0, "poll: %s", err.msg);
    CHECK(results[0].done && results[0].ok && record_integer(ref, "rating") == 5 && model_in_flight(m) == 0,
          "the hit is reported by poll: done %d ok %d", results[0].done, results[0].ok);
    CHECK(rn_now_ms() - started < 2500, "poll with only hits returns before its 3 s timeout (%lld ms)",
          (long long)(rn_now_ms() - started));
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    drive(m, n, results, refs, NULL, 8000);
    right = 0;
    for (size_t i = 0; i < n; i++)
        if (results[i].ok && record_integer(refs[i], "rating") == ratings[i % 5]) right++;
    CHECK(right == n, "warm: %zu of %zu ratings right", right, n);
    CHECK(figure(m, "requests") == 0 && figure(m, "cache_hits") == (long long)n + 1 && figure(m, "tokens_in") == 0,
          "warm: %lld requests, %lld hits", figure(m, "requests"), figure(m, "cache_hits"));
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    model_print_summary(m, out);
    fclose(out);
    CHECK(strstr(text, "cache hits 501") && strstr(text, "0 requests"), "summary text: %s", text);
    free(text);
    unref_all(refs, n);
    model_close(m);

    /* what changes the request misses: another system prompt, another temperature */
    const char *changes[] = {"system = 'Rate it.',", "temperature = 0.5,"};
    for (int k = 0; k < 2; k++) {
        snprintf(options, sizeof options, base, srv->port, changes[k]);
        m = open_model(options, &err);
        CHECK(m, "open: %s", err.msg);
        if (!m) goto done;
        drive(m, 5, results, refs, NULL, 5000);
        CHECK(figure(m, "requests") == 5 && figure(m, "cache_hits") == 0, "%s: %lld requests, %lld hits", changes[k],
              figure(m, "requests"), figure(m, "cache_hits"));
        unref_all(refs, 5);
        model_close(m);
    }

    /* --no-cache: neither read nor written; stream mode: off unless cache = true */
    snprintf(options, sizeof options, base, srv->port, "");
    for (int k = 0; k < 3; k++) {
        env.no_cache = k == 0;
        env.streaming = k > 0;
        if (k == 2) snprintf(options, sizeof options, base, srv->port, "cache = true,");
        m = open_model(options, &err);
        CHECK(m, "open: %s", err.msg);
        if (!m) break;
        drive(m, 5, results, refs, NULL, 5000);
        s = summary_of(m);
        long long want_requests = k == 2 ? 0 : 5;
        CHECK(json_integer_value(json_object_get(s, "requests")) == want_requests &&
                  json_is_null(json_object_get(s, "cache")) == (k < 2),
              "%s: %lld requests", k == 0 ? "no_cache" : k == 1 ? "stream" : "stream with cache = true",
              (long long)json_integer_value(json_object_get(s, "requests")));
        json_decref(s);
        unref_all(refs, 5);
        model_close(m);
    }
    env.no_cache = 0;
    env.streaming = 0;

    /* embeddings: the vector comes back from the cache whole */
    snprintf(options, sizeof options,
             "{ endpoint = 'http://127.0.0.1:%d/v1', model = 'embed', prompt = '{{summary}}', task = 'embedding' }",
             srv->port);
    double first[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        m = open_model(options, &err);
        CHECK(m, "open: %s", err.msg);
        if (!m) goto done;
        drive(m, 5, results, refs, NULL, 5000);
        lua_rawgeti(L, LUA_REGISTRYINDEX, refs[3]);
        lua_getfield(L, -1, "embedding");
        CHECK(results[3].ok && lua_istable(L, -1) && lua_rawlen(L, -1) == 8, "embedding %d: %s", k, results[3].reason);
        lua_rawgeti(L, -1, 1);
        double v = lua_tonumber(L, -1);
        lua_pop(L, 3);
        if (k == 0) first[0] = v;
        else first[1] = v;
        if (k == 1) CHECK(figure(m, "requests") == 0 && figure(m, "cache_hits") == 5, "embedding: warm run hits");
        unref_all(refs, 5);
        model_close(m);
    }
    CHECK(first[0] == first[1], "embedding from the cache is the same vector: %.17g %.17g", first[0], first[1]);

    /* two models on one cache file at once: the second cannot open it */
    snprintf(options, sizeof options, base, srv->port, "");
    m = open_model(options, &err);
    struct model *second = open_model(options, &err);
    CHECK(m && !second && strstr(err.msg, "in use by another runnel process"), "second opener: %s",
          second ? "opened" : err.msg);
    model_close(second);
    model_close(m);
done:
    env.state_dir = NULL;
    env.no_cache = 0;
    env.streaming = 0;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) { /* best effort */ }
}

static void test_retries(void)
{
    struct server srv;
    if (server_start(&srv, "--fail-rate 0.3 --retry-after 0 --seed 7")) { failed++; return; }
    struct model *m = open_test_model(
        srv.port, "prompt = '{{summary}}', output = { rating = { type = 'integer', min = 1, max = 5 } }, limits = { retries = 10 }");
    if (m) {
        size_t n = 150, ok = 0;
        drive(m, n, results, refs, NULL, 9000);
        for (size_t i = 0; i < n; i++) ok += results[i].ok && record_integer(refs[i], "rating") == ratings[i % 5];
        CHECK(ok == n, "fail-rate 0.3: %zu of %zu ok", ok, n);
        long long retries = figure(m, "retries"), requests = figure(m, "requests");
        CHECK(retries > 25 && requests == (long long)n + retries, "retries %lld, requests %lld", retries, requests);
        CHECK(server_stat(&srv, "requests") == requests, "server saw %lld requests, the model sent %lld",
              server_stat(&srv, "requests"), requests);
        unref_all(refs, n);
        model_close(m);
    }
    server_stop(&srv);
}

static void test_429(void)
{
    struct server srv;
    if (server_start(&srv, "--rate-429 1 --retry-after 1")) { failed++; return; }
    struct model *m = open_test_model(
        srv.port, "prompt = '{{summary}}', output = { rating = { type = 'integer' } }, limits = { retries = 1, outage = '3s' }");
    if (m) {
        /* a 429 to everyone is the endpoint's: no record fails for it, whatever its retries; the
         * breaker probes once a Retry-After, and the outage stops the job */
        struct rn_err err;
        if (drive_outage(m, 4, results, refs, 10000, &err) == 0) {
            char want[128];
            snprintf(want, sizeof want, "model endpoint http://127.0.0.1:%d: unreachable for 3s (HTTP 429)", srv.port);
            CHECK(strcmp(err.msg, want) == 0, "429 stop: %s", err.msg);
        }
        long long requests = server_stat(&srv, "requests");
        CHECK(requests >= 5 && requests <= 10, "no stampede, one probe a second: %lld requests", requests);
        unref_all(refs, 4);
        model_close(m);
    }
    server_stop(&srv);
}

static void test_timeout(void)
{
    struct server srv;
    if (server_start(&srv, "--hang-rate 1")) { failed++; return; }
    struct model *m = open_test_model(
        srv.port, "prompt = '{{summary}}', output = { rating = { type = 'integer' } },"
                  "limits = { retries = 1, timeout = '300ms', outage = '2s' }");
    if (m) {
        struct rn_err err;
        if (drive_outage(m, 3, results, refs, 10000, &err) == 0)
            CHECK(strstr(err.msg, ": unreachable for 2s (timeout)") != NULL, "timeout stop: %s", err.msg);
        unref_all(refs, 3);
        model_close(m);
    }
    server_stop(&srv);
}

static void test_invalid(void)
{
    struct server srv;
    if (server_start(&srv, "--malformed-rate 1")) { failed++; return; }
    const char *variants[] = {"", "structured = false,"};
    const char *want[] = {"invalid answer: not valid JSON",
                          "invalid answer: rating: expected an integer from 1 to 5, got \"The review"};
    for (int v = 0; v < 2; v++) {
        char options[512];
        snprintf(options, sizeof options,
                 "{ endpoint = 'http://127.0.0.1:%d/v1', model = 'test', prompt = '{{summary}}', %s"
                 "  output = { rating = { type = 'integer', min = 1, max = 5 } } }", srv.port, variants[v]);
        struct rn_err err;
        struct model *m = open_model(options, &err);
        CHECK(m, "open: %s", err.msg);
        if (!m) continue;
        drive(m, 5, results, refs, NULL, 5000);
        CHECK(!results[1].ok && strncmp(results[1].reason, want[v], strlen(want[v])) == 0, "malformed reason: %s",
              results[1].reason);
        CHECK(results[1].text[0] != '\0', "the model's last answer comes with the failure");
        CHECK(figure(m, "requests") == 10 && figure(m, "invalid_answers") == 10 && figure(m, "corrections") == 5 &&
                  figure(m, "corrected") == 0,
              "one correction per record: requests %lld invalid %lld corrections %lld", figure(m, "requests"),
              figure(m, "invalid_answers"), figure(m, "corrections"));
        unref_all(refs, 5);
        model_close(m);
    }
    server_stop(&srv);

    /* out of range on about half the answers: a correction often fixes it */
    if (server_start(&srv, "--out-of-range-rate 0.5 --seed 3")) { failed++; return; }
    struct model *m = open_test_model(
        srv.port, "prompt = '{{summary}}', output = { rating = { type = 'integer', min = 1, max = 5 } }");
    if (m) {
        size_t n = 100, ok = 0, range_failures = 0;
        drive(m, n, results, refs, NULL, 5000);
        for (size_t i = 0; i < n; i++) {
            if (results[i].ok) ok++;
            else if (strstr(results[i].reason, "invalid answer: rating: ") &&
                     strstr(results[i].reason, " is out of range 1..5")) range_failures++;
        }
        CHECK(ok + range_failures == n && ok > 50 && range_failures > 5, "out of range: %zu ok, %zu failed", ok,
              range_failures);
        CHECK(figure(m, "corrections") > 20, "corrections %lld", figure(m, "corrections"));
        CHECK(figure(m, "corrected") + (long long)range_failures == figure(m, "corrections"),
              "corrected %lld + failed %zu = correction calls %lld", figure(m, "corrected"), range_failures,
              figure(m, "corrections"));
        unref_all(refs, n);
        model_close(m);
    }
    server_stop(&srv);
}

static void test_not_retried(void)
{
    struct server srv;
    if (server_start(&srv, "--api-key right-key-000")) { failed++; return; }
    struct rn_err err;
    char options[512];
    /* 401: a wrong key heals by no retry: the job stops, naming the endpoint, the status and the
     * server's message, the key nowhere; no record is reported (they are read again on a rerun) */
    snprintf(options, sizeof options,
             "{ endpoint = 'http://127.0.0.1:%d/v1', model = 'test', prompt = '{{summary}}', api_key = '%s',"
             "  output = { rating = { type = 'integer' } } }", srv.port, API_KEY);
    struct model *m = open_model(options, &err);
    CHECK(m, "open: %s", err.msg);
    if (m) {
        struct run run = {results, 0};
        int rc = submit_until_stopped(m, 2, &run, &err);
        char expect[128];
        snprintf(expect, sizeof expect, "model.openai: POST http://127.0.0.1:%d/v1/chat/completions: HTTP 401: ", srv.port);
        CHECK(rc == -1 && strncmp(err.msg, expect, strlen(expect)) == 0 && strstr(err.msg, "Incorrect API key provided") &&
                  strstr(err.msg, "no record can succeed; check api_key)") && !strstr(err.msg, API_KEY),
              "401 stops the job: %s", err.msg);
        CHECK(run.done == 0 && figure(m, "failed") == 0, "401: %zu records reported", run.done);
        /* the first request goes out alone (quota.c: the quota is not known yet): its 401 is the only one */
        CHECK(figure(m, "requests") == 1 && figure(m, "retries") == 0, "401 not retried: %lld requests",
              figure(m, "requests"));
        unref_all(refs, 2);
        model_close(m);
    }
    /* 413: a prompt over the server's 1 MiB limit */
    snprintf(options, sizeof options,
             "{ endpoint = 'http://127.0.0.1:%d/v1', model = 'test', prompt = '{{summary}}', api_key = 'right-key-000',"
             "  output = { rating = { type = 'integer' } } }", srv.port);
    m = open_model(options, &err);
    CHECK(m, "open: %s", err.msg);
    if (m) {
        char *big = malloc(1200000);
        memset(big, 'a', 1199999);
        big[1199999] = '\0';
        drive(m, 1, results, refs, big, 5000);
        free(big);
        CHECK(!results[0].ok && strncmp(results[0].reason, "HTTP 413: ", 10) == 0, "413 reason: %s", results[0].reason);
        CHECK(figure(m, "requests") == 1, "413 not retried");
        unref_all(refs, 1);
        model_close(m);
    }
    /* 400 from the embeddings endpoint */
    snprintf(options, sizeof options,
             "{ endpoint = 'http://127.0.0.1:%d/v1', model = 'test', prompt = '{{summary}}', api_key = 'right-key-000',"
             "  task = 'embedding', parameters = { dimensions = 0 } }", srv.port);
    m = open_model(options, &err);
    CHECK(m, "open: %s", err.msg);
    if (m) {
        drive(m, 1, results, refs, NULL, 5000);
        CHECK(!results[0].ok && strncmp(results[0].reason, "HTTP 400: {", 11) == 0 && strlen(results[0].reason) < 330,
              "400 reason: %s", results[0].reason);
        CHECK(figure(m, "requests") == 1 && figure(m, "retries") == 0, "400 not retried");
        unref_all(refs, 1);
        model_close(m);
    }
    server_stop(&srv);
}

static void test_redaction(void)
{
    struct server echo;
    if (echo_start(&echo)) { CHECK(0, "echo server"); return; }
    char options[512];
    snprintf(options, sizeof options,
             "{ endpoint = 'http://127.0.0.1:%d/v1', model = 'test', prompt = '{{summary}}', api_key = '%s',"
             "  output = { rating = { type = 'integer', min = 1, max = 5 } }, limits = { retries = 0 } }",
             echo.port, API_KEY);
    struct rn_err err;
    struct model *m = open_model(options, &err);
    CHECK(m, "open: %s", err.msg);
    if (m) {
        drive(m, 1, results, refs, "hello", 5000);
        CHECK(!results[0].ok && strstr(results[0].reason, "HTTP 400: ") && strstr(results[0].reason, "[redacted]") &&
                  !strstr(results[0].reason, "SECRET"), "error body echo: %s", results[0].reason);
        unref_all(refs, 1);
        drive(m, 1, results, refs, "ANSWER", 5000);
        CHECK(!results[0].ok && strstr(results[0].reason, "invalid answer") && !strstr(results[0].reason, "SECRET") &&
                  strstr(results[0].text, "[redacted]") && !strstr(results[0].text, "SECRET"),
              "answer echo: %s / %s", results[0].reason, results[0].text);
        unref_all(refs, 1);
        model_close(m);
    }
    scripted_stop(&echo);
}

static void test_embedding(struct server *srv)
{
    char options[512];
    snprintf(options, sizeof options,
             "{ endpoint = 'http://127.0.0.1:%d/v1/', model = 'test', prompt = '{{summary}}', task = 'embedding' }",
             srv->port);
    struct rn_err err;
    struct model *m = open_model(options, &err);
    CHECK(m, "open: %s", err.msg);
    if (!m) return;
    drive(m, 5, results, refs, NULL, 5000);
    lua_rawgeti(L, LUA_REGISTRYINDEX, refs[3]);
    lua_getfield(L, -1, "embedding");
    CHECK(results[3].ok && lua_istable(L, -1) && lua_rawlen(L, -1) == 8, "embedding: %s", results[3].reason);
    lua_rawgeti(L, -1, 1);
    CHECK(lua_type(L, -1) == LUA_TNUMBER, "embedding holds numbers");
    lua_pop(L, 3);
    unref_all(refs, 5);
    model_close(m);
}

static void test_text_generation(struct server *srv)
{
    char options[512];
    snprintf(options, sizeof options,
             "{ endpoint = 'http://127.0.0.1:%d/v1', model = 'test', task = 'text_generation',"
             "  system = 'Summarize the review.', prompt = function(r) return 'Summarize: ' .. r.summary end }",
             srv->port);
    struct rn_err err;
    struct model *m = open_model(options, &err);
    CHECK(m, "open: %s", err.msg);
    if (!m) return;
    drive(m, 5, results, refs, NULL, 5000);
    lua_rawgeti(L, LUA_REGISTRYINDEX, refs[4]);
    lua_getfield(L, -1, "text");
    CHECK(results[4].ok && lua_tostring(L, -1) && strcmp(lua_tostring(L, -1), "excellent delicious") == 0,
          "text: %s (%s)", lua_tostring(L, -1), results[4].reason);
    lua_pop(L, 2);
    unref_all(refs, 5);
    model_close(m);
}

static void test_prompt_errors(struct server *srv)
{
    struct rn_err err;
    struct model *m = open_test_model(
        srv->port, "prompt = '{{nope}}', output = { rating = { type = 'integer' } }, limits = { concurrency = 4 }");
    if (!m) return;
    lua_newtable(L);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    CHECK(model_submit(m, ref, 0, &err) == -1 && strcmp(err.msg, "prompt: field 'nope' is missing") == 0,
          "missing field: %s", err.msg);
    CHECK(model_room(m) == 4 && model_in_flight(m) == 0, "room after a prompt error: %d", model_room(m));
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    model_close(m);
}

static void test_options(void)
{
    struct { const char *options, *want; } cases[] = {
        {"{ model = 'm', prompt = 'x', output = { r = { type = 'integer' } }, limits = { timeout = '3x' } }",
         "test.lua:7: model.openai: limits.timeout: bad duration \"3x\""},
        {"{ model = 'm', prompt = 'x' }", "test.lua:7: model.openai: output is required for task classification"},
        {"{ model = 'm', prompt = 'x', output = { r = { type = 'int' } } }", "output.r.type: unknown value \"int\"; did you mean integer?"},
        {"{ model = 'm', prompt = 'x', output = { r = { type = 'integer', minimum = 1 } } }", "output.r.minimum: unknown option (known: type, min, max, enum, description)"},
        {"{ model = 'm', prompt = 'x', output = { r = { type = 'string', min = 1 } } }", "output.r: min applies to integer"},
        {"{ model = 'm', prompt = 'x', output = { r = { type = 'vector' } } }", "type vector is for task embedding"},
        {"{ model = 'm', prompt = 'x', task = 'classify', output = { r = 'integer' } }", "task: unknown value \"classify\"; did you mean classification?"},
        {"{ model = 'm', prompt = 'x', output = { r = 'integer' }, limits = { bogus = 1 } }", "limits.bogus: unknown option (known: concurrency, rpm, tpm, timeout, connect_timeout, retries, outage)"},
        {"{ model = 'm', prompt = 'x', output = { r = 'integer' }, limits = { concurrency = 0 } }", "limits.concurrency: must be from 1 to 10000, got 0"},
        {"{ model = 'm', prompt = 'x', output = { r = 'integer' }, limits = { retries = -1 } }", "limits.retries: must be from 0 to 100, got -1"},
        {"{ model = 'm', prompt = 'x', output = { r = 'integer' }, price = { input = -1 } }", "price.input: must be at least 0, got -1"},
        {"{ model = 'm', prompt = 'a {{x', output = { r = 'integer' } }", "prompt: unclosed {{"},
        {"{ model = 'm', prompt = 'x', output = { r = 'integer' }, endpoint = 'ftp://h' }", "endpoint: \"ftp://h\" must start"},
        {"{ model = 'm', prompt = 'x', output = { r = 'integer' }, api_key = 42 }", "api_key: expected a string or secret(\"NAME\"), got 42"},
        {"{ model = 'm', prompt = 'x', output = { r = 'integer' }, api_key = 'a\\nb' }", "api_key: holds a line break"},
        {"{ model = 'm', prompt = 'x', output = { r = 'integer' }, parameters = { model = 'y' } }", "parameters.model: runnel writes it"},
        {"{ model = 'm', prompt = 'x', output = { r = 'integer' }, parameters = { response_format = { type = 'json_object' } } }",
         "structured output writes it"},
        {"{ model = 'm', prompt = 'x', output = { r = 'integer' }, temperature = 3 }", "test.lua:7: model.openai: temperature: must be from 0 to 2, got 3"},
        {"{ model = 'm', prompt = 'x', output = { r = 'integer' }, headers = { ['Bad Name'] = 'v' } }", "not a valid header name"},
        {"{ model = 'm', prompt = 'x', task = 'embedding', output = { e = 'integer' } }", "exactly one field of type vector"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct rn_err err = {{0}};
        struct model *m = open_model(cases[i].options, &err);
        CHECK(!m && strstr(err.msg, cases[i].want), "options %zu: want '%s', got '%s'", i, cases[i].want,
              m ? "(opened)" : err.msg);
        if (m) model_close(m);
        if (i == 0) CHECK(strncmp(err.msg, cases[0].want, strlen(cases[0].want)) == 0, "message starts with the place");
    }
    struct rn_err err;
    struct model *m = open_model("{ model = 'm', prompt = 'x', output = { r = 'integer' }, limits = { concurrency = 'auto' },"
                                 " cache = true, temperature = 0.2, seed = 1, max_tokens = 5, top_p = 0.5,"
                                 " parameters = { frequency_penalty = 0.5 }, headers = { ['X-Team'] = 'a' },"
                                 " organization = 'org' }", &err);
    CHECK(m && model_room(m) == 8, "concurrency auto opens with a window of 8: %s", m ? "" : err.msg);
    model_close(m);
    m = open_model("{ model = 'm', prompt = 'x', output = { r = 'integer' }, structured = false,"
                   " parameters = { response_format = { type = 'json_object' } } }", &err);
    CHECK(m, "without structured output, parameters.response_format is the job's: %s", m ? "" : err.msg);
    model_close(m);
}

static void test_rpm(struct server *srv)
{
    struct model *m = open_test_model(
        srv->port, "prompt = '{{summary}}', output = { rating = { type = 'integer' } }, limits = { rpm = 1200 }");
    if (!m) return;
    int64_t start = rn_now_ms();
    drive(m, 40, results, refs, NULL, 5000); /* a burst of 20, then 20 per second */
    int64_t elapsed = rn_now_ms() - start;
    CHECK(elapsed >= 900 && elapsed < 8000, "rpm 1200, 40 requests took %lld ms", (long long)elapsed);
    unref_all(refs, 40);
    model_close(m);
}

/* tpm: 20 calls of ~109 tokens each (a 400-byte prompt: estimated 103, corrected with the
 * usage the server reports) at 1000 tokens/s with a 1000-token burst take ~1.2 s. */
static void test_tpm(struct server *srv)
{
    struct model *m = open_test_model(
        srv->port, "prompt = 'Review: {{summary}}', output = { rating = { type = 'integer' } }, limits = { tpm = 60000 }");
    if (!m) return;
    char big[401];
    for (int i = 0; i < 400; i++) big[i] = "okay "[i % 5];
    big[400] = '\0';
    int64_t start = rn_now_ms();
    drive(m, 20, results, refs, big, 5000);
    int64_t elapsed = rn_now_ms() - start;
    long long tokens = figure(m, "tokens_in") + figure(m, "tokens_out");
    CHECK(tokens > 2000 && elapsed >= (tokens - 1000) * 8 / 10, /* drive stops at 5 s */
          "tpm 60000: %lld tokens took %lld ms", tokens, (long long)elapsed);
    unref_all(refs, 20);
    model_close(m);
}

/* Connection refused is retried, then fails with the curl message and the attempt count. */
static void test_connect_refused(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) || getsockname(fd, (struct sockaddr *)&addr, &len)) {
        CHECK(0, "no free port");
        return;
    }
    close(fd); /* nothing listens there now */
    char options[512];
    snprintf(options, sizeof options,
             "{ endpoint = 'http://127.0.0.1:%d/v1', model = 'test', prompt = '{{summary}}',"
             "  output = { rating = { type = 'integer' } }, limits = { retries = 2, outage = '1s' } }", ntohs(addr.sin_port));
    struct rn_err err;
    struct model *m = open_model(options, &err);
    CHECK(m, "open: %s", err.msg);
    if (!m) return;
    /* nothing listening: the records wait (no budget spent) until the outage stops the job */
    if (drive_outage(m, 2, results, refs, 10000, &err) == 0) {
        char want[128];
        snprintf(want, sizeof want, "model endpoint http://127.0.0.1:%d: unreachable for 1s (connection refused)",
                 ntohs(addr.sin_port));
        CHECK(strcmp(err.msg, want) == 0, "refused: %s", err.msg);
    }
    CHECK(figure(m, "retries") > 2, "refused: the breaker probed (%lld retries)", figure(m, "retries"));
    unref_all(refs, 2);
    model_close(m);
}

static void test_close_in_flight(void)
{
    struct server srv;
    if (server_start(&srv, "--latency-ms 3000")) { failed++; return; }
    struct model *m = open_test_model(
        srv.port, "prompt = '{{summary}}', output = { rating = { type = 'integer' } }, limits = { concurrency = 16 }");
    if (m) {
        drive_until(m, 16, results, refs, NULL, 300, 0); /* gives up after 300 ms with 16 in flight */
        CHECK(model_in_flight(m) == 16 && model_room(m) == 0, "in flight %zu", model_in_flight(m));
        model_close(m); /* aborts them; ASan/valgrind check nothing leaks */
        unref_all(refs, 16);
    }
    server_stop(&srv);
}

/* concurrency = "auto" against a server that answers 429 more often the more requests it
 * holds above 16: the window must settle near 16, not run to its ceiling. */
static void test_auto_concurrency(void)
{
    struct server srv;
    if (server_start(&srv, "--latency-ms 10 --degrade-above 16 --degrade-ms 1 --retry-after 0")) { failed++; return; }
    struct model *m = open_test_model(
        srv.port, "prompt = '{{summary}}', output = { rating = { type = 'integer' } }, limits = { concurrency = 'auto', retries = 10 }");
    if (m) {
        size_t n = 800, ok = 0;
        drive(m, n, results, refs, NULL, 8000);
        for (size_t i = 0; i < n; i++) ok += results[i].ok;
        char *text = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&text, &len);
        model_print_summary(m, out);
        fclose(out);
        const char *w = strstr(text, "concurrency auto: started 8, ended ");
        int window = w ? atoi(w + 35) : -1;
        long long retries = figure(m, "retries"), requests = figure(m, "requests");
        CHECK(ok == n && window >= 4 && window <= 48 && retries * 4 < requests,
              "auto: %zu ok, window %d, %lld retries of %lld requests", ok, window, retries, requests);
        json_t *s = summary_of(m);
        json_t *c = json_object_get(s, "concurrency");
        double mean = json_real_value(json_object_get(c, "mean"));
        const char *mode = json_string_value(json_object_get(c, "mode"));
        CHECK(mode && strcmp(mode, "auto") == 0 &&
                  json_integer_value(json_object_get(c, "final")) == window && mean >= 4 && mean <= 48 &&
                  json_integer_value(json_object_get(c, "max")) >= window,
              "auto: summary concurrency %s", text);
        json_decref(s);
        free(text);
        unref_all(refs, n);
        model_close(m);
    }
    server_stop(&srv);
}

/* concurrency = "auto" against an overloaded server that sends Retry-After: 1 with its 429s:
 * each 429 delays its own record, and cuts the window, but does not stop every send for a
 * second (that made throughput collapse to a few hundred records/s). */
static void test_auto_retry_after(void)
{
    struct server srv;
    if (server_start(&srv, "--latency-ms 10 --degrade-above 16 --degrade-ms 1 --retry-after 1")) { failed++; return; }
    struct model *m = open_test_model(
        srv.port, "prompt = '{{summary}}', output = { rating = { type = 'integer' } }, limits = { concurrency = 'auto', retries = 10 }");
    if (m) {
        size_t n = 800, ok = 0;
        int64_t start = rn_now_ms();
        drive(m, n, results, refs, NULL, 8000);
        int64_t elapsed = rn_now_ms() - start;
        for (size_t i = 0; i < n; i++) ok += results[i].ok;
        json_t *s = summary_of(m);
        json_t *c = json_object_get(s, "concurrency");
        long long final = json_integer_value(json_object_get(c, "final"));
        long long retries = json_integer_value(json_object_get(s, "retries"));
        CHECK(ok == n && final >= 4 && final <= 48, /* a collapse (>= 10 s) misses drive's 8 s deadline */
              "auto with Retry-After 1: %zu ok in %lld ms, window %lld, %lld retries", ok, (long long)elapsed, final,
              retries);
        json_decref(s);
        unref_all(refs, n);
        model_close(m);
    }
    server_stop(&srv);
}

/* ... but a server that refuses every request is still given its pause with "auto". */
static void test_auto_refused(void)
{
    struct server srv;
    if (server_start(&srv, "--rate-429 1 --retry-after 1")) { failed++; return; }
    struct model *m = open_test_model(
        srv.port, "prompt = '{{summary}}', output = { rating = { type = 'integer' } }, limits = { concurrency = 'auto', retries = 0 }");
    if (m) {
        drive_until(m, 200, results, refs, NULL, 800, 0);
        long long requests = server_stat(&srv, "requests");
        CHECK(requests > 0 && requests < 100, "auto, every request refused: %lld requests in 800 ms", requests);
        model_close(m);
        unref_all(refs, 200);
    }
    server_stop(&srv);
}

/* The engine keeps idle connections in its epoll set between requests; when the server
 * closes them, the next requests still go out, on new connections. */
static void test_idle_close(void)
{
    struct server srv;
    if (server_start(&srv, "--timeout 1")) { failed++; return; }
    struct model *m = open_test_model(
        srv.port, "prompt = '{{summary}}', output = { rating = { type = 'integer' } }, limits = { concurrency = 16 }");
    if (m) {
        size_t ok = 0;
        drive(m, 16, results, refs, NULL, 5000);
        for (size_t i = 0; i < 16; i++) ok += results[i].ok;
        unref_all(refs, 16);
        long long before = figure(m, "connections");
        usleep(1600 * 1000); /* the server drops the idle connections after 1 s */
        drive(m, 16, results, refs, NULL, 5000);
        for (size_t i = 0; i < 16; i++) ok += results[i].ok;
        unref_all(refs, 16);
        long long after = figure(m, "connections");
        CHECK(ok == 32 && before >= 1 && after > before, "idle close: %zu of 32 ok, connections %lld then %lld", ok,
              before, after);
        model_close(m);
    }
    server_stop(&srv);
}

/* Submit for 1 s (at most N_MAX records), then drain; print records/s and this process's
 * CPU time per record. Time-bounded so it also fits under valgrind. */
static void test_throughput(struct server *srv)
{
    struct rn_err err;
    struct model *m = open_test_model(
        srv->port, "prompt = 'Review: {{summary}}', output = { rating = { type = 'integer', min = 1, max = 5 } }, limits = { concurrency = 64 }");
    if (!m) return;
    struct rusage before, after;
    getrusage(RUSAGE_SELF, &before);
    int64_t start = rn_now_ms();
    struct run run = {results, 0};
    memset(results, 0, sizeof results);
    size_t n = 0;
    while ((rn_now_ms() - start < 1000 && n < N_MAX) || run.done < n) {
        while (n < N_MAX && rn_now_ms() - start < 1000 && model_room(m) > 0) {
            lua_createtable(L, 0, 1);
            lua_pushstring(L, texts[n % 5]);
            lua_setfield(L, -2, "summary");
            refs[n] = luaL_ref(L, LUA_REGISTRYINDEX);
            if (model_submit(m, refs[n], n, &err)) { CHECK(0, "submit: %s", err.msg); break; }
            n++;
        }
        if (model_poll(m, 20, on_done, &run, &err)) { CHECK(0, "poll: %s", err.msg); break; }
        if (rn_now_ms() - start > 9000) break;
    }
    int64_t elapsed = rn_now_ms() - start;
    getrusage(RUSAGE_SELF, &after);
    double cpu_us = (double)(after.ru_utime.tv_sec - before.ru_utime.tv_sec + after.ru_stime.tv_sec -
                             before.ru_stime.tv_sec) * 1e6 +
                    (double)(after.ru_utime.tv_usec - before.ru_utime.tv_usec + after.ru_stime.tv_usec -
                             before.ru_stime.tv_usec);
    size_t ok = 0;
    for (size_t i = 0; i < n; i++) ok += results[i].ok;
    CHECK(n > 0 && ok == n, "throughput run: %zu of %zu ok", ok, n);
    CHECK(figure(m, "connections") <= 64, "keep-alive: %lld connections for %zu requests", figure(m, "connections"), n);
    printf("test_model: %zu records in %lld ms: %.0f records/s at concurrency 64, %.1f us CPU per record here\n",
           n, (long long)elapsed, (double)n * 1000.0 / (double)(elapsed ? elapsed : 1), n ? cpu_us / (double)n : 0);
    unref_all(refs, n);
    model_close(m);
}

/* ---- the provider interface, through the engine ---- */

/* 429 insufficient_quota, with the key it got in the message. */
static void quota_rule(const char *req, int *status, char *head, size_t head_size, char *body, size_t body_size)
{
    (void)head;
    (void)head_size;
    char auth[256] = "";
    const char *a = strcasestr(req, "\nauthorization: ");
    if (a) sscanf(a + 16, "%255[^\r\n]", auth);
    *status = 429;
    snprintf(body, body_size, "{\"error\":{\"message\":\"You exceeded your current quota (%s)\","
             "\"type\":\"insufficient_quota\",\"code\":\"insufficient_quota\"}}", auth);
}

/* A verdict "fail job" stops the job: model_poll fails with the reason (redacted), no record is
 * reported (they are read again when the job reruns), nothing more is sent. */
static void test_job_fatal(void)
{
    struct server srv;
    if (scripted_start(&srv, quota_rule)) { CHECK(0, "quota server"); return; }
    char options[512];
    snprintf(options, sizeof options,
             "{ endpoint = 'http://127.0.0.1:%d/v1', model = 'test', prompt = '{{summary}}', api_key = '%s',"
             "  output = { rating = { type = 'integer' } }, limits = { retries = 5, concurrency = 2 } }",
             srv.port, API_KEY);
    struct rn_err err;
    struct model *m = open_model(options, &err);
    CHECK(m, "open: %s", err.msg);
    if (m) {
        struct run run = {results, 0};
        int rc = submit_until_stopped(m, 2, &run, &err);
        CHECK(rc == -1 && strstr(err.msg, "model.openai: POST http://") && strstr(err.msg, "/v1/chat/completions: HTTP 429: ") &&
                  strstr(err.msg, "You exceeded your current quota (Bearer [redacted])") &&
                  strstr(err.msg, "(the account has no quota left (insufficient_quota)") && !strstr(err.msg, "SECRET"),
              "job stops: rc %d: %s", rc, err.msg);
        CHECK(run.done == 0 && model_room(m) == 0, "job stops: %zu records reported, room %d", run.done, model_room(m));
        struct rn_err again;
        CHECK(model_poll(m, 0, on_done, &run, &again) == -1 && strcmp(again.msg, err.msg) == 0,
              "the next poll says the same: %s", again.msg);
        CHECK(figure(m, "requests") == 1 && figure(m, "retries") == 0 && figure(m, "failed") == 0,
              "job stops: %lld requests, %lld retries", figure(m, "requests"), figure(m, "retries"));
        unref_all(refs, 2);
        model_close(m);
    }
    scripted_stop(&srv);
}

/* The server wants exactly one X-Signature line: sig-N with N odd gets a 500, even a 200. */
static void signature_rule(const char *req, int *status, char *head, size_t head_size, char *body, size_t body_size)
{
    (void)head;
    (void)head_size;
    int lines = 0, number = 0;
    for (const char *p = req; (p = strcasestr(p, "\r\nX-Signature: ")); p += 2, lines++) sscanf(p, "\r\nX-Signature: sig-%d", &number);
    if (lines != 1) {
        *status = 400;
        snprintf(body, body_size, "{\"error\":{\"message\":\"%d signature lines\"}}", lines);
    } else if (number % 2) {
        *status = 500;
        snprintf(body, body_size, "{\"error\":{\"message\":\"signature %d refused\"}}", number);
    } else {
        snprintf(body, body_size, CHAT_ANSWER, "4");
    }
}

static int signatures; /* made by test_authorize's provider */

static int sign(void *self, struct http_request *req, struct rn_err *err)
{
    (void)self;
    (void)err;
    char value[32];
    snprintf(value, sizeof value, "sig-%d", ++signatures);
    http_request_add_header(req, "X-Signature", value);
    return 0;
}

static int refuse_to_sign(void *self, struct http_request *req, struct rn_err *err)
{
    (void)self;
    (void)req;
    return rn_fail(err, "the token endpoint answered 400");
}

/* authorize runs before every attempt, and the lines it added for the last attempt are gone. */
static void test_authorize(void)
{
    struct server srv;
    if (scripted_start(&srv, signature_rule)) { CHECK(0, "signature server"); return; }
    struct provider_ops signing = openai_provider;
    signing.authorize = sign;
    char options[512];
    snprintf(options, sizeof options,
             "{ endpoint = 'http://127.0.0.1:%d/v1', model = 'test', prompt = '{{summary}}',"
             "  output = { rating = { type = 'integer' } }, limits = { retries = 3, concurrency = 1 } }", srv.port);
    struct rn_err err;
    signatures = 0;
    struct model *m = open_model_with(options, &signing, &err);
    CHECK(m, "open: %s", err.msg);
    if (m) {
        drive(m, 4, results, refs, NULL, 5000);
        size_t ok = 0;
        for (size_t i = 0; i < 4; i++) ok += results[i].ok && record_integer(refs[i], "rating") == 4;
        CHECK(ok == 4 && signatures == 8 && figure(m, "requests") == 8 && figure(m, "retries") == 4,
              "signed per attempt: %zu ok, %d signatures, %lld requests (first reason: %s)", ok, signatures,
              figure(m, "requests"), results[0].reason);
        unref_all(refs, 4);
        model_close(m);
    }
    /* an authorize that fails stops the job: credentials that cannot be had fail every record */
    signing.authorize = refuse_to_sign;
    m = open_model_with(options, &signing, &err);
    CHECK(m, "open: %s", err.msg);
    if (m) {
        struct run run = {results, 0};
        memset(results, 0, sizeof results[0]);
        lua_createtable(L, 0, 1);
        lua_pushstring(L, texts[0]);
        lua_setfield(L, -2, "summary");
        refs[0] = luaL_ref(L, LUA_REGISTRYINDEX);
        CHECK(model_submit(m, refs[0], 0, &err) == 0, "submit: %s", err.msg);
        int rc = model_poll(m, 20, on_done, &run, &err);
        CHECK(rc == -1 && strcmp(err.msg, "model.openai: authorize: the token endpoint answered 400") == 0 &&
                  run.done == 0 && figure(m, "requests") == 0,
              "authorize fails: rc %d: %s", rc, err.msg);
        unref_all(refs, 1);
        model_close(m);
    }
    scripted_stop(&srv);
}

/* The engine asks the provider only for what it says it can do, and checks its version. */
static void test_capabilities(void)
{
    struct provider_ops chat_only = openai_provider, embeddings_only = openai_provider, old = openai_provider;
    chat_only.capabilities = PROVIDER_CHAT;
    embeddings_only.capabilities = PROVIDER_EMBEDDINGS;
    old.version = 1;
    struct rn_err err;
    struct model *m = open_model_with("{ model = 'm', prompt = 'x', task = 'embedding' }", &chat_only, &err);
    CHECK(!m && strstr(err.msg, "test.lua:7: model.openai: task: this provider does not do embedding"), "%s", err.msg);
    model_close(m);
    m = open_model_with("{ model = 'm', prompt = 'x', output = { r = 'integer' } }", &embeddings_only, &err);
    CHECK(!m && strstr(err.msg, "task: this provider does not do classification"), "%s", err.msg);
    model_close(m);
    m = open_model_with("{ model = 'm', prompt = 'x', output = { r = 'integer' } }", &chat_only, &err);
    CHECK(m && !m->output.structured && !m->output.schema_json && !m->setup.structured,
          "without the capability, no structured output by default: %s", m ? "" : err.msg);
    model_close(m);
    m = open_model_with("{ model = 'm', prompt = 'x', output = { r = 'integer' }, structured = true }", &chat_only, &err);
    CHECK(!m && strstr(err.msg, "structured: this provider has no structured output"), "%s", err.msg);
    model_close(m);
    m = open_model_with("{ model = 'm', prompt = 'x', output = { r = 'integer' } }", NULL, &err);
    CHECK(m && m->output.structured && m->setup.structured && m->setup.schema_json == m->output.schema_json,
          "openai: structured output by default, and open was told: %s", m ? "" : err.msg);
    model_close(m);
    m = open_model_with("{ model = 'm', prompt = 'x', output = { r = 'integer' } }", &old, &err);
    CHECK(!m && strstr(err.msg, "model.openai: the provider implements interface version 1, the engine version 2"),
          "%s", err.msg);
    model_close(m);
}

/* A 400 that quotes the OpenAI-Organization header it got. */
static void organization_rule(const char *req, int *status, char *head, size_t head_size, char *body,
                              size_t body_size)
{
    (void)head;
    (void)head_size;
    char org[256] = "";
    const char *a = strcasestr(req, "\nOpenAI-Organization: ");
    if (a) sscanf(a + 22, "%255[^\r\n]", org);
    *status = 400;
    snprintf(body, body_size, "{\"error\":{\"message\":\"no such organization: %s\"}}", org);
}

/* Secrets are the options the provider names (secret_options), not names the engine knows. */
static void test_secret_options(void)
{
    struct server srv;
    if (scripted_start(&srv, organization_rule)) { CHECK(0, "organization server"); return; }
    static const char *const organization_secret[] = {"organization", NULL};
    struct provider_ops org_secret = openai_provider;
    org_secret.secret_options = organization_secret;
    char options[512];
    snprintf(options, sizeof options,
             "{ endpoint = 'http://127.0.0.1:%d/v1', model = 'test', prompt = '{{summary}}', organization = 'org-SECRET-77',"
             "  output = { rating = { type = 'integer' } }, limits = { retries = 0 } }", srv.port);
    for (int k = 0; k < 2; k++) {
        struct rn_err err;
        struct model *m = open_model_with(options, k ? &org_secret : NULL, &err);
        CHECK(m, "open: %s", err.msg);
        if (!m) continue;
        drive(m, 1, results, refs, NULL, 5000);
        if (k) CHECK(!results[0].ok && strstr(results[0].reason, "no such organization: [redacted]") &&
                         !strstr(results[0].reason, "SECRET"), "a secret option: %s", results[0].reason);
        else CHECK(!results[0].ok && strstr(results[0].reason, "no such organization: org-SECRET-77"),
                   "not a secret option of openai: %s", results[0].reason);
        unref_all(refs, 1);
        model_close(m);
    }
    scripted_stop(&srv);
}

/* TEST_TIMES=1 prints how long each test took. */
#define TIMED(call)                                                                              \
    do {                                                                                         \
        int64_t started = rn_now_ms();                                                           \
        call;                                                                                    \
        if (getenv("TEST_TIMES")) printf("  %-40s %lld ms\n", #call, (long long)(rn_now_ms() - started)); \
    } while (0)

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    env.script = "test.lua";
    env.job_name = "test";
    struct rn_err err;
    L = luajob_new(&env, NULL, 0, &err);
    if (!L) {
        fprintf(stderr, "test_model: %s\n", err.msg);
        return 1;
    }

    TIMED(test_options());
    struct server srv;
    if (server_start(&srv, "") == 0) {
        TIMED(test_ratings(&srv));
        TIMED(test_enum_and_multi(&srv));
        TIMED(test_embedding(&srv));
        TIMED(test_text_generation(&srv));
        TIMED(test_prompt_errors(&srv));
        TIMED(test_rpm(&srv));
        TIMED(test_tpm(&srv));
        TIMED(test_throughput(&srv));
        TIMED(test_cache(&srv));
        server_stop(&srv);
    } else {
        failed++;
    }
    TIMED(test_retries());
    TIMED(test_429());
    TIMED(test_timeout());
    TIMED(test_invalid());
    TIMED(test_not_retried());
    TIMED(test_redaction());
    TIMED(test_connect_refused());
    TIMED(test_auto_concurrency());
    TIMED(test_auto_retry_after());
    TIMED(test_auto_refused());
    TIMED(test_idle_close());
    TIMED(test_close_in_flight());
    TIMED(test_job_fatal());
    TIMED(test_authorize());
    TIMED(test_capabilities());
    TIMED(test_secret_options());

    luajob_close(L);
    curl_global_cleanup();
    return check_report("test_model");
}
