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

/* crc_table[i]: i fed through 8 rounds of the reflected polynomial 0xedb88320 (a constant, so
 * no state is shared between jobs or threads). */
static const uint32_t crc_table[256] = {
    0x00000000, 0x77073096, 0xee0e612c, 0x990951ba, 0x076dc419, 0x706af48f,
    0xe963a535, 0x9e6495a3, 0x0edb8832, 0x79dcb8a4, 0xe0d5e91e, 0x97d2d988,
    0x09b64c2b, 0x7eb17cbd, 0xe7b82d07, 0x90bf1d91, 0x1db71064, 0x6ab020f2,
    0xf3b97148, 0x84be41de, 0x1adad47d, 0x6ddde4eb, 0xf4d4b551, 0x83d385c7,
    0x136c9856, 0x646ba8c0, 0xfd62f97a, 0x8a65c9ec, 0x14015c4f, 0x63066cd9,
    0xfa0f3d63, 0x8d080df5, 0x3b6e20c8, 0x4c69105e, 0xd56041e4, 0xa2677172,
    0x3c03e4d1, 0x4b04d447, 0xd20d85fd, 0xa50ab56b, 0x35b5a8fa, 0x42b2986c,
    0xdbbbc9d6, 0xacbcf940, 0x32d86ce3, 0x45df5c75, 0xdcd60dcf, 0xabd13d59,
    0x26d930ac, 0x51de003a, 0xc8d75180, 0xbfd06116, 0x21b4f4b5, 0x56b3c423,
    0xcfba9599, 0xb8bda50f, 0x2802b89e, 0x5f058808, 0xc60cd9b2, 0xb10be924,
    0x2f6f7c87, 0x58684c11, 0xc1611dab, 0xb6662d3d, 0x76dc4190, 0x01db7106,
    0x98d220bc, 0xefd5102a, 0x71b18589, 0x06b6b51f, 0x9fbfe4a5, 0xe8b8d433,
    0x7807c9a2, 0x0f00f934, 0x9609a88e, 0xe10e9818, 0x7f6a0dbb, 0x086d3d2d,
    0x91646c97, 0xe6635c01, 0x6b6b51f4, 0x1c6c6162, 0x856530d8, 0xf262004e,
    0x6c0695ed, 0x1b01a57b, 0x8208f4c1, 0xf50fc457, 0x65b0d9c6, 0x12b7e950,
    0x8bbeb8ea, 0xfcb9887c, 0x62dd1ddf, 0x15da2d49, 0x8cd37cf3, 0xfbd44c65,
    0x4db26158, 0x3ab551ce, 0xa3bc0074, 0xd4bb30e2, 0x4adfa541, 0x3dd895d7,
    0xa4d1c46d, 0xd3d6f4fb, 0x4369e96a, 0x346ed9fc, 0xad678846, 0xda60b8d0,
    0x44042d73, 0x33031de5, 0xaa0a4c5f, 0xdd0d7cc9, 0x5005713c, 0x270241aa,
    0xbe0b1010, 0xc90c2086, 0x5768b525, 0x206f85b3, 0xb966d409, 0xce61e49f,
    0x5edef90e, 0x29d9c998, 0xb0d09822, 0xc7d7a8b4, 0x59b33d17, 0x2eb40d81,
    0xb7bd5c3b, 0xc0ba6cad, 0xedb88320, 0x9abfb3b6, 0x03b6e20c, 0x74b1d29a,
    0xead54739, 0x9dd277af, 0x04db2615, 0x73dc1683, 0xe3630b12, 0x94643b84,
    0x0d6d6a3e, 0x7a6a5aa8, 0xe40ecf0b, 0x9309ff9d, 0x0a00ae27, 0x7d079eb1,
    0xf00f9344, 0x8708a3d2, 0x1e01f268, 0x6906c2fe, 0xf762575d, 0x806567cb,
    0x196c3671, 0x6e6b06e7, 0xfed41b76, 0x89d32be0, 0x10da7a5a, 0x67dd4acc,
    0xf9b9df6f, 0x8ebeeff9, 0x17b7be43, 0x60b08ed5, 0xd6d6a3e8, 0xa1d1937e,
    0x38d8c2c4, 0x4fdff252, 0xd1bb67f1, 0xa6bc5767, 0x3fb506dd, 0x48b2364b,
    0xd80d2bda, 0xaf0a1b4c, 0x36034af6, 0x41047a60, 0xdf60efc3, 0xa867df55,
    0x316e8eef, 0x4669be79, 0xcb61b38c, 0xbc66831a, 0x256fd2a0, 0x5268e236,
    0xcc0c7795, 0xbb0b4703, 0x220216b9, 0x5505262f, 0xc5ba3bbe, 0xb2bd0b28,
    0x2bb45a92, 0x5cb36a04, 0xc2d7ffa7, 0xb5d0cf31, 0x2cd99e8b, 0x5bdeae1d,
    0x9b64c2b0, 0xec63f226, 0x756aa39c, 0x026d930a, 0x9c0906a9, 0xeb0e363f,
    0x72076785, 0x05005713, 0x95bf4a82, 0xe2b87a14, 0x7bb12bae, 0x0cb61b38,
    0x92d28e9b, 0xe5d5be0d, 0x7cdcefb7, 0x0bdbdf21, 0x86d3d2d4, 0xf1d4e242,
    0x68ddb3f8, 0x1fda836e, 0x81be16cd, 0xf6b9265b, 0x6fb077e1, 0x18b74777,
    0x88085ae6, 0xff0f6a70, 0x66063bca, 0x11010b5c, 0x8f659eff, 0xf862ae69,
    0x616bffd3, 0x166ccf45, 0xa00ae278, 0xd70dd2ee, 0x4e048354, 0x3903b3c2,
    0xa7672661, 0xd06016f7, 0x4969474d, 0x3e6e77db, 0xaed16a4a, 0xd9d65adc,
    0x40df0b66, 0x37d83bf0, 0xa9bcae53, 0xdebb9ec5, 0x47b2cf7f, 0x30b5ffe9,
    0xbdbdf21c, 0xcabac28a, 0x53b39330, 0x24b4a3a6, 0xbad03605, 0xcdd70693,
    0x54de5729, 0x23d967bf, 0xb3667a2e, 0xc4614ab8, 0x5d681b02, 0x2a6f2b94,
    0xb40bbe37, 0xc30c8ea1, 0x5a05df1b, 0x2d02ef8d,
};

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
