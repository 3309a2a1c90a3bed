/* scripted_server.h: a test HTTP server in a child process, answering each request as a rule
 * in the test says (tests/unit/test_model.c, test_http.c). One connection at a time, one
 * request per connection (Connection: close); the rule sees the request's head and body as
 * one NUL-terminated text (at most 64 KiB). */
#ifndef RUNNEL_TEST_SCRIPTED_SERVER_H
#define RUNNEL_TEST_SCRIPTED_SERVER_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

struct server {
    pid_t pid;
    int port;
};

/* A one-connection-at-a-time HTTP server in a child process that answers each request (its
 * head and body, NUL-terminated) as its rule says: the rule fills status and body (a JSON
 * answer) and may add header lines ("Name: value\r\n") to head. */
typedef void (*serve_rule)(const char *request, int *status, char *head, size_t head_size, char *body,
                           size_t body_size);

static void scripted_serve(int client, serve_rule rule)
{
    char req[65536];
    size_t n = 0;
    char *end = NULL;
    while (n < sizeof req - 1 && !end) {
        ssize_t got = read(client, req + n, sizeof req - 1 - n);
        if (got <= 0) return;
        n += (size_t)got;
        req[n] = '\0';
        end = strstr(req, "\r\n\r\n");
    }
    char *cl = strcasestr(req, "content-length:");
    size_t want = cl ? (size_t)atol(cl + 15) : 0;
    while (end && n < sizeof req - 1 && n - (size_t)(end + 4 - req) < want) {
        ssize_t got = read(client, req + n, sizeof req - 1 - n);
        if (got <= 0) return;
        n += (size_t)got;
        req[n] = '\0';
    }
    char body[4096], extra[512] = "", head[1024];
    int status = 200;
    rule(req, &status, extra, sizeof extra, body, sizeof body);
    snprintf(head, sizeof head, "HTTP/1.1 %d Answer\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
             "Connection: close\r\n%s\r\n", status, strlen(body), extra);
    if (write(client, head, strlen(head)) < 0 || write(client, body, strlen(body)) < 0) return;
}

static int scripted_start(struct server *s, serve_rule rule)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) || listen(fd, 64) ||
        getsockname(fd, (struct sockaddr *)&addr, &len))
        return -1;
    s->port = ntohs(addr.sin_port);
    s->pid = fork();
    if (s->pid == 0) {
        for (;;) {
            int client = accept(fd, NULL, NULL);
            if (client < 0) continue;
            scripted_serve(client, rule);
            close(client);
        }
    }
    close(fd);
    return s->pid < 0 ? -1 : 0;
}

static void scripted_stop(struct server *s)
{
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
}

#endif
