/* test_lua_alloc.c: the pooled allocator of job states (runtime/lua_alloc.c). The runtime
 * under ASan uses plain malloc, so this test compiles the pool in itself (LUA_ALLOC_FORCE_POOL)
 * and drives it directly and through a Lua workload: blocks of every small size, resizes across
 * size classes and across the small/large boundary, contents kept, freed blocks reused. */
#define LUA_ALLOC_FORCE_POOL 1
#define lua_alloc_newstate test_lua_alloc_newstate
#define lua_alloc_close test_lua_alloc_close
#define lua_alloc_heap test_lua_alloc_heap
#include "../../runtime/lua/alloc.c"

#include <lualib.h>

#include "check.h"

static int slabs(const struct pool *p)
{
    int n = 0;
    for (const struct slab *s = p->slabs; s; s = s->next) n++;
    return n;
}

static void fill(unsigned char *b, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(seed + i * 7);
}

static int holds(const unsigned char *b, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] != (unsigned char)(seed + i * 7)) return 0;
    return 1;
}

static void test_direct(void)
{
    struct pool p = {.heap = {.ceiling = SIZE_MAX, .limit = SIZE_MAX}};
    void *blocks[LUA_ALLOC_SMALL + 1];
    int bad = 0;
    for (size_t n = 1; n <= LUA_ALLOC_SMALL; n++) {
        blocks[n] = pool_alloc(&p, NULL, 0, n);
        if (!blocks[n] || (uintptr_t)blocks[n] % GRAIN) bad++;
        else fill(blocks[n], n, (unsigned)n);
    }
    CHECK(bad == 0, "%d small blocks missing or misaligned", bad);
    for (size_t n = 1; n <= LUA_ALLOC_SMALL; n++) bad += !holds(blocks[n], n, (unsigned)n);
    CHECK(bad == 0, "%d small blocks overwritten by their neighbours", bad);
    /* resize every block: up a class, past the small limit, back down; contents kept */
    for (size_t n = 1; n <= LUA_ALLOC_SMALL; n++) {
        unsigned char *b = pool_alloc(&p, blocks[n], n, n + GRAIN);
        bad += !b || !holds(b, n, (unsigned)n);
        b = pool_alloc(&p, b, n + GRAIN, 4 * LUA_ALLOC_SMALL);
        bad += !b || !holds(b, n, (unsigned)n);
        b = pool_alloc(&p, b, 4 * LUA_ALLOC_SMALL, n);
        bad += !b || !holds(b, n, (unsigned)n);
        blocks[n] = b;
    }
    CHECK(bad == 0, "%d resizes lost contents", bad);
    /* a freed block is the next one of its class */
    pool_alloc(&p, blocks[40], 40, 0);
    CHECK(pool_alloc(&p, NULL, 0, 33) == blocks[40], "a freed 40-byte block serves the next 33..48-byte one");
    blocks[40] = NULL;
    for (size_t n = 1; n <= LUA_ALLOC_SMALL; n++)
        if (blocks[n]) pool_alloc(&p, blocks[n], n, 0);
    for (struct slab *s = p.slabs, *next; s; s = next) {
        next = s->next;
        free(s);
    }
}

/* The count of bytes held is exact, and the ceiling refuses growth only: Lua may never see a
 * shrink or a free fail. */
static void test_ceiling(void)
{
    struct pool p = {.heap = {.ceiling = SIZE_MAX, .limit = SIZE_MAX}};
    void *small = pool_alloc(&p, NULL, LUA_TTABLE, 40);  /* with ptr NULL, osize is a type, not a size */
    void *large = pool_alloc(&p, NULL, LUA_TSTRING, 5000);
    CHECK(small && large && p.heap.used == 5040, "used counts what was asked for: %zu", p.heap.used);
    p.heap.ceiling = 6000;
    CHECK(pool_alloc(&p, NULL, LUA_TTABLE, 1000) == NULL && p.heap.limit_hit, "an allocation past the ceiling fails");
    CHECK(pool_alloc(&p, large, 5000, 6000) == NULL, "growing past the ceiling fails");
    CHECK(p.heap.used == 5040, "a refusal changes nothing: %zu", p.heap.used);
    large = pool_alloc(&p, large, 5000, 100);
    CHECK(large && p.heap.used == 140, "shrinking works under the ceiling, and is counted: %zu", p.heap.used);
    p.heap.ceiling = 100;
    large = pool_alloc(&p, large, 100, 50);
    CHECK(large && p.heap.used == 90, "shrinking works even above the ceiling: %zu", p.heap.used);
    pool_alloc(&p, large, 50, 0);
    pool_alloc(&p, small, 40, 0);
    CHECK(p.heap.used == 0, "frees are counted out: %zu", p.heap.used);
    p.heap.ceiling = 10;
    CHECK(pool_alloc(&p, NULL, LUA_TTABLE, 40) == NULL, "even a block from a free list obeys the ceiling");
    for (struct slab *s = p.slabs, *next; s; s = next) {
        next = s->next;
        free(s);
    }
}

static const char workload[] =
    "local n, sum, parts = ..., 0, {}\n"
    "for i = 1, n do\n"
    "  local r = { id = i, name = 'n' .. i, text = string.rep('x', i % 300) }\n"
    "  local s = r.name .. '|' .. r.text\n"
    "  sum = sum + #s + r.id\n"
    "  if i % 1000 == 0 then parts[#parts + 1] = s end\n"
    "end\n"
    "return sum, #table.concat(parts)\n";

/* sum of #('n'..i .. '|' .. rep('x', i % 300)) + i, computed in C */
static void expected(long n, long long *sum, long long *joined)
{
    *sum = *joined = 0;
    for (long i = 1; i <= n; i++) {
        char name[32];
        long len = snprintf(name, sizeof name, "n%ld", i) + 1 + i % 300;
        *sum += len + i;
        if (i % 1000 == 0) *joined += len;
    }
}

static void test_workload(void)
{
    lua_State *L = test_lua_alloc_newstate();
    CHECK(L != NULL, "a state");
    if (!L) return;
    luaL_openlibs(L);
    void *ud;
    lua_getallocf(L, &ud);
    struct pool *p = ud;
    int after_first = 0;
    for (int round = 0; round < 3; round++) {
        long n = 200000;
        CHECK(luaL_loadstring(L, workload) == LUA_OK, "load: %s", lua_tostring(L, -1));
        lua_pushinteger(L, n);
        int rc = lua_pcall(L, 1, 2, 0);
        CHECK(rc == LUA_OK, "run: %s", rc ? lua_tostring(L, -1) : "");
        long long sum, joined;
        expected(n, &sum, &joined);
        CHECK(lua_tointeger(L, -2) == sum && lua_tointeger(L, -1) == joined, "round %d: %lld %lld, want %lld %lld", round,
              (long long)lua_tointeger(L, -2), (long long)lua_tointeger(L, -1), sum, joined);
        lua_settop(L, 0);
        lua_gc(L, LUA_GCCOLLECT);
        if (round == 0) after_first = slabs(p);
    }
    CHECK(slabs(p) <= after_first + 1, "freed blocks are reused: %d slabs after the first round, %d after three",
          after_first, slabs(p));
    test_lua_alloc_close(L);
}

int main(void)
{
    test_direct();
    test_ceiling();
    test_workload();
    return check_report("test_lua_alloc");
}
