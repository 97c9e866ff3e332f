/* Batches: one pooled connection, pipelined across messages. */
#include "client/client_int.h"

#include <stdlib.h>
#include <string.h>

typedef struct batch_slot {
    smtpc__body_run run;
    smtpc__body b;
    const char **rcpts; /* a message's envelope (pointers owned by it) */
    smtpc_mail_opts mo;
    int prep_rc;
    char prep_err[SMTPC__ERRMSG_MAX];
} batch_slot;

typedef struct batch_ctx {
    smtpc_client *c;
    const smtpc_batch_item *items;
    size_t n;
    smtpc_batch_cb cb;
    void *ud;
    smtpc_session *s;
    smtpc__pconn *pc;
    unsigned max_msgs;  /* per connection (the pool's), 0 = no limit */
    unsigned begun;     /* on this connection */
    bool reused;
    batch_slot slots[4]; /* at most two messages are in flight */
    struct batch_redo {
        size_t i;
        int last;
        smtpc_result *res;
    } *redo;            /* temporary failures: continued one by one per the retry policy */
    size_t nredo;
    const smtpc__ident *id;
    int first_fail;
} batch_ctx;

static void batch_slot_clear(batch_slot *sl)
{
    smtpc__body_run_free(&sl->run);
    free(sl->rcpts);
    memset(sl, 0, sizeof *sl);
}

static void batch_finish(batch_ctx *x, size_t i, smtpc_result *res, int rc)
{
    res->status = rc;
    smtpc__strlcpy(res->errmsg, rc ? x->c->err.text : "", sizeof res->errmsg);
    if (rc && !x->first_fail) x->first_fail = rc;
    if (x->cb) x->cb(x->ud, i, rc, res);
}

/* Item i's result could not be allocated: it is still reported, once. */
static void batch_nomem(batch_ctx *x, size_t i)
{
    smtpc_result none;
    memset(&none, 0, sizeof none);
    smtpc__err(&x->c->err, SMTPC_ENOMEM, "out of memory");
    batch_finish(x, i, &none, SMTPC_ENOMEM);
}

/* The item's envelope and body source (no server needed). */
static int batch_body(smtpc_client *c, const smtpc_batch_item *it, smtpc__body *b, const char ***rcpts)
{
    *rcpts = NULL;
    if (it->message) return smtpc__client_message_envelope(c, it->message, b, rcpts);
    memset(b, 0, sizeof *b);
    if (!it->from || !it->rcpts || it->nrcpts == 0 || (!it->data && it->len))
        return smtpc__err(&c->err, SMTPC_EINVAL, "batch item: no sender, recipient or data");
    for (size_t k = 0; k < it->nrcpts; k++)
        if (!it->rcpts[k] || !*it->rcpts[k]) return smtpc__err(&c->err, SMTPC_EINVAL, "empty recipient");
    b->from = it->from;
    b->rcpts = it->rcpts;
    b->nrcpts = it->nrcpts;
    b->mem = it->data ? it->data : "";
    b->len = it->len;
    return 0;
}

static int batch_next(void *ud, size_t i, smtpc__batch_msg *m)
{
    batch_ctx *x = ud;
    if (i >= x->n || atomic_load(&x->c->canceled)) return 0;
    if (x->max_msgs && x->pc->msgs + x->begun >= x->max_msgs) return 0; /* the rest on a new one */
    x->begun++;
    smtpc_client *c = x->c;
    batch_slot *sl = &x->slots[i % 4];
    batch_slot_clear(sl);
    sl->prep_rc = batch_body(c, &x->items[i], &sl->b, &sl->rcpts);
    if (!sl->prep_rc) sl->prep_rc = smtpc__client_prep_body(c, x->s, &sl->b, &sl->run, &sl->mo);
    sl->run.b = &sl->b;
    if (sl->prep_rc) smtpc__strlcpy(sl->prep_err, c->err.text, sizeof sl->prep_err);
    memset(m, 0, sizeof *m);
    /* a message that cannot be prepared still takes its turn: the session
     * refuses its empty envelope and done() reports the real reason */
    m->env.from = sl->prep_rc ? NULL : sl->b.from;
    m->env.rcpts = sl->b.rcpts;
    m->env.nrcpts = sl->b.nrcpts;
    m->env.mail = &sl->mo;
    m->env.all_or_nothing = c->strict;
    m->body = smtpc__body_read;
    m->ud = &sl->run;
    return 1;
}

static void batch_done(void *ud, size_t i, int rc, smtpc_session *s)
{
    batch_ctx *x = ud;
    smtpc_client *c = x->c;
    batch_slot *sl = &x->slots[i % 4];
    smtpc_result *res = smtpc__result_for(&sl->b);
    if (!res || !res->r) {
        smtpc_result_free(res);
        batch_nomem(x, i);
        batch_slot_clear(sl);
        return;
    }
    if (sl->prep_rc) {
        rc = smtpc__err(&c->err, sl->prep_rc, "%s", sl->prep_err);
    } else {
        rc = smtpc__client_unknown_after_dot(c, s, rc);
        smtpc__client_take_results(c, s, res, rc, NULL);
        if (rc == 0) x->pc->msgs++;
        if (sl->b.m) smtpc__strlcpy(res->msgid, smtpc__nz(smtpc_message_message_id(sl->b.m)), sizeof res->msgid);
    }
    res->attempts = 1;
    res->reused = x->reused;
    const smtpc_tls_info *ti = smtpc_session_tls_info(s);
    smtpc__strlcpy(res->tls_version, ti ? ti->version : "", sizeof res->tls_version);
    smtpc__strlcpy(res->tls_cipher, ti ? ti->cipher : "", sizeof res->tls_cipher);
    smtpc__strlcpy(res->mech, smtpc__nz(smtpc_session_auth_mechanism(s)), sizeof res->mech);
    bool pending = false; /* recipients with a 4xx, or all after a 4xx to the message */
    for (size_t k = 0; k < res->nrcpt; k++) pending |= !res->r[k].final;
    if (!sl->prep_rc && c->retry.attempts > 1 && pending && (rc == 0 || rc == SMTPC_ETEMPFAIL)) {
        struct batch_redo *r = realloc(x->redo, (x->nredo + 1) * sizeof *r);
        if (r) {
            x->redo = r;
            x->redo[x->nredo++] = (struct batch_redo){i, rc, res}; /* later, on its own */
            batch_slot_clear(sl);
            return;
        }
    }
    batch_finish(x, i, res, rc);
    smtpc_result_free(res);
    batch_slot_clear(sl);
}

/* Item i continued after its attempt in the batch: the recipients that
 * are not final yet, per the retry policy. */
static void batch_continue(batch_ctx *x, const struct batch_redo *r)
{
    smtpc_client *c = x->c;
    smtpc__body b;
    const char **rcpts = NULL;
    int rc = batch_body(c, &x->items[r->i], &b, &rcpts);
    if (!rc) rc = smtpc__client_deliver_attempts(c, &b, true, r->res, 2, r->last);
    batch_finish(x, r->i, r->res, rc);
    smtpc_result_free(r->res);
    free(rcpts);
}

/* Item i on its own, with retries and a fresh connection as needed. */
static void batch_single(batch_ctx *x, size_t i, bool use_retry)
{
    smtpc_client *c = x->c;
    smtpc__body b;
    const char **rcpts = NULL;
    smtpc_result *res = NULL;
    int rc = batch_body(c, &x->items[i], &b, &rcpts);
    if (!rc) {
        rc = atomic_load(&c->canceled) ? smtpc__err(&c->err, SMTPC_ECANCELED, "canceled")
                                       : smtpc__client_deliver(c, &b, use_retry, &res);
    }
    if (!res) res = smtpc__result_for(&b);
    if (res && res->r) batch_finish(x, i, res, rc);
    else batch_nomem(x, i);
    smtpc_result_free(res);
    free(rcpts);
}

/* A pooled connection for the batch: re-used (RSET/NOOP first when
 * needed) or new. */
static int batch_conn(batch_ctx *x, const char *key)
{
    smtpc_result tmp; /* connect timings: per message they are in no result */
    memset(&tmp, 0, sizeof tmp);
    int rc = smtpc__client_get_conn(x->c, key, x->id, &tmp, &x->pc, &x->reused);
    if (rc) x->pc = NULL;
    return rc;
}

SMTPC_API int smtpc_client_send_batch(smtpc_client *c, const smtpc_batch_item *items, size_t n,
                                      smtpc_batch_cb cb, void *userdata)
{
    if (!c || (!items && n)) return SMTPC_EINVAL;
    int rc = smtpc__client_enter(c);
    if (rc) return rc;
    batch_ctx x;
    memset(&x, 0, sizeof x);
    x.c = c;
    x.items = items;
    x.n = n;
    x.cb = cb;
    x.ud = userdata;
    x.max_msgs = smtpc__pool_max_messages(c->pool);
    size_t i = 0;
    if (c->delivery != SMTPC_DELIVERY_NETWORK || !c->o.host) {
        for (; i < n; i++) batch_single(&x, i, true); /* pickup, outbox; or the config error */
    }
    /* the identity (a callback's) is asked once per batch, like per send */
    smtpc__ident id;
    memset(&id, 0, sizeof id);
    char *key = NULL;
    if (i < n && ((rc = smtpc__client_identity(c, &id)) != 0 || !(key = smtpc__client_pool_key(c, &id)))) {
        if (!rc) rc = SMTPC_ENOMEM;
        for (; i < n; i++) batch_single(&x, i, true); /* each reports the error */
    }
    x.id = &id;
    while (i < n) {
        if (atomic_load(&c->canceled)) {
            batch_single(&x, i++, false); /* reported canceled */
            continue;
        }
        if (batch_conn(&x, key) != 0) {
            batch_single(&x, i++, true); /* its own attempts decide */
            continue;
        }
        x.s = x.pc->s;
        x.begun = 0;
        smtpc__client_publish(c, x.s);
        size_t nd = 0;
        rc = smtpc__session_send_batch(x.s, batch_next, batch_done, &x, i, &nd);
        smtpc__client_publish(c, NULL);
        i += nd;
        if (rc) smtpc__err(&c->err, rc, "%s", smtpc_session_errmsg(x.s)); /* before release */
        bool canceled = rc == SMTPC_ECANCELED || atomic_load(&c->canceled);
        x.pc->dirty = rc != 0;
        smtpc__client_trace_conn(c, x.s, false);
        smtpc__pool_release(c->pool, x.pc, rc == 0 && !canceled, !canceled);
        x.pc = NULL;
        for (int k = 0; k < 4; k++) batch_slot_clear(&x.slots[k]);
        if (rc && i < n) {
            /* not written completely: on its own, on a fresh connection */
            batch_single(&x, i++, true);
        }
    }
    for (size_t k = 0; k < x.nredo; k++) batch_continue(&x, &x.redo[k]);
    free(x.redo);
    if (key) {
        smtpc__secure_zero(key, strlen(key));
        free(key);
    }
    smtpc__ident_wipe(&id);
    smtpc__client_leave(c);
    return x.first_fail;
}
