/* SMTP replies: the incremental parser and EHLO capabilities. */
#ifndef SMTPC_ENGINE_REPLY_H
#define SMTPC_ENGINE_REPLY_H

#include <smtpc/reply.h>

#include "util/util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A complete reply. The public type smtpc_reply (include/smtpc/reply.h) is
 * this struct; callers use the accessors there. */
struct smtpc_reply {
    int code;              /* 200..599 */
    char enhanced[16];     /* "2.1.0", or "" when absent / not advertised */
    size_t nlines;
    char **lines;          /* text after "NNN-"/"NNN " (and after the enhanced code) */
    char *text;            /* lines joined with '\n' */
    bool packed;           /* one allocation (smtpc__reply_dup): lines and text inside it */
    unsigned refs;         /* packed: holders beyond the first (smtpc__reply_ref) */
    size_t alloc;          /* packed: size of the block */
};
typedef struct smtpc_reply smtpc__reply;

typedef struct smtpc__reply_limits {
    size_t max_line;   /* default 4096 */
    size_t max_bytes;  /* default 65536 */
    size_t max_lines;  /* default 1000 */
} smtpc__reply_limits;

typedef struct smtpc__reply_parser smtpc__reply_parser;
int smtpc__reply_parser_new(smtpc__reply_parser **out, const smtpc__reply_limits *lim);
void smtpc__reply_parser_free(smtpc__reply_parser *p);
/* Split "X.Y.Z " off each line (set once ENHANCEDSTATUSCODES is known). */
void smtpc__reply_parser_set_enhanced(smtpc__reply_parser *p, bool on);
/* Consumes input up to and including the end of one reply. Returns 1 with
 * *out (caller owns, smtpc__reply_free) when a reply is complete, 0 when all
 * input was consumed and more is needed, or SMTPC_EPROTO / SMTPC_ELIMIT with
 * err set. Lines end at LF; a CR before it is dropped. */
int smtpc__reply_parser_feed(smtpc__reply_parser *p, const uint8_t *data, size_t len,
                             size_t *consumed, smtpc__reply **out, smtpc__errmsg *err);
void smtpc__reply_free(smtpc__reply *r);
/* Added: like _feed, but *out is the parser's own reply, reused from one reply
 * to the next (no allocation per reply once its storage has grown): valid
 * until the next call on p; do not free it. Returns as _feed, and
 * SMTPC_EINVAL if _feed and _feed_view are mixed in the middle of a reply. */
int smtpc__reply_parser_feed_view(smtpc__reply_parser *p, const uint8_t *data, size_t len,
                                  size_t *consumed, const smtpc__reply **out,
                                  smtpc__errmsg *err);
/* Added: forget any partial reply and a sticky error (new connection). */
void smtpc__reply_parser_reset(smtpc__reply_parser *p);
/* Added: true while part of a reply has been received. */
bool smtpc__reply_parser_mid_reply(const smtpc__reply_parser *p);
/* Added: a deep copy in one allocation (NULL on NULL or out of memory). */
smtpc__reply *smtpc__reply_dup(const smtpc__reply *r);
/* Added: the same copy made in spare (a packed reply nobody else holds, or
 * NULL) when its block is big enough, else spare is freed and a new block
 * made. NULL on NULL r (spare freed) or out of memory. */
smtpc__reply *smtpc__reply_dup_reuse(const smtpc__reply *r, smtpc__reply *spare);
/* Added: one more holder of r (a copy from smtpc__reply_dup is shared, not
 * copied again; others are copied). smtpc__reply_free drops one holder.
 * Shared replies are never modified. NULL on out of memory. */
smtpc__reply *smtpc__reply_ref(smtpc__reply *r);

/* Names of mechanisms the library does not implement kept from AUTH. */
#define SMTPC__CAPS_MAX_OTHER_AUTH 32

/* EHLO capabilities. Keywords are matched case-insensitively, as whole tokens. */
typedef struct smtpc__caps {
    bool esmtp;           /* EHLO succeeded (else HELO) */
    unsigned flags;       /* SMTPC_EXT_* from smtpc/reply.h */
    uint64_t size_max;    /* SIZE n; 0 = none or unlimited */
    char **auth;          /* AUTH mechanisms (upper case), NULL-terminated; NULL if none:
                           * each one this library implements, and up to
                           * SMTPC__CAPS_MAX_OTHER_AUTH others (caps.c) */
    size_t nauth;
    char **lines;         /* every EHLO keyword line after the first, as received */
    size_t nlines;
} smtpc__caps;
/* Parses an EHLO 250 reply (lines[0] is the greeting domain). */
int smtpc__caps_parse(smtpc__caps *c, const smtpc__reply *r, smtpc__errmsg *err);
void smtpc__caps_clear(smtpc__caps *c);
/* Parameters of keyword kw ("SIZE" -> "35882577"), "" if none, NULL if absent. */
const char *smtpc__caps_param(const smtpc__caps *c, const char *kw);
/* Added: whether AUTH offered mechanism mech (case-insensitive). */
bool smtpc__caps_has_auth(const smtpc__caps *c, const char *mech);

#endif
