/* fingerprint.h: what a checkpoint remembers of a file it read or wrote, so that a resume can
 * tell whether the file is still the one it was.
 *
 * A fingerprint is the file's identity (device, inode, size, mtime) and the SHA-256 of two
 * windows before a position: the first FINGERPRINT_WINDOW bytes and the last
 * FINGERPRINT_WINDOW bytes up to it (for an input, the header and the last records read; for
 * an output, the last records written). A file that only grew past the position keeps both
 * windows; one edited, shortened or replaced before it does not. */
#ifndef RUNNEL_FINGERPRINT_H
#define RUNNEL_FINGERPRINT_H

#include <jansson.h>
#include <stdint.h>
#include "core/util.h"

#define FINGERPRINT_WINDOW 4096

/* Add the fingerprint of the open file fd up to byte `position` to the object `out`
 * (members device, inode, size, mtime_ns, head_sha256, tail_sha256). -1 and err (naming
 * path) when the file cannot be read. */
int fingerprint_save(int fd, const char *path, int64_t position, json_t *out, struct rn_err *err);

/* Check fd against a fingerprint saved at `position`. 0 when the bytes before the position
 * are as they were (the file may have grown), or when `saved` has no fingerprint (a
 * checkpoint written before runnel took them). -1 and err naming path and what changed
 * otherwise; `start_over` ends the message (how the user starts from the beginning). */
int fingerprint_check(int fd, const char *path, int64_t position, json_t *saved, const char *start_over,
                      struct rn_err *err);

/* The device and inode `saved` was taken on: 1, or 0 when it has none (an older checkpoint).
 * A resume that finds another file at the path can look for this one among rotated names. */
int fingerprint_identity(json_t *saved, uint64_t *device, uint64_t *inode);

#endif
