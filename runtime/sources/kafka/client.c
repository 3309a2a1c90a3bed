/* client.c: librdkafka configuration and secret redaction shared by source.kafka and
 * sink.kafka (see kafka_common.h). */
#include "sources/kafka/client.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "lua/job.h"
#include "core/log.h"

void kafka_client_init(struct kafka_client *client, const char *what, lua_State *L, int opts)
{
    const char *where = options_where(L, opts);
    snprintf(client->what, sizeof client->what, "%s", what);
    snprintf(client->where, sizeof client->where, "%s", where);
    snprintf(client->label, sizeof client->label, "%s (%s)", what, where);
    client->wake_queue = NULL;
    client->wake_fd = -1;
    client->loop = NULL;
}

int kafka_client_wake_on(struct kafka_client *client, rd_kafka_queue_t *queue, struct loop *loop, struct rn_err *err)
{
    if (!loop) {
        rd_kafka_queue_destroy(queue);
        return 0;
    }
    if (!queue) return rn_fail(err, "%s: librdkafka gave no queue to wait on", client->label);
    client->wake_queue = queue;
    client->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (client->wake_fd < 0) return rn_fail(err, "%s: eventfd: %s", client->label, strerror(errno));
    if (loop_watch(loop, client->wake_fd, LOOP_READ, loop_take_eventfd, NULL, err)) return rn_wrap(err, "%s", client->label);
    client->loop = loop;
    static const uint64_t one = 1; /* an eventfd takes 8 bytes: the count to add */
    rd_kafka_queue_io_event_enable(queue, client->wake_fd, &one, sizeof one);
    return 0;
}

void kafka_client_wake_off(struct kafka_client *client)
{
    if (client->wake_queue) {
        if (client->wake_fd >= 0) rd_kafka_queue_io_event_enable(client->wake_queue, -1, NULL, 0);
        rd_kafka_queue_destroy(client->wake_queue);
        client->wake_queue = NULL;
    }
    if (client->loop) loop_unwatch(client->loop, client->wake_fd);
    client->loop = NULL;
    if (client->wake_fd >= 0) close(client->wake_fd);
    client->wake_fd = -1;
}

void kafka_client_free(struct kafka_client *client)
{
    secret_set_free(&client->secrets);
}

int kafka_property_is_secret(const char *name)
{
    static const char *const words[] = {"password", "secret", "sasl.jaas", "ssl.key", "token", "oauthbearer.config"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strcasestr(name, words[i])) return 1;
    return 0;
}

int kafka_fail(const struct kafka_client *client, struct rn_err *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    secret_vfail(&client->secrets, err, fmt, ap);
    va_end(ap);
    return -1;
}

/* librdkafka's log lines (from its own threads), masked and prefixed with the plugin. */
static void on_log(const rd_kafka_t *rk, int level, const char *facility, const char *line)
{
    (void)level;
    if (strcmp(facility, "FAIL") == 0) return; /* the same text comes through on_error */
    const struct kafka_client *client = rd_kafka_opaque(rk);
    log_write(LOG_WARNING, &client->secrets, "%s: librdkafka %s: %s", client->label, facility, line);
}

/* Errors librdkafka reports while it retries on its own (brokers down, ...): printed once
 * per burst; a fatal one is remembered so the plugin stops. */
static void on_error(rd_kafka_t *rk, int code, const char *reason, void *opaque)
{
    (void)rk;
    struct kafka_client *client = opaque;
    if (code == RD_KAFKA_RESP_ERR__FATAL) client->fatal = 1;
    if (code == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) client->brokers_down = 1;
    int64_t now = rn_now_ms();
    if (code == client->last_error && now - client->last_error_ms < 10000) return;
    client->last_error = code;
    client->last_error_ms = now;
    log_write(LOG_WARNING, &client->secrets, "%s: %s", client->label, reason);
}

static int set_one(struct kafka_client *client, rd_kafka_conf_t *conf, const char *name, const char *value,
                   const char *origin, struct rn_err *err)
{
    char errstr[512];
    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof errstr) != RD_KAFKA_CONF_OK)
        return kafka_fail(client, err, "%s: %s: %s: %s", client->where, client->what, origin, errstr);
    return 0;
}

/* The text of the property value at the top of the stack: a string, number, boolean or
 * secret() (checked by the option spec). */
static const char *property_text(lua_State *L, char *numbuf, size_t n)
{
    switch (lua_type(L, -1)) {
    case LUA_TNUMBER:
        if (lua_isinteger(L, -1)) snprintf(numbuf, n, "%lld", (long long)lua_tointeger(L, -1));
        else snprintf(numbuf, n, "%.17g", lua_tonumber(L, -1));
        return numbuf;
    case LUA_TBOOLEAN: return lua_toboolean(L, -1) ? "true" : "false";
    default: return luajob_secret_value(L, -1); /* a string or a secret */
    }
}

static int is_enforced(const struct kafka_setting *enforced, const char *name)
{
    for (const struct kafka_setting *s = enforced; s && s->name; s++)
        if (strcmp(s->name, name) == 0) return 1;
    return 0;
}

rd_kafka_conf_t *kafka_conf_new(struct kafka_client *client, lua_State *L, int opts,
                                const struct kafka_setting *defaults, const struct kafka_setting *enforced,
                                struct rn_err *err)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int props = 0, has_bootstrap = 0;
    char numbuf[64], origin[300];
    if (opt_push(L, opts, "properties")) {
        props = lua_gettop(L);
        /* first pass: learn every secret before any value can reach a message */
        lua_pushnil(L);
        while (lua_next(L, props)) {
            const char *name = lua_tostring(L, -2);
            const char *value = property_text(L, numbuf, sizeof numbuf);
            if (value && (kafka_property_is_secret(name) || lua_type(L, -1) == LUA_TUSERDATA)) secret_set_add(&client->secrets, value);
            if (!strcmp(name, "bootstrap.servers") || !strcmp(name, "metadata.broker.list")) has_bootstrap = 1;
            lua_pop(L, 1);
        }
    }
    for (const struct kafka_setting *s = defaults; s && s->name; s++)
        if (set_one(client, conf, s->name, s->value, "default setting", err)) goto fail_props;
    const char *brokers = opt_string(L, opts, "brokers", NULL);
    if (!brokers && !has_bootstrap) {
        brokers = getenv("KAFKA_BROKERS");
        if (!brokers || !*brokers) {
            rn_fail(err, "%s: %s: no brokers: set the option brokers (e.g. brokers = env(\"KAFKA_BROKERS\")) "
                         "or the environment variable KAFKA_BROKERS", client->where, client->what);
            goto fail_props;
        }
    }
    if (brokers && set_one(client, conf, "bootstrap.servers", brokers, "brokers", err)) goto fail_props;
    if (props) {
        lua_pushnil(L);
        while (lua_next(L, props)) {
            const char *name = lua_tostring(L, -2);
            snprintf(origin, sizeof origin, "properties[\"%s\"]", name);
            const char *value = property_text(L, numbuf, sizeof numbuf);
            if (lua_type(L, -1) == LUA_TUSERDATA && !*value) {
                const char *shown = luaL_tolstring(L, -1, NULL);
                rn_fail(err, "%s: %s: %s: %s is empty (set its environment variable)", client->where, client->what,
                        origin, shown);
                lua_pop(L, 3);
                goto fail_props;
            }
            if (is_enforced(enforced, name)) {
                rn_fail(err, "%s: %s: %s: runnel sets this property itself (see runnel help %s); remove it", client->where, client->what, origin, client->what);
                lua_pop(L, 2);
                goto fail_props;
            }
            if (set_one(client, conf, name, value, origin, err)) {
                lua_pop(L, 2);
                goto fail_props;
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        props = 0;
    }
    for (const struct kafka_setting *s = enforced; s && s->name; s++)
        if (set_one(client, conf, s->name, s->value, "setting", err)) goto fail;
    rd_kafka_conf_set_log_cb(conf, on_log);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_opaque(conf, client);
    return conf;
fail_props:
    if (props) lua_pop(L, 1);
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}
