/* source.c: source.csv, records from a CSV file (or a directory of them) parsed with libcsv:
 * the plugin's options and ops, the fields a record has, and csv_next's loop over files.
 *
 * The files it opens are files.c's, parsing parse.c's, batches and the reader thread
 * reader.c's, following a path follow.c's, checkpoints checkpoint.c's (csv_int.h is the state
 * they share). A row with the wrong width, invalid UTF-8 or a value that does not convert to
 * its declared type is returned as SRC_BAD (the pipeline dead-letters it with its line). */
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
    {"follow", OPT_BOOLEAN, 0, NULL, .default_note = "stream mode",
     .help = "at the end of the file, wait for more lines; follow the name across rotation and truncation (tail -F)"},
    {"inotify", OPT_BOOLEAN, 0, "true",
     .help = "when following: watch the file and its directory with inotify (false: look every 250 ms, as on a "
             "network file system)"},
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

/* Once the columns are known: the output fields from select and types. */
int csvsrc_ensure_fields(struct csv_source *c, struct rn_err *err)
{
    if (c->fields_ready || !c->columns) return 0;
    lua_State *L = c->env->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->opts_ref);
    int rc = setup_fields(c, L, lua_gettop(L), c->where, err);
    lua_pop(L, 1);
    if (rc == 0) c->fields_ready = 1;
    return rc;
}

static void csv_close(void *self);

/* A single file: opened now; a followed one that is not there yet is waited for. */
static int open_path(struct csv_source *c, const char *path, struct rn_err *err)
{
    if (c->follow) c->watch = csvsrc_follow_new(path, c->env->loop);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && c->follow && errno == ENOENT) {
        csvsrc_note("%s: no such file yet: waiting for it", path);
        return 0;
    }
    if (fd < 0) return rn_fail(err, "%s: cannot open: %s", path, strerror(errno));
    /* a followed file's header may still be on its way; one read to its end has it now */
    if (csvsrc_begin_file(c, fd, path, path, !c->follow, err)) return -1;
    if (c->need_header && csvsrc_take_header(c, err) < 0) return -1;
    return 0;
}

static void *csv_open(struct job_env *env, int opts, struct rn_err *err)
{
    lua_State *L = env->L;
    struct csv_source *c = rn_aligned_calloc(_Alignof(struct csv_source), sizeof *c);
    c->env = env;
    c->fd = -1;
    loop_timer_init(&c->look_again, NULL, NULL); /* it only wakes the loop */
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
    c->inotify = opt_boolean(L, opts, "inotify", 1);
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
        if (csvsrc_open_next_file(c, err) < 0) goto fail;
    } else {
        c->follow = opt_boolean(L, opts, "follow", env->streaming);
        if (open_path(c, path, err)) goto fail;
    }
    if (csvsrc_ensure_fields(c, err)) goto fail;
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

/* Fill c->out from the current file, or go on to the next file. 1 when it holds items, else
 * what csv_next returns. */
static int refill(struct csv_source *c, struct rn_err *err)
{
    for (;;) {
        if (c->follow) {
            if (!c->watching) {
                csvsrc_follow_start(c->watch, c->inotify, c->fd);
                c->watching = 1;
            }
        }
        if (c->threaded) {
            if (!c->out->last) {
                if (!csvsrc_reader_next_batch(c)) return SRC_IDLE; /* the reader wakes the loop */
                if (c->out->nitems) return 1;
                continue;
            }
            csvsrc_reader_stop(c); /* it has read the whole file */
        }
        csvsrc_batch_clear(c->out);
        if (c->fd < 0 || c->finished) { /* no file yet, or this one is read to its end */
            int opened = c->dir ? csvsrc_open_next_file(c, err) : csvsrc_follow_next(c, err);
            if (opened < 0) return SRC_ERROR;
            if (opened == 0) return c->follow || (c->dir && c->env->streaming) ? SRC_IDLE : SRC_END;
            continue;
        }
        if (c->need_header) {
            int rc = csvsrc_take_header(c, err);
            if (rc < 0) return SRC_ERROR;
            if (rc == 0 && c->finished) { /* a followed file left behind before its header came */
                csvsrc_note("%s: the file (inode %llu) ended without a header row: nothing to read in it", c->path,
                            (unsigned long long)c->files[c->file_index].inode);
                continue;
            }
        }
        if (!c->need_header) {
            if (!c->follow && !c->finished) {
                csvsrc_reader_start(c);
                if (c->threaded) continue;
            }
            csvsrc_read_rows(c, c->out);
            if (c->out->nitems) return 1;
            if (c->finished) continue;
        }
        /* following, and nothing more for now */
        int rc = csvsrc_follow_at_end(c, err);
        if (rc < 0) return SRC_ERROR;
        if (rc == 0) return SRC_IDLE;
    }
}

static enum source_status csv_next(void *self, struct source_pos *pos, struct rn_err *err)
{
    struct csv_source *c = self;
    lua_State *L = c->env->L;
    if (c->out->next == c->out->nitems) {
        int rc = refill(c, err);
        if (rc == SRC_IDLE && !c->threaded && c->env->loop) /* look again even if no event comes */
            loop_timer_at(c->env->loop, &c->look_again,
                          rn_now_ms() + (!c->watch       ? DIR_POLL_MS
                                         : csvsrc_follow_notified(c->watch) ? FOLLOW_SAFETY_MS : FOLLOW_POLL_MS));
        if (rc != 1) return (enum source_status)rc;
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

static void csv_advance(void *self, const struct source_pos *pos)
{
    struct csv_source *c = self;
    if (pos->file != c->done_file) csvsrc_close_before(c, pos->file); /* every record of those is done */
    c->done_file = pos->file;
    c->done_offset = pos->offset;
    c->done_line = pos->line;
}

static int csv_save(void *self, json_t *state, struct rn_err *err)
{
    return csvsrc_save(self, state, err);
}

static int csv_restore(void *self, json_t *state, struct rn_err *err)
{
    return csvsrc_restore(self, state, err);
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
    if (c->env->loop) loop_timer_cancel(c->env->loop, &c->look_again);
    csvsrc_reader_stop(c);
    csvsrc_follow_free(c->watch); /* its thread first: it holds files of its own */
    if (c->fd >= 0) close(c->fd);
    for (int32_t i = 0; c->files && i <= c->file_index; i++) {
        if (c->files[i].fd >= 0) close(c->files[i].fd);
        free(c->files[i].name);
        free(c->files[i].seen_as);
    }
    free(c->files);
    for (size_t i = 0; i < c->nfile_header; i++) free(c->file_header[i]);
    free(c->file_header);
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
    if (c->opts_ref != LUA_NOREF) luaL_unref(c->env->L, LUA_REGISTRYINDEX, c->opts_ref);
    if (c->names_ref != LUA_NOREF) luaL_unref(c->env->L, LUA_REGISTRYINDEX, c->names_ref);
    free(c);
}

const struct source_ops csv_source = {
    .version = SOURCE_INTERFACE_VERSION,
    .name = "csv",
    .summary = "records from a CSV file (RFC 4180: quoted fields with commas, quotes and newlines; CRLF; BOM)",
    .options = csv_options,
    .open = csv_open,
    .next = csv_next,
    .advance = csv_advance,
    .save = csv_save,
    .restore = csv_restore,
    .progress = csv_progress,
    .close = csv_close,
};
