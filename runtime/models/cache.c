/* cache.c: the answer cache's log file, its index, and SHA-256 (see cache.h).
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

/* ---- SHA-256 ---- */

static const uint32_t sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void sha256_block(uint32_t state[8], const uint8_t *p)
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
    uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + sha256_k[i] + w[i];
        uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g; g = f; f = e; e = d + t1;
        d = c; c = b; b = a; a = t1 + t2;
    }
    state[0] += a; state[1] += b; state[2] += c; state[3] += d;
    state[4] += e; state[5] += f; state[6] += g; state[7] += h;
}

void cache_hash_init(struct cache_hash *h)
{
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(h->state, iv, sizeof iv);
    h->length = 0;
    h->used = 0;
}

void cache_hash_update(struct cache_hash *h, const void *data, size_t n)
{
    const uint8_t *p = data;
    h->length += n;
    if (h->used) {
        size_t take = 64 - h->used < n ? 64 - h->used : n;
        memcpy(h->block + h->used, p, take);
        h->used += take;
        p += take;
        n -= take;
        if (h->used < 64) return;
        sha256_block(h->state, h->block);
        h->used = 0;
    }
    for (; n >= 64; p += 64, n -= 64) sha256_block(h->state, p);
    memcpy(h->block, p, n);
    h->used = n;
}

void cache_hash_field(struct cache_hash *h, const void *data, size_t n)
{
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)((uint64_t)n >> (8 * i));
    cache_hash_update(h, len, sizeof len);
    cache_hash_update(h, data, n);
}

void cache_hash_final(struct cache_hash *h, uint8_t out[CACHE_KEY_SIZE])
{
    uint64_t bits = h->length * 8;
    uint8_t pad[72] = {0x80};
    size_t padding = (h->used < 56 ? 56 : 120) - h->used;
    for (int i = 0; i < 8; i++) pad[padding + (size_t)i] = (uint8_t)(bits >> (56 - 8 * i));
    cache_hash_update(h, pad, padding + 8);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(h->state[i] >> 24);
        out[4 * i + 1] = (uint8_t)(h->state[i] >> 16);
        out[4 * i + 2] = (uint8_t)(h->state[i] >> 8);
        out[4 * i + 3] = (uint8_t)h->state[i];
    }
}

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
