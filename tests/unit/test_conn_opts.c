/* Connection options: validation, defaults, the TLS policy by port, deep copies. */
#include "t.h"

#include <smtpc/smtpc.h>

#include "conn/conn_opts.h"

TEST(defaults_and_policy)
{
    smtpc_conn_opts *o = NULL;
    CHECK_INT(smtpc_conn_opts_new(&o), 0);
    CHECK_INT(o->tls_mode, SMTPC_TLS_MODE_DEFAULT);
    CHECK(!o->insecure);
    CHECK(!o->allow_plain_auth);
    /* DEFAULT by port: 465 implicit, 25 opportunistic without credentials,
     * required everywhere else and with credentials */
    CHECK_INT(smtpc__conn_opts_effective_mode(o, 465), SMTPC_TLS_MODE_IMPLICIT);
    CHECK_INT(smtpc__conn_opts_effective_mode(o, 25), SMTPC_TLS_MODE_STARTTLS_OPTIONAL);
    CHECK_INT(smtpc__conn_opts_effective_mode(o, 587), SMTPC_TLS_MODE_STARTTLS);
    CHECK_INT(smtpc__conn_opts_effective_mode(o, 2525), SMTPC_TLS_MODE_STARTTLS);
    CHECK_INT(smtpc_conn_opts_set_credentials(o, "u", "p"), 0);
    CHECK_INT(smtpc__conn_opts_effective_mode(o, 25), SMTPC_TLS_MODE_STARTTLS);
    CHECK_INT(smtpc_tls_mode_effective(SMTPC_TLS_MODE_NONE, 465, true), SMTPC_TLS_MODE_NONE);
    /* port 0: by the mode */
    CHECK_INT(smtpc__conn_opts_port(o), 25);
    CHECK_INT(smtpc_conn_opts_set_tls_mode(o, SMTPC_TLS_MODE_IMPLICIT), 0);
    CHECK_INT(smtpc__conn_opts_port(o), 465);
    CHECK_INT(smtpc_conn_opts_set_tls_mode(o, SMTPC_TLS_MODE_STARTTLS), 0);
    CHECK_INT(smtpc__conn_opts_port(o), 587);
    CHECK_INT(smtpc_conn_opts_set_server(o, "h", 2525), 0);
    CHECK_INT(smtpc__conn_opts_port(o), 2525);
    /* credentials are never allowed in the clear unless asked for */
    smtpc__sasl_creds c;
    smtpc__conn_opts_sasl_creds(o, &c);
    CHECK_INT(smtpc__conn_opts_allowed_mechs(o, &c, false), 0);
    CHECK(smtpc__conn_opts_allowed_mechs(o, &c, true) & SMTPC__SASL_BIT(SMTPC__SASL_PLAIN));
    CHECK_INT(smtpc_conn_opts_set_allow_plaintext_auth(o, true), 0);
    CHECK(smtpc__conn_opts_allowed_mechs(o, &c, false) & SMTPC__SASL_BIT(SMTPC__SASL_PLAIN));
    CHECK_INT(smtpc_conn_opts_set_auth_mechanisms(o, "CRAM-MD5"), 0);
    CHECK_INT(smtpc__conn_opts_allowed_mechs(o, &c, true), SMTPC__SASL_BIT(SMTPC__SASL_CRAM_MD5));
    smtpc_conn_opts_free(o);
    smtpc_conn_opts_free(NULL);
}

TEST(validation)
{
    smtpc_conn_opts *o = NULL;
    CHECK_INT(smtpc_conn_opts_new(&o), 0);
    CHECK_INT(smtpc_conn_opts_set_server(o, "a b", 25), SMTPC_EINVAL);
    CHECK(strstr(smtpc_conn_opts_errmsg(o), "server") != NULL);
    CHECK_INT(smtpc_conn_opts_set_credentials(o, "u\r\nMAIL FROM:<x>", "p"), SMTPC_EINVAL);
    CHECK_INT(smtpc_conn_opts_set_credentials(o, NULL, "p"), SMTPC_EINVAL);
    CHECK_INT(smtpc_conn_opts_set_oauth_token(o, "t\n"), SMTPC_EINVAL);
    CHECK_INT(smtpc_conn_opts_set_ehlo_name(o, "bad name"), SMTPC_EINVAL);
    CHECK_INT(smtpc_conn_opts_set_ca_file(o, "x\ny"), SMTPC_EINVAL);
    CHECK_INT(smtpc_conn_opts_set_tls_mode(o, (smtpc_tls_mode)42), SMTPC_EINVAL);
    CHECK_INT(smtpc_conn_opts_set_tls_versions(o, SMTPC_TLS_1_3, SMTPC_TLS_1_2, false), SMTPC_EINVAL);
    CHECK_INT(smtpc_conn_opts_set_family(o, (smtpc_family)5), SMTPC_EINVAL);
    CHECK_INT(smtpc_conn_opts_set_connect_timeout_ms(o, -1), SMTPC_EINVAL);
    CHECK_INT(smtpc_conn_opts_add_pin(o, "sha256//nope;x"), SMTPC_EINVAL);
    CHECK_INT(smtpc_conn_opts_set_auth_mechanisms(o, "NOPE"), SMTPC_EINVAL);
    CHECK_INT(smtpc_conn_opts_set_proxy_url(o, "socks5://u:hunter2@"), SMTPC_EINVAL);
    CHECK(strstr(smtpc_conn_opts_errmsg(o), "hunter2") == NULL);
    CHECK_INT(smtpc_conn_opts_set_client_cert(o, NULL, "k.pem"), SMTPC_EINVAL);
    CHECK_INT(smtpc_conn_opts_set_server(NULL, "h", 25), SMTPC_EINVAL);
    /* nothing half-set by the failures */
    CHECK(o->host == NULL && o->user == NULL && o->proxy == NULL && !o->auth_list_set);
    smtpc_conn_opts_free(o);
}

TEST(copy_is_deep)
{
    smtpc_conn_opts *o = NULL, *d = NULL;
    CHECK_INT(smtpc_conn_opts_new(&o), 0);
    CHECK_INT(smtpc_conn_opts_set_server(o, "mail.example.org", 587), 0);
    CHECK_INT(smtpc_conn_opts_set_credentials(o, "alice", "s3cret"), 0);
    CHECK_INT(smtpc_conn_opts_set_proxy_url(o, "socks5h://u:p@127.0.0.1:1080"), 0);
    CHECK_INT(smtpc_conn_opts_set_ca_file(o, "/ca.pem"), 0);
    CHECK_INT(smtpc_conn_opts_set_family(o, SMTPC_FAMILY_IPV6), 0);
    CHECK_INT(smtpc_conn_opts_dup(&d, o), 0);
    smtpc_conn_opts_free(o);
    CHECK_STR(d->host, "mail.example.org");
    CHECK_INT(d->port, 587);
    CHECK_STR(d->password, "s3cret");
    CHECK_STR(d->ca_file, "/ca.pem");
    CHECK(d->proxy != NULL);
    CHECK_STR(smtpc_proxy_get_host(d->proxy), "127.0.0.1");
    CHECK(smtpc__conn_opts_have_creds(d));
    smtpc_conn_opts_free(d);
}

/* The SCRAM minimum reaches the SASL credentials the drivers build (and a
 * copy), 0 meaning the library's 4096. */
TEST(scram_min_iterations)
{
    smtpc_conn_opts *o = NULL, *d = NULL;
    CHECK_INT(smtpc_conn_opts_new(&o), 0);
    smtpc__sasl_creds c;
    smtpc__conn_opts_sasl_creds(o, &c);
    CHECK_INT(c.scram_min_iterations, 0); /* the default */
    CHECK_INT(smtpc_conn_opts_set_scram_min_iterations(o, 1), 0);
    smtpc__conn_opts_sasl_creds(o, &c);
    CHECK_INT(c.scram_min_iterations, 1);
    CHECK_INT(smtpc_conn_opts_set_scram_min_iterations(o, SMTPC__SASL_MAX_SCRAM_ITER + 1), SMTPC_EINVAL);
    CHECK(strstr(smtpc_conn_opts_errmsg(o), "SCRAM") != NULL);
    CHECK_INT(smtpc_conn_opts_set_scram_min_iterations(NULL, 1), SMTPC_EINVAL);
    CHECK_INT(smtpc_conn_opts_set_scram_min_iterations(o, 20000), 0);
    CHECK_INT(smtpc_conn_opts_dup(&d, o), 0);
    smtpc__conn_opts_sasl_creds(d, &c);
    CHECK_INT(c.scram_min_iterations, 20000);
    /* and the SASL layer then refuses the RFC's own 4096 */
    CHECK_INT(smtpc_conn_opts_set_credentials(d, "user", "pencil"), 0);
    smtpc__conn_opts_sasl_creds(d, &c);
    smtpc__sasl *s = NULL;
    smtpc__errmsg err;
    CHECK_INT(smtpc__sasl_new(&s, SMTPC__SASL_SCRAM_SHA_1, &c, &err), 0);
    CHECK_INT(smtpc__sasl_set_nonce(s, "fyko+d2lbbFgONRv9qkxdawL"), 0);
    smtpc__sasl_line ir, r;
    CHECK_INT(smtpc__sasl_start(s, &ir), 0);
    /* base64 of "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096" */
    const char *first = "cj1meWtvK2QybGJiRmdPTlJ2OXFreGRhd0wzcmZjTkhZSlkxWlZ2V1ZzN2oscz1RU1hDUitRNnNlazhiZjkyLGk9NDA5Ng==";
    CHECK_INT(smtpc__sasl_step(s, first, strlen(first), &r), SMTPC_EAUTH);
    CHECK(strstr(smtpc__sasl_errmsg(s), "20000") != NULL);
    smtpc__sasl_free(s);
    smtpc_conn_opts_free(o);
    smtpc_conn_opts_free(d);
}

int main(void)
{
    RUN(defaults_and_policy);
    RUN(validation);
    RUN(copy_is_deep);
    RUN(scram_min_iterations);
    T_DONE();
}
