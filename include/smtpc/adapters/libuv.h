/* Header-only adapter: drive an smtpc_bulk from a libuv loop.
 *
 *   smtpc_uv a;
 *   smtpc_uv_attach(&a, uv_default_loop(), bulk);   // before smtpc_bulk_start
 *   smtpc_bulk_start(bulk);
 *   uv_run(loop, UV_RUN_DEFAULT);                   // returns when the bulk is done
 *   smtpc_uv_detach(&a);                            // then uv_run once more to close
 *
 * libsmtpc does not link libuv: only the program including this does. */
#ifndef SMTPC_ADAPTERS_LIBUV_H
#define SMTPC_ADAPTERS_LIBUV_H

#include <smtpc/async.h>

#include <stdlib.h>
#include <uv.h>

typedef struct smtpc_uv {
    uv_loop_t *loop;
    smtpc_bulk *b;
    uv_timer_t timer;
    uv_poll_t **polls; /* by fd */
    size_t npolls;
} smtpc_uv;

static void smtpc_uv__close_cb(uv_handle_t *h) { free(h); }

static void smtpc_uv__poll_cb(uv_poll_t *p, int status, int events)
{
    smtpc_uv *a = (smtpc_uv *)p->data;
    int fd = -1;
    uv_fileno((uv_handle_t *)p, &fd);
    int ev = status < 0 ? (SMTPC_POLL_IN | SMTPC_POLL_OUT)
                        : ((events & UV_READABLE) ? SMTPC_POLL_IN : 0) |
                              ((events & UV_WRITABLE) ? SMTPC_POLL_OUT : 0);
    smtpc_bulk_socket_action(a->b, fd, ev);
}

static void smtpc_uv__socket_cb(void *ud, int fd, int what)
{
    smtpc_uv *a = (smtpc_uv *)ud;
    if ((size_t)fd >= a->npolls) {
        size_t n = a->npolls ? a->npolls : 64;
        while (n <= (size_t)fd) n *= 2;
        uv_poll_t **np = (uv_poll_t **)realloc(a->polls, n * sizeof *np);
        if (!np) return;
        for (size_t i = a->npolls; i < n; i++) np[i] = NULL;
        a->polls = np;
        a->npolls = n;
    }
    uv_poll_t *p = a->polls[fd];
    if (what & SMTPC_POLL_REMOVE) {
        if (p) {
            uv_poll_stop(p);
            uv_close((uv_handle_t *)p, smtpc_uv__close_cb);
            a->polls[fd] = NULL;
        }
        return;
    }
    if (!p) {
        p = (uv_poll_t *)malloc(sizeof *p);
        if (!p || uv_poll_init(a->loop, p, fd) != 0) {
            free(p);
            return;
        }
        p->data = a;
        a->polls[fd] = p;
    }
    int ev = ((what & SMTPC_POLL_IN) ? UV_READABLE : 0) | ((what & SMTPC_POLL_OUT) ? UV_WRITABLE : 0);
    uv_poll_start(p, ev, smtpc_uv__poll_cb);
}

static void smtpc_uv__timer_fired(uv_timer_t *t)
{
    smtpc_uv *a = (smtpc_uv *)t->data;
    smtpc_bulk_socket_action(a->b, SMTPC_SOCKET_TIMEOUT, 0);
}

static void smtpc_uv__timer_cb(void *ud, int64_t ms)
{
    smtpc_uv *a = (smtpc_uv *)ud;
    if (ms < 0)
        uv_timer_stop(&a->timer);
    else
        uv_timer_start(&a->timer, smtpc_uv__timer_fired, (uint64_t)ms, 0);
}

static inline int smtpc_uv_attach(smtpc_uv *a, uv_loop_t *loop, smtpc_bulk *b)
{
    a->loop = loop;
    a->b = b;
    a->polls = NULL;
    a->npolls = 0;
    if (uv_timer_init(loop, &a->timer) != 0) return SMTPC_ENOMEM;
    a->timer.data = a;
    int rc = smtpc_bulk_set_socket_cb(b, smtpc_uv__socket_cb, a);
    if (!rc) rc = smtpc_bulk_set_timer_cb(b, smtpc_uv__timer_cb, a);
    return rc;
}

/* Call after the bulk is done (or freed); run the loop once more to finish closing. */
static inline void smtpc_uv_detach(smtpc_uv *a)
{
    for (size_t i = 0; i < a->npolls; i++)
        if (a->polls[i]) {
            uv_poll_stop(a->polls[i]);
            uv_close((uv_handle_t *)a->polls[i], smtpc_uv__close_cb);
        }
    free(a->polls);
    a->polls = NULL;
    a->npolls = 0;
    uv_close((uv_handle_t *)&a->timer, NULL);
}

#endif
