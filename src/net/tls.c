/* The TLS layer (OpenSSL 3): a client SSL whose records travel through the
 * inner transport by way of a custom BIO, so it works the same over TCP, a
 * proxy tunnel or an SMTP connection after STARTTLS. See net/tls.h. */
#include "net/tls.h"
#include "util/syslib.h"

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_PINS 16

struct smtpc__tls_ctx {
    SSL_CTX *ssl_ctx;
    int refs; /* atomic enough: contexts are shared within one thread or under a pool lock */
    pthread_mutex_t lock;
    uint8_t pins[MAX_PINS][32];
    size_t npins;
    bool insecure, client_cert;
    int min_version, max_version;
};

struct smtpc__tls_session {
    SSL_SESSION *s;
};

typedef struct tls_layer {
    smtpc__transport base; /* first: the layer is used as a smtpc__transport */
    SSL *ssl;
    smtpc__tls_ctx *ctx;
    char *server_name;
    bool done, failed;
    int fail_code;
    int io_want;     /* what the inner layer waits for (set by the BIO) */
    int inner_rc;    /* the inner layer's error (set by the BIO) */
    SSL_SESSION *latest;
    char leaf_subject[256]; /* recorded during verification, for messages */
    smtpc_tls_info info;
    unsigned char peer_head[2]; /* the peer's first bytes (a record's type and major version) */
    size_t peer_seen;           /* how many of them came (at most 2) */
} tls_layer;

/* ---- lazy, once-only initialisation ------------------------------------------------ */
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static BIO_METHOD *bio_method;
static int ex_index = -1;

static int bio_write_ex(BIO *b, const char *data, size_t len, size_t *written);
static int bio_read_ex(BIO *b, char *data, size_t len, size_t *readbytes);
static long bio_ctrl(BIO *b, int cmd, long num, void *ptr);
static int bio_create(BIO *b);

static void init_openssl(void)
{
    OPENSSL_init_ssl(0, NULL);
    bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "smtpc-transport");
    if (bio_method) {
        BIO_meth_set_write_ex(bio_method, bio_write_ex);
        BIO_meth_set_read_ex(bio_method, bio_read_ex);
        BIO_meth_set_ctrl(bio_method, bio_ctrl);
        BIO_meth_set_create(bio_method, bio_create);
    }
    ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static int lazy_init(smtpc__errmsg *err)
{
    int rc = smtpc__syslib_need(SMTPC__LIB_SSL, err);
    if (rc) return rc;
    pthread_once(&init_once, init_openssl);
    if (!bio_method || ex_index < 0) return smtpc__err(err, SMTPC_ENOMEM, "TLS: OpenSSL initialisation failed");
    return 0;
}

/* ---- the BIO over the inner transport ------------------------------------------------ */
static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    SMTPC__UNUSED(b);
    SMTPC__UNUSED(num);
    SMTPC__UNUSED(ptr);
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_write_ex(BIO *b, const char *data, size_t len, size_t *written)
{
    tls_layer *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    int want = 0;
    ssize_t n = smtpc__transport_write(t->base.inner, data, len, &want);
    if (n > 0) {
        *written = (size_t)n;
        return 1;
    }
    if (n == SMTPC_EAGAIN) {
        t->io_want = want ? want : SMTPC__WANT_WRITE;
        BIO_set_retry_write(b);
        return 0;
    }
    t->inner_rc = n < 0 ? (int)n : SMTPC_ENETWORK;
    return 0;
}

static int bio_read_ex(BIO *b, char *data, size_t len, size_t *readbytes)
{
    tls_layer *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    int want = 0;
    ssize_t n = smtpc__transport_read(t->base.inner, data, len, &want);
    if (n > 0) {
        for (size_t i = 0; i < (size_t)n && t->peer_seen < sizeof t->peer_head; i++)
            t->peer_head[t->peer_seen++] = (unsigned char)data[i];
        *readbytes = (size_t)n;
        return 1;
    }
    if (n == SMTPC_EAGAIN) {
        t->io_want = want ? want : SMTPC__WANT_READ;
        BIO_set_retry_read(b);
        return 0;
    }
    if (n < 0) t->inner_rc = (int)n;
    return 0; /* 0 = end of stream: OpenSSL decides whether it was expected */
}

/* ---- versions ------------------------------------------------------------------------ */
const char *smtpc_tls_version_name(int v)
{
    switch (v) {
    case 0: return "default";
    case SMTPC_TLS_1_0: return "TLS 1.0";
    case SMTPC_TLS_1_1: return "TLS 1.1";
    case SMTPC_TLS_1_2: return "TLS 1.2";
    case SMTPC_TLS_1_3: return "TLS 1.3";
    default: return "unknown";
    }
}

static int ossl_version(int v)
{
    return v == SMTPC_TLS_1_3 ? TLS1_3_VERSION : TLS1_2_VERSION;
}

/* What this build can do: never below TLS 1.2 (RFC 8996); 1.3 when OpenSSL has it. */
static const int local_min = SMTPC_TLS_1_2;
#if defined(TLS1_3_VERSION) && !defined(OPENSSL_NO_TLS1_3)
static const int local_max = SMTPC_TLS_1_3;
#else
static const int local_max = SMTPC_TLS_1_2;
#endif

/* The lenient policy may only narrow what was asked for, never widen it
 * towards weaker: a minimum below the floor is raised to TLS 1.2 and a
 * maximum above what the build does is lowered to it (a maximum below the
 * floor becomes TLS 1.2: 1.0/1.1 are never done). A minimum above what the
 * build does is never lowered (that would connect with a version the caller
 * refused): SMTPC_EUNSUPPORTED under either policy. */
static int adjust_version(int *v, bool is_min, int build_max, smtpc_tls_version_policy pol,
                          smtpc__errmsg *err)
{
    const char *which = is_min ? "minimum" : "maximum";
    if (*v < SMTPC_TLS_1_0 || *v > SMTPC_TLS_1_3)
        return smtpc__err(err, SMTPC_EINVAL, "TLS: invalid %s version %d", which, *v);
    if (*v >= local_min && *v <= build_max) return 0;
    if (pol == SMTPC_TLS_VERSION_STRICT || (is_min && *v > build_max))
        return smtpc__err(err, SMTPC_EUNSUPPORTED,
                          "TLS: %s version %s is not supported by this build (it does %s to %s)%s", which,
                          smtpc_tls_version_name(*v), smtpc_tls_version_name(local_min),
                          smtpc_tls_version_name(build_max),
                          pol == SMTPC_TLS_VERSION_STRICT ? "" : "; a minimum is never lowered");
    *v = *v < local_min ? local_min : build_max;
    return 0;
}

int smtpc__tls_fit_versions(int *min_version, int *max_version, int build_max,
                            smtpc_tls_version_policy pol, smtpc__errmsg *err)
{
    int minv = *min_version ? *min_version : SMTPC_TLS_1_2;
    int maxv = *max_version ? *max_version : build_max;
    int rc;
    if ((rc = adjust_version(&minv, true, build_max, pol, err)) ||
        (rc = adjust_version(&maxv, false, build_max, pol, err)))
        return rc;
    if (minv > maxv)
        return smtpc__err(err, SMTPC_EINVAL, "TLS: minimum version %s is above the maximum %s",
                          smtpc_tls_version_name(minv), smtpc_tls_version_name(maxv));
    *min_version = minv;
    *max_version = maxv;
    return 0;
}

/* ---- pins -------------------------------------------------------------------------------- */
static int parse_pins(smtpc__tls_ctx *c, const char *pins, smtpc__errmsg *err)
{
    const char *p = pins;
    while (*p) {
        while (*p == ';' || *p == ',' || *p == ' ' || *p == '\t') p++;
        if (!*p) break;
        const char *s = p;
        while (*p && *p != ';' && *p != ',' && *p != ' ' && *p != '\t') p++;
        size_t n = (size_t)(p - s);
        uint8_t raw[48];
        if (n < 8 || strncmp(s, "sha256//", 8) != 0 || n - 8 != 44 ||
            smtpc__b64_decode(raw, s + 8, 44) != 32) {
            char shown[80];
            smtpc__escape_into(shown, sizeof shown, s, n < 70 ? n : 70);
            return smtpc__err(err, SMTPC_EINVAL, "TLS: invalid pin \"%s\" (want sha256//<base64 of 32 octets>)",
                              shown);
        }
        if (c->npins == MAX_PINS) return smtpc__err(err, SMTPC_EINVAL, "TLS: more than %d pins", MAX_PINS);
        memcpy(c->pins[c->npins++], raw, 32);
    }
    return 0;
}

static bool spki_sha256(X509 *cert, uint8_t out[32])
{
    unsigned char *der = NULL;
    int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der);
    if (n <= 0) return false;
    unsigned int ml = 0;
    bool ok = EVP_Digest(der, (size_t)n, out, &ml, EVP_sha256(), NULL) == 1 && ml == 32;
    OPENSSL_free(der);
    return ok;
}

/* ---- errors ------------------------------------------------------------------------------- */
/* The first OpenSSL error reason, for messages ("wrong version number"). */
static void ossl_reason(char *buf, size_t size, unsigned long *first)
{
    unsigned long e = ERR_peek_error();
    if (first) *first = e;
    buf[0] = '\0';
    if (!e) return;
    const char *r = ERR_reason_error_string(e);
    if (r) smtpc__strlcpy(buf, r, size);
    else ERR_error_string_n(e, buf, size);
}

static int ctx_fail(smtpc__errmsg *err, int code, const char *what)
{
    char r[160];
    ossl_reason(r, sizeof r, NULL);
    ERR_clear_error();
    return smtpc__err(err, code, "TLS: %s%s%s", what, r[0] ? ": " : "", r);
}

/* ---- context ------------------------------------------------------------------------------ */
static void name_str(X509_NAME *n, char *buf, size_t size);

/* Records the leaf's subject (OpenSSL does not keep the peer certificate
 * of a failed verification) and keeps OpenSSL's verdict. */
static int verify_cb(int ok, X509_STORE_CTX *x)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
    tls_layer *t = ssl ? SSL_get_ex_data(ssl, ex_index) : NULL;
    X509 *leaf = X509_STORE_CTX_get0_cert(x);
    if (t && leaf && !t->leaf_subject[0])
        name_str(X509_get_subject_name(leaf), t->leaf_subject, sizeof t->leaf_subject);
    return ok;
}

static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    tls_layer *t = SSL_get_ex_data(ssl, ex_index);
    if (!t) return 0;
    if (t->latest) SSL_SESSION_free(t->latest);
    t->latest = sess;
    return 1; /* we keep the reference */
}

int smtpc__tls_ctx_new(smtpc__tls_ctx **out, const smtpc__tls_config *cfg, smtpc__errmsg *err)
{
    smtpc__tls_config dflt = {0};
    if (!cfg) cfg = &dflt;
    int rc = lazy_init(err);
    if (rc) return rc;
    int minv = cfg->min_version, maxv = cfg->max_version;
    if ((rc = smtpc__tls_fit_versions(&minv, &maxv, local_max, cfg->version_policy, err))) return rc;
    if (cfg->key_file && !cfg->cert_file)
        return smtpc__err(err, SMTPC_EINVAL, "TLS: a client key without a client certificate");

    smtpc__tls_ctx *c = calloc(1, sizeof *c);
    if (!c) return SMTPC_ENOMEM;
    c->refs = 1;
    pthread_mutex_init(&c->lock, NULL);
    c->insecure = cfg->insecure;
    c->min_version = minv;
    c->max_version = maxv;
    if (cfg->pins && (rc = parse_pins(c, cfg->pins, err))) goto fail;
    ERR_clear_error();
    c->ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (!c->ssl_ctx) {
        rc = ctx_fail(err, SMTPC_ENOMEM, "cannot create a context");
        goto fail;
    }
    SSL_CTX *x = c->ssl_ctx;
    SSL_CTX_set_min_proto_version(x, ossl_version(minv));
    SSL_CTX_set_max_proto_version(x, ossl_version(maxv));
    SSL_CTX_set_options(x, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(x, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (cfg->release_buffers) SSL_CTX_set_mode(x, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(x, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(x, new_session_cb);
    /* The trust store is loaded even in insecure mode: the info then still
     * says what verification would have found. */
    if (cfg->ca_file || cfg->ca_path) {
        if (SSL_CTX_load_verify_locations(x, cfg->ca_file, cfg->ca_path) != 1) {
            char what[300];
            snprintf(what, sizeof what, "cannot load the CA certificates from %s",
                     cfg->ca_file ? cfg->ca_file : cfg->ca_path);
            rc = ctx_fail(err, SMTPC_ECONFIG, what);
            goto fail;
        }
    } else if (SSL_CTX_set_default_verify_paths(x) != 1) {
        rc = ctx_fail(err, SMTPC_ECONFIG, "cannot load the system trust store");
        goto fail;
    }
    SSL_CTX_set_verify(x, cfg->insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, verify_cb);
    if (cfg->ciphers && SSL_CTX_set_cipher_list(x, cfg->ciphers) != 1) {
        rc = ctx_fail(err, SMTPC_ECONFIG, "invalid cipher list");
        goto fail;
    }
    if (cfg->ciphersuites && SSL_CTX_set_ciphersuites(x, cfg->ciphersuites) != 1) {
        rc = ctx_fail(err, SMTPC_ECONFIG, "invalid TLS 1.3 cipher suites");
        goto fail;
    }
    if (cfg->cert_file) {
        const char *key = cfg->key_file ? cfg->key_file : cfg->cert_file;
        char what[300];
        if (SSL_CTX_use_certificate_chain_file(x, cfg->cert_file) != 1) {
            snprintf(what, sizeof what, "cannot load the client certificate %s", cfg->cert_file);
            rc = ctx_fail(err, SMTPC_ECONFIG, what);
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(x, key, SSL_FILETYPE_PEM) != 1) {
            snprintf(what, sizeof what, "cannot load the client key %s", key);
            rc = ctx_fail(err, SMTPC_ECONFIG, what);
            goto fail;
        }
        if (SSL_CTX_check_private_key(x) != 1) {
            rc = ctx_fail(err, SMTPC_ECONFIG, "the client key does not match the certificate");
            goto fail;
        }
        c->client_cert = true;
    }
    *out = c;
    return 0;
fail:
    SSL_CTX_free(c->ssl_ctx);
    pthread_mutex_destroy(&c->lock);
    free(c);
    return rc;
}

smtpc__tls_ctx *smtpc__tls_ctx_ref(smtpc__tls_ctx *c)
{
    pthread_mutex_lock(&c->lock);
    c->refs++;
    pthread_mutex_unlock(&c->lock);
    return c;
}

void smtpc__tls_ctx_free(smtpc__tls_ctx *c)
{
    if (!c) return;
    pthread_mutex_lock(&c->lock);
    int left = --c->refs;
    pthread_mutex_unlock(&c->lock);
    if (left > 0) return;
    SSL_CTX_free(c->ssl_ctx);
    pthread_mutex_destroy(&c->lock);
    smtpc__secure_zero(c, sizeof *c);
    free(c);
}

void smtpc__tls_ctx_versions(const smtpc__tls_ctx *c, int *min_version, int *max_version)
{
    if (min_version) *min_version = c->min_version;
    if (max_version) *max_version = c->max_version;
}

bool smtpc__tls_ctx_has_client_cert(const smtpc__tls_ctx *c) { return c->client_cert; }

/* ---- the layer ---------------------------------------------------------------------------- */
static const smtpc__transport_ops tls_ops;

static void name_str(X509_NAME *n, char *buf, size_t size)
{
    buf[0] = '\0';
    BIO *m = BIO_new(BIO_s_mem());
    if (!m) return;
    if (X509_NAME_print_ex(m, n, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
        char *p = NULL;
        long len = BIO_get_mem_data(m, &p);
        if (len > 0) smtpc__escape_into(buf, size, p, (size_t)len);
    }
    BIO_free(m);
}

static void time_str(const ASN1_TIME *a, char *buf, size_t size)
{
    struct tm tm;
    buf[0] = '\0';
    if (a && ASN1_TIME_to_tm(a, &tm) == 1) strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void verify_text(tls_layer *t, long v, char *buf, size_t size)
{
    if (v == X509_V_ERR_HOSTNAME_MISMATCH)
        snprintf(buf, size, "certificate does not match host name %s", t->server_name);
    else if (v == X509_V_ERR_IP_ADDRESS_MISMATCH)
        snprintf(buf, size, "certificate does not match IP address %s", t->server_name);
    else
        smtpc__strlcpy(buf, v == X509_V_OK ? "ok" : X509_verify_cert_error_string(v), size);
}

static void fill_info(tls_layer *t, X509 *peer, const uint8_t *spki, bool pinned)
{
    smtpc_tls_info *i = &t->info;
    memset(i, 0, sizeof *i);
    smtpc__strlcpy(i->version, SSL_get_version(t->ssl), sizeof i->version);
    const char *cn = SSL_get_cipher_name(t->ssl);
    smtpc__strlcpy(i->cipher, cn ? cn : "", sizeof i->cipher);
    if (peer) {
        name_str(X509_get_subject_name(peer), i->subject, sizeof i->subject);
        name_str(X509_get_issuer_name(peer), i->issuer, sizeof i->issuer);
        time_str(X509_get0_notBefore(peer), i->not_before, sizeof i->not_before);
        time_str(X509_get0_notAfter(peer), i->not_after, sizeof i->not_after);
        if (spki) {
            memcpy(i->pin_sha256, "sha256//", 8);
            smtpc__b64_encode(i->pin_sha256 + 8, spki, 32);
            i->pin_sha256[8 + 44] = '\0';
        }
    }
    i->verify_code = peer ? SSL_get_verify_result(t->ssl) : X509_V_ERR_UNSPECIFIED;
    if (peer) verify_text(t, i->verify_code, i->verify_message, sizeof i->verify_message);
    else smtpc__strlcpy(i->verify_message, "no peer certificate", sizeof i->verify_message);
    i->verified = peer && i->verify_code == X509_V_OK;
    i->pin_checked = pinned;
    i->resumed = SSL_session_reused(t->ssl) == 1;
}

static int fail(tls_layer *t, int code)
{
    t->failed = true;
    t->fail_code = code;
    ERR_clear_error();
    return code;
}

/* Turns an SSL_ERROR_SSL / SYSCALL into our code and message. */
static int io_error(tls_layer *t, const char *when)
{
    smtpc__transport *b = &t->base;
    if (t->inner_rc) {
        int rc = t->inner_rc;
        smtpc__err(&b->err, rc, "TLS %s: %s", when, t->base.inner->err.text[0] ? t->base.inner->err.text : smtpc_strerror(rc));
        return fail(t, rc);
    }
    unsigned long e = 0;
    char r[160];
    ossl_reason(r, sizeof r, &e);
    if (!t->done) {
        long v = SSL_get_verify_result(t->ssl);
        if (v != X509_V_OK && !t->ctx->insecure) {
            char why[200];
            verify_text(t, v, why, sizeof why);
            smtpc__err(&b->err, SMTPC_ETLS, "TLS handshake with %s: certificate verification failed: %s (subject %s)",
                       t->server_name ? t->server_name : "server", why,
                       t->leaf_subject[0] ? t->leaf_subject : "unknown");
            return fail(t, SMTPC_ETLS);
        }
        if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
            (ERR_GET_REASON(e) == SSL_R_TLSV1_ALERT_PROTOCOL_VERSION ||
             ERR_GET_REASON(e) == SSL_R_UNSUPPORTED_PROTOCOL ||
             ERR_GET_REASON(e) == SSL_R_NO_PROTOCOLS_AVAILABLE ||
             ERR_GET_REASON(e) == SSL_R_WRONG_SSL_VERSION)) {
            smtpc__err(&b->err, SMTPC_ETLS,
                       "TLS handshake with %s: protocol version: no version in common (%s; this client allows %s to %s)",
                       t->server_name ? t->server_name : "server", r, smtpc_tls_version_name(t->ctx->min_version),
                       smtpc_tls_version_name(t->ctx->max_version));
            return fail(t, SMTPC_ETLS);
        }
        if (!e || (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
            smtpc__err(&b->err, SMTPC_ETLS, "TLS handshake with %s: the server closed the connection",
                       t->server_name ? t->server_name : "server");
            return fail(t, SMTPC_ETLS);
        }
        smtpc__err(&b->err, SMTPC_ETLS, "TLS handshake with %s: %s", t->server_name ? t->server_name : "server",
                   r[0] ? r : "failed");
        return fail(t, SMTPC_ETLS);
    }
    if (!e || (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
        /* No close_notify: the data may have been cut short by an attacker. */
        smtpc__err(&b->err, SMTPC_ECLOSED, "TLS %s: the connection was closed without a TLS close_notify "
                                           "(data may be truncated)", when);
        return fail(t, SMTPC_ECLOSED);
    }
    smtpc__err(&b->err, SMTPC_ETLS, "TLS %s: %s", when, r);
    return fail(t, SMTPC_ETLS);
}

static int post_handshake(tls_layer *t)
{
    X509 *peer = SSL_get0_peer_certificate(t->ssl);
    uint8_t spki[32];
    bool have_spki = peer && spki_sha256(peer, spki);
    bool pinned = false;
    if (t->ctx->npins) {
        for (size_t i = 0; have_spki && i < t->ctx->npins; i++)
            if (CRYPTO_memcmp(spki, t->ctx->pins[i], 32) == 0) pinned = true;
        if (!pinned) {
            char got[64] = "none";
            if (have_spki) {
                memcpy(got, "sha256//", 8);
                smtpc__b64_encode(got + 8, spki, 32);
                got[52] = '\0';
            }
            smtpc__err(&t->base.err, SMTPC_ETLS,
                       "TLS handshake with %s: public key pin mismatch (the server's key is %s)",
                       t->server_name ? t->server_name : "server", got);
            return fail(t, SMTPC_ETLS);
        }
    }
    if (!peer && !t->ctx->insecure) {
        smtpc__err(&t->base.err, SMTPC_ETLS, "TLS handshake with %s: no server certificate",
                   t->server_name ? t->server_name : "server");
        return fail(t, SMTPC_ETLS);
    }
    fill_info(t, peer, have_spki ? spki : NULL, pinned);
    t->done = true;
    return 0;
}

static int want_of(tls_layer *t, int sslerr)
{
    if (t->io_want) return t->io_want;
    return sslerr == SSL_ERROR_WANT_WRITE ? SMTPC__WANT_WRITE : SMTPC__WANT_READ;
}

static int tls_handshake(smtpc__transport *base, int *want)
{
    tls_layer *t = (tls_layer *)base;
    if (t->failed) return t->fail_code;
    if (t->done) return 0;
    ERR_clear_error();
    t->io_want = 0;
    t->inner_rc = 0;
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) return post_handshake(t);
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        if (want) *want = want_of(t, e);
        return SMTPC_EAGAIN;
    }
    return io_error(t, "handshake");
}

static ssize_t tls_read(smtpc__transport *base, void *buf, size_t len, int *want)
{
    tls_layer *t = (tls_layer *)base;
    if (!t->done) {
        int rc = tls_handshake(base, want);
        if (rc) return rc;
    }
    if (t->failed) return t->fail_code;
    if (len == 0) return 0;
    ERR_clear_error();
    t->io_want = 0;
    t->inner_rc = 0;
    size_t n = 0;
    if (SSL_read_ex(t->ssl, buf, len, &n) == 1) return (ssize_t)n;
    int e = SSL_get_error(t->ssl, 0);
    if (e == SSL_ERROR_ZERO_RETURN) return 0; /* close_notify */
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        if (want) *want = want_of(t, e);
        return SMTPC_EAGAIN;
    }
    return io_error(t, "read");
}

static ssize_t tls_write(smtpc__transport *base, const void *buf, size_t len, int *want)
{
    tls_layer *t = (tls_layer *)base;
    if (!t->done) {
        int rc = tls_handshake(base, want);
        if (rc) return rc;
    }
    if (t->failed) return t->fail_code;
    if (len == 0) return 0;
    ERR_clear_error();
    t->io_want = 0;
    t->inner_rc = 0;
    size_t n = 0;
    if (SSL_write_ex(t->ssl, buf, len, &n) == 1) return (ssize_t)n;
    int e = SSL_get_error(t->ssl, 0);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        if (want) *want = want_of(t, e);
        return SMTPC_EAGAIN;
    }
    return io_error(t, "write");
}

static size_t tls_pending(const smtpc__transport *base)
{
    const tls_layer *t = (const tls_layer *)base;
    int n = SSL_pending(t->ssl);
    return n > 0 ? (size_t)n : 0;
}

static int tls_shutdown(smtpc__transport *base, int *want)
{
    tls_layer *t = (tls_layer *)base;
    if (!t->done || t->failed) return 0; /* nothing polite to say */
    ERR_clear_error();
    t->io_want = 0;
    t->inner_rc = 0;
    int r = SSL_shutdown(t->ssl);
    if (r >= 0) return 0; /* our close_notify is out; we do not wait for theirs */
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        if (want) *want = want_of(t, e);
        return SMTPC_EAGAIN;
    }
    ERR_clear_error();
    return t->inner_rc ? t->inner_rc : SMTPC_ETLS;
}

static void tls_destroy(smtpc__transport *base)
{
    tls_layer *t = (tls_layer *)base;
    SSL_free(t->ssl);
    if (t->latest) SSL_SESSION_free(t->latest);
    smtpc__tls_ctx_free(t->ctx);
    free(t->server_name);
    free(t);
}

static const smtpc__transport_ops tls_ops = {
    .name = "tls",
    .handshake = tls_handshake,
    .read = tls_read,
    .write = tls_write,
    .pending = tls_pending,
    .shutdown = tls_shutdown,
    .destroy = tls_destroy,
};

/* "[::1]" -> "::1"; "mx.example.org." -> "mx.example.org". */
static char *clean_name(const char *n)
{
    size_t len = strlen(n);
    if (len >= 2 && n[0] == '[' && n[len - 1] == ']') return smtpc__strndup(n + 1, len - 2);
    if (len > 1 && n[len - 1] == '.') return smtpc__strndup(n, len - 1);
    return smtpc__strdup(n);
}

static bool is_ip(const char *s)
{
    unsigned char b[16];
    return inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1;
}

int smtpc__tls_wrap(smtpc__transport **out, smtpc__transport *inner, smtpc__tls_ctx *ctx,
                    const char *server_name, smtpc__tls_session *resume, smtpc__errmsg *err)
{
    if (!inner || !ctx) return smtpc__err(err, SMTPC_EINVAL, "TLS: no transport or context");
    if ((!server_name || !server_name[0]) && !ctx->insecure)
        return smtpc__err(err, SMTPC_EINVAL, "TLS: a server name is needed to verify the certificate");
    if (server_name && smtpc__has_ctl(server_name))
        return smtpc__err(err, SMTPC_EINVAL, "TLS: invalid server name");
    tls_layer *t = calloc(1, sizeof *t);
    if (!t) return SMTPC_ENOMEM;
    int rc = SMTPC_ENOMEM;
    if (server_name && server_name[0] && !(t->server_name = clean_name(server_name))) goto fail;
    ERR_clear_error();
    t->ssl = SSL_new(ctx->ssl_ctx);
    BIO *bio = t->ssl ? BIO_new(bio_method) : NULL;
    if (!bio) goto fail_ssl;
    BIO_set_data(bio, t);
    SSL_set_bio(t->ssl, bio, bio);
    SSL_set_connect_state(t->ssl);
    SSL_set_ex_data(t->ssl, ex_index, t);
    if (t->server_name) {
        if (is_ip(t->server_name)) {
            if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), t->server_name) != 1) goto fail_ssl;
        } else {
            SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            if (SSL_set1_host(t->ssl, t->server_name) != 1 ||
                SSL_set_tlsext_host_name(t->ssl, t->server_name) != 1)
                goto fail_ssl;
        }
    }
    if (resume && resume->s && SSL_set_session(t->ssl, resume->s) != 1) goto fail_ssl;
    t->ctx = smtpc__tls_ctx_ref(ctx);
    t->base.ops = &tls_ops;
    t->base.inner = inner;
    t->base.fd = inner->fd;
    *out = &t->base;
    return 0;
fail_ssl:
    rc = ctx_fail(err, SMTPC_ETLS, "cannot set up the connection");
fail:
    if (t->ssl) SSL_free(t->ssl);
    free(t->server_name);
    free(t);
    return rc;
}

bool smtpc__tls_is(const smtpc__transport *t) { return t && t->ops == &tls_ops; }

bool smtpc__tls_peer_spoke_tls(const smtpc__transport *t)
{
    if (!smtpc__tls_is(t)) return false;
    const tls_layer *l = (const tls_layer *)t;
    if (l->peer_seen == 0) return false; /* nothing, or EOF before any record */
    /* a TLS record: content type 20..24 (change_cipher_spec, alert,
     * handshake, application_data, heartbeat), then major version 3 */
    if (l->peer_head[0] < 20 || l->peer_head[0] > 24) return false;
    return l->peer_seen < 2 || l->peer_head[1] == 3;
}

const smtpc_tls_info *smtpc__tls_info(const smtpc__transport *t)
{
    if (!smtpc__tls_is(t)) return NULL;
    const tls_layer *l = (const tls_layer *)t;
    return l->done ? &l->info : NULL;
}

smtpc__tls_session *smtpc__tls_get_session(smtpc__transport *t)
{
    if (!smtpc__tls_is(t)) return NULL;
    tls_layer *l = (tls_layer *)t;
    SSL_SESSION *s = NULL;
    if (l->latest && SSL_SESSION_is_resumable(l->latest)) {
        SSL_SESSION_up_ref(l->latest);
        s = l->latest;
    } else {
        s = SSL_get1_session(l->ssl);
        if (s && !SSL_SESSION_is_resumable(s)) {
            SSL_SESSION_free(s);
            s = NULL;
        }
    }
    if (!s) return NULL;
    smtpc__tls_session *r = malloc(sizeof *r);
    if (!r) {
        SSL_SESSION_free(s);
        return NULL;
    }
    r->s = s;
    return r;
}

void smtpc__tls_session_free(smtpc__tls_session *s)
{
    if (!s) return;
    SSL_SESSION_free(s->s);
    free(s);
}
