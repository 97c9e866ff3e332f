/* smtpc_bulk: the built-in loop (epoll, or poll() where epoll is not
 * available), the application's loop entry points, timers and cancel. */
#define _GNU_SOURCE
#include "async/bulk_int.h"
#include "async/sign_pool.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

void smtpc__bulk_reap(smtpc_bulk *b)
{
    while (b->graveyard) {
        smtpc__bulk_conn *c = b->graveyard;
        b->graveyard = c->next_dead;
        smtpc__bulk_conn_free(c);
    }
}

void smtpc__bulk_fire_timers(smtpc_bulk *b)
{
    smtpc__timer *t;
    while ((t = smtpc__theap_top(&b->heap)) && t->key <= b->now) {
        smtpc__bulk_conn *c = (smtpc__bulk_conn *)((char *)t - offsetof(smtpc__bulk_conn, tm));
        if (c->deadline > b->now) {
            if (c->deadline == INT64_MAX)
                smtpc__theap_remove(&b->heap, t);
            else
                (void)smtpc__theap_set(&b->heap, t, c->deadline);
            continue;
        }
        smtpc__bulk_conn_timeout(c);
    }
    if (b->overall_deadline && b->now >= b->overall_deadline && !b->canceling) {
        b->stop_rc = SMTPC_ETIMEDOUT;
        atomic_store(&b->cancel_req, true);
    }
    if (b->rate_wake && b->now >= b->rate_wake) {
        b->rate_wake = 0;
        for (size_t i = b->nconns; i-- > 0;)
            if (b->conns[i]->phase == P_READY) smtpc__bulk_conn_kick(b->conns[i]);
    }
}

SMTPC_API int64_t smtpc_bulk_timeout_ms(smtpc_bulk *b)
{
    if (!b) return -1;
    int64_t when = INT64_MAX;
    smtpc__timer *t = smtpc__theap_top(&b->heap);
    if (t) when = t->key;
    if (b->rate_wake && b->rate_wake < when) when = b->rate_wake;
    if (b->overall_deadline && b->overall_deadline < when) when = b->overall_deadline;
    if (when == INT64_MAX) return -1;
    int64_t now = smtpc__now_ms();
    return when <= now ? 0 : when - now;
}

void smtpc__bulk_after_action(smtpc_bulk *b)
{
    smtpc__bulk_process_cancel(b);
    smtpc__bulk_cancel_followup(b);
    smtpc__bulk_maybe_open(b);
    if (b->gave_up) {
        /* Nothing is left to send: a connection still coming up (its
         * greeting may never come) would only hold the run open until its
         * timeout. Ready ones QUIT below. */
        for (size_t i = b->nconns; i-- > 0;)
            if (b->conns[i]->phase < P_READY) smtpc__bulk_conn_kill(b->conns[i], 0, "nothing left to send");
    }
    if (b->src_done && !b->canceling && !b->retry_head && b->outstanding == 0 && !b->hold_idle) {
        /* idle connections QUIT */
        for (size_t i = b->nconns; i-- > 0;)
            if (smtpc__bulk_conn_idle(b->conns[i])) smtpc__bulk_conn_kick(b->conns[i]);
    }
    smtpc__bulk_reap(b);
    if (b->timer_cb) {
        int64_t ms = smtpc_bulk_timeout_ms(b);
        int64_t when = ms < 0 ? -1 : b->now + ms;
        if (when != b->timer_armed) {
            b->timer_armed = when;
            b->timer_cb(b->timer_ud, ms);
        }
    }
}

SMTPC_API int smtpc_bulk_socket_action(smtpc_bulk *b, int fd, int events)
{
    if (!b) return SMTPC_EINVAL;
    smtpc__bulk_now_update(b);
    if (fd == SMTPC_SOCKET_TIMEOUT) {
        b->timer_armed = -2;
        smtpc__bulk_fire_timers(b);
    } else if (b->resolving && fd == b->resolve_pipe[0]) {
        smtpc__bulk_resolved(b);
    } else if (b->sp && fd == smtpc__sign_pool_fd(b)) {
        smtpc__sign_pool_wake(b);
    } else if (fd >= 0 && (size_t)fd < b->byfd_cap && b->byfd[fd]) {
        smtpc__bulk_conn_io(b->byfd[fd], events);
    }
    smtpc__bulk_after_action(b);
    return 0;
}

SMTPC_API bool smtpc_bulk_done(const smtpc_bulk *b)
{
    if (!b) return true;
    if (!b->started) return false;
    if (b->resolving) return false;
    return b->nconns == 0 && b->outstanding == 0 && !b->retry_head &&
           (b->src_done || b->canceling);
}

/* ---- built-in loop ------------------------------------------------------ */
static void ep_sock_cb(void *ud, int fd, int what)
{
    smtpc_bulk *b = ud;
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.data.fd = fd;
    if (what & SMTPC_POLL_REMOVE) {
        (void)epoll_ctl(b->epfd, EPOLL_CTL_DEL, fd, &ev);
        return;
    }
    ev.events = (what & SMTPC_POLL_IN ? EPOLLIN : 0u) | (what & SMTPC_POLL_OUT ? EPOLLOUT : 0u);
    if (epoll_ctl(b->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 && errno == ENOENT)
        (void)epoll_ctl(b->epfd, EPOLL_CTL_ADD, fd, &ev);
}

/* poll(): an array of the watched fds and an fd -> index map; removal
 * swaps the last entry in. O(watched fds) per wait: a fallback for systems
 * without epoll (or when asked for), not the fast path. */
static int pl_watch(smtpc_bulk *b, int fd, short events)
{
    if ((size_t)fd >= b->pidx_cap) {
        size_t nc = b->pidx_cap ? b->pidx_cap : 64;
        while (nc <= (size_t)fd) nc *= 2;
        int *ni = realloc(b->pidx, nc * sizeof *ni);
        if (!ni) return SMTPC_ENOMEM;
        for (size_t i = b->pidx_cap; i < nc; i++) ni[i] = -1;
        b->pidx = ni;
        b->pidx_cap = nc;
    }
    int i = b->pidx[fd];
    if (i >= 0) {
        b->pfds[i].events = events;
        return 0;
    }
    if (b->npfds == b->pfds_cap) {
        size_t nc = b->pfds_cap ? b->pfds_cap * 2 : 64;
        struct pollfd *np = realloc(b->pfds, nc * sizeof *np);
        if (!np) return SMTPC_ENOMEM;
        b->pfds = np;
        struct pollfd *nr = realloc(b->pready, nc * sizeof *nr);
        if (!nr) return SMTPC_ENOMEM;
        b->pready = nr;
        b->pfds_cap = nc;
    }
    b->pfds[b->npfds] = (struct pollfd){.fd = fd, .events = events, .revents = 0};
    b->pidx[fd] = (int)b->npfds++;
    return 0;
}

static void pl_sock_cb(void *ud, int fd, int what)
{
    smtpc_bulk *b = ud;
    if (fd < 0) return;
    if (what & SMTPC_POLL_REMOVE) {
        if ((size_t)fd >= b->pidx_cap || b->pidx[fd] < 0) return;
        size_t i = (size_t)b->pidx[fd];
        b->pidx[fd] = -1;
        if (i != --b->npfds) {
            b->pfds[i] = b->pfds[b->npfds];
            b->pidx[b->pfds[i].fd] = (int)i;
        }
        return;
    }
    short ev = (short)((what & SMTPC_POLL_IN ? POLLIN : 0) | (what & SMTPC_POLL_OUT ? POLLOUT : 0));
    if (pl_watch(b, fd, ev)) b->pl_oom = true; /* ends the run: that fd would never be served */
}

static void dispatch(smtpc_bulk *b, int fd, bool in, bool out, bool err)
{
    if (fd == b->cancel_fd) {
        uint64_t v;
        if (read(b->cancel_fd, &v, sizeof v) < 0) { /* drained */ }
        return;
    }
    int e = (in || err ? SMTPC_POLL_IN : 0) | (out || err ? SMTPC_POLL_OUT : 0);
    if (b->resolving && fd == b->resolve_pipe[0])
        smtpc__bulk_resolved(b);
    else if (b->sp && fd == smtpc__sign_pool_fd(b))
        smtpc__sign_pool_wake(b);
    else if ((size_t)fd < b->byfd_cap && b->byfd[fd])
        smtpc__bulk_conn_io(b->byfd[fd], e);
}

static int wait_ms(smtpc_bulk *b)
{
    int64_t to = smtpc_bulk_timeout_ms(b);
    return to < 0 ? -1 : to > 1000000 ? 1000000 : (int)to;
}

static int run_epoll(smtpc_bulk *b)
{
    b->sock_cb = ep_sock_cb;
    b->sock_ud = b;
    struct epoll_event cev;
    memset(&cev, 0, sizeof cev);
    cev.events = EPOLLIN;
    cev.data.fd = b->cancel_fd;
    (void)epoll_ctl(b->epfd, EPOLL_CTL_ADD, b->cancel_fd, &cev);
    int rc = smtpc_bulk_start(b);
    struct epoll_event evs[256];
    while (!rc && !smtpc_bulk_done(b)) {
        int n = epoll_wait(b->epfd, evs, 256, wait_ms(b));
        if (n < 0) {
            if (errno == EINTR) continue;
            rc = smtpc__err(&b->err, SMTPC_ENETWORK, "epoll_wait: %s", strerror(errno));
            break;
        }
        smtpc__bulk_now_update(b);
        for (int i = 0; i < n; i++) {
            uint32_t ev = evs[i].events;
            dispatch(b, evs[i].data.fd, ev & EPOLLIN, ev & EPOLLOUT, ev & (EPOLLHUP | EPOLLERR));
        }
        smtpc__bulk_fire_timers(b);
        smtpc__bulk_after_action(b);
    }
    (void)epoll_ctl(b->epfd, EPOLL_CTL_DEL, b->cancel_fd, &cev);
    close(b->epfd);
    b->epfd = -1;
    return rc;
}

static int run_poll(smtpc_bulk *b)
{
    b->sock_cb = pl_sock_cb;
    b->sock_ud = b;
    b->pl_oom = false;
    int rc = pl_watch(b, b->cancel_fd, POLLIN);
    if (!rc) rc = smtpc_bulk_start(b);
    while (!rc && !smtpc_bulk_done(b)) {
        if (b->pl_oom) {
            rc = smtpc__err(&b->err, SMTPC_ENOMEM, "poll: out of memory");
            break;
        }
        int n = poll(b->pfds, (nfds_t)b->npfds, wait_ms(b));
        if (n < 0) {
            if (errno == EINTR) continue;
            rc = smtpc__err(&b->err, SMTPC_ENETWORK, "poll: %s", strerror(errno));
            break;
        }
        smtpc__bulk_now_update(b);
        /* handling an fd adds and removes entries: work on a copy */
        size_t k = 0;
        for (size_t i = 0; i < b->npfds && (int)k < n; i++)
            if (b->pfds[i].revents) b->pready[k++] = b->pfds[i];
        for (size_t i = 0; i < k; i++) {
            short ev = b->pready[i].revents;
            dispatch(b, b->pready[i].fd, ev & POLLIN, ev & POLLOUT, ev & (POLLHUP | POLLERR | POLLNVAL));
        }
        smtpc__bulk_fire_timers(b);
        smtpc__bulk_after_action(b);
    }
    b->npfds = 0;
    for (size_t i = 0; i < b->pidx_cap; i++) b->pidx[i] = -1;
    return rc;
}

SMTPC_API int smtpc_bulk_run(smtpc_bulk *b)
{
    if (!b) return SMTPC_EINVAL;
    if (b->sock_cb) return smtpc__err(&b->err, SMTPC_ESTATE, "run: an external loop is set");
    int rc;
    b->epfd = -1;
    if (b->loop_mode != SMTPC_BULK_LOOP_POLL) {
        b->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (b->epfd < 0 && b->loop_mode == SMTPC_BULK_LOOP_EPOLL)
            return smtpc__err(&b->err, SMTPC_EUNSUPPORTED, "epoll: %s", strerror(errno));
    }
    b->loop_used = b->epfd >= 0 ? SMTPC_BULK_LOOP_EPOLL : SMTPC_BULK_LOOP_POLL;
    rc = b->epfd >= 0 ? run_epoll(b) : run_poll(b);
    b->sock_cb = NULL;
    if (rc) return rc;
    return b->stop_rc;
}

SMTPC_API int smtpc_bulk_set_loop(smtpc_bulk *b, int loop)
{
    if (!b || b->started || loop < SMTPC_BULK_LOOP_AUTO || loop > SMTPC_BULK_LOOP_POLL)
        return SMTPC_EINVAL;
    b->loop_mode = loop;
    return 0;
}

SMTPC_API int smtpc_bulk_loop_used(const smtpc_bulk *b) { return b ? b->loop_used : 0; }

SMTPC_API void smtpc_bulk_cancel(smtpc_bulk *b)
{
    if (!b) return;
    atomic_store(&b->cancel_req, true);
    uint64_t one = 1;
    if (b->cancel_fd >= 0 && write(b->cancel_fd, &one, sizeof one) < 0) { /* best effort */ }
}

