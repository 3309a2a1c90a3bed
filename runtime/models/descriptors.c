/* descriptors.c: the model's share of the file descriptor limit, and how many connections its
 * calls take (see model_int.h). Over HTTP/1.1 a call in flight holds a connection, and a
 * connection a descriptor: calls that do not fit under RLIMIT_NOFILE would fail with EMFILE
 * and, retried, fail again. So the calls in flight are lowered to what fits, said once, and a
 * transfer that still finds no descriptor waits for one without counting as an attempt
 * (engine.c). Over HTTP/2 calls share connections, up to HTTP_STREAMS_PER_CONNECTION each.
 *
 * Which one a TLS server speaks is known from its first answer, so until then a https model
 * sends at most one connection's worth of calls: libcurl opens a connection of its own for
 * every call beyond what the connections it is opening can carry, and a first burst of 2,000
 * calls would open 1,900 connections to a server that could take them over 20. */
#include "models/model_int.h"
#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

static const char *where_of(const struct model_descriptors *d) { return d->where ? d->where : "model"; }

void descriptors_fit(struct model *m, const char *where)
{
    struct model_descriptors *d = &m->fds;
    d->where = rn_strdup(where);
    d->asked = m->limits.concurrency;
    d->fit = d->asked;
    fdlimit_get(&d->limit);
    long open = fdlimit_open_count();
    if (open < 0 || d->limit.soft == FDLIMIT_UNLIMITED) return;
    long planned = m->env->descriptors_planned + HTTP_OWN_DESCRIPTORS;
    d->fit = fdlimit_fit(&d->limit, d->asked, open, 0, planned);
    if (d->fit >= d->asked) return;
    d->used = open + planned + FDLIMIT_RESERVE;
    limits_cap(&m->limits, (int)d->fit);
    d->lowered = 1;
    struct buf line;
    buf_init(&line);
    if (m->limits.adaptive)
        buf_printf(&line, "limits.concurrency = \"auto\" may grow to %d calls in flight; its ceiling is lowered to %ld",
                   d->asked, d->fit);
    else
        buf_printf(&line, "limits.concurrency = %d lowered to %ld calls in flight", d->asked, d->fit);
    buf_printf(&line, ": over HTTP/1.1 each holds a connection, a file descriptor, and the open files limit is %ld, "
               "of which the job needs %ld for other things (%ld open, %ld planned, %d in reserve); to run %d, ",
               d->limit.soft, d->used, open, planned, FDLIMIT_RESERVE, d->asked);
    fdlimit_advice(&line, &d->limit, d->used + d->asked);
    log_warning("%s: %s", where_of(d), line.data);
    buf_free(&line);
}

void descriptors_first_send(struct model *m, const struct http_request *r)
{
    struct model_descriptors *d = &m->fds;
    d->sent = 1;
    if (d->version_known || r->url.len < 6 || strncasecmp(r->url.data, "https:", 6) != 0) return;
    if (m->limits.concurrency <= HTTP_STREAMS_PER_CONNECTION) return;
    d->probing = 1;
    limits_cap(&m->limits, HTTP_STREAMS_PER_CONNECTION);
}

/* Calls and connections for answers over HTTP/2: as many calls as were asked (within what the
 * connections that fit can carry), over as few connections as carry them. */
static void share_connections(struct model *m)
{
    struct model_descriptors *d = &m->fds;
    long calls = d->fit * HTTP_STREAMS_PER_CONNECTION;
    if (calls > d->asked) calls = d->asked;
    long connections = (calls + HTTP_STREAMS_PER_CONNECTION - 1) / HTTP_STREAMS_PER_CONNECTION + 1;
    if (connections > d->fit) connections = d->fit;
    limits_cap(&m->limits, (int)calls);
    if (m->http) http_set_max_connections(m->http, connections);
    d->connections_cap = connections;
}

void descriptors_version(struct model *m, int http_version)
{
    struct model_descriptors *d = &m->fds;
    if (!http_version) return;
    d->version_known = 1;
    int was_lowered = d->lowered;
    if (http_version >= 20) {
        d->multiplexed = 1;
        share_connections(m);
        d->lowered = m->limits.concurrency < d->asked;
        if (was_lowered)
            log_warning("%s: the server answers over HTTP/2, so calls share connections: %d calls in "
                            "flight over at most %ld connections", where_of(d), m->limits.concurrency,
                    d->connections_cap);
    } else if (d->probing) {
        limits_cap(&m->limits, (int)(d->fit < d->asked ? d->fit : d->asked));
    }
    d->probing = 0;
}

void descriptors_short(struct model *m)
{
    struct model_descriptors *d = &m->fds;
    struct fdlimit l;
    fdlimit_get(&l);
    long own = m->http ? http_connections(m->http) : 0;
    long open = fdlimit_open_count();
    long fit = open < 0 ? own : fdlimit_fit(&l, d->asked, open, own, m->env->descriptors_planned);
    if (fit > own) fit = own; /* what is open is what works: a new socket just failed */
    if (fit < 1) fit = 1;
    if (fit < d->fit) d->fit = fit;
    if (d->multiplexed) {
        share_connections(m);
    } else {
        if (m->http) http_set_max_connections(m->http, d->fit);
        if (m->limits.concurrency > d->fit) limits_cap(&m->limits, (int)d->fit); /* HTTP/1.1: a call is a connection */
    }
    d->lowered = m->limits.concurrency < d->asked;
    if (d->noted_short) return;
    d->noted_short = 1;
    d->limit = l;
    log_warning("%s: the process ran out of file descriptors (%ld open, limit %ld): calls in flight lowered "
                "to %d over at most %ld connections; a call that finds no descriptor waits for one and is sent again, "
                "not counted as an attempt",
            where_of(d), open, l.soft, m->limits.concurrency, d->multiplexed ? d->connections_cap : d->fit);
}

void model_descriptors_short(struct model *m) { descriptors_short(m); }

void descriptors_close(struct model_descriptors *d) { free(d->where); }
