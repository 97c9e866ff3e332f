/* smtpc — the client: configure once, send many (System.Net.Mail.SmtpClient,
 * MailKit, nodemailer's pool).
 *
 *   smtpc_client *c;
 *   smtpc_client_new(&c);
 *   smtpc_client_set_host(c, "mail.example.org", 25);
 *   smtpc_result *r;
 *   int rc = smtpc_client_send(c, msg, &r);     // blocks: accepted or refused
 *   if (rc) printf("%s: %s\n", smtpc_err_name(rc), smtpc_result_errmsg(r));
 *   smtpc_result_free(r);
 *   smtpc_client_free(c);                        // QUIT on the open connection
 *
 * The connection is kept open after a send and re-used for the next one (a
 * private pool of one connection, or a shared smtpc_pool). Re-use is safe:
 * a connection that turns out dead or answers 421 before the server took
 * the message is replaced once by a fresh one, transparently; after the
 * final dot nothing is ever re-sent (SMTPC_EUNKNOWN: "may have been
 * delivered").
 *
 * Threads: a client is used by one send at a time. A second send (sync or
 * async) while one is in progress returns SMTPC_EBUSY at once and changes
 * nothing. Setters must not be called while a send is in progress
 * (SMTPC_EBUSY). Several threads share connections through an smtpc_pool
 * (one client per thread, all set to the same pool).
 *
 * Errors and what to do about them: smtpc_error_classify(rc) —
 * SMTPC_CLASS_PERMANENT (5xx: don't retry), SMTPC_CLASS_TRANSIENT (4xx,
 * network, timeout: retry later), SMTPC_CLASS_CANCELED, SMTPC_CLASS_CONFIG
 * (configuration, TLS, authentication), SMTPC_CLASS_UNKNOWN (SMTPC_EUNKNOWN:
 * the connection was lost after the final dot; the message may have been
 * delivered: never treat it as success or as a plain failure). */
#ifndef SMTPC_CLIENT_H
#define SMTPC_CLIENT_H

#include "common.h"
#include "config.h"
#include "errors.h"
#include "message.h"
#include "session.h"
#include "tls.h"

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct smtpc_client smtpc_client;
typedef struct smtpc_pool smtpc_pool;
typedef struct smtpc_result smtpc_result;

/* ======================================================================
 * Results
 * ====================================================================== */

/* The outcome of one send. Strings are owned by the result and never NULL
 * ("" when absent). Free with smtpc_result_free (NULL is a no-op). */
SMTPC_API void smtpc_result_free(smtpc_result *r);
/* 0 or the SMTPC_E* code the send returned. */
SMTPC_API int smtpc_result_status(const smtpc_result *r);
SMTPC_API smtpc_error_class smtpc_result_class(const smtpc_result *r);
/* What failed, where, the server's words; "" on success. */
SMTPC_API const char *smtpc_result_errmsg(const smtpc_result *r);
/* Per recipient, in envelope order: the address, whether the server
 * accepted it (RCPT 2xx), and its RCPT reply (code 0 when none). */
SMTPC_API size_t smtpc_result_rcpt_count(const smtpc_result *r);
SMTPC_API const char *smtpc_result_rcpt_address(const smtpc_result *r, size_t i);
SMTPC_API bool smtpc_result_rcpt_accepted(const smtpc_result *r, size_t i);
SMTPC_API int smtpc_result_rcpt_code(const smtpc_result *r, size_t i);
SMTPC_API const char *smtpc_result_rcpt_enhanced(const smtpc_result *r, size_t i);
SMTPC_API const char *smtpc_result_rcpt_text(const smtpc_result *r, size_t i);
/* The final reply (to the end of data, or the reply that decided a
 * failure); code 0 when none. */
SMTPC_API int smtpc_result_reply_code(const smtpc_result *r);
SMTPC_API const char *smtpc_result_reply_enhanced(const smtpc_result *r);
SMTPC_API const char *smtpc_result_reply_text(const smtpc_result *r);
/* The server's queue id parsed from the final reply ("queued as 4Fx...",
 * "id=...", "InternalId=...", sendmail's "<id> Message accepted", Gmail's
 * "... <id> - gsmtp"); for outbox delivery the outbox entry id; "" when
 * none could be found. */
SMTPC_API const char *smtpc_result_queue_id(const smtpc_result *r);
/* The Message-ID header of the message sent ("" for raw sends). */
SMTPC_API const char *smtpc_result_message_id(const smtpc_result *r);
/* TLS protocol and cipher ("" without TLS), SASL mechanism ("" without AUTH). */
SMTPC_API const char *smtpc_result_tls_version(const smtpc_result *r);
SMTPC_API const char *smtpc_result_tls_cipher(const smtpc_result *r);
SMTPC_API const char *smtpc_result_auth_mechanism(const smtpc_result *r);
/* Whether the server's certificate was verified (chain, validity, name:
 * smtpc_tls_info.verified); false without TLS and with insecure. */
SMTPC_API bool smtpc_result_tls_verified(const smtpc_result *r);
/* The protection the connection used (smtpc_session_security_used):
 * SMTPC_TLS_MODE_IMPLICIT, SMTPC_TLS_MODE_STARTTLS or SMTPC_TLS_MODE_NONE
 * (also when no connection was made, and for pickup and outbox). */
SMTPC_API smtpc_tls_mode smtpc_result_security_used(const smtpc_result *r);
/* Timings of the last attempt in microseconds: connect (TCP, greeting,
 * EHLO; 0 when a pooled connection was re-used), TLS handshake, AUTH, and
 * the transaction (MAIL to the final reply). */
SMTPC_API int64_t smtpc_result_connect_us(const smtpc_result *r);
SMTPC_API int64_t smtpc_result_tls_us(const smtpc_result *r);
SMTPC_API int64_t smtpc_result_auth_us(const smtpc_result *r);
SMTPC_API int64_t smtpc_result_transfer_us(const smtpc_result *r);
/* Attempts made under the retry policy (1 = no retry), and whether the
 * successful (last) attempt used a re-used pooled connection. */
SMTPC_API unsigned smtpc_result_attempts(const smtpc_result *r);
/* The transactions recipient i was offered in: 1 without retries; each
 * retry of a recipient that got 4xx counts (0 when no transaction
 * started, e.g. the connection failed). */
SMTPC_API unsigned smtpc_result_rcpt_attempts(const smtpc_result *r, size_t i);
SMTPC_API bool smtpc_result_reused_connection(const smtpc_result *r);

/* Extracts a queue id from a reply text into out (NUL-terminated, truncated);
 * returns true when one was found. Exposed for tests and logs. */
SMTPC_API bool smtpc_parse_queue_id(const char *text, char *out, size_t outlen);

/* ======================================================================
 * Pool: connections shared by clients (and threads)
 * ====================================================================== */

/* A pool of open connections keyed by endpoint and identity (host, port,
 * TLS mode and every TLS setting, proxy, the user name, authzid and a
 * salted SHA-256 of the password as they are at the send, also when a
 * callback gives them, a salted SHA-256 of an OAuth token and the token
 * callback, bind address and port, address family, EHLO name): a
 * connection is only re-used for a send with the same key.
 * Thread-safe. Errors: SMTPC_ENOMEM. */
SMTPC_API int smtpc_pool_new(smtpc_pool **out);
/* Sends QUIT on every idle connection and closes it, then frees the pool.
 * Every client using it must have been freed (or be idle and never send
 * again). NULL is a no-op. */
SMTPC_API void smtpc_pool_free(smtpc_pool *p);
/* Connections per key at most (default 4; the private pool of a client: 1).
 * A send finding them all busy waits for one. */
SMTPC_API int smtpc_pool_set_max_per_endpoint(smtpc_pool *p, unsigned n);
/* A connection is closed (QUIT) after n messages (default 100; 0 = no limit). */
SMTPC_API int smtpc_pool_set_max_messages(smtpc_pool *p, unsigned n);
/* Idle connections are closed after ms (default 60 s; 0 = never). */
SMTPC_API int smtpc_pool_set_max_idle_ms(smtpc_pool *p, int64_t ms);
/* A connection idle longer than ms is checked with NOOP before re-use
 * (default 5 s; 0 = always, -1 = never). */
SMTPC_API int smtpc_pool_set_noop_after_ms(smtpc_pool *p, int64_t ms);
/* Counters for tests and monitoring: connections opened so far, and open now. */
SMTPC_API uint64_t smtpc_pool_connections_opened(const smtpc_pool *p);
SMTPC_API unsigned smtpc_pool_connections_open(const smtpc_pool *p);

/* ======================================================================
 * Client
 * ====================================================================== */

typedef enum smtpc_delivery {
    SMTPC_DELIVERY_NETWORK = 0, /* to the configured server (default) */
    SMTPC_DELIVERY_PICKUP,      /* a .eml file in a pickup directory (smtpc/pickup.h) */
    SMTPC_DELIVERY_OUTBOX       /* queued durably in an outbox (smtpc/outbox.h) for a later flush */
} smtpc_delivery;

/* Retries of transient failures (4xx, network, timeout) that happened
 * before the final dot. 5xx and SMTPC_EUNKNOWN are never retried. The
 * delay before retry k (1-based) is min(initial * factor^(k-1), max).
 * Per recipient: when the message was delivered to some recipients and
 * others got 4xx to RCPT, a retry is a new transaction with only those
 * (never the ones that got 2xx, never the ones that got 5xx); the send's
 * status stays 0 and each recipient's final outcome is in the result. A
 * body from a read callback without a way to read it again cannot be
 * retried: the 4xx is then the final outcome. */
typedef struct smtpc_retry_policy {
    unsigned attempts;        /* total attempts, 1 = no retry (default) */
    int64_t initial_delay_ms; /* default 1000 */
    double backoff_factor;    /* default 2.0; >= 1 */
    int64_t max_delay_ms;     /* default 60000 */
} smtpc_retry_policy;

/* Asked for the password of user; writes at most len-1 bytes and a NUL
 * into buf and returns 0, or a negative SMTPC_E* (the send fails with it,
 * nothing sent). Called on the sending thread once per send (network
 * delivery), before a pooled connection is chosen: the pool key holds a
 * salted SHA-256 of the password (never the password), so a connection
 * authenticated with another password is not re-used. */
typedef int (*smtpc_credential_cb)(void *userdata, const char *user, char *buf, size_t len);
/* Asked for the whole identity: writes the user name (at most user_len-1
 * bytes and a NUL; "" = no AUTH) and its secret (at most secret_len-1
 * bytes and a NUL); returns 0 or a negative SMTPC_E* (the send fails with
 * it, nothing sent). Called like smtpc_credential_cb: once per send,
 * before a pooled connection is chosen; the pool key holds the user name
 * and a salted SHA-256 of the secret, so a connection is re-used only for
 * the same identity. */
typedef int (*smtpc_identity_cb)(void *userdata, char *user, size_t user_len, char *secret,
                                 size_t secret_len);

/* Creates a client: no server, TLS mode SMTPC_TLS_MODE_DEFAULT (see
 * smtpc_client_set_tls_mode), certificates verified, delivery NETWORK, a
 * private pool of one connection, no retries. Errors: SMTPC_ENOMEM. */
SMTPC_API int smtpc_client_new(smtpc_client **out);
/* Waits for an async send to finish (cancel it first to hurry it), QUITs the
 * private pool's connection and frees everything (secrets wiped). Must not
 * be called from the async callback. NULL is a no-op. */
SMTPC_API void smtpc_client_free(smtpc_client *c);
/* The detail of the last failure on the client (a setter, or the last send). */
SMTPC_API const char *smtpc_client_errmsg(const smtpc_client *c);

/* ---- setters: all copy their inputs; SMTPC_EINVAL on bad values (the
 * smtpc_conn_opts setter of the same name judges them, as for the
 * session's namesake: CR, LF, NUL or other control
 * characters in strings, negative timeouts, unknown modes), SMTPC_ENOMEM,
 * SMTPC_EBUSY while a send is in progress. They apply to the connections
 * the client opens from then on (smtpc_session(3) for the details of each);
 * those marked "key" are part of the pool key, so a pooled connection is
 * never re-used for a send whose setting differs. ---- */
/* Every connection setting at once (smtpc/conn.h: server, how to reach
 * it, timeouts, TLS, credentials): o is copied (it may be changed or
 * freed afterwards) and replaces the settings of the setters below that it
 * holds; the client's own (overall bounds, delivery, retries, pool ...)
 * stay. When o has a user name it also replaces a credential or identity
 * callback. Key (every setting that is part of it below, and a salted
 * SHA-256 of an OAuth token, the token callback). Errors: SMTPC_EINVAL
 * (NULL c or o, control characters in a string of o), SMTPC_ENOMEM,
 * SMTPC_EBUSY. */
SMTPC_API int smtpc_client_set_conn_opts(smtpc_client *c, const smtpc_conn_opts *o);
/* port 0: 465 with SMTPC_TLS_MODE_IMPLICIT, 587 with STARTTLS (required),
 * else 25. Key. */
SMTPC_API int smtpc_client_set_host(smtpc_client *c, const char *host, uint16_t port);
/* The session's TLS modes (smtpc/session.h): default SMTPC_TLS_MODE_DEFAULT
 * (by port: 465 implicit, 25 without credentials opportunistic STARTTLS,
 * anything else STARTTLS required). Key. */
SMTPC_API int smtpc_client_set_tls_mode(smtpc_client *c, smtpc_tls_mode mode);
/* user NULL clears (a password without a user: SMTPC_EINVAL, as the
 * session). The password is wiped on free. Key (the user name and a salted
 * SHA-256 of the password). */
SMTPC_API int smtpc_client_set_credentials(smtpc_client *c, const char *user, const char *password);
/* Authorization identity (act as; smtpc_session_set_authzid), NULL = none. Key. */
SMTPC_API int smtpc_client_set_authzid(smtpc_client *c, const char *authzid);
/* Credentials over an unencrypted connection (default: refused). Key. */
SMTPC_API int smtpc_client_set_allow_plaintext_auth(smtpc_client *c, bool allow);
SMTPC_API int smtpc_client_set_credential_cb(smtpc_client *c, const char *user,
                                             smtpc_credential_cb cb, void *userdata);
/* cb NULL clears. Replaces the credentials set by the two setters above
 * (and they replace it). user_len is 256, secret_len 1024. */
SMTPC_API int smtpc_client_set_identity_cb(smtpc_client *c, smtpc_identity_cb cb, void *userdata);
/* Allowed SASL mechanisms, comma or blank separated ("SCRAM-SHA-256,PLAIN");
 * NULL = any the credentials allow. SMTPC_EINVAL on an unknown name (as
 * smtpc_session_set_auth_mechanisms). Key. */
SMTPC_API int smtpc_client_set_auth_mechanisms(smtpc_client *c, const char *list);
/* Timeouts in ms (0 = the session default). The greeting timeout defaults
 * to the connect timeout when only that is set. */
SMTPC_API int smtpc_client_set_connect_timeout_ms(smtpc_client *c, int64_t ms);
SMTPC_API int smtpc_client_set_greeting_timeout_ms(smtpc_client *c, int64_t ms);
SMTPC_API int smtpc_client_set_command_timeout_ms(smtpc_client *c, int64_t ms);
SMTPC_API int smtpc_client_set_data_timeout_ms(smtpc_client *c, int64_t ms);
/* Per-attempt timeout of SMTPC_TLS_MODE_AUTO (smtpc_session_set_auto_timeout_ms). */
SMTPC_API int smtpc_client_set_auto_timeout_ms(smtpc_client *c, int64_t ms);
/* Two overall bounds (0 = none; both may be set, the earlier wins):
 * timeout: each attempt of a send (connecting or re-using a pooled
 *   connection, the transaction) must end within ms, counted from the
 *   attempt's start, also on a re-used connection;
 * deadline: the session's deadline (smtpc_session_set_deadline_ms) for
 *   each connection, counted from its connect: nothing is done on a
 *   connection older than ms; a pooled connection past it is closed and a
 *   new one opened instead of re-using it. */
SMTPC_API int smtpc_client_set_timeout_ms(smtpc_client *c, int64_t ms);
SMTPC_API int smtpc_client_set_deadline_ms(smtpc_client *c, int64_t ms);
/* EHLO name (NULL = the session's default). Key. */
SMTPC_API int smtpc_client_set_ehlo_name(smtpc_client *c, const char *name);
/* Local address and port (0 = any) to connect from; NULL addr with port 0
 * clears (smtpc_session_set_bind). Key. */
SMTPC_API int smtpc_client_set_bind(smtpc_client *c, const char *addr, uint16_t port);
/* Which addresses of the server are tried (smtpc_session_set_family). Key. */
SMTPC_API int smtpc_client_set_family(smtpc_client *c, smtpc_family family);
/* Connect through a proxy (smtpc/proxy.h): p is copied (NULL = directly);
 * or from a URL (NULL or "" = directly; SMTPC_EINVAL for a malformed URL,
 * the reason without credentials in smtpc_client_errmsg). Key: the
 * redacted URL and a salted SHA-256 of the proxy password. */
SMTPC_API int smtpc_client_set_proxy(smtpc_client *c, const smtpc_proxy *p);
SMTPC_API int smtpc_client_set_proxy_url(smtpc_client *c, const char *url);
/* TLS, as the session's namesakes; all part of the key. Certificates are
 * verified by default (system store); insecure true turns that off (pins
 * are still checked). CA file / CA directory (NULL = unset); the name the
 * certificate must match and SNI (NULL = the host); public-key pins
 * ("sha256//BASE64", one per call; NULL clears them); a client certificate
 * and key (key NULL = in the cert file; cert NULL clears); TLS versions
 * (smtpc_tls_version, 0 = default; strict: fail rather than use the
 * nearest version that narrows the range; a minimum is never lowered). */
SMTPC_API int smtpc_client_set_insecure(smtpc_client *c, bool insecure);
SMTPC_API int smtpc_client_set_ca_file(smtpc_client *c, const char *path);
SMTPC_API int smtpc_client_set_ca_path(smtpc_client *c, const char *dir);
SMTPC_API int smtpc_client_set_tls_server_name(smtpc_client *c, const char *name);
SMTPC_API int smtpc_client_add_pin(smtpc_client *c, const char *pin);
SMTPC_API int smtpc_client_set_client_cert(smtpc_client *c, const char *cert_file,
                                           const char *key_file);
SMTPC_API int smtpc_client_set_tls_versions(smtpc_client *c, int min_version, int max_version,
                                            bool strict);
/* Delivery method; dir is the pickup or outbox directory (ignored for NETWORK). */
SMTPC_API int smtpc_client_set_delivery(smtpc_client *c, smtpc_delivery method, const char *dir);
/* Partial recipients: false (default) sends to the accepted recipients and
 * reports the refused ones; true fails the whole send (RSET) when any
 * recipient is refused. */
SMTPC_API int smtpc_client_set_strict_recipients(smtpc_client *c, bool strict);
/* What a send does with DSN parameters (smtpc_send_params) when the
 * server does not offer DSN (RFC 3461). */
typedef enum smtpc_dsn_policy {
    SMTPC_DSN_IGNORE = 0, /* send without them (default) */
    SMTPC_DSN_REQUIRE = 1 /* fail with SMTPC_EUNSUPPORTED before MAIL: nothing sent */
} smtpc_dsn_policy;
SMTPC_API int smtpc_client_set_dsn_policy(smtpc_client *c, smtpc_dsn_policy policy);
/* BDAT (CHUNKING, RFC 3030) instead of DATA when the server offers
 * CHUNKING; DATA when it does not. Default false, the session's default
 * (smtpc_envelope.use_bdat). */
SMTPC_API int smtpc_client_set_use_bdat(smtpc_client *c, bool use);
/* Copies *policy (NULL = no retries). SMTPC_EINVAL for attempts 0, a factor
 * below 1 or negative delays. */
SMTPC_API int smtpc_client_set_retry(smtpc_client *c, const smtpc_retry_policy *policy);
/* Use a shared pool instead of the private one (NULL = back to private).
 * The pool must outlive the client. */
SMTPC_API int smtpc_client_set_pool(smtpc_client *c, smtpc_pool *pool);
/* The private pool's limits (see smtpc_pool_set_*). */
SMTPC_API smtpc_pool *smtpc_client_pool(smtpc_client *c);

/* Protocol trace of every connection the client uses, as
 * smtpc_session_set_trace (commands and reply lines, INFO lines, AUTH
 * redacted), from the connect to the QUIT; cb NULL turns it off. It runs
 * on the sending thread (send_async: the client's thread); userdata must
 * stay valid until the client is freed (its private pool's connection
 * QUITs then). A connection of a shared pool is traced only while this
 * client uses it. Not part of the key. */
SMTPC_API int smtpc_client_set_trace(smtpc_client *c, smtpc_trace_cb cb, void *userdata);
/* With a trace: also each line of the message as it is read for sending
 * (SMTPC_TRACE_BODY; no CR LF, before dot-stuffing; a line longer than
 * 1024 bytes cut there). Default false. */
SMTPC_API int smtpc_client_set_trace_body(smtpc_client *c, bool on);
/* Called on the sending thread as the body is read for sending: done
 * bytes so far and total (the message's size when known, else 0);
 * done starts again at 0 for a retry. cb NULL turns it off. */
typedef void (*smtpc_progress_cb)(void *userdata, uint64_t done, uint64_t total);
SMTPC_API int smtpc_client_set_progress(smtpc_client *c, smtpc_progress_cb cb, void *userdata);

/* Takes every setting the account defines: server, port, tls (the
 * session's mode names), user, password / password-env, auth,
 * allow-plaintext-auth, timeout, connect-timeout, greeting-timeout,
 * ehlo-name, bind, proxy, insecure, ca-file, ca-path, tls-server-name, pin,
 * cert, key, tls-min, tls-max, and
 * delivery: pickup-dir / outbox. account NULL = the configuration's default
 * account. Settings the account does not define keep their value.
 * Errors: SMTPC_ENOTFOUND (no such account), SMTPC_ECONFIG (a value the
 * client cannot use; detail in smtpc_client_errmsg), SMTPC_EBUSY. */
SMTPC_API int smtpc_client_use_config(smtpc_client *c, const smtpc_config *cfg, const char *account);

/* ---- sending ---- */

/* Sends m: envelope from the message (Sender/From; To, Cc, Bcc). Blocks
 * until the server accepted or refused it (retries included). result (may
 * be NULL) receives a new result the caller frees, also on failure (not on
 * SMTPC_EBUSY/SMTPC_EINVAL before anything started: then *result is NULL).
 * Returns 0 when accepted (refused recipients are listed in the result;
 * strict: any refusal fails), else the deciding error. */
SMTPC_API int smtpc_client_send(smtpc_client *c, smtpc_message *m, smtpc_result **result);
/* A raw message with an explicit envelope. The body comes from cb (read
 * once per attempt: a retry or a fresh-connection retry needs a body that
 * was not read yet, so with cb the only retries are those that happen
 * before the first read); use smtpc_client_send_mem for retryable bodies. */
SMTPC_API int smtpc_client_send_envelope(smtpc_client *c, const char *from,
                                         const char *const *rcpts, size_t nrcpts,
                                         smtpc_read_cb cb, void *userdata, smtpc_result **result);
SMTPC_API int smtpc_client_send_mem(smtpc_client *c, const char *from, const char *const *rcpts,
                                    size_t nrcpts, const void *data, size_t len,
                                    smtpc_result **result);

/* Per-send parameters: DSN (RFC 3461). Passed on MAIL and RCPT when the
 * server offers DSN; otherwise per smtpc_client_set_dsn_policy (default:
 * left out). Pickup and outbox delivery do not keep them. Strings and the
 * array are borrowed for the send (for send_async: until the callback). */
typedef struct smtpc_send_params {
    const char *dsn_ret;          /* RET: "FULL" or "HDRS"; NULL = omit */
    const char *dsn_envid;        /* ENVID (printable ASCII, <= 100); NULL = omit */
    const char *dsn_notify;       /* NOTIFY for every recipient without its own:
                                     "NEVER" or a list of SUCCESS,FAILURE,DELAY; NULL = omit */
    const smtpc_rcpt_opts *rcpt;  /* NULL, or one entry per envelope recipient in
                                     envelope order (smtpc_message_rcpt for a message):
                                     its dsn_notify (NULL = dsn_notify) and dsn_orcpt */
    size_t nrcpt;                 /* entries in rcpt: the recipient count */
    /* A raw body from a read callback (send_envelope; ignored for a
     * message or a body in memory, whose size and bytes the client knows;
     * ignored by smtpc_bulk): */
    uint64_t size;                /* its size, declared as SIZE= when the server
                                     offers SIZE (0 = not declared) */
    bool body_8bit;               /* it has 8-bit bytes: BODY=8BITMIME when the
                                     server offers 8BITMIME */
    int (*rewind)(void *userdata); /* NULL, or restarts the read callback at
                                     the first byte (0 = done): the body is
                                     then read twice when it is DKIM-signed
                                     (else copied to a temporary file) and
                                     may be sent again on a fresh connection */
} smtpc_send_params;

/* smtpc_client_send, smtpc_client_send_mem, smtpc_client_send_envelope and
 * smtpc_client_send_async with parameters (NULL = none). Also SMTPC_EINVAL
 * (nothing sent) for a RET other than FULL/HDRS, a malformed NOTIFY, or
 * rcpt with nrcpt not the recipient count; SMTPC_EUNSUPPORTED under
 * SMTPC_DSN_REQUIRE when the server does not offer DSN. */
SMTPC_API int smtpc_client_send_with(smtpc_client *c, smtpc_message *m,
                                     const smtpc_send_params *params, smtpc_result **result);
SMTPC_API int smtpc_client_send_mem_with(smtpc_client *c, const char *from,
                                         const char *const *rcpts, size_t nrcpts,
                                         const void *data, size_t len,
                                         const smtpc_send_params *params, smtpc_result **result);
SMTPC_API int smtpc_client_send_envelope_with(smtpc_client *c, const char *from,
                                              const char *const *rcpts, size_t nrcpts,
                                              smtpc_read_cb cb, void *userdata,
                                              const smtpc_send_params *params,
                                              smtpc_result **result);

/* ---- batches ---- */

/* One message of a batch: a message (envelope from its headers), or a raw
 * message in memory with its envelope. Borrowed until send_batch returns. */
typedef struct smtpc_batch_item {
    smtpc_message *message;
    const char *from;
    const char *const *rcpts;
    size_t nrcpts;
    const void *data;
    size_t len;
} smtpc_batch_item;
/* Exactly once per item (index into the array), with its status and result
 * (borrowed for the call), on the calling thread; usually in order, but a
 * message that is retried (temporary failure, lost connection before its
 * end of data) is reported after the ones that followed it. */
typedef void (*smtpc_batch_cb)(void *userdata, size_t index, int status, const smtpc_result *result);
/* Sends n messages over one pooled connection with PIPELINING across
 * messages: each message's MAIL, RCPT and DATA go in the same write as the
 * previous one's final dot (RFC 2920), one round trip per message instead
 * of two. Same outcomes as n calls of smtpc_client_send: per-recipient
 * results, the retry policy for temporary failures, a fresh connection for
 * a message the connection lost before its end of data, SMTPC_EUNKNOWN for
 * one lost after it (never sent twice), the pool's per-connection message
 * limit. Cancel with smtpc_client_cancel_async: what is not yet sent is
 * reported SMTPC_ECANCELED. Returns 0 when every message was accepted, the
 * status of the first that was not, or SMTPC_EBUSY / SMTPC_EINVAL before
 * anything (no callback then). */
SMTPC_API int smtpc_client_send_batch(smtpc_client *c, const smtpc_batch_item *items, size_t n,
                                      smtpc_batch_cb cb, void *userdata);

/* Called exactly once per accepted send_async: status 0, an error, or
 * SMTPC_ECANCELED. result is borrowed for the call. The client is idle
 * again when the callback runs: it may start the next send_async. */
typedef void (*smtpc_send_cb)(void *userdata, int status, const smtpc_result *result);
/* Starts sending m on the client's own thread and returns at once: 0
 * (the callback will be called), SMTPC_EBUSY (a send is in progress; no
 * callback), SMTPC_EINVAL, SMTPC_ENOMEM. m must stay alive and unmodified
 * until the callback. */
SMTPC_API int smtpc_client_send_async(smtpc_client *c, smtpc_message *m, smtpc_send_cb cb,
                                      void *userdata);
SMTPC_API int smtpc_client_send_async_with(smtpc_client *c, smtpc_message *m,
                                           const smtpc_send_params *params, smtpc_send_cb cb,
                                           void *userdata);
/* Cancels the send in progress (async or a sync send on another thread):
 * it ends within ~100 ms with SMTPC_ECANCELED (or its outcome if already
 * decided; SMTPC_EUNKNOWN when the final dot was already sent and the
 * reply not yet received). Its connection is closed, never returned to the pool.
 * Safe from any thread; no-op when idle. */
SMTPC_API void smtpc_client_cancel_async(smtpc_client *c);
/* true while a send is in progress. */
SMTPC_API bool smtpc_client_busy(const smtpc_client *c);

#ifdef __cplusplus
}
#endif
#endif
