/* model_server_dialect.h: the providers' dialects of tools/model-server, one file each:
 * model_server_azure.c (Azure OpenAI's paths and api-key), model_server_anthropic.c (Messages,
 * its headers and tool use), model_server_bedrock.c (Converse, the SigV4 signature checked with
 * runtime/core/sigv4.c), model_server_google.c (Gemini and Vertex generateContent, and an
 * OAuth token endpoint that checks RS256 JWTs), model_server_ollama.c (/api/chat, /api/embed),
 * model_server_http.c (a SageMaker-style model of labels, numbers and clusters) and
 * model_server_responses.c (OpenAI's Responses API).
 *
 * model-server.c routes a request to the first dialect whose match() takes it, counts it,
 * draws its latency and fault like any model call (hangs and closes are its own), then asks
 * answer() for the answer with the fault the dialect must speak in its own words (a 429 in
 * the provider's shape, an overload, a malformed answer). Every dialect rates a text with the
 * same lexicon (dialect_content), so every provider's ratings agree with OpenAI's. A dialect's
 * state (tokens issued, prompts cached) is its own, behind its own lock. */
#ifndef MODEL_SERVER_DIALECT_H
#define MODEL_SERVER_DIALECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <microhttpd.h>

enum dialect_fault { DIALECT_OK, DIALECT_RATE_LIMIT, DIALECT_OVERLOAD, DIALECT_MALFORMED, DIALECT_OUT_OF_RANGE };

/* The options of the dialects (model-server.c parses them). */
struct dialect_config {
    const char *api_key;          /* --api-key: every dialect's key (api-key, x-api-key, x-goog-api-key, bearer) */
    const char *aws_access_key_id, *aws_secret_access_key; /* --aws-*: SigV4 is checked with these */
    const char *google_key;       /* --google-key FILE: the service account whose JWTs /token takes */
    long token_lifetime_s;        /* --token-lifetime: expires_in of the tokens /token issues */
    long retry_after_s;           /* --retry-after: in rate-limit answers */
    bool embed_short, embed_odd;  /* --embed-short, --embed-odd: faults of answers to several embedding inputs */
};

struct dialect_request {
    struct MHD_Connection *connection; /* for its headers and query arguments */
    const char *method, *url;          /* url as sent: not percent-decoded */
    const char *body;
    size_t body_len;
    enum dialect_fault fault;
    uint64_t serial;                   /* the server's request number */
    const struct dialect_config *config;
};

#define DIALECT_HEADERS_MAX 16

/* What answer() fills. body is malloc'd and taken by model-server.c. */
struct dialect_answer {
    unsigned status;
    char *body;
    size_t body_len;
    const char *content_type;          /* NULL: application/json */
    struct {
        const char *name;              /* static */
        char value[192];
    } headers[DIALECT_HEADERS_MAX];
    size_t header_count;
};

struct dialect {
    const char *name;
    /* Whether the dialect serves method and url (the path as sent, without the query). */
    bool (*match)(const char *method, const char *url);
    /* Whether the request is a model call (counted, delayed and faulted like one); a token
     * endpoint or a stats route is not. */
    bool (*model_call)(const char *method, const char *url);
    void (*answer)(const struct dialect_request *request, struct dialect_answer *answer);
};

extern const struct dialect dialect_azure, dialect_anthropic, dialect_bedrock, dialect_google, dialect_ollama,
    dialect_responses,
    dialect_http;

/* ---- helpers for the dialects (model_server_dialect.c) ---- */

/* Add a header to the answer (formatted; cut at 191 bytes). */
void dialect_header(struct dialect_answer *a, const char *name, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
/* Set the answer to status and the JSON of body (which it takes: json_decref'd). */
void dialect_json(struct dialect_answer *a, unsigned status, json_t *body);
/* A request header, or NULL. */
const char *dialect_request_header(const struct dialect_request *r, const char *name);
/* The request body as JSON, or NULL (the answer then holds a 400 in the dialect's words,
 * made by the caller). */
json_t *dialect_body_json(const struct dialect_request *r);
/* Percent-decode s[0..n) into a malloc'd string; form: '+' is a space too. */
char *dialect_decode(const char *s, size_t n, bool form);
/* Whether text holds the marker ("[[safety]]" and the like: how a test asks a dialect for a
 * refusal or a filtered answer). */
bool dialect_marked(const char *text, const char *marker);
/* Whether an "AWS4-HMAC-SHA256 ..." Authorization (auth) is the signature --aws-access-key-id
 * and --aws-secret-access-key make for the request and service, its date within 5 minutes;
 * else a 403 in AWS's words is in a (model_server_bedrock.c). */
bool dialect_sigv4_holds(const struct dialect_request *r, const char *auth, const char *service, struct dialect_answer *a);
/* "2024-05-01T12:00:30Z" for now + seconds (RFC 3339, UTC). */
void dialect_rfc3339(char out[32], long seconds_from_now);

/* ---- what model-server.c gives them ---- */

/* The fake model's answer to a user text: a rating 1..5 from the lexicon, the first words when
 * the system prompt or the text asks for a summary, or a JSON object that follows schema (a
 * JSON schema with lower-case types; NULL: none). fault DIALECT_MALFORMED and
 * DIALECT_OUT_OF_RANGE spoil it as for /v1/chat/completions. malloc'd. */
char *dialect_content(const char *user, size_t len, const char *system, const json_t *schema, enum dialect_fault fault,
                      uint64_t serial);
/* The sentiment weight of a text (the lexicon's sum) and its rating 1..5. */
int dialect_weight(const char *text, size_t len);
int dialect_rating(const char *text, size_t len);
/* An embedding of text as a JSON array (the same hash vectors as /v1/embeddings). */
json_t *dialect_embedding(const char *text, size_t len, long dimensions);
/* An embeddings request of `inputs` inputs is answered (counted in /stats: embedding_requests,
 * embedding_inputs): how many vectors the answer holds (the first ones; one fewer with
 * --embed-short when there are several), and the length of vector i (one short for the last
 * with --embed-odd when there are several). */
size_t dialect_embedding_items(size_t inputs);
long dialect_embedding_length(size_t i, size_t inputs, long dimensions);
/* Tokens as the server counts them: bytes / 4, at least 1. */
long dialect_tokens(size_t bytes);

#endif
