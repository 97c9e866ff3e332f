/* The blocking chain builder: TCP to the proxy, then the proxy handshake
 * driven with smtpc__wait_fd. Apart from proxy.c so that the layers can be
 * used (and tested) without the TCP layer. */
#include "net/proxy.h"
#include "net/proxy_internal.h"

#include <string.h>
#include <sys/socket.h>

int smtpc__proxy_connect(smtpc__transport **out, const smtpc_proxy *cfg, const char *target_host,
                         uint16_t target_port, const smtpc__tcp_opts *tcp, smtpc__errmsg *err)
{
    if (!out || !cfg || !target_host || !tcp)
        return smtpc__err(err, SMTPC_EINVAL, "proxy: missing argument");
    /* TODO(tls): for https, put the TLS layer (SNI and verification against
     * cfg->host) on the TCP layer below, then the CONNECT layer on it. */
    if (cfg->type == SMTPC_PROXY_HTTPS)
        return smtpc__err(err, SMTPC_EUNSUPPORTED,
                          "proxy %s: HTTPS proxies (TLS to the proxy) are not supported yet; "
                          "use http://",
                          cfg->redacted);
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
    smtpc__transport *p = NULL;
    rc = smtpc__proxy_layer_new(&p, t, cfg, target_host, target_port, sa, err);
    if (rc) {
        smtpc__transport_free(t);
        return rc;
    }
    for (;;) {
        int want = 0;
        rc = p->ops->handshake(p, &want);
        if (rc == 0) break;
        if (rc != SMTPC_EAGAIN) {
            smtpc__err(err, rc, "%s", p->err.text);
            smtpc__transport_free(p);
            return rc;
        }
        rc = smtpc__wait_fd(p->fd, want, tcp->deadline_ms, tcp->cancel_fd);
        if (rc) {
            if (rc == SMTPC_ETIMEDOUT)
                smtpc__err(err, rc, "proxy %s: the proxy did not complete the handshake in time",
                           cfg->redacted);
            else if (rc == SMTPC_ECANCELED)
                smtpc__err(err, rc, "proxy %s: canceled during the handshake", cfg->redacted);
            else
                smtpc__err(err, rc, "proxy %s: waiting for the proxy: %s", cfg->redacted,
                           smtpc_strerror(rc));
            smtpc__transport_free(p);
            return rc;
        }
    }
    *out = p;
    return 0;
}
