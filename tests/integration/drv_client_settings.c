/* Test driver for the client's session-like settings (test_client_settings.py):
 * several clients on one shared pool, each with its own settings.
 *
 *   drv_client_settings --host H --port P [--n N] [--sleep-ms MS]
 *                       --client [client options] [--client [client options] ...]
 *
 * Send I (0-based) goes through client I modulo the number of clients.
 * Client options (each applies to the latest --client):
 *   --tls MODE --ca-file F --ca-path DIR --server-name NAME --cert F [--key F]
 *   --pin PIN (repeatable) --insecure --bind ADDR --bind-port P --family 4|6
 *   --timeout-ms N --deadline-ms N --greeting-timeout-ms N --authzid ID
 *   --oauth-token T   (through smtpc_client_set_conn_opts, which replaces
 *                     the client's connection settings: the server, no TLS,
 *                     the EHLO name, user "alice" with the token for
 *                     XOAUTH2, plaintext authentication allowed)
 * Prints:
 *   send I client=K rc=SMTPC_X reused=0|1 tls=VERSION
 *   err I MESSAGE
 *   opened N        (connections the shared pool opened)
 * Exit 0 when every send succeeded, 1 when some failed, 2 on bad usage. */
#include <smtpc/smtpc.h>

#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAXC 8

static void die(const char *what)
{
    fprintf(stderr, "drv_client_settings: %s\n", what);
    exit(2);
}

static uint64_t num(const char *s)
{
    uint64_t v = 0;
    if (!s || smtpc__parse_u64(s, strlen(s), &v)) die("bad number");
    return v;
}

/* Applies one client option; false when a is not one. */
static bool client_opt(smtpc_client *c, const char *a, const char *v, int *used)
{
    int rc = 0;
    *used = 1;
    if (!strcmp(a, "--insecure")) {
        *used = 0;
        rc = smtpc_client_set_insecure(c, true);
    } else if (!v) {
        return false;
    } else if (!strcmp(a, "--tls")) {
        smtpc_tls_mode m;
        if (smtpc_tls_mode_parse(v, &m)) die("bad --tls");
        rc = smtpc_client_set_tls_mode(c, m);
    } else if (!strcmp(a, "--ca-file")) rc = smtpc_client_set_ca_file(c, v);
    else if (!strcmp(a, "--ca-path")) rc = smtpc_client_set_ca_path(c, v);
    else if (!strcmp(a, "--server-name")) rc = smtpc_client_set_tls_server_name(c, v);
    else if (!strcmp(a, "--cert")) rc = smtpc_client_set_client_cert(c, v, NULL);
    else if (!strcmp(a, "--key")) die("--key goes right after --cert (--cert F --key K)");
    else if (!strcmp(a, "--pin")) rc = smtpc_client_add_pin(c, v);
    else if (!strcmp(a, "--family")) rc = smtpc_client_set_family(c, (smtpc_family)num(v));
    else if (!strcmp(a, "--timeout-ms")) rc = smtpc_client_set_timeout_ms(c, (int64_t)num(v));
    else if (!strcmp(a, "--deadline-ms")) rc = smtpc_client_set_deadline_ms(c, (int64_t)num(v));
    else if (!strcmp(a, "--greeting-timeout-ms")) rc = smtpc_client_set_greeting_timeout_ms(c, (int64_t)num(v));
    else if (!strcmp(a, "--authzid")) rc = smtpc_client_set_authzid(c, v);
    else return false;
    if (rc) die(smtpc_client_errmsg(c));
    return true;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *host = "127.0.0.1";
    uint16_t port = 0;
    uint64_t n = 1, sleep_ms = 0;
    smtpc_client *cl[MAXC];
    const char *bind_addr[MAXC], *token[MAXC];
    size_t ncl = 0;
    smtpc_pool *pool;
    if (smtpc_pool_new(&pool)) die("pool_new");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int used = 0;
        if (!strcmp(a, "--client")) {
            if (ncl == MAXC) die("too many clients");
            smtpc_client *c;
            if (smtpc_client_new(&c)) die("client_new");
            /* test servers listen on random ports: no TLS unless --tls */
            smtpc_client_set_tls_mode(c, SMTPC_TLS_MODE_NONE);
            smtpc_client_set_ehlo_name(c, "drv.example");
            smtpc_client_set_pool(c, pool);
            bind_addr[ncl] = token[ncl] = NULL;
            cl[ncl++] = c;
        } else if (!strcmp(a, "--host") && v) {
            host = v;
            i++;
        } else if (!strcmp(a, "--port") && v) {
            port = (uint16_t)num(v);
            i++;
        } else if (!strcmp(a, "--n") && v) {
            n = num(v);
            i++;
        } else if (!strcmp(a, "--sleep-ms") && v) {
            sleep_ms = num(v);
            i++;
        } else if (ncl && !strcmp(a, "--cert") && v && i + 3 < argc && !strcmp(argv[i + 2], "--key")) {
            if (smtpc_client_set_client_cert(cl[ncl - 1], v, argv[i + 3])) die(smtpc_client_errmsg(cl[ncl - 1]));
            i += 3;
        } else if (ncl && !strcmp(a, "--bind") && v) {
            bind_addr[ncl - 1] = v;
            if (smtpc_client_set_bind(cl[ncl - 1], v, 0)) die(smtpc_client_errmsg(cl[ncl - 1]));
            i++;
        } else if (ncl && !strcmp(a, "--bind-port") && v) {
            if (smtpc_client_set_bind(cl[ncl - 1], bind_addr[ncl - 1], (uint16_t)num(v)))
                die(smtpc_client_errmsg(cl[ncl - 1]));
            i++;
        } else if (ncl && !strcmp(a, "--oauth-token") && v) {
            token[ncl - 1] = v;
            i++;
        } else if (ncl && client_opt(cl[ncl - 1], a, v, &used)) {
            i += used;
        } else {
            die(a);
        }
    }
    if (!ncl || !port) die("usage: --host H --port P --client [options] ...");
    for (size_t k = 0; k < ncl; k++) {
        if (smtpc_client_set_host(cl[k], host, port)) die("set_host");
        if (!token[k]) continue;
        smtpc_conn_opts *o;
        if (smtpc_conn_opts_new(&o) || smtpc_conn_opts_set_server(o, host, port) ||
            smtpc_conn_opts_set_tls_mode(o, SMTPC_TLS_MODE_NONE) || smtpc_conn_opts_set_ehlo_name(o, "drv.example") ||
            smtpc_conn_opts_set_credentials(o, "alice", NULL) || smtpc_conn_opts_set_oauth_token(o, token[k]) ||
            smtpc_conn_opts_set_allow_plaintext_auth(o, true))
            die("conn_opts");
        if (smtpc_client_set_conn_opts(cl[k], o)) die(smtpc_client_errmsg(cl[k]));
        smtpc_conn_opts_free(o);
    }

    static const char body[] = "From: a@example.org\r\nTo: b@example.org\r\nSubject: settings\r\n\r\nhello\r\n";
    const char *rcpts[] = {"b@example.org"};
    int failures = 0;
    for (uint64_t i = 0; i < n; i++) {
        size_t k = (size_t)(i % ncl);
        smtpc_result *r = NULL;
        int rc = smtpc_client_send_mem(cl[k], "a@example.org", rcpts, 1, body, sizeof body - 1, &r);
        printf("send %llu client=%zu rc=%s reused=%d tls=%s\n", (unsigned long long)i, k, smtpc_err_name(rc),
               smtpc_result_reused_connection(r), smtpc_result_tls_version(r)[0] ? smtpc_result_tls_version(r) : "-");
        if (rc) {
            char esc[1024];
            const char *m = r ? smtpc_result_errmsg(r) : smtpc_client_errmsg(cl[k]);
            smtpc__escape_into(esc, sizeof esc, m, strlen(m));
            printf("err %llu %s\n", (unsigned long long)i, esc);
            failures++;
        }
        smtpc_result_free(r);
        if (sleep_ms && i + 1 < n) usleep((useconds_t)(sleep_ms * 1000));
    }
    printf("opened %llu\n", (unsigned long long)smtpc_pool_connections_opened(pool));
    for (size_t k = 0; k < ncl; k++) smtpc_client_free(cl[k]);
    smtpc_pool_free(pool);
    return failures ? 1 : 0;
}
