/* child.c: the supervisor's child processes (see child.h). */
#include "serve/child.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK 65536

static void close_fd(int *fd)
{
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

int child_spawn(struct child *c, const char *exe, char *const argv[], int capture_stdout, int log_fd, int pass_fd,
                struct rn_err *err)
{
    c->pid = 0;
    c->err_fd = c->out_fd = -1;
    c->log_fd = log_fd;
    c->partial_len = 0;
    c->last_line[0] = c->last_message[0] = '\0';
    c->kill_at_ms = 0;
    c->killed = 0;
    buf_init(&c->out);
    int err_pipe[2], out_pipe[2] = {-1, -1};
    if (pipe2(err_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
        return rn_fail(err, "%s %s: cannot make a pipe: %s", argv[1], argv[2], strerror(errno));
    if (capture_stdout && pipe2(out_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        int e = errno;
        close(err_pipe[0]);
        close(err_pipe[1]);
        return rn_fail(err, "%s %s: cannot make a pipe: %s", argv[1], argv[2], strerror(e));
    }
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    pid_t parent = getpid();
    pid_t pid = devnull < 0 ? -1 : fork();
    if (pid == 0) {
        /* The child: only async-signal-safe calls until exec. */
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) _exit(1); /* the supervisor died before prctl */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        /* The write ends are non-blocking only on the supervisor's side of the pipe. */
        fcntl(err_pipe[1], F_SETFL, 0);
        if (out_pipe[1] >= 0) fcntl(out_pipe[1], F_SETFL, 0);
        dup2(devnull, 0);
        if (out_pipe[1] >= 0) dup2(out_pipe[1], 1);
        dup2(err_pipe[1], 2);
        if (pass_fd == 3) fcntl(3, F_SETFD, 0); /* dup2 onto itself would keep FD_CLOEXEC */
        else if (pass_fd > 3) dup2(pass_fd, 3);
        execv(exe, argv);
        static const char msg[] = "runnel: serve: cannot exec the runner\n";
        ssize_t ignored = write(2, msg, sizeof msg - 1);
        (void)ignored;
        _exit(127);
    }
    int e = errno;
    if (devnull >= 0) close(devnull);
    close(err_pipe[1]);
    if (out_pipe[1] >= 0) close(out_pipe[1]);
    if (pid < 0) {
        close(err_pipe[0]);
        if (out_pipe[0] >= 0) close(out_pipe[0]);
        return rn_fail(err, "%s %s: cannot start a process: %s", argv[1], argv[2], strerror(e));
    }
    setpgid(pid, pid); /* also here, so a signal to the group cannot race the child's own call */
    c->pid = pid;
    c->err_fd = err_pipe[0];
    c->out_fd = out_pipe[0];
    c->started_ms = rn_now_ms();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    c->started_wall_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    return 0;
}

/* Copy a valid UTF-8 string, cut at a character boundary when it does not fit. */
static void copy_text(char *dst, size_t n, const char *src)
{
    size_t len = strlen(src);
    if (len >= n) {
        len = n - 1;
        while (len > 0 && ((unsigned char)src[len] & 0xC0) == 0x80) len--;
    }
    memcpy(dst, src, len);
    dst[len] = '\0';
}

/* One whole stderr line (without its newline). */
static void on_line(struct child *c, const char *line, size_t len)
{
    if (c->log_fd >= 0) {
        char nl = '\n';
        if (rn_write_all(c->log_fd, line, len) == 0) rn_write_all(c->log_fd, &nl, 1);
    }
    while (len && (line[len - 1] == '\r' || line[len - 1] == ' ')) len--;
    if (!len) return;
    /* Kept as valid UTF-8 (bad bytes as \xNN): these lines end up in JSON answers. */
    struct buf b;
    buf_init(&b);
    buf_put_visible(&b, line, len, CHILD_LINE_MAX);
    copy_text(c->last_line, sizeof c->last_line, b.data);
    if (len > 8 && !memcmp(line, "runnel: ", 8)) copy_text(c->last_message, sizeof c->last_message, b.data + 8);
    buf_free(&b);
}

static void on_stderr(struct child *c, const char *data, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (data[i] == '\n' || c->partial_len == CHILD_LINE_MAX - 1) {
            on_line(c, c->partial, c->partial_len);
            c->partial_len = 0;
            if (data[i] == '\n') continue;
        }
        c->partial[c->partial_len++] = data[i];
    }
}

int child_read(struct child *c, int fd)
{
    if (fd < 0) return 0;
    char data[4096];
    for (size_t total = 0;;) {
        if (total >= READ_CHUNK) return 2;
        ssize_t n = read(fd, data, sizeof data);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            if (errno == EAGAIN) return 0;
            n = 0; /* any other error ends the pipe like an end of file */
        }
        if (n == 0) {
            if (fd == c->err_fd) {
                if (c->partial_len) on_line(c, c->partial, c->partial_len);
                c->partial_len = 0;
                close_fd(&c->err_fd);
            } else {
                close_fd(&c->out_fd);
            }
            return 1;
        }
        total += (size_t)n;
        if (fd == c->err_fd) on_stderr(c, data, (size_t)n);
        else if (c->out.len + (size_t)n <= CHILD_STDOUT_MAX) buf_put(&c->out, data, (size_t)n);
    }
    return 0;
}

void child_terminate(struct child *c, int64_t timeout_ms)
{
    if (c->pid <= 0 || c->kill_at_ms) return;
    kill(c->pid, SIGTERM);
    c->kill_at_ms = rn_now_ms() + (timeout_ms > 0 ? timeout_ms : 1);
}

void child_kill(struct child *c)
{
    if (c->pid <= 0) return;
    kill(-c->pid, SIGKILL);
    kill(c->pid, SIGKILL);
    c->killed = 1;
    c->kill_at_ms = 0;
}

void child_finish(struct child *c)
{
    /* The process is gone, so its pipes hold all it wrote; a grandchild that kept a pipe open
     * must not keep us waiting: read what is there, then close. */
    for (int i = 0; i < 64 && c->err_fd >= 0 && child_read(c, c->err_fd) == 2; i++) continue;
    if (c->err_fd >= 0) {
        if (c->partial_len) on_line(c, c->partial, c->partial_len);
        c->partial_len = 0;
        close_fd(&c->err_fd);
    }
    for (int i = 0; i < 64 && c->out_fd >= 0 && child_read(c, c->out_fd) == 2; i++) continue;
    close_fd(&c->out_fd);
    c->pid = 0;
    c->kill_at_ms = 0;
}

void child_free(struct child *c)
{
    close_fd(&c->err_fd);
    close_fd(&c->out_fd);
    buf_free(&c->out);
}

void child_describe_status(int status, char *out, size_t n)
{
    if (WIFEXITED(status)) snprintf(out, n, "exit code %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status)) snprintf(out, n, "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else snprintf(out, n, "wait status %d", status);
}

void child_error(const struct child *c, int status, char *out, size_t n)
{
    if (c->last_message[0]) snprintf(out, n, "%s", c->last_message);
    else if (c->last_line[0]) snprintf(out, n, "%s", c->last_line);
    else child_describe_status(status, out, n);
}
