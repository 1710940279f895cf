/* Leveled logging to stderr. Under systemd (JOURNAL_STREAM set) each line starts with the
 * syslog priority "<N>" so journald files it at the right level; elsewhere with a timestamp. */
#ifndef PRGED_LOG_H
#define PRGED_LOG_H

enum log_level { LOG_LEVEL_ERROR = 0, LOG_LEVEL_WARN = 1, LOG_LEVEL_INFO = 2, LOG_LEVEL_DEBUG = 3 };

/* "error", "warn", "info", "debug" -> level; -1 for anything else. */
int log_level_parse(const char *name);
const char *log_level_name(int level);

/* The level can change at any time (SIGHUP reload) while other threads log. */
void log_set_level(int level);

void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)

#endif
