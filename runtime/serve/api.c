/* api.c: the supervisor's HTTP API (see api.h). */
#include "serve/api.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "serve/address.h"
#include "serve/assets.h"
#include "serve/scrape.h"
#include "serve/supervisor.h"

#define LIMIT_MAX 10000
#define RUNS_DEFAULT 50
#define DEAD_LETTERS_DEFAULT 100
#define TAIL_BYTES_MAX (64 << 20) /* the most of a dead-letter file read for one answer */

struct api {
    struct supervisor *sup;
    struct MHD_Daemon *daemon;
    char *token;         /* NULL: no token needed */
    char url[300];
};

/* ---- answers ---- */

static enum MHD_Result answer(struct MHD_Connection *conn, unsigned status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(body);
    if (!text) text = rn_strdup("{\"error\": \"the answer could not be encoded\"}");
    size_t len = strlen(text);
    text = rn_realloc(text, len + 2); /* MHD frees it with free() */
    text[len++] = '\n';
    text[len] = '\0';
    struct MHD_Response *r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (status == MHD_HTTP_UNAUTHORIZED) MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    enum MHD_Result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result error(struct MHD_Connection *conn, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum MHD_Result error(struct MHD_Connection *conn, unsigned status, const char *fmt, ...)
{
    char msg[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct buf b;
    buf_init(&b);
    buf_put_visible(&b, msg, strlen(msg), sizeof msg); /* names from the request may be any bytes */
    json_t *o = json_object();
    json_object_set_new(o, "error", json_string(b.data));
    buf_free(&b);
    return answer(conn, status, o);
}

static enum MHD_Result answer_text(struct MHD_Connection *conn, const char *type, const char *data, size_t len,
                                   int copy)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)data, copy ? MHD_RESPMEM_MUST_FREE
                                                                                     : MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result rc = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return rc;
}

/* The dashboard's page and the files it loads, compiled in (serve/assets.h): "/" and
 * "/assets/NAME". No job data: these need no token (the page asks for it, see dashboard.js). */
static enum MHD_Result static_route(struct MHD_Connection *conn, const char *url, const char *method)
{
    const char *name = !strcmp(url, "/") || !strcmp(url, "/dashboard") ? "dashboard.html" : url + 8;
    const struct serve_asset *asset = serve_asset(name);
    if (!asset || !strcmp(name, "report.js") || !strcmp(name, "report.css"))
        return error(conn, MHD_HTTP_NOT_FOUND, "%s %s: no such file", method, url);
    if (strcmp(method, "GET") && strcmp(method, "HEAD")) return error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "%s %s: use GET", method, url);
    const char *dot = strrchr(name, '.');
    const char *type = !strcmp(dot, ".html") ? "text/html; charset=utf-8"
                       : !strcmp(dot, ".css") ? "text/css; charset=utf-8" : "text/javascript; charset=utf-8";
    return answer_text(conn, type, (const char *)asset->data, asset->len, 0);
}

/* ?NAME=field: a field name given in the query, else def. */
static const char *field_arg(struct MHD_Connection *conn, const char *name, const char *def)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, name);
    return v && *v ? v : def;
}

/* GET /jobs/NAME/labels[?label=F&text=F]: the label distribution and phrases of its output. */
static enum MHD_Result labels_route(struct MHD_Connection *conn, const char *url, struct serve_job *job)
{
    if (!job->output)
        return error(conn, MHD_HTTP_NOT_FOUND, "GET %s: job %s has no JSONL sink (sink.jsonl{...}) to count labels in", url,
                     job->name);
    const char *label = field_arg(conn, "label", job->label_field), *text = field_arg(conn, "text", "summary");
    if (!label)
        return error(conn, MHD_HTTP_NOT_FOUND, "GET %s: job %s has no model output field to count; name one with ?label=FIELD",
                     url, job->name);
    struct label_watch *w = job->labels;
    if (w && (strcmp(labels_field(w), label) || strcmp(labels_text_field(w), text))) {
        labels_free(w);
        w = job->labels = NULL;
    }
    if (!w) w = job->labels = labels_new(job->output, label, text);
    struct rn_err err;
    if (labels_update(w, &err)) return error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "GET %s: %s", url, err.msg);
    json_t *o = labels_json(w);
    json_object_set_new(o, "job", json_string(job->name));
    return answer(conn, MHD_HTTP_OK, o);
}

/* ?limit=N: default when absent; -1 (and a 400 queued) when it is not 1..LIMIT_MAX. */
static int limit_arg(struct MHD_Connection *conn, const char *url, int def, enum MHD_Result *rc)
{
    const char *text = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "limit");
    if (!text) return def;
    char *end;
    long v = strtol(text, &end, 10);
    if (end == text || *end || v < 1 || v > LIMIT_MAX) {
        *rc = error(conn, MHD_HTTP_BAD_REQUEST, "GET %s: limit must be a whole number from 1 to %d, not '%.40s'", url,
                    LIMIT_MAX, text);
        return -1;
    }
    return (int)v;
}

/* The last `limit` whole lines of a JSONL file as a JSON array (a line that is not JSON as a
 * string; a last line without its newline is still being written and left out). NULL and
 * err when the file cannot be read; an absent file has no lines. */
static json_t *tail_jsonl(const char *path, int limit, struct rn_err *err)
{
    json_t *lines = json_array();
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return lines;
        rn_fail(err, "%s: %s", path, strerror(errno));
        json_decref(lines);
        return NULL;
    }
    struct stat st = {0};
    char *data = NULL;
    size_t have = 0;
    if (fstat(fd, &st) == 0) {
        size_t size = (size_t)st.st_size, window = 65536;
        for (;;) {
            if (window > size) window = size;
            if (window > TAIL_BYTES_MAX) window = TAIL_BYTES_MAX;
            free(data);
            data = rn_malloc(window + 1);
            ssize_t n = pread(fd, data, window, (off_t)(size - window));
            have = n > 0 ? (size_t)n : 0;
            int newlines = 0;
            for (size_t i = 0; i < have; i++) newlines += data[i] == '\n';
            if (newlines > limit || window == size || window == TAIL_BYTES_MAX || n <= 0) break;
            window *= 4;
        }
    }
    close(fd);
    size_t end = have;
    while (end > 0 && data[end - 1] != '\n') end--; /* a torn last line */
    size_t *starts = rn_malloc(((size_t)limit + 1) * sizeof *starts);
    int count = 0;
    for (size_t pos = end; pos > 0 && count < limit;) {
        size_t line_end = pos - 1, start = line_end;
        while (start > 0 && data[start - 1] != '\n') start--;
        if (start == 0 && have < (size_t)st.st_size) break; /* cut by the window: not a whole line */
        starts[count++] = start;
        pos = start;
    }
    for (int i = count - 1; i >= 0; i--) {
        size_t start = starts[i], stop = start;
        while (data[stop] != '\n') stop++;
        json_t *v = json_loadb(data + start, stop - start, 0, NULL);
        if (!v) {
            struct buf b;
            buf_init(&b);
            buf_put_visible(&b, data + start, stop - start, 4096);
            v = json_string(b.data);
            buf_free(&b);
        }
        json_array_append_new(lines, v);
    }
    free(starts);
    free(data);
    return lines;
}

/* ---- routes ---- */

static enum MHD_Result job_route(struct api *a, struct MHD_Connection *conn, const char *url, const char *method,
                                 const char *rest)
{
    char name[JOB_NAME_MAX];
    const char *slash = strchr(rest, '/');
    size_t len = slash ? (size_t)(slash - rest) : strlen(rest);
    const char *action = slash ? slash + 1 : "";
    if (!len || len >= sizeof name) return error(conn, MHD_HTTP_NOT_FOUND, "%s %s: no such job", method, url);
    memcpy(name, rest, len);
    name[len] = '\0';
    struct serve_job *job = jobs_by_name(supervisor_jobs(a->sup), name);
    if (!job) return error(conn, MHD_HTTP_NOT_FOUND, "%s %s: no job named '%s'", method, url, name);
    int get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    if (!*action) {
        if (!get) return error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "%s %s: use GET", method, url);
        return answer(conn, MHD_HTTP_OK, jobs_json(job, 1));
    }
    enum MHD_Result rc = MHD_NO;
    struct rn_err err;
    if (!strcmp(action, "labels")) {
        if (!get) return error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "%s %s: use GET", method, url);
        return labels_route(conn, url, job);
    }
    if (!strcmp(action, "runs") || !strcmp(action, "dead-letters")) {
        if (!get) return error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "%s %s: use GET", method, url);
        int runs = action[0] == 'r';
        int limit = limit_arg(conn, url, runs ? RUNS_DEFAULT : DEAD_LETTERS_DEFAULT, &rc);
        if (limit < 0) return rc;
        json_t *list;
        if (runs) {
            list = history_runs(supervisor_history(a->sup), job->name, limit, job->tz, &err);
        } else {
            if (!job->dead_letters)
                return error(conn, MHD_HTTP_NOT_FOUND, "GET %s: job %s has no JSONL errors sink (errors = sink.jsonl{...})",
                             url, job->name);
            list = tail_jsonl(job->dead_letters, limit, &err);
        }
        if (!list) return error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "GET %s: %s", url, err.msg);
        json_t *o = json_object();
        json_object_set_new(o, "job", json_string(job->name));
        if (!runs) json_object_set_new(o, "path", json_string(job->dead_letters));
        json_object_set_new(o, runs ? "runs" : "dead_letters", list);
        return answer(conn, MHD_HTTP_OK, o);
    }
    static const char *const verbs[] = {"start", "stop", "restart", "run"};
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        if (!strcmp(action, verbs[i])) {
            if (!post) return error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "%s %s: use POST", method, url);
            int status = supervisor_verb(a->sup, job, verbs[i], &err);
            if (status) return error(conn, (unsigned)status, "POST %s: %s", url, err.msg);
            return answer(conn, MHD_HTTP_ACCEPTED, jobs_json(job, 1));
        }
    return error(conn, MHD_HTTP_NOT_FOUND, "%s %s: no such endpoint (a job has runs, dead-letters, labels, start, stop, restart, run)",
                 method, url);
}

/* Constant-time: the comparison does not tell how much of a guess was right. */
static int token_ok(const struct api *a, struct MHD_Connection *conn)
{
    if (!a->token) return 1;
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncmp(h, "Bearer ", 7)) return 0;
    h += 7;
    size_t n = strlen(a->token), m = strlen(h);
    unsigned char diff = n != m;
    for (size_t i = 0; i < n; i++) diff |= (unsigned char)(a->token[i] ^ (i < m ? h[i] : 0));
    return diff == 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    struct api *a = cls;
    (void)version;
    (void)upload_data;
    if (!*con_cls) { /* the headers: wait for the body, which no endpoint reads */
        *con_cls = a;
        return MHD_YES;
    }
    if (*upload_data_size) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (!strcmp(url, "/") || !strcmp(url, "/dashboard") || !strncmp(url, "/assets/", 8)) return static_route(conn, url, method);
    if (!token_ok(a, conn))
        return error(conn, MHD_HTTP_UNAUTHORIZED, "%s %s: needs the header Authorization: Bearer TOKEN (serve --token-file)",
                     method, url);
    int get = !strcmp(method, "GET");
    if (!strcmp(url, "/health") || !strcmp(url, "/jobs")) {
        if (!get) return error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "%s %s: use GET", method, url);
        if (url[1] == 'h') return answer(conn, MHD_HTTP_OK, supervisor_health(a->sup));
        struct job_table *t = supervisor_jobs(a->sup);
        json_t *list = json_array();
        for (size_t i = 0; i < t->count; i++)
            if (!t->jobs[i]->removed) json_array_append_new(list, jobs_json(t->jobs[i], 0));
        json_t *o = json_object();
        json_object_set_new(o, "jobs", list);
        return answer(conn, MHD_HTTP_OK, o);
    }
    if (!strncmp(url, "/jobs/", 6)) return job_route(a, conn, url, method, url + 6);
    if (!strcmp(url, "/metrics")) {
        if (!get) return error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "%s %s: use GET", method, url);
        struct buf text;
        buf_init(&text);
        scrape_write(supervisor_jobs(a->sup), &text);
        if (!text.data) buf_put(&text, "", 0);
        return answer_text(conn, "text/plain; version=0.0.4; charset=utf-8", text.data, text.len, 1); /* MHD frees it */
    }
    return error(conn, MHD_HTTP_NOT_FOUND, "%s %s: no such endpoint (/, /health, /jobs, /jobs/NAME/..., /metrics)", method, url);
}

/* ---- the server ---- */

static int is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family != AF_INET6) return 0;
    const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (IN6_IS_ADDR_LOOPBACK(a6)) return 1;
    return IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127;
}

static char *read_token(const char *path, struct rn_err *err)
{
    size_t len;
    char *token = rn_read_file(path, &len, err);
    if (!token) return NULL;
    while (len && (token[len - 1] == '\n' || token[len - 1] == '\r' || token[len - 1] == ' ')) token[--len] = '\0';
    if (!len || strchr(token, '\n')) {
        rn_fail(err, "--token-file %s: expected one line holding the token", path);
        free(token);
        return NULL;
    }
    return token;
}

struct api *api_start(struct supervisor *sup, const char *listen, const char *token_file, struct rn_err *err)
{
    struct listen_address addr;
    if (address_resolve(&addr, "--listen", listen, "127.0.0.1:8080", err)) return NULL;
    struct api *a = rn_calloc(1, sizeof *a);
    a->sup = sup;
    if (!token_file && !is_loopback(addr.ai->ai_addr)) {
        rn_fail(err, "--listen %s is not a loopback address: give --token-file FILE as well, so that every request "
                     "needs Authorization: Bearer TOKEN", listen);
        goto fail;
    }
    if (token_file && !(a->token = read_token(token_file, err))) goto fail;
    unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG | (addr.v6 ? MHD_USE_IPv6 : 0);
    a->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, a, MHD_OPTION_SOCK_ADDR, addr.ai->ai_addr,
                                 MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
    if (!a->daemon) {
        rn_fail(err, "--listen %s: cannot listen there (in use, or not an address of this machine)", listen);
        goto fail;
    }
    const union MHD_DaemonInfo *port = MHD_get_daemon_info(a->daemon, MHD_DAEMON_INFO_BIND_PORT);
    address_url(&addr, port ? port->port : 0, a->url, sizeof a->url);
    address_free(&addr);
    return a;
fail:
    address_free(&addr);
    api_stop(a);
    return NULL;
}

void api_stop(struct api *a)
{
    if (!a) return;
    if (a->daemon) MHD_stop_daemon(a->daemon);
    if (a->token) {
        memset(a->token, 0, strlen(a->token));
        free(a->token);
    }
    free(a);
}

int api_fd(const struct api *a)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(a->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    return info ? info->epoll_fd : -1;
}

int64_t api_timeout_ms(const struct api *a)
{
    MHD_UNSIGNED_LONG_LONG t;
    if (MHD_get_timeout(a->daemon, &t) != MHD_YES) return -1;
    return t > INT32_MAX ? INT32_MAX : (int64_t)t;
}

void api_run(struct api *a) { MHD_run(a->daemon); }

const char *api_url(const struct api *a) { return a->url; }
