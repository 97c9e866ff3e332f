/* DKIM verifier (RFC 6376 6, RFC 8463): rsa-sha256 and ed25519-sha256,
 * keys from a caller's TXT lookup. */
#include "dkim_int.h"
#include "util/syslib.h"

#include <openssl/crypto.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TXT_MAX 8192

typedef struct vctx {
    const smtpc__dkim_hdrs *h;
    const uint8_t *body;
    size_t body_len;
    smtpc_dkim_txt_cb txt;
    void *ud;
    int64_t now;
} vctx;

static void setres(smtpc_dkim_result *r, smtpc_dkim_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void setres(smtpc_dkim_result *r, smtpc_dkim_status st, const char *fmt, ...)
{
    r->status = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof r->reason, fmt, ap);
    va_end(ap);
}

static void copy_val(char *dst, size_t sz, const smtpc__dkim_tag *t)
{
    if (t) smtpc__escape_into(dst, sz, t->val, t->val_len);
    else dst[0] = '\0';
}

static bool val_is(const smtpc__dkim_tag *t, const char *s)
{
    return t && t->val_len == strlen(s) && !smtpc__strncasecmp(t->val, s, t->val_len);
}

/* The value decoded from base64 with FWS removed; NULL on error. */
static uint8_t *b64_value(const char *s, size_t n, size_t *outlen)
{
    char *clean = malloc(n + 1);
    uint8_t *out = malloc(n / 4 * 3 + 3);
    long dl = -1;
    if (clean && out) {
        size_t cl = smtpc__dkim_strip_fws(clean, s, n);
        dl = cl ? smtpc__b64_decode(out, clean, cl) : -1;
    }
    free(clean);
    if (dl < 0) {
        free(out);
        return NULL;
    }
    *outlen = (size_t)dl;
    return out;
}

/* Does the list value (e.g. "sha1:sha256" or "email:*") contain item? */
static bool list_has(const smtpc__dkim_tag *t, const char *item)
{
    size_t il = strlen(item), i = 0;
    while (i < t->val_len) {
        while (i < t->val_len && (t->val[i] == ' ' || t->val[i] == '\t' || t->val[i] == '\r' ||
                                  t->val[i] == '\n'))
            i++;
        size_t s = i;
        while (i < t->val_len && t->val[i] != ':') i++;
        size_t e = i;
        while (e > s && (t->val[e - 1] == ' ' || t->val[e - 1] == '\t' || t->val[e - 1] == '\r' ||
                         t->val[e - 1] == '\n'))
            e--;
        if (e - s == il && !smtpc__strncasecmp(t->val + s, item, il)) return true;
        i++;
    }
    return false;
}

static int verify_one(const vctx *v, size_t fi, smtpc_dkim_result *r)
{
    const smtpc__dkim_hdrs *h = v->h;
    const char *field = smtpc__dkim_field_ptr(h, fi);
    size_t voff = h->f[fi].value_off - h->f[fi].off;
    const char *val = field + voff;
    size_t vlen = h->f[fi].len - voff;
    smtpc__dkim_tag tags[SMTPC__DKIM_MAX_TAGS];
    int nt = smtpc__dkim_tags_parse(val, vlen, tags);
    memset(r, 0, sizeof *r);
    if (nt < 0) {
        setres(r, SMTPC_DKIM_PERMERROR, "malformed tag list");
        return 0;
    }
    const smtpc__dkim_tag *tv = smtpc__dkim_tag_get(tags, nt, "v"), *ta = smtpc__dkim_tag_get(tags, nt, "a"),
                          *tb = smtpc__dkim_tag_get(tags, nt, "b"), *tbh = smtpc__dkim_tag_get(tags, nt, "bh"),
                          *tc = smtpc__dkim_tag_get(tags, nt, "c"), *td = smtpc__dkim_tag_get(tags, nt, "d"),
                          *th = smtpc__dkim_tag_get(tags, nt, "h"), *ti = smtpc__dkim_tag_get(tags, nt, "i"),
                          *tl = smtpc__dkim_tag_get(tags, nt, "l"), *ts = smtpc__dkim_tag_get(tags, nt, "s"),
                          *tx = smtpc__dkim_tag_get(tags, nt, "x"), *tq = smtpc__dkim_tag_get(tags, nt, "q");
    copy_val(r->domain, sizeof r->domain, td);
    copy_val(r->selector, sizeof r->selector, ts);
    copy_val(r->algorithm, sizeof r->algorithm, ta);
    if (!val_is(tv, "1")) return setres(r, SMTPC_DKIM_PERMERROR, "v= is missing or not 1"), 0;
    if (!ta || !tb || !tbh || !td || !th || !ts)
        return setres(r, SMTPC_DKIM_PERMERROR, "a required tag (a b bh d h s) is missing"), 0;
    bool ed;
    if (val_is(ta, "rsa-sha256")) ed = false;
    else if (val_is(ta, "ed25519-sha256")) ed = true;
    else return setres(r, SMTPC_DKIM_PERMERROR, "unsupported algorithm"), 0;
    if (tq && !list_has(tq, "dns/txt")) return setres(r, SMTPC_DKIM_PERMERROR, "unsupported q="), 0;
    int hc = SMTPC_DKIM_SIMPLE, bc = SMTPC_DKIM_SIMPLE;
    if (tc) {
        const char *slash = memchr(tc->val, '/', tc->val_len);
        size_t l1 = slash ? (size_t)(slash - tc->val) : tc->val_len;
        smtpc__dkim_tag a = {.val = tc->val, .val_len = l1};
        smtpc__dkim_tag b = {.val = slash ? slash + 1 : "", .val_len = slash ? tc->val_len - l1 - 1 : 0};
        if (val_is(&a, "relaxed")) hc = SMTPC_DKIM_RELAXED;
        else if (!val_is(&a, "simple")) return setres(r, SMTPC_DKIM_PERMERROR, "unknown c="), 0;
        if (val_is(&b, "relaxed")) bc = SMTPC_DKIM_RELAXED;
        else if (slash && !val_is(&b, "simple")) return setres(r, SMTPC_DKIM_PERMERROR, "unknown c="), 0;
    }
    uint64_t limit = UINT64_MAX;
    if (tl && smtpc__parse_u64(tl->val, tl->val_len, &limit))
        return setres(r, SMTPC_DKIM_PERMERROR, "malformed l="), 0;
    if (tx) {
        uint64_t x;
        if (smtpc__parse_u64(tx->val, tx->val_len, &x))
            return setres(r, SMTPC_DKIM_PERMERROR, "malformed x="), 0;
        if ((int64_t)x < v->now) return setres(r, SMTPC_DKIM_FAIL, "signature expired"), 0;
    }
    if (ti) { /* i= must be in d= or a subdomain */
        const char *at = memchr(ti->val, '@', ti->val_len);
        if (!at) return setres(r, SMTPC_DKIM_PERMERROR, "malformed i="), 0;
        size_t al = ti->val_len - (size_t)(at + 1 - ti->val);
        const char *ad = at + 1;
        if (!((al == td->val_len && !smtpc__strncasecmp(ad, td->val, al)) ||
              (al > td->val_len && ad[al - td->val_len - 1] == '.' &&
               !smtpc__strncasecmp(ad + al - td->val_len, td->val, td->val_len))))
            return setres(r, SMTPC_DKIM_PERMERROR, "i= is not within d="), 0;
    }

    /* h=: names separated by ':', From required */
    const char *names[256];
    size_t lens[256], nn = 0;
    bool from = false;
    for (size_t i = 0; i < th->val_len;) {
        while (i < th->val_len && strchr(" \t\r\n", th->val[i])) i++;
        size_t s = i;
        while (i < th->val_len && th->val[i] != ':') i++;
        size_t e = i;
        while (e > s && strchr(" \t\r\n", th->val[e - 1])) e--;
        if (e == s) return setres(r, SMTPC_DKIM_PERMERROR, "malformed h="), 0;
        if (nn == 256) return setres(r, SMTPC_DKIM_PERMERROR, "h= lists too many fields"), 0;
        names[nn] = th->val + s;
        lens[nn++] = e - s;
        if (e - s == 4 && !smtpc__strncasecmp(th->val + s, "from", 4)) from = true;
        i++;
    }
    if (!from) return setres(r, SMTPC_DKIM_PERMERROR, "From is not signed"), 0;

    /* the key */
    char qname[512];
    char *txt = malloc(TXT_MAX);
    if (!txt) return SMTPC_ENOMEM;
    snprintf(qname, sizeof qname, "%.*s._domainkey.%.*s", (int)ts->val_len, ts->val,
             (int)td->val_len, td->val);
    txt[0] = '\0';
    int lrc = v->txt(v->ud, qname, txt, TXT_MAX);
    txt[TXT_MAX - 1] = '\0';
    smtpc__dkim_tag kt[SMTPC__DKIM_MAX_TAGS];
    int nk = lrc ? -1 : smtpc__dkim_tags_parse(txt, strlen(txt), kt);
    EVP_PKEY *pk = NULL;
    int rc = 0;
    if (lrc == SMTPC_ENOTFOUND) {
        setres(r, SMTPC_DKIM_PERMERROR, "no key record at %s", qname);
    } else if (lrc) {
        setres(r, SMTPC_DKIM_TEMPERROR, "key lookup failed for %s", qname);
    } else if (nk < 0) {
        setres(r, SMTPC_DKIM_PERMERROR, "malformed key record");
    } else {
        const smtpc__dkim_tag *kv = smtpc__dkim_tag_get(kt, nk, "v"), *kk = smtpc__dkim_tag_get(kt, nk, "k"),
                              *kp = smtpc__dkim_tag_get(kt, nk, "p"), *kh = smtpc__dkim_tag_get(kt, nk, "h"),
                              *ks = smtpc__dkim_tag_get(kt, nk, "s"), *kf = smtpc__dkim_tag_get(kt, nk, "t");
        size_t dl = 0;
        uint8_t *der = NULL;
        if ((kv && (kv != &kt[0] || !val_is(kv, "DKIM1"))))
            setres(r, SMTPC_DKIM_PERMERROR, "key record: bad v=");
        else if ((kk && !val_is(kk, ed ? "ed25519" : "rsa")) || (!kk && ed))
            setres(r, SMTPC_DKIM_PERMERROR, "key type does not match a=");
        else if (kh && !list_has(kh, "sha256"))
            setres(r, SMTPC_DKIM_PERMERROR, "key record does not allow sha256");
        else if (ks && !list_has(ks, "*") && !list_has(ks, "email"))
            setres(r, SMTPC_DKIM_PERMERROR, "key record not for email");
        else if (!kp)
            setres(r, SMTPC_DKIM_PERMERROR, "key record has no p=");
        else if (kp->val_len == 0)
            setres(r, SMTPC_DKIM_PERMERROR, "key revoked");
        else if (!(der = b64_value(kp->val, kp->val_len, &dl)))
            setres(r, SMTPC_DKIM_PERMERROR, "key record: p= is not base64");
        else if (ed) {
            pk = dl == 32 ? EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, der, dl) : NULL;
            if (!pk) setres(r, SMTPC_DKIM_PERMERROR, "unusable Ed25519 key");
        } else {
            const unsigned char *dp = der;
            pk = d2i_PUBKEY(NULL, &dp, (long)dl);
            if (!pk || EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA) {
                setres(r, SMTPC_DKIM_PERMERROR, "unusable RSA key");
                EVP_PKEY_free(pk);
                pk = NULL;
            } else if (EVP_PKEY_get_bits(pk) < 1024) {
                setres(r, SMTPC_DKIM_PERMERROR, "RSA key shorter than 1024 bits");
                EVP_PKEY_free(pk);
                pk = NULL;
            }
        }
        if (pk && kf && ti && list_has(kf, "s")) { /* t=s: i= domain must be d= itself */
            const char *at = memchr(ti->val, '@', ti->val_len);
            size_t al = ti->val_len - (size_t)(at + 1 - ti->val);
            if (al != td->val_len) {
                setres(r, SMTPC_DKIM_PERMERROR, "key t=s forbids a subdomain in i=");
                EVP_PKEY_free(pk);
                pk = NULL;
            }
        }
        free(der);
    }
    free(txt);
    if (!pk) return 0;

    /* body hash */
    smtpc__dkim_body body;
    uint8_t hash[32];
    size_t bhl = 0, sigl = 0;
    uint8_t *bh = b64_value(tbh->val, tbh->val_len, &bhl);
    uint8_t *sig = b64_value(tb->val, tb->val_len, &sigl);
    smtpc__buf data;
    smtpc__buf_init(&data, 0);
    bool *used = calloc(h->n ? h->n : 1, sizeof *used);
    if (!used) rc = SMTPC_ENOMEM;
    if (!rc && (!bh || !sig)) {
        setres(r, SMTPC_DKIM_PERMERROR, "bh= or b= is not base64");
        goto out;
    }
    if (!rc && !(rc = smtpc__dkim_body_init(&body, bc, limit, false))) {
        smtpc__dkim_body_update(&body, v->body, v->body_len);
        rc = smtpc__dkim_body_final(&body, hash);
        if (!rc && limit != UINT64_MAX && body.total < limit) {
            smtpc__dkim_body_free(&body);
            setres(r, SMTPC_DKIM_PERMERROR, "l= is longer than the body");
            goto out;
        }
        smtpc__dkim_body_free(&body);
    }
    if (rc) goto out;
    if (bhl != 32 || CRYPTO_memcmp(bh, hash, 32) != 0) {
        setres(r, SMTPC_DKIM_FAIL, "body hash mismatch");
        goto out;
    }
    /* header hash: the fields of h=, then this field with b= emptied */
    rc = smtpc__dkim_canon_selected(&data, h, hc, names, lens, nn, used);
    if (!rc) {
        smtpc__buf self;
        smtpc__buf_init(&self, 0);
        size_t cut = voff + tb->eq_end, resume = (size_t)(tb->val + tb->val_len - field);
        rc = smtpc__buf_append(&self, field, cut);
        if (!rc) rc = smtpc__buf_append(&self, field + resume, h->f[fi].len - resume);
        if (!rc)
            rc = smtpc__dkim_canon_field(&data, hc, (const char *)smtpc__buf_ptr(&self),
                                         smtpc__buf_size(&self), false);
        smtpc__buf_free(&self);
    }
    if (rc) goto out;
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    if (!m) {
        rc = SMTPC_ENOMEM;
        goto out;
    }
    bool ok;
    if (!ed) {
        ok = EVP_DigestVerifyInit(m, NULL, EVP_sha256(), NULL, pk) == 1 &&
             EVP_DigestVerify(m, sig, sigl, smtpc__buf_ptr(&data), smtpc__buf_size(&data)) == 1;
    } else {
        unsigned int hl = 0;
        ok = EVP_Digest(smtpc__buf_ptr(&data), smtpc__buf_size(&data), hash, &hl, EVP_sha256(),
                        NULL) == 1 &&
             EVP_DigestVerifyInit(m, NULL, NULL, NULL, pk) == 1 &&
             EVP_DigestVerify(m, sig, sigl, hash, hl) == 1;
    }
    EVP_MD_CTX_free(m);
    if (ok) setres(r, SMTPC_DKIM_PASS, "%s", "");
    else setres(r, SMTPC_DKIM_FAIL, "signature does not verify");
out:
    free(used);
    free(bh);
    free(sig);
    smtpc__buf_free(&data);
    EVP_PKEY_free(pk);
    return rc;
}

SMTPC_API int smtpc_dkim_verify(const void *msg, size_t len, smtpc_dkim_txt_cb txt,
                                void *userdata, int64_t now, smtpc_dkim_result *results,
                                size_t max, size_t *count, char *errbuf, size_t errlen)
{
    smtpc__errmsg err;
    err.text[0] = '\0';
    if (count) *count = 0;
    if ((!msg && len) || !txt || (!results && max)) return SMTPC_EINVAL;
    int rc = smtpc__syslib_need(SMTPC__LIB_CRYPTO, &err);
    if (rc) {
        if (errbuf && errlen) snprintf(errbuf, errlen, "%s", err.text);
        return rc;
    }
    smtpc__dkim_hdrs h;
    smtpc__dkim_hdrs_init(&h, false);
    size_t used = 0;
    rc = smtpc__dkim_hdrs_feed(&h, msg, len, &used);
    if (rc == SMTPC_ELIMIT)
        smtpc__err(&err, rc, "the header section is longer than %u octets", SMTPC_DKIM_MAX_HEADER);
    if (!rc) rc = smtpc__dkim_hdrs_split(&h, &err);
    vctx v = {.h = &h, .body = (const uint8_t *)msg + used, .body_len = len - used, .txt = txt,
              .ud = userdata, .now = now ? now : (int64_t)time(NULL)};
    size_t nsig = 0;
    for (size_t i = 0; !rc && i < h.n; i++) {
        if (h.f[i].name_len != 14 || smtpc__strncasecmp(smtpc__dkim_field_ptr(&h, i), "DKIM-Signature", 14))
            continue;
        if (nsig < max) rc = verify_one(&v, i, &results[nsig]);
        nsig++;
    }
    smtpc__dkim_hdrs_free(&h);
    if (count) *count = nsig;
    if (rc && errbuf && errlen) smtpc__strlcpy(errbuf, err.text[0] ? err.text : smtpc_strerror(rc), errlen);
    return rc;
}
