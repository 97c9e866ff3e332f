/* The TCP transport and smtpc__wait_fd, against real loopback sockets. */
#include "net/transport.h"
#include "t.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

/* A listening socket on a free loopback port (family AF_INET or AF_INET6);
 * -1 when the family is unavailable. */
static int listener(int family, int backlog, uint16_t *port)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof ss);
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sl = sizeof *a;
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        sl = sizeof *a;
    }
    if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, backlog) < 0) {
        close(fd);
        return -1;
    }
    sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                    : ((struct sockaddr_in6 *)&ss)->sin6_port);
    return fd;
}

static smtpc__tcp_opts opts_dl(int64_t ms)
{
    smtpc__tcp_opts o = {NULL, 0, AF_UNSPEC, smtpc__now_ms() + ms, -1};
    return o;
}

TEST(connect_ok_sets_socket_options)
{
    uint16_t port;
    int lfd = listener(AF_INET, 8, &port);
    CHECK(lfd >= 0);
    smtpc__transport *t = NULL;
    smtpc__errmsg err = {{0}};
    smtpc__tcp_opts o = opts_dl(5000);
    CHECK_INT(smtpc__tcp_connect(&t, "127.0.0.1", port, &o, &err), 0);
    if (!t) return;
    CHECK(fcntl(t->fd, F_GETFL) & O_NONBLOCK);
    CHECK(fcntl(t->fd, F_GETFD) & FD_CLOEXEC);
    int nd = 0;
    socklen_t sl = sizeof nd;
    getsockopt(t->fd, IPPROTO_TCP, TCP_NODELAY, &nd, &sl);
    CHECK(nd != 0);
    CHECK_STR(t->ops->name, "tcp");

    int cfd = accept(lfd, NULL, NULL);
    CHECK(cfd >= 0);
    /* Non-blocking read with nothing there: EAGAIN wanting read. */
    char buf[16];
    int want = 0;
    CHECK_INT(smtpc__transport_read(t, buf, sizeof buf, &want), SMTPC_EAGAIN);
    CHECK_INT(want, SMTPC__WANT_READ);
    CHECK_INT(smtpc__transport_write(t, "hi", 2, &want), 2);
    CHECK_INT(read(cfd, buf, sizeof buf), 2);
    CHECK_INT(write(cfd, "yo", 2), 2);
    CHECK_INT(smtpc__wait_fd(t->fd, SMTPC__WANT_READ, smtpc__now_ms() + 5000, -1), 0);
    CHECK_INT(smtpc__transport_read(t, buf, sizeof buf, &want), 2);
    CHECK_INT(smtpc__transport_pending(t), 0);
    close(cfd);
    /* Orderly close by the peer reads as 0. */
    CHECK_INT(smtpc__wait_fd(t->fd, SMTPC__WANT_READ, smtpc__now_ms() + 5000, -1), 0);
    CHECK_INT(smtpc__transport_read(t, buf, sizeof buf, &want), 0);
    smtpc__transport_free(t);
    close(lfd);
}

TEST(connect_ipv6_loopback)
{
    uint16_t port;
    int lfd = listener(AF_INET6, 8, &port);
    if (lfd < 0) {
        fprintf(stderr, "skip: no IPv6 loopback\n");
        return;
    }
    smtpc__transport *t = NULL;
    smtpc__errmsg err = {{0}};
    smtpc__tcp_opts o = opts_dl(5000);
    CHECK_INT(smtpc__tcp_connect(&t, "::1", port, &o, &err), 0);
    smtpc__transport_free(t);
    close(lfd);
}

TEST(connect_refused_message)
{
    uint16_t port;
    int lfd = listener(AF_INET, 1, &port);
    close(lfd); /* nobody listens there now */
    smtpc__transport *t = (smtpc__transport *)&t; /* must stay untouched */
    smtpc__transport *sentinel = t;
    smtpc__errmsg err = {{0}};
    smtpc__tcp_opts o = opts_dl(5000);
    CHECK_INT(smtpc__tcp_connect(&t, "127.0.0.1", port, &o, &err), SMTPC_ENETWORK);
    CHECK(t == sentinel);
    char want[128];
    snprintf(want, sizeof want, "connect to 127.0.0.1:%u: Connection refused", (unsigned)port);
    CHECK_STR(err.text, want);
    snprintf(want, sizeof want, "connect to [::1]:%u: ", (unsigned)port);
    if (smtpc__tcp_connect(&t, "::1", port, &o, &err) != 0)
        CHECK(strncmp(err.text, want, strlen(want)) == 0);
}

TEST(unresolvable_host)
{
    smtpc__transport *t = NULL;
    smtpc__errmsg err = {{0}};
    smtpc__tcp_opts o = opts_dl(5000);
    CHECK_INT(smtpc__tcp_connect(&t, "no-such-host.invalid", 25, &o, &err), SMTPC_ENOHOST);
    CHECK(strncmp(err.text, "cannot resolve no-such-host.invalid: ", 37) == 0);
    CHECK(t == NULL);
    CHECK_INT(smtpc__tcp_connect(&t, "bad\r\nhost", 25, &o, &err), SMTPC_EINVAL);
}

TEST(bind_local_address)
{
    uint16_t port;
    int lfd = listener(AF_INET, 8, &port);
    smtpc__transport *t = NULL;
    smtpc__errmsg err = {{0}};
    smtpc__tcp_opts o = opts_dl(5000);
    o.bind_addr = "127.0.0.1";
    CHECK_INT(smtpc__tcp_connect(&t, "127.0.0.1", port, &o, &err), 0);
    if (t) {
        struct sockaddr_in a;
        socklen_t sl = sizeof a;
        getsockname(t->fd, (struct sockaddr *)&a, &sl);
        CHECK(a.sin_addr.s_addr == htonl(INADDR_LOOPBACK));
        smtpc__transport_free(t);
        t = NULL;
    }
    /* A local address the host does not have cannot be bound. */
    o.bind_addr = "192.0.2.1";
    CHECK_INT(smtpc__tcp_connect(&t, "127.0.0.1", port, &o, &err), SMTPC_ENETWORK);
    CHECK(strstr(err.text, "cannot bind to 192.0.2.1") != NULL);
    close(lfd);
}

/* Fills lfd's accept queue (listen backlog 0, never accepted) until a new
 * connect stays pending: further connects to it then hang in SYN-SENT.
 * Returns 1 when that state was reached; fds[] gets the filler sockets. */
static int fill_backlog(uint16_t port, int *fds, int nfds)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    for (int i = 0; i < nfds; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        connect(fds[i], (struct sockaddr *)&a, sizeof a);
        if (smtpc__wait_fd(fds[i], SMTPC__WANT_WRITE, smtpc__now_ms() + 150, -1) == SMTPC_ETIMEDOUT)
            return 1;
    }
    return 0;
}

TEST(connect_timeout_and_cancel)
{
    uint16_t port;
    int lfd = listener(AF_INET, 0, &port);
    int fds[8];
    for (int i = 0; i < 8; i++) fds[i] = -1;
    if (!fill_backlog(port, fds, 8)) {
        fprintf(stderr, "skip: cannot make a connect hang on this kernel\n");
    } else {
        smtpc__transport *t = NULL;
        smtpc__errmsg err = {{0}};
        smtpc__tcp_opts o = opts_dl(200);
        int64_t t0 = smtpc__now_ms();
        CHECK_INT(smtpc__tcp_connect(&t, "127.0.0.1", port, &o, &err), SMTPC_ETIMEDOUT);
        int64_t el = smtpc__now_ms() - t0;
        CHECK(el >= 200);
        CHECK(el < 1500);
        char want[128];
        snprintf(want, sizeof want, "connect to 127.0.0.1:%u: Connection timed out", (unsigned)port);
        CHECK_STR(err.text, want);

        /* A cancel fd signalled (from anywhere) stops the wait at once. */
        int efd = eventfd(1, EFD_CLOEXEC);
        o = opts_dl(5000);
        o.cancel_fd = efd;
        t0 = smtpc__now_ms();
        CHECK_INT(smtpc__tcp_connect(&t, "127.0.0.1", port, &o, &err), SMTPC_ECANCELED);
        CHECK(smtpc__now_ms() - t0 < 1000);
        CHECK(t == NULL);
        close(efd);
    }
    for (int i = 0; i < 8; i++)
        if (fds[i] >= 0) close(fds[i]);
    close(lfd);
}

TEST(wait_timeout_and_cancel)
{
    int sv[2];
    CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    int64_t t0 = smtpc__now_ms();
    CHECK_INT(smtpc__wait_fd(sv[0], SMTPC__WANT_READ, t0 + 80, -1), SMTPC_ETIMEDOUT);
    int64_t el = smtpc__now_ms() - t0;
    CHECK(el >= 80);
    CHECK(el < 1000);
    /* A deadline already past with data there is not a timeout. */
    CHECK_INT(write(sv[1], "x", 1), 1);
    CHECK_INT(smtpc__wait_fd(sv[0], SMTPC__WANT_READ, t0, -1), 0);
    char c;
    CHECK_INT(read(sv[0], &c, 1), 1);
    /* Writable at once. */
    CHECK_INT(smtpc__wait_fd(sv[0], SMTPC__WANT_WRITE, -1, -1), 0);

    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    t0 = smtpc__now_ms();
    uint64_t one = 1;
    CHECK_INT(write(efd, &one, sizeof one), 8);
    CHECK_INT(smtpc__wait_fd(sv[0], SMTPC__WANT_READ, -1, efd), SMTPC_ECANCELED);
    CHECK(smtpc__now_ms() - t0 < 1000);
    /* Cancel stays signalled (sticky) until the owner drains it. */
    CHECK_INT(smtpc__wait_fd(sv[0], SMTPC__WANT_WRITE, -1, efd), SMTPC_ECANCELED);
    close(efd);
    close(sv[0]);
    close(sv[1]);
}

TEST(write_after_peer_close_no_sigpipe)
{
    /* Default SIGPIPE disposition: a signal would kill this test. */
    signal(SIGPIPE, SIG_DFL);
    uint16_t port;
    int lfd = listener(AF_INET, 8, &port);
    smtpc__transport *t = NULL;
    smtpc__errmsg err = {{0}};
    smtpc__tcp_opts o = opts_dl(5000);
    CHECK_INT(smtpc__tcp_connect(&t, "127.0.0.1", port, &o, &err), 0);
    if (!t) return;
    int cfd = accept(lfd, NULL, NULL);
    close(cfd);
    char buf[4096];
    memset(buf, 'a', sizeof buf);
    ssize_t n = 0;
    int want = 0;
    for (int i = 0; i < 1000; i++) {
        n = smtpc__transport_write(t, buf, sizeof buf, &want);
        if (n == SMTPC_EAGAIN) {
            smtpc__wait_fd(t->fd, want, smtpc__now_ms() + 1000, -1);
            continue;
        }
        if (n < 0) break;
        usleep(1000);
    }
    CHECK_INT(n, SMTPC_ENETWORK);
    CHECK(strncmp(t->err.text, "write: ", 7) == 0);
    smtpc__transport_free(t);
    close(lfd);
}

/* A layer without read/write of its own is transparent; errors of the inner
 * layer surface on the outer one. */
static void nop_destroy(smtpc__transport *t) { free(t); }
static const smtpc__transport_ops pass_ops = {.name = "pass", .destroy = nop_destroy};

TEST(chain_passthrough)
{
    uint16_t port;
    int lfd = listener(AF_INET, 8, &port);
    smtpc__transport *tcp = NULL;
    smtpc__errmsg err = {{0}};
    smtpc__tcp_opts o = opts_dl(5000);
    CHECK_INT(smtpc__tcp_connect(&tcp, "127.0.0.1", port, &o, &err), 0);
    if (!tcp) return;
    smtpc__transport *outer = calloc(1, sizeof *outer);
    outer->ops = &pass_ops;
    outer->inner = tcp;
    outer->fd = tcp->fd;
    int want = 0;
    CHECK_INT(smtpc__transport_handshake(outer, &want), 0);
    CHECK_INT(smtpc__transport_write(outer, "abc", 3, &want), 3);
    int cfd = accept(lfd, NULL, NULL);
    char buf[8];
    CHECK_INT(read(cfd, buf, sizeof buf), 3);
    close(cfd);
    smtpc__transport_free(outer); /* frees both layers: ASan checks */
    close(lfd);
}

int main(void)
{
    RUN(connect_ok_sets_socket_options);
    RUN(connect_ipv6_loopback);
    RUN(connect_refused_message);
    RUN(unresolvable_host);
    RUN(bind_local_address);
    RUN(connect_timeout_and_cancel);
    RUN(wait_timeout_and_cancel);
    RUN(write_after_peer_close_no_sigpipe);
    RUN(chain_passthrough);
    T_DONE();
}
