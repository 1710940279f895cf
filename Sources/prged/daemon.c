#define _POSIX_C_SOURCE 200809L
#include "daemon.h"

#include "log.h"
#include "notify.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>

struct training_budget daemon_budget(struct daemon *d) {
    pthread_mutex_lock(&d->settings_mu);
    struct training_budget b = d->cfg.training;
    pthread_mutex_unlock(&d->settings_mu);
    return b;
}

struct limits daemon_limits(struct daemon *d) {
    pthread_mutex_lock(&d->settings_mu);
    struct limits l = d->cfg.limits;
    pthread_mutex_unlock(&d->settings_mu);
    return l;
}

void daemon_wake(struct daemon *d) {
    uint64_t one = 1;
    /* The eventfd counter cannot overflow in practice; a failed write only delays a reply
     * until the next wake-up, and the only failure left is EAGAIN at a saturated counter. */
    ssize_t w = write(d->wake_fd, &one, sizeof one);
    (void)w;
}

static int same_string(const char *a, const char *b) { return strcmp(a, b) == 0; }

void daemon_reload(struct daemon *d) {
    struct config c;
    char err[512];
    if (config_load(d->config_path, &c, err, sizeof err) < 0) {
        log_error("SIGHUP: config not reloaded, keeping the running one: %s", err);
        return;
    }
    /* These shape what is loaded and bound; changing them means restarting. */
    if (!same_string(c.socket_path, d->cfg.socket_path) || !same_string(c.state_dir, d->cfg.state_dir) ||
        !same_string(c.model_path, d->cfg.model_path) || c.threads != d->cfg.threads ||
        c.numeric_mode != d->cfg.numeric_mode || !same_string(c.trainer_json, d->cfg.trainer_json) ||
        !same_string(c.default_profile, d->cfg.default_profile) ||
        c.request_threads != d->cfg.request_threads)
        log_warn("SIGHUP: socket, state_dir, model, threads, numeric_mode, trainer, default_profile "
                 "and request_threads take effect only after a restart");
    pthread_mutex_lock(&d->settings_mu);
    d->cfg.training = c.training;
    d->cfg.limits = c.limits;
    pthread_mutex_unlock(&d->settings_mu);
    memcpy(d->cfg.allowed_uids, c.allowed_uids, sizeof c.allowed_uids);
    d->cfg.n_allowed_uids = c.n_allowed_uids;
    d->cfg.log_level = c.log_level;
    log_set_level(c.log_level);
    config_free(&c);
    worker_poke(&d->worker);
    log_info("SIGHUP: reloaded log_level (%s), training, limits and allowed_uids",
             log_level_name(d->cfg.log_level));
    notify_send("STATUS=configuration reloaded");
}
