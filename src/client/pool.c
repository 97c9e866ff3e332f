/* Connection pool: open sessions keyed by endpoint and identity, shared by
 * clients and threads. The lock is never held across network I/O: QUIT and
 * connect happen outside it. */
#include "client/pool_int.h"
#include "client/session_int.h"

#include "util/util.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct smtpc_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    smtpc__pconn *conns;
    unsigned max_per;
    unsigned max_msgs;
    int64_t max_idle_ms;
    int64_t noop_after_ms;
    _Atomic uint64_t opened;
    _Atomic unsigned open;
};

static int pool_new(smtpc_pool **out, unsigned max_per)
{
    if (!out) return SMTPC_EINVAL;
    smtpc_pool *p = calloc(1, sizeof *p);
    if (!p) return SMTPC_ENOMEM;
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    p->max_per = max_per;
    p->max_msgs = 100;
    p->max_idle_ms = 60000;
    p->noop_after_ms = 5000;
    *out = p;
    return 0;
}

SMTPC_API int smtpc_pool_new(smtpc_pool **out) { return pool_new(out, 4); }
int smtpc__pool_new_private(smtpc_pool **out) { return pool_new(out, 1); }

static void conn_close(smtpc_pool *p, smtpc__pconn *c, bool polite)
{
    if (c->s) {
        if (polite && smtpc_session_is_connected(c->s)) {
            /* Wait for the 221 whatever deadline the last send left on the
             * session (an expired one gave it no time at all), but never
             * long: closing a pool must not hang on a stuck server (the
             * command timeout is 300 s by default). */
            int64_t ms = SMTPC__POOL_QUIT_MS;
            smtpc__session_set_deadline_at(c->s, smtpc__now_ms() + ms + 1, ms);
            (void)smtpc_session_quit(c->s);
        }
        smtpc_session_free(c->s);
        atomic_fetch_sub(&p->open, 1);
    }
    if (c->key) {
        smtpc__secure_zero(c->key, strlen(c->key));
        free(c->key);
    }
    free(c);
}

SMTPC_API void smtpc_pool_free(smtpc_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    smtpc__pconn *list = p->conns;
    p->conns = NULL;
    pthread_mutex_unlock(&p->mu);
    while (list) {
        smtpc__pconn *n = list->next;
        conn_close(p, list, true);
        list = n;
    }
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

SMTPC_API int smtpc_pool_set_max_per_endpoint(smtpc_pool *p, unsigned n)
{
    if (!p || n == 0) return SMTPC_EINVAL;
    pthread_mutex_lock(&p->mu);
    p->max_per = n;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

SMTPC_API int smtpc_pool_set_max_messages(smtpc_pool *p, unsigned n)
{
    if (!p) return SMTPC_EINVAL;
    pthread_mutex_lock(&p->mu);
    p->max_msgs = n;
    pthread_mutex_unlock(&p->mu);
    return 0;
}

SMTPC_API int smtpc_pool_set_max_idle_ms(smtpc_pool *p, int64_t ms)
{
    if (!p || ms < 0) return SMTPC_EINVAL;
    pthread_mutex_lock(&p->mu);
    p->max_idle_ms = ms;
    pthread_mutex_unlock(&p->mu);
    return 0;
}

SMTPC_API int smtpc_pool_set_noop_after_ms(smtpc_pool *p, int64_t ms)
{
    if (!p || ms < -1) return SMTPC_EINVAL;
    pthread_mutex_lock(&p->mu);
    p->noop_after_ms = ms;
    pthread_mutex_unlock(&p->mu);
    return 0;
}

SMTPC_API uint64_t smtpc_pool_connections_opened(const smtpc_pool *p)
{
    return p ? atomic_load(&((smtpc_pool *)p)->opened) : 0;
}

SMTPC_API unsigned smtpc_pool_connections_open(const smtpc_pool *p)
{
    return p ? atomic_load(&((smtpc_pool *)p)->open) : 0;
}

/* Unlinks idle connections past max idle into *expired (closed by the caller
 * outside the lock). */
static void collect_expired(smtpc_pool *p, smtpc__pconn **expired)
{
    if (p->max_idle_ms <= 0) return;
    int64_t now = smtpc__now_ms();
    for (smtpc__pconn **pp = &p->conns; *pp;) {
        smtpc__pconn *c = *pp;
        if (!c->busy && c->s && now - c->last_used_ms > p->max_idle_ms) {
            *pp = c->next;
            c->next = *expired;
            *expired = c;
        } else {
            pp = &c->next;
        }
    }
}

int smtpc__pool_acquire(smtpc_pool *p, const char *key, const atomic_bool *cancel,
                        smtpc__pconn **out, bool *check)
{
    *check = false;
    smtpc__pconn *expired = NULL, *got = NULL;
    int rc = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        collect_expired(p, &expired);
        unsigned n = 0;
        smtpc__pconn *idle = NULL;
        for (smtpc__pconn *c = p->conns; c; c = c->next) {
            if (strcmp(c->key, key) != 0) continue;
            n++;
            /* The most recently used idle connection: the others may expire. */
            if (!c->busy && c->s && (!idle || c->last_used_ms > idle->last_used_ms)) idle = c;
        }
        if (idle) {
            idle->busy = true;
            *check = p->noop_after_ms >= 0 && smtpc__now_ms() - idle->last_used_ms >= p->noop_after_ms;
            got = idle;
            break;
        }
        if (n < p->max_per) {
            smtpc__pconn *c = calloc(1, sizeof *c);
            char *k = c ? smtpc__strdup(key) : NULL;
            if (!k) {
                free(c);
                rc = SMTPC_ENOMEM;
                break;
            }
            c->key = k;
            c->busy = true;
            c->next = p->conns;
            p->conns = c;
            got = c;
            break;
        }
        if (cancel && atomic_load(cancel)) {
            rc = SMTPC_ECANCELED;
            break;
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&p->cv, &p->mu, &ts);
    }
    pthread_mutex_unlock(&p->mu);
    while (expired) {
        smtpc__pconn *nx = expired->next;
        conn_close(p, expired, true);
        expired = nx;
    }
    if (!rc) *out = got;
    return rc;
}

void smtpc__pool_release(smtpc_pool *p, smtpc__pconn *c, bool keep, bool polite)
{
    if (!c) return;
    pthread_mutex_lock(&p->mu);
    if (keep && c->s && smtpc_session_is_connected(c->s) &&
        (p->max_msgs == 0 || c->msgs < p->max_msgs)) {
        c->busy = false;
        c->last_used_ms = smtpc__now_ms();
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        return;
    }
    for (smtpc__pconn **pp = &p->conns; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    conn_close(p, c, polite);
}

void smtpc__pool_count_open(smtpc_pool *p)
{
    atomic_fetch_add(&p->opened, 1);
    atomic_fetch_add(&p->open, 1);
}

unsigned smtpc__pool_max_messages(smtpc_pool *p)
{
    pthread_mutex_lock(&p->mu);
    unsigned n = p->max_msgs;
    pthread_mutex_unlock(&p->mu);
    return n;
}
