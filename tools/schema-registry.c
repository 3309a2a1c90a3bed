/* schema-registry.c: a Confluent Schema Registry stand-in (bin/schema-registry-dev) for runnel's
 * tests and demo: the registry's REST API (v1 content types), its error codes and messages, and
 * Avro compatibility checks (tools/avro_schema.c), in memory or persisted with --data FILE.
 *
 * The one thing to know: ids are global. The same schema (same registry text: spacing, key order
 * and name qualification do not matter) gets the same id in every subject, as the real registry
 * does; versions are per subject and keep counting after a soft delete. Only Avro: other
 * schemaType values and schema references answer 42201. Faults (a status for the next N or every
 * Nth request, latency, closed connections) come from flags or POST /_fault. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "avro_schema.h"
#include "standin.h"

#define CONTENT_TYPE "application/vnd.schemaregistry.v1+json"
#define MAX_BODY_BYTES (16u * 1024 * 1024)
#define MAX_PATH_SEGMENTS 8

/* ---- configuration ------------------------------------------------------------------------ */

struct config {
    long port, threads, fail_every, fail_next, fail_status, latency_ms, close_next;
    const char *data_path, *basic, *compatibility;
    bool verbose, help;
};

static struct config config = {.port = -1, .threads = 1, .fail_status = 500, .compatibility = "BACKWARD"};

static const struct standin_option options[] = {
    {"--port", STANDIN_INTEGER, &config.port, 0, 65535,
     "TCP port on 127.0.0.1 (required); 0 picks a free one. Prints 'listening on URL' first."},
    {"--data", STANDIN_TEXT, &config.data_path, 0, 0,
     "keep the registry in this JSON file (loaded at start, rewritten atomically after each change)"},
    {"--compatibility", STANDIN_TEXT, &config.compatibility, 0, 0,
     "the global compatibility level at start: BACKWARD, FORWARD, FULL, NONE or *_TRANSITIVE"},
    {"--basic", STANDIN_TEXT, &config.basic, 0, 0,
     "USER:PASSWORD: require HTTP basic auth on every endpoint but /_fault (401 otherwise)"},
    {"--fail-every", STANDIN_INTEGER, &config.fail_every, 0, 1000000,
     "answer every Nth request (counted from 1, /_fault not counted) with --fail-status; 0 = off"},
    {"--fail-next", STANDIN_INTEGER, &config.fail_next, 0, 1000000,
     "answer the next N requests with --fail-status"},
    {"--fail-status", STANDIN_INTEGER, &config.fail_status, 400, 599,
     "the HTTP status of injected failures; 500 carries error_code 50001, 504 50002, others the status"},
    {"--latency-ms", STANDIN_INTEGER, &config.latency_ms, 0, 600000, "delay every answer by N ms"},
    {"--close-next", STANDIN_INTEGER, &config.close_next, 0, 1000000,
     "close the connection without an answer for the next N requests"},
    {"--threads", STANDIN_INTEGER, &config.threads, 1, 64, "serving threads"},
    {"--verbose", STANDIN_FLAG, &config.verbose, 0, 0, "log one line per request to stderr"},
    {"--help", STANDIN_FLAG, &config.help, 0, 0, "print this help and exit"},
};
#define OPTION_COUNT (sizeof options / sizeof options[0])

static void print_help(void)
{
    printf("usage: schema-registry-dev --port P [options]\n"
           "A Confluent Schema Registry stand-in on 127.0.0.1 (REST API v1, Avro schemas).\n\n"
           "Endpoints: GET / ; GET /schemas/types ; GET /schemas/ids/ID[/schema|/subjects|/versions] ;\n"
           "GET /subjects ; GET|POST|DELETE /subjects/S ; GET|POST /subjects/S/versions ;\n"
           "GET|DELETE /subjects/S/versions/V (V a number, latest or -1) ; GET /subjects/S/versions/V/schema ;\n"
           "POST /compatibility/subjects/S/versions[/V] (?verbose=true adds messages) ;\n"
           "GET|PUT|DELETE /config[/S] ; GET /mode. Errors are {\"error_code\", \"message\"}: 40401 subject,\n"
           "40402 version, 40403 schema not found, 40404/40405 soft delete rules, 40408 no subject config,\n"
           "409 incompatible, 42201 invalid schema, 42202 invalid version, 42203 invalid level, 50001.\n\n"
           "Faults: POST /_fault {\"status\":500,\"count\":N,\"every\":N,\"error_code\":50001,\"latency_ms\":N,\n"
           "\"close\":N} changes them (each member optional), GET /_fault shows them and the counters,\n"
           "DELETE /_fault clears them.\n\nOptions (--name VALUE or --name=VALUE):\n");
    standin_options_help(stdout, options, OPTION_COUNT);
}

/* ---- the registry ------------------------------------------------------------------------- */

enum level { LEVEL_NONE, LEVEL_BACKWARD, LEVEL_FORWARD, LEVEL_FULL, LEVEL_BACKWARD_TRANSITIVE,
             LEVEL_FORWARD_TRANSITIVE, LEVEL_FULL_TRANSITIVE, LEVEL_UNSET };
static const char *const level_names[] = {"NONE", "BACKWARD", "FORWARD", "FULL", "BACKWARD_TRANSITIVE",
                                          "FORWARD_TRANSITIVE", "FULL_TRANSITIVE"};

struct stored_schema {
    int id;
    struct avro_schema *schema;  /* its text is what GET /schemas/ids/ID answers */
};

struct version {
    int number, schema_id;
    bool deleted;
};

struct subject {
    char *name;
    struct version *versions;
    size_t version_count, version_capacity;
    enum level level;  /* LEVEL_UNSET: the global one applies */
};

struct faults {
    long status, error_code, count, every, latency_ms, close_count;
};

struct registry {
    pthread_mutex_t lock;
    struct stored_schema *schemas;  /* ids are 1..schema_count, in order */
    size_t schema_count, schema_capacity;
    struct subject *subjects;
    size_t subject_count, subject_capacity;
    enum level level;
    struct faults faults;
    unsigned long long requests, faults_injected, closes_injected;
    char *authorization;  /* expected Authorization header, NULL: none */
    const char *data_path;
};

static enum level level_parse(const char *text)
{
    for (int i = 0; i < LEVEL_UNSET; i++)
        if (text && strcasecmp(text, level_names[i]) == 0) return (enum level)i;
    return LEVEL_UNSET;
}

static struct subject *subject_find(struct registry *registry, const char *name)
{
    for (size_t i = 0; i < registry->subject_count; i++)
        if (strcmp(registry->subjects[i].name, name) == 0) return &registry->subjects[i];
    return NULL;
}

static struct subject *subject_add(struct registry *registry, const char *name)
{
    if (registry->subject_count == registry->subject_capacity) {
        size_t capacity = registry->subject_capacity ? registry->subject_capacity * 2 : 16;
        struct subject *subjects = realloc(registry->subjects, capacity * sizeof *subjects);
        if (!subjects) return NULL;
        registry->subjects = subjects;
        registry->subject_capacity = capacity;
    }
    char *copy = strdup(name);
    if (!copy) return NULL;
    struct subject *subject = &registry->subjects[registry->subject_count++];
    *subject = (struct subject){.name = copy, .level = LEVEL_UNSET};
    return subject;
}

static void subject_remove(struct registry *registry, struct subject *subject)
{
    free(subject->name);
    free(subject->versions);
    size_t index = (size_t)(subject - registry->subjects);
    memmove(subject, subject + 1, (registry->subject_count - index - 1) * sizeof *subject);
    registry->subject_count--;
}

static bool version_add(struct subject *subject, int number, int schema_id, bool deleted)
{
    if (subject->version_count == subject->version_capacity) {
        size_t capacity = subject->version_capacity ? subject->version_capacity * 2 : 4;
        struct version *versions = realloc(subject->versions, capacity * sizeof *versions);
        if (!versions) return false;
        subject->versions = versions;
        subject->version_capacity = capacity;
    }
    subject->versions[subject->version_count++] = (struct version){number, schema_id, deleted};
    return true;
}

static size_t live_versions(const struct subject *subject)
{
    size_t count = 0;
    for (size_t i = 0; i < subject->version_count; i++) count += !subject->versions[i].deleted;
    return count;
}

/* The subject if it has a version that is not deleted, else NULL. */
static struct subject *subject_live(struct registry *registry, const char *name)
{
    struct subject *subject = subject_find(registry, name);
    return subject && live_versions(subject) ? subject : NULL;
}

static struct version *version_latest(struct subject *subject)
{
    for (size_t i = subject->version_count; i-- > 0;)
        if (!subject->versions[i].deleted) return &subject->versions[i];
    return NULL;
}

static struct version *version_find(struct subject *subject, int number, bool include_deleted)
{
    for (size_t i = 0; i < subject->version_count; i++)
        if (subject->versions[i].number == number && (include_deleted || !subject->versions[i].deleted))
            return &subject->versions[i];
    return NULL;
}

static struct stored_schema *schema_by_id(struct registry *registry, long id)
{
    return id >= 1 && (size_t)id <= registry->schema_count ? &registry->schemas[id - 1] : NULL;
}

static struct stored_schema *schema_by_text(struct registry *registry, const char *text)
{
    for (size_t i = 0; i < registry->schema_count; i++)
        if (strcmp(avro_schema_text(registry->schemas[i].schema), text) == 0) return &registry->schemas[i];
    return NULL;
}

/* Takes ownership of schema; returns its new id, or 0 when out of memory (schema freed). */
static int schema_add(struct registry *registry, struct avro_schema *schema)
{
    if (registry->schema_count == registry->schema_capacity) {
        size_t capacity = registry->schema_capacity ? registry->schema_capacity * 2 : 16;
        struct stored_schema *schemas = realloc(registry->schemas, capacity * sizeof *schemas);
        if (!schemas) {
            avro_schema_free(schema);
            return 0;
        }
        registry->schemas = schemas;
        registry->schema_capacity = capacity;
    }
    int id = (int)registry->schema_count + 1;
    registry->schemas[registry->schema_count++] = (struct stored_schema){id, schema};
    return id;
}

static enum level subject_level(const struct registry *registry, const struct subject *subject)
{
    return subject && subject->level != LEVEL_UNSET ? subject->level : registry->level;
}

/* Whether candidate may follow the versions of subject under level; problems (a JSON array, may
 * be NULL) gets the registry's messages. only: check against this version alone (the
 * compatibility endpoint with an explicit version), or NULL to follow the level. */
static bool compatible(struct registry *registry, struct subject *subject, enum level level,
                       const struct avro_schema *candidate, const struct version *only, json_t *problems)
{
    if (level == LEVEL_NONE || !subject) return true;
    bool transitive = level >= LEVEL_BACKWARD_TRANSITIVE;
    bool backward = level == LEVEL_BACKWARD || level == LEVEL_FULL || level == LEVEL_BACKWARD_TRANSITIVE ||
                    level == LEVEL_FULL_TRANSITIVE;
    bool forward = level == LEVEL_FORWARD || level == LEVEL_FULL || level == LEVEL_FORWARD_TRANSITIVE ||
                   level == LEVEL_FULL_TRANSITIVE;
    const struct version *latest = version_latest(subject);
    bool ok = true;
    for (size_t i = subject->version_count; i-- > 0;) {
        const struct version *version = &subject->versions[i];
        if (version->deleted) continue;
        if (only ? version != only : (!transitive && version != latest)) continue;
        const struct avro_schema *old = schema_by_id(registry, version->schema_id)->schema;
        size_t before = problems ? json_array_size(problems) : 0;
        bool this_ok = true;
        if (backward && !avro_schema_can_read(candidate, old, problems, "new", "old")) this_ok = false;
        if (forward && !avro_schema_can_read(old, candidate, problems, "old", "new")) this_ok = false;
        if (!this_ok && problems && json_array_size(problems) > before) {
            char text[64];
            snprintf(text, sizeof text, "{oldSchemaVersion: %d}", version->number);
            json_array_append_new(problems, json_string(text));
            json_t *old_text = json_pack("s++", "{oldSchema: '", avro_schema_text(old), "'}");
            if (old_text) json_array_append_new(problems, old_text);
            snprintf(text, sizeof text, "{compatibility: '%s'}", level_names[level]);
            json_array_append_new(problems, json_string(text));
        }
        ok = ok && this_ok;
    }
    return ok;
}

/* ---- persistence -------------------------------------------------------------------------- */

/* Writes the registry to its data file (write, fsync, rename). Returns 0, or -1 with the reason
 * in error. Called with the lock held. */
static int registry_save(struct registry *registry, char *error, size_t error_size)
{
    if (!registry->data_path) return 0;
    json_t *root = json_object(), *schemas = json_array(), *subjects = json_array();
    json_object_set_new(root, "compatibility", json_string(level_names[registry->level]));
    json_object_set_new(root, "schemas", schemas);
    json_object_set_new(root, "subjects", subjects);
    for (size_t i = 0; i < registry->schema_count; i++)
        json_array_append_new(schemas, json_pack("{s:i,s:s}", "id", registry->schemas[i].id, "schema",
                                                 avro_schema_text(registry->schemas[i].schema)));
    for (size_t i = 0; i < registry->subject_count; i++) {
        const struct subject *subject = &registry->subjects[i];
        json_t *versions = json_array();
        for (size_t k = 0; k < subject->version_count; k++)
            json_array_append_new(versions, json_pack("{s:i,s:i,s:b}", "version", subject->versions[k].number, "id",
                                                      subject->versions[k].schema_id, "deleted",
                                                      subject->versions[k].deleted));
        json_t *entry = json_pack("{s:s,s:o}", "name", subject->name, "versions", versions);
        if (entry && subject->level != LEVEL_UNSET)
            json_object_set_new(entry, "compatibility", json_string(level_names[subject->level]));
        json_array_append_new(subjects, entry);
    }
    char temporary[4096];
    snprintf(temporary, sizeof temporary, "%s.tmp", registry->data_path);
    FILE *file = fopen(temporary, "w");
    int result = -1;
    if (!file) {
        snprintf(error, error_size, "%s: %s", temporary, strerror(errno));
    } else if (json_dumpf(root, file, JSON_INDENT(1)) != 0 || fflush(file) != 0 || fsync(fileno(file)) != 0) {
        snprintf(error, error_size, "%s: cannot write: %s", temporary, strerror(errno));
        fclose(file);
    } else if (fclose(file) != 0 || rename(temporary, registry->data_path) != 0) {
        snprintf(error, error_size, "%s: cannot replace: %s", registry->data_path, strerror(errno));
    } else {
        result = 0;
    }
    json_decref(root);
    return result;
}

/* Loads the data file when it exists. Returns 0, or -1 with what is wrong (and where) in error. */
static int registry_load(struct registry *registry, char *error, size_t error_size)
{
    if (!registry->data_path || access(registry->data_path, F_OK) != 0) return 0;
    json_error_t json_error;
    json_t *root = json_load_file(registry->data_path, 0, &json_error);
    if (!root) {
        snprintf(error, error_size, "%s:%d: %s", registry->data_path, json_error.line, json_error.text);
        return -1;
    }
    int result = -1;
    size_t index;
    json_t *entry;
    enum level level = level_parse(json_string_value(json_object_get(root, "compatibility")));
    if (level != LEVEL_UNSET) registry->level = level;
    json_array_foreach(json_object_get(root, "schemas"), index, entry) {
        const char *text = json_string_value(json_object_get(entry, "schema"));
        char reason[512];
        struct avro_schema *schema = text ? avro_schema_parse(text, strlen(text), reason, sizeof reason) : NULL;
        if (!schema || json_integer_value(json_object_get(entry, "id")) != (json_int_t)index + 1) {
            snprintf(error, error_size, "%s: schema %zu: %s", registry->data_path, index + 1,
                     schema ? "ids must run 1, 2, 3, ..." : text ? reason : "no \"schema\" string");
            avro_schema_free(schema);
            goto done;
        }
        if (!schema_add(registry, schema)) goto done;
    }
    json_array_foreach(json_object_get(root, "subjects"), index, entry) {
        const char *name = json_string_value(json_object_get(entry, "name"));
        struct subject *subject = name ? subject_add(registry, name) : NULL;
        if (!subject) {
            snprintf(error, error_size, "%s: subject %zu has no name", registry->data_path, index + 1);
            goto done;
        }
        enum level subject_level_value = level_parse(json_string_value(json_object_get(entry, "compatibility")));
        subject->level = subject_level_value;
        size_t k;
        json_t *version;
        json_array_foreach(json_object_get(entry, "versions"), k, version) {
            long id = (long)json_integer_value(json_object_get(version, "id"));
            if (!schema_by_id(registry, id)) {
                snprintf(error, error_size, "%s: subject '%s' refers to schema %ld, which is not there",
                         registry->data_path, name, id);
                goto done;
            }
            version_add(subject, (int)json_integer_value(json_object_get(version, "version")), (int)id,
                        json_is_true(json_object_get(version, "deleted")));
        }
    }
    result = 0;
done:
    json_decref(root);
    return result;
}

/* ---- replies ------------------------------------------------------------------------------ */

static void reply_error(struct standin_reply *reply, unsigned status, long code, const char *format, ...)
    __attribute__((format(printf, 4, 5)));

static void reply_error(struct standin_reply *reply, unsigned status, long code, const char *format, ...)
{
    char message[4096];
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(message, sizeof message, format, arguments);
    va_end(arguments);
    reply->status = status;
    sbuf_printf(&reply->body, "{\"error_code\":%ld,\"message\":", code);
    sbuf_json_string(&reply->body, message, strlen(message));
    sbuf_puts(&reply->body, "}");
}

static void reply_json(struct standin_reply *reply, json_t *value)
{
    reply->status = 200;
    sbuf_json(&reply->body, value);
    json_decref(value);
}

static void subject_not_found(struct standin_reply *reply, const char *name)
{
    reply_error(reply, 404, 40401, "Subject '%s' not found.", name);
}

/* A version in a path: a number 1..2^31-1, "latest" or -1. Returns it (-1 for latest), or 0. */
static long version_parse(const char *text)
{
    if (strcmp(text, "latest") == 0) return -1;
    char *end;
    errno = 0;
    long number = strtol(text, &end, 10);
    if (errno || end == text || *end || number == 0 || number < -1 || number > 2147483647L) return 0;
    return number;
}

static void invalid_version(struct standin_reply *reply, const char *text)
{
    reply_error(reply, 422, 42202,
                "The specified version '%s' is not a valid version id. Allowed values are between [1, 2^31-1] and "
                "the string \"latest\"",
                text);
}

/* The body of a register, lookup or compatibility request, parsed. Returns the schema, or NULL
 * with the error reply filled. */
static struct avro_schema *request_schema(const struct standin_request *request, struct standin_reply *reply,
                                          const char *subject)
{
    json_error_t json_error;
    json_t *body = json_loadb(request->body, request->body_length, 0, &json_error);
    if (!json_is_object(body)) {
        if (body)
            reply_error(reply, 422, 422, "the request body must be a JSON object with a \"schema\" string");
        else
            reply_error(reply, 400, 400, "Unrecognized JSON in the request body: %s (line %d, column %d)",
                        json_error.text, json_error.line, json_error.column);
        json_decref(body);
        return NULL;
    }
    const char *type = json_string_value(json_object_get(body, "schemaType"));
    const json_t *text = json_object_get(body, "schema");
    const json_t *references = json_object_get(body, "references");
    struct avro_schema *schema = NULL;
    char reason[1024];
    if (type && strcmp(type, "AVRO") != 0) {
        reply_error(reply, 422, 42201, "Invalid schema type %s: this stand-in knows Avro only", type);
    } else if (json_array_size(references) > 0) {
        reply_error(reply, 422, 42201, "Invalid schema for subject '%s': schema references are not supported here",
                    subject);
    } else if (!json_is_string(text)) {
        reply_error(reply, 422, 42201, "Invalid schema for subject '%s': the body has no \"schema\" string", subject);
    } else if (!(schema = avro_schema_parse(json_string_value(text), json_string_length(text), reason, sizeof reason))) {
        reply_error(reply, 422, 42201, "Invalid schema for subject '%s', details: %s", subject, reason);
    }
    json_decref(body);
    return schema;
}

static json_t *version_json(struct registry *registry, const struct subject *subject, const struct version *version)
{
    return json_pack("{s:s,s:i,s:i,s:s}", "subject", subject->name, "version", version->number, "id",
                     version->schema_id, "schema", avro_schema_text(schema_by_id(registry, version->schema_id)->schema));
}

static void saved(struct registry *registry, struct standin_reply *reply)
{
    char error[8192];
    if (registry_save(registry, error, sizeof error) != 0) {
        sbuf_free(&reply->body);
        reply_error(reply, 500, 50001, "Error in the backend data store: %s", error);
    }
}

/* ---- routes ------------------------------------------------------------------------------- */

static void register_schema(struct registry *registry, const struct standin_request *request,
                            struct standin_reply *reply, const char *name)
{
    struct avro_schema *schema = request_schema(request, reply, name);
    if (!schema) return;
    struct subject *subject = subject_find(registry, name);
    if (subject) {
        for (size_t i = 0; i < subject->version_count; i++) {
            const struct version *version = &subject->versions[i];
            if (!version->deleted &&
                strcmp(avro_schema_text(schema_by_id(registry, version->schema_id)->schema), avro_schema_text(schema)) == 0) {
                reply_json(reply, json_pack("{s:i}", "id", version->schema_id));
                avro_schema_free(schema);
                return;
            }
        }
    }
    enum level level = subject_level(registry, subject);
    json_t *problems = json_array();
    if (!compatible(registry, subject, level, schema, NULL, problems)) {
        /* details reads [a, b] in the registry's text, not as JSON strings */
        struct sbuf joined = {0};
        for (size_t i = 0; i < json_array_size(problems); i++) {
            if (i) sbuf_puts(&joined, ", ");
            sbuf_puts(&joined, json_string_value(json_array_get(problems, i)));
        }
        reply_error(reply, 409, 409,
                    "Schema being registered is incompatible with an earlier schema for subject \"%s\", details: [%s]",
                    name, joined.data ? joined.data : "");
        sbuf_free(&joined);
        json_decref(problems);
        avro_schema_free(schema);
        return;
    }
    json_decref(problems);
    struct stored_schema *stored = schema_by_text(registry, avro_schema_text(schema));
    int id;
    if (stored) {
        id = stored->id;
        avro_schema_free(schema);
    } else if (!(id = schema_add(registry, schema))) {
        reply_error(reply, 500, 50001, "Error in the backend data store: out of memory");
        return;
    }
    if (!subject && !(subject = subject_add(registry, name))) {
        reply_error(reply, 500, 50001, "Error in the backend data store: out of memory");
        return;
    }
    int number = subject->version_count ? subject->versions[subject->version_count - 1].number + 1 : 1;
    if (!version_add(subject, number, id, false)) {
        reply_error(reply, 500, 50001, "Error in the backend data store: out of memory");
        return;
    }
    reply_json(reply, json_pack("{s:i}", "id", id));
    saved(registry, reply);
}

static void lookup_schema(struct registry *registry, const struct standin_request *request,
                          struct standin_reply *reply, const char *name)
{
    struct subject *subject = subject_live(registry, name);
    if (!subject) {
        subject_not_found(reply, name);
        return;
    }
    struct avro_schema *schema = request_schema(request, reply, name);
    if (!schema) return;
    for (size_t i = 0; i < subject->version_count; i++) {
        const struct version *version = &subject->versions[i];
        if (!version->deleted &&
            strcmp(avro_schema_text(schema_by_id(registry, version->schema_id)->schema), avro_schema_text(schema)) == 0) {
            reply_json(reply, version_json(registry, subject, version));
            avro_schema_free(schema);
            return;
        }
    }
    avro_schema_free(schema);
    reply_error(reply, 404, 40403, "Schema not found");
}

static void check_compatibility(struct registry *registry, const struct standin_request *request,
                                struct standin_reply *reply, const char *name, const char *version_text)
{
    struct subject *subject = subject_live(registry, name);
    const struct version *only = NULL;
    if (version_text) {
        long number = version_parse(version_text);
        if (!number) {
            invalid_version(reply, version_text);
            return;
        }
        if (number != -1 && !subject) {
            subject_not_found(reply, name);
            return;
        }
        if (subject) {
            only = number == -1 ? version_latest(subject) : version_find(subject, (int)number, false);
            if (!only) {
                reply_error(reply, 404, 40402, "Version %s not found.", version_text);
                return;
            }
        }
    }
    struct avro_schema *schema = request_schema(request, reply, name);
    if (!schema) return;
    json_t *problems = json_array();
    bool ok = compatible(registry, subject, subject_level(registry, subject), schema, only, problems);
    const char *verbose = standin_query(request, "verbose");
    json_t *answer = json_pack("{s:b}", "is_compatible", ok);
    if (verbose && strcmp(verbose, "true") == 0) json_object_set(answer, "messages", problems);
    json_decref(problems);
    avro_schema_free(schema);
    reply_json(reply, answer);
}

static void delete_subject(struct registry *registry, const struct standin_request *request,
                           struct standin_reply *reply, const char *name)
{
    const char *permanent_text = standin_query(request, "permanent");
    bool permanent = permanent_text && strcmp(permanent_text, "true") == 0;
    struct subject *subject = subject_find(registry, name);
    if (!subject) {
        subject_not_found(reply, name);
        return;
    }
    size_t live = live_versions(subject);
    if (!permanent && !live) {
        reply_error(reply, 404, 40404, "Subject '%s' was soft deleted.Set permanent=true to delete permanently", name);
        return;
    }
    if (permanent && live) {
        reply_error(reply, 404, 40405, "Subject '%s' was not deleted first before being permanently deleted", name);
        return;
    }
    json_t *numbers = json_array();
    for (size_t i = 0; i < subject->version_count; i++) {
        if (permanent || !subject->versions[i].deleted) json_array_append_new(numbers, json_integer(subject->versions[i].number));
        subject->versions[i].deleted = true;
    }
    if (permanent) subject_remove(registry, subject);
    reply_json(reply, numbers);
    saved(registry, reply);
}

static void delete_version(struct registry *registry, const struct standin_request *request,
                           struct standin_reply *reply, const char *name, const char *version_text)
{
    const char *permanent_text = standin_query(request, "permanent");
    bool permanent = permanent_text && strcmp(permanent_text, "true") == 0;
    long number = version_parse(version_text);
    if (!number) {
        invalid_version(reply, version_text);
        return;
    }
    struct subject *subject = subject_find(registry, name);
    if (!subject || (!permanent && !live_versions(subject))) {
        subject_not_found(reply, name);
        return;
    }
    struct version *version = number == -1 ? version_latest(subject) : version_find(subject, (int)number, true);
    if (!version) {
        reply_error(reply, 404, 40402, "Version %s not found.", version_text);
        return;
    }
    if (!permanent && version->deleted) {
        reply_error(reply, 404, 40406, "Subject '%s' Version %d was soft deleted.Set permanent=true to delete permanently",
                    name, version->number);
        return;
    }
    if (permanent && !version->deleted) {
        reply_error(reply, 404, 40407, "Subject '%s' Version %d was not deleted first before being permanently deleted",
                    name, version->number);
        return;
    }
    int deleted_number = version->number;
    if (permanent) {
        size_t index = (size_t)(version - subject->versions);
        memmove(version, version + 1, (subject->version_count - index - 1) * sizeof *version);
        subject->version_count--;
        if (subject->version_count == 0) subject_remove(registry, subject);
    } else {
        version->deleted = true;
    }
    reply_json(reply, json_integer(deleted_number));
    saved(registry, reply);
}

static void get_version(struct registry *registry, struct standin_reply *reply, const char *name,
                        const char *version_text, bool schema_only)
{
    long number = version_parse(version_text);
    if (!number) {
        invalid_version(reply, version_text);
        return;
    }
    struct subject *subject = subject_live(registry, name);
    if (!subject) {
        subject_not_found(reply, name);
        return;
    }
    const struct version *version = number == -1 ? version_latest(subject) : version_find(subject, (int)number, false);
    if (!version) {
        reply_error(reply, 404, 40402, "Version %s not found.", version_text);
        return;
    }
    if (schema_only) {
        reply->status = 200;
        sbuf_puts(&reply->body, avro_schema_text(schema_by_id(registry, version->schema_id)->schema));
        return;
    }
    reply_json(reply, version_json(registry, subject, version));
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(json_string_value(*(json_t *const *)a), json_string_value(*(json_t *const *)b));
}

/* GET /schemas/ids/ID[/subjects|/versions|/schema] */
static void get_schema(struct registry *registry, const struct standin_request *request,
                       struct standin_reply *reply, const char *id_text, const char *what)
{
    char *end;
    long id = strtol(id_text, &end, 10);
    struct stored_schema *stored = *end || end == id_text ? NULL : schema_by_id(registry, id);
    if (!stored) {
        reply_error(reply, 404, 40403, "Schema %s not found", id_text);
        return;
    }
    if (!what) {
        reply_json(reply, json_pack("{s:s}", "schema", avro_schema_text(stored->schema)));
        return;
    }
    if (strcmp(what, "schema") == 0) {
        reply->status = 200;
        sbuf_puts(&reply->body, avro_schema_text(stored->schema));
        return;
    }
    const char *deleted_text = standin_query(request, "deleted");
    bool with_deleted = deleted_text && strcmp(deleted_text, "true") == 0;
    bool subjects_only = strcmp(what, "subjects") == 0;
    if (!subjects_only && strcmp(what, "versions") != 0) {
        reply_error(reply, 404, 404, "HTTP 404 Not Found");
        return;
    }
    json_t *list = json_array();
    for (size_t i = 0; i < registry->subject_count; i++) {
        const struct subject *subject = &registry->subjects[i];
        bool listed = false;
        for (size_t k = 0; k < subject->version_count; k++) {
            const struct version *version = &subject->versions[k];
            if (version->schema_id != id || (version->deleted && !with_deleted)) continue;
            if (subjects_only && !listed) json_array_append_new(list, json_string(subject->name));
            if (!subjects_only)
                json_array_append_new(list, json_pack("{s:s,s:i}", "subject", subject->name, "version", version->number));
            listed = true;
        }
    }
    if (subjects_only) {
        size_t count = json_array_size(list);
        json_t **names = calloc(count + 1, sizeof *names);
        for (size_t i = 0; names && i < count; i++) names[i] = json_incref(json_array_get(list, i));
        if (names) {
            qsort(names, count, sizeof *names, compare_names);
            json_array_clear(list);
            for (size_t i = 0; i < count; i++) json_array_append_new(list, names[i]);
        }
        free(names);
    }
    reply_json(reply, list);
}

static void list_subjects(struct registry *registry, const struct standin_request *request, struct standin_reply *reply)
{
    const char *deleted_text = standin_query(request, "deleted");
    bool with_deleted = deleted_text && strcmp(deleted_text, "true") == 0;
    size_t count = 0;
    json_t **names = calloc(registry->subject_count + 1, sizeof *names);
    for (size_t i = 0; names && i < registry->subject_count; i++)
        if (with_deleted || live_versions(&registry->subjects[i])) names[count++] = json_string(registry->subjects[i].name);
    if (names) qsort(names, count, sizeof *names, compare_names);
    json_t *list = json_array();
    for (size_t i = 0; i < count; i++) json_array_append_new(list, names[i]);
    free(names);
    reply_json(reply, list);
}

static void list_versions(struct registry *registry, const struct standin_request *request,
                          struct standin_reply *reply, const char *name)
{
    const char *deleted_text = standin_query(request, "deleted");
    bool with_deleted = deleted_text && strcmp(deleted_text, "true") == 0;
    struct subject *subject = with_deleted ? subject_find(registry, name) : subject_live(registry, name);
    if (!subject) {
        subject_not_found(reply, name);
        return;
    }
    json_t *list = json_array();
    for (size_t i = 0; i < subject->version_count; i++)
        if (with_deleted || !subject->versions[i].deleted) json_array_append_new(list, json_integer(subject->versions[i].number));
    reply_json(reply, list);
}

static void config_route(struct registry *registry, const struct standin_request *request,
                         struct standin_reply *reply, const char *name)
{
    struct subject *subject = name ? subject_find(registry, name) : NULL;
    if (strcmp(request->method, "GET") == 0) {
        if (!name) {
            reply_json(reply, json_pack("{s:s}", "compatibilityLevel", level_names[registry->level]));
            return;
        }
        const char *default_text = standin_query(request, "defaultToGlobal");
        bool to_global = default_text && strcmp(default_text, "true") == 0;
        if (!subject || subject->level == LEVEL_UNSET) {
            if (to_global) {
                reply_json(reply, json_pack("{s:s}", "compatibilityLevel", level_names[registry->level]));
                return;
            }
            reply_error(reply, 404, 40408, "Subject '%s' does not have subject-level compatibility configured", name);
            return;
        }
        reply_json(reply, json_pack("{s:s}", "compatibilityLevel", level_names[subject->level]));
        return;
    }
    if (strcmp(request->method, "DELETE") == 0) {
        if (!name) {
            enum level previous = registry->level;
            registry->level = LEVEL_BACKWARD;
            reply_json(reply, json_pack("{s:s}", "compatibilityLevel", level_names[previous]));
        } else if (!subject || subject->level == LEVEL_UNSET) {
            reply_error(reply, 404, 40408, "Subject '%s' does not have subject-level compatibility configured", name);
            return;
        } else {
            enum level previous = subject->level;
            subject->level = LEVEL_UNSET;
            reply_json(reply, json_pack("{s:s}", "compatibilityLevel", level_names[previous]));
        }
        saved(registry, reply);
        return;
    }
    json_t *body = json_loadb(request->body, request->body_length, 0, NULL);
    enum level level = level_parse(json_string_value(json_object_get(body, "compatibility")));
    json_decref(body);
    if (level == LEVEL_UNSET) {
        reply_error(reply, 422, 42203,
                    "Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, "
                    "forward_transitive, and full_transitive");
        return;
    }
    if (!name) {
        registry->level = level;
    } else {
        if (!subject && !(subject = subject_add(registry, name))) {
            reply_error(reply, 500, 50001, "Error in the backend data store: out of memory");
            return;
        }
        subject->level = level;
    }
    reply_json(reply, json_pack("{s:s}", "compatibility", level_names[level]));
    saved(registry, reply);
}

/* ---- faults ------------------------------------------------------------------------------- */

static json_t *faults_json(const struct registry *registry)
{
    const struct faults *faults = &registry->faults;
    return json_pack("{s:i,s:i,s:i,s:i,s:i,s:i,s:I,s:I,s:I}", "status", (int)faults->status, "error_code",
                     (int)faults->error_code, "count", (int)faults->count, "every", (int)faults->every, "latency_ms",
                     (int)faults->latency_ms, "close", (int)faults->close_count, "requests",
                     (json_int_t)registry->requests, "faults_injected", (json_int_t)registry->faults_injected,
                     "closes_injected", (json_int_t)registry->closes_injected);
}

static long default_error_code(long status)
{
    return status == 500 ? 50001 : status == 504 ? 50002 : status;
}

static void fault_route(struct registry *registry, const struct standin_request *request, struct standin_reply *reply)
{
    struct faults *faults = &registry->faults;
    if (strcmp(request->method, "DELETE") == 0) {
        *faults = (struct faults){.status = 500, .error_code = 50001};
    } else if (strcmp(request->method, "POST") == 0) {
        json_error_t json_error;
        json_t *body = json_loadb(request->body, request->body_length, 0, &json_error);
        if (!json_is_object(body)) {
            json_decref(body);
            reply_error(reply, 400, 400, "/_fault: the body must be a JSON object such as {\"status\":500,\"count\":3}");
            return;
        }
        static const char *const known[] = {"status", "error_code", "count", "every", "latency_ms", "close", NULL};
        const char *key;
        json_t *value;
        json_object_foreach(body, key, value) {
            bool ok = false;
            for (const char *const *k = known; *k; k++) ok = ok || strcmp(*k, key) == 0;
            if (!ok || !json_is_integer(value) || json_integer_value(value) < 0) {
                reply_error(reply, 400, 400, "/_fault: '%s' is %s", key,
                            ok ? "not a non-negative integer" : "unknown (status, error_code, count, every, latency_ms, close)");
                json_decref(body);
                return;
            }
        }
        json_t *status = json_object_get(body, "status");
        if (status) {
            if (json_integer_value(status) < 400 || json_integer_value(status) > 599) {
                reply_error(reply, 400, 400, "/_fault: status must be 400..599");
                json_decref(body);
                return;
            }
            faults->status = (long)json_integer_value(status);
            faults->error_code = default_error_code(faults->status);
        }
        if (json_object_get(body, "error_code")) faults->error_code = (long)json_integer_value(json_object_get(body, "error_code"));
        if (json_object_get(body, "count")) faults->count = (long)json_integer_value(json_object_get(body, "count"));
        if (json_object_get(body, "every")) faults->every = (long)json_integer_value(json_object_get(body, "every"));
        if (json_object_get(body, "latency_ms")) faults->latency_ms = (long)json_integer_value(json_object_get(body, "latency_ms"));
        if (json_object_get(body, "close")) faults->close_count = (long)json_integer_value(json_object_get(body, "close"));
        json_decref(body);
    } else if (strcmp(request->method, "GET") != 0) {
        reply_error(reply, 405, 405, "HTTP 405 Method Not Allowed");
        return;
    }
    reply_json(reply, faults_json(registry));
}

/* Decides the injected fault of one request (lock held). Returns true when the reply is decided. */
static bool fault_apply(struct registry *registry, struct standin_reply *reply)
{
    struct faults *faults = &registry->faults;
    unsigned long long serial = ++registry->requests;
    reply->delay_ms = (uint64_t)faults->latency_ms;
    if (faults->close_count > 0) {
        faults->close_count--;
        registry->closes_injected++;
        reply->status = 500;  /* never sent */
        reply->close = true;
        return true;
    }
    bool fail = false;
    if (faults->count > 0) {
        faults->count--;
        fail = true;
    } else if (faults->every > 0 && serial % (unsigned long long)faults->every == 0) {
        fail = true;
    }
    if (!fail) return false;
    registry->faults_injected++;
    const char *message = faults->error_code == 50001 ? "Error in the backend data store"
                          : faults->error_code == 50002 ? "Operation timed out"
                                                        : "Injected failure";
    reply_error(reply, (unsigned)faults->status, faults->error_code, "%s (fault injected by schema-registry-dev)", message);
    return true;
}

static bool content_type_ok(const struct standin_request *request)
{
    const char *type = standin_header(request, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (!type || request->body_length == 0) return true;
    static const char *const accepted[] = {"application/vnd.schemaregistry.v1+json", "application/vnd.schemaregistry+json",
                                           "application/json", "application/octet-stream", NULL};
    return standin_media_type_in(type, accepted);
}

static void route(struct registry *registry, const struct standin_request *request, struct standin_reply *reply)
{
    char storage[4096];
    char *s[MAX_PATH_SEGMENTS] = {0};
    int n = standin_split_path(request->path, storage, sizeof storage, s, MAX_PATH_SEGMENTS);
    const char *method = request->method;
    bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0, put = strcmp(method, "PUT") == 0,
         delete = strcmp(method, "DELETE") == 0;
    if (n == 0 && get) {
        reply_json(reply, json_object());
    } else if (n >= 1 && strcmp(s[0], "schemas") == 0) {
        if (n == 2 && get && strcmp(s[1], "types") == 0) reply_json(reply, json_pack("[s]", "AVRO"));
        else if ((n == 3 || n == 4) && get && strcmp(s[1], "ids") == 0) get_schema(registry, request, reply, s[2], n == 4 ? s[3] : NULL);
        else reply_error(reply, 404, 404, "HTTP 404 Not Found");
    } else if (n >= 1 && strcmp(s[0], "subjects") == 0) {
        if (n == 1 && get) list_subjects(registry, request, reply);
        else if (n == 2 && post) lookup_schema(registry, request, reply, s[1]);
        else if (n == 2 && delete) delete_subject(registry, request, reply, s[1]);
        else if (n == 3 && strcmp(s[2], "versions") == 0 && get) list_versions(registry, request, reply, s[1]);
        else if (n == 3 && strcmp(s[2], "versions") == 0 && post) register_schema(registry, request, reply, s[1]);
        else if (n == 4 && strcmp(s[2], "versions") == 0 && get) get_version(registry, reply, s[1], s[3], false);
        else if (n == 4 && strcmp(s[2], "versions") == 0 && delete) delete_version(registry, request, reply, s[1], s[3]);
        else if (n == 5 && strcmp(s[2], "versions") == 0 && strcmp(s[4], "schema") == 0 && get)
            get_version(registry, reply, s[1], s[3], true);
        else reply_error(reply, n <= 5 ? 405 : 404, n <= 5 ? 405 : 404, n <= 5 ? "HTTP 405 Method Not Allowed" : "HTTP 404 Not Found");
    } else if (n >= 1 && strcmp(s[0], "config") == 0 && n <= 2 && (get || put || delete)) {
        config_route(registry, request, reply, n == 2 ? s[1] : NULL);
    } else if (n >= 4 && strcmp(s[0], "compatibility") == 0 && strcmp(s[1], "subjects") == 0 &&
               strcmp(s[3], "versions") == 0 && n <= 5 && post) {
        check_compatibility(registry, request, reply, s[2], n == 5 ? s[4] : NULL);
    } else if (n == 1 && strcmp(s[0], "mode") == 0 && get) {
        reply_json(reply, json_pack("{s:s}", "mode", "READWRITE"));
    } else {
        reply_error(reply, 404, 404, "HTTP 404 Not Found");
    }
}

static void handle(void *context, const struct standin_request *request, struct standin_reply *reply)
{
    struct registry *registry = context;
    if (request->body_too_large) {
        reply_error(reply, 413, 413, "the request body is larger than %u bytes", MAX_BODY_BYTES);
        return;
    }
    pthread_mutex_lock(&registry->lock);
    if (strcmp(request->path, "/_fault") == 0) {
        fault_route(registry, request, reply);
    } else if (registry->authorization &&
               (!standin_header(request, MHD_HTTP_HEADER_AUTHORIZATION) ||
                strcmp(standin_header(request, MHD_HTTP_HEADER_AUTHORIZATION), registry->authorization) != 0)) {
        reply_error(reply, 401, 401, "Unauthorized");
        standin_reply_header(reply, "WWW-Authenticate", "Basic realm=\"SchemaRegistry\"");
    } else if (!fault_apply(registry, reply)) {
        if (!content_type_ok(request))
            reply_error(reply, 415, 415, "HTTP 415 Unsupported Media Type: send %s", CONTENT_TYPE);
        else
            route(registry, request, reply);
    }
    pthread_mutex_unlock(&registry->lock);
}

int main(int argc, char **argv)
{
    char error[1024];
    if (standin_options_parse(options, OPTION_COUNT, argc, argv, error, sizeof error) != 0) {
        fprintf(stderr, "schema-registry-dev: %s\n", error);
        return 2;
    }
    if (config.help) {
        print_help();
        return 0;
    }
    if (config.port < 0) {
        fprintf(stderr, "schema-registry-dev: --port is required (0 picks a free port; see --help)\n");
        return 2;
    }
    struct registry registry = {.lock = PTHREAD_MUTEX_INITIALIZER, .data_path = config.data_path};
    registry.level = level_parse(config.compatibility);
    if (registry.level == LEVEL_UNSET) {
        fprintf(stderr, "schema-registry-dev: --compatibility: '%s' is not NONE, BACKWARD, FORWARD, FULL or "
                        "one of them with _TRANSITIVE\n", config.compatibility);
        return 2;
    }
    if (config.basic && (!strchr(config.basic, ':') || !(registry.authorization = standin_basic_authorization(config.basic)))) {
        fprintf(stderr, "schema-registry-dev: --basic: expected USER:PASSWORD\n");
        return 2;
    }
    registry.faults = (struct faults){.status = config.fail_status, .error_code = default_error_code(config.fail_status),
                                      .count = config.fail_next, .every = config.fail_every,
                                      .latency_ms = config.latency_ms, .close_count = config.close_next};
    if (registry_load(&registry, error, sizeof error) != 0) {
        fprintf(stderr, "schema-registry-dev: --data: %s\n", error);
        return 1;
    }
    struct standin_server server = {
        .name = "schema-registry-dev", .port = config.port, .threads = config.threads,
        .max_body_bytes = MAX_BODY_BYTES, .content_type = CONTENT_TYPE, .verbose = config.verbose,
        .context = &registry, .handle = handle,
    };
    int status = standin_serve(&server);
    for (size_t i = 0; i < registry.schema_count; i++) avro_schema_free(registry.schemas[i].schema);
    free(registry.schemas);
    for (size_t i = 0; i < registry.subject_count; i++) {
        free(registry.subjects[i].name);
        free(registry.subjects[i].versions);
    }
    free(registry.subjects);
    free(registry.authorization);
    return status;
}
