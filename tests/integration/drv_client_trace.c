/* Test driver for the client's trace, progress and security facts
 * (tests/integration/test_client_trace.py).
 *
 *   drv_client_trace HOST PORT [options]
 *
 * One send with a fresh client (a message with --text, or with --raw-cb a
 * raw body from a read callback), then smtpc_client_free. Prints:
 *   T S|R|I|B LINE          each trace line (SENT, RECEIVED, INFO, BODY), also
 *                           those of the QUIT at smtpc_client_free
 *   P DONE TOTAL            each progress call
 *   R rc=SMTPC_X verified=0|1 security=tls|starttls|none version=V
 *   F                       after smtpc_client_free
 * Options: --tls MODE --ca-file PEM --insecure --trace-body --no-trace
 *   --text TEXT (the message's text; \n in it is a line break)
 *   --raw-cb (the body from a read callback: SIZE and 8BITMIME from
 *     smtpc_send_params) --raw-size N (the size declared; default the body's)
 *   --raw-8bit (body_8bit) --shared-pool (a pool kept after the client) */
#include <smtpc/smtpc.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void on_trace(void *ud, smtpc_trace_dir dir, const char *line, size_t len)
{
    (void)ud;
    static const char k[] = "SRIB";
    printf("T %c %.*s\n", dir <= SMTPC_TRACE_BODY ? k[dir] : '?', (int)len, line);
}

static void on_progress(void *ud, uint64_t done, uint64_t total)
{
    (void)ud;
    printf("P %llu %llu\n", (unsigned long long)done, (unsigned long long)total);
}

typedef struct body {
    const char *p;
    size_t left;
} body;

static ssize_t read_body(void *ud, void *buf, size_t len)
{
    body *b = ud;
    size_t n = b->left < 7 ? b->left : 7; /* small pieces: lines span reads */
    if (n > len) n = len;
    memcpy(buf, b->p, n);
    b->p += n;
    b->left -= n;
    return (ssize_t)n;
}

static int die(const char *what, int rc)
{
    fprintf(stderr, "drv_client_trace: %s: %s\n", what, smtpc_err_name(rc));
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 3) return die("usage: HOST PORT [options]", SMTPC_EINVAL);
    const char *host = argv[1], *cafile = NULL, *tls = "none";
    char text[4096] = "hello";
    bool insecure = false, body_lines = false, trace = true, raw = false, raw8 = false, shared = false;
    long long raw_size = -1;
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--tls")) tls = argv[++i];
        else if (!strcmp(a, "--ca-file")) cafile = argv[++i];
        else if (!strcmp(a, "--insecure")) insecure = true;
        else if (!strcmp(a, "--trace-body")) body_lines = true;
        else if (!strcmp(a, "--no-trace")) trace = false;
        else if (!strcmp(a, "--raw-cb")) raw = true;
        else if (!strcmp(a, "--raw-8bit")) raw8 = true;
        else if (!strcmp(a, "--shared-pool")) shared = true;
        else if (!strcmp(a, "--raw-size")) raw_size = strtoll(argv[++i], NULL, 10);
        else if (!strcmp(a, "--text")) {
            size_t n = 0;
            for (const char *p = v; *p && n + 1 < sizeof text; p++) {
                if (p[0] == '\\' && p[1] == 'n') {
                    text[n++] = '\n';
                    p++;
                } else {
                    text[n++] = *p;
                }
            }
            text[n] = '\0';
            i++;
        } else return die(a, SMTPC_EINVAL);
    }
    smtpc_tls_mode mode;
    if (smtpc_tls_mode_parse(tls, &mode)) return die("--tls", SMTPC_EINVAL);
    smtpc_client *c;
    smtpc_pool *pool = NULL;
    int rc = smtpc_client_new(&c);
    if (rc) return die("client", rc);
    if (!rc) rc = smtpc_client_set_host(c, host, (uint16_t)atoi(argv[2]));
    if (!rc) rc = smtpc_client_set_tls_mode(c, mode);
    if (!rc && cafile) rc = smtpc_client_set_ca_file(c, cafile);
    if (!rc && insecure) rc = smtpc_client_set_insecure(c, true);
    if (!rc && trace) rc = smtpc_client_set_trace(c, on_trace, NULL);
    if (!rc && body_lines) rc = smtpc_client_set_trace_body(c, true);
    if (!rc) rc = smtpc_client_set_progress(c, on_progress, NULL);
    if (!rc && shared && !(rc = smtpc_pool_new(&pool))) rc = smtpc_client_set_pool(c, pool);
    if (rc) return die(smtpc_client_errmsg(c), rc);
    smtpc_result *r = NULL;
    const char *rcpt = "b@example.org";
    if (raw) {
        char msg[4200];
        int n = snprintf(msg, sizeof msg, "Subject: raw\r\n\r\n%s\r\n", text);
        body b = {msg, (size_t)n};
        smtpc_send_params p;
        memset(&p, 0, sizeof p);
        p.size = raw_size >= 0 ? (uint64_t)raw_size : (uint64_t)n;
        p.body_8bit = raw8;
        rc = smtpc_client_send_envelope_with(c, "a@example.org", &rcpt, 1, read_body, &b, &p, &r);
    } else {
        smtpc_message *m;
        rc = smtpc_message_new(&m);
        if (!rc) rc = smtpc_message_set_from(m, "a@example.org");
        if (!rc) rc = smtpc_message_add_to(m, rcpt);
        if (!rc) rc = smtpc_message_set_subject(m, "traced");
        if (!rc) rc = smtpc_message_set_text(m, text, (size_t)-1);
        if (rc) return die("message", rc);
        rc = smtpc_client_send(c, m, &r);
        smtpc_message_free(m);
    }
    smtpc_tls_mode u = smtpc_result_security_used(r);
    printf("R rc=%s verified=%d security=%s version=%s\n", smtpc_err_name(rc), smtpc_result_tls_verified(r),
           u == SMTPC_TLS_MODE_IMPLICIT ? "tls" : u == SMTPC_TLS_MODE_STARTTLS ? "starttls" : "none",
           smtpc_result_tls_version(r)[0] ? smtpc_result_tls_version(r) : "-");
    if (rc) printf("E %s\n", smtpc_result_errmsg(r));
    smtpc_result_free(r);
    fflush(stdout);
    smtpc_client_free(c);
    printf("F\n");
    fflush(stdout);
    smtpc_pool_free(pool); /* QUIT of the shared pool's connection: not traced */
    return 0;
}
