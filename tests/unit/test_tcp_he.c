/* Happy Eyeballs (RFC 8305) in smtpc__tcp_connect_ai, over given address
 * lists: a black hole is a loopback listener whose accept queue is full
 * (backlog 0, never accepted): Linux then drops the SYN and a connect to
 * it hangs in SYN-SENT. Timing bounds are the point here, so they are
 * tight but with room for a loaded machine. */
#include "net/transport.h"
#include "t.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct addr {
    struct addrinfo ai;
    struct sockaddr_storage ss;
} addr;

static void mkaddr(addr *a, int family, uint16_t port, addr *next)
{
    memset(a, 0, sizeof *a);
    a->ai.ai_family = family;
    a->ai.ai_socktype = SOCK_STREAM;
    a->ai.ai_protocol = IPPROTO_TCP;
    a->ai.ai_addr = (struct sockaddr *)&a->ss;
    if (family == AF_INET) {
        struct sockaddr_in *s = (struct sockaddr_in *)&a->ss;
        s->sin_family = AF_INET;
        s->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        s->sin_port = htons(port);
        a->ai.ai_addrlen = sizeof *s;
    } else {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&a->ss;
        s->sin6_family = AF_INET6;
        s->sin6_addr = in6addr_loopback;
        s->sin6_port = htons(port);
        a->ai.ai_addrlen = sizeof *s;
    }
    a->ai.ai_next = next ? &next->ai : NULL;
}

static int listener(int family, int backlog, uint16_t *port)
{
    addr a;
    mkaddr(&a, family, 0, NULL);
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (bind(fd, a.ai.ai_addr, a.ai.ai_addrlen) < 0 || listen(fd, backlog) < 0) {
        close(fd);
        return -1;
    }
    socklen_t sl = sizeof a.ss;
    getsockname(fd, (struct sockaddr *)&a.ss, &sl);
    *port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&a.ss)->sin_port
                                    : ((struct sockaddr_in6 *)&a.ss)->sin6_port);
    return fd;
}

/* A black hole of `family`: its listener and filler sockets in bh[]. */
typedef struct hole {
    int lfd, fill[8];
    uint16_t port;
} hole;

static int hole_make(hole *h, int family)
{
    h->lfd = listener(family, 0, &h->port);
    for (int i = 0; i < 8; i++) h->fill[i] = -1;
    if (h->lfd < 0) return 0;
    addr a;
    mkaddr(&a, family, h->port, NULL);
    for (int i = 0; i < 8; i++) {
        h->fill[i] = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        connect(h->fill[i], a.ai.ai_addr, a.ai.ai_addrlen);
        if (smtpc__wait_fd(h->fill[i], SMTPC__WANT_WRITE, smtpc__now_ms() + 150, -1) ==
            SMTPC_ETIMEDOUT)
            return 1;
    }
    return 0;
}

static void hole_free(hole *h)
{
    for (int i = 0; i < 8; i++)
        if (h->fill[i] >= 0) close(h->fill[i]);
    if (h->lfd >= 0) close(h->lfd);
}

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    while (readdir(d)) n++;
    closedir(d);
    return n;
}

static uint16_t local_port_family(int fd, int *family)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getpeername(fd, (struct sockaddr *)&ss, &sl);
    *family = ss.ss_family;
    return ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                         : ((struct sockaddr_in6 *)&ss)->sin6_port);
}

static smtpc__tcp_opts opts_dl(int64_t ms)
{
    smtpc__tcp_opts o = {NULL, 0, AF_UNSPEC, smtpc__now_ms() + ms, -1};
    return o;
}

static int have_holes = 1;

/* IPv6 black hole first, the IPv4 server second: IPv4 is tried after
 * 250 ms, not after the 10 s connect timeout; the loser is closed. */
TEST(black_hole_then_fallback_at_250ms)
{
    hole h;
    if (!hole_make(&h, AF_INET6)) {
        fprintf(stderr, "skip: no IPv6 black hole on this kernel\n");
        have_holes = 0;
        hole_free(&h);
        return;
    }
    uint16_t gport;
    int gfd = listener(AF_INET, 8, &gport);
    addr a6, a4;
    mkaddr(&a4, AF_INET, gport, NULL);
    mkaddr(&a6, AF_INET6, h.port, &a4);
    smtpc__transport *t = NULL;
    smtpc__errmsg err = {{0}};
    smtpc__tcp_opts o = opts_dl(10000);
    int fds0 = count_fds();
    int64_t t0 = smtpc__now_ms();
    CHECK_INT(smtpc__tcp_connect_ai(&t, "dual.test:25", &a6.ai, &o, &err), 0);
    int64_t el = smtpc__now_ms() - t0;
    fprintf(stderr, "happy eyeballs fallback after %lld ms\n", (long long)el);
    CHECK(el >= 245);
    CHECK(el < 700);
    if (t) {
        int fam;
        CHECK_INT(local_port_family(t->fd, &fam), gport);
        CHECK_INT(fam, AF_INET);
        CHECK_INT(count_fds(), fds0 + 1); /* only the winner is left open */
        smtpc__transport_free(t);
    }
    close(gfd);
    hole_free(&h);
}

/* Opens the black hole after a while: accepts everything queued. */
typedef struct opener {
    int lfd;
    int64_t after_ms, until_ms;
    int accepted[16];
    int n;
    _Atomic int stop;
} opener;

static void *open_later(void *arg)
{
    opener *o = arg;
    usleep((useconds_t)o->after_ms * 1000);
    int fl = fcntl(o->lfd, F_GETFL);
    fcntl(o->lfd, F_SETFL, fl | O_NONBLOCK);
    int64_t end = smtpc__now_ms() + o->until_ms;
    while (smtpc__now_ms() < end && !o->stop) {
        int c = accept(o->lfd, NULL, NULL);
        if (c >= 0 && o->n < 16) o->accepted[o->n++] = c;
        else if (c >= 0) close(c);
        else usleep(10000);
    }
    return NULL;
}

/* The first attempt is not cancelled when the second starts: two black
 * holes, the first opens up after 400 ms; its SYN retransmission (about 1 s
 * after the start) connects, and that attempt wins. */
TEST(first_attempt_kept_running)
{
    if (!have_holes) return;
    hole h6, h4;
    if (hole_make(&h6, AF_INET6) && hole_make(&h4, AF_INET)) {
        addr a6, a4;
        mkaddr(&a4, AF_INET, h4.port, NULL);
        mkaddr(&a6, AF_INET6, h6.port, &a4);
        opener o = {h6.lfd, 400, 6000, {0}, 0, 0};
        pthread_t th;
        pthread_create(&th, NULL, open_later, &o);
        smtpc__transport *t = NULL;
        smtpc__errmsg err = {{0}};
        smtpc__tcp_opts op = opts_dl(6000);
        CHECK_INT(smtpc__tcp_connect_ai(&t, "dual.test:25", &a6.ai, &op, &err), 0);
        if (t) {
            int fam;
            CHECK_INT(local_port_family(t->fd, &fam), h6.port);
            CHECK_INT(fam, AF_INET6);
            smtpc__transport_free(t);
        } else {
            fprintf(stderr, "%s\n", err.text);
        }
        o.stop = 1;
        pthread_join(th, NULL);
        for (int i = 0; i < o.n; i++) close(o.accepted[i]);
    }
    hole_free(&h6);
    hole_free(&h4);
}

/* Families interleave: [v6 hole, v6 hole, v4 server] tries v4 second. */
TEST(families_interleaved)
{
    if (!have_holes) return;
    hole h1, h2;
    int ok = hole_make(&h1, AF_INET6) && hole_make(&h2, AF_INET6);
    uint16_t gport;
    int gfd = listener(AF_INET, 8, &gport);
    if (ok) {
        addr a1, a2, a4;
        mkaddr(&a4, AF_INET, gport, NULL);
        mkaddr(&a2, AF_INET6, h2.port, &a4);
        mkaddr(&a1, AF_INET6, h1.port, &a2);
        smtpc__transport *t = NULL;
        smtpc__errmsg err = {{0}};
        smtpc__tcp_opts o = opts_dl(10000);
        int64_t t0 = smtpc__now_ms();
        CHECK_INT(smtpc__tcp_connect_ai(&t, "dual.test:25", &a1.ai, &o, &err), 0);
        int64_t el = smtpc__now_ms() - t0;
        CHECK(el >= 245);
        CHECK(el < 480); /* the third address would start at 500 ms */
        smtpc__transport_free(t);
    }
    close(gfd);
    hole_free(&h1);
    hole_free(&h2);
}

/* A refused address does not wait for the 250 ms: the next starts at once. */
TEST(refused_starts_next_at_once)
{
    uint16_t dead, gport;
    int d = listener(AF_INET6, 1, &dead);
    close(d);
    int gfd = listener(AF_INET, 8, &gport);
    addr a6, a4;
    mkaddr(&a4, AF_INET, gport, NULL);
    mkaddr(&a6, AF_INET6, dead, &a4);
    smtpc__transport *t = NULL;
    smtpc__errmsg err = {{0}};
    smtpc__tcp_opts o = opts_dl(10000);
    int64_t t0 = smtpc__now_ms();
    CHECK_INT(smtpc__tcp_connect_ai(&t, "dual.test:25", &a6.ai, &o, &err), 0);
    CHECK(smtpc__now_ms() - t0 < 200);
    smtpc__transport_free(t);
    close(gfd);
}

/* One deadline for the whole set; per-address reasons when they differ. */
TEST(deadline_over_the_set_and_reasons)
{
    if (!have_holes) return;
    hole h;
    uint16_t dead;
    int d = listener(AF_INET, 1, &dead);
    close(d);
    if (hole_make(&h, AF_INET6)) {
        addr a6, a4;
        mkaddr(&a4, AF_INET, dead, NULL);
        mkaddr(&a6, AF_INET6, h.port, &a4);
        smtpc__transport *t = NULL;
        smtpc__errmsg err = {{0}};
        smtpc__tcp_opts o = opts_dl(600);
        int64_t t0 = smtpc__now_ms();
        CHECK_INT(smtpc__tcp_connect_ai(&t, "dual.test:25", &a6.ai, &o, &err), SMTPC_ETIMEDOUT);
        int64_t el = smtpc__now_ms() - t0;
        CHECK(el >= 600);
        CHECK(el < 1500);
        CHECK(t == NULL);
        CHECK_STR(err.text, "connect to dual.test:25: ::1: Connection timed out; 127.0.0.1: "
                            "Connection refused");

        /* two black holes: one deadline, not one per address */
        hole h2;
        if (hole_make(&h2, AF_INET)) {
            mkaddr(&a4, AF_INET, h2.port, NULL);
            o = opts_dl(600);
            t0 = smtpc__now_ms();
            CHECK_INT(smtpc__tcp_connect_ai(&t, "dual.test:25", &a6.ai, &o, &err), SMTPC_ETIMEDOUT);
            el = smtpc__now_ms() - t0;
            CHECK(el >= 600);
            CHECK(el < 1500);
            CHECK_STR(err.text, "connect to dual.test:25: Connection timed out");

            /* cancel stops every attempt at once */
            int efd = eventfd(0, EFD_CLOEXEC);
            uint64_t one = 1;
            o = opts_dl(5000);
            o.cancel_fd = efd;
            CHECK(write(efd, &one, sizeof one) == sizeof one);
            t0 = smtpc__now_ms();
            CHECK_INT(smtpc__tcp_connect_ai(&t, "dual.test:25", &a6.ai, &o, &err), SMTPC_ECANCELED);
            CHECK(smtpc__now_ms() - t0 < 1000);
            close(efd);
        }
        hole_free(&h2);
    }
    hole_free(&h);
}

/* Every address refused: ENETWORK at once, both reasons the same: one. */
TEST(all_refused)
{
    uint16_t p4, p6;
    int d4 = listener(AF_INET, 1, &p4), d6 = listener(AF_INET6, 1, &p6);
    close(d4);
    close(d6);
    addr a6, a4;
    mkaddr(&a4, AF_INET, p4, NULL);
    mkaddr(&a6, AF_INET6, p6, &a4);
    smtpc__transport *t = NULL;
    smtpc__errmsg err = {{0}};
    smtpc__tcp_opts o = opts_dl(5000);
    CHECK_INT(smtpc__tcp_connect_ai(&t, "dual.test:25", &a6.ai, &o, &err), SMTPC_ENETWORK);
    CHECK_STR(err.text, "connect to dual.test:25: Connection refused");
    CHECK(t == NULL);
}

/* -4 / -6 through the resolver: an IPv4 literal has no IPv6 address. */
TEST(family_filter)
{
    uint16_t gport;
    int gfd = listener(AF_INET, 8, &gport);
    smtpc__transport *t = NULL;
    smtpc__errmsg err = {{0}};
    smtpc__tcp_opts o = opts_dl(5000);
    o.family = AF_INET6;
    CHECK_INT(smtpc__tcp_connect(&t, "127.0.0.1", gport, &o, &err), SMTPC_ENOHOST);
    CHECK_STR(err.text, "cannot resolve 127.0.0.1: no IPv6 address");
    o.family = AF_INET;
    CHECK_INT(smtpc__tcp_connect(&t, "127.0.0.1", gport, &o, &err), 0);
    smtpc__transport_free(t);
    t = NULL;
    /* a numeric IPv6 bind address restricts to IPv6 */
    o.family = AF_UNSPEC;
    o.bind_addr = "::1";
    CHECK_INT(smtpc__tcp_connect(&t, "127.0.0.1", gport, &o, &err), SMTPC_ENOHOST);
    CHECK(strstr(err.text, "no IPv6 address (the family of the bind address)") != NULL);
    close(gfd);
}

int main(void)
{
    RUN(black_hole_then_fallback_at_250ms);
    RUN(families_interleaved);
    RUN(first_attempt_kept_running);
    RUN(refused_starts_next_at_once);
    RUN(deadline_over_the_set_and_reasons);
    RUN(all_refused);
    RUN(family_filter);
    T_DONE();
}
