/* stubs.c: `runnel stubs`: lua-language-server annotations (runnel.d.lua) for everything a job
 * script can call: job{}, every source, sink and model with its options (nested ones as
 * classes of their own) and the helpers (param, env, secret, json, runnel.text). The options
 * come from the same option_spec arrays as `runnel help` and the README's reference, so a new
 * option is in the stubs as soon as it is declared. */
#include "lua/stubs.h"

#include <string.h>

#include "lua/job.h"

/* One line of text: the help without line breaks (annotations are one line each). */
static void put_line(FILE *out, const char *text)
{
    for (; text && *text; text++) fputc(*text == '\n' || *text == '\r' ? ' ' : *text, out);
}

static void put_choices(FILE *out, const char *const *choices)
{
    for (size_t i = 0; choices && choices[i]; i++) fprintf(out, "%s\"%s\"", i ? "|" : "", choices[i]);
}

/* The type of option o; cls is the class of its table when it is nested
 * (runnel.model.openai.limits). */
static void put_type(FILE *out, const struct option_spec *o, const char *cls);

static void put_value_type(FILE *out, const struct option_spec *v, const char *cls)
{
    if (!v) { fputs("any", out); return; }
    put_type(out, v, cls);
}

static void put_type(FILE *out, const struct option_spec *o, const char *cls)
{
    switch (o->type) {
    case OPT_STRING: fputs(o->secret ? "string|runnel.secret" : "string", out); break;
    case OPT_INTEGER: fputs("integer", out); break;
    case OPT_NUMBER: fputs("number", out); break;
    case OPT_BOOLEAN: fputs("boolean", out); break;
    case OPT_DURATION: fputs("string|number", out); break;
    case OPT_SIZE: fputs("string|integer", out); break;
    case OPT_BYTE: fputs("string", out); break;
    case OPT_ENUM: put_choices(out, o->choices); break;
    case OPT_SCALAR: fputs(o->secret ? "string|number|boolean|runnel.secret" : "string|number|boolean", out); break;
    case OPT_TABLE: fputs("table", out); break;
    case OPT_NESTED:
        fputs(cls, out);
        if (o->short_form && o->fields) {
            for (const struct option_spec *f = o->fields; f->name; f++)
                if (strcmp(f->name, o->short_form) == 0) { fputc('|', out); put_type(out, f, cls); }
        }
        break;
    case OPT_MAP: { /* a nested value's class is CLS.NAME, as help names its rows (output.NAME.type) */
        char value_cls[300];
        snprintf(value_cls, sizeof value_cls, "%s.NAME", cls);
        fputs("table<string, ", out);
        put_value_type(out, o->value, value_cls);
        fputs(">", out);
        break;
    }
    case OPT_FUNCTION: fputs("function", out); break;
    case OPT_STRING_OR_FUNCTION: fputs("string|fun(record: table): string", out); break;
    case OPT_STRING_OR_LIST: fputs("string|string[]", out); break;
    case OPT_INTEGER_OR_STRING:
        fputs("integer|", out);
        if (o->choices) put_choices(out, o->choices);
        else fputs("string", out);
        break;
    case OPT_SINK: fputs("runnel.sink", out); break;
    case OPT_SINK_LIST: fputs("runnel.sink|runnel.sink[]", out); break;
    case OPT_SOURCE: fputs("runnel.source", out); break;
    case OPT_MODEL: fputs("runnel.model", out); break;
    case OPT_ANY: fputs("any", out); break;
    }
}

/* ---@class cls and a ---@field per option; then the classes of its nested tables. */
static void put_class(FILE *out, const struct option_spec *spec, const char *cls, const char *what)
{
    fprintf(out, "---The options of %s.\n---@class %s\n", what, cls);
    for (const struct option_spec *o = spec; o && o->name; o++) {
        char sub[256];
        snprintf(sub, sizeof sub, "%s.%s", cls, o->name);
        fprintf(out, "---@field %s%s ", o->name, o->required ? "" : "?");
        put_type(out, o, sub);
        fputc(' ', out);
        put_line(out, o->help);
        if (o->required) fputs(" (required)", out);
        if (o->default_text) fprintf(out, " (default: %s)", o->default_text);
        else if (o->default_note) { fputs(" (default: ", out); put_line(out, o->default_note); fputc(')', out); }
        fputc('\n', out);
    }
    fputs("\n", out);
    for (const struct option_spec *o = spec; o && o->name; o++) {
        char sub[256], sub_what[300];
        snprintf(sub, sizeof sub, "%s.%s", cls, o->name);
        snprintf(sub_what, sizeof sub_what, "%s's %s", what, o->name);
        if (o->type == OPT_NESTED && o->fields) put_class(out, o->fields, sub, sub_what);
        else if (o->type == OPT_MAP && o->value && o->value->type == OPT_NESTED && o->value->fields) {
            char value_cls[300];
            snprintf(value_cls, sizeof value_cls, "%s.NAME", sub);
            put_class(out, o->value->fields, value_cls, sub_what);
        }
    }
}

/* kind.name{ opts }: the options class, then the function. */
static void put_plugin(FILE *out, const char *kind, const char *name, const char *summary,
                       const struct option_spec *spec)
{
    char cls[128], what[128];
    snprintf(cls, sizeof cls, "runnel.%s.%s", kind, name);
    snprintf(what, sizeof what, "%s.%s", kind, name);
    put_class(out, spec, cls, what);
    fprintf(out, "---%s.%s: ", kind, name);
    put_line(out, summary);
    fprintf(out, " (runnel help %s.%s)\n---@param options %s\n---@return runnel.%s\nfunction %s.%s(options) end\n\n", kind,
            name, cls, kind, kind, name);
}

static const char prelude[] =
    "---@meta\n"
    "-- runnel.d.lua: annotations for lua-language-server, written by `runnel stubs` from the same\n"
    "-- option declarations as `runnel help`. Point the editor at it (README: Editor set-up).\n"
    "\n"
    "---A declaration made by source.NAME{}: give it to job{ source = ... }.\n---@class runnel.source\n\n"
    "---A declaration made by sink.NAME{}: give it to job{ sinks = ... } or job{ errors = ... }.\n---@class runnel.sink\n\n"
    "---A declaration made by model.NAME{}: give it to job{ predict = ... }.\n---@class runnel.model\n\n"
    "---A declaration made by job{}: what the script returns.\n---@class runnel.job\n\n"
    "---A value made by secret(): printed as <secret NAME>, only the runner reads it.\n---@class runnel.secret\n\n"
    "---A --set value: converted to the default's type (integer, number, boolean, string); without a\n"
    "---default, --set must give it.\n"
    "---@param name string\n---@param default? string|number|boolean\n---@return any\nfunction param(name, default) end\n\n"
    "---An environment variable, or default when it is unset.\n"
    "---@param name string\n---@param default? string\n---@return string\nfunction env(name, default) end\n\n"
    "---The value of environment variable NAME, or of the file NAME_FILE names; never printed or logged.\n"
    "---@param name string\n---@return runnel.secret\nfunction secret(name) end\n\n"
    "---JSON as the sinks write it.\n---@class runnel.json\n"
    "---@field null userdata the value that stands for null inside arrays\n"
    "json = {}\n"
    "---@param value any\n---@return string\nfunction json.encode(value) end\n"
    "---@param text string\n---@return any\nfunction json.decode(text) end\n\n"
    "---runnel.text (scripts/runnel/text.lua): local text = require(\"runnel.text\")\n"
    "---@class runnel.text\nlocal text = {}\n"
    "---Decode the HTML entities and strip the tags that review texts carry (<br />, &quot;).\n"
    "---@param s string?\n---@return string?\nfunction text.strip_html(s) end\n"
    "---Collapse runs of white space to one space and trim both ends.\n"
    "---@param s string?\n---@return string?\nfunction text.squish(s) end\n"
    "---At most n characters (UTF-8 aware), with \"...\" when cut.\n"
    "---@param s string?\n---@param n integer\n---@return string?\nfunction text.truncate(s, n) end\n"
    "---Number of words.\n---@param s string?\n---@return integer\nfunction text.word_count(s) end\n\n"
    "---@param name \"runnel.text\"\n---@return runnel.text\nfunction require(name) end\n\n"
    "---@class runnel.sources\nsource = {}\n---@class runnel.sinks\nsink = {}\n---@class runnel.models\nmodel = {}\n\n";

void luastubs_write(FILE *out)
{
    fputs(prelude, out);
    put_class(out, luajob_job_options(), "runnel.job.options", "job");
    fputs("---The job declaration a script returns: return job { ... } (runnel help job)\n"
          "---@param options runnel.job.options\n---@return runnel.job\nfunction job(options) end\n\n",
          out);
    for (const struct source_ops *const *p = source_plugins; *p; p++)
        put_plugin(out, "source", (*p)->name, (*p)->summary, (*p)->options);
    for (const struct sink_ops *const *p = sink_plugins; *p; p++)
        put_plugin(out, "sink", (*p)->name, (*p)->summary, (*p)->options);
    for (const struct provider_ops *const *p = provider_plugins; *p; p++)
        put_plugin(out, "model", (*p)->name, (*p)->summary, (*p)->options);
}
