/* csv_source.c: source.csv, records from a CSV file parsed with libcsv.
 *
 * The file is fed to libcsv one line-terminated piece at a time, so every row ends at a
 * known byte offset: that offset is the row's position for acknowledgements and resume.
 * A row with the wrong width, invalid UTF-8 or a value that does not convert to its declared
 * type is returned as SRC_BAD (the pipeline dead-letters it with the line number). */
#include <csv.h>
#include <dirent.h>
#include <fnmatch.h>
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <malloc.h>
#include <pthread.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fingerprint.h"
#include "lua/job.h"
#include "formats/field_type.h"
#include "engine/plugin.h"

#define CHUNK_SIZE (256 * 1024)


struct out_field {
    char *name;          /* name in the record */
    int column;          /* index in the CSV row */
    enum field_type type;
};

struct row {
    size_t first;        /* index of its first field in field_off/field_len */
    size_t count;
    size_t bytes;        /* its fields' bytes, every column counted */
    int64_t line;
    int64_t end_offset;  /* byte offset just after the row */
};

/* Rows as libcsv gives them: the parser's own, each row converted as soon as it is complete. */
struct rowbuf {
    struct buf data;          /* field bytes, each field NUL-terminated */
    size_t *field_off, *field_len;
    size_t nfield_slots, field_cap;
    struct row *rows;
    size_t nrows, rows_cap, row_next;
    size_t building_first;    /* first field of the row being built */
};

/* One output field of a record, converted to its type; a string's bytes are in batch.text. */
struct cell {
    struct field_value value;
    size_t text_off, text_len;
};

enum item_kind { ITEM_RECORD, ITEM_BAD_ROW, ITEM_PARSE_ERROR };

/* What csv_next returns next: a record, a row that is bad, or a parse error, in file order. */
struct item {
    enum item_kind kind;
    int64_t line;
    int64_t end_offset;       /* where reading goes on after it */
    size_t cell;              /* a record: its first cell */
    size_t text_off;          /* the others: the message (NUL-terminated), then for a bad row
                               * its raw text of raw_len bytes */
    size_t raw_len;
};

/* Converted rows, handed from the parser to csv_next: a few of them pass back and forth when
 * a reader thread parses ahead; one is enough without. */
struct batch {
    _Alignas(64) struct item *items; /* own cache lines: the two threads write neighbours */
    size_t nitems, items_cap, next;
    struct cell *cells;
    size_t ncells, cells_cap;
    struct buf text;          /* string values, messages and raw rows */
    int last;                 /* reader thread: the file ends after these items */
};

#define BATCHES 4
#define BATCH_ROWS 512           /* a batch is handed over at this many items, */
#define BATCH_BYTES (128 * 1024) /* or this much text */

struct csv_source {
    struct job_env *env;
    char *path;               /* the file being read (messages, dead letters) */
    char *declared_path;      /* the `path` option: a file, or a directory of files */
    char *dir;                /* directory mode: read every matching file in name order */
    char *pattern;            /* file name pattern in directory mode */
    char *current_name;       /* directory mode: name of the file being read */
    char **done_names;        /* directory mode: names by file index */
    int32_t file_index;       /* index of the file being read */
    int32_t done_file;        /* index of the file of the last acknowledged record */
    int header;
    int opts_ref;             /* options, kept until the columns are known */
    char where[512];
    int fields_ready;
    unsigned char *wanted;    /* per column: 1 when a field reads it (NULL: keep all) */
    int64_t header_offset, header_line; /* where the data rows of the current file begin */
    int fd;
    int follow;               /* stream mode: wait for more data at end of file */
    int64_t file_size;
    struct csv_parser parser;
    unsigned char delimiter, quote;
    int parser_options;
    int64_t max_record_bytes;

    char **columns;           /* header names (or the `columns` option) */
    size_t ncolumns;
    struct out_field *fields;
    size_t nfields;
    int names_ref;            /* registry ref: the field names, a Lua sequence */
    int reading_header;       /* keep every column of the row being parsed (its names) */
    size_t building_bytes;    /* bytes of the finished fields of the row being parsed */

    /* reading */
    char *chunk;
    size_t chunk_len, chunk_pos;
    int64_t chunk_base;       /* file offset of chunk[0] */
    int eof;
    int finished;             /* csv_fini done */
    int64_t line;             /* physical line at chunk_pos (1-based) */
    int64_t next_row_line;    /* line where the next row begins */
    int64_t error_line;       /* first line of the row the last parse error dropped */
    int64_t piece_end;        /* file offset after the piece being parsed */

    struct rowbuf raw;        /* the parser's */

    /* converted rows */
    struct batch batches[BATCHES];

    /* csv_next's side, apart from the parser's state (written for every record: sharing a
     * cache line with the reader thread's fields would slow both) */
    _Alignas(64) struct batch *out; /* the batch csv_next is returning from */
    int64_t out_offset;       /* byte offset after the last item returned (progress) */
    int64_t done_offset, done_line; /* acknowledged position */

    /* the reader thread, while one parses the current file: the parsing state above is its
     * own until it is joined; the queues below are shared under `lock` */
    _Alignas(64) int threaded;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    struct batch *ready[BATCHES]; /* filled, in file order */
    size_t nready;
    struct batch *spare[BATCHES]; /* emptied, for the reader to fill */
    size_t nspare;
    int stopping;
};

/* select: { field = "Column", ... } or { "Column", ... }; the columns themselves are known
 * once the file is open (setup_fields). */
static int check_select(lua_State *L, int idx, struct rn_err *err)
{
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int ok = lua_type(L, -1) == LUA_TSTRING && (lua_type(L, -2) == LUA_TSTRING || lua_isinteger(L, -2));
        lua_pop(L, 1);
        if (!ok) {
            lua_pop(L, 1);
            return rn_fail(err, "expected { field = \"Column\", ... } or { \"Column\", ... } (strings)");
        }
    }
    return 0;
}

#define FIELD_TYPES OPT_CHOICES("string", "integer", "number", "boolean")

static const struct option_spec csv_options[] = {
    {"path", OPT_STRING, 1, NULL,
     .help = "the CSV file to read, or a directory of CSV files (read in name order; in stream mode new files are picked up)"},
    {"header", OPT_BOOLEAN, 0, "true", .help = "the first row names the columns"},
    {"columns", OPT_STRING_OR_LIST, 0, NULL, .help = "column names when the file has no header (or to rename all)"},
    {"select", OPT_TABLE, 0, NULL, .help = "{ field = \"Column\", ... } or { \"Column\", ... }: columns to keep, renamed",
     .default_note = "all", .check = check_select},
    {"types", OPT_MAP, 0, NULL, .help = "{ field = type }: the type of a selected field", .default_note = "string",
     .value = OPT_VALUE(OPT_ENUM, .choices = FIELD_TYPES)},
    {"delimiter", OPT_BYTE, 0, ",", .help = "field separator (\"\\t\" for TSV)"},
    {"quote", OPT_BYTE, 0, "\"", .help = "quote character"},
    {"follow", OPT_BOOLEAN, 0, NULL, .help = "at the end of the file, wait for more lines (tail -f)", .default_note = "stream mode"},
    {"pattern", OPT_STRING, 0, "*.csv", .help = "when path is a directory: the files to read, in name order"},
    {"max_record_bytes", OPT_SIZE, 0, "64MB", .help = "a record larger than this is dead-lettered", OPT_AT_LEAST(1)},
    {NULL},
};

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

static void rowbuf_clear(struct rowbuf *b)
{
    buf_clear(&b->data);
    buf_putc(&b->data, '\0'); /* offset 0: the empty field */
    b->nfield_slots = b->building_first = 0;
    b->nrows = b->row_next = 0;
}

static void rowbuf_free(struct rowbuf *b)
{
    buf_free(&b->data);
    free(b->field_off);
    free(b->field_len);
    free(b->rows);
}

static void batch_clear(struct batch *b)
{
    if (b->text.cap > 8 * BATCH_BYTES) buf_free(&b->text); /* after a huge record */
    buf_clear(&b->text);
    b->nitems = b->next = b->ncells = 0;
    b->last = 0;
}

static void batch_free(struct batch *b)
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

/* libcsv grows its field buffer by a fixed block (128 bytes): linear growth, quadratic
 * copying for a huge field. Grow geometrically instead, using the allocator's own size. */
static void *grow_geometric(void *ptr, size_t size)
{
    if (ptr && malloc_usable_size(ptr) >= size) return ptr;
    size_t have = ptr ? malloc_usable_size(ptr) : 0;
    size_t want = have * 2 > size ? have * 2 : size;
    return realloc(ptr, want);
}

static int parser_reset(struct csv_source *c, struct rn_err *err)
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

/* Drop the rows already converted so the buffers do not grow (the row being built stays). */
static void compact(struct rowbuf *b)
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

/* Parse more input into c->raw until at least one more row is queued there. Returns 1 when
 * a row was queued, 0 at end of input (or, when following, no complete row yet), -1 on a
 * parse error (err set; the broken row is discarded and the parser reset). */
static int parse_more(struct csv_source *c, struct rn_err *err)
{
    struct rowbuf *b = &c->raw;
    size_t queued = b->nrows;
    while (b->nrows == queued) {
        if (c->chunk_pos == c->chunk_len) {
            if (c->finished) return 0;
            if (fill_chunk(c, err)) return -1;
            if (c->eof) {
                if (c->follow) { c->eof = 0; return 0; }
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
            if (parser_reset(c, err)) return -1;
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
            if (parser_reset(c, err)) return -1;
            /* skip the rest of the oversized record up to the end of its line */
            for (;;) {
                if (c->chunk_pos == c->chunk_len) {
                    if (fill_chunk(c, err)) return -1;
                    if (c->eof) { c->eof = c->follow ? 0 : 1; break; }
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

static int column_index(struct csv_source *c, const char *name)
{
    for (size_t i = 0; i < c->ncolumns; i++)
        if (strcmp(c->columns[i], name) == 0) return (int)i;
    return -1;
}

/* "; did you mean Summary?" or " (its columns: Id, Summary, ...)" for a name among names. */
static void suggest(char *out, size_t n, const char *name, const char *const *names, size_t count)
{
    const char *near = options_closest(name, names, count);
    if (near) { snprintf(out, n, "; did you mean %s?", near); return; }
    size_t used = (size_t)snprintf(out, n, " (they are");
    for (size_t i = 0; i < count && used < n; i++) used += (size_t)snprintf(out + used, n - used, " %s%s", names[i], i + 1 < count ? "," : ")");
}

static int field_compare(const void *a, const void *b)
{
    const struct out_field *x = a, *y = b;
    return x->column - y->column;
}

/* Build the output fields from select/types once the column names are known. */
static int setup_fields(struct csv_source *c, lua_State *L, int opts, const char *where, struct rn_err *err)
{
    size_t cap = c->ncolumns + 1;
    c->fields = rn_calloc(cap, sizeof *c->fields);
    c->nfields = 0;
    if (opt_push(L, opts, "select")) {
        int sel = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, sel)) {
            /* strings both, or a position and a string: checked (check_select) */
            const char *col_name = lua_tostring(L, -1);
            const char *out_name = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : col_name;
            int col = column_index(c, col_name);
            if (col < 0) {
                char hint[400];
                suggest(hint, sizeof hint, col_name, (const char *const *)c->columns, c->ncolumns);
                rn_fail(err, "%s: source.csv: select: column '%s' is not in %s%s", where, col_name, c->path, hint);
                lua_pop(L, 3);
                return -1;
            }
            if (c->nfields == cap) c->fields = rn_realloc(c->fields, (cap *= 2) * sizeof *c->fields);
            c->fields[c->nfields].name = rn_strdup(out_name);
            c->fields[c->nfields].column = col;
            c->fields[c->nfields].type = FT_STRING;
            c->nfields++;
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        qsort(c->fields, c->nfields, sizeof *c->fields, field_compare);
    } else {
        for (size_t i = 0; i < c->ncolumns; i++) {
            c->fields[i].name = rn_strdup(c->columns[i]);
            c->fields[i].column = (int)i;
            c->fields[i].type = FT_STRING;
        }
        c->nfields = c->ncolumns;
    }
    if (opt_push(L, opts, "types")) {
        int types = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, types)) {
            const char *fname = lua_tostring(L, -2); /* a name and one of FIELD_TYPES: checked */
            enum field_type t = FT_STRING;
            field_type_parse(lua_tostring(L, -1), &t);
            size_t i;
            for (i = 0; i < c->nfields; i++)
                if (strcmp(c->fields[i].name, fname) == 0) break;
            if (i == c->nfields) {
                const char *names[64];
                size_t count = 0;
                for (size_t k = 0; k < c->nfields && count < 64; k++) names[count++] = c->fields[k].name;
                char hint[400];
                suggest(hint, sizeof hint, fname, names, count);
                rn_fail(err, "%s: source.csv: types.%s: no such field among the selected ones%s", where, fname, hint);
                lua_pop(L, 3);
                return -1;
            }
            c->fields[i].type = t;
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    for (size_t i = 0; i < c->nfields; i++) fieldorder_add(c->env, c->fields[i].name);
    lua_createtable(L, (int)c->nfields, 0); /* the names as Lua strings, made once */
    for (size_t i = 0; i < c->nfields; i++) {
        lua_pushstring(L, c->fields[i].name);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    c->names_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    c->wanted = rn_calloc(c->ncolumns, 1);
    for (size_t i = 0; i < c->nfields; i++) c->wanted[c->fields[i].column] = 1;
    return 0;
}

static void csv_close(void *self);

static int name_matches(const struct csv_source *c, const char *name)
{
    return name[0] != '.' && fnmatch(c->pattern, name, 0) == 0;
}

/* The first file in the directory (name order) after `after` (NULL: the first of all), or NULL.
 * The caller frees the result. */
static char *next_file_name(struct csv_source *c, const char *after)
{
    DIR *d = opendir(c->dir);
    if (!d) return NULL;
    char *best = NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!name_matches(c, e->d_name)) continue;
        if (after && strcmp(e->d_name, after) <= 0) continue;
        if (best && strcmp(e->d_name, best) >= 0) continue;
        char full[4096];
        struct stat st;
        snprintf(full, sizeof full, "%s/%s", c->dir, e->d_name);
        if (stat(full, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        free(best);
        best = rn_strdup(e->d_name);
    }
    closedir(d);
    return best;
}

/* Take the header row of the file just opened: the columns (first file) or a check that they
 * are the same (later files of a directory). */
static int read_header(struct csv_source *c, struct rn_err *err)
{
    struct rowbuf *b = &c->raw;
    c->reading_header = 1;
    int rc = parse_more(c, err);
    c->reading_header = 0;
    if (rc < 0) return rn_wrap(err, "%s: header", c->path);
    if (rc == 0) return rn_fail(err, "%s: the file is empty: expected a header row", c->path);
    struct row *r = &b->rows[b->row_next++];
    if (!c->columns) {
        c->columns = rn_calloc(r->count, sizeof *c->columns);
        for (size_t i = 0; i < r->count; i++) {
            c->columns[i] = rn_strndup(b->data.data + b->field_off[r->first + i], b->field_len[r->first + i]);
            c->ncolumns = i + 1;
            if (!rn_utf8_valid(c->columns[i], strlen(c->columns[i]), NULL))
                return rn_fail(err, "%s: line 1: header column %zu is not valid UTF-8", c->path, i + 1);
        }
    } else if (r->count != c->ncolumns) {
        return rn_fail(err, "%s: the header has %zu columns, expected %zu (%s)", c->path, r->count, c->ncolumns,
                       c->dir ? "as in the first file of the directory" : "as `columns` names");
    } else if (c->dir) {
        for (size_t i = 0; i < r->count; i++) {
            const char *name = b->data.data + b->field_off[r->first + i];
            if (strcmp(name, c->columns[i]) != 0)
                return rn_fail(err, "%s: header column %zu is '%s', expected '%s' as in the first file", c->path,
                               i + 1, name, c->columns[i]);
        }
    }
    c->header_offset = c->out_offset = r->end_offset;
    c->header_line = r->line;
    return 0;
}

/* Start reading the file at path from its beginning (reading its header when there is one). */
static int start_file(struct csv_source *c, const char *path, struct rn_err *err)
{
    if (c->fd >= 0) close(c->fd);
    csv_free(&c->parser);
    if (parser_reset(c, err)) return -1;
    free(c->path);
    c->path = rn_strdup(path);
    c->chunk_base = 0;
    c->chunk_len = c->chunk_pos = 0;
    c->eof = c->finished = 0;
    rowbuf_clear(&c->raw);
    batch_clear(c->out);
    c->building_bytes = 0;
    c->out_offset = 0;
    c->line = c->next_row_line = 1;
    c->file_size = 0;
    c->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (c->fd < 0) return rn_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(c->fd, &st) == 0) c->file_size = st.st_size;
    if (c->header && read_header(c, err)) return -1;
    return 0;
}

/* Once the columns are known: the output fields from select and types. */
static int ensure_fields(struct csv_source *c, struct rn_err *err)
{
    if (c->fields_ready || !c->columns) return 0;
    lua_State *L = c->env->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->opts_ref);
    int rc = setup_fields(c, L, lua_gettop(L), c->where, err);
    lua_pop(L, 1);
    if (rc == 0) c->fields_ready = 1;
    return rc;
}

/* Directory mode: open the next file after the current one. 1 when one was opened, 0 when
 * there is none (yet), -1 on error. */
static int open_next_file(struct csv_source *c, struct rn_err *err)
{
    char *name = next_file_name(c, c->current_name);
    if (!name) return 0;
    char full[4096];
    snprintf(full, sizeof full, "%s/%s", c->dir, name);
    free(c->current_name);
    c->current_name = name;
    c->file_index++;
    c->done_names = rn_realloc(c->done_names, ((size_t)c->file_index + 1) * sizeof *c->done_names);
    c->done_names[c->file_index] = rn_strdup(name);
    if (start_file(c, full, err)) return -1;
    if (ensure_fields(c, err)) return -1;
    return 1;
}

static void *csv_open(struct job_env *env, int opts, struct rn_err *err)
{
    lua_State *L = env->L;
    struct csv_source *c = rn_aligned_calloc(_Alignof(struct csv_source), sizeof *c);
    c->env = env;
    c->fd = -1;
    c->opts_ref = c->names_ref = LUA_NOREF;
    c->file_index = -1;
    const char *path = opt_string(L, opts, "path", NULL);
    c->declared_path = rn_strdup(path);
    c->path = rn_strdup(path);
    snprintf(c->where, sizeof c->where, "%s", options_where(L, opts));
    c->delimiter = (unsigned char)opt_string(L, opts, "delimiter", ",")[0]; /* one byte: checked */
    c->quote = (unsigned char)opt_string(L, opts, "quote", "\"")[0];
    c->max_record_bytes = opt_size(L, opts, "max_record_bytes", 64 << 20);
    c->parser_options = CSV_STRICT | CSV_STRICT_FINI;
    c->chunk = rn_malloc(CHUNK_SIZE);
    buf_init(&c->raw.data);
    for (int i = 0; i < BATCHES; i++) buf_init(&c->batches[i].text);
    c->out = &c->batches[0];
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->changed, NULL);
    c->header = opt_boolean(L, opts, "header", 1);
    if (parser_reset(c, err)) goto fail;
    lua_pushvalue(L, opts);
    c->opts_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    c->columns = opt_string_list(L, opts, "columns", &c->ncolumns);
    if (!c->header && !c->columns) {
        rn_fail(err, "%s: source.csv: header = false needs `columns`", c->where);
        goto fail;
    }
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        c->dir = rn_strdup(path);
        c->pattern = rn_strdup(opt_string(L, opts, "pattern", "*.csv"));
        c->follow = 0; /* files in a directory arrive whole; the directory is what is followed */
        if (open_next_file(c, err) < 0) goto fail;
    } else {
        c->follow = opt_boolean(L, opts, "follow", env->streaming);
        c->file_index = 0;
        c->done_names = rn_calloc(1, sizeof *c->done_names);
        c->done_names[0] = rn_strdup(path);
        if (start_file(c, path, err)) goto fail;
    }
    if (ensure_fields(c, err)) goto fail;
    c->done_file = c->file_index;
    c->done_offset = c->header_offset;
    c->done_line = c->header_line;
    return c;
fail:
    csv_close(c);
    return NULL;
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

/* Parse and convert rows into b until it is full or no complete row is left to read (the end
 * of the file, or of what a followed file holds so far). */
static void read_rows(struct csv_source *c, struct batch *b)
{
    struct rowbuf *raw = &c->raw;
    while (b->nitems < BATCH_ROWS && b->text.len < BATCH_BYTES) {
        if (raw->row_next < raw->nrows) { /* rows queued (the header's parse may leave some) */
            convert_row(c, b, &raw->rows[raw->row_next++]);
            continue;
        }
        struct rn_err err;
        compact(raw);
        int rc = parse_more(c, &err);
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
        batch_clear(b);
        read_rows(c, b);
        b->last = c->finished; /* not following: only the end stops read_rows short */
        pthread_mutex_lock(&c->lock);
        c->ready[c->nready++] = b;
        pthread_cond_broadcast(&c->changed);
        pthread_mutex_unlock(&c->lock);
        if (b->last) return NULL;
    }
}

/* Start a reader thread on the current file; c->out is empty. Without a thread (the system
 * refused one) the job reads in its own thread as before. */
static void reader_start(struct csv_source *c)
{
    c->nready = c->nspare = 0;
    c->stopping = 0;
    for (int i = 0; i < BATCHES; i++)
        if (&c->batches[i] != c->out) c->spare[c->nspare++] = &c->batches[i];
    c->threaded = pthread_create(&c->thread, NULL, reader_main, c) == 0;
}

/* Hand back the emptied batch and wait for the next one. */
static void reader_next_batch(struct csv_source *c)
{
    pthread_mutex_lock(&c->lock);
    c->spare[c->nspare++] = c->out;
    pthread_cond_broadcast(&c->changed);
    while (!c->nready) pthread_cond_wait(&c->changed, &c->lock);
    c->out = c->ready[0];
    memmove(c->ready, c->ready + 1, --c->nready * sizeof *c->ready);
    pthread_mutex_unlock(&c->lock);
}

/* Stop and join the reader thread; the parsing state is the job thread's again. */
static void reader_stop(struct csv_source *c)
{
    if (!c->threaded) return;
    pthread_mutex_lock(&c->lock);
    c->stopping = 1;
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL);
    c->threaded = 0;
}

static void push_cells(struct csv_source *c, lua_State *L, const struct batch *b, const struct item *it)
{
    const struct cell *cell = &b->cells[it->cell];
    lua_createtable(L, 0, (int)c->nfields);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->names_ref);
    for (size_t i = 0; i < c->nfields; i++, cell++) {
        lua_rawgeti(L, -1, (lua_Integer)i + 1);
        switch (cell->value.kind) {
        case FV_NIL: lua_pushnil(L); break;
        case FV_STRING: lua_pushlstring(L, b->text.data + cell->text_off, cell->text_len); break;
        case FV_INTEGER: lua_pushinteger(L, cell->value.as.integer); break;
        case FV_NUMBER: lua_pushnumber(L, cell->value.as.number); break;
        case FV_BOOLEAN: lua_pushboolean(L, cell->value.as.boolean); break;
        }
        lua_rawset(L, -4);
    }
    lua_pop(L, 1);
}

static enum source_status csv_next(void *self, struct source_pos *pos, struct rn_err *err)
{
    struct csv_source *c = self;
    lua_State *L = c->env->L;
    while (c->out->next == c->out->nitems) {
        if (c->threaded) {
            if (!c->out->last) {
                reader_next_batch(c);
                continue;
            }
            reader_stop(c); /* it has read the whole file */
        }
        batch_clear(c->out);
        if (c->fd < 0 || (c->finished && c->dir)) {
            if (!c->dir) return SRC_END;
            int opened = open_next_file(c, err);
            if (opened < 0) return SRC_ERROR;
            if (opened == 0) return c->env->streaming ? SRC_IDLE : SRC_END;
            continue;
        }
        if (!c->follow && !c->finished) {
            reader_start(c);
            if (c->threaded) continue;
        }
        read_rows(c, c->out);
        if (c->out->nitems == 0) {
            if (c->dir && c->finished) continue;
            return c->finished ? SRC_END : SRC_IDLE;
        }
    }
    const struct batch *b = c->out;
    const struct item *it = &b->items[c->out->next++];
    pos->partition = -1;
    pos->offset = c->out_offset = it->end_offset;
    pos->line = it->line;
    pos->file = c->file_index;
    if (it->kind == ITEM_RECORD) {
        push_cells(c, L, b, it);
        return SRC_RECORD;
    }
    rn_fail(err, "%s", b->text.data + it->text_off);
    lua_createtable(L, 0, 3);
    lua_pushstring(L, c->path);
    lua_setfield(L, -2, "file");
    if (it->kind == ITEM_BAD_ROW) {
        lua_pushinteger(L, it->line);
        lua_setfield(L, -2, "line");
        const char *msg = b->text.data + it->text_off;
        lua_pushlstring(L, msg + strlen(msg) + 1, it->raw_len);
        lua_setfield(L, -2, "raw");
    }
    return SRC_BAD;
}

static void csv_wait(void *self, int timeout_ms)
{
    (void)self;
    if (timeout_ms > 0) usleep((useconds_t)(timeout_ms > 200 ? 200 : timeout_ms) * 1000);
}

static void csv_advance(void *self, const struct source_pos *pos)
{
    struct csv_source *c = self;
    c->done_file = pos->file;
    c->done_offset = pos->offset;
    c->done_line = pos->line;
}

/* The fingerprint of the file the last acknowledged record came from, up to its end: the
 * file being read, or, in a directory, an earlier one whose last records are still finishing. */
static int save_fingerprint(struct csv_source *c, json_t *state, struct rn_err *err)
{
    if (c->done_file == c->file_index && c->fd >= 0)
        return fingerprint_save(c->fd, c->path, c->done_offset, state, err);
    if (!c->dir || c->done_file < 0) return 0;
    char full[4096];
    snprintf(full, sizeof full, "%s/%s", c->dir, c->done_names[c->done_file]);
    int fd = open(full, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0; /* finished and removed: nothing to resume in it */
    int rc = fingerprint_save(fd, full, c->done_offset, state, err);
    close(fd);
    return rc;
}

static int csv_save(void *self, json_t *state, struct rn_err *err)
{
    struct csv_source *c = self;
    json_object_set_new(state, "path", json_string(c->declared_path));
    if (c->dir && c->done_file >= 0) json_object_set_new(state, "file", json_string(c->done_names[c->done_file]));
    json_object_set_new(state, "offset", json_integer(c->done_offset));
    json_object_set_new(state, "line", json_integer(c->done_line));
    return save_fingerprint(c, state, err);
}

/* A resumed file must hold, before the checkpoint's offset, the bytes it held when the
 * checkpoint was taken; rows appended after it are fine. */
static int check_fingerprint(struct csv_source *c, json_t *state, int64_t offset, struct rn_err *err)
{
    char start_over[4400];
    snprintf(start_over, sizeof start_over,
             "to start from the beginning, run without --resume (a stream job: remove %s/%s.checkpoint.json)",
             c->env->state_dir, c->env->job_name);
    return fingerprint_check(c->fd, c->path, offset, state, start_over, err);
}

/* Lines before byte `offset` of the current file, counted (the checkpoint's line is where its
 * last record began, which says nothing of how many lines that record spanned). */
static int count_lines(struct csv_source *c, int64_t offset, int64_t *lines, struct rn_err *err)
{
    int64_t count = 0, pos = 0;
    while (pos < offset) {
        size_t want = (size_t)(offset - pos < CHUNK_SIZE ? offset - pos : CHUNK_SIZE);
        ssize_t n = pread(c->fd, c->chunk, want, pos);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return rn_fail(err, "%s: cannot read up to the checkpoint: %s", c->path, n < 0 ? strerror(errno) : "end of file");
        for (const char *p = c->chunk, *end = c->chunk + n; (p = memchr(p, '\n', (size_t)(end - p))); p++) count++;
        pos += n;
    }
    *lines = count;
    return 0;
}

/* Position the current file at a checkpointed byte offset (the start of a row). */
static int seek_to(struct csv_source *c, int64_t offset, int64_t line, struct rn_err *err)
{
    int64_t before = 0;
    if (count_lines(c, offset, &before, err)) return -1;
    if (offset > c->file_size)
        return rn_fail(err, "%s: checkpoint offset %lld is past the end of the file (%lld bytes): was it replaced?",
                       c->path, (long long)offset, (long long)c->file_size);
    if (lseek(c->fd, offset, SEEK_SET) < 0)
        return rn_fail(err, "%s: cannot seek to %lld: %s", c->path, (long long)offset, strerror(errno));
    csv_free(&c->parser);
    if (parser_reset(c, err)) return -1;
    c->chunk_base = offset;
    c->chunk_len = c->chunk_pos = 0;
    c->eof = c->finished = 0;
    rowbuf_clear(&c->raw);
    batch_clear(c->out);
    c->building_bytes = 0;
    c->out_offset = offset;
    c->line = c->next_row_line = before + 1;
    c->done_offset = offset;
    c->done_line = line;
    return 0;
}

static int csv_restore(void *self, json_t *state, struct rn_err *err)
{
    struct csv_source *c = self;
    json_t *off = json_object_get(state, "offset"), *line = json_object_get(state, "line");
    const char *path = json_string_value(json_object_get(state, "path"));
    if (!json_is_integer(off) || !json_is_integer(line) || !path)
        return rn_fail(err, "%s: the checkpoint has no path/offset/line", c->declared_path);
    if (strcmp(path, c->declared_path) != 0)
        return rn_fail(err, "the checkpoint is for %s but the job reads %s; start without --resume", path,
                       c->declared_path);
    if (!c->dir) {
        if (check_fingerprint(c, state, json_integer_value(off), err)) return -1;
        return seek_to(c, json_integer_value(off), json_integer_value(line), err);
    }
    const char *name = json_string_value(json_object_get(state, "file"));
    if (!name) return rn_fail(err, "%s: the checkpoint names no file of the directory", c->declared_path);
    char full[4096];
    snprintf(full, sizeof full, "%s/%s", c->dir, name);
    free(c->current_name);
    c->current_name = rn_strdup(name);
    c->file_index++;
    c->done_names = rn_realloc(c->done_names, ((size_t)c->file_index + 1) * sizeof *c->done_names);
    c->done_names[c->file_index] = rn_strdup(name);
    c->done_file = c->file_index;
    if (access(full, F_OK) != 0) { /* processed and since removed: go on with the next file */
        if (c->fd >= 0) close(c->fd);
        c->fd = -1;
        c->done_offset = json_integer_value(off);
        c->done_line = json_integer_value(line);
        return 0;
    }
    if (start_file(c, full, err) || ensure_fields(c, err)) return -1;
    if (check_fingerprint(c, state, json_integer_value(off), err)) return -1;
    return seek_to(c, json_integer_value(off), json_integer_value(line), err);
}

static double csv_progress(void *self)
{
    struct csv_source *c = self;
    if (c->file_size <= 0) return -1;
    double f = (double)c->out_offset / (double)c->file_size;
    return f > 1 ? 1 : f;
}

static void csv_close(void *self)
{
    struct csv_source *c = self;
    if (!c) return;
    reader_stop(c);
    if (c->fd >= 0) close(c->fd);
    csv_free(&c->parser);
    for (size_t i = 0; i < c->ncolumns; i++) free(c->columns[i]);
    free(c->columns);
    for (size_t i = 0; i < c->nfields; i++) free(c->fields[i].name);
    free(c->fields);
    free(c->chunk);
    rowbuf_free(&c->raw);
    for (int i = 0; i < BATCHES; i++) batch_free(&c->batches[i]);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->changed);
    free(c->path);
    free(c->declared_path);
    free(c->wanted);
    free(c->dir);
    free(c->pattern);
    free(c->current_name);
    for (int32_t i = 0; c->done_names && i <= c->file_index; i++) free(c->done_names[i]);
    free(c->done_names);
    if (c->opts_ref != LUA_NOREF) luaL_unref(c->env->L, LUA_REGISTRYINDEX, c->opts_ref);
    if (c->names_ref != LUA_NOREF) luaL_unref(c->env->L, LUA_REGISTRYINDEX, c->names_ref);
    free(c);
}

const struct source_ops csv_source = {
    .name = "csv",
    .summary = "records from a CSV file (RFC 4180: quoted fields with commas, quotes and newlines; CRLF; BOM)",
    .options = csv_options,
    .open = csv_open,
    .next = csv_next,
    .wait = csv_wait,
    .advance = csv_advance,
    .save = csv_save,
    .restore = csv_restore,
    .progress = csv_progress,
    .close = csv_close,
};
