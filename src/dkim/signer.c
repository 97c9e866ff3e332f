/* DKIM signer: keys, options, and signing one message as it streams. */
#include "dkim_int.h"
#include "util/syslib.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KEY_FILE_MAX (64u * 1024u)
#define MAX_NAMES 64
#define NAME_MAX_LEN 76

enum { ALG_RSA, ALG_ED25519 };

typedef struct dkim_key {
    char selector[128];
    EVP_PKEY *pkey;
    int alg;
} dkim_key;

typedef struct hname {
    char name[NAME_MAX_LEN + 1];
    size_t len;
    bool over;
} hname;

struct smtpc_dkim_signer {
    smtpc__errmsg err;
    dkim_key keys[SMTPC_DKIM_MAX_KEYS];
    size_t nkeys;
    char *domain;
    char *auid;
    uint32_t expiry;
    int hcanon, bcanon;
    hname names[MAX_NAMES];
    size_t nnames;
    int64_t (*now)(void *);
    void *now_ud;
};

struct smtpc_dkim_sign {
    const smtpc_dkim_signer *sg;
    smtpc__errmsg err;
    int64_t t;
    int state; /* 0 header, 1 body, 2 finished, -1 failed */
    smtpc__dkim_hdrs h;
    smtpc__dkim_body b;
    smtpc__buf out;
};

/* RFC 6376 5.4 / 5.4.1 and the list fields of RFC 2369, 2919, 8058; '+':
 * over-signed (a second instance, or a first one, must not be addable). */
static const char default_headers[] =
    "+From:+Sender:+Reply-To:+Subject:+Date:+Message-ID:+To:+Cc:+MIME-Version:+Content-Type:"
    "+Content-Transfer-Encoding:+Content-Language:+In-Reply-To:+References:+List-Id:+List-Help:"
    "+List-Unsubscribe:+List-Unsubscribe-Post:+List-Subscribe:+List-Post:+List-Owner:"
    "+List-Archive:Resent-Date:Resent-From:Resent-Sender:Resent-To:Resent-Cc:Resent-Message-ID";

static int64_t system_now(void *ud)
{
    (void)ud;
    return (int64_t)time(NULL);
}

SMTPC_API int smtpc_dkim_signer_new(smtpc_dkim_signer **out)
{
    smtpc_dkim_signer *sg = calloc(1, sizeof *sg);
    if (!sg) return SMTPC_ENOMEM;
    sg->hcanon = sg->bcanon = SMTPC_DKIM_RELAXED;
    sg->now = system_now;
    int rc = smtpc_dkim_signer_set_headers(sg, NULL);
    if (rc) {
        free(sg);
        return rc;
    }
    *out = sg;
    return 0;
}

SMTPC_API void smtpc_dkim_signer_free(smtpc_dkim_signer *sg)
{
    if (!sg) return;
    for (size_t i = 0; i < sg->nkeys; i++) EVP_PKEY_free(sg->keys[i].pkey); /* wipes the key */
    free(sg->domain);
    free(sg->auid);
    free(sg);
}

SMTPC_API const char *smtpc_dkim_signer_errmsg(const smtpc_dkim_signer *sg)
{
    return sg ? sg->err.text : "";
}

SMTPC_API size_t smtpc_dkim_signer_key_count(const smtpc_dkim_signer *sg)
{
    return sg ? sg->nkeys : 0;
}

/* A DNS name: labels of letters, digits, '-' and '_' joined by dots. */
static bool dns_name_ok(const char *s, size_t max)
{
    size_t n = strlen(s), label = 0;
    if (n == 0 || n > max) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0) return false;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '_') {
            if (++label > 63) return false;
        } else {
            return false;
        }
    }
    return label > 0;
}

/* ---- keys ---- */

/* Finds the PEM block of pem[0..n): its label and base64 body. */
static int pem_block(smtpc_dkim_signer *sg, const char *pem, size_t n, char *label, size_t lsz,
                     const char **b64, size_t *b64len)
{
    static const char begin[] = "-----BEGIN ";
    const char *p = NULL;
    for (size_t i = 0; i + sizeof begin - 1 <= n; i++)
        if ((i == 0 || pem[i - 1] == '\n') && !memcmp(pem + i, begin, sizeof begin - 1)) {
            p = pem + i + sizeof begin - 1;
            break;
        }
    if (!p) return smtpc__err(&sg->err, SMTPC_EINVAL, "not a PEM key: no \"-----BEGIN\" line");
    const char *end = pem + n;
    const char *dash = memchr(p, '-', (size_t)(end - p));
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!dash || !eol || dash > eol || (size_t)(dash - p) >= lsz)
        return smtpc__err(&sg->err, SMTPC_EINVAL, "not a PEM key: malformed BEGIN line");
    memcpy(label, p, (size_t)(dash - p));
    label[dash - p] = '\0';
    const char *body = eol + 1;
    static const char endm[] = "-----END ";
    const char *q = NULL;
    for (const char *s = body; s + sizeof endm - 1 <= end; s++)
        if ((s == body || s[-1] == '\n') && !memcmp(s, endm, sizeof endm - 1)) {
            q = s;
            break;
        }
    if (!q) return smtpc__err(&sg->err, SMTPC_EINVAL, "not a PEM key: no \"-----END\" line");
    if (memchr(body, ':', (size_t)(q - body)))
        return smtpc__err(&sg->err, SMTPC_EINVAL,
                          "the key is encrypted (PEM headers): decrypt it first, e.g. "
                          "openssl pkey -in KEY -out PLAIN");
    *b64 = body;
    *b64len = (size_t)(q - body);
    return 0;
}

static int add_key(smtpc_dkim_signer *sg, const char *selector, const char *pem, size_t n,
                   const char *what)
{
    if (!selector || !dns_name_ok(selector, sizeof sg->keys[0].selector - 1))
        return smtpc__err(&sg->err, SMTPC_EINVAL, "invalid DKIM selector \"%.64s\"",
                          selector ? selector : "(null)");
    int lrc = smtpc__syslib_need(SMTPC__LIB_CRYPTO, &sg->err); /* keys and signatures are libcrypto's */
    if (lrc) return lrc;
    if (sg->nkeys == SMTPC_DKIM_MAX_KEYS)
        return smtpc__err(&sg->err, SMTPC_ELIMIT, "at most %d DKIM keys", SMTPC_DKIM_MAX_KEYS);
    char label[64];
    const char *b64 = NULL;
    size_t b64len = 0;
    int rc = pem_block(sg, pem, n, label, sizeof label, &b64, &b64len);
    if (rc) return rc;
    if (!strcmp(label, "ENCRYPTED PRIVATE KEY"))
        return smtpc__err(&sg->err, SMTPC_EINVAL,
                          "%s: the key is encrypted: decrypt it first, e.g. "
                          "openssl pkey -in KEY -out PLAIN", what);
    if (strcmp(label, "PRIVATE KEY") && strcmp(label, "RSA PRIVATE KEY"))
        return smtpc__err(&sg->err, SMTPC_EINVAL,
                          "%s: a \"%s\" is not a usable DKIM key: an RSA (PKCS#1 or PKCS#8) or "
                          "Ed25519 (PKCS#8) private key is needed", what, label);
    char *clean = malloc(b64len + 1);
    uint8_t *der = malloc(b64len / 4 * 3 + 3);
    if (!clean || !der) {
        free(clean);
        free(der);
        return SMTPC_ENOMEM;
    }
    size_t cl = smtpc__dkim_strip_fws(clean, b64, b64len);
    long dl = smtpc__b64_decode(der, clean, cl);
    EVP_PKEY *pk = NULL;
    if (dl > 0) {
        const unsigned char *dp = der;
        pk = !strcmp(label, "RSA PRIVATE KEY") ? d2i_PrivateKey(EVP_PKEY_RSA, NULL, &dp, dl)
                                               : d2i_AutoPrivateKey(NULL, &dp, dl);
    }
    smtpc__secure_zero(clean, b64len + 1);
    smtpc__secure_zero(der, b64len / 4 * 3 + 3);
    free(clean);
    free(der);
    if (!pk) return smtpc__err(&sg->err, SMTPC_EINVAL, "%s: malformed private key", what);
    int id = EVP_PKEY_get_base_id(pk);
    dkim_key *k = &sg->keys[sg->nkeys];
    if (id == EVP_PKEY_RSA) {
        int bits = EVP_PKEY_get_bits(pk);
        if (bits < 1024 || bits > 4096) {
            EVP_PKEY_free(pk);
            return smtpc__err(&sg->err, SMTPC_EINVAL,
                              "%s: an RSA key of %d bits: DKIM needs 1024 to 4096 (2048 is usual)",
                              what, bits);
        }
        k->alg = ALG_RSA;
    } else if (id == EVP_PKEY_ED25519) {
        k->alg = ALG_ED25519;
    } else {
        EVP_PKEY_free(pk);
        return smtpc__err(&sg->err, SMTPC_EINVAL,
                          "%s: unsupported key type: DKIM signs with RSA (rsa-sha256) or "
                          "Ed25519 (ed25519-sha256) keys only", what);
    }
    k->pkey = pk;
    smtpc__strlcpy(k->selector, selector, sizeof k->selector);
    sg->nkeys++;
    smtpc__err_clear(&sg->err);
    return 0;
}

SMTPC_API int smtpc_dkim_signer_add_key_pem(smtpc_dkim_signer *sg, const char *selector,
                                            const void *pem, size_t len)
{
    if (!sg || !pem) return SMTPC_EINVAL;
    return add_key(sg, selector, pem, len, "key");
}

SMTPC_API int smtpc_dkim_signer_add_key_file(smtpc_dkim_signer *sg, const char *selector,
                                             const char *path)
{
    if (!sg || !path) return SMTPC_EINVAL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return smtpc__err(&sg->err, errno == ENOENT ? SMTPC_ENOTFOUND : SMTPC_EIO,
                          "%s: cannot open the DKIM key: %s", path, strerror(errno));
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0)
        rc = smtpc__err(&sg->err, SMTPC_EIO, "%s: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        rc = smtpc__err(&sg->err, SMTPC_EIO, "%s: the DKIM key is not a regular file", path);
    else if (st.st_mode & 077)
        rc = smtpc__err(&sg->err, SMTPC_ECONFIG,
                        "%s: the DKIM private key is accessible by group or others (mode %03o); "
                        "refusing to use it. Run: chmod 600 %s",
                        path, (unsigned)(st.st_mode & 0777), path);
    else if (st.st_size > (off_t)KEY_FILE_MAX)
        rc = smtpc__err(&sg->err, SMTPC_ELIMIT, "%s: too large for a DKIM key (over %u octets)",
                        path, KEY_FILE_MAX);
    if (rc) {
        close(fd);
        return rc;
    }
    char *buf = malloc(KEY_FILE_MAX + 1);
    if (!buf) {
        close(fd);
        return SMTPC_ENOMEM;
    }
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, KEY_FILE_MAX + 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rc = smtpc__err(&sg->err, SMTPC_EIO, "%s: %s", path, strerror(errno));
            break;
        }
        if (r == 0) break;
        n += (size_t)r;
        if (n > KEY_FILE_MAX) {
            rc = smtpc__err(&sg->err, SMTPC_ELIMIT, "%s: too large for a DKIM key", path);
            break;
        }
    }
    close(fd);
    if (!rc) rc = add_key(sg, selector, buf, n, path);
    smtpc__secure_zero(buf, n);
    free(buf);
    return rc;
}

/* ---- options ---- */

SMTPC_API int smtpc_dkim_signer_set_domain(smtpc_dkim_signer *sg, const char *domain)
{
    if (!sg) return SMTPC_EINVAL;
    if (!domain || !dns_name_ok(domain, 253) || !strchr(domain, '.'))
        return smtpc__err(&sg->err, SMTPC_EINVAL,
                          "invalid DKIM domain \"%.64s\": an ASCII domain name (A-labels) is needed",
                          domain ? domain : "(null)");
    char *d = smtpc__strdup(domain);
    if (!d) return SMTPC_ENOMEM;
    free(sg->domain);
    sg->domain = d;
    return 0;
}

SMTPC_API int smtpc_dkim_signer_set_identity(smtpc_dkim_signer *sg, const char *auid)
{
    if (!sg) return SMTPC_EINVAL;
    char *a = NULL;
    if (auid) {
        const char *at = strrchr(auid, '@');
        bool ok = at && at - auid <= 64 && dns_name_ok(at + 1, 253);
        /* the local part is written as is: no character dkim-quoted-printable
         * would have to encode */
        for (const char *p = auid; ok && p < at; p++)
            ok = *p > 32 && *p < 127 && *p != ';' && *p != '=' && *p != '"';
        if (!ok)
            return smtpc__err(&sg->err, SMTPC_EINVAL,
                              "invalid DKIM identity \"%.64s\": [local-part]@domain with a "
                              "plain ASCII local part of at most 64 octets", auid);
        if (!(a = smtpc__strdup(auid))) return SMTPC_ENOMEM;
    }
    free(sg->auid);
    sg->auid = a;
    return 0;
}

SMTPC_API int smtpc_dkim_signer_set_expiry(smtpc_dkim_signer *sg, uint32_t seconds)
{
    if (!sg) return SMTPC_EINVAL;
    sg->expiry = seconds;
    return 0;
}

SMTPC_API int smtpc_dkim_signer_set_canon(smtpc_dkim_signer *sg, smtpc_dkim_canon header,
                                          smtpc_dkim_canon body)
{
    if (!sg) return SMTPC_EINVAL;
    if ((header != SMTPC_DKIM_RELAXED && header != SMTPC_DKIM_SIMPLE) ||
        (body != SMTPC_DKIM_RELAXED && body != SMTPC_DKIM_SIMPLE))
        return smtpc__err(&sg->err, SMTPC_EINVAL, "unknown DKIM canonicalization");
    sg->hcanon = (int)header;
    sg->bcanon = (int)body;
    return 0;
}

SMTPC_API int smtpc_dkim_signer_set_clock(smtpc_dkim_signer *sg, int64_t (*now)(void *userdata),
                                          void *userdata)
{
    if (!sg) return SMTPC_EINVAL;
    sg->now = now ? now : system_now;
    sg->now_ud = now ? userdata : NULL;
    return 0;
}

SMTPC_API int smtpc_dkim_signer_set_headers(smtpc_dkim_signer *sg, const char *names)
{
    if (!sg) return SMTPC_EINVAL;
    const char *s = names ? names : default_headers;
    hname list[MAX_NAMES];
    size_t n = 0;
    bool from = false;
    while (*s) {
        const char *e = strchr(s, ':');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        const char *p = s;
        size_t l = len;
        while (l && (*p == ' ' || *p == '\t')) p++, l--;
        while (l && (p[l - 1] == ' ' || p[l - 1] == '\t')) l--;
        bool over = l && *p == '+';
        if (over) p++, l--;
        if (l) {
            bool ok = l <= NAME_MAX_LEN;
            for (size_t i = 0; ok && i < l; i++)
                ok = (unsigned char)p[i] > 32 && (unsigned char)p[i] < 127;
            if (!ok)
                return smtpc__err(&sg->err, SMTPC_EINVAL, "invalid header field name \"%.*s\"",
                                  (int)(l > 76 ? 76 : l), p);
            size_t k = 0;
            for (; k < n; k++)
                if (list[k].len == l && !smtpc__strncasecmp(list[k].name, p, l)) break;
            if (k == n) {
                if (n == MAX_NAMES)
                    return smtpc__err(&sg->err, SMTPC_ELIMIT, "at most %d header field names",
                                      MAX_NAMES);
                for (size_t i = 0; i < l; i++)
                    list[n].name[i] = (char)((p[i] >= 'A' && p[i] <= 'Z') ? p[i] + 32 : p[i]);
                list[n].name[l] = '\0';
                list[n].len = l;
                list[n].over = false;
                n++;
            }
            list[k].over |= over;
            if (!strcmp(list[k].name, "from")) {
                list[k].over = true; /* From is always signed and over-signed */
                from = true;
            }
        }
        s += len;
        if (*s == ':') s++;
    }
    if (!from) {
        if (n == MAX_NAMES)
            return smtpc__err(&sg->err, SMTPC_ELIMIT, "at most %d header field names", MAX_NAMES);
        memmove(list + 1, list, n * sizeof list[0]);
        memcpy(list[0].name, "from", 5);
        list[0].len = 4;
        list[0].over = true;
        n++;
    }
    memcpy(sg->names, list, n * sizeof list[0]);
    sg->nnames = n;
    return 0;
}

/* ---- signing ---- */

SMTPC_API int smtpc_dkim_sign_begin(const smtpc_dkim_signer *sg, smtpc_dkim_sign **out)
{
    if (!sg || !out) return SMTPC_EINVAL;
    smtpc__errmsg *err = (smtpc__errmsg *)&sg->err; /* the detail is the caller's to read */
    if (!sg->nkeys) return smtpc__err(err, SMTPC_ESTATE, "the DKIM signer has no key");
    if (!sg->domain) return smtpc__err(err, SMTPC_ESTATE, "the DKIM signer has no domain");
    if (sg->auid) {
        const char *ad = strrchr(sg->auid, '@') + 1;
        size_t al = strlen(ad), dl = strlen(sg->domain);
        if (!(al == dl && !smtpc__strcasecmp(ad, sg->domain)) &&
            !(al > dl && ad[al - dl - 1] == '.' && !smtpc__strcasecmp(ad + al - dl, sg->domain)))
            return smtpc__err(err, SMTPC_EINVAL,
                              "the DKIM identity \"%s\" is not in the domain %s or a subdomain",
                              sg->auid, sg->domain);
    }
    smtpc_dkim_sign *c = calloc(1, sizeof *c);
    if (!c) return SMTPC_ENOMEM;
    c->sg = sg;
    c->t = sg->now(sg->now_ud);
    smtpc__dkim_hdrs_init(&c->h, true);
    smtpc__buf_init(&c->out, 0);
    int rc = smtpc__dkim_body_init(&c->b, sg->bcanon, UINT64_MAX, true);
    if (rc) {
        smtpc__dkim_hdrs_free(&c->h);
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

SMTPC_API void smtpc_dkim_sign_free(smtpc_dkim_sign *ctx)
{
    if (!ctx) return;
    smtpc__dkim_hdrs_free(&ctx->h);
    smtpc__dkim_body_free(&ctx->b);
    smtpc__buf_free(&ctx->out);
    free(ctx);
}

SMTPC_API const char *smtpc_dkim_sign_errmsg(const smtpc_dkim_sign *ctx)
{
    return ctx ? ctx->err.text : "";
}

static int fail(smtpc_dkim_sign *c, int rc)
{
    c->state = -1;
    if (!c->err.text[0]) {
        if (rc == SMTPC_ELIMIT)
            smtpc__err(&c->err, rc, "the header section is longer than %u octets",
                       SMTPC_DKIM_MAX_HEADER);
        else
            smtpc__err(&c->err, rc, "%s", smtpc_strerror(rc));
    }
    return rc;
}

SMTPC_API int smtpc_dkim_sign_update(smtpc_dkim_sign *ctx, const void *p, size_t n)
{
    if (!ctx || (!p && n)) return SMTPC_EINVAL;
    if (ctx->state < 0) return SMTPC_ESTATE;
    if (ctx->state == 2) return smtpc__err(&ctx->err, SMTPC_ESTATE, "the message was already signed");
    const uint8_t *d = p;
    if (ctx->state == 0) {
        size_t used;
        int rc = smtpc__dkim_hdrs_feed(&ctx->h, d, n, &used);
        if (rc) return fail(ctx, rc);
        d += used;
        n -= used;
        if (!ctx->h.done) return 0;
        ctx->state = 1;
        ctx->b.cr = ctx->h.skip_lf; /* the blank line ended by a CR: a next LF is its own */
    }
    smtpc__dkim_body_update(&ctx->b, d, n);
    return 0;
}

SMTPC_API int smtpc_dkim_sign_read(smtpc_dkim_sign *ctx,
                                   ssize_t (*read)(void *userdata, void *buf, size_t len),
                                   void *userdata)
{
    if (!ctx || !read) return SMTPC_EINVAL;
    uint8_t buf[16384];
    for (;;) {
        ssize_t n = read(userdata, buf, sizeof buf);
        if (n == 0) return 0;
        if (n < 0 || (size_t)n > sizeof buf) {
            int rc = n < 0 && n >= INT_MIN ? (int)n : SMTPC_EIO; /* the source's own error */
            return fail(ctx, smtpc__err(&ctx->err, rc, "reading the message to sign failed (%s)",
                                        smtpc_err_name(rc)));
        }
        int rc = smtpc_dkim_sign_update(ctx, buf, (size_t)n);
        if (rc) return rc;
    }
}

/* Folding writer for the signature field: lines of at most 78 octets. */
typedef struct folder {
    smtpc__buf *b;
    size_t col;
    int rc;
} folder;

static void fold_put(folder *f, const char *s, size_t n, bool space)
{
    if (f->rc) return;
    if (space) {
        if (f->col + 1 + n > 78) {
            f->rc = smtpc__buf_append(f->b, "\r\n ", 3);
            f->col = 1;
        } else {
            f->rc = smtpc__buf_append(f->b, " ", 1);
            f->col++;
        }
    }
    if (!f->rc) f->rc = smtpc__buf_append(f->b, s, n);
    f->col += n;
}

static void fold_tag(folder *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fold_tag(folder *f, const char *fmt, ...)
{
    char tmp[600];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        f->rc = SMTPC_EINVAL;
        return;
    }
    fold_put(f, tmp, (size_t)n, true);
}

static size_t count_named(const smtpc__dkim_hdrs *h, const hname *nm)
{
    size_t c = 0;
    for (size_t i = 0; i < h->n; i++)
        if (h->f[i].name_len == nm->len &&
            !smtpc__strncasecmp(smtpc__dkim_field_ptr(h, i), nm->name, nm->len))
            c++;
    return c;
}

static int sign_one(smtpc_dkim_sign *c, const dkim_key *k, const char *bh, const char **hn,
                    size_t *hl, size_t nh, bool *used)
{
    const smtpc_dkim_signer *sg = c->sg;
    static const char *const canon[] = {"relaxed", "simple"};
    size_t start = smtpc__buf_size(&c->out);
    folder f = {.b = &c->out, .col = 0, .rc = 0};
    fold_put(&f, "DKIM-Signature:", 15, false);
    fold_tag(&f, "v=1;");
    fold_tag(&f, "a=%s;", k->alg == ALG_RSA ? "rsa-sha256" : "ed25519-sha256");
    fold_tag(&f, "c=%s/%s;", canon[sg->hcanon], canon[sg->bcanon]);
    fold_tag(&f, "d=%s;", sg->domain);
    fold_tag(&f, "s=%s;", k->selector);
    if (sg->auid) fold_tag(&f, "i=%s;", sg->auid);
    fold_tag(&f, "t=%lld;", (long long)c->t);
    if (sg->expiry) fold_tag(&f, "x=%lld;", (long long)c->t + sg->expiry);
    for (size_t i = 0; i < nh; i++) {
        char tmp[NAME_MAX_LEN + 4];
        int n = snprintf(tmp, sizeof tmp, "%s%.*s%s", i ? "" : "h=", (int)hl[i], hn[i],
                         i + 1 < nh ? ":" : ";");
        /* FWS is allowed after each ':' of h= */
        if (i && f.col + (size_t)n <= 78)
            fold_put(&f, tmp, (size_t)n, false);
        else
            fold_put(&f, tmp, (size_t)n, true);
    }
    fold_tag(&f, "bh=%s;", bh);
    fold_put(&f, "b=", 2, true);
    if (f.rc) return f.rc;

    /* The data signed: the selected fields, then this one with b= empty and
     * no final CRLF. */
    smtpc__buf data;
    smtpc__buf_init(&data, 0);
    memset(used, 0, c->h.n * sizeof *used);
    int rc = smtpc__dkim_canon_selected(&data, &c->h, sg->hcanon, hn, hl, nh, used);
    if (!rc)
        rc = smtpc__dkim_canon_field(&data, sg->hcanon,
                                     (const char *)smtpc__buf_ptr(&c->out) + start,
                                     smtpc__buf_size(&c->out) - start, false);
    uint8_t sig[512];
    size_t siglen = sizeof sig;
    EVP_MD_CTX *m = rc ? NULL : EVP_MD_CTX_new();
    if (!rc && !m) rc = SMTPC_ENOMEM;
    if (!rc) {
        bool ok;
        if (k->alg == ALG_RSA) {
            ok = EVP_DigestSignInit(m, NULL, EVP_sha256(), NULL, k->pkey) == 1 &&
                 EVP_DigestSign(m, sig, &siglen, smtpc__buf_ptr(&data), smtpc__buf_size(&data)) == 1;
        } else {
            /* RFC 8463: PureEdDSA over the SHA-256 of the header data */
            uint8_t hash[32];
            unsigned int hlen = 0;
            ok = EVP_Digest(smtpc__buf_ptr(&data), smtpc__buf_size(&data), hash, &hlen,
                            EVP_sha256(), NULL) == 1 &&
                 EVP_DigestSignInit(m, NULL, NULL, NULL, k->pkey) == 1 &&
                 EVP_DigestSign(m, sig, &siglen, hash, hlen) == 1;
        }
        if (!ok) rc = smtpc__err(&c->err, SMTPC_EIO, "the crypto library failed to sign (%s key)",
                                 k->alg == ALG_RSA ? "RSA" : "Ed25519");
    }
    EVP_MD_CTX_free(m);
    smtpc__buf_free(&data);
    if (rc) return rc;

    char b64[700];
    size_t bl = smtpc__b64_encoded_len(siglen);
    smtpc__b64_encode(b64, sig, siglen);
    for (size_t i = 0; i < bl && !f.rc;) {
        size_t room = f.col < 77 ? 78 - f.col : 0;
        if (room == 0) {
            f.rc = smtpc__buf_append(f.b, "\r\n ", 3);
            f.col = 1;
            continue;
        }
        size_t take = bl - i < room ? bl - i : room;
        fold_put(&f, b64 + i, take, false);
        i += take;
    }
    if (!f.rc) f.rc = smtpc__buf_append(f.b, "\r\n", 2);
    return f.rc;
}

SMTPC_API int smtpc_dkim_sign_final(smtpc_dkim_sign *ctx, const char **fields, size_t *len)
{
    if (!ctx || !fields || !len) return SMTPC_EINVAL;
    if (ctx->state < 0) return SMTPC_ESTATE;
    if (ctx->state == 2) return smtpc__err(&ctx->err, SMTPC_ESTATE, "the message was already signed");
    int rc = smtpc__dkim_hdrs_split(&ctx->h, &ctx->err);
    if (rc) return fail(ctx, rc);
    uint8_t hash[32];
    if ((rc = smtpc__dkim_body_final(&ctx->b, hash))) return fail(ctx, rc);
    char bh[45];
    smtpc__b64_encode(bh, hash, 32);
    bh[44] = '\0';

    /* h=: each listed field as many times as it occurs, plus once more when
     * over-signed. */
    const smtpc_dkim_signer *sg = ctx->sg;
    const char *hn[256];
    size_t hl[256], nh = 0;
    bool from = false;
    for (size_t i = 0; i < sg->nnames; i++) {
        size_t cnt = count_named(&ctx->h, &sg->names[i]);
        if (!strcmp(sg->names[i].name, "from")) from = cnt > 0;
        cnt += sg->names[i].over;
        for (size_t j = 0; j < cnt; j++) {
            if (nh == SMTPC__ARRAY_LEN(hn))
                return fail(ctx, smtpc__err(&ctx->err, SMTPC_ELIMIT,
                                            "more than %zu header fields to sign",
                                            SMTPC__ARRAY_LEN(hn)));
            hn[nh] = sg->names[i].name;
            hl[nh++] = sg->names[i].len;
        }
    }
    if (!from) return fail(ctx, smtpc__err(&ctx->err, SMTPC_EINVAL, "the message has no From field"));
    bool *used = malloc((ctx->h.n ? ctx->h.n : 1) * sizeof *used);
    if (!used) return fail(ctx, SMTPC_ENOMEM);
    for (size_t i = 0; i < sg->nkeys && !rc; i++) rc = sign_one(ctx, &sg->keys[i], bh, hn, hl, nh, used);
    free(used);
    if (!rc) rc = smtpc__buf_append(&ctx->out, "", 1); /* NUL, not counted */
    if (rc) return fail(ctx, rc);
    ctx->out.len--;
    ctx->state = 2;
    *fields = (const char *)smtpc__buf_ptr(&ctx->out);
    *len = smtpc__buf_size(&ctx->out);
    return 0;
}

/* ---- key information and key generation --------------------------------- */

SMTPC_API const char *smtpc_dkim_signer_key_algorithm(const smtpc_dkim_signer *sg, size_t i)
{
    if (!sg || i >= sg->nkeys) return NULL;
    return sg->keys[i].alg == ALG_RSA ? "rsa-sha256" : "ed25519-sha256";
}

SMTPC_API int smtpc_dkim_signer_key_txt(const smtpc_dkim_signer *sg, size_t i, char *buf, size_t buflen)
{
    if (!sg || i >= sg->nkeys || !buf || !buflen) return SMTPC_EINVAL;
    const dkim_key *k = &sg->keys[i];
    unsigned char raw[1024];
    size_t n = 0;
    if (k->alg == ALG_RSA) {
        /* p= of an RSA key: its SubjectPublicKeyInfo (DER) */
        int dl = i2d_PUBKEY(k->pkey, NULL);
        if (dl <= 0 || (size_t)dl > sizeof raw) return SMTPC_EIO;
        unsigned char *p = raw;
        if (i2d_PUBKEY(k->pkey, &p) != dl) return SMTPC_EIO;
        n = (size_t)dl;
    } else {
        /* of an Ed25519 key: the raw 32 octets (RFC 8463) */
        n = sizeof raw;
        if (EVP_PKEY_get_raw_public_key(k->pkey, raw, &n) != 1) return SMTPC_EIO;
    }
    const char *head = k->alg == ALG_RSA ? "v=DKIM1; k=rsa; p=" : "v=DKIM1; k=ed25519; p=";
    size_t hl = strlen(head), bl = smtpc__b64_encoded_len(n);
    if (hl + bl + 1 > buflen) return SMTPC_ELIMIT;
    memcpy(buf, head, hl);
    smtpc__b64_encode(buf + hl, raw, n);
    buf[hl + bl] = '\0';
    return 0;
}

SMTPC_API int smtpc_dkim_keygen(const char *algorithm, unsigned bits, char *pem, size_t pemlen)
{
    if (!algorithm || !pem || !pemlen) return SMTPC_EINVAL;
    bool rsa = !strcmp(algorithm, "rsa-sha256");
    if (!rsa && strcmp(algorithm, "ed25519-sha256")) return SMTPC_EINVAL;
    if (rsa && bits == 0) bits = 2048;
    if (rsa && (bits < 1024 || bits > 4096)) return SMTPC_EINVAL;
    int rc = smtpc__syslib_need(SMTPC__LIB_CRYPTO, NULL);
    if (rc) return rc;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(rsa ? EVP_PKEY_RSA : EVP_PKEY_ED25519, NULL);
    EVP_PKEY *pk = NULL;
    rc = SMTPC_EIO;
    if (ctx && EVP_PKEY_keygen_init(ctx) == 1 && (!rsa || EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, (int)bits) == 1) &&
        EVP_PKEY_keygen(ctx, &pk) == 1) {
        /* PKCS#8 DER, then PEM by hand: no BIO, no PEM module */
        PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(pk);
        unsigned char *der = NULL;
        int dl = p8 ? i2d_PKCS8_PRIV_KEY_INFO(p8, &der) : -1;
        PKCS8_PRIV_KEY_INFO_free(p8);
        if (dl > 0) {
            size_t need = 28 + smtpc__b64_encoded_len((size_t)dl) + (size_t)dl / 48 + 2 + 26 + 1;
            if (need > pemlen) {
                rc = SMTPC_ELIMIT;
            } else {
                size_t o = 0;
                memcpy(pem + o, "-----BEGIN PRIVATE KEY-----\n", 28);
                o += 28;
                for (size_t at = 0; at < (size_t)dl; at += 48) {
                    size_t chunk = (size_t)dl - at < 48 ? (size_t)dl - at : 48;
                    smtpc__b64_encode(pem + o, der + at, chunk);
                    o += smtpc__b64_encoded_len(chunk);
                    pem[o++] = '\n';
                }
                memcpy(pem + o, "-----END PRIVATE KEY-----\n", 26);
                o += 26;
                pem[o] = '\0';
                rc = 0;
            }
            smtpc__secure_zero(der, (size_t)dl);
            OPENSSL_free(der);
        }
    }
    EVP_PKEY_free(pk);
    EVP_PKEY_CTX_free(ctx);
    return rc;
}

SMTPC_API int smtpc_dkim_signer_dup(const smtpc_dkim_signer *sg, smtpc_dkim_signer **out)
{
    if (!sg || !out) return SMTPC_EINVAL;
    smtpc_dkim_signer *d = calloc(1, sizeof *d);
    if (!d) return SMTPC_ENOMEM;
    *d = *sg;
    d->nkeys = 0;
    d->domain = d->auid = NULL;
    int rc = 0;
    if ((sg->domain && !(d->domain = smtpc__strdup(sg->domain))) || (sg->auid && !(d->auid = smtpc__strdup(sg->auid))))
        rc = SMTPC_ENOMEM;
    for (size_t i = 0; !rc && i < sg->nkeys; i++) {
        d->keys[i] = sg->keys[i];
        /* its own key objects: no state (RSA blinding) shared with sg's thread */
        if (!(d->keys[i].pkey = EVP_PKEY_dup(sg->keys[i].pkey))) rc = SMTPC_ENOMEM;
        else d->nkeys++;
    }
    if (rc) {
        smtpc_dkim_signer_free(d);
        return rc;
    }
    smtpc__err_clear(&d->err);
    *out = d;
    return 0;
}
