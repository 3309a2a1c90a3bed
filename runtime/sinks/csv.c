/* csv_sink.c: sink.csv, records as CSV rows (RFC 4180 quoting) with a header row.
 *
 * Columns come from the `columns` option, or else from the first record's fields in the
 * job's field order. Tables are written as JSON text; nil as an empty field. A value that
 * cannot be written (a function) rejects that record. Acknowledged at write, durable at
 * flush, like sink.jsonl. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "sinks/csv.h"

#include "core/file_writer.h"
#include "formats/csv.h"

struct csv_sink {
    struct job_env *env;
    struct file_writer out;
    int header;               /* the option: a header row starts an empty file */
    struct csv_row row;
};

static const struct option_spec csv_sink_options[] = {
    {"path", OPT_STRING, 1, NULL, .help = "the output file (parent directories are created)"},
    {"columns", OPT_STRING_OR_LIST, 0, NULL, .help = "the fields to write, in order", .default_note = "first record"},
    {"header", OPT_BOOLEAN, 0, "true", .help = "write a header row"},
    {"delimiter", OPT_BYTE, 0, ",", .help = "field separator (\"\\t\" for TSV)"},
    {"append", OPT_BOOLEAN, 0, "false", .help = "append to the file instead of replacing it"},
    {"fsync", OPT_BOOLEAN, 0, "true", .help = "fsync at every checkpoint"},
    {NULL},
};

static void *csv_sink_open(struct job_env *env, int opts, struct rn_err *err)
{
    lua_State *L = env->L;
    struct csv_sink *s = rn_calloc(1, sizeof *s);
    s->env = env;
    int append = opt_boolean(L, opts, "append", 0) || env->resume;
    s->header = opt_boolean(L, opts, "header", 1);
    csv_row_open(&s->row, L, opts);
    if (fw_open(&s->out, opt_string(L, opts, "path", NULL), append, opt_boolean(L, opts, "fsync", 1), err)) {
        fw_close(&s->out);
        csv_row_close(&s->row);
        free(s);
        return NULL;
    }
    return s;
}

void csv_row_open(struct csv_row *row, lua_State *L, int opts)
{
    buf_init(&row->scratch);
    row->delimiter = opt_string(L, opts, "delimiter", ",")[0]; /* one byte: checked */
    row->columns = opt_string_list(L, opts, "columns", &row->ncolumns);
}

int csv_row_put(struct csv_row *row, lua_State *L, struct sink_record *record, int header, struct buf *out,
                struct rn_err *err)
{
    if (!row->columns) { /* the first record's fields, in the job's field order */
        size_t n;
        const struct sink_field *fields = sink_record_fields(record, &n, err);
        if (!fields) return -1;
        row->columns = rn_calloc(n + 1, sizeof *row->columns);
        for (size_t i = 0; i < n; i++) row->columns[i] = rn_strndup(fields[i].name, fields[i].name_len);
        row->ncolumns = n;
    }
    size_t mark = out->len;
    if (header) {
        for (size_t i = 0; i < row->ncolumns; i++) {
            if (i) buf_putc(out, row->delimiter);
            csv_put_text(out, row->columns[i], strlen(row->columns[i]), row->delimiter);
        }
        buf_putc(out, '\n');
    }
    if (csv_put_row(out, L, sink_record_table(record), row->columns, row->ncolumns, row->delimiter, &row->scratch, err)) {
        buf_truncate(out, mark);
        return -1;
    }
    return 0;
}

void csv_row_close(struct csv_row *row)
{
    for (size_t i = 0; i < row->ncolumns; i++) free(row->columns[i]);
    free(row->columns);
    buf_free(&row->scratch);
}

static int csv_sink_write(void *self, uint64_t seq, struct sink_record *record, struct rn_err *err)
{
    struct csv_sink *s = self;
    (void)seq;
    /* an empty file (new, or cut back to nothing by a resume) starts with the header */
    int header = s->header && s->out.written_len == 0 && s->out.pending.len == 0;
    if (csv_row_put(&s->row, s->env->L, record, header, &s->out.pending, err)) {
        rn_wrap(err, "sink.csv %s", s->out.path); /* nothing of the record is left behind */
        return SINK_REJECTED;
    }
    buf_putc(&s->out.pending, '\n');
    return fw_record_done(&s->out, err) ? SINK_FAILED : SINK_ACCEPTED;
}

static int csv_sink_flush(void *self, struct rn_err *err) { return fw_flush(&((struct csv_sink *)self)->out, err); }
static int csv_sink_save(void *self, json_t *st, struct rn_err *err) { return fw_save(&((struct csv_sink *)self)->out, st, err); }

static int csv_sink_restore(void *self, json_t *st, struct rn_err *err)
{
    struct csv_sink *s = self;
    if (fw_restore(&s->out, st, err)) return -1;
    if (s->out.written_len > 0) s->header = 0;
    return 0;
}

static void csv_sink_close(void *self)
{
    struct csv_sink *s = self;
    fw_close(&s->out);
    csv_row_close(&s->row);
    free(s);
}

const struct sink_ops csv_sink = {
    .version = SINK_INTERFACE_VERSION,
    .name = "csv",
    .summary = "CSV file with a header row",
    .options = csv_sink_options,
    .capabilities = 0, /* reads the fields, not the JSON line; acknowledged at write */
    .open = csv_sink_open,
    .write = csv_sink_write,
    .flush = csv_sink_flush,
    .save = csv_sink_save,
    .restore = csv_sink_restore,
    .close = csv_sink_close,
};
