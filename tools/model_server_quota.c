/* model_server_quota.c: the model server's per-minute quotas, --rpm N and --tpm N, kept as the
 * OpenAI API keeps them: two buckets holding a minute's worth, refilled continuously; each
 * model request takes one request and its estimated tokens (the characters of its messages and
 * system prompt / 4 plus max_tokens, or of its input for embeddings) when it arrives. Every
 * answer says where the buckets stand: OpenAI's x-ratelimit-limit-, -remaining-,
 * -reset-requests and -tokens (resets as durations like "6m0s" or "12ms"), or in the Anthropic
 * dialect anthropic-ratelimit-requests- and -tokens-limit, -remaining, -reset (resets as RFC 3339
 * times, to the millisecond); a request that finds a bucket short is answered 429 at once with
 * Retry-After and not counted. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "model_server.h"

struct ms_quota_config ms_quota_config;

struct bucket {
    double level, capacity, per_ms;
};

static struct {
    pthread_mutex_t lock;
    bool started;
    uint64_t last_ns;
    struct bucket requests, tokens;
    unsigned long long admitted, tokens_counted, refused_requests, refused_tokens;
    uint64_t first_ns, last_admitted_ns;
} quota = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void bucket_start(struct bucket *b, long per_minute)
{
    b->capacity = (double)per_minute;
    b->level = b->capacity;
    b->per_ms = (double)per_minute / 60000.0;
}

static void bucket_refill(struct bucket *b, double elapsed_ms)
{
    if (b->capacity <= 0) return;
    b->level += elapsed_ms * b->per_ms;
    if (b->level > b->capacity) b->level = b->capacity;
}

/* The characters of a message content: a string, or the text of its parts. */
static size_t content_chars(const json_t *content)
{
    if (json_is_string(content)) return json_string_length(content);
    size_t total = 0, index;
    json_t *part;
    json_array_foreach(content, index, part) {
        json_t *text = json_object_get(part, "text");
        if (json_is_string(text)) total += json_string_length(text);
    }
    return total;
}

/* The tokens OpenAI counts a request at before it runs. */
static long long estimate_tokens(const char *body, size_t len, bool embeddings)
{
    json_t *root = json_loadb(body ? body : "", len, 0, NULL);
    size_t chars = 0, index;
    json_t *item;
    long long tokens;
    if (embeddings) {
        json_t *input = json_object_get(root, "input");
        if (json_is_string(input)) chars = json_string_length(input);
        json_array_foreach(input, index, item) if (json_is_string(item)) chars += json_string_length(item);
        tokens = (long long)(chars / 4);
    } else {
        json_array_foreach(json_object_get(root, "messages"), index, item) chars += content_chars(json_object_get(item, "content"));
        chars += content_chars(json_object_get(root, "system")); /* Anthropic's, top level */
        json_t *max = json_object_get(root, "max_tokens");
        if (!json_is_integer(max)) max = json_object_get(root, "max_completion_tokens");
        tokens = (long long)(chars / 4) + (json_is_integer(max) ? (long long)json_integer_value(max) : 0);
    }
    json_decref(root);
    return tokens > 0 ? tokens : 1;
}

void ms_quota_admit(const char *body, size_t len, bool embeddings, enum ms_quota_dialect dialect,
                    struct ms_quota_ticket *t)
{
    memset(t, 0, sizeof *t);
    if (ms_quota_config.rpm <= 0 && ms_quota_config.tpm <= 0) return;
    t->on = true;
    t->dialect = dialect;
    t->requested = ms_quota_config.tpm > 0 ? estimate_tokens(body, len, embeddings) : 0;
    pthread_mutex_lock(&quota.lock);
    uint64_t now = ms_clock_ns();
    if (!quota.started) {
        quota.started = true;
        if (ms_quota_config.rpm > 0) bucket_start(&quota.requests, ms_quota_config.rpm);
        if (ms_quota_config.tpm > 0) bucket_start(&quota.tokens, ms_quota_config.tpm);
        quota.last_ns = now;
    }
    double elapsed = (double)(now - quota.last_ns) / 1e6;
    quota.last_ns = now;
    bucket_refill(&quota.requests, elapsed);
    bucket_refill(&quota.tokens, elapsed);
    /* a request larger than the whole bucket is counted at the bucket, as if it waited for a full one */
    double cost = (double)t->requested < quota.tokens.capacity ? (double)t->requested : quota.tokens.capacity;
    if (quota.requests.capacity > 0 && quota.requests.level < 1) {
        t->refused = true;
        t->retry_ms = (1 - quota.requests.level) / quota.requests.per_ms;
        quota.refused_requests++;
    } else if (quota.tokens.capacity > 0 && quota.tokens.level < cost) {
        t->refused = t->tokens = true;
        t->retry_ms = (cost - quota.tokens.level) / quota.tokens.per_ms;
        quota.refused_tokens++;
    } else {
        if (quota.requests.capacity > 0) quota.requests.level -= 1;
        if (quota.tokens.capacity > 0) quota.tokens.level -= cost;
        quota.admitted++;
        quota.tokens_counted += (unsigned long long)t->requested;
        if (!quota.first_ns) quota.first_ns = now;
        quota.last_admitted_ns = now;
    }
    t->remaining_requests = (long long)floor(quota.requests.level);
    t->remaining_tokens = (long long)floor(quota.tokens.level);
    t->reset_requests_ms = quota.requests.per_ms > 0 ? (quota.requests.capacity - quota.requests.level) / quota.requests.per_ms : 0;
    t->reset_tokens_ms = quota.tokens.per_ms > 0 ? (quota.tokens.capacity - quota.tokens.level) / quota.tokens.per_ms : 0;
    pthread_mutex_unlock(&quota.lock);
}

/* A duration as Go prints it, which is how OpenAI sends resets: "12ms", "1.5s", "6m0s", "1h0m0s". */
static void format_duration(char *out, size_t n, double ms)
{
    if (ms <= 0) {
        snprintf(out, n, "0s");
        return;
    }
    if (ms < 1000) {
        snprintf(out, n, "%.0fms", ceil(ms));
        return;
    }
    long long whole_ms = (long long)ceil(ms);
    long long hours = whole_ms / 3600000, minutes = whole_ms / 60000 % 60;
    double seconds = (double)(whole_ms % 60000) / 1000.0;
    char s[32];
    snprintf(s, sizeof s, "%.3f", seconds);
    char *end = s + strlen(s) - 1; /* "17.280" -> "17.28", "0.000" -> "0" */
    while (*end == '0') *end-- = '\0';
    if (*end == '.') *end = '\0';
    if (hours) snprintf(out, n, "%lldh%lldm%ss", hours, minutes, s);
    else if (minutes) snprintf(out, n, "%lldm%ss", minutes, s);
    else snprintf(out, n, "%ss", s);
}

/* The wall clock in ms from now as RFC 3339 with milliseconds: "2024-05-01T12:00:00.125Z". */
static void format_rfc3339(char *out, size_t n, double ms_from_now)
{
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    long long at_ms = (long long)wall.tv_sec * 1000 + wall.tv_nsec / 1000000 + (long long)ceil(ms_from_now);
    time_t seconds = (time_t)(at_ms / 1000);
    struct tm tm;
    gmtime_r(&seconds, &tm);
    char whole[32];
    strftime(whole, sizeof whole, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, n, "%s.%03lldZ", whole, at_ms % 1000);
}

/* One bucket's three headers, named as the dialect names them: "x-ratelimit-limit-requests"
 * (OpenAI, the reset a duration) or "anthropic-ratelimit-requests-limit" (the reset a time). */
static void bucket_headers(struct MHD_Response *response, enum ms_quota_dialect dialect, const char *unit, long limit,
                           long long remaining, double reset_ms)
{
    static const char *const fields[] = {"limit", "remaining", "reset"};
    char names[3][64], text[64];
    for (int i = 0; i < 3; i++) {
        if (dialect == MS_QUOTA_ANTHROPIC) snprintf(names[i], sizeof names[i], "anthropic-ratelimit-%s-%s", unit, fields[i]);
        else snprintf(names[i], sizeof names[i], "x-ratelimit-%s-%s", fields[i], unit);
    }
    snprintf(text, sizeof text, "%ld", limit);
    MHD_add_response_header(response, names[0], text);
    snprintf(text, sizeof text, "%lld", remaining);
    MHD_add_response_header(response, names[1], text);
    if (dialect == MS_QUOTA_ANTHROPIC) format_rfc3339(text, sizeof text, reset_ms);
    else format_duration(text, sizeof text, reset_ms);
    MHD_add_response_header(response, names[2], text);
}

void ms_quota_headers(struct MHD_Response *response, const struct ms_quota_ticket *t)
{
    if (!t->on) return;
    char text[64];
    if (ms_quota_config.rpm > 0)
        bucket_headers(response, t->dialect, "requests", ms_quota_config.rpm, t->remaining_requests, t->reset_requests_ms);
    if (ms_quota_config.tpm > 0)
        bucket_headers(response, t->dialect, "tokens", ms_quota_config.tpm, t->remaining_tokens, t->reset_tokens_ms);
    if (t->refused) {
        snprintf(text, sizeof text, "%.0f", ceil(t->retry_ms / 1000) > 1 ? ceil(t->retry_ms / 1000) : 1);
        MHD_add_response_header(response, MHD_HTTP_HEADER_RETRY_AFTER, text);
    }
}

char *ms_quota_error(const struct ms_quota_ticket *t)
{
    char message[512], wait[64];
    format_duration(wait, sizeof wait, t->retry_ms);
    if (t->tokens)
        snprintf(message, sizeof message,
                 "Rate limit reached for model-server on tokens per min (TPM): Limit %ld, Used %lld, Requested %lld. "
                 "Please try again in %s.", ms_quota_config.tpm, ms_quota_config.tpm - t->remaining_tokens, t->requested,
                 wait);
    else
        snprintf(message, sizeof message,
                 "Rate limit reached for model-server on requests per min (RPM): Limit %ld, Used %ld, Requested 1. "
                 "Please try again in %s.", ms_quota_config.rpm, ms_quota_config.rpm, wait);
    if (t->dialect == MS_QUOTA_ANTHROPIC) {
        json_t *error = json_pack("{s:s,s:{s:s,s:s}}", "type", "error", "error", "type", "rate_limit_error", "message", message);
        char *text = error ? json_dumps(error, JSON_COMPACT) : NULL;
        json_decref(error);
        return text;
    }
    return ms_error_json(message, t->tokens ? "tokens" : "requests", "rate_limit_exceeded");
}

char *ms_quota_stats(void)
{
    if (ms_quota_config.rpm <= 0 && ms_quota_config.tpm <= 0) return NULL;
    pthread_mutex_lock(&quota.lock);
    double span_ms = quota.first_ns ? (double)(quota.last_admitted_ns - quota.first_ns) / 1e6 : 0;
    char *text = NULL;
    int n = asprintf(&text,
                     "{\"rpm\":%ld,\"tpm\":%ld,\"admitted\":%llu,\"tokens\":%llu,\"refused_requests\":%llu,"
                     "\"refused_tokens\":%llu,\"span_ms\":%.0f}",
                     ms_quota_config.rpm, ms_quota_config.tpm, quota.admitted, quota.tokens_counted,
                     quota.refused_requests, quota.refused_tokens, span_ms);
    pthread_mutex_unlock(&quota.lock);
    return n < 0 ? NULL : text;
}

void ms_quota_reset(void)
{
    pthread_mutex_lock(&quota.lock);
    quota.admitted = quota.tokens_counted = quota.refused_requests = quota.refused_tokens = 0;
    quota.first_ns = quota.last_admitted_ns = 0;
    pthread_mutex_unlock(&quota.lock);
}
