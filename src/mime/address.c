/* RFC 5322 address parsing and formatting, RFC 6532 UTF-8, IDNA2008.
 *
 * One parser produces both the header form and the envelope form, so what
 * is sent in RCPT TO is exactly what was validated (no header/envelope
 * parser differential). */
#include "mime.h"
#include "util/syslib.h"

#include <arpa/inet.h>
#include <idn2.h>
#include <stdlib.h>
#include <string.h>

#define ADDR_MAX 254 /* RFC 5321 path limit minus the angle brackets */

typedef struct P {
    const char *s;
    size_t n, i;
    char *err;
    size_t errlen;
} P;

static int perr(P *p, const char *msg)
{
    if (p->err && p->errlen) {
        snprintf(p->err, p->errlen, "%s (at offset %zu)", msg, p->i);
    }
    return SMTPC_EINVAL;
}

/* libidn2 is about to be called: true (err filled) when it cannot be loaded. */
static bool idn_unavailable(P *p)
{
    smtpc__errmsg e;
    if (!smtpc__syslib_need(SMTPC__LIB_IDN2, &e)) return false;
    if (p->err && p->errlen) snprintf(p->err, p->errlen, "%s", e.text);
    return true;
}

static bool is_atext(unsigned char c)
{
    if (c >= 0x80) return true; /* RFC 6532 UTF8-non-ascii */
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return c && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static int peek(P *p) { return p->i < p->n ? (unsigned char)p->s[p->i] : -1; }

/* Skips whitespace and (nested) comments. */
static int skip_cfws(P *p)
{
    for (;;) {
        int c = peek(p);
        if (c == ' ' || c == '\t') {
            p->i++;
        } else if (c == '(') {
            int depth = 0;
            do {
                c = peek(p);
                if (c < 0) return perr(p, "unterminated comment");
                if (c == '\\') {
                    p->i++;
                    if (peek(p) < 0) return perr(p, "unterminated comment");
                } else if (c == '(') {
                    depth++;
                } else if (c == ')') {
                    depth--;
                }
                p->i++;
            } while (depth > 0);
        } else {
            return 0;
        }
    }
}

/* Quoted string at p->i (the opening quote); appends content unescaped. */
static int parse_qstring(P *p, smtpc__buf *out)
{
    p->i++;
    for (;;) {
        int c = peek(p);
        if (c < 0) return perr(p, "unterminated quoted string (unbalanced '\"')");
        p->i++;
        if (c == '"') return 0;
        if (c == '\\') {
            c = peek(p);
            if (c < 0) return perr(p, "unterminated quoted string (unbalanced '\"')");
            p->i++;
        }
        char ch = (char)c;
        if (smtpc__buf_append(out, &ch, 1)) return SMTPC_ENOMEM;
    }
}

static bool local_is_dot_atom(const char *s)
{
    size_t n = strlen(s);
    if (!n || s[0] == '.' || s[n - 1] == '.') return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (s[i + 1] == '.') return false;
        } else if (!is_atext(c)) {
            return false;
        }
    }
    return true;
}

static bool has_non_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80) return true;
    return false;
}

static int append_quoted(smtpc__buf *b, const char *s)
{
    if (smtpc__buf_append(b, "\"", 1)) return SMTPC_ENOMEM;
    for (; *s; s++) {
        if ((*s == '"' || *s == '\\') && smtpc__buf_append(b, "\\", 1)) return SMTPC_ENOMEM;
        if (smtpc__buf_append(b, s, 1)) return SMTPC_ENOMEM;
    }
    return smtpc__buf_append(b, "\"", 1) ? SMTPC_ENOMEM : 0;
}

static int domain_check_ascii(P *p, const char *d)
{
    size_t n = strlen(d), lab = 0;
    if (n > 253) return perr(p, "domain longer than 253 octets");
    for (size_t i = 0; i <= n; i++) {
        char c = d[i];
        if (c == '.' || c == '\0') {
            if (lab == 0) return perr(p, "empty label in domain");
            if (lab > 63) return perr(p, "domain label longer than 63 octets");
            if (d[i - 1] == '-' || d[i - lab] == '-')
                return perr(p, "domain label starts or ends with '-'");
            lab = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '_') {
            lab++;
        } else {
            return perr(p, "invalid character in domain");
        }
    }
    return 0;
}

static void addr_free_fields(smtpc_address *a)
{
    free(a->display);
    free(a->local);
    free(a->domain);
    free(a->domain_ace);
    free(a->envelope);
    free(a->group);
}

void smtpc_address_free(smtpc_address *a)
{
    if (!a) return;
    addr_free_fields(a);
    free(a);
}

/* Fills a's domain_ace, envelope and smtputf8 from local/domain. */
static int addr_finish(P *p, smtpc_address *a)
{
    const char *d = a->domain;
    if (d[0] == '[') {
        size_t n = strlen(d);
        char tmp[64];
        unsigned char bin[16];
        if (n < 3 || d[n - 1] != ']' || n - 2 >= sizeof tmp) return perr(p, "invalid address literal");
        if (n > 7 && smtpc__strncasecmp(d + 1, "IPv6:", 5) == 0) {
            memcpy(tmp, d + 6, n - 7);
            tmp[n - 7] = '\0';
            if (inet_pton(AF_INET6, tmp, bin) != 1) return perr(p, "invalid IPv6 address literal");
        } else {
            memcpy(tmp, d + 1, n - 2);
            tmp[n - 2] = '\0';
            if (inet_pton(AF_INET, tmp, bin) != 1) return perr(p, "invalid IPv4 address literal");
        }
        a->domain_ace = smtpc__strdup(d);
    } else if (has_non_ascii(d)) {
        char *ace = NULL;
        if (idn_unavailable(p)) return SMTPC_ELIBRARY;
        int rc = idn2_to_ascii_8z(d, &ace, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
        if (rc != IDN2_OK) {
            if (p->err && p->errlen)
                snprintf(p->err, p->errlen, "invalid internationalised domain: %s",
                         idn2_strerror(rc));
            return SMTPC_EINVAL;
        }
        a->domain_ace = smtpc__strdup(ace);
        idn2_free(ace);
        if (a->domain_ace) {
            int r = domain_check_ascii(p, a->domain_ace);
            if (r) return r;
        }
    } else {
        int r = domain_check_ascii(p, d);
        if (r) return r;
        if (strstr(d, "xn--") || strstr(d, "XN--") || strstr(d, "Xn--") || strstr(d, "xN--")) {
            /* an A-label must be valid punycode of a valid U-label */
            if (idn_unavailable(p)) return SMTPC_ELIBRARY;
            char *u = NULL;
            int rc = idn2_to_unicode_8z8z(d, &u, 0);
            char *back = NULL;
            if (rc == IDN2_OK) rc = idn2_to_ascii_8z(u, &back, IDN2_NONTRANSITIONAL);
            idn2_free(u);
            idn2_free(back);
            if (rc != IDN2_OK) {
                if (p->err && p->errlen)
                    snprintf(p->err, p->errlen, "invalid A-label in domain: %s", idn2_strerror(rc));
                return SMTPC_EINVAL;
            }
        }
        a->domain_ace = smtpc__strdup(d);
    }
    if (!a->domain_ace) return SMTPC_ENOMEM;
    if (!a->local[0]) return perr(p, "empty local part");
    if (!smtpc__utf8_valid((const uint8_t *)a->local, strlen(a->local)))
        return perr(p, "invalid UTF-8 in local part");
    for (const char *s = a->local; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) return perr(p, "control character in local part");
    a->smtputf8 = has_non_ascii(a->local);
    smtpc__buf b;
    smtpc__buf_init(&b, 0);
    int rc = 0;
    if (local_is_dot_atom(a->local))
        rc = smtpc__buf_append_str(&b, a->local);
    else
        rc = append_quoted(&b, a->local);
    if (!rc) rc = smtpc__buf_printf(&b, "@%s", a->domain_ace);
    if (!rc) rc = smtpc__buf_append(&b, "", 1);
    if (rc) {
        smtpc__buf_free(&b);
        return SMTPC_ENOMEM;
    }
    a->envelope = (char *)b.data;
    if (strlen(a->envelope) > ADDR_MAX) return perr(p, "address longer than 254 octets");
    return 0;
}

/* addr-spec at p->i. */
static int parse_addr_spec(P *p, smtpc_address *a)
{
    smtpc__buf b;
    smtpc__buf_init(&b, 4096);
    int rc = skip_cfws(p);
    if (rc) goto out;
    int c = peek(p);
    if (c == '"') {
        rc = parse_qstring(p, &b);
        if (rc) goto out;
    } else {
        size_t st = p->i;
        while (p->i < p->n && (is_atext((unsigned char)p->s[p->i]) || p->s[p->i] == '.')) p->i++;
        if (p->i == st) {
            rc = (c == '@') ? perr(p, "empty local part") : c < 0 ? perr(p, "empty address")
                                                                 : perr(p, "invalid character in local part");
            goto out;
        }
        if (smtpc__buf_append(&b, p->s + st, p->i - st)) {
            rc = SMTPC_ENOMEM;
            goto out;
        }
        if (smtpc__buf_append(&b, "", 1)) {
            rc = SMTPC_ENOMEM;
            goto out;
        }
        b.len--;
        if (!local_is_dot_atom((char *)b.data)) {
            rc = perr(p, "invalid dots in local part (leading, trailing or '..')");
            goto out;
        }
    }
    if ((rc = skip_cfws(p))) goto out;
    if (peek(p) != '@') {
        c = peek(p);
        rc = perr(p, c < 0 ? "missing '@'"
                     : (c == '"' || is_atext((unsigned char)c)) ? "unexpected word before '@' in display name (missing '<'?)"
                                                               : "unexpected character in local part");
        goto out;
    }
    p->i++;
    if (smtpc__buf_append(&b, "", 1)) {
        rc = SMTPC_ENOMEM;
        goto out;
    }
    a->local = smtpc__strdup((char *)b.data);
    if (!a->local) {
        rc = SMTPC_ENOMEM;
        goto out;
    }
    if ((rc = skip_cfws(p))) goto out;
    size_t st = p->i;
    if (peek(p) == '[') {
        while (p->i < p->n && p->s[p->i] != ']') {
            if (p->s[p->i] == '[' && p->i != st) {
                rc = perr(p, "'[' inside address literal");
                goto out;
            }
            p->i++;
        }
        if (peek(p) != ']') {
            rc = perr(p, "unterminated address literal (missing ']')");
            goto out;
        }
        p->i++;
    } else {
        while (p->i < p->n && (is_atext((unsigned char)p->s[p->i]) || p->s[p->i] == '.')) p->i++;
        if (p->i == st) {
            rc = perr(p, "empty domain");
            goto out;
        }
    }
    a->domain = smtpc__strndup(p->s + st, p->i - st);
    if (!a->domain) {
        rc = SMTPC_ENOMEM;
        goto out;
    }
    if ((rc = skip_cfws(p))) goto out;
    if (peek(p) == '@') {
        rc = perr(p, "more than one '@'");
        goto out;
    }
    rc = addr_finish(p, a);
out:
    smtpc__buf_free(&b);
    return rc;
}

/* phrase (display name) up to '<' or ':'; words joined by single spaces,
 * encoded words decoded. */
static int parse_phrase(P *p, char **out)
{
    smtpc__buf raw;
    smtpc__buf_init(&raw, 1 << 16);
    int rc = 0;
    bool any = false;
    for (;;) {
        if ((rc = skip_cfws(p))) goto out;
        int c = peek(p);
        if (c == '<' || c == ':' || c < 0) break;
        if (any && smtpc__buf_append(&raw, " ", 1)) goto nomem;
        if (c == '"') {
            /* Quoted words are not RFC 2047 decoded: mark them so the
             * decoder leaves them alone by escaping "=?". */
            smtpc__buf q;
            smtpc__buf_init(&q, 1 << 16);
            rc = parse_qstring(p, &q);
            if (!rc && smtpc__buf_append(&raw, "\x01", 1)) rc = SMTPC_ENOMEM;
            if (!rc && smtpc__buf_append(&raw, smtpc__bptr(&q), smtpc__buf_size(&q))) rc = SMTPC_ENOMEM;
            if (!rc && smtpc__buf_append(&raw, "\x02", 1)) rc = SMTPC_ENOMEM;
            smtpc__buf_free(&q);
            if (rc) goto out;
        } else if (is_atext((unsigned char)c) || c == '.') {
            size_t st = p->i;
            while (p->i < p->n && (is_atext((unsigned char)p->s[p->i]) || p->s[p->i] == '.')) p->i++;
            if (smtpc__buf_append(&raw, p->s + st, p->i - st)) goto nomem;
        } else {
            rc = perr(p, c == '@' ? "unexpected '@' in display name (missing '<'?)"
                                  : "invalid character in display name");
            goto out;
        }
        any = true;
    }
    /* Decode encoded words per segment outside quotes. */
    {
        smtpc__buf res;
        smtpc__buf_init(&res, 0);
        const char *s = (const char *)smtpc__bptr(&raw);
        size_t n = smtpc__buf_size(&raw), i = 0;
        while (i < n) {
            if (s[i] == '\x01') {
                size_t j = i + 1;
                while (j < n && s[j] != '\x02') j++;
                if (smtpc__buf_append(&res, s + i + 1, j - i - 1)) rc = SMTPC_ENOMEM;
                i = j + 1;
            } else {
                size_t j = i;
                while (j < n && s[j] != '\x01') j++;
                char *d = smtpc__rfc2047_decode(s + i, j - i);
                if (!d || smtpc__buf_append_str(&res, d)) rc = SMTPC_ENOMEM;
                free(d);
                i = j;
            }
            if (rc) break;
        }
        if (!rc && smtpc__buf_append(&res, "", 1)) rc = SMTPC_ENOMEM;
        if (rc) {
            smtpc__buf_free(&res);
            goto out;
        }
        if (res.data[0]) {
            *out = (char *)res.data;
        } else {
            smtpc__buf_free(&res);
            *out = NULL;
        }
    }
    goto out;
nomem:
    rc = SMTPC_ENOMEM;
out:
    smtpc__buf_free(&raw);
    return rc;
}

/* Finds, from p->i to the next top-level ',' (or ';' when in a group), the
 * first top-level '<' or ':'. Returns '<', ':' or 0. */
static int scan_kind(P *p, bool in_group)
{
    size_t i = p->i;
    int depth = 0;
    bool q = false;
    for (; i < p->n; i++) {
        char c = p->s[i];
        if (q) {
            if (c == '\\') i++;
            else if (c == '"') q = false;
            continue;
        }
        if (depth) {
            if (c == '\\') i++;
            else if (c == '(') depth++;
            else if (c == ')') depth--;
            continue;
        }
        if (c == '"') q = true;
        else if (c == '(') depth = 1;
        else if (c == '[') {
            while (i < p->n && p->s[i] != ']') i++;
        } else if (c == '<' || c == ':') return c;
        else if (c == ',' || (in_group && c == ';')) return 0;
    }
    return 0;
}

static int parse_mailbox(P *p, bool in_group, smtpc_address **out)
{
    smtpc_address *a = calloc(1, sizeof *a);
    if (!a) return SMTPC_ENOMEM;
    int rc;
    if ((rc = skip_cfws(p))) goto fail;
    int kind = scan_kind(p, in_group);
    if (kind == ':') {
        rc = perr(p, in_group ? "nested group" : "unexpected ':'");
        goto fail;
    }
    if (kind == '<') {
        if ((rc = parse_phrase(p, &a->display))) goto fail;
        p->i++; /* '<' */
        if ((rc = parse_addr_spec(p, a))) goto fail;
        if (peek(p) != '>') {
            rc = perr(p, peek(p) < 0 ? "missing '>'" : "unexpected character after address (missing '>'?)");
            goto fail;
        }
        p->i++;
    } else {
        if (peek(p) < 0 || peek(p) == ',') {
            rc = perr(p, "empty address");
            goto fail;
        }
        if ((rc = parse_addr_spec(p, a))) goto fail;
    }
    if ((rc = skip_cfws(p))) goto fail;
    *out = a;
    return 0;
fail:
    smtpc_address_free(a);
    return rc;
}

int smtpc__alist_push(smtpc_address_list *l, smtpc_address *a)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 4;
        smtpc_address **v = realloc(l->v, nc * sizeof *v);
        if (!v) return SMTPC_ENOMEM;
        l->v = v;
        l->cap = nc;
    }
    l->v[l->n++] = a;
    return 0;
}

void smtpc__alist_clear(smtpc_address_list *l)
{
    for (size_t i = 0; i < l->n; i++) smtpc_address_free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

int smtpc__address_parse_n(const char *s, size_t n, int mode, smtpc_address_list *out,
                           char *errbuf, size_t errlen)
{
    bool list = mode != 0, lenient = mode == 2;
    size_t elems = 0;
    bool after_comma = false;
    P p = {s, n, 0, errbuf, errlen};
    if (errbuf && errlen) errbuf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r' || c == '\n' || c == 0) {
            p.i = i;
            return perr(&p, "control character (CR/LF/NUL) in address");
        }
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            p.i = i;
            return perr(&p, "control character in address");
        }
    }
    if (!smtpc__utf8_valid((const uint8_t *)s, n)) return perr(&p, "invalid UTF-8");
    smtpc_address_list l = {0};
    int rc = 0;
    for (;;) {
        if ((rc = skip_cfws(&p))) goto fail;
        if (lenient && peek(&p) == ',') { /* obs-addr-list: empty elements */
            p.i++;
            continue;
        }
        if (peek(&p) < 0) {
            if (elems == 0 && !(lenient && after_comma)) {
                rc = perr(&p, "empty address");
                goto fail;
            }
            if (after_comma && !lenient) {
                rc = perr(&p, "empty address after ','");
                goto fail;
            }
            break;
        }
        elems++;
        after_comma = false;
        if (list && scan_kind(&p, false) == ':') {
            char *gname = NULL;
            if ((rc = parse_phrase(&p, &gname))) goto fail;
            if (!gname) {
                rc = perr(&p, "empty group name");
                goto fail;
            }
            p.i++; /* ':' */
            if ((rc = skip_cfws(&p))) {
                free(gname);
                goto fail;
            }
            while (peek(&p) != ';') {
                if (peek(&p) < 0) {
                    free(gname);
                    rc = perr(&p, "unterminated group (missing ';')");
                    goto fail;
                }
                smtpc_address *a = NULL;
                if ((rc = parse_mailbox(&p, true, &a))) {
                    free(gname);
                    goto fail;
                }
                a->group = smtpc__strdup(gname);
                if (!a->group || smtpc__alist_push(&l, a)) {
                    smtpc_address_free(a);
                    free(gname);
                    rc = SMTPC_ENOMEM;
                    goto fail;
                }
                if (peek(&p) == ',') {
                    p.i++;
                    if ((rc = skip_cfws(&p))) {
                        free(gname);
                        goto fail;
                    }
                } else if (peek(&p) != ';') {
                    free(gname);
                    rc = perr(&p, peek(&p) < 0 ? "unterminated group (missing ';')" : "expected ',' or ';' in group");
                    goto fail;
                }
            }
            free(gname);
            p.i++;
            if ((rc = skip_cfws(&p))) goto fail;
        } else {
            smtpc_address *a = NULL;
            if ((rc = parse_mailbox(&p, false, &a))) goto fail;
            if (smtpc__alist_push(&l, a)) {
                smtpc_address_free(a);
                rc = SMTPC_ENOMEM;
                goto fail;
            }
        }
        if (peek(&p) < 0) break;
        if (peek(&p) != ',') {
            rc = perr(&p, list ? "expected ',' between addresses" : "unexpected text after address");
            goto fail;
        }
        if (!list) {
            rc = perr(&p, "several addresses where one is expected");
            goto fail;
        }
        p.i++;
        after_comma = true;
    }
    if (!list && (l.n != 1 || l.v[0]->group)) {
        rc = perr(&p, "a single mailbox is expected");
        goto fail;
    }
    *out = l;
    return 0;
fail:
    smtpc__alist_clear(&l);
    return rc;
}

int smtpc_address_parse(smtpc_address **out, const char *s, char *errbuf, size_t errlen)
{
    if (!out || !s) return SMTPC_EINVAL;
    smtpc_address_list l = {0};
    int rc = smtpc__address_parse_n(s, strlen(s), false, &l, errbuf, errlen);
    if (rc) return rc;
    *out = l.v[0];
    free(l.v);
    return 0;
}

int smtpc_address_new(smtpc_address **out, const char *display_name, const char *addr_spec,
                      char *errbuf, size_t errlen)
{
    if (!out || !addr_spec) return SMTPC_EINVAL;
    P p = {addr_spec, strlen(addr_spec), 0, errbuf, errlen};
    if (smtpc__has_crlfnul(addr_spec, p.n) ||
        (display_name && smtpc__has_crlfnul(display_name, strlen(display_name))))
        return perr(&p, "control character (CR/LF/NUL) in address");
    if (display_name && !smtpc__utf8_valid((const uint8_t *)display_name, strlen(display_name)))
        return perr(&p, "invalid UTF-8 in display name");
    if (!smtpc__utf8_valid((const uint8_t *)addr_spec, p.n)) return perr(&p, "invalid UTF-8");
    smtpc_address *a = calloc(1, sizeof *a);
    if (!a) return SMTPC_ENOMEM;
    int rc = parse_addr_spec(&p, a);
    if (!rc && p.i != p.n) rc = perr(&p, "unexpected text after address");
    if (!rc && display_name && display_name[0] && !(a->display = smtpc__strdup(display_name)))
        rc = SMTPC_ENOMEM;
    if (rc) {
        smtpc_address_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

int smtpc_address_dup(smtpc_address **out, const smtpc_address *a)
{
    smtpc_address *d = calloc(1, sizeof *d);
    if (!d) return SMTPC_ENOMEM;
    d->display = smtpc__strdup(a->display);
    d->local = smtpc__strdup(a->local);
    d->domain = smtpc__strdup(a->domain);
    d->domain_ace = smtpc__strdup(a->domain_ace);
    d->envelope = smtpc__strdup(a->envelope);
    d->group = smtpc__strdup(a->group);
    d->smtputf8 = a->smtputf8;
    if ((a->display && !d->display) || !d->local || !d->domain || !d->domain_ace || !d->envelope ||
        (a->group && !d->group)) {
        smtpc_address_free(d);
        return SMTPC_ENOMEM;
    }
    *out = d;
    return 0;
}

const char *smtpc_address_envelope(const smtpc_address *a) { return a->envelope; }
const char *smtpc_address_display_name(const smtpc_address *a) { return a->display; }
const char *smtpc_address_local_part(const smtpc_address *a) { return a->local; }
const char *smtpc_address_domain(const smtpc_address *a) { return a->domain; }
const char *smtpc_address_domain_ascii(const smtpc_address *a) { return a->domain_ace; }
const char *smtpc_address_group(const smtpc_address *a) { return a->group; }
bool smtpc_address_needs_smtputf8(const smtpc_address *a) { return a->smtputf8; }

char *smtpc_address_format(const smtpc_address *a, unsigned flags)
{
    smtpc__buf b;
    smtpc__buf_init(&b, 0);
    smtpc__hdr h = {&b, 0, 0};
    bool utf8 = (flags & SMTPC_FORMAT_UTF8) != 0;
    int rc = 0;
    if (a->display) {
        rc = smtpc__hdr_phrase(&h, a->display, strlen(a->display), utf8, true);
        if (!rc) rc = smtpc__buf_append(&b, " <", 2);
    }
    if (!rc) {
        if (local_is_dot_atom(a->local))
            rc = smtpc__buf_append_str(&b, a->local);
        else
            rc = append_quoted(&b, a->local);
    }
    if (!rc) rc = smtpc__buf_printf(&b, "@%s", utf8 ? a->domain : a->domain_ace);
    if (!rc && a->display) rc = smtpc__buf_append(&b, ">", 1);
    if (!rc) rc = smtpc__buf_append(&b, "", 1);
    if (rc) {
        smtpc__buf_free(&b);
        return NULL;
    }
    /* The phrase writer may have folded: unfold (CRLF SP -> SP). */
    char *s = (char *)b.data, *w = s;
    for (char *r = s; *r; r++) {
        if (r[0] == '\r' && r[1] == '\n') {
            r++;
            continue;
        }
        *w++ = *r;
    }
    *w = '\0';
    return s;
}

int smtpc_address_list_parse(smtpc_address_list **out, const char *s, char *errbuf, size_t errlen)
{
    if (!out || !s) return SMTPC_EINVAL;
    smtpc_address_list *l = calloc(1, sizeof *l);
    if (!l) return SMTPC_ENOMEM;
    int rc = smtpc__address_parse_n(s, strlen(s), true, l, errbuf, errlen);
    if (rc) {
        free(l);
        return rc;
    }
    *out = l;
    return 0;
}

size_t smtpc_address_list_count(const smtpc_address_list *l) { return l ? l->n : 0; }

const smtpc_address *smtpc_address_list_get(const smtpc_address_list *l, size_t i)
{
    return l && i < l->n ? l->v[i] : NULL;
}

void smtpc_address_list_free(smtpc_address_list *l)
{
    if (!l) return;
    smtpc__alist_clear(l);
    free(l);
}
