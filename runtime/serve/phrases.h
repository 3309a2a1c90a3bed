/* phrases.h: the words and two- and three-word phrases of a text, for the report's word cloud.
 *
 * A word is a run of letters and digits, lowercased (ASCII, Latin-1, Latin Extended-A, Greek
 * and Cyrillic capitals; other scripts as they are); an apostrophe inside a word is dropped
 * ("Don't" -> "dont"). English stop words ("the", "this", "and", ...) are left out, but not the
 * negations ("not", "no", "dont", "never"), which turn what a review says around. A phrase is
 * two or three words in a row, never across a stop word or a mark that ends a clause
 * (. , ; : ! ? ( ) [ ] " < > a line break, dashes, ellipses, Unicode quotes and brackets);
 * spaces, hyphens, slashes and other symbols (emoji too) only separate words. HTML character
 * references read as the character they stand for (&amp; &quot; &#39; &#233; ...). A word
 * longer than PHRASE_WORD_MAX bytes (a URL, a run of letters) is left out and ends the phrase;
 * bytes that are not valid UTF-8 separate words. */
#ifndef RUNNEL_SERVE_PHRASES_H
#define RUNNEL_SERVE_PHRASES_H

#include <stddef.h>

#define PHRASE_WORD_MAX 40
#define PHRASE_MAX (3 * PHRASE_WORD_MAX + 2)

/* Called for every word and phrase in text order: a word, then the phrase of two ending with
 * it, then the phrase of three. `phrase` is valid UTF-8, NUL-terminated, words separated by
 * one space, and lives until fn returns. */
typedef void (*phrase_fn)(void *ctx, const char *phrase, size_t len, int words);

/* Call fn for each word and phrase of text[0..n). Allocates nothing. */
void phrases_each(const char *text, size_t n, phrase_fn fn, void *ctx);

/* 1 when the lowercased word w[0..n) is a stop word. */
int phrases_stop_word(const char *w, size_t n);

/* The stop words, sorted (for the unit test and documentation), ended by NULL. */
extern const char *const phrases_stop_words[];

#endif
