#define _GNU_SOURCE /* accept4, SO_PEERCRED, struct ucred */
#include "server.h"

#include "log.h"
#include "methods.h"
#include "notify.h"
#include "protocol.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* Replies a client has not read yet; past this it is dropped rather than held in memory. */
#define OUT_MAX ((size_t)16 << 20)
/* After the work is done at shutdown, how long unread replies may keep us. */
#define FLUSH_SECONDS 5.0

struct client {
    int fd;
    uint64_t id; /* never reused, so a late reply cannot reach a newer connection */
    char *in;
    size_t in_len, in_cap;
    int discarding; /* the rest of an oversized line is being skipped */
    char *out;
    size_t out_len, out_off;
    int busy;       /* a request of this client runs on a request thread */
    int eof;        /* the peer closed its side: close once its replies are written */
    int dead;       /* an I/O error: close now */
    struct session session;
};

struct job {
    struct job *next;
    uint64_t client_id;
    struct request req;
    const struct method *m;
    struct session session; /* a copy: the client may be gone when the job ends */
    char *reply;
};

struct server {
    struct daemon *d;
    struct client **clients;
    size_t n_clients, cap_clients;
    uint64_t next_id;
    pthread_mutex_t mu; /* the job lists */
    pthread_cond_t cond;
    struct job *pending, **pending_tail, *done;
    int closing;
    pthread_t *threads;
    size_t n_threads;
    int shutting_down;
};

/* ---- request threads --------------------------------------------------------------------- */

static void *request_thread(void *arg) {
    struct server *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->pending && !s->closing) pthread_cond_wait(&s->cond, &s->mu);
        struct job *j = s->pending;
        if (!j) {
            pthread_mutex_unlock(&s->mu);
            return NULL;
        }
        s->pending = j->next;
        if (!s->pending) s->pending_tail = &s->pending;
        pthread_mutex_unlock(&s->mu);

        struct json_object *result = NULL;
        struct rpc_error e;
        if (j->m->fn(s->d, &j->session, j->req.params, &result, &e) == 0)
            j->reply = reply_result(j->req.id, result);
        else
            j->reply = reply_error(j->req.id, &e);

        pthread_mutex_lock(&s->mu);
        j->next = s->done;
        s->done = j;
        pthread_mutex_unlock(&s->mu);
        daemon_wake(s->d);
    }
}

static void submit(struct server *s, struct job *j) {
    pthread_mutex_lock(&s->mu);
    j->next = NULL;
    *s->pending_tail = j;
    s->pending_tail = &j->next;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->mu);
}

/* ---- clients ----------------------------------------------------------------------------- */

static struct client *find_client(struct server *s, uint64_t id) {
    for (size_t i = 0; i < s->n_clients; i++)
        if (s->clients[i]->id == id) return s->clients[i];
    return NULL;
}

static void flush_out(struct client *c) {
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (w < 0) {
            c->dead = 1;
            return;
        }
        c->out_off += (size_t)w;
    }
    c->out_off = c->out_len = 0;
}

/* Queues a reply line (taking it) and writes what the socket takes now. */
static void send_line(struct client *c, char *line) {
    if (!line) {
        log_error("out of memory building a reply; dropping the client");
        c->dead = 1;
        return;
    }
    size_t n = strlen(line);
    if (c->out_len - c->out_off + n > OUT_MAX) {
        log_warn("client %llu does not read its replies; dropping it", (unsigned long long)c->id);
        c->dead = 1;
        free(line);
        return;
    }
    if (c->out_off > 0) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
    }
    char *nb = realloc(c->out, c->out_len + n);
    if (!nb) {
        c->dead = 1;
        free(line);
        return;
    }
    c->out = nb;
    memcpy(c->out + c->out_len, line, n);
    c->out_len += n;
    free(line);
    flush_out(c);
}

static void send_error(struct client *c, struct json_object *id, int code, const char *msg) {
    struct rpc_error e;
    rpc_error_set(&e, code, "%s", msg);
    send_line(c, reply_error(id, &e));
}

/* One complete line (newline removed). Returns 1 if it went to a request thread. */
static int handle_line(struct server *s, struct client *c, char *line, size_t len) {
    while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t')) len--;
    size_t start = 0;
    while (start < len && (line[start] == ' ' || line[start] == '\t')) start++;
    if (start == len) return 0; /* blank lines are allowed, e.g. from hand-typed sessions */
    struct request req;
    struct rpc_error e;
    if (request_parse(line + start, len - start, &req, &e) < 0) {
        send_line(c, reply_error(req.id, &e));
        request_free(&req);
        return 0;
    }
    const struct method *m = method_find(req.method);
    if (!m) {
        rpc_error_set(&e, RPC_METHOD_NOT_FOUND, "no method \"%.100s\"", req.method);
        send_line(c, reply_error(req.id, &e));
    } else if (s->shutting_down) {
        rpc_error_set(&e, RPC_SHUTTING_DOWN, "the daemon is shutting down");
        send_line(c, reply_error(req.id, &e));
    } else if (!m->queued) {
        struct json_object *result = NULL;
        if (m->fn(s->d, &c->session, req.params, &result, &e) == 0)
            send_line(c, reply_result(req.id, result));
        else
            send_line(c, reply_error(req.id, &e));
    } else {
        struct job *j = calloc(1, sizeof *j);
        if (!j) {
            send_error(c, req.id, RPC_INTERNAL, "out of memory");
        } else {
            j->client_id = c->id;
            j->req = req;
            j->m = m;
            j->session = c->session;
            c->busy = 1;
            submit(s, j);
            return 1;
        }
    }
    request_free(&req);
    return 0;
}

/* Handles the complete lines buffered for c, stopping when one goes to a request thread. */
static void process_input(struct server *s, struct client *c) {
    if (!c->in) return;
    size_t max = (size_t)daemon_limits(s->d).max_request_bytes;
    size_t pos = 0;
    while (!c->busy && !c->dead) {
        char *nl = memchr(c->in + pos, '\n', c->in_len - pos);
        if (!nl) {
            if (c->discarding) {
                pos = c->in_len;
            } else if (c->in_len - pos > max) {
                char msg[128];
                snprintf(msg, sizeof msg, "request longer than %zu bytes", max);
                send_error(c, NULL, RPC_TOO_LARGE, msg);
                c->discarding = 1;
                pos = c->in_len;
            }
            break;
        }
        size_t len = (size_t)(nl - (c->in + pos));
        if (c->discarding) {
            c->discarding = 0;
        } else if (len > max) {
            char msg[128];
            snprintf(msg, sizeof msg, "request longer than %zu bytes", max);
            send_error(c, NULL, RPC_TOO_LARGE, msg);
        } else {
            handle_line(s, c, c->in + pos, len);
        }
        pos += len + 1;
    }
    memmove(c->in, c->in + pos, c->in_len - pos);
    c->in_len -= pos;
}

static void read_input(struct server *s, struct client *c) {
    /* Room for one maximal line, its newline and one byte that proves a line too long; grown
     * as lines need it, so idle connections cost little. It never shrinks: a reload that
     * lowers the limit does not cut a buffered line. */
    size_t limit = (size_t)daemon_limits(s->d).max_request_bytes + 2;
    if (c->in_len >= limit) return;
    if (c->in_len == c->in_cap) {
        size_t cap = c->in_cap ? 2 * c->in_cap : 4096;
        if (cap > limit) cap = limit;
        char *nb = realloc(c->in, cap);
        if (!nb) {
            c->dead = 1;
            return;
        }
        c->in = nb;
        c->in_cap = cap;
    }
    size_t room = (c->in_cap < limit ? c->in_cap : limit) - c->in_len;
    ssize_t r = recv(c->fd, c->in + c->in_len, room, MSG_DONTWAIT);
    if (r < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (r <= 0) {
        c->eof = 1;
        return;
    }
    c->in_len += (size_t)r;
    process_input(s, c);
}

static void close_client(struct server *s, size_t i) {
    struct client *c = s->clients[i];
    log_debug("client %llu: closed", (unsigned long long)c->id);
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
    s->clients[i] = s->clients[--s->n_clients];
    s->d->n_clients = s->n_clients;
}

static int uid_allowed(struct daemon *d, uid_t uid) {
    if (uid == geteuid()) return 1;
    for (size_t i = 0; i < d->cfg.n_allowed_uids; i++)
        if (d->cfg.allowed_uids[i] == uid) return 1;
    return 0;
}

/* Refuses a connection with one error line; best effort, the socket is fresh and empty. */
static void refuse(int fd, int code, const char *msg) {
    struct rpc_error e;
    rpc_error_set(&e, code, "%s", msg);
    char *line = reply_error(NULL, &e);
    if (line) {
        ssize_t w = send(fd, line, strlen(line), MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)w;
        free(line);
    }
    close(fd);
}

static void accept_clients(struct server *s, int listen_fd) {
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                log_warn("accept: %s", strerror(errno));
            return;
        }
        struct ucred cred = {.pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1};
        socklen_t len = sizeof cred;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || !uid_allowed(s->d, cred.uid)) {
            log_warn("refused a connection from uid %d (not allowed_uids)", (int)cred.uid);
            close(fd);
            continue;
        }
        if (s->n_clients >= (size_t)daemon_limits(s->d).max_clients) {
            log_warn("refused a connection: limits.max_clients reached");
            refuse(fd, RPC_TOO_MANY_CLIENTS, "too many clients (limits.max_clients)");
            continue;
        }
        if (s->n_clients == s->cap_clients) {
            size_t cap = s->cap_clients ? 2 * s->cap_clients : 16;
            struct client **nb = realloc(s->clients, cap * sizeof *nb);
            if (!nb) {
                close(fd);
                continue;
            }
            s->clients = nb;
            s->cap_clients = cap;
        }
        struct client *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->id = ++s->next_id;
        snprintf(c->session.profile, sizeof c->session.profile, "%s", s->d->cfg.default_profile);
        s->clients[s->n_clients++] = c;
        s->d->n_clients = s->n_clients;
        log_debug("client %llu: connected (uid %d, pid %d)", (unsigned long long)c->id,
                  (int)cred.uid, (int)cred.pid);
    }
}

/* Replies of finished jobs go to their clients, which may then go on with buffered lines. */
static void deliver_done(struct server *s) {
    pthread_mutex_lock(&s->mu);
    struct job *j = s->done;
    s->done = NULL;
    pthread_mutex_unlock(&s->mu);
    while (j) {
        struct job *next = j->next;
        struct client *c = find_client(s, j->client_id);
        if (c) {
            c->session = j->session;
            c->busy = 0;
            send_line(c, j->reply);
            j->reply = NULL;
            process_input(s, c);
        }
        free(j->reply);
        request_free(&j->req);
        free(j);
        j = next;
    }
}

/* ---- the loop ---------------------------------------------------------------------------- */

static void begin_shutdown(struct server *s, int *listen_fd, const char *why) {
    if (s->shutting_down) return;
    log_info("shutting down (%s): finishing the current step and checkpointing", why);
    notify_send("STOPPING=1");
    s->shutting_down = 1;
    close(*listen_fd);
    *listen_fd = -1;
    worker_quit(&s->d->worker);
}

static int any_busy(struct server *s) {
    for (size_t i = 0; i < s->n_clients; i++)
        if (s->clients[i]->busy) return 1;
    return 0;
}

static int any_unsent(struct server *s) {
    for (size_t i = 0; i < s->n_clients; i++)
        if (s->clients[i]->out_len > s->clients[i]->out_off) return 1;
    return 0;
}

static void handle_signals(struct server *s, int signal_fd, int *listen_fd) {
    struct signalfd_siginfo si;
    while (read(signal_fd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGHUP) daemon_reload(s->d);
        else begin_shutdown(s, listen_fd, si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
    }
}

static void drain_wake(int fd) {
    uint64_t v;
    while (read(fd, &v, sizeof v) == (ssize_t)sizeof v) {}
}

int server_run(struct daemon *d, int listen_fd, int signal_fd) {
    struct server s = {.d = d};
    s.pending_tail = &s.pending;
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cond, NULL);
    s.n_threads = (size_t)d->cfg.request_threads;
    s.threads = calloc(s.n_threads, sizeof *s.threads);
    int rc = 0;
    size_t started = 0;
    while (s.threads && started < s.n_threads &&
           pthread_create(&s.threads[started], NULL, request_thread, &s) == 0)
        started++;
    if (started < s.n_threads) {
        log_error("cannot start the request threads");
        rc = -1;
        begin_shutdown(&s, &listen_fd, "startup failed");
    }

    struct pollfd *fds = NULL;
    double flush_deadline = 0;
    for (;;) {
        if (d->shutdown_requested) begin_shutdown(&s, &listen_fd, "shutdown request");
        if (s.shutting_down && worker_exited(&d->worker) && !any_busy(&s)) {
            if (flush_deadline == 0) flush_deadline = mono_now() + FLUSH_SECONDS;
            if (!any_unsent(&s) || mono_now() >= flush_deadline) break;
        }
        struct pollfd *nf = realloc(fds, (3 + s.n_clients) * sizeof *nf);
        if (!nf) {
            log_error("out of memory in the poll loop");
            rc = -1;
            break;
        }
        fds = nf;
        nfds_t n = 0;
        fds[n++] = (struct pollfd){.fd = signal_fd, .events = POLLIN};
        fds[n++] = (struct pollfd){.fd = d->wake_fd, .events = POLLIN};
        fds[n++] = (struct pollfd){.fd = listen_fd, .events = POLLIN}; /* -1 is skipped */
        for (size_t i = 0; i < s.n_clients; i++) {
            struct client *c = s.clients[i];
            short ev = 0;
            /* A busy client's further requests wait in the kernel: backpressure for free. */
            if (!c->busy && !c->eof && !s.shutting_down) ev |= POLLIN;
            if (c->out_len > c->out_off) ev |= POLLOUT;
            fds[n++] = (struct pollfd){.fd = c->fd, .events = ev};
        }
        int timeout = flush_deadline > 0 ? 100 : -1;
        if (poll(fds, n, timeout) < 0) {
            if (errno == EINTR) continue;
            log_error("poll: %s", strerror(errno));
            rc = -1;
            break;
        }
        if (fds[0].revents & POLLIN) handle_signals(&s, signal_fd, &listen_fd);
        if (fds[1].revents & POLLIN) {
            drain_wake(d->wake_fd);
            deliver_done(&s);
        }
        if (listen_fd >= 0 && (fds[2].revents & POLLIN)) accept_clients(&s, listen_fd);
        /* Clients are matched to their pollfd by fd: the array may have changed above. */
        for (nfds_t k = 3; k < n; k++) {
            struct client *c = NULL;
            for (size_t i = 0; i < s.n_clients && !c; i++)
                if (s.clients[i]->fd == fds[k].fd) c = s.clients[i];
            if (!c || !fds[k].revents) continue;
            if (fds[k].revents & POLLOUT) flush_out(c);
            if (fds[k].revents & POLLIN) read_input(&s, c);
            else if (fds[k].revents & (POLLHUP | POLLERR)) c->eof = 1;
        }
        for (size_t i = s.n_clients; i-- > 0;) {
            struct client *c = s.clients[i];
            if (c->dead || (c->eof && !c->busy && c->out_len == c->out_off)) close_client(&s, i);
        }
    }

    pthread_mutex_lock(&s.mu);
    s.closing = 1;
    pthread_cond_broadcast(&s.cond);
    pthread_mutex_unlock(&s.mu);
    for (size_t i = 0; i < started; i++) pthread_join(s.threads[i], NULL);
    deliver_done(&s);
    while (s.n_clients > 0) close_client(&s, s.n_clients - 1);
    if (listen_fd >= 0) close(listen_fd);
    free(s.clients);
    free(s.threads);
    free(fds);
    pthread_cond_destroy(&s.cond);
    pthread_mutex_destroy(&s.mu);
    return rc;
}

int server_listen(const char *path, char *err, size_t errlen) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path)
        return snprintf(err, errlen, "socket: %s: path too long", path), -1;
    memcpy(sa.sun_path, path, strlen(path));
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return snprintf(err, errlen, "socket: %s exists and is not a socket", path), -1;
        /* A socket file left by a crash is stale; one somebody answers on is another daemon. */
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int alive = probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0;
        if (probe >= 0) close(probe);
        if (alive) return snprintf(err, errlen, "socket: %s: another daemon is serving it", path), -1;
        if (unlink(path) < 0) return snprintf(err, errlen, "socket: %s: %s", path, strerror(errno)), -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return snprintf(err, errlen, "socket: %s", strerror(errno)), -1;
    /* The umask makes the file 0600 from its first moment; chmod states it explicitly. */
    mode_t old = umask(0177);
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (rc < 0 || chmod(path, 0600) < 0 || listen(fd, 128) < 0) {
        snprintf(err, errlen, "socket: %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}
