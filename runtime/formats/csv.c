/* csv.c: CSV fields out (see csv.h), and the "csv" record format: a value is exactly one row
 * of exactly `columns` fields, typed by `types` when decoded. */
#include "formats/csv.h"

#include <csv.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "formats/field_type.h"
#include "formats/format.h"
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

int csv_put_row(struct buf *out, lua_State *L, int rec, char *const *columns, size_t ncolumns, char delimiter,
                struct buf *scratch, struct rn_err *err)
{
    rec = lua_absindex(L, rec);
    size_t mark = out->len;
    for (size_t i = 0; i < ncolumns; i++) {
        if (i) buf_putc(out, delimiter);
        lua_getfield(L, rec, columns[i]);
        int rc = csv_put_value(out, L, -1, delimiter, scratch, err);
        lua_pop(L, 1);
        if (rc) {
            buf_truncate(out, mark);
            return rn_wrap(err, "column %s", columns[i]);
        }
    }
    return 0;
}

/* ---- the record format ---- */

struct csv_codec {
    char **columns;
    size_t ncolumns;
    enum field_type *types;      /* decoding: each column's type */
    int extra_fields;
    struct csv_parser parser;
    int parser_ready;
    struct buf fields;           /* the fields of the value being parsed, NUL-separated */
    size_t *field_off, *field_len, nfields, field_cap;
    int rows;
    struct buf scratch;          /* encoding: a table field's JSON */
};

static void csv_codec_close(void *self);

/* types = { column = "integer", ... }: each column's type (string when not named). */
static int read_types(struct csv_codec *c, const struct format_args *args, struct rn_err *err)
{
    lua_State *L = args->env->L;
    if (!opt_push(L, args->opts, "types")) return 0;
    int types = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, types)) {
        const char *field = lua_tostring(L, -2); /* a name and a type name: checked */
        enum field_type t = FT_STRING;
        field_type_parse(lua_tostring(L, -1), &t);
        size_t i = 0;
        while (i < c->ncolumns && strcmp(c->columns[i], field)) i++;
        if (i == c->ncolumns) {
            rn_fail(err, "%s: %s: types.%s: not one of the columns", args->where, args->plugin, field);
            lua_settop(L, types - 1);
            return -1;
        }
        c->types[i] = t;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return 0;
}

/* Strict RFC 4180, spaces kept as data. */
static int parser_init(struct csv_codec *c)
{
    if (csv_init(&c->parser, CSV_STRICT | CSV_STRICT_FINI) != 0) return -1;
    c->parser_ready = 1;
    csv_set_space_func(&c->parser, field_type_no_space);
    return 0;
}

static void *csv_codec_open(const struct format_args *args, enum format_use use, struct rn_err *err)
{
    struct csv_codec *c = rn_calloc(1, sizeof *c);
    buf_init(&c->fields);
    buf_init(&c->scratch);
    c->extra_fields = args->extra_fields;
    c->columns = opt_string_list(args->env->L, args->opts, "columns", &c->ncolumns);
    if (c->ncolumns == 0) {
        rn_fail(err, "%s: %s: format = \"csv\" needs columns = { \"%s\", ... }", args->where, args->plugin,
                use == FORMAT_DECODE ? "name" : "field");
        goto fail;
    }
    if (use == FORMAT_ENCODE) return c;
    c->types = rn_calloc(c->ncolumns, sizeof *c->types); /* FT_STRING is 0 */
    if (read_types(c, args, err)) goto fail;
    if (parser_init(c)) {
        rn_fail(err, "%s: %s: cannot initialise the CSV parser", args->where, args->plugin);
        goto fail;
    }
    for (size_t i = 0; i < c->ncolumns; i++) fieldorder_add(args->env, c->columns[i]);
    return c;
fail:
    csv_codec_close(c);
    return NULL;
}

static void on_field(void *data, size_t len, void *opaque)
{
    struct csv_codec *c = opaque;
    if (c->rows > 0) return; /* only the first row is kept; more rows make the value bad */
    if (c->nfields == c->field_cap) {
        c->field_cap = c->field_cap ? c->field_cap * 2 : 32;
        c->field_off = rn_realloc(c->field_off, c->field_cap * sizeof *c->field_off);
        c->field_len = rn_realloc(c->field_len, c->field_cap * sizeof *c->field_len);
    }
    c->field_off[c->nfields] = c->fields.len;
    c->field_len[c->nfields] = len;
    c->nfields++;
    buf_put(&c->fields, data ? data : "", data ? len : 0);
    buf_putc(&c->fields, '\0');
}

static void on_row(int terminator, void *opaque)
{
    (void)terminator;
    ((struct csv_codec *)opaque)->rows++;
}

static int csv_codec_decode(void *self, lua_State *L, const char *data, size_t len, struct rn_err *err)
{
    struct csv_codec *c = self;
    if (format_check_utf8(data, len, err)) return -1;
    buf_clear(&c->fields);
    c->nfields = 0;
    c->rows = 0;
    size_t parsed = csv_parse(&c->parser, data, len, on_field, on_row, c);
    int malformed = parsed < len;
    if (csv_fini(&c->parser, on_field, on_row, c) != 0) {
        /* csv_fini resets the parser only when it succeeds: left in the open quote, it would
         * read the next value as more of this field */
        malformed = 1;
        csv_free(&c->parser);
        c->parser_ready = 0;
        if (parser_init(c)) return rn_fail(err, "cannot initialise the CSV parser again");
    }
    if (malformed) return rn_fail(err, "the value is not valid CSV (a quote inside an unquoted field, or unbalanced quotes)");
    if (c->rows != 1) return rn_fail(err, "the value holds %d CSV rows, expected one", c->rows);
    if (c->nfields != c->ncolumns) return rn_fail(err, "expected %zu CSV fields, got %zu", c->ncolumns, c->nfields);
    lua_createtable(L, 0, (int)c->ncolumns + c->extra_fields);
    for (size_t i = 0; i < c->ncolumns; i++) {
        const char *f = c->fields.data + c->field_off[i];
        if (field_type_push(L, c->types[i], f, c->field_len[i])) {
            lua_pop(L, 1);
            return rn_fail(err, "column '%s': '%.60s' is not a valid %s", c->columns[i], f, field_type_name(c->types[i]));
        }
        lua_setfield(L, -2, c->columns[i]);
    }
    return 0;
}

static int csv_codec_encode(void *self, lua_State *L, int rec, struct buf *out, struct rn_err *err)
{
    struct csv_codec *c = self;
    return csv_put_row(out, L, rec, c->columns, c->ncolumns, ',', &c->scratch, err);
}

static void csv_codec_close(void *self)
{
    struct csv_codec *c = self;
    if (!c) return;
    for (size_t i = 0; i < c->ncolumns; i++) free(c->columns[i]);
    free(c->columns);
    free(c->types);
    if (c->parser_ready) csv_free(&c->parser);
    buf_free(&c->fields);
    free(c->field_off);
    free(c->field_len);
    buf_free(&c->scratch);
    free(c);
}

const struct format_ops csv_format = {
    .name = "csv",
    .open = csv_codec_open,
    .decode = csv_codec_decode,
    .encode = csv_codec_encode,
    .close = csv_codec_close,
};
