/* Header field output: folding at 78 columns (never past 998), RFC 2047
 * encoded words (B or Q, whichever is shorter), and an RFC 2047 decoder. */
#include "mime.h"

#include <stdlib.h>
#include <string.h>

#define FOLD_AT 78
#define EW_MAX 75          /* RFC 2047 limit on one encoded word */
#define EW_OVERHEAD 12     /* "=?utf-8?B?" + "?=" */
#define PLAIN_WORD_MAX 900 /* longer plain words are encoded so lines stay < 998 */
#define WS_RUN_MAX 40      /* longer whitespace runs go inside encoded words */

bool smtpc__utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + len > n) return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return false;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

size_t smtpc__utf8_seqlen(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    size_t len = c < 0xc0 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
    return len > n ? 1 : len;
}

/* ---------------------------------------------------------------- folding */

int smtpc__hdr_begin(smtpc__hdr *h, smtpc__buf *out, const char *name)
{
    h->out = out;
    size_t n = strlen(name);
    if (smtpc__buf_append(out, name, n) || smtpc__buf_append(out, ":", 1)) return SMTPC_ENOMEM;
    h->col = n + 1;
    h->line_start = h->col;
    return 0;
}

int smtpc__hdr_tok(smtpc__hdr *h, const char *ws, size_t wslen, const char *tok, size_t toklen)
{
    if (wslen && h->col > h->line_start && h->col + wslen + toklen > FOLD_AT) {
        if (smtpc__buf_append(h->out, "\r\n", 2)) return SMTPC_ENOMEM;
        h->col = 0;
        h->line_start = wslen;
    }
    if (smtpc__buf_append(h->out, ws, wslen) || smtpc__buf_append(h->out, tok, toklen))
        return SMTPC_ENOMEM;
    h->col += wslen + toklen;
    return 0;
}

int smtpc__hdr_end(smtpc__hdr *h)
{
    return smtpc__buf_append(h->out, "\r\n", 2) ? SMTPC_ENOMEM : 0;
}

/* ---------------------------------------------------------- encoded words */

static const char hexd[] = "0123456789ABCDEF";

static bool q_literal(uint8_t c, bool phrase)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    if (phrase) return c == '!' || c == '*' || c == '+' || c == '-' || c == '/';
    return c > 0x20 && c < 0x7f && c != '=' && c != '?' && c != '_' && c != '"' && c != '(' &&
           c != ')' && c != ',';
}

static size_t q_cost(uint8_t c, bool phrase)
{
    return (c == ' ' || q_literal(c, phrase)) ? 1 : 3;
}

int smtpc__hdr_encoded(smtpc__hdr *h, const char *ws0, size_t ws0len, const char *s, size_t n,
                       bool phrase)
{
    const uint8_t *u = (const uint8_t *)s;
    size_t qlen = 0;
    for (size_t i = 0; i < n; i++) qlen += q_cost(u[i], phrase);
    bool useq = qlen <= smtpc__b64_encoded_len(n);
    size_t room = EW_MAX - EW_OVERHEAD;
    size_t i = 0;
    bool first = true;
    char word[EW_MAX + 1];
    while (i < n || first) {
        /* take whole UTF-8 characters while they fit */
        size_t j = i, cost = 0, j3 = i;
        while (j < n) {
            size_t sl = smtpc__utf8_seqlen(u + j, n - j), c = 0;
            if (useq) {
                for (size_t k = 0; k < sl; k++) c += q_cost(u[j + k], phrase);
                if (cost + c > room) break;
            } else {
                if (smtpc__b64_encoded_len(j + sl - i) > room) break;
            }
            cost += c;
            j += sl;
            if ((j - i) % 3 == 0) j3 = j;
        }
        /* A B word that is not the last ends on a multiple of 3 bytes when a
         * character boundary allows: no '=' padding mid-sequence, which
         * GMime (3.2) mis-decodes as it joins adjacent B words. */
        if (!useq && j < n && j3 > i) j = j3;
        size_t w = 0;
        memcpy(word, useq ? "=?utf-8?Q?" : "=?utf-8?B?", 10);
        w = 10;
        if (useq) {
            for (size_t k = i; k < j; k++) {
                uint8_t c = u[k];
                if (c == ' ') {
                    word[w++] = '_';
                } else if (q_literal(c, phrase)) {
                    word[w++] = (char)c;
                } else {
                    word[w++] = '=';
                    word[w++] = hexd[c >> 4];
                    word[w++] = hexd[c & 15];
                }
            }
        } else {
            smtpc__b64_encode(word + w, u + i, j - i);
            w += smtpc__b64_encoded_len(j - i);
        }
        word[w++] = '?';
        word[w++] = '=';
        int rc = first ? smtpc__hdr_tok(h, ws0, ws0len, word, w) : smtpc__hdr_tok(h, " ", 1, word, w);
        if (rc) return rc;
        first = false;
        i = j;
    }
    return 0;
}

static bool is_ws(char c) { return c == ' ' || c == '\t'; }

static bool is_atext_c(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

static bool word_needs_encoding(const char *w, size_t n, bool utf8, bool phrase)
{
    if (n > PLAIN_WORD_MAX) return true;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)w[i];
        if (c < 0x20 || c == 0x7f) return true;
        if (c >= 0x80 && !utf8) return true;
        if (c == '=' && i + 1 < n && w[i + 1] == '?') return true;
        if (c == '?' && i + 1 < n && w[i + 1] == '=') return true;
        if (phrase && c < 0x80 && !is_atext_c(c)) return true;
    }
    return false;
}

typedef struct span {
    size_t ws, wsn; /* whitespace before the word */
    size_t w, wn;
    bool enc;
} span;

/* Words that need it become encoded words (runs of them, with the
 * whitespace between, become one sequence of encoded words); the others are
 * written as they are. Leading, trailing and unusual whitespace goes inside
 * the encoding so that decoding gives back exactly v. ws0 is the separator
 * before the first token. In a phrase, plain words must be atoms and any
 * whitespace other than one space between plain words is encoded. */
static int words(smtpc__hdr *h, const char *ws0, size_t ws0n, const char *v, size_t n, bool utf8, bool phrase)
{
    /* split into (ws, word) spans plus trailing ws */
    size_t cap = 8, cnt = 0, i = 0;
    span *sp = malloc(cap * sizeof *sp);
    if (!sp) return SMTPC_ENOMEM;
    int rc = 0;
    while (i < n) {
        size_t ws = i;
        while (i < n && is_ws(v[i])) i++;
        size_t w = i;
        while (i < n && !is_ws(v[i])) i++;
        if (cnt == cap) {
            span *ns = realloc(sp, (cap *= 2) * sizeof *sp);
            if (!ns) {
                free(sp);
                return SMTPC_ENOMEM;
            }
            sp = ns;
        }
        sp[cnt++] = (span){ws, w - ws, w, i - w, false};
    }
    if (cnt == 0) goto done;
    /* the last span may be pure trailing whitespace */
    size_t trail = 0;
    if (sp[cnt - 1].wn == 0) {
        trail = sp[cnt - 1].wsn;
        cnt--;
    }
    if (cnt == 0) {
        /* all whitespace: encode it */
        rc = smtpc__hdr_encoded(h, ws0, ws0n, v, n, phrase);
        goto done;
    }
    for (size_t k = 0; k < cnt; k++) {
        sp[k].enc = word_needs_encoding(v + sp[k].w, sp[k].wn, utf8, phrase);
        bool odd_ws = phrase ? (sp[k].wsn != 1 || v[sp[k].ws] != ' ') : sp[k].wsn > WS_RUN_MAX;
        if (k > 0 && odd_ws) sp[k].enc = sp[k - 1].enc = true;
    }
    if (sp[0].wsn) sp[0].enc = true;
    if (trail) sp[cnt - 1].enc = true;
    for (size_t k = 0; k < cnt && !rc;) {
        /* the separator before the first word of the value is the single
         * space after the colon; leading whitespace is inside the encoding */
        const char *ws = k == 0 ? ws0 : v + sp[k].ws;
        size_t wsn = k == 0 ? ws0n : sp[k].wsn;
        if (!sp[k].enc) {
            rc = smtpc__hdr_tok(h, ws, wsn, v + sp[k].w, sp[k].wn);
            k++;
            continue;
        }
        size_t e = k;
        while (e + 1 < cnt && sp[e + 1].enc) e++;
        size_t from = k == 0 ? sp[0].ws : sp[k].w;
        size_t to = sp[e].w + sp[e].wn + (e == cnt - 1 ? trail : 0);
        rc = smtpc__hdr_encoded(h, ws, wsn, v + from, to - from, phrase);
        k = e + 1;
    }
done:
    free(sp);
    return rc;
}

int smtpc__hdr_unstructured(smtpc__hdr *h, const char *v, size_t n, bool utf8)
{
    return words(h, " ", 1, v, n, utf8, false);
}

static bool phrase_atoms(const char *v, size_t n)
{
    /* words of atext separated by single spaces */
    if (!n || v[0] == ' ' || v[n - 1] == ' ') return false;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)v[i];
        if (c == ' ') {
            if (v[i + 1] == ' ') return false;
            continue;
        }
        if (c >= 0x80) continue;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("!#$%&'*+-/=?^_`{|}~", c)))
            return false;
    }
    return true;
}

int smtpc__hdr_phrase(smtpc__hdr *h, const char *v, size_t n, bool utf8, bool first)
{
    bool ascii_print = true, has_ew = false;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)v[i];
        if (c < 0x20 || c == 0x7f || (c >= 0x80 && !utf8)) ascii_print = false;
        if (c == '=' && i + 1 < n && v[i + 1] == '?') has_ew = true;
    }
    const char *ws = first ? "" : " ";
    size_t wsn = first ? 0 : 1;
    if (ascii_print && !has_ew && n <= 64) {
        if (phrase_atoms(v, n)) {
            /* word by word so it can fold */
            size_t i = 0;
            bool f = true;
            while (i < n) {
                size_t j = i;
                while (j < n && v[j] != ' ') j++;
                int rc = f ? smtpc__hdr_tok(h, ws, wsn, v + i, j - i) : smtpc__hdr_tok(h, " ", 1, v + i, j - i);
                if (rc) return rc;
                f = false;
                i = j + 1;
            }
            return 0;
        }
        char q[2 * 64 + 3];
        size_t w = 0;
        q[w++] = '"';
        for (size_t i = 0; i < n; i++) {
            if (v[i] == '"' || v[i] == '\\') q[w++] = '\\';
            q[w++] = v[i];
        }
        q[w++] = '"';
        return smtpc__hdr_tok(h, ws, wsn, q, w);
    }
    /* word by word: "=?utf-8?Q?Zo=C3=AB?= Smith"; a run of words needing
     * encoding becomes as few encoded words as fit */
    return words(h, ws, wsn, v, n, utf8, true);
}

/* ---------------------------------------------------------------- decoder */

static int hexv(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Tries to decode one encoded word at s[0..n) (exactly); appends to out. */
static int ew_decode(smtpc__buf *out, const char *s, size_t n, bool *ok)
{
    *ok = false;
    if (n < 8 || s[0] != '=' || s[1] != '?' || s[n - 2] != '?' || s[n - 1] != '=') return 0;
    const char *cs = s + 2, *q1 = memchr(cs, '?', n - 2);
    if (!q1 || q1 + 3 > s + n - 2 || q1[2] != '?') return 0;
    size_t csn = (size_t)(q1 - cs);
    const char *star = memchr(cs, '*', csn); /* RFC 2231 language */
    if (star) csn = (size_t)(star - cs);
    int latin1;
    if ((csn == 5 && smtpc__strncasecmp(cs, "utf-8", 5) == 0) ||
        (csn == 8 && smtpc__strncasecmp(cs, "us-ascii", 8) == 0))
        latin1 = 0;
    else if (csn == 10 && smtpc__strncasecmp(cs, "iso-8859-1", 10) == 0)
        latin1 = 1;
    else
        return 0;
    char enc = q1[1];
    const char *t = q1 + 3;
    size_t tn = (size_t)(s + n - 2 - t);
    smtpc__buf tmp;
    smtpc__buf_init(&tmp, 0);
    if (enc == 'B' || enc == 'b') {
        if (tn % 4) return 0;
        if (smtpc__buf_reserve(&tmp, tn)) return SMTPC_ENOMEM;
        long d = smtpc__b64_decode(tmp.data, t, tn);
        if (d < 0) {
            smtpc__buf_free(&tmp);
            return 0;
        }
        tmp.len = (size_t)d;
    } else if (enc == 'Q' || enc == 'q') {
        for (size_t i = 0; i < tn; i++) {
            char c = t[i];
            if (c == '_') c = ' ';
            else if (c == '=') {
                if (i + 2 >= tn) {
                    smtpc__buf_free(&tmp);
                    return 0;
                }
                int a = hexv(t[i + 1]), b = hexv(t[i + 2]);
                if (a < 0 || b < 0) {
                    smtpc__buf_free(&tmp);
                    return 0;
                }
                c = (char)(a << 4 | b);
                i += 2;
            } else if (c == ' ' || c == '?') {
                smtpc__buf_free(&tmp);
                return 0;
            }
            if (smtpc__buf_append(&tmp, &c, 1)) {
                smtpc__buf_free(&tmp);
                return SMTPC_ENOMEM;
            }
        }
    } else {
        return 0;
    }
    int rc = 0;
    if (!latin1 && (!smtpc__utf8_valid(smtpc__bptr(&tmp), smtpc__buf_size(&tmp)) ||
                    memchr(smtpc__bptr(&tmp), 0, smtpc__buf_size(&tmp)))) {
        smtpc__buf_free(&tmp); /* not text we can carry: keep the word as is */
        return 0;
    }
    if (latin1 && memchr(smtpc__bptr(&tmp), 0, smtpc__buf_size(&tmp))) {
        smtpc__buf_free(&tmp);
        return 0;
    }
    if (latin1) {
        for (size_t i = tmp.off; i < tmp.len && !rc; i++) {
            uint8_t c = tmp.data[i];
            char u[2];
            if (c < 0x80) {
                u[0] = (char)c;
                rc = smtpc__buf_append(out, u, 1);
            } else {
                u[0] = (char)(0xc0 | c >> 6);
                u[1] = (char)(0x80 | (c & 0x3f));
                rc = smtpc__buf_append(out, u, 2);
            }
        }
    } else {
        rc = smtpc__buf_append(out, smtpc__bptr(&tmp), smtpc__buf_size(&tmp));
    }
    smtpc__buf_free(&tmp);
    if (rc) return SMTPC_ENOMEM;
    *ok = true;
    return 0;
}

char *smtpc__rfc2047_decode(const char *s, size_t n)
{
    smtpc__buf out;
    smtpc__buf_init(&out, 0);
    size_t i = 0;
    bool prev_ew = false;
    while (i < n) {
        size_t ws = i;
        while (i < n && is_ws(s[i])) i++;
        size_t wsn = i - ws;
        size_t w = i;
        while (i < n && !is_ws(s[i])) i++;
        size_t wn = i - w;
        size_t mark = out.len;
        bool ok = false;
        if (wn && ew_decode(&out, s + w, wn, &ok)) goto nomem;
        if (ok) {
            /* whitespace between two encoded words is dropped */
            if (!prev_ew && wsn) {
                /* need the ws before the decoded text: rebuild */
                smtpc__buf tmp;
                smtpc__buf_init(&tmp, 0);
                if (smtpc__buf_append(&tmp, smtpc__bptr(&out) + mark, out.len - mark)) {
                    smtpc__buf_free(&tmp);
                    goto nomem;
                }
                out.len = mark;
                if (smtpc__buf_append(&out, s + ws, wsn) ||
                    smtpc__buf_append(&out, smtpc__bptr(&tmp), smtpc__buf_size(&tmp))) {
                    smtpc__buf_free(&tmp);
                    goto nomem;
                }
                smtpc__buf_free(&tmp);
            }
            prev_ew = true;
        } else {
            if (smtpc__buf_append(&out, s + ws, wsn) || smtpc__buf_append(&out, s + w, wn)) goto nomem;
            prev_ew = false;
        }
    }
    if (smtpc__buf_append(&out, "", 1)) goto nomem;
    return (char *)out.data;
nomem:
    smtpc__buf_free(&out);
    return NULL;
}
