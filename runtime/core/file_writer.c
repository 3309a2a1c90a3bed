/* file_writer.c: buffered whole-record file output with truncate-on-resume (see file_writer.h). */
#include "core/file_writer.h"
#include "core/fingerprint.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WRITE_THRESHOLD (1 << 20)

int fw_open(struct file_writer *w, const char *path, int append, int do_fsync, struct rn_err *err)
{
    memset(w, 0, sizeof *w);
    w->fd = -1;
    w->path = rn_strdup(path);
    w->do_fsync = do_fsync;
    buf_init(&w->pending);
    if (rn_mkdir_parent(path, err)) return -1;
    w->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), 0644);
    if (w->fd < 0) return rn_fail(err, "%s: cannot open for writing: %s", path, strerror(errno));
    struct stat st;
    if (fstat(w->fd, &st) == 0) w->written_len = st.st_size;
    buf_reserve(&w->pending, WRITE_THRESHOLD + 4096);
    return 0;
}

static int write_pending(struct file_writer *w, struct rn_err *err)
{
    if (w->failed) return rn_fail(err, "%s: an earlier write failed", w->path);
    if (w->pending.len == 0) return 0;
    if (rn_write_all(w->fd, w->pending.data, w->pending.len) < 0) {
        int e = errno;
        w->failed = 1;
        /* Cut a partial write back to the last whole record. */
        if (ftruncate(w->fd, w->written_len) < 0) { /* the message below still names the first error */ }
        return rn_fail(err, "%s: write failed: %s", w->path, strerror(e));
    }
    w->written_len += (int64_t)w->pending.len;
    buf_clear(&w->pending);
    return 0;
}

int fw_record_done(struct file_writer *w, struct rn_err *err)
{
    if (w->pending.len >= WRITE_THRESHOLD) return write_pending(w, err);
    return 0;
}

int fw_flush(struct file_writer *w, struct rn_err *err)
{
    if (write_pending(w, err)) return -1;
    if (w->do_fsync && fdatasync(w->fd) < 0 && errno != EINVAL) {
        w->failed = 1;
        return rn_fail(err, "%s: fsync failed: %s", w->path, strerror(errno));
    }
    return 0;
}

int fw_save(struct file_writer *w, json_t *state, struct rn_err *err)
{
    json_object_set_new(state, "path", json_string(w->path));
    json_object_set_new(state, "length", json_integer(w->written_len));
    return fingerprint_save(w->fd, w->path, w->written_len, state, err);
}

int fw_restore(struct file_writer *w, json_t *state, struct rn_err *err)
{
    json_t *len = json_object_get(state, "length");
    if (!json_is_integer(len)) return rn_fail(err, "%s: checkpoint has no length", w->path);
    int64_t n = json_integer_value(len);
    struct stat st;
    if (fstat(w->fd, &st) == 0 && st.st_size < n)
        return rn_fail(err, "%s: the file is shorter (%lld bytes) than at the checkpoint (%lld): it was changed; start without --resume",
                       w->path, (long long)st.st_size, (long long)n);
    if (fingerprint_check(w->fd, w->path, n, state,
                          "to start from the beginning, run without --resume (a stream job: remove its checkpoint "
                          "JOB.checkpoint.json from the state directory)", err))
        return -1;
    if (ftruncate(w->fd, n) < 0) return rn_fail(err, "%s: cannot truncate to %lld: %s", w->path, (long long)n, strerror(errno));
    if (lseek(w->fd, n, SEEK_SET) < 0) return rn_fail(err, "%s: cannot seek: %s", w->path, strerror(errno));
    w->written_len = n;
    buf_clear(&w->pending);
    return 0;
}

void fw_close(struct file_writer *w)
{
    if (w->fd >= 0) close(w->fd);
    w->fd = -1;
    buf_free(&w->pending);
    free(w->path);
    w->path = NULL;
}
