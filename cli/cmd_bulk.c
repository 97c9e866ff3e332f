/* Many messages over K connections with smtpc_bulk (pipelining across
 * messages, one round trip per message):
 *
 *   smtpc bulk --server HOST[:PORT] --dir DIR [options]     every .eml of DIR
 *   smtpc send ... --count N [--connections K] [options]    one message N times
 *
 * Both take the same options as smtpc send (one option table, args.c), and
 * the connection settings come from the same place as a single send's:
 * without --tls the library's default policy (STARTTLS required, except
 * opportunistic on port 25 without credentials; implicit TLS on 465).
 * Envelope for --dir: IIS-style leading "X-Sender:" / "X-Receiver:" lines
 * (removed from the message), else From: and To:/Cc:/Bcc: headers (Bcc
 * removed). send reports each message as a single send does; bulk and
 * --connections end with a summary line on stderr. Exit 0 when every
 * message was sent, else the status of the (first) failure for send, 75
 * (EX_TEMPFAIL) for bulk. */
#include "cli.h"

#include <smtpc/smtpc.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct item {
    char *path;
    char *data; /* as sent: without the X-Sender/X-Receiver lines and Bcc */
    size_t len;
    cli_list from;  /* the first is the reverse-path (owned strings) */
    cli_list rcpts; /* owned strings, no duplicates */
} item;

typedef struct bulk_ctx {
    cli_ctx *c;
    /* send: copies of one message (tmpl), copy i > 0 with its own Message-ID */
    const char *from;
    const char *const *rcpts;
    size_t nrcpts;
    const char *tmpl;
    size_t tmpl_len;
    size_t id_at, id_len; /* the Message-ID's id (between < and >) in tmpl; len 0: none */
    uint64_t count;
    /* bulk --dir */
    char **files;
    size_t nfiles;
    size_t next;
    uint64_t done, sent, failed;
    int first_err; /* the first failure's SMTPC_E* (send's exit status) */
    bool report;   /* one report per message (send) */
    bool progress, quiet;
    bool allowfails; /* --rcpt-allowfails */
    double t0, last_print;
    cli_progress pg;
    char server[320];
    const char *tls;
    smtpc_send_params dsn; /* --dsn-notify, --dsn-ret, --envid */
    bool want_dsn;
} bulk_ctx;

/* One message in flight: its bytes (a copy with its own Message-ID) or the
 * loaded --dir item. */
typedef struct flight {
    char *data;
    item *it;
} flight;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Adds the envelope form of an X-Sender/X-Receiver value, skipping one
 * already there (compared without case, as sendmail -t does). */
static int add_address(cli_list *l, const char *a)
{
    for (size_t j = 0; j < l->n; j++)
        if (!strcasecmp(l->v[j], a)) return 0;
    char *d = strdup(a);
    if (!d || cli_list_push(l, d)) {
        free(d);
        return SMTPC_ENOMEM;
    }
    return 0;
}

/* The envelope: the pickup block smtpc_pickup_write writes (X-Sender, then
 * X-Receiver lines), read by the library's own reader (smtpc_pickup_read:
 * it stops at the first line it would not have written, so the message
 * cannot add to its envelope); else the headers as the library loads them
 * (smtpc_message_load: Sender/From; To, Cc and Bcc, unfolded, every
 * address). Bcc never leaves this machine: the message is sent as the
 * library writes it back, without its Bcc fields, otherwise as it is. 0, or
 * an SMTPC_E* with why filled. */
static int load_item(item *it, char *why, size_t whylen)
{
    smtpc_pickup_msg *pm = NULL;
    int rc = smtpc_pickup_read(it->path, &pm, why, whylen);
    if (rc) return rc;
    const char *sender = smtpc_pickup_msg_sender(pm);
    if (sender) rc = add_address(&it->from, sender);
    for (size_t i = 0; !rc && i < smtpc_pickup_msg_rcpt_count(pm); i++)
        rc = add_address(&it->rcpts, smtpc_pickup_msg_rcpt(pm, i));
    size_t dlen = 0;
    const char *data = smtpc_pickup_msg_data(pm, &dlen);
    if (rc) {
        smtpc_pickup_msg_free(pm);
        return rc;
    }
    cli_mem_reader mr = {data, dlen, 0};
    smtpc_message *m = NULL;
    rc = smtpc_message_load_with(&m, cli_mem_read, &mr, SMTPC_LOAD_NO_ENVELOPE | SMTPC_LOAD_AS_IS, why, whylen);
    smtpc_pickup_msg_free(pm);
    if (rc) return rc;
    if (it->from.n == 0 && smtpc_message_envelope_from(m)) {
        char *d = strdup(smtpc_message_envelope_from(m));
        if (!d || cli_list_push(&it->from, d)) {
            free(d);
            rc = SMTPC_ENOMEM;
        }
    }
    if (!rc && it->rcpts.n == 0)
        for (size_t i = 0; !rc && i < smtpc_message_rcpt_count(m); i++) {
            const char *a = smtpc_message_rcpt(m, i);
            bool dup = false;
            for (size_t j = 0; j < it->rcpts.n && !dup; j++) dup = !strcasecmp(it->rcpts.v[j], a);
            char *d = dup ? NULL : strdup(a);
            if (!dup && (!d || cli_list_push(&it->rcpts, d))) {
                free(d);
                rc = SMTPC_ENOMEM;
            }
        }
    /* the bytes as sent: written back by the library (headers minus Bcc) */
    cli_buf out;
    cli_buf_init(&out, 0);
    smtpc_message_writer *w = NULL;
    if (!rc) rc = smtpc_message_writer_new(&w, m, 0);
    char tmp[65536];
    ssize_t n = 0;
    while (!rc && (n = smtpc_message_writer_read(w, tmp, sizeof tmp)) > 0) rc = cli_buf_append(&out, tmp, (size_t)n);
    if (!rc && n < 0) rc = (int)n;
    if (rc) snprintf(why, whylen, "%s", w && smtpc_message_writer_errmsg(w)[0] ? smtpc_message_writer_errmsg(w)
                                        : smtpc_message_errmsg(m)[0]            ? smtpc_message_errmsg(m)
                                                                                : smtpc_strerror(rc));
    smtpc_message_writer_free(w);
    smtpc_message_free(m);
    it->data = (char *)out.data; /* out.off is 0: nothing was consumed */
    it->len = cli_buf_size(&out);
    if (!it->data) it->data = strdup("");
    if (rc) return rc;
    if (!it->from.n || !it->rcpts.n) {
        snprintf(why, whylen, "no sender or recipient (X-Sender/X-Receiver or From/To/Cc/Bcc)");
        return SMTPC_EINVAL;
    }
    return 0;
}

static void item_free(item *it)
{
    free(it->data);
    cli_list_free_strings(&it->from);
    cli_list_free_strings(&it->rcpts);
    free(it); /* it->path belongs to x->files */
}

static int next_cb(void *ud, smtpc_bulk_msg *m)
{
    bulk_ctx *x = ud;
    memset(m, 0, sizeof *m);
    if (x->files) {
        while (x->next < x->nfiles) {
            item *it = calloc(1, sizeof *it);
            flight *f = calloc(1, sizeof *f);
            if (!it || !f) {
                free(it);
                free(f);
                return SMTPC_ENOMEM;
            }
            it->path = x->files[x->next++];
            char why[512] = "";
            int rc = load_item(it, why, sizeof why);
            if (!rc && cli_unsub_prepend(x->c, it->path, it->rcpts.n ? it->rcpts.v[0] : "", &it->data, &it->len))
                rc = SMTPC_EINVAL; /* --list-unsubscribe with a per-message {id}/{rcpt} (cmd_dkim.c) */
            if (rc) {
                fprintf(stderr, "%s: %s: %s\n", x->c->prog, it->path, why[0] ? why : smtpc_strerror(rc));
                x->failed++;
                x->done++;
                if (!x->first_err) x->first_err = rc;
                item_free(it);
                free(f);
                continue;
            }
            f->it = it;
            if (x->want_dsn) m->params = &x->dsn;
            m->from = it->from.v[0];
            m->rcpts = it->rcpts.v;
            m->nrcpts = it->rcpts.n;
            m->data = it->data;
            m->len = it->len;
            m->userdata = f;
            return 1;
        }
        return 0;
    }
    if (x->next >= x->count) return 0;
    uint64_t i = x->next++;
    flight *f = calloc(1, sizeof *f);
    if (!f) return SMTPC_ENOMEM;
    if (x->want_dsn) m->params = &x->dsn;
    m->from = x->from;
    m->rcpts = x->rcpts;
    m->nrcpts = x->nrcpts;
    m->data = x->tmpl;
    m->len = x->tmpl_len;
    m->userdata = f;
    if (i > 0 && x->id_len) {
        /* each copy is its own message: a repeated Message-ID would be
         * dropped as a duplicate by many receivers (local.N@domain) */
        const char *id = x->tmpl + x->id_at;
        const char *at = memchr(id, '@', x->id_len);
        size_t local = at ? (size_t)(at - id) : x->id_len;
        char suffix[32];
        int sl = snprintf(suffix, sizeof suffix, ".%llu", (unsigned long long)i);
        size_t len = x->tmpl_len + (size_t)sl;
        f->data = malloc(len);
        if (!f->data) {
            free(f);
            return SMTPC_ENOMEM;
        }
        size_t cut = x->id_at + local;
        memcpy(f->data, x->tmpl, cut);
        memcpy(f->data + cut, suffix, (size_t)sl);
        memcpy(f->data + cut + (size_t)sl, x->tmpl + cut, x->tmpl_len - cut);
        m->data = f->data;
        m->len = len;
    }
    return 1;
}

static void print_progress(bulk_ctx *x, bool final)
{
    size_t total = x->files ? x->nfiles : x->count;
    double el = now_s() - x->t0;
    double rate = el > 0 ? (double)x->done / el : 0;
    double eta = rate > 0 ? (double)(total - x->done) / rate : 0;
    fprintf(stderr, "\r%llu/%zu done, %.0f msg/s, ETA %.0fs, %llu failed%s", (unsigned long long)x->done, total,
            rate, eta, (unsigned long long)x->failed, final ? "\n" : "   ");
}

/* Without --rcpt-allowfails a refused recipient fails the message, as for a
 * single send. The bulk driver has no all-or-nothing transaction (a message
 * is SENT when one recipient accepted it): a SENT message with a refused
 * recipient was delivered to the accepted ones, and fails here with
 * SMTPC_ETEMPFAIL or SMTPC_EPERMFAIL by the first refusal's code. 0 when
 * it stands as SENT; *bad: how many were refused. */
static int refused_error(const bulk_ctx *x, const smtpc_bulk_result *r, size_t *bad)
{
    int first = 0;
    *bad = 0;
    for (size_t i = 0; r->rcpt_codes && i < r->nrcpts; i++)
        if (r->rcpt_codes[i] >= 400) {
            if (!first) first = r->rcpt_codes[i];
            ++*bad;
        }
    if (r->status != SMTPC_BULK_SENT || x->allowfails || !first) return 0;
    return first < 500 ? SMTPC_ETEMPFAIL : SMTPC_EPERMFAIL;
}

#define PARTIAL_FMT "%zu of %zu recipient%s refused; sent to the %zu accepted (with --count, --connections and " \
                    "bulk a message cannot be taken back from the accepted ones: --rcpt-allowfails accepts this)"

/* send: the report of one message, as a single send gives it. */
static void report(bulk_ctx *x, const smtpc_bulk_msg *m, const smtpc_bulk_result *br)
{
    cli_result r;
    cli_result_init(&r);
    r.delivery = "smtp";
    cli_strlcpy(r.server, x->server, sizeof r.server);
    r.tls = x->tls;
    r.rcpts = calloc(m->nrcpts ? m->nrcpts : 1, sizeof *r.rcpts);
    if (r.rcpts) {
        r.nrcpts = m->nrcpts;
        for (size_t i = 0; i < m->nrcpts; i++) {
            r.rcpts[i].address = m->rcpts[i];
            r.rcpts[i].code = i < br->nrcpts && br->rcpt_codes ? br->rcpt_codes[i] : 0;
            r.rcpts[i].accepted = r.rcpts[i].code >= 200 && r.rcpts[i].code < 300;
        }
    }
    r.final_code = br->reply_code;
    r.final_text = br->reply_text && br->reply_text[0] ? strdup(br->reply_text) : NULL;
    size_t bad;
    int partial = refused_error(x, br, &bad);
    if (partial) {
        cli_result_fail(&r, partial, PARTIAL_FMT, bad, m->nrcpts, m->nrcpts == 1 ? "" : "s", m->nrcpts - bad);
    } else if (br->status == SMTPC_BULK_SENT) {
        r.ok = true;
        r.queue_id = cli_queue_id_from_text(r.final_text);
    } else {
        /* unknown: the final dot went out, its reply did not come: maybe delivered */
        cli_result_fail(&r, br->status == SMTPC_BULK_UNKNOWN ? SMTPC_EUNKNOWN : br->error ? br->error : SMTPC_EIO,
                        "%s", br->errmsg && br->errmsg[0] ? br->errmsg : "not sent");
    }
    cli_print_result(x->c, &r);
    if (!r.ok && !x->first_err) x->first_err = r.err;
    cli_result_free(&r);
}

static void result_cb(void *ud, const smtpc_bulk_msg *m, const smtpc_bulk_result *r)
{
    bulk_ctx *x = ud;
    flight *f = m->userdata;
    x->done++;
    size_t bad;
    int partial = refused_error(x, r, &bad);
    if (r->status == SMTPC_BULK_SENT && !partial) x->sent++;
    else x->failed++;
    if (x->report) {
        report(x, m, r);
    } else if (r->status == SMTPC_BULK_SENT && bad) { /* the refused ones, by name */
        const char *what = f && f->it ? f->it->path : "message";
        char ew[1024];
        cli_escape_into(ew, sizeof ew, what, strlen(what));
        if (partial && !x->first_err) x->first_err = partial;
        if (!x->quiet) {
            if (partial)
                fprintf(stderr, "%s%s: %s: " PARTIAL_FMT "\n", x->progress ? "\r" : "", x->c->prog, ew, bad,
                        m->nrcpts, m->nrcpts == 1 ? "" : "s", m->nrcpts - bad);
            else
                fprintf(stderr, "%s%s: %s: sent to %zu recipient%s (%zu refused)\n", x->progress ? "\r" : "",
                        x->c->prog, ew, m->nrcpts - bad, m->nrcpts - bad == 1 ? "" : "s", bad);
            for (size_t i = 0; i < r->nrcpts; i++)
                if (r->rcpt_codes[i] >= 400) {
                    cli_escape_into(ew, sizeof ew, m->rcpts[i], strlen(m->rcpts[i]));
                    fprintf(stderr, "%s:   refused %s: %d\n", x->c->prog, ew, r->rcpt_codes[i]);
                }
        }
    } else if (r->status != SMTPC_BULK_SENT) {
        static const char *names[] = {"sent", "failed", "canceled", "unknown (maybe delivered)"};
        if (!x->first_err) x->first_err = r->error ? cli_err_origin(r->error, r->errmsg) : SMTPC_EUNKNOWN;
        const char *what = f && f->it ? f->it->path : "message";
        /* the server's words (and a file's name) never drive the terminal */
        char ew[1024], em[1024], et[1024];
        const char *rt = r->reply_text ? r->reply_text : "", *rm = r->errmsg ? r->errmsg : "";
        cli_escape_into(ew, sizeof ew, what, strlen(what));
        cli_escape_into(em, sizeof em, rm, strlen(rm));
        cli_escape_into(et, sizeof et, rt, strlen(rt));
        if (!x->quiet && r->reply_code)
            fprintf(stderr, "%s%s: %s: %s: %s %d %s\n", x->progress ? "\r" : "", x->c->prog, ew,
                    names[r->status], em, r->reply_code, et);
        else if (!x->quiet) /* no reply decided it (a local refusal, a network failure) */
            fprintf(stderr, "%s%s: %s: %s: %s\n", x->progress ? "\r" : "", x->c->prog, ew,
                    names[r->status], em);
    }
    if (f) {
        if (f->it) item_free(f->it);
        free(f->data);
        free(f);
    }
    if (x->report) {
        cli_progress_update(&x->pg, x->done);
    } else if (x->progress) {
        double t = now_s();
        if (t - x->last_print > 0.2) {
            x->last_print = t;
            print_progress(x, false);
        }
    }
}

/* --oauth-token-cmd, as the run's token callback: the command's token is
 * kept for every connection, and the command runs again only when the
 * server refused the token (it expired during a long run). */
typedef struct bulk_token {
    const cli_ctx *sc;
    char *token;
} bulk_token;

static int token_cb(void *ud, bool refresh, const char **token, size_t *len)
{
    bulk_token *t = ud;
    if (refresh || !t->token) {
        char *fresh = NULL, err[300];
        const char *src = NULL;
        int rc = cli_secret(t->sc, true, &fresh, &src, err, sizeof err);
        if (rc) {
            fprintf(stderr, "%s: a new OAuth token: %s\n", t->sc->prog, err);
            return rc == SMTPC_ENOTFOUND ? SMTPC_EAUTH : rc;
        }
        cli_free_secret(t->token);
        t->token = fresh;
    }
    *token = t->token;
    *len = strlen(t->token);
    return 0;
}

/* A whole decimal number in [lo, hi] for option id, or EX_USAGE with a message. */
static int bulk_num(const cli_ctx *c, cli_opt_id id, uint64_t lo, uint64_t hi, uint64_t *out)
{
    const char *v = c->o.val[id];
    if (!v) return 0;
    if (cli_parse_u64(v, out) || *out < lo || *out > hi) {
        fprintf(stderr, "%s %s: %s wants a whole number from %llu to %llu, not '%s'\n", c->prog, c->cmdname,
                cli_opt_find_id(id)->name, (unsigned long long)lo, (unsigned long long)hi, v);
        return EX_USAGE;
    }
    return 0;
}

int cli_bulk_check(const cli_ctx *c)
{
    uint64_t u;
    int ex = bulk_num(c, O_CONNECTIONS, 1, 10000, &u);
    if (!ex) ex = bulk_num(c, O_MAX_PER_CONNECTION, 1, UINT32_MAX, &u);
    const char *v = c->o.val[O_RATE];
    if (!ex && v) {
        char *end = NULL;
        double rate = strtod(v, &end);
        if (!end || *end || !(rate > 0) || rate > 1e9) {
            fprintf(stderr, "%s %s: --rate wants messages per second above 0, not '%s'\n", c->prog, c->cmdname, v);
            ex = EX_USAGE;
        }
    }
    return ex;
}

/* --trace: each connection's dialogue, "HH:MM:SS.mmm [N] C: ..." (N the
 * connection's number); the messages' lines only with --trace-body. */
static void trace_cb(void *ud, unsigned conn, smtpc_trace_dir dir, const char *line, size_t len)
{
    (void)ud;
    char prefix[32];
    snprintf(prefix, sizeof prefix, "[%u] %s", conn,
             dir == SMTPC_TRACE_SENT || dir == SMTPC_TRACE_BODY ? "C:" : "S:");
    cli_trace_line(prefix, line, len);
}

/* The connection settings, from the same options and configuration as a
 * single send. 0 or an exit status after printing why. */
static int bulk_setup(bulk_ctx *x, smtpc_bulk **out, bulk_token *tk)
{
    cli_ctx *c = x->c;
    cli_result r;
    cli_result_init(&r);
    smtpc_conn_opts *o = NULL;
    if (cli_conn_opts(c, &r, token_cb, tk, &o)) {
        cli_err(c, "%s", r.errmsg);
        int ex = cli_exit_code(r.err);
        cli_result_free(&r);
        return ex;
    }
    cli_strlcpy(x->server, r.server, sizeof x->server);
    x->tls = r.tls;
    x->allowfails = cli_get_bool(c, O_RCPT_ALLOWFAILS);
    cli_result_free(&r);
    smtpc_bulk *b;
    /* the server is in o (smtpc_bulk_set_conn_opts) */
    int rc = smtpc_bulk_new(&b, "localhost", 25);
    if (!rc && smtpc_bulk_set_conn_opts(b, o)) {
        cli_err(c, "%s", smtpc_bulk_errmsg(b));
        smtpc_conn_opts_free(o);
        smtpc_bulk_free(b);
        return EX_USAGE;
    }
    smtpc_conn_opts_free(o);
    if (rc) {
        cli_err(c, "%s", smtpc_strerror(rc));
        return cli_exit_code(rc);
    }
    uint64_t k = 1, maxper = 0;
    bulk_num(c, O_CONNECTIONS, 1, 10000, &k);
    bulk_num(c, O_MAX_PER_CONNECTION, 1, UINT32_MAX, &maxper);
    rc = smtpc_bulk_set_connections(b, (unsigned)k);
    if (!rc && maxper) rc = smtpc_bulk_set_max_per_connection(b, (unsigned)maxper);
    if (!rc && c->o.val[O_RATE]) rc = smtpc_bulk_set_rate(b, strtod(c->o.val[O_RATE], NULL), 1);
    /* DSN as a single send asks for it: every copy with the same NOTIFY
     * (each recipient), RET and ENVID; sendmail callers' requests are
     * dropped for a server without DSN, smtpc send insists */
    x->dsn.dsn_notify = c->o.val[O_DSN_NOTIFY];
    x->dsn.dsn_ret = c->o.val[O_DSN_RET];
    x->dsn.dsn_envid = c->o.val[O_ENVID];
    x->want_dsn = x->dsn.dsn_notify || x->dsn.dsn_ret || x->dsn.dsn_envid;
    if (!rc && x->want_dsn)
        rc = smtpc_bulk_set_dsn_policy(b, c->cmd == CMD_SENDMAIL ? SMTPC_DSN_IGNORE : SMTPC_DSN_REQUIRE);
    if (!rc && (c->o.val[O_TRACE] || c->o.val[O_TRACE_BODY])) rc = smtpc_bulk_set_trace(b, trace_cb, NULL);
    if (!rc && c->o.val[O_TRACE_BODY]) rc = smtpc_bulk_set_trace_body(b, true);
    int ex = rc ? EX_USAGE : 0;
    if (rc) cli_err(c, "%s", smtpc_bulk_errmsg(b));
    if (!ex) ex = cli_dkim_bulk(c, b); /* --dkim-key: signed on a pool of threads */
    if (ex) {
        smtpc_bulk_free(b);
        return ex;
    }
    *out = b;
    return 0;
}

static int bulk_go(bulk_ctx *x, smtpc_bulk *b)
{
    smtpc_bulk_set_source(b, next_cb, x);
    smtpc_bulk_set_result_cb(b, result_cb, x);
    x->t0 = now_s();
    int rc = smtpc_bulk_run(b);
    if (rc && rc != SMTPC_ECANCELED) {
        cli_err(x->c, "%s", smtpc_bulk_errmsg(b));
        if (!x->first_err) x->first_err = rc;
    }
    return rc;
}

static void summary(const bulk_ctx *x)
{
    if (x->progress) print_progress((bulk_ctx *)x, true);
    if (!x->quiet)
        fprintf(stderr, "%s: %llu sent, %llu not sent, %.2fs\n", x->c->prog, (unsigned long long)x->sent,
                (unsigned long long)x->failed, now_s() - x->t0);
}

int cli_send_many(cli_ctx *c, const char *from, const char *const *rcpts, size_t nrcpts,
                  smtpc_message *m, const cli_source *src, uint64_t count)
{
    bulk_ctx x;
    memset(&x, 0, sizeof x);
    x.c = c;
    x.from = from;
    x.rcpts = rcpts;
    x.nrcpts = nrcpts;
    x.count = count;
    x.report = true;
    x.quiet = c->o.val[O_QUIET] != NULL;
    /* the bytes of the first copy */
    cli_buf body;
    cli_buf_init(&body, CLI_MAX_MESSAGE);
    int ex = 0;
    if (m) {
        /* written once, 7-bit and with encoded words (RFC 2047) unless an
         * address needs SMTPUTF8 (then MAIL carries SMTPUTF8 too): right for
         * every server, whatever it offers */
        bool env8 = cli_has_8bit(from, strlen(from));
        for (size_t i = 0; !env8 && i < nrcpts; i++) env8 = cli_has_8bit(rcpts[i], strlen(rcpts[i]));
        if (smtpc_message_needs_smtputf8(m) && !env8) {
            /* the run declares SMTPUTF8 for the envelope's addresses only */
            cli_err(c, "an address outside the envelope (--reply-to) needs SMTPUTF8: "
                       "not available with --count or --connections");
            cli_buf_free(&body);
            return EX_UNAVAILABLE;
        }
        smtpc_message_writer *w = NULL;
        int rc = smtpc_message_writer_new(&w, m, env8 ? SMTPC_WRITE_SMTPUTF8 : 0u);
        char tmp[65536];
        ssize_t n = 0;
        while (!rc && (n = smtpc_message_writer_read(w, tmp, sizeof tmp)) > 0)
            if ((rc = cli_buf_append(&body, tmp, (size_t)n))) break;
        if (!rc && n < 0) rc = (int)n;
        if (rc) {
            const char *why = w && smtpc_message_writer_errmsg(w)[0] ? smtpc_message_writer_errmsg(w)
                              : smtpc_message_errmsg(m)[0]         ? smtpc_message_errmsg(m)
                                                                   : smtpc_strerror(rc);
            cli_err(c, "%s", why);
            ex = cli_exit_code(rc);
        }
        smtpc_message_writer_free(w);
        const char *id = smtpc_message_message_id(m);
        const char *t = (const char *)cli_buf_ptr(&body);
        size_t il = id ? strlen(id) : 0;
        const char *hit = NULL;
        size_t hend = 0; /* the header block: up to the blank line */
        while (hend + 4 <= cli_buf_size(&body) && memcmp(t + hend, "\r\n\r\n", 4)) hend++;
        for (size_t k = 0; !ex && il > 2 && k + il <= hend && !hit; k++)
            if (t[k] == '<' && !memcmp(t + k, id, il)) hit = t + k;
        if (hit) {
            x.id_at = (size_t)(hit - t) + 1;
            x.id_len = il - 2;
        }
    } else {
        cli_source_reader rd;
        cli_source_reader_init(&rd, src);
        char tmp[65536];
        ssize_t n;
        while ((n = cli_source_read(&rd, tmp, sizeof tmp)) > 0)
            if (cli_buf_append(&body, tmp, (size_t)n)) { n = SMTPC_ENOMEM; break; }
        if (n < 0) {
            cli_err(c, "cannot read %s: %s", c->o.val[O_MESSAGE] ? c->o.val[O_MESSAGE] : "the message",
                    cli_source_reader_error(&rd) ? cli_source_reader_error(&rd) : smtpc_strerror((int)n));
            ex = EX_IOERR;
        }
    }
    x.tmpl = (const char *)cli_buf_ptr(&body);
    x.tmpl_len = cli_buf_size(&body);
    smtpc_bulk *b = NULL;
    bulk_token tk = {c, NULL};
    if (!ex) ex = bulk_setup(&x, &b, &tk);
    if (!ex) {
        cli_progress_start(&x.pg, "messages", count, false);
        bulk_go(&x, b);
        cli_progress_end(&x.pg);
        if (c->o.val[O_CONNECTIONS]) summary(&x);
        ex = x.first_err ? cli_exit_code(x.first_err) : 0;
    }
    smtpc_bulk_free(b);
    cli_free_secret(tk.token);
    cli_buf_free(&body);
    return ex;
}

int cmd_bulk(const char *prog, int argc, char **argv)
{
    cli_ctx c;
    memset(&c, 0, sizeof c);
    c.prog = prog;
    c.cmdname = "bulk";
    c.cmd = CMD_BULK;
    bulk_ctx x;
    memset(&x, 0, sizeof x);
    x.c = &c;
    int ex = cli_parse(prog, "bulk", CMD_BULK, argc, argv, &c.o);
    if (ex) goto out;
    if (c.o.val[O_HELP]) { ex = cmd_help("bulk", stdout); goto out; }
    if (c.o.pos.n || !c.o.val[O_DIR]) {
        fprintf(stderr, "%s bulk: %s\n(see '%s help bulk')\n", prog,
                c.o.pos.n ? "unexpected argument" : "--dir DIR is required", prog);
        ex = EX_USAGE;
        goto out;
    }
    if ((ex = cli_bulk_check(&c)) || (ex = cli_dsn_normalize(&c)) || (ex = cli_ctx_load_config(&c, NULL)))
        goto out;
    if (!cli_get(&c, O_SERVER)) {
        cli_err(&c, "bulk needs a server (--server or \"server\" in the configuration)");
        ex = EX_CONFIG;
        goto out;
    }
    {
        /* the library's lister: *.eml, never dot-files (a writer's temporaries) */
        char why[512] = "";
        int rc = smtpc_pickup_list(c.o.val[O_DIR], &x.files, &x.nfiles, why, sizeof why);
        if (rc) {
            cli_err(&c, "cannot read directory %s: %s", c.o.val[O_DIR], why[0] ? why : smtpc_strerror(rc));
            ex = rc == SMTPC_ENOMEM ? EX_OSERR : EX_NOINPUT;
            goto out;
        }
    }
    x.quiet = c.o.val[O_QUIET] != NULL;
    smtpc_bulk *b = NULL;
    bulk_token tk = {&c, NULL};
    ex = bulk_setup(&x, &b, &tk);
    if (!ex) {
        x.progress = !x.quiet && isatty(2);
        int rc = bulk_go(&x, b);
        summary(&x);
        ex = x.failed || rc ? EX_TEMPFAIL : 0;
    }
    smtpc_bulk_free(b);
    cli_free_secret(tk.token);
out:
    smtpc_pickup_list_free(x.files, x.nfiles);
    cli_ctx_free(&c);
    return ex;
}
