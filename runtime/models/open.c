/* open.c: opening a model (model.h): its options, its secrets, the provider, the slots and
 * the HTTP client on the job's loop; and closing it. The hot path is engine.c's. */
#include "models/model_int.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lua/job.h"
#include "lua/transport.h"
#include "models/prompt.h"

/* ---- secrets ---- */

static void add_secret(struct model *m, const char *value)
{
    if (value && strlen(value) >= 4) secret_set_add(&m->secrets, value); /* shorter: not worth the name */
}

/* The values of the options the provider names as secret: a string or secret() value, or every
 * value of a table option, plain strings too (an "api-key" header is as secret as secret()
 * makes it). */
static void collect_secrets(struct model *m, int opts)
{
    lua_State *L = m->L;
    for (const char *const *name = m->provider->secret_options; name && *name; name++) {
        if (!opt_push(L, opts, *name)) continue;
        if (lua_type(L, -1) == LUA_TTABLE) {
            lua_pushnil(L);
            while (lua_next(L, -2)) {
                add_secret(m, luajob_secret_value(L, -1));
                lua_pop(L, 1);
            }
        } else {
            add_secret(m, luajob_secret_value(L, -1));
        }
        lua_pop(L, 1);
    }
}

/* ---- opening ---- */

static const char *const task_names[] = {"classification", "text_generation", "embedding", "regression", "clustering"};

/* The task, and what the provider is asked for it: clustering over the job's centroids asks
 * for embeddings; regression and clustering without centroids need a model that answers them
 * itself (PROVIDER_PREDICT, model.http). */
static int read_task(struct model *m, int opts, struct rn_err *err)
{
    lua_State *L = m->L;
    const char *task = opt_string(L, opts, "task", "classification"); /* one of task_names: checked */
    for (int i = 0; i <= MODEL_TASK_CLUSTERING; i++)
        if (strcmp(task, task_names[i]) == 0) m->task = (enum model_task)i;
    if (centroids_read(&m->centroids, L, opts, err)) return -1;
    if (m->centroids.count && m->task != MODEL_TASK_CLUSTERING)
        return rn_fail(err, "centroids: for task clustering only (task = \"clustering\")");
    m->call_task = m->centroids.count ? MODEL_TASK_EMBEDDING : m->task;
    unsigned can = m->provider->capabilities, need;
    switch (m->call_task) {
    case MODEL_TASK_EMBEDDING: need = PROVIDER_EMBEDDINGS; break;
    case MODEL_TASK_REGRESSION:
    case MODEL_TASK_CLUSTERING: need = PROVIDER_PREDICT; break;
    default: need = PROVIDER_CHAT; break;
    }
    if (can & need) return 0;
    if (m->task == MODEL_TASK_CLUSTERING)
        return rn_fail(err, "task: clustering needs centroids = { name = { ... } } and a model with embeddings, "
                            "or a model that answers clusters itself (model.http)");
    if (need == PROVIDER_PREDICT)
        return rn_fail(err, "task: this provider does not do %s (model.http reaches a model that does)", task);
    return rn_fail(err, "task: this provider does not do %s", task);
}

/* The breaker's series go beside the model's, with the same label. */
static int open_breaker(struct model *m, struct rn_err *err)
{
    char name[256];
    snprintf(name, sizeof name, "%s.%s", m->provider_name, m->model_name);
    struct metric_label label = {"model", name};
    struct metrics *registry = m->env->metrics ? m->env->metrics : m->stats.own;
    return breaker_open(&m->breaker, registry, &label, m->limits.outage_ms, err);
}

static int read_options(struct model *m, int opts, struct rn_err *err)
{
    lua_State *L = m->L;
    if (read_task(m, opts, err)) return -1;
    unsigned can = m->provider->capabilities;
    const char *system = opt_string(L, opts, "system", NULL);
    if (system) {
        if (m->call_task == MODEL_TASK_EMBEDDING)
            return rn_fail(err, "system: task %s takes no system prompt (an embedding has none)", task_names[m->task]);
        m->system = rn_strdup(system);
        m->system_len = strlen(system);
    }
    lua_getfield(L, opts, "prompt");
    if (lua_type(L, -1) == LUA_TFUNCTION) {
        m->prompt = prompt_from_function(L, -1);
    } else {
        size_t len;
        const char *text = lua_tolstring(L, -1, &len);
        m->prompt = text ? prompt_parse(L, text, len, err) : NULL;
        if (!text) rn_fail(err, "prompt: missing (a template with {{field}} placeholders, or a function)");
    }
    lua_pop(L, 1);
    if (!m->prompt) return -1;
    const char *model_option = m->provider->model_option;
    m->model_name = rn_strdup(model_option ? opt_string(L, opts, model_option, "?") : m->provider_name);
    if (output_read(&m->output, L, opts, m->task, can, err) || limits_read(&m->limits, L, opts, err) ||
        stats_open(&m->stats, m->env->metrics, m->provider_name, m->model_name, err) ||
        stats_read_price(&m->stats, L, opts, err) || open_breaker(m, err))
        return -1;
    m->values = rn_calloc(m->output.field_count, sizeof *m->values);
    m->batch_inputs = 1;
    if (m->provider->build_inputs && m->call_task == MODEL_TASK_EMBEDDING && !m->env->answer) {
        int64_t n = opt_integer(L, opts, "batch_inputs", 1); /* in 1..the provider's most: checked */
        if (m->provider->max_inputs > 0 && n > m->provider->max_inputs) n = m->provider->max_inputs;
        m->batch_inputs = n > 1 ? (int)n : 1;
    }
    quota_init(&m->quota, &m->limits);
    collect_secrets(m, opts);
    return 0;
}

/* main() has called curl_global_init (the model never does: it is not thread-safe and must
 * be paired with main's curl_global_cleanup). */
struct model *model_open(struct job_env *env, int decl, struct rn_err *err)
{
    return model_open_provider(env, decl, NULL, err);
}

/* The loop's callbacks only note it: the pipeline calls model_poll after the loop's turn. */
static void on_wake_fd(void *user, int fd, unsigned events)
{
    (void)fd;
    (void)events;
    ((struct model *)user)->woken = 1;
}

static void on_wake_timer(void *user) { ((struct model *)user)->woken = 1; }

struct model *model_open_provider(struct job_env *env, int decl, const struct provider_ops *provider,
                                  struct rn_err *err)
{
    lua_State *L = env->L;
    int top = lua_gettop(L);
    decl = lua_absindex(L, decl);
    const char *where = luajob_decl_where(L, decl);
    const char *kind = luajob_decl_kind(L, decl);
    char type[64];
    snprintf(type, sizeof type, "%s", kind && strcmp(kind, "model") == 0 ? luajob_decl_type(L, decl) : "?");
    if (!provider) provider = plugin_provider(type);
    if (!provider) {
        rn_fail(err, "%s: model.%s: unknown model provider", where, type);
        return NULL;
    }
    if (provider->version != PROVIDER_INTERFACE_VERSION) {
        rn_fail(err, "%s: model.%s: the provider implements interface version %d, the engine version %d", where,
                type, provider->version, PROVIDER_INTERFACE_VERSION);
        return NULL;
    }
    struct model *m = rn_calloc(1, sizeof *m);
    m->env = env;
    m->L = L;
    m->provider = provider;
    m->provider_name = rn_strdup(type);
    m->rng = (uint64_t)rn_now_ms() * 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid() ^ (uint64_t)(uintptr_t)m;
    if (!m->rng) m->rng = 1;
    buf_init(&m->reply.text);
    buf_init(&m->done_reason);
    buf_init(&m->scratch);
    secret_set_init(&m->secrets);
    buf_init(&m->redact_scratch);
    buf_init(&m->fatal);
    buf_init(&m->cluster_name);
    http_request_init(&m->credentials);
    int opts = luajob_decl_options(L, decl);
    if (lua_type(L, opts) != LUA_TTABLE) {
        rn_fail(err, "the declaration has no options table");
        goto fail;
    }
    if (read_options(m, opts, err)) goto fail;
    m->setup = (struct provider_setup){m->call_task, m->output.structured, m->output.schema_json, 0, &m->secrets};
    m->provider_self = provider->open(env, opts, &m->setup, err);
    if (!m->provider_self) goto fail;
    if (answer_cache_open(m, opts, err) || (!env->answer && batch_open(m, opts, err))) goto fail;
    for (size_t i = 0; i < m->output.field_count; i++) fieldorder_add(env, m->output.fields[i].name);

    char label[600];
    snprintf(label, sizeof label, "%s: model.%s", where, type);
    descriptors_fit(m, label); /* may lower m->limits; the slots stay as declared */
    m->http = http_new(m->fds.fit, err);
    if (!m->http) goto fail;
    struct http_transport transport;
    if (transport_read(L, opts, label, &transport, &m->secrets, err)) goto fail;
    http_set_transport(m->http, &transport);
    http_transport_free(&transport);
    if (env->loop) {
        loop_timer_init(&m->wake, on_wake_timer, m);
        if (loop_watch(env->loop, http_fd(m->http), LOOP_READ, on_wake_fd, m, err)) goto fail;
        m->loop = env->loop;
    }
    /* with batch_inputs, a request carries that many records: as many more slots */
    m->slot_count = (size_t)m->fds.asked * (size_t)m->batch_inputs;
    m->slots = rn_calloc(m->slot_count, sizeof *m->slots);
    m->heap = rn_calloc(m->slot_count, sizeof *m->heap);
    m->group_calls = rn_calloc((size_t)m->batch_inputs, sizeof *m->group_calls);
    m->group_vectors = rn_calloc((size_t)m->batch_inputs, sizeof *m->group_vectors);
    for (size_t i = m->slot_count; i-- > 0;) {
        struct slot *s = &m->slots[i];
        s->record_ref = LUA_NOREF;
        http_request_init(&s->req);
        s->wire = &s->req;
        s->req.user = s;
        s->req.timeout_ms = m->limits.timeout_ms;
        s->req.connect_timeout_ms = m->limits.connect_timeout_ms;
        s->req.max_response = RESPONSE_MAX;
        s->next = m->free_list;
        m->free_list = s;
    }
    lua_settop(L, top);
    return m;
fail:
    lua_settop(L, top);
    rn_wrap(err, "%s: model.%s", where, type);
    model_close(m);
    return NULL;
}

/* ---- close ---- */

void model_close(struct model *m)
{
    if (!m) return;
    if (m->slots) {
        for (size_t i = 0; i < m->slot_count; i++) {
            struct slot *s = &m->slots[i];
            if (m->http) http_cancel(m->http, &s->req);
            http_request_free(&s->req);
            if (s->inputs_req) {
                if (m->http) http_cancel(m->http, s->inputs_req);
                http_request_free(s->inputs_req);
                free(s->inputs_req);
            }
            buf_free(&s->prompt);
            buf_free(&s->answer);
            buf_free(&s->correction);
            buf_free(&s->reason);
        }
    }
    if (m->loop) {
        loop_timer_cancel(m->loop, &m->wake);
        loop_unwatch(m->loop, http_fd(m->http));
    }
    if (m->http) http_cancel(m->http, &m->credentials);
    http_request_free(&m->credentials);
    batch_close(m); /* its requests too */
    http_free(m->http); /* after the requests, as curl wants */
    if (m->provider_self) m->provider->close(m->provider_self);
    answer_cache_close(&m->cache);
    descriptors_close(&m->fds);
    prompt_free(m->prompt);
    output_free(&m->output);
    centroids_free(&m->centroids);
    buf_free(&m->cluster_name);
    secret_set_free(&m->secrets);
    buf_free(&m->redact_scratch);
    free(m->values);
    free(m->system);
    free(m->slots);
    free(m->heap);
    free(m->group_calls);
    free(m->group_vectors);
    stats_close(&m->stats);
    free(m->provider_name);
    free(m->model_name);
    buf_free(&m->reply.text);
    buf_free(&m->done_reason);
    buf_free(&m->scratch);
    buf_free(&m->fatal);
    free(m);
}
