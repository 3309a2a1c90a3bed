/* lua_alloc.h: the allocator of a job's Lua state.
 *
 * Every record makes a few small Lua objects (its table, the map's table, short strings) that
 * die young; glibc's malloc/realloc/free for them was a tenth of a record's cost. Blocks up
 * to LUA_ALLOC_SMALL bytes come from per-size free lists carved out of large slabs; bigger
 * ones from malloc. Built with AddressSanitizer, every block goes to malloc so ASan still
 * sees each one. */
#ifndef RUNNEL_LUA_ALLOC_H
#define RUNNEL_LUA_ALLOC_H

#include <lua.h>

#define LUA_ALLOC_SMALL 256

/* A new Lua state using a new pool (NULL when out of memory); close it with lua_alloc_close. */
lua_State *lua_alloc_newstate(void);

/* Close the state, then free its pool. */
void lua_alloc_close(lua_State *L);

#endif
