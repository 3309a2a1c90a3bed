/* fuzz_csv.c: libFuzzer target for source.csv (runtime/sources/csv/) driven through its ops.
 *
 * Input: byte 0 picks the options (low 3 bits: one of the tables below) and where to resume
 * (high 5 bits); the rest is the CSV file, written to a memfd opened by its /proc path. Every
 * record is pulled until SRC_END (SRC_BAD is fine) and encoded as the sinks do. Then the source
 * is saved at one record's position, restored and read again: the records after that point must
 * come out the same. Lua runs on a fresh thread with a canary allocator, so pushes past the Lua
 * stack abort too. Built and run by tools/fuzz.sh. */
#include <lauxlib.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "formats/json.h"
#include "fuzz_common.h"

extern const struct source_ops csv_source;

/* The option tables, as a job script writes them; PATH is replaced by the memfd's path. */
static const char *const variants[8] = {
    "source.csv { path = PATH }",
    "source.csv { path = PATH, header = true, types = { x = 'integer', y = 'number', z = 'boolean' } }",
    "source.csv { path = PATH, header = false, columns = { 'x', 'y', 'z' },"
    "  types = { x = 'integer', y = 'number', z = 'boolean' } }",
    "source.csv { path = PATH, select = { a = 'x', b = 'y' }, types = { a = 'integer' }, delimiter = ';' }",
    "source.csv { path = PATH, header = false, columns = { 'x', 'y' }, delimiter = '\\\\t', quote = \"'\" }",
    "source.csv { path = PATH, header = true, max_record_bytes = 64 }",
    "source.csv { path = PATH, header = false, columns = 'x', follow = true }",
    "source.csv { path = PATH, columns = { 'x', 'y', 'z' }, select = { 'z', 'x' }, types = { z = 'boolean' } }",
};

static struct job_env env;
static lua_State *main_state;
static int memfd = -1;
static int decl_refs[8];

static void init(void)
{
    main_state = fuzz_new_state(&env, "fuzz_csv");
    memfd = memfd_create("fuzz_csv", MFD_CLOEXEC);
    if (memfd < 0) { perror("memfd_create"); abort(); }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", memfd);
    for (int i = 0; i < 8; i++) {
        lua_pushstring(main_state, path);
        lua_setglobal(main_state, "PATH");
        char code[512];
        snprintf(code, sizeof code, "return %s", variants[i]);
        if (luaL_dostring(main_state, code) != LUA_OK) {
            fprintf(stderr, "fuzz_csv: variant %d: %s\n", i, lua_tostring(main_state, -1));
            abort();
        }
        decl_refs[i] = luaL_ref(main_state, LUA_REGISTRYINDEX);
    }
}

/* What a pull gave, for comparing the first reading with the reading after a restore. */
struct pull {
    enum source_status status;
    struct source_pos pos;
    char *json; /* the record as a sink encodes it; NULL for SRC_BAD */
};

#define MAX_PULLS 20000

/* Pull until the end (or SRC_IDLE when following, or SRC_ERROR). */
static size_t drain(void *src, struct pull *pulls, size_t max)
{
    lua_State *L = env.L;
    size_t n = 0;
    while (n < max) {
        struct rn_err err;
        struct source_pos pos = {0, 0, 0};
        int top = lua_gettop(L);
        enum source_status st = csv_source.next(src, &pos, &err);
        if (st == SRC_END || st == SRC_IDLE || st == SRC_ERROR) {
            if (lua_gettop(L) != top) abort();
            break;
        }
        if (lua_gettop(L) != top + 1 || lua_type(L, -1) != LUA_TTABLE) abort();
        struct pull *p = &pulls[n++];
        p->status = st;
        p->pos = pos;
        p->json = NULL;
        if (st == SRC_RECORD) {
            struct buf b;
            buf_init(&b);
            if (json_encode(L, -1, env.fieldorder_ref, &b, &err)) {
                fprintf(stderr, "fuzz_csv: a record does not encode: %s\n", err.msg);
                abort();
            }
            p->json = b.data ? b.data : rn_strdup("");
        }
        lua_pop(L, 1);
        double progress = csv_source.progress(src);
        if (progress > 1) abort();
    }
    return n;
}

/* Each record's line must be the line where it begins: after the previous pull's end offset,
 * past the blank lines (CR or LF only) that libcsv skips, count the LFs before it. */
static void check_lines(const unsigned char *file, size_t size, const struct pull *pulls, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        size_t start = (size_t)pulls[i - 1].pos.offset;
        while (start < size && (file[start] == '\n' || file[start] == '\r')) start++;
        int64_t line = 1;
        for (size_t k = 0; k < start && k < size; k++) line += file[k] == '\n';
        if (pulls[i].pos.line != line) {
            fprintf(stderr, "fuzz_csv: pull %zu (status %d) begins at byte %zu on line %lld, reported as line %lld\n",
                    i, pulls[i].status, start, (long long)line, (long long)pulls[i].pos.line);
            abort();
        }
    }
}

static void free_pulls(struct pull *pulls, size_t n)
{
    for (size_t i = 0; i < n; i++) free(pulls[i].json);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (!main_state) init();
    if (size < 1) return 0;
    int variant = data[0] & 7;
    size_t resume_at = data[0] >> 3;
    if (ftruncate(memfd, 0) || (size > 1 && pwrite(memfd, data + 1, size - 1, 0) != (ssize_t)(size - 1))) abort();

    lua_State *L = lua_newthread(main_state); /* anchored on the main stack until the end */
    env.L = L;
    /* a fresh field order each run: the header names come from the input */
    luaL_unref(L, LUA_REGISTRYINDEX, env.fieldorder_ref);
    lua_newtable(L);
    env.fieldorder_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    lua_rawgeti(L, LUA_REGISTRYINDEX, decl_refs[variant]);
    int opts = luajob_decl_options(L, -1);
    struct rn_err err;
    static struct pull first[MAX_PULLS], again[MAX_PULLS];
    size_t nfirst = 0, nagain = 0;
    void *src = csv_source.open(&env, opts, &err);
    if (!src) goto done;
    if (lua_gettop(L) != opts) abort();
    nfirst = drain(src, first, MAX_PULLS);
    check_lines(data + 1, size - 1, first, nfirst);

    /* resume after the resume_at-th record, as --resume does from a checkpoint */
    size_t k = 0, seen = 0;
    for (; k < nfirst; k++)
        if (first[k].status == SRC_RECORD && seen++ == resume_at) break;
    if (k < nfirst && variant != 6) {
        csv_source.advance(src, &first[k].pos);
        json_t *state = json_object();
        if (csv_source.save(src, state, &err) || csv_source.restore(src, state, &err)) {
            fprintf(stderr, "fuzz_csv: save/restore failed: %s\n", err.msg);
            abort();
        }
        json_decref(state);
        nagain = drain(src, again, MAX_PULLS);
        if (nagain != nfirst - k - 1) {
            fprintf(stderr, "fuzz_csv: %zu pulls after resuming at record %zu (offset %lld), %zu the first time\n",
                    nagain, k, (long long)first[k].pos.offset, nfirst - k - 1);
            abort();
        }
        for (size_t i = 0; i < nagain; i++) {
            const struct pull *a = &first[k + 1 + i], *b = &again[i];
            if (a->status != b->status || a->pos.offset != b->pos.offset || (a->json && strcmp(a->json, b->json) != 0) ||
                a->pos.line != b->pos.line) {
                fprintf(stderr, "fuzz_csv: pull %zu after resuming differs: status %d/%d offset %lld/%lld line %lld/%lld\n"
                                "%s\n%s\n", i, a->status, b->status, (long long)a->pos.offset, (long long)b->pos.offset,
                        (long long)a->pos.line, (long long)b->pos.line,
                        a->json ? a->json : "-", b->json ? b->json : "-");
                abort();
            }
        }
    }
    csv_source.close(src);
done:
    free_pulls(first, nfirst);
    free_pulls(again, nagain);
    lua_resetthread(L); /* shrinks the stack: the allocator checks its canary */
    env.L = main_state;
    lua_settop(main_state, 0);
    lua_gc(main_state, LUA_GCSTEP, 0);
    return 0;
}
