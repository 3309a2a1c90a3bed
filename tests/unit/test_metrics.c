/* test_metrics.c: the metrics registry (core/metrics.c): registration rules, handles, and the
 * Prometheus text exposition format, checked byte for byte.
 * `test_metrics --exposition` prints a sample registry's exposition instead, for
 * tests/integration/test_metrics_exposition.sh to parse with an independent client. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "core/metrics.h"

static struct metrics *sample(void)
{
    struct rn_err err;
    struct metric_label job = {"job", "product_ratings"};
    struct metrics *m = metrics_new(&job, 1, &err);
    struct metric *read = metrics_counter(m, "runnel_records_read_total", "Records read from the source.", NULL, 0, &err);
    metric_add(read, 1000);
    struct metric_label a[] = {{"sink", "jsonl"}, {"declared", "job.lua:20"}};
    struct metric_label b[] = {{"sink", "lua"}, {"declared", "say \"hi\"\\\n"}};
    metric_add(metrics_counter(m, "runnel_sink_records_total", "Records a sink acknowledged.\nSecond line \\ here.", a, 2, &err), 990);
    metric_add(metrics_counter(m, "runnel_sink_records_total", "ignored: the first help is kept", b, 2, &err), 7);
    metric_set(metrics_gauge(m, "runnel_in_flight", "Records in flight.", NULL, 0, &err), -2.5);
    double bounds[] = {0.005, 0.1, 1};
    struct metric *h = metrics_histogram(m, "runnel_checkpoint_seconds", "Checkpoint durations.", NULL, 0, bounds, 3, &err);
    metric_observe(h, 0.001);
    metric_observe(h, 0.005); /* on a bound: in that bucket (le is <=) */
    metric_observe(h, 0.5);
    metric_observe(h, 30);
    metric_set(metrics_gauge(m, "runnel_special", "Special values.", (struct metric_label[]){{"v", "inf"}}, 1, &err), INFINITY);
    metric_set(metrics_gauge(m, "runnel_special", "", (struct metric_label[]){{"v", "-inf"}}, 1, &err), -INFINITY);
    metric_set(metrics_gauge(m, "runnel_special", "", (struct metric_label[]){{"v", "nan"}}, 1, &err), NAN);
    metric_set(metrics_gauge(m, "runnel_special", "", (struct metric_label[]){{"v", "big"}}, 1, &err), 1e300);
    metric_set(metrics_gauge(m, "runnel_special", "", (struct metric_label[]){{"v", "frac"}}, 1, &err), 0.1);
    return m;
}

static const char expected[] =
    "# HELP runnel_records_read_total Records read from the source.\n"
    "# TYPE runnel_records_read_total counter\n"
    "runnel_records_read_total{job=\"product_ratings\"} 1000\n"
    "# HELP runnel_sink_records_total Records a sink acknowledged.\\nSecond line \\\\ here.\n"
    "# TYPE runnel_sink_records_total counter\n"
    "runnel_sink_records_total{job=\"product_ratings\",sink=\"jsonl\",declared=\"job.lua:20\"} 990\n"
    "runnel_sink_records_total{job=\"product_ratings\",sink=\"lua\",declared=\"say \\\"hi\\\"\\\\\\n\"} 7\n"
    "# HELP runnel_in_flight Records in flight.\n"
    "# TYPE runnel_in_flight gauge\n"
    "runnel_in_flight{job=\"product_ratings\"} -2.5\n"
    "# HELP runnel_checkpoint_seconds Checkpoint durations.\n"
    "# TYPE runnel_checkpoint_seconds histogram\n"
    "runnel_checkpoint_seconds_bucket{job=\"product_ratings\",le=\"0.005\"} 2\n"
    "runnel_checkpoint_seconds_bucket{job=\"product_ratings\",le=\"0.1\"} 2\n"
    "runnel_checkpoint_seconds_bucket{job=\"product_ratings\",le=\"1\"} 3\n"
    "runnel_checkpoint_seconds_bucket{job=\"product_ratings\",le=\"+Inf\"} 4\n"
    "runnel_checkpoint_seconds_sum{job=\"product_ratings\"} 30.506\n"
    "runnel_checkpoint_seconds_count{job=\"product_ratings\"} 4\n"
    "# HELP runnel_special Special values.\n"
    "# TYPE runnel_special gauge\n"
    "runnel_special{job=\"product_ratings\",v=\"inf\"} +Inf\n"
    "runnel_special{job=\"product_ratings\",v=\"-inf\"} -Inf\n"
    "runnel_special{job=\"product_ratings\",v=\"nan\"} NaN\n"
    "runnel_special{job=\"product_ratings\",v=\"big\"} 1e+300\n"
    "runnel_special{job=\"product_ratings\",v=\"frac\"} 0.1\n";

static void test_exposition(void)
{
    struct metrics *m = sample();
    struct buf out;
    buf_init(&out);
    metrics_write_prometheus(m, &out);
    CHECK(out.data && strcmp(out.data, expected) == 0, "exposition differs:\n--- got\n%s--- expected\n%s", out.data, expected);
    metrics_free(m);
    buf_free(&out);

    /* no labels at all: no braces; an empty registry writes nothing */
    struct rn_err err;
    m = metrics_new(NULL, 0, &err);
    buf_init(&out);
    metrics_write_prometheus(m, &out);
    CHECK(out.len == 0, "an empty registry writes nothing, got '%s'", out.data);
    metric_inc(metrics_counter(m, "plain_total", "", NULL, 0, &err));
    metrics_write_prometheus(m, &out);
    CHECK(strcmp(out.data, "# HELP plain_total \n# TYPE plain_total counter\nplain_total 1\n") == 0, "got '%s'", out.data);
    metrics_free(m);
    buf_free(&out);
}

static void test_handles(void)
{
    struct rn_err err;
    struct metrics *m = metrics_new(NULL, 0, &err);
    struct metric_label l1[] = {{"sink", "a"}}, l2[] = {{"sink", "b"}};
    struct metric *a = metrics_counter(m, "x_total", "x", l1, 1, &err);
    struct metric *b = metrics_counter(m, "x_total", "x", l2, 1, &err);
    CHECK(a && b && a != b, "two label values are two series");
    CHECK(metrics_counter(m, "x_total", "x", l1, 1, &err) == a, "registering again returns the same handle");
    for (int i = 0; i < 5; i++) metric_inc(a);
    metric_add(b, 2.5);
    CHECK(metric_u64(a) == 5 && b->value == 2.5, "counters count: %g %g", a->value, b->value);
    CHECK(metrics_find(m, "x_total", l2, 1) == b, "find by name and labels");
    CHECK(metrics_find(m, "x_total", NULL, 0) == NULL, "find with the wrong label count");
    CHECK(metrics_find(m, "nope", NULL, 0) == NULL, "find an unknown name");
    struct metric_label other[] = {{"sink", "c"}};
    CHECK(metrics_find(m, "x_total", other, 1) == NULL, "find an unknown label value");
    metrics_free(m);
}

static void test_errors(void)
{
    struct rn_err err;
    struct metrics *m = metrics_new((struct metric_label[]){{"job", "j"}}, 1, &err);
    CHECK(!metrics_counter(m, "9lives", "", NULL, 0, &err) && strstr(err.msg, "metric name '9lives'"), "bad name: %s", err.msg);
    CHECK(!metrics_counter(m, "a-b", "", NULL, 0, &err), "a dash is not a name character");
    CHECK(metrics_counter(m, "ns:sub_total", "", NULL, 0, &err) != NULL, "colons are allowed in metric names");
    CHECK(!metrics_counter(m, "y", "", (struct metric_label[]){{"a:b", "v"}}, 1, &err) && strstr(err.msg, "label name 'a:b'"),
          "colons are not allowed in label names: %s", err.msg);
    CHECK(!metrics_counter(m, "y", "", (struct metric_label[]){{"__x", "v"}}, 1, &err) && strstr(err.msg, "reserved"),
          "__ label names are reserved: %s", err.msg);
    CHECK(!metrics_counter(m, "y", "", (struct metric_label[]){{"job", "v"}}, 1, &err) && strstr(err.msg, "common"),
          "a label may not repeat a common one: %s", err.msg);
    CHECK(!metrics_counter(m, "y", "", (struct metric_label[]){{"a", "1"}, {"a", "2"}}, 2, &err) && strstr(err.msg, "twice"),
          "a label given twice: %s", err.msg);
    CHECK(metrics_counter(m, "z", "", NULL, 0, &err) != NULL, "register z");
    CHECK(!metrics_gauge(m, "z", "", NULL, 0, &err) && strstr(err.msg, "is a counter, not a gauge"), "type clash: %s", err.msg);
    CHECK(!metrics_counter(m, "z", "", (struct metric_label[]){{"a", "1"}}, 1, &err) && strstr(err.msg, "takes 0 labels"),
          "label count clash: %s", err.msg);
    metrics_counter(m, "w", "", (struct metric_label[]){{"a", "1"}}, 1, &err);
    CHECK(!metrics_counter(m, "w", "", (struct metric_label[]){{"b", "1"}}, 1, &err) && strstr(err.msg, "label 1 is 'a'"),
          "label name clash: %s", err.msg);
    double up[] = {1, 2}, down[] = {2, 1}, nan_bounds[] = {NAN};
    CHECK(!metrics_histogram(m, "h", "", NULL, 0, down, 2, &err) && strstr(err.msg, "increasing"), "bounds must increase");
    CHECK(!metrics_histogram(m, "h", "", NULL, 0, nan_bounds, 1, &err), "bounds must be finite");
    CHECK(!metrics_histogram(m, "h", "", (struct metric_label[]){{"le", "1"}}, 1, up, 2, &err) && strstr(err.msg, "'le'"),
          "le is reserved on histograms: %s", err.msg);
    CHECK(metrics_histogram(m, "h", "", NULL, 0, up, 2, &err) != NULL, "register h");
    double other[] = {1, 3};
    CHECK(!metrics_histogram(m, "h", "", NULL, 0, other, 2, &err) && strstr(err.msg, "bounds"), "bounds clash: %s", err.msg);
    metrics_free(m);
    CHECK(!metrics_new((struct metric_label[]){{"a", "1"}, {"a", "2"}}, 2, &err), "common labels given twice");
    CHECK(!metrics_new((struct metric_label[]){{"le", "1"}}, 1, &err), "le as a common label");
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--exposition") == 0) {
        struct metrics *m = sample();
        struct buf out;
        buf_init(&out);
        metrics_write_prometheus(m, &out);
        fputs(out.data, stdout);
        buf_free(&out);
        metrics_free(m);
        return 0;
    }
    test_exposition();
    test_handles();
    test_errors();
    return check_report("test_metrics");
}
