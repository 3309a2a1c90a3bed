/* reader.c: the CSV source's batches (rows checked and converted to typed cells, bad rows
 * and parse errors among them in file order) and the reader thread that fills them ahead of
 * the job when a file is read to its end. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sources/csv/csv_int.h"

void csvsrc_batch_clear(struct batch *b)
{
    if (b->text.cap > 8 * BATCH_BYTES) buf_free(&b->text); /* after a huge record */
    buf_clear(&b->text);
    b->nitems = b->next = b->ncells = 0;
    b->last = 0;
}

void csvsrc_batch_free(struct batch *b)
{
    buf_free(&b->text);
    free(b->items);
    free(b->cells);
}

static struct item *add_item(struct batch *b, enum item_kind kind, int64_t line, int64_t end_offset)
{
    if (b->nitems == b->items_cap) {
        b->items_cap = b->items_cap ? b->items_cap * 2 : 64;
        b->items = rn_realloc(b->items, b->items_cap * sizeof *b->items);
    }
    struct item *it = &b->items[b->nitems++];
    it->kind = kind;
    it->line = line;
    it->end_offset = end_offset;
    it->cell = b->ncells;
    it->text_off = b->text.len;
    it->raw_len = 0;
    return it;
}


/* Append the raw row as readable text for a dead-letter record (invalid UTF-8 shown as \xNN). */
static void put_raw_row(struct csv_source *c, struct buf *b, const struct row *r)
{
    const struct rowbuf *rb = &c->raw;
    size_t start = b->len;
    for (size_t i = 0; i < r->count && b->len - start < 4096; i++) {
        if (i) buf_putc(b, (char)c->delimiter);
        buf_put_visible(b, rb->data.data + rb->field_off[r->first + i], rb->field_len[r->first + i], SIZE_MAX);
    }
    if (b->len - start > 4096) { b->len = start + 4096; buf_puts(b, "..."); }
}

/* The row is bad: its message (printf-style) and raw text go into the batch instead of cells. */
static void add_bad_row(struct csv_source *c, struct batch *b, const struct row *r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void add_bad_row(struct csv_source *c, struct batch *b, const struct row *r, const char *fmt, ...)
{
    struct item *it = add_item(b, ITEM_BAD_ROW, r->line, r->end_offset);
    char msg[sizeof ((struct rn_err *)0)->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    buf_puts(&b->text, msg);
    buf_putc(&b->text, '\0');
    size_t raw_start = b->text.len;
    put_raw_row(c, &b->text, r);
    it->raw_len = b->text.len - raw_start;
}

/* A parse error takes its place among the rows, so rows and errors keep the file's order. */
static void add_parse_error(struct csv_source *c, struct batch *b, const struct rn_err *err)
{
    add_item(b, ITEM_PARSE_ERROR, c->error_line, c->chunk_base + (int64_t)c->chunk_pos);
    buf_puts(&b->text, err->msg);
    buf_putc(&b->text, '\0');
}

/* Check and convert a complete row into the batch: a record's cells, or a bad row. */
static void convert_row(struct csv_source *c, struct batch *b, const struct row *r)
{
    const struct rowbuf *rb = &c->raw;
    if ((int64_t)r->bytes > c->max_record_bytes) {
        add_bad_row(c, b, r, "line %lld: record of %zu bytes is larger than max_record_bytes (%lld bytes)",
                    (long long)r->line, r->bytes, (long long)c->max_record_bytes);
        return;
    }
    if (r->count != c->ncolumns) {
        add_bad_row(c, b, r, "line %lld: expected %zu fields, got %zu", (long long)r->line, c->ncolumns, r->count);
        return;
    }
    if (b->ncells + c->nfields > b->cells_cap) {
        b->cells_cap = b->cells_cap ? b->cells_cap * 2 : 1024;
        if (b->cells_cap < b->ncells + c->nfields) b->cells_cap = b->ncells + c->nfields;
        b->cells = rn_realloc(b->cells, b->cells_cap * sizeof *b->cells);
    }
    size_t text_start = b->text.len;
    struct cell *cells = &b->cells[b->ncells];
    for (size_t i = 0; i < c->nfields; i++) {
        const struct out_field *f = &c->fields[i];
        const char *s = rb->data.data + rb->field_off[r->first + (size_t)f->column];
        size_t n = rb->field_len[r->first + (size_t)f->column];
        size_t bad;
        if (!rn_utf8_valid(s, n, &bad)) {
            b->text.len = text_start;
            add_bad_row(c, b, r, "line %lld: column '%s' is not valid UTF-8 (byte %zu)", (long long)r->line,
                        c->columns[f->column], bad + 1);
            return;
        }
        if (field_type_convert(f->type, s, n, &cells[i].value)) {
            b->text.len = text_start;
            add_bad_row(c, b, r, "line %lld: column '%s': '%.60s' is not a valid %s", (long long)r->line,
                        c->columns[f->column], s, field_type_name(f->type));
            return;
        }
        if (cells[i].value.kind == FV_STRING) {
            cells[i].text_off = b->text.len;
            cells[i].text_len = n;
            buf_put(&b->text, s, n);
        }
    }
    add_item(b, ITEM_RECORD, r->line, r->end_offset);
    b->ncells += c->nfields;
}

void csvsrc_read_rows(struct csv_source *c, struct batch *b)
{
    struct rowbuf *raw = &c->raw;
    while (b->nitems < BATCH_ROWS && b->text.len < BATCH_BYTES) {
        if (raw->row_next < raw->nrows) { /* rows queued (the header's parse may leave some) */
            convert_row(c, b, &raw->rows[raw->row_next++]);
            continue;
        }
        struct rn_err err;
        csvsrc_compact(raw);
        int rc = csvsrc_parse_more(c, &err);
        if (rc < 0) add_parse_error(c, b, &err);
        else if (rc == 0) break;
    }
}

/* ---- the reader thread ----
 * When a file is read to its end (not followed), a thread parses and converts it ahead of the
 * job: libcsv's pass over every byte then runs on another core while the job's thread runs
 * Lua. Batches come over through `ready` and go back emptied through `spare`; order, lines and
 * offsets are exactly those of reading in the job's thread. */

static void *reader_main(void *arg)
{
    struct csv_source *c = arg;
    for (;;) {
        pthread_mutex_lock(&c->lock);
        while (!c->nspare && !c->stopping) pthread_cond_wait(&c->changed, &c->lock);
        if (c->stopping) {
            pthread_mutex_unlock(&c->lock);
            return NULL;
        }
        struct batch *b = c->spare[--c->nspare];
        pthread_mutex_unlock(&c->lock);
        csvsrc_batch_clear(b);
        csvsrc_read_rows(c, b);
        b->last = c->finished; /* not following: only the end stops read_rows short */
        pthread_mutex_lock(&c->lock);
        c->ready[c->nready++] = b;
        int wake = c->wake_wanted;
        c->wake_wanted = 0;
        pthread_cond_broadcast(&c->changed);
        pthread_mutex_unlock(&c->lock);
        if (wake) loop_wake(c->env->loop);
        if (b->last) return NULL;
    }
}

void csvsrc_reader_start(struct csv_source *c)
{
    c->nready = c->nspare = 0;
    c->stopping = 0;
    for (int i = 0; i < BATCHES; i++)
        if (&c->batches[i] != c->out) c->spare[c->nspare++] = &c->batches[i];
    c->threaded = pthread_create(&c->thread, NULL, reader_main, c) == 0;
}

int csvsrc_reader_next_batch(struct csv_source *c)
{
    pthread_mutex_lock(&c->lock);
    if (!c->env->loop) /* no loop to wake (a source used outside a run): wait here */
        while (!c->nready) pthread_cond_wait(&c->changed, &c->lock);
    int got = c->nready > 0;
    if (got) { /* the batch read out goes back only now: the reader has spares meanwhile */
        c->spare[c->nspare++] = c->out;
        pthread_cond_broadcast(&c->changed);
        c->out = c->ready[0];
        memmove(c->ready, c->ready + 1, --c->nready * sizeof *c->ready);
    } else {
        c->wake_wanted = c->env->loop != NULL;
    }
    pthread_mutex_unlock(&c->lock);
    return got;
}

void csvsrc_reader_stop(struct csv_source *c)
{
    if (!c->threaded) return;
    pthread_mutex_lock(&c->lock);
    c->stopping = 1;
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL);
    c->threaded = 0;
}

