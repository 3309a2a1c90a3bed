/* csv_format.c: CSV fields out (see csv_format.h). */
#include "formats/csv.h"

#include <lauxlib.h>
#include <string.h>

#include "formats/json.h"

void csv_put_text(struct buf *out, const char *text, size_t n, char delimiter)
{
    int quote = 0;
    for (size_t i = 0; i < n && !quote; i++) {
        char c = text[i];
        quote = c == delimiter || c == '"' || c == '\n' || c == '\r';
    }
    if (!quote) {
        buf_put(out, text, n);
        return;
    }
    buf_putc(out, '"');
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        if (text[i] != '"') continue;
        buf_put(out, text + run, i - run + 1);
        buf_putc(out, '"');
        run = i + 1;
    }
    buf_put(out, text + run, n - run);
    buf_putc(out, '"');
}

int csv_put_value(struct buf *out, lua_State *L, int idx, char delimiter, struct buf *scratch, struct rn_err *err)
{
    size_t n;
    const char *text;
    switch (lua_type(L, idx)) {
    case LUA_TNIL: return 0;
    case LUA_TBOOLEAN: buf_puts(out, lua_toboolean(L, idx) ? "true" : "false"); return 0;
    case LUA_TNUMBER: /* as in the JSON line (lua_tolstring would keep only 14 digits) */
        json_put_number(L, idx, out);
        return 0;
    case LUA_TSTRING:
        text = lua_tolstring(L, idx, &n);
        csv_put_text(out, text, n, delimiter);
        return 0;
    default:
        buf_clear(scratch);
        if (json_encode(L, idx, LUA_NOREF, scratch, err)) return -1;
        csv_put_text(out, scratch->data, scratch->len, delimiter);
        return 0;
    }
}
