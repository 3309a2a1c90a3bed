/* checkpoint.c: the CSV source's part of a checkpoint: the position of the last acknowledged
 * record (the path, a directory's file, offset, line) and the fingerprint of the file it is in
 * (core/fingerprint.h: device, inode, and the bytes before the offset).
 *
 * A restore refuses a file changed before the offset. A file that is no longer at its name
 * was rotated when a file in the same directory has its inode: that one is finished from the
 * offset first, then the file at the path (or the next in the directory) is read from its
 * start. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fingerprint.h"
#include "sources/csv/csv_int.h"

#define READ_KEPT 64 /* a directory's files read before the checkpoint's, remembered by identity */

/* "read": the identities of the last files read before file `at`, so that a restarted job
 * does not read one of them again under a name it was renamed to (app.csv -> app.csv.1). */
static void save_read(const struct csv_source *c, int32_t at, json_t *state)
{
    json_t *read = json_array();
    for (int32_t i = at > READ_KEPT ? at - READ_KEPT : 0; i < at; i++) {
        const struct csv_file *f = &c->files[i];
        if (!f->finished || f->head_len < 0) continue;
        json_array_append_new(read, json_pack("{s:s, s:I, s:I, s:I, s:I}", "file", f->name, "device",
                                              (json_int_t)f->device, "inode", (json_int_t)f->inode, "head_len",
                                              (json_int_t)f->head_len, "head_hash", (json_int_t)f->head_hash));
    }
    json_object_set_new(state, "read", read);
}

static void restore_read(struct csv_source *c, json_t *state)
{
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(state, "read"), i, f) {
        json_t *name = json_object_get(f, "file"), *dev = json_object_get(f, "device");
        json_t *ino = json_object_get(f, "inode"), *len = json_object_get(f, "head_len");
        json_t *hash = json_object_get(f, "head_hash");
        if (!json_is_string(name) || !json_is_integer(dev) || !json_is_integer(ino) || !json_is_integer(len) ||
            !json_is_integer(hash))
            continue;
        csvsrc_read_before(c, json_string_value(name), (uint64_t)json_integer_value(dev),
                           (uint64_t)json_integer_value(ino), json_integer_value(len),
                           (uint64_t)json_integer_value(hash));
    }
}

int csvsrc_save(struct csv_source *c, json_t *state, struct rn_err *err)
{
    int32_t at = c->done_file;
    int64_t offset = c->done_offset, line = c->done_line;
    /* a file left behind whose records are all done, or whose bytes are gone (truncated),
     * hands the position over to the next one, at its start */
    while (at >= 0 && at < c->file_index &&
           (c->files[at].truncated || (c->files[at].finished && offset >= c->files[at].end_offset))) {
        at++;
        offset = c->files[at].start_offset;
        line = c->files[at].start_line;
    }
    json_object_set_new(state, "path", json_string(c->declared_path));
    if (c->dir && at >= 0) json_object_set_new(state, "file", json_string(c->files[at].name));
    json_object_set_new(state, "offset", json_integer(offset));
    json_object_set_new(state, "line", json_integer(line));
    if (c->dir) save_read(c, at, state);
    if (at < 0) return 0; /* a followed path with no file yet */
    int fd = at == c->file_index ? c->fd : c->files[at].fd;
    if (fd < 0) return 0; /* a directory's file processed and removed before a restore */
    return fingerprint_save(fd, at == c->file_index ? c->path : c->files[at].name, offset, state, err);
}

/* How the user starts over, after `why` (may be ""). */
static void start_over(const struct csv_source *c, const char *why, char *out, size_t size)
{
    snprintf(out, size,
             "%sto start from the beginning, run without --resume (a stream job: remove %s/%s.checkpoint.json)", why,
             c->env->state_dir, c->env->job_name);
}

/* start_over, saying first that no file of dir is the checkpoint's (so the file at its name
 * is not a rotation of it). */
static void not_rotated(const struct csv_source *c, const char *dir, uint64_t inode, char *out, size_t size)
{
    char why[4200];
    snprintf(why, sizeof why,
             "no file in %s is the one the checkpoint was taken on (inode %llu), so it is not a rotation; ", dir,
             (unsigned long long)inode);
    start_over(c, why, out, size);
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
        if (n <= 0)
            return rn_fail(err, "%s: cannot read up to the checkpoint: %s", c->path,
                           n < 0 ? strerror(errno) : "end of file");
        for (const char *p = c->chunk, *end = c->chunk + n; (p = memchr(p, '\n', (size_t)(end - p))); p++) count++;
        pos += n;
    }
    *lines = count;
    return 0;
}

/* Position the current file at a checkpointed byte offset (the start of a row). */
static int seek_to(struct csv_source *c, int64_t offset, int64_t line, struct rn_err *err)
{
    c->done_file = c->file_index;
    if (offset <= c->header_offset) { /* nothing past the header was done: read on from there */
        c->done_offset = c->header_offset;
        c->done_line = c->header_line;
        return 0;
    }
    int64_t before = 0;
    if (count_lines(c, offset, &before, err)) return -1;
    if (offset > c->file_size)
        return rn_fail(err, "%s: checkpoint offset %lld is past the end of the file (%lld bytes): was it replaced?",
                       c->path, (long long)offset, (long long)c->file_size);
    if (lseek(c->fd, offset, SEEK_SET) < 0)
        return rn_fail(err, "%s: cannot seek to %lld: %s", c->path, (long long)offset, strerror(errno));
    csv_free(&c->parser);
    if (csvsrc_parser_reset(c, err)) return -1;
    c->chunk_base = offset;
    c->chunk_len = c->chunk_pos = 0;
    c->eof = c->finished = 0;
    csvsrc_rowbuf_clear(&c->raw);
    csvsrc_batch_clear(c->out);
    c->building_bytes = 0;
    c->out_offset = offset;
    c->line = c->next_row_line = before + 1;
    c->done_offset = offset;
    c->done_line = line;
    return 0;
}

/* The file of this directory that the checkpoint was taken on, under another name: the one
 * with its device and inode, if it still holds the bytes it held before the offset (an inode
 * number is given to a new file once the old one is removed). dir/name or NULL; caller frees. */
static char *find_renamed(const char *dir, uint64_t device, uint64_t inode, json_t *state, int64_t offset)
{
    char *found = csvsrc_find_by_inode(dir, device, inode);
    if (!found) return NULL;
    int fd = open(found, O_RDONLY | O_CLOEXEC);
    struct rn_err scratch;
    if (fd < 0 || fingerprint_check(fd, found, offset, state, "", &scratch)) {
        free(found);
        found = NULL;
    }
    if (fd >= 0) close(fd);
    return found;
}

/* Open `path`, the file the checkpoint is in under another name, and make it the current
 * file (named `name` in the table), checked and positioned at the offset. */
static int resume_in(struct csv_source *c, const char *path, const char *name, json_t *state, int64_t offset,
                     int64_t line, struct rn_err *err)
{
    char again[4400];
    start_over(c, "", again, sizeof again);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return rn_fail(err, "%s: cannot open: %s", path, strerror(errno));
    if (fingerprint_check(fd, path, offset, state, again, err)) {
        close(fd);
        return -1;
    }
    if (csvsrc_begin_file(c, fd, path, name, 1, err)) return -1;
    return seek_to(c, offset, line, err);
}

/* A single file (followed or not). */
static int restore_path(struct csv_source *c, json_t *state, int64_t offset, int64_t line, struct rn_err *err)
{
    char again[4400];
    uint64_t device = 0, inode = 0;
    int identified = fingerprint_identity(state, &device, &inode);
    struct stat st;
    int here = c->fd >= 0 && fstat(c->fd, &st) == 0;
    if (here && (!identified || ((uint64_t)st.st_dev == device && (uint64_t)st.st_ino == inode))) {
        if (identified && c->follow && st.st_size < offset) {
            csvsrc_note("%s: %lld bytes, fewer than the checkpoint's offset %lld: it was truncated in place since "
                        "(copytruncate); reading it from its start", c->path, (long long)st.st_size, (long long)offset);
            return seek_to(c, 0, 0, err);
        }
        start_over(c, "", again, sizeof again);
        if (fingerprint_check(c->fd, c->path, offset, state, again, err)) return -1;
        return seek_to(c, offset, line, err);
    }
    if (!identified) {
        if (offset == 0) return 0; /* nothing was read: the file is waited for */
        start_over(c, "", again, sizeof again);
        return rn_fail(err, "%s: no such file to resume in; %s", c->declared_path, again);
    }
    char dir[4096];
    const char *slash = strrchr(c->declared_path, '/');
    if (slash)
        snprintf(dir, sizeof dir, "%.*s", slash == c->declared_path ? 1 : (int)(slash - c->declared_path),
                 c->declared_path);
    else
        snprintf(dir, sizeof dir, ".");
    char *rotated = find_renamed(dir, device, inode, state, offset);
    if (!rotated) {
        not_rotated(c, dir, inode, again, sizeof again);
        if (!here)
            return rn_fail(err, "%s: the file the checkpoint is in is neither at the path nor in %s; %s",
                           c->declared_path, dir, again);
        if (fingerprint_check(c->fd, c->path, offset, state, again, err)) return -1;
        return seek_to(c, offset, line, err);
    }
    csvsrc_note("%s: the checkpoint is in %s (inode %llu), rotated since: finishing it after line %lld, then reading "
                "%s from its start", c->declared_path, rotated, (unsigned long long)inode, (long long)line,
                c->declared_path);
    if (here) { /* the file at the path comes next, from its start */
        if (c->watch) csvsrc_follow_release(c->watch, (uint64_t)st.st_dev, (uint64_t)st.st_ino);
        else c->watch = csvsrc_follow_new(c->declared_path, c->env->loop);
        csvsrc_follow_push_front(c->watch, c->fd, (uint64_t)st.st_dev, (uint64_t)st.st_ino);
        c->fd = -1;
    }
    int rc = resume_in(c, rotated, rotated, state, offset, line, err);
    free(rotated);
    return rc;
}

/* A directory's file: by its name, or by its inode when it was renamed. */
static int restore_dir(struct csv_source *c, json_t *state, int64_t offset, int64_t line, struct rn_err *err)
{
    const char *name = json_string_value(json_object_get(state, "file"));
    if (!name) return rn_fail(err, "%s: the checkpoint names no file of the directory", c->declared_path);
    char full[4096], again[4400];
    snprintf(full, sizeof full, "%s/%s", c->dir, name);
    restore_read(c, state);
    free(c->current_name);
    c->current_name = rn_strdup(name);
    uint64_t device = 0, inode = 0;
    int identified = fingerprint_identity(state, &device, &inode);
    struct stat st;
    int present = stat(full, &st) == 0;
    if (identified && (!present || (uint64_t)st.st_dev != device || (uint64_t)st.st_ino != inode)) {
        char *renamed = find_renamed(c->dir, device, inode, state, offset);
        if (renamed) {
            csvsrc_note("%s was renamed to %s since the checkpoint (inode %llu): finishing it after line %lld", full,
                        renamed, (unsigned long long)inode, (long long)line);
            int rc = resume_in(c, renamed, name, state, offset, line, err);
            free(renamed);
            return rc;
        }
    }
    if (!present) { /* processed and since removed: go on with the next file */
        csvsrc_gone_file(c, name, device, inode);
        c->done_file = c->file_index;
        c->done_offset = offset;
        c->done_line = line;
        return 0;
    }
    int fd = open(full, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return rn_fail(err, "%s: cannot open: %s", full, strerror(errno));
    if (csvsrc_begin_file(c, fd, full, name, 1, err)) return -1;
    if (identified && (uint64_t)st.st_ino != inode) not_rotated(c, c->dir, inode, again, sizeof again);
    else start_over(c, "", again, sizeof again);
    if (fingerprint_check(c->fd, c->path, offset, state, again, err)) return -1;
    return seek_to(c, offset, line, err);
}

int csvsrc_restore(struct csv_source *c, json_t *state, struct rn_err *err)
{
    json_t *off = json_object_get(state, "offset"), *line = json_object_get(state, "line");
    const char *path = json_string_value(json_object_get(state, "path"));
    if (!json_is_integer(off) || !json_is_integer(line) || !path)
        return rn_fail(err, "%s: the checkpoint has no path/offset/line", c->declared_path);
    if (strcmp(path, c->declared_path) != 0)
        return rn_fail(err, "the checkpoint is for %s but the job reads %s; start without --resume", path,
                       c->declared_path);
    if (c->dir) return restore_dir(c, state, json_integer_value(off), json_integer_value(line), err);
    return restore_path(c, state, json_integer_value(off), json_integer_value(line), err);
}
