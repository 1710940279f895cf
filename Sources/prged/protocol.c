#define _POSIX_C_SOURCE 200809L
#include "protocol.h"

#include "jsonparse.h"
#include "prge.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void rpc_error_set(struct rpc_error *e, int code, const char *fmt, ...) {
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

void rpc_error_library(struct rpc_error *e, int status, const char *what) {
    rpc_error_set(e, RPC_LIBRARY_BASE + status, "%s: %s (%s)", what, prge_last_error(),
                  prge_status_string(status));
}

int request_parse(const char *line, size_t len, struct request *req, struct rpc_error *e) {
    memset(req, 0, sizeof *req);
    char err[256];
    req->root = json_parse_strict(line, len, err, sizeof err);
    if (!req->root) {
        rpc_error_set(e, RPC_PARSE_ERROR, "%s", err);
        return -1;
    }
    if (!json_object_is_type(req->root, json_type_object)) {
        rpc_error_set(e, RPC_INVALID_REQUEST, "a request must be a JSON object");
        return -1;
    }
    struct json_object *id = NULL, *method = NULL, *params = NULL;
    if (json_object_object_get_ex(req->root, "id", &id) && id &&
        !json_object_is_type(id, json_type_string) && !json_object_is_type(id, json_type_int)) {
        rpc_error_set(e, RPC_INVALID_REQUEST, "id: must be a string, an integer or null");
        return -1;
    }
    req->id = id;
    json_object_object_foreach(req->root, key, val) {
        (void)val;
        if (strcmp(key, "id") != 0 && strcmp(key, "method") != 0 && strcmp(key, "params") != 0) {
            rpc_error_set(e, RPC_INVALID_REQUEST, "%s: unknown key (a request has id, method, params)", key);
            return -1;
        }
    }
    if (!json_object_object_get_ex(req->root, "method", &method) ||
        !json_object_is_type(method, json_type_string)) {
        rpc_error_set(e, RPC_INVALID_REQUEST, "method: required, a string");
        return -1;
    }
    req->method = json_object_get_string(method);
    if (json_object_object_get_ex(req->root, "params", &params) && params) {
        if (!json_object_is_type(params, json_type_object)) {
            rpc_error_set(e, RPC_INVALID_PARAMS, "params: must be an object");
            return -1;
        }
        req->params = params;
    } else {
        /* Handlers always get an object; it is kept alive by root. */
        req->params = json_object_new_object();
        if (!req->params) {
            rpc_error_set(e, RPC_INTERNAL, "out of memory");
            return -1;
        }
        json_object_object_add(req->root, "params", req->params);
    }
    return 0;
}

void request_free(struct request *req) {
    json_object_put(req->root);
    memset(req, 0, sizeof *req);
}

/* Serializes {"id": id, key: value} plus a newline; takes value. */
static char *reply_line(struct json_object *id, const char *key, struct json_object *value) {
    struct json_object *o = json_object_new_object();
    if (!o) {
        json_object_put(value);
        return NULL;
    }
    json_object_object_add(o, "id", json_object_get(id));
    json_object_object_add(o, key, value);
    size_t n;
    const char *s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &n);
    char *line = malloc(n + 2);
    if (line) {
        memcpy(line, s, n);
        line[n] = '\n';
        line[n + 1] = '\0';
    }
    json_object_put(o);
    return line;
}

char *reply_result(struct json_object *id, struct json_object *result) {
    return reply_line(id, "result", result ? result : json_object_new_object());
}

char *reply_error(struct json_object *id, const struct rpc_error *e) {
    struct json_object *err = json_object_new_object();
    if (!err) return NULL;
    json_object_object_add(err, "code", json_object_new_int(e->code));
    json_object_object_add(err, "message", json_object_new_string(e->message));
    return reply_line(id, "error", err);
}
