/* metrics.h: a registry of counters, gauges and histograms with labels; one per job, owned by
 * whoever makes it (the pipeline), never global.
 *
 * A series is a metric name plus a set of label values. Registering one returns a handle that
 * the hot path updates directly: metric_inc is one addition, with no lookup by name per record.
 * metrics_write_prometheus writes the whole registry in Prometheus' text exposition format
 * (version 0.0.4). Names follow Prometheus: [a-zA-Z_:][a-zA-Z0-9_:]* for metrics,
 * [a-zA-Z_][a-zA-Z0-9_]* for labels, and label names starting with "__" are reserved. */
#ifndef RUNNEL_METRICS_H
#define RUNNEL_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include "core/util.h"

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

struct metric_label {
    const char *name;
    const char *value;
};

struct metric_family; /* metrics.c */

/* One series. `value` is a counter's or gauge's current value: read it freely, change it only
 * with the functions below. The other members belong to metrics.c. */
struct metric {
    double value;
    double sum;                    /* histogram: the sum of the observations */
    uint64_t count;                /* histogram: how many observations */
    uint64_t *buckets;             /* histogram: observations <= bounds[i], per bucket (not cumulative) */
    struct metric_family *family;
    char **label_values;           /* as many as the family has label names */
    struct metric *next;           /* the next series of the same family */
};

struct metrics;

/* A new empty registry. common labels (may be NULL when n is 0) are added to every series
 * when it is written out, e.g. { "job", "product_ratings" }; they are copied. Free it with
 * metrics_free, which frees every handle it returned. NULL and err when a label is invalid. */
struct metrics *metrics_new(const struct metric_label *common, size_t n, struct rn_err *err);
void metrics_free(struct metrics *m);

/* Register a series (or find the one registered before with the same name and label values)
 * and return its handle, owned by the registry. help is the family's one-line description
 * (the first registration's is kept). Every series of one name must have the same type, the
 * same label names in the same order and, for histograms, the same bounds. NULL and err on
 * an invalid name, a clash with an earlier registration, or bounds that do not increase. */
struct metric *metrics_counter(struct metrics *m, const char *name, const char *help, const struct metric_label *labels,
                               size_t nlabels, struct rn_err *err);
struct metric *metrics_gauge(struct metrics *m, const char *name, const char *help, const struct metric_label *labels,
                             size_t nlabels, struct rn_err *err);
/* bounds: the buckets' upper bounds, strictly increasing and finite; the +Inf bucket is implied. */
struct metric *metrics_histogram(struct metrics *m, const char *name, const char *help, const struct metric_label *labels,
                                 size_t nlabels, const double *bounds, size_t nbounds, struct rn_err *err);

/* The series registered under name with exactly these label values, or NULL. For readers
 * that did not register it (the summary of another module, tests); not for the hot path. */
struct metric *metrics_find(const struct metrics *m, const char *name, const struct metric_label *labels, size_t nlabels);

/* Counters only go up: add a value >= 0. Gauges are set or moved either way. */
static inline void metric_inc(struct metric *c) { c->value += 1; }
static inline void metric_add(struct metric *c, double v) { c->value += v; }
static inline void metric_set(struct metric *g, double v) { g->value = v; }

/* Record one observation in a histogram. */
void metric_observe(struct metric *h, double v);

/* A counter's value as a count of things (records, checkpoints). */
static inline uint64_t metric_u64(const struct metric *c) { return (uint64_t)c->value; }

/* Append every family in registration order, each series of a family in registration order,
 * in the text exposition format: # HELP and # TYPE lines, then one sample line per series
 * (histograms: cumulative _bucket lines with le, then _sum and _count). */
void metrics_write_prometheus(const struct metrics *m, struct buf *out);

#endif
