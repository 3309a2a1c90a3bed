/* http_tls.h: how a client reaches its endpoint: TLS (trusted CAs, a client certificate, the
 * lowest version, verification, the name the certificate must carry) and a proxy. One struct
 * for every plugin that speaks HTTP (model providers, the Elasticsearch sink, the Schema
 * Registry client), read from the `tls` and `proxy` options (lua/transport.h) and applied to
 * every transfer of a client (http_set_transport). TLS failures are described by their cause
 * (unknown CA, name mismatch, expired, client certificate refused), never a bare curl code. */
#ifndef RUNNEL_HTTP_TLS_H
#define RUNNEL_HTTP_TLS_H

#include <curl/curl.h>
#include <stddef.h>

/* Every string is owned (NULL: not given). key_file and key_password may hold secrets: they
 * are wiped when freed. key_file holding PEM text ("-----BEGIN") is used as the key itself. */
struct http_transport {
    char *ca_file, *ca_path, *cert_file, *key_file, *key_password;
    int verify;            /* 1: check the server's certificate and name (the default) */
    long min_version;      /* CURL_SSLVERSION_TLSv1_2 (the default) or _TLSv1_3 */
    char *server_name;     /* the name the certificate must carry when not the URL's host */
    char *proxy;           /* proxy URL; NULL: curl's environment (HTTPS_PROXY, NO_PROXY...) */
    char *proxy_user, *proxy_password;
    char *no_proxy;        /* hosts that bypass the proxy, curl's syntax ("a.example,10.0.0.1") */
};

void http_transport_init(struct http_transport *t);
void http_transport_free(struct http_transport *t);
/* A deep copy of src into dst (dst's old contents freed first). */
void http_transport_copy(struct http_transport *dst, const struct http_transport *src);

/* Set t on an easy handle (every transfer of a client). ca_env: $SSL_CERT_FILE's value when
 * set (used when t names no CA), or NULL. */
void http_transport_apply(CURL *easy, const struct http_transport *t, const char *ca_env);

/* After a failed transfer: when result is a TLS or proxy failure, a sentence that names the
 * endpoint (host[:port] of url) and the cause, with what to give, in out (n bytes); curl's own
 * text (detail) follows. t: the transport the transfer used (what was given), or NULL. 0 when the failure is of another kind (out untouched). */
int http_transport_describe(CURL *easy, CURLcode result, const char *url, const char *detail,
                            const struct http_transport *t, char *out, size_t n);

#endif
