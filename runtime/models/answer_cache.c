/* answer_cache.c: the answer cache (cache.c, the log on disk) in front of a model's calls.
 *
 * The key of a call is a SHA-256 over a fixed part (a version, the provider, the task, the
 * output declaration and its schema) and exactly what goes on the wire: the request URL and
 * body the provider built; never the headers, which hold the api key. Only answers that
 * validated are stored, and they are checked again when used, so a cached answer is never one
 * the current declaration would reject. A hit gives its slot back at once and waits in a small
 * queue until the next model_poll reports it, as every completion is reported. */
#include "models/model_int.h"

#include <stdlib.h>
#include <string.h>

#define CACHE_SYNC_MS 5000          /* fsync new cache entries at most this often */
#define CACHE_KEY_VERSION "runnel answer cache 1"

/* name with every byte outside [A-Za-z0-9._-] made '_', so it is one safe path component. */
static void put_path_component(struct buf *b, const char *name)
{
    if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) { buf_putc(b, '_'); return; }
    for (; *name; name++) {
        char c = *name;
        int safe = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                   c == '_' || c == '-';
        buf_putc(b, safe ? c : '_');
    }
}

/* The part of every key that is the same for every record: what the answer must look like. */
static void cache_key_base(struct model *m)
{
    static const char *const task_names[] = {"classification", "text_generation", "embedding", "regression",
                                             "clustering"};
    const struct output *o = &m->output;
    struct cache_hash *h = &m->cache.base;
    cache_hash_init(h);
    cache_hash_field(h, CACHE_KEY_VERSION, strlen(CACHE_KEY_VERSION));
    cache_hash_field(h, m->provider_name, strlen(m->provider_name));
    cache_hash_field(h, task_names[m->task], strlen(task_names[m->task]));
    struct buf d;
    buf_init(&d);
    buf_printf(&d, "structured=%d", o->structured);
    for (size_t i = 0; i < o->field_count; i++) {
        const struct output_field *f = &o->fields[i];
        buf_printf(&d, ";%zu:%s %s", strlen(f->name), f->name, output_type_name(f->type));
        if (f->has_min) buf_printf(&d, " min=%.17g", f->min);
        if (f->has_max) buf_printf(&d, " max=%.17g", f->max);
        for (size_t k = 0; k < f->enum_count; k++) buf_printf(&d, " enum=%zu:%s", strlen(f->enum_values[k]), f->enum_values[k]);
        if (f->description) buf_printf(&d, " description=%zu:%s", strlen(f->description), f->description);
    }
    cache_hash_field(h, d.data, d.len);
    cache_hash_field(h, o->schema_json ? o->schema_json : "", o->schema_json ? strlen(o->schema_json) : 0);
    buf_free(&d);
}

int answer_cache_open(struct model *m, int opts, struct rn_err *err)
{
    struct job_env *env = m->env;
    buf_init(&m->cache.value);
    int on = opt_boolean(m->L, opts, "cache", !env->streaming);
    if (!on || env->no_cache || !env->state_dir || !*env->state_dir) return 0;
    struct buf path;
    buf_init(&path);
    buf_printf(&path, "%s/cache/", env->state_dir);
    put_path_component(&path, env->job_name ? env->job_name : "job");
    buf_putc(&path, '/');
    put_path_component(&path, m->provider_name);
    buf_putc(&path, '.');
    put_path_component(&path, m->model_name);
    buf_puts(&path, ".cache");
    m->cache.log = cache_open(path.data, err);
    buf_free(&path);
    if (!m->cache.log) {
        size_t n = strlen(err->msg);
        snprintf(err->msg + n, sizeof err->msg - n, " (answers are cached in the state directory %s: choose another "
                 "with --state-dir, or run with --no-cache)", env->state_dir);
        return rn_wrap(err, "cache");
    }
    cache_key_base(m);
    m->cache.sync_due_ms = rn_now_ms() + CACHE_SYNC_MS;
    return 0;
}

/* The cached answer in m->cache.value, checked again like a fresh one: 1 and the fields set
 * on the slot's record when it validates; 0 when it does not (the call goes out instead).
 * The reply text and done_reason of a call being finished are left alone. */
static int use_cached(struct model *m, struct slot *s)
{
    struct model_reply cached = {.text = m->cache.value}; /* the text is lent, not copied */
    int ok = 0;
    if (m->call_task == MODEL_TASK_EMBEDDING) cached.vector = json_loadb(m->cache.value.data, m->cache.value.len, 0, NULL);
    if (m->call_task != MODEL_TASK_EMBEDDING || cached.vector) {
        buf_clear(&m->scratch); /* why it does not validate: not kept, the call goes out instead */
        ok = model_check_reply(m, &cached, s->record_ref, &m->scratch) == 0;
    }
    json_decref(cached.vector);
    return ok;
}

int answer_cache_lookup(struct model *m, struct slot *s)
{
    struct answer_cache *c = &m->cache;
    if (!c->log) return 0;
    /* the fixed part, then exactly what goes on the wire (the URL and the body; the headers,
     * which hold the api key, stay out) */
    struct cache_hash h = c->base;
    cache_hash_field(&h, s->req.url.data ? s->req.url.data : "", s->req.url.len);
    cache_hash_field(&h, s->req.body.data ? s->req.body.data : "", s->req.body.len);
    cache_hash_final(&h, s->key);
    if (!cache_get(c->log, s->key, &c->value) || !use_cached(m, s)) return 0;
    if (c->hits_len == c->hits_cap) {
        c->hits_cap = c->hits_cap ? c->hits_cap * 2 : 64;
        c->hits = rn_realloc(c->hits, c->hits_cap * sizeof *c->hits);
    }
    c->hits[c->hits_len++] = (struct cache_hit){s->tag, s->record_ref};
    return 1;
}

void answer_cache_store(struct model *m, struct slot *s) { answer_cache_store_key(m, s->key); }

/* A failed write stops the storing, not the job: the cache only saves calls. */
void answer_cache_store_key(struct model *m, const uint8_t key[CACHE_KEY_SIZE])
{
    struct answer_cache *c = &m->cache;
    if (!c->log) return;
    struct model_reply *r = &m->reply;
    char *vector = NULL;
    const char *value = r->text.data ? r->text.data : "";
    size_t len = r->text.len;
    if (m->call_task == MODEL_TASK_EMBEDDING) {
        vector = r->vector ? json_dumps(r->vector, JSON_COMPACT) : NULL;
        if (!vector) return;
        value = vector;
        len = strlen(vector);
    }
    size_t before = cache_count(c->log);
    struct rn_err err;
    if (cache_put(c->log, key, value, len, &err) && !c->error) c->error = rn_strdup(err.msg);
    metric_add(m->stats.cache_stored, (double)(cache_count(c->log) - before));
    free(vector);
}

size_t answer_cache_report(struct model *m)
{
    struct answer_cache *c = &m->cache;
    size_t n = 0;
    while (c->hits_next < c->hits_len) {
        struct cache_hit hit = c->hits[c->hits_next++];
        metric_inc(m->stats.ok);
        metric_inc(m->stats.cache_hits);
        n++;
        if (m->done) m->done(m->done_ctx, hit.tag, hit.record_ref, 1, NULL, NULL);
    }
    c->hits_len = c->hits_next = 0;
    return n;
}

void answer_cache_tick(struct model *m, int64_t now)
{
    struct answer_cache *c = &m->cache;
    if (!c->log || now < c->sync_due_ms) return;
    c->sync_due_ms = now + CACHE_SYNC_MS;
    struct rn_err err;
    if (cache_sync(c->log, &err) && !c->error) c->error = rn_strdup(err.msg);
}

void answer_cache_close(struct answer_cache *c)
{
    cache_close(c->log);
    free(c->hits);
    free(c->error);
    buf_free(&c->value);
}
