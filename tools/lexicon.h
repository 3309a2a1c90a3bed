/* lexicon.h: the sentiment word list shared by tools/gen-reviews and tools/model-server.
 *
 * The generator writes review summaries from these words so that a review's Score and the
 * words in it agree most of the time; the model server rates a text by summing the weights
 * of the words it contains. lexicon_rating() is the one place the mapping from a weight sum
 * to a 1..5 rating lives, so both tools stay in step. Header-only: static data and one
 * static inline function. */
#ifndef RUNNEL_LEXICON_H
#define RUNNEL_LEXICON_H

#include <stddef.h>

struct lexicon_word { const char *word; int weight; };

/* Weights -2..+2; words are lower case, matched whole-word and case-insensitively. */
static const struct lexicon_word lexicon_words[] = {
    {"awful", -2}, {"terrible", -2}, {"horrible", -2}, {"disgusting", -2}, {"worst", -2},
    {"inedible", -2}, {"rancid", -2}, {"refund", -2}, {"waste", -2}, {"garbage", -2},
    {"bad", -1}, {"stale", -1}, {"bland", -1}, {"disappointing", -1}, {"disappointed", -1},
    {"overpriced", -1}, {"weak", -1}, {"broken", -1}, {"bitter", -1}, {"meh", -1},
    {"okay", 0}, {"average", 0}, {"fine", 0}, {"decent", 0}, {"ordinary", 0},
    {"good", 1}, {"tasty", 1}, {"nice", 1}, {"fresh", 1}, {"solid", 1},
    {"pleasant", 1}, {"recommend", 1}, {"enjoyed", 1}, {"yummy", 1}, {"fast", 1},
    {"excellent", 2}, {"delicious", 2}, {"amazing", 2}, {"perfect", 2}, {"best", 2},
    {"love", 2}, {"wonderful", 2}, {"fantastic", 2}, {"outstanding", 2}, {"superb", 2},
};
static const size_t lexicon_count = sizeof lexicon_words / sizeof lexicon_words[0];

/* Map a sum of word weights to a rating 1..5. */
static inline int lexicon_rating(int weight_sum)
{
    if (weight_sum >= 3) return 5;
    if (weight_sum >= 1) return 4;
    if (weight_sum == 0) return 3;
    if (weight_sum >= -2) return 2;
    return 1;
}

#endif
