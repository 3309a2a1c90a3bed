/* stdout_sink.c: sink.stdout, records printed to standard output, as JSON lines or as
 * readable `field=value` lines. */
#include <errno.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/json.h"
#include "engine/plugin.h"

struct stdout_sink {
    struct job_env *env;
    int pretty;
    struct buf line;
};

static const struct option_spec stdout_options[] = {
    {"format", OPT_ENUM, 0, "json", .help = "json (one object per line) or text (field=value pairs)",
     .choices = OPT_CHOICES("json", "text")},
    {NULL},
};

static void *stdout_open(struct job_env *env, int opts, struct rn_err *err)
{
    (void)err;
    const char *format = opt_string(env->L, opts, "format", "json"); /* json or text: checked */
    struct stdout_sink *s = rn_calloc(1, sizeof *s);
    s->env = env;
    s->pretty = strcmp(format, "text") == 0;
    buf_init(&s->line);
    return s;
}

/* text: name=value pairs in field order, strings bare when nothing in them needs quoting,
 * other values as JSON */
static int put_text(struct stdout_sink *s, struct sink_record *record, struct rn_err *err)
{
    lua_State *L = s->env->L;
    size_t n;
    const struct sink_field *fields = sink_record_fields(record, &n, err);
    if (!fields) return -1;
    buf_clear(&s->line);
    for (size_t i = 0; i < n; i++) {
        if (i) buf_putc(&s->line, ' ');
        buf_put(&s->line, fields[i].name, fields[i].name_len);
        buf_putc(&s->line, '=');
        size_t len;
        const char *text = lua_type(L, fields[i].value) == LUA_TSTRING ? lua_tolstring(L, fields[i].value, &len) : NULL;
        if (text && len > 0 && strlen(text) == len && !strpbrk(text, " \"=\n\t")) {
            buf_put(&s->line, text, len);
        } else if (json_encode(L, fields[i].value, LUA_NOREF, &s->line, err)) {
            return rn_wrap(err, "field '%s'", fields[i].name);
        }
    }
    buf_putc(&s->line, '\n');
    return 0;
}

static int stdout_write(void *self, uint64_t seq, struct sink_record *record, struct rn_err *err)
{
    struct stdout_sink *s = self;
    (void)seq;
    const char *line;
    size_t len;
    if (!s->pretty) {
        if (!(line = sink_record_json(record, &len, err))) return SINK_REJECTED;
        if (fwrite(line, 1, len, stdout) != len || putchar('\n') == EOF)
            return rn_fail(err, "write failed: %s", strerror(errno)); /* SINK_FAILED */
        return SINK_ACCEPTED;
    }
    if (put_text(s, record, err)) return SINK_REJECTED;
    if (fwrite(s->line.data, 1, s->line.len, stdout) != s->line.len)
        return rn_fail(err, "write failed: %s", strerror(errno));
    return SINK_ACCEPTED;
}

static int stdout_flush(void *self, struct rn_err *err)
{
    (void)self;
    if (fflush(stdout) != 0) return rn_fail(err, "flush failed: %s", strerror(errno));
    return 0;
}

static void stdout_close(void *self)
{
    struct stdout_sink *s = self;
    fflush(stdout);
    buf_free(&s->line);
    free(s);
}

const struct sink_ops stdout_sink = {
    .version = SINK_INTERFACE_VERSION,
    .name = "stdout",
    .summary = "standard output, as JSON lines or readable text",
    .options = stdout_options,
    .capabilities = SINK_WANTS_JSON, /* format = "json"; acknowledged at write */
    .open = stdout_open,
    .write = stdout_write,
    .flush = stdout_flush,
    .close = stdout_close,
};
