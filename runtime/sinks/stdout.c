/* stdout_sink.c: sink.stdout, records printed to standard output, as JSON lines or as
 * readable `field=value` lines. */
#include <errno.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
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

static int stdout_write(void *self, int rec, const char *json, size_t json_len, struct rn_err *err)
{
    struct stdout_sink *s = self;
    (void)rec;
    if (!s->pretty) {
        if (fwrite(json, 1, json_len, stdout) != json_len || putchar('\n') == EOF)
            return rn_fail(err, "write failed: %s", strerror(errno));
        return 0;
    }
    buf_clear(&s->line);
    buf_put(&s->line, json, json_len);
    {
        /* text: the JSON object's members as name=value, strings unquoted when simple */
        json_error_t jerr;
        json_t *obj = json_loadb(s->line.data, s->line.len, JSON_PRESERVE_ORDER, &jerr);
        buf_clear(&s->line);
        const char *key;
        json_t *v;
        json_object_foreach(obj, key, v) {
            if (s->line.len) buf_putc(&s->line, ' ');
            buf_printf(&s->line, "%s=", key);
            if (json_is_string(v) && !strpbrk(json_string_value(v), " \"=\n\t") && json_string_length(v) > 0) {
                buf_puts(&s->line, json_string_value(v));
            } else {
                char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
                buf_puts(&s->line, text ? text : "?");
                free(text);
            }
        }
        json_decref(obj);
    }
    buf_putc(&s->line, '\n');
    if (fwrite(s->line.data, 1, s->line.len, stdout) != s->line.len)
        return rn_fail(err, "write failed: %s", strerror(errno));
    return 0;
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
    .name = "stdout",
    .summary = "standard output, as JSON lines or readable text",
    .options = stdout_options,
    .open = stdout_open,
    .write = stdout_write,
    .flush = stdout_flush,
    .close = stdout_close,
};
