/* Benchmark driver: N messages of SIZE bytes over ONE session (pipelined
 * MAIL/RCPT/DATA when the server offers PIPELINING). Used by bench/bench.py.
 *   bench_smtpc [--n N] [--size BYTES] [--rcpts K] [--client|--batch] [--tls] [--ca FILE] HOST PORT
 * --client: through the client API (smtpc_client_send_mem on its pooled
 * connection, one connection for all messages) instead of the session.
 * --tls: implicit TLS (SMTPS), verified against --ca FILE; without --ca
 * the certificate is not verified.
 * --batch: through smtpc_client_send_batch (1,000 messages per call,
 * pipelined across messages) on the same pooled connection. */
#include <smtpc/smtpc.h>

#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    uint64_t n = 5000, size = 10240, nrcpt = 1;
    const char *host = NULL, *port = NULL;
    int use_client = 0, tls = 0;
    const char *ca = NULL;
    for (int i = 1; i < argc; i++) {
        uint64_t *slot = NULL;
        if (!strcmp(argv[i], "--client")) { use_client = 1; continue; }
        if (!strcmp(argv[i], "--tls")) { tls = 1; continue; }
        if (!strcmp(argv[i], "--ca") && i + 1 < argc) { ca = argv[++i]; continue; }
        if (!strcmp(argv[i], "--batch")) { use_client = 2; continue; }
        if (!strcmp(argv[i], "--n")) slot = &n;
        else if (!strcmp(argv[i], "--size")) slot = &size;
        else if (!strcmp(argv[i], "--rcpts")) slot = &nrcpt;
        if (slot) {
            if (i + 1 >= argc || smtpc__parse_u64(argv[i + 1], strlen(argv[i + 1]), slot)) {
                fprintf(stderr, "bad value for %s\n", argv[i]);
                return 64;
            }
            i++;
        } else if (!host) host = argv[i];
        else if (!port) port = argv[i];
        else { fprintf(stderr, "usage: bench_smtpc [--n N] [--size B] [--rcpts K] HOST PORT\n"); return 64; }
    }
    uint64_t portnum = 0;
    if (!host || !port || smtpc__parse_u64(port, strlen(port), &portnum) || portnum > 65535 || nrcpt == 0 || nrcpt > 100) {
        fprintf(stderr, "usage: bench_smtpc [--n N] [--size B] [--rcpts K] HOST PORT\n");
        return 64;
    }
    /* A 10 KB-ish message: headers plus 78-octet lines. */
    static const char hdr[] = "From: a@example.org\r\nTo: b@example.org\r\nSubject: bench\r\n\r\n";
    char *msg = malloc(size + 80);
    if (!msg) return 70;
    size_t len = strlen(hdr);
    memcpy(msg, hdr, len);
    while (len < size) {
        size_t take = size - len < 78 ? size - len : 78;
        memset(msg + len, 'x', take);
        len += take;
        if (len + 2 <= size + 80) { msg[len++] = '\r'; msg[len++] = '\n'; }
    }
    char rcptbuf[100][32];
    const char *rcpts[100];
    for (uint64_t i = 0; i < nrcpt; i++) {
        snprintf(rcptbuf[i], sizeof rcptbuf[i], "b%u@example.org", (unsigned)i);
        rcpts[i] = rcptbuf[i];
    }
    smtpc_envelope env;
    memset(&env, 0, sizeof env);
    env.from = "a@example.org";
    env.rcpts = rcpts;
    env.nrcpts = (size_t)nrcpt;

    if (use_client) {
        smtpc_client *c;
        if (smtpc_client_new(&c)) return 70;
        smtpc_client_set_host(c, host, (uint16_t)portnum);
        smtpc_client_set_tls_mode(c, tls ? SMTPC_TLS_MODE_IMPLICIT : SMTPC_TLS_MODE_NONE);
        if (tls && ca) smtpc_client_set_ca_file(c, ca);
        if (tls && !ca) smtpc_client_set_insecure(c, true);
        smtpc_client_set_ehlo_name(c, "bench.example.org");
        smtpc_pool_set_max_messages(smtpc_client_pool(c), 0); /* one connection for all */
        int rc = 0;
        if (use_client == 2) {
            smtpc_batch_item items[1000];
            for (size_t k = 0; k < 1000; k++)
                items[k] = (smtpc_batch_item){NULL, env.from, rcpts, env.nrcpts, msg, len};
            for (uint64_t i = 0; !rc && i < n; i += 1000)
                rc = smtpc_client_send_batch(c, items, n - i < 1000 ? (size_t)(n - i) : 1000, NULL, NULL);
        }
        for (uint64_t i = 0; use_client == 1 && !rc && i < n; i++)
            rc = smtpc_client_send_mem(c, env.from, rcpts, env.nrcpts, msg, len, NULL);
        if (rc) fprintf(stderr, "bench_smtpc --client: %s: %s\n", smtpc_err_name(rc), smtpc_client_errmsg(c));
        uint64_t opened = smtpc_pool_connections_opened(smtpc_client_pool(c));
        smtpc_client_free(c);
        free(msg);
        if (!rc && opened != 1) {
            fprintf(stderr, "bench_smtpc --client: %llu connections, expected 1\n", (unsigned long long)opened);
            return 1;
        }
        return rc ? 1 : 0;
    }

    smtpc_session *s;
    if (smtpc_session_new(&s)) return 70;
    smtpc_session_set_ehlo_name(s, "bench.example.org");
    smtpc_session_set_tls_mode(s, tls ? SMTPC_TLS_MODE_IMPLICIT : SMTPC_TLS_MODE_NONE);
    if (tls && ca) smtpc_session_set_ca_file(s, ca);
    if (tls && !ca) smtpc_session_set_insecure(s, true);
    int rc = smtpc_session_connect(s, host, (uint16_t)portnum);
    if (!rc) rc = smtpc_session_ehlo(s, NULL);
    for (uint64_t i = 0; !rc && i < n; i++) rc = smtpc_session_send_mem(s, &env, msg, len);
    if (rc) fprintf(stderr, "bench_smtpc: %s: %s\n", smtpc_err_name(rc), smtpc_session_errmsg(s));
    smtpc_session_quit(s);
    smtpc_session_free(s);
    free(msg);
    return rc ? 1 : 0;
}
