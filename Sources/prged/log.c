#define _POSIX_C_SOURCE 200809L
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const names[] = {"error", "warn", "info", "debug"};
/* syslog priorities: err, warning, info, debug. */
static const int priorities[] = {3, 4, 6, 7};

static atomic_int current_level = LOG_LEVEL_INFO;

int log_level_parse(const char *name) {
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
        if (strcmp(name, names[i]) == 0) return i;
    return -1;
}

const char *log_level_name(int level) {
    return level >= LOG_LEVEL_ERROR && level <= LOG_LEVEL_DEBUG ? names[level] : "?";
}

void log_set_level(int level) { atomic_store(&current_level, level); }

void log_msg(int level, const char *fmt, ...) {
    if (level > atomic_load(&current_level)) return;
    /* One buffer and one fputs per line, so lines of concurrent threads do not interleave. */
    char line[2048];
    size_t n;
    if (getenv("JOURNAL_STREAM")) {
        n = (size_t)snprintf(line, sizeof line, "<%d>", priorities[level]);
    } else {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
        n += (size_t)snprintf(line + n, sizeof line - n, ".%03ldZ %s ", ts.tv_nsec / 1000000,
                              names[level]);
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - n, fmt, ap);
    va_end(ap);
    n = strlen(line);
    if (n > sizeof line - 2) n = sizeof line - 2;
    line[n] = '\n';
    line[n + 1] = '\0';
    fputs(line, stderr);
}
