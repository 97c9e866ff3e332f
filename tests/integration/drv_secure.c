/* Test driver for the session's TLS and AUTH (tests/integration/test_tls_auth_*.py).
 *
 *   drv_secure HOST PORT [options]
 *
 * smtpc_session_open(), then (with --send) one message, then QUIT. Prints:
 *   trace S|R|I LINE        every trace callback (escaped), as it happens
 *   token REFRESH           every token provider call (0/1)
 *   open rc=SMTPC_X ms=N
 *   err MESSAGE             when a step failed
 *   security MODE           smtpc_session_security_used
 *   auth MECH|-             smtpc_session_auth_mechanism
 *   offered LIST / allowed LIST
 *   again rc=SMTPC_X connected=0|1   (--starttls-again: STARTTLS a second time)
 *   tls VERSION verified=0|1   (when TLS was used)
 *   send rc=SMTPC_X
 * Exit status 0 when every step succeeded, else 1; 2 for usage errors.
 *
 * With --do LIST: the steps of LIST in order instead (connect, open, ehlo,
 * helo, starttls, auth, send, noop, quit; tests/integration/test_session_steps.py),
 * stopping at the first failure unless --keep-going; per step
 *   step NAME rc=SMTPC_X connected=0|1
 *   reply NAME CODE ENHANCED|TEXT   (the session's last reply, when there is one)
 *   err NAME MESSAGE                when rc != 0
 * then the trace and token lines as above, security MODE and auth MECH|-.
 * --ehlo NAME: the name given to the ehlo/helo steps (default NULL).
 *
 * Options: --mode M (smtpc_tls_mode_parse) --ca FILE --insecure --pin P
 *   --server-name NAME (the name the certificate must match) --user U --password P --token T --token2 T2 (a token provider that gives T,
 *   then T2 on refresh) --auth LIST --allow-plain --auto-ms N
 *   --command-timeout-ms N --send --from A --to A */
#include <smtpc/smtpc.h>

#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *g_tok1, *g_tok2;

static void print_escaped(const char *s, size_t n)
{
    char buf[8192];
    smtpc__escape_into(buf, sizeof buf, s, n);
    fputs(buf, stdout);
}

static void on_trace(void *ud, smtpc_trace_dir dir, const char *line, size_t len)
{
    (void)ud;
    printf("trace %c ", dir == SMTPC_TRACE_SENT ? 'S' : dir == SMTPC_TRACE_RECEIVED ? 'R' : 'I');
    print_escaped(line, len);
    putchar('\n');
    fflush(stdout);
}

static int on_token(void *ud, bool refresh, const char **token, size_t *len)
{
    (void)ud;
    printf("token %d\n", refresh ? 1 : 0);
    const char *t = refresh && g_tok2 ? g_tok2 : g_tok1;
    if (!t) return SMTPC_EAUTH;
    *token = t;
    *len = strlen(t);
    return 0;
}

static int send_one(smtpc_session *s, const char *from, const char *to)
{
    static const char msg[] = "Subject: drv_secure\r\n\r\nhello\r\n";
    const char *rcpts[] = {to};
    smtpc_envelope env;
    memset(&env, 0, sizeof env);
    env.from = from;
    env.rcpts = rcpts;
    env.nrcpts = 1;
    return smtpc_session_send_mem(s, &env, msg, sizeof msg - 1);
}

typedef struct steps_args {
    const char *host, *ehlo, *from, *to;
    uint16_t port;
    bool keep_going;
} steps_args;

static int one_step(smtpc_session *s, const char *step, const steps_args *a)
{
    if (!strcmp(step, "connect")) return smtpc_session_connect(s, a->host, a->port);
    if (!strcmp(step, "open")) return smtpc_session_open(s, a->host, a->port);
    if (!strcmp(step, "ehlo")) return smtpc_session_ehlo(s, a->ehlo);
    if (!strcmp(step, "helo")) return smtpc_session_helo(s, a->ehlo);
    if (!strcmp(step, "starttls")) return smtpc_session_starttls(s);
    if (!strcmp(step, "auth")) return smtpc_session_auth(s);
    if (!strcmp(step, "noop")) return smtpc_session_noop(s);
    if (!strcmp(step, "quit")) return smtpc_session_quit(s);
    if (!strcmp(step, "send")) return send_one(s, a->from, a->to);
    fprintf(stderr, "unknown step %s\n", step);
    exit(2);
}

/* --do: the session's calls one by one. */
static int run_steps(smtpc_session *s, char *steps, const steps_args *a)
{
    int status = 0;
    for (char *step = steps, *next; step && *step; step = next) {
        next = strchr(step, ',');
        if (next) *next++ = '\0';
        int rc = one_step(s, step, a);
        printf("step %s rc=%s connected=%d\n", step, smtpc_err_name(rc), smtpc_session_is_connected(s) ? 1 : 0);
        const smtpc_reply *r = smtpc_session_reply(s);
        if (r) {
            printf("reply %s %d %s|", step, smtpc_reply_code(r), smtpc_reply_enhanced(r));
            print_escaped(smtpc_reply_text(r), strlen(smtpc_reply_text(r)));
            putchar('\n');
        }
        if (rc) {
            printf("err %s ", step);
            print_escaped(smtpc_session_errmsg(s), strlen(smtpc_session_errmsg(s)));
            putchar('\n');
            status = 1;
            if (!a->keep_going) break;
        }
    }
    printf("security %s\n", smtpc_tls_mode_name(smtpc_session_security_used(s)));
    const char *m = smtpc_session_auth_mechanism(s);
    printf("auth %s\n", m ? m : "-");
    smtpc_session_free(s);
    return status;
}

int main(int argc, char **argv)
{
    if (argc < 3) return 2;
    const char *host = argv[1];
    uint64_t port = 0;
    if (smtpc__parse_u64(argv[2], strlen(argv[2]), &port) || port > 65535) return 2;
    smtpc_session *s;
    if (smtpc_session_new(&s)) return 2;
    smtpc_session_set_trace(s, on_trace, NULL);
    const char *user = NULL, *password = NULL, *from = "a@example.org", *to = "b@example.org";
    bool do_send = false, again = false;
    char steps[512] = "";
    steps_args sa = {.host = host, .port = (uint16_t)port};
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        uint64_t n = 0;
        if (!strcmp(a, "--insecure")) { rc = smtpc_session_set_insecure(s, true); continue; }
        if (!strcmp(a, "--allow-plain")) { rc = smtpc_session_set_allow_plaintext_auth(s, true); continue; }
        if (!strcmp(a, "--send")) { do_send = true; continue; }
        if (!strcmp(a, "--starttls-again")) { again = true; continue; }
        if (!strcmp(a, "--keep-going")) { sa.keep_going = true; continue; }
        if (!v) return 2;
        i++;
        if (!strcmp(a, "--mode")) {
            smtpc_tls_mode m;
            if (smtpc_tls_mode_parse(v, &m)) return 2;
            rc = smtpc_session_set_tls_mode(s, m);
        } else if (!strcmp(a, "--ca")) rc = smtpc_session_set_ca_file(s, v);
        else if (!strcmp(a, "--pin")) rc = smtpc_session_add_pin(s, v);
        else if (!strcmp(a, "--server-name")) rc = smtpc_session_set_tls_server_name(s, v);
        else if (!strcmp(a, "--user")) user = v;
        else if (!strcmp(a, "--password")) password = v;
        else if (!strcmp(a, "--token")) g_tok1 = v;
        else if (!strcmp(a, "--token2")) g_tok2 = v;
        else if (!strcmp(a, "--auth")) rc = smtpc_session_set_auth_mechanisms(s, v);
        else if (!strcmp(a, "--do")) smtpc__strlcpy(steps, v, sizeof steps);
        else if (!strcmp(a, "--ehlo")) sa.ehlo = v;
        else if (!strcmp(a, "--from")) from = v;
        else if (!strcmp(a, "--to")) to = v;
        else if (!strcmp(a, "--auto-ms") && !smtpc__parse_u64(v, strlen(v), &n))
            rc = smtpc_session_set_auto_timeout_ms(s, (int64_t)n);
        else if (!strcmp(a, "--command-timeout-ms") && !smtpc__parse_u64(v, strlen(v), &n))
            rc = smtpc_session_set_command_timeout_ms(s, (int64_t)n);
        else return 2;
        if (rc) {
            printf("option %s rc=%s err %s\n", a, smtpc_err_name(rc), smtpc_session_errmsg(s));
            return 2;
        }
    }
    if (user || password) {
        int rc = smtpc_session_set_credentials(s, user, password);
        if (rc) {
            printf("credentials rc=%s err %s\n", smtpc_err_name(rc), smtpc_session_errmsg(s));
            smtpc_session_free(s);
            return 1;
        }
    }
    if (g_tok1) smtpc_session_set_token_cb(s, on_token, NULL);
    if (steps[0]) {
        sa.from = from;
        sa.to = to;
        return run_steps(s, steps, &sa);
    }

    int64_t t0 = smtpc__now_ms();
    int rc = smtpc_session_open(s, host, (uint16_t)port);
    printf("open rc=%s ms=%lld\n", smtpc_err_name(rc), (long long)(smtpc__now_ms() - t0));
    if (rc) {
        printf("err ");
        print_escaped(smtpc_session_errmsg(s), strlen(smtpc_session_errmsg(s)));
        putchar('\n');
    }
    printf("security %s\n", smtpc_tls_mode_name(smtpc_session_security_used(s)));
    const char *m = smtpc_session_auth_mechanism(s);
    printf("auth %s\n", m ? m : "-");
    printf("offered %s\n", smtpc_session_auth_offered(s));
    printf("allowed %s\n", smtpc_session_auth_allowed(s));
    if (again) {
        int r2 = smtpc_session_starttls(s);
        printf("again rc=%s connected=%d\n", smtpc_err_name(r2), smtpc_session_is_connected(s) ? 1 : 0);
    }
    const smtpc_tls_info *ti = smtpc_session_tls_info(s);
    if (ti) printf("tls %s verified=%d\n", ti->version, ti->verified ? 1 : 0);
    int st = rc;
    if (!rc && do_send) {
        st = send_one(s, from, to);
        printf("send rc=%s\n", smtpc_err_name(st));
        if (st) printf("err %s\n", smtpc_session_errmsg(s));
    }
    if (smtpc_session_is_connected(s)) smtpc_session_quit(s);
    smtpc_session_free(s);
    return st ? 1 : 0;
}
