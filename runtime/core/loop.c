/* loop.c: the event loop (see loop.h): one epoll set, one eventfd for wake-ups, and a binary
 * min-heap of the caller's timers. Watchers are kept in a table indexed by descriptor, so an
 * event finds its callback with no lookup and a descriptor unwatched by an earlier callback of
 * the same turn is skipped. */
#include "core/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define EVENTS_MAX 64

struct watcher {
    loop_fd_fn fn;
    void *user;
    unsigned events;      /* 0: not watched */
};

struct loop {
    int epoll_fd, wake_fd;
    struct watcher *watchers; /* indexed by descriptor */
    size_t watchers_cap;
    struct loop_timer **heap;
    size_t heap_len, heap_cap;
};

struct loop *loop_new(struct rn_err *err)
{
    struct loop *l = rn_calloc(1, sizeof *l);
    l->wake_fd = -1;
    l->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epoll_fd < 0) {
        rn_fail(err, "epoll_create1: %s", strerror(errno));
        goto fail;
    }
    l->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->wake_fd < 0) {
        rn_fail(err, "eventfd: %s", strerror(errno));
        goto fail;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = l->wake_fd};
    if (epoll_ctl(l->epoll_fd, EPOLL_CTL_ADD, l->wake_fd, &ev) != 0) {
        rn_fail(err, "epoll_ctl: %s", strerror(errno));
        goto fail;
    }
    return l;
fail:
    loop_free(l);
    return NULL;
}

void loop_free(struct loop *l)
{
    if (!l) return;
    for (size_t i = 0; i < l->heap_len; i++) l->heap[i]->slot = 0;
    if (l->epoll_fd >= 0) close(l->epoll_fd);
    if (l->wake_fd >= 0) close(l->wake_fd);
    free(l->watchers);
    free(l->heap);
    free(l);
}

/* ---- descriptors ---- */

int loop_watch(struct loop *l, int fd, unsigned events, loop_fd_fn fn, void *user, struct rn_err *err)
{
    if (fd < 0) return rn_fail(err, "loop: no descriptor to watch");
    if ((size_t)fd >= l->watchers_cap) {
        size_t cap = l->watchers_cap ? l->watchers_cap : 64;
        while (cap <= (size_t)fd) cap *= 2;
        l->watchers = rn_realloc(l->watchers, cap * sizeof *l->watchers);
        memset(l->watchers + l->watchers_cap, 0, (cap - l->watchers_cap) * sizeof *l->watchers);
        l->watchers_cap = cap;
    }
    struct watcher *w = &l->watchers[fd];
    struct epoll_event ev = {.data.fd = fd};
    if (events & LOOP_READ) ev.events |= EPOLLIN;
    if (events & LOOP_WRITE) ev.events |= EPOLLOUT;
    if (epoll_ctl(l->epoll_fd, w->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) != 0)
        return rn_fail(err, "epoll_ctl(%d): %s", fd, strerror(errno));
    *w = (struct watcher){fn, user, events ? events : LOOP_READ};
    return 0;
}

void loop_unwatch(struct loop *l, int fd)
{
    if (fd < 0 || (size_t)fd >= l->watchers_cap || !l->watchers[fd].events) return;
    epoll_ctl(l->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
    l->watchers[fd] = (struct watcher){0};
}

void loop_take_eventfd(void *user, int fd, unsigned events)
{
    (void)user;
    (void)events;
    uint64_t count;
    ssize_t n = read(fd, &count, sizeof count);
    (void)n; /* EAGAIN: taken already */
}

/* ---- timers: a min-heap by due_ms; t->slot is its index + 1 ---- */

static void heap_place(struct loop *l, size_t i, struct loop_timer *t)
{
    l->heap[i] = t;
    t->slot = i + 1;
}

static void sift_up(struct loop *l, size_t i)
{
    struct loop_timer *t = l->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (l->heap[parent]->due_ms <= t->due_ms) break;
        heap_place(l, i, l->heap[parent]);
        i = parent;
    }
    heap_place(l, i, t);
}

static void sift_down(struct loop *l, size_t i)
{
    struct loop_timer *t = l->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= l->heap_len) break;
        if (child + 1 < l->heap_len && l->heap[child + 1]->due_ms < l->heap[child]->due_ms) child++;
        if (t->due_ms <= l->heap[child]->due_ms) break;
        heap_place(l, i, l->heap[child]);
        i = child;
    }
    heap_place(l, i, t);
}

void loop_timer_init(struct loop_timer *t, loop_timer_fn fn, void *user)
{
    *t = (struct loop_timer){INT64_MAX, 0, fn, user};
}

void loop_timer_cancel(struct loop *l, struct loop_timer *t)
{
    if (!t->slot) return;
    size_t i = t->slot - 1;
    t->slot = 0;
    struct loop_timer *last = l->heap[--l->heap_len];
    if (i == l->heap_len) return;
    heap_place(l, i, last);
    sift_down(l, i);
    sift_up(l, last->slot - 1);
}

void loop_timer_at(struct loop *l, struct loop_timer *t, int64_t due_ms)
{
    if (due_ms == INT64_MAX) {
        loop_timer_cancel(l, t);
        return;
    }
    if (t->slot) {
        if (t->due_ms == due_ms) return;
        t->due_ms = due_ms;
        sift_down(l, t->slot - 1);
        sift_up(l, t->slot - 1);
        return;
    }
    if (l->heap_len == l->heap_cap) {
        l->heap_cap = l->heap_cap ? l->heap_cap * 2 : 16;
        l->heap = rn_realloc(l->heap, l->heap_cap * sizeof *l->heap);
    }
    t->due_ms = due_ms;
    heap_place(l, l->heap_len++, t);
    sift_up(l, l->heap_len - 1);
}

int64_t loop_next_due_ms(const struct loop *l) { return l->heap_len ? l->heap[0]->due_ms : INT64_MAX; }

/* ---- waking and running ---- */

void loop_wake(struct loop *l)
{
    uint64_t one = 1;
    ssize_t n;
    do n = write(l->wake_fd, &one, sizeof one); while (n < 0 && errno == EINTR);
    /* EAGAIN: the counter is full, so a wake-up is pending anyway */
}

/* The timers due at now, in due order. One due again at now (armed by its own callback) waits
 * for the next turn, so a turn always ends. */
static int run_timers(struct loop *l, int64_t now)
{
    int ran = 0;
    for (size_t budget = l->heap_len; budget > 0 && l->heap_len && l->heap[0]->due_ms <= now; budget--) {
        struct loop_timer *t = l->heap[0];
        loop_timer_cancel(l, t);
        ran++;
        if (t->fn) t->fn(t->user);
    }
    return ran;
}

int loop_run_once(struct loop *l, int max_ms, struct rn_err *err)
{
    int timeout = max_ms;
    int64_t due = loop_next_due_ms(l);
    if (due != INT64_MAX && timeout != 0) {
        int64_t left = due - rn_now_ms();
        if (left < 0) left = 0;
        if (timeout < 0 || left < timeout) timeout = left > INT32_MAX ? INT32_MAX : (int)left;
    }
    struct epoll_event events[EVENTS_MAX];
    int n = epoll_wait(l->epoll_fd, events, EVENTS_MAX, timeout);
    if (n < 0) {
        if (errno == EINTR) return 0;
        return rn_fail(err, "epoll_wait: %s", strerror(errno));
    }
    int handled = 0;
    for (int i = 0; i < n; i++) {
        int fd = events[i].data.fd;
        handled++;
        if (fd == l->wake_fd) {
            loop_take_eventfd(NULL, fd, LOOP_READ);
            continue;
        }
        if ((size_t)fd >= l->watchers_cap || !l->watchers[fd].events) continue; /* unwatched by a callback */
        struct watcher *w = &l->watchers[fd];
        unsigned what = 0;
        if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) what |= LOOP_READ;
        if (events[i].events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) what |= LOOP_WRITE;
        if (w->fn) w->fn(w->user, fd, what & w->events ? what & w->events : what);
    }
    if (l->heap_len && l->heap[0]->due_ms <= rn_now_ms()) handled += run_timers(l, rn_now_ms());
    return handled;
}
