/* Proxy layers of the transport chain: tcp -> [socks | http proxy] -> [tls].
 *
 * A proxy layer sits on an already connected `inner` transport (TCP to the
 * proxy). Its handshake() writes the request and reads the reply without
 * blocking: SMTPC_EAGAIN + want until the proxy has answered, then 0. After
 * that read/write pass through to inner. The handshake never reads a byte past
 * the end of the proxy's reply (SOCKS: replies have a known length, read
 * exactly), or, for HTTP CONNECT, keeps whatever followed the blank line and
 * returns it first from read() (pending() counts it).
 *
 * Every refusal or failure of the proxy is SMTPC_EPROXY with the reason in
 * words in t->err ("SOCKS5 proxy socks5h://127.0.0.1:1080 refused CONNECT to
 * mx.example:25: connection not allowed by ruleset (reply 0x02)"); a
 * connection lost mid-handshake is SMTPC_EPROXY too ("proxy closed the
 * connection ..."); errors of the inner transport pass through with their
 * code. The proxy's password never appears in a message. */
#ifndef SMTPC_NET_PROXY_H
#define SMTPC_NET_PROXY_H

#include "net/transport.h"

#include <smtpc/proxy.h>
#include <sys/socket.h>

struct smtpc__tls_ctx; /* net/tls.h */

/* Largest HTTP CONNECT response header accepted (status line + headers). */
#define SMTPC__PROXY_HTTP_MAX_HEADER (16 * 1024)

/* Creates the proxy layer for `cfg` over `inner`, for a connection to
 * target_host:target_port. On success the layer owns inner and *out is set;
 * on failure *out and inner are untouched (the caller still owns inner).
 *
 * target_addr: for the types that resolve the target locally (socks4,
 * socks5), the resolved address (AF_INET, or AF_INET6 for socks5); NULL =
 * target_host must be an IP literal, or this function resolves it with a
 * blocking getaddrinfo (see smtpc__proxy_resolve_target). Ignored for the
 * other types.
 * Errors: SMTPC_EINVAL (target host empty, too long for the protocol (255),
 * control characters, port 0), SMTPC_ENOHOST (local resolution failed),
 * SMTPC_EUNSUPPORTED (socks4 and an IPv6 target), SMTPC_ENOMEM.
 * For https, inner must already be the TLS layer to the proxy (verified
 * against the proxy's host name); the layer speaks CONNECT over it. */
int smtpc__proxy_layer_new(smtpc__transport **out, smtpc__transport *inner, const smtpc_proxy *cfg,
                           const char *target_host, uint16_t target_port,
                           const struct sockaddr *target_addr, smtpc__errmsg *err);

/* Whether `type` needs the target resolved locally (socks4, socks5). */
int smtpc__proxy_resolves_locally(smtpc_proxy_type type);

/* Blocking resolution of the target for the locally-resolving types: AF_INET
 * only for socks4, the first address for socks5. IP literals are parsed
 * without a lookup. Errors: SMTPC_ENOHOST, SMTPC_EUNSUPPORTED (socks4 and an
 * IPv6-only target). */
int smtpc__proxy_resolve_target(smtpc_proxy_type type, const char *host,
                                struct sockaddr_storage *out, smtpc__errmsg *err);

/* The whole chain for the blocking session: TCP to the proxy (with `tcp`:
 * bind address, family, deadline_ms, cancel_fd), for https:// a TLS layer
 * to the proxy (verified against the proxy's host name), the proxy layer,
 * and the handshakes driven to completion with smtpc__wait_fd against
 * tcp->deadline_ms / tcp->cancel_fd. On success *out is the proxy layer
 * (the tunnel to the target); SMTPS/STARTTLS TLS goes on top of it.
 * proxy_tls: the TLS context for https:// proxies (borrowed; the chain keeps
 * its own reference); NULL = a default one (system trust store,
 * verification on). Ignored for the other types.
 * On failure *out is untouched and everything is freed.
 * Errors: those of smtpc__tcp_connect (message prefixed by the redacted
 * proxy URL), SMTPC_ETLS ("proxy URL: TLS to the proxy: ..."),
 * SMTPC_EPROXY, SMTPC_ETIMEDOUT ("proxy URL: the proxy did not complete
 * the handshake in time"), SMTPC_ECANCELED, and those of
 * smtpc__proxy_layer_new. */
int smtpc__proxy_connect(smtpc__transport **out, const smtpc_proxy *cfg, const char *target_host,
                         uint16_t target_port, const smtpc__tcp_opts *tcp,
                         struct smtpc__tls_ctx *proxy_tls, smtpc__errmsg *err);

#endif
