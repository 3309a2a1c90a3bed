/* report.c: `runnel report` (see report.h): read a job's output once, count labels, phrases
 * and groups, and write one HTML page whose charts Vega draws from data inlined as JSON.
 *
 * JSON Lines are read with core/json_scan.h, which picks the few fields out in place; a line
 * it does not take (escaped keys, a syntax error) is read again by jansson, which either reads
 * it or says exactly what is wrong. CSV is read by libcsv, line by line, so a bad record is
 * named by the line it starts on. */
#include "serve/report.h"

#include <csv.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/json_scan.h"
#include "serve/assets.h"
#include "serve/html.h"
#include "serve/phrases.h"
#include "serve/tally.h"

const char report_usage[] =
    "usage: runnel report FILE.jsonl|FILE.csv --html OUT.html [options]\n"
    "  one self-contained HTML page about a job's output: the label distribution (donut), the\n"
    "  frequent words and phrases of a text field (word cloud), labels by group for the groups\n"
    "  with most records (heat map), the counts, and the evaluation against a truth field\n"
    "\n"
    "  --html PATH       the page to write (required)\n"
    "  --label FIELD     the label to count (default rating)\n"
    "  --text FIELD      the text for the word cloud (default summary)\n"
    "  --group FIELD     the groups of the heat map (default product_id)\n"
    "  --truth FIELD     the ground truth to evaluate the label against\n"
    "                    (default score, when the input has it)\n"
    "  --top N           groups in the heat map (default 20)\n"
    "  --words N         words and phrases in the cloud (default 100)\n"
    "  --title TEXT      the page's title (default: from the input's name)\n"
    "  --format jsonl|csv  the input's format (default: csv for *.csv, else jsonl)\n";

int report_parse_args(int argc, char **argv, struct report_options *o, struct rn_err *err)
{
    memset(o, 0, sizeof *o);
    o->top = 20;
    o->words = 100;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return 1;
        if (a[0] != '-') {
            if (o->input) return rn_fail(err, "one input file at a time ('%s' and '%s')", o->input, a);
            o->input = a;
            continue;
        }
        const char **text = NULL;
        size_t *number = NULL, max = 0;
        if (!strcmp(a, "--html")) text = &o->html;
        else if (!strcmp(a, "--label")) text = &o->label;
        else if (!strcmp(a, "--text")) text = &o->text;
        else if (!strcmp(a, "--group")) text = &o->group;
        else if (!strcmp(a, "--truth")) text = &o->truth;
        else if (!strcmp(a, "--title")) text = &o->title;
        else if (!strcmp(a, "--top")) { number = &o->top; max = 500; }
        else if (!strcmp(a, "--words")) { number = &o->words; max = 1000; }
        else if (!strcmp(a, "--format")) {
            if (!value) return rn_fail(err, "--format needs a value (jsonl or csv)");
            if (!strcmp(value, "jsonl") || !strcmp(value, "json")) o->format = REPORT_FORMAT_JSONL;
            else if (!strcmp(value, "csv")) o->format = REPORT_FORMAT_CSV;
            else return rn_fail(err, "--format must be jsonl or csv, not '%s'", value);
            i++;
            continue;
        } else return rn_fail(err, "unknown option '%s' (runnel report --help)", a);
        if (!value) return rn_fail(err, "%s needs a value", a);
        i++;
        if (text) {
            if (!*value && text != &o->title) return rn_fail(err, "%s needs a field name, not an empty one", a);
            *text = value;
        } else {
            char *end;
            errno = 0;
            long long n = strtoll(value, &end, 10);
            if (*end || end == value || errno || n < 1 || (unsigned long long)n > max)
                return rn_fail(err, "%s needs a number from 1 to %zu, not '%s'", a, max, value);
            *number = (size_t)n;
        }
    }
    if (!o->input) return rn_fail(err, "which file? runnel report FILE.jsonl --html OUT.html");
    if (!o->html) return rn_fail(err, "--html OUT.html is required (where to write the page)");
    if (o->format == REPORT_FORMAT_AUTO) {
        size_t n = strlen(o->input);
        o->format = n >= 4 && !strcmp(o->input + n - 4, ".csv") ? REPORT_FORMAT_CSV : REPORT_FORMAT_JSONL;
    }
    return 0;
}

/* ---- the report's state ------------------------------------------------------------ */

enum field { F_LABEL, F_TEXT, F_GROUP, F_TRUTH, F_COUNT };
static const char *const field_role[F_COUNT] = {"label", "text", "group", "truth"};

/* One field of the record being read. */
struct value {
    enum { V_MISSING, V_NULL, V_SCALAR, V_NESTED } kind;
    struct buf text; /* V_SCALAR: a string's text, or a number or boolean as JSON writes it */
};

struct label {
    char *text;
    size_t len;
    double number;      /* when numeric */
    int numeric;        /* the text is a number */
    uint64_t predicted; /* records with this label */
};

/* Per field: records without it, and without a usable value (null, empty, an object). */
struct field_stats {
    int seen;                      /* some record has the field */
    uint64_t missing, unusable;
    uint64_t first_missing, first_unusable; /* their first lines */
    const char *unusable_kind;
};

struct report {
    const struct report_options *opt;
    const char *name[F_COUNT];
    size_t name_len[F_COUNT];
    struct value v[F_COUNT];
    struct field_stats stats[F_COUNT];
    int named[F_COUNT];             /* the field was named on the command line */

    struct label labels[REPORT_MAX_LABELS];
    size_t nlabels;
    uint64_t other_labels;          /* records whose label did not fit in labels[] */
    uint64_t confusion[REPORT_MAX_LABELS][REPORT_MAX_LABELS]; /* [truth][label] */
    uint64_t compared, correct, outside_matrix;
    double abs_error_sum;
    int eval_numeric;               /* every compared pair was two numbers */

    struct tally *phrases, *groups;
    double record_label;            /* the current record's label, for the phrase means */
    int record_label_numeric;

    uint64_t line, records, bad_lines, labelled;
    uint64_t problem_lines_shown;
    struct buf problems;            /* HTML <li> items */
    struct buf first_keys;          /* the fields of the first record, for messages */
    uint64_t first_keys_line;
    struct buf scratch;
    FILE *warnings;
};

/* Note a problem with one line: listed on the page and printed, the first few. */
static void problem(struct report *r, uint64_t line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void problem(struct report *r, uint64_t line, const char *fmt, ...)
{
    if (r->problem_lines_shown >= REPORT_PROBLEMS_SHOWN) return;
    r->problem_lines_shown++;
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (r->warnings) fprintf(r->warnings, "runnel: report: %s:%llu: %s\n", r->opt->input, (unsigned long long)line, msg);
    buf_printf(&r->problems, "<li>line %llu: ", (unsigned long long)line);
    html_puts(&r->problems, msg);
    buf_puts(&r->problems, "</li>\n");
}

/* The index of the label text[0..n) (added when new), or -1 when the table is full. */
static int label_index(struct report *r, const char *text, size_t n)
{
    for (size_t i = 0; i < r->nlabels; i++)
        if (r->labels[i].len == n && memcmp(r->labels[i].text, text, n) == 0) return (int)i;
    if (r->nlabels == REPORT_MAX_LABELS) return -1;
    struct label *l = &r->labels[r->nlabels];
    l->text = rn_malloc(n + 1);
    memcpy(l->text, text, n);
    l->text[n] = '\0';
    l->len = n;
    char *end;
    errno = 0;
    l->number = strtod(l->text, &end);
    l->numeric = n > 0 && *end == '\0' && !errno && isfinite(l->number);
    return (int)r->nlabels++;
}

/* 1 and the number when the value's text is one. */
static int text_number(const struct value *v, double *out)
{
    if (!v->text.len) return 0;
    char *end;
    errno = 0;
    *out = strtod(v->text.data, &end);
    return *end == '\0' && !errno && isfinite(*out);
}

/* The value as a label or group name: valid UTF-8 without control characters (they become
 * spaces), at most REPORT_MAX_VALUE bytes (then "..."), in r->scratch. */
static const char *value_key(struct report *r, const struct value *v, size_t *len)
{
    buf_clear(&r->scratch);
    buf_put_visible(&r->scratch, v->text.data, v->text.len, REPORT_MAX_VALUE);
    if (!r->scratch.data) buf_put(&r->scratch, "", 0);
    for (size_t i = 0; i < r->scratch.len; i++)
        if ((unsigned char)r->scratch.data[i] < 0x20) r->scratch.data[i] = ' ';
    *len = r->scratch.len;
    return r->scratch.data;
}

static void on_phrase(void *ctx, const char *phrase, size_t len, int words)
{
    (void)words;
    struct report *r = ctx;
    struct tally_entry *e = tally_get(r->phrases, phrase, len);
    if (e->mark == r->records) return; /* a phrase counts once per record */
    e->mark = r->records;
    e->count++;
    if (r->record_label_numeric) {
        e->label_sum += r->record_label;
        e->label_n++;
    }
}

/* Count a field that the record lacks or cannot use. */
static void note_unusable(struct report *r, enum field f)
{
    struct field_stats *s = &r->stats[f];
    const struct value *v = &r->v[f];
    if (v->kind == V_MISSING) {
        if (!s->missing++) s->first_missing = r->line;
        return;
    }
    if (!s->unusable++) {
        s->first_unusable = r->line;
        s->unusable_kind = v->kind == V_NULL ? "null" : v->kind == V_NESTED ? "an object or array" : "empty";
    }
}

/* One record, its fields in r->v. */
static void observe(struct report *r)
{
    r->records++;
    for (int f = 0; f < F_COUNT; f++)
        if (r->v[f].kind != V_MISSING) r->stats[f].seen = 1;

    const struct value *lv = &r->v[F_LABEL];
    int labelled = lv->kind == V_SCALAR && lv->text.len > 0, li = -1;
    r->record_label_numeric = 0;
    if (labelled) {
        size_t n;
        const char *key = value_key(r, lv, &n);
        li = label_index(r, key, n);
        r->labelled++;
        if (li < 0) r->other_labels++;
        else {
            r->labels[li].predicted++;
            r->record_label_numeric = r->labels[li].numeric;
            r->record_label = r->labels[li].number;
        }
    } else {
        note_unusable(r, F_LABEL);
    }

    const struct value *tv = &r->v[F_TEXT];
    if (tv->kind == V_SCALAR) phrases_each(tv->text.data, tv->text.len, on_phrase, r);
    else note_unusable(r, F_TEXT);

    const struct value *gv = &r->v[F_GROUP];
    if (gv->kind == V_SCALAR && gv->text.len > 0) {
        if (labelled) {
            size_t n;
            const char *key = value_key(r, gv, &n);
            struct tally_entry *e = tally_get(r->groups, key, n);
            e->count++;
            if (li >= 0) tally_count_label(e, (uint32_t)li);
            if (r->record_label_numeric) {
                e->label_sum += r->record_label;
                e->label_n++;
            }
        }
    } else {
        note_unusable(r, F_GROUP);
    }

    const struct value *truth = &r->v[F_TRUTH];
    if (truth->kind != V_SCALAR || truth->text.len == 0) {
        note_unusable(r, F_TRUTH);
        return;
    }
    if (!labelled) return;
    size_t n;
    const char *key = value_key(r, truth, &n);
    int ti = label_index(r, key, n);
    r->compared++;
    if (ti >= 0 && li >= 0) {
        if (ti == li) r->correct++;
        r->confusion[ti][li]++;
        if (r->labels[ti].numeric && r->labels[li].numeric)
            r->abs_error_sum += fabs(r->labels[ti].number - r->labels[li].number);
        else r->eval_numeric = 0;
    } else { /* a label beyond the table: compared by its text, left out of the matrix */
        r->outside_matrix++;
        if (truth->text.len == lv->text.len && memcmp(truth->text.data, lv->text.data, lv->text.len) == 0) r->correct++;
        double a, b;
        if (text_number(lv, &a) && text_number(truth, &b)) r->abs_error_sum += fabs(a - b);
        else r->eval_numeric = 0;
    }
}

/* ---- reading lines ------------------------------------------------------------------- */

#define READ_BLOCK (1u << 20)

struct line_reader {
    FILE *f;
    char *block;
    size_t pos, len;
    int eof;
    struct buf line;  /* the line, without its '\n' */
    int newline;      /* it ended with '\n' (the last line may not) */
    int too_long;     /* it was longer than REPORT_MAX_LINE: line holds its start */
};

/* The next line into lr->line: 1, 0 at the end of the input, -1 on a read error (errno). */
static int next_line(struct line_reader *lr)
{
    buf_clear(&lr->line);
    lr->too_long = lr->newline = 0;
    int any = 0;
    for (;;) {
        if (lr->pos == lr->len) {
            if (lr->eof) return any;
            lr->len = fread(lr->block, 1, READ_BLOCK, lr->f);
            lr->pos = 0;
            if (lr->len == 0) {
                if (ferror(lr->f)) return -1;
                lr->eof = 1;
                return any;
            }
        }
        any = 1;
        const char *start = lr->block + lr->pos;
        const char *nl = memchr(start, '\n', lr->len - lr->pos);
        size_t n = nl ? (size_t)(nl - start) : lr->len - lr->pos, keep = n;
        if (lr->line.len + n > REPORT_MAX_LINE) {
            keep = REPORT_MAX_LINE - lr->line.len;
            lr->too_long = 1;
        }
        buf_put(&lr->line, start, keep);
        lr->pos += n + (nl ? 1 : 0);
        if (nl) {
            lr->newline = 1;
            return 1;
        }
    }
}

/* ---- JSON Lines ---------------------------------------------------------------------- */

/* A JSON number's text as the label it stands for: integers as themselves, other numbers in
 * the shortest form that reads back the same (so 4, 4.0 and 4e0 are one label). */
static void put_number(struct buf *out, const char *text, size_t n)
{
    char tmp[64];
    if (n >= sizeof tmp) { buf_put(out, text, n); return; }
    memcpy(tmp, text, n);
    tmp[n] = '\0';
    char *end;
    errno = 0;
    long long i = strtoll(tmp, &end, 10);
    if (*end == '\0' && !errno) { buf_printf(out, "%lld", i); return; }
    double d = strtod(tmp, &end);
    char shortest[RN_DOUBLE_MAX];
    if (*end == '\0' && isfinite(d)) {
        rn_format_double(shortest, d);
        buf_puts(out, shortest);
    } else buf_put(out, text, n);
}

static void put_number_json(struct buf *out, const json_t *x)
{
    if (json_is_integer(x)) { buf_printf(out, "%lld", (long long)json_integer_value(x)); return; }
    char shortest[RN_DOUBLE_MAX];
    rn_format_double(shortest, json_real_value(x));
    buf_puts(out, shortest);
}

/* One value with json_scan: 0, or -1 when the scanner does not take it. */
static int scan_value(struct jscan *s, struct value *v)
{
    int c = jscan_peek(s);
    buf_clear(&v->text);
    if (c == '"') {
        if (jscan_string(s, &v->text)) return -1;
        if (!v->text.data) buf_put(&v->text, "", 0);
        v->kind = V_SCALAR;
        return 0;
    }
    if (c == '{' || c == '[') { v->kind = V_NESTED; return jscan_skip(s); }
    if (c == 'n') { v->kind = V_NULL; return jscan_skip(s); }
    const char *start = s->p;
    if (jscan_skip(s)) return -1;
    if (c == 't' || c == 'f') buf_puts(&v->text, c == 't' ? "true" : "false");
    else put_number(&v->text, start, (size_t)(s->p - start));
    v->kind = V_SCALAR;
    return 0;
}

static void copy_value(struct value *to, const struct value *from)
{
    to->kind = from->kind;
    buf_clear(&to->text);
    buf_put(&to->text, from->text.data ? from->text.data : "", from->text.len);
}

/* The field names of the first record, for messages about a field no record has. */
static void note_key(struct report *r, const char *key, size_t n)
{
    if (r->first_keys.len > 300) return;
    if (r->first_keys.len) buf_puts(&r->first_keys, ", ");
    buf_put_visible(&r->first_keys, key, n, 60);
    if (r->first_keys.len > 300) buf_puts(&r->first_keys, ", ...");
}

static int is_field(const struct report *r, int f, const char *key, size_t n)
{
    return r->name[f] && r->name_len[f] == n && memcmp(r->name[f], key, n) == 0;
}

/* The record's fields with json_scan: 0, or -1 when it does not take the line. */
static int scan_record(struct report *r, const char *line, size_t n)
{
    struct jscan s;
    jscan_init(&s, line, n);
    if (!jscan_open(&s, '{')) return -1;
    int capture = r->first_keys_line == 0, count = 0, rc;
    if (capture) buf_clear(&r->first_keys);
    const char *key;
    size_t key_len;
    while ((rc = jscan_member(&s, &count, &key, &key_len)) == 1) {
        if (capture) note_key(r, key, key_len);
        int first = -1;
        for (int f = 0; f < F_COUNT; f++) {
            if (!is_field(r, f, key, key_len)) continue;
            if (first >= 0) { copy_value(&r->v[f], &r->v[first]); continue; }
            if (scan_value(&s, &r->v[f])) return -1;
            first = f;
        }
        if (first < 0 && jscan_skip(&s)) return -1;
    }
    if (rc < 0 || !jscan_at_end(&s)) return -1;
    if (capture) r->first_keys_line = r->line;
    return 0;
}

/* The record's fields with jansson, for lines json_scan did not take: 0, or -1 after counting
 * and reporting a line that is not a JSON object. */
static int parse_record(struct report *r, const char *line, size_t n)
{
    json_error_t e;
    json_t *root = json_loadb(line, n, 0, &e);
    if (!root || !json_is_object(root)) {
        r->bad_lines++;
        if (root) problem(r, r->line, "a JSON %s, not an object", json_is_array(root) ? "array" : "value");
        else problem(r, r->line, "not JSON: %s (column %d)", e.text, e.column);
        json_decref(root);
        return -1;
    }
    for (int f = 0; f < F_COUNT; f++) {
        struct value *v = &r->v[f];
        v->kind = V_MISSING;
        buf_clear(&v->text);
        json_t *x = r->name[f] ? json_object_get(root, r->name[f]) : NULL;
        if (!x) continue;
        v->kind = V_SCALAR;
        if (json_is_string(x)) buf_put(&v->text, json_string_value(x), json_string_length(x));
        else if (json_is_number(x)) put_number_json(&v->text, x);
        else if (json_is_boolean(x)) buf_puts(&v->text, json_is_true(x) ? "true" : "false");
        else v->kind = json_is_null(x) ? V_NULL : V_NESTED;
        if (!v->text.data) buf_put(&v->text, "", 0);
    }
    if (r->first_keys_line == 0) {
        buf_clear(&r->first_keys);
        const char *key;
        json_t *x;
        json_object_foreach(root, key, x) note_key(r, key, strlen(key));
        r->first_keys_line = r->line;
    }
    json_decref(root);
    return 0;
}

static int read_jsonl(struct report *r, struct line_reader *lr, struct rn_err *err)
{
    int rc;
    while ((rc = next_line(lr)) == 1) {
        r->line++;
        const char *line = lr->line.data;
        size_t n = lr->line.len, i = 0;
        if (lr->too_long) {
            r->bad_lines++;
            problem(r, r->line, "longer than %u MiB, skipped", REPORT_MAX_LINE >> 20);
            continue;
        }
        while (i < n && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) i++;
        if (i == n) continue; /* a blank line is no record */
        for (int f = 0; f < F_COUNT; f++) r->v[f].kind = V_MISSING;
        if (scan_record(r, line, n) == 0 || parse_record(r, line, n) == 0) observe(r);
    }
    if (rc < 0) return rn_fail(err, "%s: read error after line %llu: %s", r->opt->input, (unsigned long long)r->line, strerror(errno));
    return 0;
}

/* ---- CSV ----------------------------------------------------------------------------- */

struct csv_reader {
    struct report *r;
    int header_done;
    size_t columns;       /* of the header */
    size_t column;        /* of the row being read */
    int field_of[F_COUNT];/* column index of each field, -1 when the header lacks it */
    uint64_t row_line;    /* the line the row being read started on; 0 between rows */
};

static void csv_on_field(void *data, size_t len, void *ctx)
{
    struct csv_reader *c = ctx;
    struct report *r = c->r;
    if (!c->header_done) {
        for (int f = 0; f < F_COUNT; f++)
            if (is_field(r, f, data ? data : "", len)) c->field_of[f] = (int)c->column;
        note_key(r, data ? data : "", len);
    } else {
        for (int f = 0; f < F_COUNT; f++) {
            if (c->field_of[f] != (int)c->column) continue;
            struct value *v = &r->v[f];
            v->kind = V_SCALAR;
            buf_clear(&v->text);
            buf_put(&v->text, data ? data : "", len);
        }
    }
    c->column++;
}

static void csv_on_row(int terminator, void *ctx)
{
    (void)terminator;
    struct csv_reader *c = ctx;
    struct report *r = c->r;
    uint64_t line = r->line;
    r->line = c->row_line ? c->row_line : line; /* name the record by its first line */
    if (!c->header_done) {
        c->header_done = 1;
        c->columns = c->column;
        r->first_keys_line = r->line;
    } else if (c->column != c->columns) {
        r->bad_lines++;
        problem(r, r->line, "expected %zu fields (as the header), got %zu", c->columns, c->column);
    } else {
        observe(r);
    }
    r->line = line;
    for (int f = 0; f < F_COUNT; f++) r->v[f].kind = V_MISSING;
    c->column = 0;
    c->row_line = 0;
}

static int csv_reset(struct csv_parser *p)
{
    if (csv_init(p, CSV_STRICT | CSV_STRICT_FINI) != 0) return -1;
    return 0;
}

static int read_csv(struct report *r, struct line_reader *lr, struct rn_err *err)
{
    struct csv_parser p;
    struct csv_reader c = {.r = r};
    for (int f = 0; f < F_COUNT; f++) c.field_of[f] = -1;
    if (csv_reset(&p)) return rn_fail(err, "%s: cannot initialise the CSV parser", r->opt->input);
    int rc;
    while ((rc = next_line(lr)) == 1) {
        r->line++;
        const char *line = lr->line.data ? lr->line.data : "";
        size_t n = lr->line.len;
        if (r->line == 1 && n >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) { line += 3; n -= 3; }
        if (!c.row_line) c.row_line = r->line;
        int broken = lr->too_long;
        if (!broken) broken = csv_parse(&p, line, n, csv_on_field, csv_on_row, &c) != n ||
                              (lr->newline && csv_parse(&p, "\n", 1, csv_on_field, csv_on_row, &c) != 1);
        if (!broken) continue;
        if (!c.header_done) {
            csv_free(&p);
            return rn_fail(err, "%s:%llu: the header row is not valid CSV (%s)", r->opt->input,
                           (unsigned long long)r->line, lr->too_long ? "too long" : csv_strerror(csv_error(&p)));
        }
        r->bad_lines++;
        if (lr->too_long) problem(r, c.row_line, "longer than %u MiB, skipped", REPORT_MAX_LINE >> 20);
        else problem(r, c.row_line, "not valid CSV: %s", csv_strerror(csv_error(&p)));
        /* start over at the next line */
        csv_free(&p);
        if (csv_reset(&p)) return rn_fail(err, "%s: cannot initialise the CSV parser", r->opt->input);
        for (int f = 0; f < F_COUNT; f++) r->v[f].kind = V_MISSING;
        c.column = 0;
        c.row_line = 0;
    }
    if (rc < 0) {
        csv_free(&p);
        return rn_fail(err, "%s: read error after line %llu: %s", r->opt->input, (unsigned long long)r->line, strerror(errno));
    }
    if (csv_fini(&p, csv_on_field, csv_on_row, &c) != 0) {
        r->bad_lines++;
        problem(r, c.row_line ? c.row_line : r->line, "not valid CSV at the end of the file: %s", csv_strerror(csv_error(&p)));
    }
    csv_free(&p);
    for (int f = 0; f < F_COUNT; f++)
        if (c.field_of[f] >= 0) r->stats[f].seen = 1;
    return 0;
}

/* ---- after reading: what the page shows ---------------------------------------------- */

/* Labels in display order: by number when every label is one, else by text. */
static size_t label_order(const struct report *r, size_t order[REPORT_MAX_LABELS], int *numeric)
{
    *numeric = r->nlabels > 0;
    for (size_t i = 0; i < r->nlabels; i++) *numeric &= r->labels[i].numeric;
    for (size_t i = 0; i < r->nlabels; i++) {
        size_t j = i;
        while (j > 0) {
            const struct label *a = &r->labels[order[j - 1]], *b = &r->labels[i];
            int after = *numeric ? a->number > b->number : strcmp(a->text, b->text) > 0;
            if (!after) break;
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
    return r->nlabels;
}

/* 1 when phrase `inner` is a run of whole words of `outer`. */
static int inside_phrase(const char *inner, size_t n, const char *outer, size_t m)
{
    for (size_t i = 0; i + n <= m; i++)
        if ((i == 0 || outer[i - 1] == ' ') && (i + n == m || outer[i + n] == ' ') && memcmp(outer + i, inner, n) == 0)
            return 1;
    return 0;
}

/* The phrases of the cloud: the most frequent, less those that occur mostly (80%) inside a
 * longer phrase that is also a candidate, which says the same thing better ("ever" inside
 * "best ever"). Fills out[0..words); returns how many. */
static size_t cloud_phrases(struct report *r, size_t words, const struct tally_entry **out)
{
    size_t want = 3 * words;
    const struct tally_entry **cand = rn_malloc(want * sizeof *cand);
    size_t n = tally_top(r->phrases, want, cand), kept = 0;
    for (size_t i = 0; i < n && kept < words; i++) {
        int covered = 0;
        for (size_t j = 0; j < n && !covered; j++)
            covered = j != i && cand[j]->len > cand[i]->len && cand[j]->count * 5 >= cand[i]->count * 4 &&
                      inside_phrase(cand[i]->key, cand[i]->len, cand[j]->key, cand[j]->len);
        if (!covered) out[kept++] = cand[i];
    }
    free(cand);
    return kept;
}

static void json_key(struct buf *b, const char *key)
{
    buf_put_json_string(b, key, strlen(key));
    buf_putc(b, ':');
}

/* A figure for the charts, to 4 decimals (the page shows fewer). */
static void json_number(struct buf *b, double v)
{
    char text[RN_DOUBLE_MAX];
    rn_format_double(text, isfinite(v) ? round(v * 1e4) / 1e4 : 0);
    buf_puts(b, text);
}

/* The charts' data, as JSON (report.js reads it). */
static void chart_data(struct report *r, const size_t *order, int numeric, struct buf *b)
{
    buf_putc(b, '{');
    json_key(b, "label");
    buf_put_json_string(b, r->name[F_LABEL], r->name_len[F_LABEL]);
    buf_putc(b, ',');
    json_key(b, "text");
    buf_put_json_string(b, r->name[F_TEXT], r->name_len[F_TEXT]);
    buf_putc(b, ',');
    json_key(b, "group");
    buf_put_json_string(b, r->name[F_GROUP], r->name_len[F_GROUP]);
    buf_printf(b, ",\"numeric\":%s,\"labels\":[", numeric ? "true" : "false");
    size_t shown = 0;
    for (size_t k = 0; k < r->nlabels; k++) {
        const struct label *l = &r->labels[order[k]];
        if (!l->predicted) continue;
        buf_puts(b, shown++ ? ",{" : "{");
        json_key(b, "label");
        buf_put_json_string(b, l->text, l->len);
        buf_printf(b, ",\"count\":%llu,\"percent\":", (unsigned long long)l->predicted);
        json_number(b, 100.0 * (double)l->predicted / (double)r->labelled);
        buf_putc(b, '}');
    }
    if (r->other_labels) {
        buf_printf(b, "%s{\"label\":\"other labels\",\"other\":true,\"count\":%llu,\"percent\":", shown ? "," : "",
                   (unsigned long long)r->other_labels);
        json_number(b, 100.0 * (double)r->other_labels / (double)r->labelled);
        buf_putc(b, '}');
    }
    buf_puts(b, "],\"phrases\":[");
    const struct tally_entry **top = rn_malloc((r->opt->words > r->opt->top ? r->opt->words : r->opt->top) * sizeof *top);
    size_t n = cloud_phrases(r, r->opt->words, top);
    for (size_t i = 0; i < n; i++) {
        buf_puts(b, i ? ",{" : "{");
        json_key(b, "text");
        buf_put_json_string(b, top[i]->key, top[i]->len);
        buf_printf(b, ",\"count\":%llu", (unsigned long long)top[i]->count);
        if (numeric && top[i]->label_n) {
            buf_puts(b, ",\"mean\":");
            json_number(b, top[i]->label_sum / (double)top[i]->label_n);
        }
        buf_putc(b, '}');
    }
    buf_puts(b, "],\"groups\":[");
    n = tally_top(r->groups, r->opt->top, top);
    for (size_t i = 0; i < n; i++) {
        buf_puts(b, i ? ",{" : "{");
        json_key(b, "group");
        buf_put_json_string(b, top[i]->key, top[i]->len);
        buf_printf(b, ",\"count\":%llu", (unsigned long long)top[i]->count);
        if (numeric && top[i]->label_n) {
            buf_puts(b, ",\"mean\":");
            json_number(b, top[i]->label_sum / (double)top[i]->label_n);
        }
        buf_puts(b, ",\"cells\":[");
        size_t cells = 0;
        for (size_t k = 0; k < r->nlabels; k++) {
            size_t li = order[k];
            if (!r->labels[li].predicted) continue;
            uint32_t c = li < top[i]->by_label_len ? top[i]->by_label[li] : 0;
            buf_puts(b, cells++ ? ",{" : "{");
            json_key(b, "label");
            buf_put_json_string(b, r->labels[li].text, r->labels[li].len);
            buf_printf(b, ",\"count\":%u}", c);
        }
        buf_puts(b, "]}");
    }
    free(top);
    buf_puts(b, "]}");
}

static void card(struct buf *b, const char *name, unsigned long long value, const char *note)
{
    buf_puts(b, "<div class=\"card\"><span class=\"value\">");
    html_put_count(b, value);
    buf_puts(b, "</span><span class=\"name\">");
    html_puts(b, name);
    if (note) {
        buf_puts(b, " <small>");
        html_puts(b, note);
        buf_puts(b, "</small>");
    }
    buf_puts(b, "</span></div>\n");
}

static void card_text(struct buf *b, const char *name, const char *value)
{
    buf_puts(b, "<div class=\"card\"><span class=\"value\">");
    html_puts(b, value);
    buf_puts(b, "</span><span class=\"name\">");
    html_puts(b, name);
    buf_puts(b, "</span></div>\n");
}

static void percent_cell(struct buf *b, uint64_t part, uint64_t whole)
{
    if (whole) buf_printf(b, "<td class=\"num\">%.1f%%</td>", 100.0 * (double)part / (double)whole);
    else buf_puts(b, "<td></td>");
}

static void count_row(struct buf *b, const char *name, const char *field, uint64_t n, uint64_t whole)
{
    buf_puts(b, "<tr><th>");
    html_puts(b, name);
    if (field) {
        buf_puts(b, " <code>");
        html_puts(b, field);
        buf_puts(b, "</code>");
    }
    buf_puts(b, "</th><td class=\"num\">");
    html_put_count(b, n);
    buf_puts(b, "</td>");
    percent_cell(b, n, whole);
    buf_puts(b, "</tr>\n");
}

/* The field notes: a field some records lack, for the page and the warnings. */
static void field_notes(struct report *r, struct buf *html)
{
    for (int f = 0; f < F_COUNT; f++) {
        const struct field_stats *s = &r->stats[f];
        if (!r->name[f] || !s->seen || !r->records) continue;
        char msg[600];
        if (s->missing) {
            snprintf(msg, sizeof msg, "%llu record%s ha%s no field '%s' (the %s; first: line %llu)",
                     (unsigned long long)s->missing, s->missing == 1 ? "" : "s", s->missing == 1 ? "s" : "ve",
                     r->name[f], field_role[f], (unsigned long long)s->first_missing);
            if (r->warnings) fprintf(r->warnings, "runnel: report: %s: %s\n", r->opt->input, msg);
            buf_puts(html, "<li>");
            html_puts(html, msg);
            buf_puts(html, "</li>\n");
        }
        if (s->unusable) {
            snprintf(msg, sizeof msg, "%llu record%s ha%s '%s' %s or otherwise unusable (the %s; first: line %llu)",
                     (unsigned long long)s->unusable, s->unusable == 1 ? "" : "s", s->unusable == 1 ? "s" : "ve",
                     r->name[f], s->unusable_kind, field_role[f], (unsigned long long)s->first_unusable);
            if (r->warnings) fprintf(r->warnings, "runnel: report: %s: %s\n", r->opt->input, msg);
            buf_puts(html, "<li>");
            html_puts(html, msg);
            buf_puts(html, "</li>\n");
        }
    }
}

static void evaluation_html(struct report *r, const size_t *order, struct buf *b)
{
    buf_puts(b, "<div class=\"panel\" id=\"evaluation\"><h2>Evaluation: <code>");
    html_puts(b, r->name[F_LABEL]);
    buf_puts(b, "</code> against <code>");
    html_puts(b, r->name[F_TRUTH]);
    buf_puts(b, "</code></h2>\n");
    if (!r->compared) {
        buf_puts(b, "<p class=\"empty\">No record has both a label and a truth.</p></div>\n");
        return;
    }
    buf_puts(b, "<p>");
    html_put_count(b, r->compared);
    buf_printf(b, " records compared: accuracy <b>%.4f</b>", (double)r->correct / (double)r->compared);
    if (r->eval_numeric) buf_printf(b, ", mean absolute error <b>%.4f</b>", r->abs_error_sum / (double)r->compared);
    buf_puts(b, ".</p>\n<table class=\"matrix\"><caption>confusion matrix: rows <code>");
    html_puts(b, r->name[F_TRUTH]);
    buf_puts(b, "</code>, columns <code>");
    html_puts(b, r->name[F_LABEL]);
    buf_puts(b, "</code></caption>\n<tr><th></th>");
    uint64_t max = 1;
    for (size_t i = 0; i < r->nlabels; i++)
        for (size_t j = 0; j < r->nlabels; j++)
            if (r->confusion[i][j] > max) max = r->confusion[i][j];
    for (size_t k = 0; k < r->nlabels; k++) {
        buf_puts(b, "<th>");
        html_put_text(b, r->labels[order[k]].text, r->labels[order[k]].len);
        buf_puts(b, "</th>");
    }
    buf_puts(b, "</tr>\n");
    for (size_t i = 0; i < r->nlabels; i++) {
        size_t t = order[i];
        buf_puts(b, "<tr><th>");
        html_put_text(b, r->labels[t].text, r->labels[t].len);
        buf_puts(b, "</th>");
        for (size_t j = 0; j < r->nlabels; j++) {
            size_t p = order[j];
            uint64_t c = r->confusion[t][p];
            double shade = c ? 0.08 + 0.72 * (double)c / (double)max : 0;
            buf_printf(b, "<td class=\"num%s\" style=\"background:rgba(49,130,189,%.2f)%s\">", t == p ? " diagonal" : "",
                       shade, shade > 0.5 ? ";color:#fff" : "");
            html_put_count(b, c);
            buf_puts(b, "</td>");
        }
        buf_puts(b, "</tr>\n");
    }
    buf_puts(b, "</table>\n");
    if (r->outside_matrix) {
        buf_puts(b, "<p class=\"note\">");
        html_put_count(b, r->outside_matrix);
        buf_printf(b, " compared records have labels beyond the first %d and are not in the matrix.</p>\n", REPORT_MAX_LABELS);
    }
    buf_puts(b, "</div>\n");
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* A <figure> for a chart that report.js draws, or a note when there is nothing to draw. */
static void chart_figure(struct buf *b, const char *id, const char *caption_html, const char *empty)
{
    buf_printf(b, "<figure class=\"panel\" id=\"%s\"><figcaption>%s</figcaption><div class=\"chart\">", id, caption_html);
    if (empty) {
        buf_puts(b, "<p class=\"empty\">");
        html_puts(b, empty);
        buf_puts(b, "</p>");
    }
    buf_puts(b, "</div></figure>\n");
}

static int put_asset(struct buf *b, const char *name, int script, struct rn_err *err)
{
    const struct serve_asset *a = serve_asset(name);
    if (!a) return rn_fail(err, "this runnel was built without the page asset %s", name);
    int rc = script ? html_put_script(b, (const char *)a->data, a->len, err)
                    : html_put_style(b, (const char *)a->data, a->len, err);
    return rc ? rn_wrap(err, "%s", name) : 0;
}

static int write_page(struct report *r, struct rn_err *err)
{
    const struct report_options *o = r->opt;
    size_t order[REPORT_MAX_LABELS];
    int numeric;
    label_order(r, order, &numeric);
    int evaluate = r->name[F_TRUTH] && r->stats[F_TRUTH].seen;
    char title[512];
    snprintf(title, sizeof title, "%s", o->title ? o->title : "");
    if (!o->title) snprintf(title, sizeof title, "Report: %s", base_name(o->input));
    char when[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", &tm);

    struct buf b, notes, data;
    buf_init(&b);
    buf_init(&notes);
    buf_init(&data);
    buf_puts(&b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                 /* nothing may load from anywhere: the page is all there is */
                 "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
                 "script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data:\">\n"
                 "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                 "<meta name=\"generator\" content=\"runnel " RN_VERSION "\">\n<title>");
    html_puts(&b, title);
    buf_puts(&b, "</title>\n");
    if (put_asset(&b, "report.css", 0, err)) goto fail;
    buf_puts(&b, "</head>\n<body>\n<header><h1>");
    html_puts(&b, title);
    buf_puts(&b, "</h1><p><code>");
    html_puts(&b, o->input);
    buf_puts(&b, "</code> &middot; ");
    html_put_count(&b, r->line);
    buf_printf(&b, " lines &middot; written %s by runnel %s</p></header>\n<main>\n<section class=\"cards\">\n", when, RN_VERSION);

    card(&b, "records", r->records, NULL);
    char what[256];
    snprintf(what, sizeof what, "with a %s", r->name[F_LABEL]);
    card(&b, what, r->labelled, NULL);
    card(&b, "without a label", r->records - r->labelled, NULL);
    card(&b, "lines that are not records", r->bad_lines, NULL);
    snprintf(what, sizeof what, "%s values", r->name[F_GROUP]);
    card(&b, what, tally_size(r->groups), tally_dropped(r->groups) ? "(most seen kept)" : NULL);
    if (evaluate && r->compared) {
        char v[32];
        snprintf(v, sizeof v, "%.4f", (double)r->correct / (double)r->compared);
        card_text(&b, "accuracy", v);
        if (r->eval_numeric) {
            snprintf(v, sizeof v, "%.4f", r->abs_error_sum / (double)r->compared);
            card_text(&b, "mean absolute error", v);
        }
    }
    buf_puts(&b, "</section>\n<section class=\"row\">\n");

    struct buf cap;
    buf_init(&cap);
    buf_puts(&cap, "<code>");
    html_puts(&cap, r->name[F_LABEL]);
    buf_puts(&cap, "</code>: records per label");
    chart_figure(&b, "chart-donut", cap.data, r->labelled ? NULL : "No record has a label.");
    buf_clear(&cap);
    buf_puts(&cap, "<code>");
    html_puts(&cap, r->name[F_TEXT]);
    buf_puts(&cap, "</code>: frequent words and phrases");
    if (numeric) {
        buf_puts(&cap, " &middot; colour: mean <code>");
        html_puts(&cap, r->name[F_LABEL]);
        buf_puts(&cap, "</code>");
    }
    chart_figure(&b, "chart-cloud", cap.data, tally_size(r->phrases) ? NULL : "No text to count words in.");
    buf_puts(&b, "</section>\n");
    buf_clear(&cap);
    buf_puts(&cap, "<code>");
    html_puts(&cap, r->name[F_LABEL]);
    buf_puts(&cap, "</code> by <code>");
    html_puts(&cap, r->name[F_GROUP]);
    buf_printf(&cap, "</code>: the %zu with most labelled records", o->top);
    chart_figure(&b, "chart-heatmap", cap.data, tally_size(r->groups) ? NULL : "No record has both a label and a group.");
    buf_free(&cap);

    buf_puts(&b, "<section class=\"row\">\n<div class=\"panel\" id=\"counts\"><h2>Counts</h2>\n<table>\n");
    count_row(&b, "records", NULL, r->records, 0);
    count_row(&b, "with a label", r->name[F_LABEL], r->labelled, r->records);
    for (size_t k = 0; k < r->nlabels; k++) {
        const struct label *l = &r->labels[order[k]];
        if (!l->predicted) continue;
        buf_puts(&b, "<tr class=\"label\"><th>&nbsp;&nbsp;<code>");
        html_puts(&b, r->name[F_LABEL]);
        buf_puts(&b, "</code> = ");
        html_put_text(&b, l->text, l->len);
        buf_puts(&b, "</th><td class=\"num\">");
        html_put_count(&b, l->predicted);
        buf_puts(&b, "</td>");
        percent_cell(&b, l->predicted, r->labelled);
        buf_puts(&b, "</tr>\n");
    }
    if (r->other_labels) count_row(&b, "  other labels (beyond the first 32)", NULL, r->other_labels, r->labelled);
    count_row(&b, "without a label", NULL, r->records - r->labelled, r->records);
    count_row(&b, "lines that are not records", NULL, r->bad_lines, 0);
    if (r->name[F_TRUTH] && evaluate) count_row(&b, "with a truth", r->name[F_TRUTH], r->records - r->stats[F_TRUTH].missing - r->stats[F_TRUTH].unusable, r->records);
    buf_puts(&b, "</table>\n");
    if (tally_dropped(r->phrases) || tally_dropped(r->groups)) {
        buf_puts(&b, "<p class=\"note\">Large input: to keep memory bounded, the least seen phrases and groups were dropped while reading; counts shown may be low by at most ");
        html_put_count(&b, tally_shortfall(r->phrases) > tally_shortfall(r->groups) ? tally_shortfall(r->phrases) : tally_shortfall(r->groups));
        buf_puts(&b, ".</p>\n");
    }
    buf_puts(&b, "</div>\n");
    if (evaluate) evaluation_html(r, order, &b);
    buf_puts(&b, "</section>\n");

    field_notes(r, &notes);
    if (r->problems.len || notes.len) {
        buf_puts(&b, "<section class=\"panel\" id=\"problems\"><h2>Problems</h2>\n<ul>\n");
        if (notes.len) buf_put(&b, notes.data, notes.len);
        if (r->problems.len) buf_put(&b, r->problems.data, r->problems.len);
        if (r->bad_lines > r->problem_lines_shown) {
            buf_puts(&b, "<li>... and ");
            html_put_count(&b, r->bad_lines - r->problem_lines_shown);
            buf_puts(&b, " more lines that are not records</li>\n");
        }
        buf_puts(&b, "</ul></section>\n");
    }
    buf_puts(&b, "</main>\n<footer>Charts drawn by Vega (Debian's libjs-vega), inlined in this file with the data: "
                 "it opens without a network.</footer>\n<script type=\"application/json\" id=\"report-data\">");
    chart_data(r, order, numeric, &data);
    html_put_json_data(&b, data.data, data.len);
    buf_puts(&b, "</script>\n");
    if (put_asset(&b, "vega.js", 1, err) || put_asset(&b, "report.js", 1, err)) goto fail;
    buf_puts(&b, "</body>\n</html>\n");

    if (rn_mkdir_parent(o->html, err) || rn_write_file_atomic(o->html, b.data, b.len, err)) goto fail;
    buf_free(&b);
    buf_free(&notes);
    buf_free(&data);
    return 0;
fail:
    buf_free(&b);
    buf_free(&notes);
    buf_free(&data);
    return -1;
}

/* Refuse a report on nothing: no record, or no record with a field the page needs. */
static int check_fields(struct report *r, struct rn_err *err)
{
    const char *input = r->opt->input;
    if (!r->records && r->bad_lines)
        return rn_fail(err, "%s: no line is a record (%llu lines, none a JSON object or CSV row; see above)",
                       input, (unsigned long long)r->line);
    if (!r->records) {
        if (r->warnings) fprintf(r->warnings, "runnel: report: %s: no records (an empty input): the page says so\n", input);
        return 0;
    }
    static const char *const option[F_COUNT] = {"--label", "--text", "--group", "--truth"};
    for (int f = 0; f < F_COUNT; f++) {
        if (!r->name[f] || r->stats[f].seen) continue;
        int named = f == F_LABEL || r->named[f];
        if (f == F_TRUTH && !named) continue; /* the default truth is used only when present */
        char fields[400];
        snprintf(fields, sizeof fields, "line %llu has: %s", (unsigned long long)r->first_keys_line,
                 r->first_keys.len ? r->first_keys.data : "no fields");
        if (named)
            return rn_fail(err, "%s: no record has the field '%s' (%s FIELD names the %s; %s)", input, r->name[f],
                           option[f], field_role[f], fields);
        if (r->warnings)
            fprintf(r->warnings, "runnel: report: %s: no record has the field '%s' (the %s; %s FIELD names another; %s)\n",
                    input, r->name[f], field_role[f], option[f], fields);
    }
    return 0;
}

int report_run(const struct report_options *o, FILE *warnings, struct report_result *result, struct rn_err *err)
{
    struct report *r = rn_calloc(1, sizeof *r);
    r->opt = o;
    r->warnings = warnings;
    const char *given[F_COUNT] = {o->label, o->text, o->group, o->truth};
    static const char *const fallback[F_COUNT] = {"rating", "summary", "product_id", "score"};
    for (int f = 0; f < F_COUNT; f++) {
        r->named[f] = given[f] != NULL;
        r->name[f] = given[f] ? given[f] : fallback[f];
        r->name_len[f] = strlen(r->name[f]);
        buf_init(&r->v[f].text);
    }
    r->eval_numeric = 1;
    r->phrases = tally_new(REPORT_MAX_PHRASES);
    r->groups = tally_new(REPORT_MAX_GROUPS);
    buf_init(&r->problems);
    buf_init(&r->first_keys);
    buf_init(&r->scratch);
    struct line_reader lr = {0};
    buf_init(&lr.line);
    int rc = -1;
    lr.f = fopen(o->input, "rb");
    if (!lr.f) {
        rn_fail(err, "%s: %s", o->input, strerror(errno));
        goto done;
    }
    lr.block = rn_malloc(READ_BLOCK);
    rc = o->format == REPORT_FORMAT_CSV ? read_csv(r, &lr, err) : read_jsonl(r, &lr, err);
    if (rc == 0) rc = check_fields(r, err);
    if (rc == 0) rc = write_page(r, err);
done:
    if (result) {
        result->lines = r->line;
        result->records = r->records;
        result->bad_lines = r->bad_lines;
        result->labelled = r->labelled;
    }
    if (lr.f) fclose(lr.f);
    free(lr.block);
    buf_free(&lr.line);
    for (int f = 0; f < F_COUNT; f++) buf_free(&r->v[f].text);
    for (size_t i = 0; i < r->nlabels; i++) free(r->labels[i].text);
    tally_free(r->phrases);
    tally_free(r->groups);
    buf_free(&r->problems);
    buf_free(&r->first_keys);
    buf_free(&r->scratch);
    free(r);
    return rc;
}
