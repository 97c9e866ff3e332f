/* Retries (the client's policy, per recipient) and the DSN parameters
 * of a send (RFC 3461). */
#include "client/client_int.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- DSN (RFC 3461) ---- */

bool smtpc__want_dsn(const smtpc_send_params *p)
{
    if (!p) return false;
    if (p->dsn_ret || p->dsn_envid || p->dsn_notify) return true;
    for (size_t i = 0; p->rcpt && i < p->nrcpt; i++)
        if (p->rcpt[i].dsn_notify || p->rcpt[i].dsn_orcpt) return true;
    return false;
}

static bool notify_ok(const char *n)
{
    if (!smtpc__strcasecmp(n, "NEVER")) return true;
    for (const char *p = n;;) {
        size_t l = strcspn(p, ",");
        if (!((l == 7 && !smtpc__strncasecmp(p, "SUCCESS", 7)) ||
              (l == 7 && !smtpc__strncasecmp(p, "FAILURE", 7)) ||
              (l == 5 && !smtpc__strncasecmp(p, "DELAY", 5))))
            return false;
        if (!p[l]) return true;
        p += l + 1;
    }
}

/* Checked before anything is sent: with the ignore policy a server without
 * DSN would otherwise hide a caller's mistake. */
int smtpc__client_check_params(smtpc_client *c, const smtpc_send_params *p, size_t nrcpts)
{
    if (!p) return 0;
    if (p->dsn_ret && smtpc__strcasecmp(p->dsn_ret, "FULL") && smtpc__strcasecmp(p->dsn_ret, "HDRS"))
        return smtpc__err(&c->err, SMTPC_EINVAL, "DSN RET must be FULL or HDRS");
    if (p->rcpt && p->nrcpt != nrcpts)
        return smtpc__err(&c->err, SMTPC_EINVAL, "DSN: %zu recipient entries for %zu recipients",
                          p->nrcpt, nrcpts);
    if (p->dsn_notify && !notify_ok(p->dsn_notify))
        return smtpc__err(&c->err, SMTPC_EINVAL, "DSN NOTIFY must be NEVER or a list of SUCCESS,FAILURE,DELAY");
    for (size_t i = 0; p->rcpt && i < p->nrcpt; i++)
        if (p->rcpt[i].dsn_notify && !notify_ok(p->rcpt[i].dsn_notify))
            return smtpc__err(&c->err, SMTPC_EINVAL,
                              "DSN NOTIFY of recipient %zu must be NEVER or a list of SUCCESS,FAILURE,DELAY", i);
    return 0;
}

/* The MAIL and RCPT parameters for the recipients of b (*ro: malloc'ed, one
 * per recipient). */
int smtpc__dsn_apply(smtpc_client *c, const smtpc__body *b, smtpc_mail_opts *mo, smtpc_rcpt_opts **ro)
{
    const smtpc_send_params *p = b->params;
    mo->dsn_ret = p->dsn_ret;
    mo->dsn_envid = p->dsn_envid;
    smtpc_rcpt_opts *r = calloc(b->nrcpts, sizeof *r);
    if (!r) return smtpc__err(&c->err, SMTPC_ENOMEM, "out of memory");
    for (size_t j = 0; j < b->nrcpts; j++) {
        size_t i = b->idx ? b->idx[j] : j;
        const smtpc_rcpt_opts *o = p->rcpt && i < p->nrcpt ? &p->rcpt[i] : NULL;
        r[j].dsn_notify = o && o->dsn_notify ? o->dsn_notify : p->dsn_notify;
        r[j].dsn_orcpt = o ? o->dsn_orcpt : NULL;
    }
    *ro = r;
    return 0;
}

static bool retryable(int rc)
{
    return rc == SMTPC_ETEMPFAIL || rc == SMTPC_ENETWORK || rc == SMTPC_ECLOSED ||
           rc == SMTPC_ETIMEDOUT || rc == SMTPC_ENOHOST;
}

/* Sleeps ms unless canceled; returns true when canceled. */
static bool sleep_cancelable(smtpc_client *c, int64_t ms)
{
    int64_t end = smtpc__now_ms() + ms;
    pthread_mutex_lock(&c->mu);
    while (!atomic_load(&c->canceled)) {
        int64_t left = end - smtpc__now_ms();
        if (left <= 0) break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t step = left < 100 ? left : 100;
        ts.tv_nsec += (long)(step * 1000000);
        while (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&c->cv, &c->mu, &ts);
    }
    bool canceled = atomic_load(&c->canceled);
    pthread_mutex_unlock(&c->mu);
    return canceled;
}

int smtpc__client_deliver(smtpc_client *c, const smtpc__body *b, bool use_retry, smtpc_result **out)
{
    smtpc_result *res = smtpc__result_for(b);
    if (!res) return SMTPC_ENOMEM;
    int rc = smtpc__client_deliver_attempts(c, b, use_retry, res, 1, 0);
    if (out) *out = res;
    else smtpc_result_free(res);
    return rc;
}

/* Attempts k0, k0+1 ... (per the retry policy) for the recipients of res
 * that are not final; k0 > 1 continues after an attempt made elsewhere (a
 * batch) that ended with last: waits the first delay before it. */
int smtpc__client_deliver_attempts(smtpc_client *c, const smtpc__body *b, bool use_retry, smtpc_result *res,
                            unsigned k0, int last)
{
    int rc = 0;
    if (!rc && !c->o.host) rc = smtpc__err(&c->err, SMTPC_ECONFIG, "no server configured");
    /* Per send, before a pooled connection is chosen: a callback's identity
     * is part of the key. */
    smtpc__ident id;
    char *key = NULL;
    if (!rc) rc = smtpc__client_identity(c, &id);
    else memset(&id, 0, sizeof id);
    if (!rc && !(key = smtpc__client_pool_key(c, &id))) rc = SMTPC_ENOMEM;
    unsigned max = use_retry ? c->retry.attempts : 1;
    int64_t delay = c->retry.initial_delay_ms;
    /* Each attempt offers the recipients that are not final yet: all of
     * them at first, then those that got 4xx (or whose transaction failed
     * transiently); never one that got 2xx in a delivered transaction. */
    const char **sub = NULL;
    size_t *idx = NULL;
    if (!rc && (!(sub = calloc(b->nrcpts, sizeof *sub)) || !(idx = calloc(b->nrcpts, sizeof *idx))))
        rc = SMTPC_ENOMEM;
    bool delivered = k0 > 1 && last == 0, unknown = false;
    if (!rc && k0 > 1) {
        int64_t d = c->retry.initial_delay_ms < c->retry.max_delay_ms ? c->retry.initial_delay_ms
                                                                       : c->retry.max_delay_ms;
        if (sleep_cancelable(c, d)) rc = smtpc__err(&c->err, SMTPC_ECANCELED, "canceled while waiting to retry");
        double nd = (double)delay * c->retry.backoff_factor;
        delay = nd > 9e15 ? INT64_MAX / 2 : (int64_t)nd;
    }
    for (unsigned k = k0; !rc; k++) {
        size_t ns = 0;
        for (size_t i = 0; i < b->nrcpts; i++)
            if (!res->r[i].final) {
                sub[ns] = b->rcpts[i];
                idx[ns++] = i;
            }
        if (ns == 0) break;
        smtpc__body sb = *b;
        sb.rcpts = sub;
        sb.nrcpts = ns;
        sb.idx = idx;
        bool touched;
        res->attempts = k;
        last = smtpc__client_attempt(c, &sb, key, &id, res, &touched);
        if (last == 0) delivered = true;
        if (last == SMTPC_EUNKNOWN) unknown = true;
        if (k >= max || !(last == 0 || retryable(last))) break;
        if (last == 0) {
            bool pending = false;
            for (size_t i = 0; i < b->nrcpts; i++) pending |= !res->r[i].final;
            if (!pending) break;
        }
        if (touched && !b->m && !b->mem) {
            if (!b->rewind || b->rewind(b->ud)) break; /* the body is gone */
        }
        int64_t d = delay < c->retry.max_delay_ms ? delay : c->retry.max_delay_ms;
        if (sleep_cancelable(c, d)) {
            last = smtpc__err(&c->err, SMTPC_ECANCELED, "canceled while waiting to retry");
            break;
        }
        double nd = (double)delay * c->retry.backoff_factor;
        delay = nd > 9e15 ? INT64_MAX / 2 : (int64_t)nd;
    }
    free(sub);
    free(idx);
    if (key) {
        smtpc__secure_zero(key, strlen(key));
        free(key);
    }
    smtpc__ident_wipe(&id);
    /* Delivered to some: the send succeeded (the others' outcomes are in
     * the result), unless a retry may have delivered without telling. */
    if (!rc) rc = unknown ? SMTPC_EUNKNOWN : delivered ? 0 : last;
    if (rc == SMTPC_ECANCELED || atomic_load(&c->canceled)) {
        if (rc != 0 && rc != SMTPC_EUNKNOWN) rc = SMTPC_ECANCELED;
    }
    res->status = rc;
    smtpc__strlcpy(res->errmsg, rc ? c->err.text : "", sizeof res->errmsg);
    return rc;
}
