/* send_bulk: one message per recipient, over two non-blocking connections
 * in one thread (smtpc_bulk, the built-in loop).
 *
 *   cc -o send_bulk send_bulk.c $(pkg-config --cflags --libs smtpc)
 *   ./send_bulk HOST PORT FROM TO... */
#include <smtpc/smtpc.h>

#include <stdio.h>
#include <stdlib.h>

struct job {
    const char *from;
    char **to;       /* one recipient per message */
    size_t n, next;
    char body[512];  /* shared: the bulk sender only reads it */
    size_t len;
    unsigned sent, failed, unknown;
};

static int next_msg(void *ud, smtpc_bulk_msg *m)
{
    struct job *j = ud;
    if (j->next == j->n)
        return 0; /* no more */
    size_t i = j->next++;
    *m = (smtpc_bulk_msg){.from = j->from,
                          .rcpts = (const char *const *)&j->to[i],
                          .nrcpts = 1,
                          .data = j->body,
                          .len = j->len,
                          .userdata = (void *)j->to[i]};
    return 1;
}

static void on_result(void *ud, const smtpc_bulk_msg *m, const smtpc_bulk_result *r)
{
    struct job *j = ud;
    const char *to = m->userdata;
    switch (r->status) {
    case SMTPC_BULK_SENT:
        j->sent++;
        printf("%s: sent (%d %s)\n", to, r->reply_code, r->reply_text);
        break;
    case SMTPC_BULK_UNKNOWN: /* maybe delivered: record, don't resend blindly */
        j->unknown++;
        fprintf(stderr, "%s: outcome unknown: %s\n", to, r->errmsg);
        break;
    default:
        j->failed++;
        fprintf(stderr, "%s: %s (%s): %s\n", to, smtpc_err_name(r->error),
                smtpc_error_classify(r->error) == SMTPC_CLASS_TRANSIENT ? "retry later"
                                                                        : "don't retry",
                r->errmsg);
        break;
    }
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s HOST PORT FROM TO...\n", argv[0]);
        return 64;
    }
    struct job j = {.from = argv[3], .to = &argv[4], .n = (size_t)(argc - 4)};
    int len = snprintf(j.body, sizeof j.body,
                       "From: <%s>\r\nSubject: Bulk hello\r\n\r\nOne of many.\r\n", j.from);
    if (len < 0 || (size_t)len >= sizeof j.body)
        return 64;
    j.len = (size_t)len;

    smtpc_bulk *b;
    int rc = smtpc_bulk_new(&b, argv[1], (uint16_t)strtoul(argv[2], NULL, 10));
    if (rc) {
        fprintf(stderr, "smtpc_bulk_new: %s\n", smtpc_strerror(rc));
        return 78;
    }
    smtpc_bulk_set_source(b, next_msg, &j);
    smtpc_bulk_set_result_cb(b, on_result, &j);
    smtpc_bulk_set_connections(b, 2);
    /* a local test server; the default is the session's: STARTTLS required
     * except on ports 25 (when offered) and 465 (implicit TLS) */
    smtpc_bulk_set_tls(b, SMTPC_TLS_MODE_NONE, NULL, NULL, false);
    smtpc_bulk_set_timeouts(b, 10000, 30000, 30000, 60000, 0);
    rc = smtpc_bulk_run(b);
    if (rc)
        fprintf(stderr, "run: %s: %s\n", smtpc_err_name(rc), smtpc_bulk_errmsg(b));

    smtpc_bulk_stats st;
    smtpc_bulk_get_stats(b, &st);
    printf("%u sent, %u failed, %u unknown over %llu connection(s)\n", j.sent, j.failed,
           j.unknown, (unsigned long long)st.connections_opened);
    smtpc_bulk_free(b);
    return rc || j.failed || j.unknown ? 1 : 0;
}
