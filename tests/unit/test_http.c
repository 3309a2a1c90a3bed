/* test_http.c: the HTTP client of runtime/core/http.c against a scripted server that echoes the
 * request it got: methods, the request's own header lines before the lent list, per-attempt
 * truncation, answer status, headers and body, the body limit, timings, connection errors,
 * many requests at once, cancelling. Prints failures and "N passed, N failed". */
#include <string.h>

#include "core/http.h"

#include "check.h"
#include "scripted_server.h"

/* The answer: the request as it came (head and body) as the body; the path says the rest:
 * /status/N answers N, /big answers 2000 bytes, /headers adds answer headers. */
static void echo_request(const char *req, int *status, char *head, size_t head_size, char *body, size_t body_size)
{
    int code;
    if (sscanf(req, "%*s /status/%d", &code) == 1) *status = code;
    if (strncmp(strchr(req, ' ') + 1, "/headers", 8) == 0)
        snprintf(head, head_size, "Retry-After: 7\r\nX-Twice: first\r\nx-twice: second\r\nX-Spaces:   padded value  \r\n");
    if (strncmp(strchr(req, ' ') + 1, "/big", 4) == 0) {
        memset(body, 'b', 2000);
        body[2000] = '\0';
        return;
    }
    snprintf(body, body_size, "%s", req);
}

static struct http *client;
static int port;

/* Wait for the next finished request (or NULL after timeout_ms). */
static struct http_request *wait_done(int timeout_ms)
{
    struct rn_err err;
    int64_t now = rn_now_ms(), deadline = now + timeout_ms;
    for (;;) {
        struct http_request *r = http_next_done(client);
        if (r) return r;
        if (http_run_timer(client, now, &err) < 0) { CHECK(0, "timer: %s", err.msg); return NULL; }
        if ((r = http_next_done(client))) return r;
        if (now >= deadline) return NULL;
        int64_t due = http_due_ms(client);
        int wait = due < 0 || due - now > 50 ? 50 : due > now ? (int)(due - now) : 0;
        if (http_wait(client, wait, &now, &err)) { CHECK(0, "wait: %s", err.msg); return NULL; }
    }
}

static void set_url(struct http_request *r, const char *path)
{
    buf_clear(&r->url);
    buf_printf(&r->url, "http://127.0.0.1:%d%s", port, path);
}

/* Send r and wait for its answer; 0 when it came back. */
static int send_one(struct http_request *r)
{
    struct rn_err err;
    if (http_start(client, r, rn_now_ms(), &err)) { CHECK(0, "start: %s", err.msg); return -1; }
    struct http_request *done = wait_done(5000);
    CHECK(done == r, "the request came back");
    return done == r ? 0 : -1;
}

static const char *answer_body(const struct http_request *r) { return r->response.data ? r->response.data : ""; }

static void test_methods(void)
{
    struct http_request r;
    http_request_init(&r);
    CHECK(strcmp(r.method, "POST") == 0, "POST by default");
    struct curl_slist *lent = curl_slist_append(NULL, "X-Lent: shared");
    r.headers = lent;
    http_request_add_header(&r, "X-Own", "one");
    set_url(&r, "/echo");
    buf_puts(&r.body, "{\"a\":1}");
    if (send_one(&r) == 0) {
        const char *got = answer_body(&r);
        const char *own = strstr(got, "\r\nX-Own: one\r\n"), *shared = strstr(got, "\r\nX-Lent: shared\r\n");
        CHECK(r.result == CURLE_OK && r.status == 200 && strncmp(got, "POST /echo HTTP/1.1\r\n", 21) == 0 && own &&
                  shared && own < shared && strstr(got, "Content-Length: 7\r\n") &&
                  strcmp(got + strlen(got) - 7, "{\"a\":1}") == 0,
              "POST: own lines, then the lent list, then the body: %s", got);
    }
    /* the same request as a GET: no body goes out */
    http_request_clear(&r);
    CHECK(r.own_count == 0 && !r.headers && r.url.len == 0 && r.body.len == 0, "clear empties it");
    r.method = "GET";
    set_url(&r, "/get");
    buf_puts(&r.body, "not sent");
    if (send_one(&r) == 0)
        CHECK(strncmp(answer_body(&r), "GET /get HTTP/1.1\r\n", 19) == 0 && !strstr(answer_body(&r), "not sent") &&
                  !strcasestr(answer_body(&r), "content-length"),
              "GET: %s", answer_body(&r));
    r.method = "PUT";
    set_url(&r, "/put");
    buf_clear(&r.body);
    buf_puts(&r.body, "put body");
    if (send_one(&r) == 0)
        CHECK(strncmp(answer_body(&r), "PUT /put HTTP/1.1\r\n", 19) == 0 && strstr(answer_body(&r), "put body"),
              "PUT: %s", answer_body(&r));
    r.method = "DELETE";
    set_url(&r, "/status/204");
    buf_clear(&r.body);
    if (send_one(&r) == 0) CHECK(r.status == 204 && r.result == CURLE_OK, "DELETE: %ld", r.status);
    r.method = "HEAD";
    set_url(&r, "/head");
    if (send_one(&r) == 0) CHECK(r.status == 200 && r.response.len == 0, "HEAD: no body (%zu bytes)", r.response.len);
    r.method = "POST";
    set_url(&r, "/again");
    buf_puts(&r.body, "posted again");
    if (send_one(&r) == 0)
        CHECK(strncmp(answer_body(&r), "POST /again HTTP/1.1\r\n", 22) == 0 && strstr(answer_body(&r), "posted again"),
              "POST after HEAD: %s", answer_body(&r));
    http_request_free(&r);
    curl_slist_free_all(lent);
}

static void test_header_lines(void)
{
    struct http_request r;
    http_request_init(&r);
    struct curl_slist *lent = curl_slist_append(NULL, "X-Lent: 1");
    r.headers = lent;
    http_request_add_header(&r, "X-Build", "b");
    size_t mark = http_request_header_mark(&r);
    http_request_add_header(&r, "Authorization", "Bearer first-token");
    http_request_truncate_headers(&r, mark);
    http_request_add_header(&r, "Authorization", "Bearer second-token");
    const char *want[] = {"X-Build: b", "Authorization: Bearer second-token", "X-Lent: 1"};
    size_t i = 0;
    for (const struct curl_slist *h = http_request_header_list(&r); h; h = h->next, i++)
        CHECK(i < 3 && strcmp(h->data, want[i]) == 0, "header line %zu: %s", i, h->data);
    CHECK(i == 3, "%zu header lines", i);
    CHECK(!memmem(r.own_lines.data, r.own_lines.cap, "first-token", 11), "a dropped line is wiped");
    for (int k = 0; k < 40; k++) http_request_add_header(&r, "X-Many", "v"); /* the node array grows */
    i = 0;
    for (const struct curl_slist *h = http_request_header_list(&r); h; h = h->next) i++;
    CHECK(i == 43, "%zu header lines after 40 more", i);
    set_url(&r, "/headers");
    if (send_one(&r) == 0) {
        struct http_response a = http_response_of(&r);
        const struct http_header *retry = http_response_header(&a, "retry-after");
        const struct http_header *twice = http_response_header(&a, "X-TWICE");
        const struct http_header *spaces = http_response_header(&a, "x-spaces");
        CHECK(retry && strcmp(retry->value, "7") == 0 && retry->value_len == 1 && strcmp(retry->name, "Retry-After") == 0,
              "Retry-After: %s", retry ? retry->value : "(none)");
        CHECK(twice && strcmp(twice->value, "second") == 0, "the last of a repeated header: %s", twice ? twice->value : "(none)");
        CHECK(spaces && strcmp(spaces->value, "padded value") == 0, "value trimmed: '%s'", spaces ? spaces->value : "(none)");
        CHECK(a.header_count == 7 && !http_response_header(&a, "absent"), "%zu answer headers", a.header_count);
        CHECK(strstr(a.body, "\r\nX-Many: v\r\n") && strstr(a.body, "Bearer second-token") && !strstr(a.body, "first-token"),
              "sent as listed");
    }
    http_request_free(&r);
    curl_slist_free_all(lent);
}

static void test_limits_and_failures(void)
{
    struct http_request r;
    http_request_init(&r);
    r.method = "GET";
    r.max_response = 100;
    set_url(&r, "/big");
    if (send_one(&r) == 0)
        CHECK(r.result == CURLE_WRITE_ERROR && r.too_large && r.response.len <= 100, "too large: %s, %zu bytes",
              curl_easy_strerror(r.result), r.response.len);
    r.max_response = 0;
    if (send_one(&r) == 0)
        CHECK(r.result == CURLE_OK && !r.too_large && r.response.len == 2000 && r.timings.total_us > 0 &&
                  r.timings.starttransfer_us >= r.timings.pretransfer_us && r.timings.connects == 1,
              "the same request without a limit: %zu bytes, %lld us, %ld connects", r.response.len,
              (long long)r.timings.total_us, r.timings.connects);
    /* nothing listens there */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0 && getsockname(fd, (struct sockaddr *)&addr, &len) == 0) {
        close(fd);
        buf_clear(&r.url);
        buf_printf(&r.url, "http://127.0.0.1:%d/", ntohs(addr.sin_port));
        if (send_one(&r) == 0)
            CHECK(r.result == CURLE_COULDNT_CONNECT && r.status == 0 && r.error[0], "refused: %s (%s)",
                  curl_easy_strerror(r.result), r.error);
    }
    /* a timeout */
    struct server hang = {0, 0};
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    addr.sin_port = 0;
    len = sizeof addr;
    if (listener >= 0 && bind(listener, (struct sockaddr *)&addr, sizeof addr) == 0 && listen(listener, 4) == 0 &&
        getsockname(listener, (struct sockaddr *)&addr, &len) == 0) {
        hang.port = ntohs(addr.sin_port); /* accepts (the kernel does) and never answers */
        buf_clear(&r.url);
        buf_printf(&r.url, "http://127.0.0.1:%d/", hang.port);
        r.timeout_ms = 200;
        int64_t start = rn_now_ms();
        if (send_one(&r) == 0)
            CHECK(r.result == CURLE_OPERATION_TIMEDOUT && rn_now_ms() - start >= 190, "timeout: %s after %lld ms",
                  curl_easy_strerror(r.result), (long long)(rn_now_ms() - start));
    }
    if (listener >= 0) close(listener);
    http_request_free(&r);
}

static void test_many_and_cancel(void)
{
    enum { N = 16 };
    struct http_request r[N];
    struct rn_err err;
    for (int i = 0; i < N; i++) {
        http_request_init(&r[i]);
        r[i].user = &r[i];
        char path[32];
        snprintf(path, sizeof path, "/many/%d", i);
        set_url(&r[i], path);
        buf_printf(&r[i].body, "body %d", i);
        CHECK(http_start(client, &r[i], rn_now_ms(), &err) == 0, "start %d: %s", i, err.msg);
    }
    CHECK(http_start(client, &r[0], rn_now_ms(), &err) == -1 && strstr(err.msg, "running already"), "started twice: %s",
          err.msg);
    CHECK(http_running(client) == N, "%d running", http_running(client));
    http_cancel(client, &r[N - 1]);
    CHECK(http_running(client) == N - 1 && !r[N - 1].running, "cancelled one");
    int seen[N] = {0}, done = 0;
    struct http_request *d;
    while (done < N - 1 && (d = wait_done(5000))) {
        int i = (int)(d - r);
        char want[64];
        snprintf(want, sizeof want, "POST /many/%d HTTP/1.1", i);
        CHECK(i >= 0 && i < N - 1 && !seen[i] && strncmp(answer_body(d), want, strlen(want)) == 0, "answer %d", i);
        if (i >= 0 && i < N) seen[i]++;
        done++;
    }
    CHECK(done == N - 1 && http_running(client) == 0, "%d of %d done", done, N - 1);
    for (int i = 0; i < N; i++) http_request_free(&r[i]);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct server srv;
    struct rn_err err;
    if (scripted_start(&srv, echo_request)) {
        CHECK(0, "echo server");
        return check_report("test_http");
    }
    port = srv.port;
    client = http_new(8, &err);
    CHECK(client, "http_new: %s", err.msg);
    if (client) {
        test_methods();
        test_header_lines();
        test_limits_and_failures();
        test_many_and_cancel();
        http_free(client);
    }
    scripted_stop(&srv);
    curl_global_cleanup();
    return check_report("test_http");
}
