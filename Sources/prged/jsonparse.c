#include "jsonparse.h"

#include <stdio.h>

/* json-c's default nesting limit is 32: more than any request or config needs. */
struct json_object *json_parse_strict(const char *buf, size_t len, char *err, size_t errlen) {
    /* json_tokener_parse_ex takes an int length. */
    if (len > (size_t)1 << 30) {
        snprintf(err, errlen, "JSON text too large");
        return NULL;
    }
    struct json_tokener *tok = json_tokener_new();
    if (!tok) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    /* STRICT: no trailing commas, no single quotes, no bare words, no comments. */
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    struct json_object *obj = json_tokener_parse_ex(tok, buf, (int)len);
    enum json_tokener_error e = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    if (e == json_tokener_continue) {
        /* A bare number is only complete once the tokener sees the end. */
        obj = json_tokener_parse_ex(tok, "", 1);
        e = json_tokener_get_error(tok);
        end = len;
    }
    if (!obj || e != json_tokener_success) {
        snprintf(err, errlen, "malformed JSON at byte %zu: %s", end,
                 e == json_tokener_continue ? "unexpected end of input" : json_tokener_error_desc(e));
        json_object_put(obj);
        json_tokener_free(tok);
        return NULL;
    }
    json_tokener_free(tok);
    for (size_t i = end; i < len; i++) {
        char c = buf[i];
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
            snprintf(err, errlen, "malformed JSON: unexpected text after the value at byte %zu", i);
            json_object_put(obj);
            return NULL;
        }
    }
    return obj;
}
