/* output.c: the `output` declaration of a model: the fields an answer fills (type, min, max,
 * enum, description), whether answers are asked to follow a JSON schema (structured output),
 * that schema, and the sentence that tells the model what a valid answer looks like (for the
 * correction round). Read once when the model opens; read-only after. */
#include "models/model_int.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

static const char *const field_type_names[] = {"integer", "number", "string", "boolean", "vector"};

const char *output_type_name(enum field_type type) { return field_type_names[type]; }

static int parse_field_type(const char *s, enum field_type *out)
{
    for (int i = 0; i <= FIELD_VECTOR; i++)
        if (strcmp(s, field_type_names[i]) == 0) { *out = (enum field_type)i; return 0; }
    return -1;
}

static int field_compare(const void *a, const void *b)
{
    return strcmp(((const struct output_field *)a)->name, ((const struct output_field *)b)->name);
}

/* Read one field at idx, as the declaration checked it (lua/options.h: a table with a known
 * type, numbers for min and max, a list of strings for enum, a string description). What a
 * spec cannot say is checked here: which keys go with which type, and min <= max. */
static int read_field(lua_State *L, int idx, struct output_field *f, struct rn_err *err)
{
    idx = lua_absindex(L, idx);
    if (parse_field_type(opt_string(L, idx, "type", ""), &f->type))
        return rn_fail(err, "output.%s: missing type (integer, number, string, boolean, vector)", f->name);
    const char *bounds[2] = {"min", "max"};
    for (int k = 0; k < 2; k++) {
        if (!opt_push(L, idx, bounds[k])) continue;
        double v = lua_tonumber(L, -1);
        lua_pop(L, 1);
        if (f->type != FIELD_INTEGER && f->type != FIELD_NUMBER)
            return rn_fail(err, "output.%s: %s applies to integer and number fields only", f->name, bounds[k]);
        if (k == 0) { f->has_min = 1; f->min = v; }
        else { f->has_max = 1; f->max = v; }
    }
    if (f->has_min && f->has_max && f->min > f->max)
        return rn_fail(err, "output.%s: min is greater than max", f->name);
    const char *description = opt_string(L, idx, "description", NULL);
    if (description) f->description = rn_strdup(description);
    size_t n = 0;
    char **values = opt_string_list(L, idx, "enum", &n);
    if (!values) return 0;
    f->enum_values = values;
    f->enum_count = n;
    if (f->type != FIELD_STRING) return rn_fail(err, "output.%s: enum applies to string fields only", f->name);
    for (size_t i = 0; i < n; i++)
        if (!*values[i]) return rn_fail(err, "output.%s: enum[%zu] must be a non-empty string", f->name, i + 1);
    return 0;
}

static void add_field(struct output *o, const char *name, enum field_type type)
{
    o->fields = rn_realloc(o->fields, (o->field_count + 1) * sizeof *o->fields);
    o->fields[o->field_count++] = (struct output_field){.name = rn_strdup(name), .type = type};
}

static void build_schema_and_expected(struct output *o);

int output_read(struct output *o, lua_State *L, int opts, enum model_task task, unsigned capabilities,
                struct rn_err *err)
{
    int declared = opt_push(L, opts, "output");
    if (declared) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            add_field(o, lua_tostring(L, -2), FIELD_STRING);
            if (read_field(L, -1, &o->fields[o->field_count - 1], err)) { lua_pop(L, 3); return -1; }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        if (o->field_count == 0) return rn_fail(err, "output: declare at least one field");
        qsort(o->fields, o->field_count, sizeof *o->fields, field_compare);
    }
    switch (task) {
    case MODEL_TASK_CLASSIFICATION:
        if (!declared)
            return rn_fail(err, "output is required for task classification, e.g. "
                                "output = { rating = { type = \"integer\", min = 1, max = 5 } }");
        break;
    case MODEL_TASK_TEXT_GENERATION:
        if (!declared) add_field(o, "text", FIELD_STRING);
        break;
    case MODEL_TASK_EMBEDDING:
        if (!declared) add_field(o, "embedding", FIELD_VECTOR);
        if (o->field_count != 1 || o->fields[0].type != FIELD_VECTOR)
            return rn_fail(err, "output: task embedding fills exactly one field of type vector, "
                                "e.g. output = { embedding = { type = \"vector\" } }");
        break;
    case MODEL_TASK_REGRESSION:
        if (!declared)
            return rn_fail(err, "output is required for task regression, e.g. output = { price = { type = \"number\" } }");
        for (size_t i = 0; i < o->field_count; i++)
            if (o->fields[i].type != FIELD_NUMBER && o->fields[i].type != FIELD_INTEGER)
                return rn_fail(err, "output.%s: task regression fills numbers (type number or integer)", o->fields[i].name);
        break;
    case MODEL_TASK_CLUSTERING:
        if (!declared) add_field(o, "cluster", FIELD_STRING);
        if (o->field_count != 1 || (o->fields[0].type != FIELD_STRING && o->fields[0].type != FIELD_INTEGER))
            return rn_fail(err, "output: task clustering fills one field, the cluster: a string (a name) or an "
                                "integer (a number), e.g. output = { cluster = \"string\" }");
        break;
    }
    for (size_t i = 0; i < o->field_count; i++)
        if (o->fields[i].type == FIELD_VECTOR && task != MODEL_TASK_EMBEDDING)
            return rn_fail(err, "output.%s: type vector is for task embedding only", o->fields[i].name);
    int can_structure = (capabilities & PROVIDER_STRUCTURED) != 0;
    int chat = task == MODEL_TASK_CLASSIFICATION || task == MODEL_TASK_TEXT_GENERATION;
    int structured = opt_boolean(L, opts, "structured", declared && chat && can_structure);
    if (structured && task == MODEL_TASK_EMBEDDING)
        return rn_fail(err, "structured: task embedding answers vectors, not structured output");
    if (structured && !chat) return rn_fail(err, "structured: for tasks classification and text_generation only");
    if (structured && !can_structure) return rn_fail(err, "structured: this provider has no structured output");
    o->structured = structured;
    build_schema_and_expected(o);
    return 0;
}

/* "an integer from 1 to 5", "one of: a, b", ... */
void output_describe_field(struct buf *b, const struct output_field *f)
{
    char lo[RN_DOUBLE_MAX], hi[RN_DOUBLE_MAX];
    rn_format_double(lo, f->min);
    rn_format_double(hi, f->max);
    switch (f->type) {
    case FIELD_INTEGER:
    case FIELD_NUMBER:
        buf_puts(b, f->type == FIELD_INTEGER ? "an integer" : "a number");
        if (f->has_min && f->has_max) buf_printf(b, " from %s to %s", lo, hi);
        else if (f->has_min) buf_printf(b, " of at least %s", lo);
        else if (f->has_max) buf_printf(b, " of at most %s", hi);
        break;
    case FIELD_STRING:
        if (!f->enum_count) { buf_puts(b, "a string"); break; }
        buf_puts(b, "one of: ");
        for (size_t i = 0; i < f->enum_count; i++) buf_printf(b, "%s%s", i ? ", " : "", f->enum_values[i]);
        break;
    case FIELD_BOOLEAN: buf_puts(b, "true or false"); break;
    case FIELD_VECTOR: buf_puts(b, "a vector of numbers"); break;
    }
}

static void build_schema_and_expected(struct output *o)
{
    struct buf b, e;
    buf_init(&b);
    buf_init(&e);
    if (o->structured) {
        buf_puts(&b, "{\"type\":\"object\",\"properties\":{");
        for (size_t i = 0; i < o->field_count; i++) {
            const struct output_field *f = &o->fields[i];
            if (i) buf_putc(&b, ',');
            buf_put_json_string(&b, f->name, strlen(f->name));
            buf_printf(&b, ":{\"type\":\"%s\"", output_type_name(f->type));
            char num[RN_DOUBLE_MAX];
            if (f->has_min) { rn_format_double(num, f->min); buf_printf(&b, ",\"minimum\":%s", num); }
            if (f->has_max) { rn_format_double(num, f->max); buf_printf(&b, ",\"maximum\":%s", num); }
            if (f->enum_count) {
                buf_puts(&b, ",\"enum\":[");
                for (size_t k = 0; k < f->enum_count; k++) {
                    if (k) buf_putc(&b, ',');
                    buf_put_json_string(&b, f->enum_values[k], strlen(f->enum_values[k]));
                }
                buf_putc(&b, ']');
            }
            if (f->description) {
                buf_puts(&b, ",\"description\":");
                buf_put_json_string(&b, f->description, strlen(f->description));
            }
            buf_putc(&b, '}');
        }
        buf_puts(&b, "},\"required\":[");
        for (size_t i = 0; i < o->field_count; i++) {
            if (i) buf_putc(&b, ',');
            buf_put_json_string(&b, o->fields[i].name, strlen(o->fields[i].name));
        }
        buf_puts(&b, "],\"additionalProperties\":false}");
        o->schema_json = rn_strdup(b.data);
    }
    if (o->structured || o->field_count > 1) {
        buf_puts(&e, "Answer with a JSON object with exactly these fields: ");
        for (size_t i = 0; i < o->field_count; i++) {
            buf_printf(&e, "%s%s (", i ? "; " : "", o->fields[i].name);
            output_describe_field(&e, &o->fields[i]);
            buf_putc(&e, ')');
        }
        buf_putc(&e, '.');
    } else {
        buf_puts(&e, "Answer with only ");
        output_describe_field(&e, &o->fields[0]);
        buf_puts(&e, ", nothing else.");
    }
    o->expected = rn_strdup(e.data);
    buf_free(&b);
    buf_free(&e);
}


void output_free(struct output *o)
{
    for (size_t i = 0; i < o->field_count; i++) {
        free(o->fields[i].name);
        free(o->fields[i].description);
        for (size_t k = 0; k < o->fields[i].enum_count; k++) free(o->fields[i].enum_values[k]);
        free(o->fields[i].enum_values);
    }
    free(o->fields);
    free(o->schema_json);
    free(o->expected);
    memset(o, 0, sizeof *o);
}
