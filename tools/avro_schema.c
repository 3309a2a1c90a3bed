/* avro_schema.c: Avro schema parsing, the registry's text of a schema and reader/writer
 * compatibility (see avro_schema.h). A schema is a graph of nodes (a recursive record points
 * back at itself); every node is on the schema's allocation list and freed with it. */
#include "avro_schema.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum kind { K_NULL, K_BOOLEAN, K_INT, K_LONG, K_FLOAT, K_DOUBLE, K_BYTES, K_STRING,
            K_RECORD, K_ENUM, K_ARRAY, K_MAP, K_UNION, K_FIXED };

static const char *const kind_names[] = {"null", "boolean", "int", "long", "float", "double", "bytes",
                                         "string", "record", "enum", "array", "map", "union", "fixed"};
#define PRIMITIVE_COUNT 8

struct field {
    char *name;
    struct node *type;
    json_t *default_value;  /* NULL: no default */
    char **aliases;
    size_t alias_count;
};

struct node {
    enum kind kind;
    char *fullname, *name, *space;  /* named types; space NULL for the null namespace */
    char **aliases;                 /* full names */
    size_t alias_count;
    struct field *fields;
    size_t field_count;
    char **symbols;
    size_t symbol_count;
    bool has_enum_default;
    struct node *items;             /* array items, map values */
    struct node **branches;
    size_t branch_count;
    json_int_t size;
    struct node *next_allocated;
};

struct avro_schema {
    struct node *root, *allocated;
    struct node **named;
    size_t named_count, named_capacity;
    char *text;
};

/* ---- small helpers ------------------------------------------------------------------------ */

static void free_strings(char **strings, size_t count)
{
    for (size_t i = 0; i < count; i++) free(strings[i]);
    free(strings);
}

static void node_free(struct node *node)
{
    free(node->fullname);
    free(node->name);
    free(node->space);
    free_strings(node->aliases, node->alias_count);
    for (size_t i = 0; i < node->field_count; i++) {
        free(node->fields[i].name);
        json_decref(node->fields[i].default_value);
        free_strings(node->fields[i].aliases, node->fields[i].alias_count);
    }
    free(node->fields);
    free_strings(node->symbols, node->symbol_count);
    free(node->branches);
    free(node);
}

void avro_schema_free(struct avro_schema *schema)
{
    if (!schema) return;
    for (struct node *node = schema->allocated, *next; node; node = next) {
        next = node->next_allocated;
        node_free(node);
    }
    free(schema->named);
    free(schema->text);
    free(schema);
}

const char *avro_schema_text(const struct avro_schema *schema) { return schema->text; }

static bool same_space(const char *a, const char *b)
{
    if (!a || !*a) return !b || !*b;
    return b && strcmp(a, b) == 0;
}

/* A name (one segment): [A-Za-z_][A-Za-z0-9_]* */
static bool valid_name(const char *name, size_t length)
{
    if (length == 0) return false;
    for (size_t i = 0; i < length; i++) {
        char c = name[i];
        bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (!letter && !(i > 0 && c >= '0' && c <= '9')) return false;
    }
    return true;
}

/* A dotted full name or namespace: every segment a valid name. */
static bool valid_dotted(const char *text)
{
    const char *segment = text;
    for (const char *p = text;; p++) {
        if (*p == '.' || *p == '\0') {
            if (!valid_name(segment, (size_t)(p - segment))) return false;
            if (*p == '\0') return true;
            segment = p + 1;
        }
    }
}

static int primitive_kind(const char *name)
{
    for (int k = 0; k < PRIMITIVE_COUNT; k++)
        if (strcmp(name, kind_names[k]) == 0) return k;
    return -1;
}

/* ---- parser ------------------------------------------------------------------------------- */

struct parser {
    struct avro_schema *schema;
    char *error;
    size_t error_size;
    bool failed;
    char path[1024];
    size_t path_length;
};

__attribute__((format(printf, 2, 3))) static void parse_fail(struct parser *parser, const char *format, ...)
{
    if (parser->failed) return;
    parser->failed = true;
    int used = snprintf(parser->error, parser->error_size, "%s: ", parser->path_length ? parser->path : "/");
    if (used < 0 || (size_t)used >= parser->error_size) return;
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(parser->error + used, parser->error_size - (size_t)used, format, arguments);
    va_end(arguments);
}

/* Appends a path segment; returns the length to restore with path_pop. */
__attribute__((format(printf, 2, 3))) static size_t path_push(struct parser *parser, const char *format, ...)
{
    size_t mark = parser->path_length;
    if (mark < sizeof parser->path - 1) {
        va_list arguments;
        va_start(arguments, format);
        int added = vsnprintf(parser->path + mark, sizeof parser->path - mark, format, arguments);
        va_end(arguments);
        if (added > 0) parser->path_length = mark + (size_t)added < sizeof parser->path - 1
                                                 ? mark + (size_t)added : sizeof parser->path - 1;
    }
    return mark;
}

static void path_pop(struct parser *parser, size_t mark)
{
    parser->path_length = mark;
    parser->path[mark] = '\0';
}

static struct node *node_new(struct parser *parser, enum kind kind)
{
    struct node *node = calloc(1, sizeof *node);
    if (!node) {
        parse_fail(parser, "out of memory");
        return NULL;
    }
    node->kind = kind;
    node->next_allocated = parser->schema->allocated;
    parser->schema->allocated = node;
    return node;
}

static struct node *named_find(const struct avro_schema *schema, const char *fullname)
{
    for (size_t i = 0; i < schema->named_count; i++)
        if (strcmp(schema->named[i]->fullname, fullname) == 0) return schema->named[i];
    return NULL;
}

static bool named_add(struct parser *parser, struct node *node)
{
    struct avro_schema *schema = parser->schema;
    if (named_find(schema, node->fullname)) {
        parse_fail(parser, "the name '%s' is defined twice", node->fullname);
        return false;
    }
    if (schema->named_count == schema->named_capacity) {
        size_t capacity = schema->named_capacity ? schema->named_capacity * 2 : 8;
        struct node **named = realloc(schema->named, capacity * sizeof *named);
        if (!named) {
            parse_fail(parser, "out of memory");
            return false;
        }
        schema->named = named;
        schema->named_capacity = capacity;
    }
    schema->named[schema->named_count++] = node;
    return true;
}

static char *join_name(const char *space, const char *name)
{
    size_t space_length = space && *space ? strlen(space) : 0, name_length = strlen(name);
    char *full = malloc(space_length + name_length + 2);
    if (!full) return NULL;
    if (space_length) {
        memcpy(full, space, space_length);
        full[space_length] = '.';
        memcpy(full + space_length + 1, name, name_length + 1);
    } else {
        memcpy(full, name, name_length + 1);
    }
    return full;
}

/* Name reference as the registry writes it: short within the same namespace, full otherwise. */
static json_t *reference_text(const struct node *node, const char *space)
{
    return json_string(same_space(node->space, space) ? node->name : node->fullname);
}

static bool is_reserved(const char *key, const char *const *reserved)
{
    for (; *reserved; reserved++)
        if (strcmp(key, *reserved) == 0) return true;
    return false;
}

/* Copies the attributes the specification does not define (logicalType, precision, custom
 * properties) into out, in their input order. */
static void copy_properties(const json_t *object, json_t *out, const char *const *reserved)
{
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)object, key, value)
        if (!is_reserved(key, reserved)) json_object_set(out, key, value);
}

/* Names a named type from its "name" and "namespace"; registers it before its body is read so
 * that it may refer to itself. */
static bool parse_name(struct parser *parser, struct node *node, const json_t *object, const char *enclosing,
                       json_t *canonical)
{
    const json_t *name = json_object_get(object, "name");
    const json_t *space = json_object_get(object, "namespace");
    if (!json_is_string(name)) {
        parse_fail(parser, "a %s needs a \"name\" string", kind_names[node->kind]);
        return false;
    }
    if (space && !json_is_string(space) && !json_is_null(space)) {
        parse_fail(parser, "\"namespace\" must be a string");
        return false;
    }
    const char *text = json_string_value(name);
    const char *dot = strrchr(text, '.');
    if (dot) {
        node->name = strdup(dot + 1);
        node->space = strndup(text, (size_t)(dot - text));
    } else {
        node->name = strdup(text);
        const char *chosen = space && json_is_string(space) ? json_string_value(space) : enclosing;
        node->space = chosen && *chosen ? strdup(chosen) : NULL;
    }
    if (!node->name || (dot && !node->space)) {
        parse_fail(parser, "out of memory");
        return false;
    }
    if (!valid_dotted(text)) {
        parse_fail(parser, "'%s' is not a valid name (letters, digits and _, not starting with a digit)", text);
        return false;
    }
    if (node->space && !valid_dotted(node->space)) {
        parse_fail(parser, "'%s' is not a valid namespace", node->space);
        return false;
    }
    if (primitive_kind(node->name) >= 0) {
        parse_fail(parser, "a named type may not be called '%s' (a primitive type)", node->name);
        return false;
    }
    node->fullname = join_name(node->space, node->name);
    if (!node->fullname) {
        parse_fail(parser, "out of memory");
        return false;
    }
    json_object_set_new(canonical, "name", json_string(node->name));
    if (!same_space(node->space, enclosing)) json_object_set_new(canonical, "namespace", json_string(node->space ? node->space : ""));
    const json_t *aliases = json_object_get(object, "aliases");
    if (aliases) {
        if (!json_is_array(aliases)) {
            parse_fail(parser, "\"aliases\" must be an array of names");
            return false;
        }
        node->aliases = calloc(json_array_size(aliases) + 1, sizeof *node->aliases);
        size_t index;
        json_t *alias;
        json_array_foreach(aliases, index, alias) {
            if (!json_is_string(alias) || !valid_dotted(json_string_value(alias))) {
                parse_fail(parser, "alias %zu is not a valid name", index);
                return false;
            }
            const char *alias_text = json_string_value(alias);
            node->aliases[node->alias_count++] = strchr(alias_text, '.') ? strdup(alias_text)
                                                                         : join_name(node->space, alias_text);
        }
    }
    return named_add(parser, node);
}

static struct node *parse_node(struct parser *parser, const json_t *json, const char *space, json_t **canonical);

static bool default_valid(const struct node *node, const json_t *value, int depth);

static bool utf8_codepoints(const char *text, size_t length, json_int_t *count)
{
    json_int_t n = 0;
    for (size_t i = 0; i < length; i++)
        if (((unsigned char)text[i] & 0xC0) != 0x80) n++;
    *count = n;
    return true;
}

static bool default_valid(const struct node *node, const json_t *value, int depth)
{
    if (depth > 64) return false;
    switch (node->kind) {
    case K_NULL: return json_is_null(value);
    case K_BOOLEAN: return json_is_boolean(value);
    case K_INT:
        return json_is_integer(value) && json_integer_value(value) >= INT32_MIN && json_integer_value(value) <= INT32_MAX;
    case K_LONG: return json_is_integer(value);
    case K_FLOAT:
    case K_DOUBLE: return json_is_number(value);
    case K_BYTES:
    case K_STRING: return json_is_string(value);
    case K_FIXED: {
        json_int_t count = 0;
        return json_is_string(value) && utf8_codepoints(json_string_value(value), json_string_length(value), &count) &&
               count == node->size;
    }
    case K_ENUM:
        if (!json_is_string(value)) return false;
        for (size_t i = 0; i < node->symbol_count; i++)
            if (strcmp(node->symbols[i], json_string_value(value)) == 0) return true;
        return false;
    case K_ARRAY: {
        if (!json_is_array(value)) return false;
        size_t index;
        json_t *item;
        json_array_foreach(value, index, item) if (!default_valid(node->items, item, depth + 1)) return false;
        return true;
    }
    case K_MAP: {
        if (!json_is_object(value)) return false;
        const char *key;
        json_t *item;
        json_object_foreach((json_t *)value, key, item) if (!default_valid(node->items, item, depth + 1)) return false;
        return true;
    }
    case K_RECORD:
        if (!json_is_object(value)) return false;
        for (size_t i = 0; i < node->field_count; i++) {
            const json_t *member = json_object_get(value, node->fields[i].name);
            if (member ? !default_valid(node->fields[i].type, member, depth + 1) : !node->fields[i].default_value)
                return false;
        }
        return true;
    case K_UNION:
        /* The specification wants the first branch; Java's Avro, which the registry runs, takes
         * any branch, and so does this. */
        for (size_t i = 0; i < node->branch_count; i++)
            if (default_valid(node->branches[i], value, depth + 1)) return true;
        return false;
    }
    return false;
}

static bool parse_fields(struct parser *parser, struct node *node, const json_t *object, json_t *canonical)
{
    static const char *const reserved[] = {"name", "type", "default", "order", "aliases", "doc", NULL};
    const json_t *fields = json_object_get(object, "fields");
    if (!json_is_array(fields)) {
        parse_fail(parser, "record '%s' needs a \"fields\" array", node->fullname);
        return false;
    }
    size_t count = json_array_size(fields);
    node->fields = calloc(count + 1, sizeof *node->fields);
    json_t *canonical_fields = json_array();
    json_object_set_new(canonical, "fields", canonical_fields);
    if (!node->fields || !canonical_fields) {
        parse_fail(parser, "out of memory");
        return false;
    }
    for (size_t i = 0; i < count; i++) {
        size_t mark = path_push(parser, "/fields/%zu", i);
        const json_t *field = json_array_get(fields, i);
        const json_t *name = json_object_get(field, "name");
        if (!json_is_object(field) || !json_is_string(name)) {
            parse_fail(parser, "a field of record '%s' needs a \"name\" string", node->fullname);
            return false;
        }
        const char *field_name = json_string_value(name);
        if (!valid_name(field_name, strlen(field_name))) {
            parse_fail(parser, "'%s' is not a valid field name", field_name);
            return false;
        }
        for (size_t k = 0; k < node->field_count; k++)
            if (strcmp(node->fields[k].name, field_name) == 0) {
                parse_fail(parser, "record '%s' has two fields named '%s'", node->fullname, field_name);
                return false;
            }
        struct field *out = &node->fields[node->field_count++];
        out->name = strdup(field_name);
        json_t *canonical_field = json_object();
        json_array_append_new(canonical_fields, canonical_field);
        json_object_set_new(canonical_field, "name", json_string(field_name));
        const json_t *type = json_object_get(field, "type");
        if (!type) {
            parse_fail(parser, "field '%s' of record '%s' has no \"type\"", field_name, node->fullname);
            return false;
        }
        size_t type_mark = path_push(parser, "/type");
        json_t *canonical_type = NULL;
        out->type = parse_node(parser, type, node->space, &canonical_type);
        if (!out->type) {
            json_decref(canonical_type);
            return false;
        }
        json_object_set_new(canonical_field, "type", canonical_type);
        path_pop(parser, type_mark);
        const json_t *doc = json_object_get(field, "doc");
        if (doc) json_object_set(canonical_field, "doc", (json_t *)doc);
        const json_t *default_value = json_object_get(field, "default");
        if (default_value) {
            if (!default_valid(out->type, default_value, 0)) {
                char *shown = json_dumps(default_value, JSON_ENCODE_ANY | JSON_COMPACT);
                parse_fail(parser, "the default %s of field '%s' is not a valid value of its type", shown ? shown : "?",
                           field_name);
                free(shown);
                return false;
            }
            out->default_value = json_incref((json_t *)default_value);
            json_object_set(canonical_field, "default", (json_t *)default_value);
        }
        const json_t *order = json_object_get(field, "order");
        if (order) {
            const char *text = json_string_value(order);
            if (!text || (strcmp(text, "ascending") && strcmp(text, "descending") && strcmp(text, "ignore"))) {
                parse_fail(parser, "\"order\" of field '%s' must be \"ascending\", \"descending\" or \"ignore\"", field_name);
                return false;
            }
            if (strcmp(text, "ascending") != 0) json_object_set(canonical_field, "order", (json_t *)order);
        }
        const json_t *aliases = json_object_get(field, "aliases");
        if (aliases) {
            if (!json_is_array(aliases)) {
                parse_fail(parser, "\"aliases\" of field '%s' must be an array of names", field_name);
                return false;
            }
            out->aliases = calloc(json_array_size(aliases) + 1, sizeof *out->aliases);
            size_t index;
            json_t *alias;
            json_array_foreach(aliases, index, alias) {
                if (!json_is_string(alias) || !valid_name(json_string_value(alias), json_string_length(alias))) {
                    parse_fail(parser, "alias %zu of field '%s' is not a valid name", index, field_name);
                    return false;
                }
                out->aliases[out->alias_count++] = strdup(json_string_value(alias));
            }
            json_object_set(canonical_field, "aliases", (json_t *)aliases);
        }
        copy_properties(field, canonical_field, reserved);
        path_pop(parser, mark);
    }
    return true;
}

static bool parse_symbols(struct parser *parser, struct node *node, const json_t *object, json_t *canonical)
{
    const json_t *symbols = json_object_get(object, "symbols");
    if (!json_is_array(symbols)) {
        parse_fail(parser, "enum '%s' needs a \"symbols\" array", node->fullname);
        return false;
    }
    node->symbols = calloc(json_array_size(symbols) + 1, sizeof *node->symbols);
    if (!node->symbols) {
        parse_fail(parser, "out of memory");
        return false;
    }
    size_t index;
    json_t *symbol;
    json_array_foreach(symbols, index, symbol) {
        const char *text = json_string_value(symbol);
        if (!text || !valid_name(text, strlen(text))) {
            parse_fail(parser, "symbol %zu of enum '%s' is not a valid name", index, node->fullname);
            return false;
        }
        for (size_t k = 0; k < node->symbol_count; k++)
            if (strcmp(node->symbols[k], text) == 0) {
                parse_fail(parser, "enum '%s' has the symbol '%s' twice", node->fullname, text);
                return false;
            }
        node->symbols[node->symbol_count++] = strdup(text);
    }
    json_object_set(canonical, "symbols", (json_t *)symbols);
    const json_t *enum_default = json_object_get(object, "default");
    if (enum_default) {
        node->has_enum_default = true;
        if (!default_valid(node, enum_default, 0)) {
            parse_fail(parser, "the default of enum '%s' is not one of its symbols", node->fullname);
            return false;
        }
        json_object_set(canonical, "default", (json_t *)enum_default);
    }
    return true;
}

/* Parses one schema in any of its three JSON forms. space is the enclosing namespace. On success
 * *canonical holds the node's registry text as JSON (caller owns it). */
static struct node *parse_node(struct parser *parser, const json_t *json, const char *space, json_t **canonical)
{
    *canonical = NULL;
    if (json_is_string(json)) {
        const char *name = json_string_value(json);
        int primitive = primitive_kind(name);
        if (primitive >= 0) {
            *canonical = json_string(name);
            return node_new(parser, (enum kind)primitive);
        }
        char *qualified = strchr(name, '.') ? NULL : join_name(space, name);
        struct node *found = named_find(parser->schema, qualified ? qualified : name);
        if (!found && qualified) found = named_find(parser->schema, name);
        free(qualified);
        if (!found) {
            parse_fail(parser, "unknown type '%s' (not a primitive type nor a name defined before)", name);
            return NULL;
        }
        *canonical = reference_text(found, space);
        return found;
    }
    if (json_is_array(json)) {
        struct node *node = node_new(parser, K_UNION);
        if (!node) return NULL;
        size_t count = json_array_size(json);
        node->branches = calloc(count + 1, sizeof *node->branches);
        *canonical = json_array();
        if (!node->branches || !*canonical) {
            parse_fail(parser, "out of memory");
            return NULL;
        }
        for (size_t i = 0; i < count; i++) {
            size_t mark = path_push(parser, "/%zu", i);
            json_t *branch_canonical = NULL;
            struct node *branch = parse_node(parser, json_array_get(json, i), space, &branch_canonical);
            if (!branch) {
                json_decref(branch_canonical);
                return NULL;
            }
            json_array_append_new(*canonical, branch_canonical);
            if (branch->kind == K_UNION) {
                parse_fail(parser, "a union may not contain a union directly");
                return NULL;
            }
            for (size_t k = 0; k < node->branch_count; k++) {
                const struct node *other = node->branches[k];
                bool named = branch->kind == K_RECORD || branch->kind == K_ENUM || branch->kind == K_FIXED;
                if (other->kind == branch->kind && (!named || strcmp(other->fullname, branch->fullname) == 0)) {
                    parse_fail(parser, "the union has '%s' twice", named ? branch->fullname : kind_names[branch->kind]);
                    return NULL;
                }
            }
            node->branches[node->branch_count++] = branch;
            path_pop(parser, mark);
        }
        return node;
    }
    if (!json_is_object(json)) {
        parse_fail(parser, "a schema is a type name, a union (array) or an object with \"type\"");
        return NULL;
    }
    const json_t *type = json_object_get(json, "type");
    if (!type) {
        parse_fail(parser, "the object has no \"type\"");
        return NULL;
    }
    if (!json_is_string(type)) {
        parse_fail(parser, "\"type\" of a schema object must be a type name");
        return NULL;
    }
    const char *type_name = json_string_value(type);
    int primitive = primitive_kind(type_name);
    static const char *const primitive_reserved[] = {"type", NULL};
    if (primitive >= 0) {
        struct node *node = node_new(parser, (enum kind)primitive);
        if (!node) return NULL;
        if (json_object_size(json) == 1) {
            *canonical = json_string(type_name);
        } else {
            *canonical = json_object();
            json_object_set_new(*canonical, "type", json_string(type_name));
            copy_properties(json, *canonical, primitive_reserved);
        }
        return node;
    }
    enum kind kind;
    if (strcmp(type_name, "record") == 0 || strcmp(type_name, "error") == 0) kind = K_RECORD;
    else if (strcmp(type_name, "enum") == 0) kind = K_ENUM;
    else if (strcmp(type_name, "array") == 0) kind = K_ARRAY;
    else if (strcmp(type_name, "map") == 0) kind = K_MAP;
    else if (strcmp(type_name, "fixed") == 0) kind = K_FIXED;
    else return parse_node(parser, type, space, canonical);  /* {"type": "a.Named"} */

    struct node *node = node_new(parser, kind);
    if (!node) return NULL;
    *canonical = json_object();
    if (!*canonical) {
        parse_fail(parser, "out of memory");
        return NULL;
    }
    json_object_set_new(*canonical, "type", json_string(type_name));
    if (kind == K_ARRAY || kind == K_MAP) {
        static const char *const reserved[] = {"type", "items", "values", NULL};
        const char *member = kind == K_ARRAY ? "items" : "values";
        const json_t *inner = json_object_get(json, member);
        if (!inner) {
            parse_fail(parser, "%s needs \"%s\"", type_name, member);
            return NULL;
        }
        size_t mark = path_push(parser, "/%s", member);
        json_t *inner_canonical = NULL;
        node->items = parse_node(parser, inner, space, &inner_canonical);
        if (!node->items) {
            json_decref(inner_canonical);
            return NULL;
        }
        json_object_set_new(*canonical, member, inner_canonical);
        path_pop(parser, mark);
        copy_properties(json, *canonical, reserved);
        return node;
    }
    if (!parse_name(parser, node, json, space, *canonical)) return NULL;
    const json_t *doc = json_object_get(json, "doc");
    if (doc) json_object_set(*canonical, "doc", (json_t *)doc);
    if (kind == K_RECORD) {
        static const char *const reserved[] = {"type", "name", "namespace", "doc", "fields", "aliases", NULL};
        if (!parse_fields(parser, node, json, *canonical)) return NULL;
        copy_properties(json, *canonical, reserved);
    } else if (kind == K_ENUM) {
        static const char *const reserved[] = {"type", "name", "namespace", "doc", "symbols", "aliases", "default", NULL};
        if (!parse_symbols(parser, node, json, *canonical)) return NULL;
        copy_properties(json, *canonical, reserved);
    } else {
        static const char *const reserved[] = {"type", "name", "namespace", "doc", "size", "aliases", NULL};
        const json_t *size = json_object_get(json, "size");
        if (!json_is_integer(size) || json_integer_value(size) < 0 || json_integer_value(size) > INT32_MAX) {
            parse_fail(parser, "fixed '%s' needs a \"size\": a non-negative integer", node->fullname);
            return NULL;
        }
        node->size = json_integer_value(size);
        json_object_set(*canonical, "size", (json_t *)size);
        copy_properties(json, *canonical, reserved);
    }
    const json_t *aliases = json_object_get(json, "aliases");
    if (aliases) json_object_set(*canonical, "aliases", (json_t *)aliases);
    return node;
}

struct avro_schema *avro_schema_parse(const char *text, size_t length, char *error, size_t error_size)
{
    json_error_t json_error;
    json_t *json = json_loadb(text, length, JSON_DECODE_ANY, &json_error);
    if (!json) {
        snprintf(error, error_size, "not JSON: %s at line %d, column %d", json_error.text, json_error.line,
                 json_error.column);
        return NULL;
    }
    struct avro_schema *schema = calloc(1, sizeof *schema);
    if (!schema) {
        json_decref(json);
        snprintf(error, error_size, "out of memory");
        return NULL;
    }
    struct parser parser = {.schema = schema, .error = error, .error_size = error_size};
    json_t *canonical = NULL;
    schema->root = parse_node(&parser, json, NULL, &canonical);
    json_decref(json);
    if (schema->root && !parser.failed) {
        schema->text = json_dumps(canonical, JSON_ENCODE_ANY | JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!schema->text) parse_fail(&parser, "out of memory");
    }
    json_decref(canonical);
    if (!schema->root || parser.failed) {
        if (!parser.failed) snprintf(error, error_size, "invalid schema");
        avro_schema_free(schema);
        return NULL;
    }
    return schema;
}

/* ---- compatibility ------------------------------------------------------------------------ */

struct pair {
    const struct node *reader, *writer;
};

struct checker {
    json_t *problems;
    const char *reader_label, *writer_label;
    struct pair stack[256];  /* pairs being checked: a recursive type meets itself here */
    size_t depth;
    char path[1024];
    size_t path_length;
};

static void problem(struct checker *checker, const char *type, const char *additional, const char *format, ...)
    __attribute__((format(printf, 4, 5)));

static void problem(struct checker *checker, const char *type, const char *additional, const char *format, ...)
{
    if (!json_is_array(checker->problems)) return;
    char description[768], text[1536];
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(description, sizeof description, format, arguments);
    va_end(arguments);
    snprintf(text, sizeof text, "{errorType:'%s', description:'%s', additionalInfo:'%s'}", type, description,
             additional);
    json_array_append_new(checker->problems, json_string(text));
}

static size_t checker_push(struct checker *checker, const char *format, ...) __attribute__((format(printf, 2, 3)));

static size_t checker_push(struct checker *checker, const char *format, ...)
{
    size_t mark = checker->path_length;
    if (mark < sizeof checker->path - 1) {
        va_list arguments;
        va_start(arguments, format);
        int added = vsnprintf(checker->path + mark, sizeof checker->path - mark, format, arguments);
        va_end(arguments);
        if (added > 0) checker->path_length = mark + (size_t)added < sizeof checker->path - 1
                                                  ? mark + (size_t)added : sizeof checker->path - 1;
    }
    return mark;
}

static void checker_pop(struct checker *checker, size_t mark)
{
    checker->path_length = mark;
    checker->path[mark] = '\0';
}

static const char *here(const struct checker *checker) { return checker->path_length ? checker->path : "/"; }

static void upper(const char *name, char *out, size_t size)
{
    size_t i = 0;
    for (; name[i] && i + 1 < size; i++) out[i] = (char)(name[i] >= 'a' && name[i] <= 'z' ? name[i] - 32 : name[i]);
    out[i] = '\0';
}

/* Java's rule: the unqualified names agree, or the reader lists the writer's full name as an alias. */
static bool names_match(const struct node *reader, const struct node *writer)
{
    if (strcmp(reader->name, writer->name) == 0) return true;
    for (size_t i = 0; i < reader->alias_count; i++)
        if (reader->aliases[i] && strcmp(reader->aliases[i], writer->fullname) == 0) return true;
    return false;
}

static bool can_read(struct checker *checker, const struct node *reader, const struct node *writer);

/* Whether reader can read writer with no union on either side resolved yet; quiet: report nothing. */
static bool promotable(enum kind reader, enum kind writer)
{
    switch (reader) {
    case K_LONG: return writer == K_INT;
    case K_FLOAT: return writer == K_INT || writer == K_LONG;
    case K_DOUBLE: return writer == K_INT || writer == K_LONG || writer == K_FLOAT;
    case K_BYTES: return writer == K_STRING;
    case K_STRING: return writer == K_BYTES;
    default: return false;
    }
}

static void type_mismatch(struct checker *checker, const struct node *reader, const struct node *writer)
{
    char reader_name[16], writer_name[16], info[96];
    upper(kind_names[reader->kind], reader_name, sizeof reader_name);
    upper(kind_names[writer->kind], writer_name, sizeof writer_name);
    snprintf(info, sizeof info, "reader type: %s not compatible with writer type: %s", reader_name, writer_name);
    problem(checker, "TYPE_MISMATCH", info,
            "The type (path '%s') of a field in the %s schema does not match with the %s schema", here(checker),
            checker->reader_label, checker->writer_label);
}

static bool record_can_read(struct checker *checker, const struct node *reader, const struct node *writer)
{
    bool ok = true;
    for (size_t i = 0; i < reader->field_count; i++) {
        const struct field *field = &reader->fields[i];
        const struct field *match = NULL;
        for (size_t k = 0; k < writer->field_count && !match; k++) {
            if (strcmp(writer->fields[k].name, field->name) == 0) match = &writer->fields[k];
            for (size_t a = 0; a < field->alias_count && !match; a++)
                if (strcmp(writer->fields[k].name, field->aliases[a]) == 0) match = &writer->fields[k];
        }
        size_t mark = checker_push(checker, "/fields/%zu", i);
        if (!match) {
            if (!field->default_value) {
                problem(checker, "READER_FIELD_MISSING_DEFAULT_VALUE", field->name,
                        "The field '%s' at path '%s' in the %s schema has no default value and is missing in the %s schema",
                        field->name, here(checker), checker->reader_label, checker->writer_label);
                ok = false;
            }
        } else {
            size_t type_mark = checker_push(checker, "/type");
            if (!can_read(checker, field->type, match->type)) ok = false;
            checker_pop(checker, type_mark);
        }
        checker_pop(checker, mark);
    }
    return ok;
}

static bool same_kind_can_read(struct checker *checker, const struct node *reader, const struct node *writer)
{
    switch (reader->kind) {
    case K_ARRAY:
    case K_MAP: {
        size_t mark = checker_push(checker, reader->kind == K_ARRAY ? "/items" : "/values");
        bool ok = can_read(checker, reader->items, writer->items);
        checker_pop(checker, mark);
        return ok;
    }
    case K_FIXED:
    case K_ENUM:
    case K_RECORD:
        if (!names_match(reader, writer)) {
            char info[512];
            snprintf(info, sizeof info, "expected: %s", writer->fullname);
            size_t mark = checker_push(checker, "/name");
            problem(checker, "NAME_MISMATCH", info, "The name of the schema has changed (path '%s')", here(checker));
            checker_pop(checker, mark);
            return false;
        }
        if (reader->kind == K_FIXED && reader->size != writer->size) {
            char info[96];
            snprintf(info, sizeof info, "expected: %lld, found: %lld", (long long)writer->size, (long long)reader->size);
            size_t mark = checker_push(checker, "/size");
            problem(checker, "FIXED_SIZE_MISMATCH", info,
                    "The size of FIXED type field at path '%s' in the %s schema does not match with the %s schema",
                    here(checker), checker->reader_label, checker->writer_label);
            checker_pop(checker, mark);
            return false;
        }
        if (reader->kind == K_ENUM && !reader->has_enum_default) {
            char missing[512] = "";
            size_t used = 0;
            for (size_t i = 0; i < writer->symbol_count; i++) {
                bool found = false;
                for (size_t k = 0; k < reader->symbol_count && !found; k++)
                    found = strcmp(reader->symbols[k], writer->symbols[i]) == 0;
                if (!found && used < sizeof missing) {
                    int added = snprintf(missing + used, sizeof missing - used, "%s%s", used ? ", " : "", writer->symbols[i]);
                    if (added > 0) used += (size_t)added;
                }
            }
            if (missing[0]) {
                char info[600];
                snprintf(info, sizeof info, "[%s]", missing);
                size_t mark = checker_push(checker, "/symbols");
                problem(checker, "MISSING_ENUM_SYMBOLS", info,
                        "The %s schema is missing enum symbols '%s' at path '%s' in the %s schema",
                        checker->reader_label, info, here(checker), checker->writer_label);
                checker_pop(checker, mark);
                return false;
            }
        }
        return reader->kind == K_RECORD ? record_can_read(checker, reader, writer) : true;
    default:
        return true;  /* the same primitive */
    }
}

static bool can_read(struct checker *checker, const struct node *reader, const struct node *writer)
{
    for (size_t i = 0; i < checker->depth; i++)
        if (checker->stack[i].reader == reader && checker->stack[i].writer == writer) return true;
    if (checker->depth == sizeof checker->stack / sizeof checker->stack[0]) return true;  /* deeper than any sane schema */
    checker->stack[checker->depth++] = (struct pair){reader, writer};
    bool ok = true;
    if (writer->kind == K_UNION) {
        /* every branch the writer may have written must be readable */
        for (size_t i = 0; i < writer->branch_count; i++) {
            if (reader->kind == K_UNION) {
                if (!can_read(checker, reader, writer->branches[i])) ok = false;
            } else if (!can_read(checker, reader, writer->branches[i])) {
                ok = false;
            }
        }
    } else if (reader->kind == K_UNION) {
        bool found = false;
        for (size_t i = 0; i < reader->branch_count && !found; i++) {
            json_t *quiet = checker->problems;
            checker->problems = NULL;
            found = can_read(checker, reader->branches[i], writer);
            checker->problems = quiet;
        }
        if (!found) {
            char writer_name[16], info[96];
            upper(kind_names[writer->kind], writer_name, sizeof writer_name);
            snprintf(info, sizeof info, "reader union lacking writer type: %s", writer_name);
            problem(checker, "MISSING_UNION_BRANCH", info,
                    "The %s schema is missing a type inside a union field at path '%s' in the %s schema",
                    checker->reader_label, here(checker), checker->writer_label);
            ok = false;
        }
    } else if (reader->kind == writer->kind) {
        ok = same_kind_can_read(checker, reader, writer);
    } else if (!promotable(reader->kind, writer->kind)) {
        type_mismatch(checker, reader, writer);
        ok = false;
    }
    checker->depth--;
    return ok;
}

bool avro_schema_can_read(const struct avro_schema *reader, const struct avro_schema *writer, json_t *problems,
                          const char *reader_label, const char *writer_label)
{
    struct checker checker = {.problems = problems, .reader_label = reader_label, .writer_label = writer_label};
    return can_read(&checker, reader->root, writer->root);
}
