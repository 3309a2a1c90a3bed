/* pipeline.c: running one job (see pipeline.h): opening what the job declares, the stages a
 * record goes through (filter, predict, map), and the event loop that drives them.
 *
 * Writing to the sinks in order, acknowledgements and what the source may advance past are
 * in order.c; dead letters in deadletter.c; checkpoints in checkpoint.c; the summary in
 * summary.c (engine_int.h lists them). */
#include "engine/pipeline.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fdlimit.h"
#include "engine/engine_int.h"
#include "engine/evaluate.h"
#include "engine/fdplan.h"
#include "lua/job.h"
#include "models/model.h"
#include "core/log.h"
#include "serve/exporter.h"

void pipeline_fail(struct pipeline *p, const struct rn_err *err)
{
    if (p->fatal) return;
    p->fatal = 1;
    p->fatal_err = *err;
}

/* ---- the stages ---- */

/* filter or map failed on the record at stack index rec (the top but for what the call left):
 * its dead letter replaces it, and the error counts towards max_errors; a sandbox that
 * cannot go on (memory_limit) stops the job. */
static void script_failed(struct pipeline *p, const char *stage, const struct rn_err *err, int rec, uint64_t seq,
                          const struct source_pos *pos)
{
    lua_State *L = p->L;
    lua_settop(L, rec);
    deadletter_push(p, stage, err->msg, pos, 0, rec, NULL);
    lua_remove(L, rec);
    metric_inc(p->m.script_errors);
    if (luajob_fatal(L)) { /* the sandbox cannot go on (memory_limit) */
        struct rn_err e;
        rn_fail(&e, "%s", luajob_fatal(L));
        pipeline_fail(p, &e);
    } else if (p->max_errors > 0 && (int64_t)metric_u64(p->m.script_errors) >= p->max_errors) {
        struct rn_err e;
        rn_fail(&e, "stopping after %llu script errors (job max_errors = %lld); the last: %s",
                (unsigned long long)metric_u64(p->m.script_errors), (long long)p->max_errors, err->msg);
        pipeline_fail(p, &e);
    }
    order_settle(p, seq, OUT_DEAD, pos);
}

/* Run map (if any) on the record at the top of the stack and settle the outcome. */
static void finish_record(struct pipeline *p, uint64_t seq, const struct source_pos *pos)
{
    lua_State *L = p->L;
    if (p->map_ref == LUA_NOREF) {
        order_settle(p, seq, OUT_WRITE, pos);
        return;
    }
    int rec = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->map_ref);
    lua_pushvalue(L, rec);
    struct rn_err err;
    if (luajob_call(L, 1, 1, &err)) {
        script_failed(p, "map", &err, rec, seq, pos);
        return;
    }
    int t = lua_type(L, -1);
    if (t == LUA_TNIL || (t == LUA_TBOOLEAN && !lua_toboolean(L, -1))) {
        lua_settop(L, rec - 1);
        lua_pushnil(L);
        order_settle(p, seq, OUT_FILTERED, pos);
        return;
    }
    if (t != LUA_TTABLE) {
        rn_fail(&err, "map must return a table or nil, returned a %s", luaL_typename(L, -1));
        script_failed(p, "map", &err, rec, seq, pos);
        return;
    }
    lua_remove(L, rec);
    order_settle(p, seq, OUT_WRITE, pos);
}

/* A new record from the source is at the top of the stack. */
static void process_record(struct pipeline *p, const struct source_pos *pos)
{
    lua_State *L = p->L;
    uint64_t seq = p->head;
    metric_inc(p->m.read);
    int rec = lua_gettop(L);
    if (p->filter_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, p->filter_ref);
        lua_pushvalue(L, rec);
        struct rn_err err;
        if (luajob_call(L, 1, 1, &err)) {
            script_failed(p, "filter", &err, rec, seq, pos);
            return;
        }
        int keep = lua_toboolean(L, -1);
        lua_pop(L, 1);
        if (!keep) {
            lua_pop(L, 1);
            lua_pushnil(L);
            order_settle(p, seq, OUT_FILTERED, pos);
            return;
        }
    }
    if (!p->model) {
        finish_record(p, seq, pos);
        return;
    }
    struct slot *s = &p->ring[seq % p->window];
    s->pos = *pos;
    s->state = SLOT_BUSY;
    s->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    p->head++;
    struct rn_err err;
    if (model_submit_at(p->model, s->ref, seq, pos, &err)) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref);
        deadletter_push(p, "model", err.msg, pos, 0, -1, NULL);
        lua_remove(L, -2);
        luaL_unref(L, LUA_REGISTRYINDEX, s->ref);
        s->ref = LUA_NOREF;
        order_settle(p, seq, OUT_DEAD, pos);
    }
}

static void on_model_done(void *ctx, uint64_t tag, int record_ref, int ok, const char *reason, const char *model_text)
{
    struct pipeline *p = ctx;
    lua_State *L = p->L;
    struct slot *s = &p->ring[tag % p->window];
    lua_rawgeti(L, LUA_REGISTRYINDEX, record_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, record_ref);
    s->ref = LUA_NOREF;
    struct source_pos pos = s->pos;
    if (ok) {
        if (p->eval) eval_observe(p->eval, L, -1);
        finish_record(p, tag, &pos);
    } else {
        deadletter_push(p, "model", reason ? reason : "model call failed", &pos, 0, -1, model_text);
        lua_remove(L, -2);
        order_settle(p, tag, OUT_DEAD, &pos);
    }
}

/* ---- opening ---- */

static void *open_decl(struct pipeline *p, int decl, const char *kind, const void **ops_out, char **label_out,
                       struct rn_err *err)
{
    lua_State *L = p->L;
    decl = lua_absindex(L, decl);
    const char *type = luajob_decl_type(L, decl); /* a declaration of this kind: checked by job{} */
    const char *where = luajob_decl_where(L, decl);
    char label[600];
    snprintf(label, sizeof label, "%s.%s (%s)", kind, type ? type : "?", where);
    const struct source_ops *src_ops = NULL;
    const struct sink_ops *sink_ops = NULL;
    if (strcmp(kind, "source") == 0) src_ops = type ? plugin_source(type) : NULL;
    else sink_ops = type ? plugin_sink(type) : NULL;
    /* runnel test: the stand-ins open with the declared options (engine/jobtest.c) */
    if (src_ops && p->env->test_source) src_ops = p->env->test_source;
    if (sink_ops && p->env->test_sink) sink_ops = p->env->test_sink(p->env->answer_ctx, sink_ops);
    if (!src_ops && !sink_ops) {
        rn_fail(err, "%s: there is no %s.%s", where, kind, type ? type : "(no type)");
        return NULL;
    }
    if (src_ops && src_ops->version != SOURCE_INTERFACE_VERSION) {
        rn_fail(err, "%s: source.%s speaks source interface version %d, this runner version %d", where, type,
                src_ops->version, SOURCE_INTERFACE_VERSION);
        return NULL;
    }
    if (sink_ops && sink_ops->version != SINK_INTERFACE_VERSION) {
        rn_fail(err, "%s: sink.%s speaks sink interface version %d, this runner version %d", where, type,
                sink_ops->version, SINK_INTERFACE_VERSION);
        return NULL;
    }
    int opts = luajob_decl_options(L, decl);
    void *self = NULL;
    if (src_ops) {
        *ops_out = src_ops;
        self = src_ops->open(p->env, opts, err);
    } else {
        *ops_out = sink_ops;
        self = sink_ops->open(p->env, opts, err);
    }
    lua_pop(L, 1);
    if (!self) {
        if (strncmp(err->msg, where, strlen(where)) != 0) rn_wrap(err, "%s: %s.%s", where, kind, type);
        return NULL;
    }
    *label_out = rn_strdup(label);
    return self;
}

/* The one way a sink_inst is made: s is filled afresh for the opened sink (ops, self), every
 * field named here or zero (up, nothing acknowledged, no metrics); it takes label (owned:
 * close_sink frees it). -1 and err when the sink breaks the interface. */
static int sink_inst_init(struct pipeline *p, struct sink_inst *s, const struct sink_ops *ops, void *self, char *label,
                          struct rn_err *err)
{
    char *stage = rn_malloc(strlen(ops->name) + 6);
    sprintf(stage, "sink.%s", ops->name);
    *s = (struct sink_inst){
        .ops = ops,
        .self = self,
        .label = label,
        .stage = stage,
        .async = (ops->capabilities & SINK_ASYNC_ACKS) != 0,
        .down_since_ms = -1, /* up: 0 would be down since 1970 */
    };
    if (s->async && !ops->poll) return rn_fail(err, "%s: acknowledges asynchronously but has no poll()", label);
    if (s->async) p->async_any = 1;
    return 0;
}

/* Open the sink declared at decl into s; index is its place in the job's sinks (-1: the
 * errors sink), for its metrics. */
static int open_sink(struct pipeline *p, int decl, struct sink_inst *s, int index, struct rn_err *err)
{
    const void *ops;
    char *label;
    void *self = open_decl(p, decl, "sink", &ops, &label, err);
    if (!self) return -1;
    if (sink_inst_init(p, s, ops, self, label, err)) return -1;
    if (index < 0) return 0;
    /* an asynchronous sink's rejection comes later: the record is kept as JSON till then */
    if (s->ops->capabilities & SINK_WANTS_JSON || s->async) p->needs_json = 1;
    const char *where = strchr(s->label, '(');
    char declared[600];
    snprintf(declared, sizeof declared, "%s", where ? where + 1 : "");
    if (*declared) declared[strlen(declared) - 1] = '\0';
    struct metric_label labels[] = {{"sink", s->ops->name}, {"declared", declared}};
    s->written = metrics_counter(p->metrics, "runnel_sink_records_written_total", "Records the sink acknowledged.", labels,
                                 2, err);
    s->rejected = metrics_counter(p->metrics, "runnel_sink_records_rejected_total",
                                  "Records the sink rejected (each one dead-lettered).", labels, 2, err);
    s->outage_seconds = metrics_gauge(p->metrics, "runnel_sink_outage_seconds",
                                      "Seconds the sink's service has been down in the current outage (0: up).", labels, 2, err);
    if (!s->written || !s->rejected || !s->outage_seconds) return rn_wrap(err, "%s", s->label);
    return 0;
}

/* The pipeline's own series (the sinks add theirs as they open). */
static int open_metrics(struct pipeline *p, struct rn_err *err)
{
    struct metric_label job = {"job", p->env->job_name};
    p->metrics = metrics_new(&job, 1, err);
    if (!p->metrics) return -1;
    struct metrics *m = p->metrics;
    static const double seconds[] = {0.001, 0.005, 0.025, 0.1, 0.5, 2.5, 10};
    p->m.read = metrics_counter(m, "runnel_records_read_total", "Records read from the source, bad input included.", NULL, 0, err);
    /* how each record read ended, one family: written + filtered + dead_lettered = read (batch) */
    static const char help[] = "Records by how they ended: written (every sink acknowledged), filtered (filter or map "
                               "dropped them), dead_lettered (a stage failed them, or a sink rejected them).";
    struct metric_label outcome = {"outcome", "written"};
    p->m.written = metrics_counter(m, "runnel_records_total", help, &outcome, 1, err);
    outcome.value = "filtered";
    p->m.filtered = metrics_counter(m, "runnel_records_total", help, &outcome, 1, err);
    outcome.value = "dead_lettered";
    p->m.dead = metrics_counter(m, "runnel_records_total", help, &outcome, 1, err);
    p->m.script_errors = metrics_counter(m, "runnel_script_errors_total", "Errors raised by filter or map.", NULL, 0, err);
    p->m.checkpoints = metrics_counter(m, "runnel_checkpoints_total", "Checkpoints taken (sinks flushed, source committed).",
                                       NULL, 0, err);
    p->m.checkpoint_seconds = metrics_histogram(m, "runnel_checkpoint_duration_seconds", "How long checkpoints took.", NULL, 0,
                                                seconds, sizeof seconds / sizeof seconds[0], err);
    p->m.committed = metrics_gauge(m, "runnel_records_committed", "Written records durable at the last checkpoint.", NULL, 0,
                                   err);
    if (!p->m.read || !p->m.filtered || !p->m.written || !p->m.dead || !p->m.script_errors || !p->m.checkpoints ||
        !p->m.checkpoint_seconds || !p->m.committed)
        return -1;
    return 0;
}

static int ref_field(lua_State *L, int tbl, const char *name)
{
    lua_getfield(L, tbl, name);
    if (lua_isnil(L, -1)) { lua_pop(L, 1); return LUA_NOREF; }
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

static int pipeline_open(struct pipeline *p, int job, struct rn_err *err)
{
    lua_State *L = p->L;
    int opts = luajob_decl_options(L, job);
    const char *where = luajob_decl_where(L, job);
    p->filter_ref = ref_field(L, opts, "filter");
    p->map_ref = ref_field(L, opts, "map");
    p->max_errors = opt_integer(L, opts, "max_errors", 100);
    p->window = (uint64_t)opt_integer(L, opts, "window", 0); /* 0: not declared (the ring is made once the model is open) */
    fdlimit_spare_take(&p->spare_fd); /* before the plugins, so it is a low number */
    p->checkpoint_ms = opt_duration_ms(L, opts, "checkpoint_interval", 5000);
    int64_t job_outage_ms = -1; /* the job's limits.outage: the sinks' own, apart from the model's */
    if (opt_push(L, opts, "limits")) {
        job_outage_ms = opt_duration_ms(L, lua_gettop(L), "outage", -1);
        lua_pop(L, 1);
    }
    p->outage_ms = job_outage_ms > 0 ? job_outage_ms : MODEL_OUTAGE_DEFAULT_MS;
    p->env->outage_ms = p->outage_ms;

    /* Is there a checkpoint to resume from? Sinks must know before they open. */
    json_t *state = NULL;
    if (checkpoint_load(p, &state, err)) {
        lua_pop(L, 1);
        return -1;
    }

    lua_getfield(L, opts, "source");
    const void *src_ops;
    p->src = open_decl(p, -1, "source", &src_ops, &p->src_label, err);
    lua_pop(L, 1);
    if (!p->src) goto fail;
    p->src_ops = src_ops;
    p->has_checkpoint = p->src_ops->save && p->src_ops->restore;

    lua_getfield(L, opts, "sinks"); /* a list of sink declarations: checked */
    int sinks = lua_gettop(L);
    size_t count = (size_t)luaL_len(L, sinks);
    if (count == 0) { lua_pop(L, 1); rn_fail(err, "%s: job: sinks is empty", where); goto fail; }
    if (count > MAX_SINKS) { lua_pop(L, 1); rn_fail(err, "%s: job: at most %d sinks", where, MAX_SINKS); goto fail; }
    for (size_t i = 0; i < count; i++) {
        lua_geti(L, sinks, (lua_Integer)i + 1);
        int rc = open_sink(p, -1, &p->sinks[i], (int)i, err);
        lua_pop(L, 1);
        if (p->sinks[i].self) p->nsinks++;
        if (rc) { lua_pop(L, 1); goto fail; }
    }
    lua_pop(L, 1);
    lua_getfield(L, opts, "errors");
    if (!lua_isnil(L, -1) && open_sink(p, -1, &p->errors, -1, err)) { lua_pop(L, 1); goto fail; }
    if (lua_isnil(L, -1) && p->env->test_sink) { /* runnel test sees the dead letters stderr would get */
        const struct sink_ops *ops = p->env->test_sink(p->env->answer_ctx, NULL);
        if (!ops) rn_fail(err, "%s: runnel test: no stand-in left for the errors sink", where);
        void *self = ops ? ops->open(p->env, 0, err) : NULL;
        if (!self) { lua_pop(L, 1); goto fail; }
        if (sink_inst_init(p, &p->errors, ops, self, rn_strdup("errors"), err)) { lua_pop(L, 1); goto fail; }
    }
    lua_pop(L, 1);

    lua_getfield(L, opts, "predict");
    if (!lua_isnil(L, -1)) {
        p->env->descriptors_planned = fdplan_job(L, job);
        p->model = model_open(p->env, lua_gettop(L), err);
        if (!p->model) { lua_pop(L, 1); goto fail; }
    }
    lua_pop(L, 1);
    /* records waiting for a batch wait in the ring: by default it holds a batch's worth */
    int64_t batch = p->model ? model_batch_window(p->model) : 0;
    if (job_outage_ms <= 0 && p->model) p->outage_ms = model_outage_ms(p->model); /* no limits of its own: the model's */
    p->env->outage_ms = p->outage_ms;
    if (!p->window) p->window = batch > 4096 ? (uint64_t)batch : 4096;
    if (p->window < 1 || p->window > (1u << 24)) {
        rn_fail(err, "%s: job: window must be between 1 and 16777216", where);
        goto fail;
    }
    p->ring = rn_calloc(p->window, sizeof *p->ring);
    for (uint64_t i = 0; i < p->window; i++) p->ring[i].ref = LUA_NOREF;
    if (p->async_any) p->pending = rn_calloc(p->window, sizeof *p->pending);
    lua_getfield(L, opts, "evaluate");
    if (!lua_isnil(L, -1)) {
        p->eval = eval_new(L, lua_gettop(L), where, err);
        if (!p->eval) { lua_pop(L, 1); goto fail; }
    }
    lua_pop(L, 1);
    if (state) {
        if (!p->has_checkpoint && !batch) { /* the model's batches alone need a file (a Kafka source keeps its offsets) */
            rn_fail(err, "--resume: source.%s keeps no checkpoints", p->src_ops->name);
            goto fail;
        }
        if (checkpoint_restore(p, state, err)) goto fail;
        log_info("resuming %s after line %lld", p->env->job_name, (long long)p->resumed_line);
    }
    json_decref(state);
    lua_pop(L, 1); /* opts */
    return 0;
fail:
    json_decref(state);
    lua_pop(L, 1);
    return -1;
}

static void close_sink(struct sink_inst *s)
{
    if (s->ops) s->ops->close(s->self);
    free(s->label);
    free(s->stage);
}

static void pipeline_close(struct pipeline *p)
{
    lua_State *L = p->L;
    if (p->model) model_close(p->model);
    order_free(p);
    if (p->src) p->src_ops->close(p->src);
    for (size_t i = 0; i < p->nsinks; i++) close_sink(&p->sinks[i]);
    close_sink(&p->errors);
    free(p->src_label);
    eval_free(p->eval);
    luaL_unref(L, LUA_REGISTRYINDEX, p->filter_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, p->map_ref);
    record_free(&p->record);
    record_free(&p->letter);
    buf_free(&p->scratch);
    buf_free(&p->progress_line);
    exporter_close(p->exporter);
    buf_free(&p->exposition);
    metrics_free(p->metrics);
    fdlimit_spare_release(&p->spare_fd);
    if (p->loop) {
        loop_timer_cancel(p->loop, &p->checkpoint_timer);
        loop_timer_cancel(p->loop, &p->progress_timer);
        loop_timer_cancel(p->loop, &p->stop_timer);
        loop_timer_cancel(p->loop, &p->metrics_timer);
    }
}

/* ---- the loop ---- */

/* env->drain: finish every record in flight, flush the sinks and commit (a Kafka source
 * calls it before it gives up partitions in a rebalance). */
static int pipeline_drain(struct job_env *env, struct rn_err *err)
{
    struct pipeline *p = env->pipeline;
    int64_t deadline = rn_now_ms() + DRAIN_DEADLINE_MS;
    while (p->model && p->tail < p->head && !p->fatal) {
        if (model_poll(p->model, 0, on_model_done, p, err)) return -1;
        if (order_poll_sinks(p, err)) return -1;
        int64_t left = deadline - rn_now_ms();
        if (p->tail == p->head || p->fatal || left <= 0) break;
        if (loop_run_once(p->loop, (int)left, err) < 0) return -1;
    }
    if (p->fatal) { *err = p->fatal_err; return -1; }
    if (p->tail < p->head) return rn_fail(err, "%llu records still in flight after %d ms",
                                          (unsigned long long)(p->head - p->tail), DRAIN_DEADLINE_MS);
    return checkpoint_final(p, err);
}

/* The job stopped on an outage (the model's endpoint or a sink's service): say up to where the
 * last checkpoint committed, so the user knows what a rerun (or --resume) goes on from. */
static void say_committed(struct pipeline *p, struct rn_err *err)
{
    size_t len = strlen(err->msg);
    char *at = err->msg + len;
    size_t left = sizeof err->msg - len;
    const struct source_pos *pos = &p->committed_pos;
    struct buf parts;
    buf_init(&parts);
    int named = p->src_ops->uncommitted ? p->src_ops->uncommitted(p->src, &parts, UNCOMMITTED_NAMED_MAX) : 0;
    if (named > 0) snprintf(at, left, "; nothing after %s was committed", parts.data);
    else if (!p->committed_any) snprintf(at, left, "; nothing of %s was committed", p->src_label);
    else if (pos->partition >= 0)
        snprintf(at, left, "; nothing after partition %d offset %lld was committed", (int)pos->partition,
                 (long long)pos->offset);
    else if (pos->line > 0)
        snprintf(at, left, "; nothing after line %lld of %s was committed", (long long)pos->line, p->src_label);
    else snprintf(at, left, "; nothing after record %llu of %s was committed", (unsigned long long)p->done, p->src_label);
    buf_free(&parts);
}

/* Whether the source may be asked for more now: the window has room, the model too. */
static int can_read(struct pipeline *p)
{
    return !p->source_done && !p->stopped && p->head - p->done < p->window && (!p->model || model_room(p->model) > 0) &&
           !order_sink_down(p);
}

/* The turn that began at head, tail and done moved records. */
static int turn_moved(const struct pipeline *p, uint64_t head, uint64_t tail, uint64_t done)
{
    return p->head != head || p->tail != tail || p->done != done;
}

/* Each turn reads what the window allows, lets the model and the sinks do what is ready, then
 * sleeps in the job's loop unless the turn changed something or more can be read at once: the
 * loop wakes it when a socket, queue, thread or timer (checkpoint, progress line, the stop's
 * deadline, the model's retries and curl's timeouts) has something. */
static int run_loop(struct pipeline *p, struct rn_err *err)
{
    lua_State *L = p->L;
    int64_t next_checkpoint = rn_now_ms() + p->checkpoint_ms;
    int64_t stop_deadline = 0;
    for (;;) {
        if (*p->env->stop_requested && !p->stopped) {
            p->stopped = 1;
            stop_deadline = rn_now_ms() + DRAIN_DEADLINE_MS;
            loop_timer_at(p->loop, &p->stop_timer, stop_deadline);
        }
        uint64_t head = p->head, tail = p->tail, done = p->done;
        int idle = 0;
        if (!p->source_done && !p->stopped) {
            for (int i = 0; i < 512 && !p->fatal; i++) {
                if (p->head - p->done >= p->window) break; /* in flight, or waiting for sinks' acks */
                if (p->model && model_room(p->model) <= 0) break;
                if (order_sink_down(p)) break; /* an outage: hold the source back */
                if (p->opts->limit > 0 && (int64_t)metric_u64(p->m.read) >= p->opts->limit) { p->source_done = 1; break; }
                struct source_pos pos = {-1, 0, -1, 0};
                enum source_status st = p->src_ops->next(p->src, &pos, err);
                if (st == SRC_RECORD) {
                    process_record(p, &pos);
                } else if (st == SRC_BAD) {
                    metric_inc(p->m.read);
                    deadletter_push(p, "source", err->msg, &pos, -1, 0, NULL);
                    lua_remove(L, -2);
                    order_settle(p, p->head, OUT_DEAD, &pos);
                } else if (st == SRC_IDLE) {
                    idle = 1;
                    break;
                } else if (st == SRC_END) {
                    p->source_done = 1;
                    break;
                } else {
                    return rn_wrap(err, "%s", p->src_label);
                }
            }
        }
        if (p->fatal) { *err = p->fatal_err; return -1; }
        if (p->model && model_wants_poll(p->model)) {
            if (model_poll(p->model, 0, on_model_done, p, err)) {
                p->model_failed = 1;
                return -1;
            }
            if (model_save_due(p->model) && checkpoint_take(p, err)) return -1; /* a batch was made: keep its id now */
        }
        if (p->fatal) { *err = p->fatal_err; return -1; }
        if (order_poll_sinks(p, err)) return -1;
        /* the last checkpoint waits for the acks; not while a sink is down (its flush would wait on the outage) */
        if ((p->source_done || p->stopped) && p->tail == p->head && (p->stopped || !order_sink_down(p))) return 0;
        /* records that wait for batches alone need not be waited for: the checkpoint keeps the batches */
        if (p->stopped && p->model && model_batch_waiting(p->model) && model_in_flight(p->model) == model_batch_waiting(p->model))
            return 0;
        int64_t now_ms = rn_now_ms();
        if (p->stopped && now_ms > stop_deadline)
            return rn_fail(err, "stopped with %llu records still in flight after %d ms",
                           (unsigned long long)(p->head - p->tail), DRAIN_DEADLINE_MS);
        if (now_ms >= next_checkpoint && order_sink_down(p)) {
            next_checkpoint = now_ms + CHECKPOINT_RETRY_MS; /* a flush would wait on the outage */
        } else if (now_ms >= next_checkpoint) {
            int rc = checkpoint_spared(p, err);
            if (rc < 0 && p->flush_down && !p->fatal) rc = 1; /* a sink went down in its flush: wait, then again */
            p->flush_down = 0;
            if (rc < 0) return -1;
            now_ms = rn_now_ms();
            next_checkpoint = now_ms + (rc ? CHECKPOINT_RETRY_MS : p->checkpoint_ms);
        }
        /* checkpoint_interval 0: a checkpoint at every turn, and no timer to wake an idle job for it */
        if (p->checkpoint_ms > 0) loop_timer_at(p->loop, &p->checkpoint_timer, next_checkpoint);
        if (exporter_due(p->exporter, now_ms)) {
            summary_publish_metrics(p);
            loop_timer_at(p->loop, &p->metrics_timer, now_ms + EXPORTER_INTERVAL_MS); /* an idle job publishes too */
        }
        if (p->opts->progress) {
            double now = rn_now();
            if (now - p->last_progress >= PROGRESS_INTERVAL_S) {
                summary_progress(p, now);
                p->last_progress = now;
            }
            loop_timer_at(p->loop, &p->progress_timer, now_ms + (int64_t)((p->last_progress + PROGRESS_INTERVAL_S - now) * 1000) + 1);
        }
        if (turn_moved(p, head, tail, done) || (!idle && can_read(p))) continue;
        if (loop_run_once(p->loop, -1, err) < 0) return -1;
    }
}

int pipeline_run(struct job_env *env, const struct run_options *opts, struct rn_err *err)
{
    struct pipeline pl;
    struct pipeline *p = &pl;
    memset(p, 0, sizeof *p);
    loop_timer_init(&p->checkpoint_timer, NULL, NULL);
    loop_timer_init(&p->progress_timer, NULL, NULL);
    loop_timer_init(&p->stop_timer, NULL, NULL);
    loop_timer_init(&p->metrics_timer, NULL, NULL);
    p->env = env;
    p->L = env->L;
    p->opts = opts;
    p->filter_ref = p->map_ref = LUA_NOREF;
    p->spare_fd = -1;
    buf_init(&p->kept);
    record_init(&p->record, env->L, env->fieldorder_ref);
    record_init(&p->letter, env->L, env->fieldorder_ref);
    buf_init(&p->scratch);
    buf_init(&p->progress_line);
    buf_init(&p->exposition);
    env->pipeline = p;
    env->drain = pipeline_drain;
    int rc = -1;
    if (rn_mkdir_p(env->state_dir, err) || open_metrics(p, err) || !(p->loop = loop_new(err))) goto done;
    env->metrics = p->metrics;
    env->loop = p->loop;
    if (env->stop_fd > 0 && loop_watch(p->loop, env->stop_fd, LOOP_READ, loop_take_eventfd, NULL, err))
        goto done; /* a stop wakes the loop; the turn reads *env->stop_requested */
    if (!(p->exporter = exporter_open(opts->metrics_fd > 0 ? opts->metrics_fd : -1, opts->metrics_listen, err)) && err->msg[0])
        goto done;
    if (exporter_url(p->exporter)) log_info("metrics on %s", exporter_url(p->exporter));
    snprintf(p->checkpoint_path, sizeof p->checkpoint_path, "%s/%s.checkpoint.json", env->state_dir, env->job_name);
    int job = lua_gettop(p->L);
    p->started = rn_now();
    rc = pipeline_open(p, job, err);
    if (rc == 0) {
        p->started = rn_now();
        rc = run_loop(p, err);
        struct rn_err cerr;
        int final = -1;
        /* a sink that goes down in the last flush: the loop waits the outage out, then again */
        while (rc == 0 && (final = checkpoint_final(p, &cerr)) && p->flush_down && !p->fatal && !p->stopped) {
            p->flush_down = 0;
            rc = run_loop(p, err);
        }
        if (rc == 0 && final) {
            *err = cerr;
            rc = -1;
        } else if (rc && p->model_failed && !p->fatal && checkpoint_take(p, &cerr)) {
            /* the model stopped the job (a wrong key, no quota): the sinks are sound, so what was
             * written is committed; should that fail too, the last checkpoint stands */
            log_error("%s", cerr.msg);
        } else if (rc && p->model_failed && !p->fatal && model_outage(p->model)) {
            say_committed(p, err);
        } else if (rc && p->sink_outage) {
            say_committed(p, err); /* the last checkpoint is what was committed */
        }
        double elapsed = rn_now() - p->started;
        const char *status = rc ? "failed" : p->stopped ? "stopped" : "finished";
        if (rc == 0 && !p->stopped && !env->streaming && opts->limit == 0)
            unlink(p->checkpoint_path); /* complete: nothing to resume */
        if (!opts->quiet) summary_print(p, status, elapsed);
        summary_publish_metrics(p); /* the run's final figures */
        struct rn_err merr;
        if (summary_write_metrics(p, &merr) && rc == 0) {
            *err = merr;
            rc = -1;
        }
        if (opts->summary_json) {
            struct rn_err jerr;
            if (summary_write_json(p, status, elapsed, rc ? err->msg : NULL, &jerr) && rc == 0) {
                *err = jerr;
                rc = -1;
            }
        }
        if (rc == 0 && p->stopped && !env->streaming) {
            rn_fail(err, "interrupted; run again with --resume to continue");
            rc = -2;
        }
    }
done:
    pipeline_close(p);
    env->pipeline = NULL;
    env->metrics = NULL;
    env->loop = NULL;
    loop_free(p->loop);
    return rc;
}
