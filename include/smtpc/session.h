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
#include "errors.h"
#include "reply.h"

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
/* Local address (and port, 0 = any) to bind before connecting. */
SMTPC_API int smtpc_session_set_bind(smtpc_session *s, const char *addr, uint16_t port);
/* Limits on what the server may send: one reply line, one reply. */
SMTPC_API int smtpc_session_set_reply_limits(smtpc_session *s, size_t max_line, size_t max_reply);

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
