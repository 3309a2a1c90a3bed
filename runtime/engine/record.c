/* record.c: the record as sinks see it (struct sink_record, plugin.h): its table, its fields
 * in the job's field order, and its JSON line, each made at most once per record and shared
 * by every sink, in buffers kept from one record to the next. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "formats/json.h"
#include "engine/engine_int.h"

void record_init(struct sink_record *r, lua_State *L, int order_ref)
{
    memset(r, 0, sizeof *r);
    r->L = L;
    r->order_ref = order_ref;
    buf_init(&r->json);
}

void record_free(struct sink_record *r)
{
    buf_free(&r->json);
    free(r->fields);
    free(r->ranked);
    r->fields = NULL;
    r->ranked = NULL;
}

int sink_record_table(const struct sink_record *r) { return r->table; }

int record_encode(struct sink_record *r, struct rn_err *err)
{
    buf_clear(&r->json);
    if (json_encode(r->L, r->table, r->order_ref, &r->json, err)) {
        r->json_err = *err;
        r->json_state = -1;
        return -1;
    }
    r->json_state = 1;
    return 0;
}

const char *sink_record_json(struct sink_record *r, size_t *len, struct rn_err *err)
{
    if (r->json_state == 0) {
        struct rn_err e; /* record_encode keeps it in r->json_err */
        record_encode(r, &e);
    }
    if (r->json_state < 0) {
        *err = r->json_err;
        return NULL;
    }
    *len = r->json.len;
    return r->json.data ? r->json.data : "";
}

/* Fields sort by the rank the job's field order gives their names (unranked ones last),
 * then by name, as json_encode orders a record's keys. */
static int ranked_before(const struct ranked_field *a, const struct ranked_field *b)
{
    if (a->rank != b->rank) return a->rank < b->rank;
    size_t n = a->field.name_len < b->field.name_len ? a->field.name_len : b->field.name_len;
    int c = memcmp(a->field.name, b->field.name, n);
    return c ? c < 0 : a->field.name_len < b->field.name_len;
}

const struct sink_field *sink_record_fields(struct sink_record *r, size_t *count, struct rn_err *err)
{
    lua_State *L = r->L;
    if (r->fields_state == 0) {
        r->fields_state = 1;
        int base = lua_gettop(L);
        int order = 0;
        if (r->order_ref != LUA_NOREF && r->order_ref != LUA_REFNIL) {
            lua_rawgeti(L, LUA_REGISTRYINDEX, r->order_ref);
            order = lua_gettop(L);
        }
        /* keys and values stay on the stack (above the order table) while the sinks write */
        struct ranked_field *ranked = r->ranked;
        size_t n = 0;
        lua_pushnil(L);
        while (lua_next(L, r->table)) {
            if (lua_type(L, -2) != LUA_TSTRING) {
                rn_fail(&r->fields_err, "a field name is a %s, not a string", luaL_typename(L, -2));
                r->fields_state = -1;
                lua_settop(L, base);
                break;
            }
            if (!lua_checkstack(L, 4)) {
                rn_fail(&r->fields_err, "a record with too many fields for the Lua stack");
                r->fields_state = -1;
                lua_settop(L, base);
                break;
            }
            if (n == r->fields_cap) {
                r->fields_cap = r->fields_cap ? r->fields_cap * 2 : 16;
                ranked = r->ranked = rn_realloc(r->ranked, r->fields_cap * sizeof *ranked);
                r->fields = rn_realloc(r->fields, r->fields_cap * sizeof *r->fields);
            }
            struct ranked_field *f = &ranked[n++];
            f->field.name = lua_tolstring(L, -2, &f->field.name_len);
            f->field.value = lua_gettop(L);
            f->rank = LUA_MAXINTEGER;
            if (order) {
                lua_pushvalue(L, -2);
                if (lua_rawget(L, order) == LUA_TNUMBER) f->rank = lua_tointeger(L, -1);
                lua_pop(L, 1);
            }
            lua_pushvalue(L, -2); /* the key for lua_next; the value stays below it */
        }
        if (r->fields_state > 0) {
            for (size_t i = 1; i < n; i++) { /* records are small: insertion sort */
                struct ranked_field k = ranked[i];
                size_t j = i;
                while (j > 0 && ranked_before(&k, &ranked[j - 1])) { ranked[j] = ranked[j - 1]; j--; }
                ranked[j] = k;
            }
            for (size_t i = 0; i < n; i++) r->fields[i] = ranked[i].field;
            r->nfields = n;
        }
    }
    if (r->fields_state < 0) {
        *err = r->fields_err;
        return NULL;
    }
    *count = r->nfields;
    return r->fields;
}
