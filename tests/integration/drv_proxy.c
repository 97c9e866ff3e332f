/* drv_proxy URL HOST PORT [TIMEOUT_MS [CANCEL_AFTER_MS]]
 *
 * Connects to HOST:PORT through the proxy URL with smtpc__proxy_connect,
 * reads one line (the target's greeting), sends "PING through proxy\r\n",
 * reads the echoed line. Prints
 *   GREETING: <line>        ECHO: <line>          on success (exit 0)
 *   ERROR <SMTPC_NAME>: <message>                 on failure (exit 1)
 *   ELAPSED_MS: <n>                               always
 * CANCEL_AFTER_MS > 0 writes to the cancel pipe after that long.
 * For https:// proxies, $SMTPC_TEST_PROXY_CA names the CA file that
 * verifies the proxy (unset: the default context, system trust store). */
#include "net/proxy.h"
#include "net/tls.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int cancel_pipe[2] = {-1, -1};
static long cancel_after_ms;

static void *canceller(void *arg)
{
    SMTPC__UNUSED(arg);
    struct timespec ts = {cancel_after_ms / 1000, (cancel_after_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    ssize_t w = write(cancel_pipe[1], "x", 1);
    SMTPC__UNUSED(w);
    return NULL;
}

static int64_t t0;

static int fail(int rc, const char *msg)
{
    printf("ERROR %s: %s\n", smtpc_err_name(rc), msg);
    printf("ELAPSED_MS: %lld\n", (long long)(smtpc__now_ms() - t0));
    return 1;
}

/* Reads up to CRLF (bounded) through the chain. */
static int read_line(smtpc__transport *t, char *line, size_t cap, int64_t deadline,
                     smtpc__errmsg *err)
{
    size_t n = 0;
    for (;;) {
        int want = 0;
        char c;
        ssize_t k = smtpc__transport_read(t, &c, 1, &want);
        if (k == SMTPC_EAGAIN) {
            int rc = smtpc__wait_fd(t->fd, want, deadline, cancel_pipe[0]);
            if (rc) return smtpc__err(err, rc, "waiting for a line: %s", smtpc_strerror(rc));
            continue;
        }
        if (k < 0) return smtpc__err(err, (int)k, "%s", t->err.text);
        if (k == 0) return smtpc__err(err, SMTPC_ECLOSED, "target closed the connection");
        if (c == '\n') {
            if (n && line[n - 1] == '\r') n--;
            line[n] = '\0';
            return 0;
        }
        if (n + 1 >= cap) return smtpc__err(err, SMTPC_ELIMIT, "line too long");
        line[n++] = c;
    }
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: drv_proxy URL HOST PORT [TIMEOUT_MS [CANCEL_AFTER_MS]]\n");
        return 2;
    }
    t0 = smtpc__now_ms();
    long timeout = argc > 4 ? strtol(argv[4], NULL, 10) : 10000;
    cancel_after_ms = argc > 5 ? strtol(argv[5], NULL, 10) : 0;
    if (pipe(cancel_pipe) != 0) return 2;
    pthread_t th;
    if (cancel_after_ms > 0 && pthread_create(&th, NULL, canceller, NULL) != 0) return 2;

    smtpc_proxy *cfg = NULL;
    char why[256];
    int rc = smtpc_proxy_parse_url(&cfg, argv[1], why, sizeof why);
    if (rc) return fail(rc, why);

    smtpc__tcp_opts opts = {NULL, 0, AF_UNSPEC, t0 + timeout, cancel_pipe[0]};
    smtpc__errmsg err;
    smtpc__err_clear(&err);
    smtpc__transport *t = NULL;
    long port = strtol(argv[3], NULL, 10);
    smtpc__tls_ctx *ptls = NULL;
    const char *ca = getenv("SMTPC_TEST_PROXY_CA");
    if (ca && *ca) {
        smtpc__tls_config tc;
        memset(&tc, 0, sizeof tc);
        tc.ca_file = ca;
        rc = smtpc__tls_ctx_new(&ptls, &tc, &err);
        if (rc) return fail(rc, err.text);
    }
    rc = smtpc__proxy_connect(&t, cfg, argv[2], (uint16_t)port, &opts, ptls, &err);
    smtpc__tls_ctx_free(ptls);
    smtpc_proxy_free(cfg);
    if (rc) return fail(rc, err.text);

    char line[1024];
    int64_t deadline = smtpc__now_ms() + timeout;
    rc = read_line(t, line, sizeof line, deadline, &err);
    if (rc) {
        smtpc__transport_free(t);
        return fail(rc, err.text);
    }
    printf("GREETING: %s\n", line);
    static const char ping[] = "PING through proxy\r\n";
    size_t off = 0;
    while (off < sizeof ping - 1) {
        int want = 0;
        ssize_t k = smtpc__transport_write(t, ping + off, sizeof ping - 1 - off, &want);
        if (k == SMTPC_EAGAIN) {
            rc = smtpc__wait_fd(t->fd, want, deadline, cancel_pipe[0]);
            if (rc) break;
            continue;
        }
        if (k < 0) {
            rc = (int)k;
            break;
        }
        off += (size_t)k;
    }
    if (rc) {
        smtpc__transport_free(t);
        return fail(rc, "writing through the proxy failed");
    }
    rc = read_line(t, line, sizeof line, deadline, &err);
    smtpc__transport_free(t);
    if (rc) return fail(rc, err.text);
    printf("ECHO: %s\n", line);
    printf("ELAPSED_MS: %lld\n", (long long)(smtpc__now_ms() - t0));
    return 0;
}
