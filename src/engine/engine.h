/* The sans-IO SMTP engine (RFC 5321 and extensions).
 *
 * It performs no I/O and reads no clock. A driver:
 *   1. queues commands (smtpc__engine_ehlo, _mail, ... or a whole
 *      transaction with smtpc__engine_txn_begin);
 *   2. writes the bytes smtpc__engine_output() returns to the transport and
 *      calls smtpc__engine_output_advance() with what was written;
 *   3. feeds every byte it reads to smtpc__engine_feed();
 *   4. drains events with smtpc__engine_next_event() until it returns 0.
 * Replies are matched to queued commands in order (RFC 2920 pipelining).
 * Every buffer a peer can grow is bounded (see smtpc__engine_opts).
 *
 * Functions return 0 or a negative SMTPC_E* code; on error the detail is in
 * smtpc__engine_errmsg(). A command function that fails queues nothing. */
#ifndef SMTPC_ENGINE_ENGINE_H
#define SMTPC_ENGINE_ENGINE_H

#include "engine/reply.h"
#include "util/util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct smtpc__engine smtpc__engine;

typedef struct smtpc__engine_opts {
    smtpc__reply_limits limits; /* zeroes mean the defaults (4 KiB line, 64 KiB / 1000 lines) */
    size_t bdat_chunk_size;     /* 0 = default 64 KiB */
} smtpc__engine_opts;

/* Which command a reply answers. */
typedef enum smtpc__cmd {
    SMTPC__CMD_NONE = 0,
    SMTPC__CMD_GREETING,
    SMTPC__CMD_EHLO,
    SMTPC__CMD_HELO,
    SMTPC__CMD_STARTTLS,
    SMTPC__CMD_AUTH,      /* AUTH and each continuation line */
    SMTPC__CMD_MAIL,
    SMTPC__CMD_RCPT,
    SMTPC__CMD_DATA,      /* the 354 (or refusal) to DATA */
    SMTPC__CMD_DATA_END,  /* the reply to the final "." */
    SMTPC__CMD_BDAT,
    SMTPC__CMD_RSET,
    SMTPC__CMD_NOOP,
    SMTPC__CMD_QUIT,
    SMTPC__CMD_RAW
} smtpc__cmd;

const char *smtpc__cmd_name(smtpc__cmd c); /* "EHLO", "MAIL", "DATA_END" ... */

typedef enum smtpc__event_type {
    SMTPC__EV_REPLY = 1,  /* a reply to one command queued by the command functions */
    SMTPC__EV_TLS_READY,  /* 220 to STARTTLS: do the TLS handshake now, then call
                             smtpc__engine_tls_started(). Feeding any byte before
                             that is SMTPC_EPROTO (response injection). */
    SMTPC__EV_TXN_RCPT,   /* transaction: one recipient's reply; tag = recipient index */
    SMTPC__EV_TXN_BODY,   /* transaction: the server wants the body (354 to DATA, or
                             CHUNKING in use): call _body_write / _body_end */
    SMTPC__EV_TXN_DONE    /* transaction finished; status 0 = accepted (reply is the
                             final 250 with the queue id), else SMTPC_ETEMPFAIL /
                             SMTPC_EPERMFAIL with the reply that decided it;
                             cmd is the command that reply answered (MAIL, RCPT,
                             DATA, DATA_END or BDAT) */
} smtpc__event_type;

typedef struct smtpc__event {
    smtpc__event_type type;
    smtpc__cmd cmd;             /* the command answered */
    uint32_t tag;               /* caller's tag (recipient index for RCPT) */
    int status;                 /* for TXN_DONE; otherwise 0 */
    const smtpc__reply *reply;  /* valid until the next _next_event/_feed/_free */
} smtpc__event;

/* ---- lifetime ------------------------------------------------------------ */
int smtpc__engine_new(smtpc__engine **out, const smtpc__engine_opts *opts);
void smtpc__engine_free(smtpc__engine *e);
const char *smtpc__engine_errmsg(const smtpc__engine *e);
/* Forget everything (capabilities, queued commands, buffers) for a new connection. */
void smtpc__engine_reset(smtpc__engine *e);

/* ---- input / output --------------------------------------------------------- */
/* Parses replies from data. Returns 0 (all consumed), or a negative error
 * (SMTPC_EPROTO: malformed reply, reply to nothing, bytes after STARTTLS's
 * 220; SMTPC_ELIMIT: a line or reply over the limits). *consumed says how
 * many bytes were used; after EV_TLS_READY it stops right after the 220:
 * if data holds more bytes than that, the call fails with SMTPC_EPROTO
 * (response injection) with *consumed just past the 220, and the
 * EV_TLS_READY event is still queued. Errors are sticky: the connection is
 * lost, later feeds fail the same way and commands return SMTPC_ESTATE.
 * A 421 when nothing is pending (server shutting down) is not an error: it
 * comes as EV_REPLY with cmd SMTPC__CMD_NONE (and ends a transaction). */
int smtpc__engine_feed(smtpc__engine *e, const uint8_t *data, size_t len, size_t *consumed);
/* 1 and *ev filled when an event is ready, 0 when none. */
int smtpc__engine_next_event(smtpc__engine *e, smtpc__event *ev);
/* Bytes waiting to be written. */
size_t smtpc__engine_output(const smtpc__engine *e, const uint8_t **data);
void smtpc__engine_output_advance(smtpc__engine *e, size_t n);
/* Nothing is waiting to be written: give the output buffers' memory back
 * (an idle connection of many; wiped if it held a credential). The next
 * command allocates again. */
void smtpc__engine_trim(smtpc__engine *e);
/* Number of commands sent or queued whose reply has not arrived. */
size_t smtpc__engine_pending_replies(const smtpc__engine *e);

/* ---- state ---------------------------------------------------------------- */
const smtpc__caps *smtpc__engine_caps(const smtpc__engine *e); /* from the last EHLO */
bool smtpc__engine_tls_active(const smtpc__engine *e);
/* The TLS handshake succeeded: discard all knowledge from before (caps), the
 * caller must send EHLO again. STARTTLS can never be sent twice. */
void smtpc__engine_tls_started(smtpc__engine *e);
/* The last complete reply received (any command), or NULL. */
const smtpc__reply *smtpc__engine_last_reply(const smtpc__engine *e);

/* ---- single commands ------------------------------------------------------
 * Each validates its arguments (CR, LF, NUL -> SMTPC_EINVAL; a command line
 * over 512 octets -> SMTPC_ELIMIT), appends the line to the output and
 * expects one reply (SMTPC__EV_REPLY). SMTPC_ESTATE when not valid now (e.g.
 * after QUIT or a 421, while STARTTLS awaits the handshake, during a
 * transaction or a body, or MAIL/RCPT/DATA/AUTH after STARTTLS before a new
 * EHLO/HELO succeeded). Other control characters are SMTPC_EINVAL too, and
 * so are '<' '>' in paths. MAIL and RCPT: the line without parameters must
 * fit in 512 octets, with ESMTP parameters in 1024 (RFC 1869/3461 let
 * extensions lengthen them). AUTH lines (initial response) are bounded by
 * 64 KiB like continuations. */
int smtpc__engine_expect_greeting(smtpc__engine *e);
int smtpc__engine_ehlo(smtpc__engine *e, const char *domain);
int smtpc__engine_helo(smtpc__engine *e, const char *domain);
int smtpc__engine_starttls(smtpc__engine *e);
/* AUTH mech [initial-response]; initial_b64 NULL = none, "" = "=" (empty). */
int smtpc__engine_auth(smtpc__engine *e, const char *mech, const char *initial_b64);
/* A continuation line (base64, or "*" to cancel). No 512-octet limit: OAuth
 * tokens are long; bounded by 64 KiB. */
int smtpc__engine_auth_continue(smtpc__engine *e, const char *b64);

typedef enum { SMTPC__BODY_DEFAULT = 0, SMTPC__BODY_7BIT, SMTPC__BODY_8BITMIME, SMTPC__BODY_BINARYMIME } smtpc__body_type;
typedef struct smtpc__mail_params {
    uint64_t size;            /* SIZE=, 0 = not sent */
    smtpc__body_type body;    /* BODY= */
    bool smtputf8;            /* SMTPUTF8 */
    const char *dsn_ret;      /* "FULL" / "HDRS" / NULL */
    const char *dsn_envid;    /* xtext-encoded by the engine; NULL = none */
    bool requiretls;          /* REQUIRETLS (RFC 8689) */
    const char *extra;        /* further raw parameters "K=V K2=V2", validated; NULL */
} smtpc__mail_params;

typedef struct smtpc__rcpt_params {
    const char *dsn_notify;   /* "NEVER" or a comma list of SUCCESS,FAILURE,DELAY; NULL */
    const char *dsn_orcpt;    /* original recipient (rfc822;addr), xtext-encoded; NULL */
} smtpc__rcpt_params;

/* Paths are given without angle brackets; "" is the null reverse-path <>. */
int smtpc__engine_mail(smtpc__engine *e, const char *from, const smtpc__mail_params *p);
int smtpc__engine_rcpt(smtpc__engine *e, const char *to, const smtpc__rcpt_params *p, uint32_t tag);
int smtpc__engine_data(smtpc__engine *e);
int smtpc__engine_rset(smtpc__engine *e);
int smtpc__engine_noop(smtpc__engine *e);
int smtpc__engine_quit(smtpc__engine *e);
int smtpc__engine_raw(smtpc__engine *e, const char *line);

/* ---- body -------------------------------------------------------------------
 * After a 354 to DATA (or EV_TXN_BODY), stream the message through
 * _body_write: CRLF normalisation (bare CR or LF -> CRLF), dot-stuffing at
 * every line start; _body_end adds a final CRLF if missing and ".\r\n" and
 * expects the reply (SMTPC__CMD_DATA_END). A line over 998 octets is
 * SMTPC_ELIMIT. No input can end the data early.
 * In BDAT mode (smtpc__engine_body_begin_bdat) the same normalisation is done
 * without dot-stuffing, into chunks of bdat_chunk_size sent as "BDAT n" and
 * the last as "BDAT n LAST" (one reply expected per chunk, SMTPC__CMD_BDAT).
 * The driver should keep the output below a few chunks before writing more. */
int smtpc__engine_body_begin_bdat(smtpc__engine *e);
int smtpc__engine_body_write(smtpc__engine *e, const void *data, size_t len);
int smtpc__engine_body_end(smtpc__engine *e);

/* ---- transactions -----------------------------------------------------------
 * A whole mail transaction: MAIL, every RCPT and DATA (or BDAT mode), sent as
 * one group when the server offers PIPELINING, else one by one. Every reply
 * in the group is checked (RFC 2920). Events: one EV_TXN_RCPT per recipient,
 * then EV_TXN_BODY when the body is wanted, then one EV_TXN_DONE. When MAIL
 * or all RCPTs fail, or some fail under SMTPC__TXN_STRICT, the engine ends
 * the transaction itself (an empty DATA end if the server already said 354,
 * then RSET) and EV_TXN_DONE carries the deciding reply. Under STRICT with
 * several recipients, DATA is not pipelined: it waits for every RCPT reply,
 * so a partly accepted envelope never meets a 354 (one recipient cannot be
 * partly accepted: its DATA is pipelined). Should a server still say 354 while some
 * recipient is accepted (after refusing MAIL), no end of data is sent (it
 * would deliver): EV_TXN_DONE comes at once, the engine is closing and the
 * driver must drop the connection without QUIT. */
typedef enum { SMTPC__TXN_CONTINUE = 0, SMTPC__TXN_STRICT = 1 } smtpc__txn_policy;
typedef struct smtpc__txn_opts {
    const char *from;
    const smtpc__mail_params *mail;      /* NULL = none */
    const char *const *rcpts;
    const smtpc__rcpt_params *rcpt;      /* NULL = none; else one per recipient */
    size_t nrcpts;
    smtpc__txn_policy policy;
    bool use_bdat;                       /* CHUNKING instead of DATA (server must offer it) */
} smtpc__txn_opts;
/* Before anything is queued: SMTPC_EUNSUPPORTED if a parameter needs an
 * extension the server did not offer (CHUNKING for use_bdat, SMTPUTF8,
 * 8BITMIME, BINARYMIME, DSN, REQUIRETLS - the last also needs TLS),
 * SMTPC_EINVAL for BINARYMIME without BDAT or a non-ASCII address without
 * smtputf8, SMTPC_ELIMIT if mail->size exceeds the server's SIZE. SIZE= is
 * left out when the server has no SIZE extension. With BODY=BINARYMIME the
 * body goes through BDAT unaltered (no CRLF normalisation, no line limit).
 * After a refused BDAT chunk, further body writes are discarded (0) and the
 * transaction ends with RSET once body_end is called. */
int smtpc__engine_txn_begin(smtpc__engine *e, const smtpc__txn_opts *o);
/* Cross-message pipelining (RFC 2920 3.1): the current transaction (DATA,
 * PIPELINING) has queued its final dot and only waits for the reply. It is
 * set aside: its EV_TXN_DONE (cmd DATA_END) still comes when the reply
 * does, before any event of a transaction begun after this call, and the
 * engine is IDLE at once, so the next MAIL/RCPT/DATA join the dot in one
 * write. SMTPC_ESTATE (nothing changed) in any other state: BDAT, no
 * PIPELINING, body not ended, clean-up running, closing. */
int smtpc__engine_txn_chain(smtpc__engine *e);

/* ---- additions (not in the first contract) --------------------------------
 * Protocol trace: cb sees every command line the engine queues (without CRLF)
 * and every reply line received. AUTH lines carrying credentials (initial
 * response, continuations) come with secret=true: redact them. Message body
 * bytes are not traced; BDAT command lines are. cb NULL turns it off. */
typedef enum { SMTPC__TRACE_CLIENT = 0, SMTPC__TRACE_SERVER = 1 } smtpc__trace_dir;
typedef void (*smtpc__trace_fn)(void *ud, smtpc__trace_dir dir, const char *line, size_t len,
                                bool secret);
void smtpc__engine_set_trace(smtpc__engine *e, smtpc__trace_fn cb, void *ud);
/* What a trace shows for a secret line: "AUTH MECH ********" or
 * "********", into out (96 octets are enough); returns its length. */
size_t smtpc__trace_redact(const char *line, size_t len, char *out, size_t outlen);
/* Name of the transaction state ("IDLE", "ENVELOPE", "BODY", "WAIT_END",
 * "CLEANUP") for logs. */
const char *smtpc__engine_state_name(const smtpc__engine *e);
/* True after QUIT was queued or a 421 arrived: every command is SMTPC_ESTATE. */
bool smtpc__engine_closing(const smtpc__engine *e);

/* ---- body encoder on its own (used by the engine; tested and fuzzed alone) -- */
typedef struct smtpc__dotstuff {
    int state;        /* internal */
    size_t line_len;  /* octets on the current output line */
} smtpc__dotstuff;
void smtpc__dotstuff_init(smtpc__dotstuff *d);
/* dot_stuff=false for BDAT (normalisation only). */
int smtpc__dotstuff_write(smtpc__dotstuff *d, bool dot_stuff, const uint8_t *in, size_t n,
                          smtpc__buf *out);
/* Ends the body: CRLF if the last line is unterminated, then ".\r\n" when dot_stuff. */
int smtpc__dotstuff_finish(smtpc__dotstuff *d, bool dot_stuff, smtpc__buf *out);

#endif
