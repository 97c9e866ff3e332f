/* smtpc — error codes.
 *
 * Every fallible function returns 0 (SMTPC_OK) or one of the negative codes
 * below. The codes are grouped into classes a caller acts on differently
 * (smtpc_error_classify, giving an smtpc_error_class): retry later, do not retry, fix the configuration ...
 * The human detail (what failed, where, the server's words) is on the handle
 * that failed, e.g. smtpc_session_errmsg(). */
#ifndef SMTPC_ERRORS_H
#define SMTPC_ERRORS_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum smtpc_error {
    SMTPC_OK = 0,
    SMTPC_ENOMEM = -1,       /* out of memory */
    SMTPC_EINVAL = -2,       /* invalid argument (e.g. CR/LF/NUL in an address); nothing was sent */
    SMTPC_ENETWORK = -3,     /* connect, read or write failed */
    SMTPC_ETIMEDOUT = -4,    /* a connect, greeting, command or overall timeout expired */
    SMTPC_ECANCELED = -5,    /* canceled by smtpc_*_cancel() */
    SMTPC_ETLS = -6,         /* TLS handshake or certificate verification failed */
    SMTPC_EPROTO = -7,       /* the server violated the protocol (malformed or oversized reply...) */
    SMTPC_EAUTH = -8,        /* authentication failed or no usable mechanism */
    SMTPC_ETEMPFAIL = -9,    /* the server answered 4xx: try again later */
    SMTPC_EPERMFAIL = -10,   /* the server answered 5xx: do not retry as is */
    SMTPC_EUNSUPPORTED = -11,/* the server does not support what was asked (STARTTLS, SMTPUTF8 ...) */
    SMTPC_ENOHOST = -12,     /* the host name could not be resolved */
    SMTPC_EIO = -13,         /* local file I/O failed */
    SMTPC_ECLOSED = -14,     /* the server closed the connection */
    SMTPC_EAGAIN = -15,      /* would block (non-blocking interfaces only) */
    SMTPC_EBUSY = -16,       /* an operation is already in progress on this handle */
    SMTPC_ESTATE = -17,      /* call not valid in the current state (e.g. DATA before RCPT) */
    SMTPC_EUNKNOWN = -18,    /* outcome unknown: connection lost after the final dot; the
                                message may have been delivered */
    SMTPC_ECONFIG = -19,     /* configuration error (config file, option values) */
    SMTPC_ELIMIT = -20,      /* a size limit was exceeded (line too long, message too big) */
    SMTPC_ENOTFOUND = -21,   /* a named thing does not exist (file, account) */
    SMTPC_EPROXY = -22,      /* the proxy refused or failed */
    SMTPC_ELIBRARY = -23     /* a system library (OpenSSL, libidn2) could not be loaded */
} smtpc_error;

/* What a caller does about an error. */
typedef enum smtpc_error_class {
    SMTPC_CLASS_OK = 0,
    SMTPC_CLASS_TRANSIENT,   /* 4xx, network, timeout, closed: retrying later may succeed */
    SMTPC_CLASS_PERMANENT,   /* 5xx: retrying the same message will fail again */
    SMTPC_CLASS_CANCELED,
    SMTPC_CLASS_CONFIG,      /* invalid argument, TLS, auth, unsupported, config: fix something first */
    SMTPC_CLASS_PROTOCOL,    /* the server misbehaved */
    SMTPC_CLASS_UNKNOWN      /* may or may not have been delivered */
} smtpc_error_class;

/* A short English description of code, e.g. "operation timed out". Never NULL. */
SMTPC_API const char *smtpc_strerror(int code);
/* The symbolic name of code, e.g. "SMTPC_ETIMEDOUT". Never NULL. */
SMTPC_API const char *smtpc_err_name(int code);
/* The class of code (see smtpc_error_class). */
SMTPC_API smtpc_error_class smtpc_error_classify(int code);

#ifdef __cplusplus
}
#endif
#endif
