/* A send: the body reader, one attempt on a pooled connection, local
 * delivery (pickup, outbox), the public send functions. */
#include "client/client_int.h"

#include <smtpc/outbox.h>
#include <smtpc/pickup.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void trace_line(void *ud, const char *line, size_t len)
{
    const smtpc_client *c = ud;
    c->trace_cb(c->trace_ud, SMTPC_TRACE_BODY, line, len);
}

/* What was read, to the trace (message lines) and the progress callback. */
static void body_watch(smtpc__body_run *r, const void *buf, ssize_t n)
{
    const smtpc_client *c = r->c;
    if (n < 0) return;
    if (r->tap && n > 0) smtpc__linetap_feed(r->tap, buf, (size_t)n, trace_line, (void *)c);
    if (r->tap && n == 0) smtpc__linetap_end(r->tap, trace_line, (void *)c);
    r->done += (uint64_t)n;
    if (c->progress_cb && n > 0) c->progress_cb(c->progress_ud, r->done, r->total);
}

ssize_t smtpc__body_read(void *ud, void *buf, size_t len)
{
    smtpc__body_run *r = ud;
    r->touched = true;
    ssize_t n;
    if (r->dk && !r->dk_in) {
        /* signed: the DKIM-Signature fields, then the body through here
         * again (dk_in); watched once, as sent */
        n = smtpc__client_dkim_read(r, buf, len);
    } else if (r->w) {
        n = smtpc_message_writer_read(r->w, buf, len);
    } else if (r->b->cb) {
        n = r->b->cb(r->b->ud, buf, len);
    } else {
        n = (ssize_t)(r->mleft < len ? r->mleft : len);
        memcpy(buf, r->mp, (size_t)n);
        r->mp += n;
        r->mleft -= (size_t)n;
    }
    if (r->c && !r->dk_in) body_watch(r, buf, n);
    return n;
}

void smtpc__body_run_free(smtpc__body_run *run)
{
    smtpc_message_writer_free(run->w);
    run->w = NULL;
    free(run->tap);
    run->tap = NULL;
    smtpc_dkim_reader_free(run->dk);
    run->dk = NULL;
}

/* Failures of a re-used connection that show it was dead or closing before
 * the server took the message: safe to repeat once on a fresh connection.
 * The session reports a loss after the final dot as SMTPC_EUNKNOWN, so a
 * network error here is before it; a 421 is a refusal whenever it comes; a
 * protocol error (e.g. a server that keeps answering the pipelined commands
 * after its 421) only counts while the body was not started. */
static bool stale_failure(int rc, smtpc_session *s, bool body_started)
{
    if (rc == SMTPC_EUNKNOWN || rc == SMTPC_ECANCELED || rc == 0) return false;
    if (rc == SMTPC_ECLOSED || rc == SMTPC_ENETWORK) return true;
    if (smtpc_reply_code(smtpc_session_reply(s)) == 421) return true;
    return rc == SMTPC_EPROTO && !body_started && !smtpc_session_is_connected(s);
}

/* Canceled while waiting for the reply to the final dot: the server may
 * have taken the message. Unknown, never "canceled" (a caller would resend). */
int smtpc__client_unknown_after_dot(smtpc_client *c, smtpc_session *s, int rc)
{
    if (rc != SMTPC_ECANCELED || !strstr(smtpc_session_errmsg(s), "may have been delivered")) return rc;
    char d[SMTPC__ERRMSG_MAX];
    smtpc__strlcpy(d, smtpc_session_errmsg(s), sizeof d);
    return smtpc__err(&c->err, SMTPC_EUNKNOWN, "%s", d);
}

static bool envelope_utf8(const smtpc__body *b)
{
    if (b->from && smtpc__has_8bit(b->from, strlen(b->from))) return true;
    for (size_t i = 0; i < b->nrcpts; i++)
        if (smtpc__has_8bit(b->rcpts[i], strlen(b->rcpts[i]))) return true;
    return false;
}

/* The body reader and the MAIL parameters for b on this server: a message
 * gets a writer for the server's 8BITMIME/SMTPUTF8, SIZE= where known. */
int smtpc__client_prep_body(smtpc_client *c, smtpc_session *s, const smtpc__body *b, smtpc__body_run *run,
                     smtpc_mail_opts *mo)
{
    memset(run, 0, sizeof *run);
    memset(mo, 0, sizeof *mo);
    run->b = b;
    if (c->progress_cb || (c->trace_cb && c->trace_body)) run->c = c;
    if (c->trace_cb && c->trace_body && !(run->tap = calloc(1, sizeof *run->tap)))
        return smtpc__err(&c->err, SMTPC_ENOMEM, "out of memory");
    bool ext8 = smtpc_session_has_ext(s, "8BITMIME");
    bool has_size = smtpc_session_has_ext(s, "SIZE");
    if (b->m) {
        bool needu = smtpc_message_needs_smtputf8(b->m);
        if (needu && !smtpc_session_has_ext(s, "SMTPUTF8"))
            return smtpc__err(&c->err, SMTPC_EUNSUPPORTED,
                              "the message needs SMTPUTF8 and the server does not offer it");
        int rc = smtpc_message_writer_new(&run->w, b->m, (ext8 ? SMTPC_WRITE_8BITMIME : 0u) |
                                                             (needu ? SMTPC_WRITE_SMTPUTF8 : 0u));
        if (rc) return smtpc__err(&c->err, rc, "message: %s", smtpc_message_errmsg(b->m));
        int64_t sz = smtpc_message_writer_size(run->w);
        if (has_size && sz > 0) mo->size = (uint64_t)sz;
        run->total = sz > 0 ? (uint64_t)sz : 0;
        mo->body_8bitmime = ext8;
        mo->smtputf8 = needu;
    } else if (b->mem || !b->cb) {
        run->mp = b->mem;
        run->mleft = b->len;
        run->total = b->len;
        if (has_size) mo->size = b->len;
        mo->body_8bitmime = ext8 && smtpc__has_8bit(b->mem, b->len);
    } else if (b->params) { /* a callback body: what the caller says of it */
        run->total = b->params->size;
        if (has_size) mo->size = b->params->size;
        mo->body_8bitmime = ext8 && b->params->body_8bit;
    }
    if (!b->m && envelope_utf8(b)) { /* a raw message to or from a UTF-8 address */
        if (!smtpc_session_has_ext(s, "SMTPUTF8"))
            return smtpc__err(&c->err, SMTPC_EUNSUPPORTED,
                              "an envelope address needs SMTPUTF8 and the server does not offer it");
        mo->smtputf8 = true;
    }
    return smtpc__client_dkim_prep(c, run, mo);
}

/* One attempt: a connection from the pool (re-used or new), one
 * transaction. *body_touched tells whether the body was read. */
int smtpc__client_attempt(smtpc_client *c, const smtpc__body *b, const char *key, const smtpc__ident *id, smtpc_result *res,
                   bool *body_touched)
{
    bool fresh_retry_done = false;
    *body_touched = false;
again:;
    smtpc__pconn *pc;
    bool reused;
    res->t_connect = res->t_tls = res->t_auth = res->t_xfer = 0;
    int rc = smtpc__client_get_conn(c, key, id, res, &pc, &reused);
    if (rc) return rc;
    smtpc_session *s = pc->s;
    res->reused = reused;
    if (reused) smtpc__result_security(res, s);

    /* The envelope and the body for this server. */
    smtpc__body_run run;
    smtpc_mail_opts mo;
    rc = smtpc__client_prep_body(c, s, b, &run, &mo);
    if (rc) goto done_nosend;
    if (b->m) smtpc__strlcpy(res->msgid, smtpc__nz(smtpc_message_message_id(b->m)), sizeof res->msgid);
    smtpc_rcpt_opts *ro = NULL;
    if (smtpc__want_dsn(b->params)) {
        if (smtpc_session_has_ext(s, "DSN")) {
            rc = smtpc__dsn_apply(c, b, &mo, &ro);
            if (rc) goto done_nosend;
        } else if (c->dsn_policy == SMTPC_DSN_REQUIRE) {
            rc = smtpc__err(&c->err, SMTPC_EUNSUPPORTED,
                            "DSN (NOTIFY, RET, ENVID or ORCPT) was asked for and the server does "
                            "not offer DSN; nothing was sent (DSN policy: require)");
            goto done_nosend;
        }
    }
    smtpc_envelope env;
    memset(&env, 0, sizeof env);
    env.from = b->from;
    env.rcpts = b->rcpts;
    env.nrcpts = b->nrcpts;
    env.mail = &mo;
    env.rcpt = ro;
    env.all_or_nothing = c->strict;
    env.use_bdat = c->use_bdat && smtpc_session_has_ext(s, "CHUNKING");
    int64_t t0 = smtpc__now_us();
    rc = smtpc_session_send(s, &env, smtpc__body_read, &run);
    res->t_xfer = smtpc__now_us() - t0;
    free(ro);
    *body_touched = run.touched;
    smtpc__client_take_results(c, s, res, rc, b->idx);
    rc = smtpc__client_unknown_after_dot(c, s, rc);
    /* why the message could not be written (a file attachment gone ...),
     * rather than the session's "the body read callback failed" */
    if (rc && rc != SMTPC_EUNKNOWN && run.w && smtpc_message_writer_errmsg(run.w)[0])
        smtpc__err(&c->err, rc, "message: %s", smtpc_message_writer_errmsg(run.w));
    smtpc__body_run_free(&run);
    if (rc == 0) pc->msgs++;
    if (rc && reused && !fresh_retry_done && stale_failure(rc, s, run.touched) &&
        (!run.touched || b->m || b->mem || b->rewind)) {
        /* nodemailer's idle-connection loss: the server had closed (or was
         * closing) the connection before it took the message. Once on a fresh one. */
        if (run.touched && b->rewind && b->rewind(b->ud)) goto done;
        fresh_retry_done = true;
        smtpc__client_publish(c, NULL);
        smtpc__client_trace_conn(c, pc->s, false);
        smtpc__pool_release(c->pool, pc, false, false);
        goto again;
    }
    goto done;
done_nosend:
    smtpc__body_run_free(&run);
done:
    smtpc__client_publish(c, NULL);
    smtpc__client_trace_conn(c, pc->s, false);
    pc->dirty = rc != 0;
    smtpc__pool_release(c->pool, pc, rc != SMTPC_ECANCELED && !atomic_load(&c->canceled),
                        rc != SMTPC_ECANCELED);
    return rc;
}

/* Pickup and outbox delivery: no network. */
static int deliver_local(smtpc_client *c, const smtpc__body *b, smtpc_result **out)
{
    smtpc_result *res = calloc(1, sizeof *res);
    if (!res) return SMTPC_ENOMEM;
    res->nrcpt = b->nrcpts;
    res->r = calloc(b->nrcpts ? b->nrcpts : 1, sizeof *res->r);
    int rc = res->r ? 0 : SMTPC_ENOMEM;
    for (size_t i = 0; !rc && i < b->nrcpts; i++)
        if (!(res->r[i].addr = smtpc__strdup(b->rcpts[i]))) rc = SMTPC_ENOMEM;
    smtpc__body_run run;
    memset(&run, 0, sizeof run);
    run.b = b;
    run.mp = b->mem;
    run.mleft = b->len;
    char err[512] = "";
    unsigned wflags = b->m ? smtpc__stored_write_flags(b->m) : 0u;
    if (!rc && b->m) {
        rc = smtpc_message_writer_new(&run.w, b->m, wflags);
        if (rc) snprintf(err, sizeof err, "message: %s", smtpc_message_errmsg(b->m));
        else smtpc__strlcpy(res->msgid, smtpc__nz(smtpc_message_message_id(b->m)), sizeof res->msgid);
    }
    res->attempts = 1;
    if (!rc && c->delivery == SMTPC_DELIVERY_PICKUP && c->dkim) {
        /* the program that relays a pickup file will not sign it: the
         * signed reader of a network send (t= now); the outbox is signed
         * when it is flushed */
        smtpc_mail_opts mo;
        memset(&mo, 0, sizeof mo);
        mo.body_8bitmime = (wflags & SMTPC_WRITE_8BITMIME) != 0; /* the writer's flags above */
        mo.smtputf8 = (wflags & SMTPC_WRITE_SMTPUTF8) != 0;
        rc = smtpc__client_dkim_prep(c, &run, &mo);
        if (rc) smtpc__strlcpy(err, c->err.text, sizeof err);
    }
    if (!rc && c->delivery == SMTPC_DELIVERY_PICKUP) {
        char *path = NULL;
        rc = smtpc_pickup_write(c->dir, b->from, b->rcpts, b->nrcpts, smtpc__body_read, &run, &path, err, sizeof err);
        if (!rc && path) {
            const char *base = strrchr(path, '/');
            smtpc__strlcpy(res->queue_id, base ? base + 1 : path, sizeof res->queue_id);
        }
        free(path);
    } else if (!rc) {
        smtpc_outbox *ob;
        rc = smtpc_outbox_open(&ob, c->dir, err, sizeof err);
        if (!rc) {
            rc = smtpc_outbox_add_raw(ob, b->from, b->rcpts, b->nrcpts, smtpc__body_read, &run, res->queue_id,
                                      sizeof res->queue_id);
            if (rc) snprintf(err, sizeof err, "%s", smtpc_outbox_errmsg(ob));
            smtpc_outbox_free(ob);
        }
    }
    smtpc__body_run_free(&run);
    for (size_t i = 0; !rc && i < b->nrcpts; i++) res->r[i].accepted = true;
    res->status = rc;
    if (rc) smtpc__err(&c->err, rc, "%s", err[0] ? err : smtpc_strerror(rc));
    smtpc__strlcpy(res->errmsg, rc ? c->err.text : "", sizeof res->errmsg);
    if (out) *out = res;
    else smtpc_result_free(res);
    return rc;
}

int smtpc__client_deliver_any(smtpc_client *c, const smtpc__body *b, smtpc_result **out)
{
    if (c->delivery != SMTPC_DELIVERY_NETWORK) return deliver_local(c, b, out);
    return smtpc__client_deliver(c, b, true, out);
}

/* The envelope of a message; rcpts is malloc'ed (pointers owned by m). */
int smtpc__client_message_envelope(smtpc_client *c, smtpc_message *m, smtpc__body *b, const char ***rcpts)
{
    memset(b, 0, sizeof *b);
    b->m = m;
    b->from = smtpc_message_envelope_from(m);
    size_t n = smtpc_message_rcpt_count(m);
    if (!b->from) return smtpc__err(&c->err, SMTPC_EINVAL, "the message has no From or Sender");
    if (n == 0) return smtpc__err(&c->err, SMTPC_EINVAL, "the message has no recipient");
    const char **r = calloc(n, sizeof *r);
    if (!r) return SMTPC_ENOMEM;
    for (size_t i = 0; i < n; i++) r[i] = smtpc_message_rcpt(m, i);
    b->rcpts = r;
    b->nrcpts = n;
    *rcpts = r;
    return 0;
}

SMTPC_API int smtpc_client_send_with(smtpc_client *c, smtpc_message *m, const smtpc_send_params *params,
                                     smtpc_result **result)
{
    if (result) *result = NULL;
    if (!c || !m) return SMTPC_EINVAL;
    int rc = smtpc__client_enter(c);
    if (rc) return rc;
    smtpc__body b;
    const char **rcpts = NULL;
    rc = smtpc__client_message_envelope(c, m, &b, &rcpts);
    if (!rc) rc = smtpc__client_check_params(c, params, b.nrcpts);
    b.params = params;
    if (!rc) rc = smtpc__client_deliver_any(c, &b, result);
    free(rcpts);
    smtpc__client_leave(c);
    return rc;
}

SMTPC_API int smtpc_client_send(smtpc_client *c, smtpc_message *m, smtpc_result **result)
{
    return smtpc_client_send_with(c, m, NULL, result);
}

static int send_raw(smtpc_client *c, const char *from, const char *const *rcpts, size_t n,
                    smtpc__body *b, smtpc_result **result)
{
    if (result) *result = NULL;
    if (!c) return SMTPC_EINVAL;
    if (!from || !rcpts || n == 0) return smtpc__err(&c->err, SMTPC_EINVAL, "no sender or recipient");
    for (size_t i = 0; i < n; i++)
        if (!rcpts[i] || !*rcpts[i]) return smtpc__err(&c->err, SMTPC_EINVAL, "empty recipient");
    int rc = smtpc__client_check_params(c, b->params, n);
    if (rc) return rc;
    rc = smtpc__client_enter(c);
    if (rc) return rc;
    b->from = from;
    b->rcpts = rcpts;
    b->nrcpts = n;
    rc = smtpc__client_deliver_any(c, b, result);
    smtpc__client_leave(c);
    return rc;
}

SMTPC_API int smtpc_client_send_envelope_with(smtpc_client *c, const char *from, const char *const *rcpts,
                                              size_t nrcpts, smtpc_read_cb cb, void *userdata,
                                              const smtpc_send_params *params, smtpc_result **result)
{
    if (!cb) return SMTPC_EINVAL;
    smtpc__body b;
    memset(&b, 0, sizeof b);
    b.cb = cb;
    b.ud = userdata;
    b.params = params;
    if (params) b.rewind = params->rewind;
    return send_raw(c, from, rcpts, nrcpts, &b, result);
}

SMTPC_API int smtpc_client_send_envelope(smtpc_client *c, const char *from, const char *const *rcpts,
                                         size_t nrcpts, smtpc_read_cb cb, void *userdata,
                                         smtpc_result **result)
{
    return smtpc_client_send_envelope_with(c, from, rcpts, nrcpts, cb, userdata, NULL, result);
}

SMTPC_API int smtpc_client_send_mem_with(smtpc_client *c, const char *from, const char *const *rcpts,
                                         size_t nrcpts, const void *data, size_t len,
                                         const smtpc_send_params *params, smtpc_result **result)
{
    if (!data && len) return SMTPC_EINVAL;
    smtpc__body b;
    memset(&b, 0, sizeof b);
    b.mem = data ? data : "";
    b.len = len;
    b.params = params;
    return send_raw(c, from, rcpts, nrcpts, &b, result);
}

SMTPC_API int smtpc_client_send_mem(smtpc_client *c, const char *from, const char *const *rcpts,
                                    size_t nrcpts, const void *data, size_t len, smtpc_result **result)
{
    return smtpc_client_send_mem_with(c, from, rcpts, nrcpts, data, len, NULL, result);
}
