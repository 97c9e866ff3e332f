/* Test driver for the parallel outbox flush (tests/integration/test_outbox_parallel.py).
 *
 *   drv_outbox --host H --port P --outbox DIR [--connections K] [--backoff-ms N]
 *              [--progress-sleep-us U] [--busy-client]
 *
 * Flushes DIR with smtpc_outbox_flush_parallel over K clients (their own
 * pools) and checks the progress callback as it goes: calls never overlap,
 * total never changes, done never decreases, the last call has done ==
 * total, and there are total + 1 calls. Prints
 *   outbox sent=.. deferred=.. failed=.. not_due=.. rc=SMTPC_X
 *   progress calls=N threads=T ok=0|1 why=...
 * --progress-sleep-us: the callback sleeps that long (widens any overlap).
 * --shared-pool: the clients share one smtpc_pool of K connections per
 *   endpoint instead of each using its own.
 * --cancel-after-ms N: cancels the first client N ms after the start
 *   (smtpc_client_cancel_async from another thread).
 * --busy-client: first passes the first client twice (prints
 *   busy rc=SMTPC_X sent=N), then flushes as usual (without progress checks). */
#include <smtpc/smtpc.h>

#include "util/util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct prog {
    atomic_int inside;
    size_t calls, last_done, total;
    bool ok;
    const char *why;
    uint64_t sleep_us;
    pthread_t threads[256];
    size_t nthreads;
} prog;

static void on_progress(void *ud, size_t done, size_t total, const smtpc_outbox_stats *st)
{
    prog *p = ud;
    if (atomic_fetch_add(&p->inside, 1) != 0) {
        p->ok = false;
        p->why = "overlap";
    }
    if (p->calls == 0) p->total = total;
    if (total != p->total) {
        p->ok = false;
        p->why = "total changed";
    }
    if (done < p->last_done || done > total) {
        p->ok = false;
        p->why = "done went back";
    }
    if (st->sent + st->deferred + st->failed + st->not_due > 2 * total) {
        p->ok = false;
        p->why = "stats";
    }
    p->last_done = done;
    p->calls++;
    pthread_t self = pthread_self();
    size_t i = 0;
    while (i < p->nthreads && !pthread_equal(p->threads[i], self)) i++;
    if (i == p->nthreads && p->nthreads < 256) p->threads[p->nthreads++] = self;
    if (p->sleep_us) usleep((useconds_t)p->sleep_us);
    atomic_fetch_sub(&p->inside, 1);
}

typedef struct canceler {
    smtpc_client *c;
    uint64_t ms;
} canceler;

static void *cancel_main(void *ud)
{
    canceler *k = ud;
    usleep((useconds_t)(k->ms * 1000));
    smtpc_client_cancel_async(k->c);
    return NULL;
}

static uint64_t num(const char *v)
{
    uint64_t n;
    if (!v || smtpc__parse_u64(v, strlen(v), &n)) {
        fprintf(stderr, "drv_outbox: bad number %s\n", v ? v : "(none)");
        exit(2);
    }
    return n;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *dir = NULL;
    uint64_t port = 0, k = 1, backoff = 60000, cancel_ms = 0;
    bool busy = false, shared = false;
    prog p;
    memset(&p, 0, sizeof p);
    p.ok = true;
    p.why = "-";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--host")) host = v, i++;
        else if (!strcmp(a, "--port")) port = num(v), i++;
        else if (!strcmp(a, "--outbox")) dir = v, i++;
        else if (!strcmp(a, "--connections")) k = num(v), i++;
        else if (!strcmp(a, "--backoff-ms")) backoff = num(v), i++;
        else if (!strcmp(a, "--progress-sleep-us")) p.sleep_us = num(v), i++;
        else if (!strcmp(a, "--cancel-after-ms")) cancel_ms = num(v), i++;
        else if (!strcmp(a, "--busy-client")) busy = true;
        else if (!strcmp(a, "--shared-pool")) shared = true;
        else {
            fprintf(stderr, "drv_outbox: unknown option %s\n", a);
            return 2;
        }
    }
    if (!dir || !port || k < 1 || k > 64) {
        fprintf(stderr, "drv_outbox: --outbox, --port and --connections 1..64 needed\n");
        return 2;
    }
    smtpc_outbox *ob;
    char err[512] = "";
    if (smtpc_outbox_open(&ob, dir, err, sizeof err)) {
        fprintf(stderr, "drv_outbox: %s\n", err);
        return 1;
    }
    smtpc_outbox_set_backoff(ob, (int64_t)backoff, 2.0, 3600000, 0);
    smtpc_outbox_set_progress(ob, on_progress, &p);
    smtpc_client *c[64] = {NULL};
    smtpc_pool *pool = NULL;
    if (shared && (smtpc_pool_new(&pool) || smtpc_pool_set_max_per_endpoint(pool, (unsigned)k))) return 1;
    for (size_t i = 0; i < k; i++) {
        if (smtpc_client_new(&c[i]) || smtpc_client_set_host(c[i], host, (uint16_t)port) ||
            smtpc_client_set_tls_mode(c[i], SMTPC_TLS_MODE_NONE) || (pool && smtpc_client_set_pool(c[i], pool))) {
            fprintf(stderr, "drv_outbox: client setup\n");
            return 1;
        }
    }
    smtpc_outbox_stats st;
    if (busy && k > 1) {
        /* The same client twice: refused before anything is sent, and the
         * clients are left idle (the flush below can use them). */
        smtpc_client *last = c[k - 1];
        c[k - 1] = c[0];
        int brc = smtpc_outbox_flush_parallel(ob, c, (size_t)k, &st);
        c[k - 1] = last;
        printf("busy rc=%s sent=%u\n", smtpc_err_name(brc), st.sent);
        smtpc_outbox_set_progress(ob, NULL, NULL);
    }
    canceler cn = {c[0], cancel_ms};
    pthread_t ct;
    if (cancel_ms && pthread_create(&ct, NULL, cancel_main, &cn)) return 1;
    int rc = smtpc_outbox_flush_parallel(ob, c, (size_t)k, &st);
    if (cancel_ms) pthread_join(ct, NULL);
    printf("outbox sent=%u deferred=%u failed=%u not_due=%u rc=%s\n", st.sent, st.deferred, st.failed, st.not_due,
           smtpc_err_name(rc));
    if (rc) fprintf(stderr, "drv_outbox: %s\n", smtpc_outbox_errmsg(ob));
    if (p.calls && p.last_done != p.total && rc == 0) {
        p.ok = false;
        p.why = "last call done != total";
    }
    if (p.calls && p.calls != p.total + 1 && rc == 0) {
        p.ok = false;
        p.why = "calls != total + 1";
    }
    printf("progress calls=%zu threads=%zu ok=%d why=%s\n", p.calls, p.nthreads, p.ok ? 1 : 0, p.why);
    for (size_t i = 0; i < k; i++) smtpc_client_free(c[i]);
    smtpc_pool_free(pool);
    smtpc_outbox_free(ob);
    return 0;
}
