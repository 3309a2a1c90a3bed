/* address.h: a listen address as the command line gives it ("127.0.0.1:8080", "[::1]:0",
 * "localhost:9464"), resolved for a server socket. One parser for serve's --listen and run's
 * --metrics-listen, so both accept and refuse the same. */
#ifndef RUNNEL_SERVE_ADDRESS_H
#define RUNNEL_SERVE_ADDRESS_H

#include <netdb.h>
#include <stddef.h>
#include "core/util.h"

struct listen_address {
    char host[256];          /* without the brackets of an IPv6 address */
    struct addrinfo *ai;     /* the first is used; free with address_free */
    int v6;
};

/* Resolve text (HOST:PORT; PORT 0: any free port) for option (named in errors, with an
 * example). -1 and err when it is not HOST:PORT or does not resolve. */
int address_resolve(struct listen_address *a, const char *option, const char *text, const char *example,
                    struct rn_err *err);
void address_free(struct listen_address *a);

/* "http://HOST:PORT" (IPv6 in brackets) into out. */
void address_url(const struct listen_address *a, unsigned port, char *out, size_t n);

#endif
