/* avro.c: the "avro" record format: Confluent's wire format (magic byte 0, the schema id as 4
 * bytes big-endian, then the Avro binary value) with a Schema Registry.
 *
 * Decoding fetches each writer schema by its id once (registry.c) and keeps it for the job; with
 * a reader `schema` every value is resolved to it (Avro schema resolution, defaults filled in).
 * Every value is walked over its writer schema (bounds.c) before anything is allocated for it,
 * so a corrupt message is refused by its reason instead of allocating what it claims; then it
 * is read straight into Lua (avro_push_binary), or, with a reader schema, by libavro's resolved
 * writer. Encoding registers the schema under its subject when the format opens (a refusal
 * stops the job there, with the registry's message) and writes every record with that id,
 * straight from Lua to the bytes (avro_write_value). */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "formats/avro/avro.h"
#include "formats/avro/avro_int.h"
#include "formats/avro/registry.h"
#include "formats/format.h"
#include "formats/json.h"

#define HEADER_BYTES 5
#define MAX_ITEMS 1000000        /* array and map items in one message */
#define MAX_CACHED_FAILURES 1024 /* ids remembered as unknown, so a bad stream does not ask again and again */
#define MAX_SCHEMA_FILE_BYTES (4u * 1024 * 1024)

const struct option_spec avro_registry_options[] = {
    {"url", OPT_STRING, 1, NULL, .help = "the registry's base URL: http://host:8081 or https://..."},
    {"user", OPT_STRING, 0, NULL, .help = "basic auth user (Confluent Cloud: the API key)"},
    {"password", OPT_STRING, 0, NULL, .help = "basic auth password (Confluent Cloud: the API secret)", .secret = 1},
    {"ca_file", OPT_STRING, 0, NULL, .help = "PEM file of the CA certificates that sign the registry's", .default_note = "the system's"},
    {"timeout", OPT_DURATION, 0, "10s", .help = "per request", OPT_RANGE(100, 600000)},
    {"retries", OPT_INTEGER, 0, "2", .help = "more attempts after a 5xx, a 429 or no answer (250 ms, doubling)", OPT_RANGE(0, 10)},
    {"subject", OPT_STRING, 0, NULL, .help = "sink: the subject to register under", .default_note = "by subject_strategy"},
    {"subject_strategy", OPT_ENUM, 0, "topic",
     .help = "sink: \"topic\" (<topic>-value, <topic>-key), \"record\" (the record's full name) or \"topic_record\" "
             "(<topic>-<full name>)",
     .choices = OPT_CHOICES("topic", "record", "topic_record")},
    {"auto_register", OPT_BOOLEAN, 0, "true",
     .help = "sink: register the schema; false: look its id up in the subject (POST /subjects/S), registering nothing"},
    {NULL},
};

int avro_check_schema_option(lua_State *L, int idx, struct rn_err *err)
{
    int t = lua_type(L, idx);
    if (t == LUA_TSTRING || t == LUA_TTABLE) return 0;
    return rn_fail(err, "must be a .avsc file's path, the schema's JSON text or a Lua table, not %s", luaL_typename(L, idx));
}

/* A writer schema met in messages, by id. */
struct writer {
    uint32_t id;
    struct avro_tree *tree;        /* NULL: the id failed (error says why) */
    char *error;
    int ready;
    /* resolving to a reader schema only (values of the writer's own schema are read straight
     * from the binary, avro_push_binary) */
    avro_value_iface_t *iface;     /* the resolved writer */
    avro_value_t value;            /* read into */
    avro_value_iface_t *dest_iface; /* the reader's generic class */
    avro_value_t dest;             /* where the resolved writer puts the value */
};

struct avro_codec {
    struct job_env *env;
    enum format_use use;
    int extra_fields;
    char where[256];
    struct secret_set secrets;
    struct avro_registry *registry;
    struct avro_tree *schema;      /* decode: the reader schema (NULL: each writer's); encode: the value's */
    /* decoding */
    struct writer *writers;
    size_t writer_count, failures;
    size_t last;                   /* the writer of the last message: most messages share it */
    avro_reader_t input;
    /* encoding: written straight from Lua (avro_write_value) */
    uint32_t id;
    struct avro_tree *key_schema;  /* with key_schema */
    uint32_t key_id;
};

static void codec_close(void *self);

static int read_schema_file(const char *path, struct buf *out, struct rn_err *err)
{
    size_t len;
    char *data = rn_read_file(path, &len, err);
    if (!data) return -1;
    if (len > MAX_SCHEMA_FILE_BYTES) {
        free(data);
        return rn_fail(err, "%s: a schema of %zu bytes (at most %u)", path, len, MAX_SCHEMA_FILE_BYTES);
    }
    buf_put(out, data, len);
    free(data);
    return 0;
}

/* The schema option at stack index idx as schema text: a file's content, the text itself, or
 * the table as JSON. 0, or -1 and err. */
static int schema_text(struct avro_codec *c, lua_State *L, int idx, const char *option, struct buf *out,
                       struct rn_err *err)
{
    if (lua_type(L, idx) == LUA_TTABLE) {
        if (json_encode(L, idx, LUA_NOREF, out, err)) return rn_wrap(err, "%s: %s", c->where, option);
        return 0;
    }
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    size_t lead = strspn(s, " \t\r\n");
    if (s[lead] == '{' || s[lead] == '[' || s[lead] == '"') {
        buf_put(out, s, len);
        return 0;
    }
    struct rn_err why;
    if (read_schema_file(s, out, &why) == 0) return 0;
    /* a path relative to the job script's folder, as jobs/x.lua names its review.avsc */
    const char *slash = c->env->script ? strrchr(c->env->script, '/') : NULL;
    if (s[0] != '/' && slash) {
        struct buf near;
        buf_init(&near);
        buf_printf(&near, "%.*s/%s", (int)(slash - c->env->script), c->env->script, s);
        struct rn_err ignored;
        int rc = read_schema_file(near.data, out, &ignored);
        buf_free(&near);
        if (rc == 0) return 0;
    }
    return rn_fail(err, "%s: %s: %s", c->where, option, why.msg);
}

/* Parse the schema option called `option` (absent: *tree stays NULL). */
static int load_schema(struct avro_codec *c, lua_State *L, int opts, const char *option, struct avro_tree **tree,
                       struct buf *text, struct rn_err *err)
{
    if (!opt_push(L, opts, option)) return 0;
    int rc = schema_text(c, L, lua_gettop(L), option, text, err);
    lua_pop(L, 1);
    if (rc) return -1;
    if (!(*tree = avro_tree_parse(text->data, text->len, err))) return rn_wrap(err, "%s: %s", c->where, option);
    return 0;
}

/* The subject of a schema: the option, or by the strategy. */
static void subject_of(lua_State *L, int reg, const char *topic, const struct avro_tree *t, int key, struct buf *out)
{
    const char *subject = opt_string(L, reg, "subject", NULL);
    const char *strategy = opt_string(L, reg, "subject_strategy", "topic");
    const char *name = t->root->name;
    if (subject && !key) buf_puts(out, subject);
    else if (strcmp(strategy, "record") == 0 && name) buf_puts(out, name);
    else if (strcmp(strategy, "topic_record") == 0 && name) buf_printf(out, "%s-%s", topic, name);
    else buf_printf(out, "%s-%s", topic, key ? "key" : "value");
}

static int register_schema(struct avro_codec *c, lua_State *L, int reg, const char *topic, const struct avro_tree *t,
                           const struct buf *text, int key, uint32_t *id, struct rn_err *err)
{
    struct buf subject;
    buf_init(&subject);
    subject_of(L, reg, topic, t, key, &subject);
    int lookup_only = !opt_boolean(L, reg, "auto_register", 1);
    enum registry_result rc = avro_registry_register(c->registry, subject.data, text->data, lookup_only, id, err);
    if (rc != REGISTRY_OK)
        rn_wrap(err, "%s: %s: subject %s (%s)", c->where, key ? "key_schema" : "schema", subject.data,
                rc == REGISTRY_REFUSED ? "the registry refused the schema" : lookup_only ? "looking the schema up" : "registering");
    buf_free(&subject);
    return rc == REGISTRY_OK ? 0 : -1;
}

static void *codec_open(const struct format_args *args, enum format_use use, struct rn_err *err)
{
    lua_State *L = args->env->L;
    struct avro_codec *c = rn_calloc(1, sizeof *c);
    c->env = args->env;
    c->use = use;
    c->extra_fields = args->extra_fields;
    snprintf(c->where, sizeof c->where, "%s: %s", args->where, args->plugin);
    secret_set_init(&c->secrets);
    struct buf text, key_text;
    buf_init(&text);
    buf_init(&key_text);
    int reg = 0;
    if (!opt_push(L, args->opts, "registry")) {
        rn_fail(err, "%s: format = \"avro\" needs registry = { url = ... }", c->where);
        goto fail;
    }
    reg = lua_gettop(L);
    if (!(c->registry = avro_registry_open(L, reg, &c->secrets, err))) {
        rn_wrap(err, "%s", c->where);
        goto fail;
    }
    if (load_schema(c, L, args->opts, "schema", &c->schema, &text, err)) goto fail;
    if (use == FORMAT_DECODE) {
        if (format_order_columns(args, err)) goto fail;
        if (c->schema && c->schema->root->kind == AVRO_KIND_RECORD)
            for (size_t i = 0; i < c->schema->root->field_count; i++) fieldorder_add(c->env, c->schema->root->fields[i].name);
        c->input = avro_reader_memory("", 0);
    } else {
        const char *topic = opt_string(L, args->opts, "topic", "");
        if (!c->schema) {
            rn_fail(err, "%s: format = \"avro\" needs schema = \"file.avsc\" (or the schema's text, or a table)", c->where);
            goto fail;
        }
        if (c->schema->root->kind != AVRO_KIND_RECORD) {
            rn_fail(err, "%s: schema: a message value's schema must be a record, not %s", c->where,
                    avro_schema_type_name(c->schema->schema));
            goto fail;
        }
        if (load_schema(c, L, args->opts, "key_schema", &c->key_schema, &key_text, err)) goto fail;
        if (c->key_schema && !opt_string(L, args->opts, "key", NULL)) {
            rn_fail(err, "%s: key_schema: given without key (the field whose value is the key)", c->where);
            goto fail;
        }
        if (register_schema(c, L, reg, topic, c->schema, &text, 0, &c->id, err)) goto fail;
        if (c->key_schema && register_schema(c, L, reg, topic, c->key_schema, &key_text, 1, &c->key_id, err)) goto fail;
    }
    lua_pop(L, 1);
    buf_free(&text);
    buf_free(&key_text);
    return c;
fail:
    if (reg) lua_pop(L, 1);
    buf_free(&text);
    buf_free(&key_text);
    codec_close(c);
    return NULL;
}

/* ---- decoding ---- */

static void writer_free(struct writer *w)
{
    if (w->iface) {
        avro_value_decref(&w->value);
        avro_value_iface_decref(w->iface);
    }
    if (w->dest_iface) {
        avro_value_decref(&w->dest);
        avro_value_iface_decref(w->dest_iface);
    }
    avro_tree_free(w->tree);
    free(w->error);
}

/* Make w ready to read values of its tree (and resolve them to c->schema). 0, or -1 and err. */
static int writer_prepare(struct avro_codec *c, struct writer *w, struct rn_err *err)
{
    if (!c->schema) {
        if (w->tree->root->kind == AVRO_KIND_RECORD)
            for (size_t i = 0; i < w->tree->root->field_count; i++) fieldorder_add(c->env, w->tree->root->fields[i].name);
        w->ready = 1;
        return 0;
    }
    avro_schema_t projected = avro_tree_project(c->schema, w->tree, err);
    if (!projected) return -1;
    w->iface = avro_resolved_writer_new(w->tree->schema, projected);
    if (!w->iface) {
        rn_fail(err, "it cannot be read with the reader's schema: %s", avro_strerror());
        avro_schema_decref(projected);
        return -1;
    }
    w->dest_iface = avro_generic_class_from_schema(projected);
    avro_schema_decref(projected);
    if (!w->dest_iface || avro_generic_value_new(w->dest_iface, &w->dest) ||
        avro_resolved_writer_new_value(w->iface, &w->value)) {
        if (w->dest_iface) avro_value_iface_decref(w->dest_iface);
        avro_value_iface_decref(w->iface);
        w->iface = w->dest_iface = NULL;
        return rn_fail(err, "libavro: %s", avro_strerror());
    }
    avro_resolved_writer_set_dest(&w->value, &w->dest);
    w->ready = 1;
    return 0;
}

/* The writer of schema id: cached, or fetched now. NULL and err (the id's failure, cached too);
 * *fatal when the registry did not answer (the job must stop, not dead-letter the message). */
static struct writer *writer_get(struct avro_codec *c, uint32_t id, int *fatal, struct rn_err *err)
{
    if (c->last < c->writer_count && c->writers[c->last].id == id) {
        struct writer *w = &c->writers[c->last];
        if (w->tree) return w;
        rn_fail(err, "%s", w->error);
        return NULL;
    }
    for (size_t i = 0; i < c->writer_count; i++) {
        if (c->writers[i].id != id) continue;
        c->last = i;
        return writer_get(c, id, fatal, err);
    }
    struct buf text;
    buf_init(&text);
    struct writer w = {.id = id};
    enum registry_result rc = avro_registry_schema(c->registry, id, &text, err);
    if (rc == REGISTRY_OK && !(w.tree = avro_tree_parse(text.data, text.len, err)))
        rn_wrap(err, "schema %u from the registry", (unsigned)id);
    else if (rc == REGISTRY_OK && writer_prepare(c, &w, err))
        rn_wrap(err, "schema %u", (unsigned)id);
    buf_free(&text);
    if (rc == REGISTRY_UNAVAILABLE) {
        *fatal = 1;
        return NULL;
    }
    if (!w.ready) {
        avro_tree_free(w.tree);
        w.tree = NULL;
        if (rc == REGISTRY_NOT_FOUND) rn_wrap(err, "schema id %u is unknown to the registry", (unsigned)id);
        if (c->failures >= MAX_CACHED_FAILURES) return NULL;
        c->failures++;
        w.error = rn_strdup(err->msg);
    }
    c->writers = rn_realloc(c->writers, (c->writer_count + 1) * sizeof *c->writers);
    c->writers[c->writer_count] = w;
    c->last = c->writer_count++;
    return w.tree ? &c->writers[c->last] : NULL;
}

static int codec_decode(void *self, lua_State *L, const char *data, size_t len, struct rn_err *err)
{
    struct avro_codec *c = self;
    const unsigned char *bytes = (const unsigned char *)data;
    if (len < HEADER_BYTES)
        return rn_fail(err, "the value is %zu bytes, shorter than the wire format's header (magic byte 0, 4-byte schema id)",
                       len);
    if (bytes[0] != 0)
        return rn_fail(err, "magic byte 0x%02x, not 0: not the Confluent Avro wire format", bytes[0]);
    uint32_t id = (uint32_t)bytes[1] << 24 | (uint32_t)bytes[2] << 16 | (uint32_t)bytes[3] << 8 | bytes[4];
    int fatal = 0;
    struct writer *w = writer_get(c, id, &fatal, err);
    if (!w) return fatal ? FORMAT_FATAL : -1;
    if (avro_bounds_check(w->tree->root, bytes + HEADER_BYTES, len - HEADER_BYTES, HEADER_BYTES, MAX_ITEMS, err))
        return rn_wrap(err, "schema %u", (unsigned)id);
    struct avro_tree *tree = c->schema ? c->schema : w->tree;
    int record = tree->root->kind == AVRO_KIND_RECORD;
    if (!record) lua_createtable(L, 0, 1 + c->extra_fields);
    int rc;
    if (!c->schema) {
        rc = avro_push_binary(L, tree, bytes + HEADER_BYTES, len - HEADER_BYTES, HEADER_BYTES,
                              record ? c->extra_fields : 0, err);
    } else {
        avro_value_reset(&w->dest);
        avro_reader_memory_set_source(c->input, data + HEADER_BYTES, (int64_t)(len - HEADER_BYTES));
        if (avro_value_read(c->input, &w->value)) {
            if (!record) lua_pop(L, 1);
            return rn_fail(err, "schema %u: libavro cannot read the value: %s", (unsigned)id, avro_strerror());
        }
        rc = avro_push_value(L, tree, w->tree, &w->dest, record ? c->extra_fields : 0, err);
    }
    if (rc) {
        if (!record) lua_pop(L, 1);
        return rn_wrap(err, "schema %u", (unsigned)id);
    }
    if (!record) lua_setfield(L, -2, "value");
    return 0;
}

/* ---- encoding ---- */

/* Append the wire format of the Lua value at idx as a value of t (header with id, then the
 * value) to out. */
static int write_message(lua_State *L, int idx, struct avro_tree *t, uint32_t id, struct buf *out, struct rn_err *err)
{
    size_t start = out->len;
    unsigned char header[HEADER_BYTES] = {0, (unsigned char)(id >> 24), (unsigned char)(id >> 16),
                                          (unsigned char)(id >> 8), (unsigned char)id};
    buf_put(out, header, HEADER_BYTES);
    if (avro_write_value(L, idx, t, out, err) == 0) return 0;
    out->len = start;
    out->data[start] = '\0';
    return -1;
}

static int codec_encode(void *self, lua_State *L, int rec, struct buf *out, struct rn_err *err)
{
    struct avro_codec *c = self;
    if (write_message(L, rec, c->schema, c->id, out, err))
        return rn_wrap(err, "the record does not fit schema %u (%s)", (unsigned)c->id, c->schema->root->name);
    return 0;
}

static int codec_encode_key(void *self, lua_State *L, int key, struct buf *out, struct rn_err *err)
{
    struct avro_codec *c = self;
    if (!c->key_schema) return 1;
    if (write_message(L, key, c->key_schema, c->key_id, out, err))
        return rn_wrap(err, "the key does not fit key schema %u", (unsigned)c->key_id);
    return 0;
}

static void codec_close(void *self)
{
    struct avro_codec *c = self;
    if (!c) return;
    for (size_t i = 0; i < c->writer_count; i++) writer_free(&c->writers[i]);
    free(c->writers);
    if (c->input) avro_reader_free(c->input);
    avro_tree_free(c->schema);
    avro_tree_free(c->key_schema);
    avro_registry_close(c->registry);
    secret_set_free(&c->secrets);
    free(c);
}

const struct format_ops avro_format = {
    .name = "avro",
    .opens_remote = 1,
    .open = codec_open,
    .decode = codec_decode,
    .encode = codec_encode,
    .encode_key = codec_encode_key,
    .close = codec_close,
};
