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
    PROVIDER_BATCH = 1 << 3,       /* a batch API: provider_ops.batch holds its hooks */
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
     * are left holds back every send until the reset. The limits (requests and tokens a window
     * allows, OpenAI's x-ratelimit-limit-*) are what the engine paces itself by when the job
     * declares no rpm/tpm (models/quota.c); reset is when the window is full again. */
    int64_t remaining_requests, remaining_tokens;
    int64_t reset_requests_ms, reset_tokens_ms;
    int64_t limit_requests, limit_tokens;
    int resets_are_times;       /* the resets came as times (Anthropic's RFC 3339), counted here from the
                                 * answer's arrival; a duration (OpenAI's "6m0s") runs from when the
                                 * provider counted the request. quota.c measures both from the send */
    const char *why;            /* FAIL_JOB, FAIL_RECORD: an explanation put before the status and
                                 * body in the job's error or the dead letter, or NULL; static, or
                                 * the provider's until its next classify */
};

/* ---- batch APIs (PROVIDER_BATCH): many calls in one job at the provider, at a lower price ----
 *
 * For a bounded job with `batch` on, the engine (models/batch.c) builds every call as it would
 * for a live request (build), turns each into one spool line (line), and submits the spool in
 * chunks within the provider's limits (submit), polls the batch until it ends (poll), downloads
 * its results (fetch) and reads them one line at a time (result), each line's answer then going
 * through classify and parse exactly as a live answer does. The engine does every HTTP exchange
 * (retries, backoff, the verdicts of classify), keeps the batches in the checkpoint and maps
 * results back to records by custom_id. The hooks only build requests and read answers; they
 * run on the job's loop and must not block.
 *
 * How the two batch APIs map onto the hooks:
 *   hook    OpenAI (Files + Batches)                  Anthropic (Message Batches)
 *   line    {"custom_id","method":"POST","url",        {"custom_id","params": the body of a
 *           "body": the body build made}               POST /v1/messages}
 *   submit  1. POST /v1/files, multipart, purpose=     1. POST /v1/messages/batches
 *           batch, the spool as the file -> input         {"requests":[the lines, comma-joined]}
 *           2. POST /v1/batches {input_file_id,           -> id
 *           endpoint, completion_window} -> id
 *   poll    GET /v1/batches/{id}: status validating,  GET /v1/messages/batches/{id}:
 *           in_progress, finalizing, cancelling ->     processing_status in_progress, canceling
 *           RUNNING; completed, expired, cancelled     -> RUNNING; ended -> ENDED (results_url);
 *           -> ENDED (output_file_id, error_file_id);  request_counts{processing, succeeded,
 *           failed -> FAILED (errors.data[].message);  errored, canceled, expired}
 *           request_counts{total, completed, failed}
 *   fetch   part 0 GET /v1/files/{output}/content,     part 0 GET results_url (or
 *           part 1 GET /v1/files/{errors}/content      /v1/messages/batches/{id}/results)
 *   result  {"custom_id","response":{"status_code",    {"custom_id","result":{"type":
 *           "body"},"error"}: status_code and body;    "succeeded","message"}}: 200 and the
 *           "error":{"code":"batch_expired"} or a       message; "errored": the error's HTTP
 *           null response: status 0                     status (400 invalid_request_error, 500
 *                                                       api_error, ...) and {"type":"error",
 *                                                       "error":...}; "canceled", "expired":
 *                                                       status 0
 * Both: at most 100,000 (Anthropic) or 50,000 (OpenAI) requests and 256 MB / 200 MB a batch,
 * results within 24 hours, half the price of live calls. providers/openai_batch.c and
 * providers/anthropic_batch.c implement them. */

/* Where a batch is, as poll tells the engine. */
enum provider_batch_phase {
    PROVIDER_BATCH_SUBMITTING, /* being made: submit's steps are not all done */
    PROVIDER_BATCH_RUNNING,    /* made; the provider is working on it (validating, in progress, finalizing) */
    PROVIDER_BATCH_ENDED,      /* over, with results to fetch: all of them, or some (expired, cancelled) */
    PROVIDER_BATCH_FAILED,     /* over without results (its input was refused): no request was answered */
};

/* One batch as the engine keeps it, in memory and in the checkpoint. The strings are the
 * engine's (it frees them); a hook replaces one with provider_batch_set. */
struct provider_batch {
    enum provider_batch_phase phase;
    int step;                  /* submit: how many of its requests were answered */
    char *id;                  /* the provider's id for the batch, once it exists */
    char *input;               /* an uploaded input file (OpenAI), or NULL */
    char *results[2];          /* where its results are (file ids, a URL), NULL where none */
    char status[32];           /* the provider's word for its state ("in_progress"), for people */
    int64_t total, completed, failed; /* request counts as the provider reports them; -1: unknown */
    struct buf why;            /* FAILED: the provider's reason */
};

/* Set *field to a copy of the len bytes at value (NULL: none), freeing what it held. */
void provider_batch_set(char **field, const char *value, size_t len);

/* The chunk submit sends: its lines (one per call, each ending with a newline) in a file. */
struct provider_spool {
    const char *path;
    size_t count;              /* lines */
    int64_t bytes;
    const char *job;           /* the job's name, for the provider's metadata */
    int number;                /* 1, 2, ...: the job's batches in the order they were made */
    const char *window;        /* the completion window asked for ("24h") */
};

/* One result line as result reads it. The engine empties the buffers first and reuses them. */
struct provider_batch_result {
    struct buf custom_id;
    long status;               /* the HTTP status of the call's answer; 0 when it got none (expired, cancelled) */
    struct buf body;           /* status != 0: the answer body, as a live answer's, for classify and parse */
    const char *why;           /* status 0: why it got none ("expired before it ran"), static */
};

struct provider_batch_ops {
    double price;              /* the batch price as a share of the live price (0.5) */
    int64_t max_requests;      /* the most requests, and bytes of spool, one batch may hold */
    int64_t max_bytes;
    /* Append the spool line of one call to out: custom_id (letters, digits, '-' and '_', at most
     * 64) and the request build made for it. -1 and err: the call goes live instead. */
    int (*line)(void *self, const char *custom_id, const struct http_request *call, struct buf *out, struct rn_err *err);
    /* Make a batch of the spooled lines, one request at a time: with answer NULL, build the first
     * request into req (cleared by the engine); then, with the answer to each (classified ok),
     * read it into b and build the next. 1: req holds the next request; 0: the batch exists
     * (b->id set, b->phase RUNNING); -1 and err: the answer is not one it can read. */
    int (*submit)(void *self, struct provider_batch *b, const struct provider_spool *spool,
                  const struct http_response *answer, struct http_request *req, struct rn_err *err);
    /* The same for one poll: answer NULL builds the request asking for b's state; then the
     * answer is read into b (phase, status, counts, results, why). 0, or -1 and err. */
    int (*poll)(void *self, struct provider_batch *b, const struct http_response *answer, struct http_request *req,
                struct rn_err *err);
    /* The request downloading part `part` (0, 1, ...) of an ended batch's results: 1, or 0 when
     * there is no such part (none left, or this one is NULL). */
    int (*fetch)(void *self, const struct provider_batch *b, int part, struct http_request *req);
    /* Read one line of the results into r. -1 and err when it is not a result line. */
    int (*result)(void *self, const char *line, size_t len, struct provider_batch_result *r, struct rn_err *err);
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
    /* Optional: the tokens a call counts against the provider's token limit before it runs
     * (OpenAI: the characters of its messages / 4, plus max_tokens), which the engine's tpm
     * pacing spends. NULL: the characters / 4. */
    int64_t (*charge)(void *self, const struct model_call *call);
    /* With PROVIDER_BATCH: the batch API's hooks (above); the options then list `batch`
     * (MODEL_BATCH_OPTION, models/model.h), which the engine reads. */
    const struct provider_batch_ops *batch;
    /* Optional, with PROVIDER_EMBEDDINGS: several records' embedding inputs in one request (the
     * option batch_inputs, MODEL_BATCH_INPUTS_OPTION in models/model.h, which the options then
     * list). The engine groups up to batch_inputs embedding calls that are ready to go, never
     * more than max_inputs nor, when max_input_tokens is not 0, more estimated tokens (charge)
     * than it; build_inputs fills req (cleared by the engine) with the n calls' inputs in this
     * order (OpenAI: "input" an array; Gemini: batchEmbedContents; Ollama: /api/embed's
     * "input" an array). -1 and err: the calls go out one by one. parse_inputs reads an answer
     * classify said is ok: vectors[i] (NULL on entry) gets input i's vector (a new reference)
     * and stays NULL when the answer has none for it; *tokens_in the input tokens the answer
     * reports for all of them (0: none). -1 and err when the answer as a whole cannot be read
     * (the request is retried as a whole). The engine splits the tokens over the records, checks
     * each vector, and sends a record the answer missed (or gave a vector of another length than
     * the others) again in a request of its own. */
    int64_t max_inputs, max_input_tokens;
    int (*build_inputs)(void *self, const struct model_call *const *calls, size_t n, struct http_request *req,
                        struct rn_err *err);
    int (*parse_inputs)(void *self, const struct http_response *answer, size_t n, json_t **vectors, int64_t *tokens_in,
                        struct rn_err *err);
};

void provider_verdict_init(struct provider_verdict *v);

/* OpenAI's rules, the default classify: 2xx ok; 408, 409, 429 and 5xx retried (429 and 5xx
 * are congestion, 429 is a rate limit) no sooner than Retry-After / retry-after-ms, or for a 429
 * without them the x-ratelimit-reset-* time of the limit that ran out (the time until it is
 * full again: longer than a Retry-After for one request). Errors that no wait or retry can heal
 * fail the job: 401 and 403 (a wrong key, no access), and what provider_spend_limit matches (a
 * 429 insufficient_quota, a spend limit reached). Any other status fails the record.
 * x-ratelimit-limit-*, -remaining-* and -reset-* fill the rate-limit state of every answer. */
void provider_classify_default(const struct http_response *answer, struct provider_verdict *verdict);

/* Whether an error answer says the account cannot pay for any call: OpenAI's
 * insufficient_quota, billing_hard_limit_reached and billing_not_active (as error code or
 * type, any status 4xx), and Anthropic's 400 whose message says "credit balance is too low" or
 * "reached your specified API usage limits" (a spend limit). Then it returns a static
 * explanation for the verdict's why; else NULL. A provider's own classify calls it for the
 * answers it does not know better. */
const char *provider_spend_limit(const struct http_response *answer);

/* The provider's own words in an error body, {"error":{"message":...}} (OpenAI, Anthropic,
 * Azure, Gemini), appended to out as they are; the whole body when it holds no message. */
void provider_error_message(const struct http_response *answer, struct buf *out);

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
