/* es-bulk.c: the bare bulk client of tools/bench.sh's Elasticsearch case: posts a JSONL file of
 * documents to URL/_bulk in batches of COUNT ({"index":{"_index":INDEX,"_id":ID_FIELD's value}}
 * and the line, as sink.elasticsearch sends them), IN_FLIGHT requests at once on one curl multi
 * handle, and prints documents/s. Every answer must be 200 without item errors.
 *   es-bulk URL INDEX ID_FIELD COUNT IN_FLIGHT FILE */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct request { CURL *easy; char *body; size_t len; char *answer; size_t answer_len; };

static size_t on_body(char *data, size_t size, size_t n, void *user)
{
    struct request *r = user;
    r->answer = realloc(r->answer, r->answer_len + size * n + 1);
    memcpy(r->answer + r->answer_len, data, size * n);
    r->answer_len += size * n;
    r->answer[r->answer_len] = '\0';
    return size * n;
}

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

int main(int argc, char **argv)
{
    if (argc != 7) { fprintf(stderr, "usage: es-bulk URL INDEX ID_FIELD COUNT IN_FLIGHT FILE\n"); return 2; }
    const char *url = argv[1], *index = argv[2], *id_field = argv[3];
    long count = atol(argv[4]), in_flight = atol(argv[5]);
    FILE *f = fopen(argv[6], "r");
    if (!f || count < 1 || in_flight < 1) { fprintf(stderr, "es-bulk: bad arguments or %s: cannot open\n", argv[6]); return 2; }
    /* the batches, built before the clock starts */
    size_t nbatches = 0, cap = 0, docs = 0;
    struct request *batches = NULL;
    char *line = NULL, key[256];
    size_t line_cap = 0;
    ssize_t n;
    snprintf(key, sizeof key, "\"%s\":", id_field);
    FILE *mem = NULL;
    char *body = NULL;
    size_t body_len = 0;
    long in_batch = 0;
    while ((n = getline(&line, &line_cap, f)) > 0) {
        if (!mem) mem = open_memstream(&body, &body_len);
        char *at = strstr(line, key), id[128] = "";
        if (at) sscanf(at + strlen(key), "%127[^,}]", id);
        fprintf(mem, "{\"index\":{\"_index\":\"%s\",\"_id\":\"%s\"}}\n", index, id[0] == '"' ? "" : id);
        fwrite(line, 1, (size_t)n, mem);
        docs++;
        if (++in_batch == count) {
            fclose(mem);
            mem = NULL;
            if (nbatches == cap) batches = realloc(batches, (cap = cap ? cap * 2 : 64) * sizeof *batches);
            batches[nbatches++] = (struct request){NULL, body, body_len, NULL, 0};
            in_batch = 0;
        }
    }
    if (mem) {
        fclose(mem);
        if (nbatches == cap) batches = realloc(batches, (cap + 1) * sizeof *batches);
        batches[nbatches++] = (struct request){NULL, body, body_len, NULL, 0};
    }
    fclose(f);
    free(line);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURLM *multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, in_flight);
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/x-ndjson");
    headers = curl_slist_append(headers, "Expect:");
    char bulk_url[1024];
    snprintf(bulk_url, sizeof bulk_url, "%s/_bulk", url);
    size_t next = 0, done = 0;
    int running = 0, failed = 0;
    double start = now();
    while (done < nbatches) {
        while (next < nbatches && running < in_flight) {
            struct request *r = &batches[next++];
            r->easy = curl_easy_init();
            curl_easy_setopt(r->easy, CURLOPT_URL, bulk_url);
            curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, headers);
            curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->body);
            curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->len);
            curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, on_body);
            curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
            curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
            curl_multi_add_handle(multi, r->easy);
            running++;
        }
        int still;
        curl_multi_perform(multi, &still);
        curl_multi_poll(multi, NULL, 0, 100, NULL);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(multi, &left))) {
            if (m->msg != CURLMSG_DONE) continue;
            struct request *r;
            long status = 0;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
            curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
            if (m->data.result != CURLE_OK || status != 200 || !r->answer || strstr(r->answer, "\"errors\":true")) failed = 1;
            curl_multi_remove_handle(multi, m->easy_handle);
            curl_easy_cleanup(m->easy_handle);
            free(r->body);
            free(r->answer);
            running--;
            done++;
        }
    }
    double elapsed = now() - start;
    curl_slist_free_all(headers);
    curl_multi_cleanup(multi);
    free(batches);
    if (failed) { fprintf(stderr, "es-bulk: a bulk request failed\n"); return 1; }
    printf("%.0f\n", docs / elapsed);
    return 0;
}
