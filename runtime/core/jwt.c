/* jwt.c: RS256 JSON Web Tokens (see jwt.h). */
#include "core/jwt.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <string.h>

void base64url_put(struct buf *b, const void *data, size_t n)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const unsigned char *p = data;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        char out[4] = {alphabet[v >> 18], alphabet[(v >> 12) & 63], alphabet[(v >> 6) & 63], alphabet[v & 63]};
        buf_put(b, out, 4);
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        char out[2] = {alphabet[v >> 18], alphabet[(v >> 12) & 63]};
        buf_put(b, out, 2);
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        char out[3] = {alphabet[v >> 18], alphabet[(v >> 12) & 63], alphabet[(v >> 6) & 63]};
        buf_put(b, out, 3);
    }
}

static int crypto_fail(struct rn_err *err, const char *what)
{
    char reason[256] = "unknown error";
    unsigned long code = ERR_get_error();
    if (code) ERR_error_string_n(code, reason, sizeof reason);
    ERR_clear_error();
    return rn_fail(err, "%s: %s", what, reason);
}

int jwt_sign_rs256(const char *private_key_pem, const char *claims_json, struct buf *out, struct rn_err *err)
{
    BIO *bio = BIO_new_mem_buf(private_key_pem, -1);
    EVP_PKEY *key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (!key) return crypto_fail(err, "private key: not a PEM private key");
    if (EVP_PKEY_base_id(key) != EVP_PKEY_RSA) {
        EVP_PKEY_free(key);
        return rn_fail(err, "private key: RS256 needs an RSA key");
    }
    size_t start = out->len;
    static const char header[] = "{\"alg\":\"RS256\",\"typ\":\"JWT\"}";
    base64url_put(out, header, sizeof header - 1);
    buf_putc(out, '.');
    base64url_put(out, claims_json, strlen(claims_json));
    size_t signed_len = out->len - start;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char signature[1024];
    size_t sig_len = sizeof signature;
    int ok = ctx && EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) == 1 &&
             EVP_PKEY_get_size(key) <= (int)sizeof signature &&
             EVP_DigestSign(ctx, signature, &sig_len, (const unsigned char *)out->data + start, signed_len) == 1;
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(key);
    if (!ok) {
        out->len = start;
        out->data[start] = '\0';
        return crypto_fail(err, "RS256 signature");
    }
    buf_putc(out, '.');
    base64url_put(out, signature, sig_len);
    return 0;
}
