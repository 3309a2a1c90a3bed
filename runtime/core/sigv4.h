/* sigv4.h: AWS Signature Version 4 (the Authorization header of a request to Bedrock and any
 * AWS service but S3), checked against AWS's published test suite (tests/data/sigv4/).
 *
 * The path is taken as it stands in the request URL (already percent-encoded) and encoded
 * once more for the canonical request, as every service but S3 wants: a Bedrock model id
 * `a:0` travels as `a%3A0` and is signed as `a%253A0`. libcurl 7.88's CURLOPT_AWS_SIGV4
 * does not do that second encoding, hence this module. */
#ifndef RUNNEL_SIGV4_H
#define RUNNEL_SIGV4_H

#include <stddef.h>
#include <time.h>
#include "core/util.h"

#define SIGV4_MAX_HEADERS 64

struct sigv4_header {
    const char *name;
    const char *value;
};

struct sigv4_request {
    const char *method;
    const char *path;          /* as in the URL, "/model/a%3A0/converse" */
    const char *query;         /* after '?', or NULL */
    const struct sigv4_header *headers; /* every header to sign: host, x-amz-date, and the rest */
    size_t nheaders;
    const void *payload;
    size_t payload_len;
};

struct sigv4_credentials {
    const char *access_key;
    const char *secret_key;    /* secret: never in a message */
    const char *region;        /* "us-east-1" */
    const char *service;       /* "bedrock" */
};

/* "20150830T123600Z" for t (UTC). */
void sigv4_amz_date(time_t t, char out[17]);

/* Append the Authorization header's value for req signed at amz_date (the request's
 * x-amz-date) to authorization. When not NULL, canonical and string_to_sign receive the
 * intermediate texts (for tests and for debugging a refused signature). -1 and err for a
 * malformed date or too many headers. */
int sigv4_sign(const struct sigv4_request *req, const struct sigv4_credentials *cred, const char *amz_date,
               struct buf *authorization, struct buf *canonical, struct buf *string_to_sign, struct rn_err *err);

#endif
