/* check.c: a model's answer checked against the job's `output` declaration (output.c), and the
 * checked values set on the record. A structured or multi-field answer is read as JSON (a
 * ```json fence around it allowed); a one-field answer as text, leniently: "Rating: 4" is a 4,
 * "Sentiment: positive." the enum value positive. Every rejection says what was expected and
 * quotes (an excerpt of) what came, as valid UTF-8: it goes into dead letters and into the
 * correction request. */
#include "models/model_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "formats/json.h"

#define LOOSE_TEXT_MAX 80           /* "Rating: 4" style answers are searched up to this length */

static int is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

/* Narrow text[0..len) to leave out leading and trailing whitespace. */
static void trim_space(const char **text, size_t *len)
{
    const char *s = *text;
    size_t n = *len;
    while (n && is_space(s[0])) { s++; n--; }
    while (n && is_space(s[n - 1])) n--;
    *text = s;
    *len = n;
}

/* (model_int.h) */
void check_put_excerpt(struct buf *out, const char *text, size_t len, size_t max)
{
    size_t used = 0, i = 0;
    while (i < len && is_space(text[i])) i++;
    int space = 0;
    while (i < len) {
        unsigned char c = (unsigned char)text[i];
        if (is_space((char)c)) { space = 1; i++; continue; }
        size_t char_len = 1, bad_at;
        if (c >= 0x80) {
            char_len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
            if (i + char_len > len || !rn_utf8_valid(text + i, char_len, &bad_at)) char_len = 0;
        } else if (c < 0x20 || c == 0x7f) {
            char_len = 0;
        }
        size_t width = char_len ? char_len : 1;
        if (used + space + width > max) { buf_puts(out, "..."); return; }
        if (space) { buf_putc(out, ' '); used++; space = 0; }
        if (char_len) buf_put(out, text + i, char_len);
        else buf_putc(out, '?');
        used += width;
        i += width;
    }
}

static void put_quoted_excerpt(struct buf *b, const char *text, size_t len)
{
    buf_putc(b, '"');
    check_put_excerpt(b, text, len, 60);
    buf_putc(b, '"');
}

static void describe_json(struct buf *b, json_t *v)
{
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (text) {
        check_put_excerpt(b, text, strlen(text), 60);
        free(text);
    }
}

static int check_range(const struct output_field *f, double v, struct buf *why)
{
    if ((f->has_min && v < f->min) || (f->has_max && v > f->max)) {
        char lo[RN_DOUBLE_MAX], hi[RN_DOUBLE_MAX], val[RN_DOUBLE_MAX]; /* formatted only for the message, not for every answer */
        rn_format_double(lo, f->min);
        rn_format_double(hi, f->max);
        rn_format_double(val, v);
        if (f->has_min && f->has_max) buf_printf(why, "%s: %s is out of range %s..%s", f->name, val, lo, hi);
        else if (f->has_min) buf_printf(why, "%s: %s is below the minimum %s", f->name, val, lo);
        else buf_printf(why, "%s: %s is above the maximum %s", f->name, val, hi);
        return -1;
    }
    return 0;
}

/* Case-insensitive match of text against the enum; the declared spelling is kept. */
static const char *enum_match(const struct output_field *f, const char *text, size_t len)
{
    for (size_t k = 0; k < f->enum_count; k++)
        if (strlen(f->enum_values[k]) == len && strncasecmp(f->enum_values[k], text, len) == 0)
            return f->enum_values[k];
    return NULL;
}

/* Check one JSON value against its field; fill out or explain in why. */
static int check_json(const struct output_field *f, json_t *v, struct value *out, struct buf *why)
{
    switch (f->type) {
    case FIELD_INTEGER: {
        double d = json_is_number(v) ? json_number_value(v) : NAN;
        if (json_is_integer(v)) out->integer = (lua_Integer)json_integer_value(v);
        else if (json_is_real(v) && d == floor(d) && fabs(d) < 9.0e15) out->integer = (lua_Integer)d;
        else break;
        return check_range(f, (double)out->integer, why);
    }
    case FIELD_NUMBER:
        if (!json_is_number(v)) break;
        out->number = json_number_value(v);
        return check_range(f, out->number, why);
    case FIELD_STRING:
        if (!json_is_string(v)) break;
        out->string = json_string_value(v);
        out->length = json_string_length(v);
        if (f->enum_count) {
            const char *match = enum_match(f, out->string, out->length);
            if (!match) {
                buf_printf(why, "%s: ", f->name);
                put_quoted_excerpt(why, out->string, out->length);
                buf_puts(why, " is not ");
                output_describe_field(why, f);
                return -1;
            }
            out->string = match;
            out->length = strlen(match);
        }
        return 0;
    case FIELD_BOOLEAN:
        if (!json_is_boolean(v)) break;
        out->boolean = json_is_true(v);
        return 0;
    case FIELD_VECTOR: {
        size_t i;
        json_t *item;
        if (!json_is_array(v) || json_array_size(v) == 0) break;
        json_array_foreach(v, i, item) {
            if (!json_is_number(item)) {
                buf_printf(why, "%s: item %zu is not a number", f->name, i);
                return -1;
            }
        }
        out->vector = v;
        return 0;
    }
    }
    buf_printf(why, "%s: expected ", f->name);
    output_describe_field(why, f);
    buf_puts(why, ", got ");
    describe_json(why, v);
    return -1;
}

static int is_word_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           (unsigned char)c >= 0x80;
}

/* Trim spaces, then surrounding quotes, backticks and '*', then one trailing '.'. */
static void clean_text(const char **text, size_t *len)
{
    const char *s = *text;
    size_t n = *len;
    trim_space(&s, &n);
    if (n && s[n - 1] == '.') n--;
    while (n >= 2 && (s[0] == '"' || s[0] == '\'' || s[0] == '`' || s[0] == '*') && s[n - 1] == s[0]) { s++; n -= 2; }
    if (n && s[n - 1] == '.') n--;
    *text = s;
    *len = n;
}

/* Parse text[0..len) whole as a number; 1 on success. */
static int parse_whole_number(const char *text, size_t len, double *out)
{
    char tmp[64];
    if (len == 0 || len >= sizeof tmp) return 0;
    memcpy(tmp, text, len);
    tmp[len] = '\0';
    if (!((tmp[0] >= '0' && tmp[0] <= '9') || tmp[0] == '-' || tmp[0] == '+' || tmp[0] == '.')) return 0;
    char *end;
    double v = strtod(tmp, &end);
    if (*end != '\0' || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

/* The one number in a short text ("Rating: 4", "I'd say 4."): a run of digits with an optional
 * sign and decimals, not touching letters or digits. 1 and *out when there is exactly one. */
static int find_lone_number(const char *s, size_t n, double *out)
{
    int found = 0;
    size_t i = 0;
    while (i < n) {
        size_t start = i;
        if ((s[i] == '-' || s[i] == '+') && i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '9') i++;
        if (!(s[i] >= '0' && s[i] <= '9') || (start > 0 && (is_word_char(s[start - 1]) || s[start - 1] == '.'))) {
            i = start + 1;
            continue;
        }
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
        if (i + 1 < n && s[i] == '.' && s[i + 1] >= '0' && s[i + 1] <= '9') {
            i++;
            while (i < n && s[i] >= '0' && s[i] <= '9') i++;
        }
        if (i < n && (is_word_char(s[i]) || (s[i] == '.' && i + 1 < n && is_word_char(s[i + 1])))) {
            while (i < n && is_word_char(s[i])) i++;
            continue; /* part of a word like "4th" or "v2" */
        }
        if (++found > 1) return 0;
        if (!parse_whole_number(s + start, i - start, out)) return 0;
    }
    return found == 1;
}

/* The one enum value that appears as a whole word in a short text ("Sentiment: positive"). */
static const char *find_lone_enum(const struct output_field *f, const char *s, size_t n)
{
    const char *found = NULL;
    for (size_t k = 0; k < f->enum_count; k++) {
        const char *value = f->enum_values[k];
        size_t vn = strlen(value);
        for (size_t i = 0; i + vn <= n; i++) {
            if (strncasecmp(s + i, value, vn) != 0) continue;
            if ((i > 0 && is_word_char(s[i - 1])) || (i + vn < n && is_word_char(s[i + vn]))) continue;
            if (found && found != value) return NULL;
            found = value;
            break;
        }
    }
    return found;
}

/* Strip a ```json ... ``` fence around an answer. */
static void strip_fence(const char **text, size_t *len)
{
    const char *s = *text;
    size_t n = *len;
    trim_space(&s, &n);
    if (n >= 6 && memcmp(s, "```", 3) == 0 && memcmp(s + n - 3, "```", 3) == 0) {
        const char *nl = memchr(s, '\n', n - 3);
        if (nl) {
            n = (size_t)(s + n - 3 - (nl + 1));
            s = nl + 1;
        }
    }
    *text = s;
    *len = n;
}

/* An unstructured answer for one field: the whole text (strings), a number alone or the one
 * number of a short text (numbers), a yes/no word (booleans), an enum value alone or the one
 * enum value named in a short text (enums). */
static int check_text(const struct output_field *f, const char *text, size_t len, struct value *out, struct buf *why)
{
    const char *s = text;
    size_t n = len;
    if (f->type == FIELD_STRING && !f->enum_count) {
        trim_space(&s, &n);
        out->string = s;
        out->length = n;
        return 0;
    }
    clean_text(&s, &n);
    double number;
    switch (f->type) {
    case FIELD_INTEGER:
    case FIELD_NUMBER:
        if (parse_whole_number(s, n, &number) || (n <= LOOSE_TEXT_MAX && find_lone_number(s, n, &number))) {
            if (f->type == FIELD_NUMBER) {
                out->number = number;
                return check_range(f, number, why);
            }
            if (number == floor(number) && fabs(number) < 9.0e15) {
                out->integer = (lua_Integer)number;
                return check_range(f, number, why);
            }
        }
        break;
    case FIELD_BOOLEAN:
        if ((n == 4 && strncasecmp(s, "true", 4) == 0) || (n == 3 && strncasecmp(s, "yes", 3) == 0)) {
            out->boolean = 1;
            return 0;
        }
        if ((n == 5 && strncasecmp(s, "false", 5) == 0) || (n == 2 && strncasecmp(s, "no", 2) == 0)) {
            out->boolean = 0;
            return 0;
        }
        break;
    case FIELD_STRING: {
        const char *match = enum_match(f, s, n);
        if (!match && n <= LOOSE_TEXT_MAX) match = find_lone_enum(f, s, n);
        if (match) {
            out->string = match;
            out->length = strlen(match);
            return 0;
        }
        break;
    }
    case FIELD_VECTOR:
        break;
    }
    buf_printf(why, "%s: expected ", f->name);
    output_describe_field(why, f);
    buf_puts(why, ", got ");
    put_quoted_excerpt(why, text, len);
    return -1;
}

/* (model_int.h) */
int check_answer(const struct output *o, enum model_task task, const struct model_reply *r, struct value *values,
                 json_t **parsed, struct buf *why)
{
    memset(values, 0, o->field_count * sizeof *values);
    *parsed = NULL;
    if (task == MODEL_TASK_EMBEDDING) {
        if (!r->vector) { buf_puts(why, "the answer holds no embedding"); return -1; }
        return check_json(&o->fields[0], r->vector, &values[0], why);
    }
    const char *text = r->text.data ? r->text.data : "";
    size_t len = r->text.len;
    strip_fence(&text, &len);
    int looks_json = len && (text[0] == '{' || text[0] == '[');
    if (o->field_count == 1) {
        /* One field: plain text unless the answer is JSON. A structured answer that is not JSON
         * comes from a server that ignored the schema; it gets the same reading. A free string
         * without structured output is the whole text, even when it looks like JSON. */
        const struct output_field *f = &o->fields[0];
        int free_string = f->type == FIELD_STRING && !f->enum_count;
        if (!looks_json || (!o->structured && free_string))
            return check_text(f, r->text.data ? r->text.data : "", r->text.len, &values[0], why);
    }
    json_error_t jerr;
    json_t *root = json_loadb(text, len, 0, &jerr);
    if (!root) {
        buf_puts(why, "not valid JSON (");
        check_put_excerpt(why, jerr.text, strlen(jerr.text), sizeof jerr.text); /* jansson may cut a character */
        buf_printf(why, " at column %d): ", jerr.column);
        put_quoted_excerpt(why, r->text.data ? r->text.data : "", r->text.len);
        return -1;
    }
    *parsed = root;
    if (!json_is_object(root)) {
        buf_puts(why, "expected a JSON object, got ");
        describe_json(why, root);
        return -1;
    }
    for (size_t i = 0; i < o->field_count; i++) {
        json_t *v = json_object_get(root, o->fields[i].name);
        if (!v || json_is_null(v)) {
            buf_printf(why, "%s: missing", o->fields[i].name);
            return -1;
        }
        if (check_json(&o->fields[i], v, &values[i], why)) return -1;
    }
    return 0;
}

void check_set_fields(lua_State *L, const struct output *o, const struct value *values, int record_ref)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, record_ref);
    for (size_t i = 0; i < o->field_count; i++) {
        const struct value *v = &values[i];
        switch (o->fields[i].type) {
        case FIELD_INTEGER: lua_pushinteger(L, v->integer); break;
        case FIELD_NUMBER: lua_pushnumber(L, v->number); break;
        case FIELD_STRING: lua_pushlstring(L, v->string, v->length); break;
        case FIELD_BOOLEAN: lua_pushboolean(L, v->boolean); break;
        case FIELD_VECTOR: json_push(L, v->vector); break;
        }
        lua_setfield(L, -2, o->fields[i].name);
    }
    lua_pop(L, 1);
}

/* Check the reply and, when it validates, set the output fields on the record at registry
 * ref record_ref (model_int.h, also for tests and fuzzing). 0, or -1 with why. */
int model_check_reply(struct model *m, const struct model_reply *reply, int record_ref, struct buf *why)
{
    struct model_reply named;
    if (m->centroids.count) { /* clustering over centroids: the answer is the nearest one's name */
        if (centroids_nearest(&m->centroids, reply->vector, &m->cluster_name, why)) return -1;
        named = (struct model_reply){.text = m->cluster_name};
        reply = &named;
    }
    json_t *parsed = NULL;
    int rc = check_answer(&m->output, m->task, reply, m->values, &parsed, why);
    if (rc == 0) check_set_fields(m->L, &m->output, m->values, record_ref);
    json_decref(parsed);
    return rc;
}
