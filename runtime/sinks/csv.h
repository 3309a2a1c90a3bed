/* csv.h: sink.csv's row, the one encoder of what sink.csv writes for a record, shared with
 * runnel test's stand-in (engine/jobtest.c) so a test shows the row the sink would write. */
#ifndef RUNNEL_CSV_SINK_H
#define RUNNEL_CSV_SINK_H

#include <lua.h>
#include "engine/plugin.h"

struct csv_row {
    char delimiter;
    char **columns;      /* `columns`, or the first record's fields; owned */
    size_t ncolumns;
    struct buf scratch;  /* a table field's JSON */
};

/* Read sink.csv's `delimiter` and `columns` from the options table at opts (checked by then). */
void csv_row_open(struct csv_row *row, lua_State *L, int opts);
/* Append the record's row (no line end) to out, after the header row and its line end when
 * `header`; the columns are this first record's fields when none were declared. -1 and err
 * naming the column when a value cannot be encoded; out is then as it was. */
int csv_row_put(struct csv_row *row, lua_State *L, struct sink_record *record, int header, struct buf *out,
                struct rn_err *err);
void csv_row_close(struct csv_row *row);

#endif
