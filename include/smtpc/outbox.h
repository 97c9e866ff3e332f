/* smtpc — the outbox: an offline spool directory (send later).
 *
 *   smtpc_outbox *ob;
 *   smtpc_outbox_open(&ob, "/home/me/.cache/smtpc/outbox");
 *   smtpc_outbox_add(ob, msg, NULL, 0);          // durable when it returns 0
 *   ...
 *   smtpc_outbox_stats st;
 *   smtpc_outbox_flush(ob, client, &st);         // sends what is due
 *   smtpc_outbox_free(ob);
 *
 * Layout: DIR/queue/<id>.msg (envelope header + the message, CRLF),
 * DIR/queue/<id>.state (attempts, next attempt, last error; absent = never
 * tried), DIR/failed/ (permanent failures with the server's reply in the
 * state file), DIR/tmp/ (files being written). Every file appears by
 * write + fsync + rename + fsync of the directory, so a crash (kill -9,
 * power loss) at any point loses no queued message.
 *
 * Delivery is at least once: a message is removed only after the server
 * accepted it. A crash between the server's 250 and the removal (a window
 * of one unlink) sends it again at the next flush. A lost connection after
 * the final dot (SMTPC_EUNKNOWN) also keeps the message for a later flush:
 * a possible duplicate is preferred to a possible loss. When the server
 * takes the message for some recipients and refuses others, the refused
 * ones become a new entry (4xx: queued with backoff; 5xx: failed/) before
 * the original is removed.
 *
 * One flush at a time per directory (an flock on DIR/lock; a second
 * concurrent flush returns SMTPC_EBUSY); inside it,
 * smtpc_outbox_flush_parallel sends over several connections at once.
 * smtpc_outbox_retry and smtpc_outbox_drop take the same lock (SMTPC_EBUSY
 * while a flush runs: try again later): they never move or remove an entry
 * that is being sent. Adding is always allowed.
 *
 * Files are created new (O_EXCL, O_NOFOLLOW), temporaries under unique
 * names; state files whose message is gone are removed by a flush (queue/)
 * and by smtpc_outbox_retry(NULL) (both). The directories must be private:
 * DIR, queue/, failed/ and tmp/ owned by the effective user and not
 * writable by group or others (anyone who can write there could plant
 * links or swap messages and envelopes); open refuses them otherwise. */
#ifndef SMTPC_OUTBOX_H
#define SMTPC_OUTBOX_H

#include "client.h"
#include "common.h"
#include "conn.h"
#include "errors.h"
#include "message.h"

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct smtpc_outbox smtpc_outbox;

/* Opens (creating it and its subdirectories, mode 0700) the outbox at dir.
 * Errors: SMTPC_ECONFIG (one of the directories is another user's or
 * writable by group or others; which and why in errbuf), SMTPC_EIO (detail
 * in errbuf), SMTPC_EINVAL, SMTPC_ENOMEM. */
SMTPC_API int smtpc_outbox_open(smtpc_outbox **out, const char *dir, char *errbuf,
                                size_t errlen);
SMTPC_API void smtpc_outbox_free(smtpc_outbox *ob);
SMTPC_API const char *smtpc_outbox_errmsg(const smtpc_outbox *ob);

/* Queues m (envelope from the message). id_out (may be NULL) receives the
 * entry id. Durable on return 0 (SMTPC_EIO, not queued, when the directory
 * cannot be synced after the rename). Errors: SMTPC_EINVAL (no sender or
 * recipient), SMTPC_EIO, SMTPC_ENOMEM, the writer's errors. */
SMTPC_API int smtpc_outbox_add(smtpc_outbox *ob, smtpc_message *m, char *id_out, size_t idlen);
/* Queues a raw message read from cb with an explicit envelope. */
SMTPC_API int smtpc_outbox_add_raw(smtpc_outbox *ob, const char *from, const char *const *rcpts,
                                   size_t nrcpts, smtpc_read_cb cb, void *userdata, char *id_out,
                                   size_t idlen);

/* Backoff between flush attempts of a deferred message: initial delay,
 * factor, cap; after max_attempts (0 = unlimited) a transient failure is
 * moved to failed/. Defaults: 60 s, 2.0, 1 h, 0. */
SMTPC_API int smtpc_outbox_set_backoff(smtpc_outbox *ob, int64_t initial_ms, double factor,
                                       int64_t max_ms, unsigned max_attempts);

typedef struct smtpc_outbox_stats {
    unsigned sent;     /* accepted and removed */
    unsigned deferred; /* transient failure or unknown outcome (or an entry that does not
                          read: smtpc_outbox_check moves it aside): kept for a later flush */
    unsigned failed;   /* permanent failure: moved to failed/ */
    unsigned not_due;  /* skipped: next attempt in the future */
} smtpc_outbox_stats;

/* Sends every due message through client (its pooled connection, its
 * settings; the client's own retry policy is not used: the outbox's backoff
 * is). Returns 0 when the flush ran (see stats for the outcomes), SMTPC_EBUSY
 * when another flush holds the lock, SMTPC_EIO, or SMTPC_ECANCELED. */
SMTPC_API int smtpc_outbox_flush(smtpc_outbox *ob, smtpc_client *client, smtpc_outbox_stats *st);

/* The most clients smtpc_outbox_flush_parallel takes. */
#define SMTPC_OUTBOX_MAX_CONNECTIONS 256

/* smtpc_outbox_flush over n connections at once: one thread per client
 * (the calling thread runs the first), each taking the next due entry in
 * turn, so no entry is sent twice; every outcome is recorded as by
 * smtpc_outbox_flush (removed after the server's acceptance, 4xx and
 * SMTPC_EUNKNOWN deferred with backoff, 5xx to failed/). Give the clients
 * the same settings; to bound the connections by one limit, give them one
 * smtpc_pool (smtpc_client_set_pool) with smtpc_pool_set_max_per_endpoint(n)
 * (with their private pools: one connection each). Each client is used by
 * one thread only, and all are busy during the flush (SMTPC_EBUSY if one
 * already is, or appears twice). A canceled client (smtpc_client_cancel_async)
 * stops the flush: the others finish the message they are sending, then the
 * flush returns SMTPC_ECANCELED. Another flush of the directory (thread or
 * process) returns SMTPC_EBUSY while this one runs. Errors: as
 * smtpc_outbox_flush; SMTPC_EINVAL for n 0 or above
 * SMTPC_OUTBOX_MAX_CONNECTIONS or a NULL client. */
SMTPC_API int smtpc_outbox_flush_parallel(smtpc_outbox *ob, smtpc_client *const *clients, size_t n,
                                          smtpc_outbox_stats *st);

/* Called by a flush before each queued entry is handled (done = entries
 * handled so far, total = entries found) and once at the end (done ==
 * total unless the flush stopped early); st holds the outcomes so far.
 * Calls never overlap (with smtpc_outbox_flush_parallel they come from its
 * worker threads, one at a time, while the others wait to take their next
 * entry: keep it short); done never decreases. Must not call back into the
 * outbox. */
typedef void (*smtpc_outbox_progress_cb)(void *userdata, size_t done, size_t total,
                                         const smtpc_outbox_stats *st);
/* Sets (or with cb NULL, removes) the flush progress callback. */
SMTPC_API void smtpc_outbox_set_progress(smtpc_outbox *ob, smtpc_outbox_progress_cb cb, void *userdata);

typedef struct smtpc_outbox_entry {
    const char *id;
    const char *from;
    size_t nrcpts;
    const char *first_rcpt;
    unsigned attempts;
    int64_t next_attempt; /* seconds since the epoch; 0 = now */
    const char *last_error; /* "" when none */
    bool failed;            /* in failed/ */
} smtpc_outbox_entry;

/* Calls cb for every queued entry (and failed/ ones when include_failed);
 * a non-zero return from cb stops the walk and is returned. */
SMTPC_API int smtpc_outbox_list(smtpc_outbox *ob, bool include_failed,
                                int (*cb)(void *userdata, const smtpc_outbox_entry *e),
                                void *userdata);
/* Makes id (NULL = every entry) due now, moving it back from failed/.
 * Errors: SMTPC_ENOTFOUND, SMTPC_EBUSY (a flush is running), SMTPC_EIO. */
SMTPC_API int smtpc_outbox_retry(smtpc_outbox *ob, const char *id);
/* Removes id from the queue or failed/. Errors: SMTPC_ENOTFOUND,
 * SMTPC_EBUSY (a flush is running), SMTPC_EIO. */
SMTPC_API int smtpc_outbox_drop(smtpc_outbox *ob, const char *id);

/* The consistency check of an outbox (smtpc queue check). */
typedef struct smtpc_outbox_check_report {
    unsigned entries;     /* sound messages in queue/ and failed/ */
    unsigned in_progress; /* temporary files of a writer still running: left alone */
    unsigned leftovers;   /* temporary files of a writer that died (interrupted add or state update) */
    unsigned orphans;     /* state files whose message is gone */
    unsigned damaged;     /* unreadable messages or state files; files that are no entry */
    unsigned repaired;    /* how many of leftovers + orphans + damaged were fixed */
} smtpc_outbox_check_report;

/* Called for each problem found: path relative to the outbox directory,
 * what is wrong, and whether it was repaired. */
typedef void (*smtpc_outbox_check_cb)(void *userdata, const char *path, const char *problem, bool repaired);

/* Examines the outbox under the flush lock (SMTPC_EBUSY while a flush,
 * retry or drop runs) and fills rep. With repair: removes leftovers and
 * orphans (neither holds a message that was ever queued) and moves damaged
 * files aside into DIR/damaged/ (never deleted). Returns 0 when the check
 * ran (problems or not), SMTPC_EBUSY, SMTPC_EIO, SMTPC_ENOMEM;
 * SMTPC_EUNSUPPORTED for a PostgreSQL outbox (its transactions keep it
 * consistent; a dead worker's claims come back when their lease expires). */
SMTPC_API int smtpc_outbox_check(smtpc_outbox *ob, bool repair, smtpc_outbox_check_report *rep,
                                 smtpc_outbox_check_cb cb, void *userdata);
/* ---- the PostgreSQL outbox (smtpc-queue(7)) ----
 * smtpc_outbox_open also takes a postgresql:// (or postgres://) URL in
 * libpq's syntax (?sslmode=, service files and PG* variables apply; an
 * extra ?schema=NAME picks the schema, default smtpc). Every call above
 * works on it; many processes on many machines may add, flush and work at
 * once, each message claimed by one of them (FOR UPDATE SKIP LOCKED, with a
 * lease). Errors of the database: SMTPC_ENETWORK (unreachable, connection
 * lost), SMTPC_EAUTH (refused the user or password), SMTPC_ECONFIG (no
 * schema: run smtpc_outbox_init), SMTPC_ELIBRARY (libpq.so.5 cannot be
 * loaded), SMTPC_EIO (another SQL error; detail in the errmsg);
 * SMTPC_EUNSUPPORTED when this build has no PostgreSQL support. */

/* True when this build has PostgreSQL support. */
SMTPC_API bool smtpc_outbox_has_postgresql(void);
/* Creates or upgrades the schema (idempotent; concurrent calls from several
 * machines are serialized by an advisory lock). A directory: nothing to do. */
SMTPC_API int smtpc_outbox_init(smtpc_outbox *ob);

typedef struct smtpc_outbox_worker_opts {
    unsigned connections; /* SMTP connections of this worker (0 = 1) */
    double rate;          /* messages per second for the whole fleet of workers (0 = unlimited) */
    int64_t lease_ms;     /* a claim's lease, renewed while working (0 = 60 s) */
    int64_t poll_ms;      /* the slow poll behind LISTEN/NOTIFY (0 = 5 s) */
    unsigned batch;       /* messages claimed at once (0 = 64 per connection, at most 1000) */
    const char *name;     /* the worker's name in the workers table (NULL = host:pid) */
} smtpc_outbox_worker_opts;

/* Sends the PostgreSQL outbox's due messages through the bulk driver
 * (conn: the server and every connection setting) until smtpc_outbox_stop:
 * then what is in flight finishes, what was claimed and not sent is
 * released, and it returns 0. wo may be NULL (the defaults). st (may be
 * NULL) counts the outcomes it recorded. The database lost meanwhile: it
 * reconnects and goes on. Errors: SMTPC_EINVAL (a directory outbox), the
 * database's errors above at start, SMTPC_ENOMEM. */
SMTPC_API int smtpc_outbox_work(smtpc_outbox *ob, const smtpc_conn_opts *conn,
                                const smtpc_outbox_worker_opts *wo, smtpc_outbox_stats *st);
/* Asks smtpc_outbox_work to finish (async-signal-safe; any thread). */
SMTPC_API void smtpc_outbox_stop(smtpc_outbox *ob);

typedef struct smtpc_outbox_counts {
    uint64_t queued;           /* waiting (due or not) */
    uint64_t due;              /* of them, due now */
    uint64_t sending;          /* claimed by a worker */
    uint64_t sent;             /* accepted (kept per the retention) */
    uint64_t failed;           /* permanent failures */
    uint64_t sent_last_minute;
    int64_t oldest_due_s;      /* age of the oldest due message in seconds, -1 = none */
    unsigned workers;          /* live workers (heartbeat within their lease) */
} smtpc_outbox_counts;

/* Counts of the PostgreSQL outbox's states. Errors: SMTPC_EINVAL (a
 * directory outbox), the database's errors. */
SMTPC_API int smtpc_outbox_count(smtpc_outbox *ob, smtpc_outbox_counts *out);

typedef struct smtpc_outbox_worker_info {
    const char *name;
    int64_t started;   /* seconds since the epoch */
    int64_t heartbeat; /* seconds since the epoch */
    uint64_t sent, failed;
    bool live;         /* heartbeat within its lease */
} smtpc_outbox_worker_info;

/* Calls cb for every worker registered in the PostgreSQL outbox; a
 * non-zero return from cb stops the walk and is returned. */
SMTPC_API int smtpc_outbox_workers(smtpc_outbox *ob,
                                   int (*cb)(void *userdata, const smtpc_outbox_worker_info *w),
                                   void *userdata);

#ifdef __cplusplus
}
#endif
#endif
