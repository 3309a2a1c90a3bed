/* bulk.h: the parts of Elasticsearch's _bulk API that sink.elasticsearch speaks, with no I/O:
 * index names that take a date (a strftime subset), the dates a field may hold, action lines,
 * and the answer's per-item results. Private to sinks/elasticsearch/.
 *
 * The answer is read with jansson: it is Elasticsearch's JSON, not the job's records, which the
 * sink sends as the pipeline encoded them and never reads back. */
#ifndef RUNNEL_SINKS_ES_BULK_H
#define RUNNEL_SINKS_ES_BULK_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

/* 0 when pattern is a valid index name or template: Elasticsearch's rules (lowercase, none of
 * \ / * ? " < > | , # or space, not starting with - _ +, not . or .., at most 255 bytes) on
 * its fixed part, and only %Y %m %d %H %j %% as conversions. -1 and err otherwise. */
int es_index_pattern_check(const char *pattern, struct rn_err *err);
/* Whether the pattern holds a conversion (its index name depends on the record). */
int es_index_pattern_dated(const char *pattern);
/* The index name of a document whose date is unix_s seconds, shown at offset_s seconds east
 * of UTC, appended to out. */
void es_index_format(const char *pattern, int64_t unix_s, int32_t offset_s, struct buf *out);

/* The date at stack index idx as Unix seconds: a number counts seconds (or milliseconds when
 * millis), a string is digits (the same) or ISO 8601 ("2024-03-01", "2024-03-01T10:00:00Z",
 * "2024-03-01T10:00:00.123+01:00"; no offset means UTC). -1 and err saying why not. */
int es_date_value(lua_State *L, int idx, int millis, int64_t *unix_s, struct rn_err *err);

/* {"ACTION":{"_index":"INDEX","_id":"ID"}}\n appended to out; id NULL: no _id. */
void es_action_line(struct buf *out, const char *action, const char *index, size_t index_len, const char *id,
                    size_t id_len);

/* One item of a bulk answer. */
struct es_item {
    int status;   /* the item's HTTP status */
    char *error;  /* "TYPE: REASON (caused by TYPE: REASON)" when the item has an error (owned), or NULL */
};

/* Read a 200 answer of count items into items[0..count) (the caller frees each error).
 * -1 and err when the body is not a bulk answer or holds another number of items. */
int es_bulk_answer(const char *body, size_t len, size_t count, struct es_item *items, struct rn_err *err);

/* The error of a whole-request answer ({"error":{"type","reason"},"status"}) as
 * "TYPE: REASON", or the start of the body when it is not that, into out. */
void es_request_error(const char *body, size_t len, struct buf *out);

#endif
