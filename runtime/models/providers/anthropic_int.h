/* anthropic_int.h: what anthropic_batch.c (Message Batches) reads of an open model.anthropic,
 * and its hooks; for the folder's files and their tests, not the runtime (which reaches the
 * provider through engine/registry.c). */
#ifndef RUNNEL_ANTHROPIC_INT_H
#define RUNNEL_ANTHROPIC_INT_H

#include "models/model.h"

extern const struct provider_ops anthropic_provider;

/* Lent: valid until the provider closes. */
struct anthropic_endpoint {
    const char *base;                  /* the endpoint, without a trailing slash */
    const struct curl_slist *headers;  /* every request's lines (x-api-key, anthropic-version, ...) */
};
void anthropic_endpoint_of(void *self, struct anthropic_endpoint *out);

extern const struct provider_batch_ops anthropic_batch_ops;

#endif
