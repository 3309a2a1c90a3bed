/* cache.c: the answer cache's log file and its index (see cache.h).
 *
 * The index is open addressing over (key prefix, offset) pairs; offset 0 marks an empty
 * slot (the file header sits there, so no record does). A prefix match is confirmed against
 * the full key on disk, so two keys sharing 64 bits cost a read, never a wrong answer. */
#include "models/cache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEADER "runnel cache v1\n"
#define HEADER_SIZE 16
#define RECORD_HEAD (CACHE_KEY_SIZE + 8) /* key, length, crc */
#define SCAN_CHUNK (1u << 20)
#define INDEX_MIN 1024

/* ---- CRC-32 (the zlib polynomial), to tell a whole record from a torn one ---- */

static uint32_t crc_table[256];

static void crc_init(void)
{
    if (crc_table[1]) return;
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc_update(uint32_t crc, const void *data, size_t n)
{
    const uint8_t *p = data;
    crc = ~crc;
    while (n--) crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The crc of a record: over key, length and value. */
static uint32_t record_crc(const uint8_t *head, const void *value, uint32_t len)
{
    return crc_update(crc_update(0, head, CACHE_KEY_SIZE + 4), value, len);
}

/* ---- the cache ---- */

struct index_slot {
    uint64_t prefix;
    uint64_t offset; /* 0: empty */
};

struct cache {
    char *path;
    int fd;
    int64_t end;           /* where the next record goes */
    int64_t torn;
    int dirty;
    int failed;            /* a write failed: no more puts */
    struct index_slot *index;
    size_t index_cap;      /* a power of two */
    size_t count;
    struct buf record;     /* the record being appended */
    struct buf check;      /* a value read back to compare */
};

static uint64_t key_prefix(const uint8_t *key)
{
    uint64_t v;
    memcpy(&v, key, sizeof v);
    return v;
}

static void index_place(struct index_slot *index, size_t cap, uint64_t prefix, uint64_t offset)
{
    size_t i = (size_t)prefix & (cap - 1);
    while (index[i].offset) i = (i + 1) & (cap - 1);
    index[i].prefix = prefix;
    index[i].offset = offset;
}

static void index_add(struct cache *c, const uint8_t *key, int64_t offset)
{
    if ((c->count + 1) * 10 > c->index_cap * 7) {
        size_t cap = c->index_cap ? c->index_cap * 2 : INDEX_MIN;
        struct index_slot *index = rn_calloc(cap, sizeof *index);
        for (size_t i = 0; i < c->index_cap; i++)
            if (c->index[i].offset) index_place(index, cap, c->index[i].prefix, c->index[i].offset);
        free(c->index);
        c->index = index;
        c->index_cap = cap;
    }
    index_place(c->index, c->index_cap, key_prefix(key), (uint64_t)offset);
    c->count++;
}

static int read_at(int fd, void *data, size_t n, int64_t offset)
{
    uint8_t *p = data;
    while (n) {
        ssize_t got = pread(fd, p, n, (off_t)offset);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return -1;
        p += got;
        n -= (size_t)got;
        offset += got;
    }
    return 0;
}

static int write_at(int fd, const void *data, size_t n, int64_t offset)
{
    const uint8_t *p = data;
    while (n) {
        ssize_t put = pwrite(fd, p, n, (off_t)offset);
        if (put < 0 && errno == EINTR) continue;
        if (put < 0) return -1;
        p += put;
        n -= (size_t)put;
        offset += put;
    }
    return 0;
}

/* Read the record at offset into out if its key is key and it is intact. */
static int read_record(struct cache *c, uint64_t offset, const uint8_t *key, struct buf *out)
{
    uint8_t head[RECORD_HEAD];
    if (read_at(c->fd, head, sizeof head, (int64_t)offset)) return 0;
    if (memcmp(head, key, CACHE_KEY_SIZE) != 0) return 0;
    uint32_t len = get_u32(head + CACHE_KEY_SIZE);
    if (len > CACHE_VALUE_MAX) return 0;
    buf_clear(out);
    buf_reserve(out, len);
    if (len && read_at(c->fd, out->data, len, (int64_t)offset + RECORD_HEAD)) return 0;
    out->len = len;
    out->data[len] = '\0';
    return record_crc(head, out->data, len) == get_u32(head + CACHE_KEY_SIZE + 4);
}

static int lookup(struct cache *c, const uint8_t *key, struct buf *out)
{
    if (!c->count) return 0;
    uint64_t prefix = key_prefix(key);
    for (size_t i = (size_t)prefix & (c->index_cap - 1); c->index[i].offset; i = (i + 1) & (c->index_cap - 1))
        if (c->index[i].prefix == prefix && read_record(c, c->index[i].offset, key, out)) return 1;
    return 0;
}

int cache_get(struct cache *c, const uint8_t key[CACHE_KEY_SIZE], struct buf *out)
{
    return lookup(c, key, out);
}

int cache_put(struct cache *c, const uint8_t key[CACHE_KEY_SIZE], const char *value, size_t len, struct rn_err *err)
{
    if (c->failed || len > CACHE_VALUE_MAX) return 0;
    /* read whole, crc and all: a damaged stored copy then reads as absent and is written again */
    if (lookup(c, key, &c->check)) return 0;
    uint8_t head[RECORD_HEAD];
    memcpy(head, key, CACHE_KEY_SIZE);
    put_u32(head + CACHE_KEY_SIZE, (uint32_t)len);
    put_u32(head + CACHE_KEY_SIZE + 4, record_crc(head, value, (uint32_t)len));
    buf_clear(&c->record);
    buf_put(&c->record, head, sizeof head);
    buf_put(&c->record, value, len);
    if (write_at(c->fd, c->record.data, c->record.len, c->end)) {
        int e = errno;
        c->failed = 1;
        if (ftruncate(c->fd, (off_t)c->end) < 0) { /* the crc tells the torn record at the next open */ }
        return rn_fail(err, "%s: cannot append: %s", c->path, strerror(e));
    }
    index_add(c, key, c->end);
    c->end += (int64_t)c->record.len;
    c->dirty = 1;
    return 0;
}

int cache_sync(struct cache *c, struct rn_err *err)
{
    if (!c->dirty) return 0;
    c->dirty = 0;
    if (fdatasync(c->fd) < 0) {
        c->failed = 1;
        return rn_fail(err, "%s: fsync failed: %s", c->path, strerror(errno));
    }
    return 0;
}

size_t cache_count(const struct cache *c) { return c->count; }
const char *cache_path(const struct cache *c) { return c->path; }
int64_t cache_torn_bytes(const struct cache *c) { return c->torn; }

/* Index every whole record after the header; cut the file after the last one. */
static int scan(struct cache *c, int64_t size, struct rn_err *err)
{
    struct buf b;
    buf_init(&b);
    buf_reserve(&b, SCAN_CHUNK);
    size_t pos = 0;           /* of b */
    int64_t at = HEADER_SIZE; /* file offset of b.data[pos] */
    int64_t read_to = HEADER_SIZE;
    int rc = 0;
    for (;;) {
        /* have at least one record head, and then its value, in b */
        size_t need = RECORD_HEAD;
        int have_head = 0;
        for (;;) {
            if (b.len - pos >= need) {
                if (have_head) break;
                have_head = 1;
                uint32_t len = get_u32((uint8_t *)b.data + pos + CACHE_KEY_SIZE);
                if (len > CACHE_VALUE_MAX) goto torn;
                need = RECORD_HEAD + len;
                continue;
            }
            if (read_to >= size) goto torn;
            if (pos) {
                memmove(b.data, b.data + pos, b.len - pos);
                b.len -= pos;
                pos = 0;
            }
            buf_reserve(&b, need > SCAN_CHUNK ? need : SCAN_CHUNK);
            size_t want = b.cap - 1 - b.len;
            if ((int64_t)want > size - read_to) want = (size_t)(size - read_to);
            errno = 0;
            if (read_at(c->fd, b.data + b.len, want, read_to)) {
                rc = rn_fail(err, "%s: cannot read: %s", c->path, errno ? strerror(errno) : "short read");
                goto done;
            }
            b.len += want;
            read_to += (int64_t)want;
        }
        const uint8_t *head = (const uint8_t *)b.data + pos;
        uint32_t len = get_u32(head + CACHE_KEY_SIZE);
        if (record_crc(head, head + RECORD_HEAD, len) != get_u32(head + CACHE_KEY_SIZE + 4)) goto torn;
        index_add(c, head, at);
        pos += RECORD_HEAD + len;
        at += RECORD_HEAD + len;
        if (at == size) break;
    }
    c->end = at;
    goto done;
torn:
    c->end = at;
    c->torn = size - at;
    if (c->torn > 0 && ftruncate(c->fd, (off_t)at) < 0)
        rc = rn_fail(err, "%s: cannot cut a torn record at byte %lld: %s", c->path, (long long)at, strerror(errno));
done:
    buf_free(&b);
    return rc;
}

struct cache *cache_open(const char *path, struct rn_err *err)
{
    crc_init();
    struct cache *c = rn_calloc(1, sizeof *c);
    c->path = rn_strdup(path);
    c->fd = -1;
    buf_init(&c->record);
    buf_init(&c->check);
    if (rn_mkdir_parent(path, err)) goto fail;
    c->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (c->fd < 0) {
        rn_fail(err, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    if (flock(c->fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno == EWOULDBLOCK)
            rn_fail(err, "%s: in use by another runnel process (run with --no-cache or another --state-dir)", path);
        else
            rn_fail(err, "%s: cannot lock: %s", path, strerror(errno));
        goto fail;
    }
    struct stat st;
    if (fstat(c->fd, &st) < 0) {
        rn_fail(err, "%s: cannot stat: %s", path, strerror(errno));
        goto fail;
    }
    char header[HEADER_SIZE];
    size_t have = st.st_size < HEADER_SIZE ? (size_t)st.st_size : HEADER_SIZE;
    if (have && read_at(c->fd, header, have, 0)) {
        rn_fail(err, "%s: cannot read: %s", path, strerror(errno));
        goto fail;
    }
    if (memcmp(header, HEADER, have) != 0) {
        rn_fail(err, "%s: not a runnel cache file (remove it, or run with --no-cache)", path);
        goto fail;
    }
    if (have < HEADER_SIZE) { /* new, or torn while it was being made */
        if (ftruncate(c->fd, 0) < 0 || write_at(c->fd, HEADER, HEADER_SIZE, 0)) {
            rn_fail(err, "%s: cannot write: %s", path, strerror(errno));
            goto fail;
        }
        c->end = HEADER_SIZE;
        c->dirty = 1;
        return c;
    }
    c->end = HEADER_SIZE;
    if (st.st_size > HEADER_SIZE && scan(c, (int64_t)st.st_size, err)) goto fail;
    return c;
fail:
    cache_close(c);
    return NULL;
}

void cache_close(struct cache *c)
{
    if (!c) return;
    if (c->fd >= 0) {
        struct rn_err ignored;
        cache_sync(c, &ignored);
        close(c->fd);
    }
    free(c->index);
    free(c->path);
    buf_free(&c->record);
    buf_free(&c->check);
    free(c);
}
