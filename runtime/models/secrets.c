/* secrets.c: the secrets of a model (the values of the options its provider names as secret:
 * the api key, header values) and their redaction from every reason, dead letter, answer text
 * and job error the engine writes. The copies are wiped when the model closes. */
#include "models/model_int.h"

#include <stdlib.h>
#include <string.h>

#include "lua/job.h"

static void add(struct secrets *s, const char *value)
{
    if (!value || strlen(value) < 4) return;
    s->values = rn_realloc(s->values, (s->count + 1) * sizeof *s->values);
    s->values[s->count++] = rn_strdup(value);
}

/* Every value of a table option counts, plain strings too: an "api-key" header is as secret as
 * secret() makes it. */
void secrets_collect(struct secrets *s, lua_State *L, int opts, const char *const *names)
{
    for (const char *const *name = names; name && *name; name++) {
        if (!opt_push(L, opts, *name)) continue;
        if (lua_type(L, -1) == LUA_TTABLE) {
            lua_pushnil(L);
            while (lua_next(L, -2)) {
                add(s, luajob_secret_value(L, -1));
                lua_pop(L, 1);
            }
        } else {
            add(s, luajob_secret_value(L, -1));
        }
        lua_pop(L, 1);
    }
}

void secrets_redact(struct secrets *s, struct buf *b)
{
    for (size_t k = 0; k < s->count; k++) {
        const char *secret = s->values[k];
        size_t n = strlen(secret);
        if (!b->len || !memmem(b->data, b->len, secret, n)) continue;
        buf_clear(&s->scratch);
        size_t i = 0;
        while (i < b->len) {
            char *hit = memmem(b->data + i, b->len - i, secret, n);
            if (!hit) break;
            buf_put(&s->scratch, b->data + i, (size_t)(hit - (b->data + i)));
            buf_puts(&s->scratch, "[redacted]");
            i = (size_t)(hit - b->data) + n;
        }
        buf_put(&s->scratch, b->data + i, b->len - i);
        struct buf t = *b; /* the buffers trade places: no copy back */
        *b = s->scratch;
        s->scratch = t;
    }
}

void secrets_free(struct secrets *s)
{
    for (size_t i = 0; i < s->count; i++) {
        explicit_bzero(s->values[i], strlen(s->values[i]));
        free(s->values[i]);
    }
    free(s->values);
    buf_free(&s->scratch);
    memset(s, 0, sizeof *s);
}
