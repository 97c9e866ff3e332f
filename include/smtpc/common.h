/* smtpc — common definitions shared by every public header. */
#ifndef SMTPC_COMMON_H
#define SMTPC_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(SMTPC_BUILDING)
#define SMTPC_API __attribute__((visibility("default")))
#else
#define SMTPC_API
#endif

#define SMTPC_VERSION_MAJOR 0
#define SMTPC_VERSION_MINOR 1
#define SMTPC_VERSION_PATCH 0
#define SMTPC_VERSION_STRING "0.1.0"

#ifdef __cplusplus
extern "C" {
#endif

/* The library's version string, e.g. "0.1.0". */
SMTPC_API const char *smtpc_version(void);

/* An OAuth 2.0 token provider for XOAUTH2 / OAUTHBEARER
 * (smtpc_session_set_token_cb, smtpc_bulk_set_token_cb): refresh=false asks
 * for the current token, refresh=true for a new one after the server
 * refused the last. Return 0 and set *token and *len (borrowed until the
 * next call), or a negative SMTPC_E* to fail AUTH with it. */
typedef int (*smtpc_token_cb)(void *userdata, bool refresh, const char **token, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
