/* stats.c: what a model did, for the run summary: counters (requests, retries, answers, tokens,
 * cache hits), a latency histogram (log-linear, 16 buckets per power of two of microseconds: a
 * fixed array, so recording costs one increment), the cost estimate from `price`, and the
 * summary as text (model_print_summary) and JSON (model_summary_json). */
#include "models/model_int.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

static size_t latency_bucket(uint64_t us)
{
    if (us < 32) return (size_t)us;
    int e = 63 - __builtin_clzll(us);
    size_t index = 32 + (size_t)(e - 5) * 16 + (size_t)((us >> (e - 4)) & 15);
    return index < LATENCY_BUCKETS ? index : LATENCY_BUCKETS - 1;
}

static double latency_bucket_mid_us(size_t index)
{
    if (index < 32) return (double)index;
    int e = (int)((index - 32) / 16) + 5;
    double sub = (double)((index - 32) % 16);
    double width = ldexp(1.0, e - 4);
    return (16 + sub) * width + width / 2;
}

double stats_latency_percentile_ms(const struct stats *s, double p)
{
    if (!s->latency_count) return 0;
    uint64_t rank = (uint64_t)ceil(p * (double)s->latency_count);
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < LATENCY_BUCKETS; i++) {
        seen += s->latency[i];
        if (seen >= rank) return latency_bucket_mid_us(i) / 1000.0;
    }
    return 0;
}


void stats_latency_add(struct stats *s, int64_t us)
{
    s->latency[latency_bucket(us > 0 ? (uint64_t)us : 0)]++;
    s->latency_count++;
    metric_observe(s->latency_seconds, (double)us / 1e6);
}

int stats_open(struct stats *s, struct metrics *registry, const char *provider, const char *model, struct rn_err *err)
{
    if (!registry) registry = s->own = metrics_new(NULL, 0, err);
    if (!registry) return -1;
    s->batch_price = 1;
    char name[256];
    snprintf(name, sizeof name, "%s.%s", provider, model);
    struct metric_label label = {"model", name};
    static const double latency_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
    static const struct {
        size_t offset;
        const char *name, *help;
    } counters[] = {
        {offsetof(struct stats, requests), "runnel_model_requests_total", "HTTP requests sent to the model, retries included."},
        {offsetof(struct stats, ok), "runnel_model_answers_ok_total", "Records the model answered validly (cache hits included)."},
        {offsetof(struct stats, failed), "runnel_model_answers_failed_total", "Records the model failed for good."},
        {offsetof(struct stats, retried), "runnel_model_retries_total", "Requests that were a retry of an earlier attempt."},
        {offsetof(struct stats, rate_limited), "runnel_model_rate_limited_total",
         "Answers that refused the request for rate (HTTP 429, or the provider's equivalent)."},
        {offsetof(struct stats, invalid_answers), "runnel_model_invalid_answers_total", "Answers that did not validate."},
        {offsetof(struct stats, corrections), "runnel_model_corrections_total", "Correction calls after an invalid answer."},
        {offsetof(struct stats, corrected), "runnel_model_corrected_total", "Correction calls whose answer validated."},
        {offsetof(struct stats, connections), "runnel_model_connections_total", "Connections opened to the endpoint."},
        {offsetof(struct stats, cache_hits), "runnel_model_cache_hits_total", "Records answered from the answer cache."},
        {offsetof(struct stats, cache_stored), "runnel_model_cache_stored_total", "Answers stored in the answer cache."},
        {offsetof(struct stats, tokens_in), "runnel_model_tokens_in_total", "Input tokens the endpoint reported."},
        {offsetof(struct stats, tokens_out), "runnel_model_tokens_out_total", "Output tokens the endpoint reported."},
        {offsetof(struct stats, answers_without_usage), "runnel_model_answers_without_usage_total",
         "Answers that reported no token usage (the cost estimate cannot count them)."},
        {offsetof(struct stats, tokens_cache_read), "runnel_model_tokens_cache_read_total",
         "Input tokens the provider's prompt cache served (of tokens in)."},
        {offsetof(struct stats, tokens_cache_write), "runnel_model_tokens_cache_write_total",
         "Input tokens written to the provider's prompt cache (of tokens in)."},
        {offsetof(struct stats, batch_records), "runnel_model_batch_records_total", "Records sent through batches."},
        {offsetof(struct stats, batch_answered), "runnel_model_batch_answered_total",
         "Records a batch answered validly."},
        {offsetof(struct stats, batch_live), "runnel_model_batch_live_total",
         "Records a batch did not answer (validly) that went to live calls."},
        {offsetof(struct stats, batch_failed), "runnel_model_batch_dead_lettered_total",
         "Records a batch did not answer that were dead-lettered."},
        {offsetof(struct stats, batch_tokens_in), "runnel_model_batch_tokens_in_total", "Input tokens of batch answers."},
        {offsetof(struct stats, batch_tokens_out), "runnel_model_batch_tokens_out_total", "Output tokens of batch answers."},
        {offsetof(struct stats, inputs_requests), "runnel_model_inputs_requests_total",
         "Requests that carried several records' embedding inputs (batch_inputs), retries included."},
        {offsetof(struct stats, inputs_records), "runnel_model_inputs_records_total",
         "Records carried by requests of several inputs, retries included."},
        {offsetof(struct stats, inputs_alone), "runnel_model_inputs_alone_total",
         "Records sent again alone after a request of several inputs was refused or its answer lacked them."},
    };
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++) {
        struct metric *c = metrics_counter(registry, counters[i].name, counters[i].help, &label, 1, err);
        if (!c) return -1;
        *(struct metric **)((char *)s + counters[i].offset) = c;
    }
    s->latency_seconds = metrics_histogram(registry, "runnel_model_latency_seconds", "Time of one HTTP request to the model.",
                                           &label, 1, latency_bounds, sizeof latency_bounds / sizeof latency_bounds[0], err);
    s->in_flight = metrics_gauge(registry, "runnel_model_calls_in_flight", "Records waiting for the model now.", &label, 1, err);
    s->cost_usd = metrics_gauge(registry, "runnel_model_cost_usd", "Estimated cost so far (from price).", &label, 1, err);
    s->window = metrics_gauge(registry, "runnel_model_concurrency_window",
                              "Calls allowed in flight now: the window with concurrency = \"auto\", else the concurrency.",
                              &label, 1, err);
    return s->latency_seconds && s->in_flight && s->cost_usd && s->window ? 0 : -1;
}

void stats_close(struct stats *s)
{
    metrics_free(s->own);
    s->own = NULL;
}

/* `price` as the declaration checked it (MODEL_PRICE_OPTIONS: numbers >= 0). */
int stats_read_price(struct stats *s, lua_State *L, int opts, struct rn_err *err)
{
    (void)err;
    if (!opt_push(L, opts, "price")) return 0;
    int t = lua_gettop(L);
    s->price_in = opt_number(L, t, "input", 0);
    s->price_out = opt_number(L, t, "output", 0);
    s->price_cache_read = opt_number(L, t, "cache_read", s->price_in);
    s->price_cache_write = opt_number(L, t, "cache_write", s->price_in);
    lua_pop(L, 1);
    s->has_price = 1;
    return 0;
}

/* "1.1", "2", "1.1 and 2" by the answers seen, NULL before any. */
static const char *http_versions(const struct stats *s)
{
    if (s->answers_http1 && s->answers_http2) return "1.1 and 2";
    return s->answers_http2 ? "2" : s->answers_http1 ? "1.1" : NULL;
}

/* The line on calls, connections and descriptors: "calls in flight max 2000 over 21
 * connections (HTTP/2)", and what the descriptor limit did. */
static void print_connections(struct model *m, FILE *out)
{
    const struct stats *st = &m->stats;
    const struct model_descriptors *d = &m->fds;
    int connections = m->http ? http_connections_max(m->http) : 0;
    const char *versions = http_versions(st);
    if (!st->in_flight_max && !d->lowered) return; /* every answer came from the cache */
    fprintf(out, "  calls in flight max %d over %d connection%s", st->in_flight_max, connections,
            connections == 1 ? "" : "s");
    if (versions) fprintf(out, " (HTTP/%s)", versions);
    if (d->fit < d->asked || d->lowered) {
        fprintf(out, "; open files limit %ld: connections at most %ld", d->limit.soft,
                d->multiplexed ? d->connections_cap : d->fit);
        if (m->limits.concurrency < d->asked)
            fprintf(out, ", calls in flight at most %d of %d", m->limits.concurrency, d->asked);
    }
    if (st->descriptor_waits)
        fprintf(out, "; %llu requests found no free file descriptor and waited (not retries)",
                (unsigned long long)st->descriptor_waits);
    fputc('\n', out);
}

/* What the tokens cost at the live price: input tokens the prompt cache served or stored are
 * priced as `price` says (cache_read, cache_write; the input price when it says nothing). */
double stats_cost_live_usd(const struct stats *s)
{
    double read = s->tokens_cache_read->value, written = s->tokens_cache_write->value;
    double uncached = s->tokens_in->value - read - written;
    return (uncached * s->price_in + read * s->price_cache_read + written * s->price_cache_write +
            s->tokens_out->value * s->price_out) / 1e6;
}

/* What they cost: the tokens of batch answers at the batch price (a share of the live one). */
double stats_cost_usd(const struct stats *s)
{
    double batch = (s->batch_tokens_in->value * s->price_in + s->batch_tokens_out->value * s->price_out) / 1e6;
    return stats_cost_live_usd(s) - batch * (1 - s->batch_price);
}

/* No answer reported tokens, though some came: a cost of $0 would be a guess, not an estimate. */
static int cost_unknown(const struct stats *s)
{
    return metric_u64(s->answers_without_usage) > 0 && s->tokens_in->value == 0 && s->tokens_out->value == 0;
}

void model_print_summary(struct model *m, FILE *out)
{
    const struct stats *st = &m->stats;
    fprintf(out, "model.%s %s: %llu ok, %llu failed; %llu requests, %llu retries, %llu invalid answers "
                 "(%llu corrected by a retry)\n",
            m->provider_name, m->model_name, (unsigned long long)metric_u64(st->ok), (unsigned long long)metric_u64(st->failed),
            (unsigned long long)metric_u64(st->requests), (unsigned long long)metric_u64(st->retried),
            (unsigned long long)metric_u64(st->invalid_answers), (unsigned long long)metric_u64(st->corrected));
    char without[64] = "";
    if (metric_u64(st->answers_without_usage))
        snprintf(without, sizeof without, " (%llu answers without usage)",
                 (unsigned long long)metric_u64(st->answers_without_usage));
    fprintf(out, "  tokens in %lld, out %lld%s; latency p50 %.1f ms, p95 %.1f ms, p99 %.1f ms\n",
            (long long)metric_u64(st->tokens_in), (long long)metric_u64(st->tokens_out), without,
            stats_latency_percentile_ms(st, 0.50), stats_latency_percentile_ms(st, 0.95),
            stats_latency_percentile_ms(st, 0.99));
    if (metric_u64(st->failed) && st->first_failure[0]) fprintf(out, "  first failure: %s\n", st->first_failure);
    if (metric_u64(st->tokens_cache_read) || metric_u64(st->tokens_cache_write))
        fprintf(out, "  prompt cache: %lld input tokens read from it, %lld written to it\n",
                (long long)metric_u64(st->tokens_cache_read), (long long)metric_u64(st->tokens_cache_write));
    print_connections(m, out);
    if (m->batch_inputs > 1) {
        uint64_t requests = metric_u64(st->inputs_requests), records = metric_u64(st->inputs_records);
        fprintf(out, "  batch_inputs %d: %llu requests of several inputs carried %llu records (%.1f a request); "
                     "%llu records sent again alone\n", m->batch_inputs, (unsigned long long)requests,
                (unsigned long long)records, requests ? (double)records / (double)requests : 0.0,
                (unsigned long long)metric_u64(st->inputs_alone));
    }
    if (m->breaker.opened) {
        struct buf paused;
        buf_init(&paused);
        breaker_describe(&m->breaker, rn_now_ms(), &paused);
        fprintf(out, "  %s; the endpoint's breaker opened %d time%s\n", paused.data, m->breaker.opened,
                m->breaker.opened == 1 ? "" : "s");
        buf_free(&paused);
    }
    if (m->cache.log)
        fprintf(out, "  cache hits %llu, answers stored %llu (%zu in %s)\n", (unsigned long long)metric_u64(st->cache_hits),
                (unsigned long long)metric_u64(st->cache_stored), cache_count(m->cache.log), cache_path(m->cache.log));
    if (m->cache.error) fprintf(out, "  cache: stopped storing answers: %s\n", m->cache.error);
    if (m->limits.adaptive)
        fprintf(out, "  concurrency auto: started %d, ended %d, mean %.1f, min %d, max %d\n", LIMITS_AUTO_START,
                (int)m->limits.window, limits_window_mean(&m->limits), (int)m->limits.window_min, (int)m->limits.window_max);
    quota_print(&m->quota, &m->limits, out);
    batch_print(m, out);
    if (st->has_price && cost_unknown(st)) fprintf(out, "  cost unknown: the server reported no token usage\n");
    else if (st->has_price && metric_u64(st->answers_without_usage))
        fprintf(out, "  cost $%.4f (estimate; %llu answers reported no token usage and are not in it)\n", stats_cost_usd(st),
                (unsigned long long)metric_u64(st->answers_without_usage));
    else if (st->has_price && m->batch.on)
        fprintf(out, "  cost $%.4f (estimate; batch answers at %.0f%% of the live price): $%.4f at the live price, "
                     "saved $%.4f\n", stats_cost_usd(st), st->batch_price * 100, stats_cost_live_usd(st),
                stats_cost_live_usd(st) - stats_cost_usd(st));
    else if (st->has_price) fprintf(out, "  cost $%.4f (estimate)\n", stats_cost_usd(st));
}

void model_summary_json(struct model *m, json_t *summary)
{
    const struct stats *st = &m->stats;
    json_t *o = json_object();
    json_object_set_new(o, "provider", json_string(m->provider_name));
    json_object_set_new(o, "name", json_string(m->model_name));
    json_object_set_new(o, "requests", json_integer((json_int_t)metric_u64(st->requests)));
    json_object_set_new(o, "ok", json_integer((json_int_t)metric_u64(st->ok)));
    json_object_set_new(o, "retries", json_integer((json_int_t)metric_u64(st->retried)));
    json_object_set_new(o, "failed", json_integer((json_int_t)metric_u64(st->failed)));
    json_object_set_new(o, "paused_ms", json_integer((json_int_t)breaker_paused_ms(&m->breaker, rn_now_ms())));
    json_object_set_new(o, "invalid_answers", json_integer((json_int_t)metric_u64(st->invalid_answers)));
    json_object_set_new(o, "corrections", json_integer((json_int_t)metric_u64(st->corrections)));
    json_object_set_new(o, "corrected", json_integer((json_int_t)metric_u64(st->corrected)));
    json_object_set_new(o, "connections", json_integer((json_int_t)metric_u64(st->connections)));
    json_object_set_new(o, "in_flight_max", json_integer(st->in_flight_max));
    json_object_set_new(o, "connections_max", json_integer(m->http ? http_connections_max(m->http) : 0));
    const char *versions = http_versions(st);
    json_object_set_new(o, "http_version", versions ? json_string(versions) : json_null());
    json_t *fds = json_object();
    json_object_set_new(fds, "limit", m->fds.limit.soft < 0 ? json_null() : json_integer(m->fds.limit.soft));
    json_object_set_new(fds, "hard_limit", m->fds.limit.hard < 0 ? json_null() : json_integer(m->fds.limit.hard));
    json_object_set_new(fds, "connections_fit", json_integer(m->fds.fit));
    json_object_set_new(fds, "lowered", json_boolean(m->limits.concurrency < m->fds.asked));
    json_object_set_new(fds, "waits", json_integer((json_int_t)st->descriptor_waits));
    json_object_set_new(o, "descriptors", fds);
    json_object_set_new(o, "tokens_in", json_integer((json_int_t)metric_u64(st->tokens_in)));
    json_object_set_new(o, "tokens_out", json_integer((json_int_t)metric_u64(st->tokens_out)));
    json_object_set_new(o, "first_failure", st->first_failure[0] ? json_string(st->first_failure) : json_null());
    json_object_set_new(o, "answers_without_usage", json_integer((json_int_t)metric_u64(st->answers_without_usage)));
    json_object_set_new(o, "tokens_cache_read", json_integer((json_int_t)metric_u64(st->tokens_cache_read)));
    json_object_set_new(o, "tokens_cache_write", json_integer((json_int_t)metric_u64(st->tokens_cache_write)));
    json_t *lat = json_object();
    json_object_set_new(lat, "p50", json_real(stats_latency_percentile_ms(st, 0.50)));
    json_object_set_new(lat, "p95", json_real(stats_latency_percentile_ms(st, 0.95)));
    json_object_set_new(lat, "p99", json_real(stats_latency_percentile_ms(st, 0.99)));
    json_object_set_new(o, "latency_ms", lat);
    json_object_set_new(o, "cost_usd", st->has_price && !cost_unknown(st) ? json_real(stats_cost_usd(st)) : json_null());
    json_object_set_new(o, "cost_live_usd",
                        st->has_price && !cost_unknown(st) ? json_real(stats_cost_live_usd(st)) : json_null());
    quota_json(&m->quota, &m->limits, o);
    batch_json(m, o);
    json_t *inputs = json_object();
    json_object_set_new(inputs, "batch_inputs", json_integer(m->batch_inputs));
    json_object_set_new(inputs, "requests", json_integer((json_int_t)metric_u64(st->inputs_requests)));
    json_object_set_new(inputs, "records", json_integer((json_int_t)metric_u64(st->inputs_records)));
    json_object_set_new(inputs, "alone", json_integer((json_int_t)metric_u64(st->inputs_alone)));
    json_object_set_new(o, "inputs", inputs);
    json_t *conc = json_object();
    if (m->limits.adaptive) {
        json_object_set_new(conc, "mode", json_string("auto"));
        json_object_set_new(conc, "ceiling", json_integer(m->limits.concurrency));
        json_object_set_new(conc, "asked_ceiling", json_integer(m->fds.asked));
        json_object_set_new(conc, "start", json_integer(LIMITS_AUTO_START));
        json_object_set_new(conc, "final", json_integer((json_int_t)m->limits.window));
        json_object_set_new(conc, "mean", json_real(round(limits_window_mean(&m->limits) * 10) / 10));
        json_object_set_new(conc, "min", json_integer((json_int_t)m->limits.window_min));
        json_object_set_new(conc, "max", json_integer((json_int_t)m->limits.window_max));
    } else {
        json_object_set_new(conc, "mode", json_string("fixed"));
        json_object_set_new(conc, "limit", json_integer(m->limits.concurrency));
        json_object_set_new(conc, "asked", json_integer(m->fds.asked));
    }
    json_object_set_new(o, "concurrency", conc);
    json_object_set_new(o, "cache_hits", json_integer((json_int_t)metric_u64(st->cache_hits)));
    if (m->cache.log) {
        json_t *c = json_object();
        json_object_set_new(c, "path", json_string(cache_path(m->cache.log)));
        json_object_set_new(c, "entries", json_integer((json_int_t)cache_count(m->cache.log)));
        json_object_set_new(c, "stored", json_integer((json_int_t)metric_u64(st->cache_stored)));
        json_object_set_new(c, "torn_bytes_cut", json_integer(cache_torn_bytes(m->cache.log)));
        json_object_set_new(c, "error", m->cache.error ? json_string(m->cache.error) : json_null());
        json_object_set_new(o, "cache", c);
    } else {
        json_object_set_new(o, "cache", json_null());
    }
    json_object_set_new(summary, "model", o);
}
