/* cache.h: the on-disk answer cache: an append-only log of (key, value) records plus an
 * in-memory index from key to file offset.
 *
 * One file per cache, locked by one process at a time. A record is [key 32][length 4]
 * [crc32 4][value], appended with one write; the index keeps 16 bytes per entry (a key
 * prefix and the offset), so a million answers cost about 32 MB of memory, not one file each.
 * Opening scans the log and cuts away a torn last record (a crash in the middle of a write),
 * so a cache can lose its newest entries but never hands back a damaged one. */
#ifndef RUNNEL_CACHE_H
#define RUNNEL_CACHE_H

#include <stddef.h>
#include <stdint.h>
#include "core/sha256.h"
#include "core/util.h"

#define CACHE_KEY_SIZE SHA256_SIZE
#define CACHE_VALUE_MAX (64u << 20) /* a longer value is not stored */

/* Cache keys are SHA-256 digests (core/sha256.h); these names keep the cache's callers short. */
struct cache_hash { struct sha256 sha; };
static inline void cache_hash_init(struct cache_hash *h) { sha256_init(&h->sha); }
static inline void cache_hash_update(struct cache_hash *h, const void *data, size_t n) { sha256_update(&h->sha, data, n); }
static inline void cache_hash_field(struct cache_hash *h, const void *data, size_t n) { sha256_field(&h->sha, data, n); }
static inline void cache_hash_final(struct cache_hash *h, uint8_t out[CACHE_KEY_SIZE]) { sha256_final(&h->sha, out); }

struct cache;

/* Open (creating it and its directory when missing) the cache log at path and build the index.
 * Fails when the file is not a runnel cache or another process holds it. Caller closes with
 * cache_close. */
struct cache *cache_open(const char *path, struct rn_err *err);

/* 1 and the value in out (replacing its contents) when key is cached; 0 when it is not (or its
 * record cannot be read back intact). */
int cache_get(struct cache *c, const uint8_t key[CACHE_KEY_SIZE], struct buf *out);

/* Append key -> value unless key is cached already. -1 and err when the write fails: the file
 * is cut back to its last whole record and the cache stops storing (lookups go on). */
int cache_put(struct cache *c, const uint8_t key[CACHE_KEY_SIZE], const char *value, size_t len,
              struct rn_err *err);

/* fdatasync what was appended since the last sync. -1 and err on failure. */
int cache_sync(struct cache *c, struct rn_err *err);

size_t cache_count(const struct cache *c);        /* entries in the index */
const char *cache_path(const struct cache *c);
int64_t cache_torn_bytes(const struct cache *c);  /* bytes cut off a torn tail at open */

/* Sync (errors ignored: the log stays consistent) and close. NULL is fine. */
void cache_close(struct cache *c);

#endif
