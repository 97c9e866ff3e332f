/* smtpc_bulk inside the library: many non-blocking SMTP connections in one
 * thread. Every SMTP command and reply goes through the sans-IO engine
 * (src/engine/engine.h): each connection owns one smtpc__engine, opens with
 * the shared connection opener (src/engine/opener.h), then sends each
 * message as an engine transaction chained behind the previous one's final
 * dot (smtpc__engine_txn_chain: the body and dot of message k and
 * MAIL/RCPT/DATA of message k+1 in one write, one round trip per message).
 * What is this driver's own:
 *   bulk.c     lifetime, settings, statistics;
 *   loop.c     the built-in loop (epoll / poll), socket actions, timers;
 *   sched.c    the message source, records, retries, rate limit, giving up,
 *              opening connections, cancel;
 *   conn.c     one connection: transport (TCP, proxy, TLS), the engine and
 *              the opener, messages in flight, timeouts;
 *   resolve.c  the server's (or proxy's) addresses, off the loop thread.
 * A message is in at most one connection at a time and is reported exactly
 * once (smtpc__bulk_finish). */
#ifndef SMTPC_ASYNC_BULK_INT_H
#define SMTPC_ASYNC_BULK_INT_H

#include <smtpc/async.h>
#include <smtpc/errors.h>

#include "async/timer.h"
#include "conn/conn_opts.h"
#include "engine/engine.h"
#include "engine/opener.h"
#include "net/tls.h"
#include "net/transport.h"
#include "util/util.h"

#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define SMTPC__BULK_RBUF (64u << 10)    /* one read */
#define SMTPC__BULK_OUT_LOW (128u << 10) /* refill the body below this much queued output */
#define SMTPC__BULK_CHUNK (64u << 10)   /* body bytes handed to the engine at once */

/* Every phase before P_READY is "connecting" (a failure there counts
 * against the server, not against a message). */
enum smtpc__bulk_phase { P_CONNECTING, P_PROXY, P_TLS, P_OPENING, P_READY, P_QUIT };
enum smtpc__bulk_stage { S_ENVELOPE, S_BODY, S_DOT_SENT };

typedef struct smtpc__bulk_rec {
    smtpc_bulk_msg m;
    struct smtpc__bulk_rec *next;
    unsigned attempts;
    uint8_t stage;
    bool body_error; /* the read callback failed */
    size_t rcpt_ok;
    size_t body_off;
    size_t nrcodes;  /* rcodes entries valid for this attempt (0: no envelope sent) */
    /* kept when the record is reset or recycled (from fail_code on): */
    int fail_code;   /* a 421 that stopped it (reported if no retry is left) */
    char fail_text[160];
    int *rcodes;     /* each RCPT's reply code, 0 = not answered */
    size_t rcodes_cap;
} smtpc__bulk_rec;

typedef struct smtpc__bulk_conn {
    smtpc_bulk *b;
    smtpc__transport *t;
    int fd;
    size_t idx; /* in b->conns */
    unsigned serial; /* 1, 2, ... in the order created (the trace's number) */
    smtpc__timer tm;
    int64_t deadline;
    uint8_t phase;
    uint8_t interest;    /* registered with the loop */
    uint8_t hs_want;     /* TLS / proxy handshake */
    uint8_t wr_want;     /* write blocked on this (0 = not blocked) */
    uint8_t rd_want;     /* read blocked on this (TLS may want OUT) */
    bool dead, tls_done, canceling;
    bool retire;         /* no more messages here: QUIT once nothing is in flight */
    bool proven;         /* the server answered a transaction command here */
    int kill_code;       /* the reply that ends the connection (421, refused greeting), else 0 */
    unsigned nmsgs;      /* messages started here */
    smtpc__engine *e;
    smtpc__opener *op;   /* while opening */
    smtpc__bulk_rec *cur;  /* in the engine's transaction */
    smtpc__bulk_rec *prev; /* set aside behind its final dot, awaiting the reply */
    smtpc__bulk_rec *body; /* the body being written (cur) */
    smtpc__bulk_rec *dot_rec; /* its final dot is queued and not all written yet: */
    size_t dot_left;          /* the octets of output up to the dot's end */
    bool token_refreshed;  /* this connection asked for a new token */
    int token_cb_rc;       /* the token callback failed: its code, else 0 */
    unsigned token_gen;    /* b->token_gen when this connection got its token */
    char rtext[160];     /* the deciding reply's last line (for reports) */
    struct smtpc__linetap *tap; /* trace_body: the message's lines (made at its first use) */
    struct smtpc__bulk_conn *next_dead;
} smtpc__bulk_conn;

struct smtpc_bulk {
    /* where, how protected, how reached, who authenticates (timeouts: 0 =
     * bulk's own defaults, see conn.c) */
    smtpc_conn_opts o;
    uint16_t port;        /* at start: the one set, else by mode */
    smtpc_tls_mode mode;  /* at start: o.tls_mode with DEFAULT resolved */
    char server[300];     /* at start: "host:port" for messages */
    smtpc_bulk_next_cb next_cb;
    void *next_ud;
    smtpc_bulk_result_cb res_cb;
    void *res_ud;
    unsigned k, max_per_conn, max_attempts;
    double rate, tokens;
    unsigned burst;
    int64_t rate_last_us, rate_wake;
    int64_t overall_ms, overall_deadline;
    bool hold_idle;
    smtpc_dsn_policy dsn_policy; /* DSN parameters on a server without DSN */
    smtpc_bulk_trace_cb trace_cb;
    void *trace_ud;
    bool trace_body;             /* the messages' lines too */
    unsigned conn_serial;        /* connections created (the trace's numbers) */
    smtpc__tls_ctx *tls_ctx;
    smtpc__tls_session *tls_sess;

    /* proxy (o.proxy): connections go to its address; the target is o.host */
    smtpc__tls_ctx *proxy_tls; /* https://: TLS to the proxy, system trust store */
    struct sockaddr_storage ptarget; /* SOCKS4/5: the target, resolved here */
    bool ptarget_set;

    /* AUTH (credentials in o) */
    unsigned token_gen;       /* new tokens the callback gave (refresh=true) */
    bool auth_failed;  /* refused for good (AUTH; TLS required, not offered): every message fails with it */
    bool gave_up;      /* every message was reported failed: connections still coming up close */
    int auth_code;     /* the refusal reply */
    char auth_text[160];

    smtpc_bulk_socket_cb sock_cb;
    void *sock_ud;
    smtpc_bulk_timer_cb timer_cb;
    void *timer_ud;
    int64_t timer_armed;

    /* resolution */
    struct sockaddr_storage *addrs;
    socklen_t *addrlens;
    size_t naddrs, addr_next;
    int resolve_pipe[2];
    pthread_t resolver;
    bool resolving, resolver_started, resolved;
    int resolve_rc;
    smtpc__errmsg resolve_err;

    smtpc__bulk_conn **conns;
    size_t nconns, conns_cap;
    smtpc__bulk_conn **byfd;
    size_t byfd_cap;
    smtpc__bulk_conn *graveyard;
    smtpc__theap heap;

    smtpc__bulk_rec *retry_head, *retry_tail, *free_recs;
    struct smtpc__sign_pool *sp; /* DKIM signing threads (sign_pool.c), or NULL */
    smtpc__bulk_rec *ahead;  /* taken from the source before a connection was opened for it */
    uint64_t outstanding; /* taken from the source, not yet reported */
    bool src_done, started, stopping, canceling;
    atomic_bool cancel_req;
    int stop_rc;
    unsigned consec_fail;   /* connections that failed before P_READY, in a row */
    unsigned unproven_fail; /* ... that failed after P_READY before any transaction reply */
    int last_conn_err;
    char last_conn_msg[256];
    int last_conn_code;       /* the reply that ended it (greeting/EHLO refusal, 421), 0 if none */
    char last_conn_text[160];

    int64_t now;
    uint8_t *rbuf;
    uint8_t *tmp;
    smtpc_bulk_stats st;
    smtpc__errmsg err;

    /* built-in loop */
    int loop_mode, loop_used; /* SMTPC_BULK_LOOP_* */
    bool pl_oom;
    int epfd, cancel_fd;
    struct pollfd *pfds; /* poll() fallback: the watched fds */
    size_t npfds, pfds_cap;
    int *pidx; /* fd -> index in pfds, -1 = not watched */
    size_t pidx_cap;
    struct pollfd *pready; /* one iteration's ready fds (pfds may change while handling them) */
};

/* ---- sched.c: messages and scheduling ----------------------------------------------- */
void smtpc__bulk_now_update(smtpc_bulk *b);
/* Reports r (exactly once) and recycles its record. */
void smtpc__bulk_finish(smtpc_bulk *b, smtpc__bulk_rec *r, smtpc_bulk_status s, int err, int code,
                        const char *text, const char *msg);
/* The connection lost r before its final dot: again elsewhere, or failed. */
void smtpc__bulk_requeue(smtpc_bulk *b, smtpc__bulk_rec *r, int err, const char *why);
/* The next message (a retry first): 1 and *out, 0 none now, <0 error. */
int smtpc__bulk_take(smtpc_bulk *b, smtpc__bulk_rec **out);
/* True when the rate limit lets one more message go now. */
bool smtpc__bulk_rate_take(smtpc_bulk *b);
/* Everything not yet reported fails with the connection (or AUTH) error. */
void smtpc__bulk_give_up(smtpc_bulk *b);
/* Opens connections while there is work and room. */
void smtpc__bulk_maybe_open(smtpc_bulk *b);
void smtpc__bulk_process_cancel(smtpc_bulk *b);
void smtpc__bulk_cancel_followup(smtpc_bulk *b);
/* Frees the records of the recycling list. */
void smtpc__bulk_recs_free(smtpc_bulk *b);

/* ---- conn.c: one connection ------------------------------------------------------------- */
/* A new connection to the next address. 0 (also when the attempt failed
 * at once: counted as a connection failure) or SMTPC_ENOMEM. */
int smtpc__bulk_conn_open(smtpc_bulk *b);
/* A connection over transport t, already connected (fd t->fd): the fuzz
 * target's way in. NULL when out of memory (t is then freed). */
smtpc__bulk_conn *smtpc__bulk_conn_adopt(smtpc_bulk *b, smtpc__transport *t);
/* Closes c: its messages are requeued (before their dot) or UNKNOWN (after). */
void smtpc__bulk_conn_kill(smtpc__bulk_conn *c, int err, const char *why);
void smtpc__bulk_conn_free(smtpc__bulk_conn *c);
/* fd ready for ev (SMTPC_POLL_*). */
void smtpc__bulk_conn_io(smtpc__bulk_conn *c, int ev);
/* Starts what may start now (messages, QUIT) and writes. */
void smtpc__bulk_conn_kick(smtpc__bulk_conn *c);
/* Its deadline passed. */
void smtpc__bulk_conn_timeout(smtpc__bulk_conn *c);
/* Ready, nothing in flight. */
bool smtpc__bulk_conn_idle(const smtpc__bulk_conn *c);
/* Waiting for the reply to a final dot only (cancel lets it come). */
bool smtpc__bulk_conn_awaits_dot(const smtpc__bulk_conn *c);
/* Something of a message is in flight (its envelope or body). */
bool smtpc__bulk_conn_busy(const smtpc__bulk_conn *c);

/* ---- resolve.c ---------------------------------------------------------------------------- */
/* "host" of b->host without the brackets of an IPv6 literal. */
void smtpc__bulk_target_host(const smtpc_bulk *b, char *out, size_t n);
/* Resolves now when the name is a literal (0), else starts the resolver
 * thread (0, b->resolving) or fails (an error, b->err set). */
int smtpc__bulk_resolve_start(smtpc_bulk *b);
/* The resolver thread said it is done. */
void smtpc__bulk_resolved(smtpc_bulk *b);
/* Joins the thread and closes its pipe (smtpc_bulk_free). */
void smtpc__bulk_resolve_stop(smtpc_bulk *b);

/* ---- loop.c ---------------------------------------------------------------------------------- */
void smtpc__bulk_after_action(smtpc_bulk *b);
void smtpc__bulk_fire_timers(smtpc_bulk *b);
/* Frees the connections closed since the last call. */
void smtpc__bulk_reap(smtpc_bulk *b);

/* bulk.c: with trace_body, body bytes p[0..n) of c's message to the trace
 * as lines; n 0: the message's end. */
void smtpc__bulk_trace_body(smtpc__bulk_conn *c, const void *p, size_t n);

#endif
