/* json.h: Lua values <-> JSON text: the codec behind json.encode/json.decode, every JSON line a
 * sink writes, and the "json" record format of source.kafka and sink.kafka.
 *
 * Encoding: a record's keys follow the job's field order (source columns, then model outputs,
 * then any other keys by name), so output files are stable and readable. Arrays are Lua
 * sequences; NaN and infinities become null.
 * Decoding reads text exactly as jansson 2.14's json_loadb(JSON_DECODE_ANY | JSON_ALLOW_NUL)
 * does: the same texts accepted, the same values, the same error text, line and column; but in
 * one pass that pushes Lua values as it reads, with no tree in between. tests/fuzz/fuzz_json.c
 * holds it to jansson on every input. */
#ifndef RUNNEL_FORMATS_JSON_H
#define RUNNEL_FORMATS_JSON_H

#include <jansson.h>
#include <lua.h>
#include "core/json.h"
#include "core/util.h"

/* ---- encoding ---- */

/* Append the value at stack index idx as JSON. order_ref is a registry ref to a table
 * name -> rank (LUA_NOREF: keys by name). Returns -1 and fills err for values JSON cannot
 * hold (functions, userdata, cycles deeper than 64), leaving out as it was. */
int json_encode(lua_State *L, int idx, int order_ref, struct buf *out, struct rn_err *err);

/* Append the number at stack index idx as JSON writes it: integers exactly, floats with the
 * fewest digits that read back the same (3.0 stays 3.0), NaN and infinities as null. */
void json_put_number(lua_State *L, int idx, struct buf *out);

/* The field order table at registry ref order_ref changed: drop what the encoder cached about
 * it. The cache belongs to the table (its metatable holds it), so two jobs never share one. */
void json_forget_field_order(lua_State *L, int order_ref);

/* ---- decoding ---- */

/* What jansson calls the top-level value. */
enum json_kind { JSON_KIND_OBJECT, JSON_KIND_ARRAY, JSON_KIND_STRING, JSON_KIND_NUMBER, JSON_KIND_BOOLEAN,
                 JSON_KIND_NULL };

/* jansson's nesting limit (JSON_PARSER_MAX_DEPTH): a value deeper than this is an error. */
#define JSON_MAX_DEPTH 2048

/* Why a text did not decode: jansson's message ("'}' expected near ']'"), and where. */
struct json_syntax_error {
    char text[160];
    int line, column;   /* line from 1, column in characters, as jansson counts them */
    size_t offset;      /* the byte offset they name */
};

struct json_level;    /* json_decode.c */
struct json_kept_key;

/* A decoder's reusable state, owned by whoever decodes (a source, one json.decode call):
 * scratch space for unescaped strings and deep nesting, and what the last top-level object
 * teaches about the next one (records of one topic have one shape): its size presizes the
 * next table, and with json_decoder_keep_keys its keys are kept as Lua strings, so the next
 * record's same keys are not made (hashed, interned) again. */
struct json_decoder {
    struct buf scratch;
    struct json_level *levels;
    size_t levels_cap;
    size_t *dropped, dropped_len, dropped_cap; /* NULs jansson would lose (json_decode.c) */
    int object_hint;
    lua_State *keys_L;   /* json_decoder_keep_keys: the state that holds them */
    int keys_ref;        /* a registry ref to the table of the last top-level keys, by position */
    struct json_kept_key *keys; /* their bytes (the strings live in that table) */
};
void json_decoder_init(struct json_decoder *d);
/* Keep the keys of top-level objects in L's registry (for a decoder that decodes many records
 * into one state): json_decode must then be given L or one of its threads. json_decoder_free
 * releases them, so it must run before L closes. */
void json_decoder_keep_keys(struct json_decoder *d, lua_State *L);
void json_decoder_free(struct json_decoder *d);

/* Decode text[0..len) and push its value: an object becomes a table of its members (a null
 * member is left out, the last of duplicate keys wins), an array a sequence (null as
 * json.null), a string a Lua string (NULs included), an integer that fits 64 bits an integer,
 * any other number a float (strtod's), true/false booleans, a top-level null nil.
 * extra_fields: fields the caller will add to a top-level object (presizing only).
 * Returns the value's enum json_kind; -1 with *error filled and nothing pushed. */
int json_decode(struct json_decoder *d, lua_State *L, const char *text, size_t len, int extra_fields,
                struct json_syntax_error *error);

/* json.decode's contract: decode and push the value; -1 with "invalid JSON at line L column C:
 * TEXT" in err (nothing pushed). Needs json_open_lib's metatable in L. */
int json_decode_push(lua_State *L, const char *text, size_t len, struct rn_err *err);

/* Push the Lua value for a jansson value, as json_decode would for its text. */
void json_push(lua_State *L, json_t *value);

/* Push json.null (the value that stands for null inside arrays). */
void json_push_null(lua_State *L);

/* Register the `json` table (json.encode, json.decode, json.null) in the job's Lua state. */
void json_open_lib(lua_State *L);

#endif
