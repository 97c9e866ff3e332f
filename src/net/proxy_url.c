/* Proxy configuration and the proxy URL parser (include/smtpc/proxy.h).
 *
 * Parse errors never quote the URL: a password with an unencoded '/' or ':'
 * would otherwise land in a message as a "port" or a "path". */
#include "net/proxy.h"
#include "net/proxy_internal.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CRED 255
#define MAX_HOST 255

SMTPC_API const char *smtpc_proxy_type_name(smtpc_proxy_type type)
{
    switch (type) {
    case SMTPC_PROXY_SOCKS4:
        return "socks4";
    case SMTPC_PROXY_SOCKS4A:
        return "socks4a";
    case SMTPC_PROXY_SOCKS5:
        return "socks5";
    case SMTPC_PROXY_SOCKS5H:
        return "socks5h";
    case SMTPC_PROXY_HTTP:
        return "http";
    case SMTPC_PROXY_HTTPS:
        return "https";
    }
    return "?";
}

static uint16_t default_port(smtpc_proxy_type type)
{
    switch (type) {
    case SMTPC_PROXY_HTTP:
        return 80;
    case SMTPC_PROXY_HTTPS:
        return 443;
    default:
        return 1080;
    }
}

static bool valid_type(smtpc_proxy_type type)
{
    return type >= SMTPC_PROXY_SOCKS4 && type <= SMTPC_PROXY_HTTPS;
}

static bool is_socks4(smtpc_proxy_type type)
{
    return type == SMTPC_PROXY_SOCKS4 || type == SMTPC_PROXY_SOCKS4A;
}

/* Appends s percent-encoded (everything but RFC 3986 unreserved) so the
 * redacted URL never carries a control character or an ambiguous '@'. */
static int append_pct(smtpc__buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        int rc;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            rc = smtpc__buf_append(b, s, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            rc = smtpc__buf_append(b, e, 3);
        }
        if (rc) return rc;
    }
    return 0;
}

static int rebuild_redacted(smtpc_proxy *p)
{
    smtpc__buf b;
    smtpc__buf_init(&b, 0);
    int rc = smtpc__buf_printf(&b, "%s://", smtpc_proxy_type_name(p->type));
    if (!rc && p->user) {
        rc = append_pct(&b, p->user);
        if (!rc && p->pass) rc = smtpc__buf_append_str(&b, ":***");
        if (!rc) rc = smtpc__buf_append_str(&b, "@");
    }
    if (!rc) {
        if (strchr(p->host, ':'))
            rc = smtpc__buf_printf(&b, "[%s]:%u", p->host, (unsigned)p->port);
        else
            rc = smtpc__buf_printf(&b, "%s:%u", p->host, (unsigned)p->port);
    }
    if (!rc) rc = smtpc__buf_append(&b, "", 1);
    if (rc) {
        smtpc__buf_free(&b);
        return rc;
    }
    free(p->redacted);
    p->redacted = (char *)b.data; /* NUL-terminated above; off is 0 */
    return 0;
}

/* A host name (letters, digits, '-', '.', '_'), an IPv4 address, or an
 * IPv6 address (no brackets, no zone). */
static const char *check_host(const char *h, size_t n)
{
    if (n == 0) return "the host is empty";
    if (n > MAX_HOST) return "the host is longer than 255 bytes";
    bool colon = memchr(h, ':', n) != NULL;
    if (colon) {
        char tmp[64];
        struct in6_addr a6;
        if (n >= sizeof tmp) return "invalid IPv6 address";
        memcpy(tmp, h, n);
        tmp[n] = '\0';
        if (memchr(h, '%', n)) return "IPv6 zone identifiers are not supported";
        if (inet_pton(AF_INET6, tmp, &a6) != 1) return "invalid IPv6 address";
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)h[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_'))
            return c >= 0x80 ? "the host has non-ASCII characters (use its xn-- A-label form)"
                             : "the host has characters not allowed in a host name";
    }
    return NULL;
}

static const char *check_creds(smtpc_proxy_type type, const char *user, const char *pass)
{
    if (!user) return pass ? "a password needs a user name" : NULL;
    if (strlen(user) > MAX_CRED) return "the user name is longer than 255 bytes";
    if (pass && strlen(pass) > MAX_CRED) return "the password is longer than 255 bytes";
    if (is_socks4(type) && pass && *pass)
        return "SOCKS4 carries a user id but no password (use socks5:// for user:pass)";
    if (!*user && pass && *pass) return "a password needs a non-empty user name";
    if ((type == SMTPC_PROXY_SOCKS5 || type == SMTPC_PROXY_SOCKS5H) && !*user)
        return "SOCKS5 user names cannot be empty";
    if (type == SMTPC_PROXY_HTTP || type == SMTPC_PROXY_HTTPS) {
        if (strchr(user, ':')) return "an HTTP proxy user name cannot contain ':'";
    }
    return NULL;
}

static void proxy_wipe(smtpc_proxy *p)
{
    free(p->host);
    smtpc__free_secret(p->user);
    smtpc__free_secret(p->pass);
    free(p->redacted);
    free(p);
}

SMTPC_API void smtpc_proxy_free(smtpc_proxy *p)
{
    if (p) proxy_wipe(p);
}

static int set_err(char *errbuf, size_t sz, int code, const char *msg)
{
    if (errbuf && sz) snprintf(errbuf, sz, "proxy URL: %s", msg);
    return code;
}

/* Decodes %XX in s[0..n) into a new string; NULL and *why on error. */
static char *pct_decode(const char *s, size_t n, const char **why)
{
    char *o = malloc(n + 1);
    if (!o) {
        *why = NULL;
        return NULL;
    }
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            o[j++] = s[i];
            continue;
        }
        int v = 0;
        for (int k = 1; k <= 2; k++) {
            char c = i + (size_t)k < n ? s[i + (size_t)k] : '\0';
            int d = (c >= '0' && c <= '9')   ? c - '0'
                    : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                    : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                             : -1;
            if (d < 0) {
                smtpc__secure_zero(o, j);
                free(o);
                *why = "bad percent-encoding in the credentials";
                return NULL;
            }
            v = v * 16 + d;
        }
        if (v == 0 || v < 0x20 || v == 0x7f) {
            smtpc__secure_zero(o, j);
            free(o);
            *why = "control characters (%00-%1F, %7F) are not allowed in the credentials";
            return NULL;
        }
        o[j++] = (char)v;
        i += 2;
    }
    o[j] = '\0';
    return o;
}

static int proxy_alloc(smtpc_proxy **out, smtpc_proxy_type type, const char *host, size_t hlen,
                       uint16_t port)
{
    smtpc_proxy *p = calloc(1, sizeof *p);
    if (!p) return SMTPC_ENOMEM;
    p->type = type;
    p->port = port ? port : default_port(type);
    p->host = smtpc__strndup(host, hlen);
    if (!p->host) {
        free(p);
        return SMTPC_ENOMEM;
    }
    *out = p;
    return 0;
}

static const struct {
    const char *name;
    smtpc_proxy_type type;
} schemes[] = {
    {"socks4", SMTPC_PROXY_SOCKS4}, {"socks4a", SMTPC_PROXY_SOCKS4A},
    {"socks5", SMTPC_PROXY_SOCKS5}, {"socks5h", SMTPC_PROXY_SOCKS5H},
    {"http", SMTPC_PROXY_HTTP},     {"https", SMTPC_PROXY_HTTPS},
};

SMTPC_API int smtpc_proxy_parse_url(smtpc_proxy **out, const char *url, char *errbuf,
                                    size_t errbuf_size)
{
    if (errbuf && errbuf_size) errbuf[0] = '\0';
    if (!out || !url) return set_err(errbuf, errbuf_size, SMTPC_EINVAL, "no URL given");
    for (const char *c = url; *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f)
            return set_err(errbuf, errbuf_size, SMTPC_EINVAL,
                           "spaces and control characters are not allowed");
    const char *sep = strstr(url, "://");
    if (!sep || sep == url)
        return set_err(errbuf, errbuf_size, SMTPC_EINVAL,
                       "no scheme (expected socks4://, socks4a://, socks5://, socks5h://, "
                       "http:// or https://)");
    size_t slen = (size_t)(sep - url);
    int type = 0;
    for (size_t i = 0; i < SMTPC__ARRAY_LEN(schemes); i++)
        if (strlen(schemes[i].name) == slen && !smtpc__strncasecmp(url, schemes[i].name, slen))
            type = (int)schemes[i].type;
    if (!type)
        return set_err(errbuf, errbuf_size, SMTPC_EINVAL,
                       "unknown scheme (expected socks4, socks4a, socks5, socks5h, http or "
                       "https)");

    const char *auth = sep + 3;
    size_t alen = strcspn(auth, "/?#");
    const char *tail = auth + alen;
    if (*tail && strcmp(tail, "/") != 0)
        return set_err(errbuf, errbuf_size, SMTPC_EINVAL,
                       "a path, query or fragment is not allowed (credentials with '/', '?', "
                       "'#' must be percent-encoded)");

    /* userinfo: up to the last '@', split at the first ':' */
    const char *at = NULL;
    for (size_t i = 0; i < alen; i++)
        if (auth[i] == '@') at = auth + i;
    char *user = NULL, *pass = NULL;
    const char *hp = auth;
    size_t hplen = alen;
    const char *why = NULL;
    int rc = SMTPC_EINVAL;
    if (at) {
        size_t ulen = (size_t)(at - auth);
        const char *colon = memchr(auth, ':', ulen);
        size_t un = colon ? (size_t)(colon - auth) : ulen;
        user = pct_decode(auth, un, &why);
        if (!user) goto fail;
        if (colon) {
            pass = pct_decode(colon + 1, ulen - un - 1, &why);
            if (!pass) goto fail;
        }
        if (!*user && (!pass || !*pass)) {
            /* "http://@host", "http://:@host": an empty userinfo means none */
            free(user);
            smtpc__free_secret(pass);
            user = pass = NULL;
        }
        hp = at + 1;
        hplen = alen - ulen - 1;
    }

    const char *host;
    size_t hlen;
    const char *portp = NULL;
    size_t portlen = 0;
    if (hplen && hp[0] == '[') {
        const char *rb = memchr(hp, ']', hplen);
        if (!rb) {
            why = "unterminated '[' in the host";
            goto fail;
        }
        host = hp + 1;
        hlen = (size_t)(rb - host);
        const char *after = rb + 1;
        size_t rest = hplen - (size_t)(after - hp);
        if (rest) {
            if (after[0] != ':') {
                why = "unexpected characters after ']'";
                goto fail;
            }
            portp = after + 1;
            portlen = rest - 1;
        }
        if (!memchr(host, ':', hlen)) {
            why = "brackets are only for IPv6 addresses";
            goto fail;
        }
    } else {
        host = hp;
        const char *colon = memchr(hp, ':', hplen);
        if (colon && memchr(colon + 1, ':', hplen - (size_t)(colon + 1 - hp))) {
            why = "IPv6 addresses must be in brackets, e.g. socks5://[::1]:1080";
            goto fail;
        }
        hlen = colon ? (size_t)(colon - hp) : hplen;
        if (colon) {
            portp = colon + 1;
            portlen = hplen - hlen - 1;
        }
    }
    if ((why = check_host(host, hlen)) != NULL) goto fail;
    uint16_t port = 0;
    if (portp) {
        uint64_t v;
        if (smtpc__parse_u64(portp, portlen, &v) != 0 || v == 0 || v > 65535) {
            why = "invalid port (expected 1-65535)";
            goto fail;
        }
        port = (uint16_t)v;
    }
    if ((why = check_creds((smtpc_proxy_type)type, user, pass)) != NULL) goto fail;

    smtpc_proxy *p;
    rc = proxy_alloc(&p, (smtpc_proxy_type)type, host, hlen, port);
    if (rc) goto fail;
    p->user = user;
    p->pass = pass;
    user = pass = NULL;
    rc = rebuild_redacted(p);
    if (rc) {
        proxy_wipe(p);
        goto fail;
    }
    *out = p;
    return 0;

fail:
    smtpc__free_secret(user);
    smtpc__free_secret(pass);
    if (why) return set_err(errbuf, errbuf_size, SMTPC_EINVAL, why);
    if (rc == SMTPC_EINVAL) rc = SMTPC_ENOMEM; /* pct_decode's malloc */
    return set_err(errbuf, errbuf_size, rc, "out of memory");
}

SMTPC_API int smtpc_proxy_new(smtpc_proxy **out, smtpc_proxy_type type, const char *host,
                              uint16_t port)
{
    if (!out || !host || !valid_type(type)) return SMTPC_EINVAL;
    if (check_host(host, strlen(host))) return SMTPC_EINVAL;
    smtpc_proxy *p;
    int rc = proxy_alloc(&p, type, host, strlen(host), port);
    if (rc) return rc;
    rc = rebuild_redacted(p);
    if (rc) {
        proxy_wipe(p);
        return rc;
    }
    *out = p;
    return 0;
}

SMTPC_API int smtpc_proxy_set_auth(smtpc_proxy *p, const char *user, const char *pass)
{
    if (!p) return SMTPC_EINVAL;
    if (check_creds(p->type, user, pass)) return SMTPC_EINVAL;
    if ((user && smtpc__has_ctl(user)) || (pass && smtpc__has_ctl(pass))) return SMTPC_EINVAL;
    char *u = NULL, *w = NULL;
    if (user && !(u = smtpc__strdup(user))) return SMTPC_ENOMEM;
    if (pass && !(w = smtpc__strdup(pass))) {
        smtpc__free_secret(u);
        return SMTPC_ENOMEM;
    }
    char *ou = p->user, *ow = p->pass;
    p->user = u;
    p->pass = w;
    int rc = rebuild_redacted(p);
    if (rc) {
        p->user = ou;
        p->pass = ow;
        smtpc__free_secret(u);
        smtpc__free_secret(w);
        return rc;
    }
    smtpc__free_secret(ou);
    smtpc__free_secret(ow);
    return 0;
}

SMTPC_API int smtpc_proxy_dup(smtpc_proxy **out, const smtpc_proxy *p)
{
    if (!out || !p) return SMTPC_EINVAL;
    smtpc_proxy *d;
    int rc = proxy_alloc(&d, p->type, p->host, strlen(p->host), p->port);
    if (rc) return rc;
    if ((p->user && !(d->user = smtpc__strdup(p->user))) ||
        (p->pass && !(d->pass = smtpc__strdup(p->pass))) || rebuild_redacted(d)) {
        proxy_wipe(d);
        return SMTPC_ENOMEM;
    }
    *out = d;
    return 0;
}

SMTPC_API smtpc_proxy_type smtpc_proxy_get_type(const smtpc_proxy *p)
{
    return p->type;
}

SMTPC_API const char *smtpc_proxy_get_host(const smtpc_proxy *p)
{
    return p->host;
}

SMTPC_API uint16_t smtpc_proxy_get_port(const smtpc_proxy *p)
{
    return p->port;
}

SMTPC_API const char *smtpc_proxy_get_user(const smtpc_proxy *p)
{
    return p->user;
}

SMTPC_API const char *smtpc_proxy_redacted(const smtpc_proxy *p)
{
    return p->redacted;
}
