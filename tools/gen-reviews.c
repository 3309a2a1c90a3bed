/* gen-reviews: writes a synthetic review CSV in the Amazon Fine Food Reviews layout.
 *
 * The output is a pure function of --rows, --seed and --broken-every: an own PRNG (xoshiro256**
 * seeded by splitmix64), no clock, no rand(). Summaries are built from tools/lexicon.h so that
 * lexicon_rating() of a summary's word weights equals its Score for about 80% of the rows.
 *
 * Usage: gen-reviews --rows N [--seed S] [--broken-every K] > reviews.csv
 * Ids run 1,2,3... over every record written, broken ones included, so an Id names its record. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lexicon.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- PRNG: xoshiro256** seeded by splitmix64 ------------------------------------------ */

struct rng { uint64_t s[4]; };

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void rng_seed(struct rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(struct rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in [0, n); the multiply-shift bias is below 2^-32 for the small n used here. */
static uint32_t rng_below(struct rng *r, uint32_t n)
{
    return (uint32_t)(((rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

static double rng_unit(struct rng *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

static int rng_chance(struct rng *r, double p) { return rng_unit(r) < p; }

#define PICK(r, array) ((array)[rng_below((r), (uint32_t)ARRAY_LEN(array))])

/* Skewed pick in [0, n): index n*u^exponent, so low indices are popular (Zipf-like head). */
static uint32_t rng_skewed(struct rng *r, uint32_t n, double exponent)
{
    uint32_t i = (uint32_t)((double)n * pow(rng_unit(r), exponent));
    return i < n ? i : n - 1;
}

/* ---- bounded text buffers --------------------------------------------------------------- */

#define TEXT_CAP 8192

/* A fixed-size string; appends past the capacity are dropped (no content comes near it). */
struct text { size_t len; char data[TEXT_CAP]; };

static void text_clear(struct text *t) { t->len = 0; }

static void text_putn(struct text *t, const char *s, size_t n)
{
    if (n > TEXT_CAP - t->len) n = TEXT_CAP - t->len;
    memcpy(t->data + t->len, s, n);
    t->len += n;
}

static void text_put(struct text *t, const char *s) { text_putn(t, s, strlen(s)); }

static void text_putc(struct text *t, char c) { text_putn(t, &c, 1); }

/* ---- output: one big buffer written with write(2) --------------------------------------- */

#define OUT_CAP (1u << 20)

struct output { size_t len; int error; char data[OUT_CAP]; };

/* Writes the buffer to fd 1; on failure keeps the first errno in out->error. */
static void out_flush(struct output *out)
{
    size_t done = 0;
    while (done < out->len && !out->error) {
        ssize_t n = write(STDOUT_FILENO, out->data + done, out->len - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            out->error = errno;
        } else {
            done += (size_t)n;
        }
    }
    out->len = 0;
}

static void out_putn(struct output *out, const char *s, size_t n)
{
    if (n > OUT_CAP - out->len) out_flush(out);
    if (n > OUT_CAP) n = OUT_CAP; /* cannot happen: fields are bounded by TEXT_CAP */
    memcpy(out->data + out->len, s, n);
    out->len += n;
}

static void out_put(struct output *out, const char *s) { out_putn(out, s, strlen(s)); }

static void out_putc(struct output *out, char c)
{
    if (out->len == OUT_CAP) out_flush(out);
    out->data[out->len++] = c;
}

static void out_u64(struct output *out, uint64_t v)
{
    char digits[24];
    int n = 0;
    do { digits[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    char text[24];
    for (int i = 0; i < n; i++) text[i] = digits[n - 1 - i];
    out_putn(out, text, (size_t)n);
}

/* Writes one CSV field, quoted (RFC 4180) only when it holds a comma, quote, CR or LF. */
static void out_field(struct output *out, const char *s, size_t n)
{
    int quote = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == ',' || c == '"' || c == '\n' || c == '\r') { quote = 1; break; }
    }
    if (!quote) { out_putn(out, s, n); return; }
    out_putc(out, '"');
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"') {
            out_putn(out, s + start, i + 1 - start); /* includes the quote ... */
            out_putc(out, '"');                      /* ... and doubles it */
            start = i + 1;
        }
    }
    out_putn(out, s + start, n - start);
    out_putc(out, '"');
}

/* ---- word lists ------------------------------------------------------------------------- */

/* Lexicon words that read badly as an adjective before a noun get a phrase instead; every
 * phrase contains its word once and no other lexicon word. Words not listed are adjectives. */
static const struct { const char *word; const char *phrase; } lexicon_phrases[] = {
    {"worst", "worst ever"},          {"refund", "want a refund"},
    {"waste", "waste of money"},      {"garbage", "total garbage"},
    {"disappointed", "very disappointed"}, {"broken", "arrived broken"},
    {"meh", "meh"},                   {"recommend", "highly recommend"},
    {"enjoyed", "we enjoyed it"},     {"fast", "fast shipping"},
    {"best", "best ever"},            {"love", "love it"},
};

/* Neutral filler: no lexicon word may appear here (tests check the summaries' agreement). */
static const char *const products[] = {
    "coffee", "dog food", "tea", "chips", "cookies", "taffy", "hot sauce", "peanut butter",
    "green tea", "popcorn", "cereal", "candy", "dog treats", "olive oil", "beef jerky",
    "cat food", "baby food", "energy bars", "espresso", "hot cocoa", "licorice", "pasta",
    "gummy bears", "oatmeal", "honey", "granola", "k-cups", "crackers", "almonds", "seasoning",
    "coconut water", "chai", "mints", "pretzels", "maple syrup", "rice", "noodles", "salsa",
};
static const char *const determiners[] = { "", "", "", "these", "this", "the", "my", "our" };
static const char *const intensifiers[] = { "very", "really", "so", "pretty", "just", "too" };

static const char *const first_names[] = {
    "Natalia", "Michael", "Karl", "David", "Linda", "James", "Mary", "Robert", "Patricia",
    "John", "Jennifer", "William", "Elizabeth", "Richard", "Susan", "Thomas", "Jessica",
    "Charles", "Sarah", "Daniel", "Karen", "Matthew", "Nancy", "Anthony", "Lisa", "Mark",
    "Betty", "Paul", "Sandra", "Steven", "Ashley", "Kevin", "Donna", "Brian", "Emily",
    "José", "Renée", "Zoë", "Jürgen", "François",
};
static const char *const last_names[] = {
    "Corres", "Bigham", "Sullivan", "Smith", "Johnson", "Williams", "Brown", "Jones",
    "Garcia", "Miller", "Davis", "Rodriguez", "Martinez", "Hernandez", "Lopez", "Wilson",
    "Anderson", "Taylor", "Moore", "Jackson", "Martin", "Lee", "Thompson", "White",
    "Harris", "Clark", "Lewis", "Walker", "Young", "Allen", "King", "Wright", "Scott",
    "Müller", "Nuñez", "O'Brien",
};
static const char *const handles[] = {
    "dll pa", "Twoapennything", "Bigbird", "cheap ninja", "coffee lover", "Foodie Mom",
    "kitty kat", "The Tea Guy", "gourmand", "Snack Queen", "Amazon Customer", "hungry hippo",
    "M. Wassir", "BookWorm", "dog mom", "Chef B", "granola girl", "Mr. Picky",
};

/* Sentences for the review body: '#' becomes a product, '@' an adjective of the review's
 * polarity. The odd quote, comma and apostrophe is there on purpose. */
static const char *const opinion_sentences[] = {
    "This # is @.",
    "The # tastes @, and the price was right.",
    "I have tried many brands of #, and this one is @.",
    "My husband says it is @.",
    "Arrived quickly; the # was @.",
    "Honestly, @ # for the money.",
    "The texture is @ and the smell is @.",
    "We keep a box in the pantry, it's @.",
    "They call it \"gourmet\", but it is @.",
    "My kids said it was \"@\".",
    "Compared to the store brand, this one is @.",
    "@ flavor, @ aroma.",
};
static const char *const plain_sentences[] = {
    "I bought this for my dog.",
    "We ordered two cases from Amazon.",
    "It comes in a 12-pack.",
    "The bag is resealable.",
    "Ingredients: sugar, salt, corn syrup, and natural flavors.",
    "I drink it every morning with milk.",
    "Shipping took about a week.",
    "The label says \"no artificial colors\".",
    "Compared to the grocery store, it's cheaper by the case.",
    "This is my third order of #.",
    "I use it in recipes, mostly baking.",
    "The expiration date was 6 months out.",
};
static const char *const special_sentences[] = {
    "They call it &quot;organic&quot; but I'm not sure.",
    "Salt &amp; vinegar is still my favorite.",
    "Found it cheaper at Barnes &amp; Noble's café.",
    "Goes well with crème brûlée.",
    "Better than Häagen-Dazs™, if you ask me.",
    "Try it with jalapeño, trust me.",
    "Naïve me thought it was sugar free.",
    "The box said \"Made in the U.S.A.\", the bag said otherwise.",
};

static const char *const score_words[] = { "zero", "one", "two", "three", "four", "five" };

/* ---- generator -------------------------------------------------------------------------- */

enum polarity { NEGATIVE, NEUTRAL, POSITIVE };

/* Indices into lexicon_words, split by polarity and by form (adjective or phrase). */
struct word_pool { size_t count; size_t index[64]; };

struct generator {
    struct rng rng;
    uint64_t seed;
    uint32_t product_pool, user_pool;
    struct word_pool words[3];      /* every lexicon word, by polarity */
    struct word_pool adjectives[3]; /* only the ones without a phrase */
};

struct review {
    char product_id[11], user_id[15];
    struct text profile, summary, body;
    unsigned helpful_yes, helpful_total, score;
    uint64_t time;
};

static enum polarity polarity_of(int weight)
{
    return weight > 0 ? POSITIVE : weight < 0 ? NEGATIVE : NEUTRAL;
}

static const char *phrase_of(const char *word)
{
    for (size_t i = 0; i < ARRAY_LEN(lexicon_phrases); i++)
        if (strcmp(lexicon_phrases[i].word, word) == 0) return lexicon_phrases[i].phrase;
    return NULL;
}

static void pool_add(struct word_pool *pool, size_t index)
{
    if (pool->count < ARRAY_LEN(pool->index)) pool->index[pool->count++] = index;
}

static void generator_init(struct generator *g, uint64_t seed, uint64_t rows)
{
    memset(g, 0, sizeof *g);
    g->seed = seed;
    rng_seed(&g->rng, seed);
    g->product_pool = rows / 20 > 0 ? (uint32_t)(rows / 20 < UINT32_MAX ? rows / 20 : UINT32_MAX) : 1;
    g->user_pool = rows / 2 > 0 ? (uint32_t)(rows / 2 < UINT32_MAX ? rows / 2 : UINT32_MAX) : 1;
    for (size_t i = 0; i < lexicon_count; i++) {
        enum polarity p = polarity_of(lexicon_words[i].weight);
        pool_add(&g->words[p], i);
        if (!phrase_of(lexicon_words[i].word)) pool_add(&g->adjectives[p], i);
    }
}

/* A stable per-entity hash, so a product or user keeps its id and name across the file. */
static uint64_t entity_hash(const struct generator *g, uint64_t tag, uint64_t index)
{
    uint64_t state = g->seed ^ (tag * 0xD1B54A32D192ED03ull) ^ (index * 0x9E3779B97F4A7C15ull);
    splitmix64(&state);
    return splitmix64(&state);
}

/* Writes prefix + upper-case alphanumerics up to len characters, then a NUL. */
static void make_id(char *out, size_t len, const char *prefix, uint64_t hash)
{
    static const char alnum[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    size_t p = strlen(prefix);
    memcpy(out, prefix, p);
    for (size_t i = p; i < len; i++) out[i] = alnum[splitmix64(&hash) % 36];
    out[len] = '\0';
}

static void make_profile_name(struct text *t, uint64_t hash)
{
    struct rng r;
    rng_seed(&r, hash);
    const char *first = PICK(&r, first_names), *last = PICK(&r, last_names);
    uint32_t kind = rng_below(&r, 100);
    text_clear(t);
    if (kind < 2) return; /* empty, as in the real file */
    if (kind < 8) {       /* Natalia Corres "Natalia Corres" */
        text_put(t, first); text_putc(t, ' '); text_put(t, last);
        text_put(t, " \""); text_put(t, first); text_putc(t, ' '); text_put(t, last);
        text_putc(t, '"');
    } else if (kind < 14) { /* Corres, Natalia */
        text_put(t, last); text_put(t, ", "); text_put(t, first);
    } else if (kind < 20) { /* Michael D. Bigham "M. Wassir" */
        text_put(t, first); text_putc(t, ' '); text_putc(t, (char)('A' + rng_below(&r, 26)));
        text_put(t, ". "); text_put(t, last);
        text_put(t, " \""); text_put(t, PICK(&r, handles)); text_putc(t, '"');
    } else if (kind < 32) {
        text_put(t, PICK(&r, handles));
    } else if (kind < 42) {
        text_put(t, first); text_putc(t, ' '); text_putc(t, (char)('A' + rng_below(&r, 26)));
        text_put(t, ". "); text_put(t, last);
    } else if (kind < 50) {
        text_put(t, first);
    } else {
        text_put(t, first); text_putc(t, ' '); text_put(t, last);
    }
}

static unsigned pick_score(struct rng *r)
{
    double u = rng_unit(r); /* about 9% 1, 5% 2, 8% 3, 14% 4, 64% 5 */
    return u < 0.09 ? 1 : u < 0.14 ? 2 : u < 0.22 ? 3 : u < 0.36 ? 4 : 5;
}

/* The rating a summary is written to express: the Score mostly, else off by one or more. */
static unsigned summary_target(struct rng *r, unsigned score)
{
    if (!rng_chance(r, 0.18)) return score;
    if (rng_chance(r, 0.7)) {
        if (score == 1) return 2;
        if (score == 5) return 4;
        return rng_chance(r, 0.5) ? score - 1 : score + 1;
    }
    unsigned other = 1 + rng_below(r, 4); /* 1..4, skip the score itself */
    return other >= score ? other + 1 : other;
}

enum casing { CASE_LOWER, CASE_SENTENCE, CASE_TITLE, CASE_UPPER };

/* Appends space-separated words of s to t, re-cased; *first tracks the summary's first word. */
static void put_words(struct text *t, const char *s, enum casing casing, int *first)
{
    int word_start = 1;
    if (!*first && *s) text_putc(t, ' ');
    for (; *s; s++) {
        char c = *s;
        if (c >= 'a' && c <= 'z') {
            int upper = casing == CASE_UPPER || (casing == CASE_TITLE && word_start) ||
                        (casing == CASE_SENTENCE && *first && word_start);
            if (upper) c = (char)(c - 'a' + 'A');
        }
        if (c == ' ') { word_start = 1; *first = 0; } else if (c != '-') word_start = 0;
        text_putc(t, c);
    }
    if (t->len) *first = 0;
}

static size_t count_words(const struct text *t)
{
    size_t words = 0;
    int in_word = 0;
    for (size_t i = 0; i < t->len; i++) {
        char c = t->data[i];
        int letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (letter && !in_word) words++;
        in_word = letter || (in_word && c != ' ');
    }
    return words;
}

/* Chooses 0..3 lexicon words whose weight sum rates as `target`; returns how many. */
static size_t pick_sentiment(struct generator *g, unsigned target, size_t *chosen)
{
    struct rng *r = &g->rng;
    for (int attempt = 0; attempt < 64; attempt++) {
        size_t k = 0;
        enum polarity p[3];
        switch (target) {
        case 5: k = 2 + rng_below(r, 2); p[0] = p[1] = p[2] = POSITIVE; break;
        case 4: k = 1 + rng_below(r, 2); p[0] = p[1] = POSITIVE; break;
        case 3:
            if (rng_chance(r, 0.15)) { k = 2; p[0] = POSITIVE; p[1] = NEGATIVE; }
            else { k = rng_below(r, 3); p[0] = p[1] = NEUTRAL; }
            break;
        case 2: k = 1 + rng_below(r, 2); p[0] = p[1] = NEGATIVE; break;
        default: k = 2 + rng_below(r, 2); p[0] = p[1] = p[2] = NEGATIVE; break;
        }
        int sum = 0, ok = 1;
        for (size_t i = 0; i < k; i++) {
            const struct word_pool *pool = &g->words[p[i]];
            if (!pool->count) { ok = 0; break; }
            chosen[i] = pool->index[rng_below(r, (uint32_t)pool->count)];
            for (size_t j = 0; j < i; j++) if (chosen[j] == chosen[i]) ok = 0;
            sum += lexicon_words[chosen[i]].weight;
        }
        if (ok && lexicon_rating(sum) == (int)target) return k;
    }
    return 0; /* unreachable with the shipped lexicon; an empty choice rates 3 */
}

/* Writes a 2..8 word summary whose lexicon rating is the Score about 80% of the time:
 * "[det] [intensifier] adjective [and|but adjective] product [-|,] [phrase [and phrase]]". */
static void make_summary(struct generator *g, unsigned score, struct text *t)
{
    static const char *const neutral_tails[] = { "as described", "as expected", "for the price",
                                                 "no surprises", "for my dog" };
    struct rng *r = &g->rng;
    text_clear(t);
    if (rng_chance(r, 0.005)) return;
    unsigned target = summary_target(r, score);
    enum casing casing = rng_chance(r, 0.02) ? CASE_UPPER : rng_chance(r, 0.15) ? CASE_LOWER :
                         rng_chance(r, 0.5) ? CASE_TITLE : CASE_SENTENCE;
    for (int attempt = 0; attempt < 16; attempt++) {
        size_t chosen[3], k = pick_sentiment(g, target, chosen);
        size_t adjectives[3], phrases[3], adjective_count = 0, phrase_count = 0;
        for (size_t i = 0; i < k; i++) {
            if (phrase_of(lexicon_words[chosen[i]].word)) phrases[phrase_count++] = chosen[i];
            else adjectives[adjective_count++] = chosen[i];
        }
        int first = 1;
        text_clear(t);
        if (adjective_count || !phrase_count || rng_chance(r, 0.5)) {
            put_words(t, PICK(r, determiners), casing, &first);
            if (adjective_count && rng_chance(r, 0.2)) put_words(t, PICK(r, intensifiers), casing, &first);
            for (size_t i = 0; i < adjective_count; i++) {
                if (i) {
                    int mixed = polarity_of(lexicon_words[adjectives[i]].weight) !=
                                polarity_of(lexicon_words[adjectives[i - 1]].weight);
                    if (mixed) put_words(t, "but", casing, &first);
                    else if (rng_chance(r, 0.5)) put_words(t, "and", casing, &first);
                }
                put_words(t, lexicon_words[adjectives[i]].word, casing, &first);
            }
            put_words(t, PICK(r, products), casing, &first);
        }
        for (size_t i = 0; i < phrase_count; i++) {
            if (i) put_words(t, "and", casing, &first);
            else if (t->len) text_put(t, rng_chance(r, 0.7) ? " -" : ",");
            put_words(t, phrase_of(lexicon_words[phrases[i]].word), casing, &first);
        }
        if (count_words(t) < 2) put_words(t, PICK(r, neutral_tails), casing, &first);
        size_t words = count_words(t);
        if (words >= 2 && words <= 8) break;
    }
    double u = rng_unit(r);
    if (u < 0.15) text_putc(t, '!');
    else if (u < 0.18) text_put(t, "!!!");
    else if (u < 0.23) text_putc(t, '.');
}

/* Expands a sentence template ('#' product, '@' adjective of the given polarity). */
static void put_sentence(struct generator *g, struct text *t, const char *template, enum polarity p)
{
    struct rng *r = &g->rng;
    int at_start = 1;
    for (const char *s = template; *s; s++) {
        if (*s == '#') {
            text_put(t, PICK(r, products));
        } else if (*s == '@') {
            const struct word_pool *pool = &g->adjectives[p];
            const char *word = pool->count ? lexicon_words[pool->index[rng_below(r, (uint32_t)pool->count)]].word : "ok";
            size_t start = t->len;
            text_put(t, word);
            if (at_start && t->len > start && t->data[start] >= 'a' && t->data[start] <= 'z')
                t->data[start] = (char)(t->data[start] - 'a' + 'A');
        } else {
            text_putc(t, *s);
        }
        at_start = 0;
    }
}

static void make_body(struct generator *g, unsigned score, struct text *t)
{
    static const unsigned sentence_weights[] = { 0, 25, 25, 20, 15, 10, 5 };
    struct rng *r = &g->rng;
    text_clear(t);
    unsigned u = rng_below(r, 100), sentences = 1;
    for (unsigned acc = 0; sentences < ARRAY_LEN(sentence_weights); sentences++) {
        acc += sentence_weights[sentences];
        if (u < acc) break;
    }
    if (sentences >= ARRAY_LEN(sentence_weights)) sentences = ARRAY_LEN(sentence_weights) - 1;
    enum polarity review = score >= 4 ? POSITIVE : score == 3 ? NEUTRAL : NEGATIVE;
    int breaks = rng_chance(r, 0.12), newlines = rng_chance(r, 0.05);
    unsigned special_at = rng_chance(r, 0.08) ? rng_below(r, sentences) : sentences;
    for (unsigned i = 0; i < sentences; i++) {
        if (i) {
            if (breaks && rng_chance(r, 0.5)) text_put(t, "<br /><br />");
            else if (newlines && rng_chance(r, 0.5)) text_put(t, rng_chance(r, 0.5) ? "\n" : "\n\n");
            else text_putc(t, ' ');
        }
        if (i == special_at) {
            text_put(t, PICK(r, special_sentences));
        } else if (rng_chance(r, 0.55)) {
            enum polarity p = rng_chance(r, 0.9) ? review : (enum polarity)rng_below(r, 3);
            put_sentence(g, t, PICK(r, opinion_sentences), p);
        } else {
            put_sentence(g, t, PICK(r, plain_sentences), review);
        }
    }
}

static void review_make(struct generator *g, struct review *rv)
{
    struct rng *r = &g->rng;
    uint32_t product = rng_skewed(r, g->product_pool, 1.6);
    uint32_t user = rng_skewed(r, g->user_pool, 1.3);
    uint64_t user_hash = entity_hash(g, 2, user);
    make_id(rv->product_id, 10, "B00", entity_hash(g, 1, product));
    make_id(rv->user_id, 14, "A", user_hash);
    make_profile_name(&rv->profile, user_hash);
    if (rng_chance(r, 0.47)) {
        rv->helpful_total = rv->helpful_yes = 0;
    } else {
        rv->helpful_total = 1 + (unsigned)(-log(1.0 - rng_unit(r)) * 3.0);
        rv->helpful_yes = rng_chance(r, 0.5) ? rv->helpful_total : rng_below(r, rv->helpful_total + 1);
    }
    rv->score = pick_score(r);
    /* 2002-01-01 .. 2012-12-31 UTC, whole days as in the real file, later years busier. */
    rv->time = 1009843200ull + 86400ull * (uint64_t)(4018.0 * sqrt(rng_unit(r)));
    if (rv->time > 1356912000ull) rv->time = 1356912000ull;
    make_summary(g, rv->score, &rv->summary);
    make_body(g, rv->score, &rv->body);
}

enum row_kind { ROW_GOOD, ROW_TOO_FEW, ROW_TOO_MANY, ROW_BAD_UTF8, ROW_BAD_TYPE };

/* Writes one record; a broken kind damages it in one way (see --broken-every). */
static void review_write(struct output *out, uint64_t id, struct review *rv, enum row_kind kind)
{
    out_u64(out, id); out_putc(out, ',');
    out_put(out, rv->product_id); out_putc(out, ',');
    out_put(out, rv->user_id); out_putc(out, ',');
    out_field(out, rv->profile.data, rv->profile.len); out_putc(out, ',');
    out_u64(out, rv->helpful_yes); out_putc(out, ',');
    out_u64(out, rv->helpful_total); out_putc(out, ',');
    if (kind == ROW_BAD_TYPE) out_put(out, score_words[rv->score]);
    else out_u64(out, rv->score);
    if (kind == ROW_TOO_FEW) { out_putc(out, '\n'); return; } /* 7 fields: cut after Score */
    out_putc(out, ',');
    out_u64(out, rv->time); out_putc(out, ',');
    if (kind == ROW_BAD_UTF8) text_put(&rv->summary, " \xff\xfe"); /* never valid UTF-8 */
    out_field(out, rv->summary.data, rv->summary.len);
    out_putc(out, ',');
    out_field(out, rv->body.data, rv->body.len);
    if (kind == ROW_TOO_MANY) out_put(out, ",stray field");
    out_putc(out, '\n');
}

static int parse_u64(const char *s, uint64_t *value)
{
    if (!s || !*s || *s == '-') return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) return -1;
    *value = v;
    return 0;
}

static void usage(FILE *f)
{
    fputs("usage: gen-reviews --rows N [--seed S] [--broken-every K] > reviews.csv\n"
          "  --rows N          good data rows to write (Ids count every record)\n"
          "  --seed S          PRNG seed (default 42); same seed, same bytes\n"
          "  --broken-every K  after every K good rows add one broken row, cycling:\n"
          "                    too few fields, too many fields, invalid UTF-8, Score not integer\n", f);
}

static struct output out;
static struct generator generator;
static struct review review;

int main(int argc, char **argv)
{
    uint64_t rows = 0, seed = 42, broken_every = 0;
    int have_rows = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        uint64_t *target = NULL;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) { usage(stdout); return 0; }
        if (strcmp(arg, "--rows") == 0) { target = &rows; have_rows = 1; }
        else if (strcmp(arg, "--seed") == 0) target = &seed;
        else if (strcmp(arg, "--broken-every") == 0) target = &broken_every;
        if (!target) { fprintf(stderr, "gen-reviews: unknown option '%s'\n", arg); usage(stderr); return 2; }
        if (i + 1 >= argc || parse_u64(argv[i + 1], target) != 0) {
            fprintf(stderr, "gen-reviews: %s needs a non-negative integer\n", arg);
            return 2;
        }
        i++;
    }
    if (!have_rows) { fputs("gen-reviews: --rows is required\n", stderr); usage(stderr); return 2; }

    generator_init(&generator, seed, rows);
    out_put(&out, "Id,ProductId,UserId,ProfileName,HelpfulnessNumerator,"
                  "HelpfulnessDenominator,Score,Time,Summary,Text\n");
    static const enum row_kind broken_cycle[] = { ROW_TOO_FEW, ROW_TOO_MANY, ROW_BAD_UTF8, ROW_BAD_TYPE };
    uint64_t id = 0, broken = 0, width = 0, utf8 = 0, type = 0;
    for (uint64_t good = 1; good <= rows && !out.error; good++) {
        review_make(&generator, &review);
        review_write(&out, ++id, &review, ROW_GOOD);
        if (broken_every && good % broken_every == 0) {
            enum row_kind kind = broken_cycle[broken % ARRAY_LEN(broken_cycle)];
            review_make(&generator, &review);
            review_write(&out, ++id, &review, kind);
            broken++;
            if (kind == ROW_TOO_FEW || kind == ROW_TOO_MANY) width++;
            else if (kind == ROW_BAD_UTF8) utf8++;
            else type++;
        }
    }
    out_flush(&out);
    if (out.error) {
        fprintf(stderr, "gen-reviews: writing stdout: %s\n", strerror(out.error));
        return 1;
    }
    fprintf(stderr, "gen-reviews: rows=%llu broken=%llu (width=%llu utf8=%llu type=%llu)\n",
            (unsigned long long)rows, (unsigned long long)broken, (unsigned long long)width,
            (unsigned long long)utf8, (unsigned long long)type);
    return 0;
}
