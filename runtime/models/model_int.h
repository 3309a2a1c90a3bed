/* model_int.h: the model engine's private declarations, shared by the files of runtime/models/
 * (engine, output, check, limits, retry, stats, answer_cache, descriptors) and their tests and fuzzers;
 * nothing outside models/ includes it.
 *
 * struct model is made of one part per concern, each owned by the file named beside it; the
 * engine (engine.c) holds the slots and drives the rest. Every pointer in these structs is
 * owned by the struct that holds it and freed by its file's close/free function. */
#ifndef RUNNEL_MODEL_INT_H
#define RUNNEL_MODEL_INT_H

#include <lua.h>

#include "core/fdlimit.h"
#include "core/http.h"
#include "core/secret.h"
#include "models/breaker.h"
#include "models/cache.h"
#include "core/metrics.h"
#include "models/model.h"

/* ---- output.c: the `output` declaration, its JSON schema, what a valid answer looks like ---- */

enum field_type { FIELD_INTEGER, FIELD_NUMBER, FIELD_STRING, FIELD_BOOLEAN, FIELD_VECTOR };

struct output_field {
    char *name;
    enum field_type type;
    int has_min, has_max;
    double min, max;
    char **enum_values;
    size_t enum_count;
    char *description;
};

struct output {
    struct output_field *fields; /* sorted by name */
    size_t field_count;
    int structured;              /* answers are asked to follow schema_json */
    char *schema_json;           /* NULL without structured output */
    char *expected;              /* "Answer with ...", for the correction round */
};

/* Read `output` (and `structured`) from the options table at opts for a model of this task
 * whose provider has these capabilities (provider.h); fields a task fills by default are added.
 * -1 and err naming the option at fault. o is freed with output_free either way. */
int output_read(struct output *o, lua_State *L, int opts, enum model_task task, unsigned capabilities,
                struct rn_err *err);
void output_free(struct output *o);
const char *output_type_name(enum field_type type);
/* "an integer from 1 to 5", "one of: a, b", ... */
void output_describe_field(struct buf *b, const struct output_field *f);

/* ---- check.c: an answer checked against the output declaration ---- */

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

/* Check reply against o, filling values[0..field_count). *parsed gets the JSON the values point
 * into (the caller decrefs it). 0, or -1 with the reason appended to why. */
int check_answer(const struct output *o, enum model_task task, const struct model_reply *reply, struct value *values,
                 json_t **parsed, struct buf *why);
/* Set the checked values as fields of the record table at registry ref record_ref. */
void check_set_fields(lua_State *L, const struct output *o, const struct value *values, int record_ref);
/* Append up to max bytes of text on one line: whitespace runs become one space, bytes that are
 * not UTF-8 become '?', and a cut never splits a character (then "..."). */
void check_put_excerpt(struct buf *out, const char *text, size_t len, size_t max);

/* ---- cluster.c: task clustering over the job's centroids ---- */

struct centroids {
    size_t count, dims;
    char **names;              /* sorted */
    double *values;            /* count rows of dims numbers, each of length 1 */
};

/* Read `centroids` (checked: lists of numbers) from the options table at opts; count 0 when
 * absent. -1 and err when their lengths differ. c is freed with centroids_free either way. */
int centroids_read(struct centroids *c, lua_State *L, int opts, struct rn_err *err);
/* The name of the centroid nearest (cosine) to vector, into name (cleared first). -1 with the
 * reason appended to why when the vector does not fit. */
int centroids_nearest(const struct centroids *c, json_t *vector, struct buf *name, struct buf *why);
void centroids_free(struct centroids *c);

/* ---- limits.c: request and token buckets, the "auto" concurrency window (AIMD) ---- */

#define LIMITS_AUTO_START 8   /* concurrency = "auto": the window starts here */

/* A token bucket refilled continuously: rpm counts requests, tpm estimated tokens. */
struct bucket {
    int on;
    double level, capacity, per_ms;
    int64_t last_ms;
};

struct limits {
    int concurrency;           /* slots; with adaptive, the window's ceiling */
    int adaptive;              /* concurrency = "auto" */
    int retries;
    int64_t timeout_ms, connect_timeout_ms;
    int64_t outage_ms;         /* limits.outage: the endpoint unhealthy this long stops the job */
    struct bucket rpm, tpm;
    /* concurrency = "auto": the window limits the requests on the wire (READY and RUNNING
     * slots), not the slots waiting for a retry */
    double window, threshold;  /* AIMD: congestion window and slow-start threshold */
    int64_t last_cut_ms;       /* when the window was last cut; only requests sent since may cut it */
    double rtt_baseline_us;    /* EWMA of the RTT at low concurrency; 0 until measured */
    int64_t interval_start_ms; /* the current measuring interval (about one RTT) */
    double interval_rtt_us;    /* sum of the RTTs of its answers */
    uint64_t interval_answers;
    int interval_cut;          /* the window was cut during it */
    int window_full;           /* the window was full during it: growing it can help */
    double share_429;          /* EWMA of the share of rate-limit refusals among HTTP answers */
    double window_sum, window_min, window_max; /* the window each request was sent under */
    uint64_t window_samples;
};

/* Pace b at per_ms (a rate the quota learned), refilling it first at the rate it had; capacity
 * a second's worth. limits_bucket_cap: the bucket holds at most `most` (may be below 0: a debt). */
void limits_bucket_pace(struct bucket *b, double per_ms, int64_t now);
void limits_bucket_cap(struct bucket *b, double most, int64_t now);

/* Read `limits` from the options table at opts (defaults when absent). -1 and err. */
int limits_read(struct limits *l, lua_State *L, int opts, struct rn_err *err);
/* How long until rpm and tpm allow a request of about `tokens` tokens; 0: now. */
int64_t limits_wait_ms(struct limits *l, int64_t now, int64_t tokens);
/* A request of about `tokens` tokens went out. */
void limits_spend(struct limits *l, int64_t tokens);
/* Its answer used `used` tokens, not the estimate: correct the token bucket. */
void limits_usage(struct limits *l, int64_t used, int64_t estimate);
/* The window: a request went out at now; a congestion signal from a request sent at sent_ms;
 * an answer (rate_limited: a refusal for rate) and, when ok, the server's RTT for it; on_wire
 * is how many requests are on the wire now. */
void limits_sent(struct limits *l, int64_t now);
void limits_congestion(struct limits *l, int64_t sent_ms, int64_t now);
void limits_answer(struct limits *l, int rate_limited, int ok, int64_t rtt_us, int64_t now, int on_wire);
/* At most `calls` in flight from now on (lower or higher than before, at least 1); with
 * "auto", the window's ceiling. The slots stay as many as they were. */
void limits_cap(struct limits *l, int calls);
/* Whether a rate-limit refusal with a hint should hold back every send: always with a fixed
 * concurrency; with "auto" only when most answers are refusals or the window cannot shrink. */
int limits_pause_all(const struct limits *l);
double limits_window_mean(const struct limits *l);

/* ---- quota.c: pacing at the quota the provider announces ---- */

struct slot;

/* One limit (requests or tokens) as the provider's headers told it. */
struct quota_dimension {
    int64_t limit;             /* per window, as announced; 0 while unknown */
    double refill_per_ms;      /* how fast the window refills, from limit, remaining and reset */
    double deficit_sum, reset_sum; /* decaying sums of the samples refill is learned from */
    double declared_per_ms;    /* the job's rpm or tpm; 0 when not declared */
    double sent;               /* requests, or estimated tokens, sent in the whole run */
    uint64_t held;             /* answers whose count held the pace back */
};

struct quota {
    struct quota_dimension requests, tokens;
    uint64_t completions;      /* attempts that ended, answered or not */
};

/* Note what the job declared (after limits_read). */
void quota_init(struct quota *q, const struct limits *l);
/* Slot s is going out with its estimate: mark it, for the answer's reckoning. */
void quota_sent(struct quota *q, struct slot *s);
/* The answer to s (any status) said v: learn the limits and the refill, pace the buckets just
 * under them (or at the declared rpm/tpm when smaller) and keep the buckets' levels below what
 * the provider says is left, less what went out since and a reserve. */
void quota_observe(struct quota *q, struct limits *l, const struct slot *s, const struct provider_verdict *v, int64_t now);
/* An attempt ended (any answer, or none). */
void quota_completed(struct quota *q);
/* Whether sends wait: with no rpm/tpm declared, the first request goes out alone, and the rest
 * wait for it to end, so a provider's quota (which may be nearly spent) is known before a full
 * window of requests hits it. */
int quota_hold(const struct quota *q);
/* Whether the token limit is the provider's count (then the answer's usage does not correct it). */
int quota_counts_tokens(const struct quota *q);
void quota_print(const struct quota *q, const struct limits *l, FILE *out);
void quota_json(const struct quota *q, const struct limits *l, json_t *model);

/* ---- retry.c: the retry policy ---- */

/* The wait before attempt `attempts` + 1: exponential backoff with full jitter, but no sooner
 * than hint_ms (plus up to 10%) when the server gave one (> 0). rng: xorshift state, not 0. */
int64_t retry_delay_ms(int attempts, int64_t hint_ms, uint64_t *rng);
/* The next number of the xorshift generator at *rng (never 0). */
uint64_t retry_random(uint64_t *rng);
/* The longest server hint honoured, in ms. */
int64_t retry_cap_hint(int64_t ms);
/* Whether a transfer that failed with rc (no answer) is worth another attempt. */
int retry_transport(CURLcode rc);

/* ---- stats.c: counters, the latency histogram, the summary ---- */

#define LATENCY_BUCKETS (32 + 59 * 16)

/* The model's counters are series of the job's metrics registry (core/metrics.h), labelled with
 * the provider and the model, so the summary, --summary-json and /metrics read one set of
 * figures. The fine latency histogram stays here for the summary's percentiles; the registry
 * gets the same observations in Prometheus buckets. */
struct stats {
    struct metrics *own;       /* a registry of the model's own when the job has none (tests) */
    struct metric *requests, *ok, *retried, *failed, *invalid_answers, *corrections, *connections;
    struct metric *corrected;  /* correction calls whose answer validated */
    struct metric *cache_hits, *cache_stored;
    struct metric *tokens_in, *tokens_out;
    struct metric *answers_without_usage; /* parsed answers that reported no tokens (a server without `usage`) */
    struct metric *tokens_cache_read, *tokens_cache_write; /* of tokens_in */
    struct metric *latency_seconds, *in_flight, *cost_usd;
    struct metric *rate_limited;  /* answers that refused for rate (429, or the provider's equivalent) */
    struct metric *window;        /* the calls allowed in flight now: the "auto" window, else concurrency */
    char first_failure[768];   /* "POST URL: reason (what to check)" of the first record failed; redacted */
    /* batch mode: records sent through batches (spooled, or joining a resumed one), answers that
     * came from them (and validated), records they did not answer that went live, and that were
     * dead-lettered; the tokens of their answers */
    struct metric *batch_records, *batch_answered, *batch_live, *batch_failed;
    struct metric *batch_tokens_in, *batch_tokens_out;
    /* batch_inputs: requests that carried several records' inputs, the records they carried, and
     * records sent again alone because such an answer lacked them or gave a vector of another length */
    struct metric *inputs_requests, *inputs_records, *inputs_alone;
    double batch_price;        /* batch answers' price as a share of the live one (1 without batch) */
    uint64_t latency_count;
    uint64_t latency[LATENCY_BUCKETS]; /* microseconds, log-linear: 16 buckets per power of two */
    int has_price;
    double price_in, price_out, price_cache_read, price_cache_write;
    int in_flight_max;         /* the most calls on the wire at once */
    uint64_t answers_http1, answers_http2; /* answers by HTTP version (2: HTTP/2 or later) */
    uint64_t descriptor_waits; /* requests that found no file descriptor and waited (counted in
                                * requests, never in retries: they did not reach the server) */
};

/* Register the model's series in registry (or in a registry of its own when NULL). -1 and err. */
int stats_open(struct stats *s, struct metrics *registry, const char *provider, const char *model, struct rn_err *err);
void stats_close(struct stats *s);
/* The cost estimate: batch answers at their share of the live price; and all at the live price. */
double stats_cost_usd(const struct stats *s);
double stats_cost_live_usd(const struct stats *s);
void stats_latency_add(struct stats *s, int64_t us);
double stats_latency_percentile_ms(const struct stats *s, double p);
/* Read `price` from the options table at opts. -1 and err. */
int stats_read_price(struct stats *s, lua_State *L, int opts, struct rn_err *err);

/* ---- descriptors.c: the model's share of the file descriptor limit ---- */

/* Over HTTP/1.1 every call in flight holds a connection, a descriptor; over HTTP/2 calls share
 * connections. So at open the calls in flight are lowered to the connections that fit (the
 * rest of the job counted: env->descriptors_planned); a https model sends one connection's
 * worth until the first answer says which HTTP it speaks; over HTTP/2 the declared calls go
 * over as few connections as carry them; and whenever a socket finds no descriptor free, the
 * calls and connections are lowered to what is open. */
struct model_descriptors {
    int asked;                 /* limits.concurrency as declared (with "auto": its ceiling); the slots */
    long fit;                  /* connections the limit allows */
    long connections_cap;      /* over HTTP/2: the HTTP client's connection limit */
    struct fdlimit limit;      /* RLIMIT_NOFILE at open */
    long used;                 /* descriptors the job uses besides its connections, reserve included */
    int lowered;               /* the calls in flight are fewer than asked */
    int sent;                  /* a call went out */
    int version_known;         /* an answer said which HTTP the server speaks */
    int probing;               /* https, version unknown: one connection's worth of calls */
    int multiplexed;           /* the first answer came over HTTP/2 */
    int noted_short;           /* the note on running out of descriptors was printed */
    char *where;               /* "jobs/x.lua:12: model.openai", for the notes */
};

struct model;

/* At open, before the HTTP client is made: lower m->limits to the connections that fit, with
 * one note on stderr when it must. */
void descriptors_fit(struct model *m, const char *where);
/* A transfer found no descriptor, or the job ran short of them: lower the calls in flight and
 * the client's connections to what is open and fits now (one note, the first time). */
void descriptors_short(struct model *m);
/* The first call goes out (r, its request: a https URL may be answered over HTTP/2). */
void descriptors_first_send(struct model *m, const struct http_request *r);
/* An answer came over this HTTP version (10, 11, 20, 30; 0: unknown) while none had. */
void descriptors_version(struct model *m, int http_version);
void descriptors_close(struct model_descriptors *d);

/* ---- engine.c: slots ---- */

/* SLOT_GROUPED: the record rides in another slot's request of several inputs (batch_inputs),
 * waiting with it: on the wire, in the retry heap or the ready queue. */
enum slot_state { SLOT_FREE, SLOT_READY, SLOT_WAITING, SLOT_RUNNING, SLOT_STOPPED, SLOT_GROUPED };

/* One record in flight, with everything its calls need; made at open and reused. */
struct slot {
    enum slot_state state;
    uint64_t tag;
    int record_ref;
    int attempts;              /* HTTP attempts of the current call */
    int corrected;             /* the one correction call was made */
    int probe;                 /* RUNNING: the attempt is the breaker's probe */
    int resent;                /* the last attempt was given back (an outage): the next send is a retry */
    int64_t due_ms;            /* WAITING: when to send again */
    int64_t sent_ms;           /* when the current attempt started */
    int64_t tokens_estimate;
    double quota_requests, quota_tokens; /* what the quota had seen sent, this attempt included */
    long last_status;          /* HTTP status of the last failed attempt, 0 for transport errors */
    size_t built_headers;      /* header lines of build; authorize's come after */
    uint8_t key[CACHE_KEY_SIZE];
    struct slot *next;         /* ready queue or free list */
    struct model_call call;
    struct http_request req;   /* the request build made, and the answer of its last attempt */
    struct buf prompt;
    struct buf answer;         /* the rejected answer, for the correction call */
    struct buf correction;
    struct buf reason;         /* why the last attempt failed */
    /* batch_inputs > 1: the slot that sends a request of several records' inputs (the leader)
     * holds that request in inputs_req and the other records in `grouped`, in input order; its
     * attempts, backoff and verdicts are the whole request's */
    struct http_request *inputs_req; /* the leader's request of several inputs (owned; made on first use) */
    struct http_request *wire;  /* the request of the current attempt: &req, or inputs_req */
    size_t inputs_headers;      /* header lines of build_inputs; authorize's come after */
    struct slot *grouped;       /* leader: the next record of its request; follower: the one after it */
    size_t group_len;           /* leader: the records its request carries, itself included; 0: alone */
    int64_t group_tokens;       /* leader: the estimate of its request, every input's */
    int alone;                  /* a request of several inputs answered it badly: it goes in one of its own */
};

/* What a slot's next attempt spends of the token limits: its own estimate, or its group's. */
static inline int64_t slot_send_tokens(const struct slot *s) { return s->group_len ? s->group_tokens : s->tokens_estimate; }

/* ---- answer_cache.c: the answer cache (cache.c) in front of the calls ---- */

/* A record answered from the cache, waiting for model_poll to report it. */
struct cache_hit {
    uint64_t tag;
    int record_ref;
};

struct answer_cache {
    struct cache *log;         /* NULL when caching is off */
    struct cache_hash base;    /* the key's fixed part: provider, task, output declaration */
    struct buf value;
    struct cache_hit *hits;    /* answered from the cache, not reported yet: [hits_next, hits_len) */
    size_t hits_len, hits_cap, hits_next;
    int64_t sync_due_ms;
    char *error;               /* why the cache stopped storing, or NULL */
};

struct model;

/* Open STATE_DIR/cache/JOB/PROVIDER.MODEL.cache when the cache is on for this run. */
int answer_cache_open(struct model *m, int opts, struct rn_err *err);
/* Answer the record of slot s (its request built) from the cache: 1 when a cached answer
 * validated, its fields are set and it waits for answer_cache_report; 0 when the call must go
 * out (s->key is then its key). */
int answer_cache_lookup(struct model *m, struct slot *s);
/* Store m->reply, which validated, under the slot's key. */
void answer_cache_store(struct model *m, struct slot *s);
/* Report the records answered from the cache through m->done. Returns how many. */
size_t answer_cache_report(struct model *m);
/* fsync what was stored, at most every few seconds. */
void answer_cache_tick(struct model *m, int64_t now);
void answer_cache_close(struct answer_cache *c);

/* ---- batch.c: the provider's batch API for bounded jobs ---- */

struct batch;                  /* one batch: its spool, requests, records, results (batch.c) */
struct batch_retry;            /* a record a batch did not answer, waiting for a live slot */

struct batch_exec {
    int on;
    int64_t max_requests, max_bytes, poll_ms;
    char *window;              /* the completion window asked for */
    int retry_live;
    char *dir;                 /* STATE_DIR/batch/JOB: spools and results */
    struct batch **batches;    /* in the order they were made */
    size_t count, cap;
    struct batch *open;        /* the chunk being spooled, or NULL */
    struct slot scratch;       /* builds each record's call */
    struct provider_batch_result result;
    struct batch_retry *retry_head, *retry_tail;
    size_t waiting;            /* records waiting for a batch's answer */
    size_t retrying;           /* records in the retry queue */
    int dirty;                 /* a batch was made or changed phase since the last save */
    int64_t due_ms;            /* the next time something is due, INT64_MAX: none */
    struct buf line, text;
};

/* Read `batch` (on only for a provider with PROVIDER_BATCH); refused in stream mode. */
int batch_open(struct model *m, int opts, struct rn_err *err);
/* The record at record_ref (position pos) joins a batch: a restored one whose range holds pos,
 * or the open chunk. -1 and err when its call cannot be made (the record is dead-lettered). */
int batch_submit(struct model *m, int record_ref, uint64_t tag, const struct source_pos *pos, struct rn_err *err);
/* Do what is due: seal a chunk that stopped growing, send submit/poll/fetch requests, read
 * results, start live calls for the retry queue. */
void batch_tick(struct model *m, int64_t now);
/* The answer to one of the batches' requests (r->user is &m->batch). */
void batch_answer(struct model *m, struct http_request *r);
int batch_save(struct model *m, json_t *state);
int batch_restore(struct model *m, json_t *state, struct rn_err *err);
void batch_progress(struct model *m, struct buf *out);
void batch_print(struct model *m, FILE *out);
void batch_json(struct model *m, json_t *model);
void batch_close(struct model *m);

/* ---- the engine ---- */

struct model {
    struct job_env *env;
    lua_State *L;
    const struct provider_ops *provider;
    void *provider_self;
    struct provider_setup setup; /* what the provider was opened with */
    char *provider_name, *model_name;
    enum model_task task;
    enum model_task call_task; /* what the provider is asked: embedding for clustering over centroids */
    struct centroids centroids;
    struct buf cluster_name;   /* the nearest centroid of the answer being checked */
    char *system;
    size_t system_len;
    struct prompt *prompt;
    struct output output;
    struct value *values;      /* one per output field, for check_answer */
    struct secret_set secrets; /* redacted from every reason, answer text and job error */
    struct buf redact_scratch;
    struct limits limits;
    struct model_descriptors fds;
    struct http *http;
    struct loop *loop;         /* the job's loop (env->loop), or NULL: model_poll waits on its own */
    struct loop_timer wake;    /* at next_due_ms: a retry, a pause's end, a refill, curl's timer */
    int woken;                 /* the client's sockets or the timer woke the loop since model_poll */

    struct slot *slots;        /* slot_count of them: fds.asked times batch_inputs */
    size_t slot_count;
    int batch_inputs;          /* embedding inputs in one request at most (1: a request per record) */
    const struct model_call **group_calls; /* batch_inputs of them: the calls of the request being built */
    json_t **group_vectors;    /* batch_inputs of them: the vectors of an answer of several inputs */
    size_t heap_records;       /* records waiting in the retry heap, the followers of its leaders counted */
    struct slot *free_list;
    struct slot *ready_head, *ready_tail;
    struct slot **heap;        /* WAITING slots, min-heap by due_ms */
    size_t heap_len;
    size_t occupied;
    int64_t now_ms;            /* the clock, read once per wake-up */
    int64_t paused_until_ms;
    uint64_t rng;
    struct buf fatal;          /* why the job must stop (a FAIL_JOB verdict), empty while it need not */
    struct http_request credentials; /* the provider's refresh request (provider.h) */
    int credentials_running;   /* it is in the HTTP client */
    int credentials_wait;      /* authorize has no credentials yet: sends wait for refreshed */

    model_done_fn done;
    void *done_ctx;
    struct model_reply reply;
    struct buf done_reason, scratch;

    struct answer_cache cache;
    struct stats stats;
    struct quota quota;
    struct breaker breaker;    /* the endpoint's health (breaker.c) */
    int outage;                /* the job stops because the endpoint was unhealthy for limits.outage */
    struct batch_exec batch;
};

/* engine.c, for batch.c: render and build the call of the record at record_ref into slot s
 * (prompt, request, estimate). 0, or -1 and err (redacted). */
int engine_build(struct model *m, struct slot *s, int record_ref, struct rn_err *err);
/* Start a live call for a record a batch did not answer: a fresh call, or (answer not NULL)
 * the correction round after that invalid answer and why it was rejected. 1: started; 0: no
 * slot is free (try again later); -1 and err: the call cannot be built. */
int engine_call(struct model *m, int record_ref, uint64_t tag, const char *answer, const char *why, struct rn_err *err);
/* Report a record the engine is done with (ok, or failed with reason, redacted here). */
void engine_report(struct model *m, uint64_t tag, int record_ref, int ok, struct buf *reason, const char *model_text);
/* The job must stop: `method url` answered what no retry can heal (why: the verdict's). The
 * stop line names them, the status and the provider's message, redacted, and for a 401 or
 * 403 the option that holds the credentials (the provider's first secret option). */
void engine_fatal_answer(struct model *m, const char *method, const char *url, const struct http_response *answer,
                         const char *why);
/* Store a validated answer (m->reply) under key in the answer cache. */
void answer_cache_store_key(struct model *m, const uint8_t key[CACHE_KEY_SIZE]);

/* model_open with this provider instead of the one the declaration names (NULL: that one),
 * for tests of the engine with providers of their own. */
struct model *model_open_provider(struct job_env *env, int decl, const struct provider_ops *provider,
                                  struct rn_err *err);

/* Check a parsed answer against m's output declaration exactly as an answer in flight is
 * checked; when it validates, set the output fields on the record table at registry ref
 * record_ref. 0 on success; -1 with the reason appended to why. reply stays the caller's. */
int model_check_reply(struct model *m, const struct model_reply *reply, int record_ref, struct buf *why);

#define RESPONSE_MAX (64u << 20) /* a longer answer body fails the call */

/* b with the model's secrets replaced (a reason, a message: the URL or the body may hold a key). */
static inline void redact(struct model *m, struct buf *b) { secret_redact_buf(&m->secrets, b, &m->redact_scratch); }

#endif
