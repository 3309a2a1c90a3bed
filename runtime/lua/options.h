/* options.h: plugin options declared as data (name, type, default, help), checked against
 * the Lua table a job script passes, and printed by `runnel help`.
 *
 * Every source, sink and model provider lists its options in one static array ending with
 * {NULL}; options_check() is the only place option names and types are validated, so
 * `runnel check` and `runnel run` report the same errors, naming the script line. */
#ifndef RUNNEL_OPTIONS_H
#define RUNNEL_OPTIONS_H

#include <lua.h>
#include <stdint.h>
#include "core/util.h"

enum opt_type {
    OPT_STRING,
    OPT_INTEGER,
    OPT_NUMBER,
    OPT_BOOLEAN,
    OPT_DURATION,          /* "30s", "250ms" or a number of seconds */
    OPT_TABLE,
    OPT_FUNCTION,
    OPT_STRING_OR_FUNCTION,
    OPT_STRING_OR_LIST,    /* "a" or {"a", "b"} */
    OPT_INTEGER_OR_STRING, /* 64 or "auto" */
    OPT_SINK,              /* a value made by sink.xxx{} */
    OPT_SINK_LIST,         /* one sink or a list of sinks */
    OPT_SOURCE,
    OPT_MODEL,
    OPT_ANY,
};

struct option_spec {
    const char *name;
    enum opt_type type;
    int required;
    const char *default_text; /* shown by `runnel help`; NULL when there is none */
    const char *help;
};

/* Check the options table at stack index tbl against spec. `what` names the declaration
 * ("source.csv") and `where` its place in the script ("jobs/a.lua:12"). Unknown options
 * (with a did-you-mean), wrong types and missing required options fail. */
int options_check(lua_State *L, int tbl, const struct option_spec *spec, const char *what,
                  const char *where, struct rn_err *err);

/* Print a plugin's options as a table (for `runnel help` and the README). */
void options_print(const struct option_spec *spec, const char *what, const char *summary);
/* The same as a Markdown table (for the README). */
void options_print_markdown(const struct option_spec *spec, const char *what, const char *summary);

const char *opt_type_name(enum opt_type type);

/* Accessors for a checked table; they return the default when the option is absent. The
 * returned string points into the Lua state and lives as long as the table does. */
const char *opt_string(lua_State *L, int tbl, const char *name, const char *def);
int64_t opt_integer(lua_State *L, int tbl, const char *name, int64_t def);
double opt_number(lua_State *L, int tbl, const char *name, double def);
int opt_boolean(lua_State *L, int tbl, const char *name, int def);
int64_t opt_duration_ms(lua_State *L, int tbl, const char *name, int64_t def);
/* An OPT_STRING_OR_LIST option as an array of copies ("a" is the list {"a"}); NULL and
 * *count = 0 when absent. The caller frees each string and the array. */
char **opt_string_list(lua_State *L, int tbl, const char *name, size_t *count);
/* Returns 1 and pushes the value when the option is present and not nil, else 0 (nothing pushed). */
int opt_push(lua_State *L, int tbl, const char *name);

#endif
