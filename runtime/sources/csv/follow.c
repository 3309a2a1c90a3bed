/* follow.c: following a CSV file by its name, as tail -F does. When another file appears at
 * the path (a rotation: `mv live.csv live.csv.1`, then a new live.csv), the current one is
 * read to its end, then the new one from its start; a file truncated in place (copytruncate)
 * is read again from its start; a path that disappears is waited for.
 *
 * A watcher thread opens each new file at the path as soon as it sees it (inotify on the
 * files and their directory, or a look every FOLLOW_POLL_MS), so a file rotated away again
 * while the job is still busy with an older one is read all the same; each change it sees wakes
 * the job's loop. The thread shares only struct csv_follow, under its lock; the source looks at
 * the path itself too whenever its current file has nothing more and at least every
 * FOLLOW_SAFETY_MS while idle, so nothing depends on an event arriving. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sources/csv/csv_int.h"


struct held {
    uint64_t device, inode;
    int wd;                   /* its inotify watch, or -1 */
};

struct queued {
    int fd;
    uint64_t device, inode;
    int wd;
};

struct csv_follow {
    /* set before the thread starts, read-only afterwards */
    char *path, *dir, *base;
    int inotify_fd, dir_wd;   /* -1: polling */
    int stop_pipe[2];
    struct loop *loop;        /* woken by every change; NULL: none */
    pthread_t thread;
    int running;
    /* shared, under lock */
    pthread_mutex_t lock;
    struct held *held;        /* files the source holds open */
    size_t nheld, held_cap;
    struct queued *queue;     /* files seen at the path since, in order */
    size_t nqueue, queue_cap;
};

struct csv_follow *csvsrc_follow_new(const char *path, struct loop *loop)
{
    struct csv_follow *f = rn_calloc(1, sizeof *f);
    f->path = rn_strdup(path);
    const char *slash = strrchr(path, '/');
    f->dir = slash ? rn_strndup(path, slash == path ? 1 : (size_t)(slash - path)) : rn_strdup(".");
    f->base = rn_strdup(slash ? slash + 1 : path);
    f->inotify_fd = f->dir_wd = -1;
    f->stop_pipe[0] = f->stop_pipe[1] = -1;
    f->loop = loop;
    pthread_mutex_init(&f->lock, NULL);
    return f;
}

/* A change the source should look at: wake the job's loop (from either thread). */
static void bump(struct csv_follow *f)
{
    if (f->loop) loop_wake(f->loop);
}

static int known(const struct csv_follow *f, uint64_t device, uint64_t inode)
{
    for (size_t i = 0; i < f->nheld; i++)
        if (f->held[i].device == device && f->held[i].inode == inode) return 1;
    for (size_t i = 0; i < f->nqueue; i++)
        if (f->queue[i].device == device && f->queue[i].inode == inode) return 1;
    return 0;
}

/* A watch on the open file fd (through /proc, so it is the file and not whatever the path is
 * by now): its writes wake the source, its rename or removal makes the watcher look. */
static int watch_fd(const struct csv_follow *f, int fd)
{
    if (f->inotify_fd < 0) return -1;
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    return inotify_add_watch(f->inotify_fd, proc, IN_MODIFY | IN_MOVE_SELF | IN_DELETE_SELF);
}

static void add_held(struct csv_follow *f, uint64_t device, uint64_t inode, int wd)
{
    if (f->nheld == f->held_cap) {
        f->held_cap = f->held_cap ? f->held_cap * 2 : 4;
        f->held = rn_realloc(f->held, f->held_cap * sizeof *f->held);
    }
    f->held[f->nheld++] = (struct held){device, inode, wd};
}

void csvsrc_follow_hold(struct csv_follow *f, uint64_t device, uint64_t inode)
{
    pthread_mutex_lock(&f->lock);
    if (!known(f, device, inode)) add_held(f, device, inode, -1);
    pthread_mutex_unlock(&f->lock);
}

void csvsrc_follow_release(struct csv_follow *f, uint64_t device, uint64_t inode)
{
    pthread_mutex_lock(&f->lock);
    for (size_t i = 0; i < f->nheld; i++) {
        if (f->held[i].device != device || f->held[i].inode != inode) continue;
        if (f->held[i].wd >= 0) inotify_rm_watch(f->inotify_fd, f->held[i].wd);
        f->held[i] = f->held[--f->nheld];
        break;
    }
    pthread_mutex_unlock(&f->lock);
}

static void push(struct csv_follow *f, int fd, uint64_t device, uint64_t inode, int front)
{
    if (f->nqueue == f->queue_cap) {
        f->queue_cap = f->queue_cap ? f->queue_cap * 2 : 4;
        f->queue = rn_realloc(f->queue, f->queue_cap * sizeof *f->queue);
    }
    if (front) memmove(f->queue + 1, f->queue, f->nqueue * sizeof *f->queue);
    f->queue[front ? 0 : f->nqueue] = (struct queued){fd, device, inode, watch_fd(f, fd)};
    f->nqueue++;
    bump(f);
}

void csvsrc_follow_push_front(struct csv_follow *f, int fd, uint64_t device, uint64_t inode)
{
    pthread_mutex_lock(&f->lock);
    push(f, fd, device, inode, 1);
    pthread_mutex_unlock(&f->lock);
}

void csvsrc_follow_check(struct csv_follow *f)
{
    struct stat st;
    if (stat(f->path, &st) != 0 || !S_ISREG(st.st_mode)) return;
    pthread_mutex_lock(&f->lock);
    if (!known(f, (uint64_t)st.st_dev, (uint64_t)st.st_ino)) {
        /* the file at the path when it is opened is the one queued, whatever stat saw */
        int fd = open(f->path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
            !known(f, (uint64_t)st.st_dev, (uint64_t)st.st_ino))
            push(f, fd, (uint64_t)st.st_dev, (uint64_t)st.st_ino, 0);
        else if (fd >= 0)
            close(fd);
    }
    pthread_mutex_unlock(&f->lock);
}

int csvsrc_follow_take(struct csv_follow *f, struct csv_next_file *out)
{
    pthread_mutex_lock(&f->lock);
    int got = f->nqueue > 0;
    if (got) {
        struct queued q = f->queue[0];
        memmove(f->queue, f->queue + 1, --f->nqueue * sizeof *f->queue);
        add_held(f, q.device, q.inode, q.wd);
        *out = (struct csv_next_file){q.fd, q.device, q.inode};
    }
    pthread_mutex_unlock(&f->lock);
    return got;
}

int csvsrc_follow_waiting(struct csv_follow *f)
{
    pthread_mutex_lock(&f->lock);
    int n = (int)f->nqueue;
    pthread_mutex_unlock(&f->lock);
    return n;
}

int csvsrc_follow_notified(const struct csv_follow *f) { return f->inotify_fd >= 0; }

/* Read the inotify events waiting: 1 when one says something the source should look at (a
 * held file written, moved or removed; the path's name created, moved or removed). */
static int drain_events(struct csv_follow *f)
{
    _Alignas(struct inotify_event) char buf[4096];
    int relevant = 0;
    for (;;) {
        ssize_t n = read(f->inotify_fd, buf, sizeof buf);
        if (n <= 0) return relevant; /* EAGAIN: all read */
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *e = (const struct inotify_event *)p;
            if (e->mask & IN_Q_OVERFLOW) relevant = 1;
            else if (e->wd != f->dir_wd) relevant |= !(e->mask & IN_IGNORED);
            else if (e->len && strcmp(e->name, f->base) == 0) relevant = 1;
            p += sizeof *e + e->len;
        }
    }
}

static void *watcher_main(void *arg)
{
    struct csv_follow *f = arg;
    for (;;) {
        struct pollfd p[2] = {{f->stop_pipe[0], POLLIN, 0}, {f->inotify_fd, POLLIN, 0}};
        int n = poll(p, f->inotify_fd >= 0 ? 2 : 1, f->inotify_fd >= 0 ? FOLLOW_SAFETY_MS : FOLLOW_POLL_MS);
        if (n < 0 && errno != EINTR) return NULL;
        if (p[0].revents) return NULL;
        if (n > 0 && (p[1].revents & POLLIN) && drain_events(f)) bump(f);
        csvsrc_follow_check(f);
    }
}

void csvsrc_follow_start(struct csv_follow *f, int use_inotify, int current_fd)
{
    if (use_inotify) {
        f->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (f->inotify_fd >= 0)
            f->dir_wd = inotify_add_watch(f->inotify_fd, f->dir, IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE);
        if (f->dir_wd < 0) {
            csvsrc_note("%s: inotify cannot watch %s (%s): looking at the path every %d ms instead", f->path, f->dir,
                        strerror(errno), FOLLOW_POLL_MS);
            if (f->inotify_fd >= 0) close(f->inotify_fd);
            f->inotify_fd = -1;
        }
    }
    if (f->inotify_fd >= 0) {
        pthread_mutex_lock(&f->lock);
        struct stat st;
        if (current_fd >= 0 && fstat(current_fd, &st) == 0)
            for (size_t i = 0; i < f->nheld; i++)
                if (f->held[i].device == (uint64_t)st.st_dev && f->held[i].inode == (uint64_t)st.st_ino)
                    f->held[i].wd = watch_fd(f, current_fd);
        for (size_t i = 0; i < f->nqueue; i++) f->queue[i].wd = watch_fd(f, f->queue[i].fd);
        pthread_mutex_unlock(&f->lock);
    }
    if (pipe2(f->stop_pipe, O_CLOEXEC) != 0) {
        f->stop_pipe[0] = f->stop_pipe[1] = -1;
        return; /* no thread: the source still looks at the path whenever it has nothing to read */
    }
    f->running = pthread_create(&f->thread, NULL, watcher_main, f) == 0;
}

void csvsrc_follow_free(struct csv_follow *f)
{
    if (!f) return;
    if (f->running) {
        ssize_t n;
        do n = write(f->stop_pipe[1], "x", 1); while (n < 0 && errno == EINTR);
        pthread_join(f->thread, NULL);
    }
    for (int i = 0; i < 2; i++)
        if (f->stop_pipe[i] >= 0) close(f->stop_pipe[i]);
    for (size_t i = 0; i < f->nqueue; i++) close(f->queue[i].fd);
    if (f->inotify_fd >= 0) close(f->inotify_fd);
    pthread_mutex_destroy(&f->lock);
    free(f->queue);
    free(f->held);
    free(f->path);
    free(f->dir);
    free(f->base);
    free(f);
}

/* ---- what the source does at the end of what its current file holds ---- */

int csvsrc_follow_at_end(struct csv_source *c, struct rn_err *err)
{
    if (!c->follow) return 0;
    struct stat st;
    int64_t position = c->chunk_base + (int64_t)c->chunk_len; /* bytes read from the file */
    if (fstat(c->fd, &st) == 0 && st.st_size < position) {
        csvsrc_note("%s: truncated in place (now %lld bytes, %lld had been read): reading it again from its start",
                    c->path, (long long)st.st_size, (long long)position);
        return csvsrc_begin_file(c, c->fd, c->path, c->files[c->file_index].name, 0, err) ? -1 : 1;
    }
    csvsrc_follow_check(c->watch);
    if (csvsrc_follow_waiting(c->watch)) {
        c->draining = 1;
        return 1;
    }
    if (!c->gone_noted && stat(c->declared_path, &st) != 0 && errno == ENOENT) {
        csvsrc_note("%s: the file is gone (renamed or removed): reading what is written to it, and waiting for a new "
                    "file at the path", c->declared_path);
        c->gone_noted = 1;
    }
    return 0;
}

int csvsrc_follow_next(struct csv_source *c, struct rn_err *err)
{
    if (!c->watch) return 0;
    if (c->follow) csvsrc_follow_check(c->watch);
    struct csv_next_file next;
    if (!csvsrc_follow_take(c->watch, &next)) return 0;
    if (c->fd >= 0)
        csvsrc_note("%s: a new file at the path (inode %llu): the previous one (inode %llu) was read to its end "
                    "(%lld lines); reading the new one from its start", c->declared_path,
                    (unsigned long long)next.inode, (unsigned long long)c->files[c->file_index].inode,
                    (long long)c->line - 1);
    else if (c->gone_noted || c->file_index < 0)
        csvsrc_note("%s: the file is there (inode %llu): reading it from its start", c->declared_path,
                    (unsigned long long)next.inode);
    c->gone_noted = 0;
    return csvsrc_begin_file(c, next.fd, c->declared_path, c->declared_path, !c->follow, err) ? -1 : 1;
}

static int compressed(const char *name)
{
    const char *const suffixes[] = {".gz", ".bz2", ".xz", ".zst", ".lz4", ".lzma", ".zip", ".Z", NULL};
    size_t n = strlen(name);
    for (int i = 0; suffixes[i]; i++) {
        size_t k = strlen(suffixes[i]);
        if (n > k && strcmp(name + n - k, suffixes[i]) == 0) return 1;
    }
    return 0;
}

char *csvsrc_find_by_inode(const char *dir, uint64_t device, uint64_t inode)
{
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char *found = NULL;
    struct dirent *e;
    while (!found && (e = readdir(d))) { /* stat each: d_ino is not st_ino on every file system */
        if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2]))) continue;
        if (compressed(e->d_name)) continue;
        char full[4096];
        struct stat st;
        snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
        if (stat(full, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_dev == device &&
            (uint64_t)st.st_ino == inode)
            found = rn_strdup(full);
    }
    closedir(d);
    return found;
}
