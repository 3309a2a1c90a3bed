/* provider.c: what the provider interface (provider.h) gives every provider: the default
 * classification of answers (OpenAI's rules, which OpenAI-compatible servers follow) and the
 * parsing of the headers it reads. A provider with other rules writes its own classify and may
 * call the default for what it shares. */
#include "models/provider.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/http.h"

void provider_verdict_init(struct provider_verdict *v)
{
    *v = (struct provider_verdict){
        .outcome = PROVIDER_OK,
        .retry_after_ms = -1,
        .remaining_requests = -1,
        .remaining_tokens = -1,
        .reset_requests_ms = -1,
        .reset_tokens_ms = -1,
        .limit_requests = -1,
        .limit_tokens = -1,
    };
}

void provider_batch_set(char **field, const char *value, size_t len)
{
    free(*field);
    *field = NULL;
    if (!value) return;
    *field = rn_malloc(len + 1);
    memcpy(*field, value, len);
    (*field)[len] = '\0';
}

#define MS_MAX 1e15 /* 31,000 years: a longer wait said is this one (and capped by the engine) */

/* A wait in ms from a number a header said: -1 for a negative one or NaN, at most MS_MAX. */
static int64_t wait_ms(double ms)
{
    if (!(ms >= 0)) return -1;
    return (int64_t)ceil(ms < MS_MAX ? ms : MS_MAX);
}

int64_t provider_parse_duration(const char *s, size_t n)
{
    double total = 0;
    size_t i = 0;
    if (n == 0) return -1;
    while (i < n) {
        char number[32];
        size_t k = 0;
        while (i < n && k < sizeof number - 1 && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.')) number[k++] = s[i++];
        number[k] = '\0';
        if (k == 0) return -1;
        double v = strtod(number, NULL), unit;
        if (i + 1 < n && s[i] == 'm' && s[i + 1] == 's') { unit = 1; i += 2; }
        else if (i < n && s[i] == 'h') { unit = 3600000; i++; }
        else if (i < n && s[i] == 'm') { unit = 60000; i++; }
        else if (i < n && s[i] == 's') { unit = 1000; i++; }
        else if (i == n) unit = 1000;
        else return -1;
        total += v * unit;
    }
    return wait_ms(total);
}

int64_t provider_parse_retry_after(const char *s, size_t n)
{
    char text[128];
    if (n == 0 || n >= sizeof text) return -1;
    memcpy(text, s, n);
    text[n] = '\0';
    char *end;
    double seconds = strtod(text, &end);
    if (end != text && *end == '\0') return wait_ms(seconds * 1000);
    time_t when = curl_getdate(text, NULL);
    if (when < 0) return -1;
    double delta = difftime(when, time(NULL));
    return delta > 0 ? wait_ms(delta * 1000) : 0;
}

static int name_is(const struct http_header *h, const char *name)
{
    return strlen(name) == h->name_len && strncasecmp(h->name, name, h->name_len) == 0;
}

/* error.code and error.type of an OpenAI-shaped error body (either may be NULL); the caller
 * decrefs *root. */
static void error_fields(const struct http_response *a, json_t **root, const char **code, const char **type,
                         const char **message)
{
    *root = json_loadb(a->body, a->body_len, 0, NULL);
    json_t *error = json_object_get(*root, "error");
    if (json_is_string(error)) { /* some servers answer {"error": "text"} */
        *code = *type = NULL;
        *message = json_string_value(error);
        return;
    }
    *code = json_string_value(json_object_get(error, "code"));
    *type = json_string_value(json_object_get(error, "type"));
    *message = json_string_value(json_object_get(error, "message"));
}

static int is(const char *value, const char *word) { return value && strcmp(value, word) == 0; }

/* What the billing errors say. OpenAI: a code or type insufficient_quota (429, "You exceeded
 * your current quota"), billing_hard_limit_reached, billing_not_active. Anthropic: a 400
 * invalid_request_error whose message says "Your credit balance is too low to access the
 * Anthropic API" or "You have reached your specified API usage limits" (a spend limit; "You
 * will regain access on ..."). Only these phrases: a 400 about a request's own parameters
 * must stay a failed record. */
const char *provider_spend_limit(const struct http_response *a)
{
    if (a->status < 400) return NULL;
    static const char *const marks[] = {"insufficient_quota", "billing_", "credit balance", "API usage limits"};
    int marked = 0; /* most errors hold none of these words: no parse */
    for (size_t i = 0; i < sizeof marks / sizeof marks[0] && !marked; i++)
        marked = memmem(a->body, a->body_len, marks[i], strlen(marks[i])) != NULL;
    if (!marked) return NULL;
    json_t *root;
    const char *code, *type, *message, *why = NULL;
    error_fields(a, &root, &code, &type, &message);
    if (is(code, "insufficient_quota") || is(type, "insufficient_quota"))
        why = "the account has no quota left (insufficient_quota): no retry can succeed";
    else if (is(code, "billing_hard_limit_reached") || is(type, "billing_hard_limit_reached"))
        why = "the account reached its billing limit (billing_hard_limit_reached): no retry can succeed";
    else if (is(code, "billing_not_active") || is(type, "billing_not_active"))
        why = "the account's billing is not active (billing_not_active): no retry can succeed";
    else if (a->status == 400 && message &&
             (strcasestr(message, "credit balance is too low") || strcasestr(message, "reached your specified API usage limits")))
        why = "the account reached its spend limit or has no credit: no retry can succeed";
    json_decref(root);
    return why;
}

void provider_error_message(const struct http_response *a, struct buf *out)
{
    json_t *root;
    const char *code, *type, *message;
    error_fields(a, &root, &code, &type, &message);
    if (message && *message) buf_puts(out, message);
    else buf_put(out, a->body, a->body_len);
    json_decref(root);
}

void provider_classify_default(const struct http_response *a, struct provider_verdict *v)
{
    provider_verdict_init(v);
    /* one pass over the headers; a repeated Retry-After counts at its longest */
    for (size_t i = 0; i < a->header_count; i++) {
        const struct http_header *h = &a->headers[i];
        char first = (char)(h->name[0] | 32);
        if (first != 'r' && first != 'x') continue; /* neither retry-after* nor x-ratelimit-*: most stop here */
        if (name_is(h, "retry-after")) {
            int64_t ms = provider_parse_retry_after(h->value, h->value_len);
            if (ms > v->retry_after_ms) v->retry_after_ms = ms;
        } else if (name_is(h, "retry-after-ms")) {
            char number[32];
            snprintf(number, sizeof number, "%.*s", (int)(h->value_len < 31 ? h->value_len : 31), h->value);
            int64_t ms = wait_ms(strtod(number, NULL));
            if (ms > v->retry_after_ms) v->retry_after_ms = ms;
        } else if (name_is(h, "x-ratelimit-reset-requests")) {
            v->reset_requests_ms = provider_parse_duration(h->value, h->value_len);
        } else if (name_is(h, "x-ratelimit-reset-tokens")) {
            v->reset_tokens_ms = provider_parse_duration(h->value, h->value_len);
        } else if (name_is(h, "x-ratelimit-remaining-requests") && h->value_len) {
            v->remaining_requests = strtoll(h->value, NULL, 10);
        } else if (name_is(h, "x-ratelimit-remaining-tokens") && h->value_len) {
            v->remaining_tokens = strtoll(h->value, NULL, 10);
        } else if (name_is(h, "x-ratelimit-limit-requests") && h->value_len) {
            v->limit_requests = strtoll(h->value, NULL, 10);
        } else if (name_is(h, "x-ratelimit-limit-tokens") && h->value_len) {
            v->limit_tokens = strtoll(h->value, NULL, 10);
        }
    }
    long status = a->status;
    if (status >= 200 && status < 300) {
        v->retry_after_ms = -1; /* a hint on a good answer is no instruction */
        return;
    }
    const char *spent = provider_spend_limit(a);
    if (spent || status == 401 || status == 403) {
        v->outcome = PROVIDER_FAIL_JOB;
        v->retry_after_ms = -1;
        v->why = spent ? spent
                 : status == 401 ? "the endpoint refused the credentials (HTTP 401): no record can succeed"
                                 : "the endpoint refused access (HTTP 403): the key, organisation or region may not use "
                                   "it; no record can succeed";
        return;
    }
    if (status == 408 || status == 409 || status == 429 || status >= 500) {
        v->outcome = PROVIDER_RETRY;
        v->congestion = status == 429 || status >= 500;
        v->rate_limited = status == 429;
        if (status == 429 && v->retry_after_ms < 0) { /* no Retry-After: wait for the limit that ran out to reset */
            if (v->remaining_requests <= 0 && v->reset_requests_ms > v->retry_after_ms)
                v->retry_after_ms = v->reset_requests_ms;
            if (v->remaining_tokens == 0 && v->reset_tokens_ms > v->retry_after_ms)
                v->retry_after_ms = v->reset_tokens_ms;
        }
        return;
    }
    v->outcome = PROVIDER_FAIL_RECORD;
    v->retry_after_ms = -1;
}

void provider_classify(const struct provider_ops *ops, void *self, const struct http_response *answer,
                       struct provider_verdict *verdict)
{
    if (ops->classify) ops->classify(self, answer, verdict);
    else provider_classify_default(answer, verdict);
}

time_t provider_time(const struct provider_setup *setup)
{
    return setup && setup->fixed_time ? setup->fixed_time : time(NULL);
}

/* digits[0..n) as a number, -1 when one is not a digit */
static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

int64_t provider_parse_rfc3339_ms(const char *s, size_t n, time_t now)
{
    /* YYYY-MM-DDTHH:MM:SS, then .fraction, then Z or +HH:MM / -HH:MM */
    if (n < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || s[13] != ':' ||
        s[16] != ':')
        return -1;
    struct tm tm = {0};
    int year = digits(s, 4), month = digits(s + 5, 2), day = digits(s + 8, 2);
    int hour = digits(s + 11, 2), minute = digits(s + 14, 2), second = digits(s + 17, 2);
    if (year < 1970 || month < 1 || month > 12 || day < 1 || day > 31 || hour < 0 || hour > 23 || minute < 0 ||
        minute > 59 || second < 0 || second > 60)
        return -1;
    tm.tm_year = year - 1900;
    tm.tm_mon = month - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = minute;
    tm.tm_sec = second;
    size_t i = 19;
    double fraction = 0, scale = 0.1;
    if (i < n && s[i] == '.') {
        i++;
        if (i == n || s[i] < '0' || s[i] > '9') return -1;
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++, scale /= 10) fraction += (s[i] - '0') * scale;
    }
    int64_t offset_s = 0;
    if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i + 6 == n && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
        int oh = digits(s + i + 1, 2), om = digits(s + i + 4, 2);
        if (oh < 0 || oh > 23 || om < 0 || om > 59) return -1;
        offset_s = (s[i] == '-' ? -1 : 1) * (int64_t)(oh * 3600 + om * 60);
        i += 6;
    } else {
        return -1;
    }
    if (i != n) return -1;
    time_t when = timegm(&tm);
    if (when == (time_t)-1) return -1;
    double delta_ms = (difftime(when, now) - (double)offset_s + fraction) * 1000;
    return delta_ms > 0 ? wait_ms(delta_ms) : 0;
}
