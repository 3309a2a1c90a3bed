/* jwt.h: JSON Web Tokens signed with RS256 (RFC 7519, RFC 7518 section 3.3), for OAuth's
 * service-account flow (a Google service-account key exchanged for an access token, as
 * Vertex AI wants): header {"alg":"RS256","typ":"JWT"}, the claims, and an RSASSA-PKCS1-v1_5
 * SHA-256 signature made with libcrypto. The private key never appears in a message. */
#ifndef RUNNEL_JWT_H
#define RUNNEL_JWT_H

#include <stddef.h>
#include "core/util.h"

/* Append base64url (no padding) of data to b. */
void base64url_put(struct buf *b, const void *data, size_t n);

/* Append the compact JWT for claims_json (a JSON object, used as given) signed with the RSA
 * private key in PEM (PKCS#1 or PKCS#8) to out. -1 and err when the key does not load or
 * signing fails. */
int jwt_sign_rs256(const char *private_key_pem, const char *claims_json, struct buf *out, struct rn_err *err);

#endif
