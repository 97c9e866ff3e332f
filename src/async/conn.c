/* smtpc_bulk: one connection. The transport (TCP, [proxy], [TLS]) driven by
 * fd readiness; every SMTP command and reply through the connection's
 * engine: the opener (greeting, EHLO, STARTTLS, AUTH) first, then one
 * engine transaction per message, the next one chained behind the final
 * dot of the previous one (one round trip per message). What the engine
 * reports decides each message's fate; the connection only adds what is
 * about connections: a message whose connection is lost before its final
 * dot was written goes again elsewhere, one whose dot went out is UNKNOWN. */
#include "async/bulk_int.h"

#include "net/proxy.h"
#include "net/tcp_async.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef smtpc__bulk_conn conn;
typedef smtpc__bulk_rec rec;

static void pump(conn *c);
static int flush_out(conn *c);
static void do_read(conn *c);

/* ---- timers and interest ------------------------------------------------------------------ */

/* A final dot is out and its reply awaited. */
static bool dot_out(const conn *c)
{
    return c->prev || (c->cur && c->cur->stage == S_DOT_SENT);
}

/* The timeouts: the options' when set, else bulk's defaults. */
static int64_t to_connect(const smtpc_bulk *b) { return b->o.connect_ms ? b->o.connect_ms : 30000; }
static int64_t to_greeting(const smtpc_bulk *b) { return b->o.greeting_ms ? b->o.greeting_ms : 300000; }
static int64_t to_command(const smtpc_bulk *b) { return b->o.command_ms ? b->o.command_ms : 300000; }
static int64_t to_data_end(const smtpc_bulk *b) { return b->o.data_ms ? b->o.data_ms : 600000; }

static int64_t phase_timeout(const conn *c)
{
    const smtpc_bulk *b = c->b;
    switch (c->phase) {
    case P_CONNECTING:
    case P_PROXY:
    case P_TLS: return to_connect(b);
    case P_OPENING:
        return smtpc__opener_step(c->op) == SMTPC__OPEN_STEP_GREETING ? to_greeting(b) : to_command(b);
    default: break;
    }
    if (smtpc__engine_pending_replies(c->e)) return dot_out(c) ? to_data_end(b) : to_command(b);
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

bool smtpc__bulk_conn_idle(const conn *c)
{
    return c->phase == P_READY && !c->cur && !c->prev && !smtpc__engine_pending_replies(c->e);
}

bool smtpc__bulk_conn_awaits_dot(const conn *c) { return dot_out(c); }

bool smtpc__bulk_conn_busy(const conn *c) { return c->cur || c->prev; }

/* ---- the end of a connection ---------------------------------------------------------------- */

void smtpc__bulk_conn_kill(conn *c, int err, const char *why)
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
    rec *in[2] = {c->prev, c->cur};
    c->prev = c->cur = c->body = NULL;
    for (int i = 0; i < 2; i++) {
        rec *m = in[i];
        if (!m) continue;
        if (c->kill_code && m->stage != S_DOT_SENT) {
            /* the server's 421 is what stopped it (reported if no retry is left) */
            m->fail_code = c->kill_code;
            smtpc__strlcpy(m->fail_text, c->rtext, sizeof m->fail_text);
        }
        /* a dot still in our output never reached the server: retried */
        if (m->stage == S_DOT_SENT && !(m == c->dot_rec && c->dot_left))
            smtpc__bulk_finish(b, m, SMTPC_BULK_UNKNOWN, SMTPC_EUNKNOWN, 0, NULL, why);
        else
            smtpc__bulk_requeue(b, m, err, why);
    }
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

void smtpc__bulk_conn_free(conn *c)
{
    smtpc__opener_free(c->op);  /* wipes its SASL context */
    smtpc__engine_free(c->e);   /* wipes its output (AUTH lines) */
    free(c->tap);
    free(c);
}

/* The reply's last line, kept for the reports. */
static void note_reply(conn *c, const smtpc__reply *r)
{
    const char *last = r && r->nlines ? r->lines[r->nlines - 1] : "";
    smtpc__strlcpy(c->rtext, last, sizeof c->rtext);
}

/* The server says 421 (RFC 5321 3.8): a refusal of whatever was in flight
 * (a message gets another attempt), and the connection is over. */
static void on_421(conn *c, const smtpc__reply *r)
{
    char why[220];
    note_reply(c, r);
    snprintf(why, sizeof why, "server replied 421 %s (connection closed)", c->rtext);
    /* a 421 to a final dot refuses the message: it may go again */
    if (c->prev) c->prev->stage = S_BODY;
    if (c->cur && c->cur->stage == S_DOT_SENT) c->cur->stage = S_BODY;
    c->kill_code = 421;
    smtpc__bulk_conn_kill(c, SMTPC_ETEMPFAIL, why);
}

/* ---- opening: the shared opener ---------------------------------------------------------------- */

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

static void start_tls(conn *c);

/* The transport is up (after the implicit TLS handshake, if any): the
 * greeting is next. */
static void begin_open(conn *c)
{
    smtpc_bulk *b = c->b;
    char def[300];
    if (!b->o.ehlo_name) smtpc__default_ehlo_name(c->fd, def, sizeof def);
    smtpc__opener_policy pol;
    smtpc__conn_opts_opener_policy(&b->o, b->tls_ctx && smtpc__tls_ctx_has_client_cert(b->tls_ctx), &pol);
    smtpc__opener_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.policy = &pol;
    cfg.mode = b->mode;
    cfg.encrypted = c->tls_done;
    cfg.ehlo_name = b->o.ehlo_name ? b->o.ehlo_name : def;
    cfg.server = b->server;
    cfg.sasl_host = b->o.tls_name ? b->o.tls_name : b->o.host;
    cfg.port = b->port;
    cfg.token_fn = b->o.token_cb ? conn_token : NULL;
    cfg.token_ud = c;
    if (smtpc__opener_new(&c->op, c->e, &cfg)) {
        smtpc__bulk_conn_kill(c, SMTPC_ENOMEM, "out of memory");
        return;
    }
    c->phase = P_OPENING;
    int rc = smtpc__opener_start(c->op);
    if (rc) smtpc__bulk_conn_kill(c, rc, smtpc__opener_errmsg(c->op));
    else arm(c);
}

/* Writes what the engine still has, once, without waiting (a polite QUIT). */
static void write_once(conn *c)
{
    const uint8_t *p;
    size_t n = smtpc__engine_output(c->e, &p);
    int want = 0;
    if (n && c->t) (void)smtpc__transport_write(c->t, p, n, &want);
}

static void open_failed(conn *c, int rc)
{
    smtpc_bulk *b = c->b;
    const smtpc__reply *r = smtpc__opener_reply(c->op);
    char why[SMTPC__ERRMSG_MAX];
    if (c->token_cb_rc && smtpc__opener_step(c->op) == SMTPC__OPEN_STEP_AUTH)
        /* the caller's callback is what failed: say so first (reports keep 255 octets) */
        snprintf(why, sizeof why, "AUTH %s: the token callback failed (%s): %s",
                 smtpc__sasl_mech_name(smtpc__opener_mech(c->op)), smtpc_err_name(c->token_cb_rc),
                 smtpc__opener_errmsg(c->op));
    else
        smtpc__strlcpy(why, smtpc__opener_errmsg(c->op), sizeof why);
    note_reply(c, r);
    write_once(c);
    if (smtpc__opener_fatal(c->op)) {
        /* AUTH cannot succeed (refused with 5xx, no mechanism in common,
         * no TLS, unusable credentials): the same on every connection, so
         * the run gives up and every message fails with it */
        if (!b->auth_failed) {
            b->auth_failed = true;
            b->auth_code = r ? r->code : 0;
            smtpc__strlcpy(b->auth_text, r ? c->rtext : "", sizeof b->auth_text);
        }
        smtpc__bulk_conn_kill(c, rc, why); /* records it as the connection error */
        smtpc__bulk_give_up(b);
        return;
    }
    c->kill_code = r ? r->code : 0;
    smtpc__bulk_conn_kill(c, rc, why);
}

static void opened(conn *c)
{
    smtpc_bulk *b = c->b;
    smtpc__opener_free(c->op);
    c->op = NULL;
    c->phase = P_READY;
    b->consec_fail = 0;
    if (c->tls_done && !b->tls_sess) b->tls_sess = smtpc__tls_get_session(c->t);
}

/* ---- messages ---------------------------------------------------------------------------------------- */

/* The body's length when it is known before sending (in memory). */
static bool body_len_known(const rec *m)
{
    return m->m.data || !m->m.read;
}

/* Queues m's transaction. false when m was reported (refused before
 * anything was sent) and the next one may be tried. */
static bool start_msg(conn *c, rec *m)
{
    smtpc_bulk *b = c->b;
    m->attempts++;
    if (!m->m.from || !m->m.rcpts || m->m.nrcpts == 0 || (!m->m.data && !m->m.read && m->m.len)) {
        smtpc__bulk_finish(b, m, SMTPC_BULK_FAILED, SMTPC_EINVAL, 0, NULL, "invalid envelope or body");
        return false;
    }
    bool utf8 = smtpc__has_8bit(m->m.from, strlen(m->m.from));
    for (size_t i = 0; i < m->m.nrcpts; i++) {
        if (!m->m.rcpts[i] || !*m->m.rcpts[i]) {
            smtpc__bulk_finish(b, m, SMTPC_BULK_FAILED, SMTPC_EINVAL, 0, NULL, "invalid recipient");
            return false;
        }
        utf8 = utf8 || smtpc__has_8bit(m->m.rcpts[i], strlen(m->m.rcpts[i]));
    }
    if (m->rcodes_cap < m->m.nrcpts) {
        int *nr = realloc(m->rcodes, m->m.nrcpts * sizeof *nr);
        if (!nr) {
            smtpc__bulk_finish(b, m, SMTPC_BULK_FAILED, SMTPC_ENOMEM, 0, NULL, "out of memory");
            return false;
        }
        m->rcodes = nr;
        m->rcodes_cap = m->m.nrcpts;
    }
    /* SIZE= when the length is known (RFC 1870; the engine leaves it out
     * when the server has no SIZE and refuses a message over its limit);
     * RFC 6531: a non-ASCII address with SMTPUTF8; RFC 6152: an 8-bit body
     * declared when the server takes it (else sent as is, as the client does) */
    const smtpc__caps *caps = smtpc__engine_caps(c->e);
    smtpc__mail_params mp;
    memset(&mp, 0, sizeof mp);
    mp.size = body_len_known(m) ? m->m.len : 0;
    mp.smtputf8 = utf8;
    if ((caps->flags & SMTPC_EXT_8BITMIME) && m->m.data && smtpc__has_8bit(m->m.data, m->m.len))
        mp.body = SMTPC__BODY_8BITMIME;
    /* DSN (RFC 3461): dropped on a server without DSN unless the policy
     * requires it; then the engine refuses the transaction (nothing queued) */
    const smtpc_send_params *dp = m->m.params;
    smtpc__rcpt_params *rp = NULL;
    if (dp && dp->rcpt && dp->nrcpt != m->m.nrcpts) {
        smtpc__bulk_finish(b, m, SMTPC_BULK_FAILED, SMTPC_EINVAL, 0, NULL,
                           "DSN: the recipient entries are not one per recipient");
        return false;
    }
    if (dp && ((caps->flags & SMTPC_EXT_DSN) || b->dsn_policy == SMTPC_DSN_REQUIRE)) {
        mp.dsn_ret = dp->dsn_ret;
        mp.dsn_envid = dp->dsn_envid;
        bool any = dp->dsn_notify != NULL;
        for (size_t i = 0; !any && dp->rcpt && i < dp->nrcpt; i++)
            any = dp->rcpt[i].dsn_notify || dp->rcpt[i].dsn_orcpt;
        if (any) {
            rp = calloc(m->m.nrcpts, sizeof *rp);
            if (!rp) {
                smtpc__bulk_finish(b, m, SMTPC_BULK_FAILED, SMTPC_ENOMEM, 0, NULL, "out of memory");
                return false;
            }
            for (size_t i = 0; i < m->m.nrcpts; i++) {
                const smtpc_rcpt_opts *o = dp->rcpt ? &dp->rcpt[i] : NULL;
                rp[i].dsn_notify = o && o->dsn_notify ? o->dsn_notify : dp->dsn_notify;
                rp[i].dsn_orcpt = o ? o->dsn_orcpt : NULL;
            }
        }
    }
    smtpc__txn_opts to;
    memset(&to, 0, sizeof to);
    to.from = m->m.from;
    to.mail = &mp;
    to.rcpts = m->m.rcpts;
    to.rcpt = rp;
    to.nrcpts = m->m.nrcpts;
    int rc = smtpc__engine_txn_begin(c->e, &to); /* copies the lines it queues */
    free(rp);
    if (rc) {
        /* nothing was sent, and no other connection would take it either */
        smtpc__bulk_finish(b, m, SMTPC_BULK_FAILED, rc, 0, NULL, smtpc__engine_errmsg(c->e));
        return false;
    }
    memset(m->rcodes, 0, m->m.nrcpts * sizeof *m->rcodes);
    m->nrcodes = m->m.nrcpts;
    m->stage = S_ENVELOPE;
    c->cur = m;
    c->nmsgs++;
    return true;
}

static void send_quit(conn *c)
{
    c->phase = P_QUIT;
    if (smtpc__engine_quit(c->e)) smtpc__bulk_conn_kill(c, 0, "quit");
}

/* Starts what may start now: the next message, or QUIT. */
static void pump(conn *c)
{
    smtpc_bulk *b = c->b;
    while (!c->dead && c->phase == P_READY && !c->body && !c->cur) {
        bool quiet = !c->prev && !smtpc__engine_pending_replies(c->e);
        if (c->canceling || b->canceling) {
            if (quiet) send_quit(c);
            return;
        }
        if (c->retire || (b->max_per_conn && c->nmsgs >= b->max_per_conn)) {
            if (quiet) send_quit(c);
            return;
        }
        if (!b->retry_head && !b->ahead && (b->src_done || b->canceling)) {
            if (quiet && !b->hold_idle) send_quit(c);
            return;
        }
        if (b->rate > 0 && b->rate_wake > b->now) return;
        if (!b->retry_head && !smtpc__bulk_rate_take(b)) return;
        rec *m = NULL;
        int rc = smtpc__bulk_take(b, &m);
        if (rc < 0) {
            smtpc__bulk_conn_kill(c, rc, "out of memory");
            return;
        }
        if (rc == 0 && !b->src_done) return; /* a message being signed: the pool wakes us */
        if (rc == 0) continue; /* the source ended: QUIT above */
        if (start_msg(c, m)) arm(c);
    }
}

/* A transaction is over: its message's outcome. */
static void msg_done(conn *c, const smtpc__event *ev)
{
    smtpc_bulk *b = c->b;
    rec *m = c->prev ? c->prev : c->cur;
    if (!m) return;
    if (m == c->prev) c->prev = NULL;
    else c->cur = NULL;
    if (c->body == m) c->body = NULL;
    if (c->dot_rec == m) c->dot_rec = NULL;
    b->unproven_fail = 0; /* the server is getting through messages */
    const smtpc__reply *r = ev->reply;
    note_reply(c, r);
    if (ev->status == 0) {
        smtpc__bulk_finish(b, m, SMTPC_BULK_SENT, 0, r ? r->code : 0, c->rtext, NULL);
        return;
    }
    const char *what = ev->cmd == SMTPC__CMD_DATA_END ? "end of data" : smtpc__cmd_name(ev->cmd);
    char em[300];
    int cls = r ? r->code / 100 : 0;
    bool refusal = cls == 4 || cls == 5;
    if (smtpc__engine_closing(c->e) && c->phase != P_QUIT) {
        /* MAIL refused, a recipient accepted, and 354 to DATA: any end of
         * data (even an empty one) would deliver, RSET or QUIT would be
         * message text: only dropping the connection is safe (the engine
         * gave it up) */
        snprintf(em, sizeof em, "%s", smtpc__engine_errmsg(c->e));
        smtpc__bulk_finish(b, m, SMTPC_BULK_FAILED, ev->status, refusal ? r->code : 0,
                           refusal ? c->rtext : NULL, em);
        smtpc__bulk_conn_kill(c, SMTPC_EPROTO, "354 to DATA for a refused transaction");
        return;
    }
    if (refusal) {
        snprintf(em, sizeof em, "%s: server replied %d %s", what, r->code, c->rtext);
        smtpc__bulk_finish(b, m, SMTPC_BULK_FAILED, ev->status, r->code, c->rtext, em);
    } else {
        /* a positive reply of the wrong kind (354 to MAIL, 250 to DATA): a
         * protocol violation, with no deciding reply */
        snprintf(em, sizeof em, "%s: server replied %d %s (not a valid reply here)", what, r ? r->code : 0,
                 c->rtext);
        smtpc__bulk_finish(b, m, SMTPC_BULK_FAILED, SMTPC_EPROTO, 0, NULL, em);
    }
}

/* One engine event on a ready connection. */
static void ready_event(conn *c, const smtpc__event *ev)
{
    smtpc_bulk *b = c->b;
    if (ev->reply && ev->reply->code == 421 && !(ev->type == SMTPC__EV_REPLY && ev->cmd == SMTPC__CMD_QUIT)) {
        on_421(c, ev->reply);
        return;
    }
    switch (ev->type) {
    case SMTPC__EV_REPLY:
        if (ev->cmd == SMTPC__CMD_QUIT) smtpc__bulk_conn_kill(c, 0, "quit");
        break;
    case SMTPC__EV_TXN_RCPT:
        c->proven = true;
        b->unproven_fail = 0;
        if (c->cur && ev->tag < c->cur->nrcodes) c->cur->rcodes[ev->tag] = ev->reply->code;
        if (c->cur && ev->reply->code / 100 == 2) c->cur->rcpt_ok++;
        break;
    case SMTPC__EV_TXN_BODY:
        c->proven = true;
        if (c->canceling || b->canceling) {
            /* canceled: closing before any body byte delivers nothing */
            smtpc__bulk_conn_kill(c, SMTPC_ECANCELED, "canceled");
            return;
        }
        if (!c->cur) break;
        c->cur->stage = S_BODY;
        c->cur->body_off = 0;
        c->body = c->cur;
        break;
    case SMTPC__EV_TXN_DONE:
        c->proven = true;
        msg_done(c, ev);
        if (!c->dead && (c->canceling || b->canceling) && (c->cur || c->prev) && !dot_out(c))
            smtpc__bulk_conn_kill(c, SMTPC_ECANCELED, "canceled");
        break;
    default: break;
    }
}

/* Hands the engine's events to the opener, then to the messages. */
static void events(conn *c)
{
    smtpc__event ev;
    while (!c->dead && smtpc__engine_next_event(c->e, &ev) == 1) {
        if (!c->op) {
            ready_event(c, &ev);
            continue;
        }
        int rc = smtpc__opener_event(c->op, &ev);
        if (rc < 0) open_failed(c, rc);
        else if (rc == SMTPC__OPEN_TLS) start_tls(c);
        else if (rc == SMTPC__OPEN_DONE) opened(c);
    }
}

/* ---- the body ---------------------------------------------------------------------------------------- */

/* The body is written: its end, and the next message may join this write
 * (RFC 2920 3.1: cross-message pipelining). */
static int body_end(conn *c)
{
    rec *m = c->body;
    if (c->b->trace_body) smtpc__bulk_trace_body(c, NULL, 0);
    int rc = smtpc__engine_body_end(c->e);
    if (rc) return rc;
    const uint8_t *p;
    c->dot_left = smtpc__engine_output(c->e, &p); /* before the next envelope joins it */
    c->dot_rec = m;
    m->stage = S_DOT_SENT;
    c->body = NULL;
    if (!c->prev && smtpc__engine_txn_chain(c->e) == 0) {
        c->prev = m;
        c->cur = NULL;
    }
    return 0;
}

/* Hands body bytes of c->body to the engine while its output is short; at
 * the end the dot. 0 or an error (the connection must die). */
static int fill_body(conn *c)
{
    smtpc_bulk *b = c->b;
    const uint8_t *p;
    while (c->body && smtpc__engine_output(c->e, &p) < SMTPC__BULK_OUT_LOW) {
        rec *m = c->body;
        int rc;
        if (body_len_known(m)) {
            size_t left = m->m.len - m->body_off;
            if (left == 0) {
                rc = body_end(c);
            } else {
                size_t n = left < SMTPC__BULK_CHUNK ? left : SMTPC__BULK_CHUNK;
                if (b->trace_body) smtpc__bulk_trace_body(c, (const uint8_t *)m->m.data + m->body_off, n);
                rc = smtpc__engine_body_write(c->e, (const uint8_t *)m->m.data + m->body_off, n);
                m->body_off += n;
            }
        } else {
            ssize_t n = m->m.read(m->m.body_ud, b->tmp, SMTPC__BULK_CHUNK);
            if (n < 0) {
                m->body_error = true;
                return SMTPC_EIO;
            }
            if (n > 0 && b->trace_body) smtpc__bulk_trace_body(c, b->tmp, (size_t)n);
            rc = n == 0 ? body_end(c) : smtpc__engine_body_write(c->e, b->tmp, (size_t)n);
        }
        if (rc) return rc;
    }
    return 0;
}

/* A write failed: whatever the server sent before it closed, read once. */
static void late_read(conn *c)
{
    int want = 0;
    ssize_t n = smtpc__transport_read(c->t, c->b->rbuf, SMTPC__BULK_RBUF, &want);
    size_t used;
    if (n > 0 && smtpc__engine_feed(c->e, c->b->rbuf, (size_t)n, &used) == 0) events(c);
}

static int flush_out(conn *c)
{
    for (;;) {
        const uint8_t *p;
        if (c->body && smtpc__engine_output(c->e, &p) < SMTPC__BULK_OUT_LOW) {
            int rc = fill_body(c);
            if (rc) {
                rec *m = c->body;
                if (m) {
                    /* nothing was delivered: no dot was sent */
                    c->body = NULL;
                    if (c->cur == m) c->cur = NULL;
                    smtpc__bulk_finish(c->b, m, SMTPC_BULK_FAILED, rc, 0, NULL,
                                       rc == SMTPC_ELIMIT ? "message body: a line is over 998 octets"
                                                          : "message body could not be read");
                }
                smtpc__bulk_conn_kill(c, rc, "message body failed");
                return rc;
            }
            if (!c->body) pump(c); /* the next message joins this write */
            if (c->dead) return SMTPC_ECLOSED;
        }
        size_t n = smtpc__engine_output(c->e, &p);
        if (n == 0) {
            c->wr_want = 0;
            /* idle (not between pipelined messages): give the buffers back */
            if (!c->cur && !c->prev) smtpc__engine_trim(c->e);
            return 0;
        }
        int want = 0;
        ssize_t w = smtpc__transport_write(c->t, p, n, &want);
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
            if (!c->dead) smtpc__bulk_conn_kill(c, (int)w, why);
            return (int)w;
        }
        smtpc__engine_output_advance(c->e, (size_t)w);
        c->dot_left = (size_t)w < c->dot_left ? c->dot_left - (size_t)w : 0;
        c->wr_want = 0;
        arm(c);
    }
}

/* ---- reading ----------------------------------------------------------------------------------------- */

/* The engine refused the server's bytes (rc). A refusal in the middle of a
 * body (552 message too big) answers no command: that is the server's
 * verdict on the message, not a lost connection, so it is not tried
 * again (the session reads this reply too: late_reply()). */
static void feed_failed(conn *c, int rc)
{
    const smtpc__reply *r = smtpc__engine_last_reply(c->e);
    int cls = r ? r->code / 100 : 0;
    if (c->body && rc == SMTPC_EPROTO && r && (cls == 4 || cls == 5) && !smtpc__engine_pending_replies(c->e)) {
        rec *m = c->body;
        char em[260];
        note_reply(c, r);
        snprintf(em, sizeof em, "message body: server replied %d %s (connection closed)", r->code, c->rtext);
        c->body = NULL;
        if (c->cur == m) c->cur = NULL;
        smtpc__bulk_finish(c->b, m, SMTPC_BULK_FAILED, cls == 4 ? SMTPC_ETEMPFAIL : SMTPC_EPERMFAIL, r->code,
                           c->rtext, em);
        smtpc__bulk_conn_kill(c, SMTPC_ECLOSED, "refused during the message body");
        return;
    }
    smtpc__bulk_conn_kill(c, rc, smtpc__engine_errmsg(c->e));
}

static void do_read(conn *c)
{
    smtpc_bulk *b = c->b;
    for (;;) {
        int want = 0;
        ssize_t n = smtpc__transport_read(c->t, b->rbuf, SMTPC__BULK_RBUF, &want);
        if (n == SMTPC_EAGAIN) {
            c->rd_want = (uint8_t)want;
            return;
        }
        c->rd_want = 0;
        if (n == 0) {
            smtpc__bulk_conn_kill(c, SMTPC_ECLOSED,
                                  c->phase == P_QUIT ? "quit" : "connection closed by the server");
            return;
        }
        if (n < 0) {
            smtpc__bulk_conn_kill(c, (int)n, c->t->err.text[0] ? c->t->err.text : "read failed");
            return;
        }
        arm(c);
        size_t used = 0;
        int rc = smtpc__engine_feed(c->e, b->rbuf, (size_t)n, &used);
        events(c);
        if (c->dead) return;
        if (rc) {
            feed_failed(c, rc);
            return;
        }
        if (c->phase == P_TLS) return; /* handshake next */
        /* A short read drained the socket (level-triggered loop: it tells
         * us again); TLS may still hold decrypted bytes. */
        if ((size_t)n < SMTPC__BULK_RBUF && smtpc__transport_pending(c->t) == 0) {
            c->rd_want = SMTPC__WANT_READ;
            return;
        }
    }
}

/* ---- TLS and proxy ------------------------------------------------------------------------------------- */

static void do_handshake(conn *c)
{
    int want = 0;
    int rc = smtpc__transport_handshake(c->t, &want);
    if (rc == SMTPC_EAGAIN) {
        c->hs_want = (uint8_t)want;
        return;
    }
    if (rc) {
        smtpc__bulk_conn_kill(c, rc, c->t->err.text[0] ? c->t->err.text : "TLS handshake failed");
        return;
    }
    c->tls_done = true;
    c->hs_want = 0;
    if (!c->op) {
        begin_open(c); /* implicit TLS: the greeting comes now */
        return;
    }
    c->phase = P_OPENING;
    rc = smtpc__opener_tls_started(c->op); /* RFC 3207 4.2: EHLO again */
    if (rc < 0) open_failed(c, rc);
    else arm(c);
}

/* Wraps the transport in TLS (implicit, or after the 220 to STARTTLS). */
static void start_tls(conn *c)
{
    smtpc_bulk *b = c->b;
    smtpc__transport *tt = NULL;
    smtpc__errmsg em;
    em.text[0] = 0;
    int rc = smtpc__tls_wrap(&tt, c->t, b->tls_ctx, b->o.tls_name ? b->o.tls_name : b->o.host, b->tls_sess, &em);
    if (rc) {
        smtpc__bulk_conn_kill(c, rc, em.text);
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
    begin_open(c);
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
            snprintf(why, sizeof why, "proxy %s: TLS to the proxy: %s", smtpc_proxy_redacted(c->b->o.proxy), t);
        else
            smtpc__strlcpy(why, t, sizeof why);
        smtpc__bulk_conn_kill(c, rc, why);
        return;
    }
    c->hs_want = 0;
    arm(c);
    after_connect(c);
    /* an HTTP proxy may have sent the greeting along with its 200: the
     * layer holds it, and the fd will not say so */
    if (!c->dead && c->phase == P_OPENING && smtpc__transport_pending(c->t)) do_read(c);
}

static void start_proxy(conn *c)
{
    smtpc_bulk *b = c->b;
    char th[256];
    smtpc__bulk_target_host(b, th, sizeof th);
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
            snprintf(why, sizeof why, "proxy %s: TLS to the proxy: %s", smtpc_proxy_redacted(b->o.proxy), em.text);
            smtpc__bulk_conn_kill(c, rc, why);
            return;
        }
        c->t = tl;
    }
    rc = smtpc__proxy_layer_new(&p, c->t, b->o.proxy, th, b->port,
                                b->ptarget_set ? (const struct sockaddr *)&b->ptarget : NULL, &em);
    if (rc) {
        smtpc__bulk_conn_kill(c, rc, em.text);
        return;
    }
    c->t = p;
    c->phase = P_PROXY;
    arm(c);
    do_proxy(c);
}

/* ---- entry points ---------------------------------------------------------------------------------------- */

void smtpc__bulk_conn_kick(conn *c)
{
    if (c->dead) return;
    pump(c);
    if (!c->dead) flush_out(c);
    if (!c->dead) {
        if (!c->wr_want && !c->body) arm(c);
        update_io(c);
    }
}

void smtpc__bulk_conn_io(conn *c, int ev)
{
    switch (c->phase) {
    case P_CONNECTING: {
        smtpc__errmsg em;
        int rc = smtpc__tcp_connect_finish(c->t, &em);
        if (rc) {
            smtpc__bulk_conn_kill(c, rc, em.text);
            return;
        }
        if (c->b->o.proxy) start_proxy(c);
        else after_connect(c);
        break;
    }
    case P_PROXY: do_proxy(c); break;
    case P_TLS: do_handshake(c); break;
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
    smtpc__bulk_conn_kick(c);
}

void smtpc__bulk_conn_timeout(conn *c)
{
    const char *what = c->phase == P_CONNECTING ? "connect timed out"
                       : c->phase == P_TLS      ? "TLS handshake timed out"
                       : c->phase == P_OPENING && smtpc__opener_step(c->op) == SMTPC__OPEN_STEP_GREETING
                           ? "no greeting (timeout)"
                       : dot_out(c) ? "no reply to the end of data (timeout)"
                                    : "command timed out";
    smtpc__bulk_conn_kill(c, SMTPC_ETIMEDOUT, what);
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

/* The engine's trace, with the connection's number and AUTH redacted (the
 * session's redaction). */
static void trace_thunk(void *ud, smtpc__trace_dir dir, const char *line, size_t len, bool secret)
{
    conn *c = ud;
    smtpc_bulk *b = c->b;
    smtpc_trace_dir d = dir == SMTPC__TRACE_CLIENT ? SMTPC_TRACE_SENT : SMTPC_TRACE_RECEIVED;
    if (!b->trace_cb) return;
    if (!secret) {
        b->trace_cb(b->trace_ud, c->serial, d, line, len);
        return;
    }
    char red[96];
    size_t n = smtpc__trace_redact(line, len, red, sizeof red);
    b->trace_cb(b->trace_ud, c->serial, d, red, n);
}

/* A connection record with its engine, registered over transport t. */
static conn *conn_add(smtpc_bulk *b, smtpc__transport *t)
{
    if (b->nconns == b->conns_cap) {
        size_t nc = b->conns_cap ? b->conns_cap * 2 : 16;
        conn **nv = realloc(b->conns, nc * sizeof *nv);
        if (!nv) return NULL;
        b->conns = nv;
        b->conns_cap = nc;
    }
    conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->b = b;
    c->t = t;
    c->fd = t->fd;
    if (smtpc__engine_new(&c->e, NULL) || byfd_put(b, c->fd, c)) {
        smtpc__bulk_conn_free(c);
        return NULL;
    }
    c->serial = ++b->conn_serial;
    if (b->trace_cb) smtpc__engine_set_trace(c->e, trace_thunk, c);
    c->idx = b->nconns;
    b->conns[b->nconns++] = c;
    b->st.connections_open = (unsigned)b->nconns;
    return c;
}

int smtpc__bulk_conn_open(smtpc_bulk *b)
{
    size_t ai = b->addr_next++ % b->naddrs;
    bool inprog = false;
    smtpc__errmsg em;
    smtpc__transport *t = NULL;
    smtpc__tcp_opts to = {b->o.bind_addr, b->o.bind_port, b->o.family, -1, -1};
    int rc = smtpc__tcp_connect_start(&t, (struct sockaddr *)&b->addrs[ai], b->addrlens[ai], &to, &inprog, &em);
    b->st.connections_opened++;
    if (rc) {
        b->consec_fail++;
        b->st.connections_failed++;
        b->last_conn_err = rc;
        smtpc__strlcpy(b->last_conn_msg, em.text, sizeof b->last_conn_msg);
        b->last_conn_code = 0;
        b->last_conn_text[0] = 0;
        return rc == SMTPC_ENOMEM ? rc : 0;
    }
    conn *c = conn_add(b, t);
    if (!c) {
        smtpc__transport_free(t);
        return SMTPC_ENOMEM;
    }
    c->phase = P_CONNECTING;
    arm(c);
    if (!inprog) {
        if (b->o.proxy) start_proxy(c);
        else after_connect(c);
    }
    if (!c->dead) update_io(c);
    return 0;
}

conn *smtpc__bulk_conn_adopt(smtpc_bulk *b, smtpc__transport *t)
{
    conn *c = conn_add(b, t);
    if (!c) {
        smtpc__transport_free(t);
        return NULL;
    }
    b->st.connections_opened++;
    after_connect(c);
    if (!c->dead) update_io(c);
    return c;
}
