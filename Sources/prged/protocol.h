/* The wire protocol: one JSON object per line in each direction.
 *   request  {"id": ID, "method": "name", "params": {...}}     id: string, integer or null;
 *                                                                params optional
 *   reply    {"id": ID, "result": {...}}
 *         or {"id": ID, "error": {"code": N, "message": "..."}}
 * Error codes: the JSON-RPC 2.0 ones for protocol errors, prged's own above 1000, and
 * 2000 + prge_status for errors of the library (message = prge_last_error()). */
#ifndef PRGED_PROTOCOL_H
#define PRGED_PROTOCOL_H

#include <json-c/json.h>
#include <stddef.h>

enum rpc_code {
    RPC_PARSE_ERROR = -32700,      /* the line is not JSON                           */
    RPC_INVALID_REQUEST = -32600,  /* JSON, but not a request object                 */
    RPC_METHOD_NOT_FOUND = -32601,
    RPC_INVALID_PARAMS = -32602,
    RPC_INTERNAL = -32603,
    RPC_TOO_LARGE = 1001,          /* the line is longer than limits.max_request_bytes */
    RPC_NO_PROFILE = 1002,         /* no such profile (and not asked to create it)     */
    RPC_BUSY = 1003,               /* training already runs                            */
    RPC_STATE = 1004,              /* not valid now (no examples, not training, ...)   */
    RPC_DURABILITY = 1005,         /* the journal could not be written: nothing was acknowledged */
    RPC_SHUTTING_DOWN = 1006,
    RPC_TOO_MANY_CLIENTS = 1007,
    RPC_LIBRARY_BASE = 2000        /* + prge_status                                    */
};

/* An error a method handler reports: turned into the reply's "error" member. */
struct rpc_error {
    int code;
    char message[512];
};

void rpc_error_set(struct rpc_error *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sets e from the calling thread's prge_last_error(), prefixed with what was being done. */
void rpc_error_library(struct rpc_error *e, int status, const char *what);

/* A parsed request. `root` owns everything; id, method and params borrow from it. */
struct request {
    struct json_object *root;
    struct json_object *id;     /* NULL means JSON null */
    const char *method;
    struct json_object *params; /* always an object (an empty one if absent) */
};

/* Parses one line (without its newline). Returns 0, or -1 with e set; on failure req->id is
 * the request's id when it could be read, so the error reply can still carry it. */
int request_parse(const char *line, size_t len, struct request *req, struct rpc_error *e);
void request_free(struct request *req);

/* Reply lines, newline-terminated, malloc'ed (NULL only when out of memory). */
char *reply_result(struct json_object *id, struct json_object *result); /* takes result */
char *reply_error(struct json_object *id, const struct rpc_error *e);

#endif
