/* The message model: fields, bodies, attachments, envelope. */
#include "mime.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define RFC822_FILE_MAX (64 << 20)

int smtpc_message_new(smtpc_message **out)
{
    if (!out) return SMTPC_EINVAL;
    smtpc_message *m = calloc(1, sizeof *m);
    if (!m) return SMTPC_ENOMEM;
    smtpc__buf_init(&m->raw_headers, 0);
    *out = m;
    return 0;
}

void smtpc__part_free(smtpc__part *p)
{
    if (!p) return;
    free(p->data);
    free(p->path);
    free(p->ctype);
    free(p->charset);
    free(p->name);
    free(p->cid);
    if (p->spool) fclose(p->spool);
    free(p);
}

static void rcpts_clear(smtpc_message *m)
{
    free(m->rcpts);
    m->rcpts = NULL;
    m->nrcpts = 0;
    m->rcpts_valid = false;
}

void smtpc_message_free(smtpc_message *m)
{
    if (!m) return;
    smtpc_address_free(m->from);
    smtpc_address_free(m->sender);
    smtpc__alist_clear(&m->to);
    smtpc__alist_clear(&m->cc);
    smtpc__alist_clear(&m->bcc);
    smtpc__alist_clear(&m->reply_to);
    free(m->subject);
    free(m->msgid);
    free(m->in_reply_to);
    free(m->references);
    for (size_t i = 0; i < m->nhdrs; i++) {
        free(m->hdrs[i].name);
        free(m->hdrs[i].value);
    }
    free(m->hdrs);
    smtpc__part_free(m->text);
    smtpc__part_free(m->html);
    for (size_t i = 0; i < m->nalts; i++) smtpc__part_free(m->alts[i]);
    free(m->alts);
    for (size_t i = 0; i < m->natts; i++) smtpc__part_free(m->atts[i]);
    free(m->atts);
    rcpts_clear(m);
    smtpc__buf_free(&m->raw_headers);
    smtpc__part_free(m->raw_body);
    smtpc_address_free(m->env_from_loaded);
    free(m);
}

const char *smtpc_message_errmsg(const smtpc_message *m) { return m ? m->err.text : ""; }

/* ------------------------------------------------------------ addresses */

static int set_mailbox(smtpc_message *m, smtpc_address **slot, const char *s, const char *what)
{
    char eb[256];
    smtpc_address *a = NULL;
    if (!s) return smtpc__err(&m->err, SMTPC_EINVAL, "%s: NULL address", what);
    int rc = smtpc_address_parse(&a, s, eb, sizeof eb);
    if (rc == SMTPC_ENOMEM) return smtpc__err(&m->err, rc, "out of memory");
    if (rc) return smtpc__err(&m->err, rc, "%s: %s", what, eb);
    smtpc_address_free(*slot);
    *slot = a;
    rcpts_clear(m);
    return 0;
}

int smtpc_message_set_from(smtpc_message *m, const char *mailbox)
{
    return set_mailbox(m, &m->from, mailbox, "From");
}

int smtpc_message_set_sender(smtpc_message *m, const char *mailbox)
{
    if (!mailbox) {
        smtpc_address_free(m->sender);
        m->sender = NULL;
        return 0;
    }
    return set_mailbox(m, &m->sender, mailbox, "Sender");
}

static int add_list(smtpc_message *m, smtpc_address_list *dst, const char *s, const char *what)
{
    char eb[256];
    if (!s) return smtpc__err(&m->err, SMTPC_EINVAL, "%s: NULL address list", what);
    smtpc_address_list l = {0};
    int rc = smtpc__address_parse_n(s, strlen(s), true, &l, eb, sizeof eb);
    if (rc == SMTPC_ENOMEM) return smtpc__err(&m->err, rc, "out of memory");
    if (rc) return smtpc__err(&m->err, rc, "%s: %s", what, eb);
    size_t n0 = dst->n;
    for (size_t i = 0; i < l.n; i++) {
        if (smtpc__alist_push(dst, l.v[i])) {
            for (size_t k = n0; k < dst->n; k++) l.v[k - n0] = NULL;
            dst->n = n0;
            smtpc__alist_clear(&l);
            return smtpc__err(&m->err, SMTPC_ENOMEM, "out of memory");
        }
    }
    free(l.v);
    rcpts_clear(m);
    return 0;
}

int smtpc_message_add_to(smtpc_message *m, const char *s) { return add_list(m, &m->to, s, "To"); }
int smtpc_message_add_cc(smtpc_message *m, const char *s) { return add_list(m, &m->cc, s, "Cc"); }
int smtpc_message_add_bcc(smtpc_message *m, const char *s) { return add_list(m, &m->bcc, s, "Bcc"); }
int smtpc_message_add_reply_to(smtpc_message *m, const char *s)
{
    return add_list(m, &m->reply_to, s, "Reply-To");
}

static int add_addr(smtpc_message *m, smtpc_address_list *dst, const smtpc_address *a)
{
    smtpc_address *d = NULL;
    if (!a) return smtpc__err(&m->err, SMTPC_EINVAL, "NULL address");
    if (smtpc_address_dup(&d, a) || smtpc__alist_push(dst, d)) {
        smtpc_address_free(d);
        return smtpc__err(&m->err, SMTPC_ENOMEM, "out of memory");
    }
    rcpts_clear(m);
    return 0;
}

int smtpc_message_add_to_address(smtpc_message *m, const smtpc_address *a) { return add_addr(m, &m->to, a); }
int smtpc_message_add_cc_address(smtpc_message *m, const smtpc_address *a) { return add_addr(m, &m->cc, a); }
int smtpc_message_add_bcc_address(smtpc_message *m, const smtpc_address *a) { return add_addr(m, &m->bcc, a); }

/* ---------------------------------------------------------------- fields */

static int set_str(smtpc_message *m, char **slot, const char *v)
{
    char *d = NULL;
    if (v && !(d = smtpc__strdup(v))) return smtpc__err(&m->err, SMTPC_ENOMEM, "out of memory");
    free(*slot);
    *slot = d;
    return 0;
}

int smtpc_message_set_subject(smtpc_message *m, const char *subject)
{
    if (subject && !smtpc__utf8_valid((const uint8_t *)subject, strlen(subject)))
        return smtpc__err(&m->err, SMTPC_EINVAL, "Subject: invalid UTF-8");
    return set_str(m, &m->subject, subject);
}

int smtpc_message_set_date(smtpc_message *m, int64_t t)
{
    m->date = t;
    m->date_set = true;
    return 0;
}

static bool msgid_ok(const char *s, size_t n)
{
    /* id-left "@" id-right, printable ASCII without space, <, >, and one '@' */
    size_t at = 0, ats = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || c == '<' || c == '>' || c == '"' || c == '\\' || c == '(' ||
            c == ')' || c == ',' || c == ';' || c == ':')
            return false;
        if (c == '@') {
            at = i;
            ats++;
        }
    }
    return ats == 1 && at > 0 && at + 1 < n && n <= 250;
}

int smtpc_message_set_message_id(smtpc_message *m, const char *msgid)
{
    if (!msgid) return set_str(m, &m->msgid, NULL);
    size_t n = strlen(msgid);
    const char *s = msgid;
    if (n >= 2 && s[0] == '<' && s[n - 1] == '>') {
        s++;
        n -= 2;
    }
    if (!msgid_ok(s, n))
        return smtpc__err(&m->err, SMTPC_EINVAL, "Message-ID: expected <left@right> without spaces or controls");
    char *d = malloc(n + 3);
    if (!d) return smtpc__err(&m->err, SMTPC_ENOMEM, "out of memory");
    d[0] = '<';
    memcpy(d + 1, s, n);
    d[n + 1] = '>';
    d[n + 2] = '\0';
    free(m->msgid);
    m->msgid = d;
    return 0;
}

const char *smtpc_message_message_id(const smtpc_message *m) { return m->msgid; }

static int set_ids(smtpc_message *m, char **slot, const char *v, const char *what)
{
    if (!v) return set_str(m, slot, NULL);
    /* one or more <id> separated by whitespace; normalised to single spaces */
    smtpc__buf b;
    smtpc__buf_init(&b, 0);
    const char *p = v;
    int count = 0;
    for (;;) {
        while (*p == ' ' || *p == '\t') p++;
        if (!*p) break;
        if (*p != '<') goto bad;
        const char *e = strchr(p, '>');
        if (!e || !msgid_ok(p + 1, (size_t)(e - p - 1))) goto bad;
        if ((count && smtpc__buf_append(&b, " ", 1)) || smtpc__buf_append(&b, p, (size_t)(e - p + 1))) {
            smtpc__buf_free(&b);
            return smtpc__err(&m->err, SMTPC_ENOMEM, "out of memory");
        }
        count++;
        p = e + 1;
    }
    if (!count) goto bad;
    if (smtpc__buf_append(&b, "", 1)) {
        smtpc__buf_free(&b);
        return smtpc__err(&m->err, SMTPC_ENOMEM, "out of memory");
    }
    free(*slot);
    *slot = (char *)b.data;
    return 0;
bad:
    smtpc__buf_free(&b);
    return smtpc__err(&m->err, SMTPC_EINVAL, "%s: expected one or more <id@domain>", what);
}

int smtpc_message_set_in_reply_to(smtpc_message *m, const char *v)
{
    return set_ids(m, &m->in_reply_to, v, "In-Reply-To");
}

int smtpc_message_set_references(smtpc_message *m, const char *v)
{
    return set_ids(m, &m->references, v, "References");
}

int smtpc_message_set_priority(smtpc_message *m, smtpc_priority p)
{
    if (p != SMTPC_PRIORITY_NORMAL && p != SMTPC_PRIORITY_HIGH && p != SMTPC_PRIORITY_LOW)
        return smtpc__err(&m->err, SMTPC_EINVAL, "invalid priority %d", (int)p);
    m->priority = (int)p;
    return 0;
}

static const char *const reserved[] = {"From", "To", "Cc", "Bcc", "Sender", "Reply-To", "Subject",
                                       "Date", "Message-ID", "MIME-Version", "In-Reply-To",
                                       "References"};

int smtpc_message_add_header(smtpc_message *m, const char *name, const char *value)
{
    if (!name || !value) return smtpc__err(&m->err, SMTPC_EINVAL, "header: NULL name or value");
    size_t n = strlen(name);
    if (n == 0 || n > 76) return smtpc__err(&m->err, SMTPC_EINVAL, "header name must be 1..76 characters");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 33 || c > 126 || c == ':')
            return smtpc__err(&m->err, SMTPC_EINVAL,
                              "header name: invalid character 0x%02x (printable ASCII except ':')", c);
    }
    for (size_t i = 0; i < SMTPC__ARRAY_LEN(reserved); i++)
        if (smtpc__strcasecmp(name, reserved[i]) == 0)
            return smtpc__err(&m->err, SMTPC_EINVAL, "header %s is set by its own function", reserved[i]);
    if (smtpc__strncasecmp(name, "Content-", 8) == 0)
        return smtpc__err(&m->err, SMTPC_EINVAL, "Content-* headers are written by the library");
    size_t vn = strlen(value);
    if (smtpc__has_crlfnul(value, vn))
        return smtpc__err(&m->err, SMTPC_EINVAL, "header %s: CR or LF in value", name);
    if (!smtpc__utf8_valid((const uint8_t *)value, vn))
        return smtpc__err(&m->err, SMTPC_EINVAL, "header %s: invalid UTF-8", name);
    smtpc__hfield *h = realloc(m->hdrs, (m->nhdrs + 1) * sizeof *h);
    if (!h) return smtpc__err(&m->err, SMTPC_ENOMEM, "out of memory");
    m->hdrs = h;
    h[m->nhdrs].name = smtpc__strdup(name);
    h[m->nhdrs].value = smtpc__strdup(value);
    if (!h[m->nhdrs].name || !h[m->nhdrs].value) {
        free(h[m->nhdrs].name);
        free(h[m->nhdrs].value);
        return smtpc__err(&m->err, SMTPC_ENOMEM, "out of memory");
    }
    m->nhdrs++;
    return 0;
}

/* ---------------------------------------------------------------- bodies */

static int text_part(smtpc_message *m, smtpc__part **out, const char *ctype, const char *charset,
                     const void *data, size_t len, bool text)
{
    smtpc__part *p = calloc(1, sizeof *p);
    if (!p) return smtpc__err(&m->err, SMTPC_ENOMEM, "out of memory");
    p->src = SRC_MEM;
    p->is_text = text;
    p->ctype = smtpc__strdup(ctype);
    p->charset = text ? smtpc__strdup(charset ? charset : "utf-8") : NULL;
    if (text)
        p->data = smtpc__crlf_normalize(data, len, &p->len);
    else if ((p->data = malloc(len ? len : 1)) != NULL) {
        memcpy(p->data, data, len);
        p->len = len;
    }
    if (!p->ctype || (text && !p->charset) || !p->data) {
        smtpc__part_free(p);
        return smtpc__err(&m->err, SMTPC_ENOMEM, "out of memory");
    }
    *out = p;
    return 0;
}

static int set_body(smtpc_message *m, smtpc__part **slot, const char *ctype, const char *s, size_t len)
{
    if (!s) {
        smtpc__part_free(*slot);
        *slot = NULL;
        return 0;
    }
    if (len == (size_t)-1) len = strlen(s);
    if (!smtpc__utf8_valid((const uint8_t *)s, len))
        return smtpc__err(&m->err, SMTPC_EINVAL, "%s body: invalid UTF-8", ctype);
    smtpc__part *p = NULL; /* -O3: gcc cannot tell smtpc__err never returns 0 */
    int rc = text_part(m, &p, ctype, "utf-8", s, len, true);
    if (rc) return rc;
    smtpc__part_free(*slot);
    *slot = p;
    return 0;
}

int smtpc_message_set_text(smtpc_message *m, const char *text, size_t len)
{
    return set_body(m, &m->text, "text/plain", text, len);
}

int smtpc_message_set_html(smtpc_message *m, const char *html, size_t len)
{
    return set_body(m, &m->html, "text/html", html, len);
}

static bool ctype_ok(const char *t)
{
    /* type "/" subtype [; params], printable ASCII, no CR/LF */
    const char *sl = strchr(t, '/');
    if (!sl || sl == t || !sl[1]) return false;
    for (const char *p = t; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f) return false;
    return strlen(t) < 900;
}

int smtpc_message_add_alternative(smtpc_message *m, const char *content_type, const char *charset,
                                  const void *data, size_t len)
{
    if (!content_type || !ctype_ok(content_type))
        return smtpc__err(&m->err, SMTPC_EINVAL, "alternative: invalid content type");
    if (charset && (!*charset || strpbrk(charset, " \t\r\n\";()<>@,:\\/[]?=")))
        return smtpc__err(&m->err, SMTPC_EINVAL, "alternative: invalid charset");
    if (!data && len) return smtpc__err(&m->err, SMTPC_EINVAL, "alternative: NULL data");
    bool text = smtpc__strncasecmp(content_type, "text/", 5) == 0;
    smtpc__part *p = NULL;
    int rc = text_part(m, &p, content_type, charset, data ? data : "", len, text);
    if (rc) return rc;
    smtpc__part **v = realloc(m->alts, (m->nalts + 1) * sizeof *v);
    if (!v) {
        smtpc__part_free(p);
        return smtpc__err(&m->err, SMTPC_ENOMEM, "out of memory");
    }
    m->alts = v;
    v[m->nalts++] = p;
    return 0;
}

static int push_att(smtpc_message *m, smtpc__part *p)
{
    smtpc__part **v = realloc(m->atts, (m->natts + 1) * sizeof *v);
    if (!v) {
        smtpc__part_free(p);
        return smtpc__err(&m->err, SMTPC_ENOMEM, "out of memory");
    }
    m->atts = v;
    v[m->natts++] = p;
    return 0;
}

/* Fills name/type/disposition/cid from opts; default_name may be NULL. */
static int apply_opts(smtpc_message *m, smtpc__part *p, const smtpc_attachment_opts *o,
                      const char *default_name)
{
    const char *name = o && o->name ? o->name : default_name;
    if (name) {
        size_t n = strlen(name);
        if (!n || smtpc__has_crlfnul(name, n) || !smtpc__utf8_valid((const uint8_t *)name, n) || n > 512)
            return smtpc__err(&m->err, SMTPC_EINVAL, "attachment name: empty, too long, invalid UTF-8 or CR/LF");
        if (!(p->name = smtpc__strdup(name))) return smtpc__err(&m->err, SMTPC_ENOMEM, "out of memory");
    }
    const char *ct = o && o->content_type ? o->content_type : smtpc__mime_guess_type(name);
    if (!ctype_ok(ct)) return smtpc__err(&m->err, SMTPC_EINVAL, "attachment: invalid content type");
    if (!(p->ctype = smtpc__strdup(ct))) return smtpc__err(&m->err, SMTPC_ENOMEM, "out of memory");
    p->is_rfc822 = smtpc__strncasecmp(ct, "message/rfc822", 14) == 0;
    p->disposition = (o && (o->is_inline || o->content_id)) ? 2 : 1;
    if (o && o->content_id) {
        const char *c = o->content_id;
        size_t n = strlen(c);
        if (n >= 2 && c[0] == '<' && c[n - 1] == '>') {
            c++;
            n -= 2;
        }
        for (size_t i = 0; i < n; i++) {
            unsigned char ch = (unsigned char)c[i];
            if (ch <= 0x20 || ch >= 0x7f || ch == '<' || ch == '>' || ch == '"' || ch == '\\')
                return smtpc__err(&m->err, SMTPC_EINVAL, "Content-ID: invalid character");
        }
        if (!n || n > 200) return smtpc__err(&m->err, SMTPC_EINVAL, "Content-ID: empty or too long");
        if (!(p->cid = smtpc__strndup(c, n))) return smtpc__err(&m->err, SMTPC_ENOMEM, "out of memory");
    }
    return 0;
}

int smtpc_message_add_attachment_file(smtpc_message *m, const char *path, const smtpc_attachment_opts *opts)
{
    if (!path) return smtpc__err(&m->err, SMTPC_EINVAL, "attachment: NULL path");
    struct stat st;
    if (stat(path, &st) != 0)
        return smtpc__err(&m->err, errno == ENOENT ? SMTPC_ENOTFOUND : SMTPC_EIO, "attachment %s: %s",
                          path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return smtpc__err(&m->err, SMTPC_EIO, "attachment %s: not a regular file", path);
    smtpc__part *p = calloc(1, sizeof *p);
    if (!p) return smtpc__err(&m->err, SMTPC_ENOMEM, "out of memory");
    p->src = SRC_FILE;
    p->size = st.st_size;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    int rc = (p->path = smtpc__strdup(path)) ? 0 : smtpc__err(&m->err, SMTPC_ENOMEM, "out of memory");
    if (!rc) rc = apply_opts(m, p, opts, *base ? base : "attachment");
    if (rc) {
        smtpc__part_free(p);
        return rc;
    }
    if (p->is_rfc822) {
        /* an embedded message is written unencoded (RFC 2046 5.2.1), which
         * needs its line structure checked: read it now, within a limit */
        if (st.st_size > RFC822_FILE_MAX) {
            smtpc__part_free(p);
            return smtpc__err(&m->err, SMTPC_ELIMIT, "attachment %s: a message/rfc822 part is limited to %d MiB",
                              path, RFC822_FILE_MAX >> 20);
        }
        FILE *f = fopen(path, "rb");
        uint8_t *raw = f ? malloc((size_t)st.st_size + 1) : NULL;
        size_t got = raw ? fread(raw, 1, (size_t)st.st_size, f) : 0;
        int e = errno;
        if (f) fclose(f);
        if (!raw || got != (size_t)st.st_size) {
            free(raw);
            smtpc__part_free(p);
            return smtpc__err(&m->err, SMTPC_EIO, "attachment %s: %s", path,
                              f ? "short read" : strerror(e));
        }
        p->data = smtpc__crlf_normalize(raw, got, &p->len);
        free(raw);
        if (!p->data) {
            smtpc__part_free(p);
            return smtpc__err(&m->err, SMTPC_ENOMEM, "out of memory");
        }
        p->src = SRC_MEM;
    }
    return push_att(m, p);
}

int smtpc_message_add_attachment_mem(smtpc_message *m, const void *data, size_t len,
                                     const smtpc_attachment_opts *opts)
{
    if (!data && len) return smtpc__err(&m->err, SMTPC_EINVAL, "attachment: NULL data");
    smtpc__part *p = calloc(1, sizeof *p);
    if (!p) return smtpc__err(&m->err, SMTPC_ENOMEM, "out of memory");
    p->src = SRC_MEM;
    p->data = malloc(len ? len : 1);
    int rc = p->data ? 0 : smtpc__err(&m->err, SMTPC_ENOMEM, "out of memory");
    if (!rc) {
        if (len) memcpy(p->data, data, len);
        p->len = len;
        rc = apply_opts(m, p, opts, "attachment");
    }
    if (!rc && p->is_rfc822) {
        uint8_t *n = smtpc__crlf_normalize(p->data, p->len, &p->len);
        if (!n) rc = smtpc__err(&m->err, SMTPC_ENOMEM, "out of memory");
        free(p->data);
        p->data = n;
    }
    if (rc) {
        smtpc__part_free(p);
        return rc;
    }
    return push_att(m, p);
}

int smtpc_message_add_attachment_cb(smtpc_message *m, ssize_t (*cb)(void *, void *, size_t), void *ud,
                                    int64_t size, const smtpc_attachment_opts *opts)
{
    if (!cb) return smtpc__err(&m->err, SMTPC_EINVAL, "attachment: NULL callback");
    smtpc__part *p = calloc(1, sizeof *p);
    if (!p) return smtpc__err(&m->err, SMTPC_ENOMEM, "out of memory");
    p->src = SRC_CB;
    p->cb = cb;
    p->ud = ud;
    p->size = size < 0 ? -1 : size;
    int rc = apply_opts(m, p, opts, "attachment");
    if (!rc && p->is_rfc822)
        rc = smtpc__err(&m->err, SMTPC_EINVAL, "message/rfc822 from a callback: use smtpc_message_add_message_mem");
    if (rc) {
        smtpc__part_free(p);
        return rc;
    }
    return push_att(m, p);
}

int smtpc_message_add_inline_file(smtpc_message *m, const char *path, const char *content_id,
                                  const char *content_type)
{
    if (!content_id) return smtpc__err(&m->err, SMTPC_EINVAL, "inline part: NULL Content-ID");
    smtpc_attachment_opts o = {NULL, content_type, true, content_id};
    return smtpc_message_add_attachment_file(m, path, &o);
}

int smtpc_message_add_inline_mem(smtpc_message *m, const void *data, size_t len, const char *content_id,
                                 const char *content_type)
{
    if (!content_id) return smtpc__err(&m->err, SMTPC_EINVAL, "inline part: NULL Content-ID");
    smtpc_attachment_opts o = {content_id, content_type, true, content_id};
    return smtpc_message_add_attachment_mem(m, data, len, &o);
}

int smtpc_message_add_message_mem(smtpc_message *m, const void *raw, size_t len, const char *name)
{
    smtpc_attachment_opts o = {name ? name : "message.eml", "message/rfc822", false, NULL};
    return smtpc_message_add_attachment_mem(m, raw, len, &o);
}

/* -------------------------------------------------------------- envelope */

const char *smtpc_message_envelope_from(const smtpc_message *m)
{
    if (m->loaded) return m->env_from_loaded ? m->env_from_loaded->envelope : NULL;
    if (m->sender) return m->sender->envelope;
    return m->from ? m->from->envelope : NULL;
}

static int rcpts_build(smtpc_message *m)
{
    if (m->rcpts_valid) return 0;
    const smtpc_address_list *ls[3] = {&m->to, &m->cc, &m->bcc};
    size_t total = m->to.n + m->cc.n + m->bcc.n;
    char **v = malloc((total ? total : 1) * sizeof *v);
    if (!v) return SMTPC_ENOMEM;
    size_t n = 0;
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < ls[k]->n; i++) {
            char *e = ls[k]->v[i]->envelope;
            bool dup = false;
            for (size_t j = 0; j < n && !dup; j++) dup = strcmp(v[j], e) == 0;
            if (!dup) v[n++] = e;
        }
    free(m->rcpts);
    m->rcpts = v;
    m->nrcpts = n;
    m->rcpts_valid = true;
    return 0;
}

size_t smtpc_message_rcpt_count(const smtpc_message *m)
{
    if (rcpts_build((smtpc_message *)m)) return 0;
    return m->nrcpts;
}

const char *smtpc_message_rcpt(const smtpc_message *m, size_t i)
{
    if (rcpts_build((smtpc_message *)m) || i >= m->nrcpts) return NULL;
    return m->rcpts[i];
}

bool smtpc_message_needs_smtputf8(const smtpc_message *m)
{
    if (m->from && m->from->smtputf8) return true;
    if (m->sender && m->sender->smtputf8) return true;
    if (m->env_from_loaded && m->env_from_loaded->smtputf8) return true;
    const smtpc_address_list *ls[4] = {&m->to, &m->cc, &m->bcc, &m->reply_to};
    for (int k = 0; k < 4; k++)
        for (size_t i = 0; i < ls[k]->n; i++)
            if (ls[k]->v[i]->smtputf8) return true;
    return false;
}
