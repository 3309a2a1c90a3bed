/* parse.c: the CSV source's parsing: the file fed to libcsv one line-terminated piece at a
 * time, so every row ends at a known byte offset (its position for acknowledgements and
 * resume), and the complete rows kept in c->raw (struct rowbuf) until they are converted.
 * Runs in the reader thread or the job's thread, never both (see csv_int.h). */
#include <errno.h>
#include <malloc.h>
#include <string.h>
#include <unistd.h>

#include "sources/csv/csv_int.h"

static void on_field(void *s, size_t len, void *data)
{
    struct csv_source *c = data;
    struct rowbuf *b = &c->raw;
    size_t column = b->nfield_slots - b->building_first;
    c->building_bytes += len + 1;
    /* Only the bytes of columns a record uses are kept (the width is still counted); a bad
     * row's raw text then shows the kept columns only. */
    if (c->wanted && column < c->ncolumns && !c->wanted[column] && !c->reading_header) len = 0;
    if (b->nfield_slots == b->field_cap) {
        b->field_cap = b->field_cap ? b->field_cap * 2 : 64;
        b->field_off = rn_realloc(b->field_off, b->field_cap * sizeof *b->field_off);
        b->field_len = rn_realloc(b->field_len, b->field_cap * sizeof *b->field_len);
    }
    size_t slot = b->nfield_slots++;
    b->field_len[slot] = len;
    if (len == 0) { /* every empty field is the NUL at offset 0 */
        b->field_off[slot] = 0;
        return;
    }
    b->field_off[slot] = b->data.len;
    buf_put(&b->data, s, len);
    buf_putc(&b->data, '\0');
}

static struct row *add_row(struct rowbuf *b)
{
    if (b->nrows == b->rows_cap) {
        b->rows_cap = b->rows_cap ? b->rows_cap * 2 : 16;
        b->rows = rn_realloc(b->rows, b->rows_cap * sizeof *b->rows);
    }
    return &b->rows[b->nrows++];
}

static void on_row(int terminator, void *data)
{
    (void)terminator;
    struct csv_source *c = data;
    struct rowbuf *b = &c->raw;
    struct row *r = add_row(b);
    r->first = b->building_first;
    r->count = b->nfield_slots - b->building_first;
    r->line = c->next_row_line;
    r->end_offset = c->piece_end;
    r->bytes = c->building_bytes;
    c->building_bytes = 0;
    b->building_first = b->nfield_slots;
}

void csvsrc_rowbuf_clear(struct rowbuf *b)
{
    buf_clear(&b->data);
    buf_putc(&b->data, '\0'); /* offset 0: the empty field */
    b->nfield_slots = b->building_first = 0;
    b->nrows = b->row_next = 0;
}

void csvsrc_rowbuf_free(struct rowbuf *b)
{
    buf_free(&b->data);
    free(b->field_off);
    free(b->field_len);
    free(b->rows);
}


/* libcsv grows its field buffer by a fixed block (128 bytes): linear growth, quadratic
 * copying for a huge field. Grow geometrically instead, using the allocator's own size. */
static void *grow_geometric(void *ptr, size_t size)
{
    if (ptr && malloc_usable_size(ptr) >= size) return ptr;
    size_t have = ptr ? malloc_usable_size(ptr) : 0;
    size_t want = have * 2 > size ? have * 2 : size;
    return realloc(ptr, want);
}

int csvsrc_parser_reset(struct csv_source *c, struct rn_err *err)
{
    if (csv_init(&c->parser, (unsigned char)c->parser_options) != 0)
        return rn_fail(err, "%s: cannot initialise the CSV parser", c->path);
    csv_set_delim(&c->parser, c->delimiter);
    csv_set_quote(&c->parser, c->quote);
    csv_set_space_func(&c->parser, field_type_no_space); /* keep spaces: they are data */
    csv_set_realloc_func(&c->parser, grow_geometric);
    return 0;
}

static int fill_chunk(struct csv_source *c, struct rn_err *err)
{
    c->chunk_base += (int64_t)c->chunk_len;
    c->chunk_len = c->chunk_pos = 0;
    for (;;) {
        ssize_t n = read(c->fd, c->chunk, CHUNK_SIZE);
        if (n < 0) {
            if (errno == EINTR) continue;
            return rn_fail(err, "%s: read error at byte %lld: %s", c->path, (long long)c->chunk_base, strerror(errno));
        }
        c->chunk_len = (size_t)n;
        if (n == 0) c->eof = 1;
        return 0;
    }
}

void csvsrc_compact(struct rowbuf *b)
{
    if (b->row_next < b->nrows) return;
    size_t keep_from = b->building_first;
    size_t keep = b->nfield_slots - keep_from;
    size_t base = 0; /* the first byte kept: the first non-empty field of the row being built */
    for (size_t i = keep_from; i < b->nfield_slots && !base; i++) base = b->field_off[i];
    if (base) {
        memmove(b->data.data + 1, b->data.data + base, b->data.len - base);
        b->data.len = 1 + b->data.len - base;
    } else {
        b->data.len = 1;
    }
    b->data.data[b->data.len] = '\0';
    for (size_t i = 0; i < keep; i++) {
        size_t off = b->field_off[keep_from + i];
        b->field_off[i] = off ? off - base + 1 : 0;
        b->field_len[i] = b->field_len[keep_from + i];
    }
    b->nfield_slots = keep;
    b->building_first = 0;
    b->nrows = b->row_next = 0;
}

int csvsrc_parse_more(struct csv_source *c, struct rn_err *err)
{
    struct rowbuf *b = &c->raw;
    size_t queued = b->nrows;
    while (b->nrows == queued) {
        if (c->chunk_pos == c->chunk_len) {
            if (c->finished) return 0;
            if (fill_chunk(c, err)) return -1;
            if (c->eof) {
                if (c->follow && !c->draining) { /* more may come */ c->eof = 0; return 0; }
                c->finished = 1;
                c->piece_end = c->chunk_base;
                if (csv_fini(&c->parser, on_field, on_row, c) != 0) {
                    c->error_line = c->next_row_line;
                    rn_fail(err, "line %lld: unterminated quoted field at end of file", (long long)c->next_row_line);
                    b->nfield_slots = b->building_first;
                    return -1;
                }
                continue;
            }
            if (c->chunk_base == 0 && c->chunk_len >= 3 && memcmp(c->chunk, "\xEF\xBB\xBF", 3) == 0) {
                c->chunk_pos = 3; /* UTF-8 byte order mark */
                if (c->chunk_pos == c->chunk_len) continue; /* nothing after it: no empty piece */
            }
        }
        /* the next piece: up to and including the next CR or LF */
        const char *start = c->chunk + c->chunk_pos;
        size_t avail = c->chunk_len - c->chunk_pos;
        const char *lf = memchr(start, '\n', avail);
        size_t piece = lf ? (size_t)(lf - start) + 1 : avail;
        const char *cr = memchr(start, '\r', piece);
        if (cr) piece = (size_t)(cr - start) + 1;
        c->piece_end = c->chunk_base + (int64_t)(c->chunk_pos + piece);
        size_t before_rows = b->nrows;
        int64_t row_line = c->next_row_line; /* where the row this piece is part of began */
        size_t parsed = csv_parse(&c->parser, start, piece, on_field, on_row, c);
        c->chunk_pos += piece;
        int ended_line = start[piece - 1] == '\n';
        if (ended_line) c->line++;
        /* blank lines are skipped by libcsv; a line that ends inside an open quoted first field is not blank */
        if (b->nrows > before_rows || (ended_line && b->nfield_slots == b->building_first && !c->parser.quoted))
            c->next_row_line = c->line;
        if (parsed < piece) {
            int64_t bad_line = c->error_line = row_line;
            csv_free(&c->parser);
            b->nfield_slots = b->building_first;
            c->building_bytes = 0;
            if (csvsrc_parser_reset(c, err)) return -1;
            /* skip to the end of the current line so the next row starts clean */
            while (!ended_line && c->chunk_pos < c->chunk_len) {
                const char *s2 = c->chunk + c->chunk_pos;
                const char *nl = memchr(s2, '\n', c->chunk_len - c->chunk_pos);
                if (!nl) { c->chunk_pos = c->chunk_len; break; }
                c->chunk_pos += (size_t)(nl - s2) + 1;
                c->line++;
                ended_line = 1;
            }
            c->next_row_line = c->line;
            return rn_fail(err, "line %lld: malformed quoting (a quote inside an unquoted field or text after a closing quote)",
                           (long long)bad_line);
        }
        /* a record still open after this piece (an unbalanced quote, or a huge field) must not
         * grow without bound: past the limit it is dropped up to the end of its line. A record
         * that ended is checked whole in convert_row. */
        if ((int64_t)(c->building_bytes + c->parser.entry_pos) > c->max_record_bytes) {
            int64_t bad_line = c->error_line = c->next_row_line;
            csv_free(&c->parser);
            b->nfield_slots = b->building_first;
            c->building_bytes = 0;
            if (csvsrc_parser_reset(c, err)) return -1;
            /* skip the rest of the oversized record up to the end of its line */
            for (;;) {
                if (c->chunk_pos == c->chunk_len) {
                    if (fill_chunk(c, err)) return -1;
                    if (c->eof) { c->eof = c->follow && !c->draining ? 0 : 1; break; }
                }
                const char *s2 = c->chunk + c->chunk_pos;
                const char *nl = memchr(s2, '\n', c->chunk_len - c->chunk_pos);
                if (!nl) { c->chunk_pos = c->chunk_len; continue; }
                c->chunk_pos += (size_t)(nl - s2) + 1;
                c->line++;
                break;
            }
            c->next_row_line = c->line;
            return rn_fail(err, "line %lld: record larger than max_record_bytes (%lld bytes); an unbalanced quote?",
                           (long long)bad_line, (long long)c->max_record_bytes);
        }
    }
    return 1;
}

