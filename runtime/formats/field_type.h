/* field_type.h: the value types a CSV column can be declared as (`types = { x = "integer" }`),
 * shared by every source that reads text fields (source.csv, source.kafka with format csv).
 * An empty field is nil for every type but string. */
#ifndef RUNNEL_FIELD_TYPE_H
#define RUNNEL_FIELD_TYPE_H

#include <lua.h>
#include <stddef.h>

enum field_type { FT_STRING, FT_INTEGER, FT_NUMBER, FT_BOOLEAN };

/* "string", "integer", "number" or "boolean" to its type; -1 for any other name. */
int field_type_parse(const char *name, enum field_type *type);
const char *field_type_name(enum field_type type);
/* A field converted to its type, held without Lua (a string's bytes stay the caller's). */
struct field_value {
    enum { FV_NIL, FV_STRING, FV_INTEGER, FV_NUMBER, FV_BOOLEAN } kind;
    union {
        lua_Integer integer;
        lua_Number number;
        int boolean;
    } as;
};

/* Convert text s[0..n) (NUL-terminated at n) to type. -1 when it does not convert. */
int field_type_convert(enum field_type type, const char *s, size_t n, struct field_value *out);
/* Push the value of text s[0..n) as type. -1, nothing pushed, when it does not convert. */
int field_type_push(lua_State *L, enum field_type type, const char *s, size_t n);
/* For libcsv's csv_set_space_func: no byte is a space, so spaces around fields are data. */
int field_type_no_space(unsigned char c);

#endif
