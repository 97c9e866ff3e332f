/* DKIM canonicalization (RFC 6376 3.4), streaming for the body. */
#include "dkim_int.h"

#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* ======================================================================
 * Body
 * ====================================================================== */

/* Bytes that end a run of plain text: CR and LF always, SP and HTAB in
 * relaxed mode (index [canon][byte]). */
static const uint8_t special[2][256] = {
    [SMTPC_DKIM_RELAXED] = {['\r'] = 1, ['\n'] = 1, [' '] = 1, ['\t'] = 1},
    [SMTPC_DKIM_SIMPLE] = {['\r'] = 1, ['\n'] = 1},
};

int smtpc__dkim_body_init(smtpc__dkim_body *b, int canon, uint64_t limit, bool cr_eol)
{
    memset(b, 0, offsetof(smtpc__dkim_body, st));
    b->cr_eol = cr_eol;
    b->canon = canon == SMTPC_DKIM_SIMPLE ? SMTPC_DKIM_SIMPLE : SMTPC_DKIM_RELAXED;
    b->limit = limit;
    b->md = EVP_MD_CTX_new();
    if (!b->md) return SMTPC_ENOMEM;
    if (EVP_DigestInit_ex(b->md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(b->md);
        b->md = NULL;
        return SMTPC_EIO;
    }
    return 0;
}

void smtpc__dkim_body_free(smtpc__dkim_body *b)
{
    EVP_MD_CTX_free(b->md);
    b->md = NULL;
}

static void hash_bytes(smtpc__dkim_body *b, const uint8_t *p, size_t n)
{
    uint64_t room = b->limit - b->total; /* total never passes limit */
    if (n > room) n = (size_t)room;
    b->total += n;
    if (n) EVP_DigestUpdate(b->md, p, n);
}

static void flush(smtpc__dkim_body *b)
{
    size_t n = b->stn;
    b->stn = 0;
    hash_bytes(b, b->st, n);
}

static void emit(smtpc__dkim_body *b, const uint8_t *p, size_t n)
{
    while (n) {
        size_t k = sizeof b->st - b->stn;
        if (k > n) k = n;
        memcpy(b->st + b->stn, p, k);
        b->stn += k;
        p += k;
        n -= k;
        if (b->stn == sizeof b->st) flush(b);
    }
}

/* Text is about to be written on the current line: the empty lines held
 * back are not trailing after all, and a held WSP run becomes one SP. */
static void text_starts(smtpc__dkim_body *b)
{
    if (!b->line) {
        for (; b->empty; b->empty--) emit(b, (const uint8_t *)"\r\n", 2);
        b->line = true;
    }
    if (b->wsp) {
        emit(b, (const uint8_t *)" ", 1);
        b->wsp = false;
    }
}

static void line_ends(smtpc__dkim_body *b)
{
    b->wsp = false; /* relaxed: WSP at the end of a line is dropped */
    if (b->line) {
        emit(b, (const uint8_t *)"\r\n", 2);
        b->line = false;
    } else {
        b->empty++;
    }
}

/* ---- the fast path: text that is already canonical --------------------
 * On a started line with nothing pending, most input is its own canonical
 * form: it is hashed straight from the input, and the state machine only
 * sees what must change. Canonical as is: any byte but CR and LF (relaxed:
 * and SP, HTAB); relaxed, a single SP before such a byte; a CRLF followed
 * by such a byte (a line that has text). Sixteen (SSE2) or eight bytes at
 * a time where none needs a look. */
#if !defined(__SSE2__)
#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull
/* The high bit of each byte of v that equals c (exact, no false hits). */
static inline uint64_t eq_bytes(uint64_t v, uint8_t c)
{
    uint64_t x = v ^ (ONES * c);
    return ~(((x & ~HIGHS) + ~HIGHS) | x) & HIGHS;
}
#endif

static size_t canonical_run(int canon, const uint8_t *sp, const uint8_t *p, size_t n)
{
    size_t k = 0;
    bool relaxed = canon == SMTPC_DKIM_RELAXED;
    while (k < n) {
#if defined(__SSE2__)
        if (k + 16 <= n) { /* sixteen at a time */
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + k));
            unsigned bad = (unsigned)(_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8('\r'))) |
                                      _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8('\n'))));
            if (relaxed) {
                unsigned s1 = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(' ')));
                bad |= (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8('\t')));
                /* SP before SP, HTAB, CR or LF; SP last, unless text follows */
                bad |= s1 & ((bad | s1) >> 1);
                if ((s1 >> 15) && (k + 16 == n || sp[p[k + 16]])) bad |= 1u << 15;
            }
            if (!bad) {
                k += 16;
                continue;
            }
            k += (size_t)__builtin_ctz(bad); /* the bytes before the first one to look at */
        }
#else
        if (k + 8 <= n) { /* eight at a time */
            uint64_t v;
            memcpy(&v, p + k, 8);
            uint64_t bad = eq_bytes(v, '\r') | eq_bytes(v, '\n');
            if (relaxed) {
                uint64_t s1 = eq_bytes(v, ' ');
                bad |= eq_bytes(v, '\t');
                /* SP before SP, HTAB, CR or LF (byte i+1 is 8 bits up);
                 * SP last, unless the next byte is text */
                bad |= s1 & ((bad | s1) >> 8);
                if ((s1 >> 63) && (k + 8 == n || sp[p[k + 8]])) bad |= HIGHS << 56;
            }
            if (!bad) {
                k += 8;
                continue;
            }
            k += (size_t)__builtin_ctzll(bad) / 8; /* the bytes before the first one to look at */
        }
#endif
        /* one byte, with look-ahead */
        uint8_t c = p[k];
        if (!sp[c]) {
            k++;
        } else if (c == ' ' && k + 1 < n && !sp[p[k + 1]]) {
            k += 2;
        } else if (c == '\r' && k + 2 < n && p[k + 1] == '\n' && !sp[p[k + 2]]) {
            k += 3;
        } else {
            break;
        }
    }
    return k;
}

void smtpc__dkim_body_update(smtpc__dkim_body *b, const uint8_t *p, size_t n)
{
    const uint8_t *sp = special[b->canon];
    size_t i = 0;
    while (i < n) {
        if (b->line && !b->wsp && !b->cr) {
            size_t k = canonical_run(b->canon, sp, p + i, n - i);
            if (k) {
                if (b->stn) flush(b);
                hash_bytes(b, p + i, k);
                i += k;
                if (i == n) break;
            }
        }
        uint8_t c = p[i];
        if (b->cr) {
            b->cr = false;
            if (c == '\n') { /* the LF of a CRLF */
                if (!b->cr_eol) line_ends(b);
                i++;
                continue;
            }
            if (!b->cr_eol) { /* a lone CR is text */
                text_starts(b);
                emit(b, (const uint8_t *)"\r", 1);
            }
        }
        if (c == '\n') {
            line_ends(b);
        } else if (c == '\r') {
            if (b->cr_eol) line_ends(b);
            b->cr = true;
        } else if (sp[c]) { /* SP or HTAB, relaxed */
            b->wsp = true;
        } else {
            text_starts(b);
            emit(b, p + i, 1);
        }
        i++;
    }
}

int smtpc__dkim_body_final(smtpc__dkim_body *b, uint8_t hash[32])
{
    if (b->cr && !b->cr_eol) {
        b->cr = false;
        text_starts(b);
        emit(b, (const uint8_t *)"\r", 1);
    }
    if (b->line) line_ends(b); /* a last line without CRLF gets one */
    /* Trailing empty lines are dropped. Simple: an empty body is one CRLF. */
    if (b->canon == SMTPC_DKIM_SIMPLE && b->total == 0 && b->stn == 0)
        emit(b, (const uint8_t *)"\r\n", 2);
    flush(b);
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(b->md, hash, &len) != 1 || len != 32) return SMTPC_EIO;
    return 0;
}

/* ======================================================================
 * Header section
 * ====================================================================== */

void smtpc__dkim_hdrs_init(smtpc__dkim_hdrs *h, bool cr_eol)
{
    memset(h, 0, sizeof *h);
    h->cr_eol = cr_eol;
    smtpc__buf_init(&h->raw, SMTPC_DKIM_MAX_HEADER);
}

void smtpc__dkim_hdrs_free(smtpc__dkim_hdrs *h)
{
    smtpc__buf_free(&h->raw);
    free(h->f);
    h->f = NULL;
    h->n = h->cap = 0;
}

int smtpc__dkim_hdrs_feed(smtpc__dkim_hdrs *h, const uint8_t *p, size_t n, size_t *used)
{
    size_t i = 0;
    int rc = 0;
    while (i < n && !h->done) {
        if (h->skip_lf) {
            h->skip_lf = false;
            if (p[i] == '\n') {
                i++;
                continue;
            }
        }
        size_t k = i;
        if (h->cr_eol) {
            while (k < n && p[k] != '\n' && p[k] != '\r') k++;
        } else {
            const uint8_t *lf = memchr(p + i, '\n', n - i);
            k = lf ? (size_t)(lf - p) : n;
        }
        if ((rc = smtpc__buf_append(&h->raw, p + i, k - i))) break;
        i = k;
        if (k == n) break;
        i++; /* the CR or LF */
        size_t len = smtpc__buf_size(&h->raw);
        const uint8_t *d = smtpc__buf_ptr(&h->raw);
        bool has_cr = false;
        if (p[k] == '\r')
            h->skip_lf = true;
        else
            has_cr = !h->cr_eol && len > h->line_start && d[len - 1] == '\r';
        if ((rc = smtpc__buf_append(&h->raw, has_cr ? "\n" : "\r\n", has_cr ? 1 : 2))) break;
        len = smtpc__buf_size(&h->raw);
        if (len - h->line_start == 2) /* an empty line: the section ends */
            h->done = true;
        else
            h->line_start = len;
    }
    /* the LF of the blank line's CRLF, when it is here already */
    if (h->done && h->skip_lf && i < n && p[i] == '\n') {
        h->skip_lf = false;
        i++;
    }
    *used = i;
    return rc;
}

int smtpc__dkim_hdrs_split(smtpc__dkim_hdrs *h, smtpc__errmsg *err)
{
    int rc;
    size_t end;
    if (h->done) {
        end = h->line_start; /* the empty line is no field */
    } else {
        /* The message ended inside the header section: the last line is
         * completed (a lone CR kept there becomes its line end). */
        size_t len = smtpc__buf_size(&h->raw);
        if (len > h->line_start) {
            const uint8_t *d = smtpc__buf_ptr(&h->raw);
            bool cr = d[len - 1] == '\r';
            if ((rc = smtpc__buf_append(&h->raw, cr ? "\n" : "\r\n", cr ? 1 : 2))) return rc;
        }
        end = smtpc__buf_size(&h->raw);
        h->line_start = end;
    }
    const char *d = (const char *)smtpc__buf_ptr(&h->raw);
    h->n = 0;
    size_t i = 0;
    while (i < end) {
        const char *lf = memchr(d + i, '\n', end - i); /* every line ends with CRLF */
        size_t next = (size_t)(lf - d) + 1;
        if (d[i] == ' ' || d[i] == '\t') {
            if (h->n == 0) return smtpc__err(err, SMTPC_EINVAL, "the header section starts with a continuation line");
            h->f[h->n - 1].len = next - h->f[h->n - 1].off;
        } else {
            const char *colon = memchr(d + i, ':', next - i);
            if (!colon)
                return smtpc__err(err, SMTPC_EINVAL,
                                  "header line %zu has no colon: not a header field", h->n + 1);
            size_t nl = (size_t)(colon - (d + i));
            while (nl && (d[i + nl - 1] == ' ' || d[i + nl - 1] == '\t')) nl--;
            if (!nl) return smtpc__err(err, SMTPC_EINVAL, "a header field has an empty name");
            for (size_t k = 0; k < nl; k++)
                if ((unsigned char)d[i + k] < 33 || (unsigned char)d[i + k] > 126)
                    return smtpc__err(err, SMTPC_EINVAL, "a header field name has an invalid character");
            if (h->n == h->cap) {
                size_t nc = h->cap ? h->cap * 2 : 32;
                smtpc__dkim_field *nf = realloc(h->f, nc * sizeof *nf);
                if (!nf) return SMTPC_ENOMEM;
                h->f = nf;
                h->cap = nc;
            }
            h->f[h->n++] = (smtpc__dkim_field){.off = i, .len = next - i, .name_len = nl,
                                                .value_off = (size_t)(colon - d) + 1};
        }
        i = next;
    }
    return 0;
}

static const uint8_t lower[256] = {
#define L8(a) [a] = a + 32, [a + 1] = a + 33, [a + 2] = a + 34, [a + 3] = a + 35, \
              [a + 4] = a + 36, [a + 5] = a + 37, [a + 6] = a + 38, [a + 7] = a + 39
    L8('A'), L8('I'), L8('Q'), ['Y'] = 'y', ['Z'] = 'z',
#undef L8
};
static inline uint8_t to_lower(uint8_t c) { return lower[c] ? lower[c] : c; }

int smtpc__dkim_canon_field(smtpc__buf *out, int canon, const char *f, size_t n, bool crlf)
{
    if (canon == SMTPC_DKIM_SIMPLE) {
        if (!crlf && n >= 2 && f[n - 2] == '\r' && f[n - 1] == '\n') n -= 2;
        return smtpc__buf_append(out, f, n);
    }
    /* relaxed: lower-case name, no WSP around the colon, unfolded, WSP runs
     * as one SP, none at the ends of the value. */
    const char *colon = memchr(f, ':', n);
    if (!colon) return SMTPC_EINVAL;
    size_t nl = (size_t)(colon - f);
    while (nl && (f[nl - 1] == ' ' || f[nl - 1] == '\t')) nl--;
    int rc = smtpc__buf_reserve(out, n + 2);
    if (rc) return rc;
    uint8_t *o = out->data + out->len;
    size_t k = 0;
    for (size_t i = 0; i < nl; i++) o[k++] = to_lower((uint8_t)f[i]);
    o[k++] = ':';
    size_t vstart = k;
    bool wsp = false;
    for (size_t i = (size_t)(colon - f) + 1; i < n; i++) {
        uint8_t c = (uint8_t)f[i];
        if (c == '\r' && i + 1 < n && f[i + 1] == '\n') continue;
        if (c == '\n') continue;
        if (c == ' ' || c == '\t') {
            wsp = true;
            continue;
        }
        if (wsp && k > vstart) o[k++] = ' ';
        wsp = false;
        o[k++] = c;
    }
    if (crlf) {
        o[k++] = '\r';
        o[k++] = '\n';
    }
    out->len += k;
    return 0;
}

static bool name_is(const char *a, size_t an, const char *b, size_t bn)
{
    if (an != bn) return false;
    for (size_t i = 0; i < an; i++)
        if (to_lower((uint8_t)a[i]) != to_lower((uint8_t)b[i])) return false;
    return true;
}

int smtpc__dkim_canon_selected(smtpc__buf *out, const smtpc__dkim_hdrs *h, int canon,
                               const char *const *names, const size_t *lens, size_t nn,
                               bool *used)
{
    for (size_t j = 0; j < nn; j++) {
        for (size_t i = h->n; i-- > 0;) {
            if (used[i] || !name_is(smtpc__dkim_field_ptr(h, i), h->f[i].name_len, names[j], lens[j]))
                continue;
            used[i] = true;
            int rc = smtpc__dkim_canon_field(out, canon, smtpc__dkim_field_ptr(h, i), h->f[i].len, true);
            if (rc) return rc;
            break;
        }
    }
    return 0;
}

/* ======================================================================
 * tag=value lists
 * ====================================================================== */

static bool is_fws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

int smtpc__dkim_tags_parse(const char *s, size_t n, smtpc__dkim_tag *tags)
{
    int nt = 0;
    size_t i = 0;
    while (i < n) {
        while (i < n && is_fws(s[i])) i++;
        if (i == n) break; /* a trailing ';' is allowed */
        size_t ns = i;
        while (i < n && ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                         (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            i++;
        size_t nlen = i - ns;
        if (!nlen) return -1;
        while (i < n && is_fws(s[i])) i++;
        if (i == n || s[i] != '=') return -1;
        i++;
        size_t eq = i;
        while (i < n && is_fws(s[i])) i++;
        size_t vs = i;
        const char *semi = memchr(s + i, ';', n - i);
        size_t ve = semi ? (size_t)(semi - s) : n;
        i = semi ? ve + 1 : n;
        while (ve > vs && is_fws(s[ve - 1])) ve--;
        for (int k = 0; k < nt; k++)
            if (tags[k].name_len == nlen && !memcmp(tags[k].name, s + ns, nlen)) return -1;
        if (nt == SMTPC__DKIM_MAX_TAGS) return -1;
        tags[nt++] = (smtpc__dkim_tag){.name = s + ns, .name_len = nlen, .val = s + vs,
                                       .val_len = ve - vs, .eq_end = eq};
    }
    return nt;
}

const smtpc__dkim_tag *smtpc__dkim_tag_get(const smtpc__dkim_tag *tags, int n, const char *name)
{
    size_t l = strlen(name);
    for (int i = 0; i < n; i++)
        if (tags[i].name_len == l && !memcmp(tags[i].name, name, l)) return &tags[i];
    return NULL;
}

size_t smtpc__dkim_strip_fws(char *out, const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!is_fws(s[i])) out[k++] = s[i];
    return k;
}
