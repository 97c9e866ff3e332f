/* A careful minimal RFC 5322 header reader for sendmail -t: header block
 * boundary, field unfolding, address lists (quoted strings, comments, angle
 * addresses, groups), removal of a field with its continuation lines.
 * To be replaced by the MIME library's envelope loader once merged. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#define HDR_MAX_FIELD (64 * 1024)

size_t hdr_end(const char *m, size_t len)
{
    /* the header ends at the first empty line (LF or CRLF) */
    size_t i = 0;
    while (i < len) {
        if (m[i] == '\n') return i + 1;
        if (m[i] == '\r' && i + 1 < len && m[i + 1] == '\n') return i + 2;
        const char *nl = memchr(m + i, '\n', len - i);
        if (!nl) return len;
        i = (size_t)(nl - m) + 1;
    }
    return len;
}

/* Length of the line at m[i..] including its LF (or to len). */
static size_t line_len(const char *m, size_t i, size_t len)
{
    const char *nl = memchr(m + i, '\n', len - i);
    return nl ? (size_t)(nl - (m + i)) + 1 : len - i;
}

static bool is_cont(const char *m, size_t i, size_t len)
{
    return i < len && (m[i] == ' ' || m[i] == '\t');
}

int hdr_each(const char *m, size_t hlen, hdr_field_fn fn, void *ud)
{
    size_t i = 0;
    cli_buf v;
    cli_buf_init(&v, HDR_MAX_FIELD);
    int rc = 0;
    while (i < hlen && !rc) {
        size_t ll = line_len(m, i, hlen);
        const char *colon = memchr(m + i, ':', ll);
        if (!colon || is_cont(m, i, hlen) || (ll <= 2 && (m[i] == '\r' || m[i] == '\n'))) {
            i += ll; /* not a field (or the blank line): skip */
            continue;
        }
        size_t nlen = (size_t)(colon - (m + i));
        const char *name = m + i;
        cli_buf_reset(&v);
        size_t vs = (size_t)(colon - m) + 1;
        for (;;) {
            size_t end = i + ll;
            size_t e = end;
            while (e > vs && (m[e - 1] == '\n' || m[e - 1] == '\r')) e--;
            /* unfolding: drop the CRLF, keep the blank that starts the next line */
            if (cli_buf_append(&v, m + vs, e - vs)) { rc = SMTPC_ELIMIT; break; }
            i = end;
            if (!is_cont(m, i, hlen)) break;
            ll = line_len(m, i, hlen);
            vs = i;
        }
        if (rc) break;
        if (cli_buf_append(&v, "", 1)) { rc = SMTPC_ELIMIT; break; }
        rc = fn(ud, name, nlen, (const char *)cli_buf_ptr(&v));
    }
    cli_buf_free(&v);
    return rc;
}

typedef struct has_ud { const char *name; bool found; } has_ud;
static int has_cb(void *ud, const char *name, size_t nlen, const char *value)
{
    has_ud *h = ud;
    if (strlen(h->name) == nlen && !strncasecmp(name, h->name, nlen)) h->found = true;
    return 0;
}

bool hdr_has(const char *msg, size_t hlen, const char *name)
{
    has_ud h = {name, false};
    hdr_each(msg, hlen, has_cb, &h);
    return h.found;
}

int hdr_remove(const char *m, size_t len, const char *name, cli_buf *out)
{
    size_t hlen = hdr_end(m, len), i = 0, nl = strlen(name);
    bool dropping = false;
    while (i < hlen) {
        size_t ll = line_len(m, i, hlen);
        if (!is_cont(m, i, hlen)) {
            size_t j = i + nl;
            dropping = ll > nl && !strncasecmp(m + i, name, nl);
            while (dropping && j < i + ll && (m[j] == ' ' || m[j] == '\t')) j++;
            dropping = dropping && j < i + ll && m[j] == ':';
        }
        if (!dropping && cli_buf_append(out, m + i, ll)) return SMTPC_ENOMEM;
        i += ll;
    }
    return cli_buf_append(out, m + hlen, len - hlen) ? SMTPC_ENOMEM : 0;
}

/* ---- address lists ---------------------------------------------------------- */

typedef struct addr_acc {
    cli_buf plain; /* the element's text outside comments, blanks dropped */
    cli_buf angle; /* the last <...> */
    bool has_angle;
} addr_acc;

static int flush_addr(addr_acc *a, cli_list *l)
{
    cli_buf *src = a->has_angle ? &a->angle : &a->plain;
    const char *s = (const char *)cli_buf_ptr(src);
    size_t n = cli_buf_size(src);
    if (a->has_angle && n && s[0] == '@') { /* obsolete source route "@a,@b:user@host" */
        const char *c = memchr(s, ':', n);
        if (c) { n -= (size_t)(c + 1 - s); s = c + 1; }
    }
    int rc = 0;
    if (n) {
        char *dup = strndup(s, n);
        if (!dup || cli_list_push(l, dup)) { free(dup); rc = SMTPC_ENOMEM; }
    }
    cli_buf_reset(&a->plain);
    cli_buf_reset(&a->angle);
    a->has_angle = false;
    return rc;
}

int hdr_addresses(const char *v, cli_list *l)
{
    addr_acc a;
    cli_buf_init(&a.plain, HDR_MAX_FIELD);
    cli_buf_init(&a.angle, HDR_MAX_FIELD);
    a.has_angle = false;
    int rc = 0, comment = 0;
    bool quoted = false, in_angle = false;
    for (const char *p = v; *p && !rc; p++) {
        char ch = *p;
        cli_buf *dst = in_angle ? &a.angle : &a.plain;
        if (comment) {
            if (ch == '\\' && p[1]) p++;
            else if (ch == '(') comment++;
            else if (ch == ')') comment--;
            continue;
        }
        if (quoted) {
            if (ch == '\\' && p[1]) {
                rc = cli_buf_append(dst, p, 2); /* keep the quoted-pair as written */
                p++;
                continue;
            }
            if (ch == '"') quoted = false;
            rc = cli_buf_append(dst, &ch, 1);
            continue;
        }
        switch (ch) {
        case '"': quoted = true; rc = cli_buf_append(dst, &ch, 1); break;
        case '(': comment = 1; break;
        case '<': in_angle = true; a.has_angle = true; cli_buf_reset(&a.angle); break;
        case '>': in_angle = false; break;
        case ':':
            if (in_angle) { rc = cli_buf_append(dst, &ch, 1); break; }
            /* a group: what came before was its display name */
            cli_buf_reset(&a.plain);
            break;
        case ',':
        case ';':
            if (in_angle) { rc = cli_buf_append(dst, &ch, 1); break; }
            rc = flush_addr(&a, l);
            break;
        case ' ': case '\t': case '\r': case '\n': break;
        default: rc = cli_buf_append(dst, &ch, 1); break;
        }
    }
    if (!rc) rc = flush_addr(&a, l);
    cli_buf_free(&a.plain);
    cli_buf_free(&a.angle);
    return rc;
}
