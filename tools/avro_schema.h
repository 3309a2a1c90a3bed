/* avro_schema.h: Avro schemas read from their JSON form (Avro 1.11 specification) for the Schema
 * Registry stand-in: validation whose messages name the fault and where it is, the text the
 * registry stores (the same schema written with other spacing, key order or name qualification
 * gives the same text, so it gets the same id), and whether a reader schema can read what a
 * writer schema wrote by Avro's schema resolution rules. No data is encoded here. */
#ifndef RUNNEL_TOOLS_AVRO_SCHEMA_H
#define RUNNEL_TOOLS_AVRO_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

struct avro_schema;

/* Parses and checks a schema: names, types, duplicate fields, symbols and union branches,
 * references to named types defined earlier (recursion allowed), and defaults against their
 * types. Returns the schema (caller frees with avro_schema_free), or NULL with a message naming
 * the fault and its JSON path (e.g. "/fields/2/type: unknown type 'strin'") in error. */
struct avro_schema *avro_schema_parse(const char *text, size_t length, char *error, size_t error_size);
void avro_schema_free(struct avro_schema *schema);

/* The registry's text of the schema: compact JSON, a fixed key order, primitives without
 * attributes written as bare names, names relative to the enclosing namespace. Owned by the
 * schema. */
const char *avro_schema_text(const struct avro_schema *schema);

/* Whether data written with writer can be read with reader (Avro schema resolution: added reader
 * fields need defaults, promotions int→long→float→double and string↔bytes, enum symbols, fixed
 * sizes, names or aliases, unions). When it cannot and problems is an array, one string per
 * incompatibility is appended, in the registry's style ("{errorType:'...', description:'...',
 * additionalInfo:'...'}"); reader_label and writer_label ("new", "old") name the two in them. */
bool avro_schema_can_read(const struct avro_schema *reader, const struct avro_schema *writer, json_t *problems,
                          const char *reader_label, const char *writer_label);

#endif
