/* Internals shared by the client's files (client*.c): the client, its
 * results, a send's identity and body reader, and the functions one file
 * of the client gives the others. The outbox sees only client/deliver.h,
 * the pool only client/pool_int.h. */
#ifndef SMTPC_CLIENT_CLIENT_INT_H
#define SMTPC_CLIENT_CLIENT_INT_H

#include <smtpc/client.h>
#include <smtpc/dkim.h>

#include "client/deliver.h"
#include "client/pool_int.h"
#include "client/session_int.h"
#include "conn/conn_opts.h"
#include "util/linetap.h"
#include "util/util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

static inline const char *smtpc__nz(const char *s) { return s ? s : ""; }

typedef struct smtpc__rcpt_res {
    char *addr;
    bool accepted;
    int code;
    char enh[16];
    char *text;
    unsigned attempts; /* transactions it was offered in */
    bool final;        /* delivered, refused with 5xx or unknown: never offered again */
    bool delivered;
} smtpc__rcpt_res;

struct smtpc_result {
    int status;
    char errmsg[SMTPC__ERRMSG_MAX];
    size_t nrcpt;
    smtpc__rcpt_res *r;
    int code;
    char enh[16];
    char *text;
    char queue_id[128];
    char msgid[256];
    char tls_version[16];
    char tls_cipher[64];
    char mech[32];
    bool tls_verified;
    smtpc_tls_mode security; /* what the connection used */
    int64_t t_connect, t_tls, t_auth, t_xfer;
    unsigned attempts;
    bool reused;
};

struct smtpc_client {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_bool busy;
    atomic_bool canceled;
    smtpc_session *cur; /* the session a send is using, for cancel (under mu) */

    /* every connection setting (its credentials: the fixed ones; the
     * callbacks below give a send's identity instead) */
    smtpc_conn_opts o;
    smtpc_credential_cb cred_cb;
    void *cred_ud;
    smtpc_identity_cb ident_cb;
    void *ident_ud;
    int64_t timeout_ms;  /* per attempt */
    int64_t deadline_ms; /* per connection, from its connect */
    smtpc_delivery delivery;
    char *dir;
    bool strict;
    smtpc_dsn_policy dsn_policy;
    bool use_bdat;
    smtpc_retry_policy retry;
    smtpc_pool *own_pool;
    smtpc_pool *pool;
    smtpc__errmsg err;
    /* the caller's trace (connections and, with trace_body, messages) and
     * upload progress */
    smtpc_trace_cb trace_cb;
    void *trace_ud;
    bool trace_body;
    smtpc_progress_cb progress_cb;
    void *progress_ud;
    const smtpc_dkim_signer *dkim; /* borrowed; NULL: no signing (client_dkim.c) */

    /* async: one worker thread, started at the first send_async */
    pthread_t thr;
    bool thr_started;
    bool stop;
    bool job;
    smtpc_message *job_m;
    const smtpc_send_params *job_params;
    smtpc_send_cb job_cb;
    void *job_ud;
};

/* The identity a send authenticates with, asked once per send before a
 * pooled connection is chosen (a callback may answer differently each
 * time). Wiped after the send. */
typedef struct smtpc__ident {
    const char *user; /* NULL = no AUTH */
    const char *pass; /* NULL = none (e.g. EXTERNAL) */
    char ubuf[256];
    char pbuf[1024];
    char hash[65];    /* hex of SHA-256(salt || pass); "-" without a password */
} smtpc__ident;

/* A body reader that remembers whether it was read, and shows what it
 * reads to the client's trace and progress callbacks. */
typedef struct smtpc__body_run {
    const smtpc__body *b;
    smtpc_message_writer *w;
    const uint8_t *mp;
    size_t mleft;
    bool touched;
    const smtpc_client *c;  /* NULL: nobody watches (pickup, outbox) */
    smtpc__linetap *tap;    /* the trace's message lines (trace_body) */
    uint64_t done, total;   /* progress */
    smtpc_dkim_reader *dk; /* signed: the fields, then the body (client_dkim.c) */
    bool dk_in;            /* the reader is reading the body itself */
    unsigned dk_wflags;    /* the writer's flags, to write the message again */
} smtpc__body_run;

/* ---- client.c ---- */
/* The default retry policy: one attempt. */
void smtpc__retry_default(smtpc_retry_policy *p);
/* The session a send uses now (NULL: none), for cancel; a cancel that
 * came first is passed on to it. */
void smtpc__client_publish(smtpc_client *c, smtpc_session *s);

/* ---- client_result.c ---- */
/* A result with one entry per recipient of b, or NULL. */
smtpc_result *smtpc__result_for(const smtpc__body *b);
/* What the connection s used (TLS version, cipher, verification, mode;
 * the AUTH mechanism) into res. */
void smtpc__result_security(smtpc_result *res, const smtpc_session *s);
/* The outcome of a transaction on s into res: recipient j of it is
 * res->r[idx ? idx[j] : j]; the final reply and queue id unless the
 * message was delivered to some already and this retry failed. */
void smtpc__client_take_results(smtpc_client *c, smtpc_session *s, smtpc_result *res, int rc,
                                const size_t *idx);

/* ---- client_conn.c ---- */
/* Asks the identity for a send (callbacks included) and hashes its
 * secret; wipe it with smtpc__ident_wipe. */
int smtpc__client_identity(smtpc_client *c, smtpc__ident *id);
void smtpc__ident_wipe(smtpc__ident *id);
/* The pool key of a send with identity id (malloc'ed; NULL: no memory). */
char *smtpc__client_pool_key(const smtpc_client *c, const smtpc__ident *id);
/* A pooled connection for key, re-used (*reused) or newly opened (its
 * timings into res). */
int smtpc__client_get_conn(smtpc_client *c, const char *key, const smtpc__ident *id, smtpc_result *res,
                           smtpc__pconn **out, bool *reused);

/* ---- client_dkim.c ---- */
/* With a signer set: signs the body prepared in run (the first pass) and
 * makes run read the fields, then the body; mo's SIZE grows by the fields. */
int smtpc__client_dkim_prep(smtpc_client *c, smtpc__body_run *run, smtpc_mail_opts *mo);
/* run's read while it is signed. */
ssize_t smtpc__client_dkim_read(smtpc__body_run *run, void *buf, size_t len);

/* ---- client_send.c ---- */
ssize_t smtpc__body_read(void *ud, void *buf, size_t len);
/* Frees what prep_body made for run (its writer, its trace's line buffer). */
void smtpc__body_run_free(smtpc__body_run *run);
/* The session's trace for the client's callback while the client uses pc
 * (on), or none (off: before a connection of a shared pool goes back). */
void smtpc__client_trace_conn(const smtpc_client *c, smtpc_session *s, bool on);
/* The body reader and MAIL parameters for b on the server of s. */
int smtpc__client_prep_body(smtpc_client *c, smtpc_session *s, const smtpc__body *b, smtpc__body_run *run,
                            smtpc_mail_opts *mo);
/* A cancel after the final dot is SMTPC_EUNKNOWN: the message may be delivered. */
int smtpc__client_unknown_after_dot(smtpc_client *c, smtpc_session *s, int rc);
/* One attempt: a pooled connection and one transaction (*body_touched:
 * the body was read). */
int smtpc__client_attempt(smtpc_client *c, const smtpc__body *b, const char *key, const smtpc__ident *id,
                          smtpc_result *res, bool *body_touched);
/* A message's envelope into b (*rcpts malloc'ed, its pointers owned by m). */
int smtpc__client_message_envelope(smtpc_client *c, smtpc_message *m, smtpc__body *b, const char ***rcpts);
/* Delivers b by the client's delivery method (network, pickup, outbox). */
int smtpc__client_deliver_any(smtpc_client *c, const smtpc__body *b, smtpc_result **out);

/* ---- client_retry.c ---- */
/* DSN parameters asked for / checked before anything is sent / applied
 * to the MAIL and RCPT options of b (*ro malloc'ed). */
bool smtpc__want_dsn(const smtpc_send_params *p);
int smtpc__client_check_params(smtpc_client *c, const smtpc_send_params *p, size_t nrcpts);
int smtpc__dsn_apply(smtpc_client *c, const smtpc__body *b, smtpc_mail_opts *mo, smtpc_rcpt_opts **ro);
/* Attempts k0, k0+1 ... per the retry policy for the recipients of res not
 * final yet; k0 > 1 continues after an attempt that ended with last. */
int smtpc__client_deliver_attempts(smtpc_client *c, const smtpc__body *b, bool use_retry, smtpc_result *res,
                                   unsigned k0, int last);

#endif
