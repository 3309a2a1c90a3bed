/* deadletter.c: building dead letters (one JSON object per record that could not be
 * processed, with the reason) and writing them to the job's errors sink, or to stderr when
 * the job declares none. The fields are listed in the README's Reliability section. */
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "formats/json.h"
#include "engine/engine_int.h"
#include "core/log.h"

static void iso_time(char *out, size_t n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (long)(ts.tv_nsec / 1000000) % 1000);
}

/* Set field name of the table at dl to text made valid UTF-8 (a reason can quote bad input,
 * and the letter must encode). */
static void set_visible(lua_State *L, int dl, const char *name, const char *text, struct buf *scratch)
{
    buf_clear(scratch);
    buf_put_visible(scratch, text, strlen(text), SIZE_MAX);
    lua_pushlstring(L, scratch->data ? scratch->data : "", scratch->len);
    lua_setfield(L, dl, name);
}

void deadletter_push(struct pipeline *p, const char *stage, const char *reason, const struct source_pos *pos,
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
    set_visible(L, dl, "reason", reason, &p->scratch);
    if (model_text) set_visible(L, dl, "model_text", model_text, &p->scratch);
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
        if (json_encode(L, record_idx, p->env->fieldorder_ref, &p->scratch, &err) == 0) lua_pushvalue(L, record_idx);
        else luaL_tolstring(L, record_idx, NULL);
        lua_setfield(L, dl, "record");
    }
    char now[64];
    iso_time(now, sizeof now);
    lua_pushstring(L, now);
    lua_setfield(L, dl, "time");
}

int64_t deadletter_write(struct pipeline *p, int idx, struct rn_err *err)
{
    lua_State *L = p->L;
    int top = lua_gettop(L);
    struct sink_record *letter = &p->letter;
    record_begin(letter, lua_absindex(L, idx));
    size_t len;
    const char *json = sink_record_json(letter, &len, err);
    if (!json) return rn_wrap(err, "a dead letter");
    if (!p->errors.ops) {
        log_error("dead letter: %s", json);
        return 0;
    }
    uint64_t number = p->letters++;
    int rc = p->errors.ops->write(p->errors.self, number, letter, err);
    lua_settop(L, top);
    if (rc < 0) return rn_wrap(err, "%s", p->errors.label);
    if (rc > 0) return rn_wrap(err, "%s refused a dead letter", p->errors.label);
    if (!p->errors.async) p->errors.acked_below = p->letters;
    return (int64_t)number + 1;
}
