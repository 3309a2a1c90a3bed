/* csv.h: CSV fields (RFC 4180 quoting), for sink.csv, and the "csv" record format of
 * source.kafka and sink.kafka: one message value is one row of `columns` (formats/format.h). */
#ifndef RUNNEL_CSV_FORMAT_H
#define RUNNEL_CSV_FORMAT_H

#include <lua.h>
#include "core/util.h"

/* Append text as one field, quoted when it holds the delimiter, a quote or a line break. */
void csv_put_text(struct buf *out, const char *text, size_t n, char delimiter);

/* Append the Lua value at idx as one field: nil is empty, booleans are true/false, strings
 * their text, numbers as JSON writes them, tables their JSON (built in the caller's scratch
 * buffer). -1 and err when a value cannot be encoded. */
int csv_put_value(struct buf *out, lua_State *L, int idx, char delimiter, struct buf *scratch, struct rn_err *err);

/* Append the fields `columns` of the table at rec as one row (no line end), each by
 * csv_put_value. -1 and err naming the column when one cannot be encoded; out is then cut back
 * to what it held before. */
int csv_put_row(struct buf *out, lua_State *L, int rec, char *const *columns, size_t ncolumns, char delimiter,
                struct buf *scratch, struct rn_err *err);

#endif
