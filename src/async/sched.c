/* smtpc_bulk: the messages and their scheduling - the source, records,
 * retries on another connection, the rate limit, opening connections,
 * giving up when the server cannot be reached, and cancel. */
#include "async/bulk_int.h"
#include "async/sign_pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void smtpc__bulk_now_update(smtpc_bulk *b) { b->now = smtpc__now_ms(); }

/* ---- message records ---------------------------------------------------- */
static smtpc__bulk_rec *rec_new(smtpc_bulk *b)
{
    smtpc__bulk_rec *r = b->free_recs;
    if (r) {
        b->free_recs = r->next;
    } else {
        if (!(r = malloc(sizeof *r))) return NULL;
        r->rcodes = NULL;
        r->rcodes_cap = 0;
    }
    memset(r, 0, offsetof(smtpc__bulk_rec, rcodes));
    return r;
}

void smtpc__bulk_finish(smtpc_bulk *b, smtpc__bulk_rec *r, smtpc_bulk_status s, int err, int code,
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
    if (b->sp) smtpc__sign_pool_restore(b, &r->m);
    if (b->res_cb) b->res_cb(b->res_ud, &r->m, &res);
    r->next = b->free_recs;
    b->free_recs = r;
}

static void retry_push(smtpc_bulk *b, smtpc__bulk_rec *r, bool front)
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
void smtpc__bulk_requeue(smtpc_bulk *b, smtpc__bulk_rec *r, int err, const char *why)
{
    if (b->canceling) {
        smtpc__bulk_finish(b, r, SMTPC_BULK_CANCELED, SMTPC_ECANCELED, 0, NULL, "canceled");
        return;
    }
    bool rewindable = r->m.data || !r->m.read || (r->m.rewind && r->m.rewind(r->m.body_ud) == 0);
    if (r->attempts >= b->max_attempts || !rewindable || r->body_error) {
        smtpc__bulk_finish(b, r, SMTPC_BULK_FAILED, err, r->fail_code, r->fail_text, why);
        return;
    }
    unsigned a = r->attempts;
    smtpc_bulk_msg m = r->m;
    memset(r, 0, offsetof(smtpc__bulk_rec, rcodes));
    r->m = m;
    r->attempts = a;
    b->st.retried++;
    retry_push(b, r, true);
}

/* The source's next message. */
static int fetch(smtpc_bulk *b, smtpc__bulk_rec **out)
{
    if (!b->next_cb) b->src_done = true;
again:
    if (b->src_done || b->canceling) return 0;
    smtpc__bulk_rec *r = rec_new(b);
    int fail = 0;
    char why[256];
    /* no record: ends the run as the source's error would (SMTPC_ENOMEM) */
    int rc = !r ? SMTPC_ENOMEM
         : b->sp ? smtpc__sign_pool_next(b, &r->m, &fail, why, sizeof why)
                 : b->next_cb(b->next_ud, &r->m);
    if (rc == SMTPC__SIGN_PENDING) { /* being signed: the pool's fd wakes the loop */
        r->next = b->free_recs;
        b->free_recs = r;
        return 0;
    }
    if (rc <= 0) {
        if (r) {
            r->next = b->free_recs;
            b->free_recs = r;
        }
        b->src_done = true;
        if (rc < 0) { /* the source's error, or no memory: the run ends as canceled */
            b->stop_rc = rc;
            b->canceling = true;
            atomic_store(&b->cancel_req, true);
        }
        return 0;
    }
    b->outstanding++;
    b->st.submitted++;
    if (fail) { /* could not be signed: reported, and the next one */
        smtpc__bulk_finish(b, r, SMTPC_BULK_FAILED, fail, 0, NULL, why);
        goto again;
    }
    *out = r;
    return 1;
}

int smtpc__bulk_take(smtpc_bulk *b, smtpc__bulk_rec **out)
{
    if (b->retry_head) {
        *out = b->retry_head;
        b->retry_head = b->retry_head->next;
        if (!b->retry_head) b->retry_tail = NULL;
        return 1;
    }
    if (b->ahead) {
        *out = b->ahead;
        b->ahead = NULL;
        return 1;
    }
    return fetch(b, out);
}

bool smtpc__bulk_rate_take(smtpc_bulk *b)
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

/* Everything not yet reported fails with the connection error. */
void smtpc__bulk_give_up(smtpc_bulk *b)
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
    smtpc__bulk_rec *r;
    while ((r = b->retry_head)) {
        b->retry_head = r->next;
        if (!b->retry_head) b->retry_tail = NULL;
        smtpc__bulk_finish(b, r, SMTPC_BULK_FAILED, b->last_conn_err ? b->last_conn_err : SMTPC_ENETWORK,
               code, text, msg);
    }
    if ((r = b->ahead)) {
        b->ahead = NULL;
        smtpc__bulk_finish(b, r, SMTPC_BULK_FAILED, b->last_conn_err ? b->last_conn_err : SMTPC_ENETWORK,
                           code, text, msg);
    }
    /* Drain the source too: each message is reported (those being signed first). */
    smtpc__sign_pool_flush(b, SMTPC_BULK_FAILED, b->last_conn_err ? b->last_conn_err : SMTPC_ENETWORK, code, text,
                           msg, !b->canceling);
    while (!b->src_done && !b->canceling) {
        int rc = smtpc__bulk_take(b, &r);
        if (rc <= 0) break;
        r->attempts = 0;
        smtpc__bulk_finish(b, r, SMTPC_BULK_FAILED, b->last_conn_err ? b->last_conn_err : SMTPC_ENETWORK, code,
               text, msg);
    }
    b->src_done = true;
    b->gave_up = true; /* after_action closes the connections still coming up */
}

static bool work_left(smtpc_bulk *b)
{
    return !b->canceling && (b->retry_head || b->ahead || !b->src_done);
}

void smtpc__bulk_maybe_open(smtpc_bulk *b)
{
    if (!b->resolved) return;
    unsigned limit = b->k * 2 + 4;
    while (b->nconns < b->k && (work_left(b) || (b->hold_idle && !b->canceling))) {
        if (b->consec_fail >= limit || b->unproven_fail >= limit) {
            smtpc__bulk_give_up(b);
            return;
        }
        /* Only one connection while the server is failing to answer. */
        if ((b->consec_fail || b->unproven_fail) && b->nconns > 0) return;
        /* A connection only for a message there is: one is asked for
         * ahead, so that a source with nothing more gets no connection
         * opened (and QUIT at once) for nothing. */
        if (!b->hold_idle && !b->retry_head && !b->ahead) {
            int rc = fetch(b, &b->ahead);
            if (rc <= 0) {
                b->ahead = NULL;
                return;
            }
        }
        if (smtpc__bulk_conn_open(b)) {
            smtpc__bulk_give_up(b);
            return;
        }
    }
}

void smtpc__bulk_process_cancel(smtpc_bulk *b)
{
    if (!atomic_load(&b->cancel_req) || (b->canceling && b->stopping)) return;
    b->canceling = true;
    b->stopping = true;
    if (!b->stop_rc) b->stop_rc = SMTPC_ECANCELED;
    smtpc__bulk_rec *r;
    while ((r = b->retry_head)) {
        b->retry_head = r->next;
        if (!b->retry_head) b->retry_tail = NULL;
        smtpc__bulk_finish(b, r, SMTPC_BULK_CANCELED, SMTPC_ECANCELED, 0, NULL, "canceled");
    }
    if ((r = b->ahead)) {
        b->ahead = NULL;
        smtpc__bulk_finish(b, r, SMTPC_BULK_CANCELED, SMTPC_ECANCELED, 0, NULL, "canceled");
    }
    smtpc__sign_pool_flush(b, SMTPC_BULK_CANCELED, SMTPC_ECANCELED, 0, NULL, "canceled", false);
    for (size_t i = b->nconns; i-- > 0;) {
        smtpc__bulk_conn *c = b->conns[i];
        c->canceling = true;
        /* a final dot is out: its reply first (a message pipelined behind
         * it goes when it comes), then QUIT */
        if (smtpc__bulk_conn_awaits_dot(c)) continue;
        if (smtpc__bulk_conn_busy(c) || c->phase < P_READY) {
            smtpc__bulk_conn_kill(c, SMTPC_ECANCELED, "canceled");
            continue;
        }
        smtpc__bulk_conn_kick(c);
    }
}

/* After a dot's reply on a canceling connection, drop the rest. */
void smtpc__bulk_cancel_followup(smtpc_bulk *b)
{
    if (!b->canceling) return;
    for (size_t i = b->nconns; i-- > 0;) {
        smtpc__bulk_conn *c = b->conns[i];
        c->canceling = true;
        if (smtpc__bulk_conn_busy(c) && !smtpc__bulk_conn_awaits_dot(c))
            smtpc__bulk_conn_kill(c, SMTPC_ECANCELED, "canceled");
    }
}

void smtpc__bulk_recs_free(smtpc_bulk *b)
{
    smtpc__bulk_rec *r;
    while ((r = b->free_recs)) {
        b->free_recs = r->next;
        free(r->rcodes);
        free(r);
    }
}
