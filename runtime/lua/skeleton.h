/* skeleton.h: `runnel new NAME`: a commented job skeleton and its test file. */
#ifndef RUNNEL_SKELETON_H
#define RUNNEL_SKELETON_H

#include "core/util.h"

/* Write PATH.lua and PATH_test.lua (path may end in .lua; its last part is the job's name) for
 * a job reading `source` ("csv", "kafka"), labelled by model.`model` (NULL: no model) and
 * written to sink.`sink`; appends the two paths, one a line, to made. Replaces no file. -1 and
 * err (naming the choices there are) otherwise. */
int luaskeleton_write(const char *path, const char *source, const char *model, const char *sink, struct buf *made,
                      struct rn_err *err);

#endif
