/* csv_int.h: private to runtime/sources/csv/ (source.c, parse.c, reader.c): the source's
 * state and the functions its files share.
 *
 * Parsing state (fd, chunk, parser, raw rows) belongs to the reader thread while one runs
 * (csvsrc_reader_start .. csvsrc_reader_stop) and to the job's thread otherwise; the batch
 * queues are shared under `lock`. */
#ifndef RUNNEL_CSV_INT_H
#define RUNNEL_CSV_INT_H

#include <csv.h>
#include <pthread.h>
#include <stdint.h>

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

/* parse.c: libcsv fed one line-terminated piece at a time, complete rows into c->raw */
void csvsrc_rowbuf_clear(struct rowbuf *b);
void csvsrc_rowbuf_free(struct rowbuf *b);
/* (Re)initialise c->parser with the delimiter and quote; -1 and err when libcsv refuses. */
int csvsrc_parser_reset(struct csv_source *c, struct rn_err *err);
/* Drop the rows already converted so the buffers do not grow (the row being built stays). */
void csvsrc_compact(struct rowbuf *b);
/* Parse more input into c->raw until at least one more row is queued there. Returns 1 when
 * a row was queued, 0 at end of input (or, when following, no complete row yet), -1 on a
 * parse error (err set; the broken row is discarded and the parser reset). */
int csvsrc_parse_more(struct csv_source *c, struct rn_err *err);

/* reader.c: rows converted into batches, and the reader thread that fills them ahead */
void csvsrc_batch_clear(struct batch *b);
void csvsrc_batch_free(struct batch *b);
/* Parse and convert rows into b until it is full or no complete row is left to read (the end
 * of the file, or of what a followed file holds so far). */
void csvsrc_read_rows(struct csv_source *c, struct batch *b);
/* Start a reader thread on the current file; c->out is empty. Without a thread (the system
 * refused one) the job reads in its own thread as before (c->threaded stays 0). */
void csvsrc_reader_start(struct csv_source *c);
/* Hand back the emptied c->out and wait for the next batch. */
void csvsrc_reader_next_batch(struct csv_source *c);
/* Stop and join the reader thread; the parsing state is the job thread's again. */
void csvsrc_reader_stop(struct csv_source *c);

#endif
