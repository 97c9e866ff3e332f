/* smtpc — the session: one SMTP connection, driven step by step (blocking).
 *
 *   smtpc_session *s;
 *   smtpc_session_new(&s);
 *   smtpc_session_connect(s, "mail.example.org", 25);
 *   smtpc_session_ehlo(s, NULL);
 *   smtpc_session_mail_from(s, "a@example.org", NULL);
 *   smtpc_session_rcpt_to(s, "b@example.org", NULL);
 *   smtpc_session_data_mem(s, msg, len);
 *   smtpc_session_quit(s);
 *   smtpc_session_free(s);
 *
 * Every call returns 0 or a negative SMTPC_E* code (smtpc/errors.h); after
 * each command smtpc_session_reply() gives the server's reply and
 * smtpc_session_errmsg() the detail of a failure. A 4xx reply returns
 * SMTPC_ETEMPFAIL, a 5xx SMTPC_EPERMFAIL. A 421 at any point closes the
 * session. Writes never raise SIGPIPE.
 *
 * A session is used by one thread at a time, except smtpc_session_cancel(),
 * which any thread (or a signal handler) may call at any time.
 *
 * Which errors end the connection: network failure (SMTPC_ENETWORK,
 * SMTPC_ECLOSED), timeouts, cancel, protocol violations (SMTPC_EPROTO,
 * SMTPC_ELIMIT), a 421 reply and an aborted body. After them
 * smtpc_session_is_connected() is false and smtpc_session_connect() may be
 * called again. A 4xx/5xx reply to a command (SMTPC_ETEMPFAIL /
 * SMTPC_EPERMFAIL) and an invalid argument (SMTPC_EINVAL, nothing sent) keep
 * the connection. A call on an unconnected session returns SMTPC_ESTATE.
 *
 * Name resolution (getaddrinfo) is blocking: neither the connect timeout nor
 * a cancel interrupt it; they apply from the first connection attempt on. */
#ifndef SMTPC_SESSION_H
#define SMTPC_SESSION_H

#include "common.h"
#include "conn.h"
#include "errors.h"
#include "proxy.h"
#include "reply.h"
#include "tls.h"

#include <stdbool.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct smtpc_session smtpc_session;

/* Creates a session with default options. *out is untouched on failure.
 * Errors: SMTPC_ENOMEM, SMTPC_EIO (cancel eventfd). */
SMTPC_API int smtpc_session_new(smtpc_session **out);
/* Closes the connection without QUIT (call smtpc_session_quit first for a
 * polite close) and frees everything. NULL is a no-op. */
SMTPC_API void smtpc_session_free(smtpc_session *s);

/* ---- options (before connect) ----------------------------------------------
 * Every connection setting at once: the server, how to reach it, TLS,
 * credentials (smtpc/conn.h). o is copied (it may be changed or freed
 * afterwards) and replaces all the settings below that it holds; the
 * session's own (deadline, reply limits, trace) stay. The server and port
 * of o are used by smtpc_session_open(s, NULL, 0); connect and open with a
 * host use theirs. Errors: SMTPC_EINVAL (NULL s or o), SMTPC_ENOMEM. */
SMTPC_API int smtpc_session_set_conn_opts(smtpc_session *s, const smtpc_conn_opts *o);
/* The setters below are the smtpc_conn_opts_set_* of the same name,
 * applied to the session's own options (same values refused, the detail
 * in smtpc_session_errmsg).
 * Timeouts are in milliseconds; 0 restores the default. Defaults follow RFC
 * 5321 §4.5.3.2, capped: connect 30 s, greeting 5 min -> 60 s, command 5 min
 * -> 60 s, DATA end 10 min -> 120 s; overall deadline: none. */
SMTPC_API int smtpc_session_set_connect_timeout_ms(smtpc_session *s, int64_t ms);
SMTPC_API int smtpc_session_set_greeting_timeout_ms(smtpc_session *s, int64_t ms);
SMTPC_API int smtpc_session_set_command_timeout_ms(smtpc_session *s, int64_t ms);
SMTPC_API int smtpc_session_set_data_timeout_ms(smtpc_session *s, int64_t ms);
/* A deadline for everything from connect to quit, counted from each
 * smtpc_session_connect(); 0 = none. Every timeout above is clipped to it.
 * Errors (all setters): SMTPC_EINVAL (NULL session, negative value). */
SMTPC_API int smtpc_session_set_deadline_ms(smtpc_session *s, int64_t ms);
/* The EHLO/HELO name. Default: the host's FQDN, else an address literal
 * "[127.0.0.1]" of the local end. SMTPC_EINVAL on CR/LF/NUL or spaces. */
SMTPC_API int smtpc_session_set_ehlo_name(smtpc_session *s, const char *name);
/* Local address (an IP literal or a name; and port, 0 = any) to bind
 * before connecting; NULL addr with port 0 clears. Only addresses of the
 * bound address's family are tried; none of them: connect fails with
 * SMTPC_ENETWORK "cannot bind to ADDR: ...". With a proxy, it applies to
 * the connection to the proxy. */
SMTPC_API int smtpc_session_set_bind(smtpc_session *s, const char *addr, uint16_t port);

/* ---- reaching the server: address family, proxy -------------------------- */
/* Which addresses of the server (or of the proxy) connect tries. A name
 * without an address of that family: connect fails with SMTPC_ENOHOST.
 * Errors: SMTPC_EINVAL (NULL session, another value). */
SMTPC_API int smtpc_session_set_family(smtpc_session *s, smtpc_family family);
/* Connect through a proxy (see smtpc/proxy.h): p is copied (credentials
 * included; wiped when the session is freed); NULL = connect directly.
 * The connect timeout covers the connection to the proxy and the whole
 * proxy handshake. TLS to the mail server (implicit or STARTTLS) goes
 * through the tunnel and is verified against the mail server's name, never
 * the proxy's. A https:// proxy's own certificate is verified against the
 * system trust store (OpenSSL's SSL_CERT_FILE / SSL_CERT_DIR apply).
 * Proxy failures make connect fail with SMTPC_EPROXY (the proxy refused,
 * failed authentication, or closed), SMTPC_ENETWORK/SMTPC_ENOHOST (cannot
 * reach the proxy), SMTPC_ETIMEDOUT, SMTPC_ETLS (https:// proxy); the
 * message names the proxy by smtpc_proxy_redacted(), never its password.
 * Errors: SMTPC_EINVAL (NULL session), SMTPC_ENOMEM. */
SMTPC_API int smtpc_session_set_proxy(smtpc_session *s, const smtpc_proxy *p);
/* The same from a URL ("socks5h://user:pass@host:1080", "http://host:3128";
 * NULL or "" = none). Errors: SMTPC_EINVAL (malformed URL: the reason,
 * without credentials, in smtpc_session_errmsg), SMTPC_ENOMEM. */
SMTPC_API int smtpc_session_set_proxy_url(smtpc_session *s, const char *url);
/* Limits on what the server may send: one reply line, one reply. */
SMTPC_API int smtpc_session_set_reply_limits(smtpc_session *s, size_t max_line, size_t max_reply);

/* ---- security: TLS and authentication ---------------------------------------
 * How the connection is protected (RFC 8314, RFC 3207):
 *   IMPLICIT            TLS from the first byte (port 465).
 *   STARTTLS            required: if the server does not offer STARTTLS or
 *                       refuses it, fail (SMTPC_ETLS) before MAIL or AUTH.
 *   STARTTLS_OPTIONAL   opportunistic: plaintext only when STARTTLS is not
 *                       offered, and then never with credentials unless
 *                       smtpc_session_set_allow_plaintext_auth(). A server
 *                       that offers STARTTLS and then fails it is an error.
 *   NONE                no TLS.
 *   AUTO                like a mail client's account wizard: implicit TLS
 *                       first, then plaintext + STARTTLS, each attempt with
 *                       the short auto timeout for the TLS handshake and the
 *                       greeting; plaintext only without credentials (as
 *                       STARTTLS_OPTIONAL). smtpc_session_security_used()
 *                       says which won.
 *   DEFAULT             by port: 465 IMPLICIT; 25 without credentials
 *                       STARTTLS_OPTIONAL (relay); otherwise (587, other
 *                       ports, any port with credentials) STARTTLS.
 * smtpc_session_connect() does the implicit TLS (IMPLICIT, AUTO, DEFAULT on
 * port 465); STARTTLS is done by smtpc_session_starttls() or by
 * smtpc_session_open(), which applies the whole policy.
 * Certificates are verified by default (system store, or ca-file/ca-path):
 * chain, dates, and the host name given to connect (an IP literal is checked
 * against IP SANs). */
/* smtpc_tls_mode, smtpc_tls_mode_name() and _parse() are in smtpc/conn.h. */

/* Setters below: before connect; they apply to the next connection. They
 * copy their strings. Errors: SMTPC_EINVAL (NULL session, bad value),
 * SMTPC_ENOMEM. Files are loaded at connect: an unreadable CA file,
 * certificate or key makes connect fail with SMTPC_ECONFIG before any
 * network activity. */
SMTPC_API int smtpc_session_set_tls_mode(smtpc_session *s, smtpc_tls_mode mode);
/* Per-attempt timeout of AUTO (TLS handshake + greeting); 0 = default 5 s. */
SMTPC_API int smtpc_session_set_auto_timeout_ms(smtpc_session *s, int64_t ms);
/* Trusted CAs instead of the system store (PEM bundle / hashed directory);
 * NULL = unset. */
SMTPC_API int smtpc_session_set_ca_file(smtpc_session *s, const char *path);
SMTPC_API int smtpc_session_set_ca_path(smtpc_session *s, const char *dir);
/* The name the certificate must match (and SNI), when it differs from the
 * host given to connect (e.g. connecting to an address of a known server).
 * NULL = the host name given to connect. */
SMTPC_API int smtpc_session_set_tls_server_name(smtpc_session *s, const char *name);
/* Adds a public-key pin "sha256//" + base64 of SHA-256(SubjectPublicKeyInfo);
 * when pins are set one must match the server's key (also with insecure).
 * SMTPC_EINVAL for a malformed pin. NULL clears the pins. */
SMTPC_API int smtpc_session_add_pin(smtpc_session *s, const char *pin);
/* Client certificate chain and key (PEM); key NULL = in the cert file. NULL
 * cert clears. It also enables SASL EXTERNAL when listed in the mechanisms. */
SMTPC_API int smtpc_session_set_client_cert(smtpc_session *s, const char *cert_file,
                                            const char *key_file);
/* Turns certificate verification off (pins are still checked). Explicit
 * and dangerous: anyone on the path can read the session. */
SMTPC_API int smtpc_session_set_insecure(smtpc_session *s, bool insecure);
/* TLS versions (smtpc_tls_version; 0 = default: min TLS 1.2, max newest).
 * strict: a version this build cannot do fails connect with
 * SMTPC_EUNSUPPORTED instead of using the nearest one that narrows the
 * range; a minimum is never lowered (one this build cannot do fails). */
SMTPC_API int smtpc_session_set_tls_versions(smtpc_session *s, int min_version, int max_version,
                                             bool strict);

/* Credentials for AUTH (RFC 4954). CR, LF or NUL in them: SMTPC_EINVAL.
 * NULL user clears. The password is wiped from memory when replaced or when
 * the session is freed. */
SMTPC_API int smtpc_session_set_credentials(smtpc_session *s, const char *user,
                                            const char *password);
/* Authorization identity (act as), NULL = none. */
SMTPC_API int smtpc_session_set_authzid(smtpc_session *s, const char *authzid);
/* OAuth 2.0 access token for XOAUTH2 / OAUTHBEARER (any length; user is
 * the account name from smtpc_session_set_credentials(s, user, NULL)). */
SMTPC_API int smtpc_session_set_oauth_token(smtpc_session *s, const char *token);
/* A token provider: called with refresh=false for the current token and,
 * once per AUTH, with refresh=true after the server refused a token (an
 * XOAUTH2/OAUTHBEARER error challenge or 535): the exchange is then retried
 * with the new token. Return 0 and set *token and *len (borrowed until the next
 * call), or a negative SMTPC_E* to fail AUTH with it. (smtpc_token_cb is in
 * smtpc/common.h, shared with smtpc_bulk_set_token_cb.) */
SMTPC_API int smtpc_session_set_token_cb(smtpc_session *s, smtpc_token_cb cb, void *userdata);
/* The mechanisms the caller allows, e.g. "SCRAM-SHA-256,PLAIN" (comma or
 * space separated; PLAIN LOGIN CRAM-MD5 XOAUTH2 OAUTHBEARER SCRAM-SHA-1
 * SCRAM-SHA-256 EXTERNAL). NULL = default: every mechanism the credentials
 * allow, PLAIN/LOGIN only on an encrypted connection. The strongest
 * mechanism in both lists is used. SMTPC_EINVAL on an unknown name. */
SMTPC_API int smtpc_session_set_auth_mechanisms(smtpc_session *s, const char *list);
/* Allows credentials over an unencrypted connection (default: never). */
SMTPC_API int smtpc_session_set_allow_plaintext_auth(smtpc_session *s, bool allow);

/* STARTTLS (RFC 3207) on a connected session after EHLO: the TLS handshake
 * (verification as configured), then everything learnt before is
 * discarded and EHLO is sent again (same name). Bytes after the 220 before
 * the handshake are a protocol error (response injection): the connection
 * is closed (SMTPC_EPROTO). Errors: SMTPC_EUNSUPPORTED (not offered; nothing
 * sent), SMTPC_ESTATE (TLS already on), SMTPC_ETEMPFAIL/SMTPC_EPERMFAIL (the
 * server refused; the connection stays in plaintext: a caller that needs TLS
 * must not go on), SMTPC_ETLS (handshake or verification failed, or the
 * server closed: connection closed; the reason in errmsg). */
SMTPC_API int smtpc_session_starttls(smtpc_session *s);
/* AUTH with the strongest mechanism offered by the server and allowed.
 * The initial response goes on the AUTH line when it fits 512 octets.
 * Errors: SMTPC_EAUTH (no credentials, no common mechanism, plaintext
 * connection without allow_plaintext_auth (nothing sent), the server
 * refused (5xx), SCRAM server signature wrong, too many challenges),
 * SMTPC_EPROTO (invalid challenge: "*" was sent), SMTPC_ETEMPFAIL (4xx),
 * SMTPC_EINVAL (CR/LF/NUL in credentials), or a connection error. */
SMTPC_API int smtpc_session_auth(smtpc_session *s);
/* Connect, EHLO, STARTTLS per the TLS mode, EHLO again, AUTH when
 * credentials are set: ready for MAIL. host NULL: the server set with
 * smtpc_session_set_conn_opts (port 0: the one set there, else by the TLS
 * mode: 465 implicit, 587 STARTTLS, else 25); none set: SMTPC_EINVAL. On failure the connection is
 * closed and the error is the one of the failing step (SMTPC_ETLS when TLS
 * is required and not possible, SMTPC_EAUTH ...). */
SMTPC_API int smtpc_session_open(smtpc_session *s, const char *host, uint16_t port);

/* After the TLS handshake of the last connection (kept after it closes):
 * version, cipher, peer certificate and the verification verdict. NULL
 * when the last connection did not use TLS. Valid until the next connect. */
SMTPC_API const smtpc_tls_info *smtpc_session_tls_info(const smtpc_session *s);
/* The protection the last connection used: SMTPC_TLS_MODE_IMPLICIT,
 * SMTPC_TLS_MODE_STARTTLS or SMTPC_TLS_MODE_NONE. */
SMTPC_API smtpc_tls_mode smtpc_session_security_used(const smtpc_session *s);
/* The mechanism that authenticated ("SCRAM-SHA-256"), NULL when none. */
SMTPC_API const char *smtpc_session_auth_mechanism(const smtpc_session *s);
/* The AUTH mechanisms the server offers (from the last EHLO) and those the
 * caller allows on the current connection (default rules applied),
 * strongest first, space separated; "" for none. Valid until the next call
 * on s. */
SMTPC_API const char *smtpc_session_auth_offered(smtpc_session *s);
SMTPC_API const char *smtpc_session_auth_allowed(smtpc_session *s);

/* The greeting of the last connection (kept until the next connect), or
 * NULL. Owned by the session. */
SMTPC_API const smtpc_reply *smtpc_session_greeting(const smtpc_session *s);

/* Protocol trace: every command line sent and reply line received (no
 * CRLF, no message body), and INFO lines ("TLS handshake: TLSv1.3 ...").
 * Secrets are redacted by the library before the callback sees them:
 * "AUTH PLAIN ********", continuation lines "********". line is borrowed
 * for the call; the callback runs on the thread of the session call and
 * must not call the session. cb NULL turns it off. Errors: SMTPC_EINVAL
 * (NULL s). */
typedef enum smtpc_trace_dir {
    SMTPC_TRACE_SENT = 0,
    SMTPC_TRACE_RECEIVED = 1,
    SMTPC_TRACE_INFO = 2,
    SMTPC_TRACE_BODY = 3 /* a line of the message (client and bulk, when asked) */
} smtpc_trace_dir;
typedef void (*smtpc_trace_cb)(void *userdata, smtpc_trace_dir dir, const char *line, size_t len);
SMTPC_API int smtpc_session_set_trace(smtpc_session *s, smtpc_trace_cb cb, void *userdata);

/* ---- the conversation --------------------------------------------------------
 * connect: resolves host (IPv4 and IPv6; every address in turn within the
 * connect timeout), connects and reads the greeting. A 554 greeting fails
 * with SMTPC_EPERMFAIL and the reply available. */
SMTPC_API int smtpc_session_connect(smtpc_session *s, const char *host, uint16_t port);
/* EHLO, falling back to HELO when the server answers 500/502. name NULL =
 * the configured or default EHLO name. */
SMTPC_API int smtpc_session_ehlo(smtpc_session *s, const char *name);
SMTPC_API int smtpc_session_helo(smtpc_session *s, const char *name);

typedef struct smtpc_mail_opts {
    uint64_t size;            /* SIZE=, 0 = omit */
    int body_8bitmime;        /* BODY=8BITMIME */
    int smtputf8;             /* SMTPUTF8 */
    const char *dsn_ret;      /* "FULL" or "HDRS", NULL = omit */
    const char *dsn_envid;    /* ENVID, NULL = omit */
} smtpc_mail_opts;
typedef struct smtpc_rcpt_opts {
    const char *dsn_notify;   /* "NEVER" or "SUCCESS,FAILURE,DELAY" subset, NULL = omit */
    const char *dsn_orcpt;    /* ORCPT address, NULL = omit */
} smtpc_rcpt_opts;

/* MAIL FROM:<from>; from "" is the null reverse-path. opts may be NULL. */
SMTPC_API int smtpc_session_mail_from(smtpc_session *s, const char *from, const smtpc_mail_opts *opts);
SMTPC_API int smtpc_session_rcpt_to(smtpc_session *s, const char *to, const smtpc_rcpt_opts *opts);

/* A read callback for message bodies: copy up to len bytes into buf and
 * return the count, 0 at the end, or a negative SMTPC_E* to abort. */
typedef ssize_t (*smtpc_read_cb)(void *userdata, void *buf, size_t len);

/* DATA, the body (normalised to CRLF, dot-stuffed), the final ".". Returns
 * the final reply's status. The body is streamed in bounded pieces (16 KiB
 * read, encoded, written) and never held whole. A lost connection or no reply
 * within the DATA timeout after the final dot returns SMTPC_EUNKNOWN: the
 * message may have been delivered. A body that cannot be completed (the
 * callback returns an error, a line over 998 octets: SMTPC_ELIMIT) closes
 * the connection, the only way to abort DATA without delivering. */
SMTPC_API int smtpc_session_data_mem(smtpc_session *s, const void *msg, size_t len);
SMTPC_API int smtpc_session_data_cb(smtpc_session *s, smtpc_read_cb cb, void *userdata);
/* BDAT (CHUNKING, RFC 3030): the body in chunks, the last marked LAST.
 * SMTPC_EUNSUPPORTED (nothing sent) when the server did not offer CHUNKING.
 * A refused chunk stops the body and closes the connection. */
SMTPC_API int smtpc_session_bdat_mem(smtpc_session *s, const void *msg, size_t len);
SMTPC_API int smtpc_session_bdat_cb(smtpc_session *s, smtpc_read_cb cb, void *userdata);

/* ---- a whole transaction --------------------------------------------------------
 * MAIL, every RCPT and DATA (or BDAT) sent as ONE write when the server
 * offers PIPELINING (RFC 2920), else one by one; then the body, streamed as
 * for smtpc_session_data_cb. Per-recipient results are kept (below). */
typedef struct smtpc_envelope {
    const char *from;               /* reverse-path, "" = null sender <> */
    const smtpc_mail_opts *mail;    /* NULL = no MAIL parameters */
    const char *const *rcpts;       /* nrcpts forward-paths (no angle brackets) */
    size_t nrcpts;
    const smtpc_rcpt_opts *rcpt;    /* NULL, or an array of nrcpts */
    bool all_or_nothing;            /* abort (RSET) when any recipient is refused;
                                       DATA then waits for every RCPT reply instead
                                       of being pipelined. Default: send to the
                                       accepted ones */
    bool use_bdat;                  /* CHUNKING instead of DATA */
} smtpc_envelope;

/* Returns 0 when the server accepted the message (for the recipients whose
 * status is 0); SMTPC_ETEMPFAIL / SMTPC_EPERMFAIL with the deciding reply
 * (MAIL refused, every recipient refused, the body refused; with
 * all_or_nothing any refused recipient); SMTPC_EUNKNOWN when the connection
 * was lost after the end of data; SMTPC_EUNSUPPORTED (nothing sent) when
 * use_bdat and no CHUNKING; SMTPC_EINVAL (nothing sent) for a bad address;
 * or a connection-ending error. After a refused transaction the session has
 * sent RSET itself and is ready for the next one; except when a server says
 * 354 to a refused transaction with accepted recipients (after refusing
 * MAIL): any end of data would deliver, so the connection is closed. */
SMTPC_API int smtpc_session_send(smtpc_session *s, const smtpc_envelope *env,
                                 smtpc_read_cb body, void *userdata);
SMTPC_API int smtpc_session_send_mem(smtpc_session *s, const smtpc_envelope *env,
                                     const void *msg, size_t len);
/* Results of the last smtpc_session_send, valid until the next send or
 * connect: the number of recipients; recipient i's status (0 accepted,
 * SMTPC_ETEMPFAIL, SMTPC_EPERMFAIL, SMTPC_EUNKNOWN = no answer received;
 * SMTPC_EINVAL for i out of range) and its reply (NULL when none). */
SMTPC_API size_t smtpc_session_rcpt_count(const smtpc_session *s);
SMTPC_API int smtpc_session_rcpt_status(const smtpc_session *s, size_t i);
SMTPC_API const smtpc_reply *smtpc_session_rcpt_reply(const smtpc_session *s, size_t i);

SMTPC_API int smtpc_session_rset(smtpc_session *s);
SMTPC_API int smtpc_session_noop(smtpc_session *s);
/* QUIT, wait for the 221 (within the command timeout), close. A server
 * that closes without answering QUIT is not an error. */
SMTPC_API int smtpc_session_quit(smtpc_session *s);
/* Close the connection at once, no QUIT. */
SMTPC_API void smtpc_session_disconnect(smtpc_session *s);

/* Makes the blocked (or next) call on s return SMTPC_ECANCELED within
 * 100 ms and closes the connection (that call closes it: the canceling
 * thread never touches the socket). Safe from any thread and from a signal
 * handler (an atomic store and a write(2) to an eventfd); s must stay alive.
 * A call that is not blocked notices the cancel at its next step. Name
 * resolution is not interruptible (see above).
 * The cancel is STICKY: every later call returns SMTPC_ECANCELED until
 * smtpc_session_rearm(). */
SMTPC_API void smtpc_session_cancel(smtpc_session *s);
/* Clears a cancel so that the session can connect again. Call it from the
 * thread that uses the session, not while a call is in progress; a cancel
 * that races with rearm may be lost. */
SMTPC_API void smtpc_session_rearm(smtpc_session *s);

/* ---- what happened -------------------------------------------------------- */
/* The last reply received, or NULL. Valid until the next command. */
SMTPC_API const smtpc_reply *smtpc_session_reply(const smtpc_session *s);
/* Detail of the last failure: "connect to 127.0.0.1:2525: Connection
 * refused", "server replied 554 5.7.1 ...", "greeting timed out after 5 s".
 * Server text is escaped (no control characters). Never NULL. */
SMTPC_API const char *smtpc_session_errmsg(const smtpc_session *s);
SMTPC_API bool smtpc_session_is_connected(const smtpc_session *s);
/* SMTPC_EXT_* flags from the last EHLO. */
SMTPC_API unsigned smtpc_session_extensions(const smtpc_session *s);
SMTPC_API bool smtpc_session_has_ext(const smtpc_session *s, const char *keyword);
/* The parameters of an EHLO keyword ("SIZE" -> "35882577"); "" when it has
 * none; NULL when not advertised. */
SMTPC_API const char *smtpc_session_ext_param(const smtpc_session *s, const char *keyword);
SMTPC_API uint64_t smtpc_session_size_limit(const smtpc_session *s); /* 0 = none */

#ifdef __cplusplus
}
#endif
#endif
