/* http.c: the HTTP client on curl multi (see http.h): curl's socket and timer callbacks into an
 * epoll set, easy handles made once per request and kept, answer headers and body captured
 * into the request's reused buffers.
 *
 * A connection socket stays in the epoll set between the transfers it carries (two epoll_ctl
 * calls per request cost more than the rest of a wake-up); the client opens and closes these
 * sockets itself, so it knows when a number still names the same socket. */
#include "core/http.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/fdlimit.h"

#define EVENTS_MAX 256              /* epoll events taken per wait */
#define HEADER_BYTES_MAX (256u << 10) /* answer header bytes kept per transfer */

enum {
    FD_OURS = 1,      /* opened by on_open_socket: it closes through on_close_socket */
    FD_IN_SET = 2,    /* in the epoll set */
    FD_WANTED = 4,    /* curl waits on it now */
    FD_IN = 8,        /* the events it is in the set for */
    FD_OUT = 16,
};

struct http {
    CURLM *multi;
    int epoll_fd;              /* the sockets curl asked to watch (on_socket) */
    uint8_t *fd_state;         /* FD_* bits by socket number, [0, fd_cap) */
    size_t fd_cap;
    int socket_errno;          /* an epoll_ctl failure to report from http_wait, or 0 */
    int64_t curl_due_ms;       /* when curl's timer fires (on_timer); -1: no timer */
    int curl_timer_set;        /* on_timer was called */
    int64_t now_ms;            /* the caller's clock of this wake-up */
    int running;
    int connections, connections_max; /* sockets of ours open now, and the most at once */
    char *ca_file;             /* $SSL_CERT_FILE when set, or NULL */
    struct http_transport transport; /* TLS and proxy of every transfer (http_set_transport) */
    char tls_failure[CURL_ERROR_SIZE]; /* the last TLS failure told by cause, until an answer comes */
};

/* A transfer that ended because its connection did: what the calls that waited to share a
 * connection whose TLS set-up failed see. */
static int cut_short(CURLcode result)
{
    return result == CURLE_SEND_ERROR || result == CURLE_RECV_ERROR || result == CURLE_HTTP2 ||
           result == CURLE_HTTP2_STREAM || result == CURLE_GOT_NOTHING;
}

/* ---- requests ---- */

void http_request_init(struct http_request *r)
{
    memset(r, 0, sizeof *r);
    r->method = "POST";
    buf_init(&r->url);
    buf_init(&r->body);
    buf_init(&r->response);
    buf_init(&r->own_lines);
    buf_init(&r->header_text);
    r->applied_timeout_ms = r->applied_connect_timeout_ms = -1;
    r->applied_pipewait = -1;
}

static void wipe_own_lines(struct http_request *r, size_t from)
{
    if (r->own_lines.len > from) explicit_bzero(r->own_lines.data + from, r->own_lines.len - from);
    r->own_lines.len = from;
    if (r->own_lines.data) r->own_lines.data[from] = '\0';
}

void http_request_free(struct http_request *r)
{
    if (r->easy) curl_easy_cleanup(r->easy);
    r->easy = NULL;
    wipe_own_lines(r, 0);
    buf_free(&r->url);
    buf_free(&r->body);
    buf_free(&r->response);
    buf_free(&r->own_lines);
    buf_free(&r->header_text);
    free(r->own_offsets);
    free(r->nodes);
    free(r->spans);
    free(r->response_headers);
}

void http_request_clear(struct http_request *r)
{
    r->method = "POST";
    r->headers = NULL;
    buf_clear(&r->url);
    buf_clear(&r->body);
    http_request_truncate_headers(r, 0);
}

void http_request_add_header(struct http_request *r, const char *name, const char *value)
{
    if (r->own_count == r->own_cap) {
        r->own_cap = r->own_cap ? r->own_cap * 2 : 8;
        r->own_offsets = rn_realloc(r->own_offsets, r->own_cap * sizeof *r->own_offsets);
    }
    r->own_offsets[r->own_count++] = r->own_lines.len;
    buf_puts(&r->own_lines, name);
    buf_puts(&r->own_lines, ": ");
    buf_puts(&r->own_lines, value);
    buf_putc(&r->own_lines, '\0'); /* the line's end; buf keeps one more NUL after it */
}

size_t http_request_header_mark(const struct http_request *r) { return r->own_count; }

void http_request_truncate_headers(struct http_request *r, size_t mark)
{
    if (mark >= r->own_count) return;
    wipe_own_lines(r, r->own_offsets[mark]);
    r->own_count = mark;
}

const struct curl_slist *http_request_header_list(struct http_request *r)
{
    if (!r->own_count) return r->headers;
    if (r->nodes_cap < r->own_count) {
        r->nodes_cap = r->own_cap;
        r->nodes = rn_realloc(r->nodes, r->nodes_cap * sizeof *r->nodes);
    }
    for (size_t i = 0; i < r->own_count; i++) {
        r->nodes[i].data = r->own_lines.data + r->own_offsets[i];
        r->nodes[i].next = i + 1 < r->own_count ? &r->nodes[i + 1] : (struct curl_slist *)r->headers;
    }
    return r->nodes;
}

struct http_response http_response_of(const struct http_request *r)
{
    return (struct http_response){
        .status = r->status,
        .headers = r->response_headers,
        .header_count = r->response_header_count,
        .body = r->response.data ? r->response.data : "",
        .body_len = r->response.len,
    };
}

const struct http_header *http_response_header(const struct http_response *r, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = r->header_count; i-- > 0;)
        if (r->headers[i].name_len == n && strncasecmp(r->headers[i].name, name, n) == 0) return &r->headers[i];
    return NULL;
}

/* ---- capturing the answer ---- */

static size_t on_body(char *data, size_t size, size_t count, void *user)
{
    struct http_request *r = user;
    size_t n = size * count;
    if (r->max_response && r->response.len + n > r->max_response) {
        r->too_large = 1;
        return 0; /* fails the transfer with CURLE_WRITE_ERROR */
    }
    buf_put(&r->response, data, n);
    return n;
}

static size_t on_header(char *data, size_t size, size_t count, void *user)
{
    struct http_request *r = user;
    size_t n = size * count;
    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) { /* a new answer (after a 100 Continue, say) */
        r->response_header_count = 0;
        buf_clear(&r->header_text);
        return n;
    }
    char *colon = memchr(data, ':', n);
    if (!colon || r->response_header_count == HTTP_HEADERS_MAX || r->header_text.len + n > HEADER_BYTES_MAX) return n;
    size_t name_len = (size_t)(colon - data);
    const char *value = colon + 1, *end = data + n;
    while (value < end && (*value == ' ' || *value == '\t')) value++;
    while (end > value && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t')) end--;
    if (r->response_header_count == r->spans_cap) {
        r->spans_cap = r->spans_cap ? r->spans_cap * 2 : 32;
        r->spans = rn_realloc(r->spans, r->spans_cap * sizeof *r->spans);
    }
    struct http_span *span = &r->spans[r->response_header_count++];
    span->name = r->header_text.len;
    span->name_len = name_len;
    buf_put(&r->header_text, data, name_len);
    buf_putc(&r->header_text, '\0');
    span->value = r->header_text.len;
    span->value_len = (size_t)(end - value);
    buf_put(&r->header_text, value, span->value_len);
    buf_putc(&r->header_text, '\0');
    return n;
}

/* The spans made into headers, now that header_text stops moving. */
static void link_answer_headers(struct http_request *r)
{
    if (r->headers_cap < r->response_header_count) {
        r->headers_cap = r->spans_cap;
        r->response_headers = rn_realloc(r->response_headers, r->headers_cap * sizeof *r->response_headers);
    }
    for (size_t i = 0; i < r->response_header_count; i++) {
        const struct http_span *s = &r->spans[i];
        r->response_headers[i] = (struct http_header){r->header_text.data + s->name, r->header_text.data + s->value,
                                                      s->name_len, s->value_len};
    }
}

/* ---- sockets ---- */

/* Make fd_state hold fd. Grows with the highest socket number, not per request. */
static void fd_reserve(struct http *h, curl_socket_t fd)
{
    if ((size_t)fd < h->fd_cap) return;
    size_t cap = h->fd_cap ? h->fd_cap : 64;
    while (cap <= (size_t)fd) cap *= 2;
    h->fd_state = rn_realloc(h->fd_state, cap);
    memset(h->fd_state + h->fd_cap, 0, cap - h->fd_cap);
    h->fd_cap = cap;
}

/* CURLOPT_OPENSOCKETFUNCTION: every connection socket starts here (for the transfer that
 * needs it: a failure is that transfer's), */
static curl_socket_t on_open_socket(void *user, curlsocktype purpose, struct curl_sockaddr *address)
{
    (void)purpose;
    struct http_request *r = user;
    struct http *h = r->client;
    curl_socket_t fd = socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
    if (fd == CURL_SOCKET_BAD) {
        r->socket_errno = errno;
        return fd;
    }
    fd_reserve(h, fd);
    h->fd_state[fd] = FD_OURS; /* a new socket: whatever the number named before is gone */
    if (++h->connections > h->connections_max) h->connections_max = h->connections;
    return fd;
}

/* CURLOPT_CLOSESOCKETFUNCTION: ... and ends here (the close takes it out of the epoll set). */
static int on_close_socket(void *user, curl_socket_t fd)
{
    struct http *h = user;
    if (fd >= 0 && (size_t)fd < h->fd_cap) {
        if (h->fd_state[fd] & FD_OURS) h->connections--;
        h->fd_state[fd] = 0;
    }
    return close(fd);
}

/* CURLMOPT_SOCKETFUNCTION: curl says which sockets it waits on, for what. Our own connection
 * sockets stay in the set when curl stops waiting on them (see the top of the file); any other
 * socket curl uses is added and removed as asked. */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *user, void *socket_data)
{
    (void)easy;
    (void)socket_data;
    struct http *h = user;
    if (fd < 0) return 0;
    fd_reserve(h, fd);
    uint8_t *state = &h->fd_state[fd];
    if (what == CURL_POLL_REMOVE) {
        if (*state & FD_OURS) {
            *state &= (uint8_t)~FD_WANTED; /* kept in the set; see http_wait for when it wakes */
        } else {
            epoll_ctl(h->epoll_fd, EPOLL_CTL_DEL, fd, NULL); /* curl may have closed it already */
            *state = 0;
        }
        return 0;
    }
    uint8_t events = (what & CURL_POLL_IN ? FD_IN : 0) | (what & CURL_POLL_OUT ? FD_OUT : 0);
    if ((*state & FD_OURS) && (*state & FD_IN_SET) && (*state & (FD_IN | FD_OUT)) == events) {
        *state |= FD_WANTED;
        return 0;
    }
    struct epoll_event ev = {0};
    ev.events = (events & FD_IN ? EPOLLIN : 0u) | (events & FD_OUT ? EPOLLOUT : 0u);
    ev.data.fd = fd;
    int op = *state & FD_IN_SET ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(h->epoll_fd, op, fd, &ev) != 0) {
        /* a socket closed without telling us, or a number reused: the other operation is right */
        int retry = errno == ENOENT ? EPOLL_CTL_ADD : errno == EEXIST ? EPOLL_CTL_MOD : -1;
        if ((retry < 0 || epoll_ctl(h->epoll_fd, retry, fd, &ev) != 0) && !h->socket_errno)
            h->socket_errno = errno ? errno : EIO;
    }
    *state = (uint8_t)((*state & FD_OURS) | FD_IN_SET | FD_WANTED | events);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: when curl wants curl_multi_socket_action(CURL_SOCKET_TIMEOUT). The
 * clock is the one of this wake-up: a deadline can only come out early, never late. */
static int on_timer(CURLM *multi, long timeout_ms, void *user)
{
    (void)multi;
    struct http *h = user;
    h->curl_due_ms = timeout_ms < 0 ? -1 : h->now_ms + timeout_ms;
    h->curl_timer_set = 1;
    return 0;
}

/* ---- the client ---- */

struct http *http_new(long max_connections, struct rn_err *err)
{
    struct http *h = rn_calloc(1, sizeof *h);
    h->curl_due_ms = -1;
    h->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (h->epoll_fd < 0) {
        rn_fail(err, "epoll_create1: %s", strerror(errno));
        free(h);
        return NULL;
    }
    h->multi = curl_multi_init();
    if (!h->multi) {
        rn_fail(err, "libcurl: cannot make a multi handle");
        http_free(h);
        return NULL;
    }
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    curl_multi_setopt(h->multi, CURLMOPT_MAX_CONCURRENT_STREAMS, (long)HTTP_STREAMS_PER_CONNECTION);
    http_set_max_connections(h, max_connections);
    const char *ca_file = getenv("SSL_CERT_FILE");
    if (ca_file && *ca_file) h->ca_file = rn_strdup(ca_file);
    http_transport_init(&h->transport);
    return h;
}

void http_set_transport(struct http *h, const struct http_transport *t)
{
    http_transport_copy(&h->transport, t);
}

void http_set_max_connections(struct http *h, long max_connections)
{
    if (max_connections <= 0) return;
    curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, max_connections);
    curl_multi_setopt(h->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, max_connections);
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, max_connections);
}

int http_connections(const struct http *h) { return h->connections; }
int http_connections_max(const struct http *h) { return h->connections_max; }

void http_free(struct http *h)
{
    if (!h) return;
    if (h->multi) curl_multi_cleanup(h->multi);
    if (h->epoll_fd >= 0) close(h->epoll_fd); /* after the multi: its cleanup still calls on_socket */
    free(h->fd_state);
    free(h->ca_file);
    http_transport_free(&h->transport);
    free(h);
}

static CURL *make_easy(struct http *h, struct http_request *r)
{
    CURL *e = curl_easy_init();
    if (!e) return NULL;
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_USERAGENT, "runnel/" RN_VERSION);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->error);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, r);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, h);
    http_transport_apply(e, &h->transport, h->ca_file);
    r->client = h;
    return e;
}

static int sends_body(const char *method) { return strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0; }

/* Set what changed since the last transfer of this handle; the rest stays set in the handle. */
static void apply(struct http_request *r)
{
    CURL *e = r->easy;
    if (r->method != r->applied_method && (!r->applied_method || strcmp(r->method, r->applied_method) != 0)) {
        int get = strcmp(r->method, "GET") == 0, head = strcmp(r->method, "HEAD") == 0;
        if (head) { /* in this order: HTTPGET and POST clear NOBODY, NOBODY 0 turns a HEAD into a GET */
            curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
            curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
        } else {
            curl_easy_setopt(e, CURLOPT_NOBODY, 0L);
            curl_easy_setopt(e, get ? CURLOPT_HTTPGET : CURLOPT_POST, 1L);
        }
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, get || head || strcmp(r->method, "POST") == 0 ? NULL : r->method);
    }
    r->applied_method = r->method;
    if (r->timeout_ms != r->applied_timeout_ms) {
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)r->timeout_ms);
        r->applied_timeout_ms = r->timeout_ms;
    }
    if (r->connect_timeout_ms != r->applied_connect_timeout_ms) {
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)r->connect_timeout_ms);
        r->applied_connect_timeout_ms = r->connect_timeout_ms;
    }
    /* prefer a stream on an HTTP/2 connection to a new one; only TLS can negotiate HTTP/2 here,
     * and on http:// waiting would hold every first request until the first answer is back */
    int pipewait = r->url.len >= 6 && strncasecmp(r->url.data, "https:", 6) == 0;
    if (pipewait != r->applied_pipewait) {
        curl_easy_setopt(e, CURLOPT_PIPEWAIT, (long)pipewait);
        r->applied_pipewait = pipewait;
    }
    curl_easy_setopt(e, CURLOPT_URL, r->url.data ? r->url.data : "");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, (struct curl_slist *)http_request_header_list(r));
    if (sends_body(r->method)) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body.len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body.data ? r->body.data : "");
    }
}

int http_start(struct http *h, struct http_request *r, int64_t now_ms, struct rn_err *err)
{
    if (r->running) return rn_fail(err, "http: the request is running already");
    if (r->easy && r->client != h) return rn_fail(err, "http: the request belongs to another client");
    if (!r->easy) r->easy = make_easy(h, r);
    if (!r->easy) return rn_fail(err, "libcurl: cannot make an easy handle");
    apply(r);
    buf_clear(&r->response);
    buf_clear(&r->header_text);
    r->response_header_count = 0;
    r->status = 0;
    r->too_large = 0;
    r->no_descriptor = 0;
    r->socket_errno = 0;
    r->result = CURLE_OK;
    r->described = 0;
    r->error[0] = '\0';
    h->now_ms = now_ms;
    CURLMcode mc = curl_multi_add_handle(h->multi, r->easy);
    if (mc != CURLM_OK) return rn_fail(err, "libcurl: %s", curl_multi_strerror(mc));
    r->running = 1;
    h->running++;
    return 0;
}

void http_cancel(struct http *h, struct http_request *r)
{
    if (!r->running) return;
    curl_multi_remove_handle(h->multi, r->easy);
    r->running = 0;
    h->running--;
}

const char *http_result_cause(CURLcode result)
{
    switch (result) {
    case CURLE_COULDNT_CONNECT: return "connection refused";
    case CURLE_COULDNT_RESOLVE_HOST: return "no such host";
    case CURLE_OPERATION_TIMEDOUT: return "timeout";
    case CURLE_SSL_CONNECT_ERROR: return "TLS handshake failed";
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE: return "connection closed";
    default: return curl_easy_strerror(result);
    }
}

int http_running(const struct http *h) { return h->running; }
int64_t http_due_ms(const struct http *h) { return h->curl_due_ms; }
int http_fd(const struct http *h) { return h->epoll_fd; }

int http_run_timer(struct http *h, int64_t now_ms, struct rn_err *err)
{
    h->now_ms = now_ms;
    if (h->curl_due_ms < 0 || h->curl_due_ms > now_ms) return 0;
    int64_t due = h->curl_due_ms;
    h->curl_timer_set = 0;
    int running;
    CURLMcode mc = curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    if (mc != CURLM_OK) return rn_fail(err, "libcurl: %s", curl_multi_strerror(mc));
    /* called early (the deadline was rounded down): curl keeps it and says nothing */
    if (!h->curl_timer_set && h->curl_due_ms == due) h->curl_due_ms = now_ms + 1;
    return 1;
}

int http_wait(struct http *h, int timeout_ms, int64_t *now_ms, struct rn_err *err)
{
    struct epoll_event events[EVENTS_MAX];
    int n = epoll_wait(h->epoll_fd, events, EVENTS_MAX, timeout_ms);
    if (n < 0 && errno != EINTR) return rn_fail(err, "epoll_wait: %s", strerror(errno));
    if (n > 0 || timeout_ms > 0) *now_ms = rn_now_ms();
    h->now_ms = *now_ms;
    for (int i = 0; i < n; i++) {
        int fd = events[i].data.fd;
        if (!(h->fd_state[fd] & FD_WANTED)) {
            /* an idle connection kept in the set woke up (the server closed it): curl finds
             * that out when it next tries the connection; stop watching it */
            epoll_ctl(h->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
            h->fd_state[fd] &= (uint8_t)~FD_IN_SET;
            continue;
        }
        uint32_t ev = events[i].events;
        int bits = (ev & EPOLLIN ? CURL_CSELECT_IN : 0) | (ev & EPOLLOUT ? CURL_CSELECT_OUT : 0);
        if (ev & (EPOLLERR | EPOLLHUP)) bits |= CURL_CSELECT_IN | CURL_CSELECT_OUT; /* curl finds the error by trying */
        int running;
        CURLMcode mc = curl_multi_socket_action(h->multi, fd, bits, &running);
        if (mc != CURLM_OK) return rn_fail(err, "libcurl: %s", curl_multi_strerror(mc));
    }
    if (h->socket_errno) return rn_fail(err, "epoll_ctl: %s", strerror(h->socket_errno));
    return 0;
}

/* Whether a transfer that failed with rc did for want of a descriptor: our socket() said so,
 * or a failure of the kinds curl reports when its resolver's socket pair, a TLS file or its
 * own socket could not be had comes while the process has none free. */
static int out_of_descriptors(const struct http_request *r, CURLcode rc)
{
    if (fdlimit_exhausted_errno(r->socket_errno)) return 1;
    switch (rc) {
    case CURLE_COULDNT_CONNECT: case CURLE_COULDNT_RESOLVE_HOST: case CURLE_OUT_OF_MEMORY:
    case CURLE_FAILED_INIT: case CURLE_SSL_CACERT_BADFILE: case CURLE_SSL_CONNECT_ERROR:
        return !fdlimit_one_free();
    default:
        return 0;
    }
}

struct http_request *http_next_done(struct http *h)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(h->multi, &left))) {
        if (msg->msg != CURLMSG_DONE) continue;
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;
        char *private = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, &private);
        struct http_request *r = (struct http_request *)(void *)private;
        curl_multi_remove_handle(h->multi, easy);
        r->running = 0;
        h->running--;
        r->result = result;
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &r->status);
        curl_off_t total = 0, pretransfer = 0, starttransfer = 0;
        curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME_T, &total);
        curl_easy_getinfo(easy, CURLINFO_PRETRANSFER_TIME_T, &pretransfer);
        curl_easy_getinfo(easy, CURLINFO_STARTTRANSFER_TIME_T, &starttransfer);
        r->timings.total_us = total;
        r->timings.pretransfer_us = pretransfer;
        r->timings.starttransfer_us = starttransfer;
        r->timings.connects = 0;
        curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &r->timings.connects);
        long version = 0;
        curl_easy_getinfo(easy, CURLINFO_HTTP_VERSION, &version);
        r->timings.http_version = version == CURL_HTTP_VERSION_1_0 ? 10 : version == CURL_HTTP_VERSION_1_1 ? 11
                                : version == CURL_HTTP_VERSION_2_0 ? 20 : version == CURL_HTTP_VERSION_3 ? 30 : 0;
        if (result != CURLE_OK) {
            r->no_descriptor = out_of_descriptors(r, result);
            char described[CURL_ERROR_SIZE];
            if (http_transport_describe(easy, result, r->url.data, r->error[0] ? r->error : curl_easy_strerror(result),
                                        &h->transport, described, sizeof described)) {
                memcpy(r->error, described, sizeof r->error);
                memcpy(h->tls_failure, described, sizeof h->tls_failure);
                r->described = 1;
            } else if (h->tls_failure[0] && r->status == 0 && cut_short(result)) {
                /* a call that waited for the same connection sees only its end: tell it why */
                memcpy(r->error, h->tls_failure, sizeof r->error);
                r->described = 1;
            }
        } else if (r->status > 0) {
            h->tls_failure[0] = 0;
        }
        link_answer_headers(r);
        return r;
    }
    return NULL;
}
