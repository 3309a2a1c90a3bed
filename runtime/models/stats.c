/* stats.c: what a model did, for the run summary: counters (requests, retries, answers, tokens,
 * cache hits), a latency histogram (log-linear, 16 buckets per power of two of microseconds: a
 * fixed array, so recording costs one increment), the cost estimate from `price`, and the
 * summary as text (model_print_summary) and JSON (model_summary_json). */
#include "models/model_int.h"

#include <math.h>
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
}

/* `price` as the declaration checked it (MODEL_PRICE_OPTIONS: numbers >= 0). */
int stats_read_price(struct stats *s, lua_State *L, int opts, struct rn_err *err)
{
    (void)err;
    if (!opt_push(L, opts, "price")) return 0;
    int t = lua_gettop(L);
    s->price_in = opt_number(L, t, "input", 0);
    s->price_out = opt_number(L, t, "output", 0);
    lua_pop(L, 1);
    s->has_price = 1;
    return 0;
}

static double cost_usd(const struct stats *s)
{
    return ((double)s->tokens_in * s->price_in + (double)s->tokens_out * s->price_out) / 1e6;
}

void model_print_summary(struct model *m, FILE *out)
{
    const struct stats *st = &m->stats;
    fprintf(out, "model.%s %s: %llu ok, %llu failed; %llu requests, %llu retries, %llu invalid answers "
                 "(%llu corrected by a retry)\n",
            m->provider_name, m->model_name, (unsigned long long)st->ok, (unsigned long long)st->failed,
            (unsigned long long)st->requests, (unsigned long long)st->retried,
            (unsigned long long)st->invalid_answers, (unsigned long long)st->corrected);
    fprintf(out, "  tokens in %lld, out %lld; latency p50 %.1f ms, p95 %.1f ms, p99 %.1f ms\n",
            (long long)st->tokens_in, (long long)st->tokens_out, stats_latency_percentile_ms(st, 0.50),
            stats_latency_percentile_ms(st, 0.95), stats_latency_percentile_ms(st, 0.99));
    if (m->cache.log)
        fprintf(out, "  cache hits %llu, answers stored %llu (%zu in %s)\n", (unsigned long long)st->cache_hits,
                (unsigned long long)st->cache_stored, cache_count(m->cache.log), cache_path(m->cache.log));
    if (m->cache.error) fprintf(out, "  cache: stopped storing answers: %s\n", m->cache.error);
    if (m->limits.adaptive)
        fprintf(out, "  concurrency auto: started %d, ended %d, mean %.1f, min %d, max %d\n", LIMITS_AUTO_START,
                (int)m->limits.window, limits_window_mean(&m->limits), (int)m->limits.window_min, (int)m->limits.window_max);
    if (st->has_price) fprintf(out, "  cost $%.4f (estimate)\n", cost_usd(st));
}

void model_summary_json(struct model *m, json_t *summary)
{
    const struct stats *st = &m->stats;
    json_t *o = json_object();
    json_object_set_new(o, "provider", json_string(m->provider_name));
    json_object_set_new(o, "name", json_string(m->model_name));
    json_object_set_new(o, "requests", json_integer((json_int_t)st->requests));
    json_object_set_new(o, "ok", json_integer((json_int_t)st->ok));
    json_object_set_new(o, "retries", json_integer((json_int_t)st->retried));
    json_object_set_new(o, "failed", json_integer((json_int_t)st->failed));
    json_object_set_new(o, "invalid_answers", json_integer((json_int_t)st->invalid_answers));
    json_object_set_new(o, "corrections", json_integer((json_int_t)st->corrections));
    json_object_set_new(o, "corrected", json_integer((json_int_t)st->corrected));
    json_object_set_new(o, "connections", json_integer((json_int_t)st->connections));
    json_object_set_new(o, "tokens_in", json_integer(st->tokens_in));
    json_object_set_new(o, "tokens_out", json_integer(st->tokens_out));
    json_t *lat = json_object();
    json_object_set_new(lat, "p50", json_real(stats_latency_percentile_ms(st, 0.50)));
    json_object_set_new(lat, "p95", json_real(stats_latency_percentile_ms(st, 0.95)));
    json_object_set_new(lat, "p99", json_real(stats_latency_percentile_ms(st, 0.99)));
    json_object_set_new(o, "latency_ms", lat);
    json_object_set_new(o, "cost_usd", st->has_price ? json_real(cost_usd(st)) : json_null());
    json_t *conc = json_object();
    if (m->limits.adaptive) {
        json_object_set_new(conc, "mode", json_string("auto"));
        json_object_set_new(conc, "start", json_integer(LIMITS_AUTO_START));
        json_object_set_new(conc, "final", json_integer((json_int_t)m->limits.window));
        json_object_set_new(conc, "mean", json_real(round(limits_window_mean(&m->limits) * 10) / 10));
        json_object_set_new(conc, "min", json_integer((json_int_t)m->limits.window_min));
        json_object_set_new(conc, "max", json_integer((json_int_t)m->limits.window_max));
    } else {
        json_object_set_new(conc, "mode", json_string("fixed"));
        json_object_set_new(conc, "limit", json_integer(m->limits.concurrency));
    }
    json_object_set_new(o, "concurrency", conc);
    json_object_set_new(o, "cache_hits", json_integer((json_int_t)st->cache_hits));
    if (m->cache.log) {
        json_t *c = json_object();
        json_object_set_new(c, "path", json_string(cache_path(m->cache.log)));
        json_object_set_new(c, "entries", json_integer((json_int_t)cache_count(m->cache.log)));
        json_object_set_new(c, "stored", json_integer((json_int_t)st->cache_stored));
        json_object_set_new(c, "torn_bytes_cut", json_integer(cache_torn_bytes(m->cache.log)));
        json_object_set_new(c, "error", m->cache.error ? json_string(m->cache.error) : json_null());
        json_object_set_new(o, "cache", c);
    } else {
        json_object_set_new(o, "cache", json_null());
    }
    json_object_set_new(summary, "model", o);
}
