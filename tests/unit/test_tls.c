/* TLS layer: configuration checks that need no peer (the handshake matrix
 * is in tests/integration/test_tls.py). */
#include "net/tls.h"
#include "t.h"

static int ctx_rc(const smtpc__tls_config *cfg, smtpc__errmsg *err)
{
    smtpc__tls_ctx *c = NULL;
    int rc = smtpc__tls_ctx_new(&c, cfg, err);
    if (rc == 0) smtpc__tls_ctx_free(c);
    else if (c) T_FAILF("out set on failure");
    return rc;
}

TEST(defaults)
{
    smtpc__tls_ctx *c = NULL;
    smtpc__errmsg err = {{0}};
    CHECK_INT(smtpc__tls_ctx_new(&c, NULL, &err), 0);
    int mn = 0, mx = 0;
    smtpc__tls_ctx_versions(c, &mn, &mx);
    CHECK_INT(mn, SMTPC_TLS_1_2);
    CHECK_INT(mx, SMTPC_TLS_1_3);
    CHECK(!smtpc__tls_ctx_has_client_cert(c));
    /* references: the second free releases it (ASan checks) */
    CHECK(smtpc__tls_ctx_ref(c) == c);
    smtpc__tls_ctx_free(c);
    smtpc__tls_ctx_free(c);
    smtpc__tls_ctx_free(NULL);
}

TEST(versions)
{
    smtpc__errmsg err = {{0}};
    smtpc__tls_config cfg = {.min_version = SMTPC_TLS_1_0};
    smtpc__tls_ctx *c = NULL;
    CHECK_INT(smtpc__tls_ctx_new(&c, &cfg, &err), 0); /* nearest: 1.2 */
    int mn = 0, mx = 0;
    smtpc__tls_ctx_versions(c, &mn, &mx);
    CHECK_INT(mn, SMTPC_TLS_1_2);
    smtpc__tls_ctx_free(c);
    cfg.version_policy = SMTPC_TLS_VERSION_STRICT;
    CHECK_INT(ctx_rc(&cfg, &err), SMTPC_EUNSUPPORTED);
    CHECK(strstr(err.text, "TLS 1.0 is not supported") != NULL);
    cfg = (smtpc__tls_config){.min_version = SMTPC_TLS_1_3, .max_version = SMTPC_TLS_1_2};
    CHECK_INT(ctx_rc(&cfg, &err), SMTPC_EINVAL);
    cfg = (smtpc__tls_config){.max_version = 7};
    CHECK_INT(ctx_rc(&cfg, &err), SMTPC_EINVAL);
    cfg = (smtpc__tls_config){.min_version = SMTPC_TLS_1_3, .version_policy = SMTPC_TLS_VERSION_STRICT};
    CHECK_INT(ctx_rc(&cfg, &err), 0);
    CHECK_STR(smtpc_tls_version_name(SMTPC_TLS_1_3), "TLS 1.3");
    CHECK_STR(smtpc_tls_version_name(0), "default");
    CHECK_STR(smtpc_tls_version_name(42), "unknown");
}

/* The lenient policy only narrows: on a build without TLS 1.3 a required
 * 1.3 fails instead of becoming 1.2 (it used to connect with 1.2). */
TEST(versions_never_lower_a_minimum)
{
    smtpc__errmsg err = {{0}};
    static const struct { int min, max, build_max, pol, rc, rmin, rmax; } cases[] = {
        {SMTPC_TLS_1_3, 0, SMTPC_TLS_1_2, SMTPC_TLS_VERSION_NEAREST, SMTPC_EUNSUPPORTED, 0, 0},
        {SMTPC_TLS_1_3, SMTPC_TLS_1_3, SMTPC_TLS_1_2, SMTPC_TLS_VERSION_NEAREST, SMTPC_EUNSUPPORTED, 0, 0},
        {SMTPC_TLS_1_3, 0, SMTPC_TLS_1_2, SMTPC_TLS_VERSION_STRICT, SMTPC_EUNSUPPORTED, 0, 0},
        {SMTPC_TLS_1_3, 0, SMTPC_TLS_1_3, SMTPC_TLS_VERSION_NEAREST, 0, SMTPC_TLS_1_3, SMTPC_TLS_1_3},
        /* narrowing is still fine: minimum raised, maximum lowered */
        {SMTPC_TLS_1_0, 0, SMTPC_TLS_1_2, SMTPC_TLS_VERSION_NEAREST, 0, SMTPC_TLS_1_2, SMTPC_TLS_1_2},
        {0, SMTPC_TLS_1_3, SMTPC_TLS_1_2, SMTPC_TLS_VERSION_NEAREST, 0, SMTPC_TLS_1_2, SMTPC_TLS_1_2},
        {0, SMTPC_TLS_1_3, SMTPC_TLS_1_2, SMTPC_TLS_VERSION_STRICT, SMTPC_EUNSUPPORTED, 0, 0},
        {0, 0, SMTPC_TLS_1_3, SMTPC_TLS_VERSION_NEAREST, 0, SMTPC_TLS_1_2, SMTPC_TLS_1_3},
        {0, 0, SMTPC_TLS_1_2, SMTPC_TLS_VERSION_NEAREST, 0, SMTPC_TLS_1_2, SMTPC_TLS_1_2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int mn = cases[i].min, mx = cases[i].max;
        int rc = smtpc__tls_fit_versions(&mn, &mx, cases[i].build_max,
                                         (smtpc_tls_version_policy)cases[i].pol, &err);
        if (rc != cases[i].rc) T_FAILF("case %zu: rc %d (%s)", i, rc, err.text);
        if (rc) {
            if (mn != cases[i].min || mx != cases[i].max) T_FAILF("case %zu: changed on error", i);
        } else if (mn != cases[i].rmin || mx != cases[i].rmax) {
            T_FAILF("case %zu: %d..%d", i, mn, mx);
        }
    }
    int mn = SMTPC_TLS_1_3, mx = 0;
    CHECK_INT(smtpc__tls_fit_versions(&mn, &mx, SMTPC_TLS_1_2, SMTPC_TLS_VERSION_NEAREST, &err),
              SMTPC_EUNSUPPORTED);
    CHECK(strstr(err.text, "minimum version TLS 1.3 is not supported") != NULL);
    CHECK(strstr(err.text, "never lowered") != NULL);
}

TEST(pins)
{
    smtpc__errmsg err = {{0}};
    smtpc__tls_config cfg = {.pins = "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=; "
                                     "sha256//BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA="};
    CHECK_INT(ctx_rc(&cfg, &err), 0);
    const char *bad[] = {"sha1//AAAAAAAAAAAAAAAAAAAAAAAAAAAA", "sha256//AAAA",
                         "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",
                         "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "garbage"};
    for (size_t i = 0; i < SMTPC__ARRAY_LEN(bad); i++) {
        cfg.pins = bad[i];
        if (ctx_rc(&cfg, &err) != SMTPC_EINVAL) T_FAILF("pin %s accepted", bad[i]);
    }
}

TEST(files)
{
    smtpc__errmsg err = {{0}};
    smtpc__tls_config cfg = {.ca_file = "/nonexistent/ca.pem"};
    CHECK_INT(ctx_rc(&cfg, &err), SMTPC_ECONFIG);
    CHECK(strstr(err.text, "/nonexistent/ca.pem") != NULL);
    cfg = (smtpc__tls_config){.cert_file = "/nonexistent/c.pem"};
    CHECK_INT(ctx_rc(&cfg, &err), SMTPC_ECONFIG);
    CHECK(strstr(err.text, "client certificate") != NULL);
    cfg = (smtpc__tls_config){.key_file = "/nonexistent/k.pem"};
    CHECK_INT(ctx_rc(&cfg, &err), SMTPC_EINVAL);
    cfg = (smtpc__tls_config){.ciphers = "NO-SUCH-CIPHER"};
    CHECK_INT(ctx_rc(&cfg, &err), SMTPC_ECONFIG);
}

static ssize_t never(smtpc__transport *t, void *b, size_t n, int *w)
{
    SMTPC__UNUSED(t); SMTPC__UNUSED(b); SMTPC__UNUSED(n);
    *w = SMTPC__WANT_READ;
    return SMTPC_EAGAIN;
}
static ssize_t never_w(smtpc__transport *t, const void *b, size_t n, int *w)
{
    SMTPC__UNUSED(t); SMTPC__UNUSED(b);
    SMTPC__UNUSED(w);
    return (ssize_t)n; /* swallow */
}
static void nop_destroy(smtpc__transport *t) { SMTPC__UNUSED(t); }
static const smtpc__transport_ops mem_ops = {.name = "mem", .read = never, .write = never_w, .destroy = nop_destroy};

TEST(wrap)
{
    smtpc__errmsg err = {{0}};
    smtpc__tls_ctx *c = NULL;
    CHECK_INT(smtpc__tls_ctx_new(&c, NULL, &err), 0);
    smtpc__transport inner = {.ops = &mem_ops, .fd = -1};
    smtpc__transport *t = NULL;
    /* verification needs a name */
    CHECK_INT(smtpc__tls_wrap(&t, &inner, c, NULL, NULL, &err), SMTPC_EINVAL);
    CHECK_INT(smtpc__tls_wrap(&t, &inner, c, "bad\r\nname", NULL, &err), SMTPC_EINVAL);
    CHECK(t == NULL);
    CHECK_INT(smtpc__tls_wrap(&t, &inner, c, "mx.example.org", NULL, &err), 0);
    CHECK(smtpc__tls_is(t));
    CHECK(!smtpc__tls_is(&inner));
    CHECK(smtpc__tls_info(t) == NULL);   /* before the handshake */
    CHECK(smtpc__tls_info(&inner) == NULL);
    /* the ClientHello goes to the inner layer, then it waits for the server */
    int want = 0;
    CHECK_INT(smtpc__transport_handshake(t, &want), SMTPC_EAGAIN);
    CHECK_INT(want, SMTPC__WANT_READ);
    char buf[8];
    CHECK_INT(smtpc__transport_read(t, buf, sizeof buf, &want), SMTPC_EAGAIN);
    CHECK(smtpc__tls_get_session(t) == NULL);
    CHECK_INT(smtpc__transport_pending(t), 0);
    /* the context outlives its creator's reference while a layer uses it */
    smtpc__tls_ctx_free(c);
    t->inner = NULL; /* inner is on the stack */
    smtpc__transport_free(t);
}

int main(void)
{
    RUN(defaults);
    RUN(versions);
    RUN(versions_never_lower_a_minimum);
    RUN(pins);
    RUN(files);
    RUN(wrap);
    T_DONE();
}
