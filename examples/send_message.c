/* send_message: build a MIME message (text + attachment) and send it over a
 * session; the envelope comes from the message (From; To, Cc, Bcc).
 *
 *   cc -o send_message send_message.c $(pkg-config --cflags --libs smtpc)
 *   ./send_message HOST PORT FROM TO ATTACHMENT */
#include <smtpc/smtpc.h>

#include <stdio.h>
#include <stdlib.h>

static int build(smtpc_message *m, const char *from, const char *to, const char *file)
{
    int rc;
    if ((rc = smtpc_message_set_from(m, from)) ||
        (rc = smtpc_message_add_to(m, to)) ||
        (rc = smtpc_message_add_bcc(m, "carol@example.net")) ||   /* envelope only */
        (rc = smtpc_message_set_subject(m, "Quarterly report \xe2\x80\x94 final")) ||
        (rc = smtpc_message_set_text(m, "Hello Bob,\n\nthe report is attached.\n", (size_t)-1)))
        return rc;
    smtpc_attachment_opts ao = {.content_type = "text/plain"};
    return smtpc_message_add_attachment_file(m, file, &ao); /* read when written */
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: %s HOST PORT FROM TO ATTACHMENT\n", argv[0]);
        return 64;
    }
    smtpc_message *m;
    if (smtpc_message_new(&m))
        return 71;
    int rc = build(m, argv[3], argv[4], argv[5]);
    if (rc) {
        fprintf(stderr, "message: %s: %s\n", smtpc_err_name(rc), smtpc_message_errmsg(m));
        smtpc_message_free(m);
        return 65;
    }

    smtpc_session *s;
    if (smtpc_session_new(&s)) {
        smtpc_message_free(m);
        return 71;
    }
    smtpc_session_set_tls_mode(s, SMTPC_TLS_MODE_NONE);
    rc = smtpc_session_open(s, argv[1], (uint16_t)strtoul(argv[2], NULL, 10));
    if (rc == 0) {
        /* Written to fit the server (8BITMIME, SMTPUTF8, SIZE), streamed. */
        rc = smtpc_session_send_message(s, m, NULL);
    }
    /* Read the detail before QUIT: the next command replaces it. */
    if (rc)
        fprintf(stderr, "send: %s (%s): %s\n", smtpc_err_name(rc), smtpc_strerror(rc),
                smtpc_session_errmsg(s));
    else
        printf("sent %s\n", smtpc_message_message_id(m));
    if (smtpc_session_is_connected(s))
        smtpc_session_quit(s);
    smtpc_session_free(s);
    smtpc_message_free(m);
    return rc ? 1 : 0;
}
