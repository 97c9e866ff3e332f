/* The client: its life, the busy flag and cancel. Its settings
 * (client_settings.c), connections (client_conn.c), sends and attempts
 * (client_send.c), retries (client_retry.c), results (client_result.c),
 * batches (client_batch.c) and the async worker (client_async.c) are in
 * their own files; connections come from a pool (pool.c). */
#include "client/client_int.h"

#include <pthread.h>
#include <stdlib.h>

void smtpc__retry_default(smtpc_retry_policy *p)
{
    p->attempts = 1;
    p->initial_delay_ms = 1000;
    p->backoff_factor = 2.0;
    p->max_delay_ms = 60000;
}

SMTPC_API int smtpc_client_new(smtpc_client **out)
{
    if (!out) return SMTPC_EINVAL;
    smtpc_client *c = calloc(1, sizeof *c);
    if (!c) return SMTPC_ENOMEM;
    if (smtpc__pool_new_private(&c->own_pool)) {
        free(c);
        return SMTPC_ENOMEM;
    }
    c->pool = c->own_pool;
    smtpc__conn_opts_init(&c->o);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    smtpc__retry_default(&c->retry);
    *out = c;
    return 0;
}

SMTPC_API void smtpc_client_free(smtpc_client *c)
{
    if (!c) return;
    if (c->thr_started) {
        pthread_mutex_lock(&c->mu);
        c->stop = true;
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->thr, NULL);
    }
    smtpc_pool_free(c->own_pool);
    smtpc__conn_opts_clear(&c->o);
    free(c->dir);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

SMTPC_API const char *smtpc_client_errmsg(const smtpc_client *c) { return c ? c->err.text : "no client"; }
SMTPC_API bool smtpc_client_busy(const smtpc_client *c) { return c && atomic_load(&((smtpc_client *)c)->busy); }

int smtpc__client_enter(smtpc_client *c)
{
    bool expect = false;
    if (!atomic_compare_exchange_strong(&c->busy, &expect, true))
        return smtpc__err(&c->err, SMTPC_EBUSY, "operation in progress");
    atomic_store(&c->canceled, false);
    return 0;
}

void smtpc__client_leave(smtpc_client *c) { atomic_store(&c->busy, false); }

void smtpc__client_publish(smtpc_client *c, smtpc_session *s)
{
    pthread_mutex_lock(&c->mu);
    c->cur = s;
    if (s && atomic_load(&c->canceled)) smtpc_session_cancel(s);
    pthread_mutex_unlock(&c->mu);
}

SMTPC_API void smtpc_client_cancel_async(smtpc_client *c)
{
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    if (atomic_load(&c->busy)) {
        atomic_store(&c->canceled, true);
        if (c->cur) smtpc_session_cancel(c->cur);
        pthread_cond_broadcast(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
}
