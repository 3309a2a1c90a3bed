/* lua_alloc.h: the allocator of a job's Lua state, and its memory accounting.
 *
 * Every record makes a few small Lua objects (its table, the map's table, short strings) that
 * die young; glibc's malloc/realloc/free for them was a tenth of a record's cost. Blocks up
 * to LUA_ALLOC_SMALL bytes come from per-size free lists carved out of large slabs; bigger
 * ones from malloc. Built with AddressSanitizer, every block goes to malloc so ASan still
 * sees each one. Either way the allocator counts the bytes Lua holds and refuses to grow
 * past a ceiling, which the sandbox raises to the job's memory_limit while a script function
 * runs (a refused allocation is then a Lua memory error inside a protected call). */
#ifndef RUNNEL_LUA_ALLOC_H
#define RUNNEL_LUA_ALLOC_H

#include <lua.h>
#include <stddef.h>

#define LUA_ALLOC_SMALL 256

/* The accounting of one state. Public so the sandbox sets the ceiling with a store, not a
 * call, around every filter/map call; the rest of the allocator is private to alloc.c. */
struct lua_heap {
    size_t used;     /* bytes held: the sum of the sizes Lua asked for */
    size_t ceiling;  /* an allocation that would take used past this fails; SIZE_MAX: none */
    size_t limit;    /* the job's memory_limit; SIZE_MAX: none */
    int limit_hit;   /* set when an allocation failed on the ceiling */
};

/* A new Lua state using a new pool (NULL when out of memory); close it with lua_alloc_close. */
lua_State *lua_alloc_newstate(void);

/* The accounting of a state made by lua_alloc_newstate (NULL for any other allocator). */
struct lua_heap *lua_alloc_heap(lua_State *L);

/* Close the state, then free its pool. */
void lua_alloc_close(lua_State *L);

#endif
