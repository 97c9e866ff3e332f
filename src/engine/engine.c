/* The sans-IO SMTP engine: command queue, reply matching, transactions.
 *
 * Replies are matched in order against a FIFO of expected replies. Each entry
 * says who handles the reply: the caller (EV_REPLY), the transaction machine,
 * or the engine's own clean-up (an empty DATA end, RSET) which the caller
 * never sees except through the final EV_TXN_DONE. */
#include "engine/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CMD_LINE_MAX 512          /* RFC 5321 4.5.3.1.4, CRLF included */
/* MAIL/RCPT with ESMTP parameters may exceed 512: RFC 1869 lets each
 * extension grow the line (RFC 3461 alone adds 500 to RCPT). The part without
 * parameters must still fit in 512. */
#define CMD_LINE_MAX_PARAMS 1024
#define AUTH_LINE_MAX 65536       /* long OAuth tokens (RFC 4954 asks servers for >= 12288) */
#define DEFAULT_BDAT_CHUNK 65536

/* PK_PREV_END: the end-of-data reply of a transaction that is no longer
 * e->t because the next one began behind its final dot (txn_opts.chain). */
enum pend_kind { PK_USER, PK_TXN, PK_INTERNAL, PK_PREV_END };
typedef struct pending {
    smtpc__cmd cmd;
    uint32_t tag;
    uint8_t kind;
} pending;

typedef struct qevent {
    smtpc__event ev;
    smtpc__reply *reply;
} qevent;

enum txn_state { TXN_IDLE, TXN_ENVELOPE, TXN_BODY, TXN_WAIT_END, TXN_CLEANUP };
static const char *const txn_state_names[] = {"IDLE", "ENVELOPE", "BODY", "WAIT_END", "CLEANUP"};

enum body_mode { BODY_NONE, BODY_DATA, BODY_BDAT };

typedef struct txn {
    enum txn_state state;
    bool pipelined, bdat, strict;
    bool data_in_group; /* DATA pipelined behind the RCPTs */
    bool binary;        /* BODY=BINARYMIME: the body goes as is, not as lines */
    size_t nlines, next_line; /* prepared commands in the engine's lines buffer */
    size_t nrcpts, rcpt_replies, accepted, refused;
    bool mail_ok;
    smtpc__reply *mail_reply, *first_refusal, *decider;
    int decider_status;
    smtpc__cmd decider_cmd;
    size_t cleanup_pending;
    size_t bdat_pending;
    bool body_ended;
    smtpc__reply *bdat_fail;
} txn;

struct smtpc__engine {
    smtpc__engine_opts opts;
    smtpc__errmsg err;
    smtpc__reply_parser *parser;
    smtpc__caps caps;
    smtpc__buf out;
    pending *pend;
    size_t pend_head, pend_len, pend_cap;
    qevent *evq;
    size_t ev_head, ev_len, ev_cap;
    smtpc__reply *ev_reply; /* the reply of the event last returned */
    smtpc__reply *last;
    int fatal;              /* sticky feed error */
    bool closing;           /* QUIT queued or 421 received */
    bool tls_active, tls_wait, starttls_pending;
    bool need_ehlo;         /* after TLS: knowledge from before is void */
    bool auth_cont_ok;      /* a 334 arrived: a continuation line may follow */
    enum body_mode body_mode;
    bool body_in_txn;
    bool body_raw;          /* BINARYMIME: no CRLF normalisation, no line limit */
    smtpc__dotstuff ds;
    smtpc__buf chunk;       /* BDAT data not yet sent */
    txn t;
    smtpc__trace_fn trace;
    void *trace_ud;
    /* The transaction's prepared lines (MAIL, RCPT..., [DATA]), each
     * NUL-terminated, line i at lines.data + line_off[i] (line_off[nlines]
     * is the end): kept from one transaction to the next, no allocation
     * per message once grown. */
    smtpc__buf lines;
    size_t *line_off;
    size_t line_off_cap;
    /* Reply blocks nobody holds any more, reused for the next replies
     * (four per message on a bulk connection) instead of free + malloc. */
    smtpc__reply *spare[4];
    size_t nspare;
    /* Live octets of out, from its front, up to and including the last
     * AUTH credential line not yet written; while nonzero out is secure
     * (growth copies and wipes the old block, what is written is wiped at
     * once), at zero it is back on the fast path: no copy is left by then. */
    size_t out_secret_left;
};

/* Replies the engine held: a block nobody else holds goes to the spares. */
#define SPARE_MAX 4096
static void reply_drop(smtpc__engine *e, smtpc__reply *r)
{
    if (r && r->packed && r->refs == 0 && r->alloc <= SPARE_MAX && e->nspare < SMTPC__ARRAY_LEN(e->spare)) {
        e->spare[e->nspare++] = r;
        return;
    }
    smtpc__reply_free(r);
}

/* A copy of r the engine holds (a spare block when one is left). */
static smtpc__reply *reply_copy(smtpc__engine *e, const smtpc__reply *r)
{
    return smtpc__reply_dup_reuse(r, e->nspare ? e->spare[--e->nspare] : NULL);
}

static void spares_free(smtpc__engine *e)
{
    while (e->nspare) smtpc__reply_free(e->spare[--e->nspare]);
}

const char *smtpc__cmd_name(smtpc__cmd c)
{
    static const char *const names[] = {"NONE", "GREETING", "EHLO", "HELO", "STARTTLS",
                                        "AUTH", "MAIL", "RCPT", "DATA", "DATA_END",
                                        "BDAT", "RSET", "NOOP", "QUIT", "RAW"};
    return (unsigned)c < SMTPC__ARRAY_LEN(names) ? names[c] : "?";
}

const char *smtpc__engine_state_name(const smtpc__engine *e)
{
    return txn_state_names[e->t.state];
}

bool smtpc__engine_closing(const smtpc__engine *e)
{
    return e->closing;
}

void smtpc__engine_set_trace(smtpc__engine *e, smtpc__trace_fn cb, void *ud)
{
    e->trace = cb;
    e->trace_ud = ud;
}

size_t smtpc__trace_redact(const char *line, size_t len, char *out, size_t outlen)
{
    /* "AUTH MECH <secret>" keeps the verb and the mechanism; anything else
     * secret is replaced whole. */
    int n;
    if (len > 5 && !smtpc__strncasecmp(line, "AUTH ", 5)) {
        size_t m = 5;
        while (m < len && line[m] != ' ' && m < 60) m++;
        n = snprintf(out, outlen, "%.*s ********", (int)m, line);
    } else {
        n = snprintf(out, outlen, "********");
    }
    if (n < 0) n = 0;
    return (size_t)n < outlen ? (size_t)n : outlen ? outlen - 1 : 0;
}

/* ---- lifetime ------------------------------------------------------------ */
int smtpc__engine_new(smtpc__engine **out, const smtpc__engine_opts *opts)
{
    smtpc__engine *e = calloc(1, sizeof *e);
    if (!e) return SMTPC_ENOMEM;
    if (opts) e->opts = *opts;
    if (!e->opts.bdat_chunk_size) e->opts.bdat_chunk_size = DEFAULT_BDAT_CHUNK;
    int rc = smtpc__reply_parser_new(&e->parser, &e->opts.limits);
    if (rc) {
        free(e);
        return rc;
    }
    smtpc__buf_init(&e->out, 0);
    smtpc__buf_init(&e->chunk, 0);
    smtpc__buf_init(&e->lines, 0);
    *out = e;
    return 0;
}

static void txn_clear(smtpc__engine *e)
{
    txn *t = &e->t;
    reply_drop(e, t->mail_reply);
    reply_drop(e, t->first_refusal);
    reply_drop(e, t->decider);
    reply_drop(e, t->bdat_fail);
    memset(t, 0, sizeof *t);
    smtpc__buf_reset(&e->lines);
}

static void events_clear(smtpc__engine *e)
{
    for (size_t i = e->ev_head; i < e->ev_len; i++) reply_drop(e, e->evq[i].reply);
    e->ev_head = e->ev_len = 0;
    reply_drop(e, e->ev_reply);
    e->ev_reply = NULL;
}

void smtpc__engine_reset(smtpc__engine *e)
{
    if (!e) return;
    txn_clear(e);
    events_clear(e);
    smtpc__caps_clear(&e->caps);
    smtpc__reply_parser_reset(e->parser);
    smtpc__buf_reset(&e->out); /* wipes a credential still queued */
    e->out.secure = false;
    e->out_secret_left = 0;
    smtpc__buf_reset(&e->chunk);
    reply_drop(e, e->last);
    e->last = NULL;
    spares_free(e);
    e->pend_head = e->pend_len = 0;
    e->fatal = 0;
    e->closing = e->tls_active = e->tls_wait = e->starttls_pending = false;
    e->need_ehlo = e->auth_cont_ok = false;
    e->body_mode = BODY_NONE;
    e->body_in_txn = false;
    smtpc__err_clear(&e->err);
}

void smtpc__engine_free(smtpc__engine *e)
{
    if (!e) return;
    smtpc__engine_reset(e);
    smtpc__reply_parser_free(e->parser);
    smtpc__buf_free_secure(&e->out); /* may hold AUTH credentials */
    smtpc__buf_free(&e->chunk);
    smtpc__buf_free(&e->lines);
    free(e->line_off);
    free(e->pend);
    free(e->evq);
    free(e);
}

const char *smtpc__engine_errmsg(const smtpc__engine *e)
{
    return e ? e->err.text : "";
}

/* ---- queues ---------------------------------------------------------------- */
static int pend_push(smtpc__engine *e, smtpc__cmd cmd, uint32_t tag, enum pend_kind kind)
{
    if (e->pend_head == e->pend_len) e->pend_head = e->pend_len = 0;
    if (e->pend_len == e->pend_cap) {
        if (e->pend_head > 0) {
            memmove(e->pend, e->pend + e->pend_head, (e->pend_len - e->pend_head) * sizeof *e->pend);
            e->pend_len -= e->pend_head;
            e->pend_head = 0;
        }
        if (e->pend_len == e->pend_cap) {
            size_t nc = e->pend_cap ? e->pend_cap * 2 : 16;
            pending *np = realloc(e->pend, nc * sizeof *np);
            if (!np) return SMTPC_ENOMEM;
            e->pend = np;
            e->pend_cap = nc;
        }
    }
    e->pend[e->pend_len++] = (pending){cmd, tag, (uint8_t)kind};
    return 0;
}

size_t smtpc__engine_pending_replies(const smtpc__engine *e)
{
    return e->pend_len - e->pend_head;
}

static int ev_push(smtpc__engine *e, smtpc__event_type type, smtpc__cmd cmd, uint32_t tag,
                   int status, const smtpc__reply *r)
{
    if (e->ev_head == e->ev_len) e->ev_head = e->ev_len = 0;
    if (e->ev_len == e->ev_cap) {
        if (e->ev_head > 0) {
            memmove(e->evq, e->evq + e->ev_head, (e->ev_len - e->ev_head) * sizeof *e->evq);
            e->ev_len -= e->ev_head;
            e->ev_head = 0;
        }
        if (e->ev_len == e->ev_cap) {
            size_t nc = e->ev_cap ? e->ev_cap * 2 : 16;
            qevent *nq = realloc(e->evq, nc * sizeof *nq);
            if (!nq) return SMTPC_ENOMEM;
            e->evq = nq;
            e->ev_cap = nc;
        }
    }
    smtpc__reply *copy = NULL;
    if (r && !(copy = smtpc__reply_ref((smtpc__reply *)r))) return SMTPC_ENOMEM;
    qevent *q = &e->evq[e->ev_len++];
    q->reply = copy;
    q->ev = (smtpc__event){type, cmd, tag, status, copy};
    return 0;
}

int smtpc__engine_next_event(smtpc__engine *e, smtpc__event *ev)
{
    reply_drop(e, e->ev_reply);
    e->ev_reply = NULL;
    if (e->ev_head == e->ev_len) return 0;
    qevent *q = &e->evq[e->ev_head++];
    e->ev_reply = q->reply;
    *ev = q->ev;
    return 1;
}

size_t smtpc__engine_output(const smtpc__engine *e, const uint8_t **data)
{
    *data = smtpc__buf_ptr(&e->out);
    return smtpc__buf_size(&e->out);
}

/* Written past the last credential octet: those were wiped as consumed,
 * the buffer is an ordinary one again. */
static void advance_secret(smtpc__engine *e, size_t n)
{
    smtpc__buf_consume(&e->out, n); /* secure: wipes what it drops */
    e->out_secret_left = n < e->out_secret_left ? e->out_secret_left - n : 0;
    if (!e->out_secret_left) e->out.secure = false;
}

void smtpc__engine_output_advance(smtpc__engine *e, size_t n)
{
    if (e->out_secret_left) advance_secret(e, n);
    else smtpc__buf_consume(&e->out, n); /* the body path: as before */
}

void smtpc__engine_trim(smtpc__engine *e)
{
    /* empty: no credential is left in it (out_secret_left is zero) */
    if (smtpc__buf_size(&e->out) == 0 && e->out.cap > 4096) smtpc__buf_free(&e->out);
    if (smtpc__buf_size(&e->chunk) == 0 && e->chunk.cap > 4096) smtpc__buf_free(&e->chunk);
    if (e->t.state == TXN_IDLE) { /* no transaction's lines are left to send */
        smtpc__buf_free(&e->lines);
        free(e->line_off);
        e->line_off = NULL;
        e->line_off_cap = 0;
    }
    spares_free(e);
}

const smtpc__caps *smtpc__engine_caps(const smtpc__engine *e)
{
    return &e->caps;
}

bool smtpc__engine_tls_active(const smtpc__engine *e)
{
    return e->tls_active;
}

const smtpc__reply *smtpc__engine_last_reply(const smtpc__engine *e)
{
    return e->last;
}

/* ---- tracing ---------------------------------------------------------------- */
static void trace_reply(smtpc__engine *e, const smtpc__reply *r)
{
    if (!e->trace) return;
    smtpc__buf b;
    smtpc__buf_init(&b, 0);
    for (size_t i = 0; i < r->nlines; i++) {
        smtpc__buf_reset(&b);
        bool last = i + 1 == r->nlines;
        if (smtpc__buf_printf(&b, "%03d%c%s%s%s", r->code, last ? ' ' : '-', r->enhanced,
                              r->enhanced[0] ? " " : "", r->lines[i]) == 0)
            e->trace(e->trace_ud, SMTPC__TRACE_SERVER, (const char *)smtpc__buf_ptr(&b),
                     smtpc__buf_size(&b), false);
    }
    smtpc__buf_free(&b);
}

/* ---- sending ------------------------------------------------------------------ */
/* Undo marks for the output: live sizes, not offsets, because appending may
 * compact the buffer (move its live bytes to the front). */
static size_t out_mark(const smtpc__engine *e)
{
    return smtpc__buf_size(&e->out);
}

static void out_rollback(smtpc__engine *e, size_t mark)
{
    if (smtpc__buf_size(&e->out) > mark) e->out.len = e->out.off + mark;
}

/* Appends line + CRLF and expects one reply; all or nothing. */
static int send_line(smtpc__engine *e, const char *line, size_t len, smtpc__cmd cmd, uint32_t tag,
                     enum pend_kind kind, bool secret)
{
    /* A credential makes the output secure before it goes in: the growth
     * that makes room for it already wipes the block it gives up. */
    if (secret) e->out.secure = true;
    int rc = smtpc__buf_reserve(&e->out, len + 2);
    if (rc) {
        e->out.secure = e->out_secret_left != 0;
        return smtpc__err(&e->err, rc, "cannot queue %s", smtpc__cmd_name(cmd));
    }
    size_t mark = out_mark(e);
    uint8_t *w = e->out.data + e->out.len; /* reserved above */
    memcpy(w, line, len);
    w[len] = '\r';
    w[len + 1] = '\n';
    e->out.len += len + 2;
    if ((rc = pend_push(e, cmd, tag, kind)) != 0) {
        if (secret) { /* rollback only shortens: wipe what it drops */
            smtpc__secure_zero(e->out.data + e->out.off + mark, len + 2);
            e->out.secure = e->out_secret_left != 0;
        }
        out_rollback(e, mark);
        return smtpc__err(&e->err, rc, "out of memory queueing %s", smtpc__cmd_name(cmd));
    }
    if (e->trace) e->trace(e->trace_ud, SMTPC__TRACE_CLIENT, line, len, secret);
    if (secret) e->out_secret_left = smtpc__buf_size(&e->out);
    return 0;
}

static int can_send(smtpc__engine *e, const char *what)
{
    if (e->fatal)
        return smtpc__err(&e->err, SMTPC_ESTATE, "%s: the connection failed earlier", what);
    if (e->closing)
        return smtpc__err(&e->err, SMTPC_ESTATE, "%s: the connection is closing (QUIT or 421)",
                          what);
    if (e->tls_wait || e->starttls_pending)
        return smtpc__err(&e->err, SMTPC_ESTATE, "%s: STARTTLS is in progress", what);
    if (e->body_mode != BODY_NONE)
        return smtpc__err(&e->err, SMTPC_ESTATE, "%s: a message body is being sent", what);
    if (e->t.state != TXN_IDLE)
        return smtpc__err(&e->err, SMTPC_ESTATE, "%s: a mail transaction is in progress (%s)",
                          what, txn_state_names[e->t.state]);
    return 0;
}

static int need_hello(smtpc__engine *e, const char *what)
{
    if (e->need_ehlo)
        return smtpc__err(&e->err, SMTPC_ESTATE, "%s: EHLO is required again after STARTTLS",
                          what);
    return 0;
}

/* One simple command, already formatted in b. */
static int send_simple(smtpc__engine *e, smtpc__buf *b, smtpc__cmd cmd, uint32_t tag, size_t max,
                       bool secret)
{
    int rc;
    if (smtpc__buf_size(b) + 2 > max)
        rc = smtpc__err(&e->err, SMTPC_ELIMIT, "%s command line longer than %zu octets",
                        smtpc__cmd_name(cmd), max);
    else
        rc = send_line(e, (const char *)smtpc__buf_ptr(b), smtpc__buf_size(b), cmd, tag, PK_USER,
                       secret);
    if (secret) smtpc__buf_free_secure(b);
    else smtpc__buf_free(b);
    return rc;
}

/* ---- validation and formatting -------------------------------------------------- */
static int check_text(smtpc__engine *e, const char *what, const char *s)
{
    if (!s) return smtpc__err(&e->err, SMTPC_EINVAL, "%s is missing", what);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p == '\r' || *p == '\n')
            return smtpc__err(&e->err, SMTPC_EINVAL, "%s contains CR or LF", what);
    return 0;
}

/* Strings come as C strings, so a NUL ends them; the "with length" variant
 * catches embedded NULs where a length is known. Control characters other
 * than CR/LF are refused too: no SMTP argument legitimately contains them. */
static int check_arg(smtpc__engine *e, const char *what, const char *s, bool allow_space)
{
    int rc = check_text(e, what, s);
    if (rc) return rc;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            return smtpc__err(&e->err, SMTPC_EINVAL, "%s contains a control character", what);
        if (*p == ' ' && !allow_space)
            return smtpc__err(&e->err, SMTPC_EINVAL, "%s contains a space", what);
    }
    return 0;
}

static int check_domain(smtpc__engine *e, const char *d)
{
    int rc = check_arg(e, "EHLO/HELO name", d, false);
    if (!rc && !*d) rc = smtpc__err(&e->err, SMTPC_EINVAL, "EHLO/HELO name is empty");
    return rc;
}

/* *len: strlen(p) when it is valid. */
static int check_path(smtpc__engine *e, const char *what, const char *p, bool allow_empty, size_t *len)
{
    if (p) {
        /* one pass for the usual path (printable, no brackets); any doubt
         * goes through the checks below, which say what is wrong */
        const unsigned char *s = (const unsigned char *)p;
        size_t i = 0;
        for (unsigned char c; (c = s[i]) != 0; i++)
            if (c < 0x20 || c == 0x7f || c == '<' || c == '>') break;
        if (!s[i] && (i || allow_empty)) {
            *len = i;
            return 0;
        }
    }
    int rc = check_arg(e, what, p, true);
    if (rc) return rc;
    if (!*p && !allow_empty) return smtpc__err(&e->err, SMTPC_EINVAL, "%s is empty", what);
    if (strpbrk(p, "<>"))
        return smtpc__err(&e->err, SMTPC_EINVAL, "%s contains '<' or '>' (give it without brackets)",
                          what);
    *len = strlen(p);
    return 0;
}

/* RFC 3461 4: xtext. */
static int append_xtext(smtpc__buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    int rc = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && !rc; p++) {
        if (*p >= 33 && *p <= 126 && *p != '+' && *p != '=') {
            rc = smtpc__buf_append(b, p, 1);
        } else {
            char x[3] = {'+', hex[*p >> 4], hex[*p & 15]};
            rc = smtpc__buf_append(b, x, 3);
        }
    }
    return rc;
}

/* "K=V K2=V2": RFC 5321 esmtp-keyword / esmtp-value, single spaces. */
static int check_esmtp_params(smtpc__engine *e, const char *s)
{
    int rc = check_text(e, "ESMTP parameter", s);
    if (rc) return rc;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
            goto bad;
        while ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
               *p == '-')
            p++;
        if (*p == '=') {
            p++;
            const unsigned char *v = p;
            while (*p && *p != ' ' && *p != '=' && *p > 0x20 && *p != 0x7f) p++;
            if (p == v || (*p && *p != ' ')) goto bad;
        }
        if (*p == ' ') {
            p++;
            if (!*p || *p == ' ') goto bad;
        } else if (*p) {
            goto bad;
        }
    }
    return 0;
bad:
    return smtpc__err(&e->err, SMTPC_EINVAL, "malformed ESMTP parameter near offset %zu of \"%.40s\"",
                      (size_t)(p - (const unsigned char *)s), s);
}

static bool is_8bit(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80) return true;
    return false;
}

/* "MAIL FROM:<from> params" into b (initialised by the caller). */
static int format_mail(smtpc__engine *e, smtpc__buf *b, const char *from, const smtpc__mail_params *p)
{
    size_t base = smtpc__buf_size(b), fl = 0;
    int rc = check_path(e, "reverse-path", from, true, &fl);
    if (rc) return rc;
    /* appends, not printf: ~1,500 instructions less per command */
    if (smtpc__buf_append(b, "MAIL FROM:<", 11) || smtpc__buf_append(b, from, fl) ||
        smtpc__buf_append(b, ">", 1))
        goto oom;
    if (smtpc__buf_size(b) - base + 2 > CMD_LINE_MAX)
        return smtpc__err(&e->err, SMTPC_ELIMIT, "MAIL command longer than %d octets", CMD_LINE_MAX);
    if (!p) return 0;
    if (p->size) {
        /* every message of a bulk run has one: no printf */
        if (smtpc__buf_append(b, " SIZE=", 6) || smtpc__buf_append_u64(b, p->size)) goto oom;
    }
    static const char *const bodies[] = {NULL, " BODY=7BIT", " BODY=8BITMIME", " BODY=BINARYMIME"};
    if ((unsigned)p->body >= SMTPC__ARRAY_LEN(bodies))
        return smtpc__err(&e->err, SMTPC_EINVAL, "unknown BODY type %d", (int)p->body);
    if (bodies[p->body] && smtpc__buf_append_str(b, bodies[p->body])) goto oom;
    if (p->smtputf8 && smtpc__buf_append_str(b, " SMTPUTF8")) goto oom;
    if (p->dsn_ret) {
        if (smtpc__strcasecmp(p->dsn_ret, "FULL") != 0 && smtpc__strcasecmp(p->dsn_ret, "HDRS") != 0)
            return smtpc__err(&e->err, SMTPC_EINVAL, "RET must be FULL or HDRS");
        if (smtpc__buf_printf(b, " RET=%s", p->dsn_ret[0] == 'F' || p->dsn_ret[0] == 'f' ? "FULL" : "HDRS"))
            goto oom;
    }
    if (p->dsn_envid) {
        /* RFC 3461 4.4: printable US-ASCII, at most 100 characters */
        if ((rc = check_arg(e, "ENVID", p->dsn_envid, true)) != 0) return rc;
        if (is_8bit(p->dsn_envid))
            return smtpc__err(&e->err, SMTPC_EINVAL, "ENVID must be US-ASCII");
        if (strlen(p->dsn_envid) > 100)
            return smtpc__err(&e->err, SMTPC_ELIMIT, "ENVID longer than 100 characters");
        if (smtpc__buf_append_str(b, " ENVID=") || append_xtext(b, p->dsn_envid)) goto oom;
    }
    if (p->requiretls && smtpc__buf_append_str(b, " REQUIRETLS")) goto oom;
    if (p->extra && *p->extra) {
        if ((rc = check_esmtp_params(e, p->extra)) != 0) return rc;
        if (smtpc__buf_printf(b, " %s", p->extra)) goto oom;
    }
    if (smtpc__buf_size(b) - base + 2 > CMD_LINE_MAX_PARAMS)
        return smtpc__err(&e->err, SMTPC_ELIMIT, "MAIL command with parameters longer than %d octets",
                          CMD_LINE_MAX_PARAMS);
    return 0;
oom:
    return smtpc__err(&e->err, SMTPC_ENOMEM, "out of memory formatting MAIL");
}

static int check_notify(smtpc__engine *e, const char *n)
{
    int rc = check_arg(e, "NOTIFY", n, false);
    if (rc) return rc;
    if (smtpc__strcasecmp(n, "NEVER") == 0) return 0;
    const char *p = n;
    for (;;) {
        size_t l = strcspn(p, ",");
        if (!((l == 7 && smtpc__strncasecmp(p, "SUCCESS", 7) == 0) ||
              (l == 7 && smtpc__strncasecmp(p, "FAILURE", 7) == 0) ||
              (l == 5 && smtpc__strncasecmp(p, "DELAY", 5) == 0)))
            return smtpc__err(&e->err, SMTPC_EINVAL,
                              "NOTIFY must be NEVER or a list of SUCCESS,FAILURE,DELAY");
        if (!p[l]) return 0;
        p += l + 1;
    }
}

static int format_rcpt(smtpc__engine *e, smtpc__buf *b, const char *to, const smtpc__rcpt_params *p)
{
    size_t base = smtpc__buf_size(b), tol = 0;
    int rc = check_path(e, "forward-path", to, false, &tol);
    if (rc) return rc;
    if (smtpc__buf_append(b, "RCPT TO:<", 9) || smtpc__buf_append(b, to, tol) ||
        smtpc__buf_append(b, ">", 1))
        goto oom;
    if (smtpc__buf_size(b) - base + 2 > CMD_LINE_MAX)
        return smtpc__err(&e->err, SMTPC_ELIMIT, "RCPT command longer than %d octets", CMD_LINE_MAX);
    if (!p) return 0;
    if (p->dsn_notify) {
        if ((rc = check_notify(e, p->dsn_notify)) != 0) return rc;
        if (smtpc__buf_printf(b, " NOTIFY=%s", p->dsn_notify)) goto oom;
    }
    if (p->dsn_orcpt) {
        if ((rc = check_arg(e, "ORCPT", p->dsn_orcpt, true)) != 0) return rc;
        const char *addr = p->dsn_orcpt, *semi = strchr(addr, ';');
        const char *type = "rfc822";
        size_t tl = 6;
        if (semi) {
            type = addr;
            tl = (size_t)(semi - addr);
            addr = semi + 1;
            for (size_t i = 0; i < tl; i++) {
                char c = type[i];
                if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '-'))
                    return smtpc__err(&e->err, SMTPC_EINVAL, "ORCPT address type is malformed");
            }
            if (!tl) return smtpc__err(&e->err, SMTPC_EINVAL, "ORCPT address type is empty");
        }
        if (!*addr) return smtpc__err(&e->err, SMTPC_EINVAL, "ORCPT address is empty");
        if (smtpc__buf_printf(b, " ORCPT=%.*s;", (int)tl, type) || append_xtext(b, addr)) goto oom;
    }
    if (smtpc__buf_size(b) - base + 2 > CMD_LINE_MAX_PARAMS)
        return smtpc__err(&e->err, SMTPC_ELIMIT, "RCPT command with parameters longer than %d octets",
                          CMD_LINE_MAX_PARAMS);
    return 0;
oom:
    return smtpc__err(&e->err, SMTPC_ENOMEM, "out of memory formatting RCPT");
}

/* ---- single commands ------------------------------------------------------------ */
int smtpc__engine_expect_greeting(smtpc__engine *e)
{
    int rc = can_send(e, "greeting");
    if (rc) return rc;
    if ((rc = pend_push(e, SMTPC__CMD_GREETING, 0, PK_USER)) != 0)
        return smtpc__err(&e->err, rc, "out of memory");
    return 0;
}

static int hello(smtpc__engine *e, const char *verb, smtpc__cmd cmd, const char *domain)
{
    int rc = can_send(e, verb);
    if (!rc) rc = check_domain(e, domain);
    if (rc) return rc;
    smtpc__buf b;
    smtpc__buf_init(&b, 0);
    if (smtpc__buf_printf(&b, "%s %s", verb, domain)) {
        smtpc__buf_free(&b);
        return smtpc__err(&e->err, SMTPC_ENOMEM, "out of memory");
    }
    return send_simple(e, &b, cmd, 0, CMD_LINE_MAX, false);
}

int smtpc__engine_ehlo(smtpc__engine *e, const char *domain)
{
    return hello(e, "EHLO", SMTPC__CMD_EHLO, domain);
}

int smtpc__engine_helo(smtpc__engine *e, const char *domain)
{
    return hello(e, "HELO", SMTPC__CMD_HELO, domain);
}

int smtpc__engine_starttls(smtpc__engine *e)
{
    int rc = can_send(e, "STARTTLS");
    if (rc) return rc;
    if (e->tls_active)
        return smtpc__err(&e->err, SMTPC_ESTATE, "STARTTLS: TLS is already active");
    if ((rc = send_line(e, "STARTTLS", 8, SMTPC__CMD_STARTTLS, 0, PK_USER, false)) != 0) return rc;
    /* RFC 3207 4.2: STARTTLS ends a pipelined group; nothing may follow it */
    e->starttls_pending = true;
    return 0;
}

static bool is_b64(const char *s)
{
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/' || c == '='))
            return false;
    }
    return true;
}

int smtpc__engine_auth(smtpc__engine *e, const char *mech, const char *initial_b64)
{
    int rc = can_send(e, "AUTH");
    if (!rc) rc = need_hello(e, "AUTH");
    if (!rc) rc = check_arg(e, "SASL mechanism", mech, false);
    if (rc) return rc;
    size_t ml = strlen(mech);
    bool ok = ml >= 1 && ml <= 20; /* RFC 4422 3.1 */
    for (size_t i = 0; ok && i < ml; i++) {
        char c = mech[i];
        ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
             c == '-' || c == '_';
    }
    if (!ok) return smtpc__err(&e->err, SMTPC_EINVAL, "malformed SASL mechanism name");
    if (initial_b64 && !is_b64(initial_b64))
        return smtpc__err(&e->err, SMTPC_EINVAL, "AUTH initial response is not base64");
    smtpc__buf b; /* the line carries the credential: no copy of it may stay behind */
    smtpc__buf_init_secure(&b, 0);
    int f = initial_b64 ? smtpc__buf_printf(&b, "AUTH %s %s", mech, *initial_b64 ? initial_b64 : "=")
                        : smtpc__buf_printf(&b, "AUTH %s", mech);
    if (f) {
        smtpc__buf_free_secure(&b);
        return smtpc__err(&e->err, SMTPC_ENOMEM, "out of memory");
    }
    e->auth_cont_ok = false;
    return send_simple(e, &b, SMTPC__CMD_AUTH, 0, AUTH_LINE_MAX, initial_b64 != NULL);
}

int smtpc__engine_auth_continue(smtpc__engine *e, const char *b64)
{
    int rc = can_send(e, "AUTH continuation");
    if (rc) return rc;
    if (!e->auth_cont_ok)
        return smtpc__err(&e->err, SMTPC_ESTATE, "AUTH continuation without a 334 challenge");
    if (!b64 || (strcmp(b64, "*") != 0 && !is_b64(b64)))
        return smtpc__err(&e->err, SMTPC_EINVAL, "AUTH continuation is not base64 or \"*\"");
    size_t n = strlen(b64);
    if (n + 2 > AUTH_LINE_MAX)
        return smtpc__err(&e->err, SMTPC_ELIMIT, "AUTH continuation longer than %d octets",
                          AUTH_LINE_MAX);
    if ((rc = send_line(e, b64, n, SMTPC__CMD_AUTH, 0, PK_USER, true)) != 0) return rc;
    e->auth_cont_ok = false;
    return 0;
}

int smtpc__engine_mail(smtpc__engine *e, const char *from, const smtpc__mail_params *p)
{
    int rc = can_send(e, "MAIL");
    if (!rc) rc = need_hello(e, "MAIL");
    if (rc) return rc;
    smtpc__buf b;
    smtpc__buf_init(&b, 0);
    if ((rc = format_mail(e, &b, from, p)) != 0) {
        smtpc__buf_free(&b);
        return rc;
    }
    return send_simple(e, &b, SMTPC__CMD_MAIL, 0, CMD_LINE_MAX_PARAMS, false);
}

int smtpc__engine_rcpt(smtpc__engine *e, const char *to, const smtpc__rcpt_params *p, uint32_t tag)
{
    int rc = can_send(e, "RCPT");
    if (!rc) rc = need_hello(e, "RCPT");
    if (rc) return rc;
    smtpc__buf b;
    smtpc__buf_init(&b, 0);
    if ((rc = format_rcpt(e, &b, to, p)) != 0) {
        smtpc__buf_free(&b);
        return rc;
    }
    return send_simple(e, &b, SMTPC__CMD_RCPT, tag, CMD_LINE_MAX_PARAMS, false);
}

static int fixed(smtpc__engine *e, const char *verb, smtpc__cmd cmd)
{
    int rc = can_send(e, verb);
    if (rc) return rc;
    return send_line(e, verb, strlen(verb), cmd, 0, PK_USER, false);
}

int smtpc__engine_data(smtpc__engine *e)
{
    int rc = need_hello(e, "DATA");
    return rc ? rc : fixed(e, "DATA", SMTPC__CMD_DATA);
}

int smtpc__engine_rset(smtpc__engine *e)
{
    return fixed(e, "RSET", SMTPC__CMD_RSET);
}

int smtpc__engine_noop(smtpc__engine *e)
{
    return fixed(e, "NOOP", SMTPC__CMD_NOOP);
}

int smtpc__engine_quit(smtpc__engine *e)
{
    int rc = fixed(e, "QUIT", SMTPC__CMD_QUIT);
    if (!rc) e->closing = true;
    return rc;
}

int smtpc__engine_raw(smtpc__engine *e, const char *line)
{
    int rc = can_send(e, "raw command");
    if (!rc) rc = check_text(e, "raw command", line);
    if (rc) return rc;
    size_t n = strlen(line);
    if (n + 2 > CMD_LINE_MAX)
        return smtpc__err(&e->err, SMTPC_ELIMIT, "command line longer than %d octets", CMD_LINE_MAX);
    return send_line(e, line, n, SMTPC__CMD_RAW, 0, PK_USER, false);
}

/* ---- transactions ------------------------------------------------------------------ */
static int status_of(const smtpc__reply *r)
{
    if (r->code >= 400 && r->code < 500) return SMTPC_ETEMPFAIL;
    if (r->code >= 500) return SMTPC_EPERMFAIL;
    return SMTPC_EPROTO; /* e.g. 250 where 354 was due */
}

static bool positive(const smtpc__reply *r)
{
    return r->code >= 200 && r->code < 300;
}

static void txn_set_state(smtpc__engine *e, enum txn_state st)
{
    e->t.state = st;
}

/* EV_TXN_DONE: cmd is the command whose reply r decided the outcome. */
static int txn_done(smtpc__engine *e, int status, const smtpc__reply *r, smtpc__cmd cmd)
{
    int rc = ev_push(e, SMTPC__EV_TXN_DONE, cmd, 0, status, r);
    if (e->body_in_txn) {
        e->body_mode = BODY_NONE;
        e->body_in_txn = false;
    }
    txn_clear(e);
    txn_set_state(e, TXN_IDLE);
    return rc;
}

/* The reply that decided a failed envelope. */
static const smtpc__reply *envelope_decider(const txn *t)
{
    if (!t->mail_ok) return t->mail_reply;
    return t->first_refusal;
}

static smtpc__cmd envelope_decider_cmd(const txn *t)
{
    return t->mail_ok ? SMTPC__CMD_RCPT : SMTPC__CMD_MAIL;
}

static bool envelope_ok(const txn *t)
{
    return t->mail_ok && t->accepted > 0 && !(t->strict && t->refused > 0);
}

/* Ends a failed transaction politely: [".\r\n"] then RSET, then EV_TXN_DONE
 * with the deciding reply once the clean-up replies are in. */
static int txn_cleanup(smtpc__engine *e, const smtpc__reply *decider, smtpc__cmd cmd,
                       bool empty_data_end)
{
    txn *t = &e->t;
    smtpc__reply *d = reply_copy(e, decider);
    if (!d) return smtpc__err(&e->err, SMTPC_ENOMEM, "out of memory");
    reply_drop(e, t->decider);
    t->decider = d;
    t->decider_status = status_of(decider);
    t->decider_cmd = cmd;
    int rc = 0;
    if (empty_data_end) {
        /* The server said 354 although nobody can receive the message: the
         * only way out of DATA is an end of data. */
        rc = send_line(e, ".", 1, SMTPC__CMD_DATA_END, 0, PK_INTERNAL, false);
        if (!rc) t->cleanup_pending++;
    }
    if (!rc) rc = send_line(e, "RSET", 4, SMTPC__CMD_RSET, 0, PK_INTERNAL, false);
    if (!rc) t->cleanup_pending++;
    if (rc) return rc;
    txn_set_state(e, TXN_CLEANUP);
    return 0;
}

static int txn_send_next(smtpc__engine *e, smtpc__cmd cmd, uint32_t tag)
{
    txn *t = &e->t;
    size_t i = t->next_line++;
    const char *l = (const char *)smtpc__buf_ptr(&e->lines) + e->line_off[i];
    return send_line(e, l, e->line_off[i + 1] - e->line_off[i] - 1, cmd, tag, PK_TXN, false);
}

static int txn_want_body(smtpc__engine *e)
{
    e->body_mode = e->t.bdat ? BODY_BDAT : BODY_DATA;
    e->body_in_txn = true;
    e->body_raw = e->t.bdat && e->t.binary;
    smtpc__dotstuff_init(&e->ds);
    smtpc__buf_reset(&e->chunk);
    txn_set_state(e, TXN_BODY);
    return ev_push(e, SMTPC__EV_TXN_BODY, e->t.bdat ? SMTPC__CMD_BDAT : SMTPC__CMD_DATA, 0, 0, NULL);
}

/* Every RCPT has been answered; only reached when DATA was not pipelined. */

static int txn_after_rcpts(smtpc__engine *e)
{
    txn *t = &e->t;
    if (!envelope_ok(t)) return txn_cleanup(e, envelope_decider(t), envelope_decider_cmd(t), false);
    if (t->bdat) return txn_want_body(e);
    return txn_send_next(e, SMTPC__CMD_DATA, 0);
}

static int txn_on_mail(smtpc__engine *e, const smtpc__reply *r)
{
    txn *t = &e->t;
    t->mail_ok = positive(r);
    /* kept only to decide a failed envelope */
    if (!t->mail_ok && !(t->mail_reply = reply_copy(e, r)))
        return smtpc__err(&e->err, SMTPC_ENOMEM, "out of memory");
    if (t->pipelined) return 0;
    if (!t->mail_ok) return txn_done(e, status_of(r), t->mail_reply, SMTPC__CMD_MAIL); /* nothing to reset */
    return txn_send_next(e, SMTPC__CMD_RCPT, 0);
}

static int txn_on_rcpt(smtpc__engine *e, const pending *p, const smtpc__reply *r)
{
    txn *t = &e->t;
    int rc = ev_push(e, SMTPC__EV_TXN_RCPT, SMTPC__CMD_RCPT, p->tag, 0, r);
    if (rc) return smtpc__err(&e->err, rc, "out of memory");
    t->rcpt_replies++;
    if (positive(r)) {
        t->accepted++;
    } else {
        t->refused++;
        if (!t->first_refusal && !(t->first_refusal = reply_copy(e, r)))
            return smtpc__err(&e->err, SMTPC_ENOMEM, "out of memory");
    }
    if (t->rcpt_replies < t->nrcpts) return t->pipelined ? 0 : txn_send_next(e, SMTPC__CMD_RCPT, (uint32_t)t->rcpt_replies);
    if (t->data_in_group) return 0; /* the DATA reply decides */
    return txn_after_rcpts(e);
}

/* The server said 354 to a transaction that must not deliver, yet some
 * recipient was accepted (a server accepting RCPT after refusing MAIL): any
 * end of data would deliver an empty message, and RSET or QUIT would be
 * message text. Only dropping the connection is safe: the engine closes. */
static int txn_abandon(smtpc__engine *e, const smtpc__reply *decider, smtpc__cmd cmd)
{
    e->closing = true;
    e->pend_head = e->pend_len = 0;
    smtpc__err(&e->err, status_of(decider),
               "354 to DATA for a refused transaction with accepted recipients: "
               "close the connection (an end of data would deliver)");
    return txn_done(e, status_of(decider), decider, cmd);
}

static int txn_on_data(smtpc__engine *e, const smtpc__reply *r)
{
    txn *t = &e->t;
    bool ok = envelope_ok(t);
    if (r->code == 354) {
        if (ok) return txn_want_body(e);
        /* With no recipient an empty end of data delivers nothing (RFC 2920 3.1) */
        if (t->accepted == 0)
            return txn_cleanup(e, envelope_decider(t), envelope_decider_cmd(t), true);
        return txn_abandon(e, envelope_decider(t), envelope_decider_cmd(t));
    }
    if (ok) return txn_cleanup(e, r, SMTPC__CMD_DATA, false);
    return txn_cleanup(e, envelope_decider(t), envelope_decider_cmd(t), false);
}

static int txn_bdat_settle(smtpc__engine *e, const smtpc__reply *r)
{
    txn *t = &e->t;
    if (t->bdat_pending || !t->body_ended) return 0;
    if (t->bdat_fail) return txn_cleanup(e, t->bdat_fail, SMTPC__CMD_BDAT, false);
    return txn_done(e, 0, r, SMTPC__CMD_BDAT);
}

static int txn_on_reply(smtpc__engine *e, const pending *p, const smtpc__reply *r)
{
    txn *t = &e->t;
    switch (p->cmd) {
    case SMTPC__CMD_MAIL: return txn_on_mail(e, r);
    case SMTPC__CMD_RCPT: return txn_on_rcpt(e, p, r);
    case SMTPC__CMD_DATA: return txn_on_data(e, r);
    case SMTPC__CMD_DATA_END: return txn_done(e, positive(r) ? 0 : status_of(r), r, SMTPC__CMD_DATA_END);
    case SMTPC__CMD_BDAT:
        t->bdat_pending--;
        if (!positive(r) && !t->bdat_fail) {
            /* RFC 3030 2: no further chunk may be sent; body_write discards */
            if (!(t->bdat_fail = reply_copy(e, r)))
                return smtpc__err(&e->err, SMTPC_ENOMEM, "out of memory");
            smtpc__buf_reset(&e->chunk);
        }
        return txn_bdat_settle(e, r);
    default: return 0;
    }
}

static int internal_on_reply(smtpc__engine *e)
{
    txn *t = &e->t;
    if (t->cleanup_pending && --t->cleanup_pending == 0 && t->state == TXN_CLEANUP)
        return txn_done(e, t->decider_status, t->decider, t->decider_cmd);
    return 0;
}

static int check_txn_caps(smtpc__engine *e, const smtpc__txn_opts *o, smtpc__mail_params *mp)
{
    unsigned f = e->caps.flags;
    const char *miss = NULL;
    if (o->use_bdat && !(f & SMTPC_EXT_CHUNKING)) miss = "CHUNKING";
    else if (mp->smtputf8 && !(f & SMTPC_EXT_SMTPUTF8)) miss = "SMTPUTF8";
    else if (mp->body == SMTPC__BODY_8BITMIME && !(f & SMTPC_EXT_8BITMIME)) miss = "8BITMIME";
    else if (mp->body == SMTPC__BODY_BINARYMIME && !(f & SMTPC_EXT_BINARYMIME)) miss = "BINARYMIME";
    else if ((mp->dsn_ret || mp->dsn_envid) && !(f & SMTPC_EXT_DSN)) miss = "DSN";
    else if (mp->requiretls && !(f & SMTPC_EXT_REQUIRETLS)) miss = "REQUIRETLS";
    for (size_t i = 0; !miss && o->rcpt && i < o->nrcpts; i++)
        if ((o->rcpt[i].dsn_notify || o->rcpt[i].dsn_orcpt) && !(f & SMTPC_EXT_DSN)) miss = "DSN";
    if (miss)
        return smtpc__err(&e->err, SMTPC_EUNSUPPORTED, "the server does not offer %s", miss);
    if (mp->body == SMTPC__BODY_BINARYMIME && !o->use_bdat)
        return smtpc__err(&e->err, SMTPC_EINVAL, "BODY=BINARYMIME needs BDAT (RFC 3030)");
    if (mp->requiretls && !e->tls_active)
        return smtpc__err(&e->err, SMTPC_EUNSUPPORTED, "REQUIRETLS needs a TLS connection");
    if (!(f & SMTPC_EXT_SIZE)) mp->size = 0; /* SIZE= to a server without SIZE is a 555 */
    else if (e->caps.size_max && mp->size > e->caps.size_max)
        return smtpc__err(&e->err, SMTPC_ELIMIT, "message size %llu exceeds the server's limit %llu",
                          (unsigned long long)mp->size, (unsigned long long)e->caps.size_max);
    return 0;
}

/* The current transaction has written its final dot and only awaits the
 * reply: with PIPELINING the next one may go in the same write (RFC 2920
 * 3.1: the end of data is followed by the next MAIL). The waiting
 * transaction becomes a bare PK_PREV_END reply that reports EV_TXN_DONE. */
int smtpc__engine_txn_chain(smtpc__engine *e)
{
    txn *t = &e->t;
    if (t->state != TXN_WAIT_END || t->bdat || !t->pipelined || !(e->caps.flags & SMTPC_EXT_PIPELINING) ||
        e->closing || e->fatal)
        return smtpc__err(&e->err, SMTPC_ESTATE,
                          "transaction: cannot chain (the previous one is %s%s)",
                          txn_state_names[t->state], t->bdat ? ", BDAT" : "");
    size_t found = 0;
    for (size_t i = e->pend_head; i < e->pend_len; i++) {
        if (e->pend[i].kind == PK_TXN && e->pend[i].cmd == SMTPC__CMD_DATA_END) {
            e->pend[i].kind = PK_PREV_END;
            found++;
        }
    }
    if (found != 1)
        return smtpc__err(&e->err, SMTPC_ESTATE, "transaction: no end of data to chain after");
    e->body_in_txn = false;
    e->body_mode = BODY_NONE;
    txn_clear(e);
    txn_set_state(e, TXN_IDLE);
    return 0;
}

int smtpc__engine_txn_begin(smtpc__engine *e, const smtpc__txn_opts *o)
{
    int rc = can_send(e, "transaction");
    if (!rc) rc = need_hello(e, "transaction");
    if (rc) return rc;
    if (!o || !o->rcpts || o->nrcpts == 0)
        return smtpc__err(&e->err, SMTPC_EINVAL, "a transaction needs at least one recipient");
    if (o->nrcpts > UINT32_MAX)
        return smtpc__err(&e->err, SMTPC_ELIMIT, "too many recipients");
    smtpc__mail_params mp = {0};
    if (o->mail) mp = *o->mail;
    if ((rc = check_txn_caps(e, o, &mp)) != 0) return rc;
    bool eight = o->from && is_8bit(o->from);
    for (size_t i = 0; !eight && i < o->nrcpts; i++) eight = o->rcpts[i] && is_8bit(o->rcpts[i]);
    if (eight && !mp.smtputf8)
        return smtpc__err(&e->err, SMTPC_EINVAL, "non-ASCII address needs SMTPUTF8");

    /* Format and validate every line first: a failure queues nothing. The
     * lines go into e->lines, free since no transaction is running. */
    txn nt;
    memset(&nt, 0, sizeof nt);
    if (o->nrcpts + 3 > e->line_off_cap) {
        size_t nc = o->nrcpts + 3 > 16 ? o->nrcpts + 3 : 16;
        size_t *no = realloc(e->line_off, nc * sizeof *no);
        if (!no) return smtpc__err(&e->err, SMTPC_ENOMEM, "out of memory");
        e->line_off = no;
        e->line_off_cap = nc;
    }
    smtpc__buf *b = &e->lines;
    smtpc__buf_reset(b);
    e->line_off[0] = 0;
    rc = format_mail(e, b, o->from, &mp);
    for (size_t i = 0; !rc && i <= o->nrcpts; i++) {
        if (smtpc__buf_append(b, "", 1)) rc = smtpc__err(&e->err, SMTPC_ENOMEM, "out of memory");
        else e->line_off[++nt.nlines] = smtpc__buf_size(b);
        if (!rc && i < o->nrcpts)
            rc = format_rcpt(e, b, o->rcpts[i], o->rcpt ? &o->rcpt[i] : NULL);
    }
    if (!rc && !o->use_bdat) {
        if (smtpc__buf_append(b, "DATA", 5)) rc = smtpc__err(&e->err, SMTPC_ENOMEM, "out of memory");
        else e->line_off[++nt.nlines] = smtpc__buf_size(b);
    }
    if (rc) {
        smtpc__buf_reset(b);
        return rc;
    }
    nt.pipelined = (e->caps.flags & SMTPC_EXT_PIPELINING) != 0;
    nt.bdat = o->use_bdat;
    nt.strict = o->policy == SMTPC__TXN_STRICT;
    nt.binary = mp.body == SMTPC__BODY_BINARYMIME;
    /* STRICT keeps DATA out of the group: if some RCPT is refused while
     * others are accepted, a 354 could only be left by delivering. With one
     * recipient there is no such mix (refused: nobody gets the empty end of
     * data), so DATA joins the group and saves a round trip. */
    nt.data_in_group = nt.pipelined && !nt.bdat && (!nt.strict || o->nrcpts == 1);
    nt.nrcpts = o->nrcpts;
    nt.state = TXN_ENVELOPE;

    /* marks to undo a half-queued group; pend_push compacts an empty queue */
    if (e->pend_head == e->pend_len) e->pend_head = e->pend_len = 0;
    size_t omark = out_mark(e), pend_mark = e->pend_len;
    e->t = nt;
    if (!nt.pipelined) {
        rc = txn_send_next(e, SMTPC__CMD_MAIL, 0);
    } else {
        /* RFC 2920: one group, one write; every reply is still checked */
        rc = txn_send_next(e, SMTPC__CMD_MAIL, 0);
        for (size_t i = 0; !rc && i < o->nrcpts; i++) rc = txn_send_next(e, SMTPC__CMD_RCPT, (uint32_t)i);
        if (!rc && nt.data_in_group) rc = txn_send_next(e, SMTPC__CMD_DATA, 0);
    }
    if (rc) {
        out_rollback(e, omark);
        e->pend_len = pend_mark;
        txn_clear(e);
    }
    return rc;
}

/* ---- body -------------------------------------------------------------------------- */
int smtpc__engine_body_begin_bdat(smtpc__engine *e)
{
    if (e->body_in_txn && e->body_mode == BODY_BDAT) return 0; /* txn with use_bdat */
    int rc = can_send(e, "BDAT");
    if (!rc) rc = need_hello(e, "BDAT");
    if (rc) return rc;
    e->body_mode = BODY_BDAT;
    e->body_in_txn = false;
    e->body_raw = false;
    smtpc__dotstuff_init(&e->ds);
    smtpc__buf_reset(&e->chunk);
    return 0;
}

static int body_check(smtpc__engine *e, const char *what)
{
    if (e->fatal) return smtpc__err(&e->err, SMTPC_ESTATE, "%s: the connection failed earlier", what);
    if (e->body_mode == BODY_NONE)
        return smtpc__err(&e->err, SMTPC_ESTATE, "%s: no message body is expected now", what);
    if (e->body_in_txn && e->t.body_ended)
        return smtpc__err(&e->err, SMTPC_ESTATE, "%s: the body already ended", what);
    return 0;
}

/* Sends "BDAT n [LAST]" and n bytes of the pending chunk. */
static int bdat_flush(smtpc__engine *e, size_t n, bool last)
{
    char line[64];
    int l = snprintf(line, sizeof line, "BDAT %zu%s", n, last ? " LAST" : "");
    size_t mark = out_mark(e);
    int rc = send_line(e, line, (size_t)l, SMTPC__CMD_BDAT, 0, e->body_in_txn ? PK_TXN : PK_USER, false);
    if (!rc && (rc = smtpc__buf_append(&e->out, smtpc__buf_ptr(&e->chunk), n)) != 0) {
        out_rollback(e, mark);
        e->pend_len--;
    }
    if (rc) return smtpc__err(&e->err, rc, "cannot queue BDAT chunk");
    smtpc__buf_consume(&e->chunk, n);
    if (e->body_in_txn) e->t.bdat_pending++;
    return 0;
}

int smtpc__engine_body_write(smtpc__engine *e, const void *data, size_t len)
{
    int rc = body_check(e, "body write");
    if (rc) return rc;
    const uint8_t *in = data;
    if (e->body_mode == BODY_DATA) {
        /* in slices, so a huge write never reserves twice its size at once;
         * on failure nothing of this write stays queued */
        size_t mark = out_mark(e);
        smtpc__dotstuff saved = e->ds;
        while (len && !rc) {
            size_t n = len < 65536 ? len : 65536;
            rc = smtpc__dotstuff_write(&e->ds, true, in, n, &e->out);
            in += n;
            len -= n;
        }
        if (!rc) return 0;
        out_rollback(e, mark);
        e->ds = saved;
        if (rc == SMTPC_ELIMIT)
            return smtpc__err(&e->err, rc, "message body line longer than 998 octets");
        return smtpc__err(&e->err, rc, "out of memory");
    }
    if (e->body_in_txn && e->t.bdat_fail) return 0; /* the transaction failed: discard */
    size_t cs = e->opts.bdat_chunk_size;
    /* slices keep the pending chunk below two chunk sizes whatever len is */
    size_t slice = cs / 2 ? cs / 2 : 1;
    while (len) {
        size_t n = len < slice ? len : slice;
        rc = e->body_raw ? smtpc__buf_append(&e->chunk, in, n)
                         : smtpc__dotstuff_write(&e->ds, false, in, n, &e->chunk);
        if (rc == SMTPC_ELIMIT) return smtpc__err(&e->err, rc, "message body line longer than 998 octets");
        if (rc) return smtpc__err(&e->err, rc, "out of memory");
        in += n;
        len -= n;
        while (smtpc__buf_size(&e->chunk) >= cs)
            if ((rc = bdat_flush(e, cs, false)) != 0) return rc;
    }
    return 0;
}

int smtpc__engine_body_end(smtpc__engine *e)
{
    int rc = body_check(e, "body end");
    if (rc) return rc;
    if (e->body_mode == BODY_DATA) {
        size_t mark = out_mark(e);
        if ((rc = smtpc__dotstuff_finish(&e->ds, true, &e->out)) != 0)
            return smtpc__err(&e->err, rc, "out of memory");
        if ((rc = pend_push(e, SMTPC__CMD_DATA_END, 0, e->body_in_txn ? PK_TXN : PK_USER)) != 0) {
            out_rollback(e, mark);
            return smtpc__err(&e->err, rc, "out of memory");
        }
        if (e->trace) e->trace(e->trace_ud, SMTPC__TRACE_CLIENT, ".", 1, false);
    } else {
        if (e->body_in_txn && e->t.bdat_fail) {
            e->t.body_ended = true;
            e->body_mode = BODY_NONE;
            txn_set_state(e, TXN_WAIT_END);
            return txn_bdat_settle(e, e->t.bdat_fail);
        }
        if (!e->body_raw && (rc = smtpc__dotstuff_finish(&e->ds, false, &e->chunk)) != 0)
            return smtpc__err(&e->err, rc, "out of memory");
        /* what remains is at most one chunk plus a CRLF: send it as LAST */
        if ((rc = bdat_flush(e, smtpc__buf_size(&e->chunk), true)) != 0) return rc;
    }
    e->body_mode = BODY_NONE;
    if (e->body_in_txn) {
        e->t.body_ended = true;
        txn_set_state(e, TXN_WAIT_END);
    }
    return 0;
}

/* ---- input ---------------------------------------------------------------------------- */
static int user_on_reply(smtpc__engine *e, const pending *p, const smtpc__reply *r)
{
    int rc;
    smtpc__event_type type = SMTPC__EV_REPLY;
    switch (p->cmd) {
    case SMTPC__CMD_EHLO:
        if (positive(r)) {
            if ((rc = smtpc__caps_parse(&e->caps, r, &e->err)) != 0) return rc;
            smtpc__reply_parser_set_enhanced(e->parser,
                                             (e->caps.flags & SMTPC_EXT_ENHANCEDSTATUSCODES) != 0);
            e->need_ehlo = false;
        }
        break;
    case SMTPC__CMD_HELO:
        if (positive(r)) {
            smtpc__caps_clear(&e->caps);
            smtpc__reply_parser_set_enhanced(e->parser, false);
            e->need_ehlo = false;
        }
        break;
    case SMTPC__CMD_STARTTLS:
        e->starttls_pending = false;
        if (r->code == 220) {
            e->tls_wait = true;
            type = SMTPC__EV_TLS_READY;
        }
        break;
    case SMTPC__CMD_AUTH: e->auth_cont_ok = r->code == 334; break;
    case SMTPC__CMD_DATA:
        if (r->code == 354) {
            e->body_mode = BODY_DATA;
            e->body_in_txn = false;
            smtpc__dotstuff_init(&e->ds);
        }
        break;
    default: break;
    }
    rc = ev_push(e, type, p->cmd, p->tag, 0, r);
    return rc ? smtpc__err(&e->err, rc, "out of memory") : 0;
}

static int on_reply(smtpc__engine *e, smtpc__reply *r)
{
    trace_reply(e, r);
    reply_drop(e, e->last);
    e->last = r;
    int rc;
    if (e->pend_head == e->pend_len) {
        if (r->code == 421 && !e->closing) {
            /* The server shuts down on its own (RFC 5321 3.8): report it
             * (once: a second one is a reply to nothing). */
            e->closing = true;
            rc = ev_push(e, SMTPC__EV_REPLY, SMTPC__CMD_NONE, 0, 0, r);
            /* e.g. while the body is being written: the transaction is over */
            if (!rc && e->t.state != TXN_IDLE)
                rc = txn_done(e, SMTPC_ETEMPFAIL, r, SMTPC__CMD_NONE);
            return rc ? smtpc__err(&e->err, rc, "out of memory") : 0;
        }
        char shown[96];
        smtpc__escape_into(shown, sizeof shown, r->text, strlen(r->text) > 60 ? 60 : strlen(r->text));
        return smtpc__err(&e->err, SMTPC_EPROTO, "reply received when no command was pending: %d %s",
                          r->code, shown);
    }
    pending p = e->pend[e->pend_head++];
    switch (p.kind) {
    case PK_USER: rc = user_on_reply(e, &p, r); break;
    case PK_TXN: rc = txn_on_reply(e, &p, r); break;
    case PK_PREV_END:
        rc = ev_push(e, SMTPC__EV_TXN_DONE, SMTPC__CMD_DATA_END, 0, positive(r) ? 0 : status_of(r), r);
        if (rc) rc = smtpc__err(&e->err, rc, "out of memory");
        break;
    default: rc = internal_on_reply(e); break;
    }
    if (rc) return rc;
    if (r->code == 421) {
        /* The server is closing: nothing else will be answered. */
        e->closing = true;
        e->pend_head = e->pend_len = 0;
        e->starttls_pending = false;
        if (e->t.state != TXN_IDLE)
            rc = txn_done(e, e->t.decider ? e->t.decider_status : SMTPC_ETEMPFAIL,
                          e->t.decider ? e->t.decider : r,
                          e->t.decider ? e->t.decider_cmd
                          : p.kind == PK_PREV_END ? SMTPC__CMD_NONE : p.cmd);
        if (!e->body_in_txn) e->body_mode = BODY_NONE;
    }
    return rc;
}

int smtpc__engine_feed(smtpc__engine *e, const uint8_t *data, size_t len, size_t *consumed)
{
    size_t i = 0;
    reply_drop(e, e->ev_reply);
    e->ev_reply = NULL;
    *consumed = 0;
    if (e->fatal) return e->fatal;
    while (i < len) {
        if (e->tls_wait) {
            e->fatal = SMTPC_EPROTO;
            *consumed = i;
            return smtpc__err(&e->err, SMTPC_EPROTO,
                              "data received after STARTTLS 220 (possible response injection)");
        }
        size_t c = 0;
        const smtpc__reply *v = NULL;
        smtpc__reply *r = NULL;
        /* the parser's reusable view, copied once into one allocation */
        int rc = smtpc__reply_parser_feed_view(e->parser, data + i, len - i, &c, &v, &e->err);
        i += c;
        if (rc == 1 && !(r = reply_copy(e, v))) rc = smtpc__err(&e->err, SMTPC_ENOMEM, "out of memory");
        if (rc == 1) rc = on_reply(e, r);
        if (rc < 0) {
            e->fatal = rc;
            *consumed = i;
            return rc;
        }
        if (c == 0) break;
    }
    *consumed = i;
    return 0;
}

void smtpc__engine_tls_started(smtpc__engine *e)
{
    e->tls_wait = false;
    e->tls_active = true;
    e->need_ehlo = true;
    smtpc__caps_clear(&e->caps);
    smtpc__reply_parser_reset(e->parser);
}
