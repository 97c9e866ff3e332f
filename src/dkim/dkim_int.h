/* DKIM internals shared by the signer and the verifier: streaming body
 * canonicalization and hashing, the bounded header section, header field
 * canonicalization, tag=value lists. */
#ifndef SMTPC_DKIM_INT_H
#define SMTPC_DKIM_INT_H

#include "util/util.h"

#include <openssl/evp.h>
#include <smtpc/dkim.h>

/* ---- body: canonicalized and hashed as it streams ---------------------
 * Line ends are CRLF or a bare LF. A CR not followed by LF is data for the
 * verifier; for the signer (cr_eol) it ends the line, as the SMTP engine
 * sends every CR, LF or CRLF as one CRLF: what is signed is what is sent. State
 * carried across calls: a CR waiting for its LF, a pending run of WSP
 * (relaxed), the count of empty lines not yet known to be followed by
 * text (trailing empty lines are dropped), whether the line has text. */
typedef struct smtpc__dkim_body {
    EVP_MD_CTX *md;
    int canon;        /* SMTPC_DKIM_RELAXED or SMTPC_DKIM_SIMPLE */
    uint64_t limit;   /* octets of canonical body hashed at most (l=), UINT64_MAX: all */
    uint64_t total;   /* canonical octets produced so far */
    uint64_t empty;   /* pending empty lines */
    bool cr_eol;      /* a lone CR is a line end (signer) */
    bool cr, wsp, line;
    size_t stn;       /* staged octets */
    uint8_t st[4096]; /* staging: one digest update per 4 KiB, not per line */
} smtpc__dkim_body;

int smtpc__dkim_body_init(smtpc__dkim_body *b, int canon, uint64_t limit, bool cr_eol);
void smtpc__dkim_body_update(smtpc__dkim_body *b, const uint8_t *p, size_t n);
/* Ends the body and writes the SHA-256 body hash. 0 or SMTPC_EIO. */
int smtpc__dkim_body_final(smtpc__dkim_body *b, uint8_t hash[32]);
void smtpc__dkim_body_free(smtpc__dkim_body *b);

/* ---- header section ------------------------------------------------------
 * Kept whole (at most SMTPC_DKIM_MAX_HEADER octets) with CRLF line ends,
 * then split into fields. */
typedef struct smtpc__dkim_field {
    size_t off, len;  /* the field in raw, its final CRLF included */
    size_t name_len;  /* the name, WSP before the colon excluded */
    size_t value_off; /* just after the colon */
} smtpc__dkim_field;

typedef struct smtpc__dkim_hdrs {
    smtpc__buf raw;           /* the header section, CRLF line ends */
    size_t line_start;        /* start of the line being read */
    bool cr_eol;              /* a lone CR is a line end (signer) */
    bool skip_lf;             /* cr_eol: a CR ended the last line; an LF next is its own */
    bool done;                /* the empty line was seen */
    smtpc__dkim_field *f;
    size_t n, cap;
} smtpc__dkim_hdrs;

void smtpc__dkim_hdrs_init(smtpc__dkim_hdrs *h, bool cr_eol);
void smtpc__dkim_hdrs_free(smtpc__dkim_hdrs *h);
/* Takes header bytes from p[0..n) up to and including the empty line that
 * ends the section; *used receives how many were taken. 0 or SMTPC_ELIMIT
 * / SMTPC_ENOMEM. */
int smtpc__dkim_hdrs_feed(smtpc__dkim_hdrs *h, const uint8_t *p, size_t n, size_t *used);
/* Splits the section into fields (a last line without its line end is
 * completed). 0, or SMTPC_EINVAL with the reason in err. */
int smtpc__dkim_hdrs_split(smtpc__dkim_hdrs *h, smtpc__errmsg *err);
static inline const char *smtpc__dkim_field_ptr(const smtpc__dkim_hdrs *h, size_t i)
{
    return (const char *)smtpc__buf_ptr(&h->raw) + h->f[i].off;
}
/* Appends to out the canonical form of field text f[0..n) (its CRLF
 * included), ended with CRLF when crlf is true (the signature field itself
 * is hashed without it). */
int smtpc__dkim_canon_field(smtpc__buf *out, int canon, const char *f, size_t n, bool crlf);
/* Appends the fields named by the h= list names[0..nn) (each name:
 * pointer and length), each time the last instance not yet used, as the
 * verifier must find them (RFC 6376 5.4.2). used: h->n flags, zeroed by the
 * caller. A name with no instance left adds nothing. */
int smtpc__dkim_canon_selected(smtpc__buf *out, const smtpc__dkim_hdrs *h, int canon,
                               const char *const *names, const size_t *lens, size_t nn,
                               bool *used);

/* ---- tag=value lists (RFC 6376 3.2) ---------------------------------- */
#define SMTPC__DKIM_MAX_TAGS 32
typedef struct smtpc__dkim_tag {
    const char *name;
    size_t name_len;
    const char *val;  /* FWS around it trimmed */
    size_t val_len;
    size_t eq_end;    /* offset (in the parsed text) just after '=' */
} smtpc__dkim_tag;
/* Parses s[0..n). Returns the number of tags, or -1 on a syntax error or a
 * duplicated tag, or more than SMTPC__DKIM_MAX_TAGS tags. */
int smtpc__dkim_tags_parse(const char *s, size_t n, smtpc__dkim_tag *tags);
const smtpc__dkim_tag *smtpc__dkim_tag_get(const smtpc__dkim_tag *tags, int n, const char *name);
/* s[0..n) without FWS (for base64 values): writes into out (at least n
 * octets) and returns its length. */
size_t smtpc__dkim_strip_fws(char *out, const char *s, size_t n);

#endif
