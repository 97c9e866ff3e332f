/* smtpc — connection options: one object for every driver.
 *
 * Where the server is, how the connection is protected, how it is reached
 * and how the client authenticates: the same settings, with the same
 * defaults and the same security policy, for the blocking session
 * (smtpc_session_set_conn_opts), the client (smtpc_client_set_conn_opts)
 * and the bulk driver (smtpc_bulk_set_conn_opts). Each of them copies the
 * object: it may be changed or freed afterwards.
 *
 *   smtpc_conn_opts *o;
 *   smtpc_conn_opts_new(&o);
 *   smtpc_conn_opts_set_server(o, "mail.example.org", 587);
 *   smtpc_conn_opts_set_credentials(o, "alice", "secret");
 *   smtpc_client_set_conn_opts(client, o);
 *   smtpc_bulk_set_conn_opts(bulk, o);
 *   smtpc_conn_opts_free(o);
 *
 * Setters copy their strings and return 0, SMTPC_EINVAL (NULL object, a bad
 * value: detail in smtpc_conn_opts_errmsg) or SMTPC_ENOMEM. Secrets
 * (password, token, proxy password) are wiped when replaced or freed. */
#ifndef SMTPC_CONN_H
#define SMTPC_CONN_H

#include "common.h"
#include "errors.h"
#include "proxy.h"
#include "tls.h"

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* How the connection is protected (RFC 8314, RFC 3207):
 *   IMPLICIT            TLS from the first byte (port 465).
 *   STARTTLS            required: if the server does not offer STARTTLS or
 *                       refuses it, fail (SMTPC_ETLS) before MAIL or AUTH.
 *   STARTTLS_OPTIONAL   opportunistic: plaintext only when STARTTLS is not
 *                       offered, and then never with credentials unless
 *                       plaintext authentication is allowed. A server that
 *                       offers STARTTLS and then fails it is an error.
 *   NONE                no TLS.
 *   AUTO                like a mail client's account wizard: implicit TLS
 *                       first, then plaintext + STARTTLS, each attempt with
 *                       the short auto timeout for the TLS handshake and the
 *                       greeting; plaintext only without credentials (as
 *                       STARTTLS_OPTIONAL).
 *   DEFAULT             by port: 465 IMPLICIT; 25 without credentials
 *                       STARTTLS_OPTIONAL (relay); otherwise (587, other
 *                       ports, any port with credentials) STARTTLS.
 * Certificates are verified by default (system store, or ca-file/ca-path):
 * chain, dates, and the server's name (an IP literal is checked against IP
 * SANs). */
typedef enum smtpc_tls_mode {
    SMTPC_TLS_MODE_DEFAULT = 0,
    SMTPC_TLS_MODE_NONE = 1,
    SMTPC_TLS_MODE_IMPLICIT = 2,
    SMTPC_TLS_MODE_STARTTLS = 3,
    SMTPC_TLS_MODE_STARTTLS_OPTIONAL = 4,
    SMTPC_TLS_MODE_AUTO = 5
} smtpc_tls_mode;

/* "none", "implicit", "starttls", "starttls-optional", "auto", "default";
 * "unknown" otherwise. Never NULL. */
SMTPC_API const char *smtpc_tls_mode_name(int mode);
/* Parses those names (case-insensitive; "tls" and "ssl" mean implicit,
 * "starttls-opt"/"opportunistic" mean starttls-optional). 0 or SMTPC_EINVAL. */
SMTPC_API int smtpc_tls_mode_parse(const char *name, smtpc_tls_mode *out);
/* The mode DEFAULT stands for on this port, with or without credentials;
 * any other mode is returned as it is. */
SMTPC_API smtpc_tls_mode smtpc_tls_mode_effective(smtpc_tls_mode mode, uint16_t port, bool credentials);

typedef enum smtpc_family {
    SMTPC_FAMILY_ANY = 0,  /* both, Happy Eyeballs (RFC 8305) between them */
    SMTPC_FAMILY_IPV4 = 4, /* IPv4 only (-4) */
    SMTPC_FAMILY_IPV6 = 6  /* IPv6 only (-6) */
} smtpc_family;

typedef struct smtpc_conn_opts smtpc_conn_opts;

/* A new object with the defaults: no server, TLS mode DEFAULT, certificates
 * verified against the system store, TLS 1.2 or newer, no proxy, no
 * credentials, every timeout the driver's default. *out untouched on
 * failure. Errors: SMTPC_EINVAL, SMTPC_ENOMEM. */
SMTPC_API int smtpc_conn_opts_new(smtpc_conn_opts **out);
/* A copy of o (secrets included). Errors: SMTPC_EINVAL, SMTPC_ENOMEM. */
SMTPC_API int smtpc_conn_opts_dup(smtpc_conn_opts **out, const smtpc_conn_opts *o);
/* Wipes the secrets and frees. NULL is a no-op. */
SMTPC_API void smtpc_conn_opts_free(smtpc_conn_opts *o);
/* What the last failed setter found wrong ("" when none). Never NULL. */
SMTPC_API const char *smtpc_conn_opts_errmsg(const smtpc_conn_opts *o);

/* ---- the server and how to reach it ---------------------------------------- */
/* Host name, IPv4 or IPv6 literal; port 0 = by the TLS mode: 465 for
 * IMPLICIT, 587 for STARTTLS, else 25. NULL host clears. */
SMTPC_API int smtpc_conn_opts_set_server(smtpc_conn_opts *o, const char *host, uint16_t port);
/* Local address (and port, 0 = any) to connect from; NULL = any. */
SMTPC_API int smtpc_conn_opts_set_bind(smtpc_conn_opts *o, const char *addr, uint16_t port);
/* Which addresses of the server (or of the proxy) are tried. */
SMTPC_API int smtpc_conn_opts_set_family(smtpc_conn_opts *o, smtpc_family family);
/* A proxy (smtpc/proxy.h), copied with its credentials; NULL = direct. */
SMTPC_API int smtpc_conn_opts_set_proxy(smtpc_conn_opts *o, const smtpc_proxy *p);
/* The same from a URL (socks5h://user:pass@host:port ...); NULL or "" = direct.
 * The error message never holds the password. */
SMTPC_API int smtpc_conn_opts_set_proxy_url(smtpc_conn_opts *o, const char *url);
/* The name sent in EHLO/HELO (a domain or an address literal); NULL = the
 * default (the host's fully qualified name, else [address literal]). */
SMTPC_API int smtpc_conn_opts_set_ehlo_name(smtpc_conn_opts *o, const char *name);

/* ---- timeouts (milliseconds; 0 = the driver's default) ---------------------- */
SMTPC_API int smtpc_conn_opts_set_connect_timeout_ms(smtpc_conn_opts *o, int64_t ms);
SMTPC_API int smtpc_conn_opts_set_greeting_timeout_ms(smtpc_conn_opts *o, int64_t ms);
SMTPC_API int smtpc_conn_opts_set_command_timeout_ms(smtpc_conn_opts *o, int64_t ms);
/* The wait for the reply to the end of data. */
SMTPC_API int smtpc_conn_opts_set_data_timeout_ms(smtpc_conn_opts *o, int64_t ms);
/* Per-attempt timeout of AUTO (TLS handshake + greeting); 0 = 5 s. */
SMTPC_API int smtpc_conn_opts_set_auto_timeout_ms(smtpc_conn_opts *o, int64_t ms);

/* ---- TLS -------------------------------------------------------------------------- */
SMTPC_API int smtpc_conn_opts_set_tls_mode(smtpc_conn_opts *o, smtpc_tls_mode mode);
/* Trusted CAs instead of the system store (PEM bundle / hashed directory);
 * NULL = unset. Files are read when a connection is made: an unreadable one
 * fails it with SMTPC_ECONFIG before any network activity. */
SMTPC_API int smtpc_conn_opts_set_ca_file(smtpc_conn_opts *o, const char *path);
SMTPC_API int smtpc_conn_opts_set_ca_path(smtpc_conn_opts *o, const char *dir);
/* The name the certificate must match (and SNI) when it differs from the
 * server's host; NULL = the host. */
SMTPC_API int smtpc_conn_opts_set_tls_server_name(smtpc_conn_opts *o, const char *name);
/* Adds a public-key pin "sha256//" + base64 of SHA-256(SubjectPublicKeyInfo);
 * when pins are set one must match (also with insecure). NULL clears. */
SMTPC_API int smtpc_conn_opts_add_pin(smtpc_conn_opts *o, const char *pin);
/* Client certificate chain and key (PEM); key NULL = in the cert file.
 * NULL cert clears. */
SMTPC_API int smtpc_conn_opts_set_client_cert(smtpc_conn_opts *o, const char *cert_file,
                                              const char *key_file);
/* Turns certificate verification off (pins are still checked). */
SMTPC_API int smtpc_conn_opts_set_insecure(smtpc_conn_opts *o, bool insecure);
/* TLS versions (smtpc_tls_version; 0 = default: min TLS 1.2, max newest);
 * strict: a version this build cannot do fails the connection with
 * SMTPC_EUNSUPPORTED instead of using the nearest one. Either way a
 * minimum is never lowered (1.3 on a build without it fails). */
SMTPC_API int smtpc_conn_opts_set_tls_versions(smtpc_conn_opts *o, int min_version, int max_version,
                                               bool strict);

/* ---- authentication (RFC 4954) --------------------------------------------------- */
/* CR or LF in them: SMTPC_EINVAL. NULL user clears. */
SMTPC_API int smtpc_conn_opts_set_credentials(smtpc_conn_opts *o, const char *user,
                                              const char *password);
SMTPC_API int smtpc_conn_opts_set_authzid(smtpc_conn_opts *o, const char *authzid);
/* OAuth 2.0 access token for XOAUTH2 / OAUTHBEARER. */
SMTPC_API int smtpc_conn_opts_set_oauth_token(smtpc_conn_opts *o, const char *token);
/* A token provider instead of a fixed token (see smtpc_token_cb). */
SMTPC_API int smtpc_conn_opts_set_token_cb(smtpc_conn_opts *o, smtpc_token_cb cb, void *userdata);
/* Allowed mechanisms, e.g. "SCRAM-SHA-256,PLAIN"; NULL = every mechanism the
 * credentials allow, PLAIN/LOGIN only on an encrypted connection.
 * SMTPC_EINVAL on an unknown name. */
SMTPC_API int smtpc_conn_opts_set_auth_mechanisms(smtpc_conn_opts *o, const char *list);
/* Allows credentials over an unencrypted connection (default: never). */
SMTPC_API int smtpc_conn_opts_set_allow_plaintext_auth(smtpc_conn_opts *o, bool allow);
/* SCRAM: the fewest PBKDF2 iterations a server may ask for; fewer fails
 * the authentication with SMTPC_EAUTH. 0 = the default, 4096 (RFC 7677);
 * lower it only for a server known to use fewer. Over 10,000,000 (the
 * most ever done): SMTPC_EINVAL. */
SMTPC_API int smtpc_conn_opts_set_scram_min_iterations(smtpc_conn_opts *o, unsigned n);

#ifdef __cplusplus
}
#endif
#endif
