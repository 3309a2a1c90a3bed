/* standin.h: what the local stand-ins (tools/schema-registry.c, tools/es-dev.c) share: a growable
 * buffer, command-line options declared as data (tools/model-server.c's too), and an HTTP/1.1
 * server on 127.0.0.1 (libmicrohttpd, poll mode, optional thread pool) that collects a request's
 * whole body and hands the request to one function. The one thing to know: a handler never sleeps.
 * A reply's delay_ms suspends the connection and a timer thread resumes it, so a slow answer holds
 * no thread. */
#ifndef RUNNEL_TOOLS_STANDIN_H
#define RUNNEL_TOOLS_STANDIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>
#include <microhttpd.h>

/* ---- buffer ------------------------------------------------------------------------------
 * A growable NUL-terminated byte buffer. After an allocation failure (or growth past
 * SBUF_MAX_BYTES) `failed` is set and later appends are ignored, so builders check once at the
 * end. The owner frees it with sbuf_free. */
#define SBUF_MAX_BYTES ((size_t)2 << 30)

struct sbuf {
    char *data;
    size_t length, capacity;
    bool failed;
};

bool sbuf_reserve(struct sbuf *buffer, size_t extra);
void sbuf_append(struct sbuf *buffer, const void *bytes, size_t length);
void sbuf_puts(struct sbuf *buffer, const char *text);
__attribute__((format(printf, 2, 3))) void sbuf_printf(struct sbuf *buffer, const char *format, ...);
/* Appends text as a quoted JSON string (control characters, quotes and backslashes escaped;
 * other bytes pass through, so the caller passes UTF-8). */
void sbuf_json_string(struct sbuf *buffer, const char *text, size_t length);
/* Appends value as compact JSON (any JSON value; NULL as null). */
void sbuf_json(struct sbuf *buffer, const json_t *value);
void sbuf_free(struct sbuf *buffer);

/* ---- options -----------------------------------------------------------------------------
 * Each option is declared once; parsing and --help read the same table. Values are
 * "--name VALUE" or "--name=VALUE". An integer whose default lies below its minimum (a port of
 * -1) is shown as required. */
enum standin_option_kind { STANDIN_INTEGER, STANDIN_RATE, STANDIN_TEXT, STANDIN_FLAG };

struct standin_option {
    const char *name;  /* "--port" */
    enum standin_option_kind kind;
    void *target;      /* long *, double * (a fraction in 0..1), const char ** or bool * */
    long minimum, maximum;  /* for STANDIN_INTEGER */
    const char *help;
};

/* Fills the targets from argv. Returns 0, or -1 with a message naming the option in error. */
int standin_options_parse(const struct standin_option *options, size_t count, int argc, char **argv,
                          char *error, size_t error_size);
void standin_options_help(FILE *out, const struct standin_option *options, size_t count);

/* ---- request helpers ---------------------------------------------------------------------- */

/* Splits a URL path at '/' into at most max_segments non-empty segments, copied into storage
 * (truncated to size). Returns the count, or -1 when there are more. */
int standin_split_path(const char *path, char *storage, size_t size, char **segments, int max_segments);

/* Whether a Content-Type header value names one of the media types in accepted (a NULL-ended
 * list), compared case-insensitively and followed by nothing, parameters (';') or white space. */
bool standin_media_type_in(const char *content_type, const char *const *accepted);

/* ---- server ------------------------------------------------------------------------------ */

/* One HTTP request, valid only during the handler call. */
struct standin_request {
    struct MHD_Connection *connection;
    const char *method;      /* "GET", "POST", ... */
    const char *path;        /* the URL path as libmicrohttpd gives it (%-decoded, no query) */
    const char *body;        /* NUL-terminated; "" when there is none */
    size_t body_length;
    bool body_too_large;     /* over max_body_bytes: body is empty, answer 413 */
};

/* Value of a request header or query parameter, NULL when absent. */
const char *standin_header(const struct standin_request *request, const char *name);
const char *standin_query(const struct standin_request *request, const char *name);
/* Whether a query parameter is on: present without a value (?pretty), empty, or "true". */
bool standin_query_flag(const struct standin_request *request, const char *name);

#define STANDIN_MAX_HEADERS 6

/* What the handler answers. body is taken over by the server. */
struct standin_reply {
    unsigned status;
    struct sbuf body;
    const char *content_type;  /* NULL: the server's default */
    char *header_names[STANDIN_MAX_HEADERS], *header_values[STANDIN_MAX_HEADERS];
    int header_count;
    uint64_t delay_ms;         /* answer after this long, without holding a thread */
    bool close;                /* close the connection without an answer (after delay_ms) */
};

/* Adds a response header (copied). Silently ignores headers past STANDIN_MAX_HEADERS. */
void standin_reply_header(struct standin_reply *reply, const char *name, const char *value);

struct standin_server {
    const char *name;             /* for messages: "es-dev" */
    long port;                    /* 0 picks a free port */
    long threads;                 /* 1: one poll thread; more: a pool of poll threads */
    size_t max_body_bytes;        /* larger bodies are not read: handle() sees body_too_large */
    const char *content_type;     /* default content type of replies */
    bool verbose;                 /* one line per request on stderr */
    void *context;                /* passed to handle() */
    /* Called once per request with the whole body (or body_too_large). Must fill reply->status.
     * Runs on a server thread: shared state needs a lock. */
    void (*handle)(void *context, const struct standin_request *request, struct standin_reply *reply);
};

/* Listens on 127.0.0.1, prints "listening on http://127.0.0.1:PORT" on stdout (flushed), serves
 * until SIGINT or SIGTERM, then stops. Returns 0, or 1 (with a message on stderr) when it cannot
 * listen. Blocks SIGINT/SIGTERM in the calling thread (they are taken with sigwait). */
int standin_serve(const struct standin_server *server);

/* "Basic <base64 of user:password>", the Authorization header value a client sends for
 * credentials "user:password". Caller frees. NULL when out of memory. */
char *standin_basic_authorization(const char *credentials);

/* Milliseconds on the monotonic clock. */
uint64_t standin_clock_ms(void);

#endif
