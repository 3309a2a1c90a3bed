/* address.c: listen addresses (see address.h). */
#include "serve/address.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

int address_resolve(struct listen_address *a, const char *option, const char *text, const char *example,
                    struct rn_err *err)
{
    memset(a, 0, sizeof *a);
    const char *colon = strrchr(text, ':');
    if (!colon || colon == text || !colon[1] || (size_t)(colon - text) >= sizeof a->host)
        return rn_fail(err, "%s %s: expected HOST:PORT, such as %s", option, text, example);
    snprintf(a->host, sizeof a->host, "%.*s", (int)(colon - text), text);
    size_t len = strlen(a->host);
    if (len >= 2 && a->host[0] == '[' && a->host[len - 1] == ']') { /* [::1]:8080 */
        memmove(a->host, a->host + 1, len - 2);
        a->host[len - 2] = '\0';
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    int gai = getaddrinfo(a->host, colon + 1, &hints, &a->ai);
    if (gai) {
        a->ai = NULL;
        return rn_fail(err, "%s %s: %s", option, text, gai_strerror(gai));
    }
    a->v6 = a->ai->ai_family == AF_INET6;
    return 0;
}

void address_free(struct listen_address *a)
{
    if (a->ai) freeaddrinfo(a->ai);
    a->ai = NULL;
}

void address_url(const struct listen_address *a, unsigned port, char *out, size_t n)
{
    snprintf(out, n, "http://%s%s%s:%u", a->v6 ? "[" : "", a->host, a->v6 ? "]" : "", port);
}
