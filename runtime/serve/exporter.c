/* exporter.c: a job's metrics to the supervisor and over HTTP (see exporter.h). */
#include "serve/exporter.h"

#include "core/log.h"
#include "serve/address.h"

#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct exporter {
    int fd;                    /* the supervisor's socket, or -1 */
    struct MHD_Daemon *daemon; /* --metrics-listen, or NULL */
    pthread_mutex_t lock;      /* guards text: the HTTP thread reads it */
    struct buf text;
    int64_t next_ms;
    char url[300];
};

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    struct exporter *e = cls;
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)con_cls;
    unsigned status = MHD_HTTP_OK;
    char *body;
    size_t len;
    if (strcmp(url, "/metrics")) {
        status = MHD_HTTP_NOT_FOUND;
        body = rn_strdup("only GET /metrics is here\n");
    } else if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
        status = MHD_HTTP_METHOD_NOT_ALLOWED;
        body = rn_strdup("GET /metrics: use GET\n");
    } else {
        pthread_mutex_lock(&e->lock);
        body = rn_malloc(e->text.len + 1);
        memcpy(body, e->text.data ? e->text.data : "", e->text.len);
        body[e->text.len] = '\0';
        pthread_mutex_unlock(&e->lock);
    }
    len = strlen(body);
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            status == MHD_HTTP_OK ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain");
    enum MHD_Result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

static int listen_on(struct exporter *e, const char *listen, struct rn_err *err)
{
    struct listen_address addr;
    if (address_resolve(&addr, "--metrics-listen", listen, "127.0.0.1:9464", err)) return -1;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG | (addr.v6 ? MHD_USE_IPv6 : 0);
    e->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, e, MHD_OPTION_SOCK_ADDR, addr.ai->ai_addr,
                                 MHD_OPTION_CONNECTION_LIMIT, 16u, MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
    if (!e->daemon) {
        address_free(&addr);
        return rn_fail(err, "--metrics-listen %s: cannot listen there (in use, or not an address of this machine)", listen);
    }
    const union MHD_DaemonInfo *port = MHD_get_daemon_info(e->daemon, MHD_DAEMON_INFO_BIND_PORT);
    address_url(&addr, port ? port->port : 0, e->url, sizeof e->url - 8);
    strcat(e->url, "/metrics");
    address_free(&addr);
    return 0;
}

struct exporter *exporter_open(int fd, const char *listen, struct rn_err *err)
{
    err->msg[0] = '\0';
    if (fd < 0 && !listen) return NULL;
    struct exporter *e = rn_calloc(1, sizeof *e);
    e->fd = fd;
    buf_init(&e->text);
    pthread_mutex_init(&e->lock, NULL);
    if (listen && listen_on(e, listen, err)) {
        exporter_close(e);
        return NULL;
    }
    return e;
}

void exporter_close(struct exporter *e)
{
    if (!e) return;
    if (e->daemon) MHD_stop_daemon(e->daemon);
    if (e->fd >= 0) close(e->fd);
    pthread_mutex_destroy(&e->lock);
    buf_free(&e->text);
    free(e);
}

int exporter_due(const struct exporter *e, int64_t now_ms) { return e && now_ms >= e->next_ms; }

void exporter_publish(struct exporter *e, const char *text, size_t len, int64_t now_ms)
{
    if (!e) return;
    e->next_ms = now_ms + EXPORTER_INTERVAL_MS;
    if (e->fd >= 0) {
        ssize_t n = send(e->fd, text, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            log_warning("--metrics-fd %d: cannot send the metrics (%zu bytes) to runnel serve: %s; "
                        "it gets no more of them from this run", e->fd, len, strerror(errno));
            close(e->fd);
            e->fd = -1;
        }
    }
    if (e->daemon) {
        pthread_mutex_lock(&e->lock);
        buf_clear(&e->text);
        buf_put(&e->text, text, len);
        pthread_mutex_unlock(&e->lock);
    }
}

const char *exporter_url(const struct exporter *e) { return e && e->daemon ? e->url : NULL; }
