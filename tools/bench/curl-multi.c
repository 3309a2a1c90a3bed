/* curl-multi.c: a bare libcurl multi client: the ceiling for a model job. It posts one chat
 * completion per non-empty Summary of a review CSV (the same prompt and structured-output
 * request runnel sends), keeping `concurrency` requests in flight on reused handles, and
 * reports requests/s. It parses no answers and writes nothing: pure request throughput.
 *   bench-curl-multi URL FILE CONCURRENCY [LIMIT] -> {"requests":N,"seconds":S,"requests_per_s":R} */
#include <csv.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SUMMARY_COLUMN 8

struct reader {
    char **bodies;
    size_t count, cap, limit;
    int column, row;
    char *summary;
};

static void put_json_string(char **out, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n * 6 + 3 > *cap) { *cap = (*len + n * 6 + 3) * 2; *out = realloc(*out, *cap); }
    char *p = *out + *len;
    *p++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') { *p++ = '\\'; *p++ = (char)c; }
        else if (c < 0x20) p += sprintf(p, "\\u%04x", c);
        else *p++ = (char)c;
    }
    *p++ = '"';
    *len = (size_t)(p - *out);
}

static void on_field(void *s, size_t n, void *data)
{
    struct reader *r = data;
    if (r->column++ == SUMMARY_COLUMN && r->row > 0) {
        free(r->summary);
        r->summary = malloc(n + 1);
        memcpy(r->summary, s, n);
        r->summary[n] = '\0';
    }
}

static void on_row(int c, void *data)
{
    (void)c;
    struct reader *r = data;
    if (r->row++ > 0 && r->summary && r->summary[0] && r->count < r->limit) {
        size_t len = 0, cap = 1024;
        char *b = malloc(cap);
        static const char head[] = "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"system\",\"content\":"
                                   "\"Rate the product review from 1 (very negative) to 5 (very positive). Answer with the number only.\"},"
                                   "{\"role\":\"user\",\"content\":";
        static const char tail[] = "}],\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"output\","
                                   "\"strict\":true,\"schema\":{\"type\":\"object\",\"properties\":{\"rating\":{\"type\":"
                                   "\"integer\",\"minimum\":1,\"maximum\":5}},\"required\":[\"rating\"],"
                                   "\"additionalProperties\":false}}}}";
        memcpy(b, head, sizeof head - 1);
        len = sizeof head - 1;
        char prompt[4096];
        int n = snprintf(prompt, sizeof prompt, "Review title: %s", r->summary);
        put_json_string(&b, &len, &cap, prompt, (size_t)n < sizeof prompt ? (size_t)n : sizeof prompt - 1);
        if (len + sizeof tail > cap) { cap = len + sizeof tail; b = realloc(b, cap); }
        memcpy(b + len, tail, sizeof tail);
        if (r->count == r->cap) { r->cap = r->cap ? r->cap * 2 : 1024; r->bodies = realloc(r->bodies, r->cap * sizeof *r->bodies); }
        r->bodies[r->count++] = b;
    }
    free(r->summary);
    r->summary = NULL;
    r->column = 0;
}

static size_t discard(char *p, size_t size, size_t n, void *u) { (void)p; (void)u; return size * n; }

int main(int argc, char **argv)
{
    if (argc < 4) { fprintf(stderr, "usage: bench-curl-multi URL FILE CONCURRENCY [LIMIT]\n"); return 2; }
    const char *url = argv[1];
    int concurrency = atoi(argv[3]);
    struct reader r = {0};
    r.limit = argc > 4 ? (size_t)atol(argv[4]) : (size_t)-1;
    FILE *f = fopen(argv[2], "rb");
    if (!f) { perror(argv[2]); return 1; }
    struct csv_parser p;
    csv_init(&p, 0);
    char block[65536];
    size_t n;
    while ((n = fread(block, 1, sizeof block, f)) > 0) csv_parse(&p, block, n, on_field, on_row, &r);
    csv_fini(&p, on_field, on_row, &r);
    csv_free(&p);
    fclose(f);

    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURLM *multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)concurrency);
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Authorization: Bearer bench");
    size_t next = 0, done = 0, failed = 0;
    CURL **handles = calloc((size_t)concurrency, sizeof *handles);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < concurrency && next < r.count; i++) {
        CURL *h = curl_easy_init();
        handles[i] = h;
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, r.bodies[next++]);
        curl_multi_add_handle(multi, h);
    }
    while (done < r.count) {
        int running;
        curl_multi_perform(multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(multi, &left))) {
            if (msg->msg != CURLMSG_DONE) continue;
            CURL *h = msg->easy_handle;
            long status = 0;
            curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
            if (msg->data.result != CURLE_OK || status != 200) failed++;
            done++;
            curl_multi_remove_handle(multi, h);
            if (next < r.count) {
                curl_easy_setopt(h, CURLOPT_POSTFIELDS, r.bodies[next++]);
                curl_multi_add_handle(multi, h);
            }
        }
        if (done < r.count) curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    printf("{\"requests\":%zu,\"failed\":%zu,\"seconds\":%.4f,\"requests_per_s\":%.0f}\n", done, failed, s,
           (double)done / s);
    for (int i = 0; i < concurrency; i++) if (handles[i]) curl_easy_cleanup(handles[i]);
    free(handles);
    curl_slist_free_all(headers);
    curl_multi_cleanup(multi);
    for (size_t i = 0; i < r.count; i++) free(r.bodies[i]);
    free(r.bodies);
    curl_global_cleanup();
    return failed ? 1 : 0;
}
