/* ack_ring.c: the records an asynchronous sink has not yet reported (see ack_ring.h). */
#include <stdlib.h>
#include <string.h>

#include "sinks/ack_ring.h"

static struct ack_entry *slot(const struct ack_ring *r, uint64_t ticket) { return &r->slots[ticket & (r->cap - 1)]; }

void ack_ring_init(struct ack_ring *r) { memset(r, 0, sizeof *r); }

void ack_ring_given(struct ack_ring *r, uint64_t seq)
{
    r->last_seq = seq;
    r->given_any = 1;
}

uint64_t ack_ring_push(struct ack_ring *r, uint64_t seq)
{
    if (r->len == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 1024;
        struct ack_entry *q = rn_malloc(cap * sizeof *q);
        for (uint64_t t = r->front; t < r->front + r->len; t++) q[t & (cap - 1)] = *slot(r, t);
        free(r->slots);
        r->slots = q;
        r->cap = cap;
    }
    uint64_t ticket = r->front + r->len++;
    *slot(r, ticket) = (struct ack_entry){seq, ACK_QUEUED, NULL};
    return ticket;
}

struct ack_entry *ack_ring_find(struct ack_ring *r, uint64_t ticket)
{
    if (ticket < r->front || ticket >= r->front + r->len) return NULL;
    return slot(r, ticket);
}

void ack_ring_settle(struct ack_ring *r, uint64_t ticket, int state, char *reason)
{
    struct ack_entry *e = ack_ring_find(r, ticket);
    if (!e) {
        free(reason);
        return;
    }
    free(e->reason);
    e->state = state;
    e->reason = reason;
}

void ack_ring_report(struct ack_ring *r, struct sink_report *report)
{
    while (r->len > 0 && slot(r, r->front)->state != ACK_QUEUED) {
        struct ack_entry *e = slot(r, r->front);
        if (e->state == ACK_REJECTED) sink_reject(report, e->seq, e->reason);
        free(e->reason);
        e->reason = NULL;
        r->front++;
        r->len--;
    }
    if (r->len > 0) {
        uint64_t oldest = slot(r, r->front)->seq;
        if (oldest > 0) sink_acknowledge(report, oldest - 1);
    } else if (r->given_any) {
        sink_acknowledge(report, r->last_seq);
    }
}

void ack_ring_free(struct ack_ring *r)
{
    for (uint64_t t = r->front; t < r->front + r->len; t++) free(slot(r, t)->reason);
    free(r->slots);
    memset(r, 0, sizeof *r);
}
