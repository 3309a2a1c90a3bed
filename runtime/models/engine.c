/* model.c: the remote model engine (see model.h): prompts, one libcurl multi handle driven
 * from the job's loop, concurrency and rpm/tpm limits, retries with backoff, answer checks,
 * and the answer cache (cache.c) in front of all of it.
 *
 * The multi handle runs on libcurl's socket interface: curl tells the model which sockets to
 * watch (on_socket, into an epoll set the model owns) and when its next timeout is due
 * (on_timer); model_poll waits in epoll_wait and hands curl only the sockets that are ready,
 * so a wake-up costs O(ready sockets), not O(connections).
 *
 * Every record in flight holds one slot. Slots are made at open, each with its easy handle and
 * buffers, and reused for the whole run, so the per-record path allocates nothing once warm.
 * A slot is FREE, READY (waiting for a send permit: a rate limit, a 429 pause or room in the
 * "auto" window), WAITING (a retry's backoff, in a min-heap by due time) or RUNNING (its easy
 * handle is in the multi).
 * A record answered from the cache gives its slot back at once and waits in a small queue
 * until the next model_poll reports it, as every completion is reported. */
#include "models/model.h"

#include <errno.h>
#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "models/cache.h"
#include "core/json.h"
#include "lua/job.h"
#include "models/model_int.h"
#include "models/prompt.h"

#define BACKOFF_BASE_MS 200
#define BACKOFF_CAP_MS 20000
#define HINT_CAP_MS 120000          /* the longest Retry-After or rate-limit reset honoured */
#define EXCERPT_MAX 300             /* bytes of an error body quoted in a reason */
#define RESPONSE_MAX (64u << 20)    /* a longer answer body fails the call */
#define CONCURRENCY_MAX 10000
#define AUTO_MAX 256                /* concurrency = "auto": the window grows up to this */
#define AUTO_START 8                /* ... starts here, and RTTs measured at or below it are the baseline */
#define AUTO_MIN 1
#define AUTO_DECREASE 0.9           /* the window after a congestion signal, past slow start */
#define RTT_TOLERANCE 0.3           /* an RTT this much above the baseline (plus RTT_SLACK_US) is congestion */
#define RTT_SLACK_US 2000
#define RTT_BASELINE_WEIGHT 0.25    /* EWMA weight of a new interval in the RTT baseline */
#define SHARE_429_WEIGHT (1.0 / 16) /* EWMA weight of one answer in the share of 429s */
#define SHARE_429_PAUSE 0.75        /* auto: a 429 pauses all sends only when most answers are 429s */
#define EVENTS_MAX 256              /* epoll events taken per wait */
#define LOOSE_TEXT_MAX 80           /* "Rating: 4" style answers are searched up to this length */
#define LATENCY_BUCKETS (32 + 59 * 16)
#define CACHE_SYNC_MS 5000          /* fsync new cache entries at most this often */
#define CACHE_KEY_VERSION "runnel answer cache 1"

/* ---- the output declaration ---- */

enum field_type { FIELD_INTEGER, FIELD_NUMBER, FIELD_STRING, FIELD_BOOLEAN, FIELD_VECTOR };
static const char *const field_type_names[] = {"integer", "number", "string", "boolean", "vector"};

struct output_field {
    char *name;
    enum field_type type;
    int has_min, has_max;
    double min, max;
    char **enum_values;
    size_t enum_count;
    char *description;
};

/* One checked answer value, ready to be set on the record. Strings point into the answer text,
 * the parsed JSON or the declaration; they live until the fields are set. */
struct value {
    lua_Integer integer;
    double number;
    const char *string;
    size_t length;
    int boolean;
    json_t *vector;
};

/* ---- slots ---- */

enum slot_state { SLOT_FREE, SLOT_READY, SLOT_WAITING, SLOT_RUNNING };

struct slot {
    enum slot_state state;
    uint64_t tag;
    int record_ref;
    int attempts;              /* HTTP attempts of the current call */
    int corrected;             /* the one correction call was made */
    int64_t due_ms;            /* WAITING: when to send again */
    int64_t sent_ms;           /* when the current attempt started */
    int64_t tokens_estimate;
    long last_status;          /* HTTP status of the last failed attempt, 0 for transport errors */
    uint8_t key[CACHE_KEY_SIZE];
    struct slot *next;         /* ready queue or free list */
    CURL *easy;
    struct model_call call;
    struct buf prompt;
    struct buf answer;         /* the rejected answer, for the correction call */
    struct buf correction;
    struct buf response;
    struct buf reason;         /* why the last attempt failed */
    /* from the response headers of the current attempt; -1 when absent */
    int64_t retry_after_ms, reset_requests_ms, reset_tokens_ms, remaining_requests, remaining_tokens;
    char errbuf[CURL_ERROR_SIZE];
};

/* A record answered from the cache, waiting for model_poll to report it. */
struct cache_hit {
    uint64_t tag;
    int record_ref;
};

/* A token bucket refilled continuously: rpm counts requests, tpm estimated tokens. */
struct bucket {
    int on;
    double level, capacity, per_ms;
    int64_t last_ms;
};

struct model {
    struct job_env *env;
    lua_State *L;
    const struct provider_ops *provider;
    void *provider_self;
    char *provider_name, *model_name;
    enum model_task task;
    char *system;
    size_t system_len;
    struct prompt *prompt;
    struct output_field *fields;
    size_t field_count;
    struct value *values;
    int structured;
    char *schema_json;
    char *expected;            /* what a valid answer looks like, for corrections */
    char **secrets;            /* redacted from every reason and answer text */
    size_t secret_count;

    int concurrency;           /* slots; with adaptive, the window's ceiling */
    int adaptive;
    /* concurrency = "auto" (see "adaptive concurrency" below): the window limits the requests
     * on the wire (READY and RUNNING slots), not the slots waiting for a retry */
    double window, threshold;  /* AIMD: congestion window and slow-start threshold */
    int64_t last_cut_ms;       /* when the window was last cut; only requests sent since may cut it */
    double rtt_baseline_us;    /* EWMA of the RTT at low concurrency; 0 until measured */
    int64_t interval_start_ms; /* the current measuring interval (about one RTT) */
    double interval_rtt_us;    /* sum of the RTTs of its answers */
    uint64_t interval_answers;
    int interval_cut;          /* the window was cut during it */
    int window_full;           /* the window was full during it: growing it can help */
    double share_429;          /* EWMA of the share of 429s among HTTP answers */
    double window_sum, window_min, window_max; /* the window each request was sent under */
    uint64_t window_samples;
    int retries;
    int64_t timeout_ms, connect_timeout_ms;
    struct bucket rpm, tpm;
    int has_price;
    double price_in, price_out;

    CURLM *multi;
    int epoll_fd;              /* the sockets curl asked to watch (on_socket) */
    uint8_t *fd_state;         /* FD_* bits by socket number, [0, fd_cap) */
    size_t fd_cap;
    int socket_errno;          /* an epoll_ctl failure to report from model_poll, or 0 */
    int64_t curl_due_ms;       /* when curl's timer fires (on_timer); -1: no timer */
    int curl_timer_set;        /* on_timer was called */
    int64_t now_ms;            /* the clock, read once per wake-up */
    struct slot *slots;
    struct slot *free_list;
    struct slot *ready_head, *ready_tail;
    struct slot **heap;        /* WAITING slots, min-heap by due_ms */
    size_t heap_len;
    size_t occupied;
    int running;
    int64_t paused_until_ms;
    uint64_t rng;

    model_done_fn done;
    void *done_ctx;
    struct model_reply reply;
    struct buf done_reason, scratch;

    struct cache *cache;       /* NULL when caching is off */
    struct cache_hash cache_base; /* the key's fixed part: provider, task, output declaration */
    struct buf cache_value;
    struct cache_hit *hits;    /* answered from the cache, not reported yet: [hits_next, hits_len) */
    size_t hits_len, hits_cap, hits_next;
    int64_t cache_sync_due_ms;
    char *cache_error;         /* why the cache stopped storing, or NULL */

    uint64_t requests, ok, retried, failed, invalid_answers, corrections, connections;
    uint64_t corrected;        /* correction calls whose answer validated */
    uint64_t cache_hits, cache_stored;
    int64_t tokens_in, tokens_out;
    uint64_t latency_count;
    uint64_t latency[LATENCY_BUCKETS]; /* microseconds, log-linear: 16 buckets per power of two */
};

/* ---- small helpers ---- */

static uint64_t next_random(struct model *m)
{
    m->rng ^= m->rng << 13;
    m->rng ^= m->rng >> 7;
    m->rng ^= m->rng << 17;
    return m->rng;
}

static void bucket_init(struct bucket *b, double per_minute, int64_t now)
{
    b->on = 1;
    b->per_ms = per_minute / 60000.0;
    b->capacity = per_minute / 60.0; /* a second's worth of burst */
    if (b->capacity < 1) b->capacity = 1;
    b->level = b->capacity;
    b->last_ms = now;
}

static void bucket_refill(struct bucket *b, int64_t now)
{
    if (now > b->last_ms) {
        b->level += (double)(now - b->last_ms) * b->per_ms;
        if (b->level > b->capacity) b->level = b->capacity;
        b->last_ms = now;
    }
}

/* A request bigger than the whole bucket waits for a full bucket, then runs it into debt. */
static double bucket_need(const struct bucket *b, double amount)
{
    return amount < b->capacity ? amount : b->capacity;
}

static int64_t bucket_wait_ms(struct bucket *b, int64_t now, double amount)
{
    if (!b->on) return 0;
    bucket_refill(b, now);
    double missing = bucket_need(b, amount) - b->level;
    if (missing <= 0) return 0;
    return (int64_t)ceil(missing / b->per_ms);
}

static void ready_push_tail(struct model *m, struct slot *s)
{
    s->state = SLOT_READY;
    s->next = NULL;
    if (m->ready_tail) m->ready_tail->next = s;
    else m->ready_head = s;
    m->ready_tail = s;
}

static void ready_push_head(struct model *m, struct slot *s)
{
    s->state = SLOT_READY;
    s->next = m->ready_head;
    m->ready_head = s;
    if (!m->ready_tail) m->ready_tail = s;
}

static struct slot *ready_pop(struct model *m)
{
    struct slot *s = m->ready_head;
    m->ready_head = s->next;
    if (!m->ready_head) m->ready_tail = NULL;
    s->next = NULL;
    return s;
}

static void heap_push(struct model *m, struct slot *s)
{
    s->state = SLOT_WAITING;
    size_t i = m->heap_len++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (m->heap[parent]->due_ms <= s->due_ms) break;
        m->heap[i] = m->heap[parent];
        i = parent;
    }
    m->heap[i] = s;
}

static struct slot *heap_pop(struct model *m)
{
    struct slot *top = m->heap[0], *last = m->heap[--m->heap_len];
    size_t i = 0, n = m->heap_len;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && m->heap[child + 1]->due_ms < m->heap[child]->due_ms) child++;
        if (last->due_ms <= m->heap[child]->due_ms) break;
        m->heap[i] = m->heap[child];
        i = child;
    }
    if (n) m->heap[i] = last;
    return top;
}

static size_t latency_bucket(uint64_t us)
{
    if (us < 32) return (size_t)us;
    int e = 63 - __builtin_clzll(us);
    size_t index = 32 + (size_t)(e - 5) * 16 + (size_t)((us >> (e - 4)) & 15);
    return index < LATENCY_BUCKETS ? index : LATENCY_BUCKETS - 1;
}

static double latency_bucket_mid_us(size_t index)
{
    if (index < 32) return (double)index;
    int e = (int)((index - 32) / 16) + 5;
    double sub = (double)((index - 32) % 16);
    double width = ldexp(1.0, e - 4);
    return (16 + sub) * width + width / 2;
}

static double latency_percentile_ms(const struct model *m, double p)
{
    if (!m->latency_count) return 0;
    uint64_t rank = (uint64_t)ceil(p * (double)m->latency_count);
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < LATENCY_BUCKETS; i++) {
        seen += m->latency[i];
        if (seen >= rank) return latency_bucket_mid_us(i) / 1000.0;
    }
    return 0;
}

/* Replace every secret in b with [redacted]. */
static void redact(struct model *m, struct buf *b)
{
    for (size_t k = 0; k < m->secret_count; k++) {
        const char *secret = m->secrets[k];
        size_t n = strlen(secret);
        if (!b->len || !memmem(b->data, b->len, secret, n)) continue;
        buf_clear(&m->scratch);
        size_t i = 0;
        while (i < b->len) {
            char *hit = memmem(b->data + i, b->len - i, secret, n);
            if (!hit) break;
            buf_put(&m->scratch, b->data + i, (size_t)(hit - (b->data + i)));
            buf_puts(&m->scratch, "[redacted]");
            i = (size_t)(hit - b->data) + n;
        }
        buf_put(&m->scratch, b->data + i, b->len - i);
        struct buf t = *b;
        *b = m->scratch;
        m->scratch = t;
    }
}

static int is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

/* Narrow text[0..len) to leave out leading and trailing whitespace. */
static void trim_space(const char **text, size_t *len)
{
    const char *s = *text;
    size_t n = *len;
    while (n && is_space(s[0])) { s++; n--; }
    while (n && is_space(s[n - 1])) n--;
    *text = s;
    *len = n;
}

/* Append up to max bytes of text to out on one line: whitespace runs become one space, bytes
 * that are not UTF-8 become '?', and a cut never splits a character. */
static void put_excerpt(struct buf *out, const char *text, size_t len, size_t max)
{
    size_t used = 0, i = 0;
    while (i < len && is_space(text[i])) i++;
    int space = 0;
    while (i < len) {
        unsigned char c = (unsigned char)text[i];
        if (is_space((char)c)) { space = 1; i++; continue; }
        size_t char_len = 1, bad_at;
        if (c >= 0x80) {
            char_len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
            if (i + char_len > len || !rn_utf8_valid(text + i, char_len, &bad_at)) char_len = 0;
        } else if (c < 0x20 || c == 0x7f) {
            char_len = 0;
        }
        size_t width = char_len ? char_len : 1;
        if (used + space + width > max) { buf_puts(out, "..."); return; }
        if (space) { buf_putc(out, ' '); used++; space = 0; }
        if (char_len) buf_put(out, text + i, char_len);
        else buf_putc(out, '?');
        used += width;
        i += width;
    }
}

/* ---- opening: options ---- */

static int parse_field_type(const char *s, enum field_type *out)
{
    for (int i = 0; i <= FIELD_VECTOR; i++)
        if (strcmp(s, field_type_names[i]) == 0) { *out = (enum field_type)i; return 0; }
    return -1;
}

static int field_compare(const void *a, const void *b)
{
    return strcmp(((const struct output_field *)a)->name, ((const struct output_field *)b)->name);
}

/* Read one field spec ({type=, min=, max=, enum=, description=} or just "type") at idx. */
static int read_field(lua_State *L, int idx, struct output_field *f, struct rn_err *err)
{
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TSTRING) {
        if (parse_field_type(lua_tostring(L, idx), &f->type))
            return rn_fail(err, "output.%s: unknown type \"%s\" (integer, number, string, boolean, vector)", f->name,
                           lua_tostring(L, idx));
        return 0;
    }
    if (lua_type(L, idx) != LUA_TTABLE)
        return rn_fail(err, "output.%s: expected a table like { type = \"integer\" }, got %s", f->name,
                       luaL_typename(L, idx));
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        if (!key || !(strcmp(key, "type") == 0 || strcmp(key, "min") == 0 || strcmp(key, "max") == 0 ||
                      strcmp(key, "enum") == 0 || strcmp(key, "description") == 0)) {
            lua_pop(L, 2);
            return rn_fail(err, "output.%s: unknown key %s%s%s (known: type, min, max, enum, description)", f->name,
                           key ? "'" : "", key ? key : "(a positional value)", key ? "'" : "");
        }
        lua_pop(L, 1);
    }
    lua_getfield(L, idx, "type");
    if (lua_type(L, -1) != LUA_TSTRING) {
        lua_pop(L, 1);
        return rn_fail(err, "output.%s: missing type (integer, number, string, boolean, vector)", f->name);
    }
    if (parse_field_type(lua_tostring(L, -1), &f->type)) {
        rn_fail(err, "output.%s: unknown type \"%s\" (integer, number, string, boolean, vector)", f->name,
                lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    lua_pop(L, 1);
    const char *bounds[2] = {"min", "max"};
    for (int k = 0; k < 2; k++) {
        lua_getfield(L, idx, bounds[k]);
        if (!lua_isnil(L, -1)) {
            if (f->type != FIELD_INTEGER && f->type != FIELD_NUMBER) {
                lua_pop(L, 1);
                return rn_fail(err, "output.%s: %s applies to integer and number fields only", f->name, bounds[k]);
            }
            if (lua_type(L, -1) != LUA_TNUMBER) {
                lua_pop(L, 1);
                return rn_fail(err, "output.%s: %s must be a number", f->name, bounds[k]);
            }
            if (k == 0) { f->has_min = 1; f->min = lua_tonumber(L, -1); }
            else { f->has_max = 1; f->max = lua_tonumber(L, -1); }
        }
        lua_pop(L, 1);
    }
    if (f->has_min && f->has_max && f->min > f->max)
        return rn_fail(err, "output.%s: min is greater than max", f->name);
    lua_getfield(L, idx, "description");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING) {
            lua_pop(L, 1);
            return rn_fail(err, "output.%s: description must be a string", f->name);
        }
        f->description = rn_strdup(lua_tostring(L, -1));
    }
    lua_pop(L, 1);
    lua_getfield(L, idx, "enum");
    if (!lua_isnil(L, -1)) {
        if (f->type != FIELD_STRING) {
            lua_pop(L, 1);
            return rn_fail(err, "output.%s: enum applies to string fields only", f->name);
        }
        lua_Integer n = lua_type(L, -1) == LUA_TTABLE ? (lua_Integer)lua_rawlen(L, -1) : 0;
        if (n == 0) {
            lua_pop(L, 1);
            return rn_fail(err, "output.%s: enum must be a non-empty list of strings", f->name);
        }
        f->enum_values = rn_calloc((size_t)n, sizeof *f->enum_values);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, -1, i);
            if (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) == 0) {
                lua_pop(L, 2);
                return rn_fail(err, "output.%s: enum[%lld] must be a non-empty string", f->name, (long long)i);
            }
            f->enum_values[f->enum_count++] = rn_strdup(lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    return 0;
}

static void add_field(struct model *m, const char *name, enum field_type type)
{
    m->fields = rn_realloc(m->fields, (m->field_count + 1) * sizeof *m->fields);
    m->fields[m->field_count++] = (struct output_field){.name = rn_strdup(name), .type = type};
}

static int read_output(struct model *m, int opts, struct rn_err *err)
{
    lua_State *L = m->L;
    int declared = opt_push(L, opts, "output");
    if (declared) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            if (lua_type(L, -2) != LUA_TSTRING) {
                lua_pop(L, 3);
                return rn_fail(err, "output: fields must be named: output = { rating = { type = \"integer\" } }");
            }
            add_field(m, lua_tostring(L, -2), FIELD_STRING);
            if (read_field(L, -1, &m->fields[m->field_count - 1], err)) { lua_pop(L, 3); return -1; }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        if (m->field_count == 0) return rn_fail(err, "output: declare at least one field");
        qsort(m->fields, m->field_count, sizeof *m->fields, field_compare);
    }
    switch (m->task) {
    case MODEL_TASK_CLASSIFICATION:
        if (!declared)
            return rn_fail(err, "output is required for task classification, e.g. "
                                "output = { rating = { type = \"integer\", min = 1, max = 5 } }");
        break;
    case MODEL_TASK_TEXT_GENERATION:
        if (!declared) add_field(m, "text", FIELD_STRING);
        break;
    case MODEL_TASK_EMBEDDING:
        if (!declared) add_field(m, "embedding", FIELD_VECTOR);
        if (m->field_count != 1 || m->fields[0].type != FIELD_VECTOR)
            return rn_fail(err, "output: task embedding fills exactly one field of type vector, "
                                "e.g. output = { embedding = { type = \"vector\" } }");
        break;
    }
    for (size_t i = 0; i < m->field_count; i++)
        if (m->fields[i].type == FIELD_VECTOR && m->task != MODEL_TASK_EMBEDDING)
            return rn_fail(err, "output.%s: type vector is for task embedding only", m->fields[i].name);
    int structured = opt_boolean(L, opts, "structured", declared && m->task != MODEL_TASK_EMBEDDING);
    if (structured && m->task == MODEL_TASK_EMBEDDING)
        return rn_fail(err, "structured: task embedding answers vectors, not structured output");
    m->structured = structured;
    m->values = rn_calloc(m->field_count, sizeof *m->values);
    return 0;
}

/* "an integer from 1 to 5", "one of: a, b", ... */
static void describe_field(struct buf *b, const struct output_field *f)
{
    char lo[RN_DOUBLE_MAX], hi[RN_DOUBLE_MAX];
    rn_format_double(lo, f->min);
    rn_format_double(hi, f->max);
    switch (f->type) {
    case FIELD_INTEGER:
    case FIELD_NUMBER:
        buf_puts(b, f->type == FIELD_INTEGER ? "an integer" : "a number");
        if (f->has_min && f->has_max) buf_printf(b, " from %s to %s", lo, hi);
        else if (f->has_min) buf_printf(b, " of at least %s", lo);
        else if (f->has_max) buf_printf(b, " of at most %s", hi);
        break;
    case FIELD_STRING:
        if (!f->enum_count) { buf_puts(b, "a string"); break; }
        buf_puts(b, "one of: ");
        for (size_t i = 0; i < f->enum_count; i++) buf_printf(b, "%s%s", i ? ", " : "", f->enum_values[i]);
        break;
    case FIELD_BOOLEAN: buf_puts(b, "true or false"); break;
    case FIELD_VECTOR: buf_puts(b, "a vector of numbers"); break;
    }
}

static void build_schema_and_expected(struct model *m)
{
    struct buf b, e;
    buf_init(&b);
    buf_init(&e);
    if (m->structured) {
        buf_puts(&b, "{\"type\":\"object\",\"properties\":{");
        for (size_t i = 0; i < m->field_count; i++) {
            const struct output_field *f = &m->fields[i];
            if (i) buf_putc(&b, ',');
            buf_put_json_string(&b, f->name, strlen(f->name));
            buf_printf(&b, ":{\"type\":\"%s\"", field_type_names[f->type]);
            char num[RN_DOUBLE_MAX];
            if (f->has_min) { rn_format_double(num, f->min); buf_printf(&b, ",\"minimum\":%s", num); }
            if (f->has_max) { rn_format_double(num, f->max); buf_printf(&b, ",\"maximum\":%s", num); }
            if (f->enum_count) {
                buf_puts(&b, ",\"enum\":[");
                for (size_t k = 0; k < f->enum_count; k++) {
                    if (k) buf_putc(&b, ',');
                    buf_put_json_string(&b, f->enum_values[k], strlen(f->enum_values[k]));
                }
                buf_putc(&b, ']');
            }
            if (f->description) {
                buf_puts(&b, ",\"description\":");
                buf_put_json_string(&b, f->description, strlen(f->description));
            }
            buf_putc(&b, '}');
        }
        buf_puts(&b, "},\"required\":[");
        for (size_t i = 0; i < m->field_count; i++) {
            if (i) buf_putc(&b, ',');
            buf_put_json_string(&b, m->fields[i].name, strlen(m->fields[i].name));
        }
        buf_puts(&b, "],\"additionalProperties\":false}");
        m->schema_json = rn_strdup(b.data);
    }
    if (m->structured || m->field_count > 1) {
        buf_puts(&e, "Answer with a JSON object with exactly these fields: ");
        for (size_t i = 0; i < m->field_count; i++) {
            buf_printf(&e, "%s%s (", i ? "; " : "", m->fields[i].name);
            describe_field(&e, &m->fields[i]);
            buf_putc(&e, ')');
        }
        buf_putc(&e, '.');
    } else {
        buf_puts(&e, "Answer with only ");
        describe_field(&e, &m->fields[0]);
        buf_puts(&e, ", nothing else.");
    }
    m->expected = rn_strdup(e.data);
    buf_free(&b);
    buf_free(&e);
}

/* Duration value at the top of the stack: a number of seconds or "30s"/"250ms". */
static int read_duration(lua_State *L, const char *name, int64_t *ms, struct rn_err *err)
{
    if (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) > 0) {
        *ms = (int64_t)(lua_tonumber(L, -1) * 1000 + 0.5);
    } else if (lua_type(L, -1) != LUA_TSTRING || rn_parse_duration_ms(lua_tostring(L, -1), ms) || *ms <= 0) {
        if (lua_type(L, -1) == LUA_TSTRING)
            return rn_fail(err, "limits.%s: bad duration \"%s\" (e.g. \"30s\", \"500ms\")", name, lua_tostring(L, -1));
        return rn_fail(err, "limits.%s: expected a duration like \"30s\", got %s", name, luaL_typename(L, -1));
    }
    if (*ms < 1) *ms = 1;
    return 0;
}

static int read_limits(struct model *m, int opts, struct rn_err *err)
{
    lua_State *L = m->L;
    m->concurrency = 64;
    m->retries = 5;
    m->timeout_ms = 30000;
    m->connect_timeout_ms = -1;
    if (!opt_push(L, opts, "limits")) goto defaults;
    static const char *const known = "concurrency, rpm, tpm, timeout, connect_timeout, retries";
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
        int rc = 0;
        if (strcmp(key, "concurrency") == 0) {
            if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "auto") == 0) {
                m->adaptive = 1;
            } else if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > CONCURRENCY_MAX) {
                rc = rn_fail(err, "limits.concurrency: expected an integer from 1 to %d or \"auto\"", CONCURRENCY_MAX);
            } else {
                m->concurrency = (int)lua_tointeger(L, -1);
            }
        } else if (strcmp(key, "rpm") == 0 || strcmp(key, "tpm") == 0) {
            if (lua_type(L, -1) != LUA_TNUMBER || !(lua_tonumber(L, -1) > 0) || !isfinite(lua_tonumber(L, -1)))
                rc = rn_fail(err, "limits.%s: expected a number greater than 0", key);
            else bucket_init(key[0] == 'r' ? &m->rpm : &m->tpm, lua_tonumber(L, -1), rn_now_ms());
        } else if (strcmp(key, "timeout") == 0) {
            rc = read_duration(L, key, &m->timeout_ms, err);
        } else if (strcmp(key, "connect_timeout") == 0) {
            rc = read_duration(L, key, &m->connect_timeout_ms, err);
        } else if (strcmp(key, "retries") == 0) {
            if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0 || lua_tointeger(L, -1) > 100)
                rc = rn_fail(err, "limits.retries: expected an integer from 0 to 100");
            else m->retries = (int)lua_tointeger(L, -1);
        } else {
            rc = rn_fail(err, "limits: unknown key '%s' (known: %s)", key, known);
        }
        lua_pop(L, 1);
        if (rc) { lua_pop(L, 2); return -1; }
    }
    lua_pop(L, 1);
defaults:
    if (m->connect_timeout_ms < 0) m->connect_timeout_ms = m->timeout_ms < 10000 ? m->timeout_ms : 10000;
    if (m->adaptive) {
        m->concurrency = AUTO_MAX;
        m->window = m->window_min = m->window_max = AUTO_START;
        m->threshold = AUTO_MAX;
    }
    return 0;
}

static int read_price(struct model *m, int opts, struct rn_err *err)
{
    lua_State *L = m->L;
    if (!opt_push(L, opts, "price")) return 0;
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
        int is_in = strcmp(key, "input") == 0, is_out = strcmp(key, "output") == 0;
        int rc = 0;
        if (!is_in && !is_out) rc = rn_fail(err, "price: unknown key '%s' (known: input, output)", key);
        else if (lua_type(L, -1) != LUA_TNUMBER || !(lua_tonumber(L, -1) >= 0))
            rc = rn_fail(err, "price.%s: expected USD per 1M tokens, a number >= 0", key);
        else if (is_in) m->price_in = lua_tonumber(L, -1);
        else m->price_out = lua_tonumber(L, -1);
        lua_pop(L, 1);
        if (rc) { lua_pop(L, 2); return -1; }
    }
    lua_pop(L, 1);
    m->has_price = 1;
    return 0;
}

static void add_secret(struct model *m, const char *value)
{
    if (!value || strlen(value) < 4) return;
    m->secrets = rn_realloc(m->secrets, (m->secret_count + 1) * sizeof *m->secrets);
    m->secrets[m->secret_count++] = rn_strdup(value);
}

/* The api key and every extra header value (plain strings too: an "api-key" header is as secret
 * as secret() makes it) are redacted from reasons and answers. */
static void collect_secrets(struct model *m, int opts)
{
    lua_State *L = m->L;
    if (opt_push(L, opts, "api_key")) {
        add_secret(m, luajob_secret_value(L, -1));
        lua_pop(L, 1);
    }
    if (opt_push(L, opts, "headers")) {
        if (lua_type(L, -1) == LUA_TTABLE) {
            lua_pushnil(L);
            while (lua_next(L, -2)) {
                add_secret(m, luajob_secret_value(L, -1));
                lua_pop(L, 1);
            }
        }
        lua_pop(L, 1);
    }
}

static int read_options(struct model *m, int opts, struct rn_err *err)
{
    lua_State *L = m->L;
    const char *task = opt_string(L, opts, "task", "classification");
    if (strcmp(task, "classification") == 0) m->task = MODEL_TASK_CLASSIFICATION;
    else if (strcmp(task, "text_generation") == 0) m->task = MODEL_TASK_TEXT_GENERATION;
    else if (strcmp(task, "embedding") == 0) m->task = MODEL_TASK_EMBEDDING;
    else return rn_fail(err, "task: unknown task \"%s\" (classification, text_generation, embedding)", task);
    const char *system = opt_string(L, opts, "system", NULL);
    if (system) {
        if (m->task == MODEL_TASK_EMBEDDING) return rn_fail(err, "system: task embedding takes no system prompt");
        m->system = rn_strdup(system);
        m->system_len = strlen(system);
    }
    lua_getfield(L, opts, "prompt");
    if (lua_type(L, -1) == LUA_TFUNCTION) {
        m->prompt = prompt_from_function(L, -1);
    } else {
        size_t len;
        const char *text = lua_tolstring(L, -1, &len);
        m->prompt = text ? prompt_parse(L, text, len, err) : NULL;
        if (!text) rn_fail(err, "prompt: missing (a template with {{field}} placeholders, or a function)");
    }
    lua_pop(L, 1);
    if (!m->prompt) return -1;
    m->model_name = rn_strdup(opt_string(L, opts, "model", "?"));
    if (read_output(m, opts, err) || read_limits(m, opts, err) || read_price(m, opts, err)) return -1;
    build_schema_and_expected(m);
    collect_secrets(m, opts);
    return 0;
}

/* ---- opening: the engine ---- */

static size_t on_body(char *data, size_t size, size_t count, void *user)
{
    struct slot *s = user;
    size_t n = size * count;
    if (s->response.len + n > RESPONSE_MAX) return 0; /* fails the transfer with CURLE_WRITE_ERROR */
    buf_put(&s->response, data, n);
    return n;
}

/* "6m0s", "1.5s", "20ms" (x-ratelimit-reset-*) in milliseconds, or -1. */
static int64_t parse_reset(const char *s, size_t n)
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
    return (int64_t)ceil(total);
}

static int64_t parse_retry_after(const char *s, size_t n)
{
    char text[128];
    if (n == 0 || n >= sizeof text) return -1;
    memcpy(text, s, n);
    text[n] = '\0';
    char *end;
    double seconds = strtod(text, &end);
    if (end != text && *end == '\0') return seconds < 0 ? -1 : (int64_t)ceil(seconds * 1000);
    time_t when = curl_getdate(text, NULL);
    if (when < 0) return -1;
    double delta = difftime(when, time(NULL));
    return delta > 0 ? (int64_t)(delta * 1000) : 0;
}

static void reset_header_info(struct slot *s)
{
    s->retry_after_ms = s->reset_requests_ms = s->reset_tokens_ms = -1;
    s->remaining_requests = s->remaining_tokens = -1;
}

static int header_is(const char *line, size_t name_len, const char *name)
{
    return strlen(name) == name_len && strncasecmp(line, name, name_len) == 0;
}

static size_t on_header(char *data, size_t size, size_t count, void *user)
{
    struct slot *s = user;
    size_t n = size * count;
    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) { reset_header_info(s); return n; }
    char *colon = memchr(data, ':', n);
    if (!colon) return n;
    size_t name_len = (size_t)(colon - data);
    const char *value = colon + 1, *end = data + n;
    while (value < end && (*value == ' ' || *value == '\t')) value++;
    while (end > value && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ')) end--;
    size_t value_len = (size_t)(end - value);
    if (header_is(data, name_len, "retry-after")) {
        int64_t ms = parse_retry_after(value, value_len);
        if (ms > s->retry_after_ms) s->retry_after_ms = ms;
    } else if (header_is(data, name_len, "retry-after-ms")) {
        char number[32];
        snprintf(number, sizeof number, "%.*s", (int)(value_len < 31 ? value_len : 31), value);
        int64_t ms = (int64_t)ceil(strtod(number, NULL));
        if (ms > s->retry_after_ms) s->retry_after_ms = ms;
    } else if (header_is(data, name_len, "x-ratelimit-reset-requests")) {
        s->reset_requests_ms = parse_reset(value, value_len);
    } else if (header_is(data, name_len, "x-ratelimit-reset-tokens")) {
        s->reset_tokens_ms = parse_reset(value, value_len);
    } else if (header_is(data, name_len, "x-ratelimit-remaining-requests") && value_len) {
        s->remaining_requests = strtoll(value, NULL, 10);
    } else if (header_is(data, name_len, "x-ratelimit-remaining-tokens") && value_len) {
        s->remaining_tokens = strtoll(value, NULL, 10);
    }
    return n;
}

/* ---- sockets ---- */

enum {
    FD_OURS = 1,      /* opened by on_open_socket: it closes through on_close_socket */
    FD_IN_SET = 2,    /* in the epoll set */
    FD_WANTED = 4,    /* curl waits on it now */
    FD_IN = 8,        /* the events it is in the set for */
    FD_OUT = 16,
};

/* Make fd_state hold fd. Grows with the highest socket number, not per request. */
static void fd_reserve(struct model *m, curl_socket_t fd)
{
    if ((size_t)fd < m->fd_cap) return;
    size_t cap = m->fd_cap ? m->fd_cap : 64;
    while (cap <= (size_t)fd) cap *= 2;
    m->fd_state = rn_realloc(m->fd_state, cap);
    memset(m->fd_state + m->fd_cap, 0, cap - m->fd_cap);
    m->fd_cap = cap;
}

/* CURLOPT_OPENSOCKETFUNCTION: every connection socket starts here, */
static curl_socket_t on_open_socket(void *user, curlsocktype purpose, struct curl_sockaddr *address)
{
    (void)purpose;
    struct model *m = user;
    curl_socket_t fd = socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
    if (fd == CURL_SOCKET_BAD) return fd;
    fd_reserve(m, fd);
    m->fd_state[fd] = FD_OURS; /* a new socket: whatever the number named before is gone */
    return fd;
}

/* CURLOPT_CLOSESOCKETFUNCTION: ... and ends here (the close takes it out of the epoll set). */
static int on_close_socket(void *user, curl_socket_t fd)
{
    struct model *m = user;
    if (fd >= 0 && (size_t)fd < m->fd_cap) m->fd_state[fd] = 0;
    return close(fd);
}

static CURL *make_easy(struct model *m, struct slot *s)
{
    CURL *e = curl_easy_init();
    if (!e) return NULL;
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    /* prefer a stream on an HTTP/2 connection to a new one; only TLS can negotiate HTTP/2 here,
     * and on http:// waiting would hold every first request until the first answer is back */
    const char *url = s->call.url.data ? s->call.url.data : "";
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, strncasecmp(url, "https:", 6) == 0 ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)m->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)m->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_USERAGENT, "runnel/" RN_VERSION);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, s);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, s->errbuf);
    curl_easy_setopt(e, CURLOPT_PRIVATE, s);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, m);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, m);
    return e;
}

/* CURLMOPT_SOCKETFUNCTION: curl says which sockets it waits on, for what.
 *
 * A connection socket stays in the epoll set between the transfers it carries: curl removes
 * it when a transfer ends and adds it back when the next one reuses the connection, and two
 * epoll_ctl calls per request cost more than the rest of the wake-up. The model opens and
 * closes these sockets itself (on_open_socket, on_close_socket), so it knows when a number
 * still names the same socket. Any other socket curl uses is added and removed as asked. */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *user, void *socket_data)
{
    (void)easy;
    (void)socket_data;
    struct model *m = user;
    if (fd < 0) return 0;
    fd_reserve(m, fd);
    uint8_t *state = &m->fd_state[fd];
    if (what == CURL_POLL_REMOVE) {
        if (*state & FD_OURS) {
            *state &= (uint8_t)~FD_WANTED; /* kept in the set; see model_poll for when it wakes */
        } else {
            epoll_ctl(m->epoll_fd, EPOLL_CTL_DEL, fd, NULL); /* curl may have closed it already */
            *state = 0;
        }
        return 0;
    }
    uint8_t events = (what & CURL_POLL_IN ? FD_IN : 0) | (what & CURL_POLL_OUT ? FD_OUT : 0);
    if ((*state & FD_OURS) && (*state & FD_IN_SET) && (*state & (FD_IN | FD_OUT)) == events) {
        *state |= FD_WANTED;
        return 0;
    }
    struct epoll_event ev = {0};
    ev.events = (events & FD_IN ? EPOLLIN : 0u) | (events & FD_OUT ? EPOLLOUT : 0u);
    ev.data.fd = fd;
    int op = *state & FD_IN_SET ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(m->epoll_fd, op, fd, &ev) != 0) {
        /* a socket closed without telling us, or a number reused: the other operation is right */
        int retry = errno == ENOENT ? EPOLL_CTL_ADD : errno == EEXIST ? EPOLL_CTL_MOD : -1;
        if ((retry < 0 || epoll_ctl(m->epoll_fd, retry, fd, &ev) != 0) && !m->socket_errno)
            m->socket_errno = errno ? errno : EIO;
    }
    *state = (uint8_t)((*state & FD_OURS) | FD_IN_SET | FD_WANTED | events);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: when curl wants curl_multi_socket_action(CURL_SOCKET_TIMEOUT). The
 * clock is the one of this wake-up: a deadline can only come out early, never late. */
static int on_timer(CURLM *multi, long timeout_ms, void *user)
{
    (void)multi;
    struct model *m = user;
    m->curl_due_ms = timeout_ms < 0 ? -1 : m->now_ms + timeout_ms;
    m->curl_timer_set = 1;
    return 0;
}

/* ---- opening: the answer cache ---- */

/* name with every byte outside [A-Za-z0-9._-] made '_', so it is one safe path component. */
static void put_path_component(struct buf *b, const char *name)
{
    if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) { buf_putc(b, '_'); return; }
    for (; *name; name++) {
        char c = *name;
        int safe = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                   c == '_' || c == '-';
        buf_putc(b, safe ? c : '_');
    }
}

/* The part of every key that is the same for every record: what the answer must look like. */
static void cache_key_base(struct model *m)
{
    static const char *const task_names[] = {"classification", "text_generation", "embedding"};
    struct cache_hash *h = &m->cache_base;
    cache_hash_init(h);
    cache_hash_field(h, CACHE_KEY_VERSION, strlen(CACHE_KEY_VERSION));
    cache_hash_field(h, m->provider_name, strlen(m->provider_name));
    cache_hash_field(h, task_names[m->task], strlen(task_names[m->task]));
    struct buf d;
    buf_init(&d);
    buf_printf(&d, "structured=%d", m->structured);
    for (size_t i = 0; i < m->field_count; i++) {
        const struct output_field *f = &m->fields[i];
        buf_printf(&d, ";%zu:%s %s", strlen(f->name), f->name, field_type_names[f->type]);
        if (f->has_min) buf_printf(&d, " min=%.17g", f->min);
        if (f->has_max) buf_printf(&d, " max=%.17g", f->max);
        for (size_t k = 0; k < f->enum_count; k++) buf_printf(&d, " enum=%zu:%s", strlen(f->enum_values[k]), f->enum_values[k]);
        if (f->description) buf_printf(&d, " description=%zu:%s", strlen(f->description), f->description);
    }
    cache_hash_field(h, d.data, d.len);
    cache_hash_field(h, m->schema_json ? m->schema_json : "", m->schema_json ? strlen(m->schema_json) : 0);
    buf_free(&d);
}

/* Open STATE_DIR/cache/JOB/PROVIDER.MODEL.cache when the cache is on for this run. */
static int open_cache(struct model *m, int opts, struct rn_err *err)
{
    struct job_env *env = m->env;
    int on = opt_boolean(m->L, opts, "cache", !env->streaming);
    if (!on || env->no_cache || !env->state_dir || !*env->state_dir) return 0;
    struct buf path;
    buf_init(&path);
    buf_printf(&path, "%s/cache/", env->state_dir);
    put_path_component(&path, env->job_name ? env->job_name : "job");
    buf_putc(&path, '/');
    put_path_component(&path, m->provider_name);
    buf_putc(&path, '.');
    put_path_component(&path, m->model_name);
    buf_puts(&path, ".cache");
    m->cache = cache_open(path.data, err);
    buf_free(&path);
    if (!m->cache) return rn_wrap(err, "cache");
    cache_key_base(m);
    m->cache_sync_due_ms = rn_now_ms() + CACHE_SYNC_MS;
    return 0;
}

/* main() has called curl_global_init (the model never does: it is not thread-safe and must
 * be paired with main's curl_global_cleanup). */
struct model *model_open(struct job_env *env, int decl, struct rn_err *err)
{
    lua_State *L = env->L;
    int top = lua_gettop(L);
    decl = lua_absindex(L, decl);
    const char *where = luajob_decl_where(L, decl);
    const char *kind = luajob_decl_kind(L, decl);
    char type[64];
    snprintf(type, sizeof type, "%s", kind && strcmp(kind, "model") == 0 ? luajob_decl_type(L, decl) : "?");
    const struct provider_ops *provider = plugin_provider(type);
    if (!provider) {
        rn_fail(err, "%s: model.%s: unknown model provider", where, type);
        return NULL;
    }
    struct model *m = rn_calloc(1, sizeof *m);
    m->epoll_fd = -1;
    m->curl_due_ms = -1;
    m->env = env;
    m->L = L;
    m->provider = provider;
    m->provider_name = rn_strdup(type);
    m->rng = (uint64_t)rn_now_ms() * 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid() ^ (uint64_t)(uintptr_t)m;
    if (!m->rng) m->rng = 1;
    buf_init(&m->reply.text);
    buf_init(&m->done_reason);
    buf_init(&m->scratch);
    buf_init(&m->cache_value);
    int opts = luajob_decl_options(L, decl);
    if (lua_type(L, opts) != LUA_TTABLE) {
        rn_fail(err, "the declaration has no options table");
        goto fail;
    }
    if (read_options(m, opts, err)) goto fail;
    lua_pushboolean(L, m->structured); /* the engine's decision, for the provider (plugin.h) */
    lua_setfield(L, opts, "__structured");
    m->provider_self = provider->open(env, opts, err);
    if (!m->provider_self) goto fail;
    if (open_cache(m, opts, err)) goto fail;
    for (size_t i = 0; i < m->field_count; i++) fieldorder_add(env, m->fields[i].name);

    m->slots = rn_calloc((size_t)m->concurrency, sizeof *m->slots);
    m->heap = rn_calloc((size_t)m->concurrency, sizeof *m->heap);
    for (int i = m->concurrency - 1; i >= 0; i--) {
        struct slot *s = &m->slots[i];
        s->record_ref = LUA_NOREF;
        buf_init(&s->call.url);
        buf_init(&s->call.body);
        s->next = m->free_list;
        m->free_list = s;
    }
    m->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (m->epoll_fd < 0) {
        rn_fail(err, "epoll_create1: %s", strerror(errno));
        goto fail;
    }
    m->multi = curl_multi_init();
    if (!m->multi) {
        rn_fail(err, "libcurl: cannot make a multi handle");
        goto fail;
    }
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);
    curl_multi_setopt(m->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    curl_multi_setopt(m->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)m->concurrency);
    curl_multi_setopt(m->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)m->concurrency);
    curl_multi_setopt(m->multi, CURLMOPT_MAXCONNECTS, (long)m->concurrency);
    lua_settop(L, top);
    return m;
fail:
    lua_settop(L, top);
    rn_wrap(err, "%s: model.%s", where, type);
    model_close(m);
    return NULL;
}

/* ---- the hot path ---- */

/* Slots on the wire or about to be: READY and RUNNING (a retry waiting out its backoff is not). */
static int on_wire(const struct model *m) { return (int)(m->occupied - m->heap_len); }

int model_room(struct model *m)
{
    int room = m->concurrency - (int)m->occupied;
    if (m->adaptive) {
        int window_room = (int)m->window - on_wire(m);
        if (window_room < room) room = window_room;
    }
    return room > 0 ? room : 0;
}

size_t model_in_flight(struct model *m) { return m->occupied + (m->hits_len - m->hits_next); }

static void release(struct model *m, struct slot *s)
{
    s->state = SLOT_FREE;
    s->record_ref = LUA_NOREF;
    s->next = m->free_list;
    m->free_list = s;
    m->occupied--;
}

/* (Re)build the request of a slot from its prompt and, after an invalid answer, the correction. */
static int build_call(struct model *m, struct slot *s, struct rn_err *err)
{
    struct model_call *c = &s->call;
    c->task = m->task;
    c->system = m->system;
    c->prompt = s->prompt.data ? s->prompt.data : "";
    c->prompt_len = s->prompt.len;
    c->schema_json = m->schema_json;
    c->previous_answer = s->corrected ? s->answer.data : NULL;
    c->correction = s->corrected ? s->correction.data : NULL;
    buf_clear(&c->url);
    buf_clear(&c->body);
    if (m->provider->build(m->provider_self, c, err)) return -1;
    size_t bytes = m->system_len + s->prompt.len + (s->corrected ? s->answer.len + s->correction.len : 0);
    s->tokens_estimate = (int64_t)(bytes / 4) + 1;
    return 0;
}

/* The cache key of a slot's first request: the fixed part, then exactly what goes on the wire
 * (the URL and the body; the headers, which hold the api key, stay out). */
static void cache_key_of(struct model *m, struct slot *s)
{
    struct cache_hash h = m->cache_base;
    cache_hash_field(&h, s->call.url.data ? s->call.url.data : "", s->call.url.len);
    cache_hash_field(&h, s->call.body.data ? s->call.body.data : "", s->call.body.len);
    cache_hash_final(&h, s->key);
}

static int use_cached(struct model *m, struct slot *s);

int model_submit(struct model *m, int record_ref, uint64_t tag, struct rn_err *err)
{
    if (model_room(m) <= 0 || !m->free_list)
        return rn_fail(err, "model: submitted with no room (model_room is 0)");
    struct slot *s = m->free_list;
    m->free_list = s->next;
    s->next = NULL;
    m->occupied++;
    s->tag = tag;
    s->record_ref = record_ref;
    s->attempts = 0;
    s->corrected = 0;
    s->last_status = 0;
    buf_clear(&s->prompt);
    lua_rawgeti(m->L, LUA_REGISTRYINDEX, record_ref);
    int rc = prompt_render(m->prompt, -1, &s->prompt, err);
    lua_pop(m->L, 1);
    if (rc == 0) rc = build_call(m, s, err);
    if (rc) { /* a prompt function's error can quote any value, a header's among them */
        struct buf msg;
        buf_init(&msg);
        buf_puts(&msg, err->msg);
        redact(m, &msg);
        snprintf(err->msg, sizeof err->msg, "%s", msg.data);
        buf_free(&msg);
        release(m, s);
        return -1;
    }
    if (m->cache) {
        cache_key_of(m, s);
        if (cache_get(m->cache, s->key, &m->cache_value) && use_cached(m, s)) {
            release(m, s);
            if (m->hits_len == m->hits_cap) {
                m->hits_cap = m->hits_cap ? m->hits_cap * 2 : 64;
                m->hits = rn_realloc(m->hits, m->hits_cap * sizeof *m->hits);
            }
            m->hits[m->hits_len++] = (struct cache_hit){tag, record_ref};
            return 0;
        }
    }
    ready_push_tail(m, s);
    if (m->adaptive && on_wire(m) >= (int)m->window) m->window_full = 1;
    return 0;
}

/* The one way a record leaves the engine. A failure's reason is redacted here, whatever path
 * built it, so no secret reaches a dead letter. */
static void finish(struct model *m, struct slot *s, int ok, const char *model_text)
{
    if (!ok) redact(m, &m->done_reason);
    uint64_t tag = s->tag;
    int ref = s->record_ref;
    if (ok) m->ok++;
    else m->failed++;
    release(m, s);
    if (m->done) m->done(m->done_ctx, tag, ref, ok, ok ? NULL : m->done_reason.data, model_text);
}

/* Fail the record now: "HTTP 400: body" or the transport error. */
static void fail_now(struct model *m, struct slot *s)
{
    buf_clear(&m->done_reason);
    if (s->last_status) buf_printf(&m->done_reason, "HTTP %ld: ", s->last_status);
    buf_put(&m->done_reason, s->reason.data, s->reason.len);
    finish(m, s, 0, NULL);
}

static void fail_exhausted(struct model *m, struct slot *s)
{
    buf_clear(&m->done_reason);
    const char *plural = s->attempts == 1 ? "" : "s";
    if (s->last_status) {
        buf_printf(&m->done_reason, "HTTP %ld after %d attempt%s: ", s->last_status, s->attempts, plural);
        buf_put(&m->done_reason, s->reason.data, s->reason.len);
    } else {
        buf_put(&m->done_reason, s->reason.data, s->reason.len);
        buf_printf(&m->done_reason, " (%d attempt%s)", s->attempts, plural);
    }
    finish(m, s, 0, NULL);
}

/* ---- adaptive concurrency (concurrency = "auto") ----
 * AIMD on the window of requests on the wire, in the manner of Vector's adaptive request
 * concurrency. Time runs in intervals of about one baseline RTT. The window grows by one per
 * interval whose answers came back within RTT_TOLERANCE of the baseline while the window was
 * full (in slow start, until the first cut: by one per answer, doubling per RTT). It is cut,
 * at most once per RTT, on a 429, a 5xx or a timeout, and on an interval whose mean RTT rose
 * past the tolerance: halved in slow start, times AUTO_DECREASE after. The baseline is an EWMA
 * of the interval RTTs measured at a window of at most AUTO_START, pulled down by any faster
 * interval; it never follows the RTT up at a high window, where a rise is our own doing. */

static void window_set(struct model *m, double window)
{
    if (window < AUTO_MIN) window = AUTO_MIN;
    if (window > m->concurrency) window = m->concurrency;
    m->window = window;
    if (window < m->window_min) m->window_min = window;
    if (window > m->window_max) m->window_max = window;
}

static void window_cut(struct model *m)
{
    window_set(m, m->window < m->threshold ? m->window / 2 : m->window * AUTO_DECREASE);
    m->threshold = m->window;
    m->last_cut_ms = m->now_ms;
    m->interval_cut = 1;
}

/* A congestion signal (429, 5xx, timeout) from the attempt of slot s: only a request sent
 * since the last cut may cut again, so the window shrinks at most once per RTT. */
static void congestion(struct model *m, struct slot *s)
{
    if (!m->adaptive || s->sent_ms < m->last_cut_ms) return;
    window_cut(m);
}

/* Close the measuring interval once it lasted a baseline RTT, and grow or cut the window. */
static void window_interval(struct model *m)
{
    int64_t length = (int64_t)(m->rtt_baseline_us / 1000);
    if (length < 1) length = 1;
    if (m->now_ms - m->interval_start_ms < length) return;
    if (m->interval_answers) {
        double mean = m->interval_rtt_us / (double)m->interval_answers;
        if (m->rtt_baseline_us <= 0) m->rtt_baseline_us = mean;
        int rose = mean > m->rtt_baseline_us * (1 + RTT_TOLERANCE) + RTT_SLACK_US;
        if (m->window <= AUTO_START || mean < m->rtt_baseline_us)
            m->rtt_baseline_us += RTT_BASELINE_WEIGHT * (mean - m->rtt_baseline_us);
        if (m->interval_cut) {
            /* this RTT's cut is made */
        } else if (rose) {
            /* the answers of the first interval after a cut were mostly sent before it */
            if (m->window > AUTO_START && m->now_ms - m->last_cut_ms >= 2 * length) window_cut(m);
        } else if (m->window >= m->threshold && m->window_full) {
            window_set(m, m->window + 1);
        }
    }
    m->interval_start_ms = m->now_ms;
    m->interval_rtt_us = 0;
    m->interval_answers = 0;
    m->interval_cut = 0;
    m->window_full = on_wire(m) >= (int)m->window;
}

/* A 2xx answer whose request the server held for rtt_us. */
static void window_answer(struct model *m, int64_t rtt_us)
{
    m->interval_rtt_us += (double)rtt_us;
    m->interval_answers++;
    if (m->window < m->threshold && m->window_full) window_set(m, m->window + 1);
    window_interval(m);
}

static int64_t cap_hint(int64_t ms) { return ms > HINT_CAP_MS ? HINT_CAP_MS : ms; }

/* Schedule another attempt after backoff with full jitter, but no sooner than hint_ms; or fail
 * when the retries are used up. */
static void retry_or_fail(struct model *m, struct slot *s, int64_t hint_ms, int64_t now)
{
    if (s->attempts > m->retries) { fail_exhausted(m, s); return; }
    int shift = s->attempts - 1 < 20 ? s->attempts - 1 : 20;
    int64_t ceiling = (int64_t)BACKOFF_BASE_MS << shift;
    if (ceiling > BACKOFF_CAP_MS) ceiling = BACKOFF_CAP_MS;
    int64_t delay = (int64_t)(next_random(m) % (uint64_t)(ceiling + 1));
    if (hint_ms > 0) {
        /* up to 10% more, so the records that all got the same Retry-After do not return at once */
        int64_t spread = hint_ms / 10 + 1;
        int64_t hinted = hint_ms + (int64_t)(next_random(m) % (uint64_t)spread);
        if (hinted > delay) delay = hinted;
    }
    s->due_ms = now + delay;
    heap_push(m, s);
}

static int curl_retryable(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_WEIRD_SERVER_REPLY:
        return 1;
    default:
        return 0;
    }
}

/* ---- answers ---- */

static void put_quoted_excerpt(struct buf *b, const char *text, size_t len)
{
    buf_putc(b, '"');
    put_excerpt(b, text, len, 60);
    buf_putc(b, '"');
}

static void describe_json(struct buf *b, json_t *v)
{
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (text) {
        put_excerpt(b, text, strlen(text), 60);
        free(text);
    }
}

static int check_range(const struct output_field *f, double v, struct buf *why)
{
    if ((f->has_min && v < f->min) || (f->has_max && v > f->max)) {
        char lo[RN_DOUBLE_MAX], hi[RN_DOUBLE_MAX], val[RN_DOUBLE_MAX]; /* formatted only for the message, not for every answer */
        rn_format_double(lo, f->min);
        rn_format_double(hi, f->max);
        rn_format_double(val, v);
        if (f->has_min && f->has_max) buf_printf(why, "%s: %s is out of range %s..%s", f->name, val, lo, hi);
        else if (f->has_min) buf_printf(why, "%s: %s is below the minimum %s", f->name, val, lo);
        else buf_printf(why, "%s: %s is above the maximum %s", f->name, val, hi);
        return -1;
    }
    return 0;
}

/* Case-insensitive match of text against the enum; the declared spelling is kept. */
static const char *enum_match(const struct output_field *f, const char *text, size_t len)
{
    for (size_t k = 0; k < f->enum_count; k++)
        if (strlen(f->enum_values[k]) == len && strncasecmp(f->enum_values[k], text, len) == 0)
            return f->enum_values[k];
    return NULL;
}

/* Check one JSON value against its field; fill out or explain in why. */
static int check_json(const struct output_field *f, json_t *v, struct value *out, struct buf *why)
{
    switch (f->type) {
    case FIELD_INTEGER: {
        double d = json_is_number(v) ? json_number_value(v) : NAN;
        if (json_is_integer(v)) out->integer = (lua_Integer)json_integer_value(v);
        else if (json_is_real(v) && d == floor(d) && fabs(d) < 9.0e15) out->integer = (lua_Integer)d;
        else break;
        return check_range(f, (double)out->integer, why);
    }
    case FIELD_NUMBER:
        if (!json_is_number(v)) break;
        out->number = json_number_value(v);
        return check_range(f, out->number, why);
    case FIELD_STRING:
        if (!json_is_string(v)) break;
        out->string = json_string_value(v);
        out->length = json_string_length(v);
        if (f->enum_count) {
            const char *match = enum_match(f, out->string, out->length);
            if (!match) {
                buf_printf(why, "%s: ", f->name);
                put_quoted_excerpt(why, out->string, out->length);
                buf_puts(why, " is not ");
                describe_field(why, f);
                return -1;
            }
            out->string = match;
            out->length = strlen(match);
        }
        return 0;
    case FIELD_BOOLEAN:
        if (!json_is_boolean(v)) break;
        out->boolean = json_is_true(v);
        return 0;
    case FIELD_VECTOR: {
        size_t i;
        json_t *item;
        if (!json_is_array(v) || json_array_size(v) == 0) break;
        json_array_foreach(v, i, item) {
            if (!json_is_number(item)) {
                buf_printf(why, "%s: item %zu is not a number", f->name, i);
                return -1;
            }
        }
        out->vector = v;
        return 0;
    }
    }
    buf_printf(why, "%s: expected ", f->name);
    describe_field(why, f);
    buf_puts(why, ", got ");
    describe_json(why, v);
    return -1;
}

static int is_word_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           (unsigned char)c >= 0x80;
}

/* Trim spaces, then surrounding quotes, backticks and '*', then one trailing '.'. */
static void clean_text(const char **text, size_t *len)
{
    const char *s = *text;
    size_t n = *len;
    trim_space(&s, &n);
    if (n && s[n - 1] == '.') n--;
    while (n >= 2 && (s[0] == '"' || s[0] == '\'' || s[0] == '`' || s[0] == '*') && s[n - 1] == s[0]) { s++; n -= 2; }
    if (n && s[n - 1] == '.') n--;
    *text = s;
    *len = n;
}

/* Parse text[0..len) whole as a number; 1 on success. */
static int parse_whole_number(const char *text, size_t len, double *out)
{
    char tmp[64];
    if (len == 0 || len >= sizeof tmp) return 0;
    memcpy(tmp, text, len);
    tmp[len] = '\0';
    if (!((tmp[0] >= '0' && tmp[0] <= '9') || tmp[0] == '-' || tmp[0] == '+' || tmp[0] == '.')) return 0;
    char *end;
    double v = strtod(tmp, &end);
    if (*end != '\0' || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

/* The one number in a short text ("Rating: 4", "I'd say 4."): a run of digits with an optional
 * sign and decimals, not touching letters or digits. 1 and *out when there is exactly one. */
static int find_lone_number(const char *s, size_t n, double *out)
{
    int found = 0;
    size_t i = 0;
    while (i < n) {
        size_t start = i;
        if ((s[i] == '-' || s[i] == '+') && i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '9') i++;
        if (!(s[i] >= '0' && s[i] <= '9') || (start > 0 && (is_word_char(s[start - 1]) || s[start - 1] == '.'))) {
            i = start + 1;
            continue;
        }
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
        if (i + 1 < n && s[i] == '.' && s[i + 1] >= '0' && s[i + 1] <= '9') {
            i++;
            while (i < n && s[i] >= '0' && s[i] <= '9') i++;
        }
        if (i < n && (is_word_char(s[i]) || (s[i] == '.' && i + 1 < n && is_word_char(s[i + 1])))) {
            while (i < n && is_word_char(s[i])) i++;
            continue; /* part of a word like "4th" or "v2" */
        }
        if (++found > 1) return 0;
        if (!parse_whole_number(s + start, i - start, out)) return 0;
    }
    return found == 1;
}

/* The one enum value that appears as a whole word in a short text ("Sentiment: positive"). */
static const char *find_lone_enum(const struct output_field *f, const char *s, size_t n)
{
    const char *found = NULL;
    for (size_t k = 0; k < f->enum_count; k++) {
        const char *value = f->enum_values[k];
        size_t vn = strlen(value);
        for (size_t i = 0; i + vn <= n; i++) {
            if (strncasecmp(s + i, value, vn) != 0) continue;
            if ((i > 0 && is_word_char(s[i - 1])) || (i + vn < n && is_word_char(s[i + vn]))) continue;
            if (found && found != value) return NULL;
            found = value;
            break;
        }
    }
    return found;
}

/* Strip a ```json ... ``` fence around an answer. */
static void strip_fence(const char **text, size_t *len)
{
    const char *s = *text;
    size_t n = *len;
    trim_space(&s, &n);
    if (n >= 6 && memcmp(s, "```", 3) == 0 && memcmp(s + n - 3, "```", 3) == 0) {
        const char *nl = memchr(s, '\n', n - 3);
        if (nl) {
            n = (size_t)(s + n - 3 - (nl + 1));
            s = nl + 1;
        }
    }
    *text = s;
    *len = n;
}

/* An unstructured answer for one field: the whole text (strings), a number alone or the one
 * number of a short text (numbers), a yes/no word (booleans), an enum value alone or the one
 * enum value named in a short text (enums). */
static int check_text(const struct output_field *f, const char *text, size_t len, struct value *out, struct buf *why)
{
    const char *s = text;
    size_t n = len;
    if (f->type == FIELD_STRING && !f->enum_count) {
        trim_space(&s, &n);
        out->string = s;
        out->length = n;
        return 0;
    }
    clean_text(&s, &n);
    double number;
    switch (f->type) {
    case FIELD_INTEGER:
    case FIELD_NUMBER:
        if (parse_whole_number(s, n, &number) || (n <= LOOSE_TEXT_MAX && find_lone_number(s, n, &number))) {
            if (f->type == FIELD_NUMBER) {
                out->number = number;
                return check_range(f, number, why);
            }
            if (number == floor(number) && fabs(number) < 9.0e15) {
                out->integer = (lua_Integer)number;
                return check_range(f, number, why);
            }
        }
        break;
    case FIELD_BOOLEAN:
        if ((n == 4 && strncasecmp(s, "true", 4) == 0) || (n == 3 && strncasecmp(s, "yes", 3) == 0)) {
            out->boolean = 1;
            return 0;
        }
        if ((n == 5 && strncasecmp(s, "false", 5) == 0) || (n == 2 && strncasecmp(s, "no", 2) == 0)) {
            out->boolean = 0;
            return 0;
        }
        break;
    case FIELD_STRING: {
        const char *match = enum_match(f, s, n);
        if (!match && n <= LOOSE_TEXT_MAX) match = find_lone_enum(f, s, n);
        if (match) {
            out->string = match;
            out->length = strlen(match);
            return 0;
        }
        break;
    }
    case FIELD_VECTOR:
        break;
    }
    buf_printf(why, "%s: expected ", f->name);
    describe_field(why, f);
    buf_puts(why, ", got ");
    put_quoted_excerpt(why, text, len);
    return -1;
}

/* Check the answer r against the output declaration, filling m->values. *parsed gets the
 * JSON object the values point into (the caller decrefs it). */
static int check_answer(struct model *m, const struct model_reply *r, json_t **parsed, struct buf *why)
{
    memset(m->values, 0, m->field_count * sizeof *m->values);
    *parsed = NULL;
    if (m->task == MODEL_TASK_EMBEDDING) {
        if (!r->vector) { buf_puts(why, "the answer holds no embedding"); return -1; }
        return check_json(&m->fields[0], r->vector, &m->values[0], why);
    }
    const char *text = r->text.data ? r->text.data : "";
    size_t len = r->text.len;
    strip_fence(&text, &len);
    int looks_json = len && (text[0] == '{' || text[0] == '[');
    if (m->field_count == 1) {
        /* One field: plain text unless the answer is JSON. A structured answer that is not JSON
         * comes from a server that ignored the schema; it gets the same reading. A free string
         * without structured output is the whole text, even when it looks like JSON. */
        const struct output_field *f = &m->fields[0];
        int free_string = f->type == FIELD_STRING && !f->enum_count;
        if (!looks_json || (!m->structured && free_string))
            return check_text(f, r->text.data ? r->text.data : "", r->text.len, &m->values[0], why);
    }
    json_error_t jerr;
    json_t *root = json_loadb(text, len, 0, &jerr);
    if (!root) {
        buf_puts(why, "not valid JSON (");
        put_excerpt(why, jerr.text, strlen(jerr.text), sizeof jerr.text); /* jansson may cut a character */
        buf_printf(why, " at column %d): ", jerr.column);
        put_quoted_excerpt(why, r->text.data ? r->text.data : "", r->text.len);
        return -1;
    }
    *parsed = root;
    if (!json_is_object(root)) {
        buf_puts(why, "expected a JSON object, got ");
        describe_json(why, root);
        return -1;
    }
    for (size_t i = 0; i < m->field_count; i++) {
        json_t *v = json_object_get(root, m->fields[i].name);
        if (!v || json_is_null(v)) {
            buf_printf(why, "%s: missing", m->fields[i].name);
            return -1;
        }
        if (check_json(&m->fields[i], v, &m->values[i], why)) return -1;
    }
    return 0;
}

static void set_fields(struct model *m, int record_ref)
{
    lua_State *L = m->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, record_ref);
    for (size_t i = 0; i < m->field_count; i++) {
        const struct value *v = &m->values[i];
        switch (m->fields[i].type) {
        case FIELD_INTEGER: lua_pushinteger(L, v->integer); break;
        case FIELD_NUMBER: lua_pushnumber(L, v->number); break;
        case FIELD_STRING: lua_pushlstring(L, v->string, v->length); break;
        case FIELD_BOOLEAN: lua_pushboolean(L, v->boolean); break;
        case FIELD_VECTOR: json_push(L, v->vector); break;
        }
        lua_setfield(L, -2, m->fields[i].name);
    }
    lua_pop(L, 1);
}

/* Check the reply and, when it validates, set the output fields on the record at registry
 * ref record_ref (also model_internal.h, for tests and fuzzing). 0, or -1 with why. */
int model_check_reply(struct model *m, const struct model_reply *reply, int record_ref, struct buf *why)
{
    json_t *parsed = NULL;
    int rc = check_answer(m, reply, &parsed, why);
    if (rc == 0) set_fields(m, record_ref);
    json_decref(parsed);
    return rc;
}

/* ---- the answer cache ---- */

/* The cached answer in m->cache_value, checked again like a fresh one: 1 and the fields set
 * on the slot's record when it validates; 0 when it does not (the call goes out instead).
 * The reply text and done_reason of a call being finished are left alone. */
static int use_cached(struct model *m, struct slot *s)
{
    struct model_reply cached = {.text = m->cache_value}; /* the text is lent, not copied */
    int ok = 0;
    if (m->task == MODEL_TASK_EMBEDDING) cached.vector = json_loadb(m->cache_value.data, m->cache_value.len, 0, NULL);
    if (m->task != MODEL_TASK_EMBEDDING || cached.vector) {
        buf_clear(&m->scratch); /* why it does not validate: not kept, the call goes out instead */
        ok = model_check_reply(m, &cached, s->record_ref, &m->scratch) == 0;
    }
    json_decref(cached.vector);
    return ok;
}

/* Store the answer in m->reply, which validated, under the slot's key. A failed write stops
 * the storing, not the job: the cache only saves calls. */
static void cache_store(struct model *m, struct slot *s)
{
    struct model_reply *r = &m->reply;
    char *vector = NULL;
    const char *value = r->text.data ? r->text.data : "";
    size_t len = r->text.len;
    if (m->task == MODEL_TASK_EMBEDDING) {
        vector = r->vector ? json_dumps(r->vector, JSON_COMPACT) : NULL;
        if (!vector) return;
        value = vector;
        len = strlen(vector);
    }
    size_t before = cache_count(m->cache);
    struct rn_err err;
    if (cache_put(m->cache, s->key, value, len, &err) && !m->cache_error) m->cache_error = rn_strdup(err.msg);
    m->cache_stored += cache_count(m->cache) - before;
    free(vector);
}

/* Report the records answered from the cache. Returns how many. */
static size_t report_hits(struct model *m)
{
    size_t n = 0;
    while (m->hits_next < m->hits_len) {
        struct cache_hit hit = m->hits[m->hits_next++];
        m->ok++;
        m->cache_hits++;
        n++;
        if (m->done) m->done(m->done_ctx, hit.tag, hit.record_ref, 1, NULL, NULL);
    }
    m->hits_len = m->hits_next = 0;
    return n;
}

static void cache_tick(struct model *m, int64_t now)
{
    if (!m->cache || now < m->cache_sync_due_ms) return;
    m->cache_sync_due_ms = now + CACHE_SYNC_MS;
    struct rn_err err;
    if (cache_sync(m->cache, &err) && !m->cache_error) m->cache_error = rn_strdup(err.msg);
}

/* Pause new sends until a rate-limit window resets when the server says none is left. */
static void pause_until(struct model *m, int64_t until)
{
    if (until > m->paused_until_ms) m->paused_until_ms = until;
}

static void handle_answer(struct model *m, struct slot *s, int64_t now)
{
    struct model_reply *r = &m->reply;
    struct rn_err perr;
    buf_clear(&r->text);
    r->vector = NULL;
    r->tokens_in = r->tokens_out = 0;
    if (m->provider->parse(m->provider_self, s->response.data ? s->response.data : "", s->response.len, r, &perr)) {
        json_decref(r->vector);
        r->vector = NULL;
        s->last_status = 0;
        /* the body was redacted, but the parse error may quote it unescaped: again, before a cut */
        buf_clear(&m->done_reason);
        buf_puts(&m->done_reason, perr.msg);
        redact(m, &m->done_reason);
        buf_clear(&s->reason);
        buf_puts(&s->reason, "bad response: ");
        put_excerpt(&s->reason, m->done_reason.data, m->done_reason.len, sizeof perr.msg);
        retry_or_fail(m, s, 0, now);
        return;
    }
    redact(m, &r->text); /* before any excerpt of it is taken: a cut could split a secret */
    m->tokens_in += r->tokens_in;
    m->tokens_out += r->tokens_out;
    if (m->tpm.on && r->tokens_in + r->tokens_out > 0) /* correct the estimate with the real usage */
        m->tpm.level -= (double)(r->tokens_in + r->tokens_out - s->tokens_estimate);
    if (s->remaining_requests == 0 && s->reset_requests_ms > 0) pause_until(m, now + cap_hint(s->reset_requests_ms));
    if (s->remaining_tokens == 0 && s->reset_tokens_ms > 0) pause_until(m, now + cap_hint(s->reset_tokens_ms));

    buf_clear(&m->done_reason);
    buf_puts(&m->done_reason, "invalid answer: ");
    size_t prefix = m->done_reason.len;
    int ok = model_check_reply(m, r, s->record_ref, &m->done_reason) == 0;
    if (ok && m->cache) cache_store(m, s); /* its key was made at submit; it reads r->vector */
    json_decref(r->vector);
    r->vector = NULL;
    if (ok) {
        if (s->corrected) m->corrected++;
        finish(m, s, 1, NULL);
        return;
    }
    m->invalid_answers++;
    if (!s->corrected) {
        /* one more try, showing the model its answer and what was wrong with it */
        struct buf t = s->answer;
        s->answer = r->text;
        r->text = t;
        buf_clear(&s->correction);
        buf_puts(&s->correction, "Your previous answer was rejected: ");
        buf_put(&s->correction, m->done_reason.data + prefix, m->done_reason.len - prefix);
        buf_puts(&s->correction, ". ");
        buf_puts(&s->correction, m->expected);
        s->corrected = 1;
        s->attempts = 0;
        m->corrections++;
        struct rn_err berr;
        if (build_call(m, s, &berr)) {
            buf_clear(&m->done_reason);
            buf_puts(&m->done_reason, berr.msg);
            finish(m, s, 0, NULL);
            return;
        }
        ready_push_head(m, s);
        return;
    }
    finish(m, s, 0, r->text.data ? r->text.data : "");
}

static void handle_done(struct model *m, struct slot *s, CURLcode result)
{
    int64_t now = m->now_ms;
    m->running--;
    long status = 0;
    curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
    long connects = 0;
    if (curl_easy_getinfo(s->easy, CURLINFO_NUM_CONNECTS, &connects) == CURLE_OK && connects > 0)
        m->connections += (uint64_t)connects;
    if (result == CURLE_OK) {
        curl_off_t us = 0;
        curl_easy_getinfo(s->easy, CURLINFO_TOTAL_TIME_T, &us);
        m->latency[latency_bucket(us > 0 ? (uint64_t)us : 0)]++;
        m->latency_count++;
        if (m->adaptive) {
            m->share_429 += SHARE_429_WEIGHT * ((status == 429) - m->share_429);
            if (status >= 200 && status < 300) {
                /* the server's part: from the request on the wire to the first byte back, so
                 * connecting and our own queueing do not count */
                curl_off_t sent = 0, first_byte = 0;
                curl_easy_getinfo(s->easy, CURLINFO_PRETRANSFER_TIME_T, &sent);
                curl_easy_getinfo(s->easy, CURLINFO_STARTTRANSFER_TIME_T, &first_byte);
                window_answer(m, first_byte > sent ? (int64_t)(first_byte - sent) : 0);
            }
        }
    }
    buf_clear(&s->reason);
    if (result != CURLE_OK) {
        s->last_status = 0;
        if (result == CURLE_OPERATION_TIMEDOUT) {
            buf_printf(&s->reason, "timeout after %lld ms", (long long)m->timeout_ms);
            congestion(m, s);
        } else if (result == CURLE_WRITE_ERROR && s->response.len >= RESPONSE_MAX) {
            buf_printf(&s->reason, "response larger than %u bytes", RESPONSE_MAX);
        } else {
            buf_puts(&s->reason, s->errbuf[0] ? s->errbuf : curl_easy_strerror(result));
        }
        if (curl_retryable(result)) retry_or_fail(m, s, 0, now);
        else fail_now(m, s);
        return;
    }
    /* before any code reads or cuts the body: an excerpt or a parse error could split a secret */
    redact(m, &s->response);
    if (status >= 200 && status < 300) {
        handle_answer(m, s, now);
        return;
    }
    s->last_status = status;
    put_excerpt(&s->reason, s->response.data ? s->response.data : "", s->response.len, EXCERPT_MAX);
    if (status == 408 || status == 409 || status == 429 || status >= 500) {
        int64_t hint = s->retry_after_ms;
        if (status == 429) {
            if (s->remaining_requests <= 0 && s->reset_requests_ms > hint) hint = s->reset_requests_ms;
            if (s->remaining_tokens == 0 && s->reset_tokens_ms > hint) hint = s->reset_tokens_ms;
        }
        hint = cap_hint(hint);
        if (status == 429 || status >= 500) congestion(m, s);
        retry_or_fail(m, s, hint, now);
        /* no stampede: when the server says how long to wait, nothing new goes out before then.
         * With concurrency "auto" a 429 that is one answer among mostly good ones says the
         * window was too big, and the cut above is the answer; the pause is for a server
         * that refuses most requests, or a window that cannot shrink further. */
        int refusing = !m->adaptive || m->share_429 >= SHARE_429_PAUSE || m->window <= AUTO_MIN;
        if (status == 429 && hint > 0 && refusing) pause_until(m, now + hint);
        return;
    }
    fail_now(m, s);
}

static int start_transfer(struct model *m, struct slot *s, int64_t now)
{
    if (!s->easy) s->easy = make_easy(m, s);
    if (!s->easy) {
        buf_clear(&m->done_reason);
        buf_puts(&m->done_reason, "libcurl: cannot make an easy handle");
        finish(m, s, 0, NULL);
        return 0;
    }
    curl_easy_setopt(s->easy, CURLOPT_URL, s->call.url.data);
    curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->call.headers);
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)s->call.body.len);
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, s->call.body.data);
    buf_clear(&s->response);
    reset_header_info(s);
    s->errbuf[0] = '\0';
    CURLMcode mc = curl_multi_add_handle(m->multi, s->easy);
    if (mc != CURLM_OK) {
        buf_clear(&m->done_reason);
        buf_printf(&m->done_reason, "libcurl: %s", curl_multi_strerror(mc));
        finish(m, s, 0, NULL);
        return 0;
    }
    /* counted once it is really on its way */
    s->attempts++;
    s->sent_ms = now;
    m->requests++;
    if (s->attempts > 1) m->retried++;
    s->state = SLOT_RUNNING;
    m->running++;
    if (m->adaptive) {
        m->window_sum += m->window;
        m->window_samples++;
        if (!m->interval_start_ms) m->interval_start_ms = now; /* the first interval starts with the first send */
    }
    return 1;
}

/* Move due retries to the ready queue and send what the limits allow. Returns how many were
 * started. */
static int start_ready(struct model *m, int64_t now)
{
    while (m->heap_len && m->heap[0]->due_ms <= now) ready_push_head(m, heap_pop(m));
    int started = 0;
    while (m->ready_head && now >= m->paused_until_ms) {
        if (m->adaptive && m->running >= (int)m->window) {
            m->window_full = 1; /* after a cut: the rest waits for answers to make room */
            break;
        }
        struct slot *s = m->ready_head;
        if (bucket_wait_ms(&m->rpm, now, 1) || bucket_wait_ms(&m->tpm, now, (double)s->tokens_estimate)) break;
        ready_pop(m);
        if (!start_transfer(m, s, now)) continue; /* it never went out: it takes no budget */
        if (m->rpm.on) m->rpm.level -= 1;
        if (m->tpm.on) m->tpm.level -= (double)s->tokens_estimate;
        started++;
    }
    return started;
}

/* When something not driven by a socket can happen: a retry falls due, a pause ends, a bucket
 * refills, curl's timer fires. INT64_MAX when nothing waits. */
static int64_t next_due_ms(struct model *m, int64_t now)
{
    int64_t due = INT64_MAX;
    if (m->heap_len) due = m->heap[0]->due_ms;
    if (m->curl_due_ms >= 0 && m->curl_due_ms < due) due = m->curl_due_ms;
    if (m->ready_head && !(m->adaptive && m->running >= (int)m->window)) { /* else an answer makes room */
        int64_t w = m->paused_until_ms - now;
        int64_t r = bucket_wait_ms(&m->rpm, now, 1);
        int64_t t = bucket_wait_ms(&m->tpm, now, (double)m->ready_head->tokens_estimate);
        if (r > w) w = r;
        if (t > w) w = t;
        if (w < 1) w = 1;
        if (now + w < due) due = now + w;
    }
    return due;
}

static void drain_completions(struct model *m)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m->multi, &left))) {
        if (msg->msg != CURLMSG_DONE) continue;
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;
        char *private = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, &private);
        struct slot *s = (struct slot *)(void *)private;
        curl_multi_remove_handle(m->multi, easy);
        handle_done(m, s, result);
    }
}

static int multi_failed(struct model *m, CURLMcode mc, struct rn_err *err)
{
    return rn_fail(err, "model.%s: libcurl: %s", m->provider_name, curl_multi_strerror(mc));
}

/* Do what is due at m->now_ms: report finished transfers, send what the limits allow, and run
 * curl's timer, which is how the transfers just added start (libcurl asks for a timeout of 0
 * when a handle is added). Bounded: a retry started here that fails at once waits for the
 * next call. */
static int advance(struct model *m, struct rn_err *err)
{
    drain_completions(m);
    for (int round = 0;; round++) {
        start_ready(m, m->now_ms);
        if (round == 4 || m->curl_due_ms < 0 || m->curl_due_ms > m->now_ms) return 0;
        int64_t due = m->curl_due_ms;
        m->curl_timer_set = 0;
        int running;
        CURLMcode mc = curl_multi_socket_action(m->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        if (mc != CURLM_OK) return multi_failed(m, mc, err);
        /* called early (the deadline was rounded down): curl keeps it and says nothing */
        if (!m->curl_timer_set && m->curl_due_ms == due) m->curl_due_ms = m->now_ms + 1;
        drain_completions(m);
    }
}

int model_poll(struct model *m, int timeout_ms, model_done_fn done, void *ctx, struct rn_err *err)
{
    m->done = done;
    m->done_ctx = ctx;
    size_t hits = report_hits(m);
    m->now_ms = rn_now_ms();
    cache_tick(m, m->now_ms);
    if (m->occupied == 0) return 0;
    uint64_t finished = m->ok + m->failed;
    if (advance(m, err)) return -1;
    int wait = 0;
    if (timeout_ms > 0 && !hits && m->ok + m->failed == finished) {
        int64_t left = next_due_ms(m, m->now_ms) - m->now_ms;
        wait = left < timeout_ms ? (left > 0 ? (int)left : 0) : timeout_ms;
    }
    struct epoll_event events[EVENTS_MAX];
    int n = epoll_wait(m->epoll_fd, events, EVENTS_MAX, wait);
    if (n < 0 && errno != EINTR) return rn_fail(err, "model.%s: epoll_wait: %s", m->provider_name, strerror(errno));
    if (n > 0 || wait > 0) m->now_ms = rn_now_ms();
    for (int i = 0; i < n; i++) {
        int fd = events[i].data.fd;
        if (!(m->fd_state[fd] & FD_WANTED)) {
            /* an idle connection kept in the set woke up (the server closed it): curl finds
             * that out when it next tries the connection; stop watching it */
            epoll_ctl(m->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
            m->fd_state[fd] &= (uint8_t)~FD_IN_SET;
            continue;
        }
        uint32_t ev = events[i].events;
        int bits = (ev & EPOLLIN ? CURL_CSELECT_IN : 0) | (ev & EPOLLOUT ? CURL_CSELECT_OUT : 0);
        if (ev & (EPOLLERR | EPOLLHUP)) bits |= CURL_CSELECT_IN | CURL_CSELECT_OUT; /* curl finds the error by trying */
        int running;
        CURLMcode mc = curl_multi_socket_action(m->multi, fd, bits, &running);
        if (mc != CURLM_OK) return multi_failed(m, mc, err);
    }
    if (advance(m, err)) return -1;
    if (m->socket_errno)
        return rn_fail(err, "model.%s: epoll_ctl: %s", m->provider_name, strerror(m->socket_errno));
    return 0;
}

/* ---- summary and close ---- */

/* The mean window the requests were sent under. */
static double window_mean(const struct model *m)
{
    return m->window_samples ? m->window_sum / (double)m->window_samples : m->window;
}

static double cost_usd(const struct model *m)
{
    return ((double)m->tokens_in * m->price_in + (double)m->tokens_out * m->price_out) / 1e6;
}

void model_print_summary(struct model *m, FILE *out)
{
    fprintf(out, "model.%s %s: %llu ok, %llu failed; %llu requests, %llu retries, %llu invalid answers "
                 "(%llu corrected by a retry)\n",
            m->provider_name, m->model_name, (unsigned long long)m->ok, (unsigned long long)m->failed,
            (unsigned long long)m->requests, (unsigned long long)m->retried,
            (unsigned long long)m->invalid_answers, (unsigned long long)m->corrected);
    fprintf(out, "  tokens in %lld, out %lld; latency p50 %.1f ms, p95 %.1f ms, p99 %.1f ms\n",
            (long long)m->tokens_in, (long long)m->tokens_out, latency_percentile_ms(m, 0.50),
            latency_percentile_ms(m, 0.95), latency_percentile_ms(m, 0.99));
    if (m->cache)
        fprintf(out, "  cache hits %llu, answers stored %llu (%zu in %s)\n", (unsigned long long)m->cache_hits,
                (unsigned long long)m->cache_stored, cache_count(m->cache), cache_path(m->cache));
    if (m->cache_error) fprintf(out, "  cache: stopped storing answers: %s\n", m->cache_error);
    if (m->adaptive)
        fprintf(out, "  concurrency auto: started %d, ended %d, mean %.1f, min %d, max %d\n", AUTO_START,
                (int)m->window, window_mean(m), (int)m->window_min, (int)m->window_max);
    if (m->has_price) fprintf(out, "  cost $%.4f (estimate)\n", cost_usd(m));
}

void model_summary_json(struct model *m, json_t *summary)
{
    json_t *o = json_object();
    json_object_set_new(o, "provider", json_string(m->provider_name));
    json_object_set_new(o, "name", json_string(m->model_name));
    json_object_set_new(o, "requests", json_integer((json_int_t)m->requests));
    json_object_set_new(o, "ok", json_integer((json_int_t)m->ok));
    json_object_set_new(o, "retries", json_integer((json_int_t)m->retried));
    json_object_set_new(o, "failed", json_integer((json_int_t)m->failed));
    json_object_set_new(o, "invalid_answers", json_integer((json_int_t)m->invalid_answers));
    json_object_set_new(o, "corrections", json_integer((json_int_t)m->corrections));
    json_object_set_new(o, "corrected", json_integer((json_int_t)m->corrected));
    json_object_set_new(o, "connections", json_integer((json_int_t)m->connections));
    json_object_set_new(o, "tokens_in", json_integer(m->tokens_in));
    json_object_set_new(o, "tokens_out", json_integer(m->tokens_out));
    json_t *lat = json_object();
    json_object_set_new(lat, "p50", json_real(latency_percentile_ms(m, 0.50)));
    json_object_set_new(lat, "p95", json_real(latency_percentile_ms(m, 0.95)));
    json_object_set_new(lat, "p99", json_real(latency_percentile_ms(m, 0.99)));
    json_object_set_new(o, "latency_ms", lat);
    json_object_set_new(o, "cost_usd", m->has_price ? json_real(cost_usd(m)) : json_null());
    json_t *conc = json_object();
    if (m->adaptive) {
        json_object_set_new(conc, "mode", json_string("auto"));
        json_object_set_new(conc, "start", json_integer(AUTO_START));
        json_object_set_new(conc, "final", json_integer((json_int_t)m->window));
        json_object_set_new(conc, "mean", json_real(round(window_mean(m) * 10) / 10));
        json_object_set_new(conc, "min", json_integer((json_int_t)m->window_min));
        json_object_set_new(conc, "max", json_integer((json_int_t)m->window_max));
    } else {
        json_object_set_new(conc, "mode", json_string("fixed"));
        json_object_set_new(conc, "limit", json_integer(m->concurrency));
    }
    json_object_set_new(o, "concurrency", conc);
    json_object_set_new(o, "cache_hits", json_integer((json_int_t)m->cache_hits));
    if (m->cache) {
        json_t *c = json_object();
        json_object_set_new(c, "path", json_string(cache_path(m->cache)));
        json_object_set_new(c, "entries", json_integer((json_int_t)cache_count(m->cache)));
        json_object_set_new(c, "stored", json_integer((json_int_t)m->cache_stored));
        json_object_set_new(c, "torn_bytes_cut", json_integer(cache_torn_bytes(m->cache)));
        json_object_set_new(c, "error", m->cache_error ? json_string(m->cache_error) : json_null());
        json_object_set_new(o, "cache", c);
    } else {
        json_object_set_new(o, "cache", json_null());
    }
    json_object_set_new(summary, "model", o);
}

void model_close(struct model *m)
{
    if (!m) return;
    if (m->slots) {
        for (int i = 0; i < m->concurrency; i++) {
            struct slot *s = &m->slots[i];
            if (s->easy) {
                if (s->state == SLOT_RUNNING) curl_multi_remove_handle(m->multi, s->easy);
                curl_easy_cleanup(s->easy);
            }
            buf_free(&s->call.url);
            buf_free(&s->call.body);
            buf_free(&s->prompt);
            buf_free(&s->answer);
            buf_free(&s->correction);
            buf_free(&s->response);
            buf_free(&s->reason);
        }
    }
    if (m->multi) curl_multi_cleanup(m->multi);
    if (m->epoll_fd >= 0) close(m->epoll_fd); /* after the multi: its cleanup still calls on_socket */
    free(m->fd_state);
    if (m->provider_self) m->provider->close(m->provider_self);
    cache_close(m->cache);
    free(m->hits);
    free(m->cache_error);
    buf_free(&m->cache_value);
    prompt_free(m->prompt);
    for (size_t i = 0; i < m->field_count; i++) {
        free(m->fields[i].name);
        free(m->fields[i].description);
        for (size_t k = 0; k < m->fields[i].enum_count; k++) free(m->fields[i].enum_values[k]);
        free(m->fields[i].enum_values);
    }
    for (size_t i = 0; i < m->secret_count; i++) {
        explicit_bzero(m->secrets[i], strlen(m->secrets[i]));
        free(m->secrets[i]);
    }
    free(m->secrets);
    free(m->fields);
    free(m->values);
    free(m->schema_json);
    free(m->expected);
    free(m->system);
    free(m->slots);
    free(m->heap);
    free(m->provider_name);
    free(m->model_name);
    buf_free(&m->reply.text);
    buf_free(&m->done_reason);
    buf_free(&m->scratch);
    free(m);
}

