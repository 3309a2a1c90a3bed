/* standin.c: the buffer, options and HTTP server the local stand-ins share (see standin.h).
 * The server reads a whole body into memory before calling the handler; delayed answers are
 * suspended connections that a timer thread resumes, never a sleeping server thread. */
#include "standin.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

/* ---- buffer ------------------------------------------------------------------------------ */

bool sbuf_reserve(struct sbuf *buffer, size_t extra)
{
    if (buffer->failed) return false;
    if (extra > SBUF_MAX_BYTES || buffer->length + extra + 1 > SBUF_MAX_BYTES) {
        buffer->failed = true;
        return false;
    }
    if (buffer->length + extra + 1 <= buffer->capacity) return true;
    size_t capacity = buffer->capacity ? buffer->capacity : 256;
    while (capacity < buffer->length + extra + 1) capacity *= 2;
    char *data = realloc(buffer->data, capacity);
    if (!data) {
        buffer->failed = true;
        return false;
    }
    buffer->data = data;
    buffer->capacity = capacity;
    return true;
}

void sbuf_append(struct sbuf *buffer, const void *bytes, size_t length)
{
    if (!sbuf_reserve(buffer, length)) return;
    if (length) memcpy(buffer->data + buffer->length, bytes, length);
    buffer->length += length;
    buffer->data[buffer->length] = '\0';
}

void sbuf_puts(struct sbuf *buffer, const char *text) { sbuf_append(buffer, text, strlen(text)); }

void sbuf_printf(struct sbuf *buffer, const char *format, ...)
{
    if (!sbuf_reserve(buffer, 64)) return;
    for (int attempt = 0; attempt < 2; attempt++) {
        size_t room = buffer->capacity - buffer->length;
        va_list arguments;
        va_start(arguments, format);
        int written = vsnprintf(buffer->data + buffer->length, room, format, arguments);
        va_end(arguments);
        if (written < 0) {
            buffer->failed = true;
            return;
        }
        if ((size_t)written < room) {
            buffer->length += (size_t)written;
            return;
        }
        if (!sbuf_reserve(buffer, (size_t)written)) return;
    }
}

void sbuf_json_string(struct sbuf *buffer, const char *text, size_t length)
{
    static const char hex[] = "0123456789abcdef";
    sbuf_append(buffer, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        sbuf_append(buffer, text + run, i - run);
        run = i + 1;
        char escape[6] = {'\\', (char)c, 0, 0, 0, 0};
        size_t escape_length = 2;
        if (c == '\n') escape[1] = 'n';
        else if (c == '\r') escape[1] = 'r';
        else if (c == '\t') escape[1] = 't';
        else if (c < 0x20) {
            memcpy(escape + 1, "u00", 3);
            escape[4] = hex[c >> 4];
            escape[5] = hex[c & 15];
            escape_length = 6;
        }
        sbuf_append(buffer, escape, escape_length);
    }
    sbuf_append(buffer, text + run, length - run);
    sbuf_append(buffer, "\"", 1);
}

void sbuf_json(struct sbuf *buffer, const json_t *value)
{
    if (!value) {
        sbuf_puts(buffer, "null");
        return;
    }
    if (json_is_string(value)) {
        sbuf_json_string(buffer, json_string_value(value), json_string_length(value));
        return;
    }
    char *text = json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!text) {
        buffer->failed = true;
        return;
    }
    sbuf_puts(buffer, text);
    free(text);
}

void sbuf_free(struct sbuf *buffer)
{
    free(buffer->data);
    *buffer = (struct sbuf){0};
}

/* ---- options ----------------------------------------------------------------------------- */

int standin_options_parse(const struct standin_option *options, size_t count, int argc, char **argv,
                          char *error, size_t error_size)
{
    for (int i = 1; i < argc; i++) {
        const char *argument = argv[i];
        const char *equals = strchr(argument, '=');
        size_t name_length = equals ? (size_t)(equals - argument) : strlen(argument);
        const struct standin_option *option = NULL;
        for (size_t k = 0; k < count; k++)
            if (strlen(options[k].name) == name_length && strncmp(options[k].name, argument, name_length) == 0)
                option = &options[k];
        if (!option) {
            snprintf(error, error_size, "unknown option '%s' (see --help)", argument);
            return -1;
        }
        if (option->kind == STANDIN_FLAG) {
            if (equals) {
                snprintf(error, error_size, "%s takes no value", option->name);
                return -1;
            }
            *(bool *)option->target = true;
            continue;
        }
        const char *value = equals ? equals + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!value) {
            snprintf(error, error_size, "%s needs a value", option->name);
            return -1;
        }
        if (option->kind == STANDIN_TEXT) {
            *(const char **)option->target = value;
            continue;
        }
        char *end = NULL;
        errno = 0;
        if (option->kind == STANDIN_RATE) {
            double fraction = strtod(value, &end);
            if (errno || end == value || *end || !(fraction >= 0.0 && fraction <= 1.0)) {
                snprintf(error, error_size, "%s: '%s' is not a fraction in 0..1", option->name, value);
                return -1;
            }
            *(double *)option->target = fraction;
            continue;
        }
        long number = strtol(value, &end, 10);
        if (errno || end == value || *end || number < option->minimum || number > option->maximum) {
            snprintf(error, error_size, "%s: '%s' is not an integer in %ld..%ld", option->name, value,
                     option->minimum, option->maximum);
            return -1;
        }
        *(long *)option->target = number;
    }
    return 0;
}

void standin_options_help(FILE *out, const struct standin_option *options, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const struct standin_option *option = &options[i];
        char value[96] = "";
        if (option->kind == STANDIN_INTEGER && *(long *)option->target < option->minimum)
            snprintf(value, sizeof value, " N (required)");
        else if (option->kind == STANDIN_INTEGER)
            snprintf(value, sizeof value, " N (default %ld)", *(long *)option->target);
        else if (option->kind == STANDIN_RATE)
            snprintf(value, sizeof value, " F (default %g)", *(double *)option->target);
        else if (option->kind == STANDIN_TEXT)
            snprintf(value, sizeof value, " S%s%s%s", *(const char **)option->target ? " (default " : "",
                     *(const char **)option->target ? *(const char **)option->target : "",
                     *(const char **)option->target ? ")" : "");
        fprintf(out, "  %s%s\n      %s\n", option->name, value, option->help);
    }
}

/* ---- request helpers ---------------------------------------------------------------------- */

int standin_split_path(const char *path, char *storage, size_t size, char **segments, int max_segments)
{
    snprintf(storage, size, "%s", path);
    int count = 0;
    for (char *p = storage; *p;) {
        while (*p == '/') p++;
        if (!*p) break;
        if (count == max_segments) return -1;
        segments[count++] = p;
        while (*p && *p != '/') p++;
        if (*p) *p++ = '\0';
    }
    return count;
}

bool standin_media_type_in(const char *content_type, const char *const *accepted)
{
    for (const char *const *type = accepted; *type; type++) {
        size_t length = strlen(*type);
        if (strncasecmp(content_type, *type, length) != 0) continue;
        char next = content_type[length];  /* within the string: its first length bytes matched */
        if (next == '\0' || next == ';' || next == ' ') return true;
    }
    return false;
}

char *standin_basic_authorization(const char *credentials)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t length = strlen(credentials);
    char *out = malloc(6 + (length + 2) / 3 * 4 + 1);
    if (!out) return NULL;
    memcpy(out, "Basic ", 6);
    char *p = out + 6;
    const unsigned char *in = (const unsigned char *)credentials;
    for (size_t i = 0; i < length; i += 3) {
        unsigned value = (unsigned)in[i] << 16 | (i + 1 < length ? (unsigned)in[i + 1] << 8 : 0) |
                         (i + 2 < length ? in[i + 2] : 0);
        *p++ = alphabet[value >> 18 & 63];
        *p++ = alphabet[value >> 12 & 63];
        *p++ = i + 1 < length ? alphabet[value >> 6 & 63] : '=';
        *p++ = i + 2 < length ? alphabet[value & 63] : '=';
    }
    *p = '\0';
    return out;
}

/* ---- clock and timer ---------------------------------------------------------------------
 * A min-heap of (due time, suspended connection) served by one thread that resumes each
 * connection when it is due, or at once for all while the server stops. */

uint64_t standin_clock_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u;
}

struct timer_entry {
    uint64_t due_ms;
    struct MHD_Connection *connection;
};

struct server_state {
    const struct standin_server *server;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct timer_entry *heap;
    size_t count, capacity;
    bool stop;
    pthread_t thread;
    atomic_bool shutting_down;
    atomic_long suspended;  /* connections suspended now; 0 before MHD_stop_daemon */
};

static void timer_sift_down(struct server_state *state, size_t index)
{
    for (;;) {
        size_t child = 2 * index + 1;
        if (child >= state->count) return;
        if (child + 1 < state->count && state->heap[child + 1].due_ms < state->heap[child].due_ms) child++;
        if (state->heap[index].due_ms <= state->heap[child].due_ms) return;
        struct timer_entry swap = state->heap[index];
        state->heap[index] = state->heap[child];
        state->heap[child] = swap;
        index = child;
    }
}

/* Schedules the resumption of connection at due_ms. Returns false when out of memory. */
static bool timer_add(struct server_state *state, uint64_t due_ms, struct MHD_Connection *connection)
{
    pthread_mutex_lock(&state->lock);
    if (state->count == state->capacity) {
        size_t capacity = state->capacity ? state->capacity * 2 : 256;
        struct timer_entry *heap = realloc(state->heap, capacity * sizeof *heap);
        if (!heap) {
            pthread_mutex_unlock(&state->lock);
            return false;
        }
        state->heap = heap;
        state->capacity = capacity;
    }
    size_t index = state->count++;
    while (index > 0 && state->heap[(index - 1) / 2].due_ms > due_ms) {
        state->heap[index] = state->heap[(index - 1) / 2];
        index = (index - 1) / 2;
    }
    state->heap[index] = (struct timer_entry){due_ms, connection};
    if (index == 0) pthread_cond_signal(&state->wake);
    pthread_mutex_unlock(&state->lock);
    return true;
}

static void *timer_run(void *argument)
{
    struct server_state *state = argument;
    struct MHD_Connection *due[128];
    pthread_mutex_lock(&state->lock);
    while (!state->stop) {
        bool draining = atomic_load(&state->shutting_down);
        uint64_t now = standin_clock_ms();
        if (state->count == 0 || (!draining && state->heap[0].due_ms > now)) {
            if (state->count == 0) {
                pthread_cond_wait(&state->wake, &state->lock);
            } else {
                uint64_t due_ms = state->heap[0].due_ms;
                struct timespec until = {(time_t)(due_ms / 1000u), (long)(due_ms % 1000u) * 1000000L};
                pthread_cond_timedwait(&state->wake, &state->lock, &until);
            }
            continue;
        }
        size_t n = 0;
        while (state->count > 0 && n < sizeof due / sizeof due[0] && (draining || state->heap[0].due_ms <= now)) {
            due[n++] = state->heap[0].connection;
            state->heap[0] = state->heap[--state->count];
            timer_sift_down(state, 0);
        }
        pthread_mutex_unlock(&state->lock);
        for (size_t i = 0; i < n; i++) MHD_resume_connection(due[i]);
        pthread_mutex_lock(&state->lock);
    }
    pthread_mutex_unlock(&state->lock);
    return NULL;
}

static void timer_poke(struct server_state *state, bool stop)
{
    pthread_mutex_lock(&state->lock);
    if (stop) state->stop = true;
    pthread_cond_signal(&state->wake);
    pthread_mutex_unlock(&state->lock);
}

/* ---- requests ----------------------------------------------------------------------------- */

const char *standin_header(const struct standin_request *request, const char *name)
{
    return MHD_lookup_connection_value(request->connection, MHD_HEADER_KIND, name);
}

const char *standin_query(const struct standin_request *request, const char *name)
{
    return MHD_lookup_connection_value(request->connection, MHD_GET_ARGUMENT_KIND, name);
}

bool standin_query_flag(const struct standin_request *request, const char *name)
{
    const char *value = NULL;
    size_t length = 0;
    if (MHD_lookup_connection_value_n(request->connection, MHD_GET_ARGUMENT_KIND, name, strlen(name), &value,
                                      &length) != MHD_YES)
        return false;
    return !value || length == 0 || strcmp(value, "true") == 0;
}

void standin_reply_header(struct standin_reply *reply, const char *name, const char *value)
{
    if (reply->header_count >= STANDIN_MAX_HEADERS) return;
    char *name_copy = strdup(name), *value_copy = strdup(value);
    if (!name_copy || !value_copy) {
        free(name_copy);
        free(value_copy);
        return;
    }
    reply->header_names[reply->header_count] = name_copy;
    reply->header_values[reply->header_count] = value_copy;
    reply->header_count++;
}

static void reply_clear(struct standin_reply *reply)
{
    sbuf_free(&reply->body);
    for (int i = 0; i < reply->header_count; i++) {
        free(reply->header_names[i]);
        free(reply->header_values[i]);
    }
    reply->header_count = 0;
}

enum exchange_phase { PHASE_RECEIVING, PHASE_WAITING, PHASE_ANSWERED };

/* One request and its answer; owned by libmicrohttpd's request context, freed in
 * exchange_completed(). */
struct exchange {
    struct server_state *state;
    struct MHD_Connection *connection;
    const char *method, *path;  /* owned by libmicrohttpd until the request completes */
    enum exchange_phase phase;
    struct sbuf body;
    bool too_large, close_connection, suspended;
    unsigned status;
    struct MHD_Response *response;
    uint64_t started_ms;
};

static void exchange_log(const struct exchange *exchange, const char *outcome)
{
    if (!exchange->state->server->verbose) return;
    fprintf(stderr, "%s: %s %s %s %llu ms\n", exchange->state->server->name, exchange->method, exchange->path,
            outcome, (unsigned long long)(standin_clock_ms() - exchange->started_ms));
}

/* Runs the handler and turns its reply into a libmicrohttpd response. Returns false when out of
 * memory (the connection is then dropped). */
static bool exchange_answer(struct exchange *exchange, struct standin_reply *reply)
{
    const struct standin_server *server = exchange->state->server;
    if (exchange->body.failed) {
        sbuf_free(&exchange->body);
        exchange->too_large = true;  /* could not hold it: answered as too large */
    }
    struct standin_request request = {
        .connection = exchange->connection,
        .method = exchange->method,
        .path = exchange->path,
        .body = exchange->too_large || !exchange->body.data ? "" : exchange->body.data,
        .body_length = exchange->too_large ? 0 : exchange->body.length,
        .body_too_large = exchange->too_large,
    };
    server->handle(server->context, &request, reply);
    sbuf_free(&exchange->body);
    if (reply->body.failed || reply->status == 0) {
        reply_clear(reply);
        return false;
    }
    struct MHD_Response *response = MHD_create_response_from_buffer(
        reply->body.length, reply->body.data ? reply->body.data : (void *)"", 
        reply->body.data ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!response) {
        reply_clear(reply);
        return false;
    }
    reply->body = (struct sbuf){0};  /* the response owns it now */
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE,
                            reply->content_type ? reply->content_type : server->content_type);
    for (int i = 0; i < reply->header_count; i++)
        MHD_add_response_header(response, reply->header_names[i], reply->header_values[i]);
    reply_clear(reply);
    exchange->response = response;
    exchange->status = reply->status;
    exchange->close_connection = reply->close;
    return true;
}

static enum MHD_Result exchange_send(struct exchange *exchange)
{
    if (exchange->close_connection) {
        exchange_log(exchange, "closed");
        return MHD_NO;
    }
    enum MHD_Result result = MHD_queue_response(exchange->connection, exchange->status, exchange->response);
    MHD_destroy_response(exchange->response);
    exchange->response = NULL;
    exchange->phase = PHASE_ANSWERED;
    if (exchange->state->server->verbose) {
        char outcome[16];
        snprintf(outcome, sizeof outcome, "%u", exchange->status);
        exchange_log(exchange, outcome);
    }
    return result;
}

/* Answers now, or suspends the connection until the reply's delay has passed. */
static enum MHD_Result exchange_finish(struct exchange *exchange)
{
    struct standin_reply reply = {0};
    if (!exchange_answer(exchange, &reply)) return MHD_NO;
    struct server_state *state = exchange->state;
    if (reply.delay_ms > 0) {
        /* Increment, then check: pairs with standin_serve's set-then-wait, so no suspension
         * slips past the drain. */
        atomic_fetch_add(&state->suspended, 1);
        if (!atomic_load(&state->shutting_down)) {
            exchange->phase = PHASE_WAITING;
            exchange->suspended = true;
            MHD_suspend_connection(exchange->connection);
            if (!timer_add(state, standin_clock_ms() + reply.delay_ms, exchange->connection))
                MHD_resume_connection(exchange->connection);
            return MHD_YES;
        }
        atomic_fetch_sub(&state->suspended, 1);
    }
    return exchange_send(exchange);
}

static void exchange_unsuspend(struct exchange *exchange)
{
    if (!exchange->suspended) return;
    exchange->suspended = false;
    atomic_fetch_sub(&exchange->state->suspended, 1);
}

static enum MHD_Result exchange_handle(void *argument, struct MHD_Connection *connection, const char *url,
                                       const char *method, const char *version, const char *upload_data,
                                       size_t *upload_data_size, void **context)
{
    (void)version;
    struct server_state *state = argument;
    struct exchange *exchange = *context;
    if (!exchange) {
        exchange = calloc(1, sizeof *exchange);
        if (!exchange) return MHD_NO;
        *context = exchange;
        exchange->state = state;
        exchange->connection = connection;
        exchange->method = method;
        exchange->path = url;
        exchange->started_ms = standin_clock_ms();
        const char *length = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
                                                         MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (length) {
            unsigned long long declared = strtoull(length, NULL, 10);
            if (declared > state->server->max_body_bytes) {
                /* Answer before reading: libmicrohttpd then closes the connection. */
                exchange->too_large = true;
                return exchange_finish(exchange);
            }
            if (declared > 0) sbuf_reserve(&exchange->body, (size_t)declared);  /* failure: answered 413 */
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (!exchange->too_large) {
            if (exchange->body.length + *upload_data_size > state->server->max_body_bytes) {
                exchange->too_large = true;
                sbuf_free(&exchange->body);
            } else {
                sbuf_append(&exchange->body, upload_data, *upload_data_size);
            }
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    switch (exchange->phase) {
    case PHASE_RECEIVING:
        return exchange_finish(exchange);
    case PHASE_WAITING:
        exchange_unsuspend(exchange);
        return exchange_send(exchange);
    case PHASE_ANSWERED:
        break;
    }
    return MHD_YES;
}

static void exchange_completed(void *argument, struct MHD_Connection *connection, void **context,
                               enum MHD_RequestTerminationCode code)
{
    (void)argument;
    (void)connection;
    (void)code;
    struct exchange *exchange = *context;
    if (!exchange) return;
    exchange_unsuspend(exchange);
    if (exchange->response) MHD_destroy_response(exchange->response);
    sbuf_free(&exchange->body);
    free(exchange);
    *context = NULL;
}

/* ---- serving ----------------------------------------------------------------------------- */

int standin_serve(const struct standin_server *server)
{
    struct rlimit files;
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
        files.rlim_cur = files.rlim_max;
        setrlimit(RLIMIT_NOFILE, &files);
    }
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);  /* threads started below inherit it */
    signal(SIGPIPE, SIG_IGN);

    struct server_state *state = calloc(1, sizeof *state);
    if (!state) {
        fprintf(stderr, "%s: out of memory\n", server->name);
        return 1;
    }
    state->server = server;
    pthread_mutex_init(&state->lock, NULL);
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    pthread_cond_init(&state->wake, &attributes);
    pthread_condattr_destroy(&attributes);
    int error = pthread_create(&state->thread, NULL, timer_run, state);
    if (error) {
        fprintf(stderr, "%s: cannot start the timer thread: %s\n", server->name, strerror(error));
        free(state);
        return 1;
    }

    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)server->port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct MHD_OptionItem options[] = {
        {MHD_OPTION_SOCK_ADDR, 0, &address},
        {MHD_OPTION_CONNECTION_LIMIT, 4096, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, 300, NULL},
        {MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024, NULL},
        /* a larger read buffer: bulk bodies of many megabytes arrive in fewer calls */
        {MHD_OPTION_CONNECTION_MEMORY_LIMIT, 256 * 1024, NULL},
        {server->threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, (intptr_t)server->threads, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    unsigned flags = MHD_ALLOW_SUSPEND_RESUME | MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_TURBO;
    if (server->verbose) flags |= MHD_USE_ERROR_LOG;
    struct MHD_Daemon *daemon = MHD_start_daemon(flags, (uint16_t)server->port, NULL, NULL, exchange_handle, state,
                                                 MHD_OPTION_NOTIFY_COMPLETED, exchange_completed, state,
                                                 MHD_OPTION_ARRAY, options, MHD_OPTION_END);
    if (!daemon) {
        fprintf(stderr, "%s: cannot listen on 127.0.0.1:%ld (in use, or no permission)\n", server->name, server->port);
        timer_poke(state, true);
        pthread_join(state->thread, NULL);
        free(state);
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
    printf("listening on http://127.0.0.1:%u\n", info ? (unsigned)info->port : (unsigned)server->port);
    fflush(stdout);

    int received = 0;
    while (sigwait(&signals, &received) != 0) {
    }
    if (server->verbose) fprintf(stderr, "%s: signal %d, stopping\n", server->name, received);

    /* libmicrohttpd must not see suspended connections when it stops: resume them all, refuse
     * new suspensions, and wait (bounded) for the handlers to let go. */
    atomic_store(&state->shutting_down, true);
    timer_poke(state, false);
    for (int waited_ms = 0; atomic_load(&state->suspended) > 0 && waited_ms < 5000; waited_ms++) {
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
    if (atomic_load(&state->suspended) > 0) {
        fprintf(stderr, "%s: %ld requests still suspended, exiting without cleanup\n", server->name,
                atomic_load(&state->suspended));
        return 0;
    }
    MHD_stop_daemon(daemon);
    timer_poke(state, true);
    pthread_join(state->thread, NULL);
    pthread_cond_destroy(&state->wake);
    pthread_mutex_destroy(&state->lock);
    free(state->heap);
    free(state);
    return 0;
}
