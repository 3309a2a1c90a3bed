/* check.h: the one assertion of the unit tests. CHECK counts a pass, or prints the file, line
 * and message of a failure and goes on; check_report prints "NAME: N passed, N failed" and
 * gives main its exit status. */
#ifndef RUNNEL_TEST_CHECK_H
#define RUNNEL_TEST_CHECK_H

#include <stdio.h>

static int passed, failed;

#define CHECK(cond, ...)                                                                                 \
    do {                                                                                                 \
        if (cond) passed++;                                                                              \
        else { failed++; printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } \
    } while (0)

static inline int check_report(const char *name)
{
    printf("%s: %d passed, %d failed\n", name, passed, failed);
    return failed ? 1 : 0;
}

#endif
