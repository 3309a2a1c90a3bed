/* test_sigv4.c: AWS Signature Version 4 against AWS's own test suite (tests/data/sigv4/, from
 * the aws-sig-v4-test-suite as botocore carries it; Apache 2.0, see its LICENSE and NOTICE):
 * for every case the canonical request, the string to sign and the Authorization header must
 * be exactly the suite's. Plus the second encoding of a Bedrock model id's ':'. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/sigv4.h"
#include "check.h"

static const struct sigv4_credentials suite_cred = {"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                                                    "us-east-1", "service"};

/* the session token of the one case whose .req leaves it to the signer to add */
static const char *token_for(const char *name)
{
    if (!strcmp(name, "get-vanilla-with-session-token"))
        return "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";
    return NULL;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *text = NULL;
    size_t cap = 0;
    ssize_t n = getdelim(&text, &cap, '\0', f);
    fclose(f);
    if (n < 0) { free(text); return strdup(""); }
    while (n > 0 && text[n - 1] == '\n') text[--n] = '\0';
    return text;
}

static int cases;

static void run_case(const char *dir, const char *name)
{
    char path[8192];
    snprintf(path, sizeof path, "%s/%s.req", dir, name);
    char *req_text = slurp(path);
    if (!req_text) return;
    cases++;
    /* "METHOD TARGET HTTP/1.1" (the target may hold spaces), headers, a blank line, the body */
    char *body = strstr(req_text, "\n\n");
    if (body) { *body = '\0'; body += 2; }
    char *line_end = strchr(req_text, '\n');
    if (line_end) *line_end = '\0';
    char *method = req_text, *target = strchr(req_text, ' '), *version = strrchr(req_text, ' ');
    *target++ = '\0';
    *version = '\0';
    char *query = strchr(target, '?');
    if (query) *query++ = '\0';
    struct sigv4_header headers[SIGV4_MAX_HEADERS];
    char *values[SIGV4_MAX_HEADERS] = {0};
    size_t n = 0;
    for (char *line = line_end ? line_end + 1 : NULL; line && *line;) {
        char *next = strchr(line, '\n');
        if (next) *next++ = '\0';
        if ((*line == ' ' || *line == '\t') && n) { /* a continuation of the last header */
            size_t old = strlen(values[n - 1]);
            values[n - 1] = realloc(values[n - 1], old + strlen(line) + 2);
            snprintf(values[n - 1] + old, strlen(line) + 2, " %s", line);
            headers[n - 1].value = values[n - 1];
        } else {
            char *colon = strchr(line, ':');
            *colon = '\0';
            headers[n].name = line;
            values[n] = strdup(colon + 1);
            headers[n].value = values[n];
            n++;
        }
        line = next;
    }
    const char *token = token_for(name);
    if (token) headers[n++] = (struct sigv4_header){"X-Amz-Security-Token", token};
    struct sigv4_request req = {method, target, query, headers, n, body, body ? strlen(body) : 0};
    struct buf auth, creq, sts;
    buf_init(&auth);
    buf_init(&creq);
    buf_init(&sts);
    struct rn_err err;
    int rc = sigv4_sign(&req, &suite_cred, "20150830T123600Z", &auth, &creq, &sts, &err);
    CHECK(rc == 0, "%s: %s", name, rc ? err.msg : "");
    const char *ext[] = {"creq", "sts", "authz"};
    struct buf *got[] = {&creq, &sts, &auth};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s.%s", dir, name, ext[i]);
        char *want = slurp(path);
        CHECK(want && got[i]->data && !strcmp(want, got[i]->data), "%s.%s:\n--- want\n%s\n--- got\n%s", name, ext[i],
              want ? want : "(missing)", got[i]->data ? got[i]->data : "");
        free(want);
    }
    for (size_t i = 0; i < n; i++) free(values[i]);
    buf_free(&auth);
    buf_free(&creq);
    buf_free(&sts);
    free(req_text);
}

static void walk(const char *dir)
{
    DIR *d = opendir(dir);
    CHECK(d != NULL, "cannot open %s (run from the repository root)", dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char sub[2048];
        snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(sub, &st) == 0 && S_ISDIR(st.st_mode)) {
            run_case(sub, e->d_name);
            walk(sub);
        }
    }
    closedir(d);
}

int main(void)
{
    walk("tests/data/sigv4");
    CHECK(cases >= 30, "ran %d cases of the suite, expected 30 or more", cases);

    /* Bedrock: a model id's ':' travels as %3A and is signed encoded again, as %253A */
    struct sigv4_header h[] = {{"host", "bedrock-runtime.us-east-1.amazonaws.com"}, {"x-amz-date", "20240101T000000Z"},
                               {"content-type", "application/json"}};
    struct sigv4_request req = {"POST", "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse", NULL, h, 3, "{}", 2};
    struct sigv4_credentials cred = {"AKIDEXAMPLE", "secret", "us-east-1", "bedrock"};
    struct buf auth, creq;
    buf_init(&auth);
    buf_init(&creq);
    struct rn_err err;
    CHECK(sigv4_sign(&req, &cred, "20240101T000000Z", &auth, &creq, NULL, &err) == 0, "bedrock sign");
    CHECK(strstr(creq.data, "\n/model/anthropic.claude-3-haiku-20240307-v1%253A0/converse\n") != NULL,
          "the canonical path encodes %%3A again: %s", creq.data);
    CHECK(strstr(auth.data, "Credential=AKIDEXAMPLE/20240101/us-east-1/bedrock/aws4_request, "
                            "SignedHeaders=content-type;host;x-amz-date, Signature=") == auth.data + 17,
          "authorization: %s", auth.data);
    CHECK(strstr(auth.data, "secret") == NULL, "the secret key is not in the header");
    CHECK(sigv4_sign(&req, &cred, "2024-01-01", &auth, NULL, NULL, &err) == -1 && strstr(err.msg, "YYYYMMDDTHHMMSSZ"),
          "a bad date: %s", err.msg);
    buf_free(&auth);
    buf_free(&creq);
    return check_report("test_sigv4");
}
