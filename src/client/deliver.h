/* What a sender outside the client (the outbox's flush) needs of it: hand
 * it a body with its envelope to deliver with the client's settings and
 * pool, and hold the client busy meanwhile. Nothing else of the client. */
#ifndef SMTPC_CLIENT_DELIVER_H
#define SMTPC_CLIENT_DELIVER_H

#include <smtpc/client.h>

#include <stdbool.h>

/* What to send: a message (envelope from it), or a raw body with an
 * explicit envelope from memory or a callback. A callback body can be sent
 * again only with rewind (else only attempts that never read it may be
 * retried). */
typedef struct smtpc__body {
    smtpc_message *m;
    const char *from;
    const char *const *rcpts;
    size_t nrcpts;
    const void *mem;
    size_t len;
    smtpc_read_cb cb;
    void *ud;
    int (*rewind)(void *ud);
    const smtpc_send_params *params; /* NULL = none */
    const size_t *idx; /* a retry's recipients: their index in the send's envelope (NULL = same) */
} smtpc__body;

/* The network send with the client's settings and pool; retries per the
 * client's policy when use_retry. *out gets a result (may be NULL). */
int smtpc__client_deliver(smtpc_client *c, const smtpc__body *b, bool use_retry,
                          smtpc_result **out);
/* The writer flags of a stored copy of m (pickup file, outbox entry):
 * 7-bit clean unless an address needs SMTPUTF8 (stored.c). */
unsigned smtpc__stored_write_flags(const smtpc_message *m);
/* Marks the client busy (SMTPC_EBUSY if it already is) / idle. */
int smtpc__client_enter(smtpc_client *c);
void smtpc__client_leave(smtpc_client *c);

#endif
