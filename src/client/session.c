/* The blocking session: one SMTP connection driven over the sans-IO engine.
 *
 * Every public call follows the same shape: queue bytes in the engine, write
 * the engine's whole output at once (coalesced: never a write per line), read
 * whatever the transport has and feed it to the engine, until the event the
 * call waits for. All waits go through smtpc__wait_fd against an absolute
 * monotonic deadline (the per-step timeout, clipped to the overall deadline)
 * and the session's cancel eventfd.
 *
 * Reads are not buffered here: each read is fed to the engine at once, so
 * nothing is held past a STARTTLS 220 (the engine rejects extra bytes).
 * The opening (EHLO/HELO, STARTTLS, AUTH), whole in smtpc_session_open or
 * one step at a time, is the connection opener's (src/engine/opener.h);
 * drive() at the end is its blocking loop. On its "TLS now": wrap s->t in
 * the TLS layer (the new layer owns the old chain as `inner`) and drive
 * smtpc__transport_handshake with wait_want().
 *
 * Errors that leave the protocol state unknown (network, timeout, cancel,
 * protocol violation, 421) close the connection; 4xx/5xx replies to a
 * command and invalid arguments do not. */
#include <smtpc/session.h>

#include "engine/engine.h"
#include "engine/opener.h"
#include "engine/sasl.h"
#include "net/proxy.h"
#include "net/tls.h"
#include "net/transport.h"
#include "client/session_int.h"
#include "util/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

/* RFC 5321 §4.5.3.2 timeouts, capped for interactive use (see session.h). */
#define DEF_CONNECT_MS 30000
#define DEF_GREETING_MS 60000
#define DEF_COMMAND_MS 60000
#define DEF_DATA_MS 120000
#define BODY_CHUNK 16384
#define RBUF_SIZE 4096
#define DEF_AUTO_MS SMTPC__AUTO_MS_DEFAULT

struct smtpc_session {
    /* options: the connection's (timeouts 0 = the defaults above, at use),
     * then the session's own */
    smtpc_conn_opts o;
    int64_t overall_ms;
    size_t max_line, max_reply;
    smtpc__tls_ctx *tls_ctx; /* built at connect from o; dropped when a TLS setting changes */
    smtpc_trace_cb trace_cb;
    void *trace_ud;
    size_t dot_left; /* output octets up to the end of a final dot not all written yet */

    /* connection */
    smtpc__engine *e;
    smtpc__transport *t;
    char hostport[300];
    int64_t overall_deadline; /* absolute, -1 = none */
    char tls_name[256];       /* the name the certificate must match */
    uint16_t port;
    smtpc_tls_mode security_used;
    bool has_tls_info;
    smtpc_tls_info tls_info;
    smtpc__sasl_mech auth_used;
    char ehlo_used[300];      /* the name of the last EHLO (sent again after STARTTLS) */
    char mechbuf[256];
    bool tls_spoke;           /* the last handshake failed after the server spoke TLS */
    smtpc__reply *greeting;   /* the last connection's greeting */

    /* cancel: the flag is for the checks between steps, the eventfd wakes a
     * poll() in progress. Both are set by smtpc_session_cancel, both only
     * cleared by smtpc_session_rearm. */
    atomic_int canceled;
    int cancel_fd;

    /* results */
    smtpc__reply *reply; /* own copy of the last reply */
    smtpc__errmsg err;
    size_t nrcpt;
    int *rcpt_status;
    smtpc__reply **rcpt_reply;

    /* send_batch: called once a body's end is queued, before it is written */
    int (*body_end_hook)(smtpc_session *s, void *ud);
    void *body_end_ud;
};

/* One wait: its absolute deadline and how to describe its expiry. */
typedef struct op {
    int64_t deadline;
    int64_t ms;
    const char *what; /* "greeting", "reply to EHLO" ... */
    bool overall;     /* the deadline is the overall one */
} op;

/* ---- small helpers -------------------------------------------------------- */

/* The timeouts in effect: the one set, else the default. */
static int64_t ms_or(int64_t ms, int64_t def) { return ms ? ms : def; }
static int64_t connect_ms(const smtpc_session *s) { return ms_or(s->o.connect_ms, DEF_CONNECT_MS); }
static int64_t greeting_ms(const smtpc_session *s) { return ms_or(s->o.greeting_ms, DEF_GREETING_MS); }
static int64_t command_ms(const smtpc_session *s) { return ms_or(s->o.command_ms, DEF_COMMAND_MS); }
static int64_t data_ms(const smtpc_session *s) { return ms_or(s->o.data_ms, DEF_DATA_MS); }
static int64_t auto_ms(const smtpc_session *s) { return ms_or(s->o.auto_ms, DEF_AUTO_MS); }

static void reply_free_own(smtpc__reply *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->nlines; i++) free(r->lines[i]);
    free(r->lines);
    free(r->text);
    free(r);
}

static smtpc__reply *reply_dup(const smtpc__reply *src)
{
    smtpc__reply *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->code = src->code;
    memcpy(r->enhanced, src->enhanced, sizeof r->enhanced);
    r->enhanced[sizeof r->enhanced - 1] = '\0';
    r->text = smtpc__strdup(src->text ? src->text : "");
    r->lines = calloc(src->nlines ? src->nlines : 1, sizeof *r->lines);
    if (!r->text || !r->lines) {
        reply_free_own(r);
        return NULL;
    }
    for (size_t i = 0; i < src->nlines; i++) {
        r->lines[i] = smtpc__strdup(src->lines[i] ? src->lines[i] : "");
        if (!r->lines[i]) {
            reply_free_own(r);
            return NULL;
        }
        r->nlines++;
    }
    return r;
}

static int set_reply(smtpc_session *s, const smtpc__reply *r)
{
    smtpc__reply *c = reply_dup(r);
    if (!c) return SMTPC_ENOMEM;
    reply_free_own(s->reply);
    s->reply = c;
    return 0;
}

static void clear_rcpt_results(smtpc_session *s)
{
    for (size_t i = 0; i < s->nrcpt; i++) reply_free_own(s->rcpt_reply[i]);
    free(s->rcpt_reply);
    free(s->rcpt_status);
    s->rcpt_reply = NULL;
    s->rcpt_status = NULL;
    s->nrcpt = 0;
}

static void fmt_secs(char *dst, size_t n, int64_t ms)
{
    if (ms % 1000 == 0)
        snprintf(dst, n, "%lld s", (long long)(ms / 1000));
    else
        snprintf(dst, n, "%lld.%03lld s", (long long)(ms / 1000), (long long)(ms % 1000));
}

static void close_conn(smtpc_session *s)
{
    smtpc__transport_free(s->t);
    s->t = NULL;
}

static bool is_canceled(smtpc_session *s)
{
    return atomic_load_explicit(&s->canceled, memory_order_acquire) != 0;
}

static int fail_canceled(smtpc_session *s, const char *what)
{
    close_conn(s);
    return smtpc__err(&s->err, SMTPC_ECANCELED, "%s: canceled", what);
}

/* "server replied 554 5.7.1 text" with the server's words escaped. */
static int fail_reply(smtpc_session *s, int code, const smtpc__reply *r, const char *what)
{
    char text[SMTPC__ERRMSG_MAX];
    const char *t = r->text ? r->text : "";
    smtpc__escape_into(text, sizeof text, t, strlen(t));
    return smtpc__err(&s->err, code, "%s: server replied %d%s%s %s", what, r->code,
                      r->enhanced[0] ? " " : "", r->enhanced, text);
}

/* Maps a reply to a status. ok_class is the first digit that means success
 * (2, or 3 for 354). A 421 closes the session. */
static int check_reply(smtpc_session *s, const smtpc__reply *r, int ok_class, const char *what)
{
    int cls = r->code / 100;
    if (r->code == 421) {
        close_conn(s);
        int rc = fail_reply(s, SMTPC_ETEMPFAIL, r, what);
        size_t l = strlen(s->err.text);
        snprintf(s->err.text + l, sizeof s->err.text - l, " (connection closed)");
        return rc;
    }
    if (cls == ok_class) return 0;
    if (cls == 4) return fail_reply(s, SMTPC_ETEMPFAIL, r, what);
    if (cls == 5) return fail_reply(s, SMTPC_EPERMFAIL, r, what);
    /* A positive reply of the wrong kind (354 to MAIL, 250 to DATA): the
     * server and we no longer agree on the state. */
    close_conn(s);
    return fail_reply(s, SMTPC_EPROTO, r, what);
}

static void op_init(smtpc_session *s, op *o, int64_t ms, const char *what)
{
    int64_t now = smtpc__now_ms();
    o->ms = ms;
    o->what = what;
    /* +1: now_ms() truncates, so the real time may already be up to 1 ms
     * past `now`; a timeout must never fire before `ms` has elapsed. */
    o->deadline = now + ms + 1;
    o->overall = false;
    if (s->overall_deadline >= 0 && s->overall_deadline <= o->deadline) {
        o->deadline = s->overall_deadline;
        o->overall = true;
    }
}

static int fail_timeout(smtpc_session *s, const op *o)
{
    char secs[32];
    close_conn(s);
    if (o->overall) {
        fmt_secs(secs, sizeof secs, s->overall_ms);
        return smtpc__err(&s->err, SMTPC_ETIMEDOUT, "%s: overall deadline of %s expired", o->what,
                          secs);
    }
    fmt_secs(secs, sizeof secs, o->ms);
    return smtpc__err(&s->err, SMTPC_ETIMEDOUT, "%s timed out after %s", o->what, secs);
}

/* Waits for the transport to be ready for `want`; 0 or a closing error. */
static int wait_want(smtpc_session *s, int want, const op *o)
{
    int rc = smtpc__wait_fd(s->t->fd, want, o->deadline, s->cancel_fd);
    if (rc == 0) return is_canceled(s) ? fail_canceled(s, o->what) : 0;
    if (rc == SMTPC_ECANCELED) return fail_canceled(s, o->what);
    if (rc == SMTPC_ETIMEDOUT) return fail_timeout(s, o);
    close_conn(s);
    return smtpc__err(&s->err, rc, "%s: poll failed", o->what);
}

/* Reads what is there (waiting when nothing is, unless nowait) and feeds it
 * to the engine. 0 when something was fed (or nowait and nothing there). */
static int read_some(smtpc_session *s, const op *o, bool nowait)
{
    uint8_t buf[RBUF_SIZE];
    for (;;) {
        if (!s->t) return smtpc__err(&s->err, SMTPC_ECLOSED, "%s: not connected", o->what);
        if (is_canceled(s)) return fail_canceled(s, o->what);
        int want = 0;
        ssize_t n = smtpc__transport_read(s->t, buf, sizeof buf, &want);
        if (n == SMTPC_EAGAIN) {
            if (nowait) return 0;
            int rc = wait_want(s, want, o);
            if (rc) return rc;
            continue;
        }
        if (n == 0) {
            close_conn(s);
            return smtpc__err(&s->err, SMTPC_ECLOSED, "%s: the server closed the connection",
                              o->what);
        }
        if (n < 0) {
            int rc = (int)n;
            char detail[SMTPC__ERRMSG_MAX];
            smtpc__strlcpy(detail, s->t->err.text, sizeof detail);
            close_conn(s);
            return smtpc__err(&s->err, rc, "%s: %s: %s", o->what, s->hostport, detail);
        }
        size_t used = 0;
        int rc = smtpc__engine_feed(s->e, buf, (size_t)n, &used);
        if (rc == 0 && used < (size_t)n) rc = SMTPC_EPROTO; /* bytes after STARTTLS's 220 */
        if (rc) {
            close_conn(s);
            return smtpc__err(&s->err, rc, "%s: %s", o->what,
                              used < (size_t)n && rc == SMTPC_EPROTO && !smtpc__engine_errmsg(s->e)[0]
                                  ? "unexpected data from the server"
                                  : smtpc__engine_errmsg(s->e));
        }
        return 0;
    }
}

/* A write failed: the server may have said why before it closed (552
 * message too big in the middle of DATA, 421). Such a reply answers no
 * pending command, so the engine calls it a violation; its last reply still
 * has it. Returns the status of that reply, or 0 when there is none. */
static int late_reply(smtpc_session *s, const char *what)
{
    uint8_t buf[RBUF_SIZE];
    int want = 0;
    const smtpc__reply *before = smtpc__engine_last_reply(s->e);
    ssize_t n = smtpc__transport_read(s->t, buf, sizeof buf, &want);
    if (n <= 0) return 0;
    size_t used = 0;
    (void)smtpc__engine_feed(s->e, buf, (size_t)n, &used);
    const smtpc__reply *r = smtpc__engine_last_reply(s->e);
    if (!r || r == before || set_reply(s, r) != 0) return 0;
    int code = s->reply->code / 100 == 4 ? SMTPC_ETEMPFAIL
               : s->reply->code / 100 == 5 ? SMTPC_EPERMFAIL : SMTPC_EPROTO;
    fail_reply(s, code, s->reply, what);
    size_t l = strlen(s->err.text);
    snprintf(s->err.text + l, sizeof s->err.text - l, " (connection closed)");
    return code;
}

/* Writes the engine's whole output. While the socket is full it also reads
 * (when read_too), so a server answering pipelined BDAT chunks can never
 * dead-lock with us. */
static int flush(smtpc_session *s, const op *o, bool read_too)
{
    for (;;) {
        const uint8_t *p;
        size_t n = smtpc__engine_output(s->e, &p);
        if (n == 0) return 0;
        if (!s->t) return smtpc__err(&s->err, SMTPC_ECLOSED, "%s: not connected", o->what);
        if (is_canceled(s)) return fail_canceled(s, o->what);
        int want = 0;
        ssize_t w = smtpc__transport_write(s->t, p, n, &want);
        if (w > 0) {
            smtpc__engine_output_advance(s->e, (size_t)w);
            s->dot_left = (size_t)w < s->dot_left ? s->dot_left - (size_t)w : 0;
            continue;
        }
        if (w == SMTPC_EAGAIN) {
            int rc = wait_want(s, want | (read_too ? SMTPC__WANT_READ : 0), o);
            if (rc) return rc;
            if (read_too) {
                rc = read_some(s, o, true);
                if (rc) return rc;
            }
            continue;
        }
        char detail[SMTPC__ERRMSG_MAX];
        smtpc__strlcpy(detail, s->t->err.text, sizeof detail);
        int rc = late_reply(s, o->what);
        close_conn(s);
        if (rc) return rc;
        return smtpc__err(&s->err, w < 0 ? (int)w : SMTPC_ENETWORK, "%s: %s: %s", o->what,
                          s->hostport, detail);
    }
}

/* Waits for the next engine event. */
static int next_event(smtpc_session *s, const op *o, smtpc__event *ev)
{
    for (;;) {
        if (smtpc__engine_next_event(s->e, ev) == 1) return 0;
        int rc = read_some(s, o, false);
        if (rc) return rc;
    }
}

/* Common entry checks: the session exists, is not canceled, is connected,
 * and the server did not shut down in between: a 421 that came with the
 * previous reply (RFC 5321 §3.8) is reported now, with its text. */
static int enter(smtpc_session *s, bool need_conn, const char *what)
{
    if (!s) return SMTPC_EINVAL;
    smtpc__err_clear(&s->err);
    if (is_canceled(s)) return fail_canceled(s, what);
    if (need_conn && !s->t)
        return smtpc__err(&s->err, SMTPC_ESTATE, "%s: not connected", what);
    if (need_conn) {
        smtpc__event ev;
        while (smtpc__engine_next_event(s->e, &ev) == 1) {
            if (ev.reply && ev.reply->code == 421) {
                int rc = set_reply(s, ev.reply);
                if (rc) return rc;
                return check_reply(s, s->reply, 2, what);
            }
        }
        if (smtpc__engine_closing(s->e)) {
            close_conn(s);
            return smtpc__err(&s->err, SMTPC_ECLOSED, "%s: the connection is closing", what);
        }
    }
    return 0;
}

/* Sends what the engine queued, waits for one reply, stores it. */
static int exchange(smtpc_session *s, int64_t ms, const char *what, const smtpc__reply **out)
{
    op o;
    op_init(s, &o, ms, what);
    int rc = flush(s, &o, false);
    if (rc) return rc;
    smtpc__event ev;
    for (;;) {
        rc = next_event(s, &o, &ev);
        if (rc) return rc;
        if (ev.reply && (ev.type == SMTPC__EV_REPLY || ev.type == SMTPC__EV_TLS_READY)) break;
    }
    rc = set_reply(s, ev.reply);
    if (rc) return smtpc__err(&s->err, rc, "%s: out of memory", what);
    *out = s->reply;
    return 0;
}

/* Maps the engine's refusal to queue a command (nothing was sent). */
static int queue_failed(smtpc_session *s, int rc, const char *what)
{
    const char *m = smtpc__engine_errmsg(s->e);
    size_t wl = strlen(what);
    if (strncmp(m, what, wl) == 0 && m[wl] == ':') return smtpc__err(&s->err, rc, "%s", m);
    return smtpc__err(&s->err, rc, "%s: %s", what, m);
}

/* ---- lifetime and options ------------------------------------------------- */

SMTPC_API int smtpc_session_new(smtpc_session **out)
{
    if (!out) return SMTPC_EINVAL;
    smtpc_session *s = calloc(1, sizeof *s);
    if (!s) return SMTPC_ENOMEM;
    s->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->cancel_fd < 0) {
        free(s);
        return SMTPC_EIO;
    }
    atomic_init(&s->canceled, 0);
    smtpc__conn_opts_init(&s->o);
    s->overall_ms = 0;
    s->overall_deadline = -1;
    s->security_used = SMTPC_TLS_MODE_NONE;
    *out = s;
    return 0;
}

SMTPC_API void smtpc_session_free(smtpc_session *s)
{
    if (!s) return;
    close_conn(s);
    smtpc__engine_free(s->e);
    reply_free_own(s->reply);
    reply_free_own(s->greeting);
    clear_rcpt_results(s);
    smtpc__conn_opts_clear(&s->o);
    smtpc__tls_ctx_free(s->tls_ctx);
    close(s->cancel_fd);
    free(s);
}

static void tls_ctx_drop(smtpc_session *s)
{
    smtpc__tls_ctx_free(s->tls_ctx);
    s->tls_ctx = NULL;
}

/* The connection options are the judge of every value (smtpc_conn_opts):
 * each setter below is theirs, with the detail on the session. */
static smtpc_conn_opts *opts(smtpc_session *s)
{
    smtpc__err_clear(&s->o.err);
    return &s->o;
}

/* A setter of the options returned rc: its detail to the session; a TLS
 * setting that changed drops the TLS context built from the old ones. */
static int opt_done(smtpc_session *s, int rc, bool tls)
{
    if (rc) return smtpc__conn_opts_fail(&s->err, &s->o, rc);
    if (tls) tls_ctx_drop(s);
    return 0;
}

#define OPT_SET(s, call, tls) ((s) ? opt_done((s), (call), (tls)) : SMTPC_EINVAL)

SMTPC_API int smtpc_session_set_conn_opts(smtpc_session *s, const smtpc_conn_opts *o)
{
    if (!s) return SMTPC_EINVAL;
    if (!o) return smtpc__err(&s->err, SMTPC_EINVAL, "no connection options");
    if (smtpc__conn_opts_copy(&s->o, o)) return smtpc__err(&s->err, SMTPC_ENOMEM, "out of memory");
    tls_ctx_drop(s);
    return 0;
}

SMTPC_API int smtpc_session_set_connect_timeout_ms(smtpc_session *s, int64_t ms)
{
    return OPT_SET(s, smtpc_conn_opts_set_connect_timeout_ms(opts(s), ms), false);
}
SMTPC_API int smtpc_session_set_greeting_timeout_ms(smtpc_session *s, int64_t ms)
{
    return OPT_SET(s, smtpc_conn_opts_set_greeting_timeout_ms(opts(s), ms), false);
}
SMTPC_API int smtpc_session_set_command_timeout_ms(smtpc_session *s, int64_t ms)
{
    return OPT_SET(s, smtpc_conn_opts_set_command_timeout_ms(opts(s), ms), false);
}
SMTPC_API int smtpc_session_set_data_timeout_ms(smtpc_session *s, int64_t ms)
{
    return OPT_SET(s, smtpc_conn_opts_set_data_timeout_ms(opts(s), ms), false);
}
SMTPC_API int smtpc_session_set_deadline_ms(smtpc_session *s, int64_t ms)
{
    if (!s) return SMTPC_EINVAL;
    if (ms < 0) return smtpc__err(&s->err, SMTPC_EINVAL, "negative timeout");
    s->overall_ms = ms;
    return 0;
}

SMTPC_API int smtpc_session_set_ehlo_name(smtpc_session *s, const char *name)
{
    return OPT_SET(s, smtpc_conn_opts_set_ehlo_name(opts(s), name), false);
}

SMTPC_API int smtpc_session_set_bind(smtpc_session *s, const char *addr, uint16_t port)
{
    return OPT_SET(s, smtpc_conn_opts_set_bind(opts(s), addr, port), false);
}

SMTPC_API int smtpc_session_set_family(smtpc_session *s, smtpc_family family)
{
    return OPT_SET(s, smtpc_conn_opts_set_family(opts(s), family), false);
}

SMTPC_API int smtpc_session_set_proxy(smtpc_session *s, const smtpc_proxy *p)
{
    return OPT_SET(s, smtpc_conn_opts_set_proxy(opts(s), p), false);
}

SMTPC_API int smtpc_session_set_proxy_url(smtpc_session *s, const char *url)
{
    return OPT_SET(s, smtpc_conn_opts_set_proxy_url(opts(s), url), false);
}

SMTPC_API int smtpc_session_set_reply_limits(smtpc_session *s, size_t max_line, size_t max_reply)
{
    if (!s) return SMTPC_EINVAL;
    s->max_line = max_line;
    s->max_reply = max_reply;
    return 0;
}

/* ---- cancel ------------------------------------------------------------------ */

SMTPC_API void smtpc_session_cancel(smtpc_session *s)
{
    if (!s) return;
    /* Only an atomic store and write(2): async-signal-safe, any thread. */
    atomic_store_explicit(&s->canceled, 1, memory_order_release);
    uint64_t one = 1;
    ssize_t w = write(s->cancel_fd, &one, sizeof one);
    (void)w; /* EAGAIN only when the counter is saturated: still signalled */
}

SMTPC_API void smtpc_session_rearm(smtpc_session *s)
{
    if (!s) return;
    uint64_t v;
    while (read(s->cancel_fd, &v, sizeof v) > 0) {
    }
    atomic_store_explicit(&s->canceled, 0, memory_order_release);
}

/* ---- trace ---------------------------------------------------------------------------------- */

static void trace_thunk(void *ud, smtpc__trace_dir dir, const char *line, size_t len, bool secret)
{
    smtpc_session *s = ud;
    if (!s->trace_cb) return;
    smtpc_trace_dir d = dir == SMTPC__TRACE_CLIENT ? SMTPC_TRACE_SENT : SMTPC_TRACE_RECEIVED;
    if (!secret) {
        s->trace_cb(s->trace_ud, d, line, len);
        return;
    }
    char red[96];
    size_t n = smtpc__trace_redact(line, len, red, sizeof red);
    s->trace_cb(s->trace_ud, d, red, n);
}

__attribute__((format(printf, 2, 3))) static void trace_info(smtpc_session *s, const char *fmt, ...)
{
    if (!s->trace_cb) return;
    char buf[SMTPC__ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    size_t l = (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1;
    s->trace_cb(s->trace_ud, SMTPC_TRACE_INFO, buf, l);
}

/* ---- TLS ------------------------------------------------------------------------------------ */

static int tls_ctx_ensure(smtpc_session *s)
{
    if (s->tls_ctx) return 0;
    smtpc__tls_config cfg;
    smtpc__conn_opts_tls_config(&s->o, &cfg);
    return smtpc__tls_ctx_new(&s->tls_ctx, &cfg, &s->err);
}

/* Implicit TLS (before the greeting) or STARTTLS (after its 220). */
static int tls_handshake(smtpc_session *s, const op *o)
{
    int rc = tls_ctx_ensure(s);
    if (rc) {
        close_conn(s);
        return rc;
    }
    smtpc__transport *tt = NULL;
    rc = smtpc__tls_wrap(&tt, s->t, s->tls_ctx, s->tls_name, NULL, &s->err);
    if (rc) {
        close_conn(s);
        return rc;
    }
    s->t = tt;
    for (;;) {
        if (is_canceled(s)) return fail_canceled(s, o->what);
        int want = 0;
        rc = smtpc__transport_handshake(s->t, &want);
        if (rc == 0) break;
        if (rc == SMTPC_EAGAIN) {
            s->tls_spoke = smtpc__tls_peer_spoke_tls(s->t); /* for a TLS server that stalls */
            rc = wait_want(s, want, o);
            if (rc) return rc;
            continue;
        }
        char detail[SMTPC__ERRMSG_MAX];
        smtpc__strlcpy(detail, s->t->err.text[0] ? s->t->err.text : smtpc_strerror(rc), sizeof detail);
        /* the server answered with a TLS record: whatever failed after that
         * (certificate, pin, alert, bad record, versions), AUTO must not go
         * on to try plaintext; only a port that does not speak TLS (a
         * plaintext greeting, nothing before the close) falls back */
        s->tls_spoke = smtpc__tls_peer_spoke_tls(s->t);
        close_conn(s);
        /* a close or reset in the middle of the handshake is a TLS failure too */
        if (rc == SMTPC_ECLOSED || rc == SMTPC_ENETWORK) rc = SMTPC_ETLS;
        trace_info(s, "%s", detail);
        return smtpc__err(&s->err, rc, "%s: %s", s->hostport, detail);
    }
    const smtpc_tls_info *i = smtpc__tls_info(s->t);
    if (i) {
        s->tls_info = *i;
        s->has_tls_info = true;
        trace_info(s, "TLS handshake: %s %s, peer %s, issuer %s, %s%s%s", i->version, i->cipher,
                   i->subject, i->issuer, i->verified ? "verified" : "NOT verified",
                   i->verified ? "" : ": ", i->verified ? "" : i->verify_message);
    }
    return 0;
}

/* ---- connect ------------------------------------------------------------------ */

/* One connection attempt: TCP, TLS when implicit, the greeting. attempt_ms
 * > 0 (AUTO) bounds the handshake and the greeting. *tcp_ok tells whether
 * the TCP connection was made (AUTO retries only then). */
static int connect_once(smtpc_session *s, const char *host, uint16_t port, bool implicit,
                        int64_t attempt_ms, bool *tcp_ok)
{
    int rc;
    *tcp_ok = false;
    reply_free_own(s->reply);
    s->reply = NULL;
    s->has_tls_info = false;
    s->auth_used = SMTPC__SASL_NONE;
    s->security_used = SMTPC_TLS_MODE_NONE;

    smtpc__engine_opts eo;
    memset(&eo, 0, sizeof eo);
    eo.limits.max_line = s->max_line;
    eo.limits.max_bytes = s->max_reply;
    smtpc__engine *e = NULL;
    rc = smtpc__engine_new(&e, &eo);
    if (rc) return smtpc__err(&s->err, rc, "connect: cannot create the protocol engine");
    smtpc__engine_free(s->e);
    s->e = e;
    /* Only while someone listens: formatting every reply line for nobody
     * cost ~4,000 instructions per message. */
    smtpc__engine_set_trace(s->e, s->trace_cb ? trace_thunk : NULL, s);

    op o;
    op_init(s, &o, connect_ms(s), "connect");
    smtpc__tcp_opts to;
    memset(&to, 0, sizeof to);
    to.bind_addr = s->o.bind_addr;
    to.bind_port = s->o.bind_port;
    to.family = s->o.family;
    to.deadline_ms = o.deadline;
    to.cancel_fd = s->cancel_fd;
    if (s->o.proxy) {
        trace_info(s, "connecting to %s through proxy %s", s->hostport, smtpc_proxy_redacted(s->o.proxy));
        rc = smtpc__proxy_connect(&s->t, s->o.proxy, host, port, &to, NULL, &s->err);
    } else {
        rc = smtpc__tcp_connect(&s->t, host, port, &to, &s->err);
    }
    if (rc) {
        if (rc == SMTPC_ETIMEDOUT) {
            char secs[32], via[SMTPC__ERRMSG_MAX + 4] = "";
            fmt_secs(secs, sizeof secs, o.overall ? s->overall_ms : o.ms);
            /* the proxy's message says which stage hung (already redacted) */
            if (s->o.proxy) snprintf(via, sizeof via, " (%s)", s->err.text);
            smtpc__err(&s->err, rc, "connect to %s: timed out after %s%s", s->hostport, secs, via);
        }
        return rc;
    }
    *tcp_ok = true;
    int64_t greet_ms = attempt_ms > 0 && attempt_ms < greeting_ms(s) ? attempt_ms : greeting_ms(s);
    if (implicit) {
        op_init(s, &o, attempt_ms > 0 ? attempt_ms : command_ms(s), "TLS handshake");
        rc = tls_handshake(s, &o);
        if (rc) return rc;
        s->security_used = SMTPC_TLS_MODE_IMPLICIT;
    }

    /* The default EHLO name's lookup (once per process; ~0.15 ms the first
     * time, for the resolver's set-up) while the greeting is on its way. */
    if (!s->o.ehlo_name) smtpc__local_fqdn_lookup();
    rc = smtpc__engine_expect_greeting(s->e);
    if (rc) {
        close_conn(s);
        return queue_failed(s, rc, "greeting");
    }
    const smtpc__reply *r;
    rc = exchange(s, greet_ms, "greeting", &r);
    if (rc) return rc;
    reply_free_own(s->greeting);
    s->greeting = reply_dup(r);
    if (r->code != 220) {
        /* 554 (or anything else): no service here. RFC 5321 §3.1 lets the
         * client close now; the reply is kept for the caller. */
        rc = check_reply(s, r, 2, "greeting");
        if (rc == 0) rc = fail_reply(s, SMTPC_EPROTO, r, "greeting");
        close_conn(s);
        return rc;
    }
    return 0;
}

/* connect with the TLS mode m (the one set, or open's effective one). */
static int connect_mode(smtpc_session *s, const char *host, uint16_t port, smtpc_tls_mode m)
{
    int rc = enter(s, false, "connect");
    if (rc) return rc;
    if (s->t) return smtpc__err(&s->err, SMTPC_ESTATE, "connect: already connected");
    if (!host || !*host || smtpc__has_ctl(host) || strlen(host) >= sizeof s->tls_name)
        return smtpc__err(&s->err, SMTPC_EINVAL, "connect: invalid host name");

    reply_free_own(s->reply);
    s->reply = NULL;
    clear_rcpt_results(s);
    if (strchr(host, ':'))
        snprintf(s->hostport, sizeof s->hostport, "[%s]:%u", host, (unsigned)port);
    else
        snprintf(s->hostport, sizeof s->hostport, "%s:%u", host, (unsigned)port);
    smtpc__strlcpy(s->tls_name, s->o.tls_name ? s->o.tls_name : host, sizeof s->tls_name);
    s->port = port;
    reply_free_own(s->greeting);
    s->greeting = NULL;
    s->has_tls_info = false;
    s->security_used = SMTPC_TLS_MODE_NONE;
    s->auth_used = SMTPC__SASL_NONE;
    s->overall_deadline = s->overall_ms > 0 ? smtpc__now_ms() + s->overall_ms + 1 : -1;

    bool implicit = m == SMTPC_TLS_MODE_IMPLICIT || (m == SMTPC_TLS_MODE_DEFAULT && port == 465);
    if (implicit || m == SMTPC_TLS_MODE_AUTO || m == SMTPC_TLS_MODE_STARTTLS ||
        m == SMTPC_TLS_MODE_STARTTLS_OPTIONAL) {
        rc = tls_ctx_ensure(s); /* configuration errors before any network activity */
        if (rc) return rc;
    }
    bool tcp_ok;
    if (m != SMTPC_TLS_MODE_AUTO) return connect_once(s, host, port, implicit, 0, &tcp_ok);

    /* AUTO: implicit TLS first (a plaintext server answers our ClientHello
     * with its greeting: the handshake fails at once), then plaintext (an
     * implicit-TLS server says nothing to a plaintext client: the short
     * greeting timeout ends that). */
    s->tls_spoke = false;
    rc = connect_once(s, host, port, true, auto_ms(s), &tcp_ok);
    if (rc == 0 || !tcp_ok || s->tls_spoke || rc == SMTPC_ECANCELED || rc == SMTPC_EPERMFAIL ||
        rc == SMTPC_ETEMPFAIL || (s->overall_deadline >= 0 && smtpc__now_ms() >= s->overall_deadline))
        return rc;
    char first[SMTPC__ERRMSG_MAX];
    smtpc__strlcpy(first, s->err.text, sizeof first);
    close_conn(s);
    trace_info(s, "auto: implicit TLS failed (%s); trying plaintext + STARTTLS", first);
    rc = connect_once(s, host, port, false, auto_ms(s), &tcp_ok);
    if (rc) {
        char second[SMTPC__ERRMSG_MAX];
        smtpc__strlcpy(second, s->err.text, sizeof second);
        smtpc__err(&s->err, rc, "auto: implicit TLS: %s; plaintext: %s", first, second);
    }
    return rc;
}

SMTPC_API int smtpc_session_connect(smtpc_session *s, const char *host, uint16_t port)
{
    return s ? connect_mode(s, host, port, s->o.tls_mode) : SMTPC_EINVAL;
}

/* ---- EHLO / HELO ---------------------------------------------------------------- */

static int one_step(smtpc_session *s, smtpc__open_step step, const char *what, const char *name, bool helo);

/* The opener's EHLO step (HELO on 500/502), as smtpc_session_open's. */
SMTPC_API int smtpc_session_ehlo(smtpc_session *s, const char *name)
{
    return one_step(s, SMTPC__OPEN_STEP_EHLO, "EHLO", name, false);
}

SMTPC_API int smtpc_session_helo(smtpc_session *s, const char *name)
{
    return one_step(s, SMTPC__OPEN_STEP_EHLO, "HELO", name, true);
}

/* ---- envelope ------------------------------------------------------------------- */

static void mail_params(smtpc__mail_params *p, const smtpc_mail_opts *o)
{
    memset(p, 0, sizeof *p);
    if (!o) return;
    p->size = o->size;
    p->body = o->body_8bitmime ? SMTPC__BODY_8BITMIME : SMTPC__BODY_DEFAULT;
    p->smtputf8 = o->smtputf8 != 0;
    p->dsn_ret = o->dsn_ret;
    p->dsn_envid = o->dsn_envid;
}

static void rcpt_params(smtpc__rcpt_params *p, const smtpc_rcpt_opts *o)
{
    memset(p, 0, sizeof *p);
    if (!o) return;
    p->dsn_notify = o->dsn_notify;
    p->dsn_orcpt = o->dsn_orcpt;
}

SMTPC_API int smtpc_session_mail_from(smtpc_session *s, const char *from, const smtpc_mail_opts *opts)
{
    int rc = enter(s, true, "MAIL");
    if (rc) return rc;
    if (!from) return smtpc__err(&s->err, SMTPC_EINVAL, "MAIL: no sender");
    smtpc__mail_params p;
    mail_params(&p, opts);
    rc = smtpc__engine_mail(s->e, from, opts ? &p : NULL);
    if (rc) return queue_failed(s, rc, "MAIL");
    const smtpc__reply *r;
    rc = exchange(s, command_ms(s), "MAIL", &r);
    return rc ? rc : check_reply(s, r, 2, "MAIL");
}

SMTPC_API int smtpc_session_rcpt_to(smtpc_session *s, const char *to, const smtpc_rcpt_opts *opts)
{
    int rc = enter(s, true, "RCPT");
    if (rc) return rc;
    if (!to || !*to) return smtpc__err(&s->err, SMTPC_EINVAL, "RCPT: no recipient");
    smtpc__rcpt_params p;
    rcpt_params(&p, opts);
    rc = smtpc__engine_rcpt(s->e, to, opts ? &p : NULL, 0);
    if (rc) return queue_failed(s, rc, "RCPT");
    const smtpc__reply *r;
    rc = exchange(s, command_ms(s), "RCPT", &r);
    return rc ? rc : check_reply(s, r, 2, "RCPT");
}

/* ---- bodies ---------------------------------------------------------------------- */

typedef struct mem_src {
    const uint8_t *p;
    size_t left;
} mem_src;

static ssize_t mem_read(void *ud, void *buf, size_t len)
{
    mem_src *m = ud;
    size_t n = m->left < len ? m->left : len;
    if (n == 0) return 0; /* m->p may be NULL for an empty body */
    memcpy(buf, m->p, n);
    m->p += n;
    m->left -= n;
    return (ssize_t)n;
}

/* Streams the body from cb through the engine's encoder to the socket, one
 * bounded chunk at a time, then ends it. On return 0 the end marker (".",
 * or the LAST chunk) has been written completely. A body that cannot be
 * completed (callback error, bad line) closes the connection: there is no
 * other way to abort DATA without delivering a truncated message. */
/* Pending DATA output above this is written before reading more body. */
#define BODY_FLUSH_AT (64u * 1024u)

static int stream_body(smtpc_session *s, smtpc_read_cb cb, void *ud, bool bdat, bool in_txn,
                       const char *what)
{
    uint8_t buf[BODY_CHUNK];
    op o;
    for (;;) {
        if (is_canceled(s)) return fail_canceled(s, what);
        ssize_t n = cb(ud, buf, sizeof buf);
        if (n < 0) {
            close_conn(s);
            return smtpc__err(&s->err, (int)n,
                              "%s: the body read callback failed (%s); connection closed", what,
                              smtpc_err_name((int)n));
        }
        if ((size_t)n > sizeof buf) {
            close_conn(s);
            return smtpc__err(&s->err, SMTPC_EINVAL, "%s: the body read callback overran", what);
        }
        int rc = n ? smtpc__engine_body_write(s->e, buf, (size_t)n) : smtpc__engine_body_end(s->e);
        if (rc) {
            close_conn(s);
            return smtpc__err(&s->err, rc, "%s: %s; connection closed", what,
                              smtpc__engine_errmsg(s->e));
        }
        const uint8_t *pend;
        if (n == 0) s->dot_left = smtpc__engine_output(s->e, &pend); /* before a next envelope */
        /* DATA: read ahead while the output is small, so a body that fits
         * goes out with its end marker in one write; BDAT flushes each chunk
         * (its chunks are answered one by one). */
        if (n && !bdat && smtpc__engine_output(s->e, &pend) < BODY_FLUSH_AT) continue;
        /* The next message's envelope joins the final dot (send_batch). */
        if (n == 0 && s->body_end_hook && (rc = s->body_end_hook(s, s->body_end_ud)) != 0) return rc;
        /* The command timeout bounds each step of progress, not the body. */
        op_init(s, &o, command_ms(s), what);
        rc = flush(s, &o, bdat);
        if (rc) return rc;
        if (n == 0) return 0;
        if (bdat && !in_txn) {
            /* A refused chunk stops the body (RFC 3030: no further chunks). */
            smtpc__event ev;
            while (smtpc__engine_next_event(s->e, &ev) == 1) {
                if (ev.reply && ev.reply->code / 100 != 2) {
                    int rr = set_reply(s, ev.reply);
                    if (rr) return rr;
                    rc = check_reply(s, s->reply, 2, what);
                    close_conn(s); /* the engine is mid-body: no clean way back */
                    return rc ? rc : SMTPC_EPROTO;
                }
            }
        }
    }
}

/* After the end marker was written: a lost connection or no answer means
 * the message may have been delivered. */
static int unknown_after_end(smtpc_session *s, int rc, const char *what)
{
    if (rc == SMTPC_ECLOSED || rc == SMTPC_ENETWORK || rc == SMTPC_ETIMEDOUT) {
        char detail[SMTPC__ERRMSG_MAX];
        smtpc__strlcpy(detail, s->err.text, sizeof detail);
        smtpc__err(&s->err, SMTPC_EUNKNOWN,
                   "%s: no reply after the end of data (%s): the message may have been delivered",
                   what, detail);
        return SMTPC_EUNKNOWN;
    }
    if (rc == SMTPC_ECANCELED) {
        size_t l = strlen(s->err.text);
        snprintf(s->err.text + l, sizeof s->err.text - l,
                 " after the end of data: the message may have been delivered");
    }
    return rc;
}

static int do_data(smtpc_session *s, smtpc_read_cb cb, void *ud)
{
    int rc = enter(s, true, "DATA");
    if (rc) return rc;
    if (!cb) return smtpc__err(&s->err, SMTPC_EINVAL, "DATA: no body");
    rc = smtpc__engine_data(s->e);
    if (rc) return queue_failed(s, rc, "DATA");
    const smtpc__reply *r;
    rc = exchange(s, command_ms(s), "DATA", &r);
    if (rc) return rc;
    /* Only 354 goes on; any other positive reply is a protocol violation. */
    if (r->code != 354) return check_reply(s, r, 9, "DATA");
    rc = stream_body(s, cb, ud, false, false, "DATA");
    if (rc) return rc;
    rc = exchange(s, data_ms(s), "end of data", &r);
    if (rc) return unknown_after_end(s, rc, "end of data");
    return check_reply(s, r, 2, "end of data");
}

SMTPC_API int smtpc_session_data_mem(smtpc_session *s, const void *msg, size_t len)
{
    if (!msg && len) return SMTPC_EINVAL;
    mem_src m = {msg, len};
    return do_data(s, mem_read, &m);
}

SMTPC_API int smtpc_session_data_cb(smtpc_session *s, smtpc_read_cb cb, void *userdata)
{
    return do_data(s, cb, userdata);
}

static int do_bdat(smtpc_session *s, smtpc_read_cb cb, void *ud)
{
    int rc = enter(s, true, "BDAT");
    if (rc) return rc;
    if (!cb) return smtpc__err(&s->err, SMTPC_EINVAL, "BDAT: no body");
    const smtpc__caps *c = smtpc__engine_caps(s->e);
    if (!c || !(c->flags & SMTPC_EXT_CHUNKING))
        return smtpc__err(&s->err, SMTPC_EUNSUPPORTED, "BDAT: the server does not offer CHUNKING");
    rc = smtpc__engine_body_begin_bdat(s->e);
    if (rc) return queue_failed(s, rc, "BDAT");
    rc = stream_body(s, cb, ud, true, false, "BDAT");
    if (rc) return rc;
    /* Every chunk's reply; once none is outstanding, the last (to BDAT
     * LAST) decides. Replies may arrive several per read. */
    op o;
    op_init(s, &o, data_ms(s), "end of data");
    bool got = false;
    for (;;) {
        smtpc__event ev;
        while (smtpc__engine_next_event(s->e, &ev) == 1) {
            if (!ev.reply) continue;
            got = true;
            int rr = set_reply(s, ev.reply);
            if (rr) return rr;
            if (ev.reply->code / 100 != 2) return check_reply(s, s->reply, 2, "end of data");
        }
        if (smtpc__engine_pending_replies(s->e) == 0) {
            if (!got) return smtpc__err(&s->err, SMTPC_EPROTO, "BDAT: no reply");
            return check_reply(s, s->reply, 2, "end of data");
        }
        rc = read_some(s, &o, false);
        if (rc) return unknown_after_end(s, rc, "end of data");
    }
}

SMTPC_API int smtpc_session_bdat_mem(smtpc_session *s, const void *msg, size_t len)
{
    if (!msg && len) return SMTPC_EINVAL;
    mem_src m = {msg, len};
    return do_bdat(s, mem_read, &m);
}

SMTPC_API int smtpc_session_bdat_cb(smtpc_session *s, smtpc_read_cb cb, void *userdata)
{
    return do_bdat(s, cb, userdata);
}

/* ---- whole transactions ------------------------------------------------------------ */

/* Reads replies to commands the engine queued by itself (the RSET after a
 * failed transaction) so the next command starts in step. */
static int settle(smtpc_session *s)
{
    op o;
    op_init(s, &o, command_ms(s), "RSET");
    for (;;) {
        int rc = flush(s, &o, false);
        if (rc) return rc;
        smtpc__event ev;
        while (smtpc__engine_next_event(s->e, &ev) == 1) {
            if (ev.reply && ev.reply->code == 421) {
                int rr = set_reply(s, ev.reply);
                if (rr) return rr;
                return check_reply(s, s->reply, 2, "RSET");
            }
        }
        if (smtpc__engine_pending_replies(s->e) == 0) return 0;
        rc = read_some(s, &o, false);
        if (rc) return rc;
    }
}

/* Validates env, sets up the per-recipient results and queues the
 * transaction. */
static int begin_txn(smtpc_session *s, const smtpc_envelope *env, bool has_body)
{
    clear_rcpt_results(s);
    if (!env || !env->from || !env->rcpts || env->nrcpts == 0 || !has_body)
        return smtpc__err(&s->err, SMTPC_EINVAL, "send: no sender, recipient or body");
    for (size_t i = 0; i < env->nrcpts; i++)
        if (!env->rcpts[i] || !*env->rcpts[i])
            return smtpc__err(&s->err, SMTPC_EINVAL, "send: empty recipient %zu", i);
    if (env->use_bdat) {
        const smtpc__caps *c = smtpc__engine_caps(s->e);
        if (!c || !(c->flags & SMTPC_EXT_CHUNKING))
            return smtpc__err(&s->err, SMTPC_EUNSUPPORTED,
                              "send: the server does not offer CHUNKING");
    }

    s->rcpt_status = calloc(env->nrcpts, sizeof *s->rcpt_status);
    s->rcpt_reply = calloc(env->nrcpts, sizeof *s->rcpt_reply);
    smtpc__rcpt_params *rp = env->rcpt ? calloc(env->nrcpts, sizeof *rp) : NULL;
    if (!s->rcpt_status || !s->rcpt_reply || (env->rcpt && !rp)) {
        free(rp);
        clear_rcpt_results(s);
        return SMTPC_ENOMEM;
    }
    s->nrcpt = env->nrcpts;
    for (size_t i = 0; i < env->nrcpts; i++) {
        s->rcpt_status[i] = SMTPC_EUNKNOWN; /* not answered (yet) */
        if (rp) rcpt_params(&rp[i], &env->rcpt[i]);
    }
    smtpc__mail_params mp;
    mail_params(&mp, env->mail);
    smtpc__txn_opts to;
    memset(&to, 0, sizeof to);
    to.from = env->from;
    to.mail = env->mail ? &mp : NULL;
    to.rcpts = env->rcpts;
    to.rcpt = rp;
    to.nrcpts = env->nrcpts;
    to.policy = env->all_or_nothing ? SMTPC__TXN_STRICT : SMTPC__TXN_CONTINUE;
    to.use_bdat = env->use_bdat;
    int rc = smtpc__engine_txn_begin(s->e, &to);
    free(rp);
    if (rc) {
        clear_rcpt_results(s);
        return queue_failed(s, rc, "send");
    }
    return 0;
}

/* A recipient's reply into the results. */
static void note_rcpt(smtpc_session *s, const smtpc__event *ev)
{
    if (ev->tag < s->nrcpt && ev->reply) {
        reply_free_own(s->rcpt_reply[ev->tag]);
        s->rcpt_reply[ev->tag] = reply_dup(ev->reply);
        int c = ev->reply->code / 100;
        s->rcpt_status[ev->tag] = c == 2 ? 0 : c == 4 ? SMTPC_ETEMPFAIL : SMTPC_EPERMFAIL;
    }
}

/* EV_TXN_DONE: the status, with the deciding reply as s->reply and the
 * error text set. */
static int txn_outcome(smtpc_session *s, const smtpc__event *ev)
{
    if (ev->reply) {
        int rr = set_reply(s, ev->reply);
        if (rr) return rr;
    }
    int st = ev->status;
    if (st != 0) {
        const smtpc__reply *r = s->reply;
        if (r && (r->code / 100 == 4 || r->code / 100 == 5)) {
            fail_reply(s, st, r, smtpc__cmd_name(ev->cmd));
        } else if (r && ev->reply) {
            /* a positive reply of the wrong kind (250 to DATA, 354 to MAIL) */
            fail_reply(s, st, r, smtpc__cmd_name(ev->cmd));
            size_t l = strlen(s->err.text);
            snprintf(s->err.text + l, sizeof s->err.text - l, " (not a valid reply here)");
        } else {
            smtpc__err(&s->err, st, "send: %s", smtpc__engine_errmsg(s->e));
        }
    }
    return st;
}

static int send_txn(smtpc_session *s, const smtpc_envelope *env, smtpc_read_cb cb, void *ud)
{
    int rc = enter(s, true, "send");
    if (rc) return rc;
    rc = begin_txn(s, env, cb != NULL);
    if (rc) return rc;

    bool end_sent = false;
    op o;
    op_init(s, &o, command_ms(s), "send");
    /* The whole pipelined group (or MAIL alone) in one write. */
    rc = flush(s, &o, false);
    if (rc) return rc;
    for (;;) {
        /* Events first: what they decide must happen before the engine's
         * next output (its reaction to the same replies) is written. */
        smtpc__event ev;
        while (smtpc__engine_next_event(s->e, &ev) == 1) {
            if (ev.reply && ev.reply->code == 421) {
                int rr = set_reply(s, ev.reply);
                if (rr) return rr;
                if (ev.type == SMTPC__EV_TXN_RCPT && ev.tag < s->nrcpt)
                    s->rcpt_status[ev.tag] = SMTPC_ETEMPFAIL;
                return check_reply(s, s->reply, 2, smtpc__cmd_name(ev.cmd));
            }
            switch (ev.type) {
            case SMTPC__EV_TXN_RCPT:
                note_rcpt(s, &ev);
                op_init(s, &o, command_ms(s), "send");
                break;
            case SMTPC__EV_TXN_BODY:
                rc = stream_body(s, cb, ud, env->use_bdat, true, env->use_bdat ? "BDAT" : "DATA");
                if (rc) return rc;
                end_sent = true;
                op_init(s, &o, data_ms(s), "end of data");
                break;
            case SMTPC__EV_TXN_DONE: {
                if (ev.reply && ev.reply->code == 421) {
                    int rr = set_reply(s, ev.reply);
                    if (rr) return rr;
                    return check_reply(s, s->reply, 2, smtpc__cmd_name(ev.cmd));
                }
                int st = txn_outcome(s, &ev);
                if (st == SMTPC_ENOMEM) return st;
                if (smtpc__engine_closing(s->e) && s->t) {
                    /* The engine gave up on the connection (a 354 it must not
                     * end: that would deliver): drop it, no QUIT. */
                    close_conn(s);
                    size_t l = strlen(s->err.text);
                    snprintf(s->err.text + l, sizeof s->err.text - l, " (connection closed)");
                }
                if (s->t) {
                    rc = settle(s);
                    if (rc && st == 0) return 0; /* delivered; the next call reports the loss */
                }
                return st;
            }
            default:
                op_init(s, &o, command_ms(s), "send");
                break;
            }
        }
        /* The next command without PIPELINING, or the engine's own clean-up. */
        rc = flush(s, &o, false);
        if (rc) return end_sent ? unknown_after_end(s, rc, "end of data") : rc;
        rc = read_some(s, &o, false);
        if (rc) return end_sent ? unknown_after_end(s, rc, "end of data") : rc;
    }
}

/* ---- batches: pipelining across messages ------------------------------------------- */

typedef struct batch {
    smtpc_session *s;
    smtpc__batch_next_fn next;
    smtpc__batch_done_fn done;
    void *ud;
    size_t first, nbegun, ndone;
    bool no_more;
    /* the message in the engine's transaction (index first + nbegun - 1) */
    bool cur_active, cur_end_sent;
    smtpc__batch_msg cur;
    /* a message set aside behind its final dot, awaiting the reply */
    bool prev_active;
    size_t prev_n;
    int *prev_status;
    smtpc__reply **prev_reply;
    int fatal; /* the message source failed while a body was ending */
    /* a message that could not be queued while prev was in flight */
    bool deferred;
    int deferred_rc;
    smtpc__errmsg deferred_err;
} batch;

static void batch_report(batch *b, int rc)
{
    if (rc == 0) smtpc__err_clear(&b->s->err);
    b->done(b->ud, b->first + b->ndone, rc, b->s);
    b->ndone++;
}

/* The set-aside message's outcome, with its own recipient results (or,
 * report false, only their end: it is not done and will go again). */
static void batch_end_prev(batch *b, int rc, bool report)
{
    smtpc_session *s = b->s;
    size_t n = s->nrcpt;
    int *st = s->rcpt_status;
    smtpc__reply **rr = s->rcpt_reply;
    s->nrcpt = b->prev_n;
    s->rcpt_status = b->prev_status;
    s->rcpt_reply = b->prev_reply;
    b->prev_active = false;
    if (report) batch_report(b, rc);
    clear_rcpt_results(s);
    s->nrcpt = n;
    s->rcpt_status = st;
    s->rcpt_reply = rr;
    if (report && b->deferred) {
        b->deferred = false;
        clear_rcpt_results(s);
        s->err = b->deferred_err;
        batch_report(b, b->deferred_rc);
    }
}

static void batch_report_prev(batch *b, int rc) { batch_end_prev(b, rc, true); }

/* Fetches the next message and queues its transaction. 1: queued; 0: none
 * left; <0: fatal. A message that cannot be queued (bad envelope, an
 * extension the server lacks) is reported now, or deferred behind prev. */
static int batch_begin(batch *b)
{
    smtpc_session *s = b->s;
    for (;;) {
        if (b->no_more) return 0;
        smtpc__batch_msg m;
        memset(&m, 0, sizeof m);
        int r = b->next(b->ud, b->first + b->nbegun, &m);
        if (r < 0) return smtpc__err(&s->err, r, "send batch: the message source failed");
        if (r == 0) {
            b->no_more = true;
            return 0;
        }
        b->nbegun++;
        int rc = begin_txn(s, &m.env, m.body != NULL);
        if (rc == 0) {
            b->cur = m;
            b->cur_active = true;
            b->cur_end_sent = false;
            return 1;
        }
        if (rc == SMTPC_ENOMEM || rc == SMTPC_ESTATE) return rc;
        if (b->prev_active) {
            b->deferred = true;
            b->deferred_rc = rc;
            b->deferred_err = s->err;
            return 0; /* the next one after prev's reply */
        }
        batch_report(b, rc);
    }
}

/* After the final dot of the current message is queued: set it aside and
 * queue the next envelope behind it, so both go in one write. */
static int batch_chain_hook(smtpc_session *s, void *ud)
{
    batch *b = ud;
    if (b->no_more || b->cur.env.use_bdat) return 0;
    const smtpc__caps *c = smtpc__engine_caps(s->e);
    if (!c || !(c->flags & SMTPC_EXT_PIPELINING)) return 0;
    if (smtpc__engine_txn_chain(s->e) != 0) return 0; /* not chainable now: one at a time */
    b->prev_active = true;
    b->prev_n = s->nrcpt;
    b->prev_status = s->rcpt_status;
    b->prev_reply = s->rcpt_reply;
    s->nrcpt = 0;
    s->rcpt_status = NULL;
    s->rcpt_reply = NULL;
    b->cur_active = false;
    int rc = batch_begin(b);
    if (rc < 0) { /* finish what is in flight, then stop with this error */
        b->fatal = rc;
        b->no_more = true;
    }
    return 0;
}

/* The connection failed: a message whose dot went out may have been
 * delivered (reported unknown); the rest is not done, the set-aside one too
 * when its dot was still in the output (the caller sends it again). */
static int batch_fail(batch *b, int rc)
{
    smtpc_session *s = b->s;
    if (b->prev_active && s->dot_left == 0) {
        smtpc__errmsg keep = s->err;
        batch_report_prev(b, unknown_after_end(s, rc, "end of data"));
        s->err = keep;
    } else if (b->prev_active) {
        batch_end_prev(b, rc, false);
    }
    if (b->cur_active && b->cur_end_sent && b->ndone + 1 == b->nbegun) {
        smtpc__errmsg keep = s->err;
        b->cur_active = false;
        batch_report(b, unknown_after_end(s, rc, "end of data"));
        s->err = keep;
    }
    return rc;
}

int smtpc__session_send_batch(smtpc_session *s, smtpc__batch_next_fn next, smtpc__batch_done_fn done,
                              void *ud, size_t first, size_t *ndone)
{
    *ndone = 0;
    if (!s || !next || !done) return SMTPC_EINVAL;
    int rc = enter(s, true, "send");
    if (rc) return rc;
    batch b;
    memset(&b, 0, sizeof b);
    b.s = s;
    b.next = next;
    b.done = done;
    b.ud = ud;
    b.first = first;
    s->body_end_hook = batch_chain_hook;
    s->body_end_ud = &b;
    rc = batch_begin(&b);
    if (rc > 0) rc = 0;
    op o;
    op_init(s, &o, command_ms(s), "send");
    while (rc == 0 && (b.cur_active || b.prev_active)) {
        rc = flush(s, &o, false);
        if (rc) break;
        rc = read_some(s, &o, false);
        if (rc) break;
        smtpc__event ev;
        while (rc == 0 && smtpc__engine_next_event(s->e, &ev) == 1) {
            if (ev.reply && ev.reply->code == 421) {
                /* the server is leaving: whatever has no final reply is not done */
                int rr = set_reply(s, ev.reply);
                rc = rr ? rr : check_reply(s, s->reply, 2, smtpc__cmd_name(ev.cmd));
                if (!rc) rc = SMTPC_ECLOSED;
                break;
            }
            if (ev.type == SMTPC__EV_TXN_RCPT) {
                note_rcpt(s, &ev);
            } else if (ev.type == SMTPC__EV_TXN_BODY) {
                bool bd = b.cur.env.use_bdat;
                rc = stream_body(s, b.cur.body, b.cur.ud, bd, true, bd ? "BDAT" : "DATA");
                if (rc) break;
                /* set aside by the hook (prev_active: the next one is cur
                 * now), or waiting for its reply as cur */
                if (!b.prev_active) b.cur_end_sent = true;
            } else if (ev.type == SMTPC__EV_TXN_DONE) {
                int st = txn_outcome(s, &ev);
                if (st == SMTPC_ENOMEM) {
                    rc = st;
                    break;
                }
                if (b.prev_active) {
                    batch_report_prev(&b, st);
                    if (!b.cur_active) rc = batch_begin(&b);
                } else {
                    b.cur_active = false;
                    batch_report(&b, st);
                    if (smtpc__engine_closing(s->e)) {
                        close_conn(s); /* a 354 it must not end: drop, no QUIT */
                        rc = smtpc__err(&s->err, SMTPC_ECLOSED, "send: connection dropped");
                        break;
                    }
                    rc = batch_begin(&b);
                }
                if (rc > 0) rc = 0;
            }
        }
        op_init(s, &o, b.prev_active || b.cur_end_sent ? data_ms(s) : command_ms(s), "send");
    }
    s->body_end_hook = NULL;
    s->body_end_ud = NULL;
    if (rc) {
        rc = batch_fail(&b, rc);
    } else if (s->t) {
        if (settle(s) != 0) { /* everything was answered; the next call reports the loss */ }
    }
    if (!rc && b.fatal) rc = smtpc__err(&s->err, b.fatal, "send batch: the message source failed");
    *ndone = b.ndone;
    return rc;
}

/* A transaction, then the engine's buffers back: an idle (pooled) session
 * keeps nothing of the largest body it carried. */
static int do_send(smtpc_session *s, const smtpc_envelope *env, smtpc_read_cb cb, void *ud)
{
    int rc = send_txn(s, env, cb, ud);
    if (s) smtpc__engine_trim(s->e);
    return rc;
}

SMTPC_API int smtpc_session_send(smtpc_session *s, const smtpc_envelope *env, smtpc_read_cb body,
                                 void *userdata)
{
    return do_send(s, env, body, userdata);
}

SMTPC_API int smtpc_session_send_mem(smtpc_session *s, const smtpc_envelope *env, const void *msg,
                                     size_t len)
{
    if (!msg && len) return SMTPC_EINVAL;
    mem_src m = {msg, len};
    return do_send(s, env, mem_read, &m);
}

SMTPC_API size_t smtpc_session_rcpt_count(const smtpc_session *s) { return s ? s->nrcpt : 0; }

SMTPC_API int smtpc_session_rcpt_status(const smtpc_session *s, size_t i)
{
    if (!s || i >= s->nrcpt) return SMTPC_EINVAL;
    return s->rcpt_status[i];
}

SMTPC_API const smtpc_reply *smtpc_session_rcpt_reply(const smtpc_session *s, size_t i)
{
    if (!s || i >= s->nrcpt) return NULL;
    return s->rcpt_reply[i];
}

/* ---- RSET, NOOP, QUIT ---------------------------------------------------------------- */

SMTPC_API int smtpc_session_rset(smtpc_session *s)
{
    int rc = enter(s, true, "RSET");
    if (rc) return rc;
    rc = smtpc__engine_rset(s->e);
    if (rc) return queue_failed(s, rc, "RSET");
    const smtpc__reply *r;
    rc = exchange(s, command_ms(s), "RSET", &r);
    return rc ? rc : check_reply(s, r, 2, "RSET");
}

SMTPC_API int smtpc_session_noop(smtpc_session *s)
{
    int rc = enter(s, true, "NOOP");
    if (rc) return rc;
    rc = smtpc__engine_noop(s->e);
    if (rc) return queue_failed(s, rc, "NOOP");
    const smtpc__reply *r;
    rc = exchange(s, command_ms(s), "NOOP", &r);
    return rc ? rc : check_reply(s, r, 2, "NOOP");
}

SMTPC_API int smtpc_session_quit(smtpc_session *s)
{
    int rc = enter(s, true, "QUIT");
    if (rc) return rc;
    rc = smtpc__engine_quit(s->e);
    if (rc) {
        close_conn(s);
        return queue_failed(s, rc, "QUIT");
    }
    const smtpc__reply *r;
    rc = exchange(s, command_ms(s), "QUIT", &r);
    if (rc == SMTPC_ECLOSED) {
        /* Closing without a 221 is rude but the goal is reached. */
        smtpc__err_clear(&s->err);
        return 0;
    }
    if (rc) return rc;
    rc = r->code / 100 == 2 ? 0 : check_reply(s, r, 2, "QUIT");
    if (s->t) {
        int want = 0;
        (void)smtpc__transport_shutdown(s->t, &want); /* best effort (TLS close_notify) */
    }
    close_conn(s);
    return rc;
}

SMTPC_API void smtpc_session_disconnect(smtpc_session *s)
{
    if (s) close_conn(s);
}

/* ---- what happened ---------------------------------------------------------------------- */

SMTPC_API const smtpc_reply *smtpc_session_reply(const smtpc_session *s)
{
    return s ? s->reply : NULL;
}

SMTPC_API const char *smtpc_session_errmsg(const smtpc_session *s)
{
    return s ? s->err.text : "no session";
}

SMTPC_API bool smtpc_session_is_connected(const smtpc_session *s) { return s && s->t; }

SMTPC_API unsigned smtpc_session_extensions(const smtpc_session *s)
{
    const smtpc__caps *c = s && s->e ? smtpc__engine_caps(s->e) : NULL;
    return c ? c->flags : 0;
}

SMTPC_API bool smtpc_session_has_ext(const smtpc_session *s, const char *keyword)
{
    return smtpc_session_ext_param(s, keyword) != NULL;
}

SMTPC_API const char *smtpc_session_ext_param(const smtpc_session *s, const char *keyword)
{
    const smtpc__caps *c = s && s->e && keyword ? smtpc__engine_caps(s->e) : NULL;
    return c ? smtpc__caps_param(c, keyword) : NULL;
}

SMTPC_API uint64_t smtpc_session_size_limit(const smtpc_session *s)
{
    const smtpc__caps *c = s && s->e ? smtpc__engine_caps(s->e) : NULL;
    return c ? c->size_max : 0;
}

/* ---- security: TLS and AUTH ------------------------------------------------------------
 * Kept apart from the plain conversation above: the options, STARTTLS and
 * AUTH (the opener's steps: the policy, mechanism choice and SASL are its),
 * what they used. The TLS handshake and the redacting trace, which connect
 * needs too, come before it. */

SMTPC_API int smtpc_session_set_tls_mode(smtpc_session *s, smtpc_tls_mode mode)
{
    return OPT_SET(s, smtpc_conn_opts_set_tls_mode(opts(s), mode), false);
}

SMTPC_API int smtpc_session_set_auto_timeout_ms(smtpc_session *s, int64_t ms)
{
    return OPT_SET(s, smtpc_conn_opts_set_auto_timeout_ms(opts(s), ms), false);
}

SMTPC_API int smtpc_session_set_ca_file(smtpc_session *s, const char *path)
{
    return OPT_SET(s, smtpc_conn_opts_set_ca_file(opts(s), path), true);
}

SMTPC_API int smtpc_session_set_ca_path(smtpc_session *s, const char *dir)
{
    return OPT_SET(s, smtpc_conn_opts_set_ca_path(opts(s), dir), true);
}

SMTPC_API int smtpc_session_set_tls_server_name(smtpc_session *s, const char *name)
{
    return OPT_SET(s, smtpc_conn_opts_set_tls_server_name(opts(s), name), true);
}

SMTPC_API int smtpc_session_add_pin(smtpc_session *s, const char *pin)
{
    return OPT_SET(s, smtpc_conn_opts_add_pin(opts(s), pin), true);
}

SMTPC_API int smtpc_session_set_client_cert(smtpc_session *s, const char *cert_file, const char *key_file)
{
    return OPT_SET(s, smtpc_conn_opts_set_client_cert(opts(s), cert_file, key_file), true);
}

SMTPC_API int smtpc_session_set_insecure(smtpc_session *s, bool insecure)
{
    return OPT_SET(s, smtpc_conn_opts_set_insecure(opts(s), insecure), true);
}

SMTPC_API int smtpc_session_set_tls_versions(smtpc_session *s, int min_version, int max_version, bool strict)
{
    return OPT_SET(s, smtpc_conn_opts_set_tls_versions(opts(s), min_version, max_version, strict), true);
}

SMTPC_API int smtpc_session_set_credentials(smtpc_session *s, const char *user, const char *password)
{
    return OPT_SET(s, smtpc_conn_opts_set_credentials(opts(s), user, password), false);
}

SMTPC_API int smtpc_session_set_authzid(smtpc_session *s, const char *authzid)
{
    return OPT_SET(s, smtpc_conn_opts_set_authzid(opts(s), authzid), false);
}

SMTPC_API int smtpc_session_set_oauth_token(smtpc_session *s, const char *token)
{
    return OPT_SET(s, smtpc_conn_opts_set_oauth_token(opts(s), token), false);
}

SMTPC_API int smtpc_session_set_token_cb(smtpc_session *s, smtpc_token_cb cb, void *userdata)
{
    return OPT_SET(s, smtpc_conn_opts_set_token_cb(opts(s), cb, userdata), false);
}

SMTPC_API int smtpc_session_set_auth_mechanisms(smtpc_session *s, const char *list)
{
    return OPT_SET(s, smtpc_conn_opts_set_auth_mechanisms(opts(s), list), false);
}

SMTPC_API int smtpc_session_set_allow_plaintext_auth(smtpc_session *s, bool allow)
{
    return OPT_SET(s, smtpc_conn_opts_set_allow_plaintext_auth(opts(s), allow), false);
}

SMTPC_API int smtpc_session_set_trace(smtpc_session *s, smtpc_trace_cb cb, void *userdata)
{
    if (!s) return SMTPC_EINVAL;
    s->trace_cb = cb;
    s->trace_ud = userdata;
    if (s->e) smtpc__engine_set_trace(s->e, cb ? trace_thunk : NULL, s);
    return 0;
}

static bool encrypted(const smtpc_session *s) { return s->t && smtpc__tls_is(s->t); }

/* The opener's STARTTLS step: the handshake and EHLO again (the same name). */
SMTPC_API int smtpc_session_starttls(smtpc_session *s)
{
    return one_step(s, SMTPC__OPEN_STEP_STARTTLS, "STARTTLS", NULL, false);
}

SMTPC_API const smtpc_tls_info *smtpc_session_tls_info(const smtpc_session *s)
{
    return s && s->has_tls_info ? &s->tls_info : NULL;
}

SMTPC_API smtpc_tls_mode smtpc_session_security_used(const smtpc_session *s)
{
    return s ? s->security_used : SMTPC_TLS_MODE_NONE;
}

/* ---- AUTH ------------------------------------------------------------------------------------ */

static void opener_policy(const smtpc_session *s, smtpc__opener_policy *pol)
{
    smtpc__conn_opts_opener_policy(&s->o, s->tls_ctx && smtpc__tls_ctx_has_client_cert(s->tls_ctx), pol);
}

static smtpc__sasl_mask allowed_mask(const smtpc_session *s)
{
    smtpc__opener_policy pol;
    opener_policy(s, &pol);
    return encrypted(s) ? pol.allowed_tls : pol.allowed_plain;
}

static smtpc__sasl_mask offered_mask(const smtpc_session *s)
{
    const smtpc__caps *c = s->e ? smtpc__engine_caps(s->e) : NULL;
    return c && c->auth ? smtpc__sasl_mask_from_names((const char *const *)c->auth, c->nauth) : 0;
}

SMTPC_API const char *smtpc_session_auth_offered(smtpc_session *s)
{
    if (!s) return "";
    smtpc__sasl_mask_format(offered_mask(s), s->mechbuf, sizeof s->mechbuf);
    return s->mechbuf;
}

SMTPC_API const char *smtpc_session_auth_allowed(smtpc_session *s)
{
    if (!s) return "";
    smtpc__sasl_mask_format(allowed_mask(s), s->mechbuf, sizeof s->mechbuf);
    return s->mechbuf;
}

SMTPC_API const char *smtpc_session_auth_mechanism(const smtpc_session *s)
{
    return s ? smtpc__sasl_mech_name(s->auth_used) : NULL;
}

/* The opener's AUTH step: mechanism choice, SASL, one token refresh. */
SMTPC_API int smtpc_session_auth(smtpc_session *s)
{
    return one_step(s, SMTPC__OPEN_STEP_AUTH, "AUTH", NULL, false);
}

/* ---- the opening: the opener's blocking driver ------------------------------------------
 * smtpc_session_open and the single steps (ehlo, helo, starttls, auth) run
 * the connection opener shared with the other drivers (src/engine/opener.h),
 * which holds the policy, the codes and the messages; this is its blocking
 * loop (the TLS handshake, waits, the trace). */

static int open_fail(smtpc_session *s, int rc)
{
    close_conn(s);
    return rc;
}

static void opener_info(void *ud, const char *msg)
{
    trace_info(ud, "%s", msg);
}

/* The EHLO name: name, else the configured one, else the default (in def). */
static const char *hello_name(smtpc_session *s, const char *name, char *def, size_t n)
{
    if (!name) name = s->o.ehlo_name;
    if (!name) {
        smtpc__local_fqdn_lookup(); /* normally done while the greeting came */
        smtpc__default_ehlo_name(s->t ? s->t->fd : -1, def, n);
        name = def;
    }
    return name;
}

/* An opener for this connection; pol is the storage of its policy. */
static int opener_new(smtpc_session *s, smtpc__opener **out, smtpc__opener_policy *pol, smtpc_tls_mode mode,
                      const char *name, bool helo)
{
    opener_policy(s, pol);
    smtpc__opener_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.policy = pol;
    cfg.mode = mode;
    cfg.encrypted = encrypted(s) || smtpc__engine_tls_active(s->e);
    cfg.greeted = true;
    cfg.helo = helo;
    cfg.ehlo_name = name;
    cfg.server = s->hostport;
    cfg.sasl_host = s->tls_name;
    cfg.port = s->port;
    cfg.info = opener_info;
    cfg.info_ud = s;
    int rc = smtpc__opener_new(out, s->e, &cfg);
    return rc ? smtpc__err(&s->err, rc, "out of memory") : 0;
}

/* Drives opn from rc (what its start returned) until it is done or fails:
 * writes, reads, the STARTTLS handshake. 0 or the failure, s->err set; a
 * failure the opener calls broken closes the connection. */
static int drive(smtpc_session *s, smtpc__opener *opn, int rc)
{
    static const char *const what[] = {"greeting", "EHLO", "STARTTLS", "TLS handshake", "AUTH", "open"};
    bool mine = true; /* rc is the opener's (else the connection's: s->err set) */
    while (rc == SMTPC__OPEN_WAIT || rc == SMTPC__OPEN_TLS) {
        op o;
        if (rc == SMTPC__OPEN_TLS) {
            /* Nothing may follow the 220 before the handshake (CVE-2011-0411,
             * CVE-2021-22947): the engine refused such bytes with the 220 */
            op_init(s, &o, command_ms(s), "TLS handshake");
            mine = false;
            if ((rc = tls_handshake(s, &o)) != 0) break;
            s->security_used = SMTPC_TLS_MODE_STARTTLS;
            mine = true;
            rc = smtpc__opener_tls_started(opn); /* RFC 3207 4.2: EHLO again */
            continue;
        }
        smtpc__open_step st = smtpc__opener_step(opn);
        op_init(s, &o, command_ms(s), what[st]);
        smtpc__event ev;
        mine = false;
        if ((rc = flush(s, &o, false)) != 0 || (rc = next_event(s, &o, &ev)) != 0) {
            /* the server closed in answer to STARTTLS: never plaintext either */
            if (rc == SMTPC_ECLOSED && st == SMTPC__OPEN_STEP_STARTTLS) {
                char d[SMTPC__ERRMSG_MAX];
                smtpc__strlcpy(d, s->err.text, sizeof d);
                rc = smtpc__err(&s->err, SMTPC_ETLS, "STARTTLS failed, not continuing without TLS: %s", d);
            }
            break;
        }
        if (ev.reply && (rc = set_reply(s, ev.reply)) != 0) {
            rc = smtpc__err(&s->err, rc, "%s: out of memory", what[st]);
            break;
        }
        mine = true;
        rc = smtpc__opener_event(opn, &ev);
    }
    if (rc == SMTPC__OPEN_DONE) return 0;
    if (mine) {
        smtpc__err(&s->err, rc, "%s", smtpc__opener_errmsg(opn));
        if (s->t) {
            op o;
            op_init(s, &o, 1000, "QUIT");
            (void)flush(s, &o, false); /* what the opener queued: a polite QUIT after AUTH */
        }
        if (smtpc__opener_broken(opn)) close_conn(s);
    }
    return rc;
}

/* After the greeting: EHLO (HELO), STARTTLS, EHLO, AUTH. */
static int open_steps(smtpc_session *s, smtpc_tls_mode mode)
{
    char def[300];
    const char *name = hello_name(s, NULL, def, sizeof def);
    smtpc__strlcpy(s->ehlo_used, name, sizeof s->ehlo_used);
    smtpc__opener_policy pol;
    smtpc__opener *opn = NULL;
    int rc = opener_new(s, &opn, &pol, mode, name, false);
    if (rc) return rc;
    rc = drive(s, opn, smtpc__opener_start(opn));
    if (rc == 0) s->auth_used = smtpc__opener_mech(opn);
    smtpc__opener_free(opn);
    return rc;
}

/* One step of the opening on a connected session (smtpc_session_ehlo,
 * _helo, _starttls, _auth): the opener step-wise, driven as open's. */
static int one_step(smtpc_session *s, smtpc__open_step step, const char *what, const char *name, bool helo)
{
    int rc = enter(s, true, what);
    if (rc) return rc;
    char def[300];
    if (step == SMTPC__OPEN_STEP_STARTTLS) {
        rc = tls_ctx_ensure(s); /* before STARTTLS is sent: nothing half done */
        if (rc) return rc;
        name = s->ehlo_used[0] ? s->ehlo_used : NULL; /* RFC 3207 4.2: EHLO again, the same name */
    }
    if (step == SMTPC__OPEN_STEP_AUTH) s->auth_used = SMTPC__SASL_NONE;
    else name = hello_name(s, name, def, sizeof def);
    smtpc__opener_policy pol;
    smtpc__opener *opn = NULL;
    rc = opener_new(s, &opn, &pol, smtpc__conn_opts_effective_mode(&s->o, s->port), name, helo);
    if (rc) return rc;
    rc = smtpc__opener_start_step(opn, step);
    if (rc >= 0 && step == SMTPC__OPEN_STEP_EHLO && name != s->ehlo_used)
        smtpc__strlcpy(s->ehlo_used, name, sizeof s->ehlo_used);
    rc = drive(s, opn, rc);
    if (rc == 0 && step == SMTPC__OPEN_STEP_AUTH) s->auth_used = smtpc__opener_mech(opn);
    smtpc__opener_free(opn);
    return rc;
}

SMTPC_API int smtpc_session_open(smtpc_session *s, const char *host, uint16_t port)
{
    if (!s) return SMTPC_EINVAL;
    if (!host) { /* the server of the connection options */
        if (!s->o.host) return smtpc__err(&s->err, SMTPC_EINVAL, "open: no server (host NULL and none set)");
        host = s->o.host;
        port = port ? port : smtpc__conn_opts_port(&s->o);
    }
    smtpc_tls_mode mode = smtpc__conn_opts_effective_mode(&s->o, port);
    int rc = connect_mode(s, host, port, mode);
    if (!rc) rc = open_steps(s, mode);
    return rc ? open_fail(s, rc) : 0;
}

SMTPC_API const smtpc_reply *smtpc_session_greeting(const smtpc_session *s)
{
    return s ? s->greeting : NULL;
}

smtpc__errmsg *smtpc__session_errbuf(smtpc_session *s)
{
    return &s->err;
}

int smtpc__conn_opts_fail(smtpc__errmsg *dst, const smtpc_conn_opts *o, int rc)
{
    return smtpc__err(dst, rc, "%s", o->err.text[0] ? o->err.text : smtpc_strerror(rc));
}

void smtpc__session_set_deadline_at(smtpc_session *s, int64_t at_ms, int64_t ms)
{
    s->overall_deadline = at_ms;
    s->overall_ms = ms;
}
