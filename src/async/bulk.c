/* smtpc_bulk: lifetime, settings and statistics. The rest of the driver is
 * described in bulk_int.h. */
#include "async/bulk_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* The connection opener's policy (smtpc_conn_opts) from these settings. */
int smtpc__bulk_conn_opts(smtpc_bulk *b)
{
    smtpc_conn_opts *o = &b->copts;
    smtpc__conn_opts_clear(o);
    static const smtpc_tls_mode modes[] = {SMTPC_TLS_MODE_NONE, SMTPC_TLS_MODE_IMPLICIT,
                                           SMTPC_TLS_MODE_STARTTLS};
    int rc = smtpc_conn_opts_set_server(o, b->host, b->port);
    if (!rc) rc = smtpc_conn_opts_set_tls_mode(o, modes[b->tls_mode]);
    if (!rc && b->auth_user) rc = smtpc_conn_opts_set_credentials(o, b->auth_user, b->auth_pass);
    if (!rc && b->auth_token) rc = smtpc_conn_opts_set_oauth_token(o, b->auth_token);
    if (!rc && b->token_cb) rc = smtpc_conn_opts_set_token_cb(o, b->token_cb, b->token_ud);
    if (!rc) rc = smtpc_conn_opts_set_allow_plaintext_auth(o, b->allow_plain_auth);
    if (rc) return smtpc__err(&b->err, rc, "%s", o->err.text);
    o->auth_list = b->auth_list;
    o->auth_list_set = b->auth_list_set;
    if (strchr(b->host, ':') && b->host[0] != '[')
        snprintf(b->server, sizeof b->server, "[%s]:%u", b->host, (unsigned)b->port);
    else
        snprintf(b->server, sizeof b->server, "%s:%u", b->host, (unsigned)b->port);
    return 0;
}

SMTPC_API int smtpc_bulk_start(smtpc_bulk *b)
{
    if (!b) return SMTPC_EINVAL;
    if (b->started) return SMTPC_ESTATE;
    if (b->proxy && smtpc_proxy_get_type(b->proxy) == SMTPC_PROXY_HTTPS && !b->proxy_tls) {
        smtpc__tls_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.release_buffers = true;
        int rc = smtpc__tls_ctx_new(&b->proxy_tls, &cfg, &b->err);
        if (rc) return rc;
    }
    if (b->tls_mode && !b->tls_ctx) {
        smtpc__tls_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.insecure = b->tls_insecure;
        cfg.ca_file = b->tls_ca;
        cfg.release_buffers = true; /* idle connections keep no record buffers (~10 KiB each) */
        int rc = smtpc__tls_ctx_new(&b->tls_ctx, &cfg, &b->err);
        if (rc) return rc;
    }
    int rc = smtpc__bulk_conn_opts(b);
    if (rc) return rc;
    b->started = true;
    smtpc__bulk_now_update(b);
    if (b->overall_ms > 0) b->overall_deadline = b->now + b->overall_ms;
    rc = smtpc__bulk_resolve_start(b);
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
    b->host = smtpc__strdup(host);
    b->rbuf = malloc(SMTPC__BULK_RBUF);
    b->tmp = malloc(SMTPC__BULK_CHUNK);
    b->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!b->host || !b->rbuf || !b->tmp || b->cancel_fd < 0) {
        if (b->cancel_fd >= 0) close(b->cancel_fd);
        free(b->host);
        free(b->rbuf);
        free(b->tmp);
        free(b);
        return SMTPC_ENOMEM;
    }
    b->port = port;
    smtpc__conn_opts_init(&b->copts);
    b->k = 1;
    b->max_attempts = 3;
    b->connect_ms = 30000;
    b->greeting_ms = 300000;
    b->command_ms = 300000;
    b->data_end_ms = 600000;
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
    smtpc__bulk_reap(b);
    smtpc__bulk_recs_free(b);
    smtpc__conn_opts_clear(&b->copts);
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
    free(b->host);
    free(b->ehlo);
    free(b->tls_name);
    free(b->tls_ca);
    smtpc_proxy_free(b->proxy);
    smtpc__tls_ctx_free(b->proxy_tls);
    free(b->auth_user);
    smtpc__free_secret(b->auth_pass);
    smtpc__free_secret(b->auth_token);
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

SMTPC_API int smtpc_bulk_set_timeouts(smtpc_bulk *b, int64_t connect_ms, int64_t greeting_ms,
                                      int64_t command_ms, int64_t data_end_ms, int64_t overall_ms)
{
    if (!b || connect_ms < 0 || greeting_ms < 0 || command_ms < 0 || data_end_ms < 0 ||
        overall_ms < 0)
        return SMTPC_EINVAL;
    if (connect_ms) b->connect_ms = connect_ms;
    if (greeting_ms) b->greeting_ms = greeting_ms;
    if (command_ms) b->command_ms = command_ms;
    if (data_end_ms) b->data_end_ms = data_end_ms;
    b->overall_ms = overall_ms;
    return 0;
}

SMTPC_API int smtpc_bulk_set_ehlo_name(smtpc_bulk *b, const char *name)
{
    if (!b || !name || !*name || smtpc__has_ctl(name) || strchr(name, ' ') || strlen(name) > 255)
        return SMTPC_EINVAL;
    char *d = smtpc__strdup(name);
    if (!d) return SMTPC_ENOMEM;
    free(b->ehlo);
    b->ehlo = d;
    return 0;
}

SMTPC_API int smtpc_bulk_set_tls(smtpc_bulk *b, int mode, const char *server_name,
                                 const char *ca_file, bool insecure)
{
    if (!b || b->started || mode < 0 || mode > 2) return SMTPC_EINVAL;
    char *n = server_name ? smtpc__strdup(server_name) : NULL;
    char *c = ca_file ? smtpc__strdup(ca_file) : NULL;
    if ((server_name && !n) || (ca_file && !c)) {
        free(n);
        free(c);
        return SMTPC_ENOMEM;
    }
    free(b->tls_name);
    free(b->tls_ca);
    b->tls_name = n;
    b->tls_ca = c;
    b->tls_mode = mode;
    b->tls_insecure = insecure;
    return 0;
}

static int set_cred(smtpc_bulk *b, char **field, const char *v, bool secret, const char *what)
{
    if (v && (strchr(v, '\r') || strchr(v, '\n')))
        return smtpc__err(&b->err, SMTPC_EINVAL, "%s contains CR or LF", what);
    char *c = NULL;
    if (v && !(c = smtpc__strdup(v))) return SMTPC_ENOMEM;
    if (secret) smtpc__free_secret(*field);
    else free(*field);
    *field = c;
    return 0;
}

SMTPC_API int smtpc_bulk_set_credentials(smtpc_bulk *b, const char *user, const char *password)
{
    if (!b || b->started) return SMTPC_EINVAL;
    if (!user && password) return smtpc__err(&b->err, SMTPC_EINVAL, "a password without a user name");
    int rc = set_cred(b, &b->auth_user, user, false, "user name");
    return rc ? rc : set_cred(b, &b->auth_pass, password, true, "password");
}

SMTPC_API int smtpc_bulk_set_oauth_token(smtpc_bulk *b, const char *token)
{
    if (!b || b->started) return SMTPC_EINVAL;
    int rc = set_cred(b, &b->auth_token, token, true, "OAuth token");
    if (!rc) b->token_cb = NULL; /* one source of tokens: the last one set */
    return rc;
}

SMTPC_API int smtpc_bulk_set_token_cb(smtpc_bulk *b, smtpc_token_cb cb, void *userdata)
{
    if (!b || b->started) return SMTPC_EINVAL;
    smtpc__free_secret(b->auth_token); /* one source of tokens: the last one set */
    b->auth_token = NULL;
    b->token_cb = cb;
    b->token_ud = userdata;
    return 0;
}

SMTPC_API int smtpc_bulk_set_auth_mechanisms(smtpc_bulk *b, const char *list)
{
    if (!b || b->started) return SMTPC_EINVAL;
    if (!list) {
        b->auth_list_set = false;
        return 0;
    }
    smtpc__sasl_mask m = 0;
    int rc = smtpc__sasl_mask_parse(list, &m, &b->err);
    if (rc) return rc;
    if (!m) return smtpc__err(&b->err, SMTPC_EINVAL, "no AUTH mechanism in \"%s\"", list);
    b->auth_list = m;
    b->auth_list_set = true;
    return 0;
}

SMTPC_API int smtpc_bulk_set_allow_plaintext_auth(smtpc_bulk *b, bool allow)
{
    if (!b || b->started) return SMTPC_EINVAL;
    b->allow_plain_auth = allow;
    return 0;
}

SMTPC_API int smtpc_bulk_set_proxy(smtpc_bulk *b, const smtpc_proxy *proxy)
{
    if (!b || b->started) return SMTPC_EINVAL;
    smtpc_proxy *p = NULL;
    if (proxy) {
        int rc = smtpc_proxy_dup(&p, proxy);
        if (rc) return rc;
    }
    smtpc_proxy_free(b->proxy); /* wipes its credentials */
    b->proxy = p;
    b->ptarget_set = false;
    return 0;
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
    for (size_t i = 0; i < b->nconns; i++) {
        if (smtpc__bulk_conn_idle(b->conns[i])) st->connections_idle++;
    }
}
