/* Throughput of the base64 and quoted-printable encoders and of the whole
 * writer on a large attachment. Build and run with bench/mime/run.sh. */
#include "mime/mime.h"

#include <smtpc/message.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct src {
    uint64_t left;
} src;

static ssize_t gen(void *ud, void *buf, size_t len)
{
    src *s = ud;
    size_t n = len < s->left ? len : (size_t)s->left;
    memset(buf, 0xa5, n);
    s->left -= n;
    return (ssize_t)n;
}

int main(void)
{
    size_t n = 64u << 20;
    uint8_t *in = malloc(n);
    char *out = malloc(smtpc__b64_lines_len(n) + 16);
    uint64_t st = 88172645463325252ULL;
    for (size_t i = 0; i < n; i++) {
        st ^= st << 13; st ^= st >> 7; st ^= st << 17;
        in[i] = (uint8_t)st;
    }
    double best = 1e9;
    for (int r = 0; r < 5; r++) {
        double t0 = now();
        smtpc__b64_encode(out, in, n);
        double t = now() - t0;
        if (t < best) best = t;
    }
    printf("base64 (plain):       %8.0f MB/s of input\n", (double)n / best / 1e6);
    best = 1e9;
    for (int r = 0; r < 5; r++) {
        double t0 = now();
        smtpc__b64_encode_lines(out, in, n);
        double t = now() - t0;
        if (t < best) best = t;
    }
    printf("base64 (MIME lines):  %8.0f MB/s of input\n", (double)n / best / 1e6);

    /* QP: mostly-ASCII text (1 in 16 bytes non-ASCII) and random bytes */
    size_t qn = 32u << 20;
    uint8_t *txt = malloc(qn);
    for (size_t i = 0; i < qn; i++) {
        st ^= st << 13; st ^= st >> 7; st ^= st << 17;
        txt[i] = (i % 70 == 68) ? '\r' : (i % 70 == 69) ? '\n' : (st % 16 == 0) ? (uint8_t)(0xc0 | (st >> 8 & 31)) : (uint8_t)(' ' + (st >> 8) % 94);
    }
    smtpc__buf qb;
    smtpc__buf_init(&qb, 0);
    best = 1e9;
    for (int r = 0; r < 3; r++) {
        smtpc__buf_reset(&qb);
        double t0 = now();
        smtpc__qp_encode(&qb, txt, qn);
        double t = now() - t0;
        if (t < best) best = t;
    }
    printf("quoted-printable:     %8.0f MB/s of input (mostly-ASCII text)\n", (double)qn / best / 1e6);
    best = 1e9;
    for (int r = 0; r < 3; r++) {
        smtpc__buf_reset(&qb);
        double t0 = now();
        smtpc__qp_encode(&qb, in, qn);
        double t = now() - t0;
        if (t < best) best = t;
    }
    printf("quoted-printable:     %8.0f MB/s of input (random bytes)\n", (double)qn / best / 1e6);
    smtpc__buf_free(&qb);

    /* the whole writer: a 512 MiB attachment from a callback, 64 KiB reads */
    smtpc_message *m;
    smtpc_message_new(&m);
    smtpc_message_set_from(m, "a@example.org");
    smtpc_message_add_to(m, "b@example.org");
    smtpc_message_set_text(m, "x", (size_t)-1);
    uint64_t big = 512u << 20;
    src s = {big};
    smtpc_message_add_attachment_cb(m, gen, &s, (int64_t)big, NULL);
    smtpc_message_writer *w;
    smtpc_message_writer_new(&w, m, SMTPC_WRITE_NO_SPOOL);
    static char buf[65536];
    double t0 = now();
    ssize_t k;
    uint64_t tot = 0;
    while ((k = smtpc_message_writer_read(w, buf, sizeof buf)) > 0) tot += (uint64_t)k;
    double t = now() - t0;
    printf("writer (callback → base64 → reads): %6.0f MB/s of attachment (%llu bytes out)\n",
           (double)big / t / 1e6, (unsigned long long)tot);
    smtpc_message_writer_free(w);
    smtpc_message_free(m);
    free(in);
    free(out);
    free(txt);
    return 0;
}
