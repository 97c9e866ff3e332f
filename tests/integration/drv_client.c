/* Test driver for the client, pool and outbox (tests/integration/test_client*.py).
 *
 *   drv_client [options]
 *
 * Sends --n messages (From a@example.org, To each --to, Message-ID
 * <PREFIX-T-I@drv.example>) with one client, or --threads T clients sharing
 * one pool. Prints one line per event (parseable):
 *   send I rc=SMTPC_X code=C queue=ID attempts=K reused=0|1
 *   rcpt I J ADDR accepted=0|1 code=C attempts=K
 *   err I MESSAGE
 *   busy rc=SMTPC_X             (--busy-check: a second send while an async one runs)
 *   callback rc=SMTPC_X calls=N ms=ELAPSED
 *   opened N                    (connections the pool opened)
 *   threads ok=N failed=M
 *   outbox sent=.. deferred=.. failed=.. not_due=.. rc=..
 *   queued ID
 * Options: --host H --port P --to A (repeatable) --n N --strict
 *   --async (send_async each message; wait for the callback)
 *   --cancel-after-ms N (with --async: cancel N ms after the start)
 *   --busy-check --retry ATTEMPTS,INITIAL_MS,FACTOR,MAX_MS
 *   --sleep-ms N (between messages) --noop-after-ms N --max-idle-ms N
 *   --max-messages N --threads T --per-endpoint K --prefix P
 *   --config FILE --account NAME (smtpc_client_use_config; host/port optional)
 *   --timeout-ms N (command and data timeouts)
 *   --outbox DIR: with --queue, queue --n messages there (delivery OUTBOX);
 *     with --flush, flush it (--backoff-ms N: initial backoff); --list
 *   --raw (send_mem with a fixed body instead of a message)
 *   --raw-cb (send_envelope: the same body from a one-shot read callback)
 *   --second-ehlo NAME (two clients, one pool, the second with another EHLO
 *     name: alternate sends between them)
 *   --body-bytes N (a text body of N bytes)
 *   --tls MODE (default none) --user U --password P --ca-file PEM
 *   --proxy URL (smtpc_client_set_proxy_url)
 *   DSN and CHUNKING (sends go through the *_with functions):
 *   --dsn-ret FULL|HDRS --dsn-envid ID --dsn-notify LIST (every recipient)
 *   --rcpt-notify J=LIST --rcpt-orcpt J=ADDR (recipient J, 0-based)
 *   --dsn-require (SMTPC_DSN_REQUIRE) --bdat (smtpc_client_set_use_bdat)
 *   --ident USER=SECRET (repeatable): smtpc_client_set_identity_cb; send I
 *     gets entry I modulo their number
 *   --cred-cb-pass SECRET (repeatable, with --user): smtpc_client_set_credential_cb;
 *     send I gets entry I modulo their number
 *   at the end: "cbcalls N" (calls of either callback) */
#include <smtpc/smtpc.h>

#include "util/util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *g_host, *g_prefix = "m", *g_config, *g_account, *g_outbox;
static uint16_t g_port;
static const char *g_to[64];
static size_t g_nto;
static uint64_t g_n = 1, g_threads = 0, g_per = 4, g_sleep_ms, g_cancel_ms, g_timeout_ms, g_backoff_ms = 60000;
static int64_t g_noop_after = -2, g_max_idle = -1, g_max_msgs = -1;
static bool g_raw_cb, g_strict, g_async, g_busy, g_queue, g_flush, g_list, g_raw;
static smtpc_retry_policy g_retry = {1, 0, 1.0, 0};
static smtpc_tls_mode g_tls = SMTPC_TLS_MODE_NONE;
static const char *g_user, *g_pass, *g_cafile, *g_proxy;
static pthread_mutex_t g_out = PTHREAD_MUTEX_INITIALIZER;
static smtpc_send_params g_params;
static smtpc_rcpt_opts g_ropts[64];
static bool g_use_params, g_dsn_require, g_bdat;
static const char *g_ident_user[16], *g_ident_pass[16], *g_cred_pass[16];
static size_t g_nident, g_ncred;
static atomic_uint g_cbcalls;

static int ident_cb(void *ud, char *user, size_t ulen, char *secret, size_t slen)
{
    (void)ud;
    unsigned k = atomic_fetch_add(&g_cbcalls, 1);
    smtpc__strlcpy(user, g_ident_user[k % g_nident], ulen);
    smtpc__strlcpy(secret, g_ident_pass[k % g_nident], slen);
    return 0;
}

static int cred_cb(void *ud, const char *user, char *buf, size_t len)
{
    (void)ud;
    (void)user;
    unsigned k = atomic_fetch_add(&g_cbcalls, 1);
    smtpc__strlcpy(buf, g_cred_pass[k % g_ncred], len);
    return 0;
}

static void die(const char *what)
{
    fprintf(stderr, "drv_client: %s\n", what);
    exit(2);
}

static uint64_t g_body_bytes;

static smtpc_message *make_msg(unsigned t, uint64_t i)
{
    smtpc_message *m;
    if (smtpc_message_new(&m)) die("message_new");
    smtpc_message_set_from(m, "a@example.org");
    for (size_t k = 0; k < g_nto; k++)
        if (smtpc_message_add_to(m, g_to[k])) die("bad --to");
    char buf[128];
    snprintf(buf, sizeof buf, "<%s-%u-%llu@drv.example>", g_prefix, t, (unsigned long long)i);
    smtpc_message_set_message_id(m, buf);
    snprintf(buf, sizeof buf, "message %u-%llu", t, (unsigned long long)i);
    smtpc_message_set_subject(m, buf);
    if (g_body_bytes) {
        char *txt = malloc(g_body_bytes + 1);
        if (!txt) die("oom");
        for (uint64_t k = 0; k < g_body_bytes; k++) txt[k] = (k % 78 == 77) ? '\n' : 'x';
        txt[g_body_bytes] = '\0';
        smtpc_message_set_text(m, txt, g_body_bytes);
        free(txt);
    } else {
        smtpc_message_set_text(m, "Hello from drv_client.\n", (size_t)-1);
    }
    return m;
}

static void print_result(uint64_t i, int rc, const smtpc_result *r)
{
    pthread_mutex_lock(&g_out);
    printf("send %llu rc=%s code=%d queue=%s attempts=%u reused=%d tls=%s cipher=%s mech=%s"
           " connect_us=%lld tls_us=%lld auth_us=%lld xfer_us=%lld\n",
           (unsigned long long)i, smtpc_err_name(rc), smtpc_result_reply_code(r),
           smtpc_result_queue_id(r)[0] ? smtpc_result_queue_id(r) : "-", smtpc_result_attempts(r),
           smtpc_result_reused_connection(r), smtpc_result_tls_version(r)[0] ? smtpc_result_tls_version(r) : "-",
           smtpc_result_tls_cipher(r)[0] ? smtpc_result_tls_cipher(r) : "-",
           smtpc_result_auth_mechanism(r)[0] ? smtpc_result_auth_mechanism(r) : "-",
           (long long)smtpc_result_connect_us(r), (long long)smtpc_result_tls_us(r),
           (long long)smtpc_result_auth_us(r), (long long)smtpc_result_transfer_us(r));
    for (size_t j = 0; j < smtpc_result_rcpt_count(r); j++)
        printf("rcpt %llu %zu %s accepted=%d code=%d attempts=%u\n", (unsigned long long)i, j,
               smtpc_result_rcpt_address(r, j), smtpc_result_rcpt_accepted(r, j), smtpc_result_rcpt_code(r, j),
               smtpc_result_rcpt_attempts(r, j));
    if (rc) {
        char esc[1024];
        smtpc__escape_into(esc, sizeof esc, smtpc_result_errmsg(r), strlen(smtpc_result_errmsg(r)));
        printf("err %llu %s\n", (unsigned long long)i, esc);
    }
    fflush(stdout);
    pthread_mutex_unlock(&g_out);
}

static smtpc_client *make_client(smtpc_pool *pool)
{
    smtpc_client *c;
    if (smtpc_client_new(&c)) die("client_new");
    smtpc_client_set_tls_mode(c, g_tls); /* test servers listen on random ports: NONE unless --tls */
    if (g_config) {
        smtpc_config *cfg;
        char err[512];
        if (smtpc_config_load(&cfg, g_config, SMTPC_CONFIG_NOENV, err, sizeof err)) die(err);
        int rc = smtpc_client_use_config(c, cfg, g_account);
        smtpc_config_free(cfg);
        if (rc) die(smtpc_client_errmsg(c));
    }
    if (g_host && smtpc_client_set_host(c, g_host, g_port)) die("set_host");
    if (g_user && g_ncred) {
        if (smtpc_client_set_credential_cb(c, g_user, cred_cb, NULL)) die("set_credential_cb");
    } else if (g_user && smtpc_client_set_credentials(c, g_user, g_pass)) {
        die("set_credentials");
    }
    if (g_nident && smtpc_client_set_identity_cb(c, ident_cb, NULL)) die("set_identity_cb");
    if (g_cafile && smtpc_client_set_ca_file(c, g_cafile)) die("set_ca_file");
    if (g_proxy && smtpc_client_set_proxy_url(c, g_proxy)) die("set_proxy_url");
    smtpc_client_set_ehlo_name(c, "drv.example");
    if (smtpc_client_set_retry(c, &g_retry)) die("bad --retry");
    if (g_dsn_require && smtpc_client_set_dsn_policy(c, SMTPC_DSN_REQUIRE)) die("set_dsn_policy");
    if (g_bdat && smtpc_client_set_use_bdat(c, true)) die("set_use_bdat");
    smtpc_client_set_strict_recipients(c, g_strict);
    if (g_timeout_ms) {
        smtpc_client_set_command_timeout_ms(c, (int64_t)g_timeout_ms);
        smtpc_client_set_data_timeout_ms(c, (int64_t)g_timeout_ms);
        smtpc_client_set_connect_timeout_ms(c, (int64_t)g_timeout_ms);
    }
    smtpc_pool *p = pool ? pool : smtpc_client_pool(c);
    if (pool) smtpc_client_set_pool(c, pool);
    if (g_noop_after != -2) smtpc_pool_set_noop_after_ms(p, g_noop_after);
    if (g_max_idle >= 0) smtpc_pool_set_max_idle_ms(p, g_max_idle);
    if (g_max_msgs >= 0) smtpc_pool_set_max_messages(p, (unsigned)g_max_msgs);
    return c;
}

/* ---- async ---- */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_calls, g_cb_rc;
static int64_t g_t0;

static void on_done(void *ud, int status, const smtpc_result *r)
{
    uint64_t i = (uint64_t)(uintptr_t)ud;
    print_result(i, status, r);
    pthread_mutex_lock(&g_mu);
    g_calls++;
    g_cb_rc = status;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

/* Two clients with different identities (EHLO names) on one pool. */
static const char *g_ehlo2;
static int run_two_identities(void)
{
    smtpc_pool *pool;
    if (smtpc_pool_new(&pool)) die("pool_new");
    smtpc_client *a = make_client(pool), *b = make_client(pool);
    smtpc_client_set_ehlo_name(b, g_ehlo2);
    int bad = 0;
    for (uint64_t i = 0; i < g_n; i++) {
        smtpc_message *m = make_msg(i % 2, i);
        smtpc_result *r = NULL;
        int rc = smtpc_client_send(i % 2 ? b : a, m, &r);
        print_result(i, rc, r);
        bad += rc != 0;
        smtpc_result_free(r);
        smtpc_message_free(m);
    }
    printf("opened %llu\n", (unsigned long long)smtpc_pool_connections_opened(pool));
    smtpc_client_free(a);
    smtpc_client_free(b);
    smtpc_pool_free(pool);
    return bad ? 1 : 0;
}

typedef struct cb_src {
    const char *p;
    size_t left;
} cb_src;

/* A one-shot body handed over in small pieces. */
static ssize_t cb_read(void *ud, void *buf, size_t len)
{
    cb_src *src = ud;
    size_t n = src->left < 7 ? src->left : 7;
    if (n > len) n = len;
    memcpy(buf, src->p, n);
    src->p += n;
    src->left -= n;
    return (ssize_t)n;
}

static int run_single(void)
{
    smtpc_client *c = make_client(NULL);
    int failures = 0;
    static const char raw[] = "From: a@example.org\r\nSubject: raw\r\n\r\nraw body\r\n";
    for (uint64_t i = 0; i < g_n; i++) {
        smtpc_message *m = make_msg(0, i);
        if (g_async) {
            g_calls = 0;
            g_t0 = smtpc__now_ms();
            int rc = smtpc_client_send_async_with(c, m, g_use_params ? &g_params : NULL, on_done,
                                                  (void *)(uintptr_t)i);
            if (rc) {
                printf("send %llu rc=%s (async start)\n", (unsigned long long)i, smtpc_err_name(rc));
                failures++;
            } else {
                if (g_busy) {
                    smtpc_message *m2 = make_msg(9, i);
                    int brc = smtpc_client_send(c, m2, NULL);
                    int arc = smtpc_client_send_async(c, m2, on_done, NULL);
                    printf("busy rc=%s async_rc=%s\n", smtpc_err_name(brc), smtpc_err_name(arc));
                    smtpc_message_free(m2);
                }
                if (g_cancel_ms) {
                    usleep((useconds_t)(g_cancel_ms * 1000));
                    smtpc_client_cancel_async(c);
                }
                pthread_mutex_lock(&g_mu);
                while (g_calls == 0) pthread_cond_wait(&g_cv, &g_mu);
                pthread_mutex_unlock(&g_mu);
                usleep(200 * 1000); /* a second callback would show up here */
                printf("callback rc=%s calls=%d ms=%lld\n", smtpc_err_name(g_cb_rc), g_calls,
                       (long long)(smtpc__now_ms() - g_t0));
                if (g_cb_rc) failures++;
            }
        } else {
            smtpc_result *r = NULL;
            int rc;
            const smtpc_send_params *sp = g_use_params ? &g_params : NULL;
            if (g_raw_cb) {
                cb_src src = {raw, sizeof raw - 1};
                rc = smtpc_client_send_envelope_with(c, "a@example.org", g_to, g_nto, cb_read, &src, sp, &r);
            } else if (g_raw) {
                rc = smtpc_client_send_mem_with(c, "a@example.org", g_to, g_nto, raw, sizeof raw - 1, sp, &r);
            } else {
                rc = smtpc_client_send_with(c, m, sp, &r);
            }
            print_result(i, rc, r);
            smtpc_result_free(r);
            if (rc) failures++;
        }
        smtpc_message_free(m);
        if (g_sleep_ms && i + 1 < g_n) usleep((useconds_t)(g_sleep_ms * 1000));
    }
    printf("opened %llu\n", (unsigned long long)smtpc_pool_connections_opened(smtpc_client_pool(c)));
    printf("cbcalls %u\n", atomic_load(&g_cbcalls));
    fflush(stdout);
    smtpc_client_free(c);
    return failures ? 1 : 0;
}

/* ---- threads ---- */
static smtpc_pool *g_pool;
static atomic_uint g_ok, g_bad;

static void *thread_main(void *arg)
{
    unsigned t = (unsigned)(uintptr_t)arg;
    smtpc_client *c = make_client(g_pool);
    for (uint64_t i = 0; i < g_n; i++) {
        smtpc_message *m = make_msg(t, i);
        smtpc_result *r = NULL;
        int rc = smtpc_client_send(c, m, &r);
        if (rc) {
            print_result(i, rc, r);
            atomic_fetch_add(&g_bad, 1);
        } else {
            atomic_fetch_add(&g_ok, 1);
        }
        smtpc_result_free(r);
        smtpc_message_free(m);
    }
    smtpc_client_free(c);
    return NULL;
}

static int run_threads(void)
{
    if (smtpc_pool_new(&g_pool)) die("pool_new");
    smtpc_pool_set_max_per_endpoint(g_pool, (unsigned)g_per);
    smtpc_pool_set_max_messages(g_pool, 0);
    pthread_t th[64];
    for (uint64_t t = 0; t < g_threads; t++) pthread_create(&th[t], NULL, thread_main, (void *)(uintptr_t)t);
    for (uint64_t t = 0; t < g_threads; t++) pthread_join(th[t], NULL);
    printf("threads ok=%u failed=%u\n", atomic_load(&g_ok), atomic_load(&g_bad));
    printf("opened %llu\n", (unsigned long long)smtpc_pool_connections_opened(g_pool));
    fflush(stdout);
    smtpc_pool_free(g_pool);
    return atomic_load(&g_bad) ? 1 : 0;
}

/* ---- outbox ---- */
static int list_cb(void *ud, const smtpc_outbox_entry *e)
{
    (void)ud;
    printf("entry %s from=%s rcpts=%zu attempts=%u failed=%d error=%s\n", e->id, e->from, e->nrcpts, e->attempts,
           e->failed, e->last_error[0] ? e->last_error : "-");
    return 0;
}

static int run_outbox(void)
{
    int bad = 0;
    if (g_queue) {
        smtpc_client *c;
        if (smtpc_client_new(&c) || smtpc_client_set_delivery(c, SMTPC_DELIVERY_OUTBOX, g_outbox)) die("outbox client");
        for (uint64_t i = 0; i < g_n; i++) {
            smtpc_message *m = make_msg(0, i);
            smtpc_result *r = NULL;
            int rc = smtpc_client_send(c, m, &r);
            if (rc) {
                print_result(i, rc, r);
                bad++;
            } else {
                printf("queued %s\n", smtpc_result_queue_id(r));
            }
            smtpc_result_free(r);
            smtpc_message_free(m);
        }
        smtpc_client_free(c);
    }
    smtpc_outbox *ob;
    char err[512];
    if (smtpc_outbox_open(&ob, g_outbox, err, sizeof err)) die(err);
    smtpc_outbox_set_backoff(ob, (int64_t)g_backoff_ms, 2.0, 3600000, 0);
    if (g_flush) {
        smtpc_client *c = make_client(NULL);
        smtpc_outbox_stats st;
        int rc = smtpc_outbox_flush(ob, c, &st);
        printf("outbox sent=%u deferred=%u failed=%u not_due=%u rc=%s\n", st.sent, st.deferred, st.failed, st.not_due,
               smtpc_err_name(rc));
        if (rc) bad++;
        smtpc_client_free(c);
    }
    if (g_list) smtpc_outbox_list(ob, true, list_cb, NULL);
    smtpc_outbox_free(ob);
    fflush(stdout);
    return bad ? 1 : 0;
}

static uint64_t num(const char *s)
{
    uint64_t v = 0;
    if (!s || smtpc__parse_u64(s, strlen(s), &v)) die("bad number");
    return v;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (!strcmp(a, name) && (v || (die("missing value"), 0)) && ++i)
        if (ARG("--host")) g_host = v;
        else if (ARG("--port")) g_port = (uint16_t)num(v);
        else if (ARG("--to")) { if (g_nto < 64) g_to[g_nto++] = v; }
        else if (ARG("--n")) g_n = num(v);
        else if (ARG("--threads")) g_threads = num(v);
        else if (ARG("--per-endpoint")) g_per = num(v);
        else if (ARG("--prefix")) g_prefix = v;
        else if (ARG("--sleep-ms")) g_sleep_ms = num(v);
        else if (ARG("--cancel-after-ms")) g_cancel_ms = num(v);
        else if (ARG("--timeout-ms")) g_timeout_ms = num(v);
        else if (ARG("--noop-after-ms")) g_noop_after = !strcmp(v, "-1") ? -1 : (int64_t)num(v);
        else if (ARG("--max-idle-ms")) g_max_idle = (int64_t)num(v);
        else if (ARG("--max-messages")) g_max_msgs = (int64_t)num(v);
        else if (ARG("--config")) g_config = v;
        else if (ARG("--account")) g_account = v;
        else if (ARG("--outbox")) g_outbox = v;
        else if (ARG("--backoff-ms")) g_backoff_ms = num(v);
        else if (ARG("--second-ehlo")) g_ehlo2 = v;
        else if (ARG("--body-bytes")) g_body_bytes = num(v);
        else if (ARG("--tls")) { if (smtpc_tls_mode_parse(v, &g_tls)) die("bad --tls"); }
        else if (ARG("--user")) g_user = v;
        else if (ARG("--password")) g_pass = v;
        else if (ARG("--ca-file")) g_cafile = v;
        else if (ARG("--proxy")) g_proxy = v;
        else if (ARG("--retry")) {
            unsigned at;
            long long ini, mx;
            double f;
            if (sscanf(v, "%u,%lld,%lf,%lld", &at, &ini, &f, &mx) != 4) die("bad --retry");
            g_retry.attempts = at;
            g_retry.initial_delay_ms = ini;
            g_retry.backoff_factor = f;
            g_retry.max_delay_ms = mx;
        }
        else if (ARG("--dsn-ret")) { g_params.dsn_ret = v; g_use_params = true; }
        else if (ARG("--dsn-envid")) { g_params.dsn_envid = v; g_use_params = true; }
        else if (ARG("--dsn-notify")) { g_params.dsn_notify = v; g_use_params = true; }
        else if (ARG("--rcpt-notify") || ARG("--rcpt-orcpt")) {
            const char *eq = strchr(v, '=');
            if (!eq) die("--rcpt-notify/--rcpt-orcpt J=VALUE");
            char ix[16];
            size_t l = (size_t)(eq - v) < sizeof ix - 1 ? (size_t)(eq - v) : sizeof ix - 1;
            memcpy(ix, v, l);
            ix[l] = '\0';
            uint64_t j = num(ix);
            if (j >= 64) die("recipient index");
            if (!strcmp(a, "--rcpt-notify")) g_ropts[j].dsn_notify = eq + 1;
            else g_ropts[j].dsn_orcpt = eq + 1;
            g_params.rcpt = g_ropts;
            g_use_params = true;
        }
        else if (ARG("--ident")) {
            char *eq = strchr(argv[i], '='); /* argv is ours to modify */
            if (!eq || g_nident >= 16) die("--ident USER=SECRET");
            *eq = '\0';
            g_ident_user[g_nident] = argv[i];
            g_ident_pass[g_nident++] = eq + 1;
        }
        else if (ARG("--cred-cb-pass")) {
            if (g_ncred >= 16) die("too many --cred-cb-pass");
            g_cred_pass[g_ncred++] = v;
        }
        else if (!strcmp(a, "--dsn-require")) g_dsn_require = true;
        else if (!strcmp(a, "--bdat")) g_bdat = true;
        else if (!strcmp(a, "--strict")) g_strict = true;
        else if (!strcmp(a, "--async")) g_async = true;
        else if (!strcmp(a, "--busy-check")) g_busy = true;
        else if (!strcmp(a, "--queue")) g_queue = true;
        else if (!strcmp(a, "--flush")) g_flush = true;
        else if (!strcmp(a, "--list")) g_list = true;
        else if (!strcmp(a, "--raw")) g_raw = true;
        else if (!strcmp(a, "--raw-cb")) g_raw_cb = true;
        else die(a);
#undef ARG
    }
    if (g_nto == 0) g_to[g_nto++] = "b@example.org";
    if (g_params.rcpt) g_params.nrcpt = g_nto;
    if (g_outbox) return run_outbox();
    if (g_threads) return run_threads();
    if (g_ehlo2) return run_two_identities();
    return run_single();
}
