/* es_index.h: one Elasticsearch index of the es-dev stand-in, in memory: documents by _id with
 * their _version and _seq_no, the mapping (declared at creation or added dynamically the way
 * Elasticsearch 8 does: the first value of a field fixes its type), the check of a document
 * against it, and the queries and aggregations es-dev answers (match_all, match_none, term,
 * terms, match, exists, range, bool; terms, avg, sum, min, max, value_count).
 * Not thread-safe: es-dev holds its store lock around every call. */
#ifndef RUNNEL_TOOLS_ES_INDEX_H
#define RUNNEL_TOOLS_ES_INDEX_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

struct es_index;

struct es_doc {
    char *id;
    char *source;  /* the document as it was sent (or as an update merged it), NUL-terminated */
    size_t source_length;
    long long version, seq_no;
};

/* An Elasticsearch error object: {"type": ..., "reason": ..., optional "caused_by"}. */
json_t *es_error_object(const char *type, const char *reason, const char *cause_type, const char *cause_reason);

/* NULL when name is a valid index name, else the reason (for invalid_index_name_exception). */
const char *es_index_name_problem(const char *name);

/* Creates an index; mappings is the "mappings" object of a create request, or NULL. Returns
 * NULL with *error set (a mapper_parsing_exception object, caller owns it) when a mapping is
 * not valid. Caller frees with es_index_free. */
struct es_index *es_index_new(const char *name, const json_t *mappings, json_t **error);
void es_index_free(struct es_index *index);

const char *es_index_name(const struct es_index *index);
const char *es_index_uuid(const struct es_index *index);
size_t es_index_doc_count(const struct es_index *index);
/* The "mappings" object as GET _mapping shows it (borrowed). */
const json_t *es_index_mappings(const struct es_index *index);

/* Checks document (a JSON object) against the mapping and, when it fits, adds the fields it
 * introduces. Returns true, or false with *error (mapper_parsing_exception,
 * strict_dynamic_mapping_exception; caller owns it) and the mapping unchanged. */
bool es_index_map(struct es_index *index, const char *id, const json_t *document, json_t **error);

const struct es_doc *es_index_get(const struct es_index *index, const char *id);
/* Stores source under id (creating or replacing; copies it). Returns the stored document, or
 * NULL when out of memory. */
const struct es_doc *es_index_put(struct es_index *index, const char *id, const char *source, size_t length);
/* Removes id; returns the new version of the deleted document (its last + 1), or 0 when absent. */
long long es_index_delete(struct es_index *index, const char *id, long long *seq_no);
/* The _seq_no the next write gets. */
long long es_index_next_seq_no(const struct es_index *index);

/* Documents in insertion order: for (size_t i = 0; i < es_index_slots(ix); i++) if
 * ((doc = es_index_slot(ix, i))) ... */
size_t es_index_slots(const struct es_index *index);
const struct es_doc *es_index_slot(const struct es_index *index, size_t slot);

/* ---- queries and aggregations ------------------------------------------------------------ */

struct es_query;

/* Compiles a query object (the value of "query"; NULL means match_all). Returns NULL with *error
 * (parsing_exception and friends; caller owns it). */
struct es_query *es_query_compile(const json_t *query, json_t **error);
void es_query_free(struct es_query *query);
bool es_query_is_match_all(const struct es_query *query);
/* Whether the document (its parsed _source) of index matches. */
bool es_query_match(const struct es_query *query, const struct es_index *index, const json_t *source);

struct es_aggs;

/* Compiles an "aggs"/"aggregations" object. indices are the indices searched (for field types:
 * a terms aggregation on a text field is refused as Elasticsearch refuses it). Returns NULL with
 * *error when the request is not valid; an empty object gives an empty set. */
struct es_aggs *es_aggs_compile(const json_t *aggs, struct es_index *const *indices, size_t index_count, json_t **error);
void es_aggs_add(struct es_aggs *aggs, const struct es_index *index, const json_t *source);
/* The "aggregations" member of the answer (caller owns it). */
json_t *es_aggs_result(const struct es_aggs *aggs);
void es_aggs_free(struct es_aggs *aggs);

#endif
