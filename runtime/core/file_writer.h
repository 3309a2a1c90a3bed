/* file_writer.h: buffered append-only output file shared by the file sinks (jsonl, csv).
 *
 * Records are appended to a memory buffer and written with write(2) in whole records only,
 * so a crash never leaves half a line past the last flush; flush() fsyncs. The committed
 * length is what a checkpoint saves, with the file's fingerprint (core/fingerprint.h); resume
 * refuses a file changed before that length and truncates it back to it, so a resumed job
 * writes no record twice. */
#ifndef RUNNEL_FILE_WRITER_H
#define RUNNEL_FILE_WRITER_H

#include <jansson.h>
#include <stdint.h>
#include "core/util.h"

struct file_writer {
    char *path;
    int fd;
    int do_fsync;
    struct buf pending;      /* whole records not yet written */
    int64_t written_len;     /* bytes in the file (all whole records) */
    int failed;              /* after a write error, refuse everything */
};

/* Open path for writing (creating parent directories; read too, for the fingerprint).
 * append=0 truncates. */
int fw_open(struct file_writer *w, const char *path, int append, int do_fsync, struct rn_err *err);
/* The caller appends one whole record to w->pending, then calls fw_record_done. */
int fw_record_done(struct file_writer *w, struct rn_err *err);
/* Write the buffer and fsync. */
int fw_flush(struct file_writer *w, struct rn_err *err);
int fw_save(struct file_writer *w, json_t *state, struct rn_err *err);
/* Check the file against the saved fingerprint and truncate it back to the saved length
 * (exactly-once resume). -1 and err when the file was changed or shortened. */
int fw_restore(struct file_writer *w, json_t *state, struct rn_err *err);
void fw_close(struct file_writer *w);

#endif
