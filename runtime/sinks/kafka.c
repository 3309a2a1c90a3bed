/* kafka_sink.c: sink.kafka, every record as one message to a Kafka topic (librdkafka producer).
 *
 * write() only queues the message; delivery reports are served by poll() and flush() waits
 * until every queued message is acknowledged by the brokers. A delivery that fails for good
 * makes poll/flush fail, so the job stops before the source commits past that record.
 * Producer defaults, tuned for throughput and safety (any of them can be overridden in
 * `properties`): enable.idempotence=true, acks=all (no duplicates or reordering from
 * retries), linger.ms=5, batch.num.messages=10000, batch.size=1000000 (1 MB batches),
 * compression.type=lz4, message.timeout.ms=60000 (a message undelivered after a minute fails
 * the job instead of stalling it). */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/csv.h"
#include "core/json.h"
#include "sources/kafka/client.h"
#include "lua/job.h"
#include "engine/plugin.h"

#define FLUSH_MARGIN_MS 10000

struct kafka_sink {
    struct kafka_client client; /* first: librdkafka's opaque */
    struct job_env *env;
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    char *topic;
    char *key_field;
    int csv;
    char **columns;
    size_t ncolumns;
    rd_kafka_headers_t *headers;  /* static headers, copied into every message */
    int64_t flush_timeout_ms;     /* message.timeout.ms plus a margin */
    struct buf value, key, scratch;
    uint64_t failures;
    int failed;                   /* a delivery failed for good */
    struct rn_err fail;           /* the first failure */
};

static const struct option_spec kafka_sink_options[] = {
    {"brokers", OPT_STRING, 0, NULL, .help = "bootstrap servers: host:port[,host:port...]", .default_note = "$KAFKA_BROKERS"},
    {"topic", OPT_STRING, 1, NULL, .help = "the topic to write to"},
    {"key", OPT_STRING, 0, NULL, .help = "the field whose value is the message key (none: no key)"},
    {"format", OPT_ENUM, 0, "json",
     .help = "message value: \"json\" (the record as a JSON object) or \"csv\" (one row, see columns)",
     .choices = OPT_CHOICES("json", "csv")},
    {"columns", OPT_STRING_OR_LIST, 0, NULL, .help = "csv: the fields to write, in order (required)"},
    {"headers", OPT_MAP, 0, NULL, .help = "{ name = \"value\", ... }: headers added to every message",
     .value = OPT_VALUE(OPT_SCALAR)},
    {"properties", OPT_MAP, 0, NULL,
     .help = "librdkafka producer properties, verbatim; defaults: enable.idempotence=true, acks=all, linger.ms=5, "
             "batch.num.messages=10000, batch.size=1000000, compression.type=lz4, message.timeout.ms=60000; "
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
    {"message.timeout.ms", "60000"},
    {NULL, NULL},
};

/* Delivery reports, served by rd_kafka_poll/flush on the job's thread. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    struct kafka_sink *s = opaque;
    if (!m->err) return;
    s->failures++;
    if (s->failed) return;
    s->failed = 1;
    struct buf key;
    buf_init(&key);
    if (m->key) buf_put_visible(&key, m->key, m->key_len, 120);
    char partition[64] = " (no partition: the topic's metadata never arrived)";
    if (m->partition >= 0) snprintf(partition, sizeof partition, " [%d]", (int)m->partition);
    kafka_fail(&s->client, &s->fail, "topic %s%s: delivery failed%s%s%s: %s", s->topic, partition,
               m->key ? " (key " : "", m->key ? key.data : "", m->key ? ")" : "", rd_kafka_err2str(m->err));
    buf_free(&key);
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

static int ksink_write(void *self, int rec, const char *json, size_t json_len, struct rn_err *err)
{
    struct kafka_sink *s = self;
    lua_State *L = s->env->L;
    rec = lua_absindex(L, rec);
    if (check_failed(s, err)) return -1;
    const char *value = json;
    size_t value_len = json_len;
    if (s->csv) {
        buf_clear(&s->value);
        for (size_t i = 0; i < s->ncolumns; i++) {
            if (i) buf_putc(&s->value, ',');
            lua_getfield(L, rec, s->columns[i]);
            int rc = csv_put_value(&s->value, L, -1, ',', &s->scratch, err);
            lua_pop(L, 1);
            if (rc) return rn_wrap(err, "topic %s: column %s", s->topic, s->columns[i]);
        }
        value = s->value.data ? s->value.data : "";
        value_len = s->value.len;
    }
    int has_key = 0;
    if (s->key_field && (has_key = record_key(s, L, rec, err)) < 0) return -1;
    /* the message takes the copy when it is queued; until then it stays ours */
    rd_kafka_headers_t *headers = s->headers ? rd_kafka_headers_copy(s->headers) : NULL;
    for (;;) {
        rd_kafka_resp_err_t e;
        if (headers)
            e = rd_kafka_producev(s->rk, RD_KAFKA_V_RKT(s->rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_KEY((has_key ? s->key.data : NULL), has_key ? s->key.len : 0),
                                  RD_KAFKA_V_VALUE((void *)value, value_len), RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_END);
        else
            e = rd_kafka_producev(s->rk, RD_KAFKA_V_RKT(s->rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_KEY((has_key ? s->key.data : NULL), has_key ? s->key.len : 0),
                                  RD_KAFKA_V_VALUE((void *)value, value_len), RD_KAFKA_V_END);
        if (!e) return 0;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            if (headers) rd_kafka_headers_destroy(headers);
            return kafka_fail(&s->client, err, "topic %s: cannot queue a message of %zu bytes: %s", s->topic, value_len,
                              rd_kafka_err2str(e));
        }
        /* the local queue is full: serve delivery reports until there is room; never drop */
        rd_kafka_poll(s->rk, 100);
        if (check_failed(s, err)) {
            if (headers) rd_kafka_headers_destroy(headers);
            return -1;
        }
    }
}

static int ksink_poll(void *self, struct rn_err *err)
{
    struct kafka_sink *s = self;
    rd_kafka_poll(s->rk, 0);
    return check_failed(s, err);
}

static int ksink_flush(void *self, struct rn_err *err)
{
    struct kafka_sink *s = self;
    int64_t deadline = rn_now_ms() + s->flush_timeout_ms;
    while (rd_kafka_outq_len(s->rk) > 0 && !s->failed && !s->client.fatal) {
        int64_t left = deadline - rn_now_ms();
        if (left <= 0) break;
        rd_kafka_flush(s->rk, left > 200 ? 200 : (int)left);
    }
    rd_kafka_poll(s->rk, 0);
    if (check_failed(s, err)) return -1;
    int waiting = rd_kafka_outq_len(s->rk);
    if (waiting > 0)
        return rn_fail(err, "topic %s: %d messages still unacknowledged after %lld ms", s->topic, waiting,
                       (long long)s->flush_timeout_ms);
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
    buf_init(&s->scratch);
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
    s->csv = !strcmp(opt_string(L, opts, "format", "json"), "csv"); /* json or csv: checked */
    s->columns = opt_string_list(L, opts, "columns", &s->ncolumns);
    if (s->csv && !s->ncolumns) {
        rn_fail(err, "%s: sink.kafka: format = \"csv\" needs columns = { \"field\", ... }", where);
        goto fail;
    }
    if (!s->csv && s->ncolumns) {
        rn_fail(err, "%s: sink.kafka: columns applies to format = \"csv\" (use map to choose the fields of JSON)", where);
        goto fail;
    }
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
    if (s->flush_timeout_ms <= 0) s->flush_timeout_ms = INT32_MAX; /* 0: librdkafka never times a message out */
    else s->flush_timeout_ms += FLUSH_MARGIN_MS;
    s->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!s->rk) {
        kafka_fail(&s->client, err, "%s: sink.kafka: cannot create the producer: %s", where, errstr);
        goto fail;
    }
    conf = NULL;
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
    if (s->rk) {
        /* normally everything is flushed by now; after a failure, what is left is dropped: the
         * source did not commit past it, so a rerun writes it again */
        rd_kafka_purge(s->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(s->rk, 1000);
        if (s->rkt) rd_kafka_topic_destroy(s->rkt);
        rd_kafka_destroy(s->rk);
    }
    if (s->headers) rd_kafka_headers_destroy(s->headers);
    for (size_t i = 0; i < s->ncolumns; i++) free(s->columns[i]);
    free(s->columns);
    free(s->topic);
    free(s->key_field);
    buf_free(&s->value);
    buf_free(&s->key);
    buf_free(&s->scratch);
    kafka_client_free(&s->client);
    free(s);
}

const struct sink_ops kafka_sink = {
    .name = "kafka",
    .summary = "messages to a Kafka topic (idempotent producer; acknowledged before the source commits)",
    .options = kafka_sink_options,
    .open = ksink_open,
    .write = ksink_write,
    .poll = ksink_poll,
    .flush = ksink_flush,
    .close = ksink_close,
};
