/* Incremental SMTP reply parser (RFC 5321 4.2, RFC 2034/3463 enhanced codes).
 *
 * Bytes may arrive one at a time or many replies at once. A line is kept in a
 * buffer bounded by max_line; a reply's lines are bounded in number and total
 * size, so a hostile server cannot make us allocate without limit. */
#include "engine/reply.h"

#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_LINE 4096
#define DEFAULT_MAX_BYTES 65536
#define DEFAULT_MAX_LINES 1000

struct smtpc__reply_parser {
    smtpc__reply_limits lim;
    bool enhanced;
    int err;          /* sticky: once malformed, the stream is lost */
    smtpc__buf line;  /* the current, unterminated line */
    /* the reply being assembled */
    int code;
    size_t nlines, cap_lines, bytes;
    char **lines;
    char enh[16];
    /* _feed_view: the reply is assembled in storage reused from one reply to
     * the next (no allocation per reply once it has grown). */
    bool view;
    smtpc__buf vtext;   /* the lines, each NUL-terminated */
    size_t *voff;       /* where each line starts in vtext */
    char **vlines;
    size_t vcap;        /* of voff and vlines */
    smtpc__buf vjoined; /* the lines joined with '\n' */
    smtpc__reply vr;
};

static void clear_partial(smtpc__reply_parser *p)
{
    if (p->lines)
        for (size_t i = 0; i < p->nlines; i++) free(p->lines[i]);
    free(p->lines);
    p->lines = NULL;
    p->nlines = p->cap_lines = p->bytes = 0;
    p->code = 0;
    p->enh[0] = '\0';
}

int smtpc__reply_parser_new(smtpc__reply_parser **out, const smtpc__reply_limits *lim)
{
    smtpc__reply_parser *p = calloc(1, sizeof *p);
    if (!p) return SMTPC_ENOMEM;
    if (lim) p->lim = *lim;
    if (!p->lim.max_line) p->lim.max_line = DEFAULT_MAX_LINE;
    if (!p->lim.max_bytes) p->lim.max_bytes = DEFAULT_MAX_BYTES;
    if (!p->lim.max_lines) p->lim.max_lines = DEFAULT_MAX_LINES;
    /* +1: room for the CR that precedes the LF */
    smtpc__buf_init(&p->line, p->lim.max_line + 1);
    /* process_line keeps a reply's lines (each counted as n + 2) within max_bytes */
    smtpc__buf_init(&p->vtext, p->lim.max_bytes);
    smtpc__buf_init(&p->vjoined, p->lim.max_bytes);
    *out = p;
    return 0;
}

void smtpc__reply_parser_reset(smtpc__reply_parser *p)
{
    if (!p) return;
    clear_partial(p);
    smtpc__buf_reset(&p->line);
    p->err = 0;
    p->enhanced = false;
}

void smtpc__reply_parser_free(smtpc__reply_parser *p)
{
    if (!p) return;
    clear_partial(p);
    smtpc__buf_free(&p->line);
    smtpc__buf_free(&p->vtext);
    smtpc__buf_free(&p->vjoined);
    free(p->voff);
    free(p->vlines);
    free(p);
}

void smtpc__reply_parser_set_enhanced(smtpc__reply_parser *p, bool on)
{
    p->enhanced = on;
}

bool smtpc__reply_parser_mid_reply(const smtpc__reply_parser *p)
{
    return p->nlines > 0 || smtpc__buf_size(&p->line) > 0;
}

void smtpc__reply_free(smtpc__reply *r)
{
    if (!r) return;
    if (r->packed) {
        if (r->refs) r->refs--;
        else free(r);
        return;
    }
    for (size_t i = 0; i < r->nlines; i++) free(r->lines[i]);
    free(r->lines);
    free(r->text);
    free(r);
}

/* Length of a leading enhanced status code "C.S.D" (RFC 3463: class 2/4/5,
 * subject and detail 1-3 digits) followed by a space or the end, else 0. */
static size_t enhanced_len(const char *s, size_t n)
{
    size_t i = 0;
    if (n < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.') return 0;
    i = 2;
    for (int part = 0; part < 2; part++) {
        size_t d = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9' && d < 4) i++, d++;
        if (d < 1 || d > 3) return 0;
        if (part == 0) {
            if (i >= n || s[i] != '.') return 0;
            i++;
        }
    }
    if (i < n && s[i] != ' ') return 0;
    return i;
}

static int fail(smtpc__reply_parser *p, smtpc__errmsg *err, int code, const char *what,
                const char *line, size_t n)
{
    char shown[96];
    smtpc__escape_into(shown, sizeof shown, line, n > 60 ? 60 : n);
    clear_partial(p);
    smtpc__buf_reset(&p->line);
    p->err = code;
    return smtpc__err(err, code, "malformed server reply: %s: \"%s%s\"", what, shown,
                      n > 60 ? "..." : "");
}

static int build_reply(smtpc__reply_parser *p, smtpc__reply **out)
{
    smtpc__reply *r = calloc(1, sizeof *r);
    if (!r) return SMTPC_ENOMEM;
    size_t total = 0;
    for (size_t i = 0; i < p->nlines; i++) total += strlen(p->lines[i]) + 1;
    r->text = malloc(total ? total : 1);
    if (!r->text) {
        free(r);
        return SMTPC_ENOMEM;
    }
    size_t off = 0;
    for (size_t i = 0; i < p->nlines; i++) {
        size_t l = strlen(p->lines[i]);
        if (i) r->text[off++] = '\n';
        memcpy(r->text + off, p->lines[i], l);
        off += l;
    }
    r->text[off] = '\0';
    r->code = p->code;
    memcpy(r->enhanced, p->enh, sizeof r->enhanced);
    r->lines = p->lines;
    r->nlines = p->nlines;
    p->lines = NULL;
    p->nlines = p->cap_lines = 0;
    clear_partial(p);
    *out = r;
    return 1;
}

static int build_view(smtpc__reply_parser *p, smtpc__reply **out)
{
    const char *base = (const char *)smtpc__buf_ptr(&p->vtext);
    size_t end = smtpc__buf_size(&p->vtext);
    for (size_t i = 0; i < p->nlines; i++) p->vlines[i] = (char *)base + p->voff[i];
    /* one line (most replies): the text is that line, nothing to join */
    if (p->nlines > 1) {
        smtpc__buf_reset(&p->vjoined);
        for (size_t i = 0; i < p->nlines; i++) {
            size_t next = i + 1 < p->nlines ? p->voff[i + 1] : end;
            if ((i && smtpc__buf_append(&p->vjoined, "\n", 1)) ||
                smtpc__buf_append(&p->vjoined, base + p->voff[i], next - p->voff[i] - 1))
                return SMTPC_ENOMEM;
        }
        if (smtpc__buf_append(&p->vjoined, "", 1)) return SMTPC_ENOMEM;
    }
    p->vr.code = p->code;
    memcpy(p->vr.enhanced, p->enh, sizeof p->vr.enhanced);
    p->vr.nlines = p->nlines;
    p->vr.lines = p->vlines;
    p->vr.text = p->nlines > 1 ? (char *)smtpc__buf_ptr(&p->vjoined) : p->vlines[0];
    p->nlines = p->bytes = 0;
    p->code = 0;
    p->enh[0] = '\0';
    *out = &p->vr;
    return 1;
}

/* One complete line (LF removed). Returns 1 when it ended a reply. */
static int process_line(smtpc__reply_parser *p, const char *s, size_t n, smtpc__reply **out,
                        smtpc__errmsg *err)
{
    if (n && s[n - 1] == '\r') n--;
    if (n > p->lim.max_line) {
        p->err = SMTPC_ELIMIT;
        clear_partial(p);
        return smtpc__err(err, SMTPC_ELIMIT, "server reply line longer than %zu octets",
                          p->lim.max_line);
    }
    if (memchr(s, '\0', n)) return fail(p, err, SMTPC_EPROTO, "NUL byte in reply", s, n);
    if (n < 3) return fail(p, err, SMTPC_EPROTO, "line too short for a reply code", s, n);
    for (int i = 0; i < 3; i++)
        if (s[i] < '0' || s[i] > '9') return fail(p, err, SMTPC_EPROTO, "non-digit reply code", s, n);
    if (s[0] < '2' || s[0] > '5')
        return fail(p, err, SMTPC_EPROTO, "reply code not in 2xx-5xx", s, n);
    int code = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
    bool last;
    if (n == 3 || s[3] == ' ') last = true;
    else if (s[3] == '-') last = false;
    else return fail(p, err, SMTPC_EPROTO, "expected ' ' or '-' after the reply code", s, n);
    if (p->nlines > 0 && code != p->code)
        return fail(p, err, SMTPC_EPROTO, "reply code differs from the previous line's", s, n);
    if (p->nlines + 1 > p->lim.max_lines) {
        p->err = SMTPC_ELIMIT;
        clear_partial(p);
        return smtpc__err(err, SMTPC_ELIMIT, "server reply has more than %zu lines",
                          p->lim.max_lines);
    }
    if (n + 2 > p->lim.max_bytes - p->bytes || p->bytes > p->lim.max_bytes) {
        p->err = SMTPC_ELIMIT;
        clear_partial(p);
        return smtpc__err(err, SMTPC_ELIMIT, "server reply larger than %zu octets",
                          p->lim.max_bytes);
    }
    p->bytes += n + 2;
    p->code = code;

    const char *t = n > 4 ? s + 4 : s + n;
    size_t tl = n > 4 ? n - 4 : 0;
    /* 3xx replies carry no class of their own (RFC 3463 uses 2/4/5), so a
     * code after 354 is accepted whatever its class; otherwise they must agree. */
    size_t el = p->enhanced ? enhanced_len(t, tl) : 0;
    if (el && s[0] != '3' && t[0] != s[0]) el = 0;
    if (el) {
        if (!p->enh[0]) memcpy(p->enh, t, el), p->enh[el] = '\0';
        t += el;
        tl -= el;
        if (tl) t++, tl--; /* the space after the code */
    }
    if (p->view) {
        if (p->nlines == 0) smtpc__buf_reset(&p->vtext);
        if (p->nlines == p->vcap) {
            size_t nc = p->vcap ? p->vcap * 2 : 8;
            size_t *no = realloc(p->voff, nc * sizeof *no);
            if (!no) return SMTPC_ENOMEM;
            p->voff = no;
            char **nl = realloc(p->vlines, nc * sizeof *nl);
            if (!nl) return SMTPC_ENOMEM;
            p->vlines = nl;
            p->vcap = nc;
        }
        p->voff[p->nlines] = smtpc__buf_size(&p->vtext);
        if (smtpc__buf_reserve(&p->vtext, tl + 1)) return SMTPC_ENOMEM;
        memcpy(p->vtext.data + p->vtext.len, t, tl);
        p->vtext.data[p->vtext.len + tl] = '\0';
        p->vtext.len += tl + 1;
        p->nlines++;
        return last ? build_view(p, out) : 0;
    }
    if (p->nlines == p->cap_lines) {
        size_t nc = p->cap_lines ? p->cap_lines * 2 : 4;
        char **nl = realloc(p->lines, nc * sizeof *nl);
        if (!nl) return SMTPC_ENOMEM;
        p->lines = nl;
        p->cap_lines = nc;
    }
    char *copy = smtpc__strndup(t, tl);
    if (!copy) return SMTPC_ENOMEM;
    p->lines[p->nlines++] = copy;
    return last ? build_reply(p, out) : 0;
}

static int feed(smtpc__reply_parser *p, bool view, const uint8_t *data, size_t len,
                size_t *consumed, smtpc__reply **out, smtpc__errmsg *err)
{
    size_t i = 0;
    int rc = 0;
    *consumed = 0;
    if (p->err) return smtpc__err(err, p->err, "reply stream already failed");
    if (view != p->view) {
        if (p->nlines)
            return smtpc__err(err, SMTPC_EINVAL, "reply parser: feed and feed_view mixed mid-reply");
        p->view = view;
    }
    while (i < len) {
        const uint8_t *lf = memchr(data + i, '\n', len - i);
        size_t chunk = lf ? (size_t)(lf - (data + i)) : len - i;
        if (lf && smtpc__buf_size(&p->line) == 0 && chunk <= p->lim.max_line + 1) {
            /* a whole line in the input: no copy */
            rc = process_line(p, (const char *)data + i, chunk, out, err);
            i += chunk + 1;
            if (rc != 0) break;
            continue;
        }
        if (smtpc__buf_append(&p->line, data + i, chunk) != 0) {
            p->err = SMTPC_ELIMIT;
            clear_partial(p);
            smtpc__buf_reset(&p->line);
            *consumed = i;
            return smtpc__err(err, SMTPC_ELIMIT, "server reply line longer than %zu octets",
                              p->lim.max_line);
        }
        i += chunk;
        if (!lf) break;
        i++;
        rc = process_line(p, (const char *)smtpc__buf_ptr(&p->line), smtpc__buf_size(&p->line),
                          out, err);
        smtpc__buf_reset(&p->line);
        if (rc != 0) break;
    }
    *consumed = i;
    return rc;
}

int smtpc__reply_parser_feed(smtpc__reply_parser *p, const uint8_t *data, size_t len,
                             size_t *consumed, smtpc__reply **out, smtpc__errmsg *err)
{
    return feed(p, false, data, len, consumed, out, err);
}

int smtpc__reply_parser_feed_view(smtpc__reply_parser *p, const uint8_t *data, size_t len,
                                  size_t *consumed, const smtpc__reply **out, smtpc__errmsg *err)
{
    smtpc__reply *r = NULL;
    int rc = feed(p, true, data, len, consumed, &r, err);
    if (rc == 1) *out = r;
    return rc;
}

smtpc__reply *smtpc__reply_dup_reuse(const smtpc__reply *r, smtpc__reply *spare)
{
    if (!r) {
        smtpc__reply_free(spare);
        return NULL;
    }
    /* the struct, the line pointers, the lines and the text in one block:
     * one malloc per reply, none when a spare block is big enough */
    const char *text = r->text ? r->text : "";
    size_t tl = strlen(text) + 1, ll = 0, np = r->nlines ? r->nlines : 1;
    for (size_t i = 0; i < r->nlines; i++) ll += strlen(r->lines[i]) + 1;
    size_t size = sizeof(smtpc__reply) + np * sizeof(char *) + tl + ll;
    smtpc__reply *d = spare;
    if (d && !(d->packed && d->refs == 0 && d->alloc >= size)) {
        smtpc__reply_free(d);
        d = NULL;
    }
    if (!d) {
        if (!(d = malloc(size))) return NULL;
        d->alloc = size;
    }
    d->code = r->code;
    memcpy(d->enhanced, r->enhanced, sizeof d->enhanced);
    d->enhanced[sizeof d->enhanced - 1] = '\0';
    d->packed = true;
    d->refs = 0;
    d->nlines = r->nlines;
    d->lines = (char **)(d + 1);
    char *w = (char *)(d->lines + np);
    d->lines[0] = NULL;
    for (size_t i = 0; i < r->nlines; i++) {
        size_t l = strlen(r->lines[i]) + 1;
        memcpy(w, r->lines[i], l);
        d->lines[i] = w;
        w += l;
    }
    memcpy(w, text, tl);
    d->text = w;
    return d;
}

smtpc__reply *smtpc__reply_dup(const smtpc__reply *r)
{
    return smtpc__reply_dup_reuse(r, NULL);
}

smtpc__reply *smtpc__reply_ref(smtpc__reply *r)
{
    if (!r || !r->packed) return smtpc__reply_dup(r);
    r->refs++;
    return r;
}

/* ---- public accessors (include/smtpc/reply.h) --------------------------- */
SMTPC_API int smtpc_reply_code(const smtpc_reply *r)
{
    return r ? r->code : 0;
}

SMTPC_API const char *smtpc_reply_enhanced(const smtpc_reply *r)
{
    return r ? r->enhanced : "";
}

SMTPC_API const char *smtpc_reply_text(const smtpc_reply *r)
{
    return r && r->text ? r->text : "";
}

SMTPC_API size_t smtpc_reply_line_count(const smtpc_reply *r)
{
    return r ? r->nlines : 0;
}

SMTPC_API const char *smtpc_reply_line(const smtpc_reply *r, size_t i)
{
    return r && i < r->nlines ? r->lines[i] : NULL;
}
