/* exporter.h: a job's metrics, published while it runs: to the supervisor over the socket it
 * was given (`runnel run --metrics-fd N`, which `runnel serve` passes) and to Prometheus over
 * HTTP (`runnel run --metrics-listen HOST:PORT`, GET /metrics).
 *
 * The job's loop renders its registry (the text exposition) and hands it to exporter_publish
 * whenever exporter_due says so (every EXPORTER_INTERVAL_MS) and once at the end. To the
 * supervisor each text is one message on a SOCK_SEQPACKET socket, sent without blocking: a
 * supervisor that is behind misses a message, never stalls the job. The HTTP server runs on a
 * thread of its own and answers with the last text published; it never touches the registry. */
#ifndef RUNNEL_SERVE_EXPORTER_H
#define RUNNEL_SERVE_EXPORTER_H

#include <stddef.h>
#include <stdint.h>
#include "core/util.h"

#define EXPORTER_INTERVAL_MS 1000

struct exporter;

/* fd: the supervisor's socket (-1: none; owned from now on). listen: "HOST:PORT" for GET
 * /metrics (NULL: none; a port of 0 picks a free one). NULL and err naming the option at fault;
 * a job with neither gets NULL and no error (check err->msg[0]). Free with exporter_close. */
struct exporter *exporter_open(int fd, const char *listen, struct rn_err *err);
void exporter_close(struct exporter *e);

/* 1 when a new text is due at now_ms (monotonic). */
int exporter_due(const struct exporter *e, int64_t now_ms);

/* Publish text[0..len) (a copy is kept). Never blocks; a socket that fails is reported once on
 * stderr and dropped. */
void exporter_publish(struct exporter *e, const char *text, size_t len, int64_t now_ms);

/* "http://HOST:PORT/metrics" with the port bound, or NULL without --metrics-listen. */
const char *exporter_url(const struct exporter *e);

#endif
