/* tz.h: time zones from the system's TZif files (RFC 8536), for schedules in a named zone.
 *
 * glibc converts only in the process's one TZ; a supervisor that schedules jobs in several
 * zones needs a zone as a value. A zone is loaded from /usr/share/zoneinfo/NAME (or
 * $TZDIR/NAME): its transitions, and the POSIX TZ rule of its footer for the times after the
 * last one. "UTC" needs no file. */
#ifndef RUNNEL_TZ_H
#define RUNNEL_TZ_H

#include <stdint.h>
#include "core/util.h"

struct tz;

/* Load zone `name` ("Europe/Paris", "UTC"). NULL and err naming the zone and the file when
 * it is unknown or the file is not TZif. Caller frees with tz_free. */
struct tz *tz_load(const char *name, struct rn_err *err);
void tz_free(struct tz *tz);
const char *tz_name(const struct tz *tz);

/* Seconds east of UTC in force at `utc` (Unix seconds). */
int32_t tz_offset_at(const struct tz *tz, int64_t utc);

/* The Unix time at which the wall clock in tz shows `local` (local seconds: the wall-clock
 * date and time counted as if it were UTC). A wall-clock time that happens twice (the clocks
 * go back) gives the first; one that never happens (the clocks go forward) gives the instant
 * of the change. */
int64_t tz_local_to_utc(const struct tz *tz, int64_t local);

/* Unix milliseconds as ISO 8601 in zone tz (NULL: UTC, written "Z"), e.g.
 * "2026-12-02T03:00:00+01:00", with ".123" milliseconds when with_ms. */
#define TZ_ISO_MAX 40
void tz_format_iso8601(const struct tz *tz, int64_t unix_ms, int with_ms, char out[TZ_ISO_MAX]);

/* Days since 1970-01-01 of a civil date, and back (proleptic Gregorian). */
int64_t tz_days_from_civil(int64_t year, int month, int day);
void tz_civil_from_days(int64_t days, int64_t *year, int *month, int *day);

#endif
