/* smtpc_bulk_set_dkim: a pool of signing threads between the message
 * source and the connections (see sign_pool.h). A window of messages is
 * taken from the source ahead of need so that the workers stay busy while
 * the loop sends; a signed message in memory becomes one buffer (the
 * fields, then the message: SIZE= and BODY=8BITMIME stay as they were), a
 * pulled one a smtpc_dkim_reader (its first pass on the worker, the second
 * as the connection writes it). */
#include "async/bulk_int.h"
#include "async/sign_pool.h"

#include <smtpc/dkim.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

typedef struct sp_job {
    struct sp_job *next;
    smtpc_bulk_msg orig; /* as the source gave it */
    smtpc_dkim_reader *rd;
    uint8_t *buf;        /* a memory body: the fields, then the message */
    size_t len;
    int rc;
    char err[256];
} sp_job;

struct smtpc__sign_pool {
    const smtpc_dkim_signer *sg;
    pthread_t *thr;
    unsigned n, started;
    pthread_mutex_t mu;
    pthread_cond_t cv, cv_done;
    unsigned working; /* jobs a worker holds */
    sp_job *todo_h, *todo_t, *done_h, *done_t;
    unsigned inflight; /* taken from the source, not yet given to the loop */
    bool stop, src_end, registered;
    int src_rc;
    int efd;
};

static void push(sp_job **h, sp_job **t, sp_job *j)
{
    j->next = NULL;
    if (*t) (*t)->next = j;
    else *h = j;
    *t = j;
}

static sp_job *pop(sp_job **h, sp_job **t)
{
    sp_job *j = *h;
    if (j && !(*h = j->next)) *t = NULL;
    return j;
}

static void sign_job(const smtpc_dkim_signer *sg, sp_job *j)
{
    const smtpc_bulk_msg *m = &j->orig;
    if (m->read) {
        j->rc = smtpc_dkim_reader_new(&j->rd, sg, m->read, m->rewind, m->body_ud, j->err, sizeof j->err);
        return;
    }
    smtpc_dkim_sign *ctx;
    const char *f;
    size_t flen;
    int rc = smtpc_dkim_sign_begin(sg, &ctx);
    if (rc) {
        snprintf(j->err, sizeof j->err, "DKIM: %s", smtpc_dkim_signer_errmsg(sg));
        j->rc = rc;
        return;
    }
    rc = smtpc_dkim_sign_update(ctx, m->data, m->len);
    if (!rc) rc = smtpc_dkim_sign_final(ctx, &f, &flen);
    if (!rc && !(j->buf = malloc(flen + m->len ? flen + m->len : 1))) rc = SMTPC_ENOMEM;
    if (!rc) {
        memcpy(j->buf, f, flen);
        if (m->len) memcpy(j->buf + flen, m->data, m->len);
        j->len = flen + m->len;
    } else {
        snprintf(j->err, sizeof j->err, "DKIM: %s", smtpc_dkim_sign_errmsg(ctx));
    }
    smtpc_dkim_sign_free(ctx);
    j->rc = rc;
}

static void *worker(void *arg)
{
    smtpc__sign_pool *p = arg;
    /* the worker's own copy of the keys (RSA blinding is per key object) */
    smtpc_dkim_signer *own = NULL;
    const smtpc_dkim_signer *sg = smtpc_dkim_signer_dup(p->sg, &own) ? p->sg : own;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->todo_h && !p->stop) pthread_cond_wait(&p->cv, &p->mu);
        if (p->stop) break;
        sp_job *j = pop(&p->todo_h, &p->todo_t);
        p->working++;
        pthread_mutex_unlock(&p->mu);
        sign_job(sg, j);
        pthread_mutex_lock(&p->mu);
        bool was_empty = !p->done_h;
        push(&p->done_h, &p->done_t, j);
        p->working--;
        pthread_cond_broadcast(&p->cv_done);
        if (was_empty) {
            uint64_t one = 1;
            ssize_t w;
            do w = write(p->efd, &one, sizeof one);
            while (w < 0 && errno == EINTR);
        }
    }
    pthread_mutex_unlock(&p->mu);
    smtpc_dkim_signer_free(own);
    return NULL;
}

static void job_free(sp_job *j)
{
    smtpc_dkim_reader_free(j->rd);
    free(j->buf);
    free(j);
}

static void pool_destroy(smtpc__sign_pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->started; i++) pthread_join(p->thr[i], NULL);
    free(p->thr);
    if (p->efd >= 0) close(p->efd);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    pthread_cond_destroy(&p->cv_done);
    free(p);
}

SMTPC_API int smtpc_bulk_set_dkim(smtpc_bulk *b, const smtpc_dkim_signer *sg, unsigned threads)
{
    if (!b) return SMTPC_EINVAL;
    if (b->started) return smtpc__err(&b->err, SMTPC_ESTATE, "smtpc_bulk_set_dkim: the run has started");
    if (threads > 256) return smtpc__err(&b->err, SMTPC_EINVAL, "smtpc_bulk_set_dkim: at most 256 threads");
    if (b->sp) {
        pool_destroy(b->sp);
        b->sp = NULL;
    }
    if (!sg) return 0;
    smtpc_dkim_sign *probe; /* a signer without key or domain fails here */
    int rc = smtpc_dkim_sign_begin(sg, &probe);
    if (rc) return smtpc__err(&b->err, rc, "DKIM: %s", smtpc_dkim_signer_errmsg(sg));
    smtpc_dkim_sign_free(probe);
    if (!threads) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n < 1 ? 1u : n > 256 ? 256u : (unsigned)n;
    }
    smtpc__sign_pool *p = calloc(1, sizeof *p);
    if (!p) return SMTPC_ENOMEM;
    p->sg = sg;
    p->n = threads;
    p->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    if (p->efd < 0 || !(p->thr = calloc(threads, sizeof *p->thr))) {
        rc = p->efd < 0 ? smtpc__err(&b->err, SMTPC_EIO, "eventfd: %s", strerror(errno)) : SMTPC_ENOMEM;
        pool_destroy(p);
        return rc;
    }
    for (; p->started < threads; p->started++)
        if (pthread_create(&p->thr[p->started], NULL, worker, p)) break;
    if (!p->started) {
        pool_destroy(p);
        return smtpc__err(&b->err, SMTPC_ENOMEM, "cannot start a signing thread");
    }
    b->sp = p;
    return 0;
}

static ssize_t job_read(void *ud, void *buf, size_t len)
{
    return smtpc_dkim_reader_read(((sp_job *)ud)->rd, buf, len);
}

static int job_rewind(void *ud) { return smtpc_dkim_reader_rewind(((sp_job *)ud)->rd); }

int smtpc__sign_pool_fd(const smtpc_bulk *b) { return b->sp ? b->sp->efd : -1; }

int smtpc__sign_pool_next(smtpc_bulk *b, smtpc_bulk_msg *m, int *fail, char *errmsg, size_t errlen)
{
    smtpc__sign_pool *p = b->sp;
    *fail = 0;
    if (!p->registered && b->sock_cb) {
        b->sock_cb(b->sock_ud, p->efd, SMTPC_POLL_IN);
        p->registered = true;
    }
    /* keep the workers fed: a window of messages ahead of the connections */
    unsigned window = p->n * 4 + b->k;
    while (!p->src_end && p->inflight < window) {
        sp_job *j = calloc(1, sizeof *j);
        if (!j) return SMTPC_ENOMEM;
        int rc = b->next_cb(b->next_ud, &j->orig);
        if (rc <= 0) {
            free(j);
            p->src_end = true;
            p->src_rc = rc;
            break;
        }
        p->inflight++;
        pthread_mutex_lock(&p->mu);
        push(&p->todo_h, &p->todo_t, j);
        pthread_cond_signal(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_lock(&p->mu);
    sp_job *j = pop(&p->done_h, &p->done_t);
    pthread_mutex_unlock(&p->mu);
    if (!j) return p->inflight ? SMTPC__SIGN_PENDING : p->src_rc;
    p->inflight--;
    *m = j->orig;
    m->body_ud = j; /* the job travels with the message until restore */
    if (j->rc) {
        *fail = j->rc;
        smtpc__strlcpy(errmsg, j->err, errlen);
    } else if (j->rd) {
        m->read = job_read;
        m->rewind = job_rewind;
    } else {
        m->data = j->buf;
        m->len = j->len;
    }
    return 1;
}

void smtpc__sign_pool_restore(smtpc_bulk *b, smtpc_bulk_msg *m)
{
    (void)b;
    sp_job *j = m->body_ud;
    *m = j->orig;
    job_free(j);
}

void smtpc__sign_pool_wake(smtpc_bulk *b)
{
    uint64_t v;
    if (read(b->sp->efd, &v, sizeof v) < 0) { /* drained */ }
    /* every ready connection: one waiting for a reply may chain the next
     * message behind its final dot */
    for (size_t i = b->nconns; i-- > 0;)
        if (b->conns[i]->phase == P_READY) smtpc__bulk_conn_kick(b->conns[i]);
}

/* A message taken from the source and never given to a connection. */
static void report(smtpc_bulk *b, const smtpc_bulk_msg *m, smtpc_bulk_status s, int err, int code,
                   const char *text, const char *msg)
{
    smtpc_bulk_result res;
    memset(&res, 0, sizeof res);
    res.status = s;
    res.error = err;
    res.reply_code = code;
    res.reply_text = text ? text : "";
    res.errmsg = msg;
    b->st.submitted++;
    if (s == SMTPC_BULK_FAILED) b->st.failed++;
    else b->st.canceled++;
    if (b->res_cb) b->res_cb(b->res_ud, m, &res);
}

void smtpc__sign_pool_flush(smtpc_bulk *b, smtpc_bulk_status s, int err, int code, const char *text,
                            const char *msg, bool drain_source)
{
    smtpc__sign_pool *p = b->sp;
    if (!p) return;
    /* the ones not started come back at once; the ones being signed when done */
    pthread_mutex_lock(&p->mu);
    sp_job *j;
    while ((j = pop(&p->todo_h, &p->todo_t))) push(&p->done_h, &p->done_t, j);
    while (p->working) pthread_cond_wait(&p->cv_done, &p->mu);
    sp_job *held = p->done_h;
    p->done_h = p->done_t = NULL;
    pthread_mutex_unlock(&p->mu);
    while ((j = held)) {
        held = j->next;
        p->inflight--;
        report(b, &j->orig, s, err, code, text, msg);
        job_free(j);
    }
    while (drain_source && !p->src_end) {
        smtpc_bulk_msg m;
        memset(&m, 0, sizeof m);
        int rc = b->next_cb(b->next_ud, &m);
        if (rc <= 0) break;
        report(b, &m, s, err, code, text, msg);
    }
    p->src_end = true;
}

void smtpc__sign_pool_free(smtpc_bulk *b)
{
    smtpc__sign_pool *p = b->sp;
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->started; i++) pthread_join(p->thr[i], NULL);
    p->started = 0;
    if (p->registered && b->sock_cb) b->sock_cb(b->sock_ud, p->efd, SMTPC_POLL_REMOVE);
    sp_job *j;
    while ((j = pop(&p->done_h, &p->done_t)) || (j = pop(&p->todo_h, &p->todo_t))) {
        report(b, &j->orig, SMTPC_BULK_CANCELED, SMTPC_ECANCELED, 0, NULL, "canceled (freed)");
        job_free(j);
    }
    b->sp = NULL;
    pool_destroy(p);
}
