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
 * nothing is held past a STARTTLS 220 (the engine rejects extra bytes). To
 * add STARTTLS: send it with run_command(SMTPC__CMD_STARTTLS), wait for
 * SMTPC__EV_TLS_READY, wrap s->t in the TLS layer (the new layer owns the old
 * chain as `inner`), drive smtpc__transport_handshake with wait_want(), then
 * smtpc__engine_tls_started() and EHLO again.
 *
 * Errors that leave the protocol state unknown (network, timeout, cancel,
 * protocol violation, 421) close the connection; 4xx/5xx replies to a
 * command and invalid arguments do not. */
#include <smtpc/session.h>

#include "engine/engine.h"
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
#include <string.h>
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

struct smtpc_session {
    /* options */
    int64_t connect_ms, greeting_ms, command_ms, data_ms, overall_ms;
    char *ehlo_name;
    char *bind_addr;
    uint16_t bind_port;
    size_t max_line, max_reply;

    /* connection */
    smtpc__engine *e;
    smtpc__transport *t;
    char hostport[300];
    int64_t overall_deadline; /* absolute, -1 = none */

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
};

/* One wait: its absolute deadline and how to describe its expiry. */
typedef struct op {
    int64_t deadline;
    int64_t ms;
    const char *what; /* "greeting", "reply to EHLO" ... */
    bool overall;     /* the deadline is the overall one */
} op;

/* ---- small helpers -------------------------------------------------------- */

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
    s->connect_ms = DEF_CONNECT_MS;
    s->greeting_ms = DEF_GREETING_MS;
    s->command_ms = DEF_COMMAND_MS;
    s->data_ms = DEF_DATA_MS;
    s->overall_ms = 0;
    s->overall_deadline = -1;
    *out = s;
    return 0;
}

SMTPC_API void smtpc_session_free(smtpc_session *s)
{
    if (!s) return;
    close_conn(s);
    smtpc__engine_free(s->e);
    reply_free_own(s->reply);
    clear_rcpt_results(s);
    free(s->ehlo_name);
    free(s->bind_addr);
    close(s->cancel_fd);
    free(s);
}

static int set_ms(smtpc_session *s, int64_t *field, int64_t ms, int64_t def)
{
    if (!s) return SMTPC_EINVAL;
    if (ms < 0) return smtpc__err(&s->err, SMTPC_EINVAL, "negative timeout");
    *field = ms ? ms : def;
    return 0;
}

SMTPC_API int smtpc_session_set_connect_timeout_ms(smtpc_session *s, int64_t ms)
{
    return set_ms(s, s ? &s->connect_ms : NULL, ms, DEF_CONNECT_MS);
}
SMTPC_API int smtpc_session_set_greeting_timeout_ms(smtpc_session *s, int64_t ms)
{
    return set_ms(s, s ? &s->greeting_ms : NULL, ms, DEF_GREETING_MS);
}
SMTPC_API int smtpc_session_set_command_timeout_ms(smtpc_session *s, int64_t ms)
{
    return set_ms(s, s ? &s->command_ms : NULL, ms, DEF_COMMAND_MS);
}
SMTPC_API int smtpc_session_set_data_timeout_ms(smtpc_session *s, int64_t ms)
{
    return set_ms(s, s ? &s->data_ms : NULL, ms, DEF_DATA_MS);
}
SMTPC_API int smtpc_session_set_deadline_ms(smtpc_session *s, int64_t ms)
{
    return set_ms(s, s ? &s->overall_ms : NULL, ms, 0);
}

/* A domain or an address literal: printable, no space, no control. */
static bool valid_ehlo_name(const char *n)
{
    if (!n || !*n || strlen(n) > 255) return false;
    for (const unsigned char *p = (const unsigned char *)n; *p; p++)
        if (*p <= 0x20 || *p == 0x7f) return false;
    return true;
}

SMTPC_API int smtpc_session_set_ehlo_name(smtpc_session *s, const char *name)
{
    if (!s) return SMTPC_EINVAL;
    if (name && !valid_ehlo_name(name))
        return smtpc__err(&s->err, SMTPC_EINVAL, "invalid EHLO name");
    char *c = NULL;
    if (name && !(c = smtpc__strdup(name))) return SMTPC_ENOMEM;
    free(s->ehlo_name);
    s->ehlo_name = c;
    return 0;
}

SMTPC_API int smtpc_session_set_bind(smtpc_session *s, const char *addr, uint16_t port)
{
    if (!s) return SMTPC_EINVAL;
    if (addr && (!*addr || smtpc__has_ctl(addr)))
        return smtpc__err(&s->err, SMTPC_EINVAL, "invalid bind address");
    char *c = NULL;
    if (addr && !(c = smtpc__strdup(addr))) return SMTPC_ENOMEM;
    free(s->bind_addr);
    s->bind_addr = c;
    s->bind_port = port;
    return 0;
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

/* ---- connect ------------------------------------------------------------------ */

SMTPC_API int smtpc_session_connect(smtpc_session *s, const char *host, uint16_t port)
{
    int rc = enter(s, false, "connect");
    if (rc) return rc;
    if (s->t) return smtpc__err(&s->err, SMTPC_ESTATE, "connect: already connected");
    if (!host || !*host || smtpc__has_ctl(host))
        return smtpc__err(&s->err, SMTPC_EINVAL, "connect: invalid host name");

    reply_free_own(s->reply);
    s->reply = NULL;
    clear_rcpt_results(s);
    if (strchr(host, ':'))
        snprintf(s->hostport, sizeof s->hostport, "[%s]:%u", host, (unsigned)port);
    else
        snprintf(s->hostport, sizeof s->hostport, "%s:%u", host, (unsigned)port);

    smtpc__engine_opts eo;
    memset(&eo, 0, sizeof eo);
    eo.limits.max_line = s->max_line;
    eo.limits.max_bytes = s->max_reply;
    smtpc__engine *e = NULL;
    rc = smtpc__engine_new(&e, &eo);
    if (rc) return smtpc__err(&s->err, rc, "connect: cannot create the protocol engine");
    smtpc__engine_free(s->e);
    s->e = e;

    s->overall_deadline = s->overall_ms > 0 ? smtpc__now_ms() + s->overall_ms + 1 : -1;
    op o;
    op_init(s, &o, s->connect_ms, "connect");
    smtpc__tcp_opts to;
    memset(&to, 0, sizeof to);
    to.bind_addr = s->bind_addr;
    to.bind_port = s->bind_port;
    to.family = AF_UNSPEC;
    to.deadline_ms = o.deadline;
    to.cancel_fd = s->cancel_fd;
    rc = smtpc__tcp_connect(&s->t, host, port, &to, &s->err);
    if (rc) {
        if (rc == SMTPC_ETIMEDOUT) {
            char secs[32];
            fmt_secs(secs, sizeof secs, o.overall ? s->overall_ms : o.ms);
            smtpc__err(&s->err, rc, "connect to %s: timed out after %s", s->hostport, secs);
        }
        return rc;
    }

    rc = smtpc__engine_expect_greeting(s->e);
    if (rc) {
        close_conn(s);
        return queue_failed(s, rc, "greeting");
    }
    const smtpc__reply *r;
    rc = exchange(s, s->greeting_ms, "greeting", &r);
    if (rc) return rc;
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

/* ---- EHLO / HELO ---------------------------------------------------------------- */

static bool fqdn_ok(const char *n)
{
    if (!n || !strchr(n, '.') || n[0] == '.' || n[0] == '-') return false;
    for (const char *p = n; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '.'))
            return false;
    return strcmp(n + strlen(n) - 1, ".") != 0 && strncmp(n, "localhost", 9) != 0;
}

/* The host's FQDN, else the address literal of our end of the connection. */
static void default_ehlo_name(smtpc_session *s, char *dst, size_t n)
{
    char hn[256];
    if (gethostname(hn, sizeof hn) == 0) {
        hn[sizeof hn - 1] = '\0';
        if (fqdn_ok(hn)) {
            smtpc__strlcpy(dst, hn, n);
            return;
        }
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof hints);
        hints.ai_flags = AI_CANONNAME;
        hints.ai_socktype = SOCK_STREAM;
        if (getaddrinfo(hn, NULL, &hints, &res) == 0) {
            bool ok = res && fqdn_ok(res->ai_canonname);
            if (ok) smtpc__strlcpy(dst, res->ai_canonname, n);
            freeaddrinfo(res);
            if (ok) return;
        }
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char a[INET6_ADDRSTRLEN];
    if (s->t && getsockname(s->t->fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, a, sizeof a);
            snprintf(dst, n, "[%s]", a);
            return;
        }
        if (ss.ss_family == AF_INET6) {
            const struct in6_addr *a6 = &((struct sockaddr_in6 *)&ss)->sin6_addr;
            if (IN6_IS_ADDR_V4MAPPED(a6)) {
                inet_ntop(AF_INET, &a6->s6_addr[12], a, sizeof a);
                snprintf(dst, n, "[%s]", a);
            } else {
                inet_ntop(AF_INET6, a6, a, sizeof a);
                snprintf(dst, n, "[IPv6:%s]", a);
            }
            return;
        }
    }
    smtpc__strlcpy(dst, "[127.0.0.1]", n);
}

static int do_helo(smtpc_session *s, const char *name, bool ehlo)
{
    const char *what = ehlo ? "EHLO" : "HELO";
    char def[300];
    if (!name) name = s->ehlo_name;
    if (!name) {
        default_ehlo_name(s, def, sizeof def);
        name = def;
    }
    if (!valid_ehlo_name(name)) return smtpc__err(&s->err, SMTPC_EINVAL, "%s: invalid name", what);
    int rc = ehlo ? smtpc__engine_ehlo(s->e, name) : smtpc__engine_helo(s->e, name);
    if (rc) return queue_failed(s, rc, what);
    const smtpc__reply *r;
    rc = exchange(s, s->command_ms, what, &r);
    if (rc) return rc;
    if (ehlo && (r->code == 500 || r->code == 502)) return do_helo(s, name, false);
    return check_reply(s, r, 2, what);
}

SMTPC_API int smtpc_session_ehlo(smtpc_session *s, const char *name)
{
    int rc = enter(s, true, "EHLO");
    return rc ? rc : do_helo(s, name, true);
}

SMTPC_API int smtpc_session_helo(smtpc_session *s, const char *name)
{
    int rc = enter(s, true, "HELO");
    return rc ? rc : do_helo(s, name, false);
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
    rc = exchange(s, s->command_ms, "MAIL", &r);
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
    rc = exchange(s, s->command_ms, "RCPT", &r);
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
        /* The command timeout bounds each step of progress, not the body. */
        op_init(s, &o, s->command_ms, what);
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
    rc = exchange(s, s->command_ms, "DATA", &r);
    if (rc) return rc;
    /* Only 354 goes on; any other positive reply is a protocol violation. */
    if (r->code != 354) return check_reply(s, r, 9, "DATA");
    rc = stream_body(s, cb, ud, false, false, "DATA");
    if (rc) return rc;
    rc = exchange(s, s->data_ms, "end of data", &r);
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
    op_init(s, &o, s->data_ms, "end of data");
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
    op_init(s, &o, s->command_ms, "RSET");
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

static int do_send(smtpc_session *s, const smtpc_envelope *env, smtpc_read_cb cb, void *ud)
{
    int rc = enter(s, true, "send");
    if (rc) return rc;
    clear_rcpt_results(s);
    if (!env || !env->from || !env->rcpts || env->nrcpts == 0 || !cb)
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
    rc = smtpc__engine_txn_begin(s->e, &to);
    free(rp);
    if (rc) {
        clear_rcpt_results(s);
        return queue_failed(s, rc, "send");
    }

    bool end_sent = false;
    op o;
    op_init(s, &o, s->command_ms, "send");
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
                if (ev.tag < s->nrcpt && ev.reply) {
                    reply_free_own(s->rcpt_reply[ev.tag]);
                    s->rcpt_reply[ev.tag] = reply_dup(ev.reply);
                    int c = ev.reply->code / 100;
                    s->rcpt_status[ev.tag] = c == 2 ? 0 : c == 4 ? SMTPC_ETEMPFAIL : SMTPC_EPERMFAIL;
                }
                op_init(s, &o, s->command_ms, "send");
                break;
            case SMTPC__EV_TXN_BODY:
                rc = stream_body(s, cb, ud, env->use_bdat, true, env->use_bdat ? "BDAT" : "DATA");
                if (rc) return rc;
                end_sent = true;
                op_init(s, &o, s->data_ms, "end of data");
                break;
            case SMTPC__EV_TXN_DONE: {
                if (ev.reply) {
                    int rr = set_reply(s, ev.reply);
                    if (rr) return rr;
                }
                int st = ev.status;
                if (st != 0) {
                    const smtpc__reply *r = s->reply;
                    if (r && r->code == 421) return check_reply(s, r, 2, smtpc__cmd_name(ev.cmd));
                    if (r && (r->code / 100 == 4 || r->code / 100 == 5))
                        fail_reply(s, st, r, smtpc__cmd_name(ev.cmd));
                    else
                        smtpc__err(&s->err, st, "send: %s", smtpc__engine_errmsg(s->e));
                }
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
                op_init(s, &o, s->command_ms, "send");
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
    rc = exchange(s, s->command_ms, "RSET", &r);
    return rc ? rc : check_reply(s, r, 2, "RSET");
}

SMTPC_API int smtpc_session_noop(smtpc_session *s)
{
    int rc = enter(s, true, "NOOP");
    if (rc) return rc;
    rc = smtpc__engine_noop(s->e);
    if (rc) return queue_failed(s, rc, "NOOP");
    const smtpc__reply *r;
    rc = exchange(s, s->command_ms, "NOOP", &r);
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
    rc = exchange(s, s->command_ms, "QUIT", &r);
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

smtpc__errmsg *smtpc__session_errbuf(smtpc_session *s)
{
    return &s->err;
}
