/* openai_int.h: the OpenAI wire format (openai_wire.c), shared by model.openai and
 * model.azure_openai, and openai.c's declarations for its tests and fuzzers
 * (tests/fuzz/fuzz_answer.c, tests/unit/test_providers.c). Not for the runtime, which reaches
 * the providers through engine/registry.c.
 *
 * A body is made of parts fixed at open (the head with the model, the sampling options and
 * `parameters` after the messages) and the messages of one call, so building one is a few
 * appends. */
#ifndef RUNNEL_OPENAI_INT_H
#define RUNNEL_OPENAI_INT_H

#include "models/model.h"

extern const struct provider_ops openai_provider;

/* The sampling options both providers take (temperature, max_tokens, top_p, seed), for their
 * option tables. */
#define OPENAI_SAMPLING_OPTIONS                                                                    \
    {"temperature", OPT_NUMBER, 0, NULL, .help = "sampling temperature", OPT_RANGE(0, 2)},         \
    {"max_tokens", OPT_INTEGER, 0, NULL, .help = "longest answer in tokens", OPT_AT_LEAST(1)},     \
    {"top_p", OPT_NUMBER, 0, NULL, .help = "nucleus sampling",                                     \
     .bounds = OPT_MIN | OPT_MIN_EXCLUSIVE | OPT_MAX, .min = 0, .max = 1},                         \
    {"seed", OPT_INTEGER, 0, NULL, .help = "seed for more repeatable answers"},                    \
    {"parameters", OPT_TABLE, 0, NULL, .help = "more request fields, sent as JSON as they are"}

/* A chat's "messages" array, with the system message encoded once while the engine passes the
 * same prompt. Zeroed (or buf_init) before use; the owner frees system_json. */
struct openai_messages {
    const char *system_source;   /* the system prompt system_json encodes (the engine's pointer) */
    struct buf system_json;      /* {"role":"system",...}, */
};
/* "messages":[...] of one call appended to body: the system prompt, the prompt, and on the retry
 * after an invalid answer the answer and the correction. Ollama's /api/chat takes the same. */
void openai_put_messages(struct openai_messages *m, const struct model_call *call, struct buf *body);

/* Which OpenAI API a chat call speaks: chat completions, or the Responses API (model.openai's
 * api = "responses"). */
enum openai_api { OPENAI_CHAT, OPENAI_RESPONSES };

struct openai_wire {
    enum openai_api api;
    struct buf head;             /* {"model":"...", or { */
    struct buf chat_tail;        /* ,"temperature":... and the parameters, for chat (or Responses) bodies */
    struct buf embedding_tail;   /* the parameters, for embedding bodies */
    struct openai_messages messages;
};

/* Read the sampling options and `parameters` from the checked options at opts; model (NULL:
 * none in the body) heads every body. -1 and err naming the option. Free with
 * openai_wire_free either way. */
int openai_wire_open(struct openai_wire *w, lua_State *L, int opts, const char *model, int structured,
                     enum openai_api api, struct rn_err *err);
void openai_wire_free(struct openai_wire *w);
/* The body of one call (chat completion, or embeddings for task embedding) appended to body. */
void openai_wire_body(struct openai_wire *w, const struct model_call *call, struct buf *body);
/* The body of a request of several embedding inputs ("input" an array, in the calls' order). */
void openai_wire_inputs_body(struct openai_wire *w, const struct model_call *const *calls, size_t n, struct buf *body);
/* Read its 2xx answer as provider_ops.parse_inputs does: data[i].embedding into
 * vectors[data[i].index] (its place when it has no index); an index outside the n inputs or
 * repeated fails the whole answer; usage.prompt_tokens into tokens_in. OpenAI takes at most
 * 2048 inputs and 300,000 tokens in one request. */
#define OPENAI_MAX_INPUTS 2048
#define OPENAI_MAX_INPUT_TOKENS 300000
int openai_wire_parse_inputs(const char *body, size_t len, size_t n, json_t **vectors, int64_t *tokens_in,
                             struct rn_err *err);
/* Read a 2xx answer: a chat completion's first message, or an embedding, and the usage. */
int openai_wire_parse(const char *body, size_t len, struct model_reply *reply, struct rn_err *err);
/* The same for a Responses API answer: its output messages' output_text (or the refusal), and
 * input_tokens / output_tokens; an embedding as openai_wire_parse reads it. */
int openai_responses_parse(const char *body, size_t len, struct model_reply *reply, struct rn_err *err);
/* Whether a 2xx Responses API answer is one no retry can mend: status "incomplete" (why says
 * incomplete_details.reason) or a refusal content item (why holds its text). 1 and why, or 0. */
int openai_responses_failure(const char *body, size_t len, char *why, size_t size);
/* What openai_batch.c (the Files and Batches APIs) reads of an open provider. Lent: valid
 * until the provider closes. */
struct openai_endpoint {
    const char *base;                         /* the endpoint, without a trailing slash */
    const char *path;                         /* its path ("/v1"), which batch lines' url start with */
    const struct curl_slist *json_headers;    /* every request's lines (Content-Type: application/json, the key) */
    const struct curl_slist *control_headers; /* the same without Content-Type, for uploads and GETs */
    int embeddings;                           /* the task is embedding: /embeddings, else /chat/completions */
};
void openai_endpoint_of(void *self, struct openai_endpoint *out);

/* The batch API's hooks (openai_batch.c). */
extern const struct provider_batch_ops openai_batch_ops;

/* The answer parser without its fast path (jansson only), so the fuzzer can check that both
 * read every body the same way. 0, or -1 and err. reply as for provider_ops.parse. */
int openai_parse_tree(const char *body, size_t len, struct model_reply *reply, struct rn_err *err);

#endif
