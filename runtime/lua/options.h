/* options.h: plugin options declared as data, checked when the declaration line runs, and
 * printed by `runnel help` and the README's reference.
 *
 * Every source, sink and model provider lists its options in one static array ending with
 * {NULL}. options_check() is the only place option values are validated: types, ranges,
 * choices, one-byte strings, nested tables with their own spec, maps, secrets; unknown names
 * get a did-you-mean at every depth. It returns a checked copy with the defaults filled in,
 * which is what open() reads, so `runnel check` and `runnel run` see the same values.
 *
 * An entry is {name, type, required, default_text, .help = ...} and the optional fields it
 * needs, by designator (so -Wextra's missing-initializer check stays quiet), e.g.
 *     {"retries", OPT_INTEGER, 0, "5", .help = "retries per call", OPT_RANGE(0, 100)},
 *     {"format", OPT_ENUM, 0, "json", .help = "message value", .choices = OPT_CHOICES("json", "csv")},
 *     {"limits", OPT_NESTED, 0, NULL, .help = "rate limits", .fields = OPT_FIELDS({...}, {...})},
 * and the array ends with {NULL}. */
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
    OPT_DURATION,          /* "30s", "250ms", "2m", "1h" or a number of seconds; bounds in ms */
    OPT_SIZE,              /* "256MB", "1GB", "64KB" (powers of 1024) or a number of bytes; bounds in bytes */
    OPT_BYTE,              /* a string of exactly one byte; "\\t" (backslash t) is taken as a tab */
    OPT_ENUM,              /* one of .choices */
    OPT_SCALAR,            /* a string, number or boolean */
    OPT_TABLE,             /* any table; open() reads and checks its contents */
    OPT_NESTED,            /* a table of named options, checked against .fields */
    OPT_MAP,               /* { key = value, ... }: string keys, every value checked against *.value */
    OPT_FUNCTION,
    OPT_STRING_OR_FUNCTION,
    OPT_STRING_OR_LIST,    /* "a" or {"a", "b"}; the checked copy is always a list */
    OPT_INTEGER_OR_STRING, /* 64 or a string (one of .choices when given); "64" is taken as 64 */
    OPT_SINK,              /* a declaration made by sink.X{} */
    OPT_SINK_LIST,         /* one sink or a list of sinks; the checked copy is always a list */
    OPT_SOURCE,
    OPT_MODEL,
    OPT_ANY,
};

/* .bounds: which of .min/.max apply (to numbers, integers, durations in ms, sizes in bytes) */
enum { OPT_MIN = 1, OPT_MAX = 2, OPT_MIN_EXCLUSIVE = 4 };

struct option_spec {
    const char *name;
    enum opt_type type;
    int required;
    /* The default, written as a script would write the value ("5s", "true", "json"): help
     * shows it and options_check fills it in when the option is absent (and checks it, like
     * any value). NULL when there is no fixed default. */
    const char *default_text;
    const char *help;
    /* Optional fields, by designated initializer: */
    const char *default_note;   /* a default open() works out ("stream mode"): shown, never filled in */
    int secret;                 /* OPT_STRING, OPT_SCALAR: the value may also be secret("NAME") */
    int bounds;                 /* OPT_MIN | OPT_MAX | OPT_MIN_EXCLUSIVE; see OPT_RANGE */
    double min, max;
    const char *const *choices; /* OPT_ENUM, OPT_INTEGER_OR_STRING: allowed strings, NULL-terminated */
    const struct option_spec *fields; /* OPT_NESTED: the nested options, ending with {NULL} */
    const struct option_spec *value;  /* OPT_MAP: the spec every value is checked against */
    const char *short_form;     /* OPT_NESTED: a string value s stands for { [short_form] = s } */
    /* More checks on the value at idx, after the type's; returns -1 with err holding the
     * reason alone (options_check adds the place and the option's name). */
    int (*check)(lua_State *L, int idx, struct rn_err *err);
};

#define OPT_CHOICES(...) ((const char *const[]){__VA_ARGS__, NULL})
#define OPT_FIELDS(...) ((const struct option_spec[]){__VA_ARGS__, {NULL}})
/* OPT_VALUE(type, designated fields...): the spec of a map's values. */
#define OPT_VALUE(...) (&(const struct option_spec){.name = "value", .type = __VA_ARGS__})
#define OPT_RANGE(lo, hi) .bounds = OPT_MIN | OPT_MAX, .min = (lo), .max = (hi)
#define OPT_AT_LEAST(lo) .bounds = OPT_MIN, .min = (lo)
#define OPT_ABOVE(lo) .bounds = OPT_MIN | OPT_MIN_EXCLUSIVE, .min = (lo)

/* Check the options table at stack index tbl against spec. On success push the checked copy
 * (defaults filled in, values normalized as the types above say) and return 0. On failure
 * push nothing and return -1 with err = "WHERE: WHAT: OPTION: reason", e.g.
 * "jobs/x.lua:12: model.openai: limits.concurency: unknown option; did you mean concurrency?".
 * `what` names the declaration ("source.csv"), `where` its place ("jobs/x.lua:12"). Tables
 * are copies (an OPT_TABLE's top level only), so a script that changes its table afterwards
 * changes nothing; functions, declarations and OPT_ANY values are the script's own. */
int options_check(lua_State *L, int tbl, const struct option_spec *spec, const char *what,
                  const char *where, struct rn_err *err);

/* The place ("jobs/x.lua:12") of the declaration whose checked options table is at stack
 * index opts, for messages open() writes later; "?" for any other table. The string lives
 * as long as the table. */
const char *options_where(lua_State *L, int opts);

/* Print a plugin's options as a table (for `runnel help`); nested options get rows of their
 * own ("limits.concurrency"). */
void options_print(const struct option_spec *spec, const char *what, const char *summary);
/* The same as a Markdown table (for the README). */
void options_print_markdown(const struct option_spec *spec, const char *what, const char *summary);

/* The one of names[0..count) closest to key, for a did-you-mean: a few edits away, or key is
 * (nearly) the start of it; NULL when none is close enough to suggest. */
const char *options_closest(const char *key, const char *const *names, size_t count);

/* The name of a type ("integer", "string|list"); help adds choices, bounds and secrets. */
const char *opt_type_name(enum opt_type type);

/* "256MB", "1GB", "64KB", "512B" or "1048576" in bytes; -1 when it does not parse. */
int opt_parse_size(const char *text, int64_t *bytes);
/* bytes as "64 MB", "1 GB", "512 KB" or "1000 bytes" into out. */
void opt_format_size(char *out, size_t n, int64_t bytes);

/* Accessors for a checked table; they return def when the option is absent (an option with
 * a default_text is never absent from a checked table). A returned string points into the
 * Lua state and lives as long as the table does. */
const char *opt_string(lua_State *L, int tbl, const char *name, const char *def);
int64_t opt_integer(lua_State *L, int tbl, const char *name, int64_t def);
double opt_number(lua_State *L, int tbl, const char *name, double def);
int opt_boolean(lua_State *L, int tbl, const char *name, int def);
int64_t opt_duration_ms(lua_State *L, int tbl, const char *name, int64_t def);
int64_t opt_size(lua_State *L, int tbl, const char *name, int64_t def);
/* An OPT_STRING_OR_LIST option as an array of copies ("a" is the list {"a"}); NULL and
 * *count = 0 when absent. The caller frees each string and the array. */
char **opt_string_list(lua_State *L, int tbl, const char *name, size_t *count);
/* Returns 1 and pushes the value when the option is present and not nil, else 0 (nothing pushed). */
int opt_push(lua_State *L, int tbl, const char *name);

#endif
