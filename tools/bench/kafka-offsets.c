/* kafka-offsets.c: the offsets of a topic, for the bench to check a copy's end state.
 *   bench-kafka-offsets BROKERS TOPIC [GROUP]
 * prints {"partitions":P,"low":L,"high":H,"messages":H-L,"committed":C} on stdout: L and H the
 * sums of the partitions' low and high watermarks (H is every message ever appended to a new
 * topic, even after the development broker's retention drops old ones), C the sum of GROUP's
 * committed offsets (-1 when a partition has none; null without GROUP). Exit 1 on an error. */
#include <stdio.h>
#include <stdlib.h>

#include <librdkafka/rdkafka.h>

#define TIMEOUT_MS 10000

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: bench-kafka-offsets BROKERS TOPIC [GROUP]\n");
        return 2;
    }
    const char *brokers = argv[1], *topic = argv[2], *group = argc == 4 ? argv[3] : "bench-kafka-offsets";
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof errstr) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "bench-kafka-offsets: %s\n", errstr);
        return 1;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (!rk) {
        fprintf(stderr, "bench-kafka-offsets: %s\n", errstr);
        return 1;
    }
    int rc = 1;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, TIMEOUT_MS);
    if (e || md->topic_cnt != 1 || md->topics[0].err) {
        fprintf(stderr, "bench-kafka-offsets: topic %s: %s\n", topic,
                rd_kafka_err2str(e ? e : md->topic_cnt != 1 ? RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC : md->topics[0].err));
        goto done;
    }
    int n = md->topics[0].partition_cnt;
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(n);
    long long low_sum = 0, high_sum = 0, committed_sum = 0;
    for (int i = 0; i < n; i++) {
        int32_t p = md->topics[0].partitions[i].id;
        int64_t low, high;
        if ((e = rd_kafka_query_watermark_offsets(rk, topic, p, &low, &high, TIMEOUT_MS))) {
            fprintf(stderr, "bench-kafka-offsets: %s [%d]: %s\n", topic, (int)p, rd_kafka_err2str(e));
            rd_kafka_topic_partition_list_destroy(parts);
            goto done;
        }
        low_sum += low;
        high_sum += high;
        rd_kafka_topic_partition_list_add(parts, topic, p);
    }
    if (argc == 4) {
        if ((e = rd_kafka_committed(rk, parts, TIMEOUT_MS))) {
            fprintf(stderr, "bench-kafka-offsets: group %s: %s\n", group, rd_kafka_err2str(e));
            rd_kafka_topic_partition_list_destroy(parts);
            goto done;
        }
        for (int i = 0; i < parts->cnt; i++) committed_sum += parts->elems[i].offset < 0 ? -1 : parts->elems[i].offset;
        printf("{\"partitions\":%d,\"low\":%lld,\"high\":%lld,\"messages\":%lld,\"committed\":%lld}\n", n, low_sum,
               high_sum, high_sum - low_sum, committed_sum);
    } else {
        printf("{\"partitions\":%d,\"low\":%lld,\"high\":%lld,\"messages\":%lld,\"committed\":null}\n", n, low_sum,
               high_sum, high_sum - low_sum);
    }
    rd_kafka_topic_partition_list_destroy(parts);
    rc = 0;
done:
    if (md) rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    return rc;
}
