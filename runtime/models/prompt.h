/* prompt.h: the user prompt of a model call, made from a record: either a template with
 * {{field}} placeholders, parsed once when the model opens, or a job-script
 * function(record) -> string.
 *
 * Template syntax, the whole of it:
 *   {{name}}   the record's field `name`; spaces around the name are ignored. A name with dots,
 *              {{user.name}}, walks into nested tables. Names hold no braces or line breaks.
 *   {{{{       a literal "{{" (the only escape). Every other character, a lone "{" and any "}}"
 *              included, is literal text.
 * A missing or nil field is an error ("prompt: field 'x' is missing"), never an empty string;
 * strings are copied as they are, numbers written as Lua's tostring writes them (4, 4.0, 0.25),
 * booleans as true/false; any other type is an error. Rendering is one pass over the parsed
 * segments and allocates nothing beyond growing the caller's buffer. */
#ifndef RUNNEL_PROMPT_H
#define RUNNEL_PROMPT_H

#include <lua.h>
#include <stddef.h>
#include "core/util.h"

struct prompt;

/* Parse a template of len bytes. NULL and err ("prompt: unclosed {{ at byte 12") when it is
 * malformed. The caller frees with prompt_free. */
struct prompt *prompt_parse(lua_State *L, const char *text, size_t len, struct rn_err *err);

/* A prompt made by calling the Lua function at stack index fn (kept in the registry until
 * prompt_free). The function gets the record table and must return a string (a number is
 * converted as tostring would). */
struct prompt *prompt_from_function(lua_State *L, int fn);

/* Append the prompt for the record table at stack index rec to out. -1 and err when a field
 * is missing or of the wrong type, or when the function fails ("prompt: " + the Lua error
 * without its traceback). The Lua stack is left as it was. */
int prompt_render(const struct prompt *p, int rec, struct buf *out, struct rn_err *err);

/* Number of {{field}} placeholders in a template (0 for a function prompt). */
size_t prompt_field_count(const struct prompt *p);

void prompt_free(struct prompt *p);

#endif
