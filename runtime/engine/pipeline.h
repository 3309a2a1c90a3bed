/* pipeline.h: running one job: the event loop that moves records from the source through
 * filter, predict and map to the sinks, with acknowledgements, checkpoints and the summary.
 *
 * Records may finish out of order (model calls run concurrently) but are written to the
 * sinks in source order through a bounded window, so file outputs are deterministic, the
 * source commits only a prefix of the input that every sink acknowledged (or that was
 * dead-lettered), and memory is flat. */
#ifndef RUNNEL_PIPELINE_H
#define RUNNEL_PIPELINE_H

#include "engine/plugin.h"

struct run_options {
    int64_t limit;              /* stop after reading this many records (0: no limit) */
    const char *summary_json;   /* write the summary as JSON here, or NULL */
    const char *metrics_file;   /* write the metrics (Prometheus text) here at every checkpoint and at the end */
    int metrics_fd;             /* publish them every second on this socket (runnel serve's); 0: none */
    const char *metrics_listen; /* serve them on GET http://HOST:PORT/metrics; NULL: no */
    int progress;               /* 1: show a progress line (stderr is a terminal) */
    int quiet;                  /* no summary on stderr */
};

/* Open everything the job declaration at the top of the stack names, run it to the end
 * (batch) or until stopped (stream), print the summary. Returns 0 on success, -1 with err. */
int pipeline_run(struct job_env *env, const struct run_options *opts, struct rn_err *err);

#endif
