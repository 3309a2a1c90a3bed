/* json.h: records (Lua tables) to JSON text and JSON text to Lua values.
 *
 * Output keys of a record follow the job's field order (source columns, then model outputs,
 * then any other keys by name), so output files are stable and readable. Arrays are Lua
 * sequences; NaN and infinities become null. */
#ifndef RUNNEL_JSON_H
#define RUNNEL_JSON_H

#include <jansson.h>
#include <lua.h>
#include "core/util.h"

/* Append the value at stack index idx as JSON. order_ref is a registry ref to a table
 * name -> rank (LUA_NOREF: keys by name). Returns -1 and fills err for values JSON cannot
 * hold (functions, userdata, cycles deeper than 64). */
int json_encode(lua_State *L, int idx, int order_ref, struct buf *out, struct rn_err *err);

/* Append the number at stack index idx as JSON writes it: integers exactly, floats with the
 * fewest digits that read back the same (3.0 stays 3.0), NaN and infinities as null. */
void json_put_number(lua_State *L, int idx, struct buf *out);

/* The field order table changed: drop what the encoder cached about it. */
void json_forget_field_order(void);

/* Push the Lua value for a jansson value (objects and arrays become tables, null becomes nil
 * or, inside arrays, json.null). */
void json_push(lua_State *L, json_t *value);

/* Decode text and push the value. -1 with the parse error (line, column) in err. */
int json_decode_push(lua_State *L, const char *text, size_t len, struct rn_err *err);

/* Register the `json` table (json.encode, json.decode, json.null) in the job's Lua state. */
void json_open_lib(lua_State *L);

#endif
