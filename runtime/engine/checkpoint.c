/* checkpoint.c: making progress durable. A checkpoint flushes every sink, waits until each
 * has acknowledged or rejected everything written to it, dead-letters what was rejected,
 * flushes the errors sink, then commits the source and writes STATE_DIR/JOB.checkpoint.json
 * (atomically: .tmp, fsync, rename), the file `--resume` restores from. Its format is in
 * runtime/README.md:
 *   {"version": 1, "job": NAME, "source": {...its save()...},
 *    "sinks": [{...each sink's save()...}, ...], "errors": {...}, "model": {"batches": [...]}} */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/fdlimit.h"
#include "engine/engine_int.h"
#include "models/model.h"
#include "core/log.h"

#define CHECKPOINT_VERSION 1
#define CHECKPOINT_FINAL_TRIES 20   /* the last checkpoint, put off for want of descriptors: tries */

int checkpoint_load(struct pipeline *p, json_t **state, struct rn_err *err)
{
    *state = NULL;
    int asked = p->env->resume;
    if (!asked && !p->env->streaming) return 0; /* a streaming job always goes on from where it was */
    p->env->resume = 0;
    if (access(p->checkpoint_path, F_OK) != 0) {
        if (asked) log_warning("--resume: no checkpoint at %s; starting from the beginning", p->checkpoint_path);
        return 0;
    }
    p->env->resume = 1;
    size_t len;
    char *text = rn_read_file(p->checkpoint_path, &len, err);
    if (!text) return -1;
    json_error_t jerr;
    *state = json_loadb(text, len, 0, &jerr);
    free(text);
    if (!*state) return rn_fail(err, "%s: corrupt checkpoint: %s", p->checkpoint_path, jerr.text);
    json_t *version = json_object_get(*state, "version");
    if (!json_is_integer(version) || json_integer_value(version) != CHECKPOINT_VERSION) {
        long long v = json_is_integer(version) ? (long long)json_integer_value(version) : -1;
        json_decref(*state);
        *state = NULL;
        if (v < 0) return rn_fail(err, "%s: corrupt checkpoint: no version", p->checkpoint_path);
        return rn_fail(err, "%s: checkpoint version %lld, but this runner reads version %d", p->checkpoint_path, v,
                       CHECKPOINT_VERSION);
    }
    return 0;
}

int checkpoint_restore(struct pipeline *p, json_t *state, struct rn_err *err)
{
    if (p->model && model_restore(p->model, state, err)) return -1;
    if (!p->has_checkpoint) return 0; /* the model's batches alone (a Kafka source keeps its offsets) */
    if (p->src_ops->restore(p->src, json_object_get(state, "source"), err)) return rn_wrap(err, "--resume");
    json_t *sinks = json_object_get(state, "sinks");
    if (json_array_size(sinks) != p->nsinks)
        return rn_fail(err, "--resume: the checkpoint has %zu sinks but the job declares %zu; start without --resume",
                       json_array_size(sinks), p->nsinks);
    for (size_t i = 0; i < p->nsinks; i++)
        if (p->sinks[i].ops->restore && p->sinks[i].ops->restore(p->sinks[i].self, json_array_get(sinks, i), err))
            return rn_wrap(err, "--resume: %s", p->sinks[i].label);
    json_t *errors = json_object_get(state, "errors");
    if (errors && p->errors.ops && p->errors.ops->restore && p->errors.ops->restore(p->errors.self, errors, err))
        return rn_wrap(err, "--resume: %s", p->errors.label);
    json_t *line = json_object_get(json_object_get(state, "source"), "line");
    p->resumed_line = json_is_integer(line) ? json_integer_value(line) : 0;
    return 0;
}

/* A flush that fails while the sink's service is down is an outage, not the sink failing: poll
 * the sink once so it can say so (sink_down), and note it in p->flush_down, so the run loop
 * waits the outage out (limits.outage) and takes the checkpoint again once the sink is up. */
static int flush_sink(struct pipeline *p, struct sink_inst *s, int index, struct rn_err *err)
{
    if (!s->ops || !s->ops->flush || s->ops->flush(s->self, err) == 0) return 0;
    if (s->ops->poll) {
        struct sink_report report = {p, s, index};
        struct rn_err ignored;
        s->ops->poll(s->self, &report, &ignored);
    }
    if (s->down_since_ms >= 0) p->flush_down = 1;
    return rn_wrap(err, "%s", s->label);
}

/* After the flushes every record that left the ring is done; say which sink holds one back. */
static int check_all_answered(struct pipeline *p, struct rn_err *err)
{
    if (p->done == p->tail) return 0;
    if (!p->pending) return rn_fail(err, "%llu records unfinished after the flush", (unsigned long long)(p->tail - p->done));
    const struct pending *e = &p->pending[p->done % p->window];
    for (size_t i = 0; i < p->nsinks; i++)
        if (e->outcome == OUT_WRITE && (e->waiting >> i & 1))
            return rn_fail(err, "%s flushed but did not acknowledge record %llu (a bug in the sink); not committing past it",
                           p->sinks[i].label, (unsigned long long)p->done);
    return rn_fail(err, "%s flushed but did not acknowledge dead letter %llu (a bug in the sink); not committing past it",
                   p->errors.label, (unsigned long long)(e->letter_end - 1));
}

static int save_state(struct pipeline *p, struct rn_err *err)
{
    json_t *state = json_object(), *src = json_object(), *sinks = json_array();
    json_object_set_new(state, "version", json_integer(CHECKPOINT_VERSION));
    json_object_set_new(state, "job", json_string(p->env->job_name));
    int rc = p->has_checkpoint ? p->src_ops->save(p->src, src, err) : 0; /* else Kafka: offsets are its checkpoint */
    if (rc == 0 && p->model) rc = model_save(p->model, state, err);
    json_object_set_new(state, "source", src);
    for (size_t i = 0; i < p->nsinks && rc == 0; i++) {
        json_t *st = json_object();
        if (p->sinks[i].ops->save) rc = p->sinks[i].ops->save(p->sinks[i].self, st, err);
        json_array_append_new(sinks, st);
    }
    json_object_set_new(state, "sinks", sinks);
    if (rc == 0 && p->errors.ops && p->errors.ops->save) {
        json_t *st = json_object();
        rc = p->errors.ops->save(p->errors.self, st, err);
        json_object_set_new(state, "errors", st);
    }
    if (rc == 0) {
        char *text = json_dumps(state, JSON_COMPACT);
        rc = rn_write_file_atomic(p->checkpoint_path, text, strlen(text), err);
        free(text);
    }
    json_decref(state);
    return rc;
}

int checkpoint_take(struct pipeline *p, struct rn_err *err)
{
    double started = rn_now();
    for (size_t i = 0; i < p->nsinks; i++)
        if (flush_sink(p, &p->sinks[i], (int)i, err)) return -1;
    /* the acknowledgements of what was flushed; rejected records get their dead letters */
    if (order_poll_sinks(p, err)) return -1;
    if (flush_sink(p, &p->errors, -1, err)) return -1;
    if (order_poll_sinks(p, err) || check_all_answered(p, err)) return -1;
    metric_set(p->m.committed, p->m.written->value);
    p->committed_pos = p->done_pos;
    p->committed_any = p->done_any;
    if (p->src_ops->commit && p->src_ops->commit(p->src, err)) return rn_wrap(err, "%s", p->src_label);
    if ((p->has_checkpoint || (p->model && model_batch_window(p->model))) && save_state(p, err)) return -1;
    metric_inc(p->m.checkpoints);
    metric_observe(p->m.checkpoint_seconds, rn_now() - started);
    return summary_write_metrics(p, err);
}

int checkpoint_spared(struct pipeline *p, struct rn_err *err)
{
    fdlimit_spare_release(&p->spare_fd);
    int rc = checkpoint_take(p, err);
    int exhausted = rc && !fdlimit_one_free();
    fdlimit_spare_take(&p->spare_fd);
    if (!exhausted) return rc;
    if (p->model) model_descriptors_short(p->model);
    if (!p->descriptors_noted) {
        struct fdlimit l;
        fdlimit_get(&l);
        struct buf advice;
        buf_init(&advice);
        fdlimit_advice(&advice, &l, fdlimit_open_count() + FDLIMIT_RESERVE);
        log_warning("checkpoint put off, no file descriptor is free (%s; limit %ld): it is tried "
                        "again every %d ms; %s", err->msg, l.soft, CHECKPOINT_RETRY_MS, advice.data);
        buf_free(&advice);
        p->descriptors_noted = 1;
    }
    return 1;
}

int checkpoint_final(struct pipeline *p, struct rn_err *err)
{
    for (int i = 0;; i++) {
        int rc = checkpoint_spared(p, err);
        if (rc <= 0) return rc;
        if (i + 1 == CHECKPOINT_FINAL_TRIES)
            return rn_wrap(err, "checkpoint: no file descriptor free after %d tries", CHECKPOINT_FINAL_TRIES);
        struct timespec pause = {0, CHECKPOINT_RETRY_MS * 1000000L};
        nanosleep(&pause, NULL);
    }
}
