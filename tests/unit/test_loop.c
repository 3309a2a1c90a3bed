/* test_loop.c: the event loop: timers fire in due order, move and cancel; a timer armed for the
 * past by its own callback waits for the next turn; a descriptor's readiness runs its callback
 * until unwatched; loop_wake from another thread ends a wait that has no timer. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/loop.h"
#include "check.h"

struct record {
    int order[64];
    int n;
};

struct tagged {
    struct record *rec;
    int tag;
};

static void on_timer(void *user)
{
    struct tagged *t = user;
    t->rec->order[t->rec->n++] = t->tag;
}

struct again {
    struct loop *l;
    struct loop_timer timer;
    int runs;
};

static void on_again(void *user)
{
    struct again *a = user;
    a->runs++;
    loop_timer_at(a->l, &a->timer, rn_now_ms() - 5); /* due already: the next turn */
}

struct readable {
    int calls;
    unsigned events;
};

static void on_readable(void *user, int fd, unsigned events)
{
    (void)fd;
    struct readable *r = user;
    r->calls++;
    r->events = events;
}

static void *waker(void *arg)
{
    usleep(50 * 1000);
    loop_wake(arg);
    return NULL;
}

static void timers_in_order(struct loop *l)
{
    struct record rec = {{0}, 0};
    struct loop_timer t[6];
    struct tagged tags[6];
    int64_t now = rn_now_ms();
    const int64_t offsets[6] = {-30, -10, -50, -20, -40, 10000};
    for (int i = 0; i < 6; i++) {
        tags[i] = (struct tagged){&rec, i};
        loop_timer_init(&t[i], on_timer, &tags[i]);
        loop_timer_at(l, &t[i], now + offsets[i]);
    }
    CHECK(loop_next_due_ms(l) == now - 50, "the nearest timer is the earliest: %lld", (long long)(loop_next_due_ms(l) - now));
    loop_timer_at(l, &t[3], now - 60);  /* moved to the front */
    loop_timer_cancel(l, &t[4]);        /* cancelled */
    loop_timer_cancel(l, &t[4]);        /* twice: nothing */
    struct rn_err err;
    int n = loop_run_once(l, 0, &err);
    CHECK(n == 4, "four timers were due: %d", n);
    CHECK(rec.n == 4 && rec.order[0] == 3 && rec.order[1] == 2 && rec.order[2] == 0 && rec.order[3] == 1,
          "they fired in due order: %d %d %d %d (%d)", rec.order[0], rec.order[1], rec.order[2], rec.order[3], rec.n);
    CHECK(!loop_timer_armed(&t[0]) && loop_timer_armed(&t[5]), "fired timers are disarmed, the later one is armed");
    loop_timer_at(l, &t[5], INT64_MAX);
    CHECK(!loop_timer_armed(&t[5]) && loop_next_due_ms(l) == INT64_MAX, "INT64_MAX cancels");
}

static void timer_waits(struct loop *l)
{
    struct record rec = {{0}, 0};
    struct tagged tag = {&rec, 7};
    struct loop_timer t;
    loop_timer_init(&t, on_timer, &tag);
    int64_t due = rn_now_ms() + 30;
    loop_timer_at(l, &t, due);
    struct rn_err err;
    int n = 0;
    while (n == 0) n = loop_run_once(l, -1, &err); /* a signal may end a wait early */
    CHECK(n == 1 && rec.n == 1 && rn_now_ms() >= due, "a wait with no limit lasts until the timer (%d)", n);

    struct again a = {l, {0}, 0};
    loop_timer_init(&a.timer, on_again, &a);
    loop_timer_at(l, &a.timer, rn_now_ms() - 1);
    loop_run_once(l, 0, &err);
    CHECK(a.runs == 1, "a timer armed for the past by its callback waits for the next turn: %d", a.runs);
    loop_run_once(l, 0, &err);
    CHECK(a.runs == 2, "... and runs at it: %d", a.runs);
    loop_timer_cancel(l, &a.timer);
}

/* Many timers armed, moved and cancelled at random: they come out in due order. */
static void timers_heap(struct loop *l)
{
    enum { N = 500 };
    static struct loop_timer t[N];
    static struct tagged tags[N];
    int64_t base = rn_now_ms() - 100000, last = INT64_MIN;
    srand(7);
    for (int i = 0; i < N; i++) {
        loop_timer_init(&t[i], NULL, &tags[i]);
        loop_timer_at(l, &t[i], base + rand() % 50000);
    }
    for (int i = 0; i < N; i++) {
        int k = rand() % N;
        if (rand() % 3 == 0) loop_timer_cancel(l, &t[k]);
        else loop_timer_at(l, &t[k], base + rand() % 50000);
    }
    int ordered = 1, fired = 0;
    while (loop_next_due_ms(l) != INT64_MAX) {
        int64_t due = loop_next_due_ms(l);
        if (due < last) ordered = 0;
        last = due;
        struct loop_timer *front = NULL;
        for (int i = 0; i < N; i++)
            if (loop_timer_armed(&t[i]) && t[i].due_ms == due) front = &t[i];
        if (!front) { ordered = 0; break; }
        loop_timer_cancel(l, front);
        fired++;
    }
    CHECK(ordered && fired > 0, "%d timers came out in due order", fired);
}

static void descriptors(struct loop *l)
{
    int fds[2];
    CHECK(pipe(fds) == 0, "pipe");
    struct readable r = {0, 0};
    struct rn_err err;
    CHECK(loop_watch(l, fds[0], LOOP_READ, on_readable, &r, &err) == 0, "watch: %s", err.msg);
    CHECK(loop_run_once(l, 0, &err) == 0 && r.calls == 0, "nothing to read: no call");
    CHECK(write(fds[1], "x", 1) == 1, "write");
    CHECK(loop_run_once(l, 1000, &err) == 1 && r.calls == 1 && r.events == LOOP_READ, "readable: one call (%d)", r.calls);
    CHECK(loop_run_once(l, 0, &err) == 1 && r.calls == 2, "still unread: called again (level-triggered)");
    char c;
    CHECK(read(fds[0], &c, 1) == 1, "read");
    CHECK(loop_run_once(l, 0, &err) == 0 && r.calls == 2, "read: no call");
    CHECK(write(fds[1], "y", 1) == 1, "write");
    loop_unwatch(l, fds[0]);
    loop_unwatch(l, fds[0]);
    CHECK(loop_run_once(l, 0, &err) == 0 && r.calls == 2, "unwatched: no call");
    CHECK(loop_watch(l, -1, LOOP_READ, NULL, NULL, &err) == -1, "a negative descriptor is refused");
    close(fds[0]);
    close(fds[1]);
}

static void wake(struct loop *l)
{
    struct rn_err err;
    loop_wake(l);
    loop_wake(l);
    CHECK(loop_run_once(l, 0, &err) == 1, "two wake-ups before a turn: one event");
    CHECK(loop_run_once(l, 0, &err) == 0, "read: none left");
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, waker, l) == 0, "thread");
    int n = 0;
    int64_t deadline = rn_now_ms() + 60000; /* generous: only a lost wake-up reaches it */
    while (n == 0 && rn_now_ms() < deadline) n = loop_run_once(l, 60000, &err);
    CHECK(n == 1, "a wait with no timer is ended by another thread's loop_wake (%d)", n);
    pthread_join(thread, NULL);
}

int main(void)
{
    struct rn_err err;
    struct loop *l = loop_new(&err);
    CHECK(l != NULL, "loop_new: %s", err.msg);
    if (!l) return check_report("test_loop");
    timers_in_order(l);
    timer_waits(l);
    timers_heap(l);
    descriptors(l);
    wake(l);
    loop_free(l);
    return check_report("test_loop");
}
