/* transport.c: the `tls` and `proxy` options into a struct http_transport. */
#include "lua/transport.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/secret.h"
#include "core/util.h"
#include "lua/job.h"

/* The string or secret value of field name of the table at tbl, copied; NULL when absent. */
static char *field_copy(lua_State *L, int tbl, const char *name, struct secret_set *secrets, int secret)
{
    lua_getfield(L, tbl, name);
    const char *v = luajob_secret_value(L, -1);
    char *copy = v && *v ? rn_strdup(v) : NULL;
    if (copy && secret && secrets) secret_set_add(secrets, copy);
    lua_pop(L, 1);
    return copy;
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
        t->ca_file = field_copy(L, tls, "ca_file", NULL, 0);
        t->ca_path = field_copy(L, tls, "ca_path", NULL, 0);
        t->cert_file = field_copy(L, tls, "cert_file", NULL, 0);
        t->key_file = field_copy(L, tls, "key_file", secrets, 1);
        t->key_password = field_copy(L, tls, "key_password", secrets, 1);
        t->server_name = field_copy(L, tls, "server_name", NULL, 0);
        t->verify = opt_boolean(L, tls, "verify", 1);
        const char *min = opt_string(L, tls, "min_version", "1.2");
        t->min_version = strcmp(min, "1.3") == 0 ? CURL_SSLVERSION_TLSv1_3 : CURL_SSLVERSION_TLSv1_2;
    }
    lua_pop(L, 1);
    lua_getfield(L, opts, "proxy");
    if (lua_istable(L, -1)) {
        int proxy = lua_gettop(L);
        t->proxy = field_copy(L, proxy, "url", secrets, 0);
        t->proxy_user = field_copy(L, proxy, "user", NULL, 0);
        t->proxy_password = field_copy(L, proxy, "password", secrets, 1);
        t->no_proxy = field_copy(L, proxy, "no_proxy", NULL, 0);
        lua_getfield(L, proxy, "url");
        if (luajob_secret_name(L, -1) && t->proxy) secret_set_add(secrets, t->proxy); /* credentials in it */
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (t->key_file && !t->cert_file) {
        http_transport_free(t);
        return rn_fail(err, "%s: tls.key_file is given without tls.cert_file", owner);
    }
    if (check_readable(owner, "ca_file", t->ca_file, 0, err) || check_readable(owner, "ca_path", t->ca_path, 1, err) ||
        check_readable(owner, "cert_file", t->cert_file, 0, err) || check_readable(owner, "key_file", t->key_file, 0, err)) {
        http_transport_free(t);
        return -1;
    }
    if (!t->verify) log_warning("%s: tls.verify = false: the server's certificate is not checked; anyone on the way can read and change the traffic", owner);
    return 0;
}
