/* avro_int.h: the Avro format's private declarations (formats/avro/ only).
 *
 * libavro (Apache Avro C 1.11) parses schemas, resolves a writer schema to a reader schema and
 * reads and writes the binary encoding; it does not know logical types, field defaults in
 * resolution, or limits on the lengths a message claims. So each schema is also read into a
 * tree of our own (struct avro_node, schema.c) that carries those, and every message is walked
 * over the writer's tree (bounds.c) before libavro sees it. */
#ifndef RUNNEL_AVRO_INT_H
#define RUNNEL_AVRO_INT_H

#include <avro.h>
#include <jansson.h>
#include <lua.h>

#include "core/util.h"

enum avro_kind {
    AVRO_KIND_NULL, AVRO_KIND_BOOLEAN, AVRO_KIND_INT, AVRO_KIND_LONG, AVRO_KIND_FLOAT, AVRO_KIND_DOUBLE,
    AVRO_KIND_BYTES, AVRO_KIND_STRING, AVRO_KIND_RECORD, AVRO_KIND_ENUM, AVRO_KIND_ARRAY, AVRO_KIND_MAP,
    AVRO_KIND_UNION, AVRO_KIND_FIXED,
};

enum avro_logical {
    AVRO_LOGICAL_NONE, AVRO_LOGICAL_DATE, AVRO_LOGICAL_TIME_MILLIS, AVRO_LOGICAL_TIME_MICROS,
    AVRO_LOGICAL_TIMESTAMP_MILLIS, AVRO_LOGICAL_TIMESTAMP_MICROS, AVRO_LOGICAL_DECIMAL, AVRO_LOGICAL_UUID,
};

struct avro_node;

struct avro_field {
    char *name;
    struct avro_node *type;
    json_t *default_value; /* NULL: none (a reference into the tree's json) */
    int key;               /* the name's index in the tree's keys table (avro_tree_keys), from 1 */
};

/* One type of a schema. Named types (record, enum, fixed) are shared by every reference to
 * them, so the tree is a graph (a recursive record points back at itself). */
struct avro_node {
    enum avro_kind kind;
    enum avro_logical logical;     /* only on the kinds the spec allows; others are ignored */
    char *name;                    /* record, enum, fixed: the full name */
    int precision, scale;          /* decimal */
    size_t size;                   /* fixed */
    struct avro_field *fields;     /* record */
    size_t field_count;
    char **symbols;                /* enum */
    size_t symbol_count;
    int default_symbol;            /* enum: the index of its "default" symbol, -1: none */
    struct avro_node **branches;   /* union */
    size_t branch_count;
    struct avro_node *items;       /* array items, map values */
    int min_bytes;                 /* the fewest bytes a value takes (bounds.c) */
};

/* A parsed schema: our tree, libavro's schema and the JSON both were read from. */
struct avro_tree {
    struct avro_node *root;
    struct avro_node **nodes;      /* every node, owned */
    size_t node_count, node_cap;
    json_t *json;                  /* owned */
    avro_schema_t schema;          /* libavro's, one reference owned */
    int key_count;                 /* record fields, numbered by avro_field.key */
    lua_State *keys_L;             /* the keys table's state (NULL: not made yet) */
    int keys_ref;                  /* its registry reference, freed with the tree */
};

#define AVRO_MAX_DEPTH 64          /* nesting of types, in a schema and in a message */

/* ---- schema.c ---- */

/* Parse schema text (JSON). NULL and err ("invalid Avro schema: ...", libavro's or ours). The
 * caller frees with avro_tree_free. */
struct avro_tree *avro_tree_parse(const char *text, size_t len, struct rn_err *err);
void avro_tree_free(struct avro_tree *t);
/* "record runnel.demo.Review", "union [null, string]", "int", for messages. */
void avro_node_describe(const struct avro_node *n, struct buf *out);
/* The named type of this kind called name in t: the same full name, else the same unqualified
 * name (how the spec matches a reader's named type to the writer's). NULL: none. */
const struct avro_node *avro_tree_named(const struct avro_tree *t, enum avro_kind kind, const char *name);
/* The libavro schema to resolve a writer to `reader`: the reader's JSON without the record
 * fields the writer lacks (libavro cannot fill defaults; avro_lua.c pushes them). NULL and err
 * when a field the writer lacks has no default, or libavro refuses. The caller decrefs. */
avro_schema_t avro_tree_project(const struct avro_tree *reader, const struct avro_tree *writer, struct rn_err *err);

/* ---- bounds.c ---- */

/* Check that data[0..len) is one value of `n` and nothing more, without allocating: every
 * length fits in what is left, every union branch and enum symbol exists, array and map items
 * total at most max_items, nesting at most AVRO_MAX_DEPTH. So libavro, which allocates whatever
 * a length claims, only reads values that are there. base is data's offset in the message (byte
 * numbers in messages count from the message's start). 0, or -1 and err naming the field and byte. */
int avro_bounds_check(const struct avro_node *n, const unsigned char *data, size_t len, size_t base,
                      int64_t max_items, struct rn_err *err);

/* ---- avro_lua.c ---- */

/* Push the table of t's record field names as Lua strings (keys[field.key]), made on first use
 * and kept with the tree: records are filled and read with these strings, not by hashing each
 * name again for every record. */
void avro_tree_keys(lua_State *L, struct avro_tree *t);
/* Push the Lua value of v, a value of t's root (t is the reader's tree) that libavro resolved
 * from a value of `writer`'s; a record root's table gets room for extra_fields more. -1 and err
 * naming the field (nothing pushed). */
int avro_push_value(lua_State *L, struct avro_tree *t, const struct avro_tree *writer, avro_value_t *v,
                    int extra_fields, struct rn_err *err);
/* Push the Lua value of data[0..len), a value of t's root read straight from the binary, by
 * the same mapping as avro_push_value. Only for data that avro_bounds_check accepted for this
 * tree (base as given to it): no libavro value in between, each string copied once, into Lua.
 * -1 and err naming the field (nothing pushed). */
int avro_push_binary(lua_State *L, struct avro_tree *t, const unsigned char *data, size_t len, size_t base,
                     int extra_fields, struct rn_err *err);
/* Append the Avro binary of the Lua value at idx as a value of t's root to out, written
 * straight from Lua (the bytes libavro would write). -1 and err naming the field; out is as
 * it was. */
int avro_write_value(lua_State *L, int idx, struct avro_tree *t, struct buf *out, struct rn_err *err);

#endif
