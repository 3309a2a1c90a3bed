/* model.h: the remote model engine: turns records into model calls and answers back into
 * record fields, for any provider plugin (models/provider.h; models/providers/).
 *
 * The engine owns everything that is the same for every provider: prompt rendering, the HTTP
 * client (core/http.h) inside the job's event loop, concurrency, request and token rate limits,
 * timeouts, retries with backoff and jitter from the provider's verdicts, answer validation
 * against the job's `output` declaration, the answer cache, redaction of the provider's
 * secrets, usage and latency statistics. Records stay owned by the pipeline (registry refs). */
#ifndef RUNNEL_MODEL_H
#define RUNNEL_MODEL_H

#include <jansson.h>
#include <stdio.h>
#include "engine/plugin.h"
#include "lua/transport.h"
#include "models/provider.h"

/* Options every provider accepts, to be listed in each provider's option table. Nested
 * tables have their own specs, checked at the declaration line (lua/options.h); the engine
 * reads the checked values. */
#define MODEL_OUTPUT_FIELD_OPTIONS                                                                 \
    OPT_FIELDS({"type", OPT_ENUM, 1, NULL, .help = "the field's type",                            \
                .choices = OPT_CHOICES("integer", "number", "string", "boolean", "vector")},       \
               {"min", OPT_NUMBER, 0, NULL, .help = "integer and number: the smallest valid value"}, \
               {"max", OPT_NUMBER, 0, NULL, .help = "integer and number: the largest valid value"},  \
               {"enum", OPT_STRING_OR_LIST, 0, NULL, .help = "string: the valid values"},          \
               {"description", OPT_STRING, 0, NULL, .help = "what the field means, for the model"})
#define MODEL_LIMITS_OPTIONS                                                                       \
    OPT_FIELDS({"concurrency", OPT_INTEGER_OR_STRING, 0, "64",                                     \
                .help = "calls in flight at most, or \"auto\" (adapts, AIMD)",                     \
                .choices = OPT_CHOICES("auto"), OPT_RANGE(1, 10000)},                              \
               {"rpm", OPT_NUMBER, 0, NULL, .help = "requests per minute at most", OPT_ABOVE(0)},   \
               {"tpm", OPT_NUMBER, 0, NULL, .help = "tokens per minute at most", OPT_ABOVE(0)},     \
               {"timeout", OPT_DURATION, 0, "30s", .help = "per request", OPT_ABOVE(0)},            \
               {"connect_timeout", OPT_DURATION, 0, NULL, .help = "per connection",                \
                .default_note = "timeout, at most 10s", OPT_ABOVE(0)},                             \
               {"retries", OPT_INTEGER, 0, "5", .help = "retries per call after the first attempt", \
                OPT_RANGE(0, 100)},                                                                \
               {"outage", OPT_DURATION, 0, "10m",                                                  \
                .help = "the endpoint unreachable (or refusing everyone) this long stops the job", OPT_ABOVE(0)})
#define MODEL_PRICE_OPTIONS                                                                        \
    OPT_FIELDS({"input", OPT_NUMBER, 0, NULL, .help = "USD per 1M input tokens", OPT_AT_LEAST(0)}, \
               {"output", OPT_NUMBER, 0, NULL, .help = "USD per 1M output tokens", OPT_AT_LEAST(0)}, \
               {"cache_read", OPT_NUMBER, 0, NULL, .help = "USD per 1M input tokens read from the prompt cache", \
                .default_note = "input", OPT_AT_LEAST(0)},                                         \
               {"cache_write", OPT_NUMBER, 0, NULL, .help = "USD per 1M input tokens written to the prompt cache", \
                .default_note = "input", OPT_AT_LEAST(0)})
#define MODEL_BATCH_FIELDS                                                                         \
    OPT_FIELDS({"enabled", OPT_BOOLEAN, 0, "true", .help = "send the job's calls through the batch API"},     \
               {"max_requests", OPT_INTEGER, 0, "50000", .help = "requests in one batch at most", OPT_AT_LEAST(1)}, \
               {"max_bytes", OPT_SIZE, 0, "200MB", .help = "bytes of requests in one batch at most", OPT_AT_LEAST(1024)}, \
               {"poll", OPT_DURATION, 0, "30s", .help = "how often a batch's state is asked for", OPT_ABOVE(0)}, \
               {"window", OPT_STRING, 0, "24h", .help = "the completion window asked for"},               \
               {"retry_live", OPT_BOOLEAN, 0, "true",                                                      \
                .help = "failed, expired and invalid batch answers get their retry or correction round live, " \
                        "at the live price; false: they are dead-lettered with the reason"})
/* `batch`, for the options of a provider with PROVIDER_BATCH (provider.h): true, or the table. */
#define MODEL_BATCH_OPTION                                                                         \
    {"batch", OPT_NESTED, 0, NULL,                                                                 \
     .help = "bounded jobs: send the calls through the provider's batch API at its batch price; true or { ... }", \
     .fields = MODEL_BATCH_FIELDS, .short_form = "enabled"}
/* `batch_inputs`, for the options of a provider with build_inputs (provider.h): how many
 * records' embedding inputs one request carries at most; dflt its default (a string), most the
 * provider's limit. */
#define MODEL_BATCH_INPUTS_OPTION(dflt, most)                                                      \
    {"batch_inputs", OPT_INTEGER, 0, dflt,                                                         \
     .help = "task embedding: records' inputs in one request at most, as many as are ready to go " \
             "(1: a request per record)",                                                          \
     OPT_RANGE(1, most)}
/* The options of the engine, listed in every provider's table: MODEL_COMMON_OPTIONS, or the
 * three parts around the prompt for a provider whose prompt is optional (model.http). */
#define MODEL_TASK_OPTIONS                                                                         \
    {"task", OPT_ENUM, 0, "classification", .help = "what the model does for each record",        \
     .choices = OPT_CHOICES("classification", "text_generation", "embedding", "regression", "clustering")}, \
    {"centroids", OPT_MAP, 0, NULL,                                                                \
     .help = "clustering: { name = { x1, x2, ... } }: each record gets the name of the nearest (cosine) to its embedding", \
     .value = OPT_VALUE(OPT_TABLE, .check = model_check_centroid)},                              \
    {"system", OPT_STRING, 0, NULL, .help = "system prompt"}
#define MODEL_PROMPT_OPTION                                                                        \
    {"prompt", OPT_STRING_OR_FUNCTION, 1, NULL,                                                    \
     .help = "template with {{field}} placeholders, or function(record) -> string"}
#define MODEL_ANSWER_OPTIONS                                                                       \
    {"output", OPT_MAP, 0, NULL, .help = "fields the answer fills: { name = { type=, min=, max=, enum= } } or { name = \"type\" }", \
     .value = OPT_VALUE(OPT_NESTED, .fields = MODEL_OUTPUT_FIELD_OPTIONS, .short_form = "type")}, \
    {"limits", OPT_NESTED, 0, NULL, .help = "concurrency, rate limits, timeouts and retries",      \
     .fields = MODEL_LIMITS_OPTIONS},                                                              \
    {"price", OPT_NESTED, 0, NULL, .help = "prices for the cost estimate", .fields = MODEL_PRICE_OPTIONS}, \
    {"cache", OPT_BOOLEAN, 0, NULL,                                                                \
     .help = "reuse answers stored on disk (state dir) for the same request; --no-cache bypasses it", \
     .default_note = "batch mode"}
#define MODEL_COMMON_OPTIONS MODEL_TASK_OPTIONS, MODEL_PROMPT_OPTION, MODEL_ANSWER_OPTIONS, HTTP_TRANSPORT_OPTIONS

struct model;

/* The check of one centroid (a non-empty list of numbers), for the option table. */
int model_check_centroid(lua_State *L, int idx, struct rn_err *err);

/* Open the model declared at stack index decl (a model.X{...} declaration, lua/job.h). NULL
 * and err (naming the option at fault) on failure.
 *
 * The answer cache (option cache, on by default in batch mode, off with env->no_cache or
 * without env->state_dir) lives in STATE_DIR/cache/JOB/PROVIDER.MODEL.cache. Its key is a
 * SHA-256 over the provider, the task, the output declaration, the request URL and the
 * request body the provider built (model, messages, sampling parameters, schema): never the
 * api key or headers. Only answers that validated are stored, and they are validated again
 * when used. */
struct model *model_open(struct job_env *env, int decl, struct rn_err *err);

/* How many more records the model accepts now (0 when the in-flight window is full). */
int model_room(struct model *m);
size_t model_in_flight(struct model *m);

/* Start predicting the record table held at registry ref record_ref. The pipeline keeps
 * ownership of the ref; tag comes back in the completion. -1 and err when the prompt cannot
 * be rendered (the pipeline dead-letters the record with that reason). */
int model_submit(struct model *m, int record_ref, uint64_t tag, struct rn_err *err);
/* The same for a record read at pos, which a model with `batch` on needs: a batch line is named
 * by where its record came from, so a resumed job finds the records its batches hold. */
int model_submit_at(struct model *m, int record_ref, uint64_t tag, const struct source_pos *pos, struct rn_err *err);

/* Completion of one record: ok=1 means the output fields are set on the record; ok=0 means
 * it failed for good, with the reason (HTTP status and body, validation error, ...) and the
 * model's last answer text (NULL when there was none). */
typedef void (*model_done_fn)(void *ctx, uint64_t tag, int record_ref, int ok, const char *reason,
                              const char *model_text);

/* Drive network I/O for up to timeout_ms (0: do what is ready now), calling done() for each
 * finished record. Records answered from the cache at submit are reported here too, first,
 * and then the call does not wait. -1 and err only for failures that must stop the job.
 * With the job's loop (env->loop at open), the model watches its HTTP client's sockets there
 * and keeps a timer for what falls due (retries, pauses, refills, curl's timeouts): the job
 * sleeps in the loop and calls model_poll(m, 0, ...) when model_wants_poll says so. */
int model_poll(struct model *m, int timeout_ms, model_done_fn done, void *ctx, struct rn_err *err);
/* 1 when model_poll has something to do: records in flight, or its sockets or timer woke the
 * loop since the last call. */
int model_wants_poll(struct model *m);

/* With `batch` on (models/batch.c): the records the model wants in flight at once (a batch's
 * worth, for the pipeline's window), 0 otherwise; how many in flight wait for a batch's answer
 * and nothing else (a stopped job need not wait for them: its checkpoint keeps the batches);
 * and a few words on the batches for the progress line ("batch 2/3 in_progress 41%"; nothing
 * without batches). */
int64_t model_batch_window(struct model *m);
size_t model_batch_waiting(struct model *m);
void model_progress(struct model *m, struct buf *out);
/* The job stopped because the model's endpoint was unhealthy for limits.outage (the error
 * model_poll returned says so); the pipeline adds what was committed. */
int model_outage(const struct model *m);
/* limits.outage in ms: the sinks' outages stop the job after as long. */
#define MODEL_OUTAGE_DEFAULT_MS 600000
int64_t model_outage_ms(const struct model *m);

/* What a checkpoint keeps of the model: the batches submitted (ids, files, the ranges of
 * source positions their records came from), so a resumed job polls them instead of paying
 * again. model_save adds "model" to state when there is anything to keep; model_restore reads
 * it back (state may be NULL). model_save_due: a batch was made or ended since the last save,
 * and the pipeline should checkpoint now rather than at its next interval. */
int model_save(struct model *m, json_t *state, struct rn_err *err);
int model_restore(struct model *m, json_t *state, struct rn_err *err);
int model_save_due(struct model *m);

/* Print the model figures of the run summary (requests, retries, tokens, latency, cost, cache
 * hits and, with concurrency "auto", the window: started, ended, mean over the requests sent,
 * min, max). Answers served from the cache count as ok and as cache hits, never as requests or
 * tokens. */
void model_print_summary(struct model *m, FILE *out);
/* Add the same figures to the summary JSON object under "model" ("cost_usd" is null without
 * `price`, or when answers came and none reported token usage: "answers_without_usage" counts
 * the answers without it); "concurrency" is
 * {"mode":"fixed","limit":N} or {"mode":"auto","start":,"final":,"mean":,"min":,"max":}. */
void model_summary_json(struct model *m, json_t *summary);
/* The job ran out of file descriptors (an open failed with EMFILE or ENFILE): lower the calls
 * in flight and the connections to what fits now, so the rest of the job finds some free. */
void model_descriptors_short(struct model *m);
void model_close(struct model *m);

#endif
