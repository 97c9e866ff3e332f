/* bench_dkim [--seconds S] [--threads T] [--openssl]: what DKIM costs.
 *
 *   - the body hash of a 10 KB body (relaxed and simple; SHA-256 alone for
 *     reference): CPU µs per body;
 *   - whole signatures of a 10 KB message (begin, update, final) with
 *     RSA-2048, Ed25519, and both keys at once: signatures per CPU second
 *     (comparable with `openssl speed`, which counts CPU time), and
 *     messages/s of wall time on T threads sharing one signer (default: the
 *     CPUs);
 *   - with --openssl, `openssl speed -seconds 3 rsa2048 ed25519` in the same
 *     run, the physical limit of this machine.
 * Keys are generated at start. Prints one "name value unit" line each. */
#include "dkim/dkim_int.h"

#include <openssl/pem.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
static double now_s(void) { return clock_s(CLOCK_MONOTONIC); }
/* CPU time of the calling thread: what `openssl speed` counts too (user
 * time), so a loaded machine skews both alike. */
static double cpu_s(void) { return clock_s(CLOCK_THREAD_CPUTIME_ID); }

static char msg[10240 + 512];
static size_t msg_len, body_off;

static void make_message(void)
{
    size_t n = (size_t)snprintf(msg, sizeof msg,
                                "From: Sender <sender@example.org>\r\nTo: rcpt@example.com\r\n"
                                "Subject: a 10 KB message\r\nDate: Mon, 07 Dec 2026 03:00:00 +0000\r\n"
                                "Message-ID: <bench@example.org>\r\nMIME-Version: 1.0\r\n"
                                "Content-Type: text/plain; charset=utf-8\r\n\r\n");
    body_off = n;
    /* prose: words separated by one space, lines of at most 72 octets */
    static const char *const words[] = {"lorem", "ipsum", "dolor", "sit", "amet,", "consectetur",
                                        "adipiscing", "elit,", "sed", "do", "eiusmod", "tempor",
                                        "incididunt", "ut", "labore", "et", "dolore", "magna",
                                        "aliqua."};
    size_t col = 0, w = 0, end = body_off + 10240;
    for (;;) {
        const char *word = words[w++ % (sizeof words / sizeof words[0])];
        size_t wl = strlen(word);
        if (col + 1 + wl > 72) {
            if (n + 2 > end) break;
            msg[n++] = '\r';
            msg[n++] = '\n';
            col = 0;
        }
        if (n + wl + 1 + 2 > end) break;
        if (col) {
            msg[n++] = ' ';
            col++;
        }
        memcpy(msg + n, word, wl);
        n += wl;
        col += wl;
    }
    while (n < end - 2) msg[n++] = 'x';
    msg[n++] = '\r';
    msg[n++] = '\n';
    msg_len = n;
}

static int add_generated(smtpc_dkim_signer *sg, const char *sel, EVP_PKEY *pk)
{
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL);
    char *p;
    long n = BIO_get_mem_data(b, &p);
    int rc = smtpc_dkim_signer_add_key_pem(sg, sel, p, (size_t)n);
    BIO_free(b);
    return rc;
}

static double seconds = 3;

static double bench_body(int canon)
{
    smtpc__dkim_body b;
    uint8_t h[32];
    long iters = 0;
    double t0 = cpu_s(), t;
    do {
        for (int i = 0; i < 1000; i++) {
            smtpc__dkim_body_init(&b, canon, UINT64_MAX, true);
            smtpc__dkim_body_update(&b, (const uint8_t *)msg + body_off, msg_len - body_off);
            smtpc__dkim_body_final(&b, h);
            smtpc__dkim_body_free(&b);
        }
        iters += 1000;
    } while ((t = cpu_s() - t0) < seconds / 3);
    return t / (double)iters * 1e6;
}

static double bench_sha(void)
{
    uint8_t h[32];
    unsigned int l;
    long iters = 0;
    double t0 = cpu_s(), t;
    do {
        for (int i = 0; i < 1000; i++)
            EVP_Digest(msg + body_off, msg_len - body_off, h, &l, EVP_sha256(), NULL);
        iters += 1000;
    } while ((t = cpu_s() - t0) < seconds / 3);
    return t / (double)iters * 1e6;
}

typedef struct job {
    const smtpc_dkim_signer *sg;
    long count;
    double until, cpu;
    int err;
} job;

static void *sign_loop(void *arg)
{
    job *j = arg;
    double c0 = cpu_s();
    while (now_s() < j->until) {
        smtpc_dkim_sign *c;
        const char *f;
        size_t fl;
        if (smtpc_dkim_sign_begin(j->sg, &c) || smtpc_dkim_sign_update(c, msg, msg_len) ||
            smtpc_dkim_sign_final(c, &f, &fl))
            j->err = 1;
        smtpc_dkim_sign_free(c);
        j->count++;
    }
    j->cpu = cpu_s() - c0;
    return NULL;
}

/* Returns messages/s of wall time; *per_cpu: messages per CPU second. */
static double bench_sign(const smtpc_dkim_signer *sg, int threads, double *per_cpu)
{
    pthread_t th[64];
    job jobs[64];
    double t0 = now_s();
    for (int i = 0; i < threads; i++) {
        jobs[i] = (job){.sg = sg, .until = t0 + seconds};
        pthread_create(&th[i], NULL, sign_loop, &jobs[i]);
    }
    long total = 0;
    double cpu = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        total += jobs[i].count;
        cpu += jobs[i].cpu;
        if (jobs[i].err) fprintf(stderr, "bench_dkim: a signature failed\n");
    }
    *per_cpu = (double)total / cpu;
    return (double)total / (now_s() - t0);
}

int main(int argc, char **argv)
{
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), openssl = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = strtod(argv[++i], NULL);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = (int)strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--openssl")) openssl = 1;
        else {
            fprintf(stderr, "usage: bench_dkim [--seconds S] [--threads T] [--openssl]\n");
            return 64;
        }
    }
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    make_message();
    printf("body_hash_10k_relaxed %.2f us\n", bench_body(SMTPC_DKIM_RELAXED));
    printf("body_hash_10k_simple %.2f us\n", bench_body(SMTPC_DKIM_SIMPLE));
    printf("sha256_10k_alone %.2f us\n", bench_sha());

    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    smtpc_dkim_signer *sr, *se, *sb;
    smtpc_dkim_signer_new(&sr);
    smtpc_dkim_signer_new(&se);
    smtpc_dkim_signer_new(&sb);
    smtpc_dkim_signer *all[] = {sr, se, sb};
    for (int i = 0; i < 3; i++) smtpc_dkim_signer_set_domain(all[i], "example.org");
    if (add_generated(sr, "rsa", rsa) || add_generated(se, "ed", ed) || add_generated(sb, "rsa", rsa) ||
        add_generated(sb, "ed", ed)) {
        fprintf(stderr, "bench_dkim: cannot add the keys\n");
        return 1;
    }
    const char *names[] = {"rsa2048", "ed25519", "rsa2048+ed25519"};
    for (int i = 0; i < 3; i++) {
        double pc, w = bench_sign(all[i], 1, &pc);
        printf("sign_10k_%s_1thread %.0f msg/cpu-s %.0f msg/s\n", names[i], pc, w);
    }
    if (threads > 1)
        for (int i = 0; i < 3; i++) {
            double pc, w = bench_sign(all[i], threads, &pc);
            printf("sign_10k_%s_%dthreads %.0f msg/cpu-s %.0f msg/s\n", names[i], threads, pc, w);
        }
    for (int i = 0; i < 3; i++) smtpc_dkim_signer_free(all[i]);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ed);
    fflush(stdout);
    if (openssl) {
        FILE *p = popen("openssl speed -seconds 3 rsa2048 ed25519 2>/dev/null", "r");
        char line[512];
        while (p && fgets(line, sizeof line, p))
            if (!strncmp(line, "rsa 2048", 8) || strstr(line, "Ed25519") || strstr(line, "sign/s"))
                printf("openssl: %s", line);
        if (p) pclose(p);
    }
    return 0;
}
