/* The connection opener (see opener.h): greeting -> EHLO (HELO) ->
 * STARTTLS -> EHLO -> AUTH over the engine's events. The policy, the
 * error codes and the messages are the blocking session's. */
#include "engine/opener.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct smtpc__opener {
    smtpc__engine *e;
    smtpc__opener_policy pol;
    smtpc_tls_mode mode;
    bool encrypted, did_starttls, fatal, greeted;
    bool decided;            /* the failure was decided by o->reply */
    bool stepwise, helo;     /* smtpc__opener_start_step: one step, then DONE */
    bool broken;             /* the failure left the protocol state unknown */
    smtpc__open_step step;
    int failed;              /* the failure returned (sticky), 0 = none */
    char ehlo_name[512];     /* the engine bounds it (command line length), not this */
    char server[300];
    char sasl_host[256];
    uint16_t port;
    smtpc__sasl_token_fn token_fn;
    void *token_ud;
    smtpc__opener_info_fn info;
    void *info_ud;
    /* AUTH */
    smtpc__sasl *sasl;
    smtpc__sasl_mech mech;
    bool token_retried;
    int rounds;
    int cancel_rc;           /* a step failed and "*" was sent: its code */
    char cancel_why[SMTPC__ERRMSG_MAX];
    smtpc__reply *reply, *greeting;
    smtpc__errmsg err;
};

int smtpc__opener_new(smtpc__opener **out, smtpc__engine *e, const smtpc__opener_cfg *cfg)
{
    smtpc__opener *o = calloc(1, sizeof *o);
    if (!o) return SMTPC_ENOMEM;
    o->e = e;
    o->pol = *cfg->policy;
    o->mode = cfg->mode;
    o->encrypted = cfg->encrypted;
    o->greeted = cfg->greeted;
    o->helo = cfg->helo;
    smtpc__strlcpy(o->ehlo_name, cfg->ehlo_name ? cfg->ehlo_name : "localhost", sizeof o->ehlo_name);
    smtpc__strlcpy(o->server, cfg->server ? cfg->server : "the server", sizeof o->server);
    if (cfg->sasl_host) smtpc__strlcpy(o->sasl_host, cfg->sasl_host, sizeof o->sasl_host);
    o->port = cfg->port;
    o->token_fn = cfg->token_fn;
    o->token_ud = cfg->token_ud;
    o->info = cfg->info;
    o->info_ud = cfg->info_ud;
    *out = o;
    return 0;
}

void smtpc__opener_free(smtpc__opener *o)
{
    if (!o) return;
    smtpc__sasl_free(o->sasl); /* wipes */
    smtpc__reply_free(o->reply);
    smtpc__reply_free(o->greeting);
    free(o);
}

smtpc__open_step smtpc__opener_step(const smtpc__opener *o) { return o->step; }
const char *smtpc__opener_errmsg(const smtpc__opener *o) { return o->err.text; }
const smtpc__reply *smtpc__opener_reply(const smtpc__opener *o) { return o->decided ? o->reply : NULL; }
const smtpc__reply *smtpc__opener_greeting(const smtpc__opener *o) { return o->greeting; }
smtpc__sasl_mech smtpc__opener_mech(const smtpc__opener *o) { return o->mech; }
bool smtpc__opener_did_starttls(const smtpc__opener *o) { return o->did_starttls; }
bool smtpc__opener_fatal(const smtpc__opener *o) { return o->fatal; }
bool smtpc__opener_broken(const smtpc__opener *o) { return o->broken; }

static void info(smtpc__opener *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void info(smtpc__opener *o, const char *fmt, ...)
{
    if (!o->info) return;
    char buf[SMTPC__ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    o->info(o->info_ud, buf);
}

/* ---- failures ---------------------------------------------------------------------------- */

static int open_fail(smtpc__opener *o, int rc)
{
    o->failed = rc;
    if (o->step == SMTPC__OPEN_STEP_AUTH && !o->stepwise) {
        bool closed = o->reply && o->reply->code == 421;
        o->fatal = rc != SMTPC_ETEMPFAIL && rc != SMTPC_ENOMEM && !closed;
        /* polite, as the session: the server is still in command state */
        if (!smtpc__engine_closing(o->e)) (void)smtpc__engine_quit(o->e);
    }
    return rc;
}

static int keep_reply(smtpc__opener *o, const smtpc__reply *r)
{
    smtpc__reply *c = r ? smtpc__reply_dup(r) : NULL;
    if (r && !c) return smtpc__err(&o->err, SMTPC_ENOMEM, "out of memory");
    smtpc__reply_free(o->reply);
    o->reply = c;
    return 0;
}

/* "what: server replied 554 5.7.1 text" with the server's words escaped. */
static void fmt_reply(smtpc__opener *o, int code, const smtpc__reply *r, const char *what)
{
    char text[SMTPC__ERRMSG_MAX];
    const char *t = r->text ? r->text : "";
    smtpc__escape_into(text, sizeof text, t, strlen(t));
    smtpc__err(&o->err, code, "%s: server replied %d%s%s %s", what, r->code, r->enhanced[0] ? " " : "",
               r->enhanced, text);
    o->decided = true;
}

/* A reply that is not the one wanted (ok_class: the first digit of
 * success; 9 = none): 4xx ETEMPFAIL (a 421 closes), 5xx EPERMFAIL,
 * anything else EPROTO. */
static int fail_check(smtpc__opener *o, const smtpc__reply *r, const char *what)
{
    int cls = r->code / 100, rc;
    if (cls == 4) rc = SMTPC_ETEMPFAIL;
    else if (cls == 5) rc = SMTPC_EPERMFAIL;
    else rc = SMTPC_EPROTO;
    fmt_reply(o, rc, r, what);
    /* a 421 closes; a positive reply of the wrong kind: we no longer agree on the state */
    o->broken = rc == SMTPC_EPROTO || r->code == 421;
    if (r->code == 421) {
        size_t l = strlen(o->err.text);
        snprintf(o->err.text + l, sizeof o->err.text - l, " (connection closed)");
    }
    return open_fail(o, rc);
}

static int queue_failed(smtpc__opener *o, int rc, const char *what)
{
    const char *m = smtpc__engine_errmsg(o->e);
    size_t wl = strlen(what);
    if (strncmp(m, what, wl) == 0 && m[wl] == ':') smtpc__err(&o->err, rc, "%s", m); /* "EHLO: ..." once */
    else smtpc__err(&o->err, rc, "%s: %s", what, m);
    return open_fail(o, rc);
}

/* ---- steps --------------------------------------------------------------------------------- */

static int send_hello(smtpc__opener *o, bool ehlo)
{
    o->step = SMTPC__OPEN_STEP_EHLO;
    int rc = ehlo ? smtpc__engine_ehlo(o->e, o->ehlo_name) : smtpc__engine_helo(o->e, o->ehlo_name);
    return rc ? queue_failed(o, rc, ehlo ? "EHLO" : "HELO") : SMTPC__OPEN_WAIT;
}

static void sasl_creds(const smtpc__opener *o, smtpc__sasl_creds *c)
{
    *c = o->pol.creds;
    if (o->token_fn) {
        c->token_fn = o->token_fn;
        c->token_ud = o->token_ud;
    }
    c->host = o->sasl_host[0] ? o->sasl_host : NULL;
    c->port = o->port;
    c->client_cert = o->pol.creds.client_cert && o->encrypted;
}

/* AUTH [mech] [initial response]: the exchange begins (again). */
static int auth_send(smtpc__opener *o)
{
    const char *name = smtpc__sasl_mech_name(o->mech);
    smtpc__sasl_line ir;
    memset(&ir, 0, sizeof ir);
    o->rounds = 0;
    o->cancel_rc = 0;
    int rc = smtpc__sasl_start(o->sasl, &ir);
    if (rc) {
        smtpc__err(&o->err, rc, "AUTH %s: %s", name, smtpc__sasl_errmsg(o->sasl));
        return open_fail(o, rc);
    }
    if (ir.b64 && !ir.fits_auth_line) smtpc__sasl_defer_ir(o->sasl); /* SASL-IR only within 512 octets */
    rc = smtpc__engine_auth(o->e, name, ir.b64 && ir.fits_auth_line ? ir.b64 : NULL);
    return rc ? queue_failed(o, rc, "AUTH") : SMTPC__OPEN_WAIT;
}

static int open_done(smtpc__opener *o)
{
    o->step = SMTPC__OPEN_STEP_OPEN;
    smtpc__sasl_free(o->sasl); /* wipes */
    o->sasl = NULL;
    return SMTPC__OPEN_DONE;
}

static int auth_begin(smtpc__opener *o)
{
    o->step = SMTPC__OPEN_STEP_AUTH;
    if (!o->pol.have_creds && o->stepwise) {
        smtpc__err(&o->err, SMTPC_EAUTH, "AUTH: no credentials");
        return open_fail(o, SMTPC_EAUTH);
    }
    if (!o->pol.have_creds) return open_done(o);
    if (!o->encrypted && !o->pol.allow_plain_auth) {
        smtpc__err(&o->err, SMTPC_EAUTH,
                   "AUTH: refusing to send credentials over an unencrypted connection "
                   "(use TLS, or allow plaintext authentication explicitly)");
        return open_fail(o, SMTPC_EAUTH);
    }
    const smtpc__caps *caps = smtpc__engine_caps(o->e);
    smtpc__sasl_mask offered =
        caps->auth ? smtpc__sasl_mask_from_names((const char *const *)caps->auth, caps->nauth) : 0;
    smtpc__sasl_creds c;
    sasl_creds(o, &c);
    smtpc__sasl_mask allowed = o->encrypted ? o->pol.allowed_tls : o->pol.allowed_plain;
    smtpc__sasl_mech m = smtpc__sasl_choose(offered, allowed);
    if (m == SMTPC__SASL_NONE) {
        char a[128], b[128];
        smtpc__sasl_mask_format(offered, a, sizeof a);
        smtpc__sasl_mask_format(allowed, b, sizeof b);
        smtpc__err(&o->err, SMTPC_EAUTH, "AUTH: no mechanism in common (server offers: %s; allowed: %s)",
                   a[0] ? a : "none", b[0] ? b : "none");
        return open_fail(o, SMTPC_EAUTH);
    }
    o->mech = m;
    int rc = smtpc__sasl_new(&o->sasl, m, &c, &o->err);
    if (rc) return open_fail(o, rc);
    return auth_send(o);
}

/* The exchange failed with rc (o->err says why): a refused OAuth token is
 * refreshed once when a provider gives tokens, and AUTH sent again. */
static int auth_failed(smtpc__opener *o, int rc)
{
    bool token_mech = o->mech == SMTPC__SASL_XOAUTH2 || o->mech == SMTPC__SASL_OAUTHBEARER;
    bool provider = o->token_fn || o->pol.creds.token_fn;
    if (rc != SMTPC_EAUTH || !token_mech || !provider || o->token_retried || o->broken ||
        smtpc__engine_closing(o->e))
        return open_fail(o, rc);
    o->token_retried = true;
    char first[SMTPC__ERRMSG_MAX];
    smtpc__strlcpy(first, o->err.text, sizeof first);
    info(o, "AUTH %s refused; refreshing the token", smtpc__sasl_mech_name(o->mech));
    int r2 = smtpc__sasl_restart(o->sasl, true);
    if (r2) {
        smtpc__err(&o->err, r2, "%s; asking for a new token failed: %s", first, smtpc__sasl_errmsg(o->sasl));
        return open_fail(o, r2);
    }
    return auth_send(o);
}

static int on_auth(smtpc__opener *o, const smtpc__reply *r)
{
    const char *name = smtpc__sasl_mech_name(o->mech);
    if (r->code == 421) return fail_check(o, r, "AUTH");
    /* Failing on a 334 leaves the server waiting for a line it never gets
     * (say, a 334 in answer to our "*"); failing on a positive reply of
     * the wrong kind leaves its state unknown: either way broken. */
    bool unknown = r->code == 334 || (r->code / 100 < 4 && r->code != 235);
    if (o->cancel_rc) {
        /* the server's answer to our cancel ("*") or error acknowledgement */
        smtpc__err(&o->err, o->cancel_rc, "AUTH %s: %s (cancelled; server replied %d)", name, o->cancel_why,
                   r->code);
        o->decided = true;
        o->broken = unknown;
        return auth_failed(o, o->cancel_rc);
    }
    const char *text = r->nlines ? r->lines[r->nlines - 1] : "";
    smtpc__sasl_line resp;
    memset(&resp, 0, sizeof resp);
    int rc = smtpc__sasl_reply(o->sasl, r->code, text, strlen(text), &resp);
    if (rc == 1) return open_done(o);
    /* the SASL context bounds the rounds (SMTPC__SASL_MAX_ROUNDS); this is a backstop */
    if (rc == 0 && (!resp.b64 || ++o->rounds > SMTPC__SASL_MAX_ROUNDS + 2)) {
        smtpc__err(&o->err, SMTPC_EAUTH, "AUTH %s: the exchange does not end", name);
        o->broken = true; /* the server waits for an answer we do not have */
        return open_fail(o, SMTPC_EAUTH);
    }
    if (rc == 0) {
        int r2 = smtpc__engine_auth_continue(o->e, resp.b64);
        return r2 ? queue_failed(o, r2, "AUTH") : SMTPC__OPEN_WAIT;
    }
    if (resp.b64) {
        /* the server waits for an answer: "*" cancels (RFC 4954 4) */
        o->cancel_rc = rc;
        smtpc__strlcpy(o->cancel_why, smtpc__sasl_errmsg(o->sasl), sizeof o->cancel_why);
        int r2 = smtpc__engine_auth_continue(o->e, resp.b64);
        return r2 ? queue_failed(o, r2, "AUTH") : SMTPC__OPEN_WAIT;
    }
    if (r->code / 100 == 4 || r->code / 100 == 5) {
        char what[40];
        snprintf(what, sizeof what, "AUTH %s", name);
        fmt_reply(o, rc, r, what);
        return auth_failed(o, rc);
    }
    const char *m = smtpc__sasl_errmsg(o->sasl);
    if (strncmp(m, "AUTH ", 5) == 0) smtpc__err(&o->err, rc, "%s", m); /* "AUTH X: ..." once */
    else smtpc__err(&o->err, rc, "AUTH %s: %s", name, m);
    o->broken = unknown;
    return auth_failed(o, rc);
}

/* EHLO/HELO succeeded: STARTTLS when due, else AUTH. */
static int after_hello(smtpc__opener *o)
{
    if (o->stepwise) return open_done(o); /* EHLO, or STARTTLS's EHLO again */
    if (o->encrypted || o->mode == SMTPC_TLS_MODE_NONE) return auth_begin(o);
    const smtpc__caps *c = smtpc__engine_caps(o->e);
    bool required = o->mode == SMTPC_TLS_MODE_STARTTLS || o->mode == SMTPC_TLS_MODE_IMPLICIT ||
                    (o->pol.have_creds && !o->pol.allow_plain_auth);
    o->step = SMTPC__OPEN_STEP_STARTTLS;
    if (c->flags & SMTPC_EXT_STARTTLS) {
        int rc = smtpc__engine_starttls(o->e);
        return rc ? queue_failed(o, rc, "STARTTLS") : SMTPC__OPEN_WAIT;
    }
    if (required) {
        smtpc__err(&o->err, SMTPC_ETLS, "%s does not offer STARTTLS and TLS is required (%s%s); nothing sent",
                   o->server, smtpc_tls_mode_name(o->mode),
                   o->mode == SMTPC_TLS_MODE_STARTTLS ? "" : ", with credentials");
        int rc = open_fail(o, SMTPC_ETLS);
        o->fatal = true; /* the same on every connection to this server */
        return rc;
    }
    info(o, "no STARTTLS offered: continuing in plaintext (%s)", smtpc_tls_mode_name(o->mode));
    return auth_begin(o);
}

int smtpc__opener_start(smtpc__opener *o)
{
    if (o->greeted) {
        int rc = send_hello(o, true);
        return rc < 0 ? rc : 0;
    }
    o->step = SMTPC__OPEN_STEP_GREETING;
    int rc = smtpc__engine_expect_greeting(o->e);
    return rc ? queue_failed(o, rc, "greeting") : 0;
}

int smtpc__opener_start_step(smtpc__opener *o, smtpc__open_step step)
{
    o->stepwise = true;
    o->greeted = true;
    int rc;
    switch (step) {
    case SMTPC__OPEN_STEP_EHLO: rc = send_hello(o, !o->helo); break;
    case SMTPC__OPEN_STEP_STARTTLS:
        o->step = SMTPC__OPEN_STEP_STARTTLS;
        if (o->encrypted) {
            smtpc__err(&o->err, SMTPC_ESTATE, "STARTTLS: TLS is already on");
            return open_fail(o, SMTPC_ESTATE);
        }
        if (!(smtpc__engine_caps(o->e)->flags & SMTPC_EXT_STARTTLS)) {
            smtpc__err(&o->err, SMTPC_EUNSUPPORTED, "STARTTLS: %s does not offer STARTTLS", o->server);
            return open_fail(o, SMTPC_EUNSUPPORTED);
        }
        rc = smtpc__engine_starttls(o->e);
        rc = rc ? queue_failed(o, rc, "STARTTLS") : SMTPC__OPEN_WAIT;
        break;
    case SMTPC__OPEN_STEP_AUTH: rc = auth_begin(o); break;
    default: return smtpc__err(&o->err, SMTPC_EINVAL, "no such step");
    }
    return rc;
}

int smtpc__opener_tls_started(smtpc__opener *o)
{
    if (o->failed) return o->failed;
    if (o->step != SMTPC__OPEN_STEP_TLS)
        return smtpc__err(&o->err, SMTPC_ESTATE, "TLS started when no STARTTLS was accepted");
    smtpc__engine_tls_started(o->e);
    o->encrypted = true;
    o->did_starttls = true;
    /* RFC 3207 4.2: forget everything and EHLO again */
    int rc = send_hello(o, true);
    return rc < 0 ? rc : 0;
}

int smtpc__opener_event(smtpc__opener *o, const smtpc__event *ev)
{
    if (o->failed) return o->failed;
    if (o->step == SMTPC__OPEN_STEP_OPEN) return SMTPC__OPEN_DONE;
    const smtpc__reply *r = ev->reply;
    if (!r || (ev->type != SMTPC__EV_REPLY && ev->type != SMTPC__EV_TLS_READY)) return SMTPC__OPEN_WAIT;
    int rc = keep_reply(o, r);
    if (rc) return open_fail(o, rc);
    switch (ev->cmd) {
    case SMTPC__CMD_NONE: /* a 421 nobody asked for: the server shuts down */
        return fail_check(o, r, o->step == SMTPC__OPEN_STEP_GREETING ? "greeting"
                                : o->step == SMTPC__OPEN_STEP_AUTH   ? "AUTH"
                                : o->step == SMTPC__OPEN_STEP_STARTTLS ? "STARTTLS" : "EHLO");
    case SMTPC__CMD_GREETING:
        if (!(o->greeting = smtpc__reply_dup(r))) {
            smtpc__err(&o->err, SMTPC_ENOMEM, "out of memory");
            return open_fail(o, SMTPC_ENOMEM);
        }
        /* 554 (or anything else): no service here (RFC 5321 3.1) */
        if (r->code != 220) return fail_check(o, r, "greeting");
        return send_hello(o, true);
    case SMTPC__CMD_EHLO:
        /* HELO only when EHLO is not understood (RFC 5321 4.1.4): a policy
         * refusal is the server's answer */
        if (r->code == 500 || r->code == 502) return send_hello(o, false);
        if (r->code / 100 != 2) return fail_check(o, r, "EHLO");
        return after_hello(o);
    case SMTPC__CMD_HELO:
        if (r->code / 100 != 2) return fail_check(o, r, "HELO");
        return after_hello(o);
    case SMTPC__CMD_STARTTLS:
        if (ev->type == SMTPC__EV_TLS_READY) {
            o->step = SMTPC__OPEN_STEP_TLS;
            return SMTPC__OPEN_TLS;
        }
        /* offered and failed: never fall back to plaintext (a single step
         * stops here anyway: its caller has the reply's code) */
        rc = fail_check(o, r, "STARTTLS");
        if (!o->stepwise && (rc == SMTPC_ETEMPFAIL || rc == SMTPC_EPERMFAIL)) {
            char d[SMTPC__ERRMSG_MAX];
            smtpc__strlcpy(d, o->err.text, sizeof d);
            smtpc__err(&o->err, SMTPC_ETLS, "STARTTLS failed, not continuing without TLS: %s", d);
            return open_fail(o, SMTPC_ETLS);
        }
        return rc;
    case SMTPC__CMD_AUTH:
        if (o->step != SMTPC__OPEN_STEP_AUTH || !o->sasl) return SMTPC__OPEN_WAIT;
        return on_auth(o, r);
    default: return SMTPC__OPEN_WAIT;
    }
}
