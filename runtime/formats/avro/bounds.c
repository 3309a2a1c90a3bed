/* bounds.c: walk one Avro binary value over its writer's schema tree before libavro reads it.
 *
 * libavro allocates whatever a string, bytes or block length claims and loops over whatever
 * count a block claims, so a corrupt or hostile message could make it allocate gigabytes.
 * This walk allocates nothing and refuses a value whose lengths do not fit in the bytes left,
 * whose item counts pass a cap, whose union index or enum symbol does not exist, which ends
 * early or which has bytes after its end. Errors name the field path and the byte offset. */
#include <string.h>

#include "formats/avro/avro_int.h"

struct cursor {
    const unsigned char *start, *p, *end;
    size_t base;                  /* the offset of start in the message, for messages */
    int64_t items_left, max_items;
    struct rn_err *err;
};

static size_t at(const struct cursor *c) { return c->base + (size_t)(c->p - c->start); }

static int read_long(struct cursor *c, int64_t *out, const char *what)
{
    uint64_t v = 0;
    size_t offset = at(c);
    for (int shift = 0; shift < 70; shift += 7) {
        if (c->p >= c->end) return rn_fail(c->err, "the value ends inside %s at byte %zu (truncated)", what, offset);
        unsigned char b = *c->p++;
        if (shift == 63 && (b & 0x7e)) break;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
            return 0;
        }
    }
    return rn_fail(c->err, "%s at byte %zu is not a valid variable-length integer (more than 64 bits)", what, offset);
}

static int need(struct cursor *c, int64_t n, const char *what, size_t offset)
{
    if (n < 0) return rn_fail(c->err, "%s at byte %zu has a negative length (%lld)", what, offset, (long long)n);
    if ((uint64_t)n > (uint64_t)(c->end - c->p))
        return rn_fail(c->err, "%s at byte %zu claims %lld bytes but only %zu are left (truncated or corrupt)", what,
                       offset, (long long)n, (size_t)(c->end - c->p));
    return 0;
}

static int walk(struct cursor *c, const struct avro_node *n, int depth);

/* The blocks of an array or map: counts (a negative count is followed by the block's size in
 * bytes), each item a value of n->items (a map's with its key first), ending with count 0. */
static int walk_blocks(struct cursor *c, const struct avro_node *n, int depth)
{
    const char *what = n->kind == AVRO_KIND_ARRAY ? "an array block" : "a map block";
    int64_t index = 0;
    for (;;) {
        size_t offset = at(c);
        int64_t count;
        if (read_long(c, &count, what)) return -1;
        if (count == 0) return 0;
        if (count < 0) {
            if (count == INT64_MIN) return rn_fail(c->err, "%s at byte %zu has an invalid count", what, offset);
            count = -count;
            int64_t size;
            if (read_long(c, &size, "a block size") || need(c, size, "a block", offset)) return -1;
        }
        if (count > c->items_left)
            return rn_fail(c->err, "%s at byte %zu claims %lld items, more than the %lld left of the %lld allowed in one "
                           "message", what, offset, (long long)count, (long long)c->items_left, (long long)c->max_items);
        int per_item = (n->kind == AVRO_KIND_MAP ? 1 : 0) + n->items->min_bytes;
        if (per_item > 0 && count > (int64_t)(c->end - c->p) / per_item)
            return rn_fail(c->err, "%s at byte %zu claims %lld items but only %zu bytes are left (truncated or corrupt)",
                           what, offset, (long long)count, (size_t)(c->end - c->p));
        c->items_left -= count;
        for (int64_t i = 0; i < count; i++, index++) {
            if (n->kind == AVRO_KIND_MAP) {
                size_t key_at = at(c);
                int64_t len;
                if (read_long(c, &len, "a map key") || need(c, len, "a map key", key_at)) return -1;
                if (!rn_utf8_valid((const char *)c->p, (size_t)len, NULL))
                    return rn_fail(c->err, "the map key at byte %zu is not valid UTF-8", key_at);
                c->p += len;
            }
            if (walk(c, n->items, depth + 1)) return rn_wrap(c->err, "item %lld", (long long)index);
        }
    }
}

static int walk(struct cursor *c, const struct avro_node *n, int depth)
{
    if (depth > AVRO_MAX_DEPTH) return rn_fail(c->err, "values nested deeper than %d", AVRO_MAX_DEPTH);
    size_t offset = at(c);
    int64_t v;
    switch (n->kind) {
    case AVRO_KIND_NULL: return 0;
    case AVRO_KIND_BOOLEAN:
        if (c->p >= c->end) return rn_fail(c->err, "the value ends inside a boolean at byte %zu (truncated)", offset);
        if (*c->p > 1) return rn_fail(c->err, "the boolean at byte %zu is %u, not 0 or 1", offset, *c->p);
        c->p++;
        return 0;
    case AVRO_KIND_INT:
        if (read_long(c, &v, "an int")) return -1;
        if (v < INT32_MIN || v > INT32_MAX) return rn_fail(c->err, "the int at byte %zu does not fit 32 bits", offset);
        return 0;
    case AVRO_KIND_LONG: return read_long(c, &v, "a long");
    case AVRO_KIND_FLOAT:
    case AVRO_KIND_DOUBLE: {
        int64_t size = n->kind == AVRO_KIND_FLOAT ? 4 : 8;
        if (c->end - c->p < size)
            return rn_fail(c->err, "the value ends inside a %s at byte %zu (truncated)", size == 4 ? "float" : "double",
                           offset);
        c->p += size;
        return 0;
    }
    case AVRO_KIND_BYTES:
    case AVRO_KIND_STRING: {
        const char *what = n->kind == AVRO_KIND_STRING ? "a string" : "bytes";
        if (read_long(c, &v, what) || need(c, v, what, offset)) return -1;
        if (n->kind == AVRO_KIND_STRING && !rn_utf8_valid((const char *)c->p, (size_t)v, NULL))
            return rn_fail(c->err, "the string at byte %zu is not valid UTF-8", offset);
        c->p += v;
        return 0;
    }
    case AVRO_KIND_FIXED:
        if (need(c, (int64_t)n->size, "a fixed", offset)) return -1;
        c->p += n->size;
        return 0;
    case AVRO_KIND_ENUM:
        if (read_long(c, &v, "an enum index")) return -1;
        if (v < 0 || (uint64_t)v >= n->symbol_count)
            return rn_fail(c->err, "the enum %s at byte %zu has symbol index %lld; it has %zu symbols", n->name, offset,
                           (long long)v, n->symbol_count);
        return 0;
    case AVRO_KIND_UNION:
        if (read_long(c, &v, "a union index")) return -1;
        if (v < 0 || (uint64_t)v >= n->branch_count)
            return rn_fail(c->err, "the union at byte %zu has branch %lld; it has %zu", offset, (long long)v,
                           n->branch_count);
        return walk(c, n->branches[v], depth + 1);
    case AVRO_KIND_RECORD:
        for (size_t i = 0; i < n->field_count; i++)
            if (walk(c, n->fields[i].type, depth + 1)) return rn_wrap(c->err, "field '%s'", n->fields[i].name);
        return 0;
    case AVRO_KIND_ARRAY:
    case AVRO_KIND_MAP: return walk_blocks(c, n, depth);
    }
    return rn_fail(c->err, "unknown Avro type");
}

int avro_bounds_check(const struct avro_node *n, const unsigned char *data, size_t len, size_t base,
                      int64_t max_items, struct rn_err *err)
{
    struct cursor c = {data, data, data + len, base, max_items, max_items, err};
    if (walk(&c, n, 0)) return -1;
    if (c.p != c.end)
        return rn_fail(err, "%zu bytes are left after the value's end at byte %zu (not written with this schema?)",
                       (size_t)(c.end - c.p), at(&c));
    return 0;
}
