/* The transport chain wrappers and the one place the blocking drivers wait.
 *
 * Chain rules (for layer authors):
 *   - the wrappers call the OUTERMOST layer; a layer whose read/write/pending/
 *     shutdown op is NULL is transparent and the call goes to its inner layer
 *     (a proxy layer needs no read/write of its own once negotiated);
 *   - smtpc__transport_handshake() completes the handshakes inner-first, so a
 *     layer's handshake op must return 0 again, cheaply, once it is done;
 *   - destroy frees the layer only; smtpc__transport_free() walks the chain.
 * A driver that swaps in a new outer layer mid-session (STARTTLS) just makes
 * the new layer own the old chain as `inner`. */
#include "net/transport.h"

#include <errno.h>
#include <poll.h>
#include <stddef.h>

int smtpc__transport_handshake(smtpc__transport *t, int *want)
{
    if (!t) return SMTPC_EINVAL;
    if (t->inner) {
        int rc = smtpc__transport_handshake(t->inner, want);
        if (rc != 0) {
            if (rc != SMTPC_EAGAIN && t->inner->err.text[0])
                t->err = t->inner->err;
            return rc;
        }
    }
    if (!t->ops->handshake) return 0;
    return t->ops->handshake(t, want);
}

/* The layer that actually implements op `field`, walking inward. */
#define SMTPC__LAYER_WITH(t, field)                                                        \
    do {                                                                                   \
        while ((t) && !(t)->ops->field) (t) = (t)->inner;                                  \
    } while (0)

ssize_t smtpc__transport_read(smtpc__transport *t, void *buf, size_t len, int *want)
{
    smtpc__transport *top = t;
    SMTPC__LAYER_WITH(t, read);
    if (!t) return SMTPC_EINVAL;
    ssize_t n = t->ops->read(t, buf, len, want);
    if (n < 0 && n != SMTPC_EAGAIN && t != top) top->err = t->err;
    return n;
}

ssize_t smtpc__transport_write(smtpc__transport *t, const void *buf, size_t len, int *want)
{
    smtpc__transport *top = t;
    SMTPC__LAYER_WITH(t, write);
    if (!t) return SMTPC_EINVAL;
    ssize_t n = t->ops->write(t, buf, len, want);
    if (n < 0 && n != SMTPC_EAGAIN && t != top) top->err = t->err;
    return n;
}

size_t smtpc__transport_pending(const smtpc__transport *t)
{
    while (t && !t->ops->pending) {
        /* A transparent layer has nothing of its own buffered; a layer with
         * its own read but no pending op buffers nothing either. */
        if (t->ops->read) return 0;
        t = t->inner;
    }
    return t ? t->ops->pending(t) : 0;
}

int smtpc__transport_shutdown(smtpc__transport *t, int *want)
{
    /* Only the outermost layer with a notion of polite close speaks: a TLS
     * close_notify goes over the raw socket, the TCP FIN follows at close. */
    SMTPC__LAYER_WITH(t, shutdown);
    if (!t) return 0;
    return t->ops->shutdown(t, want);
}

void smtpc__transport_free(smtpc__transport *t)
{
    while (t) {
        smtpc__transport *inner = t->inner;
        t->ops->destroy(t);
        t = inner;
    }
}

int smtpc__wait_fd(int fd, int want, int64_t deadline_ms, int cancel_fd)
{
    for (;;) {
        struct pollfd p[2];
        nfds_t n = 0;
        p[n].fd = fd;
        p[n].events = (short)(((want & SMTPC__WANT_READ) ? POLLIN : 0) |
                              ((want & SMTPC__WANT_WRITE) ? POLLOUT : 0));
        p[n].revents = 0;
        n++;
        if (cancel_fd >= 0) {
            p[n].fd = cancel_fd;
            p[n].events = POLLIN;
            p[n].revents = 0;
            n++;
        }
        int timeout = -1;
        if (deadline_ms >= 0) {
            int64_t left = deadline_ms - smtpc__now_ms();
            /* Past the deadline we still look once (timeout 0): data that is
             * already there is not a timeout. */
            if (left < 0) left = 0;
            timeout = left > 0x7fffffff ? 0x7fffffff : (int)left;
        }
        int rc = poll(p, n, timeout);
        if (rc < 0) {
            if (errno == EINTR) continue;
            return SMTPC_ENETWORK;
        }
        /* A cancel wins over readiness: the caller asked to stop. */
        if (n == 2 && p[1].revents) return SMTPC_ECANCELED;
        if (rc > 0 && p[0].revents) return 0; /* ready, or error/hang-up for the I/O call to report */
        if (deadline_ms >= 0 && smtpc__now_ms() >= deadline_ms) return SMTPC_ETIMEDOUT;
    }
}
