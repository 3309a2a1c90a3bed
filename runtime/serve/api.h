/* api.h: the supervisor's HTTP API (libmicrohttpd, JSON by jansson), run by the supervisor's
 * loop: MHD's epoll descriptor is watched there and api_run handles what is ready, so a
 * handler runs on the loop's thread and may touch the job table.
 *
 *   GET  /health                       GET /jobs                  GET /jobs/NAME
 *   POST /jobs/NAME/start|stop|restart|run
 *   GET  /jobs/NAME/runs?limit=N       GET /jobs/NAME/dead-letters?limit=N
 *   GET  /jobs/NAME/labels             GET /metrics (Prometheus text, serve/scrape.h)
 *   GET  / (the dashboard)             GET /assets/NAME (its files, compiled in; no token needed)
 *
 * Errors answer with a status and {"error": "what is wrong"}. Loopback by default; a listen
 * address beyond loopback needs a token file, and with one every request needs
 * `Authorization: Bearer TOKEN` (401 otherwise). */
#ifndef RUNNEL_SERVE_API_H
#define RUNNEL_SERVE_API_H

#include <stdint.h>
#include "core/util.h"

struct supervisor;
struct api;

/* Listen on "HOST:PORT" (PORT 0: any free port). NULL and err naming the address or the token
 * file. Caller frees with api_stop. */
struct api *api_start(struct supervisor *sup, const char *listen, const char *token_file, struct rn_err *err);
void api_stop(struct api *a);
/* The descriptor the loop watches for readability, and how long it may wait (ms, -1: no limit). */
int api_fd(const struct api *a);
int64_t api_timeout_ms(const struct api *a);
/* Handle what is ready: new connections, requests, answers. */
void api_run(struct api *a);
/* "http://127.0.0.1:PORT", with the port really bound. */
const char *api_url(const struct api *a);

#endif
