/* source.c: source.csv, records from a CSV file (or a directory of them) parsed with libcsv:
 * the plugin's options and ops, opening files, headers and fields, checkpoints.
 *
 * Parsing is parse.c's, batches and the reader thread reader.c's (csv_int.h is the state they
 * share). A row with the wrong width, invalid UTF-8 or a value that does not convert to its
 * declared type is returned as SRC_BAD (the pipeline dead-letters it with the line number). */
#include <dirent.h>
#include <fnmatch.h>
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fingerprint.h"
#include "lua/job.h"
#include "sources/csv/csv_int.h"

/* select: { field = "Column", ... } or { "Column", ... }; the columns themselves are known
 * once the file is open (setup_fields). */
static int check_select(lua_State *L, int idx, struct rn_err *err)
{
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int ok = lua_type(L, -1) == LUA_TSTRING && (lua_type(L, -2) == LUA_TSTRING || lua_isinteger(L, -2));
        lua_pop(L, 1);
        if (!ok) {
            lua_pop(L, 1);
            return rn_fail(err, "expected { field = \"Column\", ... } or { \"Column\", ... } (strings)");
        }
    }
    return 0;
}

#define FIELD_TYPES OPT_CHOICES("string", "integer", "number", "boolean")

static const struct option_spec csv_options[] = {
    {"path", OPT_STRING, 1, NULL,
     .help = "the CSV file to read, or a directory of CSV files (read in name order; in stream mode new files are picked up)"},
    {"header", OPT_BOOLEAN, 0, "true", .help = "the first row names the columns"},
    {"columns", OPT_STRING_OR_LIST, 0, NULL, .help = "column names when the file has no header (or to rename all)"},
    {"select", OPT_TABLE, 0, NULL, .help = "{ field = \"Column\", ... } or { \"Column\", ... }: columns to keep, renamed",
     .default_note = "all", .check = check_select},
    {"types", OPT_MAP, 0, NULL, .help = "{ field = type }: the type of a selected field", .default_note = "string",
     .value = OPT_VALUE(OPT_ENUM, .choices = FIELD_TYPES)},
    {"delimiter", OPT_BYTE, 0, ",", .help = "field separator (\"\\t\" for TSV)"},
    {"quote", OPT_BYTE, 0, "\"", .help = "quote character"},
    {"follow", OPT_BOOLEAN, 0, NULL, .help = "at the end of the file, wait for more lines (tail -f)", .default_note = "stream mode"},
    {"pattern", OPT_STRING, 0, "*.csv", .help = "when path is a directory: the files to read, in name order"},
    {"max_record_bytes", OPT_SIZE, 0, "64MB", .help = "a record larger than this is dead-lettered", OPT_AT_LEAST(1)},
    {NULL},
};

static int column_index(struct csv_source *c, const char *name)
{
    for (size_t i = 0; i < c->ncolumns; i++)
        if (strcmp(c->columns[i], name) == 0) return (int)i;
    return -1;
}

/* "; did you mean Summary?" or " (its columns: Id, Summary, ...)" for a name among names. */
static void suggest(char *out, size_t n, const char *name, const char *const *names, size_t count)
{
    const char *near = options_closest(name, names, count);
    if (near) { snprintf(out, n, "; did you mean %s?", near); return; }
    size_t used = (size_t)snprintf(out, n, " (they are");
    for (size_t i = 0; i < count && used < n; i++) used += (size_t)snprintf(out + used, n - used, " %s%s", names[i], i + 1 < count ? "," : ")");
}

static int field_compare(const void *a, const void *b)
{
    const struct out_field *x = a, *y = b;
    return x->column - y->column;
}

/* Build the output fields from select/types once the column names are known. */
static int setup_fields(struct csv_source *c, lua_State *L, int opts, const char *where, struct rn_err *err)
{
    size_t cap = c->ncolumns + 1;
    c->fields = rn_calloc(cap, sizeof *c->fields);
    c->nfields = 0;
    if (opt_push(L, opts, "select")) {
        int sel = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, sel)) {
            /* strings both, or a position and a string: checked (check_select) */
            const char *col_name = lua_tostring(L, -1);
            const char *out_name = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : col_name;
            int col = column_index(c, col_name);
            if (col < 0) {
                char hint[400];
                suggest(hint, sizeof hint, col_name, (const char *const *)c->columns, c->ncolumns);
                rn_fail(err, "%s: source.csv: select: column '%s' is not in %s%s", where, col_name, c->path, hint);
                lua_pop(L, 3);
                return -1;
            }
            if (c->nfields == cap) c->fields = rn_realloc(c->fields, (cap *= 2) * sizeof *c->fields);
            c->fields[c->nfields].name = rn_strdup(out_name);
            c->fields[c->nfields].column = col;
            c->fields[c->nfields].type = FT_STRING;
            c->nfields++;
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        qsort(c->fields, c->nfields, sizeof *c->fields, field_compare);
    } else {
        for (size_t i = 0; i < c->ncolumns; i++) {
            c->fields[i].name = rn_strdup(c->columns[i]);
            c->fields[i].column = (int)i;
            c->fields[i].type = FT_STRING;
        }
        c->nfields = c->ncolumns;
    }
    if (opt_push(L, opts, "types")) {
        int types = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, types)) {
            const char *fname = lua_tostring(L, -2); /* a name and one of FIELD_TYPES: checked */
            enum field_type t = FT_STRING;
            field_type_parse(lua_tostring(L, -1), &t);
            size_t i;
            for (i = 0; i < c->nfields; i++)
                if (strcmp(c->fields[i].name, fname) == 0) break;
            if (i == c->nfields) {
                const char *names[64];
                size_t count = 0;
                for (size_t k = 0; k < c->nfields && count < 64; k++) names[count++] = c->fields[k].name;
                char hint[400];
                suggest(hint, sizeof hint, fname, names, count);
                rn_fail(err, "%s: source.csv: types.%s: no such field among the selected ones%s", where, fname, hint);
                lua_pop(L, 3);
                return -1;
            }
            c->fields[i].type = t;
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    for (size_t i = 0; i < c->nfields; i++) fieldorder_add(c->env, c->fields[i].name);
    lua_createtable(L, (int)c->nfields, 0); /* the names as Lua strings, made once */
    for (size_t i = 0; i < c->nfields; i++) {
        lua_pushstring(L, c->fields[i].name);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    c->names_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    c->wanted = rn_calloc(c->ncolumns, 1);
    for (size_t i = 0; i < c->nfields; i++) c->wanted[c->fields[i].column] = 1;
    return 0;
}

static void csv_close(void *self);

static int name_matches(const struct csv_source *c, const char *name)
{
    return name[0] != '.' && fnmatch(c->pattern, name, 0) == 0;
}

/* The first file in the directory (name order) after `after` (NULL: the first of all), or NULL.
 * The caller frees the result. */
static char *next_file_name(struct csv_source *c, const char *after)
{
    DIR *d = opendir(c->dir);
    if (!d) return NULL;
    char *best = NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!name_matches(c, e->d_name)) continue;
        if (after && strcmp(e->d_name, after) <= 0) continue;
        if (best && strcmp(e->d_name, best) >= 0) continue;
        char full[4096];
        struct stat st;
        snprintf(full, sizeof full, "%s/%s", c->dir, e->d_name);
        if (stat(full, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        free(best);
        best = rn_strdup(e->d_name);
    }
    closedir(d);
    return best;
}

/* Take the header row of the file just opened: the columns (first file) or a check that they
 * are the same (later files of a directory). */
static int read_header(struct csv_source *c, struct rn_err *err)
{
    struct rowbuf *b = &c->raw;
    c->reading_header = 1;
    int rc = csvsrc_parse_more(c, err);
    c->reading_header = 0;
    if (rc < 0) return rn_wrap(err, "%s: header", c->path);
    if (rc == 0) return rn_fail(err, "%s: the file is empty: expected a header row", c->path);
    struct row *r = &b->rows[b->row_next++];
    if (!c->columns) {
        c->columns = rn_calloc(r->count, sizeof *c->columns);
        for (size_t i = 0; i < r->count; i++) {
            c->columns[i] = rn_strndup(b->data.data + b->field_off[r->first + i], b->field_len[r->first + i]);
            c->ncolumns = i + 1;
            if (!rn_utf8_valid(c->columns[i], strlen(c->columns[i]), NULL))
                return rn_fail(err, "%s: line 1: header column %zu is not valid UTF-8", c->path, i + 1);
        }
    } else if (r->count != c->ncolumns) {
        return rn_fail(err, "%s: the header has %zu columns, expected %zu (%s)", c->path, r->count, c->ncolumns,
                       c->dir ? "as in the first file of the directory" : "as `columns` names");
    } else if (c->dir) {
        for (size_t i = 0; i < r->count; i++) {
            const char *name = b->data.data + b->field_off[r->first + i];
            if (strcmp(name, c->columns[i]) != 0)
                return rn_fail(err, "%s: header column %zu is '%s', expected '%s' as in the first file", c->path,
                               i + 1, name, c->columns[i]);
        }
    }
    c->header_offset = c->out_offset = r->end_offset;
    c->header_line = r->line;
    return 0;
}

/* Start reading the file at path from its beginning (reading its header when there is one). */
static int start_file(struct csv_source *c, const char *path, struct rn_err *err)
{
    if (c->fd >= 0) close(c->fd);
    csv_free(&c->parser);
    if (csvsrc_parser_reset(c, err)) return -1;
    free(c->path);
    c->path = rn_strdup(path);
    c->chunk_base = 0;
    c->chunk_len = c->chunk_pos = 0;
    c->eof = c->finished = 0;
    csvsrc_rowbuf_clear(&c->raw);
    csvsrc_batch_clear(c->out);
    c->building_bytes = 0;
    c->out_offset = 0;
    c->line = c->next_row_line = 1;
    c->file_size = 0;
    c->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (c->fd < 0) return rn_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(c->fd, &st) == 0) c->file_size = st.st_size;
    if (c->header && read_header(c, err)) return -1;
    return 0;
}

/* Once the columns are known: the output fields from select and types. */
static int ensure_fields(struct csv_source *c, struct rn_err *err)
{
    if (c->fields_ready || !c->columns) return 0;
    lua_State *L = c->env->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->opts_ref);
    int rc = setup_fields(c, L, lua_gettop(L), c->where, err);
    lua_pop(L, 1);
    if (rc == 0) c->fields_ready = 1;
    return rc;
}

/* Directory mode: open the next file after the current one. 1 when one was opened, 0 when
 * there is none (yet), -1 on error. */
static int open_next_file(struct csv_source *c, struct rn_err *err)
{
    char *name = next_file_name(c, c->current_name);
    if (!name) return 0;
    char full[4096];
    snprintf(full, sizeof full, "%s/%s", c->dir, name);
    free(c->current_name);
    c->current_name = name;
    c->file_index++;
    c->done_names = rn_realloc(c->done_names, ((size_t)c->file_index + 1) * sizeof *c->done_names);
    c->done_names[c->file_index] = rn_strdup(name);
    if (start_file(c, full, err)) return -1;
    if (ensure_fields(c, err)) return -1;
    return 1;
}

static void *csv_open(struct job_env *env, int opts, struct rn_err *err)
{
    lua_State *L = env->L;
    struct csv_source *c = rn_aligned_calloc(_Alignof(struct csv_source), sizeof *c);
    c->env = env;
    c->fd = -1;
    c->opts_ref = c->names_ref = LUA_NOREF;
    c->file_index = -1;
    const char *path = opt_string(L, opts, "path", NULL);
    c->declared_path = rn_strdup(path);
    c->path = rn_strdup(path);
    snprintf(c->where, sizeof c->where, "%s", options_where(L, opts));
    c->delimiter = (unsigned char)opt_string(L, opts, "delimiter", ",")[0]; /* one byte: checked */
    c->quote = (unsigned char)opt_string(L, opts, "quote", "\"")[0];
    c->max_record_bytes = opt_size(L, opts, "max_record_bytes", 64 << 20);
    c->parser_options = CSV_STRICT | CSV_STRICT_FINI;
    c->chunk = rn_malloc(CHUNK_SIZE);
    buf_init(&c->raw.data);
    for (int i = 0; i < BATCHES; i++) buf_init(&c->batches[i].text);
    c->out = &c->batches[0];
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->changed, NULL);
    c->header = opt_boolean(L, opts, "header", 1);
    if (csvsrc_parser_reset(c, err)) goto fail;
    lua_pushvalue(L, opts);
    c->opts_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    c->columns = opt_string_list(L, opts, "columns", &c->ncolumns);
    if (!c->header && !c->columns) {
        rn_fail(err, "%s: source.csv: header = false needs `columns`", c->where);
        goto fail;
    }
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        c->dir = rn_strdup(path);
        c->pattern = rn_strdup(opt_string(L, opts, "pattern", "*.csv"));
        c->follow = 0; /* files in a directory arrive whole; the directory is what is followed */
        if (open_next_file(c, err) < 0) goto fail;
    } else {
        c->follow = opt_boolean(L, opts, "follow", env->streaming);
        c->file_index = 0;
        c->done_names = rn_calloc(1, sizeof *c->done_names);
        c->done_names[0] = rn_strdup(path);
        if (start_file(c, path, err)) goto fail;
    }
    if (ensure_fields(c, err)) goto fail;
    c->done_file = c->file_index;
    c->done_offset = c->header_offset;
    c->done_line = c->header_line;
    return c;
fail:
    csv_close(c);
    return NULL;
}

static void push_cells(struct csv_source *c, lua_State *L, const struct batch *b, const struct item *it)
{
    const struct cell *cell = &b->cells[it->cell];
    lua_createtable(L, 0, (int)c->nfields);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->names_ref);
    for (size_t i = 0; i < c->nfields; i++, cell++) {
        lua_rawgeti(L, -1, (lua_Integer)i + 1);
        switch (cell->value.kind) {
        case FV_NIL: lua_pushnil(L); break;
        case FV_STRING: lua_pushlstring(L, b->text.data + cell->text_off, cell->text_len); break;
        case FV_INTEGER: lua_pushinteger(L, cell->value.as.integer); break;
        case FV_NUMBER: lua_pushnumber(L, cell->value.as.number); break;
        case FV_BOOLEAN: lua_pushboolean(L, cell->value.as.boolean); break;
        }
        lua_rawset(L, -4);
    }
    lua_pop(L, 1);
}

static enum source_status csv_next(void *self, struct source_pos *pos, struct rn_err *err)
{
    struct csv_source *c = self;
    lua_State *L = c->env->L;
    while (c->out->next == c->out->nitems) {
        if (c->threaded) {
            if (!c->out->last) {
                csvsrc_reader_next_batch(c);
                continue;
            }
            csvsrc_reader_stop(c); /* it has read the whole file */
        }
        csvsrc_batch_clear(c->out);
        if (c->fd < 0 || (c->finished && c->dir)) {
            if (!c->dir) return SRC_END;
            int opened = open_next_file(c, err);
            if (opened < 0) return SRC_ERROR;
            if (opened == 0) return c->env->streaming ? SRC_IDLE : SRC_END;
            continue;
        }
        if (!c->follow && !c->finished) {
            csvsrc_reader_start(c);
            if (c->threaded) continue;
        }
        csvsrc_read_rows(c, c->out);
        if (c->out->nitems == 0) {
            if (c->dir && c->finished) continue;
            return c->finished ? SRC_END : SRC_IDLE;
        }
    }
    const struct batch *b = c->out;
    const struct item *it = &b->items[c->out->next++];
    pos->partition = -1;
    pos->offset = c->out_offset = it->end_offset;
    pos->line = it->line;
    pos->file = c->file_index;
    if (it->kind == ITEM_RECORD) {
        push_cells(c, L, b, it);
        return SRC_RECORD;
    }
    rn_fail(err, "%s", b->text.data + it->text_off);
    lua_createtable(L, 0, 3);
    lua_pushstring(L, c->path);
    lua_setfield(L, -2, "file");
    if (it->kind == ITEM_BAD_ROW) {
        lua_pushinteger(L, it->line);
        lua_setfield(L, -2, "line");
        const char *msg = b->text.data + it->text_off;
        lua_pushlstring(L, msg + strlen(msg) + 1, it->raw_len);
        lua_setfield(L, -2, "raw");
    }
    return SRC_BAD;
}

static void csv_wait(void *self, int timeout_ms)
{
    (void)self;
    if (timeout_ms > 0) usleep((useconds_t)(timeout_ms > 200 ? 200 : timeout_ms) * 1000);
}

static void csv_advance(void *self, const struct source_pos *pos)
{
    struct csv_source *c = self;
    c->done_file = pos->file;
    c->done_offset = pos->offset;
    c->done_line = pos->line;
}

/* The fingerprint of the file the last acknowledged record came from, up to its end: the
 * file being read, or, in a directory, an earlier one whose last records are still finishing. */
static int save_fingerprint(struct csv_source *c, json_t *state, struct rn_err *err)
{
    if (c->done_file == c->file_index && c->fd >= 0)
        return fingerprint_save(c->fd, c->path, c->done_offset, state, err);
    if (!c->dir || c->done_file < 0) return 0;
    char full[4096];
    snprintf(full, sizeof full, "%s/%s", c->dir, c->done_names[c->done_file]);
    int fd = open(full, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0; /* finished and removed: nothing to resume in it */
    int rc = fingerprint_save(fd, full, c->done_offset, state, err);
    close(fd);
    return rc;
}

static int csv_save(void *self, json_t *state, struct rn_err *err)
{
    struct csv_source *c = self;
    json_object_set_new(state, "path", json_string(c->declared_path));
    if (c->dir && c->done_file >= 0) json_object_set_new(state, "file", json_string(c->done_names[c->done_file]));
    json_object_set_new(state, "offset", json_integer(c->done_offset));
    json_object_set_new(state, "line", json_integer(c->done_line));
    return save_fingerprint(c, state, err);
}

/* A resumed file must hold, before the checkpoint's offset, the bytes it held when the
 * checkpoint was taken; rows appended after it are fine. */
static int check_fingerprint(struct csv_source *c, json_t *state, int64_t offset, struct rn_err *err)
{
    char start_over[4400];
    snprintf(start_over, sizeof start_over,
             "to start from the beginning, run without --resume (a stream job: remove %s/%s.checkpoint.json)",
             c->env->state_dir, c->env->job_name);
    return fingerprint_check(c->fd, c->path, offset, state, start_over, err);
}

/* Lines before byte `offset` of the current file, counted (the checkpoint's line is where its
 * last record began, which says nothing of how many lines that record spanned). */
static int count_lines(struct csv_source *c, int64_t offset, int64_t *lines, struct rn_err *err)
{
    int64_t count = 0, pos = 0;
    while (pos < offset) {
        size_t want = (size_t)(offset - pos < CHUNK_SIZE ? offset - pos : CHUNK_SIZE);
        ssize_t n = pread(c->fd, c->chunk, want, pos);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return rn_fail(err, "%s: cannot read up to the checkpoint: %s", c->path, n < 0 ? strerror(errno) : "end of file");
        for (const char *p = c->chunk, *end = c->chunk + n; (p = memchr(p, '\n', (size_t)(end - p))); p++) count++;
        pos += n;
    }
    *lines = count;
    return 0;
}

/* Position the current file at a checkpointed byte offset (the start of a row). */
static int seek_to(struct csv_source *c, int64_t offset, int64_t line, struct rn_err *err)
{
    int64_t before = 0;
    if (count_lines(c, offset, &before, err)) return -1;
    if (offset > c->file_size)
        return rn_fail(err, "%s: checkpoint offset %lld is past the end of the file (%lld bytes): was it replaced?",
                       c->path, (long long)offset, (long long)c->file_size);
    if (lseek(c->fd, offset, SEEK_SET) < 0)
        return rn_fail(err, "%s: cannot seek to %lld: %s", c->path, (long long)offset, strerror(errno));
    csv_free(&c->parser);
    if (csvsrc_parser_reset(c, err)) return -1;
    c->chunk_base = offset;
    c->chunk_len = c->chunk_pos = 0;
    c->eof = c->finished = 0;
    csvsrc_rowbuf_clear(&c->raw);
    csvsrc_batch_clear(c->out);
    c->building_bytes = 0;
    c->out_offset = offset;
    c->line = c->next_row_line = before + 1;
    c->done_offset = offset;
    c->done_line = line;
    return 0;
}

static int csv_restore(void *self, json_t *state, struct rn_err *err)
{
    struct csv_source *c = self;
    json_t *off = json_object_get(state, "offset"), *line = json_object_get(state, "line");
    const char *path = json_string_value(json_object_get(state, "path"));
    if (!json_is_integer(off) || !json_is_integer(line) || !path)
        return rn_fail(err, "%s: the checkpoint has no path/offset/line", c->declared_path);
    if (strcmp(path, c->declared_path) != 0)
        return rn_fail(err, "the checkpoint is for %s but the job reads %s; start without --resume", path,
                       c->declared_path);
    if (!c->dir) {
        if (check_fingerprint(c, state, json_integer_value(off), err)) return -1;
        return seek_to(c, json_integer_value(off), json_integer_value(line), err);
    }
    const char *name = json_string_value(json_object_get(state, "file"));
    if (!name) return rn_fail(err, "%s: the checkpoint names no file of the directory", c->declared_path);
    char full[4096];
    snprintf(full, sizeof full, "%s/%s", c->dir, name);
    free(c->current_name);
    c->current_name = rn_strdup(name);
    c->file_index++;
    c->done_names = rn_realloc(c->done_names, ((size_t)c->file_index + 1) * sizeof *c->done_names);
    c->done_names[c->file_index] = rn_strdup(name);
    c->done_file = c->file_index;
    if (access(full, F_OK) != 0) { /* processed and since removed: go on with the next file */
        if (c->fd >= 0) close(c->fd);
        c->fd = -1;
        c->done_offset = json_integer_value(off);
        c->done_line = json_integer_value(line);
        return 0;
    }
    if (start_file(c, full, err) || ensure_fields(c, err)) return -1;
    if (check_fingerprint(c, state, json_integer_value(off), err)) return -1;
    return seek_to(c, json_integer_value(off), json_integer_value(line), err);
}

static double csv_progress(void *self)
{
    struct csv_source *c = self;
    if (c->file_size <= 0) return -1;
    double f = (double)c->out_offset / (double)c->file_size;
    return f > 1 ? 1 : f;
}

static void csv_close(void *self)
{
    struct csv_source *c = self;
    if (!c) return;
    csvsrc_reader_stop(c);
    if (c->fd >= 0) close(c->fd);
    csv_free(&c->parser);
    for (size_t i = 0; i < c->ncolumns; i++) free(c->columns[i]);
    free(c->columns);
    for (size_t i = 0; i < c->nfields; i++) free(c->fields[i].name);
    free(c->fields);
    free(c->chunk);
    csvsrc_rowbuf_free(&c->raw);
    for (int i = 0; i < BATCHES; i++) csvsrc_batch_free(&c->batches[i]);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->changed);
    free(c->path);
    free(c->declared_path);
    free(c->wanted);
    free(c->dir);
    free(c->pattern);
    free(c->current_name);
    for (int32_t i = 0; c->done_names && i <= c->file_index; i++) free(c->done_names[i]);
    free(c->done_names);
    if (c->opts_ref != LUA_NOREF) luaL_unref(c->env->L, LUA_REGISTRYINDEX, c->opts_ref);
    if (c->names_ref != LUA_NOREF) luaL_unref(c->env->L, LUA_REGISTRYINDEX, c->names_ref);
    free(c);
}

const struct source_ops csv_source = {
    .name = "csv",
    .summary = "records from a CSV file (RFC 4180: quoted fields with commas, quotes and newlines; CRLF; BOM)",
    .options = csv_options,
    .open = csv_open,
    .next = csv_next,
    .wait = csv_wait,
    .advance = csv_advance,
    .save = csv_save,
    .restore = csv_restore,
    .progress = csv_progress,
    .close = csv_close,
};
