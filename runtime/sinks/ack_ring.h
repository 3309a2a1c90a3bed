/* ack_ring.h: the records an asynchronous sink (SINK_ASYNC_ACKS) has accepted and not yet
 * reported to the pipeline, in seq order, with what became of each: the one bookkeeping of
 * sink.kafka and sink.elasticsearch.
 *
 * A ring of cap (a power of two) slots: the record pushed as number n (its ticket, counted from
 * 0, which the sink carries with the message or document) is at slot n % cap while
 * front <= n < front + len. The sink settles a ticket when its service answers (done, or
 * rejected with a reason); ack_ring_report() passes the answers on in order: rejections, then
 * acknowledged-through the oldest record still waiting. */
#ifndef RUNNEL_SINKS_ACK_RING_H
#define RUNNEL_SINKS_ACK_RING_H

#include <stddef.h>
#include <stdint.h>

#include "engine/plugin.h"

enum ack_state { ACK_QUEUED, ACK_DONE, ACK_REJECTED };

struct ack_entry {
    uint64_t seq;
    int state;    /* enum ack_state */
    char *reason; /* ACK_REJECTED: why (owned by the ring) */
};

struct ack_ring {
    struct ack_entry *slots;
    size_t cap, len;
    uint64_t front;    /* the ticket of the oldest record in the ring */
    uint64_t last_seq; /* the last record the sink was given (ack_ring_given) */
    int given_any;
};

/* Zeroed memory is an empty ring, as is one after ack_ring_init. */
void ack_ring_init(struct ack_ring *r);
/* The sink was given record seq (accepted or not): with nothing waiting, poll acknowledges
 * through it. */
void ack_ring_given(struct ack_ring *r, uint64_t seq);
/* The ticket the next push gets. */
static inline uint64_t ack_ring_next_ticket(const struct ack_ring *r) { return r->front + r->len; }
/* Queue record seq as waiting; returns its ticket. */
uint64_t ack_ring_push(struct ack_ring *r, uint64_t seq);
/* The waiting record of a ticket, or NULL when it is not in the ring. */
struct ack_entry *ack_ring_find(struct ack_ring *r, uint64_t ticket);
/* The service answered ticket: ACK_DONE, or ACK_REJECTED with reason (taken over). */
void ack_ring_settle(struct ack_ring *r, uint64_t ticket, int state, char *reason);
/* Report every answered record at the front (sink_reject for the rejected), then acknowledge
 * through the oldest one still waiting (or the last given when none waits). */
void ack_ring_report(struct ack_ring *r, struct sink_report *report);
void ack_ring_free(struct ack_ring *r);

#endif
