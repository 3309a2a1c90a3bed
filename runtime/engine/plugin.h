/* plugin.h: the three plugin kinds (sources, sinks, model providers) as small tables of
 * functions, and the job environment every plugin is opened with.
 *
 * A plugin is one .c file that defines one `const struct X_ops` and one row in registry.c.
 * Records travel as Lua tables on the job's Lua stack: a source pushes one; a sink is given
 * a struct sink_record that shows it the table, its fields in output order, and its JSON
 * line. Nothing here blocks: a plugin that waits for something (a socket, a queue, a thread)
 * registers it in the job's loop (env->loop, core/loop.h), the one place the job sleeps. */
#ifndef RUNNEL_PLUGIN_H
#define RUNNEL_PLUGIN_H

#include <jansson.h>
#include <lua.h>
#include <signal.h>
#include <stdint.h>
#include "lua/options.h"
#include "core/loop.h"
#include "core/util.h"

struct metrics;
struct model_call;
struct model_reply;
struct sink_ops;
struct source_ops;

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
    long descriptors_planned; /* file descriptors the job will still open after its model (checkpoint,
                               * summary, Kafka connections), set by the pipeline: see core/fdlimit.h */
    volatile sig_atomic_t *stop_requested; /* set by SIGINT/SIGTERM */
    int stop_fd;             /* readable once they set it (the job's loop watches it); <= 0: none */
    /* Set by the pipeline: finish every record in flight, flush the sinks and commit the
     * source. A Kafka source calls it before it gives up partitions in a rebalance. */
    int (*drain)(struct job_env *env, struct rn_err *err);
    void *pipeline;
    /* runnel test (engine/jobtest.c); all NULL in a real run. answer stands in for every model
     * call: it fills reply (text, or vector for an embedding) for the call (its rendered prompt,
     * system, correction), or fails the record with err. The model then sends nothing (no
     * batches, no credentials). test_source replaces the declared source and test_sink(ops)
     * gives the stand-in for a declared sink of that plugin (also the errors sink, declared
     * or not): nothing is read or written outside the test. */
    int (*answer)(void *ctx, const struct model_call *call, struct model_reply *reply, struct rn_err *err);
    void *answer_ctx;
    const struct source_ops *test_source;
    const struct sink_ops *(*test_sink)(void *ctx, const struct sink_ops *declared);
    struct metrics *metrics; /* the job's metrics registry (core/metrics.h), set by the pipeline before
                              * plugins open; NULL outside a run (plugins then keep their own) */
    struct loop *loop;       /* the job's event loop (core/loop.h), set by the pipeline before plugins
                              * open, freed after they close; NULL outside a run. A plugin watches
                              * its descriptors and arms its timers here, and a plugin's thread calls
                              * loop_wake when it has something for the job's thread */
    int64_t outage_ms;       /* limits.outage: the longest a sink's flush waits on its service being
                              * down, set by the pipeline before the run */
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

/* ---- sources: interface version 2 ----
 * next() never blocks: with nothing to give now it says SRC_IDLE, and the source has made sure
 * the job's loop wakes when there is more (its descriptor watched, a thread's loop_wake, or a
 * timer to look again). Version 1 had a blocking wait(); the pipeline now sleeps in the loop. */
#define SOURCE_INTERFACE_VERSION 2

struct source_ops {
    int version;          /* SOURCE_INTERFACE_VERSION */
    const char *name;     /* source.<name>{...} */
    const char *summary;
    const struct option_spec *options;
    /* Open from the checked options table at stack index opts. NULL and err on failure. */
    void *(*open)(struct job_env *env, int opts, struct rn_err *err);
    /* Produce the next record (see enum source_status); fills pos. Never blocks. */
    enum source_status (*next)(void *self, struct source_pos *pos, struct rn_err *err);
    /* Every record up to and including pos is done (in all sinks or dead-lettered). */
    void (*advance)(void *self, const struct source_pos *pos);
    /* Make the advanced position durable; called after every sink has flushed. */
    int (*commit)(void *self, struct rn_err *err);
    /* Checkpoint state for --resume (file sources); optional. */
    int (*save)(void *self, json_t *state, struct rn_err *err);
    int (*restore)(void *self, json_t *state, struct rn_err *err);
    /* Fraction of the input read, 0..1, or -1 when unknown. Optional. */
    double (*progress)(void *self);
    /* For the line a job stops with: every part of the input read past what was committed
     * ("partition 0 offset 12, partition 3 offset 1234", each naming its last committed record),
     * at most `most` of them, then " and N more partitions", appended to out. Returns how many it
     * named; 0 (or no such op): the pipeline names the last record committed. Optional. */
    int (*uncommitted)(void *self, struct buf *out, int most);
    void (*close)(void *self);
};

/* ---- sinks: interface version 3 ----
 *
 * The pipeline hands every record to every sink in source order, numbered by a sequence
 * number that only grows: write(self, seq, record). A sink answers each record it is given
 * in one of three ways:
 * - accepted: write() returns SINK_ACCEPTED and buffers it. The record is acknowledged then
 *   (a sink without SINK_ASYNC_ACKS), or later, when poll() reports acknowledged-through a
 *   seq at or past it (the Kafka delivery report, an Elasticsearch bulk response);
 * - rejected: the sink will never hold this record (a value it cannot store, an index
 *   mapping it fails): write() returns SINK_REJECTED with the reason in err, or poll()
 *   reports it with sink_reject(). The pipeline dead-letters the record with stage
 *   "sink.NAME" and that reason, and the job goes on;
 * - failed: write(), poll() or flush() returns SINK_FAILED (-1) with err: the sink cannot go
 *   on (a full disk, a fatal producer error, a wrong password); the job stops and nothing the
 *   sink had not acknowledged is committed.
 * An outage is not a bad record. When the service behind the sink does not answer (connection
 * refused or reset, DNS, TLS, a timeout, brokers down) or answers 5xx, 429 or 503 to every
 * request, no record is at fault: the sink keeps the records it accepted (never rejects them),
 * retries on its own, and poll() says sink_down() with the reason; sink_up() once it answers
 * again. While a sink is down the pipeline reads nothing more (the window fills), takes no
 * checkpoint, and shows "paused 2m13s: REASON" in the progress line and the summary; when it has
 * been down for limits.outage (the job's, else the model's, else 10 minutes) the job stops with
 * exit 1 and one line naming the sink, the time, the reason and the last record committed. Only a record the
 * service refuses for what it is (a mapping, a constraint, a size) is rejected.
 * The source commits past a record only when every sink acknowledged or rejected it.
 * flush() makes every accepted record durable: after it returns 0, every record written
 * before it is acknowledged or rejected, and the next poll() reports it.
 * Version 3: the pipeline polls a sink after every turn of the job's loop, and sleeps in the
 * loop otherwise; a sink with SINK_ASYNC_ACKS makes the loop wake when it has something to
 * report (it watches its socket or queue's descriptor in env->loop, or its thread calls
 * loop_wake), else its acknowledgements wait for the next checkpoint's timer. */
#define SINK_INTERFACE_VERSION 3

enum sink_result { SINK_FAILED = -1, SINK_ACCEPTED = 0, SINK_REJECTED = 1 };

enum sink_capability {
    /* write() reads sink_record_json(). The pipeline then encodes each record before any
     * sink sees it, and a record that JSON cannot hold is dead-lettered (stage map) instead
     * of reaching some sinks and not others. */
    SINK_WANTS_JSON = 1 << 0,
    /* Acknowledges in poll(); without it a record is acknowledged when write() accepts it.
     * Until a record is answered the pipeline keeps its JSON line (for the dead letter of a
     * rejection), so it encodes every record first, as for SINK_WANTS_JSON. */
    SINK_ASYNC_ACKS = 1 << 1,
};

/* The record write() is given: valid during that call only, owned by the pipeline. */
struct sink_record;

/* One field of a record: its name, and its Lua value at a stack index (a string, number,
 * boolean, or table for nested values). */
struct sink_field {
    const char *name;
    size_t name_len;
    int value;
};

/* The stack index of the record's table (read it; do not change it). */
int sink_record_table(const struct sink_record *record);
/* The record as one line of JSON (no newline), keys in the job's field order: encoded once
 * at the first call and shared by every sink. NULL and err when JSON cannot hold a value
 * (never for a sink with SINK_WANTS_JSON: the pipeline checked it first). */
const char *sink_record_json(struct sink_record *record, size_t *len, struct rn_err *err);
/* The record's fields in the job's field order (source columns, then model outputs, then
 * other keys by name), the same order as the JSON line's keys; made at the first call and
 * shared. The first call pushes the names and values on the Lua stack, where they stay until
 * write() returns: call it before pushing anything of your own. NULL and err when a key is
 * not a string. */
const struct sink_field *sink_record_fields(struct sink_record *record, size_t *count, struct rn_err *err);

/* What poll() reports, through these two calls (they only note it; the pipeline acts after
 * poll returns). */
struct sink_report;
/* Every record this sink was given with a seq <= through is held (or was rejected). */
void sink_acknowledge(struct sink_report *report, uint64_t through);
/* The record seq, accepted by write() earlier, will never be held: reason says why. Report
 * it before acknowledging through it. */
void sink_reject(struct sink_report *report, uint64_t seq, const char *reason);
/* The sink's service is down (see "An outage is not a bad record" above): reason is short
 * ("all brokers down", "connection refused"). Say it at each poll() while it lasts, or once:
 * it holds until sink_up(). */
void sink_down(struct sink_report *report, const char *reason);
/* The service answers again (any acknowledgement says so too). */
void sink_up(struct sink_report *report);

struct sink_ops {
    int version;          /* SINK_INTERFACE_VERSION */
    const char *name;     /* sink.<name>{...} */
    const char *summary;
    const struct option_spec *options;
    unsigned capabilities; /* enum sink_capability */
    void *(*open)(struct job_env *env, int opts, struct rn_err *err);
    /* Take the record (buffered): an enum sink_result, err filled unless accepted. */
    int (*write)(void *self, uint64_t seq, struct sink_record *record, struct rn_err *err);
    /* Serve asynchronous work and report acknowledgements and rejections. Never blocks.
     * Required with SINK_ASYNC_ACKS, optional otherwise. 0, or -1 when the sink failed. */
    int (*poll)(void *self, struct sink_report *report, struct rn_err *err);
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
