/* DKIM signing by the client (smtpc_client_set_dkim), every way it sends.
 *
 *   drv_dkim_client MODE HOST PORT --domain D --key SEL=PEM [--key ...]
 *                   [--canon H/B] [--attach FILE] [--no-dkim] [FILE]
 *
 * MODE: compose (a message of the message API; --attach adds a file),
 * async (the same through smtpc_client_send_async),
 * mem (FILE in memory), cb (FILE through a callback that cannot rewind:
 * spooled), batch (FILE twice with send_batch, then a
 * composed message), outbox (FILE queued in an outbox under FILE.d, then
 * flushed through the signing client, whose body callback rewinds; the
 * queued copy is unsigned), bulk (FILE --count N times through smtpc_bulk
 * on --connections K connections, signed on --threads T (0: CPUs); --pull:
 * the body through a callback with rewind instead of memory; --own-loop:
 * the application's poll loop through the socket callbacks (prints
 * "wakeups N" on stderr: the poll calls); prints
 * "sent S failed F" and exits 0 when all were sent; --cancel-after N:
 * smtpc_bulk_cancel after N results, then "taken T" (messages the source
 * gave) and exit 0 when every one of them was reported exactly once);
 * --loop epoll|poll: that built-in loop; --cpu: prints "cpu loop L other O"
 * on stderr, the CPU microseconds of the thread that ran the loop and of
 * the rest of the process (the signing pool) during the run.
 * Exit 0 when everything was accepted. --no-dkim: the same, unsigned.
 * --pickup DIR: compose, mem, cb and cbrewind write to the pickup
 * directory DIR instead (HOST and PORT unused); prints "path P". */
#include <smtpc/smtpc.h>

#include "dkim_opts.h"

#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static int usage(void)
{
    fprintf(stderr, "usage: drv_dkim_client MODE HOST PORT --domain D --key SEL=PEM ... [FILE]\n");
    return 2;
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    unsigned char *b = malloc(cap);
    size_t k;
    while (b && (k = fread(b + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap) {
            unsigned char *nb = realloc(b, cap * 2);
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
            cap *= 2;
        }
    }
    fclose(f);
    *len = n;
    return b;
}

typedef struct fsrc {
    FILE *f;
    unsigned rewinds;
} fsrc;

static int f_rewind(void *ud)
{
    fsrc *s = ud;
    s->rewinds++;
    return fseek(s->f, 0, SEEK_SET) ? SMTPC_EIO : 0;
}

static ssize_t f_read(void *ud, void *buf, size_t len)
{
    fsrc *s = ud;
    size_t n = fread(buf, 1, len, s->f);
    if (n == 0 && ferror(s->f)) return SMTPC_EIO;
    return (ssize_t)n;
}

typedef struct bsrc {
    unsigned char *d;
    size_t len;
    unsigned left, sent, failed, cancel_after;
    bool pull;
    smtpc_bulk *b;
    const char *rcpt[1];
} bsrc;

typedef struct bbody {
    const bsrc *s;
    size_t off;
} bbody;

static ssize_t b_read(void *ud, void *buf, size_t len)
{
    bbody *x = ud;
    size_t n = x->s->len - x->off < len ? x->s->len - x->off : len;
    memcpy(buf, x->s->d + x->off, n);
    x->off += n;
    return (ssize_t)n;
}

static int b_rewind(void *ud)
{
    ((bbody *)ud)->off = 0;
    return 0;
}

static int b_next(void *ud, smtpc_bulk_msg *m)
{
    bsrc *s = ud;
    if (!s->left) return 0;
    s->left--;
    memset(m, 0, sizeof *m);
    m->from = "alice@example.org";
    m->rcpts = s->rcpt;
    m->nrcpts = 1;
    if (s->pull) {
        bbody *x = calloc(1, sizeof *x);
        if (!x) return SMTPC_ENOMEM;
        x->s = s;
        m->read = b_read;
        m->rewind = b_rewind;
        m->body_ud = x;
    } else {
        m->data = s->d;
        m->len = s->len;
    }
    m->userdata = s;
    return 1;
}

static void b_result(void *ud, const smtpc_bulk_msg *m, const smtpc_bulk_result *r)
{
    bsrc *s = ud;
    /* the message comes back as the source gave it */
    if (s->pull ? (m->read != b_read || !m->body_ud) : (m->data != s->d || m->len != s->len)) abort();
    if (s->pull) free(m->body_ud);
    if (r->status == SMTPC_BULK_SENT) s->sent++;
    else {
        s->failed++;
        fprintf(stderr, "failed: %s\n", r->errmsg);
    }
    if (s->cancel_after && s->sent + s->failed == s->cancel_after) smtpc_bulk_cancel(s->b);
}

/* --own-loop: the application's loop (poll), through the socket and timer
 * callbacks: the signing pool's fd comes through them too. */
typedef struct own_loop {
    struct pollfd fds[64];
    size_t n;
} own_loop;

static void own_sock(void *ud, int fd, int what)
{
    own_loop *l = ud;
    size_t i = 0;
    while (i < l->n && l->fds[i].fd != fd) i++;
    if (what & SMTPC_POLL_REMOVE) {
        if (i < l->n) l->fds[i] = l->fds[--l->n];
        return;
    }
    if (i == l->n) {
        if (l->n == 64) abort();
        l->fds[l->n++].fd = fd;
    }
    l->fds[i].events = (short)((what & SMTPC_POLL_IN ? POLLIN : 0) | (what & SMTPC_POLL_OUT ? POLLOUT : 0));
}

static unsigned long g_wakeups;

static int own_run(smtpc_bulk *b)
{
    own_loop l = {.n = 0};
    smtpc_bulk_set_socket_cb(b, own_sock, &l);
    int rc = smtpc_bulk_start(b);
    while (!rc && !smtpc_bulk_done(b)) {
        int64_t to = smtpc_bulk_timeout_ms(b);
        int k = poll(l.fds, l.n, to < 0 || to > 1000 ? 1000 : (int)to);
        g_wakeups++;
        if (k == 0) smtpc_bulk_socket_action(b, SMTPC_SOCKET_TIMEOUT, 0);
        /* a copy: an action may change the set */
        struct pollfd ready[64];
        size_t nr = l.n;
        memcpy(ready, l.fds, nr * sizeof *ready);
        for (size_t i = 0; k > 0 && i < nr; i++)
            if (ready[i].revents)
                smtpc_bulk_socket_action(b, ready[i].fd, (ready[i].revents & (POLLIN | POLLHUP | POLLERR) ? SMTPC_POLL_IN : 0) |
                                                             (ready[i].revents & (POLLOUT | POLLERR) ? SMTPC_POLL_OUT : 0));
    }
    return rc;
}

static unsigned g_loop;
static bool g_cpu;

static long long thread_cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* the whole process, threads that ended included */
static long long process_cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ((long long)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 + ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}

static int run_bulk(const char *host, uint16_t port, const smtpc_dkim_signer *sg, const char *file, unsigned count,
                    unsigned conns, unsigned threads, bool pull, unsigned cancel_after, bool own)
{
    bsrc s = {NULL, 0, count, 0, 0, cancel_after, pull, NULL, {"bob@example.com"}};
    s.d = slurp(file, &s.len);
    smtpc_bulk *b;
    if (!s.d || smtpc_bulk_new(&b, host, port)) return 1;
    s.b = b;
    int rc = smtpc_bulk_set_tls(b, SMTPC_TLS_MODE_NONE, NULL, NULL, false);
    if (!rc) rc = smtpc_bulk_set_connections(b, conns);
    if (!rc) rc = smtpc_bulk_set_source(b, b_next, &s);
    if (!rc) rc = smtpc_bulk_set_result_cb(b, b_result, &s);
    if (!rc && sg) rc = smtpc_bulk_set_dkim(b, sg, threads);
    if (!rc && g_loop) rc = smtpc_bulk_set_loop(b, (int)g_loop);
    long long t0 = thread_cpu_us(), p0 = process_cpu_us();
    if (!rc) rc = own ? own_run(b) : smtpc_bulk_run(b);
    long long t1 = thread_cpu_us(), p1 = process_cpu_us();
    if (g_cpu) fprintf(stderr, "cpu loop %lld other %lld\n", t1 - t0, (p1 - p0) - (t1 - t0));
    if (own) fprintf(stderr, "wakeups %lu\n", g_wakeups);
    if (rc) fprintf(stderr, "bulk: %s: %s\n", smtpc_err_name(rc), smtpc_bulk_errmsg(b));
    smtpc_bulk_free(b);
    free(s.d);
    printf("sent %u failed %u\n", s.sent, s.failed);
    if (cancel_after) printf("taken %u\n", count - s.left);
    if (cancel_after) return s.sent + s.failed == count - s.left ? 0 : 1;
    return rc || s.sent != count ? 1 : 0;
}

typedef struct async_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int status;
} async_wait;

static void on_async(void *ud, int status, const smtpc_result *r)
{
    (void)r;
    async_wait *w = ud;
    pthread_mutex_lock(&w->mu);
    w->done = true;
    w->status = status;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static int check(const char *what, int rc, smtpc_client *c)
{
    if (rc) fprintf(stderr, "%s: %s: %s\n", what, smtpc_err_name(rc), smtpc_client_errmsg(c));
    return rc;
}

static smtpc_message *composed(const char *attach)
{
    smtpc_message *m;
    if (smtpc_message_new(&m)) return NULL;
    static const char text[] = "Hello Bob,\r\n\r\na line with trailing space   \r\nand tabs\t\t\r\n\r\n\r\n";
    if (smtpc_message_set_from(m, "Alice <alice@example.org>") || smtpc_message_add_to(m, "bob@example.com") ||
        smtpc_message_set_subject(m, "Grüße — composed and signed") ||
        smtpc_message_set_text(m, text, sizeof text - 1) ||
        smtpc_message_add_header(m, "List-Unsubscribe", "<https://example.org/u/1>") ||
        smtpc_message_add_header(m, "List-Unsubscribe-Post", "List-Unsubscribe=One-Click") ||
        (attach && smtpc_message_add_attachment_file(m, attach, NULL))) {
        smtpc_message_free(m);
        return NULL;
    }
    return m;
}

int main(int argc, char **argv)
{
    if (argc < 4) return usage();
    const char *mode = argv[1], *host = argv[2];
    uint16_t port = (uint16_t)strtoul(argv[3], NULL, 10);
    smtpc_dkim_signer *sg;
    if (smtpc_dkim_signer_new(&sg)) return 1;
    const char *file = NULL, *attach = NULL, *pickup = NULL;
    int nodkim = 0;
    unsigned count = 1, conns = 1, threads = 0, cancel_after = 0;
    bool pull = false, own = false;
    for (int i = 4; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-') file = a;
        else if (!strcmp(a, "--no-dkim")) nodkim = 1; /* the same send unsigned (a baseline) */
        else if (!strcmp(a, "--pull")) pull = true;
        else if (!strcmp(a, "--own-loop")) own = true;
        else if (!strcmp(a, "--cpu")) g_cpu = true;
        else if (i + 1 == argc) return usage();
        else if (!strcmp(a, "--attach")) attach = argv[++i];
        else if (!strcmp(a, "--pickup")) pickup = argv[++i];
        else if (!strcmp(a, "--loop")) g_loop = !strcmp(argv[++i], "poll") ? SMTPC_BULK_LOOP_POLL : SMTPC_BULK_LOOP_EPOLL;
        else if (!strcmp(a, "--count")) count = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(a, "--connections")) conns = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(a, "--threads")) threads = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(a, "--cancel-after")) cancel_after = (unsigned)strtoul(argv[++i], NULL, 10);
        else {
            int rc = dkim_signer_opt(sg, a, argv[++i]);
            if (rc > 0) return usage();
            if (rc < 0) {
                fprintf(stderr, "%s: %s\n", a, smtpc_dkim_signer_errmsg(sg));
                return 1;
            }
        }
    }
    if (!strcmp(mode, "bulk")) {
        int brc = file ? run_bulk(host, port, nodkim ? NULL : sg, file, count, conns, threads, pull, cancel_after, own) : usage();
        smtpc_dkim_signer_free(sg);
        return brc;
    }
    smtpc_client *c;
    if (smtpc_client_new(&c)) return 1;
    smtpc_client_set_tls_mode(c, SMTPC_TLS_MODE_NONE);
    int rc = smtpc_client_set_host(c, host, port);
    if (!rc && !nodkim) rc = check("set_dkim", smtpc_client_set_dkim(c, sg), c);
    if (!rc && pickup) rc = check("set_delivery", smtpc_client_set_delivery(c, SMTPC_DELIVERY_PICKUP, pickup), c);
    const char *rcpt[] = {"bob@example.com"};
    smtpc_result *res = NULL;
    smtpc_result **resp = pickup ? &res : NULL;
    if (!rc && !strcmp(mode, "compose")) {
        smtpc_message *m = composed(attach);
        rc = m ? check("send", smtpc_client_send(c, m, resp), c) : 1;
        smtpc_message_free(m);
    } else if (!rc && !strcmp(mode, "async")) {
        /* on the client's own thread */
        smtpc_message *m = composed(attach);
        async_wait w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0};
        rc = m ? check("send_async", smtpc_client_send_async(c, m, on_async, &w), c) : 1;
        pthread_mutex_lock(&w.mu);
        while (!rc && !w.done) pthread_cond_wait(&w.cv, &w.mu);
        pthread_mutex_unlock(&w.mu);
        if (!rc) rc = check("async result", w.status, c);
        smtpc_message_free(m);
    } else if (!rc && !strcmp(mode, "mem") && file) {
        size_t len;
        unsigned char *d = slurp(file, &len);
        rc = d ? check("send", smtpc_client_send_mem(c, "alice@example.org", rcpt, 1, d, len, resp), c) : 1;
        free(d);
    } else if (!rc && !strcmp(mode, "cb") && file) {
        fsrc s = {fopen(file, "rb"), 0};
        if (!s.f) return 1;
        rc = check("send", smtpc_client_send_envelope(c, "alice@example.org", rcpt, 1, f_read, &s, resp), c);
        fclose(s.f);
    } else if (!rc && !strcmp(mode, "cbrewind") && file) {
        /* a callback that can rewind: read twice (hash, then send), not spooled */
        fsrc s = {fopen(file, "rb"), 0};
        if (!s.f) return 1;
        smtpc_send_params p;
        memset(&p, 0, sizeof p);
        p.rewind = f_rewind;
        rc = check("send", smtpc_client_send_envelope_with(c, "alice@example.org", rcpt, 1, f_read, &s, &p, resp), c);
        printf("rewinds %u\n", s.rewinds);
        fclose(s.f);
    } else if (!rc && !strcmp(mode, "batch") && file) {
        size_t len;
        unsigned char *d = slurp(file, &len);
        smtpc_message *m = composed(NULL);
        smtpc_batch_item it[3];
        memset(it, 0, sizeof it);
        for (int i = 0; i < 2; i++) {
            it[i].from = "alice@example.org";
            it[i].rcpts = rcpt;
            it[i].nrcpts = 1;
            it[i].data = d;
            it[i].len = len;
        }
        it[2].message = m;
        rc = d && m ? check("send_batch", smtpc_client_send_batch(c, it, 3, NULL, NULL), c) : 1;
        smtpc_message_free(m);
        free(d);
    } else if (!rc && !strcmp(mode, "outbox") && file) {
        char dir[4096], err[256];
        snprintf(dir, sizeof dir, "%s.d", file);
        smtpc_outbox *ob;
        fsrc s = {fopen(file, "rb"), 0};
        if (!s.f || smtpc_outbox_open(&ob, dir, err, sizeof err)) return 1;
        rc = smtpc_outbox_add_raw(ob, "alice@example.org", rcpt, 1, f_read, &s, NULL, 0);
        fclose(s.f);
        smtpc_outbox_stats st;
        if (!rc) rc = check("flush", smtpc_outbox_flush(ob, c, &st), c);
        if (!rc && st.sent != 1) rc = 1;
        smtpc_outbox_free(ob);
    } else if (!rc) {
        return usage();
    }
    if (res) printf("path %s/%s\n", pickup, smtpc_result_queue_id(res));
    smtpc_result_free(res);
    smtpc_client_free(c);
    smtpc_dkim_signer_free(sg);
    return rc ? 1 : 0;
}
