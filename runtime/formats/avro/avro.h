/* avro.h: the "avro" record format's options, which source.kafka and sink.kafka declare in
 * their own tables (the format reads them from there; see avro.c and the README's Avro section). */
#ifndef RUNNEL_AVRO_H
#define RUNNEL_AVRO_H

#include <lua.h>

#include "lua/options.h"

/* registry = { url, user, password, ca_file, timeout, retries, subject, subject_strategy,
 * auto_register }: the Schema Registry. */
extern const struct option_spec avro_registry_options[];

/* The check of a `schema` option: a file's path, the schema's JSON text, or a Lua table. */
int avro_check_schema_option(lua_State *L, int idx, struct rn_err *err);

#define AVRO_SCHEMA_HELP \
    "avro: the schema: a .avsc file's path, its JSON text, or a Lua table"
#define AVRO_REGISTRY_HELP "avro: the Schema Registry (Confluent's REST API)"

#endif
