/* DKIM: canonicalization (RFC 6376 3.4), chunk-split invariance, signing
 * and verifying with both algorithms, RFC 8463's example, key rules. */
#include "dkim/dkim_int.h"
#include "t.h"

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <smtpc/dkim.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* RFC 8463 appendix A: its Ed25519 key (the RFC 8032 7.1 test 1 seed) and
 * the published records. Public test vectors. */
static const char rfc_ed_seed_b64[] = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
static const char rfc_ed_txt[] = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
static const char rfc_rsa_txt[] =
    "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qh"
    "dR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4h"
    "stT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB";
static const char rfc_body[] = "Hi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n";
static const char rfc_headers[] =
    "From: Joe SixPack <joe@football.example.com>\r\n"
    "To: Suzie Q <suzie@shopping.example.net>\r\n"
    "Subject: Is dinner ready?\r\n"
    "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
    "Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n";
static const char rfc_sigs[] =
    "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
    " d=football.example.com; i=@football.example.com;\r\n"
    " q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
    " subject : date : message-id : from : subject : date;\r\n"
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    " b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r\n"
    " Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\r\n"
    "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n"
    " d=football.example.com; i=@football.example.com;\r\n"
    " q=dns/txt; s=test; t=1528637909; h=from : to : subject :\r\n"
    " date : message-id : from : subject : date;\r\n"
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    " b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3\r\n"
    " DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz\r\n"
    " dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=\r\n";

/* ---- helpers ---- */

typedef struct dns {
    const char *name[4];
    const char *txt[4];
} dns;

static int dns_cb(void *ud, const char *name, char *buf, size_t len)
{
    const dns *d = ud;
    for (int i = 0; i < 4 && d->name[i]; i++)
        if (!strcmp(d->name[i], name)) {
            snprintf(buf, len, "%s", d->txt[i]);
            return 0;
        }
    return SMTPC_ENOTFOUND;
}

static int dns_fail(void *ud, const char *name, char *buf, size_t len)
{
    (void)ud, (void)name, (void)buf, (void)len;
    return SMTPC_ETIMEDOUT;
}

static char *cat(const char *a, size_t al, const char *b, size_t bl)
{
    char *s = malloc(al + bl + 1);
    memcpy(s, a, al);
    memcpy(s + al, b, bl);
    s[al + bl] = '\0';
    return s;
}

/* PEM text of a key's DER (label e.g. "PRIVATE KEY"). */
static char *pem_of(const uint8_t *der, size_t n, const char *label)
{
    size_t bl = smtpc__b64_lines_len(n);
    char *s = malloc(bl + 128);
    int k = snprintf(s, 128, "-----BEGIN %s-----\n", label);
    k += (int)smtpc__b64_encode_lines(s + k, der, n);
    snprintf(s + k, 128, "-----END %s-----\n", label);
    return s;
}

/* The RFC 8463 Ed25519 key as PKCS#8 PEM. */
static char *rfc_ed_pem(void)
{
    uint8_t der[48] = {0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b,
                       0x65, 0x70, 0x04, 0x22, 0x04, 0x20};
    CHECK_INT(smtpc__b64_decode(der + 16, rfc_ed_seed_b64, strlen(rfc_ed_seed_b64)), 32);
    return pem_of(der, sizeof der, "PRIVATE KEY");
}

static EVP_PKEY *gen(const char *type, size_t bits)
{
    if (!strcmp(type, "RSA")) return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", bits);
    if (!strcmp(type, "EC")) return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    return EVP_PKEY_Q_keygen(NULL, NULL, type);
}

/* PEM of a generated key: PKCS#1 for RSA when pkcs1, else PKCS#8. */
static char *pem_key(EVP_PKEY *pk, bool pkcs1)
{
    uint8_t *der = NULL;
    int n;
    if (pkcs1) {
        n = i2d_PrivateKey(pk, &der);
    } else {
        PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(pk);
        n = i2d_PKCS8_PRIV_KEY_INFO(p8, &der);
        PKCS8_PRIV_KEY_INFO_free(p8);
    }
    char *s = pem_of(der, (size_t)n, pkcs1 ? "RSA PRIVATE KEY" : "PRIVATE KEY");
    OPENSSL_free(der);
    return s;
}

/* The TXT record for a key: p= is the SubjectPublicKeyInfo (RSA) or the
 * raw 32 octets (Ed25519, RFC 8463). */
static char *txt_of(EVP_PKEY *pk)
{
    uint8_t raw[600];
    size_t n = sizeof raw;
    const char *k = "rsa";
    if (EVP_PKEY_get_base_id(pk) == EVP_PKEY_ED25519) {
        EVP_PKEY_get_raw_public_key(pk, raw, &n);
        k = "ed25519";
    } else {
        uint8_t *p = raw;
        n = (size_t)i2d_PUBKEY(pk, &p);
    }
    char *s = malloc(1200);
    int w = snprintf(s, 1200, "v=DKIM1; k=%s; p=", k);
    smtpc__b64_encode(s + w, raw, n);
    s[w + smtpc__b64_encoded_len(n)] = '\0';
    return s;
}

static int64_t fixed_now(void *ud) { return *(const int64_t *)ud; }
static int64_t T0 = 1700000000;

/* A signer with the RFC 8463 Ed25519 key as selector "ed" for example.org,
 * on the fixed clock T0. */
static smtpc_dkim_signer *ed_signer(void)
{
    smtpc_dkim_signer *sg = NULL;
    smtpc_dkim_signer_new(&sg);
    char *ed = rfc_ed_pem();
    CHECK_INT(smtpc_dkim_signer_add_key_pem(sg, "ed", ed, strlen(ed)), 0);
    free(ed);
    smtpc_dkim_signer_set_domain(sg, "example.org");
    smtpc_dkim_signer_set_clock(sg, fixed_now, &T0);
    return sg;
}

/* Signs msg fed in pieces of step octets (0: all at once); returns the
 * signed message (fields + msg) or NULL. */
static char *sign_msg(const smtpc_dkim_signer *sg, const char *msg, size_t len, size_t step,
                      size_t *outlen)
{
    smtpc_dkim_sign *c = NULL;
    if (smtpc_dkim_sign_begin(sg, &c)) return NULL;
    int rc = 0;
    for (size_t i = 0; i < len && !rc;) {
        size_t k = step && step < len - i ? step : len - i;
        rc = smtpc_dkim_sign_update(c, msg + i, k);
        i += k;
    }
    const char *f = NULL;
    size_t fl = 0;
    if (!rc) rc = smtpc_dkim_sign_final(c, &f, &fl);
    char *out = NULL;
    if (!rc) {
        out = cat(f, fl, msg, len);
        if (outlen) *outlen = fl + len;
    } else {
        fprintf(stderr, "sign: %s\n", smtpc_dkim_sign_errmsg(c));
    }
    smtpc_dkim_sign_free(c);
    return out;
}

static void body_hash(int canon, bool cr_eol, const char *s, size_t n, size_t step, uint8_t out[32])
{
    smtpc__dkim_body b;
    smtpc__dkim_body_init(&b, canon, UINT64_MAX, cr_eol);
    for (size_t i = 0; i < n;) {
        size_t k = step && step < n - i ? step : n - i;
        smtpc__dkim_body_update(&b, (const uint8_t *)s + i, k);
        i += k;
    }
    smtpc__dkim_body_final(&b, out);
    smtpc__dkim_body_free(&b);
}

/* The body as canonicalized, fed at every split; cr_eol: as the signer
 * sees it (a lone CR ends a line, as the engine sends it). */
static void check_body_mode(int canon, bool cr_eol, const char *in, const char *want)
{
    uint8_t got[32], exp[32];
    unsigned int l;
    EVP_Digest(want, strlen(want), exp, &l, EVP_sha256(), NULL);
    /* every split of a short input; chosen ones of a long one (around the
     * 4 KiB staging buffer and the 16-octet scan) */
    static const size_t some[] = {0, 1, 2, 3, 15, 16, 17, 4095, 4096, 4097, 65536};
    size_t len = strlen(in), count = len <= 1000 ? len + 1 : SMTPC__ARRAY_LEN(some);
    for (size_t j = 0; j < count; j++) {
        size_t step = len <= 1000 ? j : some[j];
        body_hash(canon, cr_eol, in, len, step, got);
        if (memcmp(got, exp, 32)) {
            T_FAILF("%s%s body of \"%s\" (step %zu) is not \"%s\"", canon ? "simple" : "relaxed",
                    cr_eol ? " (cr_eol)" : "", in, step, want);
            return;
        }
    }
}

/* Without a lone CR both modes agree. */
static void check_body(int canon, const char *in, const char *want)
{
    check_body_mode(canon, false, in, want);
    if (!strchr(in, '\r') || strstr(in, "\r\n")) check_body_mode(canon, true, in, want);
}

/* The wire form: every CR, LF or CRLF one CRLF, a final CRLF. */
static char *wire(const char *s, size_t n, size_t *outlen)
{
    smtpc__buf b;
    smtpc__buf_init(&b, 0);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r' || s[i] == '\n') {
            smtpc__buf_append(&b, "\r\n", 2);
            if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n') i++;
        } else {
            smtpc__buf_append(&b, s + i, 1);
        }
    }
    if (n && s[n - 1] != '\n' && s[n - 1] != '\r') smtpc__buf_append(&b, "\r\n", 2);
    *outlen = smtpc__buf_size(&b);
    smtpc__buf_append(&b, "", 1);
    return (char *)b.data;
}

/* ---- tests ---- */

/* RFC 6376 3.4.6's example, both canonicalizations. */
TEST(rfc6376_example)
{
    const char *hdr = "A: X\r\nB : Y\t\r\n\tZ  \r\n";
    smtpc__dkim_hdrs h;
    smtpc__dkim_hdrs_init(&h, false);
    size_t used;
    CHECK_INT(smtpc__dkim_hdrs_feed(&h, (const uint8_t *)hdr, strlen(hdr), &used), 0);
    smtpc__errmsg e;
    CHECK_INT(smtpc__dkim_hdrs_split(&h, &e), 0);
    CHECK_INT(h.n, 2);
    smtpc__buf r, s;
    smtpc__buf_init(&r, 0);
    smtpc__buf_init(&s, 0);
    for (size_t i = 0; i < h.n; i++) {
        smtpc__dkim_canon_field(&r, SMTPC_DKIM_RELAXED, smtpc__dkim_field_ptr(&h, i), h.f[i].len, true);
        smtpc__dkim_canon_field(&s, SMTPC_DKIM_SIMPLE, smtpc__dkim_field_ptr(&h, i), h.f[i].len, true);
    }
    CHECK_MEM(smtpc__buf_ptr(&r), smtpc__buf_size(&r), "a:X\r\nb:Y Z\r\n", 12);
    CHECK_MEM(smtpc__buf_ptr(&s), smtpc__buf_size(&s), hdr, strlen(hdr));
    smtpc__buf_free(&r);
    smtpc__buf_free(&s);
    smtpc__dkim_hdrs_free(&h);
    const char *body = " C \r\nD \t E\r\n\r\n\r\n";
    check_body(SMTPC_DKIM_RELAXED, body, " C\r\nD E\r\n");
    check_body(SMTPC_DKIM_SIMPLE, body, " C \r\nD \t E\r\n");
}

/* The edge cases of body canonicalization, fed at every split. */
TEST(body_edges)
{
    check_body(SMTPC_DKIM_RELAXED, "", "");
    check_body(SMTPC_DKIM_SIMPLE, "", "\r\n");
    check_body(SMTPC_DKIM_RELAXED, "\r\n\r\n", "");
    check_body(SMTPC_DKIM_SIMPLE, "\r\n\r\n", "\r\n");
    check_body(SMTPC_DKIM_RELAXED, "abc", "abc\r\n");
    check_body(SMTPC_DKIM_SIMPLE, "abc", "abc\r\n");
    check_body(SMTPC_DKIM_RELAXED, "a  \t b \r\n\r\n\r\n", "a b\r\n");
    check_body(SMTPC_DKIM_SIMPLE, "a  \t b \r\n\r\n\r\n", "a  \t b \r\n");
    check_body(SMTPC_DKIM_RELAXED, "\r\n\r\nx", "\r\n\r\nx\r\n");
    check_body(SMTPC_DKIM_RELAXED, " \r\n", "");
    check_body(SMTPC_DKIM_SIMPLE, " \r\n", " \r\n");
    check_body(SMTPC_DKIM_RELAXED, "x\r\n \t\r\ny", "x\r\n\r\ny\r\n");
    check_body(SMTPC_DKIM_RELAXED, "  x", " x\r\n");
    check_body_mode(SMTPC_DKIM_RELAXED, false, "a\rb\r\n", "a\rb\r\n");
    check_body_mode(SMTPC_DKIM_SIMPLE, false, "a\r", "a\r\r\n");
    /* the signer: a lone CR is a line end, as on the wire */
    check_body_mode(SMTPC_DKIM_RELAXED, true, "a\rb\r\n", "a\r\nb\r\n");
    check_body_mode(SMTPC_DKIM_SIMPLE, true, "a\r", "a\r\n");
    check_body_mode(SMTPC_DKIM_SIMPLE, true, "a\r\rb \r\r\n\r", "a\r\n\r\nb \r\n");
    check_body_mode(SMTPC_DKIM_RELAXED, true, "\r\r\r", "");
    check_body_mode(SMTPC_DKIM_SIMPLE, true, "\n\r", "\r\n");
    check_body(SMTPC_DKIM_RELAXED, "a\nb\n\n", "a\r\nb\r\n");
    check_body(SMTPC_DKIM_SIMPLE, "a\nb \n\n", "a\r\nb \r\n");
    check_body(SMTPC_DKIM_RELAXED, "trailing   ", "trailing\r\n");
    check_body(SMTPC_DKIM_RELAXED, "caf\xc3\xa9 \xe2\x80\x94\t ok\r\n", "caf\xc3\xa9 \xe2\x80\x94 ok\r\n");
}

/* The canonical body computed the plain way, for comparison: split into
 * lines, fix each, drop the trailing empty ones. */
static void ref_body(int canon, bool cr_eol, const char *in, size_t n, smtpc__buf *out)
{
    smtpc__buf line;
    smtpc__buf_init(&line, 0);
    size_t empties = 0;
    bool any = false;
    for (size_t i = 0; i <= n; i++) {
        bool eol = i == n || in[i] == '\n' || (in[i] == '\r' && ((i + 1 < n && in[i + 1] == '\n') || cr_eol));
        if (!eol) {
            smtpc__buf_append(&line, in + i, 1);
            continue;
        }
        if (i < n && in[i] == '\r' && i + 1 < n && in[i + 1] == '\n') i++;
        const char *l = (const char *)smtpc__buf_ptr(&line);
        size_t ll = smtpc__buf_size(&line);
        smtpc__buf fixed;
        smtpc__buf_init(&fixed, 0);
        if (canon == SMTPC_DKIM_RELAXED) {
            bool ws = false;
            for (size_t k = 0; k < ll; k++) {
                if (l[k] == ' ' || l[k] == '\t') {
                    ws = true;
                    continue;
                }
                if (ws) smtpc__buf_append(&fixed, " ", 1);
                ws = false;
                smtpc__buf_append(&fixed, l + k, 1);
            }
        } else {
            smtpc__buf_append(&fixed, l, ll);
        }
        bool last_unterminated = i == n;
        if (smtpc__buf_size(&fixed) == 0) {
            if (!last_unterminated) empties++;
        } else {
            for (; empties; empties--) smtpc__buf_append(out, "\r\n", 2);
            smtpc__buf_append(out, smtpc__buf_ptr(&fixed), smtpc__buf_size(&fixed));
            smtpc__buf_append(out, "\r\n", 2);
            any = true;
        }
        smtpc__buf_free(&fixed);
        smtpc__buf_reset(&line);
        if (last_unterminated) break;
    }
    if (canon == SMTPC_DKIM_SIMPLE && !any) smtpc__buf_append(out, "\r\n", 2);
    smtpc__buf_free(&line);
}

/* Random bodies of text, SP, HTAB, CR and LF, fed in random splits: the
 * fast paths (sixteen or eight octets at a time) and the state machine
 * agree with the plain computation. */
TEST(body_random)
{
    static const char alphabet[] = "aaaaaaaaab  \t\r\n\r\n";
    unsigned seed = 12345;
    char in[300];
    for (int iter = 0; iter < 20000; iter++) {
        seed = seed * 1103515245u + 12345u;
        size_t n = (seed >> 8) % (iter % 10 == 0 ? 300 : 40);
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            in[i] = alphabet[(seed >> 16) % (sizeof alphabet - 1)];
        }
        for (int canon = 0; canon < 2; canon++)
            for (int mode = 0; mode < 2; mode++) {
                smtpc__buf want;
                smtpc__buf_init(&want, 0);
                ref_body(canon, mode, in, n, &want);
                uint8_t exp[32], got[32];
                unsigned int l;
                EVP_Digest(smtpc__buf_ptr(&want), smtpc__buf_size(&want), exp, &l, EVP_sha256(), NULL);
                smtpc__dkim_body b;
                smtpc__dkim_body_init(&b, canon, UINT64_MAX, mode);
                for (size_t i = 0; i < n;) {
                    seed = seed * 1103515245u + 12345u;
                    size_t k = 1 + (seed >> 16) % 37;
                    if (k > n - i) k = n - i;
                    smtpc__dkim_body_update(&b, (const uint8_t *)in + i, k);
                    i += k;
                }
                smtpc__dkim_body_final(&b, got);
                smtpc__dkim_body_free(&b);
                if (memcmp(exp, got, 32)) {
                    T_FAILF("iteration %d, canon %d, cr_eol %d, %zu octets differ", iter, canon, mode, n);
                    smtpc__buf_free(&want);
                    return;
                }
                smtpc__buf_free(&want);
            }
    }
}

/* A body longer than the staging buffer hashes like the text itself. */
TEST(body_long)
{
    size_t n = 100000;
    char *in = malloc(n + 1);
    for (size_t i = 0; i < n; i++) in[i] = (i % 77 == 76) ? '\n' : (char)('a' + i % 26);
    in[n] = '\0';
    smtpc__buf want;
    smtpc__buf_init(&want, 0);
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '\n') smtpc__buf_append(&want, "\r", 1);
        smtpc__buf_append(&want, in + i, 1);
    }
    smtpc__buf_append(&want, "\r\n", 3);
    check_body(SMTPC_DKIM_SIMPLE, in, (const char *)smtpc__buf_ptr(&want));
    smtpc__buf_free(&want);
    free(in);
}

/* RFC 8463 appendix A: both published signatures verify; a changed body
 * or header fails. */
TEST(rfc8463_verify)
{
    dns d = {{"brisbane._domainkey.football.example.com", "test._domainkey.football.example.com"},
             {rfc_ed_txt, rfc_rsa_txt}};
    char *hdr = cat(rfc_sigs, strlen(rfc_sigs), rfc_headers, strlen(rfc_headers));
    char *hb = cat(hdr, strlen(hdr), "\r\n", 2);
    char *msg = cat(hb, strlen(hb), rfc_body, strlen(rfc_body));
    smtpc_dkim_result r[4];
    size_t n = 0;
    char err[128];
    CHECK_INT(smtpc_dkim_verify(msg, strlen(msg), dns_cb, &d, 1528637909, r, 4, &n, err, sizeof err), 0);
    CHECK_INT(n, 2);
    CHECK_INT(r[0].status, SMTPC_DKIM_PASS);
    CHECK_STR(r[0].algorithm, "ed25519-sha256");
    CHECK_STR(r[0].selector, "brisbane");
    CHECK_INT(r[1].status, SMTPC_DKIM_PASS);
    CHECK_STR(r[1].algorithm, "rsa-sha256");
    CHECK_STR(r[1].reason, "");
    /* one changed body letter: both fail on the body hash */
    char *bad = strdup(msg);
    strstr(bad, "hungry")[0] = 'H';
    CHECK_INT(smtpc_dkim_verify(bad, strlen(bad), dns_cb, &d, 0, r, 4, &n, NULL, 0), 0);
    CHECK_INT(r[0].status, SMTPC_DKIM_FAIL);
    CHECK_STR(r[0].reason, "body hash mismatch");
    CHECK_INT(r[1].status, SMTPC_DKIM_FAIL);
    free(bad);
    /* a changed subject: the header signature fails */
    bad = strdup(msg);
    strstr(bad, "dinner")[0] = 'D';
    CHECK_INT(smtpc_dkim_verify(bad, strlen(bad), dns_cb, &d, 0, r, 4, &n, NULL, 0), 0);
    CHECK_INT(r[0].status, SMTPC_DKIM_FAIL);
    CHECK_STR(r[0].reason, "signature does not verify");
    CHECK_INT(r[1].status, SMTPC_DKIM_FAIL);
    free(bad);
    /* the lookup fails for now: a temporary error */
    CHECK_INT(smtpc_dkim_verify(msg, strlen(msg), dns_fail, NULL, 0, r, 4, &n, NULL, 0), 0);
    CHECK_INT(r[0].status, SMTPC_DKIM_TEMPERROR);
    CHECK_INT(r[1].status, SMTPC_DKIM_TEMPERROR);
    /* no key published */
    dns none = {{NULL}, {NULL}};
    CHECK_INT(smtpc_dkim_verify(msg, strlen(msg), dns_cb, &none, 0, r, 1, &n, NULL, 0), 0);
    CHECK_INT(n, 2);
    CHECK_INT(r[0].status, SMTPC_DKIM_PERMERROR);
    free(msg);
    free(hb);
    free(hdr);
}

/* Signing the RFC 8463 message with its key: the body hash is the
 * published one and the signature verifies; relaxed header canon ignores
 * how the signed fields are folded. */
TEST(rfc8463_sign)
{
    smtpc_dkim_signer *sg = NULL;
    CHECK_INT(smtpc_dkim_signer_new(&sg), 0);
    char *pem = rfc_ed_pem();
    CHECK_INT(smtpc_dkim_signer_add_key_pem(sg, "brisbane", pem, strlen(pem)), 0);
    CHECK_INT(smtpc_dkim_signer_set_domain(sg, "football.example.com"), 0);
    CHECK_INT(smtpc_dkim_signer_set_identity(sg, "@football.example.com"), 0);
    CHECK_INT(smtpc_dkim_signer_set_clock(sg, fixed_now, &T0), 0);
    char *hb = cat(rfc_headers, strlen(rfc_headers), "\r\n", 2);
    char *msg = cat(hb, strlen(hb), rfc_body, strlen(rfc_body));
    size_t sl = 0;
    char *signed_msg = sign_msg(sg, msg, strlen(msg), 0, &sl);
    CHECK(signed_msg != NULL);
    if (signed_msg) {
        CHECK(strstr(signed_msg, "bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;") != NULL);
        CHECK(strstr(signed_msg, "t=1700000000;") != NULL);
        CHECK(strstr(signed_msg, "i=@football.example.com;") != NULL);
        CHECK(strstr(signed_msg, " l=") == NULL);
        /* every line of the field at most 78 octets */
        size_t col = 0;
        for (const char *p = signed_msg; *p && p < strstr(signed_msg, "From:"); p++) {
            col = *p == '\n' ? 0 : col + 1;
            CHECK(col <= 79);
        }
        dns d = {{"brisbane._domainkey.football.example.com"}, {rfc_ed_txt}};
        smtpc_dkim_result r[2];
        size_t n = 0;
        CHECK_INT(smtpc_dkim_verify(signed_msg, sl, dns_cb, &d, T0, r, 2, &n, NULL, 0), 0);
        CHECK_INT(n, 1);
        CHECK_INT(r[0].status, SMTPC_DKIM_PASS);
    }
    free(signed_msg);
    free(msg);
    free(hb);
    free(pem);
    smtpc_dkim_signer_free(sg);
}

static const char tricky[] =
    "From: =?utf-8?q?Zo=C3=AB?= <zoe@example.org>\r\n"
    "To: a@example.com,\r\n"
    "\t b@example.com  \r\n"
    "Subject:  caf\xc3\xa9   \t d\xc3\xa9j\xc3\xa0 vu \r\n"
    "X-Dup: one\r\n"
    "x-dup: two\r\n"
    "Received: by relay\r\n"
    "Date: Mon, 7 Dec 2026 03:00:00 +0000\r\n"
    "\r\n"
    "line one  \r\n"
    "\ttabbed\t\tline\r\n"
    "lone\rcr\r\n"
    "\r\n"
    " \r\n"
    "last line without CRLF  ";

/* Feeding the message in any split gives the same fields (Ed25519 is
 * deterministic); both canonicalizations, and the result verifies. */
TEST(chunk_splits)
{
    for (int canon = 0; canon < 2; canon++) {
        smtpc_dkim_signer *sg = NULL;
        smtpc_dkim_signer_new(&sg);
        char *pem = rfc_ed_pem();
        CHECK_INT(smtpc_dkim_signer_add_key_pem(sg, "ed", pem, strlen(pem)), 0);
        smtpc_dkim_signer_set_domain(sg, "example.org");
        smtpc_dkim_signer_set_headers(sg, "From:To:Subject:X-Dup:+Date");
        smtpc_dkim_signer_set_canon(sg, canon, canon);
        smtpc_dkim_signer_set_clock(sg, fixed_now, &T0);
        size_t len = strlen(tricky), l0 = 0;
        char *ref = sign_msg(sg, tricky, len, 0, &l0);
        CHECK(ref != NULL);
        if (ref) {
            CHECK(strstr(ref, "h=from:from:to:subject:x-dup:x-dup:date:date;") != NULL);
            for (size_t step = 1; step <= len; step++) {
                size_t l = 0;
                char *s = sign_msg(sg, tricky, len, step, &l);
                if (!s || l != l0 || memcmp(s, ref, l)) {
                    T_FAILF("canon %d: step %zu differs", canon, step);
                    free(s);
                    break;
                }
                free(s);
            }
            /* and split in two at every offset */
            for (size_t cut = 0; cut <= len; cut++) {
                smtpc_dkim_sign *c = NULL;
                smtpc_dkim_sign_begin(sg, &c);
                smtpc_dkim_sign_update(c, tricky, cut);
                smtpc_dkim_sign_update(c, tricky + cut, len - cut);
                const char *f;
                size_t fl;
                CHECK_INT(smtpc_dkim_sign_final(c, &f, &fl), 0);
                if (fl + len != l0 || memcmp(f, ref, fl)) T_FAILF("canon %d: cut %zu differs", canon, cut);
                smtpc_dkim_sign_free(c);
            }
            /* verified in the wire form, where the lone CR is a CRLF */
            dns d = {{"ed._domainkey.example.org"}, {rfc_ed_txt}};
            smtpc_dkim_result r;
            size_t n, wl;
            char *w = wire(ref, l0, &wl);
            CHECK_INT(smtpc_dkim_verify(w, wl, dns_cb, &d, T0, &r, 1, &n, NULL, 0), 0);
            CHECK_INT(r.status, SMTPC_DKIM_PASS);
            /* and signing the wire form gives the same fields */
            char *s2 = sign_msg(sg, w + (l0 - len), wl - (l0 - len), 3, NULL);
            CHECK(s2 && !memcmp(s2, ref, l0 - len));
            free(s2);
            free(w);
            /* CR-only line ends too */
            smtpc__buf cr;
            smtpc__buf_init(&cr, 0);
            for (size_t i = 0; i < len; i++)
                if (!(tricky[i] == '\n' && i && tricky[i - 1] == '\r')) smtpc__buf_append(&cr, tricky + i, 1);
            s2 = sign_msg(sg, (const char *)smtpc__buf_ptr(&cr), smtpc__buf_size(&cr), 1, NULL);
            CHECK(s2 && !memcmp(s2, ref, l0 - len));
            free(s2);
            smtpc__buf_free(&cr);
            /* LF line ends sign as CRLF would */
            smtpc__buf lf;
            smtpc__buf_init(&lf, 0);
            for (size_t i = 0; i < len; i++)
                if (!(tricky[i] == '\r' && tricky[i + 1] == '\n')) smtpc__buf_append(&lf, tricky + i, 1);
            char *s = sign_msg(sg, (const char *)smtpc__buf_ptr(&lf), smtpc__buf_size(&lf), 7, NULL);
            CHECK(s && !memcmp(s, ref, l0 - len));
            free(s);
            smtpc__buf_free(&lf);
        }
        free(ref);
        free(pem);
        smtpc_dkim_signer_free(sg);
    }
}

/* RSA (PKCS#1 and PKCS#8) and Ed25519 together: two fields, both verify;
 * over-signing: an added From or Subject breaks them, a Received does not. */
TEST(two_keys_and_oversigning)
{
    EVP_PKEY *rsa = gen("RSA", 2048), *ed = gen("ED25519", 0);
    char *rp = pem_key(rsa, true), *ep = pem_key(ed, false);
    smtpc_dkim_signer *sg = NULL;
    smtpc_dkim_signer_new(&sg);
    CHECK_INT(smtpc_dkim_signer_add_key_pem(sg, "rsa", rp, strlen(rp)), 0);
    CHECK_INT(smtpc_dkim_signer_add_key_pem(sg, "ed", ep, strlen(ep)), 0);
    CHECK_INT(smtpc_dkim_signer_key_count(sg), 2);
    smtpc_dkim_signer_set_domain(sg, "example.org");
    smtpc_dkim_signer_set_expiry(sg, 3600);
    smtpc_dkim_signer_set_clock(sg, fixed_now, &T0);
    char *rt = txt_of(rsa), *et = txt_of(ed);
    dns d = {{"rsa._domainkey.example.org", "ed._domainkey.example.org"}, {rt, et}};
    size_t len = strlen(tricky), sl = 0;
    char *signed_msg = sign_msg(sg, tricky, len, 100, &sl);
    CHECK(signed_msg != NULL);
    char *s = signed_msg ? wire(signed_msg, sl, &sl) : NULL; /* as sent */
    free(signed_msg);
    if (s) {
        CHECK(!strncmp(s, "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org;", 68));
        CHECK(strstr(s, "\r\nDKIM-Signature: v=1; a=ed25519-sha256;") != NULL);
        CHECK(strstr(s, "x=1700003600;") != NULL);
        smtpc_dkim_result r[3];
        size_t n = 0;
        CHECK_INT(smtpc_dkim_verify(s, sl, dns_cb, &d, T0, r, 3, &n, NULL, 0), 0);
        CHECK_INT(n, 2);
        CHECK_INT(r[0].status, SMTPC_DKIM_PASS);
        CHECK_INT(r[1].status, SMTPC_DKIM_PASS);
        /* expired */
        CHECK_INT(smtpc_dkim_verify(s, sl, dns_cb, &d, T0 + 3601, r, 3, &n, NULL, 0), 0);
        CHECK_INT(r[0].status, SMTPC_DKIM_FAIL);
        CHECK_STR(r[0].reason, "signature expired");
        const char *add[] = {"Received: from x by y\r\n", "From: mallory@example.net\r\n",
                             "Subject: other\r\n", "Reply-To: m@example.net\r\n",
                             "List-Unsubscribe: <https://evil.example/>\r\n"};
        for (size_t i = 0; i < 5; i++) {
            char *m2 = cat(s, sl, add[i], strlen(add[i])); /* after the signatures */
            size_t hl = strlen(m2);
            /* move the added field after the DKIM fields: it is already there */
            CHECK_INT(smtpc_dkim_verify(m2, hl, dns_cb, &d, T0, r, 3, &n, NULL, 0), 0);
            free(m2);
            m2 = cat(add[i], strlen(add[i]), s, sl);
            CHECK_INT(smtpc_dkim_verify(m2, strlen(m2), dns_cb, &d, T0, r, 3, &n, NULL, 0), 0);
            smtpc_dkim_status want = i == 0 ? SMTPC_DKIM_PASS : SMTPC_DKIM_FAIL;
            if (r[0].status != want || r[1].status != want)
                T_FAILF("adding \"%.20s\": %d/%d", add[i], r[0].status, r[1].status);
            free(m2);
        }
    }
    free(s);
    free(rt);
    free(et);
    free(rp);
    free(ep);
    /* PKCS#8 RSA works too */
    char *r8 = pem_key(rsa, false);
    CHECK_INT(smtpc_dkim_signer_add_key_pem(sg, "rsa8", r8, strlen(r8)), 0);
    free(r8);
    smtpc_dkim_signer_free(sg);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ed);
}

/* Keys that are refused, each with a clear reason. */
TEST(refused_keys)
{
    smtpc_dkim_signer *sg = NULL;
    smtpc_dkim_signer_new(&sg);
    EVP_PKEY *small = gen("RSA", 512), *ec = gen("EC", 0);
    char *p = pem_key(small, true);
    CHECK_INT(smtpc_dkim_signer_add_key_pem(sg, "s", p, strlen(p)), SMTPC_EINVAL);
    CHECK(strstr(smtpc_dkim_signer_errmsg(sg), "512 bits") != NULL);
    free(p);
    p = pem_key(ec, false);
    CHECK_INT(smtpc_dkim_signer_add_key_pem(sg, "s", p, strlen(p)), SMTPC_EINVAL);
    CHECK(strstr(smtpc_dkim_signer_errmsg(sg), "unsupported key type") != NULL);
    free(p);
    const char *enc = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n";
    CHECK_INT(smtpc_dkim_signer_add_key_pem(sg, "s", enc, strlen(enc)), SMTPC_EINVAL);
    CHECK(strstr(smtpc_dkim_signer_errmsg(sg), "encrypted") != NULL);
    const char *pub = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n-----END PUBLIC KEY-----\n";
    CHECK_INT(smtpc_dkim_signer_add_key_pem(sg, "s", pub, strlen(pub)), SMTPC_EINVAL);
    CHECK(strstr(smtpc_dkim_signer_errmsg(sg), "PUBLIC KEY") != NULL);
    CHECK_INT(smtpc_dkim_signer_add_key_pem(sg, "s", "junk", 4), SMTPC_EINVAL);
    const char *bad64 = "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n";
    CHECK_INT(smtpc_dkim_signer_add_key_pem(sg, "s", bad64, strlen(bad64)), SMTPC_EINVAL);
    char *ed = rfc_ed_pem();
    CHECK_INT(smtpc_dkim_signer_add_key_pem(sg, "bad selector", ed, strlen(ed)), SMTPC_EINVAL);
    CHECK_INT(smtpc_dkim_signer_key_count(sg), 0);

    /* key files: mode 0644 refused, 0600 accepted, missing is ENOTFOUND */
    char path[] = "/tmp/smtpc-dkim-keyXXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK_INT(write(fd, ed, strlen(ed)), (long long)strlen(ed));
    close(fd);
    chmod(path, 0644);
    CHECK_INT(smtpc_dkim_signer_add_key_file(sg, "ed", path), SMTPC_ECONFIG);
    CHECK(strstr(smtpc_dkim_signer_errmsg(sg), "group or others") != NULL);
    chmod(path, 0640);
    CHECK_INT(smtpc_dkim_signer_add_key_file(sg, "ed", path), SMTPC_ECONFIG);
    chmod(path, 0600);
    CHECK_INT(smtpc_dkim_signer_add_key_file(sg, "ed", path), 0);
    unlink(path);
    CHECK_INT(smtpc_dkim_signer_add_key_file(sg, "ed", path), SMTPC_ENOTFOUND);
    for (int i = 1; i < SMTPC_DKIM_MAX_KEYS; i++)
        CHECK_INT(smtpc_dkim_signer_add_key_pem(sg, "ed", ed, strlen(ed)), 0);
    CHECK_INT(smtpc_dkim_signer_add_key_pem(sg, "ed", ed, strlen(ed)), SMTPC_ELIMIT);
    free(ed);
    EVP_PKEY_free(small);
    EVP_PKEY_free(ec);
    smtpc_dkim_signer_free(sg);
    smtpc_dkim_signer_free(NULL);
    smtpc_dkim_sign_free(NULL);
}

/* Options and message errors. */
TEST(errors)
{
    smtpc_dkim_signer *sg = NULL;
    smtpc_dkim_signer_new(&sg);
    smtpc_dkim_sign *c = (smtpc_dkim_sign *)0x1;
    CHECK_INT(smtpc_dkim_sign_begin(sg, &c), SMTPC_ESTATE); /* no key */
    CHECK(c == (smtpc_dkim_sign *)0x1);
    char *ed = rfc_ed_pem();
    smtpc_dkim_signer_add_key_pem(sg, "ed", ed, strlen(ed));
    free(ed);
    CHECK_INT(smtpc_dkim_sign_begin(sg, &c), SMTPC_ESTATE); /* no domain */
    CHECK(strstr(smtpc_dkim_signer_errmsg(sg), "no domain") != NULL);
    CHECK_INT(smtpc_dkim_signer_set_domain(sg, "bad domain"), SMTPC_EINVAL);
    CHECK_INT(smtpc_dkim_signer_set_domain(sg, "localhost"), SMTPC_EINVAL);
    CHECK_INT(smtpc_dkim_signer_set_domain(sg, "mail.example.org"), 0);
    CHECK_INT(smtpc_dkim_signer_set_identity(sg, "no-at-sign"), SMTPC_EINVAL);
    CHECK_INT(smtpc_dkim_signer_set_identity(sg, "a;b@mail.example.org"), SMTPC_EINVAL);
    char longid[100];
    memset(longid, 'l', 65);
    snprintf(longid + 65, sizeof longid - 65, "@mail.example.org");
    CHECK_INT(smtpc_dkim_signer_set_identity(sg, longid), SMTPC_EINVAL);
    CHECK_INT(smtpc_dkim_signer_set_identity(sg, "news@example.org"), 0);
    CHECK_INT(smtpc_dkim_sign_begin(sg, &c), SMTPC_EINVAL); /* i= above d= */
    CHECK_INT(smtpc_dkim_signer_set_identity(sg, "news@x.mail.example.org"), 0);
    CHECK_INT(smtpc_dkim_signer_set_headers(sg, "To:Bad Name"), SMTPC_EINVAL);
    CHECK_INT(smtpc_dkim_signer_set_canon(sg, 7, 0), SMTPC_EINVAL);
    smtpc_dkim_signer_set_clock(sg, fixed_now, &T0);

    /* no From */
    const char *m = "To: a@example.com\r\n\r\nbody\r\n";
    CHECK_INT(smtpc_dkim_sign_begin(sg, &c), 0);
    CHECK_INT(smtpc_dkim_sign_update(c, m, strlen(m)), 0);
    const char *f;
    size_t fl;
    CHECK_INT(smtpc_dkim_sign_final(c, &f, &fl), SMTPC_EINVAL);
    CHECK(strstr(smtpc_dkim_sign_errmsg(c), "From") != NULL);
    CHECK_INT(smtpc_dkim_sign_update(c, "x", 1), SMTPC_ESTATE);
    smtpc_dkim_sign_free(c);

    /* a line that is no header field */
    m = "From: a@mail.example.org\r\nnot a header\r\n\r\nbody\r\n";
    CHECK_INT(smtpc_dkim_sign_begin(sg, &c), 0);
    CHECK_INT(smtpc_dkim_sign_update(c, m, strlen(m)), 0);
    CHECK_INT(smtpc_dkim_sign_final(c, &f, &fl), SMTPC_EINVAL);
    CHECK(strstr(smtpc_dkim_sign_errmsg(c), "no colon") != NULL);
    smtpc_dkim_sign_free(c);

    /* a header section over the limit */
    CHECK_INT(smtpc_dkim_sign_begin(sg, &c), 0);
    char line[1001];
    memset(line, 'a', sizeof line);
    memcpy(line, "X-Long: ", 8);
    line[998] = '\r';
    line[999] = '\n';
    int rc = 0;
    for (size_t sent = 0; !rc && sent < SMTPC_DKIM_MAX_HEADER + 2000; sent += 1000)
        rc = smtpc_dkim_sign_update(c, line, 1000);
    CHECK_INT(rc, SMTPC_ELIMIT);
    CHECK(strstr(smtpc_dkim_sign_errmsg(c), "header section") != NULL);
    CHECK_INT(smtpc_dkim_sign_final(c, &f, &fl), SMTPC_ESTATE);
    smtpc_dkim_sign_free(c);

    /* headers only, no body, no final CRLF; then final twice */
    m = "From: a@mail.example.org\r\nSubject: x";
    CHECK_INT(smtpc_dkim_sign_begin(sg, &c), 0);
    CHECK_INT(smtpc_dkim_sign_update(c, m, strlen(m)), 0);
    CHECK_INT(smtpc_dkim_sign_final(c, &f, &fl), 0);
    CHECK(strstr(f, "i=news@x.mail.example.org;") != NULL);
    CHECK(strstr(f, "bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;") != NULL); /* sha256("") */
    CHECK_INT(fl, strlen(f));
    CHECK_INT(smtpc_dkim_sign_final(c, &f, &fl), SMTPC_ESTATE);
    smtpc_dkim_sign_free(c);
    smtpc_dkim_signer_free(sg);
}

/* A very long header field (folded by the caller or not) and 8-bit text. */
TEST(long_fields)
{
    smtpc_dkim_signer *sg = ed_signer();
    smtpc__buf m;
    smtpc__buf_init(&m, 0);
    smtpc__buf_append_str(&m, "From: a@example.org\r\nSubject: ");
    for (int i = 0; i < 2000; i++) smtpc__buf_append_str(&m, i % 10 == 9 ? "word\r\n " : "w\xc3\xb6rd ");
    smtpc__buf_append_str(&m, "end\r\nTo: b@example.org\r\n\r\nbody\r\n");
    size_t sl;
    char *s = sign_msg(sg, (const char *)smtpc__buf_ptr(&m), smtpc__buf_size(&m), 333, &sl);
    CHECK(s != NULL);
    dns d = {{"ed._domainkey.example.org"}, {rfc_ed_txt}};
    smtpc_dkim_result r;
    size_t n;
    if (s) {
        CHECK_INT(smtpc_dkim_verify(s, sl, dns_cb, &d, 0, &r, 1, &n, NULL, 0), 0);
        CHECK_INT(r.status, SMTPC_DKIM_PASS);
    }
    free(s);
    smtpc__buf_free(&m);
    smtpc_dkim_signer_free(sg);
}

/* One signer, contexts on several threads at once (a signing pool): each
 * gives the fields one thread alone gives (Ed25519 and a fixed clock are
 * deterministic). Run under ASan/TSan builds, it also checks for races. */
typedef struct pool_job {
    const smtpc_dkim_signer *sg;
    const char *ref;
    size_t ref_len;
    int bad;
} pool_job;

static void *pool_worker(void *arg)
{
    pool_job *j = arg;
    for (int i = 0; i < 40; i++) {
        size_t l = 0;
        char *s = sign_msg(j->sg, tricky, strlen(tricky), (size_t)(i % 7) + 1, &l);
        if (!s || l != j->ref_len || memcmp(s, j->ref, l)) j->bad++;
        free(s);
    }
    return NULL;
}

TEST(shared_signer_threads)
{
    smtpc_dkim_signer *sg = ed_signer();
    EVP_PKEY *rsa = gen("RSA", 1024);
    char *rp = pem_key(rsa, false);
    CHECK_INT(smtpc_dkim_signer_add_key_pem(sg, "rsa", rp, strlen(rp)), 0); /* PKCS#1 v1.5: deterministic too */
    size_t rl = 0;
    char *ref = sign_msg(sg, tricky, strlen(tricky), 0, &rl);
    CHECK(ref != NULL);
    pool_job jobs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (pool_job){.sg = sg, .ref = ref, .ref_len = rl};
        pthread_create(&th[i], NULL, pool_worker, &jobs[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK_INT(jobs[i].bad, 0);
    }
    free(ref);
    free(rp);
    EVP_PKEY_free(rsa);
    smtpc_dkim_signer_free(sg);
}

/* A pull source in pieces of at most `step`, failing at `fail_at`. */
typedef struct src {
    const char *p;
    size_t n, off, step, fail_at;
} src;

static ssize_t src_read(void *ud, void *buf, size_t len)
{
    src *s = ud;
    if (s->off >= s->fail_at) return SMTPC_EIO;
    size_t k = s->n - s->off;
    if (k > s->step) k = s->step;
    if (k > len) k = len;
    memcpy(buf, s->p + s->off, k);
    s->off += k;
    return (ssize_t)k;
}

/* smtpc_dkim_sign_read pulls the message like the engine pulls a writer;
 * the source's error is the result. */
TEST(sign_from_a_reader)
{
    smtpc_dkim_signer *sg = ed_signer();
    size_t rl = 0;
    char *ref = sign_msg(sg, tricky, strlen(tricky), 0, &rl);
    smtpc_dkim_sign *c = NULL;
    src s = {tricky, strlen(tricky), 0, 5, SIZE_MAX};
    CHECK_INT(smtpc_dkim_sign_begin(sg, &c), 0);
    CHECK_INT(smtpc_dkim_sign_read(c, src_read, &s), 0);
    const char *f;
    size_t fl;
    CHECK_INT(smtpc_dkim_sign_final(c, &f, &fl), 0);
    CHECK(ref && fl + strlen(tricky) == rl && !memcmp(f, ref, fl));
    smtpc_dkim_sign_free(c);
    src bad = {tricky, strlen(tricky), 0, 5, 50};
    CHECK_INT(smtpc_dkim_sign_begin(sg, &c), 0);
    CHECK_INT(smtpc_dkim_sign_read(c, src_read, &bad), SMTPC_EIO);
    CHECK(strstr(smtpc_dkim_sign_errmsg(c), "reading the message") != NULL);
    CHECK_INT(smtpc_dkim_sign_final(c, &f, &fl), SMTPC_ESTATE);
    smtpc_dkim_sign_free(c);
    free(ref);
    smtpc_dkim_signer_free(sg);
}

int main(void)
{
    RUN(rfc6376_example);
    RUN(body_edges);
    RUN(body_long);
    RUN(body_random);
    RUN(rfc8463_verify);
    RUN(rfc8463_sign);
    RUN(chunk_splits);
    RUN(two_keys_and_oversigning);
    RUN(refused_keys);
    RUN(errors);
    RUN(long_fields);
    RUN(shared_signer_threads);
    RUN(sign_from_a_reader);
    T_DONE();
}
