/* report.h: `runnel report`, one self-contained HTML page about a job's output (JSON Lines or
 * CSV): a donut of the label distribution, a word cloud of the text's frequent phrases, a heat
 * map of labels for the groups (products) with most records, the counts, and the evaluation
 * against a truth field when the input has one.
 *
 * The input is read once, as a stream: memory is bounded by the phrases and groups kept
 * (REPORT_MAX_PHRASES, REPORT_MAX_GROUPS; the least counted are dropped first, see tally.h)
 * and by the longest line (REPORT_MAX_LINE), never by the number of lines. A line that cannot
 * be read is counted and reported with its line number; it never stops the report. The charts
 * are drawn by Vega, compiled into the runner (serve/assets.h) and inlined in the page. */
#ifndef RUNNEL_SERVE_REPORT_H
#define RUNNEL_SERVE_REPORT_H

#include <stdint.h>
#include <stdio.h>
#include "core/util.h"

#define REPORT_MAX_LABELS 32          /* distinct labels; more are counted as "other labels" */
#define REPORT_MAX_PHRASES 200000     /* phrases kept while reading */
#define REPORT_MAX_GROUPS 50000       /* groups kept while reading */
#define REPORT_MAX_LINE (16u << 20)   /* longer lines are reported and skipped */
#define REPORT_MAX_VALUE 200          /* bytes of a label or group name kept (then "...") */
#define REPORT_PROBLEMS_SHOWN 20      /* line problems listed one by one (all are counted) */

enum report_format { REPORT_FORMAT_AUTO, REPORT_FORMAT_JSONL, REPORT_FORMAT_CSV };

struct report_options {
    const char *input, *html;
    /* field names; NULL: rating, summary, product_id, and score when the input has it */
    const char *label, *text, *group, *truth;
    const char *title;                /* NULL: from the input's file name */
    enum report_format format;        /* AUTO: CSV for a name ending in .csv, else JSON Lines */
    size_t top;                       /* groups in the heat map */
    size_t words;                     /* words and phrases in the cloud */
};

struct report_result {
    uint64_t lines, records, bad_lines, labelled;
};

/* The options of `runnel report`, for --help. */
extern const char report_usage[];

/* Fill o from the arguments that follow `report`. 0; 1 when --help was asked; -1 and err on a
 * usage error. o points into argv. */
int report_parse_args(int argc, char **argv, struct report_options *o, struct rn_err *err);

/* Read o->input and write the page to o->html (atomically: a temporary file renamed). Lines
 * that are not records and records without a field are counted and listed on the page; the
 * first ones are also printed to `warnings` as "runnel: report: FILE:LINE: ...". -1 and err
 * when there is nothing to report on (the input cannot be read, no line is a record, no record
 * has the label field, or a field named on the command line) or the page cannot be written. */
int report_run(const struct report_options *o, FILE *warnings, struct report_result *result, struct rn_err *err);

#endif
