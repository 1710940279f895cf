/* The socket side: a poll() loop on the main thread that accepts clients, splits their bytes
 * into request lines, answers quick methods inline and hands slow ones to a pool of request
 * threads. A connection's requests are answered in order: while one of its requests runs on
 * a request thread, its further lines wait. Other connections go on meanwhile. */
#ifndef PRGED_SERVER_H
#define PRGED_SERVER_H

#include "daemon.h"

#include <stddef.h>

/* Binds the listening socket at `path` (mode 0600). An existing socket file is replaced only
 * if no daemon answers on it; any other kind of file there is an error. */
int server_listen(const char *path, char *err, size_t errlen);

/* Serves until SIGTERM, SIGINT or a shutdown request, then stops training (which finishes
 * its step and checkpoints), answers requests already running, and returns. SIGHUP reloads
 * the config. signal_fd is a signalfd for SIGTERM, SIGINT and SIGHUP. Returns 0, or -1 if
 * the loop itself failed. */
int server_run(struct daemon *d, int listen_fd, int signal_fd);

#endif
