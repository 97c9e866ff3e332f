/* The SASL mechanisms that need cryptography: CRAM-MD5 (RFC 2195) and
 * SCRAM-SHA-1 / SCRAM-SHA-256 (RFC 5802, RFC 7677), without channel binding
 * (gs2 flag "n"). */
#include "sasl_int.h"

#include "util/syslib.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <stdlib.h>
#include <string.h>

int smtpc__sasl_cram_md5(smtpc__sasl *s, const uint8_t *chal, size_t n, smtpc__sasl_line *resp)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int ml = 0;
    int lrc = smtpc__syslib_need(SMTPC__LIB_CRYPTO, &s->err);
    if (lrc) return lrc;
    if (!HMAC(EVP_md5(), s->pass, (int)strlen(s->pass), chal, n, mac, &ml))
        return smtpc__err(&s->err, SMTPC_EAUTH, "SASL CRAM-MD5: HMAC-MD5 is not available");
    smtpc__buf m;
    smtpc__buf_init_secure(&m, 0);
    int rc = smtpc__buf_append_str(&m, s->user);
    if (!rc) rc = smtpc__buf_append_str(&m, " ");
    for (unsigned i = 0; !rc && i < ml; i++) rc = smtpc__buf_printf(&m, "%02x", mac[i]);
    if (!rc) rc = smtpc__sasl_emit(s, smtpc__buf_ptr(&m), smtpc__buf_size(&m), true, resp);
    smtpc__buf_free_secure(&m);
    smtpc__secure_zero(mac, sizeof mac);
    return rc;
}

static const EVP_MD *scram_md(const smtpc__sasl *s)
{
    return s->mech == SMTPC__SASL_SCRAM_SHA_1 ? EVP_sha1() : EVP_sha256();
}

/* saslname: ',' -> "=2C", '=' -> "=3D" (RFC 5802 §5.1). */
static int append_saslname(smtpc__buf *b, const char *v)
{
    int rc = 0;
    for (const char *p = v; !rc && *p; p++)
        rc = *p == ',' ? smtpc__buf_append_str(b, "=2C")
           : *p == '=' ? smtpc__buf_append_str(b, "=3D")
                       : smtpc__buf_append(b, p, 1);
    return rc;
}

static char *buf_to_str(smtpc__buf *b)
{
    char *r = smtpc__strndup((const char *)smtpc__buf_ptr(b), smtpc__buf_size(b));
    smtpc__buf_free_secure(b);
    return r;
}

void smtpc__sasl_scram_clear(smtpc__sasl *s)
{
    free(s->client_first_bare);
    free(s->gs2_header);
    s->client_first_bare = s->gs2_header = NULL;
    smtpc__secure_zero(s->server_sig, sizeof s->server_sig);
    s->sig_len = 0;
    s->server_verified = false;
}

int smtpc__sasl_scram_first(smtpc__sasl *s, smtpc__sasl_line *ir)
{
    int lrc = smtpc__syslib_need(SMTPC__LIB_CRYPTO, &s->err);
    if (lrc) return lrc;
    char nonce[64];
    if (s->nonce_fixed) {
        smtpc__strlcpy(nonce, s->nonce_fixed, sizeof nonce);
    } else {
        uint8_t raw[24];
        if (RAND_bytes(raw, sizeof raw) != 1)
            return smtpc__err(&s->err, SMTPC_EAUTH, "SASL SCRAM: no random numbers for the nonce");
        smtpc__b64_encode(nonce, raw, sizeof raw); /* 32 chars, never ',' */
        nonce[smtpc__b64_encoded_len(sizeof raw)] = '\0';
    }
    smtpc__buf g, b;
    smtpc__buf_init(&g, 0);
    smtpc__buf_init(&b, 0);
    int rc = smtpc__buf_append_str(&g, "n,");
    if (!rc && s->authzid && s->authzid[0]) {
        rc = smtpc__buf_append_str(&g, "a=");
        if (!rc) rc = append_saslname(&g, s->authzid);
    }
    if (!rc) rc = smtpc__buf_append_str(&g, ",");
    if (!rc) rc = smtpc__buf_append_str(&b, "n=");
    if (!rc) rc = append_saslname(&b, s->user);
    if (!rc) rc = smtpc__buf_printf(&b, ",r=%s", nonce);
    if (rc) {
        smtpc__buf_free(&g);
        smtpc__buf_free(&b);
        return rc;
    }
    smtpc__sasl_scram_clear(s);
    s->gs2_header = buf_to_str(&g);
    s->client_first_bare = buf_to_str(&b);
    if (!s->gs2_header || !s->client_first_bare) return SMTPC_ENOMEM;
    smtpc__buf m;
    smtpc__buf_init(&m, 0);
    rc = smtpc__buf_append_str(&m, s->gs2_header);
    if (!rc) rc = smtpc__buf_append_str(&m, s->client_first_bare);
    if (!rc) rc = smtpc__sasl_emit(s, smtpc__buf_ptr(&m), smtpc__buf_size(&m), false, ir);
    smtpc__buf_free(&m);
    s->state = 0;
    return rc;
}

static int scram_fail(smtpc__sasl *s, const char *why)
{
    return smtpc__err(&s->err, SMTPC_EAUTH, "SASL %s: %s", smtpc__sasl_mech_name(s->mech), why);
}

/* Finds "k=value" as the idx-th attribute of msg (comma separated). */
static bool attr_at(const char *msg, int idx, char k, const char **v, size_t *vlen)
{
    const char *p = msg;
    for (int i = 0; i < idx; i++) {
        p = strchr(p, ',');
        if (!p) return false;
        p++;
    }
    if (p[0] != k || p[1] != '=') return false;
    *v = p + 2;
    const char *e = strchr(*v, ',');
    *vlen = e ? (size_t)(e - *v) : strlen(*v);
    return true;
}

static bool hmac(const EVP_MD *md, const void *key, size_t klen, const void *d, size_t n,
                 uint8_t *out)
{
    unsigned int ml = 0;
    return HMAC(md, key, (int)klen, d, n, out, &ml) != NULL;
}

int smtpc__sasl_scram_step(smtpc__sasl *s, const uint8_t *chal, size_t n, smtpc__sasl_line *resp)
{
    if (s->state == 1) {
        int rc = smtpc__sasl_scram_verify(s, chal, n);
        if (rc) return rc;
        s->done = true;
        rc = smtpc__sasl_emit(s, "", 0, false, resp);
        return rc ? rc : 1;
    }
    const char *msg = (const char *)chal;
    if (strlen(msg) != n) return scram_fail(s, "NUL in the server-first-message");
    if (msg[0] == 'm') return scram_fail(s, "the server requires an unsupported extension");
    const char *r, *salt64, *iter;
    size_t rlen, slen, ilen;
    if (!attr_at(msg, 0, 'r', &r, &rlen) || !attr_at(msg, 1, 's', &salt64, &slen) ||
        !attr_at(msg, 2, 'i', &iter, &ilen))
        return scram_fail(s, "malformed server-first-message");
    const char *cnonce = strstr(s->client_first_bare, ",r=") + 3;
    size_t cnlen = strlen(cnonce);
    if (rlen <= cnlen || memcmp(r, cnonce, cnlen) != 0)
        return scram_fail(s, "the server's nonce does not extend ours");
    for (size_t i = 0; i < rlen; i++)
        if (r[i] < 0x21 || r[i] > 0x7e) return scram_fail(s, "invalid character in the server's nonce");
    uint64_t it = 0;
    if (smtpc__parse_u64(iter, ilen, &it) != 0 || it == 0)
        return scram_fail(s, "invalid iteration count");
    if (it > SMTPC__SASL_MAX_SCRAM_ITER) return scram_fail(s, "iteration count over the limit");
    if (it < s->scram_min_iter)
        return smtpc__err(&s->err, SMTPC_EAUTH,
                          "SASL %s: the server asks for %u iterations, fewer than the %u required "
                          "(RFC 7677; a weak password hash or an attacker making the proof cheap to "
                          "crack): refused; scram_min_iterations lowers the minimum",
                          smtpc__sasl_mech_name(s->mech), (unsigned)it, s->scram_min_iter);
    uint8_t *salt = NULL;
    size_t saltlen = 0;
    int rc = smtpc__sasl_decode(salt64, slen, &salt, &saltlen);
    if (rc == SMTPC_EPROTO || (!rc && saltlen == 0)) {
        free(salt);
        return scram_fail(s, "invalid salt");
    }
    if (rc) return rc;

    const EVP_MD *md = scram_md(s);
    size_t hl = (size_t)EVP_MD_get_size(md);
    uint8_t sp[EVP_MAX_MD_SIZE], ck[EVP_MAX_MD_SIZE], sk[EVP_MAX_MD_SIZE], csig[EVP_MAX_MD_SIZE],
        skey[EVP_MAX_MD_SIZE];
    unsigned int skl = 0;
    smtpc__buf am, out;
    smtpc__buf_init_secure(&am, 0);
    smtpc__buf_init_secure(&out, 0);
    char gs2b64[256];
    size_t gl = strlen(s->gs2_header);
    bool ok = gl <= 180;
    if (ok) {
        smtpc__b64_encode(gs2b64, (const uint8_t *)s->gs2_header, gl);
        gs2b64[smtpc__b64_encoded_len(gl)] = '\0';
    }
    ok = ok &&
         PKCS5_PBKDF2_HMAC(s->pass, (int)strlen(s->pass), salt, (int)saltlen, (int)it, md, (int)hl,
                           sp) == 1 &&
         hmac(md, sp, hl, "Client Key", 10, ck) && EVP_Digest(ck, hl, sk, &skl, md, NULL) == 1 &&
         hmac(md, sp, hl, "Server Key", 10, skey);
    free(salt);
    if (!ok) {
        rc = scram_fail(s, "key derivation failed");
        goto out;
    }
    /* client-final-message-without-proof, then AuthMessage */
    rc = smtpc__buf_printf(&out, "c=%s,r=%.*s", gs2b64, (int)rlen, r);
    if (!rc) rc = smtpc__buf_printf(&am, "%s,%s,", s->client_first_bare, msg);
    if (!rc) rc = smtpc__buf_append(&am, smtpc__buf_ptr(&out), smtpc__buf_size(&out));
    if (rc) goto out;
    if (!hmac(md, sk, hl, smtpc__buf_ptr(&am), smtpc__buf_size(&am), csig) ||
        !hmac(md, skey, hl, smtpc__buf_ptr(&am), smtpc__buf_size(&am), s->server_sig)) {
        rc = scram_fail(s, "HMAC failed");
        goto out;
    }
    s->sig_len = hl;
    for (size_t i = 0; i < hl; i++) ck[i] ^= csig[i]; /* ClientProof */
    char proof[128];
    smtpc__b64_encode(proof, ck, hl);
    proof[smtpc__b64_encoded_len(hl)] = '\0';
    rc = smtpc__buf_printf(&out, ",p=%s", proof);
    smtpc__secure_zero(proof, sizeof proof);
    if (!rc) rc = smtpc__sasl_emit(s, smtpc__buf_ptr(&out), smtpc__buf_size(&out), true, resp);
    if (!rc) s->state = 1;
out:
    smtpc__secure_zero(sp, sizeof sp);
    smtpc__secure_zero(ck, sizeof ck);
    smtpc__secure_zero(sk, sizeof sk);
    smtpc__secure_zero(csig, sizeof csig);
    smtpc__secure_zero(skey, sizeof skey);
    smtpc__buf_free_secure(&am);
    smtpc__buf_free_secure(&out);
    return rc;
}

int smtpc__sasl_scram_verify(smtpc__sasl *s, const uint8_t *data, size_t n)
{
    const char *msg = (const char *)data;
    if (s->sig_len == 0) return scram_fail(s, "server-final-message before the client proof");
    if (n >= 2 && msg[0] == 'e' && msg[1] == '=') {
        char shown[128];
        smtpc__escape_into(shown, sizeof shown, msg + 2, n - 2);
        return smtpc__err(&s->err, SMTPC_EAUTH, "SASL %s: the server reports \"%s\"",
                          smtpc__sasl_mech_name(s->mech), shown);
    }
    if (n < 2 || msg[0] != 'v' || msg[1] != '=') return scram_fail(s, "malformed server-final-message");
    const char *e = memchr(msg, ',', n);
    size_t vlen = (e ? (size_t)(e - msg) : n) - 2;
    uint8_t *v = NULL;
    size_t vl = 0;
    int rc = smtpc__sasl_decode(msg + 2, vlen, &v, &vl);
    if (rc == SMTPC_ENOMEM) return rc;
    bool good = rc == 0 && vl == s->sig_len && CRYPTO_memcmp(v, s->server_sig, vl) == 0;
    free(v);
    if (!good) return scram_fail(s, "the server signature does not verify: the server does not know "
                                    "the password (or a man in the middle answered)");
    s->server_verified = true;
    return 0;
}
