/* es_index.c: an index of the es-dev stand-in (see es_index.h). Documents live in an array in
 * insertion order with an open-addressing table from _id to slot; a deleted slot is NULL until
 * the array is compacted. _source is kept as text and parsed again when a query reads it. */
#include "es_index.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TOMBSTONE SIZE_MAX
#define MAX_PATH 512
#define MAX_VALUES 256  /* values of one field in one document that queries look at */

struct es_index {
    char *name;
    char uuid[23];
    json_t *mappings;  /* {"dynamic"?: ..., "properties": {...}} */
    struct es_doc **docs;
    size_t slot_count, live, capacity;
    size_t *table;     /* slot + 1, 0 empty, TOMBSTONE deleted */
    size_t table_size, table_used;
    long long seq_no;
};

/* ---- errors and names ---------------------------------------------------------------------- */

json_t *es_error_object(const char *type, const char *reason, const char *cause_type, const char *cause_reason)
{
    json_t *error = json_pack("{s:s,s:s}", "type", type, "reason", reason);
    if (error && cause_type)
        json_object_set_new(error, "caused_by", json_pack("{s:s,s:s}", "type", cause_type, "reason", cause_reason));
    return error;
}

const char *es_index_name_problem(const char *name)
{
    if (!*name) return "must not be empty";
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) return "must not be '.' or '..'";
    if (name[0] == '-' || name[0] == '_' || name[0] == '+') return "must not start with '_', '-', or '+'";
    if (strlen(name) > 255) return "index name is too long, (> 255)";
    for (const char *p = name; *p; p++) {
        if (*p >= 'A' && *p <= 'Z') return "must be lowercase";
        if (strchr("\\/*?\"<>| ,#:", *p)) return "must not contain the following characters [ , \", *, \\, <, |, ,, >, /, ?, #, :]";
    }
    return NULL;
}

static void random_id(char *out, size_t length)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    static uint64_t state;
    if (!state) state = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)&state;
    for (size_t i = 0; i < length; i++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out[i] = alphabet[state & 63];
    }
    out[length] = '\0';
}

/* ---- mappings ------------------------------------------------------------------------------ */

static const char *const known_types[] = {
    "text", "keyword", "match_only_text", "wildcard", "constant_keyword", "long", "integer", "short", "byte",
    "unsigned_long", "double", "float", "half_float", "scaled_float", "boolean", "date", "date_nanos", "object",
    "nested", "ip", "flattened", "dense_vector", "geo_point", "binary", NULL};

static bool type_known(const char *type)
{
    for (const char *const *t = known_types; *t; t++)
        if (strcmp(*t, type) == 0) return true;
    return false;
}

static bool is_integer_type(const char *type)
{
    return strcmp(type, "long") == 0 || strcmp(type, "integer") == 0 || strcmp(type, "short") == 0 ||
           strcmp(type, "byte") == 0 || strcmp(type, "unsigned_long") == 0;
}

static bool is_float_type(const char *type)
{
    return strcmp(type, "double") == 0 || strcmp(type, "float") == 0 || strcmp(type, "half_float") == 0 ||
           strcmp(type, "scaled_float") == 0;
}

static bool is_string_type(const char *type)
{
    return strcmp(type, "keyword") == 0 || strcmp(type, "wildcard") == 0 || strcmp(type, "constant_keyword") == 0;
}

static bool is_text_type(const char *type) { return strcmp(type, "text") == 0 || strcmp(type, "match_only_text") == 0; }

static bool is_date_type(const char *type) { return strcmp(type, "date") == 0 || strcmp(type, "date_nanos") == 0; }

/* An object mapping: {"properties": ...} without a type, or type object/nested. */
static bool is_object_mapping(const json_t *mapping)
{
    const char *type = json_string_value(json_object_get(mapping, "type"));
    return type ? strcmp(type, "object") == 0 || strcmp(type, "nested") == 0 : true;
}

static json_t *mapping_error(const char *inner)
{
    char reason[1200];
    snprintf(reason, sizeof reason, "Failed to parse mapping: %s", inner);
    return es_error_object("mapper_parsing_exception", reason, "mapper_parsing_exception", inner);
}

/* Checks declared properties; returns NULL or the error. */
static json_t *properties_check(const json_t *properties, const char *prefix)
{
    char inner[1024];
    if (!json_is_object(properties)) return mapping_error("[properties] must be an object");
    const char *key;
    json_t *mapping;
    json_object_foreach((json_t *)properties, key, mapping) {
        char path[MAX_PATH];
        snprintf(path, sizeof path, "%.200s%.200s", prefix, key);
        const json_t *type = json_object_get(mapping, "type");
        if (!json_is_object(mapping) || (type && !json_is_string(type)) || (!type && !json_object_get(mapping, "properties"))) {
            snprintf(inner, sizeof inner, "No type specified for field [%s]", path);
            return mapping_error(inner);
        }
        if (type && !type_known(json_string_value(type))) {
            snprintf(inner, sizeof inner, "No handler for type [%.100s] declared on field [%s]", json_string_value(type), path);
            return mapping_error(inner);
        }
        char nested[MAX_PATH];
        snprintf(nested, sizeof nested, "%.400s.", path);
        if (json_object_get(mapping, "properties")) {
            if (type && !is_object_mapping(mapping)) {
                snprintf(inner, sizeof inner, "unknown parameter [properties] on mapper [%s] of type [%.100s]", path,
                         json_string_value(type));
                return mapping_error(inner);
            }
            json_t *error = properties_check(json_object_get(mapping, "properties"), nested);
            if (error) return error;
        }
        const json_t *fields = json_object_get(mapping, "fields");
        if (fields) {
            json_t *error = properties_check(fields, nested);
            if (error) return error;
        }
    }
    return NULL;
}

struct es_index *es_index_new(const char *name, const json_t *mappings, json_t **error)
{
    *error = NULL;
    json_t *copy = mappings ? json_deep_copy(mappings) : json_object();
    if (!json_is_object(copy)) {
        json_decref(copy);
        *error = mapping_error("Root mapping definition must be an object");
        return NULL;
    }
    if (!json_object_get(copy, "properties")) json_object_set_new(copy, "properties", json_object());
    json_t *dynamic = json_object_get(copy, "dynamic");
    if (dynamic && !json_is_boolean(dynamic) &&
        !(json_is_string(dynamic) && (strcmp(json_string_value(dynamic), "strict") == 0 ||
                                      strcmp(json_string_value(dynamic), "true") == 0 ||
                                      strcmp(json_string_value(dynamic), "false") == 0 ||
                                      strcmp(json_string_value(dynamic), "runtime") == 0))) {
        json_decref(copy);
        *error = mapping_error("Could not convert [dynamic] to boolean: true, false, strict or runtime");
        return NULL;
    }
    if ((*error = properties_check(json_object_get(copy, "properties"), ""))) {
        json_decref(copy);
        return NULL;
    }
    struct es_index *index = calloc(1, sizeof *index);
    if (!index || !(index->name = strdup(name))) {
        free(index);
        json_decref(copy);
        return NULL;
    }
    index->mappings = copy;
    random_id(index->uuid, 22);
    return index;
}

void es_index_free(struct es_index *index)
{
    if (!index) return;
    for (size_t i = 0; i < index->slot_count; i++) {
        if (!index->docs[i]) continue;
        free(index->docs[i]->id);
        free(index->docs[i]->source);
        free(index->docs[i]);
    }
    free(index->docs);
    free(index->table);
    json_decref(index->mappings);
    free(index->name);
    free(index);
}

const char *es_index_name(const struct es_index *index) { return index->name; }
const char *es_index_uuid(const struct es_index *index) { return index->uuid; }
size_t es_index_doc_count(const struct es_index *index) { return index->live; }
const json_t *es_index_mappings(const struct es_index *index) { return index->mappings; }
size_t es_index_slots(const struct es_index *index) { return index->slot_count; }
const struct es_doc *es_index_slot(const struct es_index *index, size_t slot) { return index->docs[slot]; }
long long es_index_next_seq_no(const struct es_index *index) { return index->seq_no; }

/* ---- dates --------------------------------------------------------------------------------- */

static long long days_from_civil(long long year, unsigned month, unsigned day)
{
    year -= month <= 2;
    long long era = (year >= 0 ? year : year - 399) / 400;
    unsigned year_of_era = (unsigned)(year - era * 400);
    unsigned day_of_year = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
    unsigned day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    return era * 146097 + (long long)day_of_era - 719468;
}

static int digits(const char *text, int count, int *value)
{
    int result = 0;
    for (int i = 0; i < count; i++) {
        if (!isdigit((unsigned char)text[i])) return 0;
        result = result * 10 + (text[i] - '0');
    }
    *value = result;
    return 1;
}

/* strict_date_optional_time: yyyy[-MM[-dd['T'HH[:mm[:ss[.fraction]]][Z|±HH:mm|±HHmm]]]].
 * full_date: require at least yyyy-MM-dd (dynamic date detection). Returns true with epoch ms. */
static bool parse_date(const char *text, bool full_date, long long *millis)
{
    int year, month = 1, day = 1, hour = 0, minute = 0, second = 0, fraction_ms = 0, offset_minutes = 0;
    const char *p = text;
    if (!digits(p, 4, &year)) return false;
    p += 4;
    if (*p == '-') {
        if (!digits(p + 1, 2, &month)) return false;
        p += 3;
        if (*p == '-') {
            if (!digits(p + 1, 2, &day)) return false;
            p += 3;
        } else if (full_date) {
            return false;
        }
    } else if (full_date) {
        return false;
    }
    if (*p == 'T') {
        if (!digits(p + 1, 2, &hour)) return false;
        p += 3;
        if (*p == ':') {
            if (!digits(p + 1, 2, &minute)) return false;
            p += 3;
            if (*p == ':') {
                if (!digits(p + 1, 2, &second)) return false;
                p += 3;
                if (*p == '.' || *p == ',') {
                    p++;
                    int scale = 100, count = 0;
                    while (isdigit((unsigned char)*p)) {
                        if (count++ < 3) fraction_ms += (*p - '0') * scale, scale /= 10;
                        p++;
                    }
                    if (count == 0) return false;
                }
            }
        }
        if (*p == 'Z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            int sign = *p == '-' ? -1 : 1, offset_hours, offset_mins = 0;
            if (!digits(p + 1, 2, &offset_hours)) return false;
            p += 3;
            if (*p == ':') p++;
            if (isdigit((unsigned char)*p)) {
                if (!digits(p, 2, &offset_mins)) return false;
                p += 2;
            }
            offset_minutes = sign * (offset_hours * 60 + offset_mins);
        }
    }
    if (*p || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) return false;
    long long days = days_from_civil(year, (unsigned)month, (unsigned)day);
    *millis = ((days * 24 + hour) * 60 + minute - offset_minutes) * 60000LL + second * 1000LL + fraction_ms;
    return true;
}

static void format_date(long long millis, char *out, size_t size)
{
    time_t seconds = (time_t)(millis >= 0 ? millis / 1000 : (millis - 999) / 1000);
    long long remainder = millis - (long long)seconds * 1000;
    struct tm tm;
    gmtime_r(&seconds, &tm);
    char fraction[8];
    snprintf(fraction, sizeof fraction, ".%03d", (int)(remainder % 1000));
    size_t length = strftime(out, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + length, size - length, "%sZ", fraction);
}

/* ---- the mapping check of a document ------------------------------------------------------- */

enum dynamic_mode { DYNAMIC_TRUE, DYNAMIC_FALSE, DYNAMIC_STRICT };

static enum dynamic_mode dynamic_of(const json_t *mapping, enum dynamic_mode inherited)
{
    const json_t *dynamic = json_object_get(mapping, "dynamic");
    if (json_is_false(dynamic)) return DYNAMIC_FALSE;
    if (json_is_true(dynamic)) return DYNAMIC_TRUE;
    const char *text = json_string_value(dynamic);
    if (!text) return inherited;
    if (strcmp(text, "strict") == 0) return DYNAMIC_STRICT;
    if (strcmp(text, "false") == 0 || strcmp(text, "runtime") == 0) return DYNAMIC_FALSE;
    return DYNAMIC_TRUE;
}

/* The mapping Elasticsearch adds for a new field whose first value is value; NULL for null and
 * empty arrays (no mapping yet). */
static json_t *dynamic_mapping(const json_t *value)
{
    long long millis;
    switch (json_typeof(value)) {
    case JSON_STRING:
        if (parse_date(json_string_value(value), true, &millis)) return json_pack("{s:s}", "type", "date");
        return json_pack("{s:s,s:{s:{s:s,s:i}}}", "type", "text", "fields", "keyword", "type", "keyword",
                         "ignore_above", 256);
    case JSON_INTEGER: return json_pack("{s:s}", "type", "long");
    case JSON_REAL: return json_pack("{s:s}", "type", "float");
    case JSON_TRUE:
    case JSON_FALSE: return json_pack("{s:s}", "type", "boolean");
    case JSON_OBJECT: return json_pack("{s:{}}", "properties");
    case JSON_ARRAY: {
        size_t index;
        json_t *item;
        json_array_foreach(value, index, item) if (!json_is_null(item)) return dynamic_mapping(item);
        return NULL;
    }
    default: return NULL;
    }
}

static bool parse_number(const char *text, double *value)
{
    char *end;
    errno = 0;
    *value = strtod(text, &end);
    return end != text && !*end && errno == 0 && isfinite(*value);
}

/* Whether value fits a leaf field of type; on failure the cause's type and reason. */
static bool leaf_fits(const char *type, const char *field, const json_t *value, const char **cause_type,
                      char *cause, size_t cause_size)
{
    *cause_type = "illegal_argument_exception";
    if (json_is_object(value)) {
        if (strcmp(type, "flattened") == 0 || strcmp(type, "geo_point") == 0) return true;
        *cause_type = "illegal_state_exception";
        snprintf(cause, cause_size, "Can't get text on a START_OBJECT");
        return false;
    }
    if (is_text_type(type) || is_string_type(type)) return true;
    if (is_integer_type(type) || is_float_type(type)) {
        double number;
        if (json_is_boolean(value)) {
            snprintf(cause, cause_size, "Current token (%s) not numeric, can not use numeric value accessors",
                     json_is_true(value) ? "VALUE_TRUE" : "VALUE_FALSE");
            return false;
        }
        if (json_is_number(value)) {
            number = json_number_value(value);
        } else if (!parse_number(json_string_value(value), &number)) {
            *cause_type = "number_format_exception";
            snprintf(cause, cause_size, "For input string: \"%s\"", json_string_value(value));
            return false;
        }
        if (!is_integer_type(type)) return true;
        double low = -9223372036854775808.0, high = 9223372036854775807.0;
        const char *article = "a", *name = "long";
        if (strcmp(type, "integer") == 0) low = -2147483648.0, high = 2147483647.0, article = "an", name = "integer";
        else if (strcmp(type, "short") == 0) low = -32768, high = 32767, name = "short";
        else if (strcmp(type, "byte") == 0) low = -128, high = 127, name = "byte";
        else if (strcmp(type, "unsigned_long") == 0) low = 0, high = 18446744073709551615.0, article = "an", name = "unsigned_long";
        if (trunc(number) < low || trunc(number) > high) {
            char shown[64];
            if (json_is_integer(value)) snprintf(shown, sizeof shown, "%lld", (long long)json_integer_value(value));
            else if (json_is_string(value)) snprintf(shown, sizeof shown, "%.60s", json_string_value(value));
            else snprintf(shown, sizeof shown, "%.17g", number);
            snprintf(cause, cause_size, "Value [%s] is out of range for %s %s", shown, article, name);
            return false;
        }
        return true;
    }
    if (strcmp(type, "boolean") == 0) {
        const char *text = json_string_value(value);
        if (json_is_boolean(value) || (text && (!*text || strcmp(text, "true") == 0 || strcmp(text, "false") == 0)))
            return true;
        char shown[128];
        if (text) snprintf(shown, sizeof shown, "%.100s", text);
        else snprintf(shown, sizeof shown, "%g", json_number_value(value));
        snprintf(cause, cause_size, "Failed to parse value [%s] as only [true] or [false] are allowed.", shown);
        return false;
    }
    if (is_date_type(type)) {
        long long millis;
        double number;
        const char *text = json_string_value(value);
        if (json_is_integer(value) || (text && (parse_date(text, false, &millis) || parse_number(text, &number))))
            return true;
        snprintf(cause, cause_size, "failed to parse date field [%.100s] with format [strict_date_optional_time||epoch_millis]",
                 text ? text : "?");
        (void)field;
        return false;
    }
    return true;  /* ip, binary, dense_vector, ...: not checked here */
}

struct map_context {
    const char *id;
    json_t *error;
};

static void preview(const json_t *value, char *out, size_t size)
{
    if (json_is_string(value)) {
        snprintf(out, size, "%.200s", json_string_value(value));
        return;
    }
    char *text = json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT);
    snprintf(out, size, "%.200s", text ? text : "?");
    free(text);
}

static bool map_leaf(struct map_context *context, const char *path, const char *type, const json_t *value)
{
    if (json_is_null(value)) return true;
    if (json_is_array(value)) {
        size_t index;
        json_t *item;
        json_array_foreach(value, index, item) if (!map_leaf(context, path, type, item)) return false;
        return true;
    }
    const char *cause_type;
    char cause[512];
    if (leaf_fits(type, path, value, &cause_type, cause, sizeof cause)) return true;
    char shown[256], reason[1024];
    preview(value, shown, sizeof shown);
    snprintf(reason, sizeof reason,
             "failed to parse field [%s] of type [%s] in document with id '%s'. Preview of field's value: '%s'", path, type,
             context->id, shown);
    context->error = es_error_object("mapper_parsing_exception", reason, cause_type, cause);
    return false;
}

static bool map_object(struct map_context *context, const json_t *object, const json_t *properties, json_t *pending,
                       const char *prefix, const char *object_name, enum dynamic_mode dynamic);

/* One member of an object: mapping is the existing one, or NULL. */
static bool map_member(struct map_context *context, const char *key, const json_t *value, const json_t *existing,
                       json_t *pending, const char *prefix, const char *object_name, enum dynamic_mode dynamic)
{
    char path[MAX_PATH];
    snprintf(path, sizeof path, "%s%s", prefix, key);
    if (json_is_null(value)) return true;
    json_t *staged = json_object_get(pending, key);
    const json_t *mapping = existing ? existing : staged;
    if (!mapping) {
        if (dynamic == DYNAMIC_FALSE) return true;
        if (dynamic == DYNAMIC_STRICT) {
            char reason[768];
            snprintf(reason, sizeof reason, "mapping set to strict, dynamic introduction of [%s] within [%s] is not allowed",
                     key, object_name);
            context->error = es_error_object("strict_dynamic_mapping_exception", reason, NULL, NULL);
            return false;
        }
        json_t *created = dynamic_mapping(value);
        if (!created) return true;
        json_object_set_new(pending, key, created);
        staged = created;
        mapping = created;
    }
    if (is_object_mapping(mapping)) {
        if (json_is_array(value)) {
            size_t index;
            json_t *item;
            json_array_foreach(value, index, item) {
                if (!map_member(context, key, item, existing, pending, prefix, object_name, dynamic)) return false;
            }
            return true;
        }
        if (!json_is_object(value)) {
            char reason[1200];
            snprintf(reason, sizeof reason,
                     "object mapping for [%s] tried to parse field [%s] as object, but found a concrete value", path, key);
            context->error = es_error_object("mapper_parsing_exception", reason, NULL, NULL);
            return false;
        }
        if (!staged) {
            staged = json_pack("{s:{}}", "properties");
            json_object_set_new(pending, key, staged);
        }
        json_t *sub_pending = json_object_get(staged, "properties");
        char sub_prefix[MAX_PATH + 2];
        snprintf(sub_prefix, sizeof sub_prefix, "%s.", path);
        return map_object(context, value, existing ? json_object_get(existing, "properties") : NULL, sub_pending,
                          sub_prefix, path, dynamic_of(mapping, dynamic));
    }
    return map_leaf(context, path, json_string_value(json_object_get(mapping, "type")), value);
}

static bool map_object(struct map_context *context, const json_t *object, const json_t *properties, json_t *pending,
                       const char *prefix, const char *object_name, enum dynamic_mode dynamic)
{
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)object, key, value) {
        if (!map_member(context, key, value, properties ? json_object_get(properties, key) : NULL, pending, prefix,
                        object_name, dynamic))
            return false;
    }
    return true;
}

/* Adds the staged mappings to properties: new fields as they are, new subfields of existing
 * objects into their properties. */
static void merge_pending(json_t *properties, json_t *pending)
{
    const char *key;
    json_t *staged;
    json_object_foreach(pending, key, staged) {
        json_t *existing = json_object_get(properties, key);
        if (!existing) {
            json_object_set(properties, key, staged);
        } else if (json_object_get(staged, "properties")) {
            json_t *sub = json_object_get(existing, "properties");
            if (!sub) {
                sub = json_object();
                json_object_set_new(existing, "properties", sub);
            }
            merge_pending(sub, json_object_get(staged, "properties"));
        }
    }
}

bool es_index_map(struct es_index *index, const char *id, const json_t *document, json_t **error)
{
    *error = NULL;
    json_t *pending = json_object();
    struct map_context context = {.id = id};
    json_t *properties = json_object_get(index->mappings, "properties");
    bool ok = map_object(&context, document, properties, pending, "", "_doc", dynamic_of(index->mappings, DYNAMIC_TRUE));
    if (ok) merge_pending(properties, pending);
    else *error = context.error;
    json_decref(pending);
    return ok;
}

/* ---- documents ----------------------------------------------------------------------------- */

static uint64_t hash_id(const char *id)
{
    uint64_t hash = 14695981039346656037ull;
    for (; *id; id++) hash = (hash ^ (unsigned char)*id) * 1099511628211ull;
    return hash;
}

/* The table position holding id, or of an empty place for it (*found false). */
static size_t table_find(const struct es_index *index, const char *id, bool *found)
{
    size_t mask = index->table_size - 1, position = (size_t)hash_id(id) & mask, free_position = SIZE_MAX;
    for (;;) {
        size_t entry = index->table[position];
        if (entry == 0) {
            *found = false;
            return free_position != SIZE_MAX ? free_position : position;
        }
        if (entry == TOMBSTONE) {
            if (free_position == SIZE_MAX) free_position = position;
        } else if (strcmp(index->docs[entry - 1]->id, id) == 0) {
            *found = true;
            return position;
        }
        position = (position + 1) & mask;
    }
}

/* Rebuilds the table (size a power of two, at most half full) and drops deleted slots. */
static bool table_rebuild(struct es_index *index, size_t want)
{
    size_t size = 64;
    while (size < want * 2) size *= 2;
    size_t *table = calloc(size, sizeof *table);
    if (!table) return false;
    size_t kept = 0;
    for (size_t i = 0; i < index->slot_count; i++)
        if (index->docs[i]) index->docs[kept++] = index->docs[i];
    index->slot_count = kept;
    free(index->table);
    index->table = table;
    index->table_size = size;
    index->table_used = kept;
    for (size_t i = 0; i < kept; i++) {
        size_t position = (size_t)hash_id(index->docs[i]->id) & (size - 1);
        while (table[position]) position = (position + 1) & (size - 1);
        table[position] = i + 1;
    }
    return true;
}

const struct es_doc *es_index_get(const struct es_index *index, const char *id)
{
    if (!index->table_size) return NULL;
    bool found;
    size_t position = table_find(index, id, &found);
    return found ? index->docs[index->table[position] - 1] : NULL;
}

const struct es_doc *es_index_put(struct es_index *index, const char *id, const char *source, size_t length)
{
    char *copy = malloc(length + 1);
    if (!copy) return NULL;
    memcpy(copy, source, length);
    copy[length] = '\0';
    if (index->table_size) {
        bool found;
        size_t position = table_find(index, id, &found);
        if (found) {
            struct es_doc *doc = index->docs[index->table[position] - 1];
            free(doc->source);
            doc->source = copy;
            doc->source_length = length;
            doc->version++;
            doc->seq_no = index->seq_no++;
            return doc;
        }
    }
    if ((index->table_used + 1) * 2 > index->table_size &&
        !table_rebuild(index, index->live + 1 > index->table_used ? index->live + 1 : index->table_used)) {
        free(copy);
        return NULL;
    }
    if (index->slot_count == index->capacity) {
        size_t capacity = index->capacity ? index->capacity * 2 : 1024;
        struct es_doc **docs = realloc(index->docs, capacity * sizeof *docs);
        if (!docs) {
            free(copy);
            return NULL;
        }
        index->docs = docs;
        index->capacity = capacity;
    }
    struct es_doc *doc = calloc(1, sizeof *doc);
    if (!doc || !(doc->id = strdup(id))) {
        free(doc);
        free(copy);
        return NULL;
    }
    doc->source = copy;
    doc->source_length = length;
    doc->version = 1;
    doc->seq_no = index->seq_no++;
    bool found;
    size_t position = table_find(index, id, &found);
    if (index->table[position] == 0) index->table_used++;
    index->docs[index->slot_count] = doc;
    index->table[position] = ++index->slot_count;
    index->live++;
    return doc;
}

long long es_index_delete(struct es_index *index, const char *id, long long *seq_no)
{
    if (!index->table_size) return 0;
    bool found;
    size_t position = table_find(index, id, &found);
    if (!found) return 0;
    size_t slot = index->table[position] - 1;
    struct es_doc *doc = index->docs[slot];
    long long version = doc->version + 1;
    *seq_no = index->seq_no++;
    free(doc->id);
    free(doc->source);
    free(doc);
    index->docs[slot] = NULL;
    index->table[position] = TOMBSTONE;
    index->live--;
    if (index->slot_count > 4096 && index->live < index->slot_count / 4) table_rebuild(index, index->live);
    return version;
}

/* ---- field values -------------------------------------------------------------------------- */

struct field_ref {
    const char *type;  /* NULL: not mapped */
    char source_path[MAX_PATH];
    long long ignore_above;
};

/* Resolves a field name ("user.name", "summary.keyword") against the mapping. */
static void field_resolve(const struct es_index *index, const char *name, struct field_ref *ref)
{
    ref->type = NULL;
    ref->ignore_above = 0;
    snprintf(ref->source_path, sizeof ref->source_path, "%s", name);
    const json_t *properties = json_object_get(index->mappings, "properties");
    char copy[MAX_PATH];
    snprintf(copy, sizeof copy, "%s", name);
    char *segment = copy;
    const json_t *mapping = NULL;
    while (segment) {
        char *dot = strchr(segment, '.');
        if (dot) *dot = '\0';
        mapping = json_object_get(properties, segment);
        if (!mapping) return;
        if (!dot) break;
        const json_t *fields = json_object_get(mapping, "fields");
        const json_t *sub = json_object_get(fields, dot + 1);
        if (sub && !strchr(dot + 1, '.')) {
            ref->type = json_string_value(json_object_get(sub, "type"));
            ref->ignore_above = json_integer_value(json_object_get(sub, "ignore_above"));
            ref->source_path[dot - copy] = '\0';
            return;
        }
        properties = json_object_get(mapping, "properties");
        segment = dot + 1;
    }
    ref->type = mapping ? (is_object_mapping(mapping) ? "object" : json_string_value(json_object_get(mapping, "type")))
                        : NULL;
}

static void collect_from(const json_t *node, const char *path, const json_t **values, size_t *count)
{
    if (*count >= MAX_VALUES || !node) return;
    if (json_is_array(node)) {
        size_t index;
        json_t *item;
        json_array_foreach(node, index, item) collect_from(item, path, values, count);
        return;
    }
    if (!*path) {
        if (!json_is_null(node)) values[(*count)++] = node;
        return;
    }
    if (!json_is_object(node)) return;
    /* a key may itself contain dots ("a.b": 1): try the longest key first */
    size_t length = strlen(path);
    for (size_t cut = length;; cut--) {
        if (cut == length || path[cut] == '.') {
            char key[MAX_PATH];
            snprintf(key, sizeof key, "%.*s", (int)cut, path);
            const json_t *child = json_object_get(node, key);
            if (child) {
                collect_from(child, cut == length ? "" : path + cut + 1, values, count);
                return;
            }
        }
        if (cut == 0) return;
    }
}

enum value_kind { V_STRING, V_LONG, V_DOUBLE, V_BOOL };

struct value {
    enum value_kind kind;
    bool is_date;
    const char *text;
    size_t length;
    long long integer;
    double number;
    char buffer[40];
};

/* The value as a field of type indexes it; false when it does not convert (then it is not
 * indexed: it matches nothing). */
static bool normalize(const char *type, const json_t *raw, struct value *out)
{
    memset(out, 0, offsetof(struct value, buffer));
    if (!type) type = json_is_string(raw) ? "keyword" : json_is_integer(raw) ? "long"
                      : json_is_real(raw) ? "double" : json_is_boolean(raw) ? "boolean" : "";
    if (is_string_type(type) || is_text_type(type)) {
        out->kind = V_STRING;
        if (json_is_string(raw)) {
            out->text = json_string_value(raw);
            out->length = json_string_length(raw);
        } else if (json_is_integer(raw)) {
            out->length = (size_t)snprintf(out->buffer, sizeof out->buffer, "%lld", (long long)json_integer_value(raw));
            out->text = out->buffer;
        } else if (json_is_real(raw)) {
            out->length = (size_t)snprintf(out->buffer, sizeof out->buffer, "%.17g", json_real_value(raw));
            out->text = out->buffer;
        } else if (json_is_boolean(raw)) {
            out->text = json_is_true(raw) ? "true" : "false";
            out->length = strlen(out->text);
        } else {
            return false;
        }
        return true;
    }
    if (is_integer_type(type) || is_float_type(type)) {
        double number;
        if (json_is_integer(raw) && is_integer_type(type)) {
            out->kind = V_LONG;
            out->integer = json_integer_value(raw);
            return true;
        }
        if (json_is_number(raw)) number = json_number_value(raw);
        else if (!json_is_string(raw) || !parse_number(json_string_value(raw), &number)) return false;
        if (is_integer_type(type)) {
            out->kind = V_LONG;
            out->integer = (long long)trunc(number);
        } else {
            out->kind = V_DOUBLE;
            out->number = strcmp(type, "float") == 0 ? (double)(float)number : number;
        }
        return true;
    }
    if (strcmp(type, "boolean") == 0) {
        out->kind = V_BOOL;
        const char *text = json_string_value(raw);
        if (json_is_boolean(raw)) out->integer = json_is_true(raw);
        else if (text && (!*text || strcmp(text, "false") == 0)) out->integer = 0;
        else if (text && strcmp(text, "true") == 0) out->integer = 1;
        else return false;
        return true;
    }
    if (is_date_type(type)) {
        out->kind = V_LONG;
        out->is_date = true;
        double number;
        const char *text = json_string_value(raw);
        if (json_is_integer(raw)) out->integer = json_integer_value(raw);
        else if (text && parse_date(text, false, &out->integer)) return true;
        else if (text && parse_number(text, &number)) out->integer = (long long)number;
        else return false;
        return true;
    }
    return false;
}

static bool values_equal(const struct value *a, const struct value *b)
{
    if (a->kind != b->kind) {
        if ((a->kind == V_LONG || a->kind == V_DOUBLE) && (b->kind == V_LONG || b->kind == V_DOUBLE))
            return (a->kind == V_LONG ? (double)a->integer : a->number) == (b->kind == V_LONG ? (double)b->integer : b->number);
        return false;
    }
    switch (a->kind) {
    case V_STRING: return a->length == b->length && memcmp(a->text, b->text, a->length) == 0;
    case V_DOUBLE: return a->number == b->number;
    default: return a->integer == b->integer;
    }
}

/* -1, 0, 1 (numbers numerically, strings bytewise). */
static int values_compare(const struct value *a, const struct value *b)
{
    if (a->kind == V_STRING && b->kind == V_STRING) {
        size_t common = a->length < b->length ? a->length : b->length;
        int c = memcmp(a->text, b->text, common);
        return c ? (c < 0 ? -1 : 1) : (a->length < b->length ? -1 : a->length > b->length);
    }
    double x = a->kind == V_DOUBLE ? a->number : (double)a->integer, y = b->kind == V_DOUBLE ? b->number : (double)b->integer;
    if (a->kind == V_LONG && b->kind == V_LONG) return a->integer < b->integer ? -1 : a->integer > b->integer;
    return x < y ? -1 : x > y;
}

/* Calls back for each token of a text field value (the standard analyzer, roughly: runs of
 * letters and digits, ASCII lower-cased; bytes >= 0x80 count as letters). */
static bool text_has_token(const char *text, size_t length, const char *token, size_t token_length, bool lower_token)
{
    size_t i = 0;
    while (i < length) {
        while (i < length && !(isalnum((unsigned char)text[i]) || (unsigned char)text[i] >= 0x80)) i++;
        size_t start = i;
        while (i < length && (isalnum((unsigned char)text[i]) || (unsigned char)text[i] >= 0x80)) i++;
        if (i - start != token_length || token_length == 0) continue;
        bool same = true;
        for (size_t k = 0; k < token_length && same; k++) {
            char t = token[k];
            if (lower_token) t = (char)tolower((unsigned char)t);
            same = (char)tolower((unsigned char)text[start + k]) == t;
        }
        if (same) return true;
    }
    return false;
}

/* ---- queries ------------------------------------------------------------------------------- */

enum query_kind { Q_ALL, Q_NONE, Q_TERM, Q_TERMS, Q_MATCH, Q_EXISTS, Q_RANGE, Q_BOOL };

struct es_query {
    enum query_kind kind;
    char *field;
    json_t *values;  /* term, terms: the values; match: the text (a string) */
    bool all_tokens;  /* match with operator and */
    json_t *gt, *gte, *lt, *lte;
    struct es_query **clauses[4];  /* bool: must, filter, should, must_not */
    size_t clause_count[4];
    long long minimum_should_match;
};

void es_query_free(struct es_query *query)
{
    if (!query) return;
    free(query->field);
    json_decref(query->values);
    json_decref(query->gt);
    json_decref(query->gte);
    json_decref(query->lt);
    json_decref(query->lte);
    for (int k = 0; k < 4; k++) {
        for (size_t i = 0; i < query->clause_count[k]; i++) es_query_free(query->clauses[k][i]);
        free(query->clauses[k]);
    }
    free(query);
}

bool es_query_is_match_all(const struct es_query *query) { return query->kind == Q_ALL; }

static json_t *parsing_error(const char *format, const char *name)
{
    char reason[512];
    snprintf(reason, sizeof reason, format, name);
    return es_error_object("parsing_exception", reason, NULL, NULL);
}

/* The single member of an object such as {"field": value}; false when there is not exactly one. */
static bool single_member(const json_t *object, const char **key, json_t **value)
{
    if (!json_is_object(object) || json_object_size(object) != 1) return false;
    void *iterator = json_object_iter((json_t *)object);
    *key = json_object_iter_key(iterator);
    *value = json_object_iter_value(iterator);
    return true;
}

struct es_query *es_query_compile(const json_t *json, json_t **error)
{
    *error = NULL;
    struct es_query *query = calloc(1, sizeof *query);
    if (!query) return NULL;
    if (!json) return query;  /* match_all */
    const char *kind;
    json_t *body;
    if (!single_member(json, &kind, &body)) {
        *error = parsing_error("[query] must hold exactly one query, such as {\"match_all\": {}}%s", "");
        goto fail;
    }
    const char *field;
    json_t *value;
    if (strcmp(kind, "match_all") == 0) {
        query->kind = Q_ALL;
    } else if (strcmp(kind, "match_none") == 0) {
        query->kind = Q_NONE;
    } else if (strcmp(kind, "term") == 0 || strcmp(kind, "match") == 0) {
        query->kind = kind[0] == 't' ? Q_TERM : Q_MATCH;
        if (!single_member(body, &field, &value)) {
            *error = parsing_error("[%s] query doesn't support multiple fields, found none or several", kind);
            goto fail;
        }
        if (json_is_object(value)) {
            const char *operator = json_string_value(json_object_get(value, "operator"));
            query->all_tokens = operator && (strcmp(operator, "and") == 0 || strcmp(operator, "AND") == 0);
            value = json_object_get(value, kind[0] == 't' ? "value" : "query");
        }
        if (!value || json_is_object(value) || json_is_array(value) || json_is_null(value)) {
            *error = parsing_error("[%s] query malformed, no value or a value that is not a string, number or boolean", kind);
            goto fail;
        }
        query->field = strdup(field);
        query->values = json_pack("[O]", value);
    } else if (strcmp(kind, "terms") == 0) {
        query->kind = Q_TERMS;
        if (!single_member(body, &field, &value) || !json_is_array(value)) {
            *error = parsing_error("[terms] query needs one field with an array of values%s", "");
            goto fail;
        }
        query->field = strdup(field);
        query->values = json_incref(value);
    } else if (strcmp(kind, "exists") == 0) {
        query->kind = Q_EXISTS;
        const char *name = json_string_value(json_object_get(body, "field"));
        if (!name) {
            *error = parsing_error("[exists] must be provided with a [field]%s", "");
            goto fail;
        }
        query->field = strdup(name);
    } else if (strcmp(kind, "range") == 0) {
        query->kind = Q_RANGE;
        if (!single_member(body, &field, &value) || !json_is_object(value)) {
            *error = parsing_error("[range] query needs one field with gt, gte, lt or lte%s", "");
            goto fail;
        }
        query->field = strdup(field);
        query->gt = json_incref(json_object_get(value, "gt"));
        query->gte = json_incref(json_object_get(value, "gte"));
        query->lt = json_incref(json_object_get(value, "lt"));
        query->lte = json_incref(json_object_get(value, "lte"));
    } else if (strcmp(kind, "bool") == 0) {
        query->kind = Q_BOOL;
        static const char *const names[4] = {"must", "filter", "should", "must_not"};
        if (!json_is_object(body)) {
            *error = parsing_error("[bool] query malformed%s", "");
            goto fail;
        }
        const char *key;
        json_object_foreach(body, key, value) {
            int k = 0;
            while (k < 4 && strcmp(names[k], key) != 0) k++;
            if (k == 4) {
                if (strcmp(key, "minimum_should_match") == 0) {
                    query->minimum_should_match = json_integer_value(value);
                    continue;
                }
                if (strcmp(key, "boost") == 0) continue;
                *error = parsing_error("[bool] query does not support [%s]", key);
                goto fail;
            }
            size_t count = json_is_array(value) ? json_array_size(value) : 1;
            query->clauses[k] = calloc(count + 1, sizeof *query->clauses[k]);
            for (size_t i = 0; i < count; i++) {
                struct es_query *clause = es_query_compile(json_is_array(value) ? json_array_get(value, i) : value, error);
                if (!clause) goto fail;
                query->clauses[k][query->clause_count[k]++] = clause;
            }
        }
    } else {
        *error = parsing_error("unknown query [%s]", kind);
        goto fail;
    }
    return query;
fail:
    es_query_free(query);
    if (!*error) *error = parsing_error("out of memory%s", "");
    return NULL;
}

/* The values of field in source, normalized by the index's mapping of it. Returns the count. */
static size_t field_values(const struct es_index *index, const char *field, const json_t *source,
                           struct field_ref *ref, struct value *out, size_t max)
{
    field_resolve(index, field, ref);
    if (!ref->type || strcmp(ref->type, "object") == 0) return 0;
    const json_t *raw[MAX_VALUES];
    size_t raw_count = 0, count = 0;
    collect_from(source, ref->source_path, raw, &raw_count);
    for (size_t i = 0; i < raw_count && count < max; i++) {
        if (!normalize(ref->type, raw[i], &out[count])) continue;
        if (ref->ignore_above > 0 && out[count].kind == V_STRING && out[count].length > (size_t)ref->ignore_above) continue;
        count++;
    }
    return count;
}

static bool term_matches(const struct field_ref *ref, const struct value *values, size_t count, const json_t *term,
                         bool analyzed_term, bool all_tokens)
{
    if (is_text_type(ref->type)) {
        const char *text = json_string_value(term);
        char buffer[64];
        if (!text) {
            struct value converted;
            if (!normalize("keyword", term, &converted)) return false;
            snprintf(buffer, sizeof buffer, "%.*s", (int)converted.length, converted.text);
            text = buffer;
        }
        if (!analyzed_term) {
            for (size_t i = 0; i < count; i++)
                if (text_has_token(values[i].text, values[i].length, text, strlen(text), false)) return true;
            return false;
        }
        /* match: the query text is analyzed too; any (or, with operator and, every) token */
        size_t length = strlen(text), i = 0, wanted = 0, found = 0;
        while (i < length) {
            while (i < length && !(isalnum((unsigned char)text[i]) || (unsigned char)text[i] >= 0x80)) i++;
            size_t start = i;
            while (i < length && (isalnum((unsigned char)text[i]) || (unsigned char)text[i] >= 0x80)) i++;
            if (i == start) continue;
            wanted++;
            bool hit = false;
            for (size_t v = 0; v < count && !hit; v++)
                hit = text_has_token(values[v].text, values[v].length, text + start, i - start, true);
            found += hit;
        }
        return wanted > 0 && (all_tokens ? found == wanted : found > 0);
    }
    struct value wanted;
    if (!normalize(ref->type, term, &wanted)) return false;
    for (size_t i = 0; i < count; i++)
        if (values_equal(&values[i], &wanted)) return true;
    return false;
}

static bool range_matches(const struct es_query *query, const struct field_ref *ref, const struct value *values, size_t count)
{
    const json_t *bounds[4] = {query->gt, query->gte, query->lt, query->lte};
    struct value limits[4];
    for (int b = 0; b < 4; b++)
        if (bounds[b] && !normalize(ref->type, bounds[b], &limits[b])) return false;
    for (size_t i = 0; i < count; i++) {
        bool ok = true;
        if (bounds[0] && values_compare(&values[i], &limits[0]) <= 0) ok = false;
        if (bounds[1] && values_compare(&values[i], &limits[1]) < 0) ok = false;
        if (bounds[2] && values_compare(&values[i], &limits[2]) >= 0) ok = false;
        if (bounds[3] && values_compare(&values[i], &limits[3]) > 0) ok = false;
        if (ok) return true;
    }
    return false;
}

bool es_query_match(const struct es_query *query, const struct es_index *index, const json_t *source)
{
    switch (query->kind) {
    case Q_ALL: return true;
    case Q_NONE: return false;
    case Q_BOOL: {
        for (int k = 0; k < 2; k++)
            for (size_t i = 0; i < query->clause_count[k]; i++)
                if (!es_query_match(query->clauses[k][i], index, source)) return false;
        for (size_t i = 0; i < query->clause_count[3]; i++)
            if (es_query_match(query->clauses[3][i], index, source)) return false;
        if (query->clause_count[2] == 0) return true;
        long long needed = query->minimum_should_match > 0 ? query->minimum_should_match
                           : (query->clause_count[0] + query->clause_count[1]) ? 0 : 1;
        long long hits = 0;
        for (size_t i = 0; i < query->clause_count[2]; i++) hits += es_query_match(query->clauses[2][i], index, source);
        return hits >= needed;
    }
    default: break;
    }
    struct field_ref ref;
    struct value values[MAX_VALUES];
    size_t count = field_values(index, query->field, source, &ref, values, MAX_VALUES);
    switch (query->kind) {
    case Q_EXISTS: return count > 0;
    case Q_RANGE: return range_matches(query, &ref, values, count);
    case Q_TERM:
    case Q_MATCH:
    case Q_TERMS: {
        size_t index_of;
        json_t *term;
        json_array_foreach(query->values, index_of, term)
            if (term_matches(&ref, values, count, term, query->kind == Q_MATCH, query->all_tokens)) return true;
        return false;
    }
    default: return false;
    }
}

/* ---- aggregations -------------------------------------------------------------------------- */

enum agg_kind { A_TERMS, A_AVG, A_SUM, A_MIN, A_MAX, A_VALUE_COUNT };

struct bucket {
    struct value key;  /* key.text points at text */
    char *text;
    long long count;
};

struct agg {
    char *name, *field;
    enum agg_kind kind;
    long long size;
    double sum, min, max;
    long long count;
    struct bucket *buckets;  /* open addressing, key text hashed */
    size_t bucket_count, bucket_capacity;
};

struct es_aggs {
    struct agg *aggs;
    size_t count;
};

void es_aggs_free(struct es_aggs *aggs)
{
    if (!aggs) return;
    for (size_t i = 0; i < aggs->count; i++) {
        struct agg *agg = &aggs->aggs[i];
        for (size_t b = 0; b < agg->bucket_capacity; b++) free(agg->buckets[b].text);
        free(agg->buckets);
        free(agg->name);
        free(agg->field);
    }
    free(aggs->aggs);
    free(aggs);
}

static const char *const agg_names[] = {"terms", "avg", "sum", "min", "max", "value_count"};

struct es_aggs *es_aggs_compile(const json_t *json, struct es_index *const *indices, size_t index_count, json_t **error)
{
    *error = NULL;
    struct es_aggs *aggs = calloc(1, sizeof *aggs);
    if (!aggs) return NULL;
    if (!json) return aggs;
    if (!json_is_object(json)) {
        *error = parsing_error("[aggs] must be an object of named aggregations%s", "");
        es_aggs_free(aggs);
        return NULL;
    }
    aggs->aggs = calloc(json_object_size(json) + 1, sizeof *aggs->aggs);
    const char *name;
    json_t *definition;
    json_object_foreach((json_t *)json, name, definition) {
        const char *kind_name;
        json_t *body;
        if (!single_member(definition, &kind_name, &body) || !json_is_object(body)) {
            *error = parsing_error("Aggregation definition for [%s] must hold exactly one aggregation type (sub-aggregations are not supported here)", name);
            es_aggs_free(aggs);
            return NULL;
        }
        int kind = 0;
        while (kind < 6 && strcmp(agg_names[kind], kind_name) != 0) kind++;
        if (kind == 6) {
            char reason[512];
            snprintf(reason, sizeof reason, "Unknown aggregation type [%s] (es-dev knows terms, avg, sum, min, max, value_count)", kind_name);
            *error = es_error_object("unknown_named_object_exception", reason, NULL, NULL);
            es_aggs_free(aggs);
            return NULL;
        }
        const char *field = json_string_value(json_object_get(body, "field"));
        if (!field) {
            *error = parsing_error("Required one of fields [field, script], but none were specified in aggregation [%s]", name);
            es_aggs_free(aggs);
            return NULL;
        }
        for (size_t i = 0; kind == A_TERMS && i < index_count; i++) {
            struct field_ref ref;
            field_resolve(indices[i], field, &ref);
            if (ref.type && is_text_type(ref.type)) {
                char reason[1024];
                snprintf(reason, sizeof reason,
                         "Text fields are not optimised for operations that require per-document field data like "
                         "aggregations and sorting, so these operations are disabled by default. Please use a keyword "
                         "field instead. Alternatively, set fielddata=true on [%s] in order to load field data by "
                         "uninverting the inverted index. Note that this can use significant memory.",
                         field);
                *error = es_error_object("illegal_argument_exception", reason, NULL, NULL);
                es_aggs_free(aggs);
                return NULL;
            }
        }
        struct agg *agg = &aggs->aggs[aggs->count++];
        agg->name = strdup(name);
        agg->field = strdup(field);
        agg->kind = (enum agg_kind)kind;
        agg->size = json_object_get(body, "size") ? json_integer_value(json_object_get(body, "size")) : 10;
        agg->min = INFINITY;
        agg->max = -INFINITY;
    }
    return aggs;
}

static uint64_t hash_bytes(const char *bytes, size_t length, enum value_kind kind)
{
    uint64_t hash = 14695981039346656037ull ^ (uint64_t)kind;
    for (size_t i = 0; i < length; i++) hash = (hash ^ (unsigned char)bytes[i]) * 1099511628211ull;
    return hash;
}

static void key_text(const struct value *value, char *buffer, size_t size, const char **text, size_t *length)
{
    if (value->kind == V_STRING) {
        *text = value->text;
        *length = value->length;
        return;
    }
    int written = value->kind == V_DOUBLE ? snprintf(buffer, size, "%.17g", value->number)
                                          : snprintf(buffer, size, "%lld", value->integer);
    *text = buffer;
    *length = written > 0 ? (size_t)written : 0;
}

static void bucket_add(struct agg *agg, const struct value *value)
{
    if ((agg->bucket_count + 1) * 2 > agg->bucket_capacity) {
        size_t capacity = agg->bucket_capacity ? agg->bucket_capacity * 2 : 64;
        struct bucket *buckets = calloc(capacity, sizeof *buckets);
        if (!buckets) return;
        for (size_t i = 0; i < agg->bucket_capacity; i++) {
            struct bucket *old = &agg->buckets[i];
            if (!old->text) continue;
            size_t position = (size_t)hash_bytes(old->text, old->key.length, old->key.kind) & (capacity - 1);
            while (buckets[position].text) position = (position + 1) & (capacity - 1);
            buckets[position] = *old;
            buckets[position].key.text = buckets[position].text;
        }
        free(agg->buckets);
        agg->buckets = buckets;
        agg->bucket_capacity = capacity;
    }
    char buffer[40];
    const char *text;
    size_t length;
    key_text(value, buffer, sizeof buffer, &text, &length);
    size_t mask = agg->bucket_capacity - 1, position = (size_t)hash_bytes(text, length, value->kind) & mask;
    while (agg->buckets[position].text) {
        struct bucket *bucket = &agg->buckets[position];
        if (bucket->key.kind == value->kind && bucket->key.length == length && memcmp(bucket->text, text, length) == 0) {
            bucket->count++;
            return;
        }
        position = (position + 1) & mask;
    }
    struct bucket *bucket = &agg->buckets[position];
    bucket->text = malloc(length + 1);
    if (!bucket->text) return;
    memcpy(bucket->text, text, length);
    bucket->text[length] = '\0';
    memcpy(&bucket->key, value, offsetof(struct value, buffer));
    bucket->key.text = bucket->text;
    bucket->key.length = length;
    bucket->count = 1;
    agg->bucket_count++;
}

void es_aggs_add(struct es_aggs *aggs, const struct es_index *index, const json_t *source)
{
    for (size_t i = 0; i < aggs->count; i++) {
        struct agg *agg = &aggs->aggs[i];
        struct field_ref ref;
        struct value values[MAX_VALUES];
        size_t count = field_values(index, agg->field, source, &ref, values, MAX_VALUES);
        if (agg->kind == A_TERMS) {
            for (size_t v = 0; v < count; v++) {
                bool seen = false;  /* a document counts once per distinct value */
                for (size_t w = 0; w < v && !seen; w++) seen = values_equal(&values[w], &values[v]) && values[w].kind == values[v].kind;
                if (!seen) bucket_add(agg, &values[v]);
            }
            continue;
        }
        for (size_t v = 0; v < count; v++) {
            agg->count++;
            if (values[v].kind == V_STRING) continue;
            double number = values[v].kind == V_DOUBLE ? values[v].number : (double)values[v].integer;
            agg->sum += number;
            if (number < agg->min) agg->min = number;
            if (number > agg->max) agg->max = number;
        }
    }
}

static int bucket_order(const void *a, const void *b)
{
    const struct bucket *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return values_compare(&x->key, &y->key);
}

json_t *es_aggs_result(const struct es_aggs *aggs)
{
    json_t *result = json_object();
    for (size_t i = 0; i < aggs->count; i++) {
        const struct agg *agg = &aggs->aggs[i];
        json_t *out;
        if (agg->kind == A_TERMS) {
            struct bucket *sorted = calloc(agg->bucket_count + 1, sizeof *sorted);
            size_t n = 0;
            long long total = 0;
            for (size_t b = 0; sorted && b < agg->bucket_capacity; b++)
                if (agg->buckets[b].text) sorted[n++] = agg->buckets[b];
            qsort(sorted, n, sizeof *sorted, bucket_order);
            json_t *buckets = json_array();
            for (size_t b = 0; b < n; b++) {
                if ((long long)b >= agg->size) {
                    total += sorted[b].count;
                    continue;
                }
                const struct value *key = &sorted[b].key;
                json_t *bucket = json_object();
                if (key->kind == V_STRING) json_object_set_new(bucket, "key", json_stringn(key->text, key->length));
                else if (key->kind == V_DOUBLE) json_object_set_new(bucket, "key", json_real(key->number));
                else json_object_set_new(bucket, "key", json_integer(key->integer));
                if (key->kind == V_BOOL) json_object_set_new(bucket, "key_as_string", json_string(key->integer ? "true" : "false"));
                if (key->is_date) {
                    char date[40];
                    format_date(key->integer, date, sizeof date);
                    json_object_set_new(bucket, "key_as_string", json_string(date));
                }
                json_object_set_new(bucket, "doc_count", json_integer(sorted[b].count));
                json_array_append_new(buckets, bucket);
            }
            free(sorted);
            out = json_pack("{s:i,s:I,s:o}", "doc_count_error_upper_bound", 0, "sum_other_doc_count", (json_int_t)total,
                            "buckets", buckets);
        } else if (agg->kind == A_VALUE_COUNT) {
            out = json_pack("{s:I}", "value", (json_int_t)agg->count);
        } else if (agg->kind == A_SUM) {
            out = json_pack("{s:f}", "value", agg->sum);
        } else if (agg->count == 0) {
            out = json_pack("{s:n}", "value");
        } else {
            double value = agg->kind == A_AVG ? agg->sum / (double)agg->count : agg->kind == A_MIN ? agg->min : agg->max;
            out = json_pack("{s:f}", "value", value);
        }
        json_object_set_new(result, agg->name, out);
    }
    return result;
}
