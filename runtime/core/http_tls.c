/* http_tls.c: TLS and proxy settings of a client's transfers, and what a TLS failure means.
 *
 * tls.server_name: curl checks the certificate against the URL's host. To check it against
 * another name (an endpoint reached by address, or through a tunnel), curl's own name check is
 * turned off and OpenSSL's is set on the context instead (X509_VERIFY_PARAM_set1_host), so the
 * chain and the name are still both verified during the handshake; a mismatch fails it with
 * X509_V_ERR_HOSTNAME_MISMATCH, which http_transport_describe names. */
#include "core/http_tls.h"

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/secret.h"
#include "core/util.h"

void http_transport_init(struct http_transport *t)
{
    memset(t, 0, sizeof *t);
    t->verify = 1;
    t->min_version = CURL_SSLVERSION_TLSv1_2;
}

void http_transport_free(struct http_transport *t)
{
    free(t->ca_file);
    free(t->ca_path);
    free(t->cert_file);
    secret_free(t->key_file);
    secret_free(t->key_password);
    free(t->server_name);
    secret_free(t->proxy);
    free(t->proxy_user);
    secret_free(t->proxy_password);
    free(t->no_proxy);
    http_transport_init(t);
}

static char *dup_or_null(const char *s) { return s ? rn_strdup(s) : NULL; }

void http_transport_copy(struct http_transport *dst, const struct http_transport *src)
{
    http_transport_free(dst);
    dst->ca_file = dup_or_null(src->ca_file);
    dst->ca_path = dup_or_null(src->ca_path);
    dst->cert_file = dup_or_null(src->cert_file);
    dst->key_file = dup_or_null(src->key_file);
    dst->key_password = dup_or_null(src->key_password);
    dst->verify = src->verify;
    dst->min_version = src->min_version;
    dst->server_name = dup_or_null(src->server_name);
    dst->proxy = dup_or_null(src->proxy);
    dst->proxy_user = dup_or_null(src->proxy_user);
    dst->proxy_password = dup_or_null(src->proxy_password);
    dst->no_proxy = dup_or_null(src->no_proxy);
}

/* CURLOPT_SSL_CTX_FUNCTION: the name the certificate must carry (tls.server_name). */
static CURLcode on_ssl_ctx(CURL *easy, void *ctx, void *user)
{
    (void)easy;
    const char *name = user;
    X509_VERIFY_PARAM *param = SSL_CTX_get0_param((SSL_CTX *)ctx);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    return X509_VERIFY_PARAM_set1_host(param, name, 0) == 1 ? CURLE_OK : CURLE_SSL_CERTPROBLEM;
}

void http_transport_apply(CURL *e, const struct http_transport *t, const char *ca_env)
{
    const char *ca_file = t->ca_file ? t->ca_file : t->ca_path ? NULL : ca_env;
    if (ca_file) curl_easy_setopt(e, CURLOPT_CAINFO, ca_file);
    if (t->ca_path) curl_easy_setopt(e, CURLOPT_CAPATH, t->ca_path);
    if (t->cert_file) curl_easy_setopt(e, CURLOPT_SSLCERT, t->cert_file);
    if (t->key_file) {
        if (strncmp(t->key_file, "-----BEGIN", 10) == 0) {
            struct curl_blob blob = {t->key_file, strlen(t->key_file), CURL_BLOB_COPY};
            curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &blob);
            curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
        } else {
            curl_easy_setopt(e, CURLOPT_SSLKEY, t->key_file);
        }
    }
    if (t->key_password) curl_easy_setopt(e, CURLOPT_KEYPASSWD, t->key_password);
    curl_easy_setopt(e, CURLOPT_SSLVERSION, t->min_version ? t->min_version : (long)CURL_SSLVERSION_TLSv1_2);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, t->verify ? 1L : 0L);
    if (t->verify && t->server_name) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L); /* OpenSSL checks server_name instead */
        curl_easy_setopt(e, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
        curl_easy_setopt(e, CURLOPT_SSL_CTX_DATA, t->server_name);
    } else {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, t->verify ? 2L : 0L);
    }
    if (t->proxy) {
        curl_easy_setopt(e, CURLOPT_PROXY, t->proxy);
        if (t->proxy_user) curl_easy_setopt(e, CURLOPT_PROXYUSERNAME, t->proxy_user);
        if (t->proxy_password) curl_easy_setopt(e, CURLOPT_PROXYPASSWORD, t->proxy_password);
        /* a tunnel for http:// too, so a proxy sees the same CONNECT for every endpoint */
        curl_easy_setopt(e, CURLOPT_HTTPPROXYTUNNEL, 1L);
    }
    if (t->no_proxy) curl_easy_setopt(e, CURLOPT_NOPROXY, t->no_proxy);
}

/* host[:port] of url into out. */
static void endpoint_of(const char *url, char *out, size_t n)
{
    const char *p = strstr(url ? url : "", "://");
    p = p ? p + 3 : url ? url : "";
    const char *at = strpbrk(p, "@/?#");
    if (at && *at == '@') p = at + 1; /* never show credentials */
    size_t len = strcspn(p, "/?#");
    snprintf(out, n, "%.*s", (int)(len < 200 ? len : 200), p);
}

/* No answer came to this transfer. */
static int without_answer(CURL *easy)
{
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    return status == 0;
}

/* What an X.509 verification result means, and what to give. */
static const char *verify_cause(long v)
{
    switch (v) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
        return "its certificate is signed by an unknown CA (give the CA as tls.ca_file or tls.ca_path)";
    case X509_V_ERR_HOSTNAME_MISMATCH:
        return "its certificate is for another name (check the URL's host, or give tls.server_name)";
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return "its certificate has expired";
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return "its certificate is not valid yet (check the clocks)";
    case X509_V_ERR_CERT_REVOKED:
        return "its certificate is revoked";
    default:
        return NULL;
    }
}

int http_transport_describe(CURL *easy, CURLcode result, const char *url, const char *detail,
                            const struct http_transport *t, char *out, size_t n)
{
    char where[256];
    endpoint_of(url, where, sizeof where);
    const char *cause = NULL;
    char unknown[96];
    if (!detail) detail = "";
    switch (result) {
    case CURLE_PEER_FAILED_VERIFICATION: {
        long v = 0;
        curl_easy_getinfo(easy, CURLINFO_SSL_VERIFYRESULT, &v);
        cause = verify_cause(v);
        if (!cause && strstr(detail, "no alternative certificate subject name"))
            cause = "its certificate is for another name (check the URL's host, or give tls.server_name)";
        if (!cause) {
            snprintf(unknown, sizeof unknown, "its certificate failed verification (X.509 error %ld)", v);
            cause = unknown;
        }
        break;
    }
    case CURLE_SSL_CERTPROBLEM:
        cause = "the client certificate (tls.cert_file) cannot be used";
        break;
    case CURLE_SSL_CACERT_BADFILE:
        cause = "the CA file (tls.ca_file or tls.ca_path) cannot be read";
        break;
    case CURLE_SSL_ISSUER_ERROR:
        cause = "its certificate is not from the expected issuer";
        break;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CLIENTCERT:
        if (strstr(detail, "certificate required") || strstr(detail, "alert bad certificate") ||
            strstr(detail, "alert unknown ca") || result == CURLE_SSL_CLIENTCERT)
            cause = "it refused the client certificate, or wants one (tls.cert_file, tls.key_file)";
        else if (strstr(detail, "wrong version number") || strstr(detail, "packet length too long"))
            cause = "it does not speak TLS on this port (http:// instead of https://?)";
        else if (strstr(detail, "unsupported protocol") || strstr(detail, "protocol version") ||
                 strstr(detail, "no protocols available"))
            cause = "no TLS version in common (tls.min_version)";
        else if (strstr(detail, "unable to set private key") || strstr(detail, "bad decrypt"))
            cause = "the client key (tls.key_file) cannot be read, or tls.key_password is wrong";
        else if (result == CURLE_SSL_CONNECT_ERROR)
            cause = "the TLS handshake failed";
        else if ((result == CURLE_SEND_ERROR || result == CURLE_HTTP2) && strstr(detail, "Broken pipe") && url &&
                 strncmp(url, "https://", 8) == 0 && without_answer(easy))
            /* TLS 1.3 asks for the client certificate after the handshake: a server that wants
             * one and gets none closes, and the client's first write finds the pipe broken (curl
             * reports it as a send or an HTTP/2 failure, with its timings zeroed) */
            cause = t && t->cert_file ? "it closed the connection after the TLS handshake: it may have refused the client certificate (tls.cert_file)"
                                      : "it closed the connection after the TLS handshake: it may want a client certificate (tls.cert_file, tls.key_file)";
        break;
    case CURLE_COULDNT_RESOLVE_PROXY: /* curl says so of a URL it cannot parse, too */
        cause = strstr(detail, "proxy syntax") ? "the proxy URL is not valid (proxy)" : "the proxy's name does not resolve (proxy)";
        break;
    default:
        break;
    }
    if (!cause && (result == CURLE_RECV_ERROR || result == CURLE_COULDNT_CONNECT) && strstr(detail, "CONNECT")) {
        long code = 0;
        curl_easy_getinfo(easy, CURLINFO_HTTP_CONNECTCODE, &code);
        if (code == 407) cause = "the proxy wants credentials, or refused them (proxy.user, proxy.password): 407";
        else if (code) {
            snprintf(unknown, sizeof unknown, "the proxy refused the tunnel: HTTP %ld", code);
            cause = unknown;
        }
    }
    if (!cause) return 0;
    const char *kind = strstr(cause, "proxy") ? "proxy for" : "TLS with";
    snprintf(out, n, "%s %s: %s%s%s", kind, where, cause, *detail ? ": " : "", detail);
    return 1;
}
