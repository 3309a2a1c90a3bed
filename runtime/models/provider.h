/* provider.h: the model provider interface, version 2: what a provider plugin (model.openai,
 * azure_openai, anthropic, bedrock, gemini, vertex, ollama, http) gives the model engine.
 *
 * A provider turns one call into one HTTP request (build), may sign or refresh credentials
 * before every attempt (authorize), says what an answer means (classify: ok, retry after N ms,
 * fatal for the record or for the job, with the rate-limit state it reported) and reads a 2xx
 * body into a reply (parse). Everything else (prompts, slots, limits, backoff, answer checks,
 * the cache, redaction of the secrets it names) is the engine's (models/engine.c), the same for
 * every provider. The hooks run on the job's loop and must not block it: authorize may sign
 * (core/sigv4) or use a token it holds. A provider that fetches its credentials over HTTP (an
 * OAuth token exchange) gives the engine that request through refresh, well before its token
 * expires; the engine sends it on the job's own HTTP client beside the calls and hands the
 * answer to refreshed, so no hook ever waits on the network. */
#ifndef RUNNEL_PROVIDER_H
#define RUNNEL_PROVIDER_H

#include <jansson.h>
#include <stdint.h>
#include <time.h>

#include "core/util.h"
#include "lua/options.h"

#define PROVIDER_INTERFACE_VERSION 2

struct job_env;        /* engine/plugin.h */
struct http_request;   /* core/http.h */
struct http_response;
struct secret_set;     /* core/secret.h */

/* What a model does for each record (Flink's names). A provider sees regression and clustering
 * only when it has PROVIDER_PREDICT; clustering over the job's centroids reaches it as
 * embedding calls (the engine picks the nearest centroid). */
enum model_task {
    MODEL_TASK_CLASSIFICATION,
    MODEL_TASK_TEXT_GENERATION,
    MODEL_TASK_EMBEDDING,
    MODEL_TASK_REGRESSION,   /* numbers from a remote model (model.http) */
    MODEL_TASK_CLUSTERING,   /* the nearest declared centroid, or the cluster a remote model names */
};

/* What a provider can do (provider_ops.capabilities). The engine refuses a task the provider
 * cannot do and asks for structured output only from one that has it. */
enum provider_capability {
    PROVIDER_CHAT = 1 << 0,        /* tasks classification and text_generation */
    PROVIDER_EMBEDDINGS = 1 << 1,  /* task embedding */
    PROVIDER_STRUCTURED = 1 << 2,  /* answers that follow a JSON schema */
    PROVIDER_BATCH = 1 << 3,       /* a batch API (hooks to come with the batch executor) */
    PROVIDER_PREDICT = 1 << 4,     /* tasks regression and clustering by the model itself: any answer */
};

/* What the engine decided for this model, handed to open. Lent; valid until close. */
struct provider_setup {
    enum model_task task;
    int structured;            /* every call carries schema_json and wants an answer that follows it */
    const char *schema_json;   /* the JSON schema built from `output`, or NULL */
    time_t fixed_time;         /* the wall clock for signatures and token lifetimes: 0 is time();
                                * the contract tests fix it so a signed request is known */
    struct secret_set *secrets;/* the engine's redaction set: a provider adds the credentials it
                                * fetches (an access token), so no message can show them */
};

/* One call as the engine hands it to build. Everything is lent for the duration of build. */
struct model_call {
    enum model_task task;
    const char *system;          /* system prompt, or NULL */
    const char *prompt;          /* the rendered user prompt */
    size_t prompt_len;
    const char *schema_json;     /* JSON schema of `output` when structured output is wanted, else NULL */
    const char *previous_answer; /* on the one retry after an invalid answer: what the model said */
    const char *correction;      /* ... and why it was rejected; NULL otherwise */
    int record_ref;              /* the record (a registry ref in the job's Lua state), for a provider
                                  * that makes its body from it (model.http); LUA_NOREF in tests */
};

/* One parsed answer as parse fills it. The engine empties text and sets vector to NULL first. */
struct model_reply {
    struct buf text;         /* the answer text (chat and completions) */
    json_t *vector;          /* embeddings: a JSON array of numbers (owned; the engine decrefs) */
    int64_t tokens_in;       /* every input token, those the provider's prompt cache served included */
    int64_t tokens_out;
    int64_t tokens_cache_read;  /* of tokens_in: read from the provider's prompt cache */
    int64_t tokens_cache_write; /* of tokens_in: written to it */
};

enum provider_outcome {
    PROVIDER_OK,            /* a good answer: parse reads it */
    PROVIDER_RETRY,         /* try again, no sooner than retry_after_ms (-1: the engine's backoff) */
    PROVIDER_FAIL_RECORD,   /* retrying cannot help this record: dead-letter it with the answer */
    PROVIDER_FAIL_JOB,      /* no record can succeed (e.g. no quota left): stop the job */
};

/* What classify says about one answer. provider_verdict_init sets the "nothing known" values. */
struct provider_verdict {
    enum provider_outcome outcome;
    int64_t retry_after_ms;     /* the server's hint (Retry-After, a reset time); -1: none */
    int rate_limited;           /* the server refused for rate (429): other sends hold back too */
    int congestion;             /* the server is overloaded (429, 5xx): the "auto" window shrinks */
    /* the rate-limit state the answer reported; -1 when it did not. A 2xx answer that says none
     * are left holds back every send until the reset. */
    int64_t remaining_requests, remaining_tokens;
    int64_t reset_requests_ms, reset_tokens_ms;
    const char *why;            /* FAIL_JOB, FAIL_RECORD: an explanation put before the status and
                                 * body in the job's error or the dead letter, or NULL; static, or
                                 * the provider's until its next classify */
};

struct provider_ops {
    int version;                       /* PROVIDER_INTERFACE_VERSION */
    const char *name;                  /* model.<name>{...} */
    const char *summary;
    const struct option_spec *options; /* provider options plus MODEL_COMMON_OPTIONS (model.h) */
    unsigned capabilities;             /* enum provider_capability bits; with PROVIDER_STRUCTURED the
                                        * options list `structured`, which the engine reads */
    const char *model_option;          /* the option that names the model ("model"), for the summary
                                        * and the cache file; NULL: none */
    /* Names of the options whose values are secrets, NULL-terminated. A string or secret()
     * value, or every value of a table option (headers), is redacted from every reason, dead
     * letter and log line the engine writes. */
    const char *const *secret_options;

    /* Open from the checked options table at stack index opts. NULL and err (naming the option)
     * on failure. */
    void *(*open)(struct job_env *env, int opts, const struct provider_setup *setup, struct rn_err *err);
    /* Build the request of one call into req, which the engine has cleared (core/http.h: method,
     * url, body, the lent header list, own header lines). Called once per call, not per attempt.
     * -1 and err fails the record. */
    int (*build)(void *self, const struct model_call *call, struct http_request *req, struct rn_err *err);
    /* Optional: called before every attempt, after the header lines of the last attempt's
     * authorize were dropped; may add header lines (a signature, a fresh token). 1: there are no
     * credentials yet (refresh is fetching them): the engine holds every send until refreshed
     * succeeds and asks again. -1 and err stops the job (credentials that cannot be had fail
     * every record). */
    int (*authorize)(void *self, struct http_request *req, struct rn_err *err);
    /* Optional, with refreshed: credentials fetched over HTTP. The engine calls refresh on the
     * loop at every wake-up while no refresh is in flight; when the provider wants one (no
     * token, or one that expires soon), it fills req (cleared by the engine; URL, method,
     * headers, body) and returns 1, and the engine sends it on the job's HTTP client. 0: none
     * wanted now. -1 and err stops the job. now_ms is the engine's clock (rn_now_ms). */
    int (*refresh)(void *self, int64_t now_ms, struct http_request *req, struct rn_err *err);
    /* The refresh request finished: its answer, or failure (curl's message) when none came.
     * 0 when it was used or the provider will ask again (refresh), -1 and err (naming the
     * URL or status at fault, never the credentials) stops the job. */
    int (*refreshed)(void *self, const struct http_response *answer, const char *failure, int64_t now_ms,
                     struct rn_err *err);
    /* Optional: what an answer means. NULL: provider_classify_default (OpenAI's rules). The body
     * has had the job's secrets redacted. */
    void (*classify)(void *self, const struct http_response *answer, struct provider_verdict *verdict);
    /* Parse an answer classified ok into reply (text, vector, usage). -1 and err when it does
     * not parse (the engine retries the call). */
    int (*parse)(void *self, const struct http_response *answer, struct model_reply *reply, struct rn_err *err);
    void (*close)(void *self);
};

void provider_verdict_init(struct provider_verdict *v);

/* OpenAI's rules, the default classify: 2xx ok; 408, 409, 429 and 5xx retried (429 and 5xx
 * are congestion, 429 is a rate limit) no sooner than Retry-After / retry-after-ms, or for a 429
 * the x-ratelimit-reset-* time of the limit that ran out; a 429 whose error is
 * insufficient_quota fails the job; any other status fails the record. x-ratelimit-remaining-*
 * and -reset-* fill the rate-limit state of every answer. */
void provider_classify_default(const struct http_response *answer, struct provider_verdict *verdict);

/* The verdict of ops on answer: its classify, or the default. What the engine and the provider
 * contract tests call. */
void provider_classify(const struct provider_ops *ops, void *self, const struct http_response *answer,
                       struct provider_verdict *verdict);

/* Header values in milliseconds, -1 when they do not parse: Retry-After (seconds or an
 * HTTP-date, from now), and durations like "6m0s", "1.5s", "20ms" (x-ratelimit-reset-*). */
int64_t provider_parse_retry_after(const char *value, size_t len);
int64_t provider_parse_duration(const char *value, size_t len);
/* An RFC 3339 time ("2024-05-01T12:00:30Z", fractions and offsets allowed) as ms after now
 * (0 when it has passed), -1 when it does not parse (Anthropic's rate-limit resets). */
int64_t provider_parse_rfc3339_ms(const char *value, size_t len, time_t now);
/* The wall clock a provider reads: setup->fixed_time, or time(). */
time_t provider_time(const struct provider_setup *setup);

#endif
