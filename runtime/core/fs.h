/* fs.h: files: whole writes, atomic replacement (write, fsync, rename), whole reads, mkdir -p. */
#ifndef RUNNEL_FS_H
#define RUNNEL_FS_H

#include <stddef.h>
#include "core/err.h"

/* Write all of data to fd; returns -1 with errno set on failure. */
int rn_write_all(int fd, const void *data, size_t n);

/* Write data to path atomically: write path.tmp, fsync, rename. Returns -1 and fills err. */
int rn_write_file_atomic(const char *path, const void *data, size_t n, struct rn_err *err);

/* Read a whole file; caller frees. Returns NULL and fills err. */
char *rn_read_file(const char *path, size_t *len_out, struct rn_err *err);

/* Create a directory and its parents (like mkdir -p). Returns -1 and fills err. */
int rn_mkdir_p(const char *path, struct rn_err *err);
/* Create the parent directory of a file path. */
int rn_mkdir_parent(const char *file_path, struct rn_err *err);

#endif
