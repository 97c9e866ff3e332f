/* smtpc — server replies and capabilities (public accessors). */
#ifndef SMTPC_REPLY_H
#define SMTPC_REPLY_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A server reply. Owned by the handle that returned it; valid until the next
 * command on that handle. */
typedef struct smtpc_reply smtpc_reply;

SMTPC_API int smtpc_reply_code(const smtpc_reply *r);              /* 250; 0 if r is NULL */
SMTPC_API const char *smtpc_reply_enhanced(const smtpc_reply *r);  /* "2.1.0" or "" */
SMTPC_API const char *smtpc_reply_text(const smtpc_reply *r);      /* lines joined by '\n' */
SMTPC_API size_t smtpc_reply_line_count(const smtpc_reply *r);
SMTPC_API const char *smtpc_reply_line(const smtpc_reply *r, size_t i); /* NULL past the end */

/* SMTP service extensions (EHLO keywords) smtpc understands. */
enum {
    SMTPC_EXT_PIPELINING = 1u << 0,
    SMTPC_EXT_SIZE = 1u << 1,
    SMTPC_EXT_8BITMIME = 1u << 2,
    SMTPC_EXT_SMTPUTF8 = 1u << 3,
    SMTPC_EXT_CHUNKING = 1u << 4,
    SMTPC_EXT_BINARYMIME = 1u << 5,
    SMTPC_EXT_DSN = 1u << 6,
    SMTPC_EXT_ENHANCEDSTATUSCODES = 1u << 7,
    SMTPC_EXT_STARTTLS = 1u << 8,
    SMTPC_EXT_AUTH = 1u << 9,
    SMTPC_EXT_REQUIRETLS = 1u << 10
};

#ifdef __cplusplus
}
#endif
#endif
