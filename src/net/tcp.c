/* The bottom of the transport chain: a non-blocking TCP socket.
 *
 * Connect tries every address getaddrinfo returns, in order (RFC 6724 sorted
 * by the resolver), each with a fair share of the time left so that one
 * black-holed address cannot eat the whole connect deadline. Name resolution
 * itself is getaddrinfo's and blocking: it is neither time-limited nor
 * cancellable (documented in session.h). */
#include "net/transport.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct tcp_layer {
    smtpc__transport base;
} tcp_layer;

static ssize_t tcp_read(smtpc__transport *t, void *buf, size_t len, int *want)
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

static ssize_t tcp_write(smtpc__transport *t, const void *buf, size_t len, int *want)
{
    for (;;) {
        /* MSG_NOSIGNAL: a peer that closed must give EPIPE, never SIGPIPE. */
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

static void tcp_destroy(smtpc__transport *t)
{
    if (t->fd >= 0) close(t->fd);
    free(t);
}

static const smtpc__transport_ops tcp_ops = {
    .name = "tcp",
    .handshake = NULL,
    .read = tcp_read,
    .write = tcp_write,
    .pending = NULL,
    .shutdown = NULL,
    .destroy = tcp_destroy,
};

/* "host:port", or "[v6]:port" when host contains a colon. */
static void hostport(char *dst, size_t n, const char *host, uint16_t port)
{
    if (strchr(host, ':'))
        snprintf(dst, n, "[%s]:%u", host, (unsigned)port);
    else
        snprintf(dst, n, "%s:%u", host, (unsigned)port);
}

static int bind_local(int fd, int family, const char *addr, uint16_t port, int *err_no,
                      const char **gai_msg)
{
    struct addrinfo hints, *res = NULL;
    char portstr[8];
    memset(&hints, 0, sizeof hints);
    hints.ai_family = family;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(portstr, sizeof portstr, "%u", (unsigned)port);
    int g = getaddrinfo(addr, portstr, &hints, &res);
    if (g != 0) {
        *gai_msg = gai_strerror(g);
        return -1;
    }
    int rc = bind(fd, res->ai_addr, res->ai_addrlen);
    if (rc < 0) *err_no = errno;
    freeaddrinfo(res);
    return rc;
}

int smtpc__tcp_connect(smtpc__transport **out, const char *host, uint16_t port,
                       const smtpc__tcp_opts *opts, smtpc__errmsg *err)
{
    static const smtpc__tcp_opts defaults = {NULL, 0, AF_UNSPEC, -1, -1};
    char hp[300];
    if (!out || !host || !*host) return smtpc__err(err, SMTPC_EINVAL, "connect: no host");
    if (!opts) opts = &defaults;
    if (smtpc__has_ctl(host)) return smtpc__err(err, SMTPC_EINVAL, "connect: invalid host name");
    hostport(hp, sizeof hp, host, port);

    struct addrinfo hints, *res = NULL;
    char portstr[8];
    memset(&hints, 0, sizeof hints);
    hints.ai_family = opts->family;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(portstr, sizeof portstr, "%u", (unsigned)port);
    int g = getaddrinfo(host, portstr, &hints, &res);
    if (g != 0) {
        if (g == EAI_SYSTEM)
            return smtpc__err(err, SMTPC_ENOHOST, "cannot resolve %s: %s", host, strerror(errno));
        if (g == EAI_MEMORY) return smtpc__err(err, SMTPC_ENOMEM, "cannot resolve %s: out of memory", host);
        return smtpc__err(err, SMTPC_ENOHOST, "cannot resolve %s: %s", host, gai_strerror(g));
    }

    size_t naddr = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) naddr++;

    int last_errno = ECONNREFUSED, rc = SMTPC_ENETWORK;
    const char *bind_msg = NULL;
    int bind_errno = 0;
    size_t i = 0, attempted = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next, i++) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        ai->ai_protocol);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        if (opts->bind_addr || opts->bind_port) {
            if (bind_local(fd, ai->ai_family, opts->bind_addr, opts->bind_port, &bind_errno,
                           &bind_msg) < 0) {
                close(fd);
                continue;
            }
        }
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

        /* This address's share of the time left; the last one gets it all. */
        int64_t dl = opts->deadline_ms;
        if (dl >= 0) {
            int64_t left = dl - smtpc__now_ms();
            if (left < 0) left = 0;
            size_t rest = naddr - i;
            if (rest > 1) dl = smtpc__now_ms() + left / (int64_t)rest;
        }
        int c;
        attempted++;
        do c = connect(fd, ai->ai_addr, ai->ai_addrlen);
        while (c < 0 && errno == EINTR);
        if (c < 0 && errno != EINPROGRESS) {
            last_errno = errno;
            close(fd);
            continue;
        }
        if (c < 0) {
            int w = smtpc__wait_fd(fd, SMTPC__WANT_WRITE, dl, opts->cancel_fd);
            if (w == SMTPC_ECANCELED) {
                close(fd);
                freeaddrinfo(res);
                return smtpc__err(err, SMTPC_ECANCELED, "connect to %s: canceled", hp);
            }
            if (w == SMTPC_ETIMEDOUT) {
                last_errno = ETIMEDOUT;
                close(fd);
                continue;
            }
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (w != 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) soerr = errno;
            if (soerr != 0) {
                last_errno = soerr;
                close(fd);
                continue;
            }
        }
        tcp_layer *l = calloc(1, sizeof *l);
        if (!l) {
            close(fd);
            freeaddrinfo(res);
            return smtpc__err(err, SMTPC_ENOMEM, "connect to %s: out of memory", hp);
        }
        l->base.ops = &tcp_ops;
        l->base.inner = NULL;
        l->base.fd = fd;
        freeaddrinfo(res);
        *out = &l->base;
        return 0;
    }
    freeaddrinfo(res);
    if (!attempted && (bind_msg || bind_errno)) {
        return smtpc__err(err, SMTPC_ENETWORK, "connect to %s: cannot bind to %s: %s", hp,
                          opts->bind_addr ? opts->bind_addr : "*",
                          bind_msg ? bind_msg : strerror(bind_errno));
    }
    rc = last_errno == ETIMEDOUT ? SMTPC_ETIMEDOUT : SMTPC_ENETWORK;
    return smtpc__err(err, rc, "connect to %s: %s", hp, strerror(last_errno));
}
