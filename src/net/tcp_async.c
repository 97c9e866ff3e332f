/* Non-blocking TCP connect for the async driver: start the connect, let the
 * event loop wait for writability, then check SO_ERROR. Name resolution is
 * not here (the async driver resolves in a thread); this takes an address.
 * The layer's read/write are the same as tcp.c's (kept separate so that
 * tcp.c can change for Happy Eyeballs without touching this file). */
#include "net/tcp_async.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static ssize_t atcp_read(smtpc__transport *t, void *buf, size_t len, int *want)
{
    for (;;) {
        ssize_t n = recv(t->fd, buf, len, 0);
        if (n >= 0) return n;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (want) *want = SMTPC__WANT_READ;
            return SMTPC_EAGAIN;
        }
        return smtpc__err(&t->err, SMTPC_ENETWORK, "read: %s", strerror(errno));
    }
}

static ssize_t atcp_write(smtpc__transport *t, const void *buf, size_t len, int *want)
{
    for (;;) {
        ssize_t n = send(t->fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0) return n;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (want) *want = SMTPC__WANT_WRITE;
            return SMTPC_EAGAIN;
        }
        return smtpc__err(&t->err, SMTPC_ENETWORK, "write: %s", strerror(errno));
    }
}

static void atcp_destroy(smtpc__transport *t)
{
    if (t->fd >= 0) close(t->fd);
    free(t);
}

static const smtpc__transport_ops atcp_ops = {
    .name = "tcp",
    .read = atcp_read,
    .write = atcp_write,
    .destroy = atcp_destroy,
};

int smtpc__tcp_connect_start(smtpc__transport **out, const struct sockaddr *sa, socklen_t salen,
                             bool *in_progress, smtpc__errmsg *err)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0) return smtpc__err(err, SMTPC_ENETWORK, "socket: %s", strerror(errno));
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int c;
    do c = connect(fd, sa, salen);
    while (c < 0 && errno == EINTR);
    if (c < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        return smtpc__err(err, SMTPC_ENETWORK, "connect: %s", strerror(e));
    }
    smtpc__transport *t = calloc(1, sizeof *t);
    if (!t) {
        close(fd);
        return smtpc__err(err, SMTPC_ENOMEM, "connect: out of memory");
    }
    t->ops = &atcp_ops;
    t->fd = fd;
    *in_progress = c < 0;
    *out = t;
    return 0;
}

int smtpc__tcp_connect_finish(smtpc__transport *t, smtpc__errmsg *err)
{
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) soerr = errno;
    if (soerr) return smtpc__err(err, SMTPC_ENETWORK, "connect: %s", strerror(soerr));
    return 0;
}
