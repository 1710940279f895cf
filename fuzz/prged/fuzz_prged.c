/*
 * libFuzzer target for the daemon's parsers (Sources/prged), built without libprge (the two
 * prge.h functions protocol.c uses for messages are stubbed below). PRGED_FUZZ_TARGET picks:
 *   request        one request line as server.c's handle_line gets it: trimmed, then
 *                  request_parse, then the reply (reply_error / reply_result echoing the id and
 *                  the params), serialized as the daemon sends it.
 *   daemon-config  the bytes as a config file -> config_load (read through a memfd).
 */
#define _GNU_SOURCE
#include "config.h"
#include "protocol.h"

#include "prge.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

const char *prge_last_error(void) { return "stub"; }
const char *prge_status_string(prge_status s) { return s == PRGE_OK ? "ok" : "error"; }

static int target_config;
static int memfd = -1;
static char memfd_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *t = getenv("PRGED_FUZZ_TARGET");
    if (!t || (strcmp(t, "request") != 0 && strcmp(t, "daemon-config") != 0)) {
        fprintf(stderr, "prged-fuzz: set PRGED_FUZZ_TARGET to request or daemon-config\n");
        exit(2);
    }
    target_config = strcmp(t, "daemon-config") == 0;
    if (target_config) {
        memfd = memfd_create("prged-fuzz-config", 0);
        if (memfd < 0) {
            perror("memfd_create");
            exit(2);
        }
        snprintf(memfd_path, sizeof memfd_path, "/proc/self/fd/%d", memfd);
    }
    return 0;
}

static void fuzz_request(const uint8_t *data, size_t size) {
    /* handle_line gets a heap copy of the line without its newline. */
    char *line = malloc(size ? size : 1);
    if (!line) return;
    memcpy(line, data, size);
    size_t len = size, start = 0;
    while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t')) len--;
    while (start < len && (line[start] == ' ' || line[start] == '\t')) start++;
    if (start < len) {
        struct request req;
        struct rpc_error e;
        char *reply;
        if (request_parse(line + start, len - start, &req, &e) < 0) {
            reply = reply_error(req.id, &e);
        } else {
            if (strlen(req.method) > 4096) abort(); /* the method is bounded by the line */
            reply = reply_result(req.id, json_object_get(req.params));
        }
        if (reply && reply[strlen(reply) - 1] != '\n') abort();
        free(reply);
        request_free(&req);
    }
    free(line);
}

static void fuzz_config(const uint8_t *data, size_t size) {
    if (ftruncate(memfd, 0) != 0 || pwrite(memfd, data, size, 0) != (ssize_t)size) abort();
    struct config c;
    char err[512];
    err[0] = '\0';
    if (config_load(memfd_path, &c, err, sizeof err) == 0) {
        if (!c.socket_path || !c.state_dir || !c.model_path || !c.trainer_json || !c.default_profile)
            abort();
        config_free(&c);
    } else if (err[0] == '\0') {
        abort(); /* every failure names its cause */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (target_config) fuzz_config(data, size);
    else fuzz_request(data, size);
    return 0;
}
