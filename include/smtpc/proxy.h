/* smtpc — proxies: where a connection goes through before it reaches the
 * SMTP server.
 *
 *   smtpc_proxy *p;
 *   char why[256];
 *   if (smtpc_proxy_parse_url(&p, "socks5h://me:s%40cret@[::1]:1080", why, sizeof why))
 *       fprintf(stderr, "bad proxy: %s\n", why);
 *
 * URL forms (the scheme is required, case-insensitive):
 *   socks4://host[:port]       SOCKS4; the target name is resolved locally
 *                              (IPv4 only); "user@" is sent as the SOCKS4 user id
 *   socks4a://host[:port]      SOCKS4a; the proxy resolves the target name
 *   socks5://[user:pass@]host[:port]   SOCKS5 (RFC 1928), target resolved locally
 *   socks5h://[user:pass@]host[:port]  SOCKS5, the proxy resolves the target name
 *   http://[user:pass@]host[:port]     HTTP CONNECT (Proxy-Authorization: Basic)
 *   https://[user:pass@]host[:port]    HTTP CONNECT over TLS to the proxy
 * Default ports: 1080 for socks*, 80 for http, 443 for https (as in any URL;
 * most HTTP proxies listen elsewhere, e.g. 3128: say so explicitly).
 * host is a name, an IPv4 address or a bracketed IPv6 literal "[::1]".
 * user and pass are percent-decoded ("%40" -> "@"); each is at most 255
 * bytes (the SOCKS5 limit). A trailing "/" is allowed; a path, query or
 * fragment is not.
 *
 * Credentials never appear in messages: smtpc_proxy_redacted() gives
 * "socks5h://me:***@[::1]:1080". The password is wiped when freed. */
#ifndef SMTPC_PROXY_H
#define SMTPC_PROXY_H

#include "common.h"
#include "errors.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum smtpc_proxy_type {
    SMTPC_PROXY_SOCKS4 = 1,
    SMTPC_PROXY_SOCKS4A,
    SMTPC_PROXY_SOCKS5,  /* target resolved by us */
    SMTPC_PROXY_SOCKS5H, /* target name resolved by the proxy */
    SMTPC_PROXY_HTTP,    /* HTTP CONNECT */
    SMTPC_PROXY_HTTPS    /* HTTP CONNECT inside TLS to the proxy */
} smtpc_proxy_type;

/* A proxy configuration (immutable once built, except by the setters). */
typedef struct smtpc_proxy smtpc_proxy;

/* Parses a proxy URL (see above). On success *out is a new configuration the
 * caller frees with smtpc_proxy_free(); on failure *out is untouched and, if
 * errbuf is not NULL, errbuf holds a message that never contains the
 * password or user name (always NUL-terminated, truncated to errbuf_size).
 * Errors: SMTPC_EINVAL (malformed URL, unknown scheme, bad port, credentials
 * too long or not allowed for the scheme), SMTPC_ENOMEM. */
SMTPC_API int smtpc_proxy_parse_url(smtpc_proxy **out, const char *url, char *errbuf,
                                    size_t errbuf_size);

/* Builds a configuration without a URL. host is a name or an IP address
 * (IPv6 without brackets); port 0 = the type's default port.
 * Errors: SMTPC_EINVAL (unknown type, empty host or with control
 * characters, host longer than 255 bytes), SMTPC_ENOMEM. */
SMTPC_API int smtpc_proxy_new(smtpc_proxy **out, smtpc_proxy_type type, const char *host,
                              uint16_t port);

/* Sets (user, pass) or clears (NULL, NULL) the credentials; copies both.
 * pass NULL with a user = empty password. Errors: SMTPC_EINVAL (NUL-free
 * strings longer than 255 bytes, an empty user with a password, a password
 * for SOCKS4/4a, which only carry a user id), SMTPC_ENOMEM. */
SMTPC_API int smtpc_proxy_set_auth(smtpc_proxy *p, const char *user, const char *pass);

/* A deep copy (credentials included). Errors: SMTPC_ENOMEM, SMTPC_EINVAL (p NULL). */
SMTPC_API int smtpc_proxy_dup(smtpc_proxy **out, const smtpc_proxy *p);

/* Frees p and wipes its credentials. NULL is a no-op. */
SMTPC_API void smtpc_proxy_free(smtpc_proxy *p);

SMTPC_API smtpc_proxy_type smtpc_proxy_get_type(const smtpc_proxy *p);
/* The host as given, without brackets ("::1"). Valid while p lives. */
SMTPC_API const char *smtpc_proxy_get_host(const smtpc_proxy *p);
SMTPC_API uint16_t smtpc_proxy_get_port(const smtpc_proxy *p);
/* The decoded user name, or NULL when none. Valid while p lives. */
SMTPC_API const char *smtpc_proxy_get_user(const smtpc_proxy *p);
/* The URL with the password replaced by "***" (and no password part at all
 * when there is none), e.g. "http://me:***@proxy.example:3128". Valid while
 * p lives and unchanged. */
SMTPC_API const char *smtpc_proxy_redacted(const smtpc_proxy *p);

/* "socks4", "socks4a", "socks5", "socks5h", "http", "https"; "?" otherwise. */
SMTPC_API const char *smtpc_proxy_type_name(smtpc_proxy_type type);

#ifdef __cplusplus
}
#endif
#endif
