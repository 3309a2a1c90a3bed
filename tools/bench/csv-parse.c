/* csv-parse.c: the raw libcsv parse rate of a file: the ceiling for a CSV job.
 * Reads the file in 256 KiB blocks and parses it with libcsv, counting fields and rows.
 *   bench-csv-parse FILE   -> {"rows":N,"seconds":S,"rows_per_s":R} */
#include <csv.h>
#include <stdio.h>
#include <time.h>

static long rows, fields;
static void on_field(void *s, size_t n, void *d) { (void)s; (void)n; (void)d; fields++; }
static void on_row(int c, void *d) { (void)c; (void)d; rows++; }

int main(int argc, char **argv)
{
    if (argc != 2) { fprintf(stderr, "usage: bench-csv-parse FILE\n"); return 2; }
    FILE *f = fopen(argv[1], "rb");
    if (!f) { perror(argv[1]); return 1; }
    struct csv_parser p;
    csv_init(&p, 0);
    static char block[256 * 1024];
    size_t n;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    while ((n = fread(block, 1, sizeof block, f)) > 0) csv_parse(&p, block, n, on_field, on_row, NULL);
    csv_fini(&p, on_field, on_row, NULL);
    clock_gettime(CLOCK_MONOTONIC, &b);
    csv_free(&p);
    fclose(f);
    double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    rows -= 1; /* the header */
    printf("{\"rows\":%ld,\"seconds\":%.4f,\"rows_per_s\":%.0f}\n", rows, s, (double)rows / s);
    return 0;
}
