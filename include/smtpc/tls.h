/* smtpc — TLS options and connection information (public types).
 *
 * TLS is done with OpenSSL 3; this header does not include OpenSSL. */
#ifndef SMTPC_TLS_H
#define SMTPC_TLS_H

#include "common.h"

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A TLS protocol version: major*10 + minor of "TLS 1.x" plus 10. */
typedef enum smtpc_tls_version {
    SMTPC_TLS_VERSION_DEFAULT = 0, /* min: TLS 1.2; max: the newest available */
    SMTPC_TLS_1_0 = 10,            /* below the library's floor: see smtpc_tls_version_policy */
    SMTPC_TLS_1_1 = 11,
    SMTPC_TLS_1_2 = 12,
    SMTPC_TLS_1_3 = 13
} smtpc_tls_version;

/* What to do when a requested minimum or maximum version cannot be done by
 * this build (TLS 1.0/1.1 are never done; TLS 1.3 needs OpenSSL with it).
 * NEAREST only narrows: a minimum is raised to TLS 1.2, a maximum lowered
 * to the newest the build does; a minimum above that (TLS 1.3 without
 * OpenSSL support) is never lowered and fails with SMTPC_EUNSUPPORTED. */
typedef enum smtpc_tls_version_policy {
    SMTPC_TLS_VERSION_NEAREST = 0, /* use the nearest version that narrows the range */
    SMTPC_TLS_VERSION_STRICT = 1   /* fail with SMTPC_EUNSUPPORTED */
} smtpc_tls_version_policy;

/* What was negotiated and what the peer presented; filled after the
 * handshake. Plain data: copy it freely. Strings are NUL-terminated,
 * truncated if longer. */
typedef struct smtpc_tls_info {
    char version[16];         /* "TLSv1.3" */
    char cipher[64];          /* "TLS_AES_256_GCM_SHA384" */
    char subject[256];        /* peer certificate subject, RFC 2253 ("CN=mx.example.org") */
    char issuer[256];         /* its issuer, RFC 2253 */
    char not_before[32];      /* "2026-11-23T18:00:00Z" */
    char not_after[32];
    char pin_sha256[64];      /* "sha256//<base64>" of the peer's SubjectPublicKeyInfo */
    bool verified;            /* chain, validity and name checked and good */
    long verify_code;         /* 0 = ok, else OpenSSL's X509_V_ERR_* code */
    char verify_message[128]; /* "ok" or the reason ("certificate has expired") */
    bool pin_checked;         /* pins were configured and one matched */
    bool resumed;             /* an earlier TLS session was resumed */
} smtpc_tls_info;

/* "TLS 1.2" ...; "default" for 0; "unknown" otherwise. Never NULL. */
SMTPC_API const char *smtpc_tls_version_name(int version);

#ifdef __cplusplus
}
#endif
#endif
