/* Delivery through smtpc_client: SMTP server, pickup directory, outbox; the
 * connection settings every command shares (cli_conn_opts), and the
 * session of smtpc probe. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static int rcpts_init(cli_result *r, const cli_envelope *env)
{
    r->rcpts = calloc(env->nrcpts ? env->nrcpts : 1, sizeof *r->rcpts);
    if (!r->rcpts) return SMTPC_ENOMEM;
    r->nrcpts = env->nrcpts;
    for (size_t i = 0; i < env->nrcpts; i++) r->rcpts[i].address = env->rcpts[i];
    return 0;
}

/* A pickup file or an outbox entry, written by the client
 * (smtpc_client_set_delivery): the library's rule for stored copies (7-bit
 * clean unless an address needs SMTPUTF8), and for a pickup file its
 * signature (--dkim-key: whoever relays the file will not sign it, t= is
 * the time it is written; an outbox entry is signed when it is flushed). */
int cli_deliver_stored(const cli_ctx *c, smtpc_delivery how, const char *dir, const cli_envelope *env,
                       const cli_source *src, cli_result *r)
{
    smtpc_client *cl;
    int rc = smtpc_client_new(&cl);
    if (rc) return cli_result_fail(r, rc, "cannot create a client: %s", smtpc_strerror(rc));
    const char *why = NULL;
    rc = smtpc_client_set_delivery(cl, how, dir);
    if (!rc && how == SMTPC_DELIVERY_PICKUP && cli_dkim_client(c, cl))
        rc = SMTPC_ECONFIG, why = "DKIM signing is not configured correctly";
    smtpc_result *res = NULL;
    cli_source_reader mr;
    cli_source_reader_init(&mr, src);
    if (!rc && src->msg) {
        rc = smtpc_client_send_with(cl, src->msg, NULL, &res);
    } else if (!rc) {
        smtpc_send_params p;
        memset(&p, 0, sizeof p);
        p.rewind = cli_source_rewind; /* read twice to sign */
        rc = smtpc_client_send_envelope_with(cl, env->from, env->rcpts, env->nrcpts, cli_source_read, &mr, &p, &res);
    }
    if (!rc && (!smtpc_result_queue_id(res) || !*smtpc_result_queue_id(res))) rc = SMTPC_EIO;
    if (rc) {
        if (!why) why = cli_source_reader_error(&mr); /* the file vanished ... */
        if (!why && res && smtpc_result_errmsg(res)[0]) why = smtpc_result_errmsg(res);
        if (!why) why = smtpc_client_errmsg(cl)[0] ? smtpc_client_errmsg(cl) : smtpc_strerror(rc);
        cli_result_fail(r, rc, "%s", why);
    } else {
        free(r->queue_id);
        r->queue_id = strdup(smtpc_result_queue_id(res));
        if (!r->queue_id) rc = cli_result_fail(r, SMTPC_ENOMEM, "out of memory");
    }
    smtpc_result_free(res);
    smtpc_client_free(cl);
    if (rc) return rc;
    for (size_t i = 0; i < r->nrcpts; i++) r->rcpts[i].accepted = true;
    r->ok = true;
    return 0;
}

/* r->path = dir/sub name ext (left NULL when out of memory: the report
 * goes without it). */
void cli_result_path(cli_result *r, const char *dir, const char *sub, const char *name, const char *ext)
{
    cli_buf pb;
    cli_buf_init(&pb, 8192);
    if (!cli_buf_printf(&pb, "%s/%s%s%s", dir, sub, name, ext) && !cli_buf_append(&pb, "", 1)) {
        free(r->path);
        r->path = (char *)pb.data;
    } else {
        cli_buf_free(&pb);
    }
}

static int deliver_pickup(const cli_ctx *c, const cli_envelope *env, const cli_source *src,
                          cli_result *r)
{
    r->delivery = "pickup";
    const char *dir = cli_get(c, O_PICKUP_DIR);
    if (!dir) dir = "outbox";
    int rc = cli_deliver_stored(c, SMTPC_DELIVERY_PICKUP, dir, env, src, r);
    if (!rc) cli_result_path(r, dir, "", r->queue_id, "");
    return rc;
}

/* --bind ADDR[:PORT] ("[v6]:port", or a bare IPv6 address without port). */
static int parse_bind(const char *v, char *addr, size_t len, uint16_t *port)
{
    const char *c1 = strchr(v, ':');
    if (c1 && v[0] != '[' && strchr(c1 + 1, ':')) { /* bare IPv6 */
        if (strlen(v) >= len) return SMTPC_ECONFIG;
        cli_strlcpy(addr, v, len);
        *port = 0;
        return 0;
    }
    return smtpc_config_parse_server(v, addr, len, port);
}

/* ---- security settings -> session ---------------------------------------- */

/* OAuth token provider: runs --oauth-token-cmd for the token and again when
 * the server refused it (an expired token). The token lives until the next
 * call or cli_security_done(). */
static struct { const cli_ctx *c; char *token; } g_tok;

static int token_provider(void *ud, bool refresh, const char **token, size_t *len)
{
    (void)ud;
    (void)refresh; /* both mean "run the command": it returns the current token */
    cli_free_secret(g_tok.token);
    g_tok.token = NULL;
    const char *src;
    char err[256];
    int rc = cli_secret(g_tok.c, true, &g_tok.token, &src, err, sizeof err);
    if (rc) return rc == SMTPC_ENOTFOUND ? SMTPC_EAUTH : rc;
    *token = g_tok.token;
    *len = strlen(g_tok.token);
    return 0;
}

void cli_security_done(void)
{
    cli_free_secret(g_tok.token);
    g_tok.token = NULL;
    g_tok.c = NULL;
}

static int tls_version(const char *v, int *out)
{
    if (!v) { *out = 0; return 0; }
    static const char *const names[] = {"1.0", "1.1", "1.2", "1.3"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(v, names[i])) { *out = 10 + i; return 0; }
    return SMTPC_ECONFIG;
}

int cli_server_choose(const cli_ctx *c, cli_result *r, char *host, size_t hostlen, uint16_t *port_out,
                      smtpc_tls_mode *mode_out)
{
    uint16_t port = 0;
    const char *server = cli_get(c, O_SERVER);
    if (!server || smtpc_config_parse_server(server, host, hostlen, &port))
        return cli_result_fail(r, SMTPC_ECONFIG, "bad or missing server \"%s\"", server ? server : "");
    const char *tls = cli_get(c, O_TLS);
    /* "port" in the configuration goes with the configured server, not with --server */
    const char *portv = c->o.val[O_SERVER] ? NULL : smtpc_account_get(c->acct, "port");
    if (!port && portv) {
        uint64_t v;
        if (!cli_parse_u64(portv, &v)) port = (uint16_t)v;
    }
    bool creds = cli_get(c, O_USER) || cli_get(c, O_OAUTH_TOKEN_CMD);
    smtpc_tls_mode mode = SMTPC_TLS_MODE_DEFAULT;
    if (tls && smtpc_tls_mode_parse(tls, &mode))
        return cli_result_fail(r, SMTPC_ECONFIG, "--tls: \"%s\" is not a TLS mode", tls);
    /* without --tls, the library's default (RFC 8314): implicit TLS on 465;
     * opportunistic STARTTLS on 25 without credentials (relay); STARTTLS
     * required everywhere else: never a silent plaintext submission */
    mode = smtpc_tls_mode_effective(mode, port ? port : 587, creds);
    if (!port) port = mode == SMTPC_TLS_MODE_IMPLICIT || mode == SMTPC_TLS_MODE_AUTO ? 465
                      : mode == SMTPC_TLS_MODE_NONE ? 25 : 587;
    r->tls = mode == SMTPC_TLS_MODE_IMPLICIT ? "tls" : smtpc_tls_mode_name(mode);
    snprintf(r->server, sizeof r->server, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
    *port_out = port;
    *mode_out = mode;
    return 0;
}

/* Every connection setting of the command line and the configuration, in
 * one smtpc_conn_opts: the server and TLS mode (cli_server_choose), timeouts,
 * EHLO name, bind, family, proxy, TLS configuration, credentials. */
int cli_conn_opts(const cli_ctx *c, cli_result *r, smtpc_token_cb tok, void *tok_ud, smtpc_conn_opts **out)
{
    char host[256];
    uint16_t port;
    smtpc_tls_mode mode;
    if (cli_server_choose(c, r, host, sizeof host, &port, &mode)) return r->err;
    smtpc_conn_opts *o;
    int rc = smtpc_conn_opts_new(&o);
    if (rc) return cli_result_fail(r, rc, "out of memory");
    if (!tok) { /* the command's token, run again when the server refuses it */
        g_tok.c = c;
        tok = token_provider;
        tok_ud = NULL;
    }
    const char *v;
#define SET(call)                                                                                  \
    do {                                                                                           \
        if (!r->err && (rc = (call)) != 0)                                                         \
            cli_result_fail(r, rc == SMTPC_EINVAL ? SMTPC_ECONFIG : rc, "%s", smtpc_conn_opts_errmsg(o)); \
    } while (0)
    SET(smtpc_conn_opts_set_server(o, host, port));
    SET(smtpc_conn_opts_set_tls_mode(o, mode));
    /* --timeout is "how long to wait for the server": also for the greeting
     * (unless --greeting-timeout says otherwise) and the end-of-data reply */
    static const cli_opt_id tmo[] = {O_CONNECT_TIMEOUT, O_GREETING_TIMEOUT, O_TIMEOUT};
    int64_t ms[3] = {0, 0, 0};
    for (size_t i = 0; !r->err && i < CLI_ARRAY_LEN(tmo); i++)
        if ((v = cli_get(c, tmo[i])) && smtpc_config_parse_duration_ms(v, &ms[i]))
            cli_result_fail(r, SMTPC_ECONFIG, "%s: \"%s\" is not a duration", cli_opt_find_id(tmo[i])->name, v);
    SET(smtpc_conn_opts_set_connect_timeout_ms(o, ms[0]));
    SET(smtpc_conn_opts_set_greeting_timeout_ms(o, ms[1] ? ms[1] : ms[2]));
    SET(smtpc_conn_opts_set_auto_timeout_ms(o, ms[1]));
    SET(smtpc_conn_opts_set_command_timeout_ms(o, ms[2]));
    SET(smtpc_conn_opts_set_data_timeout_ms(o, ms[2]));
    if ((v = cli_get(c, O_EHLO_NAME))) SET(smtpc_conn_opts_set_ehlo_name(o, v));
    if (!r->err && (v = cli_get(c, O_BIND))) {
        char addr[256];
        uint16_t bport = 0;
        if (parse_bind(v, addr, sizeof addr, &bport))
            cli_result_fail(r, SMTPC_ECONFIG, "bad bind address \"%s\" (ADDR, ADDR:PORT or [IPv6]:PORT)", v);
        SET(smtpc_conn_opts_set_bind(o, addr, bport));
    }
    if (!r->err && cli_get_bool(c, O_IPV4) && cli_get_bool(c, O_IPV6))
        cli_result_fail(r, SMTPC_ECONFIG, "-4 and -6 exclude each other");
    if (cli_get_bool(c, O_IPV4)) SET(smtpc_conn_opts_set_family(o, SMTPC_FAMILY_IPV4));
    if (cli_get_bool(c, O_IPV6)) SET(smtpc_conn_opts_set_family(o, SMTPC_FAMILY_IPV6));
    /* the library's message never holds the proxy's credentials */
    if (!r->err && (v = cli_get(c, O_PROXY)) && *v && (rc = smtpc_conn_opts_set_proxy_url(o, v)))
        cli_result_fail(r, rc == SMTPC_EINVAL ? SMTPC_ECONFIG : rc, "--proxy: %s", smtpc_conn_opts_errmsg(o));
    if ((v = cli_get(c, O_CA_FILE))) SET(smtpc_conn_opts_set_ca_file(o, v));
    if ((v = cli_get(c, O_CA_PATH))) SET(smtpc_conn_opts_set_ca_path(o, v));
    if ((v = cli_get(c, O_TLS_SERVER_NAME))) SET(smtpc_conn_opts_set_tls_server_name(o, v));
    if (!r->err && !cli_get(c, O_CERT) && cli_get(c, O_KEY)) cli_result_fail(r, SMTPC_ECONFIG, "--key without --cert");
    if ((v = cli_get(c, O_CERT))) SET(smtpc_conn_opts_set_client_cert(o, v, cli_get(c, O_KEY)));
    if (!r->err && (v = cli_get(c, O_PIN))) {
        /* several pins: separated by ';' ',' or spaces */
        char buf[1024];
        cli_strlcpy(buf, v, sizeof buf);
        for (char *p = buf; !r->err && *p;) {
            size_t n = strcspn(p, ";, ");
            char save = p[n];
            p[n] = '\0';
            if (n && smtpc_conn_opts_add_pin(o, p))
                cli_result_fail(r, SMTPC_ECONFIG, "--pin: %s", smtpc_conn_opts_errmsg(o));
            p += n + (save ? 1 : 0);
        }
    }
    if (!r->err && cli_get_bool(c, O_INSECURE)) {
        SET(smtpc_conn_opts_set_insecure(o, true));
        fprintf(stderr, "%s %s: warning: --insecure: the server's certificate is NOT verified; "
                        "anyone on the path can read and change this session\n", c->prog, c->cmdname);
    }
    int tmin = 0, tmax = 0;
    if (!r->err && (tls_version(cli_get(c, O_TLS_MIN), &tmin) || tls_version(cli_get(c, O_TLS_MAX), &tmax)))
        cli_result_fail(r, SMTPC_ECONFIG, "--tls-min/--tls-max: not one of 1.0, 1.1, 1.2, 1.3");
    if (tmin || tmax || c->o.val[O_TLS_STRICT_VERSION])
        SET(smtpc_conn_opts_set_tls_versions(o, tmin, tmax, c->o.val[O_TLS_STRICT_VERSION] != NULL));
    if ((v = cli_get(c, O_AUTH))) SET(smtpc_conn_opts_set_auth_mechanisms(o, v));
    if (cli_get_bool(c, O_ALLOW_PLAINTEXT_AUTH)) SET(smtpc_conn_opts_set_allow_plaintext_auth(o, true));
    const char *user = cli_get(c, O_USER);
    if (!r->err && cli_get(c, O_OAUTH_TOKEN_CMD)) {
        SET(smtpc_conn_opts_set_token_cb(o, tok, tok_ud));
        if (user) SET(smtpc_conn_opts_set_credentials(o, user, NULL));
    } else if (!r->err && user) {
        char *pw = NULL, err[256];
        const char *src;
        rc = cli_secret(c, false, &pw, &src, err, sizeof err);
        if (rc == SMTPC_ENOTFOUND)
            cli_result_fail(r, SMTPC_ECONFIG, "--user %s needs a password: --password-env VAR, "
                            "--password-file FILE or --password-cmd CMD", user);
        else if (rc)
            cli_result_fail(r, rc, "%s", err);
        else
            SET(smtpc_conn_opts_set_credentials(o, user, pw));
        cli_free_secret(pw);
    }
#undef SET
    if (r->err) {
        smtpc_conn_opts_free(o);
        return r->err;
    }
    *out = o;
    return 0;
}

int cli_session_open(const cli_ctx *c, cli_result *r, smtpc_session **out)
{
    smtpc_conn_opts *o = NULL;
    if (cli_conn_opts(c, r, NULL, NULL, &o)) return r->err;
    smtpc_session *s;
    int rc = smtpc_session_new(&s);
    if (rc) {
        smtpc_conn_opts_free(o);
        return cli_result_fail(r, rc, "cannot create a session: %s", smtpc_strerror(rc));
    }
    rc = smtpc_session_set_conn_opts(s, o);
    smtpc_conn_opts_free(o);
    if (!rc && (c->o.val[O_TRACE] || c->o.val[O_TRACE_BODY])) rc = smtpc_session_set_trace(s, cli_trace_cb, NULL);
    if (rc) {
        cli_result_fail(r, rc, "%s", smtpc_session_errmsg(s));
        smtpc_session_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

/* What the session ended up using, for the report. */
void cli_result_security(cli_result *r, const smtpc_session *s)
{
    smtpc_tls_mode u = smtpc_session_security_used(s);
    r->tls = u == SMTPC_TLS_MODE_IMPLICIT ? "tls" : u == SMTPC_TLS_MODE_STARTTLS ? "starttls" : "none";
    r->auth = smtpc_session_auth_mechanism(s);
    const smtpc_tls_info *ti = u != SMTPC_TLS_MODE_NONE ? smtpc_session_tls_info(s) : NULL;
    r->tls_used = ti != NULL;
    if (ti) {
        cli_strlcpy(r->tls_version, ti->version, sizeof r->tls_version);
        cli_strlcpy(r->tls_cipher, ti->cipher, sizeof r->tls_cipher);
        r->tls_verified = ti->verified;
    }
}

/* The report's fields from the client's result. */
static void take_final(cli_result *r, const smtpc_result *res)
{
    r->final_code = smtpc_result_reply_code(res);
    cli_strlcpy(r->final_enhanced, smtpc_result_reply_enhanced(res), sizeof r->final_enhanced);
    free(r->final_text);
    r->final_text = r->final_code ? strdup(smtpc_result_reply_text(res)) : NULL;
}

static void take_security(cli_result *r, const smtpc_result *res)
{
    cli_strlcpy(r->auth_buf, smtpc_result_auth_mechanism(res), sizeof r->auth_buf);
    r->auth = r->auth_buf[0] ? r->auth_buf : NULL;
    smtpc_tls_mode u = smtpc_result_security_used(res);
    r->tls_used = u != SMTPC_TLS_MODE_NONE;
    if (!r->tls_used) return;
    r->tls = u == SMTPC_TLS_MODE_IMPLICIT ? "tls" : "starttls";
    cli_strlcpy(r->tls_version, smtpc_result_tls_version(res), sizeof r->tls_version);
    cli_strlcpy(r->tls_cipher, smtpc_result_tls_cipher(res), sizeof r->tls_cipher);
    r->tls_verified = smtpc_result_tls_verified(res);
}

/* The upload line, for a message of a megabyte or more. */
static void upload_progress(void *ud, uint64_t done, uint64_t total)
{
    cli_progress *pg = ud;
    if (!pg->what && total >= ((uint64_t)1 << 20)) cli_progress_start(pg, "upload", total, true);
    if (pg->what) cli_progress_update(pg, done);
}

/* One message to the server through smtpc_client, composed (written for
 * the server's 8BITMIME/SMTPUTF8) or raw (streamed as is), with the
 * connection settings of cli_conn_opts. */
static int deliver_smtp(const cli_ctx *c, const cli_envelope *env, const cli_source *src,
                        cli_result *r)
{
    r->delivery = "smtp";
    smtpc_conn_opts *o = NULL;
    if (cli_conn_opts(c, r, NULL, NULL, &o)) return r->err;
    smtpc_client *cl;
    int rc = smtpc_client_new(&cl);
    if (rc) {
        smtpc_conn_opts_free(o);
        return cli_result_fail(r, rc, "cannot create a client: %s", smtpc_strerror(rc));
    }
    bool trace = c->o.val[O_TRACE] || c->o.val[O_TRACE_BODY];
    cli_trace tr;
    cli_trace_start(&tr, c->o.val[O_TRACE_BODY] != NULL);
    cli_progress pg;
    memset(&pg, 0, sizeof pg);
    /* the greeting waits its documented 60 s with only --connect-timeout
     * given (the client would wait the connect timeout) */
    rc = 0;
    if (cli_get(c, O_CONNECT_TIMEOUT) && !cli_get(c, O_GREETING_TIMEOUT) && !cli_get(c, O_TIMEOUT))
        rc = smtpc_conn_opts_set_greeting_timeout_ms(o, 60000);
    if (!rc) rc = smtpc_client_set_conn_opts(cl, o);
    smtpc_conn_opts_free(o);
    /* all or nothing (as sendmail callers expect): a refused recipient
     * fails the message, so that a retry does not duplicate it; unless
     * --rcpt-allowfails: sent to the accepted ones (0 when at least one
     * was), the refused ones reported */
    if (!rc) rc = smtpc_client_set_strict_recipients(cl, !cli_get_bool(c, O_RCPT_ALLOWFAILS));
    /* sendmail callers pass -N/-R/-V whatever the server: like sendmail,
     * they are dropped for a server without DSN; smtpc send insists */
    if (!rc) rc = smtpc_client_set_dsn_policy(cl, c->cmd == CMD_SENDMAIL ? SMTPC_DSN_IGNORE : SMTPC_DSN_REQUIRE);
    /* the message's lines too: its header lines are shown, the rest with --trace-body */
    if (!rc && trace) rc = smtpc_client_set_trace(cl, cli_trace_cb, &tr);
    if (!rc && trace) rc = smtpc_client_set_trace_body(cl, true);
    if (!rc) rc = smtpc_client_set_progress(cl, upload_progress, &pg);
    /* --dkim-key: the client signs each attempt (t= fresh); cmd_send
     * checked the key before anything was opened */
    const char *dkim_bad = NULL;
    if (!rc && cli_dkim_client(c, cl)) rc = SMTPC_ECONFIG, dkim_bad = "DKIM signing is not configured correctly";
    if (rc) {
        cli_result_fail(r, rc, "%s", dkim_bad ? dkim_bad : smtpc_client_errmsg(cl));
        smtpc_client_free(cl);
        cli_security_done();
        return rc;
    }
    smtpc_send_params p;
    memset(&p, 0, sizeof p);
    p.dsn_ret = c->o.val[O_DSN_RET];
    p.dsn_envid = c->o.val[O_ENVID];
    p.dsn_notify = c->o.val[O_DSN_NOTIFY];
    smtpc_result *res = NULL;
    cli_source_reader mr;
    cli_source_reader_init(&mr, src);
    if (src->msg) {
        rc = smtpc_client_send_with(cl, src->msg, &p, &res);
    } else {
        p.size = src->len;
        /* a raw message with 8-bit bytes is declared when the server allows */
        p.body_8bit = src->file ? src->eightbit
                                : cli_has_8bit(src->head, src->headlen) || cli_has_8bit(src->mem, src->len - src->headlen);
        p.rewind = cli_source_rewind; /* read twice to sign, not copied */
        rc = smtpc_client_send_envelope_with(cl, env->from, env->rcpts, env->nrcpts, cli_source_read, &mr, &p, &res);
    }
    if (trace) cli_trace_end(&tr);
    cli_progress_end(&pg);
    take_security(r, res);
    size_t bad = 0;
    bool begun = false; /* the transaction started: every recipient has its outcome */
    for (size_t i = 0; i < r->nrcpts && i < smtpc_result_rcpt_count(res); i++) {
        cli_rcpt *x = &r->rcpts[i];
        begun |= smtpc_result_rcpt_attempts(res, i) > 0;
        x->accepted = smtpc_result_rcpt_accepted(res, i);
        x->code = smtpc_result_rcpt_code(res, i);
        cli_strlcpy(x->enhanced, smtpc_result_rcpt_enhanced(res, i), sizeof x->enhanced);
        x->text = x->code ? strdup(smtpc_result_rcpt_text(res, i)) : NULL;
    }
    for (size_t i = 0; i < r->nrcpts; i++) bad += !r->rcpts[i].accepted;
    const char *why = res ? smtpc_result_errmsg(res) : smtpc_client_errmsg(cl);
    if (!rc) {
        take_final(r, res);
        r->queue_id = cli_queue_id_from_text(r->final_text);
        r->ok = true;
    } else if (cli_source_reader_error(&mr)) {
        cli_result_fail(r, rc, "%s", cli_source_reader_error(&mr)); /* the file vanished ... */
    } else if (!begun) {
        cli_result_fail(r, rc, "%s", why);
        /* the reply that refused the connection (535 to AUTH, 554 greeting ...) */
        if (rc == SMTPC_EAUTH || rc == SMTPC_EPERMFAIL || rc == SMTPC_ETEMPFAIL) take_final(r, res);
    } else {
        if ((rc == SMTPC_EPERMFAIL || rc == SMTPC_ETEMPFAIL) && bad)
            cli_result_fail(r, rc, "%zu of %zu recipient%s refused; message not sent (%s)", bad, r->nrcpts,
                            r->nrcpts == 1 ? "" : "s", why);
        else
            cli_result_fail(r, rc, "%s", why);
        if (bad == 0 || rc == SMTPC_EUNKNOWN) take_final(r, res);
    }
    smtpc_result_free(res);
    smtpc_client_free(cl); /* QUIT */
    cli_security_done();
    return r->ok ? 0 : r->err;
}

int cli_check_supported(const cli_ctx *c, cli_delivery d)
{
    if (d == DELIVER_PICKUP) {
        /* sendmail callers pass -N/-R/-V blindly: only smtpc send complains */
        if (c->cmd == CMD_SEND && (c->o.val[O_DSN_NOTIFY] || c->o.val[O_DSN_RET] || c->o.val[O_ENVID])) {
            cli_err(c, "--dsn-notify, --dsn-ret and --envid need SMTP delivery");
            return EX_USAGE;
        }
        return 0;
    }
    if (c->o.val[O_DSN_RET] && strcmp(c->o.val[O_DSN_RET], "FULL") && strcmp(c->o.val[O_DSN_RET], "HDRS")) {
        cli_err(c, "--dsn-ret: \"%s\" is not FULL or HDRS", c->o.val[O_DSN_RET]);
        return EX_USAGE;
    }
    return 0;
}

int cli_deliver(const cli_ctx *c, cli_delivery d, const cli_envelope *env, const cli_source *src,
                cli_result *r)
{
    if (rcpts_init(r, env)) return cli_result_fail(r, SMTPC_ENOMEM, "out of memory");
    switch (d) {
    case DELIVER_PICKUP: return deliver_pickup(c, env, src, r);
    case DELIVER_SMTP: return deliver_smtp(c, env, src, r);
    case DELIVER_OUTBOX: return cli_deliver_outbox(c, env, src, r); /* cmd_queue.c */
    }
    return SMTPC_EINVAL;
}
