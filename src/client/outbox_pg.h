/* The outbox's PostgreSQL backend (outbox_pg.c) as outbox.c sees it:
 * smtpc_outbox_open hands a postgresql:// URL here and every outbox call
 * on such an outbox is forwarded. Without libpq at build time the open
 * fails with SMTPC_EUNSUPPORTED ("PostgreSQL support is off"). */
#ifndef SMTPC_CLIENT_OUTBOX_PG_H
#define SMTPC_CLIENT_OUTBOX_PG_H

#include <smtpc/outbox.h>

#include <stdbool.h>

typedef struct smtpc__pg smtpc__pg;

/* postgresql:// or postgres:// */
bool smtpc__pg_is_url(const char *s);
int smtpc__pg_open(smtpc__pg **out, const char *url, char *errbuf, size_t errlen);
void smtpc__pg_free(smtpc__pg *p);
const char *smtpc__pg_errmsg(const smtpc__pg *p);
int smtpc__pg_set_backoff(smtpc__pg *p, int64_t initial_ms, double factor, int64_t max_ms,
                          unsigned max_attempts);
void smtpc__pg_set_progress(smtpc__pg *p, smtpc_outbox_progress_cb cb, void *ud);
int smtpc__pg_add_raw(smtpc__pg *p, const char *from, const char *const *rcpts, size_t nrcpts,
                      smtpc_read_cb cb, void *ud, char *id_out, size_t idlen);
int smtpc__pg_flush(smtpc__pg *p, smtpc_client *const *clients, size_t n, smtpc_outbox_stats *st);
int smtpc__pg_list(smtpc__pg *p, bool include_failed,
                   int (*cb)(void *ud, const smtpc_outbox_entry *e), void *ud);
int smtpc__pg_retry(smtpc__pg *p, const char *id);
int smtpc__pg_drop(smtpc__pg *p, const char *id);

/* The backend of an outbox (NULL for a directory), for the public calls
 * that exist only for PostgreSQL (outbox_pg.c). */
smtpc__pg *smtpc__outbox_pg(const smtpc_outbox *ob);

#endif
