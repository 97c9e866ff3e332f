/* Allocation-failure injection (tests only; docs/HACKING.md).
 *
 * A build with -DSMTPC_ALLOC_FAIL=ON force-includes this header into every
 * library source (-include), so that each malloc/calloc/realloc/strdup/
 * strndup call in src/ goes through a counting wrapper that can be told to
 * fail. Normal builds never see it: no call site names the wrappers.
 * Allocations inside OpenSSL, libidn2 and libc (getaddrinfo, fopen ...) are
 * not counted. */
#ifndef SMTPC_ALLOC_FAIL_H
#define SMTPC_ALLOC_FAIL_H

/* No system header here: this comes before a source's own feature macros
 * (_GNU_SOURCE). The libc declarations of malloc & co., read later through
 * the macros below, redeclare the wrappers with the same types. */
void *smtpc__af_malloc(__SIZE_TYPE__ n);
void *smtpc__af_calloc(__SIZE_TYPE__ n, __SIZE_TYPE__ m);
void *smtpc__af_realloc(void *p, __SIZE_TYPE__ n);
char *smtpc__af_strdup(const char *s);
char *smtpc__af_strndup(const char *s, __SIZE_TYPE__ n);

/* Test control. smtpc__alloc_fail_at(n, persistent): the n-th counted
 * allocation from now fails (n >= 1); with persistent, every one after it
 * fails too. n = 0 turns injection off. The count restarts at 0. */
void smtpc__alloc_fail_at(long n, int persistent);
void smtpc__alloc_fail_off(void); /* stops injecting; the counts go on */
long smtpc__alloc_count(void);   /* counted allocations since the last _fail_at */
long smtpc__alloc_failed(void);  /* injected failures since the last _fail_at */
/* Called at each injected failure (e.g. to print a stack trace), or NULL. */
extern void (*smtpc__alloc_fail_hook)(long n);

/* Library sources only (tests include this for the control functions). */
#ifdef SMTPC_BUILDING
#define malloc(n) smtpc__af_malloc(n)
#define calloc(n, m) smtpc__af_calloc(n, m)
#define realloc(p, n) smtpc__af_realloc(p, n)
#define strdup(s) smtpc__af_strdup(s)
#define strndup(s, n) smtpc__af_strndup(s, n)
#endif

#endif
