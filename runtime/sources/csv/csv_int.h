/* csv_int.h: private to runtime/sources/csv/: the source's state and the functions its files
 * share (source.c: the plugin; files.c: the files it opens; parse.c: libcsv; reader.c: batches
 * and the reader thread; follow.c: following a path across rotations; checkpoint.c: save and
 * restore).
 *
 * Threads: the parsing state (fd, chunk, parser, raw rows) belongs to the reader thread while
 * one runs (csvsrc_reader_start .. csvsrc_reader_stop) and to the job's thread otherwise; the
 * batch queues are shared under `lock`. The watcher thread of a followed path (follow.c) shares
 * only its struct csv_follow, under its own lock, and never touches struct csv_source. */
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

/* A file the source has opened, by its index (a record's source_pos.file): the files of a
 * directory in the order they were read, or the successive files at a followed path (a new
 * one after each rotation, and the same one again after a truncation). */
struct csv_file {
    char *name;               /* a directory's file: its name there; otherwise its path */
    uint64_t device, inode;
    int fd;                   /* a file left behind, kept open while its records may still be
                               * unacknowledged (its fingerprint goes in a checkpoint); else -1.
                               * The current file's descriptor is csv_source.fd. */
    int truncated;            /* cut short in place: its bytes are gone, a checkpoint goes on in the next */
    int finished;             /* read to its end and left behind */
    int64_t end_offset;       /* finished: the offset after its last record */
    int64_t start_offset, start_line; /* where its data rows begin (after its header) */
    int64_t head_len;         /* finished: the length and FNV-1a hash of its first bytes (up to */
    uint64_t head_hash;       /* 4 KiB), telling it from a later file given its inode number */
    char *seen_as;            /* directory mode: the last other name it was noticed under */
};

struct csv_follow;

struct csv_source {
    struct job_env *env;
    char *path;               /* the file being read (messages, dead letters) */
    char *declared_path;      /* the `path` option: a file, or a directory of files */
    char *dir;                /* directory mode: read every matching file in name order */
    char *pattern;            /* file name pattern in directory mode */
    char *current_name;       /* directory mode: name of the file being read */
    struct csv_file *files;   /* every file opened, by index (file_index + 1 of them) */
    size_t files_cap;
    int32_t file_index;       /* index of the file being read */
    int32_t open_from;        /* files before this index have been closed */
    int32_t done_file;        /* index of the file of the last acknowledged record */
    int header;
    int opts_ref;             /* options, kept until the columns are known */
    char where[512];
    int fields_ready;
    unsigned char *wanted;    /* per column: 1 when a field reads it (NULL: keep all) */
    int64_t header_offset, header_line; /* where the data rows of the current file begin */
    int fd;                   /* the current file; -1 before the first (a followed path not there yet) */
    int follow;               /* stream mode: wait for more data at end of file, follow the path's name */
    int inotify;              /* the option: watch a followed path with inotify (else poll) */
    struct csv_follow *watch; /* the files that come next at a followed path (or after a restore) */
    int watching;             /* its watcher thread was started */
    struct loop_timer look_again; /* idle: when to look at the file or directory again all the same */
    int need_header;          /* the current file's header row is still to be read (a followed
                               * file's may not be there yet) */
    int draining;             /* following: a newer file is waiting, so this one is read to its very end */
    int gone_noted;           /* following: the note that the path is gone was given */
    char **file_header;       /* the first file's header row, which every later file's must repeat */
    size_t nfile_header;
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
    int wake_wanted;          /* csv_next found no batch ready: the reader wakes the job's loop */
};

/* files.c: the files the source opens, in order */
/* Make fd the current file, read from its start as file number file_index + 1: the next file
 * of a directory, the next one at a followed path, or the same one again after a truncation
 * (fd == c->fd). The source owns fd from here (closed on error too). path names the file in
 * messages, name is what the files table keeps. With header_now the header row is read at
 * once and must be there; otherwise csv_next reads it when it arrives. */
int csvsrc_begin_file(struct csv_source *c, int fd, const char *path, const char *name, int header_now,
                      struct rn_err *err);
/* Read the current file's header row: 1 when read (columns known, or checked against the
 * first file's), 0 when it is not complete yet (a followed file), -1 on error. */
int csvsrc_take_header(struct csv_source *c, struct rn_err *err);
/* Directory mode: open the next file (name order, never one already read under another name).
 * 1 when one was opened, 0 when there is none (yet), -1 on error. */
int csvsrc_open_next_file(struct csv_source *c, struct rn_err *err);
/* A directory's file the checkpoint is in, processed and removed since: it becomes the current
 * file without being opened (c->fd -1), so reading goes on with the next. */
void csvsrc_gone_file(struct csv_source *c, const char *name, uint64_t device, uint64_t inode);
/* A directory's file an earlier run read (from the checkpoint): it goes first in the table, so
 * that it is not read again under another name. */
void csvsrc_read_before(struct csv_source *c, const char *name, uint64_t device, uint64_t inode, int64_t head_len,
                        uint64_t head_hash);
/* Close the descriptors of files before index `upto` (their records are all done). */
void csvsrc_close_before(struct csv_source *c, int32_t upto);
/* Once the columns are known: the output fields from select and types (source.c). */
int csvsrc_ensure_fields(struct csv_source *c, struct rn_err *err);
/* A line on stderr saying what the source did about its input (printf-style). */
void csvsrc_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* follow.c: the files that come next at a followed path, and what following does at the end
 * of what the current file holds */
struct csv_next_file {
    int fd;
    uint64_t device, inode;
};
/* A queue of the files that come next at path, without a watcher yet. Caller frees with
 * csvsrc_follow_free. */
struct csv_follow *csvsrc_follow_new(const char *path, struct loop *loop);
/* Start the watcher thread: inotify on the files held and the path's directory (use_inotify
 * and the system allows it; a note says when it does not), else a look at the path every
 * FOLLOW_POLL_MS. Each change it sees (a file written, a file at the path) wakes `loop`. */
void csvsrc_follow_start(struct csv_follow *f, int use_inotify, int current_fd);
/* 1 when the watcher has inotify (changes wake the loop), 0 when it only looks. */
int csvsrc_follow_notified(const struct csv_follow *f);
/* Stop the watcher, close the files still queued, free f (NULL is fine). */
void csvsrc_follow_free(struct csv_follow *f);
/* The source holds this file open: it is not queued when seen at the path. release when it
 * closes it (a closed file's inode number may be given to a new file). */
void csvsrc_follow_hold(struct csv_follow *f, uint64_t device, uint64_t inode);
void csvsrc_follow_release(struct csv_follow *f, uint64_t device, uint64_t inode);
/* Look at the path now: a regular file there that is neither held nor queued is opened and
 * queued. */
void csvsrc_follow_check(struct csv_follow *f);
/* Queue fd (owned by f from here) before the others. */
void csvsrc_follow_push_front(struct csv_follow *f, int fd, uint64_t device, uint64_t inode);
/* Take the first queued file (1; the caller owns out->fd and holds it), or 0. */
int csvsrc_follow_take(struct csv_follow *f, struct csv_next_file *out);
int csvsrc_follow_waiting(struct csv_follow *f);
/* The current followed file has nothing more now. 1 when reading goes on at once (it was
 * truncated and is read again from its start; or a newer file waits, so it is now read to its
 * very end), 0 to wait, -1 on error. */
int csvsrc_follow_at_end(struct csv_source *c, struct rn_err *err);
/* The current file is done (or there is none yet): begin the next file queued for the path.
 * 1 when one was begun, 0 when none waits, -1 on error. */
int csvsrc_follow_next(struct csv_source *c, struct rn_err *err);
/* The regular file in dir with this device and inode (a rotated name: live.csv.1,
 * live.csv-20261201; compressed names such as .gz are not looked at), as dir/name, or NULL.
 * Caller frees. */
char *csvsrc_find_by_inode(const char *dir, uint64_t device, uint64_t inode);

#define FOLLOW_POLL_MS 250
#define FOLLOW_SAFETY_MS 2000 /* with inotify: look at the path this often all the same */
#define DIR_POLL_MS 200       /* a directory followed in stream mode is looked at this often */

/* checkpoint.c: the source's part of a checkpoint */
int csvsrc_save(struct csv_source *c, json_t *state, struct rn_err *err);
int csvsrc_restore(struct csv_source *c, json_t *state, struct rn_err *err);

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
/* Make the next batch c->out (1), handing back the one read out; or 0 when none is ready yet,
 * and the reader wakes the job's loop when it has one. Never blocks while there is a loop. */
int csvsrc_reader_next_batch(struct csv_source *c);
/* Stop and join the reader thread; the parsing state is the job thread's again. */
void csvsrc_reader_stop(struct csv_source *c);

#endif
