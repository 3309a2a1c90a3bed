/* log.h: everything runnel writes on stderr while it runs: error, warning and info lines
 * ("runnel: " then the message) and the progress line on a terminal.
 *
 * A line first clears the progress line, if one is shown, and redraws it after, so the two
 * never interleave; with --quiet info lines are dropped (errors and warnings stay). A line
 * given a secret set is redacted through it (core/secret.h) before it is written. stderr is
 * one per process, so this module's state is too (the one such state in runnel), under a
 * mutex: librdkafka's threads log through it. A line is written with one write(2). */
#ifndef RUNNEL_LOG_H
#define RUNNEL_LOG_H

#include <stdarg.h>
#include <stddef.h>

#include "core/secret.h"

enum log_level { LOG_ERROR, LOG_WARNING, LOG_INFO };

/* --quiet (drop info lines) and whether a progress line may be drawn (stderr is a terminal, or
 * --progress). Called by main before a run; both are off until then. */
void log_configure(int quiet, int progress);

/* One line "runnel: MESSAGE\n". secrets may be NULL. Never allocates unless the message is
 * long or has secrets to redact, so it serves the out-of-memory path too. */
void log_write(enum log_level level, const struct secret_set *secrets, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vwrite(enum log_level level, const struct secret_set *secrets, const char *fmt, va_list ap);
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warning(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* text as it is (a script's print()), around the progress line like a log line. */
void log_print(const char *text, size_t len);

/* Show text (one line, no newline) as the progress line, replacing the last one. Nothing when
 * progress is off. */
void log_progress(const char *text);
/* Take the progress line off the screen (before the summary); the next log_progress draws it
 * again. */
void log_progress_clear(void);

#endif
