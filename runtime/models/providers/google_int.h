/* google_int.h: Google's generateContent wire format (google_wire.c), shared by model.gemini
 * (the Gemini API, an API key) and model.vertex (Vertex AI, OAuth tokens): the body of a call
 * (systemInstruction, contents, generationConfig with responseSchema), the embedding bodies,
 * the answer (candidates, usageMetadata, embeddings) and Google's error rules
 * (RESOURCE_EXHAUSTED retried after its RetryInfo, a refused key stops the job, SAFETY and its
 * kin fail the record). Not for the runtime, which reaches the providers through the registry. */
#ifndef RUNNEL_GOOGLE_INT_H
#define RUNNEL_GOOGLE_INT_H

#include "models/model.h"

/* The generation options both providers take, for their option tables. */
#define GOOGLE_GENERATION_OPTIONS                                                                  \
    {"temperature", OPT_NUMBER, 0, NULL, .help = "sampling temperature (generationConfig)", OPT_RANGE(0, 2)}, \
    {"max_tokens", OPT_INTEGER, 0, NULL, .help = "longest answer in tokens (maxOutputTokens)", OPT_AT_LEAST(1)}, \
    {"top_p", OPT_NUMBER, 0, NULL, .help = "nucleus sampling (topP)", OPT_RANGE(0, 1)},            \
    {"top_k", OPT_INTEGER, 0, NULL, .help = "sample from the k likeliest tokens (topK)", OPT_AT_LEAST(1)}, \
    {"dimensions", OPT_INTEGER, 0, NULL, .help = "task embedding: the vector's length (outputDimensionality)", \
     OPT_AT_LEAST(1)},                                                                             \
    {"structured", OPT_BOOLEAN, 0, NULL,                                                           \
     .help = "ask for JSON that follows the output schema (responseMimeType, responseSchema)",    \
     .default_note = "with output"},                                                               \
    {"parameters", OPT_TABLE, 0, NULL, .help = "more request fields (safetySettings, ...), sent as JSON as they are"}

enum google_embedding { GOOGLE_EMBED_CONTENT, GOOGLE_PREDICT }; /* Gemini's embedContent, Vertex's :predict */

struct google_wire {
    enum google_embedding embedding;
    struct buf config;           /* the generationConfig members of every call, without braces */
    char *schema;                /* the output schema as responseSchema takes it, or NULL */
    struct buf parameters;       /* ,"k":v,... */
    long dimensions;
    const char *system_source;
    struct buf system_json;
    char why[160];               /* a verdict's explanation, until the next classify */
};

/* Read the generation options and `parameters`; the schema (setup) is rewritten once for
 * responseSchema. -1 and err naming the option. Free with google_wire_free either way. */
int google_wire_open(struct google_wire *w, lua_State *L, int opts, const struct provider_setup *setup,
                     enum google_embedding embedding, struct rn_err *err);
void google_wire_free(struct google_wire *w);
/* The body of one call appended to body: generateContent, or the embedding request. */
void google_wire_body(struct google_wire *w, const struct model_call *call, struct buf *body);
/* The body of a request of several embedding inputs, in the calls' order: Gemini's
 * batchEmbedContents {"requests":[{"model":model,"content":...},...]} (model: "models/NAME"),
 * or Vertex's :predict with one instance each. Gemini takes at most 100 requests in one batch,
 * Vertex's text embedding models 250 instances (gemini-embedding-001: one). */
#define GOOGLE_MAX_INPUTS 100
#define VERTEX_MAX_INPUTS 250
void google_wire_inputs_body(struct google_wire *w, const char *model, const struct model_call *const *calls, size_t n,
                             struct buf *body);
/* Its 2xx answer, as provider_ops.parse_inputs: embeddings[i].values (or predictions[i]'s, with
 * their statistics.token_count summed) into vectors[i]; more items than inputs fail it. */
int google_wire_parse_inputs(const struct http_response *answer, size_t n, json_t **vectors, int64_t *tokens_in,
                             struct rn_err *err);
/* Google's rules over the default ones (provider_classify_default). */
void google_wire_classify(struct google_wire *w, const struct http_response *answer, struct provider_verdict *v);
int google_wire_parse(const struct http_response *answer, struct model_reply *reply, struct rn_err *err);

#endif
