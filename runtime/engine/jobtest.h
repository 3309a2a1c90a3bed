/* jobtest.h: `runnel test JOB.lua [TEST.lua]`: the job's own pipeline (engine/pipeline.c) run
 * over each case of a test file, with stand-ins at its three edges and nothing else changed:
 * the case's records (or fixture file, read by the job's own source.csv, or decoded line by
 * line by its source.kafka's format) in place of the source, the case's answers in place of
 * the model's HTTP calls (models/engine.c still renders the prompt, checks the answer against
 * `output`, sends the correction round), and sinks that keep what they are given after the
 * declared sink's own encoding (its JSON line, sink.kafka's format, sink.csv's row) instead of
 * writing it. engine/jobtest.lua (compiled in) reads the cases and compares; README: Testing a job. */
#ifndef RUNNEL_JOBTEST_H
#define RUNNEL_JOBTEST_H

#include <stdio.h>

#include "lua/job.h"

/* Run every case of test_path (NULL: JOB_test.lua beside the job) and print each failure, with
 * its diff, and a summary line to out. 0: every case passed; 1: some failed; 2 with err: the
 * job or the test file cannot be loaded. */
int jobtest_run(const char *job_path, const char *test_path, const struct param *params, size_t nparams, FILE *out,
                struct rn_err *err);

#endif
