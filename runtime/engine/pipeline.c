/* pipeline.c: the job's event loop (see pipeline.h).
 *
 * Every record read gets a sequence number and ends in exactly one of three ways: written
 * to every sink, filtered (by filter or by map returning nil), or dead-lettered with a
 * reason. So at the end of a batch run, read = written + filtered + dead-lettered. Records
 * waiting for the model sit in a ring of `window` slots; finished ones leave the ring in
 * sequence order, which keeps outputs in source order and makes the position to commit the
 * position of the last record that left. */
#include "engine/pipeline.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/evaluate.h"
#include "core/json.h"
#include "lua/job.h"
#include "models/model.h"

#define MAX_SINKS 16
#define DRAIN_DEADLINE_MS 30000

struct sink_inst {
    const struct sink_ops *ops;
    void *self;
    char *label;  /* "sink.jsonl (jobs/x.lua:20)" for messages */
};

enum slot_state { SLOT_FREE, SLOT_BUSY, SLOT_READY };
enum outcome { OUT_WRITE, OUT_FILTERED, OUT_DEAD };

struct slot {
    uint8_t state;
    uint8_t outcome;
    int ref;                /* registry ref: the record (BUSY), the output or dead letter (READY) */
    struct source_pos pos;
};

struct counts {
    uint64_t read, filtered, written, dead, script_errors;
    uint64_t committed;   /* written records known durable: flushed at the last checkpoint */
};

struct pipeline {
    struct job_env *env;
    lua_State *L;
    const struct run_options *opts;
    const struct source_ops *src_ops;
    void *src;
    char *src_label;
    struct sink_inst sinks[MAX_SINKS];
    size_t nsinks;
    struct sink_inst errors;      /* ops == NULL: dead letters go to stderr */
    struct model *model;
    struct evaluation *eval;
    int filter_ref, map_ref;
    int64_t max_errors;
    int64_t checkpoint_ms;

    struct slot *ring;
    uint64_t window, head, tail;  /* sequences [tail, head) are in the ring */
    struct counts n;
    struct buf json;              /* the record being written, encoded once for all sinks */
    struct buf scratch;

    int fatal;
    struct rn_err fatal_err;
    int source_done;
    int stopped;                  /* stopped by a signal */
    char checkpoint_path[4096];
    int has_checkpoint;           /* the source supports save/restore */
    int64_t resumed_line;
    double started;
    double last_progress;
    int progress_shown;
};

static void set_fatal(struct pipeline *p, const struct rn_err *err)
{
    if (p->fatal) return;
    p->fatal = 1;
    p->fatal_err = *err;
}

/* ---- dead letters ---- */

static void iso_time(char *out, size_t n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (long)(ts.tv_nsec / 1000000) % 1000);
}

/* Push a dead-letter table: why (stage, reason), where from (position, and the fields of the
 * source's description at info_idx), what (the record at record_idx, the model's answer). */
static void push_dead_letter(struct pipeline *p, const char *stage, const char *reason, const struct source_pos *pos,
                             int info_idx, int record_idx, const char *model_text)
{
    lua_State *L = p->L;
    if (info_idx) info_idx = lua_absindex(L, info_idx);
    if (record_idx) record_idx = lua_absindex(L, record_idx);
    lua_createtable(L, 0, 10);
    int dl = lua_gettop(L);
    if (info_idx && lua_type(L, info_idx) == LUA_TTABLE) {
        lua_pushnil(L);
        while (lua_next(L, info_idx)) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, dl);
        }
    }
    lua_pushstring(L, p->env->job_name);
    lua_setfield(L, dl, "job");
    lua_pushstring(L, stage);
    lua_setfield(L, dl, "stage");
    struct buf visible; /* a reason can quote bad input: kept valid UTF-8 so the letter encodes */
    buf_init(&visible);
    buf_put_visible(&visible, reason, strlen(reason), SIZE_MAX);
    lua_pushlstring(L, visible.data ? visible.data : "", visible.len);
    lua_setfield(L, dl, "reason");
    if (model_text) {
        buf_clear(&visible);
        buf_put_visible(&visible, model_text, strlen(model_text), SIZE_MAX);
        lua_pushlstring(L, visible.data ? visible.data : "", visible.len);
        lua_setfield(L, dl, "model_text");
    }
    buf_free(&visible);
    if (pos->partition >= 0) {
        lua_pushinteger(L, pos->partition);
        lua_setfield(L, dl, "partition");
        lua_pushinteger(L, pos->offset);
        lua_setfield(L, dl, "offset");
    } else if (pos->line > 0) {
        lua_pushinteger(L, pos->line);
        lua_setfield(L, dl, "line");
    }
    if (record_idx) {
        /* a copy that is sure to encode: the record as JSON text when it cannot be a value */
        buf_clear(&p->scratch);
        struct rn_err err;
        if (json_encode(L, record_idx, p->env->fieldorder_ref, &p->scratch, &err) == 0) {
            lua_pushvalue(L, record_idx);
        } else {
            luaL_tolstring(L, record_idx, NULL);
        }
        lua_setfield(L, dl, "record");
    }
    char now[64];
    iso_time(now, sizeof now);
    lua_pushstring(L, now);
    lua_setfield(L, dl, "time");
}

/* ---- writing finished records, in order ---- */

/* Write the output or dead letter at the top of the stack (popped) and advance the source. */
static void emit(struct pipeline *p, enum outcome outcome, const struct source_pos *pos)
{
    lua_State *L = p->L;
    struct rn_err err;
    int top = lua_gettop(L);
    if (outcome == OUT_WRITE) {
        buf_clear(&p->json);
        if (json_encode(L, top, p->env->fieldorder_ref, &p->json, &err)) {
            /* the map produced something no sink can hold: that record is dead, not the job */
            push_dead_letter(p, "map", err.msg, pos, 0, 0, NULL);
            lua_replace(L, top);
            outcome = OUT_DEAD;
        } else {
            for (size_t i = 0; i < p->nsinks; i++) {
                struct sink_inst *s = &p->sinks[i];
                if (s->ops->write(s->self, top, p->json.data, p->json.len, &err)) {
                    rn_wrap(&err, "%s", s->label);
                    set_fatal(p, &err);
                    lua_settop(L, top - 1);
                    return;
                }
            }
            p->n.written++;
        }
    }
    if (outcome == OUT_DEAD) {
        buf_clear(&p->json);
        if (json_encode(L, top, p->env->fieldorder_ref, &p->json, &err)) {
            set_fatal(p, &err);
            lua_settop(L, top - 1);
            return;
        }
        if (p->errors.ops) {
            if (p->errors.ops->write(p->errors.self, top, p->json.data, p->json.len, &err)) {
                rn_wrap(&err, "%s", p->errors.label);
                set_fatal(p, &err);
                lua_settop(L, top - 1);
                return;
            }
        } else {
            if (p->progress_shown) fputs("\r\033[K", stderr);
            fprintf(stderr, "runnel: dead letter: %s\n", p->json.data);
        }
        p->n.dead++;
    }
    if (outcome == OUT_FILTERED) p->n.filtered++;
    lua_settop(L, top - 1);
    if (p->src_ops->advance) p->src_ops->advance(p->src, pos);
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
        p->tail++;
        emit(p, outcome, &pos);
    }
}

/* A record finished with `outcome`; its output or dead letter is at the top of the stack
 * (nil for filtered). Written now when nothing older is pending, else parked in its slot. */
static void settle(struct pipeline *p, uint64_t seq, enum outcome outcome, const struct source_pos *pos)
{
    if (p->tail == p->head) { /* fast path: nothing in flight, no slot needed */
        emit(p, outcome, pos);
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

/* ---- the stages ---- */

static int script_error(struct pipeline *p, const struct rn_err *err)
{
    p->n.script_errors++;
    if (luajob_fatal(p->L)) { /* the sandbox cannot go on (memory_limit) */
        struct rn_err e;
        rn_fail(&e, "%s", luajob_fatal(p->L));
        set_fatal(p, &e);
        return -1;
    }
    if (p->max_errors > 0 && (int64_t)p->n.script_errors >= p->max_errors) {
        struct rn_err e;
        rn_fail(&e, "stopping after %llu script errors (job max_errors = %lld); the last: %s",
                (unsigned long long)p->n.script_errors, (long long)p->max_errors, err->msg);
        set_fatal(p, &e);
        return -1;
    }
    return 0;
}

/* Run map (if any) on the record at the top of the stack and settle the outcome. */
static void finish_record(struct pipeline *p, uint64_t seq, const struct source_pos *pos)
{
    lua_State *L = p->L;
    if (p->map_ref == LUA_NOREF) {
        settle(p, seq, OUT_WRITE, pos);
        return;
    }
    int rec = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->map_ref);
    lua_pushvalue(L, rec);
    struct rn_err err;
    if (luajob_call(L, 1, 1, &err)) {
        push_dead_letter(p, "map", err.msg, pos, 0, rec, NULL);
        lua_remove(L, rec);
        script_error(p, &err);
        settle(p, seq, OUT_DEAD, pos);
        return;
    }
    int t = lua_type(L, -1);
    if (t == LUA_TNIL || (t == LUA_TBOOLEAN && !lua_toboolean(L, -1))) {
        lua_settop(L, rec - 1);
        lua_pushnil(L);
        settle(p, seq, OUT_FILTERED, pos);
        return;
    }
    if (t != LUA_TTABLE) {
        rn_fail(&err, "map must return a table or nil, returned a %s", luaL_typename(L, -1));
        lua_pop(L, 1);
        push_dead_letter(p, "map", err.msg, pos, 0, rec, NULL);
        lua_remove(L, rec);
        script_error(p, &err);
        settle(p, seq, OUT_DEAD, pos);
        return;
    }
    lua_remove(L, rec);
    settle(p, seq, OUT_WRITE, pos);
}

/* A new record from the source is at the top of the stack. */
static void process_record(struct pipeline *p, const struct source_pos *pos)
{
    lua_State *L = p->L;
    uint64_t seq = p->head;
    p->n.read++;
    int rec = lua_gettop(L);
    if (p->filter_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, p->filter_ref);
        lua_pushvalue(L, rec);
        struct rn_err err;
        if (luajob_call(L, 1, 1, &err)) {
            push_dead_letter(p, "filter", err.msg, pos, 0, rec, NULL);
            lua_remove(L, rec);
            script_error(p, &err);
            settle(p, seq, OUT_DEAD, pos);
            return;
        }
        int keep = lua_toboolean(L, -1);
        lua_pop(L, 1);
        if (!keep) {
            lua_pop(L, 1);
            lua_pushnil(L);
            settle(p, seq, OUT_FILTERED, pos);
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
    if (model_submit(p->model, s->ref, seq, &err)) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref);
        push_dead_letter(p, "model", err.msg, pos, 0, -1, NULL);
        lua_remove(L, -2);
        luaL_unref(L, LUA_REGISTRYINDEX, s->ref);
        s->ref = LUA_NOREF;
        settle(p, seq, OUT_DEAD, pos);
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
        push_dead_letter(p, "model", reason ? reason : "model call failed", &pos, 0, -1, model_text);
        lua_remove(L, -2);
        settle(p, tag, OUT_DEAD, &pos);
    }
}

/* ---- checkpoints ---- */

static int flush_sinks(struct pipeline *p, struct rn_err *err)
{
    for (size_t i = 0; i < p->nsinks; i++)
        if (p->sinks[i].ops->flush && p->sinks[i].ops->flush(p->sinks[i].self, err))
            return rn_wrap(err, "%s", p->sinks[i].label);
    if (p->errors.ops && p->errors.ops->flush && p->errors.ops->flush(p->errors.self, err))
        return rn_wrap(err, "%s", p->errors.label);
    return 0;
}

/* Flush every sink, then commit the source position and write the checkpoint file. */
static int checkpoint(struct pipeline *p, struct rn_err *err)
{
    if (flush_sinks(p, err)) return -1;
    p->n.committed = p->n.written;
    if (p->src_ops->commit && p->src_ops->commit(p->src, err)) return rn_wrap(err, "%s", p->src_label);
    if (!p->has_checkpoint) return 0;
    json_t *state = json_object(), *src = json_object(), *sinks = json_array();
    json_object_set_new(state, "version", json_integer(1));
    json_object_set_new(state, "job", json_string(p->env->job_name));
    int rc = p->src_ops->save(p->src, src, err);
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

static int restore_checkpoint(struct pipeline *p, json_t *state, struct rn_err *err)
{
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

/* ---- opening ---- */

static void *open_decl(struct pipeline *p, int decl, const char *kind, const void **ops_out, char **label_out,
                       struct rn_err *err)
{
    lua_State *L = p->L;
    decl = lua_absindex(L, decl);
    const char *type = luajob_decl_type(L, decl); /* a declaration of this kind: checked by job{} */
    const char *where = luajob_decl_where(L, decl);
    char label[600];
    snprintf(label, sizeof label, "%s.%s (%s)", kind, type, where);
    int opts = luajob_decl_options(L, decl);
    void *self = NULL;
    if (strcmp(kind, "source") == 0) {
        const struct source_ops *ops = plugin_source(type);
        *ops_out = ops;
        self = ops->open(p->env, opts, err);
    } else {
        const struct sink_ops *ops = plugin_sink(type);
        *ops_out = ops;
        self = ops->open(p->env, opts, err);
    }
    lua_pop(L, 1);
    if (!self) {
        if (strncmp(err->msg, where, strlen(where)) != 0) rn_wrap(err, "%s: %s.%s", where, kind, type);
        return NULL;
    }
    *label_out = rn_strdup(label);
    return self;
}

static int open_sink(struct pipeline *p, int decl, struct sink_inst *s, struct rn_err *err)
{
    const void *ops;
    s->self = open_decl(p, decl, "sink", &ops, &s->label, err);
    if (!s->self) return -1;
    s->ops = ops;
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
    p->window = (uint64_t)opt_integer(L, opts, "window", 4096);
    if (p->window < 1 || p->window > (1u << 24))
        return rn_fail(err, "%s: job: window must be between 1 and 16777216", where);
    p->checkpoint_ms = opt_duration_ms(L, opts, "checkpoint_interval", 5000);
    p->ring = rn_calloc(p->window, sizeof *p->ring);
    for (uint64_t i = 0; i < p->window; i++) p->ring[i].ref = LUA_NOREF;

    /* Is there a checkpoint to resume from? Sinks must know before they open. */
    json_t *state = NULL;
    int asked = p->env->resume;
    if (asked || p->env->streaming) { /* a streaming job always goes on from where it was */
        p->env->resume = 0;
        if (access(p->checkpoint_path, F_OK) == 0) {
            p->env->resume = 1;
            size_t len;
            char *text = rn_read_file(p->checkpoint_path, &len, err);
            if (!text) return -1;
            json_error_t jerr;
            state = json_loadb(text, len, 0, &jerr);
            free(text);
            if (!state) return rn_fail(err, "%s: corrupt checkpoint: %s", p->checkpoint_path, jerr.text);
        } else if (asked) {
            fprintf(stderr, "runnel: --resume: no checkpoint at %s; starting from the beginning\n", p->checkpoint_path);
        }
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
        int rc = open_sink(p, -1, &p->sinks[i], err);
        lua_pop(L, 1);
        if (rc) { lua_pop(L, 1); goto fail; }
        p->nsinks++;
    }
    lua_pop(L, 1);
    lua_getfield(L, opts, "errors");
    if (!lua_isnil(L, -1) && open_sink(p, -1, &p->errors, err)) { lua_pop(L, 1); goto fail; }
    lua_pop(L, 1);

    lua_getfield(L, opts, "predict");
    if (!lua_isnil(L, -1)) {
        p->model = model_open(p->env, lua_gettop(L), err);
        if (!p->model) { lua_pop(L, 1); goto fail; }
    }
    lua_pop(L, 1);
    lua_getfield(L, opts, "evaluate");
    if (!lua_isnil(L, -1)) {
        p->eval = eval_new(L, lua_gettop(L), where, err);
        if (!p->eval) { lua_pop(L, 1); goto fail; }
    }
    lua_pop(L, 1);
    if (state) {
        if (!p->has_checkpoint) { rn_fail(err, "--resume: source.%s keeps no checkpoints", p->src_ops->name); goto fail; }
        if (restore_checkpoint(p, state, err)) goto fail;
        if (!p->opts->quiet) fprintf(stderr, "runnel: resuming %s after line %lld\n", p->env->job_name, (long long)p->resumed_line);
    }
    json_decref(state);
    lua_pop(L, 1); /* opts */
    return 0;
fail:
    json_decref(state);
    lua_pop(L, 1);
    return -1;
}

static void pipeline_close(struct pipeline *p)
{
    lua_State *L = p->L;
    if (p->model) model_close(p->model);
    for (uint64_t i = 0; p->ring && i < p->window; i++)
        if (p->ring[i].ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, p->ring[i].ref);
    free(p->ring);
    if (p->src) p->src_ops->close(p->src);
    for (size_t i = 0; i < p->nsinks; i++) {
        p->sinks[i].ops->close(p->sinks[i].self);
        free(p->sinks[i].label);
    }
    if (p->errors.ops) {
        p->errors.ops->close(p->errors.self);
        free(p->errors.label);
    }
    free(p->src_label);
    eval_free(p->eval);
    luaL_unref(L, LUA_REGISTRYINDEX, p->filter_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, p->map_ref);
    buf_free(&p->json);
    buf_free(&p->scratch);
}

/* ---- progress and summary ---- */

static void fmt_count(char *out, size_t n, uint64_t v)
{
    char digits[32];
    int len = snprintf(digits, sizeof digits, "%llu", (unsigned long long)v);
    size_t o = 0;
    for (int i = 0; i < len && o + 2 < n; i++) {
        if (i && (len - i) % 3 == 0) out[o++] = ',';
        out[o++] = digits[i];
    }
    out[o] = '\0';
}

static void show_progress(struct pipeline *p, double now)
{
    double elapsed = now - p->started;
    double rate = elapsed > 0 ? (double)p->n.read / elapsed : 0;
    char read[32], written[32], dead[32];
    fmt_count(read, sizeof read, p->n.read);
    fmt_count(written, sizeof written, p->n.written);
    fmt_count(dead, sizeof dead, p->n.dead);
    fprintf(stderr, "\r\033[K%s: read %s  written %s  dead %s  %.0f rec/s", p->env->job_name, read, written, dead, rate);
    if (p->model) fprintf(stderr, "  in flight %zu", model_in_flight(p->model));
    double frac = p->src_ops->progress ? p->src_ops->progress(p->src) : -1;
    if (frac >= 0) {
        fprintf(stderr, "  %5.1f%%", frac * 100);
        if (frac > 0.001 && frac < 1) {
            double eta = elapsed * (1 - frac) / frac;
            fprintf(stderr, "  ETA %d:%02d", (int)eta / 60, (int)eta % 60);
        }
    }
    fflush(stderr);
    p->progress_shown = 1;
}

static void print_summary(struct pipeline *p, const char *status, double elapsed)
{
    FILE *out = stderr;
    if (p->progress_shown) fputs("\r\033[K", out);
    char read[32], written[32], filtered[32], dead[32];
    fmt_count(read, sizeof read, p->n.read);
    fmt_count(written, sizeof written, p->n.written);
    fmt_count(filtered, sizeof filtered, p->n.filtered);
    fmt_count(dead, sizeof dead, p->n.dead);
    fprintf(out, "runnel: job %s %s in %.2f s (%s mode)\n", p->env->job_name, status, elapsed,
            p->env->streaming ? "stream" : "batch");
    fprintf(out, "  read %s  written %s  filtered %s  dead-lettered %s  (%.0f records/s)\n", read, written, filtered,
            dead, elapsed > 0 ? (double)p->n.read / elapsed : 0.0);
    if (p->n.script_errors) fprintf(out, "  script errors %llu\n", (unsigned long long)p->n.script_errors);
    if (strcmp(status, "failed") == 0 && p->n.committed < p->n.written)
        fprintf(out, "  of the written records %llu are durable (flushed at the last checkpoint); the rest were not committed\n",
                (unsigned long long)p->n.committed);
    if (p->model) model_print_summary(p->model, out);
    if (p->eval) eval_print(p->eval, out);
}

static int write_summary_json(struct pipeline *p, const char *status, double elapsed, const char *error,
                              struct rn_err *err)
{
    json_t *o = json_object();
    json_object_set_new(o, "job", json_string(p->env->job_name));
    json_object_set_new(o, "status", json_string(status));
    json_object_set_new(o, "mode", json_string(p->env->streaming ? "stream" : "batch"));
    json_object_set_new(o, "read", json_integer((json_int_t)p->n.read));
    json_object_set_new(o, "filtered", json_integer((json_int_t)p->n.filtered));
    json_object_set_new(o, "written", json_integer((json_int_t)p->n.written));
    json_object_set_new(o, "dead_lettered", json_integer((json_int_t)p->n.dead));
    json_object_set_new(o, "script_errors", json_integer((json_int_t)p->n.script_errors));
    json_object_set_new(o, "committed", json_integer((json_int_t)p->n.committed));
    json_object_set_new(o, "elapsed_s", json_real(elapsed));
    json_object_set_new(o, "records_per_s", json_real(elapsed > 0 ? (double)p->n.read / elapsed : 0));
    if (p->resumed_line) json_object_set_new(o, "resumed_after_line", json_integer(p->resumed_line));
    if (error) json_object_set_new(o, "error", json_string(error));
    if (p->model) model_summary_json(p->model, o);
    if (p->eval) eval_json(p->eval, o);
    char *text = json_dumps(o, JSON_INDENT(2));
    json_decref(o);
    struct buf b;
    buf_init(&b);
    buf_puts(&b, text);
    buf_putc(&b, '\n');
    free(text);
    int rc = rn_mkdir_parent(p->opts->summary_json, err);
    if (rc == 0) rc = rn_write_file_atomic(p->opts->summary_json, b.data, b.len, err);
    buf_free(&b);
    return rc;
}

/* ---- the loop ---- */

static int pipeline_drain(struct job_env *env, struct rn_err *err)
{
    struct pipeline *p = env->pipeline;
    int64_t deadline = rn_now_ms() + DRAIN_DEADLINE_MS;
    while (p->model && p->tail < p->head && !p->fatal && rn_now_ms() < deadline) {
        if (model_poll(p->model, 50, on_model_done, p, err)) return -1;
        for (size_t i = 0; i < p->nsinks; i++)
            if (p->sinks[i].ops->poll && p->sinks[i].ops->poll(p->sinks[i].self, err)) return -1;
    }
    if (p->fatal) { *err = p->fatal_err; return -1; }
    if (p->tail < p->head) return rn_fail(err, "%llu records still in flight after %d ms",
                                          (unsigned long long)(p->head - p->tail), DRAIN_DEADLINE_MS);
    return checkpoint(p, err);
}

static int run_loop(struct pipeline *p, struct rn_err *err)
{
    lua_State *L = p->L;
    int64_t next_checkpoint = rn_now_ms() + p->checkpoint_ms;
    int64_t stop_deadline = 0;
    for (;;) {
        if (*p->env->stop_requested && !p->stopped) {
            p->stopped = 1;
            stop_deadline = rn_now_ms() + DRAIN_DEADLINE_MS;
        }
        int idle = 0;
        if (!p->source_done && !p->stopped) {
            for (int i = 0; i < 512 && !p->fatal; i++) {
                if (p->head - p->tail >= p->window) break;
                if (p->model && model_room(p->model) <= 0) break;
                if (p->opts->limit > 0 && (int64_t)p->n.read >= p->opts->limit) { p->source_done = 1; break; }
                struct source_pos pos = {-1, 0, -1, 0};
                enum source_status st = p->src_ops->next(p->src, &pos, err);
                if (st == SRC_RECORD) {
                    process_record(p, &pos);
                } else if (st == SRC_BAD) {
                    p->n.read++;
                    push_dead_letter(p, "source", err->msg, &pos, -1, 0, NULL);
                    lua_remove(L, -2);
                    settle(p, p->head, OUT_DEAD, &pos);
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
        int can_read = !p->source_done && !p->stopped && !idle && p->head - p->tail < p->window;
        if (p->model && model_in_flight(p->model) > 0) {
            int room = model_room(p->model) > 0;
            if (model_poll(p->model, can_read && room ? 0 : 20, on_model_done, p, err)) return -1;
        } else if (idle && p->src_ops->wait) {
            p->src_ops->wait(p->src, 100);
        }
        if (p->fatal) { *err = p->fatal_err; return -1; }
        for (size_t i = 0; i < p->nsinks; i++)
            if (p->sinks[i].ops->poll && p->sinks[i].ops->poll(p->sinks[i].self, err))
                return rn_wrap(err, "%s", p->sinks[i].label);
        if ((p->source_done || p->stopped) && p->tail == p->head) return 0;
        if (p->stopped && rn_now_ms() > stop_deadline)
            return rn_fail(err, "stopped with %llu records still in flight after %d ms",
                           (unsigned long long)(p->head - p->tail), DRAIN_DEADLINE_MS);
        int64_t now_ms = rn_now_ms();
        if (now_ms >= next_checkpoint) {
            if (checkpoint(p, err)) return -1;
            next_checkpoint = now_ms + p->checkpoint_ms;
        }
        if (p->opts->progress) {
            double now = rn_now();
            if (now - p->last_progress >= 0.25) {
                show_progress(p, now);
                p->last_progress = now;
            }
        }
    }
}

int pipeline_run(struct job_env *env, const struct run_options *opts, struct rn_err *err)
{
    struct pipeline pl;
    struct pipeline *p = &pl;
    memset(p, 0, sizeof *p);
    p->env = env;
    p->L = env->L;
    p->opts = opts;
    p->filter_ref = p->map_ref = LUA_NOREF;
    buf_init(&p->json);
    buf_init(&p->scratch);
    env->pipeline = p;
    env->drain = pipeline_drain;
    if (rn_mkdir_p(env->state_dir, err)) return -1;
    snprintf(p->checkpoint_path, sizeof p->checkpoint_path, "%s/%s.checkpoint.json", env->state_dir, env->job_name);
    int job = lua_gettop(p->L);
    p->started = rn_now();
    int rc = pipeline_open(p, job, err);
    if (rc == 0) {
        p->started = rn_now();
        rc = run_loop(p, err);
        struct rn_err cerr;
        if (rc == 0 && checkpoint(p, &cerr)) {
            *err = cerr;
            rc = -1;
        }
        double elapsed = rn_now() - p->started;
        const char *status = rc ? "failed" : p->stopped ? "stopped" : "finished";
        if (rc == 0 && !p->stopped && !env->streaming && p->has_checkpoint && opts->limit == 0)
            unlink(p->checkpoint_path); /* complete: nothing to resume */
        if (!opts->quiet) print_summary(p, status, elapsed);
        if (opts->summary_json) {
            struct rn_err jerr;
            if (write_summary_json(p, status, elapsed, rc ? err->msg : NULL, &jerr) && rc == 0) {
                *err = jerr;
                rc = -1;
            }
        }
        if (rc == 0 && p->stopped && !env->streaming) {
            rn_fail(err, "interrupted; run again with --resume to continue");
            rc = -2;
        }
    }
    pipeline_close(p);
    env->pipeline = NULL;
    return rc;
}
