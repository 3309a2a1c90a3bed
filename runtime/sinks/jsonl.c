/* jsonl_sink.c: sink.jsonl, one JSON object per line in a file (see file_writer.h for the
 * crash and resume guarantees). Keys follow the job's field order. A record is acknowledged
 * when it is written to the buffer, durable at the next flush. */
#include <lauxlib.h>
#include <stdlib.h>

#include "core/file_writer.h"
#include "formats/json.h"
#include "engine/plugin.h"

struct jsonl_sink {
    struct job_env *env;
    struct file_writer out;
};

static const struct option_spec jsonl_options[] = {
    {"path", OPT_STRING, 1, NULL, .help = "the output file (parent directories are created)"},
    {"append", OPT_BOOLEAN, 0, "false", .help = "append to the file instead of replacing it"},
    {"fsync", OPT_BOOLEAN, 0, "true", .help = "fsync at every checkpoint"},
    {NULL},
};

static void *jsonl_open(struct job_env *env, int opts, struct rn_err *err)
{
    lua_State *L = env->L;
    struct jsonl_sink *s = rn_calloc(1, sizeof *s);
    s->env = env;
    if (fw_open(&s->out, opt_string(L, opts, "path", NULL), opt_boolean(L, opts, "append", 0) || env->resume,
                opt_boolean(L, opts, "fsync", 1), err)) {
        fw_close(&s->out);
        free(s);
        return NULL;
    }
    return s;
}

static int jsonl_write(void *self, uint64_t seq, struct sink_record *record, struct rn_err *err)
{
    struct jsonl_sink *s = self;
    (void)seq;
    size_t len;
    const char *json = sink_record_json(record, &len, err);
    if (!json) return SINK_REJECTED;
    buf_put(&s->out.pending, json, len);
    buf_putc(&s->out.pending, '\n');
    return fw_record_done(&s->out, err) ? SINK_FAILED : SINK_ACCEPTED;
}

static int jsonl_flush(void *self, struct rn_err *err) { return fw_flush(&((struct jsonl_sink *)self)->out, err); }
static int jsonl_save(void *self, json_t *st, struct rn_err *err) { return fw_save(&((struct jsonl_sink *)self)->out, st, err); }
static int jsonl_restore(void *self, json_t *st, struct rn_err *err) { return fw_restore(&((struct jsonl_sink *)self)->out, st, err); }

static void jsonl_close(void *self)
{
    struct jsonl_sink *s = self;
    fw_close(&s->out);
    free(s);
}

const struct sink_ops jsonl_sink = {
    .version = SINK_INTERFACE_VERSION,
    .name = "jsonl",
    .summary = "JSON Lines file: one object per record",
    .options = jsonl_options,
    .capabilities = SINK_WANTS_JSON, /* acknowledged at write, durable at flush */
    .open = jsonl_open,
    .write = jsonl_write,
    .flush = jsonl_flush,
    .save = jsonl_save,
    .restore = jsonl_restore,
    .close = jsonl_close,
};
