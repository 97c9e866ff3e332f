/* send_client: the high level. Configure a client once, send two messages
 * over its kept-open connection, report per-recipient results.
 *
 *   cc -o send_client send_client.c $(pkg-config --cflags --libs smtpc)
 *   ./send_client HOST PORT FROM TO... */
#include <smtpc/smtpc.h>

#include <stdio.h>
#include <stdlib.h>

static int report(int rc, const smtpc_result *r)
{
    if (!r) { /* refused before anything started (EINVAL, EBUSY) */
        fprintf(stderr, "send: %s\n", smtpc_err_name(rc));
        return rc;
    }
    for (size_t i = 0; i < smtpc_result_rcpt_count(r); i++)
        printf("  %s: %s %d %s\n", smtpc_result_rcpt_address(r, i),
               smtpc_result_rcpt_accepted(r, i) ? "accepted" : "refused",
               smtpc_result_rcpt_code(r, i), smtpc_result_rcpt_text(r, i));
    switch (smtpc_result_class(r)) {
    case SMTPC_CLASS_OK:
        printf("sent %s, queue id '%s', %u attempt(s)%s\n", smtpc_result_message_id(r),
               smtpc_result_queue_id(r), smtpc_result_attempts(r),
               smtpc_result_reused_connection(r) ? ", re-used connection" : "");
        break;
    case SMTPC_CLASS_TRANSIENT:
        fprintf(stderr, "try again later: %s\n", smtpc_result_errmsg(r));
        break;
    case SMTPC_CLASS_UNKNOWN:
        fprintf(stderr, "may have been delivered: %s\n", smtpc_result_errmsg(r));
        break;
    default:
        fprintf(stderr, "%s: %s\n", smtpc_err_name(rc), smtpc_result_errmsg(r));
        break;
    }
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s HOST PORT FROM TO...\n", argv[0]);
        return 64;
    }
    smtpc_client *c;
    if (smtpc_client_new(&c))
        return 71;
    int rc = smtpc_client_set_host(c, argv[1], (uint16_t)strtoul(argv[2], NULL, 10));
    if (!rc)
        rc = smtpc_client_set_tls_mode(c, SMTPC_TLS_MODE_NONE); /* a local test server */
    smtpc_retry_policy rp = {.attempts = 2, .initial_delay_ms = 500, .backoff_factor = 2.0,
                             .max_delay_ms = 5000};
    if (!rc)
        rc = smtpc_client_set_retry(c, &rp);
    if (rc) {
        fprintf(stderr, "config: %s\n", smtpc_client_errmsg(c));
        smtpc_client_free(c);
        return 78;
    }

    int failures = 0;
    for (int n = 1; n <= 2; n++) {
        smtpc_message *m;
        if (smtpc_message_new(&m))
            return 71;
        char subject[64];
        snprintf(subject, sizeof subject, "Client message %d", n);
        rc = smtpc_message_set_from(m, argv[3]);
        for (int i = 4; i < argc && !rc; i++)
            rc = smtpc_message_add_to(m, argv[i]);
        if (!rc)
            rc = smtpc_message_set_subject(m, subject);
        if (!rc)
            rc = smtpc_message_set_text(m, "Sent with smtpc_client_send().\n", (size_t)-1);
        if (rc) {
            fprintf(stderr, "message: %s\n", smtpc_message_errmsg(m));
            smtpc_message_free(m);
            break;
        }
        smtpc_result *r = NULL;
        rc = smtpc_client_send(c, m, &r);
        report(rc, r);
        failures += rc != 0;
        smtpc_result_free(r);
        smtpc_message_free(m);
    }
    smtpc_client_free(c); /* QUIT on the kept connection */
    return failures ? 1 : 0;
}
