/* tally.h: counts per key (a phrase, a product) in a table of bounded size, so a report over
 * an input of any length keeps memory bounded by the number of keys it keeps.
 *
 * A table holds at most `max` keys. When a new key comes to a full table, the least counted
 * keys are dropped first: every key whose count is at most the median, so at least half. The
 * keys seen most stay, with exact counts unless they were once dropped themselves; a kept
 * count is short by at most tally_shortfall() (0 while nothing was dropped). */
#ifndef RUNNEL_SERVE_TALLY_H
#define RUNNEL_SERVE_TALLY_H

#include <stddef.h>
#include <stdint.h>

struct tally_entry {
    uint64_t count;        /* the caller counts; tally_get starts it at 0 */
    uint64_t mark;         /* the caller's, e.g. the last record that counted this key */
    double label_sum;      /* the caller's: the sum and number of numeric labels */
    uint64_t label_n;
    uint32_t *by_label;    /* by_label[i]: records with label i (tally_count_label) */
    uint32_t by_label_len;
    uint32_t hash;
    size_t len;
    char key[];            /* NUL-terminated */
};

struct tally;

/* A table of at most max keys (max >= 2). Free with tally_free. */
struct tally *tally_new(size_t max);
void tally_free(struct tally *t);

/* The entry for key[0..n), added with zero counts when new (dropping the least counted keys
 * first when the table is full). The pointer is valid until the next tally_get. */
struct tally_entry *tally_get(struct tally *t, const char *key, size_t n);

/* Count one record with label index `label` for the entry (the array grows as needed). */
void tally_count_label(struct tally_entry *e, uint32_t label);

/* The n entries with the highest counts, highest first (equal counts: by key), into
 * out[0..n); returns how many there are (fewer when the table holds fewer). Valid until the
 * next tally_get. */
size_t tally_top(struct tally *t, size_t n, const struct tally_entry **out);

size_t tally_size(const struct tally *t);      /* keys held */
uint64_t tally_dropped(const struct tally *t); /* keys dropped so far */
uint64_t tally_shortfall(const struct tally *t);

#endif
