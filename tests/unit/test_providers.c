/* test_providers.c: the provider contract tests: every tests/providers/PROVIDER/NAME.case file
 * (format: tests/providers/README.md) run through the provider interface (models/provider.h)
 * with no network: open with the case's options, build the call, compare the request with the
 * one expected byte for byte, then classify each canned answer and parse it, comparing verdict
 * and reply. Then, so that a passing run means something, each case is run again with one
 * expectation made wrong, and must fail.
 *
 * Run from the repository root: build/unit/test_providers [FILE.case ...] (default: every case).
 * Prints each failure with the case file and line, and "N passed, N failed". */
#include <glob.h>
#include <lauxlib.h>
#include <time.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/http.h"
#include "core/secret.h"
#include "lua/job.h"
#include "models/model.h"

#include "check.h"

#define SECTIONS_MAX 64
#define ANSWERS_MAX 8
#define LINES_MAX 64

/* ---- a case file ---- */

struct section {
    const char *name;
    char *text;       /* the lines after the marker, without the trailing line breaks */
    int line;         /* of its first text line */
};

struct answer_case {
    int line;                         /* of the answer section */
    long status;
    struct http_header headers[LINES_MAX];
    size_t header_count;
    char *body;
    size_t body_len;
    int verdict_line;
    struct provider_verdict verdict;  /* expected; why is a substring */
    int reply_line;                   /* 0: no reply section (the answer is not parsed) */
    char *text;                       /* expected reply text ("" when not given) */
    json_t *vector;                   /* expected embedding, or NULL */
    json_t *vectors;                  /* a call of several inputs: the expected vectors (null: none), or NULL */
    int64_t tokens_in, tokens_out, cache_read, cache_write;
    char *error;                      /* parse must fail with a message holding this, or NULL */
};

/* An expected request: METHOD URL, header lines, body. */
struct request_case {
    int line;                         /* of the section; 0: none */
    char *method, *url;
    char *headers[LINES_MAX];
    size_t header_count;
    char *body;
};

struct case_file {
    const char *path;
    char provider[64];
    char *data;                       /* the file; sections point into it */
    struct section sections[SECTIONS_MAX];
    size_t section_count;
    struct section *options, *open_error;
    /* the call */
    enum model_task task;
    char *system, *prompt, *schema, *previous, *correction;
    char *record;                     /* a Lua table constructor: the record the call is for, or NULL */
    json_t *inputs;                   /* several embedding inputs in one request (build_inputs), or NULL */
    time_t time;                      /* the provider's wall clock; 0: the real one */
    struct request_case request;
    /* credentials fetched by refresh: the request expected, the canned answer, or the error
     * refreshed must fail with */
    struct request_case credentials_request;
    struct answer_case credentials_answer;
    struct section *credentials_error;
    struct answer_case answers[ANSWERS_MAX];
    size_t answer_count;
};

static const char *const task_names[] = {"classification", "text_generation", "embedding", "regression", "clustering"};

/* How a run reports: each mismatch printed (unless quiet) and counted. */
struct run {
    const struct case_file *c;
    int quiet;
    int failures;
};

static void mismatch(struct run *run, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void mismatch(struct run *run, int line, const char *fmt, ...)
{
    run->failures++;
    if (run->quiet) return;
    printf("FAIL %s:%d: ", run->c->path, line);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}

/* A value after "key: ": the rest of the line, or a JSON string when it starts with a quote. */
static char *value_of(const char *text)
{
    if (*text != '"') return rn_strdup(text);
    json_t *s = json_loads(text, JSON_DECODE_ANY, NULL);
    char *v = json_is_string(s) ? rn_strndup(json_string_value(s), json_string_length(s)) : NULL;
    json_decref(s);
    return v;
}

/* Split "key: value" (value may be empty) in place. 0, or -1 when there is no colon. */
static int split_key(char *line, char **key, char **value)
{
    char *colon = strchr(line, ':');
    if (!colon) return -1;
    *colon = '\0';
    *key = line;
    *value = colon + 1;
    while (**value == ' ') (*value)++;
    return 0;
}

/* The next line of *cursor (NUL-terminated in place), or NULL at the end. */
static char *next_line(char **cursor)
{
    if (!*cursor) return NULL;
    char *line = *cursor, *nl = strchr(line, '\n');
    if (nl) { *nl = '\0'; *cursor = nl + 1; }
    else *cursor = NULL;
    return line;
}

static int parse_error(const struct case_file *c, int line, const char *what)
{
    printf("FAIL %s:%d: %s\n", c->path, line, what);
    return -1;
}

static int parse_call(struct case_file *c, struct section *s)
{
    char *cursor = s->text, *line;
    for (int n = s->line; (line = next_line(&cursor)); n++) {
        char *key, *value;
        if (!*line) continue;
        if (split_key(line, &key, &value)) return parse_error(c, n, "call: expected key: value");
        char **to = strcmp(key, "system") == 0 ? &c->system : strcmp(key, "prompt") == 0 ? &c->prompt
                  : strcmp(key, "schema") == 0 ? &c->schema : strcmp(key, "previous") == 0 ? &c->previous
                  : strcmp(key, "correction") == 0 ? &c->correction : strcmp(key, "record") == 0 ? &c->record : NULL;
        if (strcmp(key, "task") == 0) {
            int found = 0;
            for (int t = 0; t <= MODEL_TASK_CLUSTERING; t++)
                if (strcmp(value, task_names[t]) == 0) { c->task = (enum model_task)t; found = 1; }
            if (!found) return parse_error(c, n, "call: task is classification, text_generation, embedding, regression or clustering");
        } else if (strcmp(key, "time") == 0) { /* 2024-05-01T12:00:00Z */
            struct tm tm = {0};
            char *end = strptime(value, "%Y-%m-%dT%H:%M:%SZ", &tm);
            if (!end || *end) return parse_error(c, n, "call: time is YYYY-MM-DDTHH:MM:SSZ");
            c->time = timegm(&tm);
        } else if (strcmp(key, "inputs") == 0) { /* ["text", ...]: build_inputs and parse_inputs */
            json_decref(c->inputs);
            c->inputs = json_loads(value, 0, NULL);
            size_t i;
            json_t *item;
            int strings = json_array_size(c->inputs) > 0;
            json_array_foreach(c->inputs, i, item) strings = strings && json_is_string(item);
            if (!strings) return parse_error(c, n, "call: inputs is a JSON array of strings");
        } else if (to) {
            free(*to);
            *to = value_of(value);
            if (!*to) return parse_error(c, n, "call: a value in quotes must be a JSON string");
        } else {
            return parse_error(c, n, "call: keys are task, system, prompt, inputs, schema, previous, correction, record, time");
        }
    }
    if (!c->prompt && !c->inputs) return parse_error(c, s->line, "call: give the prompt (or inputs)");
    return 0;
}

/* "METHOD URL", header lines, a blank line, the body. */
static int parse_request(struct case_file *c, struct section *s, struct request_case *q)
{
    char *cursor = s->text, *line = next_line(&cursor);
    char *space = line ? strchr(line, ' ') : NULL;
    if (!space) return parse_error(c, s->line, "request: the first line is METHOD URL");
    q->line = s->line;
    q->method = rn_strndup(line, (size_t)(space - line));
    q->url = rn_strdup(space + 1);
    int n = s->line + 1;
    while ((line = next_line(&cursor)) && *line) {
        if (q->header_count == LINES_MAX) return parse_error(c, n, "request: too many headers");
        q->headers[q->header_count++] = rn_strdup(line);
        n++;
    }
    q->body = rn_strdup(cursor ? cursor : "");
    return 0;
}

/* "HTTP STATUS", header lines, a blank line, the body. */
static int parse_answer(struct case_file *c, struct section *s, struct answer_case *a)
{
    char *cursor = s->text, *line = next_line(&cursor);
    a->line = s->line;
    if (!line || sscanf(line, "HTTP %ld", &a->status) != 1) return parse_error(c, s->line, "answer: the first line is HTTP STATUS");
    int n = s->line + 1;
    while ((line = next_line(&cursor)) && *line) {
        char *key, *value;
        if (a->header_count == LINES_MAX || split_key(line, &key, &value))
            return parse_error(c, n, "answer: a header line is Name: value");
        a->headers[a->header_count++] = (struct http_header){key, value, strlen(key), strlen(value)};
        n++;
    }
    a->body = cursor ? cursor : "";
    a->body_len = strlen(a->body);
    provider_verdict_init(&a->verdict);
    a->text = rn_strdup("");
    return 0;
}

static int parse_number(const struct case_file *c, int line, const char *value, int64_t *out)
{
    char *end;
    long long v = strtoll(value, &end, 10);
    if (end == value || *end) return parse_error(c, line, "expected an integer");
    *out = v;
    return 0;
}

static int parse_flag(const struct case_file *c, int line, const char *value, int *out)
{
    if (strcmp(value, "yes") == 0) *out = 1;
    else if (strcmp(value, "no") == 0) *out = 0;
    else return parse_error(c, line, "expected yes or no");
    return 0;
}

/* "ok", "retry", "fail record" or "fail job", then key: value lines. */
static int parse_verdict(struct case_file *c, struct section *s, struct answer_case *a)
{
    struct provider_verdict *v = &a->verdict;
    char *cursor = s->text, *line = next_line(&cursor);
    a->verdict_line = s->line;
    if (!line) return parse_error(c, s->line, "verdict: say ok, retry, fail record or fail job");
    if (strcmp(line, "ok") == 0) v->outcome = PROVIDER_OK;
    else if (strcmp(line, "retry") == 0) v->outcome = PROVIDER_RETRY;
    else if (strcmp(line, "fail record") == 0) v->outcome = PROVIDER_FAIL_RECORD;
    else if (strcmp(line, "fail job") == 0) v->outcome = PROVIDER_FAIL_JOB;
    else return parse_error(c, s->line, "verdict: say ok, retry, fail record or fail job");
    for (int n = s->line + 1; (line = next_line(&cursor)); n++) {
        char *key, *value;
        int rc;
        if (!*line) continue;
        if (split_key(line, &key, &value)) return parse_error(c, n, "verdict: expected key: value");
        if (strcmp(key, "retry_after_ms") == 0) rc = parse_number(c, n, value, &v->retry_after_ms);
        else if (strcmp(key, "remaining_requests") == 0) rc = parse_number(c, n, value, &v->remaining_requests);
        else if (strcmp(key, "remaining_tokens") == 0) rc = parse_number(c, n, value, &v->remaining_tokens);
        else if (strcmp(key, "reset_requests_ms") == 0) rc = parse_number(c, n, value, &v->reset_requests_ms);
        else if (strcmp(key, "reset_tokens_ms") == 0) rc = parse_number(c, n, value, &v->reset_tokens_ms);
        else if (strcmp(key, "limit_requests") == 0) rc = parse_number(c, n, value, &v->limit_requests);
        else if (strcmp(key, "limit_tokens") == 0) rc = parse_number(c, n, value, &v->limit_tokens);
        else if (strcmp(key, "rate_limited") == 0) rc = parse_flag(c, n, value, &v->rate_limited);
        else if (strcmp(key, "congestion") == 0) rc = parse_flag(c, n, value, &v->congestion);
        else if (strcmp(key, "why") == 0) { v->why = value; rc = 0; }
        else rc = parse_error(c, n, "verdict: unknown key");
        if (rc) return -1;
    }
    return 0;
}

static int parse_reply(struct case_file *c, struct section *s, struct answer_case *a)
{
    char *cursor = s->text, *line;
    a->reply_line = s->line;
    for (int n = s->line; (line = next_line(&cursor)); n++) {
        char *key, *value;
        int rc = 0;
        if (!*line) continue;
        if (split_key(line, &key, &value)) return parse_error(c, n, "reply: expected key: value");
        if (strcmp(key, "text") == 0) {
            free(a->text);
            a->text = value_of(value);
            if (!a->text) return parse_error(c, n, "reply: a value in quotes must be a JSON string");
        } else if (strcmp(key, "vector") == 0) {
            a->vector = json_loads(value, 0, NULL);
            if (!json_is_array(a->vector)) return parse_error(c, n, "reply: vector is a JSON array");
        } else if (strcmp(key, "vectors") == 0) { /* [[...], null, ...]: one per input */
            a->vectors = json_loads(value, 0, NULL);
            if (!json_is_array(a->vectors)) return parse_error(c, n, "reply: vectors is a JSON array of arrays and nulls");
        } else if (strcmp(key, "tokens_in") == 0) {
            rc = parse_number(c, n, value, &a->tokens_in);
        } else if (strcmp(key, "tokens_out") == 0) {
            rc = parse_number(c, n, value, &a->tokens_out);
        } else if (strcmp(key, "cache_read") == 0) {
            rc = parse_number(c, n, value, &a->cache_read);
        } else if (strcmp(key, "cache_write") == 0) {
            rc = parse_number(c, n, value, &a->cache_write);
        } else if (strcmp(key, "error") == 0) {
            a->error = rn_strdup(value);
        } else {
            return parse_error(c, n, "reply: keys are text, vector, vectors, tokens_in, tokens_out, cache_read, cache_write, error");
        }
        if (rc) return -1;
    }
    return 0;
}

static void case_free(struct case_file *c)
{
    free(c->data);
    free(c->system);
    free(c->prompt);
    free(c->schema);
    free(c->previous);
    free(c->correction);
    free(c->record);
    json_decref(c->inputs);
    struct request_case *requests[] = {&c->request, &c->credentials_request};
    for (size_t k = 0; k < 2; k++) {
        free(requests[k]->method);
        free(requests[k]->url);
        for (size_t i = 0; i < requests[k]->header_count; i++) free(requests[k]->headers[i]);
        free(requests[k]->body);
    }
    free(c->credentials_answer.text);
    free(c->credentials_answer.error);
    for (size_t i = 0; i < c->answer_count; i++) {
        free(c->answers[i].text);
        free(c->answers[i].error);
        json_decref(c->answers[i].vector);
        json_decref(c->answers[i].vectors);
    }
    memset(c, 0, sizeof *c);
}

/* Read path into c: sections start with a line "--- NAME"; what comes before the first is the
 * case's description. The provider is the name of the folder the file is in. */
static int case_load(struct case_file *c, const char *path)
{
    memset(c, 0, sizeof *c);
    c->path = path;
    struct rn_err err;
    size_t len;
    c->data = rn_read_file(path, &len, &err);
    if (!c->data) return parse_error(c, 0, err.msg);
    const char *slash = strrchr(path, '/');
    const char *folder = slash;
    while (folder && folder > path && folder[-1] != '/') folder--;
    if (!slash || !folder) return parse_error(c, 0, "a case lives in tests/providers/PROVIDER/");
    snprintf(c->provider, sizeof c->provider, "%.*s", (int)(slash - folder), folder);

    char *p = c->data;
    int line = 1;
    while (*p) {
        char *nl = strchr(p, '\n');
        char *end = nl ? nl : p + strlen(p);
        if (end - p >= 4 && strncmp(p, "--- ", 4) == 0) {
            if (c->section_count == SECTIONS_MAX) return parse_error(c, line, "too many sections");
            *end = '\0';
            struct section *s = &c->sections[c->section_count++];
            s->name = p + 4;
            s->line = line + 1;
            s->text = nl ? nl + 1 : end;
            if (p > c->data) p[-1] = '\0'; /* ends the section before */
        }
        if (!nl) break;
        p = nl + 1;
        line++;
    }
    for (size_t i = 0; i < c->section_count; i++) { /* drop the blank lines a section ends with */
        struct section *s = &c->sections[i];
        size_t n = strlen(s->text);
        while (n && s->text[n - 1] == '\n') s->text[--n] = '\0';
    }

    struct answer_case *a = NULL;
    for (size_t i = 0; i < c->section_count; i++) {
        struct section *s = &c->sections[i];
        int rc = 0;
        if (strcmp(s->name, "options") == 0) {
            c->options = s;
        } else if (strcmp(s->name, "open-error") == 0) {
            c->open_error = s;
        } else if (strcmp(s->name, "call") == 0) {
            rc = parse_call(c, s);
        } else if (strcmp(s->name, "request") == 0) {
            rc = parse_request(c, s, &c->request);
        } else if (strcmp(s->name, "credentials-request") == 0) {
            rc = parse_request(c, s, &c->credentials_request);
        } else if (strcmp(s->name, "credentials-answer") == 0) {
            rc = parse_answer(c, s, &c->credentials_answer);
        } else if (strcmp(s->name, "credentials-error") == 0) {
            c->credentials_error = s;
        } else if (strcmp(s->name, "answer") == 0) {
            if (c->answer_count == ANSWERS_MAX) return parse_error(c, s->line, "too many answers");
            a = &c->answers[c->answer_count++];
            rc = parse_answer(c, s, a);
        } else if (strcmp(s->name, "verdict") == 0 || strcmp(s->name, "reply") == 0) {
            if (!a) return parse_error(c, s->line, "a verdict or reply follows its answer");
            rc = s->name[0] == 'v' ? parse_verdict(c, s, a) : parse_reply(c, s, a);
        } else {
            return parse_error(c, s->line - 1, "unknown section (options, open-error, call, credentials-request, "
                               "credentials-answer, credentials-error, request, answer, verdict, reply)");
        }
        if (rc) return -1;
    }
    if (!c->options) return parse_error(c, 1, "no options section");
    if (!c->open_error) {
        if (!c->prompt && !c->inputs) return parse_error(c, 1, "no call section");
        if (c->credentials_request.line && !c->credentials_answer.line)
            return parse_error(c, c->credentials_request.line, "a credentials-request needs its credentials-answer");
        if (c->credentials_error) {
            if (!c->credentials_answer.line) return parse_error(c, c->credentials_error->line, "a credentials-error needs its credentials-answer");
            return 0; /* the case ends there */
        }
        if (!c->request.method) return parse_error(c, 1, "no request section");
        if (!c->answer_count) return parse_error(c, 1, "no answer section");
        for (size_t i = 0; i < c->answer_count; i++)
            if (!c->answers[i].verdict_line) return parse_error(c, c->answers[i].line, "the answer has no verdict");
    }
    return 0;
}

/* ---- running a case ---- */

static const struct option_spec engine_options[] = {MODEL_COMMON_OPTIONS, {0}};

static int spec_has(const struct option_spec *spec, const char *name)
{
    for (; spec->name; spec++)
        if (strcmp(spec->name, name) == 0) return 1;
    return 0;
}


/* Push the options the provider is opened with: the case's, declared as a job script would
 * (model.PROVIDER{...}, with the call's task and a prompt), checked there and read back as the
 * checked copy, exactly what the engine hands the provider. 0, or -1 (reported) when they are
 * not a table of the provider's own options or do not pass the check (unless the case expects
 * that: an open-error holding the message). */
static int push_options(struct run *run, lua_State *L, const struct provider_ops *ops)
{
    const struct case_file *c = run->c;
    struct buf code;
    buf_init(&code);
    buf_printf(&code, "return %s", c->options->text);
    int rc = luaL_loadbuffer(L, code.data, code.len, c->path) || lua_pcall(L, 0, 1, 0);
    buf_free(&code);
    if (rc || !lua_istable(L, -1)) {
        mismatch(run, c->options->line, "options: not a Lua table: %s", rc ? lua_tostring(L, -1) : luaL_typename(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    int table = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, table)) {
        lua_pop(L, 1);
        const char *key = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(not a name)";
        if (!spec_has(ops->options, key) || spec_has(engine_options, key)) {
            mismatch(run, c->options->line, "options: '%s' is not an option of model.%s of its own (the engine's "
                     "options go in the call section)", key, ops->name);
            lua_pop(L, 2);
            return -1;
        }
    }
    lua_pushstring(L, task_names[c->task]);
    lua_setfield(L, table, "task");
    lua_pushstring(L, c->prompt ? c->prompt : "x");
    lua_setfield(L, table, "prompt");
    lua_getglobal(L, "model");
    lua_getfield(L, -1, ops->name);
    lua_remove(L, -2);
    lua_insert(L, table);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        const char *why = lua_tostring(L, -1);
        if (!c->open_error) mismatch(run, c->options->line, "options: %s", why);
        else if (!strstr(why, c->open_error->text))
            mismatch(run, c->open_error->line, "options: want an error holding '%s', got '%s'", c->open_error->text, why);
        lua_pop(L, 1);
        return -1;
    }
    luajob_decl_options(L, -1);
    lua_remove(L, -2);
    return 0;
}

static void compare_text(struct run *run, int line, const char *what, const char *want, const char *got)
{
    if (strcmp(want, got) != 0) mismatch(run, line, "%s: want\n    %s\n  got\n    %s", what, want, got);
}

static void compare_number(struct run *run, int line, const char *what, int64_t want, int64_t got)
{
    if (want != got) mismatch(run, line, "%s: want %lld, got %lld", what, (long long)want, (long long)got);
}

static void compare_request(struct run *run, const struct request_case *q, struct http_request *req)
{
    int line = q->line;
    compare_text(run, line, "method", q->method, req->method ? req->method : "(none)");
    compare_text(run, line, "URL", q->url, req->url.data ? req->url.data : "");
    size_t i = 0;
    for (const struct curl_slist *h = http_request_header_list(req); h; h = h->next, i++) {
        if (i < q->header_count) {
            char what[32];
            snprintf(what, sizeof what, "header %zu", i + 1);
            compare_text(run, line + 1 + (int)i, what, q->headers[i], h->data);
        } else {
            mismatch(run, line + 1 + (int)i, "header %zu: not expected, got '%s'", i + 1, h->data);
        }
    }
    if (i < q->header_count)
        mismatch(run, line + 1 + (int)i, "header %zu: want '%s', got no more headers", i + 1, q->headers[i]);
    /* a body of GET is not sent: an empty expectation */
    compare_text(run, line + 2 + (int)q->header_count, "body", q->body, req->body.data ? req->body.data : "");
}

/* The credentials a provider fetches (refresh, refreshed): the request it wants sent, compared
 * with the case's, then its canned answer handed back. 0 to go on with the call; -1 when the
 * case ends here (a credentials-error, or a mismatch that leaves nothing to test). */
static int run_credentials(struct run *run, const struct provider_ops *ops, void *self)
{
    const struct case_file *c = run->c;
    if (!ops->refresh) {
        if (c->credentials_request.line) mismatch(run, c->credentials_request.line, "the provider fetches no credentials");
        return 0;
    }
    struct http_request req;
    http_request_init(&req);
    struct rn_err err;
    int64_t now = rn_now_ms(); /* the engine's clock */
    int rc = ops->refresh(self, now, &req, &err), result = 0;
    if (rc < 0) {
        mismatch(run, c->options->line, "refresh: %s", err.msg);
        result = -1;
    } else if (rc == 0) {
        if (c->credentials_request.line) mismatch(run, c->credentials_request.line, "refresh: no request wanted");
    } else if (!c->credentials_request.line) {
        mismatch(run, c->options->line, "refresh: wants a request the case does not expect: %s %s", req.method,
                 req.url.data ? req.url.data : "");
        result = -1;
    } else {
        compare_request(run, &c->credentials_request, &req);
        const struct answer_case *a = &c->credentials_answer;
        struct http_response answer = {a->status, a->headers, a->header_count, a->body, a->body_len};
        rc = ops->refreshed(self, &answer, NULL, now, &err);
        if (c->credentials_error) {
            if (rc == 0) mismatch(run, c->credentials_error->line, "refreshed: want an error holding '%s', it succeeded",
                                  c->credentials_error->text);
            else if (!strstr(err.msg, c->credentials_error->text))
                mismatch(run, c->credentials_error->line, "refreshed: want an error holding '%s', got '%s'",
                         c->credentials_error->text, err.msg);
            result = -1;
        } else if (rc) {
            mismatch(run, a->line, "refreshed: %s", err.msg);
            result = -1;
        } else if (http_request_clear(&req), ops->refresh(self, now, &req, &err) != 0) {
            mismatch(run, a->line, "refresh: wants another request right after a good answer");
        }
    }
    http_request_free(&req);
    return result;
}

static const char *outcome_name(enum provider_outcome o)
{
    switch (o) {
    case PROVIDER_OK: return "ok";
    case PROVIDER_RETRY: return "retry";
    case PROVIDER_FAIL_RECORD: return "fail record";
    case PROVIDER_FAIL_JOB: return "fail job";
    }
    return "?";
}

static void compare_verdict(struct run *run, const struct answer_case *a, const struct provider_verdict *got)
{
    const struct provider_verdict *want = &a->verdict;
    int line = a->verdict_line;
    compare_text(run, line, "outcome", outcome_name(want->outcome), outcome_name(got->outcome));
    compare_number(run, line, "retry_after_ms", want->retry_after_ms, got->retry_after_ms);
    compare_number(run, line, "rate_limited", want->rate_limited, got->rate_limited);
    compare_number(run, line, "congestion", want->congestion, got->congestion);
    compare_number(run, line, "remaining_requests", want->remaining_requests, got->remaining_requests);
    compare_number(run, line, "remaining_tokens", want->remaining_tokens, got->remaining_tokens);
    compare_number(run, line, "reset_requests_ms", want->reset_requests_ms, got->reset_requests_ms);
    compare_number(run, line, "reset_tokens_ms", want->reset_tokens_ms, got->reset_tokens_ms);
    compare_number(run, line, "limit_requests", want->limit_requests, got->limit_requests);
    compare_number(run, line, "limit_tokens", want->limit_tokens, got->limit_tokens);
    if (!want->why != !got->why || (want->why && !strstr(got->why, want->why)))
        mismatch(run, line, "why: want %s%s%s, got %s%s%s", want->why ? "'" : "", want->why ? want->why : "none",
                 want->why ? "'" : "", got->why ? "'" : "", got->why ? got->why : "none", got->why ? "'" : "");
}

static void compare_reply(struct run *run, const struct answer_case *a, int rc, const struct model_reply *r,
                          const struct rn_err *err)
{
    int line = a->reply_line;
    if (a->error) {
        if (rc == 0) mismatch(run, line, "parse: want an error holding '%s', got a reply", a->error);
        else if (!strstr(err->msg, a->error)) mismatch(run, line, "parse: want an error holding '%s', got '%s'", a->error, err->msg);
        return;
    }
    if (rc) {
        mismatch(run, line, "parse: want a reply, got the error '%s'", err->msg);
        return;
    }
    compare_text(run, line, "text", a->text, r->text.data ? r->text.data : "");
    if (!a->vector != !r->vector || (a->vector && !json_equal(a->vector, r->vector))) {
        char *got = r->vector ? json_dumps(r->vector, JSON_COMPACT) : NULL;
        mismatch(run, line, "vector: got %s", got ? got : "none");
        free(got);
    }
    compare_number(run, line, "tokens_in", a->tokens_in, r->tokens_in);
    compare_number(run, line, "tokens_out", a->tokens_out, r->tokens_out);
    compare_number(run, line, "cache_read", a->cache_read, r->tokens_cache_read);
    compare_number(run, line, "cache_write", a->cache_write, r->tokens_cache_write);
}

/* A reply of parse_inputs: the vectors (null where none), and the tokens. */
static void compare_inputs_reply(struct run *run, const struct answer_case *a, int rc, json_t *const *vectors, size_t n,
                                 int64_t tokens_in, const struct rn_err *err)
{
    int line = a->reply_line;
    if (a->error) {
        if (rc == 0) mismatch(run, line, "parse_inputs: want an error holding '%s', got a reply", a->error);
        else if (!strstr(err->msg, a->error)) mismatch(run, line, "parse_inputs: want an error holding '%s', got '%s'", a->error, err->msg);
        return;
    }
    if (rc) {
        mismatch(run, line, "parse_inputs: want a reply, got the error '%s'", err->msg);
        return;
    }
    compare_text(run, line, "text", a->text, ""); /* several inputs have no text */
    json_t *got = json_array();
    for (size_t i = 0; i < n; i++) json_array_append(got, vectors[i] ? vectors[i] : json_null());
    if (!a->vectors || !json_equal(a->vectors, got)) {
        char *text = json_dumps(got, JSON_COMPACT);
        mismatch(run, line, "vectors: got %s", text ? text : "?");
        free(text);
    }
    json_decref(got);
    compare_number(run, line, "tokens_in", a->tokens_in, tokens_in);
}

/* Run the case in run->c; mismatches are counted in run->failures. */
static void run_case(struct run *run)
{
    const struct case_file *c = run->c;
    const struct provider_ops *ops = plugin_provider(c->provider);
    if (!ops) {
        mismatch(run, 1, "no provider model.%s (the folder names it)", c->provider);
        return;
    }
    if (ops->version != PROVIDER_INTERFACE_VERSION) mismatch(run, 1, "interface version %d", ops->version);
    struct job_env env = {.script = c->path, .job_name = "contract"};
    struct rn_err err;
    lua_State *L = luajob_new(&env, NULL, 0, &err);
    if (!L) {
        mismatch(run, 1, "lua: %s", err.msg);
        return;
    }
    env.L = L;
    struct secret_set secrets;
    secret_set_init(&secrets);
    struct provider_setup setup = {c->task, c->schema != NULL, c->schema, c->time, &secrets};
    struct http_request req;
    http_request_init(&req);
    void *self = NULL;
    if (push_options(run, L, ops)) goto done; /* an open-error case may be settled by the check */
    self = ops->open(&env, -1, &setup, &err);
    if (c->open_error) {
        if (self) mismatch(run, c->open_error->line, "open: want an error holding '%s', it opened", c->open_error->text);
        else if (!strstr(err.msg, c->open_error->text))
            mismatch(run, c->open_error->line, "open: want an error holding '%s', got '%s'", c->open_error->text, err.msg);
        goto done;
    }
    if (!self) {
        mismatch(run, c->options->line, "open: %s", err.msg);
        goto done;
    }
    if (run_credentials(run, ops, self)) goto done;
    size_t inputs = json_array_size(c->inputs);
    struct model_call calls[16];
    const struct model_call *call_list[16];
    if (inputs > 16) {
        mismatch(run, c->request.line, "call: at most 16 inputs");
        goto done;
    }
    for (size_t i = 0; i < inputs; i++) {
        json_t *text = json_array_get(c->inputs, i);
        calls[i] = (struct model_call){.task = c->task, .prompt = json_string_value(text), .prompt_len = json_string_length(text),
                                       .record_ref = LUA_NOREF};
        call_list[i] = &calls[i];
    }
    struct model_call call = {
        .task = c->task, .system = c->system, .prompt = c->prompt, .prompt_len = c->prompt ? strlen(c->prompt) : 0,
        .schema_json = c->schema, .previous_answer = c->previous, .correction = c->correction, .record_ref = LUA_NOREF,
    };
    http_request_clear(&req);
    if (inputs) { /* several records' inputs in one request */
        if (!ops->build_inputs || !ops->parse_inputs) {
            mismatch(run, c->request.line, "call: inputs, and the provider has no build_inputs");
            goto done;
        }
        if (ops->build_inputs(self, call_list, inputs, &req, &err)) {
            mismatch(run, c->request.line, "build_inputs: %s", err.msg);
            goto done;
        }
    } else {
        if (c->record) { /* the record, as the pipeline holds it: a table in the registry */
            struct buf code;
            buf_init(&code);
            buf_printf(&code, "return %s", c->record);
            int bad = luaL_loadbuffer(L, code.data, code.len, c->path) || lua_pcall(L, 0, 1, 0) || !lua_istable(L, -1);
            buf_free(&code);
            if (bad) {
                mismatch(run, c->request.line, "call: record is not a Lua table");
                lua_pop(L, 1);
                goto done;
            }
            call.record_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        }
        if (ops->build(self, &call, &req, &err)) {
            mismatch(run, c->request.line, "build: %s", err.msg);
            goto done;
        }
    }
    int authorized = ops->authorize ? ops->authorize(self, &req, &err) : 0;
    if (authorized) {
        mismatch(run, c->request.line, "authorize: %s", authorized > 0 ? "no credentials yet" : err.msg);
        goto done;
    }
    compare_request(run, &c->request, &req);
    for (size_t i = 0; i < c->answer_count; i++) {
        const struct answer_case *a = &c->answers[i];
        struct http_response answer = {a->status, a->headers, a->header_count, a->body, a->body_len};
        struct provider_verdict verdict;
        provider_classify(ops, self, &answer, &verdict);
        compare_verdict(run, a, &verdict);
        if (!a->reply_line) continue;
        if (inputs) {
            json_t *vectors[16] = {NULL};
            int64_t tokens_in = 0;
            int rc = ops->parse_inputs(self, &answer, inputs, vectors, &tokens_in, &err);
            compare_inputs_reply(run, a, rc, vectors, inputs, tokens_in, &err);
            for (size_t k = 0; k < inputs; k++) json_decref(vectors[k]);
            continue;
        }
        struct model_reply reply = {.vector = NULL};
        buf_init(&reply.text);
        int rc = ops->parse(self, &answer, &reply, &err);
        compare_reply(run, a, rc, &reply, &err);
        buf_free(&reply.text);
        json_decref(reply.vector);
    }
done:
    if (self) ops->close(self);
    http_request_free(&req);
    secret_set_free(&secrets);
    luajob_close(L);
}

/* ---- the driver can fail: each case with one expectation made wrong ---- */

enum mutation { WRONG_BODY, WRONG_HEADER, WRONG_OUTCOME, WRONG_HINT, WRONG_REPLY, WRONG_TOKENS, WRONG_CACHE,
                WRONG_CREDENTIALS, MUTATIONS };
static const char *const mutation_names[] = {"request body", "request header", "verdict outcome", "retry hint",
                                             "reply text", "usage tokens", "prompt-cache tokens",
                                             "credentials request or error"};

/* The first answer whose reply is a text to compare, or NULL. */
static struct answer_case *first_reply(struct case_file *c)
{
    for (size_t i = 0; i < c->answer_count; i++)
        if (c->answers[i].reply_line && !c->answers[i].error) return &c->answers[i];
    return NULL;
}

/* *text with one more character (the old value goes to *saved). */
static void lengthen(char **text, void **saved)
{
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "%s~", *text);
    *saved = *text;
    *text = b.data;
}

/* Make one expectation of c wrong; 0 when the case has none of that kind. The old value goes
 * to *saved or *saved_number for mutation_undo. */
static int mutate(struct case_file *c, enum mutation m, void **saved, int64_t *saved_number)
{
    struct answer_case *a = c->answer_count ? &c->answers[0] : NULL, *replied = first_reply(c);
    switch (m) {
    case WRONG_BODY:
        if (c->open_error || !c->request.line) return 0;
        lengthen(&c->request.body, saved);
        return 1;
    case WRONG_HEADER:
        if (c->open_error || !c->request.header_count) return 0;
        c->request.header_count--; /* the last expected header is missing from the expectation */
        return 1;
    case WRONG_OUTCOME:
        if (!a) return 0;
        *saved_number = a->verdict.outcome;
        a->verdict.outcome = a->verdict.outcome == PROVIDER_OK ? PROVIDER_RETRY : PROVIDER_OK;
        return 1;
    case WRONG_HINT:
        if (!a) return 0;
        *saved_number = a->verdict.retry_after_ms;
        a->verdict.retry_after_ms += 1;
        return 1;
    case WRONG_REPLY:
        if (!replied) return 0;
        lengthen(&replied->text, saved);
        return 1;
    case WRONG_TOKENS:
        if (!replied) return 0;
        *saved_number = replied->tokens_in;
        replied->tokens_in += 1;
        return 1;
    case WRONG_CACHE: /* the first reply that counts prompt-cache tokens */
        for (size_t i = 0; i < c->answer_count; i++) {
            struct answer_case *r = &c->answers[i];
            if (!r->reply_line || r->error || !(r->cache_read || r->cache_write)) continue;
            *saved = r;
            *saved_number = r->cache_read;
            r->cache_read += 1;
            return 1;
        }
        return 0;
    case WRONG_CREDENTIALS:
        if (c->credentials_error) lengthen(&c->credentials_error->text, saved);
        else if (c->credentials_request.line) lengthen(&c->credentials_request.body, saved);
        else return 0;
        return 1;
    case MUTATIONS:
        break;
    }
    return 0;
}

static void mutation_undo(struct case_file *c, enum mutation m, void *saved, int64_t saved_number)
{
    struct answer_case *a = &c->answers[0], *replied = first_reply(c);
    switch (m) {
    case WRONG_BODY: free(c->request.body); c->request.body = saved; break;
    case WRONG_HEADER: c->request.header_count++; break;
    case WRONG_OUTCOME: a->verdict.outcome = (enum provider_outcome)saved_number; break;
    case WRONG_HINT: a->verdict.retry_after_ms = saved_number; break;
    case WRONG_REPLY: free(replied->text); replied->text = saved; break;
    case WRONG_TOKENS: replied->tokens_in = saved_number; break;
    case WRONG_CACHE: ((struct answer_case *)saved)->cache_read = saved_number; break;
    case WRONG_CREDENTIALS:
        if (c->credentials_error) { free(c->credentials_error->text); c->credentials_error->text = saved; }
        else { free(c->credentials_request.body); c->credentials_request.body = saved; }
        break;
    case MUTATIONS: break;
    }
}

static void test_file(const char *path, int mutations[MUTATIONS])
{
    struct case_file c;
    if (case_load(&c, path)) {
        failed++;
        case_free(&c);
        return;
    }
    struct run run = {&c, 0, 0};
    run_case(&run);
    CHECK(run.failures == 0, "%s: %d mismatches", path, run.failures);
    if (run.failures == 0) {
        for (int m = 0; m < MUTATIONS; m++) {
            void *saved = NULL;
            int64_t saved_number = 0;
            if (!mutate(&c, (enum mutation)m, &saved, &saved_number)) continue;
            struct run wrong = {&c, 1, 0};
            run_case(&wrong);
            CHECK(wrong.failures > 0, "%s: a wrong %s was not caught", path, mutation_names[m]);
            mutations[m]++;
            mutation_undo(&c, (enum mutation)m, saved, saved_number);
        }
    }
    case_free(&c);
}

int main(int argc, char **argv)
{
    int mutations[MUTATIONS] = {0};
    size_t files = 0;
    /* the cases say every credential they use: none comes from the tester's environment */
    static const char *const environment[] = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                                              "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_BEARER_TOKEN_BEDROCK",
                                              "GOOGLE_APPLICATION_CREDENTIALS"};
    for (size_t i = 0; i < sizeof environment / sizeof environment[0]; i++) unsetenv(environment[i]);
    if (argc > 1) {
        for (int i = 1; i < argc; i++, files++) test_file(argv[i], mutations);
    } else {
        glob_t g;
        if (glob("tests/providers/*/*.case", 0, NULL, &g) == 0) {
            for (size_t i = 0; i < g.gl_pathc; i++, files++) test_file(g.gl_pathv[i], mutations);
            globfree(&g);
        }
        CHECK(files >= 12, "only %zu case files under tests/providers/ (run from the repository root)", files);
        /* every kind of wrong expectation was tried on some case */
        for (int m = 0; m < MUTATIONS; m++) CHECK(mutations[m] > 0, "no case to try a wrong %s on", mutation_names[m]);
    }
    printf("test_providers: %zu case files\n", files);
    return check_report("test_providers");
}
