/* stubs.h: `runnel stubs`: lua-language-server annotations for job scripts (runnel.d.lua),
 * from the option declarations `runnel help` prints. */
#ifndef RUNNEL_STUBS_H
#define RUNNEL_STUBS_H

#include <stdio.h>

/* Write the whole annotation file to out. */
void luastubs_write(FILE *out);

#endif
