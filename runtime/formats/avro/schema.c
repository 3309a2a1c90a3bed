/* schema.c: an Avro schema as libavro reads it and as a tree of our own (avro_int.h), which
 * adds what libavro ignores: logical types, field defaults, the fewest bytes of each type.
 *
 * libavro checks the schema first (its message is the one users see for a bad schema); the tree
 * is then read from the same JSON. The projection (avro_tree_project) is how schema resolution
 * with defaults works over libavro, which refuses a reader field the writer lacks. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "formats/avro/avro_int.h"

static const char *const kind_names[] = {"null", "boolean", "int", "long", "float", "double", "bytes",
                                         "string", "record", "enum", "array", "map", "union", "fixed"};

struct parser {
    struct avro_tree *tree;
    struct rn_err *err;
};

static struct avro_node *node_new(struct avro_tree *t, enum avro_kind kind)
{
    if (t->node_count == t->node_cap) {
        t->node_cap = t->node_cap ? t->node_cap * 2 : 16;
        t->nodes = rn_realloc(t->nodes, t->node_cap * sizeof *t->nodes);
    }
    struct avro_node *n = rn_calloc(1, sizeof *n);
    n->kind = kind;
    n->min_bytes = -1;
    n->default_symbol = -1;
    t->nodes[t->node_count++] = n;
    return n;
}

static int primitive_kind(const char *name)
{
    for (int k = AVRO_KIND_NULL; k <= AVRO_KIND_STRING; k++)
        if (strcmp(kind_names[k], name) == 0) return k;
    return -1;
}

/* The named type called name (full, or qualified with ns), or NULL. */
static struct avro_node *named(struct avro_tree *t, const char *name, const char *ns)
{
    char full[512];
    if (!strchr(name, '.') && ns && *ns) snprintf(full, sizeof full, "%s.%s", ns, name);
    else snprintf(full, sizeof full, "%s", name);
    for (size_t i = 0; i < t->node_count; i++)
        if (t->nodes[i]->name && strcmp(t->nodes[i]->name, full) == 0) return t->nodes[i];
    if (strcmp(full, name) != 0)
        for (size_t i = 0; i < t->node_count; i++)
            if (t->nodes[i]->name && strcmp(t->nodes[i]->name, name) == 0) return t->nodes[i];
    return NULL;
}

/* The full name of a named type's definition, and the namespace its children inherit. */
static char *full_name(json_t *def, const char *ns, const char **child_ns_out, char *ns_buf, size_t ns_size)
{
    const char *name = json_string_value(json_object_get(def, "name"));
    const char *own_ns = json_string_value(json_object_get(def, "namespace"));
    if (!name) name = "";
    const char *dot = strrchr(name, '.');
    char *full;
    if (dot) {
        full = rn_strdup(name);
        snprintf(ns_buf, ns_size, "%.*s", (int)(dot - name), name);
    } else {
        const char *use = own_ns ? own_ns : ns;
        size_t n = strlen(name) + (use ? strlen(use) : 0) + 2;
        full = rn_malloc(n);
        if (use && *use) snprintf(full, n, "%s.%s", use, name);
        else snprintf(full, n, "%s", name);
        snprintf(ns_buf, ns_size, "%s", use ? use : "");
    }
    *child_ns_out = ns_buf;
    return full;
}

static void set_logical(struct avro_node *n, json_t *def)
{
    const char *lt = json_string_value(json_object_get(def, "logicalType"));
    if (!lt) return;
    enum avro_kind k = n->kind;
    if (strcmp(lt, "date") == 0 && k == AVRO_KIND_INT) n->logical = AVRO_LOGICAL_DATE;
    else if (strcmp(lt, "time-millis") == 0 && k == AVRO_KIND_INT) n->logical = AVRO_LOGICAL_TIME_MILLIS;
    else if (strcmp(lt, "time-micros") == 0 && k == AVRO_KIND_LONG) n->logical = AVRO_LOGICAL_TIME_MICROS;
    else if (strcmp(lt, "timestamp-millis") == 0 && k == AVRO_KIND_LONG) n->logical = AVRO_LOGICAL_TIMESTAMP_MILLIS;
    else if (strcmp(lt, "timestamp-micros") == 0 && k == AVRO_KIND_LONG) n->logical = AVRO_LOGICAL_TIMESTAMP_MICROS;
    else if (strcmp(lt, "uuid") == 0 && k == AVRO_KIND_STRING) n->logical = AVRO_LOGICAL_UUID;
    else if (strcmp(lt, "decimal") == 0 && (k == AVRO_KIND_BYTES || k == AVRO_KIND_FIXED)) {
        json_int_t precision = json_integer_value(json_object_get(def, "precision"));
        json_int_t scale = json_integer_value(json_object_get(def, "scale"));
        /* the spec: an invalid decimal is read as its underlying type */
        if (precision < 1 || precision > 1000 || scale < 0 || scale > precision) return;
        n->logical = AVRO_LOGICAL_DECIMAL;
        n->precision = (int)precision;
        n->scale = (int)scale;
    }
}

static struct avro_node *parse_type(struct parser *p, json_t *j, const char *ns, int depth);

static int parse_record(struct parser *p, struct avro_node *n, json_t *def, const char *ns, int depth)
{
    json_t *fields = json_object_get(def, "fields");
    size_t count = json_array_size(fields);
    n->fields = rn_calloc(count ? count : 1, sizeof *n->fields);
    for (size_t i = 0; i < count; i++) {
        json_t *f = json_array_get(fields, i);
        struct avro_field *field = &n->fields[i];
        field->name = rn_strdup(json_string_value(json_object_get(f, "name")) ? json_string_value(json_object_get(f, "name")) : "");
        n->field_count = i + 1;
        field->key = ++p->tree->key_count;
        field->default_value = json_object_get(f, "default");
        if (!(field->type = parse_type(p, json_object_get(f, "type"), ns, depth + 1)))
            return rn_wrap(p->err, "record %s: field '%s'", n->name, field->name);
    }
    return 0;
}

static struct avro_node *parse_type(struct parser *p, json_t *j, const char *ns, int depth)
{
    struct avro_tree *t = p->tree;
    if (depth > AVRO_MAX_DEPTH) {
        rn_fail(p->err, "types nested deeper than %d", AVRO_MAX_DEPTH);
        return NULL;
    }
    if (json_is_string(j)) {
        int k = primitive_kind(json_string_value(j));
        if (k >= 0) return node_new(t, (enum avro_kind)k);
        struct avro_node *ref = named(t, json_string_value(j), ns);
        if (!ref) rn_fail(p->err, "unknown type '%s'", json_string_value(j));
        return ref;
    }
    if (json_is_array(j)) {
        struct avro_node *n = node_new(t, AVRO_KIND_UNION);
        size_t count = json_array_size(j);
        n->branches = rn_calloc(count ? count : 1, sizeof *n->branches);
        for (size_t i = 0; i < count; i++) {
            if (!(n->branches[i] = parse_type(p, json_array_get(j, i), ns, depth + 1))) return NULL;
            n->branch_count = i + 1;
        }
        return n;
    }
    if (!json_is_object(j)) {
        rn_fail(p->err, "a type must be a name, a list or an object");
        return NULL;
    }
    json_t *type = json_object_get(j, "type");
    if (!json_is_string(type)) return parse_type(p, type, ns, depth + 1);
    const char *tn = json_string_value(type);
    int k = primitive_kind(tn);
    if (k >= 0) {
        struct avro_node *n = node_new(t, (enum avro_kind)k);
        set_logical(n, j);
        return n;
    }
    enum avro_kind kind;
    if (strcmp(tn, "record") == 0 || strcmp(tn, "error") == 0) kind = AVRO_KIND_RECORD;
    else if (strcmp(tn, "enum") == 0) kind = AVRO_KIND_ENUM;
    else if (strcmp(tn, "fixed") == 0) kind = AVRO_KIND_FIXED;
    else if (strcmp(tn, "array") == 0 || strcmp(tn, "map") == 0) {
        struct avro_node *n = node_new(t, tn[0] == 'a' ? AVRO_KIND_ARRAY : AVRO_KIND_MAP);
        if (!(n->items = parse_type(p, json_object_get(j, tn[0] == 'a' ? "items" : "values"), ns, depth + 1)))
            return NULL;
        return n;
    } else {
        struct avro_node *ref = named(t, tn, ns);
        if (!ref) rn_fail(p->err, "unknown type '%s'", tn);
        return ref;
    }
    struct avro_node *n = node_new(t, kind);
    char ns_buf[512];
    const char *child_ns;
    n->name = full_name(j, ns, &child_ns, ns_buf, sizeof ns_buf);
    if (kind == AVRO_KIND_RECORD) {
        if (parse_record(p, n, j, child_ns, depth)) return NULL;
    } else if (kind == AVRO_KIND_ENUM) {
        json_t *symbols = json_object_get(j, "symbols");
        n->symbol_count = json_array_size(symbols);
        n->symbols = rn_calloc(n->symbol_count ? n->symbol_count : 1, sizeof *n->symbols);
        for (size_t i = 0; i < n->symbol_count; i++) {
            const char *s = json_string_value(json_array_get(symbols, i));
            n->symbols[i] = rn_strdup(s ? s : "");
        }
        const char *fallback = json_string_value(json_object_get(j, "default"));
        for (size_t i = 0; fallback && i < n->symbol_count; i++)
            if (strcmp(n->symbols[i], fallback) == 0) n->default_symbol = (int)i;
    } else {
        json_int_t size = json_integer_value(json_object_get(j, "size"));
        n->size = size > 0 ? (size_t)size : 0;
        set_logical(n, j);
    }
    return n;
}

/* The fewest bytes a value of n takes; a record that contains itself counts 0 for the inner one. */
static int min_bytes(struct avro_node *n)
{
    if (n->min_bytes >= 0) return n->min_bytes;
    switch (n->kind) {
    case AVRO_KIND_NULL: n->min_bytes = 0; break;
    case AVRO_KIND_FLOAT: n->min_bytes = 4; break;
    case AVRO_KIND_DOUBLE: n->min_bytes = 8; break;
    case AVRO_KIND_FIXED: n->min_bytes = n->size > 1000000 ? 1000000 : (int)n->size; break;
    case AVRO_KIND_RECORD: {
        n->min_bytes = 0; /* while its fields are counted */
        long sum = 0;
        for (size_t i = 0; i < n->field_count; i++) {
            sum += min_bytes(n->fields[i].type);
            if (sum > 1000000) sum = 1000000;
        }
        n->min_bytes = (int)sum;
        break;
    }
    default: n->min_bytes = 1; break; /* a varint, a length, an index or a block count */
    }
    return n->min_bytes;
}

struct avro_tree *avro_tree_parse(const char *text, size_t len, struct rn_err *err)
{
    json_error_t jerr;
    json_t *json = json_loadb(text, len, JSON_DECODE_ANY, &jerr);
    if (!json) {
        rn_fail(err, "invalid Avro schema: not JSON: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
        return NULL;
    }
    struct avro_tree *t = rn_calloc(1, sizeof *t);
    t->json = json;
    t->keys_ref = LUA_NOREF;
    if (avro_schema_from_json_length(text, len, &t->schema)) {
        rn_fail(err, "invalid Avro schema: %s", avro_strerror());
        t->schema = NULL;
        avro_tree_free(t);
        return NULL;
    }
    struct parser p = {t, err};
    if (!(t->root = parse_type(&p, json, NULL, 0))) {
        rn_wrap(err, "invalid Avro schema");
        avro_tree_free(t);
        return NULL;
    }
    for (size_t i = 0; i < t->node_count; i++) min_bytes(t->nodes[i]);
    return t;
}

void avro_tree_free(struct avro_tree *t)
{
    if (!t) return;
    if (t->keys_L) luaL_unref(t->keys_L, LUA_REGISTRYINDEX, t->keys_ref);
    for (size_t i = 0; i < t->node_count; i++) {
        struct avro_node *n = t->nodes[i];
        for (size_t f = 0; f < n->field_count; f++) free(n->fields[f].name);
        free(n->fields);
        for (size_t s = 0; s < n->symbol_count; s++) free(n->symbols[s]);
        free(n->symbols);
        free(n->branches);
        free(n->name);
        free(n);
    }
    free(t->nodes);
    if (t->schema) avro_schema_decref(t->schema);
    json_decref(t->json);
    free(t);
}

void avro_node_describe(const struct avro_node *n, struct buf *out)
{
    if (n->name) {
        buf_printf(out, "%s %s", kind_names[n->kind], n->name);
    } else if (n->kind == AVRO_KIND_UNION) {
        buf_puts(out, "union [");
        for (size_t i = 0; i < n->branch_count; i++) {
            if (i) buf_puts(out, ", ");
            const struct avro_node *b = n->branches[i];
            buf_puts(out, b->name ? b->name : kind_names[b->kind]);
        }
        buf_putc(out, ']');
    } else {
        buf_puts(out, kind_names[n->kind]);
    }
}

/* ---- projection ---- */

const struct avro_node *avro_tree_named(const struct avro_tree *t, enum avro_kind kind, const char *name)
{
    const char *dot = strrchr(name, '.');
    const char *bare = dot ? dot + 1 : name;
    const struct avro_node *same_bare = NULL;
    for (size_t i = 0; i < t->node_count; i++) {
        const struct avro_node *w = t->nodes[i];
        if (w->kind != kind || !w->name) continue;
        if (strcmp(w->name, name) == 0) return w;
        const char *wdot = strrchr(w->name, '.');
        if (!same_bare && strcmp(wdot ? wdot + 1 : w->name, bare) == 0) same_bare = w;
    }
    return same_bare;
}

struct projection {
    const struct avro_tree *writer;
    const struct avro_node **emitted; /* named types written out already */
    size_t emitted_count;
    struct rn_err *err;
};

static json_t *project(struct projection *p, const struct avro_node *n)
{
    if (n->name) {
        for (size_t i = 0; i < p->emitted_count; i++)
            if (p->emitted[i] == n) return json_string(n->name);
        p->emitted = rn_realloc(p->emitted, (p->emitted_count + 1) * sizeof *p->emitted);
        p->emitted[p->emitted_count++] = n;
    }
    json_t *j = NULL;
    switch (n->kind) {
    case AVRO_KIND_RECORD: {
        const struct avro_node *w = avro_tree_named(p->writer, AVRO_KIND_RECORD, n->name);
        json_t *fields = json_array();
        for (size_t i = 0; i < n->field_count; i++) {
            const struct avro_field *f = &n->fields[i];
            int in_writer = !w;
            for (size_t k = 0; w && k < w->field_count && !in_writer; k++) in_writer = strcmp(w->fields[k].name, f->name) == 0;
            if (!in_writer) {
                if (f->default_value) continue; /* filled from the default */
                rn_fail(p->err, "the reader's field '%s' of record %s has no default and the writer's schema lacks it",
                        f->name, n->name);
                json_decref(fields);
                return NULL;
            }
            json_t *type = project(p, f->type);
            if (!type) {
                json_decref(fields);
                return NULL;
            }
            json_array_append_new(fields, json_pack("{s:s, s:o}", "name", f->name, "type", type));
        }
        j = json_pack("{s:s, s:s, s:o}", "type", "record", "name", n->name, "fields", fields);
        break;
    }
    case AVRO_KIND_ENUM: {
        json_t *symbols = json_array();
        for (size_t i = 0; i < n->symbol_count; i++) json_array_append_new(symbols, json_string(n->symbols[i]));
        j = json_pack("{s:s, s:s, s:o}", "type", "enum", "name", n->name, "symbols", symbols);
        break;
    }
    case AVRO_KIND_FIXED: j = json_pack("{s:s, s:s, s:I}", "type", "fixed", "name", n->name, "size", (json_int_t)n->size); break;
    case AVRO_KIND_ARRAY:
    case AVRO_KIND_MAP: {
        json_t *items = project(p, n->items);
        if (!items) return NULL;
        j = json_pack("{s:s, s:o}", "type", n->kind == AVRO_KIND_ARRAY ? "array" : "map",
                      n->kind == AVRO_KIND_ARRAY ? "items" : "values", items);
        break;
    }
    case AVRO_KIND_UNION:
        j = json_array();
        for (size_t i = 0; i < n->branch_count; i++) {
            json_t *b = project(p, n->branches[i]);
            if (!b) {
                json_decref(j);
                return NULL;
            }
            json_array_append_new(j, b);
        }
        break;
    default: j = json_string(kind_names[n->kind]); break;
    }
    return j;
}

avro_schema_t avro_tree_project(const struct avro_tree *reader, const struct avro_tree *writer, struct rn_err *err)
{
    struct projection p = {writer, NULL, 0, err};
    json_t *j = project(&p, reader->root);
    free(p.emitted);
    if (!j) return NULL;
    char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(j);
    avro_schema_t schema = NULL;
    if (avro_schema_from_json_length(text, strlen(text), &schema)) {
        rn_fail(err, "the reader's schema, less the fields the writer lacks, does not parse: %s", avro_strerror());
        schema = NULL;
    }
    free(text);
    return schema;
}
