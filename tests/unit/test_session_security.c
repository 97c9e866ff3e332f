/* The session's TLS and AUTH API without a server: mode names, setter
 * validation, states, and the policy checks that need no network. */
#include "t.h"

#include <smtpc/smtpc.h>

#include <string.h>

TEST(mode_names_round_trip)
{
    static const char *const names[] = {"default", "none", "implicit", "starttls",
                                        "starttls-optional", "auto"};
    for (int i = 0; i < 6; i++) {
        smtpc_tls_mode m;
        CHECK_STR(smtpc_tls_mode_name(i), names[i]);
        CHECK_INT(smtpc_tls_mode_parse(names[i], &m), 0);
        CHECK_INT((int)m, i);
    }
    smtpc_tls_mode m;
    CHECK_INT(smtpc_tls_mode_parse("TLS", &m), 0);
    CHECK_INT((int)m, SMTPC_TLS_MODE_IMPLICIT);
    CHECK_INT(smtpc_tls_mode_parse("maybe", &m), SMTPC_EINVAL);
    CHECK_STR(smtpc_tls_mode_name(99), "unknown");
}

TEST(setters_validate)
{
    smtpc_session *s;
    CHECK_INT(smtpc_session_new(&s), 0);
    CHECK_INT(smtpc_session_set_tls_mode(s, (smtpc_tls_mode)42), SMTPC_EINVAL);
    CHECK_INT(smtpc_session_set_tls_mode(s, SMTPC_TLS_MODE_AUTO), 0);
    CHECK_INT(smtpc_session_add_pin(s, "sha256//tooshort"), SMTPC_EINVAL);
    CHECK_INT(smtpc_session_add_pin(s, "md5//AAAA"), SMTPC_EINVAL);
    CHECK_INT(smtpc_session_add_pin(s, "sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="), 0);
    CHECK_INT(smtpc_session_add_pin(s, NULL), 0);
    CHECK_INT(smtpc_session_set_tls_versions(s, SMTPC_TLS_1_3, SMTPC_TLS_1_2, false), SMTPC_EINVAL);
    CHECK_INT(smtpc_session_set_tls_versions(s, 9, 0, false), SMTPC_EINVAL);
    CHECK_INT(smtpc_session_set_tls_versions(s, SMTPC_TLS_1_2, SMTPC_TLS_1_3, true), 0);
    CHECK_INT(smtpc_session_set_credentials(s, "alice", "pw\r\nRSET"), SMTPC_EINVAL);
    CHECK_INT(smtpc_session_set_credentials(s, "al\nice", "pw"), SMTPC_EINVAL);
    CHECK_INT(smtpc_session_set_credentials(s, NULL, "pw"), SMTPC_EINVAL);
    CHECK_INT(smtpc_session_set_credentials(s, "alice", "pw"), 0);
    CHECK_INT(smtpc_session_set_oauth_token(s, "tok\n"), SMTPC_EINVAL);
    CHECK_INT(smtpc_session_set_auth_mechanisms(s, "SCRAM-SHA-256,PLAIN"), 0);
    CHECK_INT(smtpc_session_set_auth_mechanisms(s, "PLAIN,NOPE"), SMTPC_EINVAL);
    CHECK(strstr(smtpc_session_errmsg(s), "NOPE") != NULL);
    CHECK_INT(smtpc_session_set_auth_mechanisms(s, NULL), 0);
    CHECK_INT(smtpc_session_set_client_cert(s, NULL, "key.pem"), SMTPC_EINVAL);
    CHECK_INT(smtpc_session_set_auto_timeout_ms(s, -1), SMTPC_EINVAL);
    smtpc_session_free(s);
    CHECK_INT(smtpc_session_set_tls_mode(NULL, SMTPC_TLS_MODE_NONE), SMTPC_EINVAL);
    CHECK_INT(smtpc_session_set_trace(NULL, NULL, NULL), SMTPC_EINVAL);
}

TEST(states_without_a_connection)
{
    smtpc_session *s;
    CHECK_INT(smtpc_session_new(&s), 0);
    CHECK_INT(smtpc_session_starttls(s), SMTPC_ESTATE);
    CHECK_INT(smtpc_session_auth(s), SMTPC_ESTATE);
    CHECK(smtpc_session_tls_info(s) == NULL);
    CHECK_INT((int)smtpc_session_security_used(s), SMTPC_TLS_MODE_NONE);
    CHECK(smtpc_session_auth_mechanism(s) == NULL);
    CHECK(smtpc_session_greeting(s) == NULL);
    CHECK_STR(smtpc_session_auth_offered(s), "");
    CHECK_INT(smtpc_session_starttls(NULL), SMTPC_EINVAL);
    CHECK_INT(smtpc_session_open(NULL, "x", 25), SMTPC_EINVAL);
    smtpc_session_free(s);
}

TEST(bad_tls_files_fail_before_any_network)
{
    smtpc_session *s;
    CHECK_INT(smtpc_session_new(&s), 0);
    CHECK_INT(smtpc_session_set_ca_file(s, "/nonexistent/ca.pem"), 0);
    CHECK_INT(smtpc_session_set_tls_mode(s, SMTPC_TLS_MODE_IMPLICIT), 0);
    /* port 1 on loopback: a network attempt would be ENETWORK, not ECONFIG */
    CHECK_INT(smtpc_session_connect(s, "127.0.0.1", 1), SMTPC_ECONFIG);
    CHECK_INT(smtpc_session_set_tls_mode(s, SMTPC_TLS_MODE_NONE), 0);
    CHECK_INT(smtpc_session_connect(s, "127.0.0.1", 1), SMTPC_ENETWORK);
    smtpc_session_free(s);
}

int main(void)
{
    RUN(mode_names_round_trip);
    RUN(setters_validate);
    RUN(states_without_a_connection);
    RUN(bad_tls_files_fail_before_any_network);
    T_DONE();
}
