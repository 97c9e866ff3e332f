/* DKIM signing for smtpc_bulk on a pool of threads (sign_pool.c): the
 * loop takes messages from the source, hands them to the workers and gets
 * them back signed through an eventfd it watches; it never waits for a
 * signature. The hooks: sched.c's fetch asks smtpc__sign_pool_next instead
 * of the source (SMTPC__SIGN_PENDING: nothing signed yet, more to come);
 * a message is given back to its owner as it came (smtpc__sign_pool_restore
 * before the result callback); the loop routes the pool's fd to
 * smtpc__sign_pool_wake. */
#ifndef SMTPC_ASYNC_SIGN_POOL_H
#define SMTPC_ASYNC_SIGN_POOL_H

#include <smtpc/async.h>

#include <stdbool.h>

#define SMTPC__SIGN_PENDING 2

typedef struct smtpc__sign_pool smtpc__sign_pool;

/* The next signed message into *m: 1, SMTPC__SIGN_PENDING, 0 (the source
 * ended and nothing is left), or the source's negative code. A message
 * that could not be signed comes back with 1 and *fail set to its error
 * (its detail in errmsg); it is the caller's to report. Loop thread. */
int smtpc__sign_pool_next(smtpc_bulk *b, smtpc_bulk_msg *m, int *fail, char *errmsg, size_t errlen);
/* *m as the source gave it (frees what signing made for it). */
void smtpc__sign_pool_restore(smtpc_bulk *b, smtpc_bulk_msg *m);
/* The fd the loop watches (readable: signed messages are waiting), or -1. */
int smtpc__sign_pool_fd(const smtpc_bulk *b);
/* The fd was readable: connections waiting for a message get one. */
void smtpc__sign_pool_wake(smtpc_bulk *b);
/* The run gives up (drain_source: also the source's messages not yet
 * taken, as smtpc__bulk_give_up does) or is canceled: every message the
 * pool holds is reported with s, err, code, text, msg (waiting for the
 * ones being signed), and the pool gives nothing more. Loop thread. */
void smtpc__sign_pool_flush(smtpc_bulk *b, smtpc_bulk_status s, int err, int code, const char *text,
                            const char *msg, bool drain_source);
/* Stops the workers; messages still held are reported CANCELED. */
void smtpc__sign_pool_free(smtpc_bulk *b);

#endif
