/* lua_alloc.c: size-class free lists for a Lua state's small blocks, and the count of the
 * bytes it holds (see lua_alloc.h).
 *
 * Lua tells the allocator the old size of every block it frees or resizes, so a block needs
 * no header: its size class is (size + 15) / 16. Freed small blocks go on their class's list
 * and are reused first (warm in the cache); slabs are returned only when the state closes.
 * The same sizes keep heap.used exact, so the memory limit costs one compare per allocation. */
#include "lua/alloc.h"
#include "core/log.h"

#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(LUA_ALLOC_FORCE_POOL) /* tests/unit/test_lua_alloc.c: the pool, even under ASan */
#define POOL_ENABLED 1
#elif defined(__SANITIZE_ADDRESS__)
#define POOL_ENABLED 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOL_ENABLED 0
#endif
#endif
#ifndef POOL_ENABLED
#define POOL_ENABLED 1
#endif

#define GRAIN 16
#define CLASSES (LUA_ALLOC_SMALL / GRAIN)
#define SLAB_SIZE (256 * 1024)

struct free_block {
    struct free_block *next;
};

struct slab {
    struct slab *next;
    /* blocks follow, GRAIN-aligned */
};

struct pool {
    struct lua_heap heap;                 /* first: lua_alloc_heap hands out its address */
    struct free_block *free[CLASSES + 1]; /* by class: 1 .. CLASSES */
    struct slab *slabs;
    char *carve, *carve_end;              /* the unused tail of the newest slab */
};

static size_t class_of(size_t size) { return (size + GRAIN - 1) / GRAIN; }

static void *small_alloc(struct pool *p, size_t cls)
{
    struct free_block *b = p->free[cls];
    if (b) {
        p->free[cls] = b->next;
        return b;
    }
    size_t bytes = cls * GRAIN;
    if ((size_t)(p->carve_end - p->carve) < bytes) {
        struct slab *s = malloc(SLAB_SIZE);
        if (!s) return NULL;
        s->next = p->slabs;
        p->slabs = s;
        p->carve = (char *)s + GRAIN; /* the header fits in one grain */
        p->carve_end = (char *)s + SLAB_SIZE;
    }
    void *block = p->carve;
    p->carve += bytes;
    return block;
}

static void small_free(struct pool *p, void *ptr, size_t cls)
{
    struct free_block *b = ptr;
    b->next = p->free[cls];
    p->free[cls] = b;
}

/* The block change itself: everything but the two common cases of pool_alloc. */
static void *pool_resize(struct pool *p, void *ptr, size_t osize, size_t nsize)
{
    if (!POOL_ENABLED) {
        if (nsize == 0) { free(ptr); return NULL; }
        return realloc(ptr, nsize);
    }
    int old_small = ptr && osize <= LUA_ALLOC_SMALL, new_small = nsize <= LUA_ALLOC_SMALL;
    if (nsize == 0) {
        if (old_small) small_free(p, ptr, class_of(osize));
        else free(ptr);
        return NULL;
    }
    if (!ptr) return new_small ? small_alloc(p, class_of(nsize)) : malloc(nsize);
    if (!old_small && !new_small) return realloc(ptr, nsize);
    if (old_small && new_small && class_of(osize) == class_of(nsize)) return ptr;
    void *block = new_small ? small_alloc(p, class_of(nsize)) : malloc(nsize);
    if (!block) return NULL; /* Lua keeps the old block */
    memcpy(block, ptr, osize < nsize ? osize : nsize);
    if (old_small) small_free(p, ptr, class_of(osize));
    else free(ptr);
    return block;
}

/* Carving, large blocks, resizing, and every allocation the ceiling refuses. Lua never asks
 * a shrink to fail, so only growth is refused. */
static __attribute__((noinline)) void *pool_alloc_slow(struct pool *p, void *ptr, size_t osize, size_t nsize)
{
    size_t old = ptr ? osize : 0; /* with ptr NULL, osize is the kind of object, not a size */
    if (nsize > old && p->heap.used - old + nsize > p->heap.ceiling) {
        p->heap.limit_hit = 1;
        return NULL;
    }
    void *block = pool_resize(p, ptr, osize, nsize);
    if (block || nsize == 0) p->heap.used = p->heap.used - old + nsize;
    return block;
}

/* lua_Alloc. Freeing a small block and taking one off a free list stay short (no calls, so no
 * registers to save): they are most of a record's allocations. */
static void *pool_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct pool *p = ud;
    if (POOL_ENABLED) {
        if (nsize == 0 && ptr && osize <= LUA_ALLOC_SMALL) {
            p->heap.used -= osize;
            small_free(p, ptr, class_of(osize));
            return NULL;
        }
        if (!ptr && nsize && nsize <= LUA_ALLOC_SMALL && p->heap.used + nsize <= p->heap.ceiling) {
            struct free_block *b = p->free[class_of(nsize)];
            if (b) {
                p->free[class_of(nsize)] = b->next;
                p->heap.used += nsize;
                return b;
            }
        }
    }
    return pool_alloc_slow(p, ptr, osize, nsize);
}

static int panic(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);
    log_error("Lua panic: %s", msg ? msg : "(error object is not a string)");
    return 0; /* Lua then aborts */
}

lua_State *lua_alloc_newstate(void)
{
    struct pool *p = calloc(1, sizeof *p); /* without POOL_ENABLED only its heap is used */
    if (!p) return NULL;
    p->heap.ceiling = p->heap.limit = SIZE_MAX;
    lua_State *L = lua_newstate(pool_alloc, p);
    if (!L) {
        free(p);
        return NULL;
    }
    lua_atpanic(L, panic);
    return L;
}

struct lua_heap *lua_alloc_heap(lua_State *L)
{
    void *ud;
    if (lua_getallocf(L, &ud) != pool_alloc) return NULL;
    return &((struct pool *)ud)->heap;
}

void lua_alloc_close(lua_State *L)
{
    if (!L) return;
    void *ud;
    int ours = lua_getallocf(L, &ud) == pool_alloc;
    lua_close(L);
    struct pool *p = ud;
    if (!ours || !p) return;
    for (struct slab *s = p->slabs, *next; s; s = next) {
        next = s->next;
        free(s);
    }
    free(p);
}
