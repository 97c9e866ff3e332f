/* Internals of the MIME module shared across its source files. */
#ifndef SMTPC_MIME_INTERNAL_H
#define SMTPC_MIME_INTERNAL_H

#include <smtpc/message.h>

#include "util/util.h"

#include <stdio.h>

struct smtpc_address {
    char *display;   /* decoded UTF-8 or NULL */
    char *local;     /* unquoted */
    char *domain;    /* as written */
    char *domain_ace;
    char *envelope;  /* local (re-quoted if needed) @ domain_ace */
    char *group;
    bool smtputf8;
};

struct smtpc_address_list {
    smtpc_address **v;
    size_t n, cap;
};

/* Parses s[0..n) as one mailbox (mode 0), an address list (1), or an
 * address list tolerating empty elements "a@b, , c@d," (2, obs-addr-list,
 * for loaded messages). */
int smtpc__address_parse_n(const char *s, size_t n, int mode, smtpc_address_list *out,
                           char *errbuf, size_t errlen);
int smtpc__alist_push(smtpc_address_list *l, smtpc_address *a);
void smtpc__alist_clear(smtpc_address_list *l);

/* smtpc__buf_ptr of an empty, never-grown buffer is NULL + 0 (undefined
 * behaviour that UBSan reports); this one gives "" instead. */
static inline const uint8_t *smtpc__bptr(const smtpc__buf *b)
{
    return b->data ? b->data + b->off : (const uint8_t *)"";
}

/* ---- UTF-8 ---- */
bool smtpc__utf8_valid(const uint8_t *s, size_t n);
/* Length of the UTF-8 sequence starting at s[0] (1 for ASCII or invalid). */
size_t smtpc__utf8_seqlen(const uint8_t *s, size_t n);

/* ---- header output with folding ---- */
typedef struct smtpc__hdr {
    smtpc__buf *out;
    size_t col;        /* column of the next byte on the current line */
    size_t line_start; /* chars of the current line that precede any token */
} smtpc__hdr;

/* Starts "Name:" (no space). */
int smtpc__hdr_begin(smtpc__hdr *h, smtpc__buf *out, const char *name);
/* Appends ws (SP/TAB run, may be empty meaning "no separator") then tok;
 * folds before ws when the line would pass 78 columns. An empty ws never
 * folds. */
int smtpc__hdr_tok(smtpc__hdr *h, const char *ws, size_t wslen, const char *tok, size_t toklen);
int smtpc__hdr_end(smtpc__hdr *h);

/* Unstructured value (Subject, custom headers): words needing it become
 * RFC 2047 encoded words; whitespace preserved exactly on decode. */
int smtpc__hdr_unstructured(smtpc__hdr *h, const char *v, size_t n, bool utf8);
/* A display name as phrase tokens (atoms, quoted string or encoded words). */
int smtpc__hdr_phrase(smtpc__hdr *h, const char *v, size_t n, bool utf8, bool first);
/* Appends RFC 2047 encoded words for s[0..n) (valid UTF-8) as tokens, the
 * first preceded by ws0 (may be ""), the others by " ". phrase: restricted Q
 * alphabet. */
int smtpc__hdr_encoded(smtpc__hdr *h, const char *ws0, size_t ws0len, const char *s, size_t n,
                       bool phrase);

/* Decodes an unfolded unstructured header value (RFC 2047); the result is
 * a malloc'ed NUL-terminated string (or NULL on ENOMEM). Undecodable
 * encoded words are kept as is. Charsets: utf-8, us-ascii, iso-8859-1. */
char *smtpc__rfc2047_decode(const char *s, size_t n);

/* ---- quoted-printable (bodies; input already CRLF) ---- */
/* Encodes src[0..n) into out. */
int smtpc__qp_encode(smtpc__buf *out, const uint8_t *src, size_t n);

/* ---- misc ---- */
const char *smtpc__mime_guess_type(const char *name);
int smtpc__random_hex(char *dst, size_t nhex); /* NUL-terminated */
/* RFC 5322 date in the local zone, e.g. "Mon, 23 Nov 2026 19:02:11 +0100". */
void smtpc__rfc5322_date(char *dst, size_t dstsz, int64_t t);
/* Normalises bare CR / bare LF to CRLF; returns malloc'ed copy. */
uint8_t *smtpc__crlf_normalize(const uint8_t *s, size_t n, size_t *outlen);

/* ---- message model ---- */
enum { SRC_MEM, SRC_FILE, SRC_CB };
enum { SPOOL_NONE, SPOOL_PARTIAL, SPOOL_DONE };

typedef struct smtpc__part {
    int src;
    uint8_t *data; /* SRC_MEM (owned; text already CRLF) */
    size_t len;
    char *path;    /* SRC_FILE */
    int64_t size;  /* SRC_FILE, SRC_CB: -1 when unknown */
    ssize_t (*cb)(void *, void *, size_t);
    void *ud;
    char *ctype;   /* content type (may carry parameters for alternatives) */
    char *charset; /* text parts */
    char *name;    /* file name or NULL */
    char *cid;     /* Content-ID without <> */
    int disposition; /* 0 none, 1 attachment, 2 inline */
    bool is_text, is_rfc822;
    FILE *spool;
    int spool_state;
    int64_t spool_len;
} smtpc__part;

typedef struct smtpc__hfield {
    char *name, *value;
} smtpc__hfield;

struct smtpc_message {
    smtpc__errmsg err;
    smtpc_address *from, *sender;
    smtpc_address_list to, cc, bcc, reply_to;
    char *subject;
    bool date_set;
    int64_t date;
    char *msgid;
    char *in_reply_to, *references;
    int priority;
    smtpc__hfield *hdrs;
    size_t nhdrs;
    smtpc__part *text, *html;
    smtpc__part **alts;
    size_t nalts;
    smtpc__part **atts; /* attachments and inline parts, in order */
    size_t natts;
    /* fixed at the first write */
    bool frozen;
    char boundary[40];
    char date_str[48];
    /* envelope cache */
    char **rcpts;
    size_t nrcpts;
    bool rcpts_valid;
    /* loaded (raw) message: filled by load.c, laid out by writer.c */
    bool loaded;
    smtpc__buf raw_headers; /* headers minus Bcc, CRLF, incl. blank line */
    smtpc__part *raw_body;  /* SRC_CB / SRC_MEM rest of the input */
    smtpc_address *env_from_loaded;
};

int smtpc__message_freeze(smtpc_message *m);
void smtpc__part_free(smtpc__part *p);

#endif
