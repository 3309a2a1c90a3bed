/* csv_sink.c: sink.csv, records as CSV rows (RFC 4180 quoting) with a header row.
 *
 * Columns come from the `columns` option, or else from the first record's fields in the
 * job's field order. Tables are written as JSON text; nil as an empty field. A value that
 * cannot be written (a function) rejects that record. Acknowledged at write, durable at
 * flush, like sink.jsonl. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "formats/csv.h"
#include "core/file_writer.h"
#include "engine/plugin.h"

struct csv_sink {
    struct job_env *env;
    struct file_writer out;
    char delimiter;
    int header;               /* the option: a header row starts an empty file */
    char **columns;
    size_t ncolumns;
    struct buf scratch;
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
    buf_init(&s->scratch);
    s->delimiter = opt_string(L, opts, "delimiter", ",")[0]; /* one byte: checked */
    int append = opt_boolean(L, opts, "append", 0) || env->resume;
    s->header = opt_boolean(L, opts, "header", 1);
    s->columns = opt_string_list(L, opts, "columns", &s->ncolumns);
    if (fw_open(&s->out, opt_string(L, opts, "path", NULL), append, opt_boolean(L, opts, "fsync", 1), err)) {
        fw_close(&s->out);
        for (size_t i = 0; i < s->ncolumns; i++) free(s->columns[i]);
        free(s->columns);
        free(s);
        return NULL;
    }
    return s;
}

/* Columns from the first record: its fields in the job's field order. */
static int columns_from_record(struct csv_sink *s, struct sink_record *record, struct rn_err *err)
{
    size_t n;
    const struct sink_field *fields = sink_record_fields(record, &n, err);
    if (!fields) return -1;
    s->columns = rn_calloc(n + 1, sizeof *s->columns);
    for (size_t i = 0; i < n; i++) s->columns[i] = rn_strndup(fields[i].name, fields[i].name_len);
    s->ncolumns = n;
    return 0;
}

static int csv_sink_write(void *self, uint64_t seq, struct sink_record *record, struct rn_err *err)
{
    struct csv_sink *s = self;
    lua_State *L = s->env->L;
    (void)seq;
    int rec = sink_record_table(record);
    if (!s->columns && columns_from_record(s, record, err)) {
        rn_wrap(err, "sink.csv %s", s->out.path);
        return SINK_REJECTED;
    }
    size_t mark = s->out.pending.len; /* a rejected record leaves nothing behind */
    /* an empty file (new, or cut back to nothing by a resume) starts with the header */
    if (s->header && s->out.written_len == 0 && s->out.pending.len == 0) {
        for (size_t i = 0; i < s->ncolumns; i++) {
            if (i) buf_putc(&s->out.pending, s->delimiter);
            csv_put_text(&s->out.pending, s->columns[i], strlen(s->columns[i]), s->delimiter);
        }
        buf_putc(&s->out.pending, '\n');
    }
    for (size_t i = 0; i < s->ncolumns; i++) {
        if (i) buf_putc(&s->out.pending, s->delimiter);
        lua_getfield(L, rec, s->columns[i]);
        int rc = csv_put_value(&s->out.pending, L, -1, s->delimiter, &s->scratch, err);
        lua_pop(L, 1);
        if (rc) {
            s->out.pending.len = mark;
            s->out.pending.data[mark] = '\0';
            rn_wrap(err, "sink.csv %s: column %s", s->out.path, s->columns[i]);
            return SINK_REJECTED;
        }
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
    for (size_t i = 0; i < s->ncolumns; i++) free(s->columns[i]);
    free(s->columns);
    buf_free(&s->scratch);
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
