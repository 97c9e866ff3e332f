/* The outbox on PostgreSQL (smtpc-queue(7)): the schema and its upgrades,
 * add, list, retry, drop and flush behind smtpc/outbox.h, and the worker
 * that many processes on many machines run to drain one queue through the
 * bulk driver. A message is claimed (state 'sending', this worker's name, a
 * lease) with FOR UPDATE SKIP LOCKED, so each claim goes to one worker; the
 * lease is renewed while the worker lives, and an expired one puts the
 * message back in the queue (at least once, as the directory outbox: a
 * possible duplicate rather than a possible loss). libpq.so.5 is opened on
 * first use, so programs that never open a postgresql:// outbox never load
 * it (nor the libraries it needs). */
#include "client/deliver.h"
#include "client/outbox_pg.h"

#include <smtpc/async.h>

#include "util/util.h"

#include <stdio.h>
#include <string.h>

bool smtpc__pg_is_url(const char *s)
{
    return s && (!strncmp(s, "postgresql://", 13) || !strncmp(s, "postgres://", 11));
}

#ifndef SMTPC_HAVE_POSTGRESQL

#define OFF_MSG "PostgreSQL support is off in this build of smtpc (built without libpq)"

SMTPC_API bool smtpc_outbox_has_postgresql(void) { return false; }
int smtpc__pg_open(smtpc__pg **out, const char *url, char *errbuf, size_t errlen)
{
    (void)out;
    (void)url;
    if (errbuf && errlen) snprintf(errbuf, errlen, "outbox: %s", OFF_MSG);
    return SMTPC_EUNSUPPORTED;
}
void smtpc__pg_free(smtpc__pg *p) { (void)p; }
const char *smtpc__pg_errmsg(const smtpc__pg *p) { return (void)p, OFF_MSG; }
int smtpc__pg_set_backoff(smtpc__pg *p, int64_t a, double b, int64_t c, unsigned d)
{
    return (void)p, (void)a, (void)b, (void)c, (void)d, SMTPC_EUNSUPPORTED;
}
void smtpc__pg_set_progress(smtpc__pg *p, smtpc_outbox_progress_cb cb, void *ud) { (void)p, (void)cb, (void)ud; }
int smtpc__pg_add_raw(smtpc__pg *p, const char *from, const char *const *rcpts, size_t nrcpts, smtpc_read_cb cb,
                      void *ud, char *id_out, size_t idlen)
{
    return (void)p, (void)from, (void)rcpts, (void)nrcpts, (void)cb, (void)ud, (void)id_out, (void)idlen,
           SMTPC_EUNSUPPORTED;
}
int smtpc__pg_flush(smtpc__pg *p, smtpc_client *const *clients, size_t n, smtpc_outbox_stats *st)
{
    return (void)p, (void)clients, (void)n, (void)st, SMTPC_EUNSUPPORTED;
}
int smtpc__pg_list(smtpc__pg *p, bool f, int (*cb)(void *ud, const smtpc_outbox_entry *e), void *ud)
{
    return (void)p, (void)f, (void)cb, (void)ud, SMTPC_EUNSUPPORTED;
}
int smtpc__pg_retry(smtpc__pg *p, const char *id) { return (void)p, (void)id, SMTPC_EUNSUPPORTED; }
int smtpc__pg_drop(smtpc__pg *p, const char *id) { return (void)p, (void)id, SMTPC_EUNSUPPORTED; }
SMTPC_API int smtpc_outbox_init(smtpc_outbox *ob) { return ob ? 0 : SMTPC_EINVAL; }
SMTPC_API int smtpc_outbox_work(smtpc_outbox *ob, const smtpc_conn_opts *conn, const smtpc_outbox_worker_opts *wo,
                                smtpc_outbox_stats *st)
{
    return (void)ob, (void)conn, (void)wo, (void)st, SMTPC_EINVAL;
}
SMTPC_API void smtpc_outbox_stop(smtpc_outbox *ob) { (void)ob; }
SMTPC_API int smtpc_outbox_count(smtpc_outbox *ob, smtpc_outbox_counts *out)
{
    return (void)ob, (void)out, SMTPC_EINVAL;
}
SMTPC_API int smtpc_outbox_workers(smtpc_outbox *ob, int (*cb)(void *ud, const smtpc_outbox_worker_info *w),
                                   void *ud)
{
    return (void)ob, (void)cb, (void)ud, SMTPC_EINVAL;
}

#else /* SMTPC_HAVE_POSTGRESQL */

#include "client/outbox_pg_schema.h"

#include <libpq-fe.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define LIBPQ "libpq.so.5"
#define BODY_MAX ((size_t)512 << 20) /* a message added through the library */
#define SCHEMA_MAX 63

/* ---- libpq, opened on first use ---- */

static struct {
    PGconn *(*connectdb)(const char *);
    ConnStatusType (*status)(const PGconn *);
    char *(*errorMessage)(const PGconn *);
    void (*finish)(PGconn *);
    void (*reset)(PGconn *);
    PGresult *(*exec)(PGconn *, const char *);
    PGresult *(*execParams)(PGconn *, const char *, int, const Oid *, const char *const *, const int *,
                            const int *, int);
    ExecStatusType (*resultStatus)(const PGresult *);
    char *(*resultErrorField)(const PGresult *, int);
    char *(*resultErrorMessage)(const PGresult *);
    void (*clear)(PGresult *);
    int (*ntuples)(const PGresult *);
    char *(*getvalue)(const PGresult *, int, int);
    int (*getlength)(const PGresult *, int, int);
    int (*getisnull)(const PGresult *, int, int);
    int (*socket)(const PGconn *);
    int (*consumeInput)(PGconn *);
    PGnotify *(*notifies)(PGconn *);
    void (*freemem)(void *);
    char *(*cmdTuples)(PGresult *);
    PQnoticeProcessor (*setNoticeProcessor)(PGconn *, PQnoticeProcessor, void *);
    int (*isBusy)(PGconn *);
    PGresult *(*getResult)(PGconn *);
    PGresult *(*prepare)(PGconn *, const char *, const char *, int, const Oid *);
    PGresult *(*execPrepared)(PGconn *, const char *, int, const char *const *, const int *, const int *, int);
    int (*sendQueryPrepared)(PGconn *, const char *, int, const char *const *, const int *, const int *, int);
    int (*backendPID)(const PGconn *);
} pq;
static pthread_once_t pq_once = PTHREAD_ONCE_INIT;
static char pq_error[256];
static bool pq_ok;

static void pq_load(void)
{
    void *h = dlopen(LIBPQ, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(pq_error, sizeof pq_error, "cannot load " LIBPQ " (needed for the PostgreSQL outbox): %s",
                 e ? e : "?");
        return;
    }
    struct {
        const char *name;
        void **slot;
    } t[] = {
#define S(f, n) {n, (void **)&pq.f}
        S(connectdb, "PQconnectdb"),       S(status, "PQstatus"),
        S(errorMessage, "PQerrorMessage"), S(finish, "PQfinish"),
        S(reset, "PQreset"),               S(execParams, "PQexecParams"),
        S(exec, "PQexec"),
        S(resultStatus, "PQresultStatus"), S(resultErrorField, "PQresultErrorField"),
        S(resultErrorMessage, "PQresultErrorMessage"), S(clear, "PQclear"),
        S(ntuples, "PQntuples"),           S(getvalue, "PQgetvalue"),
        S(getlength, "PQgetlength"),       S(getisnull, "PQgetisnull"),
        S(socket, "PQsocket"),             S(consumeInput, "PQconsumeInput"),
        S(notifies, "PQnotifies"),         S(freemem, "PQfreemem"),
        S(cmdTuples, "PQcmdTuples"),       S(setNoticeProcessor, "PQsetNoticeProcessor"),
        S(isBusy, "PQisBusy"),
        S(getResult, "PQgetResult"),       S(prepare, "PQprepare"),
        S(execPrepared, "PQexecPrepared"), S(sendQueryPrepared, "PQsendQueryPrepared"),
        S(backendPID, "PQbackendPID"),
#undef S
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        *t[i].slot = dlsym(h, t[i].name);
        if (!*t[i].slot) {
            snprintf(pq_error, sizeof pq_error, LIBPQ " has no %s", t[i].name);
            return;
        }
    }
    pq_ok = true;
}

SMTPC_API bool smtpc_outbox_has_postgresql(void) { return true; }

/* ---- the handle ---- */

enum {
    Q_CLAIM, Q_OUTCOME, Q_SPLIT, Q_REQUEUE, Q_RENEW, Q_ENQUEUE, Q_LIST, Q_RETRY, Q_RETRY_ALL, Q_DROP,
    Q_STATE_OF, Q_HELLO, Q_BYE, Q_RETAIN, Q_COUNT, Q_WORKERS, Q_LIVE, Q_ORPHANS, Q_N
};

static const char *const q_tmpl[Q_N] = {
    [Q_CLAIM] = "WITH c AS (SELECT id FROM {S}.messages WHERE state = 'queued' AND not_before <= now()"
                " ORDER BY priority DESC, not_before, id LIMIT $1 FOR UPDATE SKIP LOCKED)"
                " UPDATE {S}.messages m SET state = 'sending', worker = $2,"
                " lease_until = now() + make_interval(secs => $3::float8) FROM c WHERE m.id = c.id"
                " RETURNING m.id::text, m.sender, array_to_string(m.recipients, E'\\n'), m.body,"
                " m.attempts::text",
    [Q_OUTCOME] = "UPDATE {S}.messages m SET state = u.st, attempts = m.attempts + u.inc,"
                  " not_before = CASE WHEN u.st = 'queued' THEN now() + make_interval(secs => u.delay)"
                  " ELSE m.not_before END, last_code = coalesce(u.code, m.last_code),"
                  " last_error = coalesce(u.err, m.last_error), rcpt_codes = coalesce(u.codes::int[], m.rcpt_codes),"
                  " done_at = CASE WHEN u.st IN ('sent', 'failed') THEN now() END, worker = NULL, lease_until = NULL"
                  " FROM unnest($1::bigint[], $2::text[], $3::int[], $4::float8[], $5::int[], $6::text[],"
                  " $7::text[]) AS u(id, st, inc, delay, code, err, codes)"
                  /* "IS TRUE": not the partial index of the sending rows (its
                   * predicate), which the statistics of a queue analyzed
                   * while its rows were queued make look empty: the planner
                   * then hashes every sending row, and every dead entry of
                   * that index, for each batch of outcomes, instead of
                   * looking each id up by primary key */
                  " WHERE m.id = u.id AND (m.state = 'sending') IS TRUE AND m.worker = $8",
    [Q_SPLIT] = "INSERT INTO {S}.messages (sender, recipients, body, priority, state, attempts, not_before,"
                " last_code, last_error, parent, done_at) SELECT sender, $2::text[], body, priority, $3,"
                " attempts + 1, now() + make_interval(secs => $4::float8), $5::int, $6, id,"
                " CASE WHEN $3 = 'failed' THEN now() END FROM {S}.messages WHERE id = $1::bigint"
                " AND state = 'sending' AND worker = $7",
    [Q_REQUEUE] = "UPDATE {S}.messages SET state = 'queued', attempts = attempts + 1, last_error ="
                  " 'the lease of worker ' || coalesce(worker, '?') || ' expired: outcome unknown, queued again',"
                  " worker = NULL, lease_until = NULL WHERE state = 'sending' AND lease_until < now()",
    [Q_ORPHANS] = "UPDATE {S}.messages SET state = 'queued', attempts = attempts + 1, last_error ="
                   " 'the outcome was not recorded (the database connection was lost): queued again',"
                   " worker = NULL, lease_until = NULL WHERE state = 'sending' AND worker = $1",
    [Q_RENEW] = "WITH w AS (UPDATE {S}.workers SET heartbeat = now(), lease_s = $2::float8, sent = $3::bigint,"
                " failed = $4::bigint WHERE name = $1 RETURNING 1)"
                " UPDATE {S}.messages SET lease_until = now() + make_interval(secs => $2::float8)"
                " WHERE state = 'sending' AND worker = $1",
    [Q_ENQUEUE] = "SELECT {S}.enqueue($1, $2::text[], $3::bytea)::text",
    [Q_LIST] = "SELECT id::text, sender, cardinality(recipients)::text, recipients[1], attempts::text,"
               " CASE WHEN state = 'queued' AND not_before > now() THEN extract(epoch FROM not_before)::bigint"
               " ELSE 0 END::text, last_error, state FROM {S}.messages"
               " WHERE id > $1::bigint AND (state IN ('queued', 'sending') OR ($2 AND state = 'failed'))"
               " ORDER BY {S}.messages.id LIMIT 1000", /* the column, not the text in the output */
    [Q_RETRY] = "UPDATE {S}.messages SET state = 'queued', not_before = now(), done_at = NULL"
                " WHERE id = $1::bigint AND state IN ('queued', 'failed')",
    [Q_RETRY_ALL] = "UPDATE {S}.messages SET state = 'queued', not_before = now(), done_at = NULL"
                    " WHERE state IN ('queued', 'failed')",
    [Q_DROP] = "DELETE FROM {S}.messages WHERE id = $1::bigint AND state IN ('queued', 'failed')",
    [Q_STATE_OF] = "SELECT state FROM {S}.messages WHERE id = $1::bigint",
    [Q_HELLO] = "INSERT INTO {S}.workers (name, lease_s) VALUES ($1, $2::float8) ON CONFLICT (name) DO UPDATE"
                " SET started_at = now(), heartbeat = now(), lease_s = $2::float8, sent = 0, failed = 0",
    [Q_BYE] = "DELETE FROM {S}.workers WHERE name = $1",
    [Q_RETAIN] = "WITH b AS (UPDATE {S}.messages SET body = NULL WHERE id IN (SELECT id FROM {S}.messages"
                 " WHERE state = 'sent' AND body IS NOT NULL AND done_at < now() - (SELECT value::interval"
                 " FROM {S}.settings WHERE key = 'body_retention') LIMIT 10000) RETURNING 1)"
                 " DELETE FROM {S}.messages WHERE id IN (SELECT id FROM {S}.messages WHERE state = 'sent'"
                 " AND done_at < now() - (SELECT value::interval FROM {S}.settings WHERE key = 'row_retention')"
                 " LIMIT 10000)",
    [Q_COUNT] = "SELECT count(*) FILTER (WHERE state = 'queued')::text,"
                " count(*) FILTER (WHERE state = 'queued' AND not_before <= now())::text,"
                " count(*) FILTER (WHERE state = 'sending')::text, count(*) FILTER (WHERE state = 'sent')::text,"
                " count(*) FILTER (WHERE state = 'failed')::text,"
                " count(*) FILTER (WHERE state = 'sent' AND done_at > now() - interval '1 minute')::text,"
                " coalesce(extract(epoch FROM now() - min(not_before) FILTER (WHERE state = 'queued'"
                " AND not_before <= now()))::bigint, -1)::text,"
                " (SELECT count(*) FROM {S}.workers WHERE heartbeat > now() - make_interval(secs => lease_s))::text"
                " FROM {S}.messages",
    [Q_WORKERS] = "SELECT name, extract(epoch FROM started_at)::bigint::text,"
                  " extract(epoch FROM heartbeat)::bigint::text, sent::text, failed::text,"
                  " (heartbeat > now() - make_interval(secs => lease_s))::text FROM {S}.workers ORDER BY name",
    [Q_LIVE] = "SELECT greatest(count(*), 1)::text FROM {S}.workers"
               " WHERE heartbeat > now() - make_interval(secs => lease_s)",
};

struct smtpc__pg {
    char *conninfo; /* the URL without our own parameters */
    char schema[SCHEMA_MAX + 1];
    char *q[Q_N];
    PGconn *conn; /* the handle's connection (add, list, retry, drop, the worker's claims) */
    int64_t initial_ms, max_ms;
    double factor;
    unsigned max_attempts;
    smtpc_outbox_progress_cb progress;
    void *progress_ud;
    atomic_bool stop;
    int stop_pipe[2];
    smtpc_bulk *_Atomic bulk; /* the worker's current run, for smtpc_outbox_stop */
    smtpc__errmsg err;
    /* the statements prepared on each server session (see prepare) */
    pthread_mutex_t prep_mu;
    struct {
        const PGconn *c;
        int pid;       /* the session's backend: a reset or a reconnect starts another */
        unsigned mask; /* 1 << Q_*: prepared there */
    } prep[64];        /* a worker uses 2 connections, a flush 1 per client */
    unsigned prep_next;
};

static void quiet_notice(void *arg, const char *msg) { (void)arg, (void)msg; }

/* A copy of tmpl with every {S} replaced by the schema's name. */
static char *expand(const char *tmpl, const char *schema)
{
    smtpc__buf b;
    smtpc__buf_init(&b, 0);
    const char *p = tmpl, *s;
    int rc = 0;
    while (!rc && (s = strstr(p, "{S}"))) {
        rc = smtpc__buf_append(&b, p, (size_t)(s - p));
        if (!rc) rc = smtpc__buf_append_str(&b, schema);
        p = s + 3;
    }
    if (!rc) rc = smtpc__buf_append(&b, p, strlen(p) + 1);
    if (rc) {
        smtpc__buf_free(&b);
        return NULL;
    }
    return (char *)b.data;
}

/* Takes our own "schema=NAME" out of the URL's query (libpq refuses
 * parameters it does not know). */
static int split_url(smtpc__pg *p, const char *url, char *errbuf, size_t errlen)
{
    smtpc__strlcpy(p->schema, "smtpc", sizeof p->schema);
    p->conninfo = smtpc__strdup(url);
    if (!p->conninfo) return SMTPC_ENOMEM;
    char *q = strchr(p->conninfo, '?');
    if (!q) return 0;
    char *w = q; /* rebuilds the query in place without schema= */
    char *s = q + 1;
    bool first = true;
    while (*s) {
        char *e = strchr(s, '&');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n > 7 && !strncmp(s, "schema=", 7)) {
            size_t k = n - 7;
            bool ok = k <= SCHEMA_MAX && !(s[7] >= '0' && s[7] <= '9');
            for (size_t i = 0; ok && i < k; i++)
                ok = (s[7 + i] >= 'a' && s[7 + i] <= 'z') || (s[7 + i] >= '0' && s[7 + i] <= '9') || s[7 + i] == '_';
            if (!ok) {
                if (errbuf && errlen)
                    snprintf(errbuf, errlen, "outbox: schema= takes a lower-case name (a-z, 0-9, _; up to 63)");
                return SMTPC_EINVAL;
            }
            memcpy(p->schema, s + 7, k);
            p->schema[k] = '\0';
        } else {
            *w++ = first ? '?' : '&';
            memmove(w, s, n);
            w += n;
            first = false;
        }
        s += n + (e ? 1 : 0);
    }
    *w = '\0';
    return 0;
}

/* The connection's error as an SMTPC_E* code: refused credentials, or the
 * server out of reach. */
static int conn_error(smtpc__errmsg *err, PGconn *c, const char *what)
{
    const char *m = c ? pq.errorMessage(c) : "out of memory";
    char one[400];
    smtpc__strlcpy(one, m ? m : "", sizeof one);
    size_t n = strlen(one);
    while (n && (one[n - 1] == '\n' || one[n - 1] == ' ')) one[--n] = '\0';
    for (char *x = one; *x; x++)
        if (*x == '\n') *x = ' ';
    int code = strstr(one, "password") || strstr(one, "authentication") || strstr(one, "role \"")
                   ? SMTPC_EAUTH
                   : SMTPC_ENETWORK;
    return smtpc__err(err, code, "PostgreSQL outbox: %s: %s", what, one);
}

static PGconn *connect_db(smtpc__pg *p, smtpc__errmsg *err, int *rc)
{
    PGconn *c = pq.connectdb(p->conninfo);
    if (!c || pq.status(c) != CONNECTION_OK) {
        *rc = conn_error(err, c, "cannot connect");
        if (c) pq.finish(c);
        return NULL;
    }
    pq.setNoticeProcessor(c, quiet_notice, NULL);
    *rc = 0;
    return c;
}

/* Runs a statement; NULL (with the error in err and *rc) unless it
 * succeeded. fmt: 1 for binary results (text columns as their bytes, bytea
 * raw). */
static PGresult *checked(smtpc__pg *p, PGconn *c, smtpc__errmsg *err, int *rc, PGresult *r);
static void prep_forget(smtpc__pg *p, const PGconn *c);

static PGresult *run(smtpc__pg *p, PGconn *c, smtpc__errmsg *err, int *rc, const char *sql, int n,
                     const char *const *vals, const int *lens, const int *fmts, int resfmt)
{
    /* without parameters: the simple protocol, which takes several statements */
    PGresult *r = n == 0 && resfmt == 0 ? pq.exec(c, sql) : pq.execParams(c, sql, n, NULL, vals, lens, fmts, resfmt);
    return checked(p, c, err, rc, r);
}

/* How long the reader of a large result lets it pile up in the socket
 * before reading on (see run_big). */
#define BIG_READ_PAUSE_NS 500000L

/* run for a prepared statement (stmt: its name) with a large result (a
 * claim: hundreds of bodies), binary results. A blocking PQexec* wakes
 * up for every piece the server writes (8 KB each from PostgreSQL), two
 * context switches per message on the CPU that also sends them; here, once the socket is
 * drained, the reader pauses for a moment so that the next read takes
 * what the server wrote meanwhile (up to a socket buffer's worth). The
 * server waits for nothing but a full socket buffer. */
static PGresult *run_big(smtpc__pg *p, PGconn *c, smtpc__errmsg *err, int *rc, const char *stmt, int n,
                         const char *const *vals)
{
    PGresult *last = NULL;
    if (pq.sendQueryPrepared(c, stmt, n, vals, NULL, NULL, 1)) {
        int fd = pq.socket(c);
        for (;;) {
            while (pq.isBusy(c)) {
                struct pollfd pf = {fd, POLLIN, 0};
                if (poll(&pf, 1, 0) == 0) {
                    struct timespec ts = {0, BIG_READ_PAUSE_NS};
                    nanosleep(&ts, NULL);
                    if (poll(&pf, 1, -1) < 0 && errno != EINTR) break;
                }
                if (!pq.consumeInput(c)) break; /* PQgetResult reports it */
            }
            PGresult *r = pq.getResult(c);
            if (!r) break;
            /* as PQexec: the last result, or the first error */
            ExecStatusType ls = last ? pq.resultStatus(last) : PGRES_EMPTY_QUERY;
            if (last && (ls == PGRES_FATAL_ERROR || ls == PGRES_NONFATAL_ERROR)) {
                pq.clear(r);
            } else {
                if (last) pq.clear(last);
                last = r;
            }
        }
    }
    return checked(p, c, err, rc, last);
}

/* The status of a statement's result r: r, or NULL with the error in err
 * and *rc (r cleared). */
static PGresult *checked(smtpc__pg *p, PGconn *c, smtpc__errmsg *err, int *rc, PGresult *r)
{
    ExecStatusType st = r ? pq.resultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        *rc = 0;
        return r;
    }
    const char *state = r ? pq.resultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? pq.resultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (state && !strcmp(state, "26000")) prep_forget(p, c); /* prepared here once: prepared again next time */
    if (!state || pq.status(c) != CONNECTION_OK) {
        *rc = conn_error(err, c, "connection lost");
    } else if (!strcmp(state, "3F000") || !strcmp(state, "42P01") || !strcmp(state, "42883")) {
        *rc = smtpc__err(err, SMTPC_ECONFIG, "PostgreSQL outbox: no schema %s (%s): run smtpc queue init",
                         p->schema, msg ? msg : state);
    } else if (!strncmp(state, "28", 2) || !strncmp(state, "42501", 5)) {
        *rc = smtpc__err(err, SMTPC_EAUTH, "PostgreSQL outbox: %s", msg ? msg : state);
    } else if (!strncmp(state, "22", 2) || !strncmp(state, "23", 2)) {
        *rc = smtpc__err(err, SMTPC_EINVAL, "PostgreSQL outbox: %s", msg ? msg : state);
    } else if (!strncmp(state, "08", 2) || !strncmp(state, "57P", 3)) {
        *rc = smtpc__err(err, SMTPC_ENETWORK, "PostgreSQL outbox: %s", msg ? msg : state);
    } else {
        *rc = smtpc__err(err, SMTPC_EIO, "PostgreSQL outbox: %s (SQLSTATE %s)", msg ? msg : "error", state);
    }
    if (r) pq.clear(r);
    (void)p;
    return NULL;
}

/* ---- prepared statements ----
 * The claim and the outcome run for every batch; planning them each time
 * cost the server about 1.4 µs per message. They are prepared once per
 * server session, as "smtpc_q<N>". A session is known by its connection and
 * its backend's PID (PQreset and reconnects start new ones); a connection
 * the slots forgot (more than 64 in use) is asked whether the statement is
 * there. */

/* Whether statement q is known prepared on c's session (pid); set: it is now. */
static bool prep_known(smtpc__pg *p, const PGconn *c, int pid, int q, bool set)
{
    const size_t ns = sizeof p->prep / sizeof *p->prep;
    bool known = false;
    pthread_mutex_lock(&p->prep_mu);
    size_t i = 0;
    while (i < ns && p->prep[i].c != c) i++;
    if (i == ns && set) {
        i = p->prep_next++ % ns;
        p->prep[i].c = c;
        p->prep[i].pid = 0;
    }
    if (i < ns) {
        if (p->prep[i].pid != pid) {
            p->prep[i].pid = pid;
            p->prep[i].mask = 0;
        }
        known = (p->prep[i].mask >> q) & 1u;
        if (set) p->prep[i].mask |= 1u << q;
    }
    pthread_mutex_unlock(&p->prep_mu);
    return known;
}

static void prep_forget(smtpc__pg *p, const PGconn *c)
{
    pthread_mutex_lock(&p->prep_mu);
    for (size_t i = 0; i < sizeof p->prep / sizeof *p->prep; i++)
        if (p->prep[i].c == c) p->prep[i].mask = 0;
    pthread_mutex_unlock(&p->prep_mu);
}

/* Statement q (n parameters) prepared on c's session; its name in name. */
static int prepare(smtpc__pg *p, PGconn *c, smtpc__errmsg *err, int q, int n, char name[16])
{
    snprintf(name, 16, "smtpc_q%d", q);
    int pid = pq.backendPID(c);
    if (prep_known(p, c, pid, q, false)) return 0;
    int rc;
    const char *v[1] = {name};
    PGresult *r = run(p, c, err, &rc, "SELECT 1 FROM pg_prepared_statements WHERE name = $1", 1, v, NULL, NULL, 0);
    if (!r) return rc;
    bool there = pq.ntuples(r) > 0;
    pq.clear(r);
    if (!there) {
        r = checked(p, c, err, &rc, pq.prepare(c, name, p->q[q], n, NULL));
        if (!r) return rc;
        pq.clear(r);
    }
    prep_known(p, c, pid, q, true);
    return 0;
}

/* A statement without results. */
static int exec0(smtpc__pg *p, PGconn *c, smtpc__errmsg *err, const char *sql, int n, const char *const *vals)
{
    int rc;
    PGresult *r = run(p, c, err, &rc, sql, n, vals, NULL, NULL, 0);
    if (r) pq.clear(r);
    return rc;
}

/* Commits, or after an error (rc) rolls back keeping that error. */
static int end_txn(smtpc__pg *p, PGconn *c, smtpc__errmsg *err, int rc)
{
    if (!rc) return exec0(p, c, err, "COMMIT", 0, NULL);
    smtpc__errmsg keep = *err;
    exec0(p, c, err, "ROLLBACK", 0, NULL);
    *err = keep;
    return rc;
}

int smtpc__pg_open(smtpc__pg **out, const char *url, char *errbuf, size_t errlen)
{
    pthread_once(&pq_once, pq_load);
    if (!pq_ok) {
        if (errbuf && errlen) snprintf(errbuf, errlen, "outbox: %s", pq_error);
        return SMTPC_ELIBRARY;
    }
    smtpc__pg *p = calloc(1, sizeof *p);
    if (!p) return SMTPC_ENOMEM;
    pthread_mutex_init(&p->prep_mu, NULL);
    p->stop_pipe[0] = p->stop_pipe[1] = -1;
    p->initial_ms = 60000;
    p->factor = 2.0;
    p->max_ms = 3600000;
    int rc = split_url(p, url, errbuf, errlen);
    for (int i = 0; !rc && i < Q_N; i++)
        if (!(p->q[i] = expand(q_tmpl[i], p->schema))) rc = SMTPC_ENOMEM;
    if (!rc && pipe(p->stop_pipe)) rc = SMTPC_EIO;
    for (int i = 0; !rc && i < 2; i++)
        if (fcntl(p->stop_pipe[i], F_SETFD, FD_CLOEXEC) || fcntl(p->stop_pipe[i], F_SETFL, O_NONBLOCK)) rc = SMTPC_EIO;
    if (!rc) {
        p->conn = connect_db(p, &p->err, &rc);
        if (rc && errbuf && errlen) smtpc__strlcpy(errbuf, p->err.text, errlen);
    }
    if (rc) {
        smtpc__pg_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void smtpc__pg_free(smtpc__pg *p)
{
    if (!p) return;
    if (p->conn) pq.finish(p->conn);
    for (int i = 0; i < Q_N; i++) free(p->q[i]);
    smtpc__free_secret(p->conninfo); /* may hold a password */
    if (p->stop_pipe[0] >= 0) close(p->stop_pipe[0]);
    if (p->stop_pipe[1] >= 0) close(p->stop_pipe[1]);
    pthread_mutex_destroy(&p->prep_mu);
    free(p);
}

const char *smtpc__pg_errmsg(const smtpc__pg *p) { return p->err.text; }

int smtpc__pg_set_backoff(smtpc__pg *p, int64_t initial_ms, double factor, int64_t max_ms, unsigned max_attempts)
{
    p->initial_ms = initial_ms;
    p->factor = factor;
    p->max_ms = max_ms;
    p->max_attempts = max_attempts;
    return 0;
}

void smtpc__pg_set_progress(smtpc__pg *p, smtpc_outbox_progress_cb cb, void *ud)
{
    p->progress = cb;
    p->progress_ud = ud;
}

/* ---- PostgreSQL array literals ---- */

/* Appends s as a double-quoted array element. */
static int arr_str(smtpc__buf *b, const char *s)
{
    int rc = smtpc__buf_append(b, "\"", 1);
    for (; !rc && *s; s++) {
        if (*s == '"' || *s == '\\') rc = smtpc__buf_append(b, "\\", 1);
        if (!rc) rc = smtpc__buf_append(b, s, 1);
    }
    return rc ? rc : smtpc__buf_append(b, "\"", 1);
}

static int arr_strs(smtpc__buf *b, const char *const *v, size_t n)
{
    int rc = smtpc__buf_append(b, "{", 1);
    for (size_t i = 0; !rc && i < n; i++) {
        if (i) rc = smtpc__buf_append(b, ",", 1);
        if (!rc) rc = arr_str(b, v[i]);
    }
    return rc ? rc : smtpc__buf_append(b, "}", 2); /* with the NUL */
}

static bool bad_addr(const char *a) { return !a || smtpc__has_crlfnul(a, strlen(a)); }

/* ---- add ---- */

int smtpc__pg_add_raw(smtpc__pg *p, const char *from, const char *const *rcpts, size_t nrcpts, smtpc_read_cb cb,
                      void *ud, char *id_out, size_t idlen)
{
    if (!cb || bad_addr(from) || !rcpts || nrcpts == 0)
        return smtpc__err(&p->err, SMTPC_EINVAL, "outbox: no sender, recipient or body");
    for (size_t i = 0; i < nrcpts; i++)
        if (bad_addr(rcpts[i]) || !*rcpts[i]) return smtpc__err(&p->err, SMTPC_EINVAL, "outbox: bad recipient %zu", i);
    smtpc__buf body, arr;
    smtpc__buf_init(&body, BODY_MAX);
    smtpc__buf_init(&arr, 0);
    int rc = arr_strs(&arr, rcpts, nrcpts);
    for (;;) {
        if (rc || (rc = smtpc__buf_reserve(&body, 65536))) break;
        ssize_t k = cb(ud, body.data + body.len, body.cap - body.len);
        if (k < 0) {
            rc = smtpc__err(&p->err, (int)k, "outbox: reading the message failed");
            break;
        }
        if (k == 0) break;
        body.len += (size_t)k;
    }
    if (rc == SMTPC_ELIMIT) smtpc__err(&p->err, rc, "outbox: the message is over %zu bytes", BODY_MAX);
    if (!rc) {
        const char *vals[3] = {from, (const char *)arr.data, (const char *)body.data};
        int lens[3] = {0, 0, (int)body.len};
        int fmts[3] = {0, 0, 1};
        if (!vals[2]) vals[2] = "";
        PGresult *r = run(p, p->conn, &p->err, &rc, p->q[Q_ENQUEUE], 3, vals, lens, fmts, 0);
        if (r) {
            if (id_out && idlen) smtpc__strlcpy(id_out, pq.getvalue(r, 0, 0), idlen);
            pq.clear(r);
        }
    }
    smtpc__buf_free(&body);
    smtpc__buf_free(&arr);
    return rc;
}

/* ---- init ---- */

SMTPC_API int smtpc_outbox_init(smtpc_outbox *ob)
{
    if (!ob) return SMTPC_EINVAL;
    smtpc__pg *p = smtpc__outbox_pg(ob);
    if (!p) return 0; /* a directory is made by open */
    char lock[160];
    snprintf(lock, sizeof lock, "SELECT pg_advisory_xact_lock(hashtext('smtpc schema %s'))", p->schema);
    char *pre[] = {expand("CREATE SCHEMA IF NOT EXISTS {S}", p->schema),
                   expand("CREATE TABLE IF NOT EXISTS {S}.settings (key text PRIMARY KEY, value text NOT NULL)",
                          p->schema),
                   expand("SELECT value FROM {S}.settings WHERE key = 'schema_version'", p->schema),
                   expand("INSERT INTO {S}.settings VALUES ('schema_version', $1) ON CONFLICT (key)"
                          " DO UPDATE SET value = $1",
                          p->schema)};
    int rc = 0;
    for (size_t i = 0; i < 4; i++)
        if (!pre[i]) rc = SMTPC_ENOMEM;
    if (!rc) rc = exec0(p, p->conn, &p->err, "BEGIN", 0, NULL);
    if (!rc) rc = exec0(p, p->conn, &p->err, lock, 0, NULL);
    if (!rc) rc = exec0(p, p->conn, &p->err, pre[0], 0, NULL);
    if (!rc) rc = exec0(p, p->conn, &p->err, pre[1], 0, NULL);
    uint64_t have = 0;
    if (!rc) {
        PGresult *r = run(p, p->conn, &p->err, &rc, pre[2], 0, NULL, NULL, NULL, 0);
        if (r && pq.ntuples(r)) {
            const char *v = pq.getvalue(r, 0, 0);
            if (smtpc__parse_u64(v, strlen(v), &have)) have = 0;
        }
        if (r) pq.clear(r);
    }
    size_t nsteps = sizeof smtpc__pg_steps / sizeof *smtpc__pg_steps;
    if (!rc && have > nsteps)
        rc = smtpc__err(&p->err, SMTPC_ECONFIG,
                        "PostgreSQL outbox: schema %s is version %llu, newer than this smtpc knows (%zu)", p->schema,
                        (unsigned long long)have, nsteps);
    for (size_t v = (size_t)have; !rc && v < nsteps; v++) {
        char *sql = expand(smtpc__pg_steps[v], p->schema);
        rc = sql ? exec0(p, p->conn, &p->err, sql, 0, NULL) : SMTPC_ENOMEM;
        free(sql);
    }
    if (!rc && have < nsteps) {
        char vs[24];
        snprintf(vs, sizeof vs, "%zu", nsteps);
        const char *vals[1] = {vs};
        rc = exec0(p, p->conn, &p->err, pre[3], 1, vals);
    }
    rc = end_txn(p, p->conn, &p->err, rc);
    for (size_t i = 0; i < 4; i++) free(pre[i]);
    return rc;
}

/* ---- outcomes ---- */

static int64_t backoff_s(const smtpc__pg *p, unsigned attempts)
{
    double d = (double)p->initial_ms;
    for (unsigned k = 1; k < attempts && d < (double)p->max_ms; k++) d *= p->factor;
    int64_t dm = d > (double)p->max_ms ? p->max_ms : (int64_t)d;
    return (dm + 999) / 1000;
}

/* One message's outcome, to be written with others in one statement. */
typedef struct outcome {
    int64_t id;
    const char *st; /* "sent", "failed", "queued" */
    int inc;        /* attempts to add */
    int64_t delay;  /* seconds until the next attempt (queued) */
    int code;       /* 0 = keep */
    char *err;      /* NULL = keep; no_error: '' */
    char *codes;    /* "{250,550}" or NULL */
    int code1;      /* the one recipient's code, when codes is NULL (0: none) */
} outcome;

/* The error text of a message sent (not allocated). */
static char no_error[1];

static void outcome_free(outcome *o)
{
    if (o->err != no_error) free(o->err);
    free(o->codes);
}

/* ",123" (sep and the number): one per column per message. */
static int buf_int(smtpc__buf *b, const char *sep, int64_t v)
{
    int rc = smtpc__buf_append_str(b, sep);
    return rc ? rc : smtpc__buf_append_int(b, v);
}

typedef struct outcomes {
    outcome *v;
    size_t n, cap;
} outcomes;

static void outcomes_clear(outcomes *o)
{
    for (size_t i = 0; i < o->n; i++) outcome_free(&o->v[i]);
    o->n = 0;
}

static int outcomes_push(outcomes *o, const outcome *x)
{
    if (o->n == o->cap) {
        size_t nc = o->cap ? o->cap * 2 : 64;
        outcome *nv = realloc(o->v, nc * sizeof *nv);
        if (!nv) return SMTPC_ENOMEM;
        o->v = nv;
        o->cap = nc;
    }
    o->v[o->n++] = *x;
    return 0;
}

/* Writes the outcomes in one statement (guarded by worker name: a message
 * whose lease expired and went to another worker is not touched). */
static int outcomes_write(smtpc__pg *p, PGconn *c, smtpc__errmsg *err, outcomes *o, const char *worker)
{
    if (!o->n) return 0;
    smtpc__buf a[7];
    for (int k = 0; k < 7; k++) smtpc__buf_init(&a[k], 0);
    int rc = 0;
    for (size_t i = 0; !rc && i < o->n; i++) {
        const outcome *x = &o->v[i];
        const char *sep = i ? "," : "{";
        rc = buf_int(&a[0], sep, x->id);
        if (!rc) rc = smtpc__buf_append_str(&a[1], sep);
        if (!rc) rc = smtpc__buf_append_str(&a[1], x->st);
        if (!rc) rc = buf_int(&a[2], sep, x->inc);
        if (!rc) rc = buf_int(&a[3], sep, x->delay);
        if (!rc) rc = smtpc__buf_append_str(&a[4], sep);
        if (!rc) rc = x->code ? smtpc__buf_append_int(&a[4], x->code) : smtpc__buf_append_str(&a[4], "NULL");
        if (!rc) rc = smtpc__buf_append_str(&a[5], sep);
        if (!rc) rc = x->err ? arr_str(&a[5], x->err) : smtpc__buf_append_str(&a[5], "NULL");
        if (!rc) rc = smtpc__buf_append_str(&a[6], sep);
        if (!rc && x->codes) rc = arr_str(&a[6], x->codes);
        else if (!rc && x->code1) {
            rc = smtpc__buf_append_str(&a[6], "\"{");
            if (!rc) rc = buf_int(&a[6], "", x->code1);
            if (!rc) rc = smtpc__buf_append_str(&a[6], "}\"");
        } else if (!rc) rc = smtpc__buf_append_str(&a[6], "NULL");
    }
    for (int k = 0; !rc && k < 7; k++) rc = smtpc__buf_append(&a[k], "}", 2);
    if (!rc) {
        const char *vals[8];
        for (int k = 0; k < 7; k++) vals[k] = (const char *)a[k].data;
        vals[7] = worker;
        char name[16];
        rc = prepare(p, c, err, Q_OUTCOME, 8, name);
        PGresult *r = rc ? NULL : checked(p, c, err, &rc, pq.execPrepared(c, name, 8, vals, NULL, NULL, 0));
        if (r) pq.clear(r);
    } else {
        rc = smtpc__err(err, rc, "PostgreSQL outbox: out of memory");
    }
    for (int k = 0; k < 7; k++) smtpc__buf_free(&a[k]);
    if (!rc) outcomes_clear(o);
    return rc;
}

/* The recipients a partly accepted message was refused for: new entries
 * (4xx: queued with backoff; 5xx: failed) made before the original is
 * marked sent, in the same transaction. */
static int split_refused(smtpc__pg *p, PGconn *c, smtpc__errmsg *err, int64_t id, const char *const *rcpts,
                         size_t n, const int *codes, const char *const *texts, unsigned attempts,
                         const char *worker)
{
    const char **sub = calloc(n ? n : 1, sizeof *sub);
    if (!sub) return SMTPC_ENOMEM;
    int rc = 0;
    for (int perm = 0; !rc && perm < 2; perm++) {
        size_t k = 0;
        int first = 0;
        const char *text = NULL;
        for (size_t i = 0; i < n; i++) {
            if (codes[i] / 100 == 2 || (codes[i] / 100 == 5) != (perm == 1)) continue;
            if (!first) first = codes[i], text = texts ? texts[i] : NULL;
            sub[k++] = rcpts[i];
        }
        if (!k) continue;
        smtpc__buf arr;
        smtpc__buf_init(&arr, 0);
        rc = arr_strs(&arr, sub, k);
        char ids[24], delay[24], code[16], e[600];
        snprintf(ids, sizeof ids, "%lld", (long long)id);
        snprintf(delay, sizeof delay, "%lld", perm ? 0LL : (long long)backoff_s(p, attempts + 1));
        snprintf(code, sizeof code, "%d", first);
        if (text) snprintf(e, sizeof e, "recipient refused: %d %s", first, text);
        else snprintf(e, sizeof e, "recipient refused: %d (the reply to RCPT TO)", first);
        const char *vals[7] = {ids, (const char *)arr.data, perm ? "failed" : "queued", delay, code, e, worker};
        if (!rc) rc = exec0(p, c, err, p->q[Q_SPLIT], 7, vals);
        smtpc__buf_free(&arr);
    }
    free(sub);
    return rc;
}

/* What a delivery's result becomes: the directory outbox's rules. */
static void classify(const smtpc__pg *p, outcome *o, unsigned attempts, int error, bool sent, bool canceled,
                     smtpc_outbox_stats *st)
{
    o->inc = 1;
    o->delay = 0;
    if (sent) {
        o->st = "sent";
        st->sent++;
    } else if (canceled) {
        o->st = "queued"; /* released: never tried */
        o->inc = 0;
    } else {
        /* SMTPC_EUNKNOWN (lost after the final dot) is kept and tried again
         * later like a 4xx: a duplicate rather than a loss */
        bool perm = error == SMTPC_EPERMFAIL || (p->max_attempts && attempts + 1 >= p->max_attempts);
        o->st = perm ? "failed" : "queued";
        if (!perm) o->delay = backoff_s(p, attempts + 1);
        if (perm) st->failed++;
        else st->deferred++;
    }
}

static char *codes_text(const int *codes, size_t n)
{
    if (!codes || !n) return NULL;
    smtpc__buf b;
    smtpc__buf_init(&b, 0);
    int rc = 0;
    for (size_t i = 0; !rc && i < n; i++) rc = buf_int(&b, i ? "," : "{", codes[i]);
    if (!rc) rc = smtpc__buf_append(&b, "}", 2);
    if (rc) {
        smtpc__buf_free(&b);
        return NULL;
    }
    return (char *)b.data;
}

/* ---- claimed messages ---- */

typedef struct item {
    int64_t id;
    const char *from;
    const char **rcpts;
    size_t nrcpts;
    const void *body;
    size_t len;
    unsigned attempts;
    struct claim *batch;
} item;

/* One claim: its rows (bodies borrowed from the result) until every
 * message is reported. */
typedef struct claim {
    PGresult *res;
    item *items;
    char *rcpt_text; /* the recipients, split in place */
    const char **rcpt_ptrs;
    size_t n, next, open;
    struct claim *nextc;
} claim;

static void claim_free(claim *c)
{
    if (!c) return;
    if (c->res) pq.clear(c->res);
    free(c->items);
    free(c->rcpt_text);
    free(c->rcpt_ptrs);
    free(c);
}

/* Claims up to n due messages for worker with a lease. *out NULL when none. */
static int claim_batch(smtpc__pg *p, PGconn *c, smtpc__errmsg *err, unsigned n, const char *worker,
                       double lease_s, claim **out)
{
    *out = NULL;
    char ns[16], ls[32];
    snprintf(ns, sizeof ns, "%u", n);
    snprintf(ls, sizeof ls, "%.3f", lease_s);
    const char *vals[3] = {ns, worker, ls};
    char name[16];
    int rc = prepare(p, c, err, Q_CLAIM, 3, name);
    if (rc) return rc;
    PGresult *r = run_big(p, c, err, &rc, name, 3, vals);
    if (!r) return rc;
    int rows = pq.ntuples(r);
    if (rows <= 0) {
        pq.clear(r);
        return 0;
    }
    claim *cl = calloc(1, sizeof *cl);
    size_t tl = 0, nr = 0;
    for (int i = 0; i < rows; i++) {
        tl += (size_t)pq.getlength(r, i, 2) + 1;
        const char *s = pq.getvalue(r, i, 2);
        nr++;
        for (; *s; s++) nr += *s == '\n';
    }
    if (cl) {
        cl->res = r;
        cl->items = calloc((size_t)rows, sizeof *cl->items);
        cl->rcpt_text = malloc(tl ? tl : 1);
        cl->rcpt_ptrs = calloc(nr ? nr : 1, sizeof *cl->rcpt_ptrs);
    }
    if (!cl || !cl->items || !cl->rcpt_text || !cl->rcpt_ptrs) {
        if (cl) claim_free(cl);
        else pq.clear(r);
        return smtpc__err(err, SMTPC_ENOMEM, "PostgreSQL outbox: out of memory");
    }
    char *t = cl->rcpt_text;
    const char **rp = cl->rcpt_ptrs;
    for (int i = 0; i < rows; i++) {
        item *it = &cl->items[i];
        uint64_t v = 0;
        const char *s = pq.getvalue(r, i, 0);
        smtpc__parse_u64(s, strlen(s), &v);
        it->id = (int64_t)v;
        it->from = pq.getvalue(r, i, 1);
        size_t rl = (size_t)pq.getlength(r, i, 2);
        memcpy(t, pq.getvalue(r, i, 2), rl);
        t[rl] = '\0';
        it->rcpts = rp;
        for (char *q = t;;) {
            *rp++ = q;
            it->nrcpts++;
            char *nl = strchr(q, '\n');
            if (!nl) break;
            *nl = '\0';
            q = nl + 1;
        }
        t += rl + 1;
        it->body = pq.getvalue(r, i, 3);
        it->len = pq.getisnull(r, i, 3) ? 0 : (size_t)pq.getlength(r, i, 3);
        s = pq.getvalue(r, i, 4);
        v = 0;
        smtpc__parse_u64(s, strlen(s), &v);
        it->attempts = (unsigned)v;
        it->batch = cl;
    }
    cl->n = (size_t)rows;
    cl->open = (size_t)rows;
    *out = cl;
    return 0;
}

static void drain_notifies(PGconn *c)
{
    PGnotify *nf;
    while ((nf = pq.notifies(c))) pq.freemem(nf);
}

/* ---- flush through clients (blocking, one thread per client) ---- */

typedef struct pflush {
    smtpc__pg *p;
    pthread_mutex_t mu;
    smtpc_outbox_stats *st;
    size_t done, total;
    int rc;
    bool stop;
    char worker[96];
} pflush;

typedef struct pflush_thr {
    pflush *f;
    smtpc_client *c;
    pthread_t thr;
} pflush_thr;

/* A flush's claims carry a long lease: the blocking client may take up to
 * its data timeout on one message, and nothing renews it meanwhile. */
#define FLUSH_LEASE_S 900.0

static void *pflush_main(void *arg)
{
    pflush_thr *t = arg;
    pflush *f = t->f;
    smtpc__pg *p = f->p;
    smtpc__errmsg err;
    err.text[0] = '\0';
    int rc;
    PGconn *c = connect_db(p, &err, &rc);
    outcomes oc = {NULL, 0, 0};
    while (!rc) {
        pthread_mutex_lock(&f->mu);
        bool stop = f->stop;
        if (!stop && p->progress) p->progress(p->progress_ud, f->done, f->total, f->st);
        pthread_mutex_unlock(&f->mu);
        if (stop) break;
        claim *cl = NULL;
        rc = claim_batch(p, c, &err, 1, f->worker, FLUSH_LEASE_S, &cl);
        if (rc || !cl) break;
        item *it = &cl->items[0];
        smtpc__body b;
        memset(&b, 0, sizeof b);
        b.from = it->from;
        b.rcpts = it->rcpts;
        b.nrcpts = it->nrcpts;
        b.mem = it->body;
        b.len = it->len;
        smtpc_result *res = NULL;
        int src = smtpc__client_deliver(t->c, &b, false, &res);
        smtpc_outbox_stats d = {0, 0, 0, 0};
        outcome o;
        memset(&o, 0, sizeof o);
        o.id = it->id;
        size_t nr = res ? smtpc_result_rcpt_count(res) : 0;
        int *codes = nr ? calloc(nr, sizeof *codes) : NULL;
        for (size_t i = 0; codes && i < nr; i++) codes[i] = smtpc_result_rcpt_code(res, i);
        classify(p, &o, it->attempts, src, src == 0, src == SMTPC_ECANCELED, &d);
        o.codes = codes_text(codes, nr);
        if (src) {
            char e[600];
            snprintf(e, sizeof e, "%s: %s", smtpc_err_name(src), res ? smtpc_result_errmsg(res) : smtpc_strerror(src));
            o.err = smtpc__strdup(e);
        } else {
            o.err = smtpc__strdup("");
        }
        bool partial = false;
        for (size_t i = 0; codes && !src && i < nr && i < it->nrcpts; i++) partial |= codes[i] / 100 != 2;
        rc = exec0(p, c, &err, "BEGIN", 0, NULL);
        const char **texts = partial ? calloc(nr, sizeof *texts) : NULL;
        for (size_t i = 0; texts && i < nr; i++) texts[i] = smtpc_result_rcpt_text(res, i);
        if (!rc && partial)
            rc = split_refused(p, c, &err, it->id, it->rcpts, nr < it->nrcpts ? nr : it->nrcpts, codes, texts,
                               it->attempts, f->worker);
        free(texts);
        if (!rc) rc = outcomes_push(&oc, &o);
        else outcome_free(&o);
        if (!rc) rc = outcomes_write(p, c, &err, &oc, f->worker);
        rc = end_txn(p, c, &err, rc);
        free(codes);
        smtpc_result_free(res);
        claim_free(cl);
        pthread_mutex_lock(&f->mu);
        f->st->sent += d.sent;
        f->st->deferred += d.deferred;
        f->st->failed += d.failed;
        f->done++;
        if (src == SMTPC_ECANCELED && !rc) rc = src;
        pthread_mutex_unlock(&f->mu);
    }
    outcomes_clear(&oc);
    free(oc.v);
    pthread_mutex_lock(&f->mu);
    if (rc) {
        f->stop = true;
        if (!f->rc) {
            f->rc = rc;
            p->err = err;
        }
    }
    pthread_mutex_unlock(&f->mu);
    if (c) pq.finish(c);
    return NULL;
}

int smtpc__pg_flush(smtpc__pg *p, smtpc_client *const *clients, size_t n, smtpc_outbox_stats *st)
{
    size_t entered = 0;
    int rc = 0;
    for (; entered < n; entered++)
        if ((rc = smtpc__client_enter(clients[entered]))) break;
    if (rc) {
        while (entered) smtpc__client_leave(clients[--entered]);
        return smtpc__err(&p->err, rc, "outbox: the client is busy");
    }
    pflush f;
    memset(&f, 0, sizeof f);
    f.p = p;
    f.st = st;
    char host[64] = "?";
    gethostname(host, sizeof host - 1);
    snprintf(f.worker, sizeof f.worker, "%s:%ld:flush", host, (long)getpid());
    PGresult *r = run(p, p->conn, &p->err, &rc, p->q[Q_COUNT], 0, NULL, NULL, NULL, 0);
    if (r) {
        uint64_t v = 0;
        const char *s = pq.getvalue(r, 0, 1);
        smtpc__parse_u64(s, strlen(s), &v);
        f.total = (size_t)v;
        pq.clear(r);
    }
    pflush_thr *t = rc ? NULL : calloc(n, sizeof *t);
    if (!rc && !t) rc = SMTPC_ENOMEM;
    if (!rc) {
        pthread_mutex_init(&f.mu, NULL);
        size_t started = 1;
        for (size_t i = 0; i < n; i++) {
            t[i].f = &f;
            t[i].c = clients[i];
        }
        for (; started < n; started++)
            if (pthread_create(&t[started].thr, NULL, pflush_main, &t[started])) break;
        pflush_main(&t[0]);
        for (size_t i = 1; i < started; i++) pthread_join(t[i].thr, NULL);
        rc = f.rc;
        if (p->progress && f.total) p->progress(p->progress_ud, f.done, f.total > f.done ? f.total : f.done, st);
        pthread_mutex_destroy(&f.mu);
    }
    free(t);
    for (size_t i = 0; i < n; i++) smtpc__client_leave(clients[i]);
    return rc;
}

/* ---- list, retry, drop ---- */

static int id_ok(smtpc__pg *p, const char *id)
{
    uint64_t v;
    if (!id || smtpc__parse_u64(id, strlen(id), &v) || v > INT64_MAX)
        return smtpc__err(&p->err, SMTPC_ENOTFOUND, "no outbox entry %s", id ? id : "");
    return 0;
}

int smtpc__pg_list(smtpc__pg *p, bool include_failed, int (*cb)(void *ud, const smtpc_outbox_entry *e), void *ud)
{
    char after[24] = "0";
    int rc = 0;
    for (;;) {
        const char *vals[2] = {after, include_failed ? "true" : "false"};
        PGresult *r = run(p, p->conn, &p->err, &rc, p->q[Q_LIST], 2, vals, NULL, NULL, 0);
        if (!r) return rc;
        int rows = pq.ntuples(r);
        for (int i = 0; !rc && i < rows; i++) {
            uint64_t nr = 0, at = 0, nx = 0;
            const char *s;
            s = pq.getvalue(r, i, 2), smtpc__parse_u64(s, strlen(s), &nr);
            s = pq.getvalue(r, i, 4), smtpc__parse_u64(s, strlen(s), &at);
            s = pq.getvalue(r, i, 5), smtpc__parse_u64(s, strlen(s), &nx);
            smtpc_outbox_entry e = {pq.getvalue(r, i, 0), pq.getvalue(r, i, 1), (size_t)nr,
                                    pq.getvalue(r, i, 3), (unsigned)at, (int64_t)nx, pq.getvalue(r, i, 6),
                                    !strcmp(pq.getvalue(r, i, 7), "failed")};
            rc = cb(ud, &e);
        }
        if (rows > 0) smtpc__strlcpy(after, pq.getvalue(r, rows - 1, 0), sizeof after);
        pq.clear(r);
        if (rc || rows < 1000) return rc;
    }
}

static void notify(smtpc__pg *p)
{
    char sql[96];
    snprintf(sql, sizeof sql, "NOTIFY %s", p->schema);
    smtpc__errmsg e;
    exec0(p, p->conn, &e, sql, 0, NULL);
}

/* Runs q on entry id; none changed: SMTPC_EBUSY when a worker is sending
 * it (as the directory's lock says during a flush), else SMTPC_ENOTFOUND. */
static int change_one(smtpc__pg *p, int q, const char *id)
{
    int rc = id_ok(p, id);
    if (rc) return rc;
    const char *vals[1] = {id};
    PGresult *r = run(p, p->conn, &p->err, &rc, p->q[q], 1, vals, NULL, NULL, 0);
    if (!r) return rc;
    bool none = !strcmp(pq.cmdTuples(r), "0");
    pq.clear(r);
    if (!none) return 0;
    r = run(p, p->conn, &p->err, &rc, p->q[Q_STATE_OF], 1, vals, NULL, NULL, 0);
    if (!r) return rc;
    rc = pq.ntuples(r) && !strcmp(pq.getvalue(r, 0, 0), "sending")
             ? smtpc__err(&p->err, SMTPC_EBUSY, "outbox entry %s is being sent; try again later", id)
             : smtpc__err(&p->err, SMTPC_ENOTFOUND, "no outbox entry %s", id);
    pq.clear(r);
    return rc;
}

int smtpc__pg_retry(smtpc__pg *p, const char *id)
{
    int rc = id ? change_one(p, Q_RETRY, id) : exec0(p, p->conn, &p->err, p->q[Q_RETRY_ALL], 0, NULL);
    if (!rc) notify(p);
    return rc;
}

int smtpc__pg_drop(smtpc__pg *p, const char *id) { return change_one(p, Q_DROP, id); }

/* ---- stats ---- */

SMTPC_API int smtpc_outbox_count(smtpc_outbox *ob, smtpc_outbox_counts *out)
{
    smtpc__pg *p = smtpc__outbox_pg(ob);
    if (!p || !out) return SMTPC_EINVAL;
    int rc;
    PGresult *r = run(p, p->conn, &p->err, &rc, p->q[Q_COUNT], 0, NULL, NULL, NULL, 0);
    if (!r) return rc;
    uint64_t v[8];
    for (int k = 0; k < 8; k++) {
        const char *s = pq.getvalue(r, 0, k);
        bool neg = s[0] == '-';
        v[k] = 0;
        smtpc__parse_u64(s + neg, strlen(s + neg), &v[k]);
        if (neg) v[k] = UINT64_MAX;
    }
    pq.clear(r);
    out->queued = v[0];
    out->due = v[1];
    out->sending = v[2];
    out->sent = v[3];
    out->failed = v[4];
    out->sent_last_minute = v[5];
    out->oldest_due_s = v[6] == UINT64_MAX ? -1 : (int64_t)v[6];
    out->workers = (unsigned)v[7];
    return 0;
}

SMTPC_API int smtpc_outbox_workers(smtpc_outbox *ob, int (*cb)(void *ud, const smtpc_outbox_worker_info *w),
                                   void *ud)
{
    smtpc__pg *p = smtpc__outbox_pg(ob);
    if (!p || !cb) return SMTPC_EINVAL;
    int rc;
    PGresult *r = run(p, p->conn, &p->err, &rc, p->q[Q_WORKERS], 0, NULL, NULL, NULL, 0);
    if (!r) return rc;
    for (int i = 0; !rc && i < pq.ntuples(r); i++) {
        uint64_t v[4] = {0, 0, 0, 0};
        for (int k = 0; k < 4; k++) {
            const char *s = pq.getvalue(r, i, k + 1);
            smtpc__parse_u64(s, strlen(s), &v[k]);
        }
        smtpc_outbox_worker_info w = {pq.getvalue(r, i, 0), (int64_t)v[0], (int64_t)v[1], v[2], v[3],
                                      !strcmp(pq.getvalue(r, i, 5), "true")};
        rc = cb(ud, &w);
    }
    pq.clear(r);
    return rc;
}

/* ---- the worker ---- */

SMTPC_API void smtpc_outbox_stop(smtpc_outbox *ob)
{
    smtpc__pg *p = smtpc__outbox_pg(ob);
    if (!p) return;
    atomic_store(&p->stop, true);
    smtpc_bulk *b = atomic_load(&p->bulk);
    if (b) smtpc_bulk_cancel(b);
    if (p->stop_pipe[1] >= 0) {
        ssize_t k = write(p->stop_pipe[1], "x", 1);
        (void)k;
    }
}

/* The longest an outcome waits to be written with others. */
#define OUTCOME_DELAY_MS 100

/* Inside a round the database work is done by two threads of its own: the
 * claimer, on the handle's connection, claims the next batch while the
 * current one is being sent; the writer, on a second connection, writes
 * outcomes in batches meanwhile. So the sending loop never waits for a
 * query unless it has nothing left to send. */
typedef struct worker {
    smtpc__pg *p;
    char name[128];
    double lease_s;
    int64_t poll_ms;
    unsigned batch;
    double rate;
    smtpc_outbox_stats *st;
    /* the loop thread's */
    claim *cur;       /* being handed out */
    claim *held;      /* handed out, not all reported */
    int rc;           /* a database error that ended the round */
    unsigned claimed; /* in this round */
    smtpc_bulk *bulk;
    double share;     /* the rate this worker applies */
    bool prefetch;    /* claim ahead (not under a rate: what one worker holds the others cannot send) */
    /* shared with the db threads, under dmu */
    pthread_t db[2];      /* the claimer, the writer */
    PGconn *wconn;        /* the writer's (kept across rounds) */
    pthread_mutex_t dmu;
    pthread_cond_t dcv, rcv; /* the db threads' wakeup; a claim is ready */
    pthread_mutex_t conn_mu; /* who uses p->conn during a round */
    outcomes oc;             /* to be written */
    int64_t oc_first_ms;     /* when the oldest of them came */
    claim *ready;            /* claimed ahead, not handed out yet */
    unsigned claim_n;
    bool want_claim, loop_waiting, empty, db_stop;
    int db_rc;
    /* the heartbeat thread's */
    pthread_t hb;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool hb_stop;
    atomic_uint live; /* live workers, for the rate share */
    _Atomic uint64_t sent, failed;
} worker;

/* Moves every outcome of from to the end of to (from left empty). */
static int outcomes_move(outcomes *to, outcomes *from)
{
    int rc = 0;
    for (size_t i = 0; i < from->n; i++) {
        if (!rc) rc = outcomes_push(to, &from->v[i]);
        if (rc) outcome_free(&from->v[i]);
    }
    from->n = 0;
    return rc;
}

/* Writes the collected outcomes; the caller owns p->conn (no db threads
 * running, or conn_mu held). A database error ends the run (the claims
 * left behind are taken over when their lease expires). */
static int worker_flush(worker *w)
{
    if (!w->oc.n) return 0;
    smtpc__pg *p = w->p;
    int rc = outcomes_write(p, p->conn, &p->err, &w->oc, w->name);
    if (rc) w->rc = rc;
    return rc;
}

typedef struct dbthr {
    worker *w;
    bool writer;
} dbthr;

static void *db_main(void *arg)
{
    worker *w = ((dbthr *)arg)->w;
    bool writer = ((dbthr *)arg)->writer;
    smtpc__pg *p = w->p;
    outcomes mine = {NULL, 0, 0};
    pthread_mutex_lock(&w->dmu);
    for (;;) {
        int64_t now = smtpc__now_ms();
        bool need_claim = !writer && w->want_claim && !w->ready && !w->empty && !w->db_rc && !w->db_stop;
        bool need_write = writer && w->oc.n && !w->db_rc &&
                          (w->db_stop || w->oc.n >= w->batch || now - w->oc_first_ms >= OUTCOME_DELAY_MS);
        if (need_claim) {
            unsigned n = w->claim_n;
            w->want_claim = false;
            pthread_mutex_unlock(&w->dmu);
            claim *cl = NULL;
            smtpc__errmsg err;
            pthread_mutex_lock(&w->conn_mu);
            int rc = claim_batch(p, p->conn, &err, n, w->name, w->lease_s, &cl);
            drain_notifies(p->conn);
            pthread_mutex_unlock(&w->conn_mu);
            pthread_mutex_lock(&w->dmu);
            if (rc) w->db_rc = rc, p->err = err;
            if (cl) w->ready = cl;
            else w->empty = true;
            pthread_cond_broadcast(&w->rcv);
        } else if (need_write) {
            outcomes t = mine;
            mine = w->oc;
            w->oc = t;
            pthread_mutex_unlock(&w->dmu);
            smtpc__errmsg err;
            int rc = outcomes_write(p, w->wconn, &err, &mine, w->name);
            pthread_mutex_lock(&w->dmu);
            if (rc) p->err = err;
            if (rc) {
                /* kept: the round's end tries them again if the connection is still there */
                w->db_rc = rc;
                if (outcomes_move(&mine, &w->oc)) w->db_rc = SMTPC_ENOMEM;
                t = mine;
                mine = w->oc;
                w->oc = t;
                pthread_cond_broadcast(&w->rcv);
            }
        } else if (w->db_stop) {
            break;
        } else if (writer && w->oc.n && !w->db_rc) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t ms = OUTCOME_DELAY_MS - (now - w->oc_first_ms);
            if (ms < 1) ms = 1;
            ts.tv_nsec += (long)(ms % 1000) * 1000000L;
            ts.tv_sec += (time_t)(ms / 1000);
            if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&w->dcv, &w->dmu, &ts);
        } else {
            pthread_cond_wait(&w->dcv, &w->dmu);
        }
    }
    pthread_mutex_unlock(&w->dmu);
    outcomes_clear(&mine);
    free(mine.v);
    return NULL;
}

static int w_next(void *ud, smtpc_bulk_msg *m)
{
    worker *w = ud;
    smtpc__pg *p = w->p;
    if (atomic_load(&p->stop) || w->rc) return 0;
    if (w->rate > 0) {
        double share = w->rate / (double)(atomic_load(&w->live) ? atomic_load(&w->live) : 1);
        if (share != w->share) smtpc_bulk_set_rate(w->bulk, share, 1);
        w->share = share;
    }
    if (!w->cur || w->cur->next == w->cur->n) {
        /* under a rate, claim about a second's worth: what one worker holds
         * is what the others cannot send meanwhile */
        unsigned n = w->batch;
        if (w->share > 0 && w->share < (double)n) n = w->share < 1 ? 1 : (unsigned)w->share;
        pthread_mutex_lock(&w->dmu);
        w->claim_n = n;
        if (!w->ready && !w->empty && !w->db_rc) {
            w->want_claim = true;
            w->loop_waiting = true;
            pthread_cond_broadcast(&w->dcv);
            while (!w->ready && !w->empty && !w->db_rc) pthread_cond_wait(&w->rcv, &w->dmu);
            w->loop_waiting = false;
        }
        claim *cl = w->ready;
        w->ready = NULL;
        if (w->db_rc) w->rc = w->db_rc;
        if (cl && w->prefetch && !w->empty) {
            w->want_claim = true; /* the next one, while this one is sent */
            pthread_cond_broadcast(&w->dcv);
        }
        pthread_mutex_unlock(&w->dmu);
        if (!cl) return 0;
        if (w->cur && w->cur->open) {
            w->cur->nextc = w->held;
            w->held = w->cur;
        } else if (w->cur) {
            claim_free(w->cur);
        }
        w->cur = cl;
        w->claimed += (unsigned)cl->n;
    }
    item *it = &w->cur->items[w->cur->next++];
    memset(m, 0, sizeof *m);
    m->from = it->from;
    m->rcpts = it->rcpts;
    m->nrcpts = it->nrcpts;
    m->data = it->body;
    m->len = it->len;
    m->userdata = it;
    return 1;
}

static void w_result(void *ud, const smtpc_bulk_msg *m, const smtpc_bulk_result *r)
{
    worker *w = ud;
    smtpc__pg *p = w->p;
    item *it = m->userdata;
    outcome o;
    memset(&o, 0, sizeof o);
    o.id = it->id;
    smtpc_outbox_stats d = {0, 0, 0, 0};
    bool sent = r->status == SMTPC_BULK_SENT;
    classify(p, &o, it->attempts, r->status == SMTPC_BULK_UNKNOWN ? SMTPC_EUNKNOWN : r->error, sent,
             r->status == SMTPC_BULK_CANCELED, &d);
    o.code = r->reply_code;
    if (r->rcpt_codes && r->nrcpts == 1) o.code1 = r->rcpt_codes[0];
    else o.codes = codes_text(r->rcpt_codes, r->nrcpts);
    if (sent) {
        o.err = no_error;
    } else if (r->status != SMTPC_BULK_CANCELED) {
        char e[600];
        int code = r->status == SMTPC_BULK_UNKNOWN ? SMTPC_EUNKNOWN : r->error;
        snprintf(e, sizeof e, "%s: %s", smtpc_err_name(code), r->errmsg && *r->errmsg ? r->errmsg : r->reply_text);
        o.err = smtpc__strdup(e);
    }
    bool split = sent && r->rcpt_codes && r->rcpts_accepted < r->nrcpts;
    int rc = 0;
    if (split) {
        /* refused recipients of an accepted message: their own entries, in
         * one transaction with the message's outcome (so a crash never
         * leaves both the split and the message to send again); rare, so
         * written here, the claimer kept off the connection meanwhile */
        outcomes one = {&o, 1, 1};
        smtpc__errmsg err;
        pthread_mutex_lock(&w->conn_mu);
        rc = exec0(p, p->conn, &err, "BEGIN", 0, NULL);
        if (!rc)
            rc = split_refused(p, p->conn, &err, it->id, it->rcpts, r->nrcpts, r->rcpt_codes, NULL, it->attempts,
                               w->name);
        if (!rc) rc = outcomes_write(p, p->conn, &err, &one, w->name); /* clears o on success */
        rc = end_txn(p, p->conn, &err, rc);
        pthread_mutex_unlock(&w->conn_mu);
        if (rc) {
            outcome_free(&o);
            pthread_mutex_lock(&w->dmu);
            p->err = err;
            pthread_mutex_unlock(&w->dmu);
        }
    } else {
        /* written in batches, but soon: an outcome not yet written is sent
         * again by whoever takes the message over if this worker dies */
        pthread_mutex_lock(&w->dmu);
        if (outcomes_push(&w->oc, &o)) {
            outcome_free(&o);
            rc = SMTPC_ENOMEM;
        }
        if (w->oc.n == 1) w->oc_first_ms = smtpc__now_ms();
        if (w->oc.n == 1 || w->oc.n >= w->batch) pthread_cond_broadcast(&w->dcv);
        if (w->db_rc) rc = w->db_rc; /* no more is handed out */
        pthread_mutex_unlock(&w->dmu);
    }
    if (rc) w->rc = rc;
    w->st->sent += d.sent;
    w->st->deferred += d.deferred;
    w->st->failed += d.failed;
    atomic_fetch_add(&w->sent, d.sent);
    atomic_fetch_add(&w->failed, d.failed);
    claim *cl = it->batch;
    if (--cl->open == 0 && cl != w->cur) {
        /* every message of an older claim reported: its rows can go, after
         * their outcomes are written (they borrow nothing from it) */
        claim **pp = &w->held;
        while (*pp && *pp != cl) pp = &(*pp)->nextc;
        if (*pp) *pp = cl->nextc;
        claim_free(cl);
    }
}

/* The heartbeat: renews this worker's leases and registration, puts back
 * the messages of workers whose lease expired, applies the retention, and
 * counts the live workers for the rate share. Its own connection, so the
 * loop never waits for it. */
static void *heartbeat_main(void *arg)
{
    worker *w = arg;
    smtpc__pg *p = w->p;
    smtpc__errmsg err;
    int rc;
    PGconn *c = NULL;
    int64_t last_retain = 0;
    pthread_mutex_lock(&w->mu);
    while (!w->hb_stop) {
        pthread_mutex_unlock(&w->mu);
        if (!c || pq.status(c) != CONNECTION_OK) {
            if (c) pq.finish(c);
            c = connect_db(p, &err, &rc);
        }
        if (c) {
            char ls[32], sn[24], fl[24];
            snprintf(ls, sizeof ls, "%.3f", w->lease_s);
            snprintf(sn, sizeof sn, "%llu", (unsigned long long)atomic_load(&w->sent));
            snprintf(fl, sizeof fl, "%llu", (unsigned long long)atomic_load(&w->failed));
            const char *v4[4] = {w->name, ls, sn, fl};
            if (exec0(p, c, &err, p->q[Q_RENEW], 4, v4) == 0) {
                PGresult *r = run(p, c, &err, &rc, p->q[Q_LIVE], 0, NULL, NULL, NULL, 0);
                if (r) {
                    uint64_t v = 1;
                    const char *s = pq.getvalue(r, 0, 0);
                    smtpc__parse_u64(s, strlen(s), &v);
                    atomic_store(&w->live, (unsigned)v);
                    pq.clear(r);
                }
            }
            exec0(p, c, &err, p->q[Q_REQUEUE], 0, NULL);
            int64_t now = smtpc__now_ms();
            if (now - last_retain > 60000) {
                exec0(p, c, &err, p->q[Q_RETAIN], 0, NULL);
                last_retain = now;
            }
        }
        pthread_mutex_lock(&w->mu);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        /* often enough for the rate share to follow workers coming and going */
        double step = w->lease_s / 4 > 0.5 ? w->lease_s / 4 : 0.5;
        if (step > 5) step = 5;
        int64_t step_ms = (int64_t)(step * 1000);
        ts.tv_sec += (time_t)(step_ms / 1000);
        ts.tv_nsec += (long)(step_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        if (!w->hb_stop) pthread_cond_timedwait(&w->cv, &w->mu, &ts);
    }
    pthread_mutex_unlock(&w->mu);
    if (c) pq.finish(c);
    return NULL;
}

/* Waits for a NOTIFY, the stop pipe or the poll interval. */
static int wait_wakeup(worker *w)
{
    smtpc__pg *p = w->p;
    struct pollfd pf[2] = {{pq.socket(p->conn), POLLIN, 0}, {p->stop_pipe[0], POLLIN, 0}};
    int k = poll(pf, 2, (int)w->poll_ms);
    if (k > 0 && (pf[0].revents & (POLLIN | POLLHUP | POLLERR))) {
        if (!pq.consumeInput(p->conn)) return conn_error(&p->err, p->conn, "connection lost");
        drain_notifies(p->conn);
    }
    return 0;
}

static int listen_on(smtpc__pg *p)
{
    char sql[96];
    snprintf(sql, sizeof sql, "LISTEN %s", p->schema);
    return exec0(p, p->conn, &p->err, sql, 0, NULL);
}

/* After the database went away: reconnects (every second) until it
 * answers again or the worker is stopped. */
static int reconnect(worker *w)
{
    smtpc__pg *p = w->p;
    while (!atomic_load(&p->stop)) {
        pq.reset(p->conn);
        if (pq.status(p->conn) == CONNECTION_OK && listen_on(p) == 0) return 0;
        struct pollfd pf = {p->stop_pipe[0], POLLIN, 0};
        poll(&pf, 1, 1000);
    }
    return 0;
}

/* One round: a bulk run that lasts while the queue has due messages. */
static int worker_round(worker *w, const smtpc_conn_opts *conn, unsigned connections)
{
    smtpc__pg *p = w->p;
    w->claimed = 0;
    w->rc = 0;
    smtpc_bulk *b = NULL;
    int rc = smtpc_bulk_new(&b, "localhost", 25);
    if (!rc) rc = smtpc_bulk_set_conn_opts(b, conn);
    if (!rc) rc = smtpc_bulk_set_connections(b, connections);
    if (!rc) rc = smtpc_bulk_set_source(b, w_next, w);
    if (!rc) rc = smtpc_bulk_set_result_cb(b, w_result, w);
    if (rc) {
        smtpc__err(&p->err, rc, "worker: %s", b ? smtpc_bulk_errmsg(b) : smtpc_strerror(rc));
        smtpc_bulk_free(b);
        return rc;
    }
    /* Nothing is in flight between rounds: a claim still ours is one whose
     * outcome could not be written (the database went away); it would
     * otherwise wait here, its lease renewed, until this worker exits. */
    const char *v1[1] = {w->name};
    int orc = exec0(p, p->conn, &p->err, p->q[Q_ORPHANS], 1, v1);
    if (orc) {
        smtpc_bulk_free(b);
        return orc;
    }
    w->bulk = b;
    w->share = 0;
    w->prefetch = w->rate <= 0;
    w->ready = NULL;
    w->want_claim = w->loop_waiting = w->empty = w->db_stop = false;
    w->db_rc = 0;
    if (w->wconn && pq.status(w->wconn) != CONNECTION_OK) {
        pq.finish(w->wconn);
        w->wconn = NULL;
    }
    if (!w->wconn) w->wconn = connect_db(p, &p->err, &rc);
    dbthr dt[2] = {{w, false}, {w, true}};
    int nthr = 0;
    if (w->wconn) {
        /* signals go to the caller's thread */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        while (nthr < 2 && pthread_create(&w->db[nthr], NULL, db_main, &dt[nthr]) == 0) nthr++;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    if (nthr < 2) {
        pthread_mutex_lock(&w->dmu);
        w->db_stop = true;
        pthread_cond_broadcast(&w->dcv);
        pthread_mutex_unlock(&w->dmu);
        while (nthr) pthread_join(w->db[--nthr], NULL);
        smtpc_bulk_free(b);
        w->bulk = NULL;
        return rc ? rc : smtpc__err(&p->err, SMTPC_ENOMEM, "worker: cannot start a thread");
    }
    atomic_store(&p->bulk, b);
    if (atomic_load(&p->stop)) smtpc_bulk_cancel(b);
    smtpc_bulk_run(b);
    atomic_store(&p->bulk, NULL);
    smtpc_bulk_free(b); /* reports nothing more: every message was reported by run */
    w->bulk = NULL;
    /* the writer writes what it holds and ends; a claim made ahead is
     * left in ready */
    pthread_mutex_lock(&w->dmu);
    w->db_stop = true;
    pthread_cond_broadcast(&w->dcv);
    pthread_mutex_unlock(&w->dmu);
    pthread_join(w->db[0], NULL);
    pthread_join(w->db[1], NULL);
    if (w->db_rc && !w->rc) w->rc = w->db_rc;
    /* what was claimed and never handed out goes back (no attempt counted) */
    smtpc_outbox_stats d;
    for (size_t i = w->cur ? w->cur->next : 0; w->cur && i < w->cur->n; i++) {
        outcome o;
        memset(&o, 0, sizeof o);
        o.id = w->cur->items[i].id;
        classify(p, &o, 0, 0, false, true, &d);
        if (outcomes_push(&w->oc, &o)) w->rc = SMTPC_ENOMEM;
    }
    for (size_t i = 0; w->ready && i < w->ready->n; i++) {
        outcome o;
        memset(&o, 0, sizeof o);
        o.id = w->ready->items[i].id;
        classify(p, &o, 0, 0, false, true, &d);
        if (outcomes_push(&w->oc, &o)) w->rc = SMTPC_ENOMEM;
    }
    claim_free(w->ready);
    w->ready = NULL;
    if (!w->rc) worker_flush(w);
    else if (pq.status(p->conn) == CONNECTION_OK) worker_flush(w);
    outcomes_clear(&w->oc);
    claim_free(w->cur);
    w->cur = NULL;
    while (w->held) {
        claim *n = w->held->nextc;
        claim_free(w->held);
        w->held = n;
    }
    return w->rc;
}

SMTPC_API int smtpc_outbox_work(smtpc_outbox *ob, const smtpc_conn_opts *conn, const smtpc_outbox_worker_opts *wo,
                                smtpc_outbox_stats *st)
{
    smtpc__pg *p = smtpc__outbox_pg(ob);
    smtpc_outbox_stats dummy;
    if (!st) st = &dummy;
    memset(st, 0, sizeof *st);
    if (!p || !conn) return SMTPC_EINVAL;
    smtpc_outbox_worker_opts o;
    memset(&o, 0, sizeof o);
    if (wo) o = *wo;
    unsigned k = o.connections ? o.connections : 1;
    worker *w = calloc(1, sizeof *w);
    if (!w) return SMTPC_ENOMEM;
    w->p = p;
    w->st = st;
    w->lease_s = (double)(o.lease_ms > 0 ? o.lease_ms : 60000) / 1000.0;
    w->poll_ms = o.poll_ms > 0 ? o.poll_ms : 5000;
    w->batch = o.batch ? o.batch : (k * 64 < 1000 ? k * 64 : 1000);
    w->rate = o.rate;
    atomic_store(&w->live, 1);
    if (o.name && *o.name && !smtpc__has_crlfnul(o.name, strlen(o.name))) {
        smtpc__strlcpy(w->name, o.name, sizeof w->name);
    } else {
        char host[64] = "?";
        gethostname(host, sizeof host - 1);
        snprintf(w->name, sizeof w->name, "%s:%ld", host, (long)getpid());
    }
    /* an earlier stop request of this handle is forgotten */
    atomic_store(&p->stop, false);
    char drain[64];
    while (read(p->stop_pipe[0], drain, sizeof drain) > 0) {}
    char ls[32];
    snprintf(ls, sizeof ls, "%.3f", w->lease_s);
    const char *v2[2] = {w->name, ls};
    int rc = exec0(p, p->conn, &p->err, p->q[Q_HELLO], 2, v2);
    if (!rc) rc = listen_on(p);
    if (rc) {
        free(w);
        return rc;
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    pthread_mutex_init(&w->dmu, NULL);
    pthread_mutex_init(&w->conn_mu, NULL);
    pthread_cond_init(&w->dcv, NULL);
    pthread_cond_init(&w->rcv, NULL);
    /* signals go to the caller's thread, never to the heartbeat */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    bool hb = pthread_create(&w->hb, NULL, heartbeat_main, w) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    rc = 0;
    while (!atomic_load(&p->stop)) {
        int r1 = worker_round(w, conn, k);
        if (r1 && pq.status(p->conn) != CONNECTION_OK) {
            reconnect(w);
            continue;
        }
        if (r1 == SMTPC_ENOMEM) {
            rc = r1;
            break;
        }
        if (atomic_load(&p->stop)) break;
        if (w->claimed == 0 && wait_wakeup(w)) reconnect(w);
    }
    if (hb) {
        pthread_mutex_lock(&w->mu);
        w->hb_stop = true;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->hb, NULL);
    }
    const char *v1[1] = {w->name};
    smtpc__errmsg e;
    exec0(p, p->conn, &e, p->q[Q_BYE], 1, v1);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    if (w->wconn) pq.finish(w->wconn);
    pthread_cond_destroy(&w->dcv);
    pthread_cond_destroy(&w->rcv);
    pthread_mutex_destroy(&w->conn_mu);
    pthread_mutex_destroy(&w->dmu);
    free(w->oc.v);
    free(w);
    return rc;
}

#endif /* SMTPC_HAVE_POSTGRESQL */
