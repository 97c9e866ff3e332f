/* Test driver: a session or a client configured through smtpc_conn_opts
 * behaves like one configured through its own setters
 * (test_conn_opts_drivers.py).
 *
 *   drv_conn_opts HOST PORT --how HOW [options]
 *
 * HOW: session-setters, session-opts, client-setters, client-opts,
 * session-reopts (session-opts after a first open with the same options
 * but no CA file and no pins, which prints "first rc=SMTPC_X": the TLS
 * context built for it must not stay). The
 * "-opts" ways build one smtpc_conn_opts, hand it over with
 * smtpc_session_set_conn_opts / smtpc_client_set_conn_opts, then change
 * every setting of the object to something that would fail (another
 * server, other credentials, no CA, no pins, no TLS) and free it before
 * anything is sent: only a copy can still send. The session opens with
 * smtpc_session_open(s, NULL, 0) (the options' server).
 * Options: --mode M (smtpc_tls_mode_parse) --ca FILE --insecure --pin P
 *   (repeatable) --server-name NAME --user U --password P --auth LIST
 *   --allow-plain --ehlo NAME
 * Sends one message (a@example.org -> b@example.org). Prints:
 *   open rc=SMTPC_X          (sessions)
 *   send rc=SMTPC_X
 *   err MESSAGE              (escaped) when a step failed
 *   auth MECH|-  tls VERSION|-
 * Exit 0 when the message was sent, 1 when not, 2 for usage errors. */
#include <smtpc/smtpc.h>

#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PINS 4

typedef struct args {
    const char *host;
    uint16_t port;
    const char *how;
    smtpc_tls_mode mode;
    const char *ca, *server_name, *user, *password, *auth, *ehlo;
    const char *pins[MAX_PINS];
    size_t npins;
    bool insecure, allow_plain;
} args;

static const char body[] = "From: a@example.org\r\nTo: b@example.org\r\nSubject: conn opts\r\n\r\nhello\r\n";
static const char *const rcpts[] = {"b@example.org"};

static void die(const char *what)
{
    fprintf(stderr, "drv_conn_opts: %s\n", what);
    exit(2);
}

static void print_err(const char *m)
{
    char esc[1024];
    smtpc__escape_into(esc, sizeof esc, m, strlen(m));
    printf("err %s\n", esc);
}

static void parse(args *a, int argc, char **argv)
{
    memset(a, 0, sizeof *a);
    if (argc < 3) die("usage: HOST PORT --how HOW [options]");
    a->host = argv[1];
    uint64_t p = 0;
    if (smtpc__parse_u64(argv[2], strlen(argv[2]), &p) || !p || p > 65535) die("bad port");
    a->port = (uint16_t)p;
    for (int i = 3; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "--insecure")) a->insecure = true;
        else if (!strcmp(o, "--allow-plain")) a->allow_plain = true;
        else if (!v) die(o);
        else {
            i++;
            if (!strcmp(o, "--how")) a->how = v;
            else if (!strcmp(o, "--mode")) {
                if (smtpc_tls_mode_parse(v, &a->mode)) die("bad --mode");
            } else if (!strcmp(o, "--ca")) a->ca = v;
            else if (!strcmp(o, "--server-name")) a->server_name = v;
            else if (!strcmp(o, "--user")) a->user = v;
            else if (!strcmp(o, "--password")) a->password = v;
            else if (!strcmp(o, "--auth")) a->auth = v;
            else if (!strcmp(o, "--ehlo")) a->ehlo = v;
            else if (!strcmp(o, "--pin") && a->npins < MAX_PINS) a->pins[a->npins++] = v;
            else die(o);
        }
    }
    if (!a->how) die("--how");
}

/* ---- the settings through smtpc_conn_opts ---- */

static smtpc_conn_opts *build_opts(const args *a)
{
    smtpc_conn_opts *o;
    if (smtpc_conn_opts_new(&o)) die("conn_opts_new");
    int rc = smtpc_conn_opts_set_server(o, a->host, a->port);
    if (!rc) rc = smtpc_conn_opts_set_tls_mode(o, a->mode);
    if (!rc && a->ca) rc = smtpc_conn_opts_set_ca_file(o, a->ca);
    if (!rc && a->server_name) rc = smtpc_conn_opts_set_tls_server_name(o, a->server_name);
    for (size_t i = 0; !rc && i < a->npins; i++) rc = smtpc_conn_opts_add_pin(o, a->pins[i]);
    if (!rc && a->insecure) rc = smtpc_conn_opts_set_insecure(o, true);
    if (!rc && a->user) rc = smtpc_conn_opts_set_credentials(o, a->user, a->password);
    if (!rc && a->auth) rc = smtpc_conn_opts_set_auth_mechanisms(o, a->auth);
    if (!rc && a->allow_plain) rc = smtpc_conn_opts_set_allow_plaintext_auth(o, true);
    if (!rc && a->ehlo) rc = smtpc_conn_opts_set_ehlo_name(o, a->ehlo);
    if (!rc) rc = smtpc_conn_opts_set_command_timeout_ms(o, 10000);
    if (rc) die(smtpc_conn_opts_errmsg(o));
    return o;
}

/* After the hand-over: every setting changed to one that cannot send,
 * then freed. The driver must have copied. */
static void spoil_and_free(smtpc_conn_opts *o)
{
    if (smtpc_conn_opts_set_server(o, "192.0.2.1", 9) || smtpc_conn_opts_set_tls_mode(o, SMTPC_TLS_MODE_NONE) ||
        smtpc_conn_opts_set_ca_file(o, "/nonexistent/ca.pem") || smtpc_conn_opts_add_pin(o, NULL) ||
        smtpc_conn_opts_set_insecure(o, false) || smtpc_conn_opts_set_credentials(o, "mallory", "wrong") ||
        smtpc_conn_opts_set_allow_plaintext_auth(o, false) || smtpc_conn_opts_set_connect_timeout_ms(o, 1))
        die(smtpc_conn_opts_errmsg(o));
    smtpc_conn_opts_free(o);
}

/* ---- the session ---- */

static int session_setters(smtpc_session *s, const args *a)
{
    int rc = smtpc_session_set_tls_mode(s, a->mode);
    if (!rc && a->ca) rc = smtpc_session_set_ca_file(s, a->ca);
    if (!rc && a->server_name) rc = smtpc_session_set_tls_server_name(s, a->server_name);
    for (size_t i = 0; !rc && i < a->npins; i++) rc = smtpc_session_add_pin(s, a->pins[i]);
    if (!rc && a->insecure) rc = smtpc_session_set_insecure(s, true);
    if (!rc && a->user) rc = smtpc_session_set_credentials(s, a->user, a->password);
    if (!rc && a->auth) rc = smtpc_session_set_auth_mechanisms(s, a->auth);
    if (!rc && a->allow_plain) rc = smtpc_session_set_allow_plaintext_auth(s, true);
    if (!rc && a->ehlo) rc = smtpc_session_set_ehlo_name(s, a->ehlo);
    if (!rc) rc = smtpc_session_set_command_timeout_ms(s, 10000);
    return rc;
}

static int run_session(const args *a, bool via_opts, bool again)
{
    smtpc_session *s;
    if (smtpc_session_new(&s)) die("session_new");
    int rc;
    if (again) {
        args first = *a;
        first.ca = NULL;
        first.npins = 0;
        smtpc_conn_opts *o = build_opts(&first);
        if (smtpc_session_set_conn_opts(s, o)) die(smtpc_session_errmsg(s));
        smtpc_conn_opts_free(o);
        rc = smtpc_session_open(s, NULL, 0);
        printf("first rc=%s\n", smtpc_err_name(rc));
        if (!rc) (void)smtpc_session_quit(s);
    }
    if (via_opts) {
        smtpc_conn_opts *o = build_opts(a);
        rc = smtpc_session_set_conn_opts(s, o);
        spoil_and_free(o);
        if (rc) die(smtpc_session_errmsg(s));
        rc = smtpc_session_open(s, NULL, 0);
    } else {
        if (session_setters(s, a)) die(smtpc_session_errmsg(s));
        rc = smtpc_session_open(s, a->host, a->port);
    }
    printf("open rc=%s\n", smtpc_err_name(rc));
    if (rc) print_err(smtpc_session_errmsg(s));
    const char *mech = smtpc_session_auth_mechanism(s);
    const smtpc_tls_info *ti = smtpc_session_tls_info(s);
    printf("auth %s\ntls %s\n", mech ? mech : "-", ti ? ti->version : "-");
    if (!rc) {
        smtpc_envelope env;
        memset(&env, 0, sizeof env);
        env.from = "a@example.org";
        env.rcpts = rcpts;
        env.nrcpts = 1;
        rc = smtpc_session_send_mem(s, &env, body, sizeof body - 1);
        printf("send rc=%s\n", smtpc_err_name(rc));
        if (rc) print_err(smtpc_session_errmsg(s));
        (void)smtpc_session_quit(s);
    }
    smtpc_session_free(s);
    return rc;
}

/* ---- the client ---- */

static int client_setters(smtpc_client *c, const args *a)
{
    int rc = smtpc_client_set_host(c, a->host, a->port);
    if (!rc) rc = smtpc_client_set_tls_mode(c, a->mode);
    if (!rc && a->ca) rc = smtpc_client_set_ca_file(c, a->ca);
    if (!rc && a->server_name) rc = smtpc_client_set_tls_server_name(c, a->server_name);
    for (size_t i = 0; !rc && i < a->npins; i++) rc = smtpc_client_add_pin(c, a->pins[i]);
    if (!rc && a->insecure) rc = smtpc_client_set_insecure(c, true);
    if (!rc && a->user) rc = smtpc_client_set_credentials(c, a->user, a->password);
    if (!rc && a->auth) rc = smtpc_client_set_auth_mechanisms(c, a->auth);
    if (!rc && a->allow_plain) rc = smtpc_client_set_allow_plaintext_auth(c, true);
    if (!rc && a->ehlo) rc = smtpc_client_set_ehlo_name(c, a->ehlo);
    if (!rc) rc = smtpc_client_set_command_timeout_ms(c, 10000);
    return rc;
}

static int run_client(const args *a, bool via_opts)
{
    smtpc_client *c;
    if (smtpc_client_new(&c)) die("client_new");
    if (via_opts) {
        smtpc_conn_opts *o = build_opts(a);
        int rc = smtpc_client_set_conn_opts(c, o);
        spoil_and_free(o);
        if (rc) die(smtpc_client_errmsg(c));
    } else if (client_setters(c, a)) {
        die(smtpc_client_errmsg(c));
    }
    smtpc_result *r = NULL;
    int rc = smtpc_client_send_mem(c, "a@example.org", rcpts, 1, body, sizeof body - 1, &r);
    printf("send rc=%s\n", smtpc_err_name(rc));
    if (rc) print_err(r ? smtpc_result_errmsg(r) : smtpc_client_errmsg(c));
    const char *mech = smtpc_result_auth_mechanism(r), *tls = smtpc_result_tls_version(r);
    printf("auth %s\ntls %s\n", mech[0] ? mech : "-", tls[0] ? tls : "-");
    smtpc_result_free(r);
    smtpc_client_free(c);
    return rc;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    args a;
    parse(&a, argc, argv);
    int rc = 1;
    if (!strcmp(a.how, "session-setters")) rc = run_session(&a, false, false);
    else if (!strcmp(a.how, "session-opts")) rc = run_session(&a, true, false);
    else if (!strcmp(a.how, "session-reopts")) rc = run_session(&a, true, true);
    else if (!strcmp(a.how, "client-setters")) rc = run_client(&a, false);
    else if (!strcmp(a.how, "client-opts")) rc = run_client(&a, true);
    else die("bad --how");
    return rc ? 1 : 0;
}
