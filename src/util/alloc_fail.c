/* Allocation-failure injection: see alloc_fail.h. Compiled to nothing
 * unless the build defines SMTPC_ALLOC_FAIL. */
#ifdef SMTPC_ALLOC_FAIL
/* The forced include defined the macros: the real functions here. */
#undef malloc
#undef calloc
#undef realloc
#undef strdup
#undef strndup

#include "util/alloc_fail.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static atomic_long af_count;
static atomic_long af_failed;
static atomic_long af_at;         /* 0: never fail */
static atomic_int af_persistent;
void (*smtpc__alloc_fail_hook)(long n);

void smtpc__alloc_fail_at(long n, int persistent)
{
    atomic_store(&af_at, 0);
    atomic_store(&af_count, 0);
    atomic_store(&af_failed, 0);
    atomic_store(&af_persistent, persistent != 0);
    atomic_store(&af_at, n > 0 ? n : 0);
}

void smtpc__alloc_fail_off(void) { atomic_store(&af_at, 0); }

long smtpc__alloc_count(void) { return atomic_load(&af_count); }
long smtpc__alloc_failed(void) { return atomic_load(&af_failed); }

/* Counts one allocation; true when this one is to fail. */
static int af_fail_now(void)
{
    long k = atomic_fetch_add(&af_count, 1) + 1;
    long at = atomic_load(&af_at);
    if (at == 0 || k < at || (k > at && !atomic_load(&af_persistent)))
        return 0;
    atomic_fetch_add(&af_failed, 1);
    if (smtpc__alloc_fail_hook) smtpc__alloc_fail_hook(k);
    errno = ENOMEM;
    return 1;
}

void *smtpc__af_malloc(size_t n) { return af_fail_now() ? NULL : malloc(n); }
void *smtpc__af_calloc(size_t n, size_t m) { return af_fail_now() ? NULL : calloc(n, m); }
void *smtpc__af_realloc(void *p, size_t n) { return af_fail_now() ? NULL : realloc(p, n); }
char *smtpc__af_strdup(const char *s) { return af_fail_now() ? NULL : strdup(s); }
char *smtpc__af_strndup(const char *s, size_t n) { return af_fail_now() ? NULL : strndup(s, n); }
#else
typedef int smtpc__alloc_fail_unused; /* ISO C: no empty translation unit */
#endif
