/* Bounded memory: a 256 MiB attachment produced by a callback goes through
 * the writer while peak RSS (getrusage) stays under 16 MiB. Under ASan the
 * size is scaled down and RSS is not checked (shadow memory). The 1 GiB
 * measurement is bench/mime/rss_1g.sh. */
#include "t.h"

#include <smtpc/message.h>
#include <stdint.h>
#include <sys/resource.h>

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

typedef struct src {
    uint64_t left;
    uint8_t v;
} src;

static ssize_t gen(void *ud, void *buf, size_t len)
{
    src *s = ud;
    size_t n = len < s->left ? len : (size_t)s->left;
    uint8_t *p = buf;
    for (size_t i = 0; i < n; i++) p[i] = s->v++;
    s->left -= n;
    return (ssize_t)n;
}

static long peak_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void run(unsigned flags, uint64_t size, int known)
{
    smtpc_message *m = NULL;
    CHECK_INT(smtpc_message_new(&m), 0);
    smtpc_message_set_from(m, "a@example.org");
    smtpc_message_add_to(m, "b@example.org");
    smtpc_message_set_text(m, "see attachment", (size_t)-1);
    src s = {size, 0};
    smtpc_attachment_opts o = {"big.bin", NULL, false, NULL};
    CHECK_INT(smtpc_message_add_attachment_cb(m, gen, &s, known ? (int64_t)size : -1, &o), 0);
    smtpc_message_writer *w = NULL;
    CHECK_INT(smtpc_message_writer_new(&w, m, flags), 0);
    int64_t announced = smtpc_message_writer_size(w);
    if (!known) CHECK_INT(announced, -1);
    static char buf[65536];
    uint64_t total = 0;
    ssize_t k;
    while ((k = smtpc_message_writer_read(w, buf, sizeof buf)) > 0) total += (uint64_t)k;
    CHECK_INT(k, 0);
    if (known) CHECK_INT(announced, (int64_t)total);
    CHECK(total > size * 4 / 3);
    smtpc_message_writer_free(w);
    smtpc_message_free(m);
}

TEST(bounded_rss)
{
    uint64_t size = SANITIZED ? (16u << 20) : (256u << 20);
    long before = peak_kib();
    run(SMTPC_WRITE_NO_SPOOL, size, 1);
    run(SMTPC_WRITE_NO_SPOOL, size / 4, 0);
    long after = peak_kib();
    printf("peak RSS %ld KiB (before %ld KiB) for a %llu MiB attachment\n", after, before,
           (unsigned long long)(size >> 20));
    if (!SANITIZED) CHECK(after < 16 * 1024);
}

TEST(spooled_rss)
{
    /* the spooling path (default flags) is bounded too */
    uint64_t size = SANITIZED ? (8u << 20) : (64u << 20);
    run(0, size, 1);
    if (!SANITIZED) CHECK(peak_kib() < 16 * 1024);
}

int main(void)
{
    RUN(bounded_rss);
    RUN(spooled_rss);
    T_DONE();
}
