/* Internal access to a session for library code built on its public API
 * (session_message.c, the client): error detail on the handle. */
#ifndef SMTPC_CLIENT_SESSION_INT_H
#define SMTPC_CLIENT_SESSION_INT_H

#include <smtpc/session.h>

#include "util/util.h"

smtpc__errmsg *smtpc__session_errbuf(smtpc_session *s);

#endif
