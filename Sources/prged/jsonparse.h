/* Strict JSON parsing shared by the config file and the wire protocol. */
#ifndef PRGED_JSONPARSE_H
#define PRGED_JSONPARSE_H

#include <json-c/json.h>
#include <stddef.h>

/* Parses exactly one JSON value from `len` bytes (surrounding whitespace allowed, anything
 * else after the value is an error). Returns a new reference, or NULL with a message in err. */
struct json_object *json_parse_strict(const char *buf, size_t len, char *err, size_t errlen);

#endif
