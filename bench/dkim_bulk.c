/* bench_dkim_bulk: smtpc_bulk with DKIM signing on its thread pool.
 *
 *   bench_dkim_bulk --file MSG [--n N] [--conns K] [--threads T] [--domain D]
 *                   [--key SEL=PEMFILE ...] HOST PORT
 *
 * N copies of the message in MSG (read into memory; each signed
 * separately) over K
 * connections; without --key, unsigned (the baseline). Prints
 * "sent N wall_s W cpu_s C msg_s R" (C: user+sys of the whole process,
 * the signing threads included). */
#include <smtpc/smtpc.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static unsigned long n_total = 2000, n_next, n_sent, n_bad;
static const char *rcpts[] = {"b@example.org"};
static smtpc_bulk_msg tmpl = {.from = "a@example.org", .rcpts = rcpts, .nrcpts = 1};

/* every message the same bytes: the pool signs each one anew */
static int next_msg(void *ud, smtpc_bulk_msg *m)
{
    (void)ud;
    *m = tmpl;
    return n_next++ < n_total;
}

static void on_result(void *ud, const smtpc_bulk_msg *m, const smtpc_bulk_result *r)
{
    (void)ud;
    (void)m;
    if (r->status == SMTPC_BULK_SENT) n_sent++;
    else if (n_bad++ < 5) fprintf(stderr, "not sent: %s\n", r->errmsg);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
    unsigned conns = 1, threads = 0;
    const char *host = NULL, *port = NULL, *domain = "example.org", *file = NULL;
    smtpc_dkim_signer *sg = NULL;
    if (smtpc_dkim_signer_new(&sg)) return 70;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--n") && v) n_total = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(a, "--conns") && v) conns = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(a, "--threads") && v) threads = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(a, "--domain") && v) domain = argv[++i];
        else if (!strcmp(a, "--file") && v) file = argv[++i];
        else if (!strcmp(a, "--key") && v && strchr(v, '=')) {
            char sel[128];
            size_t sl = (size_t)(strchr(v, '=') - v);
            snprintf(sel, sizeof sel, "%.*s", (int)sl, v);
            if (smtpc_dkim_signer_add_key_file(sg, sel, v + sl + 1)) {
                fprintf(stderr, "%s\n", smtpc_dkim_signer_errmsg(sg));
                return 78;
            }
            i++;
        } else if (!host) host = a;
        else if (!port) port = a;
    }
    if (!host || !port || !file || smtpc_dkim_signer_set_domain(sg, domain)) {
        fprintf(stderr, "usage: bench_dkim_bulk --file MSG [--n N] [--conns K] [--threads T] [--key SEL=PEM ...] HOST PORT\n");
        return 64;
    }
    FILE *f = fopen(file, "rb");
    static char msg[1 << 20];
    tmpl.len = f ? fread(msg, 1, sizeof msg, f) : 0;
    if (f) fclose(f);
    if (!tmpl.len) {
        perror(file);
        return 66;
    }
    tmpl.data = msg;
    smtpc_bulk *b;
    if (smtpc_bulk_new(&b, host, (uint16_t)strtoul(port, NULL, 10))) return 70;
    smtpc_bulk_set_tls(b, SMTPC_TLS_MODE_NONE, NULL, NULL, false);
    smtpc_bulk_set_connections(b, conns);
    smtpc_bulk_set_source(b, next_msg, NULL);
    smtpc_bulk_set_result_cb(b, on_result, NULL);
    if (smtpc_dkim_signer_key_count(sg) && smtpc_bulk_set_dkim(b, sg, threads)) {
        fprintf(stderr, "%s\n", smtpc_bulk_errmsg(b));
        return 70;
    }
    double t0 = now_s(), c0 = cpu_s();
    int rc = smtpc_bulk_run(b);
    double wall = now_s() - t0, cpu = cpu_s() - c0;
    smtpc_bulk_free(b);
    smtpc_dkim_signer_free(sg);
    printf("sent %lu wall_s %.3f cpu_s %.3f msg_s %.0f\n", n_sent, wall, cpu, (double)n_sent / wall);
    return rc || n_sent != n_total ? 1 : 0;
}
