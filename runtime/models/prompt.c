/* prompt.c: prompt templates and prompt functions (see prompt.h).
 *
 * A template is parsed once into segments (literal text or a field path) that all point into
 * one arena, so rendering a record is a walk over the segments with no parsing and no
 * allocation beyond the caller's reused buffer. */
#include "models/prompt.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include "lua/job.h"

struct segment {
    int is_field;
    size_t offset, len;           /* literal: its bytes in the arena; field: its full name */
    size_t path_first, path_count; /* field: its dot-separated parts, in path_offsets */
};

struct prompt {
    lua_State *L;
    int function_ref;             /* LUA_NOREF for a template */
    struct segment *segments;
    size_t segment_count;
    size_t field_count;
    struct buf arena;             /* literal bytes and NUL-terminated names and name parts */
    size_t *path_offsets;         /* arena offsets of each field's name parts */
};

static struct prompt *prompt_new(lua_State *L)
{
    struct prompt *p = rn_calloc(1, sizeof *p);
    p->L = L;
    p->function_ref = LUA_NOREF;
    buf_init(&p->arena);
    return p;
}

void prompt_free(struct prompt *p)
{
    if (!p) return;
    if (p->function_ref != LUA_NOREF) luaL_unref(p->L, LUA_REGISTRYINDEX, p->function_ref);
    free(p->segments);
    free(p->path_offsets);
    buf_free(&p->arena);
    free(p);
}

struct prompt *prompt_from_function(lua_State *L, int fn)
{
    struct prompt *p = prompt_new(L);
    lua_pushvalue(L, fn);
    p->function_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return p;
}

size_t prompt_field_count(const struct prompt *p) { return p->field_count; }

static int is_space(char c) { return c == ' ' || c == '\t'; }

/* Append literal bytes to the last segment when it is literal and ends where they start. */
static void add_literal(struct prompt *p, size_t *cap, const char *s, size_t n)
{
    if (n == 0) return;
    struct segment *last = p->segment_count ? &p->segments[p->segment_count - 1] : NULL;
    if (last && !last->is_field && last->offset + last->len == p->arena.len) {
        buf_put(&p->arena, s, n);
        last->len += n;
        return;
    }
    if (p->segment_count == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        p->segments = rn_realloc(p->segments, *cap * sizeof *p->segments);
    }
    p->segments[p->segment_count++] = (struct segment){0, p->arena.len, n, 0, 0};
    buf_put(&p->arena, s, n);
}

struct prompt *prompt_parse(lua_State *L, const char *text, size_t len, struct rn_err *err)
{
    struct prompt *p = prompt_new(L);
    size_t segment_cap = 0, path_cap = 0, path_len = 0;
    size_t i = 0, literal_start = 0;
    while (i + 1 < len) {
        if (!(text[i] == '{' && text[i + 1] == '{')) { i++; continue; }
        add_literal(p, &segment_cap, text + literal_start, i - literal_start);
        if (i + 3 < len && text[i + 2] == '{' && text[i + 3] == '{') { /* {{{{ -> {{ */
            add_literal(p, &segment_cap, "{{", 2);
            i += 4;
            literal_start = i;
            continue;
        }
        size_t open = i, start = i + 2, end = start;
        while (end + 1 < len && !(text[end] == '}' && text[end + 1] == '}')) {
            if (text[end] == '{' || text[end] == '\n' || text[end] == '\r') {
                rn_fail(err, "prompt: bad placeholder at byte %zu: a field name holds no braces or line "
                        "breaks (write {{{{ for a literal {{)", open + 1);
                goto fail;
            }
            end++;
        }
        if (end + 1 >= len) {
            rn_fail(err, "prompt: unclosed {{ at byte %zu (write {{{{ for a literal {{)", open + 1);
            goto fail;
        }
        size_t name_start = start, name_end = end;
        while (name_start < name_end && is_space(text[name_start])) name_start++;
        while (name_end > name_start && is_space(text[name_end - 1])) name_end--;
        size_t name_len = name_end - name_start;
        const char *name = text + name_start;
        if (name_len == 0) {
            rn_fail(err, "prompt: empty placeholder {{}} at byte %zu", open + 1);
            goto fail;
        }
        int bad_name = name[0] == '.' || name[name_len - 1] == '.';
        for (size_t k = 0; k < name_len; k++)
            if (name[k] == '\0' || (name[k] == '.' && k + 1 < name_len && name[k + 1] == '.')) bad_name = 1;
        if (bad_name) {
            rn_fail(err, "prompt: bad field name '%.*s' at byte %zu", (int)name_len, name, open + 1);
            goto fail;
        }
        if (p->segment_count == segment_cap) {
            segment_cap = segment_cap ? segment_cap * 2 : 8;
            p->segments = rn_realloc(p->segments, segment_cap * sizeof *p->segments);
        }
        struct segment *seg = &p->segments[p->segment_count++];
        seg->is_field = 1;
        seg->offset = p->arena.len;
        seg->len = name_len;
        buf_put(&p->arena, name, name_len);
        buf_putc(&p->arena, '\0');
        seg->path_first = path_len;
        seg->path_count = 0;
        size_t part = 0;
        for (size_t k = 0; k <= name_len; k++) {
            if (k < name_len && name[k] != '.') continue;
            if (path_len == path_cap) {
                path_cap = path_cap ? path_cap * 2 : 8;
                p->path_offsets = rn_realloc(p->path_offsets, path_cap * sizeof *p->path_offsets);
            }
            p->path_offsets[path_len++] = p->arena.len;
            buf_put(&p->arena, name + part, k - part);
            buf_putc(&p->arena, '\0');
            seg->path_count++;
            part = k + 1;
        }
        p->field_count++;
        i = end + 2;
        literal_start = i;
    }
    add_literal(p, &segment_cap, text + literal_start, len - literal_start);
    return p;
fail:
    prompt_free(p);
    return NULL;
}

/* Render one field: push it, check its type, append it. */
static int render_field(const struct prompt *p, const struct segment *seg, int rec, struct buf *out,
                        struct rn_err *err)
{
    lua_State *L = p->L;
    const char *name = p->arena.data + seg->offset;
    lua_pushvalue(L, rec);
    for (size_t k = 0; k < seg->path_count; k++) {
        if (lua_type(L, -1) != LUA_TTABLE) {
            lua_pop(L, 1);
            return rn_fail(err, "prompt: field '%s' is missing", name);
        }
        lua_getfield(L, -1, p->arena.data + p->path_offsets[seg->path_first + k]);
        lua_remove(L, -2);
    }
    int rc = 0;
    switch (lua_type(L, -1)) {
    case LUA_TSTRING:
    case LUA_TNUMBER: { /* lua_tolstring converts this stack copy only, as tostring would */
        size_t n;
        const char *s = lua_tolstring(L, -1, &n);
        buf_put(out, s, n);
        break;
    }
    case LUA_TBOOLEAN:
        buf_puts(out, lua_toboolean(L, -1) ? "true" : "false");
        break;
    case LUA_TNIL:
        rc = rn_fail(err, "prompt: field '%s' is missing", name);
        break;
    default:
        rc = rn_fail(err, "prompt: field '%s' is a %s, not a string, number or boolean", name,
                     luaL_typename(L, -1));
    }
    lua_pop(L, 1);
    return rc;
}

static int render_function(const struct prompt *p, int rec, struct buf *out, struct rn_err *err)
{
    lua_State *L = p->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->function_ref);
    lua_pushvalue(L, rec);
    if (luajob_call(L, 1, 1, err)) {
        char *traceback = strstr(err->msg, "\nstack traceback:");
        if (traceback) *traceback = '\0';
        return rn_wrap(err, "prompt");
    }
    int rc = 0;
    int type = lua_type(L, -1);
    if (type == LUA_TSTRING || type == LUA_TNUMBER) {
        size_t n;
        const char *s = lua_tolstring(L, -1, &n);
        buf_put(out, s, n);
    } else {
        rc = rn_fail(err, "prompt: the prompt function returned %s, expected a string", luaL_typename(L, -1));
    }
    lua_pop(L, 1);
    return rc;
}

int prompt_render(const struct prompt *p, int rec, struct buf *out, struct rn_err *err)
{
    rec = lua_absindex(p->L, rec);
    if (p->function_ref != LUA_NOREF) return render_function(p, rec, out, err);
    buf_reserve(out, p->arena.len);
    out->data[out->len] = '\0'; /* an empty prompt is still a string */
    for (size_t i = 0; i < p->segment_count; i++) {
        const struct segment *seg = &p->segments[i];
        if (!seg->is_field) buf_put(out, p->arena.data + seg->offset, seg->len);
        else if (render_field(p, seg, rec, out, err)) return -1;
    }
    return 0;
}
