/* kafka_source.c: source.kafka, records from Kafka topics (librdkafka consumer).
 *
 * Batch mode assigns every partition explicitly and reads it from its start offset up to the
 * high watermark it had when the job started; stream mode joins the consumer group and
 * follows the topics, draining the pipeline before it gives partitions up in a rebalance.
 * Either way an offset is committed only once the pipeline has advanced past the record
 * (written to every sink, filtered or dead-lettered) and every sink has flushed: a crash
 * replays records, it never loses them. */
#include <errno.h>
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sources/kafka/client.h"
#include "lua/job.h"
#include "formats/format.h"
#include "formats/avro/avro.h"
#include "engine/plugin.h"
#include "core/log.h"
#include "core/metrics.h"

#define METADATA_TIMEOUT_MS 10000
#define EXCERPT_BYTES 1024
#define LAG_INTERVAL_MS 1000

enum start_kind { START_COMMITTED, START_EARLIEST, START_LATEST, START_TIME };

/* What this consumer knows of one partition. */
struct part {
    int owned;          /* assigned to this consumer now */
    uint32_t epoch;     /* bumped at each assignment: records read before it are not committed */
    int done;           /* batch: every offset below end was read */
    int64_t start, end; /* batch: first offset to read and the high watermark at the start */
    int64_t read;       /* offset after the last message returned (progress) */
    int64_t advanced;   /* offset after the last advanced record: what commit writes (-1: none) */
    int64_t committed;  /* the offset last committed (-1: none) */
    int64_t from;       /* the offset this assignment began reading at (-1: nothing read yet) */
    struct metric *lag; /* runnel_kafka_consumer_lag of it (in the job's registry), once assigned */
};

struct topic {
    char *name;
    struct part *parts; /* indexed by partition number */
    int32_t nparts;
};

/* A record returned by next() and not yet advanced; advance() comes in the same order. */
struct returned {
    uint32_t topic;
    int32_t partition;
    uint32_t epoch;
    int64_t offset;
};

struct kafka_source {
    struct kafka_client client; /* first: librdkafka's opaque */
    struct job_env *env;
    rd_kafka_t *rk;
    char *group;
    int streaming;
    const struct format_ops *format;  /* how a message value becomes a record */
    void *codec;                      /* the format's state */
    enum start_kind start;
    int64_t start_ms;
    int metadata;

    struct topic *topics;
    size_t ntopics;
    uint32_t last_topic;              /* the last message's topic: most messages share it */
    size_t parts_left;                /* batch: partitions not done */

    struct returned *fifo;            /* ring of records returned and not yet advanced */
    size_t fifo_cap, fifo_head, fifo_len;

    int closing;
    int revoking;                     /* inside the rebalance callback, giving partitions up */
    int failed;                       /* a rebalance step failed: next() stops the job */
    int64_t lag_due_ms;               /* when the lag gauges are set next (monotonic) */
    struct rn_err fail;
    struct buf scratch;
};

static const struct option_spec kafka_source_options[] = {
    {"brokers", OPT_STRING, 0, NULL, .help = "bootstrap servers: host:port[,host:port...]", .default_note = "$KAFKA_BROKERS"},
    {"topic", OPT_STRING_OR_LIST, 1, NULL, .help = "a topic or a list of topics (stream mode also takes \"^regex\")"},
    {"group", OPT_STRING, 0, NULL,
     .help = "consumer group; required in stream mode; in batch mode: start from its committed offsets and commit"},
    {"start", OPT_INTEGER_OR_STRING, 0, "committed",
     .help = "\"committed\" (earliest when none), \"earliest\", \"latest\" or a timestamp in ms; in stream mode "
             "committed offsets win and start only places partitions the group has none for",
     .choices = OPT_CHOICES("committed", "earliest", "latest"), OPT_AT_LEAST(0)},
    {"format", OPT_ENUM, 0, "json",
     .help = "message value: \"json\" (an object; its members are the fields), \"csv\" (one row, see columns), "
             "\"text\" (field value) or \"avro\" (Confluent's wire format, see registry)",
     .choices = OPT_CHOICES("json", "csv", "text", "avro")},
    {"schema", OPT_ANY, 0, NULL, .help = AVRO_SCHEMA_HELP " to resolve every value to (reader schema)",
     .default_note = "each message's writer schema", .check = avro_check_schema_option},
    {"registry", OPT_NESTED, 0, NULL, .help = AVRO_REGISTRY_HELP ", where writer schemas are fetched by id",
     .fields = avro_registry_options},
    {"columns", OPT_STRING_OR_LIST, 0, NULL, .help = "csv: the column names (required); json: the fields' output order"},
    {"types", OPT_MAP, 0, NULL, .help = "csv: { field = type }: the type of a column", .default_note = "string",
     .value = OPT_VALUE(OPT_ENUM, .choices = OPT_CHOICES("string", "integer", "number", "boolean"))},
    {"metadata", OPT_BOOLEAN, 0, "true", .help = "add the fields _topic, _partition, _offset, _timestamp, _key, _headers"},
    {"properties", OPT_MAP, 0, NULL,
     .help = "librdkafka consumer properties, verbatim ([\"security.protocol\"] = \"SASL_SSL\", ...); "
             "passwords, secrets, tokens and keys are shown as [redacted]",
     .value = OPT_VALUE(OPT_SCALAR, .secret = 1)},
    {NULL},
};

static const char *const metadata_fields[] = {"_topic", "_partition", "_offset", "_timestamp", "_key", "_headers"};

/* ---- partitions ---- */

static uint32_t topic_index(struct kafka_source *s, const char *name)
{
    for (size_t i = 0; i < s->ntopics; i++)
        if (strcmp(s->topics[i].name, name) == 0) return (uint32_t)i;
    s->topics = rn_realloc(s->topics, (s->ntopics + 1) * sizeof *s->topics);
    struct topic *t = &s->topics[s->ntopics];
    memset(t, 0, sizeof *t);
    t->name = rn_strdup(name);
    return (uint32_t)s->ntopics++;
}

/* The state of a partition, created on first use. */
static struct part *part_get(struct kafka_source *s, uint32_t ti, int32_t partition)
{
    struct topic *t = &s->topics[ti];
    if (partition < 0) return NULL;
    if (partition >= t->nparts) {
        int32_t n = partition + 1;
        t->parts = rn_realloc(t->parts, (size_t)n * sizeof *t->parts);
        for (int32_t i = t->nparts; i < n; i++) {
            memset(&t->parts[i], 0, sizeof t->parts[i]);
            t->parts[i].advanced = t->parts[i].committed = t->parts[i].read = t->parts[i].from = -1;
        }
        t->nparts = n;
    }
    return &t->parts[partition];
}

static uint32_t message_topic(struct kafka_source *s, const rd_kafka_message_t *m)
{
    const char *name = rd_kafka_topic_name(m->rkt);
    if (s->last_topic < s->ntopics && strcmp(s->topics[s->last_topic].name, name) == 0) return s->last_topic;
    s->last_topic = topic_index(s, name);
    return s->last_topic;
}

static void fifo_push(struct kafka_source *s, uint32_t ti, int32_t partition, uint32_t epoch, int64_t offset)
{
    if (s->fifo_len == s->fifo_cap) {
        size_t cap = s->fifo_cap ? s->fifo_cap * 2 : 1024;
        struct returned *ring = rn_malloc(cap * sizeof *ring);
        for (size_t i = 0; i < s->fifo_len; i++) ring[i] = s->fifo[(s->fifo_head + i) % s->fifo_cap];
        free(s->fifo);
        s->fifo = ring;
        s->fifo_cap = cap;
        s->fifo_head = 0;
    }
    s->fifo[(s->fifo_head + s->fifo_len) % s->fifo_cap] = (struct returned){ti, partition, epoch, offset};
    s->fifo_len++;
}

/* Batch: a partition has nothing more to read; stop fetching it. */
static void mark_done(struct kafka_source *s, uint32_t ti, int32_t partition, struct part *p)
{
    if (p->done) return;
    p->done = 1;
    s->parts_left--;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, s->topics[ti].name, partition);
    rd_kafka_pause_partitions(s->rk, list);
    rd_kafka_topic_partition_list_destroy(list);
}

/* ---- decoding ---- */

/* Push the record for the message value; -1 with the reason in err when it does not decode
 * (nothing pushed). */
static int decode_value(struct kafka_source *s, lua_State *L, const rd_kafka_message_t *m, struct rn_err *err)
{
    if (!m->payload && !s->format->decodes_no_value) return rn_fail(err, "the message has no value (a tombstone)");
    return s->format->decode(s->codec, L, m->payload, m->payload ? m->len : 0, err);
}

static void push_text(struct kafka_source *s, lua_State *L, const void *data, size_t n, size_t max)
{
    if (n <= max && rn_utf8_valid(data, n, NULL)) { /* the usual case: as it is, no copy */
        lua_pushlstring(L, data, n);
        return;
    }
    buf_clear(&s->scratch);
    buf_put_visible(&s->scratch, data, n, max);
    lua_pushlstring(L, s->scratch.data ? s->scratch.data : "", s->scratch.len);
}

static void add_metadata(struct kafka_source *s, lua_State *L, uint32_t ti, const rd_kafka_message_t *m)
{
    lua_pushstring(L, s->topics[ti].name);
    lua_setfield(L, -2, "_topic");
    lua_pushinteger(L, m->partition);
    lua_setfield(L, -2, "_partition");
    lua_pushinteger(L, m->offset);
    lua_setfield(L, -2, "_offset");
    rd_kafka_timestamp_type_t ts_type;
    int64_t ts = rd_kafka_message_timestamp(m, &ts_type);
    if (ts >= 0) {
        lua_pushinteger(L, ts);
        lua_setfield(L, -2, "_timestamp");
    }
    if (m->key) {
        push_text(s, L, m->key, m->key_len, SIZE_MAX);
        lua_setfield(L, -2, "_key");
    }
    rd_kafka_headers_t *headers;
    if (rd_kafka_message_headers(m, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR && rd_kafka_header_cnt(headers) > 0) {
        lua_createtable(L, 0, (int)rd_kafka_header_cnt(headers));
        const char *name;
        const void *value;
        size_t size;
        for (size_t i = 0; rd_kafka_header_get_all(headers, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; i++) {
            push_text(s, L, name, strlen(name), SIZE_MAX);
            push_text(s, L, value ? value : "", value ? size : 0, SIZE_MAX);
            lua_rawset(L, -3);
        }
        lua_setfield(L, -2, "_headers");
    }
}

/* The description of a message that did not decode, for its dead letter. */
static void push_bad(struct kafka_source *s, lua_State *L, uint32_t ti, const rd_kafka_message_t *m)
{
    lua_createtable(L, 0, 4);
    lua_pushstring(L, s->topics[ti].name);
    lua_setfield(L, -2, "topic");
    if (m->key) {
        push_text(s, L, m->key, m->key_len, EXCERPT_BYTES);
        lua_setfield(L, -2, "key");
    }
    if (m->payload) {
        push_text(s, L, m->payload, m->len, EXCERPT_BYTES);
        lua_setfield(L, -2, "raw");
    }
}

/* ---- reading ---- */

enum handled { HANDLED_SKIP = -1 };

/* An error event from the consumer: a partition's end (batch), or a problem. Returns
 * HANDLED_SKIP to go on, or SRC_ERROR with err. */
static int consumer_event(struct kafka_source *s, const rd_kafka_message_t *m, struct rn_err *err)
{
    const char *topic = m->rkt ? rd_kafka_topic_name(m->rkt) : NULL;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        if (!s->streaming && topic) {
            uint32_t ti = message_topic(s, m);
            struct part *p = part_get(s, ti, m->partition);
            if (p && p->owned && !p->done && m->offset >= p->end) mark_done(s, ti, m->partition, p);
        }
        return HANDLED_SKIP;
    }
    char where[320] = "";
    if (topic && m->partition >= 0) snprintf(where, sizeof where, "topic %s [%d]: ", topic, (int)m->partition);
    else if (topic) snprintf(where, sizeof where, "topic %s: ", topic);
    int fatal = m->err == RD_KAFKA_RESP_ERR__FATAL || s->client.fatal;
    if (!s->streaming && (m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
                          m->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
                          m->err == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED))
        fatal = 1;
    if (fatal) {
        char reason[512];
        if (m->err == RD_KAFKA_RESP_ERR__FATAL || s->client.fatal) rd_kafka_fatal_error(s->rk, reason, sizeof reason);
        else snprintf(reason, sizeof reason, "%s", rd_kafka_message_errstr(m));
        kafka_fail(&s->client, err, "%s%s", where, reason);
        return SRC_ERROR;
    }
    struct rn_err note;
    kafka_fail(&s->client, &note, "%s%s", where, rd_kafka_message_errstr(m));
    int64_t now = rn_now_ms();
    if ((int)m->err != s->client.last_error || now - s->client.last_error_ms > 10000)
        log_warning("%s: %s", s->client.label, note.msg);
    s->client.last_error = m->err;
    s->client.last_error_ms = now;
    return HANDLED_SKIP;
}

/* Turn a message into a record (or a bad-message description). HANDLED_SKIP for messages
 * that are not ours to return (revoked partitions, past a batch end). */
static int handle_message(struct kafka_source *s, const rd_kafka_message_t *m, struct source_pos *pos,
                          struct rn_err *err)
{
    if (m->err) return consumer_event(s, m, err);
    lua_State *L = s->env->L;
    uint32_t ti = message_topic(s, m);
    struct part *p = part_get(s, ti, m->partition);
    if (!p || !p->owned) return HANDLED_SKIP;
    if (!s->streaming && (p->done || m->offset >= p->end)) return HANDLED_SKIP;
    pos->partition = m->partition;
    pos->offset = m->offset;
    pos->line = -1;
    int status = SRC_RECORD;
    int decoded = decode_value(s, L, m, err);
    if (decoded == FORMAT_FATAL) { /* not the message's fault: it is read again by the next run */
        rn_wrap(err, "%s: topic %s [%d] offset %lld", s->client.where, s->topics[ti].name, (int)m->partition,
                (long long)m->offset);
        return SRC_ERROR;
    }
    if (decoded) {
        rn_wrap(err, "topic %s [%d] offset %lld", s->topics[ti].name, (int)m->partition, (long long)m->offset);
        push_bad(s, L, ti, m);
        status = SRC_BAD;
    } else if (s->metadata) {
        add_metadata(s, L, ti, m);
    }
    fifo_push(s, ti, m->partition, p->epoch, m->offset);
    if (p->from < 0) p->from = m->offset;
    p->read = m->offset + 1;
    if (!s->streaming && p->read >= p->end) mark_done(s, ti, m->partition, p);
    return status;
}

/* runnel_kafka_consumer_lag{topic,partition}: the high watermark librdkafka last saw for the
 * partition (cached from fetches: no request to the brokers) minus the next offset this runner
 * reads; NaN while the partition is not assigned here, or before the runner read from it. */
static void update_lag(struct kafka_source *s)
{
    int64_t now = rn_now_ms();
    if (now < s->lag_due_ms || !s->env->metrics) return;
    s->lag_due_ms = now + LAG_INTERVAL_MS;
    for (size_t ti = 0; ti < s->ntopics; ti++)
        for (int32_t i = 0; i < s->topics[ti].nparts; i++) {
            struct part *p = &s->topics[ti].parts[i];
            if (!p->lag && p->owned) {
                char number[16];
                snprintf(number, sizeof number, "%d", (int)i);
                struct metric_label labels[2] = {{"topic", s->topics[ti].name}, {"partition", number}};
                struct rn_err err;
                p->lag = metrics_gauge(s->env->metrics, "runnel_kafka_consumer_lag",
                                       "Messages of the partition after the next one this runner reads (NaN: not "
                                       "assigned here, or nothing read from it yet).", labels, 2, &err);
            }
            if (!p->lag) continue;
            int64_t low, high;
            double lag = NAN;
            if (p->owned && p->read >= 0 &&
                rd_kafka_get_watermark_offsets(s->rk, s->topics[ti].name, i, &low, &high) == RD_KAFKA_RESP_ERR_NO_ERROR &&
                high >= 0)
                lag = high > p->read ? (double)(high - p->read) : 0;
            metric_set(p->lag, lag);
        }
}

static enum source_status ks_next(void *self, struct source_pos *pos, struct rn_err *err)
{
    struct kafka_source *s = self;
    update_lag(s);
    for (;;) {
        if (s->failed) {
            *err = s->fail;
            return SRC_ERROR;
        }
        if (!s->streaming && s->parts_left == 0) return SRC_END;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(s->rk, 0);
        if (!m) {
            if (s->failed) continue;
            if (s->client.fatal) {
                char reason[512];
                rd_kafka_fatal_error(s->rk, reason, sizeof reason);
                kafka_fail(&s->client, err, "%s", reason);
                return SRC_ERROR;
            }
            return SRC_IDLE;
        }
        int status = handle_message(s, m, pos, err);
        rd_kafka_message_destroy(m);
        if (status != HANDLED_SKIP) return (enum source_status)status;
    }
}

static void ks_advance(void *self, const struct source_pos *pos)
{
    struct kafka_source *s = self;
    if (s->fifo_len == 0) return;
    struct returned r = s->fifo[s->fifo_head];
    s->fifo_head = (s->fifo_head + 1) % s->fifo_cap;
    s->fifo_len--;
    if (r.partition != pos->partition || r.offset != pos->offset) {
        log_error("%s: internal error: advanced [%d] offset %lld but expected [%d] offset %lld; "
                        "not committing it", s->client.label, (int)pos->partition, (long long)pos->offset,
                (int)r.partition, (long long)r.offset);
        return;
    }
    struct part *p = part_get(s, r.topic, r.partition);
    if (p->owned && p->epoch == r.epoch) p->advanced = r.offset + 1;
}

static int retriable_commit_error(rd_kafka_resp_err_t e)
{
    switch (e) {
    case RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION:
    case RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID:
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
    case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR__WAIT_COORD:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__STATE:
        return 1;
    default:
        return 0;
    }
}

static int ks_commit(void *self, struct rn_err *err)
{
    struct kafka_source *s = self;
    if (!s->group) return 0;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(8);
    for (size_t ti = 0; ti < s->ntopics; ti++)
        for (int32_t i = 0; i < s->topics[ti].nparts; i++) {
            struct part *p = &s->topics[ti].parts[i];
            if (p->owned && p->advanced >= 0 && p->advanced != p->committed)
                rd_kafka_topic_partition_list_add(list, s->topics[ti].name, i)->offset = p->advanced;
        }
    if (list->cnt == 0) {
        rd_kafka_topic_partition_list_destroy(list);
        return 0;
    }
    rd_kafka_resp_err_t e = rd_kafka_commit(s->rk, list, 0);
    int rc = 0;
    for (int i = 0; i < list->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &list->elems[i];
        rd_kafka_resp_err_t pe = e ? e : tp->err;
        if (!pe) {
            uint32_t ti = topic_index(s, tp->topic);
            part_get(s, ti, tp->partition)->committed = tp->offset;
            continue;
        }
        struct rn_err why;
        kafka_fail(&s->client, &why, "group %s: cannot commit topic %s [%d] offset %lld: %s", s->group, tp->topic,
                   (int)tp->partition, (long long)tp->offset, rd_kafka_err2str(pe));
        if (s->streaming && retriable_commit_error(pe)) {
            log_warning("%s: %s (%s)", s->client.label, why.msg,
                    s->revoking ? "its next owner reads the records since the last commit again"
                                : "retried at the next checkpoint");
        } else if (rc == 0) {
            *err = why;
            rc = -1;
        }
        if (e) break;
    }
    rd_kafka_topic_partition_list_destroy(list);
    return rc;
}

static double ks_progress(void *self)
{
    struct kafka_source *s = self;
    if (s->streaming) return -1;
    double total = 0, done = 0;
    for (size_t ti = 0; ti < s->ntopics; ti++)
        for (int32_t i = 0; i < s->topics[ti].nparts; i++) {
            struct part *p = &s->topics[ti].parts[i];
            if (p->end <= p->start) continue;
            total += (double)(p->end - p->start);
            done += p->done ? (double)(p->end - p->start) : p->read > p->start ? (double)(p->read - p->start) : 0;
        }
    return total > 0 ? done / total : 1;
}

/* ---- group membership (stream mode) ---- */

static void list_parts(struct buf *b, const rd_kafka_topic_partition_list_t *parts)
{
    for (int i = 0; i < parts->cnt && i < 64; i++)
        buf_printf(b, "%s%s [%d]", i ? ", " : "", parts->elems[i].topic, (int)parts->elems[i].partition);
    if (parts->cnt > 64) buf_printf(b, " and %d more", parts->cnt - 64);
    if (parts->cnt == 0) buf_puts(b, "none");
}

static void set_failed(struct kafka_source *s, const struct rn_err *err)
{
    if (s->failed) return;
    s->failed = 1;
    s->fail = *err;
}

/* start = timestamp: place partitions the group has no committed offset for at the first
 * offset at or after the time (the end when there is none). */
static void place_by_time(struct kafka_source *s, rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_topic_partition_list_t *committed = rd_kafka_topic_partition_list_copy(parts);
    rd_kafka_resp_err_t e = rd_kafka_committed(s->rk, committed, METADATA_TIMEOUT_MS);
    rd_kafka_topic_partition_list_t *lookup = rd_kafka_topic_partition_list_new(parts->cnt);
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *c = &committed->elems[i];
        if (e) break; /* failed below: never guess a position that could skip records */
        if (c->err || c->offset < 0) rd_kafka_topic_partition_list_add(lookup, c->topic, c->partition)->offset = s->start_ms;
        else parts->elems[i].offset = c->offset;
    }
    struct rn_err ferr;
    if (e) {
        kafka_fail(&s->client, &ferr, "start = %lld: cannot read the committed offsets: %s", (long long)s->start_ms,
                   rd_kafka_err2str(e));
        set_failed(s, &ferr);
    } else if (lookup->cnt > 0) {
        rd_kafka_resp_err_t te = rd_kafka_offsets_for_times(s->rk, lookup, METADATA_TIMEOUT_MS);
        for (int i = 0; i < lookup->cnt; i++) {
            rd_kafka_topic_partition_t *l = &lookup->elems[i];
            rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(parts, l->topic, l->partition);
            if (!tp) continue;
            if (te || l->err) { /* a failed lookup stops the job rather than skip to the end */
                kafka_fail(&s->client, &ferr, "start = %lld: cannot look up the offset of %s [%d] by time: %s",
                           (long long)s->start_ms, l->topic, (int)l->partition, rd_kafka_err2str(te ? te : l->err));
                set_failed(s, &ferr);
                break;
            }
            tp->offset = l->offset < 0 ? RD_KAFKA_OFFSET_END : l->offset; /* nothing that recent yet */
        }
    }
    rd_kafka_topic_partition_list_destroy(lookup);
    rd_kafka_topic_partition_list_destroy(committed);
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t why, rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct kafka_source *s = opaque;
    int cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    struct buf names;
    buf_init(&names);
    list_parts(&names, parts);
    struct rn_err err;
    if (why == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        if (s->start == START_TIME && !s->closing) place_by_time(s, parts);
        for (int i = 0; i < parts->cnt; i++) {
            struct part *p = part_get(s, topic_index(s, parts->elems[i].topic), parts->elems[i].partition);
            if (!p) continue;
            p->owned = 1;
            p->epoch++;
            p->advanced = p->committed = p->read = p->from = -1;
        }
        rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
        if (cooperative) {
            rd_kafka_error_t *error = rd_kafka_incremental_assign(rk, parts);
            if (error) {
                kafka_fail(&s->client, &err, "group %s: cannot take %s: %s", s->group, names.data, rd_kafka_error_string(error));
                rd_kafka_error_destroy(error);
                set_failed(s, &err);
            }
        } else {
            e = rd_kafka_assign(rk, parts);
        }
        if (e) {
            kafka_fail(&s->client, &err, "group %s: cannot take %s: %s", s->group, names.data, rd_kafka_err2str(e));
            set_failed(s, &err);
        }
        if (!s->closing && parts->cnt > 0) log_info("%s: group %s: assigned %s", s->client.label, s->group, names.data);
    } else {
        int lost = rd_kafka_assignment_lost(rk);
        if (!s->closing && !s->failed && !lost) {
            /* finish everything read so far and commit it before another member takes over */
            s->revoking = 1;
            int rc = s->env->drain(s->env, &err);
            s->revoking = 0;
            if (rc) {
                rn_wrap(&err, "group %s: rebalance: cannot finish the records of %s before giving them up", s->group,
                        names.data);
                set_failed(s, &err);
            }
        }
        if (lost && !s->closing)
            log_warning("%s: group %s: lost %s (session timed out); their records in flight will be "
                            "read again by the new owner", s->client.label, s->group, names.data);
        for (int i = 0; i < parts->cnt; i++) {
            struct part *p = part_get(s, topic_index(s, parts->elems[i].topic), parts->elems[i].partition);
            if (p) p->owned = 0;
        }
        /* A failure here loses nothing (what was read is finished and committed above) and
         * messages of partitions no longer owned are dropped when polled; it is said, not fatal. */
        const char *unassign_error = NULL;
        rd_kafka_error_t *error = NULL;
        if (cooperative) {
            if ((error = rd_kafka_incremental_unassign(rk, parts))) unassign_error = rd_kafka_error_string(error);
        } else {
            rd_kafka_resp_err_t e = rd_kafka_assign(rk, NULL);
            if (e) unassign_error = rd_kafka_err2str(e);
        }
        if (unassign_error && !s->closing) {
            kafka_fail(&s->client, &err, "group %s: giving up %s: %s", s->group, names.data, unassign_error);
            log_error("%s: %s", s->client.label, err.msg);
        }
        if (error) rd_kafka_error_destroy(error);
        if (!s->closing && parts->cnt > 0) log_info("%s: group %s: revoked %s", s->client.label, s->group, names.data);
    }
    buf_free(&names);
}

/* ---- opening ---- */

/* Batch: every partition from its start offset to its high watermark now. */
static int assign_bounded(struct kafka_source *s, const char *const *names, size_t nnames, struct rn_err *err)
{
    rd_kafka_topic_partition_list_t *all = rd_kafka_topic_partition_list_new(16);
    int rc = -1;
    for (size_t i = 0; i < nnames; i++) {
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(s->rk, names[i], NULL);
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t e = rd_kafka_metadata(s->rk, 0, rkt, &md, METADATA_TIMEOUT_MS);
        rd_kafka_topic_destroy(rkt);
        if (e) {
            kafka_fail(&s->client, err, "topic %s: cannot read its metadata from the brokers: %s", names[i], rd_kafka_err2str(e));
            goto done;
        }
        if (md->topic_cnt < 1 || md->topics[0].err || md->topics[0].partition_cnt == 0) {
            kafka_fail(&s->client, err, "topic %s: %s", names[i],
                       md->topic_cnt < 1 || !md->topics[0].err ? "no partitions" : rd_kafka_err2str(md->topics[0].err));
            rd_kafka_metadata_destroy(md);
            goto done;
        }
        for (int p = 0; p < md->topics[0].partition_cnt; p++)
            rd_kafka_topic_partition_list_add(all, names[i], md->topics[0].partitions[p].id);
        rd_kafka_metadata_destroy(md);
    }
    /* where each partition starts */
    if (s->start == START_COMMITTED && s->group) {
        rd_kafka_resp_err_t e = rd_kafka_committed(s->rk, all, METADATA_TIMEOUT_MS);
        if (e) {
            kafka_fail(&s->client, err, "group %s: cannot read its committed offsets: %s", s->group, rd_kafka_err2str(e));
            goto done;
        }
    } else if (s->start == START_TIME) {
        for (int i = 0; i < all->cnt; i++) all->elems[i].offset = s->start_ms;
        rd_kafka_resp_err_t e = rd_kafka_offsets_for_times(s->rk, all, METADATA_TIMEOUT_MS);
        if (e) {
            kafka_fail(&s->client, err, "cannot look up the offsets for time %lld: %s", (long long)s->start_ms, rd_kafka_err2str(e));
            goto done;
        }
    } else {
        for (int i = 0; i < all->cnt; i++) all->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
    }
    rd_kafka_topic_partition_list_t *assign = rd_kafka_topic_partition_list_new(all->cnt);
    for (int i = 0; i < all->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &all->elems[i];
        int64_t low, high;
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(s->rk, tp->topic, tp->partition, &low, &high,
                                                                 METADATA_TIMEOUT_MS);
        if (e || tp->err) {
            kafka_fail(&s->client, err, "topic %s [%d]: cannot read its offsets: %s", tp->topic, (int)tp->partition,
                       rd_kafka_err2str(e ? e : tp->err));
            rd_kafka_topic_partition_list_destroy(assign);
            goto done;
        }
        int64_t start = s->start == START_LATEST ? high : s->start == START_TIME && tp->offset < 0 ? high : tp->offset;
        if (start < low) start = low; /* nothing committed, or the committed offset was deleted by retention */
        struct part *p = part_get(s, topic_index(s, tp->topic), tp->partition);
        p->owned = 1;
        p->epoch = 1;
        p->start = p->read = p->from = start;
        p->end = high;
        if (start >= high) {
            p->done = 1;
            continue;
        }
        rd_kafka_topic_partition_list_add(assign, tp->topic, tp->partition)->offset = start;
        s->parts_left++;
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(s->rk, assign);
    rd_kafka_topic_partition_list_destroy(assign);
    if (e) {
        kafka_fail(&s->client, err, "cannot assign the partitions: %s", rd_kafka_err2str(e));
        goto done;
    }
    rc = 0;
done:
    rd_kafka_topic_partition_list_destroy(all);
    return rc;
}

static void ks_close(void *self);

static void *ks_open(struct job_env *env, int opts, struct rn_err *err)
{
    lua_State *L = env->L;
    struct kafka_source *s = rn_calloc(1, sizeof *s);
    s->env = env;
    s->streaming = env->streaming;
    buf_init(&s->scratch);
    kafka_client_init(&s->client, "source.kafka", L, opts);
    const char *where = s->client.where;
    char errstr[512];
    rd_kafka_conf_t *conf = NULL;
    const char **names = NULL;
    size_t nnames = 0;

    /* one of the option's choices (checked); a choice without a row in formats/format.c is named */
    s->format = format_lookup(opt_string(L, opts, "format", "json"), FORMAT_DECODE, where, "source.kafka", err);
    if (!s->format) goto fail;
    s->metadata = opt_boolean(L, opts, "metadata", 1);
    const char *group = opt_string(L, opts, "group", NULL);
    if (group && !*group) group = NULL;
    if (group) s->group = rn_strdup(group);
    if (s->streaming && !s->group) {
        rn_fail(err, "%s: source.kafka: stream mode needs a consumer group: group = \"%s\" (runner processes with the "
                     "same group share the partitions)", where, env->job_name ? env->job_name : "my-job");
        goto fail;
    }
    s->start = START_COMMITTED;
    if (opt_push(L, opts, "start")) { /* a timestamp >= 0 (a --set param's digits too) or a choice: checked */
        if (lua_isinteger(L, -1)) {
            s->start = START_TIME;
            s->start_ms = lua_tointeger(L, -1);
        } else {
            const char *v = lua_tostring(L, -1);
            s->start = !strcmp(v, "earliest") ? START_EARLIEST : !strcmp(v, "latest") ? START_LATEST : START_COMMITTED;
        }
        lua_pop(L, 1);
    }
    /* the format adds its fields to the field order: declared columns, or the value */
    struct format_args format_args = {env, opts, "source.kafka", where,
                                      s->metadata ? (int)(sizeof metadata_fields / sizeof *metadata_fields) : 0};
    s->codec = s->format->open(&format_args, FORMAT_DECODE, err);
    if (!s->codec) goto fail;

    /* the topics */
    lua_getfield(L, opts, "topic");
    if (lua_type(L, -1) == LUA_TSTRING) {
        names = rn_calloc(1, sizeof *names);
        names[nnames++] = lua_tostring(L, -1);
    } else {
        size_t n = (size_t)luaL_len(L, -1);
        names = rn_calloc(n, sizeof *names);
        for (size_t i = 0; i < n; i++) {
            lua_geti(L, -1, (lua_Integer)i + 1);
            names[nnames++] = lua_tostring(L, -1);
            lua_pop(L, 1); /* the option table keeps the string */
        }
    }
    lua_pop(L, 1);
    for (size_t i = 0; i < nnames; i++) {
        if (!*names[i]) {
            rn_fail(err, "%s: source.kafka: topic: an empty topic name", where);
            goto fail;
        }
        if (names[i][0] == '^' && !s->streaming) {
            rn_fail(err, "%s: source.kafka: topic '%s': a pattern subscription needs --mode stream", where, names[i]);
            goto fail;
        }
        if (names[i][0] != '^') topic_index(s, names[i]);
    }

    /* the consumer */
    const char *reset = s->start == START_LATEST ? "latest" : "earliest";
    /* librdkafka 2.0 stops fetching once queued.min.messages (100,000 by default) wait in the
     * consumer's queue, and looks again only when its broker thread next wakes, up to a second
     * later, long after the queue ran dry: a stall every 100,000 records. The queue is bounded
     * by its bytes instead (queued.max.messages.kbytes, 64 MB: about a second of records). */
    const struct kafka_setting defaults[] = {{"client.id", "runnel"}, {"queued.min.messages", "1000000"}, {NULL, NULL}};
    struct kafka_setting enforced[] = {
        {"enable.auto.commit", "false"},        /* commits happen after the sinks flush */
        {"enable.auto.offset.store", "false"},
        {"auto.offset.reset", reset},           /* from `start` */
        {"enable.partition.eof", s->streaming ? "false" : "true"},
        {"group.id", s->group},
        {NULL, NULL},
    };
    /* librdkafka 2.0 refuses assign() without a group.id; a batch read without `group` gets a
     * private one that it never commits to */
    char private_group[300];
    snprintf(private_group, sizeof private_group, "runnel.uncommitted.%s", env->job_name ? env->job_name : "job");
    if (!s->group) enforced[4].value = private_group;
    conf = kafka_conf_new(&s->client, L, opts, defaults, enforced, err);
    if (!conf) goto fail;
    if (s->streaming) rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    s->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (!s->rk) {
        kafka_fail(&s->client, err, "%s: source.kafka: cannot create the consumer: %s", where, errstr);
        goto fail; /* conf still ours */
    }
    conf = NULL; /* owned by rk now */
    rd_kafka_poll_set_consumer(s->rk);
    if (kafka_client_wake_on(&s->client, rd_kafka_queue_get_consumer(s->rk), env->loop, err)) goto fail;

    if (s->streaming) {
        rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new((int)nnames);
        for (size_t i = 0; i < nnames; i++) rd_kafka_topic_partition_list_add(subs, names[i], RD_KAFKA_PARTITION_UA);
        rd_kafka_resp_err_t e = rd_kafka_subscribe(s->rk, subs);
        rd_kafka_topic_partition_list_destroy(subs);
        if (e) {
            kafka_fail(&s->client, err, "%s: source.kafka: cannot subscribe to the topics: %s", where, rd_kafka_err2str(e));
            goto fail;
        }
    } else if (assign_bounded(s, names, nnames, err)) {
        rn_wrap(err, "%s: source.kafka", where);
        goto fail;
    }

    /* field order: the format's fields (above), then the metadata */
    if (s->metadata)
        for (size_t i = 0; i < sizeof metadata_fields / sizeof metadata_fields[0]; i++) fieldorder_add(env, metadata_fields[i]);
    free(names);
    return s;
fail:
    if (conf) rd_kafka_conf_destroy(conf);
    free(names);
    ks_close(s);
    return NULL;
}

static void ks_close(void *self)
{
    struct kafka_source *s = self;
    if (!s) return;
    s->closing = 1;
    kafka_client_wake_off(&s->client);
    if (s->rk) {
        rd_kafka_consumer_close(s->rk);
        rd_kafka_destroy(s->rk);
    }
    for (size_t i = 0; i < s->ntopics; i++) {
        free(s->topics[i].name);
        free(s->topics[i].parts);
    }
    free(s->topics);
    if (s->codec) s->format->close(s->codec);
    free(s->fifo);
    buf_free(&s->scratch);
    free(s->group);
    kafka_client_free(&s->client);
    free(s);
}

/* Every owned partition read past what was committed (from where this assignment began when
 * nothing was): "partition 0 offset 12" names the last committed message. */
static int ks_uncommitted(void *self, struct buf *out, int most)
{
    struct kafka_source *s = self;
    if (!s->group) return 0; /* nothing is ever committed: the pipeline says so */
    int named = 0, more = 0;
    for (size_t ti = 0; ti < s->ntopics; ti++)
        for (int32_t i = 0; i < s->topics[ti].nparts; i++) {
            const struct part *p = &s->topics[ti].parts[i];
            int64_t base = p->committed >= 0 ? p->committed : p->from;
            if (!p->owned || p->from < 0 || p->read <= base) continue;
            if (named == most) {
                more++;
                continue;
            }
            if (named++) buf_puts(out, ", ");
            if (s->ntopics > 1) buf_printf(out, "topic %s ", s->topics[ti].name);
            if (base > 0) buf_printf(out, "partition %d offset %lld", (int)i, (long long)(base - 1));
            else buf_printf(out, "partition %d (none of it)", (int)i);
        }
    if (more) buf_printf(out, " and %d more partition%s", more, more == 1 ? "" : "s");
    return named;
}

const struct source_ops kafka_source = {
    .version = SOURCE_INTERFACE_VERSION,
    .name = "kafka",
    .summary = "records from Kafka topics: batch reads up to the end offsets at start, stream follows a consumer group",
    .options = kafka_source_options,
    .open = ks_open,
    .next = ks_next,
    .advance = ks_advance,
    .commit = ks_commit,
    .uncommitted = ks_uncommitted,
    .progress = ks_progress,
    .close = ks_close,
};
