/* SASL mechanisms: RFC test vectors, exact encodings, hostile servers,
 * selection. */
#include "engine/sasl.h"
#include "engine/sasl/sasl_int.h" /* round counter, for the bound test */
#include "t.h"

#include <stdint.h>

static char *b64(const char *raw, size_t n)
{
    static char out[4096];
    smtpc__b64_encode(out, (const uint8_t *)raw, n);
    out[smtpc__b64_encoded_len(n)] = '\0';
    return out;
}

static char *unb64(const char *s, size_t *n)
{
    static char out[4096];
    long r = smtpc__b64_decode((uint8_t *)out, s, strlen(s));
    if (r < 0) return NULL;
    out[r] = '\0';
    if (n) *n = (size_t)r;
    return out;
}

static smtpc__sasl *mk(smtpc__sasl_mech m, const smtpc__sasl_creds *c)
{
    smtpc__sasl *s = NULL;
    smtpc__errmsg err = {{0}};
    int rc = smtpc__sasl_new(&s, m, c, &err);
    if (rc) T_FAILF("sasl_new(%s): %d %s", smtpc__sasl_mech_name(m), rc, err.text);
    return s;
}

static int step_str(smtpc__sasl *s, const char *raw, smtpc__sasl_line *resp)
{
    const char *c = b64(raw, strlen(raw));
    return smtpc__sasl_step(s, c, strlen(c), resp);
}

TEST(plain_exact)
{
    smtpc__sasl_creds c = {.username = "tim", .password = "tanstaaftanstaaf"};
    smtpc__sasl *s = mk(SMTPC__SASL_PLAIN, &c);
    smtpc__sasl_line ir;
    CHECK_INT(smtpc__sasl_start(s, &ir), 0);
    CHECK_STR(ir.b64, "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
    CHECK(ir.secret);
    CHECK(ir.fits_auth_line);
    CHECK_INT(smtpc__sasl_finish(s, NULL), 0);
    smtpc__sasl_free(s);

    c.authzid = "admin";
    s = mk(SMTPC__SASL_PLAIN, &c);
    CHECK_INT(smtpc__sasl_start(s, &ir), 0);
    size_t n;
    const char *raw = unb64(ir.b64, &n);
    CHECK_MEM(raw, n, "admin\0tim\0tanstaaftanstaaf", 26);
    /* a second start is a state error */
    CHECK_INT(smtpc__sasl_start(s, &ir), SMTPC_ESTATE);
    smtpc__sasl_free(s);
}

TEST(plain_unexpected_challenge_cancels)
{
    smtpc__sasl_creds c = {.username = "u", .password = "p"};
    smtpc__sasl *s = mk(SMTPC__SASL_PLAIN, &c);
    smtpc__sasl_line ir, r;
    smtpc__sasl_start(s, &ir);
    CHECK_INT(smtpc__sasl_step(s, "", 0, &r), SMTPC_EPROTO);
    CHECK_STR(r.b64, "*");
    CHECK(r.cancel);
    smtpc__sasl_free(s);
}

TEST(login_exact)
{
    smtpc__sasl_creds c = {.username = "user@example.org", .password = "s3cret"};
    smtpc__sasl *s = mk(SMTPC__SASL_LOGIN, &c);
    smtpc__sasl_line ir, r;
    CHECK_INT(smtpc__sasl_start(s, &ir), 0);
    CHECK(ir.b64 == NULL);
    CHECK_INT(smtpc__sasl_step(s, "VXNlcm5hbWU6 ", 13, &r), 0); /* a trailing blank is tolerated */
    CHECK_STR(r.b64, "dXNlckBleGFtcGxlLm9yZw==");
    CHECK(!r.secret);
    CHECK_INT(smtpc__sasl_step(s, "UGFzc3dvcmQ6", 12, &r), 1);
    CHECK_STR(r.b64, "czNjcmV0");
    CHECK(r.secret);
    /* a third challenge is not expected */
    CHECK_INT(smtpc__sasl_step(s, "UGFzc3dvcmQ6", 12, &r), SMTPC_EPROTO);
    CHECK(r.cancel);
    smtpc__sasl_free(s);
}

TEST(cram_md5_rfc2195)
{
    smtpc__sasl_creds c = {.username = "tim", .password = "tanstaaftanstaaf"};
    smtpc__sasl *s = mk(SMTPC__SASL_CRAM_MD5, &c);
    smtpc__sasl_line ir, r;
    CHECK_INT(smtpc__sasl_start(s, &ir), 0);
    CHECK(ir.b64 == NULL);
    const char *chal = "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+";
    CHECK_INT(smtpc__sasl_step(s, chal, strlen(chal), &r), 1);
    CHECK_STR(r.b64, "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw");
    CHECK_STR(unb64(r.b64, NULL), "tim b913a602c7eda7a495b4e6e7334d3890");
    CHECK(r.secret);
    smtpc__sasl_free(s);
}

TEST(xoauth2_exact)
{
    /* Google's documented example */
    smtpc__sasl_creds c = {.username = "someuser@example.com", .oauth_token = "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"};
    smtpc__sasl *s = mk(SMTPC__SASL_XOAUTH2, &c);
    smtpc__sasl_line ir, r;
    CHECK_INT(smtpc__sasl_start(s, &ir), 0);
    CHECK_STR(ir.b64, "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==");
    CHECK(ir.secret);
    /* error JSON: answer with an empty line, fail, flag the token */
    CHECK_INT(step_str(s, "{\"status\":\"401\",\"schemes\":\"bearer\",\"scope\":\"https://mail.google.com/\"}", &r), SMTPC_EAUTH);
    CHECK_STR(r.b64, "");
    CHECK(!r.cancel);
    CHECK(smtpc__sasl_token_rejected(s));
    CHECK(strstr(smtpc__sasl_errmsg(s), "401") != NULL);
    smtpc__sasl_free(s);
}

TEST(oauthbearer_exact_and_error)
{
    /* RFC 7628 §4.1 */
    smtpc__sasl_creds c = {.username = "user@example.com", .oauth_token = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==", .host = "server.example.com", .port = 143};
    smtpc__sasl *s = mk(SMTPC__SASL_OAUTHBEARER, &c);
    smtpc__sasl_line ir, r;
    CHECK_INT(smtpc__sasl_start(s, &ir), 0);
    size_t n;
    const char *raw = unb64(ir.b64, &n);
    const char want[] = "n,a=user@example.com,\x01host=server.example.com\x01port=143\x01"
                        "auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01";
    CHECK_MEM(raw, n, want, sizeof want - 1);
    CHECK_STR(ir.b64, "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB");
    /* RFC 7628 §4.3 error */
    CHECK_INT(step_str(s, "{\"status\":\"invalid_token\",\"scope\":\"example_scope\",\"openid-configuration\":\"https://example.com/.well-known/openid-configuration\"}", &r), SMTPC_EAUTH);
    CHECK_STR(r.b64, "AQ==");
    CHECK(smtpc__sasl_token_rejected(s));
    smtpc__sasl_free(s);
}

static int tok_calls, tok_refresh;
static int token_cb(void *ud, bool refresh, const char **tok, size_t *len)
{
    tok_calls++;
    if (refresh) tok_refresh++;
    *tok = refresh ? "fresh" : "stale";
    *len = strlen(*tok);
    return *(int *)ud;
}

TEST(token_provider_refresh)
{
    int ret = 0;
    smtpc__sasl_creds c = {.username = "u", .token_fn = token_cb, .token_ud = &ret};
    smtpc__sasl *s = mk(SMTPC__SASL_XOAUTH2, &c);
    smtpc__sasl_line ir, r;
    smtpc__sasl_start(s, &ir);
    CHECK(strstr(unb64(ir.b64, NULL), "Bearer stale\x01") != NULL);
    CHECK_INT(step_str(s, "{\"status\":\"401\"}", &r), SMTPC_EAUTH);
    CHECK(smtpc__sasl_token_rejected(s));
    CHECK_INT(smtpc__sasl_restart(s, true), 0);
    CHECK(!smtpc__sasl_token_rejected(s));
    CHECK_INT(smtpc__sasl_start(s, &ir), 0);
    CHECK(strstr(unb64(ir.b64, NULL), "Bearer fresh\x01") != NULL);
    CHECK_INT(tok_calls, 2);
    CHECK_INT(tok_refresh, 1);
    smtpc__sasl_free(s);

    /* a provider that fails */
    ret = SMTPC_ENETWORK;
    smtpc__errmsg err = {{0}};
    s = NULL;
    CHECK_INT(smtpc__sasl_new(&s, SMTPC__SASL_OAUTHBEARER, &c, &err), SMTPC_ENETWORK);
    CHECK(s == NULL);
    /* no provider: restart(refresh) is refused */
    smtpc__sasl_creds c2 = {.username = "u", .oauth_token = "t"};
    s = mk(SMTPC__SASL_XOAUTH2, &c2);
    CHECK_INT(smtpc__sasl_restart(s, true), SMTPC_EINVAL);
    smtpc__sasl_free(s);
}

TEST(long_token_deferred_ir)
{
    /* A token far longer than an AUTH line: no SASL-IR, sent after the empty 334. */
    static char tok[20001];
    memset(tok, 'A', sizeof tok - 1);
    smtpc__sasl_creds c = {.username = "u", .oauth_token = tok};
    smtpc__sasl *s = mk(SMTPC__SASL_XOAUTH2, &c);
    smtpc__sasl_line ir, r;
    CHECK_INT(smtpc__sasl_start(s, &ir), 0);
    CHECK(!ir.fits_auth_line);
    size_t irlen = ir.len;
    CHECK_INT(smtpc__sasl_step(s, "", 0, &r), 0);
    CHECK_INT(r.len, irlen);
    CHECK(r.secret);
    smtpc__sasl_free(s);

    /* Just fitting: "AUTH PLAIN " + b64 + CRLF == 512 */
    char pw[512];
    /* b64 length 499 -> not a multiple of 4; aim for 496 (372 raw octets: "\0u\0" + 369) */
    memset(pw, 'p', 369);
    pw[369] = '\0';
    smtpc__sasl_creds c3 = {.username = "u", .password = pw};
    s = mk(SMTPC__SASL_PLAIN, &c3);
    smtpc__sasl_start(s, &ir);
    CHECK_INT(ir.len, 496);
    CHECK(ir.fits_auth_line); /* 11 + 496 + 2 = 509 */
    smtpc__sasl_free(s);
    memset(pw, 'p', 372);
    pw[372] = '\0';
    s = mk(SMTPC__SASL_PLAIN, &c3);
    smtpc__sasl_start(s, &ir);
    CHECK_INT(ir.len, 500);
    CHECK(!ir.fits_auth_line); /* 513 */
    smtpc__sasl_free(s);
}

TEST(external)
{
    smtpc__sasl_creds c = {.client_cert = true};
    smtpc__sasl *s = mk(SMTPC__SASL_EXTERNAL, &c);
    smtpc__sasl_line ir;
    CHECK_INT(smtpc__sasl_start(s, &ir), 0);
    CHECK_STR(ir.b64, ""); /* sent as "AUTH EXTERNAL =" */
    CHECK(!ir.secret);
    smtpc__sasl_free(s);
    c.authzid = "joe";
    s = mk(SMTPC__SASL_EXTERNAL, &c);
    smtpc__sasl_start(s, &ir);
    CHECK_STR(ir.b64, "am9l");
    smtpc__sasl_free(s);
}

/* RFC 5802 §5 */
TEST(scram_sha1_rfc5802)
{
    smtpc__sasl_creds c = {.username = "user", .password = "pencil"};
    smtpc__sasl *s = mk(SMTPC__SASL_SCRAM_SHA_1, &c);
    CHECK_INT(smtpc__sasl_set_nonce(s, "fyko+d2lbbFgONRv9qkxdawL"), 0);
    smtpc__sasl_line ir, r;
    CHECK_INT(smtpc__sasl_start(s, &ir), 0);
    CHECK_STR(unb64(ir.b64, NULL), "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
    CHECK(!ir.secret);
    CHECK_INT(step_str(s, "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096", &r), 0);
    CHECK_STR(unb64(r.b64, NULL), "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=");
    CHECK(r.secret);
    CHECK_INT(step_str(s, "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=", &r), 1);
    CHECK_STR(r.b64, "");
    CHECK_INT(smtpc__sasl_finish(s, NULL), 0);
    smtpc__sasl_free(s);
}

/* RFC 7677 §3 */
TEST(scram_sha256_rfc7677)
{
    smtpc__sasl_creds c = {.username = "user", .password = "pencil"};
    smtpc__sasl *s = mk(SMTPC__SASL_SCRAM_SHA_256, &c);
    smtpc__sasl_set_nonce(s, "rOprNGfwEbeRWgbNEkqO");
    smtpc__sasl_line ir, r;
    smtpc__sasl_start(s, &ir);
    CHECK_STR(unb64(ir.b64, NULL), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    CHECK_INT(step_str(s, "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", &r), 0);
    CHECK_STR(unb64(r.b64, NULL), "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
    /* server-final delivered with the 235 instead of a 334 */
    const char *fin = b64("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", 46);
    CHECK_INT(smtpc__sasl_finish(s, fin), 0);
    smtpc__sasl_free(s);
}

TEST(scram_bad_server_signature)
{
    smtpc__sasl_creds c = {.username = "user", .password = "pencil"};
    smtpc__sasl *s = mk(SMTPC__SASL_SCRAM_SHA_256, &c);
    smtpc__sasl_set_nonce(s, "rOprNGfwEbeRWgbNEkqO");
    smtpc__sasl_line ir, r;
    smtpc__sasl_start(s, &ir);
    step_str(s, "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", &r);
    CHECK_INT(step_str(s, "v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", &r), SMTPC_EAUTH);
    CHECK(r.cancel);
    CHECK(strstr(smtpc__sasl_errmsg(s), "signature does not verify") != NULL);
    smtpc__sasl_free(s);

    /* 235 with no server signature at all: refused (mutual auth) */
    s = mk(SMTPC__SASL_SCRAM_SHA_1, &c);
    smtpc__sasl_start(s, &ir);
    CHECK_INT(smtpc__sasl_finish(s, NULL), SMTPC_EAUTH);
    smtpc__sasl_free(s);

    /* server error e= */
    s = mk(SMTPC__SASL_SCRAM_SHA_1, &c);
    smtpc__sasl_set_nonce(s, "fyko+d2lbbFgONRv9qkxdawL");
    smtpc__sasl_start(s, &ir);
    step_str(s, "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096", &r);
    CHECK_INT(step_str(s, "e=invalid-proof", &r), SMTPC_EAUTH);
    CHECK(strstr(smtpc__sasl_errmsg(s), "invalid-proof") != NULL);
    smtpc__sasl_free(s);
}

TEST(scram_hostile_server_first)
{
    smtpc__sasl_creds c = {.username = "user", .password = "pencil"};
    const char *bad[] = {
        "r=OTHERNONCE,s=QSXCR+Q6sek8bf92,i=4096",           /* nonce not ours */
        "r=fyko+d2lbbFgONRv9qkxdawL,s=QSXCR+Q6sek8bf92,i=4096", /* not extended */
        "r=fyko+d2lbbFgONRv9qkxdawLx,s=QSXCR+Q6sek8bf92,i=0",
        "r=fyko+d2lbbFgONRv9qkxdawLx,s=QSXCR+Q6sek8bf92,i=99999999999",
        "r=fyko+d2lbbFgONRv9qkxdawLx,s=!!!!,i=4096",
        "r=fyko+d2lbbFgONRv9qkxdawLx,i=4096",
        "m=ext,r=fyko+d2lbbFgONRv9qkxdawLx,s=QSXCR+Q6sek8bf92,i=4096",
    };
    for (size_t i = 0; i < SMTPC__ARRAY_LEN(bad); i++) {
        smtpc__sasl *s = mk(SMTPC__SASL_SCRAM_SHA_1, &c);
        smtpc__sasl_set_nonce(s, "fyko+d2lbbFgONRv9qkxdawL");
        smtpc__sasl_line ir, r;
        smtpc__sasl_start(s, &ir);
        int rc = step_str(s, bad[i], &r);
        if (rc != SMTPC_EAUTH) T_FAILF("case %zu: rc %d", i, rc);
        CHECK(r.cancel);
        smtpc__sasl_free(s);
    }
}

/* RFC 7677: fewer than 4096 iterations is refused unless the caller lowers
 * the minimum (a server asking for i=1 makes the proof cheap to crack). */
TEST(scram_min_iterations)
{
    static const char *const first1 = "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=1";
    static const char *const first4096 =
        "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";
    static const struct { const char *first; int min; int rc; } cases[] = {
        {first1, 0, SMTPC_EAUTH},       /* default: 4096 */
        {first4096, 0, 0},
        {first1, -5, SMTPC_EAUTH},      /* negative: the default */
        {first1, 1, 0},                 /* lowered explicitly */
        {first4096, 4097, SMTPC_EAUTH}, /* raised */
        {first4096, 4096, 0},
    };
    for (size_t i = 0; i < SMTPC__ARRAY_LEN(cases); i++) {
        smtpc__sasl_creds c = {.username = "user", .password = "pencil",
                               .scram_min_iterations = cases[i].min};
        smtpc__sasl *s = mk(SMTPC__SASL_SCRAM_SHA_1, &c);
        smtpc__sasl_set_nonce(s, "fyko+d2lbbFgONRv9qkxdawL");
        smtpc__sasl_line ir, r;
        smtpc__sasl_start(s, &ir);
        int rc = step_str(s, cases[i].first, &r);
        if (rc != cases[i].rc) T_FAILF("case %zu: rc %d (%s)", i, rc, smtpc__sasl_errmsg(s));
        if (rc) {
            CHECK(r.cancel);
            CHECK(strstr(smtpc__sasl_errmsg(s), "SCRAM-SHA-1") != NULL);
            CHECK(strstr(smtpc__sasl_errmsg(s), "fewer than the") != NULL);
        } else {
            CHECK(!r.cancel && r.secret);
        }
        smtpc__sasl_free(s);
    }
    /* the SHA-256 variant enforces it the same way */
    smtpc__sasl_creds c = {.username = "user", .password = "pencil"};
    smtpc__sasl *s = mk(SMTPC__SASL_SCRAM_SHA_256, &c);
    smtpc__sasl_set_nonce(s, "rOprNGfwEbeRWgbNEkqO");
    smtpc__sasl_line ir, r;
    smtpc__sasl_start(s, &ir);
    CHECK_INT(step_str(s, "r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4095", &r), SMTPC_EAUTH);
    CHECK(strstr(smtpc__sasl_errmsg(s), "4095") != NULL);
    smtpc__sasl_free(s);
}

TEST(scram_names_escaped_and_random_nonce)
{
    smtpc__sasl_creds c = {.username = "a,b=c", .password = "p", .authzid = "x=y"};
    smtpc__sasl *s = mk(SMTPC__SASL_SCRAM_SHA_256, &c);
    smtpc__sasl_line ir;
    smtpc__sasl_start(s, &ir);
    const char *m = unb64(ir.b64, NULL);
    CHECK(strncmp(m, "n,a=x=3Dy,n=a=2Cb=3Dc,r=", 24) == 0);
    CHECK_INT(strlen(m), 24 + 32);
    smtpc__sasl_free(s);
}

TEST(bad_base64_cancels)
{
    smtpc__sasl_creds c = {.username = "u", .password = "p"};
    smtpc__sasl *s = mk(SMTPC__SASL_LOGIN, &c);
    smtpc__sasl_line ir, r;
    smtpc__sasl_start(s, &ir);
    CHECK_INT(smtpc__sasl_step(s, "VXNlcm5hbWU6!", 13, &r), SMTPC_EPROTO);
    CHECK_STR(r.b64, "*");
    CHECK(r.cancel);
    CHECK(strstr(smtpc__sasl_errmsg(s), "not valid base64") != NULL);
    smtpc__sasl_free(s);
}

TEST(deferred_ir_and_failure_state)
{
    /* EXTERNAL's empty initial response, deferred: an empty line answers the 334 */
    smtpc__sasl_creds e = {.client_cert = true};
    smtpc__sasl *s = mk(SMTPC__SASL_EXTERNAL, &e);
    smtpc__sasl_line ir, r;
    smtpc__sasl_start(s, &ir);
    smtpc__sasl_defer_ir(s);
    CHECK_INT(smtpc__sasl_step(s, "", 0, &r), 0);
    CHECK_STR(r.b64, "");
    CHECK_INT(r.len, 0);
    smtpc__sasl_free(s);

    /* a failed exchange stays failed: no initial response leaks out later (found by fuzzing) */
    smtpc__sasl_creds c = {.username = "u", .password = "p"};
    s = mk(SMTPC__SASL_PLAIN, &c);
    smtpc__sasl_start(s, &ir);
    smtpc__sasl_defer_ir(s);
    CHECK_INT(smtpc__sasl_step(s, "abc", 3, &r), SMTPC_EPROTO);
    CHECK_STR(r.b64, "*");
    CHECK_INT(r.len, 1);
    CHECK_INT(smtpc__sasl_step(s, "", 0, &r), SMTPC_EPROTO);
    CHECK_STR(r.b64, "*");
    CHECK_INT(r.len, 1);
    CHECK(!r.secret);
    smtpc__sasl_free(s);
}

/* Whole exchanges through smtpc__sasl_reply, as the session drives them. */
TEST(reply_transcripts)
{
    smtpc__sasl_creds c = {.username = "user", .password = "pencil"};
    smtpc__sasl_line ir, r;
    /* SCRAM-SHA-1, RFC 5802 exchange with SMTP framing */
    smtpc__sasl *s = mk(SMTPC__SASL_SCRAM_SHA_1, &c);
    smtpc__sasl_set_nonce(s, "fyko+d2lbbFgONRv9qkxdawL");
    smtpc__sasl_start(s, &ir);
    const char *sf = b64("r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096", 70);
    char sfc[256];
    smtpc__strlcpy(sfc, sf, sizeof sfc);
    CHECK_INT(smtpc__sasl_reply(s, 334, sfc, strlen(sfc), &r), 0);
    CHECK(r.secret);
    const char *fin = "dj1ybUY5cHFWOFM3c3VBb1pXamE0ZEpSa0ZzS1E9"; /* v=rmF9pqV8S7suAoZWja4dJRkFsKQ= */
    CHECK_INT(smtpc__sasl_reply(s, 334, fin, strlen(fin), &r), 0);
    CHECK_STR(r.b64, "");
    CHECK_INT(smtpc__sasl_reply(s, 235, "2.7.0 Authentication successful", 31, &r), 1);
    smtpc__sasl_free(s);

    /* SCRAM: 235 straight after the client proof, no server signature: refused */
    s = mk(SMTPC__SASL_SCRAM_SHA_1, &c);
    smtpc__sasl_set_nonce(s, "fyko+d2lbbFgONRv9qkxdawL");
    smtpc__sasl_start(s, &ir);
    smtpc__sasl_reply(s, 334, sfc, strlen(sfc), &r);
    CHECK_INT(smtpc__sasl_reply(s, 235, "2.7.0 ok", 8, &r), SMTPC_EAUTH);
    smtpc__sasl_free(s);

    /* PLAIN refused; a 4xx is temporary; nonsense codes are protocol errors */
    s = mk(SMTPC__SASL_PLAIN, &c);
    smtpc__sasl_start(s, &ir);
    CHECK_INT(smtpc__sasl_reply(s, 535, "5.7.8 Bad\r\ncredentials", 23, &r), SMTPC_EAUTH);
    CHECK(strstr(smtpc__sasl_errmsg(s), "535 5.7.8 Bad") != NULL);
    CHECK(strchr(smtpc__sasl_errmsg(s), '\r') == NULL);
    CHECK(!smtpc__sasl_token_rejected(s));
    CHECK_INT(smtpc__sasl_reply(s, 454, "4.7.0 later", 11, &r), SMTPC_ETEMPFAIL);
    CHECK_INT(smtpc__sasl_reply(s, 250, "ok", 2, &r), SMTPC_EPROTO);
    smtpc__sasl_free(s);

    /* LOGIN with bad base64: we cancel, the server's 501 keeps our reason; a
     * 235 after our cancel is not believed */
    s = mk(SMTPC__SASL_LOGIN, &c);
    smtpc__sasl_start(s, &ir);
    CHECK_INT(smtpc__sasl_reply(s, 334, "%%%", 3, &r), SMTPC_EPROTO);
    CHECK_STR(r.b64, "*");
    CHECK_INT(smtpc__sasl_reply(s, 501, "5.7.0 cancelled", 15, &r), SMTPC_EPROTO);
    CHECK(strstr(smtpc__sasl_errmsg(s), "not valid base64") != NULL);
    CHECK(strstr(smtpc__sasl_errmsg(s), "501 5.7.0 cancelled") != NULL);
    CHECK_INT(smtpc__sasl_reply(s, 235, "ok", 2, &r), SMTPC_EPROTO);
    smtpc__sasl_free(s);

    /* XOAUTH2: a bare 535 marks the token for a refresh */
    smtpc__sasl_creds t = {.username = "u", .oauth_token = "tok"};
    s = mk(SMTPC__SASL_XOAUTH2, &t);
    smtpc__sasl_start(s, &ir);
    CHECK_INT(smtpc__sasl_reply(s, 535, "5.7.3 Authentication unsuccessful", 33, &r), SMTPC_EAUTH);
    CHECK(smtpc__sasl_token_rejected(s));
    smtpc__sasl_free(s);
}

TEST(endless_challenges)
{
    smtpc__sasl_creds c = {.username = "u", .password = "p"};
    smtpc__sasl *s = mk(SMTPC__SASL_PLAIN, &c);
    smtpc__sasl_line ir, r;
    smtpc__sasl_start(s, &ir);
    smtpc__sasl_defer_ir(s);
    CHECK_INT(smtpc__sasl_step(s, "", 0, &r), 0); /* the IR */
    int rc = 0, i;
    for (i = 0; i < 100 && rc == 0; i++) rc = smtpc__sasl_step(s, "", 0, &r);
    CHECK(rc < 0);
    CHECK(r.cancel);
    smtpc__sasl_free(s);

    /* LOGIN fed forever: bounded by the round limit whatever the mechanism */
    s = mk(SMTPC__SASL_LOGIN, &c);
    smtpc__sasl_start(s, &ir);
    rc = 0;
    for (i = 0; i < 100 && rc >= 0; i++) rc = smtpc__sasl_step(s, "", 0, &r);
    CHECK(rc < 0);
    CHECK(i <= SMTPC__SASL_MAX_ROUNDS + 1);
    smtpc__sasl_free(s);
}

TEST(too_many_rounds_message)
{
    /* No mechanism here legitimately needs 10 rounds, so the bound is a
     * backstop: check it fires before anything else on the 11th. */
    smtpc__sasl_creds c = {.username = "u", .password = "p"};
    smtpc__sasl *s = mk(SMTPC__SASL_LOGIN, &c);
    smtpc__sasl_line ir, r;
    smtpc__sasl_start(s, &ir);
    s->rounds = SMTPC__SASL_MAX_ROUNDS - 1;
    CHECK_INT(smtpc__sasl_step(s, "", 0, &r), 0); /* the 10th: fine */
    s->done = false;
    s->state = 0;
    CHECK_INT(smtpc__sasl_step(s, "", 0, &r), SMTPC_EAUTH);
    CHECK(strstr(smtpc__sasl_errmsg(s), "too many challenges") != NULL);
    CHECK(r.cancel);
    smtpc__sasl_free(s);
}

TEST(oversized_challenge)
{
    smtpc__sasl_creds c = {.username = "u", .password = "p"};
    smtpc__sasl *s = mk(SMTPC__SASL_CRAM_MD5, &c);
    smtpc__sasl_line ir, r;
    smtpc__sasl_start(s, &ir);
    static char big[SMTPC__SASL_MAX_CHALLENGE + 4];
    memset(big, 'A', sizeof big);
    CHECK_INT(smtpc__sasl_step(s, big, sizeof big, &r), SMTPC_ELIMIT);
    CHECK(r.cancel);
    smtpc__sasl_free(s);
}

TEST(credentials_validated)
{
    smtpc__errmsg err = {{0}};
    smtpc__sasl *s = NULL;
    smtpc__sasl_creds c = {.username = "u\r\nQUIT", .password = "p"};
    CHECK_INT(smtpc__sasl_new(&s, SMTPC__SASL_PLAIN, &c, &err), SMTPC_EINVAL);
    c.username = "u";
    c.password = "p\n";
    CHECK_INT(smtpc__sasl_new(&s, SMTPC__SASL_LOGIN, &c, &err), SMTPC_EINVAL);
    c.password = NULL;
    CHECK_INT(smtpc__sasl_new(&s, SMTPC__SASL_CRAM_MD5, &c, &err), SMTPC_EINVAL);
    smtpc__sasl_creds t = {.username = "u\x01", .oauth_token = "tok"};
    CHECK_INT(smtpc__sasl_new(&s, SMTPC__SASL_XOAUTH2, &t, &err), SMTPC_EINVAL);
    t.username = "u";
    t.oauth_token = "to\x01k";
    CHECK_INT(smtpc__sasl_new(&s, SMTPC__SASL_XOAUTH2, &t, &err), SMTPC_EINVAL);
    t.oauth_token = NULL;
    CHECK_INT(smtpc__sasl_new(&s, SMTPC__SASL_OAUTHBEARER, &t, &err), SMTPC_EINVAL);
    /* a password SASLprep cannot handle: SCRAM refuses, PLAIN does not care */
    smtpc__sasl_creds u = {.username = "u", .password = "p\xc3\xa9"};
    CHECK_INT(smtpc__sasl_new(&s, SMTPC__SASL_SCRAM_SHA_256, &u, &err), SMTPC_EUNSUPPORTED);
    CHECK(strstr(err.text, "SASLprep") != NULL);
    CHECK(s == NULL);
    CHECK_INT(smtpc__sasl_new(&s, SMTPC__SASL_PLAIN, &u, &err), 0);
    smtpc__sasl_free(s);
    smtpc__sasl_free(NULL);
}

TEST(saslprep)
{
    char *o = NULL;
    CHECK_INT(smtpc__saslprep("pencil", &o), 0);
    CHECK_STR(o, "pencil");
    smtpc__free_secret(o);
    CHECK_INT(smtpc__saslprep("I\xc2\xadX", &o), 0); /* soft hyphen removed (RFC 4013 ex. 1) */
    CHECK_STR(o, "IX");
    smtpc__free_secret(o);
    CHECK_INT(smtpc__saslprep("a\xc2\xa0" "b", &o), 0); /* NBSP -> space */
    CHECK_STR(o, "a b");
    smtpc__free_secret(o);
    CHECK_INT(smtpc__saslprep("\x07", &o), SMTPC_EINVAL);   /* RFC 4013 ex. 5 */
    CHECK_INT(smtpc__saslprep("\xc3\x28", &o), SMTPC_EINVAL); /* bad UTF-8 */
    CHECK_INT(smtpc__saslprep("\xe2\x85\xa8", &o), SMTPC_EUNSUPPORTED); /* needs NFKC */
}

TEST(selection)
{
    const char *offered_names[] = {"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "XOAUTH2", "GSSAPI"};
    smtpc__sasl_mask offered = smtpc__sasl_mask_from_names(offered_names, 6);
    CHECK_INT(offered, SMTPC__SASL_BIT(SMTPC__SASL_PLAIN) | SMTPC__SASL_BIT(SMTPC__SASL_LOGIN) |
                           SMTPC__SASL_BIT(SMTPC__SASL_CRAM_MD5) | SMTPC__SASL_BIT(SMTPC__SASL_SCRAM_SHA_1) |
                           SMTPC__SASL_BIT(SMTPC__SASL_XOAUTH2));
    smtpc__sasl_creds pw = {.username = "u", .password = "p"};
    smtpc__sasl_creds tok = {.username = "u", .oauth_token = "t"};
    smtpc__sasl_creds cert = {.client_cert = true};
    smtpc__sasl_creds nonascii = {.username = "u", .password = "\xe2\x85\xa8"};
    char buf[128];

    /* cleartext connection: no PLAIN/LOGIN/OAuth */
    smtpc__sasl_mask a = smtpc__sasl_default_allowed(&pw, false);
    smtpc__sasl_mask_format(a, buf, sizeof buf);
    CHECK_STR(buf, "SCRAM-SHA-256 SCRAM-SHA-1 CRAM-MD5");
    CHECK_INT(smtpc__sasl_choose(offered, a), SMTPC__SASL_SCRAM_SHA_1);
    const char *only_plain[] = {"PLAIN", "LOGIN"};
    CHECK_INT(smtpc__sasl_choose(smtpc__sasl_mask_from_names(only_plain, 2), a), SMTPC__SASL_NONE);
    /* encrypted */
    a = smtpc__sasl_default_allowed(&pw, true);
    smtpc__sasl_mask_format(a, buf, sizeof buf);
    CHECK_STR(buf, "SCRAM-SHA-256 SCRAM-SHA-1 CRAM-MD5 PLAIN LOGIN");
    CHECK_INT(smtpc__sasl_choose(smtpc__sasl_mask_from_names(only_plain, 2), a), SMTPC__SASL_PLAIN);
    const char *only_login[] = {"login"};
    CHECK_INT(smtpc__sasl_choose(smtpc__sasl_mask_from_names(only_login, 1), a), SMTPC__SASL_LOGIN);
    /* token */
    a = smtpc__sasl_default_allowed(&tok, true);
    smtpc__sasl_mask_format(a, buf, sizeof buf);
    CHECK_STR(buf, "OAUTHBEARER XOAUTH2");
    CHECK_INT(smtpc__sasl_choose(offered, a), SMTPC__SASL_XOAUTH2);
    CHECK_INT(smtpc__sasl_default_allowed(&tok, false), 0);
    /* client cert */
    a = smtpc__sasl_default_allowed(&cert, false);
    CHECK_INT(a, SMTPC__SASL_BIT(SMTPC__SASL_EXTERNAL));
    /* a password SCRAM cannot prep: SCRAM not in the default set */
    a = smtpc__sasl_default_allowed(&nonascii, true);
    smtpc__sasl_mask_format(a, buf, sizeof buf);
    CHECK_STR(buf, "CRAM-MD5 PLAIN LOGIN");
    /* explicit caller list */
    smtpc__errmsg err = {{0}};
    smtpc__sasl_mask m = 0;
    CHECK_INT(smtpc__sasl_mask_parse("login, plain", &m, &err), 0);
    CHECK_INT(smtpc__sasl_choose(offered, m), SMTPC__SASL_PLAIN);
    CHECK_INT(smtpc__sasl_mask_parse("PLAIN NTLM", &m, &err), SMTPC_EINVAL);
    CHECK(strstr(err.text, "NTLM") != NULL);
    /* format truncation reports the needed size */
    char small[6];
    size_t need = smtpc__sasl_mask_format(SMTPC__SASL_ALL, small, sizeof small);
    CHECK_INT(need, strlen("SCRAM-SHA-256 SCRAM-SHA-1 CRAM-MD5 OAUTHBEARER XOAUTH2 PLAIN LOGIN EXTERNAL"));
    CHECK_INT(strlen(small) < sizeof small, 1);
    CHECK_STR(smtpc__sasl_mech_name(SMTPC__SASL_SCRAM_SHA_256), "SCRAM-SHA-256");
    CHECK_INT(smtpc__sasl_mech_from_name("scram-sha-1"), SMTPC__SASL_SCRAM_SHA_1);
    CHECK_INT(smtpc__sasl_mech_from_name("SCRAM-SHA-1-PLUS"), SMTPC__SASL_NONE);
}

static size_t released, released_nonzero;

static void on_release(const void *p, size_t n)
{
    released++;
    for (size_t i = 0; i < n; i++) released_nonzero += ((const uint8_t *)p)[i] != 0;
}

/* The buffers that carry a password grow without leaving copies in the
 * blocks they give up (a long password: several growths). */
TEST(secret_buffers_wiped_on_growth)
{
    static char pw[3000];
    memset(pw, 'p', sizeof pw - 1);
    smtpc__buf_release_hook = on_release;
    released = released_nonzero = 0;
    smtpc__sasl_creds c = {.username = "u", .password = pw};
    smtpc__sasl *s = mk(SMTPC__SASL_PLAIN, &c);
    smtpc__sasl_line ir;
    CHECK_INT(smtpc__sasl_start(s, &ir), 0);
    CHECK_INT(ir.len, smtpc__b64_encoded_len(sizeof pw - 1 + 3));
    smtpc__sasl_free(s);
    /* the message's first block (given up when the password arrives), then
     * the message and the response when freed */
    CHECK_INT(released, 3);
    CHECK_INT(released_nonzero, 0);
    smtpc__buf_release_hook = NULL;
}

int main(void)
{
    RUN(secret_buffers_wiped_on_growth);
    RUN(plain_exact);
    RUN(plain_unexpected_challenge_cancels);
    RUN(login_exact);
    RUN(cram_md5_rfc2195);
    RUN(xoauth2_exact);
    RUN(oauthbearer_exact_and_error);
    RUN(token_provider_refresh);
    RUN(long_token_deferred_ir);
    RUN(external);
    RUN(scram_sha1_rfc5802);
    RUN(scram_sha256_rfc7677);
    RUN(scram_bad_server_signature);
    RUN(scram_hostile_server_first);
    RUN(scram_min_iterations);
    RUN(scram_names_escaped_and_random_nonce);
    RUN(bad_base64_cancels);
    RUN(deferred_ir_and_failure_state);
    RUN(reply_transcripts);
    RUN(endless_challenges);
    RUN(too_many_rounds_message);
    RUN(oversized_challenge);
    RUN(credentials_validated);
    RUN(saslprep);
    RUN(selection);
    T_DONE();
}
