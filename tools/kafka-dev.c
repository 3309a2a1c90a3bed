/* kafka-dev: a development Kafka broker on librdkafka's mock cluster (rdkafka_mock.h).
 *
 * It speaks the real Kafka protocol on loopback TCP, so kcat and any client can use it; state
 * lives in memory and is gone when it exits. Prints the bootstrap servers as its first stdout
 * line, then runs until SIGINT/SIGTERM (exit 0). SIGUSR1 sets every broker down, SIGUSR2 up.
 *
 * What the mock cluster of librdkafka 2.0.2 (Debian 12) supports, checked against this tool
 * with kcat 1.7 and a C client (tests/tools/test_kafka_dev.sh covers the kcat part):
 * - Works: kcat -P -K: (keyed produce, keys spread by the partitioner) and kcat -C -e -o beginning;
 *   the idempotent producer (enable.idempotence=true: all delivered, no fatal error);
 *   rd_kafka_query_watermark_offsets (low 0, high = messages produced); consumer groups with
 *   rd_kafka_commit + rd_kafka_committed, and a new consumer in the same group (C client or
 *   kcat -G without -o) resumes at the committed offset; two consumers in one group split a
 *   4-partition topic 2 + 2; all of it with --brokers 1 and --brokers 3.
 * - Group timing, the one trap for tests: the first join of an empty group waits 3 s; after
 *   the last member leaves, the group keeps waiting session.timeout.ms - 1 s before a newcomer
 *   is admitted (44 s with the 45 s default). Tests should set session.timeout.ms=4000..6000
 *   and heartbeat.interval.ms=1000; below about 3000 the join never completes.
 * - Auto-creation: any topic named in a Metadata request is created with 4 partitions (kcat -L -t,
 *   a producer, even a consumer with allow.auto.create.topics=false). Create topics with --topic
 *   to control the partition count. The replication factor is ignored: every broker is a replica.
 * - SIGUSR1 (rd_kafka_mock_broker_set_down) closes connections and refuses new ones without a
 *   leader change; clients retry, and a producer's queued messages are delivered after SIGUSR2.
 * - All state (messages, committed offsets) lives in memory and is lost when kafka-dev exits.
 * - --produce-errors CODE:COUNT answers the first COUNT Produce requests with the Kafka error
 *   CODE (rd_kafka_mock_push_request_errors): 10 (MESSAGE_TOO_LARGE) and 87 (INVALID_RECORD)
 *   reach a producer as a failed delivery report for every message of the refused batch.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define MAX_TOPICS 64

struct topic_spec { const char *name; int partitions; };

#define KAFKA_API_PRODUCE 0 /* the Produce request's ApiKey in the Kafka protocol */

struct options {
    int brokers;
    int produce_error;          /* a Kafka error code, 0: none */
    int produce_error_count;
    struct topic_spec topics[MAX_TOPICS];
    int topic_count;
    const char *port_file;
};

static void usage(FILE *f)
{
    fputs("usage: kafka-dev [--brokers N] [--topic NAME[:PARTITIONS]]... [--port-file PATH]\n"
          "                 [--produce-errors CODE:COUNT]\n"
          "  --brokers N        mock brokers to start on 127.0.0.1 (default 1)\n"
          "  --topic NAME[:P]   create topic NAME with P partitions (default 1); other topics are\n"
          "                     auto-created with 4 partitions when a client first asks for them\n"
          "  --port-file PATH   also write the bootstrap servers to PATH (written whole, then renamed)\n"
          "  --produce-errors CODE:COUNT\n"
          "                     answer the first COUNT Produce requests with Kafka error CODE\n"
          "                     (e.g. 10 MESSAGE_TOO_LARGE, 87 INVALID_RECORD)\n"
          "Prints the bootstrap servers as the first line on stdout; SIGINT/SIGTERM stop it,\n"
          "SIGUSR1 sets all brokers down, SIGUSR2 sets them up again.\n", f);
}

/* Parses a whole decimal int in [min, max]; returns 0, or -1 when s is not one. */
static int parse_int(const char *s, int min, int max, int *value)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) return -1;
    *value = (int)v;
    return 0;
}

/* Fills opts from argv; on a bad argument writes why into error and returns -1.
 * Topic names point into argv (the ':' is overwritten with a NUL). */
static int parse_options(int argc, char **argv, struct options *opts, char *error, size_t error_size)
{
    opts->brokers = 1;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--brokers") == 0) {
            if (!value || parse_int(value, 1, 64, &opts->brokers) != 0) {
                snprintf(error, error_size, "--brokers needs a number from 1 to 64");
                return -1;
            }
        } else if (strcmp(arg, "--topic") == 0) {
            if (!value || !*value || *value == ':') {
                snprintf(error, error_size, "--topic needs NAME or NAME:PARTITIONS");
                return -1;
            }
            if (opts->topic_count == MAX_TOPICS) {
                snprintf(error, error_size, "at most %d --topic options", MAX_TOPICS);
                return -1;
            }
            struct topic_spec *topic = &opts->topics[opts->topic_count++];
            topic->name = value;
            topic->partitions = 1;
            char *colon = strrchr(value, ':');
            if (colon) {
                *colon = '\0';
                if (parse_int(colon + 1, 1, 10000, &topic->partitions) != 0) {
                    snprintf(error, error_size, "--topic %s: partitions '%s' is not a number from 1 to 10000",
                             value, colon + 1);
                    return -1;
                }
            }
        } else if (strcmp(arg, "--produce-errors") == 0) {
            char *colon = value ? strchr(value, ':') : NULL;
            if (colon) *colon = '\0';
            if (!colon || parse_int(value, 1, 32767, &opts->produce_error) != 0 ||
                parse_int(colon + 1, 1, 1000000, &opts->produce_error_count) != 0) {
                snprintf(error, error_size, "--produce-errors needs CODE:COUNT (an error code 1..32767, a count 1..1000000)");
                return -1;
            }
        } else if (strcmp(arg, "--port-file") == 0) {
            if (!value || !*value) {
                snprintf(error, error_size, "--port-file needs a path");
                return -1;
            }
            opts->port_file = value;
        } else {
            snprintf(error, error_size, "unknown option '%s'", arg);
            return -1;
        }
        i++;
    }
    return 0;
}

/* Writes text and a newline to path via a temporary file and rename, so a reader polling for
 * the file never sees it half written. Returns 0, or -1 with errno set. */
static int write_file_atomically(const char *path, const char *text)
{
    char temporary[4096];
    if (snprintf(temporary, sizeof temporary, "%s.tmp", path) >= (int)sizeof temporary) {
        errno = ENAMETOOLONG;
        return -1;
    }
    FILE *f = fopen(temporary, "w");
    if (!f) return -1;
    int written = fprintf(f, "%s\n", text) >= 0;
    if (fclose(f) != 0 || !written) { remove(temporary); return -1; }
    if (rename(temporary, path) != 0) { remove(temporary); return -1; }
    return 0;
}

static void set_brokers(rd_kafka_mock_cluster_t *cluster, int brokers, int up)
{
    for (int id = 1; id <= brokers; id++) {
        rd_kafka_resp_err_t err = up ? rd_kafka_mock_broker_set_up(cluster, id)
                                     : rd_kafka_mock_broker_set_down(cluster, id);
        if (err) fprintf(stderr, "kafka-dev: broker %d: %s\n", id, rd_kafka_err2str(err));
    }
    fprintf(stderr, "kafka-dev: %d broker%s %s\n", brokers, brokers == 1 ? "" : "s", up ? "up" : "down");
}

int main(int argc, char **argv)
{
    struct options opts = {0};
    char error[512];
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    if (parse_options(argc, argv, &opts, error, sizeof error) != 0) {
        fprintf(stderr, "kafka-dev: %s\n", error);
        usage(stderr);
        return 2;
    }

    /* Block the signals before librdkafka starts its threads, so they inherit the mask and
     * only sigwait() below ever takes them. */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGUSR1);
    sigaddset(&signals, SIGUSR2);
    int err = pthread_sigmask(SIG_BLOCK, &signals, NULL);
    if (err) {
        fprintf(stderr, "kafka-dev: pthread_sigmask: %s\n", strerror(err));
        return 1;
    }

    int status = 1, port_file_written = 0;
    rd_kafka_t *handle = NULL;
    rd_kafka_mock_cluster_t *cluster = NULL;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* The handle only hosts the cluster and has no bootstrap servers; log_level 4 (warnings)
     * hides the notice that it cannot connect anywhere. */
    if (rd_kafka_conf_set(conf, "log_level", "4", error, sizeof error) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "kafka-dev: config: %s\n", error);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    handle = rd_kafka_new(RD_KAFKA_PRODUCER, conf, error, sizeof error);
    if (!handle) {
        fprintf(stderr, "kafka-dev: rd_kafka_new: %s\n", error);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    cluster = rd_kafka_mock_cluster_new(handle, opts.brokers);
    if (!cluster) {
        fprintf(stderr, "kafka-dev: could not start a mock cluster of %d brokers\n", opts.brokers);
        goto done;
    }
    for (int i = 0; i < opts.topic_count; i++) {
        rd_kafka_resp_err_t topic_err =
            rd_kafka_mock_topic_create(cluster, opts.topics[i].name, opts.topics[i].partitions, 1);
        if (topic_err) {
            fprintf(stderr, "kafka-dev: topic %s: %s\n", opts.topics[i].name, rd_kafka_err2str(topic_err));
            goto done;
        }
        fprintf(stderr, "kafka-dev: topic %s partitions=%d replication=1\n",
                opts.topics[i].name, opts.topics[i].partitions);
    }

    if (opts.produce_error) {
        rd_kafka_resp_err_t *codes = calloc((size_t)opts.produce_error_count, sizeof *codes);
        if (!codes) {
            fprintf(stderr, "kafka-dev: out of memory\n");
            goto done;
        }
        for (int i = 0; i < opts.produce_error_count; i++) codes[i] = (rd_kafka_resp_err_t)opts.produce_error;
        rd_kafka_mock_push_request_errors_array(cluster, KAFKA_API_PRODUCE, (size_t)opts.produce_error_count, codes);
        free(codes);
        fprintf(stderr, "kafka-dev: the first %d Produce requests fail with %s\n", opts.produce_error_count,
                rd_kafka_err2str((rd_kafka_resp_err_t)opts.produce_error));
    }

    const char *bootstraps = rd_kafka_mock_cluster_bootstraps(cluster);
    if (printf("%s\n", bootstraps) < 0 || fflush(stdout) != 0) {
        fprintf(stderr, "kafka-dev: writing stdout: %s\n", strerror(errno));
        goto done;
    }
    if (opts.port_file && write_file_atomically(opts.port_file, bootstraps) != 0) {
        fprintf(stderr, "kafka-dev: --port-file %s: %s\n", opts.port_file, strerror(errno));
        goto done;
    }
    port_file_written = opts.port_file != NULL;
    fprintf(stderr, "kafka-dev: %d broker%s at %s (SIGUSR1 down, SIGUSR2 up, SIGINT/SIGTERM stop)\n",
            opts.brokers, opts.brokers == 1 ? "" : "s", bootstraps);

    for (;;) {
        int signal_number;
        err = sigwait(&signals, &signal_number);
        if (err) {
            fprintf(stderr, "kafka-dev: sigwait: %s\n", strerror(err));
            goto done;
        }
        if (signal_number == SIGUSR1) {
            set_brokers(cluster, opts.brokers, 0);
        } else if (signal_number == SIGUSR2) {
            set_brokers(cluster, opts.brokers, 1);
        } else {
            fprintf(stderr, "kafka-dev: %s, stopping\n", signal_number == SIGINT ? "SIGINT" : "SIGTERM");
            break;
        }
    }
    status = 0;

done:
    if (port_file_written) remove(opts.port_file);
    if (cluster) rd_kafka_mock_cluster_destroy(cluster);
    rd_kafka_destroy(handle);
    return status;
}
