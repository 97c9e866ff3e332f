/* The connection opener: greeting, EHLO (HELO when EHLO is not
 * understood), STARTTLS, EHLO again, AUTH - one sans-IO piece for every
 * driver, over the engine, with the policy in one place (like curl's
 * Curl_sasl_start/continue shared by its SMTP, IMAP and POP3).
 *
 * It performs no I/O: the driver owns the engine and the transport. It
 *   1. calls smtpc__opener_start() once the transport is up (after the
 *      implicit TLS handshake, if any);
 *   2. writes the engine's output, feeds it what it reads, and hands every
 *      event to smtpc__opener_event() until that returns non-zero:
 *        SMTPC__OPEN_TLS   do the TLS handshake now (the 220 to STARTTLS
 *                          came; the engine refuses any byte behind it),
 *                          then smtpc__opener_tls_started() and go on;
 *        SMTPC__OPEN_DONE  opened: the engine is ready for transactions;
 *        < 0               failed: the code, smtpc__opener_errmsg() and the
 *                          deciding reply (smtpc__opener_reply(), NULL when
 *                          none). Write what the engine still has (a polite
 *                          QUIT after a refused AUTH), then close.
 * The engine's own failures (smtpc__engine_feed errors: malformed reply,
 * bytes after the 220 to STARTTLS, limits), a lost connection, a timeout
 * and a failed TLS handshake are the driver's to report.
 *
 * Step-wise (the blocking session's smtpc_session_ehlo, _helo, _starttls
 * and _auth): smtpc__opener_start_step() instead of _start() runs one step
 * on a connection already past the ones before it, then says DONE; the
 * same loop drives it. The step's policy and messages are the opening's,
 * except where a single step has its own documented answer:
 *   EHLO      EHLO (cfg->helo: HELO only), HELO on 500/502; DONE after
 *             the 250, whatever the TLS mode;
 *   STARTTLS  whatever the mode: SMTPC_ESTATE when TLS is on,
 *             SMTPC_EUNSUPPORTED when not offered (nothing sent); a refusal
 *             is its reply's code (ETEMPFAIL/EPERMFAIL: the connection stays
 *             in plaintext, nothing else is sent); TLS, then EHLO again, DONE;
 *   AUTH      SMTPC_EAUTH without credentials; otherwise the opening's AUTH.
 * It never sends QUIT. A failure after which the server and the client no
 * longer agree on the state (a 421, a positive reply of the wrong kind, an
 * exchange that does not end) is smtpc__opener_broken(): close; after any
 * other the connection may go on.
 *
 * Policy (the blocking session's, RFC 3207, RFC 4954, RFC 8314):
 *   - TLS mode (already resolved by port: never DEFAULT): STARTTLS and
 *     IMPLICIT require TLS; STARTTLS_OPTIONAL and AUTO (its plaintext
 *     attempt) use STARTTLS when offered and fail when it is offered and
 *     fails, and need it with credentials unless plaintext authentication
 *     is allowed; NONE never sends STARTTLS.
 *   - credentials never travel in clear unless allowed (the policy's
 *     masks, from smtpc__conn_opts_opener_policy: the connection options
 *     decide, the engine does not include them); the strongest mechanism
 *     both sides allow; SASL-IR within 512 octets; a failed step is cancelled with
 *     "*"; a refused OAuth token is refreshed once (token provider only).
 *   - errors: a refused greeting/EHLO/HELO: SMTPC_ETEMPFAIL (4xx, 421
 *     included), SMTPC_EPERMFAIL (5xx), SMTPC_EPROTO (anything else); TLS
 *     required and not offered, or STARTTLS offered and refused:
 *     SMTPC_ETLS; AUTH impossible or refused: SMTPC_EAUTH (a 4xx:
 *     SMTPC_ETEMPFAIL); a token provider's failure: its code. */
#ifndef SMTPC_ENGINE_OPENER_H
#define SMTPC_ENGINE_OPENER_H

#include <smtpc/conn.h>

#include "engine/engine.h"
#include "engine/sasl.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct smtpc__opener smtpc__opener;

enum { SMTPC__OPEN_WAIT = 0, SMTPC__OPEN_TLS = 1, SMTPC__OPEN_DONE = 2 };

/* The step an opening is at (or failed at). */
typedef enum smtpc__open_step {
    SMTPC__OPEN_STEP_GREETING = 0,
    SMTPC__OPEN_STEP_EHLO,
    SMTPC__OPEN_STEP_STARTTLS, /* the STARTTLS command, or TLS required and not offered */
    SMTPC__OPEN_STEP_TLS,      /* waiting for the driver's handshake */
    SMTPC__OPEN_STEP_AUTH,
    SMTPC__OPEN_STEP_OPEN
} smtpc__open_step;

typedef void (*smtpc__opener_info_fn)(void *ud, const char *msg);

/* Who authenticates and how (smtpc__conn_opts_opener_policy fills it from
 * the connection options). */
typedef struct smtpc__opener_policy {
    smtpc__sasl_creds creds;        /* strings borrowed; client_cert: a client certificate is set up */
    bool have_creds;                /* credentials of any kind: AUTH is due */
    bool allow_plain_auth;          /* they may travel without TLS */
    smtpc__sasl_mask allowed_tls;   /* mechanisms allowed on an encrypted connection */
    smtpc__sasl_mask allowed_plain; /* ... on a plain one (0 unless plaintext AUTH is allowed) */
} smtpc__opener_policy;

typedef struct smtpc__opener_cfg {
    const smtpc__opener_policy *policy; /* copied; its strings stay borrowed */
    smtpc_tls_mode mode;         /* the effective mode (DEFAULT resolved) */
    bool encrypted;              /* TLS is already on (implicit) */
    bool greeted;                /* the driver read the greeting (a 220) itself: start at EHLO */
    bool helo;                   /* step-wise EHLO: send HELO only (smtpc_session_helo) */
    const char *ehlo_name;       /* the name for EHLO/HELO (the driver's default resolved) */
    const char *server;          /* "host:port" for messages */
    const char *sasl_host;       /* OAUTHBEARER host= (the TLS name); NULL = none */
    uint16_t port;
    smtpc__sasl_token_fn token_fn; /* NULL = opts' token provider */
    void *token_ud;
    smtpc__opener_info_fn info;  /* notes for a trace ("no STARTTLS offered ..."); NULL */
    void *info_ud;
} smtpc__opener_cfg;

/* Copies what it needs of cfg (the policy's strings stay borrowed). SMTPC_ENOMEM. */
int smtpc__opener_new(smtpc__opener **out, smtpc__engine *e, const smtpc__opener_cfg *cfg);
void smtpc__opener_free(smtpc__opener *o); /* wipes the SASL context; NULL is a no-op */

/* Expects the greeting (or, greeted, sends EHLO). 0 or a negative error. */
int smtpc__opener_start(smtpc__opener *o);
/* Step-wise: one step (EHLO, STARTTLS or AUTH; see the top). Returns
 * SMTPC__OPEN_WAIT or a negative error (nothing sent). */
int smtpc__opener_start_step(smtpc__opener *o, smtpc__open_step step);
/* One engine event. Returns SMTPC__OPEN_WAIT, _TLS, _DONE or a negative error. */
int smtpc__opener_event(smtpc__opener *o, const smtpc__event *ev);
/* The TLS handshake after STARTTLS succeeded: EHLO again. 0 or an error. */
int smtpc__opener_tls_started(smtpc__opener *o);

smtpc__open_step smtpc__opener_step(const smtpc__opener *o);
const char *smtpc__opener_errmsg(const smtpc__opener *o);
/* The reply that decided a failure (or the last one), NULL when none. */
const smtpc__reply *smtpc__opener_reply(const smtpc__opener *o);
/* The greeting (NULL before it). */
const smtpc__reply *smtpc__opener_greeting(const smtpc__opener *o);
/* The mechanism chosen (NONE without AUTH), whether STARTTLS was done. */
smtpc__sasl_mech smtpc__opener_mech(const smtpc__opener *o);
bool smtpc__opener_did_starttls(const smtpc__opener *o);
/* A failure that every connection to this server with these settings
 * would meet (TLS required and STARTTLS not offered; AUTH refused with
 * 5xx, no mechanism in common, credentials that cannot be used, plaintext
 * refused): a bulk run gives up on it instead of reconnecting. */
bool smtpc__opener_fatal(const smtpc__opener *o);
/* The failure left the connection in an unknown state (step-wise: close it). */
bool smtpc__opener_broken(const smtpc__opener *o);

#endif
