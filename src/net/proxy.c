/* Proxy layers: SOCKS4, SOCKS4a, SOCKS5 (RFC 1928, RFC 1929) and HTTP
 * CONNECT (RFC 9110 §9.3.6) with Basic authentication. See net/proxy.h.
 *
 * The handshake is one loop: write the pending request bytes, read until
 * `need` bytes of the reply are in, then let the state's step look at them and
 * set up the next request / the next `need`. SOCKS replies have a length known
 * from their first bytes, so we never read past them; an HTTP response header
 * has no such length, so bytes after its blank line are kept for read(). */
#include "net/proxy.h"
#include "net/proxy_internal.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    ST_S4_REPLY = 1,
    ST_S5_METHOD,
    ST_S5_AUTH,
    ST_S5_REPLY_HEAD, /* VER REP: judge the reply code as soon as it is in */
    ST_S5_REPLY_ATYP, /* VER REP RSV ATYP + 1st address byte */
    ST_S5_REPLY_REST, /* the bound address and port */
    ST_HTTP_HEADER,
    ST_DONE,
    ST_FAILED
};

/* Longest SOCKS reply we read whole: SOCKS5 with a 255-byte domain. */
#define IN_MAX (4 + 1 + 255 + 2)

typedef struct proxy_layer {
    smtpc__transport base;
    smtpc_proxy_type type;
    int state;
    int failed_rc;
    uint8_t *out; /* request bytes (may hold credentials: wiped) */
    size_t out_len, out_off, out_cap;
    uint8_t in[IN_MAX];
    size_t in_len, need;
    smtpc__buf http; /* HTTP response header, then the bytes after it */
    bool offered_auth;
    char *user, *pass; /* SOCKS5 user/pass, kept until sent */
    char what[320];    /* "SOCKS5 proxy socks5h://u:***@host:1080" */
    char target[300];  /* "host:port" / "[v6]:port" as we asked for it */
} proxy_layer;

static const char *type_label(smtpc_proxy_type t)
{
    switch (t) {
    case SMTPC_PROXY_SOCKS4:
        return "SOCKS4";
    case SMTPC_PROXY_SOCKS4A:
        return "SOCKS4a";
    case SMTPC_PROXY_SOCKS5:
    case SMTPC_PROXY_SOCKS5H:
        return "SOCKS5";
    case SMTPC_PROXY_HTTP:
        return "HTTP";
    case SMTPC_PROXY_HTTPS:
        return "HTTPS";
    }
    return "?";
}

__attribute__((format(printf, 3, 4))) static int perr(proxy_layer *l, int code, const char *fmt,
                                                      ...)
{
    char detail[SMTPC__ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    smtpc__err(&l->base.err, code, "%s: %s", l->what, detail);
    if (code != SMTPC_EAGAIN) {
        l->state = ST_FAILED;
        l->failed_rc = code;
    }
    return code;
}

static void wipe_out(proxy_layer *l)
{
    if (l->out) smtpc__secure_zero(l->out, l->out_cap);
    l->out_len = l->out_off = 0;
}

static int out_reserve(proxy_layer *l, size_t n)
{
    if (n <= l->out_cap) return 0;
    uint8_t *p = malloc(n);
    if (!p) return SMTPC_ENOMEM;
    if (l->out) {
        smtpc__secure_zero(l->out, l->out_cap);
        free(l->out);
    }
    l->out = p;
    l->out_cap = n;
    return 0;
}

/* Sets the next request; the reply state and how many bytes it needs. */
static void expect(proxy_layer *l, int state, size_t need)
{
    l->state = state;
    l->in_len = 0;
    l->need = need;
}

/* ---- SOCKS4 / SOCKS4a ---------------------------------------------------- */

static const char *s4_code(uint8_t cd)
{
    switch (cd) {
    case 0x5b:
        return "request rejected or failed";
    case 0x5c:
        return "request rejected: the proxy cannot reach our identd";
    case 0x5d:
        return "request rejected: identd reports a different user id";
    }
    return NULL;
}

static int s4_step(proxy_layer *l)
{
    /* VN CD DSTPORT(2) DSTIP(4) */
    if (l->in[0] != 0x00)
        return perr(l, SMTPC_EPROXY,
                    "malformed SOCKS4 reply (version byte 0x%02x, expected 0x00)%s", l->in[0],
                    l->in[0] == 'H' ? "; is it an HTTP proxy?" : "");
    if (l->in[1] == 0x5a) {
        l->state = ST_DONE;
        return 0;
    }
    const char *why = s4_code(l->in[1]);
    if (why)
        return perr(l, SMTPC_EPROXY, "CONNECT to %s refused: %s (reply 0x%02x)", l->target, why,
                    l->in[1]);
    return perr(l, SMTPC_EPROXY, "malformed SOCKS4 reply (unknown reply code 0x%02x)", l->in[1]);
}

/* ---- SOCKS5 -------------------------------------------------------------- */

static const char *s5_code(uint8_t rep)
{
    static const char *const names[] = {
        NULL,
        "general SOCKS server failure",
        "connection not allowed by ruleset",
        "network unreachable",
        "host unreachable",
        "connection refused",
        "TTL expired",
        "command not supported",
        "address type not supported",
    };
    return rep < SMTPC__ARRAY_LEN(names) ? names[rep] : NULL;
}

static const char *s5_method_name(uint8_t m)
{
    switch (m) {
    case 0x00:
        return "no authentication";
    case 0x01:
        return "GSSAPI";
    case 0x02:
        return "username/password";
    case 0x03:
        return "CHAP";
    case 0x05:
        return "challenge-response";
    case 0x06:
        return "SSL";
    case 0x07:
        return "NDS";
    case 0x08:
        return "multi-authentication framework";
    case 0x09:
        return "JSON parameter block";
    }
    return m >= 0x80 && m <= 0xfe ? "a private method" : "an unassigned method";
}

/* The CONNECT request: VER CMD RSV ATYP DST.ADDR DST.PORT */
struct target_spec {
    const char *host;
    uint16_t port;
    int family; /* AF_INET / AF_INET6: addr holds it; 0 = send the name */
    uint8_t addr[16];
};

static int s5_request(proxy_layer *l, const struct target_spec *ts)
{
    size_t hl = ts->family ? 0 : strlen(ts->host);
    int rc = out_reserve(l, 4 + 1 + hl + 16 + 2);
    if (rc) return rc;
    size_t n = 0;
    l->out[n++] = 0x05;
    l->out[n++] = 0x01; /* CONNECT */
    l->out[n++] = 0x00;
    if (ts->family == AF_INET) {
        l->out[n++] = 0x01;
        memcpy(l->out + n, ts->addr, 4);
        n += 4;
    } else if (ts->family == AF_INET6) {
        l->out[n++] = 0x04;
        memcpy(l->out + n, ts->addr, 16);
        n += 16;
    } else {
        l->out[n++] = 0x03;
        l->out[n++] = (uint8_t)hl;
        memcpy(l->out + n, ts->host, hl);
        n += hl;
    }
    l->out[n++] = (uint8_t)(ts->port >> 8);
    l->out[n++] = (uint8_t)(ts->port & 0xff);
    l->out_len = n;
    l->out_off = 0;
    return 0;
}

/* Where the CONNECT request waits while the method is negotiated. */
typedef struct s5_pending {
    struct target_spec ts;
    char host[256];
} s5_pending;

static s5_pending *pending_of(proxy_layer *l);

static int s5_send_request(proxy_layer *l)
{
    s5_pending *p = pending_of(l);
    p->ts.host = p->host;
    int rc = s5_request(l, &p->ts);
    if (rc) return perr(l, rc, "out of memory");
    expect(l, ST_S5_REPLY_HEAD, 2);
    return 0;
}

static int s5_method_step(proxy_layer *l)
{
    if (l->in[0] != 0x05)
        return perr(l, SMTPC_EPROXY,
                    "malformed SOCKS5 reply (version byte 0x%02x, expected 0x05)%s", l->in[0],
                    l->in[0] == 'H' ? "; is it an HTTP proxy?" : "");
    uint8_t m = l->in[1];
    const char *offered =
        l->offered_auth ? "no authentication, username/password" : "no authentication";
    if (m == 0x00) {
        return s5_send_request(l);
    }
    if (m == 0x02 && l->offered_auth) {
        size_t ul = strlen(l->user), pl = l->pass ? strlen(l->pass) : 0;
        int rc = out_reserve(l, 3 + ul + pl);
        if (rc) return perr(l, rc, "out of memory");
        size_t n = 0;
        l->out[n++] = 0x01;
        l->out[n++] = (uint8_t)ul;
        memcpy(l->out + n, l->user, ul);
        n += ul;
        l->out[n++] = (uint8_t)pl;
        if (pl) memcpy(l->out + n, l->pass, pl);
        n += pl;
        l->out_len = n;
        l->out_off = 0;
        smtpc__free_secret(l->user);
        smtpc__free_secret(l->pass);
        l->user = l->pass = NULL;
        expect(l, ST_S5_AUTH, 2);
        return 0;
    }
    if (m == 0xff) {
        if (!l->offered_auth)
            return perr(l, SMTPC_EPROXY,
                        "authentication required: the proxy accepted none of the offered "
                        "methods (%s); give user:pass in the proxy URL",
                        offered);
        return perr(l, SMTPC_EPROXY,
                    "the proxy accepted none of the offered authentication methods (%s)", offered);
    }
    if (m == 0x02)
        return perr(l, SMTPC_EPROXY,
                    "authentication required: the proxy chose username/password, which was "
                    "not offered (no credentials configured)");
    return perr(l, SMTPC_EPROXY,
                "the proxy chose authentication method 0x%02x (%s), which was not offered "
                "(offered: %s)",
                m, s5_method_name(m), offered);
}

static int s5_auth_step(proxy_layer *l)
{
    wipe_out(l); /* the password has been sent: do not keep it */
    if (l->in[0] != 0x01)
        return perr(l, SMTPC_EPROXY,
                    "malformed SOCKS5 authentication reply (version byte 0x%02x, expected "
                    "0x01)",
                    l->in[0]);
    if (l->in[1] != 0x00)
        return perr(l, SMTPC_EPROXY,
                    "authentication failed: the proxy rejected the user name or password "
                    "(status 0x%02x)",
                    l->in[1]);
    return s5_send_request(l);
}

static int s5_reply_step(proxy_layer *l)
{
    if (l->state == ST_S5_REPLY_HEAD) {
        if (l->in[0] != 0x05)
            return perr(l, SMTPC_EPROXY,
                        "malformed SOCKS5 reply (version byte 0x%02x, expected 0x05)", l->in[0]);
        uint8_t rep = l->in[1];
        if (rep != 0x00) {
            const char *why = s5_code(rep);
            if (why)
                return perr(l, SMTPC_EPROXY, "CONNECT to %s failed: %s (reply 0x%02x)", l->target,
                            why, rep);
            return perr(l, SMTPC_EPROXY, "CONNECT to %s failed: unassigned reply code 0x%02x",
                        l->target, rep);
        }
        l->state = ST_S5_REPLY_ATYP;
        l->need = 5;
        return 0;
    }
    if (l->state == ST_S5_REPLY_ATYP) {
        size_t total;
        switch (l->in[3]) {
        case 0x01:
            total = 4 + 4 + 2;
            break;
        case 0x04:
            total = 4 + 16 + 2;
            break;
        case 0x03:
            total = 4 + 1 + (size_t)l->in[4] + 2;
            break;
        default:
            return perr(l, SMTPC_EPROXY, "malformed SOCKS5 reply (unknown address type 0x%02x)",
                        l->in[3]);
        }
        l->state = ST_S5_REPLY_REST;
        l->need = total;
        return 0;
    }
    l->state = ST_DONE;
    return 0;
}

/* ---- HTTP CONNECT -------------------------------------------------------- */

/* Index just past the blank line ending the header, or 0 when not yet in. */
static size_t http_header_end(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (p[i] != '\n') continue;
        if (p[i + 1] == '\n') return i + 2;
        if (p[i + 1] == '\r' && i + 2 < n && p[i + 2] == '\n') return i + 3;
    }
    return 0;
}

/* Finds header `name` in the header block; its value (trimmed) or NULL. */
static const char *http_find_header(const char *h, size_t n, const char *name, size_t *vlen)
{
    size_t nl = strlen(name);
    size_t i = 0;
    /* skip the status line */
    while (i < n && h[i] != '\n')
        i++;
    while (i < n) {
        i++; /* past '\n' */
        size_t ls = i;
        while (i < n && h[i] != '\n')
            i++;
        size_t le = i;
        if (le > ls && h[le - 1] == '\r') le--;
        if (le - ls > nl && h[ls + nl] == ':' && !smtpc__strncasecmp(h + ls, name, nl)) {
            size_t vs = ls + nl + 1;
            while (vs < le && (h[vs] == ' ' || h[vs] == '\t'))
                vs++;
            while (le > vs && (h[le - 1] == ' ' || h[le - 1] == '\t'))
                le--;
            *vlen = le - vs;
            return h + vs;
        }
    }
    return NULL;
}

static int http_judge(proxy_layer *l, size_t end)
{
    const char *h = (const char *)smtpc__buf_ptr(&l->http);
    size_t sl = 0;
    while (sl < end && h[sl] != '\n')
        sl++;
    size_t sle = sl;
    if (sle > 0 && h[sle - 1] == '\r') sle--;
    char esc[200];
    smtpc__escape_into(esc, sizeof esc, h, sle > 120 ? 120 : sle);
    /* HTTP/1.x SP 3DIGIT [SP reason] */
    if (sle < 12 || memcmp(h, "HTTP/1.", 7) != 0 || h[7] < '0' || h[7] > '9' || h[8] != ' ' ||
        h[9] < '1' || h[9] > '5' || h[10] < '0' || h[10] > '9' || h[11] < '0' || h[11] > '9' ||
        (sle > 12 && h[12] != ' '))
        return perr(l, SMTPC_EPROXY, "malformed HTTP response status line \"%s\"", esc);
    int code = (h[9] - '0') * 100 + (h[10] - '0') * 10 + (h[11] - '0');
    const char *reason = sle > 13 ? h + 13 : "";
    size_t rlen = sle > 13 ? sle - 13 : 0;
    char rs[160];
    smtpc__escape_into(rs, sizeof rs, reason, rlen > 100 ? 100 : rlen);
    if (code >= 200 && code < 300) {
        smtpc__buf_consume(&l->http, end);
        l->state = ST_DONE;
        return 0;
    }
    /* 407 is the standard answer; some proxies (tinyproxy) answer 401 to
     * wrong credentials on CONNECT: the same story for the user. */
    if (code == 407 || code == 401) {
        size_t vl = 0;
        const char *v = http_find_header(h, end, "Proxy-Authenticate", &vl);
        char ch[160] = "";
        if (v) {
            char tmp[120];
            smtpc__escape_into(tmp, sizeof tmp, v, vl > 80 ? 80 : vl);
            snprintf(ch, sizeof ch, "; the proxy asks for: %s", tmp);
        }
        return perr(l, SMTPC_EPROXY, "proxy authentication required (%d %s): %s%s", code, rs,
                    l->offered_auth ? "the credentials were rejected"
                                    : "no credentials configured (give user:pass in the proxy URL)",
                    ch);
    }
    if (code == 403)
        return perr(l, SMTPC_EPROXY, "CONNECT to %s forbidden by the proxy (%d %s)", l->target,
                    code, rs);
    if (code == 502 || code == 503 || code == 504)
        return perr(l, SMTPC_EPROXY, "the proxy could not reach %s (%d %s)", l->target, code, rs);
    return perr(l, SMTPC_EPROXY, "CONNECT to %s refused: the proxy answered %d %s", l->target, code,
                rs);
}

/* ---- the handshake loop -------------------------------------------------- */

static const char *phase(const proxy_layer *l);

/* The inner transport failed mid-handshake. A reset or a broken pipe is the
 * proxy hanging up on us: that is the proxy's failure (SMTPC_EPROXY) and
 * reads as such; timeouts, cancellation and the like keep their code. */
static int inner_failed(proxy_layer *l, int rc, bool reading)
{
    const char *why = l->base.inner->err.text[0] ? l->base.inner->err.text : smtpc_strerror(rc);
    if (rc == SMTPC_ENETWORK || rc == SMTPC_ECLOSED) {
        if (!reading)
            return perr(l, SMTPC_EPROXY,
                        "the proxy closed the connection while we sent the request (%s)", why);
        size_t have = l->state == ST_HTTP_HEADER ? smtpc__buf_size(&l->http) : l->in_len;
        return perr(l, SMTPC_EPROXY, "the proxy closed the connection %s the %s (%s)",
                    have ? "in the middle of" : "instead of sending", phase(l), why);
    }
    return perr(l, rc, "%s: %s", reading ? "reading the reply" : "sending the request", why);
}

static const char *phase(const proxy_layer *l)
{
    switch (l->state) {
    case ST_S4_REPLY:
        return "SOCKS4 reply";
    case ST_S5_METHOD:
        return "SOCKS5 method selection";
    case ST_S5_AUTH:
        return "SOCKS5 authentication reply";
    case ST_S5_REPLY_HEAD:
    case ST_S5_REPLY_ATYP:
    case ST_S5_REPLY_REST:
        return "SOCKS5 CONNECT reply";
    case ST_HTTP_HEADER:
        return "HTTP response header";
    }
    return "handshake";
}

static int proxy_handshake(smtpc__transport *t, int *want)
{
    proxy_layer *l = (proxy_layer *)t;
    smtpc__transport *in = t->inner;
    for (;;) {
        if (l->state == ST_FAILED) return l->failed_rc;
        while (l->out_off < l->out_len) {
            ssize_t n =
                smtpc__transport_write(in, l->out + l->out_off, l->out_len - l->out_off, want);
            if (n == SMTPC_EAGAIN) return SMTPC_EAGAIN;
            if (n < 0) return inner_failed(l, (int)n, false);
            l->out_off += (size_t)n;
        }
        if (l->state == ST_DONE) {
            /* credentials have no business outliving the handshake */
            wipe_out(l);
            smtpc__free_secret(l->user);
            smtpc__free_secret(l->pass);
            l->user = l->pass = NULL;
            return 0;
        }
        if (l->state == ST_HTTP_HEADER) {
            size_t have = smtpc__buf_size(&l->http);
            if (have >= SMTPC__PROXY_HTTP_MAX_HEADER)
                return perr(l, SMTPC_EPROXY, "the HTTP response header is longer than %d bytes",
                            SMTPC__PROXY_HTTP_MAX_HEADER);
            size_t room = SMTPC__PROXY_HTTP_MAX_HEADER - have;
            if (room > 4096) room = 4096;
            if (smtpc__buf_reserve(&l->http, room)) return perr(l, SMTPC_ENOMEM, "out of memory");
            ssize_t n = smtpc__transport_read(in, l->http.data + l->http.len, room, want);
            if (n == SMTPC_EAGAIN) return SMTPC_EAGAIN;
            if (n < 0) return inner_failed(l, (int)n, true);
            if (n == 0)
                return perr(l, SMTPC_EPROXY,
                            "the proxy closed the connection %s the HTTP response header "
                            "(%zu bytes received)",
                            have ? "in the middle of" : "instead of sending", have);
            l->http.len += (size_t)n;
            /* resume the search a little before the new bytes */
            size_t from = have > 3 ? have - 3 : 0;
            size_t e =
                http_header_end(smtpc__buf_ptr(&l->http) + from, smtpc__buf_size(&l->http) - from);
            if (e) {
                int rc = http_judge(l, from + e);
                if (rc) return rc;
            }
            continue;
        }
        while (l->in_len < l->need) {
            ssize_t n = smtpc__transport_read(in, l->in + l->in_len, l->need - l->in_len, want);
            if (n == SMTPC_EAGAIN) return SMTPC_EAGAIN;
            if (n < 0) return inner_failed(l, (int)n, true);
            if (n == 0)
                return perr(l, SMTPC_EPROXY,
                            "the proxy closed the connection %s the %s (%zu of %zu bytes "
                            "received)",
                            l->in_len ? "in the middle of" : "instead of sending", phase(l),
                            l->in_len, l->need);
            l->in_len += (size_t)n;
        }
        int rc;
        switch (l->state) {
        case ST_S4_REPLY:
            rc = s4_step(l);
            break;
        case ST_S5_METHOD:
            rc = s5_method_step(l);
            break;
        case ST_S5_AUTH:
            rc = s5_auth_step(l);
            break;
        default:
            rc = s5_reply_step(l);
            break;
        }
        if (rc) return rc;
    }
}

static ssize_t proxy_read(smtpc__transport *t, void *buf, size_t len, int *want)
{
    proxy_layer *l = (proxy_layer *)t;
    if (l->state != ST_DONE)
        return smtpc__err(&t->err, SMTPC_ESTATE, "%s: read before the handshake completed",
                          l->what);
    size_t have = smtpc__buf_size(&l->http);
    if (have) {
        size_t n = have < len ? have : len;
        memcpy(buf, smtpc__buf_ptr(&l->http), n);
        smtpc__buf_consume(&l->http, n);
        if (!smtpc__buf_size(&l->http)) smtpc__buf_free(&l->http);
        return (ssize_t)n;
    }
    ssize_t n = smtpc__transport_read(t->inner, buf, len, want);
    if (n < 0 && n != SMTPC_EAGAIN) t->err = t->inner->err;
    return n;
}

static ssize_t proxy_write(smtpc__transport *t, const void *buf, size_t len, int *want)
{
    proxy_layer *l = (proxy_layer *)t;
    if (l->state != ST_DONE)
        return smtpc__err(&t->err, SMTPC_ESTATE, "%s: write before the handshake completed",
                          l->what);
    ssize_t n = smtpc__transport_write(t->inner, buf, len, want);
    if (n < 0 && n != SMTPC_EAGAIN) t->err = t->inner->err;
    return n;
}

static size_t proxy_pending(const smtpc__transport *t)
{
    const proxy_layer *l = (const proxy_layer *)t;
    size_t n = l->state == ST_DONE ? smtpc__buf_size(&l->http) : 0;
    n += smtpc__transport_pending(t->inner);
    return n;
}

static void proxy_destroy(smtpc__transport *t)
{
    proxy_layer *l = (proxy_layer *)t;
    if (l->out) {
        smtpc__secure_zero(l->out, l->out_cap);
        free(l->out);
    }
    smtpc__secure_zero(l->in, sizeof l->in);
    smtpc__buf_free_secure(&l->http);
    smtpc__free_secret(l->user);
    smtpc__free_secret(l->pass);
    free(l);
}

static const smtpc__transport_ops socks4_ops = {
    .name = "socks4",
    .handshake = proxy_handshake,
    .read = proxy_read,
    .write = proxy_write,
    .pending = proxy_pending,
    .destroy = proxy_destroy,
};
static const smtpc__transport_ops socks5_ops = {
    .name = "socks5",
    .handshake = proxy_handshake,
    .read = proxy_read,
    .write = proxy_write,
    .pending = proxy_pending,
    .destroy = proxy_destroy,
};
static const smtpc__transport_ops http_ops = {
    .name = "http-proxy",
    .handshake = proxy_handshake,
    .read = proxy_read,
    .write = proxy_write,
    .pending = proxy_pending,
    .destroy = proxy_destroy,
};

/* The SOCKS5 layer keeps its CONNECT target while authenticating. */
typedef struct socks5_layer {
    proxy_layer l;
    s5_pending p;
} socks5_layer;

static s5_pending *pending_of(proxy_layer *l)
{
    return &((socks5_layer *)l)->p;
}

/* ---- construction -------------------------------------------------------- */

int smtpc__proxy_resolves_locally(smtpc_proxy_type type)
{
    return type == SMTPC_PROXY_SOCKS4 || type == SMTPC_PROXY_SOCKS5;
}

int smtpc__proxy_resolve_target(smtpc_proxy_type type, const char *host,
                                struct sockaddr_storage *out, smtpc__errmsg *err)
{
    memset(out, 0, sizeof *out);
    struct sockaddr_in *s4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        if (type == SMTPC_PROXY_SOCKS4)
            return smtpc__err(err, SMTPC_EUNSUPPORTED,
                              "SOCKS4 cannot connect to the IPv6 address %s (use socks5://)", host);
        memset(s6, 0, sizeof *s6);
        inet_pton(AF_INET6, host, &s6->sin6_addr);
        s6->sin6_family = AF_INET6;
        return 0;
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = type == SMTPC_PROXY_SOCKS4 ? AF_INET : AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int g = getaddrinfo(host, NULL, &hints, &res);
    if (g != 0 || !res) {
        char esc[300];
        smtpc__escape_into(esc, sizeof esc, host, strlen(host));
        if (res) freeaddrinfo(res);
        return smtpc__err(err, SMTPC_ENOHOST,
                          "cannot resolve %s%s (%s resolves target names locally; %s lets the "
                          "proxy resolve them): %s",
                          esc, type == SMTPC_PROXY_SOCKS4 ? " to an IPv4 address" : "",
                          smtpc_proxy_type_name(type),
                          type == SMTPC_PROXY_SOCKS4 ? "socks4a://" : "socks5h://",
                          g ? gai_strerror(g) : "no address");
    }
    memcpy(out, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

static void format_target(char *dst, size_t n, const char *host, uint16_t port)
{
    char esc[280];
    smtpc__escape_into(esc, sizeof esc, host, strlen(host));
    if (strchr(host, ':'))
        snprintf(dst, n, "[%s]:%u", esc, (unsigned)port);
    else
        snprintf(dst, n, "%s:%u", esc, (unsigned)port);
}

static int build_http_request(proxy_layer *l, const smtpc_proxy *cfg, const char *host,
                              uint16_t port)
{
    smtpc__buf b;
    /* it will hold the Basic credentials: no copy may be left on growth */
    smtpc__buf_init_secure(&b, 0);
    const char *lb = strchr(host, ':') ? "[" : "", *rb = strchr(host, ':') ? "]" : "";
    int rc = smtpc__buf_printf(&b, "CONNECT %s%s%s:%u HTTP/1.1\r\nHost: %s%s%s:%u\r\n", lb, host,
                               rb, (unsigned)port, lb, host, rb, (unsigned)port);
    if (!rc && cfg->user) {
        size_t ul = strlen(cfg->user), pl = cfg->pass ? strlen(cfg->pass) : 0;
        size_t cl = ul + 1 + pl;
        char *cred = malloc(cl + 1);
        char *enc = malloc(smtpc__b64_encoded_len(cl) + 1);
        if (!cred || !enc) {
            rc = SMTPC_ENOMEM;
        } else {
            memcpy(cred, cfg->user, ul);
            cred[ul] = ':';
            if (pl) memcpy(cred + ul + 1, cfg->pass, pl);
            smtpc__b64_encode(enc, (const uint8_t *)cred, cl);
            enc[smtpc__b64_encoded_len(cl)] = '\0';
            rc = smtpc__buf_printf(&b, "Proxy-Authorization: Basic %s\r\n", enc);
            smtpc__secure_zero(cred, cl);
            smtpc__secure_zero(enc, smtpc__b64_encoded_len(cl));
        }
        free(cred);
        free(enc);
        l->offered_auth = true;
    }
    if (!rc) rc = smtpc__buf_append_str(&b, "\r\n");
    if (rc) {
        smtpc__buf_free_secure(&b);
        return rc;
    }
    l->out = b.data;
    l->out_cap = b.cap;
    l->out_len = b.len;
    l->out_off = 0;
    return 0;
}

int smtpc__proxy_layer_new(smtpc__transport **out, smtpc__transport *inner, const smtpc_proxy *cfg,
                           const char *target_host, uint16_t target_port,
                           const struct sockaddr *target_addr, smtpc__errmsg *err)
{
    if (!out || !inner || !cfg || !target_host)
        return smtpc__err(err, SMTPC_EINVAL, "proxy: missing argument");
    smtpc_proxy_type type = cfg->type;
    size_t hl = strlen(target_host);
    if (hl == 0 || target_port == 0)
        return smtpc__err(err, SMTPC_EINVAL, "proxy %s: empty target host or port 0",
                          cfg->redacted);
    for (size_t i = 0; i < hl; i++) {
        unsigned char c = (unsigned char)target_host[i];
        if (c <= 0x20 || c == 0x7f)
            return smtpc__err(err, SMTPC_EINVAL,
                              "proxy %s: the target host has spaces or control characters",
                              cfg->redacted);
    }
    if (hl > 255)
        return smtpc__err(err, SMTPC_EINVAL, "proxy %s: the target host is longer than 255 bytes",
                          cfg->redacted);
    /* https: the same CONNECT, over an inner TLS layer the caller put there */
    bool http = type == SMTPC_PROXY_HTTP || type == SMTPC_PROXY_HTTPS;

    struct target_spec ts;
    memset(&ts, 0, sizeof ts);
    ts.host = target_host;
    ts.port = target_port;
    struct sockaddr_storage ss;
    if (!http) {
        const struct sockaddr *sa = target_addr;
        if (smtpc__proxy_resolves_locally(type)) {
            if (!sa) {
                int rc = smtpc__proxy_resolve_target(type, target_host, &ss, err);
                if (rc) return rc;
                sa = (const struct sockaddr *)&ss;
            }
        } else {
            /* socks4a / socks5h: literals go as addresses, names to the proxy */
            memset(&ss, 0, sizeof ss);
            struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
            if (inet_pton(AF_INET, target_host, &s4->sin_addr) == 1) {
                s4->sin_family = AF_INET;
                sa = (const struct sockaddr *)&ss;
            } else if (type == SMTPC_PROXY_SOCKS5H &&
                       inet_pton(AF_INET6, target_host, &s6->sin6_addr) == 1) {
                s6->sin6_family = AF_INET6;
                sa = (const struct sockaddr *)&ss;
            } else {
                sa = NULL;
            }
        }
        if (sa && sa->sa_family == AF_INET) {
            ts.family = AF_INET;
            memcpy(ts.addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        } else if (sa && sa->sa_family == AF_INET6) {
            if (type == SMTPC_PROXY_SOCKS4)
                return smtpc__err(err, SMTPC_EUNSUPPORTED,
                                  "proxy %s: SOCKS4 cannot connect to an IPv6 address (use "
                                  "socks5://)",
                                  cfg->redacted);
            ts.family = AF_INET6;
            memcpy(ts.addr, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        } else if (sa) {
            return smtpc__err(err, SMTPC_EINVAL, "proxy %s: unsupported target address family",
                              cfg->redacted);
        }
    }

    bool s5 = type == SMTPC_PROXY_SOCKS5 || type == SMTPC_PROXY_SOCKS5H;
    proxy_layer *l = s5 ? calloc(1, sizeof(socks5_layer)) : calloc(1, sizeof(proxy_layer));
    if (!l) return smtpc__err(err, SMTPC_ENOMEM, "out of memory");
    smtpc__buf_init(&l->http, SMTPC__PROXY_HTTP_MAX_HEADER);
    l->type = type;
    l->base.inner = inner;
    l->base.fd = inner->fd;
    snprintf(l->what, sizeof l->what, "%s proxy %s", type_label(type), cfg->redacted);
    format_target(l->target, sizeof l->target, target_host, target_port);
    int rc = 0;
    if (http) {
        l->base.ops = &http_ops;
        rc = build_http_request(l, cfg, target_host, target_port);
        l->state = ST_HTTP_HEADER;
    } else if (!s5) {
        /* VN=4 CD=1 DSTPORT DSTIP USERID\0 [HOST\0] */
        l->base.ops = &socks4_ops;
        const char *uid = cfg->user ? cfg->user : "";
        size_t ul = strlen(uid);
        bool name = ts.family == 0; /* socks4a with a name */
        rc = out_reserve(l, 8 + ul + 1 + (name ? hl + 1 : 0));
        if (!rc) {
            size_t n = 0;
            l->out[n++] = 0x04;
            l->out[n++] = 0x01;
            l->out[n++] = (uint8_t)(target_port >> 8);
            l->out[n++] = (uint8_t)(target_port & 0xff);
            if (name) {
                static const uint8_t four_a[4] = {0, 0, 0, 1}; /* 0.0.0.x: name follows */
                memcpy(l->out + n, four_a, 4);
            } else {
                memcpy(l->out + n, ts.addr, 4);
            }
            n += 4;
            memcpy(l->out + n, uid, ul + 1);
            n += ul + 1;
            if (name) {
                memcpy(l->out + n, target_host, hl + 1);
                n += hl + 1;
            }
            l->out_len = n;
        }
        expect(l, ST_S4_REPLY, 8);
    } else {
        l->base.ops = &socks5_ops;
        socks5_layer *s = (socks5_layer *)l;
        s->p.ts = ts;
        memcpy(s->p.host, target_host, hl + 1);
        s->p.ts.host = s->p.host;
        if (cfg->user) {
            l->offered_auth = true;
            l->user = smtpc__strdup(cfg->user);
            l->pass = smtpc__strdup(cfg->pass ? cfg->pass : "");
            if (!l->user || !l->pass) rc = SMTPC_ENOMEM;
        }
        if (!rc) rc = out_reserve(l, 4);
        if (!rc) {
            size_t n = 0;
            l->out[n++] = 0x05;
            if (l->offered_auth) {
                l->out[n++] = 2;
                l->out[n++] = 0x00;
                l->out[n++] = 0x02;
            } else {
                l->out[n++] = 1;
                l->out[n++] = 0x00;
            }
            l->out_len = n;
        }
        expect(l, ST_S5_METHOD, 2);
    }
    if (rc) {
        proxy_destroy(&l->base);
        return smtpc__err(err, rc, "out of memory");
    }
    *out = &l->base;
    return 0;
}
