/* One envelope + body through EITHER driver, with one normalised report, so
 * that tests/integration/test_drivers_shared.py can run the same case
 * through the blocking session and smtpc_bulk and compare.
 *
 *   drv_shared session|bulk HOST PORT [options]
 *
 * session: smtpc_session_open, smtpc_session_send[_mem], QUIT (when still
 *          connected).
 * bulk:    smtpc_bulk_run with one connection and one message.
 * Both are given the same: a body in memory has a known length, which both
 * declare as SIZE= when the server offers SIZE (smtpc_mail_opts.size for
 * the session, as smtpc_client does; bulk on its own); a pulled body
 * (--piece) has none.
 *
 * Options: --from A  --to A (repeatable)  --file PATH (the body; default empty)
 *   --greeting-timeout-ms N --command-timeout-ms N --data-timeout-ms N
 *   --attempts N   bulk: smtpc_bulk_set_max_attempts (default 1: a message
 *                  lost before its dot is reported, not retried elsewhere,
 *                  as the session would report it)
 *   --piece N      the body through a read callback that hands it over in
 *                  N-byte pieces (session: smtpc_session_send; bulk: the
 *                  message's read/rewind) instead of from memory
 *   --tls MODE     the TLS mode (smtpc_tls_mode_parse; default none)
 *   --user U --pass P   credentials     --plain-auth   allowed without TLS
 *
 * Output, one item per line:
 *   status sent|failed|unknown|canceled
 *   error SMTPC_X          the error code's name (SMTPC_OK when sent)
 *   class N                smtpc_error_classify(error)
 *   code N                 the deciding reply's code; 0 when the outcome was
 *                          not decided by a reply (network, timeout, protocol
 *                          error: the session's "last reply" is then stale)
 *   accepted N             recipients the server accepted
 *   rcpt I ERRNAME CODE    per recipient (bulk: the name from the code's
 *                          class, as the session derives its status)
 *   rcpt_codes 0|1         whether per-recipient results are available
 *   conns N                connections opened
 *   attempts N             bulk: connections the message was tried on
 *   ms N                   wall time of the whole run
 *   peak_rss_kb N          VmHWM at the end (-1 when unknown)
 *   errmsg TEXT            escaped
 * Exit status 0 (whatever the outcome), 2 on usage errors. */
#include <smtpc/smtpc.h>

#include "util/util.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RCPTS 16

typedef struct opts {
    const char *host;
    uint16_t port;
    const char *from;
    const char *rcpts[MAX_RCPTS];
    size_t nrcpts;
    char *body;
    size_t len;
    int64_t greeting_ms, command_ms, data_ms;
    unsigned attempts;
    size_t piece;
    smtpc_tls_mode tls;
    const char *user, *pass;
    bool plain_auth;
} opts;

typedef struct piece_src {
    const char *p;
    size_t len, off, piece;
} piece_src;

static ssize_t piece_read(void *ud, void *buf, size_t len)
{
    piece_src *m = ud;
    size_t n = m->len - m->off;
    if (n > len) n = len;
    if (n > m->piece) n = m->piece;
    if (n) memcpy(buf, m->p + m->off, n);
    m->off += n;
    return (ssize_t)n;
}

static int piece_rewind(void *ud)
{
    ((piece_src *)ud)->off = 0;
    return 0;
}

typedef struct report {
    const char *status;
    int error;
    int code;
    size_t accepted;
    unsigned conns, attempts;
    char errmsg[1024];
} report;

static uint64_t num(const char *s)
{
    uint64_t v = 0;
    if (smtpc__parse_u64(s, strlen(s), &v) != 0) {
        fprintf(stderr, "bad number %s\n", s);
        exit(2);
    }
    return v;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    for (;;) {
        if (!b) break;
        if (n == cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
        }
        size_t r = fread(b + n, 1, cap - n, f);
        if (r == 0) break;
        n += r;
    }
    fclose(f);
    *len = n;
    return b;
}

/* The session's last reply is the deciding one (else it is stale): a
 * refusal, an acceptance, or an AUTH refusal (a 4xx/5xx reply). */
static bool decided_by_reply(int rc, const smtpc_reply *r)
{
    int cls = smtpc_reply_code(r) / 100;
    return rc == SMTPC_OK || rc == SMTPC_ETEMPFAIL || rc == SMTPC_EPERMFAIL ||
           (rc == SMTPC_EAUTH && (cls == 4 || cls == 5));
}

static void run_session(const opts *o, report *r)
{
    smtpc_session *s;
    if (smtpc_session_new(&s) != 0) exit(1);
    smtpc_session_set_tls_mode(s, o->tls);
    if (o->user) smtpc_session_set_credentials(s, o->user, o->pass);
    smtpc_session_set_allow_plaintext_auth(s, o->plain_auth);
    smtpc_session_set_ehlo_name(s, "shared.test");
    if (o->greeting_ms) smtpc_session_set_greeting_timeout_ms(s, o->greeting_ms);
    if (o->command_ms) smtpc_session_set_command_timeout_ms(s, o->command_ms);
    if (o->data_ms) smtpc_session_set_data_timeout_ms(s, o->data_ms);
    r->conns = 1;
    r->attempts = 1;
    bool sent = false;
    int rc = smtpc_session_open(s, o->host, o->port);
    if (!rc) {
        smtpc_mail_opts mo;
        memset(&mo, 0, sizeof mo);
        if (!o->piece && smtpc_session_has_ext(s, "SIZE")) mo.size = o->len;
        smtpc_envelope env;
        memset(&env, 0, sizeof env);
        env.from = o->from;
        env.mail = &mo;
        env.rcpts = o->rcpts;
        env.nrcpts = o->nrcpts;
        piece_src ps = {o->body, o->len, 0, o->piece};
        rc = o->piece ? smtpc_session_send(s, &env, piece_read, &ps)
                      : smtpc_session_send_mem(s, &env, o->body, o->len);
        sent = true;
    }
    r->error = rc;
    r->status = rc == SMTPC_OK           ? "sent"
                : rc == SMTPC_EUNKNOWN   ? "unknown"
                : rc == SMTPC_ECANCELED  ? "canceled"
                                         : "failed";
    r->code = decided_by_reply(rc, smtpc_session_reply(s)) ? smtpc_reply_code(smtpc_session_reply(s)) : 0;
    smtpc__strlcpy(r->errmsg, rc ? smtpc_session_errmsg(s) : "", sizeof r->errmsg);
    size_t n = sent ? smtpc_session_rcpt_count(s) : 0;
    for (size_t i = 0; i < n; i++)
        if (smtpc_session_rcpt_status(s, i) == 0) r->accepted++;
    for (size_t i = 0; i < n; i++)
        printf("rcpt %zu %s %d\n", i, smtpc_err_name(smtpc_session_rcpt_status(s, i)),
               smtpc_reply_code(smtpc_session_rcpt_reply(s, i)));
    printf("rcpt_codes 1\n");
    if (smtpc_session_is_connected(s)) smtpc_session_quit(s);
    smtpc_session_free(s);
}

/* Peak resident memory of this program (VmHWM), -1 when unknown. */
static long peak_rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) {
            const char *p = line + 6;
            while (*p == ' ' || *p == '\t') p++;
            uint64_t v;
            size_t n = strspn(p, "0123456789");
            if (smtpc__parse_u64(p, n, &v) == 0) kb = (long)v;
        }
    fclose(f);
    return kb;
}

typedef struct bulk_ctx {
    const opts *o;
    bool given;
    int results;
    report *r;
    piece_src ps;
} bulk_ctx;

static int bulk_next(void *ud, smtpc_bulk_msg *m)
{
    bulk_ctx *x = ud;
    if (x->given) return 0;
    x->given = true;
    memset(m, 0, sizeof *m);
    m->from = x->o->from;
    m->rcpts = x->o->rcpts;
    m->nrcpts = x->o->nrcpts;
    if (x->o->piece) {
        x->ps = (piece_src){x->o->body, x->o->len, 0, x->o->piece};
        m->read = piece_read;
        m->rewind = piece_rewind;
        m->body_ud = &x->ps;
    } else {
        m->data = x->o->body ? x->o->body : "";
        m->len = x->o->len;
    }
    return 1;
}

static void bulk_result(void *ud, const smtpc_bulk_msg *m, const smtpc_bulk_result *res)
{
    (void)m;
    bulk_ctx *x = ud;
    static const char *const names[] = {"sent", "failed", "canceled", "unknown"};
    report *r = x->r;
    x->results++;
    r->status = (unsigned)res->status < 4 ? names[res->status] : "?";
    r->error = res->error;
    r->code = res->reply_code;
    r->accepted = res->rcpts_accepted;
    r->attempts = res->attempts;
    smtpc__strlcpy(r->errmsg, res->errmsg ? res->errmsg : "", sizeof r->errmsg);
    for (size_t i = 0; i < res->nrcpts; i++) {
        int code = res->rcpt_codes[i], cls = code / 100;
        int st = code == 0 ? SMTPC_EUNKNOWN
                 : cls == 2 ? SMTPC_OK
                 : cls == 4 ? SMTPC_ETEMPFAIL
                 : cls == 5 ? SMTPC_EPERMFAIL
                            : SMTPC_EPROTO;
        printf("rcpt %zu %s %d\n", i, smtpc_err_name(st), code);
    }
}

static void run_bulk(const opts *o, report *r)
{
    smtpc_bulk *b;
    if (smtpc_bulk_new(&b, o->host, o->port) != 0) exit(1);
    bulk_ctx x;
    memset(&x, 0, sizeof x);
    x.o = o;
    x.r = r;
    smtpc_bulk_set_source(b, bulk_next, &x);
    smtpc_bulk_set_result_cb(b, bulk_result, &x);
    smtpc_bulk_set_connections(b, 1);
    smtpc_bulk_set_max_attempts(b, o->attempts ? o->attempts : 1);
    smtpc_bulk_set_ehlo_name(b, "shared.test");
    smtpc_bulk_set_tls(b, o->tls, NULL, NULL, false);
    if (o->user) smtpc_bulk_set_credentials(b, o->user, o->pass);
    smtpc_bulk_set_allow_plaintext_auth(b, o->plain_auth);
    smtpc_bulk_set_timeouts(b, 0, o->greeting_ms, o->command_ms, o->data_ms, 0);
    int rc = smtpc_bulk_run(b);
    smtpc_bulk_stats st;
    smtpc_bulk_get_stats(b, &st);
    r->conns = (unsigned)st.connections_opened;
    printf("rcpt_codes 1\n");
    printf("run %s\n", smtpc_err_name(rc));
    if (x.results != 1) printf("results %d\n", x.results);
    smtpc_bulk_free(b);
}

int main(int argc, char **argv)
{
    if (argc < 4 || (strcmp(argv[1], "session") != 0 && strcmp(argv[1], "bulk") != 0)) {
        fprintf(stderr, "usage: drv_shared session|bulk HOST PORT [options]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    opts o;
    memset(&o, 0, sizeof o);
    o.host = argv[2];
    o.port = (uint16_t)num(argv[3]);
    o.from = "sender@example.org";
    o.tls = SMTPC_TLS_MODE_NONE;
    for (int i = 4; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (strcmp(a, name) == 0 && v && (i++, 1))
        if (OPT("--from")) o.from = v;
        else if (OPT("--to")) {
            if (o.nrcpts < MAX_RCPTS) o.rcpts[o.nrcpts++] = v;
        } else if (OPT("--file")) {
            if (!(o.body = read_file(v, &o.len))) {
                fprintf(stderr, "cannot read %s\n", v);
                return 2;
            }
        } else if (OPT("--greeting-timeout-ms")) o.greeting_ms = (int64_t)num(v);
        else if (OPT("--command-timeout-ms")) o.command_ms = (int64_t)num(v);
        else if (OPT("--data-timeout-ms")) o.data_ms = (int64_t)num(v);
        else if (OPT("--attempts")) o.attempts = (unsigned)num(v);
        else if (OPT("--piece")) o.piece = (size_t)num(v);
        else if (OPT("--tls")) {
            if (smtpc_tls_mode_parse(v, &o.tls) != 0) {
                fprintf(stderr, "bad TLS mode %s\n", v);
                return 2;
            }
        } else if (OPT("--user")) o.user = v;
        else if (OPT("--pass")) o.pass = v;
        else if (strcmp(a, "--plain-auth") == 0) o.plain_auth = true;
        else {
            fprintf(stderr, "unknown option %s\n", a);
            return 2;
        }
#undef OPT
    }
    if (!o.nrcpts) o.rcpts[o.nrcpts++] = "rcpt@example.org";
    report r;
    memset(&r, 0, sizeof r);
    r.status = "none";
    int64_t t0 = smtpc__now_ms();
    if (argv[1][0] == 's') run_session(&o, &r);
    else run_bulk(&o, &r);
    int64_t t1 = smtpc__now_ms();
    printf("status %s\n", r.status);
    printf("error %s\n", smtpc_err_name(r.error));
    printf("class %d\n", (int)smtpc_error_classify(r.error));
    printf("code %d\n", r.code);
    printf("accepted %zu\n", r.accepted);
    printf("conns %u\n", r.conns);
    printf("attempts %u\n", r.attempts);
    printf("ms %lld\n", (long long)(t1 - t0));
    printf("peak_rss_kb %ld\n", peak_rss_kb());
    char esc[4096];
    smtpc__escape_into(esc, sizeof esc, r.errmsg, strlen(r.errmsg));
    printf("errmsg %s\n", esc);
    free(o.body);
    return 0;
}
