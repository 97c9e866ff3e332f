/* smtpc_bulk's connection settings through the public API: smtpc_bulk_set_conn_opts
 * and the typed TLS mode (what the network does with them: test_bulk_conn_opts.py). */
#include "t.h"

#include <smtpc/smtpc.h>

#include <string.h>

static int no_msgs(void *ud, smtpc_bulk_msg *m)
{
    (void)ud;
    (void)m;
    return 0;
}

TEST(tls_modes)
{
    /* the old names are the session's values now (IMPLICIT was 1, and 2 was
     * bulk's STARTTLS: the session's IMPLICIT silently meant STARTTLS) */
    CHECK_INT(SMTPC_BULK_TLS_NONE, SMTPC_TLS_MODE_NONE);
    CHECK_INT(SMTPC_BULK_TLS_IMPLICIT, SMTPC_TLS_MODE_IMPLICIT);
    CHECK_INT(SMTPC_BULK_TLS_STARTTLS, SMTPC_TLS_MODE_STARTTLS);
    smtpc_bulk *b = NULL;
    CHECK_INT(smtpc_bulk_new(&b, "127.0.0.1", 0), 0);
    for (int m = SMTPC_TLS_MODE_DEFAULT; m <= SMTPC_TLS_MODE_STARTTLS_OPTIONAL; m++)
        CHECK_INT(smtpc_bulk_set_tls(b, (smtpc_tls_mode)m, NULL, NULL, false), 0);
    CHECK_INT(smtpc_bulk_set_tls(b, (smtpc_tls_mode)99, NULL, NULL, false), SMTPC_EINVAL);
    CHECK(strstr(smtpc_bulk_errmsg(b), "invalid TLS mode") != NULL);
    CHECK_INT(smtpc_bulk_set_tls(b, SMTPC_TLS_MODE_AUTO, NULL, NULL, false), 0); /* probed at start */
    /* the names go through the options' checks */
    CHECK_INT(smtpc_bulk_set_tls(b, SMTPC_TLS_MODE_NONE, "", NULL, false), SMTPC_EINVAL);
    smtpc_bulk_free(b);
}

TEST(set_conn_opts)
{
    smtpc_bulk *b = NULL;
    smtpc_conn_opts *o = NULL;
    CHECK_INT(smtpc_bulk_new(&b, "127.0.0.1", 1), 0);
    CHECK_INT(smtpc_conn_opts_new(&o), 0);
    CHECK_INT(smtpc_bulk_set_conn_opts(NULL, o), SMTPC_EINVAL);
    CHECK_INT(smtpc_bulk_set_conn_opts(b, NULL), SMTPC_EINVAL);
    CHECK_INT(smtpc_bulk_set_conn_opts(b, o), 0);
    CHECK_INT(smtpc_conn_opts_set_tls_mode(o, SMTPC_TLS_MODE_AUTO), 0);
    CHECK_INT(smtpc_bulk_set_conn_opts(b, o), 0);
    CHECK_INT(smtpc_conn_opts_set_tls_mode(o, SMTPC_TLS_MODE_NONE), 0);
    CHECK_INT(smtpc_conn_opts_set_credentials(o, "u", "p"), 0);
    CHECK_INT(smtpc_bulk_set_conn_opts(b, o), 0);
    smtpc_conn_opts_free(o); /* copied */
    /* the single setters go through the same checks */
    CHECK_INT(smtpc_bulk_set_credentials(b, "u\r\n", "p"), SMTPC_EINVAL);
    CHECK(strstr(smtpc_bulk_errmsg(b), "CR or LF") != NULL);
    CHECK_INT(smtpc_bulk_set_auth_mechanisms(b, "NOPE"), SMTPC_EINVAL);
    CHECK_INT(smtpc_bulk_set_ehlo_name(b, "a b"), SMTPC_EINVAL);
    CHECK_INT(smtpc_bulk_set_ehlo_name(b, NULL), 0); /* back to the default */
    /* after start: refused */
    CHECK_INT(smtpc_bulk_set_source(b, no_msgs, NULL), 0);
    CHECK_INT(smtpc_bulk_start(b), 0);
    CHECK_INT(smtpc_conn_opts_new(&o), 0);
    CHECK_INT(smtpc_bulk_set_conn_opts(b, o), SMTPC_EINVAL);
    CHECK(strstr(smtpc_bulk_errmsg(b), "already started") != NULL);
    CHECK_INT(smtpc_bulk_set_tls(b, SMTPC_TLS_MODE_NONE, NULL, NULL, false), SMTPC_EINVAL);
    smtpc_conn_opts_free(o);
    smtpc_bulk_free(b);
}

TEST(tls_config_read_at_start)
{
    smtpc_bulk *b = NULL;
    CHECK_INT(smtpc_bulk_new(&b, "127.0.0.1", 1), 0);
    CHECK_INT(smtpc_bulk_set_source(b, no_msgs, NULL), 0);
    CHECK_INT(smtpc_bulk_set_tls(b, SMTPC_TLS_MODE_STARTTLS, NULL, "/nonexistent/ca.pem", false), 0);
    CHECK_INT(smtpc_bulk_start(b), SMTPC_ECONFIG);
    CHECK(strstr(smtpc_bulk_errmsg(b), "/nonexistent/ca.pem") != NULL);
    smtpc_bulk_free(b);
    /* plaintext: no TLS configuration is read at all */
    CHECK_INT(smtpc_bulk_new(&b, "127.0.0.1", 1), 0);
    CHECK_INT(smtpc_bulk_set_source(b, no_msgs, NULL), 0);
    CHECK_INT(smtpc_bulk_set_tls(b, SMTPC_TLS_MODE_NONE, NULL, "/nonexistent/ca.pem", false), 0);
    CHECK_INT(smtpc_bulk_start(b), 0);
    smtpc_bulk_free(b);
}

int main(void)
{
    RUN(tls_modes);
    RUN(set_conn_opts);
    RUN(tls_config_read_at_start);
    T_DONE();
}
