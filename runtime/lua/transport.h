/* transport.h: the `tls` and `proxy` options, declared once for every plugin that speaks HTTP
 * (model providers, sink.elasticsearch, the Schema Registry client): put
 * HTTP_TRANSPORT_OPTIONS in the plugin's option table and call transport_read in open(). */
#ifndef RUNNEL_TRANSPORT_H
#define RUNNEL_TRANSPORT_H

#include <lua.h>

#include "core/http_tls.h"
#include "lua/options.h"

struct secret_set;

#define HTTP_TLS_OPTIONS                                                                            \
    OPT_FIELDS({"ca_file", OPT_STRING, 0, NULL, .help = "PEM file of the CAs to trust (instead of the system's store)"}, \
               {"ca_path", OPT_STRING, 0, NULL, .help = "directory of hashed CA certificates (c_rehash)"}, \
               {"cert_file", OPT_STRING, 0, NULL, .help = "client certificate (PEM) for mutual TLS"},   \
               {"key_file", OPT_STRING, 0, NULL, .secret = 1,                                         \
                .help = "client key (PEM): a path, or secret(\"NAME\") holding the PEM text"},         \
               {"key_password", OPT_STRING, 0, NULL, .secret = 1, .help = "passphrase of key_file: secret(...)"}, \
               {"verify", OPT_BOOLEAN, 0, "true", .help = "check the server's certificate and name (false warns once)"}, \
               {"min_version", OPT_ENUM, 0, "1.2", .help = "lowest TLS version", .choices = OPT_CHOICES("1.2", "1.3")}, \
               {"server_name", OPT_STRING, 0, NULL, .help = "name the server's certificate must carry, when not the URL's host"})

#define HTTP_PROXY_OPTIONS                                                                          \
    OPT_FIELDS({"url", OPT_STRING, 1, NULL, .secret = 1,                                            \
                .help = "proxy URL, http://host:port (credentials in it may be a secret(...))"},     \
               {"user", OPT_STRING, 0, NULL, .help = "proxy user name"},                             \
               {"password", OPT_STRING, 0, NULL, .secret = 1, .help = "proxy password: secret(...)"}, \
               {"no_proxy", OPT_STRING, 0, NULL, .help = "hosts reached directly: \"localhost,10.0.0.1,.internal\""})

#define HTTP_TRANSPORT_OPTIONS                                                                      \
    {"tls", OPT_NESTED, 0, NULL, .help = "TLS: trusted CAs, client certificate, verification", .fields = HTTP_TLS_OPTIONS}, \
    {"proxy", OPT_NESTED, 0, NULL, .short_form = "url",                                             \
     .help = "HTTP proxy (a URL or a table); without it HTTPS_PROXY/HTTP_PROXY/NO_PROXY apply",   \
     .fields = HTTP_PROXY_OPTIONS}

/* Read the checked `tls` and `proxy` options of the options table at opts into t (initialised
 * here; free with http_transport_free). Secrets go into secrets for redaction. A file option
 * that names no readable file fails, naming owner.tls.<option> and the path. verify = false
 * prints one warning naming owner. */
int transport_read(lua_State *L, int opts, const char *owner, struct http_transport *t, struct secret_set *secrets,
                   struct rn_err *err);

#endif
