/* send_async: smtpc_client_send_async, the callback and waiting for it.
 * The send runs on the client's own thread; the callback is called exactly
 * once (also when canceled) and the client is idle again when it runs.
 *
 *   cc -o send_async send_async.c $(pkg-config --cflags --libs smtpc)
 *   ./send_async HOST PORT FROM TO */
#include <smtpc/smtpc.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int status;
};

/* Runs on the client's thread. result is borrowed: copy what you need. */
static void on_sent(void *ud, int status, const smtpc_result *r)
{
    struct waiter *w = ud;
    if (status == 0)
        printf("sent %s: %d %s\n", smtpc_result_message_id(r), smtpc_result_reply_code(r),
               smtpc_result_reply_text(r));
    else
        fprintf(stderr, "%s: %s\n", smtpc_err_name(status), smtpc_result_errmsg(r));
    pthread_mutex_lock(&w->mu);
    w->status = status;
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s HOST PORT FROM TO\n", argv[0]);
        return 64;
    }
    smtpc_message *m;
    if (smtpc_message_new(&m))
        return 71;
    if (smtpc_message_set_from(m, argv[3]) || smtpc_message_add_to(m, argv[4]) ||
        smtpc_message_set_subject(m, "Sent in the background") ||
        smtpc_message_set_text(m, "Hello from smtpc_client_send_async().\n", (size_t)-1)) {
        fprintf(stderr, "message: %s\n", smtpc_message_errmsg(m));
        smtpc_message_free(m);
        return 65;
    }
    smtpc_client *c;
    if (smtpc_client_new(&c)) {
        smtpc_message_free(m);
        return 71;
    }
    smtpc_client_set_host(c, argv[1], (uint16_t)strtoul(argv[2], NULL, 10));
    smtpc_client_set_tls_mode(c, SMTPC_TLS_MODE_NONE);

    struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0};
    int rc = smtpc_client_send_async(c, m, on_sent, &w);
    if (rc == 0) {
        /* ... the application goes on; here it just waits. m stays alive
         * and unmodified until the callback. */
        pthread_mutex_lock(&w.mu);
        while (!w.done)
            pthread_cond_wait(&w.cv, &w.mu);
        pthread_mutex_unlock(&w.mu);
        rc = w.status;
    } else {
        fprintf(stderr, "send_async: %s\n", smtpc_err_name(rc)); /* no callback */
    }
    smtpc_client_free(c); /* would wait for a send still in progress */
    smtpc_message_free(m);
    return rc ? 1 : 0;
}
