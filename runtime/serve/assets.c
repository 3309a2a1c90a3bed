/* assets.c: finding an asset compiled into the runner by name (see assets.h). */
#include "serve/assets.h"

#include <string.h>

const struct serve_asset *serve_asset(const char *name)
{
    for (const struct serve_asset *a = serve_assets; a->name; a++)
        if (strcmp(a->name, name) == 0) return a;
    return NULL;
}
