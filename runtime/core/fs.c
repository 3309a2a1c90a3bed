/* fs.c: files: whole writes, atomic replacement, whole reads, directories (see fs.h). */
#include "core/fs.h"
#include "core/buf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int rn_write_all(int fd, const void *data, size_t n)
{
    const char *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int rn_write_file_atomic(const char *path, const void *data, size_t n, struct rn_err *err)
{
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
        return rn_fail(err, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return rn_fail(err, "%s: cannot create: %s", tmp, strerror(errno));
    if (rn_write_all(fd, data, n) < 0 || fsync(fd) < 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return rn_fail(err, "%s: cannot write: %s", tmp, strerror(e));
    }
    if (close(fd) < 0) return rn_fail(err, "%s: cannot close: %s", tmp, strerror(errno));
    if (rename(tmp, path) < 0) return rn_fail(err, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
    return 0;
}

char *rn_read_file(const char *path, size_t *len_out, struct rn_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) { rn_fail(err, "%s: cannot open: %s", path, strerror(errno)); return NULL; }
    struct buf b;
    buf_init(&b);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) buf_put(&b, chunk, n);
    if (ferror(f)) {
        rn_fail(err, "%s: cannot read: %s", path, strerror(errno));
        fclose(f);
        buf_free(&b);
        return NULL;
    }
    fclose(f);
    buf_reserve(&b, 0);
    if (len_out) *len_out = b.len;
    return b.data;
}

int rn_mkdir_p(const char *path, struct rn_err *err)
{
    char tmp[4096];
    size_t n = strlen(path);
    if (n == 0) return 0;
    if (n >= sizeof tmp) return rn_fail(err, "%s: path too long", path);
    memcpy(tmp, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0') continue;
        char saved = tmp[i];
        tmp[i] = '\0';
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
            return rn_fail(err, "%s: cannot create directory: %s", tmp, strerror(errno));
        tmp[i] = saved;
    }
    return 0;
}

int rn_mkdir_parent(const char *file_path, struct rn_err *err)
{
    const char *slash = strrchr(file_path, '/');
    if (!slash || slash == file_path) return 0;
    char dir[4096];
    size_t n = (size_t)(slash - file_path);
    if (n >= sizeof dir) return rn_fail(err, "%s: path too long", file_path);
    memcpy(dir, file_path, n);
    dir[n] = '\0';
    return rn_mkdir_p(dir, err);
}
