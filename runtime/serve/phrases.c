/* phrases.c: words and phrases of a text (see phrases.h). One pass over the text, decoding
 * UTF-8 and character references into code points, each classed as part of a word, an
 * apostrophe, a separator, or a separator that also ends the phrase. */
#include "serve/phrases.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Sorted (C locale) so phrases_stop_word can search it; the unit test checks the order. */
const char *const phrases_stop_words[] = {
    "a", "about", "above", "after", "again", "all", "also", "am", "an", "and", "any", "are", "as",
    "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by",
    "can", "could", "did", "do", "does", "doing", "down", "during", "each", "few", "for", "from",
    "further", "get", "got", "had", "has", "have", "having", "he", "her", "here", "hers",
    "herself", "hes", "him", "himself", "his", "how", "i", "if", "im", "in", "into", "is", "it",
    "its", "itself", "ive", "just", "lets", "me", "more", "most", "my", "myself", "of", "off",
    "on", "once", "one", "only", "or", "other", "our", "ours", "ourselves", "out", "over", "own",
    "s", "same", "she", "shes", "should", "so", "some", "such", "t", "than", "that", "thats",
    "the", "their", "theirs", "them", "themselves", "then", "there", "theres", "these", "they",
    "theyre", "theyve", "this", "those", "through", "to", "too", "under", "until", "up", "very",
    "was", "we", "were", "weve", "what", "whats", "when", "where", "which", "while", "who", "whom",
    "why", "will", "with", "would", "you", "youll", "your", "youre", "yours", "yourself",
    "yourselves", "youve", NULL,
};

int phrases_stop_word(const char *w, size_t n)
{
    size_t lo = 0, hi = sizeof phrases_stop_words / sizeof phrases_stop_words[0] - 1;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const char *s = phrases_stop_words[mid];
        int c = strncmp(s, w, n);
        if (c == 0) c = s[n] ? 1 : 0; /* s is longer than w */
        if (c == 0) return 1;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

enum char_class { C_WORD, C_APOSTROPHE, C_SPACE, C_BREAK };

#define NOT_A_CHAR 0xFFFFFFFFu

/* The code point at s[0..n) (n >= 1) and its length in *len; NOT_A_CHAR (length 1) for a byte
 * that does not start a valid UTF-8 sequence. */
static uint32_t decode_utf8(const unsigned char *s, size_t n, size_t *len)
{
    *len = 1;
    if (s[0] < 0x80) return s[0];
    size_t need;
    uint32_t cp, min;
    if ((s[0] & 0xE0) == 0xC0) { need = 2; cp = s[0] & 0x1F; min = 0x80; }
    else if ((s[0] & 0xF0) == 0xE0) { need = 3; cp = s[0] & 0x0F; min = 0x800; }
    else if ((s[0] & 0xF8) == 0xF0) { need = 4; cp = s[0] & 0x07; min = 0x10000; }
    else return NOT_A_CHAR;
    if (n < need) return NOT_A_CHAR;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xC0) != 0x80) return NOT_A_CHAR;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return NOT_A_CHAR;
    *len = need;
    return cp;
}

/* A character reference at s[0] == '&': its code point and length, or 0 when s does not start
 * one (then '&' is read as itself). Named ones: the few that reviews hold; others read as a
 * space. */
static uint32_t decode_reference(const char *s, size_t n, size_t *len)
{
    size_t end = 1;
    while (end < n && end < 12 && (s[end] == '#' || (s[end] >= '0' && s[end] <= '9') ||
                                   (s[end] >= 'a' && s[end] <= 'z') || (s[end] >= 'A' && s[end] <= 'Z')))
        end++;
    if (end == 1 || end >= n || s[end] != ';') return 0;
    *len = end + 1;
    const char *name = s + 1;
    size_t k = end - 1;
    if (name[0] == '#') {
        char digits[12];
        memcpy(digits, name + 1, k - 1);
        digits[k - 1] = '\0';
        int hex = digits[0] == 'x' || digits[0] == 'X';
        char *stop;
        unsigned long cp = strtoul(digits + hex, &stop, hex ? 16 : 10);
        if (*stop || stop == digits + hex || cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return ' ';
        return (uint32_t)cp;
    }
    static const struct { const char *name; uint32_t cp; } named[] = {
        {"amp", '&'}, {"quot", '"'}, {"apos", '\''}, {"lt", '<'}, {"gt", '>'}, {"nbsp", 0xA0},
        {"rsquo", 0x2019}, {"lsquo", 0x2018}, {"ldquo", 0x201C}, {"rdquo", 0x201D},
        {"hellip", 0x2026}, {"mdash", 0x2014}, {"ndash", 0x2013},
    };
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++)
        if (strlen(named[i].name) == k && memcmp(named[i].name, name, k) == 0) return named[i].cp;
    return ' ';
}

static enum char_class classify(uint32_t cp)
{
    if (cp < 0x80) {
        if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= '0' && cp <= '9')) return C_WORD;
        if (cp == '\'') return C_APOSTROPHE;
        if (strchr(".,;:!?()[]{}\"<>\n\r", (int)cp) && cp != 0) return C_BREAK;
        return C_SPACE;
    }
    if (cp == NOT_A_CHAR) return C_SPACE;
    if (cp == 0x2018 || cp == 0x2019 || cp == 0x02BC) return C_APOSTROPHE;
    if (cp == 0xAA || cp == 0xB2 || cp == 0xB3 || cp == 0xB5 || cp == 0xB9 || cp == 0xBA) return C_WORD;
    if (cp == 0xA1 || cp == 0xAB || cp == 0xB7 || cp == 0xBB || cp == 0xBF) return C_BREAK; /* ¡ « · » ¿ */
    if (cp <= 0xBF || cp == 0xD7 || cp == 0xF7) return C_SPACE;  /* nbsp, currency, © ° ... × ÷ */
    if (cp >= 0x2000 && cp <= 0x200F) return C_SPACE;            /* spaces, zero-width joiners */
    if (cp == 0x2010 || cp == 0x2011) return C_SPACE;            /* hyphens */
    if (cp >= 0x2012 && cp <= 0x205E) return C_BREAK;            /* dashes, quotes, ellipsis, ... */
    if (cp >= 0x2060 && cp <= 0x206F) return C_SPACE;
    if (cp >= 0x3000 && cp <= 0x303F) return cp == 0x3000 ? C_SPACE : C_BREAK; /* CJK marks */
    if (cp >= 0xFF01 && cp <= 0xFF0F) return C_BREAK;            /* fullwidth ! " # ... / */
    if (cp >= 0xFF1A && cp <= 0xFF1F) return C_BREAK;            /* fullwidth : ; < = > ? */
    if (cp >= 0x2190 && cp <= 0x2BFF) return C_SPACE;            /* arrows, math, shapes, dingbats */
    if (cp >= 0xFE00 && cp <= 0xFE0F) return C_SPACE;            /* variation selectors */
    if (cp == 0xFEFF) return C_SPACE;                            /* byte order mark */
    if (cp >= 0x1F000 && cp <= 0x1FAFF) return C_SPACE;          /* emoji and pictographs */
    return C_WORD;
}

static uint32_t lowercase(uint32_t cp)
{
    if (cp >= 'A' && cp <= 'Z') return cp + 32;
    if (cp < 0xC0) return cp;
    if (cp <= 0xDE) return cp == 0xD7 ? cp : cp + 32;
    if (cp >= 0x100 && cp <= 0x17F) {
        if (cp == 0x130) return 'i';
        if (cp == 0x178) return 0xFF;
        if ((cp >= 0x100 && cp <= 0x137) || (cp >= 0x14A && cp <= 0x177)) return cp | 1;
        if ((cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17E)) return (cp & 1) ? cp + 1 : cp;
        return cp;
    }
    if (cp >= 0x391 && cp <= 0x3A9 && cp != 0x3A2) return cp + 32;
    if (cp == 0x386) return 0x3AC;
    if (cp >= 0x388 && cp <= 0x38A) return cp + 37;
    if (cp == 0x38C) return 0x3CC;
    if (cp == 0x38E || cp == 0x38F) return cp + 63;
    if (cp >= 0x410 && cp <= 0x42F) return cp + 32;
    if (cp >= 0x400 && cp <= 0x40F) return cp + 80;
    return cp;
}

static size_t encode_utf8(uint32_t cp, char out[4])
{
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xC0 | cp >> 6); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12); out[1] = (char)(0x80 | (cp >> 6 & 0x3F)); out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18); out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F)); out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* The word being read and the (up to) two words before it in the same phrase. */
struct reader {
    char word[PHRASE_WORD_MAX + 4];
    size_t word_len;
    int too_long;
    char prev[2][PHRASE_WORD_MAX]; /* prev[1]: the word just before; prev[0]: the one before that */
    size_t prev_len[2];
    int run;                       /* words of the current phrase kept in prev (0..2) */
    phrase_fn fn;
    void *ctx;
};

static void end_word(struct reader *r)
{
    if (r->word_len == 0 && !r->too_long) return;
    if (r->too_long || phrases_stop_word(r->word, r->word_len)) {
        r->run = 0;
        r->word_len = 0;
        r->too_long = 0;
        return;
    }
    char phrase[PHRASE_MAX + 1];
    memcpy(phrase, r->word, r->word_len);
    phrase[r->word_len] = '\0';
    r->fn(r->ctx, phrase, r->word_len, 1);
    if (r->run > 0) {
        /* phrase = [prev[0] " "] prev[1] " " word; the two-word phrase starts at `two` */
        size_t n = 0, two = 0;
        if (r->run == 2) {
            memcpy(phrase, r->prev[0], r->prev_len[0]);
            n = r->prev_len[0];
            phrase[n++] = ' ';
            two = n;
        }
        memcpy(phrase + n, r->prev[1], r->prev_len[1]);
        n += r->prev_len[1];
        phrase[n++] = ' ';
        memcpy(phrase + n, r->word, r->word_len);
        n += r->word_len;
        phrase[n] = '\0';
        r->fn(r->ctx, phrase + two, n - two, 2);
        if (r->run == 2) r->fn(r->ctx, phrase, n, 3);
    }
    memcpy(r->prev[0], r->prev[1], r->prev_len[1]);
    r->prev_len[0] = r->prev_len[1];
    memcpy(r->prev[1], r->word, r->word_len);
    r->prev_len[1] = r->word_len;
    if (r->run < 2) r->run++;
    r->word_len = 0;
}

void phrases_each(const char *text, size_t n, phrase_fn fn, void *ctx)
{
    struct reader r;
    r.word_len = 0;
    r.too_long = 0;
    r.run = 0;
    r.prev_len[0] = r.prev_len[1] = 0;
    r.fn = fn;
    r.ctx = ctx;
    int apostrophe = 0; /* an apostrophe right after a word: dropped if a letter follows */
    size_t i = 0;
    while (i < n) {
        size_t len;
        uint32_t cp = 0;
        if (text[i] == '&') cp = decode_reference(text + i, n - i, &len);
        if (!cp) cp = decode_utf8((const unsigned char *)text + i, n - i, &len);
        i += len;
        enum char_class c = classify(cp);
        if (c == C_WORD) {
            apostrophe = 0;
            char bytes[4];
            size_t k = encode_utf8(lowercase(cp), bytes);
            if (r.word_len + k > PHRASE_WORD_MAX) r.too_long = 1;
            else { memcpy(r.word + r.word_len, bytes, k); r.word_len += k; }
            continue;
        }
        if (c == C_APOSTROPHE && (r.word_len || r.too_long) && !apostrophe) {
            apostrophe = 1;
            continue;
        }
        apostrophe = 0;
        end_word(&r);
        if (c == C_BREAK) r.run = 0;
    }
    end_word(&r);
}
