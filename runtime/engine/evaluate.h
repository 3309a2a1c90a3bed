/* evaluate.h: comparing a model's output with a ground-truth field of the same record
 * (`evaluate = { truth = "score", predicted = "rating" }`): accuracy, mean absolute error
 * for numeric labels, and a confusion matrix, printed at the end of a batch run. */
#ifndef RUNNEL_EVALUATE_H
#define RUNNEL_EVALUATE_H

#include <jansson.h>
#include <lua.h>
#include <stdio.h>
#include "core/util.h"

struct evaluation;

/* From the `evaluate` table at stack index tbl. NULL and err on a bad declaration. */
struct evaluation *eval_new(lua_State *L, int tbl, const char *where, struct rn_err *err);
/* Look at one predicted record (stack index rec). Records missing either field are counted as skipped. */
void eval_observe(struct evaluation *ev, lua_State *L, int rec);
void eval_print(struct evaluation *ev, FILE *out);
void eval_json(struct evaluation *ev, json_t *summary);
void eval_free(struct evaluation *ev);

#endif
