/* test_sha256.c: HMAC-SHA-256 against the RFC 4231 vectors and sha256_hex; SHA-256 itself is
 * checked with the FIPS 180-4 vectors in test_cache.c, through the cache's key hash. */
#include <string.h>

#include "core/sha256.h"
#include "check.h"

static void hmac_hex(const void *key, size_t key_len, const void *data, size_t len, char out[65])
{
    uint8_t mac[SHA256_SIZE];
    hmac_sha256(key, key_len, data, len, mac);
    sha256_hex(mac, out);
}

int main(void)
{
    uint8_t k20[20], kaa[131], ddd[50];
    char got[65];
    memset(k20, 0x0b, sizeof k20);
    hmac_hex(k20, sizeof k20, "Hi There", 8, got);
    CHECK(!strcmp(got, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"), "RFC 4231 case 1: %s", got);
    hmac_hex("Jefe", 4, "what do ya want for nothing?", 28, got);
    CHECK(!strcmp(got, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"), "RFC 4231 case 2: %s", got);
    memset(kaa, 0xaa, sizeof kaa);
    memset(ddd, 0xdd, sizeof ddd);
    hmac_hex(kaa, 20, ddd, sizeof ddd, got);
    CHECK(!strcmp(got, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"), "RFC 4231 case 3: %s", got);
    const char *t6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    hmac_hex(kaa, sizeof kaa, t6, strlen(t6), got);
    CHECK(!strcmp(got, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"), "RFC 4231 case 6: %s", got);
    const char *t7 = "This is a test using a larger than block-size key and a larger than block-size data. "
                     "The key needs to be hashed before being used by the HMAC algorithm.";
    hmac_hex(kaa, sizeof kaa, t7, strlen(t7), got);
    CHECK(!strcmp(got, "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"), "RFC 4231 case 7: %s", got);
    /* a key of exactly one block is used as it is, not hashed (value from `openssl dgst -sha256 -hmac`) */
    uint8_t k64[64];
    memset(k64, 'k', sizeof k64);
    hmac_hex(k64, sizeof k64, "x", 1, got);
    CHECK(!strcmp(got, "f91c4c403625fb06910ef93999265bbd2d62baeaec6ff36455498cc124fe3e66"), "64-byte key: %s", got);
    return check_report("test_sha256");
}
