/* skeleton.c: `runnel new NAME`: a commented job script and its test file, made of one part
 * per choice (source, model, sink) so every combination offered passes `runnel check` and
 * `runnel test` as written (tests/integration/test_new.sh runs them all). */
#include "lua/skeleton.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/util.h"

struct part { const char *name, *text; };

/* %1$s in a part is the job's name. */
static const struct part sources[] = {
    {"csv", "-- Where records come from: a CSV file with a header row (runnel help source.csv).\n"
            "local input = source.csv {\n"
            "  path   = param(\"input\", \"data/%1$s.csv\"),  -- --set input=PATH reads another file\n"
            "  header = true,                              -- the first line names the columns\n"
            "  select = { id = \"id\", text = \"text\" },      -- fields to keep = columns to read\n"
            "  types  = { id = \"integer\" },                -- every other field is a string\n"
            "}\n"},
    {"kafka", "-- Where records come from: JSON messages of a Kafka topic (runnel help source.kafka).\n"
              "local input = source.kafka {\n"
              "  brokers = env(\"KAFKA_BROKERS\", \"127.0.0.1:9092\"),\n"
              "  topic   = param(\"input_topic\", \"%1$s_input\"),\n"
              "  group   = param(\"group\", \"%1$s\"),          -- runners with one group share the partitions\n"
              "  format  = \"json\",                           -- each message value is one record: {\"id\": 1, \"text\": \"...\"}\n"
              "}\n"},
    {NULL, NULL}};

#define MODEL_COMMON                                                                                      \
    "  system   = \"Label the text as positive, negative or neutral. Answer with the label only.\",\n"    \
    "  prompt   = \"{{text}}\",                           -- a template of record fields, or function(r)\n" \
    "  output   = { label = { type = \"string\", enum = { \"positive\", \"negative\", \"neutral\" } } },\n" \
    "  limits   = { concurrency = 16, timeout = \"30s\", retries = 5 },\n"                                 \
    "}\n"

static const struct part models[] = {
    {"openai", "local labeller = model.openai {\n"
               "  endpoint = env(\"OPENAI_BASE_URL\", \"https://api.openai.com/v1\"),\n"
               "  api_key  = secret(\"OPENAI_API_KEY\"),             -- never printed, never logged\n"
               "  model    = param(\"model\", \"gpt-4o-mini\"),\n" MODEL_COMMON},
    {"anthropic", "local labeller = model.anthropic {\n"
                  "  api_key  = secret(\"ANTHROPIC_API_KEY\"),          -- never printed, never logged\n"
                  "  model    = param(\"model\", \"claude-3-5-haiku-20241022\"),\n"
                  "  max_tokens = 16,\n" MODEL_COMMON},
    {"azure_openai", "local labeller = model.azure_openai {\n"
                     "  endpoint   = env(\"AZURE_OPENAI_ENDPOINT\", \"https://YOUR-RESOURCE.openai.azure.com\"),\n"
                     "  api_key    = secret(\"AZURE_OPENAI_API_KEY\"),     -- never printed, never logged\n"
                     "  deployment = param(\"deployment\", \"gpt-4o-mini\"),\n" MODEL_COMMON},
    {"gemini", "local labeller = model.gemini {\n"
               "  api_key  = secret(\"GEMINI_API_KEY\"),             -- never printed, never logged\n"
               "  model    = param(\"model\", \"gemini-2.0-flash\"),\n" MODEL_COMMON},
    {"bedrock", "local labeller = model.bedrock {                 -- AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY sign it\n"
                "  region   = env(\"AWS_REGION\", \"us-east-1\"),\n"
                "  model    = param(\"model\", \"anthropic.claude-3-haiku-20240307-v1:0\"),\n"
                "  max_tokens = 16,\n" MODEL_COMMON},
    {"ollama", "local labeller = model.ollama {\n"
               "  endpoint = env(\"OLLAMA_HOST\", \"http://127.0.0.1:11434\"),\n"
               "  model    = param(\"model\", \"llama3.2\"),\n" MODEL_COMMON},
    {"http", "local labeller = model.http {                    -- any JSON endpoint (runnel help model.http)\n"
             "  url      = env(\"MODEL_URL\", \"http://127.0.0.1:8080/invocations\"),\n"
             "  headers  = { [\"X-Api-Key\"] = secret(\"MODEL_API_KEY\") },\n"
             "  body     = '{\"instances\": [{\"text\": {{text}}}]}', -- {{field}} is put in as JSON\n"
             "  answer   = \"/predictions/0/label\",             -- a JSON pointer into the answer\n"
             "  output   = { label = { type = \"string\", enum = { \"positive\", \"negative\", \"neutral\" } } },\n"
             "  limits   = { concurrency = 16, timeout = \"10s\" },\n"
             "}\n"},
    {NULL, NULL}};

static const struct part sinks[] = {
    {"jsonl", "sink.jsonl { path = param(\"output\", \"out/%1$s.jsonl\") }"},
    {"csv", "sink.csv { path = param(\"output\", \"out/%1$s.csv\") }"},
    {"stdout", "sink.stdout {}"},
    {"kafka", "sink.kafka { brokers = env(\"KAFKA_BROKERS\", \"127.0.0.1:9092\"),\n"
              "                           topic = param(\"output_topic\", \"%1$s_output\"), key = \"id\" }"},
    {NULL, NULL}};

static const char *find(const struct part *parts, const char *name)
{
    for (; parts->name; parts++)
        if (strcmp(parts->name, name) == 0) return parts->text;
    return NULL;
}

static void names(const struct part *parts, struct buf *out)
{
    for (const struct part *p = parts; p->name; p++) buf_printf(out, "%s%s", p == parts ? "" : ", ", p->name);
}

/* Write text to path, refusing to replace a file that exists. */
static int write_new(const char *path, const struct buf *text, struct rn_err *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0)
        return rn_fail(err, "%s: %s", path, errno == EEXIST ? "exists already; runnel new replaces nothing" : strerror(errno));
    int rc = rn_write_all(fd, text->data, text->len);
    if (close(fd) || rc) return rn_fail(err, "%s: cannot write: %s", path, strerror(errno));
    return 0;
}

int luaskeleton_write(const char *path, const char *source, const char *model, const char *sink, struct buf *made,
                      struct rn_err *err)
{
    const char *src = find(sources, source), *mod = model ? find(models, model) : NULL, *snk = find(sinks, sink);
    struct buf list;
    buf_init(&list);
    if (!src) names(sources, &list);
    else if (model && !mod) names(models, &list);
    else if (!snk) names(sinks, &list);
    if (list.len) {
        rn_fail(err, "--%s %s: runnel new knows %s", !src ? "source" : model && !mod ? "model" : "sink",
                !src ? source : model && !mod ? model : sink, list.data);
        if (model && !mod && strcmp(model, "vertex") == 0)
            rn_wrap(err, "model.vertex needs a service account key to open; start from --model gemini, and see "
                         "jobs/review_rating_vertex.lua");
        buf_free(&list);
        return -1;
    }
    buf_free(&list);
    char base[4096];
    snprintf(base, sizeof base, "%s", path);
    size_t n = strlen(base);
    if (n > 4 && strcmp(base + n - 4, ".lua") == 0) base[n -= 4] = '\0';
    const char *slash = strrchr(base, '/'), *name = slash ? slash + 1 : base;
    if (!*name) return rn_fail(err, "runnel new needs a NAME: runnel new jobs/my_job");
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '_' || *c == '-'))
            return rn_fail(err, "%s: a job name is letters, digits, '_' and '-'", name);

    struct buf job, test;
    buf_init(&job);
    buf_init(&test);
    buf_printf(&job, "-- %s.lua: TODO say what this job does (written by runnel new; README: A job script).\n", name);
    buf_printf(&job, "--   runnel check %s.lua      every option checked, nothing run\n", base);
    buf_printf(&job, "--   runnel test %s.lua       the cases in %s_test.lua (README: Testing a job)\n", base, name);
    buf_printf(&job, "--   runnel run %s.lua        run it\n", base);
    buf_printf(&job, src, name);
    if (mod) {
        buf_printf(&job, "\n-- What the model adds to each record: r.label (runnel help model.%s).\n", model);
        buf_puts(&job, mod);
    }
    buf_printf(&job, "\nreturn job {\n  name    = \"%s\",\n  source  = input,\n", name);
    buf_puts(&job, "  filter  = function(r) return r.text ~= nil and r.text ~= \"\" end,  -- false drops the record\n");
    if (mod) buf_puts(&job, "  predict = labeller,                           -- adds r.label\n");
    buf_printf(&job, "  map     = function(r) return { id = r.id, text = r.text%s } end,  -- what the sinks get\n",
               mod ? ", label = r.label" : "");
    buf_puts(&job, "  sinks   = { ");
    buf_printf(&job, snk, name);
    buf_printf(&job, " },\n  errors  = sink.jsonl { path = param(\"errors\", \"out/%s.errors.jsonl\") },  -- dead letters, "
                     "with the reason\n}\n", name);

    buf_printf(&test, "-- %s_test.lua: the cases `runnel test %s.lua` runs (README: Testing a job).\n", name, base);
    buf_puts(&test, "return {\n");
    if (mod && strcmp(model, "bedrock") == 0)
        buf_puts(&test, "  -- SigV4 signs with keys; these are no account's (a test sends nothing)\n"
                        "  env   = { AWS_ACCESS_KEY_ID = \"AKIDEXAMPLE\", AWS_SECRET_ACCESS_KEY = \"EXAMPLEKEY\" },\n");
    buf_puts(&test, "  cases = {\n    {\n");
    buf_puts(&test, mod ? "      name    = \"a record is labelled and written\",\n"
                        : "      name    = \"a record is written\",\n");
    buf_puts(&test, "      records = { { id = 1, text = \"I love it\" } },\n");
    if (mod) {
        buf_puts(&test, "      answer  = \"positive\",                 -- what the model answers (or a function of the prompt)\n");
        if (strcmp(model, "http") != 0) buf_puts(&test, "      prompts = { \"I love it\" },\n");
        buf_puts(&test, "      written = { { id = 1, text = \"I love it\", label = \"positive\" } },\n");
    } else {
        buf_puts(&test, "      written = { { id = 1, text = \"I love it\" } },\n");
    }
    buf_puts(&test, "    },\n    {\n      name     = \"an empty text is filtered\",\n"
                    "      records  = { { id = 2, text = \"\" } },\n      filtered = 1,\n    },\n");
    if (mod)
        buf_puts(&test, "    {\n      name    = \"an answer that is no label is dead-lettered\",\n"
                        "      records = { { id = 3, text = \"Hmm\" } },\n      answer  = \"maybe\",\n"
                        "      dead    = { { stage = \"model\", reason = \"invalid answer\" } },\n    },\n");
    buf_puts(&test, "  },\n}\n");

    char job_path[4200], test_path[4200];
    snprintf(job_path, sizeof job_path, "%s.lua", base);
    snprintf(test_path, sizeof test_path, "%s_test.lua", base);
    int rc = -1;
    if (access(job_path, F_OK) == 0 || access(test_path, F_OK) == 0) {
        rn_fail(err, "%s: exists already; runnel new replaces nothing", access(job_path, F_OK) == 0 ? job_path : test_path);
    } else if (rn_mkdir_parent(job_path, err) == 0 && write_new(job_path, &job, err) == 0) {
        if (write_new(test_path, &test, err) == 0) {
            buf_printf(made, "%s\n%s\n", job_path, test_path);
            rc = 0;
        } else {
            unlink(job_path);
        }
    }
    buf_free(&job);
    buf_free(&test);
    return rc;
}
