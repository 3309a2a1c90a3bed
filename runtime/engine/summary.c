/* summary.c: what a run tells its user: the progress line on a terminal, the summary at the
 * end, and the same figures as JSON for --summary-json. The counts are read from the
 * pipeline's metrics registry; the JSON names (read, written, filtered, dead_lettered,
 * elapsed_s, ...) are used by tests and tools/bench.sh: keep them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fdlimit.h"
#include "engine/engine_int.h"
#include "engine/evaluate.h"
#include "models/model.h"
#include "core/log.h"
#include "serve/exporter.h"

static void fmt_count(char *out, size_t n, uint64_t v)
{
    char digits[32];
    int len = snprintf(digits, sizeof digits, "%llu", (unsigned long long)v);
    size_t o = 0;
    for (int i = 0; i < len && o + 2 < n; i++) {
        if (i && (len - i) % 3 == 0) out[o++] = ',';
        out[o++] = digits[i];
    }
    out[o] = '\0';
}

void summary_progress(struct pipeline *p, double now)
{
    double elapsed = now - p->started;
    uint64_t n_read = metric_u64(p->m.read);
    double rate = elapsed > 0 ? (double)n_read / elapsed : 0;
    char read[32], written[32], dead[32];
    fmt_count(read, sizeof read, n_read);
    fmt_count(written, sizeof written, metric_u64(p->m.written));
    fmt_count(dead, sizeof dead, metric_u64(p->m.dead));
    struct buf *line = &p->progress_line;
    buf_clear(line);
    buf_printf(line, "%s: read %s  written %s  dead %s  %.0f rec/s", p->env->job_name, read, written, dead, rate);
    struct sink_inst *down = order_sink_down(p);
    if (down) {
        char d[32];
        rn_format_duration_ms(d, sizeof d, rn_now_ms() - down->down_since_ms);
        buf_printf(line, "  %s paused %s: %s", down->stage, d, down->down_reason);
    }
    if (p->model) {
        buf_printf(line, "  in flight %zu", model_in_flight(p->model));
        buf_clear(&p->scratch);
        model_progress(p->model, &p->scratch);
        if (p->scratch.len) buf_printf(line, "  %s", p->scratch.data);
    }
    double frac = p->src_ops->progress ? p->src_ops->progress(p->src) : -1;
    if (frac >= 0) {
        buf_printf(line, "  %5.1f%%", frac * 100);
        if (frac > 0.001 && frac < 1) {
            double eta = elapsed * (1 - frac) / frac;
            buf_printf(line, "  ETA %d:%02d", (int)eta / 60, (int)eta % 60);
        }
    }
    log_progress(line->data);
}

static int any_rejected(const struct pipeline *p)
{
    for (size_t i = 0; i < p->nsinks; i++)
        if (p->sinks[i].rejected->value > 0) return 1;
    return 0;
}

void summary_print(struct pipeline *p, const char *status, double elapsed)
{
    FILE *out = stderr;
    log_progress_clear();
    uint64_t n_read = metric_u64(p->m.read), n_written = metric_u64(p->m.written);
    uint64_t n_committed = metric_u64(p->m.committed), n_errors = metric_u64(p->m.script_errors);
    char read[32], written[32], filtered[32], dead[32];
    fmt_count(read, sizeof read, n_read);
    fmt_count(written, sizeof written, n_written);
    fmt_count(filtered, sizeof filtered, metric_u64(p->m.filtered));
    fmt_count(dead, sizeof dead, metric_u64(p->m.dead));
    fprintf(out, "runnel: job %s %s in %.2f s (%s mode)\n", p->env->job_name, status, elapsed,
            p->env->streaming ? "stream" : "batch");
    fprintf(out, "  read %s  written %s  filtered %s  dead-lettered %s  (%.0f records/s)\n", read, written, filtered,
            dead, elapsed > 0 ? (double)n_read / elapsed : 0.0);
    if (any_rejected(p)) /* say where the dead letters of sink rejections come from */
        for (size_t i = 0; i < p->nsinks; i++) {
            fmt_count(written, sizeof written, metric_u64(p->sinks[i].written));
            fmt_count(dead, sizeof dead, metric_u64(p->sinks[i].rejected));
            fprintf(out, "  %s: written %s  rejected %s\n", p->sinks[i].label, written, dead);
        }
    if (n_errors) fprintf(out, "  script errors %llu\n", (unsigned long long)n_errors);
    if (strcmp(status, "failed") == 0 && n_committed < n_written)
        fprintf(out, "  of the written records %llu are durable (flushed at the last checkpoint); the rest were not committed\n",
                (unsigned long long)n_committed);
    for (size_t i = 0; i <= p->nsinks; i++) {
        struct sink_inst *s = i < p->nsinks ? &p->sinks[i] : &p->errors;
        int64_t paused = s->paused_ms + (s->down_since_ms >= 0 ? rn_now_ms() - s->down_since_ms : 0);
        if (!s->ops || !paused) continue;
        char d[32];
        rn_format_duration_ms(d, sizeof d, paused);
        fprintf(out, "  %s: paused %s: %s%s\n", s->label, d, s->down_reason, s->down_since_ms >= 0 ? "" : " (resumed)");
    }
    if (p->model) model_print_summary(p->model, out);
    if (p->eval) eval_print(p->eval, out);
}

int summary_write_json(struct pipeline *p, const char *status, double elapsed, const char *error, struct rn_err *err)
{
    uint64_t n_read = metric_u64(p->m.read);
    json_t *o = json_object();
    json_object_set_new(o, "job", json_string(p->env->job_name));
    json_object_set_new(o, "status", json_string(status));
    json_object_set_new(o, "mode", json_string(p->env->streaming ? "stream" : "batch"));
    json_object_set_new(o, "read", json_integer((json_int_t)n_read));
    json_object_set_new(o, "filtered", json_integer((json_int_t)metric_u64(p->m.filtered)));
    json_object_set_new(o, "written", json_integer((json_int_t)metric_u64(p->m.written)));
    json_object_set_new(o, "dead_lettered", json_integer((json_int_t)metric_u64(p->m.dead)));
    json_object_set_new(o, "script_errors", json_integer((json_int_t)metric_u64(p->m.script_errors)));
    json_object_set_new(o, "committed", json_integer((json_int_t)metric_u64(p->m.committed)));
    json_object_set_new(o, "checkpoints", json_integer((json_int_t)metric_u64(p->m.checkpoints)));
    json_object_set_new(o, "elapsed_s", json_real(elapsed));
    json_object_set_new(o, "records_per_s", json_real(elapsed > 0 ? (double)n_read / elapsed : 0));
    json_t *sinks = json_array();
    for (size_t i = 0; i < p->nsinks; i++) {
        json_t *s = json_object();
        json_object_set_new(s, "sink", json_string(p->sinks[i].label));
        json_object_set_new(s, "written", json_integer((json_int_t)metric_u64(p->sinks[i].written)));
        json_object_set_new(s, "rejected", json_integer((json_int_t)metric_u64(p->sinks[i].rejected)));
        json_array_append_new(sinks, s);
    }
    json_object_set_new(o, "sinks", sinks);
    if (p->resumed_line) json_object_set_new(o, "resumed_after_line", json_integer(p->resumed_line));
    if (error) json_object_set_new(o, "error", json_string(error));
    if (p->model) model_summary_json(p->model, o);
    if (p->eval) eval_json(p->eval, o);
    char *text = json_dumps(o, JSON_INDENT(2));
    json_decref(o);
    struct buf b;
    buf_init(&b);
    buf_puts(&b, text);
    buf_putc(&b, '\n');
    free(text);
    fdlimit_spare_release(&p->spare_fd); /* its descriptor, should none be free */
    int rc = rn_mkdir_parent(p->opts->summary_json, err);
    if (rc == 0) rc = rn_write_file_atomic(p->opts->summary_json, b.data, b.len, err);
    fdlimit_spare_take(&p->spare_fd);
    buf_free(&b);
    return rc;
}

void summary_publish_metrics(struct pipeline *p)
{
    if (!p->exporter) return;
    buf_clear(&p->exposition);
    metrics_write_prometheus(p->metrics, &p->exposition);
    exporter_publish(p->exporter, p->exposition.data ? p->exposition.data : "", p->exposition.len, rn_now_ms());
}

int summary_write_metrics(struct pipeline *p, struct rn_err *err)
{
    if (!p->opts->metrics_file) return 0;
    struct buf b;
    buf_init(&b);
    metrics_write_prometheus(p->metrics, &b);
    fdlimit_spare_release(&p->spare_fd);
    int rc = rn_mkdir_parent(p->opts->metrics_file, err);
    if (rc == 0) rc = rn_write_file_atomic(p->opts->metrics_file, b.data ? b.data : "", b.len, err);
    fdlimit_spare_take(&p->spare_fd);
    buf_free(&b);
    return rc;
}
