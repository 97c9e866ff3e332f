/* Connection options inside the library: the public smtpc_conn_opts with
 * its fields visible to the drivers (session, client, bulk), which embed
 * one by value and apply it the same way. Setters put their detail in
 * o->err; a driver's own setter copies it to its handle. */
#ifndef SMTPC_CONN_CONN_OPTS_H
#define SMTPC_CONN_CONN_OPTS_H

#include <smtpc/conn.h>

#include "engine/opener.h"
#include "engine/sasl.h"
#include "net/tls.h"
#include "util/util.h"

/* Room for the pins, ';'-separated with the NUL. */
#define SMTPC__PINS_MAX 2048
/* AUTO's per-attempt timeout when none is set. */
#define SMTPC__AUTO_MS_DEFAULT 5000

struct smtpc_conn_opts {
    char *host;
    uint16_t port;          /* 0 = by the TLS mode (smtpc__conn_opts_port) */
    /* timeouts; 0 = the driver's default */
    int64_t connect_ms, greeting_ms, command_ms, data_ms, auto_ms;
    char *ehlo_name;        /* NULL = default */
    char *bind_addr;
    uint16_t bind_port;
    int family;             /* AF_UNSPEC, AF_INET, AF_INET6 */
    smtpc_proxy *proxy;     /* NULL = direct */

    smtpc_tls_mode tls_mode;
    char *ca_file, *ca_path, *cert_file, *key_file;
    char *tls_name;         /* the name to verify instead of host */
    char pins[SMTPC__PINS_MAX];
    bool insecure, tls_strict;
    int tls_min, tls_max;

    char *user, *password, *authzid, *oauth_token;
    smtpc_token_cb token_cb;
    void *token_ud;
    smtpc__sasl_mask auth_list;
    bool auth_list_set, allow_plain_auth;
    unsigned scram_min_iter; /* 0 = SMTPC__SASL_MIN_SCRAM_ITER */

    smtpc__errmsg err;
};

/* An embedded object: the defaults / release what it owns (wiping secrets). */
void smtpc__conn_opts_init(smtpc_conn_opts *o);
void smtpc__conn_opts_clear(smtpc_conn_opts *o);
/* dst becomes a deep copy of src (dst's old contents released). On failure
 * (SMTPC_ENOMEM) dst is unchanged. */
int smtpc__conn_opts_copy(smtpc_conn_opts *dst, const smtpc_conn_opts *src);

/* Credentials of any kind are set (user with password, token or callback,
 * or a client certificate with EXTERNAL allowed). */
bool smtpc__conn_opts_have_creds(const smtpc_conn_opts *o);
/* The port to connect to: the one set, else by the TLS mode. */
uint16_t smtpc__conn_opts_port(const smtpc_conn_opts *o);
/* The TLS mode applied on port (DEFAULT resolved). */
smtpc_tls_mode smtpc__conn_opts_effective_mode(const smtpc_conn_opts *o, uint16_t port);
/* The TLS layer's configuration (borrows o's strings). */
void smtpc__conn_opts_tls_config(const smtpc_conn_opts *o, smtpc__tls_config *cfg);
/* SASL credentials (borrows o's strings); the connection's part (host,
 * port, client_cert) is the caller's to fill. */
void smtpc__conn_opts_sasl_creds(const smtpc_conn_opts *o, smtpc__sasl_creds *c);
/* The mechanisms that may be used now with credentials c: none on a plain
 * connection unless plaintext authentication is allowed (credentials never
 * travel in clear otherwise); then the default for c, cut to the list set. */
smtpc__sasl_mask smtpc__conn_opts_allowed_mechs(const smtpc_conn_opts *o, const smtpc__sasl_creds *c,
                                               bool encrypted);

/* The connection opener's policy from o (its strings borrowed from o);
 * client_cert: the TLS context has a client certificate (EXTERNAL). */
void smtpc__conn_opts_opener_policy(const smtpc_conn_opts *o, bool client_cert, smtpc__opener_policy *p);

#endif
