/* Test driver for smtpc_bulk (built-in loop).
 *   drv_bulk HOST PORT COUNT CONNS [options]
 * options: --rate R  --max-per-conn N  --attempts N
 *          --tls MODE (smtpc_tls_mode_parse: implicit, starttls, starttls-optional, none,
 *            default, auto; without it: none) through smtpc_bulk_set_tls with the name
 *            "localhost" and $DRV_CA (insecure without it)
 *          --opts: the TLS mode (without --tls: the library's default) and the options
 *            below through one smtpc_conn_opts (smtpc_bulk_set_conn_opts, before every
 *            other setter) instead:
 *            --ca-file F --ca-path D --pin P (repeatable) --cert F --key F
 *            --tls-versions MIN,MAX[,strict] (12 = TLS 1.2, 13 = TLS 1.3)
 *            --tls-name N --insecure --bind ADDR[,PORT] --family 4|6
 *            --server HOST,PORT (replaces the one given to smtpc_bulk_new)
 *            prints "OPTS rc name errmsg" when smtpc_bulk_set_conn_opts fails
 *          --cancel-after N (cancel from the result callback after N results)
 *          --size BYTES  --rcpt ADDR (repeatable; default rcpt@example.org)
 *          --timeouts CONNECT,GREETING,COMMAND,DATAEND,OVERALL (ms)
 *          --user U --password P --token T --auth MECHS --plain-auth
 *          --proxy URL (smtpc_proxy_parse_url + smtpc_bulk_set_proxy)
 *          --loop auto|epoll|poll (smtpc_bulk_set_loop; prints "LOOP epoll|poll")
 *          --token-cb A,B,... (smtpc_bulk_set_token_cb: the current token is A; each
 *            refresh moves to the next, staying on the last; "!" fails with
 *            SMTPC_ECONFIG; "~" fails with SMTPC_ETEMPFAIL and moves to the next;
 *            prints "TOKENCB calls=N refresh=M")
 *          --trace (smtpc_bulk_set_trace: "T CONN C|S LINE" per line)
 *          --dsn-notify N --dsn-ret R --envid E (message IDX: ENVID E-IDX)
 *          --orcpt A (the first recipient's own NOTIFY=SUCCESS and ORCPT=rfc822;A)
 *          --dsn-require (smtpc_bulk_set_dsn_policy(SMTPC_DSN_REQUIRE)): DSN through
 *            smtpc_bulk_msg.params
 * DRV_NO_EPOLL=1 in the environment makes epoll_create1() fail with ENOSYS
 * (this program's definition interposes libc's for the static library), to
 * test the automatic fallback to poll().
 * Each message has "Message-ID: <IDX.bulk@test>". Output: one line per result
 *   R IDX STATUS CODE ATTEMPTS ERRNAME
 * then "DONE rc submitted sent failed canceled unknown elapsed_ms". */
#include <smtpc/smtpc.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    size_t count, next, cancel_after, results;
    struct timespec first, last;
    const char *rcpts[16];
    size_t nrcpts;
    char **bodies;
    size_t *lens;
    unsigned char *seen;
    smtpc_bulk *b;
    const char *dsn_notify, *dsn_ret, *envid, *orcpt;
    bool dsn;
    smtpc_send_params *params;  /* one per message when dsn */
    char (*envids)[64];
    smtpc_rcpt_opts *ro;        /* one per recipient, shared */
} ctx;

int epoll_create1(int flags)
{
    const char *e = getenv("DRV_NO_EPOLL");
    if (e && *e == '1') {
        errno = ENOSYS;
        return -1;
    }
    return (int)syscall(SYS_epoll_create1, flags);
}

/* --token-cb: a rotating token source */
static struct {
    char *list[16];
    size_t n, cur;
    unsigned calls, refresh;
} g_tok;

static int on_token(void *ud, bool refresh, const char **token, size_t *len)
{
    (void)ud;
    g_tok.calls++;
    if (refresh) {
        g_tok.refresh++;
        if (g_tok.cur + 1 < g_tok.n) g_tok.cur++;
    }
    const char *t = g_tok.list[g_tok.cur];
    if (!strcmp(t, "!")) return SMTPC_ECONFIG;
    if (!strcmp(t, "~")) { /* "not now": once, then the next entry */
        if (g_tok.cur + 1 < g_tok.n) g_tok.cur++;
        return SMTPC_ETEMPFAIL;
    }
    *token = t;
    *len = strlen(t);
    return 0;
}

/* --key: the certificate given before it */
static const char *co_cert(char **argv, int i)
{
    for (int j = i - 1; j > 0; j--)
        if (!strcmp(argv[j], "--cert")) return argv[j + 1];
    return NULL;
}

static const char *st_name[] = {"SENT", "FAILED", "CANCELED", "UNKNOWN"};

static int next_msg(void *ud, smtpc_bulk_msg *m)
{
    ctx *x = ud;
    if (x->next >= x->count) return 0;
    size_t i = x->next++;
    memset(m, 0, sizeof *m);
    m->from = "sender@example.org";
    m->rcpts = x->rcpts;
    m->nrcpts = x->nrcpts;
    m->data = x->bodies[i];
    m->len = x->lens[i];
    m->userdata = (void *)(uintptr_t)i;
    if (x->dsn) {
        smtpc_send_params *p = &x->params[i];
        p->dsn_notify = x->dsn_notify;
        p->dsn_ret = x->dsn_ret;
        if (x->envid) {
            snprintf(x->envids[i], sizeof x->envids[i], "%s-%zu", x->envid, i);
            p->dsn_envid = x->envids[i];
        }
        if (x->orcpt) {
            p->rcpt = x->ro;
            p->nrcpt = x->nrcpts;
        }
        m->params = p;
    }
    return 1;
}

static void on_trace(void *ud, unsigned conn, smtpc_trace_dir dir, const char *line, size_t len)
{
    (void)ud;
    printf("T %u %s %.*s\n", conn, dir == SMTPC_TRACE_SENT ? "C" : "S", (int)len, line);
}

static void on_result(void *ud, const smtpc_bulk_msg *m, const smtpc_bulk_result *r)
{
    ctx *x = ud;
    size_t i = (size_t)(uintptr_t)m->userdata;
    if (x->seen[i]) {
        printf("DUPLICATE %zu\n", i);
    }
    x->seen[i]++;
    printf("R %zu %s %d %u %s %s\n", i, st_name[r->status], r->reply_code, r->attempts,
           r->error ? smtpc_err_name(r->error) : "0", r->errmsg);
    if (x->results++ == 0) clock_gettime(CLOCK_MONOTONIC, &x->first);
    clock_gettime(CLOCK_MONOTONIC, &x->last);
    if (x->cancel_after && x->results == x->cancel_after) smtpc_bulk_cancel(x->b);
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    if (d) closedir(d);
    return n - 1; /* opendir's own */
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: drv_bulk HOST PORT COUNT CONNS [options]\n");
        return 2;
    }
    ctx x;
    memset(&x, 0, sizeof x);
    x.count = strtoul(argv[3], NULL, 10);
    unsigned conns = (unsigned)strtoul(argv[4], NULL, 10);
    double rate = 0;
    unsigned maxper = 0, attempts = 0;
    smtpc_tls_mode tls = SMTPC_TLS_MODE_NONE;
    bool use_opts = false, tls_given = false;
    smtpc_conn_opts *co = NULL;
    if (smtpc_conn_opts_new(&co)) return 3;
    int orc = 0;
    size_t size = 1000;
    long long to[5] = {0, 0, 0, 0, 0};
    const char *user = NULL, *password = NULL, *token = NULL, *mechs = NULL, *proxy = NULL;
    char *token_list = NULL;
    bool plain_auth = false;
    int loop = -1;
    bool dsn_require = false, trace = false;
    for (int i = 5; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--rate")) rate = strtod(v, NULL), i++;
        else if (!strcmp(a, "--max-per-conn")) maxper = (unsigned)strtoul(v, NULL, 10), i++;
        else if (!strcmp(a, "--attempts")) attempts = (unsigned)strtoul(v, NULL, 10), i++;
        else if (!strcmp(a, "--cancel-after")) x.cancel_after = strtoul(v, NULL, 10), i++;
        else if (!strcmp(a, "--size")) size = strtoul(v, NULL, 10), i++;
        else if (!strcmp(a, "--rcpt") && x.nrcpts < 16) x.rcpts[x.nrcpts++] = v, i++;
        else if (!strcmp(a, "--tls")) {
            if (smtpc_tls_mode_parse(v, &tls)) {
                fprintf(stderr, "bad TLS mode %s\n", v);
                return 2;
            }
            tls_given = true;
            i++;
        }
        else if (!strcmp(a, "--opts")) use_opts = true;
        else if (!strcmp(a, "--ca-file")) orc |= smtpc_conn_opts_set_ca_file(co, v), i++;
        else if (!strcmp(a, "--ca-path")) orc |= smtpc_conn_opts_set_ca_path(co, v), i++;
        else if (!strcmp(a, "--pin")) orc |= smtpc_conn_opts_add_pin(co, v), i++;
        else if (!strcmp(a, "--cert")) orc |= smtpc_conn_opts_set_client_cert(co, v, NULL), i++;
        else if (!strcmp(a, "--key")) orc |= smtpc_conn_opts_set_client_cert(co, co_cert(argv, i), v), i++;
        else if (!strcmp(a, "--tls-name")) orc |= smtpc_conn_opts_set_tls_server_name(co, v), i++;
        else if (!strcmp(a, "--insecure")) orc |= smtpc_conn_opts_set_insecure(co, true);
        else if (!strcmp(a, "--tls-versions")) {
            int mn = 0, mx = 0;
            char st[16] = "";
            sscanf(v, "%d,%d,%15s", &mn, &mx, st);
            orc |= smtpc_conn_opts_set_tls_versions(co, mn, mx, !strcmp(st, "strict"));
            i++;
        }
        else if (!strcmp(a, "--bind") || !strcmp(a, "--server")) {
            char h[128] = "";
            unsigned port = 0;
            sscanf(v, "%127[^,],%u", h, &port);
            orc |= a[2] == 'b' ? smtpc_conn_opts_set_bind(co, h, (uint16_t)port)
                               : smtpc_conn_opts_set_server(co, h, (uint16_t)port);
            i++;
        }
        else if (!strcmp(a, "--family"))
            orc |= smtpc_conn_opts_set_family(co, !strcmp(v, "4") ? SMTPC_FAMILY_IPV4 : SMTPC_FAMILY_IPV6), i++;
        else if (!strcmp(a, "--user")) user = v, i++;
        else if (!strcmp(a, "--password")) password = v, i++;
        else if (!strcmp(a, "--token")) token = v, i++;
        else if (!strcmp(a, "--token-cb")) {
            token_list = strdup(v);
            for (char *t = token_list; t && g_tok.n < 16;) {
                char *comma = strchr(t, ',');
                if (comma) *comma++ = '\0';
                g_tok.list[g_tok.n++] = t;
                t = comma;
            }
            i++;
        }
        else if (!strcmp(a, "--auth")) mechs = v, i++;
        else if (!strcmp(a, "--plain-auth")) plain_auth = true;
        else if (!strcmp(a, "--proxy")) proxy = v, i++;
        else if (!strcmp(a, "--loop")) {
            loop = !strcmp(v, "epoll") ? SMTPC_BULK_LOOP_EPOLL : !strcmp(v, "poll") ? SMTPC_BULK_LOOP_POLL
                                                                                    : SMTPC_BULK_LOOP_AUTO;
            i++;
        }
        else if (!strcmp(a, "--dsn-notify")) x.dsn_notify = v, x.dsn = true, i++;
        else if (!strcmp(a, "--dsn-ret")) x.dsn_ret = v, x.dsn = true, i++;
        else if (!strcmp(a, "--envid")) x.envid = v, x.dsn = true, i++;
        else if (!strcmp(a, "--orcpt")) x.orcpt = v, x.dsn = true, i++;
        else if (!strcmp(a, "--dsn-require")) dsn_require = true;
        else if (!strcmp(a, "--trace")) trace = true;
        else if (!strcmp(a, "--timeouts")) {
            sscanf(v, "%lld,%lld,%lld,%lld,%lld", &to[0], &to[1], &to[2], &to[3], &to[4]);
            i++;
        } else {
            fprintf(stderr, "unknown option %s\n", a);
            return 2;
        }
    }
    if (orc) {
        fprintf(stderr, "bad option: %s\n", smtpc_conn_opts_errmsg(co));
        return 2;
    }
    if (!x.nrcpts) x.rcpts[x.nrcpts++] = "rcpt@example.org";
    x.bodies = calloc(x.count + 1, sizeof *x.bodies);
    x.lens = calloc(x.count + 1, sizeof *x.lens);
    x.seen = calloc(x.count + 1, 1);
    x.params = calloc(x.count + 1, sizeof *x.params);
    x.envids = calloc(x.count + 1, sizeof *x.envids);
    x.ro = calloc(x.nrcpts, sizeof *x.ro);
    if (x.orcpt) {
        static char orcpt[300];
        snprintf(orcpt, sizeof orcpt, "rfc822;%s", x.orcpt);
        x.ro[0].dsn_notify = "SUCCESS";
        x.ro[0].dsn_orcpt = orcpt;
    }
    for (size_t i = 0; i < x.count; i++) {
        char hdr[200];
        int hl = snprintf(hdr, sizeof hdr,
                          "From: sender@example.org\r\nTo: rcpt@example.org\r\nSubject: bulk %zu\r\n"
                          "Message-ID: <%zu.bulk@test>\r\n\r\n",
                          i, i);
        size_t len = (size_t)hl + size;
        char *p = malloc(len);
        memcpy(p, hdr, (size_t)hl);
        for (size_t j = 0; j < size; j++) p[hl + j] = (j % 72 == 70) ? '\r' : (j % 72 == 71) ? '\n' : (char)('a' + j % 26);
        if (size >= 2) {
            p[len - 2] = '\r';
            p[len - 1] = '\n';
        }
        x.bodies[i] = p;
        x.lens[i] = len;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int fds_before = count_fds();
    smtpc_bulk *b = NULL;
    int rc = smtpc_bulk_new(&b, argv[1], (uint16_t)strtoul(argv[2], NULL, 10));
    if (rc) return 3;
    if (use_opts) {
        if (tls_given) smtpc_conn_opts_set_tls_mode(co, tls); /* else the library's default */
        rc = smtpc_bulk_set_conn_opts(b, co);
        if (rc) {
            printf("OPTS %s %s\n", smtpc_err_name(rc), smtpc_bulk_errmsg(b));
            smtpc_bulk_free(b);
            goto out;
        }
    }
    smtpc_conn_opts_free(co);
    co = NULL;
    if ((user || password) && smtpc_bulk_set_credentials(b, user, password)) return 4;
    if (token && smtpc_bulk_set_oauth_token(b, token)) return 4;
    if (g_tok.n && smtpc_bulk_set_token_cb(b, on_token, NULL)) return 4;
    if (mechs && smtpc_bulk_set_auth_mechanisms(b, mechs)) {
        fprintf(stderr, "%s\n", smtpc_bulk_errmsg(b));
        return 4;
    }
    if (plain_auth) smtpc_bulk_set_allow_plaintext_auth(b, true);
    if (loop >= 0 && smtpc_bulk_set_loop(b, loop)) return 4;
    if (proxy) {
        smtpc_proxy *px = NULL;
        char why[256];
        if (smtpc_proxy_parse_url(&px, proxy, why, sizeof why)) {
            fprintf(stderr, "bad proxy: %s\n", why);
            return 4;
        }
        rc = smtpc_bulk_set_proxy(b, px);
        smtpc_proxy_free(px);
        if (rc) {
            printf("ERR %s %s\n", smtpc_err_name(rc), smtpc_bulk_errmsg(b));
            smtpc_bulk_free(b);
            goto out;
        }
    }
    x.b = b;
    smtpc_bulk_set_source(b, next_msg, &x);
    smtpc_bulk_set_result_cb(b, on_result, &x);
    smtpc_bulk_set_connections(b, conns);
    if (maxper) smtpc_bulk_set_max_per_connection(b, maxper);
    if (attempts) smtpc_bulk_set_max_attempts(b, attempts);
    if (rate > 0) smtpc_bulk_set_rate(b, rate, 1);
    if (dsn_require && smtpc_bulk_set_dsn_policy(b, SMTPC_DSN_REQUIRE)) return 4;
    if (trace && smtpc_bulk_set_trace(b, on_trace, NULL)) return 4;
    if (!use_opts && smtpc_bulk_set_tls(b, tls, tls == SMTPC_TLS_MODE_NONE ? NULL : "localhost",
                                        getenv("DRV_CA"), getenv("DRV_CA") == NULL)) {
        printf("TLS %s\n", smtpc_bulk_errmsg(b));
        smtpc_bulk_free(b);
        goto out;
    }
    smtpc_bulk_set_timeouts(b, to[0], to[1], to[2], to[3], to[4]);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    rc = smtpc_bulk_run(b);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    smtpc_bulk_stats st;
    smtpc_bulk_get_stats(b, &st);
    if (rc && st.submitted == 0) printf("ERR %s\n", smtpc_bulk_errmsg(b));
    printf("LOOP %s\n", smtpc_bulk_loop_used(b) == SMTPC_BULK_LOOP_POLL    ? "poll"
                         : smtpc_bulk_loop_used(b) == SMTPC_BULK_LOOP_EPOLL ? "epoll"
                                                                           : "none");
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    printf("SPAN %ld\n", (long)((x.last.tv_sec - x.first.tv_sec) * 1000 + (x.last.tv_nsec - x.first.tv_nsec) / 1000000));
    printf("DONE %s %llu %llu %llu %llu %llu %ld conns=%llu retried=%llu\n",
           rc ? smtpc_err_name(rc) : "0", (unsigned long long)st.submitted,
           (unsigned long long)st.sent, (unsigned long long)st.failed,
           (unsigned long long)st.canceled, (unsigned long long)st.unknown, ms,
           (unsigned long long)st.connections_opened, (unsigned long long)st.retried);
    if (g_tok.n) printf("TOKENCB calls=%u refresh=%u\n", g_tok.calls, g_tok.refresh);
    smtpc_bulk_free(b);
    printf("fds=%d/%d\n", fds_before, count_fds());
out:
    for (size_t i = 0; i < x.count; i++) free(x.bodies[i]);
    free(x.bodies);
    free(x.lens);
    free(x.seen);
    free(x.params);
    free(x.envids);
    free(x.ro);
    free(token_list);
    smtpc_conn_opts_free(co);
    return 0;
}
