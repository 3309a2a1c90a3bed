/* test_log.c: stderr's lines: the prefix, a secret redacted, --quiet dropping info lines only,
 * and the progress line cleared before a line and drawn again after it, byte for byte. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "check.h"

/* What the calls since the last one wrote on stderr (a temporary file under it). */
static char *taken(int fd)
{
    static char text[8192];
    off_t end = lseek(fd, 0, SEEK_END);
    ssize_t n = pread(fd, text, end < (off_t)sizeof text - 1 ? (size_t)end : sizeof text - 1, 0);
    text[n > 0 ? n : 0] = '\0';
    if (ftruncate(fd, 0) != 0) text[0] = '\0';
    lseek(fd, 0, SEEK_SET);
    return text;
}

int main(void)
{
    char path[] = "/tmp/runnel-test-log.XXXXXX";
    int fd = mkstemp(path);
    int saved = dup(STDERR_FILENO);
    if (fd < 0 || saved < 0 || dup2(fd, STDERR_FILENO) < 0) return 1;
    unlink(path);

    struct secret_set secrets;
    secret_set_init(&secrets);
    secret_set_add(&secrets, "sk-123");
    log_configure(0, 0);
    log_error("source.csv: %s: no such file", "in.csv");
    log_write(LOG_WARNING, &secrets, "model.openai: HTTP 401 for key %s", "sk-123");
    log_info("resuming %s", "job");
    char *t = taken(fd);
    int ok = !strcmp(t, "runnel: source.csv: in.csv: no such file\n"
                        "runnel: model.openai: HTTP 401 for key [redacted]\n"
                        "runnel: resuming job\n");
    CHECK(ok, "lines with the prefix, the secret redacted: [%s]", t);

    log_configure(1, 0);
    log_info("resuming %s", "job");
    log_warning("kept");
    t = taken(fd);
    CHECK(!strcmp(t, "runnel: kept\n"), "--quiet drops info lines only: [%s]", t);

    log_configure(0, 1);
    log_progress("job: read 10");
    log_error("a line");
    log_progress("job: read 20");
    log_print("print\n", 6);
    log_progress_clear();
    log_error("after");
    t = taken(fd);
    CHECK(!strcmp(t, "\r\033[Kjob: read 10"
                     "\r\033[Krunnel: a line\n\r\033[Kjob: read 10"
                     "\r\033[Kjob: read 20"
                     "\r\033[Kprint\n\r\033[Kjob: read 20"
                     "\r\033[K"
                     "runnel: after\n"),
          "the progress line is cleared before a line and drawn again after it: [%s]", t);

    char *big = malloc(5000);
    memset(big, 'x', 4999);
    big[4999] = '\0';
    log_error("%s", big);
    t = taken(fd);
    CHECK(strlen(t) == 8 + 4999 + 1 && t[8 + 4999] == '\n', "a long line is written whole: %zu", strlen(t));
    free(big);

    log_configure(0, 0);
    log_progress("not drawn");
    CHECK(!strcmp(taken(fd), ""), "no progress line when progress is off");

    secret_set_free(&secrets);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fd);
    return check_report("test_log");
}
