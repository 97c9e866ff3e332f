/* Test driver for the stored copies of a composed message
 * (tests/integration/test_local_delivery_8bit.py).
 *
 *   drv_local8 --mode add|outbox|pickup --dir DIR [--utf8-addr]
 *
 * Composes a message with a non-ASCII display name, Subject and text body
 * (ASCII addresses, or a non-ASCII recipient with --utf8-addr) and stores
 * it: add = smtpc_outbox_add; outbox / pickup = a client with
 * smtpc_client_set_delivery. Prints "stored rc=SMTPC_X id=ID". */
#include <smtpc/smtpc.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *what)
{
    fprintf(stderr, "drv_local8: %s\n", what);
    exit(2);
}

int main(int argc, char **argv)
{
    const char *mode = NULL, *dir = NULL;
    int utf8_addr = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--mode") && v) mode = v, i++;
        else if (!strcmp(a, "--dir") && v) dir = v, i++;
        else if (!strcmp(a, "--utf8-addr")) utf8_addr = 1;
        else die("usage: drv_local8 --mode add|outbox|pickup --dir DIR [--utf8-addr]");
    }
    if (!mode || !dir) die("--mode and --dir are required");
    smtpc_message *m;
    if (smtpc_message_new(&m)) die("message_new");
    if (smtpc_message_set_from(m, "J\xc3\xbcrgen M\xc3\xbcller <a@example.org>")) die("from");
    if (smtpc_message_add_to(m, utf8_addr ? "J\xc3\xb8rn <j\xc3\xb8rn@example.org>" : "b@example.org")) die("to");
    smtpc_message_set_message_id(m, "<local8@drv.example>");
    if (smtpc_message_set_subject(m, "Gr\xc3\xbc\xc3\x9f" "e aus K\xc3\xb6ln")) die("subject");
    if (smtpc_message_set_text(m, "Sch\xc3\xb6ne Gr\xc3\xbc\xc3\x9f" "e.\n", (size_t)-1)) die("text");
    int rc;
    char id[256] = "";
    if (!strcmp(mode, "add")) {
        smtpc_outbox *ob;
        char err[256] = "";
        rc = smtpc_outbox_open(&ob, dir, err, sizeof err);
        if (rc) die(err);
        rc = smtpc_outbox_add(ob, m, id, sizeof id);
        if (rc) fprintf(stderr, "%s\n", smtpc_outbox_errmsg(ob));
        smtpc_outbox_free(ob);
    } else {
        smtpc_client *c;
        if (smtpc_client_new(&c)) die("client_new");
        rc = smtpc_client_set_delivery(c, !strcmp(mode, "pickup") ? SMTPC_DELIVERY_PICKUP : SMTPC_DELIVERY_OUTBOX,
                                       dir);
        smtpc_result *r = NULL;
        if (!rc) rc = smtpc_client_send(c, m, &r);
        if (r && smtpc_result_queue_id(r)) snprintf(id, sizeof id, "%s", smtpc_result_queue_id(r));
        if (rc) fprintf(stderr, "%s\n", smtpc_client_errmsg(c));
        smtpc_result_free(r);
        smtpc_client_free(c);
    }
    smtpc_message_free(m);
    printf("stored rc=%s id=%s\n", smtpc_err_name(rc), id);
    return rc ? 1 : 0;
}
