/* test_exposition.c: several text expositions merged into one (serve/exposition.h): each
 * family's HELP and TYPE once, at its first appearance, then its samples from every text in
 * order; a family whose TYPE clashes is left out of the text that has it; stray lines dropped.
 * And the registry's own text (core/metrics.h) goes through unchanged. */
#include <string.h>

#include "core/metrics.h"
#include "serve/exposition.h"
#include "check.h"

static size_t merge(const char *const *texts, size_t n, struct buf *out)
{
    struct exposition_text t[8];
    for (size_t i = 0; i < n; i++) t[i] = (struct exposition_text){texts[i], strlen(texts[i])};
    buf_clear(out);
    return exposition_merge(t, n, out);
}

int main(void)
{
    struct buf out;
    buf_init(&out);
    const char *serve = "# HELP runnel_job_state 1 for the state.\n# TYPE runnel_job_state gauge\n"
                        "runnel_job_state{job=\"a\",state=\"RUNNING\"} 1\nrunnel_job_state{job=\"b\",state=\"RUNNING\"} 0\n";
    const char *a = "# HELP runnel_records_total Records.\n# TYPE runnel_records_total counter\n"
                    "runnel_records_total{job=\"a\",outcome=\"written\"} 5\n"
                    "# HELP runnel_lat_seconds Latency.\n# TYPE runnel_lat_seconds histogram\n"
                    "runnel_lat_seconds_bucket{job=\"a\",le=\"1\"} 2\nrunnel_lat_seconds_bucket{job=\"a\",le=\"+Inf\"} 3\n"
                    "runnel_lat_seconds_sum{job=\"a\"} 2.5\nrunnel_lat_seconds_count{job=\"a\"} 3\n";
    const char *b = "# HELP runnel_records_total Other help, not shown.\n# TYPE runnel_records_total counter\n"
                    "runnel_records_total{job=\"b\",outcome=\"written\"} 7\n"
                    "# HELP runnel_lat_seconds Latency.\n# TYPE runnel_lat_seconds gauge\nrunnel_lat_seconds{job=\"b\"} 9\n"
                    "stray 1\n\n# a comment\n";
    const char *texts[] = {serve, a, b};
    size_t clashes = merge(texts, 3, &out);
    const char *want = "# HELP runnel_job_state 1 for the state.\n# TYPE runnel_job_state gauge\n"
                       "runnel_job_state{job=\"a\",state=\"RUNNING\"} 1\nrunnel_job_state{job=\"b\",state=\"RUNNING\"} 0\n"
                       "# HELP runnel_records_total Records.\n# TYPE runnel_records_total counter\n"
                       "runnel_records_total{job=\"a\",outcome=\"written\"} 5\n"
                       "runnel_records_total{job=\"b\",outcome=\"written\"} 7\n"
                       "# HELP runnel_lat_seconds Latency.\n# TYPE runnel_lat_seconds histogram\n"
                       "runnel_lat_seconds_bucket{job=\"a\",le=\"1\"} 2\nrunnel_lat_seconds_bucket{job=\"a\",le=\"+Inf\"} 3\n"
                       "runnel_lat_seconds_sum{job=\"a\"} 2.5\nrunnel_lat_seconds_count{job=\"a\"} 3\n";
    CHECK(out.data && !strcmp(out.data, want), "merged:\n%s", out.data ? out.data : "(nothing)");
    CHECK(clashes == 1, "one family clashes, not %zu", clashes);

    /* a text without HELP, a last line without its newline */
    const char *bare[] = {"# TYPE x counter\nx 1", "# TYPE x counter\nx{job=\"2\"} 2\n"};
    merge(bare, 2, &out);
    CHECK(out.data && !strcmp(out.data, "# TYPE x counter\nx 1\nx{job=\"2\"} 2\n"), "%s", out.data ? out.data : "");
    merge(NULL, 0, &out);
    CHECK(out.len == 0, "nothing merged from nothing");

    /* the registry's text merges to itself */
    struct rn_err err;
    struct metric_label job = {"job", "j"}, outcome = {"outcome", "written"};
    struct metrics *m = metrics_new(&job, 1, &err);
    static const double bounds[] = {0.1, 1};
    metric_add(metrics_counter(m, "runnel_records_total", "Records \\ by\nhow.", &outcome, 1, &err), 3);
    metric_observe(metrics_histogram(m, "runnel_h_seconds", "H.", NULL, 0, bounds, 2, &err), 0.5);
    struct buf text;
    buf_init(&text);
    metrics_write_prometheus(m, &text);
    const char *one[] = {text.data};
    merge(one, 1, &out);
    CHECK(!strcmp(out.data, text.data), "the registry's text:\n%s\nmerged:\n%s", text.data, out.data);
    buf_free(&text);
    metrics_free(m);
    buf_free(&out);
    return check_report("test_exposition");
}
