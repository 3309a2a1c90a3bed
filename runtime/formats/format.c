/* format.c: the one table of record formats (see format.h). A new format is a new file plus
 * one row here. */
#include "formats/format.h"

#include <stdlib.h>
#include <string.h>

extern const struct format_ops json_format, csv_format, text_format, avro_format;

static const struct format_ops *const formats[] = {&json_format, &csv_format, &text_format, &avro_format, NULL};

static int usable(const struct format_ops *f, enum format_use use)
{
    return use == FORMAT_DECODE ? f->decode != NULL : f->encode != NULL;
}

const struct format_ops *format_find(const char *name, enum format_use use)
{
    for (const struct format_ops *const *f = formats; *f; f++)
        if (strcmp((*f)->name, name) == 0 && usable(*f, use)) return *f;
    return NULL;
}

const struct format_ops *format_lookup(const char *name, enum format_use use, const char *where, const char *plugin,
                                       struct rn_err *err)
{
    const struct format_ops *f = format_find(name, use);
    if (f) return f;
    struct buf names;
    buf_init(&names);
    format_names(&names, use);
    rn_fail(err, "%s: %s: format must be %s, not '%s'", where, plugin, names.data, name);
    buf_free(&names);
    return NULL;
}

void format_names(struct buf *out, enum format_use use)
{
    size_t count = 0, total = 0;
    for (const struct format_ops *const *f = formats; *f; f++) total += usable(*f, use);
    for (const struct format_ops *const *f = formats; *f; f++) {
        if (!usable(*f, use)) continue;
        if (count) buf_puts(out, count + 1 == total ? " or " : ", ");
        buf_printf(out, "\"%s\"", (*f)->name);
        count++;
    }
}

int format_check_utf8(const char *data, size_t len, struct rn_err *err)
{
    size_t bad;
    if (rn_utf8_valid(data, len, &bad)) return 0;
    return rn_fail(err, "the value is not valid UTF-8 (byte %zu)", bad + 1);
}

int format_order_columns(const struct format_args *args, struct rn_err *err)
{
    lua_State *L = args->env->L;
    size_t n;
    char **columns = opt_string_list(L, args->opts, "columns", &n);
    for (size_t i = 0; i < n; i++) {
        fieldorder_add(args->env, columns[i]);
        free(columns[i]);
    }
    free(columns);
    if (opt_push(L, args->opts, "types")) {
        lua_pop(L, 1);
        return rn_fail(err, "%s: %s: types applies to format = \"csv\" only (JSON values carry their types)",
                       args->where, args->plugin);
    }
    return 0;
}
