/* labels.c: a job's output read as it grows, its labels and phrases counted (see labels.h). */
#include "serve/labels.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "serve/phrases.h"
#include "serve/tally.h"

struct label_watch {
    char *path, *label, *text;
    ino_t inode;
    dev_t device;
    int64_t offset;              /* bytes of whole lines read */
    uint64_t records, labelled, bad_lines;
    struct tally *labels, *phrases;
    struct buf line;             /* scratch: a value as text */
};

struct label_watch *labels_new(const char *path, const char *label, const char *text)
{
    struct label_watch *w = rn_calloc(1, sizeof *w);
    w->path = rn_strdup(path);
    w->label = rn_strdup(label);
    w->text = text ? rn_strdup(text) : NULL;
    w->labels = tally_new(LABELS_MAX);
    w->phrases = tally_new(LABELS_PHRASES_MAX);
    buf_init(&w->line);
    return w;
}

void labels_free(struct label_watch *w)
{
    if (!w) return;
    tally_free(w->labels);
    tally_free(w->phrases);
    buf_free(&w->line);
    free(w->path);
    free(w->label);
    free(w->text);
    free(w);
}

const char *labels_field(const struct label_watch *w) { return w->label; }
const char *labels_text_field(const struct label_watch *w) { return w->text ? w->text : ""; }

static void reset(struct label_watch *w, const struct stat *st)
{
    tally_free(w->labels);
    tally_free(w->phrases);
    w->labels = tally_new(LABELS_MAX);
    w->phrases = tally_new(LABELS_PHRASES_MAX);
    w->records = w->labelled = w->bad_lines = 0;
    w->offset = 0;
    w->inode = st->st_ino;
    w->device = st->st_dev;
}

static void on_phrase(void *ctx, const char *phrase, size_t len, int words)
{
    (void)words;
    struct label_watch *w = ctx;
    struct tally_entry *e = tally_get(w->phrases, phrase, len);
    if (e->mark == w->records) return; /* once per record */
    e->mark = w->records;
    e->count++;
}

/* A scalar's text as the label: strings as they are (visible UTF-8), numbers and booleans as
 * JSON writes them. NULL for null, objects and arrays. */
static const char *scalar_text(struct label_watch *w, json_t *v, size_t *len)
{
    buf_clear(&w->line);
    if (json_is_string(v)) {
        buf_put_visible(&w->line, json_string_value(v), json_string_length(v), 200);
    } else if (json_is_integer(v)) {
        buf_printf(&w->line, "%lld", (long long)json_integer_value(v));
    } else if (json_is_real(v)) {
        char text[RN_DOUBLE_MAX];
        rn_format_double(text, json_real_value(v));
        buf_puts(&w->line, text);
    } else if (json_is_boolean(v)) {
        buf_puts(&w->line, json_is_true(v) ? "true" : "false");
    } else {
        return NULL;
    }
    *len = w->line.len;
    return w->line.data ? w->line.data : "";
}

static void count_line(struct label_watch *w, const char *line, size_t n)
{
    json_t *o = json_loadb(line, n, 0, NULL);
    if (!json_is_object(o)) {
        w->bad_lines++;
        json_decref(o);
        return;
    }
    w->records++;
    size_t len;
    const char *label = scalar_text(w, json_object_get(o, w->label), &len);
    if (label && len) {
        tally_get(w->labels, label, len)->count++;
        w->labelled++;
    }
    json_t *text = w->text ? json_object_get(o, w->text) : NULL;
    if (json_is_string(text)) phrases_each(json_string_value(text), json_string_length(text), on_phrase, w);
    json_decref(o);
}

int labels_update(struct label_watch *w, struct rn_err *err)
{
    int fd = open(w->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? 0 : rn_fail(err, "%s: %s", w->path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st)) {
        int e = errno;
        close(fd);
        return rn_fail(err, "%s: %s", w->path, strerror(e));
    }
    if (st.st_ino != w->inode || st.st_dev != w->device || st.st_size < w->offset) reset(w, &st);
    int64_t want = st.st_size - w->offset;
    if (want > (int64_t)LABELS_READ_MAX) want = LABELS_READ_MAX;
    if (want <= 0) {
        close(fd);
        return 0;
    }
    char *data = rn_malloc((size_t)want);
    ssize_t got = pread(fd, data, (size_t)want, (off_t)w->offset);
    int e = errno;
    close(fd);
    if (got < 0) {
        free(data);
        return rn_fail(err, "%s: %s", w->path, strerror(e));
    }
    size_t start = 0;
    for (size_t i = 0; i < (size_t)got; i++) {
        if (data[i] != '\n') continue;
        if (i > start) count_line(w, data + start, i - start);
        start = i + 1;
    }
    if (start == 0 && (size_t)got == LABELS_READ_MAX) { /* one line longer than a read: skip it whole */
        w->bad_lines++;
        start = (size_t)got;
    }
    w->offset += (int64_t)start; /* a torn last line is read again once whole */
    free(data);
    return 0;
}

/* The n most counted keys of t, most first: [{key_name: key, count: N}, ...] (caller owns). */
static json_t *top_json(struct tally *t, size_t n, const char *key_name)
{
    const struct tally_entry *top[LABELS_PHRASES_SHOWN > LABELS_MAX ? LABELS_PHRASES_SHOWN : LABELS_MAX];
    if (n > sizeof top / sizeof top[0]) n = sizeof top / sizeof top[0];
    n = tally_top(t, n, top);
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *entry = json_object();
        json_object_set_new(entry, key_name, json_stringn(top[i]->key, top[i]->len));
        json_object_set_new(entry, "count", json_integer((json_int_t)top[i]->count));
        json_array_append_new(list, entry);
    }
    return list;
}

json_t *labels_json(const struct label_watch *w)
{
    json_t *o = json_object();
    json_object_set_new(o, "path", json_string(w->path));
    json_object_set_new(o, "label", json_string(w->label));
    json_object_set_new(o, "text", w->text ? json_string(w->text) : json_null());
    json_object_set_new(o, "records", json_integer((json_int_t)w->records));
    json_object_set_new(o, "labelled", json_integer((json_int_t)w->labelled));
    json_object_set_new(o, "bad_lines", json_integer((json_int_t)w->bad_lines));
    json_object_set_new(o, "labels", top_json(w->labels, LABELS_MAX, "label"));
    json_object_set_new(o, "phrases", top_json(w->phrases, LABELS_PHRASES_SHOWN, "text"));
    return o;
}
