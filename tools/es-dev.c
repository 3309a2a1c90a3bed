/* es-dev.c: an Elasticsearch 8 stand-in (bin/es-dev) for runnel's tests, demo and benchmarks:
 * the REST API a sink and its tests use (_bulk with per-item results in request order, index
 * create/exists/delete with mappings, _doc, _count, _search with term queries and terms
 * aggregations, _refresh), Elasticsearch's error shapes, basic and ApiKey auth, and injected
 * faults (per-item 429/503, whole-request 429/503, latency, closed connections).
 *
 * The one thing to know: documents are in memory and every write is visible at once (as if each
 * request had refresh=true); _score is always 1.0 and hits come in index order. With --data FILE
 * every change (an index made or deleted, a document stored or deleted) is appended to FILE as a
 * JSON line before it is answered, and read back at start, so a killed and restarted es-dev (an
 * outage test) still holds what it acknowledged. A bulk request is
 * parsed outside the store lock and applied under it, so items are applied in request order. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "es_index.h"
#include "standin.h"

#define VERSION_NUMBER "8.7.1"  /* before 8.8, whose mapping errors are document_parsing_exception */
#define MAX_INDICES 4096
#define MAX_RESULT_WINDOW 10000
#define MAX_PATH_SEGMENTS 6

/* ---- configuration ------------------------------------------------------------------------ */

struct config {
    long port, threads;
    long item_status, item_every, item_next;
    long request_status, request_every, request_next;
    long latency_ms, close_every, close_next;
    const char *basic, *api_key, *cluster_name, *data, *max_content_length;
    unsigned long long max_content_bytes; /* max_content_length read */
    bool verbose, help;
};

static struct config config = {.port = -1, .threads = 2, .max_content_length = "100mb", .item_status = 429,
                               .request_status = 429, .cluster_name = "es-dev"};

static const struct standin_option options[] = {
    {"--port", STANDIN_INTEGER, &config.port, 0, 65535,
     "TCP port on 127.0.0.1 (required); 0 picks a free one. Prints 'listening on URL' first."},
    {"--basic", STANDIN_TEXT, &config.basic, 0, 0,
     "USER:PASSWORD: accept 'Authorization: Basic ...' with these credentials (401 otherwise)"},
    {"--api-key", STANDIN_TEXT, &config.api_key, 0, 0,
     "KEY: accept 'Authorization: ApiKey KEY' (the base64 of id:key a real cluster hands out)"},
    {"--item-fault-status", STANDIN_INTEGER, &config.item_status, 429, 503,
     "status of injected item failures: 429 (es_rejected_execution_exception) or 503"},
    {"--item-fault-every", STANDIN_INTEGER, &config.item_every, 0, 100000000,
     "fail every Nth bulk item (counted over all bulk requests from 1, again from each POST /_fault); 0 = off"},
    {"--item-fault-next", STANDIN_INTEGER, &config.item_next, 0, 100000000, "fail the next N bulk items"},
    {"--reject-status", STANDIN_INTEGER, &config.request_status, 429, 504,
     "status of whole-request failures of _bulk: 429, 500, 502, 503 or 504"},
    {"--reject-every", STANDIN_INTEGER, &config.request_every, 0, 100000000,
     "answer every Nth _bulk request with --reject-status; 0 = off"},
    {"--reject-next", STANDIN_INTEGER, &config.request_next, 0, 100000000,
     "answer the next N _bulk requests with --reject-status"},
    {"--latency-ms", STANDIN_INTEGER, &config.latency_ms, 0, 600000, "delay every _bulk answer by N ms"},
    {"--close-every", STANDIN_INTEGER, &config.close_every, 0, 100000000,
     "close the connection without an answer on every Nth _bulk request; 0 = off"},
    {"--close-next", STANDIN_INTEGER, &config.close_next, 0, 100000000,
     "close the connection without an answer on the next N _bulk requests"},
    {"--max-content-length", STANDIN_TEXT, &config.max_content_length, 0, 0,
     "SIZE (100mb; b, kb, mb, gb): the largest request body, as Elasticsearch's http.max_content_length; a larger "
     "one is answered 413 with an empty body, unread, and the connection closed, as Elasticsearch does"},
    {"--data", STANDIN_TEXT, &config.data, 0, 0,
     "FILE: keep every change in FILE (appended, one JSON line each) and load it at start, so a restart keeps the "
     "documents"},
    {"--cluster-name", STANDIN_TEXT, &config.cluster_name, 0, 0, "the cluster_name GET / shows"},
    {"--threads", STANDIN_INTEGER, &config.threads, 1, 64, "serving threads"},
    {"--verbose", STANDIN_FLAG, &config.verbose, 0, 0, "log one line per request to stderr"},
    {"--help", STANDIN_FLAG, &config.help, 0, 0, "print this help and exit"},
};
#define OPTION_COUNT (sizeof options / sizeof options[0])

/* "100mb", "64kb", "1gb", "1000b" or "1000" (bytes), as Elasticsearch writes byte sizes; 0 or -1. */
static int parse_size(const char *text, unsigned long long *bytes)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(text, &end, 10);
    if (end == text || errno || *text == '-') return -1;
    unsigned long long unit = 1;
    if (!strcasecmp(end, "kb")) unit = 1024;
    else if (!strcasecmp(end, "mb")) unit = 1024 * 1024;
    else if (!strcasecmp(end, "gb")) unit = 1024ULL * 1024 * 1024;
    else if (*end && strcasecmp(end, "b")) return -1;
    if (n == 0 || n > (2ULL << 30) / unit) return -1;
    *bytes = n * unit;
    return 0;
}

static void print_help(void)
{
    printf("usage: es-dev --port P [options]\n"
           "An Elasticsearch " VERSION_NUMBER " stand-in on 127.0.0.1, documents in memory.\n\n"
           "Endpoints: GET|HEAD / ; GET /_cluster/health ; PUT|HEAD|GET|DELETE /INDEX ; GET /INDEX/_mapping ;\n"
           "POST|PUT /_bulk, /INDEX/_bulk (NDJSON ending with a newline; index, create, update, delete) ;\n"
           "GET|PUT|POST|DELETE /INDEX/_doc/ID, POST /INDEX/_doc, PUT|POST /INDEX/_create/ID,\n"
           "POST /INDEX/_update/ID ; GET|POST /INDEX/_count and /INDEX/_search (query: match_all,\n"
           "match_none, term, terms, match, exists, range, bool; aggs: terms, avg, sum, min, max,\n"
           "value_count; size, from, track_total_hits) ; POST|GET /INDEX/_refresh. INDEX may be a\n"
           "comma list with * wildcards or _all where Elasticsearch allows one. Query parameters:\n"
           "filter_path (with * and **), pretty, refresh (accepted; writes are visible at once).\n\n"
           "Faults apply to _bulk requests: POST /_fault {\"item_status\":429, \"item_every\":N,\n"
           "\"item_next\":N, \"request_status\":503, \"request_every\":N, \"request_next\":N,\n"
           "\"latency_ms\":N, \"close_every\":N, \"close_next\":N} (each member optional) changes\n"
           "them, GET /_fault shows them and the counters, DELETE /_fault clears them.\n"
           "/_fault needs no credentials.\n\nOptions (--name VALUE or --name=VALUE):\n");
    standin_options_help(stdout, options, OPTION_COUNT);
}

/* ---- the store ---------------------------------------------------------------------------- */

struct faults {
    long item_status, item_every, item_next;
    long request_status, request_every, request_next;
    long latency_ms, close_every, close_next;
};

struct counters {
    unsigned long long bulk_requests, items, items_failed, items_faulted, requests_rejected, connections_closed;
};

struct store {
    pthread_mutex_t lock;
    unsigned long long items_since_faults, requests_since_faults;  /* the "every N" counters, reset by /_fault */
    struct es_index *indices[MAX_INDICES];
    size_t index_count;
    struct faults faults;
    struct counters counters;
    char *basic_authorization, *api_key_authorization;
    char cluster_uuid[23];
    unsigned long long id_serial;
};

static struct es_index *index_find(struct store *store, const char *name)
{
    for (size_t i = 0; i < store->index_count; i++)
        if (strcmp(es_index_name(store->indices[i]), name) == 0) return store->indices[i];
    return NULL;
}

static int compare_indices(const void *a, const void *b)
{
    return strcmp(es_index_name(*(struct es_index *const *)a), es_index_name(*(struct es_index *const *)b));
}

/* Adds index; false when MAX_INDICES are there. Keeps the list sorted by name. */
static bool index_add(struct store *store, struct es_index *index)
{
    if (store->index_count == MAX_INDICES) return false;
    store->indices[store->index_count++] = index;
    qsort(store->indices, store->index_count, sizeof store->indices[0], compare_indices);
    return true;
}

static void index_remove(struct store *store, struct es_index *index)
{
    for (size_t i = 0; i < store->index_count; i++) {
        if (store->indices[i] != index) continue;
        memmove(&store->indices[i], &store->indices[i + 1], (store->index_count - i - 1) * sizeof store->indices[0]);
        store->index_count--;
        es_index_free(index);
        return;
    }
}

/* ---- the journal (--data) ------------------------------------------------------------------ */

static FILE *journal;      /* NULL without --data; written under the store lock */
static bool replaying;     /* loading the journal: nothing is written back */

/* Appends one change; flushed at once, so a killed es-dev loses nothing it answered. */
static void journal_write(json_t *change)
{
    if (journal && !replaying) {
        char *line = json_dumps(change, JSON_COMPACT);
        if (!line || fprintf(journal, "%s\n", line) < 0 || fflush(journal) != 0) {
            fprintf(stderr, "es-dev: --data: cannot write: %s\n", strerror(errno));
            exit(1);
        }
        free(line);
    }
    json_decref(change);
}

static void journal_index(const char *name, const json_t *mappings)
{
    if (journal && !replaying)
        journal_write(mappings ? json_pack("{s:s,s:O}", "create", name, "mappings", (json_t *)mappings)
                               : json_pack("{s:s}", "create", name));
}

static void journal_drop(const char *name)
{
    if (journal && !replaying) journal_write(json_pack("{s:s}", "drop", name));
}

static void journal_put(const struct es_index *index, const char *id, const char *source, size_t length)
{
    if (journal && !replaying)
        journal_write(json_pack("{s:s,s:s,s:s%}", "put", es_index_name(index), "id", id, "source", source, length));
}

static void journal_delete(const struct es_index *index, const char *id)
{
    if (journal && !replaying) journal_write(json_pack("{s:s,s:s}", "delete", es_index_name(index), "id", id));
}

/* Loads the journal at path into store (before serving); 0, or -1 with a message on stderr. */
static int journal_load(struct store *store, const char *path)
{
    FILE *in = fopen(path, "r");
    if (!in) return errno == ENOENT ? 0 : (fprintf(stderr, "es-dev: --data %s: %s\n", path, strerror(errno)), -1);
    char *line = NULL;
    size_t cap = 0;
    long number = 0;
    int rc = 0;
    replaying = true;
    while (rc == 0 && getline(&line, &cap, in) > 0) {
        number++;
        json_error_t json_error;
        json_t *change = json_loads(line, 0, &json_error);
        const char *name, *id = json_string_value(json_object_get(change, "id"));
        json_t *error = NULL;
        if ((name = json_string_value(json_object_get(change, "create")))) {
            const json_t *mappings = json_object_get(change, "mappings");
            struct es_index *index = es_index_new(name, json_is_object(mappings) ? mappings : NULL, &error);
            if (!index || !index_add(store, index)) es_index_free(index), rc = -1;
        } else if ((name = json_string_value(json_object_get(change, "drop")))) {
            struct es_index *index = index_find(store, name);
            if (index) index_remove(store, index);
        } else if ((name = json_string_value(json_object_get(change, "put"))) && id) {
            struct es_index *index = index_find(store, name);
            const json_t *source = json_object_get(change, "source");
            json_t *document = source ? json_loadb(json_string_value(source), json_string_length(source), 0, NULL) : NULL;
            if (!index || !document || !es_index_map(index, id, document, &error) ||
                !es_index_put(index, id, json_string_value(source), json_string_length(source)))
                rc = -1;
            json_decref(document);
        } else if ((name = json_string_value(json_object_get(change, "delete"))) && id) {
            struct es_index *index = index_find(store, name);
            long long seq_no;
            if (!index) rc = -1;
            else es_index_delete(index, id, &seq_no);
        } else {
            rc = -1;
        }
        if (rc) fprintf(stderr, "es-dev: --data %s:%ld: not a change es-dev wrote%s%s\n", path, number,
                        change ? "" : ": ", change ? "" : json_error.text);
        json_decref(error);
        json_decref(change);
    }
    replaying = false;
    free(line);
    fclose(in);
    return rc;
}

/* ---- replies ------------------------------------------------------------------------------ */

/* {"error": {"root_cause": [...], ...error}, "status": N}; takes error. */
static void reply_error(struct standin_reply *reply, unsigned status, json_t *error)
{
    json_t *root_cause = json_deep_copy(error);
    json_object_del(root_cause, "caused_by");
    json_t *envelope = json_object();
    json_t *inner = json_object();
    json_object_set_new(inner, "root_cause", json_pack("[o]", root_cause));
    json_object_update(inner, error);
    json_object_set_new(envelope, "error", inner);
    json_object_set_new(envelope, "status", json_integer(status));
    json_decref(error);
    reply->status = status;
    sbuf_free(&reply->body);
    sbuf_json(&reply->body, envelope);
    json_decref(envelope);
}

static void reply_simple_error(struct standin_reply *reply, unsigned status, const char *type, const char *format, ...)
    __attribute__((format(printf, 4, 5)));

static void reply_simple_error(struct standin_reply *reply, unsigned status, const char *type, const char *format, ...)
{
    char reason[2048];
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(reason, sizeof reason, format, arguments);
    va_end(arguments);
    reply_error(reply, status, es_error_object(type, reason, NULL, NULL));
}

static json_t *index_not_found_error(const char *name)
{
    char reason[600];
    snprintf(reason, sizeof reason, "no such index [%.500s]", name);
    json_t *error = es_error_object("index_not_found_exception", reason, NULL, NULL);
    json_object_set_new(error, "resource.type", json_string("index_or_alias"));
    json_object_set_new(error, "resource.id", json_string(name));
    json_object_set_new(error, "index_uuid", json_string("_na_"));
    json_object_set_new(error, "index", json_string(name));
    return error;
}

static void reply_json(struct standin_reply *reply, unsigned status, json_t *value)
{
    reply->status = status;
    sbuf_json(&reply->body, value);
    json_decref(value);
}

static const char shards_json[] = "{\"total\":2,\"successful\":1,\"failed\":0}";

/* ---- filter_path and pretty ----------------------------------------------------------------- */

#define MAX_FILTERS 16
#define MAX_FILTER_SEGMENTS 16

struct filter {
    char *segments[MAX_FILTER_SEGMENTS];
    int count;
};

struct filter_state {
    const struct filter *filter;
    int position;
};

static bool glob_match(const char *pattern, const char *text)
{
    if (!*pattern) return !*text;
    if (*pattern == '*') {
        for (const char *t = text;; t++) {
            if (glob_match(pattern + 1, t)) return true;
            if (!*t) return false;
        }
    }
    return *text == *pattern && glob_match(pattern + 1, text + 1);
}

/* Adds the zero-level expansions of "**" to states; returns the new count. */
static size_t filter_close(struct filter_state *states, size_t count, size_t capacity)
{
    for (size_t i = 0; i < count && count < capacity; i++) {
        const struct filter_state *state = &states[i];
        if (state->position < state->filter->count && strcmp(state->filter->segments[state->position], "**") == 0)
            states[count++] = (struct filter_state){state->filter, state->position + 1};
    }
    return count;
}

static json_t *filter_apply(const json_t *node, const struct filter_state *given, size_t given_count)
{
    struct filter_state states[64];
    size_t count = given_count < 32 ? given_count : 32;
    memcpy(states, given, count * sizeof *states);
    count = filter_close(states, count, 64);
    for (size_t i = 0; i < count; i++)
        if (states[i].position == states[i].filter->count) return json_incref((json_t *)node);
    if (json_is_array(node)) {
        json_t *out = json_array();
        size_t index;
        json_t *item;
        json_array_foreach(node, index, item) {
            json_t *kept = filter_apply(item, states, count);
            if (kept) json_array_append_new(out, kept);
        }
        if (json_array_size(out) == 0) {
            json_decref(out);
            return NULL;
        }
        return out;
    }
    if (!json_is_object(node)) return NULL;
    json_t *out = json_object();
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)node, key, value) {
        struct filter_state next[64];
        size_t next_count = 0;
        for (size_t i = 0; i < count && next_count < 32; i++) {
            const char *segment = states[i].filter->segments[states[i].position];
            if (strcmp(segment, "**") == 0) next[next_count++] = states[i];
            else if (glob_match(segment, key)) next[next_count++] = (struct filter_state){states[i].filter, states[i].position + 1};
        }
        if (!next_count) continue;
        json_t *kept = filter_apply(value, next, next_count);
        if (kept) json_object_set_new(out, key, kept);
    }
    if (json_object_size(out) == 0) {
        json_decref(out);
        return NULL;
    }
    return out;
}

/* Rewrites a 2xx JSON reply for ?filter_path= and ?pretty. */
static void reply_postprocess(const struct standin_request *request, struct standin_reply *reply)
{
    const char *filter_path = standin_query(request, "filter_path");
    bool pretty = standin_query_flag(request, "pretty");
    if ((!filter_path && !pretty) || reply->status >= 300 || reply->body.length == 0) return;
    json_t *value = json_loadb(reply->body.data, reply->body.length, JSON_DECODE_ANY, NULL);
    if (!value) return;
    if (filter_path && *filter_path) {
        char copy[1024];
        snprintf(copy, sizeof copy, "%s", filter_path);
        struct filter filters[MAX_FILTERS];
        struct filter_state states[MAX_FILTERS];
        size_t filter_count = 0;
        char *save = NULL;
        for (char *part = strtok_r(copy, ",", &save); part && filter_count < MAX_FILTERS; part = strtok_r(NULL, ",", &save)) {
            struct filter *filter = &filters[filter_count];
            filter->count = 0;
            char *segment_save = NULL;
            for (char *segment = strtok_r(part, ".", &segment_save); segment && filter->count < MAX_FILTER_SEGMENTS;
                 segment = strtok_r(NULL, ".", &segment_save))
                filter->segments[filter->count++] = segment;
            if (filter->count) {
                states[filter_count] = (struct filter_state){filter, 0};
                filter_count++;
            }
        }
        json_t *filtered = filter_apply(value, states, filter_count);
        json_decref(value);
        value = filtered ? filtered : json_object();
    }
    sbuf_free(&reply->body);
    char *text = json_dumps(value, JSON_ENCODE_ANY | JSON_PRESERVE_ORDER | (pretty ? JSON_INDENT(2) : JSON_COMPACT));
    if (text) {
        sbuf_puts(&reply->body, text);
        if (pretty) sbuf_puts(&reply->body, "\n");
    } else {
        reply->body.failed = true;
    }
    free(text);
    json_decref(value);
}

/* ---- index expressions -------------------------------------------------------------------- */

/* Resolves "a,b*,_all" to indices (sorted, no duplicates). A concrete name that is missing is an
 * error (index_not_found_exception in *error) unless ignore_unavailable; wildcards may match none. */
static size_t indices_resolve(struct store *store, const char *expression, bool ignore_unavailable,
                              struct es_index **out, json_t **error)
{
    *error = NULL;
    size_t count = 0;
    char copy[2048];
    snprintf(copy, sizeof copy, "%s", expression);
    char *save = NULL;
    for (char *part = strtok_r(copy, ",", &save); part; part = strtok_r(NULL, ",", &save)) {
        bool wildcard = strchr(part, '*') || strcmp(part, "_all") == 0;
        bool any = false;
        for (size_t i = 0; i < store->index_count; i++) {
            const char *name = es_index_name(store->indices[i]);
            if (wildcard ? (strcmp(part, "_all") == 0 || glob_match(part, name)) : strcmp(part, name) == 0) {
                any = true;
                bool seen = false;
                for (size_t k = 0; k < count && !seen; k++) seen = out[k] == store->indices[i];
                if (!seen && count < MAX_INDICES) out[count++] = store->indices[i];
            }
        }
        if (!any && !wildcard && !ignore_unavailable) {
            *error = index_not_found_error(part);
            return 0;
        }
    }
    qsort(out, count, sizeof *out, compare_indices);
    return count;
}

/* ---- documents: one write of a bulk item or a single-document request ------------------------ */

enum action { ACTION_INDEX, ACTION_CREATE, ACTION_UPDATE, ACTION_DELETE };
static const char *const action_names[] = {"index", "create", "update", "delete"};

struct item {
    enum action action;
    char *index_name, *id;
    const char *source;    /* into the request body; NULL for delete */
    size_t source_length;
    json_t *parsed;        /* the source parsed outside the lock, NULL when it is not JSON */
    char parse_error[256];
    long line;
};

struct outcome {
    unsigned status;
    const char *result;    /* created, updated, deleted, not_found, noop; NULL with error */
    long long version, seq_no;
    json_t *error;         /* owned */
    bool shards;           /* a write that reached the shard (_shards, _seq_no shown) */
};

static json_t *doc_error(const char *type, const char *reason, const struct es_index *index, const char *name)
{
    json_t *error = es_error_object(type, reason, NULL, NULL);
    if (index) {
        json_object_set_new(error, "index_uuid", json_string(es_index_uuid(index)));
        json_object_set_new(error, "shard", json_string("0"));
    } else {
        json_object_set_new(error, "index_uuid", json_string("_na_"));
    }
    json_object_set_new(error, "index", json_string(name));
    return error;
}

/* Merges patch into target the way a partial update does: objects recursively, the rest
 * replaced. Returns whether anything changed. */
static bool merge_update(json_t *target, const json_t *patch)
{
    bool changed = false;
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)patch, key, value) {
        json_t *existing = json_object_get(target, key);
        if (json_is_object(existing) && json_is_object(value)) {
            changed = merge_update(existing, value) || changed;
        } else if (!existing || !json_equal(existing, value)) {
            json_object_set(target, key, value);
            changed = true;
        }
    }
    return changed;
}

static struct outcome write_document(struct es_index *index, const char *id, const json_t *document,
                                     const char *source, size_t length, bool create)
{
    struct outcome outcome = {0};
    json_t *error = NULL;
    if (!es_index_map(index, id, document, &error)) {
        outcome.status = 400;
        outcome.error = error;
        return outcome;
    }
    bool existed = es_index_get(index, id) != NULL;
    const struct es_doc *doc = es_index_put(index, id, source, length);
    if (!doc) {
        outcome.status = 500;
        outcome.error = doc_error("exception", "es-dev is out of memory", index, es_index_name(index));
        return outcome;
    }
    journal_put(index, id, source, length);
    outcome.status = existed ? 200 : 201;
    outcome.result = existed ? "updated" : "created";
    outcome.version = doc->version;
    outcome.seq_no = doc->seq_no;
    outcome.shards = true;
    (void)create;
    return outcome;
}

/* Applies one item to the store (lock held). The index is created when a write needs it. */
static struct outcome apply_item(struct store *store, struct item *item)
{
    struct outcome outcome = {0};
    const char *problem = es_index_name_problem(item->index_name);
    if (problem) {
        char reason[600];
        snprintf(reason, sizeof reason, "Invalid index name [%.300s], %s", item->index_name, problem);
        outcome.status = 400;
        outcome.error = doc_error("invalid_index_name_exception", reason, NULL, item->index_name);
        return outcome;
    }
    struct es_index *index = index_find(store, item->index_name);
    if (!index && item->action == ACTION_DELETE) {
        outcome.status = 404;
        outcome.error = index_not_found_error(item->index_name);
        return outcome;
    }
    if (!index) {
        json_t *error = NULL;
        index = es_index_new(item->index_name, NULL, &error);
        json_decref(error);
        if (!index || !index_add(store, index)) {
            es_index_free(index);
            outcome.status = 500;
            outcome.error = doc_error("exception", "es-dev cannot create another index", NULL, item->index_name);
            return outcome;
        }
        journal_index(item->index_name, NULL);
    }
    if (item->action != ACTION_DELETE && (!item->parsed || !json_is_object(item->parsed))) {
        outcome.status = 400;
        outcome.error = es_error_object("mapper_parsing_exception", "failed to parse",
                                        item->parsed ? "not_x_content_exception" : "x_content_parse_exception",
                                        item->parsed ? "Compressor detection can only be called on some xcontent bytes or "
                                                       "compressed xcontent bytes"
                                                     : item->parse_error);
        return outcome;
    }
    const struct es_doc *existing = es_index_get(index, item->id);
    char reason[800];
    switch (item->action) {
    case ACTION_CREATE:
        if (existing) {
            snprintf(reason, sizeof reason, "[%.500s]: version conflict, document already exists (current version [%lld])",
                     item->id, existing->version);
            outcome.status = 409;
            outcome.error = doc_error("version_conflict_engine_exception", reason, index, es_index_name(index));
            return outcome;
        }
        return write_document(index, item->id, item->parsed, item->source, item->source_length, true);
    case ACTION_INDEX:
        return write_document(index, item->id, item->parsed, item->source, item->source_length, false);
    case ACTION_DELETE: {
        long long seq_no = 0, version = es_index_delete(index, item->id, &seq_no);
        outcome.shards = true;
        if (version) journal_delete(index, item->id);
        if (version) {
            outcome.status = 200;
            outcome.result = "deleted";
            outcome.version = version;
        } else {
            outcome.status = 404;
            outcome.result = "not_found";
            outcome.version = 1;
            seq_no = es_index_next_seq_no(index);
        }
        outcome.seq_no = seq_no;
        return outcome;
    }
    case ACTION_UPDATE: {
        const json_t *doc = json_object_get(item->parsed, "doc");
        const json_t *upsert = json_object_get(item->parsed, "upsert");
        bool doc_as_upsert = json_is_true(json_object_get(item->parsed, "doc_as_upsert"));
        bool detect_noop = !json_is_false(json_object_get(item->parsed, "detect_noop"));
        if (json_object_get(item->parsed, "script")) {
            outcome.status = 400;
            outcome.error = doc_error("illegal_argument_exception", "es-dev does not run scripts: send \"doc\"", index,
                                      es_index_name(index));
            return outcome;
        }
        if ((doc && !json_is_object(doc)) || (!doc && !upsert)) {
            outcome.status = 400;
            outcome.error = doc_error("action_request_validation_exception", "Validation Failed: 1: script or doc is missing;",
                                      index, es_index_name(index));
            return outcome;
        }
        if (!existing) {
            const json_t *inserted = upsert ? upsert : doc_as_upsert ? doc : NULL;
            if (!inserted || !json_is_object(inserted)) {
                snprintf(reason, sizeof reason, "[%.500s]: document missing", item->id);
                outcome.status = 404;
                outcome.error = doc_error("document_missing_exception", reason, index, es_index_name(index));
                return outcome;
            }
            char *text = json_dumps(inserted, JSON_COMPACT | JSON_PRESERVE_ORDER);
            outcome = write_document(index, item->id, inserted, text ? text : "{}", text ? strlen(text) : 2, true);
            free(text);
            return outcome;
        }
        json_t *merged = json_loadb(existing->source, existing->source_length, 0, NULL);
        if (!merged) merged = json_object();
        bool changed = doc ? merge_update(merged, doc) : false;
        if (!changed && detect_noop) {
            outcome.status = 200;
            outcome.result = "noop";
            outcome.version = existing->version;
            outcome.seq_no = existing->seq_no;
            json_decref(merged);
            return outcome;
        }
        char *text = json_dumps(merged, JSON_COMPACT | JSON_PRESERVE_ORDER);
        outcome = write_document(index, item->id, merged, text ? text : "{}", text ? strlen(text) : 2, false);
        free(text);
        json_decref(merged);
        return outcome;
    }
    }
    return outcome;
}

/* The item body: {"_index","_id","_version","result","_shards","_seq_no","_primary_term","status"}
 * or {"_index","_id","status","error"}. */
static void outcome_write(struct sbuf *out, const char *index_name, const char *id, const struct outcome *outcome)
{
    sbuf_puts(out, "{\"_index\":");
    sbuf_json_string(out, index_name, strlen(index_name));
    sbuf_puts(out, ",\"_id\":");
    sbuf_json_string(out, id, strlen(id));
    if (outcome->error) {
        sbuf_printf(out, ",\"status\":%u,\"error\":", outcome->status);
        sbuf_json(out, outcome->error);
        sbuf_puts(out, "}");
        return;
    }
    sbuf_printf(out, ",\"_version\":%lld,\"result\":\"%s\",\"_shards\":%s", outcome->version, outcome->result,
                outcome->shards ? shards_json : "{\"total\":0,\"successful\":0,\"failed\":0}");
    sbuf_printf(out, ",\"_seq_no\":%lld,\"_primary_term\":1,\"status\":%u}", outcome->seq_no, outcome->status);
}

static void generate_id(struct store *store, char *out)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned long long value = ++store->id_serial * 0x9E3779B97F4A7C15ull ^ (unsigned long long)time(NULL);
    for (int i = 0; i < 20; i++) {
        out[i] = alphabet[value & 63];
        value = value >> 6 | (unsigned long long)(i + 1) << 58;
        if (i == 9) value ^= store->id_serial * 0xD1B54A32D192ED03ull;
    }
    out[20] = '\0';
}

/* ---- _bulk -------------------------------------------------------------------------------- */

struct bulk {
    struct item *items;
    size_t count, capacity;
};

static void bulk_free(struct bulk *bulk)
{
    for (size_t i = 0; i < bulk->count; i++) {
        free(bulk->items[i].index_name);
        free(bulk->items[i].id);
        json_decref(bulk->items[i].parsed);
    }
    free(bulk->items);
}

static const char *const metadata_known[] = {"_index", "_id", "routing", "pipeline", "retry_on_conflict",
                                             "require_alias", "version", "version_type", "if_seq_no",
                                             "if_primary_term", "dynamic_templates", "_source", "require_data_stream",
                                             "list_executed_pipelines", NULL};

/* Parses the NDJSON body into items. Returns true, or false with the 400 reply filled. */
static bool bulk_parse(const struct standin_request *request, const char *default_index, struct bulk *bulk,
                       struct standin_reply *reply)
{
    const char *body = request->body, *end = body + request->body_length;
    if (request->body_length == 0 || body[request->body_length - 1] != '\n') {
        if (request->body_length == 0) {
            reply_simple_error(reply, 400, "parse_exception", "request body is required");
        } else {
            reply_simple_error(reply, 400, "illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]");
        }
        return false;
    }
    long line = 0;
    const char *p = body;
    while (p < end) {
        const char *newline = memchr(p, '\n', (size_t)(end - p));
        size_t length = (size_t)(newline - p);
        line++;
        const char *action_line = p;
        p = newline + 1;
        while (length && (action_line[length - 1] == '\r' || action_line[length - 1] == ' ')) length--;
        if (length == 0) continue;  /* empty lines between requests are skipped */
        json_error_t json_error;
        json_t *action = json_loadb(action_line, length, 0, &json_error);
        const char *action_name;
        json_t *metadata;
        if (!action) {
            reply_simple_error(reply, 400, "x_content_parse_exception", "[%ld:%d] Malformed action/metadata line [%ld]: %s",
                               line, json_error.column, line, json_error.text);
            return false;
        }
        if (!json_is_object(action) || json_object_size(action) != 1) {
            reply_simple_error(reply, 400, "illegal_argument_exception",
                               "Malformed action/metadata line [%ld], expected START_OBJECT or END_OBJECT but found [%s]",
                               line, json_is_object(action) ? "END_OBJECT" : "VALUE");
            json_decref(action);
            return false;
        }
        void *iterator = json_object_iter(action);
        action_name = json_object_iter_key(iterator);
        metadata = json_object_iter_value(iterator);
        int kind = 0;
        while (kind < 4 && strcmp(action_names[kind], action_name) != 0) kind++;
        if (kind == 4) {
            reply_simple_error(reply, 400, "illegal_argument_exception",
                               "Malformed action/metadata line [%ld], expected field [create], [delete], [index] or "
                               "[update] but found [%s]",
                               line, action_name);
            json_decref(action);
            return false;
        }
        if (!json_is_object(metadata)) {
            reply_simple_error(reply, 400, "illegal_argument_exception",
                               "Malformed action/metadata line [%ld], expected START_OBJECT but found [VALUE]", line);
            json_decref(action);
            return false;
        }
        const char *key;
        json_t *value;
        json_object_foreach(metadata, key, value) {
            bool known = false;
            for (const char *const *k = metadata_known; *k && !known; k++) known = strcmp(*k, key) == 0;
            if (!known) {
                reply_simple_error(reply, 400, "illegal_argument_exception",
                                   "Action/metadata line [%ld] contains an unknown parameter [%s]", line, key);
                json_decref(action);
                return false;
            }
        }
        if (bulk->count == bulk->capacity) {
            size_t capacity = bulk->capacity ? bulk->capacity * 2 : 256;
            struct item *items = realloc(bulk->items, capacity * sizeof *items);
            if (!items) {
                json_decref(action);
                reply_simple_error(reply, 500, "exception", "es-dev is out of memory");
                return false;
            }
            bulk->items = items;
            bulk->capacity = capacity;
        }
        struct item *item = &bulk->items[bulk->count++];
        *item = (struct item){.action = (enum action)kind, .line = line};
        const json_t *index_name = json_object_get(metadata, "_index");
        const json_t *id = json_object_get(metadata, "_id");
        item->index_name = strdup(json_is_string(index_name) ? json_string_value(index_name) : default_index ? default_index : "");
        if (json_is_string(id)) item->id = strdup(json_string_value(id));
        else if (json_is_integer(id) && asprintf(&item->id, "%lld", (long long)json_integer_value(id)) < 0) item->id = NULL;
        json_decref(action);
        if (item->action != ACTION_DELETE) {
            if (p >= end) {
                reply_simple_error(reply, 400, "illegal_argument_exception",
                                   "The bulk request has an action line without a source line after it (line [%ld])", line);
                return false;
            }
            newline = memchr(p, '\n', (size_t)(end - p));
            line++;
            item->source = p;
            item->source_length = (size_t)(newline - p);
            while (item->source_length && item->source[item->source_length - 1] == '\r') item->source_length--;
            p = newline + 1;
        }
    }
    /* Validation as Elasticsearch does it: for the whole request, every failing item listed. */
    struct sbuf reasons = {0};
    int failures = 0;
    for (size_t i = 0; i < bulk->count; i++) {
        const struct item *item = &bulk->items[i];
        if (!item->index_name || !*item->index_name) sbuf_printf(&reasons, "%d: index is missing;", ++failures);
        if (!item->id && (item->action == ACTION_UPDATE || item->action == ACTION_DELETE))
            sbuf_printf(&reasons, "%d: id is missing;", ++failures);
    }
    if (bulk->count == 0) sbuf_printf(&reasons, "%d: no requests added;", ++failures);
    if (failures) {
        reply_simple_error(reply, 400, "action_request_validation_exception", "Validation Failed: %s",
                           reasons.data ? reasons.data : "");
        sbuf_free(&reasons);
        return false;
    }
    sbuf_free(&reasons);
    for (size_t i = 0; i < bulk->count; i++) {
        struct item *item = &bulk->items[i];
        if (!item->source) continue;
        json_error_t json_error;
        item->parsed = json_loadb(item->source, item->source_length, JSON_DECODE_ANY, &json_error);
        if (!item->parsed)
            snprintf(item->parse_error, sizeof item->parse_error, "[1:%d] %s", json_error.column, json_error.text);
    }
    return true;
}

static bool fault_every(unsigned long long serial, long every) { return every > 0 && serial % (unsigned long long)every == 0; }

/* An injected item failure: 429 es_rejected_execution_exception or 503 unavailable_shards_exception. */
static json_t *item_fault_error(long status, const char *index_name)
{
    char reason[800];
    if (status == 503) {
        snprintf(reason, sizeof reason,
                 "[%.300s][0] primary shard is not active Timeout: [1m], request: [BulkShardRequest [[%.300s][0]] "
                 "containing [1] requests] (es-dev fault injection)", index_name, index_name);
        return es_error_object("unavailable_shards_exception", reason, NULL, NULL);
    }
    snprintf(reason, sizeof reason,
             "rejected execution of primary operation [shard_detail=[%.300s][0][P], shard_operation_bytes=1024, "
             "max_coordinating_and_primary_bytes=107374182] (es-dev fault injection)", index_name);
    return es_error_object("es_rejected_execution_exception", reason, NULL, NULL);
}

/* Whole-request faults of a _bulk request (lock held); true when the reply is decided. */
static bool bulk_request_fault(struct store *store, struct standin_reply *reply)
{
    struct faults *faults = &store->faults;
    store->counters.bulk_requests++;
    unsigned long long serial = ++store->requests_since_faults;
    reply->delay_ms = (uint64_t)faults->latency_ms;
    if (faults->close_next > 0 || fault_every(serial, faults->close_every)) {
        if (faults->close_next > 0) faults->close_next--;
        store->counters.connections_closed++;
        reply->status = 500;  /* never sent */
        reply->close = true;
        return true;
    }
    if (!(faults->request_next > 0 || fault_every(serial, faults->request_every))) return false;
    if (faults->request_next > 0) faults->request_next--;
    store->counters.requests_rejected++;
    long status = faults->request_status;
    if (status == 502 || status == 504) {
        /* what a proxy in front of the cluster answers */
        reply->status = (unsigned)status;
        reply->content_type = "text/html";
        sbuf_printf(&reply->body, "<html><body><h1>%ld %s</h1>(es-dev fault injection)</body></html>\n", status,
                    status == 502 ? "Bad Gateway" : "Gateway Time-out");
    } else if (status == 503) {
        reply_simple_error(reply, 503, "cluster_block_exception", "blocked by: [SERVICE_UNAVAILABLE/2/no master]; (es-dev fault injection)");
    } else if (status == 500) {
        reply_simple_error(reply, 500, "exception", "es-dev fault injection: internal server error");
    } else {
        reply_simple_error(reply, 429, "es_rejected_execution_exception",
                           "rejected execution of coordinating operation [coordinating_and_primary_bytes=107374182, "
                           "replica_bytes=0, all_bytes=107374182, coordinating_operation_bytes=1024, "
                           "max_coordinating_and_primary_bytes=107374182] (es-dev fault injection)");
    }
    return true;
}

static void bulk_route(struct store *store, const struct standin_request *request, struct standin_reply *reply,
                       const char *default_index)
{
    uint64_t started = standin_clock_ms();
    pthread_mutex_lock(&store->lock);
    bool faulted = bulk_request_fault(store, reply);
    pthread_mutex_unlock(&store->lock);
    if (faulted) return;
    struct bulk bulk = {0};
    if (!bulk_parse(request, default_index, &bulk, reply)) {
        bulk_free(&bulk);
        return;
    }
    struct sbuf items = {0};
    sbuf_reserve(&items, bulk.count * 190 + 64);
    bool errors = false;
    pthread_mutex_lock(&store->lock);
    struct faults *faults = &store->faults;
    for (size_t i = 0; i < bulk.count; i++) {
        struct item *item = &bulk.items[i];
        char generated[24];
        if (!item->id) {
            generate_id(store, generated);
            item->id = strdup(generated);
        }
        store->counters.items++;
        unsigned long long serial = ++store->items_since_faults;
        struct outcome outcome;
        if (faults->item_next > 0 || fault_every(serial, faults->item_every)) {
            if (faults->item_next > 0) faults->item_next--;
            store->counters.items_faulted++;
            outcome = (struct outcome){.status = (unsigned)faults->item_status,
                                       .error = item_fault_error(faults->item_status, item->index_name)};
        } else {
            outcome = apply_item(store, item);
        }
        if (outcome.error) {
            errors = true;
            store->counters.items_failed++;
        }
        sbuf_printf(&items, "%s{\"%s\":", i ? "," : "", action_names[item->action]);
        outcome_write(&items, item->index_name, item->id ? item->id : "", &outcome);
        sbuf_puts(&items, "}");
        json_decref(outcome.error);
    }
    pthread_mutex_unlock(&store->lock);
    bulk_free(&bulk);
    struct sbuf *out = &reply->body;
    sbuf_reserve(out, items.length + 64);
    sbuf_printf(out, "{\"took\":%llu,\"errors\":%s,\"items\":[", (unsigned long long)(standin_clock_ms() - started),
                errors ? "true" : "false");
    if (items.data) sbuf_append(out, items.data, items.length);
    sbuf_puts(out, "]}");
    bool failed = items.failed;
    sbuf_free(&items);
    if (out->failed || failed) {
        sbuf_free(out);
        reply_simple_error(reply, 500, "exception", "es-dev is out of memory building the bulk answer");
        return;
    }
    reply->status = 200;
}

/* ---- single-document routes --------------------------------------------------------------- */

static void doc_write_route(struct store *store, const struct standin_request *request, struct standin_reply *reply,
                            const char *index_name, const char *id, enum action action)
{
    struct item item = {.action = action, .line = 1};
    item.index_name = strdup(index_name);
    char generated[24];
    pthread_mutex_lock(&store->lock);
    if (!id) {
        generate_id(store, generated);
        id = generated;
    }
    item.id = strdup(id);
    if (action != ACTION_DELETE) {
        item.source = request->body;
        item.source_length = request->body_length;
        json_error_t json_error;
        item.parsed = json_loadb(item.source, item.source_length, JSON_DECODE_ANY, &json_error);
        if (!item.parsed) snprintf(item.parse_error, sizeof item.parse_error, "[1:%d] %s", json_error.column, json_error.text);
    }
    const char *op_type = standin_query(request, "op_type");
    if (action == ACTION_INDEX && op_type && strcmp(op_type, "create") == 0) item.action = ACTION_CREATE;
    struct outcome outcome = apply_item(store, &item);
    pthread_mutex_unlock(&store->lock);
    if (outcome.error) {
        reply_error(reply, outcome.status, outcome.error);
    } else {
        reply->status = outcome.status;
        outcome_write(&reply->body, item.index_name, item.id, &outcome);
    }
    free(item.index_name);
    free(item.id);
    json_decref(item.parsed);
}

static void doc_get_route(struct store *store, struct standin_reply *reply, const char *index_name, const char *id)
{
    pthread_mutex_lock(&store->lock);
    struct es_index *index = index_find(store, index_name);
    if (!index) {
        pthread_mutex_unlock(&store->lock);
        reply_error(reply, 404, index_not_found_error(index_name));
        return;
    }
    const struct es_doc *doc = es_index_get(index, id);
    sbuf_puts(&reply->body, "{\"_index\":");
    sbuf_json_string(&reply->body, index_name, strlen(index_name));
    sbuf_puts(&reply->body, ",\"_id\":");
    sbuf_json_string(&reply->body, id, strlen(id));
    if (doc) {
        sbuf_printf(&reply->body, ",\"_version\":%lld,\"_seq_no\":%lld,\"_primary_term\":1,\"found\":true,\"_source\":",
                    doc->version, doc->seq_no);
        sbuf_append(&reply->body, doc->source, doc->source_length);
        sbuf_puts(&reply->body, "}");
    } else {
        sbuf_puts(&reply->body, ",\"found\":false}");
    }
    pthread_mutex_unlock(&store->lock);
    reply->status = doc ? 200 : 404;
}

/* ---- indices ------------------------------------------------------------------------------- */

static void index_create_route(struct store *store, const struct standin_request *request, struct standin_reply *reply,
                               const char *name)
{
    const char *problem = es_index_name_problem(name);
    if (problem) {
        char reason[600];
        snprintf(reason, sizeof reason, "Invalid index name [%.300s], %s", name, problem);
        reply_error(reply, 400, doc_error("invalid_index_name_exception", reason, NULL, name));
        return;
    }
    json_t *body = NULL;
    if (request->body_length) {
        json_error_t json_error;
        body = json_loadb(request->body, request->body_length, 0, &json_error);
        if (!json_is_object(body)) {
            json_decref(body);
            reply_simple_error(reply, 400, "parse_exception", "request body is not a JSON object: %s", json_error.text);
            return;
        }
    }
    pthread_mutex_lock(&store->lock);
    struct es_index *existing = index_find(store, name);
    if (existing) {
        char reason[600];
        snprintf(reason, sizeof reason, "index [%.300s/%s] already exists", name, es_index_uuid(existing));
        json_t *error = doc_error("resource_already_exists_exception", reason, NULL, name);
        json_object_set_new(error, "index_uuid", json_string(es_index_uuid(existing)));
        pthread_mutex_unlock(&store->lock);
        json_decref(body);
        reply_error(reply, 400, error);
        return;
    }
    json_t *error = NULL;
    struct es_index *index = es_index_new(name, json_object_get(body, "mappings"), &error);
    if (!index) {
        pthread_mutex_unlock(&store->lock);
        json_decref(body);
        reply_error(reply, 400, error ? error : es_error_object("exception", "es-dev is out of memory", NULL, NULL));
        return;
    }
    if (!index_add(store, index)) {
        es_index_free(index);
        pthread_mutex_unlock(&store->lock);
        json_decref(body);
        reply_simple_error(reply, 400, "validation_exception", "Validation Failed: 1: this es-dev holds %d indices already;",
                           MAX_INDICES);
        return;
    }
    journal_index(name, json_object_get(body, "mappings"));
    pthread_mutex_unlock(&store->lock);
    json_decref(body);
    reply_json(reply, 200, json_pack("{s:b,s:b,s:s}", "acknowledged", 1, "shards_acknowledged", 1, "index", name));
}

static void index_delete_route(struct store *store, struct standin_reply *reply, const char *expression)
{
    if (strchr(expression, '*') || strcmp(expression, "_all") == 0) {
        reply_simple_error(reply, 400, "illegal_argument_exception", "Wildcard expressions or all indices are not allowed");
        return;
    }
    struct es_index *found[MAX_INDICES];
    json_t *error;
    pthread_mutex_lock(&store->lock);
    size_t count = indices_resolve(store, expression, false, found, &error);
    for (size_t i = 0; i < count; i++) {
        journal_drop(es_index_name(found[i]));
        index_remove(store, found[i]);
    }
    pthread_mutex_unlock(&store->lock);
    if (error) reply_error(reply, 404, error);
    else reply_json(reply, 200, json_pack("{s:b}", "acknowledged", 1));
}

static void index_get_route(struct store *store, struct standin_reply *reply, const char *expression, bool mapping_only)
{
    struct es_index *found[MAX_INDICES];
    json_t *error;
    pthread_mutex_lock(&store->lock);
    size_t count = indices_resolve(store, expression, false, found, &error);
    json_t *answer = json_object();
    for (size_t i = 0; !error && i < count; i++) {
        json_t *entry = json_pack("{s:O}", "mappings", es_index_mappings(found[i]));
        if (!mapping_only) {
            json_object_set_new(entry, "aliases", json_object());
            json_object_set_new(entry, "settings",
                                json_pack("{s:{s:s,s:s,s:s,s:s}}", "index", "number_of_shards", "1",
                                          "number_of_replicas", "1", "uuid", es_index_uuid(found[i]),
                                          "provided_name", es_index_name(found[i])));
        }
        json_object_set_new(answer, es_index_name(found[i]), entry);
    }
    pthread_mutex_unlock(&store->lock);
    if (error) {
        json_decref(answer);
        reply_error(reply, 404, error);
    } else {
        reply_json(reply, 200, answer);
    }
}

/* ---- _count and _search -------------------------------------------------------------------- */

static json_t *request_body_object(const struct standin_request *request, struct standin_reply *reply, bool *ok)
{
    *ok = true;
    if (request->body_length == 0) return NULL;
    json_error_t json_error;
    json_t *body = json_loadb(request->body, request->body_length, 0, &json_error);
    if (!json_is_object(body)) {
        json_decref(body);
        reply_simple_error(reply, 400, "parse_exception", "request body is not a JSON object: %s (line %d, column %d)",
                           json_error.text, json_error.line, json_error.column);
        *ok = false;
        return NULL;
    }
    return body;
}

static long long query_integer(const struct standin_request *request, const json_t *body, const char *name,
                               long long fallback)
{
    const char *text = standin_query(request, name);
    if (text) return strtoll(text, NULL, 10);
    const json_t *value = json_object_get(body, name);
    return json_is_integer(value) ? json_integer_value(value) : fallback;
}

static void search_route(struct store *store, const struct standin_request *request, struct standin_reply *reply,
                         const char *expression, bool count_only)
{
    bool ok;
    json_t *body = request_body_object(request, reply, &ok);
    if (!ok) return;
    static const char *const known_search[] = {"query", "size", "from", "aggs", "aggregations", "track_total_hits",
                                               "_source", "timeout", NULL};
    const char *key;
    json_t *value;
    json_object_foreach(body, key, value) {
        bool known = false;
        for (const char *const *k = known_search; *k && !known; k++) known = strcmp(*k, key) == 0 && (!count_only || k == known_search);
        if (!known) {
            json_decref(body);
            reply_simple_error(reply, 400, count_only ? "parsing_exception" : "illegal_argument_exception",
                               "request does not support [%s]%s", key,
                               count_only ? "" : " (es-dev answers query, size, from, aggs, track_total_hits, _source)");
            return;
        }
    }
    if (standin_query(request, "q")) {
        json_decref(body);
        reply_simple_error(reply, 400, "illegal_argument_exception", "es-dev does not parse the q= query string syntax; send a query body");
        return;
    }
    long long size = query_integer(request, body, "size", 10), from = query_integer(request, body, "from", 0);
    if (!count_only && (size < 0 || from < 0 || from + size > MAX_RESULT_WINDOW)) {
        json_decref(body);
        reply_simple_error(reply, 400, "illegal_argument_exception",
                           "Result window is too large, from + size must be less than or equal to: [%d] but was [%lld]. "
                           "See the scroll api for a more efficient way to request large data sets. This limit can be set "
                           "by changing the [index.max_result_window] index level setting.", MAX_RESULT_WINDOW, from + size);
        return;
    }
    const json_t *track = json_object_get(body, "track_total_hits");
    const char *track_text = standin_query(request, "track_total_hits");
    long long track_limit = 10000;
    if (json_is_true(track) || (track_text && strcmp(track_text, "true") == 0)) track_limit = -1;
    else if (json_is_integer(track)) track_limit = json_integer_value(track);
    bool with_source = !json_is_false(json_object_get(body, "_source"));

    json_t *error = NULL;
    struct es_query *query = es_query_compile(json_object_get(body, "query"), &error);
    if (!query) {
        json_decref(body);
        reply_error(reply, 400, error);
        return;
    }
    struct es_index *indices[MAX_INDICES];
    const char *ignore = standin_query(request, "ignore_unavailable");
    pthread_mutex_lock(&store->lock);
    size_t index_count = indices_resolve(store, expression, ignore && strcmp(ignore, "true") == 0, indices, &error);
    struct es_aggs *aggs = NULL;
    const json_t *aggs_json = json_object_get(body, "aggs") ? json_object_get(body, "aggs") : json_object_get(body, "aggregations");
    if (!error && !count_only) aggs = es_aggs_compile(aggs_json, indices, index_count, &error);
    if (error) {
        pthread_mutex_unlock(&store->lock);
        es_query_free(query);
        json_decref(body);
        reply_error(reply, error && json_is_string(json_object_get(error, "resource.type")) ? 404 : 400, error);
        return;
    }
    uint64_t started = standin_clock_ms();
    long long matched = 0, shown = 0;
    struct sbuf hits = {0};
    bool match_all = es_query_is_match_all(query);
    bool need_sources = !(match_all && (count_only || (size == 0 && (!aggs_json || json_object_size(aggs_json) == 0))));
    for (size_t i = 0; i < index_count; i++) {
        struct es_index *index = indices[i];
        if (!need_sources) {
            matched += (long long)es_index_doc_count(index);
            continue;
        }
        for (size_t slot = 0; slot < es_index_slots(index); slot++) {
            const struct es_doc *doc = es_index_slot(index, slot);
            if (!doc) continue;
            json_t *source = json_loadb(doc->source, doc->source_length, 0, NULL);
            if (!source) continue;
            if (match_all || es_query_match(query, index, source)) {
                if (!count_only && matched >= from && shown < size) {
                    sbuf_puts(&hits, shown ? ",{\"_index\":" : "{\"_index\":");
                    sbuf_json_string(&hits, es_index_name(index), strlen(es_index_name(index)));
                    sbuf_puts(&hits, ",\"_id\":");
                    sbuf_json_string(&hits, doc->id, strlen(doc->id));
                    sbuf_puts(&hits, ",\"_score\":1.0");
                    if (with_source) {
                        sbuf_puts(&hits, ",\"_source\":");
                        sbuf_append(&hits, doc->source, doc->source_length);
                    }
                    sbuf_puts(&hits, "}");
                    shown++;
                }
                matched++;
                if (aggs) es_aggs_add(aggs, index, source);
            }
            json_decref(source);
        }
    }
    json_t *aggregations = aggs && aggs_json ? es_aggs_result(aggs) : NULL;
    pthread_mutex_unlock(&store->lock);
    es_query_free(query);
    es_aggs_free(aggs);
    json_decref(body);
    struct sbuf *out = &reply->body;
    reply->status = 200;
    if (count_only) {
        sbuf_printf(out, "{\"count\":%lld,\"_shards\":{\"total\":%zu,\"successful\":%zu,\"skipped\":0,\"failed\":0}}", matched,
                    index_count, index_count);
        sbuf_free(&hits);
        return;
    }
    bool capped = track_limit >= 0 && matched > track_limit;
    sbuf_printf(out,
                "{\"took\":%llu,\"timed_out\":false,\"_shards\":{\"total\":%zu,\"successful\":%zu,\"skipped\":0,"
                "\"failed\":0},\"hits\":{\"total\":{\"value\":%lld,\"relation\":\"%s\"},\"max_score\":%s,\"hits\":[",
                (unsigned long long)(standin_clock_ms() - started), index_count, index_count,
                capped ? track_limit : matched, capped ? "gte" : "eq", shown ? "1.0" : "null");
    if (hits.data) sbuf_append(out, hits.data, hits.length);
    sbuf_puts(out, "]}");
    if (aggregations) {
        sbuf_puts(out, ",\"aggregations\":");
        sbuf_json(out, aggregations);
        json_decref(aggregations);
    }
    sbuf_puts(out, "}");
    sbuf_free(&hits);
}

/* ---- faults -------------------------------------------------------------------------------- */

struct fault_member {
    const char *name;
    size_t offset;
    long minimum, maximum;
};

#define FAULT_MEMBER(name, low, high) {#name, offsetof(struct faults, name), low, high}
static const struct fault_member fault_members[] = {
    FAULT_MEMBER(item_status, 429, 503),     FAULT_MEMBER(item_every, 0, 100000000),
    FAULT_MEMBER(item_next, 0, 100000000),   FAULT_MEMBER(request_status, 429, 504),
    FAULT_MEMBER(request_every, 0, 100000000), FAULT_MEMBER(request_next, 0, 100000000),
    FAULT_MEMBER(latency_ms, 0, 600000),     FAULT_MEMBER(close_every, 0, 100000000),
    FAULT_MEMBER(close_next, 0, 100000000),
};
#define FAULT_MEMBER_COUNT (sizeof fault_members / sizeof fault_members[0])

static json_t *faults_json(const struct store *store)
{
    json_t *answer = json_object();
    for (size_t i = 0; i < FAULT_MEMBER_COUNT; i++)
        json_object_set_new(answer, fault_members[i].name,
                            json_integer(*(const long *)((const char *)&store->faults + fault_members[i].offset)));
    const struct counters *c = &store->counters;
    json_object_set_new(answer, "counters",
                        json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "bulk_requests", (json_int_t)c->bulk_requests, "items",
                                  (json_int_t)c->items, "items_failed", (json_int_t)c->items_failed, "items_faulted",
                                  (json_int_t)c->items_faulted, "requests_rejected", (json_int_t)c->requests_rejected,
                                  "connections_closed", (json_int_t)c->connections_closed));
    return answer;
}

static void fault_route(struct store *store, const struct standin_request *request, struct standin_reply *reply)
{
    if (strcmp(request->method, "POST") == 0) {
        json_t *body = json_loadb(request->body, request->body_length, 0, NULL);
        if (!json_is_object(body)) {
            json_decref(body);
            reply_simple_error(reply, 400, "parse_exception", "/_fault: the body must be a JSON object such as {\"item_next\": 3}");
            return;
        }
        const char *key;
        json_t *value;
        json_object_foreach(body, key, value) {
            const struct fault_member *member = NULL;
            for (size_t i = 0; i < FAULT_MEMBER_COUNT; i++)
                if (strcmp(fault_members[i].name, key) == 0) member = &fault_members[i];
            if (!member || !json_is_integer(value) || json_integer_value(value) < member->minimum ||
                json_integer_value(value) > member->maximum) {
                if (member)
                    reply_simple_error(reply, 400, "illegal_argument_exception", "/_fault: %s must be an integer in %ld..%ld",
                                       key, member->minimum, member->maximum);
                else
                    reply_simple_error(reply, 400, "illegal_argument_exception", "/_fault: unknown member [%s] (see es-dev --help)", key);
                json_decref(body);
                return;
            }
            if (strstr(key, "_status") && json_integer_value(value) != 429 && json_integer_value(value) != 503 &&
                (strcmp(key, "item_status") == 0 || (json_integer_value(value) != 500 && json_integer_value(value) != 502 &&
                                                      json_integer_value(value) != 504))) {
                reply_simple_error(reply, 400, "illegal_argument_exception", "/_fault: %s %lld is not one es-dev injects", key,
                                   (long long)json_integer_value(value));
                json_decref(body);
                return;
            }
        }
        pthread_mutex_lock(&store->lock);
        json_object_foreach(body, key, value)
            for (size_t i = 0; i < FAULT_MEMBER_COUNT; i++)
                if (strcmp(fault_members[i].name, key) == 0)
                    *(long *)((char *)&store->faults + fault_members[i].offset) = (long)json_integer_value(value);
        store->items_since_faults = store->requests_since_faults = 0;
        pthread_mutex_unlock(&store->lock);
        json_decref(body);
    } else if (strcmp(request->method, "DELETE") == 0) {
        pthread_mutex_lock(&store->lock);
        store->faults = (struct faults){.item_status = 429, .request_status = 429};
        store->items_since_faults = store->requests_since_faults = 0;
        pthread_mutex_unlock(&store->lock);
    } else if (strcmp(request->method, "GET") != 0) {
        reply_simple_error(reply, 405, "illegal_argument_exception", "/_fault takes GET, POST or DELETE");
        return;
    }
    pthread_mutex_lock(&store->lock);
    json_t *answer = faults_json(store);
    pthread_mutex_unlock(&store->lock);
    reply_json(reply, 200, answer);
}

/* ---- routing ------------------------------------------------------------------------------ */

static bool authorized(const struct store *store, const struct standin_request *request, struct standin_reply *reply)
{
    if (!store->basic_authorization && !store->api_key_authorization) return true;
    const char *header = standin_header(request, MHD_HTTP_HEADER_AUTHORIZATION);
    if (header && ((store->basic_authorization && strcmp(header, store->basic_authorization) == 0) ||
                   (store->api_key_authorization && strcmp(header, store->api_key_authorization) == 0)))
        return true;
    char reason[1200];
    if (!header) {
        snprintf(reason, sizeof reason, "missing authentication credentials for REST request [%.1000s]", request->path);
    } else if (strncasecmp(header, "Basic ", 6) == 0) {
        snprintf(reason, sizeof reason, "unable to authenticate user for REST request [%.1000s]", request->path);
    } else {
        snprintf(reason, sizeof reason, "unable to authenticate with provided credentials and anonymous access is not allowed for this request");
    }
    json_t *error = es_error_object("security_exception", reason, NULL, NULL);
    json_object_set_new(error, "header", json_pack("{s:[s,s]}", "WWW-Authenticate", "Basic realm=\"security\" charset=\"UTF-8\"", "ApiKey"));
    reply_error(reply, 401, error);
    standin_reply_header(reply, "WWW-Authenticate", "Basic realm=\"security\" charset=\"UTF-8\"");
    standin_reply_header(reply, "WWW-Authenticate", "ApiKey");
    return false;
}

static bool content_type_ok(const struct standin_request *request, struct standin_reply *reply)
{
    if (request->body_length == 0) return true;
    const char *type = standin_header(request, MHD_HTTP_HEADER_CONTENT_TYPE);
    static const char *const accepted[] = {"application/json", "application/x-ndjson", "application/vnd.elasticsearch+json",
                                           "application/vnd.elasticsearch+x-ndjson", NULL};
    if (type && standin_media_type_in(type, accepted)) return true;
    reply->status = 406;
    sbuf_puts(&reply->body, "{\"error\":\"Content-Type header [");
    sbuf_puts(&reply->body, type ? type : "");
    sbuf_puts(&reply->body, "] is not supported\",\"status\":406}");
    return false;
}

static void cluster_info(struct store *store, struct standin_reply *reply)
{
    reply_json(reply, 200,
               json_pack("{s:s,s:s,s:s,s:{s:s,s:s,s:s,s:s,s:s,s:b,s:s,s:s,s:s},s:s}", "name", "es-dev-node", "cluster_name",
                         config.cluster_name, "cluster_uuid", store->cluster_uuid, "version", "number", VERSION_NUMBER,
                         "build_flavor", "default", "build_type", "es-dev", "build_hash", "es-dev", "build_date",
                         "2023-04-27T04:33:42.127815583Z", "build_snapshot", 0, "lucene_version", "9.5.0",
                         "minimum_wire_compatibility_version", "7.17.0", "minimum_index_compatibility_version", "7.0.0",
                         "tagline", "You Know, for Search"));
}

static void route(struct store *store, const struct standin_request *request, struct standin_reply *reply)
{
    char storage[2048];
    char *s[MAX_PATH_SEGMENTS] = {0};
    int n = standin_split_path(request->path, storage, sizeof storage, s, MAX_PATH_SEGMENTS);
    const char *m = request->method;
    bool get = strcmp(m, "GET") == 0, head = strcmp(m, "HEAD") == 0, post = strcmp(m, "POST") == 0,
         put = strcmp(m, "PUT") == 0, delete = strcmp(m, "DELETE") == 0;
    if (n < 0) {
        reply_simple_error(reply, 400, "illegal_argument_exception", "no handler found for uri [%s]", request->path);
        return;
    }
    if (n == 0) {
        if (get || head) cluster_info(store, reply);
        else reply_simple_error(reply, 405, "illegal_argument_exception", "Incorrect HTTP method for uri [/] and method [%s], allowed: [GET, HEAD]", m);
        return;
    }
    if (n == 1 && strcmp(s[0], "_bulk") == 0 && (post || put)) {
        bulk_route(store, request, reply, NULL);
        return;
    }
    if (n == 2 && strcmp(s[0], "_cluster") == 0 && strcmp(s[1], "health") == 0 && get) {
        pthread_mutex_lock(&store->lock);
        size_t indices = store->index_count;
        pthread_mutex_unlock(&store->lock);
        reply_json(reply, 200,
                   json_pack("{s:s,s:s,s:b,s:i,s:i,s:I,s:I,s:i,s:i,s:i,s:I,s:i,s:f}", "cluster_name", config.cluster_name,
                             "status", indices ? "yellow" : "green", "timed_out", 0, "number_of_nodes", 1,
                             "number_of_data_nodes", 1, "active_primary_shards", (json_int_t)indices, "active_shards",
                             (json_int_t)indices, "relocating_shards", 0, "initializing_shards", 0, "unassigned_shards", 0,
                             "delayed_unassigned_shards", (json_int_t)0, "number_of_pending_tasks", 0,
                             "active_shards_percent_as_number", indices ? 50.0 : 100.0));
        return;
    }
    if (s[0][0] == '_' && strcmp(s[0], "_all") != 0) {
        reply_simple_error(reply, 400, "illegal_argument_exception", "no handler found for uri [%s] and method [%s] in es-dev",
                           request->path, m);
        return;
    }
    const char *index = s[0];
    if (n == 1) {
        if (put) index_create_route(store, request, reply, index);
        else if (delete) index_delete_route(store, reply, index);
        else if (get) index_get_route(store, reply, index, false);
        else if (head) {
            struct es_index *found[MAX_INDICES];
            json_t *error;
            pthread_mutex_lock(&store->lock);
            indices_resolve(store, index, false, found, &error);
            pthread_mutex_unlock(&store->lock);
            reply->status = error ? 404 : 200;
            json_decref(error);
        } else {
            reply_simple_error(reply, 405, "illegal_argument_exception", "Incorrect HTTP method for uri [%s] and method [%s]",
                               request->path, m);
        }
        return;
    }
    const char *what = s[1];
    if (n == 2 && strcmp(what, "_bulk") == 0 && (post || put)) bulk_route(store, request, reply, index);
    else if (n == 2 && strcmp(what, "_count") == 0 && (get || post)) search_route(store, request, reply, index, true);
    else if (n == 2 && strcmp(what, "_search") == 0 && (get || post)) search_route(store, request, reply, index, false);
    else if (n == 2 && strcmp(what, "_mapping") == 0 && get) index_get_route(store, reply, index, true);
    else if (n == 2 && strcmp(what, "_refresh") == 0 && (get || post)) {
        struct es_index *found[MAX_INDICES];
        json_t *error;
        pthread_mutex_lock(&store->lock);
        size_t count = indices_resolve(store, index, false, found, &error);
        pthread_mutex_unlock(&store->lock);
        if (error) reply_error(reply, 404, error);
        else reply_json(reply, 200, json_pack("{s:{s:I,s:I,s:i}}", "_shards", "total", (json_int_t)count * 2, "successful",
                                              (json_int_t)count, "failed", 0));
    } else if (n == 2 && strcmp(what, "_doc") == 0 && post) doc_write_route(store, request, reply, index, NULL, ACTION_INDEX);
    else if (n == 3 && strcmp(what, "_doc") == 0 && get) doc_get_route(store, reply, index, s[2]);
    else if (n == 3 && strcmp(what, "_doc") == 0 && (put || post)) doc_write_route(store, request, reply, index, s[2], ACTION_INDEX);
    else if (n == 3 && strcmp(what, "_doc") == 0 && delete) doc_write_route(store, request, reply, index, s[2], ACTION_DELETE);
    else if (n == 3 && strcmp(what, "_create") == 0 && (put || post)) doc_write_route(store, request, reply, index, s[2], ACTION_CREATE);
    else if (n == 3 && strcmp(what, "_update") == 0 && post) doc_write_route(store, request, reply, index, s[2], ACTION_UPDATE);
    else reply_simple_error(reply, 405, "illegal_argument_exception", "Incorrect HTTP method for uri [%s] and method [%s], or a path es-dev does not serve",
                            request->path, m);
}

static void handle(void *context, const struct standin_request *request, struct standin_reply *reply)
{
    struct store *store = context;
    standin_reply_header(reply, "X-elastic-product", "Elasticsearch");
    if (strcmp(request->path, "/_fault") == 0) {
        fault_route(store, request, reply);
        return;
    }
    if (!authorized(store, request, reply)) return;
    if (request->body_too_large) { /* Elasticsearch (Netty) answers 413 Request Entity Too Large, no body */
        reply->status = 413;
        return;
    }
    if (!content_type_ok(request, reply)) return;
    route(store, request, reply);
    reply_postprocess(request, reply);
}

int main(int argc, char **argv)
{
    char error[512];
    if (standin_options_parse(options, OPTION_COUNT, argc, argv, error, sizeof error) != 0) {
        fprintf(stderr, "es-dev: %s\n", error);
        return 2;
    }
    if (config.help) {
        print_help();
        return 0;
    }
    if (parse_size(config.max_content_length, &config.max_content_bytes) != 0) {
        fprintf(stderr, "es-dev: --max-content-length: \"%s\" is not a size from 1b to 2gb (100mb, 64kb, 1000b)\n",
                config.max_content_length);
        return 2;
    }
    if (config.port < 0) {
        fprintf(stderr, "es-dev: --port is required (0 picks a free port; see --help)\n");
        return 2;
    }
    if (config.item_status != 429 && config.item_status != 503) {
        fprintf(stderr, "es-dev: --item-fault-status: %ld is not 429 or 503\n", config.item_status);
        return 2;
    }
    if (config.request_status != 429 && config.request_status != 500 && config.request_status != 502 &&
        config.request_status != 503 && config.request_status != 504) {
        fprintf(stderr, "es-dev: --reject-status: %ld is not 429, 500, 502, 503 or 504\n", config.request_status);
        return 2;
    }
    struct store *store = calloc(1, sizeof *store);
    if (!store) return 1;
    pthread_mutex_init(&store->lock, NULL);
    if (config.basic && (!strchr(config.basic, ':') || !(store->basic_authorization = standin_basic_authorization(config.basic)))) {
        fprintf(stderr, "es-dev: --basic: expected USER:PASSWORD\n");
        return 2;
    }
    if (config.api_key && asprintf(&store->api_key_authorization, "ApiKey %s", config.api_key) < 0) return 1;
    store->faults = (struct faults){config.item_status, config.item_every, config.item_next, config.request_status,
                                    config.request_every, config.request_next, config.latency_ms, config.close_every,
                                    config.close_next};
    if (config.data) {
        if (journal_load(store, config.data)) return 1;
        if (!(journal = fopen(config.data, "a"))) {
            fprintf(stderr, "es-dev: --data %s: %s\n", config.data, strerror(errno));
            return 1;
        }
    }
    generate_id(store, store->cluster_uuid);
    store->cluster_uuid[20] = '\0';
    struct standin_server server = {
        .name = "es-dev", .port = config.port, .threads = config.threads,
        .max_body_bytes = (size_t)config.max_content_bytes, .content_type = "application/json",
        .verbose = config.verbose, .context = store, .handle = handle,
    };
    int status = standin_serve(&server);
    for (size_t i = 0; i < store->index_count; i++) es_index_free(store->indices[i]);
    free(store->basic_authorization);
    free(store->api_key_authorization);
    pthread_mutex_destroy(&store->lock);
    free(store);
    if (journal) fclose(journal);
    return status;
}
