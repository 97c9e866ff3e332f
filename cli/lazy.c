/* The CLI loads libssl, libcrypto and libidn2 only when it first needs them.
 *
 * One process per message (cron, PHP's mail(), sendmail -t) pays the dynamic
 * loader's start-up on every message, and for these three libraries (with
 * libunistring, which libidn2 pulls in) that is most of the process's life:
 * ~1.5 ms of relocation and symbol binding (Debian links them BIND_NOW)
 * against ~1 ms for the whole plain SMTP dialogue. A plain send to an ASCII
 * domain calls none of them, so the CLI is linked without them and defines
 * each function the library calls (cli/lazy_syms.h, generated with
 * scripts/gen_cli_lazy.py) as a forwarder that opens the library on first use
 * (dlopen by soname, so Debian's security updates apply as with a normal
 * link) and calls the real function. The library and the bench/test
 * programs still link these libraries normally; only this executable is
 * different (CMake option SMTPC_CLI_LAZY_LIBS).
 *
 * If a library cannot be loaded (a broken installation), the CLI says which
 * one and why, and exits with 72 (EX_OSFILE) before the operation that needed
 * it has sent anything that depends on it. */
#ifdef SMTPC_CLI_LAZY
#include <dlfcn.h>
#include <idn2.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

enum { L_SSL, L_CRYPTO, L_IDN2, L_COUNT };

static const struct {
    const char *soname, *for_what;
} libs[L_COUNT] = {
    {SMTPC_SONAME_SSL, "TLS"},
    {SMTPC_SONAME_CRYPTO, "TLS and SASL authentication"},
    {SMTPC_SONAME_IDN2, "internationalised domain names"},
};

/* One pointer per function, typed from the header's own declaration. */
#define LAZY_FN(lib, ret, name, params, args) static __typeof__(&name) p_##name;
#define LAZY_VFN(lib, name, params, args) static __typeof__(&name) p_##name;
#include "lazy_syms.h"
#undef LAZY_FN
#undef LAZY_VFN

static _Noreturn void cannot_load(int lib, const char *what)
{
    fprintf(stderr, "smtpc: cannot load %s (needed for %s): %s\n", libs[lib].soname, libs[lib].for_what,
            what ? what : "unknown error");
    exit(72); /* EX_OSFILE: a system file is missing or unusable */
}

static void *symbol(void *h, int lib, const char *name)
{
    void *p = dlsym(h, name);
    if (!p) cannot_load(lib, dlerror());
    return p;
}

static void load(int lib)
{
    void *h = dlopen(libs[lib].soname, RTLD_NOW | RTLD_LOCAL);
    if (!h) cannot_load(lib, dlerror());
    /* POSIX: a function pointer may be stored through a void * (dlsym's own idiom). */
#define LAZY_FN(l, ret, name, params, args) \
    if (L_##l == lib) *(void **)&p_##name = symbol(h, lib, #name);
#define LAZY_VFN(l, name, params, args) LAZY_FN(l, void, name, params, args)
#include "lazy_syms.h"
#undef LAZY_FN
#undef LAZY_VFN
}

static void load_ssl(void)
{
    load(L_SSL);
}
static void load_crypto(void)
{
    load(L_CRYPTO);
}
static void load_idn2(void)
{
    load(L_IDN2);
}

static pthread_once_t once[L_COUNT] = {PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT};
static void (*const loader[L_COUNT])(void) = {load_ssl, load_crypto, load_idn2};

/* The forwarders: same names and prototypes as the libraries' own. */
#define LAZY_FN(l, ret, name, params, args) \
    ret name params                         \
    {                                       \
        pthread_once(&once[L_##l], loader[L_##l]); \
        return p_##name args;               \
    }
#define LAZY_VFN(l, name, params, args)     \
    void name params                        \
    {                                       \
        pthread_once(&once[L_##l], loader[L_##l]); \
        p_##name args;                      \
    }
#include "lazy_syms.h"
#undef LAZY_FN
#undef LAZY_VFN

#else
typedef int smtpc_cli_lazy_unused; /* linked normally: nothing to do here */
#endif
