/* systemd's readiness protocol (sd_notify(3)) without libsystemd: one datagram such as
 * "READY=1" to the AF_UNIX socket named by $NOTIFY_SOCKET (a leading '@' means the abstract
 * namespace). Without $NOTIFY_SOCKET it does nothing. */
#ifndef PRGED_NOTIFY_H
#define PRGED_NOTIFY_H

/* Returns 0 (sent, or nobody listening for it) or -1 (errno set). */
int notify_send(const char *state);

#endif
