/* log.c: stderr's lines and the progress line (see log.h). */
#include "core/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOG_PREFIX "runnel: "
#define PROGRESS_MAX 512

static struct {
    pthread_mutex_t lock;
    int quiet, progress;
    int shown;                     /* a progress line is on the screen */
    char line[PROGRESS_MAX];       /* the last progress text, to redraw */
    size_t line_len;
} logger = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, {0}, 0};

void log_configure(int quiet, int progress)
{
    pthread_mutex_lock(&logger.lock);
    logger.quiet = quiet;
    logger.progress = progress;
    pthread_mutex_unlock(&logger.lock);
}

static void put(const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, data, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return; /* nowhere to report it */
        data += n;
        len -= (size_t)n;
    }
}

/* Under lock: write text as it is, around the progress line. */
static void emit(const char *text, size_t len)
{
    if (logger.shown) put("\r\033[K", 4);
    put(text, len);
    if (logger.shown) put(logger.line, logger.line_len);
}

void log_vwrite(enum log_level level, const struct secret_set *secrets, const char *fmt, va_list ap)
{
    if (level == LOG_INFO && logger.quiet) return;
    char small[1024];
    memcpy(small, LOG_PREFIX, sizeof LOG_PREFIX - 1);
    size_t room = sizeof small - (sizeof LOG_PREFIX - 1) - 1; /* the newline */
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(small + sizeof LOG_PREFIX - 1, room + 1, fmt, ap);
    char *text = small, *big = NULL;
    size_t len;
    if (n < 0) {
        n = 0;
        small[sizeof LOG_PREFIX - 1] = '\0';
    }
    if ((size_t)n > room && (big = malloc(sizeof LOG_PREFIX + (size_t)n + 1))) {
        memcpy(big, LOG_PREFIX, sizeof LOG_PREFIX - 1);
        vsnprintf(big + sizeof LOG_PREFIX - 1, (size_t)n + 1, fmt, again);
        text = big;
        len = sizeof LOG_PREFIX - 1 + (size_t)n;
    } else {
        len = sizeof LOG_PREFIX - 1 + ((size_t)n > room ? room : (size_t)n);
    }
    va_end(again);
    struct buf redacted;
    buf_init(&redacted);
    if (secrets && secrets->count) {
        struct buf scratch;
        buf_init(&scratch);
        buf_put(&redacted, text, len);
        secret_redact_buf(secrets, &redacted, &scratch);
        buf_free(&scratch);
        text = redacted.data;
        len = redacted.len;
    }
    text[len] = '\n'; /* each buffer has room for it: the NUL's place */
    pthread_mutex_lock(&logger.lock);
    emit(text, len + 1);
    pthread_mutex_unlock(&logger.lock);
    buf_free(&redacted);
    free(big);
}

void log_write(enum log_level level, const struct secret_set *secrets, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(level, secrets, fmt, ap);
    va_end(ap);
}

#define LOG_AT(name, level)                  \
    void name(const char *fmt, ...)          \
    {                                        \
        va_list ap;                          \
        va_start(ap, fmt);                   \
        log_vwrite(level, NULL, fmt, ap);    \
        va_end(ap);                          \
    }
LOG_AT(log_error, LOG_ERROR)
LOG_AT(log_warning, LOG_WARNING)
LOG_AT(log_info, LOG_INFO)

void log_print(const char *text, size_t len)
{
    pthread_mutex_lock(&logger.lock);
    emit(text, len);
    pthread_mutex_unlock(&logger.lock);
}

void log_progress(const char *text)
{
    pthread_mutex_lock(&logger.lock);
    if (logger.progress) {
        size_t n = strlen(text);
        if (n > PROGRESS_MAX - 5) n = PROGRESS_MAX - 5;
        memcpy(logger.line, "\r\033[K", 4);
        memcpy(logger.line + 4, text, n);
        logger.line_len = 4 + n;
        logger.line[logger.line_len] = '\0';
        put(logger.line, logger.line_len);
        logger.shown = 1;
    }
    pthread_mutex_unlock(&logger.lock);
}

void log_progress_clear(void)
{
    pthread_mutex_lock(&logger.lock);
    if (logger.shown) put("\r\033[K", 4);
    logger.shown = 0;
    pthread_mutex_unlock(&logger.lock);
}
