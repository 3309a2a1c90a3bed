/* json_decode.c: JSON text straight to Lua values, read as jansson 2.14 reads it (json.h).
 *
 * The parser is jansson's (load.c) turned into a loop: the same tokens scanned in the same
 * order, the same checks at the same points, so a text fails at the same place with the same
 * words. jansson's error context ("near 'xyz'") is the text of the token being scanned, which
 * here is always the bytes from the token's start to the read position, and its line and
 * column are a function of that position: both are computed only when a text fails.
 *
 * One quirk of jansson's reader is kept on purpose, since the decision to accept is part of
 * the contract: a NUL byte that it reads past the end of a number or of true/false/null and
 * puts back is lost (its one-byte put-back buffer takes NUL for empty), so "[1\0,2]" is
 * [1,2] and the NUL counts in no column. */
#include "formats/json.h"

#include <errno.h>
#include <lauxlib.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum token {
    TOK_EOF = 0, /* jansson's TOKEN_EOF is 0: `while (lex->token)` in parse_array */
    TOK_INVALID = 256,
    TOK_STRING,
    TOK_INTEGER,
    TOK_REAL,
    TOK_TRUE,
    TOK_FALSE,
    TOK_NULL,
    /* '{', '}', '[', ']', ':', ',' stand for themselves */
};

/* An open array or object, and the values it holds so far. */
struct json_level {
    lua_Integer count;
    int is_array;
};

#define INLINE_LEVELS 32
#define KEPT_KEYS 64 /* json_decoder_keep_keys: the first this many keys of a top-level object */

/* A kept key's bytes, which live as long as its string in the kept table. */
struct json_kept_key {
    const char *text;
    size_t len;
};
#define CONTEXT_MAX 20 /* jansson quotes the token only when it is at most this long */

struct reader {
    const unsigned char *text, *p, *end; /* p: the read position */
    const unsigned char *token;          /* where the token being scanned starts */
    struct json_decoder *d;
    struct json_syntax_error *error;
    int failed;
    int drop_nul;                        /* the next byte is such a NUL: skip it */
    /* the token's value */
    const char *str;
    size_t str_len;
    int str_nul;                         /* the string holds a NUL (from \u0000) */
    lua_Integer integer;
    double real;
};

/* ---- errors ---- */

/* Fail at read position `at` (the first failure wins, as in jansson). utf8: the failure is a
 * byte that does not decode, which jansson reports without "near end of file". */
static void fail_at(struct reader *r, const unsigned char *at, int utf8, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail_at(struct reader *r, const unsigned char *at, int utf8, const char *fmt, ...)
{
    if (r->failed) return;
    r->failed = 1;
    struct json_syntax_error *e = r->error;
    char msg[sizeof e->text];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* the token so far, as jansson keeps it: a C string, so it ends at a NUL */
    size_t saved = (size_t)(at - r->token);
    size_t shown = saved ? strnlen((const char *)r->token, saved) : 0;
    char full[sizeof msg + CONTEXT_MAX + 32];
    if (shown > 0 && saved <= CONTEXT_MAX) snprintf(full, sizeof full, "%s near '%.*s'", msg, (int)shown, (const char *)r->token);
    else if (shown > 0 || utf8) snprintf(full, sizeof full, "%s", msg);
    else snprintf(full, sizeof full, "%s near end of file", msg);
    /* jansson keeps at most sizeof text - 2 characters (its last byte holds the error code) */
    size_t n = strlen(full);
    if (n > sizeof e->text - 2) n = sizeof e->text - 2;
    memcpy(e->text, full, n);
    e->text[n] = '\0';
    e->offset = (size_t)(at - r->text);
    json_text_position((const char *)r->text, (size_t)(r->end - r->text), e->offset, &e->line, &e->column);
    /* the NULs jansson lost on this line count in no column */
    size_t line_start = e->offset;
    while (line_start > 0 && r->text[line_start - 1] != '\n') line_start--;
    for (size_t i = 0; i < r->d->dropped_len; i++)
        if (r->d->dropped[i] >= line_start && r->d->dropped[i] < e->offset) e->column--;
}

static int fail_utf8(struct reader *r, const unsigned char *at)
{
    fail_at(r, at, 1, "unable to decode byte 0x%x", *at);
    return TOK_INVALID;
}

/* A parser error about the token just scanned. */
static void fail_token(struct reader *r, const char *msg)
{
    fail_at(r, r->p, 0, "%s", msg);
}

/* ---- bytes ---- */

/* The length of the UTF-8 sequence at p (p < end), or 0 when it is not one. */
static size_t utf8_length(const unsigned char *p, const unsigned char *end)
{
    return json_utf8_length(p, (size_t)(end - p));
}

/* After a number or true/false/null: a NUL next is lost, as in jansson (see the top). */
static void after_value_token(struct reader *r, const unsigned char *p)
{
    if (p == r->end || *p != '\0') return;
    struct json_decoder *d = r->d;
    if (d->dropped_len == d->dropped_cap) {
        d->dropped_cap = d->dropped_cap ? d->dropped_cap * 2 : 16;
        d->dropped = rn_realloc(d->dropped, d->dropped_cap * sizeof *d->dropped);
    }
    d->dropped[d->dropped_len++] = (size_t)(p - r->text);
    r->drop_nul = 1;
}

/* jansson reads one character past a number or a word and puts it back; reading it fails
 * when it does not decode. */
static int lookahead_bad(const struct reader *r, const unsigned char *p)
{
    return p < r->end && *p >= 0x80 && !utf8_length(p, r->end);
}

static int is_digit(unsigned c) { return c - '0' < 10; }
static int is_alpha(unsigned c) { return (c | 0x20) - 'a' < 26; }

static int hex_value(unsigned c)
{
    if (is_digit(c)) return (int)(c - '0');
    c |= 0x20;
    if (c - 'a' < 6) return (int)(c - 'a' + 10);
    return -1;
}

/* ---- tokens ---- */

/* 1 for the bytes a string holds as they are: printable ASCII but '"' and '\\'. */
static const unsigned char plain_byte[256] = {
    [' '] = 1, ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['('] = 1, [')'] = 1, ['*'] = 1,
    ['+'] = 1, [','] = 1, ['-'] = 1, ['.'] = 1, ['/'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1,
    ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1, [':'] = 1, [';'] = 1, ['<'] = 1, ['='] = 1, ['>'] = 1,
    ['?'] = 1, ['@'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1,
    ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
    ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['['] = 1, [']'] = 1,
    ['^'] = 1, ['_'] = 1, ['`'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1,
    ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1,
    ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1, ['{'] = 1,
    ['|'] = 1, ['}'] = 1, ['~'] = 1, [0x7F] = 1,
};

/* The bytes of v that a string cannot hold as they are ('"', '\\', control bytes, bytes >=
 * 0x80), as their high bits. The lowest one set is exact (the tests' false positives only sit
 * above a true one), so it finds the first such byte. */
static uint64_t special8(uint64_t v)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    uint64_t quote = v ^ (ones * '"'), backslash = v ^ (ones * '\\');
    return (((quote - ones) & ~quote) | ((backslash - ones) & ~backslash) | ((v - ones * 0x20) & ~v) | v) & highs;
}

/* The first byte from p on that needs a look, or end. */
static const unsigned char *skip_plain(const unsigned char *p, const unsigned char *end)
{
    while (end - p >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        uint64_t special = special8(v);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        if (special) return p + (__builtin_ctzll(special) >> 3);
#else
        if (special) break;
#endif
        p += 8;
    }
    while (p < end && plain_byte[*p]) p++;
    return p;
}

/* The string whose opening quote is at start. Strings without escapes point into the text;
 * others are unescaped into the decoder's scratch. jansson checks a string in two passes (its
 * characters, then its escapes), so a bad surrogate is reported only when the characters are
 * all good: it waits in `surrogate` until the closing quote. */
__attribute__((noinline)) static int scan_string(struct reader *r, const unsigned char *start)
{
    const unsigned char *p = start + 1, *end = r->end, *run = p;
    struct buf *out = &r->d->scratch;
    int escaped = 0;
    int32_t high = -1;  /* a high surrogate waiting for its low half */
    char surrogate[64];
    surrogate[0] = '\0';
    r->str_nul = 0;
    for (;;) {
        p = skip_plain(p, end);
        if (p == end) {
            fail_at(r, end, 0, "premature end of input");
            return TOK_INVALID;
        }
        unsigned c = *p;
        if (c == '"') break;
        if (c >= 0x80) {
            size_t n = utf8_length(p, end);
            if (!n) return fail_utf8(r, p);
            p += n;
            continue;
        }
        if (c < 0x20) { /* jansson puts the byte back before it complains */
            if (c == '\n') fail_at(r, p, 0, "unexpected newline");
            else fail_at(r, p, 0, "control character 0x%x", c);
            return TOK_INVALID;
        }
        /* a backslash */
        if (!escaped) {
            escaped = 1;
            buf_clear(out);
        }
        buf_put(out, run, (size_t)(p - run));
        p++;
        if (p == end) {
            fail_at(r, end, 0, "invalid escape");
            return TOK_INVALID;
        }
        c = *p;
        int32_t value = -1;
        switch (c) {
        case '"': case '\\': case '/': buf_putc(out, (char)c); break;
        case 'b': buf_putc(out, '\b'); break;
        case 'f': buf_putc(out, '\f'); break;
        case 'n': buf_putc(out, '\n'); break;
        case 'r': buf_putc(out, '\r'); break;
        case 't': buf_putc(out, '\t'); break;
        case 'u':
            value = 0;
            for (int i = 1; i <= 4; i++) {
                const unsigned char *h = p + i;
                if (h == end) {
                    fail_at(r, end, 0, "invalid escape");
                    return TOK_INVALID;
                }
                int x = hex_value(*h);
                if (x < 0) {
                    if (lookahead_bad(r, h)) return fail_utf8(r, h);
                    fail_at(r, h + 1, 0, "invalid escape"); /* jansson has read the byte */
                    return TOK_INVALID;
                }
                value = value << 4 | x;
            }
            p += 4;
            break;
        default:
            if (lookahead_bad(r, p)) return fail_utf8(r, p);
            fail_at(r, p + 1, 0, "invalid escape");
            return TOK_INVALID;
        }
        p++;
        run = p;
        if (value < 0) {
            if (high >= 0 && !surrogate[0]) snprintf(surrogate, sizeof surrogate, "invalid Unicode '\\u%04X'", (unsigned)high);
            high = -1;
            continue;
        }
        if (high >= 0) {
            if (value >= 0xDC00 && value <= 0xDFFF) {
                json_put_utf8(out, (uint32_t)(((high - 0xD800) << 10) + (value - 0xDC00) + 0x10000));
            } else if (!surrogate[0]) {
                snprintf(surrogate, sizeof surrogate, "invalid Unicode '\\u%04X\\u%04X'", (unsigned)high, (unsigned)value);
            }
            high = -1;
        } else if (value >= 0xD800 && value <= 0xDBFF) {
            high = value;
            /* its low half must follow at once, as an escape */
            if (!(end - p >= 2 && p[0] == '\\' && p[1] == 'u')) {
                if (!surrogate[0]) snprintf(surrogate, sizeof surrogate, "invalid Unicode '\\u%04X'", (unsigned)high);
                high = -1;
            }
        } else if (value >= 0xDC00 && value <= 0xDFFF) {
            if (!surrogate[0]) snprintf(surrogate, sizeof surrogate, "invalid Unicode '\\u%04X'", (unsigned)value);
        } else {
            if (value == 0) r->str_nul = 1;
            json_put_utf8(out, (uint32_t)value);
        }
    }
    r->p = p + 1;
    if (surrogate[0]) {
        fail_at(r, r->p, 0, "%s", surrogate);
        return TOK_INVALID;
    }
    if (escaped) {
        buf_put(out, run, (size_t)(p - run));
        r->str = out->data;
        r->str_len = out->len;
    } else {
        r->str = (const char *)start + 1;
        r->str_len = (size_t)(p - start - 1);
    }
    return TOK_STRING;
}

static const double exact_powers[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                      1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* The float of the number text [start, stop), as strtod reads it. 0, or -1 when it overflows. */
static int to_real(struct reader *r, const unsigned char *start, const unsigned char *stop, double *out)
{
    /* Clinger's fast path: a mantissa below 2^53 and a power of ten up to 22 are both exact
     * doubles, so one multiplication or division rounds correctly, as strtod does */
    const unsigned char *p = start;
    int negative = *p == '-';
    if (negative) p++;
    uint64_t mantissa = 0;
    int digits = 0, exponent = 0, fast = 1;
    for (; p < stop && is_digit(*p); p++) {
        if (mantissa || *p != '0') digits++;
        mantissa = mantissa * 10 + (*p - '0');
        if (digits > 15) fast = 0;
    }
    if (p < stop && *p == '.') {
        for (p++; p < stop && is_digit(*p); p++) {
            if (mantissa || *p != '0') digits++;
            if (digits > 15) { fast = 0; break; }
            mantissa = mantissa * 10 + (*p - '0');
            exponent--;
        }
    }
    if (fast && p < stop && (*p == 'e' || *p == 'E')) {
        p++;
        int exp_negative = *p == '-';
        if (*p == '-' || *p == '+') p++;
        int e = 0;
        for (; p < stop && is_digit(*p); p++) {
            e = e * 10 + (*p - '0');
            if (e > 1000) { fast = 0; break; }
        }
        exponent += exp_negative ? -e : e;
    }
    if (fast && exponent >= -22 && exponent <= 22) {
        double v = (double)mantissa;
        v = exponent < 0 ? v / exact_powers[-exponent] : v * exact_powers[exponent];
        *out = negative ? -v : v;
        return 0;
    }
    size_t n = (size_t)(stop - start);
    char small[64], *text = small;
    if (n >= sizeof small) {
        buf_clear(&r->d->scratch);
        buf_put(&r->d->scratch, start, n);
        text = r->d->scratch.data;
    } else {
        memcpy(small, start, n);
        small[n] = '\0';
    }
    errno = 0;
    double v = strtod(text, NULL);
    if ((v == HUGE_VAL || v == -HUGE_VAL) && errno == ERANGE) return -1;
    *out = v;
    return 0;
}

/* Digits that must start at q (after a '-', a '.' or an exponent): 1 with *after past them,
 * else 0 and the token ends at q, as jansson puts the byte back (or fails on it). */
static int more_digits(struct reader *r, const unsigned char *q, const unsigned char **after)
{
    if (q == r->end || !is_digit(*q)) {
        if (lookahead_bad(r, q)) fail_utf8(r, q);
        else r->p = q;
        return 0;
    }
    while (q < r->end && is_digit(*q)) q++;
    *after = q;
    return 1;
}

/* A number (jansson's lex_scan_number): on a malformed one, the token is what was read. */
__attribute__((noinline)) static int scan_number(struct reader *r, const unsigned char *start)
{
    const unsigned char *p = start, *end = r->end, *digits;
    uint64_t v = 0; /* the integer so far, while it cannot overflow */
    if (*p == '-') p++;
    digits = p;
    if (p < end && *p == '0') {
        p++;
        if (p < end && is_digit(*p)) { /* no leading zeros */
            r->p = p;
            return TOK_INVALID;
        }
    } else if (p < end && is_digit(*p)) {
        while (p < end && is_digit(*p)) v = v * 10 + (unsigned)(*p++ - '0');
    } else { /* a '-' and no digit: the token ends here (or the byte does not decode) */
        more_digits(r, p, &p);
        return TOK_INVALID;
    }
    int real = 0;
    if (p < end && *p == '.') {
        if (!more_digits(r, p + 1, &p)) return TOK_INVALID;
        real = 1;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        const unsigned char *q = p + 1;
        if (q < end && (*q == '+' || *q == '-')) q++;
        if (!more_digits(r, q, &p)) return TOK_INVALID;
        real = 1;
    }
    if (lookahead_bad(r, p)) return fail_utf8(r, p);
    r->p = p;
    if (real) {
        if (to_real(r, start, p, &r->real)) {
            fail_at(r, p, 0, "real number overflow");
            return TOK_INVALID;
        }
        after_value_token(r, p);
        return TOK_REAL;
    }
    /* an integer, as strtoll reads it: one past the range is jansson's "too big" */
    int negative = *start == '-';
    uint64_t limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    if (p - digits > 18) { /* 18 digits cannot overflow: v is right; more are read again */
        v = 0;
        for (const unsigned char *d = digits; d < p; d++) {
            unsigned x = *d - '0';
            if (v > (limit - x) / 10) {
                fail_at(r, p, 0, negative ? "too big negative integer" : "too big integer");
                return TOK_INVALID;
            }
            v = v * 10 + x;
        }
    }
    r->integer = negative ? (lua_Integer)(0 - v) : (lua_Integer)v;
    after_value_token(r, p);
    return TOK_INTEGER;
}

/* What a byte starts, outside strings. */
enum byte_class { CLASS_OTHER, CLASS_SPACE, CLASS_PUNCT, CLASS_QUOTE, CLASS_NUMBER, CLASS_ALPHA, CLASS_HIGH };

#define ALPHA_RANGE(from) [from] = CLASS_ALPHA, [from + 1] = CLASS_ALPHA, [from + 2] = CLASS_ALPHA, \
    [from + 3] = CLASS_ALPHA, [from + 4] = CLASS_ALPHA, [from + 5] = CLASS_ALPHA, [from + 6] = CLASS_ALPHA, \
    [from + 7] = CLASS_ALPHA, [from + 8] = CLASS_ALPHA, [from + 9] = CLASS_ALPHA, [from + 10] = CLASS_ALPHA, \
    [from + 11] = CLASS_ALPHA, [from + 12] = CLASS_ALPHA
static const unsigned char byte_class[256] = {
    [' '] = CLASS_SPACE, ['\t'] = CLASS_SPACE, ['\n'] = CLASS_SPACE, ['\r'] = CLASS_SPACE,
    ['{'] = CLASS_PUNCT, ['}'] = CLASS_PUNCT, ['['] = CLASS_PUNCT, [']'] = CLASS_PUNCT, [':'] = CLASS_PUNCT,
    [','] = CLASS_PUNCT, ['"'] = CLASS_QUOTE, ['-'] = CLASS_NUMBER, ['0'] = CLASS_NUMBER, ['1'] = CLASS_NUMBER,
    ['2'] = CLASS_NUMBER, ['3'] = CLASS_NUMBER, ['4'] = CLASS_NUMBER, ['5'] = CLASS_NUMBER, ['6'] = CLASS_NUMBER,
    ['7'] = CLASS_NUMBER, ['8'] = CLASS_NUMBER, ['9'] = CLASS_NUMBER,
    ALPHA_RANGE('A'), ALPHA_RANGE('N'), ALPHA_RANGE('a'), ALPHA_RANGE('n'), /* 0x80..0xFF: byte_class_of */
};

static int byte_class_of(unsigned c) { return c >= 0x80 ? CLASS_HIGH : byte_class[c]; }

/* The next token; r->token is where it starts and r->p where it ends. */
static int scan(struct reader *r)
{
    const unsigned char *p = r->p, *end = r->end;
    if (r->drop_nul) {
        p++;
        r->drop_nul = 0;
    }
    while (p < end && byte_class[*p] == CLASS_SPACE) p++;
    r->token = p;
    if (p == end) {
        r->p = p;
        return TOK_EOF;
    }
    unsigned c = *p;
    switch (byte_class_of(c)) {
    case CLASS_PUNCT:
        r->p = p + 1;
        return (int)c;
    case CLASS_QUOTE:
        return scan_string(r, p);
    case CLASS_NUMBER:
        return scan_number(r, p);
    }
    if (is_alpha(c)) { /* the whole word, for a clearer message */
        const unsigned char *q = p;
        while (q < end && is_alpha(*q)) q++;
        if (lookahead_bad(r, q)) return fail_utf8(r, q);
        r->p = q;
        size_t n = (size_t)(q - p);
        int token = TOK_INVALID;
        if (n == 4 && memcmp(p, "true", 4) == 0) token = TOK_TRUE;
        else if (n == 5 && memcmp(p, "false", 5) == 0) token = TOK_FALSE;
        else if (n == 4 && memcmp(p, "null", 4) == 0) token = TOK_NULL;
        if (token != TOK_INVALID) after_value_token(r, q);
        return token;
    }
    if (c >= 0x80) { /* the whole character is the token */
        size_t n = utf8_length(p, end);
        if (!n) return fail_utf8(r, p);
        r->p = p + n;
        return TOK_INVALID;
    }
    r->p = p + 1;
    return TOK_INVALID;
}

/* ---- the parser ---- */

static struct json_level *level_at(struct json_decoder *d, size_t depth, struct json_level *inline_levels)
{
    if (depth < INLINE_LEVELS) return &inline_levels[depth];
    if (depth - INLINE_LEVELS >= d->levels_cap) {
        size_t cap = d->levels_cap ? d->levels_cap * 2 : 64;
        d->levels = rn_realloc(d->levels, cap * sizeof *d->levels);
        d->levels_cap = cap;
    }
    return &d->levels[depth - INLINE_LEVELS];
}

void json_decoder_init(struct json_decoder *d)
{
    memset(d, 0, sizeof *d);
    buf_init(&d->scratch);
    d->keys_ref = LUA_NOREF;
}

void json_decoder_keep_keys(struct json_decoder *d, lua_State *L)
{
    if (d->keys_ref != LUA_NOREF) return;
    lua_createtable(L, KEPT_KEYS, 0);
    d->keys_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    d->keys_L = L;
    d->keys = rn_calloc(KEPT_KEYS, sizeof *d->keys);
}

void json_decoder_free(struct json_decoder *d)
{
    buf_free(&d->scratch);
    free(d->levels);
    free(d->dropped);
    d->dropped = NULL;
    d->dropped_len = d->dropped_cap = 0;
    if (d->keys_ref != LUA_NOREF) luaL_unref(d->keys_L, LUA_REGISTRYINDEX, d->keys_ref);
    d->keys_ref = LUA_NOREF;
    free(d->keys);
    d->keys = NULL;
    d->levels = NULL;
    d->levels_cap = 0;
}

static int kind_of(int token)
{
    switch (token) {
    case '{': return JSON_KIND_OBJECT;
    case '[': return JSON_KIND_ARRAY;
    case TOK_STRING: return JSON_KIND_STRING;
    case TOK_INTEGER: case TOK_REAL: return JSON_KIND_NUMBER;
    case TOK_TRUE: case TOK_FALSE: return JSON_KIND_BOOLEAN;
    default: return JSON_KIND_NULL;
    }
}

int json_decode(struct json_decoder *d, lua_State *L, const char *text, size_t len, int extra_fields,
                struct json_syntax_error *error)
{
    struct reader r = {0};
    r.text = r.p = r.token = (const unsigned char *)text;
    r.end = r.text + len;
    r.d = d;
    r.error = error;
    d->dropped_len = 0;
    struct json_level inline_levels[INLINE_LEVELS];
    struct json_level *level = NULL; /* the innermost open array or object */
    size_t depth = 0;                /* open arrays and objects */
    int base = lua_gettop(L);
    int kind = -1;
    if (!lua_checkstack(L, 3)) {
        fail_token(&r, "out of Lua stack space");
        return -1;
    }
    int kept = 0; /* stack index of the kept keys (0: none) */
    if (d->keys_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, d->keys_ref);
        kept = lua_gettop(L);
    }
    int token = scan(&r);

value: /* token starts a value (jansson's parse_value) */
    if (depth >= JSON_MAX_DEPTH) {
        fail_token(&r, "maximum parsing depth reached");
        goto failed;
    }
    if (depth == 0) kind = kind_of(token);
    switch (token) {
    case TOK_STRING: lua_pushlstring(L, r.str, r.str_len); break;
    case TOK_INTEGER: lua_pushinteger(L, r.integer); break;
    case TOK_REAL: lua_pushnumber(L, r.real); break;
    case TOK_TRUE: lua_pushboolean(L, 1); break;
    case TOK_FALSE: lua_pushboolean(L, 0); break;
    case TOK_NULL:
        if (level && level->is_array) json_push_null(L);
        else lua_pushnil(L); /* a member set to nil is no member; nil at the top */
        break;
    case '{':
    case '[':
        /* each level holds its table, a key and a value on the stack */
        if (!lua_checkstack(L, 4)) {
            fail_token(&r, "nested too deeply for the Lua stack");
            goto failed;
        }
        if (token == '{') lua_createtable(L, 0, depth == 0 ? d->object_hint + extra_fields : 0);
        else lua_createtable(L, 0, 0);
        int close = token == '{' ? '}' : ']';
        int opened = token;
        token = scan(&r);
        if (token == close) break; /* empty */
        level = level_at(d, depth, inline_levels);
        level->count = 0;
        level->is_array = opened == '[';
        depth++;
        if (opened == '{') goto member;
        if (token == TOK_EOF) {
            fail_token(&r, "']' expected");
            goto failed;
        }
        goto value;
    case TOK_INVALID:
        fail_token(&r, "invalid token");
        goto failed;
    default:
        fail_token(&r, "unexpected token");
        goto failed;
    }

attach: /* a value is on top of the stack: into its array or object, or the end */
    if (depth == 0) goto done;
    level->count++;
    if (level->is_array) {
        lua_rawseti(L, -2, level->count);
        token = scan(&r);
        if (token == ',') {
            token = scan(&r);
            if (token == TOK_EOF) {
                fail_token(&r, "']' expected");
                goto failed;
            }
            goto value;
        }
        if (token != ']') {
            fail_token(&r, "']' expected");
            goto failed;
        }
    } else {
        lua_rawset(L, -3);
        token = scan(&r);
        if (token == ',') {
            token = scan(&r);
            goto member;
        }
        if (token != '}') {
            fail_token(&r, "'}' expected");
            goto failed;
        }
    }
    /* the array or object is complete: it is the value now */
    depth--;
    if (depth == 0 && !level->is_array) d->object_hint = (int)(level->count < 256 ? level->count : 256);
    level = depth ? level_at(d, depth - 1, inline_levels) : NULL;
    goto attach;

member: /* token should be a member's key */
    if (token != TOK_STRING) {
        fail_token(&r, "string or '}' expected");
        goto failed;
    }
    if (r.str_nul) {
        fail_token(&r, "NUL byte in object key not supported");
        goto failed;
    }
    if (kept && depth == 1 && level->count < KEPT_KEYS) {
        /* the same key as the last record's at this place: that string, as it is */
        struct json_kept_key *k = &d->keys[level->count];
        if (k->text && k->len == r.str_len && memcmp(k->text, r.str, r.str_len) == 0) {
            lua_rawgeti(L, kept, level->count + 1);
        } else {
            k->text = lua_pushlstring(L, r.str, r.str_len);
            k->len = r.str_len;
            lua_pushvalue(L, -1);
            lua_rawseti(L, kept, level->count + 1);
        }
    } else {
        lua_pushlstring(L, r.str, r.str_len);
    }
    token = scan(&r);
    if (token != ':') {
        fail_token(&r, "':' expected");
        goto failed;
    }
    token = scan(&r);
    goto value;

done:
    if (scan(&r) != TOK_EOF) {
        fail_token(&r, "end of file expected");
        goto failed;
    }
    if (r.failed) goto failed; /* a byte after the value did not decode */
    if (kept) lua_remove(L, kept);
    return kind;

failed:
    lua_settop(L, base);
    return -1;
}
