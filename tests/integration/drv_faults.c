/* Faults on the wire, at volume (tests/integration/test_wire_faults.py).
 *
 *   drv_faults bulk HOST PORT COUNT CONNS    [options]
 *   drv_faults pool HOST PORT COUNT THREADS  [options] [--attempts N]
 *   drv_faults batch HOST PORT COUNT 1       [options] [--attempts N]
 * options: --timeout-ms N  --size N (octets of text, default 1000)
 *          --big-every N --big-size B (every Nth message has B octets of text
 *            and an "X-Big: yes" header)
 *
 * bulk: one smtpc_bulk run over CONNS connections with its default retries;
 * each body is made when the source asks for it and freed when its result
 * comes, so what stays resident is the library's. pool: THREADS threads,
 * each with its own client on one shared pool (THREADS connections at
 * most), take the next message index and call smtpc_client_send with a
 * composed message; the retry policy is ATTEMPTS (default 3) attempts with
 * the library's default delays. Both set the command and data timeouts to
 * --timeout-ms (default 2000) so a stalled server is given up on.
 * batch: one smtpc_client_send_batch of COUNT raw messages (retries: 100 ms
 * apart); DRV_SNDBUF=N gives every socket a send buffer of N octets.
 * Every message has "Message-ID: <IDX.bulk@test>". Output:
 *   R IDX SENT|FAILED|UNKNOWN|CANCELED ERRNAME WHY   one per result
 *   MEM rss=KIB hwm=KIB     after the run, before the free (after malloc_trim)
 *   MEMFREE rss=KIB hwm=KIB after everything is freed
 *   DONE ms=ELAPSED results=N
 * Exit 0 unless the driver itself failed. */
#include <smtpc/smtpc.h>

#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static size_t g_count, g_size = 1000, g_big_every, g_big_size = 1u << 20;
static unsigned g_par, g_attempts = 3;
static int64_t g_timeout_ms = 2000;
static const char *g_host;
static uint16_t g_port;
static unsigned char *g_seen;
static pthread_mutex_t g_out = PTHREAD_MUTEX_INITIALIZER;
static atomic_size_t g_results;

static int parse_int(const char *s) { return (int)strtol(s, NULL, 10); }

static void die(const char *what)
{
    fprintf(stderr, "drv_faults: %s\n", what);
    exit(2);
}

static void report(size_t i, const char *status, int err, const char *why)
{
    pthread_mutex_lock(&g_out);
    if (i >= g_count) die("bad index");
    if (g_seen[i]++) printf("DUPLICATE %zu\n", i);
    printf("R %zu %s %s %s\n", i, status, err ? smtpc_err_name(err) : "0", why && *why ? why : "-");
    pthread_mutex_unlock(&g_out);
    atomic_fetch_add(&g_results, 1);
}

/* VmRSS and VmHWM of this process, in KiB. */
static void mem(long *rss, long *hwm)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    *rss = *hwm = -1;
    while (f && fgets(line, sizeof line, f)) {
        if (!strncmp(line, "VmRSS:", 6)) *rss = strtol(line + 6, NULL, 10);
        if (!strncmp(line, "VmHWM:", 6)) *hwm = strtol(line + 6, NULL, 10);
    }
    if (f) fclose(f);
}

static void print_mem(const char *tag)
{
    long rss, hwm;
#ifdef __GLIBC__
    malloc_trim(0); /* what the allocator keeps of freed blocks is not ours */
#endif
    mem(&rss, &hwm);
    printf("%s rss=%ld hwm=%ld\n", tag, rss, hwm);
    fflush(stdout);
}

static bool is_big(size_t i) { return g_big_every && i % g_big_every == g_big_every - 1; }

/* The text of message i: lines of 70 letters, g_size octets (every
 * g_big_every-th message: g_big_size, more than the sockets buffer). */
static char *body_text(size_t i, size_t *len)
{
    size_t n = is_big(i) ? g_big_size : g_size;
    char *p = malloc(n + 1);
    if (!p) die("out of memory");
    for (size_t j = 0; j < n; j++) p[j] = (j % 72 == 70) ? '\r' : (j % 72 == 71) ? '\n' : (char)('a' + (i + j) % 26);
    p[n - 2] = '\r';
    p[n - 1] = '\n';
    p[n] = '\0';
    *len = n;
    return p;
}

/* ---- bulk ---- */
static size_t g_next;
static const char *g_rcpt[] = {"rcpt@example.org"};

/* Message i as raw octets (header and text), malloc'ed. */
static char *raw_message(size_t i, size_t *len)
{
    size_t tl;
    char hdr[200];
    int hl = snprintf(hdr, sizeof hdr,
                      "From: sender@example.org\r\nTo: rcpt@example.org\r\nSubject: faults %zu\r\n"
                      "Message-ID: <%zu.bulk@test>\r\n%s\r\n", i, i, is_big(i) ? "X-Big: yes\r\n" : "");
    char *t = body_text(i, &tl);
    char *p = malloc((size_t)hl + tl);
    if (!p) die("out of memory");
    memcpy(p, hdr, (size_t)hl);
    memcpy(p + hl, t, tl);
    free(t);
    *len = (size_t)hl + tl;
    return p;
}

static int next_msg(void *ud, smtpc_bulk_msg *m)
{
    (void)ud;
    if (g_next >= g_count) return 0;
    size_t i = g_next++;
    memset(m, 0, sizeof *m);
    m->from = "sender@example.org";
    m->rcpts = g_rcpt;
    m->nrcpts = 1;
    m->data = raw_message(i, &m->len);
    m->userdata = (void *)(uintptr_t)i;
    return 1;
}

static const char *st_name[] = {"SENT", "FAILED", "CANCELED", "UNKNOWN"};

static void on_result(void *ud, const smtpc_bulk_msg *m, const smtpc_bulk_result *r)
{
    (void)ud;
    report((size_t)(uintptr_t)m->userdata, st_name[r->status], r->error, r->errmsg);
    free((void *)m->data);
}

static int run_bulk(void)
{
    smtpc_bulk *b;
    if (smtpc_bulk_new(&b, g_host, g_port)) die("bulk_new");
    if (smtpc_bulk_set_tls(b, SMTPC_TLS_MODE_NONE, NULL, NULL, true)) die("set_tls");
    smtpc_bulk_set_source(b, next_msg, NULL);
    smtpc_bulk_set_result_cb(b, on_result, NULL);
    smtpc_bulk_set_connections(b, g_par);
    smtpc_bulk_set_timeouts(b, 0, 0, g_timeout_ms, g_timeout_ms, 0);
    int rc = smtpc_bulk_run(b);
    if (rc) printf("RUN %s %s\n", smtpc_err_name(rc), smtpc_bulk_errmsg(b));
    smtpc_bulk_stats st;
    smtpc_bulk_get_stats(b, &st);
    printf("STATS submitted=%llu sent=%llu failed=%llu canceled=%llu unknown=%llu retried=%llu conns=%llu\n",
           (unsigned long long)st.submitted, (unsigned long long)st.sent, (unsigned long long)st.failed,
           (unsigned long long)st.canceled, (unsigned long long)st.unknown, (unsigned long long)st.retried,
           (unsigned long long)st.connections_opened);
    print_mem("MEM");
    smtpc_bulk_free(b);
    return 0;
}

/* ---- batch ---- */
/* DRV_SNDBUF=N in the environment: every stream socket gets SO_SNDBUF N
 * (this definition interposes libc's for the static library), so what the
 * kernel buffers of a body is small and known. */
int socket(int domain, int type, int protocol)
{
    int fd = (int)syscall(SYS_socket, domain, type, protocol);
    const char *e = getenv("DRV_SNDBUF");
    if (fd >= 0 && e && (type & 0xff) == SOCK_STREAM && (domain == AF_INET || domain == AF_INET6)) {
        int v = parse_int(e);
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
    }
    return fd;
}

static void on_batch(void *ud, size_t index, int status, const smtpc_result *r)
{
    (void)ud;
    report(index, status == 0 ? "SENT" : status == SMTPC_EUNKNOWN ? "UNKNOWN" : status == SMTPC_ECANCELED ? "CANCELED" : "FAILED",
           status, smtpc_result_errmsg(r));
}

/* COUNT raw messages in one smtpc_client_send_batch (pipelined across
 * messages on one connection). */
static int run_batch(void)
{
    smtpc_client *c;
    if (smtpc_client_new(&c)) die("client_new");
    smtpc_client_set_tls_mode(c, SMTPC_TLS_MODE_NONE);
    if (smtpc_client_set_host(c, g_host, g_port)) die("set_host");
    smtpc_client_set_ehlo_name(c, "drv.example");
    smtpc_retry_policy rp = {g_attempts, 100, 2.0, 1000};
    if (smtpc_client_set_retry(c, &rp)) die("set_retry");
    smtpc_client_set_command_timeout_ms(c, g_timeout_ms);
    smtpc_client_set_data_timeout_ms(c, g_timeout_ms);
    smtpc_batch_item *it = calloc(g_count, sizeof *it);
    if (!it) die("out of memory");
    for (size_t i = 0; i < g_count; i++) {
        it[i].from = "sender@example.org";
        it[i].rcpts = g_rcpt;
        it[i].nrcpts = 1;
        it[i].data = raw_message(i, &it[i].len);
    }
    int rc = smtpc_client_send_batch(c, it, g_count, on_batch, NULL);
    printf("BATCH %s\n", rc ? smtpc_err_name(rc) : "0");
    for (size_t i = 0; i < g_count; i++) free((void *)it[i].data);
    free(it);
    smtpc_client_free(c);
    return 0;
}

/* ---- pool ---- */
static smtpc_pool *g_pool;
static atomic_size_t g_take;

static void *worker(void *arg)
{
    (void)arg;
    smtpc_client *c;
    if (smtpc_client_new(&c)) die("client_new");
    smtpc_client_set_tls_mode(c, SMTPC_TLS_MODE_NONE);
    if (smtpc_client_set_host(c, g_host, g_port)) die("set_host");
    smtpc_client_set_ehlo_name(c, "drv.example");
    smtpc_client_set_pool(c, g_pool);
    smtpc_retry_policy rp = {g_attempts, 1000, 2.0, 60000};
    if (smtpc_client_set_retry(c, &rp)) die("set_retry");
    smtpc_client_set_command_timeout_ms(c, g_timeout_ms);
    smtpc_client_set_data_timeout_ms(c, g_timeout_ms);
    for (;;) {
        size_t i = atomic_fetch_add(&g_take, 1);
        if (i >= g_count) break;
        smtpc_message *m;
        if (smtpc_message_new(&m)) die("message_new");
        char buf[64], *t;
        size_t tl;
        smtpc_message_set_from(m, "sender@example.org");
        smtpc_message_add_to(m, "rcpt@example.org");
        snprintf(buf, sizeof buf, "<%zu.bulk@test>", i);
        smtpc_message_set_message_id(m, buf);
        snprintf(buf, sizeof buf, "faults %zu", i);
        smtpc_message_set_subject(m, buf);
        if (is_big(i)) smtpc_message_add_header(m, "X-Big", "yes");
        t = body_text(i, &tl);
        smtpc_message_set_text(m, t, tl);
        free(t);
        smtpc_result *r = NULL;
        int rc = smtpc_client_send(c, m, &r);
        report(i, rc == 0 ? "SENT" : rc == SMTPC_EUNKNOWN ? "UNKNOWN" : rc == SMTPC_ECANCELED ? "CANCELED" : "FAILED", rc,
               smtpc_result_errmsg(r));
        smtpc_result_free(r);
        smtpc_message_free(m);
    }
    smtpc_client_free(c);
    return NULL;
}

static int run_pool(void)
{
    if (smtpc_pool_new(&g_pool)) die("pool_new");
    smtpc_pool_set_max_per_endpoint(g_pool, g_par);
    pthread_t th[64];
    if (g_par > 64) die("at most 64 threads");
    for (unsigned t = 0; t < g_par; t++)
        if (pthread_create(&th[t], NULL, worker, NULL)) die("pthread_create");
    for (unsigned t = 0; t < g_par; t++) pthread_join(th[t], NULL);
    printf("STATS opened=%llu\n", (unsigned long long)smtpc_pool_connections_opened(g_pool));
    print_mem("MEM");
    smtpc_pool_free(g_pool);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 6) die("usage: drv_faults bulk|pool HOST PORT COUNT CONNS [options]");
    g_host = argv[2];
    g_port = (uint16_t)strtoul(argv[3], NULL, 10);
    g_count = strtoul(argv[4], NULL, 10);
    g_par = (unsigned)strtoul(argv[5], NULL, 10);
    for (int i = 6; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--timeout-ms")) g_timeout_ms = strtoll(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--size")) g_size = strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--big-every")) g_big_every = strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--big-size")) g_big_size = strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--attempts")) g_attempts = (unsigned)strtoul(argv[i + 1], NULL, 10);
        else die("unknown option");
    }
    if (!g_count || !g_par || g_size < 2 || g_big_size < 2) die("bad arguments");
    g_seen = calloc(g_count, 1);
    if (!g_seen) die("out of memory");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = !strcmp(argv[1], "bulk")    ? run_bulk()
             : !strcmp(argv[1], "pool")  ? run_pool()
             : !strcmp(argv[1], "batch") ? run_batch()
                                         : 2;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    free(g_seen);
    print_mem("MEMFREE");
    printf("DONE ms=%ld results=%zu\n",
           (long)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000), atomic_load(&g_results));
    return rc;
}
