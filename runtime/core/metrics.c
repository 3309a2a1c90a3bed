/* metrics.c: the metrics registry (see metrics.h). Registration walks short lists; it happens
 * when a job opens, never per record. */
#include "core/metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct metric_family {
    char *name;
    char *help;
    enum metric_type type;
    char **label_names;
    size_t nlabels;
    double *bounds;             /* histograms */
    size_t nbounds;
    struct metric *first, *last;
    struct metric_family *next;
};

struct metrics {
    struct metric_label *common; /* copies */
    size_t ncommon;
    struct metric_family *first, *last;
};

static const char *const type_names[] = {"counter", "gauge", "histogram"};

static int valid_name(const char *s, int colons)
{
    if (!s || !*s) return 0;
    for (const char *c = s; *c; c++) {
        int alpha = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || *c == '_' || (colons && *c == ':');
        if (!alpha && !(c > s && *c >= '0' && *c <= '9')) return 0;
    }
    return 1;
}

static int check_label_name(const struct metrics *m, const char *name, enum metric_type type, struct rn_err *err)
{
    if (!valid_name(name, 0)) return rn_fail(err, "label name '%s' is not [a-zA-Z_][a-zA-Z0-9_]*", name ? name : "");
    if (strncmp(name, "__", 2) == 0) return rn_fail(err, "label name '%s': names starting with __ are reserved", name);
    if (type == METRIC_HISTOGRAM && strcmp(name, "le") == 0)
        return rn_fail(err, "label name 'le' is reserved for a histogram's buckets");
    for (size_t i = 0; m && i < m->ncommon; i++)
        if (strcmp(m->common[i].name, name) == 0)
            return rn_fail(err, "label '%s' is already one of the registry's common labels", name);
    return 0;
}

struct metrics *metrics_new(const struct metric_label *common, size_t n, struct rn_err *err)
{
    for (size_t i = 0; i < n; i++) {
        if (check_label_name(NULL, common[i].name, METRIC_COUNTER, err)) return NULL;
        if (strcmp(common[i].name, "le") == 0) {
            rn_fail(err, "label name 'le' is reserved for a histogram's buckets");
            return NULL;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(common[i].name, common[j].name) == 0) {
                rn_fail(err, "common label '%s' given twice", common[i].name);
                return NULL;
            }
    }
    struct metrics *m = rn_calloc(1, sizeof *m);
    if (n) m->common = rn_calloc(n, sizeof *m->common);
    for (size_t i = 0; i < n; i++) {
        m->common[i].name = rn_strdup(common[i].name);
        m->common[i].value = rn_strdup(common[i].value ? common[i].value : "");
    }
    m->ncommon = n;
    return m;
}

static void free_series(struct metric *s, size_t nlabels)
{
    for (size_t i = 0; i < nlabels; i++) free(s->label_values[i]);
    free(s->label_values);
    free(s->buckets);
    free(s);
}

void metrics_free(struct metrics *m)
{
    if (!m) return;
    for (struct metric_family *f = m->first, *next; f; f = next) {
        next = f->next;
        for (struct metric *s = f->first, *snext; s; s = snext) {
            snext = s->next;
            free_series(s, f->nlabels);
        }
        for (size_t i = 0; i < f->nlabels; i++) free(f->label_names[i]);
        free(f->label_names);
        free(f->bounds);
        free(f->name);
        free(f->help);
        free(f);
    }
    for (size_t i = 0; i < m->ncommon; i++) {
        free((char *)m->common[i].name);
        free((char *)m->common[i].value);
    }
    free(m->common);
    free(m);
}

static struct metric_family *find_family(const struct metrics *m, const char *name)
{
    for (struct metric_family *f = m->first; f; f = f->next)
        if (strcmp(f->name, name) == 0) return f;
    return NULL;
}

static struct metric *find_series(const struct metric_family *f, const struct metric_label *labels)
{
    for (struct metric *s = f->first; s; s = s->next) {
        size_t i = 0;
        while (i < f->nlabels && strcmp(s->label_values[i], labels[i].value ? labels[i].value : "") == 0) i++;
        if (i == f->nlabels) return s;
    }
    return NULL;
}

/* Does family f take exactly these label names (in this order) and bounds? */
static int family_matches(const struct metric_family *f, enum metric_type type, const struct metric_label *labels,
                          size_t nlabels, const double *bounds, size_t nbounds, struct rn_err *err)
{
    if (f->type != type)
        return rn_fail(err, "metric %s is a %s, not a %s", f->name, type_names[f->type], type_names[type]);
    if (f->nlabels != nlabels) return rn_fail(err, "metric %s takes %zu labels, not %zu", f->name, f->nlabels, nlabels);
    for (size_t i = 0; i < nlabels; i++)
        if (strcmp(f->label_names[i], labels[i].name) != 0)
            return rn_fail(err, "metric %s: label %zu is '%s', not '%s'", f->name, i + 1, f->label_names[i], labels[i].name);
    if (f->nbounds != nbounds || (nbounds && memcmp(f->bounds, bounds, nbounds * sizeof *bounds) != 0))
        return rn_fail(err, "metric %s is registered with other bucket bounds", f->name);
    return 0;
}

/* Are name, labels and bounds well formed? */
static int check_series(const struct metrics *m, enum metric_type type, const char *name,
                        const struct metric_label *labels, size_t nlabels, const double *bounds, size_t nbounds,
                        struct rn_err *err)
{
    if (!valid_name(name, 1)) return rn_fail(err, "metric name '%s' is not [a-zA-Z_:][a-zA-Z0-9_:]*", name ? name : "");
    for (size_t i = 0; i < nlabels; i++) {
        if (check_label_name(m, labels[i].name, type, err)) return rn_wrap(err, "metric %s", name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(labels[i].name, labels[j].name) == 0)
                return rn_fail(err, "metric %s: label '%s' given twice", name, labels[i].name);
    }
    for (size_t i = 0; i < nbounds; i++)
        if (!isfinite(bounds[i]) || (i && !(bounds[i] > bounds[i - 1])))
            return rn_fail(err, "metric %s: bucket bounds must be finite and increasing", name);
    return 0;
}

static struct metric *add_series(struct metrics *m, enum metric_type type, const char *name, const char *help,
                                 const struct metric_label *labels, size_t nlabels, const double *bounds,
                                 size_t nbounds, struct rn_err *err)
{
    if (check_series(m, type, name, labels, nlabels, bounds, nbounds, err)) return NULL;
    struct metric_family *f = find_family(m, name);
    if (f) {
        if (family_matches(f, type, labels, nlabels, bounds, nbounds, err)) return NULL;
        struct metric *s = find_series(f, labels);
        if (s) return s;
    } else {
        f = rn_calloc(1, sizeof *f);
        f->name = rn_strdup(name);
        f->help = rn_strdup(help ? help : "");
        f->type = type;
        f->nlabels = nlabels;
        if (nlabels) f->label_names = rn_calloc(nlabels, sizeof *f->label_names);
        for (size_t i = 0; i < nlabels; i++) f->label_names[i] = rn_strdup(labels[i].name);
        f->nbounds = nbounds;
        if (nbounds) {
            f->bounds = rn_malloc(nbounds * sizeof *bounds);
            memcpy(f->bounds, bounds, nbounds * sizeof *bounds);
        }
        if (m->last) m->last->next = f;
        else m->first = f;
        m->last = f;
    }
    struct metric *s = rn_calloc(1, sizeof *s);
    s->family = f;
    if (nlabels) s->label_values = rn_calloc(nlabels, sizeof *s->label_values);
    for (size_t i = 0; i < nlabels; i++) s->label_values[i] = rn_strdup(labels[i].value ? labels[i].value : "");
    if (type == METRIC_HISTOGRAM) s->buckets = rn_calloc(nbounds + 1, sizeof *s->buckets);
    if (f->last) f->last->next = s;
    else f->first = s;
    f->last = s;
    return s;
}

struct metric *metrics_counter(struct metrics *m, const char *name, const char *help, const struct metric_label *labels,
                               size_t nlabels, struct rn_err *err)
{
    return add_series(m, METRIC_COUNTER, name, help, labels, nlabels, NULL, 0, err);
}

struct metric *metrics_gauge(struct metrics *m, const char *name, const char *help, const struct metric_label *labels,
                             size_t nlabels, struct rn_err *err)
{
    return add_series(m, METRIC_GAUGE, name, help, labels, nlabels, NULL, 0, err);
}

struct metric *metrics_histogram(struct metrics *m, const char *name, const char *help, const struct metric_label *labels,
                                 size_t nlabels, const double *bounds, size_t nbounds, struct rn_err *err)
{
    return add_series(m, METRIC_HISTOGRAM, name, help, labels, nlabels, bounds, nbounds, err);
}

struct metric *metrics_find(const struct metrics *m, const char *name, const struct metric_label *labels, size_t nlabels)
{
    const struct metric_family *f = find_family(m, name);
    if (!f || f->nlabels != nlabels) return NULL;
    for (size_t i = 0; i < nlabels; i++)
        if (strcmp(f->label_names[i], labels[i].name) != 0) return NULL;
    return find_series(f, labels);
}

void metric_observe(struct metric *h, double v)
{
    const struct metric_family *f = h->family;
    size_t i = 0; /* a few buckets: a linear walk beats a binary search */
    while (i < f->nbounds && !(v <= f->bounds[i])) i++;
    h->buckets[i]++;
    h->count++;
    h->sum += v;
}

/* ---- the text exposition format ---- */

/* A sample value as Prometheus writes one: integers without a fraction, +Inf, -Inf, NaN. */
static void put_value(struct buf *out, double v)
{
    if (isnan(v)) { buf_puts(out, "NaN"); return; }
    if (isinf(v)) { buf_puts(out, v > 0 ? "+Inf" : "-Inf"); return; }
    char text[RN_DOUBLE_MAX];
    if (v == floor(v) && fabs(v) < 1e15) snprintf(text, sizeof text, "%.0f", v);
    else rn_format_double(text, v);
    buf_puts(out, text);
}

/* HELP text escapes backslash and line feed; label values also the double quote. */
static void put_escaped(struct buf *out, const char *s, int quote)
{
    for (; *s; s++) {
        if (*s == '\\') buf_put(out, "\\\\", 2);
        else if (*s == '\n') buf_put(out, "\\n", 2);
        else if (quote && *s == '"') buf_put(out, "\\\"", 2);
        else buf_putc(out, *s);
    }
}

static void put_label(struct buf *out, int *first, const char *name, const char *value)
{
    buf_putc(out, *first ? '{' : ',');
    *first = 0;
    buf_puts(out, name);
    buf_put(out, "=\"", 2);
    put_escaped(out, value, 1);
    buf_putc(out, '"');
}

/* name{common..., labels..., le="bound"} value */
static void put_sample(struct buf *out, const struct metrics *m, const struct metric_family *f, const struct metric *s,
                       const char *suffix, const char *le, double value)
{
    buf_puts(out, f->name);
    buf_puts(out, suffix);
    int first = 1;
    for (size_t i = 0; i < m->ncommon; i++) put_label(out, &first, m->common[i].name, m->common[i].value);
    for (size_t i = 0; i < f->nlabels; i++) put_label(out, &first, f->label_names[i], s->label_values[i]);
    if (le) put_label(out, &first, "le", le);
    if (!first) buf_putc(out, '}');
    buf_putc(out, ' ');
    put_value(out, value);
    buf_putc(out, '\n');
}

void metrics_write_prometheus(const struct metrics *m, struct buf *out)
{
    for (const struct metric_family *f = m->first; f; f = f->next) {
        buf_puts(out, "# HELP ");
        buf_puts(out, f->name);
        buf_putc(out, ' ');
        put_escaped(out, f->help, 0);
        buf_printf(out, "\n# TYPE %s %s\n", f->name, type_names[f->type]);
        for (const struct metric *s = f->first; s; s = s->next) {
            if (f->type != METRIC_HISTOGRAM) {
                put_sample(out, m, f, s, "", NULL, s->value);
                continue;
            }
            uint64_t cumulative = 0;
            for (size_t i = 0; i <= f->nbounds; i++) {
                cumulative += s->buckets[i];
                struct buf le;
                buf_init(&le);
                if (i < f->nbounds) put_value(&le, f->bounds[i]);
                else buf_puts(&le, "+Inf");
                put_sample(out, m, f, s, "_bucket", le.data, (double)cumulative);
                buf_free(&le);
            }
            put_sample(out, m, f, s, "_sum", NULL, s->sum);
            put_sample(out, m, f, s, "_count", NULL, (double)s->count);
        }
    }
}
