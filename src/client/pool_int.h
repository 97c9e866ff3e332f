/* The connection pool inside the library (pool.c), for the client's
 * connections: a pooled connection and how to take and return one. */
#ifndef SMTPC_CLIENT_POOL_INT_H
#define SMTPC_CLIENT_POOL_INT_H

#include <smtpc/client.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct smtpc__pconn {
    struct smtpc__pconn *next;
    char *key;            /* endpoint and identity (a salted hash, never the password); wiped on free */
    smtpc_session *s;     /* NULL: a reserved slot the acquirer connects */
    bool busy;
    bool dirty;           /* the last transaction did not end cleanly: RSET before re-use */
    unsigned msgs;        /* messages sent on it */
    int64_t last_used_ms;
    int64_t opened_ms;    /* when the client opened it (its connection deadline counts from then) */
} smtpc__pconn;

/* Takes an idle connection for key, or reserves a slot (conn->s NULL: the
 * caller connects and stores the session). Waits while max connections of
 * key are busy, checking *cancel every 100 ms (SMTPC_ECANCELED). *check:
 * the idle connection was idle past the NOOP threshold. */
int smtpc__pool_acquire(smtpc_pool *p, const char *key, const atomic_bool *cancel,
                        smtpc__pconn **out, bool *check);
/* How long a connection the pool closes waits for the reply to its QUIT
 * (bounded by the command timeout too). */
#define SMTPC__POOL_QUIT_MS 5000
/* Returns a connection: kept for re-use when keep and connected and under
 * the message limit, else closed (QUIT when polite, at most
 * SMTPC__POOL_QUIT_MS waiting for the 221) and freed. */
void smtpc__pool_release(smtpc_pool *p, smtpc__pconn *c, bool keep, bool polite);
/* The client stored a new session in a reserved slot. */
void smtpc__pool_count_open(smtpc_pool *p);
/* The maximum number of messages per connection (0 = no limit). */
unsigned smtpc__pool_max_messages(smtpc_pool *p);
int smtpc__pool_new_private(smtpc_pool **out);

#endif
