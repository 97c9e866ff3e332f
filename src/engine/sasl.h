/* SASL mechanisms for SMTP AUTH (RFC 4954), sans-IO.
 *
 * A context turns server challenges (base64, as they appear after "334 ")
 * into responses (base64, to send with smtpc__engine_auth /
 * smtpc__engine_auth_continue). It performs no I/O.
 *
 * Driving an exchange (what the session does; smtpc__sasl_reply() below
 * wraps the 334/235/5xx handling in one call):
 *
 *   smtpc__sasl_new(&s, mech, &creds, &err);
 *   smtpc__sasl_start(s, &ir);
 *   if (ir.b64 && ir.fits_auth_line) engine_auth(e, name, ir.b64);   // SASL-IR
 *   else                             engine_auth(e, name, NULL);     // IR (if any) goes
 *                                                                    // in reply to the first 334
 *   on 334 <text>:  rc = smtpc__sasl_step(s, text, strlen(text), &resp);
 *                   if (resp.b64) engine_auth_continue(e, resp.b64);
 *                   if (rc < 0) { read the server's final reply, fail with rc }
 *   on 235 [text]:  rc = smtpc__sasl_finish(s, text_or_NULL);   // SCRAM: server proof checked
 *   on 535 etc.:    fail (SMTPC_EAUTH); if smtpc__sasl_token_rejected(s) and a token
 *                   provider is set: smtpc__sasl_restart(s, true) and try once more.
 *
 * Every line produced carries `secret` so traces can redact it; the
 * initial response goes on the AUTH line itself, so a trace redacts
 * "AUTH <mech> <ir>" too when ir.secret is set.
 * OAuth: a server may also refuse a token with a plain 535 and no error
 * challenge (smtpc__sasl_token_rejected() is then false); a session with a
 * token provider may treat any 535 to XOAUTH2/OAUTHBEARER as "refresh and
 * retry once".
 * Credentials containing CR, LF or NUL are refused with SMTPC_EINVAL.
 * Secrets are wiped when the context is freed. */
#ifndef SMTPC_ENGINE_SASL_H
#define SMTPC_ENGINE_SASL_H

#include "util/util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum smtpc__sasl_mech {
    SMTPC__SASL_NONE = 0,
    SMTPC__SASL_EXTERNAL, /* identity from the TLS client certificate */
    SMTPC__SASL_LOGIN,
    SMTPC__SASL_PLAIN,
    SMTPC__SASL_XOAUTH2,
    SMTPC__SASL_OAUTHBEARER,
    SMTPC__SASL_CRAM_MD5,
    SMTPC__SASL_SCRAM_SHA_1,
    SMTPC__SASL_SCRAM_SHA_256,
    SMTPC__SASL_MECH_COUNT
} smtpc__sasl_mech;

/* A set of mechanisms. */
typedef uint32_t smtpc__sasl_mask;
#define SMTPC__SASL_BIT(m) ((smtpc__sasl_mask)1u << (m))
#define SMTPC__SASL_ALL (((smtpc__sasl_mask)1u << SMTPC__SASL_MECH_COUNT) - 2u)

/* Bounds against a hostile server. */
#define SMTPC__SASL_MAX_ROUNDS 10          /* challenges per exchange */
#define SMTPC__SASL_MAX_CHALLENGE 16384    /* base64 octets of one challenge */
#define SMTPC__SASL_MAX_SCRAM_ITER 10000000u
/* The SCRAM iteration count required unless the caller lowers it (RFC 7677
 * section 4: at least 4096). */
#define SMTPC__SASL_MIN_SCRAM_ITER 4096u

/* Supplies an OAuth 2.0 access token. refresh=false: the current token;
 * refresh=true: the server rejected the last one, get a new one. On success
 * returns 0 and sets *token / *len (borrowed: copied before the callback's
 * next call); any other return fails the exchange with that code. */
typedef int (*smtpc__sasl_token_fn)(void *userdata, bool refresh, const char **token, size_t *len);

typedef struct smtpc__sasl_creds {
    const char *username;     /* authentication identity */
    const char *password;
    const char *authzid;      /* authorization identity (act as), NULL = none */
    const char *oauth_token;  /* XOAUTH2 / OAUTHBEARER; any length */
    smtpc__sasl_token_fn token_fn; /* alternative to oauth_token */
    void *token_ud;
    const char *host;         /* OAUTHBEARER host= / port= (optional) */
    uint16_t port;
    bool client_cert;         /* a TLS client certificate is in use (EXTERNAL) */
    /* SCRAM: a server-first-message with fewer iterations is refused
     * (SMTPC_EAUTH); 0 (or less) = SMTPC__SASL_MIN_SCRAM_ITER. A server
     * asking for few iterations either stores a weak hash or is an attacker
     * making the proof cheap to attack offline. */
    int scram_min_iterations;
} smtpc__sasl_creds;

/* One line to send: NUL-terminated base64 ("" = empty line / "=" as an
 * initial response; "*" = cancel). Owned by the context, valid until the
 * next call on it. */
typedef struct smtpc__sasl_line {
    const char *b64;       /* NULL = nothing to send */
    size_t len;
    bool secret;           /* contains a password, token or proof: redact in traces */
    bool cancel;           /* the line is the cancellation "*" */
    bool fits_auth_line;   /* initial response only: "AUTH <mech> <b64>\r\n" <= 512 octets */
} smtpc__sasl_line;

typedef struct smtpc__sasl smtpc__sasl;

/* ---- mechanism table and selection ----------------------------------------- */
const char *smtpc__sasl_mech_name(smtpc__sasl_mech m);   /* "SCRAM-SHA-256"; NULL if none */
smtpc__sasl_mech smtpc__sasl_mech_from_name(const char *name); /* case-insensitive; NONE if unknown */
/* The set named in a list (e.g. smtpc__caps.auth); unknown names are ignored. */
smtpc__sasl_mask smtpc__sasl_mask_from_names(const char *const *names, size_t n);
/* Parses a caller's list "SCRAM-SHA-256 PLAIN" (space or comma separated).
 * SMTPC_EINVAL on an unknown name (err says which). */
int smtpc__sasl_mask_parse(const char *list, smtpc__sasl_mask *out, smtpc__errmsg *err);
/* What may be used by default with these credentials: PLAIN and LOGIN only
 * on an encrypted connection; XOAUTH2/OAUTHBEARER only with a token (or a
 * provider); password mechanisms only with a username and password (SCRAM
 * only if the password can be SASLprep'ed); EXTERNAL only with a client
 * certificate. */
smtpc__sasl_mask smtpc__sasl_default_allowed(const smtpc__sasl_creds *c, bool encrypted);
/* The strongest mechanism in offered & allowed: SCRAM-SHA-256 >
 * SCRAM-SHA-1 > CRAM-MD5 > OAUTHBEARER > XOAUTH2 > PLAIN > LOGIN > EXTERNAL
 * (EXTERNAL last: a client certificate is often there for the transport
 * only, and a password given explicitly says who to log in as).
 * SMTPC__SASL_NONE when nothing is in common. */
smtpc__sasl_mech smtpc__sasl_choose(smtpc__sasl_mask offered, smtpc__sasl_mask allowed);
/* Writes the names in mask, strongest first, space separated ("" for none).
 * Returns the length it needed (like snprintf). */
size_t smtpc__sasl_mask_format(smtpc__sasl_mask mask, char *buf, size_t size);

/* ---- an exchange ---------------------------------------------------------------- */
/* Creates a context for mech with a copy of creds. SMTPC_EINVAL when a
 * credential the mechanism needs is missing or contains CR/LF/NUL (or, for
 * SCRAM, a password that cannot be SASLprep'ed); the token provider's error
 * when it fails. On failure *out is untouched and err says why. */
int smtpc__sasl_new(smtpc__sasl **out, smtpc__sasl_mech mech, const smtpc__sasl_creds *creds,
                    smtpc__errmsg *err);
void smtpc__sasl_free(smtpc__sasl *s); /* wipes secrets; NULL is a no-op */
smtpc__sasl_mech smtpc__sasl_mech_of(const smtpc__sasl *s);
const char *smtpc__sasl_errmsg(const smtpc__sasl *s);

/* Begins (or, after _restart, begins again). ir->b64 is the initial
 * response, or NULL for server-first mechanisms (LOGIN, CRAM-MD5). When the
 * caller does not send it with AUTH (fits_auth_line false, or by choice),
 * the first _step (the server's empty 334) returns it. Returns 0 or
 * SMTPC_ESTATE when already started. */
int smtpc__sasl_start(smtpc__sasl *s, smtpc__sasl_line *ir);
/* The caller did not send the initial response with AUTH: it will be the
 * answer to the first 334. */
void smtpc__sasl_defer_ir(smtpc__sasl *s);
/* One 334 challenge (base64 text after "334 ", without CRLF). Returns
 * 0: send resp, more may follow; 1: send resp, the client has nothing more
 * to say (the next reply should be 235); or a negative error. On error
 * resp->b64, when not NULL, is the line the server is waiting for ("*"
 * cancels; OAUTHBEARER's "AQ==" acknowledges the error): send it, read the
 * final reply, then fail with the code. Errors: SMTPC_EPROTO (invalid
 * base64, malformed challenge), SMTPC_ELIMIT (challenge over the limit),
 * SMTPC_EAUTH (too many challenges, server error, SCRAM signature that
 * does not verify). */
int smtpc__sasl_step(smtpc__sasl *s, const char *challenge_b64, size_t len, smtpc__sasl_line *resp);
/* The server said 235. final_b64 is additional data that came with it, or
 * NULL. Returns 0, or SMTPC_EAUTH when the mechanism requires server proof
 * that never came or does not verify (SCRAM: mutual authentication). */
int smtpc__sasl_finish(smtpc__sasl *s, const char *final_b64);
/* One reply to AUTH or to a continuation line, whole exchange semantics in
 * one place. code is the reply code; text/len the text of its (last) line
 * after the code and separator (for 334: the challenge; otherwise the
 * server's words, used in messages: RFC 4954 has no additional data with
 * 235, SCRAM's server-final comes as a 334). Returns
 *   0  resp is the line to send (334 handled by _step);
 *   1  authenticated (235, and for SCRAM the server's proof checked);
 *   <0 failed: SMTPC_EAUTH (5xx, or a 235 whose server proof is missing or
 *      wrong), SMTPC_ETEMPFAIL (4xx), SMTPC_EPROTO (a reply code that
 *      makes no sense here), or the error of a step that cancelled (then
 *      resp->b64, if set, must still be sent and this called again with
 *      the server's answer, which keeps the step's code). The message
 *      carries the server's words, escaped. After a 5xx to XOAUTH2 or
 *      OAUTHBEARER smtpc__sasl_token_rejected() is true. */
int smtpc__sasl_reply(smtpc__sasl *s, int code, const char *text, size_t len, smtpc__sasl_line *resp);

/* The server refused an OAuth token (an error challenge, or a 5xx seen
 * by _reply). The session may then _restart(s, true) once. */
bool smtpc__sasl_token_rejected(const smtpc__sasl *s);
/* Resets the exchange for a new AUTH attempt on the same connection; with
 * refresh_token, asks the token provider for a fresh token first
 * (SMTPC_EINVAL when there is no provider). */
int smtpc__sasl_restart(smtpc__sasl *s, bool refresh_token);

/* Tests only: a fixed SCRAM client nonce (printable ASCII, no ','). */
int smtpc__sasl_set_nonce(smtpc__sasl *s, const char *nonce);

/* SASLprep (RFC 4013) for what this library supports: printable ASCII is
 * returned unchanged, non-ASCII space characters are mapped to U+0020, the
 * characters "commonly mapped to nothing" are removed; control characters
 * are refused (SMTPC_EINVAL); any other non-ASCII text is refused
 * (SMTPC_EUNSUPPORTED), since normalization (NFKC) is not implemented.
 * On success *out is a new string (free with smtpc__free_secret); out NULL:
 * only the check (no allocation). */
int smtpc__saslprep(const char *in, char **out);

#endif
