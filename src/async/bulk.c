/* smtpc_bulk: lifetime, settings and statistics. The rest of the driver is
 * described in bulk_int.h. */
#include "async/bulk_int.h"
#include "util/linetap.h"
#include "async/sign_pool.h"

#include <smtpc/session.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* "host:port" for messages (b->server), at start. */
static void server_name(smtpc_bulk *b)
{
    const char *h = b->o.host;
    if (strchr(h, ':') && h[0] != '[')
        snprintf(b->server, sizeof b->server, "[%s]:%u", h, (unsigned)b->port);
    else
        snprintf(b->server, sizeof b->server, "%s:%u", h, (unsigned)b->port);
}

/* AUTO: which protection this server offers is decided once for the run,
 * by the session's own AUTO probe (implicit TLS first, then plaintext +
 * STARTTLS, each with the short auto timeout) on one blocking connection
 * before the run starts; every connection of the run then uses the winner:
 * implicit TLS, STARTTLS required (the server offered it: a later
 * connection without it is a downgrade), or opportunistic STARTTLS (it
 * did not). 0, or the probe's failure (errmsg says why). */
static int resolve_auto(smtpc_bulk *b)
{
    smtpc_session *s = NULL;
    int rc = smtpc_session_new(&s);
    if (rc) return smtpc__err(&b->err, rc, "auto: %s", smtpc_strerror(rc));
    rc = smtpc_session_set_conn_opts(s, &b->o);
    if (!rc) rc = smtpc_session_open(s, NULL, b->port);
    if (rc) {
        smtpc__err(&b->err, rc, "%s", smtpc_session_errmsg(s));
        smtpc_session_free(s);
        return rc;
    }
    smtpc_tls_mode used = smtpc_session_security_used(s);
    b->mode = used == SMTPC_TLS_MODE_IMPLICIT ? SMTPC_TLS_MODE_IMPLICIT
              : used == SMTPC_TLS_MODE_STARTTLS ? SMTPC_TLS_MODE_STARTTLS
                                                : SMTPC_TLS_MODE_STARTTLS_OPTIONAL;
    smtpc_session_quit(s);
    smtpc_session_free(s);
    return 0;
}

SMTPC_API int smtpc_bulk_start(smtpc_bulk *b)
{
    if (!b) return SMTPC_EINVAL;
    if (b->started) return SMTPC_ESTATE;
    if (b->o.proxy && smtpc_proxy_get_type(b->o.proxy) == SMTPC_PROXY_HTTPS && !b->proxy_tls) {
        smtpc__tls_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.release_buffers = true;
        int rc = smtpc__tls_ctx_new(&b->proxy_tls, &cfg, &b->err);
        if (rc) return rc;
    }
    b->port = smtpc__conn_opts_port(&b->o);
    b->mode = smtpc__conn_opts_effective_mode(&b->o, b->port);
    if (b->mode == SMTPC_TLS_MODE_AUTO) {
        int arc = resolve_auto(b);
        if (arc) return arc;
    }
    if (b->mode != SMTPC_TLS_MODE_NONE && !b->tls_ctx) {
        /* the session's TLS configuration (CA file/path, pins, client
         * certificate, versions); configuration errors before any network
         * activity */
        smtpc__tls_config cfg;
        smtpc__conn_opts_tls_config(&b->o, &cfg);
        cfg.release_buffers = true; /* idle connections keep no record buffers (~10 KiB each) */
        int rc = smtpc__tls_ctx_new(&b->tls_ctx, &cfg, &b->err);
        if (rc) return rc;
    }
    server_name(b);
    b->started = true;
    smtpc__bulk_now_update(b);
    if (b->overall_ms > 0) b->overall_deadline = b->now + b->overall_ms;
    int rc = smtpc__bulk_resolve_start(b);
    if (rc) return rc;
    smtpc__bulk_after_action(b);
    return 0;
}

/* ---- lifetime and settings ---------------------------------------------- */

SMTPC_API int smtpc_bulk_new(smtpc_bulk **out, const char *host, uint16_t port)
{
    if (!out || !host || !*host || smtpc__has_ctl(host) || strlen(host) > 255) return SMTPC_EINVAL;
    smtpc_bulk *b = calloc(1, sizeof *b);
    if (!b) return SMTPC_ENOMEM;
    smtpc__conn_opts_init(&b->o);
    int hrc = smtpc_conn_opts_set_server(&b->o, host, port);
    b->rbuf = malloc(SMTPC__BULK_RBUF);
    b->tmp = malloc(SMTPC__BULK_CHUNK);
    b->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (hrc || !b->rbuf || !b->tmp || b->cancel_fd < 0) {
        if (b->cancel_fd >= 0) close(b->cancel_fd);
        smtpc__conn_opts_clear(&b->o);
        free(b->rbuf);
        free(b->tmp);
        free(b);
        return hrc == SMTPC_EINVAL ? hrc : SMTPC_ENOMEM;
    }
    b->k = 1;
    b->max_attempts = 3;
    b->burst = 1;
    b->epfd = -1;
    b->resolve_pipe[0] = b->resolve_pipe[1] = -1;
    b->timer_armed = -2;
    smtpc__theap_init(&b->heap);
    atomic_init(&b->cancel_req, false);
    *out = b;
    return 0;
}

SMTPC_API void smtpc_bulk_free(smtpc_bulk *b)
{
    if (!b) return;
    smtpc__bulk_resolve_stop(b);
    b->canceling = true;
    while (b->nconns) smtpc__bulk_conn_kill(b->conns[b->nconns - 1], SMTPC_ECANCELED, "canceled (freed)");
    smtpc__bulk_rec *r;
    while ((r = b->retry_head)) {
        b->retry_head = r->next;
        smtpc__bulk_finish(b, r, SMTPC_BULK_CANCELED, SMTPC_ECANCELED, 0, NULL, "canceled (freed)");
    }
    if ((r = b->ahead)) {
        b->ahead = NULL;
        smtpc__bulk_finish(b, r, SMTPC_BULK_CANCELED, SMTPC_ECANCELED, 0, NULL, "canceled (freed)");
    }
    smtpc__sign_pool_free(b); /* messages still being signed: canceled */
    smtpc__bulk_reap(b);
    smtpc__bulk_recs_free(b);
    smtpc__theap_free(&b->heap);
    free(b->conns);
    free(b->byfd);
    free(b->pfds);
    free(b->pready);
    free(b->pidx);
    free(b->addrs);
    free(b->addrlens);
    if (b->tls_sess) smtpc__tls_session_free(b->tls_sess);
    smtpc__tls_ctx_free(b->tls_ctx);
    if (b->cancel_fd >= 0) close(b->cancel_fd);
    if (b->epfd >= 0) close(b->epfd);
    smtpc__conn_opts_clear(&b->o); /* wipes the secrets */
    smtpc__tls_ctx_free(b->proxy_tls);
    free(b->rbuf);
    free(b->tmp);
    free(b);
}

SMTPC_API const char *smtpc_bulk_errmsg(const smtpc_bulk *b) { return b ? b->err.text : ""; }

SMTPC_API int smtpc_bulk_set_source(smtpc_bulk *b, smtpc_bulk_next_cb next, void *ud)
{
    if (!b || b->started) return SMTPC_EINVAL;
    b->next_cb = next;
    b->next_ud = ud;
    return 0;
}

SMTPC_API int smtpc_bulk_set_result_cb(smtpc_bulk *b, smtpc_bulk_result_cb cb, void *ud)
{
    if (!b) return SMTPC_EINVAL;
    b->res_cb = cb;
    b->res_ud = ud;
    return 0;
}

SMTPC_API int smtpc_bulk_set_connections(smtpc_bulk *b, unsigned k)
{
    if (!b || k == 0 || k > 100000) return SMTPC_EINVAL;
    b->k = k;
    return 0;
}

SMTPC_API int smtpc_bulk_set_max_per_connection(smtpc_bulk *b, unsigned n)
{
    if (!b) return SMTPC_EINVAL;
    b->max_per_conn = n;
    return 0;
}

SMTPC_API int smtpc_bulk_set_max_attempts(smtpc_bulk *b, unsigned n)
{
    if (!b || n == 0) return SMTPC_EINVAL;
    b->max_attempts = n;
    return 0;
}

SMTPC_API int smtpc_bulk_set_rate(smtpc_bulk *b, double msgs_per_sec, unsigned burst)
{
    if (!b || msgs_per_sec < 0) return SMTPC_EINVAL;
    b->rate = msgs_per_sec;
    b->burst = burst ? burst : 1;
    return 0;
}

/* A conn_opts setter's result: its detail copied to the handle. */
static int opt_rc(smtpc_bulk *b, int rc)
{
    if (rc) smtpc__err(&b->err, rc, "%s", b->o.err.text[0] ? b->o.err.text : smtpc_strerror(rc));
    return rc;
}

SMTPC_API int smtpc_bulk_set_conn_opts(smtpc_bulk *b, const smtpc_conn_opts *o)
{
    if (!b) return SMTPC_EINVAL;
    if (!o || b->started)
        return smtpc__err(&b->err, SMTPC_EINVAL, "set_conn_opts: %s", o ? "already started" : "no options");
    smtpc_conn_opts n;
    smtpc__conn_opts_init(&n);
    int rc = smtpc__conn_opts_copy(&n, o);
    /* without a host in o, the server given to smtpc_bulk_new stays */
    if (!rc && !n.host) {
        n.port = b->o.port;
        if (!(n.host = smtpc__strdup(b->o.host))) rc = SMTPC_ENOMEM;
    }
    if (rc) {
        smtpc__conn_opts_clear(&n);
        return smtpc__err(&b->err, SMTPC_ENOMEM, "set_conn_opts: out of memory");
    }
    smtpc__conn_opts_clear(&b->o);
    b->o = n;
    b->ptarget_set = false; /* the target or the proxy may have changed */
    return 0;
}

SMTPC_API int smtpc_bulk_set_timeouts(smtpc_bulk *b, int64_t connect_ms, int64_t greeting_ms,
                                      int64_t command_ms, int64_t data_end_ms, int64_t overall_ms)
{
    if (!b || connect_ms < 0 || greeting_ms < 0 || command_ms < 0 || data_end_ms < 0 ||
        overall_ms < 0)
        return SMTPC_EINVAL;
    /* 0 keeps the value in force */
    if (connect_ms) b->o.connect_ms = connect_ms;
    if (greeting_ms) b->o.greeting_ms = greeting_ms;
    if (command_ms) b->o.command_ms = command_ms;
    if (data_end_ms) b->o.data_ms = data_end_ms;
    b->overall_ms = overall_ms;
    return 0;
}

SMTPC_API int smtpc_bulk_set_ehlo_name(smtpc_bulk *b, const char *name)
{
    if (!b) return SMTPC_EINVAL;
    return opt_rc(b, smtpc_conn_opts_set_ehlo_name(&b->o, name));
}

SMTPC_API int smtpc_bulk_set_tls(smtpc_bulk *b, smtpc_tls_mode mode, const char *server_name,
                                 const char *ca_file, bool insecure)
{
    if (!b) return SMTPC_EINVAL;
    if (b->started) return smtpc__err(&b->err, SMTPC_EINVAL, "set_tls: already started");
    /* all or nothing: checked on a copy */
    smtpc_conn_opts n;
    smtpc__conn_opts_init(&n);
    int rc = smtpc__conn_opts_copy(&n, &b->o);
    if (rc) return rc;
    rc = smtpc_conn_opts_set_tls_mode(&n, mode);
    if (!rc) rc = smtpc_conn_opts_set_tls_server_name(&n, server_name);
    if (!rc) rc = smtpc_conn_opts_set_ca_file(&n, ca_file);
    if (!rc) rc = smtpc_conn_opts_set_insecure(&n, insecure);
    if (rc) smtpc__err(&b->err, rc, "%s", n.err.text[0] ? n.err.text : smtpc_strerror(rc));
    if (rc) {
        smtpc__conn_opts_clear(&n);
        return rc;
    }
    smtpc__conn_opts_clear(&b->o);
    b->o = n;
    return 0;
}

SMTPC_API int smtpc_bulk_set_credentials(smtpc_bulk *b, const char *user, const char *password)
{
    if (!b || b->started) return SMTPC_EINVAL;
    return opt_rc(b, smtpc_conn_opts_set_credentials(&b->o, user, password));
}

SMTPC_API int smtpc_bulk_set_oauth_token(smtpc_bulk *b, const char *token)
{
    if (!b || b->started) return SMTPC_EINVAL;
    int rc = opt_rc(b, smtpc_conn_opts_set_oauth_token(&b->o, token));
    if (!rc) b->o.token_cb = NULL; /* one source of tokens: the last one set */
    return rc;
}

SMTPC_API int smtpc_bulk_set_token_cb(smtpc_bulk *b, smtpc_token_cb cb, void *userdata)
{
    if (!b || b->started) return SMTPC_EINVAL;
    (void)smtpc_conn_opts_set_oauth_token(&b->o, NULL); /* one source of tokens: the last one set */
    return opt_rc(b, smtpc_conn_opts_set_token_cb(&b->o, cb, userdata));
}

SMTPC_API int smtpc_bulk_set_auth_mechanisms(smtpc_bulk *b, const char *list)
{
    if (!b || b->started) return SMTPC_EINVAL;
    return opt_rc(b, smtpc_conn_opts_set_auth_mechanisms(&b->o, list));
}

SMTPC_API int smtpc_bulk_set_allow_plaintext_auth(smtpc_bulk *b, bool allow)
{
    if (!b || b->started) return SMTPC_EINVAL;
    return opt_rc(b, smtpc_conn_opts_set_allow_plaintext_auth(&b->o, allow));
}

SMTPC_API int smtpc_bulk_set_proxy(smtpc_bulk *b, const smtpc_proxy *proxy)
{
    if (!b || b->started) return SMTPC_EINVAL;
    int rc = opt_rc(b, smtpc_conn_opts_set_proxy(&b->o, proxy)); /* the old one's credentials wiped */
    if (!rc) b->ptarget_set = false;
    return rc;
}

SMTPC_API int smtpc_bulk_set_dsn_policy(smtpc_bulk *b, smtpc_dsn_policy policy)
{
    if (!b) return SMTPC_EINVAL;
    if (policy != SMTPC_DSN_IGNORE && policy != SMTPC_DSN_REQUIRE)
        return smtpc__err(&b->err, SMTPC_EINVAL, "DSN policy: %d is not ignore or require", (int)policy);
    b->dsn_policy = policy;
    return 0;
}

SMTPC_API int smtpc_bulk_set_trace(smtpc_bulk *b, smtpc_bulk_trace_cb cb, void *ud)
{
    if (!b) return SMTPC_EINVAL;
    b->trace_cb = cb;
    b->trace_ud = ud;
    return 0;
}

SMTPC_API int smtpc_bulk_set_trace_body(smtpc_bulk *b, bool on)
{
    if (!b) return SMTPC_EINVAL;
    b->trace_body = on;
    return 0;
}

static void trace_line(void *ud, const char *line, size_t len)
{
    smtpc__bulk_conn *c = ud;
    c->b->trace_cb(c->b->trace_ud, c->serial, SMTPC_TRACE_BODY, line, len);
}

void smtpc__bulk_trace_body(smtpc__bulk_conn *c, const void *p, size_t n)
{
    if (!c->b->trace_cb) return;
    if (!c->tap && !(c->tap = calloc(1, sizeof *c->tap))) return; /* the trace only misses lines */
    if (n) smtpc__linetap_feed(c->tap, p, n, trace_line, c);
    else smtpc__linetap_end(c->tap, trace_line, c);
}

SMTPC_API int smtpc_bulk_set_hold_idle(smtpc_bulk *b, bool on)
{
    if (!b) return SMTPC_EINVAL;
    b->hold_idle = on;
    return 0;
}

SMTPC_API int smtpc_bulk_set_socket_cb(smtpc_bulk *b, smtpc_bulk_socket_cb cb, void *ud)
{
    if (!b || b->started) return SMTPC_EINVAL;
    b->sock_cb = cb;
    b->sock_ud = ud;
    return 0;
}

SMTPC_API int smtpc_bulk_set_timer_cb(smtpc_bulk *b, smtpc_bulk_timer_cb cb, void *ud)
{
    if (!b || b->started) return SMTPC_EINVAL;
    b->timer_cb = cb;
    b->timer_ud = ud;
    return 0;
}

SMTPC_API void smtpc_bulk_get_stats(const smtpc_bulk *b, smtpc_bulk_stats *st)
{
    if (!b || !st) return;
    *st = b->st;
    st->connections_open = (unsigned)b->nconns;
    st->connections_idle = 0;
    for (size_t i = 0; i < b->nconns; i++)
        if (smtpc__bulk_conn_idle(b->conns[i])) st->connections_idle++;
}
