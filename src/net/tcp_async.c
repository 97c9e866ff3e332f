/* Non-blocking TCP connect for the async driver: start the connect, let the
 * event loop wait for writability, then check SO_ERROR. Name resolution is
 * not here (the async driver resolves in a thread); this takes an address.
 * The connected socket is wrapped in tcp.c's layer (smtpc__tcp_wrap_fd). */
#include "net/tcp_async.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int smtpc__tcp_connect_start(smtpc__transport **out, const struct sockaddr *sa, socklen_t salen,
                             const smtpc__tcp_opts *opts, bool *in_progress, smtpc__errmsg *err)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0) return smtpc__err(err, SMTPC_ENETWORK, "socket: %s", strerror(errno));
    if (opts && (opts->bind_addr || opts->bind_port)) {
        int be = 0;
        const char *gm = NULL;
        if (smtpc__tcp_bind_local(fd, sa->sa_family, opts->bind_addr, opts->bind_port, &be, &gm) < 0) {
            close(fd);
            return smtpc__err(err, SMTPC_ENETWORK, "cannot bind to %s port %u: %s",
                              opts->bind_addr ? opts->bind_addr : "*", (unsigned)opts->bind_port,
                              gm ? gm : strerror(be));
        }
    }
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
    smtpc__transport *t = smtpc__tcp_wrap_fd(fd);
    if (!t) {
        close(fd);
        return smtpc__err(err, SMTPC_ENOMEM, "connect: out of memory");
    }
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
