/* exposition.h: several Prometheus text expositions (format 0.0.4, as metrics_write_prometheus
 * writes them: each family a "# HELP" line, a "# TYPE" line, then its samples) merged into one,
 * so that `runnel serve`'s GET /metrics shows its own families and every job's as one scrape.
 *
 * Families are whatever the texts hold (no list of names here): each comes out once, at the
 * place of its first appearance, with that appearance's HELP and TYPE, followed by its samples
 * from every text in order. A text whose family has another TYPE than the first appearance
 * gives none of its samples to it (counted in the result); lines outside a family, comments
 * other than HELP and TYPE, and blank lines are dropped. */
#ifndef RUNNEL_SERVE_EXPOSITION_H
#define RUNNEL_SERVE_EXPOSITION_H

#include <stddef.h>
#include "core/util.h"

struct exposition_text {
    const char *data;
    size_t len;
};

/* Append the merge of texts[0..n) to out. Returns how many family blocks were left out for a
 * TYPE that clashes. */
size_t exposition_merge(const struct exposition_text *texts, size_t n, struct buf *out);

#endif
