/* order.c: records leave in source order, and the source advances only past what is done.
 *
 * Records may finish out of order (model calls run concurrently); a finished record waits in
 * the reorder ring until every older one has finished, then goes to every sink. A record is
 * done when every sink acknowledged or rejected it and, when a sink rejected it, its dead
 * letter is acknowledged by the errors sink. With sinks that acknowledge at write (files)
 * that is at once; with asynchronous ones (Kafka) the record waits in `pending` until their
 * poll() says so. The source advances past records in order as they become done, so what a
 * checkpoint commits is always a prefix of the input that is in every sink or dead-lettered.
 *
 * A record one sink rejects is dead-lettered (stage sink.NAME, the sink's reason) and counts
 * as dead-lettered, not written, even where other sinks hold it; the sinks' own counts
 * (written, rejected) say which. A record several sinks reject has one dead letter naming
 * the first of them, with every reason. */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/text.h"
#include "formats/json.h"
#include "engine/engine_int.h"

static void advance(struct pipeline *p, const struct source_pos *pos)
{
    if (p->src_ops->advance) p->src_ops->advance(p->src, pos);
}

/* The oldest unfinished record is done: count it, advance the source past it. */
static void finish(struct pipeline *p, enum outcome outcome, const struct source_pos *pos)
{
    if (outcome == OUT_WRITE) metric_inc(p->m.written);
    else if (outcome == OUT_DEAD) metric_inc(p->m.dead);
    else metric_inc(p->m.filtered);
    advance(p, pos);
    if (pos) {
        p->done_pos = *pos;
        p->done_any = 1;
    }
    p->done++;
}

/* Note that sink i rejected the record: the first reason as it is, later ones after it. */
static void add_reason(char **reason, int8_t *rejected_by, struct pipeline *p, int i, const char *why)
{
    if (*rejected_by < 0) {
        *rejected_by = (int8_t)i;
        free(*reason);
        *reason = rn_strdup(why);
        return;
    }
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "%s; also rejected by %s: %s", *reason, p->sinks[i].label, why);
    free(*reason);
    *reason = rn_strdup(b.data);
    buf_free(&b);
}

/* Replace the record at the top of the stack by its dead letter for the sink rejection. */
static void push_rejection_letter(struct pipeline *p, int rejected_by, const char *reason, const struct source_pos *pos)
{
    lua_State *L = p->L;
    struct sink_inst *s = &p->sinks[rejected_by];
    deadletter_push(p, s->stage, reason, pos, 0, -1, NULL);
    lua_pushstring(L, s->label);
    lua_setfield(L, -2, "sink");
    lua_remove(L, -2);
}

/* A record a sink may still reject is kept as its JSON line (not as a Lua value: a table of
 * thousands of live records costs the garbage collector a walk at every step). The lines
 * sit in p->kept, bytes [kept_base, kept_base + kept.len) of everything kept so far, and are
 * let go in order as records finish. */
static void keep_json(struct pipeline *p, struct pending *e)
{
    e->kept_at = p->kept_base + p->kept.len;
    e->kept_len = p->record.json.len;
    buf_put(&p->kept, p->record.json.data, p->record.json.len);
}

/* Let go of every kept line before `end`; compact when the dead half is large. */
static void release_kept(struct pipeline *p, uint64_t end)
{
    size_t dead = (size_t)(end - p->kept_base);
    if (dead < 65536 || dead < p->kept.len / 2) return;
    memmove(p->kept.data, p->kept.data + dead, p->kept.len - dead);
    p->kept.len -= dead;
    p->kept.data[p->kept.len] = '\0';
    p->kept_base = end;
}

/* Push the record kept for e, decoded from its line. */
static void push_kept(struct pipeline *p, const struct pending *e)
{
    struct rn_err err;
    if (json_decode_push(p->L, p->kept.data + (e->kept_at - p->kept_base), e->kept_len, &err))
        lua_pushstring(p->L, err.msg); /* cannot happen: the pipeline encoded it */
}

/* Park the record seq in `pending` (the record at the top of the stack is popped; its JSON
 * line is kept when keep). */
static struct pending *park(struct pipeline *p, uint64_t seq, enum outcome outcome, const struct source_pos *pos,
                            int keep)
{
    struct pending *e = &p->pending[seq % p->window];
    e->pos = *pos;
    e->outcome = (uint8_t)outcome;
    e->waiting = 0;
    e->rejected_by = -1;
    e->reason = NULL;
    e->letter_end = 0;
    e->kept_len = 0;
    if (keep) keep_json(p, e);
    lua_pop(p->L, 1);
    return e;
}

/* The dead letter at the top of the stack (popped) for the record seq. */
static void write_dead(struct pipeline *p, uint64_t seq, const struct source_pos *pos)
{
    lua_State *L = p->L;
    struct rn_err err;
    int64_t letter = deadletter_write(p, -1, &err);
    if (letter < 0) {
        lua_pop(L, 1);
        pipeline_fail(p, &err);
        return;
    }
    if (p->done == seq && (uint64_t)letter <= p->errors.acked_below) {
        lua_pop(L, 1);
        finish(p, OUT_DEAD, pos);
        return;
    }
    park(p, seq, OUT_DEAD, pos, 0)->letter_end = (uint64_t)letter;
}

/* The output at the top of the stack (popped) goes to every sink. */
static void write_record(struct pipeline *p, uint64_t seq, const struct source_pos *pos)
{
    lua_State *L = p->L;
    int top = lua_gettop(L);
    struct sink_record *r = &p->record;
    record_begin(r, top);
    struct rn_err err;
    if (p->needs_json && record_encode(r, &err)) {
        /* the map produced something a sink cannot hold: that record is dead, not the job */
        deadletter_push(p, "map", err.msg, pos, 0, 0, NULL);
        lua_replace(L, top);
        write_dead(p, seq, pos);
        return;
    }
    uint16_t waiting = 0;
    int8_t rejected_by = -1;
    char *reason = NULL;
    for (size_t i = 0; i < p->nsinks; i++) {
        struct sink_inst *s = &p->sinks[i];
        int rc = s->ops->write(s->self, seq, r, &err); /* the record stays at `top` whatever it pushes */
        if (rc == SINK_ACCEPTED) {
            if (s->async) waiting |= (uint16_t)(1u << i);
            else metric_inc(s->written);
        } else if (rc > 0) {
            metric_inc(s->rejected);
            add_reason(&reason, &rejected_by, p, (int)i, err.msg);
        } else {
            rn_wrap(&err, "%s", s->label);
            pipeline_fail(p, &err);
            free(reason);
            lua_settop(L, top - 1);
            return;
        }
    }
    if (!waiting && rejected_by < 0 && p->done == seq) { /* the common case: done at once */
        lua_settop(L, top - 1); /* the record, and the fields if a sink asked for them */
        finish(p, OUT_WRITE, pos);
        return;
    }
    lua_settop(L, top); /* drop the fields, if a sink asked for them */
    if (!waiting) { /* every sink answered */
        if (rejected_by >= 0) {
            push_rejection_letter(p, rejected_by, reason, pos);
            write_dead(p, seq, pos);
        } else {
            park(p, seq, OUT_WRITE, pos, 0);
        }
        free(reason);
        return;
    }
    /* an asynchronous sink may still reject it: keep it (as the JSON line, which needs_json
     * made) for the dead letter */
    struct pending *e = park(p, seq, OUT_WRITE, pos, 1);
    e->waiting = waiting;
    e->rejected_by = rejected_by;
    e->reason = reason;
}

/* Write the output or dead letter at the top of the stack (popped) to the sinks. */
static void emit(struct pipeline *p, uint64_t seq, enum outcome outcome, const struct source_pos *pos)
{
    if (p->fatal) { /* the job stops: nothing more is written, the source stays where it is */
        lua_pop(p->L, 1);
        return;
    }
    if (outcome == OUT_WRITE) {
        write_record(p, seq, pos);
    } else if (outcome == OUT_DEAD) {
        write_dead(p, seq, pos);
    } else if (p->done == seq) {
        lua_pop(p->L, 1);
        finish(p, OUT_FILTERED, pos);
    } else {
        park(p, seq, OUT_FILTERED, pos, 0);
    }
}

/* Emit every finished record at the front of the ring. */
static void drain_ready(struct pipeline *p)
{
    while (p->tail < p->head && !p->fatal) {
        struct slot *s = &p->ring[p->tail % p->window];
        if (s->state != SLOT_READY) break;
        if (s->ref != LUA_NOREF) lua_rawgeti(p->L, LUA_REGISTRYINDEX, s->ref);
        else lua_pushnil(p->L);
        struct source_pos pos = s->pos;
        enum outcome outcome = s->outcome;
        luaL_unref(p->L, LUA_REGISTRYINDEX, s->ref);
        s->ref = LUA_NOREF;
        s->state = SLOT_FREE;
        uint64_t seq = p->tail++;
        emit(p, seq, outcome, &pos);
    }
}

void order_settle(struct pipeline *p, uint64_t seq, enum outcome outcome, const struct source_pos *pos)
{
    if (p->tail == p->head) { /* fast path: nothing in flight, no slot needed */
        p->head++;
        p->tail++;
        emit(p, seq, outcome, pos);
        return;
    }
    struct slot *s = &p->ring[seq % p->window];
    if (seq == p->head) { /* a new record behind pending ones */
        p->head++;
        s->pos = *pos;
    }
    s->outcome = (uint8_t)outcome;
    s->ref = luaL_ref(p->L, LUA_REGISTRYINDEX);
    s->state = SLOT_READY;
    drain_ready(p);
}

/* ---- acknowledgements ---- */

void order_resolve(struct pipeline *p)
{
    lua_State *L = p->L;
    while (p->done < p->tail && !p->fatal) {
        struct pending *e = &p->pending[p->done % p->window];
        if (e->outcome == OUT_WRITE) {
            for (size_t i = 0; i < p->nsinks; i++)
                if ((e->waiting >> i & 1) && p->sinks[i].acked_below <= p->done) return; /* not answered yet */
            for (size_t i = 0; i < p->nsinks; i++)
                if (e->waiting >> i & 1) metric_inc(p->sinks[i].written);
            e->waiting = 0;
            if (e->rejected_by >= 0) {
                push_kept(p, e);
                push_rejection_letter(p, e->rejected_by, e->reason, &e->pos);
                struct rn_err err;
                int64_t letter = deadletter_write(p, -1, &err);
                lua_pop(L, 1);
                if (letter < 0) {
                    pipeline_fail(p, &err);
                    return;
                }
                e->outcome = OUT_DEAD;
                e->letter_end = (uint64_t)letter;
            }
            if (e->kept_len) release_kept(p, e->kept_at + e->kept_len);
            e->kept_len = 0;
            free(e->reason);
            e->reason = NULL;
        }
        if (e->outcome == OUT_DEAD && e->letter_end > p->errors.acked_below) return;
        finish(p, e->outcome, &e->pos);
    }
}

void sink_acknowledge(struct sink_report *report, uint64_t through)
{
    struct pipeline *p = report->p;
    uint64_t given = report->index < 0 ? p->letters : p->tail;
    if (through >= given) {
        struct rn_err err;
        rn_fail(&err, "%s acknowledged record %llu, past the %llu it was given (a bug in the sink)", report->sink->label,
                (unsigned long long)through, (unsigned long long)given);
        pipeline_fail(p, &err);
        return;
    }
    if (through + 1 > report->sink->acked_below) report->sink->acked_below = through + 1;
}

void sink_reject(struct sink_report *report, uint64_t seq, const char *reason)
{
    struct pipeline *p = report->p;
    struct rn_err err;
    if (report->index < 0) {
        rn_fail(&err, "%s refused a dead letter: %s", report->sink->label, reason);
        pipeline_fail(p, &err);
        return;
    }
    struct pending *e = seq >= p->done && seq < p->tail ? &p->pending[seq % p->window] : NULL;
    uint16_t bit = (uint16_t)(1u << report->index);
    if (!e || e->outcome != OUT_WRITE || !(e->waiting & bit)) {
        rn_fail(&err, "%s rejected record %llu, which it had not been given or had already answered (a bug in the sink): %s",
                report->sink->label, (unsigned long long)seq, reason);
        pipeline_fail(p, &err);
        return;
    }
    e->waiting &= (uint16_t)~bit;
    metric_inc(report->sink->rejected);
    add_reason(&e->reason, &e->rejected_by, p, report->index, reason);
}

void sink_down(struct sink_report *report, const char *reason)
{
    struct sink_inst *s = report->sink;
    if (s->down_since_ms < 0) s->down_since_ms = rn_now_ms();
    snprintf(s->down_reason, sizeof s->down_reason, "%s", reason && reason[0] ? reason : "no answer");
}

void sink_up(struct sink_report *report)
{
    struct sink_inst *s = report->sink;
    if (s->down_since_ms >= 0) s->paused_ms += rn_now_ms() - s->down_since_ms;
    s->down_since_ms = -1;
}

/* The first sink (the errors sink included) whose service is down, or NULL. */
struct sink_inst *order_sink_down(struct pipeline *p)
{
    for (size_t i = 0; i < p->nsinks; i++)
        if (p->sinks[i].down_since_ms >= 0) return &p->sinks[i];
    return p->errors.ops && p->errors.down_since_ms >= 0 ? &p->errors : NULL;
}

/* A sink down for outage_ms stops the job (pipeline_run says what was committed). */
static int outage_check(struct pipeline *p, struct sink_inst *s, struct rn_err *err)
{
    int64_t now = rn_now_ms();
    if (s->outage_seconds) metric_set(s->outage_seconds, s->down_since_ms >= 0 ? (double)(now - s->down_since_ms) / 1000.0 : 0);
    if (s->down_since_ms < 0 || now - s->down_since_ms < p->outage_ms) return 0;
    char d[32];
    rn_format_duration_ms(d, sizeof d, now - s->down_since_ms);
    p->sink_outage = 1;
    return rn_fail(err, "%s: unreachable for %s (%s)", s->label, d, s->down_reason);
}

int order_poll_sinks(struct pipeline *p, struct rn_err *err)
{
    for (size_t i = 0; i < p->nsinks; i++) {
        struct sink_inst *s = &p->sinks[i];
        if (!s->ops->poll) continue;
        struct sink_report report = {p, s, (int)i};
        if (s->ops->poll(s->self, &report, err)) return rn_wrap(err, "%s", s->label);
        if (outage_check(p, s, err)) return -1;
    }
    if (p->errors.ops && p->errors.ops->poll) {
        struct sink_report report = {p, &p->errors, -1};
        if (p->errors.ops->poll(p->errors.self, &report, err)) return rn_wrap(err, "%s", p->errors.label);
        if (outage_check(p, &p->errors, err)) return -1;
    }
    if (p->pending) order_resolve(p);
    if (p->fatal) {
        *err = p->fatal_err;
        return -1;
    }
    return 0;
}

void order_free(struct pipeline *p)
{
    for (uint64_t i = 0; p->ring && i < p->window; i++)
        if (p->ring[i].ref != LUA_NOREF) luaL_unref(p->L, LUA_REGISTRYINDEX, p->ring[i].ref);
    free(p->ring);
    p->ring = NULL;
    for (uint64_t s = p->done; p->pending && s < p->tail; s++) free(p->pending[s % p->window].reason);
    free(p->pending);
    p->pending = NULL;
    buf_free(&p->kept);
}
