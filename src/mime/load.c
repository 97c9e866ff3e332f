/* Loading an existing message (sendmail -t): the envelope comes from its
 * headers, Bcc fields are removed, Date and Message-ID added when missing,
 * and the body is streamed through unchanged except line ends (CRLF).
 * The loader only fills the message (m->loaded, raw_headers, raw_body);
 * writer.c lays it out, so this file needs nothing from the writer. */
#include "mime.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HEADER_LIMIT (1u << 20)

static int lerr(char *eb, size_t el, int code, const char *msg, size_t line)
{
    if (eb && el) {
        if (line)
            snprintf(eb, el, "%s (header line %zu)", msg, line);
        else
            snprintf(eb, el, "%s", msg);
    }
    return code;
}

/* Finds the end of the header block in s[0..n): returns the offset of the
 * first body byte, or 0 if not found yet. Accepts CRLF or bare LF. The
 * search starts at from: s[0..from + 2) holds no end already (a reader
 * that returns a few octets at a time must not cost a scan of the whole
 * block per read). */
static size_t header_end(const uint8_t *s, size_t n, size_t from)
{
    if (n >= 2 && s[0] == '\r' && s[1] == '\n') return 2; /* no headers at all */
    if (n >= 1 && s[0] == '\n') return 1;
    for (size_t i = from; i + 1 < n; i++) {
        if (s[i] != '\n') continue;
        if (s[i + 1] == '\n') return i + 2;
        if (s[i + 1] == '\r' && i + 2 < n && s[i + 2] == '\n') return i + 3;
    }
    return 0;
}

typedef struct field {
    size_t start, end; /* raw bytes of the field, incl. continuation lines, without final EOL */
    size_t colon;
} field;

static int add_addrs(smtpc_address_list *dst, const char *v, size_t n, const char *name, char *eb, size_t el)
{
    char tmp[200];
    smtpc_address_list l = {0};
    /* an empty To: or Cc: is tolerated (some tools write "Cc:") */
    size_t k = 0;
    while (k < n && (v[k] == ' ' || v[k] == '\t')) k++;
    if (k == n) return 0;
    int rc = smtpc__address_parse_n(v, n, 2, &l, tmp, sizeof tmp);
    if (rc) {
        if (eb && el) snprintf(eb, el, "%s: %s", name, tmp);
        return rc;
    }
    for (size_t i = 0; i < l.n; i++) {
        if (smtpc__alist_push(dst, l.v[i])) {
            for (size_t j = i; j < l.n; j++) smtpc_address_free(l.v[j]);
            free(l.v);
            return SMTPC_ENOMEM;
        }
    }
    free(l.v);
    return 0;
}

int smtpc_message_load(smtpc_message **out, ssize_t (*cb)(void *, void *, size_t), void *ud,
                       char *eb, size_t el)
{
    return smtpc_message_load_with(out, cb, ud, 0, eb, el);
}

int smtpc_message_load_with(smtpc_message **out, ssize_t (*cb)(void *, void *, size_t), void *ud,
                            unsigned flags, char *eb, size_t el)
{
    if (!out || !cb) return SMTPC_EINVAL;
    if (eb && el) eb[0] = 0;
    smtpc__buf in;
    smtpc__buf_init(&in, HEADER_LIMIT + 65536);
    size_t body = 0;
    bool eof = false;
    int rc = 0;
    /* The buffer grows by 4 KiB, doubling to 64 KiB, when less than 1 KiB
     * is left; each read fills what is left (at most 64 KiB, so never past
     * the limit). Most header blocks are a few KiB: one allocation, which
     * the end of input does not double (a 64 KiB block for each message
     * loaded cost more than the parsing, an mmap each under ASan). */
    size_t chunk = 4096;
    while (!body) {
        if (in.cap - in.len < 1024) {
            int rrc = smtpc__buf_reserve(&in, chunk);
            if (rrc) {
                smtpc__buf_free(&in);
                return rrc == SMTPC_ENOMEM ? lerr(eb, el, rrc, "out of memory", 0)
                                           : lerr(eb, el, SMTPC_ELIMIT, "header block larger than 1 MiB", 0);
            }
            if (chunk < 65536) chunk *= 2;
        }
        size_t room = in.cap - in.len;
        ssize_t k = cb(ud, in.data + in.len, room < 65536 ? room : 65536);
        if (k < 0) {
            smtpc__buf_free(&in);
            return lerr(eb, el, (int)k, "reading the message failed", 0);
        }
        if (k == 0) {
            eof = true;
            break;
        }
        size_t from = in.len >= 2 ? in.len - 2 : 0; /* an end may straddle reads */
        in.len += (size_t)k;
        body = header_end(in.data, in.len, from);
        if (!body && in.len > HEADER_LIMIT) {
            smtpc__buf_free(&in);
            return lerr(eb, el, SMTPC_ELIMIT, "header block larger than 1 MiB", 0);
        }
    }
    if (body > HEADER_LIMIT || (!body && in.len > HEADER_LIMIT)) {
        smtpc__buf_free(&in);
        return lerr(eb, el, SMTPC_ELIMIT, "header block larger than 1 MiB", 0);
    }
    if (!body) body = in.len; /* headers only, no blank line */
    smtpc_message *m = NULL;
    if ((rc = smtpc_message_new(&m))) {
        smtpc__buf_free(&in);
        return rc;
    }
    m->loaded = true;
    const char *s = (const char *)in.data;
    /* walk the header lines */
    size_t i = 0, line = 0, hend = body;
    /* strip the blank line itself from the header range */
    field *fs = NULL;
    size_t nf = 0, capf = 0;
    bool has_date = false, has_msgid = false;
    if (hend >= 5 && memcmp(s, "From ", 5) == 0) { /* mbox separator */
        const char *nl = memchr(s, '\n', hend);
        i = nl ? (size_t)(nl - s) + 1 : hend;
        line++;
    }
    while (i < hend) {
        size_t ls = i;
        const char *nl = memchr(s + i, '\n', hend - i);
        size_t le = nl ? (size_t)(nl - s) : hend; /* index of '\n' or end */
        size_t te = le > ls && s[le - 1] == '\r' ? le - 1 : le;
        i = nl ? le + 1 : hend;
        line++;
        if (te == ls) break; /* the blank line */
        if (s[ls] == ' ' || s[ls] == '\t') {
            if (!nf) {
                rc = lerr(eb, el, SMTPC_EINVAL, "continuation line before the first header", line);
                goto fail;
            }
            fs[nf - 1].end = te;
            continue;
        }
        const char *c = memchr(s + ls, ':', te - ls);
        size_t nend = c ? (size_t)(c - s) : 0;
        while (c && nend > ls && (s[nend - 1] == ' ' || s[nend - 1] == '\t')) nend--;
        bool ok = c && nend > ls;
        for (size_t k = ls; ok && k < nend; k++)
            if ((unsigned char)s[k] < 33 || (unsigned char)s[k] > 126) ok = false;
        if (!ok) {
            rc = lerr(eb, el, SMTPC_EINVAL, "malformed header line (no field name and ':')", line);
            goto fail;
        }
        for (size_t k = ls; k < te; k++)
            if (s[k] == '\r' || s[k] == 0) {
                rc = lerr(eb, el, SMTPC_EINVAL, "bare CR or NUL in a header", line);
                goto fail;
            }
        if (nf == capf) {
            field *nfs = realloc(fs, (capf = capf ? capf * 2 : 32) * sizeof *fs);
            if (!nfs) {
                rc = SMTPC_ENOMEM;
                goto fail;
            }
            fs = nfs;
        }
        fs[nf++] = (field){ls, te, (size_t)(c - s)};
        (void)nend;
    }
    smtpc_address_list froml = {0}, senderl = {0};
    for (size_t f = 0; f < nf && !rc; f++) {
        const char *name = s + fs[f].start;
        size_t nl = fs[f].colon - fs[f].start;
        while (nl && (name[nl - 1] == ' ' || name[nl - 1] == '\t')) nl--;
        /* the unfolded value */
        smtpc__buf v;
        smtpc__buf_init(&v, 0);
        for (size_t k = fs[f].colon + 1; k < fs[f].end; k++) {
            if (s[k] == '\r' || s[k] == '\n') continue;
            if (smtpc__buf_append(&v, s + k, 1)) rc = SMTPC_ENOMEM;
        }
        const char *vs = (const char *)smtpc__bptr(&v);
        size_t vn = smtpc__buf_size(&v);
        bool keep = true;
        if (!rc) {
            if (nl == 4 && smtpc__strncasecmp(name, "From", 4) == 0)
                rc = add_addrs(&froml, vs, vn, "From", eb, el);
            else if (nl == 6 && smtpc__strncasecmp(name, "Sender", 6) == 0)
                rc = add_addrs(&senderl, vs, vn, "Sender", eb, el);
            else if (nl == 2 && smtpc__strncasecmp(name, "To", 2) == 0)
                rc = add_addrs(&m->to, vs, vn, "To", eb, el);
            else if (nl == 2 && smtpc__strncasecmp(name, "Cc", 2) == 0)
                rc = add_addrs(&m->cc, vs, vn, "Cc", eb, el);
            else if (nl == 3 && smtpc__strncasecmp(name, "Bcc", 3) == 0) {
                rc = add_addrs(&m->bcc, vs, vn, "Bcc", eb, el);
                keep = false;
            } else if (nl == 4 && smtpc__strncasecmp(name, "Date", 4) == 0)
                has_date = true;
            else if (nl == 10 && smtpc__strncasecmp(name, "Message-ID", 10) == 0)
                has_msgid = true;
        }
        smtpc__buf_free(&v);
        if (rc) break;
        if (!keep) continue;
        /* copy the field with CRLF line ends */
        for (size_t k = fs[f].start; k < fs[f].end && !rc; k++) {
            if (s[k] == '\r') continue;
            rc = s[k] == '\n' ? smtpc__buf_append(&m->raw_headers, "\r\n", 2)
                              : smtpc__buf_append(&m->raw_headers, s + k, 1);
        }
        if (!rc) rc = smtpc__buf_append(&m->raw_headers, "\r\n", 2);
    }
    if (!rc) {
        smtpc_address_list *env = senderl.n ? &senderl : &froml;
        if (env->n) {
            m->env_from_loaded = env->v[0];
            env->v[0] = NULL;
        } else if (!(flags & SMTPC_LOAD_NO_ENVELOPE)) {
            rc = lerr(eb, el, SMTPC_EINVAL, "no From (or Sender) address in the message", 0);
        }
    }
    if (!rc && m->to.n + m->cc.n + m->bcc.n == 0 && !(flags & SMTPC_LOAD_NO_ENVELOPE))
        rc = lerr(eb, el, SMTPC_EINVAL, "no recipient in To, Cc or Bcc", 0);
    for (size_t k = 0; k < froml.n; k++) smtpc_address_free(froml.v[k]);
    for (size_t k = 0; k < senderl.n; k++) smtpc_address_free(senderl.v[k]);
    free(froml.v);
    free(senderl.v);
    if (rc) {
        if (rc == SMTPC_ENOMEM) lerr(eb, el, rc, "out of memory", 0);
        goto fail;
    }
    /* Date and Message-ID when missing, fixed now so rewrites are identical */
    smtpc__buf extra;
    smtpc__buf_init(&extra, 0);
    if (flags & SMTPC_LOAD_AS_IS) has_date = has_msgid = true;
    if (!has_date) {
        char d[48];
        smtpc__rfc5322_date(d, sizeof d, (int64_t)time(NULL));
        rc = smtpc__buf_printf(&extra, "Date: %s\r\n", d);
    }
    if (!rc && !has_msgid) {
        char r[25];
        const char *dom = m->env_from_loaded ? m->env_from_loaded->domain_ace : "[";
        if (dom[0] == '[') dom = "localhost.localdomain";
        rc = smtpc__random_hex(r, 24);
        if (!rc) rc = smtpc__buf_printf(&extra, "Message-ID: <%s.%lld@%s>\r\n", r, (long long)time(NULL), dom);
    }
    if (!rc && smtpc__buf_size(&extra)) {
        rc = smtpc__buf_append(&extra, smtpc__bptr(&m->raw_headers), smtpc__buf_size(&m->raw_headers));
        if (!rc) {
            smtpc__buf_free(&m->raw_headers);
            m->raw_headers = extra;
            smtpc__buf_init(&extra, 0);
        }
    }
    smtpc__buf_free(&extra);
    if (!rc) rc = smtpc__buf_append(&m->raw_headers, "\r\n", 2);
    if (!rc) {
        /* the body: what was read past the headers, then the rest from cb */
        smtpc__part *p = calloc(1, sizeof *p);
        if (!p) {
            rc = SMTPC_ENOMEM;
        } else {
            p->src = SRC_CB;
            p->cb = eof ? NULL : cb;
            p->ud = ud;
            p->size = -1;
            p->len = in.len - body;
            p->data = malloc(p->len ? p->len : 1);
            if (!p->data) {
                free(p);
                rc = SMTPC_ENOMEM;
            } else {
                memcpy(p->data, in.data + body, p->len);
                m->raw_body = p;
            }
        }
    }
    if (rc) {
        lerr(eb, el, rc, "out of memory", 0);
        goto fail;
    }
    free(fs);
    smtpc__buf_free(&in);
    *out = m;
    return 0;
fail:
    free(fs);
    smtpc__buf_free(&in);
    smtpc_message_free(m);
    return rc;
}
