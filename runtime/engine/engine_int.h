/* engine_int.h: what the engine's files share, private to engine/: the pipeline's state and
 * the functions one file of it calls in another.
 *
 *   pipeline.c    opening the job, the stages (filter, predict, map), the event loop
 *   order.c       the reorder ring, writing to the sinks, acknowledgements and rejections,
 *                 what the source may advance past
 *   record.c      the record as sinks see it (struct sink_record)
 *   deadletter.c  building dead letters and writing them to the errors sink
 *   checkpoint.c  flush, commit, and the checkpoint file (save, restore, format)
 *   summary.c     the progress line, the human summary, --summary-json
 *
 * Every record read gets a sequence number and ends in exactly one of three ways: written to
 * every sink, filtered, or dead-lettered (by a stage, or because a sink rejected it). */
#ifndef RUNNEL_ENGINE_INT_H
#define RUNNEL_ENGINE_INT_H

#include <lua.h>

#include "core/metrics.h"
#include "engine/pipeline.h"

#define MAX_SINKS 16
#define DRAIN_DEADLINE_MS 30000
#define UNCOMMITTED_NAMED_MAX 8 /* partitions the line a job stops with names; then "and N more" */
#define PROGRESS_INTERVAL_S 0.25      /* the progress line is drawn again this often */

struct model;
struct evaluation;

/* One opened sink (a job's sink, or its errors sink). */
struct sink_inst {
    const struct sink_ops *ops;
    void *self;
    char *label;              /* "sink.jsonl (jobs/x.lua:20)" for messages */
    char *stage;              /* "sink.jsonl": the stage of the dead letters it causes */
    int async;                /* ops->capabilities has SINK_ASYNC_ACKS */
    uint64_t acked_below;     /* every record it was given with seq < this is acknowledged */
    struct metric *written;   /* records it acknowledged */
    struct metric *rejected;  /* records it rejected */
    int64_t down_since_ms;    /* sink_down: its service has been down since; -1 up */
    int64_t paused_ms;        /* time down in spells that ended */
    char down_reason[160];    /* the last sink_down's reason */
    struct metric *outage_seconds; /* seconds down in the current outage */
};

/* struct sink_report (plugin.h): one poll() of one sink. */
struct sink_report {
    struct pipeline *p;
    struct sink_inst *sink;
    int index;                /* in p->sinks, or -1 for the errors sink */
};

/* A field and the rank of its name in the job's field order (record.c sorts by it). */
struct ranked_field {
    struct sink_field field;
    lua_Integer rank;
};

/* The record as sinks see it, rebuilt for each record in buffers the pipeline keeps. */
struct sink_record {
    lua_State *L;
    int table;                /* absolute stack index of the record */
    int order_ref;            /* the job's field order (job_env) */
    int json_state;           /* 0 not encoded yet, 1 in json, -1 failed with json_err */
    struct buf json;
    struct rn_err json_err;
    int fields_state;         /* 0 not made yet, 1 made, -1 failed with fields_err */
    struct sink_field *fields;    /* in order; both arrays have fields_cap slots */
    struct ranked_field *ranked;
    size_t nfields, fields_cap;
    struct rn_err fields_err;
};

enum slot_state { SLOT_FREE, SLOT_BUSY, SLOT_READY };
enum outcome { OUT_WRITE, OUT_FILTERED, OUT_DEAD };

/* A record in the reorder ring: waiting for the model (BUSY), or finished (READY) behind an
 * older one that is not. */
struct slot {
    uint8_t state;
    uint8_t outcome;
    int ref;                  /* registry ref: the record (BUSY), the output or dead letter (READY) */
    struct source_pos pos;
};

/* A record that left the ring (written to the sinks or settled) but is not done: some sink
 * has not acknowledged it, or its dead letter is not acknowledged yet. Only jobs with a
 * sink that acknowledges asynchronously keep these. */
struct pending {
    struct source_pos pos;
    uint8_t outcome;          /* OUT_WRITE until every sink answered, then OUT_DEAD if one rejected */
    uint16_t waiting;         /* bit i: sink i accepted it and has not acknowledged or rejected it */
    int8_t rejected_by;       /* the first sink that rejected it, or -1 */
    char *reason;             /* why, "...; also rejected by sink.x (job.lua:3): why" (owned) */
    uint64_t letter_end;      /* its dead letter's number in the errors sink + 1; 0: none */
    uint64_t kept_at;         /* its JSON line in p->kept while a sink may still reject it */
    size_t kept_len;          /* 0: not kept */
};

/* The pipeline's counts, in its metrics registry (summary.c reads them from there). */
struct pipeline_metrics {
    struct metric *read, *filtered, *written, *dead, *script_errors;
    struct metric *checkpoints, *checkpoint_seconds, *committed;
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
    int needs_json;               /* some sink has SINK_WANTS_JSON or acknowledges asynchronously:
                                     every record is encoded before any sink sees it */
    int async_any;                /* a sink or the errors sink does: records wait in `pending` */
    struct model *model;
    struct evaluation *eval;
    int filter_ref, map_ref;
    int64_t max_errors;
    int64_t checkpoint_ms;

    /* Sequences: [done, tail) left the ring and wait in `pending`; [tail, head) are in the
     * ring; head - done <= window, so both arrays have window slots. */
    struct slot *ring;
    struct pending *pending;      /* NULL unless async_any */
    struct buf kept;              /* JSON lines of records a sink may still reject (order.c) */
    uint64_t kept_base;           /* the offset of kept.data[0] in everything ever kept */
    uint64_t window, head, tail, done;
    uint64_t letters;             /* dead letters written to the errors sink */

    struct metrics *metrics;
    struct pipeline_metrics m;
    struct exporter *exporter;    /* --metrics-fd, --metrics-listen (serve/exporter.h), or NULL */
    struct buf exposition;        /* the registry's text, rendered for the exporter */
    struct sink_record record;    /* the record being written */
    struct sink_record letter;    /* the dead letter being written */
    struct buf scratch;

    int fatal;
    struct source_pos done_pos;   /* the newest record done (written, dead-lettered or filtered) */
    int done_any;                 /* one was */
    struct source_pos committed_pos; /* done_pos at the last checkpoint */
    int committed_any;
    int sink_outage;              /* a sink's service was down for outage_ms: the job stopped */
    int flush_down;               /* the last checkpoint's flush failed because a sink is down */
    int64_t outage_ms;            /* a sink down this long stops the job: the job's limits.outage, else the model's, else 10m */
    int model_failed;             /* the model stopped the job: what was written is still committed */
    struct rn_err fatal_err;
    int source_done;
    int stopped;                  /* stopped by a signal */
    char checkpoint_path[4096];
    int has_checkpoint;           /* the source supports save/restore */
    int spare_fd;                 /* lent to checkpoints and summary files (core/fdlimit.h), or -1 */
    int descriptors_noted;        /* the note on a checkpoint put off for want of descriptors was printed */
    int64_t resumed_line;
    double started;
    double last_progress;
    struct loop *loop;            /* the job's one event loop (env->loop): the only place the job sleeps */
    struct loop_timer checkpoint_timer, progress_timer, stop_timer; /* they only wake the loop */
    struct loop_timer metrics_timer;  /* the exporter's next text */
    struct buf progress_line;     /* the progress line, made again at each redraw */
};

/* summary.c: hand the registry's text to the exporter (a no-op without one). */
void summary_publish_metrics(struct pipeline *p);

/* pipeline.c: the job cannot go on; the first error wins. */
void pipeline_fail(struct pipeline *p, const struct rn_err *err);

/* order.c */
/* A record finished with `outcome`; its output or dead letter is at the top of the stack
 * (popped; nil for filtered). Written now when nothing older is pending, else parked. */
void order_settle(struct pipeline *p, uint64_t seq, enum outcome outcome, const struct source_pos *pos);
/* Poll every sink that acknowledges asynchronously, then finish what became done. */
int order_poll_sinks(struct pipeline *p, struct rn_err *err);
/* The first sink whose service is down (sink_down), or NULL: the pipeline reads nothing more
 * and takes no checkpoint while there is one. */
struct sink_inst *order_sink_down(struct pipeline *p);
/* Finish the records at the front of `pending` that every sink answered, in order: write
 * the dead letters of rejected ones, count them, advance the source past them. */
void order_resolve(struct pipeline *p);
void order_free(struct pipeline *p);

/* record.c */
void record_init(struct sink_record *r, lua_State *L, int order_ref);
/* Show the table at the absolute stack index `table` to the sinks (the previous record is
 * forgotten). The caller drops what the sinks leave above it when they are done. */
static inline void record_begin(struct sink_record *r, int table)
{
    r->table = table;
    r->json_state = 0;
    r->fields_state = 0;
    r->nfields = 0;
}
/* Encode the record's JSON line now (sink_record_json then returns it). -1 and err when JSON
 * cannot hold it. */
int record_encode(struct sink_record *r, struct rn_err *err);
void record_free(struct sink_record *r);

/* deadletter.c */
/* Push a dead-letter table: why (stage, reason), where from (position, and the fields of the
 * source's description at info_idx), what (the record at record_idx, the model's answer);
 * info_idx and record_idx may be 0. */
void deadletter_push(struct pipeline *p, const char *stage, const char *reason, const struct source_pos *pos,
                     int info_idx, int record_idx, const char *model_text);
/* Write the dead letter at stack index idx to the errors sink (or stderr) and return its
 * number + 1 (what the errors sink must acknowledge), 0 on stderr; -1 with err when the
 * errors sink failed or refused it. */
int64_t deadletter_write(struct pipeline *p, int idx, struct rn_err *err);

/* checkpoint.c */
/* Read the checkpoint file when there is one to resume from (--resume, or always in stream
 * mode); sets env->resume to whether there is. *state is NULL when there is none. */
int checkpoint_load(struct pipeline *p, json_t **state, struct rn_err *err);
int checkpoint_restore(struct pipeline *p, json_t *state, struct rn_err *err);
/* Flush every sink, wait for their acknowledgements, dead-letter what they rejected, commit
 * the source and write the checkpoint file. */
int checkpoint_take(struct pipeline *p, struct rn_err *err);
/* checkpoint_take with the spare descriptor lent to it. When no descriptor is free even so (an
 * open failed with EMFILE or ENFILE), nothing has failed: 1 after one note (the model is told
 * to use fewer), and the caller tries again after CHECKPOINT_RETRY_MS. */
#define CHECKPOINT_RETRY_MS 500
int checkpoint_spared(struct pipeline *p, struct rn_err *err);
/* The checkpoint that must be made (the end of the run, a drain): put off for want of
 * descriptors, it is tried again for a while, then the job fails. */
int checkpoint_final(struct pipeline *p, struct rn_err *err);

/* summary.c */
void summary_progress(struct pipeline *p, double now);
void summary_print(struct pipeline *p, const char *status, double elapsed);
int summary_write_json(struct pipeline *p, const char *status, double elapsed, const char *error, struct rn_err *err);
/* With --metrics-file: the job's metrics registry in Prometheus text format, written
 * atomically (node_exporter's textfile collector reads such files). */
int summary_write_metrics(struct pipeline *p, struct rn_err *err);

#endif
