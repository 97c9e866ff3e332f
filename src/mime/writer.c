/* The pull writer. At creation the message is laid out as a list of items:
 * literal bytes (headers, boundaries, QP-encoded text) and base64 streams
 * (memory, files, callbacks). Reading walks the list; a stream is encoded
 * one block at a time, so memory stays bounded whatever the part sizes. */
#include "mime.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define IN_BLOCK (57 * 1024) /* whole base64 lines */
#define OUT_BLOCK (78 * 1024)

enum { IT_LIT, IT_EXT, IT_B64, IT_RAW };
enum { CTE_7BIT, CTE_8BIT, CTE_QP, CTE_B64 };

typedef struct item {
    int kind;
    const uint8_t *ext; /* IT_EXT */
    size_t off, len;    /* IT_LIT: range of w->lit; IT_EXT: len */
    smtpc__part *p;     /* IT_B64 */
} item;

struct smtpc_message_writer {
    smtpc_message *m;
    unsigned flags;
    smtpc__errmsg err;
    smtpc__buf lit;
    item *it;
    size_t nit, capit;
    size_t cur, pos;
    int64_t total;
    int failed;
    /* stream state of the current IT_B64 item */
    bool active, src_eof, spooling;
    bool raw_cr, raw_nl; /* IT_RAW: last input byte was CR; output ends with CRLF */
    int fd;
    uint64_t got;
    uint8_t *in, *out;
    size_t outoff, outlen;
};

/* ------------------------------------------------------------- layout */

static int add_item(smtpc_message_writer *w, item it)
{
    /* merge consecutive literals */
    if (it.kind == IT_LIT && w->nit && w->it[w->nit - 1].kind == IT_LIT &&
        w->it[w->nit - 1].off + w->it[w->nit - 1].len == it.off) {
        w->it[w->nit - 1].len += it.len;
        return 0;
    }
    if (w->nit == w->capit) {
        size_t nc = w->capit ? w->capit * 2 : 16;
        item *v = realloc(w->it, nc * sizeof *v);
        if (!v) return SMTPC_ENOMEM;
        w->it = v;
        w->capit = nc;
    }
    w->it[w->nit++] = it;
    return 0;
}

/* Everything appended to w->lit since `mark` becomes a literal item. */
static int flush_lit(smtpc_message_writer *w, size_t *mark)
{
    size_t end = w->lit.len;
    if (end > *mark) {
        int rc = add_item(w, (item){IT_LIT, NULL, *mark, end - *mark, NULL});
        if (rc) return rc;
    }
    *mark = end;
    return 0;
}

static int choose_cte(const smtpc__part *p, bool eightbit)
{
    if (p->src != SRC_MEM || (!p->is_text && !p->is_rfc822)) return CTE_B64;
    size_t high = 0, maxline = 0, line = 0;
    bool nul = false;
    for (size_t i = 0; i < p->len; i++) {
        uint8_t c = p->data[i];
        if (c == '\r' && i + 1 < p->len && p->data[i + 1] == '\n') {
            if (line > maxline) maxline = line;
            line = 0;
            i++;
            continue;
        }
        line++;
        if (c >= 0x80) high++;
        if (c == 0 || c == '\r' || c == '\n') nul = true;
    }
    if (line > maxline) maxline = line;
    bool lines_ok = maxline <= 998 && !nul;
    /* 7bit for ASCII with short lines (RFC 5322's 78); longer ASCII lines
     * are legal up to 998 but relays rewrap them, so QP protects them
     * unless the server takes 8BITMIME (nothing rewraps there). */
    if (lines_ok && !high && (maxline <= 78 || eightbit || p->is_rfc822)) return CTE_7BIT;
    if (lines_ok && high && eightbit) return CTE_8BIT;
    if (lines_ok && !high && !p->is_text) return CTE_7BIT;
    if (p->is_rfc822) return CTE_B64; /* documented fallback */
    return high * 6 < p->len ? CTE_QP : CTE_B64;
}

static const char *cte_name(int c)
{
    return c == CTE_7BIT ? "7bit" : c == CTE_8BIT ? "8bit" : c == CTE_QP ? "quoted-printable" : "base64";
}

static bool param_plain(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n > max) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') return false;
    }
    return !(strstr(s, "=?") != NULL);
}

/* ; name="value"  (plain ASCII) or RFC 2231 continuations, plus the RFC 2047
 * form in `alt2047` when given (for Content-Type's name=). */
static int put_filename_param(smtpc__hdr *h, const char *param, const char *v, bool rfc2231)
{
    smtpc__buf tmp;
    smtpc__buf_init(&tmp, 0);
    int rc = 0;
    if (param_plain(v, 60)) {
        rc = smtpc__buf_printf(&tmp, "%s=\"%s\"", param, v);
        if (!rc) rc = smtpc__buf_append(&tmp, "", 1);
        if (!rc) rc = smtpc__hdr_tok(h, " ", 1, (const char *)tmp.data, tmp.len - 1);
        smtpc__buf_free(&tmp);
        return rc;
    }
    if (!rfc2231) {
        /* name="=?utf-8?B?...?=": one quoted string of encoded words */
        size_t n = strlen(v);
        rc = smtpc__buf_printf(&tmp, "%s=\"", param);
        for (size_t i = 0; i < n && !rc;) {
            size_t j = i, j3 = i;
            while (j < n) {
                size_t sl = smtpc__utf8_seqlen((const uint8_t *)v + j, n - j);
                if (j + sl - i > 45) break;
                j += sl;
                if ((j - i) % 3 == 0) j3 = j;
            }
            if (j < n && j3 > i) j = j3; /* no mid-sequence padding (see header.c) */
            char enc[64];
            smtpc__b64_encode(enc, (const uint8_t *)v + i, j - i);
            rc = smtpc__buf_printf(&tmp, "%s=?utf-8?B?%.*s?=", i ? " " : "",
                                   (int)smtpc__b64_encoded_len(j - i), enc);
            i = j;
        }
        if (!rc) rc = smtpc__buf_append(&tmp, "\"", 1);
        /* fold inside the quoted string is not allowed: emit pieces joined by
         * spaces, which are part of the value (between encoded words they
         * are ignored by decoders) */
        if (!rc) {
            const char *s = (const char *)tmp.data;
            size_t len = tmp.len, i = 0;
            bool first = true;
            while (i < len && !rc) {
                size_t j = i;
                while (j < len && s[j] != ' ') j++;
                rc = smtpc__hdr_tok(h, " ", 1, s + i, j - i);
                SMTPC__UNUSED(first);
                first = false;
                i = j + 1;
            }
        }
        smtpc__buf_free(&tmp);
        return rc;
    }
    /* RFC 2231: param*0*=utf-8''%XX...; param*1*=... */
    static const char hexd[] = "0123456789ABCDEF";
    size_t n = strlen(v), i = 0;
    int seg = 0;
    while (i < n && !rc) {
        smtpc__buf_reset(&tmp);
        rc = smtpc__buf_printf(&tmp, "%s*%d*=%s", param, seg, seg == 0 ? "utf-8''" : "");
        while (i < n && !rc && tmp.len < 70) {
            unsigned char c = (unsigned char)v[i];
            if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '.' || c == '-' || c == '_') {
                rc = smtpc__buf_append(&tmp, &v[i], 1);
            } else {
                char e[3] = {'%', hexd[c >> 4], hexd[c & 15]};
                rc = smtpc__buf_append(&tmp, e, 3);
            }
            i++;
        }
        if (!rc && i < n) rc = smtpc__buf_append(&tmp, ";", 1);
        if (!rc) rc = smtpc__hdr_tok(h, " ", 1, (const char *)smtpc__bptr(&tmp), smtpc__buf_size(&tmp));
        seg++;
    }
    smtpc__buf_free(&tmp);
    return rc;
}

static int leaf(smtpc_message_writer *w, smtpc__part *p, size_t *mark)
{
    smtpc__buf *b = &w->lit;
    smtpc__hdr h;
    int cte = choose_cte(p, (w->flags & SMTPC_WRITE_8BITMIME) != 0);
    int rc = smtpc__hdr_begin(&h, b, "Content-Type");
    if (!rc) rc = smtpc__hdr_tok(&h, " ", 1, p->ctype, strlen(p->ctype));
    if (!rc && p->charset) {
        char cs[96];
        snprintf(cs, sizeof cs, "charset=%s", p->charset);
        rc = smtpc__buf_append(b, ";", 1);
        h.col++;
        if (!rc) rc = smtpc__hdr_tok(&h, " ", 1, cs, strlen(cs));
    }
    if (!rc && p->name) {
        rc = smtpc__buf_append(b, ";", 1);
        h.col++;
        if (!rc) rc = put_filename_param(&h, "name", p->name, false);
    }
    if (!rc) rc = smtpc__hdr_end(&h);
    if (!rc) rc = smtpc__buf_printf(b, "Content-Transfer-Encoding: %s\r\n", cte_name(cte));
    if (!rc && p->disposition) {
        rc = smtpc__hdr_begin(&h, b, "Content-Disposition");
        const char *d = p->disposition == 2 ? "inline" : "attachment";
        if (!rc) rc = smtpc__hdr_tok(&h, " ", 1, d, strlen(d));
        if (!rc && p->name) {
            rc = smtpc__buf_append(b, ";", 1);
            h.col++;
            if (!rc) rc = put_filename_param(&h, "filename", p->name, true);
        }
        if (!rc) rc = smtpc__hdr_end(&h);
    }
    if (!rc && p->cid) rc = smtpc__buf_printf(b, "Content-ID: <%s>\r\n", p->cid);
    if (!rc) rc = smtpc__buf_append(b, "\r\n", 2);
    if (rc) return rc;
    switch (cte) {
    case CTE_7BIT:
    case CTE_8BIT:
        if ((rc = flush_lit(w, mark))) return rc;
        if (p->len) rc = add_item(w, (item){IT_EXT, p->data, 0, p->len, NULL});
        return rc;
    case CTE_QP:
        return smtpc__qp_encode(b, p->data, p->len);
    default:
        if ((rc = flush_lit(w, mark))) return rc;
        return add_item(w, (item){IT_B64, NULL, 0, 0, p});
    }
}

enum { E_LEAF, E_MIXED, E_ALT, E_REL };

typedef struct ent {
    int kind;
    smtpc__part *p;
} ent;

static bool has_related(const smtpc_message *m)
{
    if (!m->html) return false;
    for (size_t i = 0; i < m->natts; i++)
        if (m->atts[i]->disposition == 2 && m->atts[i]->cid) return true;
    return false;
}

static bool in_mixed(const smtpc_message *m, const smtpc__part *p)
{
    return !(p->disposition == 2 && p->cid && m->html);
}

static int emit(smtpc_message_writer *w, ent e, size_t *mark, int depth);

static int multipart(smtpc_message_writer *w, const char *sub, const char *extra, char tag,
                     const ent *kids, size_t nk, size_t *mark, int depth)
{
    smtpc__buf *b = &w->lit;
    char bnd[64];
    snprintf(bnd, sizeof bnd, "%s_%c%d", w->m->boundary, tag, depth & 7);
    int rc = smtpc__buf_printf(b, "Content-Type: multipart/%s;%s\r\n boundary=\"%s\"\r\n\r\n", sub,
                               extra ? extra : "", bnd);
    for (size_t i = 0; i < nk && !rc; i++) {
        rc = smtpc__buf_printf(b, "%s--%s\r\n", i ? "\r\n" : "", bnd);
        if (!rc) rc = emit(w, kids[i], mark, depth + 1);
    }
    if (!rc) rc = smtpc__buf_printf(b, "\r\n--%s--\r\n", bnd);
    return rc;
}

static int emit(smtpc_message_writer *w, ent e, size_t *mark, int depth)
{
    smtpc_message *m = w->m;
    if (e.kind == E_LEAF) return leaf(w, e.p, mark);
    size_t cap = m->natts + m->nalts + 4;
    ent *k = malloc(cap * sizeof *k);
    if (!k) return SMTPC_ENOMEM;
    size_t n = 0;
    int rc = 0;
    if (e.kind == E_MIXED) {
        k[n++] = (ent){E_ALT, NULL};
        for (size_t i = 0; i < m->natts; i++)
            if (in_mixed(m, m->atts[i])) k[n++] = (ent){E_LEAF, m->atts[i]};
        rc = multipart(w, "mixed", NULL, 'm', k, n, mark, depth);
    } else if (e.kind == E_ALT) {
        if (m->text) k[n++] = (ent){E_LEAF, m->text};
        for (size_t i = 0; i < m->nalts; i++) k[n++] = (ent){E_LEAF, m->alts[i]};
        if (m->html) k[n++] = has_related(m) ? (ent){E_REL, NULL} : (ent){E_LEAF, m->html};
        if (n == 1)
            rc = emit(w, k[0], mark, depth);
        else
            rc = multipart(w, "alternative", NULL, 'a', k, n, mark, depth);
    } else {
        k[n++] = (ent){E_LEAF, m->html};
        for (size_t i = 0; i < m->natts; i++)
            if (!in_mixed(m, m->atts[i])) k[n++] = (ent){E_LEAF, m->atts[i]};
        rc = multipart(w, "related", " type=\"text/html\";", 'r', k, n, mark, depth);
    }
    free(k);
    return rc;
}

static int addr_hdr(smtpc_message_writer *w, const char *name, smtpc_address *const *v, size_t n)
{
    if (!n) return 0;
    bool utf8 = (w->flags & SMTPC_WRITE_SMTPUTF8) != 0;
    smtpc__hdr h;
    int rc = smtpc__hdr_begin(&h, &w->lit, name);
    smtpc__buf t;
    smtpc__buf_init(&t, 0);
    for (size_t i = 0; i < n && !rc; i++) {
        const smtpc_address *a = v[i];
        const char *g = a->group;
        bool gstart = g && (i == 0 || !v[i - 1]->group || strcmp(v[i - 1]->group, g) != 0);
        bool gend = g && (i + 1 == n || !v[i + 1]->group || strcmp(v[i + 1]->group, g) != 0);
        if (gstart) {
            rc = smtpc__hdr_phrase(&h, g, strlen(g), utf8, false);
            if (!rc) rc = smtpc__hdr_tok(&h, "", 0, ":", 1);
        }
        if (!rc && a->display) rc = smtpc__hdr_phrase(&h, a->display, strlen(a->display), utf8, false);
        if (rc) break;
        smtpc__buf_reset(&t);
        char *f = NULL;
        /* the addr-spec part of the formatted address */
        smtpc_address tmp = *a;
        tmp.display = NULL;
        f = smtpc_address_format(&tmp, utf8 ? SMTPC_FORMAT_UTF8 : 0);
        if (!f) {
            rc = SMTPC_ENOMEM;
            break;
        }
        rc = smtpc__buf_printf(&t, "%s%s%s%s%s", a->display ? "<" : "", f, a->display ? ">" : "",
                               gend ? ";" : "", i + 1 < n ? "," : "");
        free(f);
        if (!rc) rc = smtpc__hdr_tok(&h, " ", 1, (const char *)smtpc__bptr(&t), smtpc__buf_size(&t));
    }
    smtpc__buf_free(&t);
    if (!rc) rc = smtpc__hdr_end(&h);
    return rc;
}

static bool find_mem(const void *hay, size_t hn, const void *needle, size_t nn)
{
    const uint8_t *h = hay, *e;
    if (nn == 0 || hn < nn) return false;
    e = h + hn - nn + 1;
    while (h < e) {
        const uint8_t *q = memchr(h, *(const uint8_t *)needle, (size_t)(e - h));
        if (!q) return false;
        if (memcmp(q, needle, nn) == 0) return true;
        h = q + 1;
    }
    return false;
}

static int boundary_collides(const smtpc_message *m, const char *b)
{
    size_t bl = strlen(b);
    const smtpc__part *ps[2] = {m->text, m->html};
    for (int i = 0; i < 2; i++)
        if (ps[i] && find_mem(ps[i]->data, ps[i]->len, b, bl)) return 1;
    for (size_t i = 0; i < m->nalts; i++)
        if (m->alts[i]->data && find_mem(m->alts[i]->data, m->alts[i]->len, b, bl)) return 1;
    for (size_t i = 0; i < m->natts; i++)
        if (m->atts[i]->src == SRC_MEM && m->atts[i]->is_rfc822 &&
            find_mem(m->atts[i]->data, m->atts[i]->len, b, bl))
            return 1;
    return 0;
}

int smtpc__message_freeze(smtpc_message *m)
{
    if (m->frozen) return 0;
    int64_t t = m->date_set ? m->date : (int64_t)time(NULL);
    smtpc__rfc5322_date(m->date_str, sizeof m->date_str, t);
    if (!m->msgid && m->from) {
        char r[25];
        if (smtpc__random_hex(r, 24)) return smtpc__err(&m->err, SMTPC_EIO, "no randomness");
        size_t n = strlen(m->from->domain_ace) + 64;
        m->msgid = malloc(n);
        if (!m->msgid) return smtpc__err(&m->err, SMTPC_ENOMEM, "out of memory");
        const char *d = m->from->domain_ace;
        if (d[0] == '[') d = "localhost.localdomain";
        snprintf(m->msgid, n, "<%s.%lld@%s>", r, (long long)t, d);
    }
    /* "=_" cannot occur in base64 or quoted-printable output; raw parts
     * are checked. */
    for (int tries = 0;; tries++) {
        char r[25];
        if (smtpc__random_hex(r, 24)) return smtpc__err(&m->err, SMTPC_EIO, "no randomness");
        snprintf(m->boundary, sizeof m->boundary, "=_smtpc_%s", r);
        if (!boundary_collides(m, m->boundary)) break;
        if (tries > 100) return smtpc__err(&m->err, SMTPC_EIO, "cannot find a boundary");
    }
    m->frozen = true;
    return 0;
}

static int add_lit(smtpc_message_writer *w, const void *p, size_t n)
{
    size_t mark = w->lit.len;
    if (smtpc__buf_append(&w->lit, p, n)) return SMTPC_ENOMEM;
    return flush_lit(w, &mark);
}

/* A loaded message (load.c): its raw headers, then its body streamed
 * through with line ends normalised. */
static int layout_loaded(smtpc_message_writer *w)
{
    smtpc_message *m = w->m;
    int rc = add_lit(w, smtpc__bptr(&m->raw_headers), smtpc__buf_size(&m->raw_headers));
    if (!rc) rc = add_item(w, (item){IT_RAW, NULL, 0, 0, m->raw_body});
    return rc;
}

static int layout(smtpc_message_writer *w)
{
    smtpc_message *m = w->m;
    bool utf8 = (w->flags & SMTPC_WRITE_SMTPUTF8) != 0;
    smtpc__buf *b = &w->lit;
    size_t mark = 0;
    int rc = smtpc__buf_printf(b, "Date: %s\r\n", m->date_str);
    if (!rc) rc = addr_hdr(w, "From", &m->from, 1);
    if (!rc && m->sender) rc = addr_hdr(w, "Sender", &m->sender, 1);
    if (!rc) rc = addr_hdr(w, "Reply-To", m->reply_to.v, m->reply_to.n);
    if (!rc) rc = addr_hdr(w, "To", m->to.v, m->to.n);
    if (!rc) rc = addr_hdr(w, "Cc", m->cc.v, m->cc.n);
    if (!rc && m->subject) {
        smtpc__hdr h;
        rc = smtpc__hdr_begin(&h, b, "Subject");
        if (!rc) rc = smtpc__hdr_unstructured(&h, m->subject, strlen(m->subject), utf8);
        if (!rc) rc = smtpc__hdr_end(&h);
    }
    if (!rc && m->msgid) rc = smtpc__buf_printf(b, "Message-ID: %s\r\n", m->msgid);
    const char *ids[2] = {m->in_reply_to, m->references};
    const char *idn[2] = {"In-Reply-To", "References"};
    for (int k = 0; k < 2 && !rc; k++) {
        if (!ids[k]) continue;
        smtpc__hdr h;
        rc = smtpc__hdr_begin(&h, b, idn[k]);
        const char *s = ids[k];
        while (*s && !rc) {
            const char *e = strchr(s, ' ');
            size_t l = e ? (size_t)(e - s) : strlen(s);
            rc = smtpc__hdr_tok(&h, " ", 1, s, l);
            s += l + (e ? 1 : 0);
        }
        if (!rc) rc = smtpc__hdr_end(&h);
    }
    if (!rc && m->priority == SMTPC_PRIORITY_HIGH)
        rc = smtpc__buf_append_str(b, "X-Priority: 1 (Highest)\r\nImportance: high\r\n");
    if (!rc && m->priority == SMTPC_PRIORITY_LOW)
        rc = smtpc__buf_append_str(b, "X-Priority: 5 (Lowest)\r\nImportance: low\r\n");
    for (size_t i = 0; i < m->nhdrs && !rc; i++) {
        smtpc__hdr h;
        rc = smtpc__hdr_begin(&h, b, m->hdrs[i].name);
        if (!rc) rc = smtpc__hdr_unstructured(&h, m->hdrs[i].value, strlen(m->hdrs[i].value), utf8);
        if (!rc) rc = smtpc__hdr_end(&h);
    }
    if (!rc) rc = smtpc__buf_append_str(b, "MIME-Version: 1.0\r\n");
    if (rc) return rc;
    bool mixed = false;
    for (size_t i = 0; i < m->natts; i++)
        if (in_mixed(m, m->atts[i])) mixed = true;
    smtpc__part empty = {0};
    smtpc__part *saved_text = m->text;
    if (!m->text && !m->html && m->nalts == 0) {
        /* no body at all: an empty text/plain part */
        empty.src = SRC_MEM;
        empty.data = (uint8_t *)"";
        empty.ctype = (char *)"text/plain";
        empty.charset = (char *)"utf-8";
        empty.is_text = true;
        m->text = &empty;
    }
    rc = emit(w, (ent){mixed ? E_MIXED : E_ALT, NULL}, &mark, 0);
    m->text = saved_text;
    if (rc) return rc;
    /* a single-part text message must still end with CRLF */
    if (w->lit.len == mark && w->nit && w->it[w->nit - 1].kind == IT_EXT) {
        const item *l = &w->it[w->nit - 1];
        if (l->len < 2 || l->ext[l->len - 2] != '\r' || l->ext[l->len - 1] != '\n')
            rc = smtpc__buf_append(b, "\r\n", 2);
    } else if (w->lit.len > mark && w->lit.len - mark >= 1 &&
               !(w->lit.len >= 2 && w->lit.data[w->lit.len - 2] == '\r' &&
                 w->lit.data[w->lit.len - 1] == '\n')) {
        rc = smtpc__buf_append(b, "\r\n", 2);
    }
    if (!rc) rc = flush_lit(w, &mark);
    /* an empty text/plain points at the stack: it emitted no IT_EXT (len 0) */
    return rc;
}

static int64_t item_size(const item *it)
{
    if (it->kind == IT_RAW) return -1; /* line ends may change */
    if (it->kind != IT_B64) return (int64_t)it->len;
    const smtpc__part *p = it->p;
    if (p->src == SRC_MEM) return (int64_t)smtpc__b64_lines_len(p->len);
    if (p->spool_state == SPOOL_DONE) return (int64_t)smtpc__b64_lines_len((size_t)p->spool_len);
    if (p->size < 0) return -1;
    return (int64_t)smtpc__b64_lines_len((size_t)p->size);
}

int smtpc_message_writer_new(smtpc_message_writer **out, smtpc_message *m, unsigned flags)
{
    if (!out || !m) return SMTPC_EINVAL;
    smtpc__err_clear(&m->err);
    if (!m->loaded) {
        if (!m->from) return smtpc__err(&m->err, SMTPC_EINVAL, "no From address");
        if (!(flags & SMTPC_WRITE_SMTPUTF8) && smtpc_message_needs_smtputf8(m))
            return smtpc__err(&m->err, SMTPC_EUNSUPPORTED,
                              "an address has a non-ASCII local part: SMTPUTF8 is required");
    }
    int rc = smtpc__message_freeze(m);
    if (rc) return rc;
    smtpc_message_writer *w = calloc(1, sizeof *w);
    if (!w) return smtpc__err(&m->err, SMTPC_ENOMEM, "out of memory");
    w->m = m;
    w->flags = flags;
    w->fd = -1;
    smtpc__buf_init(&w->lit, 0);
    rc = m->loaded ? layout_loaded(w) : layout(w);
    if (rc) {
        smtpc_message_writer_free(w);
        return smtpc__err(&m->err, rc, "cannot lay out the message: %s", smtpc_strerror(rc));
    }
    w->total = 0;
    for (size_t i = 0; i < w->nit; i++) {
        int64_t s = item_size(&w->it[i]);
        if (s < 0) {
            w->total = -1;
            break;
        }
        w->total += s;
    }
    *out = w;
    return 0;
}

int64_t smtpc_message_writer_size(const smtpc_message_writer *w) { return w ? w->total : -1; }

const char *smtpc_message_writer_errmsg(const smtpc_message_writer *w) { return w ? w->err.text : ""; }

static void stream_close(smtpc_message_writer *w)
{
    if (w->fd >= 0) close(w->fd);
    w->fd = -1;
    w->active = false;
}

void smtpc_message_writer_free(smtpc_message_writer *w)
{
    if (!w) return;
    stream_close(w);
    if (w->spooling && w->cur < w->nit) {
        /* an unfinished first read of a callback: its spool is unusable */
        smtpc__part *p = w->it[w->cur].p;
        if (p && p->spool_state == SPOOL_PARTIAL && p->spool) {
            fclose(p->spool);
            p->spool = NULL;
        }
    }
    smtpc__buf_free(&w->lit);
    free(w->it);
    free(w->in);
    free(w->out);
    free(w);
}

/* Reads up to want bytes of the current stream into dst; returns count,
 * 0 at the end, or an error. Fills completely unless at the end. */
static ssize_t src_fill(smtpc_message_writer *w, smtpc__part *p, uint8_t *dst, size_t want)
{
    size_t got = 0;
    while (got < want) {
        ssize_t k;
        if (w->fd >= 0) {
            k = read(w->fd, dst + got, want - got);
            if (k < 0) {
                if (errno == EINTR) continue;
                return smtpc__err(&w->err, SMTPC_EIO, "reading %s: %s",
                                  p->path ? p->path : "spool file", strerror(errno));
            }
        } else {
            k = p->cb(p->ud, dst + got, want - got);
            if (k < 0) return smtpc__err(&w->err, (int)k, "attachment callback failed: %s", smtpc_strerror((int)k));
            if ((size_t)k > want - got) return smtpc__err(&w->err, SMTPC_EINVAL, "attachment callback overran its buffer");
            if (k > 0 && p->spool && fwrite(dst + got, 1, (size_t)k, p->spool) != (size_t)k)
                return smtpc__err(&w->err, SMTPC_EIO, "writing spool file: %s", strerror(errno));
        }
        if (k == 0) break;
        got += (size_t)k;
    }
    return (ssize_t)got;
}

static int stream_open(smtpc_message_writer *w, smtpc__part *p)
{
    w->got = 0;
    w->src_eof = false;
    w->outoff = w->outlen = 0;
    w->spooling = false;
    w->raw_nl = true;
    w->raw_cr = false;
    if (!w->out && !(w->out = malloc(OUT_BLOCK))) return smtpc__err(&w->err, SMTPC_ENOMEM, "out of memory");
    if (p->src != SRC_MEM && !w->in && !(w->in = malloc(IN_BLOCK)))
        return smtpc__err(&w->err, SMTPC_ENOMEM, "out of memory");
    if (p->src == SRC_FILE) {
        w->fd = open(p->path, O_RDONLY | O_CLOEXEC);
        if (w->fd < 0) return smtpc__err(&w->err, SMTPC_EIO, "opening %s: %s", p->path, strerror(errno));
    } else if (p->src == SRC_CB && !p->cb) {
        /* a loaded message read to its end with the headers */
    } else if (p->src == SRC_CB) {
        if (p->spool_state == SPOOL_DONE) {
            w->fd = dup(fileno(p->spool));
            if (w->fd < 0 || lseek(w->fd, 0, SEEK_SET) != 0)
                return smtpc__err(&w->err, SMTPC_EIO, "spool file: %s", strerror(errno));
        } else if (p->spool_state == SPOOL_PARTIAL) {
            return smtpc__err(&w->err, SMTPC_ESTATE,
                              "attachment callback already consumed (an earlier write was unfinished or used SMTPC_WRITE_NO_SPOOL)");
        } else if (w->flags & SMTPC_WRITE_NO_SPOOL) {
            p->spool_state = SPOOL_PARTIAL; /* consumed: cannot be replayed */
        } else {
            p->spool = tmpfile();
            if (!p->spool) return smtpc__err(&w->err, SMTPC_EIO, "cannot create spool file: %s", strerror(errno));
            p->spool_state = SPOOL_PARTIAL;
            w->spooling = true;
        }
    }
    w->active = true;
    return 0;
}

/* Produces the next block of base64 output into w->out. */
static int stream_step(smtpc_message_writer *w, smtpc__part *p)
{
    int64_t expect = p->src == SRC_MEM ? (int64_t)p->len
                     : (p->src == SRC_CB && p->spool_state == SPOOL_DONE) ? p->spool_len
                                                                          : p->size;
    if (p->src == SRC_MEM) {
        size_t n = p->len - (size_t)w->got;
        if (n > IN_BLOCK) n = IN_BLOCK;
        w->outlen = smtpc__b64_encode_lines((char *)w->out, p->data + w->got, n);
        w->outoff = 0;
        w->got += n;
        if (w->got == p->len) w->src_eof = true;
        return 0;
    }
    ssize_t k = src_fill(w, p, w->in, IN_BLOCK);
    if (k < 0) return (int)k;
    w->got += (uint64_t)k;
    if (expect >= 0 && w->got > (uint64_t)expect)
        return smtpc__err(&w->err, SMTPC_EIO, "%s grew past its size of %lld bytes",
                          p->path ? p->path : "attachment", (long long)expect);
    if ((size_t)k < IN_BLOCK) {
        w->src_eof = true;
        if (expect >= 0 && w->got != (uint64_t)expect)
            return smtpc__err(&w->err, SMTPC_EIO, "%s gave %llu bytes, expected %lld",
                              p->path ? p->path : "attachment", (unsigned long long)w->got, (long long)expect);
        if (w->spooling) {
            if (fflush(p->spool) != 0) return smtpc__err(&w->err, SMTPC_EIO, "spool file: %s", strerror(errno));
            p->spool_state = SPOOL_DONE;
            p->spool_len = (int64_t)w->got;
            w->spooling = false;
        }
    }
    w->outlen = smtpc__b64_encode_lines((char *)w->out, w->in, (size_t)k);
    w->outoff = 0;
    return 0;
}

/* IT_RAW: the body of a loaded message, line ends normalised to CRLF. The
 * in-memory prefix (read with the headers) comes first, then the stream. */
static int raw_step(smtpc_message_writer *w, smtpc__part *p)
{
    const size_t chunk = OUT_BLOCK / 2 - 2;
    const uint8_t *src;
    size_t n;
    if (w->got < p->len) {
        src = p->data + w->got;
        n = p->len - (size_t)w->got;
        if (n > chunk) n = chunk;
        w->got += n;
    } else if (!p->cb && w->fd < 0) {
        n = 0;
        src = NULL;
    } else {
        if (!w->in && !(w->in = malloc(IN_BLOCK))) return smtpc__err(&w->err, SMTPC_ENOMEM, "out of memory");
        ssize_t k = src_fill(w, p, w->in, chunk);
        if (k < 0) return (int)k;
        src = w->in;
        n = (size_t)k;
        w->got += n;
    }
    uint8_t *d = w->out;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = src[i];
        if (c == '\n' && w->raw_cr) {
            w->raw_cr = false;
            continue;
        }
        w->raw_cr = c == '\r';
        if (c == '\r' || c == '\n') {
            *d++ = '\r';
            *d++ = '\n';
            w->raw_nl = true;
        } else {
            *d++ = c;
            w->raw_nl = false;
        }
    }
    if (n == 0) {
        w->src_eof = true;
        if (w->spooling) {
            if (fflush(p->spool) != 0) return smtpc__err(&w->err, SMTPC_EIO, "spool file: %s", strerror(errno));
            p->spool_state = SPOOL_DONE;
            p->spool_len = (int64_t)(w->got - p->len);
            w->spooling = false;
        }
        if (!w->raw_nl) {
            *d++ = '\r';
            *d++ = '\n';
        }
    }
    w->outoff = 0;
    w->outlen = (size_t)(d - w->out);
    return 0;
}

ssize_t smtpc_message_writer_read(void *wv, void *buf, size_t len)
{
    smtpc_message_writer *w = wv;
    if (!w || (!buf && len)) return SMTPC_EINVAL;
    if (w->failed) return w->failed;
    uint8_t *dst = buf;
    size_t done = 0;
    while (done < len && w->cur < w->nit) {
        item *it = &w->it[w->cur];
        if (it->kind == IT_LIT || it->kind == IT_EXT) {
            const uint8_t *src = it->kind == IT_LIT ? w->lit.data + it->off : it->ext;
            size_t n = it->len - w->pos;
            if (n > len - done) n = len - done;
            memcpy(dst + done, src + w->pos, n);
            done += n;
            w->pos += n;
            if (w->pos == it->len) {
                w->cur++;
                w->pos = 0;
            }
            continue;
        }
        if (!w->active) {
            int rc = stream_open(w, it->p);
            if (rc) {
                w->failed = rc;
                break;
            }
        }
        if (w->outoff == w->outlen) {
            if (w->src_eof) {
                stream_close(w);
                w->cur++;
                continue;
            }
            int rc = it->kind == IT_B64 ? stream_step(w, it->p) : raw_step(w, it->p);
            if (rc) {
                w->failed = rc;
                break;
            }
            continue;
        }
        size_t n = w->outlen - w->outoff;
        if (n > len - done) n = len - done;
        memcpy(dst + done, w->out + w->outoff, n);
        done += n;
        w->outoff += n;
    }
    if (done) return (ssize_t)done;
    return w->failed;
}
