/* exposition.c: text expositions merged by family (see exposition.h). A scrape merges some
 * tens of texts of some tens of families: families are found by a linear walk. */
#include "serve/exposition.h"

#include <stdlib.h>
#include <string.h>

struct family {
    const char *name;      /* points into a text; not NUL-terminated */
    size_t name_len;
    const char *help, *type; /* their whole lines, newline excluded */
    size_t help_len, type_len;
    const char *type_word; /* "counter", "gauge", ... (into the TYPE line) */
    size_t type_word_len;
    struct buf samples;
};

struct line {
    const char *s;
    size_t n;
};

/* The next line of t from *pos, without its newline; 0 at the end. */
static int next_line(const struct exposition_text *t, size_t *pos, struct line *l)
{
    if (*pos >= t->len) return 0;
    const char *start = t->data + *pos, *nl = memchr(start, '\n', t->len - *pos);
    l->s = start;
    l->n = nl ? (size_t)(nl - start) : t->len - *pos;
    *pos += l->n + (nl != NULL);
    return 1;
}

/* "# KIND NAME rest": 1 with the name's place when l is such a comment. */
static int comment(const struct line *l, const char *kind, const char **name, size_t *name_len)
{
    size_t k = strlen(kind);
    if (l->n < k + 3 || memcmp(l->s, "# ", 2) || memcmp(l->s + 2, kind, k) || l->s[2 + k] != ' ') return 0;
    const char *p = l->s + 3 + k, *end = l->s + l->n, *q = p;
    while (q < end && *q != ' ') q++;
    if (q == p) return 0;
    *name = p;
    *name_len = (size_t)(q - p);
    return 1;
}

static struct family *find(struct family *fams, size_t n, const char *name, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (fams[i].name_len == len && !memcmp(fams[i].name, name, len)) return &fams[i];
    return NULL;
}

size_t exposition_merge(const struct exposition_text *texts, size_t n, struct buf *out)
{
    struct family *fams = NULL;
    size_t nfams = 0, cap = 0, clashes = 0;
    for (size_t t = 0; t < n; t++) {
        size_t pos = 0;
        struct line l;
        struct family *cur = NULL;   /* the family the sample lines belong to; NULL: dropped */
        const char *help = NULL;     /* the HELP line before its TYPE */
        size_t help_len = 0;
        while (next_line(&texts[t], &pos, &l)) {
            const char *name;
            size_t name_len;
            if (comment(&l, "HELP", &name, &name_len)) {
                help = l.s;
                help_len = l.n;
                cur = NULL;
                continue;
            }
            if (comment(&l, "TYPE", &name, &name_len)) {
                const char *word = name + name_len + 1, *end = l.s + l.n;
                size_t word_len = word < end ? (size_t)(end - word) : 0;
                cur = find(fams, nfams, name, name_len);
                if (!cur) {
                    if (nfams == cap) {
                        cap = cap ? cap * 2 : 64;
                        fams = rn_realloc(fams, cap * sizeof *fams);
                    }
                    cur = &fams[nfams++];
                    memset(cur, 0, sizeof *cur);
                    cur->name = name;
                    cur->name_len = name_len;
                    int same = help && help_len > 7 + name_len && !memcmp(help + 7, name, name_len);
                    cur->help = same ? help : NULL;
                    cur->help_len = same ? help_len : 0;
                    cur->type = l.s;
                    cur->type_len = l.n;
                    cur->type_word = word;
                    cur->type_word_len = word_len;
                    buf_init(&cur->samples);
                } else if (cur->type_word_len != word_len || memcmp(cur->type_word, word, word_len)) {
                    clashes++;
                    cur = NULL;
                }
                help = NULL;
                continue;
            }
            if (!cur || !l.n || l.s[0] == '#') continue;
            buf_put(&cur->samples, l.s, l.n);
            buf_putc(&cur->samples, '\n');
        }
    }
    for (size_t i = 0; i < nfams; i++) {
        if (fams[i].help) {
            buf_put(out, fams[i].help, fams[i].help_len);
            buf_putc(out, '\n');
        }
        buf_put(out, fams[i].type, fams[i].type_len);
        buf_putc(out, '\n');
        if (fams[i].samples.len) buf_put(out, fams[i].samples.data, fams[i].samples.len);
        buf_free(&fams[i].samples);
    }
    free(fams);
    return clashes;
}
