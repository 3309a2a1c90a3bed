/* client.h: what source.kafka and sink.kafka share: a librdkafka configuration built
 * from a plugin's options (brokers, properties, secrets) and the redaction that keeps every
 * secret out of messages, logs and errors.
 *
 * A plugin struct starts with a struct kafka_client and hands itself to librdkafka as the
 * opaque, so the log and error callbacks find the label and the secrets to mask. */
#ifndef RUNNEL_KAFKA_COMMON_H
#define RUNNEL_KAFKA_COMMON_H

#include <librdkafka/rdkafka.h>
#include <lua.h>
#include <signal.h>

#include "core/secret.h"
#include "engine/plugin.h"

struct kafka_client {
    char what[32];            /* "source.kafka" */
    char where[224];          /* "jobs/x.lua:3", the declaration */
    char label[272];          /* "source.kafka (jobs/x.lua:3)", for log lines */
    struct secret_set secrets; /* values masked wherever text leaves the process */
    volatile sig_atomic_t fatal; /* librdkafka raised a fatal error (error callback) */
    volatile sig_atomic_t brokers_down; /* all brokers down (error callback); the plugin clears it when one answers */
    int last_error;           /* the error callback prints each distinct error once per burst */
    int64_t last_error_ms;
    rd_kafka_queue_t *wake_queue; /* the queue whose events wake the job's loop (kafka_client_wake_on) */
    int wake_fd;              /* the eventfd librdkafka writes to for it, or -1 */
    struct loop *loop;
};

/* A librdkafka property and its value. */
struct kafka_setting {
    const char *name;
    const char *value;
};

/* Fill client->label from the checked options table at opts (its place, options_where) and `what`
 * ("source.kafka"). */
void kafka_client_init(struct kafka_client *client, const char *what, lua_State *L, int opts);
void kafka_client_free(struct kafka_client *client);

/* Build a configuration from the plugin options at opts: `defaults`, then `brokers` (or env
 * KAFKA_BROKERS unless properties set bootstrap.servers), then every entry of `properties`
 * verbatim (values: strings, numbers, booleans or secret()), then `enforced`, which a property
 * may not override. Installs the redacting log and error callbacks; the opaque is `client`.
 * Both setting lists end with {NULL}. Returns NULL and err (naming the option) on failure. */
rd_kafka_conf_t *kafka_conf_new(struct kafka_client *client, lua_State *L, int opts,
                                const struct kafka_setting *defaults, const struct kafka_setting *enforced,
                                struct rn_err *err);

/* 1 when a property's value must never be shown (its name contains password, secret,
 * sasl.jaas, ssl.key, token or oauthbearer.config). */
int kafka_property_is_secret(const char *name);


/* Wake the job's loop whenever queue (the consumer's queue; a producer's main queue, where its
 * delivery reports come) gets an event: librdkafka writes to an eventfd the loop watches. It
 * writes once per poll of the queue, so the plugin serves the queue (rd_kafka_consumer_poll
 * until NULL, rd_kafka_poll) whenever the loop has woken. Takes queue (a reference). loop NULL:
 * nothing. 0, or -1 and err. */
int kafka_client_wake_on(struct kafka_client *client, rd_kafka_queue_t *queue, struct loop *loop, struct rn_err *err);
/* Undo it, before the handle is closed or destroyed. Nothing when it was not on. */
void kafka_client_wake_off(struct kafka_client *client);

/* rn_fail, then mask the secrets: for messages that carry librdkafka text. Returns -1. */
int kafka_fail(const struct kafka_client *client, struct rn_err *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));


#endif
