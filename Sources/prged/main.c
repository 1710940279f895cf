/*
 * prged: keeps a GGUF model loaded, takes users' examples over a Unix socket, fine-tunes one
 * LoRA adapter per profile in the background with P-RGE, and answers classify/generate
 * requests with the current adapter. Uses only the public prge.h. See docs/DAEMON.md.
 *
 *   prged CONFIG.json                 run (systemd Type=notify: READY=1 once serving)
 *   prged --check-config CONFIG.json  validate the config (and the model and trainer options)
 */
#define _GNU_SOURCE /* signalfd, eventfd, flock */
#include "config.h"
#include "daemon.h"
#include "fsutil.h"
#include "log.h"
#include "notify.h"
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f, "usage: prged CONFIG.json\n"
               "       prged --check-config CONFIG.json\n"
               "       prged --version\n");
}

static prge_model *load_model(const struct config *c) {
    prge_model_params mp;
    prge_model_default_params(&mp);
    mp.n_threads = (int32_t)c->threads;
    mp.numeric_mode = c->numeric_mode;
    prge_model *m = NULL;
    prge_status st = prge_model_load(c->model_path, &mp, &m);
    if (st != PRGE_OK) log_error("model: %s: %s", c->model_path, prge_last_error());
    return m;
}

/* The structure was checked by config_load; the model and the trainer options can only be
 * checked by the library itself. */
static int check_config(const char *path) {
    struct config c;
    char err[512];
    if (config_load(path, &c, err, sizeof err) < 0) {
        fprintf(stderr, "prged: %s\n", err);
        return 1;
    }
    int rc = 1;
    prge_model *m = load_model(&c);
    if (m) {
        prge_trainer *t = NULL;
        prge_status st = prge_trainer_create(m, NULL, c.trainer_json, &t);
        if (st != PRGE_OK) {
            fprintf(stderr, "prged: trainer: %s\n", prge_last_error());
        } else {
            printf("%s: ok\n", path);
            rc = 0;
        }
        prge_trainer_free(t);
        prge_model_free(m);
    }
    config_free(&c);
    return rc;
}

/* Two daemons on one state directory would interleave their journal writes. */
static int lock_state_dir(const char *dir) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_error("%s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        log_error("%s: another prged uses this state_dir", path);
        close(fd);
        return -1;
    }
    return fd; /* held (open) until exit */
}

static int run(const char *config_path) {
    struct daemon d;
    memset(&d, 0, sizeof d);
    d.config_path = config_path;
    d.wake_fd = -1;
    char err[512];
    if (config_load(config_path, &d.cfg, err, sizeof err) < 0) {
        log_error("%s", err);
        return 1;
    }
    log_set_level(d.cfg.log_level);
    if (prge_abi_version() != PRGE_ABI_VERSION) {
        log_error("libprge has ABI version %d, prged was built for %d", prge_abi_version(), PRGE_ABI_VERSION);
        config_free(&d.cfg);
        return 1;
    }

    /* Signals arrive through a signalfd in the poll loop; they are blocked before any thread
     * starts so that every thread inherits the mask and none is interrupted by them. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN); /* a client gone mid-reply is an error return, not a death */
    int signal_fd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    d.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pthread_mutex_init(&d.settings_mu, NULL);
    gate_init(&d.gate);

    int rc = 1, lock_fd = -1, listen_fd = -1, worker_started = 0;
    struct stat sock_st;
    if (signal_fd < 0 || d.wake_fd < 0) {
        log_error("signalfd/eventfd: %s", strerror(errno));
        goto out;
    }
    if (mkdir_durable(d.cfg.state_dir) < 0) {
        log_error("state_dir: %s: %s", d.cfg.state_dir, strerror(errno));
        goto out;
    }
    if ((lock_fd = lock_state_dir(d.cfg.state_dir)) < 0) goto out;
    double t0 = mono_now();
    if (!(d.model = load_model(&d.cfg))) goto out;
    if (profiles_init(&d.profiles, d.model, &d.cfg, err, sizeof err) < 0) {
        log_error("%s", err);
        goto out;
    }
    if ((listen_fd = server_listen(d.cfg.socket_path, err, sizeof err)) < 0) {
        log_error("%s", err);
        goto out;
    }
    if (stat(d.cfg.socket_path, &sock_st) < 0 || worker_start(&d.worker, &d) < 0) {
        log_error("startup: %s", strerror(errno));
        goto out;
    }
    worker_started = 1;
    d.started = mono_now();
    log_info("serving %s (model %s loaded and profiles recovered in %.2f s)", d.cfg.socket_path,
             d.cfg.model_path, d.started - t0);
    notify_send("READY=1\nSTATUS=serving");
    rc = server_run(&d, listen_fd, signal_fd) == 0 ? 0 : 1;
    listen_fd = -1; /* server_run closed it */

out:
    if (worker_started) {
        worker_quit(&d.worker);
        worker_join(&d.worker);
    }
    if (listen_fd >= 0) close(listen_fd);
    /* Only our own socket file: a newer daemon may already have bound a fresh one. */
    struct stat now;
    if (worker_started && stat(d.cfg.socket_path, &now) == 0 && now.st_ino == sock_st.st_ino &&
        now.st_dev == sock_st.st_dev)
        unlink(d.cfg.socket_path);
    if (d.profiles.root) profiles_free(&d.profiles);
    prge_model_free(d.model);
    if (lock_fd >= 0) close(lock_fd);
    if (signal_fd >= 0) close(signal_fd);
    if (d.wake_fd >= 0) close(d.wake_fd);
    gate_destroy(&d.gate);
    pthread_mutex_destroy(&d.settings_mu);
    config_free(&d.cfg);
    if (rc == 0) log_info("stopped cleanly");
    return rc;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("prged (libprge ABI %d)\n", prge_abi_version());
        return 0;
    }
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "--check-config") == 0) return check_config(argv[2]);
    if (argc == 2 && argv[1][0] != '-') return run(argv[1]);
    usage(stderr);
    return 2;
}
