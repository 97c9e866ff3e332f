/* smtpc_bulk: the non-blocking driver. Many SMTP connections to one server
 * multiplexed in one thread, each a state machine that never blocks; a
 * source of messages is sent over up to K connections with PIPELINING
 * across messages (the body and final dot of message k and MAIL/RCPT/DATA
 * of message k+1 go in one write: one round trip per message).
 *
 * Two ways to run it (like libcurl multi / hiredis async):
 *  1. smtpc_bulk_run(): a built-in loop on epoll (poll() where epoll is
 *     not available, or when asked: smtpc_bulk_set_loop()) until every
 *     message is reported;
 *  2. the application's own loop: smtpc_bulk_set_socket_cb() says which fds
 *     to watch for what, smtpc_bulk_set_timer_cb() when the next timeout is;
 *     the loop calls smtpc_bulk_socket_action() when an fd is ready and
 *     smtpc_bulk_socket_action(b, SMTPC_SOCKET_TIMEOUT, 0) when the timer
 *     fires. Header-only adapters: smtpc/adapters/libuv.h, libevent.h.
 *
 * Every message gets exactly one result callback: SMTPC_BULK_SENT,
 * _FAILED (the server refused it, or it could not be sent after retries),
 * _CANCELED (smtpc_bulk_cancel before its body was complete), or _UNKNOWN
 * (the final dot was sent but the reply was lost: it may have been
 * delivered; never retried, so never duplicated). A message whose
 * connection dropped (or got 421) before its final dot is retried on
 * another connection, up to max_attempts times.
 *
 * Not thread-safe, except smtpc_bulk_cancel() during smtpc_bulk_run(). */
#ifndef SMTPC_ASYNC_H
#define SMTPC_ASYNC_H

#include <smtpc/client.h>
#include <smtpc/common.h>
#include <smtpc/conn.h>
#include <smtpc/errors.h>
#include <smtpc/proxy.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct smtpc_bulk smtpc_bulk;

/* One message. Everything it points to is borrowed until its result
 * callback returns. The body is either data/len (memory) or read (a pull
 * callback, e.g. smtpc_message_writer_read) with rewind, called before a
 * retry (rewind NULL: a message with a read body is not retried). The body
 * is CRLF-normalised and dot-stuffed on the way. When the server offers
 * SIZE (RFC 1870) and the body is in memory, MAIL declares SIZE=len, and a
 * message over the server's limit fails with SMTPC_ELIMIT before anything
 * of it is sent (not retried); a pulled body's length is not known, so it
 * goes without SIZE=. An in-memory 8-bit body is declared BODY=8BITMIME
 * when the server offers it; a non-ASCII address needs the server's
 * SMTPUTF8 (else SMTPC_EUNSUPPORTED, nothing sent). params: DSN (RFC 3461)
 * as the client's send_with functions take them (smtpc_send_params in
 * smtpc/client.h: RET, ENVID, NOTIFY, per recipient NOTIFY and ORCPT;
 * rcpt NULL or nrcpt == nrcpts, else FAILED with SMTPC_EINVAL); when the
 * server does not offer DSN, per smtpc_bulk_set_dsn_policy. */
typedef struct smtpc_bulk_msg {
    const char *from;               /* reverse-path without <>; "" = null sender */
    const char *const *rcpts;       /* forward-paths without <> */
    size_t nrcpts;
    const void *data;               /* body in memory ... */
    size_t len;
    ssize_t (*read)(void *ud, void *buf, size_t len); /* ... or pulled: >0, 0 = end, <0 error */
    int (*rewind)(void *ud);        /* back to the start for a retry; 0 = ok */
    void *body_ud;
    void *userdata;                 /* yours; given back in the result */
    const smtpc_send_params *params; /* DSN parameters; NULL = none */
} smtpc_bulk_msg;

typedef enum smtpc_bulk_status {
    SMTPC_BULK_SENT = 0,     /* accepted (by at least one recipient) */
    SMTPC_BULK_FAILED = 1,   /* refused or undeliverable; error says why */
    SMTPC_BULK_CANCELED = 2, /* canceled before its final dot */
    SMTPC_BULK_UNKNOWN = 3   /* final dot sent, reply lost: maybe delivered */
} smtpc_bulk_status;

typedef struct smtpc_bulk_result {
    smtpc_bulk_status status;
    int error;               /* 0 or SMTPC_E* (ETEMPFAIL/EPERMFAIL for a refusal, a 421
                                included; EPROTO for a positive reply of the wrong kind) */
    int reply_code;          /* the deciding reply (final 250, or the refusal: also a
                                refused greeting or EHLO, or a 421, that ended the last
                                connection when the run gives up), 0 if none */
    const char *reply_text;  /* its last line; "" if none; borrowed */
    const char *errmsg;      /* detail; borrowed */
    size_t rcpts_accepted;   /* recipients the server accepted */
    unsigned attempts;       /* connections it was tried on */
    /* Per recipient (the last attempt): rcpt_codes[i] is the reply code
     * to RCPT TO of m->rcpts[i] (2xx accepted, 4xx/5xx refused, 0 not
     * answered); nrcpts is m->nrcpts, or 0 and rcpt_codes NULL when no
     * envelope was sent. Borrowed for the callback only. */
    const int *rcpt_codes;
    size_t nrcpts;
} smtpc_bulk_result;

/* Next message: fill *m and return 1; 0 = no more (for now); <0 = error
 * (ends the run as if canceled). Called on the loop thread. */
typedef int (*smtpc_bulk_next_cb)(void *ud, smtpc_bulk_msg *m);
/* Exactly once per message that next_cb returned. */
typedef void (*smtpc_bulk_result_cb)(void *ud, const smtpc_bulk_msg *m,
                                     const smtpc_bulk_result *r);

/* Creates a bulk sender for host:port (a name or an IPv4/IPv6 literal).
 * Errors: SMTPC_EINVAL, SMTPC_ENOMEM. */
SMTPC_API int smtpc_bulk_new(smtpc_bulk **out, const char *host, uint16_t port);
/* Closes everything; messages not yet reported are reported CANCELED. */
SMTPC_API void smtpc_bulk_free(smtpc_bulk *b);
SMTPC_API const char *smtpc_bulk_errmsg(const smtpc_bulk *b);

SMTPC_API int smtpc_bulk_set_source(smtpc_bulk *b, smtpc_bulk_next_cb next, void *ud);
SMTPC_API int smtpc_bulk_set_result_cb(smtpc_bulk *b, smtpc_bulk_result_cb cb, void *ud);
/* Up to k concurrent connections (default 1, max 100000). */
SMTPC_API int smtpc_bulk_set_connections(smtpc_bulk *b, unsigned k);
/* Messages per connection before QUIT and a fresh one (0 = unlimited, the default). */
SMTPC_API int smtpc_bulk_set_max_per_connection(smtpc_bulk *b, unsigned n);
/* Tries per message over dropped connections / 421 (default 3). */
SMTPC_API int smtpc_bulk_set_max_attempts(smtpc_bulk *b, unsigned n);
/* Shared token bucket: msgs_per_sec (0 = unlimited), burst (0 = 1). */
SMTPC_API int smtpc_bulk_set_rate(smtpc_bulk *b, double msgs_per_sec, unsigned burst);
/* Timeouts in ms (0 = keep the default): connect 30 s, greeting 300 s,
 * command 300 s, data termination 600 s; overall = whole run (0 = none). */
SMTPC_API int smtpc_bulk_set_timeouts(smtpc_bulk *b, int64_t connect_ms, int64_t greeting_ms,
                                      int64_t command_ms, int64_t data_end_ms, int64_t overall_ms);
/* NULL = the default (the host's fully qualified name, else [address]). */
SMTPC_API int smtpc_bulk_set_ehlo_name(smtpc_bulk *b, const char *name);
/* Every connection setting at once (smtpc/conn.h): TLS mode and
 * configuration (CA file and path, pins, client certificate, versions,
 * server name, insecure), bind address and port, address family, proxy,
 * EHLO name, credentials and mechanisms, timeouts (0 = bulk's defaults
 * above). Copied: o may be changed or freed afterwards; replaces what the
 * other setters set. A host in o replaces the one given to smtpc_bulk_new
 * (with o's port; 0 = by the TLS mode); without one, that server stays.
 * Before start. Errors: SMTPC_EINVAL (NULL, already started), SMTPC_ENOMEM. */
SMTPC_API int smtpc_bulk_set_conn_opts(smtpc_bulk *b, const smtpc_conn_opts *o);
/* TLS, with the session's modes and policy (smtpc_tls_mode in smtpc/conn.h):
 * the default, SMTPC_TLS_MODE_DEFAULT, is by port: 465 implicit TLS; 25
 * without credentials STARTTLS_OPTIONAL; any other port, or with
 * credentials, STARTTLS required. STARTTLS (required): a server that does
 * not offer it fails the run at once, every message FAILED with SMTPC_ETLS
 * and nothing sent. STARTTLS_OPTIONAL: STARTTLS when offered, plaintext
 * when not (never with credentials unless plaintext authentication is
 * allowed: then as required); offered and then failed is a connection
 * failure, never plaintext. IMPLICIT: TLS from the first byte. NONE:
 * plaintext. AUTO: decided once, at start, by one blocking probe connection
 * (the session's AUTO: implicit TLS, then plaintext + STARTTLS); every
 * connection of the run then uses what won (STARTTLS required when it was
 * offered); a failed probe fails the start. server_name: the
 * name verified (and SNI), NULL = the host; ca_file NULL = the system store
 * (see smtpc_bulk_set_conn_opts for the rest); insecure skips verification.
 * Sessions are resumed across the run's connections. Before start.
 * Errors: SMTPC_EINVAL, SMTPC_ENOMEM, SMTPC_EUNSUPPORTED. */
SMTPC_API int smtpc_bulk_set_tls(smtpc_bulk *b, smtpc_tls_mode mode, const char *server_name,
                                 const char *ca_file, bool insecure);
/* Deprecated: the old names of the modes (whose values differed: use the
 * SMTPC_TLS_MODE_* names; these keep old sources compiling). */
#define SMTPC_BULK_TLS_NONE SMTPC_TLS_MODE_NONE
#define SMTPC_BULK_TLS_IMPLICIT SMTPC_TLS_MODE_IMPLICIT
#define SMTPC_BULK_TLS_STARTTLS SMTPC_TLS_MODE_STARTTLS
/* AUTH (RFC 4954), as smtpc_session does it: each connection authenticates
 * after EHLO (after STARTTLS and the second EHLO when STARTTLS is used) with the
 * strongest mechanism the server offers and the caller allows (PLAIN LOGIN
 * CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256 with a user and password, XOAUTH2
 * OAUTHBEARER with a token or smtpc_bulk_set_token_cb). Credentials are never sent over a connection
 * without TLS unless smtpc_bulk_set_allow_plaintext_auth(b, true). When AUTH
 * cannot succeed (the server refuses it with 5xx, no mechanism in common,
 * a connection without TLS) the run gives up: every message not yet sent is
 * reported FAILED with SMTPC_EAUTH, the refusal in reply_code/reply_text
 * (0/"" when nothing was sent), and the run ends. A 4xx to AUTH is a
 * connection failure (tried again on another connection, then given up as
 * when the server cannot be reached). Before start. The strings are copied;
 * CR or LF in them: SMTPC_EINVAL. user NULL clears; the password and
 * token are wiped from memory when replaced or freed.
 * Errors: SMTPC_EINVAL, SMTPC_ENOMEM. */
SMTPC_API int smtpc_bulk_set_credentials(smtpc_bulk *b, const char *user, const char *password);
/* OAuth 2.0 access token for XOAUTH2 / OAUTHBEARER (the account name from
 * smtpc_bulk_set_credentials(b, user, NULL)); NULL clears. Replaces a token
 * callback (and NULL clears it too). */
SMTPC_API int smtpc_bulk_set_oauth_token(smtpc_bulk *b, const char *token);
/* A token provider instead of a fixed token, for runs longer than a token
 * lives (see smtpc_token_cb in smtpc/common.h; as
 * smtpc_session_set_token_cb): each connection that authenticates with
 * XOAUTH2 / OAUTHBEARER calls cb(refresh=false) for the current token when
 * it starts AUTH. When the server refuses the token (an error challenge and
 * its final 5xx, or a 5xx), the connection calls cb(refresh=true) once and
 * sends AUTH again with the new token; if another connection already got a
 * new token since this one asked, it calls cb(refresh=false) for that one
 * instead (one refresh for a burst of refusals). A connection the server
 * closes is replaced by a new one, which asks for the current token. The
 * second refusal, or a callback that fails (non-zero; its code, or
 * SMTPC_EAUTH; errmsg names the callback), gives up as any AUTH failure
 * does: every message not yet sent is reported FAILED, once. The callback
 * runs on the loop's thread and the loop waits for it: return quickly
 * (cache the token; refresh ahead of time if you can). The token is
 * borrowed until the next call; the library wipes its copies. Replaces a
 * token set with smtpc_bulk_set_oauth_token (cb NULL: no token at all).
 * Before start. Errors: SMTPC_EINVAL. */
SMTPC_API int smtpc_bulk_set_token_cb(smtpc_bulk *b, smtpc_token_cb cb, void *userdata);
/* Mechanisms allowed, e.g. "SCRAM-SHA-256,PLAIN" (comma or space separated);
 * NULL = every mechanism the credentials allow. SMTPC_EINVAL on an unknown
 * name (errmsg says which). */
SMTPC_API int smtpc_bulk_set_auth_mechanisms(smtpc_bulk *b, const char *list);
/* Allows credentials over a connection without TLS (default: never). */
SMTPC_API int smtpc_bulk_set_allow_plaintext_auth(smtpc_bulk *b, bool allow);
/* Every connection through this proxy (copied, credentials wiped on free;
 * NULL = direct): SOCKS4, SOCKS4a, SOCKS5, SOCKS5h (with username/password)
 * or HTTP CONNECT (with Basic auth), also inside TLS to the proxy
 * (https://, verified against the proxy's name with the system trust store,
 * as smtpc_session does). The non-blocking handshake runs on each
 * connection, within the connect timeout, before the greeting (or the
 * implicit TLS handshake, which goes end to end to the server). SOCKS4 and
 * SOCKS5 targets are resolved here (in the resolver thread), SOCKS4a/5h and
 * HTTP send the name. A proxy that refuses or fails is a connection failure
 * (SMTPC_EPROXY, or SMTPC_ETLS for TLS to the proxy, in the results once
 * the run gives up). Before start. Errors: SMTPC_EINVAL, SMTPC_ENOMEM. */
SMTPC_API int smtpc_bulk_set_proxy(smtpc_bulk *b, const smtpc_proxy *proxy);
/* What a message's DSN parameters (smtpc_bulk_msg.params) become when
 * the server does not offer DSN, as smtpc_client_set_dsn_policy:
 * SMTPC_DSN_IGNORE (the default) sends the message without them;
 * SMTPC_DSN_REQUIRE reports it FAILED with SMTPC_EUNSUPPORTED, nothing of
 * it sent (not retried; the run goes on with the next message).
 * Errors: SMTPC_EINVAL. */
SMTPC_API int smtpc_bulk_set_dsn_policy(smtpc_bulk *b, smtpc_dsn_policy policy);
/* Protocol trace of every connection, as smtpc_session_set_trace: each
 * command line sent and reply line received (no CRLF, no message body),
 * AUTH redacted by the library ("AUTH PLAIN ********", continuations
 * "********"); conn numbers the run's connections from 1 in the order
 * they were opened (lines of several connections interleave). line is
 * borrowed for the call; the callback runs on the loop's thread and must
 * not call the bulk sender. cb NULL turns it off. Before start.
 * Errors: SMTPC_EINVAL. */
typedef void (*smtpc_bulk_trace_cb)(void *ud, unsigned conn, smtpc_trace_dir dir, const char *line,
                                    size_t len);
SMTPC_API int smtpc_bulk_set_trace(smtpc_bulk *b, smtpc_bulk_trace_cb cb, void *ud);
/* With a trace: also each line of every message as it is handed to the
 * connection (SMTPC_TRACE_BODY, with the connection's number; no CR LF,
 * before dot-stuffing; a line longer than 1024 bytes cut there), as
 * smtpc_client_set_trace_body. Default false. Before start.
 * Errors: SMTPC_EINVAL. */
SMTPC_API int smtpc_bulk_set_trace_body(smtpc_bulk *b, bool on);
/* Keep k connections open and idle after the greeting/EHLO even with no
 * message to send (for measuring per-connection cost). Default off. */
SMTPC_API int smtpc_bulk_set_hold_idle(smtpc_bulk *b, bool on);

/* ---- built-in loop ---- */
/* Which system call smtpc_bulk_run() waits with: _AUTO (the default) uses
 * epoll and falls back to poll() when epoll_create1() fails (e.g. ENOSYS
 * under a sandbox or an emulator); _EPOLL only epoll (run fails with
 * SMTPC_EUNSUPPORTED without it); _POLL only poll() (O(connections) per
 * wake-up: fine for tens or hundreds of connections). Before start.
 * Errors: SMTPC_EINVAL. */
enum { SMTPC_BULK_LOOP_AUTO = 0, SMTPC_BULK_LOOP_EPOLL = 1, SMTPC_BULK_LOOP_POLL = 2 };
SMTPC_API int smtpc_bulk_set_loop(smtpc_bulk *b, int loop);
/* The loop the last smtpc_bulk_run() used (SMTPC_BULK_LOOP_EPOLL or _POLL;
 * 0 before any run). */
SMTPC_API int smtpc_bulk_loop_used(const smtpc_bulk *b);
/* Runs until every message is reported (or canceled). 0, or SMTPC_ECANCELED
 * if canceled, or an error that stopped the run (overall timeout:
 * SMTPC_ETIMEDOUT; the results tell each message's fate). */
SMTPC_API int smtpc_bulk_run(smtpc_bulk *b);
/* Thread-safe and async-signal-safe during run (eventfd); also callable from
 * a callback. Queued messages are reported CANCELED; messages whose dot is
 * already sent get their reply first. */
SMTPC_API void smtpc_bulk_cancel(smtpc_bulk *b);

/* ---- the application's loop ---- */
enum { SMTPC_POLL_IN = 1, SMTPC_POLL_OUT = 2, SMTPC_POLL_REMOVE = 4 };
#define SMTPC_SOCKET_TIMEOUT (-1)
/* what: SMTPC_POLL_IN|OUT (watch for these, replacing earlier interest) or
 * SMTPC_POLL_REMOVE (stop watching; the fd is about to be closed). */
typedef void (*smtpc_bulk_socket_cb)(void *ud, int fd, int what);
/* ms until the next timeout (-1 = none): (re)arm one timer. */
typedef void (*smtpc_bulk_timer_cb)(void *ud, int64_t ms);
SMTPC_API int smtpc_bulk_set_socket_cb(smtpc_bulk *b, smtpc_bulk_socket_cb cb, void *ud);
SMTPC_API int smtpc_bulk_set_timer_cb(smtpc_bulk *b, smtpc_bulk_timer_cb cb, void *ud);
/* Starts connecting (after the callbacks are set). */
SMTPC_API int smtpc_bulk_start(smtpc_bulk *b);
/* fd is ready for events (SMTPC_POLL_IN|OUT), or fd = SMTPC_SOCKET_TIMEOUT. */
SMTPC_API int smtpc_bulk_socket_action(smtpc_bulk *b, int fd, int events);
/* ms until the next timeout, -1 = none. */
SMTPC_API int64_t smtpc_bulk_timeout_ms(smtpc_bulk *b);
/* True when every message is reported and every connection closed. */
SMTPC_API bool smtpc_bulk_done(const smtpc_bulk *b);

/* ---- statistics ---- */
typedef struct smtpc_bulk_stats {
    uint64_t submitted, sent, failed, canceled, unknown, retried;
    uint64_t connections_opened, connections_failed;
    unsigned connections_open;
    unsigned connections_idle; /* open, past EHLO, nothing in flight */
} smtpc_bulk_stats;
SMTPC_API void smtpc_bulk_get_stats(const smtpc_bulk *b, smtpc_bulk_stats *st);

#ifdef __cplusplus
}
#endif
#endif
