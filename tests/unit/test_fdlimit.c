/* test_fdlimit.c: core/fdlimit.c and the HTTP client out of descriptors: the fit of connections
 * under a limit, the advice, raising the soft limit, counting what is open, the spare
 * descriptor lent when none is free, and a transfer whose socket() fails with EMFILE marked
 * no_descriptor (and one refused for another reason not). The process lowers its own soft
 * limit and fills it, then gives everything back. Prints "N passed, N failed". */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/fdlimit.h"
#include "core/http.h"

#include "check.h"

#define FILL_MAX 4096

static void test_fit(void)
{
    struct fdlimit unlimited = {FDLIMIT_UNLIMITED, FDLIMIT_UNLIMITED}, l = {256, 256};
    CHECK(fdlimit_fit(&unlimited, 5000, 100, 0, 10) == 5000, "unlimited: all fit");
    CHECK(fdlimit_fit(&l, 100, 20, 0, 4) == 100, "room for 100 under 256");
    CHECK(fdlimit_fit(&l, 1000, 20, 0, 4) == 256 - 20 - 4 - FDLIMIT_RESERVE, "1000 lowered to what fits: %ld",
          fdlimit_fit(&l, 1000, 20, 0, 4));
    CHECK(fdlimit_fit(&l, 1000, 220, 200, 4) == 256 - 20 - 4 - FDLIMIT_RESERVE, "own connections are not others");
    CHECK(fdlimit_fit(&l, 1000, 300, 0, 4) == 1, "never below 1");
}

static void test_advice(void)
{
    struct fdlimit soft = {1024, 524288}, hard = {1024, 1024}, unlimited = {1024, FDLIMIT_UNLIMITED};
    struct buf b;
    buf_init(&b);
    fdlimit_advice(&b, &soft, 2100);
    CHECK(strstr(b.data, "ulimit -n 2100") && strstr(b.data, "LimitNOFILE=2100"), "under the hard limit: %s", b.data);
    buf_clear(&b);
    fdlimit_advice(&b, &hard, 2100);
    CHECK(strstr(b.data, "hard limit is 1024") && strstr(b.data, "as root") && strstr(b.data, "LimitNOFILE=2100"),
          "over the hard limit: %s", b.data);
    buf_clear(&b);
    fdlimit_advice(&b, &unlimited, 2100);
    CHECK(strstr(b.data, "ulimit -n 2100"), "an unlimited hard limit: %s", b.data);
    buf_free(&b);
}

static void test_raise(void)
{
    struct rlimit saved;
    getrlimit(RLIMIT_NOFILE, &saved);
    if (saved.rlim_max < 128) { CHECK(0, "hard limit %lu too low for the test", (unsigned long)saved.rlim_max); return; }
    struct rlimit low = {64, saved.rlim_max};
    CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0, "lower the soft limit: %s", strerror(errno));
    long before = 0, after = 0;
    CHECK(fdlimit_raise(&before, &after) == 0, "raise: %s", strerror(errno));
    struct fdlimit now;
    fdlimit_get(&now);
    CHECK(before == 64, "before: %ld", before);
    CHECK(saved.rlim_max == RLIM_INFINITY ? after > 64 : after == (long)saved.rlim_max, "after: %ld", after);
    CHECK(now.soft == after && now.hard == (saved.rlim_max == RLIM_INFINITY ? FDLIMIT_UNLIMITED : (long)saved.rlim_max),
          "getrlimit agrees: %ld/%ld", now.soft, now.hard);
    CHECK(fdlimit_raise(&before, &after) == 0 && before == after, "raising again changes nothing");
    setrlimit(RLIMIT_NOFILE, &saved);
}

static void test_open_count(void)
{
    long base = fdlimit_open_count();
    int fds[5];
    for (int i = 0; i < 5; i++) fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
    CHECK(fdlimit_open_count() == base + 5, "5 more open: %ld -> %ld", base, fdlimit_open_count());
    for (int i = 0; i < 5; i++) close(fds[i]);
    CHECK(fdlimit_open_count() == base, "and closed again");
    CHECK(fdlimit_exhausted_errno(EMFILE) && fdlimit_exhausted_errno(ENFILE) && !fdlimit_exhausted_errno(ENOENT),
          "EMFILE and ENFILE are exhaustion, ENOENT is not");
}

/* Open /dev/null until EMFILE; returns how many, their numbers in fds. */
static int fill(int *fds)
{
    int n = 0;
    while (n < FILL_MAX && (fds[n] = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0) n++;
    return n;
}

static void unfill(int *fds, int n)
{
    while (n > 0) close(fds[--n]);
}

/* With the limit a few above what is open: the spare, then a transfer without a socket. */
static void test_exhausted(void)
{
    struct rlimit saved;
    getrlimit(RLIMIT_NOFILE, &saved);
    struct rn_err err;
    struct http *h = http_new(4, &err);
    CHECK(h, "http_new: %s", err.msg);
    if (!h) return;
    struct http_request r;
    http_request_init(&r);
    buf_puts(&r.url, "http://127.0.0.1:1/v1/chat/completions"); /* nothing listens on port 1 */
    r.connect_timeout_ms = r.timeout_ms = 2000;

    /* refused with descriptors free: a plain connection failure */
    CHECK(http_start(h, &r, rn_now_ms(), &err) == 0, "start: %s", err.msg);
    struct http_request *done = NULL;
    int64_t now = rn_now_ms();
    for (int i = 0; i < 200 && !done; i++) {
        http_run_timer(h, now, &err);
        http_wait(h, 10, &now, &err);
        done = http_next_done(h);
    }
    CHECK(done == &r && r.result == CURLE_COULDNT_CONNECT && !r.no_descriptor,
          "refused, descriptors free: result %d, no_descriptor %d", (int)r.result, r.no_descriptor);

    static int fds[FILL_MAX];
    struct rlimit low = {(rlim_t)fdlimit_open_count() + 8, saved.rlim_max};
    setrlimit(RLIMIT_NOFILE, &low);
    int spare = -1;
    fdlimit_spare_take(&spare);
    CHECK(spare >= 0, "a spare is taken");
    int n = fill(fds);
    CHECK(n > 0 && n < FILL_MAX && errno == EMFILE, "filled %d descriptors to EMFILE", n);
    CHECK(!fdlimit_one_free(), "none is free");
    fdlimit_spare_release(&spare);
    CHECK(spare == -1 && fdlimit_one_free(), "the spare released: one is free");
    fdlimit_spare_take(&spare);
    CHECK(spare >= 0 && !fdlimit_one_free(), "taken again: none is free");

    CHECK(http_start(h, &r, rn_now_ms(), &err) == 0, "start: %s", err.msg);
    done = NULL;
    now = rn_now_ms();
    for (int i = 0; i < 200 && !done; i++) {
        http_run_timer(h, now, &err);
        http_wait(h, 10, &now, &err);
        done = http_next_done(h);
    }
    CHECK(done == &r && r.result != CURLE_OK && r.no_descriptor,
          "socket() failed with EMFILE: result %d (%s), no_descriptor %d", (int)r.result, r.error, r.no_descriptor);
    CHECK(http_connections(h) == 0, "no connection counted: %d", http_connections(h));

    unfill(fds, n);
    fdlimit_spare_release(&spare);
    setrlimit(RLIMIT_NOFILE, &saved);
    http_request_free(&r);
    http_free(h);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    test_fit();
    test_advice();
    test_raise();
    test_open_count();
    test_exhausted();
    curl_global_cleanup();
    return check_report("test_fdlimit");
}
