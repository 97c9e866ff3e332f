/* Internal access to a session for library code built on its public API
 * (session_message.c, the client): error detail on the handle. */
#ifndef SMTPC_CLIENT_SESSION_INT_H
#define SMTPC_CLIENT_SESSION_INT_H

#include <smtpc/session.h>

#include "conn/conn_opts.h"
#include "util/util.h"

smtpc__errmsg *smtpc__session_errbuf(smtpc_session *s);
/* A setter of o failed with rc: its detail (o->err, cleared before the
 * call; else the code's text) into dst. Returns rc. */
int smtpc__conn_opts_fail(smtpc__errmsg *dst, const smtpc_conn_opts *o, int rc);
/* Replaces the overall deadline of a connected session: at_ms absolute
 * (smtpc__now_ms clock; -1 = none), ms the span it stands for (messages).
 * The client re-arms it before each attempt on a pooled connection. */
void smtpc__session_set_deadline_at(smtpc_session *s, int64_t at_ms, int64_t ms);

/* ---- pipelining across messages (the client's send_batch) ----
 * Each message's MAIL/RCPT/DATA goes in the same write as the previous
 * message's final dot (RFC 2920 3.1) when the server offers PIPELINING:
 * one round trip per message instead of two. */
typedef struct smtpc__batch_msg {
    smtpc_envelope env;   /* its pointers stay valid until the message is done */
    smtpc_read_cb body;
    void *ud;
} smtpc__batch_msg;
/* Message i: fill *m and return 1; 0 = no more; <0 = error (stops the batch). */
typedef int (*smtpc__batch_next_fn)(void *ud, size_t i, smtpc__batch_msg *m);
/* Message i is finished, in order: rc 0 accepted, SMTPC_ETEMPFAIL /
 * SMTPC_EPERMFAIL refused, SMTPC_EUNKNOWN its dot went out and the reply
 * was lost, or why it could not be queued. During the call the session's
 * reply, recipient results and errmsg describe it. */
typedef void (*smtpc__batch_done_fn)(void *ud, size_t i, int rc, smtpc_session *s);
/* Sends messages first, first+1, ... until next returns 0. Returns 0 when
 * each was done, else the connection's error: messages from first+*ndone
 * on are not done (never written completely: safe to send again; a 421
 * stops the batch the same way). */
int smtpc__session_send_batch(smtpc_session *s, smtpc__batch_next_fn next, smtpc__batch_done_fn done,
                              void *ud, size_t first, size_t *ndone);

#endif
