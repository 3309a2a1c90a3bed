/* cluster.c: task clustering over the job's centroids: `centroids = { name = { x1, x2, ... } }`
 * declared on a model with embeddings; each record's embedding gets the name of the centroid
 * nearest to it by cosine similarity. The centroids are normalized once at open, so one answer
 * costs a dot product per centroid and nothing is allocated but the name written. */
#include "models/model_int.h"

#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* (model.h) A centroid is a non-empty list of finite numbers, not all zero. */
int model_check_centroid(lua_State *L, int idx, struct rn_err *err)
{
    lua_Integer n = luaL_len(L, idx);
    if (n < 1) return rn_fail(err, "a centroid is a non-empty list of numbers, e.g. { 0.1, -0.3, 0.8 }");
    double norm = 0;
    for (lua_Integer i = 1; i <= n; i++) {
        int type = lua_rawgeti(L, idx, i);
        double v = lua_tonumber(L, -1);
        lua_pop(L, 1);
        if (type != LUA_TNUMBER || !isfinite(v)) return rn_fail(err, "item %lld is not a finite number", (long long)i);
        norm += v * v;
    }
    if (norm == 0) return rn_fail(err, "a centroid of zeros has no direction");
    return 0;
}

static int name_compare(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int centroids_read(struct centroids *c, lua_State *L, int opts, struct rn_err *err)
{
    memset(c, 0, sizeof *c);
    if (!opt_push(L, opts, "centroids")) return 0;
    int t = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, t)) { /* names, then sorted, so the order never depends on the hash */
        lua_pop(L, 1);
        c->names = rn_realloc(c->names, (c->count + 1) * sizeof *c->names);
        c->names[c->count++] = rn_strdup(lua_tostring(L, -1));
    }
    if (c->count == 0) {
        lua_pop(L, 1);
        return rn_fail(err, "centroids: declare at least one, e.g. centroids = { praise = { 0.1, 0.9 } }");
    }
    qsort(c->names, c->count, sizeof *c->names, name_compare);
    for (size_t k = 0; k < c->count; k++) {
        lua_getfield(L, t, c->names[k]);
        size_t n = (size_t)luaL_len(L, -1); /* a list of numbers: checked */
        if (k == 0) {
            c->dims = n;
            c->values = rn_calloc(c->count * n, sizeof *c->values);
        } else if (n != c->dims) {
            lua_pop(L, 2);
            return rn_fail(err, "centroids.%s: %zu numbers, but centroids.%s has %zu: give them all one length",
                           c->names[k], n, c->names[0], c->dims);
        }
        double norm = 0, *v = c->values + k * c->dims;
        for (size_t i = 0; i < n; i++) {
            lua_rawgeti(L, -1, (lua_Integer)i + 1);
            v[i] = lua_tonumber(L, -1);
            lua_pop(L, 1);
            norm += v[i] * v[i];
        }
        norm = sqrt(norm);
        for (size_t i = 0; i < n; i++) v[i] /= norm;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return 0;
}

int centroids_nearest(const struct centroids *c, json_t *vector, struct buf *name, struct buf *why)
{
    if (!json_is_array(vector)) {
        buf_puts(why, "the answer holds no embedding");
        return -1;
    }
    if (json_array_size(vector) != c->dims) {
        buf_printf(why, "the embedding has %zu dimensions, the centroids %zu", json_array_size(vector), c->dims);
        return -1;
    }
    size_t best = 0;
    double best_score = -INFINITY, norm = 0;
    for (size_t i = 0; i < c->dims; i++) {
        double x = json_number_value(json_array_get(vector, i));
        norm += x * x;
    }
    if (!(norm > 0) || !isfinite(norm)) {
        buf_puts(why, "the embedding has no direction (all zeros, or not numbers)");
        return -1;
    }
    for (size_t k = 0; k < c->count; k++) {
        const double *v = c->values + k * c->dims;
        double dot = 0;
        for (size_t i = 0; i < c->dims; i++) dot += v[i] * json_number_value(json_array_get(vector, i));
        if (dot > best_score) { best_score = dot; best = k; }
    }
    buf_clear(name);
    buf_puts(name, c->names[best]);
    return 0;
}

void centroids_free(struct centroids *c)
{
    for (size_t k = 0; k < c->count; k++) free(c->names[k]);
    free(c->names);
    free(c->values);
    memset(c, 0, sizeof *c);
}
