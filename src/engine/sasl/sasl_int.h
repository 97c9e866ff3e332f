/* Internals shared by the SASL files (not for the rest of the library). */
#ifndef SMTPC_ENGINE_SASL_INT_H
#define SMTPC_ENGINE_SASL_INT_H

#include "engine/sasl.h"

struct smtpc__sasl {
    smtpc__sasl_mech mech;
    /* copies of the credentials (secrets wiped on free) */
    char *user, *pass, *authzid, *token, *host;
    size_t token_len;
    uint16_t port;
    unsigned scram_min_iter; /* > 0 */
    smtpc__sasl_token_fn token_fn;
    void *token_ud;

    bool started, has_ir, ir_deferred, ir_pending, done, token_rejected;
    int rounds;
    int step_rc;         /* the error a step reported (the line sent was "*" or a dummy) */
    int state;           /* mechanism-specific step */
    smtpc__buf out;      /* the current response, base64 + NUL (wiped) */
    smtpc__errmsg err;

    /* SCRAM */
    char *nonce_fixed;       /* tests */
    char *client_first_bare; /* "n=user,r=cnonce" */
    char *gs2_header;        /* "n,," or "n,a=authz," */
    uint8_t server_sig[64];
    size_t sig_len;
    bool server_verified;
};

/* Sets s->out to base64(raw) and fills line; returns 0 or SMTPC_ENOMEM. */
int smtpc__sasl_emit(smtpc__sasl *s, const void *raw, size_t n, bool secret, smtpc__sasl_line *line);
/* Decodes a challenge into a new NUL-terminated buffer (*outlen bytes).
 * Returns 0, SMTPC_EPROTO (bad base64) or SMTPC_ENOMEM. */
int smtpc__sasl_decode(const char *b64, size_t len, uint8_t **out, size_t *outlen);

/* sasl/crypto.c */
int smtpc__sasl_cram_md5(smtpc__sasl *s, const uint8_t *chal, size_t n, smtpc__sasl_line *resp);
int smtpc__sasl_scram_first(smtpc__sasl *s, smtpc__sasl_line *ir);
int smtpc__sasl_scram_step(smtpc__sasl *s, const uint8_t *chal, size_t n, smtpc__sasl_line *resp);
/* Checks "v=..." (or reports "e=..."): 0 or SMTPC_EAUTH. */
int smtpc__sasl_scram_verify(smtpc__sasl *s, const uint8_t *data, size_t n);
void smtpc__sasl_scram_clear(smtpc__sasl *s);

#endif
