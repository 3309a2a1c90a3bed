/* labels.h: the live label distribution and frequent phrases of a job's output, for the
 * dashboard's donut and word cloud (GET /jobs/NAME/labels).
 *
 * The supervisor reads the job's first JSONL sink as it grows: each call reads the whole lines
 * written since the last (at most LABELS_READ_MAX bytes a call, so one answer stays quick; the
 * next call goes on), counting the label field's values and, with the report's phrases.h, the
 * text field's words and phrases (once per record), in bounded tables (tally.h). A file that
 * shrank or was replaced (a new inode) is counted again from its start. Lines that are not JSON
 * objects are counted as bad, never fatal. */
#ifndef RUNNEL_SERVE_LABELS_H
#define RUNNEL_SERVE_LABELS_H

#include <jansson.h>
#include <stdint.h>
#include "core/util.h"

#define LABELS_READ_MAX (8u << 20)
#define LABELS_MAX 32          /* distinct labels kept */
#define LABELS_PHRASES_MAX 20000
#define LABELS_PHRASES_SHOWN 60

struct label_watch;

/* A watch of path (JSON Lines), counting field `label` and phrases of field `text` (NULL: no
 * cloud). Free with labels_free. */
struct label_watch *labels_new(const char *path, const char *label, const char *text);
void labels_free(struct label_watch *w);

/* The fields it counts ("" for no text field). */
const char *labels_field(const struct label_watch *w);
const char *labels_text_field(const struct label_watch *w);

/* Read what was appended since the last call. -1 and err when the file cannot be read (an
 * absent file is an empty one: the job may not have written yet). */
int labels_update(struct label_watch *w, struct rn_err *err);

/* {"path", "label", "text", "records", "labelled", "bad_lines", "labels": [{"label", "count"}],
 * "phrases": [{"text", "count"}]}, most counted first. Caller owns. */
json_t *labels_json(const struct label_watch *w);

#endif
