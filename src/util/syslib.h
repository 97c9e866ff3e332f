/* The system libraries the library calls into (OpenSSL, libidn2). In a
 * normal link they are always there. libsmtpc.so may be built to open them
 * on first use (src/lazy/lazy.c, CMake option SMTPC_LAZY_LIBS), so that a
 * process that never needs TLS, SASL hashing or IDN never pays for loading
 * them: each entry point that is about to call one asks for it first, and a
 * library that cannot be loaded is an error there (SMTPC_ELIBRARY, err says
 * which and why) instead of a crash later. */
#ifndef SMTPC_UTIL_SYSLIB_H
#define SMTPC_UTIL_SYSLIB_H

#include "util/util.h"

typedef enum smtpc__syslib { SMTPC__LIB_SSL = 0, SMTPC__LIB_CRYPTO = 1, SMTPC__LIB_IDN2 = 2 } smtpc__syslib;

/* 0 when lib can be called; else SMTPC_ELIBRARY with err filled (err may be NULL). */
int smtpc__syslib_need(smtpc__syslib lib, smtpc__errmsg *err);

#endif
