/* Minimal unit-test harness: each test_*.c defines tests with TEST(name),
 * lists them in main via RUN(name), and ends with T_DONE(), which prints
 * "N passed, N failed" and returns non-zero on any failure. Also shared by
 * the fuzz targets and the integration drivers (t_mem_read), which use
 * none of the counters. */
#ifndef SMTPC_T_H
#define SMTPC_T_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

__attribute__((unused)) static int t_pass, t_fail, t_cur_failed;
__attribute__((unused)) static const char *t_cur;

#define TEST(name) static void name(void)
#define RUN(name)                                                                          \
    do {                                                                                   \
        t_cur = #name;                                                                     \
        t_cur_failed = 0;                                                                  \
        name();                                                                            \
        if (t_cur_failed) t_fail++; else t_pass++;                                         \
    } while (0)
#define T_FAILF(...)                                                                       \
    do {                                                                                   \
        fprintf(stderr, "%s:%d: %s: ", __FILE__, __LINE__, t_cur);                         \
        fprintf(stderr, __VA_ARGS__);                                                      \
        fputc('\n', stderr);                                                               \
        t_cur_failed = 1;                                                                  \
    } while (0)
#define CHECK(c)                                                                           \
    do {                                                                                   \
        if (!(c)) T_FAILF("check failed: %s", #c);                                         \
    } while (0)
#define CHECK_INT(a, b)                                                                    \
    do {                                                                                   \
        long long t_a = (long long)(a), t_b = (long long)(b);                              \
        if (t_a != t_b) T_FAILF("%s == %lld, expected %s == %lld", #a, t_a, #b, t_b);      \
    } while (0)
#define CHECK_STR(a, b)                                                                    \
    do {                                                                                   \
        const char *t_a = (a), *t_b = (b);                                                 \
        if (!t_a || !t_b || strcmp(t_a, t_b) != 0)                                         \
            T_FAILF("%s == \"%s\", expected \"%s\"", #a, t_a ? t_a : "(null)",             \
                    t_b ? t_b : "(null)");                                                 \
    } while (0)
#define CHECK_MEM(a, alen, b, blen)                                                        \
    do {                                                                                   \
        size_t t_al = (alen), t_bl = (blen);                                               \
        if (t_al != t_bl || (t_al && memcmp((a), (b), t_al) != 0))                                 \
            T_FAILF("%s (%zu bytes) differs from %s (%zu bytes)", #a, t_al, #b, t_bl);     \
    } while (0)
#define T_DONE()                                                                           \
    do {                                                                                   \
        printf("%d passed, %d failed\n", t_pass, t_fail);                                  \
        return t_fail ? 1 : 0;                                                             \
    } while (0)

/* A read callback (smtpc_message_load_with, smtpc_message_add_attachment_cb)
 * over bytes in memory: t_memsrc s = {p, len, 0}; ...(t_mem_read, &s). */
typedef struct t_memsrc {
    const char *p;
    size_t len, off;
} t_memsrc;

static inline ssize_t t_mem_read(void *ud, void *buf, size_t len)
{
    t_memsrc *s = ud;
    size_t n = s->len - s->off < len ? s->len - s->off : len;
    memcpy(buf, s->p + s->off, n);
    s->off += n;
    return (ssize_t)n;
}

#endif
