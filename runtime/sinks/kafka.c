/* kafka_sink.c: sink.kafka, every record as one message to a Kafka topic (librdkafka producer).
 *
 * write() only queues the message; its delivery report acknowledges it, and poll() passes
 * the acknowledgements on (acknowledged-through the oldest message still unanswered);
 * flush() waits until every queued message has its report. What goes wrong is one of two:
 * - the record is at fault: too large for message.max.bytes or for the broker, or refused
 *   by the broker's validation (MSG_SIZE_TOO_LARGE, INVALID_MSG, INVALID_MSG_SIZE,
 *   INVALID_RECORD, INVALID_TIMESTAMP), or a value the CSV format or the key cannot hold:
 *   the record is rejected and dead-lettered, and the job goes on. The broker answers for a
 *   whole batch, so every message of a refused batch is rejected with the broker's reason;
 * - brokers down is an outage, not a bad record: the messages stay queued (librdkafka retries
 *   them), poll() reports sink_down, and the pipeline holds the source back; the job stops
 *   after limits.outage (plugin.h), committing nothing past the first undelivered record;
 * - anything else (a message.timeout.ms set in properties and passed, authorization, an
 *   unknown topic, a fatal producer error): poll/flush fail, and the job stops before the
 *   source commits past the first undelivered record, so a rerun once the cluster is back
 *   writes it.
 * Producer defaults, tuned for throughput and safety (any of them can be overridden in
 * `properties`): enable.idempotence=true, acks=all (no duplicates or reordering from
 * retries), linger.ms=5, batch.num.messages=10000, batch.size=1000000 (1 MB batches),
 * compression.type=lz4, message.timeout.ms=0 (no message times out: the outage rule decides). */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/format.h"
#include "formats/avro/avro.h"
#include "formats/json.h"
#include "sources/kafka/client.h"
#include "lua/job.h"
#include "engine/plugin.h"
#include "sinks/ack_ring.h"

#define FLUSH_MARGIN_MS 10000

_Static_assert(sizeof(void *) >= sizeof(uint64_t), "a message's opaque pointer carries its ticket");

struct kafka_sink {
    struct kafka_client client; /* first: librdkafka's opaque */
    struct job_env *env;
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    char *topic;
    char *key_field;
    const struct format_ops *format; /* how a record becomes the message value */
    void *codec;
    int value_is_line;               /* json: the value is the pipeline's JSON line, as it is */
    rd_kafka_headers_t *headers;  /* static headers, copied into every message */
    int64_t flush_timeout_ms;     /* message.timeout.ms plus a margin */
    struct buf value, key;
    struct ack_ring acks;         /* messages queued and not yet reported to the pipeline; a
                                   * message's opaque carries its ticket */
    uint64_t failures;
    int failed;                   /* a delivery failed for good */
    struct rn_err fail;           /* the first failure */
};

static const struct option_spec kafka_sink_options[] = {
    {"brokers", OPT_STRING, 0, NULL, .help = "bootstrap servers: host:port[,host:port...]", .default_note = "$KAFKA_BROKERS"},
    {"topic", OPT_STRING, 1, NULL, .help = "the topic to write to"},
    {"key", OPT_STRING, 0, NULL, .help = "the field whose value is the message key (none: no key)"},
    {"format", OPT_ENUM, 0, "json",
     .help = "message value: \"json\" (the record as a JSON object), \"csv\" (one row, see columns) or \"avro\" "
             "(Confluent's wire format: schema, registry)",
     .choices = OPT_CHOICES("json", "csv", "avro")},
    {"schema", OPT_ANY, 0, NULL, .help = AVRO_SCHEMA_HELP " (required with avro)", .check = avro_check_schema_option},
    {"key_schema", OPT_ANY, 0, NULL,
     .help = "avro: the key's schema (a file, its text, e.g. '\"string\"', or a table): the key field's value is "
             "written in the wire format too, its schema registered under <topic>-key",
     .default_note = "the key as text", .check = avro_check_schema_option},
    {"registry", OPT_NESTED, 0, NULL, .help = AVRO_REGISTRY_HELP ", where the schema is registered",
     .fields = avro_registry_options},
    {"columns", OPT_STRING_OR_LIST, 0, NULL, .help = "csv: the fields to write, in order (required)"},
    {"headers", OPT_MAP, 0, NULL, .help = "{ name = \"value\", ... }: headers added to every message",
     .value = OPT_VALUE(OPT_SCALAR)},
    {"properties", OPT_MAP, 0, NULL,
     .help = "librdkafka producer properties, verbatim; defaults: enable.idempotence=true, acks=all, linger.ms=5, "
             "batch.num.messages=10000, batch.size=1000000, compression.type=lz4, message.timeout.ms=0 (never: an outage stops the job after limits.outage); "
             "passwords, secrets, tokens and keys are shown as [redacted]",
     .value = OPT_VALUE(OPT_SCALAR, .secret = 1)},
    {NULL},
};

static const struct kafka_setting producer_defaults[] = {
    {"client.id", "runnel"},
    {"enable.idempotence", "true"},
    {"acks", "all"},
    {"linger.ms", "5"},
    {"batch.num.messages", "10000"},
    {"batch.size", "1000000"},
    {"compression.type", "lz4"},
    {"message.timeout.ms", "0"},
    {NULL, NULL},
};

/* Errors that say the record itself will never be taken (see the top of the file). */
static int record_at_fault(rd_kafka_resp_err_t e)
{
    switch (e) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP: return 1;
    default: return 0;
    }
}

/* "topic T [P] (key K)": where a message went, for messages. */
static void describe(struct kafka_sink *s, const rd_kafka_message_t *m, struct buf *out)
{
    buf_printf(out, "topic %s", s->topic);
    if (m->partition >= 0) buf_printf(out, " [%d]", (int)m->partition);
    else buf_puts(out, " (no partition: the topic's metadata never arrived)");
    if (m->key) {
        buf_puts(out, " (key ");
        buf_put_visible(out, m->key, m->key_len, 120);
        buf_putc(out, ')');
    }
}

/* Delivery reports, served by rd_kafka_poll/flush on the job's thread. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    struct kafka_sink *s = opaque;
    uint64_t ticket = (uint64_t)(uintptr_t)m->_private;
    struct ack_entry *o = ack_ring_find(&s->acks, ticket);
    if (!m->err) {
        ack_ring_settle(&s->acks, ticket, ACK_DONE, NULL);
        s->client.brokers_down = 0; /* a broker answers again */
        return;
    }
    struct buf where;
    buf_init(&where);
    describe(s, m, &where);
    if (o && record_at_fault(m->err)) {
        struct buf why;
        buf_init(&why);
        buf_printf(&why, "%s: the broker refused the message of %zu bytes: %s", where.data, m->len,
                   rd_kafka_err2str(m->err));
        ack_ring_settle(&s->acks, ticket, ACK_REJECTED, rn_strdup(why.data));
        buf_free(&why);
        buf_free(&where);
        return;
    }
    s->failures++;
    if (!s->failed) {
        s->failed = 1;
        kafka_fail(&s->client, &s->fail, "%s: delivery failed: %s", where.data, rd_kafka_err2str(m->err));
    }
    buf_free(&where);
}

/* A delivery failed for good, or the producer hit a fatal error: fill err. */
static int check_failed(struct kafka_sink *s, struct rn_err *err)
{
    if (s->client.fatal && !s->failed) {
        char reason[512];
        rd_kafka_fatal_error(s->rk, reason, sizeof reason);
        s->failed = 1;
        kafka_fail(&s->client, &s->fail, "topic %s: the producer failed: %s", s->topic, reason);
    }
    if (!s->failed) return 0;
    *err = s->fail;
    if (s->failures > 1)
        snprintf(err->msg + strlen(err->msg), sizeof err->msg - strlen(err->msg), " (and %llu more undelivered)",
                 (unsigned long long)(s->failures - 1));
    return -1;
}

/* The key of the record at rec into s->key; returns 0 when the record has no key. */
static int record_key(struct kafka_sink *s, lua_State *L, int rec, struct rn_err *err)
{
    buf_clear(&s->key);
    lua_getfield(L, rec, s->key_field);
    int has = 1;
    if (s->format->encode_key && !lua_isnil(L, -1)) { /* a format that writes keys too (avro's key_schema) */
        int rc = s->format->encode_key(s->codec, L, lua_gettop(L), &s->key, err);
        if (rc <= 0) {
            lua_pop(L, 1);
            return rc < 0 ? rn_wrap(err, "topic %s: key field '%s'", s->topic, s->key_field) : 1;
        }
    }
    switch (lua_type(L, -1)) {
    case LUA_TNIL: has = 0; break;
    case LUA_TBOOLEAN: buf_puts(&s->key, lua_toboolean(L, -1) ? "true" : "false"); break;
    case LUA_TSTRING:
    case LUA_TNUMBER: {
        size_t n;
        const char *v = lua_tolstring(L, -1, &n);
        buf_put(&s->key, v, n);
        break;
    }
    default:
        if (json_encode(L, -1, LUA_NOREF, &s->key, err)) {
            lua_pop(L, 1);
            return rn_wrap(err, "topic %s: key field '%s'", s->topic, s->key_field);
        }
    }
    lua_pop(L, 1);
    return has;
}

static int ksink_write(void *self, uint64_t seq, struct sink_record *record, struct rn_err *err)
{
    struct kafka_sink *s = self;
    lua_State *L = s->env->L;
    int rec = sink_record_table(record);
    if (check_failed(s, err)) return SINK_FAILED;
    ack_ring_given(&s->acks, seq);
    const char *value;
    size_t value_len;
    if (!s->value_is_line) {
        buf_clear(&s->value);
        if (s->format->encode(s->codec, L, rec, &s->value, err)) {
            rn_wrap(err, "topic %s", s->topic);
            return SINK_REJECTED;
        }
        value = s->value.data ? s->value.data : "";
        value_len = s->value.len;
    } else if (!(value = sink_record_json(record, &value_len, err))) {
        rn_wrap(err, "topic %s", s->topic);
        return SINK_REJECTED;
    }
    int has_key = 0;
    if (s->key_field && (has_key = record_key(s, L, rec, err)) < 0) return SINK_REJECTED;
    void *opaque = (void *)(uintptr_t)ack_ring_next_ticket(&s->acks); /* its ticket once queued */
    /* the message takes the copy when it is queued; until then it stays ours */
    rd_kafka_headers_t *headers = s->headers ? rd_kafka_headers_copy(s->headers) : NULL;
    for (;;) {
        rd_kafka_resp_err_t e;
        if (headers)
            e = rd_kafka_producev(s->rk, RD_KAFKA_V_RKT(s->rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_KEY((has_key ? s->key.data : NULL), has_key ? s->key.len : 0),
                                  RD_KAFKA_V_VALUE((void *)value, value_len), RD_KAFKA_V_HEADERS(headers),
                                  RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
        else
            e = rd_kafka_producev(s->rk, RD_KAFKA_V_RKT(s->rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_KEY((has_key ? s->key.data : NULL), has_key ? s->key.len : 0),
                                  RD_KAFKA_V_VALUE((void *)value, value_len), RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
        if (!e) {
            ack_ring_push(&s->acks, seq); /* the ticket in its opaque */
            return SINK_ACCEPTED;
        }
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            if (headers) rd_kafka_headers_destroy(headers);
            if (record_at_fault(e)) { /* larger than message.max.bytes: this record will never go */
                rn_fail(err, "topic %s: a message of %zu bytes: %s", s->topic, value_len, rd_kafka_err2str(e));
                return SINK_REJECTED;
            }
            return kafka_fail(&s->client, err, "topic %s: cannot queue a message of %zu bytes: %s", s->topic, value_len,
                              rd_kafka_err2str(e));
        }
        /* the local queue is full: serve delivery reports until there is room; never drop */
        rd_kafka_poll(s->rk, 100);
        if (check_failed(s, err)) {
            if (headers) rd_kafka_headers_destroy(headers);
            return SINK_FAILED;
        }
    }
}

/* Pass on what the delivery reports said, in seq order: rejections, then
 * acknowledged-through the oldest message still waiting for its report. */
static int ksink_poll(void *self, struct sink_report *report, struct rn_err *err)
{
    struct kafka_sink *s = self;
    rd_kafka_poll(s->rk, 0);
    if (check_failed(s, err)) return SINK_FAILED;
    ack_ring_report(&s->acks, report);
    /* brokers down is an outage (plugin.h): the messages stay queued, librdkafka retries them,
     * and the pipeline holds the source back until limits.outage. Down only while messages
     * wait: a delivery clears the flag, and with none waiting there is nothing to wait on */
    if (s->client.brokers_down && s->acks.len > 0) sink_down(report, "all brokers down");
    else sink_up(report);
    return 0;
}

static int ksink_flush(void *self, struct rn_err *err)
{
    struct kafka_sink *s = self;
    /* no message.timeout.ms: the flush waits out an outage as long as the job does */
    int64_t timeout = s->flush_timeout_ms ? s->flush_timeout_ms : s->env->outage_ms > 0 ? s->env->outage_ms : 60000;
    int64_t deadline = rn_now_ms() + timeout;
    while (rd_kafka_outq_len(s->rk) > 0 && !s->failed && !s->client.fatal) {
        int64_t left = deadline - rn_now_ms();
        if (left <= 0) break;
        rd_kafka_flush(s->rk, left > 200 ? 200 : (int)left);
    }
    rd_kafka_poll(s->rk, 0);
    if (check_failed(s, err)) return -1;
    int waiting = rd_kafka_outq_len(s->rk);
    if (waiting > 0)
        return rn_fail(err, "topic %s: %d messages still unacknowledged after %lld ms%s", s->topic, waiting,
                       (long long)timeout, s->client.brokers_down ? " (all brokers down)" : "");
    return 0;
}

static void ksink_close(void *self);

static void *ksink_open(struct job_env *env, int opts, struct rn_err *err)
{
    lua_State *L = env->L;
    struct kafka_sink *s = rn_calloc(1, sizeof *s);
    s->env = env;
    buf_init(&s->value);
    buf_init(&s->key);
    kafka_client_init(&s->client, "sink.kafka", L, opts);
    const char *where = s->client.where;
    rd_kafka_conf_t *conf = NULL;
    char errstr[512];

    s->topic = rn_strdup(opt_string(L, opts, "topic", ""));
    if (!*s->topic) {
        rn_fail(err, "%s: sink.kafka: topic is empty", where);
        goto fail;
    }
    const char *key = opt_string(L, opts, "key", NULL);
    if (key) s->key_field = rn_strdup(key);
    /* one of the option's choices (checked); a choice without a row in formats/format.c is named */
    s->format = format_lookup(opt_string(L, opts, "format", "json"), FORMAT_ENCODE, where, "sink.kafka", err);
    if (!s->format) goto fail;
    struct format_args format_args = {env, opts, "sink.kafka", where, 0};
    s->codec = s->format->open(&format_args, FORMAT_ENCODE, err);
    if (!s->codec) goto fail;
    /* the pipeline's line is what the json format would write: the record in the job's field
     * order; it is used as it is rather than encoded a second time */
    s->value_is_line = strcmp(s->format->name, "json") == 0;
    if (opt_push(L, opts, "headers")) {
        int tbl = lua_gettop(L);
        s->headers = rd_kafka_headers_new(8);
        lua_pushnil(L);
        while (lua_next(L, tbl)) { /* names to strings, numbers or booleans: checked */
            size_t n;
            const char *v = luaL_tolstring(L, -1, &n);
            rd_kafka_header_add(s->headers, lua_tostring(L, -3), -1, v, (ssize_t)n);
            lua_pop(L, 2);
        }
        lua_pop(L, 1);
    }

    conf = kafka_conf_new(&s->client, L, opts, producer_defaults, NULL, err);
    if (!conf) goto fail;
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    char timeout[32];
    size_t timeout_len = sizeof timeout;
    s->flush_timeout_ms = 60000;
    if (rd_kafka_conf_get(conf, "message.timeout.ms", timeout, &timeout_len) == RD_KAFKA_CONF_OK)
        s->flush_timeout_ms = atoll(timeout);
    if (s->flush_timeout_ms <= 0) s->flush_timeout_ms = 0; /* 0: librdkafka never times a message out */
    else s->flush_timeout_ms += FLUSH_MARGIN_MS;
    s->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!s->rk) {
        kafka_fail(&s->client, err, "%s: sink.kafka: cannot create the producer: %s", where, errstr);
        goto fail;
    }
    conf = NULL;
    if (kafka_client_wake_on(&s->client, rd_kafka_queue_get_main(s->rk), env->loop, err)) goto fail; /* delivery reports */
    s->rkt = rd_kafka_topic_new(s->rk, s->topic, NULL);
    if (!s->rkt) {
        rn_fail(err, "%s: sink.kafka: topic %s: %s", where, s->topic, rd_kafka_err2str(rd_kafka_last_error()));
        goto fail;
    }
    return s;
fail:
    if (conf) rd_kafka_conf_destroy(conf);
    ksink_close(s);
    return NULL;
}

static void ksink_close(void *self)
{
    struct kafka_sink *s = self;
    if (!s) return;
    kafka_client_wake_off(&s->client);
    if (s->rk) {
        /* normally everything is flushed by now; after a failure, what is left is dropped: the
         * source did not commit past it, so a rerun writes it again */
        rd_kafka_purge(s->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(s->rk, 1000);
        if (s->rkt) rd_kafka_topic_destroy(s->rkt);
        rd_kafka_destroy(s->rk);
    }
    if (s->headers) rd_kafka_headers_destroy(s->headers);
    ack_ring_free(&s->acks);
    if (s->codec) s->format->close(s->codec);
    free(s->topic);
    free(s->key_field);
    buf_free(&s->value);
    buf_free(&s->key);
    kafka_client_free(&s->client);
    free(s);
}

const struct sink_ops kafka_sink = {
    .version = SINK_INTERFACE_VERSION,
    .name = "kafka",
    .summary = "messages to a Kafka topic (idempotent producer; acknowledged before the source commits)",
    .options = kafka_sink_options,
    .capabilities = SINK_WANTS_JSON | SINK_ASYNC_ACKS,
    .open = ksink_open,
    .write = ksink_write,
    .poll = ksink_poll,
    .flush = ksink_flush,
    .close = ksink_close,
};
