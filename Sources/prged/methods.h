/* The methods of the protocol. Quick ones run inline on the poll thread; ones that compute,
 * fsync or wait are queued to the request threads (server.c). */
#ifndef PRGED_METHODS_H
#define PRGED_METHODS_H

#include "daemon.h"
#include "protocol.h"

#include <json-c/json.h>

/* Per connection. */
struct session {
    char profile[PROFILE_NAME_MAX + 1]; /* the profile methods use when params.profile is absent */
};

typedef int (*method_fn)(struct daemon *d, struct session *s, struct json_object *params,
                         struct json_object **result, struct rpc_error *e);

struct method {
    const char *name;
    method_fn fn;
    int queued; /* runs on a request thread */
};

/* NULL if there is no such method. */
const struct method *method_find(const char *name);

#endif
