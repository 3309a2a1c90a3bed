/* test_cache.c: the answer cache's SHA-256 (FIPS 180-4 and NIST vectors) and its log store
 * (runtime/cache.c): put/get, reopen, duplicates, torn tails, foreign files, locking, and a
 * large store's open time. Prints failures and "N passed, N failed"; exits non-zero on failure. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "models/cache.h"

#include "check.h"

static void hex(const uint8_t *key, char *out)
{
    for (int i = 0; i < CACHE_KEY_SIZE; i++) sprintf(out + 2 * i, "%02x", key[i]);
}

static void sha_of(const void *data, size_t n, char *out)
{
    struct cache_hash h;
    uint8_t key[CACHE_KEY_SIZE];
    cache_hash_init(&h);
    cache_hash_update(&h, data, n);
    cache_hash_final(&h, key);
    hex(key, out);
}

static void test_sha256(void)
{
    static const struct { const char *in, *out; } vectors[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrs"
         "mnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
        {"The quick brown fox jumps over the lazy dog",
         "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592"},
    };
    char got[65];
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        sha_of(vectors[i].in, strlen(vectors[i].in), got);
        CHECK(strcmp(got, vectors[i].out) == 0, "sha256(\"%.20s...\") = %s, want %s", vectors[i].in, got, vectors[i].out);
    }
    /* a million 'a', fed in uneven pieces: every path through update */
    struct cache_hash h;
    uint8_t key[CACHE_KEY_SIZE];
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    cache_hash_init(&h);
    size_t at = 0, step = 1;
    while (at < 1000000) {
        size_t n = step < 1000000 - at ? step : 1000000 - at;
        cache_hash_update(&h, a + at, n);
        at += n;
        step = step * 7 % 157 + 1;
    }
    cache_hash_final(&h, key);
    hex(key, got);
    CHECK(strcmp(got, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0,
          "sha256(million a) = %s", got);
    /* every length around the padding boundaries agrees between one update and byte-by-byte */
    for (size_t n = 0; n < 200; n++) {
        char one[65];
        sha_of(a, n, one);
        cache_hash_init(&h);
        for (size_t k = 0; k < n; k++) cache_hash_update(&h, a + k, 1);
        cache_hash_final(&h, key);
        hex(key, got);
        CHECK(strcmp(one, got) == 0, "sha256 of %zu bytes differs by feeding", n);
    }
    free(a);
    /* fields are length-prefixed: ("ab","c") and ("a","bc") differ */
    uint8_t k1[CACHE_KEY_SIZE], k2[CACHE_KEY_SIZE];
    cache_hash_init(&h);
    cache_hash_field(&h, "ab", 2);
    cache_hash_field(&h, "c", 1);
    cache_hash_final(&h, k1);
    cache_hash_init(&h);
    cache_hash_field(&h, "a", 1);
    cache_hash_field(&h, "bc", 2);
    cache_hash_final(&h, k2);
    CHECK(memcmp(k1, k2, sizeof k1) != 0, "length-prefixed fields collide");
}

static void key_of(uint64_t i, uint8_t *key)
{
    struct cache_hash h;
    cache_hash_init(&h);
    cache_hash_update(&h, &i, sizeof i);
    cache_hash_final(&h, key);
}

static char dir[256];

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static void test_store(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/sub/dir/a.cache", dir);
    struct rn_err err;
    struct cache *c = cache_open(path, &err);
    CHECK(c != NULL, "open new: %s", err.msg);
    if (!c) return;
    CHECK(cache_count(c) == 0, "a new cache is empty");
    uint8_t key[CACHE_KEY_SIZE];
    struct buf v;
    buf_init(&v);
    key_of(1, key);
    CHECK(cache_get(c, key, &v) == 0, "miss on an empty cache");
    for (uint64_t i = 0; i < 3000; i++) {
        key_of(i, key);
        char value[64];
        int n = snprintf(value, sizeof value, "answer %llu", (unsigned long long)i);
        CHECK(cache_put(c, key, value, (size_t)n, &err) == 0, "put %llu: %s", (unsigned long long)i, err.msg);
    }
    key_of(7, key);
    CHECK(cache_put(c, key, "other", 5, &err) == 0, "put of a present key");
    CHECK(cache_count(c) == 3000, "count %zu after 3000 puts and a duplicate", cache_count(c));
    CHECK(cache_get(c, key, &v) == 1 && strcmp(v.data, "answer 7") == 0, "the first value stays: %s", v.data);
    key_of(3000, key);
    CHECK(cache_put(c, key, "", 0, &err) == 0 && cache_get(c, key, &v) == 1 && v.len == 0, "empty value");
    CHECK(cache_sync(c, &err) == 0, "sync: %s", err.msg);

    /* a second open of a cache in use fails, naming the file */
    struct cache *other = cache_open(path, &err);
    CHECK(other == NULL && strstr(err.msg, "in use by another runnel process") && strstr(err.msg, "a.cache"),
          "second open: %s", other ? "opened" : err.msg);
    cache_close(other);
    cache_close(c);

    /* reopen: everything is there */
    long whole = file_size(path);
    c = cache_open(path, &err);
    CHECK(c != NULL, "reopen: %s", err.msg);
    if (!c) return;
    CHECK(cache_count(c) == 3001, "count after reopen %zu", cache_count(c));
    CHECK(cache_torn_bytes(c) == 0, "no torn bytes in a whole file");
    int all = 1;
    for (uint64_t i = 0; i < 3000; i++) {
        key_of(i, key);
        char value[64];
        snprintf(value, sizeof value, "answer %llu", (unsigned long long)i);
        if (cache_get(c, key, &v) != 1 || strcmp(v.data, value) != 0) all = 0;
    }
    CHECK(all, "every value back after reopen");
    key_of(5000, key);
    CHECK(cache_put(c, key, "last one", 8, &err) == 0, "put after reopen");
    cache_close(c);

    /* a torn tail: the last record loses a few bytes, as after a crash mid-write */
    long size = file_size(path);
    CHECK(truncate(path, size - 3) == 0, "truncate");
    c = cache_open(path, &err);
    CHECK(c != NULL, "open with a torn tail: %s", c ? "" : err.msg);
    if (!c) return;
    CHECK(cache_count(c) == 3001, "torn: the whole records stay (%zu)", cache_count(c));
    CHECK(cache_torn_bytes(c) == size - 3 - whole, "torn: %lld bytes cut, want %ld", (long long)cache_torn_bytes(c),
          size - 3 - whole);
    CHECK(file_size(path) == whole, "torn: file cut back to the last whole record");
    CHECK(cache_get(c, key, &v) == 0, "torn: the torn record is gone");
    CHECK(cache_put(c, key, "again", 5, &err) == 0 && cache_get(c, key, &v) == 1 && strcmp(v.data, "again") == 0,
          "torn: the key can be stored again");
    cache_close(c);

    /* a torn record head (fewer bytes than a head) and a damaged value (crc) */
    size = file_size(path);
    int fd = open(path, O_WRONLY | O_APPEND);
    CHECK(write(fd, "0123456789", 10) == 10, "append junk");
    close(fd);
    c = cache_open(path, &err);
    CHECK(c && cache_count(c) == 3002 && file_size(path) == size, "a partial record head is cut");
    cache_close(c);
    fd = open(path, O_WRONLY);
    CHECK(pwrite(fd, "X", 1, size - 1) == 1, "flip a byte");
    close(fd);
    c = cache_open(path, &err);
    CHECK(c && cache_count(c) == 3001, "a record whose crc fails is cut (%zu)", c ? cache_count(c) : 0);
    cache_close(c);

    /* a file that is not a cache is refused, and left alone */
    char foreign[512];
    snprintf(foreign, sizeof foreign, "%s/foreign.cache", dir);
    FILE *f = fopen(foreign, "w");
    fputs("{\"not\": \"a cache\"}\n", f);
    fclose(f);
    c = cache_open(foreign, &err);
    CHECK(c == NULL && strstr(err.msg, "not a runnel cache file") && strstr(err.msg, "foreign.cache"),
          "foreign file: %s", c ? "opened" : err.msg);
    cache_close(c);
    CHECK(file_size(foreign) == (long)strlen("{\"not\": \"a cache\"}\n"), "foreign file untouched");

    /* a header torn while the cache was being made is redone */
    snprintf(foreign, sizeof foreign, "%s/half.cache", dir);
    f = fopen(foreign, "w");
    fputs("runnel ca", f);
    fclose(f);
    c = cache_open(foreign, &err);
    CHECK(c != NULL && cache_count(c) == 0, "half a header: made anew: %s", c ? "" : err.msg);
    cache_close(c);
    buf_free(&v);
}

/* Many entries: the index grows, lookups stay right, and a reopen scans quickly. */
static void test_many(void)
{
    size_t n = getenv("CACHE_ENTRIES") ? (size_t)atol(getenv("CACHE_ENTRIES")) : 200000;
    char path[512];
    snprintf(path, sizeof path, "%s/many.cache", dir);
    struct rn_err err;
    struct cache *c = cache_open(path, &err);
    CHECK(c != NULL, "open: %s", err.msg);
    if (!c) return;
    uint8_t key[CACHE_KEY_SIZE];
    int64_t started = rn_now_ms();
    for (uint64_t i = 0; i < n; i++) {
        key_of(i, key);
        char value[32];
        int len = snprintf(value, sizeof value, "%llu", (unsigned long long)(i % 5 + 1));
        if (cache_put(c, key, value, (size_t)len, &err)) { CHECK(0, "put: %s", err.msg); break; }
    }
    int64_t put_ms = rn_now_ms() - started;
    cache_close(c);
    started = rn_now_ms();
    c = cache_open(path, &err);
    int64_t open_ms = rn_now_ms() - started;
    CHECK(c && cache_count(c) == n, "reopen with %zu entries", n);
    if (!c) return;
    struct buf v;
    buf_init(&v);
    size_t right = 0;
    started = rn_now_ms();
    for (uint64_t i = 0; i < n; i += 7) {
        key_of(i, key);
        if (cache_get(c, key, &v) == 1 && v.len == 1 && v.data[0] == (char)('1' + i % 5)) right++;
    }
    int64_t get_ms = rn_now_ms() - started;
    CHECK(right == (n + 6) / 7, "lookups right: %zu of %zu", right, (n + 6) / 7);
    key_of(n + 1, key);
    CHECK(cache_get(c, key, &v) == 0, "a missing key misses");
    printf("test_cache: %zu entries, %ld bytes: put %lld ms, reopen %lld ms, %zu lookups %lld ms\n", n, file_size(path),
           (long long)put_ms, (long long)open_ms, (n + 6) / 7, (long long)get_ms);
    buf_free(&v);
    cache_close(c);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/runnel-test-cache.XXXXXX");
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    test_sha256();
    test_store();
    test_many();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "%s %s", getenv("KEEP") ? "echo kept" : "rm -rf", dir);
    if (system(cmd)) { /* best effort */ }
    return check_report("test_cache");
}
