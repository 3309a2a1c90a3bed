/* fdlimit.h: the process's file descriptor limit (RLIMIT_NOFILE), as Redis meets it: raise the
 * soft limit to the hard one at start; count what is open; fit a number of connections into
 * what is left; tell "out of descriptors" (EMFILE, ENFILE) from other failures; and hold one
 * spare descriptor that a short, necessary open (a checkpoint) can borrow when none is free.
 *
 * The limit is on descriptor numbers: an open fails when no number below the soft limit is
 * free. So N descriptors fit while the number open stays below the limit, whatever their
 * numbers. Nothing here keeps state but what the caller passes in. */
#ifndef RUNNEL_FDLIMIT_H
#define RUNNEL_FDLIMIT_H

#include "core/util.h"

#define FDLIMIT_RESERVE 16       /* kept free beyond what a job counts: resolver pairs, librdkafka extras, ... */
#define FDLIMIT_UNLIMITED (-1L)

struct fdlimit {
    long soft, hard;             /* FDLIMIT_UNLIMITED for RLIM_INFINITY */
};

/* The limits now. -1 when getrlimit fails (then both are FDLIMIT_UNLIMITED). */
int fdlimit_get(struct fdlimit *out);

/* Raise the soft limit as far as the hard limit allows (capped by fs.nr_open when the hard
 * limit is unlimited). *before and *after get the soft limit (either may be NULL). 0 when the
 * soft limit is the hard one now, -1 when it could not be raised (errno says why). */
int fdlimit_raise(long *before, long *after);

/* Descriptors open in this process now, every thread's: /proc/self/fd, else a probe of every
 * number below the soft limit. -1 when neither works. */
long fdlimit_open_count(void);

/* Whether errno value e means the process (EMFILE) or the system (ENFILE) has no descriptor
 * left. */
int fdlimit_exhausted_errno(int e);

/* Whether a new descriptor could be had now (an open of /dev/null, closed again): 0 when the
 * process or the system is out of them. */
int fdlimit_one_free(void);

/* How many connections fit: the soft limit less the descriptors open that are not these
 * connections (open - own), less planned ones not open yet, less FDLIMIT_RESERVE. Returns
 * `wanted` when the limit is unlimited or allows it; never less than 1. */
long fdlimit_fit(const struct fdlimit *l, long wanted, long open, long own, long planned);

/* Append how to allow `needed` descriptors: "ulimit -n N" while the hard limit allows it,
 * else the hard limit and how root or systemd raises it (LimitNOFILE=). */
void fdlimit_advice(struct buf *b, const struct fdlimit *l, long needed);

/* The spare: *spare holds a descriptor (of /dev/null) or -1. Take one (when none is held) and
 * release it (just before an open that must not fail); both are harmless to repeat. */
void fdlimit_spare_take(int *spare);
void fdlimit_spare_release(int *spare);

#endif
