/* SASL: the mechanism table, selection, the exchange driver and the
 * mechanisms that need no cryptography (PLAIN, LOGIN, XOAUTH2, OAUTHBEARER,
 * EXTERNAL). CRAM-MD5 and SCRAM live in crypto.c. */
#include "sasl_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const mech_names[SMTPC__SASL_MECH_COUNT] = {
    [SMTPC__SASL_NONE] = NULL,
    [SMTPC__SASL_EXTERNAL] = "EXTERNAL",
    [SMTPC__SASL_LOGIN] = "LOGIN",
    [SMTPC__SASL_PLAIN] = "PLAIN",
    [SMTPC__SASL_XOAUTH2] = "XOAUTH2",
    [SMTPC__SASL_OAUTHBEARER] = "OAUTHBEARER",
    [SMTPC__SASL_CRAM_MD5] = "CRAM-MD5",
    [SMTPC__SASL_SCRAM_SHA_1] = "SCRAM-SHA-1",
    [SMTPC__SASL_SCRAM_SHA_256] = "SCRAM-SHA-256",
};

/* Strongest first. */
static const smtpc__sasl_mech preference[] = {
    SMTPC__SASL_SCRAM_SHA_256, SMTPC__SASL_SCRAM_SHA_1, SMTPC__SASL_CRAM_MD5,
    SMTPC__SASL_OAUTHBEARER,   SMTPC__SASL_XOAUTH2,     SMTPC__SASL_PLAIN,
    SMTPC__SASL_LOGIN,         SMTPC__SASL_EXTERNAL,
};

const char *smtpc__sasl_mech_name(smtpc__sasl_mech m)
{
    if ((int)m <= 0 || m >= SMTPC__SASL_MECH_COUNT) return NULL;
    return mech_names[m];
}

smtpc__sasl_mech smtpc__sasl_mech_from_name(const char *name)
{
    if (!name) return SMTPC__SASL_NONE;
    for (int m = 1; m < SMTPC__SASL_MECH_COUNT; m++)
        if (smtpc__strcasecmp(name, mech_names[m]) == 0) return (smtpc__sasl_mech)m;
    return SMTPC__SASL_NONE;
}

smtpc__sasl_mask smtpc__sasl_mask_from_names(const char *const *names, size_t n)
{
    smtpc__sasl_mask m = 0;
    for (size_t i = 0; names && i < n; i++) {
        smtpc__sasl_mech id = smtpc__sasl_mech_from_name(names[i]);
        if (id != SMTPC__SASL_NONE) m |= SMTPC__SASL_BIT(id);
    }
    return m;
}

int smtpc__sasl_mask_parse(const char *list, smtpc__sasl_mask *out, smtpc__errmsg *err)
{
    smtpc__sasl_mask m = 0;
    const char *p = list ? list : "";
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t') p++;
        if (!*p) break;
        const char *start = p;
        while (*p && *p != ' ' && *p != ',' && *p != '\t') p++;
        char name[32];
        size_t n = (size_t)(p - start);
        smtpc__sasl_mech id = SMTPC__SASL_NONE;
        if (n < sizeof name) {
            memcpy(name, start, n);
            name[n] = '\0';
            id = smtpc__sasl_mech_from_name(name);
        }
        if (id == SMTPC__SASL_NONE) {
            char shown[64];
            smtpc__escape_into(shown, sizeof shown, start, n);
            return smtpc__err(err, SMTPC_EINVAL, "unknown SASL mechanism \"%s\"", shown);
        }
        m |= SMTPC__SASL_BIT(id);
    }
    *out = m;
    return 0;
}

static bool has_token(const smtpc__sasl_creds *c)
{
    return (c->oauth_token && c->oauth_token[0]) || c->token_fn;
}

smtpc__sasl_mask smtpc__sasl_default_allowed(const smtpc__sasl_creds *c, bool encrypted)
{
    smtpc__sasl_mask m = 0;
    if (!c) return 0;
    if (c->username && c->username[0] && c->password) {
        m |= SMTPC__SASL_BIT(SMTPC__SASL_CRAM_MD5);
        if (smtpc__saslprep(c->password, NULL) == 0) /* no allocation: no ENOMEM to lose */
            m |= SMTPC__SASL_BIT(SMTPC__SASL_SCRAM_SHA_1) | SMTPC__SASL_BIT(SMTPC__SASL_SCRAM_SHA_256);
        if (encrypted) m |= SMTPC__SASL_BIT(SMTPC__SASL_PLAIN) | SMTPC__SASL_BIT(SMTPC__SASL_LOGIN);
    }
    /* A bearer token is as good as a password to whoever reads it: same rule
     * as PLAIN. */
    if (has_token(c) && encrypted)
        m |= SMTPC__SASL_BIT(SMTPC__SASL_OAUTHBEARER) | SMTPC__SASL_BIT(SMTPC__SASL_XOAUTH2);
    if (c->client_cert) m |= SMTPC__SASL_BIT(SMTPC__SASL_EXTERNAL);
    return m;
}

smtpc__sasl_mech smtpc__sasl_choose(smtpc__sasl_mask offered, smtpc__sasl_mask allowed)
{
    for (size_t i = 0; i < SMTPC__ARRAY_LEN(preference); i++)
        if (offered & allowed & SMTPC__SASL_BIT(preference[i])) return preference[i];
    return SMTPC__SASL_NONE;
}

size_t smtpc__sasl_mask_format(smtpc__sasl_mask mask, char *buf, size_t size)
{
    size_t need = 0;
    if (size) buf[0] = '\0';
    for (size_t i = 0; i < SMTPC__ARRAY_LEN(preference); i++) {
        if (!(mask & SMTPC__SASL_BIT(preference[i]))) continue;
        const char *name = mech_names[preference[i]];
        size_t n = strlen(name) + (need ? 1 : 0);
        if (need + n < size) {
            if (need) buf[need] = ' ';
            memcpy(buf + need + (need ? 1 : 0), name, strlen(name));
            buf[need + n] = '\0';
        }
        need += n;
    }
    return need;
}

/* ---- SASLprep (the subset described in sasl.h) --------------------------- */
static int utf8_next(const unsigned char *p, size_t n, uint32_t *cp)
{
    if (p[0] < 0x80) { *cp = p[0]; return 1; }
    int len;
    uint32_t c, min;
    if ((p[0] & 0xe0) == 0xc0) { len = 2; c = p[0] & 0x1fu; min = 0x80; }
    else if ((p[0] & 0xf0) == 0xe0) { len = 3; c = p[0] & 0x0fu; min = 0x800; }
    else if ((p[0] & 0xf8) == 0xf0) { len = 4; c = p[0] & 0x07u; min = 0x10000; }
    else return -1;
    if ((size_t)len > n) return -1;
    for (int i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) return -1;
        c = c << 6 | (p[i] & 0x3fu);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return -1;
    *cp = c;
    return len;
}

static bool mapped_to_nothing(uint32_t c) /* RFC 3454 B.1 */
{
    return c == 0x00ad || c == 0x034f || c == 0x1806 || (c >= 0x180b && c <= 0x180d) ||
           (c >= 0x200b && c <= 0x200d) || c == 0x2060 || (c >= 0xfe00 && c <= 0xfe0f) ||
           c == 0xfeff;
}

static bool non_ascii_space(uint32_t c) /* RFC 3454 C.1.2 */
{
    return c == 0x00a0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200b) || c == 0x202f ||
           c == 0x205f || c == 0x3000;
}

int smtpc__saslprep(const char *in, char **out)
{
    size_t n = strlen(in);
    char *r = NULL;
    if (out && !(r = malloc(n + 1))) return SMTPC_ENOMEM;
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)in;
    int rc = 0;
    for (size_t i = 0; i < n;) {
        uint32_t c;
        int len = utf8_next(p + i, n - i, &c);
        if (len < 0) { rc = SMTPC_EINVAL; break; }
        i += (size_t)len;
        if (c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0)) { rc = SMTPC_EINVAL; break; }
        if (mapped_to_nothing(c)) continue;
        if (c >= 0x80 && !non_ascii_space(c)) { rc = SMTPC_EUNSUPPORTED; break; }
        if (r) r[o] = c < 0x80 ? (char)c : ' ';
        o++;
    }
    if (rc || !r) {
        if (r) smtpc__secure_zero(r, n + 1);
        free(r);
        return rc;
    }
    r[o] = '\0';
    *out = r;
    return 0;
}

/* ---- the context --------------------------------------------------------------- */
int smtpc__sasl_emit(smtpc__sasl *s, const void *raw, size_t n, bool secret, smtpc__sasl_line *line)
{
    smtpc__secure_zero(s->out.data, s->out.cap);
    smtpc__buf_reset(&s->out);
    size_t bl = smtpc__b64_encoded_len(n);
    int rc = smtpc__buf_reserve(&s->out, bl + 1);
    if (rc) return rc;
    smtpc__b64_encode((char *)s->out.data, raw, n);
    s->out.data[bl] = '\0';
    s->out.len = bl;
    memset(line, 0, sizeof *line);
    line->b64 = (const char *)s->out.data;
    line->len = bl;
    line->secret = secret;
    return 0;
}

static int emit_text(smtpc__sasl *s, const char *b64, bool cancel, smtpc__sasl_line *line)
{
    smtpc__secure_zero(s->out.data, s->out.cap);
    smtpc__buf_reset(&s->out);
    int rc = smtpc__buf_append(&s->out, b64, strlen(b64) + 1);
    if (rc) return rc;
    s->out.len--; /* the NUL is there but not counted */
    memset(line, 0, sizeof *line);
    line->b64 = (const char *)s->out.data;
    line->len = strlen(b64);
    line->cancel = cancel;
    return 0;
}

int smtpc__sasl_decode(const char *b64, size_t len, uint8_t **out, size_t *outlen)
{
    uint8_t *d = malloc(len / 4 * 3 + 1);
    if (!d) return SMTPC_ENOMEM;
    long n = smtpc__b64_decode(d, b64, len);
    if (n < 0) {
        free(d);
        return SMTPC_EPROTO;
    }
    d[n] = '\0';
    *out = d;
    *outlen = (size_t)n;
    return 0;
}

/* Fails the exchange: the server waits for a line, "*" cancels it. */
static int fail_cancel(smtpc__sasl *s, smtpc__sasl_line *resp, int code)
{
    s->done = true;
    s->ir_pending = false;
    if (emit_text(s, "*", true, resp) != 0) memset(resp, 0, sizeof *resp);
    return code;
}

static bool bad_text(const char *v, bool ctl)
{
    return v && (ctl ? smtpc__has_ctl(v) : smtpc__has_crlfnul(v, strlen(v)));
}

static int set_token(smtpc__sasl *s, const char *tok, size_t len, smtpc__errmsg *err)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)tok[i];
        if (c < 0x20 || c >= 0x7f)
            return smtpc__err(err, SMTPC_EINVAL, "OAuth token contains a control or non-ASCII character");
    }
    char *t = smtpc__strndup(tok, len);
    if (!t) return SMTPC_ENOMEM;
    if (s->token) {
        smtpc__secure_zero(s->token, s->token_len);
        free(s->token);
    }
    s->token = t;
    s->token_len = len;
    return 0;
}

static int fetch_token(smtpc__sasl *s, bool refresh, smtpc__errmsg *err)
{
    const char *tok = NULL;
    size_t len = 0;
    int rc = s->token_fn(s->token_ud, refresh, &tok, &len);
    if (rc != 0 || !tok) {
        if (rc >= 0) rc = SMTPC_EAUTH;
        return smtpc__err(err, rc, "the OAuth token provider failed (%s)", smtpc_err_name(rc));
    }
    return set_token(s, tok, len, err);
}

static int dup_field(char **dst, const char *src)
{
    if (!src) return 0;
    *dst = smtpc__strdup(src);
    return *dst ? 0 : SMTPC_ENOMEM;
}

void smtpc__sasl_free(smtpc__sasl *s)
{
    if (!s) return;
    smtpc__free_secret(s->user);
    smtpc__free_secret(s->pass);
    smtpc__free_secret(s->authzid);
    if (s->token) {
        smtpc__secure_zero(s->token, s->token_len);
        free(s->token);
    }
    free(s->host);
    free(s->nonce_fixed);
    smtpc__sasl_scram_clear(s);
    smtpc__buf_free_secure(&s->out);
    smtpc__secure_zero(s, sizeof *s);
    free(s);
}

int smtpc__sasl_new(smtpc__sasl **out, smtpc__sasl_mech mech, const smtpc__sasl_creds *c,
                    smtpc__errmsg *err)
{
    const char *name = smtpc__sasl_mech_name(mech);
    if (!name || !c) return smtpc__err(err, SMTPC_EINVAL, "unknown SASL mechanism");
    bool is_scram = mech == SMTPC__SASL_SCRAM_SHA_1 || mech == SMTPC__SASL_SCRAM_SHA_256;
    bool is_oauth = mech == SMTPC__SASL_XOAUTH2 || mech == SMTPC__SASL_OAUTHBEARER;
    /* \x01 frames the OAuth messages and NUL the PLAIN message: no control
     * character may hide in an identity there. */
    bool strict = is_scram || is_oauth;
    if (bad_text(c->username, strict) || bad_text(c->authzid, strict) || bad_text(c->host, true))
        return smtpc__err(err, SMTPC_EINVAL, "%s: user name or authorization identity contains %s",
                          name, strict ? "a control character" : "CR or LF");
    if (bad_text(c->password, false))
        return smtpc__err(err, SMTPC_EINVAL, "%s: password contains CR or LF", name);
    bool need_pw = mech == SMTPC__SASL_PLAIN || mech == SMTPC__SASL_LOGIN ||
                   mech == SMTPC__SASL_CRAM_MD5 || is_scram;
    if (need_pw && (!c->username || !c->username[0] || !c->password))
        return smtpc__err(err, SMTPC_EINVAL, "%s needs a user name and a password", name);
    if (mech == SMTPC__SASL_XOAUTH2 && (!c->username || !c->username[0]))
        return smtpc__err(err, SMTPC_EINVAL, "XOAUTH2 needs a user name");
    if (is_oauth && !has_token(c))
        return smtpc__err(err, SMTPC_EINVAL, "%s needs an OAuth token", name);

    smtpc__sasl *s = calloc(1, sizeof *s);
    if (!s) return SMTPC_ENOMEM;
    s->mech = mech;
    s->port = c->port;
    s->scram_min_iter = c->scram_min_iterations > 0 ? (unsigned)c->scram_min_iterations
                                                    : SMTPC__SASL_MIN_SCRAM_ITER;
    s->token_fn = c->token_fn;
    s->token_ud = c->token_ud;
    smtpc__buf_init_secure(&s->out, 0);
    int rc = 0;
    if (is_scram) {
        rc = smtpc__saslprep(c->password, &s->pass);
        if (rc == SMTPC_EUNSUPPORTED)
            smtpc__err(err, rc, "%s: the password has non-ASCII characters this library cannot "
                                "SASLprep; use another mechanism", name);
        else if (rc == SMTPC_EINVAL)
            smtpc__err(err, rc, "%s: the password is not valid UTF-8 or has control characters", name);
    } else {
        rc = dup_field(&s->pass, c->password);
    }
    if (!rc) rc = dup_field(&s->user, c->username);
    if (!rc) rc = dup_field(&s->authzid, c->authzid);
    if (!rc) rc = dup_field(&s->host, c->host);
    if (!rc && is_oauth) {
        if (c->oauth_token && c->oauth_token[0])
            rc = set_token(s, c->oauth_token, strlen(c->oauth_token), err);
        else
            rc = fetch_token(s, false, err);
    }
    if (rc) {
        smtpc__sasl_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

smtpc__sasl_mech smtpc__sasl_mech_of(const smtpc__sasl *s) { return s->mech; }
const char *smtpc__sasl_errmsg(const smtpc__sasl *s) { return s->err.text; }
bool smtpc__sasl_token_rejected(const smtpc__sasl *s) { return s->token_rejected; }

int smtpc__sasl_set_nonce(smtpc__sasl *s, const char *nonce)
{
    for (const char *p = nonce; *p; p++)
        if (*p < 0x21 || *p > 0x7e || *p == ',') return SMTPC_EINVAL;
    char *n = smtpc__strdup(nonce);
    if (!n) return SMTPC_ENOMEM;
    free(s->nonce_fixed);
    s->nonce_fixed = n;
    return 0;
}

/* The text of an OAuth message. */
static int oauth_message(smtpc__sasl *s, smtpc__buf *m)
{
    int rc;
    if (s->mech == SMTPC__SASL_XOAUTH2) {
        rc = smtpc__buf_printf(m, "user=%s\x01" "auth=Bearer ", s->user);
    } else {
        /* RFC 7628 §3.1: gs2-header with the authzid as saslname. */
        rc = smtpc__buf_append_str(m, "n,");
        const char *a = s->authzid ? s->authzid : s->user;
        if (!rc && a && a[0]) {
            rc = smtpc__buf_append_str(m, "a=");
            for (const char *p = a; !rc && *p; p++)
                rc = *p == ',' ? smtpc__buf_append_str(m, "=2C")
                   : *p == '=' ? smtpc__buf_append_str(m, "=3D")
                               : smtpc__buf_append(m, p, 1);
        }
        if (!rc) rc = smtpc__buf_append_str(m, ",\x01");
        if (!rc && s->host && s->host[0]) rc = smtpc__buf_printf(m, "host=%s\x01", s->host);
        if (!rc && s->port) rc = smtpc__buf_printf(m, "port=%u\x01", (unsigned)s->port);
        if (!rc) rc = smtpc__buf_append_str(m, "auth=Bearer ");
    }
    if (!rc) rc = smtpc__buf_append(m, s->token, s->token_len);
    if (!rc) rc = smtpc__buf_append_str(m, "\x01\x01");
    return rc;
}

static bool fits(smtpc__sasl_mech mech, size_t b64len)
{
    /* "AUTH " mech " " ir CRLF; an empty response is sent as "=" */
    return 5 + strlen(mech_names[mech]) + 1 + (b64len ? b64len : 1) + 2 <= 512;
}

int smtpc__sasl_start(smtpc__sasl *s, smtpc__sasl_line *ir)
{
    memset(ir, 0, sizeof *ir);
    if (s->started) return smtpc__err(&s->err, SMTPC_ESTATE, "SASL exchange already started");
    s->started = true;
    int rc = 0;
    smtpc__buf m;
    smtpc__buf_init_secure(&m, 0);
    switch (s->mech) {
    case SMTPC__SASL_PLAIN: {
        const char *a = s->authzid ? s->authzid : "";
        rc = smtpc__buf_append(&m, a, strlen(a) + 1);
        if (!rc) rc = smtpc__buf_append(&m, s->user, strlen(s->user) + 1);
        if (!rc) rc = smtpc__buf_append(&m, s->pass, strlen(s->pass));
        if (!rc) rc = smtpc__sasl_emit(s, smtpc__buf_ptr(&m), smtpc__buf_size(&m), true, ir);
        break;
    }
    case SMTPC__SASL_EXTERNAL: {
        const char *a = s->authzid ? s->authzid : "";
        rc = smtpc__sasl_emit(s, a, strlen(a), false, ir);
        break;
    }
    case SMTPC__SASL_XOAUTH2:
    case SMTPC__SASL_OAUTHBEARER:
        rc = oauth_message(s, &m);
        if (!rc) rc = smtpc__sasl_emit(s, smtpc__buf_ptr(&m), smtpc__buf_size(&m), true, ir);
        break;
    case SMTPC__SASL_SCRAM_SHA_1:
    case SMTPC__SASL_SCRAM_SHA_256:
        rc = smtpc__sasl_scram_first(s, ir);
        break;
    default: /* LOGIN, CRAM-MD5: the server speaks first */
        break;
    }
    smtpc__buf_free_secure(&m);
    if (rc) {
        memset(ir, 0, sizeof *ir);
        return smtpc__err(&s->err, rc, "SASL %s: cannot build the initial response",
                          mech_names[s->mech]);
    }
    if (ir->b64) {
        s->has_ir = true;
        ir->fits_auth_line = fits(s->mech, ir->len);
        s->ir_pending = !ir->fits_auth_line; /* caller sends it after the first 334 */
        s->ir_deferred = s->ir_pending;
    }
    return 0;
}

void smtpc__sasl_defer_ir(smtpc__sasl *s)
{
    if (s->started && s->has_ir && !s->done && s->rounds == 0) s->ir_pending = s->ir_deferred = true;
}

int smtpc__sasl_restart(smtpc__sasl *s, bool refresh_token)
{
    if (refresh_token) {
        if (!s->token_fn)
            return smtpc__err(&s->err, SMTPC_EINVAL, "no OAuth token provider to refresh the token");
        int rc = fetch_token(s, true, &s->err);
        if (rc) return rc;
    }
    smtpc__sasl_scram_clear(s);
    smtpc__secure_zero(s->out.data, s->out.cap);
    smtpc__buf_reset(&s->out);
    s->started = s->has_ir = s->ir_pending = s->ir_deferred = s->done = s->token_rejected = false;
    s->server_verified = false;
    s->rounds = 0;
    s->step_rc = 0;
    s->state = 0;
    smtpc__err_clear(&s->err);
    return 0;
}

static int unexpected(smtpc__sasl *s, smtpc__sasl_line *resp)
{
    smtpc__err(&s->err, SMTPC_EPROTO, "SASL %s: unexpected challenge from the server",
               mech_names[s->mech]);
    return fail_cancel(s, resp, SMTPC_EPROTO);
}

static int step(smtpc__sasl *s, const char *chal, size_t len, smtpc__sasl_line *resp);

int smtpc__sasl_step(smtpc__sasl *s, const char *chal, size_t len, smtpc__sasl_line *resp)
{
    int rc = step(s, chal, len, resp);
    if (rc < 0 && !s->step_rc) s->step_rc = rc;
    return rc;
}

static int step(smtpc__sasl *s, const char *chal, size_t len, smtpc__sasl_line *resp)
{
    memset(resp, 0, sizeof *resp);
    const char *name = mech_names[s->mech];
    if (!s->started) {
        smtpc__err(&s->err, SMTPC_ESTATE, "SASL %s: step before start", name);
        return fail_cancel(s, resp, SMTPC_ESTATE);
    }
    if (++s->rounds > SMTPC__SASL_MAX_ROUNDS) {
        smtpc__err(&s->err, SMTPC_EAUTH, "SASL %s: too many challenges (more than %d)", name,
                   SMTPC__SASL_MAX_ROUNDS);
        return fail_cancel(s, resp, SMTPC_EAUTH);
    }
    /* Trailing blanks after "334 " are a common server sloppiness, not an attack. */
    while (len && (chal[len - 1] == ' ' || chal[len - 1] == '\t')) len--;
    if (len > SMTPC__SASL_MAX_CHALLENGE) {
        smtpc__err(&s->err, SMTPC_ELIMIT, "SASL %s: challenge of %zu octets is over the limit (%d)",
                   name, len, SMTPC__SASL_MAX_CHALLENGE);
        return fail_cancel(s, resp, SMTPC_ELIMIT);
    }
    uint8_t *d = NULL;
    size_t n = 0;
    int rc = smtpc__sasl_decode(chal, len, &d, &n);
    if (rc == SMTPC_ENOMEM) return fail_cancel(s, resp, rc);
    if (rc) {
        char shown[80];
        smtpc__escape_into(shown, sizeof shown, chal, len < 60 ? len : 60);
        smtpc__err(&s->err, SMTPC_EPROTO, "SASL %s: the server's challenge is not valid base64: \"%s\"",
                   name, shown);
        return fail_cancel(s, resp, SMTPC_EPROTO);
    }
    if (s->done) {
        free(d);
        return unexpected(s, resp);
    }
    if (s->ir_pending) {
        /* The answer to the empty 334 that follows a bare "AUTH mech". */
        free(d);
        s->ir_pending = false;
        /* s->out still holds the initial response */
        memset(resp, 0, sizeof *resp);
        resp->b64 = (const char *)s->out.data;
        resp->len = s->out.len;
        resp->secret = s->mech == SMTPC__SASL_PLAIN || s->mech == SMTPC__SASL_XOAUTH2 ||
                       s->mech == SMTPC__SASL_OAUTHBEARER;
        return 0;
    }
    switch (s->mech) {
    case SMTPC__SASL_LOGIN:
        /* "Username:" then "Password:"; the prompts' wording varies, the order does not. */
        if (s->state == 0) {
            s->state = 1;
            rc = smtpc__sasl_emit(s, s->user, strlen(s->user), false, resp);
        } else {
            s->done = true;
            rc = smtpc__sasl_emit(s, s->pass, strlen(s->pass), true, resp);
            if (!rc) rc = 1;
        }
        break;
    case SMTPC__SASL_CRAM_MD5:
        rc = smtpc__sasl_cram_md5(s, d, n, resp);
        if (!rc) {
            s->done = true;
            rc = 1;
        }
        break;
    case SMTPC__SASL_SCRAM_SHA_1:
    case SMTPC__SASL_SCRAM_SHA_256:
        rc = smtpc__sasl_scram_step(s, d, n, resp);
        break;
    case SMTPC__SASL_XOAUTH2:
    case SMTPC__SASL_OAUTHBEARER: {
        /* An error report (JSON, RFC 7628 §3.2.2). The server waits for a
         * dummy line before its final 5xx: empty for XOAUTH2, %x01 for
         * OAUTHBEARER. */
        char shown[256];
        smtpc__escape_into(shown, sizeof shown, (const char *)d, n);
        s->token_rejected = true;
        s->done = true;
        smtpc__err(&s->err, SMTPC_EAUTH, "SASL %s: the server rejected the token: %s", name, shown);
        if (s->mech == SMTPC__SASL_XOAUTH2) rc = smtpc__sasl_emit(s, "", 0, false, resp);
        else rc = smtpc__sasl_emit(s, "\x01", 1, false, resp);
        if (!rc) rc = SMTPC_EAUTH;
        break;
    }
    default: /* PLAIN, EXTERNAL: nothing more to say */
        rc = unexpected(s, resp);
        break;
    }
    if (d) {
        smtpc__secure_zero(d, n);
        free(d);
    }
    if (rc < 0 && !resp->b64) return fail_cancel(s, resp, rc);
    return rc;
}

int smtpc__sasl_finish(smtpc__sasl *s, const char *final_b64)
{
    bool scram = s->mech == SMTPC__SASL_SCRAM_SHA_1 || s->mech == SMTPC__SASL_SCRAM_SHA_256;
    if (scram && !s->server_verified && final_b64 && final_b64[0]) {
        uint8_t *d = NULL;
        size_t n = 0;
        int rc = smtpc__sasl_decode(final_b64, strlen(final_b64), &d, &n);
        if (rc == SMTPC_EPROTO)
            return smtpc__err(&s->err, SMTPC_EAUTH, "SASL %s: the server's final data is not valid base64",
                              mech_names[s->mech]);
        if (rc) return rc;
        rc = smtpc__sasl_scram_verify(s, d, n);
        free(d);
        if (rc) return rc;
    }
    if (scram && !s->server_verified)
        return smtpc__err(&s->err, SMTPC_EAUTH,
                          "SASL %s: the server accepted without proving it knows the password "
                          "(no server signature)", mech_names[s->mech]);
    s->done = true;
    return 0;
}

static bool is_oauth(const smtpc__sasl *s)
{
    return s->mech == SMTPC__SASL_XOAUTH2 || s->mech == SMTPC__SASL_OAUTHBEARER;
}

int smtpc__sasl_reply(smtpc__sasl *s, int code, const char *text, size_t len, smtpc__sasl_line *resp)
{
    memset(resp, 0, sizeof *resp);
    const char *name = mech_names[s->mech];
    char shown[200];
    smtpc__escape_into(shown, sizeof shown, text ? text : "", text ? (len < 190 ? len : 190) : 0);
    if (code == 334) {
        int rc = smtpc__sasl_step(s, text ? text : "", text ? len : 0, resp);
        return rc < 0 ? rc : 0;
    }
    if (code == 235) {
        if (s->step_rc) /* we cancelled, yet the server says yes: do not believe it */
            return s->step_rc;
        /* RFC 4954: no additional data with 235 (SCRAM's server-final comes
         * as a 334), so the text is for humans. */
        return smtpc__sasl_finish(s, NULL) ? SMTPC_EAUTH : 1;
    }
    if (s->step_rc) {
        /* the answer to our "*" (or dummy line): keep our reason, add theirs */
        char mine[SMTPC__ERRMSG_MAX];
        smtpc__strlcpy(mine, s->err.text, sizeof mine);
        return smtpc__err(&s->err, s->step_rc, "%s (server: %d %s)", mine, code, shown);
    }
    if (code >= 400 && code < 500)
        return smtpc__err(&s->err, SMTPC_ETEMPFAIL, "AUTH %s: temporary failure: %d %s", name, code, shown);
    if (code >= 500 && code < 600) {
        if (is_oauth(s)) s->token_rejected = true;
        return smtpc__err(&s->err, SMTPC_EAUTH, "AUTH %s refused: %d %s", name, code, shown);
    }
    return smtpc__err(&s->err, SMTPC_EPROTO, "AUTH %s: unexpected reply %d %s", name, code, shown);
}
