/* http.h: one HTTP client on libcurl's multi interface, for every part of runnel that talks
 * HTTP (the model engine today; the coming Elasticsearch sink, Schema Registry client and
 * supervisor).
 *
 * A client (struct http) owns a curl multi handle and an epoll set that curl's socket callback
 * fills, so a wake-up costs O(ready sockets), not O(connections). A request (struct
 * http_request) belongs to its caller, who makes it once and sends it many times: its easy
 * handle, URL, body, header lines and answer buffers are kept between transfers, so once warm a
 * transfer allocates nothing outside libcurl. The client reads the clock only in http_wait and
 * never blocks anywhere else.
 *
 * Use: http_request_init; fill method, url, body and headers; http_start; then, in the loop,
 * http_wait (sockets), http_run_timer (curl's timeouts) and http_next_done for each finished
 * request, whose answer (status, headers, body, curl result, timings) stays in the request
 * until it is started again. main() calls curl_global_init; this module never does. */
#ifndef RUNNEL_HTTP_H
#define RUNNEL_HTTP_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>

#include "core/http_tls.h"
#include "core/util.h"

/* One answer header. name and value are NUL-terminated; name as the server spelled it. */
struct http_header {
    const char *name, *value;
    size_t name_len, value_len;
};

/* An answer as a reader of it (a model provider, a test) sees it: status, headers in the order
 * they came, body. It points into whatever holds the answer (http_response_of: a request). */
struct http_response {
    long status;
    const struct http_header *headers;
    size_t header_count;
    const char *body;
    size_t body_len;
};

/* The last header called name (any case), or NULL. */
const struct http_header *http_response_header(const struct http_response *r, const char *name);

struct http_timings {
    int64_t total_us;         /* from the start of the transfer to its end */
    int64_t pretransfer_us;   /* ... to the moment the request was about to be sent */
    int64_t starttransfer_us; /* ... to the first byte of the answer */
    long connects;            /* connections this transfer opened (0: it reused one) */
    int http_version;         /* of the answer: 10, 11, 20 or 30; 0 when none came */
};

#define HTTP_HEADERS_MAX 256   /* answer headers kept per transfer; more are dropped */

struct http_span { size_t name, name_len, value, value_len; }; /* offsets into header_text */

/* One reusable request. The fields above "answer" are the caller's to set between transfers;
 * the answer is valid from http_next_done until the request is started again; the rest is
 * http.c's. Header lines added with http_request_add_header are wiped when cleared (they may
 * hold a token); the lent list stays its owner's. */
struct http_request {
    const char *method;              /* "POST" (after init and clear), "GET", "PUT", "DELETE", "HEAD"...; static */
    struct buf url;
    struct buf body;                 /* sent with every method but GET and HEAD */
    const struct curl_slist *headers; /* lent lines sent after the request's own; NULL for none */
    int64_t timeout_ms;              /* the whole transfer; 0: no limit */
    int64_t connect_timeout_ms;      /* 0: curl's default */
    size_t max_response;             /* a longer body fails the transfer (too_large); 0: no limit */
    void *user;                      /* the caller's */

    /* answer */
    CURLcode result;
    long status;                     /* 0 when no answer came */
    int too_large;                   /* the body passed max_response (result is CURLE_WRITE_ERROR) */
    struct buf response;             /* the body; the caller may rewrite it (e.g. redact) */
    struct http_header *response_headers;
    size_t response_header_count;
    struct http_timings timings;
    char error[CURL_ERROR_SIZE];     /* curl's message for result; may be empty */
    int described;                   /* error tells the TLS or proxy failure by its cause (http_tls.h) */
    int no_descriptor;               /* it failed for want of a file descriptor (EMFILE, ENFILE): it
                                      * never reached the server; try again once one is free */

    /* http.c's */
    CURL *easy;
    struct http *client;             /* the client the easy handle is bound to */
    int running;
    struct buf own_lines;            /* the request's own header lines, NUL-separated */
    size_t *own_offsets;
    size_t own_count, own_cap;
    struct curl_slist *nodes;        /* curl's view of the header lines, linked at start */
    size_t nodes_cap;
    struct buf header_text;          /* answer headers as name\0value\0 ... */
    struct http_span *spans;         /* one per answer header, while it comes in */
    size_t spans_cap, headers_cap;
    const char *applied_method;
    int64_t applied_timeout_ms, applied_connect_timeout_ms;
    int applied_pipewait;
    int socket_errno;                /* why the open-socket callback failed this transfer, or 0 */
};

/* The short cause of a failed transfer, as outage messages show it: "connection refused",
 * "no such host", "timeout", "TLS handshake failed", "connection closed", else curl's text. */
const char *http_result_cause(CURLcode result);

void http_request_init(struct http_request *r);
/* Free everything the request holds. It must not be running (http_cancel first). */
void http_request_free(struct http_request *r);
/* Empty url, body and the request's own header lines; method back to POST; no lent list. */
void http_request_clear(struct http_request *r);
/* Add "name: value" to the request's own lines (copied). Name and value must hold no line
 * break (callers check what they got from users). */
void http_request_add_header(struct http_request *r, const char *name, const char *value);
/* How many own lines there are; http_request_truncate_headers drops (and wipes) those added
 * after such a mark, so an owner can redo per-attempt headers. */
size_t http_request_header_mark(const struct http_request *r);
void http_request_truncate_headers(struct http_request *r, size_t mark);
/* The header lines as curl sends them: own lines, then the lent list. Valid until the request
 * changes. */
const struct curl_slist *http_request_header_list(struct http_request *r);
/* The answer of a finished request as a struct http_response (pointing into r). */
struct http_response http_response_of(const struct http_request *r);

struct http;

/* A client keeping at most max_connections connections (per host and in all; 0: curl's
 * defaults). NULL and err on failure. Free with http_free, after every request it ran was
 * finished or cancelled. TLS peers are checked against the system's CA store, or against the
 * file named by $SSL_CERT_FILE when it is set (as OpenSSL's own tools do). */
struct http *http_new(long max_connections, struct rn_err *err);
void http_free(struct http *h);
/* TLS and proxy for every transfer from now on (a copy of t is kept). Without it: the system's
 * CA store (or $SSL_CERT_FILE), verification on, TLS 1.2 at least, curl's proxy variables. */
void http_set_transport(struct http *h, const struct http_transport *t);
/* Change the connection limit; connections over it close as their transfers end. */
void http_set_max_connections(struct http *h, long max_connections);
/* Connection sockets open now, and the most open at once so far. The client's own
 * descriptors (its epoll set, curl's wake-up pair) are not counted: HTTP_OWN_DESCRIPTORS. */
int http_connections(const struct http *h);
int http_connections_max(const struct http *h);
#define HTTP_OWN_DESCRIPTORS 3
#define HTTP_STREAMS_PER_CONNECTION 100 /* HTTP/2 streams at most on one connection (or the server's fewer) */

/* Start r at now_ms (the caller's clock of this wake-up). -1 and err ("libcurl: ...") when it
 * cannot be started; r is then not running. */
int http_start(struct http *h, struct http_request *r, int64_t now_ms, struct rn_err *err);
/* Take r out of the client unfinished (no answer). Nothing when it is not running. */
void http_cancel(struct http *h, struct http_request *r);
int http_running(const struct http *h);

/* When curl's timer falls due (the clock of http_start/http_wait/http_run_timer), -1 for none. */
int64_t http_due_ms(const struct http *h);
/* Run curl's timer when it is due at now_ms: 1 when it ran, 0 when not due, -1 and err. */
int http_run_timer(struct http *h, int64_t now_ms, struct rn_err *err);
/* Wait up to timeout_ms (0: do not wait) for socket events and hand them to curl. *now_ms is
 * read again when it waited or something happened. -1 and err when epoll or curl fails. */
int http_wait(struct http *h, int timeout_ms, int64_t *now_ms, struct rn_err *err);
/* The next finished request (taken out of the client, its answer filled), or NULL. */
struct http_request *http_next_done(struct http *h);
/* The epoll descriptor, readable when a socket is, for a loop that waits on more than this. */
int http_fd(const struct http *h);

#endif
