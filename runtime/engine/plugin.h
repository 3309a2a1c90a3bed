/* plugin.h: the three plugin kinds (sources, sinks, model providers) as small tables of
 * functions, and the job environment every plugin is opened with.
 *
 * A plugin is one .c file that defines one `const struct X_ops` and one row in registry.c.
 * Records travel as Lua tables on the job's Lua stack: a source pushes one, a sink reads the
 * one at a given stack index. Nothing here blocks on one record. */
#ifndef RUNNEL_PLUGIN_H
#define RUNNEL_PLUGIN_H

#include <jansson.h>
#include <lua.h>
#include <signal.h>
#include <stdint.h>
#include "lua/options.h"
#include "core/util.h"

/* What every plugin may use while it runs. Owned by the CLI; lives for the whole run. */
struct job_env {
    lua_State *L;
    const char *script;     /* the job script's path, for messages */
    const char *job_name;
    int streaming;          /* 1 with --mode stream: sources follow their input forever */
    const char *state_dir;  /* where checkpoints and caches live */
    int resume;             /* --resume and a checkpoint exists: file sinks must not truncate */
    int no_cache;           /* --no-cache: bypass model response caches */
    int fieldorder_ref;     /* registry ref of a table field name -> rank, for stable output order */
    volatile sig_atomic_t *stop_requested; /* set by SIGINT/SIGTERM */
    /* Set by the pipeline: finish every record in flight, flush the sinks and commit the
     * source. A Kafka source calls it before it gives up partitions in a rebalance. */
    int (*drain)(struct job_env *env, struct rn_err *err);
    void *pipeline;
};

/* Give `name` a place in the field order of output records (first come, first placed). */
void fieldorder_add(struct job_env *env, const char *name);

/* Where a record came from; used for acknowledgements and dead-letter records. */
struct source_pos {
    int32_t partition;  /* Kafka partition, -1 for files */
    int64_t offset;     /* Kafka offset, or the byte offset just after the record in a file */
    int64_t line;       /* first line of the record in a file (1-based), -1 for Kafka */
    int32_t file;       /* which file of a directory source (its index in name order seen so far) */
};

enum source_status {
    SRC_RECORD, /* a record table was pushed */
    SRC_BAD,    /* the input was bad: a table describing it was pushed, err says why */
    SRC_IDLE,   /* nothing available now (streaming) */
    SRC_END,    /* bounded input finished */
    SRC_ERROR,  /* the source cannot go on: err says why */
};

struct source_ops {
    const char *name;     /* source.<name>{...} */
    const char *summary;
    const struct option_spec *options;
    /* Open from the checked options table at stack index opts. NULL and err on failure. */
    void *(*open)(struct job_env *env, int opts, struct rn_err *err);
    /* Produce the next record (see enum source_status); fills pos. */
    enum source_status (*next)(void *self, struct source_pos *pos, struct rn_err *err);
    /* Block up to timeout_ms for more input when next() said SRC_IDLE. Optional. */
    void (*wait)(void *self, int timeout_ms);
    /* Every record up to and including pos is done (in all sinks or dead-lettered). */
    void (*advance)(void *self, const struct source_pos *pos);
    /* Make the advanced position durable; called after every sink has flushed. */
    int (*commit)(void *self, struct rn_err *err);
    /* Checkpoint state for --resume (file sources); optional. */
    int (*save)(void *self, json_t *state, struct rn_err *err);
    int (*restore)(void *self, json_t *state, struct rn_err *err);
    /* Fraction of the input read, 0..1, or -1 when unknown. Optional. */
    double (*progress)(void *self);
    void (*close)(void *self);
};

struct sink_ops {
    const char *name;     /* sink.<name>{...} */
    const char *summary;
    const struct option_spec *options;
    void *(*open)(struct job_env *env, int opts, struct rn_err *err);
    /* Accept the record table at stack index rec (buffered); json is the same record already
     * encoded as one line of JSON in the job's field order. -1 and err when the sink failed
     * (the job then stops without committing past it). */
    int (*write)(void *self, int rec, const char *json, size_t json_len, struct rn_err *err);
    /* Serve asynchronous work (delivery reports). Optional. */
    int (*poll)(void *self, struct rn_err *err);
    /* Make everything written so far durable; -1 means the job must stop without committing. */
    int (*flush)(void *self, struct rn_err *err);
    /* Exactly-once resume for file sinks: save the committed length, truncate back to it. */
    int (*save)(void *self, json_t *state, struct rn_err *err);
    int (*restore)(void *self, json_t *state, struct rn_err *err);
    void (*close)(void *self);
};

/* struct provider_ops, the model provider interface, lives with the model engine. */
#include "models/provider.h"

/* registry.c: the tables of plugins, ending with NULL. */
extern const struct source_ops *const source_plugins[];
extern const struct sink_ops *const sink_plugins[];
extern const struct provider_ops *const provider_plugins[];

const struct source_ops *plugin_source(const char *name);
const struct sink_ops *plugin_sink(const char *name);
const struct provider_ops *plugin_provider(const char *name);

#endif
