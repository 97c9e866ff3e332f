/* Non-blocking TCP connect (see tcp_async.c). */
#ifndef SMTPC_NET_TCP_ASYNC_H
#define SMTPC_NET_TCP_ASYNC_H

#include "net/transport.h"

#include <stdbool.h>
#include <sys/socket.h>

/* Creates a non-blocking socket (TCP_NODELAY, CLOEXEC), binds it to the
 * local address of opts (bind_addr/bind_port; NULL opts = none; family and
 * deadline are the caller's) and starts connecting to sa. *in_progress:
 * wait for writability, then smtpc__tcp_connect_finish(). On failure *out is
 * untouched. */
int smtpc__tcp_connect_start(smtpc__transport **out, const struct sockaddr *sa, socklen_t salen,
                             const smtpc__tcp_opts *opts, bool *in_progress, smtpc__errmsg *err);
/* 0 when the connect succeeded, else SMTPC_ENETWORK with err set. */
int smtpc__tcp_connect_finish(smtpc__transport *t, smtpc__errmsg *err);

#endif
