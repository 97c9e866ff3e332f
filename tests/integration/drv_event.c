/* smtpc_bulk driven by a libevent event_base (include/smtpc/adapters/libevent.h).
 *   drv_event HOST PORT COUNT CONNS     prints "R IDX STATUS CODE" and "DONE sent" */
#include <smtpc/adapters/libevent.h>
#include <smtpc/smtpc.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t count, next, sent;
static char bodies[64][160];
static const char *rcpts[] = {"rcpt@example.org"};

static int next_msg(void *ud, smtpc_bulk_msg *m)
{
    (void)ud;
    if (next >= count) return 0;
    memset(m, 0, sizeof *m);
    char *p = bodies[next % 64];
    snprintf(p, 160, "Subject: event %zu\r\nMessage-ID: <%zu.bulk@test>\r\n\r\nvia libevent\r\n", next, next);
    m->from = "sender@example.org";
    m->rcpts = rcpts;
    m->nrcpts = 1;
    m->data = p;
    m->len = strlen(p);
    m->userdata = (void *)(uintptr_t)next++;
    return 1;
}

static void on_result(void *ud, const smtpc_bulk_msg *m, const smtpc_bulk_result *r)
{
    (void)ud;
    printf("R %zu %d %d\n", (size_t)(uintptr_t)m->userdata, (int)r->status, r->reply_code);
    if (r->status == SMTPC_BULK_SENT) sent++;
}

int main(int argc, char **argv)
{
    if (argc < 5) return 2;
    count = strtoul(argv[3], NULL, 10);
    smtpc_bulk *b;
    if (smtpc_bulk_new(&b, argv[1], (uint16_t)atoi(argv[2]))) return 3;
    smtpc_bulk_set_source(b, next_msg, NULL);
    smtpc_bulk_set_result_cb(b, on_result, NULL);
    smtpc_bulk_set_connections(b, (unsigned)atoi(argv[4]));
    smtpc_bulk_set_tls(b, SMTPC_TLS_MODE_NONE, NULL, NULL, false); /* the test server is plaintext */
    struct event_base *base = event_base_new();
    smtpc_event a;
    if (!base || smtpc_event_attach(&a, base, b) || smtpc_bulk_start(b)) return 4;
    event_base_dispatch(base);
    int done = smtpc_bulk_done(b);
    smtpc_bulk_free(b);
    smtpc_event_detach(&a);
    event_base_free(base);
    printf("DONE %zu %d\n", sent, done);
    return 0;
}
