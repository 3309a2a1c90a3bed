/* util.h: the basics every module uses, in one include: errors and allocation (err.h), the
 * byte buffer (buf.h), text, numbers and the clock (text.h), files (fs.h). */
#ifndef RUNNEL_UTIL_H
#define RUNNEL_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"
#include "core/fs.h"
#include "core/text.h"

#define RN_VERSION "0.1.0"

#endif
