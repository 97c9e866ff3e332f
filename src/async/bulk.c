/* smtpc_bulk: many non-blocking SMTP connections in one thread.
 *
 * Why not the engine's transaction machine: smtpc__engine_txn_begin() refuses
 * a new transaction until the previous one's final reply arrived, so it
 * costs two round trips per message. RFC 2920 lets the body+dot of message
 * k and MAIL/RCPT/DATA of message k+1 go in one group (DATA ends a group),
 * which is one round trip per message. This driver therefore does its own
 * minimal sequencing ([proxy handshake], greeting, EHLO, STARTTLS, AUTH,
 * MAIL/RCPT/DATA, RSET, QUIT) with the engine's body encoder
 * (smtpc__dotstuff), reply parser, EHLO capability parser and SASL
 * contexts, and the transport's proxy and TLS layers; the blocking session
 * (src/client/session.c) is untouched.
 *
 * Each connection is a state machine driven by fd readiness; one timer per
 * connection in a heap (lazily re-armed), so timeouts never mean polling
 * every connection. A message is in at most one connection at a time and
 * is reported exactly once (finish()). */
#define _GNU_SOURCE
#include <smtpc/async.h>
#include <smtpc/errors.h>

#include "async/timer.h"
#include "conn/conn_opts.h"
#include "engine/engine.h"
#include "engine/reply.h"
#include "engine/sasl.h"
#include "net/proxy.h"
#include "net/tcp_async.h"
#include "net/tls.h"
#include "net/transport.h"
#include "util/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define MAX_LINE 4096       /* reply line limit */
#define MAX_REPLY_LINES 1000
#define MAX_REPLY_BYTES 65536
#define OUT_LIMIT (1u << 20) /* per-connection output bound */
#define OUT_LOW (128u << 10) /* refill the body below this */
#define BODY_CHUNK (64u << 10)
#define RBUF_SIZE (64u << 10)

/* Every phase before P_READY is "connecting" (a failure there counts
 * against the server, not against a message). */
enum phase { P_CONNECTING, P_PROXY, P_TLS, P_GREETING, P_EHLO, P_STARTTLS, P_AUTH, P_READY, P_QUIT };
enum kind { K_GREETING, K_EHLO, K_HELO, K_STARTTLS, K_AUTH, K_MAIL, K_RCPT, K_DATA, K_DOT, K_RSET, K_QUIT };
enum stage { S_ENVELOPE, S_BODY, S_DOT_SENT };

typedef struct mrec {
    smtpc_bulk_msg m;
    struct mrec *next;
    unsigned attempts;
    uint8_t stage;
    bool failed;     /* MAIL or every RCPT refused: no delivery possible */
    bool body_error; /* the read callback failed */
    bool body8;      /* BODY=8BITMIME: an in-memory body with 8-bit bytes, to a server offering it */
    bool utf8;       /* SMTPUTF8: a non-ASCII address (RFC 6531) */
    size_t next_cmd; /* without PIPELINING: 1..nrcpts = RCPT, nrcpts+1 = DATA */
    size_t rcpt_ok, rcpt_replied;
    size_t body_off;
    smtpc__dotstuff ds;
    int fail_code; /* the first refusal */
    uint8_t fail_kind; /* what it answered (K_*) */
    size_t nrcodes;    /* rcodes entries valid for this attempt (0: no envelope sent) */
    char fail_text[160];
    /* kept when the record is reset or recycled (after fail_text): */
    int *rcodes;       /* each RCPT's reply code, 0 = not answered */
    size_t rcodes_cap;
} mrec;

typedef struct exp_ent {
    uint8_t kind;
    mrec *m;
} exp_ent;

typedef struct conn {
    smtpc_bulk *b;
    smtpc__transport *t;
    int fd;
    size_t idx; /* in b->conns */
    smtpc__timer tm;
    int64_t deadline;
    uint8_t phase;
    uint8_t interest;    /* registered with the loop */
    uint8_t hs_want;     /* TLS handshake */
    uint8_t wr_want;     /* write blocked on this (0 = not blocked) */
    uint8_t rd_want;     /* read blocked on this (TLS may want OUT) */
    bool pipelining, starttls_offered, need_rset, dead, tls_done, ehlo_failed, canceling;
    bool size_offered;   /* EHLO said SIZE (RFC 1870) */
    bool eightbit_offered, smtputf8_offered; /* EHLO said 8BITMIME, SMTPUTF8 */
    uint64_t size_max;   /* its limit, 0 = none given */
    bool retire;         /* no more messages here: QUIT once nothing is in flight */
    bool proven;         /* the server answered a transaction command here */
    int kill_code;       /* the reply that ends the connection (421), else 0 */
    unsigned nmsgs;      /* messages started here */
    mrec *body;          /* message whose body is being written */
    mrec *inflight[2];   /* at most: one with the dot sent + one in its envelope */
    exp_ent *exp;        /* replies expected, a ring */
    size_t exp_head, exp_len, exp_cap;
    smtpc__buf out;
    smtpc__reply_parser *rp;
    smtpc__sasl *sasl;            /* during AUTH only */
    smtpc__sasl_mask auth_offered; /* from the last EHLO */
    int auth_fail_rc;             /* a step failed: its code, once the server answers the cancel */
    bool token_retried;           /* AUTH was sent again with a new token (once per connection) */
    int token_cb_rc;              /* the token callback failed: its code, else 0 */
    unsigned token_gen;           /* b->token_gen when this connection got its token */
    char rtext[160];     /* the last reply's last line (for reports) */
    struct conn *next_dead;
} conn;

struct smtpc_bulk {
    /* where, how protected, how reached, who authenticates (timeouts: 0 =
     * bulk's own defaults, conn_ms() ...) */
    smtpc_conn_opts o;
    uint16_t port;        /* at start: the one set, else by mode */
    smtpc_tls_mode mode;  /* at start: o.tls_mode with DEFAULT resolved */
    smtpc_bulk_next_cb next_cb;
    void *next_ud;
    smtpc_bulk_result_cb res_cb;
    void *res_ud;
    unsigned k, max_per_conn, max_attempts;
    double rate, tokens;
    unsigned burst;
    int64_t rate_last_us, rate_wake;
    int64_t overall_ms, overall_deadline;
    bool hold_idle;
    smtpc__tls_ctx *tls_ctx;
    smtpc__tls_session *tls_sess;

    /* proxy (o.proxy): connections go to its address; the target is o.host */
    smtpc__tls_ctx *proxy_tls; /* https://: TLS to the proxy, system trust store */
    struct sockaddr_storage ptarget; /* SOCKS4/5: the target, resolved here */
    bool ptarget_set;

    /* AUTH (credentials in o) */
    unsigned token_gen;       /* new tokens the callback gave (refresh=true) */
    bool auth_failed;  /* refused for good (AUTH; TLS required, not offered): every message fails with it */
    bool gave_up;      /* every message was reported failed: connections still coming up close */
    int auth_code;     /* the refusal reply */
    char auth_text[160];
    const smtpc__reply *cur_reply; /* the reply being handled (for SASL challenges) */

    smtpc_bulk_socket_cb sock_cb;
    void *sock_ud;
    smtpc_bulk_timer_cb timer_cb;
    void *timer_ud;
    int64_t timer_armed;

    /* resolution */
    struct sockaddr_storage *addrs;
    socklen_t *addrlens;
    size_t naddrs, addr_next;
    int resolve_pipe[2];
    pthread_t resolver;
    bool resolving, resolver_started, resolved;
    int resolve_rc;
    smtpc__errmsg resolve_err;

    conn **conns;
    size_t nconns, conns_cap;
    conn **byfd;
    size_t byfd_cap;
    conn *graveyard;
    smtpc__theap heap;

    mrec *retry_head, *retry_tail, *free_recs;
    uint64_t outstanding; /* taken from the source, not yet reported */
    bool src_done, started, stopping, canceling;
    atomic_bool cancel_req;
    int stop_rc;
    unsigned consec_fail;   /* connections that failed before P_READY, in a row */
    unsigned unproven_fail; /* ... that failed after P_READY before any transaction reply */
    int last_conn_err;
    char last_conn_msg[256];
    int last_conn_code;       /* the reply that ended it (greeting/EHLO refusal, 421), 0 if none */
    char last_conn_text[160];

    int64_t now;
    uint8_t *rbuf;
    uint8_t *tmp;
    smtpc_bulk_stats st;
    smtpc__errmsg err;

    /* built-in loop */
    int loop_mode, loop_used; /* SMTPC_BULK_LOOP_* */
    bool pl_oom;
    int epfd, cancel_fd;
    struct pollfd *pfds; /* poll() fallback: the watched fds */
    size_t npfds, pfds_cap;
    int *pidx; /* fd -> index in pfds, -1 = not watched */
    size_t pidx_cap;
    struct pollfd *pready; /* one iteration's ready fds (pfds may change while handling them) */
};

/* ------------------------------------------------------------------------ */

static void now_update(smtpc_bulk *b) { b->now = smtpc__now_ms(); }

/* The timeouts: the options' when set, else bulk's defaults. */
static int64_t to_connect(const smtpc_bulk *b) { return b->o.connect_ms ? b->o.connect_ms : 30000; }
static int64_t to_greeting(const smtpc_bulk *b) { return b->o.greeting_ms ? b->o.greeting_ms : 300000; }
static int64_t to_command(const smtpc_bulk *b) { return b->o.command_ms ? b->o.command_ms : 300000; }
static int64_t to_data_end(const smtpc_bulk *b) { return b->o.data_ms ? b->o.data_ms : 600000; }

static int64_t phase_timeout(const conn *c)
{
    const smtpc_bulk *b = c->b;
    if (c->phase == P_CONNECTING || c->phase == P_PROXY || c->phase == P_TLS) return to_connect(b);
    if (c->exp_len) {
        switch (c->exp[c->exp_head].kind) {
        case K_GREETING: return to_greeting(b);
        case K_DOT: return to_data_end(b);
        default: return to_command(b);
        }
    }
    if (c->wr_want || c->body) return to_command(b);
    return -1; /* idle: nothing awaited */
}

/* Progress was made: the current wait starts again. */
static void arm(conn *c)
{
    int64_t to = phase_timeout(c);
    if (to < 0) {
        c->deadline = INT64_MAX;
        return; /* a stale heap entry re-arms itself lazily */
    }
    c->deadline = c->b->now + to;
    if (!smtpc__timer_active(&c->tm) || c->tm.key > c->deadline)
        (void)smtpc__theap_set(&c->b->heap, &c->tm, c->deadline);
}

static void set_interest(conn *c, uint8_t want)
{
    if (c->interest == want || c->fd < 0) return;
    c->interest = want;
    if (c->b->sock_cb) c->b->sock_cb(c->b->sock_ud, c->fd, want ? want : SMTPC_POLL_REMOVE);
}

static void update_io(conn *c)
{
    if (c->dead) return;
    uint8_t w = 0;
    switch (c->phase) {
    case P_CONNECTING: w = SMTPC_POLL_OUT; break;
    case P_PROXY:
    case P_TLS: w = c->hs_want == SMTPC__WANT_WRITE ? SMTPC_POLL_OUT : SMTPC_POLL_IN; break;
    default:
        w = SMTPC_POLL_IN;
        if (c->rd_want == SMTPC__WANT_WRITE) w |= SMTPC_POLL_OUT;
        if (c->wr_want == SMTPC__WANT_WRITE) w |= SMTPC_POLL_OUT;
        break;
    }
    set_interest(c, w);
}

/* ---- message records ---------------------------------------------------- */

static mrec *rec_new(smtpc_bulk *b)
{
    mrec *r = b->free_recs;
    if (r) {
        b->free_recs = r->next;
    } else {
        if (!(r = malloc(sizeof *r))) return NULL;
        r->rcodes = NULL;
        r->rcodes_cap = 0;
    }
    memset(r, 0, offsetof(mrec, fail_text) + 1);
    return r;
}

static void finish(smtpc_bulk *b, mrec *r, smtpc_bulk_status s, int err, int code,
                   const char *text, const char *msg)
{
    smtpc_bulk_result res;
    res.status = s;
    res.error = err;
    res.reply_code = code;
    res.reply_text = text ? text : "";
    res.errmsg = msg ? msg : "";
    res.rcpts_accepted = r->rcpt_ok;
    res.attempts = r->attempts;
    res.rcpt_codes = r->nrcodes ? r->rcodes : NULL;
    res.nrcpts = r->nrcodes;
    switch (s) {
    case SMTPC_BULK_SENT: b->st.sent++; break;
    case SMTPC_BULK_FAILED: b->st.failed++; break;
    case SMTPC_BULK_CANCELED: b->st.canceled++; break;
    case SMTPC_BULK_UNKNOWN: b->st.unknown++; break;
    }
    b->outstanding--;
    if (b->res_cb) b->res_cb(b->res_ud, &r->m, &res);
    r->next = b->free_recs;
    b->free_recs = r;
}

static void retry_push(smtpc_bulk *b, mrec *r, bool front)
{
    r->next = NULL;
    if (!b->retry_head) {
        b->retry_head = b->retry_tail = r;
    } else if (front) {
        r->next = b->retry_head;
        b->retry_head = r;
    } else {
        b->retry_tail->next = r;
        b->retry_tail = r;
    }
}

/* The connection lost message r before its final dot: try again elsewhere. */
static void requeue(smtpc_bulk *b, mrec *r, int err, const char *why)
{
    if (b->canceling) {
        finish(b, r, SMTPC_BULK_CANCELED, SMTPC_ECANCELED, 0, NULL, "canceled");
        return;
    }
    bool rewindable = r->m.data || !r->m.read || (r->m.rewind && r->m.rewind(r->m.body_ud) == 0);
    if (r->attempts >= b->max_attempts || !rewindable || r->body_error) {
        finish(b, r, SMTPC_BULK_FAILED, err, r->fail_code, r->fail_text, why);
        return;
    }
    unsigned a = r->attempts;
    smtpc_bulk_msg m = r->m;
    memset(r, 0, offsetof(mrec, fail_text) + 1);
    r->m = m;
    r->attempts = a;
    b->st.retried++;
    retry_push(b, r, true);
}

static int take_msg(smtpc_bulk *b, mrec **out)
{
    if (b->retry_head) {
        *out = b->retry_head;
        b->retry_head = b->retry_head->next;
        if (!b->retry_head) b->retry_tail = NULL;
        return 1;
    }
    if (!b->next_cb) b->src_done = true;
    if (b->src_done || b->canceling) return 0;
    mrec *r = rec_new(b);
    if (!r) return SMTPC_ENOMEM;
    int rc = b->next_cb(b->next_ud, &r->m);
    if (rc <= 0) {
        r->next = b->free_recs;
        b->free_recs = r;
        b->src_done = true;
        if (rc < 0) {
            b->stop_rc = rc;
            b->canceling = true;
            atomic_store(&b->cancel_req, true);
        }
        return 0;
    }
    b->outstanding++;
    b->st.submitted++;
    *out = r;
    return 1;
}

static bool rate_take(smtpc_bulk *b)
{
    if (b->rate <= 0) return true;
    int64_t now_us = smtpc__now_us();
    if (b->rate_last_us == 0) {
        b->rate_last_us = now_us;
        b->tokens = b->burst;
    }
    b->tokens += (double)(now_us - b->rate_last_us) * b->rate / 1e6;
    if (b->tokens > b->burst + 0.999) b->tokens = b->burst + 0.999; /* no loss to timer rounding */
    b->rate_last_us = now_us;
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return true;
    }
    int64_t wait_us = (int64_t)((1.0 - b->tokens) * 1e6 / b->rate);
    b->rate_wake = b->now + (wait_us + 999) / 1000;
    return false;
}

/* ---- connections ------------------------------------------------------- */

static int exp_push(conn *c, uint8_t kind, mrec *m)
{
    if (c->exp_len == c->exp_cap) {
        size_t nc = c->exp_cap ? c->exp_cap * 2 : 8;
        exp_ent *ne = malloc(nc * sizeof *ne);
        if (!ne) return SMTPC_ENOMEM;
        for (size_t i = 0; i < c->exp_len; i++) ne[i] = c->exp[(c->exp_head + i) % c->exp_cap];
        free(c->exp);
        c->exp = ne;
        c->exp_cap = nc;
        c->exp_head = 0;
    }
    c->exp[(c->exp_head + c->exp_len) % c->exp_cap] = (exp_ent){kind, m};
    c->exp_len++;
    return 0;
}

static void conn_kill(conn *c, int err, const char *why);

static void inflight_remove(conn *c, mrec *m)
{
    if (c->inflight[0] == m) {
        c->inflight[0] = c->inflight[1];
        c->inflight[1] = NULL;
    } else if (c->inflight[1] == m) {
        c->inflight[1] = NULL;
    }
    if (c->body == m) c->body = NULL;
}

static void conn_kill(conn *c, int err, const char *why)
{
    if (c->dead) return;
    smtpc_bulk *b = c->b;
    c->dead = true;
    /* A connection that got past EHLO and died before the server answered
     * any transaction command on it (a 421 or stray reply right behind the
     * EHLO reply, a drop) says as much about the server as a refused
     * greeting: it counts towards giving up too, or such a server would be
     * reconnected to forever. */
    bool unproven = c->phase >= P_READY && !c->proven && c->phase != P_QUIT && err != 0 &&
                    err != SMTPC_ECANCELED;
    if ((c->phase < P_READY && err != 0) || unproven) { /* err 0: closed by us, no failure */
        if (unproven) b->unproven_fail++;
        else b->consec_fail++;
        b->st.connections_failed++;
        b->last_conn_err = err;
        smtpc__strlcpy(b->last_conn_msg, why, sizeof b->last_conn_msg);
        b->last_conn_code = c->kill_code;
        smtpc__strlcpy(b->last_conn_text, c->kill_code ? c->rtext : "", sizeof b->last_conn_text);
    }
    for (int i = 0; i < 2; i++) {
        mrec *m = c->inflight[i];
        if (!m) continue;
        c->inflight[i] = NULL;
        if (c->kill_code && m->stage != S_DOT_SENT) {
            /* the server's 421 is what stopped it (reported if no retry is left) */
            m->fail_code = c->kill_code;
            smtpc__strlcpy(m->fail_text, c->rtext, sizeof m->fail_text);
        }
        if (m->stage == S_DOT_SENT)
            finish(b, m, SMTPC_BULK_UNKNOWN, SMTPC_EUNKNOWN, 0, NULL, why);
        else
            requeue(b, m, err, why);
    }
    c->body = NULL;
    if (c->fd >= 0) {
        set_interest(c, 0);
        if (c->fd < (int)b->byfd_cap) b->byfd[c->fd] = NULL;
    }
    smtpc__theap_remove(&b->heap, &c->tm);
    /* swap-remove from the list */
    b->conns[c->idx] = b->conns[b->nconns - 1];
    b->conns[c->idx]->idx = c->idx;
    b->nconns--;
    b->st.connections_open = (unsigned)b->nconns;
    smtpc__transport_free(c->t);
    c->t = NULL;
    c->fd = -1;
    c->next_dead = b->graveyard;
    b->graveyard = c;
}

static void conn_free(conn *c)
{
    if (c->sasl) smtpc__buf_free_secure(&c->out); /* may hold a credential line */
    smtpc__sasl_free(c->sasl);                    /* wipes */
    smtpc__buf_free(&c->out);
    free(c->exp);
    smtpc__reply_parser_free(c->rp);
    free(c);
}

/* prefix [arg ">"] [suffix] CRLF; paths were validated (no CR, LF, <, >). */
static int send_line_sfx(conn *c, uint8_t kind, mrec *m, const char *prefix, const char *arg,
                         const char *suffix)
{
    size_t pl = strlen(prefix), al = arg ? strlen(arg) : 0, sl = suffix ? strlen(suffix) : 0;
    int rc = smtpc__buf_reserve(&c->out, pl + al + sl + 3);
    if (rc) return rc;
    uint8_t *w = c->out.data + c->out.len;
    memcpy(w, prefix, pl);
    w += pl;
    if (arg) {
        memcpy(w, arg, al);
        w += al;
        if (prefix[pl - 1] == '<') *w++ = '>';
    }
    if (sl) {
        memcpy(w, suffix, sl);
        w += sl;
    }
    *w++ = '\r';
    *w++ = '\n';
    c->out.len = (size_t)(w - c->out.data);
    return exp_push(c, kind, m);
}

static int send_line(conn *c, uint8_t kind, mrec *m, const char *prefix, const char *arg)
{
    return send_line_sfx(c, kind, m, prefix, arg, NULL);
}

/* The body's length when it is known before sending (in memory). */
static bool body_len_known(const mrec *m)
{
    return m->m.data || !m->m.read;
}

static bool valid_path(const char *s)
{
    if (!s) return false;
    size_t n = strlen(s);
    if (n > 500) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f || ch == '<' || ch == '>') return false;
    }
    return true;
}

/* Queue the commands of m that may go now. */
static int emit_envelope(conn *c, mrec *m)
{
    int rc = 0;
    if (m->next_cmd == 0) {
        if (c->need_rset) {
            rc = send_line(c, K_RSET, NULL, "RSET", NULL);
            c->need_rset = false;
            if (rc) return rc;
            if (!c->pipelining) return 0; /* MAIL after RSET's reply */
        }
        /* SIZE= (RFC 1870) when the server offers it and the length is
         * known: a server refuses an oversized message at MAIL */
        char size[32] = "", params[80];
        if (c->size_offered && body_len_known(m))
            snprintf(size, sizeof size, " SIZE=%llu", (unsigned long long)m->m.len);
        snprintf(params, sizeof params, "%s%s%s", size, m->body8 ? " BODY=8BITMIME" : "",
                 m->utf8 ? " SMTPUTF8" : "");
        rc = send_line_sfx(c, K_MAIL, m, "MAIL FROM:<", m->m.from, params);
        m->next_cmd = 1;
        if (rc || !c->pipelining) return rc;
    }
    while (!rc && m->next_cmd <= m->m.nrcpts) {
        rc = send_line(c, K_RCPT, m, "RCPT TO:<", m->m.rcpts[m->next_cmd - 1]);
        m->next_cmd++;
        if (!c->pipelining) return rc;
    }
    if (!rc && m->next_cmd == m->m.nrcpts + 1) {
        rc = send_line(c, K_DATA, m, "DATA", NULL);
        m->next_cmd++;
    }
    return rc;
}

/* Appends body bytes of c->body while the output is short; at the end the
 * dot. Returns 0 or an error (the connection must die). */
static int fill_body(conn *c)
{
    smtpc_bulk *b = c->b;
    mrec *m = c->body;
    while (m && smtpc__buf_size(&c->out) < OUT_LOW) {
        int rc = 0;
        if (m->m.data || !m->m.read) {
            size_t left = m->m.len - m->body_off;
            if (left == 0) goto end;
            size_t n = left < BODY_CHUNK ? left : BODY_CHUNK;
            const uint8_t *p = (const uint8_t *)m->m.data + m->body_off;
            /* Fast path: whole lines already in wire form (CRLF, no leading
             * dot, no bare CR, <= 998 octets) are copied as they are; the
             * rest goes through the engine's encoder. */
            rc = smtpc__buf_reserve(&c->out, 2 * n + 8);
            if (rc) return rc;
            size_t i = 0;
            while (i < n) {
                if (m->ds.state == 0 && m->ds.line_len == 0) {
                    const uint8_t *nl = memchr(p + i, '\n', n - i);
                    if (nl) {
                        size_t ll = (size_t)(nl - (p + i)) + 1;
                        if (ll >= 2 && ll <= 1000 && p[i] != '.' && nl[-1] == '\r' &&
                            !memchr(p + i, '\r', ll - 2)) {
                            memcpy(c->out.data + c->out.len, p + i, ll);
                            c->out.len += ll;
                            i += ll;
                            continue;
                        }
                        rc = smtpc__dotstuff_write(&m->ds, true, p + i, ll, &c->out);
                        if (rc) return rc;
                        i += ll;
                        continue;
                    }
                }
                const uint8_t *nl = memchr(p + i, '\n', n - i);
                size_t ll = nl ? (size_t)(nl - (p + i)) + 1 : n - i;
                rc = smtpc__dotstuff_write(&m->ds, true, p + i, ll, &c->out);
                if (rc) return rc;
                i += ll;
            }
            m->body_off += n;
        } else {
            ssize_t n = m->m.read(m->m.body_ud, b->tmp, BODY_CHUNK);
            if (n < 0) {
                m->body_error = true;
                return SMTPC_EIO;
            }
            if (n == 0) goto end;
            rc = smtpc__dotstuff_write(&m->ds, true, b->tmp, (size_t)n, &c->out);
            if (rc) return rc;
        }
        continue;
    end:
        rc = smtpc__dotstuff_finish(&m->ds, true, &c->out);
        if (!rc) rc = exp_push(c, K_DOT, m);
        if (rc) return rc;
        m->stage = S_DOT_SENT;
        c->body = NULL;
        m = NULL;
    }
    return 0;
}

static void pump(conn *c);
static int feed(conn *c, const uint8_t *p, size_t n);

/* A write failed: whatever the server sent before it closed, read once. */
static void late_read(conn *c)
{
    int want = 0;
    ssize_t n = smtpc__transport_read(c->t, c->b->rbuf, RBUF_SIZE, &want);
    if (n > 0) (void)feed(c, c->b->rbuf, (size_t)n);
}

static int flush_out(conn *c)
{
    for (;;) {
        if (c->body && smtpc__buf_size(&c->out) < OUT_LOW) {
            int rc = fill_body(c);
            if (rc) {
                mrec *m = c->body;
                if (m) {
                    /* nothing was delivered: no dot was sent */
                    inflight_remove(c, m);
                    finish(c->b, m, SMTPC_BULK_FAILED, rc, 0, NULL,
                           rc == SMTPC_ELIMIT ? "message body: a line is over 998 octets"
                                              : "message body could not be read");
                }
                conn_kill(c, rc, "message body failed");
                return rc;
            }
            if (!c->body) pump(c); /* the next message joins this write */
            if (c->dead) return SMTPC_ECLOSED;
        }
        size_t n = smtpc__buf_size(&c->out);
        if (n == 0) {
            c->wr_want = 0;
            if (c->out.cap > 4096 && !c->body) smtpc__buf_free(&c->out); /* idle: give it back */
            return 0;
        }
        int want = 0;
        ssize_t w = smtpc__transport_write(c->t, smtpc__buf_ptr(&c->out), n, &want);
        if (w == SMTPC_EAGAIN) {
            c->wr_want = (uint8_t)want;
            return 0;
        }
        if (w < 0) {
            char why[SMTPC__ERRMSG_MAX];
            smtpc__strlcpy(why, c->t->err.text[0] ? c->t->err.text : "write failed", sizeof why);
            /* the server may have said why before it closed (552 in the
             * middle of the body): read that reply first */
            late_read(c);
            if (!c->dead) conn_kill(c, (int)w, why);
            return (int)w;
        }
        smtpc__buf_consume(&c->out, (size_t)w);
        c->wr_want = 0;
        arm(c);
    }
}

/* Start as many messages as may go now. */
static void pump(conn *c)
{
    smtpc_bulk *b = c->b;
    while (!c->dead && c->phase == P_READY && !c->body) {
        if (c->canceling || b->canceling) {
            if (!c->exp_len && !c->inflight[0]) {
                if (send_line(c, K_QUIT, NULL, "QUIT", NULL)) conn_kill(c, SMTPC_ENOMEM, "out of memory");
                c->phase = P_QUIT;
            }
            return;
        }
        /* A message still in its envelope, or both slots busy: wait. */
        if (c->inflight[1] || (c->inflight[0] && c->inflight[0]->stage != S_DOT_SENT)) {
            if (!c->pipelining && c->inflight[0] && !c->exp_len) goto next_cmd;
            return;
        }
        if (!c->pipelining && c->exp_len) return;
        if (c->retire || (b->max_per_conn && c->nmsgs >= b->max_per_conn)) {
            if (!c->exp_len) {
                if (send_line(c, K_QUIT, NULL, "QUIT", NULL)) conn_kill(c, SMTPC_ENOMEM, "out of memory");
                c->phase = P_QUIT;
            }
            return;
        }
        if (!b->retry_head && (b->src_done || b->canceling)) {
            if (!c->exp_len && !b->hold_idle) {
                if (send_line(c, K_QUIT, NULL, "QUIT", NULL)) conn_kill(c, SMTPC_ENOMEM, "out of memory");
                c->phase = P_QUIT;
            }
            return;
        }
        if (b->rate > 0 && b->rate_wake > b->now) return;
        if (!b->retry_head && !rate_take(b)) return;
        mrec *m = NULL;
        int rc = take_msg(b, &m);
        if (rc <= 0) {
            if (rc < 0) conn_kill(c, rc, "out of memory");
            else continue; /* source ended: QUIT above */
            return;
        }
        m->attempts++;
        if (!valid_path(m->m.from) || !m->m.rcpts || m->m.nrcpts == 0 ||
            (!m->m.data && !m->m.read && m->m.len)) {
            finish(b, m, SMTPC_BULK_FAILED, SMTPC_EINVAL, 0, NULL, "invalid envelope or body");
            continue;
        }
        bool ok = true;
        for (size_t i = 0; i < m->m.nrcpts; i++) ok = ok && valid_path(m->m.rcpts[i]) && *m->m.rcpts[i];
        if (!ok) {
            finish(b, m, SMTPC_BULK_FAILED, SMTPC_EINVAL, 0, NULL, "invalid recipient");
            continue;
        }
        if (c->size_offered && c->size_max && body_len_known(m) && m->m.len > c->size_max) {
            /* the server would refuse it: nothing is sent, and no other
             * connection to the same server would take it either */
            char em[160];
            snprintf(em, sizeof em, "message size %llu exceeds the server's limit %llu",
                     (unsigned long long)m->m.len, (unsigned long long)c->size_max);
            finish(b, m, SMTPC_BULK_FAILED, SMTPC_ELIMIT, 0, NULL, em);
            continue;
        }
        /* RFC 6531: a non-ASCII address only with SMTPUTF8; RFC 6152: an
         * 8-bit body declared when the server takes it (else sent as is,
         * as the client does) */
        m->utf8 = smtpc__has_8bit(m->m.from, strlen(m->m.from));
        for (size_t i = 0; !m->utf8 && i < m->m.nrcpts; i++) m->utf8 = smtpc__has_8bit(m->m.rcpts[i], strlen(m->m.rcpts[i]));
        if (m->utf8 && !c->smtputf8_offered) {
            finish(b, m, SMTPC_BULK_FAILED, SMTPC_EUNSUPPORTED, 0, NULL,
                   "a non-ASCII address needs SMTPUTF8, which the server does not offer");
            continue;
        }
        m->body8 = c->eightbit_offered && m->m.data && smtpc__has_8bit(m->m.data, m->m.len);
        if (m->rcodes_cap < m->m.nrcpts) {
            int *nr = realloc(m->rcodes, m->m.nrcpts * sizeof *nr);
            if (!nr) {
                finish(b, m, SMTPC_BULK_FAILED, SMTPC_ENOMEM, 0, NULL, "out of memory");
                continue;
            }
            m->rcodes = nr;
            m->rcodes_cap = m->m.nrcpts;
        }
        memset(m->rcodes, 0, m->m.nrcpts * sizeof *m->rcodes);
        m->nrcodes = m->m.nrcpts;
        m->stage = S_ENVELOPE;
        if (c->inflight[0])
            c->inflight[1] = m;
        else
            c->inflight[0] = m;
        c->nmsgs++;
        if (emit_envelope(c, m)) {
            conn_kill(c, SMTPC_ENOMEM, "out of memory");
            return;
        }
        arm(c);
        continue;
    next_cmd: {
        mrec *e = c->inflight[1] ? c->inflight[1] : c->inflight[0];
        if (e->stage == S_ENVELOPE && e->next_cmd <= e->m.nrcpts + 1) {
            if (emit_envelope(c, e)) conn_kill(c, SMTPC_ENOMEM, "out of memory");
            arm(c);
        }
        return;
    }
    }
}

static const char *kind_name(uint8_t kind)
{
    switch (kind) {
    case K_MAIL: return "MAIL";
    case K_RCPT: return "RCPT";
    case K_DATA: return "DATA";
    case K_DOT: return "end of data";
    default: return "reply";
    }
}

/* Fails m with the reply that decided it: a refusal (4xx/5xx) is
 * ETEMPFAIL/EPERMFAIL with its code; a positive reply of the wrong kind
 * (354 to MAIL or to the final dot) is a protocol violation, EPROTO, with
 * no deciding reply (as the session reports it), named in errmsg. */
static void fail_with(smtpc_bulk *b, mrec *m, uint8_t kind, int code, const char *text)
{
    char em[300];
    int cls = code / 100;
    bool refusal = cls == 4 || cls == 5;
    snprintf(em, sizeof em, "%s: server replied %d %s%s", kind_name(kind), code, text,
             refusal ? "" : " (not a valid reply here)");
    if (refusal)
        finish(b, m, SMTPC_BULK_FAILED, cls == 4 ? SMTPC_ETEMPFAIL : SMTPC_EPERMFAIL, code, text, em);
    else
        finish(b, m, SMTPC_BULK_FAILED, SMTPC_EPROTO, 0, NULL, em);
}

/* m's transaction is over: code answered `kind`. */
static void msg_done_reply(conn *c, mrec *m, uint8_t kind, int code)
{
    smtpc_bulk *b = c->b;
    b->unproven_fail = 0; /* the server is getting through messages */
    inflight_remove(c, m);
    if (code / 100 == 2 && m->rcpt_ok > 0 && !m->failed)
        finish(b, m, SMTPC_BULK_SENT, 0, code, c->rtext, NULL);
    else if (m->fail_code)
        fail_with(b, m, m->fail_kind, m->fail_code, m->fail_text);
    else
        fail_with(b, m, kind, code, c->rtext);
}

/* The first reply that keeps m from being delivered. */
static void note_fail(conn *c, mrec *m, uint8_t kind, int code)
{
    if (m->fail_code) return;
    m->fail_code = code;
    m->fail_kind = kind;
    snprintf(m->fail_text, sizeof m->fail_text, "%s", c->rtext);
}

static void start_tls(conn *c);
static void give_up(smtpc_bulk *b);

static void conn_ready(conn *c)
{
    smtpc_bulk *b = c->b;
    c->phase = P_READY;
    b->consec_fail = 0;
    if (c->tls_done && !b->tls_sess) b->tls_sess = smtpc__tls_get_session(c->t);
}

/* ---- AUTH (RFC 4954) with the engine's SASL contexts ---------------------
 * Same policy as the blocking session: never credentials in the clear
 * unless allowed; the strongest mechanism offered and allowed. A refusal
 * (5xx), no common mechanism or a cleartext connection is the same on
 * every connection: the run gives up and every message fails with it,
 * instead of reconnecting and retrying forever. A 4xx is a connection
 * failure like any other (counted towards giving up). */

static bool have_creds(const smtpc_bulk *b) { return smtpc__conn_opts_have_creds(&b->o); }

/* The caller's token callback for the SASL context of connection ud. A new
 * token another connection got since this one asked is not asked for again
 * (refresh=true becomes refresh=false): one refresh for a burst of refusals. */
static int conn_token(void *ud, bool refresh, const char **token, size_t *len)
{
    conn *c = ud;
    smtpc_bulk *b = c->b;
    if (refresh && c->token_gen != b->token_gen) refresh = false;
    *token = NULL;
    *len = 0;
    int rc = b->o.token_cb(b->o.token_ud, refresh, token, len);
    if (rc != 0 || !*token) {
        c->token_cb_rc = rc < 0 ? rc : SMTPC_EAUTH;
        return c->token_cb_rc;
    }
    if (refresh) b->token_gen++;
    c->token_gen = b->token_gen;
    return 0;
}

static void fill_creds(const smtpc_bulk *b, conn *c, smtpc__sasl_creds *cr)
{
    smtpc__conn_opts_sasl_creds(&b->o, cr);
    cr->client_cert = c && c->tls_done && b->tls_ctx && smtpc__tls_ctx_has_client_cert(b->tls_ctx);
    cr->token_fn = b->o.token_cb ? conn_token : NULL;
    cr->token_ud = c;
    cr->host = b->o.tls_name ? b->o.tls_name : b->o.host;
    cr->port = b->port;
}

static smtpc__sasl_mask auth_allowed(conn *c)
{
    smtpc__sasl_creds cr;
    fill_creds(c->b, c, &cr);
    /* the clear-text case is refused before this when not allowed */
    return smtpc__conn_opts_allowed_mechs(&c->b->o, &cr, c->tls_done);
}

static void auth_fatal(conn *c, int rc, int code, const char *msg);

/* TLS is required (STARTTLS mode, or credentials that may not travel in the
 * clear) when the server does not offer STARTTLS. */
static bool starttls_required(const smtpc_bulk *b)
{
    return b->mode == SMTPC_TLS_MODE_STARTTLS || (have_creds(b) && !b->o.allow_plain_auth);
}

/* STARTTLS required and not offered: the same on every connection to this
 * server, so the run gives up at once (as for AUTH), nothing sent. */
static void tls_missing(conn *c)
{
    char why[300];
    snprintf(why, sizeof why, "the server does not offer STARTTLS and TLS is required (%s%s); nothing sent",
             smtpc_tls_mode_name(c->b->mode), c->b->mode == SMTPC_TLS_MODE_STARTTLS ? "" : ", with credentials");
    auth_fatal(c, SMTPC_ETLS, 0, why);
}

static void auth_fatal(conn *c, int rc, int code, const char *msg)
{
    smtpc_bulk *b = c->b;
    if (!b->auth_failed) {
        b->auth_failed = true;
        b->auth_code = code;
        smtpc__strlcpy(b->auth_text, code ? c->rtext : "", sizeof b->auth_text);
    }
    conn_kill(c, rc, msg); /* records it as the connection error */
    give_up(b);
}

/* Appends "prefix[ arg]\r\n" and expects a reply to AUTH. */
static int auth_line(conn *c, const char *prefix, const char *arg)
{
    size_t pl = strlen(prefix), al = arg ? strlen(arg) : 0;
    int rc = smtpc__buf_reserve(&c->out, pl + al + 3);
    if (rc) return rc;
    uint8_t *w = c->out.data + c->out.len;
    memcpy(w, prefix, pl);
    w += pl;
    if (arg && prefix[0]) *w++ = ' ';
    if (arg) {
        memcpy(w, arg, al);
        w += al;
    }
    *w++ = '\r';
    *w++ = '\n';
    c->out.len = (size_t)(w - c->out.data);
    return exp_push(c, K_AUTH, NULL);
}

/* Begins the exchange of c->sasl (again, after a restart): AUTH, with the
 * initial response when it fits on the line. */
static void auth_send(conn *c)
{
    smtpc__sasl_line ir;
    memset(&ir, 0, sizeof ir);
    int rc = smtpc__sasl_start(c->sasl, &ir);
    if (rc) {
        auth_fatal(c, rc, 0, smtpc__sasl_errmsg(c->sasl));
        return;
    }
    if (ir.b64 && !ir.fits_auth_line) smtpc__sasl_defer_ir(c->sasl); /* SASL-IR within 512 octets */
    char cmd[64];
    snprintf(cmd, sizeof cmd, "AUTH %s", smtpc__sasl_mech_name(smtpc__sasl_mech_of(c->sasl)));
    if (auth_line(c, cmd, ir.b64 && ir.fits_auth_line ? ir.b64 : NULL)) {
        conn_kill(c, SMTPC_ENOMEM, "out of memory");
        return;
    }
    c->phase = P_AUTH;
}

static void start_auth(conn *c)
{
    smtpc_bulk *b = c->b;
    char why[400];
    if (!c->tls_done && !b->o.allow_plain_auth) {
        auth_fatal(c, SMTPC_EAUTH, 0,
                   "AUTH: refusing to send credentials over an unencrypted connection "
                   "(use TLS, or allow plaintext authentication explicitly)");
        return;
    }
    smtpc__sasl_mask allowed = auth_allowed(c);
    smtpc__sasl_mech m = smtpc__sasl_choose(c->auth_offered, allowed);
    if (m == SMTPC__SASL_NONE) {
        char o[128], a[128];
        smtpc__sasl_mask_format(c->auth_offered, o, sizeof o);
        smtpc__sasl_mask_format(allowed, a, sizeof a);
        snprintf(why, sizeof why, "AUTH: no mechanism in common (server offers: %s; allowed: %s)",
                 o[0] ? o : "none", a[0] ? a : "none");
        auth_fatal(c, SMTPC_EAUTH, 0, why);
        return;
    }
    smtpc__sasl_creds cr;
    fill_creds(b, c, &cr);
    smtpc__errmsg em;
    em.text[0] = 0;
    int rc = smtpc__sasl_new(&c->sasl, m, &cr, &em);
    if (rc) {
        if (c->token_cb_rc)
            snprintf(why, sizeof why, "AUTH %s: the token callback failed (%s)",
                     smtpc__sasl_mech_name(m), smtpc_err_name(rc));
        if (c->token_cb_rc == SMTPC_ETEMPFAIL) /* "not now": this connection only */
            conn_kill(c, SMTPC_ETEMPFAIL, why);
        else
            auth_fatal(c, rc, 0, c->token_cb_rc ? why : em.text);
        return;
    }
    auth_send(c);
}

static void auth_done(conn *c)
{
    smtpc__sasl_free(c->sasl); /* wipes */
    c->sasl = NULL;
    /* every byte was answered, so written: wipe the lines that held secrets */
    if (smtpc__buf_size(&c->out) == 0) smtpc__buf_free_secure(&c->out);
}

/* The server refused the token (why; code its final reply): with a token
 * callback, a new token and AUTH again, once per connection (the server is
 * back in command state after its 5xx; a server that closes instead fails
 * this connection, and the next one asks for the current token). True
 * when handled: AUTH sent again, or the run given up because the callback
 * failed. */
static bool token_retry(conn *c, int rc, int code, const char *why)
{
    smtpc__sasl_mech m = smtpc__sasl_mech_of(c->sasl);
    if (!c->b->o.token_cb || c->token_retried || rc != SMTPC_EAUTH || code / 100 != 5 ||
        !smtpc__sasl_token_rejected(c->sasl) ||
        (m != SMTPC__SASL_XOAUTH2 && m != SMTPC__SASL_OAUTHBEARER))
        return false;
    c->token_retried = true;
    c->auth_fail_rc = 0;
    int r2 = smtpc__sasl_restart(c->sasl, true);
    if (r2) {
        /* the reason first: the report keeps the first 255 octets */
        char msg[600];
        if (c->token_cb_rc)
            snprintf(msg, sizeof msg, "AUTH %s: the token callback failed (%s) when asked for a "
                     "new token after: %s", smtpc__sasl_mech_name(m), smtpc_err_name(r2), why);
        else
            snprintf(msg, sizeof msg, "AUTH %s: the new token: %s; after: %s",
                     smtpc__sasl_mech_name(m), smtpc__sasl_errmsg(c->sasl), why);
        auth_done(c);
        if (c->token_cb_rc == SMTPC_ETEMPFAIL) /* "not now": the next connection asks again */
            conn_kill(c, SMTPC_ETEMPFAIL, msg);
        else
            auth_fatal(c, r2, code, msg);
        return true;
    }
    auth_send(c);
    return true;
}

static void auth_reply(conn *c, int code)
{
    smtpc_bulk *b = c->b;
    char why[400];
    const char *name = smtpc__sasl_mech_name(smtpc__sasl_mech_of(c->sasl));
    if (c->auth_fail_rc) {
        /* the server's answer to our cancel ("*") or error acknowledgement */
        snprintf(why, sizeof why, "AUTH %s: %s (cancelled; server replied %d)", name,
                 smtpc__sasl_errmsg(c->sasl), code);
        if (token_retry(c, c->auth_fail_rc, code, why)) return;
        auth_done(c);
        auth_fatal(c, c->auth_fail_rc, code, why);
        return;
    }
    const smtpc__reply *r = b->cur_reply;
    const char *text = r && r->nlines ? r->lines[r->nlines - 1] : "";
    smtpc__sasl_line resp;
    memset(&resp, 0, sizeof resp);
    int rc = smtpc__sasl_reply(c->sasl, code, text, strlen(text), &resp);
    if (rc == 1) {
        auth_done(c);
        conn_ready(c);
        return;
    }
    if (rc == 0) {
        if (!resp.b64) {
            auth_done(c);
            conn_kill(c, SMTPC_EPROTO, "AUTH: the exchange does not end");
            return;
        }
        if (auth_line(c, "", resp.b64)) conn_kill(c, SMTPC_ENOMEM, "out of memory");
        return;
    }
    snprintf(why, sizeof why, "AUTH %s: %s", name, smtpc__sasl_errmsg(c->sasl));
    if (resp.b64) {
        /* the server waits for an answer: "*" cancels (RFC 4954 4) */
        c->auth_fail_rc = rc;
        if (auth_line(c, "", resp.b64)) conn_kill(c, SMTPC_ENOMEM, "out of memory");
        return;
    }
    if (token_retry(c, rc, code, why)) return;
    auth_done(c);
    if (code / 100 == 4)
        conn_kill(c, SMTPC_ETEMPFAIL, why); /* transient: another connection may do better */
    else
        auth_fatal(c, rc, code, why);
}

static void send_ehlo(conn *c)
{
    c->pipelining = false;
    c->starttls_offered = false;
    c->size_offered = false;
    c->eightbit_offered = false;
    c->smtputf8_offered = false;
    char def[300];
    if (!c->b->o.ehlo_name) smtpc__default_ehlo_name(c->fd, def, sizeof def);
    if (send_line(c, K_EHLO, NULL, "EHLO ", c->b->o.ehlo_name ? c->b->o.ehlo_name : def))
        conn_kill(c, SMTPC_ENOMEM, "out of memory");
    c->phase = P_EHLO;
}

/* One complete reply, answering the front of the expectation ring. */
static void on_reply(conn *c, int code)
{
    smtpc_bulk *b = c->b;
    char why[220];
    if (!c->exp_len) {
        if (code == 421) {
            /* a refusal of whatever comes next (ETEMPFAIL, as async.h says),
             * tried again on another connection when attempts remain */
            snprintf(why, sizeof why, "server replied 421 %s (connection closed)", c->rtext);
            c->kill_code = 421;
            conn_kill(c, SMTPC_ETEMPFAIL, why);
            return;
        }
        if (c->body && (code / 100 == 4 || code / 100 == 5)) {
            /* The server refused the message in the middle of its body
             * (552 message too big) and will close: that is its verdict
             * on the message, not a lost connection, so it is not tried
             * again (the session reads this reply too: late_reply()). No
             * end of data follows: the connection is dropped. */
            mrec *m = c->body;
            char em[260];
            snprintf(em, sizeof em, "message body: server replied %d %s (connection closed)", code,
                     c->rtext);
            inflight_remove(c, m);
            finish(b, m, SMTPC_BULK_FAILED, code / 100 == 4 ? SMTPC_ETEMPFAIL : SMTPC_EPERMFAIL, code,
                   c->rtext, em);
            conn_kill(c, SMTPC_ECLOSED, "refused during the message body");
            return;
        }
        conn_kill(c, SMTPC_EPROTO, "reply to no command");
        return;
    }
    exp_ent e = c->exp[c->exp_head];
    c->exp_head = (c->exp_head + 1) % c->exp_cap;
    c->exp_len--;
    if (code == 421 && e.kind != K_QUIT) {
        /* A 421 answering the dot is a refusal: the message may go again.
         * A message that has no attempt left fails with ETEMPFAIL and the
         * 421 (as in the session), not as a lost connection. */
        if (e.kind == K_DOT && e.m) e.m->stage = S_BODY;
        snprintf(why, sizeof why, "server replied 421 %s (connection closed)", c->rtext);
        c->kill_code = 421;
        conn_kill(c, SMTPC_ETEMPFAIL, why);
        return;
    }
    if (e.kind >= K_MAIL && e.kind <= K_DOT && !c->proven) {
        /* the server does transactions here: its failures are no longer
         * counted as connection failures */
        c->proven = true;
        b->unproven_fail = 0;
    }
    switch (e.kind) {
    case K_GREETING:
        if (code != 220) {
            snprintf(why, sizeof why, "greeting: %d %s", code, c->rtext);
            c->kill_code = code;
            conn_kill(c, code / 100 == 4 ? SMTPC_ETEMPFAIL : SMTPC_EPERMFAIL, why);
            return;
        }
        send_ehlo(c);
        break;
    case K_EHLO:
    case K_HELO:
        if (code / 100 != 2) {
            /* HELO only when EHLO is not understood (500/502, RFC 5321
             * 4.1.4), as the session does: a policy refusal (554) is the
             * server's answer, not a reason to try the older command. */
            if (e.kind == K_EHLO && (code == 500 || code == 502)) {
                c->pipelining = false;
                char def[300];
                if (!b->o.ehlo_name) smtpc__default_ehlo_name(c->fd, def, sizeof def);
                if (send_line(c, K_HELO, NULL, "HELO ", b->o.ehlo_name ? b->o.ehlo_name : def))
                    conn_kill(c, SMTPC_ENOMEM, "out of memory");
                break;
            }
            snprintf(why, sizeof why, "%s: %d %s", e.kind == K_EHLO ? "EHLO" : "HELO", code, c->rtext);
            c->kill_code = code;
            conn_kill(c, code / 100 == 4 ? SMTPC_ETEMPFAIL : SMTPC_EPERMFAIL, why);
            return;
        }
        if (!c->tls_done && b->mode != SMTPC_TLS_MODE_NONE) {
            /* the session's policy (smtpc_session_open): STARTTLS when
             * offered; without it, plaintext only when TLS is optional and
             * no credentials would go in the clear */
            if (!c->starttls_offered) {
                if (starttls_required(b)) {
                    tls_missing(c);
                    return;
                }
            } else {
                if (send_line(c, K_STARTTLS, NULL, "STARTTLS", NULL)) conn_kill(c, SMTPC_ENOMEM, "oom");
                c->phase = P_STARTTLS;
                break;
            }
        }
        if (have_creds(b)) {
            start_auth(c);
            if (c->dead) return;
            break;
        }
        conn_ready(c);
        break;
    case K_AUTH:
        auth_reply(c, code);
        if (c->dead) return;
        break;
    case K_STARTTLS:
        if (code != 220) {
            snprintf(why, sizeof why, "STARTTLS: %d %s", code, c->rtext);
            conn_kill(c, SMTPC_ETLS, why);
            return;
        }
        start_tls(c);
        return;
    case K_RSET:
        if (code / 100 != 2) {
            conn_kill(c, SMTPC_EPROTO, "RSET refused");
            return;
        }
        break;
    case K_QUIT:
        conn_kill(c, 0, "quit");
        return;
    case K_MAIL:
        if (code / 100 != 2) {
            note_fail(c, e.m, K_MAIL, code);
            e.m->failed = true;
            if (!c->pipelining) { /* nothing more was sent for it */
                c->need_rset = true;
                msg_done_reply(c, e.m, K_MAIL, code);
            }
        }
        break;
    case K_RCPT:
        if (e.m->rcpt_replied < e.m->nrcodes) e.m->rcodes[e.m->rcpt_replied] = code;
        e.m->rcpt_replied++;
        if (code / 100 == 2)
            e.m->rcpt_ok++;
        else
            note_fail(c, e.m, K_RCPT, code);
        if (!c->pipelining && e.m->rcpt_replied == e.m->m.nrcpts && e.m->rcpt_ok == 0) {
            e.m->next_cmd = e.m->m.nrcpts + 2; /* no DATA */
            c->need_rset = true;
            msg_done_reply(c, e.m, K_RCPT, code);
        }
        break;
    case K_DATA:
        if (code == 354 && (c->canceling || b->canceling)) {
            /* canceled: closing before any body byte delivers nothing */
            conn_kill(c, SMTPC_ECANCELED, "canceled");
            return;
        }
        if (code == 354) {
            if (e.m->failed && e.m->rcpt_ok > 0) {
                /* MAIL refused, yet a recipient accepted and DATA answered
                 * 354: any end of data (even an empty one) would deliver to
                 * that recipient, and RSET or QUIT would be message text.
                 * Only dropping the connection is safe (as the engine's
                 * txn_abandon does for the session). */
                mrec *m = e.m;
                int fc = m->fail_code / 100;
                bool refusal = fc == 4 || fc == 5;
                inflight_remove(c, m);
                finish(b, m, SMTPC_BULK_FAILED,
                       fc == 4 ? SMTPC_ETEMPFAIL : fc == 5 ? SMTPC_EPERMFAIL : SMTPC_EPROTO,
                       refusal ? m->fail_code : 0, refusal ? m->fail_text : NULL,
                       "354 to DATA for a refused transaction with accepted recipients: "
                       "connection closed (an end of data would deliver)");
                conn_kill(c, SMTPC_EPROTO, "354 to DATA for a refused transaction");
                return;
            }
            if (e.m->failed || e.m->rcpt_ok == 0) {
                /* A server that says 354 with no recipient: an empty end of
                 * data delivers to nobody (RFC 2920 3.1). */
                e.m->m.len = 0;
                e.m->m.read = NULL;
                e.m->failed = true;
            }
            e.m->stage = S_BODY;
            smtpc__dotstuff_init(&e.m->ds);
            c->body = e.m;
        } else if (code / 100 != 4 && code / 100 != 5) {
            /* A positive reply of the wrong kind (250 to DATA): the body was
             * never sent, and the server and we no longer agree on the
             * state (it may be reading message text): fail the message as a
             * protocol violation and retire the connection (QUIT, which
             * delivers nothing even if it is read as text). */
            mrec *m = e.m;
            char em[260];
            snprintf(em, sizeof em, "DATA: server replied %d %s (not a valid reply here)", code,
                     c->rtext);
            inflight_remove(c, m);
            finish(b, m, SMTPC_BULK_FAILED, SMTPC_EPROTO, 0, NULL, em);
            c->retire = true;
        } else {
            note_fail(c, e.m, K_DATA, code);
            c->need_rset = true;
            msg_done_reply(c, e.m, K_DATA, code);
        }
        break;
    case K_DOT:
        msg_done_reply(c, e.m, K_DOT, code);
        if ((c->canceling || b->canceling) && c->inflight[0]) {
            conn_kill(c, SMTPC_ECANCELED, "canceled");
            return;
        }
        break;
    }
}

/* EHLO keywords this driver acts on. */
static int on_ehlo_caps(conn *c, const smtpc__reply *r)
{
    smtpc__caps caps = {0};
    smtpc__errmsg em;
    int rc = smtpc__caps_parse(&caps, r, &em);
    if (rc) {
        conn_kill(c, rc, em.text);
        return rc;
    }
    c->pipelining = (caps.flags & SMTPC_EXT_PIPELINING) != 0;
    c->starttls_offered = (caps.flags & SMTPC_EXT_STARTTLS) != 0;
    c->size_offered = (caps.flags & SMTPC_EXT_SIZE) != 0;
    c->size_max = caps.size_max;
    c->eightbit_offered = (caps.flags & SMTPC_EXT_8BITMIME) != 0;
    c->smtputf8_offered = (caps.flags & SMTPC_EXT_SMTPUTF8) != 0;
    c->auth_offered = caps.auth ? smtpc__sasl_mask_from_names((const char *const *)caps.auth, caps.nauth) : 0;
    smtpc__caps_clear(&caps);
    return 0;
}

/* Replies through the engine's parser (limits, strict lines, its error
 * text); each complete one answers the front of the expectation ring. */
static int feed(conn *c, const uint8_t *p, size_t n)
{
    while (n) {
        size_t used = 0;
        const smtpc__reply *r = NULL; /* the parser's, reused: no allocation per reply */
        smtpc__errmsg em;
        int rc = smtpc__reply_parser_feed_view(c->rp, p, n, &used, &r, &em);
        if (rc < 0) {
            conn_kill(c, rc, em.text);
            return -1;
        }
        p += used;
        n -= used;
        if (rc == 0) return 0;
        const char *last = r->nlines ? r->lines[r->nlines - 1] : "";
        smtpc__strlcpy(c->rtext, last, sizeof c->rtext);
        int code = r->code;
        c->b->cur_reply = r;
        if (c->exp_len && c->exp[c->exp_head].kind == K_EHLO && code / 100 == 2 &&
            on_ehlo_caps(c, r))
            return -1;
        on_reply(c, code);
        c->b->cur_reply = NULL;
        if (c->dead) return -1;
        if (c->phase == P_TLS) {
            /* Bytes after STARTTLS's 220 before the handshake: injection. */
            if (n) {
                conn_kill(c, SMTPC_EPROTO, "data after STARTTLS's 220 (response injection)");
                return -1;
            }
            return 0;
        }
    }
    return 0;
}

static void do_read(conn *c)
{
    smtpc_bulk *b = c->b;
    for (;;) {
        int want = 0;
        ssize_t n = smtpc__transport_read(c->t, b->rbuf, RBUF_SIZE, &want);
        if (n == SMTPC_EAGAIN) {
            c->rd_want = (uint8_t)want;
            return;
        }
        c->rd_want = 0;
        if (n == 0) {
            conn_kill(c, SMTPC_ECLOSED, c->phase == P_QUIT ? "quit" : "connection closed by the server");
            return;
        }
        if (n < 0) {
            conn_kill(c, (int)n, c->t->err.text[0] ? c->t->err.text : "read failed");
            return;
        }
        arm(c);
        if (feed(c, b->rbuf, (size_t)n) < 0 || c->dead) return;
        if (c->phase == P_TLS) return; /* handshake next */
        /* A short read drained the socket (level-triggered loop: it tells
         * us again); TLS may still hold decrypted bytes. */
        if ((size_t)n < RBUF_SIZE && smtpc__transport_pending(c->t) == 0) {
            c->rd_want = SMTPC__WANT_READ;
            return;
        }
    }
}

static void after_connect(conn *c);

static void do_handshake(conn *c)
{
    int want = 0;
    int rc = smtpc__transport_handshake(c->t, &want);
    if (rc == SMTPC_EAGAIN) {
        c->hs_want = (uint8_t)want;
        return;
    }
    if (rc) {
        conn_kill(c, rc, c->t->err.text[0] ? c->t->err.text : "TLS handshake failed");
        return;
    }
    c->tls_done = true;
    if (c->b->mode == SMTPC_TLS_MODE_IMPLICIT) {
        c->phase = P_GREETING;
        if (exp_push(c, K_GREETING, NULL)) conn_kill(c, SMTPC_ENOMEM, "oom");
    } else {
        send_ehlo(c);
    }
    arm(c);
}

static void start_tls(conn *c)
{
    smtpc_bulk *b = c->b;
    smtpc__transport *tt = NULL;
    smtpc__errmsg em;
    em.text[0] = 0;
    int rc = smtpc__tls_wrap(&tt, c->t, b->tls_ctx, b->o.tls_name ? b->o.tls_name : b->o.host,
                             b->tls_sess, &em);
    if (rc) {
        conn_kill(c, rc, em.text);
        return;
    }
    c->t = tt;
    c->phase = P_TLS;
    c->hs_want = SMTPC__WANT_WRITE;
    arm(c);
}

static void after_connect(conn *c)
{
    if (c->b->mode == SMTPC_TLS_MODE_IMPLICIT) {
        start_tls(c);
        if (!c->dead) do_handshake(c);
        return;
    }
    c->phase = P_GREETING;
    if (exp_push(c, K_GREETING, NULL)) conn_kill(c, SMTPC_ENOMEM, "oom");
    arm(c);
}

/* The proxy layer's handshake (SOCKS greeting, auth, CONNECT; or HTTP
 * CONNECT): non-blocking, bounded by the layer; then SMTP as without one. */
static void do_proxy(conn *c)
{
    int want = 0;
    int rc = smtpc__transport_handshake(c->t, &want);
    if (rc == SMTPC_EAGAIN) {
        c->hs_want = (uint8_t)want;
        return;
    }
    if (rc) {
        char why[1024];
        const char *t = c->t->err.text[0] ? c->t->err.text : "proxy handshake failed";
        if (rc == SMTPC_ETLS) /* the TLS layer's words, without the proxy's name */
            snprintf(why, sizeof why, "proxy %s: TLS to the proxy: %s",
                     smtpc_proxy_redacted(c->b->o.proxy), t);
        else
            smtpc__strlcpy(why, t, sizeof why);
        conn_kill(c, rc, why);
        return;
    }
    c->hs_want = 0;
    arm(c);
    after_connect(c);
    /* an HTTP proxy may have sent the greeting along with its 200: the
     * layer holds it, and the fd will not say so */
    if (!c->dead && c->phase == P_GREETING && smtpc__transport_pending(c->t)) do_read(c);
}

static void target_host(const smtpc_bulk *b, char *out, size_t n)
{
    const char *h = b->o.host;
    size_t hl = strlen(h);
    if (hl > 2 && h[0] == '[' && h[hl - 1] == ']')
        snprintf(out, n, "%.*s", (int)(hl - 2), h + 1);
    else
        snprintf(out, n, "%s", h);
}

static void start_proxy(conn *c)
{
    smtpc_bulk *b = c->b;
    char th[256];
    target_host(b, th, sizeof th);
    smtpc__transport *p = NULL;
    smtpc__errmsg em;
    em.text[0] = 0;
    int rc;
    if (smtpc_proxy_get_type(b->o.proxy) == SMTPC_PROXY_HTTPS) {
        /* CONNECT inside TLS to the proxy, verified against the proxy's
         * name; the handshakes run inner-first in do_proxy() */
        smtpc__transport *tl = NULL;
        rc = smtpc__tls_wrap(&tl, c->t, b->proxy_tls, smtpc_proxy_get_host(b->o.proxy), NULL, &em);
        if (rc) {
            char why[1024];
            snprintf(why, sizeof why, "proxy %s: TLS to the proxy: %s", smtpc_proxy_redacted(b->o.proxy),
                     em.text);
            conn_kill(c, rc, why);
            return;
        }
        c->t = tl;
    }
    rc = smtpc__proxy_layer_new(&p, c->t, b->o.proxy, th, b->port,
                                    b->ptarget_set ? (const struct sockaddr *)&b->ptarget : NULL, &em);
    if (rc) {
        conn_kill(c, rc, em.text);
        return;
    }
    c->t = p;
    c->phase = P_PROXY;
    arm(c);
    do_proxy(c);
}

static void on_io(conn *c, int ev)
{
    switch (c->phase) {
    case P_CONNECTING: {
        smtpc__errmsg em;
        int rc = smtpc__tcp_connect_finish(c->t, &em);
        if (rc) {
            conn_kill(c, rc, em.text);
            return;
        }
        if (c->b->o.proxy) {
            start_proxy(c);
            break;
        }
        after_connect(c);
        break;
    }
    case P_PROXY:
        do_proxy(c);
        break;
    case P_TLS:
        do_handshake(c);
        break;
    default:
        if (c->wr_want && flush_out(c)) return;
        if (ev & SMTPC_POLL_IN || c->rd_want == SMTPC__WANT_WRITE) do_read(c);
        break;
    }
    if (c->dead) return;
    if (c->phase == P_TLS && c->hs_want == SMTPC__WANT_WRITE) {
        do_handshake(c);
        if (c->dead) return;
    }
    pump(c);
    if (!c->dead) flush_out(c);
    if (!c->dead) {
        if (!c->wr_want && !c->body && !c->exp_len) arm(c);
        update_io(c);
    }
}

static int byfd_put(smtpc_bulk *b, int fd, conn *c)
{
    if ((size_t)fd >= b->byfd_cap) {
        size_t nc = b->byfd_cap ? b->byfd_cap : 64;
        while (nc <= (size_t)fd) nc *= 2;
        conn **nv = realloc(b->byfd, nc * sizeof *nv);
        if (!nv) return SMTPC_ENOMEM;
        memset(nv + b->byfd_cap, 0, (nc - b->byfd_cap) * sizeof *nv);
        b->byfd = nv;
        b->byfd_cap = nc;
    }
    b->byfd[fd] = c;
    return 0;
}

static int open_conn(smtpc_bulk *b)
{
    if (b->nconns == b->conns_cap) {
        size_t nc = b->conns_cap ? b->conns_cap * 2 : 16;
        conn **nv = realloc(b->conns, nc * sizeof *nv);
        if (!nv) return SMTPC_ENOMEM;
        b->conns = nv;
        b->conns_cap = nc;
    }
    conn *c = calloc(1, sizeof *c);
    if (!c) return SMTPC_ENOMEM;
    c->b = b;
    c->fd = -1;
    smtpc__buf_init(&c->out, OUT_LIMIT);
    smtpc__reply_limits lim = {MAX_LINE, MAX_REPLY_BYTES, MAX_REPLY_LINES};
    if (smtpc__reply_parser_new(&c->rp, &lim)) {
        conn_free(c);
        return SMTPC_ENOMEM;
    }
    size_t ai = b->addr_next++ % b->naddrs;
    bool inprog = false;
    smtpc__errmsg em;
    smtpc__tcp_opts to = {b->o.bind_addr, b->o.bind_port, b->o.family, -1, -1};
    int rc = smtpc__tcp_connect_start(&c->t, (struct sockaddr *)&b->addrs[ai], b->addrlens[ai], &to,
                                      &inprog, &em);
    b->st.connections_opened++;
    if (rc) {
        b->consec_fail++;
        b->st.connections_failed++;
        b->last_conn_err = rc;
        smtpc__strlcpy(b->last_conn_msg, em.text, sizeof b->last_conn_msg);
        b->last_conn_code = 0;
        b->last_conn_text[0] = 0;
        conn_free(c);
        return rc == SMTPC_ENOMEM ? rc : 0;
    }
    c->fd = c->t->fd;
    if (byfd_put(b, c->fd, c)) {
        smtpc__transport_free(c->t);
        conn_free(c);
        return SMTPC_ENOMEM;
    }
    c->idx = b->nconns;
    b->conns[b->nconns++] = c;
    b->st.connections_open = (unsigned)b->nconns;
    c->phase = P_CONNECTING;
    arm(c);
    if (!inprog) {
        if (b->o.proxy)
            start_proxy(c);
        else
            after_connect(c);
    }
    if (!c->dead) update_io(c);
    return 0;
}

/* Everything not yet reported fails with the connection error. */
static void give_up(smtpc_bulk *b)
{
    char msg[300];
    if (b->auth_failed) /* the server's refusal is the deciding reply */
        smtpc__strlcpy(msg, b->last_conn_msg, sizeof msg);
    else
        snprintf(msg, sizeof msg, "cannot connect: %s", b->last_conn_msg);
    /* the deciding reply: the AUTH refusal, or the one that ended the last
     * connection (a refused greeting or EHLO, a 421), 0 when none did */
    int code = b->auth_failed ? b->auth_code : b->last_conn_code;
    const char *text = b->auth_failed ? b->auth_text : b->last_conn_text;
    mrec *r;
    while ((r = b->retry_head)) {
        b->retry_head = r->next;
        if (!b->retry_head) b->retry_tail = NULL;
        finish(b, r, SMTPC_BULK_FAILED, b->last_conn_err ? b->last_conn_err : SMTPC_ENETWORK,
               code, text, msg);
    }
    /* Drain the source too: each message is reported. */
    while (!b->src_done && !b->canceling) {
        int rc = take_msg(b, &r);
        if (rc <= 0) break;
        r->attempts = 0;
        finish(b, r, SMTPC_BULK_FAILED, b->last_conn_err ? b->last_conn_err : SMTPC_ENETWORK, code,
               text, msg);
    }
    b->src_done = true;
    b->gave_up = true; /* after_action closes the connections still coming up */
}

static bool work_left(smtpc_bulk *b)
{
    return !b->canceling && (b->retry_head || !b->src_done);
}

static void maybe_open(smtpc_bulk *b)
{
    if (!b->resolved) return;
    unsigned limit = b->k * 2 + 4;
    while (b->nconns < b->k && (work_left(b) || (b->hold_idle && !b->canceling))) {
        if (b->consec_fail >= limit || b->unproven_fail >= limit) {
            give_up(b);
            return;
        }
        /* Only one connection while the server is failing to answer. */
        if ((b->consec_fail || b->unproven_fail) && b->nconns > 0) return;
        if (open_conn(b)) {
            give_up(b);
            return;
        }
    }
}

static void reap(smtpc_bulk *b)
{
    while (b->graveyard) {
        conn *c = b->graveyard;
        b->graveyard = c->next_dead;
        conn_free(c);
    }
}

static void process_cancel(smtpc_bulk *b)
{
    if (!atomic_load(&b->cancel_req) || (b->canceling && b->stopping)) return;
    b->canceling = true;
    b->stopping = true;
    if (!b->stop_rc) b->stop_rc = SMTPC_ECANCELED;
    mrec *r;
    while ((r = b->retry_head)) {
        b->retry_head = r->next;
        if (!b->retry_head) b->retry_tail = NULL;
        finish(b, r, SMTPC_BULK_CANCELED, SMTPC_ECANCELED, 0, NULL, "canceled");
    }
    for (size_t i = b->nconns; i-- > 0;) {
        conn *c = b->conns[i];
        c->canceling = true;
        bool waiting_dot = (c->inflight[0] && c->inflight[0]->stage == S_DOT_SENT);
        if (waiting_dot && !c->inflight[1]) continue; /* its reply first, then QUIT */
        if (waiting_dot) {
            /* the second message's envelope is pipelined behind the dot:
             * keep the connection until the dot's reply, then close */
            continue;
        }
        if (c->inflight[0] || c->phase < P_READY) {
            conn_kill(c, SMTPC_ECANCELED, "canceled");
            continue;
        }
        pump(c);
        if (!c->dead) flush_out(c);
        if (!c->dead) update_io(c);
    }
}

/* After a dot's reply on a canceling connection, drop the rest. */
static void cancel_followup(smtpc_bulk *b)
{
    if (!b->canceling) return;
    for (size_t i = b->nconns; i-- > 0;) {
        conn *c = b->conns[i];
        if (!c->canceling) c->canceling = true;
        if (c->inflight[0] && c->inflight[0]->stage != S_DOT_SENT) conn_kill(c, SMTPC_ECANCELED, "canceled");
    }
}

static void fire_timers(smtpc_bulk *b)
{
    smtpc__timer *t;
    while ((t = smtpc__theap_top(&b->heap)) && t->key <= b->now) {
        conn *c = (conn *)((char *)t - offsetof(conn, tm));
        if (c->deadline > b->now) {
            if (c->deadline == INT64_MAX)
                smtpc__theap_remove(&b->heap, t);
            else
                (void)smtpc__theap_set(&b->heap, t, c->deadline);
            continue;
        }
        const char *what = c->phase == P_CONNECTING ? "connect timed out"
                           : c->phase == P_TLS      ? "TLS handshake timed out"
                           : c->exp_len && c->exp[c->exp_head].kind == K_GREETING
                               ? "no greeting (timeout)"
                           : c->exp_len && c->exp[c->exp_head].kind == K_DOT
                               ? "no reply to the end of data (timeout)"
                               : "command timed out";
        conn_kill(c, SMTPC_ETIMEDOUT, what);
    }
    if (b->overall_deadline && b->now >= b->overall_deadline && !b->canceling) {
        b->stop_rc = SMTPC_ETIMEDOUT;
        atomic_store(&b->cancel_req, true);
    }
    if (b->rate_wake && b->now >= b->rate_wake) {
        b->rate_wake = 0;
        for (size_t i = b->nconns; i-- > 0;) {
            conn *c = b->conns[i];
            if (c->dead || c->phase != P_READY) continue;
            pump(c);
            if (!c->dead) flush_out(c);
            if (!c->dead) update_io(c);
        }
    }
}

SMTPC_API int64_t smtpc_bulk_timeout_ms(smtpc_bulk *b)
{
    if (!b) return -1;
    int64_t when = INT64_MAX;
    smtpc__timer *t = smtpc__theap_top(&b->heap);
    if (t) when = t->key;
    if (b->rate_wake && b->rate_wake < when) when = b->rate_wake;
    if (b->overall_deadline && b->overall_deadline < when) when = b->overall_deadline;
    if (when == INT64_MAX) return -1;
    int64_t now = smtpc__now_ms();
    return when <= now ? 0 : when - now;
}

static void resolved_now(smtpc_bulk *b);

static void after_action(smtpc_bulk *b)
{
    process_cancel(b);
    cancel_followup(b);
    maybe_open(b);
    if (b->gave_up) {
        /* Nothing is left to send: a connection still coming up (its
         * greeting may never come) would only hold the run open until its
         * timeout. Ready ones QUIT below. */
        for (size_t i = b->nconns; i-- > 0;)
            if (b->conns[i]->phase < P_READY) conn_kill(b->conns[i], 0, "nothing left to send");
    }
    if (b->src_done && !b->canceling && !b->retry_head && b->outstanding == 0 && !b->hold_idle) {
        /* idle connections QUIT */
        for (size_t i = b->nconns; i-- > 0;) {
            conn *c = b->conns[i];
            if (c->phase == P_READY && !c->exp_len) {
                pump(c);
                if (!c->dead) flush_out(c);
                if (!c->dead) update_io(c);
            }
        }
    }
    reap(b);
    if (b->timer_cb) {
        int64_t ms = smtpc_bulk_timeout_ms(b);
        int64_t when = ms < 0 ? -1 : b->now + ms;
        if (when != b->timer_armed) {
            b->timer_armed = when;
            b->timer_cb(b->timer_ud, ms);
        }
    }
}

SMTPC_API int smtpc_bulk_socket_action(smtpc_bulk *b, int fd, int events)
{
    if (!b) return SMTPC_EINVAL;
    now_update(b);
    if (fd == SMTPC_SOCKET_TIMEOUT) {
        b->timer_armed = -2;
        fire_timers(b);
    } else if (b->resolving && fd == b->resolve_pipe[0]) {
        resolved_now(b);
    } else if (fd >= 0 && (size_t)fd < b->byfd_cap && b->byfd[fd]) {
        on_io(b->byfd[fd], events);
    }
    after_action(b);
    return 0;
}

SMTPC_API bool smtpc_bulk_done(const smtpc_bulk *b)
{
    if (!b) return true;
    if (!b->started) return false;
    if (b->resolving) return false;
    return b->nconns == 0 && b->outstanding == 0 && !b->retry_head &&
           (b->src_done || b->canceling);
}

/* ---- resolution ------------------------------------------------------------ */

static int set_addrs(smtpc_bulk *b, struct addrinfo *res)
{
    size_t n = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) n++;
    if (!n) return SMTPC_ENOHOST;
    free(b->addrs); /* a literal resolved in the loop, then again in the resolver thread */
    free(b->addrlens);
    b->addrs = calloc(n, sizeof *b->addrs);
    b->addrlens = calloc(n, sizeof *b->addrlens);
    if (!b->addrs || !b->addrlens) return SMTPC_ENOMEM;
    size_t i = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next, i++) {
        memcpy(&b->addrs[i], ai->ai_addr, ai->ai_addrlen);
        b->addrlens[i] = ai->ai_addrlen;
    }
    b->naddrs = n;
    return 0;
}

static int resolve(smtpc_bulk *b, bool numeric_only)
{
    struct addrinfo hints, *res = NULL;
    char portstr[8];
    memset(&hints, 0, sizeof hints);
    hints.ai_family = b->o.family; /* of the server's addresses, or the proxy's */
    /* a numeric bind address fixes the family: the others could not be bound */
    unsigned char ab[16];
    if (hints.ai_family == AF_UNSPEC && b->o.bind_addr) {
        if (inet_pton(AF_INET, b->o.bind_addr, ab) == 1) hints.ai_family = AF_INET;
        else if (inet_pton(AF_INET6, b->o.bind_addr, ab) == 1) hints.ai_family = AF_INET6;
    }
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = AI_NUMERICSERV | (numeric_only ? AI_NUMERICHOST : 0);
    char tmp[256];
    target_host(b, tmp, sizeof tmp);
    const char *h = tmp;
    uint16_t port = b->port;
    if (b->o.proxy) {
        /* SOCKS4/SOCKS5 (not 4a/5h) carry an address: the target is resolved here */
        smtpc_proxy_type pt = smtpc_proxy_get_type(b->o.proxy);
        if (smtpc__proxy_resolves_locally(pt) && !b->ptarget_set) {
            unsigned char a[16];
            if (numeric_only && inet_pton(AF_INET, tmp, a) != 1 && inet_pton(AF_INET6, tmp, a) != 1)
                return 1; /* a name: in the resolver thread */
            int rc = smtpc__proxy_resolve_target(pt, tmp, &b->ptarget, &b->resolve_err);
            if (rc) return rc;
            b->ptarget_set = true;
        }
        h = smtpc_proxy_get_host(b->o.proxy);
        port = smtpc_proxy_get_port(b->o.proxy);
    }
    snprintf(portstr, sizeof portstr, "%u", (unsigned)port);
    int g = getaddrinfo(h, portstr, &hints, &res);
    if (g) {
        if (numeric_only && g == EAI_NONAME) return 1; /* not a literal */
        return smtpc__err(&b->resolve_err, SMTPC_ENOHOST, "cannot resolve %s%s: %s%s",
                          b->o.proxy ? "the proxy " : "", h, gai_strerror(g),
                          hints.ai_family == AF_INET    ? " (IPv4 only)"
                          : hints.ai_family == AF_INET6 ? " (IPv6 only)"
                                                        : "");
    }
    int rc = set_addrs(b, res);
    freeaddrinfo(res);
    return rc;
}

static void *resolver_main(void *arg)
{
    smtpc_bulk *b = arg;
    if (!b->o.ehlo_name) smtpc__local_fqdn_lookup(); /* the default EHLO name: may wait for DNS */
    b->resolve_rc = resolve(b, false);
    char x = 1;
    ssize_t w;
    do w = write(b->resolve_pipe[1], &x, 1);
    while (w < 0 && errno == EINTR);
    return NULL;
}

static void resolved_now(smtpc_bulk *b)
{
    pthread_join(b->resolver, NULL);
    b->resolver_started = false;
    if (b->sock_cb) b->sock_cb(b->sock_ud, b->resolve_pipe[0], SMTPC_POLL_REMOVE);
    close(b->resolve_pipe[0]);
    close(b->resolve_pipe[1]);
    b->resolve_pipe[0] = b->resolve_pipe[1] = -1;
    b->resolving = false;
    if (b->resolve_rc) {
        smtpc__strlcpy(b->last_conn_msg, b->resolve_err.text, sizeof b->last_conn_msg);
        b->last_conn_err = b->resolve_rc;
        b->last_conn_code = 0;
        b->last_conn_text[0] = 0;
        give_up(b);
        return;
    }
    b->resolved = true;
}

static int unsupported(smtpc_bulk *b, const smtpc_conn_opts *o);

SMTPC_API int smtpc_bulk_start(smtpc_bulk *b)
{
    if (!b) return SMTPC_EINVAL;
    if (b->started) return SMTPC_ESTATE;
    if (b->o.proxy && smtpc_proxy_get_type(b->o.proxy) == SMTPC_PROXY_HTTPS && !b->proxy_tls) {
        smtpc__tls_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.release_buffers = true;
        int rc = smtpc__tls_ctx_new(&b->proxy_tls, &cfg, &b->err);
        if (rc) return rc;
    }
    int urc = unsupported(b, &b->o);
    if (urc) return urc;
    b->port = smtpc__conn_opts_port(&b->o);
    b->mode = smtpc__conn_opts_effective_mode(&b->o, b->port);
    if (b->mode != SMTPC_TLS_MODE_NONE && !b->tls_ctx) {
        /* the session's TLS configuration (CA file/path, pins, client
         * certificate, versions); configuration errors before any network
         * activity */
        smtpc__tls_config cfg;
        smtpc__conn_opts_tls_config(&b->o, &cfg);
        cfg.release_buffers = true; /* idle connections keep no record buffers (~10 KiB each) */
        int rc = smtpc__tls_ctx_new(&b->tls_ctx, &cfg, &b->err);
        if (rc) return rc;
    }
    b->started = true;
    now_update(b);
    if (b->overall_ms > 0) b->overall_deadline = b->now + b->overall_ms;
    int rc = resolve(b, true);
    /* The default EHLO name's first lookup may wait for DNS: not in the loop. */
    if (rc == 0 && !b->o.ehlo_name && !smtpc__local_fqdn_done()) rc = 1;
    if (rc == 0) {
        b->resolved = true;
    } else if (rc == 1) {
        if (pipe2(b->resolve_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
            return smtpc__err(&b->err, SMTPC_ENOMEM, "pipe: %s", strerror(errno));
        b->resolving = true;
        if (pthread_create(&b->resolver, NULL, resolver_main, b) != 0) {
            b->resolving = false;
            return smtpc__err(&b->err, SMTPC_ENOMEM, "cannot start the resolver thread");
        }
        b->resolver_started = true;
        if (b->sock_cb) b->sock_cb(b->sock_ud, b->resolve_pipe[0], SMTPC_POLL_IN);
    } else {
        return smtpc__err(&b->err, rc, "%s", b->resolve_err.text);
    }
    after_action(b);
    return 0;
}

/* ---- built-in loop ------------------------------------------------------ */

static void ep_sock_cb(void *ud, int fd, int what)
{
    smtpc_bulk *b = ud;
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.data.fd = fd;
    if (what & SMTPC_POLL_REMOVE) {
        (void)epoll_ctl(b->epfd, EPOLL_CTL_DEL, fd, &ev);
        return;
    }
    ev.events = (what & SMTPC_POLL_IN ? EPOLLIN : 0u) | (what & SMTPC_POLL_OUT ? EPOLLOUT : 0u);
    if (epoll_ctl(b->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 && errno == ENOENT)
        (void)epoll_ctl(b->epfd, EPOLL_CTL_ADD, fd, &ev);
}

/* poll(): an array of the watched fds and an fd -> index map; removal
 * swaps the last entry in. O(watched fds) per wait: a fallback for systems
 * without epoll (or when asked for), not the fast path. */
static int pl_watch(smtpc_bulk *b, int fd, short events)
{
    if ((size_t)fd >= b->pidx_cap) {
        size_t nc = b->pidx_cap ? b->pidx_cap : 64;
        while (nc <= (size_t)fd) nc *= 2;
        int *ni = realloc(b->pidx, nc * sizeof *ni);
        if (!ni) return SMTPC_ENOMEM;
        for (size_t i = b->pidx_cap; i < nc; i++) ni[i] = -1;
        b->pidx = ni;
        b->pidx_cap = nc;
    }
    int i = b->pidx[fd];
    if (i >= 0) {
        b->pfds[i].events = events;
        return 0;
    }
    if (b->npfds == b->pfds_cap) {
        size_t nc = b->pfds_cap ? b->pfds_cap * 2 : 64;
        struct pollfd *np = realloc(b->pfds, nc * sizeof *np);
        if (!np) return SMTPC_ENOMEM;
        b->pfds = np;
        struct pollfd *nr = realloc(b->pready, nc * sizeof *nr);
        if (!nr) return SMTPC_ENOMEM;
        b->pready = nr;
        b->pfds_cap = nc;
    }
    b->pfds[b->npfds] = (struct pollfd){.fd = fd, .events = events, .revents = 0};
    b->pidx[fd] = (int)b->npfds++;
    return 0;
}

static void pl_sock_cb(void *ud, int fd, int what)
{
    smtpc_bulk *b = ud;
    if (fd < 0) return;
    if (what & SMTPC_POLL_REMOVE) {
        if ((size_t)fd >= b->pidx_cap || b->pidx[fd] < 0) return;
        size_t i = (size_t)b->pidx[fd];
        b->pidx[fd] = -1;
        if (i != --b->npfds) {
            b->pfds[i] = b->pfds[b->npfds];
            b->pidx[b->pfds[i].fd] = (int)i;
        }
        return;
    }
    short ev = (short)((what & SMTPC_POLL_IN ? POLLIN : 0) | (what & SMTPC_POLL_OUT ? POLLOUT : 0));
    if (pl_watch(b, fd, ev)) b->pl_oom = true; /* ends the run: that fd would never be served */
}

static void dispatch(smtpc_bulk *b, int fd, bool in, bool out, bool err)
{
    if (fd == b->cancel_fd) {
        uint64_t v;
        if (read(b->cancel_fd, &v, sizeof v) < 0) { /* drained */ }
        return;
    }
    int e = (in || err ? SMTPC_POLL_IN : 0) | (out || err ? SMTPC_POLL_OUT : 0);
    if (b->resolving && fd == b->resolve_pipe[0])
        resolved_now(b);
    else if ((size_t)fd < b->byfd_cap && b->byfd[fd])
        on_io(b->byfd[fd], e);
}

static int wait_ms(smtpc_bulk *b)
{
    int64_t to = smtpc_bulk_timeout_ms(b);
    return to < 0 ? -1 : to > 1000000 ? 1000000 : (int)to;
}

static int run_epoll(smtpc_bulk *b)
{
    b->sock_cb = ep_sock_cb;
    b->sock_ud = b;
    struct epoll_event cev;
    memset(&cev, 0, sizeof cev);
    cev.events = EPOLLIN;
    cev.data.fd = b->cancel_fd;
    (void)epoll_ctl(b->epfd, EPOLL_CTL_ADD, b->cancel_fd, &cev);
    int rc = smtpc_bulk_start(b);
    struct epoll_event evs[256];
    while (!rc && !smtpc_bulk_done(b)) {
        int n = epoll_wait(b->epfd, evs, 256, wait_ms(b));
        if (n < 0) {
            if (errno == EINTR) continue;
            rc = smtpc__err(&b->err, SMTPC_ENETWORK, "epoll_wait: %s", strerror(errno));
            break;
        }
        now_update(b);
        for (int i = 0; i < n; i++) {
            uint32_t ev = evs[i].events;
            dispatch(b, evs[i].data.fd, ev & EPOLLIN, ev & EPOLLOUT, ev & (EPOLLHUP | EPOLLERR));
        }
        fire_timers(b);
        after_action(b);
    }
    (void)epoll_ctl(b->epfd, EPOLL_CTL_DEL, b->cancel_fd, &cev);
    close(b->epfd);
    b->epfd = -1;
    return rc;
}

static int run_poll(smtpc_bulk *b)
{
    b->sock_cb = pl_sock_cb;
    b->sock_ud = b;
    b->pl_oom = false;
    int rc = pl_watch(b, b->cancel_fd, POLLIN);
    if (!rc) rc = smtpc_bulk_start(b);
    while (!rc && !smtpc_bulk_done(b)) {
        if (b->pl_oom) {
            rc = smtpc__err(&b->err, SMTPC_ENOMEM, "poll: out of memory");
            break;
        }
        int n = poll(b->pfds, (nfds_t)b->npfds, wait_ms(b));
        if (n < 0) {
            if (errno == EINTR) continue;
            rc = smtpc__err(&b->err, SMTPC_ENETWORK, "poll: %s", strerror(errno));
            break;
        }
        now_update(b);
        /* handling an fd adds and removes entries: work on a copy */
        size_t k = 0;
        for (size_t i = 0; i < b->npfds && (int)k < n; i++)
            if (b->pfds[i].revents) b->pready[k++] = b->pfds[i];
        for (size_t i = 0; i < k; i++) {
            short ev = b->pready[i].revents;
            dispatch(b, b->pready[i].fd, ev & POLLIN, ev & POLLOUT, ev & (POLLHUP | POLLERR | POLLNVAL));
        }
        fire_timers(b);
        after_action(b);
    }
    b->npfds = 0;
    for (size_t i = 0; i < b->pidx_cap; i++) b->pidx[i] = -1;
    return rc;
}

SMTPC_API int smtpc_bulk_run(smtpc_bulk *b)
{
    if (!b) return SMTPC_EINVAL;
    if (b->sock_cb) return smtpc__err(&b->err, SMTPC_ESTATE, "run: an external loop is set");
    int rc;
    b->epfd = -1;
    if (b->loop_mode != SMTPC_BULK_LOOP_POLL) {
        b->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (b->epfd < 0 && b->loop_mode == SMTPC_BULK_LOOP_EPOLL)
            return smtpc__err(&b->err, SMTPC_EUNSUPPORTED, "epoll: %s", strerror(errno));
    }
    b->loop_used = b->epfd >= 0 ? SMTPC_BULK_LOOP_EPOLL : SMTPC_BULK_LOOP_POLL;
    rc = b->epfd >= 0 ? run_epoll(b) : run_poll(b);
    b->sock_cb = NULL;
    if (rc) return rc;
    return b->stop_rc;
}

SMTPC_API int smtpc_bulk_set_loop(smtpc_bulk *b, int loop)
{
    if (!b || b->started || loop < SMTPC_BULK_LOOP_AUTO || loop > SMTPC_BULK_LOOP_POLL)
        return SMTPC_EINVAL;
    b->loop_mode = loop;
    return 0;
}

SMTPC_API int smtpc_bulk_loop_used(const smtpc_bulk *b) { return b ? b->loop_used : 0; }

SMTPC_API void smtpc_bulk_cancel(smtpc_bulk *b)
{
    if (!b) return;
    atomic_store(&b->cancel_req, true);
    uint64_t one = 1;
    if (b->cancel_fd >= 0 && write(b->cancel_fd, &one, sizeof one) < 0) { /* best effort */ }
}

/* ---- lifetime and settings ---------------------------------------------- */

SMTPC_API int smtpc_bulk_new(smtpc_bulk **out, const char *host, uint16_t port)
{
    if (!out || !host || !*host || smtpc__has_ctl(host) || strlen(host) > 255) return SMTPC_EINVAL;
    smtpc_bulk *b = calloc(1, sizeof *b);
    if (!b) return SMTPC_ENOMEM;
    smtpc__conn_opts_init(&b->o);
    int hrc = smtpc_conn_opts_set_server(&b->o, host, port);
    b->rbuf = malloc(RBUF_SIZE);
    b->tmp = malloc(BODY_CHUNK);
    b->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (hrc || !b->rbuf || !b->tmp || b->cancel_fd < 0) {
        if (b->cancel_fd >= 0) close(b->cancel_fd);
        smtpc__conn_opts_clear(&b->o);
        free(b->rbuf);
        free(b->tmp);
        free(b);
        return hrc == SMTPC_EINVAL ? hrc : SMTPC_ENOMEM;
    }
    b->k = 1;
    b->max_attempts = 3;
    b->burst = 1;
    b->epfd = -1;
    b->resolve_pipe[0] = b->resolve_pipe[1] = -1;
    b->timer_armed = -2;
    smtpc__theap_init(&b->heap);
    atomic_init(&b->cancel_req, false);
    *out = b;
    return 0;
}

SMTPC_API void smtpc_bulk_free(smtpc_bulk *b)
{
    if (!b) return;
    if (b->resolver_started) {
        pthread_join(b->resolver, NULL);
        if (b->resolve_pipe[0] >= 0) {
            if (b->sock_cb) b->sock_cb(b->sock_ud, b->resolve_pipe[0], SMTPC_POLL_REMOVE);
            close(b->resolve_pipe[0]);
            close(b->resolve_pipe[1]);
        }
    }
    b->canceling = true;
    while (b->nconns) conn_kill(b->conns[b->nconns - 1], SMTPC_ECANCELED, "canceled (freed)");
    mrec *r;
    while ((r = b->retry_head)) {
        b->retry_head = r->next;
        finish(b, r, SMTPC_BULK_CANCELED, SMTPC_ECANCELED, 0, NULL, "canceled (freed)");
    }
    reap(b);
    while ((r = b->free_recs)) {
        b->free_recs = r->next;
        free(r->rcodes);
        free(r);
    }
    smtpc__theap_free(&b->heap);
    free(b->conns);
    free(b->byfd);
    free(b->pfds);
    free(b->pready);
    free(b->pidx);
    free(b->addrs);
    free(b->addrlens);
    if (b->tls_sess) smtpc__tls_session_free(b->tls_sess);
    smtpc__tls_ctx_free(b->tls_ctx);
    if (b->cancel_fd >= 0) close(b->cancel_fd);
    if (b->epfd >= 0) close(b->epfd);
    smtpc__conn_opts_clear(&b->o); /* wipes the secrets */
    smtpc__tls_ctx_free(b->proxy_tls);
    free(b->rbuf);
    free(b->tmp);
    free(b);
}

SMTPC_API const char *smtpc_bulk_errmsg(const smtpc_bulk *b) { return b ? b->err.text : ""; }

SMTPC_API int smtpc_bulk_set_source(smtpc_bulk *b, smtpc_bulk_next_cb next, void *ud)
{
    if (!b || b->started) return SMTPC_EINVAL;
    b->next_cb = next;
    b->next_ud = ud;
    return 0;
}

SMTPC_API int smtpc_bulk_set_result_cb(smtpc_bulk *b, smtpc_bulk_result_cb cb, void *ud)
{
    if (!b) return SMTPC_EINVAL;
    b->res_cb = cb;
    b->res_ud = ud;
    return 0;
}

SMTPC_API int smtpc_bulk_set_connections(smtpc_bulk *b, unsigned k)
{
    if (!b || k == 0 || k > 100000) return SMTPC_EINVAL;
    b->k = k;
    return 0;
}

SMTPC_API int smtpc_bulk_set_max_per_connection(smtpc_bulk *b, unsigned n)
{
    if (!b) return SMTPC_EINVAL;
    b->max_per_conn = n;
    return 0;
}

SMTPC_API int smtpc_bulk_set_max_attempts(smtpc_bulk *b, unsigned n)
{
    if (!b || n == 0) return SMTPC_EINVAL;
    b->max_attempts = n;
    return 0;
}

SMTPC_API int smtpc_bulk_set_rate(smtpc_bulk *b, double msgs_per_sec, unsigned burst)
{
    if (!b || msgs_per_sec < 0) return SMTPC_EINVAL;
    b->rate = msgs_per_sec;
    b->burst = burst ? burst : 1;
    return 0;
}

/* A conn_opts setter's result: its detail copied to the handle. */
static int opt_rc(smtpc_bulk *b, int rc)
{
    if (rc) smtpc__err(&b->err, rc, "%s", b->o.err.text[0] ? b->o.err.text : smtpc_strerror(rc));
    return rc;
}

/* What bulk cannot do with options o (SMTPC_EUNSUPPORTED, errmsg says what). */
static int unsupported(smtpc_bulk *b, const smtpc_conn_opts *o)
{
    if (o->tls_mode == SMTPC_TLS_MODE_AUTO)
        return smtpc__err(&b->err, SMTPC_EUNSUPPORTED,
                          "TLS mode auto is not supported by bulk: choose implicit, starttls, "
                          "starttls-optional or none (or default: by port)");
    return 0;
}

SMTPC_API int smtpc_bulk_set_conn_opts(smtpc_bulk *b, const smtpc_conn_opts *o)
{
    if (!b) return SMTPC_EINVAL;
    if (!o || b->started)
        return smtpc__err(&b->err, SMTPC_EINVAL, "set_conn_opts: %s", o ? "already started" : "no options");
    int rc = unsupported(b, o);
    if (rc) return rc;
    smtpc_conn_opts n;
    smtpc__conn_opts_init(&n);
    rc = smtpc__conn_opts_copy(&n, o);
    /* without a host in o, the server given to smtpc_bulk_new stays */
    if (!rc && !n.host) {
        n.port = b->o.port;
        if (!(n.host = smtpc__strdup(b->o.host))) rc = SMTPC_ENOMEM;
    }
    if (rc) {
        smtpc__conn_opts_clear(&n);
        return smtpc__err(&b->err, SMTPC_ENOMEM, "set_conn_opts: out of memory");
    }
    smtpc__conn_opts_clear(&b->o);
    b->o = n;
    b->ptarget_set = false; /* the target or the proxy may have changed */
    return 0;
}

SMTPC_API int smtpc_bulk_set_timeouts(smtpc_bulk *b, int64_t connect_ms, int64_t greeting_ms,
                                      int64_t command_ms, int64_t data_end_ms, int64_t overall_ms)
{
    if (!b || connect_ms < 0 || greeting_ms < 0 || command_ms < 0 || data_end_ms < 0 ||
        overall_ms < 0)
        return SMTPC_EINVAL;
    /* 0 keeps the value in force */
    if (connect_ms) b->o.connect_ms = connect_ms;
    if (greeting_ms) b->o.greeting_ms = greeting_ms;
    if (command_ms) b->o.command_ms = command_ms;
    if (data_end_ms) b->o.data_ms = data_end_ms;
    b->overall_ms = overall_ms;
    return 0;
}

SMTPC_API int smtpc_bulk_set_ehlo_name(smtpc_bulk *b, const char *name)
{
    if (!b) return SMTPC_EINVAL;
    return opt_rc(b, smtpc_conn_opts_set_ehlo_name(&b->o, name));
}

SMTPC_API int smtpc_bulk_set_tls(smtpc_bulk *b, smtpc_tls_mode mode, const char *server_name,
                                 const char *ca_file, bool insecure)
{
    if (!b) return SMTPC_EINVAL;
    if (b->started) return smtpc__err(&b->err, SMTPC_EINVAL, "set_tls: already started");
    /* all or nothing: checked on a copy */
    smtpc_conn_opts n;
    smtpc__conn_opts_init(&n);
    int rc = smtpc__conn_opts_copy(&n, &b->o);
    if (rc) return rc;
    rc = smtpc_conn_opts_set_tls_mode(&n, mode);
    if (!rc) rc = smtpc_conn_opts_set_tls_server_name(&n, server_name);
    if (!rc) rc = smtpc_conn_opts_set_ca_file(&n, ca_file);
    if (!rc) rc = smtpc_conn_opts_set_insecure(&n, insecure);
    if (!rc) rc = unsupported(b, &n);
    else smtpc__err(&b->err, rc, "%s", n.err.text[0] ? n.err.text : smtpc_strerror(rc));
    if (rc) {
        smtpc__conn_opts_clear(&n);
        return rc;
    }
    smtpc__conn_opts_clear(&b->o);
    b->o = n;
    return 0;
}

SMTPC_API int smtpc_bulk_set_credentials(smtpc_bulk *b, const char *user, const char *password)
{
    if (!b || b->started) return SMTPC_EINVAL;
    return opt_rc(b, smtpc_conn_opts_set_credentials(&b->o, user, password));
}

SMTPC_API int smtpc_bulk_set_oauth_token(smtpc_bulk *b, const char *token)
{
    if (!b || b->started) return SMTPC_EINVAL;
    int rc = opt_rc(b, smtpc_conn_opts_set_oauth_token(&b->o, token));
    if (!rc) b->o.token_cb = NULL; /* one source of tokens: the last one set */
    return rc;
}

SMTPC_API int smtpc_bulk_set_token_cb(smtpc_bulk *b, smtpc_token_cb cb, void *userdata)
{
    if (!b || b->started) return SMTPC_EINVAL;
    (void)smtpc_conn_opts_set_oauth_token(&b->o, NULL); /* one source of tokens: the last one set */
    return opt_rc(b, smtpc_conn_opts_set_token_cb(&b->o, cb, userdata));
}

SMTPC_API int smtpc_bulk_set_auth_mechanisms(smtpc_bulk *b, const char *list)
{
    if (!b || b->started) return SMTPC_EINVAL;
    return opt_rc(b, smtpc_conn_opts_set_auth_mechanisms(&b->o, list));
}

SMTPC_API int smtpc_bulk_set_allow_plaintext_auth(smtpc_bulk *b, bool allow)
{
    if (!b || b->started) return SMTPC_EINVAL;
    return opt_rc(b, smtpc_conn_opts_set_allow_plaintext_auth(&b->o, allow));
}

SMTPC_API int smtpc_bulk_set_proxy(smtpc_bulk *b, const smtpc_proxy *proxy)
{
    if (!b || b->started) return SMTPC_EINVAL;
    int rc = opt_rc(b, smtpc_conn_opts_set_proxy(&b->o, proxy)); /* the old one's credentials wiped */
    if (!rc) b->ptarget_set = false;
    return rc;
}

SMTPC_API int smtpc_bulk_set_hold_idle(smtpc_bulk *b, bool on)
{
    if (!b) return SMTPC_EINVAL;
    b->hold_idle = on;
    return 0;
}

SMTPC_API int smtpc_bulk_set_socket_cb(smtpc_bulk *b, smtpc_bulk_socket_cb cb, void *ud)
{
    if (!b || b->started) return SMTPC_EINVAL;
    b->sock_cb = cb;
    b->sock_ud = ud;
    return 0;
}

SMTPC_API int smtpc_bulk_set_timer_cb(smtpc_bulk *b, smtpc_bulk_timer_cb cb, void *ud)
{
    if (!b || b->started) return SMTPC_EINVAL;
    b->timer_cb = cb;
    b->timer_ud = ud;
    return 0;
}

SMTPC_API void smtpc_bulk_get_stats(const smtpc_bulk *b, smtpc_bulk_stats *st)
{
    if (!b || !st) return;
    *st = b->st;
    st->connections_open = (unsigned)b->nconns;
    st->connections_idle = 0;
    for (size_t i = 0; i < b->nconns; i++) {
        const conn *c = b->conns[i];
        if (c->phase == P_READY && !c->exp_len && !c->inflight[0]) st->connections_idle++;
    }
}
