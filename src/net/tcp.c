/* The bottom of the transport chain: a non-blocking TCP socket.
 *
 * Connect is Happy Eyeballs (RFC 8305 §4-5): the addresses getaddrinfo
 * returns (RFC 6724 sorted by the resolver) are interleaved by family,
 * starting with the family of the first one (IPv6 when it is usable); an
 * attempt starts every 250 ms, or at once when the previous one fails,
 * without cancelling those in flight; the first to connect wins and the
 * others are closed. One deadline covers the whole set, so a black-holed
 * address costs 250 ms, not the connect timeout. Name resolution itself is
 * getaddrinfo's and blocking: it is neither time-limited nor cancellable
 * (documented in session.h). */
#include "net/transport.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
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

smtpc__transport *smtpc__tcp_wrap_fd(int fd)
{
    tcp_layer *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->base.ops = &tcp_ops;
    l->base.inner = NULL;
    l->base.fd = fd;
    return &l->base;
}

/* "host:port", or "[v6]:port" when host contains a colon. */
static void hostport(char *dst, size_t n, const char *host, uint16_t port)
{
    if (strchr(host, ':'))
        snprintf(dst, n, "[%s]:%u", host, (unsigned)port);
    else
        snprintf(dst, n, "%s:%u", host, (unsigned)port);
}

int smtpc__tcp_bind_local(int fd, int family, const char *addr, uint16_t port, int *err_no,
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
    int one = 1;
    if (port) /* parallel attempts of one family share the fixed local port */
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
#ifdef IP_BIND_ADDRESS_NO_PORT
    else /* pick the port at connect (by 4-tuple): no port exhaustion */
        (void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
#endif
    int rc = bind(fd, res->ai_addr, res->ai_addrlen);
    if (rc < 0) *err_no = errno;
    freeaddrinfo(res);
    return rc;
}

#define HE_DELAY_MS 250 /* RFC 8305 §5 Connection Attempt Delay (recommended) */
#define HE_MAX 64       /* addresses tried at most */

typedef struct he_try {
    const struct addrinfo *ai;
    int fd;        /* -1 when not in flight */
    int err;       /* errno of its failure; 0 = not tried / in flight */
    bool started;
} he_try;

static void addr_text(const struct addrinfo *ai, char *dst, size_t n)
{
    const void *a = ai->ai_family == AF_INET6
                        ? (const void *)&((const struct sockaddr_in6 *)ai->ai_addr)->sin6_addr
                        : (const void *)&((const struct sockaddr_in *)ai->ai_addr)->sin_addr;
    if (!inet_ntop(ai->ai_family, a, dst, (socklen_t)n)) smtpc__strlcpy(dst, "?", n);
}

/* Starts the attempt: 0 in flight, 1 connected at once, -1 failed (t->err
 * set, or bind_fail for a bind failure). */
static int he_start(he_try *t, const smtpc__tcp_opts *opts, int *bind_errno, const char **bind_msg,
                    bool *bind_fail)
{
    const struct addrinfo *ai = t->ai;
    t->started = true;
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
        t->err = errno;
        return -1;
    }
    if (opts->bind_addr || opts->bind_port) {
        if (smtpc__tcp_bind_local(fd, ai->ai_family, opts->bind_addr, opts->bind_port, bind_errno, bind_msg) < 0) {
            close(fd);
            *bind_fail = true;
            t->err = 0;
            return -1;
        }
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int c;
    do c = connect(fd, ai->ai_addr, ai->ai_addrlen);
    while (c < 0 && errno == EINTR);
    if (c == 0) {
        t->fd = fd;
        return 1;
    }
    if (errno != EINPROGRESS) {
        t->err = errno;
        close(fd);
        return -1;
    }
    t->fd = fd;
    return 0;
}

/* "connect to HOST:PORT: reason" with one reason per address when they differ. */
static int he_fail(smtpc__errmsg *err, int rc, const char *hp, const he_try *tr, size_t n)
{
    int first = 0;
    bool same = true;
    size_t tried = 0;
    for (size_t i = 0; i < n; i++) {
        if (!tr[i].err) continue;
        tried++;
        if (!first) first = tr[i].err;
        else if (tr[i].err != first) same = false;
    }
    if (tried <= 1 || same)
        return smtpc__err(err, rc, "connect to %s: %s", hp, strerror(first ? first : ECONNREFUSED));
    char msg[SMTPC__ERRMSG_MAX];
    size_t off = 0;
    msg[0] = '\0';
    for (size_t i = 0; i < n && off < sizeof msg; i++) {
        if (!tr[i].err) continue;
        char a[INET6_ADDRSTRLEN];
        addr_text(tr[i].ai, a, sizeof a);
        int k = snprintf(msg + off, sizeof msg - off, "%s%s: %s", off ? "; " : "", a, strerror(tr[i].err));
        if (k < 0) break;
        off += (size_t)k;
    }
    return smtpc__err(err, rc, "connect to %s: %s", hp, msg);
}

int smtpc__tcp_connect_ai(smtpc__transport **out, const char *hp, const struct addrinfo *res,
                          const smtpc__tcp_opts *opts, smtpc__errmsg *err)
{
    static const smtpc__tcp_opts defaults = {NULL, 0, AF_UNSPEC, -1, -1};
    if (!opts) opts = &defaults;
    /* Interleave the families, keeping the resolver's order within each and
     * starting with the family of its first choice (RFC 8305 §4). */
    he_try tr[HE_MAX];
    size_t n = 0;
    const struct addrinfo *q[2] = {res, NULL};
    int fam0 = res ? res->ai_family : AF_UNSPEC;
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next)
        if (ai->ai_family != fam0) {
            q[1] = ai;
            break;
        }
    for (int turn = 0; n < HE_MAX && (q[0] || q[1]); turn ^= 1) {
        const struct addrinfo *ai = q[turn];
        if (!ai) continue;
        if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6) {
            tr[n].ai = ai;
            tr[n].fd = -1;
            tr[n].err = 0;
            tr[n].started = false;
            n++;
        }
        /* the next of the same family (turn 0: fam0, turn 1: any other) */
        do ai = ai->ai_next;
        while (ai && (turn == 0) != (ai->ai_family == fam0));
        q[turn] = ai;
    }
    if (n == 0) return smtpc__err(err, SMTPC_ENOHOST, "connect to %s: no IPv4 or IPv6 address", hp);

    int bind_errno = 0;
    const char *bind_msg = NULL;
    bool any_bind_fail = false;
    size_t next = 0, inflight = 0;
    int64_t next_start = smtpc__now_ms();
    int rc = 0;
    size_t winner = SIZE_MAX;
    for (;;) {
        int64_t now = smtpc__now_ms();
        /* start attempts: the first, one more every HE_DELAY_MS, or at once
         * when none is in flight (the previous one failed) */
        while (winner == SIZE_MAX && next < n && (inflight == 0 || now >= next_start)) {
            bool bf = false;
            int st = he_start(&tr[next], opts, &bind_errno, &bind_msg, &bf);
            any_bind_fail |= bf;
            if (st == 1) winner = next;
            if (st == 0) {
                inflight++;
                next_start = now + HE_DELAY_MS;
            }
            next++;
            if (st == 0) break;
        }
        if (winner != SIZE_MAX) break;
        if (inflight == 0) { /* every address failed */
            rc = SMTPC_ENETWORK;
            break;
        }
        if (opts->deadline_ms >= 0 && now >= opts->deadline_ms) {
            rc = SMTPC_ETIMEDOUT;
            break;
        }
        int64_t wake = opts->deadline_ms;
        if (next < n && (wake < 0 || next_start < wake)) wake = next_start;
        int tmo = -1;
        if (wake >= 0) {
            int64_t d = wake - now;
            tmo = d < 0 ? 0 : d > 1000000 ? 1000000 : (int)d;
        }
        struct pollfd pf[HE_MAX + 1];
        size_t idx[HE_MAX];
        nfds_t np = 0;
        for (size_t i = 0; i < n; i++)
            if (tr[i].fd >= 0) {
                pf[np].fd = tr[i].fd;
                pf[np].events = POLLOUT;
                pf[np].revents = 0;
                idx[np++] = i;
            }
        nfds_t nconn = np;
        if (opts->cancel_fd >= 0) {
            pf[np].fd = opts->cancel_fd;
            pf[np].events = POLLIN;
            pf[np].revents = 0;
            np++;
        }
        int pr = poll(pf, np, tmo);
        if (pr < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            for (size_t i = 0; i < n; i++)
                if (tr[i].fd >= 0) close(tr[i].fd);
            return smtpc__err(err, SMTPC_ENETWORK, "connect to %s: poll: %s", hp, strerror(e));
        }
        if (np > nconn && pf[nconn].revents) {
            rc = SMTPC_ECANCELED;
            break;
        }
        for (nfds_t k = 0; k < nconn && winner == SIZE_MAX; k++) {
            if (!pf[k].revents) continue;
            he_try *t = &tr[idx[k]];
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) soerr = errno;
            if (soerr == 0 && !(pf[k].revents & (POLLERR | POLLHUP))) {
                winner = idx[k];
                break;
            }
            t->err = soerr ? soerr : ECONNREFUSED;
            close(t->fd);
            t->fd = -1;
            inflight--;
            /* RFC 8305 §5: a failure starts the next attempt at once */
            next_start = smtpc__now_ms();
        }
        if (winner != SIZE_MAX) break;
    }

    /* close the losers (and, on failure, everything in flight) */
    for (size_t i = 0; i < n; i++) {
        if (i == winner || tr[i].fd < 0) continue;
        close(tr[i].fd);
        tr[i].fd = -1;
        if (rc == SMTPC_ETIMEDOUT) tr[i].err = ETIMEDOUT;
    }
    if (winner != SIZE_MAX) {
        smtpc__transport *t = smtpc__tcp_wrap_fd(tr[winner].fd);
        if (!t) {
            close(tr[winner].fd);
            return smtpc__err(err, SMTPC_ENOMEM, "connect to %s: out of memory", hp);
        }
        *out = t;
        return 0;
    }
    if (rc == SMTPC_ECANCELED) return smtpc__err(err, rc, "connect to %s: canceled", hp);
    bool any_err = false;
    for (size_t i = 0; i < n; i++) any_err |= tr[i].err != 0;
    if (!any_err && any_bind_fail)
        return smtpc__err(err, SMTPC_ENETWORK, "connect to %s: cannot bind to %s: %s", hp,
                          opts->bind_addr ? opts->bind_addr : "*",
                          bind_msg ? bind_msg : strerror(bind_errno));
    return he_fail(err, rc, hp, tr, n);
}

/* After a failed lookup restricted to one family: whether the name has
 * addresses of another family (getaddrinfo's codes for that vary and are
 * hidden without _GNU_SOURCE, so ask again). */
static bool has_other_family(const char *host)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, NULL, &hints, &res) != 0) return false;
    freeaddrinfo(res);
    return true;
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
    /* a numeric bind address fixes the family: the others could not be bound */
    if (hints.ai_family == AF_UNSPEC && opts->bind_addr) {
        unsigned char buf[sizeof(struct in6_addr)];
        if (inet_pton(AF_INET, opts->bind_addr, buf) == 1) hints.ai_family = AF_INET;
        else if (inet_pton(AF_INET6, opts->bind_addr, buf) == 1) hints.ai_family = AF_INET6;
    }
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(portstr, sizeof portstr, "%u", (unsigned)port);
    int g = getaddrinfo(host, portstr, &hints, &res);
    if (g != 0) {
        if (g == EAI_SYSTEM)
            return smtpc__err(err, SMTPC_ENOHOST, "cannot resolve %s: %s", host, strerror(errno));
        if (g == EAI_MEMORY) return smtpc__err(err, SMTPC_ENOMEM, "cannot resolve %s: out of memory", host);
        if (hints.ai_family != AF_UNSPEC && g != EAI_AGAIN && has_other_family(host))
            return smtpc__err(err, SMTPC_ENOHOST, "cannot resolve %s: no %s address%s", host,
                              hints.ai_family == AF_INET ? "IPv4" : "IPv6",
                              opts->family == AF_UNSPEC ? " (the family of the bind address)" : "");
        return smtpc__err(err, SMTPC_ENOHOST, "cannot resolve %s: %s", host, gai_strerror(g));
    }
    int rc = smtpc__tcp_connect_ai(out, hp, res, opts, err);
    freeaddrinfo(res);
    return rc;
}

/* ---- the default EHLO name ------------------------------------------------------ */

static pthread_once_t fqdn_once = PTHREAD_ONCE_INIT;
static atomic_bool fqdn_known;
static char fqdn[256]; /* "" = the host has none; written once, before fqdn_known */

static bool fqdn_ok(const char *n)
{
    if (!n || !strchr(n, '.') || n[0] == '.' || n[0] == '-' || strlen(n) >= sizeof fqdn) return false;
    for (const char *p = n; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '.'))
            return false;
    return n[strlen(n) - 1] != '.' && strncmp(n, "localhost", 9) != 0;
}

static void fqdn_init(void)
{
    char hn[256];
    if (gethostname(hn, sizeof hn) == 0) {
        hn[sizeof hn - 1] = '\0';
        if (fqdn_ok(hn)) {
            smtpc__strlcpy(fqdn, hn, sizeof fqdn);
        } else {
            struct addrinfo hints, *res = NULL;
            memset(&hints, 0, sizeof hints);
            hints.ai_flags = AI_CANONNAME;
            hints.ai_socktype = SOCK_STREAM;
            if (getaddrinfo(hn, NULL, &hints, &res) == 0) {
                if (res && fqdn_ok(res->ai_canonname)) smtpc__strlcpy(fqdn, res->ai_canonname, sizeof fqdn);
                freeaddrinfo(res);
            }
        }
    }
    atomic_store(&fqdn_known, true);
}

void smtpc__local_fqdn_lookup(void)
{
    pthread_once(&fqdn_once, fqdn_init);
}

bool smtpc__local_fqdn_done(void)
{
    return atomic_load(&fqdn_known);
}

void smtpc__default_ehlo_name(int fd, char *dst, size_t n)
{
    if (atomic_load(&fqdn_known) && fqdn[0]) {
        smtpc__strlcpy(dst, fqdn, n);
        return;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char a[INET6_ADDRSTRLEN];
    if (fd >= 0 && getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, a, sizeof a);
            snprintf(dst, n, "[%s]", a);
            return;
        }
        if (ss.ss_family == AF_INET6) {
            const struct in6_addr *a6 = &((struct sockaddr_in6 *)&ss)->sin6_addr;
            if (IN6_IS_ADDR_V4MAPPED(a6)) {
                inet_ntop(AF_INET, &a6->s6_addr[12], a, sizeof a);
                snprintf(dst, n, "[%s]", a);
            } else {
                inet_ntop(AF_INET6, a6, a, sizeof a);
                snprintf(dst, n, "[IPv6:%s]", a);
            }
            return;
        }
    }
    smtpc__strlcpy(dst, "[127.0.0.1]", n);
}
