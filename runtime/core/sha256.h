/* sha256.h: SHA-256 (FIPS 180-4) and HMAC-SHA-256 (RFC 2104), no allocation, no library.
 * For cache keys, checkpoint fingerprints and request signing (AWS SigV4).
 *
 * init, update any number of times, final. A context may be copied to continue from a common
 * prefix. */
#ifndef RUNNEL_SHA256_H
#define RUNNEL_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_SIZE 32

struct sha256 {
    uint32_t state[8];
    uint64_t length;   /* bytes hashed so far */
    uint8_t block[64];
    size_t used;       /* bytes waiting in block */
};
void sha256_init(struct sha256 *h);
void sha256_update(struct sha256 *h, const void *data, size_t n);
/* A length-prefixed field: hashing "ab","c" and "a","bc" this way gives different digests. */
void sha256_field(struct sha256 *h, const void *data, size_t n);
void sha256_final(struct sha256 *h, uint8_t out[SHA256_SIZE]);
/* The digest as 64 lowercase hex digits and a NUL. */
void sha256_hex(const uint8_t digest[SHA256_SIZE], char out[2 * SHA256_SIZE + 1]);

/* HMAC-SHA-256 of data under key (any length). */
void hmac_sha256(const void *key, size_t key_len, const void *data, size_t len, uint8_t out[SHA256_SIZE]);

#endif
