/* lock.c: one run of a job at a time (see lock.h). */
#include "engine/lock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

/* What the holder wrote: "pid START_EPOCH_SECONDS\n". 0 when it cannot be read (the holder
 * may be between taking the lock and writing it). */
static int read_holder(int fd, long *pid, long long *since)
{
    char text[64];
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    if (n <= 0) return 0;
    text[n] = '\0';
    return sscanf(text, "%ld %lld", pid, since) == 2;
}

int job_lock_take(struct job_lock *lock, const char *state_dir, const char *job, int *busy, struct rn_err *err)
{
    lock->fd = -1;
    *busy = 0;
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s.lock", state_dir, job) >= sizeof path)
        return rn_fail(err, "state directory path too long: %s", state_dir);
    if (rn_mkdir_p(state_dir, err)) return -1;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return rn_fail(err, "%s: cannot open the job's lock file: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        if (e == EWOULDBLOCK) {
            *busy = 1;
            long pid = 0;
            long long since = 0;
            if (read_holder(fd, &pid, &since)) {
                time_t t = (time_t)since;
                struct tm tm;
                char when[32] = "?";
                if (localtime_r(&t, &tm)) strftime(when, sizeof when, "%H:%M:%S", &tm);
                rn_fail(err, "job %s is already running (pid %ld, since %s); state in %s/", job, pid, when, state_dir);
            } else {
                rn_fail(err, "job %s is already running (it holds %s); state in %s/", job, path, state_dir);
            }
        } else {
            rn_fail(err, "%s: cannot lock: %s", path, strerror(e));
        }
        close(fd);
        return -1;
    }
    char text[64];
    int n = snprintf(text, sizeof text, "%ld %lld\n", (long)getpid(), (long long)time(NULL));
    if (ftruncate(fd, 0) < 0 || pwrite(fd, text, (size_t)n, 0) != n) {
        rn_fail(err, "%s: cannot write the lock file: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    lock->fd = fd;
    return 0;
}

void job_lock_release(struct job_lock *lock)
{
    if (lock->fd < 0) return;
    close(lock->fd); /* closing the last descriptor releases the flock */
    lock->fd = -1;
}
