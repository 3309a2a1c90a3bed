/* model_internal.h: model.c and openai.c internals exposed for tests and fuzzing (tests/fuzz/fuzz_answer.c),
 * not for the runtime. */
#ifndef RUNNEL_MODEL_INTERNAL_H
#define RUNNEL_MODEL_INTERNAL_H

#include "models/model.h"

/* Check a parsed answer against m's output declaration exactly as an answer in flight is
 * checked; when it validates, set the output fields on the record table at registry ref
 * record_ref. 0 on success; -1 with the reason appended to why. reply stays the caller's. */
int model_check_reply(struct model *m, const struct model_reply *reply, int record_ref, struct buf *why);

/* openai.c: the answer parser without its fast path (jansson only), so the fuzzer can check
 * that both read every body the same way. */
int openai_parse_tree(const char *body, size_t len, struct model_reply *reply, struct rn_err *err);

#endif
