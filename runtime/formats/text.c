/* text.c: the "text" record format: the whole value, as it is, is the field `value` (a
 * message without a value makes a record without it). Decoding only. */
#include <lauxlib.h>
#include <stdlib.h>

#include "formats/format.h"

struct text_codec {
    int extra_fields;
};

static void *text_open(const struct format_args *args, enum format_use use, struct rn_err *err)
{
    (void)use;
    if (format_order_columns(args, err)) return NULL;
    fieldorder_add(args->env, "value");
    struct text_codec *t = rn_calloc(1, sizeof *t);
    t->extra_fields = args->extra_fields;
    return t;
}

static int text_decode(void *self, lua_State *L, const char *data, size_t len, struct rn_err *err)
{
    struct text_codec *t = self;
    if (data && format_check_utf8(data, len, err)) return -1;
    lua_createtable(L, 0, 1 + t->extra_fields);
    if (data) {
        lua_pushlstring(L, data, len);
        lua_setfield(L, -2, "value");
    }
    return 0;
}

static void text_close(void *self) { free(self); }

const struct format_ops text_format = {
    .name = "text",
    .decodes_no_value = 1,
    .open = text_open,
    .decode = text_decode,
    .close = text_close,
};
