/* files.c: the files the CSV source opens, one after another: the table of them (a record's
 * source_pos.file is its index), beginning one from its start, its header row, and a
 * directory's files in name order.
 *
 * A file is known by its device and inode, not its name: a directory's file renamed (rotated)
 * to another name that matches the pattern is not read twice, and a new file under a name read
 * before is read. A file left behind stays open until its records are all acknowledged, so its
 * inode number cannot go to another file meanwhile; after that its first bytes tell them apart. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sources/csv/csv_int.h"
#include "core/log.h"

#define HEAD_BYTES 4096

void csvsrc_note(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_warning("source.csv: %s", msg);
}

/* FNV-1a of the first len bytes of fd; 0 and *ok = 0 when they cannot be read. */
static uint64_t head_hash(int fd, int64_t len, int *ok)
{
    char bytes[HEAD_BYTES];
    ssize_t n;
    do n = pread(fd, bytes, (size_t)len, 0); while (n < 0 && errno == EINTR);
    *ok = n == len;
    uint64_t h = 1469598103934665603ull;
    for (ssize_t i = 0; *ok && i < n; i++) h = (h ^ (unsigned char)bytes[i]) * 1099511628211ull;
    return h;
}

/* A new entry at the end of the files table: the current file from here. */
static struct csv_file *add_file(struct csv_source *c, const char *name)
{
    if ((size_t)c->file_index + 2 > c->files_cap) {
        c->files_cap = c->files_cap ? c->files_cap * 2 : 4;
        c->files = rn_realloc(c->files, c->files_cap * sizeof *c->files);
    }
    struct csv_file *f = &c->files[++c->file_index];
    memset(f, 0, sizeof *f);
    f->name = rn_strdup(name);
    f->fd = -1;
    return f;
}

static void close_file(struct csv_source *c, struct csv_file *f, int fd)
{
    if (c->watch) csvsrc_follow_release(c->watch, f->device, f->inode);
    close(fd);
}

void csvsrc_close_before(struct csv_source *c, int32_t upto)
{
    for (; c->open_from < upto; c->open_from++) {
        struct csv_file *f = &c->files[c->open_from];
        if (f->fd >= 0) close_file(c, f, f->fd);
        f->fd = -1;
    }
}

/* The current file is left behind: remember where it ended and how it begins, and keep it
 * open while a checkpoint may still need its fingerprint. */
static void retire_current(struct csv_source *c)
{
    struct csv_file *f = &c->files[c->file_index];
    f->finished = 1;
    f->end_offset = c->out_offset;
    struct stat st;
    int64_t len = fstat(c->fd, &st) == 0 ? (st.st_size < HEAD_BYTES ? st.st_size : HEAD_BYTES) : 0;
    int ok = 0;
    f->head_hash = head_hash(c->fd, len, &ok);
    f->head_len = ok ? len : -1;
    if (c->done_file <= c->file_index) {
        f->fd = c->fd;
    } else {
        close_file(c, f, c->fd);
    }
    c->fd = -1;
}

int csvsrc_begin_file(struct csv_source *c, int fd, const char *path, const char *name, int header_now,
                      struct rn_err *err)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || lseek(fd, 0, SEEK_SET) < 0) {
        rn_fail(err, "%s: cannot read: %s", path, strerror(errno));
        if (fd != c->fd) close(fd);
        return -1;
    }
    char *path_copy = rn_strdup(path), *name_copy = rn_strdup(name); /* either may be ours, freed below */
    int again = fd == c->fd; /* truncated in place: the same file from its start */
    if (again) {
        c->files[c->file_index].truncated = 1;
    } else if (c->fd >= 0) {
        retire_current(c);
    }
    struct csv_file *f = add_file(c, name_copy);
    free(name_copy);
    f->device = (uint64_t)st.st_dev;
    f->inode = (uint64_t)st.st_ino;
    f->fd = -1;
    if (!again && c->watch) csvsrc_follow_hold(c->watch, f->device, f->inode);
    c->fd = fd;
    free(c->path);
    c->path = path_copy;
    csv_free(&c->parser);
    if (csvsrc_parser_reset(c, err)) return -1;
    c->chunk_base = 0;
    c->chunk_len = c->chunk_pos = 0;
    c->eof = c->finished = c->draining = 0;
    csvsrc_rowbuf_clear(&c->raw);
    csvsrc_batch_clear(c->out);
    c->building_bytes = 0;
    c->out_offset = 0;
    c->header_offset = c->header_line = 0;
    c->line = c->next_row_line = 1;
    c->file_size = st.st_size;
    c->need_header = c->header;
    if (!c->need_header || !header_now) return 0;
    int rc = csvsrc_take_header(c, err);
    if (rc == 0) return rn_fail(err, "%s: the file is empty: expected a header row", c->path);
    return rc < 0 ? -1 : 0;
}

void csvsrc_gone_file(struct csv_source *c, const char *name, uint64_t device, uint64_t inode)
{
    if (c->fd >= 0) retire_current(c);
    struct csv_file *f = add_file(c, name);
    f->device = device;
    f->inode = inode;
    f->fd = -1;
    f->head_len = -1;
}

void csvsrc_read_before(struct csv_source *c, const char *name, uint64_t device, uint64_t inode, int64_t head_len,
                        uint64_t head_hash)
{
    struct csv_file *f = add_file(c, name); /* then moved before the current file */
    struct csv_file entry = *f;
    if (c->file_index > 0) {
        memmove(c->files + 1, c->files, (size_t)c->file_index * sizeof *c->files);
        c->open_from++;
    }
    entry.device = device;
    entry.inode = inode;
    entry.finished = 1;
    entry.head_len = head_len;
    entry.head_hash = head_hash;
    c->files[0] = entry;
    c->done_file = c->file_index; /* the file opened at csv_open, where it was */
}

/* Check a later file's header row against the first file's. */
static int check_header(struct csv_source *c, const struct row *r, struct rn_err *err)
{
    const struct rowbuf *b = &c->raw;
    const char *first = c->dir ? "as in the first file of the directory" : "as in the first file at the path";
    if (r->count != c->nfile_header)
        return rn_fail(err, "%s: the header has %zu columns, expected %zu (%s)", c->path, r->count, c->nfile_header,
                       first);
    for (size_t i = 0; i < r->count; i++) {
        const char *name = b->data.data + b->field_off[r->first + i];
        if (strcmp(name, c->file_header[i]) != 0)
            return rn_fail(err, "%s: header column %zu is '%s', expected '%s' as in the first file", c->path, i + 1,
                           name, c->file_header[i]);
    }
    return 0;
}

int csvsrc_take_header(struct csv_source *c, struct rn_err *err)
{
    struct rowbuf *b = &c->raw;
    c->reading_header = 1; /* kept until the row is complete: every column of it is kept */
    int rc = csvsrc_parse_more(c, err);
    if (rc < 0) {
        c->reading_header = 0;
        return rn_wrap(err, "%s: header", c->path);
    }
    if (rc == 0) return 0;
    c->reading_header = 0;
    struct row *r = &b->rows[b->row_next++];
    if (c->file_header) {
        if (check_header(c, r, err)) return -1;
    } else {
        c->file_header = rn_calloc(r->count, sizeof *c->file_header);
        for (size_t i = 0; i < r->count; i++) {
            c->file_header[i] = rn_strndup(b->data.data + b->field_off[r->first + i], b->field_len[r->first + i]);
            c->nfile_header = i + 1;
            if (!rn_utf8_valid(c->file_header[i], strlen(c->file_header[i]), NULL))
                return rn_fail(err, "%s: line 1: header column %zu is not valid UTF-8", c->path, i + 1);
        }
        if (!c->columns) {
            c->columns = rn_calloc(r->count, sizeof *c->columns);
            for (size_t i = 0; i < r->count; i++) c->columns[i] = rn_strdup(c->file_header[i]);
            c->ncolumns = r->count;
        } else if (r->count != c->ncolumns) {
            return rn_fail(err, "%s: the header has %zu columns, expected %zu (as `columns` names)", c->path, r->count,
                           c->ncolumns);
        }
    }
    c->header_offset = c->out_offset = r->end_offset;
    c->header_line = r->line;
    c->files[c->file_index].start_offset = c->header_offset;
    c->files[c->file_index].start_line = c->header_line;
    c->need_header = 0;
    return csvsrc_ensure_fields(c, err) ? -1 : 1;
}

static int name_matches(const struct csv_source *c, const char *name)
{
    return name[0] != '.' && fnmatch(c->pattern, name, 0) == 0;
}

/* The file this run has read already that the file at full (stat st) is, or NULL. One still
 * open is that file; one closed is, when the first bytes are the same. */
static struct csv_file *already_read(struct csv_source *c, const char *full, const struct stat *st)
{
    for (int32_t i = c->file_index; i >= 0; i--) {
        struct csv_file *f = &c->files[i];
        if (f->device != (uint64_t)st->st_dev || f->inode != (uint64_t)st->st_ino) continue;
        if (f->fd >= 0 || (i == c->file_index && c->fd >= 0) || !f->finished || f->head_len < 0) return f;
        if (st->st_size < f->head_len) continue;
        int fd = open(full, O_RDONLY | O_CLOEXEC), ok = 0;
        if (fd < 0) continue;
        uint64_t h = head_hash(fd, f->head_len, &ok);
        close(fd);
        if (ok && h == f->head_hash) return f;
    }
    return NULL;
}

/* The first file in the directory (name order) from `after` on (NULL: the first of all) that
 * this run has not read, or NULL. The caller frees the result. */
static char *next_file_name(struct csv_source *c, const char *after)
{
    DIR *d = opendir(c->dir);
    if (!d) return NULL;
    char *best = NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!name_matches(c, e->d_name)) continue;
        if (after && strcmp(e->d_name, after) < 0) continue;
        if (best && strcmp(e->d_name, best) >= 0) continue;
        char full[4096];
        struct stat st;
        snprintf(full, sizeof full, "%s/%s", c->dir, e->d_name);
        if (stat(full, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        struct csv_file *seen = already_read(c, full, &st);
        if (seen) {
            if (strcmp(seen->name, e->d_name) != 0 && (!seen->seen_as || strcmp(seen->seen_as, e->d_name) != 0)) {
                csvsrc_note("%s is %s/%s renamed (inode %llu), read already: not reading it again", full, c->dir,
                            seen->name, (unsigned long long)seen->inode);
                free(seen->seen_as);
                seen->seen_as = rn_strdup(e->d_name);
            }
            continue;
        }
        free(best);
        best = rn_strdup(e->d_name);
    }
    closedir(d);
    return best;
}

int csvsrc_open_next_file(struct csv_source *c, struct rn_err *err)
{
    char *name = next_file_name(c, c->current_name);
    if (!name) return 0;
    char full[4096];
    snprintf(full, sizeof full, "%s/%s", c->dir, name);
    int fd = open(full, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rn_fail(err, "%s: cannot open: %s", full, strerror(errno));
        free(name);
        return -1;
    }
    if (c->current_name && strcmp(name, c->current_name) == 0) {
        struct stat st;
        if (fstat(fd, &st) == 0)
            csvsrc_note("%s is a new file (inode %llu) under a name read before: reading it from its start", full,
                        (unsigned long long)st.st_ino);
    }
    free(c->current_name);
    c->current_name = name;
    if (csvsrc_begin_file(c, fd, full, name, 1, err)) return -1;
    return 1;
}
