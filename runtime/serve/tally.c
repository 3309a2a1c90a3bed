/* tally.c: a bounded counting table (see tally.h): open addressing with linear probing over
 * twice as many slots as keys; dropping keys rebuilds the slots. */
#include "serve/tally.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

struct tally {
    struct tally_entry **slots;
    size_t nslots;   /* a power of two, at least 2 * max */
    size_t size, max;
    uint64_t dropped, shortfall;
};

static uint32_t hash_key(const char *key, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)key[i]) * 0x100000001b3ull;
    return (uint32_t)(h ^ h >> 32);
}

struct tally *tally_new(size_t max)
{
    struct tally *t = rn_calloc(1, sizeof *t);
    t->max = max < 2 ? 2 : max;
    t->nslots = 16;
    while (t->nslots < 2 * t->max) t->nslots *= 2;
    t->slots = rn_calloc(t->nslots, sizeof *t->slots);
    return t;
}

static void free_entry(struct tally_entry *e)
{
    free(e->by_label);
    free(e);
}

void tally_free(struct tally *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->nslots; i++)
        if (t->slots[i]) free_entry(t->slots[i]);
    free(t->slots);
    free(t);
}

static void place(struct tally *t, struct tally_entry *e)
{
    size_t mask = t->nslots - 1, i = e->hash & mask;
    while (t->slots[i]) i = (i + 1) & mask;
    t->slots[i] = e;
}

/* The k-th smallest of v[0..n) (k < n); reorders v. Wirth's selection (Hoare's partition). */
static uint64_t select_kth(uint64_t *v, size_t n, size_t k)
{
    ptrdiff_t lo = 0, hi = (ptrdiff_t)n - 1, target = (ptrdiff_t)k;
    while (lo < hi) {
        uint64_t pivot = v[target];
        ptrdiff_t i = lo, j = hi;
        do {
            while (v[i] < pivot) i++;
            while (pivot < v[j]) j--;
            if (i <= j) {
                uint64_t x = v[i]; v[i] = v[j]; v[j] = x;
                i++;
                j--;
            }
        } while (i <= j);
        if (j < target) lo = i;
        if (target < i) hi = j;
    }
    return v[k];
}

/* Drop every key whose count is at most the median count. */
static void prune(struct tally *t)
{
    uint64_t *counts = rn_malloc(t->size * sizeof *counts);
    struct tally_entry **kept = rn_malloc(t->size * sizeof *kept);
    size_t n = 0;
    for (size_t i = 0; i < t->nslots; i++)
        if (t->slots[i]) counts[n++] = t->slots[i]->count;
    uint64_t median = select_kth(counts, n, n / 2);
    size_t nkept = 0;
    for (size_t i = 0; i < t->nslots; i++) {
        struct tally_entry *e = t->slots[i];
        if (!e) continue;
        if (e->count <= median) { free_entry(e); t->dropped++; }
        else kept[nkept++] = e;
        t->slots[i] = NULL;
    }
    for (size_t i = 0; i < nkept; i++) place(t, kept[i]);
    t->size = nkept;
    t->shortfall += median;
    free(counts);
    free(kept);
}

struct tally_entry *tally_get(struct tally *t, const char *key, size_t n)
{
    uint32_t h = hash_key(key, n);
    size_t mask = t->nslots - 1, i = h & mask;
    for (struct tally_entry *e; (e = t->slots[i]); i = (i + 1) & mask)
        if (e->hash == h && e->len == n && memcmp(e->key, key, n) == 0) return e;
    if (t->size == t->max) prune(t);
    struct tally_entry *e = rn_calloc(1, sizeof *e + n + 1);
    memcpy(e->key, key, n);
    e->len = n;
    e->hash = h;
    place(t, e);
    t->size++;
    return e;
}

void tally_count_label(struct tally_entry *e, uint32_t label)
{
    if (label >= e->by_label_len) {
        uint32_t len = label + 1 < 8 ? 8 : label + 1;
        e->by_label = rn_realloc(e->by_label, len * sizeof *e->by_label);
        memset(e->by_label + e->by_label_len, 0, (len - e->by_label_len) * sizeof *e->by_label);
        e->by_label_len = len;
    }
    e->by_label[label]++;
}

static int by_count_then_key(const void *a, const void *b)
{
    const struct tally_entry *x = *(const struct tally_entry *const *)a, *y = *(const struct tally_entry *const *)b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return strcmp(x->key, y->key);
}

size_t tally_top(struct tally *t, size_t n, const struct tally_entry **out)
{
    if (t->size == 0 || n == 0) return 0;
    const struct tally_entry **all = rn_malloc(t->size * sizeof *all);
    size_t k = 0;
    for (size_t i = 0; i < t->nslots; i++)
        if (t->slots[i]) all[k++] = t->slots[i];
    qsort(all, k, sizeof *all, by_count_then_key);
    if (n > k) n = k;
    memcpy(out, all, n * sizeof *out);
    free(all);
    return n;
}

size_t tally_size(const struct tally *t) { return t->size; }
uint64_t tally_dropped(const struct tally *t) { return t->dropped; }
uint64_t tally_shortfall(const struct tally *t) { return t->shortfall; }
