/* transport.c: the `tls` and `proxy` options into a struct http_transport. */
#include "lua/transport.h"

#include <curl/curl.h>
#include <errno.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/secret.h"
#include "core/util.h"
#include "lua/job.h"

/* The string or secret value of field name of the table at tbl, copied; NULL when absent. A
 * copy is added to secrets when they are given (a secret option). */
static char *field_copy(lua_State *L, int tbl, const char *name, struct secret_set *secrets)
{
    lua_getfield(L, tbl, name);
    const char *v = luajob_secret_value(L, -1);
    char *copy = v && *v ? rn_strdup(v) : NULL;
    if (copy && secrets) secret_set_add(secrets, copy);
    lua_pop(L, 1);
    return copy;
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The password of a proxy URL's inline credentials ([scheme://]user:password@host...), as
 * written and percent-decoded as curl sends it, into secrets: curl quotes the whole URL in
 * some errors ("Unsupported proxy syntax in '...'"), and the URL may be a plain string. */
static void add_url_password(const char *url, struct secret_set *secrets)
{
    const char *authority = strstr(url, "://");
    authority = authority ? authority + 3 : url;
    size_t end = strcspn(authority, "/?#");
    const char *at = NULL;
    for (size_t i = 0; i < end; i++)
        if (authority[i] == '@') at = authority + i; /* the last one: a password may hold '@' */
    const char *colon = at ? memchr(authority, ':', (size_t)(at - authority)) : NULL;
    if (!colon || colon + 1 == at) return;
    size_t n = (size_t)(at - colon - 1);
    char *raw = rn_strndup(colon + 1, n), *decoded = rn_malloc(n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (raw[i] == '%' && i + 2 < n && (hi = hex_digit(raw[i + 1])) >= 0 && (lo = hex_digit(raw[i + 2])) >= 0) {
            decoded[k++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            decoded[k++] = raw[i];
        }
    }
    decoded[k] = '\0';
    secret_set_add(secrets, raw);
    secret_set_add(secrets, decoded);
    secret_free(raw);
    secret_free(decoded);
}

/* Whether curl can use url as a proxy: told here, at the declaration, rather than by every call
 * (curl quotes the URL in that error; the message here names only the option and the fault). */
static int check_proxy_url(const char *owner, const char *url, struct rn_err *err)
{
    CURLU *u = curl_url();
    if (!u) return rn_fail(err, "%s: proxy.url: out of memory", owner);
    CURLUcode rc = curl_url_set(u, CURLUPART_URL, url, CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME);
    char *scheme = NULL;
    if (rc == CURLUE_OK) rc = curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    int ok = rc == CURLUE_OK;
    if (ok && strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0 && strncmp(scheme, "socks", 5) != 0) {
        rn_fail(err, "%s: proxy.url: the scheme %s is not a proxy's (http, https, socks4, socks4a, socks5, socks5h)",
                owner, scheme);
        ok = -1;
    }
    curl_free(scheme);
    curl_url_cleanup(u);
    if (ok == 0) return rn_fail(err, "%s: proxy.url: not a URL curl can use (%s)", owner, curl_url_strerror(rc));
    return ok < 0 ? -1 : 0;
}

static int check_readable(const char *owner, const char *option, const char *path, int dir, struct rn_err *err)
{
    if (!path) return 0;
    if (!dir && strncmp(path, "-----BEGIN", 10) == 0) return 0; /* PEM text from a secret */
    if (access(path, dir ? R_OK | X_OK : R_OK) != 0)
        return rn_fail(err, "%s: tls.%s: %s: %s", owner, option, dir ? "directory" : "file", strerror(errno));
    return 0;
}

int transport_read(lua_State *L, int opts, const char *owner, struct http_transport *t, struct secret_set *secrets,
                   struct rn_err *err)
{
    http_transport_init(t);
    opts = lua_absindex(L, opts);
    lua_getfield(L, opts, "tls");
    if (lua_istable(L, -1)) {
        int tls = lua_gettop(L);
        t->ca_file = field_copy(L, tls, "ca_file", NULL);
        t->ca_path = field_copy(L, tls, "ca_path", NULL);
        t->cert_file = field_copy(L, tls, "cert_file", NULL);
        t->key_file = field_copy(L, tls, "key_file", secrets);
        t->key_password = field_copy(L, tls, "key_password", secrets);
        t->server_name = field_copy(L, tls, "server_name", NULL);
        t->verify = opt_boolean(L, tls, "verify", 1);
        const char *min = opt_string(L, tls, "min_version", "1.2");
        t->min_version = strcmp(min, "1.3") == 0 ? CURL_SSLVERSION_TLSv1_3 : CURL_SSLVERSION_TLSv1_2;
    }
    lua_pop(L, 1);
    lua_getfield(L, opts, "proxy");
    if (lua_istable(L, -1)) {
        int proxy = lua_gettop(L);
        lua_getfield(L, proxy, "url");
        int url_secret = luajob_secret_name(L, -1) != NULL;
        lua_pop(L, 1);
        t->proxy = field_copy(L, proxy, "url", url_secret ? secrets : NULL); /* a secret(): credentials in it */
        if (t->proxy && secrets) add_url_password(t->proxy, secrets);
        t->proxy_user = field_copy(L, proxy, "user", NULL);
        t->proxy_password = field_copy(L, proxy, "password", secrets);
        t->no_proxy = field_copy(L, proxy, "no_proxy", NULL);
    } else if (secrets) {
        /* no proxy option: curl takes one from the environment, and may quote its URL */
        static const char *const vars[] = { "https_proxy", "HTTPS_PROXY", "http_proxy", "all_proxy", "ALL_PROXY" };
        for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
            const char *v = getenv(vars[i]);
            if (v && *v) add_url_password(v, secrets);
        }
    }
    lua_pop(L, 1);
    if (t->key_file && !t->cert_file) {
        http_transport_free(t);
        return rn_fail(err, "%s: tls.key_file is given without tls.cert_file", owner);
    }
    if (t->proxy && check_proxy_url(owner, t->proxy, err)) {
        http_transport_free(t);
        return -1;
    }
    if (check_readable(owner, "ca_file", t->ca_file, 0, err) || check_readable(owner, "ca_path", t->ca_path, 1, err) ||
        check_readable(owner, "cert_file", t->cert_file, 0, err) || check_readable(owner, "key_file", t->key_file, 0, err)) {
        http_transport_free(t);
        return -1;
    }
    if (!t->verify) log_warning("%s: tls.verify = false: the server's certificate is not checked; anyone on the way can read and change the traffic", owner);
    return 0;
}
