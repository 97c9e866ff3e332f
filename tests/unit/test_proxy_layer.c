/* The proxy layers over a scripted in-memory inner transport: exact request
 * bytes, every reply delivered whole and split at every offset (with an
 * EAGAIN between pieces), truncation at every offset, every reply code,
 * and no byte of what follows the proxy's reply lost or eaten. */
#include "t.h"

#include "net/proxy.h"
#include "net/proxy_internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>

/* ---- the scripted inner transport -------------------------------------- */
typedef struct mem_t {
    smtpc__transport base;
    uint8_t *in; /* what the "proxy" sends; exact-size allocation */
    size_t in_len, in_off;
    size_t chunk; /* at most this many bytes per read (0 = all) */
    bool again;   /* answer EAGAIN once before each piece */
    bool again_armed;
    bool eof; /* after the script: EOF (else EAGAIN forever) */
    uint8_t out[8192];
    size_t out_len;
    size_t wchunk; /* at most this many bytes per write (0 = all) */
    int read_err;  /* after the script: this error (e.g. a reset) instead of EOF */
    int write_err; /* every write fails with this */
} mem_t;

static ssize_t mem_read(smtpc__transport *t, void *buf, size_t len, int *want)
{
    mem_t *m = (mem_t *)t;
    if (m->in_off == m->in_len) {
        if (m->read_err) return smtpc__err(&t->err, m->read_err, "read: Connection reset by peer");
        if (m->eof) return 0;
        *want = SMTPC__WANT_READ;
        return SMTPC_EAGAIN;
    }
    if (m->again && m->again_armed) {
        m->again_armed = false;
        *want = SMTPC__WANT_READ;
        return SMTPC_EAGAIN;
    }
    m->again_armed = true;
    size_t n = m->in_len - m->in_off;
    if (m->chunk && n > m->chunk) n = m->chunk;
    if (n > len) n = len;
    memcpy(buf, m->in + m->in_off, n);
    m->in_off += n;
    return (ssize_t)n;
}

static ssize_t mem_write(smtpc__transport *t, const void *buf, size_t len, int *want)
{
    mem_t *m = (mem_t *)t;
    if (m->write_err) return smtpc__err(&t->err, m->write_err, "write: Broken pipe");
    size_t n = len;
    if (m->wchunk && n > m->wchunk) n = m->wchunk;
    if (n > sizeof m->out - m->out_len) {
        *want = SMTPC__WANT_WRITE;
        return SMTPC_EAGAIN;
    }
    memcpy(m->out + m->out_len, buf, n);
    m->out_len += n;
    return (ssize_t)n;
}

static size_t mem_pending(const smtpc__transport *t)
{
    SMTPC__UNUSED(t);
    return 0;
}

static void mem_destroy(smtpc__transport *t)
{
    mem_t *m = (mem_t *)t;
    free(m->in);
    free(m);
}

static const smtpc__transport_ops mem_ops = {
    .name = "mem",
    .read = mem_read,
    .write = mem_write,
    .pending = mem_pending,
    .destroy = mem_destroy,
};

static mem_t *mem_new(const void *script, size_t n, size_t chunk, bool eof)
{
    mem_t *m = calloc(1, sizeof *m);
    m->base.ops = &mem_ops;
    m->base.fd = -1;
    m->in = malloc(n ? n : 1);
    memcpy(m->in, script, n);
    m->in_len = n;
    m->chunk = chunk;
    m->again = chunk != 0;
    m->eof = eof;
    return m;
}

static smtpc_proxy *P(const char *url)
{
    smtpc_proxy *p = NULL;
    char why[256];
    if (smtpc_proxy_parse_url(&p, url, why, sizeof why)) {
        fprintf(stderr, "bad test URL %s: %s\n", url, why);
        abort();
    }
    return p;
}

/* Runs the handshake to the end (bounded: a stuck layer fails the test). */
static int drive(smtpc__transport *t)
{
    for (int i = 0; i < 100000; i++) {
        int want = 0;
        int rc = t->ops->handshake(t, &want);
        if (rc != SMTPC_EAGAIN) return rc;
        if (want != SMTPC__WANT_READ && want != SMTPC__WANT_WRITE) return -999;
        mem_t *m = (mem_t *)t->inner;
        if (m->in_off == m->in_len && !m->eof) return SMTPC_EAGAIN; /* would wait forever */
    }
    return -998;
}

typedef struct run_result {
    int rc;
    char err[SMTPC__ERRMSG_MAX];
    uint8_t sent[8192];
    size_t sent_len;
    size_t left_in_inner; /* script bytes the layer did not read */
    uint8_t after[256];   /* what read() returns after the handshake */
    size_t after_len;
    size_t pending_before;
} run_result;

/* One handshake of `url` to host:port against `script`, read in `chunk`-byte
 * pieces (0 = whole). */
static void run(run_result *r, const char *url, const char *host, uint16_t port,
                const struct sockaddr *addr, const void *script, size_t n, size_t chunk, bool eof)
{
    memset(r, 0, sizeof *r);
    smtpc_proxy *cfg = P(url);
    mem_t *m = mem_new(script, n, chunk, eof);
    m->wchunk = chunk;
    smtpc__transport *t = NULL;
    smtpc__errmsg err;
    smtpc__err_clear(&err);
    int rc = smtpc__proxy_layer_new(&t, &m->base, cfg, host, port, addr, &err);
    if (rc) {
        r->rc = rc;
        snprintf(r->err, sizeof r->err, "%s", err.text);
        mem_destroy(&m->base);
        smtpc_proxy_free(cfg);
        return;
    }
    r->rc = drive(t);
    snprintf(r->err, sizeof r->err, "%s", r->rc ? t->err.text : "");
    memcpy(r->sent, m->out, m->out_len);
    r->sent_len = m->out_len;
    r->left_in_inner = m->in_len - m->in_off;
    if (r->rc == 0) {
        r->pending_before = t->ops->pending(t);
        for (;;) {
            int want = 0;
            ssize_t k =
                t->ops->read(t, r->after + r->after_len, sizeof r->after - r->after_len, &want);
            if (k == SMTPC_EAGAIN && m->in_off < m->in_len) continue; /* scripted pause */
            if (k <= 0) break;
            r->after_len += (size_t)k;
        }
    }
    smtpc__transport_free(t);
    smtpc_proxy_free(cfg);
}

#define GREETING "220 target ready\r\n"

/* Runs whole and at every chunk size; checks success, the request, and that
 * exactly GREETING comes out afterwards. */
static void ok_everywhere(const char *url, const char *host, uint16_t port,
                          const struct sockaddr *addr, const void *reply, size_t rn,
                          const void *req, size_t qn)
{
    uint8_t script[1024];
    memcpy(script, reply, rn);
    memcpy(script + rn, GREETING, strlen(GREETING));
    size_t sn = rn + strlen(GREETING);
    for (size_t chunk = 0; chunk <= sn; chunk++) {
        run_result r;
        run(&r, url, host, port, addr, script, sn, chunk, true);
        if (r.rc != 0) {
            T_FAILF("%s chunk %zu: rc %d: %s", url, chunk, r.rc, r.err);
            return;
        }
        CHECK_MEM(r.sent, r.sent_len, req, qn);
        CHECK_MEM(r.after, r.after_len, GREETING, strlen(GREETING));
    }
}

/* Expects failure with `code` and `sub` in the message, whole and split. */
static void fails_everywhere(const char *url, const char *host, uint16_t port, const void *reply,
                             size_t rn, bool eof, int code, const char *sub)
{
    for (size_t chunk = 0; chunk <= rn; chunk++) {
        run_result r;
        run(&r, url, host, port, NULL, reply, rn, chunk, eof);
        if (r.rc != code) {
            T_FAILF("%s chunk %zu: rc %d, expected %d (%s)", url, chunk, r.rc, code, r.err);
            return;
        }
        if (!strstr(r.err, sub)) {
            T_FAILF("%s chunk %zu: \"%s\" lacks \"%s\"", url, chunk, r.err, sub);
            return;
        }
        if (strstr(r.err, "s3cr3t")) T_FAILF("password in \"%s\"", r.err);
    }
}

/* ---- SOCKS5 -------------------------------------------------------------- */

static const uint8_t S5_NOAUTH[] = {5, 0};
static const uint8_t S5_OK_V4[] = {5, 0, 0, 1, 10, 0, 0, 1, 0x12, 0x34};

TEST(socks5h_name_noauth)
{
    uint8_t reply[64], req[64];
    size_t rn = 0, qn = 0;
    memcpy(reply, S5_NOAUTH, 2);
    memcpy(reply + 2, S5_OK_V4, sizeof S5_OK_V4);
    rn = 2 + sizeof S5_OK_V4;
    static const uint8_t greet[] = {5, 1, 0};
    memcpy(req, greet, 3);
    qn = 3;
    static const uint8_t conn[] = {5,   1,   0,   3,   10,  'm', 'x', '.', 'e',
                                   'x', 'a', 'm', 'p', 'l', 'e', 0,   25};
    memcpy(req + qn, conn, sizeof conn);
    qn += sizeof conn;
    ok_everywhere("socks5h://127.0.0.1:1080", "mx.example", 25, NULL, reply, rn, req, qn);
}

TEST(socks5_reply_with_domain_and_v6_bound_address)
{
    /* the BND.ADDR of the reply is a 255-byte name / an IPv6 address: read
     * whole, and not one byte further */
    uint8_t reply[400];
    size_t rn = 0;
    reply[rn++] = 5;
    reply[rn++] = 0;
    reply[rn++] = 5;
    reply[rn++] = 0;
    reply[rn++] = 0;
    reply[rn++] = 3;
    reply[rn++] = 255;
    memset(reply + rn, 'b', 255);
    rn += 255;
    reply[rn++] = 0;
    reply[rn++] = 25;
    static const uint8_t req[] = {5, 1, 0, 5, 1, 0, 1, 192, 0, 2, 7, 0x01, 0xbb};
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0};
    inet_pton(AF_INET, "192.0.2.7", &sin.sin_addr);
    ok_everywhere("socks5://127.0.0.1", "ignored.example", 443, (struct sockaddr *)&sin, reply, rn,
                  req, sizeof req);

    uint8_t r6[64];
    static const uint8_t head[] = {5, 0, 5, 0, 0, 4};
    memcpy(r6, head, sizeof head);
    memset(r6 + sizeof head, 0xfe, 16);
    r6[sizeof head + 16] = 0;
    r6[sizeof head + 17] = 1;
    uint8_t q6[64] = {5, 1, 0, 5, 1, 0, 4};
    inet_pton(AF_INET6, "2001:db8::25", q6 + 7);
    q6[23] = 0;
    q6[24] = 25;
    /* socks5h with an IPv6 literal target sends it as an address */
    ok_everywhere("socks5h://127.0.0.1", "2001:db8::25", 25, NULL, r6, sizeof head + 18, q6, 25);
    /* socks5 (local resolution) of a literal: no lookup needed */
    ok_everywhere("socks5://127.0.0.1", "2001:db8::25", 25, NULL, r6, sizeof head + 18, q6, 25);
}

TEST(socks5h_ipv4_literal_goes_as_address)
{
    uint8_t reply[32];
    memcpy(reply, S5_NOAUTH, 2);
    memcpy(reply + 2, S5_OK_V4, sizeof S5_OK_V4);
    static const uint8_t req[] = {5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0x09, 0x3d};
    ok_everywhere("socks5h://[::1]:1080", "127.0.0.1", 2365, NULL, reply, 2 + sizeof S5_OK_V4, req,
                  sizeof req);
}

TEST(socks5_userpass)
{
    uint8_t reply[32];
    size_t rn = 0;
    reply[rn++] = 5;
    reply[rn++] = 2; /* method: username/password */
    reply[rn++] = 1;
    reply[rn++] = 0; /* auth ok */
    memcpy(reply + rn, S5_OK_V4, sizeof S5_OK_V4);
    rn += sizeof S5_OK_V4;
    uint8_t req[64];
    size_t qn = 0;
    static const uint8_t greet[] = {5, 2, 0, 2};
    memcpy(req, greet, 4);
    qn = 4;
    static const uint8_t auth[] = {1, 5, 'a', 'l', '@', 'c', 'e', 6, 's', '3', 'c', 'r', '3', 't'};
    memcpy(req + qn, auth, sizeof auth);
    qn += sizeof auth;
    static const uint8_t conn[] = {5, 1, 0, 3, 1, 'h', 0, 25};
    memcpy(req + qn, conn, sizeof conn);
    qn += sizeof conn;
    ok_everywhere("socks5h://al%40ce:s3cr3t@127.0.0.1", "h", 25, NULL, reply, rn, req, qn);
    /* the proxy may also accept without authentication although we offered it */
    uint8_t r2[32];
    memcpy(r2, S5_NOAUTH, 2);
    memcpy(r2 + 2, S5_OK_V4, sizeof S5_OK_V4);
    static const uint8_t q2[] = {5, 2, 0, 2, 5, 1, 0, 3, 1, 'h', 0, 25};
    ok_everywhere("socks5h://u:s3cr3t@127.0.0.1", "h", 25, NULL, r2, 2 + sizeof S5_OK_V4, q2,
                  sizeof q2);
}

TEST(socks5_auth_failures)
{
    static const uint8_t bad_pw[] = {5, 2, 1, 1};
    fails_everywhere("socks5h://u:s3cr3t@127.0.0.1", "h", 25, bad_pw, sizeof bad_pw, true,
                     SMTPC_EPROXY,
                     "authentication failed: the proxy rejected the user name or password "
                     "(status 0x01)");
    static const uint8_t none_ok[] = {5, 0xff};
    fails_everywhere("socks5h://127.0.0.1", "h", 25, none_ok, 2, true, SMTPC_EPROXY,
                     "authentication required: the proxy accepted none of the offered methods "
                     "(no authentication)");
    fails_everywhere("socks5h://u:s3cr3t@127.0.0.1", "h", 25, none_ok, 2, true, SMTPC_EPROXY,
                     "accepted none of the offered authentication methods (no authentication, "
                     "username/password)");
    static const uint8_t wants_pw[] = {5, 2};
    fails_everywhere("socks5h://127.0.0.1", "h", 25, wants_pw, 2, true, SMTPC_EPROXY,
                     "authentication required: the proxy chose username/password");
    static const uint8_t gssapi[] = {5, 1};
    fails_everywhere("socks5h://127.0.0.1", "h", 25, gssapi, 2, true, SMTPC_EPROXY,
                     "method 0x01 (GSSAPI), which was not offered");
    static const uint8_t bad_auth_ver[] = {5, 2, 5, 0};
    fails_everywhere("socks5h://u:s3cr3t@127.0.0.1", "h", 25, bad_auth_ver, 4, true, SMTPC_EPROXY,
                     "malformed SOCKS5 authentication reply");
}

TEST(socks5_every_reply_code)
{
    static const char *const names[] = {
        NULL,
        "general SOCKS server failure (reply 0x01)",
        "connection not allowed by ruleset (reply 0x02)",
        "network unreachable (reply 0x03)",
        "host unreachable (reply 0x04)",
        "connection refused (reply 0x05)",
        "TTL expired (reply 0x06)",
        "command not supported (reply 0x07)",
        "address type not supported (reply 0x08)",
    };
    for (int code = 1; code <= 0xff; code++) {
        /* a full reply, and one cut right after the code: the code is enough */
        uint8_t reply[] = {5, 0, 5, (uint8_t)code, 0, 1, 0, 0, 0, 0, 0, 0};
        char want[200];
        if (code < 9)
            snprintf(want, sizeof want,
                     "SOCKS5 proxy socks5h://u:***@127.0.0.1:1080: CONNECT "
                     "to mx.example:25 failed: %s",
                     names[code]);
        else
            snprintf(want, sizeof want, "unassigned reply code 0x%02x", code);
        fails_everywhere("socks5h://u:s3cr3t@127.0.0.1", "mx.example", 25, reply, sizeof reply,
                         true, SMTPC_EPROXY, want);
        fails_everywhere("socks5h://u:s3cr3t@127.0.0.1", "mx.example", 25, reply, 4, true,
                         SMTPC_EPROXY, want);
    }
}

TEST(socks5_malformed)
{
    static const uint8_t http[] = "HTTP/1.1 400 Bad Request\r\n\r\n";
    fails_everywhere("socks5h://127.0.0.1", "h", 25, http, sizeof http - 1, true, SMTPC_EPROXY,
                     "malformed SOCKS5 reply (version byte 0x48, expected 0x05); is it an HTTP "
                     "proxy?");
    static const uint8_t v4[] = {5, 0, 4, 0, 0, 1, 1, 2, 3, 4, 0, 1};
    fails_everywhere("socks5h://127.0.0.1", "h", 25, v4, sizeof v4, true, SMTPC_EPROXY,
                     "malformed SOCKS5 reply (version byte 0x04");
    static const uint8_t atyp[] = {5, 0, 5, 0, 0, 7, 1, 2, 3, 4, 0, 1};
    fails_everywhere("socks5h://127.0.0.1", "h", 25, atyp, sizeof atyp, true, SMTPC_EPROXY,
                     "malformed SOCKS5 reply (unknown address type 0x07)");
}

TEST(socks5_truncated_at_every_offset)
{
    /* user/pass + a domain reply: EOF after each prefix */
    uint8_t full[64];
    size_t n = 0;
    static const uint8_t head[] = {5, 2, 1, 0, 5, 0, 0, 3, 4, 'a', 'b', 'c', 'd', 0, 25};
    memcpy(full, head, sizeof head);
    n = sizeof head;
    for (size_t cut = 0; cut < n; cut++) {
        const char *sub = cut == 0 ? "closed the connection instead of sending the SOCKS5 "
                                     "method selection (0 of 2 bytes received)"
                                   : "the proxy closed the connection";
        fails_everywhere("socks5h://u:s3cr3t@127.0.0.1", "h", 25, full, cut, true, SMTPC_EPROXY,
                         sub);
    }
    fails_everywhere("socks5h://u:s3cr3t@127.0.0.1", "h", 25, full, 1, true, SMTPC_EPROXY,
                     "in the middle of the SOCKS5 method selection (1 of 2 bytes received)");
    fails_everywhere("socks5h://u:s3cr3t@127.0.0.1", "h", 25, full, 10, true, SMTPC_EPROXY,
                     "in the middle of the SOCKS5 CONNECT reply (6 of 11 bytes received)");
}

TEST(socks5_silent_proxy_waits_for_read)
{
    /* no answer: the layer keeps asking to read, never spins or fails */
    run_result r;
    run(&r, "socks5h://127.0.0.1", "h", 25, NULL, "", 0, 0, false);
    CHECK_INT(r.rc, SMTPC_EAGAIN);
    static const uint8_t greet[] = {5, 1, 0};
    CHECK_MEM(r.sent, r.sent_len, greet, 3);
}

/* ---- SOCKS4 / 4a --------------------------------------------------------- */

TEST(socks4_ok)
{
    static const uint8_t reply[] = {0, 0x5a, 0, 0, 0, 0, 0, 0};
    static const uint8_t req[] = {4, 1, 0, 25, 192, 0, 2, 1, 'i', 'd', 0};
    struct sockaddr_in sin = {.sin_family = AF_INET};
    inet_pton(AF_INET, "192.0.2.1", &sin.sin_addr);
    ok_everywhere("socks4://id@127.0.0.1", "mx.example", 25, (struct sockaddr *)&sin, reply,
                  sizeof reply, req, sizeof req);
    /* a literal needs no resolution */
    static const uint8_t req2[] = {4, 1, 0, 25, 192, 0, 2, 1, 0};
    ok_everywhere("socks4://127.0.0.1", "192.0.2.1", 25, NULL, reply, sizeof reply, req2,
                  sizeof req2);
}

TEST(socks4a_name)
{
    static const uint8_t reply[] = {0, 0x5a, 0, 0, 0, 0, 0, 0};
    static const uint8_t req[] = {4, 1, 0, 25, 0, 0, 0, 1, 0, 'm', 'x', '.', 'e', 'x', 0};
    ok_everywhere("socks4a://127.0.0.1", "mx.ex", 25, NULL, reply, sizeof reply, req, sizeof req);
    /* an IPv4 literal goes as an address even for 4a */
    static const uint8_t req2[] = {4, 1, 0, 25, 10, 1, 2, 3, 'u', 0};
    ok_everywhere("socks4a://u@127.0.0.1", "10.1.2.3", 25, NULL, reply, sizeof reply, req2,
                  sizeof req2);
}

TEST(socks4_failures)
{
    static const uint8_t rej[] = {0, 0x5b, 0, 0, 0, 0, 0, 0};
    fails_everywhere("socks4a://127.0.0.1", "mx.ex", 25, rej, sizeof rej, true, SMTPC_EPROXY,
                     "SOCKS4a proxy socks4a://127.0.0.1:1080: CONNECT to mx.ex:25 refused: "
                     "request rejected or failed (reply 0x5b)");
    static const uint8_t identd[] = {0, 0x5c, 0, 0, 0, 0, 0, 0};
    fails_everywhere("socks4a://127.0.0.1", "mx.ex", 25, identd, 8, true, SMTPC_EPROXY,
                     "cannot reach our identd (reply 0x5c)");
    static const uint8_t uid[] = {0, 0x5d, 0, 0, 0, 0, 0, 0};
    fails_everywhere("socks4a://127.0.0.1", "mx.ex", 25, uid, 8, true, SMTPC_EPROXY,
                     "different user id (reply 0x5d)");
    static const uint8_t unk[] = {0, 0x10, 0, 0, 0, 0, 0, 0};
    fails_everywhere("socks4a://127.0.0.1", "mx.ex", 25, unk, 8, true, SMTPC_EPROXY,
                     "malformed SOCKS4 reply (unknown reply code 0x10)");
    static const uint8_t ver[] = {5, 0, 0, 0, 0, 0, 0, 0};
    fails_everywhere("socks4a://127.0.0.1", "mx.ex", 25, ver, 8, true, SMTPC_EPROXY,
                     "malformed SOCKS4 reply (version byte 0x05, expected 0x00)");
    fails_everywhere("socks4a://127.0.0.1", "mx.ex", 25, rej, 5, true, SMTPC_EPROXY,
                     "in the middle of the SOCKS4 reply (5 of 8 bytes received)");
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
    run_result r;
    run(&r, "socks4://127.0.0.1", "h", 25, (struct sockaddr *)&s6, "", 0, 0, true);
    CHECK_INT(r.rc, SMTPC_EUNSUPPORTED);
    run(&r, "socks4://127.0.0.1", "::1", 25, NULL, "", 0, 0, true);
    CHECK_INT(r.rc, SMTPC_EUNSUPPORTED);
    CHECK(strstr(r.err, "IPv6") != NULL);
}

/* ---- HTTP CONNECT -------------------------------------------------------- */

#define CONNECT_REQ(auth) "CONNECT mx.example:25 HTTP/1.1\r\nHost: mx.example:25\r\n" auth "\r\n"

TEST(http_ok_keeps_bytes_after_header)
{
    static const char reply[] = "HTTP/1.1 200 Connection established\r\nVia: x\r\n\r\n";
    static const char req[] = CONNECT_REQ("Proxy-Authorization: Basic dTpzM2NyM3Q=\r\n");
    /* GREETING arrives in the same packet as the header: returned by read() */
    ok_everywhere("http://u:s3cr3t@127.0.0.1:3128", "mx.example", 25, NULL, reply, sizeof reply - 1,
                  req, sizeof req - 1);
    static const char req2[] = CONNECT_REQ("");
    ok_everywhere("http://127.0.0.1:3128", "mx.example", 25, NULL, reply, sizeof reply - 1, req2,
                  sizeof req2 - 1);
    /* bare LF line ends, HTTP/1.0, no reason phrase */
    static const char lf[] = "HTTP/1.0 200\nX: y\n\n";
    ok_everywhere("http://127.0.0.1:3128", "mx.example", 25, NULL, lf, sizeof lf - 1, req2,
                  sizeof req2 - 1);
    /* user without password: "u:" */
    static const char req3[] = CONNECT_REQ("Proxy-Authorization: Basic dTo=\r\n");
    ok_everywhere("http://u@127.0.0.1:3128", "mx.example", 25, NULL, reply, sizeof reply - 1, req3,
                  sizeof req3 - 1);
}

TEST(http_pending_counts_leftover)
{
    static const char s[] = "HTTP/1.1 200 OK\r\n\r\n" GREETING;
    run_result r;
    run(&r, "http://127.0.0.1:3128", "mx.example", 25, NULL, s, sizeof s - 1, 0, true);
    CHECK_INT(r.rc, 0);
    CHECK_INT(r.pending_before, strlen(GREETING));
}

TEST(http_ipv6_target)
{
    static const char reply[] = "HTTP/1.1 200 OK\r\n\r\n";
    static const char req[] =
        "CONNECT [2001:db8::1]:587 HTTP/1.1\r\nHost: [2001:db8::1]:587\r\n\r\n";
    ok_everywhere("http://[::1]:3128", "2001:db8::1", 587, NULL, reply, sizeof reply - 1, req,
                  sizeof req - 1);
}

TEST(http_errors)
{
    static const char r407[] = "HTTP/1.1 407 Proxy Authentication Required\r\n"
                               "Proxy-Authenticate: Basic realm=\"corp\"\r\n\r\n";
    fails_everywhere("http://127.0.0.1:3128", "mx.example", 25, r407, sizeof r407 - 1, true,
                     SMTPC_EPROXY,
                     "HTTP proxy http://127.0.0.1:3128: proxy authentication required (407 Proxy "
                     "Authentication Required): no credentials configured (give user:pass in "
                     "the proxy URL); the proxy asks for: Basic realm=\"corp\"");
    fails_everywhere("http://u:s3cr3t@127.0.0.1:3128", "mx.example", 25, r407, sizeof r407 - 1,
                     true, SMTPC_EPROXY, "the credentials were rejected");
    static const char r401[] = "HTTP/1.0 401 Unauthorized\r\n\r\n";
    fails_everywhere("http://u:s3cr3t@127.0.0.1:3128", "mx.example", 25, r401, sizeof r401 - 1,
                     true, SMTPC_EPROXY,
                     "proxy authentication required (401 Unauthorized): the credentials were "
                     "rejected");
    static const char r403[] = "HTTP/1.1 403 Forbidden\r\n\r\n";
    fails_everywhere("http://127.0.0.1:3128", "mx.example", 25, r403, sizeof r403 - 1, true,
                     SMTPC_EPROXY,
                     "CONNECT to mx.example:25 forbidden by the proxy (403 Forbidden)");
    static const char r502[] = "HTTP/1.1 502 Bad\x1b[31m Gateway\r\n\r\n";
    fails_everywhere("http://127.0.0.1:3128", "mx.example", 25, r502, sizeof r502 - 1, true,
                     SMTPC_EPROXY,
                     "the proxy could not reach mx.example:25 (502 Bad\\x1b[31m Gateway)");
    static const char r500[] = "HTTP/1.1 500 Oops\r\n\r\n";
    fails_everywhere("http://127.0.0.1:3128", "mx.example", 25, r500, sizeof r500 - 1, true,
                     SMTPC_EPROXY, "CONNECT to mx.example:25 refused: the proxy answered 500 Oops");
    static const char garbage[] = "SSH-2.0-OpenSSH\r\n\r\n";
    fails_everywhere("http://127.0.0.1:3128", "mx.example", 25, garbage, sizeof garbage - 1, true,
                     SMTPC_EPROXY, "malformed HTTP response status line \"SSH-2.0-OpenSSH\"");
    static const char bad_code[] = "HTTP/1.1 2x0 OK\r\n\r\n";
    fails_everywhere("http://127.0.0.1:3128", "mx.example", 25, bad_code, sizeof bad_code - 1, true,
                     SMTPC_EPROXY, "malformed HTTP response status line");
    static const char cut[] = "HTTP/1.1 200 OK\r\nX: y\r\n";
    fails_everywhere("http://127.0.0.1:3128", "mx.example", 25, cut, sizeof cut - 1, true,
                     SMTPC_EPROXY,
                     "the proxy closed the connection in the middle of the HTTP "
                     "response header (23 bytes received)");
    fails_everywhere("http://127.0.0.1:3128", "mx.example", 25, "", 0, true, SMTPC_EPROXY,
                     "closed the connection instead of sending the HTTP response header");
}

TEST(http_endless_header)
{
    size_t n = 40000;
    char *big = malloc(n);
    memcpy(big, "HTTP/1.1 200 OK\r\n", 17);
    for (size_t i = 17; i < n; i++)
        big[i] = (i % 50 == 0) ? '\n' : 'x';
    run_result r;
    run(&r, "http://127.0.0.1:3128", "mx.example", 25, NULL, big, n, 0, true);
    CHECK_INT(r.rc, SMTPC_EPROXY);
    CHECK(strstr(r.err, "the HTTP response header is longer than 16384 bytes") != NULL);
    /* it stopped reading at the limit */
    CHECK_INT(r.left_in_inner, n - 16384);
    free(big);
}

/* ---- construction errors ------------------------------------------------- */

TEST(bad_targets)
{
    run_result r;
    run(&r, "socks5h://127.0.0.1", "", 25, NULL, "", 0, 0, true);
    CHECK_INT(r.rc, SMTPC_EINVAL);
    run(&r, "socks5h://127.0.0.1", "h", 0, NULL, "", 0, 0, true);
    CHECK_INT(r.rc, SMTPC_EINVAL);
    run(&r, "http://127.0.0.1", "h\r\nX-Evil: 1", 25, NULL, "", 0, 0, true);
    CHECK_INT(r.rc, SMTPC_EINVAL);
    CHECK(strstr(r.err, "control characters") != NULL);
    run(&r, "http://127.0.0.1", "h x", 25, NULL, "", 0, 0, true);
    CHECK_INT(r.rc, SMTPC_EINVAL);
    char longname[300];
    memset(longname, 'a', 256);
    longname[256] = '\0';
    run(&r, "socks5h://u:s3cr3t@127.0.0.1", longname, 25, NULL, "", 0, 0, true);
    CHECK_INT(r.rc, SMTPC_EINVAL);
    CHECK(strstr(r.err, "longer than 255") != NULL);
    CHECK(strstr(r.err, "u:***@") != NULL && !strstr(r.err, "s3cr3t"));
}

/* https: the same CONNECT over whatever inner layer (TLS) the caller built */
TEST(https_layer_is_connect_over_inner)
{
    static const char reply[] = "HTTP/1.1 200 OK\r\n\r\n";
    static const char req[] = CONNECT_REQ("Proxy-Authorization: Basic dTpzM2NyM3Q=\r\n");
    ok_everywhere("https://u:s3cr3t@127.0.0.1", "mx.example", 25, NULL, reply, sizeof reply - 1,
                  req, sizeof req - 1);
    static const char r403[] = "HTTP/1.1 403 No\r\n\r\n";
    fails_everywhere("https://u:s3cr3t@127.0.0.1", "mx.example", 25, r403, sizeof r403 - 1, true,
                     SMTPC_EPROXY,
                     "HTTPS proxy https://u:***@127.0.0.1:443: CONNECT to "
                     "mx.example:25 forbidden by the proxy (403 No)");
}

TEST(io_before_handshake_is_a_state_error)
{
    smtpc_proxy *cfg = P("socks5h://127.0.0.1");
    mem_t *m = mem_new("", 0, 0, false);
    smtpc__transport *t = NULL;
    smtpc__errmsg err;
    CHECK_INT(smtpc__proxy_layer_new(&t, &m->base, cfg, "h", 25, NULL, &err), 0);
    if (t) {
        char b[4];
        int want = 0;
        CHECK_INT(t->ops->read(t, b, sizeof b, &want), SMTPC_ESTATE);
        CHECK_INT(t->ops->write(t, "x", 1, &want), SMTPC_ESTATE);
        CHECK_INT(m->out_len, 0);
        CHECK_STR(t->ops->name, "socks5");
        smtpc__transport_free(t);
    }
    smtpc_proxy_free(cfg);
}

static size_t released, released_nonzero;

static void on_release(const void *p, size_t n)
{
    released++;
    for (size_t i = 0; i < n; i++) released_nonzero += ((const uint8_t *)p)[i] != 0;
}

/* The CONNECT request carries the Basic credentials: the buffer it is built
 * in grows (a long password) without leaving a copy in the blocks it gives
 * up. */
TEST(http_credentials_leave_no_copy)
{
    char url[400];
    char pw[251]; /* the longest a proxy URL takes is 255 */
    memset(pw, 'p', sizeof pw - 1);
    pw[sizeof pw - 1] = '\0';
    snprintf(url, sizeof url, "http://u:%s@127.0.0.1:8080", pw);
    smtpc_proxy *cfg = P(url);
    mem_t *m = mem_new("", 0, 0, false);
    smtpc__transport *t = NULL;
    smtpc__errmsg err;
    smtpc__buf_release_hook = on_release;
    released = released_nonzero = 0;
    CHECK_INT(smtpc__proxy_layer_new(&t, &m->base, cfg, "mx.example", 25, NULL, &err), 0);
    smtpc__buf_release_hook = NULL;
    CHECK(released >= 1); /* it grew past its first block */
    CHECK_INT(released_nonzero, 0);
    if (t) smtpc__transport_free(t);
    else mem_destroy(&m->base);
    smtpc_proxy_free(cfg);
}

TEST(local_resolution_failure)
{
    run_result r;
    run(&r, "socks4://127.0.0.1", "no-such-host.invalid", 25, NULL, "", 0, 0, true);
    CHECK_INT(r.rc, SMTPC_ENOHOST);
    CHECK(strstr(r.err, "socks4a://") != NULL);
    run(&r, "socks5://127.0.0.1", "no-such-host.invalid", 25, NULL, "", 0, 0, true);
    CHECK_INT(r.rc, SMTPC_ENOHOST);
    CHECK(strstr(r.err, "socks5h://") != NULL);
}

/* A reset by the proxy mid-handshake is the proxy hanging up: EPROXY, with
 * the system's words; a timeout of the inner layer keeps its code. */
TEST(inner_errors)
{
    static const struct {
        const char *url;
        size_t n;
        int read_err, write_err, rc;
        const char *sub;
    } cases[] = {
        {"socks5h://127.0.0.1", 0, SMTPC_ENETWORK, 0, SMTPC_EPROXY,
         "the proxy closed the connection instead of sending the SOCKS5 method selection "
         "(read: Connection reset by peer)"},
        {"socks5h://127.0.0.1", 3, SMTPC_ENETWORK, 0, SMTPC_EPROXY,
         "the proxy closed the connection in the middle of the SOCKS5 CONNECT reply "
         "(read: Connection reset by peer)"},
        {"http://127.0.0.1", 5, SMTPC_ENETWORK, 0, SMTPC_EPROXY,
         "the proxy closed the connection in the middle of the HTTP response header "
         "(read: Connection reset by peer)"},
        {"socks4a://127.0.0.1", 0, 0, SMTPC_ENETWORK, SMTPC_EPROXY,
         "the proxy closed the connection while we sent the request (write: Broken pipe)"},
        {"socks5h://127.0.0.1", 0, SMTPC_ETIMEDOUT, 0, SMTPC_ETIMEDOUT,
         "reading the reply: read: Connection reset by peer"},
    };
    static const uint8_t script[] = {5, 0, 5, 0, 0, 'H', 'T', 'T', 'P'};
    for (size_t i = 0; i < SMTPC__ARRAY_LEN(cases); i++) {
        smtpc_proxy *cfg = P(cases[i].url);
        const uint8_t *sc = script;
        if (cases[i].url[0] == 'h') sc = (const uint8_t *)"HTTP/1.1 200";
        mem_t *m = mem_new(sc, cases[i].n, 0, true);
        m->read_err = cases[i].read_err;
        m->write_err = cases[i].write_err;
        smtpc__transport *t = NULL;
        smtpc__errmsg err;
        CHECK_INT(smtpc__proxy_layer_new(&t, &m->base, cfg, "h", 25, NULL, &err), 0);
        if (!t) continue;
        int rc = drive(t);
        CHECK_INT(rc, cases[i].rc);
        if (!strstr(t->err.text, cases[i].sub))
            T_FAILF("case %zu: \"%s\" lacks \"%s\"", i, t->err.text, cases[i].sub);
        /* failed for good: asking again gives the same answer, touches nothing */
        int want = 0;
        CHECK_INT(t->ops->handshake(t, &want), cases[i].rc);
        smtpc__transport_free(t);
        smtpc_proxy_free(cfg);
    }
}

int main(void)
{
    RUN(inner_errors);
    RUN(http_credentials_leave_no_copy);
    RUN(socks5h_name_noauth);
    RUN(socks5_reply_with_domain_and_v6_bound_address);
    RUN(socks5h_ipv4_literal_goes_as_address);
    RUN(socks5_userpass);
    RUN(socks5_auth_failures);
    RUN(socks5_every_reply_code);
    RUN(socks5_malformed);
    RUN(socks5_truncated_at_every_offset);
    RUN(socks5_silent_proxy_waits_for_read);
    RUN(socks4_ok);
    RUN(socks4a_name);
    RUN(socks4_failures);
    RUN(http_ok_keeps_bytes_after_header);
    RUN(http_pending_counts_leftover);
    RUN(http_ipv6_target);
    RUN(http_errors);
    RUN(http_endless_header);
    RUN(bad_targets);
    RUN(https_layer_is_connect_over_inner);
    RUN(io_before_handshake_is_a_state_error);
    RUN(local_resolution_failure);
    T_DONE();
}
