/* registry.h: a Confluent Schema Registry client for the Avro format: schemas fetched by id,
 * schemas registered (or looked up) under a subject, over the shared HTTP client (core/http.h).
 *
 * Each call blocks until its answer or its bound: `timeout` per attempt, `retries` more attempts
 * after a 5xx, a 429 or a connection error (250 ms, doubling). It is called when a format opens
 * and when a message names a schema id not seen before, so a stream blocks only on new ids.
 * Errors name the registry, the request, the HTTP status and the registry's error_code and
 * message: "schema registry http://h:8081: GET /schemas/ids/7: HTTP 404, error 40403: Schema 7
 * not found". */
#ifndef RUNNEL_AVRO_REGISTRY_H
#define RUNNEL_AVRO_REGISTRY_H

#include <lua.h>
#include <stdint.h>

#include "core/secret.h"
#include "core/util.h"

enum registry_result {
    REGISTRY_OK = 0,
    REGISTRY_NOT_FOUND,   /* 404: the id, subject or version does not exist (40401, 40402, 40403) */
    REGISTRY_REFUSED,     /* the registry will not take it: 409 incompatible, 422 invalid, 401/403 */
    REGISTRY_UNAVAILABLE, /* 5xx, 429 or no answer, after the retries */
};

struct avro_registry;

/* Open from the checked `registry` options table at stack index tbl; the password (a string or
 * secret()) is added to secrets. NULL and err naming the option. */
struct avro_registry *avro_registry_open(lua_State *L, int tbl, struct secret_set *secrets, struct rn_err *err);
void avro_registry_close(struct avro_registry *r);
const char *avro_registry_url(const struct avro_registry *r);

/* GET /schemas/ids/ID: the schema text into out. REGISTRY_OK, or another result and err. */
enum registry_result avro_registry_schema(struct avro_registry *r, uint32_t id, struct buf *out, struct rn_err *err);
/* POST /subjects/SUBJECT/versions {"schema": text}: its id. With lookup_only, POST
 * /subjects/SUBJECT instead: the id of the schema if the subject has it, registering nothing. */
enum registry_result avro_registry_register(struct avro_registry *r, const char *subject, const char *schema,
                                            int lookup_only, uint32_t *id, struct rn_err *err);

#endif
