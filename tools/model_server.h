/* model_server.h: what tools/model-server.c shares with the files that add to it:
 * model_server_batch.c (OpenAI's Files and Batches APIs, on a fast clock) and
 * model_server_quota.c (per-minute request and token buckets, with OpenAI's rate-limit
 * headers). Each file owns its state behind a lock of its own; model-server.c routes to them.
 * Strings handed back are malloc'd and the caller's to free. */
#ifndef MODEL_SERVER_H
#define MODEL_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <microhttpd.h>

/* ---- model-server.c ---- */

uint64_t ms_clock_ns(void);
/* The answer the live endpoint gives to one request body: a chat completion, or embeddings.
 * fault: MS_FAULT_* (a batch line's own draw). *status is 200, or 400 for a body it cannot
 * read (the text is then an error object). NULL when out of memory. */
enum { MS_FAULT_NONE, MS_FAULT_MALFORMED, MS_FAULT_OUT_OF_RANGE };
char *ms_model_answer(const char *body, size_t len, bool embeddings, uint64_t serial, int fault, unsigned *status,
                      size_t *out_len);
/* {"error":{"message","type","param":null,"code"}} (code NULL: null). */
char *ms_error_json(const char *message, const char *type, const char *code);
/* A PRNG draw in [0, 1) from state. */
double ms_random_fraction(uint64_t *state);
/* The seed of --seed. */
uint64_t ms_seed(void);
/* The dialects' configuration (--api-key and the rest), for answering a Message Batch's lines
 * with the Anthropic dialect. */
struct dialect_config;
const struct dialect_config *ms_dialect_config(void);

/* ---- model_server_quota.c: --rpm N --tpm N ---- */

struct ms_quota_config {
    long rpm, tpm;             /* 0: that bucket is off */
};
extern struct ms_quota_config ms_quota_config;

/* Whose words the quota speaks: OpenAI's x-ratelimit-* (durations), or Anthropic's
 * anthropic-ratelimit-* (RFC 3339 times) and error shape. */
enum ms_quota_dialect { MS_QUOTA_OPENAI, MS_QUOTA_ANTHROPIC };

/* What the buckets said about one model request. */
struct ms_quota_ticket {
    bool on;                   /* a bucket is on: the answer carries the headers */
    enum ms_quota_dialect dialect;
    bool refused;              /* a bucket was empty: 429 */
    bool tokens;               /* ... and it was the token bucket */
    long long requested;       /* the tokens the request was counted at */
    long long remaining_requests, remaining_tokens;
    double reset_requests_ms, reset_tokens_ms, retry_ms;
};

/* Count one model request (its body: OpenAI's or Anthropic's messages, or an embeddings input)
 * against the buckets, or refuse it. */
void ms_quota_admit(const char *body, size_t len, bool embeddings, enum ms_quota_dialect dialect,
                    struct ms_quota_ticket *ticket);
/* The ticket's headers: x-ratelimit-limit/remaining/reset-requests and -tokens, or
 * anthropic-ratelimit-requests/tokens-limit/remaining/reset; a refusal adds Retry-After (whole
 * seconds, as both send it). */
void ms_quota_headers(struct MHD_Response *response, const struct ms_quota_ticket *ticket);
/* The 429 body of a refusal, as OpenAI or Anthropic words it. */
char *ms_quota_error(const struct ms_quota_ticket *ticket);
/* "quota":{...} for GET /stats (without the key), and POST /stats/reset. */
char *ms_quota_stats(void);
void ms_quota_reset(void);

/* ---- model_server_batch.c: /v1/files and /v1/batches ---- */

struct ms_batch_config {
    long speed;                /* the batch clock: validating 10 s, 10 lines/s, finalizing 10 s, over speed */
    double line_500, line_400, line_malformed; /* per-line faults */
    long expire_every;         /* every Nth batch expires halfway; 0: none */
    long fail_every;           /* every Nth batch fails validation; 0: none */
    long max_file_mb;
};
extern struct ms_batch_config ms_batch_config;

bool ms_batch_route(const char *method, const char *url);
/* The MHD access handler for a batch route, from its second call on; *state is the route's
 * own (freed by ms_batch_done). authorized: the request passed --api-key. */
enum MHD_Result ms_batch_handle(struct MHD_Connection *connection, const char *url, const char *method,
                                const char *upload_data, size_t *upload_data_size, void **state, bool authorized);
void ms_batch_done(void *state);
char *ms_batch_stats(void);
void ms_batch_reset(void);
void ms_batch_cleanup(void);

#endif
