/* registry.c: the one table of every source, sink and model provider. A new plugin is a
 * new file plus one row here. */
#include <string.h>

#include "engine/plugin.h"

extern const struct source_ops csv_source;
extern const struct sink_ops jsonl_sink, csv_sink, stdout_sink, lua_sink, elasticsearch_sink, postgres_sink;
extern const struct provider_ops openai_provider, azure_openai_provider, anthropic_provider, bedrock_provider,
    gemini_provider, vertex_provider, ollama_provider, http_provider;
#ifndef RUNNEL_WITHOUT_KAFKA
extern const struct source_ops kafka_source;
extern const struct sink_ops kafka_sink;
#define KAFKA_SOURCE &kafka_source,
#define KAFKA_SINK &kafka_sink,
#else
#define KAFKA_SOURCE
#define KAFKA_SINK
#endif

const struct source_ops *const source_plugins[] = {&csv_source, KAFKA_SOURCE NULL};
const struct sink_ops *const sink_plugins[] = {&jsonl_sink, &csv_sink, &stdout_sink, &lua_sink, &elasticsearch_sink, &postgres_sink, KAFKA_SINK NULL};
const struct provider_ops *const provider_plugins[] = {&openai_provider, &azure_openai_provider, &anthropic_provider,
                                                       &bedrock_provider, &gemini_provider, &vertex_provider,
                                                       &ollama_provider, &http_provider, NULL};

const struct source_ops *plugin_source(const char *name)
{
    for (const struct source_ops *const *p = source_plugins; *p; p++)
        if (strcmp((*p)->name, name) == 0) return *p;
    return NULL;
}

const struct sink_ops *plugin_sink(const char *name)
{
    for (const struct sink_ops *const *p = sink_plugins; *p; p++)
        if (strcmp((*p)->name, name) == 0) return *p;
    return NULL;
}

const struct provider_ops *plugin_provider(const char *name)
{
    for (const struct provider_ops *const *p = provider_plugins; *p; p++)
        if (strcmp((*p)->name, name) == 0) return *p;
    return NULL;
}
