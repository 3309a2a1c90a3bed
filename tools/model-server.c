/* model-server.c: a fake OpenAI-compatible model server for runnel's demo, tests and benchmarks.
 *
 * /v1/chat/completions answers a deterministic sentiment rating computed from tools/lexicon.h,
 * /v1/embeddings answers hash vectors, and seeded faults (latency, 429/500, hangs, closes, bad
 * answers, overload) are injected on request. The one thing to know: nothing ever sleeps on the
 * serving thread. Every wait suspends the libmicrohttpd connection and the timer thread resumes it.
 * The default event loop is poll, not epoll: see --event-loop for the libmicrohttpd 0.9.75 bug. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <jansson.h>
#include <microhttpd.h>

#include "lexicon.h"
#include "model_server.h"
#include "model_server_dialect.h"
#include "standin.h"

#define MAX_BODY_BYTES (1024 * 1024)  /* larger request bodies get 413 */
#define HANG_POLL_NS (200 * 1000000ull) /* how often a hung request checks for a client close */
#define MAX_EMBEDDING_DIMENSIONS 4096
#define MAX_CHOICES 16
#define SCHEMA_MAX_DEPTH 8
#define SUMMARY_WORDS 8

/* ---------------------------------------------------------------------------------------------
 * Configuration: every option is declared once, as data, so parsing and --help agree. */

struct config {
    long port, threads, timeout_s, max_connections;
    long latency_ms, latency_jitter_ms, retry_after_s;
    double fail_rate, rate_429, rate_500, hang_rate, close_rate, malformed_rate, out_of_range_rate;
    long degrade_above, degrade_ms;
    long max_requests, seed, revoke_after;
    const char *api_key, *event_loop, *refuse;
    bool verbose, help, no_usage;
};

static struct config config = {
    .port = -1, .threads = 1, .timeout_s = 60, .max_connections = 4096,
    .retry_after_s = 1, .degrade_ms = 2, .seed = 1, .event_loop = "poll",
};

/* The providers' dialects (model_server_dialect.h), in the order they are asked. */
static struct dialect_config dialect_config = {.token_lifetime_s = 3600};
static const struct dialect *const dialects[] = {&dialect_azure, &dialect_anthropic, &dialect_bedrock,
                                                 &dialect_google, &dialect_ollama, &dialect_http,
                                                 &dialect_responses};

static const struct standin_option option_specs[] = {
    {"--port", STANDIN_INTEGER, &config.port, 0, 65535,
     "TCP port on 127.0.0.1 (required); 0 picks a free port. Prints 'listening on URL'."},
    {"--threads", STANDIN_INTEGER, &config.threads, 1, 64,
     "serving threads, each with its own event loop (a thread pool when > 1)"},
    {"--event-loop", STANDIN_TEXT, &config.event_loop, 0, 0,
     "poll or epoll. libmicrohttpd 0.9.75's epoll loop loses read events when more\n"
     "      than ~128 keep-alive connections are busy (connections stall after one answer),\n"
     "      so poll is the default"},
    {"--latency-ms", STANDIN_INTEGER, &config.latency_ms, 0, 3600000,
     "fixed latency added to every model answer"},
    {"--latency-jitter-ms", STANDIN_INTEGER, &config.latency_jitter_ms, 0, 3600000,
     "plus a uniform random 0..J ms"},
    {"--fail-rate", STANDIN_RATE, &config.fail_rate, 0, 0,
     "fraction answered with an error: half 429, half 500"},
    {"--rate-429", STANDIN_RATE, &config.rate_429, 0, 0,
     "extra fraction answered 429 (Retry-After, x-ratelimit-reset-requests)"},
    {"--rate-500", STANDIN_RATE, &config.rate_500, 0, 0, "extra fraction answered 500"},
    {"--hang-rate", STANDIN_RATE, &config.hang_rate, 0, 0,
     "fraction never answered: held open until the client closes or --timeout passes"},
    {"--close-rate", STANDIN_RATE, &config.close_rate, 0, 0,
     "fraction whose connection is closed without an answer (after the latency)"},
    {"--malformed-rate", STANDIN_RATE, &config.malformed_rate, 0, 0,
     "fraction of chat answers that are 200 OK with garbage content (no number / bad JSON)"},
    {"--out-of-range-rate", STANDIN_RATE, &config.out_of_range_rate, 0, 0,
     "fraction of chat answers that are 200 OK with a rating of 7 or 0"},
    {"--retry-after", STANDIN_INTEGER, &config.retry_after_s, 0, 86400,
     "seconds sent in Retry-After and x-ratelimit-reset-requests on 429"},
    {"--degrade-above", STANDIN_INTEGER, &config.degrade_above, 0, 1000000,
     "overload model, 0 = off. When a model request completes its upload while\n"
     "      I = in-flight model requests (itself included) > N: its latency grows by\n"
     "      --degrade-ms * (I - N) and it is answered 429 with probability (I - N) / I"},
    {"--degrade-ms", STANDIN_INTEGER, &config.degrade_ms, 0, 60000,
     "extra latency per in-flight request above --degrade-above"},
    {"--refuse", STANDIN_TEXT, &config.refuse, 0, 0,
     "a chat prompt holding this text is answered 400 content_filter (a record the provider refuses)"},
    {"--api-key", STANDIN_TEXT, &config.api_key, 0, 0,
     "require 'Authorization: Bearer K' on /v1/*, else 401; the dialects want it in their\n"
     "      own header (api-key, x-api-key, x-goog-api-key, X-Api-Key, or a bearer)"},
    {"--aws-access-key-id", STANDIN_TEXT, &dialect_config.aws_access_key_id, 0, 0,
     "Bedrock and /endpoints/NAME/invocations (service sagemaker): require a SigV4 signature\n"
     "      made with this key id and --aws-secret-access-key"},
    {"--aws-secret-access-key", STANDIN_TEXT, &dialect_config.aws_secret_access_key, 0, 0,
     "Bedrock: the secret key the signature is checked with"},
    {"--google-key", STANDIN_TEXT, &dialect_config.google_key, 0, 0,
     "a service-account key file (JSON): POST /token exchanges JWTs signed with it for Vertex tokens"},
    {"--token-lifetime", STANDIN_INTEGER, &dialect_config.token_lifetime_s, 1, 86400,
     "expires_in, in seconds, of the tokens /token issues"},
    {"--max-requests", STANDIN_INTEGER, &config.max_requests, 0, LONG_MAX,
     "model requests after the first N since start get 503; 0 = unlimited"},
    {"--revoke-after", STANDIN_INTEGER, &config.revoke_after, 0, LONG_MAX,
     "model requests after the first N since start get 401, as if the key was revoked; 0 = never"},
    {"--seed", STANDIN_INTEGER, &config.seed, 0, LONG_MAX,
     "PRNG seed; request number k draws its faults from (seed, k) alone"},
    {"--timeout", STANDIN_INTEGER, &config.timeout_s, 1, 86400,
     "idle connection timeout in seconds; also the longest a hung request is held"},
    {"--max-connections", STANDIN_INTEGER, &config.max_connections, 1, 1000000,
     "connection limit"},
    {"--embed-short", STANDIN_FLAG, &dialect_config.embed_short, 0, 0,
     "an embeddings answer to several inputs (every dialect) leaves out the last one's vector"},
    {"--embed-odd", STANDIN_FLAG, &dialect_config.embed_odd, 0, 0,
     "an embeddings answer to several inputs gives the last one a vector one number short"},
    {"--no-usage", STANDIN_FLAG, &config.no_usage, 0, 0,
     "answer without the usage object (token counts), as some compatible servers do"},
    {"--rpm", STANDIN_INTEGER, &ms_quota_config.rpm, 0, 100000000,
     "requests per minute the model endpoints allow (a bucket of N refilled over a\n"
     "      minute); answers carry x-ratelimit-*-requests (the Anthropic dialect:\n"
     "      anthropic-ratelimit-requests-*), an empty bucket answers 429; 0 = off"},
    {"--tpm", STANDIN_INTEGER, &ms_quota_config.tpm, 0, 1000000000,
     "tokens per minute, counted as OpenAI estimates a request: the characters of its\n"
     "      messages / 4 plus max_tokens; x-ratelimit-*-tokens; 0 = off"},
    {"--batch-speed", STANDIN_INTEGER, &ms_batch_config.speed, 1, 1000000,
     "the batch clock: a batch validates for 10 s, answers 10 lines/s, finalizes for 10 s,\n"
     "      all divided by N (100: a 300-line batch takes 0.5 s)"},
    {"--batch-line-500", STANDIN_RATE, &ms_batch_config.line_500, 0, 0,
     "fraction of batch lines answered 500 server_error (in the error file)"},
    {"--batch-line-400", STANDIN_RATE, &ms_batch_config.line_400, 0, 0,
     "fraction of batch lines answered 400 invalid_request_error (in the error file)"},
    {"--batch-line-malformed", STANDIN_RATE, &ms_batch_config.line_malformed, 0, 0,
     "fraction of batch lines answered 200 with garbage content"},
    {"--batch-expire-every", STANDIN_INTEGER, &ms_batch_config.expire_every, 0, LONG_MAX,
     "every Nth batch expires when half its lines are answered (the rest: batch_expired); 0 = none"},
    {"--batch-fail-every", STANDIN_INTEGER, &ms_batch_config.fail_every, 0, LONG_MAX,
     "every Nth batch fails validation; 0 = none"},
    {"--max-file-mb", STANDIN_INTEGER, &ms_batch_config.max_file_mb, 1, 4096,
     "largest upload to /v1/files, in MiB"},
    {"--verbose", STANDIN_FLAG, &config.verbose, 0, 0, "log one line per request to stderr"},
    {"--help", STANDIN_FLAG, &config.help, 0, 0, "print this help and exit"},
};

static void config_print_help(FILE *out)
{
    fprintf(out,
            "usage: model-server --port P [options]\n"
            "OpenAI-compatible fake model server on 127.0.0.1 for runnel tests and benchmarks.\n\n"
            "Endpoints: POST /v1/chat/completions, POST /v1/responses, POST /v1/embeddings,\n"
            "GET /v1/models, GET /stats, POST /stats/reset. The providers' dialects: Azure OpenAI\n"
            "(/openai/deployments/D/chat/completions, /openai/v1/...), Anthropic (/v1/messages),\n"
            "Bedrock (/model/ID/converse, /invoke; SigV4), Gemini (/v1beta/models/M:generateContent,\n"
            ":embedContent, :batchEmbedContents), Vertex (/v1/projects/P/locations/L/publishers/google/models/M:...;\n"
            "tokens from POST /token, GET /token/stats), Ollama (/api/chat, /api/embed) and a\n"
            "SageMaker-style model (/endpoints/NAME/invocations). OpenAI's batch API: POST /v1/files\n"
            "(multipart, purpose=batch), GET /v1/files/ID[/content], POST /v1/batches, GET\n"
            "/v1/batches[/ID], POST /v1/batches/ID/cancel (answers as the live endpoints, on the\n"
            "--batch-speed clock), and Anthropic's Message Batches (POST /v1/messages/batches, GET\n"
            "/v1/messages/batches[/ID], GET .../ID/results, POST .../ID/cancel).\n"
            "Chat answers rate the user messages 1..5 with\n"
            "tools/lexicon.h (bare number, or JSON for response_format json_object/json_schema);\n"
            "'Summarize:' or a system prompt containing 'summar' gets the first words back.\n\n"
            "Faults apply to the two POST model endpoints only, to requests that passed the\n"
            "--api-key, size (413 over 1 MiB) and --max-requests checks. One uniform draw per\n"
            "request picks at most one of 429, 500, hang, close, malformed, out-of-range, in that\n"
            "order; rates are fractions 0..1 and if they sum above 1 the later ones shrink.\n"
            "Latency (fixed + jitter + degrade) delays every such answer, errors included.\n\n"
            "Options (--name VALUE or --name=VALUE):\n");
    standin_options_help(out, option_specs, sizeof option_specs / sizeof option_specs[0]);
}

/* ---------------------------------------------------------------------------------------------
 * Counters, shared by all serving threads (GET /stats). */

static struct {
    atomic_ullong requests, ok, status_429, status_500, status_4xx, status_503;
    atomic_ullong hung, closed, malformed, out_of_range;
    atomic_llong in_flight, max_in_flight;
    atomic_ullong embedding_requests, embedding_inputs; /* embeddings requests answered (every dialect, batch lines too) and their inputs */
} stats;

static atomic_ullong request_serial;     /* never reset: request ids and --max-requests */
static atomic_llong suspended_requests;  /* suspended now; must reach 0 before MHD_stop_daemon */
static atomic_bool shutting_down;

static void stats_reset(void)
{
    atomic_ullong *counters[] = {&stats.requests, &stats.ok, &stats.status_429, &stats.status_500,
                                 &stats.status_4xx, &stats.status_503, &stats.hung, &stats.closed,
                                 &stats.malformed, &stats.out_of_range, &stats.embedding_requests,
                                 &stats.embedding_inputs};
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++) atomic_store(counters[i], 0);
    atomic_store(&stats.max_in_flight, atomic_load(&stats.in_flight));
}

static void stats_enter(void)
{
    long long now = atomic_fetch_add(&stats.in_flight, 1) + 1;
    long long seen = atomic_load(&stats.max_in_flight);
    while (now > seen && !atomic_compare_exchange_weak(&stats.max_in_flight, &seen, now)) {
    }
}

/* ---------------------------------------------------------------------------------------------
 * Small helpers: monotonic clock, PRNG, growable string with JSON escaping. */

static uint64_t clock_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double random_fraction(uint64_t *state)
{
    return (double)(splitmix64(state) >> 11) * 0x1.0p-53;
}

/* A growable NUL-terminated buffer. After an allocation failure `failed` is set and later
 * appends are ignored, so builders check once at the end. The owner frees `data`. */
struct strbuf {
    char *data;
    size_t length, capacity;
    bool failed;
};

static bool strbuf_reserve(struct strbuf *sb, size_t extra)
{
    if (sb->failed) return false;
    if (extra > MAX_BODY_BYTES * 64ull || sb->length + extra + 1 <= sb->capacity) {
        if (extra > MAX_BODY_BYTES * 64ull) sb->failed = true;
        return !sb->failed;
    }
    size_t capacity = sb->capacity ? sb->capacity : 512;
    while (capacity < sb->length + extra + 1) capacity *= 2;
    char *data = realloc(sb->data, capacity);
    if (!data) {
        sb->failed = true;
        return false;
    }
    sb->data = data;
    sb->capacity = capacity;
    return true;
}

static void strbuf_append(struct strbuf *sb, const char *text, size_t length)
{
    if (!strbuf_reserve(sb, length)) return;
    memcpy(sb->data + sb->length, text, length);
    sb->length += length;
    sb->data[sb->length] = '\0';
}

static void strbuf_puts(struct strbuf *sb, const char *text) { strbuf_append(sb, text, strlen(text)); }

__attribute__((format(printf, 2, 3))) static void strbuf_printf(struct strbuf *sb, const char *format, ...)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!strbuf_reserve(sb, attempt == 0 ? 64 : 0)) return;
        size_t room = sb->capacity - sb->length;
        va_list args;
        va_start(args, format);
        int written = vsnprintf(sb->data + sb->length, room, format, args);
        va_end(args);
        if (written < 0) {
            sb->failed = true;
            return;
        }
        if ((size_t)written < room) {
            sb->length += (size_t)written;
            return;
        }
        if (!strbuf_reserve(sb, (size_t)written)) return;
    }
}

/* Append text as a quoted JSON string. Bytes >= 0x80 pass through (input came from jansson,
 * which only accepts valid UTF-8). */
static void strbuf_json_string(struct strbuf *sb, const char *text, size_t length)
{
    static const char hex[] = "0123456789abcdef";
    strbuf_append(sb, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        strbuf_append(sb, text + run, i - run);
        run = i + 1;
        char escape[7] = {'\\', 0};
        size_t escape_length = 2;
        switch (c) {
        case '"': escape[1] = '"'; break;
        case '\\': escape[1] = '\\'; break;
        case '\n': escape[1] = 'n'; break;
        case '\r': escape[1] = 'r'; break;
        case '\t': escape[1] = 't'; break;
        default:
            memcpy(escape + 1, "u00", 3);
            escape[4] = hex[c >> 4];
            escape[5] = hex[c & 15];
            escape_length = 6;
        }
        strbuf_append(sb, escape, escape_length);
    }
    strbuf_append(sb, text + run, length - run);
    strbuf_append(sb, "\"", 1);
}

static void strbuf_json_value(struct strbuf *sb, const json_t *value)
{
    if (json_is_string(value)) {
        strbuf_json_string(sb, json_string_value(value), json_string_length(value));
        return;
    }
    char *text = json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT);
    strbuf_puts(sb, text ? text : "null");
    free(text);
}

/* {"error":{...}} in OpenAI's shape; code NULL is written as null. */
static void error_json(struct strbuf *out, const char *message, const char *type, const char *code)
{
    strbuf_puts(out, "{\"error\":{\"message\":");
    strbuf_json_string(out, message, strlen(message));
    strbuf_puts(out, ",\"type\":");
    strbuf_json_string(out, type, strlen(type));
    strbuf_puts(out, ",\"param\":null,\"code\":");
    if (code)
        strbuf_json_string(out, code, strlen(code));
    else
        strbuf_puts(out, "null");
    strbuf_puts(out, "}}");
}

char *ms_error_json(const char *message, const char *type, const char *code)
{
    struct strbuf out = {0};
    error_json(&out, message, type, code);
    if (out.failed) {
        free(out.data);
        return NULL;
    }
    return out.data;
}

/* ---------------------------------------------------------------------------------------------
 * Lexicon: an open-addressing index over lexicon_words, built once before serving. */

#define LEXICON_SIZE (sizeof lexicon_words / sizeof lexicon_words[0])
#define LEXICON_SLOTS 256
#define LEXICON_LONGEST 24

static struct { uint16_t word_plus_one; uint8_t length; } lexicon_slots[LEXICON_SLOTS];

static uint32_t word_hash(const char *word, size_t length)
{
    uint32_t hash = 2166136261u;
    for (size_t i = 0; i < length; i++) hash = (hash ^ (unsigned char)word[i]) * 16777619u;
    return hash;
}

static void lexicon_index_build(void)
{
    _Static_assert(LEXICON_SIZE * 2 < LEXICON_SLOTS, "lexicon index too small");
    for (size_t i = 0; i < LEXICON_SIZE; i++) {
        size_t length = strlen(lexicon_words[i].word);
        uint32_t slot = word_hash(lexicon_words[i].word, length) % LEXICON_SLOTS;
        while (lexicon_slots[slot].word_plus_one) slot = (slot + 1) % LEXICON_SLOTS;
        lexicon_slots[slot].word_plus_one = (uint16_t)(i + 1);
        lexicon_slots[slot].length = (uint8_t)length;
    }
}

static int lexicon_weight(const char *word, size_t length)
{
    uint32_t slot = word_hash(word, length) % LEXICON_SLOTS;
    while (lexicon_slots[slot].word_plus_one) {
        const struct lexicon_word *entry = &lexicon_words[lexicon_slots[slot].word_plus_one - 1];
        if (lexicon_slots[slot].length == length && memcmp(entry->word, word, length) == 0)
            return entry->weight;
        slot = (slot + 1) % LEXICON_SLOTS;
    }
    return 0;
}

/* Sum of lexicon weights of the words (ASCII letter runs, lower-cased) in text. */
static int text_weight(const char *text, size_t length)
{
    char word[LEXICON_LONGEST];
    size_t word_length = 0;
    bool too_long = false;
    int sum = 0;
    for (size_t i = 0; i <= length; i++) {
        unsigned char c = i < length ? (unsigned char)text[i] : ' ';
        if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') {
            if (word_length < sizeof word)
                word[word_length++] = (char)(c | 0x20);
            else
                too_long = true;
        } else if (word_length) {
            if (!too_long) sum += lexicon_weight(word, word_length);
            word_length = 0;
            too_long = false;
        }
    }
    return sum;
}

/* ---------------------------------------------------------------------------------------------
 * Timer: a min-heap of (due time, suspended connection) served by one thread that calls
 * MHD_resume_connection when an entry is due, or at once for every entry while shutting down. */

struct timer_entry {
    uint64_t due_ns;
    struct MHD_Connection *connection;
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct timer_entry *heap;
    size_t count, capacity;
    bool stop;
    pthread_t thread;
} timer = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void timer_sift_down(size_t index)
{
    for (;;) {
        size_t child = 2 * index + 1;
        if (child >= timer.count) return;
        if (child + 1 < timer.count && timer.heap[child + 1].due_ns < timer.heap[child].due_ns) child++;
        if (timer.heap[index].due_ns <= timer.heap[child].due_ns) return;
        struct timer_entry swap = timer.heap[index];
        timer.heap[index] = timer.heap[child];
        timer.heap[child] = swap;
        index = child;
    }
}

/* Schedule MHD_resume_connection(connection) at due_ns. Returns 0, or ENOMEM. */
static int timer_add(uint64_t due_ns, struct MHD_Connection *connection)
{
    pthread_mutex_lock(&timer.lock);
    if (timer.count == timer.capacity) {
        size_t capacity = timer.capacity ? timer.capacity * 2 : 1024;
        struct timer_entry *heap = realloc(timer.heap, capacity * sizeof *heap);
        if (!heap) {
            pthread_mutex_unlock(&timer.lock);
            return ENOMEM;
        }
        timer.heap = heap;
        timer.capacity = capacity;
    }
    size_t index = timer.count++;
    while (index > 0 && timer.heap[(index - 1) / 2].due_ns > due_ns) {
        timer.heap[index] = timer.heap[(index - 1) / 2];
        index = (index - 1) / 2;
    }
    timer.heap[index] = (struct timer_entry){due_ns, connection};
    if (index == 0) pthread_cond_signal(&timer.wake);
    pthread_mutex_unlock(&timer.lock);
    return 0;
}

static void *timer_run(void *unused)
{
    (void)unused;
    struct MHD_Connection *due[256];
    pthread_mutex_lock(&timer.lock);
    while (!timer.stop) {
        bool draining = atomic_load(&shutting_down);
        uint64_t now = clock_ns();
        if (timer.count == 0 || (!draining && timer.heap[0].due_ns > now)) {
            if (timer.count == 0) {
                pthread_cond_wait(&timer.wake, &timer.lock);
            } else {
                uint64_t due_ns = timer.heap[0].due_ns;
                struct timespec until = {(time_t)(due_ns / 1000000000ull), (long)(due_ns % 1000000000ull)};
                pthread_cond_timedwait(&timer.wake, &timer.lock, &until);
            }
            continue;
        }
        size_t n = 0;
        while (timer.count > 0 && n < sizeof due / sizeof due[0] && (draining || timer.heap[0].due_ns <= now)) {
            due[n++] = timer.heap[0].connection;
            timer.heap[0] = timer.heap[--timer.count];
            timer_sift_down(0);
        }
        pthread_mutex_unlock(&timer.lock);
        for (size_t i = 0; i < n; i++) MHD_resume_connection(due[i]);
        pthread_mutex_lock(&timer.lock);
    }
    pthread_mutex_unlock(&timer.lock);
    return NULL;
}

static int timer_start(void)
{
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    int error = pthread_cond_init(&timer.wake, &attributes);
    pthread_condattr_destroy(&attributes);
    if (error) return error;
    return pthread_create(&timer.thread, NULL, timer_run, NULL);
}

static void timer_poke(bool stop)
{
    pthread_mutex_lock(&timer.lock);
    if (stop) timer.stop = true;
    pthread_cond_signal(&timer.wake);
    pthread_mutex_unlock(&timer.lock);
}

static void timer_finish(void)
{
    timer_poke(true);
    pthread_join(timer.thread, NULL);
    pthread_cond_destroy(&timer.wake);
    free(timer.heap);
}

/* ---------------------------------------------------------------------------------------------
 * Requests. One struct request per HTTP request, owned by MHD's request context and freed in
 * request_completed(). */

enum route { ROUTE_CHAT, ROUTE_EMBEDDINGS, ROUTE_MODELS, ROUTE_STATS, ROUTE_STATS_RESET,
             ROUTE_BAD_METHOD, ROUTE_NOT_FOUND, ROUTE_DIALECT, ROUTE_BATCH };
enum phase { PHASE_RECEIVING, PHASE_WAITING, PHASE_HANGING, PHASE_ANSWERED };
enum fault { FAULT_NONE, FAULT_429, FAULT_500, FAULT_HANG, FAULT_CLOSE, FAULT_MALFORMED,
             FAULT_OUT_OF_RANGE };

struct request {
    struct MHD_Connection *connection;
    const char *method, *url;  /* owned by MHD, valid until the request completes */
    enum route route;
    enum phase phase;
    bool model_call;           /* counted in requests and in_flight */
    bool too_large;
    bool close_after_wait;     /* close fault: drop the connection when the wait ends */
    bool suspended;            /* counted in suspended_requests */
    unsigned status;           /* decided answer status, 0 = not yet */
    struct MHD_Response *response;
    uint64_t serial, rng, started_ns, hang_until_ns;
    struct strbuf body;
    const struct dialect *dialect; /* ROUTE_DIALECT: whose */
    struct ms_quota_ticket quota; /* what --rpm/--tpm said of it */
    void *batch;               /* ROUTE_BATCH: model_server_batch.c's */
};

static void log_request(const struct request *request, const char *outcome)
{
    if (!config.verbose) return;
    double elapsed_ms = (double)(clock_ns() - request->started_ns) / 1e6;
    fprintf(stderr, "model-server: #%" PRIu64 " %s %s %s %.1f ms\n", request->serial, request->method,
            request->url, outcome, elapsed_ms);
}

static void count_status(const struct request *request, unsigned status)
{
    if (!request->model_call) return;
    if (status == 200) atomic_fetch_add(&stats.ok, 1);
    else if (status == 429) atomic_fetch_add(&stats.status_429, 1);
    else if (status == 500) atomic_fetch_add(&stats.status_500, 1);
    else if (status == 503) atomic_fetch_add(&stats.status_503, 1);
    else if (status >= 400 && status < 500) atomic_fetch_add(&stats.status_4xx, 1);
}

/* Turn body into the request's pending answer; takes ownership of body->data.
 * Returns false when out of memory (the caller then drops the connection). */
static bool request_set_answer(struct request *request, unsigned status, struct strbuf *body)
{
    if (body->failed || body->length == 0) {
        free(body->data);
        *body = (struct strbuf){0};
        return false;
    }
    struct MHD_Response *response =
        MHD_create_response_from_buffer(body->length, body->data, MHD_RESPMEM_MUST_FREE);
    if (!response) {
        free(body->data);
        *body = (struct strbuf){0};
        return false;
    }
    *body = (struct strbuf){0};
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (request->quota.on) {
        ms_quota_headers(response, &request->quota);
    } else if (status == 429) {
        char seconds[32];
        snprintf(seconds, sizeof seconds, "%ld", config.retry_after_s);
        MHD_add_response_header(response, MHD_HTTP_HEADER_RETRY_AFTER, seconds);
        snprintf(seconds, sizeof seconds, "%lds", config.retry_after_s);
        MHD_add_response_header(response, "x-ratelimit-reset-requests", seconds);
        MHD_add_response_header(response, "x-ratelimit-remaining-requests", "0");
    } else if (status == 405) {
        MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW,
                                request->route == ROUTE_STATS ? "GET" : "POST");
    }
    request->response = response;
    request->status = status;
    count_status(request, status);
    return true;
}

static bool request_set_error(struct request *request, unsigned status, const char *message,
                              const char *type, const char *code)
{
    struct strbuf body = {0};
    error_json(&body, message, type, code);
    return request_set_answer(request, status, &body);
}

static enum MHD_Result request_send(struct request *request)
{
    enum MHD_Result result = MHD_queue_response(request->connection, request->status, request->response);
    MHD_destroy_response(request->response);
    request->response = NULL;
    request->phase = PHASE_ANSWERED;
    if (config.verbose) {
        char outcome[16];
        snprintf(outcome, sizeof outcome, "%u", request->status);
        log_request(request, outcome);
    }
    return result;
}

/* Suspend the connection until due_ns. Returns false (and does not suspend) while shutting
 * down. The increment-then-check order pairs with main()'s set-then-wait so no suspension
 * slips past the drain. */
static bool request_suspend(struct request *request, uint64_t due_ns)
{
    atomic_fetch_add(&suspended_requests, 1);
    if (atomic_load(&shutting_down)) {
        atomic_fetch_sub(&suspended_requests, 1);
        return false;
    }
    request->suspended = true;
    MHD_suspend_connection(request->connection);
    if (timer_add(due_ns, request->connection) != 0) MHD_resume_connection(request->connection);
    return true;
}

/* The request is running again (resumed, or completed by MHD after a resume because the client
 * had gone): take it out of the suspended count exactly once. */
static void request_unsuspend(struct request *request)
{
    if (!request->suspended) return;
    request->suspended = false;
    atomic_fetch_sub(&suspended_requests, 1);
}

static bool peer_closed(struct MHD_Connection *connection)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!info) return true;
    char byte;
    ssize_t got = recv(info->connect_fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (got == 0) return true;
    return got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

/* ---------------------------------------------------------------------------------------------
 * Chat completions. */

enum answer_format { FORMAT_TEXT, FORMAT_JSON_OBJECT, FORMAT_JSON_SCHEMA };

struct answer {
    int rating;          /* 1..5 from the lexicon */
    int shown_rating;    /* rating, or 7/0 under the out-of-range fault */
    bool out_of_range;
    bool summary_mode;
    struct strbuf summary;
};

/* Append the text of a message content (a string or an array of {type,text} parts) to into
 * (if not NULL); returns its length in bytes. */
static size_t content_text(const json_t *content, struct strbuf *into)
{
    if (json_is_string(content)) {
        if (into) strbuf_append(into, json_string_value(content), json_string_length(content));
        return json_string_length(content);
    }
    size_t total = 0, index;
    json_t *part;
    if (json_is_array(content)) {
        json_array_foreach(content, index, part) {
            json_t *text = json_object_get(part, "text");
            if (!json_is_string(text)) continue;
            if (into) {
                if (total) strbuf_append(into, " ", 1);
                strbuf_append(into, json_string_value(text), json_string_length(text));
            }
            total += json_string_length(text) + (total ? 1 : 0);
        }
    }
    return total;
}

/* The first SUMMARY_WORDS whitespace-separated words of text, after an optional "Summarize:". */
static void summarize(const char *text, size_t length, struct strbuf *out)
{
    size_t i = 0;
    while (i < length && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r')) i++;
    if (length - i >= 10 && strncasecmp(text + i, "summarize:", 10) == 0) i += 10;
    for (int words = 0; words < SUMMARY_WORDS; words++) {
        while (i < length && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r')) i++;
        if (i == length) break;
        size_t start = i;
        while (i < length && !(text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r')) i++;
        if (words) strbuf_append(out, " ", 1);
        strbuf_append(out, text + start, i - start);
    }
    if (out->length == 0) strbuf_puts(out, "(empty)");
}

static const char *schema_type(const json_t *schema)
{
    json_t *type = json_object_get(schema, "type");
    if (json_is_string(type)) return json_string_value(type);
    size_t index;
    json_t *item;
    json_array_foreach(type, index, item) {
        if (json_is_string(item) && strcmp(json_string_value(item), "null") != 0)
            return json_string_value(item);
    }
    return "";
}

static void schema_object(struct strbuf *out, const json_t *schema, const struct answer *answer, int depth);

/* Append a value for one schema property (see --help / the brief for the mapping). */
static void schema_value(struct strbuf *out, const json_t *schema, const struct answer *answer, int depth)
{
    if (!json_is_object(schema) || depth > SCHEMA_MAX_DEPTH) {
        strbuf_puts(out, "null");
        return;
    }
    json_t *constant = json_object_get(schema, "const");
    json_t *enumeration = json_object_get(schema, "enum");
    const char *type = schema_type(schema);
    if (constant) {
        strbuf_json_value(out, constant);
    } else if (json_is_array(enumeration) && json_array_size(enumeration) > 0) {
        if (answer->out_of_range) {
            strbuf_printf(out, "%d", answer->shown_rating);  /* deliberately not in the enum */
            return;
        }
        size_t size = json_array_size(enumeration);
        long index = lround((answer->rating - 1) * (double)(size - 1) / 4.0);
        if (index < 0) index = 0;
        if ((size_t)index >= size) index = (long)size - 1;
        strbuf_json_value(out, json_array_get(enumeration, (size_t)index));
    } else if (strcmp(type, "integer") == 0 || strcmp(type, "number") == 0) {
        double value = answer->shown_rating;
        json_t *minimum = json_object_get(schema, "minimum"), *maximum = json_object_get(schema, "maximum");
        if (!answer->out_of_range && json_is_number(minimum) && value < json_number_value(minimum))
            value = type[0] == 'i' ? ceil(json_number_value(minimum)) : json_number_value(minimum);
        if (!answer->out_of_range && json_is_number(maximum) && value > json_number_value(maximum))
            value = type[0] == 'i' ? floor(json_number_value(maximum)) : json_number_value(maximum);
        strbuf_printf(out, "%.15g", value);
    } else if (strcmp(type, "string") == 0) {
        if (answer->summary_mode) {
            strbuf_json_string(out, answer->summary.data, answer->summary.length);
        } else {
            char text[32];
            int length = snprintf(text, sizeof text, "rated %d", answer->shown_rating);
            strbuf_json_string(out, text, (size_t)length);
        }
    } else if (strcmp(type, "boolean") == 0) {
        strbuf_puts(out, answer->shown_rating >= 4 ? "true" : "false");
    } else if (strcmp(type, "object") == 0) {
        schema_object(out, schema, answer, depth + 1);
    } else if (strcmp(type, "array") == 0) {
        json_t *items = json_object_get(schema, "items");
        strbuf_puts(out, "[");
        if (json_is_object(items)) schema_value(out, items, answer, depth + 1);
        strbuf_puts(out, "]");
    } else {
        strbuf_puts(out, "null");
    }
}

static void schema_object(struct strbuf *out, const json_t *schema, const struct answer *answer, int depth)
{
    const char *key;
    json_t *property;
    bool first = true;
    strbuf_puts(out, "{");
    json_object_foreach((json_t *)json_object_get(schema, "properties"), key, property) {
        if (!first) strbuf_puts(out, ",");
        first = false;
        strbuf_json_string(out, key, strlen(key));
        strbuf_puts(out, ":");
        schema_value(out, property, answer, depth);
    }
    strbuf_puts(out, "}");
}

/* The assistant message content for one answer. */
static void chat_content(struct strbuf *out, enum answer_format format, const json_t *schema,
                         const struct answer *answer, bool malformed)
{
    if (malformed) {
        if (format != FORMAT_TEXT)
            strbuf_printf(out, "{\"rating\": %d, \"reason\": \"the food was", answer->rating);
        else if (!answer->summary_mode)
            strbuf_puts(out, "The review seems rather positive overall.");
        return;  /* a summary's garbage is an empty answer */
    }
    if (format == FORMAT_JSON_SCHEMA) {
        schema_object(out, schema, answer, 0);
    } else if (format == FORMAT_JSON_OBJECT) {
        if (answer->summary_mode) {
            strbuf_puts(out, "{\"summary\":");
            strbuf_json_string(out, answer->summary.data, answer->summary.length);
            strbuf_puts(out, "}");
        } else {
            strbuf_printf(out, "{\"rating\":%d}", answer->shown_rating);
        }
    } else if (answer->summary_mode) {
        strbuf_append(out, answer->summary.data, answer->summary.length);
    } else {
        strbuf_printf(out, "%d", answer->shown_rating);
    }
}

/* Build the answer to a chat completion request body into out. Returns the HTTP status:
 * 200 with a chat.completion, or 400 with an error body. */
static unsigned chat_answer(struct request *request, enum fault fault, struct strbuf *out)
{
    json_error_t parse_error;
    json_t *root = json_loadb(request->body.data ? request->body.data : "", request->body.length, 0, &parse_error);
    if (!json_is_object(root)) {
        json_decref(root);
        error_json(out, "We could not parse the JSON body of your request.", "invalid_request_error", "invalid_json");
        return 400;
    }
    json_t *messages = json_object_get(root, "messages");
    if (!json_is_array(messages) || json_array_size(messages) == 0) {
        json_decref(root);
        error_json(out, "'messages' is a required property and must be a non-empty array",
                   "invalid_request_error", "missing_required_parameter");
        return 400;
    }

    struct strbuf user_text = {0}, scratch = {0}, content = {0};
    struct answer answer = {0};
    size_t prompt_bytes = 0, last_user_start = 0, index;
    bool system_wants_summary = false, have_user = false;
    json_t *message;
    json_array_foreach(messages, index, message) {
        const char *role = json_string_value(json_object_get(message, "role"));
        json_t *message_content = json_object_get(message, "content");
        if (role && strcmp(role, "user") == 0) {
            if (have_user) strbuf_append(&user_text, " ", 1);
            last_user_start = user_text.length;
            have_user = true;
            prompt_bytes += content_text(message_content, &user_text);
        } else if (role && (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0)) {
            scratch.length = 0;
            prompt_bytes += content_text(message_content, &scratch);
            if (scratch.data && !scratch.failed && strcasestr(scratch.data, "summar")) system_wants_summary = true;
        } else {
            prompt_bytes += content_text(message_content, NULL);
        }
    }
    const char *text = user_text.data ? user_text.data : "";
    const char *last_user = text + last_user_start;
    size_t last_user_length = user_text.length - last_user_start;
    while (last_user_length && (*last_user == ' ' || *last_user == '\n' || *last_user == '\t')) {
        last_user++;
        last_user_length--;
    }

    if (config.refuse && config.refuse[0] && strstr(text, config.refuse)) {
        error_json(out, "The prompt was refused by the content filter.", "invalid_request_error", "content_filter");
        free(user_text.data);
        free(scratch.data);
        json_decref(root);
        return 400;
    }

    answer.rating = lexicon_rating(text_weight(text, user_text.length));
    answer.shown_rating = answer.rating;
    if (fault == FAULT_OUT_OF_RANGE) {
        answer.out_of_range = true;
        answer.shown_rating = (splitmix64(&request->rng) & 1) ? 7 : 0;
    }
    answer.summary_mode = system_wants_summary ||
                          (last_user_length >= 10 && strncmp(last_user, "Summarize:", 10) == 0);
    if (answer.summary_mode) summarize(last_user, last_user_length, &answer.summary);

    enum answer_format format = FORMAT_TEXT;
    const json_t *schema = NULL;
    json_t *response_format = json_object_get(root, "response_format");
    const char *format_type = json_string_value(json_object_get(response_format, "type"));
    if (format_type && strcmp(format_type, "json_object") == 0) {
        format = FORMAT_JSON_OBJECT;
    } else if (format_type && strcmp(format_type, "json_schema") == 0) {
        json_t *wrapper = json_object_get(response_format, "json_schema");
        schema = json_object_get(wrapper, "schema");
        format = json_is_object(json_object_get(schema, "properties")) ? FORMAT_JSON_SCHEMA : FORMAT_JSON_OBJECT;
    }
    chat_content(&content, format, schema, &answer, fault == FAULT_MALFORMED);

    json_int_t choices = json_integer_value(json_object_get(root, "n"));
    if (choices < 1) choices = 1;
    if (choices > MAX_CHOICES) choices = MAX_CHOICES;
    const char *model = json_string_value(json_object_get(root, "model"));
    if (!model) model = "model-server";
    size_t prompt_tokens = prompt_bytes / 4 + 4 * json_array_size(messages);
    size_t completion_tokens = (content.length + 3) / 4;
    if (completion_tokens == 0) completion_tokens = 1;
    completion_tokens *= (size_t)choices;

    strbuf_printf(out, "{\"id\":\"chatcmpl-%" PRIu64 "\",\"object\":\"chat.completion\",\"created\":%lld,\"model\":",
                  request->serial, (long long)time(NULL));
    strbuf_json_string(out, model, strlen(model));
    strbuf_puts(out, ",\"choices\":[");
    for (json_int_t choice = 0; choice < choices; choice++) {
        strbuf_printf(out, "%s{\"index\":%lld,\"message\":{\"role\":\"assistant\",\"content\":",
                      choice ? "," : "", (long long)choice);
        strbuf_json_string(out, content.data ? content.data : "", content.length);
        strbuf_puts(out, "},\"finish_reason\":\"stop\"}");
    }
    if (config.no_usage) strbuf_puts(out, "]}");
    else strbuf_printf(out, "],\"usage\":{\"prompt_tokens\":%zu,\"completion_tokens\":%zu,\"total_tokens\":%zu}}",
                       prompt_tokens, completion_tokens, prompt_tokens + completion_tokens);

    bool failed = user_text.failed || scratch.failed || content.failed || answer.summary.failed;
    free(user_text.data);
    free(scratch.data);
    free(content.data);
    free(answer.summary.data);
    json_decref(root);
    if (failed) out->failed = true;
    return 200;
}

/* ---------------------------------------------------------------------------------------------
 * Embeddings: each input's vector is a normalized function of a 64-bit FNV hash of its text. */

static void embedding_vector(struct strbuf *out, const char *text, size_t length, long dimensions)
{
    uint64_t hash = 14695981039346656037ull;
    for (size_t i = 0; i < length; i++) hash = (hash ^ (unsigned char)text[i]) * 1099511628211ull;
    double sum_of_squares = 0;
    uint64_t state = hash;
    for (long d = 0; d < dimensions; d++) {
        double value = random_fraction(&state) * 2.0 - 1.0;
        sum_of_squares += value * value;
    }
    double scale = sum_of_squares > 0 ? 1.0 / sqrt(sum_of_squares) : 1.0;
    state = hash;
    strbuf_puts(out, "[");
    for (long d = 0; d < dimensions; d++)
        strbuf_printf(out, d ? ",%.6f" : "%.6f", (random_fraction(&state) * 2.0 - 1.0) * scale);
    strbuf_puts(out, "]");
}

static unsigned embeddings_answer(struct request *request, struct strbuf *out)
{
    json_error_t parse_error;
    json_t *root = json_loadb(request->body.data ? request->body.data : "", request->body.length, 0, &parse_error);
    if (!json_is_object(root)) {
        json_decref(root);
        error_json(out, "We could not parse the JSON body of your request.", "invalid_request_error", "invalid_json");
        return 400;
    }
    json_t *input = json_object_get(root, "input");
    bool valid = json_is_string(input) || (json_is_array(input) && json_array_size(input) > 0);
    size_t index;
    json_t *item;
    json_array_foreach(input, index, item) valid = valid && json_is_string(item);
    json_t *dimensions_value = json_object_get(root, "dimensions");
    json_int_t dimensions = dimensions_value ? json_integer_value(dimensions_value) : 8;
    if (!valid || dimensions < 1 || dimensions > MAX_EMBEDDING_DIMENSIONS) {
        json_decref(root);
        error_json(out, valid ? "'dimensions' must be an integer in 1..4096"
                              : "'input' must be a string or a non-empty array of strings",
                   "invalid_request_error", "invalid_value");
        return 400;
    }
    const char *model = json_string_value(json_object_get(root, "model"));
    if (!model) model = "model-server-embedding";
    size_t tokens = 0, count = json_is_string(input) ? 1 : json_array_size(input);
    size_t items = dialect_embedding_items(count);
    strbuf_puts(out, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < count; i++) {
        json_t *text = json_is_string(input) ? input : json_array_get(input, i);
        size_t length = json_string_length(text);
        tokens += length ? (length + 3) / 4 : 1;
        if (i >= items) continue;
        strbuf_printf(out, "%s{\"object\":\"embedding\",\"index\":%zu,\"embedding\":", i ? "," : "", i);
        embedding_vector(out, json_string_value(text), length, dialect_embedding_length(i, count, (long)dimensions));
        strbuf_puts(out, "}");
    }
    strbuf_puts(out, "],\"model\":");
    strbuf_json_string(out, model, strlen(model));
    if (config.no_usage) strbuf_puts(out, "}");
    else strbuf_printf(out, ",\"usage\":{\"prompt_tokens\":%zu,\"total_tokens\":%zu}}", tokens, tokens);
    json_decref(root);
    return 200;
}

uint64_t ms_clock_ns(void) { return clock_ns(); }
double ms_random_fraction(uint64_t *state) { return random_fraction(state); }
uint64_t ms_seed(void) { return (uint64_t)config.seed; }

const struct dialect_config *ms_dialect_config(void)
{
    dialect_config.api_key = config.api_key;
    dialect_config.retry_after_s = config.retry_after_s;
    return &dialect_config;
}

char *ms_model_answer(const char *body, size_t len, bool embeddings, uint64_t serial, int fault, unsigned *status,
                      size_t *out_len)
{
    struct request request = {.serial = serial};
    uint64_t seed_state = (uint64_t)config.seed ^ (serial * 0xD1B54A32D192ED03ull);
    request.rng = splitmix64(&seed_state);
    strbuf_append(&request.body, body, len);
    struct strbuf out = {0};
    enum fault kind = fault == MS_FAULT_MALFORMED ? FAULT_MALFORMED : fault == MS_FAULT_OUT_OF_RANGE ? FAULT_OUT_OF_RANGE
                                                                                                  : FAULT_NONE;
    *status = embeddings ? embeddings_answer(&request, &out) : chat_answer(&request, kind, &out);
    free(request.body.data);
    if (out.failed || request.body.failed) {
        free(out.data);
        return NULL;
    }
    *out_len = out.length;
    return out.data;
}

/* ---------------------------------------------------------------------------------------------
 * Routes that are not model calls. */

static unsigned stats_answer(struct strbuf *out)
{
    strbuf_printf(out,
                  "{\"requests\":%llu,\"ok\":%llu,\"status_429\":%llu,\"status_500\":%llu,"
                  "\"status_4xx\":%llu,\"status_503\":%llu,\"hung\":%llu,\"closed\":%llu,"
                  "\"malformed\":%llu,\"out_of_range\":%llu,\"in_flight\":%lld,\"max_in_flight\":%lld,"
                  "\"embedding_requests\":%llu,\"embedding_inputs\":%llu",
                  atomic_load(&stats.requests), atomic_load(&stats.ok), atomic_load(&stats.status_429),
                  atomic_load(&stats.status_500), atomic_load(&stats.status_4xx),
                  atomic_load(&stats.status_503), atomic_load(&stats.hung), atomic_load(&stats.closed),
                  atomic_load(&stats.malformed), atomic_load(&stats.out_of_range),
                  atomic_load(&stats.in_flight), atomic_load(&stats.max_in_flight),
                  atomic_load(&stats.embedding_requests), atomic_load(&stats.embedding_inputs));
    char *quota = ms_quota_stats(), *batch = ms_batch_stats();
    strbuf_printf(out, ",\"quota\":%s,\"batch\":%s}", quota ? quota : "null", batch ? batch : "null");
    free(quota);
    free(batch);
    return 200;
}

static const char models_body[] =
    "{\"object\":\"list\",\"data\":["
    "{\"id\":\"model-server\",\"object\":\"model\",\"created\":1700000000,\"owned_by\":\"runnel\"},"
    "{\"id\":\"model-server-embedding\",\"object\":\"model\",\"created\":1700000000,\"owned_by\":\"runnel\"}]}";

static enum route route_for(const char *method, const char *url, const struct dialect **dialect)
{
    for (size_t i = 0; i < sizeof dialects / sizeof dialects[0]; i++)
        if (dialects[i]->match(method, url)) {
            *dialect = dialects[i];
            return ROUTE_DIALECT;
        }
    bool post = strcmp(method, MHD_HTTP_METHOD_POST) == 0, get = strcmp(method, MHD_HTTP_METHOD_GET) == 0;
    if (strcmp(url, "/v1/chat/completions") == 0) return post ? ROUTE_CHAT : ROUTE_BAD_METHOD;
    if (strcmp(url, "/v1/embeddings") == 0) return post ? ROUTE_EMBEDDINGS : ROUTE_BAD_METHOD;
    if (strcmp(url, "/v1/models") == 0) return get ? ROUTE_MODELS : ROUTE_BAD_METHOD;
    if (strcmp(url, "/stats") == 0) return get ? ROUTE_STATS : ROUTE_BAD_METHOD;
    if (strcmp(url, "/stats/reset") == 0) return post ? ROUTE_STATS_RESET : ROUTE_BAD_METHOD;
    if (ms_batch_route(method, url)) return ROUTE_BATCH;
    return ROUTE_NOT_FOUND;
}

static bool authorized(struct MHD_Connection *connection)
{
    if (!config.api_key) return true;
    const char *header = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    return header && strncmp(header, "Bearer ", 7) == 0 && strcmp(header + 7, config.api_key) == 0;
}

/* Message Batches carry the key as Anthropic does: x-api-key. */
static bool anthropic_authorized(struct MHD_Connection *connection)
{
    const char *key = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "x-api-key");
    return config.api_key && key && strcmp(key, config.api_key) == 0;
}

/* ---------------------------------------------------------------------------------------------
 * The MHD access handler and its phases. */

/* First call for a request: headers are in, no body yet. */
static enum MHD_Result request_begin(struct MHD_Connection *connection, const char *url,
                                     const char *method, void **context)
{
    struct request *request = calloc(1, sizeof *request);
    if (!request) return MHD_NO;
    *context = request;
    request->connection = connection;
    request->method = method;
    request->url = url;
    request->started_ns = clock_ns();
    request->route = route_for(method, url, &request->dialect);
    request->model_call = request->route == ROUTE_CHAT || request->route == ROUTE_EMBEDDINGS ||
                          (request->route == ROUTE_DIALECT && request->dialect->model_call(method, url));
    if (!request->model_call) return MHD_YES;

    request->serial = atomic_fetch_add(&request_serial, 1) + 1;
    uint64_t seed_state = (uint64_t)config.seed ^ (request->serial * 0xD1B54A32D192ED03ull);
    request->rng = splitmix64(&seed_state);
    atomic_fetch_add(&stats.requests, 1);
    stats_enter();

    bool revoked = config.revoke_after > 0 && request->serial > (uint64_t)config.revoke_after;
    if (request->route != ROUTE_DIALECT && strncmp(url, "/v1/", 4) == 0 && (revoked || !authorized(connection))) {
        if (!request_set_error(request, 401, "Incorrect API key provided.", "invalid_request_error",
                               "invalid_api_key"))
            return MHD_NO;
    } else if (config.max_requests > 0 && request->serial > (uint64_t)config.max_requests) {
        if (!request_set_error(request, 503, "The server is no longer accepting requests (--max-requests).",
                               "server_error", "max_requests_reached"))
            return MHD_NO;
    }
    const char *length = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (length && strtoull(length, NULL, 10) > MAX_BODY_BYTES) {
        if (request->response) {  /* the 401/503 decided above goes out now, the body unread */
            return request_send(request);
        }
        if (!request_set_error(request, 413, "Request body exceeds 1 MiB.", "invalid_request_error",
                               "request_too_large"))
            return MHD_NO;
        return request_send(request);  /* MHD drops the unread body and closes the connection */
    }
    return MHD_YES;
}

static void request_append(struct request *request, const char *data, size_t size)
{
    if (request->too_large || request->body.length + size > MAX_BODY_BYTES) {
        request->too_large = true;
        return;
    }
    strbuf_append(&request->body, data, size);
}

static enum fault fault_draw(struct request *request)
{
    static const enum fault order[] = {FAULT_429, FAULT_500, FAULT_429, FAULT_500, FAULT_HANG,
                                       FAULT_CLOSE, FAULT_MALFORMED, FAULT_OUT_OF_RANGE};
    const double rates[] = {config.fail_rate / 2, config.fail_rate / 2, config.rate_429, config.rate_500,
                            config.hang_rate, config.close_rate, config.malformed_rate,
                            config.out_of_range_rate};
    double draw = random_fraction(&request->rng), edge = 0;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        edge += rates[i];
        if (rates[i] > 0 && draw < edge) return order[i];
    }
    return FAULT_NONE;
}

/* ---------------------------------------------------------------------------------------------
 * The providers' dialects (model_server_dialect.h): their answers become the request's. */

static bool request_set_dialect_answer(struct request *request, struct dialect_answer *answer)
{
    if (!answer->body || !answer->status) {
        free(answer->body);
        return false;
    }
    struct MHD_Response *response = MHD_create_response_from_buffer(answer->body_len, answer->body, MHD_RESPMEM_MUST_FREE);
    if (!response) {
        free(answer->body);
        return false;
    }
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE,
                            answer->content_type ? answer->content_type : "application/json");
    for (size_t i = 0; i < answer->header_count; i++)
        MHD_add_response_header(response, answer->headers[i].name, answer->headers[i].value);
    ms_quota_headers(response, &request->quota);
    request->response = response;
    request->status = answer->status;
    count_status(request, answer->status);
    return true;
}

/* Ask the request's dialect for its answer with this fault; sets the pending answer. */
static bool dialect_fill(struct request *request, enum fault fault)
{
    dialect_config.api_key = config.api_key;
    dialect_config.retry_after_s = config.retry_after_s;
    enum dialect_fault spoken = fault == FAULT_429 ? DIALECT_RATE_LIMIT : fault == FAULT_500 ? DIALECT_OVERLOAD
                              : fault == FAULT_MALFORMED ? DIALECT_MALFORMED
                              : fault == FAULT_OUT_OF_RANGE ? DIALECT_OUT_OF_RANGE : DIALECT_OK;
    if (fault == FAULT_MALFORMED) atomic_fetch_add(&stats.malformed, 1);
    if (fault == FAULT_OUT_OF_RANGE) atomic_fetch_add(&stats.out_of_range, 1);
    struct dialect_request r = {request->connection, request->method, request->url, request->body.data,
                                request->body.length, spoken, request->serial, &dialect_config};
    struct dialect_answer answer = {0};
    request->dialect->answer(&r, &answer);
    return request_set_dialect_answer(request, &answer);
}

/* A dialect's request that is no model call: answered now. */
static enum MHD_Result dialect_complete(struct request *request, enum fault fault)
{
    if (!dialect_fill(request, fault)) return MHD_NO;
    return request_send(request);
}

/* A dialect's model call: its answer is set (request_complete then waits out the latency). */
static enum MHD_Result dialect_answer(struct request *request, enum fault fault)
{
    return dialect_fill(request, fault) ? MHD_YES : MHD_NO;
}

char *dialect_content(const char *user, size_t len, const char *system, const json_t *schema, enum dialect_fault fault,
                      uint64_t serial)
{
    struct answer answer = {0};
    struct strbuf out = {0};
    answer.rating = lexicon_rating(text_weight(user, len));
    answer.shown_rating = answer.rating;
    if (fault == DIALECT_OUT_OF_RANGE) {
        answer.out_of_range = true;
        answer.shown_rating = (serial & 1) ? 7 : 0;
    }
    const char *text = user;
    size_t n = len;
    while (n && (*text == ' ' || *text == '\n' || *text == '\t')) { text++; n--; }
    answer.summary_mode = (system && strcasestr(system, "summar")) || (n >= 10 && strncmp(text, "Summarize:", 10) == 0);
    if (answer.summary_mode) summarize(text, n, &answer.summary);
    enum answer_format format = !schema ? FORMAT_TEXT
                              : json_is_object(json_object_get(schema, "properties")) ? FORMAT_JSON_SCHEMA : FORMAT_JSON_OBJECT;
    chat_content(&out, format, schema, &answer, fault == DIALECT_MALFORMED);
    free(answer.summary.data);
    if (out.failed) {
        free(out.data);
        return NULL;
    }
    return out.data ? out.data : strdup("");
}

int dialect_weight(const char *text, size_t len) { return text_weight(text, len); }
int dialect_rating(const char *text, size_t len) { return lexicon_rating(text_weight(text, len)); }
long dialect_tokens(size_t bytes) { return bytes / 4 ? (long)(bytes / 4) : 1; }

size_t dialect_embedding_items(size_t inputs)
{
    atomic_fetch_add(&stats.embedding_requests, 1);
    atomic_fetch_add(&stats.embedding_inputs, inputs);
    return inputs > 1 && dialect_config.embed_short ? inputs - 1 : inputs;
}

long dialect_embedding_length(size_t i, size_t inputs, long dimensions)
{
    return inputs > 1 && i == inputs - 1 && dialect_config.embed_odd && dimensions > 1 ? dimensions - 1 : dimensions;
}

json_t *dialect_embedding(const char *text, size_t len, long dimensions)
{
    struct strbuf out = {0};
    embedding_vector(&out, text, len, dimensions);
    json_t *vector = out.failed ? NULL : json_loads(out.data, 0, NULL);
    free(out.data);
    return vector;
}

/* The path as sent: MHD decodes %XX in URLs by default, and a SigV4 signature is over the
 * encoded path (a Bedrock model id's ':' travels as %3A). */
static size_t keep_escapes(void *unused, struct MHD_Connection *connection, char *s)
{
    (void)unused;
    (void)connection;
    return strlen(s);
}

/* The body is complete: answer now, or decide the fault and suspend until the answer is due. */
static enum MHD_Result request_complete(struct request *request)
{
    struct strbuf out = {0};
    unsigned status = 200;
    if (request->response) return request_send(request);  /* 401 or 503 decided in request_begin */
    switch (request->route) {
    case ROUTE_MODELS: strbuf_append(&out, models_body, sizeof models_body - 1); break;
    case ROUTE_STATS: status = stats_answer(&out); break;
    case ROUTE_STATS_RESET:
        stats_reset();
        ms_quota_reset();
        ms_batch_reset();
        strbuf_puts(&out, "{\"reset\":true}");
        break;
    case ROUTE_BAD_METHOD:
        status = 405;
        error_json(&out, "Method not allowed for this path.", "invalid_request_error", "method_not_allowed");
        break;
    case ROUTE_NOT_FOUND:
        status = 404;
        error_json(&out, "Unknown path.", "invalid_request_error", "unknown_url");
        break;
    case ROUTE_CHAT:
    case ROUTE_EMBEDDINGS:
    case ROUTE_BATCH:
        break;
    case ROUTE_DIALECT:
        if (!request->model_call) return dialect_complete(request, FAULT_NONE);
        break;
    }
    if (!request->model_call) {
        if (!request_set_answer(request, status, &out)) return MHD_NO;
        return request_send(request);
    }
    if (request->too_large) {
        if (!request_set_error(request, 413, "Request body exceeds 1 MiB.", "invalid_request_error",
                               "request_too_large"))
            return MHD_NO;
        return request_send(request);
    }
    /* the quotas speak OpenAI's headers, and Anthropic's in its dialect */
    if (request->route != ROUTE_DIALECT || request->dialect == &dialect_anthropic)
        ms_quota_admit(request->body.data, request->body.length, request->route == ROUTE_EMBEDDINGS,
                       request->route == ROUTE_DIALECT ? MS_QUOTA_ANTHROPIC : MS_QUOTA_OPENAI, &request->quota);
    if (request->quota.refused) { /* at once, as the real API does: no latency, no fault */
        struct strbuf refusal = {0};
        char *text = ms_quota_error(&request->quota);
        if (text) strbuf_puts(&refusal, text);
        free(text);
        if (!request_set_answer(request, 429, &refusal)) return MHD_NO;
        return request_send(request);
    }

    uint64_t delay_ms = (uint64_t)config.latency_ms;
    if (config.latency_jitter_ms > 0)
        delay_ms += splitmix64(&request->rng) % ((uint64_t)config.latency_jitter_ms + 1);
    enum fault fault = FAULT_NONE;
    long long in_flight = atomic_load(&stats.in_flight);
    if (config.degrade_above > 0 && in_flight > config.degrade_above) {
        long long excess = in_flight - config.degrade_above;
        delay_ms += (uint64_t)(excess * config.degrade_ms);
        if (random_fraction(&request->rng) < (double)excess / (double)in_flight) fault = FAULT_429;
    }
    if (fault == FAULT_NONE) fault = fault_draw(request);
    bool chat = request->route == ROUTE_CHAT || request->route == ROUTE_DIALECT;
    if (!chat && (fault == FAULT_MALFORMED || fault == FAULT_OUT_OF_RANGE)) fault = FAULT_NONE;
    uint64_t now = clock_ns();

    if (request->dialect && fault != FAULT_HANG && fault != FAULT_CLOSE) {
        enum MHD_Result answered = dialect_answer(request, fault);
        if (answered != MHD_YES || request->phase == PHASE_ANSWERED) return answered;
        fault = FAULT_NONE; /* the answer is set: wait for it like any */
    }
    switch (fault) {
    case FAULT_HANG:
        atomic_fetch_add(&stats.hung, 1);
        log_request(request, "hang");
        request->phase = PHASE_HANGING;
        request->hang_until_ns = now + (uint64_t)config.timeout_s * 1000000000ull;
        if (!request_suspend(request, now + HANG_POLL_NS)) return MHD_NO;
        return MHD_YES;
    case FAULT_CLOSE:
        atomic_fetch_add(&stats.closed, 1);
        request->close_after_wait = true;
        break;
    case FAULT_429:
        if (!request_set_error(request, 429, "Rate limit reached for requests. Please try again later.",
                               "requests", "rate_limit_exceeded"))
            return MHD_NO;
        break;
    case FAULT_500:
        if (!request_set_error(request, 500, "The server had an error while processing your request.",
                               "server_error", "internal_error"))
            return MHD_NO;
        break;
    case FAULT_MALFORMED:
    case FAULT_OUT_OF_RANGE:
    case FAULT_NONE:
        if (request->dialect) break; /* answered above */
        if (fault == FAULT_MALFORMED) atomic_fetch_add(&stats.malformed, 1);
        if (fault == FAULT_OUT_OF_RANGE) atomic_fetch_add(&stats.out_of_range, 1);
        status = chat ? chat_answer(request, fault, &out) : embeddings_answer(request, &out);
        if (!request_set_answer(request, status, &out)) return MHD_NO;
        break;
    }
    free(request->body.data);
    request->body = (struct strbuf){0};

    if (delay_ms > 0) {
        request->phase = PHASE_WAITING;
        if (request_suspend(request, now + delay_ms * 1000000ull)) return MHD_YES;
    }
    if (request->close_after_wait) {
        log_request(request, "close");
        return MHD_NO;
    }
    return request_send(request);
}

static enum MHD_Result handle_request(void *unused, struct MHD_Connection *connection, const char *url,
                                      const char *method, const char *version, const char *upload_data,
                                      size_t *upload_data_size, void **context)
{
    (void)unused;
    (void)version;
    struct request *request = *context;
    if (!request) return request_begin(connection, url, method, context);
    if (request->route == ROUTE_BATCH)
        return ms_batch_handle(connection, url, method, upload_data, upload_data_size, &request->batch,
                               strncmp(url, "/v1/", 4) != 0 || authorized(connection) || anthropic_authorized(connection));
    if (*upload_data_size > 0) {
        request_append(request, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    switch (request->phase) {
    case PHASE_RECEIVING:
        return request_complete(request);
    case PHASE_WAITING:
        request_unsuspend(request);
        if (request->close_after_wait) {
            log_request(request, "close");
            return MHD_NO;
        }
        return request_send(request);
    case PHASE_HANGING: {
        request_unsuspend(request);
        uint64_t now = clock_ns();
        if (atomic_load(&shutting_down) || now >= request->hang_until_ns || peer_closed(connection))
            return MHD_NO;
        uint64_t due = now + HANG_POLL_NS < request->hang_until_ns ? now + HANG_POLL_NS : request->hang_until_ns;
        return request_suspend(request, due) ? MHD_YES : MHD_NO;
    }
    case PHASE_ANSWERED:
        break;
    }
    return MHD_YES;
}

static void request_completed(void *unused, struct MHD_Connection *connection, void **context,
                              enum MHD_RequestTerminationCode code)
{
    (void)unused;
    (void)connection;
    (void)code;
    struct request *request = *context;
    if (!request) return;
    request_unsuspend(request);
    if (request->model_call) atomic_fetch_sub(&stats.in_flight, 1);
    if (request->response) MHD_destroy_response(request->response);
    ms_batch_done(request->batch);
    free(request->body.data);
    free(request);
    *context = NULL;
}

/* ---------------------------------------------------------------------------------------------
 * main: parse options, serve until SIGINT/SIGTERM, drain suspended connections, stop. */

int main(int argc, char **argv)
{
    char error[256];
    if (standin_options_parse(option_specs, sizeof option_specs / sizeof option_specs[0], argc, argv, error,
                              sizeof error) != 0) {
        fprintf(stderr, "model-server: %s\n", error);
        return 2;
    }
    if (config.help) {
        config_print_help(stdout);
        return 0;
    }
    if (strcmp(config.event_loop, "poll") != 0 && strcmp(config.event_loop, "epoll") != 0) {
        fprintf(stderr, "model-server: --event-loop: '%s' is not poll or epoll\n", config.event_loop);
        return 2;
    }
    if (config.port < 0) {
        fprintf(stderr, "model-server: --port is required (0 picks a free port; see --help)\n");
        return 2;
    }
    struct rlimit files;
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
        files.rlim_cur = files.rlim_max;
        setrlimit(RLIMIT_NOFILE, &files);
    }
    lexicon_index_build();

    /* Threads started from here on inherit the blocked mask; main collects the signal. */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    int failure = timer_start();
    if (failure) {
        fprintf(stderr, "model-server: cannot start timer thread: %s\n", strerror(failure));
        return 1;
    }
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)config.port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct MHD_OptionItem options[] = {
        {MHD_OPTION_SOCK_ADDR, 0, &address},
        {MHD_OPTION_CONNECTION_LIMIT, (intptr_t)config.max_connections, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)config.timeout_s, NULL},
        {MHD_OPTION_LISTEN_BACKLOG_SIZE, 4096, NULL}, /* room for a burst of 2,000 connects at once */
        {MHD_OPTION_UNESCAPE_CALLBACK, (intptr_t)keep_escapes, NULL},
        {config.threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, (intptr_t)config.threads, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    unsigned flags = MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO |
                     (strcmp(config.event_loop, "epoll") == 0 ? MHD_USE_EPOLL_INTERNAL_THREAD
                                                              : MHD_USE_POLL_INTERNAL_THREAD);
    if (config.verbose) flags |= MHD_USE_ERROR_LOG;
    struct MHD_Daemon *daemon = MHD_start_daemon(flags, (uint16_t)config.port, NULL, NULL, handle_request, NULL,
                                                 MHD_OPTION_NOTIFY_COMPLETED, request_completed, NULL,
                                                 MHD_OPTION_ARRAY, options, MHD_OPTION_END);
    if (!daemon) {
        fprintf(stderr, "model-server: cannot listen on 127.0.0.1:%ld\n", config.port);
        timer_finish();
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
    printf("listening on http://127.0.0.1:%u\n", info ? (unsigned)info->port : (unsigned)config.port);
    fflush(stdout);

    int received = 0;
    while (sigwait(&signals, &received) != 0) {
    }
    if (config.verbose) fprintf(stderr, "model-server: signal %d, stopping\n", received);

    /* MHD_stop_daemon must not see suspended connections: make the timer resume them all,
     * refuse new suspensions, and wait (bounded) for the handlers to let go. */
    atomic_store(&shutting_down, true);
    timer_poke(false);
    for (int waited_ms = 0; atomic_load(&suspended_requests) > 0 && waited_ms < 5000; waited_ms++) {
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
    if (atomic_load(&suspended_requests) > 0) {
        /* MHD_stop_daemon would abort on a suspended connection; the process exit frees all. */
        fprintf(stderr, "model-server: %lld requests still suspended, exiting without cleanup\n",
                atomic_load(&suspended_requests));
        return 0;
    }
    MHD_stop_daemon(daemon);
    timer_finish();
    ms_batch_cleanup();
    return 0;
}
