/* format.h: record formats: how a message value becomes a Lua record, and a record a value.
 *
 * One table of functions per format and one row per format in format.c, shared by
 * source.kafka (`format = "json" | "csv" | "text" | "avro"`) and sink.kafka (`format = "json" |
 * "csv" | "avro"`): a new format is a new file (or folder, as avro/) in formats/ plus a row. A format reads its own options
 * (columns, types, ...) from the plugin's checked options table and adds its fields to the
 * job's field order, so a plugin knows a format only by its name.
 *
 * Errors name the field, column, byte, line or column at fault; the plugin adds where the
 * value came from or goes to (topic, partition, offset). */
#ifndef RUNNEL_FORMAT_H
#define RUNNEL_FORMAT_H

#include <lua.h>
#include <stddef.h>

#include "core/util.h"
#include "engine/plugin.h"

enum format_use { FORMAT_DECODE, FORMAT_ENCODE };

#define FORMAT_FATAL (-2) /* decode: not the message's fault; stop the job */

/* What a format is opened with. Borrowed for the open call only. */
struct format_args {
    struct job_env *env;  /* the job: its Lua state and field order */
    int opts;             /* stack index of the plugin's checked options table */
    const char *plugin;   /* "source.kafka", for messages */
    const char *where;    /* "jobs/x.lua:3", the declaration */
    int extra_fields;     /* decoding: fields the plugin adds to every record (tables are presized) */
};

struct format_ops {
    const char *name;     /* format = "<name>" */
    int decodes_no_value; /* decode takes data == NULL (a message without a value, a tombstone);
                             for other formats the plugin refuses such a message itself */
    int opens_remote;     /* open talks to a server (avro: its schema registry); `runnel test`,
                             which runs no server, leaves such a sink's encoding out */
    /* Open for decoding or encoding: NULL and err (naming the declaration and the option) when
     * the options do not fit. The result is the format's, freed by close. */
    void *(*open)(const struct format_args *args, enum format_use use, struct rn_err *err);
    /* Push the record of the value data[0..len). -1 and err (why, without where), nothing
     * pushed: the message is bad (dead-lettered); FORMAT_FATAL and err: the format cannot go
     * on (its schema registry does not answer), the job stops. NULL when it cannot decode. */
    int (*decode)(void *self, lua_State *L, const char *data, size_t len, struct rn_err *err);
    /* Append the value of the record at stack index rec to out. -1 and err (the field at fault).
     * NULL when the format cannot encode. */
    int (*encode)(void *self, lua_State *L, int rec, struct buf *out, struct rn_err *err);
    /* Optional: append the message key for the key field's value at stack index key: 0, or -1
     * and err; 1 when this format leaves keys to the plugin (written as text). */
    int (*encode_key)(void *self, lua_State *L, int key, struct buf *out, struct rn_err *err);
    void (*close)(void *self);
};

/* The format called `name` that can be used for `use`, or NULL. */
const struct format_ops *format_find(const char *name, enum format_use use);
/* format_find, or NULL and err: "WHERE: PLUGIN: format must be "json", ... or ..., not 'NAME'". */
const struct format_ops *format_lookup(const char *name, enum format_use use, const char *where, const char *plugin,
                                       struct rn_err *err);

/* The names of the formats that can be used for `use`, as a message lists them:
 * "\"json\", \"csv\" or \"text\"". */
void format_names(struct buf *out, enum format_use use);

/* Shared by the formats: 0 when data[0..len) is UTF-8, else -1 and err naming the first bad
 * byte (counted from 1). */
int format_check_utf8(const char *data, size_t len, struct rn_err *err);
/* Decoding formats whose values carry their own fields: `columns`, when given, is the order of
 * the fields in outputs; `types` is refused (it is the csv format's). 0, or -1 and err. */
int format_order_columns(const struct format_args *args, struct rn_err *err);

#endif
