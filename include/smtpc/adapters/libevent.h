/* Header-only adapter: drive an smtpc_bulk from a libevent event_base.
 *
 *   smtpc_event a;
 *   smtpc_event_attach(&a, base, bulk);   // before smtpc_bulk_start
 *   smtpc_bulk_start(bulk);
 *   event_base_dispatch(base);            // returns when the bulk is done
 *   smtpc_event_detach(&a);
 *
 * libsmtpc does not link libevent: only the program including this does. */
#ifndef SMTPC_ADAPTERS_LIBEVENT_H
#define SMTPC_ADAPTERS_LIBEVENT_H

#include <smtpc/async.h>

#include <event2/event.h>
#include <stdlib.h>

typedef struct smtpc_event {
    struct event_base *base;
    smtpc_bulk *b;
    struct event *timer;
    struct event **evs; /* by fd */
    size_t nevs;
} smtpc_event;

static void smtpc_event__io(evutil_socket_t fd, short what, void *ud)
{
    smtpc_event *a = (smtpc_event *)ud;
    int ev = ((what & EV_READ) ? SMTPC_POLL_IN : 0) | ((what & EV_WRITE) ? SMTPC_POLL_OUT : 0);
    smtpc_bulk_socket_action(a->b, (int)fd, ev);
}

static void smtpc_event__socket_cb(void *ud, int fd, int what)
{
    smtpc_event *a = (smtpc_event *)ud;
    if ((size_t)fd >= a->nevs) {
        size_t n = a->nevs ? a->nevs : 64;
        while (n <= (size_t)fd) n *= 2;
        struct event **ne = (struct event **)realloc(a->evs, n * sizeof *ne);
        if (!ne) return;
        for (size_t i = a->nevs; i < n; i++) ne[i] = NULL;
        a->evs = ne;
        a->nevs = n;
    }
    if (a->evs[fd]) {
        event_free(a->evs[fd]);
        a->evs[fd] = NULL;
    }
    if (what & SMTPC_POLL_REMOVE) return;
    short ev = (short)(EV_PERSIST | ((what & SMTPC_POLL_IN) ? EV_READ : 0) |
                       ((what & SMTPC_POLL_OUT) ? EV_WRITE : 0));
    a->evs[fd] = event_new(a->base, fd, ev, smtpc_event__io, a);
    if (a->evs[fd]) event_add(a->evs[fd], NULL);
}

static void smtpc_event__timer_fired(evutil_socket_t fd, short what, void *ud)
{
    (void)fd;
    (void)what;
    smtpc_bulk_socket_action(((smtpc_event *)ud)->b, SMTPC_SOCKET_TIMEOUT, 0);
}

static void smtpc_event__timer_cb(void *ud, int64_t ms)
{
    smtpc_event *a = (smtpc_event *)ud;
    if (ms < 0) {
        evtimer_del(a->timer);
        return;
    }
    struct timeval tv;
    tv.tv_sec = (time_t)(ms / 1000);
    tv.tv_usec = (suseconds_t)((ms % 1000) * 1000);
    evtimer_add(a->timer, &tv);
}

static inline int smtpc_event_attach(smtpc_event *a, struct event_base *base, smtpc_bulk *b)
{
    a->base = base;
    a->b = b;
    a->evs = NULL;
    a->nevs = 0;
    a->timer = evtimer_new(base, smtpc_event__timer_fired, a);
    if (!a->timer) return SMTPC_ENOMEM;
    int rc = smtpc_bulk_set_socket_cb(b, smtpc_event__socket_cb, a);
    if (!rc) rc = smtpc_bulk_set_timer_cb(b, smtpc_event__timer_cb, a);
    return rc;
}

static inline void smtpc_event_detach(smtpc_event *a)
{
    for (size_t i = 0; i < a->nevs; i++)
        if (a->evs[i]) event_free(a->evs[i]);
    free(a->evs);
    a->evs = NULL;
    a->nevs = 0;
    if (a->timer) event_free(a->timer);
    a->timer = NULL;
}

#endif
