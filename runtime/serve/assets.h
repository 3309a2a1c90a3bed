/* assets.h: files compiled into the runner for the pages it writes (the report, later the
 * supervisor's dashboard): Vega from Debian's libjs-vega and the pages' own script and style.
 *
 * The table is generated at build time by tools/embed.c from the files the Makefile lists in
 * SERVE_ASSETS (build/gen/serve_assets.c); adding an asset is one word there. Asset data is
 * read-only, lives for the whole process and is NUL-terminated (len excludes the NUL). */
#ifndef RUNNEL_SERVE_ASSETS_H
#define RUNNEL_SERVE_ASSETS_H

#include <stddef.h>

struct serve_asset {
    const char *name;              /* "vega.js", "report.js", ... */
    const unsigned char *data;
    size_t len;
};

/* The generated table, ended by an entry whose name is NULL. */
extern const struct serve_asset serve_assets[];

/* The asset called name, or NULL when this build has none by that name. */
const struct serve_asset *serve_asset(const char *name);

#endif
