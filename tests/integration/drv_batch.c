/* Test driver for smtpc_client_send_batch.
 *   drv_batch HOST PORT COUNT [options]
 * options: --rcpt ADDR (repeatable; default rcpt@example.org)
 *          --retry N (attempts, 10 ms initial delay)
 *          --max-per-conn N (the pool's message limit per connection)
 *          --cancel-after-ms M (smtpc_client_cancel_async from a thread)
 * Each message has "Message-ID: <IDX.bulk@test>". Output: one line per result
 *   R IDX ERRNAME CODE ATTEMPTS REUSED RCPTS
 * (RCPTS: addr=code for each recipient, comma-separated), then
 *   DONE rc connections_opened */
#include <smtpc/smtpc.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    unsigned char *seen;
    size_t count;
} ctx;

static void on_result(void *ud, size_t i, int status, const smtpc_result *r)
{
    ctx *x = ud;
    if (i >= x->count) {
        printf("BADINDEX %zu\n", i);
        return;
    }
    if (x->seen[i]++) printf("DUPLICATE %zu\n", i);
    printf("R %zu %s %d %u %d ", i, status ? smtpc_err_name(status) : "OK", smtpc_result_reply_code(r),
           smtpc_result_attempts(r), smtpc_result_reused_connection(r) ? 1 : 0);
    for (size_t k = 0; k < smtpc_result_rcpt_count(r); k++)
        printf("%s%s=%d", k ? "," : "", smtpc_result_rcpt_address(r, k), smtpc_result_rcpt_code(r, k));
    printf("\n");
}

typedef struct {
    smtpc_client *c;
    long ms;
} canceler;

static void *cancel_later(void *arg)
{
    canceler *k = arg;
    struct timespec ts = {k->ms / 1000, (k->ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    smtpc_client_cancel_async(k->c);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: drv_batch HOST PORT COUNT [options]\n");
        return 64;
    }
    const char *host = argv[1];
    unsigned port = (unsigned)strtoul(argv[2], NULL, 10);
    size_t count = strtoul(argv[3], NULL, 10);
    const char *rcpts[16];
    size_t nrcpts = 0;
    unsigned retry = 1, max_per_conn = 0;
    long cancel_ms = -1;
    for (int i = 4; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--rcpt") && nrcpts < 16) rcpts[nrcpts++] = argv[i + 1];
        else if (!strcmp(argv[i], "--retry")) retry = (unsigned)strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--max-per-conn")) max_per_conn = (unsigned)strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--cancel-after-ms")) cancel_ms = strtol(argv[i + 1], NULL, 10);
        else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 64;
        }
    }
    if (nrcpts == 0) rcpts[nrcpts++] = "rcpt@example.org";

    smtpc_batch_item *items = calloc(count ? count : 1, sizeof *items);
    char **bodies = calloc(count ? count : 1, sizeof *bodies);
    ctx x = {calloc(count ? count : 1, 1), count};
    if (!items || !bodies || !x.seen) return 70;
    for (size_t i = 0; i < count; i++) {
        size_t cap = 512;
        bodies[i] = malloc(cap);
        if (!bodies[i]) return 70;
        /* a line starting with a dot, so dot-stuffing is exercised */
        int n = snprintf(bodies[i], cap,
                         "From: sender@example.org\r\nTo: rcpt@example.org\r\n"
                         "Message-ID: <%zu.bulk@test>\r\nSubject: batch %zu\r\n\r\n"
                         "line one\r\n.leading dot\r\nlast line\r\n",
                         i, i);
        items[i].from = "sender@example.org";
        items[i].rcpts = rcpts;
        items[i].nrcpts = nrcpts;
        items[i].data = bodies[i];
        items[i].len = (size_t)n;
    }

    smtpc_client *c;
    if (smtpc_client_new(&c)) return 70;
    smtpc_client_set_host(c, host, (uint16_t)port);
    smtpc_client_set_tls_mode(c, SMTPC_TLS_MODE_NONE);
    smtpc_client_set_timeout_ms(c, 20000);
    smtpc_pool_set_max_messages(smtpc_client_pool(c), max_per_conn);
    if (retry > 1) {
        smtpc_retry_policy p = {retry, 10, 2.0, 200};
        smtpc_client_set_retry(c, &p);
    }
    pthread_t th;
    canceler k = {c, cancel_ms};
    if (cancel_ms >= 0) pthread_create(&th, NULL, cancel_later, &k);
    int rc = smtpc_client_send_batch(c, items, count, on_result, &x);
    for (size_t i = 0; i < count; i++)
        if (!x.seen[i]) printf("MISSING %zu\n", i);
    if (cancel_ms >= 0) pthread_join(th, NULL);
    printf("DONE %s %llu\n", rc ? smtpc_err_name(rc) : "OK",
           (unsigned long long)smtpc_pool_connections_opened(smtpc_client_pool(c)));
    smtpc_client_free(c);
    for (size_t i = 0; i < count; i++) free(bodies[i]);
    free(bodies);
    free(items);
    free(x.seen);
    return 0;
}
