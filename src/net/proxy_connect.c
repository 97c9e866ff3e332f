/* The blocking chain builder: TCP to the proxy, [TLS to the proxy for
 * https://], the proxy layer, and the handshakes driven with smtpc__wait_fd.
 * Apart from proxy.c so that the layers can be used (and tested) without
 * the TCP and TLS layers. */
#include "net/proxy.h"
#include "net/proxy_internal.h"
#include "net/tls.h"

#include <string.h>
#include <sys/socket.h>

/* The TLS layer to an https:// proxy: verified against the proxy's host. */
static int wrap_tls(smtpc__transport **t, const smtpc_proxy *cfg, smtpc__tls_ctx *proxy_tls,
                    smtpc__errmsg *err)
{
    smtpc__errmsg terr;
    smtpc__err_clear(&terr);
    smtpc__tls_ctx *ctx = NULL;
    int rc = 0;
    if (proxy_tls) {
        ctx = smtpc__tls_ctx_ref(proxy_tls);
    } else {
        smtpc__tls_config c;
        memset(&c, 0, sizeof c);
        rc = smtpc__tls_ctx_new(&ctx, &c, &terr);
    }
    smtpc__transport *tl = NULL;
    if (!rc) rc = smtpc__tls_wrap(&tl, *t, ctx, cfg->host, NULL, &terr);
    smtpc__tls_ctx_free(ctx); /* the layer keeps its own reference */
    if (rc) return smtpc__err(err, rc, "proxy %s: TLS to the proxy: %s", cfg->redacted, terr.text);
    *t = tl;
    return 0;
}

/* Drives t's handshakes (inner-first) to the end within tcp's deadline;
 * `stage` prefixes a handshake failure's message ("" = the layer's own
 * message says it all). */
static int drive(smtpc__transport *t, const smtpc_proxy *cfg, const smtpc__tcp_opts *tcp,
                 const char *stage, smtpc__errmsg *err)
{
    for (;;) {
        int want = 0;
        int rc = smtpc__transport_handshake(t, &want);
        if (rc == 0) return 0;
        if (rc != SMTPC_EAGAIN) {
            if (*stage)
                return smtpc__err(err, rc, "proxy %s: %s: %s", cfg->redacted, stage, t->err.text);
            return smtpc__err(err, rc, "%s", t->err.text);
        }
        rc = smtpc__wait_fd(t->fd, want, tcp->deadline_ms, tcp->cancel_fd);
        if (rc == SMTPC_ETIMEDOUT)
            return smtpc__err(err, rc, "proxy %s: the proxy did not complete the handshake in time",
                              cfg->redacted);
        if (rc == SMTPC_ECANCELED)
            return smtpc__err(err, rc, "proxy %s: canceled during the handshake", cfg->redacted);
        if (rc)
            return smtpc__err(err, rc, "proxy %s: waiting for the proxy: %s", cfg->redacted,
                              smtpc_strerror(rc));
    }
}

int smtpc__proxy_connect(smtpc__transport **out, const smtpc_proxy *cfg, const char *target_host,
                         uint16_t target_port, const smtpc__tcp_opts *tcp,
                         smtpc__tls_ctx *proxy_tls, smtpc__errmsg *err)
{
    if (!out || !cfg || !target_host || !tcp)
        return smtpc__err(err, SMTPC_EINVAL, "proxy: missing argument");
    /* Resolve a locally-resolved target first: no point connecting to the
     * proxy for a name that does not exist. */
    struct sockaddr_storage ss;
    const struct sockaddr *sa = NULL;
    if (smtpc__proxy_resolves_locally(cfg->type)) {
        int rc = smtpc__proxy_resolve_target(cfg->type, target_host, &ss, err);
        if (rc) return rc;
        sa = (const struct sockaddr *)&ss;
    }
    smtpc__transport *t = NULL;
    smtpc__errmsg terr;
    smtpc__err_clear(&terr);
    int rc = smtpc__tcp_connect(&t, cfg->host, cfg->port, tcp, &terr);
    if (rc) return smtpc__err(err, rc, "proxy %s: %s", cfg->redacted, terr.text);
    if (cfg->type == SMTPC_PROXY_HTTPS) {
        rc = wrap_tls(&t, cfg, proxy_tls, err);
        if (!rc) rc = drive(t, cfg, tcp, "TLS to the proxy", err);
        if (rc) {
            smtpc__transport_free(t);
            return rc;
        }
    }
    smtpc__transport *p = NULL;
    rc = smtpc__proxy_layer_new(&p, t, cfg, target_host, target_port, sa, err);
    if (rc) {
        smtpc__transport_free(t);
        return rc;
    }
    rc = drive(p, cfg, tcp, "", err);
    if (rc) {
        smtpc__transport_free(p);
        return rc;
    }
    *out = p;
    return 0;
}
