/* Asynchronous sends: one worker thread per client, started at the
 * first send_async. */
#include "client/client_int.h"

#include <pthread.h>
#include <stdlib.h>

static void *worker(void *arg)
{
    smtpc_client *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->job && !c->stop) pthread_cond_wait(&c->cv, &c->mu);
        if (!c->job) break; /* stop with nothing queued */
        smtpc_message *m = c->job_m;
        const smtpc_send_params *params = c->job_params;
        smtpc_send_cb cb = c->job_cb;
        void *ud = c->job_ud;
        c->job = false;
        pthread_mutex_unlock(&c->mu);

        smtpc__body b;
        const char **rcpts = NULL;
        smtpc_result *res = NULL;
        int rc = smtpc__client_message_envelope(c, m, &b, &rcpts);
        if (!rc) rc = smtpc__client_check_params(c, params, b.nrcpts);
        b.params = params;
        if (!rc) rc = smtpc__client_deliver_any(c, &b, &res);
        free(rcpts);
        if (!res) {
            res = calloc(1, sizeof *res);
            if (res) {
                res->status = rc;
                smtpc__strlcpy(res->errmsg, c->err.text, sizeof res->errmsg);
            }
        }
        smtpc__client_leave(c); /* idle before the callback: it may send again */
        cb(ud, rc, res);
        smtpc_result_free(res);
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

SMTPC_API int smtpc_client_send_async(smtpc_client *c, smtpc_message *m, smtpc_send_cb cb, void *userdata)
{
    return smtpc_client_send_async_with(c, m, NULL, cb, userdata);
}

SMTPC_API int smtpc_client_send_async_with(smtpc_client *c, smtpc_message *m, const smtpc_send_params *params,
                                           smtpc_send_cb cb, void *userdata)
{
    if (!c || !m || !cb) return SMTPC_EINVAL;
    int rc = smtpc__client_enter(c);
    if (rc) return rc;
    pthread_mutex_lock(&c->mu);
    if (!c->thr_started) {
        if (pthread_create(&c->thr, NULL, worker, c) != 0) {
            pthread_mutex_unlock(&c->mu);
            smtpc__client_leave(c);
            return smtpc__err(&c->err, SMTPC_ENOMEM, "cannot start the client thread");
        }
        c->thr_started = true;
    }
    c->job = true;
    c->job_m = m;
    c->job_params = params;
    c->job_cb = cb;
    c->job_ud = userdata;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return 0;
}
