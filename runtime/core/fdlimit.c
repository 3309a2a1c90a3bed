/* fdlimit.c: RLIMIT_NOFILE (see fdlimit.h): raising it, counting open descriptors, fitting
 * connections under it, and the spare descriptor. */
#include "core/fdlimit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#define NR_OPEN_PATH "/proc/sys/fs/nr_open"  /* the kernel's ceiling on any process's limit */
#define PROBE_MAX 65536                       /* numbers probed one by one without /proc */

static long to_long(rlim_t v) { return v == RLIM_INFINITY || v > (rlim_t)LONG_MAX ? FDLIMIT_UNLIMITED : (long)v; }

int fdlimit_get(struct fdlimit *out)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) != 0) {
        out->soft = out->hard = FDLIMIT_UNLIMITED;
        return -1;
    }
    out->soft = to_long(r.rlim_cur);
    out->hard = to_long(r.rlim_max);
    return 0;
}

static long nr_open(void)
{
    FILE *f = fopen(NR_OPEN_PATH, "r");
    long v = 0;
    if (f) {
        if (fscanf(f, "%ld", &v) != 1) v = 0;
        fclose(f);
    }
    return v > 0 ? v : 1048576; /* the kernel's default */
}

int fdlimit_raise(long *before, long *after)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) != 0) return -1;
    if (before) *before = to_long(r.rlim_cur);
    if (after) *after = to_long(r.rlim_cur);
    if (r.rlim_cur == r.rlim_max) return 0;
    rlim_t target = r.rlim_max;
    if (target == RLIM_INFINITY) target = (rlim_t)nr_open(); /* an unlimited soft limit is refused */
    if (target <= r.rlim_cur) return 0;
    struct rlimit want = {target, r.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &want) != 0) return -1;
    if (after) *after = to_long(target);
    return 0;
}

long fdlimit_open_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        long n = 0;
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.') n++;
        closedir(d);
        return n - 1; /* the directory's own descriptor */
    }
    struct fdlimit l;
    fdlimit_get(&l);
    long top = l.soft == FDLIMIT_UNLIMITED || l.soft > PROBE_MAX ? PROBE_MAX : l.soft;
    long n = 0;
    for (long fd = 0; fd < top; fd++)
        if (fcntl((int)fd, F_GETFD) != -1) n++;
    return n;
}

int fdlimit_exhausted_errno(int e) { return e == EMFILE || e == ENFILE; }

int fdlimit_one_free(void)
{
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        close(fd);
        return 1;
    }
    return !fdlimit_exhausted_errno(errno);
}

long fdlimit_fit(const struct fdlimit *l, long wanted, long open, long own, long planned)
{
    if (l->soft == FDLIMIT_UNLIMITED) return wanted;
    long others = open - own;
    if (others < 0) others = 0;
    long room = l->soft - others - planned - FDLIMIT_RESERVE;
    if (room >= wanted) return wanted;
    return room > 1 ? room : 1;
}

void fdlimit_advice(struct buf *b, const struct fdlimit *l, long needed)
{
    if (l->hard == FDLIMIT_UNLIMITED || needed <= l->hard) {
        buf_printf(b, "raise it with `ulimit -n %ld` before runnel run (LimitNOFILE=%ld in a systemd unit)", needed,
                   needed);
        return;
    }
    buf_printf(b, "the hard limit is %ld: raise it as root (`ulimit -Hn %ld`, nofile in "
               "/etc/security/limits.conf) or with LimitNOFILE=%ld in a systemd unit",
               l->hard, needed, needed);
}

void fdlimit_spare_take(int *spare)
{
    if (*spare < 0) *spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

void fdlimit_spare_release(int *spare)
{
    if (*spare >= 0) close(*spare);
    *spare = -1;
}
