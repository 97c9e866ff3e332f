/* bench_bulk: smtpc_bulk throughput and memory.
 *   bench_bulk [--n N] [--size B] [--conns K] [--tls [--ca FILE]] [--file PATH] HOST PORT
 *       sends N copies of one SIZE-byte message (or the file PATH, streamed)
 *       over K connections; exit 1 unless every message is SENT. --tls:
 *       implicit TLS, verified against FILE with --ca (else not verified).
 *       Prints "CONNS opened" on stderr at the end.
 *   bench_bulk --idle K [--tls] HOST PORT
 *       opens K connections (--tls: implicit TLS, e.g. to stunnel in front
 *       of idle_peer.py), waits until all are idle after EHLO, prints
 *       "IDLE K rss_before_kib rss_after_kib per_conn_bytes", then the same
 *       after malloc_trim(0) as "TRIMMED ..." (what is still in use: memory
 *       freed after the handshakes stays resident until malloc reuses or
 *       trims it), then QUITs. */
#include <smtpc/smtpc.h>

#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

static size_t n_total, n_next, n_sent, n_bad;
static char *msg;
static size_t msg_len;
static int file_fd = -1;
static const char *rcpts[] = {"b@example.org"};

static ssize_t file_read(void *ud, void *buf, size_t len)
{
    (void)ud;
    return read(file_fd, buf, len);
}

static int file_rewind(void *ud)
{
    (void)ud;
    return lseek(file_fd, 0, SEEK_SET) == 0 ? 0 : -1;
}

static int next_msg(void *ud, smtpc_bulk_msg *m)
{
    (void)ud;
    if (n_next >= n_total) return 0;
    n_next++;
    memset(m, 0, sizeof *m);
    m->from = "a@example.org";
    m->rcpts = rcpts;
    m->nrcpts = 1;
    if (file_fd >= 0) {
        m->read = file_read;
        m->rewind = file_rewind;
    } else {
        m->data = msg;
        m->len = msg_len;
    }
    return 1;
}

static void on_result(void *ud, const smtpc_bulk_msg *m, const smtpc_bulk_result *r)
{
    (void)ud;
    (void)m;
    if (r->status == SMTPC_BULK_SENT)
        n_sent++;
    else if (n_bad++ < 5)
        fprintf(stderr, "message not sent: status %d %s %d %s\n", (int)r->status, r->errmsg,
                r->reply_code, r->reply_text);
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) v = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return v;
}

/* --idle: the application-loop API with a plain epoll of our own. */
static int ep;
static void sock_cb(void *ud, int fd, int what)
{
    (void)ud;
    struct epoll_event ev = {0};
    ev.data.fd = fd;
    if (what & SMTPC_POLL_REMOVE) {
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, &ev);
        return;
    }
    ev.events = (what & SMTPC_POLL_IN ? EPOLLIN : 0u) | (what & SMTPC_POLL_OUT ? EPOLLOUT : 0u);
    if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) < 0) epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

static void loop_once(smtpc_bulk *b)
{
    struct epoll_event evs[512];
    int64_t to = smtpc_bulk_timeout_ms(b);
    int n = epoll_wait(ep, evs, 512, to < 0 || to > 1000 ? 1000 : (int)to);
    for (int i = 0; i < n; i++) {
        int e = (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP) ? SMTPC_POLL_IN : 0) |
                (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP) ? SMTPC_POLL_OUT : 0);
        smtpc_bulk_socket_action(b, evs[i].data.fd, e);
    }
    smtpc_bulk_socket_action(b, SMTPC_SOCKET_TIMEOUT, 0);
}

int main(int argc, char **argv)
{
    size_t size = 10240, idle = 0;
    unsigned conns = 1;
    bool tls = false;
    const char *host = NULL, *port = NULL, *file = NULL, *ca = NULL;
    n_total = 1000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--n") && i + 1 < argc) n_total = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--size") && i + 1 < argc) size = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--conns") && i + 1 < argc) conns = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--idle") && i + 1 < argc) idle = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--file") && i + 1 < argc) file = argv[++i];
        else if (!strcmp(argv[i], "--tls")) tls = true;
        else if (!strcmp(argv[i], "--ca") && i + 1 < argc) ca = argv[++i];
        else if (!host) host = argv[i];
        else if (!port) port = argv[i];
    }
    if (!host || !port) {
        fprintf(stderr, "usage: bench_bulk [--n N] [--size B] [--conns K] [--tls [--ca F]] [--file F] [--idle K] HOST PORT\n");
        return 64;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (file) {
        file_fd = open(file, O_RDONLY | O_CLOEXEC);
        if (file_fd < 0) return 66;
    } else {
        const char *hdr = "From: a@example.org\r\nTo: b@example.org\r\nSubject: bench\r\n\r\n";
        size_t hl = strlen(hdr);
        msg_len = size > hl ? size : hl;
        msg = malloc(msg_len);
        memcpy(msg, hdr, hl);
        for (size_t i = hl; i < msg_len; i++) msg[i] = (char)('a' + i % 26);
        for (size_t i = hl + 76; i + 1 < msg_len; i += 78) {
            msg[i] = '\r';
            msg[i + 1] = '\n';
        }
        if (msg_len - hl >= 2) {
            msg[msg_len - 2] = '\r';
            msg[msg_len - 1] = '\n';
        }
    }
    smtpc_bulk *b;
    if (smtpc_bulk_new(&b, host, (uint16_t)strtoul(port, NULL, 10))) return 70;
    smtpc_bulk_set_result_cb(b, on_result, NULL);
    smtpc_bulk_set_tls(b, tls ? SMTPC_TLS_MODE_IMPLICIT : SMTPC_TLS_MODE_NONE, tls ? "localhost" : NULL, ca,
                       ca == NULL);
    if (idle) {
        n_total = 0;
        smtpc_bulk_set_connections(b, (unsigned)idle);
        smtpc_bulk_set_hold_idle(b, true);
        smtpc_bulk_set_timeouts(b, 120000, 120000, 0, 0, 0);
        ep = epoll_create1(EPOLL_CLOEXEC);
        smtpc_bulk_set_socket_cb(b, sock_cb, NULL);
        long before = rss_kib();
        if (smtpc_bulk_start(b)) return 71;
        smtpc_bulk_stats st;
        for (;;) {
            loop_once(b);
            smtpc_bulk_get_stats(b, &st);
            if (st.connections_idle >= idle) break;
            if (getenv("BENCH_DEBUG"))
                fprintf(stderr, "open %u idle %u opened %llu failed %llu\n", st.connections_open,
                        st.connections_idle, (unsigned long long)st.connections_opened,
                        (unsigned long long)st.connections_failed);
            if (st.connections_failed > idle) {
                fprintf(stderr, "connections failing (%llu)\n", (unsigned long long)st.connections_failed);
                return 1;
            }
        }
        long after = rss_kib();
        printf("IDLE %zu %ld %ld %.0f\n", idle, before, after, (double)(after - before) * 1024.0 / (double)idle);
        malloc_trim(0);
        long trimmed = rss_kib();
        printf("TRIMMED %zu %ld %ld %.0f\n", idle, before, trimmed,
               (double)(trimmed - before) * 1024.0 / (double)idle);
        fflush(stdout);
        smtpc_bulk_cancel(b);
        while (!smtpc_bulk_done(b)) loop_once(b);
        smtpc_bulk_free(b);
        close(ep);
        return 0;
    }
    smtpc_bulk_set_source(b, next_msg, NULL);
    smtpc_bulk_set_connections(b, conns);
    int rc = smtpc_bulk_run(b);
    smtpc_bulk_stats st;
    smtpc_bulk_get_stats(b, &st);
    fprintf(stderr, "CONNS %llu\n", (unsigned long long)st.connections_opened);
    smtpc_bulk_free(b);
    free(msg);
    if (rc || n_sent != n_total) {
        fprintf(stderr, "bench_bulk: %zu of %zu sent (rc %d)\n", n_sent, n_total, rc);
        return 1;
    }
    return 0;
}
