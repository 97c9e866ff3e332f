/* send_session: one message over one SMTP session, step by step.
 *
 *   cc -o send_session send_session.c $(pkg-config --cflags --libs smtpc)
 *   ./send_session HOST PORT FROM TO
 *
 * Exit status: 0 sent, 1 retry later, 2 refused (don't retry), 3 fix the
 * configuration, 4 outcome unknown (may have been delivered). */
#include <smtpc/smtpc.h>

#include <stdio.h>
#include <stdlib.h>

static int exit_code(int rc)
{
    switch (smtpc_error_classify(rc)) {
    case SMTPC_CLASS_OK: return 0;
    case SMTPC_CLASS_TRANSIENT: return 1;  /* 4xx, network, timeout: queue and retry later */
    case SMTPC_CLASS_PERMANENT: return 2;  /* 5xx: bounce it, retrying fails again */
    case SMTPC_CLASS_UNKNOWN: return 4;    /* never resend blindly: it may be a duplicate */
    default: return 3;                     /* config, TLS, auth, protocol, canceled */
    }
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s HOST PORT FROM TO\n", argv[0]);
        return 64;
    }
    const char *host = argv[1], *from = argv[3], *to = argv[4];
    uint16_t port = (uint16_t)strtoul(argv[2], NULL, 10);

    char msg[1024];
    int n = snprintf(msg, sizeof msg,
                     "From: <%s>\r\nTo: <%s>\r\nSubject: Hello from libsmtpc\r\n\r\n"
                     "Hello.\r\n.a line that starts with a dot\r\n", from, to);
    if (n < 0 || (size_t)n >= sizeof msg)
        return 64;

    smtpc_session *s;
    int rc = smtpc_session_new(&s);
    if (rc) {
        fprintf(stderr, "smtpc_session_new: %s\n", smtpc_strerror(rc));
        return 3;
    }
    smtpc_session_set_command_timeout_ms(s, 30000);
    smtpc_session_set_tls_mode(s, SMTPC_TLS_MODE_NONE); /* a local test server */

    /* Connect, EHLO, STARTTLS/AUTH as configured: ready for MAIL. */
    rc = smtpc_session_open(s, host, port);
    if (rc == 0) {
        const char *rcpts[] = {to};
        smtpc_envelope env = {.from = from, .rcpts = rcpts, .nrcpts = 1};
        /* MAIL, RCPT, DATA pipelined when offered; the body is dot-stuffed. */
        rc = smtpc_session_send_mem(s, &env, msg, (size_t)n);
        if (rc == 0)
            printf("sent: %d %s\n", smtpc_reply_code(smtpc_session_reply(s)),
                   smtpc_reply_text(smtpc_session_reply(s)));
        for (size_t i = 0; i < smtpc_session_rcpt_count(s); i++) {
            const smtpc_reply *r = smtpc_session_rcpt_reply(s, i);
            printf("  rcpt %zu: %s %d %s\n", i, smtpc_err_name(smtpc_session_rcpt_status(s, i)),
                   smtpc_reply_code(r), r ? smtpc_reply_text(r) : "");
        }
    }
    if (rc)
        fprintf(stderr, "%s: %s\n", smtpc_err_name(rc), smtpc_session_errmsg(s));
    if (smtpc_session_is_connected(s))
        smtpc_session_quit(s); /* polite close; its errors don't matter any more */
    smtpc_session_free(s);
    return exit_code(rc);
}
