/* loop.h: a job's one event loop (Redis's ae): file descriptors with callbacks, timers on the
 * monotonic clock (rn_now_ms), and a wake-up any thread or a signal handler may send.
 *
 * Everything a job waits on is registered here: the model's HTTP client, Kafka's queues, the
 * CSV follower's events, a sink's acknowledgements. The pipeline blocks in one place,
 * loop_run_once, until one of them is ready or its nearest timer falls due, so an idle job
 * sleeps and a ready one wakes at once. Callbacks run on the loop's thread, inside
 * loop_run_once; a callback may be NULL (the event only wakes the loop; its owner does the work
 * when the loop returns). Callbacks must take a spurious call calmly. Not thread-safe, except
 * loop_wake. */
#ifndef RUNNEL_LOOP_H
#define RUNNEL_LOOP_H

#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

enum loop_events { LOOP_READ = 1 << 0, LOOP_WRITE = 1 << 1 };

typedef void (*loop_fd_fn)(void *user, int fd, unsigned events);
typedef void (*loop_timer_fn)(void *user);

/* A timer is its owner's memory (inside the struct that uses it); the loop only points at it
 * while it is armed. Initialize with loop_timer_init before use; cancel before freeing. */
struct loop_timer {
    int64_t due_ms;
    size_t slot;          /* its place in the loop's heap + 1; 0: not armed */
    loop_timer_fn fn;
    void *user;
};

struct loop;

/* NULL and err when epoll or the eventfd cannot be made. It holds two descriptors
 * (LOOP_OWN_DESCRIPTORS). */
struct loop *loop_new(struct rn_err *err);
#define LOOP_OWN_DESCRIPTORS 2
/* Free the loop. Registered descriptors stay their owners' (not closed). */
void loop_free(struct loop *l);

/* Watch fd for events (LOOP_READ and/or LOOP_WRITE, level-triggered): fn(user, fd, what
 * happened) runs from loop_run_once while it is ready. Watching an fd again changes its events
 * and callback. -1 and err when epoll refuses it. */
int loop_watch(struct loop *l, int fd, unsigned events, loop_fd_fn fn, void *user, struct rn_err *err);
/* Stop watching fd (before it is closed). Nothing when it is not watched. */
void loop_unwatch(struct loop *l, int fd);
/* A callback for an eventfd that only wakes the loop (librdkafka's queue events, a stop
 * signal's): it reads the count, so the descriptor is not ready again until the next write. */
void loop_take_eventfd(void *user, int fd, unsigned events);

void loop_timer_init(struct loop_timer *t, loop_timer_fn fn, void *user);
/* Arm t to fire at due_ms (rn_now_ms's clock; a time passed fires at the next turn), moving it
 * when it is armed already. INT64_MAX cancels it. */
void loop_timer_at(struct loop *l, struct loop_timer *t, int64_t due_ms);
void loop_timer_cancel(struct loop *l, struct loop_timer *t);
static inline int loop_timer_armed(const struct loop_timer *t) { return t->slot != 0; }
/* When the nearest timer is due, INT64_MAX when none is armed. */
int64_t loop_next_due_ms(const struct loop *l);

/* Make a loop_run_once waiting now, or the next one, return at once. From any thread, and
 * from a signal handler (one write(2) to an eventfd). */
void loop_wake(struct loop *l);

/* Wait until a watched descriptor is ready, a timer falls due, loop_wake is called or max_ms
 * passes (-1: no limit but the timers; 0: do not wait), then run the callbacks of the
 * descriptors that are ready and of the timers that are due, in the order they fall due. A
 * timer that a callback arms for a time already passed waits for the next turn. Returns how
 * many events it handled (descriptors, timers, wake-ups; 0: the wait ran out), -1 and err when
 * epoll fails. A signal ends the wait early (0). */
int loop_run_once(struct loop *l, int max_ms, struct rn_err *err);

#endif
