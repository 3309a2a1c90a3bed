/* openai_int.h: openai.c's declarations for its tests and fuzzers (tests/fuzz/fuzz_answer.c,
 * tests/unit/test_providers.c), not for the runtime, which reaches the provider through
 * engine/registry.c. */
#ifndef RUNNEL_OPENAI_INT_H
#define RUNNEL_OPENAI_INT_H

#include "models/model.h"

extern const struct provider_ops openai_provider;

/* The answer parser without its fast path (jansson only), so the fuzzer can check that both
 * read every body the same way. 0, or -1 and err. reply as for provider_ops.parse. */
int openai_parse_tree(const char *body, size_t len, struct model_reply *reply, struct rn_err *err);

#endif
