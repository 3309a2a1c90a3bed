/* fingerprint.c: file fingerprints for checkpoints (see fingerprint.h). */
#include "core/fingerprint.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/sha256.h"

/* SHA-256 (hex) of bytes [from, to) of fd. */
static int hash_range(int fd, const char *path, int64_t from, int64_t to, char hex[2 * SHA256_SIZE + 1],
                      struct rn_err *err)
{
    char chunk[FINGERPRINT_WINDOW];
    struct sha256 h;
    sha256_init(&h);
    while (from < to) {
        size_t want = (size_t)(to - from < (int64_t)sizeof chunk ? to - from : (int64_t)sizeof chunk);
        ssize_t n = pread(fd, chunk, want, from);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0)
            return rn_fail(err, "%s: cannot read bytes %lld..%lld: %s", path, (long long)from, (long long)to,
                           n < 0 ? strerror(errno) : "end of file");
        sha256_update(&h, chunk, (size_t)n);
        from += n;
    }
    uint8_t digest[SHA256_SIZE];
    sha256_final(&h, digest);
    sha256_hex(digest, hex);
    return 0;
}

static int64_t head_end(int64_t position) { return position < FINGERPRINT_WINDOW ? position : FINGERPRINT_WINDOW; }
static int64_t tail_start(int64_t position) { return position > FINGERPRINT_WINDOW ? position - FINGERPRINT_WINDOW : 0; }

int fingerprint_save(int fd, const char *path, int64_t position, json_t *out, struct rn_err *err)
{
    struct stat st;
    if (fstat(fd, &st) < 0) return rn_fail(err, "%s: cannot stat: %s", path, strerror(errno));
    char head[2 * SHA256_SIZE + 1], tail[2 * SHA256_SIZE + 1];
    if (hash_range(fd, path, 0, head_end(position), head, err)) return -1;
    if (hash_range(fd, path, tail_start(position), position, tail, err)) return -1;
    json_object_set_new(out, "device", json_integer((json_int_t)st.st_dev));
    json_object_set_new(out, "inode", json_integer((json_int_t)st.st_ino));
    json_object_set_new(out, "size", json_integer((json_int_t)st.st_size));
    json_object_set_new(out, "mtime_ns", json_integer((json_int_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec));
    json_object_set_new(out, "head_sha256", json_string(head));
    json_object_set_new(out, "tail_sha256", json_string(tail));
    return 0;
}

int fingerprint_check(int fd, const char *path, int64_t position, json_t *saved, const char *start_over,
                      struct rn_err *err)
{
    const char *want_head = json_string_value(json_object_get(saved, "head_sha256"));
    const char *want_tail = json_string_value(json_object_get(saved, "tail_sha256"));
    if (!want_head || !want_tail) return 0;
    struct stat st;
    if (fstat(fd, &st) < 0) return rn_fail(err, "%s: cannot stat: %s", path, strerror(errno));
    if (st.st_size < position)
        return rn_fail(err, "%s: the file is %lld bytes now, shorter than the %lld it had at the checkpoint: it was "
                       "truncated or replaced; %s", path, (long long)st.st_size, (long long)position, start_over);
    char head[2 * SHA256_SIZE + 1], tail[2 * SHA256_SIZE + 1];
    if (hash_range(fd, path, 0, head_end(position), head, err)) return -1;
    if (hash_range(fd, path, tail_start(position), position, tail, err)) return -1;
    int head_same = strcmp(head, want_head) == 0, tail_same = strcmp(tail, want_tail) == 0;
    if (head_same && tail_same) return 0;
    json_t *inode = json_object_get(saved, "inode");
    int replaced = json_is_integer(inode) && (uint64_t)json_integer_value(inode) != (uint64_t)st.st_ino;
    return rn_fail(err, "%s: the file was %s since the checkpoint (its %s before offset %lld are not as they were); %s",
                   path, replaced ? "replaced" : "changed",
                   !head_same && !tail_same ? "first and last bytes" : !head_same ? "first bytes" : "last bytes",
                   (long long)position, start_over);
}

int fingerprint_identity(json_t *saved, uint64_t *device, uint64_t *inode)
{
    json_t *dev = json_object_get(saved, "device"), *ino = json_object_get(saved, "inode");
    if (!json_is_integer(dev) || !json_is_integer(ino)) return 0;
    *device = (uint64_t)json_integer_value(dev);
    *inode = (uint64_t)json_integer_value(ino);
    return 1;
}
